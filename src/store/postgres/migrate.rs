//! `schoolgate migrate --from sqlite:PATH`: an existing single-school store copied into the
//! PostgreSQL database `[storage] database` names, chain intact.
//!
//! The command verifies the source, refuses a target that holds anything ([`target_rows`]),
//! copies inside ONE PostgreSQL transaction (so a failure leaves the target empty), and verifies
//! the target. Each group of tables has its own copy function taking the open SQLite source and
//! that transaction ([`copy_audit`]); a table that moves to PostgreSQL adds its function here,
//! its name to [`TABLES`], and a call in `cli::migrate`.

use std::path::{Path, PathBuf};

use super::PgTx;
use super::audit::insert;
use crate::store::sqlite::{DATABASE_FILE, SqliteBackend};
use crate::store::{AuditEntry, AuditRecord, Backend, StoreError};

/// Every PostgreSQL table `migrate` fills; all must be empty before it starts.
pub const TABLES: &[&str] = &[
    "audit",
    "audit_key",
    "audit_head",
    "audit_checkpoint",
    // Filled by `insert` from the audit records copied (the messages answered 250).
    "answered_message",
    // super::shared::copy_from_sqlite's:
    "quarantine",
    "web_user",
    "release_link",
    "send_queue",
];

/// Records copied per statement.
const BATCH: usize = 4096;

/// How many rows of one kind were copied, for the command's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub what: &'static str,
    pub rows: u64,
}

/// The SQLite database file `--from sqlite:PATH` names: PATH is `storage.state_dir` of the
/// single-school install (its `schoolgate.db` is read) or the database file itself.
pub fn source_file(from: &str) -> Result<PathBuf, String> {
    let Some(path) = from.strip_prefix("sqlite:") else {
        return Err(format!(
            "--from {from:?}: write sqlite:PATH, where PATH is the old state_dir (e.g. sqlite:/var/lib/schoolgate) or its {DATABASE_FILE}"
        ));
    };
    let path = Path::new(path);
    let file = if path.is_dir() {
        path.join(DATABASE_FILE)
    } else {
        path.to_path_buf()
    };
    if !file.is_file() {
        return Err(format!(
            "--from {from:?}: there is no SQLite database at {}; give the old state_dir or its {DATABASE_FILE}",
            file.display()
        ));
    }
    Ok(file)
}

/// The tables of [`TABLES`] that hold rows, with how many.
pub fn target_rows(tx: &mut PgTx) -> Result<Vec<(&'static str, i64)>, StoreError> {
    let mut found = Vec::new();
    for table in TABLES {
        let n = tx.run(move |c| {
            Box::pin(async move {
                let sql = format!("SELECT count(*) FROM {table}");
                Ok(c.query_one(sql.as_str(), &[]).await?.get::<_, i64>(0))
            })
        })?;
        if n > 0 {
            found.push((*table, n));
        }
    }
    Ok(found)
}

/// Copies the audit trail: every record with the same sequence number, JSON and hashes, its
/// search columns and export keys, the head mark and the checkpoints. `source` should be in a
/// read snapshot ([`Backend::begin_read`]).
pub fn copy_audit(source: &mut SqliteBackend, tx: &mut PgTx) -> Result<Vec<Copied>, StoreError> {
    let mut records = 0u64;
    let mut from = 1;
    loop {
        let batch = source.read_from(from, BATCH)?;
        let Some(last) = batch.last() else {
            break;
        };
        from = last.seq + 1;
        let pairs: Vec<(AuditEntry, AuditRecord)> = batch
            .into_iter()
            .map(|e| e.record().map(|r| (e, r)))
            .collect::<Result<_, _>>()?;
        records += pairs.len() as u64;
        tx.run(move |c| Box::pin(async move { insert(c, &pairs).await }))?;
    }
    let marks = source.marks()?;
    let checkpoints = marks.checkpoints.len() as u64;
    let head = marks.head;
    tx.run(move |c| {
        Box::pin(async move {
            for cp in &marks.checkpoints {
                c.execute(
                    "INSERT INTO audit_checkpoint (seq, hash, time) VALUES ($1, $2, $3)",
                    &[&(cp.seq as i64), &cp.hash, &cp.time],
                )
                .await?;
            }
            // The head as SQLite's last commit recorded it (the newest record when intact).
            if let Some(h) = &head {
                c.execute(
                    "INSERT INTO audit_head (id, seq, hash) VALUES (1, $1, $2)
                     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                    &[&(h.seq as i64), &h.hash],
                )
                .await?;
            }
            Ok(())
        })
    })?;
    Ok(vec![
        Copied {
            what: "audit records",
            rows: records,
        },
        Copied {
            what: "audit checkpoints",
            rows: checkpoints,
        },
    ])
}
