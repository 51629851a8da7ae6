//! The audit trail: one record per message and per action, chained by SHA-256.
//!
//! Seed 000: "all mail is filtered and logged. A full audit trail can be made available should
//! this become necessary." Each entry's hash covers its sequence number, the previous entry's
//! hash and the record's stored JSON, so a changed, inserted, deleted or reordered record breaks
//! the chain at that point and [`verify_chain`] names it.
//!
//! All appends in a process go through one writer thread ([`AuditLog`]), and the backend reads
//! the head and chains inside its write transaction ([`Backend::append_chained`]), so neither
//! concurrent SMTP sessions nor another process (the CLI) can fork the chain; the writer commits
//! whatever has queued up meanwhile in one durable transaction (group commit), so a busy gateway
//! pays one fsync for many messages.

use std::sync::mpsc;
use std::thread;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::{Backend, StoreError};

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Most records committed in one transaction.
const MAX_BATCH: usize = 512;

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordKind {
    /// A message the relay received (delivered, deferred, rejected or quarantined).
    Message,
    /// The gateway started.
    Start,
    /// The gateway stopped.
    Stop,
    /// The configuration and directory were reloaded (SIGHUP).
    ConfigReload,
    /// Any other action by a person or the gateway (quarantine release, delete, export, an
    /// audit export, an alert sent, ...): see [`ActionRecord`].
    Action,
    /// Old records were purged under `[audit] retention_days`: see [`PurgeRecord`].
    Purge,
    /// Someone logged in (the web page).
    Login,
    /// A login failed (the web page): the name tried, never the password.
    LoginFailed,
    /// An account was added, removed or had its password or role changed.
    UserChange,
    /// schoolgate found, when it came to write, that the trail no longer ended where its last
    /// commit left it (records cut off or added outside schoolgate). `verify` reports it.
    TamperDetected,
    /// The DSL reviewed a safeguarding case (a flagged message) or reopened it: see
    /// [`CaseReviewRecord`].
    CaseReview,
    /// A client sent again a message already delivered (or held) and recorded, whose 250 it
    /// never heard (the gateway died, or the connection broke, in between): answered 250 with
    /// the original's queue id and NOT delivered (or held) again. Its `message` names the
    /// retry's session and envelope; `detail` names the original's record.
    RetryAnswered,
}

impl RecordKind {
    /// The name it is stored under (as in the record's JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Message => "message",
            RecordKind::Start => "start",
            RecordKind::Stop => "stop",
            RecordKind::ConfigReload => "config-reload",
            RecordKind::Action => "action",
            RecordKind::Purge => "purge",
            RecordKind::Login => "login",
            RecordKind::LoginFailed => "login-failed",
            RecordKind::UserChange => "user-change",
            RecordKind::TamperDetected => "tamper-detected",
            RecordKind::CaseReview => "case-review",
            RecordKind::RetryAnswered => "retry-answered",
        }
    }

    /// Every kind, in the order above.
    pub const ALL: [RecordKind; 12] = [
        RecordKind::Message,
        RecordKind::Start,
        RecordKind::Stop,
        RecordKind::ConfigReload,
        RecordKind::Action,
        RecordKind::Purge,
        RecordKind::Login,
        RecordKind::LoginFailed,
        RecordKind::UserChange,
        RecordKind::TamperDetected,
        RecordKind::CaseReview,
        RecordKind::RetryAnswered,
    ];
}

/// One audit record, as stored (JSON) and exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When it happened: UTC, RFC 3339.
    pub time: String,
    pub kind: RecordKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<MessageRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionRecord>,
    /// What a retention purge removed (kind `purge` only). Absent from every other record, so
    /// records written before it existed hash as they always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge: Option<PurgeRecord>,
    /// A DSL's review or reopening of a case (kind `case-review` only). Absent from every other
    /// record, so records written before it existed hash as they always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_review: Option<CaseReviewRecord>,
}

impl AuditRecord {
    /// A record of `kind` stamped now.
    pub fn now(kind: RecordKind) -> Self {
        AuditRecord {
            time: now_rfc3339(),
            kind,
            message: None,
            action: None,
            purge: None,
            case_review: None,
        }
    }

    /// A message record stamped now.
    pub fn message(message: MessageRecord) -> Self {
        AuditRecord {
            message: Some(message),
            ..Self::now(RecordKind::Message)
        }
    }

    /// An action record stamped now: what `actor` (an account, the OS user, or `schoolgate`
    /// itself) did, in words.
    pub fn action(kind: RecordKind, actor: impl Into<String>, detail: impl Into<String>) -> Self {
        AuditRecord {
            action: Some(ActionRecord {
                actor: actor.into(),
                detail: detail.into(),
            }),
            ..Self::now(kind)
        }
    }
}

