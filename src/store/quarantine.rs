//! The quarantine: messages held for review, each the exact bytes that would have been delivered
//! (our `Received:` header and the disclaimer included) in `state_dir/quarantine/<ID>.eml`,
//! written durably, with an index row in the `quarantine` table.
//!
//! A new entry is first `holding`: written durably, but not yet recorded in the audit trail.
//! Only once its audit record is durable is it confirmed `held` (and the client told 250), so
//! a crash in between leaves a `holding` entry that [`Quarantine::recover`] settles at the next
//! start: held if its record made it, removed if not (its client never heard 250 and sends it
//! again). Nothing is ever held without a record, and nothing recorded is lost.
//!
//! Every operation is synchronous and opens its own database connection (WAL lets the gateway
//! and the CLI share the file); none of it goes through the audit writer. State changes are
//! conditional updates (`WHERE state = 'held'`), so two people acting on one message at once
//! cannot both succeed.
//!
//! With `[storage] database` (a trust's gateways) the index row AND the held bytes are in
//! PostgreSQL ([`super::postgres::shared`]), so any gateway can release what another held; the
//! same states and the same conditional updates make a release happen once across gateways.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::StoreError;
use super::audit::now_rfc3339;
use super::place::Place;
use super::postgres::{Pg, shared};
use super::spool::{safe_name, sync_dir, write_durably};
use super::sqlite::open_connection;
use crate::config::Storage;

/// One held (or formerly held) message, as its index row says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Held {
    pub id: String,
    /// When it was held: UTC, RFC 3339.
    pub time: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub subject: Option<String>,
    /// Size of the held bytes.
    pub size: u64,
    /// SHA-256 of the held bytes.
    pub sha256: String,
    /// Why it is held: the flags and findings, as in the audit record.
    pub reason: serde_json::Value,
    /// `held`, `released` or `deleted`.
    pub state: String,
    pub acted_by: Option<String>,
    pub acted_at: Option<String>,
    pub action_reason: Option<String>,
    /// The envelope's SMTPUTF8 and 8BITMIME, for the release.
    pub smtputf8: bool,
    pub body_8bit: bool,
}

/// A message to hold.
pub struct NewHeld<'a> {
    pub id: &'a str,
    pub mail_from: &'a str,
    pub rcpt_to: &'a [String],
    pub subject: Option<&'a str>,
    pub reason: serde_json::Value,
    pub smtputf8: bool,
    pub body_8bit: bool,
    /// Which message this is ([`crate::smtp::handoff::delivery_key`]), or empty. A message
    /// with the same key already in the quarantine is not held again.
    pub delivery_key: &'a str,
}

/// What [`Quarantine::recover`] found after a crash.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// `holding` entries whose audit record was written: now held.
    pub confirmed: Vec<String>,
    /// `holding` entries with no audit record: removed (their clients were never told 250).
    pub removed: Vec<String>,
}

/// The quarantine, where [`Place`] says (see [`Quarantine::open`]).
#[derive(Debug, Clone)]
pub struct Quarantine {
    place: Place,
}

const COLUMNS: &str = "id, time, mail_from, rcpt_to, subject, size, sha256, reason, state, \
                       acted_by, acted_at, action_reason, smtputf8, body_8bit";

impl Quarantine {
    /// The quarantine in `[storage]`'s place: how the gateway and the CLI open it.
    pub fn open(storage: &Storage) -> Self {
        Self::at(Place::of(storage))
    }

    /// The quarantine in `place`.
    pub fn at(place: Place) -> Self {
        Quarantine { place }
    }

    /// The quarantine in SQLite and files under `state_dir` (a single school; the tests).
    pub fn new(state_dir: &Path) -> Self {
        Self::at(Place::Local(state_dir.to_path_buf()))
    }

    fn dir(&self) -> PathBuf {
        self.place.state_dir().join("quarantine")
    }

