//! PDF: the text of each page, through lopdf and the fonts' encodings and ToUnicode maps.
//!
//! lopdf builds every object of the file as it loads it, the objects of object streams too,
//! at a hundred bytes or more each: 2,000,000 tiny objects in one compressed object stream
//! took 800 MB. So what it will build is estimated and held against the budget's
//! [`MAX_BUILT`](crate::policy::sensitive::limits::MAX_BUILT) first: the tokens of the file's
//! own syntax, and each object stream's objects as lopdf will read them (counted by
//! [`admit`], lopdf's load filter, before lopdf parses the stream), and each page's content
//! before it is decoded.
//!
//! lopdf decompresses streams without any limit (object streams as soon as it loads a file),
//! so before it sees the bytes every stream it could expand is expanded here through the
//! budget, to prove none is a bomb. Image streams are left alone: text extraction never
//! expands them. The page tree is walked here too, with a visited set and depth and page caps,
//! so a Kids array that points back at an ancestor cannot loop.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::io::Read;

use flate2::read::ZlibDecoder;
use lopdf::content::Content;
use lopdf::{Document, Encoding, LoadOptions, Object, ObjectId, Stream};

use super::{Contents, Writer};
use layout::Run;

mod layout;
use crate::policy::sensitive::limits::{Budget, Held, Metered, Unscannable};

/// Page tree levels followed; real files use three or four.
const MAX_TREE_DEPTH: usize = 64;
/// Pages read from one PDF.
const MAX_PAGES: usize = 20_000;

/// What one object costs lopdf in its maps, counted twice: an object stream's objects are
/// built into one map, then moved into the document's.
const OBJECT_COST: u64 = 2 * (std::mem::size_of::<Object>() as u64 + 32);
/// What one token of PDF syntax (a number, a name, a bracket) costs once parsed, on average.
const TOKEN_COST: u64 = 64;

thread_local! {
    /// What lopdf may still build while it loads a file on this thread; `None` once an object
    /// stream was refused. Read by [`admit`]: lopdf's load filter is a plain function.
    static ROOM: Cell<Option<u64>> = const { Cell::new(None) };
}

pub(super) fn open(
    location: &str,
    bytes: &[u8],
    budget: &Budget,
    out: &mut Contents,
) -> Result<(), Unscannable> {
    let syntax = prove_streams(bytes, budget)?;
    let what = "a PDF's objects";
    let mut held = budget.hold(syntax.cost(), what)?;
    let room = budget.room();
    ROOM.set(Some(room));
    let options = LoadOptions {
        filter: Some(admit),
        ..LoadOptions::default()
    };
    let loaded = std::panic::catch_unwind(|| Document::load_mem_with_options(bytes, options));
    let Some(left) = ROOM.replace(None) else {
        return Err(Unscannable::TooComplex(
            "a PDF whose object streams hold so many objects".into(),
        ));
    };
    held.more(room.saturating_sub(left), what)?;
    let mut doc = match loaded {
        Ok(Ok(doc)) => doc,
        Ok(Err(e)) => return Err(Unscannable::Corrupt(format!("not a readable PDF: {e}"))),
        Err(_) => return Err(Unscannable::Corrupt("not a readable PDF".into())),
    };
    budget.check_time()?;
    if doc.is_encrypted() && doc.encryption_state.is_none() && doc.decrypt("").is_err() {
        // Needs a user password: encrypted for its recipient.
        out.encrypted.push((location.to_string(), "PDF /Encrypt"));
        return Ok(());
    }
    let mut w = Writer::new(out);
    let pages = page_list(&doc)?;
    for (n, page) in pages.into_iter().enumerate() {
        budget.check_time()?;
        if w.full() {
            break;
        }
        let page_text = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            page_text(&doc, page, budget, &mut w)
        }));
        match page_text {
            Ok(r) => r?,
            Err(_) => {
                return Err(Unscannable::Corrupt(format!(
                    "page {} cannot be read",
                    n + 1
                )));
            }
        }
        if !w.ends_with_line_break() {
            w.push('\n');
        }
    }
    w.finish(location, out);
    Ok(())
}

/// The pages in order, walking Kids depth first, at most [`MAX_TREE_DEPTH`] levels and
/// [`MAX_PAGES`] pages. A node met twice (a Kids array pointing back at an ancestor, or one
/// page in two places) is a damaged or hostile file: no PDF writer makes one, and a reader that
/// skipped it would be guessing at what the recipient's reader shows.
fn page_list(doc: &Document) -> Result<Vec<ObjectId>, Unscannable> {
    let mut pages = Vec::new();
    let Ok(root) = doc
        .catalog()
        .and_then(|c| c.get(b"Pages"))
        .and_then(Object::as_reference)
    else {
        return Ok(pages);
    };
    let mut seen = HashSet::new();
    let mut stack = vec![(root, 0usize)];
    while let Some((id, depth)) = stack.pop() {
        if depth > MAX_TREE_DEPTH {
            return Err(Unscannable::Corrupt(
                "the page tree is nested too deep".into(),
            ));
        }
        if !seen.insert(id) {
            return Err(Unscannable::Corrupt(
                "the page tree loops back on itself".into(),
            ));
        }
        let Ok(node) = doc.get_dictionary(id) else {
            continue;
        };
        match node.get(b"Kids").and_then(Object::as_array) {
            Ok(kids) => {
                for kid in kids.iter().rev() {
                    if let Ok(kid) = kid.as_reference() {
                        stack.push((kid, depth + 1));
                    }
                }
            }
            Err(_) => {
                if pages.len() >= MAX_PAGES {
                    return Err(Unscannable::TooMany(format!(
                        "a PDF with more than {MAX_PAGES} pages"
                    )));
                }
                pages.push(id);
            }
        }
    }
    Ok(pages)
}