impl AuditRecord {
    /// A case-review record stamped now. It also carries the review as an action in words
    /// (actor and detail), so exports and searches that read actions show it too.
    pub fn case_review(review: CaseReviewRecord) -> Self {
        let mut detail = match review.action.as_str() {
            "reopen" => format!("case {} reopened by {}", review.case_seq, review.actor),
            _ => format!(
                "case {} reviewed by {}: outcome {}",
                review.case_seq,
                review.actor,
                review.outcome.as_deref().unwrap_or("none")
            ),
        };
        if let Some(r) = &review.reference {
            detail.push_str(&format!("; reference {r}"));
        }
        if !review.note.is_empty() {
            detail.push_str(&format!("; note: {}", review.note));
        }
        AuditRecord {
            action: Some(ActionRecord {
                actor: review.actor.clone(),
                detail,
            }),
            case_review: Some(review),
            ..Self::now(RecordKind::CaseReview)
        }
    }
}

/// The actor of what the gateway does by itself (starts, reloads, alerts, purges).
pub const GATEWAY: &str = "schoolgate";

/// The current time as the audit trail writes it (UTC, RFC 3339, seconds and microseconds).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Microsecond)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| jiff::Timestamp::now().to_string())
}

/// Everything the trail keeps about one message (never its body).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The client's IP address and port.
    pub client: String,
    /// Our id for the message (in our `Received:` header and logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_id: Option<String>,
    /// How the message came: absent for the SMTP relay, `milter` for the milter (where the mail
    /// server keeps the message and delivers it; schoolgate only decides and edits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The mail server's own queue id (Postfix's `i` macro), on the milter path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mta_queue_id: Option<String>,
    /// In a multi-academy trust, the school the message belonged to (by its envelope sender's
    /// domain); absent for a single school and for mail from no school's domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub school: Option<String>,
    /// The name the client gave in EHLO/HELO.
    pub helo: String,
    /// The TLS protocol and cipher suite, when the session used STARTTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_from: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header_to: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header_cc: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Size in octets as received (after dot-unstuffing, before our `Received:`).
    pub size: u64,
    /// SHA-256 of the message as received.
    pub sha256_received: String,
    /// SHA-256 of the bytes handed to the next hop (with our `Received:`), when it was handed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256_delivered: Option<String>,
    /// What was done about the disclaimer (`appended`, `exempt`, `skipped-signed`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disclaimer: Option<String>,
    /// Anything else worth knowing, in words (a part converted to UTF-8, why a message was
    /// left alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The safeguarding rules that matched, with their evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<FlagRecord>,
    /// What the sensitive-attachment rules found, with masked evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<FindingRecord>,
    /// The message's attachments: name, type, size, SHA-256, encrypted or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentRecord>,
    /// Where the delivered copy of a flagged message is kept (under `storage.state_dir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// What the policy decided: `deliver`, `quarantine` or `reject`.
    pub verdict: String,
    /// What actually happened: `delivered`, `deferred` (4xx to the client), `refused` (the next
    /// hop's 5xx passed back), `rejected` (our own 5xx), `quarantined` (held for review, see
    /// `quarantine_id`), `aborted` (the client went away); on the milter path `accepted`
    /// (handed back to the mail server to deliver, with our edits).
    pub outcome: String,
    /// Why, in words, when the outcome is not `delivered`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The quarantine entry holding the message, when the outcome is `quarantined`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_id: Option<String>,
    /// The next hop as configured (`smtp://…`, `outbox:…`), without credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<String>,
    /// The next hop's reply, which carries its queue id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_reply: Option<String>,
    /// The reply we gave the client.
    pub reply: String,
}

/// A rule that matched a message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlagRecord {
    pub rule: String,
    pub detail: String,
    pub evidence: String,
    /// `flag`, `quarantine` or `reject`.
    pub action: String,
}

/// One attachment of a message (SPEC, "Audit trail").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttachmentRecord {
    pub name: String,
    pub mime_type: String,
    pub size: u64,
    pub sha256: String,
    pub encrypted: bool,
    /// How, when it is encrypted ("AES-256 ZIP").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
}

/// What a sensitive-attachment rule found in one attachment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FindingRecord {
    pub rule: String,
    pub attachment: String,
    /// Which attachment: its 1-based place in the message's attachments as the scan lists them
    /// (absent from records written before it existed, and for the message as a whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<usize>,
    pub detail: String,
    /// Detector name and its count of distinct values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detectors: Vec<(String, usize)>,
    /// Where and a masked sample: "detector at location: sample".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// `flag`, `quarantine` or `reject`.
    pub action: String,
}

