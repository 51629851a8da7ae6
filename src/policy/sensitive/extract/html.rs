//! HTML: tags stripped in one pass (script and style dropped, block tags and `<br>`/`<tr>` as
//! line breaks, `<td>`/`<th>` as tabs), entities decoded, including numeric ones.

use super::{Contents, Writer};
use crate::policy::sensitive::limits::{Budget, Unscannable};

pub(super) fn open(
    location: &str,
    bytes: &[u8],
    budget: &Budget,
    out: &mut Contents,
) -> Result<(), Unscannable> {
    let html = super::text::decode(bytes);
    budget.check_time()?;
    let mut w = Writer::new(out);
    w.push_str(&strip(&html));
    w.finish(location, out);
    Ok(())
}

/// Tags that break a line.
fn is_block(tag: &str) -> bool {
    matches!(
        tag,
        "p" | "div"
            | "br"
            | "tr"
            | "li"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "table"
            | "ul"
            | "ol"
            | "title"
            | "section"
            | "article"
            | "header"
            | "footer"
            | "blockquote"
            | "pre"
            | "hr"
            | "dt"
            | "dd"
            | "caption"
            | "thead"
            | "tbody"
    )
}

/// The text of an HTML document; linear in its length.
pub(crate) fn strip(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    let mut space = false;
    while !rest.is_empty() {
        let Some(next) = rest.find(['<', '&']) else {
            push_text(&mut out, rest, &mut space);
            break;
        };
        let (text, from) = rest.split_at(next);
        push_text(&mut out, text, &mut space);
        if from.starts_with('&') {
            let end = from.get(1..).and_then(|f| {
                f.find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
                    .filter(|&e| e > 0 && e < 12 && f.get(e..).is_some_and(|r| r.starts_with(';')))
            });
            match end.and_then(|e| entity(from.get(1..1 + e).unwrap_or("")).map(|c| (e, c))) {
                Some((e, c)) => {
                    push_text(&mut out, c.encode_utf8(&mut [0; 4]), &mut space);
                    rest = from.get(e + 2..).unwrap_or("");
                }
                None => {
                    push_text(&mut out, "&", &mut space);
                    rest = from.get(1..).unwrap_or("");
                }
            }
            continue;
        }
        if let Some(comment) = from.strip_prefix("<!--") {
            rest = comment
                .find("-->")
                .map_or("", |e| comment.get(e + 3..).unwrap_or(""));
            continue;
        }
        let Some(end) = from.find('>') else {
            break;
        };
        let tag = from.get(1..end).unwrap_or("");
        rest = from.get(end + 1..).unwrap_or("");
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if !closing && (name == "script" || name == "style") {
            let close = format!("</{name}");
            rest = find_ignoring_case(rest, &close).map_or("", |e| rest.get(e..).unwrap_or(""));
            continue;
        }
        if name == "td" || name == "th" {
            if !closing && !out.is_empty() && !out.ends_with('\n') {
                trim_space(&mut out);
                out.push('\t');
            }
            space = false;
        } else if is_block(&name) {
            trim_space(&mut out);
            if !out.is_empty() && !out.ends_with('\n') || name == "br" {
                out.push('\n');
            }
            space = false;
        }
    }
    out
}

fn trim_space(out: &mut String) {
    while out.ends_with(' ') {
        out.pop();
    }
}

/// Adds text with runs of white space collapsed to one space.
fn push_text(out: &mut String, text: &str, space: &mut bool) {
    for c in text.chars() {
        if c.is_whitespace() && c != '\u{A0}' {
            *space = true;
        } else {
            if *space && !out.is_empty() && !out.ends_with(['\n', '\t']) {
                out.push(' ');
            }
            *space = false;
            out.push(if c == '\u{A0}' { ' ' } else { c });
        }
    }
}

/// Where `needle` (lower-case ASCII) first occurs in `hay`, ignoring ASCII case.
fn find_ignoring_case(hay: &str, needle: &str) -> Option<usize> {
    let n = needle.len();
    hay.as_bytes()
        .windows(n)
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

fn entity(name: &str) -> Option<char> {
    if let Some(c) = super::xml::entity(name) {
        return Some(c);
    }
    Some(match name {
        "nbsp" => ' ',
        "pound" => '£',
        "euro" => '€',
        "copy" => '©',
        "reg" => '®',
        "ndash" => '–',
        "mdash" => '—',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "hellip" => '…',
        "bull" => '•',
        "middot" => '·',
        "eacute" => 'é',
        "egrave" => 'è',
        "uuml" => 'ü',
        "ouml" => 'ö',
        "auml" => 'ä',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_go_tables_stay_in_rows() {
        let html = "<html><head><title>List</title><style>td{color:red}</style>\
            <script>var x = '<td>no</td>';</script></head><body><!-- hidden -->\
            <p>Pupils &amp; staff&nbsp;list</p><table><tr><th>Name</th><th>UPN</th></tr>\
            <tr><td> Ada  Lovelace </td><td>A123456789012</td></tr></table>\
            Fees &#163;5 &#x20AC;3 &unknown; a<b done</body></html>";
        assert_eq!(
            strip(html),
            "List\nPupils & staff list\nName\tUPN\nAda Lovelace\tA123456789012\nFees £5 €3 &unknown; a"
        );
    }

    #[test]
    fn script_is_dropped_whatever_its_case() {
        assert_eq!(strip("a<SCRIPT>secret</SCRIPT>b"), "ab");
    }

    #[test]
    fn a_long_run_of_angle_brackets_is_linear() {
        let html = "<".repeat(200_000);
        let started = std::time::Instant::now();
        let _ = strip(&html);
        let html = "&".repeat(200_000);
        let _ = strip(&html);
        assert!(started.elapsed() < crate::policy::sensitive::extract::tests::quickly());
    }
}
