//! Sends the queued DSL alerts and sender notices through the next hop, and purges old evidence
//! and quarantine.
//!
//! Alerts go straight to the next hop, never through our own listener, so an alert is never
//! itself inspected (no loop). The first flag from a sender is alerted at once; further flags
//! from that sender within `safeguarding.alert_window` go into one follow-up alert when that
//! window closes ([`alerts::alert_due`]). Each alert goes to [`alerts::alert_recipients`] and
//! carries the audit chain's head. Mail the next hop does not take is tried again with an
//! exponential backoff ([`alerts::retry_after`]); a refusal (5xx, or an address it will not
//! take) is final, and after two days schoolgate gives up: either way an audit record starting
//! `mail-undelivered:` names what was not delivered and why.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::next_hop::DeliveryError;
use super::server::Relay;
use crate::alerts::{self, AlertMail, Flagged};
use crate::envelope::Envelope;
use crate::store::quarantine::Quarantine;
use crate::store::spool::QueueKey;
use crate::store::{AuditRecord, ChainHead, RecordKind};

/// How often the queue is looked at.
const TICK: Duration = Duration::from_millis(500);
/// How often old evidence is purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Why mail schoolgate wrote was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotSent {
    /// The next hop refused it (5xx, or an address it will not take): trying again is useless.
    Refused(String),
    /// Unreachable, deferred (4xx), timed out: try again later.
    Later(String),
}

impl std::fmt::Display for NotSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotSent::Refused(why) | NotSent::Later(why) => f.write_str(why),
        }
    }
}

/// When a mail that failed may be tried again.
#[derive(Debug, Clone, Copy)]
struct Retry {
    failures: u32,
    next: Instant,
}

/// What the sender remembers between ticks.
#[derive(Default)]
struct State {
    /// When the last alert about each sender (lower case) went.
    last_alert: HashMap<String, jiff::Timestamp>,
    /// Mail that failed, by queue key (`alert:SENDER`, `notice:PATH`).
    retries: HashMap<String, Retry>,
    /// The audit database, for the chain's head each alert carries.
    backend: Option<Arc<Mutex<Box<dyn crate::store::Backend>>>>,
}

impl State {
    fn waiting(&self, key: &str) -> bool {
        self.retries
            .get(key)
            .is_some_and(|r| Instant::now() < r.next)
    }

    /// Counts one more failure of `key`; returns the wait before the next try.
    fn failed(&mut self, key: &str) -> Duration {
        let failures = self.retries.get(key).map_or(0, |r| r.failures) + 1;
        let wait = alerts::retry_after(failures);
        self.retries.insert(
            key.to_string(),
            Retry {
                failures,
                next: Instant::now() + wait,
            },
        );
        wait
    }
}

/// Runs until the gateway stops.
pub async fn run(relay: Arc<Relay>) {
    let mut stop = relay.shutdown_signal();
    let mut last_purge: Option<std::time::Instant> = None;
    let mut state = State::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = send_due(&relay, &mut state).await {
            tracing::error!(error = %e, "DSL alerts: the queue could not be read");
        }
        if let Err(e) = send_notices(&relay, &mut state).await {
            tracing::error!(error = %e, "sender notices: the queue could not be read");
        }
        if last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
            last_purge = Some(std::time::Instant::now());
            purge(&relay).await;
        }
    }
}

/// Sends mail schoolgate itself wrote (an alert, a notice, a checkpoint) from `alert_from` to
/// `to`, straight to the next hop: its reply, or why it was not sent.
pub(crate) async fn send_own_mail(
    relay: &Relay,
    to: Vec<String>,
    bytes: &[u8],
) -> Result<String, NotSent> {
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
        Ok(Err(e @ DeliveryError::Refused { .. })) => Err(NotSent::Refused(e.to_string())),
        Ok(Err(e)) => Err(NotSent::Later(e.to_string())),
        Err(_) => Err(NotSent::Later(format!(
            "next hop {} did not answer within {} s",
            hop.describe(),
            config.relay.next_hop_timeout.0.as_secs()
        ))),
    }
}

