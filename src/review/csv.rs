//! CSV for Excel: UTF-8 with a byte-order mark, CRLF rows, RFC 4180 quoting, one row per record
//! in a fixed column order, and every cell that Excel would take for a formula neutralised.

use crate::store::{AuditEntry, AuditRecord, FindingRecord, FlagRecord};

/// Written first, so Excel reads the file as UTF-8.
pub const BOM: &str = "\u{feff}";

/// The columns, in order. Stable: scripts and spreadsheets rely on it; add new ones at the end.
pub const COLUMNS: [&str; 39] = [
    "seq",
    "time",
    "kind",
    "actor",
    "action",
    "client",
    "helo",
    "tls",
    "queue_id",
    "mail_from",
    "rcpt_to",
    "header_from",
    "header_to",
    "header_cc",
    "subject",
    "message_id",
    "size",
    "sha256_received",
    "sha256_delivered",
    "disclaimer",
    "flags",
    "findings",
    "verdict",
    "outcome",
    "detail",
    "quarantine_id",
    "evidence",
    "next_hop",
    "next_hop_reply",
    "reply",
    "notes",
    "hash",
    "prev_hash",
    "attachments",
    "case_seq",
    "case_action",
    "case_outcome",
    "case_reference",
    "case_note",
];

/// The header row.
pub fn header() -> String {
    row(COLUMNS.iter().map(|c| c.to_string()))
}

/// The row for one record.
pub fn record_row(entry: &AuditEntry, r: &AuditRecord) -> String {
    let m = r.message.as_ref();
    let a = r.action.as_ref();
    let c = r.case_review.as_ref();
    let ms = |f: fn(&crate::store::MessageRecord) -> String| m.map(f).unwrap_or_default();
    let cells: [String; 39] = [
        entry.seq.to_string(),
        r.time.clone(),
        r.kind.as_str().to_string(),
        a.map(|a| a.actor.clone()).unwrap_or_default(),
        a.map(|a| a.detail.clone()).unwrap_or_default(),
        ms(|m| m.client.clone()),
        ms(|m| m.helo.clone()),
        ms(|m| m.tls.clone().unwrap_or_default()),
        ms(|m| m.queue_id.clone().unwrap_or_default()),
        ms(|m| m.mail_from.clone()),
        ms(|m| m.rcpt_to.join("; ")),
        ms(|m| m.header_from.clone().unwrap_or_default()),
        ms(|m| m.header_to.join("; ")),
        ms(|m| m.header_cc.join("; ")),
        ms(|m| m.subject.clone().unwrap_or_default()),
        ms(|m| m.message_id.clone().unwrap_or_default()),
        ms(|m| m.size.to_string()),
        ms(|m| m.sha256_received.clone()),
        ms(|m| m.sha256_delivered.clone().unwrap_or_default()),
        ms(|m| m.disclaimer.clone().unwrap_or_default()),
        ms(|m| m.flags.iter().map(flag).collect::<Vec<_>>().join(" | ")),
        ms(|m| {
            m.findings
                .iter()
                .map(finding)
                .collect::<Vec<_>>()
                .join(" | ")
        }),
        ms(|m| m.verdict.clone()),
        ms(|m| m.outcome.clone()),
        ms(|m| m.detail.clone().unwrap_or_default()),
        ms(|m| m.quarantine_id.clone().unwrap_or_default()),
        ms(|m| m.evidence.clone().unwrap_or_default()),
        ms(|m| m.next_hop.clone().unwrap_or_default()),
        ms(|m| m.next_hop_reply.clone().unwrap_or_default()),
        ms(|m| m.reply.clone()),
        ms(|m| m.notes.join(" | ")),
        entry.hash.clone(),
        entry.prev_hash.clone(),
        ms(|m| {
            m.attachments
                .iter()
                .map(attachment)
                .collect::<Vec<_>>()
                .join(" | ")
        }),
        c.map(|c| c.case_seq.to_string()).unwrap_or_default(),
        c.map(|c| c.action.clone()).unwrap_or_default(),
        c.and_then(|c| c.outcome.clone()).unwrap_or_default(),
        c.and_then(|c| c.reference.clone()).unwrap_or_default(),
        c.map(|c| c.note.clone()).unwrap_or_default(),
    ];
    row(cells.into_iter())
}

