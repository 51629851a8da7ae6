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
//!
//! In a trust (`[[schools]]`), each school's DSLs get their own school's report and the
//! trust-wide DSLs the trust summary ([`send_trust`]); each copy is claimed in the shared trail
//! first, so of several gateways on one trail exactly one sends it.

use std::sync::Arc;

use super::alert_sender::{NotSent, send_own_mail};
use super::scheduled::{Claim, Done, Scheduled, claim, record};
use super::server::Relay;
use crate::config::Config;
use crate::review::report::render::{
    Format, render, render_summary, subject, summary, summary_of_trust, summary_subject,
};
use crate::review::report::schedule::Slot;
use crate::review::report::{Audience, Period, Report, UNDELIVERED_PREFIX, one_line, trail};

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
    ) -> Result<Done, String> {
        send(relay, slot, now).await
    }
}

/// Runs until the gateway stops.
pub async fn run(relay: Arc<Relay>) {
    super::scheduled::run::<WeeklyReport>(relay).await
}

/// Builds and mails both copies of the report of the week before `slot`; an error means the
/// DSLs' copy was not sent (try again). In a trust, each school's and the trust summary.
async fn send(relay: &Relay, slot: jiff::Timestamp, now: jiff::Timestamp) -> Result<Done, String> {
    if !relay.schools().is_empty() {
        return send_trust(relay, slot, now).await;
    }
    let config = relay.config();
    // Gateways sharing one database (`[storage] database`) share one trail: the copy is claimed
    // there first, so only one of them sends it (a single school's SQLite trail has one).
    if config.storage.database.is_some() {
        match claim(relay, SENT_PREFIX, slot, SCHOOL_COPY, TO_DSLS).await? {
            Claim::Mine => {}
            Claim::Sent => return Ok(Done::Sent),
            Claim::Elsewhere(_) => return Ok(Done::Elsewhere),
        }
    }
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
    Ok(Done::Sent)
}

/// What a school's records say after the slot: `for NAME to its DSLs …`, `for NAME to
/// escalation …`, `for NAME claimed by NODE`.
fn for_school(name: &str) -> String {
    format!("for {}", one_line(name))
}

/// What the trust summary's record says after the slot. It starts with [`TO_DSLS`], so the
/// scheduler counts the slot as sent once the summary is: it goes last.
const TO_TRUST: &str = "to the DSLs (trust summary)";
/// What the trust summary's claim says after the slot.
const TRUST_SUMMARY: &str = "trust summary";
/// What a single school's claim says after the slot, with `[storage] database`.
const SCHOOL_COPY: &str = "the school's copy";

