//! The quarantine (index and held bytes), the web page's accounts, failed logins, release
//! links, web sessions and the alert and notice queues in PostgreSQL: what two gateways on one
//! database share, so that a message held through one is released through the other, a session
//! made on one is good on the other, and an alert is sent once, by one of them.
//!
//! Each function is the PostgreSQL side of the store method of the same name (the SQLite side
//! is in `store::quarantine`, `store::users`, …), with the same states and the same answers.
//! State changes are single conditional statements (`UPDATE … WHERE state = 'held'`), which
//! PostgreSQL serialises per row: of two nodes releasing one message at once, one changes it
//! and the other changes nothing and is told so.
//!
//! The queues are claimed, not read: [`claim`] takes the unclaimed rows (and this node's own)
//! `FOR UPDATE SKIP LOCKED` and stamps them with this node and a claim expiry, so two nodes
//! never take the same alert; a node that dies mid-send leaves its claim to run out, and the
//! other node takes the rows then.

use std::time::{Duration, SystemTime};

use tokio_postgres::Row;

use super::Pg;
use crate::store::StoreError;
use crate::store::audit::{now_rfc3339, sha256_hex};
use crate::store::quarantine::{Held, NewHeld, Recovered};
use crate::store::users::{Account, Role};

/// The schema of these tables: appended to [`super::schema::MIGRATIONS`].
pub const MIGRATION: &str = "
    CREATE TABLE quarantine (
        id            TEXT PRIMARY KEY,
        time          TEXT NOT NULL,
        mail_from     TEXT NOT NULL,
        rcpt_to       TEXT NOT NULL,
        subject       TEXT,
        size          BIGINT NOT NULL,
        sha256        TEXT NOT NULL,
        reason        TEXT NOT NULL,
        state         TEXT NOT NULL,
        acted_by      TEXT,
        acted_at      TEXT,
        action_reason TEXT,
        smtputf8      BOOLEAN NOT NULL,
        body_8bit     BOOLEAN NOT NULL,
        delivery_key  TEXT,
        node          TEXT NOT NULL,
        bytes         BYTEA
    );
    CREATE INDEX quarantine_state ON quarantine (state, time);
    CREATE INDEX quarantine_delivery_key ON quarantine (delivery_key);
    CREATE TABLE web_user (
        name           TEXT PRIMARY KEY,
        roles          TEXT NOT NULL,
        hash           TEXT NOT NULL,
        created        TEXT NOT NULL,
        changed        TEXT NOT NULL,
        totp_secret    TEXT,
        totp_last_step BIGINT
    );
    CREATE TABLE web_login_failure (
        name         TEXT NOT NULL,
        client       TEXT NOT NULL,
        failures     BIGINT NOT NULL,
        last_failure BIGINT NOT NULL,
        locked_until BIGINT,
        PRIMARY KEY (name, client)
    );
    CREATE TABLE release_link (
        token_hash    TEXT PRIMARY KEY,
        quarantine_id TEXT NOT NULL,
        sender        TEXT NOT NULL,
        created       TEXT NOT NULL,
        expires       TEXT NOT NULL,
        used_at       TEXT
    );
    CREATE TABLE web_session (
        key           BYTEA PRIMARY KEY,
        account       TEXT,
        roles         TEXT,
        pending_code  TEXT,
        pending_since BIGINT,
        csrf          TEXT NOT NULL,
        last_seen     BIGINT NOT NULL
    );
    CREATE INDEX web_session_account ON web_session (account);
    CREATE TABLE send_queue (
        id            BIGSERIAL PRIMARY KEY,
        kind          TEXT NOT NULL,
        audit_seq     BIGINT NOT NULL,
        grouping      TEXT NOT NULL,
        item          TEXT NOT NULL,
        queued        BIGINT NOT NULL,
        claimed_by    TEXT,
        claimed_until BIGINT
    );
    CREATE INDEX send_queue_kind ON send_queue (kind, audit_seq);
    CREATE TABLE evidence (
        name  TEXT PRIMARY KEY,
        bytes BYTEA NOT NULL,
        kept  BIGINT NOT NULL
    );
    CREATE TABLE alert_last (
        sender TEXT PRIMARY KEY,
        sent   BIGINT NOT NULL
    );
";

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Now, in Unix milliseconds.
pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

// ---------------------------------------------------------------------------------------------
// The quarantine

const COLUMNS: &str = "id, time, mail_from, rcpt_to, subject, size, sha256, reason, state, \
                       acted_by, acted_at, action_reason, smtputf8, body_8bit";

