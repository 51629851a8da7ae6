//! Safeguarding cases: every flagged message is a case in the DSL's queue, `new` until the DSL
//! records an outcome, `reviewed` after; a reviewed case can be reopened.
//!
//! A case is one flagged message, named by `seq`, the audit seq of the message record carrying
//! the flags. Reviews and reopenings are audit records of kind `case-review`
//! ([`CaseReviewRecord`]); the state of a case is `reviewed` when its latest such record is a
//! review, else `new`, and the outcome shown is that latest review's. Pure: the records come in,
//! the cases, their state and their plain-text block come out; no I/O.

use std::fmt;
use std::str::FromStr;

use crate::store::{AuditRecord, CaseReviewRecord, MessageRecord};

/// What the DSL concluded about a case (the names the command line and the audit trail use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing of concern: the flag was a false alarm or had a good reason.
    NoConcern,
    /// A low-level concern about an adult's conduct, recorded under the school's policy.
    LowLevelConcern,
    /// A concern logged in the school's safeguarding record (CPOMS, MyConcern).
    ConcernLogged,
    /// Referred on (children's social care, the LADO, the police).
    Referred,
    /// Managed as an allegation against a member of staff.
    AllegationManaged,
    /// Anything else (the note says what).
    Other,
}

impl Outcome {
    /// Every outcome, in the order the review form offers them.
    pub const ALL: [Outcome; 6] = [
        Outcome::NoConcern,
        Outcome::LowLevelConcern,
        Outcome::ConcernLogged,
        Outcome::Referred,
        Outcome::AllegationManaged,
        Outcome::Other,
    ];

    /// The name stored in the audit trail and typed on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::NoConcern => "no-concern",
            Outcome::LowLevelConcern => "low-level-concern",
            Outcome::ConcernLogged => "concern-logged",
            Outcome::Referred => "referred",
            Outcome::AllegationManaged => "allegation-managed",
            Outcome::Other => "other",
        }
    }

    /// How the review form and the text block say it.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::NoConcern => "No concern",
            Outcome::LowLevelConcern => "Low-level concern",
            Outcome::ConcernLogged => "Concern logged",
            Outcome::Referred => "Referred",
            Outcome::AllegationManaged => "Allegation managed",
            Outcome::Other => "Other",
        }
    }

    fn names() -> String {
        Outcome::ALL.map(Outcome::as_str).join(", ")
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = CaseError;
    fn from_str(s: &str) -> Result<Self, CaseError> {
        let s = s.trim();
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| CaseError::Outcome(s.to_string(), Outcome::names()))
    }
}

/// Where a case stands in the DSL's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseState {
    /// Not reviewed yet, or reopened.
    New,
    /// Reviewed, with an outcome.
    Reviewed,
}

impl CaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseState::New => "new",
            CaseState::Reviewed => "reviewed",
        }
    }
}

impl FromStr for CaseState {
    type Err = CaseError;
    fn from_str(s: &str) -> Result<Self, CaseError> {
        match s.trim() {
            "new" => Ok(CaseState::New),
            "reviewed" => Ok(CaseState::Reviewed),
            other => Err(CaseError::State(other.to_string())),
        }
    }
}

/// What is wrong with a review, a filter or a case number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaseError {
    #[error("{0:?} is not an outcome; the outcomes are {1}")]
    Outcome(String, String),
    #[error("{0:?} is not a case state; the states are new and reviewed")]
    State(String),
    #[error("a review needs a note saying what was found and done (--note TEXT)")]
    NoNote,
    #[error(
        "audit record {0} is not a flagged message, so it is no case; `schoolgate flags list` shows the cases and their numbers"
    )]
    NotACase(u64),
    #[error("case {0} is not reviewed, so there is nothing to reopen")]
    NotReviewed(u64),
}

/// One review or reopening of a case, with its own place in the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    /// The audit seq of the case-review record.
    pub seq: u64,
    /// When (UTC, RFC 3339).
    pub time: String,
    pub record: CaseReviewRecord,
}

impl Review {
    pub fn is_review(&self) -> bool {
        self.record.action == "review"
    }
}

