//! The safeguarding cases as the audit trail holds them: every flagged message with its
//! reviews (see [`crate::review::cases`], which decides what they mean).

use super::StoreError;
use crate::config::Storage;
use crate::review::cases::{self, Case, Filter};

/// Every case, newest first, read on one snapshot of the trail `storage` keeps.
pub fn all(storage: &Storage) -> Result<Vec<Case>, StoreError> {
    let mut backend = super::open_audit(storage)?;
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
pub fn list(storage: &Storage, filter: &Filter) -> Result<Vec<Case>, StoreError> {
    Ok(all(storage)?
        .into_iter()
        .filter(|c| c.matches(filter))
        .collect())
}

/// Case `seq` with all its reviews, or `None` when record `seq` is not a flagged message.
pub fn one(storage: &Storage, seq: u64) -> Result<Option<Case>, StoreError> {
    Ok(all(storage)?.into_iter().find(|c| c.seq == seq))
}
