//! The web page's accounts: a name, its roles, an argon2id hash of its password (never the
//! password), and the TOTP secret of an account that also gives an authenticator code. Failed
//! logins are counted per name and client address in `store::logins`.
//!
//! Kept in the same SQLite database as the audit trail (table `web_user`), so `schoolgate user`
//! can change an account while the gateway runs.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::StoreError;
use super::audit::now_rfc3339;
use super::place::Place;
use super::postgres::shared;
use super::sqlite::open_connection;
use crate::config::Storage;

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
    pub created: String,
    pub changed: String,
    /// The TOTP secret (hex) when the login also asks for a code from an authenticator app.
    #[serde(skip)]
    pub totp_secret: Option<String>,
    /// In a multi-academy trust, the schools (`[[schools]] name`) this account is restricted
    /// to; empty: trust-wide (every school, and a single school's every account).
    #[serde(default)]
    pub schools: Vec<String>,
}

impl Account {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether this account may see what belongs to `school` (a record's `school` field):
    /// a trust-wide account sees everything; a school's account sees its schools' only, and
    /// nothing that belongs to no school.
    pub fn sees_school(&self, school: Option<&str>) -> bool {
        self.schools.is_empty()
            || school.is_some_and(|s| self.schools.iter().any(|mine| mine.eq_ignore_ascii_case(s)))
    }
}

/// The accounts, where [`Place`] says (see [`Users::open`]).
#[derive(Debug, Clone)]
pub struct Users {
    place: Place,
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
        created: row.get(3)?,
        changed: row.get(4)?,
        totp_secret: row.get(5)?,
        // Written by `set_schools` as a JSON array; anything else reads as trust-wide.
        schools: serde_json::from_str(&row.get::<_, String>(6)?).unwrap_or_default(),
    })
}

const COLUMNS: &str = "name, roles, hash, created, changed, totp_secret, schools";

impl Users {
    /// The accounts in `[storage]`'s place: how the gateway and the CLI open it.
    pub fn open(storage: &Storage) -> Self {
        Self::at(Place::of(storage))
    }

    /// The accounts in `place`.
    pub fn at(place: Place) -> Self {
        Users { place }
    }

    /// The accounts in SQLite and files under `state_dir` (a single school; the tests).
    pub fn new(state_dir: &Path) -> Self {
        Self::at(Place::Local(state_dir.to_path_buf()))
    }

    fn conn(&self) -> Result<Connection, StoreError> {
        open_connection(self.place.state_dir())
    }

    /// Adds an account; false when the name is taken.
    pub fn add(&self, name: &str, roles: &[Role], hash: &str) -> Result<bool, StoreError> {
        if let Some(pg) = self.place.pg() {
            return shared::user_add(&pg?, name, &roles_text(roles), hash);
        }
        let now = now_rfc3339();
        let n = self.conn()?.execute(
            "INSERT OR IGNORE INTO web_user (name, roles, hash, failures, created, changed)
             VALUES (?1, ?2, ?3, 0, ?4, ?4)",
            params![name, roles_text(roles), hash, now],
        )?;
        Ok(n == 1)
    }

    /// Sets a new password hash (`store::logins` lifts the lock-outs). False when there is no
    /// such account.
    pub fn set_hash(&self, name: &str, hash: &str) -> Result<bool, StoreError> {
        if let Some(pg) = self.place.pg() {
            return shared::user_set_hash(&pg?, name, hash);
        }
        let n = self.conn()?.execute(
            "UPDATE web_user SET hash = ?2, changed = ?3
             WHERE name = ?1",
            params![name, hash, now_rfc3339()],
        )?;
        Ok(n == 1)
    }

    /// Removes an account; false when there was none.
    pub fn remove(&self, name: &str) -> Result<bool, StoreError> {
        if let Some(pg) = self.place.pg() {
            return shared::user_remove(&pg?, name);
        }
        let n = self
            .conn()?
            .execute("DELETE FROM web_user WHERE name = ?1", params![name])?;
        Ok(n == 1)
    }

