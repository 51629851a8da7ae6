//! The network manager's daily quarantine digest: what was held in the 24 hours before the
//! slot, by rule, and every message still held, oldest first, each with its link.
//!
//! Pure: [`Digest::build`] takes the quarantine's entries and the clock; [`Digest::text`] and
//! [`Digest::html`] write it. It carries no message content and no identifiers: no subject (a
//! subject can hold a pupil's name), no recipient's address (only how many), no attachment
//! name, no finding's detail. A message held by a safeguarding rule is the DSL's, so the digest
//! shows it as the network manager's list does: "held by a safeguarding rule", its time, age
//! and link, not who sent it or which rule.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use maud::html;

use crate::policy::holds::{self, Hold};
use crate::store::quarantine::Held;

/// The most messages still held that the digest lists one by one; the rest are counted.
pub const MAX_LISTED: usize = 200;

/// One message still held, as the digest shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub id: String,
    pub held: Timestamp,
    /// The envelope sender (a school address); `None` for a safeguarding hold.
    pub sender: Option<String>,
    /// How many recipients; `None` for a safeguarding hold.
    pub recipients: Option<usize>,
    /// The rules, as the network manager's list names them ("safeguarding" for a DSL's hold).
    pub rules: Vec<String>,
}

/// One rule's line: held in the 24 hours, and still held (unresolved, of any age).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleCount {
    pub last_day: usize,
    pub unresolved: usize,
}

/// The digest of one morning.
#[derive(Debug, Clone)]
pub struct Digest {
    pub school: String,
    /// Its slot: the 24 hours before it are the digest's day.
    pub slot: Timestamp,
    pub tz: TimeZone,
    /// Messages held in the 24 hours before the slot (released or deleted since, too).
    pub held_last_day: usize,
    /// Of those, how many were released or deleted since.
    pub resolved_last_day: usize,
    pub by_rule: BTreeMap<String, RuleCount>,
    /// Every message still held, oldest first (up to [`MAX_LISTED`]).
    pub waiting: Vec<Waiting>,
    /// How many are still held in all.
    pub waiting_total: usize,
    /// The web page's address (`[web] public_url`), for the links.
    pub base_url: Option<String>,
}

/// The rules `h` is held by, as the network manager sees them.
fn visible_rules(h: &Held) -> Vec<String> {
    if holds::kind(&h.reason) == Hold::Safeguarding {
        return vec!["safeguarding".into()];
    }
    let mut rules: Vec<String> = h
        .reason
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["rule"].as_str())
        .map(str::to_string)
        .collect();
    rules.sort();
    rules.dedup();
    rules
}

fn time_of(h: &Held) -> Option<Timestamp> {
    h.time.parse().ok()
}

impl Digest {
    /// The digest for `slot` from `entries`: every quarantine entry (held, released or deleted)
    /// held since the day before, and all still held.
    pub fn build(
        school: &str,
        entries: &[Held],
        slot: Timestamp,
        tz: &TimeZone,
        base_url: Option<String>,
    ) -> Digest {
        let since = slot - SignedDuration::from_hours(24);
        let mut by_rule: BTreeMap<String, RuleCount> = BTreeMap::new();
        let (mut held_last_day, mut resolved_last_day) = (0, 0);
        let mut waiting: Vec<Waiting> = Vec::new();
        for h in entries {
            let Some(t) = time_of(h) else { continue };
            if t > slot || !matches!(h.state.as_str(), "held" | "released" | "deleted") {
                continue;
            }
            let rules = visible_rules(h);
            let recent = t > since;
            let still = h.state == "held";
            if recent {
                held_last_day += 1;
                resolved_last_day += usize::from(!still);
            }
            for r in &rules {
                let c = by_rule.entry(r.clone()).or_default();
                c.last_day += usize::from(recent);
                c.unresolved += usize::from(still);
            }
            if still {
                let hidden = holds::kind(&h.reason) == Hold::Safeguarding;
                waiting.push(Waiting {
                    id: h.id.clone(),
                    held: t,
                    sender: (!hidden).then(|| crate::alerts::one_line(&h.mail_from)),
                    recipients: (!hidden).then_some(h.rcpt_to.len()),
                    rules,
                });
            }
        }
        by_rule.retain(|_, c| c.last_day > 0 || c.unresolved > 0);
        waiting.sort_by(|a, b| a.held.cmp(&b.held).then_with(|| a.id.cmp(&b.id)));
        let waiting_total = waiting.len();
        waiting.truncate(MAX_LISTED);
        Digest {
            school: school.to_string(),
            slot,
            tz: tz.clone(),
            held_last_day,
            resolved_last_day,
            by_rule,
            waiting,
            waiting_total,
            base_url,
        }
    }