/// What a DSL did to a safeguarding case: reviewed it (with an outcome) or reopened it.
///
/// A case is one flagged message, named by `case_seq`, the audit seq of its message record.
/// Its state is `reviewed` when its latest case-review record has action `review`, else `new`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseReviewRecord {
    /// The audit seq of the message record that carries the flags.
    pub case_seq: u64,
    /// `review` or `reopen`.
    pub action: String,
    /// For a review: `no-concern`, `low-level-concern`, `concern-logged`, `referred`,
    /// `allegation-managed` or `other`. `None` for a reopen.
    pub outcome: Option<String>,
    /// The DSL's note (why, what was done; why it was reopened).
    pub note: String,
    /// The school's CPOMS or MyConcern incident number, when there is one.
    pub reference: Option<String>,
    /// The account that reviewed or reopened it.
    pub actor: String,
}

/// A person's or the gateway's own action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// Who did it: a user name, or `schoolgate` for the gateway itself.
    pub actor: String,
    /// What was done, in words.
    pub detail: String,
}

/// What a retention purge removed: records `first_seq..=last_seq`, all older than `before`.
///
/// `last_hash` is the hash of the last record removed, which the record after it still links to
/// (`prev_hash`): it stands for everything removed, so the chain from `last_seq + 1` on stays
/// verifiable. The purge record itself is chained like any other, so this anchor cannot be
/// changed without breaking the chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeRecord {
    pub first_seq: u64,
    pub last_seq: u64,
    /// The hash of record `last_seq`.
    pub last_hash: String,
    /// How many records were removed.
    pub records: u64,
    /// The time of the oldest and newest record removed.
    pub oldest: String,
    pub newest: String,
    /// Records older than this (UTC, RFC 3339) were due.
    pub before: String,
    pub retention_days: u32,
}

/// The newest entry of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: String,
}

/// A record in its place in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// 1 for the first record, then consecutive.
    pub seq: u64,
    pub prev_hash: String,
    pub hash: String,
    /// The record's JSON exactly as stored and hashed.
    pub record_json: String,
}

impl AuditEntry {
    /// Chains `record` after `prev`.
    pub fn chain(prev: Option<&ChainHead>, record: &AuditRecord) -> Self {
        let (seq, prev_hash) = match prev {
            Some(head) => (head.seq + 1, head.hash.clone()),
            None => (1, GENESIS_HASH.to_string()),
        };
        // Serialising our own plain structs cannot fail; an empty object would still be chained.
        let record_json = serde_json::to_string(record).unwrap_or_else(|_| "{}".to_string());
        let hash = entry_hash(seq, &prev_hash, &record_json);
        AuditEntry {
            seq,
            prev_hash,
            hash,
            record_json,
        }
    }

    /// The record, parsed from its stored JSON.
    pub fn record(&self) -> Result<AuditRecord, StoreError> {
        serde_json::from_str(&self.record_json).map_err(|source| StoreError::BadRecord {
            seq: self.seq,
            source,
        })
    }
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Which message a relay's record answered for: SHA-256 over the envelope sender, each
/// recipient in order and the SHA-256 of the message as the client sent it (before our
/// `Received:` header and any change). A client's retry of a message whose 250 it never heard
/// has the same identity; a message written again by a person has another Message-ID and
/// `Date:`, so another identity. Built from fields every message record keeps, so the record
/// itself says which message it was.
pub fn message_identity(mail_from: &str, rcpt_to: &[String], sha256_received: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"schoolgate message identity 1\0");
    h.update(mail_from.as_bytes());
    for r in rcpt_to {
        h.update(b"\0");
        h.update(r.as_bytes());
    }
    h.update(b"\0\0");
    h.update(sha256_received.as_bytes());
    hex::encode(h.finalize())
}

/// A message the relay answered 250 for, delivered or held, as its record remembers it: a
/// retry of it is answered from this, not delivered or held again ([`crate::store::answered`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnsweredMessage {
    /// [`message_identity`].
    pub identity: String,
    /// The queue id the client was told.
    pub queue_id: String,
    /// `delivered` or `quarantined`.
    pub outcome: String,
    /// The quarantine entry of a held message.
    pub quarantine_id: Option<String>,
}

/// The message `record` answered 250 for, when it is the relay's record of a message it
/// delivered or held (the milter's messages are the mail server's to deliver and retry).
pub fn answered_by(record: &AuditRecord) -> Option<AnsweredMessage> {
    let m = record.message.as_ref()?;
    let answered = record.kind == RecordKind::Message
        && m.path.is_none()
        && (m.outcome == "delivered" || m.outcome == "quarantined")
        && m.reply.starts_with("250");
    if !answered || m.sha256_received.is_empty() {
        return None;
    }
    Some(AnsweredMessage {
        identity: message_identity(&m.mail_from, &m.rcpt_to, &m.sha256_received),
        queue_id: m.queue_id.clone()?,
        outcome: m.outcome.clone(),
        quarantine_id: m.quarantine_id.clone(),
    })
}

