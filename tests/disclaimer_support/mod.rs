//! What the disclaimer test crates share: a small MIME reader of their own and the checker
//! that compares a message with what `add_disclaimer` made of it.
//!
//! The reader is deliberately independent of the engine (src/mime) and of mail-parser's part
//! tree, which is wrong on odd boundaries: it follows RFC 2046 literally (a delimiter starts a
//! line, is `--B` or `--B--` followed only by spaces and tabs; the line break before it belongs
//! to it). mail-parser is used as a second opinion: the output must parse, with the same
//! number of parts and the same attachment bytes.
//!
//! "Main" parts (the ones that carry the disclaimer) follow the engine's documented rule:
//! walk from the root; text/plain or text/html not `Content-Disposition: attachment` is main
//! as the root or as a child of multipart/alternative on the main path; alternative recurses
//! into multipart children; mixed (and any other multipart) follows its first child; related
//! follows its `start` root (else its first child); signed and encrypted entities, message/rfc822
//! and multipart/digest have no main parts.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The example config's disclaimer.
pub const TEXT: &str = "The views expressed are not necessarily those of Example Academy.";
pub const HTML: &str = "<p style=\"font-size:small;color:#555\">The views expressed are not necessarily those of Example Academy.</p>";

/// A disclaimer that needs more than ASCII (an em dash, a right single quote, an e acute).
pub const TEXT_NONASCII: &str = "Ysgol Enghraifft \u{2014} the views expressed are not necessarily those of the school\u{2019}s governors; caf\u{e9}.";
pub const HTML_NONASCII: &str = "<p style=\"font-size:small;color:#555\">Ysgol Enghraifft \u{2014} the views expressed are not necessarily those of the school\u{2019}s governors; caf\u{e9}.</p>";

#[derive(Debug, Clone, Copy)]
pub struct Disclaimer<'a> {
    pub text: &'a str,
    pub html: &'a str,
}

pub const EXAMPLE: Disclaimer<'static> = Disclaimer {
    text: TEXT,
    html: HTML,
};
pub const NONASCII: Disclaimer<'static> = Disclaimer {
    text: TEXT_NONASCII,
    html: HTML_NONASCII,
};

/// The outcome as `check --json` spells it (kebab-case).
pub fn outcome_name(outcome: schoolgate::policy::DisclaimerOutcome) -> String {
    serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{outcome:?}"))
}

// ---------------------------------------------------------------------------------------------
// The MIME reader

/// Nesting deeper than this is read as a leaf (hostile messages nest thousands deep).
const MAX_DEPTH: usize = 60;

/// One header field.
#[derive(Debug, Clone)]
pub struct Field<'a> {
    /// Lower-case name.
    pub name: String,
    /// Unfolded value, trimmed (lossy UTF-8).
    pub value: String,
    /// The field's bytes as they stand, continuation lines and line breaks included.
    pub raw: &'a [u8],
}

/// One entity: a message or a body part.
#[derive(Debug, Clone)]
pub struct Entity<'a> {
    /// Headers and body.
    pub raw: &'a [u8],
    /// The header block, including the blank line that ends it.
    pub header: &'a [u8],
    pub body: &'a [u8],
    pub fields: Vec<Field<'a>>,
    /// Lower-case `type/subtype` (the default when there is no usable Content-Type).
    pub mime: String,
    /// Content-Type parameters: lower-case names, unquoted values.
    pub params: Vec<(String, String)>,
    pub multipart: Option<Multipart<'a>>,
}

#[derive(Debug, Clone)]
pub struct Multipart<'a> {
    pub preamble: &'a [u8],
    pub parts: Vec<Entity<'a>>,
    pub epilogue: &'a [u8],
    /// A close delimiter was found.
    pub closed: bool,
}

impl<'a> Entity<'a> {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.as_str())
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Lower-case Content-Transfer-Encoding ("7bit" when absent).
    pub fn cte(&self) -> String {
        self.field("content-transfer-encoding")
            .map(|v| v.trim().trim_matches('"').to_ascii_lowercase())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "7bit".to_string())
    }

    /// Lower-case charset parameter, if any.
    pub fn charset(&self) -> Option<String> {
        self.param("charset").map(|c| c.trim().to_ascii_lowercase())
    }

    pub fn is_attachment(&self) -> bool {
        self.field("content-disposition").is_some_and(|d| {
            d.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("attachment")
        })
    }

    pub fn is_text(&self) -> bool {
        self.mime == "text/plain" || self.mime == "text/html"
    }

    pub fn children(&self) -> &[Entity<'a>] {
        self.multipart.as_ref().map_or(&[], |m| &m.parts)
    }

    /// The entity at `path` (child indices from here).
    pub fn at(&self, path: &[usize]) -> Option<&Entity<'a>> {
        let mut e = self;
        for &i in path {
            e = e.children().get(i)?;
        }
        Some(e)
    }

    /// The body with its Content-Transfer-Encoding undone (leniently).
    pub fn decoded(&self) -> Vec<u8> {
        decode_cte(&self.cte(), self.body)
    }

    /// The body as text: transfer encoding and charset undone; format=flowed left as it is.
    pub fn text(&self) -> String {
        decode_charset(&self.decoded(), self.charset().as_deref())
    }

    /// Content types of the whole tree, depth first, with their paths.
    pub fn shape(&self) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(e: &Entity<'_>, path: &mut Vec<usize>, out: &mut Vec<String>) {
            out.push(format!("{}{}", show_path(path), e.mime));
            for (i, c) in e.children().iter().enumerate() {
                path.push(i);
                walk(c, path, out);
                path.pop();
            }
        }
        walk(self, &mut Vec::new(), &mut out);
        out
    }
}

pub fn show_path(path: &[usize]) -> String {
    if path.is_empty() {
        "[root] ".to_string()
    } else {
        format!(
            "[{}] ",
            path.iter()
                .map(|i| (i + 1).to_string())
                .collect::<Vec<_>>()
                .join(".")
        )
    }
}

/// Reads a whole message.
/// A leading mbox separator line (`From sender date`, no colon after `From`) is skipped, as
/// mail readers do: it belongs to the header block but is no field.
pub fn parse(raw: &[u8]) -> Entity<'_> {
    parse_entity(raw, "text/plain", 0)
}