/// A trust's weekly report of `slot`: each school's DSLs get their own school's report (and
/// its escalation recipients what concerns its headteacher or a DSL), then the trust-wide DSLs
/// the trust summary. Each copy is claimed first, so of two gateways on one trail only one
/// sends it, and one already sent (before a restart) is not sent again.
async fn send_trust(
    relay: &Relay,
    slot: jiff::Timestamp,
    now: jiff::Timestamp,
) -> Result<Done, String> {
    let config = relay.config();
    let directory = relay.directory();
    let schools = relay.schools();
    let (cfg, dir, sch) = (
        Arc::clone(&config),
        Arc::clone(&directory),
        Arc::clone(&schools),
    );
    let reports = tokio::task::spawn_blocking(move || {
        let tz = jiff::tz::TimeZone::get(&cfg.school.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
        let pairs: Vec<(&Config, &crate::directory::Directory)> =
            sch.iter().map(|s| (&*s.config, &*s.directory)).collect();
        let mut backend = crate::store::open_audit_read_only(&cfg.storage)?;
        trail::trust_reports(
            &mut *backend,
            &cfg,
            &dir,
            &pairs,
            Period::last_week(slot, &tz),
            now,
        )
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("the audit trail could not be read: {e}"))?;

    let mut later: Vec<String> = Vec::new();
    // Copies another gateway is sending: looked at again soon (sent, or its claim expired).
    let mut elsewhere = false;
    for (school, (dsl_copy, escalation)) in schools.iter().zip(&reports.schools) {
        let what = for_school(school.name());
        let to_dsls = format!("{what} {TO_DSLS_OF}");
        match claim(relay, SENT_PREFIX, slot, &what, &to_dsls).await? {
            Claim::Mine => {}
            Claim::Sent => continue,
            Claim::Elsewhere(_) => {
                elsewhere = true;
                continue;
            }
        }
        let dsl = addresses(&school.config.safeguarding.dsl);
        let detail = if dsl.is_empty() {
            format!(
                "{SENT_PREFIX}{slot} {to_dsls} not sent: no DSL is configured ([schools.safeguarding] dsl of {})",
                one_line(school.name())
            )
        } else {
            match mail(relay, dsl_copy, &dsl, slot, now).await {
                Ok(reply) => format!(
                    "{SENT_PREFIX}{slot} {to_dsls} sent to {}: {}; chain head {}; next hop: {reply}",
                    dsl.join(", "),
                    summary(dsl_copy),
                    dsl_copy.chain.head_line()
                ),
                Err(NotSent::Refused(e)) => format!(
                    "{UNDELIVERED_PREFIX} {SENT_PREFIX}{slot} {to_dsls} refused for {}: {e}",
                    dsl.join(", ")
                ),
                Err(NotSent::Later(e)) => {
                    later.push(format!("{}: {e}", school.name()));
                    continue;
                }
            }
        };
        record(relay, detail).await.map_err(|e| e.to_string())?;
        escalate(relay, &school.config, escalation, &what, slot, now).await;
    }
    if !later.is_empty() {
        return Err(later.join("; "));
    }

    // The summary goes last (its record counts the slot as sent): not while a school's copy
    // is still another gateway's to send.
    if elsewhere {
        return Ok(Done::Elsewhere);
    }
    match claim(relay, SENT_PREFIX, slot, TRUST_SUMMARY, TO_TRUST).await? {
        Claim::Mine => {}
        Claim::Sent => return Ok(Done::Sent),
        Claim::Elsewhere(_) => return Ok(Done::Elsewhere),
    }
    let trust_dsl = addresses(&config.safeguarding.dsl);
    let escalation = &reports.no_school_escalation;
    let detail = if trust_dsl.is_empty() {
        format!(
            "{SENT_PREFIX}{slot} {TO_TRUST} not sent: no trust-wide DSL is configured ([safeguarding] dsl)"
        )
    } else {
        let s = &reports.summary;
        let bytes = compose_parts(
            &config.alert_from(),
            &trust_dsl,
            &summary_subject(s),
            render_summary(s, Format::Text),
            render_summary(s, Format::Html),
            "trust",
            slot,
            now,
        )
        .map_err(|e| format!("the trust summary could not be composed: {e}"))?;
        match send_own_mail(relay, trust_dsl.clone(), &bytes).await {
            Ok(reply) => format!(
                "{SENT_PREFIX}{slot} {TO_TRUST} sent to {}: {}; chain head {}; next hop: {reply}",
                trust_dsl.join(", "),
                summary_of_trust(s),
                s.chain.head_line()
            ),
            Err(NotSent::Refused(e)) => format!(
                "{UNDELIVERED_PREFIX} {SENT_PREFIX}{slot} {TO_TRUST} refused for {}: {e}",
                trust_dsl.join(", ")
            ),
            Err(NotSent::Later(e)) => return Err(e),
        }
    };
    record(relay, detail).await.map_err(|e| e.to_string())?;
    escalate(
        relay,
        &config,
        escalation,
        "for mail from no school",
        slot,
        now,
    )
    .await;
    Ok(Done::Sent)
}

/// What a school's DSLs' record says after `for NAME`.
const TO_DSLS_OF: &str = "to its DSLs";

fn addresses(list: &[crate::config::Address]) -> Vec<String> {
    list.iter()
        .map(|a| a.0.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect()
}

/// Mails `escalation` (when anything is in it) to `config`'s escalation recipients, and records
/// what became of it.
async fn escalate(
    relay: &Relay,
    config: &Config,
    escalation: &Report,
    what: &str,
    slot: jiff::Timestamp,
    now: jiff::Timestamp,
) {
    if escalation.is_empty() {
        return;
    }
    let concerned: Vec<String> = escalation
        .by_staff
        .iter()
        .map(|c| c.key.clone())
        .chain(escalation.unreviewed.iter().map(|c| c.sender.clone()))
        .collect();
    let to = trail::escalation_recipients(config, &concerned);
    let detail = if to.is_empty() {
        format!(
            "{UNDELIVERED_PREFIX} {SENT_PREFIX}{slot} {what} to escalation not sent: nobody to send it to (set [safeguarding] escalate_to)"
        )
    } else {
        match mail(relay, escalation, &to, slot, now).await {
            Ok(reply) => format!(
                "{SENT_PREFIX}{slot} {what} to escalation sent to {}: {}; next hop: {reply}",
                to.join(", "),
                summary(escalation)
            ),
            Err(NotSent::Refused(e) | NotSent::Later(e)) => format!(
                "{UNDELIVERED_PREFIX} {SENT_PREFIX}{slot} {what} to escalation not sent to {}: {e}",
                to.join(", ")
            ),
        }
    };
    let _ = record(relay, detail).await;
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
    compose_parts(
        from,
        to,
        &subject(report),
        render(report, Format::Text),
        render(report, Format::Html),
        audience,
        slot,
        now,
    )
}

/// A report mail from `from` to `to` with a text and an HTML part.
#[allow(clippy::too_many_arguments)]
fn compose_parts(
    from: &str,
    to: &[String],
    subject: &str,
    text: String,
    html: String,
    audience: &str,
    slot: jiff::Timestamp,
    now: jiff::Timestamp,
) -> std::io::Result<Vec<u8>> {
    mail_builder::MessageBuilder::new()
        .from(("schoolgate", from))
        .to(to
            .iter()
            .map(|d| mail_builder::headers::address::Address::from(d.as_str()))
            .collect::<Vec<_>>())
        .subject(subject)
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
        .text_body(text)
        .html_body(html)
        .write_to_vec()
}
