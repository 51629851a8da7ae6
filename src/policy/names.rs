//! Pupils named in a message: in its Subject, an attachment's file name or the author's text.
//!
//! A pupil is named by their full name: first name and surname ("Jamie Carter", "Jamie Lee
//! Carter"), the MIS order ("CARTER Jamie", "Carter, Jamie", "Carter_Jamie_report.pdf"), with a
//! possessive ("Jamie Carter's report"). A first name alone is not a name: "Jamie and Olivia
//! worked well together" names nobody (first names are shared by many pupils).
//!
//! The index is built once per directory (a map from each surname's folded word to the pupils
//! with that surname); a text is read once, word by word, with one map look-up per word. The
//! cost is linear in the text and does not grow with the number of pupils.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use crate::directory::{Directory, fold_letter, name_key};
use crate::policy::letters::ByLetters;
use crate::policy::sensitive::detect::NameIndex;

/// The directory's pupils by surname.
#[derive(Debug, Clone, Default)]
pub struct PupilNames {
    /// Every pupil's folded surname word (its hash).
    surnames: ByHash<()>,
    /// The same words by their letters: most words of a letter are let go without a hash.
    surname_letters: ByLetters,
    /// [`pair`] of a pupil's first name and surname → the pupils' indices in
    /// [`Directory::people`].
    by_name: ByHash<Vec<usize>>,
}

/// A map keyed by a hash already computed: the key is its own hash.
type ByHash<V> = HashMap<u64, V, BuildHasherDefault<Prehashed>>;

#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A first name and a surname as one key.
fn pair(first: u64, last: u64) -> u64 {
    (first.rotate_left(21) ^ last).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Where in a text a pupil is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// The pupil's index in [`Directory::people`].
    pub person: usize,
    /// The words as written ("CARTER Jamie", "Jamie Carter's").
    pub written: String,
}

/// How strictly a text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Prose: a name is written with capitals ("Jamie Carter"), so that "summer day" is not the
    /// pupil Summer Day.
    Prose,
    /// A subject or a file name, often all in lower case: any case.
    Label,
}

impl PupilNames {
    /// Indexes every pupil of `directory` (current or former; who counts as a pupil today is
    /// decided when a name is found).
    pub fn new(directory: &Directory) -> PupilNames {
        let mut index = PupilNames::default();
        for (i, p) in directory.people.iter().enumerate() {
            if p.role != "pupil" {
                continue;
            }
            let key = name_key(&p.name);
            let words: Vec<&str> = key.split(' ').collect();
            let (Some(first), Some(last)) = (words.first(), words.last()) else {
                continue;
            };
            if words.len() < 2 {
                continue;
            }
            index.surname_letters.insert(last.as_bytes());
            let (first, last) = (word_hash(first), word_hash(last));
            index.surnames.insert(last, ());
            let list = index.by_name.entry(pair(first, last)).or_default();
            if !list.contains(&i) {
                list.push(i);
            }
        }
        index
    }

    pub fn is_empty(&self) -> bool {
        self.surnames.is_empty()
    }

