//! The quarantine pages: the list, one message, its download, release and delete.
//!
//! Who may do what is [`crate::policy::holds`]'s rule. A message held by a safeguarding rule is
//! the DSL's: only a DSL opens, downloads, releases (with a reason) or deletes it; the network
//! manager's list shows only that it exists, its time and size, and "held by a safeguarding
//! rule", and its page, download, release and delete answer 403. Every other hold is the network
//! manager's to release or delete; a DSL may read it. A person without the DSL role never sees a
//! safeguarding flag's rule or evidence.
//!
//! The preview is the message's text as plain text (an HTML part with its tags stripped, never
//! rendered), escaped, so no script of the message runs and no remote image loads.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::Value;

use super::auth::User;
use super::{Web, pages};
use crate::policy::holds::{self, Act, Hold};
use crate::policy::sensitive::encryption::Protection;
use crate::review::quarantine::{self as review, ReviewError, Reviewer};
use crate::store::quarantine::Held;

/// Held messages larger than this are not opened to list their attachments' names (the names
/// the findings give are still shown).
pub(super) const LIST_PARSE_LIMIT: u64 = 16 << 20;
/// The most characters of a message's text the preview shows.
const PREVIEW_CHARS: usize = 20_000;

fn is_safeguarding(rule: &str) -> bool {
    holds::is_safeguarding_rule(rule)
}

/// The account `u` as the quarantine's rule knows it.
pub(super) fn reviewer(u: &User) -> Reviewer {
    Reviewer {
        name: u.name.clone(),
        roles: u.roles.clone(),
    }
}

/// Whether `u` may read `h` (its addresses, subject, reasons and text), not only see it exists.
pub(super) fn reads(h: &Held, u: &User) -> bool {
    holds::may(holds::kind(&h.reason), &u.roles, Act::Read)
}

/// What a person who may not read a safeguarding hold is told of it.
pub(super) const SAFEGUARDING_HOLD: &str = "Held by a safeguarding rule";

/// Each item of why `h` is held (a rule's flag or finding, as its audit record has it).
pub(super) fn items(h: &Held) -> impl Iterator<Item = &Value> {
    h.reason.as_array().into_iter().flatten()
}

/// The reasons `u` may see: `(rule, detail)`; a safeguarding flag is only named to the DSL.
pub(super) fn reasons(h: &Held, u: &User) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut hidden = false;
    for item in items(h) {
        let rule = item["rule"].as_str().unwrap_or("?");
        if is_safeguarding(rule) && !u.sees_flags() {
            hidden = true;
            continue;
        }
        out.push((
            rule.to_string(),
            item["detail"].as_str().unwrap_or("").to_string(),
        ));
    }
    if hidden {
        out.push((
            "safeguarding".into(),
            "held by a safeguarding rule; the DSL has the details".into(),
        ));
    }
    out
}

/// The attachments the findings name.
pub(super) fn attachment_names(h: &Held) -> Vec<String> {
    let mut names: Vec<String> = items(h)
        .filter_map(|i| i["attachment"].as_str())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    names.dedup();
    names
}

/// The names of the attachments in `bytes`.
pub(super) fn names_in(bytes: &[u8]) -> Vec<String> {
    crate::mime::read_with_mail_parser(bytes)
        .map(|m| {
            m.attachments()
                .filter_map(|p| crate::mime::attachment_name(bytes, p))
                .collect()
        })
        .unwrap_or_default()
}

/// `size` bytes in words: "840 bytes", "12 KB", "3.4 MB".
pub(super) fn size_text(size: u64) -> String {
    match size {
        s if s < 1024 => format!("{s} bytes"),
        s if s < 1024 * 1024 => format!("{} KB", s.div_ceil(1024)),
        s => format!("{:.1} MB", s as f64 / (1024.0 * 1024.0)),
    }
}

/// The page a person who may not open a safeguarding hold gets (403): that it exists, when it
/// was held, its size, and nothing else.
fn restricted(u: &User, h: &Held) -> Response {
    let body = html! {
        p.back { a href="/quarantine" { "← Quarantine" } }
        h1 { (SAFEGUARDING_HOLD) }
        section #restricted {
            dl {
                dt { "Held" } dd { (pages::short_time(&h.time)) }
                dt { "Size" } dd { (size_text(h.size)) }
                dt { "State" } dd { (h.state) }
            }
            p.note { "A message held by a safeguarding rule is the DSL's decision: only an account with the dsl role can open, download, release or delete it." }
        }
    };
    pages::page(StatusCode::FORBIDDEN, "Held message", Some(u), body)
}

