//! The messages the relay answered 250 for, delivered or held, by identity
//! ([`super::audit::message_identity`]): how a client's retry of a message whose 250 it never
//! heard is recognised, on this gateway or (with a shared database) the other one, and answered
//! without delivering or holding the message a second time.
//!
//! A row is written by the audit backends in the very transaction that appends the message's
//! record ([`super::audit::answered_by`]), so "recorded" and "remembered" cannot part: a record
//! that made it has its row, and a message without a record has none and is delivered again
//! (if in doubt, deliver: a duplicate is better than a loss). Rows older than
//! [`KEEP_FOR_DAYS`] are swept ([`AnsweredMessages::sweep`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::StoreError;
use super::place::Place;
use super::postgres::Pg;
use crate::config::Storage;

/// How long a message's identity is kept: past Postfix's `maximal_queue_lifetime` (5 days),
/// after which no sending server retries it, with two days to spare.
pub const KEEP_FOR_DAYS: i64 = 7;

/// What the first record of a message says it was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The audit record of the message.
    pub seq: u64,
    /// When it was recorded (UTC, RFC 3339).
    pub time: String,
    /// The queue id the client was told.
    pub queue_id: String,
    /// `delivered` or `quarantined`.
    pub outcome: String,
    /// The quarantine entry of a held message.
    pub quarantine_id: Option<String>,
}

/// The messages answered 250, where [`Place`] says.
#[derive(Debug, Clone)]
pub struct AnsweredMessages {
    place: Place,
}

thread_local! {
    /// This thread's connection to the local database, kept between look-ups.
    static LOCAL: RefCell<Option<(PathBuf, Connection)>> = const { RefCell::new(None) };
}

impl AnsweredMessages {
    /// In `[storage]`'s place: the shared database, or SQLite under `state_dir`.
    pub fn open(storage: &Storage) -> Self {
        AnsweredMessages {
            place: Place::of(storage),
        }
    }

    /// The first answer recorded for the message `identity`, if any.
    pub fn find(&self, identity: &str) -> Result<Option<Answer>, StoreError> {
        let identity = [identity.to_string()];
        Ok(self.find_many(&identity)?.remove(&identity[0]))
    }

    /// The first answer recorded for each of `identities` that has one, by identity: one
    /// round trip for them all on PostgreSQL (one statement each, pipelined), one prepared
    /// statement run for each on SQLite.
    pub fn find_many(&self, identities: &[String]) -> Result<HashMap<String, Answer>, StoreError> {
        if identities.is_empty() {
            return Ok(HashMap::new());
        }
        if let Some(pg) = self.place.pg() {
            return find_pg(&pg?, identities.to_vec());
        }
        let dir = self.place.state_dir().to_path_buf();
        LOCAL.with(|cell| {
            let mut cached = cell.borrow_mut();
            if cached.as_ref().is_none_or(|(d, _)| *d != dir) {
                *cached = Some((dir.clone(), super::sqlite::open_connection(&dir)?));
            }
            let Some((_, conn)) = cached.as_ref() else {
                return Ok(HashMap::new());
            };
            let found = find_sqlite(conn, identities);
            if found.is_err() {
                // Not kept: the next look-up opens the database afresh.
                *cached = None;
            }
            Ok(found?)
        })
    }

    /// Forgets the identities recorded before `before` (UTC, RFC 3339); how many went.
    pub fn sweep(&self, before: &str) -> Result<u64, StoreError> {
        if let Some(pg) = self.place.pg() {
            let before = before.to_string();
            return pg?.run(move |client| async move {
                Ok(client
                    .execute("DELETE FROM answered_message WHERE time < $1", &[&before])
                    .await?)
            });
        }
        let conn = super::sqlite::open_connection(self.place.state_dir())?;
        Ok(conn.execute(
            "DELETE FROM answered_message WHERE time < ?1",
            params![before],
        )? as u64)
    }

    /// Forgets the identities older than [`KEEP_FOR_DAYS`]; how many went.
    pub fn sweep_old(&self) -> Result<u64, StoreError> {
        let before = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(KEEP_FOR_DAYS * 24);
        self.sweep(&before.to_string())
    }
}

const FIND: &str = "SELECT seq, time, queue_id, outcome, quarantine_id FROM answered_message
     WHERE identity = ?1";