/// Writes an audit record (and logs it); false when it could not be written.
async fn record(relay: &Relay, detail: String, undelivered: bool) -> bool {
    let entry = AuditRecord::action(RecordKind::Action, crate::store::GATEWAY, detail.clone());
    match relay.audit.append(entry).await {
        Ok(_) => {
            if undelivered {
                tracing::error!("{detail}");
            } else {
                tracing::info!("{detail}");
            }
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "{detail}: could not be recorded; it stays queued");
            false
        }
    }
}

/// The head of the audit chain now, kept as a checkpoint in the database too.
async fn chain_head(relay: &Relay, state: &mut State) -> Option<ChainHead> {
    if state.backend.is_none() {
        let storage = relay.config().storage.clone();
        match tokio::task::spawn_blocking(move || crate::store::open_audit(&storage)).await {
            Ok(Ok(b)) => state.backend = Some(Arc::new(Mutex::new(b))),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the audit head could not be read for the alert");
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "the audit head could not be read for the alert");
                return None;
            }
        }
    }
    let backend = state.backend.clone()?;
    let head = tokio::task::spawn_blocking(move || match backend.lock() {
        Ok(mut b) => b.checkpoint(),
        Err(_) => Err(crate::store::StoreError::WriterGone),
    })
    .await;
    match head {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the audit head could not be read for the alert");
            state.backend = None;
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "the audit head could not be read for the alert");
            None
        }
    }
}

async fn remove_alerts(relay: &Relay, paths: Vec<QueueKey>) {
    let spool = relay.spool.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || spool.alerts_sent(&paths))
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
    {
        tracing::error!(error = %e, "sent alerts could not be removed from the queue");
    }
}

/// When any gateway last alerted about `sender_key` (a shared store; `None` on one machine,
/// where [`State::last_alert`] knows).
async fn shared_last_alert(relay: &Relay, sender_key: &str) -> Option<jiff::Timestamp> {
    let spool = relay.spool.clone();
    let key = sender_key.to_string();
    match tokio::task::spawn_blocking(move || spool.last_alert(&key)).await {
        Ok(Ok(last)) => last,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "when the other gateway last alerted could not be read");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "when the other gateway last alerted could not be read");
            None
        }
    }
}

/// Tells the other gateways (a shared store) that an alert about `sender_key` went at `at`.
async fn shared_alert_sent(relay: &Relay, sender_key: &str, at: jiff::Timestamp) {
    let spool = relay.spool.clone();
    let key = sender_key.to_string();
    match tokio::task::spawn_blocking(move || spool.alert_sent_about(&key, at)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "the alert's time could not be shared"),
        Err(e) => tracing::warn!(error = %e, "the alert's time could not be shared"),
    }
}

