//! The DSL's weekly report (issue 14, part 4): what the audit trail says about one period.
//!
//! The DfE's filtering and monitoring standard gives the DSL "weekly monitoring reports". This
//! module is pure: audit records go in one at a time ([`Builder::add`], in sequence order, so a
//! trail of any size streams through), a [`Report`] comes out, and [`render`] writes it as
//! text, HTML (for mail) or CSV (for Excel). Reading the trail, verifying the chain, mailing and
//! auditing the report are the shells' ([`crate::cli::report`], [`crate::smtp::weekly_report`]).
//!
//! What concerns the headteacher or a DSL (a flagged message they sent) is never in the DSLs'
//! copy: it goes only into the copy for `[safeguarding] escalate_to` ([`Audience::Escalation`]),
//! as KCSIE asks for a concern about the head.

pub mod render;
pub mod schedule;
pub mod trail;

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::store::{ActionRecord, ChainHead, MessageRecord};

/// The sensitive-attachment rules, whose holds are the network manager's.
pub const ATTACHMENT_RULES: [&str; 2] =
    ["unencrypted-sensitive-attachment", "unscannable-attachment"];

/// The detail an undelivered alert is recorded with (an action record).
pub const UNDELIVERED_PREFIX: &str = crate::alerts::UNDELIVERED;

/// Whom a copy of the report is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The DSLs: everything except what concerns the headteacher or a DSL.
    Dsl,
    /// `[safeguarding] escalate_to`: only what concerns the headteacher or a DSL.
    Escalation,
}

impl Audience {
    pub fn describe(self) -> &'static str {
        match self {
            Audience::Dsl => "the Designated Safeguarding Leads",
            Audience::Escalation => {
                "escalation (safeguarding.escalate_to): only what concerns the headteacher or a DSL"
            }
        }
    }
}

/// The period a report covers: `[since, until)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub since: jiff::Timestamp,
    pub until: jiff::Timestamp,
}

impl Period {
    /// The week up to `now`: from the same time of day 7 days before, on the school's clock
    /// (so a week across a clock change is still Monday 07:30 to Monday 07:30).
    pub fn last_week(now: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> Period {
        let since = now
            .to_zoned(tz.clone())
            .checked_sub(jiff::Span::new().days(7))
            .map(|z| z.timestamp())
            .unwrap_or(now - jiff::SignedDuration::from_hours(7 * 24));
        Period { since, until: now }
    }

    pub fn contains(&self, t: jiff::Timestamp) -> bool {
        self.since <= t && t < self.until
    }
}

/// What the report needs to know about people (the directory and config, behind a seam so
/// the core stays pure and testable).
pub trait People {
    /// The person's name for `address`, when the directory knows them.
    fn name(&self, address: &str) -> Option<String>;
    /// Whether a flag on mail from `sender` concerns the headteacher or a DSL (and so goes to
    /// `escalate_to`, never to the DSLs' copy).
    fn concerns_escalation(&self, sender: &str) -> bool;
}

/// One case: a flagged message (the `seq` of its message record).
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub seq: u64,
    pub time: jiff::Timestamp,
    pub sender: String,
    pub sender_name: Option<String>,
    pub recipients: Vec<String>,
    pub subject: String,
    pub rules: Vec<String>,
    /// What happened to the message (`delivered`, `quarantined`, ...).
    pub outcome: String,
    pub quarantine_id: Option<String>,
}

/// A DSL's review of a case, from its `case-review` record.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub time: jiff::Timestamp,
    /// `review` or `reopen`.
    pub action: String,
    pub outcome: Option<String>,
    pub note: String,
    pub reference: Option<String>,
    pub actor: String,
}

/// A reviewed case and its latest review.
#[derive(Debug, Clone, PartialEq)]
pub struct Reviewed {
    pub case: Case,
    pub review: Review,
}

/// What became of a held message.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    StillHeld,
    Released {
        by: String,
        time: jiff::Timestamp,
        detail: String,
    },
    Deleted {
        by: String,
        time: jiff::Timestamp,
        detail: String,
    },
}

