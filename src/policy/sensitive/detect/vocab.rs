//! The words that make a record special-category or safeguarding data (research/detectors.md,
//! "School vocabularies"), the protective markings, and the matcher over a line's words.

use std::collections::HashMap;

use super::words::{ByHash, Tok, hashes, marking_gap, phrase_gap};
use crate::policy::letters::ByLetters;

/// How much a term says on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strength {
    /// Says something about a child only beside a pupil identifier, a date of birth or a
    /// directory pupil's name: an ordinary word ("medical", "religion", "disclosure"), or a short
    /// acronym matched in its own capitals ("CP", "LAC", "SEMH").
    Weak,
    /// Special-category or safeguarding data beside any person ("section 47", "anaphylaxis").
    Strong,
}

/// What a phrase found means.
#[derive(Debug, Clone)]
enum Meaning {
    Term(usize),
    /// Ordinary school prose that contains a term: "pupil premium strategy", "medical room".
    NotATerm,
    /// OFFICIAL-SENSITIVE, with an optional caveat after it.
    OfficialSensitive,
    /// A marking from the school's list (index into `markings`).
    Marking(usize),
}

#[derive(Debug, Clone)]
struct Phrase {
    /// The words after the first.
    rest: Vec<u64>,
    meaning: Meaning,
}

/// The compiled vocabulary.
#[derive(Debug, Clone, Default)]
pub struct Patterns {
    /// The terms' names (shown in evidence as written here) and strengths.
    pub terms: Vec<(String, Strength)>,
    /// The school's markings as listed, and whether one is a single word matched only in
    /// capitals or brackets (PROTECT, RESTRICTED).
    pub markings: Vec<(String, bool)>,
    /// Phrases by the hash of their first word, longest first.
    phrases: ByHash<Vec<Phrase>>,
    /// Acronyms matched in their own case, by exact spelling.
    acronyms: HashMap<String, usize>,
    /// Terms that are staff roles ([`JOB_TITLES`]).
    job_titles: Vec<usize>,
    /// The phrases' first words by their letters, before any hashing
    /// ([`Patterns::may_start`]): each first word whose folded,
    /// lower-case spelling is ASCII.
    first_letters: ByLetters,
    /// [`Patterns::first_letters`] with the acronyms' and the date-of-birth cues' bits too:
    /// a word without its bit here is nothing `nothing_to_count` looks for
    /// ([`Patterns::may_matter_by_letters`]).
    cue_letters: ByLetters,
}

/// Strong terms: special-category or safeguarding data wherever they stand beside a person.
const STRONG: &[&str] = &[
    // SEND
    "SENCO",
    "SENDCo",
    "EHCP",
    "EHC plan",
    "EHC plans",
    "EHCPs",
    "education health and care plan",
    "statement of special educational needs",
    "special educational needs",
    "SEN support",
    "educational psychologist",
    "autism",
    "autistic",
    "ADHD",
    "dyslexia",
    "dyslexic",
    "dyspraxia",
    "dyscalculia",
    "speech and language therapy",
    "speech and language therapist",
    // Safeguarding
    "child protection",
    "CP plan",
    "child in need",
    "CIN plan",
    "section 47",
    "section 17",
    "s47",
    "s17",
    "strategy meeting",
    "strategy discussion",
    "ICPC",
    "RCPC",
    "child protection conference",
    "core group",
    "LADO",
    "early help",
    "team around the family",
    "neglect",
    "neglected",
    "domestic abuse",
    "domestic violence",
    "Operation Encompass",
    "sexual exploitation",
    "criminal exploitation",
    "county lines",
    "FGM",
    "female genital mutilation",
    "forced marriage",
    "Prevent referral",
    "Channel panel",
    "child-on-child abuse",
    "peer-on-peer abuse",
    "child missing education",
    "children missing education",
    "CPOMS",
    "MyConcern",
    "sexual abuse",
    "physical abuse",
    "emotional abuse",
    "social worker",
    "children's social care",
    // Care
    "looked after child",
    "looked-after child",
    "looked after children",
    "child in care",
    "previously looked after",
    "care leaver",
    "foster care",
    "foster carer",
    "foster carers",
    "kinship care",
    "special guardianship",
    "special guardianship order",
    "personal education plan",
    "pupil premium plus",
    // Disadvantage
    "free school meals",
    "eFSM",
    "Ever 6",
    "Ever6",
    "pupil premium",
    "young carer",
    "service child",
    "service premium",
    // Health
    "IHCP",
    "individual healthcare plan",
    "individual health care plan",
    "healthcare plan",
    "health care plan",
    "allergy",
    "allergies",
    "allergic",
    "anaphylaxis",
    "anaphylactic",
    "EpiPen",
    "Epi-Pen",
    "EpiPens",
    "Jext",
    "auto-injector",
    "asthma",
    "asthmatic",
    "inhaler",
    "diabetes",
    "diabetic",
    "insulin",
    "epilepsy",
    "epileptic",
    "seizures",
    "CAMHS",
    "self-harm",
    "self-harming",
    "self-harmed",
    "suicidal",
    "suicide",
    "eating disorder",
    "anorexia",
    "bulimia",
    "pregnancy",
    "pregnant",
    "medical condition",
    "medical conditions",
    "medical needs",
    "diagnosis",
    "diagnosed",
    // Exclusions and justice
    "suspension",
    "fixed-term exclusion",
    "fixed term exclusion",
    "permanent exclusion",
    "permanently excluded",
    "managed move",
    "alternative provision",
    "pupil referral unit",
    "youth offending",
    "youth justice",
    // Other special category
    "ethnicity",
    "ethnic origin",
    "sexual orientation",
    "gender identity",
    "transgender",
];

