//! The report's reading shell: verifies the chain, streams the trail through the [`Builder`]
//! and says who people are from the directory. Shared by `schoolgate report` and the gateway's
//! weekly mail, so both report the same.

use super::{
    Audience, Builder, ChainStatus, People, Period, Report, SchoolLine, Scope, TrustSummary,
};
use crate::config::Config;
use crate::directory::Directory;
use crate::store::{Backend, StoreError, verify};

/// Records read per batch.
const BATCH: usize = 4096;

/// Whether a flag on mail from `sender` concerns the headteacher or a DSL: the same rule as
/// alerts ([`crate::alerts::concerns_escalation`]). Such flags go only to the escalation copy.
pub fn concerns_escalation(config: &Config, directory: &Directory, sender: &str) -> bool {
    crate::alerts::concerns_escalation(config, directory, sender)
}

/// Who gets the escalation copy: `[safeguarding] escalate_to`, or without it the DSLs (as
/// alerts do); never anyone it is about (`concerned`).
pub fn escalation_recipients(config: &Config, concerned: &[String]) -> Vec<String> {
    let s = &config.safeguarding;
    let list = if s.escalate_to.is_empty() {
        &s.dsl
    } else {
        &s.escalate_to
    };
    let mut to: Vec<String> = Vec::new();
    for a in list.iter().map(|a| a.0.trim()) {
        if !concerned.iter().any(|c| c.eq_ignore_ascii_case(a))
            && !to.iter().any(|t| t.eq_ignore_ascii_case(a))
        {
            to.push(a.to_string());
        }
    }
    to
}

/// The school's people, for the report.
pub struct SchoolPeople<'a> {
    pub config: &'a Config,
    pub directory: &'a Directory,
}

impl People for SchoolPeople<'_> {
    fn name(&self, address: &str) -> Option<String> {
        self.directory.person(address).map(|p| p.name.clone())
    }
    fn concerns_escalation(&self, sender: &str) -> bool {
        concerns_escalation(self.config, self.directory, sender)
    }
}

/// What `audit verify` says of the chain now.
pub fn chain_status(backend: &mut dyn Backend) -> Result<ChainStatus, StoreError> {
    match verify(backend, &[]) {
        Ok(v) => Ok(ChainStatus {
            head: v.head,
            records: v.records,
            broken: None,
        }),
        Err(StoreError::ChainBroken { seq, reason }) => Ok(ChainStatus {
            head: backend.head()?,
            records: 0,
            broken: Some(format!("audit chain broken at record {seq}: {reason}")),
        }),
        Err(e) => Err(e),
    }
}

/// Both copies of the report for `period`: the DSLs' and the escalation one.
pub fn reports(
    backend: &mut dyn Backend,
    config: &Config,
    directory: &Directory,
    period: Period,
    made: jiff::Timestamp,
) -> Result<(Report, Report), StoreError> {
    scoped_reports(backend, config, directory, period, made, None)
}

/// Both copies of one school's report in a trust: `config` is the school's effective config
/// ([`Config::for_school`]), `directory` its directory; only its own messages count.
pub fn school_reports(
    backend: &mut dyn Backend,
    config: &Config,
    directory: &Directory,
    period: Period,
    made: jiff::Timestamp,
) -> Result<(Report, Report), StoreError> {
    let school = Scope::School(config.school.name.clone());
    scoped_reports(backend, config, directory, period, made, Some(school))
}

/// Both copies for `period`, of every message or (with `scope`) of one school's.
fn scoped_reports(
    backend: &mut dyn Backend,
    config: &Config,
    directory: &Directory,
    period: Period,
    made: jiff::Timestamp,
    scope: Option<Scope>,
) -> Result<(Report, Report), StoreError> {
    let chain = chain_status(backend)?;
    let people = SchoolPeople { config, directory };
    let builder = Builder::new(period, &people);
    let mut builders = [match scope {
        Some(scope) => builder.scoped(scope),
        None => builder,
    }];
    stream(backend, &mut builders)?;
    Ok(copies(
        &builders[0],
        config,
        &config.school.name,
        made,
        &chain,
    ))
}