/// The text to find and mark in the preview: flag evidence (DSL only) and the sample of each
/// finding's evidence.
fn evidence(h: &Held, u: &User) -> Vec<String> {
    let mut out = Vec::new();
    for item in items(h) {
        let rule = item["rule"].as_str().unwrap_or("");
        if is_safeguarding(rule) && !u.sees_flags() {
            continue;
        }
        match &item["evidence"] {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => out.extend(items.iter().filter_map(|e| {
                e.as_str()
                    .map(|e| e.rsplit(": ").next().unwrap_or(e).to_string())
            })),
            _ => {}
        }
    }
    out.retain(|e| e.trim().chars().count() >= 3);
    out
}

/// `text` split into plain and marked pieces (case-insensitive, ASCII), in order.
fn highlight(text: &str, marks: &[String]) -> Vec<(bool, String)> {
    let lower = text.to_ascii_lowercase();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for m in marks {
        let needle = m.trim().to_ascii_lowercase();
        if needle.is_empty() {
            continue;
        }
        let mut from = 0;
        while let Some(at) = lower[from..].find(&needle) {
            let start = from + at;
            spans.push((start, start + needle.len()));
            from = start + needle.len();
        }
    }
    spans.sort();
    let mut out = Vec::new();
    let mut pos = 0;
    for (s, e) in spans {
        if s < pos || !text.is_char_boundary(s) || !text.is_char_boundary(e) {
            continue;
        }
        out.push((false, text[pos..s].to_string()));
        out.push((true, text[s..e].to_string()));
        pos = e;
    }
    out.push((false, text[pos..].to_string()));
    out
}

/// What the page shows of one attachment.
struct Attachment {
    /// Its 1-based place among the message's attachments, as the scan numbered them.
    part: usize,
    name: String,
    mime: String,
    size: usize,
    protection: Protection,
}

