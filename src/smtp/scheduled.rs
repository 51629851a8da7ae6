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
/// How soon it looks again when another gateway is sending (for its "sent" record, or to take
/// over a claim that expired).
const ELSEWHERE: Duration = Duration::from_secs(20);

/// How a send that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// Sent (or refused for good, or nothing to send), and recorded.
    Sent,
    /// Another gateway sharing the trail claimed it and is sending: look again soon.
    Elsewhere,
}

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
    ) -> impl Future<Output = Result<Done, String>> + Send;
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
                Ok(Done::Sent) => sent = Some(slot),
                Ok(Done::Elsewhere) => wait = ELSEWHERE,
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
    let mut last: Option<jiff::Timestamp> = None;
    gateway_actions(backend, now, &mut |_, detail| {
        let detail = detail.strip_prefix(UNDELIVERED_PREFIX).unwrap_or(detail);
        if let Some(rest) = detail.trim_start().strip_prefix(prefix)
            && let Some((slot, what)) = rest.split_once(' ')
            && what.starts_with(to)
            && !what.contains("not sent yet")
            && let Ok(slot) = slot.parse::<jiff::Timestamp>()
        {
            last = last.max(Some(slot));
        }
    })?;
    Ok(last)
}

/// Each action the gateway itself recorded in the trail's last 8 days, in order: its time as
/// recorded and its detail.
fn gateway_actions(
    backend: &mut dyn Backend,
    now: jiff::Timestamp,
    each: &mut dyn FnMut(&str, &str),
) -> Result<(), StoreError> {
    #[derive(serde::Deserialize)]
    struct Act {
        #[serde(default)]
        time: String,
        kind: String,
        #[serde(default)]
        action: Option<crate::store::ActionRecord>,
    }
    let since = (now - jiff::SignedDuration::from_hours(8 * 24))
        .strftime("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let Some(range) = backend.seq_range(Some(&since), None)? else {
        return Ok(());
    };
    backend.scan(range, &[], &mut |entry| {
        if let Ok(r) = serde_json::from_str::<Act>(&entry.record_json)
            && r.kind == "action"
            && let Some(a) = r.action
            && a.actor == GATEWAY
        {
            each(&r.time, &a.detail);
        }
        Ok(true)
    })
}

/// How long a gateway's claim to send one copy stands with no "sent" record after it: past
/// this, another gateway takes it over and sends (the claimer died, or hangs). Sending takes
/// seconds; ten minutes leaves room for a slow next hop without letting a dead claim stop the
/// copy for long.
pub const CLAIM_EXPIRES: jiff::SignedDuration = jiff::SignedDuration::from_secs(600);

/// What became of a claim to send one copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This gateway sends it.
    Mine,
    /// It was sent already (or refused for good), by any gateway.
    Sent,
    /// Another gateway's claim stands (named): it is sending; look again later, and take it
    /// over if no "sent" follows within [`CLAIM_EXPIRES`].
    Elsewhere(String),
}

/// Whether this gateway sends the copy `what` (empty: the only one) of `slot` of the mail
/// whose records start with `prefix`, the copy that counts as sent starting with `sent_to`.
/// Gateways sharing one trail claim in it: `PREFIX SLOT [WHAT] claimed by NODE`. The trail's
/// appends are serialised across gateways, so every gateway reads the claims in one order and
/// agrees on the standing one ([`standing_claim`]): the first, or the first made
/// [`CLAIM_EXPIRES`] or more after the one standing before it.
pub async fn claim(
    relay: &Relay,
    prefix: &'static str,
    slot: jiff::Timestamp,
    what: &str,
    sent_to: &str,
) -> Result<Claim, String> {
    let claimed = if what.is_empty() {
        format!("{prefix}{slot} claimed by ")
    } else {
        format!("{prefix}{slot} {what} claimed by ")
    };
    let storage = relay.config().storage.clone();
    let sent_to = sent_to.to_string();
    let read = {
        let (claimed, sent_to) = (claimed.clone(), sent_to.clone());
        move || {
            let (storage, claimed, sent_to) = (storage.clone(), claimed.clone(), sent_to.clone());
            tokio::task::spawn_blocking(
                move || -> Result<(bool, Vec<(jiff::Timestamp, String)>), String> {
                    let mut backend =
                        crate::store::open_audit_read_only(&storage).map_err(|e| e.to_string())?;
                    let now = jiff::Timestamp::now();
                    let sent = last_sent(&mut *backend, now, prefix, &sent_to)
                        .map_err(|e| e.to_string())?
                        == Some(slot);
                    let claims = claims(&mut *backend, now, &claimed).map_err(|e| e.to_string())?;
                    Ok((sent, claims))
                },
            )
        }
    };
    let (sent, found) = read().await.map_err(|e| e.to_string())??;
    if sent {
        return Ok(Claim::Sent);
    }
    let now = jiff::Timestamp::now();
    let standing = standing_claim(&found, CLAIM_EXPIRES);
    let expired = standing.is_some_and(|(t, _)| now.duration_since(t) >= CLAIM_EXPIRES);
    if standing.is_none() || expired {
        let mut detail = format!("{claimed}{}", node());
        if let Some((t, other)) = standing {
            detail.push_str(&format!(
                " (taking over: {other} claimed it at {t} and has not sent it)"
            ));
        }
        record(relay, detail)
            .await
            .map_err(|e| format!("the claim could not be recorded: {e}"))?;
    }
    let (sent, found) = read().await.map_err(|e| e.to_string())??;
    if sent {
        return Ok(Claim::Sent);
    }
    match standing_claim(&found, CLAIM_EXPIRES) {
        Some((_, who)) if who == node() => Ok(Claim::Mine),
        Some((_, who)) => {
            tracing::info!(%slot, "{}{what}: being sent by another gateway ({who})", prefix.trim_end());
            Ok(Claim::Elsewhere(who.to_string()))
        }
        // The claim was written but cannot be read back (cut from the trail?): not sent.
        None => Err("the claim was recorded but is not in the audit trail".into()),
    }
}