    /// The mail's subject.
    pub fn subject(&self) -> String {
        let waiting = match self.waiting_total {
            0 => "nothing waiting".to_string(),
            1 => "1 message waiting".to_string(),
            n => format!("{n} messages waiting"),
        };
        format!(
            "Quarantine digest: {waiting}, {} held in the last 24 hours",
            self.held_last_day
        )
    }

    /// A time as the school reads it: `Mon 7 Dec 2026, 09:14 GMT`.
    fn when(&self, t: Timestamp) -> String {
        t.to_zoned(self.tz.clone())
            .strftime("%a %-d %b %Y, %H:%M %Z")
            .to_string()
    }

    /// How long a message has waited at the slot: "3 days 4 h", "5 h 10 min", "12 min".
    pub fn age(&self, held: Timestamp) -> String {
        let mins = self.slot.duration_since(held).as_secs().max(0) / 60;
        let (d, h, m) = (mins / (24 * 60), mins / 60 % 24, mins % 60);
        match (d, h) {
            (0, 0) => format!("{m} min"),
            (0, _) => format!("{h} h {m} min"),
            (1, _) => format!("1 day {h} h"),
            _ => format!("{d} days {h} h"),
        }
    }

    /// Where to open message `id`.
    pub fn link(&self, id: &str) -> String {
        match &self.base_url {
            Some(base) => format!("{base}/quarantine/{id}"),
            None => format!("schoolgate quarantine show {id} --as NAME"),
        }
    }

    fn who(w: &Waiting) -> String {
        match (&w.sender, w.recipients) {
            (Some(s), Some(n)) => {
                format!("from {s} to {n} recipient{}", if n == 1 { "" } else { "s" })
            }
            _ => "held by a safeguarding rule: the DSL decides".into(),
        }
    }