fn held(row: &Row) -> Held {
    let rcpt: String = row.get(3);
    let reason: String = row.get(7);
    Held {
        id: row.get(0),
        time: row.get(1),
        mail_from: row.get(2),
        rcpt_to: serde_json::from_str(&rcpt).unwrap_or_default(),
        subject: row.get(4),
        size: row.get::<_, i64>(5) as u64,
        sha256: row.get(6),
        reason: serde_json::from_str(&reason).unwrap_or(serde_json::Value::Null),
        state: row.get(8),
        acted_by: row.get(9),
        acted_at: row.get(10),
        action_reason: row.get(11),
        smtputf8: row.get(12),
        body_8bit: row.get(13),
    }
}

/// Holds `bytes` (in the row itself) as `holding`, by `node`; or returns the entry the delivery
/// key names already.
pub fn hold(pg: &Pg, node: &str, item: &NewHeld<'_>, bytes: &[u8]) -> Result<Held, StoreError> {
    let new = Held {
        id: item.id.to_string(),
        time: now_rfc3339(),
        mail_from: item.mail_from.to_string(),
        rcpt_to: item.rcpt_to.to_vec(),
        subject: item.subject.map(str::to_string),
        size: bytes.len() as u64,
        sha256: sha256_hex(bytes),
        reason: item.reason.clone(),
        state: "holding".into(),
        acted_by: None,
        acted_at: None,
        action_reason: None,
        smtputf8: item.smtputf8,
        body_8bit: item.body_8bit,
    };
    let key = Some(item.delivery_key.to_string()).filter(|k| !k.is_empty());
    let bytes = bytes.to_vec();
    let node = node.to_string();
    pg.run(move |mut client| async move {
        let tx = client.transaction().await?;
        if let Some(key) = &key {
            // Two nodes taking the same retry at once: one waits for the other here.
            tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[key])
                .await?;
            let sql = format!(
                "SELECT {COLUMNS} FROM quarantine WHERE delivery_key = $1 AND state != 'holding'
                 ORDER BY time LIMIT 1"
            );
            if let Some(row) = tx.query_opt(&sql, &[key]).await? {
                return Ok(held(&row));
            }
        }
        let rcpt = serde_json::to_string(&new.rcpt_to).unwrap_or_else(|_| "[]".into());
        tx.execute(
            "INSERT INTO quarantine (id, time, mail_from, rcpt_to, subject, size, sha256,
                 reason, state, smtputf8, body_8bit, delivery_key, node, bytes)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'holding', $9, $10, $11, $12, $13)",
            &[
                &new.id,
                &new.time,
                &new.mail_from,
                &rcpt,
                &new.subject,
                &(new.size as i64),
                &new.sha256,
                &new.reason.to_string(),
                &new.smtputf8,
                &new.body_8bit,
                &key,
                &node,
                &bytes,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(new)
    })
}

/// Runs one statement; the number of rows it changed.
fn execute(
    pg: &Pg,
    sql: &'static str,
    params: Vec<Box<dyn tokio_postgres::types::ToSql + Send + Sync>>,
) -> Result<u64, StoreError> {
    pg.run(move |client| async move {
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        Ok(client.execute(sql, &refs).await?)
    })
}

macro_rules! params {
    ($($p:expr),* $(,)?) => {
        vec![$(Box::new($p) as Box<dyn tokio_postgres::types::ToSql + Send + Sync>),*]
    };
}

pub fn confirm(pg: &Pg, id: &str) -> Result<bool, StoreError> {
    let n = execute(
        pg,
        "UPDATE quarantine SET state = 'held' WHERE id = $1 AND state = 'holding'",
        params![id.to_string()],
    )?;
    Ok(n == 1)
}

pub fn unhold(pg: &Pg, id: &str) -> Result<(), StoreError> {
    execute(
        pg,
        "DELETE FROM quarantine WHERE id = $1 AND state = 'holding'",
        params![id.to_string()],
    )?;
    Ok(())
}

/// How long another node's `holding` entry is left alone: its node may be writing its audit
/// record right now (a second or so), or retrying its confirmation.
const OTHER_NODES_AFTER: i64 = 3600;

/// Settles `holding` entries: this node's (it is starting, so none of them is in flight) and
/// other nodes' older than an hour (their node died and did not come back).
pub fn recover(pg: &Pg, node: &str) -> Result<Recovered, StoreError> {
    let node = node.to_string();
    let stale = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(OTHER_NODES_AFTER))
        .map(|t| t.to_string())
        .unwrap_or_default();
    let found: Vec<(String, bool)> = pg.run(move |client| async move {
        let rows = client
            .query(
                "SELECT q.id, EXISTS (
                     SELECT 1 FROM audit a WHERE a.time >= q.time AND a.kind = 'message'
                         AND a.outcome = 'quarantined'
                         AND strpos(a.record, '\"quarantine_id\":' || to_json(q.id)::text) > 0)
                 FROM quarantine q
                 WHERE q.state = 'holding' AND (q.node = $1 OR q.time < $2)
                 ORDER BY q.time",
                &[&node, &stale],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    })?;
    let mut recovered = Recovered::default();
    for (id, recorded) in found {
        if recorded {
            confirm(pg, &id)?;
            recovered.confirmed.push(id);
        } else {
            unhold(pg, &id)?;
            recovered.removed.push(id);
        }
    }
    Ok(recovered)
}