fn find_sqlite(
    conn: &Connection,
    identities: &[String],
) -> Result<HashMap<String, Answer>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(FIND)?;
    let mut found = HashMap::new();
    for identity in identities {
        let answer = stmt
            .query_row(params![identity], |r| {
                Ok(Answer {
                    seq: r.get::<_, i64>(0)? as u64,
                    time: r.get(1)?,
                    queue_id: r.get(2)?,
                    outcome: r.get(3)?,
                    quarantine_id: r.get(4)?,
                })
            })
            .optional()?;
        if let Some(answer) = answer {
            found.insert(identity.clone(), answer);
        }
    }
    Ok(found)
}

/// Looks `identities` up with [`FIND_MANY_PG`]: one statement for them all.
fn find_pg(pg: &Pg, identities: Vec<String>) -> Result<HashMap<String, Answer>, StoreError> {
    pg.run(move |client| async move { find_on(&client, identities).await })
}

/// A batch of look-ups in one statement: `answered_find` (schema version 6) runs a primary
/// key's equality (`identity = id`) for each identity in turn, in the database. Not one
/// `identity = ANY($1)`: PostgreSQL caches a statement's generic plan after five runs, and for
/// `ANY` over an array of unknown length it planned a sequential scan when the table was small
/// at that moment (a new install, a benchmark's fresh database), and kept it until the table
/// was next analysed: every look-up read the whole table, 1-2.5 ms a query at 3,000 rows and
/// growing. The equality stays an index scan (test:
/// `the_retry_look_up_stays_an_index_scan_when_planned_on_a_small_table`).
const FIND_MANY_PG: &str = "SELECT identity, seq, time, queue_id, outcome, quarantine_id
     FROM answered_find($1)";

/// [`find_pg`] on a connection already taken: one statement for the batch.
async fn find_on(
    client: &deadpool_postgres::ClientWrapper,
    identities: Vec<String>,
) -> Result<HashMap<String, Answer>, StoreError> {
    let stmt = client.prepare_cached(FIND_MANY_PG).await?;
    let rows = client.query(&stmt, &[&identities]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                Answer {
                    seq: r.get::<_, i64>(1) as u64,
                    time: r.get(2),
                    queue_id: r.get(3),
                    outcome: r.get(4),
                    quarantine_id: r.get(5),
                },
            )
        })
        .collect())
}

/// At most this many identities are looked up in one query.
const MAX_LOOKUPS: usize = 256;

/// The relay's retry look-ups ([`crate::smtp::retry`]), collected like the audit trail's group
/// commit: one thread takes the first identity waiting, and every other one that queued
/// meanwhile, and answers them all with one query ([`AnsweredMessages::find_many`]). Each
/// message is still looked up after it arrived, in the database as it is then, so a row the
/// other gateway of a trust committed is seen just as before; under load the sessions share
/// one round trip to the database instead of taking one each. On SQLite a session first tries
/// the look-up itself, in place ([`RetryLookup::find`]), and only a busy one goes to the thread.
///
/// Cloning is cheap; the thread ends when the last clone is dropped.
#[derive(Clone)]
pub struct RetryLookup {
    jobs: Jobs,
}

/// A connection the sessions look up on themselves, in place, when it is free and the
/// database is not locked (a primary key's look-up takes microseconds, less than waking the
/// thread and being woken by it). Opened by the thread; `None` until then, and after an error
/// (the thread opens it again).
type InPlace = Arc<Mutex<Option<Connection>>>;

/// Where the look-ups go.
#[derive(Clone)]
enum Jobs {
    /// To the `retry-lookup` thread (SQLite; or PostgreSQL unreachable at start), after the
    /// in-place connection on SQLite.
    Thread {
        jobs: mpsc::Sender<Lookup>,
        in_place: Option<InPlace>,
    },
    /// To a task on the runtime the connections live on (in `serve`, the gateway's own),
    /// beside the connections it uses: no thread of its own to wake and no [`Pg::run`]
    /// hand-over per batch.
    Pg(tokio::sync::mpsc::UnboundedSender<Lookup>),
}

struct Lookup {
    identity: String,
    done: oneshot::Sender<Result<Option<Answer>, String>>,
}

