//! The disclaimer, added to the message's main text parts and to nothing else.
//!
//! Seed 000: "The school requires a standard disclaimer to be attached to all email
//! correspondence except those of the Headteacher, stating that, 'the views expressed are not
//! necessarily those of the school'."
//!
//! The message is never re-serialised: [`crate::mime::tree`] finds the parts by their
//! boundaries, and only the body (and, when its encoding or charset must change, the header) of
//! each main text part is replaced. Every other byte — other headers, attachments, inline
//! images, preambles — is copied as it came.
//!
//! Which parts are "main": the root when it is text; every text child of a
//! multipart/alternative on the main path; the first child of a multipart/mixed (or any other
//! multipart); the root part of a multipart/related. Attached text files, forwarded
//! message/rfc822 parts and digests are never main. Signed and encrypted entities are never
//! altered (`on_signed = "wrap"` puts the untouched signed entity inside a new
//! multipart/mixed beside the disclaimer). A message with no main text part gets the
//! disclaimer as a new text part.

pub(crate) mod placement;

use std::borrow::Cow;
use std::ops::Range;

use sha2::{Digest, Sha256};

use super::DisclaimerOutcome;
use crate::config::OnSigned;
use crate::mime::charset::Charset;
use crate::mime::encoding::{
    base64_decode, base64_encode, qp_decode, qp_encode, qp_encode_binary, qp_encoded_offset,
};
use crate::mime::header::{Parameterised, param_value};
use crate::mime::line_ending;
use crate::mime::tree::{self, Part};

pub use placement::escape_html;

/// Longest line we may write (RFC 5322 §2.1.1); longer would be split by Postfix after DKIM.
const MAX_LINE: usize = 998;

/// What adding the disclaimer did, with the new message.
#[derive(Debug, Clone)]
pub struct Rewrite {
    pub outcome: DisclaimerOutcome,
    /// The new message, when it changed.
    pub message: Option<Vec<u8>>,
    /// What else happened, in words, for the audit trail (a part converted to UTF-8, why a
    /// message was left alone).
    pub notes: Vec<String>,
}

/// What adding the disclaimer would do, as edits to the original bytes: the relay applies them
/// while writing the outgoing message, so a large message is copied once, not twice.
#[derive(Debug, Clone)]
pub struct Plan {
    pub outcome: DisclaimerOutcome,
    /// The edits, when the message changes.
    pub patch: Option<Patch>,
    pub notes: Vec<String>,
}

impl Plan {
    fn unchanged(outcome: DisclaimerOutcome, note: Option<String>) -> Self {
        Plan {
            outcome,
            patch: None,
            notes: note.into_iter().collect(),
        }
    }

    fn changed(outcome: DisclaimerOutcome, edits: Vec<Edit>, notes: Vec<String>) -> Self {
        Plan {
            outcome,
            patch: Some(Patch::new(edits)),
            notes,
        }
    }
}

/// Replace `raw[range]` with the bytes.
type Edit = (Range<usize>, Vec<u8>);

/// Non-overlapping edits to a message, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    edits: Vec<Edit>,
}

impl Patch {
    fn new(mut edits: Vec<Edit>) -> Self {
        edits.sort_by_key(|(r, _)| r.start);
        Patch { edits }
    }

    /// `prefix` followed by `original` with the edits made: one allocation, one copy.
    pub fn apply(&self, prefix: &[u8], original: &[u8]) -> Vec<u8> {
        let grows: usize = self.edits.iter().map(|(_, b)| b.len()).sum();
        let mut out = Vec::with_capacity(prefix.len() + original.len() + grows);
        out.extend_from_slice(prefix);
        let mut cursor = 0;
        for (range, bytes) in &self.edits {
            out.extend_from_slice(&original[cursor..range.start]);
            out.extend_from_slice(bytes);
            cursor = range.end;
        }
        out.extend_from_slice(&original[cursor..]);
        out
    }
}

/// Adds the disclaimer and returns the new message (see [`plan`] for the edits alone).
pub fn add_disclaimer(message: &[u8], text: &str, html: &str, on_signed: OnSigned) -> Rewrite {
    let p = plan(message, text, html, on_signed);
    Rewrite {
        outcome: p.outcome,
        message: p.patch.map(|patch| patch.apply(b"", message)),
        notes: p.notes,
    }
}

