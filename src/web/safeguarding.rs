//! The DSL's pages: the audit search and its export (the cases are [`super::cases`]). DSL role
//! only.
//!
//! The search is [`crate::review::audit_search`], the same filters and writers as
//! `schoolgate audit export`, so a download is byte for byte what the command line writes; each
//! download is audited like the command line's export.

use std::collections::HashMap;
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
use crate::store::StoreError;
use crate::store::audit::AuditRecord;

/// How many records an export wrote, and the last one's sequence number.
type Written = (u64, Option<u64>);

/// Records on one page of the audit search (the export has them all).
const PER_PAGE: usize = 100;
/// The characters of a record's value the sort compares (enough to order, bounded memory).
const SORT_KEY_CHARS: usize = 64;

/// The columns of the audit table, each sortable: `(query value, heading)`.
const COLUMNS: [(&str, &str); 8] = [
    ("seq", "#"),
    ("time", "Time"),
    ("what", "What"),
    ("who", "Who"),
    ("to", "To"),
    ("subject", "Subject"),
    ("outcome", "Outcome"),
    ("rules", "Rules"),
];

/// The audit search's query: the filters, the sort and the page.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct AuditParams {
    #[serde(flatten)]
    search: Search,
    /// One of [`COLUMNS`]; newest first by default.
    #[serde(default)]
    sort: Option<String>,
    /// `asc` or `desc`.
    #[serde(default)]
    dir: Option<String>,
    #[serde(default)]
    page: Option<String>,
}

/// The order asked for: a column of [`COLUMNS`] and whether it is descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Order {
    column: &'static str,
    descending: bool,
}

impl Order {
    /// From the query (anything unknown: newest first).
    fn of(p: &AuditParams) -> Order {
        let column = p
            .sort
            .as_deref()
            .and_then(|s| COLUMNS.iter().find(|(c, _)| *c == s))
            .map(|(c, _)| *c)
            .unwrap_or("time");
        let descending = match p.dir.as_deref() {
            Some("asc") => false,
            Some("desc") => true,
            // Times and numbers newest first; words A to Z.
            _ => matches!(column, "time" | "seq"),
        };
        Order { column, descending }
    }

    /// The order a click on `column`'s heading asks for.
    fn toggled(self, column: &'static str) -> Order {
        if self.column == column {
            Order {
                column,
                descending: !self.descending,
            }
        } else {
            Order {
                column,
                descending: matches!(column, "time" | "seq"),
            }
        }
    }
}

