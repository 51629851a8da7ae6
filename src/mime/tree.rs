//! The parts of a message, found by their boundaries (RFC 2046 §5.1.1) over the raw bytes.
//!
//! Our own scanner rather than mail-parser's part tree, which goes wrong on odd boundaries (a
//! text line that merely starts with `--boundary-and-more` ends its part; see
//! research/crates.md). Here a delimiter is a line that is exactly `--B` or `--B--`, followed only
//! by spaces or tabs. Nothing is decoded: a 20 MB attachment is passed over in one search.

use std::ops::Range;

use memchr::memmem;

use super::header::{self, Header, Parameterised};

/// Deeper nesting than this is not looked into: a multipart this deep is left unsplit and
/// marked [`Part::too_deep`] (the attachment rules hold such a message as unscannable).
pub const MAX_DEPTH: usize = 32;

/// More parts than this in one message are not looked for: the multipart where the count runs
/// out is marked [`Part::too_many`] (held as unscannable, like [`Part::too_deep`]). Each part
/// costs a few hundred bytes here, so a 50 MB message of empty parts cannot cost gigabytes.
pub const MAX_PARTS: usize = 10_000;

/// One MIME entity: the whole message, or a part of a multipart.
#[derive(Debug, Clone)]
pub struct Part {
    /// Headers and body: `raw[range]` is the entity.
    pub range: Range<usize>,
    pub header: Header,
    /// Content-Type (lower-cased); the RFC 2045 default when absent.
    pub content_type: Parameterised,
    /// Whether a Content-Type field was present.
    pub has_content_type: bool,
    /// Content-Transfer-Encoding, lower-cased (`7bit` when absent).
    pub encoding: String,
    /// Content-Disposition (`attachment`, `inline`), when given.
    pub disposition: Option<Parameterised>,
    /// The parts of a multipart, in order.
    pub children: Vec<Part>,
    /// Where the closing delimiter line (`--B--`) of a multipart starts.
    pub close_delimiter: Option<usize>,
    /// What is wrong with this entity's structure, when something is.
    pub malformed: Option<String>,
    /// A multipart nested deeper than [`MAX_DEPTH`]: its parts were not looked for.
    pub too_deep: bool,
    /// A multipart whose parts past the message's [`MAX_PARTS`] were not looked for.
    pub too_many: bool,
}

impl Part {
    /// The body: `raw[body]`.
    pub fn body(&self) -> Range<usize> {
        self.header.body_start.max(self.range.start)..self.range.end
    }

    /// `type/subtype`, lower-cased.
    pub fn mime_type(&self) -> &str {
        &self.content_type.value
    }

    pub fn is_multipart(&self) -> bool {
        self.mime_type().starts_with("multipart/")
    }

    /// Marked as an attachment, or named as a file.
    pub fn is_attachment(&self) -> bool {
        self.disposition
            .as_ref()
            .is_some_and(|d| d.value == "attachment")
    }

    /// The boundary of a multipart.
    pub fn boundary(&self) -> Option<&str> {
        self.content_type.param("boundary")
    }

    /// Does a header section in this part's subtree end at a stray line (see
    /// [`Header::stray_line`]), so that other readers may see more fields, and parts, than we do?
    pub fn any_stray_header_line(&self) -> bool {
        self.header.stray_line || self.children.iter().any(|c| c.any_stray_header_line())
    }

    /// Is a multipart in this part's subtree nested too deep to be split into its parts?
    pub fn any_too_deep(&self) -> bool {
        self.too_deep || self.children.iter().any(|c| c.any_too_deep())
    }

    /// Were parts in this part's subtree left unread past [`MAX_PARTS`]?
    pub fn any_too_many(&self) -> bool {
        self.too_many || self.children.iter().any(|c| c.any_too_many())
    }

    /// Is anything in this part's subtree malformed?
    pub fn any_malformed(&self) -> Option<&str> {
        self.malformed
            .as_deref()
            .or_else(|| self.children.iter().find_map(|c| c.any_malformed()))
    }
}

/// Finds the parts of `raw`.
pub fn scan(raw: &[u8]) -> Part {
    let mut parts = 0;
    scan_entity(raw, 0..raw.len(), &[], 0, false, &mut parts)
}