/// The disclaimer in both its forms.
struct Disclaimer<'a> {
    text: &'a str,
    html: Cow<'a, str>,
}

/// Plans the disclaimer (`text` for plain parts, `html` for HTML parts; the text, escaped, when
/// `html` is empty) for `message`.
pub fn plan(message: &[u8], text: &str, html: &str, on_signed: OnSigned) -> Plan {
    let text = text.trim();
    let html = html.trim();
    if text.is_empty() && html.is_empty() {
        return Plan::unchanged(DisclaimerOutcome::Off, None);
    }
    let d = Disclaimer {
        text: if text.is_empty() { html } else { text },
        html: if html.is_empty() {
            Cow::Owned(format!("<p>{}</p>", escape_html(text)))
        } else {
            Cow::Borrowed(html)
        },
    };
    let root = tree::scan(message);
    let mut found = Found::default();
    walk(message, &root, &mut found);
    // Only damage on the way to the text we change matters: every other byte is copied.
    if let Some(why) = found.malformed {
        return Plan::unchanged(
            DisclaimerOutcome::SkippedMalformed,
            Some(format!("MIME structure: {why}")),
        );
    }
    if let Some(protection) = found.protected {
        if disclaimer_part_present(message, &root, d.text) {
            return Plan::unchanged(DisclaimerOutcome::AlreadyPresent, None);
        }
        return match (protection, on_signed) {
            (Protection::Signed, OnSigned::Wrap) => Plan::changed(
                DisclaimerOutcome::Wrapped,
                wrap(message, &root, &d),
                vec!["signed message wrapped untouched in multipart/mixed".into()],
            ),
            (Protection::Signed, OnSigned::Skip) => Plan::unchanged(
                DisclaimerOutcome::SkippedSigned,
                Some("signed message delivered untouched (on_signed = \"skip\")".into()),
            ),
            (Protection::Encrypted, _) => Plan::unchanged(
                DisclaimerOutcome::SkippedEncrypted,
                Some("encrypted message delivered untouched".into()),
            ),
        };
    }
    if found.main.is_empty() {
        if disclaimer_part_present(message, &root, d.text) {
            return Plan::unchanged(DisclaimerOutcome::AlreadyPresent, None);
        }
        return add_part(message, &root, &d);
    }
    let default_eol = line_ending(message, b"\r\n");
    let mut edits: Vec<Edit> = Vec::new();
    let mut notes = Vec::new();
    let mut inline_pgp = None;
    for (part, is_html) in &found.main {
        match rewrite_part(
            message,
            part,
            &d,
            *is_html,
            default_eol,
            part.range.start == 0,
        ) {
            Ok(PartEdit::Present) => {}
            Ok(PartEdit::Replace { range, bytes, note }) => {
                edits.push((range, bytes));
                notes.extend(note);
            }
            Ok(PartEdit::Protected(p)) => inline_pgp = Some(p),
            Err(why) => {
                return Plan::unchanged(DisclaimerOutcome::SkippedMalformed, Some(why));
            }
        }
    }
    if let Some(p) = inline_pgp {
        let outcome = match p {
            Protection::Signed => DisclaimerOutcome::SkippedSigned,
            Protection::Encrypted => DisclaimerOutcome::SkippedEncrypted,
        };
        return Plan::unchanged(outcome, Some("inline PGP: delivered untouched".into()));
    }
    if edits.is_empty() {
        return Plan::unchanged(DisclaimerOutcome::AlreadyPresent, None);
    }
    Plan::changed(DisclaimerOutcome::Appended, edits, notes)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protection {
    Signed,
    Encrypted,
}

#[derive(Default)]
struct Found<'p> {
    /// The main text parts, and whether each is HTML.
    main: Vec<(&'p Part, bool)>,
    protected: Option<Protection>,
    /// What is wrong with a part on the main path.
    malformed: Option<String>,
}

fn protection(part: &Part) -> Option<Protection> {
    match part.mime_type() {
        "multipart/signed" => Some(Protection::Signed),
        "multipart/encrypted" | "application/pgp-encrypted" => Some(Protection::Encrypted),
        "application/pkcs7-mime" | "application/x-pkcs7-mime" => {
            match part.content_type.param("smime-type") {
                Some(t) if t.eq_ignore_ascii_case("signed-data") => Some(Protection::Signed),
                _ => Some(Protection::Encrypted),
            }
        }
        _ => None,
    }
}

fn is_text(part: &Part) -> Option<bool> {
    if part.is_attachment() {
        return None;
    }
    match part.mime_type() {
        "text/plain" => Some(false),
        "text/html" => Some(true),
        _ => None,
    }
}

fn walk<'p>(raw: &[u8], part: &'p Part, found: &mut Found<'p>) {
    if let Some(why) = &part.malformed {
        found.malformed.get_or_insert_with(|| why.clone());
        return;
    }
    if let Some(p) = protection(part) {
        found.protected = Some(p);
        return;
    }
    match part.mime_type() {
        "multipart/alternative" => {
            for child in &part.children {
                if let Some(html) = is_text(child) {
                    found.main.push((child, html));
                } else if child.is_multipart() {
                    walk(raw, child, found);
                }
            }
        }
        "multipart/related" => {
            let start = part.content_type.param("start").map(|s| {
                s.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            });
            let root = start
                .and_then(|id| {
                    part.children.iter().find(|c| {
                        c.header.value(raw, "content-id").is_some_and(|cid| {
                            cid.trim().trim_start_matches('<').trim_end_matches('>') == id
                        })
                    })
                })
                .or(part.children.first());
            if let Some(root) = root {
                walk(raw, root, found);
            }
        }
        "multipart/digest" => {}
        t if t.starts_with("multipart/") => {
            if let Some(first) = part.children.first() {
                walk(raw, first, found);
            }
        }
        _ => {
            if let Some(html) = is_text(part) {
                found.main.push((part, html));
            }
        }
    }
}

