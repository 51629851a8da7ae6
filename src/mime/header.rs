//! Header sections (RFC 5322 §2.2, RFC 2045): where each field is, its unfolded value, and the
//! parameters of Content-Type and Content-Disposition.

use std::ops::Range;

use super::charset::Charset;

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
        // RFC 2231 values by parameter.
        let mut extended: Vec<(String, Vec<Segment>)> = Vec::new();
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
            if let Some((base, rest)) = name.split_once('*') {
                let segment = match rest {
                    "" => Some((0, true)),
                    _ => {
                        let (number, encoded) = match rest.strip_suffix('*') {
                            Some(n) => (n, true),
                            None => (rest, false),
                        };
                        number.parse::<u32>().ok().map(|n| (n, encoded))
                    }
                };
                if let Some((n, encoded)) = segment {
                    if !params.iter().any(|(p, _)| p == base) {
                        params.push((base.to_string(), String::new()));
                    }
                    match extended.iter_mut().find(|(b, _)| b == base) {
                        Some((_, segments)) => segments.push((n, encoded, v)),
                        None => extended.push((base.to_string(), vec![(n, encoded, v)])),
                    }
                    continue;
                }
            }
            if !params.iter().any(|(n, _)| *n == name) {
                params.push((name, v));
            }
        }
        // The extended value, when there is one, is the parameter's value (RFC 2231 readers
        // prefer it to a plain `name=` given for older ones).
        for (base, segments) in extended {
            if let Some(slot) = params.iter_mut().find(|(n, _)| *n == base) {
                slot.1 = join_2231(segments);
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

/// One RFC 2231 segment of a parameter: its number, whether it is percent-encoded, its value
/// as written.
type Segment = (u32, bool, String);

/// One parameter's RFC 2231 segments joined (§3, §4.1): in the order of their numbers, the
/// bytes of every segment first (percent-decoded where the segment is encoded), then decoded
/// once by the charset the first segment names. A character whose bytes are split across two
/// segments comes out whole. An unknown or missing charset is read as UTF-8.
fn join_2231(mut segments: Vec<Segment>) -> String {
    segments.sort_by_key(|&(n, _, _)| n);
    segments.dedup_by_key(|s| s.0);
    let mut charset = None;
    let mut bytes = Vec::new();
    for (n, encoded, v) in &segments {
        let mut body = v.as_str();
        if *n == 0 && *encoded {
            let mut fields = v.splitn(3, '\'');
            if let (Some(cs), Some(_lang), Some(rest)) =
                (fields.next(), fields.next(), fields.next())
            {
                charset = Some(cs.to_string());
                body = rest;
            }
        }
        if *encoded {
            percent_decode(body.as_bytes(), &mut bytes);
        } else {
            bytes.extend_from_slice(body.as_bytes());
        }
    }
    let charset = charset
        .as_deref()
        .and_then(|label| Charset::from_label(label, &bytes))
        .filter(|c| !matches!(c, Charset::Ascii))
        .unwrap_or(Charset::Utf8);
    charset.decode_lossy(&bytes)
}

/// `%XX` escapes decoded into `out`; anything else kept as it is.
fn percent_decode(bytes: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|&b| hex_digit(b)),
                bytes.get(i + 2).and_then(|&b| hex_digit(b)),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
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
    fn a_character_split_across_rfc_2231_segments_comes_out_whole() {
        // "Siân's EHCP.pdf": the two bytes of "â" (C3 A2) fall in two segments.
        let p = Parameterised::parse(
            "attachment; filename*0*=UTF-8''Si%C3; filename*1*=%A2n%27s%20EHCP.pdf",
        );
        assert_eq!(p.param("filename"), Some("Siân's EHCP.pdf"));
        // Out of order, with an unencoded segment between, in Latin-1.
        let p = Parameterised::parse(
            "attachment; filename*2*=%E9.txt; filename*0*=iso-8859-1'en'Ren; filename*1=\"e Zo\"",
        );
        assert_eq!(p.param("filename"), Some("Rene Zoé.txt"));
        // A four-byte character over three segments.
        let p = Parameterised::parse(
            "application/pdf; name*0*=utf-8''report%F0%9F; name*1*=%93; name*2*=%9A.pdf",
        );
        assert_eq!(p.param("name"), Some("report\u{1F4DA}.pdf"));
        // The extended value is preferred to the plain one written for older readers.
        let p = Parameterised::parse(
            "attachment; filename=\"Sian.pdf\"; filename*=UTF-8''Si%C3%A2n.pdf",
        );
        assert_eq!(p.param("filename"), Some("Siân.pdf"));
        assert_eq!(p.params.len(), 1);
    }

    #[test]
    fn parameter_values_are_quoted_only_when_needed() {
        assert_eq!(param_value("utf-8"), "utf-8");
        assert_eq!(param_value("a b"), "\"a b\"");
    }
}