/// Weak words: they count only beside a pupil identifier, a date of birth or a directory
/// pupil.
const WEAK: &[&str] = &[
    "medical",
    "medication",
    "religion",
    "disclosure",
    "disclosed",
    "safeguarding",
    "excluded",
    "exclusion",
    "mental health",
    "biometric",
    "biometrics",
    "virtual school",
    "disadvantaged",
];

/// Short acronyms that are also ordinary words or initials: matched in these capitals only,
/// and weak.
const ACRONYMS: &[&str] = &[
    "SEN", "SEND", "IEP", "SPLD", "SpLD", "MLD", "SLD", "PMLD", "SEMH", "SLCN", "HI", "VI", "MSI",
    "PD", "ASD", "ASC", "DSL", "DDSL", "CP", "CIN", "MASH", "TAF", "CSE", "CCE", "CME", "LAC",
    "CLA", "CiC", "CIC", "PLAC", "SGO", "PEP", "FSM", "PP", "IHP", "PRU", "YOT", "AP",
];

/// School prose that contains a term without saying anything about a child.
const NOT_TERMS: &[&str] = &[
    "pupil premium strategy",
    "pupil premium strategy statement",
    "pupil premium grant",
    "medical room",
    "medical centre",
    "medical officer",
    "safeguarding policy",
    "safeguarding lead",
    "safeguarding team",
    "designated safeguarding lead",
    "mental health awareness",
    "mental health week",
    "children in need",
];

/// School staff roles that are also terms: beside a pupil they say something ("Jamie was
/// referred to the SENCO"), but as a job title ("SENCO | Mrs G D'Arcy", "our DSL, Mr Khan",
/// "Mrs Patel (SENDCo)") they name a member of staff and nothing about a child.
const JOB_TITLES: &[&str] = &["SENCO", "SENDCo", "DSL", "DDSL"];

/// Words before a role that make it a job title: "our SENCO", "Deputy DSL".
const TITLE_BEFORE: &[&str] = &[
    "our",
    "your",
    "deputy",
    "assistant",
    "acting",
    "interim",
    "trust",
    "school",
    "schools",
    "academy",
    "federation",
    "named",
    "lead",
    "new",
    "as",
];

/// Honorifics: a role next to one is a job title.
const HONORIFICS: &[&str] = &[
    "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "rev", "revd",
];

