//! Where schoolgate keeps what must survive a crash: the hash-chained audit trail, the quarantine
//! and the web page's accounts ([`users`]).
//!
//! One small, synchronous [`Backend`] trait is all a database has to provide; SQLite
//! ([`sqlite::SqliteBackend`]) is the embedded default and PostgreSQL ([`postgres`], with
//! `[storage] database`) the store a trust's gateways share, behind the same
//! trait. Chaining and group commit live above the backend, in [`AuditLog`], so every backend
//! gets them for free and no backend can fork the chain.

pub mod answered;
pub mod audit;
pub mod logins;
pub mod place;
pub mod postgres;
pub mod private;
pub mod quarantine;
pub mod release;
pub mod spool;
pub mod sqlite;
pub mod users;
// The DSL's safeguarding cases, read from the trail.
pub mod cases;

pub use audit::CaseReviewRecord;
pub use audit::{
    ActionRecord, AttachmentRecord, AuditEntry, AuditLog, AuditRecord, ChainHead, Checkpoint,
    FindingRecord, FlagRecord, GATEWAY, GENESIS_HASH, Marks, MessageRecord, PurgeRecord,
    RecordKind, Verified, verify, verify_chain,
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
    /// A quarantine file could not be written, read or removed.
    #[error("quarantine file error: {0}")]
    Io(#[from] std::io::Error),
    /// A read-only connection to a database older than the export index.
    #[error(
        "{path} predates the export index; open it once read-write with this schoolgate (schoolgate audit export does) to add it"
    )]
    NoIndex { path: PathBuf },
    /// An export could not be written (the output file or a pipe).
    #[error("cannot write the export: {0}")]
    Output(String),
    /// `verify` found a record that was changed, inserted, deleted or reordered.
    #[error("audit chain broken at record {seq}: {reason}")]
    ChainBroken { seq: u64, reason: String },
    /// `[storage] database` is not a URL schoolgate can use.
    #[error("storage.database {reason}")]
    PgUrl { reason: String },
    /// PostgreSQL could not be reached, or the connection broke.
    #[error(
        "cannot reach the PostgreSQL database {database}: {detail}; check that PostgreSQL is running and reachable from this machine, and that storage.database names the right host, user and database (and its password)"
    )]
    PgConnect { database: String, detail: String },
    /// A statement failed.
    #[error("PostgreSQL database {database}: {detail}")]
    Postgres { database: String, detail: String },
    /// The database was migrated by a newer schoolgate.
    #[error(
        "the PostgreSQL database {database} has schema version {found}, newer than this schoolgate knows ({known}); run the newer schoolgate on every gateway"
    )]
    PgTooNew {
        database: String,
        found: i64,
        known: i64,
    },
}

/// Opens the audit trail where `[storage]` keeps it: the PostgreSQL database `database` names
/// (one pool per process, see [`postgres::Pg::shared`]), else SQLite under `state_dir`.
pub fn open_audit(storage: &crate::config::Storage) -> Result<Box<dyn Backend>, StoreError> {
    match &storage.database {
        Some(url) => Ok(Box::new(postgres::audit::PgAudit::new(
            postgres::Pg::shared(url)?,
        ))),
        None => Ok(Box::new(sqlite::SqliteBackend::open(&storage.state_dir)?)),
    }
}

/// [`open_audit`] for readers (`audit verify`, exports, reports): SQLite's file is opened
/// read-only (and must exist); PostgreSQL as for [`open_audit`].
pub fn open_audit_read_only(
    storage: &crate::config::Storage,
) -> Result<Box<dyn Backend>, StoreError> {
    match &storage.database {
        Some(_) => open_audit(storage),
        None => Ok(Box::new(sqlite::SqliteBackend::open_read_only(
            &storage.state_dir,
        )?)),
    }
}

/// An entry to append, with the record its JSON was made from (for the columns a backend keeps
/// beside the JSON, without parsing it again).
pub struct NewEntry<'a> {
    pub entry: &'a AuditEntry,
    pub record: &'a AuditRecord,
}