fn scan_entity(
    raw: &[u8],
    range: Range<usize>,
    enclosing: &[&[u8]],
    depth: usize,
    in_digest: bool,
    parts: &mut usize,
) -> Part {
    *parts += 1;
    let header = header::parse(raw, range.start, range.end);
    let ct_value = header.value(raw, "content-type");
    let has_content_type = ct_value.is_some();
    let mut content_type = ct_value
        .as_deref()
        .map(Parameterised::parse)
        .unwrap_or_default();
    // Two Content-Type (or Content-Transfer-Encoding) fields: readers differ on which counts
    // (this one takes the first, mail-parser the last), so no edit can be right for both.
    let twice = |name: &str| {
        header
            .fields
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(name))
            .nth(1)
            .is_some()
    };
    let malformed = ["Content-Type", "Content-Transfer-Encoding"]
        .into_iter()
        .find(|name| twice(name))
        .map(|name| format!("two {name} fields"));
    // RFC 2045 §5.2: an absent or unreadable Content-Type is text/plain us-ascii
    // (message/rfc822 inside a digest).
    if !content_type.value.contains('/') {
        content_type = Parameterised {
            value: if in_digest {
                "message/rfc822".into()
            } else {
                "text/plain".into()
            },
            params: vec![("charset".into(), "us-ascii".into())],
        };
    }
    let encoding = header
        .value(raw, "content-transfer-encoding")
        .map(|v| Parameterised::parse(&v).value)
        .filter(|v| !v.is_empty())
        .map(|v| match v.as_str() {
            // Misspellings seen in real mail, read as every client reads them.
            "8bits" | "8-bit" => "8bit".into(),
            "7bits" | "7-bit" => "7bit".into(),
            _ => v,
        })
        .unwrap_or_else(|| "7bit".into());
    let disposition = header
        .value(raw, "content-disposition")
        .map(|v| Parameterised::parse(&v));
    let mut part = Part {
        range: range.clone(),
        header,
        content_type,
        has_content_type,
        encoding,
        disposition,
        children: Vec::new(),
        close_delimiter: None,
        malformed,
        too_deep: false,
        too_many: false,
    };
    if part.is_multipart() {
        if depth < MAX_DEPTH {
            split_multipart(raw, &mut part, enclosing, depth, parts);
        } else {
            part.too_deep = true;
        }
    }
    part
}

fn split_multipart(
    raw: &[u8],
    part: &mut Part,
    enclosing: &[&[u8]],
    depth: usize,
    parts: &mut usize,
) {
    let Some(boundary) = part.boundary().map(str::to_string) else {
        part.malformed = Some(format!("{} without a boundary", part.mime_type()));
        return;
    };
    // Trailing spaces of a boundary parameter are not part of it (RFC 2046 BNF).
    let boundary = boundary.trim_end_matches([' ', '\t']).to_string();
    if boundary.is_empty() || boundary.len() > 998 {
        part.malformed = Some("an empty or overlong boundary".into());
        return;
    }
    let b = boundary.as_bytes();
    // A boundary that merely starts like its parent's is fine (`--B` running into more text is
    // not a delimiter); the same boundary twice is ambiguous.
    if enclosing.contains(&b) {
        part.malformed = Some("a nested multipart reuses its parent's boundary".into());
        return;
    }
    let body = part.body();
    let room = MAX_PARTS.saturating_sub(*parts);
    let delimiters = find_delimiters(raw, body.clone(), b, room + 1);
    if delimiters.is_empty() {
        part.malformed = Some(format!("the boundary \"{boundary}\" never appears"));
        return;
    }
    let mut inner: Vec<&[u8]> = enclosing.to_vec();
    inner.push(b);
    let in_digest = part.mime_type() == "multipart/digest";
    for pair in delimiters.windows(2) {
        let (open, next) = (&pair[0], &pair[1]);
        if open.close {
            break;
        }
        if *parts >= MAX_PARTS {
            part.too_many = true;
            return;
        }
        let child = open.line_end..next.before_line_ending;
        part.children
            .push(scan_entity(raw, child, &inner, depth + 1, in_digest, parts));
    }
    let last = delimiters[delimiters.len() - 1].clone();
    if *parts >= MAX_PARTS && !last.close {
        part.too_many = true;
        return;
    }
    if last.close {
        part.close_delimiter = Some(last.start);
    } else {
        // No closing delimiter (common in real mail): the last part runs to the end of the
        // enclosing entity, as every reader takes it.
        part.children.push(scan_entity(
            raw,
            last.line_end..body.end,
            &inner,
            depth + 1,
            in_digest,
            parts,
        ));
    }
    if part.children.is_empty() {
        part.malformed = Some("a multipart with no parts".into());
    }
}

