//! The DSL's pages: the audit search and its export (the cases are [`super::cases`]). DSL role
//! only.
//!
//! The search is [`crate::review::audit_search`], the same filters and writers as
//! `schoolgate audit export`, so a download is byte for byte what the command line writes; each
//! download is audited like the command line's export.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::auth::User;
use super::{Web, pages};
use crate::config::Config;
use crate::review::audit_search::{
    Format, Query as AuditQuery, RULES, Search, SearchError, VERDICTS, export_record,
};
use crate::store::sqlite::SqliteBackend;
use crate::store::{Backend, StoreError};

/// How many records an export wrote, and the last one's sequence number.
type Written = (u64, Option<u64>);

/// The most records the audit search shows on the page (the export has them all).
const RECORDS_SHOWN: usize = 500;

fn time(t: &str) -> String {
    match t.parse::<jiff::Timestamp>() {
        Ok(ts) => ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => t.to_string(),
    }
}

/// `search` run on one read snapshot of the audit trail: `f` gets the query, the store and
/// the sequence numbers the matching records lie in.
fn in_snapshot<T>(
    config: &Config,
    search: &Search,
    f: impl FnOnce(&AuditQuery, &mut SqliteBackend, Option<(u64, u64)>) -> Result<T, StoreError>,
) -> Result<T, SearchError> {
    let query = search.prepare(config)?;
    let mut backend = SqliteBackend::open(&config.storage.state_dir)?;
    backend.begin_read()?;
    let range = query.range(&mut backend)?;
    let found = f(&query, &mut backend, range)?;
    backend.end_read()?;
    Ok(found)
}

fn unreadable(u: &User, what: &str, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "web: {what} could not be read");
    pages::message(
        StatusCode::INTERNAL_SERVER_ERROR,
        Some(u),
        "Not available",
        &format!("{what} could not be read: {e}"),
    )
}

fn query_string(s: &Search, format: Option<&str>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(f) = format {
        q.append_pair("format", f);
    }
    for (name, v) in [
        ("since", &s.since),
        ("until", &s.until),
        ("person", &s.person),
        ("rule", &s.rule),
        ("verdict", &s.verdict),
    ] {
        if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            q.append_pair(name, v);
        }
    }
    q.finish()
}

