//! Header sections (RFC 5322 §2.2, RFC 2045): where each field is, its unfolded value, and the
//! parameters of Content-Type and Content-Disposition.

use std::ops::Range;

/// One header field: its name and its whole extent, continuation lines and line ending included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name, as written.
    pub name: String,
    /// From the first byte of the name to the end of the last line ending.
    pub whole: Range<usize>,
    /// The value after the colon, continuation lines included, without the final line ending.
    pub value: Range<usize>,
}

/// A header section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub fields: Vec<Field>,
    /// Where the fields end (the blank line, or the body when there is none).
    pub fields_end: usize,
    /// Where the body begins (after the blank line).
    pub body_start: usize,
    /// The section was ended by a line that is neither a field nor a continuation, not by a
    /// blank line, and a MIME field (Content-Type, -Disposition, -Transfer-Encoding) follows it
    /// before the next blank line. Readers differ here: this one (as Postfix) starts the body
    /// at the stray line, mail-parser skips it and reads on, so what the part is may be seen
    /// one way by some mail programs and another way by others.
    pub stray_line: bool,
}

impl Header {
    /// The first field called `name` (case-insensitive).
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The unfolded value of the first field called `name`.
    pub fn value(&self, raw: &[u8], name: &str) -> Option<String> {
        self.field(name).map(|f| unfold(&raw[f.value.clone()]))
    }
}

/// Reads the header section of the entity at `raw[start..end]`.
///
/// A header line is `name: value` or a continuation starting with white space. The section ends
/// at the first blank line; a line that is neither (a part that forgot its blank line) ends it
/// too, and the body begins there.
pub fn parse(raw: &[u8], start: usize, end: usize) -> Header {
    let mut fields: Vec<Field> = Vec::new();
    let mut pos = start;
    while pos < end {
        let line_end = memchr::memchr(b'\n', &raw[pos..end]).map_or(end, |i| pos + i + 1);
        let line = &raw[pos..line_end];
        let content = trim_eol(line);
        if content.is_empty() {
            return Header {
                fields,
                fields_end: pos,
                body_start: line_end,
                stray_line: false,
            };
        }
        if content[0] == b' ' || content[0] == b'\t' {
            if let Some(last) = fields.last_mut() {
                last.whole.end = line_end;
                last.value.end = pos + content.len();
            }
            // A continuation with nothing before it is passed over.
            pos = line_end;
            continue;
        }
        // An mbox separator (`From sender date`) left at the top of a message is part of its
        // header block, not the start of its body.
        if pos == 0 && content.starts_with(b"From ") && field_name(content).is_none() {
            pos = line_end;
            continue;
        }
        match field_name(content) {
            Some(name_len) => {
                let name = String::from_utf8_lossy(&content[..name_len])
                    .trim()
                    .to_string();
                fields.push(Field {
                    name,
                    whole: pos..line_end,
                    value: pos + name_len + 1..pos + content.len(),
                });
                pos = line_end;
            }
            None => {
                return Header {
                    fields,
                    fields_end: pos,
                    body_start: pos,
                    stray_line: mime_field_follows(raw, line_end, end),
                };
            }
        }
    }
    Header {
        fields,
        fields_end: end,
        body_start: end,
        stray_line: false,
    }
}

/// Whether a MIME field (`Content-…:`) starts a line in `raw[from..end]` before the first blank
/// line: fields that a reader reading past a stray line would take as the part's own.
fn mime_field_follows(raw: &[u8], from: usize, end: usize) -> bool {
    raw[from..end]
        .split(|&b| b == b'\n')
        .map(trim_eol)
        .take_while(|line| !line.is_empty())
        .any(|line| {
            field_name(line).is_some_and(|n| {
                line[..n].trim_ascii_end().len() > 8 && line[..8].eq_ignore_ascii_case(b"content-")
            })
        })
}

/// The length of the field name when `line` is `name:`; printable ASCII without colon (RFC 5322
/// §3.6.8), allowing spaces before the colon as old software writes.
fn field_name(line: &[u8]) -> Option<usize> {
    let colon = memchr::memchr(b':', line)?;
    let name = &line[..colon];
    let trimmed = name.trim_ascii_end();
    if trimmed.is_empty() || !trimmed.iter().all(|&b| (33..=126).contains(&b)) {
        return None;
    }
    Some(colon)
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A folded value on one line, trimmed (bytes that are not UTF-8 are replaced).
pub fn unfold(value: &[u8]) -> String {
    let s = String::from_utf8_lossy(value);
    let mut out = String::with_capacity(s.len());
    for (i, line) in s.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if i > 0 {
            out.push(' ');
            out.push_str(line.trim_start());
        } else {
            out.push_str(line);
        }
    }
    out.trim().to_string()
}

/// A `type/subtype; name=value; …` value (Content-Type, Content-Disposition).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parameterised {
    /// The lower-cased `type/subtype` (or disposition token).
    pub value: String,
    /// Parameters with lower-cased names, in order, values unquoted.
    pub params: Vec<(String, String)>,
}

