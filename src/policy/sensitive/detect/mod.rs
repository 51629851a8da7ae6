//! The detectors: UPN, ULN, NHS and National Insurance numbers, dates of birth beside names,
//! the directory's pupils by name, special-category and safeguarding vocabulary, protective
//! markings. Each keeps evidence with a masked sample, never a whole value.
//!
//! One pass over each line: its words are hashed once ([`words`]), and names, terms and
//! markings are hash look-ups of word sequences, so the cost does not grow with the number of
//! pupils or terms. Records decide what belongs together:
//! - a table row (lines with tab-separated cells under a header row) is one record;
//! - in prose, a name written in a paragraph belongs to that paragraph only — a newsletter
//!   that congratulates Jamie Smith in one paragraph and mentions the SENCO in the next says
//!   nothing about Jamie's needs. A form field ("Child's name: …", "Date of birth: …", "UPN:
//!   …") speaks for the form around it: 3 lines back and 10 lines on (a referral's concerns
//!   come a few fields after the child's name), never past the next child's name field.

mod dates;
mod ids;
mod skim;
#[cfg(test)]
mod tests;
mod vocab;
mod words;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use jiff::civil::Date;
use serde::Serialize;

use super::extract::Text;
use crate::directory::{Directory, name_key};
use vocab::{LineTerms, Patterns, Strength};
use words::{ByHash, Tok, chain, hashes, name_gap, tokenize};

/// One piece of evidence: which detector, where, and a masked sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    pub detector: &'static str,
    pub location: String,
    /// Masked: never the whole value ("H8••••••••••1", "J. S.", "••/••/2010", "EHCP — J. S.").
    pub sample: String,
}

/// The built-in vocabularies and markings, with the school's additions, compiled once.
#[derive(Debug)]
pub struct Vocabulary {
    /// The built-ins shared by every message, or a copy with the school's additions.
    patterns: Cow<'static, Patterns>,
}

impl Vocabulary {
    /// `keywords`: the school's own extra terms; `markings`: protective markings.
    pub fn new(keywords: &[String], markings: &[String]) -> Vocabulary {
        Vocabulary {
            patterns: Patterns::with(keywords, markings),
        }
    }
}

/// What the detectors counted in one attachment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Distinct UPN/ULN/NHS/NI numbers.
    pub identifiers: usize,
    /// Distinct people with a date of birth beside their name.
    pub birth_dates: usize,
    /// Distinct pupils beside a special-category or safeguarding word.
    pub special_category: usize,
    /// Distinct pupils of the directory named.
    pub pupils_named: usize,
    /// Protective markings found ("OFFICIAL-SENSITIVE").
    pub markings: Vec<String>,
    /// Hits per detector name (distinct values).
    pub by_detector: Vec<(&'static str, usize)>,
    /// A few pieces of evidence per detector.
    pub evidence: Vec<Evidence>,
}

/// Runs every detector over `texts` (one attachment's).
pub fn scan(texts: &[Text], directory: &Directory, today: Date, vocabulary: &Vocabulary) -> Tally {
    scan_named(texts, &NameIndex::new(directory, today), today, vocabulary)
}

/// [`scan`] with the directory's pupils already indexed (for `today`), for a caller that keeps
/// the index between messages.
pub fn scan_named(
    texts: &[Text],
    names: &NameIndex,
    today: Date,
    vocabulary: &Vocabulary,
) -> Tally {
    let mut scanner = Scanner::new(names, &vocabulary.patterns, today);
    for text in texts {
        scanner.text(text);
    }
    scanner.found.tally()
}

/// Whether a full [`scan_named`] of `text` would certainly count no identifier, no date of
/// birth, no pupil beside special-category data and no marking, checked far more cheaply than
/// the scan: no line laid out with tabs (a table or a form), no identifier the scan's own
/// reader finds on a line ([`id_candidates`], read only on a line with a number long enough
/// for one, [`six_digits`]), no date-of-birth label, and no word that may start a term or a
/// marking ([`Patterns::may_find`]). Each of those counts needs one of these, so when this says
/// yes the scan's tally would have all four at zero; the pupils it names may still be counted,
/// which a caller using this must not need. A telephone number or a date is not an identifier:
/// a letter that gives the office's number is not read in full for it.
pub fn nothing_to_count(text: &str, vocabulary: &Vocabulary) -> bool {
    if text.contains('\t') {
        return false;
    }
    // The text is skimmed for the places a line may hold something; only the lines that touch
    // one are read, and a line with nothing but a long number only around its numbers.
    let places = skim::places_to_read(text, &vocabulary.patterns);
    let mut reader = LineReader::default();
    let read_in_full = lines_touched(text, places.words);
    for line in &read_in_full {
        if reader.may_count(text.get(line.clone()).unwrap_or_default(), vocabulary) {
            return false;
        }
    }
    for line in lines_touched(text, places.digits) {
        if read_in_full
            .binary_search_by_key(&line.start, |l| l.start)
            .is_err()
            && reader.numbers_may_count(text.get(line).unwrap_or_default())
        {
            return false;
        }
    }
    true
}

/// The lines of `text` (their `\n` left off) that `places` touch, in order, each once.
fn lines_touched(
    text: &str,
    mut places: Vec<std::ops::Range<usize>>,
) -> Vec<std::ops::Range<usize>> {
    places.sort_unstable_by_key(|p| p.start);
    let b = text.as_bytes();
    let mut lines = Vec::new();
    // Where the lines not yet taken start.
    let mut unread = 0;
    for place in places {
        if place.end <= unread {
            continue;
        }
        let from = place.start.max(unread);
        let mut start = b
            .get(unread..from)
            .and_then(|before| memchr::memrchr(b'\n', before))
            .map_or(unread, |k| unread + k + 1);
        // Every line from the one `place` starts in to the one it ends in.
        loop {
            let end = b
                .get(start..)
                .and_then(|rest| memchr::memchr(b'\n', rest))
                .map_or(b.len(), |k| start + k);
            lines.push(start..end);
            start = end + 1;
            if start >= place.end || end == b.len() {
                break;
            }
        }
        unread = start;
    }
    lines
}

/// What [`nothing_to_count`] checks one line with: buffers kept from line to line.
#[derive(Default)]
struct LineReader {
    toks: Vec<Tok>,
    ids: Vec<(IdCandidate, usize)>,
    runs: Vec<(usize, usize)>,
}

impl LineReader {
    /// Whether a full scan could count something on `line` (its `\n` left off): a word that
    /// may start a term, a marking or a date-of-birth label, or an identifier.
    fn may_count(&mut self, line: &str, vocabulary: &Vocabulary) -> bool {
        let cues = &*CUES;
        let birth = [cues.dob, cues.birthdate, cues.born, cues.birth, cues.d];
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (toks, runs) = (&mut self.toks, &mut self.runs);
        // Most lines of a letter have no word that matters and no long number: seen from their
        // bytes, with no word hashed.
        let look = line_cues(line, &vocabulary.patterns, runs);
        if !look.word && !look.six_digits {
            return false;
        }
        if look.word {
            tokenize(line, toks);
            if toks.iter().any(|t| birth.contains(&t.hash))
                || vocabulary.patterns.may_find(line, toks)
            {
                return true;
            }
            // The pass stopped at the word: the rest of the line's numbers are still to count.
            six_digit_runs(line, runs);
        }
        self.identifier_near_numbers(line)
    }

    /// [`LineReader::may_count`] of a line known to hold no word that matters and no letter
    /// outside ASCII: only its long numbers are read.
    fn numbers_may_count(&mut self, line: &str) -> bool {
        let line = line.strip_suffix('\r').unwrap_or(line);
        six_digit_runs(line, &mut self.runs);
        self.identifier_near_numbers(line)
    }

    /// Whether an identifier stands around one of the runs of six digits ([`six_digit_runs`])
    /// of `line` last found.
    fn identifier_near_numbers(&mut self, line: &str) -> bool {
        // Only the words around each long number are read for an identifier: a paragraph
        // that gives the office's telephone number is not hashed word by word for it.
        for &(start, end) in &self.runs {
            let near = around(line, start, end);
            tokenize(near, &mut self.toks);
            id_candidates(near, &self.toks, &mut self.ids);
            if !self.ids.is_empty() {
                return true;
            }
        }
        false
    }
}