impl RetryLookup {
    /// Starts the look-up thread over `[storage]`'s place (where the audit trail writes the
    /// rows it reads).
    pub fn start(storage: &Storage) -> std::io::Result<RetryLookup> {
        let answered = AnsweredMessages::open(storage);
        if let Some(Ok(pg)) = answered.place.pg() {
            let (jobs, rx) = tokio::sync::mpsc::unbounded_channel::<Lookup>();
            pg.spawn(look_up_pg(pg.clone(), rx));
            return Ok(RetryLookup {
                jobs: Jobs::Pg(jobs),
            });
        }
        let in_place = match &answered.place {
            Place::Local(_) => Some(Arc::new(Mutex::new(None))),
            Place::Shared { .. } => None,
        };
        let (jobs, rx) = mpsc::channel::<Lookup>();
        let shared = in_place.clone();
        thread::Builder::new()
            .name("retry-lookup".into())
            .spawn(move || look_up(&answered, &rx, shared.as_deref()))?;
        Ok(RetryLookup {
            jobs: Jobs::Thread { jobs, in_place },
        })
    }

    /// [`RetryLookup::find`] on the in-place connection, if it is there and free and the
    /// database answers at once; `None` sends the look-up to the thread.
    fn find_in_place(&self, identity: &str) -> Option<Option<Answer>> {
        let Jobs::Thread {
            in_place: Some(in_place),
            ..
        } = &self.jobs
        else {
            return None;
        };
        let mut cached = in_place.try_lock().ok()?;
        let conn = cached.as_ref()?;
        match find_sqlite(conn, &[identity.to_string()]) {
            Ok(mut found) => Some(found.remove(identity)),
            Err(e) => {
                if !is_busy(&e) {
                    // Not kept: the thread opens the database afresh, and says what is wrong.
                    *cached = None;
                }
                None
            }
        }
    }

    /// The first answer recorded for the message `identity`, if any; `Err` says why nobody
    /// can tell (the database unreachable, the thread gone).
    pub async fn find(&self, identity: String) -> Result<Option<Answer>, String> {
        if let Some(found) = self.find_in_place(&identity) {
            return Ok(found);
        }
        let (done, wait) = oneshot::channel();
        let job = Lookup { identity, done };
        let sent = match &self.jobs {
            Jobs::Thread { jobs, .. } => jobs.send(job).is_ok(),
            Jobs::Pg(jobs) => jobs.send(job).is_ok(),
        };
        if !sent {
            return Err("the retry look-up has stopped".to_string());
        }
        wait.await
            .map_err(|_| "the retry look-up has stopped".to_string())?
    }
}

/// The look-up task on PostgreSQL: as [`look_up`], batching whatever queued meanwhile.
async fn look_up_pg(pg: Pg, mut rx: tokio::sync::mpsc::UnboundedReceiver<Lookup>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MAX_LOOKUPS).await > 0 {
        let identities: Vec<String> = batch.iter().map(|j| j.identity.clone()).collect();
        let found = match pg.client().await {
            Ok(client) => find_on(&client, identities).await,
            Err(e) => Err(e),
        }
        .map_err(|e| pg.name_error(e).to_string());
        answer(batch.drain(..), &found);
    }
}

/// Tells each job of a batch what was found for it.
fn answer(batch: impl Iterator<Item = Lookup>, found: &Result<HashMap<String, Answer>, String>) {
    for job in batch {
        let answer = match found {
            Ok(found) => Ok(found.get(&job.identity).cloned()),
            Err(reason) => Err(reason.clone()),
        };
        let _ = job.done.send(answer);
    }
}

/// The SQLite look-ups' thread: answers the look-ups sent to it and keeps `in_place` open.
fn look_up(
    answered: &AnsweredMessages,
    rx: &mpsc::Receiver<Lookup>,
    in_place: Option<&Mutex<Option<Connection>>>,
) {
    let reopen = || {
        let Some(slot) = in_place else { return };
        // Not waited for: a session may be looking up on it.
        let Ok(mut cached) = slot.try_lock() else {
            return;
        };
        if cached.is_none() {
            *cached = open_in_place(answered.place.state_dir());
        }
    };
    reopen();
    while let Some(batch) = super::audit::next_batch(rx, MAX_LOOKUPS) {
        reopen();
        let identities: Vec<String> = batch.iter().map(|j| j.identity.clone()).collect();
        let found = answered.find_many(&identities).map_err(|e| e.to_string());
        answer(batch.into_iter(), &found);
    }
}

