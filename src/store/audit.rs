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
    /// Any other action by a person (release, delete, login, ...): see [`ActionRecord`].
    Action,
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
        }
    }
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
}

impl AuditRecord {
    /// A record of `kind` stamped now.
    pub fn now(kind: RecordKind) -> Self {
        AuditRecord {
            time: now_rfc3339(),
            kind,
            message: None,
            action: None,
        }
    }

    /// A message record stamped now.
    pub fn message(message: MessageRecord) -> Self {
        AuditRecord {
            message: Some(message),
            ..Self::now(RecordKind::Message)
        }
    }

    /// An action record stamped now.
    pub fn action(kind: RecordKind, action: ActionRecord) -> Self {
        AuditRecord {
            action: Some(action),
            ..Self::now(kind)
        }
    }
}

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

/// What a sensitive-attachment rule found in one attachment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FindingRecord {
    pub rule: String,
    pub attachment: String,
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

/// A person's or the gateway's own action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// Who did it: a user name, or `schoolgate` for the gateway itself.
    pub actor: String,
    /// What was done, in words.
    pub detail: String,
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

/// Walks the whole chain from the first record: every hash must match its content and every link
/// its predecessor. Returns the head (or `None` for an empty trail), or the first broken record.
pub fn verify_chain(backend: &mut dyn Backend) -> Result<Option<ChainHead>, StoreError> {
    let mut prev: Option<ChainHead> = None;
    loop {
        let from = prev.as_ref().map_or(1, |h| h.seq + 1);
        let batch = backend.read_from(from, 4096)?;
        if batch.is_empty() {
            return Ok(prev);
        }
        for entry in batch {
            let (want_seq, want_prev) = match &prev {
                Some(h) => (h.seq + 1, h.hash.as_str()),
                None => (1, GENESIS_HASH),
            };
            if entry.seq != want_seq {
                return Err(StoreError::ChainBroken {
                    seq: want_seq,
                    reason: format!("record {want_seq} is missing (next found is {})", entry.seq),
                });
            }
            if entry.prev_hash != want_prev {
                return Err(StoreError::ChainBroken {
                    seq: entry.seq,
                    reason: "its link to the previous record does not match (a record was inserted, deleted or reordered)".into(),
                });
            }
            if entry_hash(entry.seq, &entry.prev_hash, &entry.record_json) != entry.hash {
                return Err(StoreError::ChainBroken {
                    seq: entry.seq,
                    reason: "its content does not match its hash (the record was changed)".into(),
                });
            }
            prev = Some(ChainHead {
                seq: entry.seq,
                hash: entry.hash,
            });
        }
    }
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

fn writer(mut backend: Box<dyn Backend>, rx: mpsc::Receiver<Job>) {
    // Blocks for the first job, then takes whatever else is already waiting: that is the group.
    // The head is not cached here: the backend reads it inside its write transaction, so another
    // process appending to the same database cannot fork the chain.
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
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
        for kind in [
            RecordKind::Message,
            RecordKind::Start,
            RecordKind::Stop,
            RecordKind::ConfigReload,
            RecordKind::Action,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }
}
