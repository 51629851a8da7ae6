//! When mail on a clock goes: the weekly report (`[safeguarding] weekly_report = "Mon 07:30"`,
//! the default) and the quarantine digest (`[quarantine] digest = "07:30"`, every day), in
//! `[school] timezone`, or `"off"`.
//!
//! Pure: the gateway asks [`due`] what to do at each tick, with the last one it finds in the
//! audit trail, so a restart neither sends one twice nor loses one missed while it was down
//! (up to [`CATCH_UP`] late).

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Deserializer};

/// How late a report missed while the gateway was down is still sent: one school day. Past
/// that the DSL has had the week's alerts; the next report comes at the next slot.
pub const CATCH_UP: SignedDuration = SignedDuration::from_hours(24);

/// A weekday (or every day) and a time of day, in the school's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// `None`: every day.
    pub weekday: Option<Weekday>,
    pub time: Time,
}

/// `[safeguarding] weekly_report`: a [`Slot`], or `None` for `"off"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeeklyReport(pub Option<Slot>);

impl Default for WeeklyReport {
    fn default() -> Self {
        WeeklyReport(Some(Slot {
            weekday: Some(Weekday::Monday),
            time: Time::constant(7, 30, 0, 0),
        }))
    }
}

const DAYS: [(&str, Weekday); 7] = [
    ("monday", Weekday::Monday),
    ("tuesday", Weekday::Tuesday),
    ("wednesday", Weekday::Wednesday),
    ("thursday", Weekday::Thursday),
    ("friday", Weekday::Friday),
    ("saturday", Weekday::Saturday),
    ("sunday", Weekday::Sunday),
];

impl FromStr for WeeklyReport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "\"{s}\" is not a weekday and a time; write e.g. \"Mon 07:30\" (in [school] timezone), or \"off\""
            )
        };
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(WeeklyReport(None));
        }
        let (day, time) = s.split_once(char::is_whitespace).ok_or_else(bad)?;
        let day = day.trim().to_ascii_lowercase();
        let weekday = DAYS
            .iter()
            .find(|(name, _)| day.len() >= 3 && name.starts_with(&day))
            .map(|(_, w)| *w)
            .ok_or_else(bad)?;
        let time = time_of_day(time).ok_or_else(bad)?;
        Ok(WeeklyReport(Some(Slot {
            weekday: Some(weekday),
            time,
        })))
    }
}

/// `"07:30"` (or `"7:30"`) as a time of day.
fn time_of_day(s: &str) -> Option<Time> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (i8, i8) = (h.trim().parse().ok()?, m.trim().parse().ok()?);
    if !(0..24).contains(&h) || !(0..60).contains(&m) {
        return None;
    }
    Time::new(h, m, 0, 0).ok()
}

/// `[quarantine] digest`: a time of every day, or `None` for `"off"`. The default is 07:30 (it
/// only goes when `[quarantine] digest_to` names someone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Daily(pub Option<Slot>);

impl Default for Daily {
    fn default() -> Self {
        Daily(Some(Slot {
            weekday: None,
            time: Time::constant(7, 30, 0, 0),
        }))
    }
}

impl FromStr for Daily {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("off") {
            return Ok(Daily(None));
        }
        let time = time_of_day(s).ok_or_else(|| {
            format!("\"{s}\" is not a time of day; write e.g. \"07:30\" (in [school] timezone), or \"off\"")
        })?;
        Ok(Daily(Some(Slot {
            weekday: None,
            time,
        })))
    }
}

impl<'de> Deserialize<'de> for Daily {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Daily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some(s) => write!(f, "{}", s.time.strftime("%H:%M")),
        }
    }
}

impl<'de> Deserialize<'de> for WeeklyReport {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for WeeklyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some(s) => {
                let Some(weekday) = s.weekday else {
                    return write!(f, "{}", s.time.strftime("%H:%M"));
                };
                let day = DAYS
                    .iter()
                    .find(|(_, w)| *w == weekday)
                    .map_or("?", |(n, _)| n);
                let mut name = day[..3].to_string();
                name[..1].make_ascii_uppercase();
                write!(f, "{name} {}", s.time.strftime("%H:%M"))
            }
        }
    }
}

