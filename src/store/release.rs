//! The release links in sender notices (issue 16): a sender may release their own message held
//! by a data-protection rule ([`crate::policy::release`]) through a one-time link.
//!
//! A link's token is 32 random bytes from the OS, as 64 hex digits. Only its SHA-256 is kept
//! (table `release_link`), with the held message it releases, the sender it was sent to, and
//! when it expires (7 days) and was used. Someone who reads the database cannot use a link;
//! the token itself is only in the notice. A link is claimed (`used_at` set) by one conditional
//! update, so two clicks at once release the message once; a release that could not be
//! delivered gives the link back.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::StoreError;
use super::place::Place;
use super::postgres::shared;
use super::sqlite::open_connection;
use crate::config::Storage;
use crate::policy::release::{LINK_LIFETIME, LinkState, TOKEN_BYTES, link_state};

/// A new token: [`TOKEN_BYTES`] random bytes from the OS, hex. An error only if the OS has no
/// random numbers to give.
pub fn new_token() -> Result<String, StoreError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| {
        StoreError::Io(std::io::Error::other(format!(
            "the operating system gave no random numbers for a release link: {e}"
        )))
    })?;
    Ok(hex::encode(bytes))
}

/// What is kept of a token: its SHA-256, hex. `None` for text that cannot be a token (so a
/// mistyped link is told apart from a used one without a lookup).
pub fn token_hash(token: &str) -> Option<String> {
    let token = token.trim();
    if token.len() != 2 * TOKEN_BYTES || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(hex::encode(Sha256::digest(
        token.to_ascii_lowercase().as_bytes(),
    )))
}

/// One link, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub quarantine_id: String,
    /// The sender the notice went to (the held message's envelope sender).
    pub sender: String,
    pub created: jiff::Timestamp,
    pub expires: jiff::Timestamp,
    pub used_at: Option<jiff::Timestamp>,
}

impl Link {
    /// What the link is at `now`.
    pub fn state(&self, now: jiff::Timestamp) -> LinkState {
        link_state(self.expires, self.used_at, now)
    }
}

/// The release links, where [`Place`] says (see [`ReleaseLinks::open`]).
#[derive(Debug, Clone)]
pub struct ReleaseLinks {
    place: Place,
}

fn stamp(t: jiff::Timestamp) -> String {
    t.to_string()
}