impl Parameterised {
    /// Parses a header value; RFC 2231 continuations (`name*0`, `name*1*`) are joined.
    pub fn parse(s: &str) -> Self {
        let s = strip_comments(s);
        let mut parts = split_params(&s);
        let first = if parts.is_empty() {
            String::new()
        } else {
            parts.remove(0)
        };
        // `multipart/mixed boundary="b"`: a missing semicolon, read as readers do.
        let first = first.trim();
        let (value, stray) = match first.split_once(char::is_whitespace) {
            Some((v, rest)) if rest.contains('=') => (v, Some(rest.trim().to_string())),
            _ => (first, None),
        };
        let value = value.to_ascii_lowercase();
        let mut params: Vec<(String, String)> = Vec::new();
        for p in stray.into_iter().chain(parts) {
            let Some((name, v)) = p.split_once('=') else {
                continue;
            };
            let name = name.trim().to_ascii_lowercase();
            let mut v = v.trim().to_string();
            if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
                v = unquote(&v[1..v.len() - 1]);
            }
            // RFC 2231: name*=charset'lang'value, name*0=…, name*1*=…
            let (base, segment) = match name.split_once('*') {
                Some((base, rest)) => (base.to_string(), Some(rest.to_string())),
                None => (name.clone(), None),
            };
            if let Some(seg) = &segment
                && (seg.is_empty() || seg.ends_with('*'))
            {
                // Only the first segment carries charset'language'.
                v = decode_2231(&v, seg.is_empty() || seg == "0*");
            }
            if let Some(existing) = params.iter_mut().find(|(n, _)| *n == base) {
                if name != base {
                    existing.1.push_str(&v);
                }
            } else {
                params.push((base, v));
            }
        }
        Parameterised { value, params }
    }

    /// A parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0u32;
    let mut in_quotes = false;
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                in_quotes = !in_quotes;
                out.push(c);
            }
            '(' if !in_quotes => depth += 1,
            ')' if !in_quotes && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn split_params(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => {
                cur.push(c);
                escaped = true;
            }
            '"' => {
                in_quotes = !in_quotes;
                cur.push(c);
            }
            ';' if !in_quotes => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    parts
}

fn unquote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for c in s.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

/// `charset'lang'percent-encoded` (first segment) or `percent-encoded` (later segments).
fn decode_2231(v: &str, first: bool) -> String {
    let body = if first {
        v.splitn(3, '\'').nth(2).unwrap_or(v)
    } else {
        v
    };
    let bytes = body.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// A parameter value written as a token when it can be, else quoted.
pub fn param_value(v: &str) -> String {
    let token = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c));
    if token {
        v.to_string()
    } else {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_continuations_and_the_body() {
        let raw = b"From: a@x\r\nSubject: one\r\n two\r\nContent-Type: text/plain;\r\n\tcharset=\"utf-8\"\r\n\r\nbody\r\n";
        let h = parse(raw, 0, raw.len());
        assert_eq!(h.fields.len(), 3);
        assert_eq!(h.value(raw, "subject").as_deref(), Some("one two"));
        assert_eq!(&raw[h.body_start..], b"body\r\n");
        let ct = Parameterised::parse(&h.value(raw, "content-type").unwrap());
        assert_eq!(ct.value, "text/plain");
        assert_eq!(ct.param("charset"), Some("utf-8"));
    }

    #[test]
    fn a_part_without_its_blank_line_has_a_body_all_the_same() {
        let raw = b"Content-Type: text/plain\nhello world\n";
        let h = parse(raw, 0, raw.len());
        assert_eq!(h.fields.len(), 1);
        assert_eq!(&raw[h.body_start..], b"hello world\n");
        let raw = b"\r\nno headers\r\n";
        let h = parse(raw, 0, raw.len());
        assert!(h.fields.is_empty());
        assert_eq!(&raw[h.body_start..], b"no headers\r\n");
    }

    #[test]
    fn an_mbox_from_line_stays_in_the_header() {
        let raw = b"From jamis@byu.edu Mon May  2 16:07:05 2005\r\nSubject: x\r\n\r\nbody\r\n";
        let h = parse(raw, 0, raw.len());
        assert_eq!(h.fields.len(), 1);
        assert_eq!(&raw[h.body_start..], b"body\r\n");
    }

    #[test]
    fn parameters_quoted_commented_and_continued() {
        let p = Parameterised::parse(
            "Multipart/Mixed (a comment); boundary=\"=_a;b\\\"c\"; charset=ISO-8859-1",
        );
        assert_eq!(p.value, "multipart/mixed");
        assert_eq!(p.param("boundary"), Some("=_a;b\"c"));
        let p = Parameterised::parse("attachment; filename*0*=utf-8''caf%C3%A9; filename*1=.txt");
        assert_eq!(p.param("filename"), Some("café.txt"));
        let p = Parameterised::parse("multipart/mixed boundary=\"b\"");
        assert_eq!(p.value, "multipart/mixed");
        assert_eq!(p.param("boundary"), Some("b"));
    }

    #[test]
    fn parameter_values_are_quoted_only_when_needed() {
        assert_eq!(param_value("utf-8"), "utf-8");
        assert_eq!(param_value("a b"), "\"a b\"");
    }
}
