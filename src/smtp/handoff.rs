//! From a received message to the client's reply: decide, deliver, record.
//!
//! The order is the promise (SPEC, "Nothing is lost"): the policy decides; the next hop accepts
//! (or refuses); the audit record is made durable; and only then does the client hear the
//! reply. A 250 therefore always means "delivered and recorded". If recording fails after the
//! next hop accepted, the client is told to try again (451) rather than told a half-truth: its
//! retry reaches the outbox as the same message (see [`delivery_key`]) and is recorded then.
//! A message the policy quarantines is written durably to the quarantine before its audit
//! record, and the client hears 250 ("held for review") only after both. A retry of a message
//! already answered 250 and recorded is answered again without delivering or holding it twice
//! (`super::retry`).

use std::net::SocketAddr;

use sha2::{Digest, Sha256};

use super::next_hop::DeliveryError;
use super::server::Relay;
use crate::alerts::{self, Flagged, HeldAttachment, Notice};
use crate::envelope::Envelope;
use crate::policy::{self, Verdict};
use crate::store::quarantine::{NewHeld, Quarantine};
use crate::store::{AttachmentRecord, AuditRecord, FindingRecord, FlagRecord, MessageRecord};

/// A message read to its end, with what we know of the session it came in.
pub struct Received {
    pub client: SocketAddr,
    pub helo: String,
    pub tls: Option<String>,
    pub envelope: Envelope,
    pub queue_id: String,
    /// Length of our `Received:` header at the front of `message`.
    pub trace_len: usize,
    /// Our `Received:` header followed by the message exactly as the client sent it.
    pub message: Vec<u8>,
}

impl Received {
    /// The message as the client sent it.
    pub fn original(&self) -> &[u8] {
        self.message.get(self.trace_len..).unwrap_or_default()
    }
}

/// The last changes before the message leaves, after every rewrite: the
/// `X-Schoolgate-Processed` stamp (`relay.processed_header`, when not already there), then
/// the DKIM signature and ARC set (`[dkim]`, when a key covers the `From:` domain). A
/// signature that cannot be made is logged and noted in the audit record; the message still
/// leaves, unsigned by us.
fn leaving(
    config: &crate::config::Config,
    hop: &super::next_hop::NextHop,
    queue_id: &str,
    mut outgoing: Vec<u8>,
    incoming: Option<&crate::dkim::Incoming>,
    record: &mut MessageRecord,
) -> Vec<u8> {
    if config.relay.processed_header {
        let header = crate::mime::header::parse(&outgoing, 0, outgoing.len());
        if header.field(crate::config::PROCESSED_HEADER).is_none() {
            let stamp = format!(
                "{}: {}\r\n",
                crate::config::PROCESSED_HEADER,
                config.relay.hostname
            );
            outgoing.splice(0..0, stamp.into_bytes());
        }
    }
    let Some(signing) = hop.signing() else {
        return outgoing;
    };
    match signing.sign(&outgoing, incoming) {
        Ok(None) => outgoing,
        Ok(Some(signed)) => {
            record.notes.push(format!(
                "DKIM-signed d={} s={}{}",
                signed.domain,
                signed.selector,
                match incoming {
                    Some(i) if signed.arc => format!("; ARC set added ({})", i.results()),
                    _ => String::new(),
                }
            ));
            let mut out = signed.headers;
            out.extend_from_slice(&outgoing);
            out
        }
        Err(e) => {
            tracing::error!(queue_id = %queue_id, error = %e, "not DKIM-signed");
            record.notes.push(format!("not DKIM-signed: {e}"));
            outgoing
        }
    }
}