fn parse_time(s: &str) -> jiff::Timestamp {
    // A time this code did not write is taken as long past: the link is expired, never open.
    s.parse().unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

impl ReleaseLinks {
    /// The release links in `[storage]`'s place: how the gateway and the CLI open it.
    pub fn open(storage: &Storage) -> Self {
        Self::at(Place::of(storage))
    }

    /// The release links in `place`.
    pub fn at(place: Place) -> Self {
        ReleaseLinks { place }
    }

    /// The release links in SQLite and files under `state_dir` (a single school; the tests).
    pub fn new(state_dir: &Path) -> Self {
        Self::at(Place::Local(state_dir.to_path_buf()))
    }

    fn conn(&self) -> Result<Connection, StoreError> {
        open_connection(self.place.state_dir())
    }

    /// Keeps the link whose token hashes to `hash`, releasing `quarantine_id` for `sender`,
    /// made at `created` and good for [`LINK_LIFETIME`].
    pub fn keep(
        &self,
        hash: &str,
        quarantine_id: &str,
        sender: &str,
        created: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        let expires = created
            .checked_add(LINK_LIFETIME)
            .unwrap_or(jiff::Timestamp::MAX);
        if let Some(pg) = self.place.pg() {
            let row = (
                quarantine_id.to_string(),
                sender.to_string(),
                stamp(created),
                stamp(expires),
                None,
            );
            return shared::link_keep(&pg?, row, hash);
        }
        self.conn()?.execute(
            "INSERT OR REPLACE INTO release_link
                 (token_hash, quarantine_id, sender, created, expires, used_at)
             VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
            params![hash, quarantine_id, sender, stamp(created), stamp(expires)],
        )?;
        Ok(())
    }

    /// A new link for `quarantine_id`: returns the token for the notice (only its hash is kept).
    pub fn issue(
        &self,
        quarantine_id: &str,
        sender: &str,
        now: jiff::Timestamp,
    ) -> Result<String, StoreError> {
        let token = new_token()?;
        let hash = token_hash(&token).unwrap_or_default();
        self.keep(&hash, quarantine_id, sender, now)?;
        Ok(token)
    }

    /// The link `token` names, in whatever state; `None` when there is none.
    pub fn find(&self, token: &str) -> Result<Option<Link>, StoreError> {
        let Some(hash) = token_hash(token) else {
            return Ok(None);
        };
        if let Some(pg) = self.place.pg() {
            return Ok(shared::link_find(&pg?, &hash)?.map(
                |(quarantine_id, sender, created, expires, used)| Link {
                    quarantine_id,
                    sender,
                    created: parse_time(&created),
                    expires: parse_time(&expires),
                    used_at: used.as_deref().map(parse_time),
                },
            ));
        }
        let conn = self.conn()?;
        let row = conn
            .query_row(
                "SELECT quarantine_id, sender, created, expires, used_at FROM release_link
                 WHERE token_hash = ?1",
                params![hash],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                },
            )
            .optional()?;
        Ok(
            row.map(|(quarantine_id, sender, created, expires, used)| Link {
                quarantine_id,
                sender,
                created: parse_time(&created),
                expires: parse_time(&expires),
                used_at: used.as_deref().map(parse_time),
            }),
        )
    }

    /// Uses the link `token` at `now`: true if it was unused and unexpired (and is now used),
    /// false otherwise (someone used it first, or it expired).
    pub fn claim(&self, token: &str, now: jiff::Timestamp) -> Result<bool, StoreError> {
        let Some(hash) = token_hash(token) else {
            return Ok(false);
        };
        let Some(link) = self.find(token)? else {
            return Ok(false);
        };
        if link.state(now) != LinkState::Valid {
            return Ok(false);
        }
        if let Some(pg) = self.place.pg() {
            return shared::link_claim(&pg?, &hash, &stamp(now));
        }
        let n = self.conn()?.execute(
            "UPDATE release_link SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL",
            params![hash, stamp(now)],
        )?;
        Ok(n == 1)
    }

    /// Gives back a link claimed for a release that did not happen (the message is still held).
    pub fn unclaim(&self, token: &str) -> Result<(), StoreError> {
        if let Some(hash) = token_hash(token) {
            if let Some(pg) = self.place.pg() {
                return shared::link_unclaim(&pg?, &hash);
            }
            self.conn()?.execute(
                "UPDATE release_link SET used_at = NULL WHERE token_hash = ?1",
                params![hash],
            )?;
        }
        Ok(())
    }

    /// Forgets links that expired before `cutoff` (kept that long so a late click is told
    /// "expired" rather than "no such link").
    pub fn purge(&self, cutoff: jiff::Timestamp) -> Result<usize, StoreError> {
        if let Some(pg) = self.place.pg() {
            return shared::link_purge(&pg?, &stamp(cutoff));
        }
        Ok(self.conn()?.execute(
            "DELETE FROM release_link WHERE expires < ?1",
            params![stamp(cutoff)],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_token_is_32_random_bytes_and_only_its_hash_is_kept() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(token_hash(&a).is_some());
        assert_eq!(token_hash(&a), token_hash(&a.to_uppercase()));
        assert_eq!(token_hash("not-a-token"), None);
        assert_eq!(token_hash(&"g".repeat(64)), None);

        let dir = tempfile::tempdir().unwrap();
        let links = ReleaseLinks::new(dir.path());
        let token = links
            .issue("Q1", "t.baker@school.example", at("2026-12-07T09:00:00Z"))
            .unwrap();
        let db = std::fs::read(dir.path().join(super::super::sqlite::DATABASE_FILE)).unwrap();
        let wal = std::fs::read(dir.path().join("schoolgate.db-wal")).unwrap_or_default();
        for bytes in [&db, &wal] {
            assert!(
                !bytes.windows(64).any(|w| w == token.as_bytes()),
                "the token itself is not stored"
            );
        }
        let link = links.find(&token).unwrap().unwrap();
        assert_eq!(link.quarantine_id, "Q1");
        assert_eq!(link.sender, "t.baker@school.example");
        assert_eq!(link.expires, at("2026-12-14T09:00:00Z"));
    }

    #[test]
    fn a_link_is_claimed_once_given_back_after_a_failed_release_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let links = ReleaseLinks::new(dir.path());
        let made = at("2026-12-07T09:00:00Z");
        let token = links.issue("Q1", "a@school.example", made).unwrap();
        let soon = at("2026-12-07T09:05:00Z");
        assert_eq!(
            links.find(&token).unwrap().unwrap().state(soon),
            LinkState::Valid
        );
        assert!(links.claim(&token, soon).unwrap());
        assert!(!links.claim(&token, soon).unwrap(), "once only");
        assert_eq!(
            links.find(&token).unwrap().unwrap().state(soon),
            LinkState::Used
        );
        links.unclaim(&token).unwrap();
        assert!(links.claim(&token, soon).unwrap(), "given back");

        let old = links.issue("Q2", "a@school.example", made).unwrap();
        let late = at("2026-12-14T09:00:01Z");
        assert_eq!(
            links.find(&old).unwrap().unwrap().state(late),
            LinkState::Expired
        );
        assert!(!links.claim(&old, late).unwrap());
        assert!(links.find(&new_token().unwrap()).unwrap().is_none());
        assert!(!links.claim("zz", soon).unwrap());

        assert_eq!(links.purge(at("2026-12-20T00:00:00Z")).unwrap(), 2);
        assert!(links.find(&old).unwrap().is_none());
    }
}