async fn send_due(relay: &Relay, state: &mut State) -> std::io::Result<()> {
    let spool = relay.spool.clone();
    let pending = tokio::task::spawn_blocking(move || spool.pending_alerts())
        .await
        .map_err(std::io::Error::other)??;
    if pending.is_empty() {
        return Ok(());
    }
    // The longest alert window of the trust, for forgetting senders below.
    let window = std::iter::once(relay.config())
        .chain(relay.schools().iter().map(|s| Arc::clone(&s.config)))
        .map(|c| c.safeguarding.alert_window.0)
        .max()
        .unwrap_or_default();
    let now = jiff::Timestamp::now();
    let mut by_sender: Vec<(String, Vec<(QueueKey, Flagged)>)> = Vec::new();
    for (path, item) in pending {
        let key = item.sender.trim().to_lowercase();
        match by_sender.iter_mut().find(|(k, _)| *k == key) {
            Some((_, items)) => items.push((path, item)),
            None => by_sender.push((key, vec![(path, item)])),
        }
    }
    for (sender_key, items) in by_sender {
        // In a trust, the sender's school decides: its DSLs, its window, its escalation.
        let (config, directory) = relay.for_sender(&items[0].1.sender);
        let window = config.safeguarding.alert_window.0;
        let oldest = items
            .iter()
            .filter_map(|(_, i)| i.time.parse::<jiff::Timestamp>().ok())
            .min()
            .unwrap_or(now);
        // Another gateway on the shared store may have alerted about this sender since.
        let last = state
            .last_alert
            .get(&sender_key)
            .copied()
            .max(shared_last_alert(relay, &sender_key).await);
        let retry_key = format!("alert:{sender_key}");
        if !alerts::alert_due(now, last, oldest, window) || state.waiting(&retry_key) {
            continue;
        }
        let sender = items[0].1.sender.clone();
        let paths: Vec<_> = items.iter().map(|(p, _)| p.clone()).collect();
        let flagged: Vec<Flagged> = items.into_iter().map(|(_, i)| i).collect();
        let seqs: Vec<u64> = flagged.iter().map(|i| i.audit_seq).collect();
        let seq_list = seqs
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let to = alerts::alert_recipients(&config, &directory, &sender);
        let escalated = alerts::concerns_escalation(&config, &directory, &sender);
        if to.is_empty() {
            let detail = alerts::undelivered_detail(
                "alert",
                &seqs,
                &to,
                "nobody to send it to: list the DSLs in [safeguarding] dsl (and, for alerts about the headteacher or a DSL, [safeguarding] escalate_to)",
            );
            if record(relay, detail, true).await {
                remove_alerts(relay, paths).await;
            }
            continue;
        }
        // A follow-up when these flags came while the window after the last alert was open.
        let follows = last.filter(|t| {
            oldest.duration_since(*t)
                < jiff::SignedDuration::try_from(window).unwrap_or(jiff::SignedDuration::MAX)
        });
        let head = chain_head(relay, state).await;
        let alert_from = config.alert_from();
        let mail = AlertMail {
            from: &alert_from,
            to: &to,
            school: &config.school.name,
            escalated,
            follows,
            checkpoint: head.as_ref().map(|h| (h.seq, h.hash.as_str())),
            now,
        };
        let bytes = match alerts::compose(&flagged, &mail) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "DSL alert could not be composed");
                continue;
            }
        };
        let outcome = send_own_mail(relay, to.clone(), &bytes).await;
        let (detail, undelivered) = match outcome {
            Ok(reply) => (
                format!(
                    "DSL alert sent to {} for audit records {seq_list} ({} flagged messages from {}){}{}; next hop: {reply}",
                    to.join(", "),
                    flagged.len(),
                    alerts::one_line(&sender),
                    if escalated { ", escalated" } else { "" },
                    head.as_ref()
                        .map(|h| format!("; audit checkpoint {}:{}", h.seq, h.hash))
                        .unwrap_or_default(),
                ),
                false,
            ),
            Err(NotSent::Refused(why)) => (
                alerts::undelivered_detail("alert", &seqs, &to, &format!("refused: {why}")),
                true,
            ),
            Err(NotSent::Later(why)) => {
                if now.duration_since(oldest).unsigned_abs() >= alerts::GIVE_UP_AFTER {
                    (
                        alerts::undelivered_detail(
                            "alert",
                            &seqs,
                            &to,
                            &format!("not taken for two days; last: {why}"),
                        ),
                        true,
                    )
                } else {
                    let wait = state.failed(&retry_key);
                    tracing::warn!(error = %why, sender = %alerts::one_line(&sender),
                        "DSL alert not sent yet; trying again in {} s", wait.as_secs());
                    continue;
                }
            }
        };
        // Recorded before the queue files go: a crash in between sends the alert twice rather
        // than never.
        if !record(relay, detail, undelivered).await {
            continue;
        }
        state.retries.remove(&retry_key);
        if !undelivered {
            shared_alert_sent(relay, &sender_key, now).await;
            state.last_alert.insert(sender_key, now);
        }
        remove_alerts(relay, paths).await;
    }
    // Forget senders whose window has long closed.
    let keep = jiff::SignedDuration::try_from(window.saturating_mul(2))
        .unwrap_or(jiff::SignedDuration::MAX);
    state
        .last_alert
        .retain(|_, t| now.duration_since(*t) < keep);
    Ok(())
}

