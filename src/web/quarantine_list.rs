//! The quarantine list as the network manager uses it every morning: counts per rule at the
//! top, filters (date range, rule, sender, recipient, attachment type, free text), sorting by
//! any column, pages, and checkboxes to release or delete several messages with one reason
//! (through [`super::quarantine_actions`]'s confirmation page).
//!
//! What a person may not read (a safeguarding hold, for a network manager) is listed by its
//! time and size only, counted under "safeguarding", matched by no filter on what it hides, and
//! sorted as if those columns were empty: neither a filter nor the order of the rows tells who
//! it is from or to.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use jiff::civil::Date;
use maud::{Markup, html};

use super::auth::User;
use super::quarantine::{
    LIST_PARSE_LIMIT, SAFEGUARDING_HOLD, attachment_names, names_in, reads, reasons, size_text,
};
use super::quarantine_actions::{not_yours, notice};
use super::{Web, pages};
use crate::policy::holds::{self, Act, Hold};
use crate::store::quarantine::{Held, Quarantine};

/// Messages on one page of the list.
const PAGE: usize = 50;

/// The names of the attachments of held messages, by the SHA-256 of their held bytes (which
/// never change), so a filter by attachment type reads each message once, not at every look.
static NAMES: LazyLock<Mutex<HashMap<String, Vec<String>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
/// Past this many entries the cache starts again (a quarantine is purged after its retention).
const NAMES_KEPT: usize = 20_000;

/// The attachments' names of each of `held` (`None`: not to be read), from the cache or the
/// held bytes.
fn attachment_names_of(q: &Quarantine, held: &[(String, String, u64)]) -> Vec<Vec<String>> {
    held.iter()
        .map(|(id, sha, size)| {
            if *size > LIST_PARSE_LIMIT {
                return Vec::new();
            }
            if let Some(names) = NAMES.lock().ok().and_then(|c| c.get(sha).cloned()) {
                return names;
            }
            let Ok(bytes) = q.read(id) else {
                return Vec::new();
            };
            let names = names_in(&bytes);
            if let Ok(mut cache) = NAMES.lock() {
                if cache.len() >= NAMES_KEPT {
                    cache.clear();
                }
                cache.insert(sha.clone(), names.clone());
            }
            names
        })
        .collect()
}

/// The columns the list sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Held,
    From,
    To,
    Subject,
    Why,
    Attachments,
    Size,
}

const COLUMNS: [(Column, &str, &str); 7] = [
    (Column::Held, "held", "Held"),
    (Column::From, "from", "From"),
    (Column::To, "to", "To"),
    (Column::Subject, "subject", "Subject"),
    (Column::Why, "why", "Why"),
    (Column::Attachments, "attachments", "Attachments"),
    (Column::Size, "size", "Size"),
];

impl Column {
    fn parse(s: &str) -> Option<Column> {
        COLUMNS.iter().find(|(_, n, _)| *n == s).map(|(c, _, _)| *c)
    }
    fn name(self) -> &'static str {
        COLUMNS
            .iter()
            .find(|(c, _, _)| *c == self)
            .map_or("held", |(_, n, _)| n)
    }
}

/// A day typed into a date filter: `dd/mm/yyyy` (as a school writes it) or `yyyy-mm-dd` (as
/// `<input type="date">` sends it). Blank is no filter.
pub(super) fn parse_day(s: &str) -> Result<Option<Date>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let bad = || format!("\"{s}\" is not a date: write dd/mm/yyyy, e.g. 07/12/2026");
    let parts: Vec<&str> = s.split(['/', '-', '.']).map(str::trim).collect();
    let [a, b, c] = parts.as_slice() else {
        return Err(bad());
    };
    let num = |x: &str| x.parse::<i16>().map_err(|_| bad());
    let (y, m, d) = if a.len() == 4 {
        (num(a)?, num(b)?, num(c)?)
    } else if c.len() == 4 {
        (num(c)?, num(b)?, num(a)?)
    } else {
        return Err(bad());
    };
    let m = i8::try_from(m).map_err(|_| bad())?;
    let d = i8::try_from(d).map_err(|_| bad())?;
    Date::new(y, m, d).map(Some).map_err(|_| bad())
}

