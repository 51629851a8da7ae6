//! RTF: a small stripper. Control words and destinations that hold no text (font and colour
//! tables, `\*\…` groups, pictures) are skipped; `\'hh` is read in the document's ANSI code
//! page, `\uN` as Unicode; `\par`, `\line`, `\row` break lines and `\cell`, `\tab` are tabs.
//! Groups are tracked on a bounded stack: a file nested a million deep is read in one pass.

use super::{Contents, Writer};
use crate::policy::sensitive::limits::{Budget, Unscannable};

/// Deepest group whose state is kept; deeper groups share their parent's state.
const MAX_DEPTH: usize = 256;

/// Destinations without text for the reader.
fn skipped(word: &str) -> bool {
    matches!(
        word,
        "fonttbl"
            | "colortbl"
            | "stylesheet"
            | "info"
            | "pict"
            | "object"
            | "objdata"
            | "themedata"
            | "colorschememapping"
            | "latentstyles"
            | "datastore"
            | "xmlnstbl"
            | "listtable"
            | "listoverridetable"
            | "rsidtbl"
            | "generator"
            | "filetbl"
            | "revtbl"
            | "pgdsctbl"
            | "fldinst"
            | "shppict"
            | "nonshppict"
            | "bkmkstart"
            | "bkmkend"
    )
}

#[derive(Clone, Copy)]
struct Group {
    skip: bool,
    /// Characters to skip after `\uN` (`\ucN`).
    uc: u32,
}

pub(super) fn open(
    location: &str,
    bytes: &[u8],
    budget: &Budget,
    out: &mut Contents,
) -> Result<(), Unscannable> {
    let mut w = Writer::new(out);
    strip(bytes, budget, &mut w)?;
    w.finish(location, out);
    Ok(())
}

