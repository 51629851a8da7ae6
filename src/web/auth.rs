//! Who is asking: passwords, sessions, CSRF tokens and roles.
//!
//! - Passwords are argon2id hashes; checking one takes tens of milliseconds of CPU, so it runs on
//!   the blocking pool, never on the threads that serve pages.
//! - Failed logins are counted per name typed and client address (`store::logins`): after
//!   [`LOCK_AFTER`] in a row that name is locked from that address for [`LOCK_FOR`] (even the
//!   right password is refused there), while the same account still logs in from elsewhere. An
//!   unknown name is counted and locked alike and every refusal reads the same, so the page
//!   does not tell which accounts exist. Each attempt waits [`delay_after`] its failures so far.
//!   Logins, failures and the lock itself (once) are audited (`login`, `login-failed`), never
//!   the password.
//! - A session id is 32 random bytes from the OS; the server keeps only its SHA-256, so a copy
//!   of the server's memory does not hand out live sessions. Sessions end after [`IDLE`] unused.
//! - Every session has its own CSRF token; every POST must carry it (compared in constant time).
//!   The login form has one too, from a session that has no account yet, so a login cannot be
//!   forged from another site either.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::store::place::{Place, blocking};
use crate::store::postgres::shared;
use crate::store::users::{Account, Role};

/// Failed logins in a row (per name and address) that lock that name from that address.
pub const LOCK_AFTER: u32 = 5;
/// How long a lock-out lasts.
pub const LOCK_FOR: Duration = Duration::from_secs(15 * 60);
/// Failures older than this are forgotten.
pub const FORGET_FAILURES_AFTER: Duration = Duration::from_secs(3600);
/// The longest a login waits for the failures before it.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// How long the code form waits after a right password (TOTP accounts).
pub const CODE_FORM_FOR: Duration = Duration::from_secs(5 * 60);

/// How long an attempt waits when `failures` failed ones (same name, same address) came before
/// it: none for the first, then 1 s, 2 s, 4 s … at most [`MAX_DELAY`]. Each request waits on its
/// own; the server serves everyone else meanwhile.
pub fn delay_after(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let secs = 1u64.checked_shl(failures - 1).unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(MAX_DELAY)
}
/// A session unused this long has ended.
pub const IDLE: Duration = Duration::from_secs(8 * 3600);
/// A login page's session (no account yet) lasts this long unused.
const ANONYMOUS_IDLE: Duration = Duration::from_secs(3600);
/// Past this many sessions, expired ones are swept before a new one is made; past twice this,
/// the oldest login-page sessions go (a flood of GET /login cannot grow memory without bound).
const SWEEP_AT: usize = 5_000;

/// The session cookie's name.
pub const COOKIE: &str = "schoolgate_session";

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct HashError(String);

/// The argon2id PHC string of `password`, with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (false for a hash that does not parse).
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// A hash of a password nobody has, checked when the name is unknown so that an unknown name
/// takes as long to refuse as a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let mut random = [0u8; 16];
        let _ = getrandom::fill(&mut random);
        hash_password(&hex::encode(random)).unwrap_or_default()
    })
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 32 random bytes from the OS, hex.
fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

