//! Sends the queued DSL alerts through the next hop, and purges old evidence and quarantine.
//!
//! Alerts go straight to the next hop, never through our own listener, so an alert is never
//! itself inspected (no loop). A queued alert waits until its sender has been quiet for
//! `safeguarding.alert_window`, so a burst of flags becomes one alert; one that cannot be sent
//! stays queued and is tried again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::server::Relay;
use crate::alerts::{self, Flagged};
use crate::envelope::Envelope;
use crate::store::quarantine::Quarantine;
use crate::store::{AuditRecord, RecordKind};

/// How often the queue is looked at.
const TICK: Duration = Duration::from_millis(500);
/// How often old evidence is purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Runs until the gateway stops.
pub async fn run(relay: Arc<Relay>) {
    let mut stop = relay.shutdown_signal();
    let mut last_purge: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = send_due(&relay).await {
            tracing::error!(error = %e, "DSL alerts: the queue could not be read");
        }
        if let Err(e) = send_notices(&relay).await {
            tracing::error!(error = %e, "sender notices: the queue could not be read");
        }
        if last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
            last_purge = Some(std::time::Instant::now());
            purge(&relay).await;
        }
    }
}

/// Sends mail schoolgate itself wrote (an alert, a notice, a checkpoint) from `alert_from` to
/// `to`, straight to the next hop: its reply, or why it was not sent (to retry later).
pub(crate) async fn send_own_mail(
    relay: &Relay,
    to: Vec<String>,
    bytes: &[u8],
) -> Result<String, String> {
    let config = relay.config();
    let envelope = Envelope {
        mail_from: config.alert_from(),
        rcpt_to: to,
        smtputf8: false,
        body_8bit: false,
    };
    // The same mail is the same key: a retry after a lost reply is stored once by the outbox.
    let key = hex::encode(Sha256::digest(bytes));
    let hop = relay.next_hop();
    match tokio::time::timeout(
        config.relay.next_hop_timeout.0,
        hop.deliver(&envelope, bytes, &key),
    )
    .await
    {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "next hop {} did not answer within {} s",
            hop.describe(),
            config.relay.next_hop_timeout.0.as_secs()
        )),
    }
}

async fn send_due(relay: &Relay) -> std::io::Result<()> {
    let spool = relay.spool.clone();
    let pending = tokio::task::spawn_blocking(move || spool.pending_alerts())
        .await
        .map_err(std::io::Error::other)??;
    if pending.is_empty() {
        return Ok(());
    }
    let config = relay.config();
    let window = config.safeguarding.alert_window.0;
    let now = jiff::Timestamp::now();
    let mut by_sender: BTreeMap<String, Vec<(std::path::PathBuf, Flagged)>> = BTreeMap::new();
    for (path, item) in pending {
        by_sender
            .entry(item.sender.clone())
            .or_default()
            .push((path, item));
    }
    for (sender, items) in by_sender {
        // Due once the newest flag from this sender is older than the window.
        let newest = items
            .iter()
            .filter_map(|(_, i)| i.time.parse::<jiff::Timestamp>().ok())
            .max()
            .unwrap_or(now);
        let quiet = now.duration_since(newest).unsigned_abs();
        if quiet < window {
            continue;
        }
        let paths: Vec<_> = items.iter().map(|(p, _)| p.clone()).collect();
        let flagged: Vec<Flagged> = items.into_iter().map(|(_, i)| i).collect();
        let seqs: Vec<String> = flagged.iter().map(|i| i.audit_seq.to_string()).collect();
        let dsl: Vec<String> = config
            .safeguarding
            .dsl
            .iter()
            .map(|a| a.0.clone())
            .collect();
        let detail = if dsl.is_empty() {
            tracing::error!(%sender, "a safeguarding flag could not be alerted: [safeguarding] dsl is empty");
            format!(
                "alert for audit records {} not sent: no DSL is configured ([safeguarding] dsl)",
                seqs.join(", ")
            )
        } else {
            let bytes = match alerts::compose(
                &flagged,
                &config.alert_from(),
                &dsl,
                &config.school.name,
                now,
            ) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "DSL alert could not be composed");
                    continue;
                }
            };
            match send_own_mail(relay, dsl.clone(), &bytes).await {
                Ok(reply) => format!(
                    "DSL alert sent to {} for audit records {} ({} flagged messages from {sender}); next hop: {reply}",
                    dsl.join(", "),
                    seqs.join(", "),
                    flagged.len()
                ),
                Err(e) => {
                    tracing::warn!(error = %e, %sender, "DSL alert not sent yet; will retry");
                    continue;
                }
            }
        };
        // Recorded before the queue files go: a crash in between sends the alert twice rather
        // than never.
        let record = AuditRecord::action(RecordKind::Action, crate::store::GATEWAY, detail.clone());
        if let Err(e) = relay.audit.append(record).await {
            tracing::error!(error = %e, "the alert could not be recorded; it stays queued");
            continue;
        }
        tracing::info!("{detail}");
        let spool = relay.spool.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || spool.alerts_sent(&paths))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
        {
            tracing::error!(error = %e, "sent alerts could not be removed from the queue");
        }
    }
    Ok(())
}