/// [`nothing_to_count`] reading every line (what the skim must agree with).
#[cfg(test)]
fn nothing_to_count_line_by_line(text: &str, vocabulary: &Vocabulary) -> bool {
    let mut reader = LineReader::default();
    !text.contains('\t')
        && !text
            .split('\n')
            .any(|line| reader.may_count(line, vocabulary))
}

/// The runs of [`six_digits`] in `line`: (first byte, byte after the last digit) of each run
/// of six digits or more.
fn six_digit_runs(line: &str, out: &mut Vec<(usize, usize)>) {
    out.clear();
    let b = line.as_bytes();
    let mut i = 0;
    while let Some(start) = next_digit(b, i) {
        // The run: digits, a single space or hyphen allowed between two.
        let (mut digits, mut end) = (0, start);
        i = start;
        while let Some(&c) = b.get(i) {
            if c.is_ascii_digit() {
                digits += 1;
                i += 1;
                end = i;
            } else if matches!(c, b' ' | b'-') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                i += 1;
            } else {
                break;
            }
        }
        if digits >= 6 {
            out.push((start, end));
        }
    }
}

/// The first ASCII digit of `b` at or after `from`: eight bytes at a time.
fn next_digit(b: &[u8], from: usize) -> Option<usize> {
    use crate::policy::eight_bytes::{HIGH, between, first, load};
    let mut i = from;
    while let Some(x) = load(b, i) {
        let digit = between(x & !HIGH, b'0', b'9') & !x;
        if digit != 0 {
            return Some(i + first(digit));
        }
        i += 8;
    }
    b.get(i..)?
        .iter()
        .position(u8::is_ascii_digit)
        .map(|k| i + k)
}

/// The part of `line` around bytes `start..end` that [`id_candidates`] needs to read every
/// identifier that holds them: [`NEAR`] bytes either side, widened to whole words (to ASCII
/// white space or the line's ends). An identifier holding a run of six digits reaches at most
/// a few bytes past it (the "AB " and " C" of "AB 12 34 56 C"); a word cut off at the edge can
/// only make [`id_candidates`] read more candidates, never fewer (the digits before or after a
/// ten-digit number that make it part of a longer one are then not seen).
fn around(line: &str, start: usize, end: usize) -> &str {
    let b = line.as_bytes();
    let mut from = start.saturating_sub(NEAR);
    while from > 0 && b.get(from - 1).is_some_and(|c| !c.is_ascii_whitespace()) {
        from -= 1;
    }
    let mut to = end.saturating_add(NEAR).min(b.len());
    while b.get(to).is_some_and(|c| !c.is_ascii_whitespace()) {
        to += 1;
    }
    line.get(from..to).unwrap_or(line)
}

/// Bytes read either side of a long number ([`around`]).
const NEAR: usize = 24;

/// What one pass over a line's bytes says [`nothing_to_count`] must look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LineCues {
    /// A word that may be what [`nothing_to_count`] looks for, read from its letters alone:
    /// the first word of a phrase ([`Patterns::may_start`]), a date-of-birth cue, a word spelt
    /// as an acronym, or a word with a letter outside ASCII (read in full, as folding it needs
    /// the word). When this is false, none of the line's words [`tokenize`] hashes is one.
    word: bool,
    /// Six digits in a row ([`six_digits`]); not worked out once `word` is found (the line is
    /// read in full then, and [`six_digit_runs`] asked).
    six_digits: bool,
}

/// [`LineCues`] of `line`, in one pass over its bytes. A word whose first and last letters and
/// length no phrase, acronym or cue has ([`Patterns::may_matter_by_letters`]) is stepped over
/// after one bit test.
fn line_cues(line: &str, patterns: &Patterns, runs: &mut Vec<(usize, usize)>) -> LineCues {
    let b = line.as_bytes();
    let mut look = LineCues {
        word: false,
        six_digits: false,
    };
    runs.clear();
    // Digits in a row, a single space or hyphen allowed between two ([`six_digits`]), and
    // where the run started.
    let mut run = 0usize;
    let mut run_start = 0;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if !c.is_ascii_alphanumeric() {
            if c < 0x80 {
                let joins = matches!(c, b' ' | b'-')
                    && run > 0
                    && b.get(i + 1).is_some_and(u8::is_ascii_digit);
                if !joins {
                    run = 0;
                }
                i += 1;
                continue;
            }
            run = 0;
            // Typographic quotes and dashes part words as spaces do; a letter is read in full.
            match line.get(i..).and_then(|s| s.chars().next()) {
                Some(ch) if ch.is_alphanumeric() => {
                    look.word = true;
                    return look;
                }
                Some(ch) => i += ch.len_utf8(),
                None => {
                    look.word = true;
                    return look;
                }
            }
            continue;
        }
        let start = i;
        let digits;
        (i, digits) = ascii_word_end(b, i);
        if digits {
            for (k, &c) in (start..).zip(b.get(start..i).unwrap_or_default()) {
                if c.is_ascii_digit() {
                    if run == 0 {
                        run_start = k;
                    }
                    run += 1;
                    if run >= 6 {
                        look.six_digits = true;
                        match runs.last_mut() {
                            Some(last) if last.0 == run_start => last.1 = k + 1,
                            _ => runs.push((run_start, k + 1)),
                        }
                    }
                } else {
                    run = 0;
                }
            }
        } else {
            run = 0;
        }
        if b.get(i).is_some_and(|&n| n >= 0x80)
            && line
                .get(i..)
                .and_then(|s| s.chars().next())
                .is_none_or(char::is_alphanumeric)
        {
            // The word goes on with a letter outside ASCII.
            look.word = true;
            return look;
        }
        if skim::word_may_matter(line, start..i, patterns) {
            look.word = true;
            return look;
        }
    }
    look
}

/// The end of the run of ASCII letters and digits that starts at byte `from` of `b`, and
/// whether the run holds a digit: eight bytes at a time, each eight classified at once (most
/// words of a letter end within the first eight).
#[inline(always)]
fn ascii_word_end(b: &[u8], from: usize) -> (usize, bool) {
    use crate::policy::eight_bytes::{HIGH, ONES, between, first, load};
    let mut i = from;
    let mut digits = false;
    while let Some(x) = load(b, i) {
        let y = x & !HIGH;
        let digit = between(y, b'0', b'9') & !x;
        let letter = between(y | (ONES * 0x20), b'a', b'z') & !x;
        let other = !(digit | letter) & HIGH;
        if other == 0 {
            digits |= digit != 0;
            i += 8;
            continue;
        }
        let k = first(other);
        // The digits among the word's bytes of this eight.
        digits |= digit & ((1u64 << (k * 8)) - 1) != 0;
        return (i + k, digits);
    }
    while let Some(&c) = b.get(i) {
        if !c.is_ascii_alphanumeric() {
            break;
        }
        digits |= c.is_ascii_digit();
        i += 1;
    }
    (i, digits)
}

/// The words [`nothing_to_count`] takes as the start of a date-of-birth label ([`Cues`]).
const BIRTH_CUES: &[&[u8]] = &[b"dob", b"birthdate", b"born", b"birth", b"d"];

/// Whether `text` has six ASCII digits in a row, a single space or hyphen allowed between two
/// of them: every identifier [`id_candidates`] reads has such a run (a UPN eleven digits, a
/// ULN or NHS number ten, "943 476 5919" ten, "AB 12 34 56 C" six), so without one there is
/// none. A date ("14/03/2010") or a time ("9.30") is not such a run.
#[cfg(test)]
fn six_digits(text: &str) -> bool {
    let b = text.as_bytes();
    let digit = |k: Option<usize>| k.and_then(|k| b.get(k)).is_some_and(u8::is_ascii_digit);
    let mut run = 0;
    for (i, &c) in b.iter().enumerate() {
        if c.is_ascii_digit() {
            run += 1;
            if run >= 6 {
                return true;
            }
        } else if !(matches!(c, b' ' | b'-') && digit(i.checked_sub(1)) && digit(Some(i + 1))) {
            run = 0;
        }
    }
    false
}