pub fn get(pg: &Pg, id: &str) -> Result<Option<Held>, StoreError> {
    let id = id.to_string();
    pg.run(move |client| async move {
        let sql = format!("SELECT {COLUMNS} FROM quarantine WHERE id = $1");
        Ok(client.query_opt(&sql, &[&id]).await?.as_ref().map(held))
    })
}

pub fn list(pg: &Pg, state: &str) -> Result<Vec<Held>, StoreError> {
    let state = state.to_string();
    pg.run(move |client| async move {
        let sql = format!("SELECT {COLUMNS} FROM quarantine WHERE state = $1 ORDER BY time, id");
        Ok(client
            .query(&sql, &[&state])
            .await?
            .iter()
            .map(held)
            .collect())
    })
}

/// The held bytes of `id`; `None` when there is no such entry or its bytes are gone.
pub fn read(pg: &Pg, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let id = id.to_string();
    pg.run(move |client| async move {
        Ok(client
            .query_opt("SELECT bytes FROM quarantine WHERE id = $1", &[&id])
            .await?
            .and_then(|r| r.get::<_, Option<Vec<u8>>>(0)))
    })
}

pub fn mark(
    pg: &Pg,
    id: &str,
    state: &str,
    by: &str,
    reason: Option<&str>,
) -> Result<bool, StoreError> {
    let n = execute(
        pg,
        "UPDATE quarantine SET state = $2, acted_by = $3, acted_at = $4, action_reason = $5
         WHERE id = $1 AND state = 'held'",
        params![
            id.to_string(),
            state.to_string(),
            by.to_string(),
            now_rfc3339(),
            reason.map(str::to_string)
        ],
    )?;
    Ok(n == 1)
}

pub fn advance(pg: &Pg, id: &str, from: &str, to: &str, by: &str) -> Result<bool, StoreError> {
    let n = execute(
        pg,
        "UPDATE quarantine SET state = $3, acted_by = $4, acted_at = $5
         WHERE id = $1 AND state = $2",
        params![
            id.to_string(),
            from.to_string(),
            to.to_string(),
            by.to_string(),
            now_rfc3339()
        ],
    )?;
    Ok(n == 1)
}

pub fn unmark(pg: &Pg, id: &str) -> Result<(), StoreError> {
    execute(
        pg,
        "UPDATE quarantine SET state = 'held', acted_by = NULL, acted_at = NULL,
             action_reason = NULL WHERE id = $1",
        params![id.to_string()],
    )?;
    Ok(())
}