    /// The pupils named in `text` (each once, in the order first named); `is_pupil` says who
    /// counts as a pupil today.
    pub fn find(
        &self,
        text: &str,
        reading: Reading,
        is_pupil: &dyn Fn(usize) -> bool,
        out: &mut Vec<Named>,
    ) {
        if self.surnames.is_empty() {
            return;
        }
        // Prose keeps only the words written with a capital: no other word can be part of a
        // name there, and most words of a letter are not. Of those, only a word that may be a
        // surname, and the words beside it, are read in full.
        let kept = match reading {
            Reading::Label => Kept::All(words(text)),
            Reading::Prose => Kept::capitals(text),
        };
        let capital_ok = |w: &Word| reading == Reading::Label || w.capital;
        // Two kept words with no word between them: no letter or digit.
        let next_to = |a: &Word, b: &Word| {
            text.get(a.after..b.start)
                .is_some_and(|between| !between.chars().any(char::is_alphanumeric))
        };
        let mut add = |pupils: &[usize], a: &Word, b: &Word| {
            for &person in pupils {
                if !is_pupil(person) || out.iter().any(|n| n.person == person) {
                    continue;
                }
                out.push(Named {
                    person,
                    written: text.get(a.start..b.end).unwrap_or_default().to_string(),
                });
            }
        };
        for i in 0..kept.len() {
            if !kept.may_be_surname(i, self) {
                continue;
            }
            let Some(w) = kept.word(i) else {
                continue;
            };
            if !self.surnames.contains_key(&w.hash) || !capital_ok(&w) {
                continue;
            }
            // "Jamie Carter", "Jamie Lee Carter", "Jamie Lee Anne Carter".
            let (mut k, mut at_k) = (i, w);
            for _ in 0..3 {
                let Some((before_k, before)) = kept.before(k) else {
                    break;
                };
                if !next_to(&before, &at_k) || !at_k.joined || !capital_ok(&before) {
                    break;
                }
                if let Some(pupils) = self.by_name.get(&pair(before.hash, w.hash)) {
                    add(pupils, &before, &w);
                    break;
                }
                (k, at_k) = (before_k, before);
            }
            // "CARTER Jamie", "Carter, Jamie", "Carter_Jamie".
            if let Some((_, n)) = kept.after(i)
                && next_to(&w, &n)
                && (n.joined || n.after_comma)
                && capital_ok(&n)
                && !w.possessive
                && let Some(pupils) = self.by_name.get(&pair(n.hash, w.hash))
            {
                add(pupils, &w, &n);
            }
        }
    }
}

/// The words [`PupilNames::find`] reads, in order.
enum Kept<'t> {
    /// Every word, read in full (a subject or a file name: short).
    All(Vec<Word>),
    /// The runs of word characters of prose that hold a capital ([`capital_runs`]): each read in
    /// full only when asked for, as a surname or beside one.
    Capitals {
        text: &'t str,
        runs: Vec<(usize, usize)>,
        /// The first letter or digit of the text: a word comes before any later one.
        first_alnum: usize,
    },
}

impl<'t> Kept<'t> {
    fn capitals(text: &'t str) -> Kept<'t> {
        Kept::Capitals {
            text,
            runs: capital_runs(text),
            first_alnum: text
                .char_indices()
                .find(|(_, c)| c.is_alphanumeric())
                .map_or(usize::MAX, |(i, _)| i),
        }
    }

    fn len(&self) -> usize {
        match self {
            Kept::All(words) => words.len(),
            Kept::Capitals { runs, .. } => runs.len(),
        }
    }

    /// Word `i`, if it is one the reading keeps (in prose, written with a capital).
    fn word(&self, i: usize) -> Option<Word> {
        match self {
            Kept::All(words) => words.get(i).copied(),
            Kept::Capitals {
                text,
                runs,
                first_alnum,
            } => {
                let &(start, end) = runs.get(i)?;
                word_of_run(
                    text,
                    start,
                    end,
                    gap_start_before(text, start),
                    *first_alnum < start,
                )
                .filter(|w| w.capital)
            }
        }
    }

    /// Whether word `i` may be a pupil's surname: false only when it certainly is not. A run of
    /// ASCII letters and digits that starts with a capital is its own word (less a possessive
    /// "'s"): its hash is worked out from its bytes, without the rest of [`word_of_run`].
    fn may_be_surname(&self, i: usize, index: &PupilNames) -> bool {
        let (text, &(start, end)) = match self {
            Kept::All(words) => {
                return words
                    .get(i)
                    .is_some_and(|w| index.surnames.contains_key(&w.hash));
            }
            Kept::Capitals { text, runs, .. } => match runs.get(i) {
                Some(run) => (*text, run),
                None => return false,
            },
        };
        let Some(run) = text.as_bytes().get(start..end) else {
            return false;
        };
        let (Some(&first), Some(&last)) = (run.first(), run.last()) else {
            return false;
        };
        if !run.is_ascii() || !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
            // Trimmed, or folded: read in full.
            return true;
        }
        if !first.is_ascii_uppercase() {
            return false;
        }
        let word = match run
            .len()
            .checked_sub(2)
            .and_then(|k| run.split_at_checked(k))
        {
            Some((word, b"'s" | b"'S")) if word.len() >= 2 => word,
            _ => run,
        };
        index.surname_letters.may_hold(word) && index.surnames.contains_key(&ascii_word_hash(word))
    }

