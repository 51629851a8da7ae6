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
use std::path::PathBuf;

use rusqlite::{Connection, OptionalExtension, params};

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
    /// This thread's connection to the local database, kept between look-ups (one per message).
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
        if let Some(pg) = self.place.pg() {
            return find_pg(&pg?, identity);
        }
        let dir = self.place.state_dir().to_path_buf();
        LOCAL.with(|cell| {
            let mut cached = cell.borrow_mut();
            if cached.as_ref().is_none_or(|(d, _)| *d != dir) {
                *cached = Some((dir.clone(), super::sqlite::open_connection(&dir)?));
            }
            let Some((_, conn)) = cached.as_ref() else {
                return Ok(None);
            };
            let found = conn
                .prepare_cached(
                    "SELECT seq, time, queue_id, outcome, quarantine_id FROM answered_message
                     WHERE identity = ?1",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(params![identity], |r| {
                        Ok(Answer {
                            seq: r.get::<_, i64>(0)? as u64,
                            time: r.get(1)?,
                            queue_id: r.get(2)?,
                            outcome: r.get(3)?,
                            quarantine_id: r.get(4)?,
                        })
                    })
                    .optional()
                });
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

fn find_pg(pg: &Pg, identity: &str) -> Result<Option<Answer>, StoreError> {
    let identity = identity.to_string();
    pg.run(move |client| async move {
        let stmt = client
            .prepare_cached(
                "SELECT seq, time, queue_id, outcome, quarantine_id FROM answered_message
                 WHERE identity = $1",
            )
            .await?;
        Ok(client
            .query_opt(&stmt, &[&identity])
            .await?
            .map(|r| Answer {
                seq: r.get::<_, i64>(0) as u64,
                time: r.get(1),
                queue_id: r.get(2),
                outcome: r.get(3),
                quarantine_id: r.get(4),
            }))
    })
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

    #[tokio::test(flavor = "multi_thread")]
    async fn a_delivered_or_held_record_is_remembered_with_it_and_nothing_else_is() {
        let dir = tempfile::tempdir().unwrap();
        let storage = crate::config::Storage {
            state_dir: dir.path().to_path_buf(),
            database: None,
        };
        let log = AuditLog::start(crate::store::open_audit(&storage).unwrap()).unwrap();
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
