//! The embedded store: one SQLite database file under `storage.state_dir`.
//!
//! WAL journal with `synchronous = FULL`: a commit returns only after the log is fsynced, which
//! is what lets the relay say 250 with a clear conscience. The schema is created and migrated on
//! open (`PRAGMA user_version`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

use super::audit::{Checkpoint, Marks, PurgeRecord, SearchColumns, index_keys};
use super::{AuditEntry, AuditRecord, Backend, ChainHead, NewEntry, RecordKind, StoreError};

/// The database file's name inside `storage.state_dir`.
pub const DATABASE_FILE: &str = "schoolgate.db";

/// The schema version this code writes; see [`MIGRATIONS`].
const SCHEMA_VERSION: i64 = 9;

/// The first version with the export index, the head mark and checkpoints.
const MARKS_VERSION: i64 = 3;

/// The first version that remembers the messages answered 250 (`answered_message`).
const ANSWERED_VERSION: i64 = 9;

/// How many records a purge deletes per transaction, so the relay's writer never waits long.
const PURGE_CHUNK: u64 = 5000;

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE audit (
        seq       INTEGER PRIMARY KEY,
        time      TEXT NOT NULL,
        kind      TEXT NOT NULL,
        mail_from TEXT,
        outcome   TEXT,
        record    TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash      TEXT NOT NULL
    );
    CREATE INDEX audit_time ON audit(time);
",
    "
    CREATE TABLE quarantine (
        id            TEXT PRIMARY KEY,
        time          TEXT NOT NULL,
        mail_from     TEXT NOT NULL,
        rcpt_to       TEXT NOT NULL,
        subject       TEXT,
        size          INTEGER NOT NULL,
        sha256        TEXT NOT NULL,
        reason        TEXT NOT NULL,
        state         TEXT NOT NULL,
        acted_by      TEXT,
        acted_at      TEXT,
        action_reason TEXT,
        smtputf8      INTEGER NOT NULL DEFAULT 0,
        body_8bit     INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX quarantine_state ON quarantine(state, time);
",
    // The export index (`a:ADDRESS`, `r:RULE` → seq; filled from the stored JSON by
    // `backfill_keys`, never changing it), the head as of the last commit, checkpoints, and the
    // kind index the newest purge record is found by.
    "
    CREATE TABLE audit_key (
        key TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (key, seq)
    ) WITHOUT ROWID;
    CREATE INDEX audit_key_seq ON audit_key(seq);
    CREATE INDEX audit_kind ON audit(kind, seq);
    CREATE TABLE audit_head (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        seq  INTEGER NOT NULL,
        hash TEXT NOT NULL
    );
    INSERT INTO audit_head (id, seq, hash) SELECT 1, seq, hash FROM audit ORDER BY seq DESC LIMIT 1;
    CREATE TABLE audit_checkpoint (
        seq  INTEGER PRIMARY KEY,
        hash TEXT NOT NULL,
        time TEXT NOT NULL
    );
",
    // Web page accounts (see `store::users`): an argon2id hash, the roles, and the failed
    // logins in a row with the lock-out they led to.
    "
    CREATE TABLE web_user (
        name         TEXT PRIMARY KEY,
        roles        TEXT NOT NULL,
        hash         TEXT NOT NULL,
        failures     INTEGER NOT NULL DEFAULT 0,
        locked_until TEXT,
        created      TEXT NOT NULL,
        changed      TEXT NOT NULL
    );
",
    // The quarantine remembers which message each entry is (`handoff::delivery_key`), so a
    // client's retry of a message already held, whose 250 it never heard (a crash in between),
    // is not held twice.
    "
    ALTER TABLE quarantine ADD COLUMN delivery_key TEXT;
    CREATE INDEX quarantine_delivery_key ON quarantine(delivery_key)
        WHERE delivery_key IS NOT NULL;
",
    // Failed logins are counted per name typed and client address (`store::logins`), so a lock
    // from one address does not lock the account everywhere; `web_user.failures` and
    // `locked_until` are no longer used. A local account's TOTP secret (hex) and the last time
    // step a code was accepted for (a code is good once).
    "
    CREATE TABLE web_login_failure (
        name         TEXT NOT NULL,
        client       TEXT NOT NULL,
        failures     INTEGER NOT NULL,
        last_failure INTEGER NOT NULL,
        locked_until INTEGER,
        PRIMARY KEY (name, client)
    ) WITHOUT ROWID;
    ALTER TABLE web_user ADD COLUMN totp_secret TEXT;
    ALTER TABLE web_user ADD COLUMN totp_last_step INTEGER;
",
    // The links in sender notices that let a sender release their own held message (see
    // `store::release`): only the SHA-256 of each token is kept.
    "
    CREATE TABLE release_link (
        token_hash    TEXT PRIMARY KEY,
        quarantine_id TEXT NOT NULL,
        sender        TEXT NOT NULL,
        created       TEXT NOT NULL,
        expires       TEXT NOT NULL,
        used_at       TEXT
    );
    CREATE INDEX release_link_quarantine ON release_link(quarantine_id);
",
    // In a multi-academy trust, the schools an account is restricted to (a JSON array of
    // `[[schools]] name`s; empty: trust-wide), see `store::users`.
    "
    ALTER TABLE web_user ADD COLUMN schools TEXT NOT NULL DEFAULT '[]';
",
    // The messages the relay answered 250 for (delivered or held), by identity
    // (`audit::message_identity`), written in the transaction that appends their record, so a
    // client's retry after a crash is answered, not delivered again (see `store::answered`).
    "
    CREATE TABLE answered_message (
        identity      TEXT PRIMARY KEY,
        time          TEXT NOT NULL,
        seq           INTEGER NOT NULL,
        queue_id      TEXT NOT NULL,
        outcome       TEXT NOT NULL,
        quarantine_id TEXT
    ) WITHOUT ROWID;
    CREATE INDEX answered_message_time ON answered_message(time);
",
];

