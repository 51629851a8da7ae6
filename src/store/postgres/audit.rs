//! The audit trail in PostgreSQL: the same columns and semantics as SQLite's
//! ([`crate::store::sqlite::SqliteBackend`]), shared by every gateway of a trust.
//!
//! One chain for all nodes: [`Backend::append_chained`] takes a transaction-scoped advisory
//! lock ([`AUDIT_LOCK`]), then reads the head and inserts, and commits, in one transaction; so
//! two gateways appending at once queue on the lock and the chain can never fork. A writer
//! whose own last append is still the newest record skips the read: it chains after that
//! record and sends one statement (`audit_append_after`, schema version 6) that takes the lock,
//! checks that the record is still the newest and the head mark (`audit_head_is`), and
//! inserts; if not, nothing is written and it appends the long way. Each node's
//! [`crate::store::AuditLog`] still batches whatever queued meanwhile into that one
//! transaction (group commit). A read snapshot ([`Backend::begin_read`]) is a REPEATABLE READ
//! transaction on a connection kept for it until [`Backend::end_read`].

use std::future::Future;
use std::pin::Pin;

use deadpool_postgres::{ClientWrapper, Object};
use tokio_postgres::Row;

use super::Pg;
use crate::store::audit::{
    Checkpoint, Marks, PurgeRecord, SearchColumns, chain_all, index_keys, now_rfc3339,
};
use crate::store::{
    AuditEntry, AuditRecord, Backend, ChainHead, GATEWAY, NewEntry, RecordKind, StoreError,
};

/// The advisory lock every append to the chain holds until it commits ("sg" "au" in ASCII).
pub const AUDIT_LOCK: i64 = 0x7367_6175;

/// Rows read per round trip by `scan`.
const PAGE: i64 = 4096;

/// How many records a purge deletes per transaction.
const PURGE_CHUNK: i64 = 5000;

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The audit trail in PostgreSQL.
pub struct PgAudit {
    pg: Pg,
    /// The connection holding the read snapshot, between `begin_read` and `end_read`.
    snapshot: Option<Object>,
    /// Where this writer's last append left the chain: the next append assumes the chain still
    /// ends there, and checks it inside its transaction ([`append_after`]).
    last_appended: Option<ChainHead>,
}

impl PgAudit {
    /// The audit trail in the database `pg` is connected to (migrated by [`Pg::connect`]).
    pub fn new(pg: Pg) -> PgAudit {
        PgAudit {
            pg,
            snapshot: None,
            last_appended: None,
        }
    }

    /// The database, as errors name it.
    pub fn database(&self) -> &str {
        self.pg.database()
    }

    /// Runs `f` on the snapshot's connection if a read is open, else on a pooled one.
    fn with<T, F>(&mut self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a ClientWrapper) -> BoxFut<'a, T> + Send + 'static,
    {
        let held = self.snapshot.take();
        let pg = self.pg.clone();
        let (held, result) = self.pg.block_on(async move {
            match held {
                Some(client) => {
                    let r = f(&client).await;
                    (Some(client), r)
                }
                None => match pg.client().await {
                    Ok(client) => (None, f(&client).await),
                    Err(e) => (None, Err(e)),
                },
            }
        });
        self.snapshot = held;
        result.map_err(|e| self.pg.name_error(e))
    }

    /// Runs `f` inside a write transaction on a pooled connection (never the snapshot's) that
    /// holds [`AUDIT_LOCK`]; commits if it succeeds, rolls back if not.
    fn locked<T, F>(&mut self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a ClientWrapper) -> BoxFut<'a, T> + Send + 'static,
    {
        self.pg.run(move |client| async move {
            let done: Result<T, StoreError> = async {
                client.batch_execute("BEGIN").await?;
                let lock = client
                    .prepare_cached("SELECT pg_advisory_xact_lock($1)")
                    .await?;
                client.execute(&lock, &[&AUDIT_LOCK]).await?;
                let value = f(&client).await?;
                client.batch_execute("COMMIT").await?;
                Ok(value)
            }
            .await;
            if done.is_err() && client.batch_execute("ROLLBACK").await.is_err() {
                // Not back into the pool in an unknown state.
                drop(Object::take(client));
            }
            done
        })
    }

