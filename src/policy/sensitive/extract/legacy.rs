//! Office 97–2003 files (OLE compound files): Excel workbooks through calamine, Word documents
//! through their piece table (the FIB's fcClx in the table stream), falling back to runs of
//! printable text when the piece table cannot be read.

use std::io::{Cursor, Read};

use calamine::{Data, Reader, Xls};

use super::{Contents, Writer, excel_date};
use crate::policy::sensitive::limits::{Budget, Unscannable};

pub(super) fn open(
    location: &str,
    bytes: &[u8],
    budget: &Budget,
    out: &mut Contents,
) -> Result<(), Unscannable> {
    let mut file = cfb::CompoundFile::open(Cursor::new(bytes))
        .map_err(|e| Unscannable::Corrupt(format!("not a readable Office 97-2003 file: {e}")))?;
    for name in ["/Workbook", "/Book"] {
        if !file.is_stream(name) {
            continue;
        }
        let book = stream(&mut file, name, bytes.len())?;
        // calamine builds every cell a sheet claims: held against the budget while it does.
        // Past the budget, as past calamine's sane sizes, the strings are read as runs.
        match largest_sheet(&book)
            .map(|cells| budget.hold(cells.saturating_mul(CELL_COST), "an Excel 97-2003 sheet"))
        {
            Some(Ok(_held)) => return workbook(location, bytes, budget, out),
            Some(Err(Unscannable::TooSlow(t))) => return Err(Unscannable::TooSlow(t)),
            _ => {}
        }
        // calamine would reserve memory for the cells a sheet claims, and aborting on a
        // failed allocation cannot be caught: read the strings as printable runs instead.
        out.notes.push(format!(
            "{location}: a workbook claiming more cells than it could hold, read as plain runs of text"
        ));
        let mut w = Writer::new(out);
        printable_runs(&book, &mut w);
        w.finish(location, out);
        return Ok(());
    }
    if file.is_stream("/WordDocument") {
        let word = stream(&mut file, "/WordDocument", bytes.len())?;
        let table = word
            .get(0x0A..0x0C)
            .map(|f| u16::from_le_bytes([f[0], f[1]]) & 0x0200 != 0)
            .map(|one| if one { "/1Table" } else { "/0Table" })
            .and_then(|name| stream(&mut file, name, bytes.len()).ok());
        let mut w = Writer::new(out);
        let by_pieces = table
            .as_deref()
            .and_then(|t| pieces(&word, t, budget, &mut w));
        if by_pieces.is_none() {
            w = Writer::new(out);
            printable_runs(&word, &mut w);
        }
        w.finish(location, out);
        return Ok(());
    }
    // Other OLE files (a Publisher file, an old PowerPoint, an MSG): no reader here.
    out.notes.push(format!(
        "{location}: an Office 97-2003 file of a kind whose text is not read"
    ));
    Ok(())
}

/// Most cells a sheet may claim (its Dimensions record) before calamine is not trusted with it.
const MAX_XLS_CELLS: u64 = 2_000_000;

/// What one cell costs calamine (its value, and a string's text on average).
const CELL_COST: u64 = std::mem::size_of::<Data>() as u64 + 8;