/// Identifies a message as received: the same envelope and bytes give the same key, so a
/// client's retry of a message whose 250 it never heard is recognised by the outbox and the
/// quarantine. It is the message's identity ([`crate::store::audit::message_identity`]), made
/// from the SHA-256 of the bytes that `hand_off` has already worked out (`sha256_received`),
/// so the message is not hashed again for it.
pub fn delivery_key(envelope: &Envelope, sha256_received: &str) -> String {
    crate::store::audit::message_identity(&envelope.mail_from, &envelope.rcpt_to, sha256_received)
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Decides, delivers and records `received`; returns the reply for the client.
pub async fn hand_off(relay: &Relay, received: Received) -> String {
    // A trust's school by the envelope sender's domain: its policy and directory.
    let (config, directory) = relay.for_sender(&received.envelope.mail_from);
    // A retry of a message already delivered or held and recorded (its 250 lost on the way):
    // answered from its record, not delivered or held again (`super::retry`).
    // The message's SHA-256, once: its identity for the retry check and its audit record.
    let sha256_received = sha256_hex(received.original());
    // The message's identity (envelope and that SHA-256): what the retry check looks up, and
    // the outbox's and the quarantine's key for it.
    let key = delivery_key(&received.envelope, &sha256_received);
    if let Some(reply) =
        super::retry::answer_a_retry(relay, &config, &received, &sha256_received, &key).await
    {
        return reply;
    }
    let now = jiff::Timestamp::now();
    // The policy opens attachments (up to `max_scan_time`): on a blocking thread, so the
    // sessions sharing this worker are not held up. The message moves there and back, uncopied.
    // At most `max_parallel_scans` checks run at once: the others wait here for a turn.
    // A small message of text only is checked here: reading its body takes tens of
    // microseconds, less than the hand-over to another thread and back.
    let decided = if received.original().len() <= CHECKED_IN_PLACE
        && policy::sensitive::text_only(received.original())
    {
        // As on a blocking thread, a panic costs the client a 451, not its session.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check(&received, &config, &directory, now)
        })) {
            Ok(decision) => Ok((received, decision)),
            Err(_) => {
                tracing::error!("the policy could not run");
                return "451 4.3.0 Policy check failed, try again later".into();
            }
        }
    } else {
        let permit = relay.scan_permit().await;
        let (config, directory) = (config.clone(), directory.clone());
        tokio::task::spawn_blocking(move || {
            let decision = check(&received, &config, &directory, now);
            drop(permit);
            (received, decision)
        })
        .await
    };
    let (mut received, mut decision) = match decided {
        Ok(pair) => pair,
        Err(e) => {
            // evaluate contains its own panics; this is the runtime failing. Nothing was
            // accepted: the client keeps the message and retries.
            tracing::error!(error = %e, "the policy could not run");
            return "451 4.3.0 Policy check failed, try again later".into();
        }
    };
    let original = received.original();
    let size = original.len();
    let hop = relay.next_hop();
    let mut record = base_record(&received, original, sha256_received, &decision.summary);
    record_decision(&mut record, &decision);
    record.school = config.trust_school.clone();
    // With `[dkim] arc = true`: what the incoming signatures say, before the rewrite (DNS).
    let incoming = match (hop.signing(), decision.verdict) {
        (Some(signing), Verdict::Deliver | Verdict::Quarantine) if signing.arc() => {
            signing
                .verify_incoming(original, received.client.ip())
                .await
        }
        _ => None,
    };

    // The quarantine entry this message is held as (for the sender notice).
    let mut held_id: Option<String> = None;
    // The entry made for this message just now: confirmed once its audit record is durable,
    // undone if that record fails.
    let mut fresh_hold: Option<String> = None;
    let reply = match decision.verdict {
        Verdict::Deliver => {
            // The message as it leaves, written once; the received copy and the edits are
            // freed before it is handed on (and the SMTP next hop sends a large message in
            // pieces rather than copying it again).
            let outgoing = match &decision.patch {
                Some(_) => {
                    let out = decision
                        .outgoing(&received.message[..received.trace_len], received.original());
                    received.message = Vec::new();
                    decision.patch = None;
                    out
                }
                None => std::mem::take(&mut received.message),
            };
            let outgoing = leaving(
                &config,
                &hop,
                &received.queue_id,
                outgoing,
                incoming.as_ref(),
                &mut record,
            );
            record.next_hop = Some(hop.describe());
            let timeout = config.relay.next_hop_timeout.0;
            let started = std::time::Instant::now();
            let result = match tokio::time::timeout(
                timeout,
                hop.deliver(&received.envelope, &outgoing, &key),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(DeliveryError::Unreachable {
                    hop: hop.describe(),
                    detail: format!("no answer within {} s", timeout.as_secs()),
                }),
            };
            relay
                .metrics
                .next_hop(next_hop_result(&result), started.elapsed());
            match result {
                Ok(next_hop_reply) => {
                    record.sha256_delivered = Some(sha256_hex(&outgoing));
                    record.next_hop_reply = Some(next_hop_reply);
                    record.outcome = "delivered".into();
                    if !decision.flags.is_empty() {
                        // The DSL must see what the pupil received: the sender's own Sent copy
                        // lacks the gateway's changes.
                        keep_evidence(relay, &received.queue_id, outgoing, &mut record).await;
                    }
                    format!("250 2.0.0 Ok: queued as {}", received.queue_id)
                }
                Err(e) => {
                    tracing::warn!(queue_id = %received.queue_id, error = %e, "not delivered");
                    record.detail = Some(e.to_string());
                    let (outcome, reply) = reply_for(&e);
                    record.outcome = outcome.into();
                    if let DeliveryError::Deferred { code, text, .. }
                    | DeliveryError::Refused { code, text, .. } = &e
                    {
                        record.next_hop_reply = Some(format!("{code} {text}"));
                    }
                    reply
                }
            }
        }
        // Held for review: the exact bytes that would have left, durably, before the audit
        // record and the 250 (SPEC, "Nothing is lost").
        Verdict::Quarantine => {
            let outgoing =
                decision.outgoing(&received.message[..received.trace_len], received.original());
            // Held as it would have left: stamped and signed, so a release sends it as it is.
            let outgoing = leaving(
                &config,
                &hop,
                &received.queue_id,
                outgoing,
                incoming.as_ref(),
                &mut record,
            );
            // Always keyed, whatever the next hop: a retry of a message already held is
            // answered with the entry it already has.
            let held = hold(
                &config,
                &record,
                &received.envelope,
                &received.queue_id,
                outgoing,
                &key,
            )
            .await;
            match held {
                Ok(h) => {
                    record.outcome = "quarantined".into();
                    record.quarantine_id = Some(h.id.clone());
                    if h.state == "holding" {
                        fresh_hold = Some(h.id.clone());
                    } else {
                        record.notes.push(format!(
                            "the same message (envelope and bytes) is already in the quarantine \
                             as {} ({}): a retry, not held twice",
                            h.id, h.state
                        ));
                    }
                    held_id = Some(h.id.clone());
                    format!("250 2.0.0 Ok: held for review as {}", h.id)
                }
                Err(e) => {
                    tracing::error!(queue_id = %received.queue_id, error = %e, "not quarantined");
                    record.outcome = "deferred".into();
                    record.detail = Some(format!("the message could not be quarantined: {e}"));
                    "451 4.3.0 Message could not be held for review, try again later".into()
                }
            }
        }
        Verdict::Reject => {
            record.outcome = "rejected".into();
            decision.refusal()
        }
    };
    record.reply = reply.clone();
    let outcome = record.outcome.clone();
    let next_hop_reply = record.next_hop_reply.clone();
    let alert = alert_for(&record, &received.queue_id, now);
    let notice = held_id
        .as_deref()
        .and_then(|id| sender_notice(&config, &record, &decision, id, now));
    // A message the next hop has taken cannot be taken back: a 451 now would have the client
    // send it again and the recipient get it twice, so its record is given time.
    let patience = if outcome == "delivered" {
        AUDIT_PATIENCE
    } else {
        std::time::Duration::ZERO
    };
    match append_patiently(
        relay,
        AuditRecord::message(record),
        patience,
        &received.queue_id,
    )
    .await
    {
        Ok(entry) => {
            if let Some(id) = fresh_hold {
                confirm_held(&config, id, &received.queue_id).await;
            }
            follow_up(relay, entry.seq, alert, notice, &received.queue_id).await;
            relay.metrics.message("relay", &decision, &outcome);
            tracing::info!(queue_id = %received.queue_id, client = %received.client,
                from = %received.envelope.mail_from, rcpts = received.envelope.rcpt_to.len(),
                size, verdict = decision.verdict.as_str(), rules = %rules_of(&decision),
                outcome = %outcome, next_hop_reply = next_hop_reply.as_deref().unwrap_or("-"),
                reply = reply.as_str(), audit = entry.seq, "message");
            reply
        }
        Err(e) => {
            relay.metrics.message("relay", &decision, "audit-failed");
            tracing::error!(queue_id = %received.queue_id, error = %e, outcome = %outcome,
                verdict = decision.verdict.as_str(), rules = %rules_of(&decision),
                "the audit record could not be written; telling the client to try again");
            if let Some(id) = fresh_hold {
                // Unrecorded, it must not stay held: the client's retry is held (and recorded)
                // anew.
                unhold(&config, id, &received.queue_id).await;
            }
            "451 4.3.0 Audit trail unavailable, try again later".into()
        }
    }
}