/// One flagged message and what the DSL did about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// The audit seq of the message record (the case's number).
    pub seq: u64,
    /// When the message came (UTC, RFC 3339).
    pub time: String,
    pub message: MessageRecord,
    /// Reviews and reopenings, oldest first.
    pub reviews: Vec<Review>,
}

impl Case {
    /// `reviewed` when the latest case-review record is a review, else `new`.
    pub fn state(&self) -> CaseState {
        match self.reviews.last() {
            Some(r) if r.is_review() => CaseState::Reviewed,
            _ => CaseState::New,
        }
    }

    /// The review in force: the latest record, when it is a review.
    pub fn latest_review(&self) -> Option<&Review> {
        self.reviews.last().filter(|r| r.is_review())
    }

    /// The names of the safeguarding rules that matched, each once, in order.
    pub fn rules(&self) -> Vec<String> {
        let mut rules: Vec<String> = Vec::new();
        for f in &self.message.flags {
            if !rules.contains(&f.rule) {
                rules.push(f.rule.clone());
            }
        }
        rules
    }

    /// Who sent it: the envelope sender, else the From header.
    pub fn sender(&self) -> &str {
        if self.message.mail_from.is_empty() {
            self.message.header_from.as_deref().unwrap_or("")
        } else {
            &self.message.mail_from
        }
    }

    /// Whether the case passes `filter`.
    pub fn matches(&self, filter: &Filter) -> bool {
        if filter.state.is_some_and(|s| s != self.state()) {
            return false;
        }
        if let Some(rule) = &filter.rule
            && !self.message.flags.iter().any(|f| &f.rule == rule)
        {
            return false;
        }
        if let Some(person) = &filter.person {
            let person = person.trim().to_lowercase();
            let m = &self.message;
            let hit = std::iter::once(&m.mail_from)
                .chain(&m.rcpt_to)
                .chain(&m.header_from)
                .chain(&m.header_to)
                .chain(&m.header_cc)
                .any(|a| a.to_lowercase().contains(&person));
            if !hit {
                return false;
            }
        }
        let at = self.time.parse::<jiff::Timestamp>().ok();
        if let (Some(since), Some(at)) = (filter.since, at)
            && at < since
        {
            return false;
        }
        if let (Some(until), Some(at)) = (filter.until, at)
            && at >= until
        {
            return false;
        }
        true
    }

    /// The case as one plain block of text to paste into CPOMS or MyConcern: who, to whom,
    /// when (in the school's time zone `tz`), what rule, the evidence, the outcome. Control
    /// characters from the mail are escaped.
    pub fn text_block(&self, tz: &jiff::tz::TimeZone) -> String {
        let m = &self.message;
        let mut out = String::new();
        let mut line = |label: &str, value: &str| {
            out.push_str(&format!("{label:<13}{}\n", escape(value)));
        };
        line("Case:", &format!("schoolgate case {}", self.seq));
        line("From:", self.sender());
        line("To:", &m.rcpt_to.join(", "));
        if !m.header_cc.is_empty() {
            line("Cc:", &m.header_cc.join(", "));
        }
        line("Sent:", &local_time(&self.time, tz));
        line("Subject:", m.subject.as_deref().unwrap_or("(none)"));
        line("Rules:", &self.rules().join(", "));
        line("Delivery:", &format!("{} ({})", m.outcome, m.verdict));
        if let Some(id) = &m.quarantine_id {
            line("Held:", &format!("quarantine entry {id}"));
        }
        if let Some(e) = &m.evidence {
            line("Evidence:", &format!("copy kept by schoolgate as {e}"));
        }
        for f in &m.flags {
            let mut s = format!("{}: {}", f.rule, f.detail);
            if !f.evidence.is_empty() {
                s.push_str(&format!(" [{}]", f.evidence));
            }
            line("Flag:", &s);
        }
        match self.latest_review() {
            Some(r) => {
                let outcome = r.record.outcome.as_deref().unwrap_or("none");
                let label = outcome
                    .parse::<Outcome>()
                    .map(|o| o.label().to_string())
                    .unwrap_or_else(|_| outcome.to_string());
                line(
                    "Outcome:",
                    &format!(
                        "{label} (by {} on {})",
                        r.record.actor,
                        local_time(&r.time, tz)
                    ),
                );
                if let Some(reference) = &r.record.reference {
                    line("Reference:", reference);
                }
                line("Note:", &r.record.note);
            }
            None => line("Outcome:", "not reviewed yet"),
        }
        out
    }
}