/// A page's content streams, decompressed through the budget.
/// What each stream will cost once decoded into operations (its bytes, and its tokens) is held
/// in `held` before the stream is kept: counted as it inflates, for a compressed one.
fn page_content(
    doc: &Document,
    page: ObjectId,
    budget: &Budget,
    held: &mut Held<'_>,
) -> Result<Vec<u8>, Unscannable> {
    let what = "a PDF page's content";
    let mut content = Vec::new();
    for id in doc.get_page_contents(page) {
        let Ok(stream) = doc.get_object(id).and_then(Object::as_stream) else {
            continue;
        };
        let filters = stream.filters().unwrap_or_default();
        let data = match filters.as_slice() {
            [] => {
                held.more(cost_of(&stream.content[..]), what)?;
                stream.content.clone()
            }
            [b"FlateDecode"] => {
                let room = budget.room().saturating_add(1);
                held.more(
                    cost_of(ZlibDecoder::new(&stream.content[..]).take(room)),
                    what,
                )?;
                let compressed = stream.content.len() as u64;
                match budget.read_all(ZlibDecoder::new(&stream.content[..]), compressed) {
                    Ok(d) => d,
                    Err(Unscannable::Corrupt(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
            // Other chains were proven by `prove_streams` before the file was loaded.
            _ => match stream.decompressed_content() {
                Ok(d) => {
                    held.more(cost_of(&d[..]), what)?;
                    d
                }
                Err(_) => continue,
            },
        };
        if content.is_empty() {
            content = data;
        } else {
            content.extend_from_slice(&data);
        }
        content.push(b'\n');
    }
    Ok(content)
}

/// What content read from `reader` costs kept and decoded into operations: its bytes, and
/// [`TOKEN_COST`] a token. Counted in chunks (a token cut by a chunk's end counts twice).
fn cost_of(mut reader: impl Read) -> u64 {
    let mut buf = [0u8; 64 << 10];
    let mut cost = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => return cost,
            Ok(n) => {
                let chunk = buf.get(..n).unwrap_or_default();
                cost = cost
                    .saturating_add(n as u64)
                    .saturating_add(tokens(chunk).saturating_mul(TOKEN_COST));
            }
        }
    }
}

/// A PDF matrix `[a b c d e f]`.
type Matrix = [f32; 6];

const IDENTITY: Matrix = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];

/// `m × n`, as PDF composes matrices (row vectors).
fn mul(m: &Matrix, n: &Matrix) -> Matrix {
    [
        m[0] * n[0] + m[1] * n[2],
        m[0] * n[1] + m[1] * n[3],
        m[2] * n[0] + m[3] * n[2],
        m[2] * n[1] + m[3] * n[3],
        m[4] * n[0] + m[5] * n[2] + n[4],
        m[4] * n[1] + m[5] * n[3] + n[5],
    ]
}

fn translate(tx: f32, ty: f32) -> Matrix {
    [1.0, 0.0, 0.0, 1.0, tx, ty]
}

/// How wide a font's glyphs are, in thousandths of the font size.
#[derive(Debug, Default)]
struct Widths {
    /// A simple font's `/FirstChar` and `/Widths`.
    first: i64,
    widths: Vec<f32>,
    missing: f32,
    /// A composite (Type0) font: two-byte codes, widths by CID ranges (first, last, width).
    two_byte: bool,
    cids: Vec<(u32, u32, f32)>,
    default_cid: f32,
    /// Every glyph as wide as every other (Courier), when no widths are given.
    fixed: bool,
}

impl Widths {
    fn of(doc: &Document, font: &lopdf::Dictionary) -> Widths {
        let number = |o: &Object| doc.dereference(o).ok().and_then(|(_, o)| o.as_float().ok());
        let array = |o: &Object| {
            doc.dereference(o)
                .ok()
                .and_then(|(_, o)| o.as_array().ok())
                .cloned()
                .unwrap_or_default()
        };
        let mut w = Widths {
            fixed: font
                .get(b"BaseFont")
                .and_then(Object::as_name)
                .is_ok_and(|n| memchr::memmem::find(n, b"Courier").is_some()),
            default_cid: 1000.0,
            ..Widths::default()
        };
        if font.get(b"Subtype").and_then(Object::as_name).ok() == Some(b"Type0") {
            w.two_byte = true;
            let descendant = font
                .get(b"DescendantFonts")
                .map(array)
                .ok()
                .and_then(|a| a.first().cloned())
                .and_then(|d| {
                    doc.dereference(&d)
                        .ok()
                        .and_then(|(_, d)| d.as_dict().ok().cloned())
                });
            if let Some(d) = descendant {
                if let Some(dw) = d.get(b"DW").ok().and_then(number) {
                    w.default_cid = dw;
                }
                let list = d.get(b"W").map(array).unwrap_or_default();
                let mut i = 0;
                while let Some(first) = list.get(i).and_then(number) {
                    let first = first as u32;
                    match list.get(i + 1) {
                        Some(next)
                            if doc
                                .dereference(next)
                                .is_ok_and(|(_, o)| o.as_array().is_ok()) =>
                        {
                            for (k, width) in array(next).iter().filter_map(number).enumerate() {
                                let c = first.saturating_add(k as u32);
                                w.cids.push((c, c, width));
                            }
                            i += 2;
                        }
                        Some(last) => {
                            let last = number(last).unwrap_or(0.0) as u32;
                            let width = list.get(i + 2).and_then(number).unwrap_or(w.default_cid);
                            w.cids.push((first, last, width));
                            i += 3;
                        }
                        None => break,
                    }
                }
                w.cids.sort_by_key(|&(first, _, _)| first);
            }
            return w;
        }
        w.first = font.get(b"FirstChar").ok().and_then(number).unwrap_or(0.0) as i64;
        w.widths = font
            .get(b"Widths")
            .map(array)
            .unwrap_or_default()
            .iter()
            .filter_map(number)
            .collect();
        w.missing = font
            .get(b"FontDescriptor")
            .ok()
            .and_then(|d| doc.dereference(d).ok())
            .and_then(|(_, d)| d.as_dict().ok())
            .and_then(|d| d.get(b"MissingWidth").ok())
            .and_then(number)
            .unwrap_or(0.0);
        w
    }

    /// The glyphs of `bytes` (shown as `text`): each glyph's width in thousandths and whether
    /// it is a single-byte space (which word spacing widens).
    fn glyphs(&self, bytes: &[u8], text: &str, out: &mut Vec<(f32, bool)>) {
        out.clear();
        if self.two_byte {
            for pair in bytes.chunks(2) {
                let cid = pair.iter().fold(0u32, |c, &b| c << 8 | u32::from(b));
                let at = self.cids.partition_point(|&(first, _, _)| first <= cid);
                let width = at
                    .checked_sub(1)
                    .and_then(|k| self.cids.get(k))
                    .filter(|&&(_, last, _)| cid <= last)
                    .map_or(self.default_cid, |&(_, _, w)| w);
                out.push((width, false));
            }
        } else if !self.widths.is_empty() {
            for &b in bytes {
                let width = usize::try_from(i64::from(b).saturating_sub(self.first))
                    .ok()
                    .and_then(|k| self.widths.get(k).copied())
                    .unwrap_or(if self.missing > 0.0 {
                        self.missing
                    } else {
                        500.0
                    });
                out.push((width, b == b' '));
            }
        } else {
            // No widths given (one of the standard fonts): Courier's, or Helvetica's roughly.
            for c in text.chars() {
                out.push((
                    if self.fixed {
                        600.0
                    } else {
                        estimated_width(c)
                    },
                    c == ' ',
                ));
            }
        }
    }
}

/// A character's width in Helvetica, roughly, in thousandths of the font size.
fn estimated_width(c: char) -> f32 {
    match c {
        ' ' => 278.0,
        'i' | 'j' | 'l' | 'I' | '.' | ',' | ';' | ':' | '!' | '\'' | '|' => 250.0,
        'f' | 't' | 'r' | '(' | ')' | '-' => 333.0,
        'm' | 'w' | 'M' | 'W' | '@' => 850.0,
        'A'..='Z' => 680.0,
        '0'..='9' => 556.0,
        _ => 530.0,
    }
}

/// The text state (PDF 32000 §9.3) and where the text is (§9.4).
struct TextState {
    ctm: Matrix,
    stack: Vec<Matrix>,
    tm: Matrix,
    line: Matrix,
    size: f32,
    char_spacing: f32,
    word_spacing: f32,
    scale: f32,
    leading: f32,
    new_block: bool,
    moved: bool,
}

/// Graphics states saved (q) at once: deeper nesting is not kept.
const MAX_SAVED: usize = 64;

impl TextState {
    fn new() -> TextState {
        TextState {
            ctm: IDENTITY,
            stack: Vec::new(),
            tm: IDENTITY,
            line: IDENTITY,
            size: 0.0,
            char_spacing: 0.0,
            word_spacing: 0.0,
            scale: 1.0,
            leading: 0.0,
            new_block: false,
            moved: false,
        }
    }

    fn next_line(&mut self, tx: f32, ty: f32) {
        self.line = mul(&translate(tx, ty), &self.line);
        self.tm = self.line;
        self.moved = true;
    }

    /// Places `text`, glyphs of `widths` then moves past them; TJ adjustments in `adjust`
    /// (thousandths, after the glyph at that index).
    fn show(&mut self, text: String, glyphs: &[(f32, bool)], adjust: &[(usize, f32)]) -> Run {
        let at = mul(&self.tm, &self.ctm);
        let mut advance = 0.0f32;
        let mut next = adjust.iter().peekable();
        for (i, &(width, space)) in glyphs.iter().enumerate() {
            while let Some(&&(_, a)) = next.peek().filter(|(k, _)| *k <= i) {
                advance -= a / 1000.0 * self.size * self.scale;
                next.next();
            }
            let spacing = self.char_spacing + if space { self.word_spacing } else { 0.0 };
            advance += (width / 1000.0 * self.size + spacing) * self.scale;
        }
        for &(_, a) in next {
            advance -= a / 1000.0 * self.size * self.scale;
        }
        let start = at;
        if advance.is_finite() {
            self.tm = mul(&translate(advance, 0.0), &self.tm);
        }
        let end = mul(&self.tm, &self.ctm);
        // The baseline's direction: positions are taken along it and across it, so that text
        // turned on the page (a landscape table) still reads as lines.
        let angle = start[1].atan2(start[0]);
        let angle = if angle.is_finite() { angle } else { 0.0 };
        let (sin, cos) = angle.sin_cos();
        let along = |m: &Matrix| m[4] * cos + m[5] * sin;
        let across = |m: &Matrix| m[5] * cos - m[4] * sin;
        let size = (self.size * (start[2].hypot(start[3]))).abs();
        let run = Run {
            text,
            x: along(&start),
            y: across(&start),
            end: along(&end),
            size: if size.is_finite() { size } else { 0.0 },
            new_block: self.new_block,
            moved: self.moved,
            angle: angle.to_degrees().round() as i16,
        };
        self.new_block = false;
        self.moved = false;
        run
    }
}

fn page_text(
    doc: &Document,
    page: ObjectId,
    budget: &Budget,
    w: &mut Writer,
) -> Result<(), Unscannable> {
    let fonts = doc.get_page_fonts(page).unwrap_or_default();
    let fonts: Vec<(Vec<u8>, Encoding<'_>, Widths)> = fonts
        .into_iter()
        .filter_map(|(name, font)| {
            let encoding = font.get_font_encoding(doc).ok()?;
            Some((name, encoding, Widths::of(doc, font)))
        })
        .collect();
    let mut held = budget.hold(0, "a PDF page's content")?;
    let data = page_content(doc, page, budget, &mut held)?;
    let Ok(content) = Content::decode(&data) else {
        return Ok(());
    };
    let mut font: Option<&(Vec<u8>, Encoding<'_>, Widths)> = None;
    let mut state = TextState::new();
    let mut runs: Vec<Run> = Vec::new();
    let mut kept = 0usize;
    let mut glyphs = Vec::new();
    for op in &content.operations {
        let number = |i: usize| {
            op.operands
                .get(i)
                .and_then(|o| o.as_float().ok())
                .filter(|n| n.is_finite())
        };
        let matrix = || -> Option<Matrix> {
            Some([
                number(0)?,
                number(1)?,
                number(2)?,
                number(3)?,
                number(4)?,
                number(5)?,
            ])
        };
        match op.operator.as_str() {
            "q" if state.stack.len() < MAX_SAVED => state.stack.push(state.ctm),
            "Q" => {
                if let Some(m) = state.stack.pop() {
                    state.ctm = m;
                }
            }
            "cm" => {
                if let Some(m) = matrix() {
                    state.ctm = mul(&m, &state.ctm);
                }
            }
            "BT" => {
                state.tm = IDENTITY;
                state.line = IDENTITY;
                state.new_block = true;
            }
            "Tf" => {
                font = op
                    .operands
                    .first()
                    .and_then(|o| o.as_name().ok())
                    .and_then(|n| fonts.iter().find(|(name, _, _)| name == n));
                state.size = number(1).unwrap_or(0.0);
            }
            "Tc" => state.char_spacing = number(0).unwrap_or(0.0),
            "Tw" => state.word_spacing = number(0).unwrap_or(0.0),
            "Tz" => state.scale = number(0).unwrap_or(100.0) / 100.0,
            "TL" => state.leading = number(0).unwrap_or(0.0),
            "Td" => state.next_line(number(0).unwrap_or(0.0), number(1).unwrap_or(0.0)),
            "TD" => {
                let ty = number(1).unwrap_or(0.0);
                state.leading = -ty;
                state.next_line(number(0).unwrap_or(0.0), ty);
            }
            "Tm" => {
                if let Some(m) = matrix() {
                    state.line = m;
                    state.tm = m;
                    state.moved = true;
                }
            }
            "T*" => state.next_line(0.0, -state.leading),
            "Tj" | "TJ" | "'" | "\"" => {
                if op.operator == "\"" {
                    state.word_spacing = number(0).unwrap_or(state.word_spacing);
                    state.char_spacing = number(1).unwrap_or(state.char_spacing);
                }
                if matches!(op.operator.as_str(), "'" | "\"") {
                    state.next_line(0.0, -state.leading);
                }
                let Some((_, encoding, widths)) = font else {
                    continue;
                };
                let operands = if op.operator == "\"" {
                    op.operands.get(2..).unwrap_or_default()
                } else {
                    &op.operands[..]
                };
                let mut shown = String::new();
                let mut bytes = Vec::new();
                let mut adjust = Vec::new();
                collect_text(&mut shown, encoding, operands);
                collect_bytes(&mut bytes, &mut adjust, operands, widths.two_byte);
                widths.glyphs(&bytes, &shown, &mut glyphs);
                if widths.widths.is_empty() && !widths.two_byte {
                    // Estimated from the text, which has no positions for adjustments.
                    adjust.clear();
                }
                let run = state.show(shown, &glyphs, &adjust);
                if run.text.is_empty() {
                    continue;
                }
                kept += run.text.len();
                runs.push(run);
                if kept > w.room() {
                    break;
                }
            }
            _ => {}
        }
    }
    for paragraph in layout::paragraphs(&runs) {
        if !w.ends_with_line_break() {
            w.push('\n');
        }
        if !w.push_str(&paragraph) {
            return Ok(());
        }
    }
    Ok(())
}

/// The bytes of a text operation's strings, and each TJ adjustment with the index of the glyph
/// it comes before.
fn collect_bytes(
    bytes: &mut Vec<u8>,
    adjust: &mut Vec<(usize, f32)>,
    operands: &[Object],
    two_byte: bool,
) {
    for operand in operands {
        match operand {
            Object::String(b, _) => bytes.extend_from_slice(b),
            Object::Array(items) => collect_bytes(bytes, adjust, items, two_byte),
            Object::Integer(_) | Object::Real(_) => {
                if let Ok(n) = operand.as_float() {
                    let glyph = if two_byte {
                        bytes.len() / 2
                    } else {
                        bytes.len()
                    };
                    adjust.push((glyph, n));
                }
            }
            _ => {}
        }
    }
}

/// lopdf's own `collect_text`: strings decoded by the font's encoding, a wide gap in a TJ
/// array as a space.
fn collect_text(text: &mut String, encoding: &Encoding<'_>, operands: &[Object]) {
    for operand in operands {
        match operand {
            Object::String(bytes, _) => {
                let _ = encoding.write_to_string(bytes, text);
            }
            Object::Array(items) => collect_text(text, encoding, items),
            Object::Integer(i) if *i < -200 => text.push(' '),
            Object::Real(r) if *r < -200.0 => text.push(' '),
            _ => {}
        }
    }
}

/// What lopdf will parse of a file outside its streams' data, as [`prove_streams`] found it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Syntax {
    /// Tokens of the file's own syntax (its objects, its cross-reference table).
    tokens: u64,
    /// Objects the object streams' dictionaries declare (`/N`), as far as they can be told
    /// here: for an encrypted file, [`admit`] is not called and this is the only count.
    declared_objects: u64,
}

impl Syntax {
    /// What lopdf builds from it.
    fn cost(&self) -> u64 {
        self.tokens
            .saturating_mul(TOKEN_COST)
            .saturating_add(self.declared_objects.saturating_mul(OBJECT_COST))
    }
}

/// Expands, through the budget and without keeping the result, every stream lopdf could
/// expand: any filter chain up to the first filter lopdf does not know (it stops there).
/// Counts, on the way, the syntax lopdf will parse outside the streams.
fn prove_streams(bytes: &[u8], budget: &Budget) -> Result<Syntax, Unscannable> {
    let finder = memchr::memmem::Finder::new(b"stream");
    let end_finder = memchr::memmem::Finder::new(b"endstream");
    let mut syntax = Syntax::default();
    let mut outside = 0usize;
    let mut at = 0usize;
    let mut count = 0u32;
    while let Some(found) = bytes.get(at..).and_then(|rest| finder.find(rest)) {
        let keyword = at + found;
        at = keyword + 6;
        // "endstream" also contains "stream".
        if keyword >= 3 && bytes.get(keyword - 3..keyword) == Some(b"end") {
            continue;
        }
        count = count.wrapping_add(1);
        if count.is_multiple_of(64) {
            budget.check_time()?;
        }
        let mut start = at;
        if bytes.get(start) == Some(&b'\r') {
            start += 1;
        }
        if bytes.get(start) == Some(&b'\n') {
            start += 1;
        }
        let Some(len) = bytes.get(start..).and_then(|rest| end_finder.find(rest)) else {
            break;
        };
        let data = bytes.get(start..start + len).unwrap_or_default();
        syntax.tokens += tokens(bytes.get(outside..keyword).unwrap_or_default());
        at = start + len + 9;
        outside = at;
        let dict_start = keyword.saturating_sub(4096);
        let before = bytes.get(dict_start..keyword).unwrap_or_default();
        // The dictionary: from the last "obj" before the keyword.
        let dict = memchr::memmem::rfind(before, b"obj")
            .and_then(|o| before.get(o..))
            .unwrap_or(before);
        if contains(dict, b"/ObjStm") {
            syntax.declared_objects = syntax.declared_objects.saturating_add(declared_count(dict));
        }
        // Refused as soon as it is known, before the rest is expanded.
        if syntax.cost() > budget.room() {
            return Err(Unscannable::TooComplex("a PDF's objects".into()));
        }
        prove_stream(dict, data, budget)?;
    }
    syntax.tokens += tokens(bytes.get(outside..).unwrap_or_default());
    Ok(syntax)
}

/// The `/N` of an object stream's dictionary.
fn declared_count(dict: &[u8]) -> u64 {
    let Some(at) = memchr::memmem::find(dict, b"/N") else {
        return 0;
    };
    let rest = dict.get(at + 2..).unwrap_or_default();
    if rest.first().is_some_and(u8::is_ascii_alphanumeric) {
        return 0; // another name, /Nums say
    }
    let digits: String = rest
        .trim_ascii_start()
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .take(19)
        .map(|&b| char::from(b))
        .collect();
    digits.parse().unwrap_or(0)
}

/// Tokens of PDF syntax in `bytes`, roughly as lopdf's parser will meet them: each run of
/// regular characters and each delimiter counts one.
fn tokens(bytes: &[u8]) -> u64 {
    let mut count = 0u64;
    let mut in_token = false;
    for &b in bytes {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' | b'\x0C' | 0 => in_token = false,
            b'[' | b']' | b'<' | b'>' | b'(' | b')' | b'{' | b'}' | b'/' | b'%' => {
                count += 1;
                in_token = b == b'/';
            }
            _ => {
                if !in_token {
                    count += 1;
                    in_token = true;
                }
            }
        }
    }
    count
}

/// lopdf's load filter: called with each object read at an offset the cross-reference table
/// gives, and with each object of an object stream. An object stream's objects are counted
/// here, before lopdf builds them, against what may still be built ([`ROOM`]); past it the
/// stream is dropped and the load is refused afterwards.
fn admit(id: ObjectId, object: &mut Object) -> Option<(ObjectId, Object)> {
    let room = ROOM.get()?;
    if let Object::Stream(stream) = object {
        if stream.dict.has_type(b"ObjStm") {
            match object_stream_cost(stream, room) {
                Some(cost) if cost <= room => ROOM.set(Some(room - cost)),
                _ => {
                    ROOM.set(None);
                    return None;
                }
            }
        }
        // lopdf goes on with the object it passed in (a stream is never inside an object
        // stream, where the returned object is the one kept).
        return Some((id, Object::Null));
    }
    Some((id, object.clone()))
}

/// What lopdf builds from an object stream, as its reader does it: the expanded stream, kept,
/// and each (object number, offset) pair of the index parsed into an object from its offset.
/// `None` as soon as it is past `room`.
fn object_stream_cost(stream: &Stream, room: u64) -> Option<u64> {
    let filters = stream.filters().unwrap_or_default();
    let first = stream
        .dict
        .get(b"First")
        .and_then(Object::as_i64)
        .ok()
        .and_then(|f| usize::try_from(f).ok());
    // The index first, read as it inflates: a stream of millions of objects is refused
    // without being expanded in full.
    if let (Some(first), [b"FlateDecode"]) = (first, filters.as_slice()) {
        let index = ZlibDecoder::new(&stream.content[..]).take(first as u64);
        let pairs = index_tokens(index, room / OBJECT_COST * 2 + 2) / 2;
        if pairs.saturating_mul(OBJECT_COST) > room {
            return None;
        }
    }
    let data: Cow<'_, [u8]> = match filters.as_slice() {
        [] => Cow::Borrowed(&stream.content),
        [b"FlateDecode"] => {
            let mut out = Vec::new();
            let _ = ZlibDecoder::new(&stream.content[..])
                .take(room.saturating_add(1))
                .read_to_end(&mut out);
            Cow::Owned(out)
        }
        // Proven by `prove_streams` before the file was loaded.
        _ => Cow::Owned(
            stream
                .decompressed_content()
                .unwrap_or_else(|_| stream.content.clone()),
        ),
    };
    let mut cost = data.len() as u64;
    if cost > room {
        return None;
    }
    let Some((first, index)) = first.and_then(|f| Some((f, data.get(..f)?))) else {
        return Some(cost);
    };
    let Ok(index) = std::str::from_utf8(index) else {
        return Some(cost);
    };
    let mut numbers = index.split_whitespace().map(|n| n.parse::<u32>().ok());
    let mut offsets = Vec::new();
    while let (Some(id), Some(offset)) = (numbers.next(), numbers.next()) {
        let (Some(_), Some(offset)) = (id, offset) else {
            continue;
        };
        let at = first.saturating_add(offset as usize);
        if at < data.len() {
            cost = cost.saturating_add(OBJECT_COST);
            if cost > room {
                return None;
            }
            offsets.push(at);
        }
    }
    // An object is parsed from its offset to its own end, however many pairs point there.
    offsets.sort_unstable();
    for same in offsets.chunk_by(|a, b| a == b) {
        let at = same[0];
        let rest = data.get(at..).unwrap_or_default();
        let parsed = tokens(rest.get(..extent(rest)).unwrap_or_default());
        cost = cost.saturating_add(
            parsed
                .saturating_mul(TOKEN_COST)
                .saturating_mul(same.len() as u64),
        );
        if cost > room {
            return None;
        }
    }
    Some(cost)
}

