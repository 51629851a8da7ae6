//! Release, delete and export of held messages, each audited with the acting account.
//!
//! A release is claimed first (`held` → `releasing`), so of two people releasing at once one
//! delivers and the other is told; a failed delivery puts the message back to `held`. The
//! outbox keys a delivery by the held bytes' hash, so a repeated release is stored once.
//!
//! Who may do what to an entry is [`crate::policy::holds`]'s rule, checked here for a release,
//! a delete and an export, and by the shells ([`authorize`]) before they show one: a message
//! held by a safeguarding rule is the DSL's, and its release or delete needs a reason.

use std::time::Duration;

use crate::envelope::Envelope;
use crate::policy::holds::{self, Act, Hold};
use crate::smtp::next_hop::NextHop;
use crate::store::quarantine::{Held, Quarantine};
use crate::store::users::Role;
use crate::store::{AuditLog, AuditRecord, RecordKind, StoreError};

/// The person acting on the quarantine: an account's name and roles (a web session's, or the
/// command line's `--as` account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewer {
    pub name: String,
    pub roles: Vec<Role>,
}

/// Why a hold of kind `hold` needs the role it does, in words.
fn whose(hold: Hold, role: Role) -> &'static str {
    match (hold, role) {
        (Hold::Safeguarding, _) => {
            "it was held by a safeguarding rule, so it is the DSL's decision (an account with the dsl role)"
        }
        (Hold::Sensitive, Role::NetworkManager) => {
            "releasing or deleting a held attachment is the network manager's (an account with the network-manager role)"
        }
        (Hold::Sensitive, Role::Dsl) => "it needs an account with the dsl role",
    }
}

