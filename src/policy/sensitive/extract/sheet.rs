//! A worksheet reader made for speed: a pupil export is tens of megabytes of `<row>`, `<c>`,
//! `<v>` and `<is><t>` and little else, and a general XML parser spends most of its time on
//! what a worksheet never has. This one looks for `<` with memchr over the decompressed part,
//! read in large chunks through the budget ([`Metered`]), and only looks inside the tags a
//! sheet's text depends on.
//!
//! It writes exactly the text the generic walk ([`super::super::xml::walk`]) gave: the same
//! row and cell rules, entities and character references resolved, line ends normalised as
//! XML 1.0 says, CDATA read, comments and processing instructions skipped, namespace prefixes
//! ignored. Attachment bytes are hostile: no panics, nothing quadratic, and a single tag (or
//! an unbroken run of text that cannot be split) longer than [`MAX_TAG`] makes the file
//! corrupt rather than a reason to buffer without end.

use std::io::{ErrorKind, Read};

use memchr::{memchr, memchr2, memchr3, memmem};

use super::super::Writer;
use super::super::xml::entity;
use super::{Cell, Kind, Styles, column, flatten, write_cell};
use crate::policy::sensitive::limits::{Budget, Compressed, Metered, Unscannable};

/// Decompressed bytes asked for at a time.
const CHUNK: usize = 256 << 10;

/// Longest single tag, comment or unsplittable run of text kept while waiting for its end.
pub(super) const MAX_TAG: usize = 1 << 20;

/// Below this a run of text at the end of a chunk waits for the next chunk whole; above it, it
/// is split at a safe point (not inside an entity, a line end or a character).
const SPLIT_TEXT: usize = 64 << 10;

/// Tags read between looks at the clock.
const TAGS_PER_CLOCK: u32 = 4096;

/// Reads one worksheet from `source` (`compressed` bytes in the archive) into `w`, row by row.
pub(super) fn read(
    source: &mut dyn Read,
    compressed: Compressed,
    budget: &Budget,
    shared: &[String],
    styles: &Styles,
    w: &mut Writer,
) -> Result<(), Unscannable> {
    let mut sheet = Sheet::new(shared, styles, w);
    run(CHUNK, SPLIT_TEXT, source, compressed, budget, &mut sheet)
}

/// Reads the shared strings part (`xl/sharedStrings.xml`): each `<si>`'s text, phonetic guides
/// (`rPh`) left out, tabs and line breaks as spaces. Past the text limit (each string also
/// costs its slot, so a flood of empty strings is bounded too) the workbook is unscannable: a
/// sheet could show only the strings that were never read.
pub(super) fn shared_strings(
    source: &mut dyn Read,
    compressed: Compressed,
    budget: &Budget,
) -> Result<Vec<String>, Unscannable> {
    let mut part = SharedStrings::default();
    run(CHUNK, SPLIT_TEXT, source, compressed, budget, &mut part)?;
    if part.stopped() {
        return Err(Unscannable::TooMany(format!(
            "a workbook whose shared strings pass {} MiB",
            super::super::MAX_TEXT >> 20
        )));
    }
    Ok(part.strings)
}

/// What one kind of part does with its tags and text.
trait Part {
    fn open(&mut self, name: &[u8], attributes: &[u8]);
    fn close(&mut self, name: &[u8]);
    /// Where text goes now; None when it is not kept (then it is not even decoded).
    fn text(&mut self) -> Option<&mut String>;
    /// Nothing more is wanted.
    fn stopped(&self) -> bool;
}