enum PartEdit {
    /// The new text already carries the disclaimer.
    Present,
    /// Replace `range` of the message with `bytes`.
    Replace {
        range: Range<usize>,
        bytes: Vec<u8>,
        note: Option<String>,
    },
    /// Inline PGP: not to be touched.
    Protected(Protection),
}

/// How a part's body is written: its Content-Transfer-Encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cte {
    Identity { seven_bit: bool },
    QuotedPrintable,
    Base64,
}

fn rewrite_part(
    raw: &[u8],
    part: &Part,
    d: &Disclaimer<'_>,
    is_html: bool,
    default_eol: &[u8],
    is_root: bool,
) -> Result<PartEdit, String> {
    let body_range = part.body();
    let body = &raw[body_range.clone()];
    // An empty body takes its line ending from the part's own header.
    let default_eol = line_ending(&raw[part.range.start..part.header.body_start], default_eol);
    let cte = match part.encoding.as_str() {
        "7bit" => Cte::Identity { seven_bit: true },
        "8bit" | "binary" => Cte::Identity { seven_bit: false },
        "quoted-printable" => Cte::QuotedPrintable,
        "base64" => Cte::Base64,
        other => return Err(format!("unknown Content-Transfer-Encoding \"{other}\"")),
    };
    let decoded: Cow<'_, [u8]> = match cte {
        Cte::Identity { .. } => Cow::Borrowed(body),
        Cte::QuotedPrintable => Cow::Owned(qp_decode(body)),
        Cte::Base64 => Cow::Owned(
            base64_decode(body).map_err(|e| format!("a main text part is not base64: {e}"))?,
        ),
    };
    let label = part.content_type.param("charset").unwrap_or("us-ascii");
    let charset = match Charset::from_label(label, &decoded) {
        Some(c) => c,
        // An unknown label on plain ASCII text changes nothing.
        None if decoded.is_ascii() => Charset::Ascii,
        None => return Err(format!("unknown charset \"{label}\"")),
    };
    let eol = line_ending(&decoded, default_eol);
    let flowed = part
        .content_type
        .param("format")
        .is_some_and(|f| f.eq_ignore_ascii_case("flowed"));

    // Work on the decoded bytes when the charset lets ASCII markers be found in them; else on
    // the text decoded to UTF-8.
    let utf8_text;
    let work: &[u8] = if charset.ascii_compatible() {
        &decoded
    } else {
        utf8_text = charset
            .decode(&decoded)
            .ok_or_else(|| format!("a main text part is not valid {label}"))?;
        utf8_text.as_bytes()
    };
    // Line breaks as the text has them (in UTF-16 the raw bytes do not show them).
    let eol = if charset.ascii_compatible() {
        eol
    } else {
        line_ending(work, default_eol)
    };
    if !is_html && is_inline_pgp(work) {
        return Ok(PartEdit::Protected(
            if contains(work, b"-----BEGIN PGP MESSAGE-----") {
                Protection::Encrypted
            } else {
                Protection::Signed
            },
        ));
    }
    let point = if is_html {
        placement::in_html(work)
    } else {
        placement::in_text(work)
    };
    // A disclaimer we added ends the new text, so only the tail of it is searched (a long
    // message need not be normalised whole on every pass).
    let window = 4 * 1024 + 4 * (d.text.len() + d.html.len());
    let tail = &work[point.offset.saturating_sub(window)..point.offset];
    let before_text = if charset.ascii_compatible() {
        charset.decode_lossy(tail)
    } else {
        String::from_utf8_lossy(tail).into_owned()
    };
    let present = if is_html {
        placement::html_has(&before_text, &d.html, d.text)
    } else {
        placement::text_has(&before_text, d.text)
    };
    if present {
        return Ok(PartEdit::Present);
    }
    let eol_str = std::str::from_utf8(eol).unwrap_or("\r\n");
    let segment = if is_html {
        html_segment(&d.html, eol_str)
    } else {
        text_segment(d.text, &work[..point.offset], point, flowed, eol_str)
    };

    // The segment in the part's charset, or the whole part converted to UTF-8.
    let mut note = None;
    let mut new_charset: Option<&str> = None;
    let encoded_segment = if !charset.ascii_compatible() {
        None
    } else if is_html {
        Some(charset.encode_html(&segment))
    } else {
        charset.encode(&segment)
    };

    let mut header_changes: Vec<(&str, String)> = Vec::new();
    // The common cases insert the segment and leave the body where it is: no copy of a large
    // part is made (the relay applies the insertion while writing the outgoing message).
    if part.header.body_start > part.header.fields_end {
        match (&encoded_segment, cte) {
            (Some(seg), Cte::Identity { seven_bit })
                if (!seven_bit || seg.is_ascii())
                    && longest_line(body) <= MAX_LINE
                    && longest_line(seg) <= MAX_LINE =>
            {
                // The segment starts and ends on line boundaries, so no line grows.
                let at = body_range.start + point.offset;
                return Ok(PartEdit::Replace {
                    range: at..at,
                    bytes: seg.clone(),
                    note,
                });
            }
            (Some(seg), Cte::QuotedPrintable) => {
                let e = qp_encoded_offset(body, point.offset);
                let mut b = Vec::with_capacity(seg.len() * 3 + 8);
                if e > 0 && body[e - 1] != b'\n' {
                    b.push(b'=');
                    b.extend_from_slice(eol);
                }
                b.extend_from_slice(&qp_encode(seg, eol));
                let at = body_range.start + e;
                return Ok(PartEdit::Replace {
                    range: at..at,
                    bytes: b,
                    note,
                });
            }
            _ => {}
        }
    }
    let new_body: Vec<u8> = match (encoded_segment, cte) {
        // Splice: every original byte of the encoded body stays.
        (Some(seg), Cte::Identity { seven_bit }) if !seven_bit || seg.is_ascii() => {
            let mut b = Vec::with_capacity(body.len() + seg.len());
            b.extend_from_slice(&body[..point.offset]);
            b.extend_from_slice(&seg);
            b.extend_from_slice(&body[point.offset..]);
            if longest_line(&b) > MAX_LINE {
                header_changes.push(("Content-Transfer-Encoding", "quoted-printable".into()));
                qp_encode(&b, eol)
            } else {
                b
            }
        }
        (Some(seg), Cte::QuotedPrintable) => {
            let e = qp_encoded_offset(body, point.offset);
            let mut b = Vec::with_capacity(body.len() + seg.len() * 3);
            b.extend_from_slice(&body[..e]);
            if e > 0 && body[e - 1] != b'\n' {
                b.push(b'=');
                b.extend_from_slice(eol);
            }
            b.extend_from_slice(&qp_encode(&seg, eol));
            b.extend_from_slice(&body[e..]);
            b
        }
        // Re-encode the whole part: base64, a 7bit part that now needs 8 bits, a charset that
        // cannot hold the disclaimer, or one that is not ASCII-compatible.
        (seg, _) => {
            let mut text_bytes: Vec<u8>;
            match seg {
                Some(seg) => {
                    text_bytes = Vec::with_capacity(decoded.len() + seg.len());
                    text_bytes.extend_from_slice(&decoded[..point.offset]);
                    text_bytes.extend_from_slice(&seg);
                    text_bytes.extend_from_slice(&decoded[point.offset..]);
                }
                None => {
                    let (head, tail) = if charset.ascii_compatible() {
                        (
                            charset.decode(&decoded[..point.offset]),
                            charset.decode(&decoded[point.offset..]),
                        )
                    } else {
                        let s = std::str::from_utf8(work).unwrap_or_default();
                        (
                            Some(s[..point.offset].to_string()),
                            Some(s[point.offset..].to_string()),
                        )
                    };
                    let (Some(head), Some(tail)) = (head, tail) else {
                        return Err(format!("a main text part is not valid {label}"));
                    };
                    let joined = format!("{head}{segment}{tail}");
                    match (!charset.ascii_compatible())
                        .then(|| {
                            if is_html {
                                Some(charset.encode_html(&joined))
                            } else {
                                charset.encode(&joined)
                            }
                        })
                        .flatten()
                    {
                        Some(same_charset) => text_bytes = same_charset,
                        None => {
                            text_bytes = joined.into_bytes();
                            new_charset = Some("utf-8");
                            note = Some(format!(
                                "a {} part in {label} was converted to UTF-8 to hold the disclaimer",
                                part.mime_type()
                            ));
                        }
                    }
                }
            }
            match cte {
                Cte::Base64 => {
                    let (width, final_eol) = base64_shape(body);
                    base64_encode(&text_bytes, width, line_ending(body, eol), final_eol)
                }
                Cte::QuotedPrintable if !charset.ascii_compatible() && new_charset.is_none() => {
                    qp_encode_binary(&text_bytes, line_ending(body, eol))
                }
                Cte::QuotedPrintable => qp_encode(&text_bytes, line_ending(body, eol)),
                Cte::Identity { seven_bit } => {
                    if (seven_bit && !text_bytes.is_ascii()) || longest_line(&text_bytes) > MAX_LINE
                    {
                        header_changes
                            .push(("Content-Transfer-Encoding", "quoted-printable".into()));
                        if charset.ascii_compatible() || new_charset.is_some() {
                            qp_encode(&text_bytes, eol)
                        } else {
                            qp_encode_binary(&text_bytes, eol)
                        }
                    } else {
                        text_bytes
                    }
                }
            }
        }
    };
    if let Some(cs) = new_charset {
        let mut ct = part.content_type.clone();
        match ct.params.iter_mut().find(|(n, _)| n == "charset") {
            Some(p) => p.1 = cs.into(),
            None => ct.params.push(("charset".into(), cs.into())),
        }
        header_changes.push(("Content-Type", write_parameterised(&ct)));
    }
    if header_changes.is_empty() && part.header.body_start > part.header.fields_end {
        return Ok(PartEdit::Replace {
            range: body_range,
            bytes: new_body,
            note,
        });
    }
    // The part's own header changes too (or it lacked its blank line).
    if is_root
        && !header_changes.is_empty()
        && !part.has_content_type
        && part.header.field("mime-version").is_none()
    {
        header_changes.insert(0, ("MIME-Version", "1.0".into()));
    }
    if !part.has_content_type
        && !header_changes.iter().any(|(n, _)| *n == "Content-Type")
        && header_changes
            .iter()
            .any(|(n, _)| *n == "Content-Transfer-Encoding")
    {
        header_changes.push(("Content-Type", write_parameterised(&part.content_type)));
    }
    let mut bytes = rewrite_header(raw, part, &header_changes);
    bytes.extend_from_slice(&new_body);
    Ok(PartEdit::Replace {
        range: part.range.clone(),
        bytes,
        note,
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// Inline PGP opens the part: a marker quoted or mentioned further down does not make a
/// message signed (else anyone could turn the disclaimer off by writing it).
fn is_inline_pgp(text: &[u8]) -> bool {
    let first = text
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    first.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----")
        || first.starts_with(b"-----BEGIN PGP MESSAGE-----")
}

/// The text disclaimer as it is inserted at `point` after `before`.
fn text_segment(
    text: &str,
    before: &[u8],
    point: placement::Point,
    flowed: bool,
    eol: &str,
) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if flowed {
                // RFC 3676: no trailing space (that would join the next line); space-stuff.
                let l = l.trim_end();
                if l.starts_with(' ') || l.starts_with('>') || l.starts_with("From ") {
                    format!(" {l}")
                } else {
                    l.to_string()
                }
            } else {
                l.to_string()
            }
        })
        .collect();
    let block = lines.join(eol);
    let ends_blank = before.ends_with(b"\n\n") || before.ends_with(b"\n\r\n");
    let ends_line = before.is_empty() || before.ends_with(b"\n");
    let lead = if before.is_empty() || ends_blank {
        String::new()
    } else if ends_line {
        eol.to_string()
    } else {
        format!("{eol}{eol}")
    };
    if point.above_quote {
        format!("{lead}{block}{eol}{eol}")
    } else if ends_line {
        format!("{lead}{block}{eol}")
    } else {
        // A body without a final line ending (every part of a multipart) stays without one.
        format!("{lead}{block}")
    }
}