    pub fn get(&self, name: &str) -> Result<Option<Account>, StoreError> {
        if let Some(pg) = self.place.pg() {
            return shared::user_get(&pg?, name);
        }
        let sql = format!("SELECT {COLUMNS} FROM web_user WHERE name = ?1");
        Ok(self
            .conn()?
            .query_row(&sql, params![name], from_row)
            .optional()?)
    }

    /// Every account, by name.
    pub fn list(&self) -> Result<Vec<Account>, StoreError> {
        if let Some(pg) = self.place.pg() {
            return shared::user_list(&pg?);
        }
        let conn = self.conn()?;
        let sql = format!("SELECT {COLUMNS} FROM web_user ORDER BY name");
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Restricts account `name` to `schools` (empty: trust-wide); false when there is no such
    /// account.
    pub fn set_schools(&self, name: &str, schools: &[String]) -> Result<bool, StoreError> {
        let list = serde_json::to_string(schools).unwrap_or_else(|_| "[]".into());
        if let Some(pg) = self.place.pg() {
            return shared::user_set_schools(&pg?, name, &list);
        }
        let n = self.conn()?.execute(
            "UPDATE web_user SET schools = ?2, changed = ?3 WHERE name = ?1",
            params![name, list, now_rfc3339()],
        )?;
        Ok(n == 1)
    }

    /// Gives account `name` a TOTP secret (hex), or takes it away; false when there is no such
    /// account.
    pub fn set_totp(&self, name: &str, secret_hex: Option<&str>) -> Result<bool, StoreError> {
        if let Some(pg) = self.place.pg() {
            return shared::user_set_totp(&pg?, name, secret_hex);
        }
        let n = self.conn()?.execute(
            "UPDATE web_user SET totp_secret = ?2, totp_last_step = NULL, changed = ?3
             WHERE name = ?1",
            params![name, secret_hex, now_rfc3339()],
        )?;
        Ok(n == 1)
    }

    /// Takes TOTP time step `step` as used by `name`: false when a code of this step or a later
    /// one was accepted already (a code is good once).
    pub fn use_totp_step(&self, name: &str, step: i64) -> Result<bool, StoreError> {
        if let Some(pg) = self.place.pg() {
            return shared::user_use_totp_step(&pg?, name, step);
        }
        let n = self.conn()?.execute(
            "UPDATE web_user SET totp_last_step = ?2
             WHERE name = ?1 AND (totp_last_step IS NULL OR totp_last_step < ?2)",
            params![name, step],
        )?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_change_and_remove() {
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
        assert!(users.set_hash("ms.jones", "h3").unwrap());
        let a = users.get("ms.jones").unwrap().unwrap();
        assert_eq!(a.hash, "h3");
        assert!(!users.set_hash("nobody", "h4").unwrap());
        assert!(users.set_totp("ms.jones", Some("3132")).unwrap());
        let a = users.get("ms.jones").unwrap().unwrap();
        assert_eq!(a.totp_secret.as_deref(), Some("3132"));
        assert!(users.use_totp_step("ms.jones", 100).unwrap());
        assert!(!users.use_totp_step("ms.jones", 100).unwrap(), "once");
        assert!(
            !users.use_totp_step("ms.jones", 99).unwrap(),
            "nor an older one"
        );
        assert!(users.use_totp_step("ms.jones", 101).unwrap());
        assert!(!users.set_totp("nobody", None).unwrap());
        assert!(a.schools.is_empty(), "trust-wide unless restricted");
        assert!(a.sees_school(None) && a.sees_school(Some("Ashdown Park School")));
        let both = [
            "Ashdown Park School".to_string(),
            "Bramblefield, Primary".to_string(),
        ];
        assert!(users.set_schools("ms.jones", &both).unwrap());
        let a = users.get("ms.jones").unwrap().unwrap();
        assert_eq!(a.schools, both);
        assert!(a.sees_school(Some("ashdown park school")));
        assert!(!a.sees_school(Some("Chalk Hill Academy")));
        assert!(
            !a.sees_school(None),
            "a school's account sees no trust-wide mail"
        );
        assert!(!users.set_schools("nobody", &both).unwrap());
        assert!(users.remove("ms.jones").unwrap());
        assert!(users.list().unwrap().is_empty());
    }
}