/// The policy's decision on `received`, wherever it runs.
fn check(
    received: &Received,
    config: &crate::config::Config,
    directory: &crate::directory::Directory,
    now: jiff::Timestamp,
) -> policy::Decision {
    policy::evaluate(
        &received.envelope,
        received.original(),
        config,
        directory,
        now,
    )
}

/// The largest message of text only that is checked on the session's own worker
/// (see `hand_off`); a larger one, or one with an attachment, goes to a blocking thread.
/// Measured (release, 2,000 pupils and 4,000 parents in the directory): 15 KB of prose, digits,
/// phone numbers, dates or addresses take 0.1-0.8 ms to check; the slowest body found, a pasted
/// list of 800 pupils' names in 11 KB, 1.9 ms. The core is as busy either way; the worker's
/// other sessions wait that long, or are taken by the other workers.
const CHECKED_IN_PLACE: usize = 16 * 1024;

/// How long the record of a message already delivered is retried before the client is told
/// 451 (SQLite's busy timeout is 10 s a try). With `next_hop_timeout` and the scan limit (at
/// most 9 minutes together, see `Config::validate`) this stays inside the client's 10 minutes.
const AUDIT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Appends `record`, trying again for up to `patience` when the write fails (the database
/// locked by another process, the disk full for a moment).
async fn append_patiently(
    relay: &Relay,
    record: AuditRecord,
    patience: std::time::Duration,
    queue_id: &str,
) -> Result<crate::store::AuditEntry, crate::store::StoreError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match relay.audit.append(record.clone()).await {
            Ok(entry) => return Ok(entry),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(queue_id = %queue_id, error = %e,
                    "the audit record of a delivered message could not be written yet; trying again");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The notice to the sender of a message held for its attachments (SPEC, "Sender notice"),
/// when `[sensitive] notify_sender` is on and there is a sender to tell.
pub(crate) fn sender_notice(
    config: &crate::config::Config,
    record: &MessageRecord,
    decision: &policy::Decision,
    quarantine_id: &str,
    now: jiff::Timestamp,
) -> Option<Notice> {
    let sender = record.mail_from.trim();
    if !config.sensitive.notify_sender || sender.is_empty() {
        return None;
    }
    // Only the school's own people are told: an envelope sender is only a claim.
    if !alerts::is_school_address(config, sender) {
        tracing::info!(sender = %alerts::one_line(sender),
            "no sender notice: the sender is not in the school's own domains");
        return None;
    }
    let held: Vec<HeldAttachment<'_>> = decision
        .findings
        .iter()
        .filter(|f| f.action == crate::config::Action::Quarantine)
        .map(|f| HeldAttachment {
            attachment: &f.attachment,
            detail: &f.detail,
            rule: f.rule,
        })
        .collect();
    if held.is_empty() {
        return None;
    }
    let recipients: Vec<String> = if record.header_to.is_empty() {
        record.rcpt_to.clone()
    } else {
        record
            .header_to
            .iter()
            .chain(&record.header_cc)
            .cloned()
            .collect()
    };
    let release = release_link(config, record, quarantine_id, now);
    let link = release
        .as_ref()
        .map(|(url, until, _)| alerts::SelfReleaseLink { url, until });
    match alerts::compose_notice(
        sender,
        &recipients,
        record.subject.as_deref(),
        quarantine_id,
        &held,
        &config.alert_from(),
        &config.school.name,
        config.sensitive.quarantine_retention_days,
        now,
        link.as_ref(),
    ) {
        Ok(bytes) => Some(Notice {
            audit_seq: 0,
            quarantine_id: quarantine_id.to_string(),
            to: sender.to_string(),
            message: String::from_utf8_lossy(&bytes).into_owned(),
            release_link: release.map(|(_, _, hash)| hash),
        }),
        Err(e) => {
            tracing::error!(error = %e, "the sender notice could not be composed");
            None
        }
    }
}

/// The sender's one-time release link for the message recorded as `record`, held in our own
/// quarantine as `quarantine_id`, when every rule that held it allows the sender to release it
/// ([`policy::release`]) and the web page has an address: `(url, until, token hash)`. A new
/// token each time (32 random bytes); only its hash is kept ([`follow_up`]).
pub(crate) fn release_link(
    config: &crate::config::Config,
    record: &MessageRecord,
    quarantine_id: &str,
    now: jiff::Timestamp,
) -> Option<(String, String, String)> {
    // A message held by the MTA (the milter's `hold` mode) is not ours to release.
    if record.quarantine_id.as_deref() != Some(quarantine_id) {
        return None;
    }
    policy::release::sender_may_release(&hold_reason(record), |r| {
        config.allow_sender_release().allows(r)
    })
    .ok()?;
    let base = config.web.base_url(&config.relay.hostname)?;
    let token = match crate::store::release::new_token() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "no release link in the sender notice");
            return None;
        }
    };
    let hash = crate::store::release::token_hash(&token)?;
    let expires = now.checked_add(policy::release::LINK_LIFETIME).ok()?;
    let until = expires
        .in_tz(&config.school.timezone)
        .map(|z| z.strftime("%a %-d %b %Y, %H:%M %Z").to_string())
        .unwrap_or_else(|_| expires.strftime("%a %-d %b %Y, %H:%M UTC").to_string());
    Some((format!("{base}/release/{token}"), until, hash))
}