/// Chains `records` one after another, the first after `head`.
pub fn chain_all(mut head: Option<ChainHead>, records: &[&AuditRecord]) -> Vec<AuditEntry> {
    let mut entries = Vec::with_capacity(records.len());
    for record in records {
        let entry = AuditEntry::chain(head.as_ref(), record);
        head = Some(ChainHead {
            seq: entry.seq,
            hash: entry.hash.clone(),
        });
        entries.push(entry);
    }
    entries
}

/// `SHA-256(seq "\n" prev_hash "\n" record_json)`, lower-case hex.
pub fn entry_hash(seq: u64, prev_hash: &str, record_json: &str) -> String {
    let mut h = Sha256::new();
    h.update(seq.to_string().as_bytes());
    h.update(b"\n");
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(record_json.as_bytes());
    hex::encode(h.finalize())
}

/// Walks the whole chain: see [`verify`]. Returns the head (or `None` for an empty trail), or
/// the first broken record.
pub fn verify_chain(backend: &mut dyn Backend) -> Result<Option<ChainHead>, StoreError> {
    Ok(verify(backend, &[])?.head)
}

/// A checkpoint: the head of the chain (its sequence number and hash) at some moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: String,
    /// When it was taken (UTC, RFC 3339), or where it came from.
    pub time: String,
}

/// What the database keeps about the chain beside the records themselves.
#[derive(Debug, Clone, Default)]
pub struct Marks {
    /// The head as of the last commit schoolgate made (updated in the same transaction).
    pub head: Option<ChainHead>,
    /// Checkpoints taken by the gateway (every `[audit] checkpoint_interval`, at start and stop),
    /// oldest first.
    pub checkpoints: Vec<Checkpoint>,
    /// The newest purge record, if any.
    pub last_purge: Option<AuditEntry>,
}

/// What the database keeps beside one record to find it by (see [`Backend::search_columns`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchColumns {
    pub seq: u64,
    pub time: String,
    pub kind: String,
    pub keys: std::collections::BTreeSet<String>,
    /// The envelope sender and outcome of a message record (`None` for other records).
    pub mail_from: Option<String>,
    pub outcome: Option<String>,
}

/// What a successful [`verify`] found.
#[derive(Debug, Clone, Default)]
pub struct Verified {
    /// The newest record, or `None` for an empty trail.
    pub head: Option<ChainHead>,
    /// The oldest record kept (1 unless older records were purged).
    pub first_seq: u64,
    /// How many records were checked.
    pub records: u64,
    /// The purge that removed the records before `first_seq`.
    pub purged: Option<PurgeRecord>,
    /// How many checkpoints (the database's and those given) were matched.
    pub checkpoints: usize,
}

fn broken(seq: u64, reason: String) -> StoreError {
    StoreError::ChainBroken { seq, reason }
}

/// Walks the whole chain from the oldest record kept: every hash must match its content, every
/// link its predecessor, the oldest record must be the first ever written or follow the last
/// purge exactly, every checkpoint (the database's and `expected`, e.g. from the journal or the
/// DSL's mail) must match the record at its place, and the chain must reach the head the last
/// commit recorded and every checkpoint; so a record that was changed, inserted, deleted,
/// reordered, or cut off the end is found and named.
pub fn verify(backend: &mut dyn Backend, expected: &[Checkpoint]) -> Result<Verified, StoreError> {
    backend.begin_read()?;
    let result = verify_snapshot(backend, expected);
    let ended = backend.end_read();
    let verified = result?;
    ended?;
    Ok(verified)
}

