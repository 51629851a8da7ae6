//! A PDF page's text as a reader sees it. A PDF places pieces of text on the page; it has no
//! lines or paragraphs. Pieces on one baseline make a line (a wide gap, or a new text block
//! beside the last, is a new cell: a tab). Lines make a paragraph when they read as one: the
//! next line sits one line-spacing below, at the same left edge (or under an indented first
//! line, or a bullet's text), in the same font size, and the line above was full — its next
//! word would not have fitted before the column's right edge, which is why it wrapped. A table
//! row (a line of cells) is never joined to anything, so cells of a table or of two columns
//! side by side are not glued into one sentence.

use std::collections::BTreeMap;

/// One piece of text as the page shows it, in the page's space (points, y upwards).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Run {
    pub text: String,
    /// Where its first glyph starts, on its baseline.
    pub x: f32,
    pub y: f32,
    /// Where its last glyph ends.
    pub end: f32,
    /// Its font size on the page.
    pub size: f32,
    /// The first piece of a text block (BT).
    pub new_block: bool,
    /// Placed by a text move inside its block (Td, Tm).
    pub moved: bool,
    /// The baseline's direction, in whole degrees anticlockwise (0: left to right across the
    /// page); `x`, `y` and `end` are measured along it and across it.
    pub angle: i16,
}

/// One line: pieces on one baseline.
#[derive(Debug, Clone)]
struct Line {
    text: String,
    /// Left edge, and the left edge of its text after a bullet or number.
    x0: f32,
    text_x: f32,
    end: f32,
    y: f32,
    size: f32,
    /// A table row: cells separated by tabs.
    cells: bool,
    /// Written left to right across the page: only such lines are joined into paragraphs.
    upright: bool,
    /// The width of its first word.
    first_word: f32,
}

/// The paragraphs of a page, in the order the page gives its text; a table row is a
/// paragraph of its own, its cells separated by tabs.
pub(crate) fn paragraphs(runs: &[Run]) -> Vec<String> {
    let lines = lines(runs);
    let edges = RightEdges::new(&lines);
    let mut out: Vec<String> = Vec::new();
    // The paragraph being built: its text, its first line, its last line, its line spacing.
    let mut current: Option<(String, usize, usize, Option<f32>)> = None;
    for (i, line) in lines.iter().enumerate() {
        if let Some((text, first, last, spacing)) = current.as_mut()
            && let (Some(f), Some(p)) = (lines.get(*first), lines.get(*last))
            && let Some(dy) = continues(f, p, line, *first == *last, *spacing, &edges)
        {
            join(text, &line.text);
            *last = i;
            *spacing = Some(dy);
            continue;
        }
        if let Some((text, ..)) = current.take() {
            out.push(text);
        }
        current = Some((line.text.clone(), i, i, None));
    }
    if let Some((text, ..)) = current {
        out.push(text);
    }
    out
}

/// Adds the next line of a paragraph: after a space, or straight on after a hyphen that
/// broke a compound word ("fixed-" ⏎ "term"); a soft hyphen is dropped.
fn join(text: &mut String, next: &str) {
    let next = next.trim_start();
    if let Some(stem) = text.strip_suffix('\u{ad}') {
        text.truncate(stem.len());
    } else if text.ends_with(['-', '\u{2010}'])
        && text
            .trim_end_matches(['-', '\u{2010}'])
            .ends_with(char::is_alphabetic)
    {
    } else {
        text.push(' ');
    }
    text.push_str(next);
}