/// Reads `source` in chunks of `chunk` bytes through the budget, giving `part` its tags and
/// text. `split_text` is the run of text past which a run is split (small in tests, so that
/// every boundary case is met).
fn run<P: Part>(
    chunk: usize,
    split_text: usize,
    source: &mut dyn Read,
    compressed: Compressed,
    budget: &Budget,
    part: &mut P,
) -> Result<(), Unscannable> {
    let mut metered = Metered::new(source, budget, compressed);
    let mut scanner = Scanner {
        part,
        budget,
        split_text,
        tags: 0,
    };
    let chunk = chunk.max(1);
    let mut buf = vec![0u8; chunk];
    // buf[start..filled] is read but not yet used.
    let (mut start, mut filled) = (0usize, 0usize);
    let mut eof = false;
    loop {
        let used = scanner.scan(buf.get(start..filled).unwrap_or_default(), eof)?;
        start = start.saturating_add(used).min(filled);
        if scanner.part.stopped() || (eof && start == filled) {
            return Ok(());
        }
        if eof {
            return Err(Unscannable::Corrupt(
                "a workbook part ends inside a tag".to_string(),
            ));
        }
        let pending = filled - start;
        if pending > MAX_TAG {
            return Err(Unscannable::Corrupt(format!(
                "a workbook part has a tag or text longer than {} MiB",
                MAX_TAG >> 20
            )));
        }
        // Keep what is pending at the front and make room for another chunk.
        buf.copy_within(start..filled, 0);
        filled = pending;
        start = 0;
        let want = filled.saturating_add(chunk);
        if buf.len() < want {
            buf.resize(want, 0);
        }
        let room = buf.get_mut(filled..want).unwrap_or_default();
        let n = loop {
            match metered.read(room) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(metered.why(&e)),
            }
        };
        if n == 0 {
            eof = true;
        }
        filled = filled.saturating_add(n).min(buf.len());
    }
}

struct Scanner<'a, 'p, P> {
    part: &'p mut P,
    budget: &'a Budget,
    split_text: usize,
    tags: u32,
}

/// A worksheet being written row by row.
struct Sheet<'a, 'w> {
    shared: &'a [String],
    styles: &'a Styles,
    w: &'w mut Writer,
    /// The column the next cell without a reference goes in.
    next_col: usize,
    /// Tabs written in this row so far.
    tabs: usize,
    cell: Option<Cell>,
    /// Inside a cell's `<v>` or `<t>`: text is the cell's value.
    in_value: bool,
    value: String,
    /// The text limit was reached: nothing more is read.
    stopped: bool,
}

impl<'a, 'w> Sheet<'a, 'w> {
    fn new(shared: &'a [String], styles: &'a Styles, w: &'w mut Writer) -> Self {
        Sheet {
            shared,
            styles,
            w,
            next_col: 0,
            tabs: 0,
            cell: None,
            in_value: false,
            value: String::new(),
            stopped: false,
        }
    }
}

/// The shared strings being collected.
#[derive(Default)]
struct SharedStrings {
    strings: Vec<String>,
    current: String,
    in_text: bool,
    phonetic: bool,
    /// Bytes of text so far, and 24 a string for its slot.
    total: usize,
}

impl Part for SharedStrings {
    fn open(&mut self, name: &[u8], _attributes: &[u8]) {
        match name {
            b"si" => self.current.clear(),
            b"t" => self.in_text = true,
            b"rPh" => self.phonetic = true,
            _ => {}
        }
    }

    fn close(&mut self, name: &[u8]) {
        match name {
            b"si" => {
                self.total = self.total.saturating_add(self.current.len() + 24);
                self.strings.push(std::mem::take(&mut self.current));
            }
            b"t" => self.in_text = false,
            b"rPh" => self.phonetic = false,
            _ => {}
        }
    }

    fn text(&mut self) -> Option<&mut String> {
        (self.in_text && !self.phonetic).then_some(&mut self.current)
    }

    /// Past the text limit the rest is never written anyway.
    fn stopped(&self) -> bool {
        self.total > super::super::MAX_TEXT
    }
}

impl<P: Part> Scanner<'_, '_, P> {
    /// Uses as much of `data` as is complete (whole tags, text up to a safe point) and says how
    /// much; at `eof` all of it must be complete.
    fn scan(&mut self, data: &[u8], eof: bool) -> Result<usize, Unscannable> {
        let mut pos = 0;
        while let Some(rest) = data.get(pos..).filter(|r| !r.is_empty()) {
            if self.part.stopped() {
                return Ok(pos);
            }
            if rest.first() != Some(&b'<') {
                let end = match find_short(b'<', rest) {
                    Some(i) => i,
                    None if eof => rest.len(),
                    None => split_point(rest, self.split_text),
                };
                if end == 0 {
                    return Ok(pos);
                }
                self.text(rest.get(..end).unwrap_or_default())?;
                pos += end;
                continue;
            }
            match tag_len(rest) {
                Some(len) => {
                    self.tag(rest.get(..len).unwrap_or_default())?;
                    pos += len;
                }
                None if eof => {
                    return Err(Unscannable::Corrupt(
                        "a worksheet ends inside a tag".to_string(),
                    ));
                }
                None => return Ok(pos),
            }
        }
        Ok(pos)
    }

