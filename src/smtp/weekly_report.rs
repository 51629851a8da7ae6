//! Mails the weekly report: at `[safeguarding] weekly_report` ("Mon 07:30" by default, in
//! `[school] timezone`), the report of the 7 days before goes to the DSLs as readable HTML with
//! a plain-text part, and what concerns the headteacher or a DSL goes, as its own report, to
//! the escalation recipients only.
//!
//! Each report sent is an audit record (`weekly report of SLOT to the DSLs sent to …`); at
//! start the gateway reads the last one back, so a restart never sends a week's report twice,
//! and one missed while the gateway was down is sent when it is back (within a day; see
//! [`schedule::due`]). A report that cannot be delivered is retried, and recorded once as
//! `mail-undelivered:` so the next report names it.

use std::sync::Arc;
use std::time::Duration;

use super::alert_sender::{NotSent, send_own_mail};
use super::server::Relay;
use crate::review::report::render::{Format, render, subject, summary};
use crate::review::report::schedule::{self, WeeklyReport};
use crate::review::report::{Audience, Period, Report, UNDELIVERED_PREFIX, trail};
use crate::store::sqlite::SqliteBackend;
use crate::store::{AuditRecord, Backend, GATEWAY, RecordKind, StoreError};

/// The longest the scheduler sleeps before looking again (a reloaded config, a clock change).
const RECHECK: Duration = Duration::from_secs(60);
/// How long after a failed send it tries again.
const RETRY: Duration = Duration::from_secs(300);
/// What every record of a mailed report starts with; the slot follows.
const SENT_PREFIX: &str = "weekly report of ";
const TO_DSLS: &str = "to the DSLs";