/// Headers, preview text and attachments of the held bytes.
struct Parsed {
    headers: Vec<(&'static str, String)>,
    text: String,
    truncated: bool,
    attachments: Vec<Attachment>,
}

fn parse(bytes: &[u8]) -> Option<Parsed> {
    let m = crate::mime::read_with_mail_parser(bytes)?;
    let addrs = |a: Option<&mail_parser::Address<'_>>| -> String {
        a.map(|a| {
            a.iter()
                .map(|x| match (x.name(), x.address()) {
                    (Some(n), Some(e)) => format!("{n} <{e}>"),
                    (None, Some(e)) => e.to_string(),
                    (Some(n), None) => n.to_string(),
                    (None, None) => String::new(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
    };
    let headers = vec![
        ("From", addrs(m.from())),
        ("To", addrs(m.to())),
        ("Cc", addrs(m.cc())),
        ("Subject", m.subject().unwrap_or("").to_string()),
        ("Date", m.date().map(|d| d.to_rfc822()).unwrap_or_default()),
        ("Message-ID", m.message_id().unwrap_or("").to_string()),
    ];
    // The first text body; an HTML-only message comes as text with its tags stripped.
    let full = m.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
    let truncated = full.chars().count() > PREVIEW_CHARS;
    let text: String = full.chars().take(PREVIEW_CHARS).collect();
    // The attachments as the sensitive-attachment scan walked them (its names, its order), so
    // each finding sits with the part it was found in, whatever that part is called.
    let attachments = crate::policy::sensitive::attachments(bytes)
        .into_iter()
        .map(|a| Attachment {
            part: a.part,
            name: a.name,
            mime: a.mime_type,
            size: a.size,
            protection: a.protection,
        })
        .collect();
    Some(Parsed {
        headers,
        text,
        truncated,
        attachments,
    })
}

/// Whether finding `f` is about attachment `a`: by the part the scan found it in; a finding
/// recorded before findings named their part, by the attachment's name.
fn found_in(f: &Value, a: &Attachment) -> bool {
    match f["part"].as_u64() {
        Some(part) => usize::try_from(part).is_ok_and(|p| p == a.part),
        None => f["attachment"].as_str() == Some(a.name.as_str()),
    }
}

/// Whether held message `id` belongs to a school `u` may see: always for a trust-wide account;
/// for one restricted to schools (`user add --school`), when its sender is at one of them.
pub(super) async fn of_my_schools(web: &Web, u: &User, id: &str) -> bool {
    if u.schools.is_empty() {
        return true;
    }
    let (quarantine, lookup) = (web.quarantine(), id.to_string());
    let sender = tokio::task::spawn_blocking(move || review::find(&quarantine, &lookup))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|h| h.mail_from);
    sender.is_some_and(|s| u.sees_sender(&web.relay.config(), &s))
}

/// `GET /quarantine/{id}`.
pub async fn show(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let u = match web.page_user(&headers, User::sees_quarantine).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let quarantine = web.quarantine();
    let lookup = id.clone();
    let who = reviewer(&u);
    // Read and parsed on the blocking pool: a held message may be as large as any message.
    // Only once the rule says this person may read it.
    let found = tokio::task::spawn_blocking(move || {
        let h = review::find(&quarantine, &lookup)?;
        if review::authorize(&h, &who, Act::Read).is_err() {
            return Ok::<_, ReviewError>((h, None, false));
        }
        let parsed = quarantine.read(&lookup).ok().and_then(|b| parse(&b));
        Ok((h, parsed, true))
    })
    .await;
    let (h, parsed) = match found {
        // In a trust, another school's hold is not there for an account restricted to schools.
        Ok(Ok((h, _, _))) if !u.sees_sender(&web.relay.config(), &h.mail_from) => {
            return failed(&u, &ReviewError::NotFound(id));
        }
        Ok(Ok((h, _, false))) => return restricted(&u, &h),
        Ok(Ok((h, parsed, true))) => (h, parsed),
        Ok(Err(e)) => return failed(&u, &e),
        Err(_) => return failed(&u, &ReviewError::NotFound(id)),
    };
    let hold = holds::kind(&h.reason);
    let may = |act| holds::may(hold, &u.roles, act);
    if let Err(e) = review::viewed(&web.relay.audit, &id, &u.name).await {
        tracing::error!(error = %e, "web: a view could not be audited");
        return pages::message(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(&u),
            "Not shown",
            "The view could not be recorded in the audit trail, so the message is not shown; see the gateway's log.",
        );
    }
    let marks = evidence(&h, &u);
    let findings: Vec<&Value> = items(&h).filter(|i| !i["attachment"].is_null()).collect();
    let flags: Vec<&Value> = items(&h)
        .filter(|i| is_safeguarding(i["rule"].as_str().unwrap_or("")))
        .collect();
    let body = html! {
        p.back { a href="/quarantine" { "← Quarantine" } }
        h1 { (h.subject.as_deref().unwrap_or("(no subject)")) }
        p.state { "Held " (pages::short_time(&h.time)) " · " (h.state) }
        @if let Some(sender) = h.acted_by.as_deref().and_then(|by| by.strip_prefix("sender ")) {
            p.sender-override #sender-override {
                "Released by its sender, " (sender) ", as a sender override (the release link in the sender notice, or the command line). Their reason: "
                q { (h.action_reason.as_deref().unwrap_or("")) }
            }
        }
        @if h.state != "held" {
            (outcome(&h))
        }
        @if hold == Hold::Safeguarding {
            p.hold-kind #safeguarding-hold { "Held by a safeguarding rule: the DSL decides whether it is released or deleted, with a reason kept in the audit trail." }
        }
        section #headers {
            h2 { "Envelope and headers" }
            dl {
                dt { "Envelope from" } dd { (h.mail_from) }
                dt { "Envelope to" } dd { (h.rcpt_to.join(", ")) }
                @if let Some(p) = &parsed {
                    @for (name, value) in &p.headers {
                        @if !value.is_empty() { dt { (name) } dd { (value) } }
                    }
                }
                dt { "Size" } dd { (h.size) " bytes" }
                dt { "Why held" } dd {
                    @for (rule, detail) in reasons(&h, &u) {
                        div.reason { strong { (rule) } @if !detail.is_empty() { ": " (detail) } }
                    }
                }
            }
        }
        @if u.sees_flags() && !flags.is_empty() {
            section #flags {
                h2 { "Safeguarding flags" }
                ul { @for f in &flags {
                    li.flag { strong { (f["rule"].as_str().unwrap_or("")) } ": " (f["detail"].as_str().unwrap_or(""))
                        @if let Some(e) = f["evidence"].as_str() { " — " mark { (e) } } }
                } }
            }
        }
        section #preview {
            h2 { "Text" }
            @match &parsed {
                Some(p) => {
                    pre.preview { @for (marked, piece) in highlight(&p.text, &marks) {
                        @if marked { mark { (piece) } } @else { (piece) }
                    } }
                    @if p.truncated { p.note { "Only the first " (PREVIEW_CHARS) " characters are shown; download the message for the rest." } }
                }
                None => p.note { "The message's bytes are no longer kept or could not be read." }
            }
        }
        section #attachments {
            h2 { "Attachments" }
            @match &parsed {
                Some(p) if !p.attachments.is_empty() => {
                    @for a in &p.attachments {
                        div.attachment {
                            h3 { (a.name) }
                            p.meta { (a.mime) " · " (a.size) " bytes · "
                                @match a.protection {
                                    Protection::Encrypted(how) => span.encrypted { "encrypted (" (how) ")" },
                                    Protection::OpensWithoutPassword(how) => span.clear { "not encrypted (" (how) " opens without a password)" },
                                    Protection::Clear => span.clear { "not encrypted" },
                                }
                            }
                            @let mine: Vec<&&Value> = findings.iter().filter(|f| found_in(f, a)).collect();
                            @if mine.is_empty() {
                                p.finding { "No findings." }
                            }
                            @for f in mine {
                                div.finding {
                                    strong { (f["rule"].as_str().unwrap_or("")) } ": " (f["detail"].as_str().unwrap_or(""))
                                    @if let Some(ev) = f["evidence"].as_array() {
                                        ul { @for e in ev { li { (e.as_str().unwrap_or("")) } } }
                                    }
                                }
                            }
                        }
                    }
                }
                _ => p.note { "No attachments." }
            }
            // Findings about no one listed part: the message as a whole, or a part only other
            // mail programs see.
            @let listed: &[Attachment] = parsed.as_ref().map(|p| p.attachments.as_slice()).unwrap_or(&[]);
            @let other: Vec<&&Value> = findings.iter().filter(|f| !listed.iter().any(|a| found_in(f, a))).collect();
            @if !other.is_empty() {
                div.attachment #other-findings {
                    h3 { "Not tied to one attachment" }
                    @for f in other {
                        div.finding {
                            strong { (f["rule"].as_str().unwrap_or("")) } ": " (f["detail"].as_str().unwrap_or(""))
                        }
                    }
                }
            }
        }
        section.actions {
            @if may(Act::Download) && h.state != "deleted" {
                a #download.button href=(format!("/quarantine/{}/eml", h.id)) { "Download .eml" }
            }
            @if may(Act::Release) && h.state == "held" {
                form #release-form method="post" action=(format!("/quarantine/{}/release", h.id)) {
                    input type="hidden" name="csrf" value=(u.csrf);
                    label for="release-reason" { "Reason for releasing (kept in the audit trail; up to 1,000 characters)" }
                    textarea #release-reason name="reason" required maxlength=(holds::MAX_REASON_CHARS) rows="2" {}
                    button #release type="submit" { "Release to the recipients…" }
                }
            }
            @if may(Act::Delete) && h.state == "held" {
                form #delete-form method="post" action=(format!("/quarantine/{}/delete", h.id)) {
                    input type="hidden" name="csrf" value=(u.csrf);
                    label for="reason" { "Reason for deleting (kept in the audit trail; up to 1,000 characters)" }
                    textarea #reason name="reason" required maxlength=(holds::MAX_REASON_CHARS) rows="2" {}
                    button #delete type="submit" { "Delete…" }
                }
            }
            @if (may(Act::Release) || may(Act::Delete)) && h.state == "held" {
                p.note { "You are asked to confirm on the next page; nothing is done until then." }
            }
        }
    };
    pages::page(StatusCode::OK, "Held message", Some(&u), body)
}