fn verify_snapshot(
    backend: &mut dyn Backend,
    expected: &[Checkpoint],
) -> Result<Verified, StoreError> {
    let marks = backend.marks()?;
    let mut checkpoints: Vec<(Checkpoint, &str)> = marks
        .checkpoints
        .iter()
        .map(|c| (c.clone(), "the checkpoint of"))
        .chain(expected.iter().map(|c| (c.clone(), "the checkpoint given")))
        .collect();
    if let Some(h) = &marks.head {
        checkpoints.push((
            Checkpoint {
                seq: h.seq,
                hash: h.hash.clone(),
                time: "the last commit".into(),
            },
            "the head recorded at",
        ));
    }
    checkpoints.sort_by_key(|(c, _)| c.seq);
    let purged = match &marks.last_purge {
        Some(entry) => {
            let record = entry.record()?;
            match record.purge {
                Some(p) if record.kind == RecordKind::Purge => Some((entry.seq, p)),
                _ => {
                    return Err(broken(
                        entry.seq,
                        "it is stored as a purge record but does not hold one (the record was changed)".into(),
                    ));
                }
            }
        }
        None => None,
    };

    let mut prev: Option<ChainHead> = None;
    let mut first_seq = 0;
    let mut records = 0u64;
    let mut matched = 0usize;
    let mut cps = checkpoints.iter().peekable();
    loop {
        let from = prev.as_ref().map_or(1, |h| h.seq + 1);
        let batch = backend.read_from(from, 4096)?;
        let (Some(lo), Some(hi)) = (batch.first(), batch.last()) else {
            break;
        };
        let mut columns = backend
            .search_columns((lo.seq, hi.seq))?
            .map(|c| c.into_iter().peekable());
        for entry in batch {
            match &prev {
                None => {
                    first_seq = entry.seq;
                    check_start(&entry, purged.as_ref())?;
                }
                Some(h) => {
                    let want_seq = h.seq + 1;
                    if entry.seq != want_seq {
                        let reason = if entry.seq == want_seq + 1 {
                            format!(
                                "record {want_seq} is missing (deleted); the next record found is {}",
                                entry.seq
                            )
                        } else {
                            format!(
                                "records {want_seq} to {} are missing (deleted); the next record found is {}",
                                entry.seq - 1,
                                entry.seq
                            )
                        };
                        return Err(broken(want_seq, reason));
                    }
                    if entry.prev_hash != h.hash {
                        return Err(broken(entry.seq, misplaced(&entry).unwrap_or_else(|| format!(
                            "its link to record {} does not match that record's hash (a record was inserted, deleted or reordered here)",
                            h.seq
                        ))));
                    }
                }
            }
            if let Some((_, p)) = &purged
                && entry.seq == p.last_seq + 1
                && entry.prev_hash != p.last_hash
            {
                return Err(broken(
                    entry.seq,
                    format!(
                        "its link to record {} does not match the hash the purge kept of it (the records before it were changed)",
                        p.last_seq
                    ),
                ));
            }
            if entry_hash(entry.seq, &entry.prev_hash, &entry.record_json) != entry.hash {
                return Err(broken(
                    entry.seq,
                    misplaced(&entry).unwrap_or_else(|| {
                        "its content does not match its hash (the record was changed)".into()
                    }),
                ));
            }
            if is_tamper_notice(&entry) {
                let detail = entry.record()?.action.map(|a| a.detail).unwrap_or_default();
                return Err(broken(
                    entry.seq,
                    format!(
                        "schoolgate found the trail tampered with when it wrote this record: {detail}"
                    ),
                ));
            }
            if let Some(columns) = columns.as_mut() {
                check_search_columns(&entry, columns)?;
            }
            while let Some((cp, what)) = cps.peek() {
                if cp.seq > entry.seq {
                    break;
                }
                if cp.seq == entry.seq {
                    if cp.hash != entry.hash {
                        return Err(broken(
                            entry.seq,
                            format!(
                                "it does not match {what} {} (record {} had hash {}): the trail was rewritten from here on",
                                cp.time, cp.seq, cp.hash
                            ),
                        ));
                    }
                    matched += 1;
                }
                // Checkpoints before the oldest record kept were purged with it.
                cps.next();
            }
            records += 1;
            prev = Some(ChainHead {
                seq: entry.seq,
                hash: entry.hash,
            });
        }
    }
    let last = prev.as_ref().map_or(0, |h| h.seq);
    if let Some((cp, what)) = checkpoints.iter().rev().find(|(c, _)| c.seq > last) {
        let missing = last + 1;
        let reason = if last == 0 {
            format!(
                "the trail is empty, but {what} {} counted {} records (head {}): every record was deleted",
                cp.time, cp.seq, cp.hash
            )
        } else {
            format!(
                "the trail ends at record {last}, but {what} {} counted {} records (head {}): records {missing} to {} were deleted (the tail was cut off)",
                cp.time, cp.seq, cp.hash, cp.seq
            )
        };
        return Err(broken(missing, reason));
    }
    if let Some(h) = &marks.head
        && h.seq < last
    {
        return Err(broken(
            h.seq + 1,
            format!(
                "records {} to {last} were added outside schoolgate (its last commit ended at record {})",
                h.seq + 1,
                h.seq
            ),
        ));
    }
    Ok(Verified {
        head: prev,
        first_seq,
        records,
        purged: purged.map(|(_, p)| p),
        checkpoints: matched,
    })
}