/// What a trust's weekly report is made of: each school's two copies (its own messages only,
/// named and timed by its own directory and time zone), those of mail from no school, and the
/// trust summary of them all.
#[derive(Debug)]
pub struct TrustReports {
    /// Each school's DSLs' and escalation copies, in the config's order.
    pub schools: Vec<(Report, Report)>,
    /// What concerns the trust's central office's head or DSLs in mail from no school: for
    /// the trust-wide `escalate_to`.
    pub no_school_escalation: Report,
    pub summary: TrustSummary,
}

/// What "no school" is called in the trust summary.
pub const NO_SCHOOL: &str = "mail from no school (the trust-wide defaults)";

/// A trust's reports for `period`, in one read of the trail: `trust` is the trust-wide config
/// and `directory` its directory (mail from no school); `schools` each school's effective
/// config ([`Config::for_school`]) and directory.
pub fn trust_reports(
    backend: &mut dyn Backend,
    trust: &Config,
    directory: &Directory,
    schools: &[(&Config, &Directory)],
    period: Period,
    made: jiff::Timestamp,
) -> Result<TrustReports, StoreError> {
    let chain = chain_status(backend)?;
    let people: Vec<SchoolPeople> = schools
        .iter()
        .map(|(config, directory)| SchoolPeople { config, directory })
        .chain(std::iter::once(SchoolPeople {
            config: trust,
            directory,
        }))
        .collect();
    let mut builders: Vec<Builder> = people
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let scope = match schools.get(i) {
                Some((config, _)) => Scope::School(config.school.name.clone()),
                None => Scope::NoSchool,
            };
            Builder::new(period, p).scoped(scope)
        })
        .collect();
    stream(backend, &mut builders)?;
    let mut copies: Vec<(Report, Report)> = builders
        .iter()
        .zip(&people)
        .enumerate()
        .map(|(i, (b, p))| {
            let name = if i < schools.len() {
                p.config.school.name.as_str()
            } else {
                NO_SCHOOL
            };
            copies(b, p.config, name, made, &chain)
        })
        .collect();
    let line = |(dsl, escalation): &(Report, Report)| SchoolLine {
        report: dsl.clone(),
        escalated: escalation.flagged,
    };
    // The last is always there: the no-school builder.
    let no_school = line(&copies[schools.len()]);
    let no_school_escalation = copies[schools.len()].1.clone();
    copies.truncate(schools.len());
    let trust_tz =
        jiff::tz::TimeZone::get(&trust.school.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
    let summary = TrustSummary {
        trust: trust.school.name.clone(),
        period,
        made,
        tz: trust_tz,
        schools: copies.iter().map(line).collect(),
        no_school,
        chain,
    };
    Ok(TrustReports {
        schools: copies,
        no_school_escalation,
        summary,
    })
}

/// The DSLs' and the escalation copy from `builder`, in `config`'s time zone.
fn copies(
    builder: &Builder,
    config: &Config,
    school: &str,
    made: jiff::Timestamp,
    chain: &ChainStatus,
) -> (Report, Report) {
    let tz = jiff::tz::TimeZone::get(&config.school.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
    (
        builder.finish(Audience::Dsl, school, made, tz.clone(), chain.clone()),
        builder.finish(Audience::Escalation, school, made, tz, chain.clone()),
    )
}

/// Streams the whole trail, in sequence order, through every builder.
fn stream(backend: &mut dyn Backend, builders: &mut [Builder]) -> Result<(), StoreError> {
    backend.begin_read()?;
    let read: Result<(), StoreError> = (|| {
        let mut from = 1;
        loop {
            let batch = backend.read_from(from, BATCH)?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                return Ok(());
            };
            for e in &batch {
                for b in builders.iter_mut() {
                    b.add(e.seq, &e.record_json);
                }
            }
            from = last + 1;
        }
    })();
    let ended = backend.end_read();
    read?;
    ended
}

