//! The report written out: plain text (terminal, the mail's text part), HTML (the mail's HTML
//! part: plain tables, no CSS, which every mail client shows) and CSV (Excel: one row per item
//! with its section, UTF-8 with BOM, formulas neutralised like the audit export).
//!
//! Every value that came from mail or people goes through [`one_line`] (and HTML escaping), so
//! a subject cannot forge lines, terminal colours or markup.

use clap::ValueEnum;
use maud::{DOCTYPE, Markup, html};

use super::{
    Audience, Case, Count, Fate, Hold, Report, SchoolLine, TrustSummary, age_words, local, one_line,
};
use crate::review::csv;

/// What `report --format` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Plain text, for reading and for the mail's text part.
    Text,
    /// One HTML page of simple tables, as mailed to the DSLs.
    Html,
    /// For Excel: UTF-8 with BOM, one row per item with its section.
    Csv,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Html => "HTML",
            Format::Csv => "CSV",
        }
    }
}

/// The report as `format`.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Text => text(report),
        Format::Html => html_page(report).into_string(),
        Format::Csv => csv_rows(report),
    }
}

/// The mail's subject.
pub fn subject(report: &Report) -> String {
    let what = match report.audience {
        Audience::Dsl => "Weekly safeguarding report",
        Audience::Escalation => "Weekly safeguarding report (escalation)",
    };
    format!(
        "{what}: {}, {} to {}",
        one_line(&report.school),
        day(report.period.since, report),
        day(report.period.until, report)
    )
}

fn day(t: jiff::Timestamp, r: &Report) -> String {
    t.to_zoned(r.tz.clone()).strftime("%Y-%m-%d").to_string()
}

fn when(t: jiff::Timestamp, r: &Report) -> String {
    local(t, &r.tz)
}

fn person(address: &str, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("{} <{}>", one_line(n), one_line(address)),
        None => one_line(address),
    }
}

fn list(items: &[String]) -> String {
    one_line(&items.join(", "))
}

/// One line summing the report up (also the first thing in every format).
pub fn summary(r: &Report) -> String {
    format!(
        "{} flagged messages, {} unreviewed cases, {} cases reviewed, {} safeguarding holds, {} sensitive-attachment holds released or deleted, {} alerts undelivered",
        r.flagged,
        r.unreviewed.len(),
        r.reviewed.len(),
        r.safeguarding_holds.len(),
        r.attachment_holds.len(),
        r.undelivered.len()
    )
}

fn hold_line(h: &Hold, r: &Report) -> String {
    let mut s = one_line(&h.id);
    if let Some(t) = h.time {
        s.push_str(&format!(" held {}", when(t, r)));
    }
    if !h.sender.is_empty() {
        s.push_str(&format!(
            ": {} to {}",
            one_line(&h.sender),
            list(&h.recipients)
        ));
    }
    if !h.rules.is_empty() {
        s.push_str(&format!(" [{}]", list(&h.rules)));
    }
    if !h.subject.is_empty() {
        s.push_str(&format!(" \"{}\"", one_line(&h.subject)));
    }
    s.push_str(&format!(" - {}", one_line(&h.fate.describe(&r.tz))));
    s
}

fn case_line(c: &Case, r: &Report) -> String {
    format!(
        "#{} {} from {} to {} [{}] \"{}\"",
        c.seq,
        when(c.time, r),
        person(&c.sender, c.sender_name.as_deref()),
        list(&c.recipients),
        list(&c.rules),
        one_line(&c.subject)
    )
}

