//! Word, Excel and PowerPoint files of Office 2007 and later (OOXML): the text of documents,
//! sheets and slides, and the sensitivity labels Microsoft Purview writes into them.
//!
//! Each part is streamed through the budget; a sheet is written row by row (cells separated by
//! tabs, empty cells kept so columns line up with the header row), with date cells written
//! dd/mm/yyyy as the school reads them.

use std::collections::HashMap;

use super::archive::{Zip, names, read_entry, with_entry};
use super::xml::{Ev, Flow, attr, name, walk};
use super::{Contents, Writer, excel_date, iso_date};
use crate::policy::sensitive::limits::{Budget, Unscannable};

#[path = "sheet.rs"]
mod sheet;

/// An OOXML package: `[Content_Types].xml` and Word, Excel or PowerPoint parts.
pub(super) fn is_ooxml(zip: &Zip<'_>) -> bool {
    zip.index_for_name("[Content_Types].xml").is_some()
        && zip
            .file_names()
            .filter_map(Result::ok)
            .any(|n| n.starts_with("word/") || n.starts_with("xl/") || n.starts_with("ppt/"))
}

pub(super) fn open(
    location: &str,
    zip: &mut Zip<'_>,
    budget: &Budget,
    out: &mut Contents,
) -> Result<(), Unscannable> {
    labels(zip, budget, out)?;
    let names = names(zip);
    let mut w = Writer::new(out);
    if names.iter().any(|n| n == "xl/workbook.xml") {
        workbook(zip, &names, budget, &mut w)?;
    } else if names.iter().any(|n| n.starts_with("ppt/slides/")) {
        presentation(zip, &names, budget, &mut w)?;
    } else {
        document(zip, &names, budget, &mut w)?;
    }
    w.finish(location, out);
    Ok(())
}

/// Word: the body, then headers, footers, footnotes, endnotes and comments.
fn document(
    zip: &mut Zip<'_>,
    names: &[String],
    budget: &Budget,
    w: &mut Writer,
) -> Result<(), Unscannable> {
    let mut parts = vec!["word/document.xml".to_string()];
    for prefix in [
        "word/header",
        "word/footer",
        "word/footnotes",
        "word/endnotes",
        "word/comments",
    ] {
        let mut more: Vec<_> = names
            .iter()
            .filter(|n| n.starts_with(prefix) && n.ends_with(".xml"))
            .cloned()
            .collect();
        more.sort_by_key(|n| numbered(n));
        parts.extend(more);
    }
    for part in parts {
        if w.full() {
            break;
        }
        flow_part(zip, &part, budget, w)?;
    }
    Ok(())
}

/// PowerPoint: each slide in order, then its notes, as sections "Slide N".
fn presentation(
    zip: &mut Zip<'_>,
    names: &[String],
    budget: &Budget,
    w: &mut Writer,
) -> Result<(), Unscannable> {
    let mut slides: Vec<_> = names
        .iter()
        .filter(|n| n.starts_with("ppt/slides/slide") && n.ends_with(".xml"))
        .cloned()
        .collect();
    slides.sort_by_key(|n| numbered(n));
    for slide in slides {
        if w.full() {
            break;
        }
        let n = numbered(&slide);
        w.section(Some(format!("Slide {n}")));
        flow_part(zip, &slide, budget, w)?;
        if let Some(notes) = notes_of(zip, &slide, budget)? {
            flow_part(zip, &notes, budget, w)?;
        }
    }
    Ok(())
}

/// The speaker notes part of a slide, from the slide's relationships (notes are numbered in the
/// order they were written, not by slide).
fn notes_of(
    zip: &mut Zip<'_>,
    slide: &str,
    budget: &Budget,
) -> Result<Option<String>, Unscannable> {
    let (folder, file) = slide.rsplit_once('/').unwrap_or(("", slide));
    let rels = format!("{folder}/_rels/{file}.rels");
    let mut target = None;
    with_entry(zip, &rels, |source, compressed| {
        walk(source, compressed, budget, |ev| {
            if let Ev::Open(e) = ev
                && name(e) == b"Relationship"
                && attr(e, b"Type").is_some_and(|t| t.ends_with("/notesSlide"))
            {
                target = attr(e, b"Target");
            }
            Flow::Go
        })
    })?;
    Ok(target.map(|t| resolve(folder, &t)))
}