/// Drops the held bytes of `id` (the row stays, for the record).
pub fn remove_bytes(pg: &Pg, id: &str) -> Result<(), StoreError> {
    execute(
        pg,
        "UPDATE quarantine SET bytes = NULL WHERE id = $1",
        params![id.to_string()],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Accounts

fn roles_of(text: &str) -> Vec<Role> {
    text.split(',').filter_map(|r| r.parse().ok()).collect()
}

fn account(row: &Row) -> Account {
    let roles: String = row.get(1);
    Account {
        name: row.get(0),
        roles: roles_of(&roles),
        hash: row.get(2),
        created: row.get(3),
        changed: row.get(4),
        totp_secret: row.get(5),
        // Written by `user_set_schools` as a JSON array; anything else reads as trust-wide.
        schools: serde_json::from_str(row.get::<_, &str>(6)).unwrap_or_default(),
    }
}

const USER_COLUMNS: &str = "name, roles, hash, created, changed, totp_secret, schools";

pub fn user_add(pg: &Pg, name: &str, roles: &str, hash: &str) -> Result<bool, StoreError> {
    let now = now_rfc3339();
    let n = execute(
        pg,
        "INSERT INTO web_user (name, roles, hash, created, changed) VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (name) DO NOTHING",
        params![name.to_string(), roles.to_string(), hash.to_string(), now],
    )?;
    Ok(n == 1)
}

pub fn user_set_hash(pg: &Pg, name: &str, hash: &str) -> Result<bool, StoreError> {
    let n = execute(
        pg,
        "UPDATE web_user SET hash = $2, changed = $3 WHERE name = $1",
        params![name.to_string(), hash.to_string(), now_rfc3339()],
    )?;
    Ok(n == 1)
}

pub fn user_remove(pg: &Pg, name: &str) -> Result<bool, StoreError> {
    let n = execute(
        pg,
        "DELETE FROM web_user WHERE name = $1",
        params![name.to_string()],
    )?;
    Ok(n == 1)
}

pub fn user_get(pg: &Pg, name: &str) -> Result<Option<Account>, StoreError> {
    let name = name.to_string();
    pg.run(move |client| async move {
        let sql = format!("SELECT {USER_COLUMNS} FROM web_user WHERE name = $1");
        Ok(client
            .query_opt(&sql, &[&name])
            .await?
            .as_ref()
            .map(account))
    })
}

pub fn user_list(pg: &Pg) -> Result<Vec<Account>, StoreError> {
    pg.run(move |client| async move {
        let sql = format!("SELECT {USER_COLUMNS} FROM web_user ORDER BY name");
        Ok(client.query(&sql, &[]).await?.iter().map(account).collect())
    })
}

pub fn user_set_schools(pg: &Pg, name: &str, schools: &str) -> Result<bool, StoreError> {
    let n = execute(
        pg,
        "UPDATE web_user SET schools = $2, changed = $3 WHERE name = $1",
        params![name.to_string(), schools.to_string(), now_rfc3339()],
    )?;
    Ok(n == 1)
}

pub fn user_set_totp(pg: &Pg, name: &str, secret: Option<&str>) -> Result<bool, StoreError> {
    let n = execute(
        pg,
        "UPDATE web_user SET totp_secret = $2, totp_last_step = NULL, changed = $3
         WHERE name = $1",
        params![name.to_string(), secret.map(str::to_string), now_rfc3339()],
    )?;
    Ok(n == 1)
}

pub fn user_use_totp_step(pg: &Pg, name: &str, step: i64) -> Result<bool, StoreError> {
    let n = execute(
        pg,
        "UPDATE web_user SET totp_last_step = $2
         WHERE name = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
        params![name.to_string(), step],
    )?;
    Ok(n == 1)
}

// ---------------------------------------------------------------------------------------------
// Failed logins: the row is locked `FOR UPDATE` where SQLite takes `BEGIN IMMEDIATE`.

/// The row of `name` from `client`, locked until the transaction `f` runs in ends, and the
/// outcome `f` computes from it (see `store::logins` for the rules).
pub fn login_row<T, F>(pg: &Pg, name: &str, client_addr: &str, f: F) -> Result<T, StoreError>
where
    F: FnOnce(Option<(i64, i64, Option<i64>)>) -> (T, Vec<LoginWrite>) + Send + 'static,
    T: Send + 'static,
{
    let name = name.to_string();
    let addr = client_addr.to_string();
    pg.run(move |mut client| async move {
        let tx = client.transaction().await?;
        // A row that is not there yet cannot be locked: lock the pair's name instead.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1 || chr(10) || $2))",
            &[&name, &addr],
        )
        .await?;
        let row = tx
            .query_opt(
                "SELECT failures, last_failure, locked_until FROM web_login_failure
                 WHERE name = $1 AND client = $2",
                &[&name, &addr],
            )
            .await?
            .map(|r| (r.get(0), r.get(1), r.get(2)));
        let (out, writes) = f(row);
        for w in writes {
            match w {
                LoginWrite::Count { failures, now } => {
                    tx.execute(
                        "INSERT INTO web_login_failure
                             (name, client, failures, last_failure, locked_until)
                         VALUES ($1, $2, $3, $4, NULL)
                         ON CONFLICT (name, client) DO UPDATE
                         SET failures = $3, last_failure = $4, locked_until = NULL",
                        &[&name, &addr, &failures, &now],
                    )
                    .await?;
                }
                LoginWrite::Lock { until, now } => {
                    tx.execute(
                        "UPDATE web_login_failure SET locked_until = $3, last_failure = $4
                         WHERE name = $1 AND client = $2",
                        &[&name, &addr, &until, &now],
                    )
                    .await?;
                }
                LoginWrite::Forget { before, unlocked } => {
                    tx.execute(
                        "DELETE FROM web_login_failure WHERE last_failure < $1
                         AND (locked_until IS NULL OR locked_until < $2)",
                        &[&before, &unlocked],
                    )
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(out)
    })
}

/// What [`login_row`]'s decision writes.
pub enum LoginWrite {
    /// The pair's count is now `failures`, the last at `now` (no lock).
    Count { failures: i64, now: i64 },
    /// The pair is locked until `until`.
    Lock { until: i64, now: i64 },
    /// Forget counts older than `before` whose lock ran out before `unlocked`.
    Forget { before: i64, unlocked: i64 },
}

pub fn login_succeeded(pg: &Pg, name: &str, client_addr: &str) -> Result<(), StoreError> {
    execute(
        pg,
        "DELETE FROM web_login_failure WHERE name = $1 AND client = $2",
        params![name.to_string(), client_addr.to_string()],
    )?;
    Ok(())
}

pub fn login_clear(pg: &Pg, name: &str) -> Result<(), StoreError> {
    execute(
        pg,
        "DELETE FROM web_login_failure WHERE name = $1",
        params![name.to_string()],
    )?;
    Ok(())
}

pub fn login_locks(pg: &Pg, name: &str, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
    let name = name.to_string();
    pg.run(move |client| async move {
        Ok(client
            .query(
                "SELECT client, locked_until FROM web_login_failure
                 WHERE name = $1 AND locked_until > $2 ORDER BY client",
                &[&name, &now],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    })
}

// ---------------------------------------------------------------------------------------------
// Release links

/// `(quarantine_id, sender, created, expires, used_at)`, as kept.
pub type LinkRow = (String, String, String, String, Option<String>);

pub fn link_keep(pg: &Pg, row: LinkRow, hash: &str) -> Result<(), StoreError> {
    let (quarantine_id, sender, created, expires, _) = row;
    execute(
        pg,
        "INSERT INTO release_link (token_hash, quarantine_id, sender, created, expires, used_at)
         VALUES ($1, $2, $3, $4, $5, NULL)
         ON CONFLICT (token_hash) DO UPDATE SET quarantine_id = $2, sender = $3, created = $4,
             expires = $5, used_at = NULL",
        params![hash.to_string(), quarantine_id, sender, created, expires],
    )?;
    Ok(())
}

pub fn link_find(pg: &Pg, hash: &str) -> Result<Option<LinkRow>, StoreError> {
    let hash = hash.to_string();
    pg.run(move |client| async move {
        Ok(client
            .query_opt(
                "SELECT quarantine_id, sender, created, expires, used_at FROM release_link
                 WHERE token_hash = $1",
                &[&hash],
            )
            .await?
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))))
    })
}

/// Sets `used_at` if it was unset: true for the one caller that did.
pub fn link_claim(pg: &Pg, hash: &str, now: &str) -> Result<bool, StoreError> {
    let n = execute(
        pg,
        "UPDATE release_link SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL",
        params![hash.to_string(), now.to_string()],
    )?;
    Ok(n == 1)
}

pub fn link_unclaim(pg: &Pg, hash: &str) -> Result<(), StoreError> {
    execute(
        pg,
        "UPDATE release_link SET used_at = NULL WHERE token_hash = $1",
        params![hash.to_string()],
    )?;
    Ok(())
}

pub fn link_purge(pg: &Pg, cutoff: &str) -> Result<usize, StoreError> {
    Ok(execute(
        pg,
        "DELETE FROM release_link WHERE expires < $1",
        params![cutoff.to_string()],
    )? as usize)
}

// ---------------------------------------------------------------------------------------------
// Web sessions (times in Unix milliseconds: every node reads the same clock column)

/// One session as kept: account, roles (`None`: a local account's, read each time), the
/// account waiting for its TOTP code and since when, the CSRF token, last used.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub account: Option<String>,
    pub roles: Option<Vec<Role>>,
    pub pending_code: Option<(String, i64)>,
    pub csrf: String,
    pub last_seen: i64,
}

pub fn session_insert(pg: &Pg, key: [u8; 32], s: SessionRow) -> Result<(), StoreError> {
    let roles = s
        .roles
        .as_ref()
        .map(|r| r.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(","));
    execute(
        pg,
        "INSERT INTO web_session (key, account, roles, csrf, last_seen)
         VALUES ($1, $2, $3, $4, $5)",
        params![key.to_vec(), s.account, roles, s.csrf, s.last_seen],
    )?;
    Ok(())
}

/// The session `key` names if it was used within `idle_ms` (`anonymous_idle_ms` for a login
/// page's), marking it used; an expired one is removed.
pub fn session_find(
    pg: &Pg,
    key: [u8; 32],
    idle_ms: i64,
    anonymous_idle_ms: i64,
) -> Result<Option<SessionRow>, StoreError> {
    let now = unix_now_ms();
    pg.run(move |client| async move {
        let key = key.to_vec();
        let Some(r) = client
            .query_opt(
                "SELECT account, roles, pending_code, pending_since, csrf, last_seen
                 FROM web_session WHERE key = $1",
                &[&key],
            )
            .await?
        else {
            return Ok(None);
        };
        let account: Option<String> = r.get(0);
        let roles: Option<String> = r.get(1);
        let pending: Option<String> = r.get(2);
        let since: Option<i64> = r.get(3);
        let last_seen: i64 = r.get(5);
        let idle = if account.is_some() {
            idle_ms
        } else {
            anonymous_idle_ms
        };
        if now - last_seen > idle {
            client
                .execute("DELETE FROM web_session WHERE key = $1", &[&key])
                .await?;
            return Ok(None);
        }
        client
            .execute(
                "UPDATE web_session SET last_seen = $2 WHERE key = $1",
                &[&key, &now],
            )
            .await?;
        Ok(Some(SessionRow {
            account,
            roles: roles.as_deref().map(roles_of),
            pending_code: pending.zip(since),
            csrf: r.get(4),
            last_seen: now,
        }))
    })
}

pub fn session_ask_code(pg: &Pg, key: [u8; 32], account: &str) -> Result<(), StoreError> {
    execute(
        pg,
        "UPDATE web_session SET pending_code = $2, pending_since = $3 WHERE key = $1",
        params![key.to_vec(), account.to_string(), unix_now_ms()],
    )?;
    Ok(())
}

pub fn session_forget_code(pg: &Pg, key: [u8; 32]) -> Result<(), StoreError> {
    execute(
        pg,
        "UPDATE web_session SET pending_code = NULL, pending_since = NULL WHERE key = $1",
        params![key.to_vec()],
    )?;
    Ok(())
}

pub fn session_end(pg: &Pg, key: [u8; 32]) -> Result<(), StoreError> {
    execute(
        pg,
        "DELETE FROM web_session WHERE key = $1",
        params![key.to_vec()],
    )?;
    Ok(())
}

pub fn session_end_all_of(pg: &Pg, account: &str) -> Result<(), StoreError> {
    execute(
        pg,
        "DELETE FROM web_session WHERE account = $1",
        params![account.to_string()],
    )?;
    Ok(())
}

/// Forgets sessions unused for longer than `idle_ms`.
pub fn session_sweep(pg: &Pg, idle_ms: i64) -> Result<(), StoreError> {
    execute(
        pg,
        "DELETE FROM web_session WHERE last_seen < $1",
        params![unix_now_ms() - idle_ms],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The alert and notice queues

/// Queues `item` (JSON) of `kind` (`alert`, `notice`) for audit record `audit_seq`. Items of
/// one non-empty `grouping` (an alert's sender) go to one gateway at a time, so the alerts
/// about one sender are grouped as on one gateway.
pub fn enqueue(
    pg: &Pg,
    kind: &str,
    audit_seq: u64,
    grouping: &str,
    item: String,
) -> Result<(), StoreError> {
    execute(
        pg,
        "INSERT INTO send_queue (kind, audit_seq, grouping, item, queued)
         VALUES ($1, $2, $3, $4, $5)",
        params![
            kind.to_string(),
            audit_seq as i64,
            grouping.to_string(),
            item,
            unix_now()
        ],
    )?;
    Ok(())
}

/// Claims the rows of `kind` nobody else holds (unclaimed, claim run out, or this node's own)
/// for `node` for `claim_for`; returns them oldest first: `(row id, JSON, queued)`.
pub fn claim(
    pg: &Pg,
    kind: &str,
    node: &str,
    claim_for: Duration,
) -> Result<Vec<(i64, String, SystemTime)>, StoreError> {
    let kind = kind.to_string();
    let node = node.to_string();
    let now = unix_now();
    let until = now + claim_for.as_secs().max(1) as i64;
    pg.run(move |mut client| async move {
        let tx = client.transaction().await?;
        // One gateway claims at a time (twice a second each: cheap), so each sees the other's
        // claims committed and leaves a grouping another gateway holds to it.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('schoolgate claim ' || $1))",
            &[&kind],
        )
        .await?;
        let rows = tx
            .query(
                "UPDATE send_queue SET claimed_by = $2, claimed_until = $3
                 WHERE id IN (
                     SELECT q.id FROM send_queue q
                     WHERE q.kind = $1
                       AND (q.claimed_until IS NULL OR q.claimed_until < $4 OR q.claimed_by = $2)
                       AND NOT EXISTS (
                           SELECT 1 FROM send_queue o
                           WHERE o.kind = $1 AND q.grouping <> '' AND o.grouping = q.grouping
                             AND o.claimed_by <> $2 AND o.claimed_until >= $4)
                     ORDER BY q.audit_seq, q.id
                     FOR UPDATE SKIP LOCKED)
                 RETURNING id, item, queued, audit_seq",
                &[&kind, &node, &until, &now],
            )
            .await?;
        tx.commit().await?;
        let mut out: Vec<(i64, i64, String, SystemTime)> = rows
            .iter()
            .map(|r| {
                let queued: i64 = r.get(2);
                (
                    r.get::<_, i64>(3),
                    r.get::<_, i64>(0),
                    r.get::<_, String>(1),
                    SystemTime::UNIX_EPOCH + Duration::from_secs(queued.max(0) as u64),
                )
            })
            .collect();
        out.sort_by_key(|(seq, id, _, _)| (*seq, *id));
        Ok(out
            .into_iter()
            .map(|(_, id, item, queued)| (id, item, queued))
            .collect())
    })
}

/// Forgets rows that were sent.
pub fn sent(pg: &Pg, ids: &[i64]) -> Result<(), StoreError> {
    execute(
        pg,
        "DELETE FROM send_queue WHERE id = ANY($1)",
        params![ids.to_vec()],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// `schoolgate migrate --from sqlite:PATH`: these tables' copy

/// The tables [`copy_from_sqlite`] fills (all must be empty before `migrate` starts).
pub const TABLES: &[&str] = &["quarantine", "web_user", "release_link", "send_queue"];

/// One quarantine row of the source, with its held bytes (`None`: its file is gone, e.g.
/// removed by retention after a release).
type SourceHeld = (Vec<Option<String>>, Vec<i64>, Vec<bool>, Option<Vec<u8>>);

/// Copies a single-school store's quarantine (the held bytes read from `state_dir/quarantine`
/// beside the database `file`), accounts (roles, password hash, TOTP secret and last step),
/// release links, and the alerts and notices still queued in `state_dir/alerts` and
/// `state_dir/notices`, inside `tx`. Failed-login counts and web sessions are not copied
/// (everyone logs in again).
pub fn copy_from_sqlite(
    file: &std::path::Path,
    tx: &mut super::PgTx,
) -> Result<Vec<super::migrate::Copied>, StoreError> {
    use super::migrate::Copied;
    let state_dir = file
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let conn = rusqlite::Connection::open_with_flags(
        file,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Open {
        path: file.to_path_buf(),
        source,
    })?;
    let quarantine = crate::store::quarantine::Quarantine::new(&state_dir);

    let mut held: Vec<SourceHeld> = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT id, time, mail_from, rcpt_to, subject, sha256, reason, state, acted_by,
                    acted_at, action_reason, delivery_key, size, smtputf8, body_8bit
             FROM quarantine ORDER BY time, id",
        )?;
        let rows = stmt.query_map([], |r| {
            let text: Vec<Option<String>> = (0..12)
                .map(|i| r.get::<_, Option<String>>(i))
                .collect::<Result<_, _>>()?;
            Ok((
                text,
                vec![r.get::<_, i64>(12)?],
                vec![r.get(13)?, r.get(14)?],
            ))
        })?;
        for row in rows {
            let (text, numbers, flags) = row?;
            let id = text[0].clone().unwrap_or_default();
            let bytes = quarantine.read(&id).ok();
            held.push((text, numbers, flags, bytes));
        }
    }
    let held_rows = held.len() as u64;
    let node = format!("migrated:{}", state_dir.display());
    tx.run(move |c| {
        Box::pin(async move {
            for (t, n, f, bytes) in &held {
                c.execute(
                    "INSERT INTO quarantine (id, time, mail_from, rcpt_to, subject, sha256,
                         reason, state, acted_by, acted_at, action_reason, delivery_key, size,
                         smtputf8, body_8bit, node, bytes)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                         $16, $17)",
                    &[
                        &t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6], &t[7], &t[8], &t[9],
                        &t[10], &t[11], &n[0], &f[0], &f[1], &node, bytes,
                    ],
                )
                .await?;
            }
            Ok(())
        })
    })?;

    let users: Vec<(Vec<Option<String>>, Option<i64>)> = conn
        .prepare(
            "SELECT name, roles, hash, created, changed, totp_secret, schools, totp_last_step
             FROM web_user ORDER BY name",
        )?
        .query_map([], |r| {
            let text: Vec<Option<String>> = (0..7)
                .map(|i| r.get::<_, Option<String>>(i))
                .collect::<Result<_, _>>()?;
            Ok((text, r.get(7)?))
        })?
        .collect::<Result<_, _>>()?;
    let user_rows = users.len() as u64;
    tx.run(move |c| {
        Box::pin(async move {
            for (t, step) in &users {
                c.execute(
                    "INSERT INTO web_user (name, roles, hash, created, changed, totp_secret,
                         schools, totp_last_step)
                     VALUES ($1, $2, $3, $4, $5, $6, COALESCE($7, '[]'), $8)",
                    &[&t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6], step],
                )
                .await?;
            }
            Ok(())
        })
    })?;

    let links: Vec<Vec<Option<String>>> = conn
        .prepare(
            "SELECT token_hash, quarantine_id, sender, created, expires, used_at
             FROM release_link ORDER BY created",
        )?
        .query_map([], |r| {
            (0..6)
                .map(|i| r.get::<_, Option<String>>(i))
                .collect::<Result<Vec<_>, _>>()
        })?
        .collect::<Result<_, _>>()?;
    let link_rows = links.len() as u64;
    tx.run(move |c| {
        Box::pin(async move {
            for t in &links {
                c.execute(
                    "INSERT INTO release_link (token_hash, quarantine_id, sender, created,
                         expires, used_at) VALUES ($1, $2, $3, $4, $5, $6)",
                    &[&t[0], &t[1], &t[2], &t[3], &t[4], &t[5]],
                )
                .await?;
            }
            Ok(())
        })
    })?;

    let spool = crate::store::spool::Spool::new(&state_dir);
    let mut queued: Vec<(&'static str, i64, String, String, i64)> = Vec::new();
    let since_epoch = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    };
    for (_, item) in spool.pending_alerts()? {
        let json = serde_json::to_string(&item).map_err(|e| StoreError::Io(e.into()))?;
        let grouping = item.sender.trim().to_lowercase();
        queued.push(("alert", item.audit_seq as i64, grouping, json, unix_now()));
    }
    for (_, item, at) in spool.pending_notices()? {
        let json = serde_json::to_string(&item).map_err(|e| StoreError::Io(e.into()))?;
        queued.push((
            "notice",
            item.audit_seq as i64,
            String::new(),
            json,
            since_epoch(at),
        ));
    }
    let queue_rows = queued.len() as u64;
    tx.run(move |c| {
        Box::pin(async move {
            for (kind, seq, grouping, json, at) in &queued {
                c.execute(
                    "INSERT INTO send_queue (kind, audit_seq, grouping, item, queued)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[kind, seq, grouping, json, at],
                )
                .await?;
            }
            Ok(())
        })
    })?;

    Ok(vec![
        Copied {
            what: "quarantine entries (with their held bytes)",
            rows: held_rows,
        },
        Copied {
            what: "web accounts",
            rows: user_rows,
        },
        Copied {
            what: "release links",
            rows: link_rows,
        },
        Copied {
            what: "queued alerts and notices",
            rows: queue_rows,
        },
    ])
}