    /// The kept word before word `i`, and its index.
    fn before(&self, i: usize) -> Option<(usize, Word)> {
        (0..i).rev().find_map(|k| self.word(k).map(|w| (k, w)))
    }

    /// The kept word after word `i`, and its index.
    fn after(&self, i: usize) -> Option<(usize, Word)> {
        (i + 1..self.len()).find_map(|k| self.word(k).map(|w| (k, w)))
    }
}

/// The indexes the rules reading text keep for one directory, built the first time a message
/// needs them and kept until the directory is loaded again: the pupils by surname
/// ([`PupilNames`]) and the detectors' name index ([`NameIndex`], for the day it was built; a
/// new day builds it again, as who is a pupil changes with age).
#[derive(Default)]
pub struct TextIndexes {
    pupil_names: OnceLock<PupilNames>,
    detectors: Mutex<Option<(jiff::civil::Date, Arc<NameIndex>)>>,
}

impl TextIndexes {
    /// The pupils of `directory` by surname.
    pub fn pupil_names(&self, directory: &Directory) -> &PupilNames {
        self.pupil_names.get_or_init(|| PupilNames::new(directory))
    }

    /// The detectors' index of the pupils of `directory` on `today`.
    pub fn detector_names(
        &self,
        directory: &Directory,
        today: jiff::civil::Date,
    ) -> Arc<NameIndex> {
        let mut slot = self.detectors.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some((day, index)) if *day == today => index.clone(),
            _ => {
                let index = Arc::new(NameIndex::new(directory, today));
                *slot = Some((today, index.clone()));
                index
            }
        }
    }
}

/// A copy of a directory builds its own indexes (they are a cache, not its data).
impl Clone for TextIndexes {
    fn clone(&self) -> Self {
        TextIndexes::default()
    }
}

impl std::fmt::Debug for TextIndexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TextIndexes")
    }
}

/// One word of a text.
#[derive(Debug, Clone, Copy)]
struct Word {
    /// The hash of the word folded as [`name_key`] folds it, without a possessive `'s`.
    hash: u64,
    /// Written with a capital first letter.
    capital: bool,
    /// Only spaces (or `_`, in a file name) stand between this word and the one before.
    joined: bool,
    /// A comma and spaces stand between this word and the one before ("Carter, Jamie").
    after_comma: bool,
    /// Written with a possessive ("Carter's").
    possessive: bool,
    start: usize,
    end: usize,
    /// Where the word as written ends, its possessive kept ("Carter's"): what follows it up to
    /// the next word is the gap before that word.
    after: usize,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '\'' | '\u{2019}' | '-' | '\u{2010}' | '\u{2011}')
}

/// [`is_word_char`] for an ASCII byte.
fn is_ascii_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'\'' || b == b'-'
}

/// Whether the character at byte `at` of `text` (a character boundary) is a word character,
/// and its length in bytes.
fn char_at(text: &str, at: usize) -> (bool, usize) {
    match text.get(at..).and_then(|s| s.chars().next()) {
        Some(c) => (is_word_char(c), c.len_utf8()),
        None => (false, 1),
    }
}

