//! The report's reading shell: verifies the chain, streams the trail through the [`Builder`]
//! and says who people are from the directory. Shared by `schoolgate report` and the gateway's
//! weekly mail, so both report the same.

use super::{Audience, Builder, ChainStatus, People, Period, Report};
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
    let tz = jiff::tz::TimeZone::get(&config.school.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
    let chain = chain_status(backend)?;
    let people = SchoolPeople { config, directory };
    let mut builder = Builder::new(period, &people);
    backend.begin_read()?;
    let read: Result<(), StoreError> = (|| {
        let mut from = 1;
        loop {
            let batch = backend.read_from(from, BATCH)?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                return Ok(());
            };
            for e in &batch {
                builder.add(e.seq, &e.record_json);
            }
            from = last + 1;
        }
    })();
    let ended = backend.end_read();
    read?;
    ended?;
    let school = &config.school.name;
    Ok((
        builder.finish(Audience::Dsl, school, made, tz.clone(), chain.clone()),
        builder.finish(Audience::Escalation, school, made, tz, chain),
    ))
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