fn parse_entity<'a>(raw: &'a [u8], default_mime: &str, depth: usize) -> Entity<'a> {
    let skip = if depth == 0 && raw.starts_with(b"From ") {
        memchr::memchr(b'\n', raw).map_or(raw.len(), |i| i + 1)
    } else {
        0
    };
    let (fields, header_end, body_start) = read_header(&raw[skip..]);
    let (header_end, body_start) = (header_end + skip, body_start + skip);
    let header = &raw[..body_start.max(header_end)];
    let body = &raw[body_start..];
    let (mut mime, params) = match fields.iter().find(|f| f.name == "content-type") {
        Some(f) => parse_content_type(&f.value),
        None => (String::new(), Vec::new()),
    };
    if mime.is_empty() || !mime.contains('/') {
        mime = default_mime.to_string();
    }
    let mut e = Entity {
        raw,
        header,
        body,
        fields,
        mime,
        params,
        multipart: None,
    };
    if e.mime.starts_with("multipart/")
        && depth < MAX_DEPTH
        && let Some(boundary) = e.param("boundary").filter(|b| !b.is_empty())
    {
        let child_default = if e.mime == "multipart/digest" {
            "message/rfc822"
        } else {
            "text/plain"
        };
        let boundary = boundary.as_bytes().to_vec();
        e.multipart = Some(split_multipart(body, &boundary, child_default, depth));
    }
    e
}

/// The header fields, where the header ends and where the body starts. The header ends at the
/// first empty line, or at the first line that is neither a field nor a continuation.
fn read_header(raw: &[u8]) -> (Vec<Field<'_>>, usize, usize) {
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut field_start: Option<usize> = None;
    let mut pos = 0;
    fn finish<'a>(raw: &'a [u8], fields: &mut Vec<Field<'a>>, start: Option<usize>, end: usize) {
        if let Some(s) = start {
            let raw_field = &raw[s..end];
            let text = String::from_utf8_lossy(raw_field);
            let (name, value) = text.split_once(':').unwrap_or((&text, ""));
            let value = value
                .split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l))
                .collect::<Vec<_>>()
                .join("");
            fields.push(Field {
                name: name.trim().to_ascii_lowercase(),
                value: value.trim().to_string(),
                raw: raw_field,
            });
        }
    }
    while pos < raw.len() {
        let line_end = memchr::memchr(b'\n', &raw[pos..]).map_or(raw.len(), |i| pos + i + 1);
        let line = &raw[pos..line_end];
        let content = trim_eol(line);
        if content.is_empty() {
            finish(raw, &mut fields, field_start.take(), pos);
            return (fields, pos, line_end);
        }
        if matches!(content[0], b' ' | b'\t') && field_start.is_some() {
            pos = line_end;
            continue;
        }
        // A field indented by mistake on the very first line (" From: ...") is still a field,
        // and a first line of nothing but spaces is junk before the header.
        let content = if fields.is_empty() && field_start.is_none() {
            let lead = content
                .iter()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count();
            if lead == content.len() && pos == 0 {
                pos = line_end;
                continue;
            }
            &content[lead..]
        } else {
            content
        };
        let is_field = content
            .iter()
            .position(|&b| b == b':')
            .is_some_and(|colon| {
                let name = trim_trailing_ws(&content[..colon]);
                !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b))
            });
        if !is_field {
            finish(raw, &mut fields, field_start.take(), pos);
            return (fields, pos, pos);
        }
        finish(raw, &mut fields, field_start.take(), pos);
        field_start = Some(pos);
        pos = line_end;
    }
    finish(raw, &mut fields, field_start.take(), raw.len());
    (fields, raw.len(), raw.len())
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_trailing_ws(s: &[u8]) -> &[u8] {
    let mut end = s.len();
    while end > 0 && matches!(s[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    &s[..end]
}

/// `type/subtype; name=value; name="quoted value"` → (lower-case type, params).
pub fn parse_content_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut pieces = split_params(value);
    let first = pieces.remove(0);
    let first = first.trim();
    // "multipart/mixed boundary=x" (a missing semicolon): the rest is a parameter.
    let mime = match first.split_once(char::is_whitespace) {
        Some((m, rest)) if rest.contains('=') => {
            pieces.insert(0, rest.to_string());
            m
        }
        _ => first,
    };
    let mime = mime
        .to_ascii_lowercase()
        .split_whitespace()
        .collect::<String>();
    let mut params = Vec::new();
    for p in pieces {
        if let Some((n, v)) = p.split_once('=') {
            let v = v.trim();
            let v = if let Some(quoted) = v.strip_prefix('"') {
                let mut out = String::new();
                let mut chars = quoted.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                out.push(n)
                            }
                        }
                        '"' => break,
                        c => out.push(c),
                    }
                }
                out
            } else {
                v.to_string()
            };
            params.push((n.trim().to_ascii_lowercase(), v));
        }
    }
    (mime, params)
}