fn text(r: &Report) -> String {
    let mut o = String::new();
    let mut line = |s: String| {
        o.push_str(&s);
        o.push('\n');
    };
    line(format!(
        "Weekly safeguarding report: {}",
        one_line(&r.school)
    ));
    line(format!("For: {}", r.audience.describe()));
    line(format!(
        "Period: {} to {} ({}); made {}",
        when(r.period.since, r),
        when(r.period.until, r),
        r.tz.iana_name().unwrap_or("UTC"),
        when(r.made, r)
    ));
    line(format!("Summary: {}", summary(r)));
    line(String::new());

    line(format!("Flags by rule ({} flagged messages)", r.flagged));
    counts(&mut line, &r.by_rule, false);
    line(String::new());
    line("Flags by staff member".into());
    counts(&mut line, &r.by_staff, true);
    line(String::new());

    section(
        &mut line,
        format!(
            "Cases still unreviewed: {} (oldest first)",
            r.unreviewed.len()
        ),
        &r.unreviewed,
        |c| {
            vec![format!(
                "  {}, unreviewed for {}",
                case_line(c, r),
                age_words(r.age(c))
            )]
        },
    );
    section(
        &mut line,
        format!("Cases reviewed: {}", r.reviewed.len()),
        &r.reviewed,
        |rv| {
            let v = &rv.review;
            vec![
                format!("  {}", case_line(&rv.case, r)),
                format!(
                    "    outcome {} by {} on {}{}{}",
                    one_line(v.outcome.as_deref().unwrap_or("none")),
                    one_line(&v.actor),
                    when(v.time, r),
                    v.reference
                        .as_deref()
                        .map(|x| format!("; reference {}", one_line(x)))
                        .unwrap_or_default(),
                    if v.note.is_empty() {
                        String::new()
                    } else {
                        format!("; note: {}", one_line(&v.note))
                    }
                ),
            ]
        },
    );
    section(
        &mut line,
        format!(
            "Safeguarding holds: {} (and what became of them)",
            r.safeguarding_holds.len()
        ),
        &r.safeguarding_holds,
        |h| vec![format!("  {}", hold_line(h, r))],
    );
    section(
        &mut line,
        format!(
            "Sensitive-attachment holds released or deleted: {}",
            r.attachment_holds.len()
        ),
        &r.attachment_holds,
        |h| vec![format!("  {}", hold_line(h, r))],
    );
    section(
        &mut line,
        format!(
            "Alerts that could not be delivered: {}",
            r.undelivered.len()
        ),
        &r.undelivered,
        |u| {
            vec![format!(
                "  record {} on {}: {}",
                u.seq,
                when(u.time, r),
                one_line(&u.detail)
            )]
        },
    );

    line("Audit trail".into());
    line(format!("  Chain head: {}", r.chain.head_line()));
    line(format!("  audit verify: {}", r.chain.verify_line()));
    if !r.unreadable.is_empty() {
        line(format!(
            "  Records this schoolgate could not read (left out): {}",
            seqs(&r.unreadable)
        ));
    }
    o
}

fn counts(line: &mut impl FnMut(String), counts: &[Count], staff: bool) {
    for c in counts {
        if staff {
            line(format!(
                "  {:>4}  {}  [{}]",
                c.messages,
                person(&c.key, c.name.as_deref()),
                list(&c.rules)
            ));
        } else {
            line(format!("  {:>4}  {}", c.messages, one_line(&c.key)));
        }
    }
    if counts.is_empty() {
        line("  none".into());
    }
}

/// One section of the text report: its heading, the lines of each item, "none" when it has
/// none, and a blank line after it.
fn section<T>(
    line: &mut impl FnMut(String),
    heading: String,
    items: &[T],
    each: impl Fn(&T) -> Vec<String>,
) {
    line(heading);
    for item in items {
        for l in each(item) {
            line(l);
        }
    }
    none(line, items.is_empty());
    line(String::new());
}

fn none(line: &mut impl FnMut(String), empty: bool) {
    if empty {
        line("  none".into());
    }
}