/// The in-place connection: as every other, but it never waits for a lock (a session's worker
/// must not), so a busy database sends the look-up to the thread instead.
fn open_in_place(state_dir: &std::path::Path) -> Option<Connection> {
    let conn = super::sqlite::open_connection(state_dir).ok()?;
    conn.busy_timeout(std::time::Duration::ZERO).ok()?;
    Some(conn)
}

/// Whether `e` says the database is locked for now (and the look-up should go to the thread).
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuditLog, AuditRecord, MessageRecord, RecordKind};

    fn record(outcome: &str, reply: &str, sha: &str) -> AuditRecord {
        AuditRecord::message(MessageRecord {
            mail_from: "t.baker@example-academy.sch.uk".into(),
            rcpt_to: vec!["parent@example.org".into()],
            queue_id: Some(format!("Q-{outcome}-{sha}")),
            outcome: outcome.into(),
            reply: reply.into(),
            sha256_received: sha.into(),
            quarantine_id: (outcome == "quarantined").then(|| "H1".to_string()),
            ..MessageRecord::default()
        })
    }

    fn identity(sha: &str) -> String {
        crate::store::audit::message_identity(
            "t.baker@example-academy.sch.uk",
            &["parent@example.org".to_string()],
            sha,
        )
    }

    /// A fresh SQLite store in a temporary folder, and its audit writer.
    fn sqlite_store() -> (tempfile::TempDir, crate::config::Storage, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let storage = crate::config::Storage {
            state_dir: dir.path().to_path_buf(),
            database: None,
        };
        let log = AuditLog::start(crate::store::open_audit(&storage).unwrap()).unwrap();
        (dir, storage, log)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_delivered_or_held_record_is_remembered_with_it_and_nothing_else_is() {
        let (_dir, storage, log) = sqlite_store();
        let delivered = log
            .append(record("delivered", "250 2.0.0 Ok: queued as A", "aa"))
            .await
            .unwrap();
        log.append(record(
            "quarantined",
            "250 2.0.0 Ok: held for review as H1",
            "bb",
        ))
        .await
        .unwrap();
        log.append(record("deferred", "451 4.4.1 Next hop not reachable", "cc"))
            .await
            .unwrap();
        log.append(record("rejected", "550 5.7.1 no", "dd"))
            .await
            .unwrap();
        // The same message recorded again: the first record is the answer.
        log.append(record("delivered", "250 2.0.0 Ok: queued as A", "aa"))
            .await
            .unwrap();
        let mut milter = record("delivered", "250 2.0.0 Ok", "ee");
        if let Some(m) = milter.message.as_mut() {
            m.path = Some("milter".into());
        }
        log.append(milter).await.unwrap();
        let retry = AuditRecord {
            kind: RecordKind::RetryAnswered,
            ..record("delivered", "250 2.0.0 Ok", "ff")
        };
        log.append(retry).await.unwrap();

        let answered = AnsweredMessages::open(&storage);
        let found = tokio::task::spawn_blocking(move || {
            ["aa", "bb", "cc", "dd", "ee", "ff"].map(|sha| answered.find(&identity(sha)).unwrap())
        })
        .await
        .unwrap();
        let a = found[0]
            .clone()
            .expect("the delivered message is remembered");
        assert_eq!(
            (a.seq, a.queue_id.as_str(), a.outcome.as_str()),
            (delivered.seq, "Q-delivered-aa", "delivered")
        );
        let b = found[1].clone().expect("the held message is remembered");
        assert_eq!(
            (b.outcome.as_str(), b.quarantine_id.as_deref()),
            ("quarantined", Some("H1"))
        );
        for (i, f) in found.iter().enumerate().skip(2) {
            assert_eq!(f, &None, "record {i}: not a 250 of the relay's own");
        }

        // The sweep forgets what was recorded before its bound, and only that.
        let answered = AnsweredMessages::open(&storage);
        let swept = answered.sweep_old().unwrap();
        assert_eq!(swept, 0, "nothing is a week old");
        assert!(answered.find(&identity("aa")).unwrap().is_some());
        let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60)).to_string();
        assert_eq!(answered.sweep(&later).unwrap(), 2);
        assert_eq!(answered.find(&identity("aa")).unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread")]
    #[allow(
        clippy::await_holding_lock,
        reason = "held on purpose: a session using the in-place connection"
    )]
    async fn a_look_up_goes_to_the_thread_when_the_in_place_connection_is_taken_or_busy() {
        let (_dir, storage, log) = sqlite_store();
        let entry = log
            .append(record("delivered", "250 2.0.0 Ok", "aa"))
            .await
            .unwrap();
        let lookup = RetryLookup::start(&storage).unwrap();
        // Answered in place once the thread has opened the connection.
        let mut waited = 0;
        while lookup.find_in_place(&identity("aa")).is_none() {
            waited += 1;
            assert!(waited < 200, "the in-place connection was never opened");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(
            lookup.find_in_place(&identity("aa")).unwrap().unwrap().seq,
            entry.seq
        );
        // Another session is using it: this one is not kept waiting for it, the thread
        // answers.
        let Jobs::Thread {
            in_place: Some(slot),
            ..
        } = &lookup.jobs
        else {
            panic!("SQLite looks up in place")
        };
        let taken = slot.lock().unwrap();
        assert_eq!(lookup.find_in_place(&identity("aa")), None);
        let answer = lookup.find(identity("aa")).await.unwrap().unwrap();
        assert_eq!(answer.seq, entry.seq);
        drop(taken);
        // A locked database is the thread's to wait for; any other error drops the
        // connection (the thread opens it again).
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(is_busy(&busy));
        assert!(!is_busy(&rusqlite::Error::QueryReturnedNoRows));
    }

    #[tokio::test]
    async fn many_sessions_looking_up_at_once_each_get_their_own_answer() {
        let (_dir, storage, log) = sqlite_store();
        let lookup = RetryLookup::start(&storage).unwrap();
        // Started before anything was recorded: each look-up reads the database as it is then.
        assert_eq!(lookup.find(identity("m0")).await, Ok(None));
        let mut seqs = Vec::new();
        for i in 0..40 {
            let outcome = if i % 2 == 0 {
                "delivered"
            } else {
                "quarantined"
            };
            let entry = log
                .append(record(outcome, "250 2.0.0 Ok", &format!("m{i}")))
                .await
                .unwrap();
            seqs.push(entry.seq);
        }
        // 40 recorded, 40 never seen, and each recorded one asked twice: all at once, so
        // they are answered in batches.
        let asked: Vec<String> = (0..80).chain(0..40).map(|i| format!("m{i}")).collect();
        let mut tasks = tokio::task::JoinSet::new();
        for (n, sha) in asked.iter().enumerate() {
            let lookup = lookup.clone();
            let id = identity(sha);
            tasks.spawn(async move { (n, lookup.find(id).await) });
        }
        let mut answers = vec![None; asked.len()];
        while let Some(done) = tasks.join_next().await {
            let (n, answer) = done.unwrap();
            answers[n] = Some(answer);
        }
        for (sha, answer) in asked.iter().zip(answers) {
            let i: usize = sha[1..].parse().unwrap();
            let answer = answer.expect("every look-up answered").unwrap();
            if i >= 40 {
                assert_eq!(answer, None, "{sha} was never recorded");
                continue;
            }
            let answer = answer.unwrap_or_else(|| panic!("{sha} was recorded"));
            assert_eq!(answer.seq, seqs[i], "{sha}");
            assert_eq!(answer.queue_id, format!("Q-{}-{sha}", answer.outcome));
            let expected = if i.is_multiple_of(2) {
                "delivered"
            } else {
                "quarantined"
            };
            assert_eq!(answer.outcome, expected, "{sha}");
        }
    }

    #[test]
    fn the_identity_is_the_envelope_and_the_bytes() {
        let to = ["parent@example.org".to_string()];
        let one = crate::store::audit::message_identity("a@x", &to, "aa");
        assert_eq!(one, crate::store::audit::message_identity("a@x", &to, "aa"));
        assert_ne!(one, crate::store::audit::message_identity("b@x", &to, "aa"));
        assert_ne!(one, crate::store::audit::message_identity("a@x", &to, "ab"));
        let two = [
            "parent@example.org".to_string(),
            "other@example.org".to_string(),
        ];
        assert_ne!(
            one,
            crate::store::audit::message_identity("a@x", &two, "aa")
        );
        // A recipient cannot be moved into the sender: the parts are separated.
        assert_ne!(
            crate::store::audit::message_identity("a@x", &["b".to_string()], "aa"),
            crate::store::audit::message_identity("a@xb", &[], "aa")
        );
    }
}