/// Splits on `;` outside quoted strings.
fn split_params(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => {
                cur.push(c);
                escaped = true;
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ';' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Where the line break before position `s` starts (`s` itself at the start of the body).
fn before_break(body: &[u8], s: usize) -> usize {
    if s >= 2 && &body[s - 2..s] == b"\r\n" {
        s - 2
    } else if s >= 1 && body[s - 1] == b'\n' {
        s - 1
    } else {
        s
    }
}

fn split_multipart<'a>(
    body: &'a [u8],
    boundary: &[u8],
    child_default: &str,
    depth: usize,
) -> Multipart<'a> {
    // (start of the delimiter line, end of it including its line break, close?)
    let mut delims: Vec<(usize, usize, bool)> = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let line_end = memchr::memchr(b'\n', &body[pos..]).map_or(body.len(), |i| pos + i + 1);
        let content = trim_eol(&body[pos..line_end]);
        if content.len() >= 2 + boundary.len()
            && content.starts_with(b"--")
            && &content[2..2 + boundary.len()] == boundary
        {
            let rest = &content[2 + boundary.len()..];
            let (close, rest) = match rest.strip_prefix(b"--") {
                Some(r) => (true, r),
                None => (false, rest),
            };
            // RFC 2046 5.1.1: the boundary must appear in its entirety at the start of the
            // line; text after it (past a space) is ignored. `--B2` is not `--B`.
            if rest.first().is_none_or(|&b| b == b' ' || b == b'\t') {
                if close {
                    // The epilogue starts with the close delimiter's own line break.
                    let content_end = pos + content.len();
                    delims.push((pos, content_end, true));
                    break;
                }
                delims.push((pos, line_end, false));
            }
        }
        pos = line_end;
    }
    if delims.is_empty() {
        return Multipart {
            preamble: body,
            parts: Vec::new(),
            epilogue: &body[body.len()..],
            closed: false,
        };
    }
    let preamble = &body[..before_break(body, delims[0].0)];
    let mut parts = Vec::new();
    let mut closed = false;
    let mut epilogue = &body[body.len()..];
    for (i, &(_, end, close)) in delims.iter().enumerate() {
        if close {
            closed = true;
            epilogue = &body[end..];
            break;
        }
        let part_end = match delims.get(i + 1) {
            Some(&(next, _, _)) => before_break(body, next).max(end),
            None => body.len(),
        };
        parts.push(parse_entity(&body[end..part_end], child_default, depth + 1));
    }
    Multipart {
        preamble,
        parts,
        epilogue,
        closed,
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

pub fn decode_cte(cte: &str, body: &[u8]) -> Vec<u8> {
    match cte {
        "base64" => decode_base64(body),
        "quoted-printable" => decode_qp(body),
        _ => body.to_vec(),
    }
}

/// Lenient base64: characters outside the alphabet are skipped, decoding stops at padding.
pub fn decode_base64(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in body {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Is `body` base64 a strict decoder accepts (alphabet, line breaks, correct padding)?
pub fn strict_base64(body: &[u8]) -> bool {
    let chars: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !matches!(b, b'\r' | b'\n'))
        .collect();
    if !chars.len().is_multiple_of(4) {
        return false;
    }
    let pad = chars.iter().rev().take_while(|&&b| b == b'=').count();
    pad <= 2
        && chars[..chars.len() - pad]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// Lenient quoted-printable: `=XX`, soft breaks (`=` then optional spaces and a line break),
/// anything else as it stands.
pub fn decode_qp(body: &[u8]) -> Vec<u8> {
    let hex = |b: u8| -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'A'..=b'F' => Some(b - b'A' + 10),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        }
    };
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b == b'=' {
            if let (Some(h), Some(l)) = (
                body.get(i + 1).copied().and_then(hex),
                body.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
            // Soft line break: '=' [spaces] CRLF|LF, or '=' at the very end.
            let mut j = i + 1;
            while j < body.len() && matches!(body[j], b' ' | b'\t') {
                j += 1;
            }
            if j == body.len() {
                i = j;
                continue;
            }
            if body[j] == b'\n' {
                i = j + 1;
                continue;
            }
            if body[j] == b'\r' && body.get(j + 1) == Some(&b'\n') {
                i = j + 2;
                continue;
            }
            out.push(b'=');
            i += 1;
            continue;
        }
        out.push(b);
        i += 1;
    }
    out
}

fn is_latin1_label(label: &str) -> bool {
    matches!(
        label,
        "iso-8859-1"
            | "iso8859-1"
            | "iso_8859-1"
            | "latin1"
            | "latin-1"
            | "l1"
            | "cp819"
            | "ibm819"
            | "iso-ir-100"
            | "csisolatin1"
            | "iso_8859-1:1987"
    )
}

fn is_ascii_label(label: &str) -> bool {
    matches!(
        label,
        "" | "us-ascii" | "ascii" | "ansi_x3.4-1968" | "iso646-us" | "us" | "csascii"
    )
}

fn is_utf8_label(label: &str) -> bool {
    matches!(label, "utf-8" | "utf8" | "unicode-1-1-utf-8")
}

/// Bytes to text in `charset`; no charset or us-ascii reads UTF-8 when it is valid UTF-8
/// (what clients do), else windows-1252; an unknown label reads as windows-1252 so every byte
/// stays visible.
pub fn decode_charset(bytes: &[u8], charset: Option<&str>) -> String {
    let label = charset
        .unwrap_or("")
        .trim()
        .trim_matches('"')
        .to_ascii_lowercase();
    if is_ascii_label(&label) {
        if let Ok(s) = std::str::from_utf8(bytes) {
            return s.to_string();
        }
        return encoding_rs::WINDOWS_1252
            .decode_without_bom_handling(bytes)
            .0
            .into_owned();
    }
    let enc =
        encoding_rs::Encoding::for_label(label.as_bytes()).unwrap_or(encoding_rs::WINDOWS_1252);
    enc.decode_without_bom_handling(bytes).0.into_owned()
}

/// Can `c` be written in `charset` as it is (not as a character reference)?
pub fn representable(c: char, charset: &str) -> bool {
    let label = charset.trim().trim_matches('"').to_ascii_lowercase();
    if is_ascii_label(&label) {
        return c.is_ascii();
    }
    if is_latin1_label(&label) {
        return (c as u32) <= 0xFF;
    }
    if is_utf8_label(&label) || label.starts_with("utf-16") || label == "gb18030" {
        return true;
    }
    match encoding_rs::Encoding::for_label(label.as_bytes()) {
        Some(enc) => {
            let s = c.to_string();
            let (_, used, errors) = enc.encode(&s);
            !errors && used == enc
        }
        None => c.is_ascii(),
    }
}

/// RFC 3676: format=flowed text made into its paragraphs (soft breaks joined, space-stuffing
/// undone). Lines come out LF-separated, quote depth written as `>` marks plus a space.
pub fn unflow(text: &str, delsp: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut para = String::new();
    let mut para_depth: Option<usize> = None;
    let flush = |out: &mut String, para: &mut String, depth: usize| {
        for _ in 0..depth {
            out.push('>');
        }
        if depth > 0 && !para.is_empty() {
            out.push(' ');
        }
        out.push_str(para);
        out.push('\n');
        para.clear();
    };
    for raw_line in text.split('\n') {
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        let depth = line.bytes().take_while(|&b| b == b'>').count();
        let mut content = &line[depth..];
        if let Some(rest) = content.strip_prefix(' ') {
            content = rest;
        }
        if let Some(d) = para_depth
            && d != depth
        {
            flush(&mut out, &mut para, d);
        }
        let soft = content.ends_with(' ') && content != "-- ";
        if soft {
            let kept = if delsp {
                &content[..content.len() - 1]
            } else {
                content
            };
            para.push_str(kept);
            para_depth = Some(depth);
        } else {
            para.push_str(content);
            flush(&mut out, &mut para, depth);
            para_depth = None;
        }
    }
    if let Some(d) = para_depth {
        flush(&mut out, &mut para, d);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Which parts are main

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protected {
    Signed,
    Encrypted,
}

#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// Paths of the main text parts, in document order.
    pub main: Vec<Vec<usize>>,
    /// A signed or encrypted entity on the main path.
    pub protected: Option<Protected>,
}

pub fn protection(e: &Entity<'_>) -> Option<Protected> {
    match e.mime.as_str() {
        "multipart/signed" => Some(Protected::Signed),
        "multipart/encrypted" | "application/pgp-encrypted" => Some(Protected::Encrypted),
        "application/pkcs7-mime" | "application/x-pkcs7-mime" => {
            match e
                .param("smime-type")
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("signed-data") | Some("certs-only") => Some(Protected::Signed),
                _ => Some(Protected::Encrypted),
            }
        }
        _ => None,
    }
}

pub fn analyse(root: &Entity<'_>) -> Analysis {
    let mut a = Analysis::default();
    visit_main(root, &mut Vec::new(), &mut a);
    a
}

fn visit_main(e: &Entity<'_>, path: &mut Vec<usize>, a: &mut Analysis) {
    if let Some(p) = protection(e) {
        a.protected.get_or_insert(p);
        return;
    }
    if e.is_text() {
        if !e.is_attachment() && e.multipart.is_none() {
            a.main.push(path.clone());
        }
        return;
    }
    let Some(m) = &e.multipart else { return };
    match e.mime.as_str() {
        "multipart/alternative" => {
            for (i, c) in m.parts.iter().enumerate() {
                path.push(i);
                if c.is_text() {
                    if !c.is_attachment() {
                        a.main.push(path.clone());
                    }
                } else if c.multipart.is_some() || protection(c).is_some() {
                    visit_main(c, path, a);
                }
                path.pop();
            }
        }
        "multipart/digest" => {}
        "multipart/related" => {
            let start = e.param("start").map(|s| {
                s.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            });
            let index = start
                .and_then(|cid| {
                    m.parts.iter().position(|c| {
                        c.field("content-id").is_some_and(|id| {
                            id.trim().trim_start_matches('<').trim_end_matches('>') == cid
                        })
                    })
                })
                .unwrap_or(0);
            if let Some(c) = m.parts.get(index) {
                path.push(index);
                visit_main(c, path, a);
                path.pop();
            }
        }
        _ => {
            if let Some(c) = m.parts.first() {
                path.push(0);
                visit_main(c, path, a);
                path.pop();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// mail-parser, as a second opinion

/// What mail-parser makes of a message: its number of parts and the decoded bytes of every
/// binary part and every attached message, or `Err` when it panics (a known mail-parser 0.11
/// bug on hostile input) or gives up.
pub struct MpView {
    pub parts: usize,
    pub binaries: Vec<Vec<u8>>,
}

pub fn mail_parser_view(raw: &[u8]) -> Result<MpView, String> {
    let r = catch_unwind(AssertUnwindSafe(|| {
        let m = mail_parser::MessageParser::new().parse(raw)?;
        let mut binaries = Vec::new();
        for p in &m.parts {
            match &p.body {
                mail_parser::PartType::Binary(b) | mail_parser::PartType::InlineBinary(b) => {
                    binaries.push(b.to_vec())
                }
                mail_parser::PartType::Message(inner) => {
                    binaries.push(inner.raw_message().to_vec())
                }
                _ => {}
            }
        }
        binaries.sort();
        Some(MpView {
            parts: m.parts.len(),
            binaries,
        })
    }));
    match r {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err("mail-parser cannot parse it".to_string()),
        Err(_) => Err("mail-parser panics on it".to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// The checker

/// A main part after the rewrite, for placement and charset assertions.
#[derive(Debug, Clone)]
pub struct MainAfter {
    pub path: Vec<usize>,
    pub mime: String,
    pub charset_before: Option<String>,
    pub charset_after: Option<String>,
    pub cte_before: String,
    pub cte_after: String,
    /// Decoded text after the rewrite (unflowed for format=flowed), line breaks made LF.
    pub text: String,
    /// Byte offset of the added disclaimer in `text`.
    pub at: usize,
    /// A part the engine added (no main part existed).
    pub added: bool,
}

#[derive(Debug, Default)]
pub struct Checked {
    /// What is wrong, one line each.
    pub failures: Vec<String>,
    /// Worth knowing, not wrong.
    pub notes: Vec<String>,
    pub mains: Vec<MainAfter>,
}

/// How the rewritten message is expected to relate to the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Same tree; only the main parts changed.
    Same,
    /// No main part: a new text part at the end of the top-level multipart/mixed.
    AddedPart,
    /// The original root entity untouched inside a new multipart/mixed with a disclaimer part.
    Wrapped,
}

/// What shape a rewrite of `orig` should have (with `on_signed = wrap` for signed ones).
pub fn expected_shape(orig: &Entity<'_>, analysis: &Analysis) -> Shape {
    if analysis.protected.is_some() {
        Shape::Wrapped
    } else if !analysis.main.is_empty() {
        Shape::Same
    } else if orig.mime == "multipart/mixed" && orig.multipart.as_ref().is_some_and(|m| m.closed) {
        Shape::AddedPart
    } else {
        Shape::Wrapped
    }
}

/// Compares `orig` with `after` (what add_disclaimer returned) for disclaimer `d`.
pub fn check_rewrite(orig_raw: &[u8], after_raw: &[u8], d: Disclaimer<'_>) -> Checked {
    let mut c = Checked::default();
    let orig = parse(orig_raw);
    let after = parse(after_raw);
    let analysis = analyse(&orig);
    let shape = expected_shape(&orig, &analysis);

    if !orig.fields.is_empty() && after.fields.is_empty() {
        c.failures.push(format!(
            "the output has no header section: its first line is {:?} (the original's header became body)",
            String::from_utf8_lossy(after_raw.split(|&b| b == b'\n').next().unwrap_or(b""))
        ));
    }
    check_line_endings(orig_raw, after_raw, &mut c);
    check_long_lines(orig_raw, after_raw, &mut c);

    match shape {
        Shape::Same => {
            let main: Vec<&[usize]> = analysis.main.iter().map(Vec::as_slice).collect();
            compare(&orig, &after, &mut Vec::new(), &main, d, &mut c);
        }
        Shape::AddedPart => check_added_to_mixed(&orig, &after, d, &mut c),
        Shape::Wrapped => check_wrapped(&orig, &after, d, &mut c),
    }

    // mail-parser's view: the output parses, one part more per added part, same attachments.
    // Part counts are compared only where mail-parser reads the original's tree as this reader
    // does (it does not on malformed boundaries, nor around message/rfc822).
    let mine = count_entities(&orig);
    match (mail_parser_view(orig_raw), mail_parser_view(after_raw)) {
        (Ok(o), Ok(a)) => {
            let extra = match shape {
                Shape::Same => 0,
                Shape::AddedPart => 1,
                Shape::Wrapped => 2,
            };
            if mine == usize::MAX {
                // message/* inside: mail-parser counts those its own way.
            } else if o.parts != mine {
                c.notes.push(format!(
                    "mail-parser reads {} parts in the original, this reader {mine}: part counts not compared",
                    o.parts
                ));
            } else if a.parts != o.parts + extra {
                c.failures.push(format!(
                    "mail-parser counts {} parts in the output, expected {} (+{extra} on the original's {})",
                    a.parts,
                    o.parts + extra,
                    o.parts
                ));
            }
            if a.binaries != o.binaries {
                c.failures.push(format!(
                    "mail-parser decodes different attachment bytes: {} binary parts before ({} bytes), {} after ({} bytes)",
                    o.binaries.len(),
                    o.binaries.iter().map(Vec::len).sum::<usize>(),
                    a.binaries.len(),
                    a.binaries.iter().map(Vec::len).sum::<usize>()
                ));
            }
        }
        (Ok(_), Err(e)) => c.failures.push(format!("the output: {e}")),
        (Err(e), _) => c.notes.push(format!("the original: {e}")),
    }
    c
}

/// Entities in the tree; `usize::MAX` when it holds a message/* part (mail-parser counts those
/// its own way).
fn count_entities(e: &Entity<'_>) -> usize {
    if e.mime.starts_with("message/") {
        return usize::MAX;
    }
    let mut n = 1usize;
    for c in e.children() {
        n = n.saturating_add(count_entities(c));
    }
    n
}

fn count_line_endings(raw: &[u8]) -> (usize, usize, usize) {
    let (mut crlf, mut lf, mut cr) = (0, 0, 0);
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' {
            if i > 0 && raw[i - 1] == b'\r' {
                crlf += 1;
            } else {
                lf += 1;
            }
        } else if b == b'\r' && raw.get(i + 1) != Some(&b'\n') {
            cr += 1;
        }
    }
    (crlf, lf, cr)
}

fn check_line_endings(orig: &[u8], after: &[u8], c: &mut Checked) {
    let (o_crlf, o_lf, o_cr) = count_line_endings(orig);
    let (a_crlf, a_lf, a_cr) = count_line_endings(after);
    if o_lf == 0 && a_lf > 0 {
        c.failures.push(format!(
            "line endings: the original is CRLF throughout, the output has {a_lf} bare LF"
        ));
    }
    if o_crlf == 0 && o_lf > 0 && a_crlf > 0 {
        c.failures.push(format!(
            "line endings: the original is LF throughout, the output has {a_crlf} CRLF"
        ));
    }
    if a_cr > o_cr {
        c.failures
            .push(format!("line endings: {} bare CR added", a_cr - o_cr));
    }
}

fn long_lines(raw: &[u8]) -> Vec<&[u8]> {
    raw.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| l.len() > 998)
        .collect()
}

fn check_long_lines(orig: &[u8], after: &[u8], c: &mut Checked) {
    let before = long_lines(orig);
    for line in long_lines(after) {
        let old = before
            .iter()
            .any(|o| memchr::memmem::find(o, line).is_some());
        if !old {
            c.failures.push(format!(
                "a new line of {} octets (limit 998): {:?}...",
                line.len(),
                String::from_utf8_lossy(&line[..80])
            ));
        }
    }
}

fn compare(
    o: &Entity<'_>,
    a: &Entity<'_>,
    path: &mut Vec<usize>,
    main: &[&[usize]],
    d: Disclaimer<'_>,
    c: &mut Checked,
) {
    let here = show_path(path);
    if main.contains(&path.as_slice()) {
        check_main(o, a, path, d, c);
        return;
    }
    if let Some(om) = &o.multipart {
        // Only a multipart on the way to a main part can change, and only inside.
        let Some(am) = &a.multipart else {
            c.failures.push(format!(
                "{here}{} is no longer a multipart in the output ({})",
                o.mime, a.mime
            ));
            return;
        };
        if o.header != a.header {
            c.failures.push(format!(
                "{here}{}: header changed:\n{}",
                o.mime,
                first_difference(o.header, a.header)
            ));
        }
        if om.preamble != am.preamble {
            c.failures
                .push(format!("{here}{}: preamble changed", o.mime));
        }
        if om.epilogue != am.epilogue {
            c.failures.push(format!(
                "{here}{}: epilogue changed:\n{}",
                o.mime,
                first_difference(om.epilogue, am.epilogue)
            ));
        }
        if om.closed != am.closed {
            c.failures.push(format!(
                "{here}{}: close delimiter {} in the output",
                o.mime,
                if am.closed { "appeared" } else { "lost" }
            ));
        }
        if om.parts.len() != am.parts.len() {
            c.failures.push(format!(
                "{here}{}: {} parts before, {} after",
                o.mime,
                om.parts.len(),
                am.parts.len()
            ));
            return;
        }
        let on_path = main.iter().any(|m| m.starts_with(path));
        for (i, (oc, ac)) in om.parts.iter().zip(&am.parts).enumerate() {
            path.push(i);
            if on_path {
                compare(oc, ac, path, main, d, c);
            } else {
                same_bytes(oc, ac, path, c);
            }
            path.pop();
        }
        return;
    }
    same_bytes(o, a, path, c);
}

/// A part that must not change at all.
fn same_bytes(o: &Entity<'_>, a: &Entity<'_>, path: &[usize], c: &mut Checked) {
    if o.raw == a.raw {
        return;
    }
    let here = show_path(path);
    let what = if o.decoded() != a.decoded() || o.mime != a.mime {
        "its decoded content changed"
    } else {
        "its bytes changed (decoded content the same)"
    };
    c.failures.push(format!(
        "{here}{} (not a main part): {what}:\n{}",
        o.mime,
        first_difference(o.raw, a.raw)
    ));
}

/// Shows where two byte strings first differ.
pub fn first_difference(want: &[u8], got: &[u8]) -> String {
    let at = want
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    let show = |b: &[u8]| {
        let from = at.saturating_sub(60);
        let to = (at + 100).min(b.len());
        format!("{:?}", String::from_utf8_lossy(&b[from.min(to)..to]))
    };
    format!(
        "    at byte {at} of {} / {}:\n      before: {}\n      after:  {}",
        want.len(),
        got.len(),
        show(want),
        show(got)
    )
}

fn first_difference_str(want: &str, got: &str) -> String {
    first_difference(want.as_bytes(), got.as_bytes())
}

fn is_flowed(e: &Entity<'_>) -> bool {
    e.mime == "text/plain"
        && e.param("format")
            .is_some_and(|f| f.eq_ignore_ascii_case("flowed"))
}

fn delsp(e: &Entity<'_>) -> bool {
    e.param("delsp")
        .is_some_and(|f| f.eq_ignore_ascii_case("yes"))
}

/// The text a reader sees: decoded, and unflowed for format=flowed.
fn reader_text(e: &Entity<'_>) -> String {
    let t = e.text();
    if is_flowed(e) {
        unflow(&t, delsp(e))
    } else {
        t
    }
}

fn fields_except<'e>(e: &'e Entity<'_>, except: &[&str]) -> Vec<&'e [u8]> {
    e.fields
        .iter()
        .filter(|f| !except.contains(&f.name.as_str()))
        .map(|f| f.raw)
        .collect()
}

fn check_main(o: &Entity<'_>, a: &Entity<'_>, path: &[usize], d: Disclaimer<'_>, c: &mut Checked) {
    let here = format!("{}{}", show_path(path), o.mime);
    let fail = |c: &mut Checked, s: String| c.failures.push(format!("{here}: {s}"));

    if a.mime != o.mime {
        fail(c, format!("became {}", a.mime));
        return;
    }
    // Headers: only Content-Type (charset) and Content-Transfer-Encoding may change.
    let keep = ["content-type", "content-transfer-encoding", "mime-version"];
    if fields_except(o, &keep) != fields_except(a, &keep) {
        fail(
            c,
            format!(
                "a header other than Content-Type/Content-Transfer-Encoding changed:\n{}",
                first_difference(o.header, a.header)
            ),
        );
    }
    let others = |e: &Entity<'_>| -> Vec<(String, String)> {
        e.params
            .iter()
            .filter(|(n, _)| n != "charset")
            .cloned()
            .collect()
    };
    if others(o) != others(a) {
        fail(
            c,
            format!(
                "Content-Type parameters changed: {:?} -> {:?}",
                others(o),
                others(a)
            ),
        );
    }
    let cs_before = o.charset();
    let cs_after = a.charset();
    let label = |cs: &Option<String>| cs.clone().unwrap_or_else(|| "us-ascii".into());
    if label(&cs_before) != label(&cs_after) && !cs_after.as_deref().is_some_and(is_utf8_label) {
        fail(
            c,
            format!(
                "charset changed from {} to {} (only a change to utf-8 is allowed)",
                label(&cs_before),
                label(&cs_after)
            ),
        );
    }
    let (cte_b, cte_a) = (o.cte(), a.cte());
    let decoded_after = a.decoded();
    if cte_b != cte_a {
        // 7bit may widen to carry a non-ASCII disclaimer; an unencoded part whose lines were
        // already over 998 octets may become quoted-printable or base64 to get under it.
        let widened = matches!(cte_b.as_str(), "7bit")
            && matches!(cte_a.as_str(), "8bit" | "quoted-printable" | "base64")
            && !decoded_after.is_ascii();
        let shortened = matches!(cte_b.as_str(), "7bit" | "8bit" | "binary")
            && matches!(cte_a.as_str(), "quoted-printable" | "base64")
            && !long_lines(o.body).is_empty();
        if !widened && !shortened {
            fail(
                c,
                format!("Content-Transfer-Encoding changed from {cte_b} to {cte_a}"),
            );
        }
    }
    match cte_a.as_str() {
        "7bit" if !a.body.is_ascii() && o.body.is_ascii() => {
            fail(c, "a 7bit part now holds 8-bit bytes".into())
        }
        "base64" => {
            if !strict_base64(a.body) {
                fail(c, "the base64 is not valid base64".into());
            }
            let width = |b: &[u8]| {
                b.split(|&x| x == b'\n')
                    .next()
                    .map(|l| l.strip_suffix(b"\r").unwrap_or(l).len())
            };
            let (wb, wa) = (width(o.body), width(a.body));
            if o.body.len() > 80 && a.body.len() > 80 && wb != wa {
                c.notes.push(format!(
                    "{here}: base64 line width {wb:?} before, {wa:?} after"
                ));
            }
        }
        "quoted-printable" => {
            let lines = |b: &'_ [u8]| -> Vec<Vec<u8>> {
                b.split(|&x| x == b'\n')
                    .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
                    .collect()
            };
            let old = lines(o.body);
            if let Some(l) = lines(a.body)
                .into_iter()
                .find(|l| l.len() > 76 && !old.contains(l))
            {
                c.notes.push(format!(
                    "{here}: a quoted-printable line of {} characters (RFC 2045 says 76)",
                    l.len()
                ));
            }
        }
        _ => {}
    }
    // A part that says iso-8859-1 must not hold windows-1252's extra characters.
    if cs_after.as_deref().is_some_and(is_latin1_label) {
        let c1 = |b: &[u8]| b.iter().filter(|&&x| (0x80..=0x9f).contains(&x)).count();
        if c1(&decoded_after) > c1(&o.decoded()) {
            fail(
                c,
                "says iso-8859-1 but the added text has windows-1252 bytes 0x80-0x9F".into(),
            );
        }
    }

    // Line breaks inside the decoded text (base64/QP hide them from the message-level check).
    let raw_b = o.text();
    let raw_a = a.text();
    let (b_crlf, b_lf, _) = count_line_endings(raw_b.as_bytes());
    let (a_crlf, a_lf, a_cr) = count_line_endings(raw_a.as_bytes());
    let (_, _, b_cr) = count_line_endings(raw_b.as_bytes());
    if b_lf == 0 && b_crlf > 0 && a_lf > 0 {
        fail(
            c,
            format!("decoded text was CRLF throughout, now has {a_lf} bare LF"),
        );
    }
    if b_crlf == 0 && b_lf > 0 && a_crlf > 0 {
        fail(
            c,
            format!("decoded text was LF throughout, now has {a_crlf} CRLF"),
        );
    }
    if a_cr > b_cr {
        fail(c, "decoded text has a new bare CR".into());
    }
    let fffd = |s: &str| s.matches('\u{FFFD}').count();
    if fffd(&raw_a) > fffd(&raw_b) {
        fail(
            c,
            format!(
                "the output does not decode cleanly in its charset {}: {} replacement characters",
                label(&cs_after),
                fffd(&raw_a) - fffd(&raw_b)
            ),
        );
    }

    let before = reader_text(o);
    let after = reader_text(a);
    let html = o.mime == "text/html";
    let forms = if html {
        html_forms(d.html, &label(&cs_after))
    } else {
        vec![d.text.to_string()]
    };
    match find_insertion(&before, &after, &forms, html) {
        Ok(q) => {
            let flen = forms
                .iter()
                .find(|f| after[q..].starts_with(f.as_str()))
                .map_or(0, |f| f.len());
            if html {
                check_html_position(&before, &after, q, c, &here);
            } else {
                let starts = q == 0 || after[..q].ends_with('\n');
                let rest = &after[q + flen..];
                let ends = rest.is_empty() || rest.starts_with('\n') || rest.starts_with("\r\n");
                if !starts || !ends {
                    c.failures.push(format!(
                        "{here}: the disclaimer is not on lines of its own: {:?}",
                        context(&after, q, flen)
                    ));
                }
            }
            let norm_q = after[..q].replace("\r\n", "\n").len();
            c.mains.push(MainAfter {
                path: path.to_vec(),
                mime: o.mime.clone(),
                charset_before: cs_before,
                charset_after: cs_after,
                cte_before: cte_b,
                cte_after: cte_a,
                text: after.replace("\r\n", "\n"),
                at: norm_q,
                added: false,
            });
        }
        Err(e) => fail(c, e),
    }
}

fn context(s: &str, at: usize, len: usize) -> String {
    let mut from = at.saturating_sub(40);
    while !s.is_char_boundary(from) {
        from -= 1;
    }
    let mut to = (at + len + 40).min(s.len());
    while !s.is_char_boundary(to) {
        to += 1;
    }
    s[from..to].to_string()
}

/// The ways an HTML part may carry the snippet: as it is, with the characters its charset
/// cannot hold as decimal references, or with every non-ASCII character as one (decimal or hex).
pub fn html_forms(snippet: &str, charset: &str) -> Vec<String> {
    let ncr = |pred: &dyn Fn(char) -> bool, hex: bool| -> String {
        snippet
            .chars()
            .map(|ch| {
                if pred(ch) {
                    ch.to_string()
                } else if hex {
                    format!("&#x{:x};", ch as u32)
                } else {
                    format!("&#{};", ch as u32)
                }
            })
            .collect()
    };
    let mut forms = vec![
        snippet.to_string(),
        ncr(&|ch| representable(ch, charset), false),
        ncr(&|ch| ch.is_ascii(), false),
        ncr(&|ch| representable(ch, charset), true),
        ncr(&|ch| ch.is_ascii(), true),
    ];
    forms.dedup();
    let mut seen = Vec::new();
    forms.retain(|f| {
        if seen.contains(f) {
            false
        } else {
            seen.push(f.clone());
            true
        }
    });
    forms
}

/// Finds the one added disclaimer in `after` and checks that everything else is `before`,
/// allowing only whitespace (text) or whitespace and wrapper tags (HTML) around it.
pub fn find_insertion(
    before: &str,
    after: &str,
    forms: &[String],
    html: bool,
) -> Result<usize, String> {
    for f in forms {
        if f.is_empty() {
            continue;
        }
        let n_after = after.matches(f.as_str()).count();
        if n_after == 0 {
            continue;
        }
        let n_before = before.matches(f.as_str()).count();
        if n_after != n_before + 1 {
            return Err(format!(
                "the disclaimer appears {n_after} times in the output and {n_before} times in the original: expected exactly one more"
            ));
        }
        for (q, _) in after.match_indices(f.as_str()) {
            if joins(before, &after[..q], &after[q + f.len()..], html) {
                return Ok(q);
            }
        }
        return Err(format!(
            "the text around the disclaimer is not the original text (only whitespace{} may be added with it):\n{}",
            if html { " and wrapper tags" } else { "" },
            first_difference_str(before, after)
        ));
    }
    Err(format!(
        "no disclaimer in the decoded {}: tried {:?}; the decoded part ends: {:?}",
        if html { "HTML" } else { "text" },
        forms.first().map(String::as_str).unwrap_or(""),
        tail(after, 300)
    ))
}

fn tail(s: &str, n: usize) -> &str {
    let mut from = s.len().saturating_sub(n);
    while !s.is_char_boundary(from) {
        from += 1;
    }
    &s[from..]
}

fn is_ws(ch: char) -> bool {
    matches!(ch, ' ' | '\t' | '\r' | '\n')
}

/// Splits trailing whitespace (and, for HTML, trailing tags) off `s`.
fn strip_tail(s: &str, html: bool) -> (&str, &str) {
    let mut end = s.len();
    loop {
        let t = s[..end].trim_end_matches(is_ws);
        end = t.len();
        if html
            && t.ends_with('>')
            && let Some(lt) = t.rfind('<')
        {
            end = lt;
            continue;
        }
        break;
    }
    (&s[..end], &s[end..])
}

/// Splits leading whitespace (and, for HTML, leading tags) off `s`.
fn strip_head(s: &str, html: bool) -> (&str, &str) {
    let mut start = 0;
    loop {
        let t = s[start..].trim_start_matches(is_ws);
        start = s.len() - t.len();
        if html
            && t.starts_with('<')
            && let Some(gt) = t.find('>')
        {
            start += gt + 1;
            continue;
        }
        break;
    }
    (&s[..start], &s[start..])
}

/// The tags in a string made only of whitespace and tags; `None` if it holds anything else.
fn tags_only(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(is_ws);
        if rest.is_empty() {
            return Some(out);
        }
        if !rest.starts_with('<') {
            return None;
        }
        let gt = rest.find('>')?;
        let tag: String = rest[..=gt]
            .to_ascii_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        out.push(tag);
        rest = &rest[gt + 1..];
    }
}

fn tag_name(tag: &str) -> String {
    tag.trim_start_matches('<')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '/' || *c == '!' || *c == '-')
        .collect::<String>()
        .trim_end_matches('/')
        .to_string()
}