/// The built-in phrases, compiled once for the process.
static BUILT_IN: std::sync::LazyLock<Patterns> = std::sync::LazyLock::new(|| {
    let mut p = Patterns::default();
    for t in STRONG {
        p.add_term(t, Strength::Strong);
    }
    for t in WEAK {
        p.add_term(t, Strength::Weak);
    }
    for t in ACRONYMS {
        p.add_acronym(t);
    }
    for t in NOT_TERMS {
        p.add_phrase(t, Meaning::NotATerm);
    }
    p.add_phrase("official sensitive", Meaning::OfficialSensitive);
    p.add_phrase("officialsensitive", Meaning::OfficialSensitive);
    for cue in super::BIRTH_CUES {
        p.cue_letters.insert(cue);
    }
    p.job_titles = p
        .terms
        .iter()
        .enumerate()
        .filter(|(_, (t, _))| JOB_TITLES.contains(&t.as_str()))
        .map(|(i, _)| i)
        .collect();
    p
});

/// Hashes of [`TITLE_BEFORE`] and [`HONORIFICS`].
static TITLE_WORDS: std::sync::LazyLock<(Vec<u64>, Vec<u64>)> = std::sync::LazyLock::new(|| {
    let h = |words: &[&str]| {
        words
            .iter()
            .filter_map(|w| hashes(w).first().copied())
            .collect()
    };
    (h(TITLE_BEFORE), h(HONORIFICS))
});

/// What one line's words hold.
#[derive(Debug, Default)]
pub struct LineTerms {
    /// (term index, index of its first word).
    pub terms: Vec<(usize, usize)>,
    /// Markings as they are to be reported.
    pub markings: Vec<String>,
}