    /// One page of the records that may belong to a safeguarding case, after `after`.
    fn cases_page(&mut self, after: i64) -> Result<Vec<AuditEntry>, StoreError> {
        self.with(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT seq, prev_hash, hash, record FROM audit
                         WHERE seq > $1 AND (
                             seq IN (SELECT seq FROM audit_key WHERE key >= 'r:' AND key < 'r;')
                             OR kind = 'case-review')
                         ORDER BY seq LIMIT $2",
                        &[&after, &PAGE],
                    )
                    .await?;
                Ok(rows.iter().map(entry).collect())
            })
        })
    }
}

impl Drop for PgAudit {
    fn drop(&mut self) {
        // A connection with a transaction still open must not go back to the pool.
        if let Some(client) = self.snapshot.take() {
            drop(Object::take(client));
        }
    }
}

fn entry(row: &Row) -> AuditEntry {
    AuditEntry {
        seq: row.get::<_, i64>(0) as u64,
        prev_hash: row.get(1),
        hash: row.get(2),
        record_json: row.get(3),
    }
}

fn head_of(row: Option<Row>) -> Option<ChainHead> {
    row.map(|r| ChainHead {
        seq: r.get::<_, i64>(0) as u64,
        hash: r.get(1),
    })
}

async fn read_head(c: &ClientWrapper) -> Result<Option<ChainHead>, StoreError> {
    let stmt = c.prepare_cached(READ_HEAD).await?;
    Ok(head_of(c.query_opt(&stmt, &[]).await?))
}

/// The columns of a batch of records, one array per column, as the `unnest` inserts take them.
#[derive(Default)]
struct Columns<'a> {
    seq: Vec<i64>,
    time: Vec<&'a str>,
    kind: Vec<&'a str>,
    mail_from: Vec<Option<&'a str>>,
    outcome: Vec<Option<&'a str>>,
    json: Vec<&'a str>,
    prev: Vec<&'a str>,
    hash: Vec<&'a str>,
    key: Vec<String>,
    key_seq: Vec<i64>,
    /// The messages answered (delivered or held) in the batch: [`INSERT_ANSWERED`]'s columns.
    answered: Answered<'a>,
}

/// The columns of `answered_message` for a batch: the first record of a message wins, and a
/// retry is answered from it.
#[derive(Default)]
struct Answered<'a> {
    identity: Vec<String>,
    time: Vec<&'a str>,
    seq: Vec<i64>,
    queue_id: Vec<String>,
    outcome: Vec<String>,
    quarantine_id: Vec<Option<String>>,
}

impl Answered<'_> {
    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 6] {
        [
            &self.identity,
            &self.time,
            &self.seq,
            &self.queue_id,
            &self.outcome,
            &self.quarantine_id,
        ]
    }
}

impl<'a> Columns<'a> {
    /// [`INSERT_ROWS`]'s parameters.
    fn row_params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 8] {
        [
            &self.seq,
            &self.time,
            &self.kind,
            &self.mail_from,
            &self.outcome,
            &self.json,
            &self.prev,
            &self.hash,
        ]
    }

    fn of(entries: &'a [(AuditEntry, AuditRecord)]) -> Columns<'a> {
        let mut c = Columns::default();
        for (e, r) in entries {
            if let Some(a) = crate::store::audit::answered_by(r) {
                c.answered.identity.push(a.identity);
                c.answered.time.push(r.time.as_str());
                c.answered.seq.push(e.seq as i64);
                c.answered.queue_id.push(a.queue_id);
                c.answered.outcome.push(a.outcome);
                c.answered.quarantine_id.push(a.quarantine_id);
            }
            c.seq.push(e.seq as i64);
            c.time.push(r.time.as_str());
            c.kind.push(r.kind.as_str());
            c.mail_from
                .push(r.message.as_ref().map(|m| m.mail_from.as_str()));
            c.outcome
                .push(r.message.as_ref().map(|m| m.outcome.as_str()));
            c.json.push(e.record_json.as_str());
            c.prev.push(e.prev_hash.as_str());
            c.hash.push(e.hash.as_str());
            for k in index_keys(r) {
                c.key.push(k);
                c.key_seq.push(e.seq as i64);
            }
        }
        c
    }
}