/// The columns a record is searched by (time, kind, export keys) must say what its hashed
/// content says: otherwise an export by date, person or rule would silently leave it out.
fn check_search_columns(
    entry: &AuditEntry,
    columns: &mut std::iter::Peekable<std::vec::IntoIter<SearchColumns>>,
) -> Result<(), StoreError> {
    let record: Searchable<'_> =
        serde_json::from_str(&entry.record_json).map_err(|source| StoreError::BadRecord {
            seq: entry.seq,
            source,
        })?;
    let c = match columns.peek() {
        Some(c) if c.seq == entry.seq => columns.next().unwrap_or_default(),
        _ => SearchColumns::default(),
    };
    let index = |what: String| {
        broken(
            entry.seq,
            format!(
                "its search columns were changed: {what}; exports by date, person or rule would get it wrong (the record itself is intact)"
            ),
        )
    };
    if c.time != record.time {
        return Err(index(format!(
            "its time column says {:?} but the record says {:?}",
            c.time, record.time
        )));
    }
    if c.kind != record.kind {
        return Err(index(format!(
            "its kind column says {:?} but the record is {:?}",
            c.kind, record.kind
        )));
    }
    let m = record.message.as_ref();
    // Every column beside the record must say what the record says, or an edit there (a
    // sender or an outcome changed in the table) would go unnoticed by anything reading it.
    let (mail_from, outcome) = match m {
        Some(m) => (Some(m.mail_from.as_ref()), m.outcome.as_deref()),
        None => (None, None),
    };
    let column = |what: String| {
        broken(
            entry.seq,
            format!(
                "a column kept beside it was changed: {what}; whatever reads the table would get it wrong (the record itself is intact)"
            ),
        )
    };
    if c.mail_from.as_deref() != mail_from {
        return Err(column(format!(
            "its mail_from column says {} but the record says {}",
            shown(c.mail_from.as_deref()),
            shown(mail_from)
        )));
    }
    if c.outcome.as_deref() != outcome {
        return Err(column(format!(
            "its outcome column says {} but the record says {}",
            shown(c.outcome.as_deref()),
            shown(outcome)
        )));
    }
    let want = keys_of(
        m.into_iter().flat_map(|m| {
            std::iter::once(m.mail_from.as_ref())
                .chain(m.rcpt_to.iter().map(AsRef::as_ref))
                .chain(m.header_from.as_deref())
                .chain(m.header_to.iter().map(AsRef::as_ref))
                .chain(m.header_cc.iter().map(AsRef::as_ref))
        }),
        m.into_iter().flat_map(|m| {
            m.flags
                .iter()
                .map(|f| f.rule.as_ref())
                .chain(m.findings.iter().map(|f| f.rule.as_ref()))
        }),
        record.action.as_ref().map(|a| a.detail.as_ref()),
    );
    if want != c.keys {
        if let Some(k) = want.difference(&c.keys).next() {
            return Err(index(format!("the export index lacks {k}")));
        }
        if let Some(k) = c.keys.difference(&want).next() {
            return Err(index(format!(
                "the export index lists it under {k}, which it does not involve"
            )));
        }
    }
    Ok(())
}

/// A column's value in a verify message: quoted, with control characters escaped (a changed
/// column may hold anything), or "nothing" for NULL.
fn shown(v: Option<&str>) -> String {
    v.map_or_else(|| "nothing".to_string(), |v| format!("{v:?}"))
}

/// The oldest record kept must be the first ever written, or lie in (or just after) the range
/// the last purge removed.
fn check_start(entry: &AuditEntry, purged: Option<&(u64, PurgeRecord)>) -> Result<(), StoreError> {
    if entry.seq == 1 {
        if entry.prev_hash != GENESIS_HASH {
            return Err(broken(
                1,
                "the first record does not start the chain (a record was inserted before it)"
                    .into(),
            ));
        }
        return Ok(());
    }
    match purged {
        None => Err(broken(
            1,
            if entry.seq == 2 {
                "record 1 is missing (deleted) and no purge record accounts for it".into()
            } else {
                format!(
                    "records 1 to {} are missing (deleted): the trail starts at record {} and no purge record accounts for them",
                    entry.seq - 1,
                    entry.seq
                )
            },
        )),
        Some((pseq, p)) if entry.seq < p.first_seq || entry.seq > p.last_seq + 1 => Err(broken(
            p.last_seq + 1,
            format!(
                "the trail starts at record {}, but the last purge (record {pseq}) removed records {} to {}: {}",
                entry.seq,
                p.first_seq,
                p.last_seq,
                if entry.seq == p.last_seq + 2 {
                    format!("record {} is missing (deleted)", p.last_seq + 1)
                } else if entry.seq > p.last_seq + 1 {
                    format!(
                        "records {} to {} are missing (deleted)",
                        p.last_seq + 1,
                        entry.seq - 1
                    )
                } else {
                    "older records were put back".into()
                }
            ),
        )),
        // A purge interrupted part-way leaves some of its range; the walk reaches the anchor.
        Some(_) => Ok(()),
    }
}