/// The most cells any sheet claims, when every Dimensions record (type 0x0200), found at any
/// offset so a sheet whose offset points into the middle of another record cannot hide one,
/// claims a size calamine can reserve for; `None` when one does not. The arithmetic mirrors
/// calamine 0.38's `parse_dimensions`.
fn largest_sheet(book: &[u8]) -> Option<u64> {
    let mut largest = 0u64;
    let u16_at = |at: usize| -> Option<u32> {
        Some(u32::from(u16::from_le_bytes(
            book.get(at..at + 2)?.try_into().ok()?,
        )))
    };
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(book.get(at..at + 4)?.try_into().ok()?))
    };
    for at in memchr::memmem::find_iter(book, &[0x00, 0x02]) {
        let Some(len) = u16_at(at + 2) else {
            continue;
        };
        let d = at + 4;
        let dims = match len {
            10 => (|| Some((u16_at(d)?, u16_at(d + 2)?, u16_at(d + 4)?, u16_at(d + 6)?)))(),
            14 | 16 => (|| Some((u32_at(d)?, u32_at(d + 4)?, u16_at(d + 8)?, u16_at(d + 10)?)))(),
            _ => continue,
        };
        let Some((rf, rl, mut cf, cl)) = dims else {
            continue;
        };
        if 0xFF < cf || cl < cf {
            cf = 0;
        }
        let (end_row, end_col) = if rl >= 1 && cl >= 1 {
            (rl - 1, cl - 1)
        } else {
            (rf, cf)
        };
        let rows = i64::from(end_row) - i64::from(rf) + 1;
        let cols = i64::from(end_col) - i64::from(cf) + 1;
        let cells = (rows as u64).saturating_mul(cols as u64);
        if rows <= 0 || cols <= 0 || cells > MAX_XLS_CELLS {
            return None;
        }
        largest = largest.max(cells);
    }
    Some(largest)
}

/// A stream's bytes; its size is bounded by the file's own.
fn stream(
    file: &mut cfb::CompoundFile<Cursor<&[u8]>>,
    name: &str,
    limit: usize,
) -> Result<Vec<u8>, Unscannable> {
    let mut s = file
        .open_stream(name)
        .map_err(|e| Unscannable::Corrupt(format!("an unreadable {name} stream: {e}")))?;
    let mut bytes = Vec::new();
    s.by_ref()
        .take(limit as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| Unscannable::Corrupt(format!("an unreadable {name} stream: {e}")))?;
    Ok(bytes)
}

/// An Excel 97–2003 workbook, each sheet a section. calamine may panic on hostile input: a
/// panic is a damaged file.
fn workbook(
    location: &str,
    bytes: &[u8],
    budget: &Budget,
    out: &mut Contents,
) -> Result<(), Unscannable> {
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
        || -> Result<Vec<(String, String)>, String> {
            let mut xls = Xls::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
            let date1904 = xls.has_1904_epoch();
            let mut sheets = Vec::new();
            for name in xls.sheet_names() {
                if budget.check_time().is_err() {
                    break;
                }
                let range = xls.worksheet_range(&name).map_err(|e| e.to_string())?;
                let mut text = String::new();
                for row in range.rows() {
                    let mut line = String::new();
                    for (i, cell) in row.iter().enumerate() {
                        if i > 0 {
                            line.push('\t');
                        }
                        write_cell(cell, date1904, &mut line);
                    }
                    text.push_str(line.trim_end_matches('\t'));
                    text.push('\n');
                    if text.len() > super::MAX_TEXT {
                        break;
                    }
                }
                sheets.push((name, text));
            }
            Ok(sheets)
        },
    ));
    budget.check_time()?;
    let sheets = match read {
        Ok(Ok(sheets)) => sheets,
        Ok(Err(e)) => return Err(Unscannable::Corrupt(format!("an unreadable workbook: {e}"))),
        Err(_) => return Err(Unscannable::Corrupt("an unreadable workbook".into())),
    };
    let mut w = Writer::new(out);
    for (name, text) in sheets {
        w.section(Some(name));
        if !w.push_str(&text) {
            break;
        }
    }
    w.finish(location, out);
    Ok(())
}

fn write_cell(cell: &Data, date1904: bool, line: &mut String) {
    use std::fmt::Write;
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    match cell {
        Data::Empty => {}
        Data::String(s) => line.push_str(&clean(s)),
        Data::Int(i) => {
            let _ = write!(line, "{i}");
        }
        Data::Float(f) => {
            let _ = write!(line, "{f}");
        }
        Data::Bool(b) => line.push_str(if *b { "TRUE" } else { "FALSE" }),
        Data::DateTime(d) => match excel_date(d.as_f64(), date1904) {
            Some(date) if d.is_datetime() => line.push_str(&date),
            _ => {
                let _ = write!(line, "{}", d.as_f64());
            }
        },
        Data::DateTimeIso(s) => line.push_str(&super::iso_date(s).unwrap_or_else(|| clean(s))),
        Data::DurationIso(s) => line.push_str(&clean(s)),
        Data::Error(e) => {
            let _ = write!(line, "{e}");
        }
    }
}