const INSERT_ROWS: &str =
    "INSERT INTO audit (seq, time, kind, mail_from, outcome, record, prev_hash, hash)
     SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[],
                          $5::text[], $6::text[], $7::text[], $8::text[])";
const INSERT_KEYS: &str =
    "INSERT INTO audit_key (key, seq) SELECT * FROM unnest($1::text[], $2::bigint[])
     ON CONFLICT DO NOTHING";
const INSERT_ANSWERED: &str =
    "INSERT INTO answered_message (identity, time, seq, queue_id, outcome, quarantine_id)
     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[],
                          $5::text[], $6::text[])
     ON CONFLICT DO NOTHING";
const MOVE_MARK: &str = "INSERT INTO audit_head (id, seq, hash) VALUES (1, $1, $2)
     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash";
const READ_HEAD: &str = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1";
const READ_MARK: &str = "SELECT seq, hash FROM audit_head WHERE id = 1";

/// Inserts `entries` with their search columns and export keys and moves the head mark, in
/// the transaction `c` is in: one statement per table whatever the batch size.
pub(super) async fn insert(
    c: &ClientWrapper,
    entries: &[(AuditEntry, AuditRecord)],
) -> Result<(), StoreError> {
    let Some((last, _)) = entries.last() else {
        return Ok(());
    };
    let cols = Columns::of(entries);
    let rows = c.prepare_cached(INSERT_ROWS).await?;
    c.execute(&rows, &cols.row_params()).await?;
    if !cols.key.is_empty() {
        let keys = c.prepare_cached(INSERT_KEYS).await?;
        c.execute(&keys, &[&cols.key, &cols.key_seq]).await?;
    }
    if !cols.answered.identity.is_empty() {
        let answered = c.prepare_cached(INSERT_ANSWERED).await?;
        c.execute(&answered, &cols.answered.params()).await?;
    }
    let mark = c.prepare_cached(MOVE_MARK).await?;
    c.execute(&mark, &[&(last.seq as i64), &last.hash]).await?;
    Ok(())
}

/// The relay's append in one statement (schema version 6): the lock, the check that the chain
/// still ends at the given seq and hash (`audit_head_is`: raises `SG001` if not), the rows,
/// their export keys, the messages answered and the new head mark; it commits by itself.
const APPEND_AFTER: &str = "SELECT audit_append_after($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                                                      $11, $12, $13, $14, $15, $16, $17, $18)";

/// What [`append_after`] found.
enum After {
    /// Appended and committed.
    Appended(Vec<AuditEntry>),
    /// The chain no longer ends where this writer left it (another node or process appended,
    /// or the tail was cut): nothing was written; the records come back for the full append.
    Moved(Vec<AuditRecord>),
}

/// The relay's append in one round trip and one statement, when this writer appended last:
/// [`APPEND_AFTER`] with the records chained after `head`. If the chain no longer ends there,
/// the function raises and its transaction (the statement's own) rolls back, so nothing was
/// written and [`After::Moved`] says so; any other error is returned as it is (it is not
/// retried here: a statement whose answer was lost may have committed).
async fn append_after(
    c: &ClientWrapper,
    head: &ChainHead,
    records: Vec<AuditRecord>,
) -> Result<After, StoreError> {
    let stmt = c.prepare_cached(APPEND_AFTER).await?;
    let refs: Vec<&AuditRecord> = records.iter().collect();
    let entries = chain_all(Some(head.clone()), &refs);
    let pairs: Vec<(AuditEntry, AuditRecord)> = entries.into_iter().zip(records).collect();
    if pairs.is_empty() {
        return Ok(After::Appended(Vec::new()));
    }
    let cols = Columns::of(&pairs);
    let head_seq = head.seq as i64;
    let head_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&head_seq, &head.hash];
    let key_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&cols.key, &cols.key_seq];
    // In `audit_append_after`'s order: the head, the rows, their keys, the messages answered.
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = head_params
        .into_iter()
        .chain(cols.row_params())
        .chain(key_params)
        .chain(cols.answered.params())
        .collect();
    match c.execute(&stmt, &params).await {
        Ok(_) => Ok(After::Appended(pairs.into_iter().map(|(e, _)| e).collect())),
        Err(e) if e.code().is_some_and(|code| code.code() == HEAD_MOVED) => {
            Ok(After::Moved(pairs.into_iter().map(|(_, r)| r).collect()))
        }
        Err(e) => Err(e.into()),
    }
}

