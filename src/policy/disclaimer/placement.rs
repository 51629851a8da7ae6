//! Where the disclaimer goes in a text or HTML body: directly under the author's new text,
//! above a recognised quoted thread, else at the end (HTML: before `</body>`). And whether the
//! new text already carries it.
//!
//! Users of other gateways complain that the disclaimer lands under the whole thread, or stacks
//! up once per reply (research/peers.md). Only the new text counts: a disclaimer inside the
//! quoted thread is the previous message's.

/// Where to insert, as a byte offset into the decoded body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub offset: usize,
    /// Above a quoted thread (at a line start in text), rather than at the end.
    pub above_quote: bool,
}

/// Is line `i` where an unmarked quoted message starts (Outlook's and the forward separators,
/// whose quoted text has no `>`)?
fn is_quote_header(lines: &[(usize, &[u8])], i: usize) -> bool {
    let l = clean(lines[i].1);
    let next = || {
        lines[i + 1..]
            .iter()
            .map(|&(_, l)| clean(l))
            .find(|l| !l.is_empty())
            .unwrap_or_default()
    };
    let from = |l: &[u8]| starts_with_ci(l, b"from:") || starts_with_ci(l, b"oddi wrth:");
    let sent = |l: &[u8]| {
        [&b"sent:"[..], b"date:", b"anfonwyd:", b"dyddiad:"]
            .iter()
            .any(|p| starts_with_ci(l, p))
    };
    is_separator(l)
        || (from(l) && sent(next()))
        || (l.len() > 20 && l.iter().all(|&b| b == b'_') && from(next()))
}

/// The lines the author wrote: everything but `>` quotes and their attribution lines, up to an
/// unmarked quoted message (Outlook). Unlike [`in_text`] this keeps an answer written below or
/// between the quotes.
pub fn unquoted_text(body: &str) -> String {
    let lines = lines(body.as_bytes());
    let ahead = Lookahead::new(&lines);
    let mut out = String::with_capacity(body.len());
    for (i, &(start, line)) in lines.iter().enumerate() {
        if is_quote_header(&lines, i) {
            break;
        }
        let l = clean(line);
        let attribution = is_attribution(l, lines.get(i + 1).map(|&(_, n)| clean(n)))
            && ahead.quote_follows[i + 1];
        let wrapped_attribution =
            i > 0 && ends_wrote(l) && is_attribution(clean(lines[i - 1].1), Some(l));
        if l.first() == Some(&b'>') || attribution || wrapped_attribution {
            continue;
        }
        out.push_str(&body[start..start + line.len()]);
        out.push('\n');
    }
    out
}

/// HTML with every `<blockquote>…</blockquote>` (nested ones included) taken out.
pub fn without_blockquotes(html: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let mut out = String::with_capacity(html.len());
    let mut depth = 0usize;
    let mut i = 0;
    while i < html.len() {
        let rest = &lower[i..];
        if rest.starts_with("<blockquote") {
            depth += 1;
        } else if rest.starts_with("</blockquote") && depth > 0 {
            depth -= 1;
            i += rest.find('>').map_or(rest.len(), |e| e + 1);
            continue;
        }
        let ch_len = html[i..].chars().next().map_or(1, char::len_utf8);
        if depth == 0 {
            out.push_str(&html[i..i + ch_len]);
        }
        i += ch_len;
    }
    out
}

/// The insertion point in a plain-text body (ASCII-compatible bytes).
pub fn in_text(body: &[u8]) -> Point {
    let lines = lines(body);
    let ahead = Lookahead::new(&lines);
    for (i, &(start, line)) in lines.iter().enumerate() {
        let l = clean(line);
        let marker = is_quote_header(&lines, i)
            || (is_attribution(l, lines.get(i + 1).map(|&(_, n)| clean(n)))
                && ahead.quote_follows[i + 1])
            || (l.first() == Some(&b'>') && ahead.all_quoted[i]);
        if marker {
            return Point {
                offset: start,
                above_quote: true,
            };
        }
    }
    Point {
        offset: body.len(),
        above_quote: false,
    }
}

/// Lines with their start offsets, without line endings.
fn lines(body: &[u8]) -> Vec<(usize, &[u8])> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in memchr::memchr_iter(b'\n', body) {
        let line = &body[start..i];
        out.push((start, line.strip_suffix(b"\r").unwrap_or(line)));
        start = i + 1;
    }
    if start < body.len() {
        out.push((start, &body[start..]));
    }
    out
}