/// Records a message that was not accepted (limits, a client gone mid-DATA). Best effort: the
/// client hears its reply whether or not this succeeds, as nothing was accepted.
pub async fn record_unaccepted(
    relay: &Relay,
    received: &Received,
    size: u64,
    outcome: &str,
    detail: &str,
    reply: &str,
) {
    let original = received.original();
    let summary = policy::summarise(original);
    let mut record = base_record(received, original, sha256_hex(original), &summary);
    record.size = size;
    record.verdict = "none".into();
    record.outcome = outcome.into();
    record.detail = Some(detail.into());
    record.reply = reply.into();
    if let Err(e) = relay.audit.append(AuditRecord::message(record)).await {
        tracing::error!(queue_id = %received.queue_id, error = %e, "audit record not written");
    }
}

pub(crate) fn base_record(
    received: &Received,
    original: &[u8],
    sha256_received: String,
    summary: &policy::MessageSummary,
) -> MessageRecord {
    MessageRecord {
        client: received.client.to_string(),
        helo: received.helo.clone(),
        tls: received.tls.clone(),
        mail_from: received.envelope.mail_from.clone(),
        rcpt_to: received.envelope.rcpt_to.clone(),
        queue_id: Some(received.queue_id.clone()),
        ..summary_record(original, sha256_received, summary)
    }
}