/// Fills the export index for records written before it existed (migration to version 3).
fn backfill_keys(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    let mut read = tx.prepare("SELECT seq, record FROM audit ORDER BY seq")?;
    let mut insert = tx.prepare("INSERT OR IGNORE INTO audit_key (key, seq) VALUES (?1, ?2)")?;
    let mut rows = read.query([])?;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let json: String = row.get(1)?;
        // A record that does not parse is left for `verify` to report; it has no keys.
        if let Ok(record) = serde_json::from_str::<AuditRecord>(&json) {
            for key in index_keys(&record) {
                insert.execute(params![key, seq])?;
            }
        }
    }
    Ok(())
}

/// The audit trail in SQLite.
pub struct SqliteBackend {
    conn: Connection,
    path: PathBuf,
    /// The schema version found (a read-only connection cannot migrate an older database).
    version: i64,
}

impl SqliteBackend {
    /// Opens (creating and migrating if needed) `state_dir/schoolgate.db`.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let path = state_dir.join(DATABASE_FILE);
        let conn = open_connection(state_dir)?;
        Ok(SqliteBackend {
            conn,
            path,
            version: SCHEMA_VERSION,
        })
    }

    /// Opens an existing database read-only (for `audit verify` and exports).
    pub fn open_read_only(state_dir: &Path) -> Result<Self, StoreError> {
        Self::open_file_read_only(&state_dir.join(DATABASE_FILE))
    }

    /// Opens an existing database file read-only, whatever its name (`schoolgate migrate`).
    pub fn open_file_read_only(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(
            |source| StoreError::Open {
                path: path.clone(),
                source,
            },
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path,
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        Ok(SqliteBackend {
            conn,
            path,
            version,
        })
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens (creating and migrating if needed) `state_dir/schoolgate.db` read-write, with the
/// durability settings every writer uses. The gateway, the CLI and the quarantine each open
/// their own connection; WAL and `BEGIN IMMEDIATE` let them share the file.
pub(crate) fn open_connection(state_dir: &Path) -> Result<Connection, StoreError> {
    let path = state_dir.join(DATABASE_FILE);
    let open_err = |source| StoreError::Open {
        path: path.clone(),
        source,
    };
    // Created 0600 here, so that SQLite's -wal and -shm files (which take the database's mode)
    // are private too, whatever the umask. Should this fail, SQLite's open below says why.
    if let Err(e) = super::private::ensure_file(&path) {
        tracing::debug!(path = %path.display(), error = %e, "cannot create the database file");
    }
    let mut conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_err)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(open_err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_err)?;
    migrate(&mut conn, &path)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let too_new = |found| StoreError::TooNew {
        path: path.to_path_buf(),
        found,
        known: SCHEMA_VERSION,
    };
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(too_new(found));
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    // Another process may be migrating at the same moment: take the write lock, then look again.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(too_new(found));
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql)?;
        if version as i64 + 1 == MARKS_VERSION {
            backfill_keys(&tx)?;
        }
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

impl SqliteBackend {
    /// See [`Backend::scan_cases`].
    fn cases(
        &mut self,
        each: &mut dyn FnMut(AuditEntry) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.need_index()?;
        let mut stmt = self.conn.prepare(
            "SELECT seq, prev_hash, hash, record FROM audit
             WHERE seq IN (SELECT seq FROM audit_key WHERE key >= 'r:' AND key < 'r;')
                OR kind = 'case-review'
             ORDER BY seq",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            each(AuditEntry {
                seq: row.get::<_, i64>(0)? as u64,
                prev_hash: row.get(1)?,
                hash: row.get(2)?,
                record_json: row.get(3)?,
            })?;
        }
        Ok(())
    }

    fn insert_and_commit(&mut self, entries: &[NewEntry<'_>]) -> Result<(), StoreError> {
        {
            let mut stmt = self.conn.prepare_cached(
                "INSERT INTO audit (seq, time, kind, mail_from, outcome, record, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for NewEntry { entry: e, record } in entries {
                let (mail_from, outcome) = match &record.message {
                    Some(m) => (Some(m.mail_from.as_str()), Some(m.outcome.as_str())),
                    None => (None, None),
                };
                stmt.execute(params![
                    e.seq as i64,
                    record.time,
                    record.kind.as_str(),
                    mail_from,
                    outcome,
                    e.record_json,
                    e.prev_hash,
                    e.hash
                ])?;
            }
            let mut key = self
                .conn
                .prepare_cached("INSERT OR IGNORE INTO audit_key (key, seq) VALUES (?1, ?2)")?;
            for NewEntry { entry: e, record } in entries {
                for k in index_keys(record) {
                    key.execute(params![k, e.seq as i64])?;
                }
            }
            if self.version >= ANSWERED_VERSION {
                let mut answered = self.conn.prepare_cached(
                    "INSERT OR IGNORE INTO answered_message
                         (identity, time, seq, queue_id, outcome, quarantine_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for NewEntry { entry: e, record } in entries {
                    if let Some(a) = super::audit::answered_by(record) {
                        answered.execute(params![
                            a.identity,
                            record.time,
                            e.seq as i64,
                            a.queue_id,
                            a.outcome,
                            a.quarantine_id
                        ])?;
                    }
                }
            }
            if let Some(NewEntry { entry: last, .. }) = entries.last() {
                self.conn
                    .prepare_cached(
                        "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?1, ?2)
                         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                    )?
                    .execute(params![last.seq as i64, last.hash])?;
            }
        }
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }

    /// The head as of the last commit.
    fn head_mark(&mut self) -> Result<Option<ChainHead>, StoreError> {
        if self.version < MARKS_VERSION {
            return Ok(None);
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, hash FROM audit_head WHERE id = 1")?;
        let mut rows = stmt.query([])?;
        match rows.next()? {
            Some(row) => Ok(Some(ChainHead {
                seq: row.get::<_, i64>(0)? as u64,
                hash: row.get(1)?,
            })),
            None => Ok(None),
        }
    }

    /// Inside a write transaction: when the newest record is not the one the last commit
    /// wrote, the tail was cut off (or records were added) outside schoolgate. That head is
    /// kept as a checkpoint, so `verify` names the damage for ever rather than the chain
    /// silently growing over it, and a record saying so is chained first. Returns that record.
    fn notice_tampering(
        &mut self,
        head: Option<&ChainHead>,
    ) -> Result<Option<AuditRecord>, StoreError> {
        let Some(mark) = self.head_mark()? else {
            return Ok(None);
        };
        if head == Some(&mark) {
            return Ok(None);
        }
        let now = super::audit::now_rfc3339();
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO audit_checkpoint (seq, hash, time) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![mark.seq as i64, mark.hash, now])?;
        // The index rows of records cut off would otherwise describe the records written next.
        self.conn
            .prepare_cached("DELETE FROM audit_key WHERE seq > ?1")?
            .execute(params![head.map_or(0, |h| h.seq as i64)])?;
        let found = head.map_or("no records".to_string(), |h| {
            format!("record {} (hash {})", h.seq, h.hash)
        });
        let detail = format!(
            "audit trail tampered with: schoolgate's last commit ended at record {} (hash {}), but the trail now ends at {found}; run schoolgate audit verify",
            mark.seq, mark.hash
        );
        tracing::error!("{detail}");
        Ok(Some(AuditRecord::action(
            RecordKind::TamperDetected,
            crate::store::GATEWAY,
            detail,
        )))
    }

    /// Chains `records` after the head and writes them, inside a transaction already begun.
    fn chain_and_insert(
        &mut self,
        records: &[&AuditRecord],
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let head = self.head()?;
        let notice = self.notice_tampering(head.as_ref())?;
        let all: Vec<&AuditRecord> = notice.iter().chain(records.iter().copied()).collect();
        let mut entries = super::audit::chain_all(head, &all);
        let batch: Vec<NewEntry<'_>> = all
            .iter()
            .zip(&entries)
            .map(|(record, entry)| NewEntry { entry, record })
            .collect();
        self.insert_and_commit(&batch)?;
        drop(batch);
        if notice.is_some() {
            entries.remove(0);
        }
        Ok(entries)
    }

    /// Runs `f` inside `BEGIN IMMEDIATE`; rolls back if it fails.
    fn immediate<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let result = f(self);
        if result.is_err() && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        result
    }

    fn need_index(&self) -> Result<(), StoreError> {
        if self.version < MARKS_VERSION {
            return Err(StoreError::NoIndex {
                path: self.path.clone(),
            });
        }
        Ok(())
    }
}

/// Visits, in ascending order without repeats, the union of several ascending streams of
/// sequence numbers.
fn merge_next(heads: &mut [Option<i64>]) -> Option<i64> {
    heads.iter().flatten().min().copied()
}

impl Backend for SqliteBackend {
    fn head(&mut self) -> Result<Option<ChainHead>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?;
        let mut rows = stmt.query([])?;
        match rows.next()? {
            Some(row) => Ok(Some(ChainHead {
                seq: row.get::<_, i64>(0)? as u64,
                hash: row.get(1)?,
            })),
            None => Ok(None),
        }
    }

    fn append_batch(&mut self, entries: &[NewEntry<'_>]) -> Result<(), StoreError> {
        if !self.conn.is_autocommit() {
            // A transaction left open by a failure that even ROLLBACK could not undo.
            self.conn.execute_batch("ROLLBACK")?;
        }
        // BEGIN and COMMIT as cached statements: this runs for every batch, and parsing them
        // anew each time (as rusqlite's `transaction()` does) is measurable.
        self.conn.prepare_cached("BEGIN")?.execute([])?;
        let written = self.insert_and_commit(entries);
        if written.is_err() && !self.conn.is_autocommit() {
            // Nothing of the batch may remain.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        written
    }

    /// Chains against the head read inside the write transaction: `BEGIN IMMEDIATE` holds the
    /// database's write lock from before the head is read until the commit, so another process
    /// appending to the same database (the CLI while the gateway runs) cannot fork the chain.
    fn append_chained(&mut self, records: &[&AuditRecord]) -> Result<Vec<AuditEntry>, StoreError> {
        self.immediate(|b| b.chain_and_insert(records))
    }

    fn read_from(&mut self, from_seq: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, prev_hash, hash, record FROM audit WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![from_seq as i64, limit as i64], |row| {
            Ok(AuditEntry {
                seq: row.get::<_, i64>(0)? as u64,
                prev_hash: row.get(1)?,
                hash: row.get(2)?,
                record_json: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn begin_read(&mut self) -> Result<(), StoreError> {
        if self.conn.is_autocommit() {
            self.conn.prepare_cached("BEGIN")?.execute([])?;
            // BEGIN is deferred: the snapshot is taken by the first read.
            self.conn
                .prepare_cached("SELECT count(*) FROM sqlite_master")?
                .query_row([], |_| Ok(()))?;
        }
        Ok(())
    }

    fn end_read(&mut self) -> Result<(), StoreError> {
        if !self.conn.is_autocommit() {
            self.conn.prepare_cached("COMMIT")?.execute([])?;
        }
        Ok(())
    }

    fn marks(&mut self) -> Result<Marks, StoreError> {
        if self.version < MARKS_VERSION {
            return Ok(Marks::default());
        }
        let head = self.head_mark()?;
        let checkpoints = {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT seq, hash, time FROM audit_checkpoint ORDER BY seq")?;
            let rows = stmt.query_map([], |row| {
                Ok(Checkpoint {
                    seq: row.get::<_, i64>(0)? as u64,
                    hash: row.get(1)?,
                    time: row.get(2)?,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        let last_purge = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT seq, prev_hash, hash, record FROM audit WHERE kind = 'purge'
                 ORDER BY seq DESC LIMIT 1",
            )?;
            let mut rows = stmt.query([])?;
            match rows.next()? {
                Some(row) => Some(AuditEntry {
                    seq: row.get::<_, i64>(0)? as u64,
                    prev_hash: row.get(1)?,
                    hash: row.get(2)?,
                    record_json: row.get(3)?,
                }),
                None => None,
            }
        };
        Ok(Marks {
            head,
            checkpoints,
            last_purge,
        })
    }

    fn checkpoint(&mut self) -> Result<Option<ChainHead>, StoreError> {
        self.immediate(|b| {
            let head = b.head()?;
            if let Some(h) = &head {
                b.conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO audit_checkpoint (seq, hash, time) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![h.seq as i64, h.hash, super::audit::now_rfc3339()])?;
            }
            b.conn.prepare_cached("COMMIT")?.execute([])?;
            Ok(head)
        })
    }

    fn purge(
        &mut self,
        before: &str,
        retention_days: u32,
        actor: &str,
    ) -> Result<Option<AuditEntry>, StoreError> {
        // One transaction decides the range and chains the purge record that anchors it.
        let planned = self.immediate(|b| {
            let range: (Option<i64>, Option<i64>) = b.conn.query_row(
                "SELECT min(seq), (SELECT min(seq) FROM audit WHERE time >= ?1) FROM audit",
                params![before],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let Some(first) = range.0 else {
                b.conn.execute_batch("COMMIT")?;
                return Ok(None);
            };
            let last = match range.1 {
                Some(newer) => newer - 1,
                None => b.head()?.map_or(0, |h| h.seq as i64),
            };
            if last < first {
                b.conn.execute_batch("COMMIT")?;
                return Ok(None);
            }
            let (last_hash, newest): (String, String) = b.conn.query_row(
                "SELECT hash, time FROM audit WHERE seq = ?1",
                params![last],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let oldest: String = b.conn.query_row(
                "SELECT time FROM audit WHERE seq = ?1",
                params![first],
                |r| r.get(0),
            )?;
            let (first, last) = (first as u64, last as u64);
            let purge = PurgeRecord {
                first_seq: first,
                last_seq: last,
                last_hash,
                records: last - first + 1,
                oldest,
                newest,
                before: before.to_string(),
                retention_days,
            };
            let record = AuditRecord {
                purge: Some(purge),
                ..AuditRecord::action(
                    RecordKind::Purge,
                    actor,
                    format!(
                        "retention purge: audit records {first} to {last} ({} records) older than {retention_days} days removed; record {last}'s hash is kept here",
                        last - first + 1
                    ),
                )
            };
            let entry = b.chain_and_insert(&[&record])?;
            Ok(entry.into_iter().next().map(|e| (first, last, e)))
        })?;
        let Some((first, last, entry)) = planned else {
            return Ok(None);
        };
        // Then the records go, oldest first, a chunk per transaction; if this stops part-way
        // the rest is still anchored by the purge record, and the next purge takes it.
        let mut from = first;
        while from <= last {
            let to = (from + PURGE_CHUNK - 1).min(last);
            self.immediate(|b| {
                b.conn
                    .prepare_cached("DELETE FROM audit_key WHERE seq BETWEEN ?1 AND ?2")?
                    .execute(params![from as i64, to as i64])?;
                b.conn
                    .prepare_cached("DELETE FROM audit WHERE seq BETWEEN ?1 AND ?2")?
                    .execute(params![from as i64, to as i64])?;
                b.conn.prepare_cached("COMMIT")?.execute([])?;
                Ok(())
            })?;
            from = to + 1;
        }
        Ok(Some(entry))
    }

    fn seq_range(
        &mut self,
        since: Option<&str>,
        until: Option<&str>,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        let lo: Option<i64> = match since {
            Some(t) => self.conn.query_row(
                "SELECT min(seq) FROM audit WHERE time >= ?1",
                params![t],
                |r| r.get(0),
            )?,
            None => self
                .conn
                .query_row("SELECT min(seq) FROM audit", [], |r| r.get(0))?,
        };
        let hi: Option<i64> = match until {
            Some(t) => self.conn.query_row(
                "SELECT max(seq) FROM audit WHERE time < ?1",
                params![t],
                |r| r.get(0),
            )?,
            None => self
                .conn
                .query_row("SELECT max(seq) FROM audit", [], |r| r.get(0))?,
        };
        Ok(match (lo, hi) {
            (Some(lo), Some(hi)) if lo <= hi => Some((lo as u64, hi as u64)),
            _ => None,
        })
    }

    fn scan(
        &mut self,
        seqs: (u64, u64),
        keys: &[String],
        each: &mut dyn FnMut(AuditEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let (lo, hi) = (seqs.0 as i64, seqs.1 as i64);
        let entry = |row: &rusqlite::Row<'_>| -> rusqlite::Result<AuditEntry> {
            Ok(AuditEntry {
                seq: row.get::<_, i64>(0)? as u64,
                prev_hash: row.get(1)?,
                hash: row.get(2)?,
                record_json: row.get(3)?,
            })
        };
        if keys.is_empty() {
            let mut stmt = self.conn.prepare(
                "SELECT seq, prev_hash, hash, record FROM audit WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
            )?;
            let mut rows = stmt.query(params![lo, hi])?;
            while let Some(row) = rows.next()? {
                if !each(entry(row)?)? {
                    break;
                }
            }
            return Ok(());
        }
        self.need_index()?;
        // One ascending stream of sequence numbers per key, merged; each record read by its
        // sequence number. Memory: one row per key, whatever the size of the trail.
        let mut stmts = Vec::with_capacity(keys.len());
        for _ in keys {
            stmts.push(self.conn.prepare(
                "SELECT seq FROM audit_key WHERE key = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq",
            )?);
        }
        let mut streams = Vec::with_capacity(keys.len());
        for (stmt, key) in stmts.iter_mut().zip(keys) {
            streams.push(stmt.query(params![key, lo, hi])?);
        }
        let mut heads = Vec::with_capacity(streams.len());
        for rows in streams.iter_mut() {
            heads.push(match rows.next()? {
                Some(r) => Some(r.get::<_, i64>(0)?),
                None => None,
            });
        }
        let mut read = self
            .conn
            .prepare("SELECT seq, prev_hash, hash, record FROM audit WHERE seq = ?1")?;
        while let Some(seq) = merge_next(&mut heads) {
            for (head, rows) in heads.iter_mut().zip(streams.iter_mut()) {
                if *head == Some(seq) {
                    *head = match rows.next()? {
                        Some(r) => Some(r.get::<_, i64>(0)?),
                        None => None,
                    };
                }
            }
            let mut rows = read.query(params![seq])?;
            // A key whose record was purged meanwhile has no row.
            if let Some(row) = rows.next()?
                && !each(entry(row)?)?
            {
                break;
            }
        }
        Ok(())
    }

    fn search_columns(
        &mut self,
        seqs: (u64, u64),
    ) -> Result<Option<Vec<SearchColumns>>, StoreError> {
        if self.version < MARKS_VERSION {
            return Ok(None);
        }
        let (lo, hi) = (seqs.0 as i64, seqs.1 as i64);
        let mut out: Vec<SearchColumns> = Vec::new();
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT seq, time, kind, mail_from, outcome FROM audit
                 WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
            )?;
            let mut rows = stmt.query(params![lo, hi])?;
            while let Some(row) = rows.next()? {
                out.push(SearchColumns {
                    seq: row.get::<_, i64>(0)? as u64,
                    time: row.get(1)?,
                    kind: row.get(2)?,
                    keys: Default::default(),
                    mail_from: row.get(3)?,
                    outcome: row.get(4)?,
                });
            }
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, key FROM audit_key WHERE seq BETWEEN ?1 AND ?2")?;
        let mut rows = stmt.query(params![lo, hi])?;
        while let Some(row) = rows.next()? {
            let seq = row.get::<_, i64>(0)? as u64;
            let key: String = row.get(1)?;
            // A key for a record that is not there would find nothing: harmless.
            if let Ok(i) = out.binary_search_by_key(&seq, |c| c.seq) {
                out[i].keys.insert(key);
            }
        }
        Ok(Some(out))
    }

    fn scan_cases(
        &mut self,
        each: &mut dyn FnMut(AuditEntry) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.cases(each)
    }

    fn count(&mut self, seqs: (u64, u64), keys: &[String]) -> Result<u64, StoreError> {
        let (lo, hi) = (seqs.0 as i64, seqs.1 as i64);
        if keys.is_empty() {
            let n: i64 = self.conn.query_row(
                "SELECT count(*) FROM audit WHERE seq BETWEEN ?1 AND ?2",
                params![lo, hi],
                |r| r.get(0),
            )?;
            return Ok(n as u64);
        }
        self.need_index()?;
        let marks = vec!["?"; keys.len()].join(", ");
        let sql = format!(
            "SELECT count(DISTINCT seq) FROM audit_key WHERE key IN ({marks}) AND seq BETWEEN ? AND ?"
        );
        let mut values: Vec<rusqlite::types::Value> = keys
            .iter()
            .map(|k| rusqlite::types::Value::Text(k.clone()))
            .collect();
        values.push(rusqlite::types::Value::Integer(lo));
        values.push(rusqlite::types::Value::Integer(hi));
        let n: i64 = self
            .conn
            .query_row(&sql, rusqlite::params_from_iter(values), |r| r.get(0))?;
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuditLog, AuditRecord, RecordKind, verify, verify_chain};

    fn record(n: usize) -> AuditRecord {
        AuditRecord::action(RecordKind::Action, "test", format!("action {n}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_make_one_unbroken_chain() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::start(Box::new(SqliteBackend::open(dir.path()).unwrap())).unwrap();
        let mut tasks = Vec::new();
        for n in 0..400 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move { log.append(record(n)).await }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap().unwrap().seq);
        }
        seqs.sort();
        assert_eq!(seqs, (1..=400).collect::<Vec<u64>>());
        let mut reader = SqliteBackend::open_read_only(dir.path()).unwrap();
        let head = verify_chain(&mut reader).unwrap().unwrap();
        assert_eq!(head.seq, 400);
    }

    #[test]
    fn two_logs_on_one_database_do_not_fork_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let a = AuditLog::start(Box::new(SqliteBackend::open(dir.path()).unwrap())).unwrap();
        let b = AuditLog::start(Box::new(SqliteBackend::open(dir.path()).unwrap())).unwrap();
        for n in 0..20 {
            let log = if n % 2 == 0 { &a } else { &b };
            assert_eq!(log.append_blocking(record(n)).unwrap().seq, n as u64 + 1);
        }
        // And side by side, from two threads at once.
        let (a2, b2) = (a.clone(), b.clone());
        let ta = std::thread::spawn(move || {
            for n in 0..50 {
                a2.append_blocking(record(n)).unwrap();
            }
        });
        let tb = std::thread::spawn(move || {
            for n in 0..50 {
                b2.append_blocking(record(n)).unwrap();
            }
        });
        ta.join().unwrap();
        tb.join().unwrap();
        let mut reader = SqliteBackend::open_read_only(dir.path()).unwrap();
        assert_eq!(verify_chain(&mut reader).unwrap().unwrap().seq, 120);
    }

    #[test]
    fn reopening_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = AuditLog::start(Box::new(SqliteBackend::open(dir.path()).unwrap())).unwrap();
            log.append_blocking(record(1)).unwrap();
        }
        let log = AuditLog::start(Box::new(SqliteBackend::open(dir.path()).unwrap())).unwrap();
        let e = log.append_blocking(record(2)).unwrap();
        assert_eq!(e.seq, 2);
        let mut reader = SqliteBackend::open_read_only(dir.path()).unwrap();
        assert_eq!(verify_chain(&mut reader).unwrap().unwrap().seq, 2);
    }

    #[test]
    fn a_failed_batch_leaves_nothing_and_the_next_one_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut backend = SqliteBackend::open(dir.path()).unwrap();
        let (r1, r2) = (record(1), record(2));
        let first = AuditEntry::chain(None, &r1);
        let clash = AuditEntry {
            seq: first.seq,
            ..AuditEntry::chain(None, &r2)
        };
        let batch = [
            NewEntry {
                entry: &first,
                record: &r1,
            },
            NewEntry {
                entry: &clash,
                record: &r2,
            },
        ];
        assert!(backend.append_batch(&batch).is_err());
        assert_eq!(backend.head().unwrap(), None);
        backend.append_batch(&batch[..1]).unwrap();
        assert_eq!(backend.head().unwrap().unwrap().seq, 1);
        let row: (String, String) = backend
            .conn
            .query_row("SELECT kind, time FROM audit WHERE seq = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(row, ("action".to_string(), r1.time.clone()));
    }

    #[test]
    fn a_changed_record_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::start(Box::new(SqliteBackend::open(dir.path()).unwrap())).unwrap();
        for n in 0..5 {
            log.append_blocking(record(n)).unwrap();
        }
        let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        conn.execute(
            "UPDATE audit SET record = replace(record, 'action 2', 'action 9') WHERE seq = 3",
            [],
        )
        .unwrap();
        let mut reader = SqliteBackend::open_read_only(dir.path()).unwrap();
        match verify_chain(&mut reader) {
            Err(StoreError::ChainBroken { seq, .. }) => assert_eq!(seq, 3),
            other => panic!("expected a broken chain at 3, got {other:?}"),
        }
        conn.execute("DELETE FROM audit WHERE seq = 2", []).unwrap();
        match verify_chain(&mut reader) {
            Err(StoreError::ChainBroken { seq, .. }) => assert_eq!(seq, 2),
            other => panic!("expected a broken chain at 2, got {other:?}"),
        }
    }

    /// A database written before version 3 (records, no index, no marks) still verifies
    /// read-only, is migrated without a stored byte changing, and its old records are found
    /// by address.
    #[test]
    fn a_version_2_database_verifies_and_migrates_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATABASE_FILE);
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(MIGRATIONS[1]).unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
            let msg = AuditRecord::message(crate::store::MessageRecord {
                mail_from: "t.baker@example-academy.sch.uk".into(),
                rcpt_to: vec!["jamie.smith2010@gmail.com".into()],
                header_to: vec!["Jamie <Jamie.Smith2010@gmail.com>".into()],
                verdict: "deliver".into(),
                ..Default::default()
            });
            let records = [record(1), msg, record(2)];
            let refs: Vec<&AuditRecord> = records.iter().collect();
            for (e, r) in crate::store::audit::chain_all(None, &refs)
                .iter()
                .zip(&records)
            {
                // As every schoolgate has written them: sender and outcome beside a message.
                let (mail_from, outcome) = match &r.message {
                    Some(m) => (Some(m.mail_from.as_str()), Some(m.outcome.as_str())),
                    None => (None, None),
                };
                conn.execute(
                    "INSERT INTO audit (seq, time, kind, mail_from, outcome, record, prev_hash, hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        e.seq as i64,
                        r.time,
                        r.kind.as_str(),
                        mail_from,
                        outcome,
                        e.record_json,
                        e.prev_hash,
                        e.hash
                    ],
                )
                .unwrap();
            }
        }
        let stored = |p: &Path| -> Vec<(i64, String, String)> {
            let conn = Connection::open(p).unwrap();
            let mut st = conn
                .prepare("SELECT seq, record, hash FROM audit ORDER BY seq")
                .unwrap();
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let before = stored(&path);
        let mut reader = SqliteBackend::open_read_only(dir.path()).unwrap();
        assert_eq!(verify_chain(&mut reader).unwrap().unwrap().seq, 3);
        drop(reader);

        let mut backend = SqliteBackend::open(dir.path()).unwrap();
        assert_eq!(
            stored(&path),
            before,
            "the migration changes no stored record"
        );
        let mut found = Vec::new();
        backend
            .scan((1, 3), &["a:jamie.smith2010@gmail.com".into()], &mut |e| {
                found.push(e.seq);
                Ok(true)
            })
            .unwrap();
        assert_eq!(found, [2]);
        assert_eq!(backend.marks().unwrap().head.unwrap().seq, 3);
        let mut reader = SqliteBackend::open_read_only(dir.path()).unwrap();
        assert_eq!(verify(&mut reader, &[]).unwrap().records, 3);
    }

    /// `verify` reads one snapshot: records appended while it runs are neither a cut tail nor
    /// records added behind schoolgate's back.
    #[test]
    fn verify_while_another_process_appends() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::start(Box::new(SqliteBackend::open(dir.path()).unwrap())).unwrap();
        for n in 0..3000 {
            log.append_blocking(record(n)).unwrap();
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    log.append_blocking(record(n)).unwrap();
                    n += 1;
                }
            })
        };
        for _ in 0..10 {
            let mut reader = SqliteBackend::open_read_only(dir.path()).unwrap();
            verify(&mut reader, &[]).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
    }
}