/// What the list is asked for (the query string).
#[derive(Debug, Clone, Default)]
struct Asked {
    q: String,
    from: String,
    to: String,
    rule: String,
    sender: String,
    recipient: String,
    ext: String,
    sort: Option<Column>,
    descending: Option<bool>,
    page: usize,
    all: bool,
}

impl Asked {
    fn read(p: &HashMap<String, String>) -> Asked {
        let get = |k: &str| p.get(k).map(|s| s.trim().to_string()).unwrap_or_default();
        Asked {
            q: get("q"),
            from: get("from"),
            to: get("to"),
            rule: get("rule"),
            sender: get("sender"),
            recipient: get("recipient"),
            ext: get("ext")
                .trim_start_matches('.')
                .trim_start_matches("*.")
                .to_lowercase(),
            sort: p.get("sort").and_then(|s| Column::parse(s)),
            descending: match p.get("dir").map(String::as_str) {
                Some("asc") => Some(false),
                Some("desc") => Some(true),
                _ => None,
            },
            page: p
                .get("page")
                .and_then(|n| n.parse().ok())
                .filter(|n| *n >= 1)
                .unwrap_or(1),
            all: p.get("all").is_some_and(|v| v == "1"),
        }
    }

    fn column(&self) -> Column {
        self.sort.unwrap_or(Column::Held)
    }

    /// Newest first by default; names A to Z.
    fn descending(&self) -> bool {
        self.descending
            .unwrap_or(matches!(self.column(), Column::Held | Column::Size))
    }

    fn filtered(&self) -> bool {
        [
            &self.q,
            &self.from,
            &self.to,
            &self.rule,
            &self.sender,
            &self.recipient,
            &self.ext,
        ]
        .iter()
        .any(|v| !v.is_empty())
    }

    /// The list's address with these filters, `sort`/`dir`, `page` and `all`.
    fn link(&self, sort: Column, descending: bool, page: usize, all: bool) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("q", &self.q),
            ("from", &self.from),
            ("to", &self.to),
            ("rule", &self.rule),
            ("sender", &self.sender),
            ("recipient", &self.recipient),
            ("ext", &self.ext),
        ] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        s.append_pair("sort", sort.name());
        s.append_pair("dir", if descending { "desc" } else { "asc" });
        s.append_pair("page", &page.to_string());
        if all {
            s.append_pair("all", "1");
        }
        format!("/quarantine?{}", s.finish())
    }

    fn page_link(&self, page: usize) -> String {
        self.link(self.column(), self.descending(), page, false)
    }
}

/// One held message as the list shows it to one person.
struct Row {
    h: Held,
    /// Whether the person may read it (else only its time and size are shown).
    readable: bool,
    /// Whether the person may release or delete it.
    actionable: bool,
    hold: Hold,
    /// The rules the person may see (a hidden safeguarding flag is "safeguarding").
    rules: Vec<String>,
    /// Its attachments' names, once read.
    attachments: Option<Vec<String>>,
    /// When it was held.
    time: Option<jiff::Timestamp>,
}

impl Row {
    fn new(h: Held, u: &User) -> Row {
        let readable = reads(&h, u);
        let hold = holds::kind(&h.reason);
        let mut rules: Vec<String> = if readable {
            reasons(&h, u).into_iter().map(|(r, _)| r).collect()
        } else {
            vec!["safeguarding".into()]
        };
        rules.dedup();
        let actionable = holds::may(hold, &u.roles, Act::Release);
        let time = h.time.parse().ok();
        Row {
            h,
            readable,
            actionable,
            hold,
            rules,
            attachments: None,
            time,
        }
    }

    fn names(&self) -> Vec<String> {
        let mut all = self.attachments.clone().unwrap_or_default();
        for n in attachment_names(&self.h) {
            if !all.contains(&n) {
                all.push(n);
            }
        }
        all
    }

    /// What the free-text search looks in: only what the row shows.
    fn matches_text(&self, u: &User, q: &str) -> bool {
        let q = q.to_lowercase();
        if !self.readable {
            return format!("{}\n{SAFEGUARDING_HOLD}", self.h.id)
                .to_lowercase()
                .contains(&q);
        }
        let hay = [
            self.h.id.clone(),
            self.h.mail_from.clone(),
            self.h.rcpt_to.join(" "),
            self.h.subject.clone().unwrap_or_default(),
            self.names().join(" "),
            reasons(&self.h, u)
                .iter()
                .map(|(r, d)| format!("{r} {d}"))
                .collect::<Vec<_>>()
                .join(" "),
        ]
        .join("\n")
        .to_lowercase();
        hay.contains(&q)
    }

