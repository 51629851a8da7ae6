//! Plain text and CSV: the charset sniffed (UTF-8 and UTF-16 byte order marks, valid UTF-8,
//! else windows-1252, what Excel on a school PC writes), CSV rows as lines of tab-separated
//! cells.

use super::{Contents, Writer};
use crate::policy::sensitive::limits::{Budget, Unscannable};

/// The text of `bytes` by its byte order mark, else UTF-8 when valid, else windows-1252.
pub(super) fn decode(bytes: &[u8]) -> String {
    if let Some((encoding, bom)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(bytes.get(bom..).unwrap_or_default());
        return text.into_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => encoding_rs::WINDOWS_1252
            .decode_without_bom_handling(bytes)
            .0
            .into_owned(),
    }
}

pub(super) fn open(location: &str, bytes: &[u8], out: &mut Contents) -> Result<(), Unscannable> {
    let mut w = Writer::new(out);
    w.push_str(&decode(bytes));
    w.finish(location, out);
    Ok(())
}

pub(super) fn open_csv(
    location: &str,
    bytes: &[u8],
    budget: &Budget,
    out: &mut Contents,
) -> Result<(), Unscannable> {
    let text = decode(bytes);
    let mut w = Writer::new(out);
    csv_rows(&text, budget, &mut w)?;
    w.finish(location, out);
    Ok(())
}

/// The delimiter: whichever of comma, semicolon and tab is most frequent on the first line.
fn delimiter(text: &str) -> char {
    let first = text.lines().next().unwrap_or("");
    [',', ';', '\t']
        .into_iter()
        .max_by_key(|d| (first.matches(*d).count(), *d == ','))
        .unwrap_or(',')
}

/// CSV (RFC 4180, leniently) to lines of tab-separated cells; quoted line breaks and tabs
/// inside a cell become spaces.
fn csv_rows(text: &str, budget: &Budget, w: &mut Writer) -> Result<(), Unscannable> {
    let delimiter = delimiter(text);
    let mut line = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut rows = 0u32;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    line.push('"');
                } else {
                    quoted = false;
                }
            }
            '"' => quoted = true,
            '\r' | '\n' | '\t' if quoted => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                line.push(' ');
            }
            c if c == delimiter && !quoted => line.push('\t'),
            '\t' => line.push(' '),
            c if quoted => line.push(c),
            '\r' | '\n' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                line.push('\n');
                if !w.push_str(&line) {
                    return Ok(());
                }
                line.clear();
                rows = rows.wrapping_add(1);
                if rows.is_multiple_of(4096) {
                    budget.check_time()?;
                }
            }
            c => line.push(c),
        }
    }
    if !line.is_empty() {
        line.push('\n');
        w.push_str(&line);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::sensitive::extract::tests::open;

    #[test]
    fn charsets_are_sniffed() {
        assert_eq!(decode(b"\xEF\xBB\xBFcaf\xC3\xA9"), "café");
        assert_eq!(decode(b"\xFF\xFEh\0i\0"), "hi");
        assert_eq!(decode(b"\xFE\xFF\0h\0i"), "hi");
        assert_eq!(decode(b"caf\xC3\xA9"), "café");
        assert_eq!(decode(b"\xA3100 caf\xE9"), "£100 café");
    }

    #[test]
    fn csv_rows_become_tab_separated_lines() {
        let csv = b"Name,UPN,Notes\r\n\"Lovelace, Ada\",A123456789012,\"said \"\"hi\"\"\nthen left\"\r\nTuring,,x\n";
        let out = open("list.csv", csv).unwrap();
        assert_eq!(
            out.texts[0].text,
            "Name\tUPN\tNotes\nLovelace, Ada\tA123456789012\tsaid \"hi\" then left\nTuring\t\tx\n"
        );
    }

    #[test]
    fn semicolon_csv_from_european_excel() {
        let out = open("list.csv", b"Name;DOB\nAda;10/12/2015").unwrap();
        assert_eq!(out.texts[0].text, "Name\tDOB\nAda\t10/12/2015\n");
    }

    #[test]
    fn windows_1252_text_reads() {
        let out = open("notes.txt", b"Fees \x80200 for Zo\xEB").unwrap();
        assert_eq!(out.texts[0].text, "Fees €200 for Zoë");
    }
}