// The pieces of a hand-off that every shell shares (the relay here, the milter in
// `crate::milter`): what the decision says in the audit record, holding a message in the
// quarantine, keeping evidence, and the DSL alert and sender notice queued once the record is
// durable.

/// Writes what `decision` says into `record`: verdict, disclaimer, flags, findings, notes.
pub(crate) fn record_decision(record: &mut MessageRecord, decision: &policy::Decision) {
    record.verdict = decision.verdict.as_str().into();
    record.disclaimer = Some(decision.disclaimer.as_str().into());
    record.flags = decision
        .flags
        .iter()
        .map(|f| FlagRecord {
            rule: f.rule.into(),
            detail: f.detail.clone(),
            evidence: f.evidence.clone(),
            action: format!("{:?}", f.action).to_lowercase(),
        })
        .collect();
    record.findings = decision
        .findings
        .iter()
        .map(|f| FindingRecord {
            rule: f.rule.into(),
            attachment: f.attachment.clone(),
            part: f.part,
            detail: f.detail.clone(),
            detectors: f
                .detectors
                .iter()
                .map(|d| (d.detector.to_string(), d.count))
                .collect(),
            evidence: f
                .evidence
                .iter()
                .map(|e| format!("{} at {}: {}", e.detector, e.location, e.sample))
                .collect(),
            action: format!("{:?}", f.action).to_lowercase(),
        })
        .collect();
    record.attachments = decision
        .attachments
        .iter()
        .map(|a| AttachmentRecord {
            name: a.name.clone(),
            mime_type: a.mime_type.clone(),
            size: a.size,
            sha256: a.sha256.clone(),
            encrypted: a.encrypted.is_some(),
            encryption: a.encrypted.clone(),
        })
        .collect();
    record
        .notes
        .extend(decision.disclaimer_notes.iter().cloned());
}

/// Why a message is held: every rule that matched (the quarantine list shows rule and detail).
pub(crate) fn hold_reason(record: &MessageRecord) -> serde_json::Value {
    serde_json::Value::Array(
        record
            .flags
            .iter()
            .filter_map(|f| serde_json::to_value(f).ok())
            .chain(
                record
                    .findings
                    .iter()
                    .filter_map(|f| serde_json::to_value(f).ok()),
            )
            .collect(),
    )
}