/// A relationship target relative to `folder` ("../notesSlides/n1.xml" from "ppt/slides").
fn resolve(folder: &str, target: &str) -> String {
    if let Some(absolute) = target.strip_prefix('/') {
        return absolute.to_string();
    }
    let mut parts: Vec<&str> = folder.split('/').filter(|p| !p.is_empty()).collect();
    for piece in target.split('/') {
        match piece {
            ".." => {
                parts.pop();
            }
            "." | "" => {}
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// The number in a part's name ("slide12.xml" → 12), for ordering; 0 when none.
fn numbered(name: &str) -> u32 {
    let stem = name.rsplit('/').next().unwrap_or(name);
    let digits: String = stem.chars().filter(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(0)
}

/// Text of a Word or DrawingML part: paragraphs as lines, table rows as lines of
/// tab-separated cells (paragraphs inside a cell joined by spaces).
fn flow_part(
    zip: &mut Zip<'_>,
    part: &str,
    budget: &Budget,
    w: &mut Writer,
) -> Result<(), Unscannable> {
    let mut in_text = false;
    let mut in_tab_stops = false;
    // Cells seen in each open table row (nested tables).
    let mut rows: Vec<usize> = Vec::new();
    with_entry(zip, part, |source, compressed| {
        walk(source, compressed, budget, |ev| {
            let more = match ev {
                Ev::Open(e) => match name(e) {
                    b"t" | b"delText" => {
                        in_text = true;
                        true
                    }
                    b"tabs" => {
                        in_tab_stops = true;
                        true
                    }
                    b"tab" if !in_tab_stops => w.push('\t'),
                    b"br" | b"cr" => w.push(if rows.is_empty() { '\n' } else { ' ' }),
                    b"tr" => {
                        rows.push(0);
                        true
                    }
                    b"tc" => match rows.last_mut() {
                        Some(cells) => {
                            *cells += 1;
                            if *cells > 1 {
                                w.trim_spaces();
                                w.push('\t')
                            } else {
                                true
                            }
                        }
                        None => true,
                    },
                    _ => true,
                },
                Ev::Close(n) => match n {
                    b"t" | b"delText" => {
                        in_text = false;
                        true
                    }
                    b"tabs" => {
                        in_tab_stops = false;
                        true
                    }
                    b"p" if rows.is_empty() => w.push('\n'),
                    b"p" => w.push(' '),
                    b"tr" => {
                        rows.pop();
                        w.trim_spaces();
                        w.push(if rows.is_empty() { '\n' } else { ' ' })
                    }
                    _ => true,
                },
                Ev::Text(t) if in_text => w.push_str(t),
                Ev::Text(_) => true,
            };
            if more { Flow::Go } else { Flow::Stop }
        })
    })?;
    Ok(())
}

/// How a workbook's numbers are told apart: which cell styles are dates, and the date system.
struct Styles {
    date_styles: Vec<bool>,
    date1904: bool,
}

/// Excel: each worksheet (named from the workbook) as a section, rows as lines.
fn workbook(
    zip: &mut Zip<'_>,
    names: &[String],
    budget: &Budget,
    w: &mut Writer,
) -> Result<(), Unscannable> {
    let (sheets, date1904) = sheet_list(zip, budget)?;
    let styles = Styles {
        date_styles: date_styles(zip, budget)?,
        date1904,
    };
    let shared = shared_strings(zip, budget)?;
    let _held = budget.hold(
        shared.iter().map(|s| s.len() as u64 + 24).sum(),
        "a workbook's shared strings",
    )?;
    let mut done = Vec::new();
    for (sheet_name, part) in sheets {
        if w.full() {
            break;
        }
        w.section(Some(sheet_name));
        if sheet(zip, &part, budget, &shared, &styles, w)? {
            done.push(part);
        }
    }
    // Worksheets the workbook does not list are still sent: read them too.
    for part in names {
        if w.full() {
            break;
        }
        if part.starts_with("xl/worksheets/") && part.ends_with(".xml") && !done.contains(part) {
            let stem = part
                .rsplit('/')
                .next()
                .unwrap_or(part)
                .trim_end_matches(".xml");
            w.section(Some(stem.to_string()));
            sheet(zip, part, budget, &shared, &styles, w)?;
        }
    }
    Ok(())
}

/// (sheet name, part path) in workbook order, and whether dates count from 1904.
fn sheet_list(
    zip: &mut Zip<'_>,
    budget: &Budget,
) -> Result<(Vec<(String, String)>, bool), Unscannable> {
    let mut targets = HashMap::new();
    with_entry(zip, "xl/_rels/workbook.xml.rels", |source, compressed| {
        walk(source, compressed, budget, |ev| {
            if let Ev::Open(e) = ev
                && name(e) == b"Relationship"
                && let (Some(id), Some(target)) = (attr(e, b"Id"), attr(e, b"Target"))
            {
                targets.insert(id, resolve("xl", &target));
            }
            Flow::Go
        })
    })?;
    let mut sheets = Vec::new();
    let mut date1904 = false;
    with_entry(zip, "xl/workbook.xml", |source, compressed| {
        walk(source, compressed, budget, |ev| {
            if let Ev::Open(e) = ev {
                match name(e) {
                    b"workbookPr" => {
                        date1904 = matches!(attr(e, b"date1904").as_deref(), Some("1" | "true"));
                    }
                    b"sheet" => {
                        let sheet_name = attr(e, b"name").unwrap_or_default();
                        if let Some(part) = attr(e, b"id").and_then(|id| targets.get(&id)) {
                            sheets.push((sheet_name, part.clone()));
                        }
                    }
                    _ => {}
                }
            }
            Flow::Go
        })
    })?;
    Ok((sheets, date1904))
}

/// For each cell style (index into cellXfs), whether its number format is a date.
fn date_styles(zip: &mut Zip<'_>, budget: &Budget) -> Result<Vec<bool>, Unscannable> {
    let mut custom: HashMap<u32, bool> = HashMap::new();
    let mut formats: Vec<u32> = Vec::new();
    let mut in_cell_xfs = false;
    let mut too_many = false;
    with_entry(zip, "xl/styles.xml", |source, compressed| {
        walk(source, compressed, budget, |ev| {
            match ev {
                Ev::Open(e) => match name(e) {
                    b"numFmt" | b"xf"
                        if custom.len() >= MAX_STYLES || formats.len() >= MAX_STYLES =>
                    {
                        too_many = true;
                        return Flow::Stop;
                    }
                    b"numFmt" => {
                        if let (Some(id), Some(code)) =
                            (attr(e, b"numFmtId"), attr(e, b"formatCode"))
                            && let Ok(id) = id.parse()
                        {
                            custom.insert(id, is_date_format(&code));
                        }
                    }
                    b"cellXfs" => in_cell_xfs = true,
                    b"xf" if in_cell_xfs => {
                        let id = attr(e, b"numFmtId")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        formats.push(id);
                    }
                    _ => {}
                },
                Ev::Close(b"cellXfs") => in_cell_xfs = false,
                _ => {}
            }
            Flow::Go
        })
    })?;
    // The dates of cells styled past the limit would be read as bare numbers.
    if too_many {
        return Err(Unscannable::TooMany(format!(
            "a workbook with more than {MAX_STYLES} cell styles"
        )));
    }
    Ok(formats
        .into_iter()
        .map(|id| custom.get(&id).copied().unwrap_or_else(|| builtin_date(id)))
        .collect())
}

/// Most cell styles read (Excel allows about 64,000); a flood of styles is not a workbook.
const MAX_STYLES: usize = 65_536;

/// Excel's built-in date and time formats.
fn builtin_date(id: u32) -> bool {
    matches!(id, 14..=22 | 27..=36 | 45..=47 | 50..=58)
}

/// A custom format is a date when it has d, m or y outside quoted text, brackets (colours,
/// elapsed time) and escaped characters. "m" alone beside h or s is minutes: not a date.
fn is_date_format(code: &str) -> bool {
    let mut quoted = false;
    let mut bracket = false;
    let mut escaped = false;
    let (mut dy, mut m, mut hs) = (false, false, false);
    // Only the first section (positive numbers) matters.
    for c in code.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if !quoted => escaped = true,
            '"' => quoted = !quoted,
            '[' if !quoted => bracket = true,
            ']' if !quoted => bracket = false,
            ';' if !quoted && !bracket => break,
            _ if quoted || bracket => {}
            'd' | 'D' | 'y' | 'Y' => dy = true,
            'm' | 'M' => m = true,
            'h' | 'H' | 's' | 'S' => hs = true,
            _ => {}
        }
    }
    dy || (m && !hs)
}

/// The shared strings, tabs and line breaks inside a string turned to spaces so rows stay
/// rows. Phonetic guides (`rPh`) are skipped.
fn shared_strings(zip: &mut Zip<'_>, budget: &Budget) -> Result<Vec<String>, Unscannable> {
    let mut strings = Vec::new();
    with_entry(zip, "xl/sharedStrings.xml", |source, compressed| {
        strings = sheet::shared_strings(source, compressed, budget)?;
        Ok(())
    })?;
    Ok(strings)
}

/// A tab or line break inside a cell, as a space.
fn flatten(c: char) -> char {
    if matches!(c, '\t' | '\n' | '\r') {
        ' '
    } else {
        c
    }
}

/// One worksheet, row by row (see [`sheet`] for the reader). False when the part does not
/// exist.
fn sheet(
    zip: &mut Zip<'_>,
    part: &str,
    budget: &Budget,
    shared: &[String],
    styles: &Styles,
    w: &mut Writer,
) -> Result<bool, Unscannable> {
    with_entry(zip, part, |source, compressed| {
        sheet::read(source, compressed, budget, shared, styles, w)
    })
}

/// A cell being read.
struct Cell {
    kind: Kind,
    /// Index into cellXfs.
    style: usize,
}

/// The `t` attribute of a cell: what its value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `s`: an index into the shared strings.
    Shared,
    /// `b`: 1 or 0.
    Boolean,
    /// `d`: an ISO 8601 date.
    Date,
    /// `inlineStr`, `str` (a formula's text) or `e` (an error such as #N/A): text as it stands.
    Text,
    /// `n`, none, or anything Excel does not define: a number (a date when its style says so).
    Number,
}

impl Kind {
    fn of(t: &[u8]) -> Kind {
        match t {
            b"s" => Kind::Shared,
            b"b" => Kind::Boolean,
            b"d" => Kind::Date,
            b"inlineStr" | b"str" | b"e" => Kind::Text,
            _ => Kind::Number,
        }
    }
}

fn write_cell(c: &Cell, value: &str, shared: &[String], styles: &Styles, w: &mut Writer) -> bool {
    match c.kind {
        Kind::Shared => {
            let text = value
                .trim()
                .parse::<usize>()
                .ok()
                .and_then(|i| shared.get(i))
                .map_or("", String::as_str);
            w.push_str(text)
        }
        Kind::Boolean => w.push_str(if value.trim() == "1" { "TRUE" } else { "FALSE" }),
        Kind::Date => match iso_date(value.trim()) {
            Some(d) => w.push_str(&d),
            None => w.push_str(value),
        },
        Kind::Text => w.push_str(value),
        Kind::Number => {
            let is_date = styles.date_styles.get(c.style).copied().unwrap_or(false);
            let date = is_date
                .then(|| value.trim().parse::<f64>().ok())
                .flatten()
                .and_then(|serial| excel_date(serial, styles.date1904));
            match date {
                Some(d) => w.push_str(&d),
                None => w.push_str(value.trim()),
            }
        }
    }
}

/// The zero-based column of a cell reference ("C5" → 2); None when it has no letters or more
/// than Excel's three.
fn column(reference: &str) -> Option<usize> {
    let letters = reference.bytes().take_while(u8::is_ascii_alphabetic);
    let mut n = 0usize;
    let mut count = 0;
    for b in letters {
        count += 1;
        if count > 3 {
            return None;
        }
        n = n * 26 + usize::from(b.to_ascii_uppercase() - b'A') + 1;
    }
    n.checked_sub(1)
}

/// Most labels read from one file (a real one has one or two).
const MAX_LABELS: usize = 64;

/// A label past [`MAX_LABELS`] would go unread: the document is not read at all.
fn too_many_labels() -> Unscannable {
    Unscannable::TooMany(format!(
        "a document with more than {MAX_LABELS} sensitivity labels"
    ))
}

/// Sensitivity labels: `docProps/custom.xml` (`MSIP_Label_<GUID>_Enabled` / `_Name`) and
/// `docMetadata/LabelInfo.xml` (`<clbl:label id=… enabled=…>`). One string per enabled label:
/// its GUID, then its name when the file gives one.
fn labels(zip: &mut Zip<'_>, budget: &Budget, out: &mut Contents) -> Result<(), Unscannable> {
    // GUID (lower case) → (enabled, name), in the order found.
    let mut found: Vec<(String, bool, Option<String>)> = Vec::new();
    fn entry<'a>(
        found: &'a mut Vec<(String, bool, Option<String>)>,
        guid: &str,
    ) -> &'a mut (String, bool, Option<String>) {
        let guid = guid.trim_matches(['{', '}']).to_ascii_lowercase();
        let at = match found.iter().position(|f| f.0 == guid) {
            Some(at) => at,
            None => {
                found.push((guid, true, None));
                found.len() - 1
            }
        };
        &mut found[at]
    }
    if let Some(xml) = read_entry(zip, "docProps/custom.xml", budget)? {
        let mut property: Option<String> = None;
        let mut value = String::new();
        let mut props: Vec<(String, String)> = Vec::new();
        walk(&xml[..], xml.len() as u64, budget, |ev| {
            match ev {
                Ev::Open(e) if name(e) == b"property" => {
                    property = attr(e, b"name");
                    value.clear();
                }
                Ev::Text(t) if property.is_some() => value.push_str(t),
                Ev::Close(b"property") => {
                    if let Some(p) = property.take() {
                        props.push((p, value.trim().to_string()));
                    }
                }
                _ => {}
            }
            Flow::Go
        })?;
        for (p, v) in props {
            let Some(rest) = p.strip_prefix("MSIP_Label_") else {
                continue;
            };
            if let Some(guid) = rest.strip_suffix("_Enabled") {
                entry(&mut found, guid).1 = v.eq_ignore_ascii_case("true");
            } else if let Some(guid) = rest.strip_suffix("_Name") {
                entry(&mut found, guid).2 = Some(v);
            }
            if found.len() > MAX_LABELS {
                return Err(too_many_labels());
            }
        }
    }
    if let Some(xml) = read_entry(zip, "docMetadata/LabelInfo.xml", budget)? {
        let mut labels = Vec::new();
        walk(&xml[..], xml.len() as u64, budget, |ev| {
            if let Ev::Open(e) = ev
                && name(e) == b"label"
                && let Some(id) = attr(e, b"id")
            {
                let enabled = !matches!(attr(e, b"enabled").as_deref(), Some("0" | "false"));
                let removed = matches!(attr(e, b"removed").as_deref(), Some("1" | "true"));
                labels.push((id, enabled && !removed));
            }
            Flow::Go
        })?;
        if labels.len() > MAX_LABELS {
            return Err(too_many_labels());
        }
        for (id, enabled) in labels {
            let e = entry(&mut found, &id);
            e.1 = e.1 && enabled;
        }
    }
    for (guid, enabled, label_name) in found {
        if !enabled || guid.is_empty() {
            continue;
        }
        let label = match label_name.filter(|n| !n.is_empty()) {
            Some(n) => format!("{guid} {n}"),
            None => guid,
        };
        if !out.labels.contains(&label) {
            out.labels.push(label);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::sensitive::extract::archive::tests::zip_of;
    use crate::policy::sensitive::extract::tests::{all_text, open};

    #[test]
    fn date_formats_are_told_from_numbers() {
        assert!(is_date_format("dd/mm/yyyy"));
        assert!(is_date_format("[$-809]dd mmmm yyyy"));
        assert!(is_date_format("mmm-yy"));
        assert!(!is_date_format("h:mm:ss"));
        assert!(!is_date_format("0.00"));
        assert!(!is_date_format("\"days\" 0"));
        assert!(!is_date_format("[Red]0.00"));
        assert!(!is_date_format("#,##0;[Red]-#,##0"));
        assert!(builtin_date(14) && builtin_date(22) && !builtin_date(2) && !builtin_date(49));
    }

    #[test]
    fn cell_references_give_columns() {
        assert_eq!(column("A1"), Some(0));
        assert_eq!(column("C5"), Some(2));
        assert_eq!(column("AA10"), Some(26));
        assert_eq!(column("XFD1"), Some(16_383));
        assert_eq!(column("12"), None);
    }

    #[test]
    fn a_word_document_reads_as_paragraphs_and_tab_separated_rows() {
        let out = open(
            "report.docx",
            include_bytes!("../../../../fixtures/extract/report.docx"),
        )
        .unwrap();
        let text = all_text(&out);
        assert!(text.contains("Pupil progress report\n"), "{text}");
        assert!(text.contains("Name\tUPN\tDate of birth\n"), "{text}");
        assert!(
            text.contains("Ada Lovelace\tA123456789012\t10/12/2015\n"),
            "{text}"
        );
        assert!(text.contains("Smith & Jones"), "{text}");
        assert!(text.contains("Header: OFFICIAL-SENSITIVE"), "{text}");
    }

    #[test]
    fn a_workbook_reads_as_rows_with_dates_and_kept_empty_cells() {
        let out = open(
            "class.xlsx",
            include_bytes!("../../../../fixtures/extract/class.xlsx"),
        )
        .unwrap();
        let pupils = out
            .texts
            .iter()
            .find(|t| t.location == "class.xlsx › Pupils")
            .expect("a Pupils sheet");
        let lines: Vec<_> = pupils.text.lines().collect();
        assert_eq!(lines[0], "Name\tUPN\tDOB\tNotes\tScore");
        assert_eq!(lines[1], "Ada Lovelace\tA123456789012\t10/12/2015\t\t97");
        assert_eq!(
            lines[2],
            "Alan Turing\tB123456789012\t23/06/2014\tSEN support & EHCP\t88.5"
        );
        assert!(out.texts.iter().any(|t| t.location == "class.xlsx › Staff"));
    }

    #[test]
    fn a_1904_workbook_counts_days_from_1904() {
        let out = open(
            "mac.xlsx",
            include_bytes!("../../../../fixtures/extract/date1904.xlsx"),
        )
        .unwrap();
        assert!(all_text(&out).contains("05/03/2011"), "{out:?}");
    }

    #[test]
    fn slides_and_notes_are_read_in_order() {
        let out = open(
            "assembly.pptx",
            include_bytes!("../../../../fixtures/extract/deck.pptx"),
        )
        .unwrap();
        let locations: Vec<_> = out.texts.iter().map(|t| t.location.as_str()).collect();
        assert_eq!(
            locations,
            ["assembly.pptx › Slide 1", "assembly.pptx › Slide 2"]
        );
        assert!(out.texts[0].text.contains("Welcome back"));
        assert!(
            out.texts[1].text.contains("Speaker notes: Year 7"),
            "{out:?}"
        );
    }

    #[test]
    fn a_truncated_workbook_is_corrupt() {
        let bytes = include_bytes!("../../../../fixtures/extract/class.xlsx");
        let cut = &bytes[..bytes.len() / 2];
        assert!(matches!(
            open("class.xlsx", cut),
            Err(Unscannable::Corrupt(_))
        ));
    }

    #[test]
    fn sensitivity_labels_are_found_with_their_names() {
        let custom = br#"<?xml version="1.0"?><Properties xmlns:vt="x"><property fmtid="{D5}" pid="2" name="MSIP_Label_f42aa342-8706-4288-bd11-ebb85995028c_Enabled"><vt:lpwstr>true</vt:lpwstr></property><property fmtid="{D5}" pid="3" name="MSIP_Label_f42aa342-8706-4288-bd11-ebb85995028c_Name"><vt:lpwstr>Confidential</vt:lpwstr></property></Properties>"#;
        let info = br#"<clbl:labelList xmlns:clbl="x"><clbl:label id="{3A0B1C2D-0000-4000-8000-000000000001}" enabled="1" method="Standard" siteId="{x}" removed="0"/></clbl:labelList>"#;
        let doc = br#"<w:document xmlns:w="x"><w:body><w:p><w:r><w:t>Hi</w:t></w:r></w:p></w:body></w:document>"#;
        let bytes = zip_of(&[
            ("[Content_Types].xml", b"<Types/>"),
            ("word/document.xml", doc),
            ("docProps/custom.xml", custom),
            ("docMetadata/LabelInfo.xml", info),
        ]);
        let out = open("l.docx", &bytes).unwrap();
        assert_eq!(
            out.labels,
            [
                "f42aa342-8706-4288-bd11-ebb85995028c Confidential",
                "3a0b1c2d-0000-4000-8000-000000000001"
            ]
        );
        assert_eq!(all_text(&out), "Hi\n");
    }

    #[test]
    fn text_stops_at_the_limit_with_a_note() {
        let mut w = Writer::new(&Contents::default());
        w.room = 10;
        let doc = br#"<w:document xmlns:w="x"><w:body><w:p><w:r><w:t>0123456789abcdef</w:t></w:r></w:p></w:body></w:document>"#;
        let bytes = zip_of(&[
            ("[Content_Types].xml", b"<Types/>"),
            ("word/document.xml", doc),
        ]);
        let mut zip = super::super::archive::open_zip(
            &bytes,
            &crate::policy::sensitive::extract::tests::budget(),
        )
        .unwrap();
        flow_part(
            &mut zip,
            "word/document.xml",
            &crate::policy::sensitive::extract::tests::budget(),
            &mut w,
        )
        .unwrap();
        let mut out = Contents::default();
        w.finish("big.docx", &mut out);
        assert_eq!(out.texts[0].text, "0123456789");
        assert_eq!(out.notes.len(), 1);
    }
}
