//! A client's retry of a message already delivered (or held) and recorded: answered 250, not
//! delivered (or held) again.
//!
//! The window this closes: a gateway hands a message on and records it, then dies (or the
//! connection breaks) before its 250 reaches the client, which sends the message again, to
//! this gateway or, in a trust, to the other one. Each record of a message answered 250 is
//! remembered by the message's identity ([`crate::store::audit::message_identity`]: the
//! envelope and the bytes as received) in the same transaction that appends the record
//! ([`crate::store::answered`]); before deciding anything, [`answer_a_retry`] looks the
//! identity up (with every other session's waiting look-up, in one query:
//! [`crate::store::answered::RetryLookup`]), and a message found is answered from its first
//! record, with an audit record of kind `retry-answered` saying so.
//!
//! The order is deliver, then record-and-remember in one transaction, then answer. A gateway
//! that dies after the next hop took the message but before its record leaves no identity, so
//! the retry delivers it again: in doubt, deliver (a duplicate can be explained to a parent, a
//! lost message cannot). A retry whose look-up fails (the database unreachable) is told 451 and
//! nothing is delivered: the client still has the message, and the record could not have been
//! written anyway.

use std::sync::Arc;
use std::time::Duration;

use super::handoff::{Received, base_record};
use super::server::Relay;
use crate::store::answered::{Answer, AnsweredMessages};
use crate::store::{AuditRecord, RecordKind};

/// What the client is told, and what the audit trail says, when `received` (whose SHA-256 is
/// `sha256_received` and whose [`crate::store::audit::message_identity`] is `identity`) is a
/// retry of a message already answered 250; `None` when it is not (or not known to be), and
/// it goes on to the policy and the next hop.
pub async fn answer_a_retry(
    relay: &Relay,
    config: &crate::config::Config,
    received: &Received,
    sha256_received: &str,
    identity: &str,
) -> Option<String> {
    let original = received.original();
    // Batched with the other sessions' look-ups (`RetryLookup`): one query for all that wait.
    let found = relay.answered.find(identity.to_string()).await;
    let answer = match found {
        Ok(None) => return None,
        Ok(Some(answer)) => answer,
        // The look-up failed, or its thread did: either way nothing says it is no retry.
        Err(error) => {
            tracing::error!(queue_id = %received.queue_id, %error,
                "cannot tell whether this message was delivered before; telling the client to try again");
            return Some("451 4.3.0 Delivery records unavailable, try again later".into());
        }
    };
    let (reply, outcome, done) = reply_to_retry(&answer);
    let summary = crate::policy::summarise(original);
    let mut record = base_record(received, original, sha256_received.to_string(), &summary);
    record.verdict = "none".into();
    record.outcome = outcome.into();
    record.school = config.trust_school.clone();
    record.detail = Some(format!(
        "a retry of the message recorded as {} at {} ({done}): answered 250 without {} it again",
        answer.seq,
        answer.time,
        if answer.outcome == "quarantined" {
            "holding"
        } else {
            "delivering"
        }
    ));
    record.reply = reply.clone();
    let record = AuditRecord {
        kind: RecordKind::RetryAnswered,
        ..AuditRecord::message(record)
    };
    // The message itself was delivered (or held) and recorded: the 250 is true whether or not
    // this note of the retry can be written.
    match relay.audit.append(record).await {
        Ok(entry) => tracing::info!(queue_id = %received.queue_id, client = %received.client,
            from = %received.envelope.mail_from, rcpts = received.envelope.rcpt_to.len(),
            original = %answer.queue_id, original_audit = answer.seq, outcome,
            reply = reply.as_str(), audit = entry.seq,
            "a retry of a message already answered; not delivered again"),
        Err(e) => tracing::error!(queue_id = %received.queue_id, error = %e,
            original = %answer.queue_id, original_audit = answer.seq, outcome,
            "a retry of a message already answered, not delivered again; its audit record could not be written"),
    }
    Some(reply)
}

/// The reply to a retry of the message `answer` is the first answer of, the retry record's
/// outcome, and what became of the message, in words.
fn reply_to_retry(answer: &Answer) -> (String, &'static str, String) {
    if answer.outcome == "quarantined" {
        let id = answer.quarantine_id.as_deref().unwrap_or(&answer.queue_id);
        (
            format!("250 2.0.0 Ok: held for review as {id}"),
            "already-held",
            format!("held for review as {id}"),
        )
    } else {
        (
            format!(
                "250 2.0.0 Ok: queued as {} (already delivered; this retry was not delivered again)",
                answer.queue_id
            ),
            "already-delivered",
            format!("delivered, queued as {}", answer.queue_id),
        )
    }
}

/// How often the identities older than [`crate::store::answered::KEEP_FOR_DAYS`] are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(6 * 3600);

/// Sweeps the old identities now and every [`SWEEP_EVERY`] (every gateway of a trust does;
/// the sweep is one `DELETE`, harmless twice).
/// Ends when the gateway stops.
pub async fn sweep(relay: Arc<Relay>) {
    let mut stop = relay.shutdown_signal();
    let mut ticks = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        let answered = AnsweredMessages::open(&relay.config().storage);
        match tokio::task::spawn_blocking(move || answered.sweep_old()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(
                forgotten = n,
                days = crate::store::answered::KEEP_FOR_DAYS,
                "identities of messages answered more than a week ago forgotten"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e,
                "the identities of old messages could not be swept; trying again later"),
            Err(e) => tracing::warn!(error = %e,
                "the identities of old messages could not be swept; trying again later"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_is_told_what_the_message_was_first_told() {
        let answer = |outcome: &str, held: Option<&str>| Answer {
            seq: 7,
            time: "2026-12-07T09:00:00Z".into(),
            queue_id: "4XyZ".into(),
            outcome: outcome.into(),
            quarantine_id: held.map(str::to_string),
        };
        let (reply, outcome, _) = reply_to_retry(&answer("delivered", None));
        assert_eq!(
            reply,
            "250 2.0.0 Ok: queued as 4XyZ (already delivered; this retry was not delivered again)"
        );
        assert_eq!(outcome, "already-delivered");
        let (reply, outcome, done) = reply_to_retry(&answer("quarantined", Some("Q9")));
        assert_eq!(reply, "250 2.0.0 Ok: held for review as Q9");
        assert_eq!(outcome, "already-held");
        assert_eq!(done, "held for review as Q9");
    }
}