impl Patterns {
    /// The built-ins, with the school's `keywords` and `markings` added (only then copied).
    pub fn with(keywords: &[String], markings: &[String]) -> std::borrow::Cow<'static, Patterns> {
        let extra_markings: Vec<&String> = markings
            .iter()
            .filter(|m| {
                let squashed: String = m.chars().filter(|c| c.is_alphanumeric()).collect();
                !squashed.is_empty() && !squashed.eq_ignore_ascii_case("OFFICIALSENSITIVE")
            })
            .collect();
        let keywords: Vec<&String> = keywords.iter().filter(|k| !hashes(k).is_empty()).collect();
        if keywords.is_empty() && extra_markings.is_empty() {
            return std::borrow::Cow::Borrowed(&BUILT_IN);
        }
        let mut p = BUILT_IN.clone();
        for k in keywords {
            let k = k.trim();
            let acronym = k.len() <= 5
                && k.chars().all(|c| c.is_ascii_alphanumeric())
                && k.chars().any(|c| c.is_ascii_uppercase())
                && !k.chars().any(|c| c.is_ascii_lowercase());
            if acronym {
                p.add_acronym(k);
            } else {
                p.add_term(k, Strength::Strong);
            }
        }
        for m in extra_markings {
            let single = hashes(m).len() == 1;
            let i = p.markings.len();
            p.markings.push((m.trim().to_string(), single));
            p.add_phrase(m, Meaning::Marking(i));
        }
        std::borrow::Cow::Owned(p)
    }

    fn add_term(&mut self, t: &str, strength: Strength) {
        let i = self.terms.len();
        self.terms.push((t.to_string(), strength));
        self.add_phrase(t, Meaning::Term(i));
    }

    fn add_acronym(&mut self, t: &str) {
        let i = self.terms.len();
        self.terms.push((t.to_string(), Strength::Weak));
        self.acronyms.insert(t.to_string(), i);
        self.cue_letters.insert(t.as_bytes());
    }

    fn add_phrase(&mut self, t: &str, meaning: Meaning) {
        let h = hashes(t);
        let Some((&first, rest)) = h.split_first() else {
            return;
        };
        // The first word as the hash reads it (accents folded, lower case): an ASCII word of a
        // text can only have its hash when it is spelt so.
        let mut toks = Vec::new();
        super::words::tokenize(t, &mut toks);
        let folded: String = toks
            .first()
            .and_then(|w| t.get(w.start..w.end))
            .unwrap_or_default()
            .chars()
            .flat_map(|c| crate::directory::fold_letter(c).to_lowercase())
            .collect();
        if folded.is_ascii() {
            self.first_letters.insert(folded.as_bytes());
            // What is no term ("medical room") is nothing `nothing_to_count` looks for.
            if !matches!(meaning, Meaning::NotATerm) {
                self.cue_letters.insert(folded.as_bytes());
            }
        }
        let list = self.phrases.entry(first).or_default();
        list.push(Phrase {
            rest: rest.to_vec(),
            meaning,
        });
        list.sort_by_key(|p| std::cmp::Reverse(p.rest.len()));
    }

    /// Whether term `t` is a staff role ([`JOB_TITLES`]).
    pub fn is_job_title(&self, t: usize) -> bool {
        self.job_titles.contains(&t)
    }

    /// Term `t`, written at words `first..=last` of `line`, used as a member of staff's job
    /// title: a cell or a line of its own, next to an honorific, or after "our", "Deputy"….
    fn as_title(&self, t: usize, line: &str, toks: &[Tok], first: usize, last: usize) -> bool {
        if !self.is_job_title(t) {
            return false;
        }
        let (before, honorifics) = &*TITLE_WORDS;
        let (Some(a), Some(b)) = (toks.get(first), toks.get(last)) else {
            return false;
        };
        // Alone in its cell or line ("SENCO ⇥ Mrs G D'Arcy ⇥ 01632 960123").
        let cell_start = line
            .get(..a.start)
            .map_or(0, |s| s.rfind('\t').map_or(0, |i| i + 1));
        let cell_end = line.get(b.end..).map_or(line.len(), |s| {
            s.find('\t').map_or(line.len(), |i| b.end + i)
        });
        let alone = |s: Option<&str>| s.is_some_and(|s| s.chars().all(|c| !c.is_alphanumeric()));
        if alone(line.get(cell_start..a.start)) && alone(line.get(b.end..cell_end)) {
            return true;
        }
        // An honorific just after ("SENCO: Mrs Patel") or up to three words before ("Mrs
        // Patel (SENCO)", "Mr A Khan, DSL").
        let next = toks.get(last + 1).map(|t| t.hash);
        if next.is_some_and(|h| honorifics.contains(&h)) {
            return true;
        }
        if (first.saturating_sub(3)..first)
            .filter_map(|k| toks.get(k))
            .any(|t| honorifics.contains(&t.hash))
        {
            return true;
        }
        first
            .checked_sub(1)
            .and_then(|k| toks.get(k))
            .is_some_and(|t| before.contains(&t.hash))
    }

    /// Whether `word` (ASCII) may be the first word of a phrase, an acronym or a date-of-birth
    /// cue, from its first and last letters and its length alone: one bit test, which lets a
    /// few other words through too.
    #[inline]
    pub fn may_matter_by_letters(&self, word: &[u8]) -> bool {
        self.cue_letters.may_hold(word)
    }

    /// Whether `word` (ASCII letters and digits, a whole word of a line) starts a term or a
    /// marking: when this says no, none starts with it. Its letters are looked at first, so that
    /// most words of a letter need no hash to learn that they do not matter.
    #[inline]
    pub fn may_start(&self, word: &[u8]) -> bool {
        let by_letters = self.first_letters.may_hold(word);
        // The letters let a few words through that start nothing: their hash says.
        by_letters
            && self
                .phrases
                .get(&super::words::ascii_hash(word))
                .is_some_and(|list| list.iter().any(|p| !matches!(p.meaning, Meaning::NotATerm)))
    }

    /// Whether `word` is spelt as one of the acronyms ([`Patterns::may_find`] asks the same).
    pub fn is_acronym(&self, word: &str) -> bool {
        self.acronyms.contains_key(word)
    }

    /// Whether [`Patterns::find`] could find a term or a marking among `toks`, the words of
    /// `line`: a word that starts a term or a marking followed by the rest of its words, or a
    /// word spelt as an acronym (with a capital, as `find` asks). Looser than `find` (gaps between words, job titles and the
    /// capitals a one-word marking needs are not looked at), never stricter: when this says no,
    /// `find` finds nothing.
    pub fn may_find(&self, line: &str, toks: &[Tok]) -> bool {
        toks.iter().enumerate().any(|(i, tok)| {
            let phrase = self.phrases.get(&tok.hash).is_some_and(|list| {
                list.iter().any(|p| {
                    !matches!(p.meaning, Meaning::NotATerm)
                        && p.rest
                            .iter()
                            .enumerate()
                            .all(|(k, &h)| toks.get(i + 1 + k).is_some_and(|t| t.hash == h))
                })
            });
            phrase
                || (tok.end - tok.start <= 5
                    && line.get(tok.start..tok.end).is_some_and(|w| {
                        w.bytes().any(|b| b.is_ascii_uppercase()) && self.acronyms.contains_key(w)
                    }))
        })
    }

    /// Finds the terms and markings among `toks`, the words of `line`.
    pub fn find(&self, line: &str, toks: &[Tok], out: &mut LineTerms) {
        out.terms.clear();
        out.markings.clear();
        let gap = |k: usize| {
            let a = toks.get(k)?;
            let b = toks.get(k + 1)?;
            line.get(a.end..b.start)
        };
        let mut i = 0;
        while let Some(tok) = toks.get(i) {
            let mut skip_to = i + 1;
            let mut matched = false;
            if let Some(list) = self.phrases.get(&tok.hash) {
                for p in list {
                    let gap_fits = |g: &str| match p.meaning {
                        Meaning::Marking(_) => marking_gap(g),
                        // The note's `OFFICIAL[\s_-]*SENSITIVE`, with the dashes Word types.
                        Meaning::OfficialSensitive => g.chars().all(|c| {
                            c.is_whitespace() && c != '\n'
                                || matches!(c, '_' | '-' | '\u{2010}'..='\u{2014}')
                        }),
                        _ => phrase_gap(g),
                    };
                    let fits = p.rest.iter().enumerate().all(|(k, &h)| {
                        toks.get(i + 1 + k).is_some_and(|t| t.hash == h)
                            && gap(i + k).is_some_and(gap_fits)
                    });
                    if !fits {
                        continue;
                    }
                    let last = i + p.rest.len();
                    match &p.meaning {
                        Meaning::Term(t) if self.as_title(*t, line, toks, i, last) => {}
                        Meaning::Term(t) => out.terms.push((*t, i)),
                        Meaning::NotATerm => {}
                        Meaning::OfficialSensitive => {
                            out.markings.push(official_sensitive(line, toks, last));
                        }
                        Meaning::Marking(m) => {
                            if let Some((name, single)) = self.markings.get(*m)
                                && (!single || capitals_or_brackets(line, tok))
                            {
                                out.markings.push(name.clone());
                            }
                        }
                    }
                    matched = true;
                    skip_to = last + 1;
                    break;
                }
            }
            if !matched
                && tok.end - tok.start <= 5
                && let Some(word) = line.get(tok.start..tok.end)
                && word.bytes().any(|b| b.is_ascii_uppercase())
                && let Some(&t) = self.acronyms.get(word)
                && !self.as_title(t, line, toks, i, i)
            {
                out.terms.push((t, i));
            }
            i = skip_to;
        }
    }
}