/// Detector names, as the audit trail and the findings show them.
const UPN: &str = "upn";
const ULN: &str = "uln";
const NHS: &str = "nhs-number";
const NI: &str = "ni-number";
const BIRTH: &str = "date-of-birth";
const PUPIL: &str = "pupil-name";
const SPECIAL: &str = "special-category";
const MARKING: &str = "protective-marking";
const EVIDENCE_PER_DETECTOR: usize = 3;
const MAX_BIRTHS_PER_LINE: usize = 64;

/// Prose windows: how far a form field reaches.
const FORM_BACK: usize = 3;
const FORM_ON: usize = 10;

/// The directory's pupils by the words of their names.
#[derive(Debug)]
pub struct NameIndex {
    /// First word → the most words a name starting with it has.
    first: ByHash<usize>,
    /// Hash of a name's words → (the words, index into `keys`).
    by_words: ByHash<Vec<(Vec<u64>, usize)>>,
    /// Distinct name keys of pupils.
    keys: Vec<String>,
    /// Each key's [`name_hash`].
    key_hash: Vec<u64>,
}

/// A person's name as one number, from the hashes of its words in order.
fn name_hash(words: &[u64]) -> u64 {
    words.iter().fold(1, |h, &w| chain(h, w))
}

/// An identifier as one number.
fn id_hash(value: &str) -> u64 {
    let fnv = value.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    chain(2, fnv)
}

/// A date standing for a person whose name is unknown.
fn date_hash(d: Date) -> u64 {
    let n = i64::from(d.year()) * 10_000 + i64::from(d.month()) * 100 + i64::from(d.day());
    chain(3, n as u64)
}

impl NameIndex {
    /// Indexes the pupils of `directory` on `today`.
    pub fn new(directory: &Directory, today: Date) -> NameIndex {
        let mut index = NameIndex {
            first: ByHash::default(),
            by_words: ByHash::default(),
            keys: Vec::new(),
            key_hash: Vec::new(),
        };
        let mut seen: HashMap<String, usize> = HashMap::new();
        for p in directory.pupils(today) {
            let key = name_key(&p.name);
            let words = hashes(&key);
            // One word is not a name to look for in text ("Grace", "Will").
            if words.len() < 2 || words.len() > 8 {
                continue;
            }
            let k = match seen.get(&key) {
                Some(&k) => k,
                None => {
                    index.keys.push(key.clone());
                    index.key_hash.push(name_hash(&words));
                    seen.insert(key.clone(), index.keys.len() - 1);
                    index.keys.len() - 1
                }
            };
            // "Jamie Lee Smith" is also found as "Jamie Smith".
            let mut short = None;
            if let [first, .., last] = key.split(' ').collect::<Vec<_>>()[..]
                && key.split(' ').count() >= 3
            {
                short = Some(hashes(&format!("{first} {last}")));
            }
            index.add(words, k);
            if let Some(s) = short.filter(|s| s.len() >= 2) {
                index.add(s, k);
            }
        }
        index
    }

    fn add(&mut self, words: Vec<u64>, k: usize) {
        let Some(&first) = words.first() else {
            return;
        };
        let longest = self.first.entry(first).or_default();
        *longest = (*longest).max(words.len());
        let h = words.iter().fold(0, |h, &w| chain(h, w));
        let list = self.by_words.entry(h).or_default();
        if !list.iter().any(|(w, i)| *w == words && *i == k) {
            list.push((words, k));
        }
    }

    /// The pupil name made of exactly these words.
    fn lookup(&self, words: &[u64]) -> Option<usize> {
        let h = words.iter().fold(0, |h, &w| chain(h, w));
        self.by_words
            .get(&h)?
            .iter()
            .find(|(w, _)| w == words)
            .map(|&(_, k)| k)
    }

    /// The pupil whose name is exactly these words (a cell's or a field's whole value).
    fn named(&self, words: &[u64]) -> Option<usize> {
        if words.len() < 2 {
            return None;
        }
        self.lookup(words)
    }

    /// The pupils named among `toks`, the words of `line`: (name, first word, last word).
    fn find(&self, line: &str, toks: &[Tok], out: &mut Vec<(usize, usize, usize)>) {
        out.clear();
        if self.first.is_empty() {
            return;
        }
        let gap = |k: usize| {
            let a = toks.get(k)?;
            let b = toks.get(k + 1)?;
            line.get(a.end..b.start)
        };
        let mut words: Vec<u64> = Vec::with_capacity(8);
        for (i, tok) in toks.iter().enumerate() {
            // "Jamie Smith", "Anne-Marie O'Neil".
            if let Some(&longest) = self.first.get(&tok.hash) {
                words.clear();
                words.push(tok.hash);
                let mut best = None;
                for k in i + 1..i + longest {
                    let (Some(t), true) = (toks.get(k), gap(k - 1).is_some_and(name_gap)) else {
                        break;
                    };
                    words.push(t.hash);
                    if let Some(n) = self.lookup(&words) {
                        best = Some((n, i, k));
                    }
                }
                if let Some(b) = best {
                    out.push(b);
                }
            }
            // "Smith, Jamie" / "O'Brien, Siân": up to 3 words either side of the comma.
            let comma = toks
                .get(i)
                .is_some_and(|t| line.as_bytes().get(t.end) == Some(&b','));
            if comma
                && gap(i).is_some_and(|g| g.trim() == ",")
                && toks
                    .get(i + 1)
                    .is_some_and(|t| self.first.contains_key(&t.hash))
            {
                'surname: for s in 1..=3usize {
                    let Some(from) = (i + 1).checked_sub(s) else {
                        break;
                    };
                    if s > 1 && !gap(from).is_some_and(name_gap) {
                        break;
                    }
                    for f in 1..=3usize {
                        let to = i + f;
                        if toks.get(to).is_none() || (f > 1 && !gap(to - 1).is_some_and(name_gap)) {
                            break;
                        }
                        words.clear();
                        words.extend(toks.get(i + 1..=to).into_iter().flatten().map(|t| t.hash));
                        words.extend(toks.get(from..=i).into_iter().flatten().map(|t| t.hash));
                        if let Some(n) = self.lookup(&words) {
                            out.push((n, from, to));
                            break 'surname;
                        }
                    }
                }
            }
        }
    }
}

/// Who a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// A pupil of the directory, by name.
    Pupil,
    /// A name the text gives as a person's (a Name column, a "Child's name:" field).
    Name,
    Identifier,
    Birth,
}

#[derive(Debug, Clone)]
struct Anchor {
    who: Who,
    /// Distinct person: [`name_hash`], [`id_hash`] or [`date_hash`].
    key: u64,
    /// What evidence shows, masked when it is written.
    shown: Shown,
    line: usize,
    /// A form field: reaches the lines around it.
    field: bool,
    /// Says the record is about a pupil: a directory pupil, a pupil's identifier (UPN, ULN,
    /// NHS number; a National Insurance number is a member of staff's as often), a date of
    /// birth of school age, or a name the text itself calls a pupil's ("Child's name", a
    /// "Pupil" column, a register of needs). A name alone ("SENCO | Mrs G D'Arcy") is not.
    pupil: bool,
    from: usize,
    to: usize,
}

impl Anchor {
    fn new(who: Who, key: u64, shown: Shown, line: usize, field: bool) -> Anchor {
        Anchor {
            who,
            key,
            shown,
            line,
            field,
            pupil: who != Who::Name,
            from: line,
            to: line,
        }
    }

    /// The same anchor, saying whether it is about a pupil.
    fn pupil(mut self, pupil: bool) -> Anchor {
        self.pupil = pupil;
        self
    }

    /// Identifies a pupil well enough for a weak word or an acronym to count beside it.
    fn strong(&self) -> bool {
        self.who != Who::Name
    }
}

/// What an anchor's evidence shows, kept unmasked only until the evidence is written (and
/// only computed for the few pieces of evidence kept).
#[derive(Debug, Clone)]
enum Shown {
    /// A directory pupil (index into the name index's keys).
    Pupil(usize),
    /// Initials already made.
    Initials(String),
    /// The name in these bytes of the row.
    Cells(usize, usize),
    Id(String),
    Date(Date),
}

