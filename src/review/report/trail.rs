//! The report's reading shell: verifies the chain, streams the trail through the [`Builder`]
//! and says who people are from the directory. Shared by `schoolgate report` and the gateway's
//! weekly mail, so both report the same.

use super::{Audience, Builder, ChainStatus, People, Period, Report};
use crate::config::Config;
use crate::directory::Directory;
use crate::store::{Backend, StoreError, verify};

/// Records read per batch.
const BATCH: usize = 4096;

/// Whether a flag on mail from `sender` concerns the headteacher or a DSL: the sender is a
/// person whose role is `headteacher` (or `dsl`) in the directory, or one of `[safeguarding]
/// dsl`. Such flags go only to the escalation copy of the report.
///
/// TODO(lead): when h-alerts is merged, call `crate::alerts::concerns_escalation(config,
/// directory, sender)` here instead, so alerts, cases and the report agree by construction.
pub fn concerns_escalation(config: &Config, directory: &Directory, sender: &str) -> bool {
    let sender = sender.trim();
    let is_dsl = config
        .safeguarding
        .dsl
        .iter()
        .any(|d| d.0.trim().eq_ignore_ascii_case(sender));
    let is_head = directory.person(sender).is_some_and(|p| {
        p.role.eq_ignore_ascii_case("headteacher") || p.role.eq_ignore_ascii_case("dsl")
    });
    is_dsl || is_head
}

/// Who gets the escalation copy: `[safeguarding] escalate_to`, or without it the DSLs who are
/// not themselves concerned (as alerts do).
///
/// TODO(lead): when h-alerts is merged (it adds `[safeguarding] escalate_to`), return
/// `config.safeguarding.escalate_to` when it is not empty.
pub fn escalation_recipients(config: &Config, concerned: &[String]) -> Vec<String> {
    config
        .safeguarding
        .dsl
        .iter()
        .map(|a| a.0.trim().to_string())
        .filter(|a| !concerned.iter().any(|c| c.eq_ignore_ascii_case(a)))
        .collect()
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