    /// One whole tag, `<` to `>`.
    fn tag(&mut self, tag: &[u8]) -> Result<(), Unscannable> {
        self.tags = self.tags.wrapping_add(1);
        if self.tags.is_multiple_of(TAGS_PER_CLOCK) {
            self.budget.check_time()?;
        }
        let inner = tag.get(1..tag.len().saturating_sub(1)).unwrap_or_default();
        match inner.first() {
            Some(b'/') => {
                let name = inner.get(1..).unwrap_or_default();
                let end = name
                    .iter()
                    .rposition(|b| !is_space(*b))
                    .map_or(0, |p| p + 1);
                let name = local(name.get(..end).unwrap_or_default());
                self.part.close(name);
            }
            Some(b'!') => {
                if let Some(body) = inner
                    .strip_prefix(b"![CDATA[")
                    .and_then(|b| b.strip_suffix(b"]]"))
                {
                    self.cdata(body)?;
                }
            }
            Some(b'?') => {}
            _ => {
                let (content, empty) = match inner.strip_suffix(b"/") {
                    Some(c) => (c, true),
                    None => (inner, false),
                };
                let name_len = content
                    .iter()
                    .position(|b| is_space(*b))
                    .unwrap_or(content.len());
                let name = local(content.get(..name_len).unwrap_or_default());
                let attributes = content.get(name_len..).unwrap_or_default();
                self.part.open(name, attributes);
                if empty {
                    self.part.close(name);
                }
            }
        }
        Ok(())
    }

    /// Text between tags: entities and character references resolved, `\r\n` and `\r` read as
    /// one line end, tabs and line ends as spaces (a cell stays on its row). Only a cell's value
    /// is kept, so other text is not even decoded.
    fn text(&mut self, raw: &[u8]) -> Result<(), Unscannable> {
        let Some(out) = self.part.text() else {
            return Ok(());
        };
        let text = std::str::from_utf8(raw)
            .map_err(|_| Unscannable::Corrupt("a workbook part is not UTF-8".to_string()))?;
        if !raw
            .iter()
            .any(|b| matches!(b, b'&' | b'\r' | b'\n' | b'\t'))
        {
            out.push_str(text);
            return Ok(());
        }
        let bytes = text.as_bytes();
        let mut run = 0;
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            match b {
                b'&' => {
                    out.push_str(text.get(run..i).unwrap_or_default());
                    let after = bytes.get(i + 1..).unwrap_or_default();
                    let end = match memchr2(b';', b'&', after) {
                        Some(k) if after.get(k) == Some(&b';') => k,
                        _ => {
                            return Err(Unscannable::Corrupt(
                                "a workbook part has a lone &".to_string(),
                            ));
                        }
                    };
                    let name = text.get(i + 1..i + 1 + end).unwrap_or_default();
                    if let Some(c) = entity(name) {
                        out.push(flatten(c));
                    }
                    i += end + 2;
                    run = i;
                }
                b'\r' | b'\n' | b'\t' => {
                    out.push_str(text.get(run..i).unwrap_or_default());
                    out.push(' ');
                    i += if b == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                        2
                    } else {
                        1
                    };
                    run = i;
                }
                _ => i += 1,
            }
        }
        out.push_str(text.get(run..).unwrap_or_default());
        Ok(())
    }

    /// A CDATA section: text as it stands (no entities), line ends normalised.
    fn cdata(&mut self, raw: &[u8]) -> Result<(), Unscannable> {
        let Some(out) = self.part.text() else {
            return Ok(());
        };
        let text = std::str::from_utf8(raw)
            .map_err(|_| Unscannable::Corrupt("a workbook part is not UTF-8".to_string()))?;
        let normalised = text.replace("\r\n", "\n");
        out.extend(normalised.chars().map(flatten));
        Ok(())
    }
}