impl Shown {
    fn masked(&self, names: &NameIndex, row: &str) -> String {
        match self {
            Shown::Pupil(k) => names.keys.get(*k).map(|k| initials(k)).unwrap_or_default(),
            Shown::Initials(s) => s.clone(),
            Shown::Cells(a, b) => initials(row.get(*a..*b).unwrap_or("")),
            Shown::Id(v) => ids::mask(v),
            Shown::Date(d) => dates::mask(*d),
        }
    }
}

/// "J. S." from a name: the first letter of each word, in capitals.
fn initials(name: &str) -> String {
    let mut out = String::new();
    for w in name
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
    {
        if let Some(c) = w.chars().find(|c| c.is_alphabetic()) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.extend(c.to_uppercase());
            out.push('.');
        }
    }
    out
}

/// What a table's header row says about its columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Other,
    Name,
    Forename,
    Surname,
    Birth,
    Upn,
    Uln,
    Nhs,
    /// A column of SEND needs ("Primary need"): any value in it is special-category data.
    Need,
}

/// A header cell or a form label folded for comparison: lower case, no full stops, plain
/// apostrophes, single spaces, no trailing colon.
fn fold_label(cell: &str) -> String {
    let lower = cell
        .to_lowercase()
        .replace(['.', '*'], "")
        .replace('\u{2019}', "'");
    let joined = lower.split_whitespace().collect::<Vec<_>>().join(" ");
    joined.trim_end_matches([':', ' ']).trim().to_string()
}

fn role_of(cell: &str) -> Role {
    let l = fold_label(cell);
    if l.is_empty() || l.len() > 40 {
        return Role::Other;
    }
    const NAME: &[&str] = &[
        "name",
        "full name",
        "pupil",
        "pupil name",
        "pupil's name",
        "name of pupil",
        "student",
        "student name",
        "student's name",
        "child",
        "child name",
        "child's name",
        "childs name",
        "name of child",
        "learner",
        "learner name",
        "young person",
        "young person's name",
        "name of young person",
        "legal name",
        "pupil full name",
        "surname, forename",
        "surname forename",
        "name (surname, forename)",
    ];
    const FORENAME: &[&str] = &[
        "forename",
        "forenames",
        "first name",
        "first names",
        "given name",
        "given names",
        "legal forename",
        "preferred forename",
        "preferred first name",
    ];
    const SURNAME: &[&str] = &[
        "surname",
        "last name",
        "family name",
        "legal surname",
        "preferred surname",
    ];
    const NEED: &[&str] = &[
        "need",
        "needs",
        "primary need",
        "secondary need",
        "sen need",
        "send need",
        "need type",
        "type of need",
        "area of need",
        "areas of need",
        "category of need",
        "main need",
        "sen need type",
        "primary sen need",
        "medical condition",
        "medical conditions",
        "condition",
        "conditions",
        "diagnosis",
        "allergies",
        "medical needs",
        "medical",
        "health needs",
        "medical details",
        "medication",
    ];
    if NAME.contains(&l.as_str()) {
        return Role::Name;
    }
    if FORENAME.contains(&l.as_str()) {
        return Role::Forename;
    }
    if SURNAME.contains(&l.as_str()) {
        return Role::Surname;
    }
    if NEED.contains(&l.as_str()) {
        return Role::Need;
    }
    let words: Vec<&str> = l
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let has = |w: &str| words.contains(&w);
    if has("dob")
        || has("birthdate")
        || l.contains("date of birth")
        || l.contains("birth date")
        || l == "born"
    {
        Role::Birth
    } else if has("upn") || l.contains("unique pupil number") {
        Role::Upn
    } else if has("uln") || l.contains("unique learner number") {
        Role::Uln
    } else if has("nhs") {
        Role::Nhs
    } else {
        Role::Other
    }
}

/// A cell that answers yes: not empty, not "No", "N", "None", "0", "-", "N/A".
fn positive(cell: &str) -> bool {
    let c = cell.trim();
    !c.is_empty()
        && ![
            "n",
            "no",
            "none",
            "0",
            "-",
            "n/a",
            "na",
            "false",
            "nil",
            "not applicable",
        ]
        .iter()
        .any(|no| c.eq_ignore_ascii_case(no))
}

/// Plausibly a person's name in a Name cell or field: letters, at most six words, no digits.
fn looks_like_name(value: &str) -> bool {
    let v = value.trim();
    !v.is_empty()
        && v.len() <= 60
        && v.chars().any(char::is_alphabetic)
        && !v.chars().any(|c| c.is_ascii_digit() || c == '@')
        && v.split_whitespace().count() <= 6
}

/// The value of a "Child's name: …" field on `line`: the words after a name label, up to a
/// tab, a colon or the next label.
fn field_name(line: &str) -> Option<(String, bool)> {
    let cut = line.find([':', '\t'])?;
    let label = line.get(..cut)?;
    if label.len() > 30 || role_of(label) != Role::Name {
        return None;
    }
    let rest = line.get(cut..)?.trim_start_matches([':', '\t', ' ', '-']);
    let rest = rest.split('\t').next().unwrap_or("");
    let mut words = Vec::new();
    for w in rest.split_whitespace() {
        let bare = fold_label(w);
        if w.ends_with(':')
            || matches!(
                bare.as_str(),
                "dob"
                    | "upn"
                    | "uln"
                    | "nhs"
                    | "date"
                    | "year"
                    | "class"
                    | "age"
                    | "gender"
                    | "sex"
                    | "born"
            )
            || words.len() == 5
        {
            break;
        }
        if !w.chars().next().is_some_and(char::is_alphabetic) {
            break;
        }
        words.push(w.trim_end_matches([',', ';']));
    }
    let value = words.join(" ");
    looks_like_name(&value).then(|| (value, pupil_label(label)))
}

/// A name label that says whose name it is: a pupil's ("Child's name", "Pupil", "Name of young
/// person"), not anyone's ("Name", "Full name", "Surname").
fn pupil_label(label: &str) -> bool {
    let l = fold_label(label);
    ["pupil", "child", "student", "learner", "young person"]
        .iter()
        .any(|w| l.contains(w))
}

/// A candidate identifier among a line's words.
#[derive(Debug, Clone, PartialEq, Eq)]
enum IdCandidate {
    Upn(String),
    Ni(String),
    /// Ten digits that pass the ULN or the NHS check; which one counts depends on context.
    TenDigits(String),
}

/// The identifiers among `toks`, the words of `line`, with the index of the first word.
fn id_candidates(line: &str, toks: &[Tok], out: &mut Vec<(IdCandidate, usize)>) {
    out.clear();
    let word = |k: usize| {
        toks.get(k)
            .and_then(|t| line.get(t.start..t.end))
            .unwrap_or("")
    };
    let gap = |k: usize| {
        toks.get(k)
            .zip(toks.get(k + 1))
            .and_then(|(a, b)| line.get(a.end..b.start))
    };
    let digits = |w: &str, n: usize| w.len() == n && w.bytes().all(|b| b.is_ascii_digit());
    let all_digits = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit());
    // Words `k` and `k + 1` are digit groups joined by a single space or hyphen: one number.
    let joined_digits = |k: usize| {
        gap(k).is_some_and(|g| g == " " || g == "-")
            && all_digits(word(k))
            && all_digits(word(k + 1))
    };
    let mut i = 0;
    while i < toks.len() {
        let w = word(i);
        let b = w.as_bytes();
        let before_is_digits = i > 0 && joined_digits(i - 1);
        if b.len() == 13 && ids::upn_valid(w) {
            out.push((IdCandidate::Upn(w.to_string()), i));
        } else if digits(w, 10) && !before_is_digits && !joined_digits(i) {
            if ids::uln_valid(w) || ids::nhs_valid(w) {
                out.push((IdCandidate::TenDigits(w.to_string()), i));
            }
        } else if digits(w, 3)
            && !before_is_digits
            && digits(word(i + 1), 3)
            && digits(word(i + 2), 4)
            && gap(i).is_some_and(|g| g == " " || g == "-")
            && gap(i + 1) == gap(i)
            && !joined_digits(i + 2)
        {
            // "943 476 5919", "943-476-5919": the NHS way of writing it.
            let v = format!("{w}{}{}", word(i + 1), word(i + 2));
            if ids::uln_valid(&v) || ids::nhs_valid(&v) {
                out.push((IdCandidate::TenDigits(v), i));
                i += 3;
                continue;
            }
        } else if b.len() >= 2
            && b.len() <= 9
            && b.first().is_some_and(u8::is_ascii_alphabetic)
            && b.get(1).is_some_and(u8::is_ascii_alphabetic)
            && b.get(2).is_none_or(u8::is_ascii_digit)
        {
            // "AB123456C", "AB 12 34 56 C", "AB123456 C".
            let mut v = String::from(w);
            let mut k = i;
            while v.len() < 9 && k + 1 < toks.len() && k < i + 4 && gap(k) == Some(" ") {
                k += 1;
                v.push_str(word(k));
            }
            let lower = w.bytes().take(2).all(|c| c.is_ascii_lowercase());
            let upper = w.bytes().take(2).all(|c| c.is_ascii_uppercase());
            // Lower case only written compactly: "on 12 34 56 a" is prose, not a number.
            if v.len() == 9 && (upper || (lower && k == i)) && ids::ni_valid(&v) {
                out.push((IdCandidate::Ni(v.to_ascii_uppercase()), i));
                i = k + 1;
                continue;
            }
        }
        i += 1;
    }
}

