//! The web page's accounts: a name, its roles, an argon2id hash of its password (never the
//! password), and how many logins in a row failed, with the lock-out they led to.
//!
//! Kept in the same SQLite database as the audit trail (table `web_user`), so `schoolgate user`
//! can change an account while the gateway runs, and a lock-out survives a restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::StoreError;
use super::audit::now_rfc3339;
use super::sqlite::open_connection;

/// What an account may do on the web page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Reviews the quarantine: release, delete, download.
    NetworkManager,
    /// The Designated Safeguarding Lead: flags, audit search and export.
    Dsl,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::NetworkManager => "network-manager",
            Role::Dsl => "dsl",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "network-manager" => Ok(Role::NetworkManager),
            "dsl" => Ok(Role::Dsl),
            other => Err(format!(
                "{other:?} is not a role; the roles are network-manager and dsl"
            )),
        }
    }
}

/// One account as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Account {
    pub name: String,
    pub roles: Vec<Role>,
    /// The argon2id PHC string.
    #[serde(skip)]
    pub hash: String,
    /// Failed logins in a row since the last good one (or the last lock-out).
    pub failures: u32,
    /// Locked until this instant (UTC, RFC 3339), if a lock-out was ever set.
    pub locked_until: Option<String>,
    pub created: String,
    pub changed: String,
}

impl Account {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the account is locked out at `now`.
    pub fn locked_at(&self, now: jiff::Timestamp) -> bool {
        self.locked_until
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .is_some_and(|until| now < until)
    }
}

/// What a failed login did to the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Counted; `failures` in a row now.
    Counted { failures: u32 },
    /// This failure reached the limit: locked until the instant given.
    LockedOut { until: String },
}

/// The accounts under `storage.state_dir`.
#[derive(Debug, Clone)]
pub struct Users {
    state_dir: PathBuf,
}

fn roles_text(roles: &[Role]) -> String {
    let mut r: Vec<Role> = roles.to_vec();
    r.sort();
    r.dedup();
    r.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    let roles: String = row.get(1)?;
    Ok(Account {
        name: row.get(0)?,
        roles: roles.split(',').filter_map(|r| r.parse().ok()).collect(),
        hash: row.get(2)?,
        failures: row.get::<_, i64>(3)?.max(0) as u32,
        locked_until: row.get(4)?,
        created: row.get(5)?,
        changed: row.get(6)?,
    })
}

const COLUMNS: &str = "name, roles, hash, failures, locked_until, created, changed";

impl Users {
    pub fn new(state_dir: &Path) -> Self {
        Users {
            state_dir: state_dir.to_path_buf(),
        }
    }

    fn conn(&self) -> Result<Connection, StoreError> {
        open_connection(&self.state_dir)
    }

    /// Adds an account; false when the name is taken.
    pub fn add(&self, name: &str, roles: &[Role], hash: &str) -> Result<bool, StoreError> {
        let now = now_rfc3339();
        let n = self.conn()?.execute(
            "INSERT OR IGNORE INTO web_user (name, roles, hash, failures, created, changed)
             VALUES (?1, ?2, ?3, 0, ?4, ?4)",
            params![name, roles_text(roles), hash, now],
        )?;
        Ok(n == 1)
    }

    /// Sets a new password hash; also lifts a lock-out (the network manager reset it). False
    /// when there is no such account.
    pub fn set_hash(&self, name: &str, hash: &str) -> Result<bool, StoreError> {
        let n = self.conn()?.execute(
            "UPDATE web_user SET hash = ?2, failures = 0, locked_until = NULL, changed = ?3
             WHERE name = ?1",
            params![name, hash, now_rfc3339()],
        )?;
        Ok(n == 1)
    }

    /// Removes an account; false when there was none.
    pub fn remove(&self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .conn()?
            .execute("DELETE FROM web_user WHERE name = ?1", params![name])?;
        Ok(n == 1)
    }

    pub fn get(&self, name: &str) -> Result<Option<Account>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM web_user WHERE name = ?1");
        Ok(self
            .conn()?
            .query_row(&sql, params![name], from_row)
            .optional()?)
    }

    /// Every account, by name.
    pub fn list(&self) -> Result<Vec<Account>, StoreError> {
        let conn = self.conn()?;
        let sql = format!("SELECT {COLUMNS} FROM web_user ORDER BY name");
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Counts a failed login; at `limit` in a row the account is locked for `lock_for` and the
    /// count starts again. `None` when there is no such account.
    pub fn record_failure(
        &self,
        name: &str,
        limit: u32,
        lock_for: jiff::SignedDuration,
    ) -> Result<Option<Failure>, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let failures: Option<i64> = tx
            .query_row(
                "SELECT failures FROM web_user WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        let Some(failures) = failures else {
            return Ok(None);
        };
        let failures = failures.max(0) as u32 + 1;
        let outcome = if failures >= limit {
            let until = (jiff::Timestamp::now() + lock_for)
                .round(jiff::Unit::Second)
                .map(|t| t.to_string())
                .unwrap_or_else(|_| now_rfc3339());
            tx.execute(
                "UPDATE web_user SET failures = 0, locked_until = ?2 WHERE name = ?1",
                params![name, until],
            )?;
            Failure::LockedOut { until }
        } else {
            tx.execute(
                "UPDATE web_user SET failures = ?2 WHERE name = ?1",
                params![name, failures as i64],
            )?;
            Failure::Counted { failures }
        };
        tx.commit()?;
        Ok(Some(outcome))
    }

    /// A good login: the count of failures starts again.
    pub fn record_success(&self, name: &str) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE web_user SET failures = 0 WHERE name = ?1",
            params![name],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_lock_out_and_reset() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::new(dir.path());
        assert!(
            users
                .add(
                    "ms.jones",
                    &[Role::Dsl, Role::NetworkManager, Role::Dsl],
                    "h1"
                )
                .unwrap()
        );
        assert!(!users.add("ms.jones", &[Role::Dsl], "h2").unwrap());
        let a = users.get("ms.jones").unwrap().unwrap();
        assert_eq!(a.roles, vec![Role::NetworkManager, Role::Dsl]);
        assert_eq!(a.hash, "h1");
        let hour = jiff::SignedDuration::from_secs(3600);
        for n in 1..5 {
            assert_eq!(
                users.record_failure("ms.jones", 5, hour).unwrap(),
                Some(Failure::Counted { failures: n })
            );
        }
        assert!(matches!(
            users.record_failure("ms.jones", 5, hour).unwrap(),
            Some(Failure::LockedOut { .. })
        ));
        let a = users.get("ms.jones").unwrap().unwrap();
        assert!(a.locked_at(jiff::Timestamp::now()));
        assert!(!a.locked_at(jiff::Timestamp::now() + jiff::SignedDuration::from_secs(7200)));
        assert!(users.set_hash("ms.jones", "h3").unwrap());
        let a = users.get("ms.jones").unwrap().unwrap();
        assert!(!a.locked_at(jiff::Timestamp::now()) && a.hash == "h3");
        assert_eq!(users.record_failure("nobody", 5, hour).unwrap(), None);
        assert!(users.remove("ms.jones").unwrap());
        assert!(users.list().unwrap().is_empty());
    }
}