/// The words of `text`, in one pass over its bytes: a word is a run of letters, digits,
/// apostrophes and hyphens, without the apostrophes and hyphens at its ends.
fn words(text: &str) -> Vec<Word> {
    let b = text.as_bytes();
    let mut out: Vec<Word> = Vec::new();
    let mut any_before = false;
    let mut gap_start = 0;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        // Most characters of a letter are ASCII: their class is one comparison away.
        if c < 0x80 {
            if !is_ascii_word_byte(c) {
                i += 1;
                continue;
            }
        } else {
            let (word, len) = char_at(text, i);
            if !word {
                i += len;
                continue;
            }
        }
        let start = i;
        i = run_end(text, i);
        match word_of_run(text, start, i, gap_start, any_before) {
            Some(w) => {
                gap_start = w.after;
                out.push(w);
                any_before = true;
            }
            None => gap_start = i,
        }
    }
    out
}

/// The end of the run of word characters that starts at byte `from` of `text`: ASCII eight
/// bytes at a time, each eight tested at once.
fn run_end(text: &str, from: usize) -> usize {
    use super::eight_bytes::{HIGH, ONES, between, first, load};
    let b = text.as_bytes();
    let mut i = from;
    loop {
        while let Some(x) = load(b, i) {
            let y = x & !HIGH;
            let word = (between(y, b'0', b'9')
                | between(y | (ONES * 0x20), b'a', b'z')
                | between(y, b'\'', b'\'')
                | between(y, b'-', b'-'))
                & !x;
            let other = !word & HIGH;
            if other == 0 {
                i += 8;
                continue;
            }
            i += first(other);
            break;
        }
        match b.get(i) {
            None => return i,
            Some(&c) if c < 0x80 => {
                if !is_ascii_word_byte(c) {
                    return i;
                }
                i += 1;
            }
            Some(_) => {
                let (word, len) = char_at(text, i);
                if !word {
                    return i;
                }
                i += len;
            }
        }
    }
}

/// The word of the run of word characters at `start..end` of `text`, if it has a letter or a
/// digit; `gap_start` is where the gap before it starts (the end of the word before), and
/// `any_before` whether a word comes before it.
#[inline(always)]
fn word_of_run(
    text: &str,
    start: usize,
    end: usize,
    gap_start: usize,
    any_before: bool,
) -> Option<Word> {
    let b = text.as_bytes();
    let raw = text.get(start..end)?;
    // A run that starts and ends with an ASCII letter or digit is its own word.
    let plain = b.get(start).is_some_and(u8::is_ascii_alphanumeric)
        && end
            .checked_sub(1)
            .and_then(|k| b.get(k))
            .is_some_and(u8::is_ascii_alphanumeric);
    let trimmed = if plain {
        raw
    } else {
        raw.trim_matches(|c: char| !c.is_alphanumeric())
    };
    if trimmed.is_empty() {
        return None;
    }
    let t_start = if plain {
        start
    } else {
        start + (raw.len() - raw.trim_start_matches(|c: char| !c.is_alphanumeric()).len())
    };
    let capital = match b.get(t_start).copied() {
        Some(f) if f < 0x80 => f.is_ascii_uppercase(),
        _ => trimmed.chars().next().is_some_and(char::is_uppercase),
    };
    let mut word = trimmed;
    let mut possessive = false;
    for s in ["'s", "\u{2019}s", "'S", "\u{2019}S"] {
        if let Some(w) = word.strip_suffix(s)
            && w.chars().count() >= 2
        {
            word = w;
            possessive = true;
            break;
        }
    }
    // "James'": the apostrophe was trimmed; the word is the name.
    if raw.ends_with(['\'', '\u{2019}']) && !possessive {
        possessive = true;
    }
    let gap = text.get(gap_start..t_start).unwrap_or_default();
    let joined = any_before
        && !gap.is_empty()
        && gap
            .chars()
            .all(|c| matches!(c, ' ' | '\t' | '_' | '\u{a0}'));
    // (Most gaps are a space: trimmed only when there is a comma to find.)
    let after_comma = any_before && gap.contains(',') && gap.trim() == ",";
    Some(Word {
        hash: word_hash(word),
        capital,
        joined,
        after_comma,
        possessive,
        start: t_start,
        end: t_start + word.len(),
        after: t_start + trimmed.len(),
    })
}