/// Words that give a ten-digit number its meaning, and the labels of a date of birth.
/// [`Cues`], hashed once for the process.
static CUES: std::sync::LazyLock<Cues> = std::sync::LazyLock::new(Cues::new);

struct Cues {
    nhs: u64,
    uln: u64,
    ulns: u64,
    learner: u64,
    dob: u64,
    birthdate: u64,
    born: u64,
    birth: u64,
    of: u64,
    date: u64,
    d: u64,
    o: u64,
    b: u64,
}

impl Cues {
    fn new() -> Cues {
        let h = |s: &str| hashes(s).first().copied().unwrap_or(0);
        Cues {
            nhs: h("nhs"),
            uln: h("uln"),
            ulns: h("ulns"),
            learner: h("learner"),
            dob: h("dob"),
            birthdate: h("birthdate"),
            born: h("born"),
            birth: h("birth"),
            of: h("of"),
            date: h("date"),
            d: h("d"),
            o: h("o"),
            b: h("b"),
        }
    }

    /// Date-of-birth labels among the words: (first word, last word).
    fn birth_labels(&self, line: &str, toks: &[Tok], out: &mut Vec<(usize, usize)>) {
        out.clear();
        let hash = |k: usize| toks.get(k).map(|t| t.hash);
        for (i, t) in toks.iter().enumerate() {
            let h = t.hash;
            if h == self.dob || h == self.birthdate || h == self.born {
                out.push((i, i));
            } else if h == self.birth {
                if i >= 2 && hash(i - 1) == Some(self.of) && hash(i - 2) == Some(self.date) {
                    out.push((i - 2, i));
                } else if hash(i + 1) == Some(self.date) {
                    out.push((i, i + 1));
                }
            } else if h == self.d && hash(i + 1) == Some(self.o) && hash(i + 2) == Some(self.b) {
                // "D.O.B."
                let dotted = toks
                    .get(i + 1)
                    .is_some_and(|o| line.get(t.end..o.start) == Some("."));
                if dotted {
                    out.push((i, i + 2));
                }
            }
        }
    }
}

/// The date that a label on this line introduces: the first date within a few words after it
/// ("DOB: 14/03/2010", "born on 14 March 2010"), or one just before it ("14/03/2010 (DOB)").
fn labelled_date(
    line: &str,
    toks: &[Tok],
    label: (usize, usize),
    today: Date,
) -> Option<(Date, usize)> {
    // Only a few small words may stand between: "born on the 14th March 2010", not "DOB:
    // unknown; meeting 12/11/2026".
    for k in label.1 + 1..label.1 + 5 {
        if let Some((d, _)) = dates::date_at(line, toks, k, today) {
            return Some((d, k));
        }
        let word = toks.get(k).and_then(|t| line.get(t.start..t.end))?;
        if !["on", "is", "the", "was"]
            .iter()
            .any(|w| word.eq_ignore_ascii_case(w))
        {
            break;
        }
    }
    let start = toks.get(label.0)?.start;
    for k in label.0.saturating_sub(5)..label.0 {
        if let Some((d, last)) = dates::date_at(line, toks, k, today)
            && last + 1 == label.0
            && toks.get(last).is_some_and(|t| t.end + 4 >= start)
        {
            return Some((d, k));
        }
    }
    None
}

/// Everything found so far in the attachment.
#[derive(Default)]
struct Found {
    /// [`id_hash`] of each identifier.
    upn: HashSet<u64, std::hash::BuildHasherDefault<words::Prehashed>>,
    uln: HashSet<u64, std::hash::BuildHasherDefault<words::Prehashed>>,
    nhs: HashSet<u64, std::hash::BuildHasherDefault<words::Prehashed>>,
    ni: HashSet<u64, std::hash::BuildHasherDefault<words::Prehashed>>,
    /// [`name_hash`] (or 0 when no name is tied) chained with [`date_hash`].
    births: HashSet<u64, std::hash::BuildHasherDefault<words::Prehashed>>,
    /// Which of the name index's keys were found.
    pupils: Vec<bool>,
    pupils_count: usize,
    special: HashSet<u64, std::hash::BuildHasherDefault<words::Prehashed>>,
    markings: Vec<String>,
    evidence: Vec<Evidence>,
}

impl Found {
    fn evidence(
        &mut self,
        detector: &'static str,
        location: impl FnOnce() -> String,
        sample: impl FnOnce() -> String,
    ) {
        let n = self
            .evidence
            .iter()
            .filter(|e| e.detector == detector)
            .count();
        if n < EVIDENCE_PER_DETECTOR {
            self.evidence.push(Evidence {
                detector,
                location: location(),
                sample: sample(),
            });
        }
    }

    /// Marks pupil name `k` as found; whether it is new.
    fn pupil(&mut self, k: usize) -> bool {
        if k >= self.pupils.len() {
            self.pupils.resize(k + 1, false);
        }
        match self.pupils.get_mut(k) {
            Some(seen) if !*seen => {
                *seen = true;
                self.pupils_count += 1;
                true
            }
            _ => false,
        }
    }

    fn tally(self) -> Tally {
        let counts = [
            (UPN, self.upn.len()),
            (ULN, self.uln.len()),
            (NHS, self.nhs.len()),
            (NI, self.ni.len()),
            (BIRTH, self.births.len()),
            (PUPIL, self.pupils_count),
            (SPECIAL, self.special.len()),
            (MARKING, self.markings.len()),
        ];
        let order = |d: &str| {
            counts
                .iter()
                .position(|(n, _)| *n == d)
                .unwrap_or(usize::MAX)
        };
        let mut evidence = self.evidence;
        evidence.sort_by_key(|e| order(e.detector));
        Tally {
            identifiers: self.upn.len() + self.uln.len() + self.nhs.len() + self.ni.len(),
            birth_dates: self.births.len(),
            special_category: self.special.len(),
            pupils_named: self.pupils_count,
            markings: self.markings,
            by_detector: counts.into_iter().filter(|(_, n)| *n > 0).collect(),
            evidence,
        }
    }
}

/// Where in a text: "Y7.xlsx › Sheet1 › row 12".
fn place(text: &Text, what: &str, line: usize) -> String {
    if text.location.is_empty() {
        format!("{what} {}", line + 1)
    } else {
        format!("{} › {what} {}", text.location, line + 1)
    }
}

/// A table's header row.
#[derive(Default)]
struct Header {
    roles: Vec<Role>,
    /// A special-category term naming the column ("EHCP", "Pupil premium", "CP"): a yes in it
    /// is that term for the row.
    terms: Vec<Option<usize>>,
    /// The table is about special-category data: its acronyms count beside any name.
    about_special: bool,
    /// Each column's header as written (folded), shown in evidence for a Need column instead of
    /// the cell, which may be free text about the child.
    labels: Vec<String>,
    /// Name, Forename, Surname and Birth columns.
    columns: [Option<usize>; 4],
    /// The header says its rows are pupils: a Name column called a pupil's ("Pupil", "Child's
    /// name"), or a column of needs or of a special-category term that is not a job title
    /// ("Primary need", "EHCP", "FSM"; not "DSL trained").
    pupils: bool,
}