impl Fate {
    pub fn describe(&self, tz: &jiff::tz::TimeZone) -> String {
        match self {
            Fate::StillHeld => "still held".into(),
            Fate::Released { by, time, detail } => {
                format!("released by {by} on {}{}", local(*time, tz), with(detail))
            }
            Fate::Deleted { by, time, detail } => {
                format!("deleted by {by} on {}{}", local(*time, tz), with(detail))
            }
        }
    }

    /// The time of the release or delete.
    pub fn time(&self) -> Option<jiff::Timestamp> {
        match self {
            Fate::StillHeld => None,
            Fate::Released { time, .. } | Fate::Deleted { time, .. } => Some(*time),
        }
    }
}

fn with(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// A held message.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    pub id: String,
    /// The message record's seq and time (unknown when the record was purged).
    pub seq: Option<u64>,
    pub time: Option<jiff::Timestamp>,
    pub sender: String,
    pub recipients: Vec<String>,
    pub subject: String,
    /// The rules it was held for.
    pub rules: Vec<String>,
    pub fate: Fate,
}

/// Flags of one rule, or of one staff member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    /// The rule, or the sender's address.
    pub key: String,
    /// The sender's name (by staff member only).
    pub name: Option<String>,
    /// Flagged messages.
    pub messages: usize,
    /// The rules (by staff member only).
    pub rules: Vec<String>,
}

/// An alert that could not be delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Undelivered {
    pub seq: u64,
    pub time: jiff::Timestamp,
    pub detail: String,
}

/// The chain's state when the report was made: the head and what `audit verify` said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChainStatus {
    pub head: Option<ChainHead>,
    /// How many records verify checked.
    pub records: u64,
    /// `None` when intact; else where and why it is broken.
    pub broken: Option<String>,
}

impl ChainStatus {
    /// The head as `SEQ:HASH` (what `audit verify --checkpoint` takes), or "empty".
    pub fn head_line(&self) -> String {
        match &self.head {
            Some(h) => format!("{}:{}", h.seq, h.hash),
            None => "none (the audit trail is empty)".into(),
        }
    }

    /// What `audit verify` said, in one line.
    pub fn verify_line(&self) -> String {
        match &self.broken {
            None => format!("intact ({} records checked)", self.records),
            Some(why) => format!("BROKEN: {why}"),
        }
    }
}

/// The report for one period and one audience.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub school: String,
    pub audience: Audience,
    pub period: Period,
    /// When it was made.
    pub made: jiff::Timestamp,
    /// The school's time zone, times are shown in.
    pub tz: jiff::tz::TimeZone,
    /// Flagged messages in the period by rule (safeguarding and sensitive-attachment rules),
    /// most first.
    pub by_rule: Vec<Count>,
    /// Flagged messages in the period by sender, most first.
    pub by_staff: Vec<Count>,
    /// Flagged messages in the period.
    pub flagged: usize,
    /// Cases not reviewed by the end of the period (whenever flagged), oldest first.
    pub unreviewed: Vec<Case>,
    /// Cases reviewed in the period (and not reopened since), in order of review.
    pub reviewed: Vec<Reviewed>,
    /// Messages held by a safeguarding rule in the period, and what became of them.
    pub safeguarding_holds: Vec<Hold>,
    /// Sensitive-attachment holds released or deleted in the period, and by whom.
    pub attachment_holds: Vec<Hold>,
    /// Alerts that could not be delivered, in the period.
    pub undelivered: Vec<Undelivered>,
    pub chain: ChainStatus,
    /// Records the report could not read (written by a newer schoolgate, or damaged).
    pub unreadable: Vec<u64>,
}

impl Report {
    /// The age of a case at the end of the period (or now, if sooner).
    pub fn age(&self, case: &Case) -> jiff::SignedDuration {
        self.period.until.min(self.made).duration_since(case.time)
    }

    /// Whether anything at all is in it (an escalation copy with nothing is not sent).
    pub fn is_empty(&self) -> bool {
        self.flagged == 0
            && self.unreviewed.is_empty()
            && self.reviewed.is_empty()
            && self.safeguarding_holds.is_empty()
            && self.attachment_holds.is_empty()
            && self.undelivered.is_empty()
    }
}