fn strip(bytes: &[u8], budget: &Budget, w: &mut Writer) -> Result<(), Unscannable> {
    let mut stack: Vec<Group> = Vec::new();
    let mut deeper = 0usize;
    let mut group = Group { skip: false, uc: 1 };
    let mut codepage: &'static encoding_rs::Encoding = encoding_rs::WINDOWS_1252;
    // Bytes of \'hh escapes waiting to be decoded together (double-byte code pages).
    let mut pending: Vec<u8> = Vec::new();
    let mut text = String::new();
    // Fallback characters still to skip after a \uN.
    let mut to_skip = 0u32;
    let mut i = 0usize;
    let mut steps = 0u32;
    macro_rules! flush {
        () => {
            if !pending.is_empty() {
                text.push_str(&codepage.decode_without_bom_handling(&pending).0);
                pending.clear();
            }
        };
    }
    while let Some(&b) = bytes.get(i) {
        steps = steps.wrapping_add(1);
        if steps.is_multiple_of(1 << 16) {
            budget.check_time()?;
            if !w.push_str(&std::mem::take(&mut text)) {
                return Ok(());
            }
        }
        match b {
            b'{' => {
                flush!();
                if stack.len() < MAX_DEPTH {
                    stack.push(group);
                } else {
                    deeper += 1;
                }
                i += 1;
            }
            b'}' => {
                flush!();
                if deeper > 0 {
                    deeper -= 1;
                } else if let Some(g) = stack.pop() {
                    group = g;
                }
                to_skip = 0;
                i += 1;
            }
            b'\\' => {
                let next = bytes.get(i + 1).copied().unwrap_or(b' ');
                if next.is_ascii_alphabetic() {
                    let start = i + 1;
                    let mut j = start;
                    while bytes.get(j).is_some_and(u8::is_ascii_alphabetic) && j - start < 32 {
                        j += 1;
                    }
                    let word =
                        std::str::from_utf8(bytes.get(start..j).unwrap_or_default()).unwrap_or("");
                    let num_start = j;
                    if bytes.get(j) == Some(&b'-') {
                        j += 1;
                    }
                    while bytes.get(j).is_some_and(u8::is_ascii_digit) && j - num_start < 11 {
                        j += 1;
                    }
                    let param: Option<i64> =
                        std::str::from_utf8(bytes.get(num_start..j).unwrap_or_default())
                            .ok()
                            .and_then(|p| p.parse().ok());
                    if bytes.get(j) == Some(&b' ') {
                        j += 1;
                    }
                    i = j;
                    if word != "u" && to_skip > 0 {
                        // A control word counts as one fallback character.
                        to_skip -= 1;
                        continue;
                    }
                    if word == "bin" {
                        // Raw binary data (a picture): skipped whole, never read as text.
                        let n = usize::try_from(param.unwrap_or(0).max(0)).unwrap_or(usize::MAX);
                        i = i.saturating_add(n);
                        continue;
                    }
                    if skipped(word) {
                        group.skip = true;
                        continue;
                    }
                    if group.skip {
                        continue;
                    }
                    match word {
                        "par" | "line" | "sect" | "page" | "row" => {
                            flush!();
                            if word == "row" && text.ends_with('\t') {
                                text.pop();
                            }
                            text.push('\n');
                        }
                        "tab" | "cell" => {
                            flush!();
                            text.push('\t');
                        }
                        "ansicpg" => {
                            if let Some(e) = param.and_then(|p| {
                                encoding_rs::Encoding::for_label(format!("windows-{p}").as_bytes())
                                    .or_else(|| {
                                        encoding_rs::Encoding::for_label(
                                            format!("cp{p}").as_bytes(),
                                        )
                                    })
                            }) {
                                codepage = e;
                            }
                        }
                        "uc" => group.uc = param.unwrap_or(1).clamp(0, 8) as u32,
                        "u" => {
                            flush!();
                            let code = param.unwrap_or(0);
                            let code = if code < 0 { code + 65_536 } else { code };
                            if let Some(c) = u32::try_from(code).ok().and_then(char::from_u32) {
                                text.push(c);
                            }
                            to_skip = group.uc;
                        }
                        "emdash" => text.push('—'),
                        "endash" => text.push('–'),
                        "lquote" => text.push('‘'),
                        "rquote" => text.push('’'),
                        "ldblquote" => text.push('“'),
                        "rdblquote" => text.push('”'),
                        "bullet" => text.push('•'),
                        _ => {}
                    }
                    continue;
                }
                match next {
                    b'\'' => {
                        let hex = bytes.get(i + 2..i + 4).unwrap_or_default();
                        i += 4;
                        if to_skip > 0 {
                            to_skip -= 1;
                            continue;
                        }
                        if !group.skip
                            && let Some(v) = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|h| u8::from_str_radix(h, 16).ok())
                        {
                            pending.push(v);
                        }
                    }
                    b'*' => {
                        group.skip = true;
                        i += 2;
                    }
                    b'\r' | b'\n' => {
                        if !group.skip {
                            flush!();
                            text.push('\n');
                        }
                        i += 2;
                    }
                    b'~' => {
                        if !group.skip {
                            flush!();
                            text.push(' ');
                        }
                        i += 2;
                    }
                    b'\\' | b'{' | b'}' => {
                        if to_skip > 0 {
                            to_skip -= 1;
                        } else if !group.skip {
                            flush!();
                            text.push(char::from(next));
                        }
                        i += 2;
                    }
                    _ => i += 2,
                }
            }
            b'\r' | b'\n' => i += 1,
            _ => {
                i += 1;
                if to_skip > 0 {
                    to_skip -= 1;
                    continue;
                }
                if !group.skip {
                    flush!();
                    // RTF text is 7-bit; anything else is read in the code page.
                    if b.is_ascii() {
                        text.push(char::from(b));
                    } else {
                        pending.push(b);
                    }
                }
            }
        }
    }
    flush!();
    w.push_str(&text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::policy::sensitive::extract::tests::open;

    #[test]
    fn rtf_reads_as_text_with_rows_and_code_page() {
        let rtf = br"{\rtf1\ansi\ansicpg1252\deff0{\fonttbl{\f0 Calibri;}}{\colortbl;\red0\green0\blue0;}{\*\generator Riched20;}\pard Pupil list\par
{\*\userprops secret}Fees \'a35 for Zo\'eb\par
\trowd Name\cell UPN\cell\row Ada\cell A123456789012\cell\row
Caf\u233?s \{ok\}\par}";
        let out = open("list.rtf", rtf).unwrap();
        assert_eq!(
            out.texts[0].text,
            "Pupil list\nFees £5 for Zoë\nName\tUPN\nAda\tA123456789012\nCafés {ok}\n"
        );
    }

    #[test]
    fn binary_data_is_skipped() {
        let mut rtf = b"{\\rtf1 before {\\*\\blipuid x}{\\pict\\bin6 ".to_vec();
        rtf.extend_from_slice(b"}{\\par");
        rtf.extend_from_slice(b"} after}");
        let out = open("pic.rtf", &rtf).unwrap();
        assert_eq!(out.texts[0].text, "before  after");
    }

    #[test]
    fn deep_nesting_is_read_in_one_pass() {
        let mut rtf = b"{\\rtf1 ".to_vec();
        rtf.extend(std::iter::repeat_n(b'{', 1_000_000));
        rtf.extend_from_slice(b"deep text");
        rtf.extend(std::iter::repeat_n(b'}', 1_000_000));
        rtf.push(b'}');
        let started = std::time::Instant::now();
        let out = open("deep.rtf", &rtf).unwrap();
        println!("elapsed: {:?}", started.elapsed());
        assert!(started.elapsed() < crate::policy::sensitive::extract::tests::quickly());
        assert_eq!(out.texts[0].text, "deep text");
    }
}