/// Holds `outgoing` (the exact bytes that would have left) in the quarantine as `id`, durably,
/// in state `holding` until [`confirm_held`]; or, when `delivery_key` (empty: none) names a
/// message already there, returns that entry instead.
pub(crate) async fn hold(
    config: &crate::config::Config,
    record: &MessageRecord,
    envelope: &Envelope,
    id: &str,
    outgoing: Vec<u8>,
    delivery_key: &str,
) -> Result<crate::store::quarantine::Held, String> {
    let delivery_key = delivery_key.to_string();
    let quarantine = Quarantine::open(&config.storage);
    let id = id.to_string();
    let mail_from = envelope.mail_from.clone();
    let rcpt_to = envelope.rcpt_to.clone();
    let (smtputf8, body_8bit) = (envelope.smtputf8, envelope.body_8bit);
    let subject = record.subject.clone();
    let reason = hold_reason(record);
    tokio::task::spawn_blocking(move || {
        quarantine.hold(
            &NewHeld {
                id: &id,
                mail_from: &mail_from,
                rcpt_to: &rcpt_to,
                subject: subject.as_deref(),
                reason,
                smtputf8,
                body_8bit,
                delivery_key: &delivery_key,
            },
            &outgoing,
        )
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| e.to_string()))
}

/// Confirms a `holding` entry as held, its audit record being durable. What fails (the disk
/// full, the database locked) is tried again in the background; meanwhile the entry is
/// `holding` (out of the review list), and the next start's [`Quarantine::recover`] finds the
/// record and confirms it if this never succeeds. The message is held and recorded either way.
pub(crate) async fn confirm_held(config: &crate::config::Config, id: String, queue_id: &str) {
    let quarantine = Quarantine::open(&config.storage);
    keep_trying(
        queue_id,
        "a held message is recorded but could not be marked held",
        move || {
            quarantine
                .confirm(&id)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
    .await;
}

/// Takes a quarantine entry back out (its audit record could not be written). What fails
/// (the disk full, the database locked) is tried again in the background: the entry stays
/// `holding` meanwhile, out of the review list, and the next start's [`Quarantine::recover`]
/// removes it if this never succeeds.
pub(crate) async fn unhold(config: &crate::config::Config, id: String, queue_id: &str) {
    let quarantine = Quarantine::open(&config.storage);
    keep_trying(
        queue_id,
        "an unrecorded quarantine entry could not be removed",
        move || quarantine.unhold(&id).map_err(|e| e.to_string()),
    )
    .await;
}

/// Runs `step` once now and, if it fails, every 5 s for 10 minutes in the background (the
/// storage may come back: space freed, a lock let go). `what` says in the log what failed.
async fn keep_trying<F>(queue_id: &str, what: &'static str, step: F)
where
    F: Fn() -> Result<(), String> + Clone + Send + 'static,
{
    const RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
    const RETRIES: u32 = 120;
    let attempt = |step: F| async move {
        match tokio::task::spawn_blocking(step).await {
            Ok(result) => result,
            Err(e) => Err(e.to_string()),
        }
    };
    let Err(e) = attempt(step.clone()).await else {
        return;
    };
    tracing::warn!(queue_id = %queue_id, error = %e, "{what}; trying again");
    let queue_id = queue_id.to_string();
    tokio::spawn(async move {
        for _ in 0..RETRIES {
            tokio::time::sleep(RETRY_EVERY).await;
            if attempt(step.clone()).await.is_ok() {
                tracing::info!(queue_id = %queue_id, "{what}: done now");
                return;
            }
        }
        tracing::error!(queue_id = %queue_id, "{what}; the next start will settle it");
    });
}

/// Keeps the delivered copy of a flagged message as evidence and notes where in `record`.
pub(crate) async fn keep_evidence(
    relay: &Relay,
    name: &str,
    delivered: Vec<u8>,
    record: &mut MessageRecord,
) {
    let spool = relay.spool.clone();
    let file = name.to_string();
    match tokio::task::spawn_blocking(move || spool.keep_evidence(&file, &delivered)).await {
        Ok(Ok(path)) => record.evidence = Some(path),
        Ok(Err(e)) => {
            tracing::error!(queue_id = %name, error = %e, "evidence not kept");
            record.notes.push(format!(
                "the delivered copy could not be kept as evidence: {e}"
            ));
        }
        Err(e) => {
            tracing::error!(queue_id = %name, error = %e, "evidence not kept");
        }
    }
}

/// The DSL alert for `record`, if any rule asks for one: every contact flag, and a sensitive
/// attachment whose rule is `flag` (one held or refused is the network manager's, and the
/// sender's, to act on).
pub(crate) fn alert_for(
    record: &MessageRecord,
    queue_id: &str,
    now: jiff::Timestamp,
) -> Option<Flagged> {
    let alert_flags: Vec<FlagRecord> = record
        .flags
        .iter()
        .cloned()
        .chain(
            record
                .findings
                .iter()
                .filter(|f| f.action == "flag")
                .map(|f| FlagRecord {
                    rule: f.rule.clone(),
                    detail: f.detail.clone(),
                    evidence: f.evidence.join("; "),
                    action: f.action.clone(),
                }),
        )
        .collect();
    (!alert_flags.is_empty()).then(|| Flagged {
        audit_seq: 0,
        queue_id: queue_id.to_string(),
        time: now.to_string(),
        sender: record.mail_from.clone(),
        recipients: record.rcpt_to.clone(),
        subject: record.subject.clone(),
        flags: alert_flags,
        outcome: record.outcome.clone(),
        evidence: record.evidence.clone(),
    })
}

/// Queues the DSL alert and the sender notice of the message recorded as `audit_seq`. Best
/// effort: the flag and the hold are in the audit trail whatever happens here.
pub(crate) async fn follow_up(
    relay: &Relay,
    audit_seq: u64,
    alert: Option<Flagged>,
    notice: Option<Notice>,
    queue_id: &str,
) {
    if let Some(mut alert) = alert {
        alert.audit_seq = audit_seq;
        let spool = relay.spool.clone();
        match tokio::task::spawn_blocking(move || spool.queue_alert(&alert)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(queue_id = %queue_id, error = %e,
                "the DSL alert could not be queued; the flag is in the audit trail"),
            Err(e) => tracing::error!(queue_id = %queue_id, error = %e,
                "the DSL alert could not be queued; the flag is in the audit trail"),
        }
    }
    if let Some(mut notice) = notice {
        notice.audit_seq = audit_seq;
        let spool = relay.spool.clone();
        let links = crate::store::release::ReleaseLinks::open(&relay.config().storage);
        match tokio::task::spawn_blocking(move || {
            // The link's hash is kept before the notice can go, so the link works when it
            // arrives; should that fail, the notice still tells the sender it is held.
            if let Some(hash) = &notice.release_link
                && let Err(e) = links.keep(
                    hash,
                    &notice.quarantine_id,
                    &notice.to,
                    jiff::Timestamp::now(),
                )
            {
                tracing::error!(error = %e, "the release link could not be kept; the link in the notice will not work");
            }
            spool.queue_notice(&notice)
        })
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(queue_id = %queue_id, error = %e,
                "the sender notice could not be queued; the message is held and recorded"),
            Err(e) => tracing::error!(queue_id = %queue_id, error = %e,
                "the sender notice could not be queued; the message is held and recorded"),
        }
    }
}

/// The fields of a message record that come from the message itself (the shell adds the
/// session: client, HELO, TLS, envelope, ids); `sha256_received` is [`sha256_hex`] of
/// `original`, which the caller has already worked out.
pub(crate) fn summary_record(
    original: &[u8],
    sha256_received: String,
    summary: &policy::MessageSummary,
) -> MessageRecord {
    MessageRecord {
        header_from: summary.from.clone(),
        header_to: summary.to.clone(),
        header_cc: summary.cc.clone(),
        subject: summary.subject.clone(),
        message_id: summary.message_id.clone(),
        size: original.len() as u64,
        sha256_received,
        ..MessageRecord::default()
    }
}

/// The outcome word and the client's reply for a failed delivery.
/// The rules a message matched, for its log line: `rule,rule` or `-`.
pub(crate) fn rules_of(decision: &policy::Decision) -> String {
    let rules: Vec<&str> = decision
        .flags
        .iter()
        .map(|f| f.rule)
        .chain(decision.findings.iter().map(|f| f.rule))
        .collect();
    if rules.is_empty() {
        "-".into()
    } else {
        rules.join(",")
    }
}

/// How a hand-off to the next hop ended, for the latency metric.
fn next_hop_result(result: &Result<String, DeliveryError>) -> &'static str {
    match result {
        Ok(_) => "accepted",
        Err(DeliveryError::Deferred { .. }) => "deferred",
        Err(DeliveryError::Refused { .. }) => "refused",
        Err(DeliveryError::Unreachable { .. } | DeliveryError::Local { .. }) => "unreachable",
    }
}

fn reply_for(e: &DeliveryError) -> (&'static str, String) {
    match e {
        DeliveryError::Unreachable { .. } => (
            "deferred",
            "451 4.4.1 Next hop not reachable, try again later".into(),
        ),
        DeliveryError::Deferred { code, text, .. } => (
            "deferred",
            format!(
                "451 4.4.0 Next hop deferred the message ({code} {}), try again later",
                one_line(text)
            ),
        ),
        DeliveryError::Refused { code, text, .. } => {
            let text = one_line(text);
            let code = if (500..600).contains(code) {
                *code
            } else {
                554
            };
            let has_enhanced = text
                .split_whitespace()
                .next()
                .is_some_and(|w| w.starts_with("5.") && w.matches('.').count() == 2);
            let reply = if has_enhanced {
                format!("{code} {text}")
            } else {
                format!("{code} 5.0.0 {text}")
            };
            ("refused", reply)
        }
        DeliveryError::Local { .. } => (
            "deferred",
            "451 4.3.0 Local delivery failed, try again later".into(),
        ),
    }
}

/// Text from the next hop made safe for one reply line.
fn one_line(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(400)
        .collect();
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_hold_the_sender_may_release_gets_a_release_link() {
        let example = include_str!("../../policies/example.toml");
        let config =
            crate::config::Config::parse(std::path::Path::new("example.toml"), example).unwrap();
        let now: jiff::Timestamp = "2026-12-07T09:00:00Z".parse().unwrap();
        let flag = |rule: &str, action: &str| crate::store::FlagRecord {
            rule: rule.into(),
            detail: "d".into(),
            evidence: "e".into(),
            action: action.into(),
        };
        let held = |flags: Vec<crate::store::FlagRecord>| MessageRecord {
            quarantine_id: Some("Q1".into()),
            flags,
            ..MessageRecord::default()
        };
        let record = held(vec![flag("wrong-recipient", "quarantine")]);
        let (url, until, hash) = release_link(&config, &record, "Q1", now).unwrap();
        let token = url
            .strip_prefix("http://127.0.0.1:8025/release/")
            .unwrap_or_else(|| panic!("{url}"));
        assert_eq!(crate::store::release::token_hash(token), Some(hash));
        assert_eq!(until, "Mon 14 Dec 2026, 09:00 GMT");
        let (again, _, _) = release_link(&config, &record, "Q1", now).unwrap();
        assert_ne!(url, again, "a new token each time");

        // Not with a safeguarding flag beside it, not for another rule, not for an MTA hold.
        for other in [
            held(vec![
                flag("wrong-recipient", "quarantine"),
                flag("pupil-personal-address", "flag"),
            ]),
            held(vec![flag("out-of-hours-pupil-contact", "quarantine")]),
            held(vec![flag("sensitive-data-in-body", "quarantine")]),
            MessageRecord {
                quarantine_id: None,
                ..record.clone()
            },
        ] {
            assert!(
                release_link(&config, &other, "Q1", now).is_none(),
                "{other:?}"
            );
        }
        // Not without a web page to open it on.
        let mut no_web = config.clone();
        no_web.web.listen = None;
        assert!(release_link(&no_web, &record, "Q1", now).is_none());
        no_web.web.public_url = Some(crate::config::PublicUrl(
            "https://gate.example-academy.sch.uk".into(),
        ));
        let (url, _, _) = release_link(&no_web, &record, "Q1", now).unwrap();
        assert!(
            url.starts_with("https://gate.example-academy.sch.uk/release/"),
            "{url}"
        );
    }

    #[test]
    fn a_refusal_keeps_the_next_hops_code_and_text() {
        let e = DeliveryError::Refused {
            hop: "smtp://x:25".into(),
            code: 550,
            text: "5.1.1 <a@x>: Recipient address rejected".into(),
        };
        assert_eq!(
            reply_for(&e),
            (
                "refused",
                "550 5.1.1 <a@x>: Recipient address rejected".to_string()
            )
        );
        let e = DeliveryError::Refused {
            hop: "smtp://x:25".into(),
            code: 554,
            text: "no thanks\r\nreally".into(),
        };
        assert_eq!(reply_for(&e).1, "554 5.0.0 no thanks really");
    }

    #[test]
    fn the_delivery_key_depends_on_envelope_and_bytes() {
        let env = Envelope {
            mail_from: "a@x".into(),
            rcpt_to: vec!["b@y".into()],
            smtputf8: false,
            body_8bit: false,
        };
        let key = |env: &Envelope, bytes: &[u8]| delivery_key(env, &sha256_hex(bytes));
        let k1 = key(&env, b"hello");
        assert_eq!(k1, key(&env, b"hello"));
        assert_ne!(k1, key(&env, b"hello!"));
        let mut env2 = env.clone();
        env2.rcpt_to.push("c@z".into());
        assert_ne!(k1, key(&env2, b"hello"));
        // Letters and digits only: the outbox names its file after it.
        assert!(k1.bytes().all(|b| b.is_ascii_hexdigit()), "{k1}");
    }
}