/// The HTML disclaimer, on lines of its own so no line grows past the limit.
fn html_segment(html: &str, eol: &str) -> String {
    format!(
        "{eol}{}{eol}",
        html.replace("\r\n", "\n").replace('\n', eol)
    )
}

fn longest_line(b: &[u8]) -> usize {
    let mut longest = 0;
    let mut start = 0;
    for i in memchr::memchr_iter(b'\n', b) {
        longest = longest.max(i - start);
        start = i + 1;
    }
    longest.max(b.len() - start)
}

/// The line width of a base64 body and whether it ends with a line ending.
fn base64_shape(body: &[u8]) -> (usize, bool) {
    let first = memchr::memchr(b'\n', body).unwrap_or(body.len());
    let width = body[..first].trim_ascii_end().len();
    let final_eol = body.ends_with(b"\n");
    (width, final_eol)
}

fn write_parameterised(p: &Parameterised) -> String {
    let mut s = p.value.clone();
    for (n, v) in &p.params {
        s.push_str("; ");
        s.push_str(n);
        s.push('=');
        s.push_str(&param_value(v));
    }
    s
}

/// The part's header with `changes` applied (each replaces the first field of that name, or is
/// added at the end), its blank line ensured.
fn rewrite_header(raw: &[u8], part: &Part, changes: &[(&str, String)]) -> Vec<u8> {
    let h = &part.header;
    let eol = line_ending(&raw[part.range.start..h.fields_end], b"\r\n");
    let mut out = Vec::with_capacity(h.fields_end - part.range.start + 128);
    let mut cursor = part.range.start;
    let mut done = vec![false; changes.len()];
    for f in &h.fields {
        if let Some(i) = changes
            .iter()
            .position(|(n, _)| f.name.eq_ignore_ascii_case(n))
            .filter(|&i| !done[i])
        {
            out.extend_from_slice(&raw[cursor..f.whole.start]);
            out.extend_from_slice(format!("{}: {}", f.name, changes[i].1).as_bytes());
            out.extend_from_slice(eol);
            cursor = f.whole.end;
            done[i] = true;
        }
    }
    out.extend_from_slice(&raw[cursor..h.fields_end]);
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(eol);
    }
    for (i, (name, value)) in changes.iter().enumerate() {
        if !done[i] {
            out.extend_from_slice(format!("{name}: {value}").as_bytes());
            out.extend_from_slice(eol);
        }
    }
    if h.body_start > h.fields_end {
        out.extend_from_slice(&raw[h.fields_end..h.body_start]);
    } else {
        out.extend_from_slice(eol);
    }
    out
}

