//! The end of a message: decide, act, record, in the relay's order (see
//! [`crate::smtp::handoff`]).
//!
//! The policy decides on the message as the mail server gave it. The actions go to the mail
//! server first (they take effect only with the final answer), then the audit record is made
//! durable, and only then does the mail server hear the final answer: accept, discard (held in
//! schoolgate's quarantine), or reject. If the record cannot be written, or an action cannot be
//! carried out once the policy has decided, the answer is a tempfail whatever `on_error` says:
//! `on_error` covers not being able to decide, never overriding a decision.

use std::ffi::CString;

use indymilter::{ContextActions, EomActions, EomContext, Status};

use super::edits::{self, Edits, HeaderEdit};
use super::session::{Connection, Message, on_error_reply};
use crate::config::{MilterOnError, MilterQuarantine};
use crate::envelope::Envelope;
use crate::policy::{self, Verdict};
use crate::smtp::handoff::{
    alert_for, confirm_held, follow_up, hold, keep_evidence, record_decision, rules_of,
    sender_notice, sha256_hex, summary_record, unhold,
};
use crate::smtp::server::Relay;
use crate::store::{AuditRecord, MessageRecord};

/// The mail server's own fields above the message that the milter is not shown (its
/// `Received:`), found with Postfix 3.7: an insertion at index N lands before the N-th field
/// counting that one.
const HIDDEN_TRACE_FIELDS: usize = 1;

/// What the audit record says about the way the message came.
const PATH: &str = "milter";