/// Which cases to show. Empty: all of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub state: Option<CaseState>,
    /// A rule name, exactly.
    pub rule: Option<String>,
    /// Part of an address among the sender, recipients and headers (case-insensitive).
    pub person: Option<String>,
    /// Only messages from this instant on.
    pub since: Option<jiff::Timestamp>,
    /// Only messages before this instant.
    pub until: Option<jiff::Timestamp>,
}

/// The cases among `records` (audit seq and record, in sequence order): every message record
/// with flags, each with the case-review records that name it. A review naming no case is
/// ignored. Newest case first.
pub fn assemble(records: impl IntoIterator<Item = (u64, AuditRecord)>) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let mut reviews: Vec<Review> = Vec::new();
    for (seq, record) in records {
        if let Some(m) = record.message
            && !m.flags.is_empty()
        {
            cases.push(Case {
                seq,
                time: record.time,
                message: m,
                reviews: Vec::new(),
            });
        } else if let Some(c) = record.case_review {
            reviews.push(Review {
                seq,
                time: record.time,
                record: c,
            });
        }
    }
    cases.sort_by_key(|c| c.seq);
    reviews.sort_by_key(|r| r.seq);
    for r in reviews {
        if let Ok(i) = cases.binary_search_by_key(&r.record.case_seq, |c| c.seq) {
            cases[i].reviews.push(r);
        }
    }
    cases.reverse();
    cases
}

/// A review of case `case`, checked: the outcome one of the six, a note given.
pub fn review(
    case: &Case,
    outcome: &str,
    note: &str,
    reference: Option<&str>,
    actor: &str,
) -> Result<CaseReviewRecord, CaseError> {
    let outcome: Outcome = outcome.parse()?;
    let note = note.trim();
    if note.is_empty() {
        return Err(CaseError::NoNote);
    }
    Ok(CaseReviewRecord {
        case_seq: case.seq,
        action: "review".into(),
        outcome: Some(outcome.as_str().into()),
        note: note.into(),
        reference: reference
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(String::from),
        actor: actor.into(),
    })
}

/// Reopening case `case`: only a reviewed case can be reopened.
pub fn reopen(case: &Case, note: &str, actor: &str) -> Result<CaseReviewRecord, CaseError> {
    if case.state() != CaseState::Reviewed {
        return Err(CaseError::NotReviewed(case.seq));
    }
    Ok(CaseReviewRecord {
        case_seq: case.seq,
        action: "reopen".into(),
        outcome: None,
        note: note.trim().into(),
        reference: None,
        actor: actor.into(),
    })
}

/// Whether `account` may see a case about `sender`. A case about the headteacher or a DSL
/// (`escalated`, see [`crate::alerts::concerns_escalation`]) is seen only by an account listed
/// for escalation: its name is one of `escalate_to` (the addresses escalated alerts go to), or,
/// when `escalate_to` is empty, any DSL account but the sender's own (alerts then go to the
/// other DSLs). Every other case is seen by every DSL account.
pub fn visible_to(account: &str, sender: &str, escalated: bool, escalate_to: &[String]) -> bool {
    if !escalated {
        return true;
    }
    let account = account.trim();
    if account.eq_ignore_ascii_case(sender.trim()) {
        return false;
    }
    escalate_to.is_empty()
        || escalate_to
            .iter()
            .any(|a| a.trim().eq_ignore_ascii_case(account))
}

/// Whether the web or command-line `account` may see `case`: [`visible_to`] with the school's
/// escalation rule ([`crate::alerts::concerns_escalation`]) and `[safeguarding] escalate_to`.
pub fn may_see(
    config: &crate::config::Config,
    directory: &crate::directory::Directory,
    account: &str,
    case: &Case,
) -> bool {
    let escalated = crate::alerts::concerns_escalation(config, directory, case.sender());
    let list: Vec<String> = config
        .safeguarding
        .escalate_to
        .iter()
        .map(|a| a.0.clone())
        .collect();
    visible_to(account, case.sender(), escalated, &list)
}