/// Runs until the gateway stops.
pub async fn run(relay: Arc<Relay>) {
    let mut stop = relay.shutdown_signal();
    let state_dir = relay.config().storage.state_dir.clone();
    let read = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
        let mut backend = SqliteBackend::open(&state_dir)?;
        let began = trail::trail_began(&mut backend)?;
        Ok((last_sent(&mut backend, jiff::Timestamp::now())?, began))
    })
    .await;
    let (mut sent, began) = match read {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "weekly report: the audit trail could not be read; the report is off until restart");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "weekly report: the audit trail could not be read; the report is off until restart");
            return;
        }
    };
    let mut undelivered_recorded: Option<jiff::Timestamp> = None;
    let mut announced: Option<(WeeklyReport, Option<jiff::Timestamp>)> = None;
    loop {
        let config = relay.config();
        let schedule = config.safeguarding.weekly_report;
        let tz =
            jiff::tz::TimeZone::get(&config.school.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
        let now = jiff::Timestamp::now();
        let mut wait = RECHECK;
        if let Some(slot) = schedule::due(schedule, now, &tz, sent, began) {
            match send(&relay, slot, now).await {
                Ok(()) => sent = Some(slot),
                Err(e) => {
                    tracing::warn!(error = %e, %slot, "weekly report not sent yet; will retry");
                    if undelivered_recorded != Some(slot) {
                        let detail = format!(
                            "{UNDELIVERED_PREFIX} {SENT_PREFIX}{slot} {TO_DSLS} not sent yet (will retry for a day): {e}"
                        );
                        if record(&relay, detail).await.is_ok() {
                            undelivered_recorded = Some(slot);
                        }
                    }
                    wait = RETRY;
                }
            }
        }
        let next = schedule.0.and_then(|s| schedule::next_after(s, now, &tz));
        if announced != Some((schedule, sent)) {
            announced = Some((schedule, sent));
            match next {
                Some(n) => tracing::info!(
                    "weekly report ({schedule}, {}): next on {}{}",
                    config.school.timezone,
                    n.to_zoned(tz.clone()).strftime("%a %Y-%m-%d %H:%M %Z"),
                    sent.map(|s| format!("; the last one sent was that of {s}"))
                        .unwrap_or_default()
                ),
                None => {
                    tracing::info!("weekly report: off ([safeguarding] weekly_report = \"off\")")
                }
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

/// The slot of the last report to the DSLs in the trail's last 8 days.
fn last_sent(
    backend: &mut dyn Backend,
    now: jiff::Timestamp,
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
        if let Some(rest) = detail.trim_start().strip_prefix(SENT_PREFIX)
            && let Some((slot, what)) = rest.split_once(' ')
            && what.starts_with(TO_DSLS)
            && !what.contains("not sent yet")
            && let Ok(slot) = slot.parse::<jiff::Timestamp>()
        {
            last = last.max(Some(slot));
        }
        Ok(true)
    })?;
    Ok(last)
}

async fn record(relay: &Relay, detail: String) -> Result<(), StoreError> {
    tracing::info!("{detail}");
    relay
        .audit
        .append(AuditRecord::action(RecordKind::Action, GATEWAY, detail))
        .await
        .map(|_| ())
        .inspect_err(|e| tracing::error!(error = %e, "the weekly report could not be recorded"))
}

/// Builds and mails both copies of the report of the week before `slot`; an error means the
/// DSLs' copy was not sent (try again).
async fn send(relay: &Relay, slot: jiff::Timestamp, now: jiff::Timestamp) -> Result<(), String> {
    let config = relay.config();
    let directory = relay.directory();
    let state_dir = config.storage.state_dir.clone();
    let (cfg, dir) = (Arc::clone(&config), Arc::clone(&directory));
    let (dsl_copy, escalation) = tokio::task::spawn_blocking(move || {
        let tz = jiff::tz::TimeZone::get(&cfg.school.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
        let mut backend = SqliteBackend::open_read_only(&state_dir)?;
        trail::reports(&mut backend, &cfg, &dir, Period::last_week(slot, &tz), now)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("the audit trail could not be read: {e}"))?;

    let dsl: Vec<String> = config
        .safeguarding
        .dsl
        .iter()
        .map(|a| a.0.trim().to_string())
        .collect();
    if dsl.is_empty() {
        tracing::error!("the weekly report could not be sent: [safeguarding] dsl is empty");
        // Recorded as done for this slot: nobody to retry for.
        let _ = record(
            relay,
            format!(
                "{SENT_PREFIX}{slot} {TO_DSLS} not sent: no DSL is configured ([safeguarding] dsl)"
            ),
        )
        .await;
    } else {
        let detail = match mail(relay, &dsl_copy, &dsl, slot, now).await {
            Ok(reply) => format!(
                "{SENT_PREFIX}{slot} {TO_DSLS} sent to {}: {}; chain head {}; next hop: {reply}",
                dsl.join(", "),
                summary(&dsl_copy),
                dsl_copy.chain.head_line()
            ),
            // Refused for good: trying again would be refused again. Recorded, so the next
            // report and the undelivered page name it.
            Err(NotSent::Refused(e)) => format!(
                "{UNDELIVERED_PREFIX} {SENT_PREFIX}{slot} {TO_DSLS} refused for {}: {e}",
                dsl.join(", ")
            ),
            Err(NotSent::Later(e)) => return Err(e),
        };
        record(relay, detail).await.map_err(|e| e.to_string())?;
    }

    if !escalation.is_empty() {
        let concerned: Vec<String> = escalation
            .by_staff
            .iter()
            .map(|c| c.key.clone())
            .chain(escalation.unreviewed.iter().map(|c| c.sender.clone()))
            .collect();
        let to = trail::escalation_recipients(&config, &concerned);
        let detail = if to.is_empty() {
            format!(
                "{UNDELIVERED_PREFIX} {SENT_PREFIX}{slot} to escalation not sent: nobody to send it to (set [safeguarding] escalate_to)"
            )
        } else {
            match mail(relay, &escalation, &to, slot, now).await {
                Ok(reply) => format!(
                    "{SENT_PREFIX}{slot} to escalation sent to {}: {}; next hop: {reply}",
                    to.join(", "),
                    summary(&escalation)
                ),
                Err(NotSent::Refused(e) | NotSent::Later(e)) => format!(
                    "{UNDELIVERED_PREFIX} {SENT_PREFIX}{slot} to escalation not sent to {}: {e}",
                    to.join(", ")
                ),
            }
        };
        let _ = record(relay, detail).await;
    }
    Ok(())
}

/// Composes `report` as multipart/alternative (text and HTML) and sends it to `to`.
async fn mail(
    relay: &Relay,
    report: &Report,
    to: &[String],
    slot: jiff::Timestamp,
    now: jiff::Timestamp,
) -> Result<String, NotSent> {
    let bytes = compose(report, &relay.config().alert_from(), to, slot, now)
        .map_err(|e| NotSent::Refused(format!("the report could not be composed: {e}")))?;
    send_own_mail(relay, to.to_vec(), &bytes).await
}

/// The report as a mail from `from` to `to`.
pub fn compose(
    report: &Report,
    from: &str,
    to: &[String],
    slot: jiff::Timestamp,
    now: jiff::Timestamp,
) -> std::io::Result<Vec<u8>> {
    let audience = match report.audience {
        Audience::Dsl => "dsl",
        Audience::Escalation => "escalation",
    };
    mail_builder::MessageBuilder::new()
        .from(("schoolgate", from))
        .to(to
            .iter()
            .map(|d| mail_builder::headers::address::Address::from(d.as_str()))
            .collect::<Vec<_>>())
        .subject(subject(report))
        .date(now.as_second())
        .message_id(format!(
            "{}.{}.weekly-report-{audience}@schoolgate",
            slot.as_second(),
            now.as_millisecond()
        ))
        .header(
            "Auto-Submitted",
            mail_builder::headers::raw::Raw::new("auto-generated"),
        )
        .text_body(render(report, Format::Text))
        .html_body(render(report, Format::Html))
        .write_to_vec()
}