/// Tokens separated by white space that `reader` yields, counted up to `most` (then it stops
/// reading).
fn index_tokens(mut reader: impl Read, most: u64) -> u64 {
    let mut buf = [0u8; 16 << 10];
    let mut count = 0u64;
    let mut in_token = false;
    while count < most {
        let n = match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in buf.get(..n).unwrap_or_default() {
            if b.is_ascii_whitespace() {
                in_token = false;
            } else if !in_token {
                in_token = true;
                count += 1;
            }
        }
    }
    count
}

/// The length of the direct object at the start of `data` (after white space): an array or
/// dictionary to its matching close, a string to its closing parenthesis, else one token.
fn extent(data: &[u8]) -> usize {
    let mut depth = 0usize;
    let mut i = 0usize;
    let mut started = false;
    while let Some(&b) = data.get(i) {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' | b'\x0C' | 0 => {
                if started && depth == 0 {
                    return i;
                }
                i += 1;
            }
            b'(' => {
                // A literal string: balanced parentheses, backslash escapes.
                let mut nest = 0usize;
                while let Some(&c) = data.get(i) {
                    i += 1;
                    match c {
                        b'\\' => i += 1,
                        b'(' => nest += 1,
                        b')' => {
                            nest -= 1;
                            if nest == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                if depth == 0 {
                    return i.min(data.len());
                }
            }
            b'[' => {
                depth += 1;
                started = true;
                i += 1;
            }
            b'<' if data.get(i + 1) == Some(&b'<') => {
                depth += 1;
                started = true;
                i += 2;
            }
            b']' | b'>' => {
                let close = if b == b'>' && data.get(i + 1) == Some(&b'>') {
                    2
                } else {
                    1
                };
                i += close;
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i.min(data.len());
                }
            }
            _ => {
                started = true;
                i += 1;
            }
        }
    }
    data.len()
}

