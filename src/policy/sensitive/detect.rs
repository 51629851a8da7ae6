//! The detectors: UPN, ULN, NHS and National Insurance numbers, dates of birth beside names,
//! the directory's pupils by name, special-category and safeguarding vocabulary, protective
//! markings. Each keeps evidence with a masked sample, never a whole value.

use serde::Serialize;

use super::extract::Text;
use crate::directory::Directory;

/// One piece of evidence: which detector, where, and a masked sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    pub detector: &'static str,
    pub location: String,
    /// Masked: never the whole value ("H80•••••••01", "J. S••••").
    pub sample: String,
}

/// The built-in vocabularies and markings, with the school's additions, compiled once.
#[derive(Debug)]
pub struct Vocabulary {}

impl Vocabulary {
    /// `keywords`: the school's own extra terms; `markings`: protective markings.
    pub fn new(keywords: &[String], markings: &[String]) -> Vocabulary {
        let _ = (keywords, markings);
        Vocabulary {}
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
pub fn scan(
    texts: &[Text],
    directory: &Directory,
    today: jiff::civil::Date,
    vocabulary: &Vocabulary,
) -> Tally {
    let _ = (texts, directory, today, vocabulary);
    Tally::default()
}