/// Why an action on a held message was not done.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("no quarantined message {0}; see schoolgate quarantine list or the quarantine page")]
    NotFound(String),
    #[error("quarantined message {id} was already {state} by {by} at {at}; nothing done")]
    AlreadyActed {
        id: String,
        state: String,
        by: String,
        at: String,
    },
    #[error("quarantined message {0} is being released or was acted on by someone else meanwhile")]
    Busy(String),
    #[error("the held copy of {0} does not match its recorded SHA-256; not released")]
    Changed(String),
    #[error(
        "quarantined message {id} was deleted by {by} at {at} ({reason}); its bytes are no longer kept"
    )]
    Deleted {
        id: String,
        by: String,
        at: String,
        reason: String,
    },
    #[error("the held copy of {id} cannot be read ({detail}); it may have been removed")]
    Unreadable { id: String, detail: String },
    #[error("next hop {hop} did not answer within {secs} s; {id} is still held")]
    Timeout { hop: String, secs: u64, id: String },
    #[error("{detail}; {id} is still held")]
    Delivery { id: String, detail: String },
    #[error("a {0} of this message needs a reason (kept in the audit trail); nothing done")]
    NoReason(&'static str),
    // The limit is holds::MAX_REASON_CHARS.
    #[error(
        "the reason for a {act} may be at most 1,000 characters and this one has {chars}; shorten it (nothing done)"
    )]
    ReasonTooLong { act: &'static str, chars: usize },
    #[error("{name} may not {act} quarantined message {id}: {why}")]
    Forbidden {
        id: String,
        name: String,
        act: &'static str,
        why: &'static str,
    },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the audit record could not be written ({0}); {1}")]
    Audit(StoreError, &'static str),
    #[error("the quarantine could not be read or changed ({0}); see the gateway's log")]
    Interrupted(String),
}

impl ReviewError {
    /// Whether the error carries the store's own words (a file's path on the server, the
    /// database's message), which belong in the gateway's log rather than on a web page.
    pub fn has_store_detail(&self) -> bool {
        self.without_store_detail().is_some()
    }

    /// What a web page says: the error as it reads everywhere else, but without the store's
    /// own words ([`ReviewError::has_store_detail`]), which the page's caller logs instead.
    pub fn for_a_page(&self) -> String {
        self.without_store_detail()
            .unwrap_or_else(|| self.to_string())
    }

    /// The error said without the store's own words, for the errors that carry them.
    fn without_store_detail(&self) -> Option<String> {
        match self {
            ReviewError::Store(_) | ReviewError::Interrupted(_) => Some(
                "the quarantine could not be read or changed; nothing was done \
                 (the gateway's log says why)"
                    .into(),
            ),
            ReviewError::Audit(_, then) => Some(format!(
                "the audit record could not be written (the gateway's log says why); {then}"
            )),
            ReviewError::Unreadable { id, .. } => Some(format!(
                "the held copy of {id} cannot be read; it may have been removed (the gateway's \
                 log says why)"
            )),
            _ => None,
        }
    }
}

/// The entry `id`, which must exist.
pub fn find(q: &Quarantine, id: &str) -> Result<Held, ReviewError> {
    q.get(id)?
        .ok_or_else(|| ReviewError::NotFound(id.to_string()))
}

/// The entry `id`, which must still be held.
pub fn find_held(q: &Quarantine, id: &str) -> Result<Held, ReviewError> {
    let h = find(q, id)?;
    if h.state != "held" {
        return Err(ReviewError::AlreadyActed {
            id: id.to_string(),
            state: h.state,
            by: h.acted_by.unwrap_or_else(|| "?".into()),
            at: h.acted_at.unwrap_or_else(|| "?".into()),
        });
    }
    Ok(h)
}

/// What kind of hold `h` is, if `who` may `act` on it; [`ReviewError::Forbidden`] if not.
pub fn authorize(h: &Held, who: &Reviewer, act: Act) -> Result<Hold, ReviewError> {
    let hold = holds::kind(&h.reason);
    if holds::may(hold, &who.roles, act) {
        return Ok(hold);
    }
    Err(ReviewError::Forbidden {
        id: h.id.clone(),
        name: who.name.clone(),
        act: act.as_str(),
        why: match holds::needs(hold, act) {
            Some(role) => whose(hold, role),
            None => "it needs an account with the network-manager or dsl role",
        },
    })
}

/// `reason` trimmed, or why it is refused for `act` on `hold` (blank where one is needed, or
/// longer than [`holds::MAX_REASON_CHARS`]).
pub fn reason_for(
    hold: Hold,
    act: Act,
    reason: Option<&str>,
) -> Result<Option<String>, ReviewError> {
    holds::reason(hold, act, reason).map_err(|bad| match bad {
        holds::BadReason::Missing => ReviewError::NoReason(act.as_str()),
        holds::BadReason::TooLong(chars) => ReviewError::ReasonTooLong {
            act: act.as_str(),
            chars,
        },
    })
}

/// How the audit record names a hold's kind and the reason given: "" for a sensitive hold
/// released without one.
fn why_text(hold: Hold, reason: Option<&str>) -> String {
    match (hold, reason) {
        (Hold::Safeguarding, Some(r)) => format!(" (safeguarding hold; reason: {r})"),
        (Hold::Safeguarding, None) => " (safeguarding hold)".into(),
        (Hold::Sensitive, Some(r)) => format!(" (reason: {r})"),
        (Hold::Sensitive, None) => String::new(),
    }
}

pub(crate) async fn audit(log: &AuditLog, actor: &str, detail: String) -> Result<(), StoreError> {
    log.append(AuditRecord::action(RecordKind::Action, actor, detail))
        .await
        .map(|_| ())
}

/// What a release did.
#[derive(Debug, Clone)]
pub struct Released {
    /// The next hop's reply.
    pub reply: String,
    /// The next hop, described.
    pub hop: String,
}

/// Runs `step` on `q` on the blocking pool: the quarantine is SQLite (whose lock may be waited
/// on for seconds) and files of up to the largest message, and the web page's actions run
/// beside the SMTP sessions.
async fn in_quarantine<T, F>(q: &Quarantine, id: &str, step: F) -> Result<T, ReviewError>
where
    T: Send + 'static,
    F: FnOnce(&Quarantine, &str) -> Result<T, ReviewError> + Send + 'static,
{
    let (q, id) = (q.clone(), id.to_string());
    tokio::task::spawn_blocking(move || step(&q, &id))
        .await
        .map_err(|e| ReviewError::Interrupted(e.to_string()))?
}

/// Delivers the held bytes of `id` to `hop`, once, and audits it as `who`'s with `reason`
/// (required for a safeguarding hold, which only a DSL may release).
pub async fn release(
    q: &Quarantine,
    id: &str,
    who: &Reviewer,
    reason: Option<&str>,
    hop: &NextHop,
    timeout: Duration,
    log: &AuditLog,
) -> Result<Released, ReviewError> {
    let actor = who.name.as_str();
    let (claimant, reviewer, given) = (actor.to_string(), who.clone(), reason.map(str::to_string));
    let (h, bytes, hold, reason) = in_quarantine(q, id, move |q, id| {
        let h = find_held(q, id)?;
        let hold = authorize(&h, &reviewer, Act::Release)?;
        let reason = reason_for(hold, Act::Release, given.as_deref())?;
        let bytes = q.read(id).map_err(|e| ReviewError::Unreadable {
            id: id.to_string(),
            detail: format!("{}: {e}", q.held_at(id)),
        })?;
        if crate::store::audit::sha256_hex(&bytes) != h.sha256 {
            return Err(ReviewError::Changed(id.to_string()));
        }
        if !q.mark(id, "releasing", &claimant, reason.as_deref())? {
            return Err(ReviewError::Busy(id.to_string()));
        }
        Ok((h, bytes, hold, reason))
    })
    .await?;
    let reply = deliver_claimed(q, id, actor, &h, bytes, hop, timeout).await?;
    let hop = hop.describe();
    audit(
        log,
        actor,
        format!(
            "quarantine release {id} by {actor}{}: {} to {}; next hop {hop}: {reply}",
            why_text(hold, reason.as_deref()),
            h.mail_from,
            h.rcpt_to.join(", "),
        ),
    )
    .await
    .map_err(|e| ReviewError::Audit(e, "the message was released"))?;
    Ok(Released { reply, hop })
}

/// Delivers the held message `h` (its `bytes`, claimed `releasing` by `actor`) to `hop` and
/// marks it released; on failure puts it back to `held`. Returns the next hop's reply.
pub(crate) async fn deliver_claimed(
    q: &Quarantine,
    id: &str,
    actor: &str,
    h: &Held,
    bytes: Vec<u8>,
    hop: &NextHop,
    timeout: Duration,
) -> Result<String, ReviewError> {
    let envelope = Envelope {
        mail_from: h.mail_from.clone(),
        rcpt_to: h.rcpt_to.clone(),
        smtputf8: h.smtputf8,
        body_8bit: h.body_8bit,
    };
    // The key is the held bytes' hash: the outbox stores a repeated release once.
    let delivered = tokio::time::timeout(timeout, hop.deliver(&envelope, &bytes, &h.sha256)).await;
    drop(bytes);
    let reply = match delivered {
        Ok(Ok(reply)) => reply,
        failed => {
            let undone = in_quarantine(q, id, |q, id| Ok(q.unmark(id)?)).await;
            if let Err(undo) = undone {
                tracing::error!(error = %undo, "{id} could not be put back to held");
            }
            return Err(match failed {
                Err(_) => ReviewError::Timeout {
                    hop: hop.describe(),
                    secs: timeout.as_secs(),
                    id: id.to_string(),
                },
                Ok(Err(e)) => ReviewError::Delivery {
                    id: id.to_string(),
                    detail: e.to_string(),
                },
                Ok(Ok(_)) => ReviewError::Busy(id.to_string()),
            });
        }
    };
    let claimant = actor.to_string();
    if !in_quarantine(q, id, move |q, id| {
        Ok(q.advance(id, "releasing", "released", &claimant)?)
    })
    .await?
    {
        return Err(ReviewError::Busy(id.to_string()));
    }
    Ok(reply)
}

/// Deletes the held message `id` for `reason`, audited as `who`'s; not recorded, not done.
pub async fn delete(
    q: &Quarantine,
    id: &str,
    who: &Reviewer,
    reason: &str,
    log: &AuditLog,
) -> Result<(), ReviewError> {
    let actor = who.name.as_str();
    // Every delete needs a reason, whatever the hold: checked before anything is looked up.
    let reason = reason_for(Hold::Sensitive, Act::Delete, Some(reason))?.unwrap_or_default();
    let reason = reason.as_str();
    let (claimant, why, reviewer) = (actor.to_string(), reason.to_string(), who.clone());
    let hold = in_quarantine(q, id, move |q, id| {
        let h = find_held(q, id)?;
        let hold = authorize(&h, &reviewer, Act::Delete)?;
        if !q.mark(id, "deleted", &claimant, Some(&why))? {
            return Err(ReviewError::Busy(id.to_string()));
        }
        Ok(hold)
    })
    .await?;
    let kind = match hold {
        Hold::Safeguarding => " (safeguarding hold)",
        Hold::Sensitive => "",
    };
    if let Err(e) = audit(
        log,
        actor,
        format!("quarantine delete {id} by {actor}{kind}: {reason}"),
    )
    .await
    {
        let _ = in_quarantine(q, id, |q, id| Ok(q.unmark(id)?)).await;
        return Err(ReviewError::Audit(e, "the message is still held"));
    }
    in_quarantine(q, id, |q, id| {
        q.remove_file(id).map_err(|e| ReviewError::Unreadable {
            id: id.to_string(),
            detail: format!("marked deleted but its file could not be removed: {e}"),
        })
    })
    .await
}

/// The held bytes of `id` for download or `--out`, audited as `who`'s export to `target`.
pub async fn export(
    q: &Quarantine,
    id: &str,
    who: &Reviewer,
    target: &str,
    log: &AuditLog,
) -> Result<Vec<u8>, ReviewError> {
    let actor = who.name.as_str();
    let reviewer = who.clone();
    let bytes = in_quarantine(q, id, move |q, id| {
        let h = find(q, id)?;
        authorize(&h, &reviewer, Act::Download)?;
        if h.state == "deleted" {
            return Err(ReviewError::Deleted {
                id: id.to_string(),
                by: h.acted_by.unwrap_or_else(|| "?".into()),
                at: h.acted_at.unwrap_or_else(|| "?".into()),
                reason: h.action_reason.unwrap_or_default(),
            });
        }
        q.read(id).map_err(|e| ReviewError::Unreadable {
            id: id.to_string(),
            detail: format!("the bytes are no longer kept ({}: {e})", q.held_at(id)),
        })
    })
    .await?;
    audit(
        log,
        actor,
        format!("quarantine export {id} by {actor} to {target}"),
    )
    .await
    .map_err(|e| ReviewError::Audit(e, "nothing was exported"))?;
    Ok(bytes)
}

/// The audit record of someone looking at a held message.
pub async fn viewed(log: &AuditLog, id: &str, actor: &str) -> Result<(), StoreError> {
    audit(log, actor, format!("quarantine show {id} by {actor}")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_says_what_failed_but_not_the_stores_own_words() {
        let path = "/var/lib/schoolgate/quarantine/Q1.eml";
        let io = || std::io::Error::other(format!("{path}: permission denied"));
        for e in [
            ReviewError::Store(StoreError::Io(io())),
            ReviewError::Interrupted(format!("{path}: gone")),
            ReviewError::Unreadable {
                id: "Q1".into(),
                detail: format!("{path}: permission denied"),
            },
            ReviewError::Audit(
                StoreError::WriteFailed(format!("{path}: disk full")),
                "the message was released",
            ),
        ] {
            assert!(e.has_store_detail(), "{e}");
            assert!(e.to_string().contains(path), "the log keeps it: {e}");
            let shown = e.for_a_page();
            assert!(!shown.contains(path), "{shown}");
            assert!(shown.contains("the gateway's log says why"), "{shown}");
        }
        let audit = ReviewError::Audit(
            StoreError::WriteFailed("x".into()),
            "the message was released",
        );
        assert!(audit.for_a_page().ends_with("; the message was released"));
        let unreadable = ReviewError::Unreadable {
            id: "Q1".into(),
            detail: path.into(),
        };
        assert!(unreadable.for_a_page().contains("Q1"));
        // Everything else reads on the page as it does everywhere.
        let busy = ReviewError::Busy("Q2".into());
        assert!(!busy.has_store_detail());
        assert_eq!(busy.for_a_page(), busy.to_string());
    }
    use crate::smtp::next_hop::NextHopAddress;
    use crate::store::quarantine::NewHeld;
    use crate::store::sqlite::SqliteBackend;
    use serde_json::json;

    fn hold(q: &Quarantine, id: &str, reason: serde_json::Value) {
        let rcpt = vec!["mo.hussain2012@gmail.com".to_string()];
        q.hold(
            &NewHeld {
                id,
                mail_from: "t.baker@school.example",
                rcpt_to: &rcpt,
                subject: Some("Revision"),
                reason,
                smtputf8: false,
                body_8bit: false,
                delivery_key: "",
            },
            format!("Subject: Revision {id}\r\n\r\nSee you Monday.\r\n").as_bytes(),
        )
        .unwrap();
        assert!(q.confirm(id).unwrap());
    }

    fn who(name: &str, roles: &[Role]) -> Reviewer {
        Reviewer {
            name: name.into(),
            roles: roles.to_vec(),
        }
    }

    fn delivered(outbox: &std::path::Path) -> usize {
        std::fs::read_dir(outbox.join("new"))
            .map(|d| d.flatten().filter(|e| e.path().is_file()).count())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn a_safeguarding_hold_is_released_or_deleted_only_by_a_dsl_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::new(dir.path());
        let log = AuditLog::start(Box::new(SqliteBackend::open(dir.path()).unwrap())).unwrap();
        let outbox = dir.path().join("outbox");
        let address = NextHopAddress::parse(&format!("outbox:{}", outbox.display())).unwrap();
        let hop = NextHop::new(&address, None, "gw.test", Duration::from_secs(5)).unwrap();
        let t = Duration::from_secs(5);
        let flag = json!([{"rule": "pupil-personal-address", "detail": "d", "evidence": "e", "action": "quarantine"}]);
        hold(&q, "S1", flag.clone());
        hold(&q, "S2", flag);
        let nm = who("netman", &[Role::NetworkManager]);
        let dsl = who("ms.dsl", &[Role::Dsl]);

        let refused = release(&q, "S1", &nm, Some("fine"), &hop, t, &log).await;
        assert!(
            matches!(refused, Err(ReviewError::Forbidden { .. })),
            "{refused:?}"
        );
        let refused = delete(&q, "S1", &nm, "spam", &log).await;
        assert!(
            matches!(refused, Err(ReviewError::Forbidden { .. })),
            "{refused:?}"
        );
        let refused = export(&q, "S1", &nm, "a file", &log).await;
        assert!(
            matches!(refused, Err(ReviewError::Forbidden { .. })),
            "{refused:?}"
        );
        for blank in [None, Some(""), Some("  \t")] {
            let refused = release(&q, "S1", &dsl, blank, &hop, t, &log).await;
            assert!(
                matches!(refused, Err(ReviewError::NoReason("release"))),
                "{refused:?}"
            );
        }
        assert_eq!(find(&q, "S1").unwrap().state, "held");
        assert_eq!(delivered(&outbox), 0);

        release(&q, "S1", &dsl, Some(" spoke to the parent "), &hop, t, &log)
            .await
            .unwrap();
        let h = find(&q, "S1").unwrap();
        assert_eq!(h.state, "released");
        assert_eq!(h.acted_by.as_deref(), Some("ms.dsl"));
        assert_eq!(h.action_reason.as_deref(), Some("spoke to the parent"));
        assert_eq!(delivered(&outbox), 1);
        let again = release(&q, "S1", &dsl, Some("again"), &hop, t, &log).await;
        assert!(
            matches!(again, Err(ReviewError::AlreadyActed { .. })),
            "{again:?}"
        );
        assert_eq!(delivered(&outbox), 1, "delivered once");

        assert!(export(&q, "S2", &dsl, "a file", &log).await.is_ok());
        delete(&q, "S2", &dsl, "kept as evidence", &log)
            .await
            .unwrap();
        assert_eq!(find(&q, "S2").unwrap().state, "deleted");
        // Its download now says who deleted it and why, and no path on the server.
        match export(&q, "S2", &dsl, "a file", &log).await {
            Err(ReviewError::Deleted { by, reason, .. }) => {
                assert_eq!(by, "ms.dsl");
                assert_eq!(reason, "kept as evidence");
            }
            other => panic!("a deleted message's download: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_sensitive_hold_is_the_network_managers() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::new(dir.path());
        let log = AuditLog::start(Box::new(SqliteBackend::open(dir.path()).unwrap())).unwrap();
        let outbox = dir.path().join("outbox");
        let address = NextHopAddress::parse(&format!("outbox:{}", outbox.display())).unwrap();
        let hop = NextHop::new(&address, None, "gw.test", Duration::from_secs(5)).unwrap();
        let t = Duration::from_secs(5);
        hold(
            &q,
            "A1",
            json!([{"rule": "unencrypted-sensitive-attachment", "attachment": "7B.csv", "detail": "d", "action": "quarantine"}]),
        );
        let dsl = who("ms.dsl", &[Role::Dsl]);
        let nm = who("netman", &[Role::NetworkManager]);
        let refused = release(&q, "A1", &dsl, Some("fine"), &hop, t, &log).await;
        assert!(
            matches!(refused, Err(ReviewError::Forbidden { .. })),
            "{refused:?}"
        );
        assert!(
            export(&q, "A1", &dsl, "a file", &log).await.is_ok(),
            "a DSL may read it"
        );
        for refused in [
            release(&q, "A1", &nm, None, &hop, t, &log).await,
            release(&q, "A1", &nm, Some(&"x".repeat(1_001)), &hop, t, &log).await,
        ] {
            assert!(
                matches!(
                    refused,
                    Err(ReviewError::NoReason("release") | ReviewError::ReasonTooLong { .. })
                ),
                "{refused:?}"
            );
        }
        let refused = delete(&q, "A1", &nm, &"x".repeat(100_000), &log).await;
        let Err(e @ ReviewError::ReasonTooLong { chars: 100_000, .. }) = refused else {
            panic!("{refused:?}");
        };
        assert!(e.to_string().contains("at most 1,000 characters"), "{e}");
        assert_eq!(
            holds::MAX_REASON_CHARS,
            1_000,
            "the message names the limit"
        );
        assert_eq!(find(&q, "A1").unwrap().state, "held", "nothing done");
        assert_eq!(delivered(&outbox), 0);
        release(
            &q,
            "A1",
            &nm,
            Some("the recipient is the county's admissions team"),
            &hop,
            t,
            &log,
        )
        .await
        .unwrap();
        assert_eq!(delivered(&outbox), 1);
    }
}