/// The text of a Word 97–2003 document from its piece table (MS-DOC 2.8.35: the Clx at fcClx
/// in the table stream, a PlcPcd of character positions and pieces). None when it cannot be
/// read, so the caller falls back to printable runs.
fn pieces(word: &[u8], table: &[u8], budget: &Budget, w: &mut Writer) -> Option<()> {
    let le32 = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(
            b.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    };
    let magic = u16::from_le_bytes(word.get(0..2)?.try_into().ok()?);
    if magic != 0xA5EC {
        return None;
    }
    let fc_clx = le32(word, 0x01A2)? as usize;
    let lcb_clx = le32(word, 0x01A6)? as usize;
    let clx = table.get(fc_clx..fc_clx.checked_add(lcb_clx)?)?;
    // Skip the Prc entries (property modifiers) to the Pcdt.
    let mut at = 0usize;
    while *clx.get(at)? == 0x01 {
        let size = u16::from_le_bytes(clx.get(at + 1..at + 3)?.try_into().ok()?);
        at = at.checked_add(3 + usize::from(size))?;
    }
    if *clx.get(at)? != 0x02 {
        return None;
    }
    let lcb = le32(clx, at + 1)? as usize;
    let plc = clx.get(at + 5..(at + 5).checked_add(lcb)?)?;
    let n = lcb.checked_sub(4)? / 12;
    let mut text = String::new();
    for i in 0..n {
        if i % 256 == 0 && budget.check_time().is_err() {
            return None;
        }
        let cp_start = le32(plc, i * 4)?;
        let cp_end = le32(plc, (i + 1) * 4)?;
        let count = cp_end.checked_sub(cp_start)? as usize;
        let pcd = plc.get((n + 1) * 4 + i * 8..(n + 1) * 4 + i * 8 + 8)?;
        let fc = le32(pcd, 2)?;
        let compressed = fc & 0x4000_0000 != 0;
        let fc = (fc & 0x3FFF_FFFF) as usize;
        if compressed {
            let start = fc / 2;
            let bytes = word.get(start..start.checked_add(count)?)?;
            let (s, _, _) = encoding_rs::WINDOWS_1252.decode(bytes);
            text.push_str(&s);
        } else {
            let bytes = word.get(fc..fc.checked_add(count.checked_mul(2)?)?)?;
            let units = bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]));
            text.extend(char::decode_utf16(units).map(|c| c.unwrap_or('\u{FFFD}')));
        }
        if text.len() > super::MAX_TEXT {
            break;
        }
    }
    write_word_text(&text, w);
    Some(())
}

/// Word's special characters: paragraph and cell marks, field codes (between 0x13 and 0x14,
/// dropped: only a field's result is shown), breaks.
fn write_word_text(text: &str, w: &mut Writer) {
    let mut field_code = 0usize;
    let mut line = String::new();
    for c in text.chars() {
        match c {
            '\u{13}' => field_code += 1,
            '\u{14}' => field_code = field_code.saturating_sub(1),
            '\u{15}' => {}
            _ if field_code > 0 => {}
            // A cell mark ends a cell; two in a row end a table row.
            '\u{07}' => {
                if line.ends_with('\t') {
                    line.pop();
                    line.push('\n');
                } else {
                    line.push('\t');
                }
            }
            '\r' | '\u{0B}' | '\u{0C}' => line.push('\n'),
            c if c.is_control() && c != '\t' => {}
            c => line.push(c),
        }
        if line.len() > 64 << 10 && !w.push_str(&std::mem::take(&mut line)) {
            return;
        }
    }
    w.push_str(&line);
}