/// A line trimmed, without the `*` Outlook puts around bold words in plain text.
fn clean(line: &[u8]) -> &[u8] {
    let l = line.trim_ascii();
    l.strip_prefix(b"*").unwrap_or(l)
}

fn starts_with_ci(l: &[u8], prefix: &[u8]) -> bool {
    l.len() >= prefix.len() && l[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn contains_ci(l: &[u8], needle: &[u8]) -> bool {
    l.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// `-----Original Message-----`, `---------- Forwarded message ---------`,
/// `-------- Original Message --------`, `Begin forwarded message:`; in Welsh,
/// `-----Neges Wreiddiol-----` and `---------- Neges a anfonwyd ymlaen ---------`.
fn is_separator(l: &[u8]) -> bool {
    if starts_with_ci(l, b"begin forwarded message") {
        return true;
    }
    l.starts_with(b"--")
        && l.ends_with(b"--")
        && [
            &b"original message"[..],
            b"forwarded message",
            b"neges wreiddiol",
            b"anfonwyd ymlaen",
        ]
        .iter()
        .any(|m| contains_ci(l, m))
}

/// Ends as an attribution does: `wrote:`, or the Welsh `ysgrifennodd:`.
fn ends_wrote(l: &[u8]) -> bool {
    let l = l.trim_ascii_end();
    l.ends_with(b"wrote:") || l.ends_with(b"ysgrifennodd:")
}

/// `On Mon, 23 Nov 2026 at 10:00, Tom Baker <t@x> wrote:` — on one line or wrapped onto a
/// second (Gmail and Apple Mail wrap long attributions); in Welsh, `Ar Llun, 23 Tach 2026 am
/// 10:00, Tom Baker <t@x> ysgrifennodd:`.
fn is_attribution(l: &[u8], next: Option<&[u8]>) -> bool {
    if !(starts_with_ci(l, b"on ") || starts_with_ci(l, b"ar ")) || l.len() > 400 {
        return false;
    }
    let ends = ends_wrote;
    let has_digit = |s: &[u8]| s.iter().any(u8::is_ascii_digit);
    if ends(l) {
        return has_digit(l);
    }
    match next {
        Some(n) if ends(n) && n.len() < 200 => has_digit(l) || has_digit(n),
        _ => false,
    }
}

/// For each line `i`, looking from there to the end, computed in one backward pass so that a
/// body of many quoted lines costs linear time, not quadratic:
/// - `quote_follows[i]`: the first non-empty line that is not an attribution's "wrote:" line
///   is quoted ("On Friday, the children wrote:" followed by their poem is the author's text);
/// - `all_quoted[i]`: every non-empty line is quoted (the thread, not inline answers).
struct Lookahead {
    quote_follows: Vec<bool>,
    all_quoted: Vec<bool>,
}

impl Lookahead {
    fn new(lines: &[(usize, &[u8])]) -> Self {
        let n = lines.len();
        let mut quote_follows = vec![false; n + 1];
        let mut all_quoted = vec![true; n + 1];
        for i in (0..n).rev() {
            let l = lines[i].1.trim_ascii();
            let quoted = l.first() == Some(&b'>');
            if l.is_empty() {
                quote_follows[i] = quote_follows[i + 1];
                all_quoted[i] = all_quoted[i + 1];
            } else {
                quote_follows[i] = if ends_wrote(l) {
                    quote_follows[i + 1]
                } else {
                    quoted
                };
                all_quoted[i] = quoted && all_quoted[i + 1];
            }
        }
        Lookahead {
            quote_follows,
            all_quoted,
        }
    }
}

/// Where the quoted thread of each mail client starts in HTML (lower case).
const HTML_MARKERS: &[&[u8]] = &[
    b"<div class=\"gmail_quote",
    b"<blockquote class=\"gmail_quote",
    b"<div id=\"appendonsend\"",
    b"<hr style=\"display:inline-block",
    b"<div id=\"divrplyfwdmsg\"",
    b"<div id=\"mail-editor-reference-message-container\"",
    b"<div class=\"moz-cite-prefix\"",
    b"<div class=\"moz-forward-container\"",
    b"<blockquote type=\"cite\"",
    b"<div class=\"yahoo_quoted\"",
];

/// Separators written as text inside HTML (Outlook's older reply header, Apple's forward): the
/// thread starts at the paragraph or div that holds them.
const HTML_TEXT_MARKERS: &[&[u8]] = &[
    b"-----original message-----",
    b"-------- original message --------",
    b"begin forwarded message:",
];

/// Outlook desktop's reply header: a div with a top border, found by its style.
const OUTLOOK_BORDERS: &[&[u8]] = &[b"border-top:solid #e1e1e1", b"border-top:solid #b5c4df"];

/// The insertion point in an HTML body (ASCII-compatible bytes).
pub fn in_html(body: &[u8]) -> Point {
    let lower = body.to_ascii_lowercase();
    let mut best: Option<usize> = None;
    let mut consider = |p: usize| best = Some(best.map_or(p, |b: usize| b.min(p)));
    for m in HTML_MARKERS {
        if let Some(p) = memchr::memmem::find(&lower, m) {
            consider(p);
        }
    }
    for m in OUTLOOK_BORDERS {
        if let Some(p) = memchr::memmem::find(&lower, m)
            && let Some(tag) = memchr::memrchr(b'<', &lower[..p])
        {
            consider(tag);
        }
    }
    for m in HTML_TEXT_MARKERS {
        if let Some(p) = memchr::memmem::find(&lower, m) {
            consider(enclosing_block(&lower, p));
        }
    }
    if let Some(offset) = best {
        return Point {
            offset,
            above_quote: true,
        };
    }
    let offset = memchr::memmem::rfind(&lower, b"</body")
        .or_else(|| memchr::memmem::rfind(&lower, b"</html"))
        .unwrap_or(body.len());
    Point {
        offset,
        above_quote: false,
    }
}

/// Where the `<p>` or `<div>` that holds position `p` starts (else the nearest tag before it).
fn enclosing_block(lower: &[u8], p: usize) -> usize {
    let before = &lower[..p];
    let block = [&b"<p"[..], b"<div"]
        .iter()
        .filter_map(|tag| {
            memchr::memmem::rfind_iter(before, tag).find(|&at| {
                matches!(
                    before.get(at + tag.len()),
                    Some(b' ' | b'>' | b'\t' | b'\r' | b'\n')
                )
            })
        })
        .max();
    block.or_else(|| memchr::memrchr(b'<', before)).unwrap_or(p)
}

/// Does `new_text` (the body above the insertion point) already carry the disclaimer?
pub fn text_has(new_text: &str, disclaimer: &str) -> bool {
    let needle = normalise(disclaimer);
    !needle.is_empty() && normalise(new_text).contains(&needle)
}

/// Does `new_html` already carry the disclaimer (its HTML snippet or its plain text)?
pub fn html_has(new_html: &str, snippet: &str, text: &str) -> bool {
    let hay = normalise(&html_text(new_html));
    [html_text(snippet), text.to_string()]
        .iter()
        .map(|n| normalise(n))
        .any(|n| !n.is_empty() && hay.contains(&n))
}

/// White space collapsed to single spaces, trimmed. Word by word rather than character by
/// character: it runs over every message's new text (the relay's hottest loop of its own).
fn normalise(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s
        .split(|c: char| c.is_whitespace() || c == '\u{a0}')
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// The text of some HTML: tags removed, common entities decoded.
pub fn html_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    decode_entities(&out)
}

fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let end = tail.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|e| {
            let name = &tail[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                "nbsp" => Some(' '),
                _ if name.starts_with("#x") || name.starts_with("#X") => {
                    u32::from_str_radix(&name[2..], 16)
                        .ok()
                        .and_then(char::from_u32)
                }
                _ if name.starts_with('#') => name[1..].parse().ok().and_then(char::from_u32),
                _ => None,
            }?;
            Some((c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &tail[e + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes text for HTML.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_collapses_every_kind_of_white_space_as_one_character_at_a_time_would() {
        // The definition, one character at a time (what `normalise` replaced).
        fn by_char(s: &str) -> String {
            let mut out = String::new();
            let mut space = false;
            for c in s.chars() {
                if c.is_whitespace() || c == '\u{a0}' {
                    space = !out.is_empty();
                } else {
                    if space {
                        out.push(' ');
                        space = false;
                    }
                    out.push(c);
                }
            }
            out
        }
        for s in [
            "",
            " \t\r\n ",
            "Confidential",
            "  This email\r\n  is confidential.\r\n\r\n",
            "a\u{a0}\u{a0}b\u{2003}c\u{3000}d\u{0b}e\u{0c}f\u{85}g",
            "Ysgol\u{a0}Gymraeg — e-bost cyfrinachol ",
            "\u{1c}x\u{1f} y",
        ] {
            assert_eq!(normalise(s), by_char(s), "{s:?}");
        }
        assert_eq!(normalise("  a \r\n\t b\u{a0} "), "a b");
    }

    fn at(body: &str) -> &str {
        &body[in_text(body.as_bytes()).offset..]
    }

    #[test]
    fn text_markers_of_each_client() {
        let outlook = "Thanks\r\n\r\n-----Original Message-----\r\nFrom: A\r\n";
        assert!(at(outlook).starts_with("-----Original"));
        let outlook2 = "Thanks\r\n\r\n________________________________\r\nFrom: A <a@x>\r\nSent: 23 November 2026 10:00\r\n";
        assert!(at(outlook2).starts_with("____"));
        let outlook3 = "Thanks\r\n\r\nFrom: A <a@x>\r\nSent: 23 November 2026 10:00\r\nTo: B\r\n";
        assert!(at(outlook3).starts_with("From: A"));
        let gmail = "Yes.\n\nOn Mon, 23 Nov 2026 at 10:00, Tom Baker <\nt.baker@example.org> wrote:\n\n> hello\n";
        assert!(at(gmail).starts_with("On Mon"));
        let fwd = "See below\n\n---------- Forwarded message ---------\nFrom: x\n";
        assert!(at(fwd).starts_with("-------"));
        let apple = "Fine\n\nSent from my iPhone\n\n> On 23 Nov 2026, at 10:00, Tom <t@x> wrote:\n> \n> hi\n";
        assert!(at(apple).starts_with("> On 23"));
        let tb = "OK\n\nOn 23/11/2026 10:00, Tom Baker wrote:\n> hi\n";
        let poem =
            "Dear parents,\nOn Friday, the Year 2 children wrote:\n   The sun is big\nMrs Baker\n";
        assert_eq!(
            in_text(poem.as_bytes()).offset,
            poem.len(),
            "their poem is the author's text"
        );
        assert!(at(tb).starts_with("On 23/11"));
        let apple_fwd = "FYI\n\nBegin forwarded message:\n\nFrom: x\n";
        assert!(at(apple_fwd).starts_with("Begin"));
    }

    #[test]
    fn inline_answers_and_plain_prose_are_not_quote_starts() {
        let inline = "> question one\nanswer one\n> question two\nanswer two\n";
        assert_eq!(in_text(inline.as_bytes()).offset, inline.len());
        let prose = "On Monday we go to the museum.\nPlease bring a packed lunch.\n";
        assert_eq!(in_text(prose.as_bytes()).offset, prose.len());
    }

    #[test]
    fn html_markers_and_the_end_of_the_body() {
        let gmail = "<div dir=\"ltr\">Yes</div><br><div class=\"gmail_quote gmail_quote_container\"><div class=\"gmail_attr\">On …</div>";
        assert!(gmail[in_html(gmail.as_bytes()).offset..].starts_with("<div class=\"gmail_quote"));
        let outlook = "<p>Hi</p><div style=\"border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm\"><p><b>From:</b>";
        assert!(outlook[in_html(outlook.as_bytes()).offset..].starts_with("<div style"));
        let old_outlook = "<p class=MsoNormal>Thanks</p><p class=MsoNormal><span style='font-size:10.0pt'>-----Original Message-----<br><b>From:</b> x</span></p>";
        assert!(
            old_outlook[in_html(old_outlook.as_bytes()).offset..]
                .starts_with("<p class=MsoNormal><span")
        );
        let plain = "<html><body><p>Hi</p></BODY></html>";
        assert!(plain[in_html(plain.as_bytes()).offset..].starts_with("</BODY>"));
        let bare = "<p>Hi</p>";
        assert_eq!(in_html(bare.as_bytes()).offset, bare.len());
    }

    #[test]
    fn a_body_of_many_quoted_lines_is_placed_in_linear_time() {
        // When each line looked ahead to the end, this body took minutes (a hostile message
        // could stall the relay); now it is one pass.
        let body = ">\r\n".repeat(200_000) + "x\r\n" + &"On 1 Jan 2026 wrote:\r\n".repeat(100_000);
        assert_eq!(in_text(body.as_bytes()).offset, body.len());
        assert!(unquoted_text(&body).starts_with("x\n"));
    }

    #[test]
    fn presence_ignores_wrapping_and_markup() {
        let d = "The views expressed are not necessarily those of Example Academy.";
        assert!(text_has(
            "Hi\n\nThe views expressed are not\nnecessarily those of Example Academy.\n",
            d
        ));
        assert!(!text_has("Hi\n", d));
        assert!(html_has(
            "<p>Hi</p><p style=\"x\">The views expressed are not necessarily those of Example&nbsp;Academy.</p>",
            "<p>The views expressed are not necessarily those of Example Academy.</p>",
            d
        ));
    }
}