/// `GET /audit?since=&until=&person=&rule=&verdict=`: the search form and what it finds.
pub async fn audit(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(search): Query<Search>,
) -> Response {
    let u = match web.page_user(&headers, User::sees_flags).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let config = web.relay.config();
    let s = search.clone();
    let found = tokio::task::spawn_blocking(move || {
        in_snapshot(&config, &s, |query, backend, range| {
            let mut rows = Vec::new();
            let mut more = false;
            query.visit(
                backend,
                range,
                &mut |entry, record| {
                    if rows.len() == RECORDS_SHOWN {
                        more = true;
                        return Ok(false);
                    }
                    rows.push((entry.seq, record.clone()));
                    Ok(true)
                },
                &|| {},
            )?;
            Ok((rows, more))
        })
    })
    .await;
    let (rows, more, error) = match found {
        Ok(Ok((rows, more))) => (rows, more, None),
        Ok(Err(e)) => (Vec::new(), false, Some(e.to_string())),
        Err(e) => (Vec::new(), false, Some(e.to_string())),
    };
    let field = |v: &Option<String>| v.clone().unwrap_or_default();
    let body = html! {
        h1 { "Audit trail" }
        form #audit-search method="get" action="/audit" {
            div.fields {
                label { "Since" input type="text" name="since" value=(field(&search.since)) placeholder="YYYY-MM-DD"; }
                label { "Until" input type="text" name="until" value=(field(&search.until)) placeholder="YYYY-MM-DD"; }
                label { "Person" input type="text" name="person" value=(field(&search.person)) placeholder="any of their addresses"; }
                label { "Rule" select name="rule" {
                    option value="" { "any" }
                    @for r in RULES { option value=(r) selected[search.rule.as_deref() == Some(r)] { (r) } }
                } }
                label { "Verdict" select name="verdict" {
                    option value="" { "any" }
                    @for v in VERDICTS { option value=(v) selected[search.verdict.as_deref() == Some(v)] { (v) } }
                } }
            }
            button type="submit" { "Search" }
        }
        @if let Some(e) = &error {
            p.error { (e) }
        } @else {
            p.downloads {
                a #download-csv.button href=(format!("/audit/export?{}", query_string(&search, Some("csv")))) { "Download CSV" }
                " "
                a #download-json.button href=(format!("/audit/export?{}", query_string(&search, Some("json")))) { "Download JSON" }
            }
            @if rows.is_empty() {
                p.empty { "No record matches." }
            } @else {
                p.count { (rows.len()) " records" @if more { " shown; download for all of them" } }
                div.scroll {
                    table #audit {
                        thead { tr { th { "#" } th { "Time" } th { "What" } th { "Who" } th { "To" } th { "Subject" } th { "Outcome" } th { "Rules" } } }
                        tbody {
                            @for (seq, r) in &rows {
                                tr.record {
                                    td { (seq) }
                                    td.time { (time(&r.time)) }
                                    td { (r.kind.as_str()) }
                                    @if let Some(m) = &r.message {
                                        td { (m.mail_from) }
                                        td { (m.rcpt_to.join(", ")) }
                                        td { (m.subject.as_deref().unwrap_or("")) }
                                        td { (m.verdict) ", " (m.outcome) }
                                        td { @for f in &m.flags { div { (f.rule) } } @for f in &m.findings { div { (f.rule) } } }
                                    } @else if let Some(a) = &r.action {
                                        td { (a.actor) }
                                        td colspan="4" { (a.detail) }
                                    } @else {
                                        td colspan="5" {}
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    pages::page(StatusCode::OK, "Audit trail", Some(&u), body)
}

#[derive(Debug, serde::Deserialize)]
pub struct ExportParams {
    #[serde(default)]
    format: Option<String>,
    #[serde(flatten)]
    search: Search,
}

/// `GET /audit/export?format=csv|json|jsonl&…`: the download, audited.
pub async fn export(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(params): Query<ExportParams>,
) -> Response {
    let u = match web.page_user(&headers, User::sees_flags).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let format = match params.format.as_deref().unwrap_or("csv") {
        "csv" => Format::Csv,
        "json" => Format::Json,
        "jsonl" => Format::Jsonl,
        other => {
            return pages::message(
                StatusCode::BAD_REQUEST,
                Some(&u),
                "Not exported",
                &format!("format {other:?} is not csv, json or jsonl"),
            );
        }
    };
    let config = web.relay.config();
    let search = params.search.clone();
    let written =
        tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, Written), SearchError> {
            in_snapshot(&config, &search, |query, backend, range| {
                let mut out = Vec::new();
                let n = query.write(backend, range, format, &mut out, &|| {})?;
                Ok((out, n))
            })
        })
        .await;
    let (bytes, n) = match written {
        Ok(Ok(w)) => w,
        Ok(Err(e)) => {
            return pages::message(
                StatusCode::BAD_REQUEST,
                Some(&u),
                "Not exported",
                &e.to_string(),
            );
        }
        Err(e) => return unreadable(&u, "The audit trail", &e),
    };
    let record = export_record(&params.search, &u.name, n, format, "a web download");
    if let Err(e) = web.relay.audit.append(record).await {
        tracing::error!(error = %e, "web: an export could not be audited");
        return pages::message(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(&u),
            "Not exported",
            "The export could not be recorded in the audit trail, so it is not given out; see the gateway's log.",
        );
    }
    let (mime, ext) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Json => ("application/json", "json"),
        Format::Jsonl => ("application/jsonl", "jsonl"),
    };
    (
        [
            (header::CONTENT_TYPE, mime.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"schoolgate-audit.{ext}\""),
            ),
        ],
        bytes,
    )
        .into_response()
}