/// The runs of word characters of `text` that hold an ASCII capital or a character outside
/// ASCII, found without reading the others: eight bytes at a time are looked at for those.
/// Every word [`words`] reads that is written with a capital is one of them ([`Kept::word`]
/// says which); what [`words`] learns from the words before one (where its gap starts, whether
/// any word comes before it) is read back from the text around it.
fn capital_runs(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = next_capital_or_wide(b, from) {
        let (is_word, len) = match b.get(p) {
            Some(&c) if c < 0x80 => (true, 1),
            _ => char_at(text, p),
        };
        if !is_word {
            from = p + len;
            continue;
        }
        // The run of word characters around it.
        let mut start = p;
        while let Some(c) = text.get(..start).and_then(|s| s.chars().next_back()) {
            if !is_word_char(c) {
                break;
            }
            start -= c.len_utf8();
        }
        let end = run_end(text, p);
        from = end;
        out.push((start, end));
    }
    out
}

/// Where the gap before the run of word characters at `start` begins, as [`words`] has it: the
/// end of the word before (after its last letter or digit), or the end of a run of only
/// apostrophes and hyphens, or the text's start.
fn gap_start_before(text: &str, start: usize) -> usize {
    // Back over the characters between the two runs.
    let mut end = start;
    while let Some(c) = text.get(..end).and_then(|s| s.chars().next_back()) {
        if is_word_char(c) {
            break;
        }
        end -= c.len_utf8();
    }
    // Back over the run before, to its last letter or digit.
    let mut k = end;
    while let Some(c) = text.get(..k).and_then(|s| s.chars().next_back()) {
        if c.is_alphanumeric() {
            return k;
        }
        if !is_word_char(c) {
            break;
        }
        k -= c.len_utf8();
    }
    end
}

/// The first byte at or after `from` that is an ASCII capital or outside ASCII: eight bytes at a
/// time, each eight tested at once.
fn next_capital_or_wide(b: &[u8], from: usize) -> Option<usize> {
    use super::eight_bytes::{HIGH, between, first, load};
    let mut i = from;
    while let Some(x) = load(b, i) {
        let m = (between(x & !HIGH, b'A', b'Z') | x) & HIGH;
        if m != 0 {
            return Some(i + first(m));
        }
        i += 8;
    }
    b.get(i..)?
        .iter()
        .position(|&c| c >= 0x80 || c.is_ascii_uppercase())
        .map(|k| i + k)
}