/// Whether `line` goes on the paragraph whose first line is `first` and last line `last`
/// (`alone` when they are one): the line spacing it does it with, if it does.
fn continues(
    first: &Line,
    last: &Line,
    line: &Line,
    alone: bool,
    spacing: Option<f32>,
    edges: &RightEdges,
) -> Option<f32> {
    if last.cells || line.cells || !last.upright || !line.upright {
        return None;
    }
    let size = last.size.max(line.size);
    if size <= 0.0 || (last.size - line.size).abs() > 0.15 * size {
        return None;
    }
    // One line-spacing below: not above (the next column), not past a paragraph's gap.
    let dy = last.y - line.y;
    if !(0.7 * size..=1.9 * size).contains(&dy) {
        return None;
    }
    if spacing.is_some_and(|s| (dy - s).abs() > 0.25 * size) {
        return None;
    }
    // The same left edge; under an indented first line; under a bullet's text.
    let near = |a: f32, b: f32| (a - b).abs() <= 0.6 * size;
    let left = near(line.x0, last.x0)
        || (alone && first.x0 > line.x0 && first.x0 - line.x0 <= 6.0 * size)
        || (alone && near(line.x0, first.text_x));
    if !left {
        return None;
    }
    // The line above was full: its next word did not fit before the column's edge.
    // A column narrower than a dozen characters holds a list, not wrapped prose.
    let edge = edges
        .at(line.x0, size)
        .filter(|e| e - line.x0 >= 12.0 * size)?;
    let space = 0.28 * size;
    (last.end + space + line.first_word >= edge - 0.5 * size).then_some(dy)
}

/// The right edge of the text at each left edge: the furthest any line starting there (give or
/// take six characters) reaches, among lines of about the same size.
struct RightEdges {
    /// Left edge (whole points) → (size, furthest end) for the lines starting there.
    by_left: BTreeMap<i32, Vec<(f32, f32)>>,
}

/// Sizes kept apart at one left edge; a hostile page with more shares the last one.
const SIZES_PER_EDGE: usize = 8;

impl RightEdges {
    fn new(lines: &[Line]) -> RightEdges {
        let mut by_left: BTreeMap<i32, Vec<(f32, f32)>> = BTreeMap::new();
        for l in lines.iter().filter(|l| !l.cells && l.upright) {
            let sizes = by_left.entry(l.x0.round() as i32).or_default();
            let same = sizes
                .iter()
                .position(|(s, _)| (s - l.size).abs() <= 0.15 * s.max(l.size));
            let slot = match same {
                Some(k) => Some(k),
                None if sizes.len() < SIZES_PER_EDGE => {
                    sizes.push((l.size, l.end));
                    None
                }
                None => sizes.len().checked_sub(1),
            };
            if let Some((_, end)) = slot.and_then(|k| sizes.get_mut(k)) {
                *end = end.max(l.end);
            }
        }
        RightEdges { by_left }
    }

    fn at(&self, x0: f32, size: f32) -> Option<f32> {
        let reach = (6.0 * size).min(72.0);
        let from = (x0 - reach).floor() as i32;
        let to = (x0 + reach).ceil() as i32;
        if from > to {
            return None;
        }
        self.by_left
            .range(from..=to)
            .flat_map(|(_, sizes)| sizes.iter())
            .filter(|(s, _)| (s - size).abs() <= 0.15 * s.max(size))
            .map(|&(_, end)| end)
            .reduce(f32::max)
    }
}