/// The disclaimer as a part of its own (UTF-8, quoted-printable).
fn disclaimer_part(d: &Disclaimer<'_>, eol: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(b"Content-Type: text/plain; charset=utf-8");
    p.extend_from_slice(eol);
    p.extend_from_slice(b"Content-Transfer-Encoding: quoted-printable");
    p.extend_from_slice(eol);
    p.extend_from_slice(eol);
    let text = d.text.replace("\r\n", "\n");
    p.extend_from_slice(&qp_encode(text.as_bytes(), eol));
    p
}

/// A message we gave a disclaimer part before (it passed the gateway twice): a multipart/mixed
/// whose last part is a plain-text part holding the disclaimer.
fn disclaimer_part_present(raw: &[u8], root: &Part, text: &str) -> bool {
    if root.mime_type() != "multipart/mixed" || root.children.len() < 2 {
        return false;
    }
    let Some(last) = root.children.last() else {
        return false;
    };
    if is_text(last) != Some(false) {
        return false;
    }
    let body = &raw[last.body()];
    let decoded = match last.encoding.as_str() {
        "quoted-printable" => qp_decode(body),
        "base64" => base64_decode(body).unwrap_or_default(),
        _ => body.to_vec(),
    };
    placement::text_has(&String::from_utf8_lossy(&decoded), text)
}