/// The SQLSTATE `audit_head_is` raises.
const HEAD_MOVED: &str = "SG001";

/// The statements that write a batch, prepared (once per connection) before a round starts,
/// so that nothing in the round waits for a `Parse` and is sent after the `COMMIT`.
struct Writes {
    rows: tokio_postgres::Statement,
    keys: tokio_postgres::Statement,
    answered: tokio_postgres::Statement,
    mark: tokio_postgres::Statement,
}

impl Writes {
    async fn prepare(c: &ClientWrapper) -> Result<Writes, tokio_postgres::Error> {
        let (rows, keys, answered, mark) = tokio::try_join!(
            c.prepare_cached(INSERT_ROWS),
            c.prepare_cached(INSERT_KEYS),
            c.prepare_cached(INSERT_ANSWERED),
            c.prepare_cached(MOVE_MARK),
        )?;
        Ok(Writes {
            rows,
            keys,
            answered,
            mark,
        })
    }
}

/// The rows of `pairs` (not empty), their export keys, the messages answered, the new head
/// mark and `COMMIT`, sent together in that order (`tokio::join!` in `biased` mode polls, and
/// so sends, them in the order written; a caller may put statements before them the same
/// way). Returns the first write's error, and the `COMMIT`'s result apart: after a failed
/// statement PostgreSQL turns the `COMMIT` into a rollback, and still answers it.
async fn write_and_commit(
    c: &ClientWrapper,
    stmts: &Writes,
    pairs: &[(AuditEntry, AuditRecord)],
) -> (
    Result<(), tokio_postgres::Error>,
    Result<(), tokio_postgres::Error>,
) {
    let cols = Columns::of(pairs);
    let row_params = cols.row_params();
    let key_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&cols.key, &cols.key_seq];
    let (last_seq, last_hash) = pairs
        .last()
        .map_or((0, ""), |(e, _)| (e.seq as i64, e.hash.as_str()));
    let mark_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&last_seq, &last_hash];
    let answered_params = cols.answered.params();
    let (inserted, keyed, remembered, moved, committed) = tokio::join!(
        biased;
        c.execute(&stmts.rows, &row_params),
        async {
            if cols.key.is_empty() {
                Ok(0)
            } else {
                c.execute(&stmts.keys, &key_params).await
            }
        },
        async {
            if cols.answered.identity.is_empty() {
                Ok(0)
            } else {
                c.execute(&stmts.answered, &answered_params).await
            }
        },
        c.execute(&stmts.mark, &mark_params),
        c.batch_execute("COMMIT"),
    );
    let written = inserted.and(keyed).and(remembered).and(moved).map(|_| ());
    (written, committed)
}

/// `BEGIN` and [`AUDIT_LOCK`] in one simple query (one round trip).
const BEGIN_LOCKED: &str = "BEGIN; SELECT pg_advisory_xact_lock(1936154997)";