impl Part for Sheet<'_, '_> {
    fn open(&mut self, name: &[u8], attributes: &[u8]) {
        if self.stopped {
            return;
        }
        match name {
            b"row" => {
                self.next_col = 0;
                self.tabs = 0;
            }
            b"c" => {
                let (mut at, mut kind, mut style) = (None, None, None);
                for (key, value) in Attributes(attributes) {
                    // The first of a repeated attribute counts.
                    match local(key) {
                        b"r" if at.is_none() => at = Some(column_of(value)),
                        b"t" if kind.is_none() => kind = Some(Kind::of(value)),
                        b"s" if style.is_none() => style = Some(style_of(value)),
                        _ => {}
                    }
                }
                let col = at.flatten().unwrap_or(self.next_col).max(self.next_col);
                self.next_col = col.saturating_add(1);
                self.value.clear();
                self.cell = Some(Cell {
                    kind: kind.unwrap_or(Kind::Number),
                    style: style.unwrap_or(0),
                });
                while self.tabs < col && !self.stopped {
                    self.stopped = !self.w.push('\t');
                    self.tabs += 1;
                }
            }
            b"v" | b"t" if self.cell.is_some() => self.in_value = true,
            _ => {}
        }
    }

    fn close(&mut self, name: &[u8]) {
        if self.stopped {
            return;
        }
        match name {
            b"v" | b"t" => self.in_value = false,
            b"c" => {
                if let Some(c) = self.cell.take() {
                    self.stopped = !write_cell(&c, &self.value, self.shared, self.styles, self.w);
                }
            }
            b"row" => {
                self.w.trim_tabs();
                self.stopped = !self.w.push('\n');
            }
            _ => {}
        }
    }

    fn text(&mut self) -> Option<&mut String> {
        (self.in_value && !self.stopped).then_some(&mut self.value)
    }

    fn stopped(&self) -> bool {
        self.stopped
    }
}

/// XML white space.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// A name without its namespace prefix (`x:c` → `c`).
fn local(name: &[u8]) -> &[u8] {
    match name.iter().position(|b| *b == b':') {
        Some(i) => name.get(i + 1..).unwrap_or_default(),
        None => name,
    }
}

fn column_of(value: &[u8]) -> Option<usize> {
    std::str::from_utf8(value).ok().and_then(column)
}