    fn file_name(id: &str) -> String {
        format!("{}.eml", safe_name(id))
    }

    /// Where the held bytes of `id` are on one machine (with a shared database they are in its
    /// row instead).
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir().join(Self::file_name(id))
    }

    /// Where the held bytes of `id` are, in words for an error message: the file, or the
    /// shared database.
    pub fn held_at(&self, id: &str) -> String {
        match &self.place {
            Place::Local(_) => self.path(id).display().to_string(),
            Place::Shared { .. } => format!("quarantine entry {id} in the shared database"),
        }
    }

    fn conn(&self) -> Result<Connection, StoreError> {
        open_connection(self.place.state_dir())
    }

    /// The shared database, when `[storage] database` names one.
    fn pg(&self) -> Option<Result<Pg, StoreError>> {
        self.place.pg()
    }

    /// Holds `bytes` as a `holding` entry: the file is written and fsynced first, then the
    /// index row committed. Returns only once both are durable; on error nothing is left behind.
    /// The entry must be [`Quarantine::confirm`]ed once its audit record is durable.
    ///
    /// When `item.delivery_key` names a message already in the quarantine (a client's retry
    /// after a crash hid our 250 from it), nothing is written and that entry is returned,
    /// in its own state (not `holding`).
    pub fn hold(&self, item: &NewHeld<'_>, bytes: &[u8]) -> Result<Held, StoreError> {
        if let Some(pg) = self.pg() {
            return shared::hold(&pg?, &self.place.node(), item, bytes);
        }
        if !item.delivery_key.is_empty() {
            let sql = format!(
                "SELECT {COLUMNS} FROM quarantine WHERE delivery_key = ?1 AND state != 'holding'
                 ORDER BY time LIMIT 1"
            );
            let conn = self.conn()?;
            if let Some(existing) = conn
                .query_row(&sql, params![item.delivery_key], from_row)
                .optional()?
            {
                return Ok(existing);
            }
        }
        let name = Self::file_name(item.id);
        write_durably(&self.dir(), &name, bytes)?;
        let held = Held {
            id: item.id.to_string(),
            time: now_rfc3339(),
            mail_from: item.mail_from.to_string(),
            rcpt_to: item.rcpt_to.to_vec(),
            subject: item.subject.map(str::to_string),
            size: bytes.len() as u64,
            sha256: super::audit::sha256_hex(bytes),
            reason: item.reason.clone(),
            state: "holding".into(),
            acted_by: None,
            acted_at: None,
            action_reason: None,
            smtputf8: item.smtputf8,
            body_8bit: item.body_8bit,
        };
        let key = Some(item.delivery_key).filter(|k| !k.is_empty());
        let inserted = self.conn().and_then(|conn| {
            conn.execute(
                "INSERT INTO quarantine (id, time, mail_from, rcpt_to, subject, size, sha256,
                     reason, state, smtputf8, body_8bit, delivery_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'holding', ?9, ?10, ?11)",
                params![
                    held.id,
                    held.time,
                    held.mail_from,
                    serde_json::to_string(&held.rcpt_to).unwrap_or_else(|_| "[]".into()),
                    held.subject,
                    held.size as i64,
                    held.sha256,
                    held.reason.to_string(),
                    held.smtputf8,
                    held.body_8bit,
                    key,
                ],
            )?;
            Ok(())
        });
        if let Err(e) = inserted {
            let _ = fs::remove_file(self.path(item.id));
            return Err(e);
        }
        Ok(held)
    }

    /// Makes a `holding` entry `held`: its audit record is durable. False if it was not holding.
    pub fn confirm(&self, id: &str) -> Result<bool, StoreError> {
        if let Some(pg) = self.pg() {
            return shared::confirm(&pg?, id);
        }
        let n = self.conn()?.execute(
            "UPDATE quarantine SET state = 'held' WHERE id = ?1 AND state = 'holding'",
            params![id],
        )?;
        Ok(n == 1)
    }

    /// Forgets a message just held whose audit record could not be written (the client is told
    /// to try again, and its retry is held anew).
    ///
    /// The file goes first: on a full disk the row may not be deletable yet, but the space the
    /// file took is given back, and a row left `holding` is never listed for review.
    pub fn unhold(&self, id: &str) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return shared::unhold(&pg?, id);
        }
        let conn = self.conn()?;
        let state: Option<String> = conn
            .query_row(
                "SELECT state FROM quarantine WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?;
        if state.as_deref() != Some("holding") {
            return Ok(());
        }
        self.remove_file(id)?;
        conn.execute(
            "DELETE FROM quarantine WHERE id = ?1 AND state = 'holding'",
            params![id],
        )?;
        Ok(())
    }

    /// Settles what a crash left half done, before the gateway takes mail: each `holding` entry
    /// becomes `held` if a message record names it (its record was written; the 250 may or may
    /// not have reached the client, whose retry then finds it by its delivery key), and is
    /// removed otherwise (no record, so no 250 was given). Temporary files of writes cut short
    /// are removed too.
    ///
    /// On a shared database a node settles its own entries, and another node's only once they
    /// are an hour old (that node may be recording them right now).
    pub fn recover(&self) -> Result<Recovered, StoreError> {
        if let Some(pg) = self.pg() {
            return shared::recover(&pg?, &self.place.node());
        }
        let mut recovered = Recovered::default();
        let conn = self.conn()?;
        let holding: Vec<(String, String)> = conn
            .prepare("SELECT id, time FROM quarantine WHERE state = 'holding' ORDER BY time")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut recorded = conn.prepare(
            "SELECT 1 FROM audit WHERE time >= ?1 AND kind = 'message'
                 AND outcome = 'quarantined' AND instr(record, ?2) > 0 LIMIT 1",
        )?;
        for (id, time) in holding {
            // The record is written after the entry: look from a little before it (clocks
            // step), through the time index.
            let since = time
                .parse::<jiff::Timestamp>()
                .ok()
                .and_then(|t| t.checked_sub(jiff::SignedDuration::from_hours(1)).ok())
                .map(|t| t.to_string())
                .unwrap_or_default();
            let needle = format!("\"quarantine_id\":{}", serde_json::Value::from(id.as_str()));
            if recorded.exists(params![since, needle])? {
                self.confirm(&id)?;
                recovered.confirmed.push(id);
            } else {
                self.unhold(&id)?;
                recovered.removed.push(id);
            }
        }
        if let Ok(entries) = fs::read_dir(self.dir()) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.ends_with(".tmp") {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(recovered)
    }

    /// The entry `id`, in whatever state.
    pub fn get(&self, id: &str) -> Result<Option<Held>, StoreError> {
        if let Some(pg) = self.pg() {
            return shared::get(&pg?, id);
        }
        let conn = self.conn()?;
        let sql = format!("SELECT {COLUMNS} FROM quarantine WHERE id = ?1");
        Ok(conn.query_row(&sql, params![id], from_row).optional()?)
    }

    /// The entries in `state`, oldest first.
    pub fn list(&self, state: &str) -> Result<Vec<Held>, StoreError> {
        if let Some(pg) = self.pg() {
            return shared::list(&pg?, state);
        }
        let conn = self.conn()?;
        let sql = format!("SELECT {COLUMNS} FROM quarantine WHERE state = ?1 ORDER BY time, id");
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params![state], from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The held bytes of `id`.
    pub fn read(&self, id: &str) -> io::Result<Vec<u8>> {
        if let Some(pg) = self.pg() {
            return match shared::read(&pg.map_err(io::Error::other)?, id) {
                Ok(Some(bytes)) => Ok(bytes),
                Ok(None) => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("the held bytes of {id} are not in the database (deleted or purged)"),
                )),
                Err(e) => Err(io::Error::other(e)),
            };
        }
        fs::read(self.path(id))
    }

    /// Moves `id` from `held` to `state` (`released` or `deleted`), naming who and why. False
    /// if it was not held (already released or deleted, perhaps by someone else just now).
    pub fn mark(
        &self,
        id: &str,
        state: &str,
        by: &str,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        if let Some(pg) = self.pg() {
            return shared::mark(&pg?, id, state, by, reason);
        }
        let n = self.conn()?.execute(
            "UPDATE quarantine SET state = ?2, acted_by = ?3, acted_at = ?4, action_reason = ?5
             WHERE id = ?1 AND state = 'held'",
            params![id, state, by, now_rfc3339(), reason],
        )?;
        Ok(n == 1)
    }

    /// Moves `id` from `from` to `to` (`releasing` → `released`), stamping who and when; false
    /// when it was not in `from` (someone else acted first).
    pub fn advance(&self, id: &str, from: &str, to: &str, by: &str) -> Result<bool, StoreError> {
        if let Some(pg) = self.pg() {
            return shared::advance(&pg?, id, from, to, by);
        }
        let n = self.conn()?.execute(
            "UPDATE quarantine SET state = ?3, acted_by = ?4, acted_at = ?5
             WHERE id = ?1 AND state = ?2",
            params![id, from, to, by, now_rfc3339()],
        )?;
        Ok(n == 1)
    }

    /// Puts `id` back to `held` after an action that could not be completed (its audit record
    /// failed).
    pub fn unmark(&self, id: &str) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return shared::unmark(&pg?, id);
        }
        self.conn()?.execute(
            "UPDATE quarantine SET state = 'held', acted_by = NULL, acted_at = NULL,
                 action_reason = NULL WHERE id = ?1",
            params![id],
        )?;
        Ok(())
    }

    /// Removes the held bytes of `id` (no error if they are already gone).
    pub fn remove_file(&self, id: &str) -> io::Result<()> {
        if let Some(pg) = self.pg() {
            return shared::remove_bytes(&pg.map_err(io::Error::other)?, id)
                .map_err(io::Error::other);
        }
        match fs::remove_file(self.path(id)) {
            Ok(()) => sync_dir(&self.dir()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Retention: every held message older than `cutoff` is marked deleted by `schoolgate` and
    /// its file removed, and released messages' files older than `cutoff` are removed. Returns
    /// the ids of the held messages purged.
    pub fn purge(&self, cutoff: jiff::Timestamp, days: u32) -> Result<Vec<String>, StoreError> {
        let old = |h: &Held| h.time.parse::<jiff::Timestamp>().is_ok_and(|t| t < cutoff);
        let mut purged = Vec::new();
        for h in self.list("held")?.into_iter().filter(|h| old(h)) {
            let reason = format!("retention: held longer than {days} days");
            if self.mark(&h.id, "deleted", super::GATEWAY, Some(&reason))? {
                self.remove_file(&h.id)?;
                purged.push(h.id);
            }
        }
        for h in self.list("released")?.into_iter().filter(|h| old(h)) {
            self.remove_file(&h.id)?;
        }
        Ok(purged)
    }
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Held> {
    let rcpt: String = row.get(3)?;
    let reason: String = row.get(7)?;
    Ok(Held {
        id: row.get(0)?,
        time: row.get(1)?,
        mail_from: row.get(2)?,
        rcpt_to: serde_json::from_str(&rcpt).unwrap_or_default(),
        subject: row.get(4)?,
        size: row.get::<_, i64>(5)? as u64,
        sha256: row.get(6)?,
        reason: serde_json::from_str(&reason).unwrap_or(serde_json::Value::Null),
        state: row.get(8)?,
        acted_by: row.get(9)?,
        acted_at: row.get(10)?,
        action_reason: row.get(11)?,
        smtputf8: row.get(12)?,
        body_8bit: row.get(13)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_list_mark_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::new(dir.path());
        let rcpt = vec!["b@y".to_string()];
        let item = |id| NewHeld {
            id,
            mail_from: "a@x",
            rcpt_to: &rcpt,
            subject: Some("Hi"),
            reason: serde_json::json!([{"rule": "pupil-personal-address"}]),
            smtputf8: false,
            body_8bit: true,
            delivery_key: "",
        };
        let mut held = q.hold(&item("Q1"), b"bytes\r\n").unwrap();
        q.hold(&item("Q2"), b"other\r\n").unwrap();
        assert!(
            q.list("held").unwrap().is_empty(),
            "holding until confirmed"
        );
        assert!(q.confirm("Q1").unwrap() && q.confirm("Q2").unwrap());
        held.state = "held".into();
        assert_eq!(q.read("Q1").unwrap(), b"bytes\r\n");
        assert_eq!(q.get("Q1").unwrap().unwrap(), held);
        assert_eq!(q.list("held").unwrap().len(), 2);
        assert!(q.mark("Q1", "released", "netman", None).unwrap());
        assert!(!q.mark("Q1", "released", "netman", None).unwrap());
        assert_eq!(
            q.get("Q1").unwrap().unwrap().acted_by.as_deref(),
            Some("netman")
        );
        assert!(q.get("nope").unwrap().is_none());
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60);
        assert_eq!(q.purge(later, 30).unwrap(), vec!["Q2".to_string()]);
        assert!(q.list("held").unwrap().is_empty());
        assert!(!q.path("Q1").exists() && !q.path("Q2").exists());
    }

    #[test]
    fn a_retry_finds_its_entry_and_a_crash_is_settled_by_its_audit_record() {
        use crate::store::sqlite::SqliteBackend;
        use crate::store::{AuditLog, AuditRecord, MessageRecord};
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::new(dir.path());
        let rcpt = vec!["b@y".to_string()];
        let item = |id, key| NewHeld {
            id,
            mail_from: "a@x",
            rcpt_to: &rcpt,
            subject: None,
            reason: serde_json::json!([]),
            smtputf8: false,
            body_8bit: false,
            delivery_key: key,
        };
        // A retry of a held message gets the entry it already has.
        assert_eq!(
            q.hold(&item("R1", "k1"), b"x\r\n").unwrap().state,
            "holding"
        );
        assert_eq!(q.hold(&item("R1b", "k1"), b"x\r\n").unwrap().id, "R1b");
        q.unhold("R1b").unwrap();
        assert!(q.confirm("R1").unwrap());
        let again = q.hold(&item("R1c", "k1"), b"x\r\n").unwrap();
        assert_eq!((again.id.as_str(), again.state.as_str()), ("R1", "held"));
        assert!(!q.path("R1c").exists());

        // A crash: R2 recorded but not confirmed, R3 never recorded.
        q.hold(&item("R2", "k2"), b"y\r\n").unwrap();
        q.hold(&item("R3", "k3"), b"z\r\n").unwrap();
        std::fs::write(dir.path().join("quarantine/.R4.eml.1.tmp"), b"half").unwrap();
        let audit = AuditLog::start(Box::new(SqliteBackend::open(dir.path()).unwrap())).unwrap();
        audit
            .append_blocking(AuditRecord::message(MessageRecord {
                outcome: "quarantined".into(),
                quarantine_id: Some("R2".into()),
                ..MessageRecord::default()
            }))
            .unwrap();
        let recovered = q.recover().unwrap();
        assert_eq!(recovered.confirmed, ["R2"]);
        assert_eq!(recovered.removed, ["R3"]);
        assert_eq!(q.get("R2").unwrap().unwrap().state, "held");
        assert!(q.get("R3").unwrap().is_none() && !q.path("R3").exists());
        assert!(!dir.path().join("quarantine/.R4.eml.1.tmp").exists());
    }
}
