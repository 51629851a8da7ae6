//! Dates as schools write them: 14/03/2010, 4/3/10, 14.03.2010, 14-03-2010, 2010-03-14,
//! "14 March 2010", "14th Mar 2010", "March 14, 2010". Day first: these are UK files.

use jiff::civil::Date;

use super::words::Tok;

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn month_named(word: &str) -> Option<i8> {
    let w = word.to_ascii_lowercase();
    if w.len() < 3 {
        return None;
    }
    let found = MONTHS.iter().position(|m| {
        *m == w || (w.len() <= 4 && m.starts_with(&w)) || (w == "sept" && *m == "september")
    })?;
    i8::try_from(found + 1).ok()
}

/// A day of the month, "14" or "14th".
fn day(word: &str) -> Option<i8> {
    let digits = word.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = word.get(digits.len()..)?.to_ascii_lowercase();
    if !matches!(suffix.as_str(), "" | "st" | "nd" | "rd" | "th") {
        return None;
    }
    if digits.is_empty() || digits.len() > 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn number(word: &str, min_len: usize, max_len: usize) -> Option<i16> {
    if word.len() < min_len || word.len() > max_len || !word.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    word.parse().ok()
}

/// A two-digit year: this century unless that would be after `today`.
fn year_of(word: &str, today: Date) -> Option<i16> {
    match word.len() {
        4 => number(word, 4, 4),
        2 => {
            let yy = number(word, 2, 2)?;
            let this = today.year();
            Some(if 2000 + yy <= this {
                2000 + yy
            } else {
                1900 + yy
            })
        }
        _ => None,
    }
}

/// Between the parts of a written date: spaces, a comma, a full stop ("14 Mar. 2010",
/// "March 14, 2010").
fn written_gap(gap: &str) -> bool {
    !gap.is_empty()
        && gap.len() <= 3
        && gap
            .chars()
            .all(|c| c == ' ' || c == ',' || c == '.' || c == '\u{a0}')
}

/// The date starting at word `i` of `line`, and the index of its last word.
pub fn date_at(line: &str, toks: &[Tok], i: usize, today: Date) -> Option<(Date, usize)> {
    let word = |k: usize| toks.get(k).and_then(|t| line.get(t.start..t.end));
    let gap = |k: usize| {
        let a = toks.get(k)?;
        let b = toks.get(k + 1)?;
        line.get(a.end..b.start)
    };
    let w0 = word(i)?;
    let first = w0.as_bytes().first()?;
    if first.is_ascii_digit() {
        let (g1, g2) = (gap(i)?, gap(i + 1));
        // Numeric: d/m/y with one separator used twice, or y-m-d.
        if matches!(g1, "/" | "." | "-") && g2 == Some(g1) {
            let (w1, w2) = (word(i + 1)?, word(i + 2)?);
            let date = if w0.len() == 4 {
                let y = number(w0, 4, 4)?;
                Date::new(
                    y,
                    i8::try_from(number(w1, 1, 2)?).ok()?,
                    i8::try_from(number(w2, 1, 2)?).ok()?,
                )
            } else {
                let d = i8::try_from(number(w0, 1, 2)?).ok()?;
                let m = i8::try_from(number(w1, 1, 2)?).ok()?;
                Date::new(year_of(w2, today)?, m, d)
            };
            return date.ok().map(|d| (d, i + 2));
        }
        // Written: "14 March 2010", "14th of March 2010".
        let d = day(w0)?;
        if !written_gap(g1) {
            return None;
        }
        let mut k = i + 1;
        if word(k).is_some_and(|w| w.eq_ignore_ascii_case("of")) && gap(k).is_some_and(written_gap)
        {
            k += 1;
        }
        let m = month_named(word(k)?)?;
        if !gap(k).is_some_and(written_gap) {
            return None;
        }
        let y = number(word(k + 1)?, 4, 4)?;
        return Date::new(y, m, d).ok().map(|date| (date, k + 1));
    }
    // "March 14, 2010", "March 14th 2010".
    let m = month_named(w0)?;
    if !gap(i).is_some_and(written_gap) || !gap(i + 1).is_some_and(written_gap) {
        return None;
    }
    let d = day(word(i + 1)?)?;
    let y = number(word(i + 2)?, 4, 4)?;
    Date::new(y, m, d).ok().map(|date| (date, i + 2))
}

/// Could be someone's date of birth on `today`: not in the future, and under 100 years ago.
pub fn plausible_birth(date: Date, today: Date) -> bool {
    date <= today && i32::from(date.year()) > i32::from(today.year()) - 100
}

/// The date of birth of someone of school age on `today`: a pupil, from nursery to the 25
/// years an EHC plan may run; a member of staff's or a parent's is older.
pub fn school_age(date: Date, today: Date) -> bool {
    plausible_birth(date, today) && i32::from(date.year()) > i32::from(today.year()) - 26
}

/// A date of birth masked for evidence: the year only.
pub fn mask(date: Date) -> String {
    format!("••/••/{:04}", date.year())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::sensitive::detect::words::tokenize;

    fn first_date(s: &str) -> Option<Date> {
        let today = jiff::civil::date(2026, 11, 23);
        let mut t = Vec::new();
        tokenize(s, &mut t);
        (0..t.len())
            .find_map(|i| date_at(s, &t, i, today))
            .map(|(d, _)| d)
    }

    #[test]
    fn the_ways_schools_write_a_date() {
        let d = jiff::civil::date(2010, 3, 14);
        for s in [
            "14/03/2010",
            "DOB: 14/3/10",
            "14.03.2010",
            "14-03-2010",
            "2010-03-14",
            "born 14 March 2010",
            "14th Mar 2010",
            "14th Mar. 2010",
            "14th of March 2010",
            "March 14, 2010",
            "Mar 14th 2010",
        ] {
            assert_eq!(first_date(s), Some(d), "{s}");
        }
        assert_eq!(first_date("4/3/99"), Some(jiff::civil::date(1999, 3, 4)));
    }

    #[test]
    fn things_that_are_not_dates() {
        for s in [
            "31/02/2010",
            "14/03-2010",
            "14 / 03 / 2010",
            "page 14 of 30",
            "14 May",
            "2010",
            "3.14159",
            "May I 2010",
            "13/13/2013",
        ] {
            assert_eq!(first_date(s), None, "{s}");
        }
    }

    #[test]
    fn a_birth_date_is_in_the_past_and_under_a_hundred_years_ago() {
        let today = jiff::civil::date(2026, 11, 23);
        assert!(plausible_birth(jiff::civil::date(2010, 3, 14), today));
        assert!(!plausible_birth(jiff::civil::date(2027, 3, 14), today));
        assert!(!plausible_birth(jiff::civil::date(1564, 4, 23), today));
        assert_eq!(mask(jiff::civil::date(2010, 3, 14)), "••/••/2010");
    }
}