fn style_of(value: &[u8]) -> usize {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The length of the tag at the start of `data` (which begins with `<`), through its `>`;
/// None when its end has not been read yet.
fn tag_len(data: &[u8]) -> Option<usize> {
    let after = |at: usize, pattern: &[u8]| {
        memmem::find(data.get(at..)?, pattern).map(|i| at + i + pattern.len())
    };
    match data.get(1) {
        None => None,
        Some(b'?') => after(2, b"?>"),
        Some(b'!') => {
            if data.starts_with(b"<!--") {
                after(4, b"-->")
            } else if data.starts_with(b"<![CDATA[") {
                after(9, b"]]>")
            } else if data.len() < 9 && (b"<![CDATA[".starts_with(data) || data == b"<!-") {
                None
            } else {
                // A document type: `>` outside its internal subset.
                let mut depth = 0usize;
                let mut i = 2;
                loop {
                    let k = memchr3(b'[', b']', b'>', data.get(i..)?)?;
                    i += k;
                    match data.get(i)? {
                        b'[' => depth += 1,
                        b']' => depth = depth.saturating_sub(1),
                        _ if depth == 0 => return Some(i + 1),
                        _ => {}
                    }
                    i += 1;
                }
            }
        }
        Some(_) => {
            // `>` outside quoted attribute values. A byte at a time: a sheet's tags are a few
            // dozen bytes, too short for a vector search to pay for its setup.
            let mut i = 1;
            loop {
                let rest = data.get(i..)?;
                i += rest
                    .iter()
                    .position(|&b| matches!(b, b'>' | b'"' | b'\''))?;
                let quote = *data.get(i)?;
                if quote == b'>' {
                    return Some(i + 1);
                }
                i += 1;
                i += data.get(i..)?.iter().position(|&b| b == quote)? + 1;
            }
        }
    }
}

/// The first `byte` in `data`: a byte at a time over the first few dozen (the text between a
/// sheet's tags is short), then a vector search.
fn find_short(byte: u8, data: &[u8]) -> Option<usize> {
    const SHORT: usize = 32;
    let head = data.get(..SHORT).unwrap_or(data);
    if let Some(i) = head.iter().position(|b| *b == byte) {
        return Some(i);
    }
    let tail = data.get(SHORT..)?;
    memchr(byte, tail).map(|i| i + SHORT)
}

/// How much of a run of text with no `<` in sight can be used now: none while it is short
/// (the rest comes with the next chunk), otherwise all but an unfinished entity, a `\r` that
/// may be half of `\r\n`, and a character cut short.
fn split_point(text: &[u8], split_text: usize) -> usize {
    if text.len() < split_text {
        return 0;
    }
    let mut cut = text.len().saturating_sub(1);
    // text[cut] must begin a character.
    while cut > 0 && text.get(cut).is_some_and(|b| b & 0xC0 == 0x80) {
        cut -= 1;
    }
    let head = text.get(..cut).unwrap_or_default();
    if let Some(amp) = memchr::memrchr(b'&', head)
        && memchr(b';', head.get(amp..).unwrap_or_default()).is_none()
    {
        cut = amp;
    }
    if cut > 0 && text.get(cut - 1) == Some(&b'\r') {
        cut -= 1;
    }
    cut
}

/// `key="value"` pairs of a start tag, raw (the attributes a cell needs never hold entities).
/// Stops at the first malformed pair.
struct Attributes<'a>(&'a [u8]);