/// Is `A + disclaimer + B` the original with only whitespace (and wrapper tags) added?
fn joins(before: &str, a_full: &str, b_full: &str, html: bool) -> bool {
    let (a, a_res) = strip_tail(a_full, html);
    let (b_res, b) = strip_head(b_full, html);
    if before.len() < a.len() + b.len() || !before.starts_with(a) || !before.ends_with(b) {
        return false;
    }
    let middle = &before[a.len()..before.len() - b.len()];
    if !html {
        return middle.chars().all(is_ws);
    }
    let (Some(m_tags), Some(a_tags), Some(b_tags)) =
        (tags_only(middle), tags_only(a_res), tags_only(b_res))
    else {
        return false;
    };
    // The original tags must all still be there, in order; what is left over was added and
    // must be a harmless wrapper.
    let residue: Vec<String> = a_tags.into_iter().chain(b_tags).collect();
    let mut leftover = Vec::new();
    let mut want = m_tags.iter().peekable();
    for t in &residue {
        if want.peek().is_some_and(|w| *w == t) {
            want.next();
        } else {
            leftover.push(t.clone());
        }
    }
    if want.peek().is_some() {
        return false;
    }
    const WRAPPERS: &[&str] = &[
        "br", "div", "/div", "p", "/p", "span", "/span", "hr", "font", "/font", "table", "/table",
        "tbody", "/tbody", "tr", "/tr", "td", "/td", "!--", "small", "/small",
    ];
    leftover
        .iter()
        .all(|t| WRAPPERS.contains(&tag_name(t).as_str()))
}

fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    hay.to_ascii_lowercase().find(&needle.to_ascii_lowercase())
}

fn rfind_ci(hay: &str, needle: &str) -> Option<usize> {
    hay.to_ascii_lowercase().rfind(&needle.to_ascii_lowercase())
}

fn check_html_position(before: &str, after: &str, q: usize, c: &mut Checked, here: &str) {
    let a = &after[..q];
    let mut bad = |what: &str| {
        c.failures.push(format!(
            "{here}: the disclaimer is {what}: {:?}",
            context(after, q, 0)
        ))
    };
    if let Some(lt) = a.rfind('<')
        && a.rfind('>').is_none_or(|gt| gt < lt)
    {
        bad("inside a tag");
    }
    if let Some(amp) = a.rfind('&') {
        let tail = &a[amp + 1..];
        if tail.len() < 10
            && tail
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '#')
        {
            bad("inside a character reference");
        }
    }
    let la = a.to_ascii_lowercase();
    if la.matches("<!--").count() > la.matches("-->").count() {
        bad("inside an HTML comment");
    }
    if la.matches("<head").count() > la.matches("</head").count() && !la.contains("<body") {
        bad("inside <head>");
    }
    for (open, close) in [
        ("<style", "</style"),
        ("<script", "</script"),
        ("<title", "</title"),
    ] {
        if la.matches(open).count() > la.matches(close).count() {
            bad(&format!("inside {open}>"));
        }
    }
    if find_ci(before, "<body").is_some() && find_ci(a, "<body").is_none() {
        bad("before <body>");
    }
    if find_ci(before, "</body").is_some() {
        match rfind_ci(after, "</body") {
            Some(end) if q < end => {}
            _ => bad("not before </body>"),
        }
    }
}