/// `name (type, N bytes, sha256 …, encrypted: how | clear)`.
fn attachment(a: &crate::store::AttachmentRecord) -> String {
    format!(
        "{} ({}, {} bytes, sha256 {}, {})",
        a.name,
        a.mime_type,
        a.size,
        a.sha256,
        match &a.encryption {
            Some(how) => format!("encrypted: {how}"),
            None if a.encrypted => "encrypted".to_string(),
            None => "clear".to_string(),
        }
    )
}

/// `rule (action): detail [evidence: …]`.
fn flag(f: &FlagRecord) -> String {
    let mut s = format!("{} ({}): {}", f.rule, f.action, f.detail);
    if !f.evidence.is_empty() {
        s.push_str(&format!(" [evidence: {}]", f.evidence));
    }
    s
}

/// `rule (action) in ATTACHMENT: detail [detectors: name×n, …] [evidence: …; …]`.
fn finding(f: &FindingRecord) -> String {
    let mut s = format!(
        "{} ({}) in {}: {}",
        f.rule, f.action, f.attachment, f.detail
    );
    if !f.detectors.is_empty() {
        let d: Vec<String> = f
            .detectors
            .iter()
            .map(|(name, n)| format!("{name}×{n}"))
            .collect();
        s.push_str(&format!(" [detectors: {}]", d.join(", ")));
    }
    if !f.evidence.is_empty() {
        s.push_str(&format!(" [evidence: {}]", f.evidence.join("; ")));
    }
    s
}

/// One CSV line (CRLF-terminated) of `cells`, each through [`cell`].
pub fn row(cells: impl Iterator<Item = String>) -> String {
    let mut out = String::new();
    for (i, c) in cells.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&cell(&c));
    }
    out.push_str("\r\n");
    out
}

/// One cell: a value Excel would run as a formula (starting `=`, `+`, `-`, `@`, a tab or a
/// carriage return) gets a leading `'`, which Excel shows as text; then RFC 4180 quoting.
pub fn cell(value: &str) -> String {
    let neutral = match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}"),
        _ => value.to_string(),
    };
    if neutral.contains([',', '"', '\r', '\n'])
        || neutral.starts_with(' ')
        || neutral.ends_with(' ')
    {
        format!("\"{}\"", neutral.replace('"', "\"\""))
    } else {
        neutral
    }
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn formulas_are_neutralised_and_quoting_is_rfc4180() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("+1"), "'+1");
        assert_eq!(cell("-2+3"), "'-2+3");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("a, b"), "\"a, b\"");
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("two\nlines"), "\"two\nlines\"");
    }

    /// Excel also runs a formula behind a leading tab or carriage return (the README's claim).
    #[test]
    fn a_leading_tab_or_carriage_return_is_neutralised_too() {
        assert_eq!(cell("\t=HYPERLINK(1)"), "'\t=HYPERLINK(1)");
        assert_eq!(cell("\r=1+1"), "\"'\r=1+1\"");
        assert_eq!(cell("\t+cmd|' /C calc'!A0"), "'\t+cmd|' /C calc'!A0");
        // Not at the start: plain text, left alone (quoted only where RFC 4180 needs it).
        assert_eq!(cell("a\tb"), "a\tb");
        assert_eq!(cell("a\r=b"), "\"a\r=b\"");
        for lead in ['=', '+', '-', '@', '\t', '\r'] {
            let c = cell(&format!("{lead}x"));
            assert!(
                c.starts_with('\'') || c.starts_with("\"'"),
                "{lead:?}: {c:?}"
            );
        }
    }
}
