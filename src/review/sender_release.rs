//! A sender releases their own held message (issue 16: "override with justification").
//!
//! A message held only by rules that allow it ([`crate::policy::release`]) may be released by
//! its sender, with a one-line reason: through the one-time link in the sender notice (the web
//! page [`crate::web`] serves at `/release/TOKEN`, no login), or with `schoolgate quarantine
//! release ID --justification TEXT`. The release is the same as the network manager's (claimed,
//! delivered once, put back on failure); the audit record names the sender, says it was the
//! sender's override, and keeps the reason, which the network manager sees on the entry's page
//! and in the audit trail.

use std::time::Duration;

use super::quarantine::{ReviewError, audit, deliver_claimed, find_held};
use crate::config::AllowSenderRelease;
use crate::policy::release::{
    self, BadJustification, LinkState, NotTheSenders, sender_may_release,
};
use crate::smtp::next_hop::NextHop;
use crate::store::quarantine::{Held, Quarantine};
use crate::store::release::ReleaseLinks;
use crate::store::{AuditLog, StoreError};

/// Why a sender's release was not done.
#[derive(Debug, thiserror::Error)]
pub enum SenderReleaseError {
    #[error(
        "this release link is not known: check that the whole link was copied from the notice, or ask the network manager to review the message"
    )]
    UnknownLink,
    #[error(
        "this release link has been used already (a link works once); if the message is still held, ask the network manager"
    )]
    UsedLink,
    #[error(
        "this release link has expired (links work for 7 days); ask the network manager to review the message"
    )]
    ExpiredLink,
    #[error("you cannot release this message yourself: {0}")]
    NotTheSenders(#[from] NotTheSenders),
    #[error("{0}")]
    Justification(#[from] BadJustification),
    #[error("{0}")]
    Review(#[from] ReviewError),
}

impl From<StoreError> for SenderReleaseError {
    fn from(e: StoreError) -> Self {
        SenderReleaseError::Review(ReviewError::Store(e))
    }
}

/// How the sender released it, for the audit record.
#[derive(Debug, Clone)]
pub enum Via {
    /// The link in the notice.
    Link,
    /// `schoolgate quarantine release ID --justification`, run by this OS user (and account,
    /// when `--as` named one).
    CommandLine { os_user: String },
}

impl Via {
    fn describe(&self) -> String {
        match self {
            Via::Link => "the link in the sender notice".into(),
            Via::CommandLine { os_user } => {
                format!("the command line, run by {os_user}")
            }
        }
    }
}

/// What the release page shows the sender: never the message's text.
#[derive(Debug, Clone)]
pub struct Offer {
    pub id: String,
    pub subject: Option<String>,
    pub sender: String,
    /// Why it is held: `(rule, detail)`.
    pub why: Vec<(String, String)>,
    pub recipients: usize,
    pub expires: jiff::Timestamp,
}

/// The reasons of a hold, as `(rule, detail)`.
fn why(h: &Held) -> Vec<(String, String)> {
    h.reason
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            (
                i["rule"].as_str().unwrap_or("?").to_string(),
                i["detail"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The link `token` and its held message, if the sender may use it at `now`.
fn open_link(
    q: &Quarantine,
    links: &ReleaseLinks,
    token: &str,
    switch: &AllowSenderRelease,
    now: jiff::Timestamp,
) -> Result<(crate::store::release::Link, Held), SenderReleaseError> {
    let link = links.find(token)?.ok_or(SenderReleaseError::UnknownLink)?;
    match link.state(now) {
        LinkState::Unknown => return Err(SenderReleaseError::UnknownLink),
        LinkState::Used => return Err(SenderReleaseError::UsedLink),
        LinkState::Expired => return Err(SenderReleaseError::ExpiredLink),
        LinkState::Valid => {}
    }
    let h = find_held(q, &link.quarantine_id)?;
    sender_may_release(&h.reason, |r| switch.allows(r))?;
    Ok((link, h))
}

/// What the page offers for the link `token` at `now` (blocking: reads the store).
pub fn offer(
    q: &Quarantine,
    links: &ReleaseLinks,
    token: &str,
    switch: &AllowSenderRelease,
    now: jiff::Timestamp,
) -> Result<Offer, SenderReleaseError> {
    let (link, h) = open_link(q, links, token, switch, now)?;
    Ok(Offer {
        id: h.id.clone(),
        subject: h.subject.clone(),
        sender: h.mail_from.clone(),
        why: why(&h),
        recipients: h.rcpt_to.len(),
        expires: link.expires,
    })
}

/// What a sender's release did.
#[derive(Debug, Clone)]
pub struct SenderReleased {
    pub id: String,
    pub sender: String,
    pub reply: String,
    pub hop: String,
}

/// Where the release is aimed: the link's token, or the held message's id (command line).
#[derive(Debug, Clone)]
pub enum Target {
    Token(String),
    Id(String),
}

/// Releases a held message for its sender, with `justification` (required, one line, at most
/// 1,000 characters), as `via` says, and audits it as the sender's override.
#[allow(clippy::too_many_arguments)]
pub async fn release(
    q: &Quarantine,
    links: &ReleaseLinks,
    target: Target,
    via: Via,
    justification: &str,
    switch: &AllowSenderRelease,
    hop: &NextHop,
    timeout: Duration,
    log: &AuditLog,
) -> Result<SenderReleased, SenderReleaseError> {
    let justification = release::justification(justification)?;
    let now = jiff::Timestamp::now();
    let (links2, switch2, target2, why_given) =
        (links.clone(), switch.clone(), target, justification.clone());
    // Checked, read and claimed in one step on the blocking pool; the link is used up here.
    let quarantine = q.clone();
    let claimed = blocking(move || {
        let q = &quarantine;
        let (token, h) = match &target2 {
            Target::Token(token) => {
                let (_, h) = open_link(q, &links2, token, &switch2, now)?;
                (Some(token.clone()), h)
            }
            Target::Id(id) => {
                let h = find_held(q, id)?;
                sender_may_release(&h.reason, |r| switch2.allows(r))?;
                (None, h)
            }
        };
        let bytes = q.read(&h.id).map_err(|e| ReviewError::Unreadable {
            id: h.id.clone(),
            detail: format!("{}: {e}", q.held_at(&h.id)),
        })?;
        if crate::store::audit::sha256_hex(&bytes) != h.sha256 {
            return Err(ReviewError::Changed(h.id.clone()).into());
        }
        if let Some(token) = &token
            && !links2.claim(token, now)?
        {
            return Err(SenderReleaseError::UsedLink);
        }
        let claimant = format!("sender {}", h.mail_from);
        if !q.mark(&h.id, "releasing", &claimant, Some(&why_given))? {
            if let Some(token) = &token {
                links2.unclaim(token)?;
            }
            return Err(ReviewError::Busy(h.id.clone()).into());
        }
        Ok((h, bytes, token))
    })
    .await;
    let (h, bytes, token) = claimed?;
    let claimant = format!("sender {}", h.mail_from);
    let delivered = deliver_claimed(q, &h.id, &claimant, &h, bytes, hop, timeout).await;
    let reply = match delivered {
        Ok(reply) => reply,
        Err(e) => {
            // Not released: the link works again.
            if let Some(token) = token {
                let links = links.clone();
                let given_back = blocking(move || Ok(links.unclaim(&token)?)).await;
                if let Err(undo) = given_back {
                    tracing::error!(error = %undo, "a release link could not be given back");
                }
            }
            return Err(e.into());
        }
    };
    let hop = hop.describe();
    let rules: Vec<String> = why(&h).into_iter().map(|(rule, _)| rule).collect();
    audit(
        log,
        &h.mail_from,
        format!(
            "quarantine release {} by its sender {} (sender override of {}, through {}; reason: {justification}): {} to {}; next hop {hop}: {reply}",
            h.id,
            h.mail_from,
            rules.join(", "),
            via.describe(),
            h.mail_from,
            h.rcpt_to.join(", "),
        ),
    )
    .await
    .map_err(|e| ReviewError::Audit(e, "the message was released"))?;
    Ok(SenderReleased {
        id: h.id,
        sender: h.mail_from,
        reply,
        hop,
    })
}

/// Runs `step` on the blocking pool (the quarantine and the links are SQLite and files).
async fn blocking<T, F>(step: F) -> Result<T, SenderReleaseError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, SenderReleaseError> + Send + 'static,
{
    tokio::task::spawn_blocking(step)
        .await
        .map_err(|e| ReviewError::Interrupted(e.to_string()))?
}