/// A part the engine added to a message that had no main part.
fn check_added(e: &Entity<'_>, path: &[usize], d: Disclaimer<'_>, c: &mut Checked) {
    let here = format!("{}{} (added)", show_path(path), e.mime);
    match e.mime.as_str() {
        "text/plain" | "text/html" => {
            let html = e.mime == "text/html";
            let text = reader_text(e);
            let cs = e.charset().unwrap_or_else(|| "us-ascii".into());
            let forms = if html {
                html_forms(d.html, &cs)
            } else {
                vec![d.text.to_string()]
            };
            match find_insertion("", &text, &forms, html) {
                Ok(q) => c.mains.push(MainAfter {
                    path: path.to_vec(),
                    mime: e.mime.clone(),
                    charset_before: None,
                    charset_after: e.charset(),
                    cte_before: String::new(),
                    cte_after: e.cte(),
                    text: text.replace("\r\n", "\n"),
                    at: text[..q].replace("\r\n", "\n").len(),
                    added: true,
                }),
                Err(err) => c.failures.push(format!("{here}: {err}")),
            }
            if e.is_attachment() {
                c.failures
                    .push(format!("{here}: the added part is an attachment"));
            }
            if e.charset().is_none() && !text.is_ascii() {
                c.failures
                    .push(format!("{here}: non-ASCII text without a charset"));
            }
        }
        "multipart/alternative" => {
            for (i, child) in e.children().iter().enumerate() {
                let mut p = path.to_vec();
                p.push(i);
                check_added(child, &p, d, c);
            }
        }
        other => c
            .failures
            .push(format!("{here}: an added part of type {other}")),
    }
}