/// Decides about `message` and acts; returns the final status and, for a 4xx or 5xx, its reply.
pub async fn end_of_message(
    relay: &Relay,
    cx: &mut EomContext<Connection>,
    message: Message,
    mta_queue_id: Option<String>,
) -> (Status, Option<String>) {
    // A trust's school by the envelope sender's domain: its policy and directory.
    let (config, directory) = relay.for_sender(&message.envelope.mail_from);
    let now = jiff::Timestamp::now();
    let Message {
        queue_id,
        envelope,
        bytes,
        size,
        ..
    } = message;
    let kept_envelope = envelope.clone();
    // The policy opens attachments (up to `max_scan_time`): on a blocking thread, so the other
    // connections sharing this worker are not held up.
    // At most `max_parallel_scans` checks run at once (with the relay's): the others wait.
    let permit = relay.scan_permit().await;
    let decided = {
        let (config, directory) = (config.clone(), directory.clone());
        tokio::task::spawn_blocking(move || {
            let decision = policy::evaluate(&envelope, &bytes, &config, &directory, now);
            drop(permit);
            (envelope, bytes, decision)
        })
        .await
    };
    let (envelope, original, decision) = match decided {
        Ok(done) => done,
        Err(e) => {
            tracing::error!(queue_id = %queue_id, error = %e, "milter: the policy could not run");
            let on_error = config.milter.on_error;
            let (status, reply) = on_error_reply(
                on_error,
                None,
                "The school's mail filter could not check this message",
            );
            let undecided = Message {
                queue_id,
                envelope: kept_envelope,
                bytes: Vec::new(),
                size,
                limit: 0,
            };
            record_undecided(
                relay,
                cx.data.as_ref(),
                &undecided,
                mta_queue_id,
                on_error,
                &format!("the policy could not run: {e}"),
                &reply,
            )
            .await;
            return (status, Some(reply));
        }
    };

    let mut record = base_record(
        cx.data.as_ref(),
        &queue_id,
        &envelope,
        &original,
        &decision.summary,
        mta_queue_id.clone(),
    );
    record_decision(&mut record, &decision);
    record.school = config.trust_school.clone();
    let outgoing = decision.outgoing(b"", &original);
    // Held in our quarantine, the mail server's copy is discarded: no edits to send.
    let changes = match (decision.verdict, config.milter.quarantine) {
        (Verdict::Deliver, _) | (Verdict::Quarantine, MilterQuarantine::Hold) => {
            edits::between(&original, &outgoing)
        }
        _ => Edits::default(),
    };
    let size = original.len();
    drop(original);
    // The quarantine entry made for this message, undone if its audit record fails.
    let mut held_id: Option<String> = None;
    let mta_id = mta_queue_id.as_deref().unwrap_or("unknown");

    let leading_space = cx.data.as_ref().is_some_and(|c| c.leading_space);
    let changes = if leading_space {
        changes
    } else {
        changes.without_leading_space()
    };
    let (status, reply) = match (decision.verdict, config.milter.quarantine) {
        (Verdict::Deliver, _) => match send(&cx.actions, &changes, &outgoing).await {
            Ok(()) => {
                record.outcome = "accepted".into();
                record.sha256_delivered = Some(sha256_hex(&outgoing));
                if !decision.flags.is_empty() {
                    // The DSL must see what the pupil received (the mail server adds only its
                    // trace header).
                    keep_evidence(relay, &queue_id, outgoing, &mut record).await;
                }
                (Status::Accept, "accept".to_string())
            }
            Err(e) => failed(
                &mut record,
                &queue_id,
                &format!("the edits could not be sent: {e}"),
            ),
        },
        // Held for review: the exact bytes that would have left, durably, before the audit
        // record and the discard.
        (Verdict::Quarantine, MilterQuarantine::Schoolgate) => {
            // No delivery key: the original bytes are gone by now. A retry by the mail server
            // of a message whose accept a crash cut off is held again.
            match hold(&config, &record, &envelope, &queue_id, outgoing, "").await {
                Ok(h) => {
                    record.outcome = "quarantined".into();
                    record.quarantine_id = Some(h.id.clone());
                    held_id = Some(h.id.clone());
                    (
                        Status::Discard,
                        format!(
                            "discard: held for review in schoolgate's quarantine as {}",
                            h.id
                        ),
                    )
                }
                Err(e) => failed(
                    &mut record,
                    &queue_id,
                    &format!("the message could not be quarantined: {e}"),
                ),
            }
        }
        // The mail server's hold queue, with the disclaimer already in, so that a release
        // delivers what would have left.
        (Verdict::Quarantine, MilterQuarantine::Hold) => {
            let reason = hold_reason(&queue_id, &record);
            let held = async {
                send(&cx.actions, &changes, &outgoing).await?;
                cx.actions
                    .quarantine(cstring(reason.as_bytes())?)
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            match held {
                Ok(()) => {
                    record.outcome = "quarantined".into();
                    record.sha256_delivered = Some(sha256_hex(&outgoing));
                    record.detail = Some(format!(
                        "held in the mail server's hold queue as {mta_id} (release with postsuper -H {mta_id})"
                    ));
                    (
                        Status::Accept,
                        format!("accept: held in the mail server's hold queue ({reason})"),
                    )
                }
                Err(e) => failed(
                    &mut record,
                    &queue_id,
                    &format!("the mail server could not be asked to hold the message: {e}"),
                ),
            }
        }
        (Verdict::Reject, _) => {
            record.outcome = "rejected".into();
            (Status::Reject, decision.refusal())
        }
    };
    record.reply = reply.clone();
    let outcome = record.outcome.clone();
    let alert = alert_for(&record, &queue_id, now);
    let notice = match (&held_id, outcome.as_str()) {
        (Some(id), _) => sender_notice(&config, &record, &decision, id, now),
        (None, "quarantined") => sender_notice(&config, &record, &decision, mta_id, now),
        _ => None,
    };
    match relay.audit.append(AuditRecord::message(record)).await {
        Ok(entry) => {
            if let Some(id) = &held_id {
                confirm_held(&config, id.clone(), &queue_id).await;
            }
            follow_up(relay, entry.seq, alert, notice, &queue_id).await;
            relay.metrics.message("milter", &decision, &outcome);
            tracing::info!(queue_id = %queue_id, mta_queue_id = %mta_id,
                from = %envelope.mail_from, rcpts = envelope.rcpt_to.len(),
                size, verdict = decision.verdict.as_str(), rules = %rules_of(&decision),
                outcome = %outcome, reply = reply.as_str(), audit = entry.seq, "milter: message");
            (status, Some(reply))
        }
        Err(e) => {
            relay.metrics.message("milter", &decision, "audit-failed");
            tracing::error!(queue_id = %queue_id, mta_queue_id = %mta_id, error = %e, outcome = %outcome,
                verdict = decision.verdict.as_str(), rules = %rules_of(&decision),
                "milter: the audit record could not be written; telling the mail server to try again");
            if let Some(id) = held_id {
                unhold(&config, id, &queue_id).await;
            }
            (
                Status::Tempfail,
                Some("451 4.3.0 Audit trail unavailable, try again later".into()),
            )
        }
    }
}

/// A decision that could not be carried out: the mail server keeps the message and retries.
fn failed(record: &mut MessageRecord, queue_id: &str, detail: &str) -> (Status, String) {
    tracing::error!(queue_id = %queue_id, detail, "milter: tempfail");
    record.outcome = "deferred".into();
    record.detail = Some(detail.to_string());
    (
        Status::Tempfail,
        "451 4.3.0 The school's mail filter could not act on this message, try again later".into(),
    )
}

/// Why the mail server holds the message (Postfix logs it and `postcat` shows it): our id and
/// the rules, one line.
fn hold_reason(queue_id: &str, record: &MessageRecord) -> String {
    let rules: Vec<String> = record
        .findings
        .iter()
        .filter(|f| f.action == "quarantine")
        .map(|f| match f.attachment.as_str() {
            // A rule about the message, not one attachment (exposed-recipients).
            "" => f.rule.clone(),
            a => format!("{} ({a})", f.rule),
        })
        .chain(
            record
                .flags
                .iter()
                .filter(|f| f.action == "quarantine")
                .map(|f| f.rule.clone()),
        )
        .collect();
    let line: String = format!("schoolgate {queue_id}: {}", rules.join(", "))
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(400)
        .collect();
    line
}

/// Sends `changes` (made against `outgoing`) to the mail server.
async fn send(actions: &EomActions, changes: &Edits, outgoing: &[u8]) -> Result<(), String> {
    for edit in &changes.headers {
        match edit {
            HeaderEdit::Change { name, index, value } => {
                let index = i32::try_from(*index).map_err(|e| e.to_string())?;
                let value = value.as_deref().map(cstring).transpose()?;
                actions
                    .change_header(name.as_str(), index, value)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            HeaderEdit::Insert {
                append: true,
                name,
                value,
                ..
            } => actions
                .add_header(name.as_str(), cstring(value)?)
                .await
                .map_err(|e| e.to_string())?,
            HeaderEdit::Insert {
                position,
                name,
                value,
                ..
            } => {
                // Postfix and Sendmail count their own Received: field, at the top and never
                // shown to the milter, among the fields an insertion is placed by.
                let position =
                    i32::try_from(*position + HIDDEN_TRACE_FIELDS).map_err(|e| e.to_string())?;
                actions
                    .insert_header(position, name.as_str(), cstring(value)?)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    if let Some(body) = &changes.body {
        actions
            .replace_body(outgoing.get(body.clone()).unwrap_or_default())
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn cstring(bytes: &[u8]) -> Result<CString, String> {
    CString::new(bytes).map_err(|_| "a header value holds a NUL byte".to_string())
}

fn base_record(
    conn: Option<&Connection>,
    queue_id: &str,
    envelope: &Envelope,
    original: &[u8],
    summary: &policy::MessageSummary,
    mta_queue_id: Option<String>,
) -> MessageRecord {
    MessageRecord {
        client: conn.map(|c| c.client.clone()).unwrap_or_default(),
        helo: conn.map(|c| c.helo.clone()).unwrap_or_default(),
        tls: conn.and_then(|c| c.tls.clone()),
        mail_from: envelope.mail_from.clone(),
        rcpt_to: envelope.rcpt_to.clone(),
        queue_id: Some(queue_id.to_string()),
        path: Some(PATH.into()),
        mta_queue_id,
        ..summary_record(original, sha256_hex(original), summary)
    }
}

/// Records a message schoolgate could not decide about, and what `on_error` made of it.
/// Best effort: the mail server hears `reply` whether or not this succeeds.
pub async fn record_undecided(
    relay: &Relay,
    conn: Option<&Connection>,
    message: &Message,
    mta_queue_id: Option<String>,
    on_error: MilterOnError,
    detail: &str,
    reply: &str,
) {
    let summary = policy::summarise(&message.bytes);
    let mut record = base_record(
        conn,
        &message.queue_id,
        &message.envelope,
        &message.bytes,
        &summary,
        mta_queue_id,
    );
    record.size = message.size;
    record.verdict = "none".into();
    record.outcome = match on_error {
        MilterOnError::Tempfail => "deferred",
        MilterOnError::Reject => "rejected",
        MilterOnError::Accept => "accepted",
    }
    .into();
    record.detail = Some(match on_error {
        MilterOnError::Accept => {
            format!("{detail}; let through unfiltered (milter.on_error = \"accept\")")
        }
        _ => detail.to_string(),
    });
    record.reply = reply.into();
    tracing::warn!(queue_id = %message.queue_id, detail, reply, "milter: message not checked");
    if let Err(e) = relay.audit.append(AuditRecord::message(record)).await {
        tracing::error!(queue_id = %message.queue_id, error = %e, "audit record not written");
    }
}

/// Records a message the mail server abandoned (its client went away, or it gave up).
pub async fn record_aborted(
    relay: &Relay,
    conn: Option<&Connection>,
    message: &Message,
    mta_queue_id: Option<String>,
) {
    let summary = policy::summarise(&message.bytes);
    let mut record = base_record(
        conn,
        &message.queue_id,
        &message.envelope,
        &message.bytes,
        &summary,
        mta_queue_id,
    );
    record.size = message.size;
    record.verdict = "none".into();
    record.outcome = "aborted".into();
    record.detail = Some(format!(
        "the mail server abandoned the message after {} octets",
        message.size
    ));
    record.reply = "(none: the message was abandoned)".into();
    if let Err(e) = relay.audit.append(AuditRecord::message(record)).await {
        tracing::error!(queue_id = %message.queue_id, error = %e, "audit record not written");
    }
}