/// A bullet or a list number written before a line's text: "•", "–", "1.", "(a)", "iv)".
fn marker(s: &str) -> bool {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > 5 {
        return false;
    }
    if s.chars().count() == 1 {
        return matches!(
            s,
            "•" | "·" | "▪" | "◦" | "●" | "○" | "■" | "□" | "-" | "–" | "—" | "*" | "\u{f0b7}"
        );
    }
    let inner = s.trim_start_matches('(');
    let Some(body) = inner.strip_suffix(['.', ')']) else {
        return false;
    };
    !body.is_empty() && body.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The pieces made into lines, in order.
fn lines(runs: &[Run]) -> Vec<Line> {
    let mut lines: Vec<Line> = Vec::new();
    let mut last: Option<&Run> = None;
    for run in runs {
        let same_line = last.is_some_and(|p| {
            let tolerance = (0.3 * p.size.max(run.size)).max(0.5);
            p.angle == run.angle && (p.y - run.y).abs() <= tolerance
        });
        match (same_line, lines.last_mut(), last) {
            (true, Some(line), Some(p)) => {
                let size = p.size.max(run.size);
                let gap = run.x - p.end;
                let separator = if run.new_block || gap > 2.5 * size {
                    Some('\t')
                } else if run.moved || gap > 0.2 * size {
                    Some(' ')
                } else {
                    None
                };
                if let Some(s) = separator {
                    while line.text.ends_with(' ') {
                        line.text.pop();
                    }
                    if !line.text.is_empty() {
                        line.text.push(s);
                    }
                    line.cells |= s == '\t';
                }
                // A bullet first, then its text: the text's edge is where a wrapped line
                // of the item goes.
                if line.text_x == line.x0 && marker(&line.text) && !run.text.trim().is_empty() {
                    line.text_x = run.x;
                }
                line.text.push_str(&run.text);
                line.end = line.end.max(run.end);
                line.size = line.size.max(run.size);
            }
            _ => {
                let chars = run.text.chars().count().max(1) as f32;
                let leading = run.text.chars().take_while(|c| c.is_whitespace()).count();
                let word = run
                    .text
                    .chars()
                    .skip(leading)
                    .take_while(|c| !c.is_whitespace())
                    .count() as f32;
                let first_word = (run.end - run.x).max(0.0) * word / chars;
                lines.push(Line {
                    text: run.text.trim_start().to_string(),
                    x0: run.x,
                    text_x: run.x,
                    end: run.end,
                    y: run.y,
                    size: run.size,
                    cells: false,
                    upright: run.angle == 0,
                    first_word,
                });
            }
        }
        last = Some(run);
    }
    for line in &mut lines {
        while line.text.ends_with([' ', '\t']) {
            line.text.pop();
        }
        line.cells = line.text.contains('\t');
    }
    lines.retain(|l| !l.text.trim().is_empty());
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of `text` at (`x`, `y`) in 11-point text, about half an em a character wide.
    fn run(text: &str, x: f32, y: f32) -> Run {
        Run {
            text: text.to_string(),
            x,
            y,
            end: x + text.chars().count() as f32 * 5.5,
            size: 11.0,
            new_block: true,
            moved: false,
            angle: 0,
        }
    }

    /// A column of `lines` from (`x`, `y`) down, 13.2 points apart.
    fn column(lines: &[&str], x: f32, y: f32) -> Vec<Run> {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| run(l, x, y - 13.2 * i as f32))
            .collect()
    }

    #[test]
    fn a_wrapped_sentence_is_one_paragraph_and_a_short_line_ends_it() {
        let runs = column(
            &[
                "I am writing to let you know that on Tuesday Jamie Smith",
                "received a fixed-term exclusion of two days for his part",
                "in the incident.",
                "Yours sincerely,",
            ],
            72.0,
            700.0,
        );
        assert_eq!(
            paragraphs(&runs),
            [
                "I am writing to let you know that on Tuesday Jamie Smith received a \
                 fixed-term exclusion of two days for his part in the incident.",
                "Yours sincerely,"
            ]
        );
    }

    #[test]
    fn short_lines_a_paragraph_gap_a_new_size_stay_apart() {
        // An address block: short lines, each its own.
        let mut runs = column(
            &["Mr and Mrs Smith", "12 Acacia Avenue", "Anytown"],
            72.0,
            700.0,
        );
        assert_eq!(paragraphs(&runs).len(), 3);
        runs.push(run(&"w".repeat(80), 72.0, 600.0));
        assert_eq!(paragraphs(&runs).len(), 4);
        // Full lines, but a paragraph's gap between them.
        let mut runs = column(&["x".repeat(80).as_str()], 72.0, 700.0);
        runs.push(run(&"y".repeat(80), 72.0, 700.0 - 30.0));
        assert_eq!(paragraphs(&runs).len(), 2);
        // A heading in a larger size above a full line.
        let mut heading = run(&"H".repeat(60), 72.0, 700.0);
        heading.size = 16.0;
        let runs = vec![heading, run(&"z".repeat(80), 72.0, 684.0)];
        assert_eq!(paragraphs(&runs).len(), 2);
    }

    #[test]
    fn two_columns_are_read_one_after_the_other_never_across() {
        let left = [
            "Congratulations to Jamie Smith and",
            "Ava Jones on winning the chess cup",
            "at the county finals.",
        ];
        let right = [
            "Our SENCO runs a coffee morning for",
            "parents of children with special",
            "educational needs on Friday.",
        ];
        let mut runs = column(&left, 72.0, 700.0);
        runs.extend(column(&right, 300.0, 700.0));
        let p = paragraphs(&runs);
        assert_eq!(
            p,
            [
                "Congratulations to Jamie Smith and Ava Jones on winning the chess cup at the county finals.",
                "Our SENCO runs a coffee morning for parents of children with special educational needs on Friday."
            ]
        );
        // Written line by line across the columns: rows of cells, never joined.
        let mut runs = Vec::new();
        for (i, (l, r)) in left.iter().zip(right).enumerate() {
            runs.push(run(l, 72.0, 700.0 - 13.2 * i as f32));
            runs.push(run(r, 300.0, 700.0 - 13.2 * i as f32));
        }
        let p = paragraphs(&runs);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p.iter().all(|l| l.contains('\t')), "{p:?}");
    }

    #[test]
    fn a_table_row_is_never_joined_to_the_next() {
        let mut runs = Vec::new();
        for (i, row) in [
            ["Role", "Name", "Telephone"],
            ["SENCO", "Mrs G D'Arcy", "01632 960123"],
            ["Year 7 pupil", "Jamie Smith", "—"],
        ]
        .iter()
        .enumerate()
        {
            for (c, cell) in row.iter().enumerate() {
                runs.push(run(cell, 72.0 + 150.0 * c as f32, 700.0 - 13.2 * i as f32));
            }
        }
        assert_eq!(
            paragraphs(&runs),
            [
                "Role\tName\tTelephone",
                "SENCO\tMrs G D'Arcy\t01632 960123",
                "Year 7 pupil\tJamie Smith\t—"
            ]
        );
    }

    #[test]
    fn indented_first_lines_bullets_and_hyphens() {
        let long = "a".repeat(70);
        let mut runs = vec![run(&format!("    {long}"), 94.0, 700.0)];
        runs.push(run(&"b".repeat(74), 72.0, 686.8));
        assert_eq!(paragraphs(&runs).len(), 1);
        // A bullet's wrapped text goes under the text, not the bullet.
        let mut bullet = run("•", 72.0, 700.0);
        bullet.new_block = false;
        let mut text = run(&"c".repeat(70), 90.0, 700.0);
        text.new_block = false;
        text.moved = true;
        let runs = vec![bullet, text, run("dd end", 90.0, 686.8)];
        let p = paragraphs(&runs);
        assert_eq!(p.len(), 1, "{p:?}");
        // "fixed-" at the end of a line and "term" on the next make "fixed-term".
        let runs = column(
            &[
                "Jamie Smith has received a five day fixed-",
                "term exclusion.",
            ],
            72.0,
            700.0,
        );
        let mut wide = runs.clone();
        wide.push(run(&"e".repeat(44), 72.0, 600.0));
        assert!(paragraphs(&wide)[0].contains("fixed-term exclusion"));
    }

    #[test]
    fn markers() {
        for m in ["•", "-", "1.", "(a)", "iv)", "12."] {
            assert!(marker(m), "{m}");
        }
        for m in ["Dear", "a", "1", "Smith."] {
            assert!(!marker(m), "{m}");
        }
    }
}