// ---------------------------------------------------------------------------------------------
// The alert window across gateways

/// When an alert about `sender` last went (Unix milliseconds), from any gateway.
pub fn last_alert(pg: &Pg, sender: &str) -> Result<Option<i64>, StoreError> {
    let sender = sender.to_string();
    pg.run(move |client| async move {
        Ok(client
            .query_opt("SELECT sent FROM alert_last WHERE sender = $1", &[&sender])
            .await?
            .map(|r| r.get(0)))
    })
}

/// An alert about `sender` went at `at_ms` (the later time is kept).
pub fn alert_sent_about(pg: &Pg, sender: &str, at_ms: i64) -> Result<(), StoreError> {
    execute(
        pg,
        "INSERT INTO alert_last (sender, sent) VALUES ($1, $2)
         ON CONFLICT (sender) DO UPDATE SET sent = GREATEST(alert_last.sent, excluded.sent)",
        params![sender.to_string(), at_ms],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Evidence copies (the DSL reads them through either gateway)

pub fn evidence_keep(pg: &Pg, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    execute(
        pg,
        "INSERT INTO evidence (name, bytes, kept) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET bytes = excluded.bytes, kept = excluded.kept",
        params![name.to_string(), bytes.to_vec(), unix_now()],
    )?;
    Ok(())
}

pub fn evidence_read(pg: &Pg, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let name = name.to_string();
    pg.run(move |client| async move {
        Ok(client
            .query_opt("SELECT bytes FROM evidence WHERE name = $1", &[&name])
            .await?
            .map(|r| r.get(0)))
    })
}

pub fn evidence_kept(pg: &Pg, name: &str) -> Result<bool, StoreError> {
    let name = name.to_string();
    pg.run(move |client| async move {
        Ok(client
            .query_opt("SELECT 1 FROM evidence WHERE name = $1", &[&name])
            .await?
            .is_some())
    })
}

/// Removes evidence kept before `cutoff` (Unix seconds); how many went.
pub fn evidence_purge(pg: &Pg, cutoff: i64) -> Result<usize, StoreError> {
    Ok(execute(pg, "DELETE FROM evidence WHERE kept < $1", params![cutoff])? as usize)
}