/// "OFFICIAL-SENSITIVE", with its caveat when one follows ("OFFICIAL-SENSITIVE [PERSONAL]").
fn official_sensitive(line: &str, toks: &[Tok], last: usize) -> String {
    let caveat = toks.get(last + 1).and_then(|next| {
        let end = toks.get(last)?.end;
        let gap = line.get(end..next.start)?;
        let gap_ok = gap.len() <= 4
            && gap
                .chars()
                .all(|c| c.is_whitespace() || matches!(c, ':' | '-' | '/' | '[' | '('));
        let word = line.get(next.start..next.end)?.to_ascii_uppercase();
        (gap_ok && matches!(word.as_str(), "PERSONAL" | "COMMERCIAL" | "LOCSEN")).then_some(word)
    });
    match caveat {
        Some(c) => format!("OFFICIAL-SENSITIVE [{c}]"),
        None => "OFFICIAL-SENSITIVE".to_string(),
    }
}

/// An old one-word marking counts in capitals ("PROTECT") or in brackets ("[Protect]"), not as
/// the ordinary word ("we protect our pupils").
fn capitals_or_brackets(line: &str, tok: &Tok) -> bool {
    let word = line.get(tok.start..tok.end).unwrap_or("");
    if !word.is_empty() && !word.bytes().any(|b| b.is_ascii_lowercase()) {
        return true;
    }
    let before = line
        .get(..tok.start)
        .and_then(|s| s.trim_end().chars().last());
    let after = line
        .get(tok.end..)
        .and_then(|s| s.trim_start().chars().next());
    matches!(before, Some('[' | '(')) && matches!(after, Some(']' | ')'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::sensitive::detect::words::tokenize;

    fn found(p: &Patterns, s: &str) -> (Vec<String>, Vec<String>) {
        let mut t = Vec::new();
        tokenize(s, &mut t);
        let mut out = LineTerms::default();
        p.find(s, &t, &mut out);
        let terms = out
            .terms
            .iter()
            .map(|&(i, _)| p.terms[i].0.clone())
            .collect();
        (terms, out.markings)
    }

    #[test]
    fn terms_match_whole_words_across_hyphen_and_space_variants() {
        let p = Patterns::with(&[], &[]);
        assert_eq!(found(&p, "History of self harm").0, ["self-harm"]);
        assert_eq!(found(&p, "SELF-HARM").0, ["self-harm"]);
        assert_eq!(found(&p, "has an EHC plan").0, ["EHC plan"]);
        assert_eq!(found(&p, "EHCP in place").0, ["EHCP"]);
        assert_eq!(found(&p, "Section 47 enquiry").0, ["section 47"]);
        assert!(found(&p, "asthmatically").0.is_empty());
    }

    #[test]
    fn acronyms_match_only_in_their_capitals() {
        let p = Patterns::with(&[], &[]);
        assert_eq!(found(&p, "Need: SEMH; on a CP plan").0, ["SEMH", "CP plan"]);
        assert_eq!(found(&p, "LAC").0, ["LAC"]);
        assert!(
            found(&p, "lac of effort, a cp, send it, hi there, pp. 4")
                .0
                .is_empty()
        );
    }

    #[test]
    fn school_prose_is_not_a_term() {
        let p = Patterns::with(&[], &[]);
        assert!(
            found(&p, "Our pupil premium strategy statement")
                .0
                .is_empty()
        );
        assert!(found(&p, "Please visit the medical room").0.is_empty());
        assert!(
            found(&p, "Religious education and Year 6 SATs")
                .0
                .is_empty()
        );
        assert_eq!(found(&p, "eligible for pupil premium").0, ["pupil premium"]);
    }

    #[test]
    fn official_sensitive_with_separators_and_caveats() {
        let p = Patterns::with(&[], &["OFFICIAL-SENSITIVE".into()]);
        assert!(
            matches!(p, std::borrow::Cow::Borrowed(_)),
            "the default adds nothing"
        );
        for (s, m) in [
            ("OFFICIAL-SENSITIVE", "OFFICIAL-SENSITIVE"),
            ("Official Sensitive", "OFFICIAL-SENSITIVE"),
            (
                "OFFICIAL_SENSITIVE: PERSONAL",
                "OFFICIAL-SENSITIVE [PERSONAL]",
            ),
            ("OFFICIAL–SENSITIVE [LOCSEN]", "OFFICIAL-SENSITIVE [LOCSEN]"),
            ("OFFICIALSENSITIVE", "OFFICIAL-SENSITIVE"),
        ] {
            assert_eq!(found(&p, s).1, [m], "{s}");
        }
        assert!(found(&p, "OFFICIAL").1.is_empty());
        assert!(found(&p, "an official, sensitive matter").1.is_empty());
    }

    #[test]
    fn the_schools_keywords_and_markings() {
        let p = Patterns::with(
            &["Nurture group".into(), "ELSA".into()],
            &["PROTECT".into(), "Confidential - Staff".into()],
        );
        assert_eq!(found(&p, "attends nurture-group").0, ["Nurture group"]);
        assert_eq!(found(&p, "ELSA sessions").0, ["ELSA"]);
        assert!(found(&p, "Elsa sessions").0.is_empty());
        assert_eq!(found(&p, "PROTECT").1, ["PROTECT"]);
        assert_eq!(found(&p, "[Protect]").1, ["PROTECT"]);
        assert!(found(&p, "we protect our pupils").1.is_empty());
        assert_eq!(found(&p, "confidential: staff").1, ["Confidential - Staff"]);
    }
}