/// One school's line of the trust summary: its DSLs' copy, and how many of its flags went to
/// its escalation copy instead (counted only: who they concern is escalation's to read).
#[derive(Debug, Clone, PartialEq)]
pub struct SchoolLine {
    pub report: Report,
    pub escalated: usize,
}

/// The trust summary, for the trust-wide DSLs: each school's counts side by side, and those of
/// mail from no school's domain (the trust-wide defaults decided it).
#[derive(Debug, Clone, PartialEq)]
pub struct TrustSummary {
    pub trust: String,
    pub period: Period,
    pub made: jiff::Timestamp,
    pub tz: jiff::tz::TimeZone,
    /// Each school, in the config's order.
    pub schools: Vec<SchoolLine>,
    /// Mail from no school of the trust.
    pub no_school: SchoolLine,
    pub chain: ChainStatus,
}

impl TrustSummary {
    /// Every line: the schools', then "no school".
    pub fn lines(&self) -> impl Iterator<Item = &SchoolLine> {
        self.schools.iter().chain(std::iter::once(&self.no_school))
    }
}

/// An instant in the school's time zone, to the minute.
pub fn local(t: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> String {
    t.to_zoned(tz.clone())
        .strftime("%a %Y-%m-%d %H:%M")
        .to_string()
}

/// An age in words: "3 days 4 hours", "2 hours 5 minutes", "40 minutes".
pub fn age_words(d: jiff::SignedDuration) -> String {
    let mins = d.as_secs().max(0) / 60;
    let (days, hours, minutes) = (mins / 1440, (mins % 1440) / 60, mins % 60);
    let unit = |n: i64, one: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {one}s")
        }
    };
    if days > 0 {
        format!("{} {}", unit(days, "day"), unit(hours, "hour"))
    } else if hours > 0 {
        format!("{} {}", unit(hours, "hour"), unit(minutes, "minute"))
    } else {
        unit(minutes, "minute")
    }
}

/// Text from mail or people (subjects, addresses, notes) as one safe line: the one sanitiser
/// every mail schoolgate writes uses.
pub use crate::alerts::one_line;

/// A case-review record's review (kind `case-review`), read by its JSON shape alone.
#[derive(Debug, Deserialize)]
struct RawReview {
    case_seq: u64,
    action: String,
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    note: String,
    #[serde(default)]
    reference: Option<String>,
    actor: String,
}

/// A record as stored, with its kind as text so kinds this build does not know still read.
#[derive(Debug, Deserialize)]
struct RawRecord {
    time: String,
    kind: String,
    #[serde(default)]
    message: Option<MessageRecord>,
    #[serde(default)]
    action: Option<ActionRecord>,
    #[serde(default)]
    case_review: Option<RawReview>,
}

/// A message that matched a rule, as far as the report needs it.
#[derive(Debug, Clone)]
struct Flagged {
    case: Case,
    /// Its sender is the headteacher or a DSL and it has a safeguarding flag.
    concerns: bool,
    /// It has a safeguarding flag (so it is a case).
    is_case: bool,
    in_period: bool,
    /// Rules it was held for, by kind.
    held_safeguarding: bool,
    held_attachment: bool,
    held_rules: Vec<String>,
}

/// Whose mail a report covers, by the message record's `school` (a trust's reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every message: a single school's report, and the trust-wide view.
    All,
    /// The messages of one school of the trust (named as `[[schools]] name` gives it).
    School(String),
    /// The messages that belong to no school of the trust (the trust-wide defaults decided them).
    NoSchool,
}

impl Scope {
    /// Whether a message recorded with `school` is in this scope.
    pub fn covers(&self, school: Option<&str>) -> bool {
        match self {
            Scope::All => true,
            Scope::School(name) => school.is_some_and(|s| s.eq_ignore_ascii_case(name)),
            Scope::NoSchool => school.is_none_or(|s| s.trim().is_empty()),
        }
    }
}

/// Reads audit records one at a time and builds the report.
pub struct Builder<'a> {
    period: Period,
    people: &'a dyn People,
    scope: Scope,
    /// Every message that matched a rule up to the end of the period, by seq.
    flagged: BTreeMap<u64, Flagged>,
    /// Quarantine id → the seq of its message record.
    held: BTreeMap<String, u64>,
    /// The latest review of each case up to the end of the period.
    reviews: BTreeMap<u64, Review>,
    /// What became of each quarantine entry (first release or delete, whenever).
    fates: BTreeMap<String, Fate>,
    undelivered: Vec<(u64, jiff::Timestamp, String)>,
    unreadable: Vec<u64>,
}

