//! Mails the network manager's quarantine digest ([`crate::review::digest`]) every day at
//! `[quarantine] digest` (07:30 by default, in `[school] timezone`) to `[quarantine]
//! digest_to`; no `digest_to`, or `digest = "off"`, and it is off. The clock is
//! [`super::scheduled`]'s, as the weekly report's: each digest sent is an audit record
//! (`quarantine digest of SLOT to …`), so a restart does not send one twice and one missed
//! while the gateway was down goes when it is back (within a day). Gateways sharing one
//! database claim each day's digest in the shared trail first
//! ([`super::scheduled::claim`]), so one of them sends it, and the other takes over if the
//! claimer dies before sending.

use std::sync::Arc;

use super::alert_sender::{NotSent, send_own_mail};
use super::scheduled::{Claim, Done, Scheduled, claim, record};
use super::server::Relay;
use crate::config::Config;
use crate::review::digest::Digest;
use crate::review::report::UNDELIVERED_PREFIX;
use crate::review::report::schedule::Slot;
use crate::store::quarantine::{Held, Quarantine};

const SENT_PREFIX: &str = "quarantine digest of ";

/// The quarantine digest, on [`super::scheduled`]'s clock.
pub struct QuarantineDigest;

/// Who gets it.
fn recipients(config: &Config) -> Vec<String> {
    config
        .quarantine
        .digest_to
        .iter()
        .map(|a| a.0.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect()
}

impl Scheduled for QuarantineDigest {
    const NAME: &'static str = "quarantine digest";
    const SENT_PREFIX: &'static str = SENT_PREFIX;
    const SENT_TO: &'static str = "to";

    fn slot(config: &Config) -> Option<Slot> {
        if recipients(config).is_empty() {
            return None;
        }
        config.quarantine.digest.0
    }

    fn setting(config: &Config) -> String {
        if recipients(config).is_empty() {
            "no [quarantine] digest_to".into()
        } else if config.quarantine.digest.0.is_none() {
            "[quarantine] digest = \"off\"".into()
        } else {
            format!(
                "daily at {} to {}",
                config.quarantine.digest,
                recipients(config).join(", ")
            )
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
    super::scheduled::run::<QuarantineDigest>(relay).await
}

/// Builds and mails the digest of `slot`; an error means it was not sent (try again).
async fn send(relay: &Relay, slot: jiff::Timestamp, now: jiff::Timestamp) -> Result<Done, String> {
    let config = relay.config();
    let to = recipients(&config);
    // Gateways sharing one database share one quarantine: one of them sends its digest.
    if config.storage.database.is_some() {
        match claim(relay, SENT_PREFIX, slot, "", "to").await? {
            Claim::Mine => {}
            Claim::Sent => return Ok(Done::Sent),
            Claim::Elsewhere(_) => return Ok(Done::Elsewhere),
        }
    }
    let quarantine = Quarantine::open(&config.storage);
    let entries = tokio::task::spawn_blocking(move || -> Result<Vec<Held>, String> {
        let mut all = Vec::new();
        for state in ["held", "released", "deleted"] {
            all.extend(
                quarantine
                    .list(state)
                    .map_err(|e| format!("the quarantine could not be read: {e}"))?,
            );
        }
        Ok(all)
    })
    .await
    .map_err(|e| e.to_string())??;
    let tz = jiff::tz::TimeZone::get(&config.school.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
    let base = config.web.base_url(&config.relay.hostname);
    let digest = Digest::build(&config.school.name, &entries, slot, &tz, base);
    let bytes = compose(&digest, &config.alert_from(), &to, now)
        .map_err(|e| format!("the digest could not be composed: {e}"))?;
    let detail = match send_own_mail(relay, to.clone(), &bytes).await {
        Ok(reply) => format!(
            "{SENT_PREFIX}{slot} to {}: {} still held, {} held in the last 24 hours; next hop: {reply}",
            to.join(", "),
            digest.waiting_total,
            digest.held_last_day
        ),
        // Refused for good: recorded (the undelivered page names it), not tried again.
        Err(NotSent::Refused(e)) => format!(
            "{UNDELIVERED_PREFIX} {SENT_PREFIX}{slot} to {} refused: {e}",
            to.join(", ")
        ),
        Err(NotSent::Later(e)) => return Err(e),
    };
    record(relay, detail)
        .await
        .map(|()| Done::Sent)
        .map_err(|e| e.to_string())
}

/// The digest as a mail (plain text and HTML) from `from` to `to`.
pub fn compose(
    digest: &Digest,
    from: &str,
    to: &[String],
    now: jiff::Timestamp,
) -> std::io::Result<Vec<u8>> {
    mail_builder::MessageBuilder::new()
        .from(("schoolgate", from))
        .to(to
            .iter()
            .map(|d| mail_builder::headers::address::Address::from(d.as_str()))
            .collect::<Vec<_>>())
        .subject(digest.subject())
        .date(now.as_second())
        .message_id(format!(
            "{}.{}.quarantine-digest@schoolgate",
            digest.slot.as_second(),
            now.as_millisecond()
        ))
        .header(
            "Auto-Submitted",
            mail_builder::headers::raw::Raw::new("auto-generated"),
        )
        .text_body(digest.text())
        .html_body(digest.html())
        .write_to_vec()
}
