//! Failed web logins, counted per name typed and client address (table `web_login_failure`).
//!
//! The name is the one typed, whether or not an account has it, so an unknown name and a real
//! one behave alike (nothing tells which accounts exist). Counting per address means someone
//! guessing the DSL's password from one machine locks that name on that machine only: the DSL
//! still logs in from their own.
//!
//! Every attempt is counted *before* its password is checked ([`Logins::begin`]) and the count
//! is cleared by a good login ([`Logins::succeeded`]); so attempts sent in parallel cannot get
//! more than [`Limits::lock_after`] guesses past the lock between them.
//!
//! Times are Unix seconds.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::place::Place;
use super::postgres::shared;
use super::postgres::shared::LoginWrite;
use super::sqlite::open_connection;
use crate::config::Storage;

/// How failures turn into a lock-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Failed attempts in a row (per name and address) that lock.
    pub lock_after: u32,
    /// How long a lock lasts, in seconds.
    pub lock_for: i64,
    /// Failures older than this (seconds) are forgotten.
    pub forget_after: i64,
}

/// What an attempt may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Go ahead: `before` failed attempts in a row preceded this one (it is counted already).
    Go { before: u32 },
    /// This name is locked from this address (or enough attempts are in flight to lock it).
    Locked { until: Option<i64> },
}

/// What a failed attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// Counted.
    Counted,
    /// This failure set the lock, until the time given (audit it: it happens once).
    LockedNow { until: i64 },
}

/// A lock on one name from one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub client: String,
    pub until: i64,
}

/// The counts, where [`Place`] says (see [`Logins::open`]).
#[derive(Debug, Clone)]
pub struct Logins {
    place: Place,
}

/// Names longer than any account's are cut before they are kept (a flood of long names cannot
/// grow the table's rows).
const MAX_NAME: usize = 128;

fn key(name: &str) -> &str {
    match name.char_indices().nth(MAX_NAME) {
        Some((at, _)) => &name[..at],
        None => name,
    }
}

impl Logins {
    /// The failed-login counts in `[storage]`'s place: how the gateway and the CLI open it.
    pub fn open(storage: &Storage) -> Self {
        Self::at(Place::of(storage))
    }

    /// The failed-login counts in `place`.
    pub fn at(place: Place) -> Self {
        Logins { place }
    }

    /// The failed-login counts in SQLite and files under `state_dir` (a single school; the tests).
    pub fn new(state_dir: &Path) -> Self {
        Self::at(Place::Local(state_dir.to_path_buf()))
    }

    fn conn(&self) -> Result<Connection, StoreError> {
        open_connection(self.place.state_dir())
    }