impl Header {
    /// The first column with `role`, looked up once per header (a hostile header may have a
    /// million columns; every row asks).
    fn column(&self, role: Role) -> Option<usize> {
        match role {
            Role::Name => self.columns[0],
            Role::Forename => self.columns[1],
            Role::Surname => self.columns[2],
            Role::Birth => self.columns[3],
            _ => self.roles.iter().position(|&r| r == role),
        }
    }
}

/// A line of prose's findings, kept until the text's end decides the windows.
#[derive(Default)]
struct Prose {
    anchors: Vec<Anchor>,
    /// Births whose name is to be tied: (index into anchors, date).
    births: Vec<(usize, Date)>,
    /// (line, term index) for each line with terms: its strongest term.
    terms: Vec<(usize, usize)>,
    /// Lines with a name field.
    fields: Vec<usize>,
}

struct Scanner<'a> {
    names: &'a NameIndex,
    patterns: &'a Patterns,
    today: Date,
    cues: Cues,
    found: Found,
    toks: Vec<Tok>,
    terms: LineTerms,
    name_hits: Vec<(usize, usize, usize)>,
    ids: Vec<(IdCandidate, usize)>,
    labels: Vec<(usize, usize)>,
    /// Buffers for a cell's words and the start of each cell.
    cell_toks: Vec<Tok>,
    words: Vec<u64>,
    starts: Vec<usize>,
}

/// What the line before said, for a value on the next line ("NHS number:" ⏎ "943 476 5919").
#[derive(Default, Clone, Copy)]
struct Before {
    nhs: bool,
    uln: bool,
    birth_label_last: bool,
    /// The line was a name label alone ("Child's name:"): this line is the name.
    name_label: bool,
    /// …and the label calls it a pupil's.
    pupil_label: bool,
}