fn key_of(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// One session, as the server keeps it.
#[derive(Debug, Clone)]
struct Session {
    /// `None` on the login page, before anyone logged in.
    account: Option<String>,
    /// The roles of a session signed in with the school's accounts (OpenID Connect), fixed at
    /// sign-in from the ID token; `None` for a local account (its roles are read each time).
    roles: Option<Vec<Role>>,
    /// A local account whose password was right and whose TOTP code is asked for, since when.
    pending_code: Option<(String, Instant)>,
    csrf: String,
    last_seen: Instant,
}

impl Session {
    fn expired(&self, now: Instant) -> bool {
        let idle = if self.account.is_some() {
            IDLE
        } else {
            ANONYMOUS_IDLE
        };
        now.duration_since(self.last_seen) > idle
    }
}

/// A session found from a request's cookie.
#[derive(Debug, Clone)]
pub struct Found {
    pub account: Option<String>,
    /// Set for a session signed in with OpenID Connect.
    pub roles: Option<Vec<Role>>,
    /// The account whose TOTP code this (login page) session may give now.
    pub pending_code: Option<String>,
    pub csrf: String,
}

/// Every live session, by the SHA-256 of its id: in this gateway's memory, or (a trust's
/// gateways on one database) in PostgreSQL, so a session made on one gateway is good on the
/// other.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<HashMap<[u8; 32], Session>>,
    /// The shared database's place, when `[storage] database` names one.
    shared: Option<Place>,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Runs `f` against the shared database; what fails is logged and read as "no session" (the
/// person logs in again), never a panic.
fn on_shared<T>(
    place: &Place,
    f: impl FnOnce(&crate::store::postgres::Pg) -> Result<T, crate::store::StoreError>,
) -> Option<T> {
    blocking(|| match place.pg()?.and_then(|pg| f(&pg)) {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::error!(error = %e, "web: the sessions could not be read or written");
            None
        }
    })
}

impl Sessions {
    /// The sessions for `[storage]`'s place: in this gateway's memory on one machine.
    pub fn open(storage: &crate::config::Storage) -> Self {
        match Place::of(storage) {
            Place::Local(_) => Sessions::default(),
            shared @ Place::Shared { .. } => Sessions {
                inner: Mutex::default(),
                shared: Some(shared),
            },
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A new session (for `account`, or for the login page); returns its id for the cookie and
    /// its CSRF token. `None` only if the OS gave no random bytes.
    pub fn create(&self, account: Option<String>) -> Option<(String, String)> {
        self.insert(account, None)
    }

    /// A new session for a person signed in with OpenID Connect, with the roles the ID token
    /// gave; returns its id and CSRF token.
    pub fn create_signed_in(&self, name: String, roles: Vec<Role>) -> Option<(String, String)> {
        self.insert(Some(name), Some(roles))
    }

    /// Marks login-page session `id` as waiting for `account`'s TOTP code.
    pub fn ask_code(&self, id: &str, account: &str) {
        if let Some(place) = &self.shared {
            on_shared(place, |pg| {
                shared::session_ask_code(pg, key_of(id), account)
            });
            return;
        }
        if let Some(s) = self.map().get_mut(&key_of(id)) {
            s.pending_code = Some((account.to_string(), Instant::now()));
        }
    }

    /// Session `id` no longer waits for a code.
    pub fn forget_code(&self, id: &str) {
        if let Some(place) = &self.shared {
            on_shared(place, |pg| shared::session_forget_code(pg, key_of(id)));
            return;
        }
        if let Some(s) = self.map().get_mut(&key_of(id)) {
            s.pending_code = None;
        }
    }

    fn insert(
        &self,
        account: Option<String>,
        roles: Option<Vec<Role>>,
    ) -> Option<(String, String)> {
        let id = random_token()?;
        let csrf = random_token()?;
        if let Some(place) = &self.shared {
            let row = shared::SessionRow {
                account,
                roles,
                pending_code: None,
                csrf: csrf.clone(),
                last_seen: shared::unix_now_ms(),
            };
            on_shared(place, |pg| {
                // Forget sessions unused past the longest idle time now and then.
                if id.as_bytes()[0] == b'0' {
                    shared::session_sweep(pg, millis(IDLE))?;
                }
                shared::session_insert(pg, key_of(&id), row)
            })?;
            return Some((id, csrf));
        }
        let now = Instant::now();
        let mut map = self.map();
        if map.len() >= SWEEP_AT {
            map.retain(|_, s| !s.expired(now));
        }
        if map.len() >= 2 * SWEEP_AT {
            map.retain(|_, s| s.account.is_some());
        }
        map.insert(
            key_of(&id),
            Session {
                account,
                roles,
                pending_code: None,
                csrf: csrf.clone(),
                last_seen: now,
            },
        );
        Some((id, csrf))
    }

    /// The live session `id` names (and marks it used), or `None`.
    pub fn find(&self, id: &str) -> Option<Found> {
        if let Some(place) = &self.shared {
            let row = on_shared(place, |pg| {
                shared::session_find(pg, key_of(id), millis(IDLE), millis(ANONYMOUS_IDLE))
            })??;
            let now = shared::unix_now_ms();
            return Some(Found {
                account: row.account,
                roles: row.roles,
                pending_code: row
                    .pending_code
                    .filter(|(_, since)| now - since <= millis(CODE_FORM_FOR))
                    .map(|(name, _)| name),
                csrf: row.csrf,
            });
        }
        let key = key_of(id);
        let now = Instant::now();
        let mut map = self.map();
        let s = map.get_mut(&key)?;
        if s.expired(now) {
            map.remove(&key);
            return None;
        }
        s.last_seen = now;
        Some(Found {
            account: s.account.clone(),
            roles: s.roles.clone(),
            pending_code: s
                .pending_code
                .as_ref()
                .filter(|(_, since)| now.duration_since(*since) <= CODE_FORM_FOR)
                .map(|(name, _)| name.clone()),
            csrf: s.csrf.clone(),
        })
    }

    /// Ends session `id`.
    pub fn end(&self, id: &str) {
        if let Some(place) = &self.shared {
            on_shared(place, |pg| shared::session_end(pg, key_of(id)));
            return;
        }
        self.map().remove(&key_of(id));
    }

    /// Ends every session of `account` (it was removed).
    pub fn end_all_of(&self, account: &str) {
        if let Some(place) = &self.shared {
            on_shared(place, |pg| shared::session_end_all_of(pg, account));
            return;
        }
        self.map()
            .retain(|_, s| s.account.as_deref() != Some(account));
    }
}

/// The session id in the request's cookie, if any.
pub fn cookie_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value for session `id`: `Secure` unless the page is served over plain
/// HTTP on loopback (where a browser would not send a `Secure` cookie back).
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends the session in the browser.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// A logged-in person, as each page sees them.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub roles: Vec<Role>,
    pub csrf: String,
    /// The session id (to end it at logout).
    pub session: String,
    /// For a DSL, how many cases they may see are not reviewed yet (the navigation shows it).
    pub unreviewed_cases: Option<usize>,
    /// In a trust, the schools a local account is restricted to (`user add --school`); empty:
    /// trust-wide (and always for OpenID Connect sign-ins).
    pub schools: Vec<String>,
}

impl User {
    pub fn from_account(account: &Account, csrf: String, session: String) -> Self {
        User {
            name: account.name.clone(),
            roles: account.roles.clone(),
            csrf,
            session,
            unreviewed_cases: None,
            schools: account.schools.clone(),
        }
    }

    /// Someone signed in with OpenID Connect: `roles` from the ID token's claims.
    pub fn signed_in(name: String, roles: Vec<Role>, csrf: String, session: String) -> Self {
        User {
            name,
            roles,
            csrf,
            session,
            unreviewed_cases: None,
            schools: Vec::new(),
        }
    }

    /// Whether this person may see a held message from `sender`: a trust-wide account always;
    /// one restricted to schools only when `config` puts the sender in one of them.
    pub fn sees_sender(&self, config: &crate::config::Config, sender: &str) -> bool {
        self.schools.is_empty()
            || config
                .school_name_of(sender)
                .is_some_and(|s| self.schools.iter().any(|mine| mine.eq_ignore_ascii_case(s)))
    }

    pub fn is(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// May review the quarantine (the DSL read-only).
    pub fn sees_quarantine(&self) -> bool {
        self.is(Role::NetworkManager) || self.is(Role::Dsl)
    }

    /// May see safeguarding flags, alerts and the audit trail.
    pub fn sees_flags(&self) -> bool {
        self.is(Role::Dsl)
    }

    /// Whether `token` is this session's CSRF token.
    pub fn csrf_ok(&self, token: Option<&str>) -> bool {
        token.is_some_and(|t| same(t.as_bytes(), self.csrf.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash_password("correct horse battery").unwrap();
        let b = hash_password("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(verify_password("correct horse battery", &a));
        assert!(!verify_password("correct horse batterY", &a));
        assert!(!verify_password("x", "not a hash"));
        assert!(!verify_password("x", decoy_hash()));
    }

    #[test]
    fn sessions_are_found_by_id_only_and_end() {
        let s = Sessions::default();
        let (id, csrf) = s.create(Some("ms.jones".into())).unwrap();
        assert_eq!(id.len(), 64);
        let found = s.find(&id).unwrap();
        assert_eq!(found.account.as_deref(), Some("ms.jones"));
        assert_eq!(found.csrf, csrf);
        assert!(s.find(&csrf).is_none());
        assert!(
            !s.map().keys().any(|k| hex::encode(k) == id),
            "the id itself is not kept"
        );
        s.end_all_of("ms.jones");
        assert!(s.find(&id).is_none());
    }

    #[test]
    fn an_idle_session_ends() {
        let s = Sessions::default();
        let (id, _) = s.create(Some("ms.jones".into())).unwrap();
        let long_ago = Instant::now().checked_sub(IDLE + Duration::from_secs(1));
        if let Some(then) = long_ago {
            s.map().values_mut().for_each(|v| v.last_seen = then);
            assert!(s.find(&id).is_none(), "8 hours unused");
            assert!(s.map().is_empty(), "and forgotten");
        }
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let secs: Vec<u64> = (0..9).map(|n| delay_after(n).as_secs()).collect();
        assert_eq!(secs, vec![0, 1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(delay_after(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn signed_in_sessions_keep_their_roles_and_a_code_form_expires() {
        let s = Sessions::default();
        let (id, _) = s
            .create_signed_in("j.smith@school.org.uk".into(), vec![Role::Dsl])
            .unwrap();
        let found = s.find(&id).unwrap();
        assert_eq!(found.roles, Some(vec![Role::Dsl]));
        let (anon, _) = s.create(None).unwrap();
        assert_eq!(s.find(&anon).unwrap().roles, None);
        s.ask_code(&anon, "ms.jones");
        assert_eq!(
            s.find(&anon).unwrap().pending_code.as_deref(),
            Some("ms.jones")
        );
        if let Some(then) = Instant::now().checked_sub(CODE_FORM_FOR + Duration::from_secs(1)) {
            s.map().values_mut().for_each(|v| {
                if let Some(p) = v.pending_code.as_mut() {
                    p.1 = then
                }
            });
            assert_eq!(s.find(&anon).unwrap().pending_code, None, "expired");
        }
        s.forget_code(&anon);
        assert!(s.map().values().all(|v| v.pending_code.is_none()));
    }

    #[test]
    fn constant_time_compare() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }

    #[test]
    fn cookie_is_parsed_and_set() {
        let mut h = HeaderMap::new();
        let id = "a".repeat(64);
        h.insert(
            axum::http::header::COOKIE,
            format!("x=1; {COOKIE}={id}").parse().unwrap(),
        );
        assert_eq!(cookie_id(&h), Some(id.clone()));
        assert!(set_cookie(&id, true).ends_with("; Secure"));
        assert!(!set_cookie(&id, false).contains("Secure"));
    }
}