/// Sends the notices to senders of held messages, at once (no window: the sender is waiting).
async fn send_notices(relay: &Relay) -> std::io::Result<()> {
    let spool = relay.spool.clone();
    let pending = tokio::task::spawn_blocking(move || spool.pending_notices())
        .await
        .map_err(std::io::Error::other)??;
    if pending.is_empty() {
        return Ok(());
    }
    for (path, notice) in pending {
        let reply = match send_own_mail(relay, vec![notice.to.clone()], notice.message.as_bytes())
            .await
        {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(error = %e, to = %notice.to, "sender notice not sent yet; will retry");
                continue;
            }
        };
        let detail = format!(
            "sender notice sent to {} for quarantine {} (audit record {}); next hop: {reply}",
            notice.to, notice.quarantine_id, notice.audit_seq
        );
        let record = AuditRecord::action(RecordKind::Action, crate::store::GATEWAY, detail.clone());
        if let Err(e) = relay.audit.append(record).await {
            tracing::error!(error = %e, "the notice could not be recorded; it stays queued");
            continue;
        }
        tracing::info!("{detail}");
        let spool = relay.spool.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || spool.notices_sent(&[path]))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
        {
            tracing::error!(error = %e, "a sent notice could not be removed from the queue");
        }
    }
    Ok(())
}

async fn purge(relay: &Relay) {
    let days = relay.config().safeguarding.evidence_retention_days;
    let cutoff = SystemTime::now() - Duration::from_secs(u64::from(days) * 86_400);
    let spool = relay.spool.clone();
    match tokio::task::spawn_blocking(move || spool.purge_evidence(cutoff)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => {
            let detail =
                format!("retention purge: {n} evidence copies older than {days} days removed");
            tracing::info!("{detail}");
            let _ = relay
                .audit
                .append(AuditRecord::action(
                    RecordKind::Action,
                    crate::store::GATEWAY,
                    detail,
                ))
                .await;
        }
        Ok(Err(e)) => tracing::error!(error = %e, "evidence purge failed"),
        Err(e) => tracing::error!(error = %e, "evidence purge failed"),
    }
    purge_quarantine(relay).await;
}

/// Deletes quarantined messages held longer than `[sensitive] quarantine_retention_days` (none
/// when it is not set), with an audit record naming them.
async fn purge_quarantine(relay: &Relay) {
    let config = relay.config();
    let Some(days) = config.sensitive.quarantine_retention_days else {
        return;
    };
    let cutoff = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(i64::from(days) * 24);
    let quarantine = Quarantine::new(&config.storage.state_dir);
    match tokio::task::spawn_blocking(move || quarantine.purge(cutoff, days)).await {
        Ok(Ok(ids)) if ids.is_empty() => {}
        Ok(Ok(ids)) => {
            let detail = format!(
                "retention purge: {} quarantined messages held longer than {days} days deleted: {}",
                ids.len(),
                ids.join(", ")
            );
            tracing::info!("{detail}");
            if let Err(e) = relay
                .audit
                .append(AuditRecord::action(
                    RecordKind::Action,
                    crate::store::GATEWAY,
                    detail,
                ))
                .await
            {
                tracing::error!(error = %e, "the quarantine purge could not be recorded");
            }
        }
        Ok(Err(e)) => tracing::error!(error = %e, "quarantine purge failed"),
        Err(e) => tracing::error!(error = %e, "quarantine purge failed"),
    }
}