    /// The plain-text part.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Quarantine digest for {}", self.school);
        let _ = writeln!(out, "As of {}", self.when(self.slot));
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Held in the last 24 hours: {} ({} released or deleted since)",
            self.held_last_day, self.resolved_last_day
        );
        let _ = writeln!(
            out,
            "Still held (waiting for a decision): {}",
            self.waiting_total
        );
        if !self.by_rule.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "By rule (held in the last 24 hours / still held):");
            for (rule, c) in &self.by_rule {
                let _ = writeln!(out, "  {rule}: {} / {}", c.last_day, c.unresolved);
            }
        }
        if !self.waiting.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "Still held, oldest first:");
            for w in &self.waiting {
                let _ = writeln!(
                    out,
                    "- {}, waiting {}: {}; {}",
                    self.when(w.held),
                    self.age(w.held),
                    w.rules.join(", "),
                    Self::who(w)
                );
                let _ = writeln!(out, "  {}", self.link(&w.id));
            }
            if self.waiting_total > self.waiting.len() {
                let _ = writeln!(
                    out,
                    "… and {} more: see the quarantine page.",
                    self.waiting_total - self.waiting.len()
                );
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "No subject, address list or content is in this mail: open each link to read and decide."
        );
        out
    }

    /// The HTML part.
    pub fn html(&self) -> String {
        let more = self.waiting_total.saturating_sub(self.waiting.len());
        html! {
            (maud::DOCTYPE)
            html lang="en-GB" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (self.subject()) }
                    // Readable on a phone: long addresses and rule names wrap.
                    style { "table{border-collapse:collapse;max-width:100%}td,th{word-break:break-word;overflow-wrap:anywhere;vertical-align:top;text-align:left}" }
                }
                body style="font-family:sans-serif" {
                    h1 style="font-size:1.3em" { "Quarantine digest for " (self.school) }
                    p { "As of " (self.when(self.slot)) }
                    p {
                        strong { (self.held_last_day) } " held in the last 24 hours ("
                        (self.resolved_last_day) " released or deleted since); "
                        strong { (self.waiting_total) } " still held, waiting for a decision."
                    }
                    @if !self.by_rule.is_empty() {
                        table border="1" cellpadding="4" {
                            thead { tr { th { "Rule" } th { "Held in the last 24 hours" } th { "Still held" } } }
                            tbody { @for (rule, c) in &self.by_rule {
                                tr { td { (rule) } td { (c.last_day) } td { (c.unresolved) } }
                            } }
                        }
                    }
                    @if !self.waiting.is_empty() {
                        h2 style="font-size:1.1em" { "Still held, oldest first" }
                        table border="1" cellpadding="4" {
                            thead { tr { th { "Held" } th { "Waiting" } th { "Rule" } th { "Sender" } th { "Recipients" } th { "Open" } } }
                            tbody { @for w in &self.waiting {
                                tr {
                                    td { (self.when(w.held)) }
                                    td { (self.age(w.held)) }
                                    td { (w.rules.join(", ")) }
                                    @match (&w.sender, w.recipients) {
                                        (Some(s), Some(n)) => { td { (s) } td { (n) } }
                                        _ => { td colspan="2" { "Held by a safeguarding rule: the DSL decides" } }
                                    }
                                    td { @match &self.base_url {
                                        Some(_) => a href=(self.link(&w.id)) { (w.id) },
                                        None => code { (self.link(&w.id)) },
                                    } }
                                }
                            } }
                        }
                        @if more > 0 { p { "… and " (more) " more: see the quarantine page." } }
                    }
                    p style="color:#555" { "No subject, address list or content is in this mail: open each link to read and decide." }
                }
            }
        }
        .into_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("an RFC 3339 instant")
    }

    fn held(id: &str, time: &str, state: &str, reason: serde_json::Value) -> Held {
        Held {
            id: id.into(),
            time: time.into(),
            mail_from: "t.baker@example-academy.sch.uk".into(),
            rcpt_to: vec!["jamie.smith2010@gmail.com".into(), "mum@example.org".into()],
            subject: Some("Jamie Smith's EHCP review".into()),
            size: 1234,
            sha256: "00".into(),
            reason,
            state: state.into(),
            acted_by: None,
            acted_at: None,
            action_reason: None,
            smtputf8: false,
            body_8bit: false,
        }
    }

    fn sensitive() -> serde_json::Value {
        json!([{"rule": "unencrypted-sensitive-attachment", "attachment": "Jamie Smith EHCP.docx",
                "detail": "2 UPNs (A12••••••••3)", "evidence": ["UPN: A123456789012"]}])
    }

    fn safeguarding() -> serde_json::Value {
        json!([{"rule": "pupil-personal-address", "detail": "jamie.smith2010@gmail.com is Jamie Smith's",
                "evidence": "Jamie"}])
    }

    fn digest() -> Digest {
        let tz = TimeZone::get("Europe/London").unwrap();
        let entries = [
            held("Q1", "2026-12-01T09:14:00Z", "held", sensitive()),
            held("Q2", "2026-12-06T16:00:00Z", "held", safeguarding()),
            held("Q3", "2026-12-07T07:10:00Z", "held", sensitive()),
            held("Q4", "2026-12-06T12:00:00Z", "released", sensitive()),
            held("Q5", "2026-12-02T12:00:00Z", "deleted", sensitive()),
            held("Q6", "2026-12-07T08:00:00Z", "held", sensitive()),
        ];
        Digest::build(
            "Example Academy",
            &entries,
            at("2026-12-07T07:30:00Z"),
            &tz,
            Some("https://gw.example-academy.sch.uk:8443".into()),
        )
    }

    #[test]
    fn the_digest_counts_the_last_day_by_rule_and_lists_what_waits_oldest_first() {
        let d = digest();
        // Q2, Q3 and Q4 were held in the 24 hours before 07:30; Q6 came after the slot.
        assert_eq!((d.held_last_day, d.resolved_last_day), (3, 1));
        assert_eq!(d.waiting_total, 3);
        let ids: Vec<&str> = d.waiting.iter().map(|w| w.id.as_str()).collect();
        assert_eq!(ids, ["Q1", "Q2", "Q3"], "oldest first");
        assert_eq!(
            d.by_rule["unencrypted-sensitive-attachment"],
            RuleCount {
                last_day: 2,
                unresolved: 2
            }
        );
        assert_eq!(
            d.by_rule["safeguarding"],
            RuleCount {
                last_day: 1,
                unresolved: 1
            }
        );
        assert!(!d.by_rule.contains_key("pupil-personal-address"));
        assert_eq!(
            d.subject(),
            "Quarantine digest: 3 messages waiting, 3 held in the last 24 hours"
        );

        let text = d.text();
        for want in [
            "Held in the last 24 hours: 3 (1 released or deleted since)",
            "Still held (waiting for a decision): 3",
            "unencrypted-sensitive-attachment: 2 / 2",
            "safeguarding: 1 / 1",
            "- Tue 1 Dec 2026, 09:14 GMT, waiting 5 days 22 h: unencrypted-sensitive-attachment; from t.baker@example-academy.sch.uk to 2 recipients",
            "https://gw.example-academy.sch.uk:8443/quarantine/Q1",
            "https://gw.example-academy.sch.uk:8443/quarantine/Q2",
            "held by a safeguarding rule: the DSL decides",
            "waiting 20 min",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        let html = d.html();
        assert!(
            html.contains("href=\"https://gw.example-academy.sch.uk:8443/quarantine/Q3\""),
            "{html}"
        );
        // Text lines in order: Q1 before Q2 before Q3.
        let pos = |id: &str| text.find(&format!("/quarantine/{id}")).unwrap();
        assert!(pos("Q1") < pos("Q2") && pos("Q2") < pos("Q3"));
    }

    #[test]
    fn the_digest_carries_no_content_and_no_identifiers() {
        let d = digest();
        for part in [d.text(), d.html(), d.subject()] {
            for secret in [
                "EHCP",
                "Jamie",
                "jamie.smith2010",
                "mum@example.org",
                "A123456789012",
                "A12",
                ".docx",
                "pupil-personal-address",
            ] {
                assert!(!part.contains(secret), "{secret:?} in:\n{part}");
            }
        }
        // The safeguarding hold's sender is not named either.
        let line = d
            .text()
            .lines()
            .find(|l| l.contains("Sun 6 Dec 2026, 16:00 GMT"))
            .expect("Q2's line")
            .to_string();
        assert!(!line.contains("t.baker"), "{line}");
    }

    #[test]
    fn without_a_web_address_the_link_is_the_command_and_nothing_held_says_so() {
        let tz = TimeZone::get("Europe/London").unwrap();
        let d = Digest::build(
            "Example Academy",
            &[],
            at("2026-12-07T07:30:00Z"),
            &tz,
            None,
        );
        assert_eq!(
            d.subject(),
            "Quarantine digest: nothing waiting, 0 held in the last 24 hours"
        );
        assert!(d.text().contains("Still held (waiting for a decision): 0"));
        assert_eq!(d.link("Q9"), "schoolgate quarantine show Q9 --as NAME");
        // In summer the time says BST.
        let d = Digest::build("X", &[], at("2026-06-10T06:30:00Z"), &tz, None);
        assert!(
            d.text().contains("Wed 10 Jun 2026, 07:30 BST"),
            "{}",
            d.text()
        );
    }

    #[test]
    fn a_long_quarantine_lists_the_oldest_and_counts_the_rest() {
        let tz = TimeZone::get("Europe/London").unwrap();
        let entries: Vec<Held> = (0..250)
            .map(|n| {
                held(
                    &format!("Q{n:03}"),
                    &format!("2026-11-{:02}T10:{:02}:00Z", 1 + n / 60, n % 60),
                    "held",
                    sensitive(),
                )
            })
            .collect();
        let d = Digest::build("X", &entries, at("2026-12-07T07:30:00Z"), &tz, None);
        assert_eq!((d.waiting.len(), d.waiting_total), (MAX_LISTED, 250));
        assert_eq!(d.waiting[0].id, "Q000");
        assert!(d.text().contains("… and 50 more"));
    }
}