/// The relay's append ([`Backend::append_chained`]): the same transaction as
/// [`PgAudit::locked`] around [`chain_and_insert`], in two round trips to the database rather
/// than eight. The statements of each round are pipelined (sent together, answered in order;
/// `tokio::join!` in `biased` mode polls, and so sends, them in the order written):
/// 1. `BEGIN`, the advisory lock, the newest record and the head mark;
/// 2. the rows, their export keys, the new head mark, and `COMMIT`.
///
/// Every statement's result is checked: if any failed, PostgreSQL has turned the `COMMIT`
/// into a rollback, and the error is returned (the caller rolls back again, harmlessly). The
/// statements are prepared (once per connection) before the rounds, so that nothing in a round
/// waits for a `Parse` and is sent after the `COMMIT`.
async fn append_pipelined(
    c: &ClientWrapper,
    records: Vec<AuditRecord>,
) -> Result<Vec<AuditEntry>, StoreError> {
    let (head_stmt, mark_stmt, stmts) = tokio::try_join!(
        c.prepare_cached(READ_HEAD),
        c.prepare_cached(READ_MARK),
        Writes::prepare(c),
    )?;
    let (begun, head, marked) = tokio::join!(
        biased;
        c.batch_execute(BEGIN_LOCKED),
        c.query_opt(&head_stmt, &[]),
        c.query_opt(&mark_stmt, &[]),
    );
    begun?;
    let head = head_of(head?);
    let notice = notice_tampering(c, head.as_ref(), head_of(marked?)).await?;
    let noticed = notice.is_some();
    let all: Vec<AuditRecord> = notice.into_iter().chain(records).collect();
    let refs: Vec<&AuditRecord> = all.iter().collect();
    let entries = chain_all(head, &refs);
    let pairs: Vec<(AuditEntry, AuditRecord)> = entries.into_iter().zip(all).collect();
    if pairs.is_empty() {
        c.batch_execute("COMMIT").await?;
        return Ok(Vec::new());
    }
    let (written, committed) = write_and_commit(c, &stmts, &pairs).await;
    written?;
    committed?;
    let mut out: Vec<AuditEntry> = pairs.into_iter().map(|(e, _)| e).collect();
    if noticed {
        out.remove(0);
    }
    Ok(out)
}

/// Inside the locked transaction: when the newest record is not the one the last commit
/// wrote, the tail was cut off (or records added) outside schoolgate. As SQLite does: that head
/// is kept as a checkpoint, the cut records' index rows go, and a record saying so is chained
/// first.
async fn notice_tampering(
    c: &ClientWrapper,
    head: Option<&ChainHead>,
    mark: Option<ChainHead>,
) -> Result<Option<AuditRecord>, StoreError> {
    let Some(mark) = mark else {
        return Ok(None);
    };
    if head == Some(&mark) {
        return Ok(None);
    }
    c.execute(
        "INSERT INTO audit_checkpoint (seq, hash, time) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
        &[&(mark.seq as i64), &mark.hash, &now_rfc3339()],
    )
    .await?;
    c.execute(
        "DELETE FROM audit_key WHERE seq > $1",
        &[&head.map_or(0, |h| h.seq as i64)],
    )
    .await?;
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
        GATEWAY,
        detail,
    )))
}

/// Chains `records` after the head and writes them, inside the locked transaction.
async fn chain_and_insert(
    c: &ClientWrapper,
    records: Vec<AuditRecord>,
) -> Result<Vec<AuditEntry>, StoreError> {
    let head = read_head(c).await?;
    let stmt = c.prepare_cached(READ_MARK).await?;
    let mark = head_of(c.query_opt(&stmt, &[]).await?);
    let notice = notice_tampering(c, head.as_ref(), mark).await?;
    let noticed = notice.is_some();
    let all: Vec<AuditRecord> = notice.into_iter().chain(records).collect();
    let refs: Vec<&AuditRecord> = all.iter().collect();
    let entries = chain_all(head, &refs);
    let pairs: Vec<(AuditEntry, AuditRecord)> = entries.into_iter().zip(all).collect();
    insert(c, &pairs).await?;
    let mut out: Vec<AuditEntry> = pairs.into_iter().map(|(e, _)| e).collect();
    if noticed {
        out.remove(0);
    }
    Ok(out)
}

impl Backend for PgAudit {
    fn head(&mut self) -> Result<Option<ChainHead>, StoreError> {
        self.with(|c| Box::pin(async move { read_head(c).await }))
    }