/// What became of a message no longer held: released or deleted, by whom, when and why.
fn outcome(h: &Held) -> Markup {
    let what = match h.state.as_str() {
        "deleted" => "Deleted",
        "released" => "Released",
        "releasing" => "Being released",
        other => other,
    };
    html! {
        section #outcome {
            h2 { (what) }
            dl {
                dt { "By" } dd #acted-by { (h.acted_by.as_deref().unwrap_or("not recorded")) }
                dt { "When" } dd #acted-at { (h.acted_at.as_deref().map(pages::short_time).unwrap_or_else(|| "not recorded".into())) }
                dt { "Why" } dd #acted-why { (h.action_reason.as_deref().filter(|r| !r.is_empty()).unwrap_or("no reason given")) }
            }
            @if h.state == "deleted" {
                p.note { "Its bytes are no longer kept; this entry and the audit trail remain." }
            }
        }
    }
}

/// The status of a page saying `e`.
pub(super) fn status_of(e: &ReviewError) -> StatusCode {
    match e {
        ReviewError::NotFound(_) => StatusCode::NOT_FOUND,
        ReviewError::Deleted { .. } => StatusCode::GONE,
        ReviewError::AlreadyActed { .. } | ReviewError::Busy(_) => StatusCode::CONFLICT,
        ReviewError::NoReason(_) | ReviewError::ReasonTooLong { .. } => StatusCode::BAD_REQUEST,
        ReviewError::Forbidden { .. } => StatusCode::FORBIDDEN,
        ReviewError::Timeout { .. } | ReviewError::Delivery { .. } => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// What a page says of `e`: without the store's own words (a path on the server, the
/// database's message), which go to the log.
pub(super) fn shown(e: &ReviewError) -> String {
    if e.has_store_detail() {
        tracing::error!(error = %e, "web: a quarantine action was not done");
    }
    e.for_a_page()
}

/// The page for an action that was not done.
pub(super) fn failed(u: &User, e: &ReviewError) -> Response {
    let body: Markup = html! {
        h1 { "Not done" }
        p.error { (shown(e)) }
        p { a href="/quarantine" { "Back to the quarantine" } }
    };
    pages::page(status_of(e), "Not done", Some(u), body)
}

/// `GET /quarantine/{id}/eml`: the held bytes as a download (audited as an export).
pub async fn download(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let u = match web.page_user(&headers, User::sees_quarantine).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let quarantine = web.quarantine();
    if !of_my_schools(&web, &u, &id).await {
        return failed(&u, &ReviewError::NotFound(id));
    }
    match review::export(
        &quarantine,
        &id,
        &reviewer(&u),
        "a web download",
        &web.relay.audit,
    )
    .await
    {
        Ok(bytes) => {
            let file: String = id
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            (
                [
                    (header::CONTENT_TYPE, "message/rfc822".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{file}.eml\""),
                    ),
                ],
                bytes,
            )
                .into_response()
        }
        Err(ReviewError::Deleted { id, by, at, reason }) => {
            let body = html! {
                h1 { "Deleted" }
                p.error #gone {
                    "This message was deleted by " (by) " on " (pages::short_time(&at))
                    @if !reason.is_empty() { ", because: " (reason) } @else { "." }
                    " Its bytes are no longer kept, so there is nothing to download."
                }
                p { a href=(format!("/quarantine/{id}")) { "The message's entry" } " · " a href="/quarantine" { "Back to the quarantine" } }
            };
            pages::page(StatusCode::GONE, "Deleted", Some(&u), body)
        }
        Err(ReviewError::Unreadable { id, detail }) => {
            // The detail names the file on the server: the log has it, the page does not.
            tracing::warn!(%id, %detail, "web: a held message's bytes could not be read for a download");
            let body = html! {
                h1 { "Not kept" }
                p.error #gone { "The held copy of this message is no longer kept, so there is nothing to download." }
                p { a href="/quarantine" { "Back to the quarantine" } }
            };
            pages::page(StatusCode::GONE, "Not kept", Some(&u), body)
        }
        Err(e) => failed(&u, &e),
    }
}

/// `POST /quarantine/{id}/release` with a reason: the confirmation page of
/// [`super::quarantine_actions`] (with `confirm=yes`, the release itself). Whoever decides the
/// hold, as [`crate::policy::holds`] says; 403 for anyone else.
pub async fn release(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    super::quarantine_actions::one(&web, &headers, &id, Act::Release, &body).await
}

/// `POST /quarantine/{id}/delete` with a reason: as [`release`], for a delete.
pub async fn delete(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    super::quarantine_actions::one(&web, &headers, &id, Act::Delete, &body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highlight_marks_every_match_in_order() {
        let parts = highlight(
            "Call me on 07700 900123 or 07700 900123.",
            &["07700 900123".into()],
        );
        let marked: Vec<&str> = parts
            .iter()
            .filter(|(m, _)| *m)
            .map(|(_, s)| s.as_str())
            .collect();
        assert_eq!(marked, ["07700 900123", "07700 900123"]);
        let whole: String = parts.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(whole, "Call me on 07700 900123 or 07700 900123.");
    }
}
