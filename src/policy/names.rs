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
use crate::policy::sensitive::detect::NameIndex;

/// The directory's pupils by surname.
#[derive(Debug, Clone, Default)]
pub struct PupilNames {
    /// Every pupil's folded surname word (its hash).
    surnames: ByHash<()>,
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
        let words = words(text);
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
            if !self.surnames.contains_key(&w.hash) || !capital_ok(w) {
                continue;
            }
            // "Jamie Carter", "Jamie Lee Carter", "Jamie Lee Anne Carter".
            let mut k = i;
            while k > 0 && i - k < 3 {
                let before = &words[k - 1];
                if !words[k].joined || !capital_ok(before) {
                    break;
                }
                if let Some(pupils) = self.by_name.get(&pair(before.hash, w.hash)) {
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
                && let Some(pupils) = self.by_name.get(&pair(n.hash, w.hash))
            {
                add(pupils, i, i + 1);
            }
        }
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
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '\'' | '\u{2019}' | '-' | '\u{2010}' | '\u{2011}')
}

/// The words of `text`, in one pass.
fn words(text: &str) -> Vec<Word> {
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
        });
        gap_start = t_start + trimmed.len();
    }
    out
}

/// A word folded as [`name_key`] folds it (accents, typographic apostrophes and hyphens, case),
/// as one number, without building a string.
fn word_hash(word: &str) -> u64 {
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