    fn append_batch(&mut self, entries: &[NewEntry<'_>]) -> Result<(), StoreError> {
        let owned: Vec<(AuditEntry, AuditRecord)> = entries
            .iter()
            .map(|n| (n.entry.clone(), n.record.clone()))
            .collect();
        self.locked(move |tx| Box::pin(async move { insert(tx, &owned).await }))
    }

    fn append_chained(&mut self, records: &[&AuditRecord]) -> Result<Vec<AuditEntry>, StoreError> {
        let owned: Vec<AuditRecord> = records.iter().map(|r| (*r).clone()).collect();
        let expected = self.last_appended.take();
        let done = self.pg.run(move |client| async move {
            // One round trip if the chain still ends where this writer left it; else (or on
            // the first append) two, reading the head first.
            let done = match expected {
                Some(head) => match append_after(&client, &head, owned).await {
                    Ok(After::Appended(entries)) => Ok(entries),
                    Ok(After::Moved(owned)) => append_pipelined(&client, owned).await,
                    Err(e) => Err(e),
                },
                None => append_pipelined(&client, owned).await,
            };
            if done.is_err() && client.batch_execute("ROLLBACK").await.is_err() {
                // Not back into the pool in an unknown state.
                drop(Object::take(client));
            }
            done
        });
        if let Ok(entries) = &done {
            self.last_appended = entries.last().map(|e| ChainHead {
                seq: e.seq,
                hash: e.hash.clone(),
            });
        }
        done
    }

    fn read_from(&mut self, from_seq: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let (from, limit) = (from_seq as i64, limit as i64);
        self.with(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT seq, prev_hash, hash, record FROM audit WHERE seq >= $1
                         ORDER BY seq LIMIT $2",
                        &[&from, &limit],
                    )
                    .await?;
                Ok(rows.iter().map(entry).collect())
            })
        })
    }

    fn begin_read(&mut self) -> Result<(), StoreError> {
        if self.snapshot.is_some() {
            return Ok(());
        }
        let pg = self.pg.clone();
        let client = self.pg.block_on(async move {
            let client = pg.client().await?;
            client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1")
                .await?;
            Ok::<_, StoreError>(client)
        });
        self.snapshot = Some(client.map_err(|e| self.pg.name_error(e))?);
        Ok(())
    }

    fn end_read(&mut self) -> Result<(), StoreError> {
        let Some(client) = self.snapshot.take() else {
            return Ok(());
        };
        let ended = self.pg.block_on(async move {
            match client.batch_execute("COMMIT").await {
                Ok(()) => Ok(()),
                Err(e) => {
                    // Not back into the pool with a transaction in an unknown state.
                    drop(Object::take(client));
                    Err(StoreError::from(e))
                }
            }
        });
        ended.map_err(|e| self.pg.name_error(e))
    }

    fn marks(&mut self) -> Result<Marks, StoreError> {
        self.with(|c| {
            Box::pin(async move {
                let head = head_of(
                    c.query_opt("SELECT seq, hash FROM audit_head WHERE id = 1", &[])
                        .await?,
                );
                let checkpoints = c
                    .query(
                        "SELECT seq, hash, time FROM audit_checkpoint ORDER BY seq",
                        &[],
                    )
                    .await?
                    .iter()
                    .map(|r| Checkpoint {
                        seq: r.get::<_, i64>(0) as u64,
                        hash: r.get(1),
                        time: r.get(2),
                    })
                    .collect();
                let last_purge = c
                    .query_opt(
                        "SELECT seq, prev_hash, hash, record FROM audit WHERE kind = 'purge'
                         ORDER BY seq DESC LIMIT 1",
                        &[],
                    )
                    .await?
                    .as_ref()
                    .map(entry);
                Ok(Marks {
                    head,
                    checkpoints,
                    last_purge,
                })
            })
        })
    }

    fn checkpoint(&mut self) -> Result<Option<ChainHead>, StoreError> {
        self.locked(|tx| {
            Box::pin(async move {
                let head = read_head(tx).await?;
                if let Some(h) = &head {
                    tx.execute(
                        "INSERT INTO audit_checkpoint (seq, hash, time) VALUES ($1, $2, $3)
                         ON CONFLICT DO NOTHING",
                        &[&(h.seq as i64), &h.hash, &now_rfc3339()],
                    )
                    .await?;
                }
                Ok(head)
            })
        })
    }

    fn purge(
        &mut self,
        before: &str,
        retention_days: u32,
        actor: &str,
    ) -> Result<Option<AuditEntry>, StoreError> {
        let (before, actor) = (before.to_string(), actor.to_string());
        // One transaction decides the range and chains the purge record that anchors it.
        let planned = self.locked(move |tx| {
            Box::pin(async move {
                let range = tx
                    .query_one(
                        "SELECT min(seq), (SELECT min(seq) FROM audit WHERE time >= $1) FROM audit",
                        &[&before],
                    )
                    .await?;
                let (first, newer): (Option<i64>, Option<i64>) = (range.get(0), range.get(1));
                let Some(first) = first else {
                    return Ok(None);
                };
                let last = match newer {
                    Some(n) => n - 1,
                    None => read_head(tx).await?.map_or(0, |h| h.seq as i64),
                };
                if last < first {
                    return Ok(None);
                }
                let row = tx
                    .query_one("SELECT hash, time FROM audit WHERE seq = $1", &[&last])
                    .await?;
                let (last_hash, newest): (String, String) = (row.get(0), row.get(1));
                let oldest: String = tx
                    .query_one("SELECT time FROM audit WHERE seq = $1", &[&first])
                    .await?
                    .get(0);
                let (first_u, last_u) = (first as u64, last as u64);
                let record = AuditRecord {
                    purge: Some(PurgeRecord {
                        first_seq: first_u,
                        last_seq: last_u,
                        last_hash,
                        records: last_u - first_u + 1,
                        oldest,
                        newest,
                        before,
                        retention_days,
                    }),
                    ..AuditRecord::action(
                        RecordKind::Purge,
                        actor,
                        format!(
                            "retention purge: audit records {first} to {last} ({} records) older than {retention_days} days removed; record {last}'s hash is kept here",
                            last - first + 1
                        ),
                    )
                };
                let entry = chain_and_insert(tx, vec![record]).await?;
                Ok(entry.into_iter().next().map(|e| (first, last, e)))
            })
        })?;
        let Some((first, last, entry)) = planned else {
            return Ok(None);
        };
        // Then the records go, oldest first, a chunk per transaction; if this stops part-way
        // the rest is still anchored by the purge record, and the next purge takes it.
        let mut from = first;
        while from <= last {
            let to = (from + PURGE_CHUNK - 1).min(last);
            self.locked(move |tx| {
                Box::pin(async move {
                    tx.execute(
                        "DELETE FROM audit_key WHERE seq BETWEEN $1 AND $2",
                        &[&from, &to],
                    )
                    .await?;
                    tx.execute(
                        "DELETE FROM audit WHERE seq BETWEEN $1 AND $2",
                        &[&from, &to],
                    )
                    .await?;
                    Ok(())
                })
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
        let (since, until) = (since.map(str::to_string), until.map(str::to_string));
        self.with(move |c| {
            Box::pin(async move {
                // One statement per bound given, so each can use the time index.
                let lo: Option<i64> = match &since {
                    Some(t) => c
                        .query_one("SELECT min(seq) FROM audit WHERE time >= $1", &[t])
                        .await?
                        .get(0),
                    None => c.query_one("SELECT min(seq) FROM audit", &[]).await?.get(0),
                };
                let hi: Option<i64> = match &until {
                    Some(t) => c
                        .query_one("SELECT max(seq) FROM audit WHERE time < $1", &[t])
                        .await?
                        .get(0),
                    None => c.query_one("SELECT max(seq) FROM audit", &[]).await?.get(0),
                };
                Ok(match (lo, hi) {
                    (Some(lo), Some(hi)) if lo <= hi => Some((lo as u64, hi as u64)),
                    _ => None,
                })
            })
        })
    }

    fn scan(
        &mut self,
        seqs: (u64, u64),
        keys: &[String],
        each: &mut dyn FnMut(AuditEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let (lo, hi) = (seqs.0 as i64, seqs.1 as i64);
        let mut after = lo - 1;
        loop {
            let keys = keys.to_vec();
            let page: Vec<AuditEntry> = self.with(move |c| {
                Box::pin(async move {
                    let rows = if keys.is_empty() {
                        c.query(
                            "SELECT seq, prev_hash, hash, record FROM audit
                             WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
                            &[&after, &hi, &PAGE],
                        )
                        .await?
                    } else {
                        c.query(
                            "SELECT seq, prev_hash, hash, record FROM audit
                             WHERE seq IN (SELECT seq FROM audit_key
                                           WHERE key = ANY($4) AND seq > $1 AND seq <= $2)
                             ORDER BY seq LIMIT $3",
                            &[&after, &hi, &PAGE, &keys],
                        )
                        .await?
                    };
                    Ok(rows.iter().map(entry).collect())
                })
            })?;
            let Some(last) = page.last().map(|e| e.seq as i64) else {
                return Ok(());
            };
            let full = page.len() as i64 == PAGE;
            for e in page {
                if !each(e)? {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
            after = last;
        }
    }

    fn search_columns(
        &mut self,
        seqs: (u64, u64),
    ) -> Result<Option<Vec<SearchColumns>>, StoreError> {
        let (lo, hi) = (seqs.0 as i64, seqs.1 as i64);
        self.with(move |c| {
            Box::pin(async move {
                let mut out: Vec<SearchColumns> = c
                    .query(
                        "SELECT seq, time, kind, mail_from, outcome FROM audit
                         WHERE seq BETWEEN $1 AND $2 ORDER BY seq",
                        &[&lo, &hi],
                    )
                    .await?
                    .iter()
                    .map(|r| SearchColumns {
                        seq: r.get::<_, i64>(0) as u64,
                        time: r.get(1),
                        kind: r.get(2),
                        keys: Default::default(),
                        mail_from: r.get(3),
                        outcome: r.get(4),
                    })
                    .collect();
                for r in c
                    .query(
                        "SELECT seq, key FROM audit_key WHERE seq BETWEEN $1 AND $2",
                        &[&lo, &hi],
                    )
                    .await?
                {
                    let seq = r.get::<_, i64>(0) as u64;
                    if let Ok(i) = out.binary_search_by_key(&seq, |c| c.seq) {
                        out[i].keys.insert(r.get(1));
                    }
                }
                Ok(Some(out))
            })
        })
    }

    fn scan_cases(
        &mut self,
        each: &mut dyn FnMut(AuditEntry) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut after = 0;
        loop {
            let page = self.cases_page(after)?;
            let Some(last) = page.last().map(|e| e.seq as i64) else {
                return Ok(());
            };
            let full = page.len() as i64 == PAGE;
            for e in page {
                each(e)?;
            }
            if !full {
                return Ok(());
            }
            after = last;
        }
    }

    fn count(&mut self, seqs: (u64, u64), keys: &[String]) -> Result<u64, StoreError> {
        let (lo, hi) = (seqs.0 as i64, seqs.1 as i64);
        let keys = keys.to_vec();
        self.with(move |c| {
            Box::pin(async move {
                let row = if keys.is_empty() {
                    c.query_one(
                        "SELECT count(*) FROM audit WHERE seq BETWEEN $1 AND $2",
                        &[&lo, &hi],
                    )
                    .await?
                } else {
                    c.query_one(
                        "SELECT count(DISTINCT seq) FROM audit_key
                         WHERE key = ANY($3) AND seq BETWEEN $1 AND $2",
                        &[&lo, &hi, &keys],
                    )
                    .await?
                };
                Ok(row.get::<_, i64>(0) as u64)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipelined_begin_takes_the_audit_lock() {
        assert!(BEGIN_LOCKED.ends_with(&format!("pg_advisory_xact_lock({AUDIT_LOCK})")));
    }

    #[test]
    fn the_one_statement_append_takes_the_audit_lock() {
        let (_, sql) = super::super::schema::MIGRATIONS
            .iter()
            .find(|(_, sql)| sql.contains("CREATE FUNCTION audit_append_after"))
            .expect("a migration defines audit_append_after");
        assert!(sql.contains(&format!("PERFORM pg_advisory_xact_lock({AUDIT_LOCK});")));
    }
}