/// The first record's time: when the gateway began keeping this trail.
pub fn trail_began(backend: &mut dyn Backend) -> Result<Option<jiff::Timestamp>, StoreError> {
    #[derive(serde::Deserialize)]
    struct Timed {
        time: String,
    }
    let first = backend.read_from(1, 1)?;
    Ok(first.first().and_then(|e| {
        serde_json::from_str::<Timed>(&e.record_json)
            .ok()
            .and_then(|t| t.time.parse().ok())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::report::UNDELIVERED_PREFIX as UNDELIVERED;
    use crate::store::sqlite::SqliteBackend;
    use crate::store::{
        AuditEntry, AuditRecord, FlagRecord, MessageRecord, NewEntry, RecordKind, audit,
    };

    fn config() -> Config {
        Config::parse(
            std::path::Path::new("test.toml"),
            include_str!("../../../policies/example.toml"),
        )
        .expect("the example config")
    }

    fn directory() -> Directory {
        Directory::parse(
            std::path::Path::new("d.csv"),
            b"role,name,school_email,personal_emails,personal_phones,date_of_birth,status\n\
headteacher,Margaret Hughes,head@example-academy.sch.uk,,,,current\n\
staff,Tom Baker,t.baker@example-academy.sch.uk,,,,current\n",
            &[],
        )
        .expect("the directory")
    }

    fn flagged(from: &str) -> AuditRecord {
        AuditRecord::message(MessageRecord {
            mail_from: from.into(),
            rcpt_to: vec!["jamie.smith2010@gmail.com".into()],
            flags: vec![FlagRecord {
                rule: "pupil-personal-address".into(),
                action: "flag".into(),
                ..Default::default()
            }],
            verdict: "deliver".into(),
            outcome: "delivered".into(),
            ..Default::default()
        })
    }

    #[test]
    fn reads_cases_and_case_reviews_from_a_real_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = SqliteBackend::open(dir.path()).unwrap();
        let teacher = flagged("t.baker@example-academy.sch.uk");
        let again = flagged("t.baker@example-academy.sch.uk");
        let head = flagged("head@example-academy.sch.uk");
        b.append_chained(&[&teacher, &again, &head]).unwrap();
        // A review in the shape the case workflow writes (kind "case-review"), which this
        // build's RecordKind does not know: the report reads it by its JSON alone.
        let review = serde_json::json!({
            "time": audit::now_rfc3339(),
            "kind": "case-review",
            "action": {"actor": "ms.shah", "detail": "case 1 reviewed by ms.shah: outcome referred"},
            "case_review": {"case_seq": 1, "action": "review", "outcome": "referred",
                "note": "called LADO", "reference": "CPOMS-1", "actor": "ms.shah"}
        });
        let columns = AuditRecord::action(RecordKind::Action, "ms.shah", "");
        let mut entry = AuditEntry::chain(b.head().unwrap().as_ref(), &columns);
        entry.record_json = review.to_string();
        entry.hash = audit::entry_hash(entry.seq, &entry.prev_hash, &entry.record_json);
        b.append_batch(&[NewEntry {
            entry: &entry,
            record: &columns,
        }])
        .unwrap();

        let now = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1);
        let (config, directory) = (config(), directory());
        let (dsl, escalation) = reports(
            &mut b,
            &config,
            &directory,
            Period::last_week(now, &jiff::tz::TimeZone::UTC),
            now,
        )
        .unwrap();
        assert_eq!(dsl.flagged, 2);
        assert_eq!(
            dsl.unreviewed.iter().map(|c| c.seq).collect::<Vec<_>>(),
            [2]
        );
        assert_eq!(dsl.reviewed.len(), 1);
        assert_eq!(dsl.reviewed[0].review.outcome.as_deref(), Some("referred"));
        assert_eq!(dsl.by_staff[0].name.as_deref(), Some("Tom Baker"));
        assert_eq!(
            escalation
                .unreviewed
                .iter()
                .map(|c| c.seq)
                .collect::<Vec<_>>(),
            [3]
        );
        assert_eq!(dsl.chain.head.as_ref().map(|h| h.seq), Some(4));
        assert!(dsl.unreadable.is_empty());
    }

    #[test]
    fn a_trust_s_schools_each_report_their_own_mail_and_the_summary_counts_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = SqliteBackend::open(dir.path()).unwrap();
        let at = |from: &str, school: Option<&str>| {
            let mut r = flagged(from);
            if let Some(m) = r.message.as_mut() {
                m.school = school.map(str::to_string);
            }
            r
        };
        let ashdown = at("t.baker@example-academy.sch.uk", Some("Ashdown"));
        let bramble = at("s.hale@bramble.example", Some("Bramble"));
        let central = at("office@trust.example", None);
        // An alert about Bramble's message (record 2) that could not be delivered.
        let undelivered = AuditRecord::action(
            RecordKind::Action,
            crate::store::GATEWAY,
            format!(
                "{} alert for audit records 2 to dsl@bramble.example",
                UNDELIVERED
            ),
        );
        // And one about no message: the trust's, with the mail from no school.
        let checkpoint = AuditRecord::action(
            RecordKind::Action,
            crate::store::GATEWAY,
            format!("{UNDELIVERED} audit checkpoint refused for safeguarding@trust.example"),
        );
        b.append_chained(&[&ashdown, &bramble, &central, &undelivered, &checkpoint])
            .unwrap();

        let trust = config();
        let (mut a, mut br) = (config(), config());
        a.school.name = "Ashdown".into();
        br.school.name = "Bramble".into();
        let directory = directory();
        let now = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1);
        let all = trust_reports(
            &mut b,
            &trust,
            &directory,
            &[(&a, &directory), (&br, &directory)],
            Period::last_week(now, &jiff::tz::TimeZone::UTC),
            now,
        )
        .unwrap();
        let senders = |r: &Report| r.by_staff.iter().map(|c| c.key.clone()).collect::<Vec<_>>();
        assert_eq!(
            senders(&all.schools[0].0),
            ["t.baker@example-academy.sch.uk"]
        );
        assert_eq!(senders(&all.schools[1].0), ["s.hale@bramble.example"]);
        assert!(
            all.schools[0].0.undelivered.is_empty(),
            "not Ashdown's alert"
        );
        assert_eq!(all.schools[1].0.undelivered.len(), 1, "Bramble's alert");
        assert_eq!(
            all.summary
                .no_school
                .report
                .undelivered
                .iter()
                .map(|u| u.seq)
                .collect::<Vec<_>>(),
            [5],
            "the checkpoint's, not Bramble's"
        );
        assert_eq!(
            senders(&all.summary.no_school.report),
            ["office@trust.example"]
        );
        assert_eq!(
            all.summary
                .lines()
                .map(|l| (l.report.school.as_str(), l.report.flagged))
                .collect::<Vec<_>>(),
            [("Ashdown", 1), ("Bramble", 1), (NO_SCHOOL, 1)]
        );
        let text =
            super::super::render::render_summary(&all.summary, super::super::render::Format::Text);
        assert!(text.contains("Bramble\n  flagged: 1\n"), "{text}");
        assert!(
            !text.contains("s.hale@bramble.example"),
            "counts only:\n{text}"
        );

        // One school alone reads the same as its part of the trust's.
        let (one, _) = school_reports(
            &mut b,
            &br,
            &directory,
            Period::last_week(now, &jiff::tz::TimeZone::UTC),
            now,
        )
        .unwrap();
        assert_eq!(one, all.schools[1].0);
    }

    #[test]
    fn the_head_and_a_dsl_concern_escalation_and_a_teacher_does_not() {
        let (config, directory) = (config(), directory());
        assert!(concerns_escalation(
            &config,
            &directory,
            "head@example-academy.sch.uk"
        ));
        assert!(concerns_escalation(
            &config,
            &directory,
            " DSL@example-academy.sch.uk"
        ));
        assert!(!concerns_escalation(
            &config,
            &directory,
            "t.baker@example-academy.sch.uk"
        ));
        assert_eq!(
            escalation_recipients(&config, &["dsl@example-academy.sch.uk".into()]),
            Vec::<String>::new()
        );
        assert_eq!(
            escalation_recipients(&config, &["head@example-academy.sch.uk".into()]),
            ["dsl@example-academy.sch.uk"]
        );
        let chair = Config::parse(
            std::path::Path::new("test.toml"),
            &include_str!("../../../policies/example.toml").replace(
                "[safeguarding]\n",
                "[safeguarding]\nescalate_to = [\"chair@governors.example\"]\n",
            ),
        );
        let chair = chair.expect("the example config with escalate_to");
        assert_eq!(
            escalation_recipients(&chair, &["head@example-academy.sch.uk".into()]),
            ["chair@governors.example"]
        );
    }
}