impl<'a> Iterator for Attributes<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.0;
        let start = s.iter().position(|b| !is_space(*b))?;
        let s = s.get(start..)?;
        let key_len = s.iter().position(|b| *b == b'=' || is_space(*b))?;
        let key = s.get(..key_len)?;
        let mut i = key_len;
        while s.get(i).is_some_and(|b| is_space(*b)) {
            i += 1;
        }
        if s.get(i) != Some(&b'=') {
            self.0 = &[];
            return None;
        }
        i += 1;
        while s.get(i).is_some_and(|b| is_space(*b)) {
            i += 1;
        }
        let quote = match s.get(i) {
            Some(q @ (b'"' | b'\'')) => *q,
            _ => {
                self.0 = &[];
                return None;
            }
        };
        let body = s.get(i + 1..)?;
        let Some(end) = body.iter().position(|b| *b == quote) else {
            self.0 = &[];
            return None;
        };
        self.0 = body.get(end + 1..).unwrap_or_default();
        Some((key, body.get(..end).unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::xml::{Ev, Flow, name, walk};
    use super::super::super::{Contents, Writer};
    use super::*;
    use crate::policy::sensitive::extract::tests::budget;

    /// The worksheet reader this one replaced (the generic XML walk), kept to prove the text is
    /// the same.
    fn by_walk(xml: &[u8], shared: &[String], styles: &Styles, room: usize) -> (bool, Contents) {
        let budget = budget();
        let mut w = Writer::new(&Contents::default());
        w.room = room;
        let mut next_col = 0usize;
        let mut tabs = 0usize;
        let mut cell: Option<Cell> = None;
        let mut in_value = false;
        let mut value = String::new();
        let ok = walk(xml, xml.len() as u64, &budget, |ev| {
            let more = match ev {
                Ev::Open(e) => match name(e) {
                    b"row" => {
                        next_col = 0;
                        tabs = 0;
                        true
                    }
                    b"c" => {
                        let mut at = None;
                        let mut c = Cell {
                            kind: Kind::Number,
                            style: 0,
                        };
                        for a in e.attributes().flatten() {
                            match a.key.local_name().into_inner().as_bytes() {
                                b"r" => at = column(&a.value),
                                b"t" => c.kind = Kind::of(a.value.as_bytes()),
                                b"s" => c.style = a.value.parse().unwrap_or(0),
                                _ => {}
                            }
                        }
                        let col = at.unwrap_or(next_col).max(next_col);
                        next_col = col.saturating_add(1);
                        value.clear();
                        cell = Some(c);
                        let mut ok = true;
                        while tabs < col && ok {
                            ok = w.push('\t');
                            tabs += 1;
                        }
                        ok
                    }
                    b"v" | b"t" if cell.is_some() => {
                        in_value = true;
                        true
                    }
                    _ => true,
                },
                Ev::Close(n) => match n {
                    b"v" | b"t" => {
                        in_value = false;
                        true
                    }
                    b"c" => match cell.take() {
                        Some(c) => write_cell(&c, &value, shared, styles, &mut w),
                        None => true,
                    },
                    b"row" => {
                        w.trim_tabs();
                        w.push('\n')
                    }
                    _ => true,
                },
                Ev::Text(t) if in_value => {
                    value.extend(t.chars().map(flatten));
                    true
                }
                Ev::Text(_) => true,
            };
            if more { Flow::Go } else { Flow::Stop }
        })
        .is_ok();
        let mut out = Contents::default();
        w.finish("a.xlsx", &mut out);
        (ok, out)
    }

    fn fast(
        xml: &[u8],
        chunk: usize,
        split: usize,
        shared: &[String],
        styles: &Styles,
        room: usize,
    ) -> Result<Contents, Unscannable> {
        let budget = budget();
        let mut w = Writer::new(&Contents::default());
        w.room = room;
        let mut source = xml;
        let mut sheet = Sheet::new(shared, styles, &mut w);
        run(
            chunk,
            split,
            &mut source,
            Compressed::from(xml.len() as u64),
            &budget,
            &mut sheet,
        )?;
        let mut out = Contents::default();
        w.finish("a.xlsx", &mut out);
        Ok(out)
    }

    fn styles() -> Styles {
        Styles {
            date_styles: vec![false, true],
            date1904: false,
        }
    }

    fn shared() -> Vec<String> {
        vec!["Ada Lovelace".to_string(), "SEN support".to_string()]
    }

    /// Everything a worksheet may hold that changes its text.
    const SHEET: &str = concat!(
        "\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n",
        "<!-- exported -->",
        "<x:worksheet xmlns:x=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\">\n",
        "  <x:sheetData>\n",
        "    <x:row r=\"1\"><x:c r=\"A1\" t=\"s\"><x:v>0</x:v></x:c><x:c r=\"C1\" t=\"s\"><x:v>1</x:v></x:c></x:row>\n",
        "    <row r=\"2\"><c r=\"A2\" t=\"inlineStr\"><is><r><rPr><b/></rPr><t>Alan</t></r><r><t xml:space=\"preserve\"> Turing</t></r></is></c>",
        "<c r=\"B2\" s=\"1\"><v>41253</v></c><c r=\"C2\" s=\"1\"/><c r=\"D2\" t=\"b\"/><c t=\"b\"><v>1</v></c>",
        "<c r=\"F2\"><f>SUM(A1:A2)</f><v> 3.5 </v></c><c r=\"G2\" t=\"d\"><v>2015-12-10T00:00:00</v></c>",
        "<c r=\"H2\" t=\"e\"><v>#N/A</v></c><c r=\"I2\" t=\"str\"><f>A1</f><v>x</v></c></row>\n",
        "    <row r=\"3\"><c r=\"A3\" t=\"inlineStr\"><is><t>Smith &amp; Jones &lt;3 &#163;5 &#x20AC;3 &unknown; &#13;&#10;</t></is></c>",
        "<c r=\"B3\" t=\"inlineStr\"><is><t>line one\r\nline two\rthree\n\tfour</t></is></c>",
        "<c r=\"C3\" t=\"inlineStr\" foo=\"a>b\" bar='q\"t'><is><t><![CDATA[a <b> & c\r\nd]]></t></is></c>",
        "<c r=\"B3\"><v>after an earlier column</v></c><c><v>no reference</v></c>",
        "<c r=\"Z3\" r=\"M3\" t=\"inlineStr\" t=\"b\"><is><t>first wins</t></is></c></row>\n",
        "    <row/><row r=\"5\"><c r=\"A5\"></c><c r=\"B5\"/><c r=\"C5\"><v></v></c></row >\n",
        "    <row><c r=\"A6\" t=\"inlineStr\"><is><t>kanji</t><rPh sb=\"0\" eb=\"1\"><t>かな</t></rPh></is></c>",
        "<c r=\"B6\" t=\"inlineStr\"><is><t>\u{e9}l\u{e8}ve</t></is></c><?pi x?><c r=\"D6\"><v>7</v></c ></row>\n",
        "    <row><c r=\"AB7\"><v>far</v></c><c r=\"AAAA7\"><v>bad reference</v></c></row>",
        "  </x:sheetData>\n",
        "</x:worksheet>\n",
    );

    #[test]
    fn a_sheet_reads_as_the_generic_walk_read_it_whatever_the_chunking() {
        let (shared, styles) = (shared(), styles());
        let (ok, want) = by_walk(SHEET.as_bytes(), &shared, &styles, usize::MAX);
        assert!(ok);
        let text = &want.texts[0].text;
        assert!(text.starts_with("Ada Lovelace\t\tSEN support\n"), "{text}");
        assert!(
            text.contains("Alan Turing\t10/12/2012\t\tFALSE\tTRUE\t3.5\t10/12/2015\t#N/A\tx\n"),
            "{text}"
        );
        assert!(text.contains("Smith & Jones <3 £5 €3    \t"), "{text}");
        for chunk in [1, 2, 3, 5, 7, 13, 64, 1000, 1 << 20] {
            for split in [1, 3, 1 << 16] {
                let got =
                    fast(SHEET.as_bytes(), chunk, split, &shared, &styles, usize::MAX).unwrap();
                assert_eq!(got, want, "chunk {chunk} split {split}");
            }
        }
    }

    #[test]
    fn the_text_limit_stops_the_sheet_where_the_walk_stopped() {
        let (shared, styles) = (shared(), styles());
        for room in [0, 1, 5, 13, 14, 40, 100, 200] {
            let (_, want) = by_walk(SHEET.as_bytes(), &shared, &styles, room);
            let got = fast(SHEET.as_bytes(), 7, 3, &shared, &styles, room).unwrap();
            assert_eq!(got, want, "room {room}");
        }
    }

    #[test]
    fn damaged_sheets_read_as_the_walk_read_them_or_are_refused() {
        let (shared, styles) = (shared(), styles());
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut same = 0;
        for _ in 0..3000 {
            let mut xml = SHEET.as_bytes().to_vec();
            for _ in 0..1 + next() % 3 {
                let at = (next() as usize) % xml.len();
                let b = b"<>/&;\"'\r\n =cvtrx:![]"[(next() % 20) as usize];
                match next() % 3 {
                    0 => xml[at] = b,
                    1 => xml.insert(at, b),
                    _ => {
                        xml.remove(at);
                    }
                }
            }
            let (ok, want) = by_walk(&xml, &shared, &styles, usize::MAX);
            let chunk = 1 + (next() as usize) % 50;
            let got = fast(
                &xml,
                chunk,
                1 + (next() as usize) % 20,
                &shared,
                &styles,
                usize::MAX,
            );
            if ok && got.as_ref() == Ok(&want) {
                same += 1;
            }
        }
        // Both never panic. Where the walk reads past the damage, this reader mostly reads the
        // same (about 2,200 of 3,000 here; the rest are refused by one or both, or differ where
        // damage inside a tag's quotes is read differently).
        assert!(same > 2000, "{same} of 3000 read the same");
    }

    #[test]
    fn a_tag_without_end_is_corrupt_not_buffered() {
        let (shared, styles) = (shared(), styles());
        let mut xml = b"<worksheet><sheetData><row><c r=\"A1\" x=\"".to_vec();
        xml.extend(std::iter::repeat_n(b'a', 2 * MAX_TAG));
        xml.extend_from_slice(b"\"><v>1</v></c></row></sheetData></worksheet>");
        assert!(matches!(
            fast(&xml, CHUNK, SPLIT_TEXT, &shared, &styles, usize::MAX),
            Err(Unscannable::Corrupt(_))
        ));
        let cut = b"<worksheet><sheetData><row><c r=\"A1\"><v>1</v></c";
        assert!(matches!(
            fast(cut, CHUNK, SPLIT_TEXT, &shared, &styles, usize::MAX),
            Err(Unscannable::Corrupt(_))
        ));
    }

    #[test]
    fn a_long_cell_is_read_in_pieces_whole() {
        let (shared, styles) = (shared(), styles());
        let long = "Smith &amp; Jones \u{e9}\r\n".repeat(200_000);
        let xml = format!(
            "<worksheet><sheetData><row><c t=\"inlineStr\"><is><t>{long}</t></is></c></row></sheetData></worksheet>"
        );
        let (ok, want) = by_walk(xml.as_bytes(), &shared, &styles, usize::MAX);
        assert!(ok);
        let got = fast(
            xml.as_bytes(),
            CHUNK,
            SPLIT_TEXT,
            &shared,
            &styles,
            usize::MAX,
        )
        .unwrap();
        assert_eq!(got, want);
    }

    /// The shared strings reader this one replaced (the generic XML walk).
    fn shared_by_walk(xml: &[u8]) -> Vec<String> {
        let budget = budget();
        let mut strings = Vec::new();
        let mut current = String::new();
        let (mut in_text, mut phonetic) = (false, false);
        walk(xml, xml.len() as u64, &budget, |ev| {
            match ev {
                Ev::Open(e) => match name(e) {
                    b"si" => current.clear(),
                    b"t" => in_text = true,
                    b"rPh" => phonetic = true,
                    _ => {}
                },
                Ev::Close(n) => match n {
                    b"si" => strings.push(std::mem::take(&mut current)),
                    b"t" => in_text = false,
                    b"rPh" => phonetic = false,
                    _ => {}
                },
                Ev::Text(t) if in_text && !phonetic => current.extend(t.chars().map(flatten)),
                Ev::Text(_) => {}
            }
            Flow::Go
        })
        .unwrap();
        strings
    }

    #[test]
    fn shared_strings_past_the_text_limit_make_the_workbook_unscannable() {
        // The sheet could show only strings past the limit: none of it may pass unread.
        let one = format!("<si><t>{}</t></si>", "x".repeat(1 << 20));
        let xml = format!(
            "<sst>{}<si><t>H801200001001</t></si></sst>",
            one.repeat((crate::policy::sensitive::limits::MAX_TEXT >> 20) + 1)
        );
        let err = shared_strings(
            &mut xml.as_bytes(),
            Compressed::from(xml.len() as u64),
            &budget(),
        )
        .unwrap_err();
        assert!(matches!(err, Unscannable::TooMany(_)), "{err:?}");
    }

    #[test]
    fn shared_strings_read_as_the_walk_read_them() {
        let xml = concat!(
            "<?xml version=\"1.0\"?>\r\n<sst xmlns=\"x\" count=\"6\">",
            "<si><t>Ada Lovelace</t></si>",
            "<si><r><t>Alan</t></r><r><rPr><b/></rPr><t xml:space=\"preserve\"> Turing</t></r></si>",
            "<si><t>\u{6f22}\u{5b57}</t><rPh sb=\"0\" eb=\"1\"><t>\u{304b}\u{3093}</t></rPh></si>",
            "<si/><si><t/></si>",
            "<si><t>Smith &amp; Jones &#163;5\r\nnext\tline</t></si>",
            "<x:si><x:t><![CDATA[a & b]]></x:t></x:si>",
            "</sst>"
        )
        .as_bytes();
        let want = shared_by_walk(xml);
        assert_eq!(want.len(), 7);
        assert_eq!(want[5], "Smith & Jones £5 next line");
        for chunk in [1, 2, 5, 64, 1 << 16] {
            let budget = budget();
            let mut part = SharedStrings::default();
            let mut source = xml;
            run(
                chunk,
                3,
                &mut source,
                Compressed::from(xml.len() as u64),
                &budget,
                &mut part,
            )
            .unwrap();
            assert_eq!(part.strings, want, "chunk {chunk}");
        }
    }
}