/// A word folded as [`name_key`] folds it (accents, typographic apostrophes and hyphens, case),
/// as one number, without building a string.
fn word_hash(word: &str) -> u64 {
    if word.is_ascii() {
        return ascii_word_hash(word.as_bytes());
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for c in word.chars() {
        // An ASCII letter folds to itself and lower-cases to one byte: the same hash, without
        // the Unicode tables (most words of a letter home are ASCII).
        if c.is_ascii() {
            h = (h ^ u64::from(c.to_ascii_lowercase() as u8)).wrapping_mul(0x0100_0000_01b3);
            continue;
        }
        for l in fold_letter(c).to_lowercase() {
            let mut buf = [0u8; 4];
            for &b in l.encode_utf8(&mut buf).as_bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    h
}

/// [`word_hash`] of an ASCII word.
#[inline]
fn ascii_word_hash(word: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in word {
        h = (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory() -> Directory {
        let csv = "role,name,school_email,personal_emails,personal_phones,date_of_birth,status\n\
            pupil,Jamie Carter,j.carter@pupils.school.example,,,2011-03-14,current\n\
            pupil,Olivia Smith,o.smith@pupils.school.example,,,2011-05-01,current\n\
            pupil,Siân O’Neil,s.oneil@pupils.school.example,,,2012-01-01,current\n\
            pupil,Summer Day,s.day@pupils.school.example,,,2012-01-01,current\n\
            pupil,Ava Jones,a.jones@pupils.school.example,,,2001-06-01,former\n\
            staff,Tom Baker,t.baker@school.example,,,,current\n";
        Directory::parse(std::path::Path::new("d.csv"), csv.as_bytes(), &[]).unwrap()
    }

    fn named(text: &str, reading: Reading) -> Vec<String> {
        let d = directory();
        let index = PupilNames::new(&d);
        let today = jiff::civil::date(2026, 11, 23);
        let mut out = Vec::new();
        index.find(text, reading, &|i| d.people[i].is_pupil(today), &mut out);
        out.into_iter()
            .map(|n| d.people[n.person].name.clone())
            .collect()
    }

    /// The reader as it was before it skipped the words without a capital: every word kept,
    /// read char by char. The fast reader must find the same names in every text.
    fn reference_words(text: &str) -> Vec<Word> {
        let mut out: Vec<Word> = Vec::new();
        let mut gap_start = 0;
        let mut iter = text.char_indices().peekable();
        while let Some((start, c)) = iter.next() {
            if !is_word_char(c) {
                continue;
            }
            let mut end = start + c.len_utf8();
            while let Some(&(at, n)) = iter.peek() {
                if !is_word_char(n) {
                    break;
                }
                end = at + n.len_utf8();
                iter.next();
            }
            let raw = &text[start..end];
            let trimmed = raw.trim_matches(|c: char| !c.is_alphanumeric());
            if trimmed.is_empty() {
                gap_start = end;
                continue;
            }
            let t_start =
                start + (raw.len() - raw.trim_start_matches(|c: char| !c.is_alphanumeric()).len());
            let mut word = trimmed;
            let mut possessive = false;
            for s in ["'s", "\u{2019}s", "'S", "\u{2019}S"] {
                if let Some(w) = word.strip_suffix(s)
                    && w.chars().count() >= 2
                {
                    word = w;
                    possessive = true;
                    break;
                }
            }
            // "James'": the apostrophe was trimmed; the word is the name.
            if raw.ends_with(['\'', '\u{2019}']) && !possessive {
                possessive = true;
            }
            let gap = &text[gap_start..t_start];
            let joined = !out.is_empty()
                && !gap.is_empty()
                && gap
                    .chars()
                    .all(|c| matches!(c, ' ' | '\t' | '_' | '\u{a0}'));
            let after_comma = !out.is_empty() && gap.trim() == ",";
            out.push(Word {
                hash: word_hash(word),
                capital: word.chars().next().is_some_and(char::is_uppercase),
                joined,
                after_comma,
                possessive,
                start: t_start,
                end: t_start + word.len(),
                after: t_start + trimmed.len(),
            });
            gap_start = t_start + trimmed.len();
        }
        out
    }

    fn reference_find(
        index: &PupilNames,
        text: &str,
        reading: Reading,
        is_pupil: &dyn Fn(usize) -> bool,
        out: &mut Vec<Named>,
    ) {
        let this = index;
        if this.surnames.is_empty() {
            return;
        }
        let words = reference_words(text);
        let capital_ok = |w: &Word| reading == Reading::Label || w.capital;
        let mut add = |pupils: &[usize], from: usize, to: usize| {
            for &person in pupils {
                if !is_pupil(person) || out.iter().any(|n| n.person == person) {
                    continue;
                }
                let (a, b) = (words[from].start, words[to].end);
                out.push(Named {
                    person,
                    written: text.get(a..b).unwrap_or_default().to_string(),
                });
            }
        };
        for (i, w) in words.iter().enumerate() {
            if !this.surnames.contains_key(&w.hash) || !capital_ok(w) {
                continue;
            }
            // "Jamie Carter", "Jamie Lee Carter", "Jamie Lee Anne Carter".
            let mut k = i;
            while k > 0 && i - k < 3 {
                let before = &words[k - 1];
                if !words[k].joined || !capital_ok(before) {
                    break;
                }
                if let Some(pupils) = this.by_name.get(&pair(before.hash, w.hash)) {
                    add(pupils, k - 1, i);
                    break;
                }
                k -= 1;
            }
            // "CARTER Jamie", "Carter, Jamie", "Carter_Jamie".
            if let Some(n) = words.get(i + 1)
                && (n.joined || n.after_comma)
                && capital_ok(n)
                && !w.possessive
                && let Some(pupils) = this.by_name.get(&pair(n.hash, w.hash))
            {
                add(pupils, i, i + 1);
            }
        }
    }

    /// The names the fast reader and the reference reader find in `text`.
    fn both(
        d: &Directory,
        index: &PupilNames,
        text: &str,
        reading: Reading,
    ) -> (Vec<Named>, Vec<Named>) {
        let today = jiff::civil::date(2026, 11, 23);
        let is_pupil = |i: usize| d.people[i].is_pupil(today);
        let (mut fast, mut reference) = (Vec::new(), Vec::new());
        index.find(text, reading, &is_pupil, &mut fast);
        reference_find(index, text, reading, &is_pupil, &mut reference);
        (fast, reference)
    }

    #[test]
    fn the_fast_reader_finds_what_the_word_by_word_reader_found() {
        let d = directory();
        let index = PupilNames::new(&d);
        let texts = [
            "Jamie Carter's report",
            "Jamie Carter\u{2019}s report",
            "JAMIE CARTER",
            "jamie carter",
            "Jamie  Carter",
            "Jamie\tCarter",
            "Jamie_Carter",
            "Jamie\u{a0}Carter",
            "Jamie\nCarter",
            "Jamie\r\nCarter",
            "Jamie -- Carter",
            "Jamie - Carter",
            "Jamie ' Carter",
            "Jamie's Carter",
            "Jamie' Carter",
            "Carter, Jamie",
            "Carter , Jamie",
            "Carter,Jamie",
            "Carter's, Jamie",
            "CARTER Jamie (Year 9)",
            "Carter_Jamie_report.pdf",
            "carter_jamie_report.pdf",
            "-Jamie Carter-",
            "'Jamie Carter'",
            "\u{2018}Jamie Carter\u{2019}",
            "Jamie Lee Carter",
            "Jamie lee Carter",
            "Jamie Lee Anne Marie Carter",
            "Sian O'Neil",
            "Siân O\u{2019}Neil",
            "SIÂN O\u{2019}NEIL",
            "Sian o'Neil",
            "Sian O Neil",
            "Sian O\u{2010}Neil",
            "Sian O\u{2011}Neil",
            "Sian O-Neil",
            "Olivia Smith and Summer Day",
            "a lovely summer day",
            "Summer day",
            "summer Day",
            "Ava Jones",
            "Zoë Carter Jamie",
            "Émile Jamie Carter",
            "ÉJamie Carter",
            "McCarter Jamie",
            "Jamie McCarter",
            "o'Carter Jamie",
            "Jamie o'Carter",
            "Mr Carter came in",
            "Jamie. Carter",
            "Olivia, Smith",
            "Jamie, Carter",
            "9Jamie Carter",
            "Jamie 9Carter",
            "Jamie Carter9",
            "Jamie\u{200b}Carter",
            "Dear Jamie,\n\nCarter, Jamie and Smith Olivia\n",
            "Smith\u{a0}Olivia",
            "Carter Carter Jamie Jamie Carter",
            "Jamie Carter Jamie Carter",
            "",
            " ",
            "'",
            "-",
            "''",
            "Carter",
            "Jamie",
            "J",
            "Ü",
            "Ü Carter",
            "日本 Jamie Carter 日本",
            "Jamie 日本 Carter",
            "Jamie\u{3000}Carter",
        ];
        for reading in [Reading::Prose, Reading::Label] {
            for t in texts {
                let (fast, reference) = both(&d, &index, t, reading);
                assert_eq!(fast, reference, "{t:?} {reading:?}");
            }
        }
        // Texts put together from the pieces most likely to trip a word reader.
        let pieces = [
            "Jamie",
            "Carter",
            "CARTER",
            "jamie",
            "carter",
            "Siân",
            "O\u{2019}Neil",
            "O'Neil",
            "Olivia",
            "Smith",
            "Summer",
            "Day",
            "Lee",
            "'s",
            "\u{2019}s",
            "'",
            "\u{2019}",
            "-",
            "\u{2010}",
            "_",
            " ",
            "  ",
            "\t",
            "\u{a0}",
            ",",
            ", ",
            ".",
            "\n",
            "\r\n",
            "(",
            ")",
            "9",
            "é",
            "Ö",
            "日",
            "and",
            "x",
            "--",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            let mut t = String::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = 2 + (seed % 9) as usize;
            let mut s = seed;
            for _ in 0..n {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                t.push_str(pieces[((s >> 33) as usize) % pieces.len()]);
            }
            for reading in [Reading::Prose, Reading::Label] {
                let (fast, reference) = both(&d, &index, &t, reading);
                assert_eq!(fast, reference, "{t:?} {reading:?}");
            }
        }
    }

    #[test]
    fn names_across_line_ends_and_in_html_text_are_read_as_before() {
        // A name split across a line end is two words with a line end between: not one name.
        assert!(named("Thanks to Jamie\nCarter for", Reading::Prose).is_empty());
        // Text taken out of HTML keeps a cell's tab: "Carter\tJamie" is the MIS order.
        assert_eq!(
            named("Carter\tJamie\t14/03/2011", Reading::Prose),
            ["Jamie Carter"]
        );
        // A non-breaking space from &nbsp; joins a name as a space does.
        assert_eq!(named("Jamie\u{a0}Carter", Reading::Prose), ["Jamie Carter"]);
        // Welsh text with a curly apostrophe and a circumflex.
        assert_eq!(
            named(
                "Diolch i Siân O\u{2019}Neil a\u{2019}r dosbarth",
                Reading::Prose
            ),
            ["Siân O’Neil"]
        );
    }

    #[test]
    fn an_ascii_word_hashes_as_the_unicode_path_hashes_it() {
        // The general path, as word_hash ran it for every character before its ASCII shortcut.
        let general = |word: &str| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for c in word.chars() {
                for l in fold_letter(c).to_lowercase() {
                    let mut buf = [0u8; 4];
                    for &b in l.encode_utf8(&mut buf).as_bytes() {
                        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                    }
                }
            }
            h
        };
        for w in [
            "Carter",
            "CARTER",
            "o'neil",
            "Anne-Marie",
            "X9_z",
            "Siân",
            "ZOË",
            "O\u{2019}Neil",
        ] {
            assert_eq!(word_hash(w), general(w), "{w}");
        }
    }

    #[test]
    fn full_names_in_each_order_are_found() {
        assert_eq!(
            named("Jamie Carter's report", Reading::Prose),
            ["Jamie Carter"]
        );
        assert_eq!(
            named("Report: CARTER Jamie (Year 9)", Reading::Prose),
            ["Jamie Carter"]
        );
        assert_eq!(named("Carter, Jamie", Reading::Prose), ["Jamie Carter"]);
        assert_eq!(
            named("Carter_Jamie_report.pdf", Reading::Label),
            ["Jamie Carter"]
        );
        assert_eq!(
            named("jamie carter report", Reading::Label),
            ["Jamie Carter"]
        );
        assert_eq!(
            named("Jamie Lee Carter did well", Reading::Prose),
            ["Jamie Carter"]
        );
        assert_eq!(
            named("Sian O'Neil and Olivia Smith", Reading::Prose),
            ["Siân O’Neil", "Olivia Smith"]
        );
    }

    #[test]
    fn a_first_name_alone_or_the_wrong_case_is_no_name() {
        assert!(named("Jamie and Olivia worked well together", Reading::Prose).is_empty());
        assert!(named("Mr Carter came in", Reading::Prose).is_empty());
        assert!(named("a lovely summer day out", Reading::Prose).is_empty());
        assert!(named("Jamie. Carter", Reading::Prose).is_empty());
        assert!(named("Olivia, Smith", Reading::Prose).is_empty());
    }

    #[test]
    fn a_former_pupil_now_an_adult_is_not_a_pupil() {
        assert!(named("Ava Jones", Reading::Prose).is_empty());
    }
}