impl<'a> Builder<'a> {
    pub fn new(period: Period, people: &'a dyn People) -> Self {
        Builder {
            period,
            people,
            scope: Scope::All,
            flagged: BTreeMap::new(),
            held: BTreeMap::new(),
            reviews: BTreeMap::new(),
            fates: BTreeMap::new(),
            undelivered: Vec::new(),
            unreadable: Vec::new(),
        }
    }

    /// Only the messages of `scope` (and the reviews, holds and undelivered alerts about them).
    pub fn scoped(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// Reads record `seq` (its stored JSON); records must come in sequence order.
    pub fn add(&mut self, seq: u64, record_json: &str) {
        let Ok(r) = serde_json::from_str::<RawRecord>(record_json) else {
            self.unreadable.push(seq);
            return;
        };
        let Ok(time) = r.time.parse::<jiff::Timestamp>() else {
            self.unreadable.push(seq);
            return;
        };
        match r.kind.as_str() {
            "message" => {
                if let Some(m) = r.message
                    && time < self.period.until
                {
                    self.message(seq, time, m);
                }
            }
            "case-review" => {
                if let Some(review) = r.case_review
                    && time < self.period.until
                {
                    self.reviews.insert(
                        review.case_seq,
                        Review {
                            time,
                            action: review.action,
                            outcome: review.outcome,
                            note: review.note,
                            reference: review.reference,
                            actor: review.actor,
                        },
                    );
                }
            }
            "action" => {
                if let Some(a) = r.action {
                    self.action(seq, time, a);
                }
            }
            _ => {}
        }
    }

    fn message(&mut self, seq: u64, time: jiff::Timestamp, m: MessageRecord) {
        if m.flags.is_empty() && m.findings.is_empty() {
            return;
        }
        if !self.scope.covers(m.school.as_deref()) {
            return;
        }
        let mut rules: Vec<String> = m
            .flags
            .iter()
            .map(|f| f.rule.clone())
            .chain(m.findings.iter().map(|f| f.rule.clone()))
            .collect();
        dedup(&mut rules);
        let is_case = !m.flags.is_empty();
        let sender = m.mail_from.trim().to_lowercase();
        let concerns = is_case && self.people.concerns_escalation(&sender);
        let held = m.outcome == "quarantined";
        let mut held_rules: Vec<String> = if held {
            m.flags
                .iter()
                .map(|f| (&f.rule, &f.action))
                .chain(m.findings.iter().map(|f| (&f.rule, &f.action)))
                .filter(|(_, a)| a.as_str() == "quarantine")
                .map(|(r, _)| r.clone())
                .collect()
        } else {
            Vec::new()
        };
        dedup(&mut held_rules);
        let held_safeguarding = held_rules
            .iter()
            .any(|r| crate::policy::holds::is_safeguarding_rule(r));
        let held_attachment = held_rules
            .iter()
            .any(|r| ATTACHMENT_RULES.contains(&r.as_str()));
        let case = Case {
            seq,
            time,
            sender_name: self.people.name(&sender),
            sender,
            recipients: m.rcpt_to.clone(),
            subject: m.subject.clone().unwrap_or_default(),
            rules,
            outcome: m.outcome.clone(),
            quarantine_id: m.quarantine_id.clone(),
        };
        if held && let Some(id) = &m.quarantine_id {
            self.held.insert(id.clone(), seq);
        }
        self.flagged.insert(
            seq,
            Flagged {
                case,
                concerns,
                is_case,
                in_period: self.period.contains(time),
                held_safeguarding,
                held_attachment,
                held_rules,
            },
        );
    }

    fn action(&mut self, seq: u64, time: jiff::Timestamp, a: ActionRecord) {
        let detail = a.detail.trim();
        if let Some(rest) = detail.strip_prefix(UNDELIVERED_PREFIX) {
            if self.period.contains(time) {
                self.undelivered.push((seq, time, rest.trim().to_string()));
            }
            return;
        }
        let fate = |verb: &str| -> Option<(String, String)> {
            let rest = detail.strip_prefix("quarantine ")?.strip_prefix(verb)?;
            let rest = rest.strip_prefix(' ')?;
            let (id, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            let said = rest.split_once(": ").map_or("", |(_, s)| s).trim();
            Some((id.to_string(), said.to_string()))
        };
        if let Some((id, _)) = fate("release") {
            // The rest is the envelope and the next hop's reply; the reason, when the release
            // carries one ("by NAME (safeguarding hold; reason: WHY): ..."), is what the DSL
            // wants to read.
            let reason = detail
                .split_once("reason: ")
                .and_then(|(_, r)| r.split_once("): "))
                .map_or(String::new(), |(r, _)| r.trim().to_string());
            self.fates.entry(id).or_insert(Fate::Released {
                by: a.actor,
                time,
                detail: reason,
            });
        } else if let Some((id, reason)) = fate("delete") {
            self.fates.entry(id).or_insert(Fate::Deleted {
                by: a.actor,
                time,
                detail: reason,
            });
        } else if let Some(rest) = detail.strip_prefix("retention purge: ")
            && rest.contains("quarantined messages")
            && let Some((what, ids)) = rest.split_once(" deleted: ")
        {
            let why = what
                .split_once(" held longer than ")
                .map_or(String::new(), |(_, d)| {
                    format!("retention, held longer than {d}")
                });
            for id in ids.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                self.fates.entry(id.to_string()).or_insert(Fate::Deleted {
                    by: a.actor.clone(),
                    time,
                    detail: why.clone(),
                });
            }
        }
    }

    /// The report for `audience`, made at `made`, with the chain as verified.
    pub fn finish(
        &self,
        audience: Audience,
        school: &str,
        made: jiff::Timestamp,
        tz: jiff::tz::TimeZone,
        chain: ChainStatus,
    ) -> Report {
        let mine = |f: &Flagged| match audience {
            Audience::Dsl => !f.concerns,
            Audience::Escalation => f.concerns,
        };
        let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
        let mut by_staff: BTreeMap<String, (usize, BTreeSet<String>)> = BTreeMap::new();
        let mut flagged = 0;
        for f in self.flagged.values().filter(|f| f.in_period && mine(f)) {
            flagged += 1;
            for rule in &f.case.rules {
                *by_rule.entry(rule.clone()).or_default() += 1;
            }
            let s = by_staff.entry(f.case.sender.clone()).or_default();
            s.0 += 1;
            s.1.extend(f.case.rules.iter().cloned());
        }
        let mut by_rule: Vec<Count> = by_rule
            .into_iter()
            .map(|(key, messages)| Count {
                key,
                name: None,
                messages,
                rules: Vec::new(),
            })
            .collect();
        by_rule.sort_by(|a, b| b.messages.cmp(&a.messages).then(a.key.cmp(&b.key)));
        let mut by_staff: Vec<Count> = by_staff
            .into_iter()
            .map(|(key, (messages, rules))| Count {
                name: self.people.name(&key),
                key,
                messages,
                rules: rules.into_iter().collect(),
            })
            .collect();
        by_staff.sort_by(|a, b| b.messages.cmp(&a.messages).then(a.key.cmp(&b.key)));

        let cases = || self.flagged.values().filter(|f| f.is_case && mine(f));
        // Sequence order is time order: oldest first.
        let unreviewed: Vec<Case> = cases()
            .filter(|f| {
                self.reviews
                    .get(&f.case.seq)
                    .is_none_or(|r| r.action != "review")
            })
            .map(|f| f.case.clone())
            .collect();
        let mut reviewed: Vec<Reviewed> = cases()
            .filter_map(|f| {
                let r = self.reviews.get(&f.case.seq)?;
                (r.action == "review" && self.period.contains(r.time)).then(|| Reviewed {
                    case: f.case.clone(),
                    review: r.clone(),
                })
            })
            .collect();
        reviewed.sort_by_key(|r| r.review.time);

        let hold = |f: &Flagged, fate: Fate| Hold {
            id: f.case.quarantine_id.clone().unwrap_or_default(),
            seq: Some(f.case.seq),
            time: Some(f.case.time),
            sender: f.case.sender.clone(),
            recipients: f.case.recipients.clone(),
            subject: f.case.subject.clone(),
            rules: f.held_rules.clone(),
            fate,
        };
        let fate_of = |f: &Flagged| {
            f.case
                .quarantine_id
                .as_ref()
                .and_then(|id| self.fates.get(id))
                .cloned()
                .unwrap_or(Fate::StillHeld)
        };
        let safeguarding_holds: Vec<Hold> = self
            .flagged
            .values()
            .filter(|f| f.in_period && f.held_safeguarding && mine(f))
            .map(|f| hold(f, fate_of(f)))
            .collect();
        // Attachment-only holds are the network manager's, whoever sent them: the DSLs' copy.
        let mut attachment_holds: Vec<Hold> = Vec::new();
        for (id, fate) in &self.fates {
            if !fate.time().is_some_and(|t| self.period.contains(t)) {
                continue;
            }
            let f = self.held.get(id).and_then(|seq| self.flagged.get(seq));
            // Attachment-only holds; one whose message record is older than the trail kept is
            // still reported, with what is known.
            let attachment_only = f.is_none_or(|f| f.held_attachment && !f.held_safeguarding);
            // A hold of another school's (or one whose school is unknown) is not this one's.
            let in_scope = f.is_some() || self.scope == Scope::All;
            if audience != Audience::Dsl || !attachment_only || !in_scope {
                continue;
            }
            attachment_holds.push(match f {
                Some(f) => hold(f, fate.clone()),
                None => Hold {
                    id: id.clone(),
                    seq: None,
                    time: None,
                    sender: String::new(),
                    recipients: Vec::new(),
                    subject: String::new(),
                    rules: Vec::new(),
                    fate: fate.clone(),
                },
            });
        }
        attachment_holds.sort_by_key(|h| h.fate.time());

        // An undelivered alert about someone the DSLs' copy leaves out (naming their flagged
        // message's audit record, or their address) stays out of it too.
        let withheld: Vec<&Flagged> = self.flagged.values().filter(|f| f.concerns).collect();
        let about_withheld = |detail: &str| {
            let lower = detail.to_lowercase();
            let seqs = about_records(detail);
            withheld
                .iter()
                .any(|f| seqs.contains(&f.case.seq) || lower.contains(f.case.sender.as_str()))
        };
        let undelivered = self
            .undelivered
            .iter()
            .filter(|(_, _, d)| {
                // A school's report has the undelivered alerts about its own messages only;
                // what is about no message (the checkpoint, a report) is the trust's, with the
                // mail from no school.
                let seqs = about_records(d);
                let ours = seqs.iter().any(|seq| self.flagged.contains_key(seq));
                let kept = match self.scope {
                    Scope::All => true,
                    Scope::School(_) => ours,
                    Scope::NoSchool => ours || seqs.is_empty(),
                };
                if !kept {
                    return false;
                }
                let about = about_withheld(d);
                match audience {
                    Audience::Dsl => !about,
                    Audience::Escalation => about,
                }
            })
            .map(|(seq, time, detail)| Undelivered {
                seq: *seq,
                time: *time,
                detail: detail.clone(),
            })
            .collect();

        Report {
            school: school.to_string(),
            audience,
            period: self.period,
            made,
            tz,
            by_rule,
            by_staff,
            flagged,
            unreviewed,
            reviewed,
            safeguarding_holds,
            attachment_holds,
            undelivered,
            chain,
            unreadable: self.unreadable.clone(),
        }
    }
}

/// The audit records an undelivered-mail record says it was about ("… for audit records 3, 5
/// to …").
fn about_records(detail: &str) -> Vec<u64> {
    let Some((_, rest)) = detail
        .split_once("audit records ")
        .or_else(|| detail.split_once("audit record "))
    else {
        return Vec::new();
    };
    rest.split(|c: char| !(c.is_ascii_digit() || c == ',' || c == ' '))
        .next()
        .unwrap_or("")
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

fn dedup(v: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    v.retain(|x| seen.insert(x.clone()));
}

#[cfg(test)]
mod tests;