/// Whether `entry` is a [`RecordKind::TamperDetected`] record. The record's JSON starts with
/// its time (no quotes inside) and then its kind, so the first `"kind":` is the record's own,
/// never one a sender wrote into a subject.
fn is_tamper_notice(entry: &AuditEntry) -> bool {
    let json = &entry.record_json;
    json.find("\"kind\":")
        .is_some_and(|i| json[i..].starts_with("\"kind\":\"tamper-detected\""))
}

/// Whether `entry` is a whole entry from another place in the chain (its hash matches its
/// content under a nearby sequence number): records moved, swapped or renumbered.
fn misplaced(entry: &AuditEntry) -> Option<String> {
    let lo = entry.seq.saturating_sub(256).max(1);
    let hi = entry.seq.saturating_add(256);
    (lo..=hi)
        .filter(|&s| s != entry.seq)
        .find(|&s| entry_hash(s, &entry.prev_hash, &entry.record_json) == entry.hash)
        .map(|s| {
            format!(
                "it holds the entry written as record {s} (records were reordered or renumbered)"
            )
        })
}

/// The keys a record is found by in an export: `a:ADDRESS` for every address in its envelope
/// and headers (or in an action's words), `r:RULE` for every rule that matched it.
pub fn index_keys(record: &AuditRecord) -> std::collections::BTreeSet<String> {
    let m = record.message.as_ref();
    keys_of(
        m.into_iter().flat_map(|m| {
            std::iter::once(m.mail_from.as_str())
                .chain(m.rcpt_to.iter().map(String::as_str))
                .chain(m.header_from.as_deref())
                .chain(m.header_to.iter().map(String::as_str))
                .chain(m.header_cc.iter().map(String::as_str))
        }),
        m.into_iter().flat_map(|m| {
            m.flags
                .iter()
                .map(|f| f.rule.as_str())
                .chain(m.findings.iter().map(|f| f.rule.as_str()))
        }),
        record.action.as_ref().map(|a| a.detail.as_str()),
    )
}

/// The keys of a record with these address fields, rules and action words.
fn keys_of<'a>(
    addresses: impl Iterator<Item = &'a str>,
    rules: impl Iterator<Item = &'a str>,
    action: Option<&'a str>,
) -> std::collections::BTreeSet<String> {
    let mut keys = std::collections::BTreeSet::new();
    for field in addresses.chain(action) {
        for a in addresses_in(field) {
            keys.insert(format!("a:{a}"));
        }
    }
    for rule in rules {
        keys.insert(format!("r:{rule}"));
    }
    keys
}

/// Only what a record is searched by, borrowed from its JSON where it can be: `verify` reads
/// this for every record, and a full [`AuditRecord`] costs three times as much.
#[derive(Deserialize)]
struct Searchable<'a> {
    #[serde(borrow)]
    time: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    message: Option<SearchableMessage<'a>>,
    #[serde(default, borrow)]
    action: Option<SearchableAction<'a>>,
}

#[derive(Deserialize)]
struct SearchableMessage<'a> {
    #[serde(borrow)]
    mail_from: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    outcome: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    rcpt_to: Vec<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    header_from: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    header_to: Vec<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    header_cc: Vec<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    flags: Vec<SearchableRule<'a>>,
    #[serde(default, borrow)]
    findings: Vec<SearchableRule<'a>>,
}

#[derive(Deserialize)]
struct SearchableRule<'a> {
    #[serde(borrow)]
    rule: std::borrow::Cow<'a, str>,
}

#[derive(Deserialize)]
struct SearchableAction<'a> {
    #[serde(borrow)]
    detail: std::borrow::Cow<'a, str>,
}

