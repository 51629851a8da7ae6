//! Mails the weekly report: at `[safeguarding] weekly_report` ("Mon 07:30" by default, in
//! `[school] timezone`), the report of the 7 days before goes to the DSLs as readable HTML with
//! a plain-text part, and what concerns the headteacher or a DSL goes, as its own report, to
//! the escalation recipients only.
//!
//! Each report sent is an audit record (`weekly report of SLOT to the DSLs sent to …`); the
//! clock is [`super::scheduled`]'s: at start the gateway reads the last one back, so a restart
//! never sends a week's report twice, and one missed while the gateway was down is sent when it
//! is back (within a day). A report that cannot be delivered is retried, and recorded once as
//! `mail-undelivered:` so the next report names it.

use std::sync::Arc;

use super::alert_sender::{NotSent, send_own_mail};
use super::scheduled::{Scheduled, record};
use super::server::Relay;
use crate::config::Config;
use crate::review::report::render::{Format, render, subject, summary};
use crate::review::report::schedule::Slot;
use crate::review::report::{Audience, Period, Report, UNDELIVERED_PREFIX, trail};

/// What every record of a mailed report starts with; the slot follows.
const SENT_PREFIX: &str = "weekly report of ";
const TO_DSLS: &str = "to the DSLs";

/// The weekly report, on [`super::scheduled`]'s clock.
pub struct WeeklyReport;

impl Scheduled for WeeklyReport {
    const NAME: &'static str = "weekly report";
    const SENT_PREFIX: &'static str = SENT_PREFIX;
    const SENT_TO: &'static str = TO_DSLS;

    fn slot(config: &Config) -> Option<Slot> {
        config.safeguarding.weekly_report.0
    }

    fn setting(config: &Config) -> String {
        match config.safeguarding.weekly_report.0 {
            Some(_) => config.safeguarding.weekly_report.to_string(),
            None => "[safeguarding] weekly_report = \"off\"".into(),
        }
    }

    async fn send(
        relay: &Relay,
        slot: jiff::Timestamp,
        now: jiff::Timestamp,
    ) -> Result<(), String> {
        send(relay, slot, now).await
    }
}

/// Runs until the gateway stops.
pub async fn run(relay: Arc<Relay>) {
    super::scheduled::run::<WeeklyReport>(relay).await
}

/// Builds and mails both copies of the report of the week before `slot`; an error means the
/// DSLs' copy was not sent (try again).
async fn send(relay: &Relay, slot: jiff::Timestamp, now: jiff::Timestamp) -> Result<(), String> {
    let config = relay.config();
    let directory = relay.directory();
    let storage = config.storage.clone();
    let (cfg, dir) = (Arc::clone(&config), Arc::clone(&directory));
    let (dsl_copy, escalation) = tokio::task::spawn_blocking(move || {
        let tz = jiff::tz::TimeZone::get(&cfg.school.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
        let mut backend = crate::store::open_audit_read_only(&storage)?;
        trail::reports(&mut *backend, &cfg, &dir, Period::last_week(slot, &tz), now)
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