/// A message with no main text part: the disclaimer goes in a new part at the end of a
/// top-level multipart/mixed, or the message is wrapped in one.
fn add_part(raw: &[u8], root: &Part, d: &Disclaimer<'_>) -> Plan {
    let eol = line_ending(raw, b"\r\n");
    if root.mime_type() == "multipart/mixed"
        && let Some(boundary) = root.boundary()
    {
        let mut insert = Vec::new();
        let close = match root.close_delimiter {
            Some(close) => close,
            None => {
                // No closing delimiter: the new part and a proper close go at the very end,
                // after a line ending of their own so the last part keeps all its bytes.
                insert.extend_from_slice(eol);
                raw.len()
            }
        };
        insert.extend_from_slice(b"--");
        insert.extend_from_slice(boundary.trim_end().as_bytes());
        insert.extend_from_slice(eol);
        insert.extend_from_slice(&disclaimer_part(d, eol));
        insert.extend_from_slice(eol);
        if root.close_delimiter.is_none() {
            insert.extend_from_slice(format!("--{}--", boundary.trim_end()).as_bytes());
            insert.extend_from_slice(eol);
        }
        return Plan::changed(
            DisclaimerOutcome::Appended,
            vec![(close..close, insert)],
            vec!["no text part: the disclaimer was added as a part of its own".into()],
        );
    }
    Plan::changed(
        DisclaimerOutcome::Appended,
        wrap(raw, root, d),
        vec!["no text part: the message was put in multipart/mixed beside the disclaimer".into()],
    )
}

