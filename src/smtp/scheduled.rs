//! One scheduler for the mail schoolgate sends on a clock: the DSLs' weekly report
//! ([`super::weekly_report`]) and the network manager's quarantine digest
//! ([`super::quarantine_digest`]).
//!
//! Each is a [`Scheduled`]: when it goes (a [`Slot`] in `[school] timezone`, re-read at every
//! tick so a reloaded config counts), how it is sent, and how its audit records start. Each one
//! sent is an audit record (`SENT_PREFIX SLOT SENT_TO …`); at start the gateway reads the last
//! one back, so a restart never sends one twice, and one missed while the gateway was down is
//! sent when it is back (within a day; see [`schedule::due`]). One that cannot be delivered is
//! retried, and recorded once as `mail-undelivered: … not sent yet`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::server::Relay;
use crate::config::Config;
use crate::review::report::schedule::{self, Slot};
use crate::review::report::{UNDELIVERED_PREFIX, trail};
use crate::store::{AuditRecord, Backend, GATEWAY, RecordKind, StoreError};

/// The longest the scheduler sleeps before looking again (a reloaded config, a clock change).
const RECHECK: Duration = Duration::from_secs(60);
/// How long after a failed send it tries again.
const RETRY: Duration = Duration::from_secs(300);

/// Mail sent on a clock.
pub trait Scheduled: Send + Sync + 'static {
    /// What it is called in the log: "weekly report".
    const NAME: &'static str;
    /// Every audit record of one sent starts with this, then its slot (RFC 3339) and a space.
    const SENT_PREFIX: &'static str;
    /// After the slot, the record of the copy that counts as sent starts with this.
    const SENT_TO: &'static str;

    /// When it goes under `config`; `None` when off.
    fn slot(config: &Config) -> Option<Slot>;

    /// The setting, as the log names it ("Mon 07:30"), or why it is off.
    fn setting(config: &Config) -> String;

    /// Sends the one of `slot` at `now`, recording it in the audit trail; an error means it was
    /// not sent and is tried again later.
    fn send(
        relay: &Relay,
        slot: jiff::Timestamp,
        now: jiff::Timestamp,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// Runs `J` until the gateway stops.
pub async fn run<J: Scheduled>(relay: Arc<Relay>) {
    let mut stop = relay.shutdown_signal();
    let storage = relay.config().storage.clone();
    let read = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
        let mut backend = crate::store::open_audit(&storage)?;
        let began = trail::trail_began(&mut *backend)?;
        let sent = last_sent(
            &mut *backend,
            jiff::Timestamp::now(),
            J::SENT_PREFIX,
            J::SENT_TO,
        )?;
        Ok((sent, began))
    })
    .await;
    let (mut sent, began) = match read {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "{}: the audit trail could not be read; it is off until restart", J::NAME);
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "{}: the audit trail could not be read; it is off until restart", J::NAME);
            return;
        }
    };
    let mut undelivered_recorded: Option<jiff::Timestamp> = None;
    let mut announced: Option<(Option<Slot>, Option<jiff::Timestamp>)> = None;
    loop {
        let config = relay.config();
        let slot_of = J::slot(&config);
        let tz =
            jiff::tz::TimeZone::get(&config.school.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
        let now = jiff::Timestamp::now();
        let mut wait = RECHECK;
        if let Some(slot) = schedule::due(slot_of, now, &tz, sent, began) {
            match J::send(&relay, slot, now).await {
                Ok(()) => sent = Some(slot),
                Err(e) => {
                    tracing::warn!(error = %e, %slot, "{} not sent yet; will retry", J::NAME);
                    if undelivered_recorded != Some(slot) {
                        let detail = format!(
                            "{UNDELIVERED_PREFIX} {}{slot} {} not sent yet (will retry for a day): {e}",
                            J::SENT_PREFIX,
                            J::SENT_TO
                        );
                        if record(&relay, detail).await.is_ok() {
                            undelivered_recorded = Some(slot);
                        }
                    }
                    wait = RETRY;
                }
            }
        }
        let next = slot_of.and_then(|s| schedule::next_after(s, now, &tz));
        if announced != Some((slot_of, sent)) {
            announced = Some((slot_of, sent));
            match next {
                Some(n) => tracing::info!(
                    "{} ({}, {}): next on {}{}",
                    J::NAME,
                    J::setting(&config),
                    config.school.timezone,
                    n.to_zoned(tz.clone()).strftime("%a %Y-%m-%d %H:%M %Z"),
                    sent.map(|s| format!("; the last one sent was that of {s}"))
                        .unwrap_or_default()
                ),
                None => tracing::info!("{}: off ({})", J::NAME, J::setting(&config)),
            }
        }
        if let Some(n) = next {
            let until = n.duration_since(now).unsigned_abs();
            wait = wait.min(until.max(Duration::from_millis(200)));
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The slot of the last one sent (`PREFIX SLOT TO…`, by the gateway, sent or refused for good,
/// not "not sent yet") in the trail's last 8 days.
pub fn last_sent(
    backend: &mut dyn Backend,
    now: jiff::Timestamp,
    prefix: &str,
    to: &str,
) -> Result<Option<jiff::Timestamp>, StoreError> {
    #[derive(serde::Deserialize)]
    struct Act {
        kind: String,
        #[serde(default)]
        action: Option<crate::store::ActionRecord>,
    }
    let since = (now - jiff::SignedDuration::from_hours(8 * 24))
        .strftime("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let Some(range) = backend.seq_range(Some(&since), None)? else {
        return Ok(None);
    };
    let mut last: Option<jiff::Timestamp> = None;
    backend.scan(range, &[], &mut |entry| {
        let Ok(r) = serde_json::from_str::<Act>(&entry.record_json) else {
            return Ok(true);
        };
        if r.kind != "action" {
            return Ok(true);
        }
        let Some(a) = r.action else { return Ok(true) };
        if a.actor != GATEWAY {
            return Ok(true);
        }
        let detail = a
            .detail
            .strip_prefix(UNDELIVERED_PREFIX)
            .unwrap_or(&a.detail);
        if let Some(rest) = detail.trim_start().strip_prefix(prefix)
            && let Some((slot, what)) = rest.split_once(' ')
            && what.starts_with(to)
            && !what.contains("not sent yet")
            && let Ok(slot) = slot.parse::<jiff::Timestamp>()
        {
            last = last.max(Some(slot));
        }
        Ok(true)
    })?;
    Ok(last)
}

/// Writes `detail` as the gateway's action record (and to the log).
pub async fn record(relay: &Relay, detail: String) -> Result<(), StoreError> {
    tracing::info!("{detail}");
    relay
        .audit
        .append(AuditRecord::action(RecordKind::Action, GATEWAY, detail))
        .await
        .map(|_| ())
        .inspect_err(|e| tracing::error!(error = %e, "mail sent on a clock could not be recorded"))
}
