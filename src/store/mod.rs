//! Where schoolgate keeps what must survive a crash: the hash-chained audit trail (and, with later
//! issues, the quarantine and web accounts).
//!
//! One small, synchronous [`Backend`] trait is all a database has to provide; SQLite
//! ([`sqlite::SqliteBackend`]) is the embedded default and PostgreSQL will follow behind the same
//! trait. Chaining and group commit live above the backend, in [`AuditLog`], so every backend
//! gets them for free and no backend can fork the chain.

pub mod audit;
pub mod spool;
pub mod sqlite;

pub use audit::{
    ActionRecord, AuditEntry, AuditLog, AuditRecord, ChainHead, FlagRecord, GENESIS_HASH,
    MessageRecord, RecordKind, verify_chain,
};

use std::path::PathBuf;

/// Everything that can go wrong keeping or reading the audit trail.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, created or migrated.
    #[error(
        "cannot open the audit database {path}: {source}; check that storage.state_dir exists and is writable by schoolgate"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A read or write failed.
    #[error("audit database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored record does not parse.
    #[error("audit record {seq} is not valid JSON: {source}")]
    BadRecord {
        seq: u64,
        #[source]
        source: serde_json::Error,
    },
    /// The database was written by a newer schoolgate.
    #[error(
        "the audit database {path} has schema version {found}, newer than this schoolgate knows ({known}); run the newer schoolgate"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    /// The writer thread is gone (the gateway is shutting down or the writer failed).
    #[error("the audit writer has stopped; the record was not written")]
    WriterGone,
    /// The writer could not commit the batch this record was in.
    #[error("the audit record was not written: {0}")]
    WriteFailed(String),
    /// `verify` found a record that was changed, inserted, deleted or reordered.
    #[error("audit chain broken at record {seq}: {reason}")]
    ChainBroken { seq: u64, reason: String },
}

/// An entry to append, with the record its JSON was made from (for the columns a backend keeps
/// beside the JSON, without parsing it again).
pub struct NewEntry<'a> {
    pub entry: &'a AuditEntry,
    pub record: &'a AuditRecord,
}

/// The one thing a database must do for the audit trail: keep entries in order, durably.
///
/// Calls come from a single writer thread (see [`AuditLog`]), so implementations need no locking
/// of their own for appends; readers (`verify`, export) open their own backend.
pub trait Backend: Send + 'static {
    /// The newest entry's sequence number and hash, or `None` for an empty trail.
    fn head(&mut self) -> Result<Option<ChainHead>, StoreError>;
    /// Writes `entries` (already chained, consecutive sequence numbers following [`Backend::head`])
    /// in one transaction, and returns only once that transaction is durable on disk. On error
    /// nothing of the batch may remain.
    fn append_batch(&mut self, entries: &[NewEntry<'_>]) -> Result<(), StoreError>;
    /// Up to `limit` entries with `seq >= from_seq`, in sequence order.
    fn read_from(&mut self, from_seq: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
}
