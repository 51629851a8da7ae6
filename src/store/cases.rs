//! The safeguarding cases as the audit trail holds them: every flagged message with its
//! reviews (see [`crate::review::cases`], which decides what they mean).

use std::path::Path;

use super::sqlite::SqliteBackend;
use super::{Backend, StoreError};
use crate::review::cases::{self, Case, Filter};

/// Every case, newest first, read on one snapshot of the trail under `state_dir`.
pub fn all(state_dir: &Path) -> Result<Vec<Case>, StoreError> {
    let mut backend = SqliteBackend::open(state_dir)?;
    backend.begin_read()?;
    let mut records = Vec::new();
    let scanned = backend.scan_cases(&mut |entry| {
        records.push((entry.seq, entry.record()?));
        Ok(())
    });
    let ended = backend.end_read();
    scanned?;
    ended?;
    Ok(cases::assemble(records))
}

/// The cases that pass `filter`, newest first.
pub fn list(state_dir: &Path, filter: &Filter) -> Result<Vec<Case>, StoreError> {
    Ok(all(state_dir)?
        .into_iter()
        .filter(|c| c.matches(filter))
        .collect())
}

/// Case `seq` with all its reviews, or `None` when record `seq` is not a flagged message.
pub fn one(state_dir: &Path, seq: u64) -> Result<Option<Case>, StoreError> {
    Ok(all(state_dir)?.into_iter().find(|c| c.seq == seq))
}