/// The slot's instants around `now` (the weeks before and after), in time order. A time the
/// clocks skip (spring forward) means the moment after the gap; a time they repeat (autumn)
/// the first of the two.
fn around(slot: Slot, now: Timestamp, tz: &TimeZone) -> Vec<Timestamp> {
    let today = now.to_zoned(tz.clone()).date();
    (-8i64..=8)
        .filter_map(|d| today.checked_add(jiff::Span::new().days(d)).ok())
        .filter(|d| slot.weekday.is_none_or(|w| d.weekday() == w))
        .filter_map(|d| d.to_datetime(slot.time).to_zoned(tz.clone()).ok())
        .map(|z| z.timestamp())
        .collect()
}

/// The first instant of `slot` after `now`.
pub fn next_after(slot: Slot, now: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    around(slot, now, tz).into_iter().find(|t| *t > now)
}

/// The last instant of `slot` at or before `now`.
pub fn latest_at_or_before(slot: Slot, now: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    around(slot, now, tz).into_iter().rev().find(|t| *t <= now)
}

/// The slot whose report is due at `now`, given the slot of the last report sent (from the
/// audit trail) and when the trail began (the gateway's first record): the latest slot, unless
/// its report was sent already, or the slot is more than [`CATCH_UP`] ago (the gateway was
/// down; the next slot will do), or the gateway did not exist yet at the slot (a new install
/// waits for its first slot rather than mailing at once).
pub fn due(
    schedule: Option<Slot>,
    now: Timestamp,
    tz: &TimeZone,
    last_sent: Option<Timestamp>,
    trail_began: Option<Timestamp>,
) -> Option<Timestamp> {
    let slot = latest_at_or_before(schedule?, now, tz)?;
    if now.duration_since(slot) > CATCH_UP
        || last_sent.is_some_and(|l| l >= slot)
        || trail_began.is_none_or(|b| b > slot)
    {
        return None;
    }
    Some(slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn london() -> TimeZone {
        TimeZone::get("Europe/London").expect("the tz database has Europe/London")
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("an RFC 3339 instant")
    }

    fn spec(s: &str) -> Slot {
        s.parse::<WeeklyReport>()
            .expect("a valid spec")
            .0
            .expect("not off")
    }

    #[test]
    fn specs_parse_and_bad_ones_say_how_to_write_them() {
        assert_eq!(WeeklyReport::default().to_string(), "Mon 07:30");
        assert_eq!(
            "Mon 07:30".parse::<WeeklyReport>(),
            Ok(WeeklyReport::default())
        );
        assert_eq!(
            "  monday   7:30 ".parse::<WeeklyReport>(),
            Ok(WeeklyReport::default())
        );
        assert_eq!("OFF".parse::<WeeklyReport>(), Ok(WeeklyReport(None)));
        assert_eq!(
            "Fri 16:05".parse::<WeeklyReport>().map(|w| w.to_string()),
            Ok("Fri 16:05".into())
        );
        for bad in [
            "",
            "Mon",
            "07:30",
            "Funday 07:30",
            "Mon 24:00",
            "Mon 7:60",
            "Mo 07:30",
            "never",
        ] {
            let e = bad.parse::<WeeklyReport>().expect_err(bad);
            assert!(e.contains("Mon 07:30") && e.contains("off"), "{bad}: {e}");
        }
    }

    #[test]
    fn next_monday_morning_in_winter_and_summer() {
        let mon = spec("Mon 07:30");
        // Wednesday 2026-12-02: the next is Monday 7 December, 07:30 GMT.
        assert_eq!(
            next_after(mon, at("2026-12-02T10:00:00Z"), &london()),
            Some(at("2026-12-07T07:30:00Z"))
        );
        // In summer 07:30 BST is 06:30 UTC.
        assert_eq!(
            next_after(mon, at("2026-06-10T10:00:00Z"), &london()),
            Some(at("2026-06-15T06:30:00Z"))
        );
        // On Monday at 07:30 exactly it is the following week's.
        assert_eq!(
            next_after(mon, at("2026-12-07T07:30:00Z"), &london()),
            Some(at("2026-12-14T07:30:00Z"))
        );
        assert_eq!(
            latest_at_or_before(mon, at("2026-12-07T07:30:00Z"), &london()),
            Some(at("2026-12-07T07:30:00Z"))
        );
    }

    #[test]
    fn the_weeks_the_clocks_change() {
        let mon = spec("Mon 07:30");
        // Clocks go forward on Sunday 28 March 2027: Monday 07:30 is BST, 06:30 UTC.
        assert_eq!(
            next_after(mon, at("2027-03-26T12:00:00Z"), &london()),
            Some(at("2027-03-29T06:30:00Z"))
        );
        // Clocks go back on Sunday 25 October 2026: Monday 07:30 is GMT again.
        assert_eq!(
            next_after(mon, at("2026-10-23T12:00:00Z"), &london()),
            Some(at("2026-10-26T07:30:00Z"))
        );
        // A time the clocks skip runs just after the gap (01:30 on 28 March 2027 is 02:30 BST).
        assert_eq!(
            next_after(spec("Sun 01:30"), at("2027-03-27T12:00:00Z"), &london()),
            Some(at("2027-03-28T01:30:00Z"))
        );
        // A time the clocks repeat runs once, the first time (01:30 BST = 00:30 UTC).
        let sun = spec("Sun 01:30");
        let first = next_after(sun, at("2026-10-24T12:00:00Z"), &london());
        assert_eq!(first, Some(at("2026-10-25T00:30:00Z")));
        assert_eq!(
            next_after(sun, at("2026-10-25T00:30:00Z"), &london()),
            Some(at("2026-11-01T01:30:00Z")),
            "not again at 01:30 GMT the same night"
        );
    }

    #[test]
    fn due_once_per_slot_and_caught_up_within_a_day() {
        let tz = london();
        let w = WeeklyReport::default().0;
        let slot = at("2026-12-07T07:30:00Z");
        let began = Some(at("2026-09-01T08:00:00Z"));
        assert_eq!(due(w, at("2026-12-07T07:29:59Z"), &tz, None, began), None);
        assert_eq!(
            due(w, at("2026-12-07T07:30:00Z"), &tz, None, began),
            Some(slot)
        );
        // Sent: not again, even after a restart that reads it back.
        assert_eq!(
            due(w, at("2026-12-07T07:30:30Z"), &tz, Some(slot), began),
            None
        );
        // Last week's report sent, this week's missed while down: sent when the gateway is back.
        let last_week = Some(at("2026-11-30T07:30:00Z"));
        assert_eq!(
            due(w, at("2026-12-07T12:00:00Z"), &tz, last_week, began),
            Some(slot)
        );
        // More than a day late: wait for next week's.
        assert_eq!(
            due(w, at("2026-12-08T08:00:00Z"), &tz, last_week, began),
            None
        );
        // Installed after the slot: wait for the next one.
        let new = Some(at("2026-12-07T09:00:00Z"));
        assert_eq!(due(w, at("2026-12-07T09:00:05Z"), &tz, None, new), None);
        assert_eq!(due(w, at("2026-12-07T09:00:05Z"), &tz, None, None), None);
        assert_eq!(
            due(None, at("2026-12-07T07:30:00Z"), &tz, None, began),
            None
        );
    }

    #[test]
    fn a_daily_slot_comes_every_morning_and_is_caught_up_within_a_day() {
        let tz = london();
        assert_eq!(Daily::default().to_string(), "07:30");
        assert_eq!("7:30".parse::<Daily>(), Ok(Daily::default()));
        assert_eq!("Off".parse::<Daily>(), Ok(Daily(None)));
        for bad in ["", "Mon 07:30", "24:00", "07:60", "7.30", "morning"] {
            let e = bad.parse::<Daily>().expect_err(bad);
            assert!(e.contains("07:30") && e.contains("off"), "{bad}: {e}");
        }
        let d = Daily::default().0;
        let slot = d.expect("on");
        // Saturday 5 December 2026 at noon: next Sunday 07:30 GMT (every day, weekends too).
        assert_eq!(
            next_after(slot, at("2026-12-05T12:00:00Z"), &tz),
            Some(at("2026-12-06T07:30:00Z"))
        );
        // In summer, 07:30 BST.
        assert_eq!(
            next_after(slot, at("2026-06-10T07:00:00Z"), &tz),
            Some(at("2026-06-11T06:30:00Z"))
        );
        let began = Some(at("2026-09-01T08:00:00Z"));
        let today = at("2026-12-07T07:30:00Z");
        assert_eq!(
            due(d, at("2026-12-07T07:29:00Z"), &tz, None, began),
            Some(at("2026-12-06T07:30:00Z"))
        );
        let yesterday = Some(at("2026-12-06T07:30:00Z"));
        assert_eq!(
            due(d, at("2026-12-07T07:29:00Z"), &tz, yesterday, began),
            None
        );
        assert_eq!(
            due(d, at("2026-12-07T07:30:00Z"), &tz, yesterday, began),
            Some(today)
        );
        assert_eq!(
            due(d, at("2026-12-07T11:00:00Z"), &tz, Some(today), began),
            None
        );
        assert_eq!(
            due(None, at("2026-12-07T07:30:00Z"), &tz, None, began),
            None
        );
    }
}