    /// Starts an attempt of `name` from `client` at `now`: refused while locked, else counted
    /// (pessimistically: [`Logins::succeeded`] clears it).
    pub fn begin(
        &self,
        name: &str,
        client: &str,
        now: i64,
        limits: Limits,
    ) -> Result<Attempt, StoreError> {
        let name = key(name);
        if let Some(pg) = self.place.pg() {
            return shared::login_row(&pg?, name, client, move |row| {
                let (attempt, count) = decide_begin(row, now, limits);
                let writes = count
                    .map(|failures| LoginWrite::Count { failures, now })
                    .into_iter()
                    .collect();
                (attempt, writes)
            });
        }
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let row: Option<(i64, i64, Option<i64>)> = tx
            .query_row(
                "SELECT failures, last_failure, locked_until FROM web_login_failure
                 WHERE name = ?1 AND client = ?2",
                params![name, client],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let (attempt, count) = decide_begin(row, now, limits);
        if let Some(failures) = count {
            tx.execute(
                "INSERT INTO web_login_failure (name, client, failures, last_failure, locked_until)
                 VALUES (?1, ?2, ?3, ?4, NULL)
                 ON CONFLICT (name, client) DO UPDATE
                 SET failures = ?3, last_failure = ?4, locked_until = NULL",
                params![name, client, failures, now],
            )?;
            tx.commit()?;
        }
        Ok(attempt)
    }

    /// A begun attempt failed: at `lock_after` in a row the name is locked from `client`.
    pub fn failed(
        &self,
        name: &str,
        client: &str,
        now: i64,
        limits: Limits,
    ) -> Result<Failed, StoreError> {
        let name = key(name);
        if let Some(pg) = self.place.pg() {
            return shared::login_row(&pg?, name, client, move |row| {
                let outcome = decide_failed(row.map(|(f, _, l)| (f, l)), now, limits);
                let mut writes = Vec::new();
                if let Failed::LockedNow { until } = outcome {
                    writes.push(LoginWrite::Lock { until, now });
                }
                writes.push(LoginWrite::Forget {
                    before: now - limits.forget_after.max(limits.lock_for),
                    unlocked: now,
                });
                (outcome, writes)
            });
        }
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let row: Option<(i64, Option<i64>)> = tx
            .query_row(
                "SELECT failures, locked_until FROM web_login_failure
                 WHERE name = ?1 AND client = ?2",
                params![name, client],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let outcome = decide_failed(row, now, limits);
        if let Failed::LockedNow { until } = outcome {
            tx.execute(
                "UPDATE web_login_failure SET locked_until = ?3, last_failure = ?4
                 WHERE name = ?1 AND client = ?2",
                params![name, client, until, now],
            )?;
        }
        // Forget what no longer matters, so the table stays small.
        tx.execute(
            "DELETE FROM web_login_failure WHERE last_failure < ?1
             AND (locked_until IS NULL OR locked_until < ?2)",
            params![now - limits.forget_after.max(limits.lock_for), now],
        )?;
        tx.commit()?;
        Ok(outcome)
    }

    /// A good login of `name` from `client`: its count starts again.
    pub fn succeeded(&self, name: &str, client: &str) -> Result<(), StoreError> {
        if let Some(pg) = self.place.pg() {
            return shared::login_succeeded(&pg?, key(name), client);
        }
        self.conn()?.execute(
            "DELETE FROM web_login_failure WHERE name = ?1 AND client = ?2",
            params![key(name), client],
        )?;
        Ok(())
    }

    /// Lifts every lock and count of `name` (a new password was set).
    pub fn clear(&self, name: &str) -> Result<(), StoreError> {
        if let Some(pg) = self.place.pg() {
            return shared::login_clear(&pg?, key(name));
        }
        self.conn()?.execute(
            "DELETE FROM web_login_failure WHERE name = ?1",
            params![key(name)],
        )?;
        Ok(())
    }

    /// The locks on `name` in force at `now`, by address.
    pub fn locks(&self, name: &str, now: i64) -> Result<Vec<Lock>, StoreError> {
        if let Some(pg) = self.place.pg() {
            return Ok(shared::login_locks(&pg?, key(name), now)?
                .into_iter()
                .map(|(client, until)| Lock { client, until })
                .collect());
        }
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT client, locked_until FROM web_login_failure
             WHERE name = ?1 AND locked_until > ?2 ORDER BY client",
        )?;
        let rows = stmt.query_map(params![key(name), now], |r| {
            Ok(Lock {
                client: r.get(0)?,
                until: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

/// What an attempt may do, from its name and address's row `(failures, last failure, locked
/// until)`, and the count to keep for it when it goes ahead (the same for every store).
fn decide_begin(
    row: Option<(i64, i64, Option<i64>)>,
    now: i64,
    limits: Limits,
) -> (Attempt, Option<i64>) {
    let (mut failures, last, locked_until) = row.unwrap_or((0, now, None));
    if let Some(until) = locked_until.filter(|u| *u > now) {
        return (Attempt::Locked { until: Some(until) }, None);
    }
    if now - last > limits.forget_after || locked_until.is_some() {
        // Long ago, or the lock has run out: counting starts again.
        failures = 0;
    }
    if failures >= i64::from(limits.lock_after) {
        // The attempts in flight will lock it.
        return (Attempt::Locked { until: None }, None);
    }
    (
        Attempt::Go {
            before: failures.max(0) as u32,
        },
        Some(failures + 1),
    )
}

/// What a failed attempt does, from its row `(failures, locked until)`: at `lock_after` in a row
/// it locks (once).
fn decide_failed(row: Option<(i64, Option<i64>)>, now: i64, limits: Limits) -> Failed {
    match row {
        Some((failures, locked)) if failures >= i64::from(limits.lock_after) => {
            if locked.is_some_and(|u| u > now) {
                Failed::Counted
            } else {
                Failed::LockedNow {
                    until: now + limits.lock_for,
                }
            }
        }
        _ => Failed::Counted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        lock_after: 5,
        lock_for: 900,
        forget_after: 3600,
    };

    fn fail(l: &Logins, name: &str, client: &str, now: i64) -> (Attempt, Option<Failed>) {
        let a = l.begin(name, client, now, LIMITS).unwrap();
        match a {
            Attempt::Go { .. } => (a, Some(l.failed(name, client, now, LIMITS).unwrap())),
            Attempt::Locked { .. } => (a, None),
        }
    }

    #[test]
    fn five_failures_lock_the_name_from_that_address_only_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let l = Logins::new(dir.path());
        let t = 1_000_000;
        for n in 0..4 {
            assert_eq!(
                fail(&l, "dsl", "10.0.0.9", t + n),
                (Attempt::Go { before: n as u32 }, Some(Failed::Counted))
            );
        }
        assert_eq!(
            fail(&l, "dsl", "10.0.0.9", t + 4),
            (
                Attempt::Go { before: 4 },
                Some(Failed::LockedNow { until: t + 4 + 900 })
            )
        );
        assert_eq!(
            l.begin("dsl", "10.0.0.9", t + 5, LIMITS).unwrap(),
            Attempt::Locked {
                until: Some(t + 904)
            }
        );
        // Another address is not locked, and neither is another name.
        assert_eq!(
            l.begin("dsl", "10.0.0.7", t + 5, LIMITS).unwrap(),
            Attempt::Go { before: 0 }
        );
        l.succeeded("dsl", "10.0.0.7").unwrap();
        assert_eq!(
            l.locks("dsl", t + 5).unwrap(),
            vec![Lock {
                client: "10.0.0.9".into(),
                until: t + 904
            }]
        );
        // After the lock, counting starts again.
        assert_eq!(
            l.begin("dsl", "10.0.0.9", t + 905, LIMITS).unwrap(),
            Attempt::Go { before: 0 }
        );
        l.clear("dsl").unwrap();
        assert!(l.locks("dsl", t).unwrap().is_empty());
    }

    #[test]
    fn attempts_in_flight_cannot_pass_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let l = Logins::new(dir.path());
        let begun: Vec<Attempt> = (0..8)
            .map(|_| l.begin("netman", "10.0.0.9", 50, LIMITS).unwrap())
            .collect();
        let going = begun
            .iter()
            .filter(|a| matches!(a, Attempt::Go { .. }))
            .count();
        assert_eq!(going, 5, "{begun:?}");
        let locked_now = (0..5)
            .filter(|_| {
                matches!(
                    l.failed("netman", "10.0.0.9", 50, LIMITS).unwrap(),
                    Failed::LockedNow { .. }
                )
            })
            .count();
        assert_eq!(locked_now, 1, "the lock is reported once");
    }

    #[test]
    fn a_good_login_and_time_forget_failures() {
        let dir = tempfile::tempdir().unwrap();
        let l = Logins::new(dir.path());
        fail(&l, "netman", "::1", 10);
        fail(&l, "netman", "::1", 11);
        assert_eq!(
            l.begin("netman", "::1", 12, LIMITS).unwrap(),
            Attempt::Go { before: 2 }
        );
        l.succeeded("netman", "::1").unwrap();
        assert_eq!(
            l.begin("netman", "::1", 13, LIMITS).unwrap(),
            Attempt::Go { before: 0 }
        );
        l.failed("netman", "::1", 13, LIMITS).unwrap();
        assert_eq!(
            l.begin("netman", "::1", 13 + 3601, LIMITS).unwrap(),
            Attempt::Go { before: 0 },
            "an hour later the failure is forgotten"
        );
        let long = "x".repeat(1000);
        fail(&l, &long, "::1", 20);
        assert_eq!(
            l.begin(&"x".repeat(500), "::1", 21, LIMITS).unwrap(),
            Attempt::Go { before: 1 },
            "long names are kept cut"
        );
    }
}