fn check_added_to_mixed(o: &Entity<'_>, a: &Entity<'_>, d: Disclaimer<'_>, c: &mut Checked) {
    let (Some(om), Some(am)) = (&o.multipart, &a.multipart) else {
        c.failures.push(format!(
            "[root] expected multipart/mixed with a disclaimer part added at its end; the output's root is {}",
            a.mime
        ));
        return;
    };
    if o.header != a.header {
        c.failures.push(format!(
            "[root] header changed:\n{}",
            first_difference(o.header, a.header)
        ));
    }
    if om.preamble != am.preamble {
        c.failures.push("[root] preamble changed".into());
    }
    if om.epilogue != am.epilogue {
        c.failures.push(format!(
            "[root] epilogue changed:\n{}",
            first_difference(om.epilogue, am.epilogue)
        ));
    }
    if am.parts.len() != om.parts.len() + 1 {
        c.failures.push(format!(
            "[root] expected {} parts (one added), found {}",
            om.parts.len() + 1,
            am.parts.len()
        ));
        return;
    }
    for (i, (oc, ac)) in om.parts.iter().zip(&am.parts).enumerate() {
        same_bytes(oc, ac, &[i], c);
    }
    let last = am.parts.len() - 1;
    check_added(&am.parts[last], &[last], d, c);
}