fn seqs(s: &[u64]) -> String {
    s.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

fn html_page(r: &Report) -> Markup {
    let head_line = r.chain.head_line();
    html! {
        (DOCTYPE)
        html lang="en-GB" {
            head {
                meta charset="utf-8";
                title { (subject(r)) }
            }
            body {
                h1 { "Weekly safeguarding report: " (one_line(&r.school)) }
                p {
                    "For " (r.audience.describe()) ". Period "
                    (when(r.period.since, r)) " to " (when(r.period.until, r))
                    " (" (r.tz.iana_name().unwrap_or("UTC")) "); made " (when(r.made, r)) "."
                }
                p { b { "Summary: " } (summary(r)) }

                h2 { "Flags by rule (" (r.flagged) " flagged messages)" }
                (count_table(&r.by_rule, false))
                h2 { "Flags by staff member" }
                (count_table(&r.by_staff, true))

                h2 { "Cases still unreviewed: " (r.unreviewed.len()) }
                @if r.unreviewed.is_empty() { p { "None." } } @else {
                    p { "Oldest first." }
                    table border="1" cellpadding="4" cellspacing="0" {
                        tr { th { "Case" } th { "Flagged" } th { "Unreviewed for" } th { "From" } th { "To" } th { "Rules" } th { "Subject" } }
                        @for c in &r.unreviewed {
                            tr {
                                td { (c.seq) } td { (when(c.time, r)) } td { (age_words(r.age(c))) }
                                td { (person(&c.sender, c.sender_name.as_deref())) }
                                td { (list(&c.recipients)) } td { (list(&c.rules)) }
                                td { (one_line(&c.subject)) }
                            }
                        }
                    }
                }

                h2 { "Cases reviewed: " (r.reviewed.len()) }
                @if r.reviewed.is_empty() { p { "None." } } @else {
                    table border="1" cellpadding="4" cellspacing="0" {
                        tr { th { "Case" } th { "Flagged" } th { "From" } th { "Rules" } th { "Outcome" } th { "By" } th { "Reviewed" } th { "Reference" } th { "Note" } }
                        @for rv in &r.reviewed {
                            tr {
                                td { (rv.case.seq) } td { (when(rv.case.time, r)) }
                                td { (person(&rv.case.sender, rv.case.sender_name.as_deref())) }
                                td { (list(&rv.case.rules)) }
                                td { (one_line(rv.review.outcome.as_deref().unwrap_or("none"))) }
                                td { (one_line(&rv.review.actor)) } td { (when(rv.review.time, r)) }
                                td { (one_line(rv.review.reference.as_deref().unwrap_or(""))) }
                                td { (one_line(&rv.review.note)) }
                            }
                        }
                    }
                }

                h2 { "Safeguarding holds: " (r.safeguarding_holds.len()) }
                (hold_table(&r.safeguarding_holds, r))
                h2 { "Sensitive-attachment holds released or deleted: " (r.attachment_holds.len()) }
                (hold_table(&r.attachment_holds, r))

                h2 { "Alerts that could not be delivered: " (r.undelivered.len()) }
                @if r.undelivered.is_empty() { p { "None." } } @else {
                    table border="1" cellpadding="4" cellspacing="0" {
                        tr { th { "Record" } th { "When" } th { "What" } }
                        @for u in &r.undelivered {
                            tr { td { (u.seq) } td { (when(u.time, r)) } td { (one_line(&u.detail)) } }
                        }
                    }
                }

                h2 { "Audit trail" }
                table border="1" cellpadding="4" cellspacing="0" {
                    tr { th align="left" { "Chain head" } td { code { (head_line) } } }
                    tr { th align="left" { "audit verify" } td { (r.chain.verify_line()) } }
                    @if !r.unreadable.is_empty() {
                        tr { th align="left" { "Records left out (unreadable)" } td { (seqs(&r.unreadable)) } }
                    }
                }
            }
        }
    }
}

fn count_table(counts: &[Count], staff: bool) -> Markup {
    html! {
        @if counts.is_empty() { p { "None." } } @else {
            table border="1" cellpadding="4" cellspacing="0" {
                tr {
                    th { @if staff { "Staff member" } @else { "Rule" } }
                    th { "Flagged messages" }
                    @if staff { th { "Rules" } }
                }
                @for c in counts {
                    tr {
                        td { @if staff { (person(&c.key, c.name.as_deref())) } @else { (one_line(&c.key)) } }
                        td align="right" { (c.messages) }
                        @if staff { td { (list(&c.rules)) } }
                    }
                }
            }
        }
    }
}

fn hold_table(holds: &[Hold], r: &Report) -> Markup {
    html! {
        @if holds.is_empty() { p { "None." } } @else {
            table border="1" cellpadding="4" cellspacing="0" {
                tr { th { "Held message" } th { "Held" } th { "From" } th { "To" } th { "Rules" } th { "Subject" } th { "What became of it" } }
                @for h in holds {
                    tr {
                        td { (one_line(&h.id)) }
                        td { (h.time.map(|t| when(t, r)).unwrap_or_default()) }
                        td { (one_line(&h.sender)) } td { (list(&h.recipients)) }
                        td { (list(&h.rules)) } td { (one_line(&h.subject)) }
                        td { (one_line(&h.fate.describe(&r.tz))) }
                    }
                }
            }
        }
    }
}

/// The CSV columns. Stable: add new ones at the end.
pub const CSV_COLUMNS: [&str; 12] = [
    "section",
    "case",
    "time",
    "sender",
    "recipients",
    "rules",
    "subject",
    "count",
    "age_hours",
    "outcome",
    "by",
    "detail",
];

fn csv_rows(r: &Report) -> String {
    let mut o = String::from(csv::BOM);
    let mut row =
        |cells: [String; 12]| o.push_str(&csv::row(cells.into_iter().map(|c| one_line(&c))));
    row(CSV_COLUMNS.map(str::to_string));
    let t = |t: jiff::Timestamp| t.to_string();
    let e = String::new;
    row([
        "period".into(),
        e(),
        t(r.period.since),
        e(),
        e(),
        e(),
        e(),
        e(),
        e(),
        e(),
        e(),
        format!(
            "{} to {}; made {}",
            t(r.period.since),
            t(r.period.until),
            t(r.made)
        ),
    ]);
    for c in &r.by_rule {
        row([
            "flags-by-rule".into(),
            e(),
            e(),
            e(),
            e(),
            c.key.clone(),
            e(),
            c.messages.to_string(),
            e(),
            e(),
            e(),
            e(),
        ]);
    }
    for c in &r.by_staff {
        row([
            "flags-by-staff".into(),
            e(),
            e(),
            c.key.clone(),
            e(),
            list(&c.rules),
            e(),
            c.messages.to_string(),
            e(),
            e(),
            e(),
            c.name.clone().unwrap_or_default(),
        ]);
    }
    for c in &r.unreviewed {
        row([
            "unreviewed".into(),
            c.seq.to_string(),
            t(c.time),
            c.sender.clone(),
            c.recipients.join(", "),
            list(&c.rules),
            c.subject.clone(),
            e(),
            (r.age(c).as_secs() / 3600).to_string(),
            "new".into(),
            e(),
            e(),
        ]);
    }
    for rv in &r.reviewed {
        let c = &rv.case;
        let v = &rv.review;
        row([
            "reviewed".into(),
            c.seq.to_string(),
            t(c.time),
            c.sender.clone(),
            c.recipients.join(", "),
            list(&c.rules),
            c.subject.clone(),
            e(),
            e(),
            v.outcome.clone().unwrap_or_default(),
            v.actor.clone(),
            format!(
                "reviewed {}{}{}",
                t(v.time),
                v.reference
                    .as_deref()
                    .map(|x| format!("; reference {x}"))
                    .unwrap_or_default(),
                if v.note.is_empty() {
                    String::new()
                } else {
                    format!("; note: {}", v.note)
                }
            ),
        ]);
    }
    for (section, holds) in [
        ("safeguarding-hold", &r.safeguarding_holds),
        ("attachment-hold", &r.attachment_holds),
    ] {
        for h in holds {
            let (outcome, by, detail) = match &h.fate {
                super::Fate::StillHeld => ("held".to_string(), e(), h.id.clone()),
                super::Fate::Released { by, time, detail } => (
                    "released".into(),
                    by.clone(),
                    format!("{} released {}{}", h.id, t(*time), super::with(detail)),
                ),
                super::Fate::Deleted { by, time, detail } => (
                    "deleted".into(),
                    by.clone(),
                    format!("{} deleted {}{}", h.id, t(*time), super::with(detail)),
                ),
            };
            row([
                section.into(),
                h.seq.map(|s| s.to_string()).unwrap_or_default(),
                h.time.map(t).unwrap_or_default(),
                h.sender.clone(),
                h.recipients.join(", "),
                list(&h.rules),
                h.subject.clone(),
                e(),
                e(),
                outcome,
                by,
                detail,
            ]);
        }
    }
    for u in &r.undelivered {
        row([
            "undelivered-alert".into(),
            u.seq.to_string(),
            t(u.time),
            e(),
            e(),
            e(),
            e(),
            e(),
            e(),
            e(),
            e(),
            u.detail.clone(),
        ]);
    }
    row([
        "audit-chain".into(),
        e(),
        t(r.made),
        e(),
        e(),
        e(),
        e(),
        r.chain.records.to_string(),
        e(),
        if r.chain.broken.is_none() {
            "intact".into()
        } else {
            "broken".into()
        },
        e(),
        format!(
            "head {}; audit verify: {}",
            r.chain.head_line(),
            r.chain.verify_line()
        ),
    ]);
    o
}

/// The trust summary as `format`: one line per school (and one for mail from no school), the
/// counts of each school's DSLs' copy side by side. Nobody's mail is named in it: each school's
/// own report, to its DSLs, has the cases.
pub fn render_summary(s: &TrustSummary, format: Format) -> String {
    match format {
        Format::Text => summary_text(s),
        Format::Html => summary_html(s).into_string(),
        Format::Csv => summary_csv(s),
    }
}

/// The trust summary mail's subject.
pub fn summary_subject(s: &TrustSummary) -> String {
    let day = |t: jiff::Timestamp| t.to_zoned(s.tz.clone()).strftime("%Y-%m-%d").to_string();
    format!(
        "Weekly safeguarding report, trust summary: {}, {} to {}",
        one_line(&s.trust),
        day(s.period.since),
        day(s.period.until)
    )
}

/// One line summing the trust summary up, for its audit record.
pub fn summary_of_trust(s: &TrustSummary) -> String {
    s.lines()
        .map(|l| {
            format!(
                "{}: {} flagged",
                one_line(&l.report.school),
                l.report.flagged
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

const SUMMARY_COLUMNS: [&str; 8] = [
    "school",
    "flagged",
    "unreviewed cases",
    "cases reviewed",
    "safeguarding holds",
    "still held",
    "attachment holds released or deleted",
    "alerts undelivered",
];

fn summary_cells(l: &SchoolLine) -> [String; 9] {
    let r = &l.report;
    let still = r
        .safeguarding_holds
        .iter()
        .filter(|h| h.fate == Fate::StillHeld)
        .count();
    [
        one_line(&r.school),
        r.flagged.to_string(),
        r.unreviewed.len().to_string(),
        r.reviewed.len().to_string(),
        r.safeguarding_holds.len().to_string(),
        still.to_string(),
        r.attachment_holds.len().to_string(),
        r.undelivered.len().to_string(),
        l.escalated.to_string(),
    ]
}

const ESCALATED_COLUMN: &str = "flags sent to escalation";

fn summary_text(s: &TrustSummary) -> String {
    let mut o = String::new();
    let when = |t: jiff::Timestamp| local(t, &s.tz);
    o.push_str(&format!(
        "Weekly safeguarding report, trust summary: {}\n",
        one_line(&s.trust)
    ));
    o.push_str("For: the trust's Designated Safeguarding Leads (counts only; each school's DSLs get their own school's report)\n");
    o.push_str(&format!(
        "Period: {} to {} ({}); made {}\n\n",
        when(s.period.since),
        when(s.period.until),
        s.tz.iana_name().unwrap_or("UTC"),
        when(s.made)
    ));
    for l in s.lines() {
        let c = summary_cells(l);
        o.push_str(&format!("{}\n", c[0]));
        for (name, value) in SUMMARY_COLUMNS
            .iter()
            .skip(1)
            .chain(std::iter::once(&ESCALATED_COLUMN))
            .zip(c.iter().skip(1))
        {
            o.push_str(&format!("  {name}: {value}\n"));
        }
    }
    o.push_str(&format!(
        "\nAudit chain: head {}; {}\n",
        s.chain.head_line(),
        s.chain.verify_line()
    ));
    o
}

fn summary_html(s: &TrustSummary) -> Markup {
    let when = |t: jiff::Timestamp| local(t, &s.tz);
    html! {
        (DOCTYPE)
        html lang="en-GB" {
            head {
                meta charset="utf-8";
                title { (summary_subject(s)) }
            }
            body {
                h1 { "Weekly safeguarding report, trust summary: " (one_line(&s.trust)) }
                p {
                    "For the trust's Designated Safeguarding Leads: counts only; each school's DSLs get their own school's report. Period "
                    (when(s.period.since)) " to " (when(s.period.until))
                    " (" (s.tz.iana_name().unwrap_or("UTC")) "); made " (when(s.made)) "."
                }
                table border="1" cellpadding="4" {
                    tr {
                        @for c in SUMMARY_COLUMNS { th { (c) } }
                        th { (ESCALATED_COLUMN) }
                    }
                    @for l in s.lines() {
                        tr { @for c in summary_cells(l) { td { (c) } } }
                    }
                }
                p { "Audit chain: head " (s.chain.head_line()) "; " (s.chain.verify_line()) }
            }
        }
    }
}

fn summary_csv(s: &TrustSummary) -> String {
    let mut o = String::from(csv::BOM);
    let header = SUMMARY_COLUMNS
        .iter()
        .chain(std::iter::once(&ESCALATED_COLUMN))
        .map(|c| c.to_string());
    o.push_str(&csv::row(header));
    for l in s.lines() {
        o.push_str(&csv::row(summary_cells(l).into_iter()));
    }
    o
}