/// The mail addresses in `text` (`local@domain`, lower case): a bare address, `Name <addr>`, or
/// addresses among other words.
pub fn addresses_in(text: &str) -> Vec<String> {
    let stop = |c: char| c.is_whitespace() || "<>,;:\"()[]'`".contains(c);
    let mut out = Vec::new();
    for (at, _) in text.match_indices('@') {
        let start = text[..at]
            .char_indices()
            .rev()
            .find(|&(_, c)| stop(c))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let end = text[at + 1..]
            .char_indices()
            .find(|&(_, c)| stop(c))
            .map_or(text.len(), |(i, _)| at + 1 + i);
        let local = &text[start..at];
        let domain = text[at + 1..end].trim_end_matches('.');
        if !local.is_empty() && !domain.is_empty() && !domain.contains('@') {
            let a = format!("{local}@{domain}").to_lowercase();
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}

struct Job {
    record: AuditRecord,
    done: oneshot::Sender<Result<AuditEntry, String>>,
}

/// The handle every session shares to append to the audit trail.
///
/// Cloning is cheap. [`AuditLog::append`] returns only when the record is durable.
#[derive(Clone)]
pub struct AuditLog {
    jobs: mpsc::Sender<Job>,
}

impl AuditLog {
    /// Starts the writer thread over `backend`.
    pub fn start(mut backend: Box<dyn Backend>) -> Result<Self, StoreError> {
        // Fails early on a database that cannot be read.
        backend.head()?;
        let (jobs, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer(backend, rx))
            .map_err(|_| StoreError::WriterGone)?;
        Ok(AuditLog { jobs })
    }

    /// Appends `record`; resolves once it is durable, with its place in the chain.
    pub async fn append(&self, record: AuditRecord) -> Result<AuditEntry, StoreError> {
        let (done, wait) = oneshot::channel();
        self.jobs
            .send(Job { record, done })
            .map_err(|_| StoreError::WriterGone)?;
        match wait.await {
            Ok(Ok(entry)) => Ok(entry),
            Ok(Err(reason)) => Err(StoreError::WriteFailed(reason)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }

    /// [`AuditLog::append`] for code outside the async runtime (the CLI).
    pub fn append_blocking(&self, record: AuditRecord) -> Result<AuditEntry, StoreError> {
        let (done, wait) = oneshot::channel();
        self.jobs
            .send(Job { record, done })
            .map_err(|_| StoreError::WriterGone)?;
        match wait.blocking_recv() {
            Ok(Ok(entry)) => Ok(entry),
            Ok(Err(reason)) => Err(StoreError::WriteFailed(reason)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }
}

/// Waits for the first job on `rx`, then takes whatever else is already waiting, up to `max`
/// in all: the group a batching thread (the audit writer, the retry look-up) serves at once.
/// `None` once every sender is gone.
pub(crate) fn next_batch<T>(rx: &mpsc::Receiver<T>, max: usize) -> Option<Vec<T>> {
    let mut batch = vec![rx.recv().ok()?];
    while batch.len() < max {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

fn writer(mut backend: Box<dyn Backend>, rx: mpsc::Receiver<Job>) {
    // Each batch is a group commit. The head is not trusted from memory: the backend reads it
    // (or, on PostgreSQL, checks the one it last wrote) inside its write transaction, so another
    // process appending to the same database cannot fork the chain.
    while let Some(jobs) = next_batch(&rx, MAX_BATCH) {
        let records: Vec<&AuditRecord> = jobs.iter().map(|j| &j.record).collect();
        let written = backend.append_chained(&records);
        drop(records);
        match written {
            Ok(entries) => {
                for (job, entry) in jobs.into_iter().zip(entries) {
                    let _ = job.done.send(Ok(entry));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = jobs.len(), "audit write failed");
                let reason = format!("audit write failed: {e}");
                for job in jobs {
                    let _ = job.done.send(Err(reason.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_stored_under_their_json_names() {
        for kind in RecordKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }

    #[test]
    fn addresses_are_found_in_headers_and_words() {
        assert_eq!(
            addresses_in("Tom Baker <T.Baker@Example-Academy.sch.uk>"),
            ["t.baker@example-academy.sch.uk"]
        );
        assert_eq!(
            addresses_in("release q1 by netman: a@b.uk to c@d.uk, a@b.uk."),
            ["a@b.uk", "c@d.uk"]
        );
        assert!(addresses_in("no address @ all").is_empty());
    }

    #[test]
    fn a_record_written_before_purges_existed_hashes_as_before() {
        // A record as the first schoolgate wrote it: no `purge` key appears.
        let r = AuditRecord {
            time: "2026-01-01T00:00:00Z".into(),
            ..AuditRecord::action(RecordKind::Stop, GATEWAY, "stopped cleanly")
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"time":"2026-01-01T00:00:00Z","kind":"stop","action":{"actor":"schoolgate","detail":"stopped cleanly"}}"#
        );
    }

    #[test]
    fn a_case_review_is_stored_under_its_fixed_json_shape() {
        let r = AuditRecord::case_review(CaseReviewRecord {
            case_seq: 7,
            action: "review".into(),
            outcome: Some("no-concern".into()),
            note: "spoke to the teacher".into(),
            reference: Some("CPOMS-12".into()),
            actor: "dsl".into(),
        });
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["kind"], "case-review");
        assert_eq!(
            v["case_review"],
            serde_json::json!({"case_seq": 7, "action": "review", "outcome": "no-concern",
                "note": "spoke to the teacher", "reference": "CPOMS-12", "actor": "dsl"})
        );
        assert_eq!(v["action"]["actor"], "dsl");
        let back: AuditRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }
}