/// Sends the notices to senders of held messages, at once (no window: the sender is waiting),
/// and only to addresses in the school's own domains.
async fn send_notices(relay: &Relay, state: &mut State) -> std::io::Result<()> {
    let spool = relay.spool.clone();
    let pending = tokio::task::spawn_blocking(move || spool.pending_notices())
        .await
        .map_err(std::io::Error::other)??;
    if pending.is_empty() {
        return Ok(());
    }
    let config = relay.config();
    for (path, notice, queued) in pending {
        let retry_key = format!("notice:{path}");
        if state.waiting(&retry_key) {
            continue;
        }
        let to = vec![notice.to.clone()];
        let (detail, undelivered) = if !alerts::is_school_address(&config, &notice.to) {
            (
                format!(
                    "sender notice for quarantine {} (audit record {}) not sent: {} is not in the school's own domains",
                    alerts::one_line(&notice.quarantine_id),
                    notice.audit_seq,
                    alerts::one_line(&notice.to)
                ),
                false,
            )
        } else {
            match send_own_mail(relay, to.clone(), notice.message.as_bytes()).await {
                Ok(reply) => (
                    format!(
                        "sender notice sent to {} for quarantine {} (audit record {}); next hop: {reply}",
                        alerts::one_line(&notice.to),
                        alerts::one_line(&notice.quarantine_id),
                        notice.audit_seq
                    ),
                    false,
                ),
                Err(NotSent::Refused(why)) => (
                    alerts::undelivered_detail(
                        "notice",
                        &[notice.audit_seq],
                        &to,
                        &format!("refused: {why}"),
                    ),
                    true,
                ),
                Err(NotSent::Later(why)) => {
                    let age = SystemTime::now()
                        .duration_since(queued)
                        .unwrap_or(Duration::ZERO);
                    if age >= alerts::GIVE_UP_AFTER {
                        (
                            alerts::undelivered_detail(
                                "notice",
                                &[notice.audit_seq],
                                &to,
                                &format!("not taken for two days; last: {why}"),
                            ),
                            true,
                        )
                    } else {
                        let wait = state.failed(&retry_key);
                        tracing::warn!(error = %why, to = %alerts::one_line(&notice.to),
                            "sender notice not sent yet; trying again in {} s", wait.as_secs());
                        continue;
                    }
                }
            }
        };
        if !record(relay, detail, undelivered).await {
            continue;
        }
        state.retries.remove(&retry_key);
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
    purge_release_links(relay).await;
}

/// Forgets the senders' release links that expired more than 30 days ago (until then a late
/// click is told "expired" rather than "not known").
async fn purge_release_links(relay: &Relay) {
    let links = crate::store::release::ReleaseLinks::open(&relay.config().storage);
    let cutoff = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(30 * 24);
    match tokio::task::spawn_blocking(move || links.purge(cutoff)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "release link purge failed"),
        Err(e) => tracing::error!(error = %e, "release link purge failed"),
    }
}

/// Deletes quarantined messages held longer than `[sensitive] quarantine_retention_days` (none
/// when it is not set), with an audit record naming them.
async fn purge_quarantine(relay: &Relay) {
    let config = relay.config();
    let Some(days) = config.sensitive.quarantine_retention_days else {
        return;
    };
    let cutoff = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(i64::from(days) * 24);
    let quarantine = Quarantine::open(&config.storage);
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