/// The whole message entity, untouched, as the first part of a new multipart/mixed whose
/// second part is the disclaimer. The top-level header keeps every field but the Content-*
/// ones, which move with the entity they describe.
fn wrap(raw: &[u8], root: &Part, d: &Disclaimer<'_>) -> Vec<Edit> {
    let eol = line_ending(raw, b"\r\n");
    let h = &root.header;
    // Unique enough from the header and size; checked against the message anyway.
    let mut hasher = Sha256::new();
    hasher.update(&raw[..h.body_start.min(raw.len())]);
    hasher.update(raw.len().to_le_bytes());
    let digest = hex::encode(hasher.finalize());
    let mut boundary = format!("=_schoolgate_{}", &digest[..24]);
    while contains(raw, boundary.as_bytes()) {
        boundary.push('x');
    }
    let mut head = Vec::with_capacity(h.body_start + 256);
    let mut moved = Vec::new();
    for f in &h.fields {
        let bytes = &raw[f.whole.clone()];
        if f.name.to_ascii_lowercase().starts_with("content-") {
            moved.extend_from_slice(bytes);
        } else {
            head.extend_from_slice(bytes);
        }
    }
    if !head.is_empty() && !head.ends_with(b"\n") {
        head.extend_from_slice(eol);
    }
    if !moved.is_empty() && !moved.ends_with(b"\n") {
        moved.extend_from_slice(eol);
    }
    if h.field("mime-version").is_none() {
        head.extend_from_slice(b"MIME-Version: 1.0");
        head.extend_from_slice(eol);
    }
    head.extend_from_slice(
        format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"").as_bytes(),
    );
    head.extend_from_slice(eol);
    head.extend_from_slice(eol);
    head.extend_from_slice(format!("--{boundary}").as_bytes());
    head.extend_from_slice(eol);
    head.extend_from_slice(&moved);
    head.extend_from_slice(eol);
    // The original body stays where it is, untouched, between the two edits.
    let mut tail = Vec::with_capacity(512);
    tail.extend_from_slice(eol);
    tail.extend_from_slice(format!("--{boundary}").as_bytes());
    tail.extend_from_slice(eol);
    tail.extend_from_slice(&disclaimer_part(d, eol));
    tail.extend_from_slice(eol);
    tail.extend_from_slice(format!("--{boundary}--").as_bytes());
    tail.extend_from_slice(eol);
    let body = root.body();
    vec![(0..body.start, head), (raw.len()..raw.len(), tail)]
}