#[derive(Debug, Clone)]
struct Delimiter {
    /// Where `--B` starts.
    start: usize,
    /// Where the line ending before it starts (the end of the previous part).
    before_line_ending: usize,
    /// After the delimiter line's own line ending.
    line_end: usize,
    close: bool,
}

/// The delimiter lines of `boundary` in `body`, at most `most` of them.
fn find_delimiters(raw: &[u8], body: Range<usize>, boundary: &[u8], most: usize) -> Vec<Delimiter> {
    let mut needle = Vec::with_capacity(boundary.len() + 2);
    needle.extend_from_slice(b"--");
    needle.extend_from_slice(boundary);
    let hay = &raw[body.clone()];
    let mut out = Vec::new();
    for at in memmem::find_iter(hay, &needle) {
        let start = body.start + at;
        // A delimiter starts a line.
        if start != body.start && raw[start - 1] != b'\n' {
            continue;
        }
        let mut p = start + needle.len();
        let close = raw[p..body.end].starts_with(b"--");
        if close {
            p += 2;
        }
        let after = p;
        while p < body.end && (raw[p] == b' ' || raw[p] == b'\t') {
            p += 1;
        }
        let line_end = if p == body.end {
            p
        } else if raw[p] == b'\n' {
            p + 1
        } else if raw[p] == b'\r' && raw.get(p + 1) == Some(&b'\n') && p + 1 < body.end {
            p + 2
        } else if p > after {
            // `--B  text`: RFC 2046's note to implementors has readers match the boundary at
            // the start of the line; what follows white space is ignored.
            memchr::memchr(b'\n', &raw[p..body.end]).map_or(body.end, |i| p + i + 1)
        } else {
            continue; // `--B` running straight into other text is not a delimiter.
        };
        let before_line_ending = if start == body.start {
            start
        } else if start >= 2 && raw[start - 2] == b'\r' && start - 2 >= body.start {
            start - 2
        } else {
            start - 1
        };
        out.push(Delimiter {
            start,
            before_line_ending: before_line_ending
                .max(out.last().map_or(body.start, |d: &Delimiter| d.line_end)),
            line_end,
            close,
        });
        if close || out.len() >= most {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: &[u8] = b"Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XXnot a delimiter\r\n--XX \r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--XX--\r\nepilogue\r\n";

    #[test]
    fn parts_are_found_between_delimiter_lines_only() {
        let p = scan(MIXED);
        assert!(p.malformed.is_none(), "{:?}", p.malformed);
        assert_eq!(p.children.len(), 2);
        let text = &p.children[0];
        assert_eq!(text.mime_type(), "text/plain");
        assert_eq!(&MIXED[text.body()], b"hello\r\n--XXnot a delimiter");
        let pdf = &p.children[1];
        assert!(pdf.is_attachment());
        assert_eq!(pdf.encoding, "base64");
        assert_eq!(&MIXED[pdf.body()], b"JVBERi0=");
        let close = p.close_delimiter.unwrap();
        assert!(MIXED[close..].starts_with(b"--XX--"));
    }

    #[test]
    fn nesting_and_lf_endings() {
        let m = b"Content-Type: multipart/mixed; boundary=a\n\n--a\nContent-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\nplain\n--b\nContent-Type: text/html\n\n<p>html</p>\n--b--\n--a--\n";
        let p = scan(m);
        assert!(p.any_malformed().is_none());
        let alt = &p.children[0];
        assert_eq!(alt.children.len(), 2);
        assert_eq!(&m[alt.children[0].body()], b"plain");
        assert_eq!(&m[alt.children[1].body()], b"<p>html</p>");
    }

    #[test]
    fn a_missing_close_runs_to_the_end_and_text_after_a_delimiter_is_ignored() {
        let m = b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a ignored text\r\n\r\none\r\n--a\r\n\r\ntwo\r\n";
        let p = scan(m);
        assert!(p.any_malformed().is_none());
        assert_eq!(p.children.len(), 2);
        assert_eq!(&m[p.children[0].body()], b"one");
        assert_eq!(&m[p.children[1].body()], b"two\r\n");
        assert_eq!(p.close_delimiter, None);
    }

    #[test]
    fn a_reused_boundary_and_a_missing_one_are_malformed() {
        let m = b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\n\r\nx\r\n--a--\r\n";
        assert!(scan(m).any_malformed().is_some());
        let m = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\nno parts here\r\n--zzz\r\n";
        assert!(scan(m).any_malformed().is_some());
        let m = b"Content-Type: multipart/mixed\r\n\r\n--zz\r\n";
        assert!(scan(m).any_malformed().is_some());
    }

    #[test]
    fn two_content_types_are_malformed() {
        // Found by the mime_rewrite fuzz target: the disclaimer went into the multipart this
        // scan read from the first field, inside what mail-parser read as one binary part.
        let m = b"Content-Type: multipart/mixed; boundary=a\r\nContent-Type: application/pdf\r\n\r\n--a\r\n\r\nx\r\n--a--\r\n";
        assert_eq!(scan(m).any_malformed(), Some("two Content-Type fields"));
        let m = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\ncontent-transfer-encoding: 7bit\r\n\r\nx\r\n";
        assert_eq!(
            scan(m).any_malformed(),
            Some("two Content-Transfer-Encoding fields")
        );
        let m = b"Content-Type: text/plain\r\n\r\nx\r\n";
        assert!(scan(m).any_malformed().is_none());
    }

    #[test]
    fn a_stray_line_above_a_mime_field_is_told_apart() {
        // The body starts at the stray line here; a reader that reads past it sees a PDF.
        let m = b"Subject: x\r\nX\r\nContent-Type: application/pdf\r\n\r\n%PDF\r\n";
        let p = scan(m);
        assert!(p.any_stray_header_line());
        assert_eq!(p.mime_type(), "text/plain");
        // A stray line with no MIME field after it changes nothing any reader sees.
        let m = b"Subject: x\r\nX\r\nX-Other: y\r\n\r\nbody\r\n";
        assert!(!scan(m).any_stray_header_line());
        let m = b"Subject: x\r\n\r\nContent-Type: application/pdf\r\n";
        assert!(!scan(m).any_stray_header_line());
    }

    /// `levels` multiparts, one inside the other, around one text part.
    fn nested(levels: usize) -> Vec<u8> {
        let mut m = Vec::new();
        for i in 0..levels {
            m.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n")
                    .as_bytes(),
            );
        }
        m.extend_from_slice(b"Content-Type: text/plain\r\n\r\ndeep\r\n");
        for i in (0..levels).rev() {
            m.extend_from_slice(format!("--b{i}--\r\n").as_bytes());
        }
        m
    }

    #[test]
    fn nesting_past_the_limit_is_marked_not_dropped_silently() {
        let fits = scan(&nested(MAX_DEPTH));
        assert!(!fits.any_too_deep());
        let too_deep = scan(&nested(MAX_DEPTH + 1));
        assert!(too_deep.any_too_deep());
        assert!(
            !too_deep.too_deep,
            "only the innermost multipart is left unsplit"
        );
    }

    #[test]
    fn parts_past_the_count_are_marked_not_dropped_silently() {
        let mut m = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
        for _ in 0..MAX_PARTS + 5 {
            m.extend_from_slice(b"--b\r\n\r\nx\r\n");
        }
        m.extend_from_slice(b"--b--\r\n");
        let p = scan(&m);
        assert!(p.too_many);
        assert!(p.children.len() < MAX_PARTS);
        let mut fits = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
        for _ in 0..MAX_PARTS - 2 {
            fits.extend_from_slice(b"--b\r\n\r\nx\r\n");
        }
        fits.extend_from_slice(b"--b--\r\n");
        let p = scan(&fits);
        assert!(!p.any_too_many());
        assert_eq!(p.children.len(), MAX_PARTS - 2);
    }

    #[test]
    fn a_message_without_mime_is_one_plain_text_part() {
        let m = b"Subject: hi\r\n\r\nhello\r\n";
        let p = scan(m);
        assert_eq!(p.mime_type(), "text/plain");
        assert!(!p.has_content_type);
        assert_eq!(&m[p.body()], b"hello\r\n");
    }
}