/// Runs of at least four printable characters, 8-bit and UTF-16LE: the last resort for a Word
/// file whose piece table cannot be read.
fn printable_runs(bytes: &[u8], w: &mut Writer) {
    let printable = |c: u16| (0x20..0x7F).contains(&c) || (0xA0..0x250).contains(&c);
    let mut run = String::new();
    let flush = |run: &mut String, w: &mut Writer| -> bool {
        let ok = if run.chars().count() >= 4 {
            w.push_str(run) && w.push('\n')
        } else {
            true
        };
        run.clear();
        ok
    };
    for &b in bytes {
        if printable(u16::from(b)) && b < 0x7F {
            run.push(char::from(b));
        } else if !flush(&mut run, w) {
            return;
        }
    }
    if !flush(&mut run, w) {
        return;
    }
    for offset in [0usize, 1] {
        let units = bytes
            .get(offset..)
            .unwrap_or_default()
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]));
        for u in units {
            match char::from_u32(u32::from(u)) {
                Some(c) if printable(u) => run.push(c),
                _ => {
                    if !flush(&mut run, w) {
                        return;
                    }
                }
            }
        }
        if !flush(&mut run, w) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::sensitive::extract::tests::{all_text, open};

    #[test]
    fn an_excel_97_workbook_reads_with_dates() {
        let out = open(
            "old.xls",
            include_bytes!("../../../../fixtures/extract/class.xls"),
        )
        .unwrap();
        let text = all_text(&out);
        assert!(text.contains("Name\tUPN\tDOB"), "{text}");
        assert!(
            text.contains("Ada Lovelace\tA123456789012\t10/12/2015"),
            "{text}"
        );
        assert_eq!(out.texts[0].location, "old.xls › Pupils");
    }

    #[test]
    fn a_workbook_claiming_billions_of_cells_is_not_given_to_calamine() {
        let mut book = vec![0x09, 0x08, 0x02, 0x00, 0, 0];
        // Dimensions: rows 0..4,000,000,000, columns 0..200.
        book.extend_from_slice(&[0x00, 0x02, 14, 0]);
        book.extend_from_slice(&0u32.to_le_bytes());
        book.extend_from_slice(&4_000_000_000u32.to_le_bytes());
        book.extend_from_slice(&[0, 0, 200, 0, 0, 0]);
        assert!(super::largest_sheet(&book).is_none());
        // A start row past the end row wraps round in calamine: refused too.
        let mut wrapped = vec![0x00, 0x02, 14, 0];
        wrapped.extend_from_slice(&10u32.to_le_bytes());
        wrapped.extend_from_slice(&2u32.to_le_bytes());
        wrapped.extend_from_slice(&[0, 0, 5, 0, 0, 0]);
        assert!(super::largest_sheet(&wrapped).is_none());
        let real = include_bytes!("../../../../fixtures/extract/class.xls");
        assert!(super::largest_sheet(real).is_some());
    }

    #[test]
    fn a_damaged_ole_file_is_corrupt() {
        let mut bytes = include_bytes!("../../../../fixtures/extract/class.xls").to_vec();
        bytes.truncate(700);
        assert!(matches!(
            open("old.xls", &bytes),
            Err(crate::policy::sensitive::limits::Unscannable::Corrupt(_))
        ));
    }

    /// A Word 97 file reduced to what the reader uses: a FIB with fcClx/lcbClx, the text in
    /// two pieces (one 8-bit, one UTF-16), and a 1Table stream holding the piece table.
    fn word_97(first: &str, second: &str) -> Vec<u8> {
        use std::io::Write;
        let mut word = vec![0u8; 0x800];
        word[0..2].copy_from_slice(&0xA5ECu16.to_le_bytes());
        word[0x0A..0x0C].copy_from_slice(&0x0200u16.to_le_bytes());
        let first_at = word.len();
        word.extend_from_slice(first.as_bytes());
        let second_at = word.len();
        for u in second.encode_utf16() {
            word.extend_from_slice(&u.to_le_bytes());
        }
        let n1 = first.len() as u32;
        let n2 = second.encode_utf16().count() as u32;
        let mut plc = Vec::new();
        for cp in [0, n1, n1 + n2] {
            plc.extend_from_slice(&cp.to_le_bytes());
        }
        for fc in [((first_at as u32) * 2) | 0x4000_0000, second_at as u32] {
            plc.extend_from_slice(&0u16.to_le_bytes());
            plc.extend_from_slice(&fc.to_le_bytes());
            plc.extend_from_slice(&0u16.to_le_bytes());
        }
        let mut table = vec![0u8; 16];
        let fc_clx = table.len() as u32;
        table.extend_from_slice(&[0x01, 0x02, 0x00, 0xAA, 0xBB]);
        table.push(0x02);
        table.extend_from_slice(&(plc.len() as u32).to_le_bytes());
        table.extend_from_slice(&plc);
        let lcb_clx = table.len() as u32 - fc_clx;
        word[0x01A2..0x01A6].copy_from_slice(&fc_clx.to_le_bytes());
        word[0x01A6..0x01AA].copy_from_slice(&lcb_clx.to_le_bytes());
        let mut cfb = cfb::CompoundFile::create(std::io::Cursor::new(Vec::new())).unwrap();
        cfb.create_stream("/WordDocument")
            .unwrap()
            .write_all(&word)
            .unwrap();
        cfb.create_stream("/1Table")
            .unwrap()
            .write_all(&table)
            .unwrap();
        cfb.flush().unwrap();
        cfb.into_inner().into_inner()
    }

    #[test]
    fn a_word_97_document_reads_through_its_piece_table() {
        let doc = word_97(
            "Pupil list\rName\x07UPN\x07\x07",
            "Zoë Smith\x07A123456789012\x07\x07",
        );
        let out = open("list.doc", &doc).unwrap();
        assert_eq!(
            all_text(&out),
            "Pupil list\nName\tUPN\nZoë Smith\tA123456789012\n"
        );
    }

    #[test]
    fn a_word_97_document_without_a_piece_table_falls_back_to_printable_runs() {
        let mut doc = word_97("Pupil list for Year 7\r", "");
        // Point fcClx past the end of the table stream.
        let at = memchr::memmem::find(&doc, &[0xEC, 0xA5]).unwrap();
        doc[at + 0x01A2..at + 0x01A6].copy_from_slice(&0xFFFF_0000u32.to_le_bytes());
        let out = open("list.doc", &doc).unwrap();
        assert!(all_text(&out).contains("Pupil list for Year 7"));
    }

    #[test]
    fn word_marks_become_lines_and_cells() {
        let mut w = super::Writer::new(&super::Contents::default());
        super::write_word_text(
            "Report\rName\u{07}UPN\u{07}\u{07}Ada\u{07}A1\u{07}\u{07}\u{13} PAGE \u{14}1\u{15}\r",
            &mut w,
        );
        let mut out = super::Contents::default();
        w.finish("a.doc", &mut out);
        assert_eq!(out.texts[0].text, "Report\nName\tUPN\nAda\tA1\n1\n");
    }

    #[test]
    fn printable_runs_find_8_bit_and_utf16_text() {
        let mut bytes = vec![0u8, 1, 2];
        bytes.extend_from_slice(b"Ada Lovelace");
        bytes.extend_from_slice(&[0xFF, 0xFE, 3]);
        for u in "Alan Turing".encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        let mut w = super::Writer::new(&super::Contents::default());
        super::printable_runs(&bytes, &mut w);
        let mut out = super::Contents::default();
        w.finish("a.doc", &mut out);
        assert!(out.texts[0].text.contains("Ada Lovelace"));
        assert!(out.texts[0].text.contains("Alan Turing"));
    }
}