/// Of `claims` (time, node) in the trail's order, the one standing: the first, replaced only by
/// a claim made `expires` or more after it (its claimer never sent: dead, or hung).
pub fn standing_claim(
    claims: &[(jiff::Timestamp, String)],
    expires: jiff::SignedDuration,
) -> Option<(jiff::Timestamp, &str)> {
    let mut standing: Option<(jiff::Timestamp, &str)> = None;
    for (t, node) in claims {
        match standing {
            Some((s, _)) if t.duration_since(s) < expires => {}
            _ => standing = Some((*t, node.as_str())),
        }
    }
    standing
}

/// The claims starting `claimed` in the trail's last 8 days, in order: (time, node).
fn claims(
    backend: &mut dyn Backend,
    now: jiff::Timestamp,
    claimed: &str,
) -> Result<Vec<(jiff::Timestamp, String)>, StoreError> {
    let mut found = Vec::new();
    gateway_actions(backend, now, &mut |time, detail| {
        if let Some(rest) = detail.strip_prefix(claimed)
            && let Some(node) = rest.split_whitespace().next()
            && let Ok(time) = time.parse::<jiff::Timestamp>()
        {
            found.push((time, node.to_string()));
        }
    })?;
    Ok(found)
}

/// This process, as its claims name it: the gateway's hostname, process id and a random tag,
/// so two gateways on one host (and one gateway before and after a restart) are told apart.
pub fn node() -> &'static str {
    static NODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NODE.get_or_init(|| {
        let mut tag = [0u8; 4];
        let _ = getrandom::fill(&mut tag);
        format!(
            "{}/{}/{}",
            hostname(),
            std::process::id(),
            tag.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gateway".into())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_first_claim_stands_until_it_expires_unsent_and_then_the_first_after_it() {
        let ten = CLAIM_EXPIRES;
        let claims = |list: &[(&str, &str)]| -> Vec<(jiff::Timestamp, String)> {
            list.iter().map(|(t, n)| (at(t), n.to_string())).collect()
        };
        assert_eq!(standing_claim(&[], ten), None);
        // Two gateways claiming at once: the first in the trail's order sends.
        let both = claims(&[
            ("2026-12-07T07:30:00.2Z", "b"),
            ("2026-12-07T07:30:00.1Z", "a"),
        ]);
        assert_eq!(
            standing_claim(&both, ten),
            Some((at("2026-12-07T07:30:00.2Z"), "b"))
        );
        // A claim made while another stands loses, however late, until ten minutes are up.
        let within = claims(&[("2026-12-07T07:30:00Z", "a"), ("2026-12-07T07:39:59Z", "b")]);
        assert_eq!(standing_claim(&within, ten).map(|c| c.1), Some("a"));
        // One made ten minutes or more after the standing one takes over (its claimer never
        // sent), and two taking over at once agree on the first of them.
        let over = claims(&[
            ("2026-12-07T07:30:00Z", "a"),
            ("2026-12-07T07:40:00Z", "b"),
            ("2026-12-07T07:40:01Z", "c"),
        ]);
        assert_eq!(
            standing_claim(&over, ten),
            Some((at("2026-12-07T07:40:00Z"), "b"))
        );
    }

    /// The claims are read back from the trail itself: a claim by a gateway that died is
    /// taken over once it is older than [`CLAIM_EXPIRES`], and not before.
    #[tokio::test(flavor = "multi_thread")]
    async fn claims_are_read_from_the_trail_in_order_with_their_times() {
        let dir = tempfile::tempdir().unwrap();
        let storage = crate::config::Storage {
            state_dir: dir.path().to_path_buf(),
            database: None,
        };
        let log =
            crate::store::AuditLog::start(crate::store::open_audit(&storage).unwrap()).unwrap();
        let now = jiff::Timestamp::now();
        let slot = "2026-12-07T07:30:00Z";
        let claim_at = |ago: i64, node: &str| AuditRecord {
            time: (now - jiff::SignedDuration::from_secs(ago)).to_string(),
            ..AuditRecord::action(
                RecordKind::Action,
                GATEWAY,
                format!("quarantine digest of {slot} claimed by {node} (taking over: …)"),
            )
        };
        log.append(claim_at(700, "dead/1/aa")).await.unwrap();
        log.append(AuditRecord::action(
            RecordKind::Action,
            GATEWAY,
            format!("weekly report of {slot} the school's copy claimed by other/2/bb"),
        ))
        .await
        .unwrap();
        log.append(claim_at(60, "alive/3/cc")).await.unwrap();
        let found = tokio::task::spawn_blocking(move || {
            let mut backend = crate::store::open_audit_read_only(&storage).unwrap();
            claims(
                &mut *backend,
                now,
                &format!("quarantine digest of {slot} claimed by "),
            )
            .unwrap()
        })
        .await
        .unwrap();
        let nodes: Vec<&str> = found.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(nodes, ["dead/1/aa", "alive/3/cc"]);
        assert_eq!(
            standing_claim(&found, CLAIM_EXPIRES).map(|c| c.1),
            Some("alive/3/cc"),
            "the dead gateway's claim, 11 minutes old, was taken over"
        );
        assert_eq!(
            standing_claim(&found[..1], CLAIM_EXPIRES).map(|c| c.1),
            Some("dead/1/aa")
        );
    }
}