/// What record `r` is sorted by under `column` (the sequence number breaks ties; the time and
/// number columns sort by it alone: records are numbered in the order they were written).
fn sort_key(column: &str, r: &AuditRecord) -> String {
    let text = match column {
        "what" => r.kind.as_str().to_string(),
        "who" => match (&r.message, &r.action) {
            (Some(m), _) => m.mail_from.clone(),
            (None, Some(a)) => a.actor.clone(),
            _ => String::new(),
        },
        "to" => r
            .message
            .as_ref()
            .map(|m| m.rcpt_to.join(", "))
            .unwrap_or_default(),
        "subject" => r
            .message
            .as_ref()
            .and_then(|m| m.subject.clone())
            .unwrap_or_default(),
        "outcome" => match (&r.message, &r.action) {
            (Some(m), _) => format!("{}, {}", m.verdict, m.outcome),
            (None, Some(a)) => a.detail.clone(),
            _ => String::new(),
        },
        "rules" => r
            .message
            .as_ref()
            .map(|m| {
                m.flags
                    .iter()
                    .map(|f| f.rule.as_str())
                    .chain(m.findings.iter().map(|f| f.rule.as_str()))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default(),
        _ => String::new(),
    };
    text.chars()
        .take(SORT_KEY_CHARS)
        .collect::<String>()
        .to_lowercase()
}

/// Records with an empty value sort after the others whichever way (a table sorted by subject
/// starts with subjects, not with every record that has none).
fn ordered(mut keyed: Vec<(String, u64)>, descending: bool) -> Vec<u64> {
    keyed.sort_by(|(ka, sa), (kb, sb)| {
        let by_key = match (ka.is_empty(), kb.is_empty()) {
            (true, false) => return std::cmp::Ordering::Greater,
            (false, true) => return std::cmp::Ordering::Less,
            _ => ka.cmp(kb),
        };
        let o = by_key.then(sa.cmp(sb));
        if descending { o.reverse() } else { o }
    });
    keyed.into_iter().map(|(_, seq)| seq).collect()
}

/// One page of the search's matching records, in `order`: the records and how many match.
fn one_page(
    query: &AuditQuery,
    backend: &mut dyn crate::store::Backend,
    range: Option<(u64, u64)>,
    order: Order,
    page: usize,
    keep: &dyn Fn(&AuditRecord) -> bool,
) -> Result<(Vec<(u64, AuditRecord)>, usize), StoreError> {
    // First the sequence numbers (and sort values) of every match: small, whatever the trail.
    let mut keyed: Vec<(String, u64)> = Vec::new();
    query.visit(
        backend,
        range,
        &mut |entry, record| {
            if keep(record) {
                keyed.push((sort_key(order.column, record), entry.seq));
            }
            Ok(true)
        },
        &|| {},
    )?;
    let total = keyed.len();
    let seqs: Vec<u64> = ordered(keyed, order.descending)
        .into_iter()
        .skip((page - 1) * PER_PAGE)
        .take(PER_PAGE)
        .collect();
    // Then the page's records themselves.
    let (Some(&lo), Some(&hi)) = (seqs.iter().min(), seqs.iter().max()) else {
        return Ok((Vec::new(), total));
    };
    let wanted: std::collections::HashSet<u64> = seqs.iter().copied().collect();
    let mut found: HashMap<u64, AuditRecord> = HashMap::new();
    query.visit(
        backend,
        Some((lo, hi)),
        &mut |entry, record| {
            if wanted.contains(&entry.seq) {
                found.insert(entry.seq, record.clone());
            }
            Ok(found.len() < wanted.len())
        },
        &|| {},
    )?;
    let rows = seqs
        .into_iter()
        .filter_map(|seq| found.remove(&seq).map(|r| (seq, r)))
        .collect();
    Ok((rows, total))
}

/// `search` run on one read snapshot of the audit trail: `f` gets the query, the store and
/// the sequence numbers the matching records lie in.
fn in_snapshot<T>(
    config: &Config,
    search: &Search,
    f: impl FnOnce(
        &AuditQuery,
        &mut dyn crate::store::Backend,
        Option<(u64, u64)>,
    ) -> Result<T, StoreError>,
) -> Result<T, SearchError> {
    let query = search.prepare(config)?;
    let mut backend = crate::store::open_audit(&config.storage)?;
    backend.begin_read()?;
    let range = query.range(&mut *backend)?;
    let found = f(&query, &mut *backend, range)?;
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
    append_filters(&mut q, s);
    q.finish()
}

fn append_filters(q: &mut form_urlencoded::Serializer<'_, String>, s: &Search) {
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
}

/// The audit page's address for `search` in `order` at `page` (filters, sort and page kept
/// together, so paging keeps the filters and a new sort keeps them too).
fn audit_link(s: &Search, order: Order, page: usize) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    append_filters(&mut q, s);
    q.append_pair("sort", order.column);
    q.append_pair("dir", if order.descending { "desc" } else { "asc" });
    q.append_pair("page", &page.to_string());
    format!("/audit?{}", q.finish())
}

/// The page numbers the paging offers: the first, the last, and two either side of `page`
/// (`None` where some are left out).
fn page_numbers(page: usize, pages: usize) -> Vec<Option<usize>> {
    let mut out = Vec::new();
    let mut last = 0;
    for n in 1..=pages {
        if n == 1 || n == pages || n.abs_diff(page) <= 2 {
            if n > last + 1 {
                out.push(None);
            }
            out.push(Some(n));
            last = n;
        }
    }
    out
}

/// `GET /audit?since=&until=&person=&rule=&verdict=&sort=&dir=&page=`: the search form and one
/// page of what it finds, newest first unless another order is asked for.
pub async fn audit(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(params): Query<AuditParams>,
) -> Response {
    let u = match web.page_user(&headers, User::sees_flags).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let search = params.search.clone();
    let order = Order::of(&params);
    let asked: usize = params
        .page
        .as_deref()
        .and_then(|p| p.trim().parse().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1);
    let config = web.relay.config();
    let s = search.clone();
    // In a trust, an account restricted to schools (`user add --school`) sees the messages of
    // its schools only; a trust-wide account sees the whole trail.
    let schools = u.schools.clone();
    let keep = move |r: &AuditRecord| {
        schools.is_empty()
            || r.message
                .as_ref()
                .and_then(|m| m.school.as_deref())
                .is_some_and(|s| schools.iter().any(|mine| mine.eq_ignore_ascii_case(s)))
    };
    let found = tokio::task::spawn_blocking(move || {
        in_snapshot(&config, &s, |query, backend, range| {
            let (rows, total) = one_page(query, backend, range, order, asked, &keep)?;
            // A page past the end shows the last page.
            let pages_n = total.div_ceil(PER_PAGE).max(1);
            if asked > pages_n {
                let (rows, total) = one_page(query, backend, range, order, pages_n, &keep)?;
                return Ok((rows, total, pages_n));
            }
            Ok((rows, total, asked))
        })
    })
    .await;
    let (rows, total, page, error) = match found {
        Ok(Ok((rows, total, page))) => (rows, total, page, None),
        Ok(Err(e)) => (Vec::new(), 0, 1, Some(e.to_string())),
        Err(e) => (Vec::new(), 0, 1, Some(e.to_string())),
    };
    let pages_n = total.div_ceil(PER_PAGE).max(1);
    let field = |v: &Option<String>| v.clone().unwrap_or_default();
    let first = (page - 1) * PER_PAGE + 1;
    let body = html! {
        h1 { "Audit trail" }
        form #audit-search method="get" action="/audit" {
            div.fields {
                label { "Since" input type="date" name="since" value=(pages::date_value(&field(&search.since))) placeholder="dd/mm/yyyy"; }
                label { "Until" input type="date" name="until" value=(pages::date_value(&field(&search.until))) placeholder="dd/mm/yyyy"; }
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
            input type="hidden" name="sort" value=(order.column);
            input type="hidden" name="dir" value=(if order.descending { "desc" } else { "asc" });
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
            p.note { "Times are the school's (" (web.relay.config().school.timezone) "); the downloads give each time as stored, in ISO 8601 (2026-12-07T09:14:02Z)." }
            @if rows.is_empty() {
                p.empty { "No record matches." }
            } @else {
                p.count #audit-count {
                    (total) " records · " (first) "–" (first + rows.len() - 1) " shown"
                    @if order.column == "time" && order.descending { ", newest first" }
                    @if order.column == "time" && !order.descending { ", oldest first" }
                }
                div.scroll {
                    table #audit {
                        thead { tr {
                            @for (column, heading) in COLUMNS {
                                th {
                                    a.sort href=(audit_link(&search, order.toggled(column), 1))
                                        aria-sort=(if order.column == column { if order.descending { "descending" } else { "ascending" } } else { "none" }) {
                                        (heading)
                                        @if order.column == column { @if order.descending { " ↓" } @else { " ↑" } }
                                    }
                                }
                            }
                        } }
                        tbody {
                            @for (seq, r) in &rows {
                                tr.record data-seq=(seq) {
                                    td.seq { (seq) }
                                    td.time { time datetime=(r.time) { (pages::long_time(&r.time)) } }
                                    td.kind { (r.kind.as_str()) }
                                    @if let Some(m) = &r.message {
                                        td.sender { (m.mail_from) }
                                        td.recipients { (m.rcpt_to.join(", ")) }
                                        @let subject = m.subject.as_deref().unwrap_or("");
                                        td.subject { (pages::clipped(subject)) }
                                        td.outcome { (m.verdict) ", " (m.outcome) }
                                        td.rules { @for f in &m.flags { div { (f.rule) } } @for f in &m.findings { div { (f.rule) } } }
                                    } @else if let Some(a) = &r.action {
                                        td.sender { (a.actor) }
                                        td.detail colspan="4" { (a.detail) }
                                    } @else {
                                        td colspan="5" {}
                                    }
                                }
                            }
                        }
                    }
                }
                @if pages_n > 1 {
                    nav.paging #audit-pages aria-label="pages" {
                        @if page > 1 {
                            a #prev-page rel="prev" href=(audit_link(&search, order, page - 1)) { "← Previous" }
                        }
                        @for n in page_numbers(page, pages_n) {
                            @match n {
                                Some(n) if n == page => { span.current aria-current="page" { (n) } }
                                Some(n) => { a.page href=(audit_link(&search, order, n)) { (n) } }
                                None => { span.gap { "…" } }
                            }
                        }
                        @if page < pages_n {
                            a #next-page rel="next" href=(audit_link(&search, order, page + 1)) { "Next →" }
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
    if !u.schools.is_empty() {
        return pages::message(
            StatusCode::FORBIDDEN,
            Some(&u),
            "Not exported",
            "The export is of the whole trust's audit trail, and this account is restricted to its schools; ask a trust-wide DSL or the network manager (schoolgate audit export).",
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paging_offers_the_ends_and_the_pages_near_this_one() {
        assert_eq!(page_numbers(1, 1), vec![Some(1)]);
        assert_eq!(
            page_numbers(1, 9),
            vec![Some(1), Some(2), Some(3), None, Some(9)]
        );
        assert_eq!(
            page_numbers(5, 9),
            vec![
                Some(1),
                None,
                Some(3),
                Some(4),
                Some(5),
                Some(6),
                Some(7),
                None,
                Some(9)
            ]
        );
        assert_eq!(
            page_numbers(4, 5),
            vec![Some(1), Some(2), Some(3), Some(4), Some(5)]
        );
    }

    #[test]
    fn a_sort_puts_empty_values_last_either_way_and_breaks_ties_by_number() {
        let keyed = || {
            vec![
                ("b".to_string(), 1),
                (String::new(), 2),
                ("a".to_string(), 3),
                ("b".to_string(), 4),
            ]
        };
        assert_eq!(ordered(keyed(), false), vec![3, 1, 4, 2]);
        assert_eq!(ordered(keyed(), true), vec![4, 1, 3, 2]);
    }

    #[test]
    fn the_default_order_is_newest_first_and_a_heading_toggles_it() {
        let o = Order::of(&AuditParams::default());
        assert_eq!(
            o,
            Order {
                column: "time",
                descending: true
            }
        );
        assert!(!o.toggled("time").descending);
        assert!(!o.toggled("subject").descending);
        let bogus = AuditParams {
            sort: Some("password".into()),
            ..AuditParams::default()
        };
        assert_eq!(Order::of(&bogus).column, "time");
    }
}
