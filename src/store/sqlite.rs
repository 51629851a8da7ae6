//! The embedded store: one SQLite database file under `storage.state_dir`.
//!
//! WAL journal with `synchronous = FULL`: a commit returns only after the log is fsynced, which
//! is what lets the relay say 250 with a clear conscience. The schema is created and migrated on
//! open (`PRAGMA user_version`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

use super::{AuditEntry, AuditRecord, Backend, ChainHead, NewEntry, StoreError};

/// The database file's name inside `storage.state_dir`.
pub const DATABASE_FILE: &str = "schoolgate.db";

/// The schema version this code writes; see [`MIGRATIONS`].
const SCHEMA_VERSION: i64 = 2;

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
];

/// The audit trail in SQLite.
pub struct SqliteBackend {
    conn: Connection,
    path: PathBuf,
}

impl SqliteBackend {
    /// Opens (creating and migrating if needed) `state_dir/schoolgate.db`.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let path = state_dir.join(DATABASE_FILE);
        let conn = open_connection(state_dir)?;
        Ok(SqliteBackend { conn, path })
    }

    /// Opens an existing database read-only (for `audit verify` and exports).
    pub fn open_read_only(state_dir: &Path) -> Result<Self, StoreError> {
        let path = state_dir.join(DATABASE_FILE);
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(
            |source| StoreError::Open {
                path: path.clone(),
                source,
            },
        )?;
        Ok(SqliteBackend { conn, path })
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
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

impl SqliteBackend {
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
        }
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }
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
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let written = (|| {
            let head = self.head()?;
            let entries = super::audit::chain_all(head, records);
            let batch: Vec<NewEntry<'_>> = records
                .iter()
                .zip(&entries)
                .map(|(record, entry)| NewEntry { entry, record })
                .collect();
            self.insert_and_commit(&batch)?;
            Ok(entries)
        })();
        if written.is_err() && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        written
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuditLog, AuditRecord, RecordKind, verify_chain};

    fn record(n: usize) -> AuditRecord {
        AuditRecord::action(
            RecordKind::Action,
            crate::store::ActionRecord {
                actor: "test".into(),
                detail: format!("action {n}"),
            },
        )
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
}