    fn has_rule(&self, rule: &str) -> bool {
        self.rules.iter().any(|r| r == rule)
            || (rule == "safeguarding" && self.hold == Hold::Safeguarding)
    }

    fn has_extension(&self, ext: &str) -> bool {
        self.names().iter().any(|n| {
            n.rsplit_once('.')
                .is_some_and(|(_, e)| e.trim().eq_ignore_ascii_case(ext))
        })
    }

    /// The day it was held, in the school's time zone.
    fn day(&self, tz: &jiff::tz::TimeZone) -> Option<Date> {
        self.time.map(|t| t.to_zoned(tz.clone()).date())
    }

    /// Its sort key in `column`: what the person does not see sorts as empty.
    fn key(&self, column: Column) -> (String, u64) {
        let hidden = !self.readable;
        match column {
            Column::Held => (self.h.time.clone(), 0),
            Column::Size => (String::new(), self.h.size),
            _ if hidden => (String::new(), 0),
            Column::From => (self.h.mail_from.to_lowercase(), 0),
            Column::To => (self.h.rcpt_to.join(", ").to_lowercase(), 0),
            Column::Subject => (self.h.subject.clone().unwrap_or_default().to_lowercase(), 0),
            Column::Why => (self.rules.join(" "), 0),
            Column::Attachments => (self.names().join(", ").to_lowercase(), 0),
        }
    }
}

/// Held messages per rule: (held now, held in the last 24 hours).
fn counts(rows: &[Row], now: jiff::Timestamp) -> BTreeMap<String, (usize, usize)> {
    let day_ago = now - jiff::SignedDuration::from_hours(24);
    let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for r in rows {
        let recent = r.time.is_some_and(|t| t > day_ago);
        for rule in &r.rules {
            let c = out.entry(rule.clone()).or_default();
            c.0 += 1;
            c.1 += usize::from(recent);
        }
    }
    out
}