impl<'a> Scanner<'a> {
    fn new(names: &'a NameIndex, patterns: &'a Patterns, today: Date) -> Scanner<'a> {
        Scanner {
            names,
            patterns,
            today,
            cues: Cues::new(),
            found: Found::default(),
            toks: Vec::new(),
            terms: LineTerms::default(),
            name_hits: Vec::new(),
            ids: Vec::new(),
            labels: Vec::new(),
            cell_toks: Vec::new(),
            words: Vec::new(),
            starts: Vec::new(),
        }
    }

    fn text(&mut self, text: &Text) {
        let lines: Vec<&str> = text
            .text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .collect();
        let mut prose = Prose::default();
        let mut before = Before::default();
        let mut i = 0;
        while let Some(line) = lines.get(i) {
            if line.contains('\t') {
                let end = (i + 1..lines.len())
                    .find(|&k| lines.get(k).is_none_or(|l| !l.contains('\t')))
                    .unwrap_or(lines.len());
                let block = lines.get(i..end).unwrap_or_default();
                if form_block(block) {
                    for (k, l) in block.iter().enumerate() {
                        before = self.prose_line(text, l, i + k, before, &mut prose);
                    }
                } else {
                    self.table(text, block, i);
                    before = Before::default();
                }
                i = end;
            } else {
                before = self.prose_line(text, line, i, before, &mut prose);
                i += 1;
            }
        }
        self.finish_prose(text, prose);
    }

    /// Words, terms, markings, names and identifiers of one line.
    fn read_line(&mut self, text: &Text, line: &str, n: usize, what: &str) {
        tokenize(line, &mut self.toks);
        self.patterns.find(line, &self.toks, &mut self.terms);
        for m in std::mem::take(&mut self.terms.markings) {
            if !self.found.markings.contains(&m) {
                self.found
                    .evidence(MARKING, || place(text, what, n), || m.clone());
                self.found.markings.push(m);
            }
        }
        self.names.find(line, &self.toks, &mut self.name_hits);
        for &(k, _, _) in &self.name_hits {
            if self.found.pupil(k) {
                let shown = self
                    .names
                    .keys
                    .get(k)
                    .map(|s| initials(s))
                    .unwrap_or_default();
                self.found
                    .evidence(PUPIL, || place(text, what, n), || shown);
            }
        }
        id_candidates(line, &self.toks, &mut self.ids);
        self.cues.birth_labels(line, &self.toks, &mut self.labels);
        // No paragraph gives more dates of birth than this; a hostile one must not make the
        // checks below quadratic.
        self.labels.truncate(MAX_BIRTHS_PER_LINE);
    }

    /// Whether a word of the current line is one of `cues`.
    fn line_has(&self, cues: &[u64]) -> bool {
        self.toks.iter().any(|t| cues.contains(&t.hash))
    }

    /// Counts an identifier; its anchor.
    fn identifier(
        &mut self,
        text: &Text,
        what: &str,
        n: usize,
        detector: &'static str,
        value: String,
        field: bool,
    ) -> Anchor {
        let set = match detector {
            UPN => &mut self.found.upn,
            ULN => &mut self.found.uln,
            NHS => &mut self.found.nhs,
            _ => &mut self.found.ni,
        };
        let key = id_hash(&value);
        if set.insert(key) {
            self.found
                .evidence(detector, || place(text, what, n), || ids::mask(&value));
        }
        Anchor::new(Who::Identifier, key, Shown::Id(value), n, field).pupil(detector != NI)
    }

    /// Which detector a candidate counts for: ten digits need an NHS or ULN cue.
    fn classify(c: IdCandidate, nhs: bool, uln: bool) -> Option<(&'static str, String)> {
        match c {
            IdCandidate::Upn(v) => Some((UPN, v)),
            IdCandidate::Ni(v) => Some((NI, v)),
            IdCandidate::TenDigits(v) if uln && ids::uln_valid(&v) => Some((ULN, v)),
            IdCandidate::TenDigits(v) if nhs && ids::nhs_valid(&v) => Some((NHS, v)),
            IdCandidate::TenDigits(_) => None,
        }
    }

    fn birth(&mut self, text: &Text, what: &str, n: usize, name: Option<u64>, date: Date) {
        if self
            .found
            .births
            .insert(chain(name.unwrap_or(0), date_hash(date)))
        {
            self.found
                .evidence(BIRTH, || place(text, what, n), || dates::mask(date));
        }
    }

    fn table(&mut self, text: &Text, rows: &[&str], first: usize) {
        // The header row comes first; a title row or two may stand above it. Without a
        // column we know, the first row is a header only if it holds no digits and no pupil:
        // a sheet of data rows alone loses none of them.
        let header_at = rows
            .iter()
            .take(5)
            .position(|r| r.split('\t').any(|c| role_of(c) != Role::Other))
            .or_else(|| {
                let first = rows.first()?;
                tokenize(first, &mut self.toks);
                self.names.find(first, &self.toks, &mut self.name_hits);
                let data = first.bytes().any(|b| b.is_ascii_digit()) || !self.name_hits.is_empty();
                (!data).then_some(0)
            });
        let header_row = header_at.and_then(|h| rows.get(h)).copied();
        let mut header = Header::default();
        let empty = Header::default();
        for (k, row) in rows.iter().enumerate() {
            let n = first + k;
            // The header, and the header repeated on every printed page of a long list.
            if Some(k) == header_at
                || (header_at.is_some_and(|h| k > h) && Some(*row) == header_row)
            {
                header = self.header(text, row, n);
                continue;
            }
            let below = header_at.is_some_and(|h| k > h);
            self.row(text, row, n, if below { &header } else { &empty });
        }
    }

    fn header(&mut self, text: &Text, row: &str, n: usize) -> Header {
        self.read_line(text, row, n, "row");
        let mut h = Header::default();
        let mut toks = Vec::new();
        let mut terms = LineTerms::default();
        for cell in row.split('\t') {
            let role = role_of(cell);
            tokenize(cell, &mut toks);
            self.patterns.find(cell, &toks, &mut terms);
            let term = terms.terms.first().map(|&(t, _)| t);
            h.about_special |= term.is_some() || role == Role::Need;
            h.pupils |= role == Role::Need
                || (role == Role::Name && pupil_label(cell))
                || term.is_some_and(|t| !self.patterns.is_job_title(t));
            h.roles.push(role);
            h.terms.push(term);
            h.labels.push(fold_label(cell));
        }
        for (slot, role) in
            h.columns
                .iter_mut()
                .zip([Role::Name, Role::Forename, Role::Surname, Role::Birth])
        {
            *slot = h.roles.iter().position(|&r| r == role);
        }
        h
    }

    /// The words of a name written in a cell or a field, "Surname, Forename" turned round,
    /// into `self.words`.
    fn name_words(&mut self, value: &str) {
        self.words.clear();
        let parts = match value.split_once(',') {
            Some((surname, forenames)) if !forenames.trim().is_empty() => [forenames, surname],
            _ => [value, ""],
        };
        for part in parts {
            tokenize(part, &mut self.cell_toks);
            self.words.extend(self.cell_toks.iter().map(|t| t.hash));
        }
    }

    fn row(&mut self, text: &Text, row: &str, n: usize, header: &Header) {
        self.read_line(text, row, n, "row");
        // Byte offset where each cell starts, to find a word's column.
        let mut starts = std::mem::take(&mut self.starts);
        starts.clear();
        starts.push(0);
        starts.extend(row.match_indices('\t').map(|(i, _)| i + 1));
        let cell_at = |col: usize| -> Option<(usize, usize)> {
            let a = *starts.get(col)?;
            let b = starts.get(col + 1).map_or(row.len(), |&s| s - 1);
            Some((a, b))
        };
        let column_of = |byte: usize| starts.partition_point(|&s| s <= byte).saturating_sub(1);
        let role_at = |col: usize| header.roles.get(col).copied().unwrap_or(Role::Other);
        let nhs_cue = self.line_has(&[self.cues.nhs]);
        let uln_cue = self.line_has(&[self.cues.uln, self.cues.ulns, self.cues.learner]);
        let mut anchors: Vec<Anchor> = Vec::new();

        // The row's name: a directory pupil, the Name column, or Forename and Surname.
        let mut row_name: Option<u64> = None;
        for &(k, _, _) in &self.name_hits {
            if let Some(&key) = self.names.key_hash.get(k) {
                row_name.get_or_insert(key);
                anchors.push(Anchor::new(Who::Pupil, key, Shown::Pupil(k), n, false));
            }
        }
        let span = |role: Role| {
            header
                .column(role)
                .and_then(cell_at)
                .filter(|&(a, b)| row.get(a..b).is_some_and(|c| !c.trim().is_empty()))
        };
        let column_name = match (span(Role::Forename), span(Role::Surname)) {
            (Some(f), Some(s)) => Some((f, Some(s))),
            _ => span(Role::Name).map(|c| (c, None)),
        };
        if let Some(((a, b), surname)) = column_name {
            let forename = row.get(a..b).unwrap_or("");
            let whole = match surname {
                Some((c, d)) => {
                    looks_like_name(forename) && row.get(c..d).is_some_and(looks_like_name)
                }
                None => looks_like_name(forename),
            };
            if whole {
                self.name_words(forename);
                if let Some(s) = surname.and_then(|(c, d)| row.get(c..d)) {
                    tokenize(s, &mut self.cell_toks);
                    self.words.extend(self.cell_toks.iter().map(|t| t.hash));
                }
                let key = name_hash(&self.words);
                let pupil = self.names.named(&self.words);
                let (who, shown) = match pupil {
                    Some(k) => {
                        if self.found.pupil(k) {
                            let shown = Shown::Pupil(k).masked(self.names, row);
                            self.found
                                .evidence(PUPIL, || place(text, "row", n), || shown);
                        }
                        (Who::Pupil, Shown::Pupil(k))
                    }
                    None => {
                        let (from, to) = surname.map_or((a, b), |(c, d)| (a.min(c), b.max(d)));
                        (Who::Name, Shown::Cells(from, to))
                    }
                };
                let key = pupil
                    .and_then(|k| self.names.key_hash.get(k).copied())
                    .unwrap_or(key);
                if !anchors.iter().any(|x| x.key == key) {
                    let pupil = who == Who::Pupil || header.pupils;
                    anchors.push(Anchor::new(who, key, shown, n, false).pupil(pupil));
                }
                row_name.get_or_insert(key);
            }
        }

        for (c, first) in std::mem::take(&mut self.ids) {
            let col = self.toks.get(first).map_or(0, |t| column_of(t.start));
            let nhs = nhs_cue || role_at(col) == Role::Nhs;
            let uln = uln_cue || role_at(col) == Role::Uln;
            if let Some((detector, value)) = Self::classify(c, nhs, uln) {
                let a = self.identifier(text, "row", n, detector, value, false);
                anchors.push(a);
            }
        }

        // Dates of birth: in the DOB column, or labelled in the row.
        let mut births: Vec<Date> = Vec::new();
        if let Some((a, b)) = header.column(Role::Birth).and_then(cell_at) {
            let first = self.toks.partition_point(|t| t.start < a);
            for k in first..self.toks.len() {
                if self.toks.get(k).is_none_or(|t| t.start >= b) {
                    break;
                }
                if let Some((d, _)) = dates::date_at(row, &self.toks, k, self.today) {
                    births.push(d);
                    break;
                }
            }
        }
        for &label in &self.labels {
            if let Some((d, _)) = labelled_date(row, &self.toks, label, self.today)
                && !births.contains(&d)
            {
                births.push(d);
            }
        }
        for d in births {
            if dates::plausible_birth(d, self.today) {
                self.birth(text, "row", n, row_name, d);
                let key = row_name.unwrap_or_else(|| date_hash(d));
                anchors.push(
                    Anchor::new(Who::Birth, key, Shown::Date(d), n, false)
                        .pupil(dates::school_age(d, self.today)),
                );
            }
        }

        // Terms in the row, and columns whose header is a term or a need.
        let mut best: Option<(&str, Strength)> = None;
        let consider = |name: &'a str, s: Strength, best: &mut Option<(&'a str, Strength)>| {
            if best.as_ref().is_none_or(|(_, b)| s > *b) {
                *best = Some((name, s));
            }
        };
        let patterns = self.patterns;
        for &(t, _) in &self.terms.terms {
            if let Some((name, s)) = patterns.terms.get(t) {
                consider(name, *s, &mut best);
            }
        }
        let mut need: Option<String> = None;
        for col in 0..starts.len() {
            let Some(value) = cell_at(col).and_then(|(a, b)| row.get(a..b)) else {
                continue;
            };
            if !positive(value) {
                continue;
            }
            if let Some(Some(t)) = header.terms.get(col)
                && let Some((name, _)) = patterns.terms.get(*t)
            {
                consider(name, Strength::Strong, &mut best);
            }
            if role_at(col) == Role::Need && best.is_none_or(|(_, s)| s < Strength::Strong) {
                need = header.labels.get(col).cloned();
            }
        }
        let found = match (&need, best) {
            (Some(need), None | Some((_, Strength::Weak))) => {
                Some((need.as_str(), Strength::Strong))
            }
            (_, b) => b,
        };
        if let Some((term, mut strength)) = found {
            if header.about_special {
                strength = Strength::Strong;
            }
            let refs: Vec<&Anchor> = anchors.iter().collect();
            let term = term.to_string();
            self.special(text, "row", n, row, &term, strength, &refs, true);
        }
        self.starts = starts;
    }

    /// Counts the pupils of one record beside `term`. `row` is the record's line, for evidence.
    #[allow(clippy::too_many_arguments)]
    fn special(
        &mut self,
        text: &Text,
        what: &str,
        n: usize,
        row: &str,
        term: &str,
        strength: Strength,
        anchors: &[&Anchor],
        one_person: bool,
    ) {
        let counts = match strength {
            Strength::Strong => !anchors.is_empty(),
            Strength::Weak => anchors.iter().any(|a| a.strong()),
        };
        // A special-category word says something about a pupil only: "SENCO | Mrs G D'Arcy"
        // in a staff table says nothing about anyone's needs.
        if !counts || !anchors.iter().any(|a| a.pupil) {
            return;
        }
        // A name that is not itself a pupil's is the pupil's when the record identifies its
        // pupil by a date of birth or an identifier; beside a directory pupil it is someone
        // else (a member of staff).
        let identified = anchors
            .iter()
            .any(|a| a.pupil && matches!(a.who, Who::Birth | Who::Identifier));
        let named: Vec<&&Anchor> = anchors
            .iter()
            .filter(|a| matches!(a.who, Who::Pupil | Who::Name) && (a.pupil || identified))
            .collect();
        let chosen: Vec<&&Anchor> = if !named.is_empty() {
            named
        } else {
            let ids: Vec<&&Anchor> = anchors
                .iter()
                .filter(|a| a.who == Who::Identifier)
                .collect();
            let pick = if ids.is_empty() {
                anchors.iter().filter(|a| a.who == Who::Birth).collect()
            } else {
                ids
            };
            if one_person {
                pick.into_iter().take(1).collect()
            } else {
                pick
            }
        };
        for a in chosen {
            if self.found.special.insert(a.key) {
                let names = self.names;
                self.found.evidence(
                    SPECIAL,
                    || place(text, what, n),
                    || format!("{term} — {}", a.shown.masked(names, row)),
                );
            }
        }
    }

    fn prose_line(
        &mut self,
        text: &Text,
        line: &str,
        n: usize,
        before: Before,
        prose: &mut Prose,
    ) -> Before {
        self.read_line(text, line, n, "line");
        let nhs = before.nhs || self.line_has(&[self.cues.nhs]);
        let uln = before.uln || self.line_has(&[self.cues.uln, self.cues.ulns, self.cues.learner]);

        // A name field, and the directory's pupils named in the paragraph.
        let mut field_key = None;
        let value_below = Some(line.trim())
            .filter(|v| {
                before.name_label && looks_like_name(v) && v.split_whitespace().count() <= 5
            })
            .map(str::to_string);
        let field = field_name(line).or(value_below.map(|v| (v, before.pupil_label)));
        if let Some((value, labelled_pupil)) = field {
            self.name_words(&value);
            let pupil = self.names.named(&self.words);
            let key = pupil
                .and_then(|k| self.names.key_hash.get(k).copied())
                .unwrap_or_else(|| name_hash(&self.words));
            let (who, shown) = match pupil {
                Some(k) => (Who::Pupil, Shown::Pupil(k)),
                None => (Who::Name, Shown::Initials(initials(&value))),
            };
            let pupil = who == Who::Pupil || labelled_pupil;
            prose
                .anchors
                .push(Anchor::new(who, key, shown, n, true).pupil(pupil));
            prose.fields.push(n);
            field_key = Some(key);
        }
        for &(k, _, _) in &self.name_hits {
            if let Some(&key) = self.names.key_hash.get(k)
                && field_key != Some(key)
            {
                prose
                    .anchors
                    .push(Anchor::new(Who::Pupil, key, Shown::Pupil(k), n, false));
            }
        }
        for (c, _) in std::mem::take(&mut self.ids) {
            if let Some((detector, value)) = Self::classify(c, nhs, uln) {
                let a = self.identifier(text, "line", n, detector, value, true);
                prose.anchors.push(a);
            }
        }

        // Dates of birth: after (or just before) a label, or first on the line after a label
        // that ended its line.
        let mut births: Vec<Date> = Vec::new();
        for &label in &self.labels {
            if let Some((d, _)) = labelled_date(line, &self.toks, label, self.today)
                && !births.contains(&d)
            {
                births.push(d);
            }
        }
        if before.birth_label_last
            && let Some((d, _)) = (0..self.toks.len().min(4))
                .find_map(|k| dates::date_at(line, &self.toks, k, self.today))
            && !births.contains(&d)
        {
            births.push(d);
        }
        for d in births {
            if dates::plausible_birth(d, self.today) {
                prose.births.push((prose.anchors.len(), d));
                prose.anchors.push(
                    Anchor::new(Who::Birth, date_hash(d), Shown::Date(d), n, true)
                        .pupil(dates::school_age(d, self.today)),
                );
            }
        }

        let strongest = self
            .terms
            .terms
            .iter()
            .filter_map(|&(t, _)| self.patterns.terms.get(t).map(|(_, s)| (t, *s)))
            .max_by_key(|&(_, s)| s);
        if let Some((t, _)) = strongest {
            prose.terms.push((n, t));
        }
        let birth_label_last = self
            .labels
            .last()
            .is_some_and(|&(_, last)| last + 1 == self.toks.len());
        let trimmed = line.trim();
        let name_label = trimmed.len() <= 31 && role_of(trimmed) == Role::Name;
        Before {
            nhs: self.line_has(&[self.cues.nhs]),
            uln: self.line_has(&[self.cues.uln, self.cues.ulns, self.cues.learner]),
            birth_label_last,
            name_label,
            pupil_label: name_label && pupil_label(trimmed),
        }
    }

    fn finish_prose(&mut self, text: &Text, mut prose: Prose) {
        // Form fields reach the lines around them, not past another child's name field.
        for a in prose.anchors.iter_mut().filter(|a| a.field) {
            let previous = prose.fields.partition_point(|&f| f < a.line);
            let next = prose.fields.partition_point(|&f| f <= a.line);
            let lower = previous
                .checked_sub(1)
                .and_then(|p| prose.fields.get(p))
                .map_or(0, |&f| f + 1);
            let upper = prose
                .fields
                .get(next)
                .map_or(usize::MAX, |&f| f.saturating_sub(1));
            a.from = a.line.saturating_sub(FORM_BACK).max(lower).min(a.line);
            a.to = a.line.saturating_add(FORM_ON).min(upper).max(a.line);
        }
        // A date of birth belongs to the name on its line, or the nearest name field or
        // pupil within three lines (the one above first).
        let mut tied: Option<(usize, Option<u64>)> = None;
        for &(b, date) in &prose.births {
            let Some(line) = prose.anchors.get(b).map(|a| a.line) else {
                continue;
            };
            if let Some((l, name)) = tied
                && l == line
            {
                self.birth(text, "line", line, name, date);
                if let (Some(key), Some(a)) = (name, prose.anchors.get_mut(b)) {
                    a.key = key;
                }
                continue;
            }
            let near = |dl: usize, above: bool| {
                let target = if above {
                    line.checked_sub(dl)
                } else {
                    line.checked_add(dl)
                }?;
                let lo = prose.anchors.partition_point(|a| a.line < target);
                prose
                    .anchors
                    .iter()
                    .skip(lo)
                    .take_while(|a| a.line == target)
                    .find(|a| matches!(a.who, Who::Pupil | Who::Name) && (dl == 0 || a.field))
                    .map(|a| a.key)
            };
            let name = (0..=FORM_BACK).find_map(|dl| near(dl, true).or_else(|| near(dl, false)));
            tied = Some((line, name));
            self.birth(text, "line", line, name, date);
            if let (Some(key), Some(a)) = (name, prose.anchors.get_mut(b)) {
                a.key = key;
            }
        }
        // Each line with a term, against the anchors that reach it.
        for &(line, t) in &prose.terms {
            let Some((term, strength)) = self.patterns.terms.get(t) else {
                continue;
            };
            let lo = prose.anchors.partition_point(|a| a.line + FORM_ON < line);
            let reaching: Vec<&Anchor> = prose
                .anchors
                .iter()
                .skip(lo)
                .take_while(|a| a.line <= line + FORM_BACK)
                .filter(|a| a.from <= line && line <= a.to)
                .collect();
            if reaching.is_empty() {
                continue;
            }
            self.special(text, "line", line, "", term, *strength, &reaching, false);
        }
    }
}

/// A run of tab lines that is a form laid out as a table ("Child's name ⇥ Jamie Smith",
/// "Date of birth ⇥ 14/03/2015"): most rows start with a label followed by a value. A header row
/// ("Name ⇥ UPN ⇥ DOB") is labels only.
fn form_block(rows: &[&str]) -> bool {
    let mut filled = 0usize;
    let mut fields = 0usize;
    // A form is short: the first rows decide, so a long table costs nothing more.
    for row in rows.iter().take(20) {
        let mut cells = row.split('\t').map(str::trim);
        let (first, second) = (cells.next().unwrap_or(""), cells.next().unwrap_or(""));
        if first.is_empty() && second.is_empty() {
            continue;
        }
        filled += 1;
        let label = |c: &str| role_of(c) != Role::Other || (c.ends_with(':') && c.len() <= 40);
        if label(first) && !second.is_empty() && !label(second) {
            fields += 1;
        }
    }
    fields > 0 && fields * 2 > filled
}