#[cfg(test)]
mod tests;

/// How much of each main part the contact rules read.
const MAX_INSPECT: usize = 1 << 20;

/// The start of a base64 body holding about `decoded` bytes, cut at a whole group of four.
fn base64_prefix(body: &[u8], decoded: usize) -> &[u8] {
    let want = decoded.div_ceil(3) * 4;
    let mut chars = 0;
    for (i, &b) in body.iter().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=' {
            chars += 1;
            if chars >= want && chars % 4 == 0 {
                return &body[..=i];
            }
        }
    }
    body
}

/// The text the author wrote: every main text part decoded, with the quoted thread taken out
/// (`>` lines and their attributions, blockquotes, Outlook's unmarked quote and everything
/// below it) and HTML markup dropped. For the contact rules: an address or phone number in an
/// earlier message quoted here is not the sender sharing it now, but an answer written below or
/// between the quotes is the sender's.
pub fn new_text(raw: &[u8]) -> String {
    let mut out = String::new();
    for (text, is_html) in main_texts(raw) {
        if is_html {
            let html = placement::without_blockquotes(&text);
            out.push_str(&placement::html_text(quote_cut(&html)));
        } else {
            out.push_str(&placement::unquoted_text(&text));
        }
        out.push('\n');
    }
    out
}

/// Each main text part of `raw` decoded to a string (its first MiB), and whether it is HTML.
pub(crate) fn main_texts(raw: &[u8]) -> Vec<(String, bool)> {
    let root = tree::scan(raw);
    let mut found = Found::default();
    walk(raw, &root, &mut found);
    let mut out = Vec::with_capacity(found.main.len());
    for (part, is_html) in found.main {
        let body = &raw[part.body()];
        // The rules read the first MiB of each part (Exchange reads 150 KB): enough for any
        // text a person writes, and a 50 MiB body costs no more than a 1 MiB one.
        let decoded: Cow<'_, [u8]> = match part.encoding.as_str() {
            "quoted-printable" => Cow::Owned(qp_decode(&body[..body.len().min(3 * MAX_INSPECT)])),
            "base64" => {
                Cow::Owned(base64_decode(base64_prefix(body, MAX_INSPECT)).unwrap_or_default())
            }
            _ => Cow::Borrowed(&body[..body.len().min(MAX_INSPECT)]),
        };
        let decoded = &decoded[..decoded.len().min(MAX_INSPECT)];
        let label = part.content_type.param("charset").unwrap_or("us-ascii");
        let charset = Charset::from_label(label, decoded).unwrap_or(Charset::Utf8);
        out.push((charset.decode_lossy(decoded), is_html));
    }
    out
}

/// `html` up to where a recognised quoted thread starts (the whole of it when none does).
pub(crate) fn quote_cut(html: &str) -> &str {
    let mut end = placement::in_html(html.as_bytes()).offset.min(html.len());
    while !html.is_char_boundary(end) {
        end -= 1;
    }
    &html[..end]
}