fn normalise_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn check_wrapped(o: &Entity<'_>, a: &Entity<'_>, d: Disclaimer<'_>, c: &mut Checked) {
    if a.mime != "multipart/mixed" || a.multipart.is_none() {
        c.failures.push(format!(
            "[root] expected a new multipart/mixed around the original; the output's root is {}",
            a.mime
        ));
        return;
    }
    // The message's own header fields (not Content-*) stay, in order.
    let own = |e: &Entity<'_>| -> Vec<Vec<u8>> {
        e.fields
            .iter()
            .filter(|f| !f.name.starts_with("content-") && f.name != "mime-version")
            .map(|f| f.raw.to_vec())
            .collect()
    };
    if own(o) != own(a) {
        c.failures.push(
            "[root] the message's header fields (other than Content-*/MIME-Version) changed".into(),
        );
    }
    let ct = |e: &Entity<'_>| e.field("content-type").map(normalise_ws);
    let original_at = a
        .children()
        .iter()
        .position(|ch| ch.body == o.body && ct(ch) == ct(o) && ch.cte() == o.cte());
    let Some(at) = original_at else {
        c.failures.push(format!(
            "[root] the original {} entity is not inside the new multipart/mixed byte for byte (Content-Type {:?})",
            o.mime,
            ct(o)
        ));
        return;
    };
    if a.children().len() < 2 {
        c.failures
            .push("[root] the new multipart/mixed has no disclaimer part".into());
    }
    for (i, ch) in a.children().iter().enumerate() {
        if i != at {
            check_added(ch, &[i], d, c);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Building messages (the property tests)

/// Base64 in lines of `width` characters, each ended by CRLF.
pub fn encode_base64(data: &[u8], width: usize) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = Vec::with_capacity(data.len() * 4 / 3 + 4);
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        s.push(ALPHABET[(v >> 18) as usize & 63]);
        s.push(ALPHABET[(v >> 12) as usize & 63]);
        s.push(if n > 1 {
            ALPHABET[(v >> 6) as usize & 63]
        } else {
            b'='
        });
        s.push(if n > 2 {
            ALPHABET[v as usize & 63]
        } else {
            b'='
        });
    }
    let mut out = Vec::with_capacity(s.len() + s.len() / width * 2 + 2);
    for line in s.chunks(width) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Quoted-printable of CRLF text: hard breaks stay CRLF, soft breaks keep lines to 76.
pub fn encode_qp(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 3 / 2);
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let last = lines.len() - 1;
    for (i, line) in lines.iter().enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut col = 0;
        for (j, &b) in line.iter().enumerate() {
            let trailing_ws = (b == b' ' || b == b'\t') && j == line.len() - 1;
            let enc = if b == b'=' || !(32..=126).contains(&b) && b != b'\t' || trailing_ws {
                format!("={b:02X}")
            } else {
                (b as char).to_string()
            };
            if col + enc.len() > 75 {
                out.extend_from_slice(b"=\r\n");
                col = 0;
            }
            out.extend_from_slice(enc.as_bytes());
            col += enc.len();
        }
        if i != last {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// Counts in a map (for summaries).
pub fn tally<'a>(items: impl IntoIterator<Item = &'a str>) -> Vec<(String, usize)> {
    let mut m: HashMap<String, usize> = HashMap::new();
    for i in items {
        *m.entry(i.to_string()).or_default() += 1;
    }
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort();
    v
}

/// Writes a list of failures, indented, for a panic message.
pub fn render(failures: &[(String, Vec<String>)]) -> String {
    let mut s = String::new();
    for (what, list) in failures {
        let _ = writeln!(s, "{what}:");
        for f in list {
            for (i, line) in f.lines().enumerate() {
                let _ = writeln!(s, "{}{line}", if i == 0 { "  - " } else { "    " });
            }
        }
    }
    s
}