/// `text` with every unsafe character escaped (`\n`, `\u{1b}`, see [`crate::display`]), so mail
/// cannot move a terminal's cursor or forge lines in what is printed or pasted.
pub fn escape(text: &str) -> String {
    crate::display::text(text).into_owned()
}

/// `2026-11-23 10:01 GMT` in `tz`, or the time as stored when it does not parse.
pub fn local_time(t: &str, tz: &jiff::tz::TimeZone) -> String {
    match t.parse::<jiff::Timestamp>() {
        Ok(ts) => ts
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M %Z")
            .to_string(),
        Err(_) => t.to_string(),
    }
}

/// The school's time zone (`school.timezone`), or UTC when it is unknown.
pub fn school_zone(config: &crate::config::Config) -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get(&config.school.timezone).unwrap_or(jiff::tz::TimeZone::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FlagRecord, RecordKind};

    fn flagged(time: &str, from: &str, rule: &str) -> AuditRecord {
        AuditRecord {
            time: time.into(),
            ..AuditRecord::message(MessageRecord {
                mail_from: from.into(),
                rcpt_to: vec!["pupil.home@gmail.com".into()],
                subject: Some("Trip\r\nBcc: x".into()),
                flags: vec![FlagRecord {
                    rule: rule.into(),
                    detail: "a pupil's personal address".into(),
                    evidence: "pupil.home@gmail.com".into(),
                    action: "flag".into(),
                }],
                evidence: Some("evidence/Q1.eml".into()),
                verdict: "deliver".into(),
                outcome: "delivered".into(),
                ..MessageRecord::default()
            })
        }
    }

    fn review_record(case_seq: u64, action: &str, outcome: Option<&str>) -> AuditRecord {
        AuditRecord {
            time: "2026-12-02T09:00:00Z".into(),
            ..AuditRecord::case_review(CaseReviewRecord {
                case_seq,
                action: action.into(),
                outcome: outcome.map(String::from),
                note: "spoke to the teacher".into(),
                reference: Some("CPOMS-881".into()),
                actor: "dsl".into(),
            })
        }
    }

    fn trail() -> Vec<(u64, AuditRecord)> {
        vec![
            (1, AuditRecord::now(RecordKind::Start)),
            (
                2,
                flagged(
                    "2026-12-01T10:00:00Z",
                    "t.baker@school.sch.uk",
                    "pupil-personal-address",
                ),
            ),
            (
                3,
                AuditRecord::message(MessageRecord {
                    verdict: "deliver".into(),
                    ..MessageRecord::default()
                }),
            ),
            (
                4,
                flagged(
                    "2026-12-01T22:00:00Z",
                    "a.smith@school.sch.uk",
                    "out-of-hours-pupil-contact",
                ),
            ),
            (5, review_record(2, "review", Some("no-concern"))),
            (6, review_record(3, "review", Some("referred"))),
        ]
    }

    #[test]
    fn every_flagged_message_is_a_case_newest_first() {
        let cases = assemble(trail());
        assert_eq!(cases.iter().map(|c| c.seq).collect::<Vec<_>>(), [4, 2]);
        assert_eq!(cases[0].state(), CaseState::New);
        assert_eq!(cases[1].state(), CaseState::Reviewed);
        assert_eq!(
            cases[1].latest_review().unwrap().record.outcome.as_deref(),
            Some("no-concern")
        );
    }

    #[test]
    fn a_reopened_case_is_new_again_and_a_second_review_wins() {
        let mut t = trail();
        t.push((7, review_record(2, "reopen", None)));
        let cases = assemble(t.clone());
        assert_eq!(cases[1].state(), CaseState::New);
        assert!(cases[1].latest_review().is_none());
        t.push((8, review_record(2, "review", Some("concern-logged"))));
        let cases = assemble(t);
        assert_eq!(cases[1].state(), CaseState::Reviewed);
        assert_eq!(
            cases[1].latest_review().unwrap().record.outcome.as_deref(),
            Some("concern-logged")
        );
        assert_eq!(cases[1].reviews.len(), 3);
    }

    #[test]
    fn the_six_outcomes_parse_and_nothing_else_does() {
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>(), Ok(o));
        }
        let e = "concern".parse::<Outcome>().unwrap_err().to_string();
        assert!(
            e.contains(
                "no-concern, low-level-concern, concern-logged, referred, allegation-managed, other"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_review_needs_a_known_outcome_and_a_note_and_only_reviewed_cases_reopen() {
        let cases = assemble(trail());
        let new = &cases[0];
        assert!(matches!(
            review(new, "fine", "x", None, "dsl"),
            Err(CaseError::Outcome(..))
        ));
        assert_eq!(
            review(new, "referred", "  ", None, "dsl"),
            Err(CaseError::NoNote)
        );
        let r = review(new, "referred", "to the LADO", Some(" "), "dsl").unwrap();
        assert_eq!(r.case_seq, 4);
        assert_eq!(r.reference, None);
        assert_eq!(reopen(new, "", "dsl"), Err(CaseError::NotReviewed(4)));
        assert_eq!(
            reopen(&cases[1], "new evidence", "dsl").unwrap().action,
            "reopen"
        );
    }

    #[test]
    fn filters_by_state_rule_person_and_date() {
        let cases = assemble(trail());
        let pick = |f: Filter| {
            cases
                .iter()
                .filter(|c| c.matches(&f))
                .map(|c| c.seq)
                .collect::<Vec<_>>()
        };
        assert_eq!(pick(Filter::default()), [4, 2]);
        let state = |s| Filter {
            state: Some(s),
            ..Filter::default()
        };
        assert_eq!(pick(state(CaseState::New)), [4]);
        assert_eq!(pick(state(CaseState::Reviewed)), [2]);
        assert_eq!(
            pick(Filter {
                rule: Some("out-of-hours-pupil-contact".into()),
                ..Filter::default()
            }),
            [4]
        );
        assert_eq!(
            pick(Filter {
                person: Some("T.Baker".into()),
                ..Filter::default()
            }),
            [2]
        );
        assert_eq!(
            pick(Filter {
                since: Some("2026-12-01T12:00:00Z".parse().unwrap()),
                ..Filter::default()
            }),
            [4]
        );
        assert_eq!(
            pick(Filter {
                until: Some("2026-12-01T12:00:00Z".parse().unwrap()),
                ..Filter::default()
            }),
            [2]
        );
    }

    #[test]
    fn the_text_block_says_who_what_when_and_the_outcome_without_control_characters() {
        let cases = assemble(trail());
        let london = jiff::tz::TimeZone::get("Europe/London").unwrap();
        let text = cases[1].text_block(&london);
        for want in [
            "schoolgate case 2",
            "t.baker@school.sch.uk",
            "pupil.home@gmail.com",
            "2026-12-01 10:00 GMT",
            "pupil-personal-address",
            "evidence/Q1.eml",
            "No concern (by dsl on 2026-12-02 09:00 GMT)",
            "CPOMS-881",
            "spoke to the teacher",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
        assert!(text.contains("Trip\\r\\nBcc: x"), "{text}");
        assert!(!text.contains('\r'));
        assert!(cases[0].text_block(&london).contains("not reviewed yet"));
        let mut summer = cases[1].clone();
        summer.time = "2026-07-01T10:00:00Z".into();
        assert!(summer.text_block(&london).contains("2026-07-01 11:00 BST"));
    }

    #[test]
    fn cases_about_the_head_or_a_dsl_are_seen_only_by_those_listed_for_escalation() {
        let list = vec!["chair@school.sch.uk".to_string()];
        assert!(visible_to("dsl", "t.baker@school.sch.uk", false, &list));
        assert!(!visible_to("dsl", "head@school.sch.uk", true, &list));
        assert!(visible_to(
            "Chair@school.sch.uk",
            "head@school.sch.uk",
            true,
            &list
        ));
        // No escalation list: the other DSLs, never the person it is about.
        assert!(visible_to("dsl2", "dsl1@school.sch.uk", true, &[]));
        assert!(!visible_to(
            "dsl1@school.sch.uk",
            "dsl1@school.sch.uk",
            true,
            &[]
        ));
        assert!(!visible_to(
            "head@school.sch.uk",
            "head@school.sch.uk",
            true,
            &list
        ));
    }
}
