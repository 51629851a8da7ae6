//! The DSL's case pages: every flagged message is a case ([`crate::review::cases`]). The list
//! filters by state, rule, person and date; a case page shows every flag with its evidence,
//! links to the kept evidence copy and the held message, the review form (outcome, note,
//! CPOMS/MyConcern reference), reopening, and the case as a block of text to copy. DSL role
//! only; a case about the headteacher or a DSL only for an account listed for escalation.
//! Every view, download, review and reopening is audited.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::auth::User;
use super::{Web, pages};
use crate::policy::holds::SAFEGUARDING_RULES;
use crate::review::audit_search::instant;
use crate::review::cases::{self as review, Case, CaseError, CaseState, Filter, Outcome};
use crate::store::{AuditRecord, RecordKind, StoreError};

/// The most cases the list shows (newest first); the filters reach older ones.
const CASES_SHOWN: usize = 200;

/// Every case `account` may see, newest first (read on the blocking pool).
///
/// In a trust, a local account restricted to schools (`user add --school`) sees only the cases
/// of those schools (the message record's `school`); a trust-wide account (and one signed in
/// with OpenID Connect) sees every school's. Who is told of a case about a headteacher or DSL
/// is the case's own school's `escalate_to`.
async fn visible(web: &Web, account: &str) -> Result<Vec<Case>, String> {
    let config = web.relay.config();
    let relay = Arc::clone(&web.relay);
    let account = account.to_string();
    let found = tokio::task::spawn_blocking(move || -> Result<Vec<Case>, StoreError> {
        let restricted = crate::store::users::Users::open(&config.storage)
            .get(&account)?
            .map(|a| a.schools)
            .unwrap_or_default();
        let all = crate::store::cases::all(&config.storage)?;
        Ok(all
            .into_iter()
            .filter(|c| {
                restricted.is_empty()
                    || c.message
                        .school
                        .as_deref()
                        .is_some_and(|s| restricted.iter().any(|r| r.eq_ignore_ascii_case(s)))
            })
            .filter(|c| {
                let (config, directory) = relay.for_sender(c.sender());
                review::may_see(&config, &directory, &account, c)
            })
            .collect())
    })
    .await;
    match found {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// How many cases `account` may see are not reviewed yet; `None` when the trail cannot be read.
pub async fn unreviewed(web: &Web, account: &str) -> Option<usize> {
    match visible(web, account).await {
        Ok(cases) => Some(cases.iter().filter(|c| c.state() == CaseState::New).count()),
        Err(e) => {
            tracing::error!(error = %e, "web: the cases could not be counted");
            None
        }
    }
}

/// Case `seq` if `u` may see it, else the page saying why not.
async fn case_for(web: &Web, u: &User, seq: u64) -> Result<Case, Response> {
    match visible(web, &u.name).await {
        Ok(cases) => cases.into_iter().find(|c| c.seq == seq).ok_or_else(|| {
            pages::message(
                StatusCode::NOT_FOUND,
                Some(u),
                "No such case",
                &format!(
                    "There is no case {seq} you may see: it is not a flagged message, or it is about the headteacher or a DSL and only the people listed for escalation see it."
                ),
            )
        }),
        Err(e) => Err(unreadable(u, &e)),
    }
}

/// A DSL's POST about case `seq`: the account, its form (CSRF checked) and the case, when the
/// account may see it.
async fn posted_case(
    web: &Web,
    headers: &HeaderMap,
    body: &[u8],
    seq: u64,
) -> Result<(User, super::Form, Case), Response> {
    let (u, form) = web.post_user(headers, body, User::sees_flags).await?;
    let c = case_for(web, &u, seq).await?;
    Ok((u, form, c))
}

fn unreadable(u: &User, e: &str) -> Response {
    tracing::error!(error = %e, "web: the cases could not be read");
    pages::message(
        StatusCode::INTERNAL_SERVER_ERROR,
        Some(u),
        "Not available",
        &format!("The audit trail could not be read: {e}"),
    )
}

/// Appends `record`; on failure the page saying nothing was done or shown.
async fn audited(web: &Web, u: &User, record: AuditRecord, what: &str) -> Result<(), Response> {
    match web.relay.audit.append(record).await {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::error!(error = %e, "web: {what} could not be audited");
            Err(pages::message(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(u),
                "Not done",
                &format!(
                    "The {what} could not be recorded in the audit trail, so it was not done; see the gateway's log."
                ),
            ))
        }
    }
}

/// An outcome as people say it ("Concern logged"), or as stored when it is not one of the six.
fn outcome_label(outcome: Option<&str>) -> String {
    let outcome = outcome.unwrap_or("");
    outcome
        .parse::<Outcome>()
        .map(|o| o.label().to_string())
        .unwrap_or_else(|_| outcome.to_string())
}

fn state_label(c: &Case) -> Markup {
    match c.latest_review() {
        Some(r) => {
            html! { span.state-reviewed { "Reviewed: " (outcome_label(r.record.outcome.as_deref())) } }
        }
        None => html! { span.state-new { "New" } },
    }
}

fn subject(c: &Case) -> &str {
    c.message.subject.as_deref().unwrap_or("(no subject)")
}

/// `GET /flags?state=&rule=&person=&since=&until=`: the cases, newest first.
pub async fn list(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let u = match web.page_user(&headers, User::sees_flags).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let param = |name: &str| {
        params
            .get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let config = web.relay.config();
    let mut errors: Vec<String> = Vec::new();
    let state = param("state").and_then(|s| match s.parse::<CaseState>() {
        Ok(s) => Some(s),
        Err(e) => {
            errors.push(e.to_string());
            None
        }
    });
    let mut when = |name: &str, end_of_day: bool| {
        param(name).and_then(|v| match instant(&v, name, end_of_day, &config) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.push(e.to_string());
                None
            }
        })
    };
    let since = when("since", false);
    let until = when("until", true);
    let filter = Filter {
        state,
        rule: param("rule"),
        person: param("person"),
        since,
        until,
    };
    let all = match visible(&web, &u.name).await {
        Ok(c) => c,
        Err(e) => return unreadable(&u, &e),
    };
    let found: Vec<&Case> = all.iter().filter(|c| c.matches(&filter)).collect();
    let field = |name: &str| param(name).unwrap_or_default();
    let mut rules: Vec<String> = SAFEGUARDING_RULES
        .iter()
        .map(|r| r.name().to_string())
        .collect();
    for r in all.iter().flat_map(Case::rules) {
        if !rules.contains(&r) {
            rules.push(r);
        }
    }
    let body = html! {
        h1 { "Safeguarding cases" }
        p.lead { "Every flagged message is a case. Open one to see the evidence, record the outcome, and copy it into CPOMS or MyConcern." }
        form #case-filter method="get" action="/flags" {
            div.fields {
                label { "State" select name="state" {
                    option value="" { "any" }
                    @for s in [CaseState::New, CaseState::Reviewed] {
                        option value=(s.as_str()) selected[state == Some(s)] { (s.as_str()) }
                    }
                } }
                label { "Rule" select name="rule" {
                    option value="" { "any" }
                    @for r in &rules { option value=(r) selected[filter.rule.as_deref() == Some(r.as_str())] { (r) } }
                } }
                label { "Person" input type="text" name="person" value=(field("person")) placeholder="any of their addresses"; }
                label { "Since" input type="date" name="since" value=(pages::date_value(&field("since"))) placeholder="dd/mm/yyyy"; }
                label { "Until" input type="date" name="until" value=(pages::date_value(&field("until"))) placeholder="dd/mm/yyyy"; }
            }
            button type="submit" { "Filter" }
        }
        @for e in &errors { p.error { (e) } }
        @if found.is_empty() {
            p.empty { @if all.is_empty() { "No message has been flagged." } @else { "No case matches." } }
        } @else {
            p.count {
                (found.len()) @if found.len() == 1 { " case" } @else { " cases" }
                @if found.len() > CASES_SHOWN { ", the newest " (CASES_SHOWN) " shown; narrow the dates for older ones" }
            }
            div.scroll {
                table #flags {
                    thead { tr { th { "Time" } th { "From" } th { "To" } th { "Subject" } th { "Rule" } th { "State" } th { "Evidence" } } }
                    tbody {
                        @for c in found.iter().take(CASES_SHOWN) {
                            tr.flag data-seq=(c.seq) data-state=(c.state().as_str()) {
                                td.time { (pages::short_time(&c.time)) }
                                td.sender {
                                    (c.sender())
                                    @if let Some(school) = &c.message.school { div.school { (school) } }
                                }
                                td.recipients { (c.message.rcpt_to.join(", ")) }
                                td.subject { a.open href=(format!("/flags/{}", c.seq)) { (pages::clipped(subject(c))) } }
                                td.rule { @for r in c.rules() { div { (r) } } }
                                td.state { (state_label(c)) }
                                td.evidence {
                                    @for f in &c.message.flags {
                                        div { (f.detail) @if !f.evidence.is_empty() { ": " mark { (f.evidence) } } }
                                    }
                                    div.links {
                                        a.open href=(format!("/flags/{}", c.seq)) { "Open case " (c.seq) }
                                        @if c.message.evidence.is_some() {
                                            " · " a.evidence-copy href=(format!("/flags/{}/evidence", c.seq)) { "Evidence copy" }
                                        }
                                        @if let Some(q) = &c.message.quarantine_id {
                                            " · " a.held href=(format!("/quarantine/{q}")) { "Held message" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    pages::page(StatusCode::OK, "Cases", Some(&u), body)
}

/// `GET /flags/{seq}`: one case (the view audited).
pub async fn show(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(seq): Path<u64>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let u = match web.page_user(&headers, User::sees_flags).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let c = match case_for(&web, &u, seq).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let viewed = AuditRecord::action(
        RecordKind::Action,
        &u.name,
        format!("case {seq} viewed by {} on the web page", u.name),
    );
    if let Err(r) = audited(&web, &u, viewed, "view").await {
        return r;
    }
    let evidence_kept = match c.message.evidence.clone() {
        Some(rel) => {
            let spool = web.relay.spool.clone();
            tokio::task::spawn_blocking(move || spool.evidence_kept(&rel))
                .await
                .is_ok_and(|r| r.unwrap_or(false))
        }
        None => false,
    };
    let notice = match params.get("done").map(String::as_str) {
        Some("reviewed") => Some("The review is recorded in the audit trail."),
        Some("reopened") => Some("The case is reopened: it is back among the new cases."),
        _ => None,
    };
    let m = &c.message;
    let latest = c.latest_review();
    let body = html! {
        p.back { a href="/flags" { "← Cases" } }
        @if let Some(n) = notice { p.notice role="status" { (n) } }
        h1 { "Case " (c.seq) ": " (subject(&c)) }
        p.state { (state_label(&c)) }
        section #case-message {
            h2 { "The message" }
            dl {
                dt { "From" } dd { (c.sender()) }
                dt { "To" } dd { (m.rcpt_to.join(", ")) }
                @if !m.header_cc.is_empty() { dt { "Cc" } dd { (m.header_cc.join(", ")) } }
                dt { "When" } dd { (pages::short_time(&c.time)) }
                dt { "Subject" } dd { (subject(&c)) }
                dt { "What happened" } dd { (m.outcome) }
                dt { "Evidence copy" } dd {
                    @if evidence_kept {
                        a #evidence-copy href=(format!("/flags/{}/evidence", c.seq)) { "Download the delivered copy (.eml)" }
                    } @else if m.evidence.is_some() {
                        "No longer kept (past [safeguarding] evidence_retention_days)."
                    } @else {
                        "None kept."
                    }
                }
                @if let Some(q) = &m.quarantine_id {
                    dt { "Held message" } dd { a #held-message href=(format!("/quarantine/{q}")) { "Quarantine entry " (q) } }
                }
                dt { "Audit record" } dd { (c.seq) }
            }
        }
        section #case-flags {
            h2 { "Flags" }
            ul { @for f in &m.flags {
                li.flag { strong { (f.rule) } ": " (f.detail)
                    @if !f.evidence.is_empty() { " — " mark { (f.evidence) } } }
            } }
        }
        section #case-review {
            @if let Some(r) = latest {
                h2 { "Outcome" }
                dl {
                    dt { "Outcome" } dd.outcome { (outcome_label(r.record.outcome.as_deref())) }
                    dt { "By" } dd { (r.record.actor) ", " (pages::short_time(&r.time)) }
                    @if let Some(reference) = &r.record.reference { dt { "Reference" } dd.reference { (reference) } }
                    dt { "Note" } dd.review-note { (r.record.note) }
                }
                form #reopen-form method="post" action=(format!("/flags/{}/reopen", c.seq)) {
                    input type="hidden" name="csrf" value=(u.csrf);
                    label for="reopen-note" { "Why reopen (kept in the audit trail)" }
                    textarea #reopen-note name="note" rows="2" {}
                    button #reopen type="submit" { "Reopen the case" }
                }
            } @else {
                h2 { "Record the outcome" }
                form #review-form method="post" action=(format!("/flags/{}/review", c.seq)) {
                    input type="hidden" name="csrf" value=(u.csrf);
                    label for="outcome" { "Outcome" }
                    select #outcome name="outcome" required {
                        option value="" { "choose…" }
                        @for o in Outcome::ALL { option value=(o.as_str()) { (o.label()) } }
                    }
                    label for="note" { "Note: what you found and did" }
                    textarea #note name="note" required rows="3" {}
                    label for="reference" { "CPOMS or MyConcern reference (optional)" }
                    input #reference type="text" name="reference";
                    button #review type="submit" { "Record the outcome" }
                }
            }
        }
        section #case-text {
            h2 { "To copy into CPOMS or MyConcern" }
            @let block = c.text_block(&review::school_zone(&web.relay.config()));
            textarea #case-block readonly rows=(block.lines().count() + 3) { (block) }
        }
        @if c.reviews.len() > 1 || (c.reviews.len() == 1 && latest.is_none()) {
            section #case-history {
                h2 { "History" }
                ul { @for r in &c.reviews {
                    li { (pages::short_time(&r.time)) " · " (r.record.actor) " · "
                        @if r.is_review() { "reviewed: " (r.record.outcome.as_deref().unwrap_or("")) } @else { "reopened" }
                        @if !r.record.note.is_empty() { " — " (r.record.note) } }
                } }
            }
        }
    };
    pages::page(StatusCode::OK, "Case", Some(&u), body)
}

/// `GET /flags/{seq}/evidence`: the delivered copy kept of the flagged message (audited).
pub async fn evidence(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(seq): Path<u64>,
) -> Response {
    let u = match web.page_user(&headers, User::sees_flags).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let c = match case_for(&web, &u, seq).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let gone = || {
        pages::message(
            StatusCode::NOT_FOUND,
            Some(&u),
            "No evidence copy",
            &format!(
                "No copy of case {seq}'s message is kept (none was, or it passed [safeguarding] evidence_retention_days)."
            ),
        )
    };
    let Some(rel) = c.message.evidence.clone() else {
        return gone();
    };
    let spool = web.relay.spool.clone();
    let bytes = match tokio::task::spawn_blocking(move || spool.read_evidence(&rel)).await {
        Ok(Ok(Some(b))) => b,
        _ => return gone(),
    };
    let record = AuditRecord::action(
        RecordKind::Action,
        &u.name,
        format!(
            "case {seq} evidence copy downloaded by {} on the web page",
            u.name
        ),
    );
    if let Err(r) = audited(&web, &u, record, "download").await {
        return r;
    }
    (
        [
            (header::CONTENT_TYPE, "message/rfc822".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"case-{seq}.eml\""),
            ),
        ],
        bytes,
    )
        .into_response()
}

fn refused(u: &User, seq: u64, e: &CaseError) -> Response {
    let body = html! {
        h1 { "Not recorded" }
        p.error { (e.to_string()) }
        p { a href=(format!("/flags/{seq}")) { "Back to case " (seq) } }
    };
    pages::page(StatusCode::BAD_REQUEST, "Not recorded", Some(u), body)
}

/// `POST /flags/{seq}/review` with outcome, note and reference: DSL only.
pub async fn review(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(seq): Path<u64>,
    body: Bytes,
) -> Response {
    let (u, form, c) = match posted_case(&web, &headers, &body, seq).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let record = match review::review(
        &c,
        form.get("outcome").unwrap_or(""),
        form.get("note").unwrap_or(""),
        form.get("reference"),
        &u.name,
    ) {
        Ok(r) => r,
        Err(e) => return refused(&u, seq, &e),
    };
    let outcome = record.outcome.clone().unwrap_or_default();
    if let Err(r) = audited(&web, &u, AuditRecord::case_review(record), "review").await {
        return r;
    }
    tracing::info!(case = seq, actor = %u.name, %outcome, "web: case reviewed");
    Redirect::to(&format!("/flags/{seq}?done=reviewed")).into_response()
}

/// `POST /flags/{seq}/reopen` with a note: DSL only.
pub async fn reopen(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(seq): Path<u64>,
    body: Bytes,
) -> Response {
    let (u, form, c) = match posted_case(&web, &headers, &body, seq).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let record = match review::reopen(&c, form.get("note").unwrap_or(""), &u.name) {
        Ok(r) => r,
        Err(e) => return refused(&u, seq, &e),
    };
    if let Err(r) = audited(&web, &u, AuditRecord::case_review(record), "reopening").await {
        return r;
    }
    tracing::info!(case = seq, actor = %u.name, "web: case reopened");
    Redirect::to(&format!("/flags/{seq}?done=reopened")).into_response()
}