fn prove_stream(dict: &[u8], data: &[u8], budget: &Budget) -> Result<(), Unscannable> {
    let filters = filter_names(dict);
    let image = contains(dict, b"/Image");
    let flate = |f: &str| matches!(f, "FlateDecode" | "Fl");
    // zlib data is proven whatever its dictionary seems to say: the dictionary read here
    // is a guess (the one lopdf reads may differ), and a failed guess costs nothing.
    if looks_like_zlib(data) && !filters.first().is_some_and(|f| flate(f)) {
        inflate_to_nothing(data, budget, image)?;
    }
    let expanding =
        |f: &str| flate(f) || matches!(f, "LZWDecode" | "LZW" | "ASCII85Decode" | "A85");
    let mut current: Cow<'_, [u8]> = Cow::Borrowed(data);
    for (i, f) in filters.iter().enumerate() {
        let last = !filters
            .get(i + 1..)
            .unwrap_or_default()
            .iter()
            .any(|f| expanding(f));
        match f.as_str() {
            "FlateDecode" | "Fl" if last => return inflate_to_nothing(&current, budget, image),
            "FlateDecode" | "Fl" => {
                let compressed = current.len() as u64;
                let mut metered = Metered::new(ZlibDecoder::new(&current[..]), budget, compressed);
                let mut next = Vec::new();
                if metered.read_to_end(&mut next).is_err() {
                    // A limit, or damaged data (lopdf fails on it the same way).
                    return metered.stopped.take().map_or(Ok(()), Err);
                }
                current = Cow::Owned(next);
            }
            "LZWDecode" | "LZW" => {
                if !last {
                    return Err(Unscannable::Corrupt(
                        "a PDF stream compressed twice in a way that cannot be checked".into(),
                    ));
                }
                let expanded = lzw_expanded_len(&current);
                budget.charge(expanded)?;
                return budget.check_ratio(expanded, current.len() as u64);
            }
            "ASCII85Decode" | "A85" => {
                let decoded = ascii85(&current);
                budget.charge(decoded.len() as u64)?;
                current = Cow::Owned(decoded);
            }
            // lopdf stops at a filter it does not know.
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// Most bytes an image stream may expand to. Images are not charged to the budget (reading
/// text never expands them, and a scanned letter's pixels are not a bomb), but a stream marked
/// as an image could still be used as page content, so it is bounded all the same.
const MAX_IMAGE: u64 = 512 << 20;

/// Inflates `data` without keeping it: charged to the budget, or for an image checked only
/// against the ratio, [`MAX_IMAGE`] and the deadline. Damaged data is not an error here.
fn inflate_to_nothing(data: &[u8], budget: &Budget, image: bool) -> Result<(), Unscannable> {
    let compressed = data.len() as u64;
    if !image {
        let mut metered = Metered::new(ZlibDecoder::new(data), budget, compressed);
        return match std::io::copy(&mut metered, &mut std::io::sink()) {
            Ok(_) => Ok(()),
            Err(_) => metered.stopped.take().map_or(Ok(()), Err),
        };
    }
    let mut decoder = ZlibDecoder::new(data);
    let mut buf = vec![0u8; 64 << 10];
    let mut expanded = 0u64;
    let mut reads = 0u32;
    loop {
        match decoder.read(&mut buf) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(n) => {
                expanded = expanded.saturating_add(n as u64);
                budget.check_ratio(expanded, compressed)?;
                if expanded > MAX_IMAGE {
                    return Err(Unscannable::TooLarge(MAX_IMAGE));
                }
                reads = reads.wrapping_add(1);
                if reads.is_multiple_of(64) {
                    budget.check_time()?;
                }
            }
        }
    }
}

/// A zlib header: deflate, and the check bits right.
fn looks_like_zlib(data: &[u8]) -> bool {
    match data {
        [cmf, flg, ..] => cmf & 0x0F == 8 && (u16::from(*cmf) * 256 + u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// The names in a dictionary's /Filter entry (a name or an array of names).
fn filter_names(dict: &[u8]) -> Vec<String> {
    let Some(at) = memchr::memmem::find(dict, b"/Filter") else {
        return Vec::new();
    };
    let rest = dict.get(at + 7..).unwrap_or_default();
    let rest = rest.get(..rest.len().min(512)).unwrap_or_default();
    let rest = rest.trim_ascii_start();
    let (list, array) = match rest.strip_prefix(b"[") {
        Some(inner) => (inner, true),
        None => (rest, false),
    };
    let mut names = Vec::new();
    for token in list.split(|&b| b == b'/').skip(1) {
        let name: String = token
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .map(|&b| char::from(b))
            .collect();
        let after = token.get(name.len()..).unwrap_or_default().trim_ascii();
        names.push(name);
        if !array || after.starts_with(b"]") {
            break;
        }
    }
    names
}

/// The length an LZW stream (PDF's variant: MSB first, 9–12 bit codes, 256 clear, 257 end,
/// early change) expands to, counted without building the strings.
fn lzw_expanded_len(data: &[u8]) -> u64 {
    let mut lengths: Vec<u64> = Vec::with_capacity(4096);
    let reset = |lengths: &mut Vec<u64>| {
        lengths.clear();
        lengths.extend(std::iter::repeat_n(1, 256));
        lengths.extend([0, 0]);
    };
    reset(&mut lengths);
    let mut width = 9u32;
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut previous: Option<u64> = None;
    let mut total = 0u64;
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= width {
            bits -= width;
            let code = ((acc >> bits) & ((1 << width) - 1)) as usize;
            acc &= (1 << bits) - 1;
            match code {
                256 => {
                    reset(&mut lengths);
                    width = 9;
                    previous = None;
                    continue;
                }
                257 => return total,
                _ => {}
            }
            let len = match lengths.get(code) {
                Some(&l) => l,
                // The code being defined right now: previous string plus its first byte.
                None => previous.map_or(1, |p| p + 1),
            };
            if let Some(p) = previous
                && lengths.len() < 4096
            {
                lengths.push(p + 1);
            }
            previous = Some(len);
            total = total.saturating_add(len);
            if lengths.len() + 1 >= (1 << width) && width < 12 {
                width += 1;
            }
        }
    }
    total
}

/// ASCII85 decoded (lenient: stray characters skipped); at most four times the input.
fn ascii85(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut group = [0u32; 5];
    let mut n = 0usize;
    let body = data.strip_prefix(b"<~").unwrap_or(data);
    for &c in body {
        match c {
            b'~' => break,
            b'z' if n == 0 => out.extend_from_slice(&[0; 4]),
            b'!'..=b'u' => {
                if let Some(slot) = group.get_mut(n) {
                    *slot = u32::from(c - b'!');
                }
                n += 1;
                if n == 5 {
                    let v = group
                        .iter()
                        .fold(0u32, |v, &d| v.wrapping_mul(85).wrapping_add(d));
                    out.extend_from_slice(&v.to_be_bytes());
                    n = 0;
                }
            }
            _ => {}
        }
    }
    if n > 1 {
        for slot in group.iter_mut().skip(n) {
            *slot = 84;
        }
        let v = group
            .iter()
            .fold(0u32, |v, &d| v.wrapping_mul(85).wrapping_add(d));
        out.extend_from_slice(v.to_be_bytes().get(..n - 1).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::policy::sensitive::extract::tests::{all_text, open};

    #[test]
    fn a_pdf_reads_as_lines_of_text() {
        let out = open(
            "report.pdf",
            include_bytes!("../../../../fixtures/extract/report.pdf"),
        )
        .unwrap();
        let text = all_text(&out);
        assert!(text.contains("Pupil progress report"), "{text}");
        assert!(text.contains("Ada Lovelace"), "{text}");
        assert!(text.contains("A123456789012"), "{text}");
        assert!(text.contains("Page two"), "{text}");
    }

    /// A PDF written by hand: `objects` numbered from 1, with a correct xref table.
    fn pdf_of(objects: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"%PDF-1.4\n".to_vec();
        let mut offsets = Vec::new();
        for (i, o) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
            out.extend_from_slice(o);
            out.extend_from_slice(b"\nendobj\n");
        }
        let xref = out.len();
        out.extend_from_slice(
            format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
        );
        for o in offsets {
            out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .as_bytes(),
        );
        out
    }

    fn stream(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut o = format!("<< {dict} /Length {} >>\nstream\n", data.len()).into_bytes();
        o.extend_from_slice(data);
        o.extend_from_slice(b"\nendstream");
        o
    }

    fn font() -> Vec<u8> {
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec()
    }

    /// A one-page PDF in Helvetica showing `content`.
    fn page_of(content: &[u8]) -> Vec<u8> {
        pdf_of(&[
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
            b"<< /Type /Page /Parent 2 0 R /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>".to_vec(),
            stream("", content),
            font(),
        ])
    }

    const LETTER: &[u8] = b"BT /F1 11 Tf 72 720 Td (Dear Mr and Mrs Smith,) Tj ET\n\
        BT /F1 11 Tf 72 690 Td 13.2 TL (I am writing to confirm that your son, Jamie Smith) Tj\n\
        (has received a fixed-term exclusion of two days for) ' (fighting at lunchtime.) ' ET\n\
        BT /F1 11 Tf 72 620 Td (Yours sincerely,) Tj ET";

    #[test]
    fn a_wrapped_sentence_reads_as_one_paragraph() {
        let out = open("letter.pdf", &page_of(LETTER)).unwrap();
        let text = all_text(&out);
        assert!(
            text.lines()
                .any(|l| l.contains("Jamie Smith has received a fixed-term exclusion")),
            "{text}"
        );
        assert!(
            text.lines().any(|l| l == "Dear Mr and Mrs Smith,"),
            "{text}"
        );
        assert!(text.lines().any(|l| l == "Yours sincerely,"), "{text}");
    }

    #[test]
    fn a_pupils_name_on_one_line_and_the_exclusion_on_the_next_is_held() {
        use crate::policy::sensitive::detect;
        let directory = crate::directory::Directory::parse(
            std::path::Path::new("d.csv"),
            b"role,name,school_email,personal_emails,personal_phones,date_of_birth,status\n\
              pupil,Jamie Smith,j.smith@pupils.school.sch.uk,,,2014-03-14,current\n",
            &[],
        )
        .unwrap();
        let out = open("letter.pdf", &page_of(LETTER)).unwrap();
        let tally = detect::scan(
            &out.texts,
            &directory,
            jiff::civil::date(2026, 11, 23),
            &detect::Vocabulary::new(&[], &[]),
        );
        assert_eq!(tally.special_category, 1, "{:?}", out.texts);
    }

    #[test]
    fn table_cells_and_columns_are_not_glued_into_sentences() {
        // A staff table, each cell its own text block; two columns written one after the other.
        let content = b"BT /F1 10 Tf 72 700 Td (Role) Tj ET BT /F1 10 Tf 220 700 Td (Name) Tj ET\n\
            BT /F1 10 Tf 72 686 Td (SENCO) Tj ET BT /F1 10 Tf 220 686 Td (Mrs G D'Arcy) Tj ET\n\
            BT /F1 10 Tf 72 672 Td (Year 7 chess winner) Tj ET BT /F1 10 Tf 220 672 Td (Jamie Smith) Tj ET\n\
            BT /F1 10 Tf 72 600 Td 12 TL (Congratulations to Jamie Smith and all) Tj (of the chess club.) ' ET\n\
            BT /F1 10 Tf 320 600 Td 12 TL (Our SENCO runs a coffee morning for) Tj (parents on Friday.) ' ET";
        let out = open("newsletter.pdf", &page_of(content)).unwrap();
        let text = all_text(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&"SENCO\tMrs G D'Arcy"), "{text}");
        assert!(
            lines.contains(&"Year 7 chess winner\tJamie Smith"),
            "{text}"
        );
        assert!(
            lines.contains(&"Congratulations to Jamie Smith and all of the chess club."),
            "{text}"
        );
        assert!(
            lines.contains(&"Our SENCO runs a coffee morning for parents on Friday."),
            "{text}"
        );
    }

    #[test]
    fn a_table_turned_on_its_side_still_reads_as_rows() {
        // A landscape class list printed on a portrait page: every baseline runs up the page.
        let content = b"BT /F1 10 Tf 0 1 -1 0 300 100 Tm (Name) Tj ET BT /F1 10 Tf 0 1 -1 0 300 250 Tm (UPN) Tj ET\n\
            BT /F1 10 Tf 0 1 -1 0 286 100 Tm (Jamie Smith) Tj ET BT /F1 10 Tf 0 1 -1 0 286 250 Tm (H801200001001) Tj ET";
        let out = open("list.pdf", &page_of(content)).unwrap();
        let text = all_text(&out);
        assert!(text.lines().any(|l| l == "Name\tUPN"), "{text}");
        assert!(
            text.lines().any(|l| l == "Jamie Smith\tH801200001001"),
            "{text}"
        );
    }

    #[test]
    fn hostile_numbers_in_fonts_and_matrices_are_read_without_a_panic() {
        // PDF numbers have no exponent: the largest reals written out in full.
        let big = "340000000000000000000000000000000000000.0";
        let content = format!(
            "BT /F1 {big} Tf {big} {big} {big} {big} {big} {big} Tm (huge) Tj\n\
             0 0 0 0 0 0 Tm (flat) Tj -{big} -{big} Td (far) Tj {big} Tz {big} Tc {big} Tw (wide words) Tj\n\
             [(kern) -{big} (ed)] TJ {big} TL T* (next) Tj ET\n\
             q {big} 0 0 {big} {big} {big} cm BT /F1 12 Tf 1 0 0 1 0 0 Tm (scaled) Tj ET Q Q Q"
        );
        let content = content.as_bytes();
        let font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /FirstChar -99999999999999999999.0 \
            /Widths [340000000000000000000000000000000000000.0 -340000000000000000000000000000000000000.0 0] /Encoding /WinAnsiEncoding >>"
            .to_vec();
        let pdf = pdf_of(&[
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
            b"<< /Type /Page /Parent 2 0 R /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>".to_vec(),
            stream("", content),
            font,
        ]);
        let out = open("hostile.pdf", &pdf).unwrap();
        let text = all_text(&out);
        for word in ["huge", "flat", "far", "wide words", "next", "scaled"] {
            assert!(text.contains(word), "{word}: {text}");
        }
    }

    #[test]
    fn a_cyclic_page_tree_does_not_hang() {
        // 2 is the page tree; its Kids hold the page and the tree itself.
        let content = b"BT /F1 12 Tf 72 700 Td (Round and round) Tj ET";
        let pdf = pdf_of(&[
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [3 0 R 2 0 R] /Count 2 >>".to_vec(),
            b"<< /Type /Page /Parent 2 0 R /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>".to_vec(),
            stream("", content),
            font(),
        ]);
        let started = Instant::now();
        let result = open("loop.pdf", &pdf);
        println!("elapsed: {:?}", started.elapsed());
        assert!(
            started.elapsed() < crate::policy::sensitive::extract::tests::quickly(),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            result.unwrap_err(),
            Unscannable::Corrupt("the page tree loops back on itself".into())
        );
    }

    /// A zlib stream of `megabytes` MiB of zeros (its checksum is not checked before the limit).
    fn zlib_zeros(megabytes: usize) -> Vec<u8> {
        let mut z = vec![0x78, 0xDA];
        z.extend(crate::policy::sensitive::extract::tests::zeros_deflate(
            megabytes,
        ));
        z.extend_from_slice(&[0, 0, 0, 1]);
        z
    }

    #[test]
    fn a_flate_bomb_inside_a_pdf_is_stopped_before_lopdf() {
        let bomb = zlib_zeros(1024);
        let pdf = pdf_of(&[
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
            b"<< /Type /Page /Parent 2 0 R /Contents 4 0 R >>".to_vec(),
            stream("/Filter /FlateDecode", &bomb),
        ]);
        let started = Instant::now();
        let err = open("bomb.pdf", &pdf).unwrap_err();
        assert!(
            matches!(err, Unscannable::Bomb(_) | Unscannable::TooLarge(_)),
            "{err:?}"
        );
        println!("elapsed: {:?}", started.elapsed());
        assert!(
            started.elapsed() < crate::policy::sensitive::extract::tests::quickly(),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_flate_stream_with_a_filter_array_is_proven_too() {
        let bomb = zlib_zeros(64);
        let dict = b"1 0 obj << /Filter [ /FlateDecode ] /Length 5 >>".to_vec();
        let err = prove_stream(
            &dict,
            &bomb,
            &crate::policy::sensitive::extract::tests::budget(),
        )
        .unwrap_err();
        assert!(matches!(err, Unscannable::Bomb(_)), "{err:?}");
    }

    #[test]
    fn a_bomb_whose_dictionary_is_out_of_sight_is_still_proven() {
        let err = prove_stream(
            b"",
            &zlib_zeros(64),
            &crate::policy::sensitive::extract::tests::budget(),
        )
        .unwrap_err();
        assert!(matches!(err, Unscannable::Bomb(_)), "{err:?}");
    }

    #[test]
    fn an_image_is_not_charged_but_a_bomb_image_is_stopped() {
        let limits = crate::config::ScanLimits {
            max_expanded_size: crate::config::ByteSize(1 << 20),
            max_scan_time: crate::config::HumanDuration(std::time::Duration::from_secs(600)),
            ..crate::config::ScanLimits::default()
        };
        let budget = Budget::new(&limits);
        // 4 MiB of noisy pixels, four times the allowance: fine, and not charged.
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(1));
        let mut seed = 1u32;
        let pixels: Vec<u8> = (0..4u32 << 20)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 30) as u8
            })
            .collect();
        std::io::Write::write_all(&mut z, &pixels).unwrap();
        let image = z.finish().unwrap();
        let dict = b"5 0 obj << /Type /XObject /Subtype /Image /Filter /FlateDecode >>";
        prove_stream(dict, &image, &budget).unwrap();
        budget.charge(1000).unwrap();
        let err = prove_stream(dict, &zlib_zeros(64), &budget).unwrap_err();
        assert!(matches!(err, Unscannable::Bomb(_)), "{err:?}");
    }

    /// An object stream holding `objects` (number, body) pairs, declaring `declared` of them.
    fn object_stream(objects: &[(u32, String)], declared: usize) -> Vec<u8> {
        let mut index = String::new();
        let mut body = String::new();
        for (n, o) in objects {
            index.push_str(&format!("{n} {} ", body.len()));
            body.push_str(o);
            body.push(' ');
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut z, format!("{index}{body}").as_bytes()).unwrap();
        stream(
            &format!(
                "/Type /ObjStm /N {declared} /First {} /Filter /FlateDecode",
                index.len()
            ),
            &z.finish().unwrap(),
        )
    }

    /// A one-page PDF whose font (object 7) is inside an object stream with `extra` tiny
    /// objects more (numbered from 100), declaring `declared` objects.
    fn pdf_with_object_stream(extra: u32, declared: Option<usize>) -> Vec<u8> {
        let content = b"BT /F1 12 Tf 72 700 Td (Ada Lovelace in a stream) Tj ET";
        let mut objects = vec![(7, String::from_utf8(font()).unwrap())];
        objects.extend((0..extra).map(|i| (100 + i, "0".to_string())));
        pdf_of(&[
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
            b"<< /Type /Page /Parent 2 0 R /Resources << /Font << /F1 7 0 R >> >> /Contents 4 0 R >>".to_vec(),
            stream("", content),
            object_stream(&objects, declared.unwrap_or(objects.len())),
        ])
    }

    #[test]
    fn an_object_stream_is_read_when_its_objects_fit() {
        let out = open("report.pdf", &pdf_with_object_stream(1000, None)).unwrap();
        assert!(
            all_text(&out).contains("Ada Lovelace in a stream"),
            "{out:?}"
        );
    }

    #[test]
    fn an_object_stream_of_too_many_objects_is_refused_before_lopdf_builds_them() {
        // 300,000 tiny objects: about 100 MB in lopdf's maps, from 1 MB of compressed stream.
        for declared in [None, Some(1), Some(0)] {
            let pdf = pdf_with_object_stream(300_000, declared);
            let started = Instant::now();
            let err = open("objects.pdf", &pdf).unwrap_err();
            assert!(
                matches!(err, Unscannable::TooComplex(_)),
                "{declared:?}: {err:?}"
            );
            assert!(err.to_string().contains("MiB of memory"), "{err}");
            assert!(
                started.elapsed() < crate::policy::sensitive::extract::tests::quickly(),
                "{:?}",
                started.elapsed()
            );
        }
    }

    #[test]
    fn many_index_pairs_pointing_at_one_big_array_are_counted_each_time() {
        // One array of 20,000 numbers, and 2,000 objects all parsed from it: small to send,
        // 40 million objects to build.
        let array = format!("[{}]", "1 ".repeat(20_000));
        let font = String::from_utf8(font()).unwrap();
        let body_at = font.len() + 1;
        let mut index = format!("7 0 8 {body_at} ");
        for i in 0..2000 {
            index.push_str(&format!("{} {body_at} ", 100 + i));
        }
        let body = format!("{font} {array} ");
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut z, format!("{index}{body}").as_bytes()).unwrap();
        let stm = stream(
            &format!(
                "/Type /ObjStm /N 2 /First {} /Filter /FlateDecode",
                index.len()
            ),
            &z.finish().unwrap(),
        );
        let pdf = pdf_of(&[
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
            b"<< /Type /Page /Parent 2 0 R /Contents 4 0 R >>".to_vec(),
            stream("", b"BT ET"),
            stm,
        ]);
        let err = open("arrays.pdf", &pdf).unwrap_err();
        assert!(matches!(err, Unscannable::TooComplex(_)), "{err:?}");
    }

    #[test]
    fn a_page_of_too_many_operands_is_refused_before_it_is_decoded() {
        // 4 MiB of numbers: a million operands for lopdf to build.
        let content = "1 ".repeat(2 << 20);
        let pdf = pdf_of(&[
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
            b"<< /Type /Page /Parent 2 0 R /Contents 4 0 R >>".to_vec(),
            stream("", content.as_bytes()),
        ]);
        let err = open("operands.pdf", &pdf).unwrap_err();
        assert!(matches!(err, Unscannable::TooComplex(_)), "{err:?}");
    }

    #[test]
    fn an_index_is_counted_as_it_is_read_and_no_further_than_needed() {
        assert_eq!(index_tokens(&b"1 0 2 5\n3 9 "[..], 100), 6);
        let endless = std::io::repeat(b'7').take(1 << 20);
        assert_eq!(index_tokens(endless, 10), 1);
        let pairs = "1 0 ".repeat(1 << 16);
        assert!(index_tokens(pairs.as_bytes(), 10) < 16 << 10);
    }

    #[test]
    fn objects_are_measured_to_their_own_end() {
        assert_eq!(extent(b"12 0 R"), 2);
        assert_eq!(extent(b"  [1 [2] (a)b)] 5"), 15);
        assert_eq!(extent(b"<< /A << /B 1 >> /C (x\\)) >> 9"), 28);
        assert_eq!(extent(b"(a (b) c) d"), 9);
        assert_eq!(extent(b"<41> 1"), 4);
        assert_eq!(tokens(b"<< /Type /Page /Kids [3 0 R] >>"), 12);
        assert_eq!(
            declared_count(b"<< /Type /ObjStm /N 2000000 /First 9 >>"),
            2_000_000
        );
        assert_eq!(declared_count(b"<< /Nums [1 2] >>"), 0);
    }

    #[test]
    fn filter_names_are_read_from_names_and_arrays() {
        assert_eq!(
            filter_names(b"<< /Filter /FlateDecode /Length 3 >>"),
            ["FlateDecode"]
        );
        assert_eq!(
            filter_names(b"<< /Filter [/ASCII85Decode /FlateDecode] >>"),
            ["ASCII85Decode", "FlateDecode"]
        );
        assert!(filter_names(b"<< /Length 3 >>").is_empty());
    }

    #[test]
    fn ascii85_decodes() {
        assert_eq!(ascii85(b"<~87cURD]j7BEbo7~>"), b"Hello world");
        assert_eq!(ascii85(b"z~>"), [0, 0, 0, 0]);
    }

    #[test]
    fn lzw_lengths_are_counted() {
        // "-----A---B" from the PDF specification's LZW example: 80 00 0B 60 50 22 0C 0C 85 01.
        let data = [0x80, 0x0B, 0x60, 0x50, 0x22, 0x0C, 0x0C, 0x85, 0x01];
        assert_eq!(lzw_expanded_len(&data), 10);
    }

    #[test]
    fn an_owner_password_only_pdf_is_read_with_the_empty_password() {
        let out = open(
            "owner.pdf",
            include_bytes!("../../../../fixtures/extract/owner-only.pdf"),
        )
        .unwrap();
        assert!(
            all_text(&out).contains("Owner only Ada Lovelace"),
            "{out:?}"
        );
        assert!(out.encrypted.is_empty());
    }

    #[test]
    fn a_pdf_that_needs_a_password_is_encrypted_not_read() {
        let out = open(
            "locked.pdf",
            include_bytes!("../../../../fixtures/extract/user-password.pdf"),
        )
        .unwrap();
        assert!(out.texts.is_empty(), "{out:?}");
        assert_eq!(
            out.encrypted,
            [("locked.pdf".to_string(), "password-protected PDF")]
        );
    }

    #[test]
    fn an_unreadable_pdf_is_corrupt() {
        let err = open("x.pdf", b"%PDF-1.4\nthis is not a pdf at all").unwrap_err();
        assert!(matches!(err, Unscannable::Corrupt(_)), "{err:?}");
    }
}