/// `GET /quarantine`: see the module's documentation for the query.
pub async fn list(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let u = match web.page_user(&headers, User::sees_quarantine).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let asked = Asked::read(&params);
    let config = web.relay.config();
    let tz = jiff::tz::TimeZone::get(&config.school.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
    let quarantine = web.quarantine();
    let held = match tokio::task::spawn_blocking(move || quarantine.list("held")).await {
        Ok(Ok(h)) => h,
        other => {
            if let Ok(Err(e)) = other {
                tracing::error!(error = %e, "web: the quarantine could not be read");
            }
            return pages::message(
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(&u),
                "Quarantine",
                "The quarantine could not be read; see the gateway's log.",
            );
        }
    };
    let now = jiff::Timestamp::now();
    // In a trust, an account restricted to schools sees only their schools' holds.
    let mut rows: Vec<Row> = held
        .into_iter()
        .filter(|h| u.sees_sender(&config, &h.mail_from))
        .map(|h| Row::new(h, &u))
        .collect();
    let per_rule = counts(&rows, now);
    let day_ago = now - jiff::SignedDuration::from_hours(24);
    let recent = rows
        .iter()
        .filter(|r| r.time.is_some_and(|t| t > day_ago))
        .count();
    let oldest = rows.iter().filter_map(|r| r.time).min();
    let everything = rows.len();
    let mut known_exts: Vec<String> = Vec::new();

    // Attachment names: of every message the person may read when a filter or the order needs
    // them, else only of the page shown (below).
    let needs_all_names =
        !asked.ext.is_empty() || !asked.q.is_empty() || asked.column() == Column::Attachments;
    if needs_all_names {
        read_names(&web, &mut rows.iter_mut().collect::<Vec<_>>()).await;
    }

    let mut errors: Vec<String> = Vec::new();
    let mut day = |s: &str| match parse_day(s) {
        Ok(d) => d,
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let (from, to) = (day(&asked.from), day(&asked.to));
    let (sender, recipient) = (asked.sender.to_lowercase(), asked.recipient.to_lowercase());
    rows.retain(|r| {
        (asked.q.is_empty() || r.matches_text(&u, &asked.q))
            && (asked.rule.is_empty() || r.has_rule(&asked.rule))
            && from.is_none_or(|f| r.day(&tz).is_some_and(|d| d >= f))
            && to.is_none_or(|t| r.day(&tz).is_some_and(|d| d <= t))
            && (sender.is_empty() || (r.readable && r.h.mail_from.to_lowercase().contains(&sender)))
            && (recipient.is_empty()
                || (r.readable
                    && r.h
                        .rcpt_to
                        .iter()
                        .any(|a| a.to_lowercase().contains(&recipient))))
            && (asked.ext.is_empty() || (r.readable && r.has_extension(&asked.ext)))
    });
    let column = asked.column();
    let descending = asked.descending();
    rows.sort_by(|a, b| {
        let order = a
            .key(column)
            .cmp(&b.key(column))
            .then_with(|| a.h.time.cmp(&b.h.time))
            .then_with(|| a.h.id.cmp(&b.h.id));
        if descending { order.reverse() } else { order }
    });
    let total = rows.len();
    let pages_n = total.div_ceil(PAGE).max(1);
    let page = asked.page.min(pages_n);
    let mut shown: Vec<Row> = rows
        .into_iter()
        .skip((page - 1) * PAGE)
        .take(PAGE)
        .collect();
    if !needs_all_names {
        read_names(&web, &mut shown.iter_mut().collect::<Vec<_>>()).await;
    }
    for r in shown.iter().filter(|r| r.readable) {
        for n in r.names() {
            if let Some((_, e)) = n.rsplit_once('.') {
                let e = e.trim().to_lowercase();
                if !e.is_empty() && e.len() <= 10 && !known_exts.contains(&e) {
                    known_exts.push(e);
                }
            }
        }
    }
    known_exts.sort();
    let actionable = shown.iter().filter(|r| r.actionable).count();
    let note = notice(
        params.get("done").map(String::as_str),
        params.get("id").map(String::as_str),
        params.get("n").map(String::as_str),
    );
    let iso = |d: Option<Date>, raw: &str| match d {
        Some(d) => d.to_string(),
        None => raw.to_string(),
    };
    let body = html! {
        h1 { "Quarantine" }
        @if let Some(n) = &note {
            p.notice role="status" { (n) }
        }
        section #counts {
            h2 { "Held now" }
            p.summary {
                strong #held-count { (everything) } " held"
                " · " strong #recent-count { (recent) } " in the last 24 hours"
                @if let Some(o) = oldest { " · oldest held " (pages::short_time(&o.to_string())) }
            }
            @if !per_rule.is_empty() {
                table #rule-counts {
                    thead { tr { th { "Rule" } th { "Held (unresolved)" } th { "In the last 24 hours" } } }
                    tbody {
                        @for (rule, (held, day)) in &per_rule {
                            tr.rule-count data-rule=(rule) {
                                td { a href=(Asked { rule: rule.clone(), ..Asked::default() }.page_link(1)) { (rule) } }
                                td.held { (held) }
                                td.recent { (day) }
                            }
                        }
                    }
                }
            }
        }
        form #quarantine-filter method="get" action="/quarantine" {
            div.fields {
                label { "Search" input #q type="search" name="q" value=(asked.q) placeholder="sender, recipient, subject, attachment"; }
                label { "Held from" input #from type="date" name="from" value=(iso(from, &asked.from)) placeholder="dd/mm/yyyy"; }
                label { "to" input #to type="date" name="to" value=(iso(to, &asked.to)) placeholder="dd/mm/yyyy"; }
                label { "Rule"
                    select #rule name="rule" {
                        option value="" { "any" }
                        @for rule in per_rule.keys() {
                            option value=(rule) selected[asked.rule == *rule] { (rule) }
                        }
                        @if !asked.rule.is_empty() && !per_rule.contains_key(&asked.rule) {
                            option value=(asked.rule) selected { (asked.rule) }
                        }
                    }
                }
                label { "Sender" input #sender type="text" name="sender" value=(asked.sender) placeholder="t.baker@"; }
                label { "Recipient" input #recipient type="text" name="recipient" value=(asked.recipient) placeholder="@gmail.com"; }
                label { "Attachment type" input #ext type="text" name="ext" value=(asked.ext) list="exts" placeholder="xlsx"; }
                datalist #exts { @for e in &known_exts { option value=(e) {} } }
                input type="hidden" name="sort" value=(column.name());
                input type="hidden" name="dir" value=(if descending { "desc" } else { "asc" });
            }
            button type="submit" { "Filter" }
            @if asked.filtered() { " " a #clear-filter href="/quarantine" { "Clear" } }
        }
        @for e in &errors { p.error.filter-error { (e) } }
        @if shown.is_empty() {
            p.empty { @if asked.filtered() { "No held message matches." } @else { "No messages are held." } }
        } @else {
            p.count { (total) " held" @if asked.filtered() { " matching" }
                @if pages_n > 1 { " · page " (page) " of " (pages_n) } }
            form #bulk method="post" action="/quarantine/bulk" {
                input type="hidden" name="csrf" value=(u.csrf);
                @if actionable > 0 {
                    p.select-all {
                        @if asked.all {
                            a #select-none href=(asked.link(column, descending, page, false)) { "Untick all on this page" }
                        } @else {
                            a #select-all href=(asked.link(column, descending, page, true)) { "Tick all " (actionable) " on this page" }
                        }
                    }
                }
                div.scroll {
                    table #quarantine {
                        thead { tr {
                            th.pick { span.visually-hidden { "Select" } }
                            @for (c, _, title) in COLUMNS {
                                (header(&asked, c, title, column, descending))
                            }
                            th {}
                        } }
                        tbody {
                            @for r in &shown { (row(r, &u, asked.all)) }
                        }
                    }
                }
                @if actionable > 0 {
                    fieldset #bulk-actions {
                        legend { "With the messages ticked" }
                        label for="bulk-reason" { "Reason (kept in the audit trail for each message; up to 1,000 characters)" }
                        textarea #bulk-reason name="reason" required maxlength=(holds::MAX_REASON_CHARS) rows="2" {}
                        button #bulk-release type="submit" name="action" value="release" { "Release…" }
                        " "
                        button #bulk-delete type="submit" name="action" value="delete" { "Delete…" }
                        p.note { "You are asked to confirm on the next page; nothing is done until then." }
                    }
                }
            }
        }
        nav.paging {
            @if page > 1 {
                a #prev-page href=(asked.page_link(page - 1)) { "← Previous" }
            }
            @for n in page_numbers(page, pages_n) {
                @match n {
                    Some(n) if n == page => span.current aria-current="page" { (n) },
                    Some(n) => a.page href=(asked.page_link(n)) { (n) },
                    None => span.gap { "…" },
                }
            }
            @if page < pages_n {
                a #next-page href=(asked.page_link(page + 1)) { "Next →" }
            }
        }
    };
    pages::page(StatusCode::OK, "Quarantine", Some(&u), body)
}

/// Reads the attachments' names of `rows` the person may read (on the blocking pool).
async fn read_names(web: &Web, rows: &mut [&mut Row]) {
    let wanted: Vec<(String, String, u64)> = rows
        .iter()
        .filter(|r| r.readable)
        .map(|r| (r.h.id.clone(), r.h.sha256.clone(), r.h.size))
        .collect();
    let quarantine = web.quarantine();
    let names = tokio::task::spawn_blocking(move || attachment_names_of(&quarantine, &wanted))
        .await
        .unwrap_or_default();
    let mut names = names.into_iter();
    for r in rows.iter_mut().filter(|r| r.readable) {
        r.attachments = Some(names.next().unwrap_or_default());
    }
}

/// The page numbers to offer: the first, the last, and two either side of `page`; `None` for
/// a gap.
fn page_numbers(page: usize, pages: usize) -> Vec<Option<usize>> {
    let mut out = Vec::new();
    for n in 1..=pages {
        if n == 1 || n == pages || n.abs_diff(page) <= 2 {
            out.push(Some(n));
        } else if out.last() != Some(&None) {
            out.push(None);
        }
    }
    if pages <= 1 { Vec::new() } else { out }
}

/// A column's heading: a link that sorts by it (again: the other way).
fn header(asked: &Asked, c: Column, title: &str, column: Column, descending: bool) -> Markup {
    let current = c == column;
    let next_descending = if current {
        !descending
    } else {
        matches!(c, Column::Held | Column::Size)
    };
    let sort = if !current {
        "none"
    } else if descending {
        "descending"
    } else {
        "ascending"
    };
    html! {
        th aria-sort=(sort) {
            a.sort data-column=(c.name()) href=(asked.link(c, next_descending, 1, false)) {
                (title)
                @if current { @if descending { " ▼" } @else { " ▲" } }
            }
        }
    }
}

fn row(r: &Row, u: &User, ticked: bool) -> Markup {
    let h = &r.h;
    html! {
        @if !r.readable {
            tr.held.restricted data-id=(h.id) {
                td.pick {}
                td.time { (pages::short_time(&h.time)) }
                td.hidden colspan="3" { (SAFEGUARDING_HOLD) }
                td.reason { span.rule { "safeguarding" } }
                td.attachments {}
                td.size { (size_text(h.size)) }
                td.dsl-only { "The DSL decides" }
            }
        } @else {
            tr.held data-id=(h.id) {
                td.pick {
                    @if r.actionable {
                        input.pick type="checkbox" name="id" value=(h.id) checked[ticked]
                            aria-label=(format!("Select {}", h.id));
                    } @else {
                        span.read-only title=(not_yours(h, u)) { "—" }
                    }
                }
                td.time { (pages::short_time(&h.time)) }
                td.sender { (h.mail_from) }
                td.recipients { (h.rcpt_to.join(", ")) }
                td.subject { (pages::clipped(h.subject.as_deref().unwrap_or("(no subject)"))) }
                td.reason {
                    @for (rule, detail) in reasons(h, u) {
                        span.rule title=(detail) { (rule) } " "
                    }
                }
                td.attachments { (r.names().join(", ")) }
                td.size { (size_text(h.size)) }
                td { a.open href=(format!("/quarantine/{}", h.id)) { "Open" } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_is_read_as_a_school_writes_it_or_as_iso() {
        let d = |y, m, d| Ok(Some(Date::new(y, m, d).unwrap()));
        assert_eq!(parse_day("07/12/2026"), d(2026, 12, 7));
        assert_eq!(parse_day("7/12/2026"), d(2026, 12, 7));
        assert_eq!(parse_day(" 2026-12-07 "), d(2026, 12, 7));
        assert_eq!(parse_day("07-12-2026"), d(2026, 12, 7));
        assert_eq!(parse_day(""), Ok(None));
        for bad in ["31/02/2026", "12/2026", "yesterday", "2026-13-01", "1/2/26"] {
            let e = parse_day(bad).expect_err(bad);
            assert!(e.contains("dd/mm/yyyy"), "{bad}: {e}");
        }
    }

    #[test]
    fn pages_offered_are_the_ends_and_those_near() {
        assert!(page_numbers(1, 1).is_empty());
        assert_eq!(
            page_numbers(1, 3),
            vec![Some(1), Some(2), Some(3)],
            "137 held at 50 a page"
        );
        assert_eq!(
            page_numbers(6, 12),
            vec![
                Some(1),
                None,
                Some(4),
                Some(5),
                Some(6),
                Some(7),
                Some(8),
                None,
                Some(12)
            ]
        );
    }

    #[test]
    fn links_keep_every_filter() {
        let asked = Asked {
            q: "list".into(),
            from: "01/12/2026".into(),
            rule: "unscannable-attachment".into(),
            ext: "xlsx".into(),
            ..Asked::default()
        };
        let link = asked.link(Column::Size, false, 3, true);
        assert_eq!(
            link,
            "/quarantine?q=list&from=01%2F12%2F2026&rule=unscannable-attachment&ext=xlsx&sort=size&dir=asc&page=3&all=1"
        );
        let p: HashMap<String, String> =
            form_urlencoded::parse(link.split_once('?').unwrap().1.as_bytes())
                .into_owned()
                .collect();
        let back = Asked::read(&p);
        assert_eq!(back.column(), Column::Size);
        assert!(!back.descending() && back.all && back.page == 3);
        assert_eq!(back.from, "01/12/2026");
        // ".XLSX" and "*.xlsx" are the same filter.
        let p: HashMap<String, String> = [("ext".to_string(), "*.XLSX".to_string())].into();
        assert_eq!(Asked::read(&p).ext, "xlsx");
    }
}