/// The one thing a database must do for the audit trail: keep entries in order, durably.
///
/// Calls come from a single writer thread per process (see [`AuditLog`]); another process (the
/// CLI) may append to the same database, which [`Backend::append_chained`] must allow for; readers (`verify`, export) open their own backend.
pub trait Backend: Send + 'static {
    /// The newest entry's sequence number and hash, or `None` for an empty trail.
    fn head(&mut self) -> Result<Option<ChainHead>, StoreError>;
    /// Writes `entries` (already chained, consecutive sequence numbers following [`Backend::head`])
    /// in one transaction, and returns only once that transaction is durable on disk. On error
    /// nothing of the batch may remain.
    fn append_batch(&mut self, entries: &[NewEntry<'_>]) -> Result<(), StoreError>;
    /// Chains `records` after the newest entry and writes them in one durable transaction;
    /// returns their entries. A backend that other processes may write to at the same time must
    /// read the head and write under one lock (SQLite: `BEGIN IMMEDIATE`), which the default
    /// (head, then [`Backend::append_batch`]) does not.
    fn append_chained(&mut self, records: &[&AuditRecord]) -> Result<Vec<AuditEntry>, StoreError> {
        let head = self.head()?;
        let entries = audit::chain_all(head, records);
        let batch: Vec<NewEntry<'_>> = records
            .iter()
            .zip(&entries)
            .map(|(record, entry)| NewEntry { entry, record })
            .collect();
        self.append_batch(&batch)?;
        Ok(entries)
    }
    /// Up to `limit` entries with `seq >= from_seq`, in sequence order.
    fn read_from(&mut self, from_seq: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// Starts a read transaction: until [`Backend::end_read`], reads see one snapshot, however
    /// much another process appends meanwhile (so `verify` never mistakes a new record for one
    /// added behind schoolgate's back).
    fn begin_read(&mut self) -> Result<(), StoreError>;
    /// Ends the read transaction [`Backend::begin_read`] started.
    fn end_read(&mut self) -> Result<(), StoreError>;
    /// The head as of the last commit, the checkpoints and the newest purge record.
    fn marks(&mut self) -> Result<Marks, StoreError>;
    /// Records the current head as a checkpoint (once per head); returns it.
    fn checkpoint(&mut self) -> Result<Option<ChainHead>, StoreError>;
    /// Removes the oldest records written before `before` (UTC, RFC 3339) under
    /// `retention_days`: first appends a purge record (by `actor`) carrying the hash of the last
    /// one removed, then deletes them. Returns the purge record's entry, or `None` when nothing
    /// was due.
    fn purge(
        &mut self,
        before: &str,
        retention_days: u32,
        actor: &str,
    ) -> Result<Option<AuditEntry>, StoreError>;
    /// The sequence numbers of the records whose time is in `[since, until)` lie in the range
    /// returned (`None`: no such record). Times are compared as stored (UTC, RFC 3339).
    fn seq_range(
        &mut self,
        since: Option<&str>,
        until: Option<&str>,
    ) -> Result<Option<(u64, u64)>, StoreError>;
    /// Calls `each` for every entry in `seqs` (inclusive) carrying any of `keys` (every entry
    /// when `keys` is empty; see [`audit::index_keys`]), in sequence order, reading as it goes
    /// (constant memory); stops early when `each` returns `Ok(false)`.
    fn scan(
        &mut self,
        seqs: (u64, u64),
        keys: &[String],
        each: &mut dyn FnMut(AuditEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError>;
    /// What is kept beside each record in `seqs` (inclusive) to find it by, in sequence order:
    /// its time and kind columns and its export keys. `None` when the database has no export
    /// index yet. These are not covered by the hash, so `verify` checks them against the records.
    fn search_columns(
        &mut self,
        seqs: (u64, u64),
    ) -> Result<Option<Vec<audit::SearchColumns>>, StoreError>;
    /// How many entries [`Backend::scan`] would visit (for a progress bar).
    fn count(&mut self, seqs: (u64, u64), keys: &[String]) -> Result<u64, StoreError>;
    /// Calls `each` for every record that may belong to a safeguarding case, in sequence
    /// order: the records any rule matched (the export index's `r:` keys) and the case-review
    /// records.
    fn scan_cases(
        &mut self,
        each: &mut dyn FnMut(AuditEntry) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
}
