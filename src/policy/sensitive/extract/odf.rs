//! OpenDocument files (LibreOffice's .odt, .ods, .odp): paragraphs and headings as lines, table
//! rows as tab-separated lines, date cells as dd/mm/yyyy; headers and footers from styles.xml.

use super::archive::{Zip, read_entry, with_entry};
use super::xml::{Ev, Flow, attr, name, walk};
use super::{Contents, Writer, iso_date};
use crate::policy::sensitive::limits::{Budget, Unscannable};

/// Most empty cells written for one repeated cell: a row of 16,384 repeated blanks is layout,
/// not data.
const MAX_REPEAT: usize = 256;

/// The ODF media type when the `mimetype` entry names one.
pub(super) fn kind(zip: &mut Zip<'_>, budget: &Budget) -> Option<String> {
    let bytes = read_entry(zip, "mimetype", budget).ok().flatten()?;
    let kind = String::from_utf8(bytes.get(..200.min(bytes.len()))?.to_vec()).ok()?;
    let kind = kind.trim().to_string();
    kind.starts_with("application/vnd.oasis.opendocument.")
        .then_some(kind)
}

pub(super) fn open(
    location: &str,
    kind: &str,
    zip: &mut Zip<'_>,
    budget: &Budget,
    out: &mut Contents,
) -> Result<(), Unscannable> {
    let spreadsheet = kind.contains("spreadsheet");
    let mut w = Writer::new(out);
    if !with_entry(zip, "content.xml", |s, c| {
        part(s, c, budget, spreadsheet, &mut w)
    })? {
        return Err(Unscannable::Corrupt(
            "an OpenDocument file without content.xml".into(),
        ));
    }
    if !w.full() {
        w.section(None);
        with_entry(zip, "styles.xml", |s, c| part(s, c, budget, false, &mut w))?;
    }
    w.finish(location, out);
    Ok(())
}

/// One part's text. In a spreadsheet each table is a section named after its sheet.
fn part(
    source: &mut dyn std::io::Read,
    compressed: crate::policy::sensitive::limits::Compressed,
    budget: &Budget,
    spreadsheet: bool,
    w: &mut Writer,
) -> Result<(), Unscannable> {
    // Depth of paragraphs (text:p / text:h can nest through frames and notes).
    let mut in_paragraph = 0usize;
    // Cells seen in each open table row.
    let mut rows: Vec<usize> = Vec::new();
    // Inside a date cell its shown text is replaced by the date.
    let mut date_cell = false;
    let mut table_depth = 0usize;
    let mut copies = 0usize;
    walk(source, compressed, budget, |ev| {
        let more = match ev {
            Ev::Open(e) => match name(e) {
                b"table" => {
                    table_depth += 1;
                    if spreadsheet && table_depth == 1 {
                        w.section(attr(e, b"name"));
                    }
                    true
                }
                b"p" | b"h" => {
                    in_paragraph += 1;
                    true
                }
                b"s" if in_paragraph > 0 && !date_cell => {
                    let n = attr(e, b"c").and_then(|c| c.parse().ok()).unwrap_or(1usize);
                    w.push_str(&" ".repeat(n.clamp(1, 64)))
                }
                b"tab" if in_paragraph > 0 && !date_cell => w.push('\t'),
                b"line-break" if in_paragraph > 0 && !date_cell => w.push(' '),
                b"table-row" => {
                    rows.push(0);
                    true
                }
                b"table-cell" | b"covered-table-cell" => {
                    let repeat = attr(e, b"number-columns-repeated")
                        .and_then(|r| r.parse::<usize>().ok())
                        .unwrap_or(1)
                        .clamp(1, MAX_REPEAT);
                    let mut ok = true;
                    if let Some(cells) = rows.last_mut() {
                        if *cells > 0 {
                            w.trim_spaces();
                            ok = w.push('\t');
                        }
                        // A repeated cell stands for `repeat` cells: its copies, written
                        // when it closes, are left empty.
                        copies = repeat - 1;
                        *cells += repeat;
                    }
                    date_cell = false;
                    if let Some(date) = attr(e, b"date-value").and_then(|d| iso_date(&d)) {
                        date_cell = true;
                        ok = ok && w.push_str(&date);
                    }
                    ok
                }
                _ => true,
            },
            Ev::Close(n) => match n {
                b"table" => {
                    table_depth = table_depth.saturating_sub(1);
                    true
                }
                b"p" | b"h" => {
                    in_paragraph = in_paragraph.saturating_sub(1);
                    if date_cell {
                        true
                    } else if rows.is_empty() {
                        w.push('\n')
                    } else {
                        w.push(' ')
                    }
                }
                b"table-cell" | b"covered-table-cell" => {
                    date_cell = false;
                    let mut ok = true;
                    while copies > 0 && ok {
                        ok = w.push('\t');
                        copies -= 1;
                    }
                    ok
                }
                b"table-row" => {
                    rows.pop();
                    w.trim_spaces();
                    w.trim_tabs();
                    if w.ends_with_line_break() && rows.is_empty() {
                        // An empty row (often repeated a million times): nothing to write.
                        true
                    } else {
                        w.push(if rows.is_empty() { '\n' } else { ' ' })
                    }
                }
                _ => true,
            },
            Ev::Text(t) if in_paragraph > 0 && !date_cell => w.push_str(t),
            Ev::Text(_) => true,
        };
        if more { Flow::Go } else { Flow::Stop }
    })
}

#[cfg(test)]
mod tests {
    use crate::policy::sensitive::extract::tests::{all_text, open};

    #[test]
    fn a_text_document_reads_as_lines_and_rows() {
        let out = open(
            "letter.odt",
            include_bytes!("../../../../fixtures/extract/letter.odt"),
        )
        .unwrap();
        let text = all_text(&out);
        assert!(text.contains("Dear parents\n"), "{text}");
        assert!(text.contains("Name\tUPN\n"), "{text}");
        assert!(text.contains("Ada Lovelace\tA123456789012\n"), "{text}");
    }

    #[test]
    fn a_spreadsheet_reads_as_sheets_with_dates() {
        let out = open(
            "class.ods",
            include_bytes!("../../../../fixtures/extract/class.ods"),
        )
        .unwrap();
        let sheet = out
            .texts
            .iter()
            .find(|t| t.location == "class.ods › Pupils")
            .expect("a Pupils sheet");
        let lines: Vec<_> = sheet.text.lines().collect();
        assert_eq!(lines[0], "Name\tUPN\tDOB\tNotes");
        assert_eq!(lines[1], "Ada Lovelace\tA123456789012\t10/12/2015");
        assert_eq!(lines[2], "Alan Turing\t\t23/06/2014\tSEN support");
    }
}
