//! `password-in-message`: an encrypted attachment and its password written in the same message.
//!
//! Seed 000: "where personal data is transferred outside the secure school network, it must be
//! encrypted". The ICO: encryption only protects when the wrong recipient "does not have the
//! means to decrypt" — a password in the same message gives them the means. The password must
//! go another way (a phone call, a text message).
//!
//! A password is *written* when a password word (English "password", "passcode", "pw", "pwd";
//! Welsh "cyfrinair" and its mutations) is followed by the password itself: "The password is
//! Tr0ut!42", "password: sunshine", "pwd Tr0ut42", "Y cyfrinair yw Draig2026", "cyfrinair:
//! draig". Saying that a password exists or will come is not writing it: "I'll phone you with
//! the password", "password to follow by text", "the password is the same as before", "the
//! password is your child's date of birth".

/// Where a password is written, and a masked sample of it (never the password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The password word as written ("password", "pwd", "cyfrinair").
    pub word: String,
    /// The password's first character, the rest masked: "T•••••••".
    pub masked: String,
}

/// Words that name a password (lower case).
const WORDS: &[&str] = &[
    "password",
    "passcode",
    "passphrase",
    "pw",
    "pwd",
    "p/w",
    "cyfrinair",
    "gyfrinair",
    "chyfrinair",
    "nghyfrinair",
];

/// Abbreviations, which are only a password word when what follows looks like a password.
const SHORT: &[&str] = &["pw", "pwd", "p/w"];

/// "is", in English and Welsh.
const IS: &[&str] = &["is", "yw", "ydy", "ydi", "="];

/// Words that may stand between the password word and "is": "the password *for the attached
/// file* is", "cyfrinair *y ffeil* yw".
const LEADS: &[&str] = &[
    "for", "of", "on", "to", "y", "yr", "i", "i'r", "ar", "ar gyfer",
];

/// What follows "is" or ":" when the password itself is not written there.
const NOT_A_PASSWORD: &[&str] = &[
    // English
    "a",
    "about",
    "above",
    "an",
    "and",
    "as",
    "ask",
    "attached",
    "available",
    "below",
    "being",
    "by",
    "call",
    "changed",
    "coming",
    "different",
    "email",
    "emailed",
    "expired",
    "follow",
    "following",
    "for",
    "from",
    "going",
    "has",
    "have",
    "her",
    "his",
    "i",
    "i'll",
    "in",
    "incorrect",
    "it",
    "its",
    "known",
    "later",
    "my",
    "needed",
    "needs",
    "not",
    "n/a",
    "none",
    "of",
    "on",
    "or",
    "our",
    "phone",
    "phoned",
    "please",
    "protected",
    "required",
    "same",
    "see",
    "sent",
    "sending",
    "separate",
    "separately",
    "shared",
    "soon",
    "still",
    "text",
    "texted",
    "that",
    "the",
    "their",
    "them",
    "they",
    "this",
    "to",
    "tomorrow",
    "unchanged",
    "usual",
    "via",
    "was",
    "we",
    "we'll",
    "what",
    "will",
    "with",
    "wrong",
    "you",
    "your",
    "yours",
    "yet",
    "tbc",
    "xxxx",
    "xxx",
    // Welsh
    "ar",
    "anfon",
    "dilyn",
    "ddilyn",
    "drwy",
    "trwy",
    "ei",
    "eich",
    "ein",
    "eu",
    "fy",
    "gan",
    "gyda",
    "heb",
    "isod",
    "uchod",
    "mewn",
    "neges",
    "nes",
    "wahân",
    "wahan",
    "wedi",
    "yn",
    "y",
    "yr",
    "ffonio",
    "ffôn",
    "ffon",
    "tecst",
    "ol",
    "ôl",
    "yr un",
];

/// The first password written in `text`, if any.
pub fn written(text: &str) -> Option<Written> {
    // Most texts name no password: one byte search says so without reading their words. When
    // one may, the words before the first cue are none (each password word holds a cue), so
    // reading starts at the white space before it.
    let cue = first_cue(text)?;
    let from = text[..cue]
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace())
        .map_or(0, |(at, c)| at + c.len_utf8());
    written_in(&text[from..])
}

/// Where the first of "pw", "p/w", "pass" or "frinair" (any case) is in `text`: every word of
/// [`WORDS`] holds one of them, so a text without one writes no password. (A password word is
/// ASCII, and only ASCII letters lower-case to ASCII letters other than "k": comparing bytes
/// without case is enough.)
fn first_cue(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let at = |i: usize, s: &[u8]| {
        b.get(i..i + s.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(s))
    };
    let p = memchr::memchr2_iter(b'p', b'P', b)
        .find(|&i| at(i + 1, b"w") || at(i + 1, b"/w") || at(i + 1, b"ass"));
    let end = p.unwrap_or(b.len());
    let f = memchr::memchr2_iter(b'f', b'F', &b[..end]).find(|&i| at(i + 1, b"rinair"));
    f.or(p)
}

/// [`written`], reading every word of `text`.
fn written_in(text: &str) -> Option<Written> {
    let chunks: Vec<Chunk<'_>> = chunks(text);
    for (i, c) in chunks.iter().enumerate() {
        // A chunk starting with an ASCII letter no password word starts with is none (an ASCII
        // letter lower-cases to an ASCII letter): most words of a letter go no further.
        if c.core.bytes().next().is_some_and(|b| {
            b.is_ascii()
                && !WORDS
                    .iter()
                    .any(|w| w.as_bytes().first() == Some(&b.to_ascii_lowercase()))
        }) {
            continue;
        }
        // Most words are lower-case ASCII already: lower-cased only when that changes them.
        let core: std::borrow::Cow<'_, str> =
            if c.core.is_ascii() && !c.core.bytes().any(|b| b.is_ascii_uppercase()) {
                std::borrow::Cow::Borrowed(c.core)
            } else {
                std::borrow::Cow::Owned(c.core.to_lowercase())
            };
        // "password:Kestrel9", written without a space.
        if let Some((word, rest)) = c.core.split_once([':', '='])
            && WORDS.contains(&word.to_lowercase().as_str())
        {
            let value = Chunk {
                raw: rest,
                core: rest,
                paragraph: false,
            };
            if let Some(v) = password(&value, true) {
                return Some(Written {
                    word: word.to_string(),
                    masked: mask(v),
                });
            }
            continue;
        }
        if !WORDS.contains(&&*core) {
            continue;
        }
        let short = SHORT.contains(&&*core);
        if let Some(value) = value_after(&chunks, i, short) {
            return Some(Written {
                word: c.core.to_string(),
                masked: mask(value),
            });
        }
    }
    None
}

/// A word of the text with what surrounds it: the punctuation before and after it, and whether
/// a blank line comes before it.
#[derive(Debug, Clone, Copy)]
struct Chunk<'a> {
    /// The whole chunk between white space.
    raw: &'a str,
    /// Without the punctuation around it.
    core: &'a str,
    /// A blank line stands between this chunk and the one before.
    paragraph: bool,
}

fn chunks(text: &str) -> Vec<Chunk<'_>> {
    let mut out = Vec::new();
    let mut newlines = 0;
    let mut start = None;
    let mut pending_newlines = 0;
    for (at, ch) in text.char_indices() {
        if ch.is_whitespace() {
            if let Some(s) = start.take() {
                out.push(chunk(&text[s..at], pending_newlines));
                newlines = 0;
            }
            if ch == '\n' {
                newlines += 1;
            }
        } else if start.is_none() {
            start = Some(at);
            pending_newlines = newlines;
        }
    }
    if let Some(s) = start {
        out.push(chunk(&text[s..], pending_newlines));
    }
    out
}

fn chunk(raw: &str, newlines_before: usize) -> Chunk<'_> {
    let core = raw
        .trim_matches(|c: char| !(c.is_alphanumeric() || c == '/' || c == '\'' || c == '\u{2019}'))
        .trim_matches(['\'', '\u{2019}']);
    Chunk {
        raw,
        core,
        paragraph: newlines_before >= 2,
    }
}

/// Ends a clause: what comes after it is not what the password word said.
fn ends_clause(raw: &str) -> bool {
    raw.ends_with(['.', ',', ';', '!', '?', ')'])
}

/// The password written after the password word at `i`, if one is.
fn value_after<'a>(chunks: &[Chunk<'a>], i: usize, short: bool) -> Option<&'a str> {
    let word = chunks[i];
    let at = |k: usize| chunks.get(k).filter(|c| !c.paragraph);
    // "password: X", "password = X", "password - X", "Password:\nX".
    let colon = word.raw.trim_end_matches(['*', '"']).ends_with([':', '=']);
    if colon {
        return at(i + 1).and_then(|c| password(c, true));
    }
    if ends_clause(word.raw) {
        return None;
    }
    let next = at(i + 1)?;
    if matches!(next.raw, ":" | "=" | "-" | "–" | "—") {
        return at(i + 2).and_then(|c| password(c, true));
    }
    // "pwd Tr0ut42", "password Tr0ut!42": only what looks like a password.
    if let Some(v) = password(next, false) {
        return Some(v);
    }
    if short {
        return None;
    }
    // "password is X", "password for the attached file is X", "cyfrinair y ffeil yw X".
    let mut k = i + 1;
    let first = at(k)?.core.to_lowercase();
    if !is_word(&first) {
        if !LEADS.contains(&first.as_str()) {
            return None;
        }
        if first == "to" {
            let then = at(k + 1)?.core.to_lowercase();
            if !matches!(then.as_str(), "open" | "unlock" | "access") {
                return None;
            }
        }
        // Up to six words of what the password is for, within the clause.
        loop {
            let c = at(k)?;
            if is_word(&c.core.to_lowercase()) {
                break;
            }
            if ends_clause(c.raw) || k > i + 6 {
                return None;
            }
            k += 1;
        }
    }
    let is = at(k)?;
    if ends_clause(is.raw) && !is.raw.ends_with(':') {
        return None;
    }
    let mut v = at(k + 1)?;
    if matches!(v.raw, ":" | "-" | "–") {
        v = at(k + 2)?;
    }
    password(v, true)
}

fn is_word(lower: &str) -> bool {
    IS.contains(&lower)
}

/// The chunk as a written password: `any_word` allows a plain word ("sunshine") where the
/// sentence says it is the password; otherwise it must look like one (a digit or a symbol, or
/// upper case after the first letter).
fn password<'a>(c: &Chunk<'a>, any_word: bool) -> Option<&'a str> {
    // Keep the symbols a password has; drop quotes and the full stop that ends the sentence.
    let v = c
        .raw
        .trim_start_matches(['"', '\'', '\u{201c}', '\u{2018}', '(', '*', ':'])
        .trim_end_matches(['"', '\'', '\u{201d}', '\u{2019}', ')', '*', '.', ',', ';']);
    let lower = v.to_lowercase();
    if v.chars().count() < 3 || !v.chars().any(char::is_alphanumeric) {
        return None;
    }
    if NOT_A_PASSWORD.contains(&lower.as_str())
        || NOT_A_PASSWORD.contains(&c.core.to_lowercase().as_str())
    {
        return None;
    }
    // "Jamie's date of birth": a hint at the password, not the password.
    if lower.ends_with("'s") || lower.ends_with("\u{2019}s") {
        return None;
    }
    if any_word {
        return Some(v);
    }
    let digit = v.chars().any(|c| c.is_ascii_digit());
    let symbol = v.chars().any(|c| !c.is_alphanumeric());
    let inner_upper = v.chars().skip(1).any(char::is_uppercase);
    (digit || symbol || inner_upper).then_some(v)
}

/// The first character, the rest as dots: enough for the sender to recognise what was seen.
fn mask(v: &str) -> String {
    let mut chars = v.chars();
    let first = chars.next().map(String::from).unwrap_or_default();
    first + &"•".repeat(chars.count().min(12))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> bool {
        written(text).is_some()
    }

    #[test]
    fn a_written_password_is_found_in_english() {
        for t in [
            "The password is Tr0ut!42",
            "the password is sunshine.",
            "Password: sunshine",
            "password:sunshine",
            "PASSWORD = Sunshine2026",
            "pw: Kestrel9",
            "pwd Kestrel9",
            "PW - Kestrel9",
            "The passcode is 4821",
            "The password for the attached file is \"Owl-Meadow\".",
            "Password to open it is Kestrel9",
            "Hi Jo,\n\nReport attached.\nPassword:\nKestrel9\n\nThanks",
            "The password is: Kestrel9",
            "*Password:* Kestrel9",
        ] {
            assert!(found(t), "{t}");
        }
    }

    #[test]
    fn a_written_password_is_found_in_welsh() {
        for t in [
            "Y cyfrinair yw Draig2026",
            "Cyfrinair: draig",
            "cyfrinair y ffeil yw Draig2026",
            "Dyma'r adroddiad. Y cyfrinair ydy mynydd.",
            "Fy nghyfrinair yw Draig2026",
        ] {
            assert!(found(t), "{t}");
        }
    }

    #[test]
    fn saying_a_password_exists_is_not_writing_it() {
        for t in [
            "I'll phone you with the password.",
            "Password to follow by text.",
            "password to follow",
            "The password will be sent separately.",
            "The password is the same as before.",
            "The password is your child's date of birth.",
            "The password is Jamie's date of birth",
            "I have password protected the file.",
            "The file is password-protected; ring me for the password",
            "Please find the password protected report attached.",
            "Byddaf yn eich ffonio gyda'r cyfrinair.",
            "Y cyfrinair i ddilyn drwy neges destun.",
            "Cyfrinair: i ddilyn",
            "Forgotten your password? Ask the office.",
            "Password: see below",
            "The password\n\nKestrel9 is our mascot",
            "the password is required to open it",
            "the pw for wifi changed",
            "Your password is not needed",
        ] {
            assert!(!found(t), "{t}");
        }
    }

    #[test]
    fn reading_from_the_first_cue_finds_what_reading_every_word_finds() {
        let texts = [
            "The password is Tr0ut!42",
            "Hi Jo,\n\nReport attached.\nPassword:\nKestrel9\n\nThanks",
            "Report attached.\n\nPassword\n\nKestrel9",
            "We passed the test. The password is Kestrel9",
            "Passport details to follow; the password is Kestrel9",
            "Dyma'r adroddiad.\u{a0}Y cyfrinair ydy mynydd.",
            "Diolch.\u{3000}Fy nghyfrinair yw Draig2026",
            "Fy NGHYFRINAIR yw Draig2026",
            "upw: Kestrel9",
            "(pw: Kestrel9)",
            "\"password:Kestrel9\"",
            "*Password:* Kestrel9",
            "p/w Kestrel9",
            "P/W: Kestrel9",
            "pwd\tKestrel9",
            "The pass is Kestrel9",
            "I'll phone you with the password.",
            "No password here, pw to follow",
            "Siân's password\u{2019}s here: Kestrel9",
            "frinair",
            "p",
            "",
        ];
        for t in texts {
            assert_eq!(written(t), written_in(t), "{t:?}");
        }
        assert_eq!(first_cue("Thank you for coming to parents' evening"), None);
        assert_eq!(first_cue("Our pass"), Some(4));
        assert_eq!(first_cue("Y CYFRINAIR yw"), Some(4));
        assert_eq!(first_cue("cyfrinair, then pw"), Some(2));
    }

    #[test]
    fn the_sample_never_shows_the_password() {
        let w = written("The password is Tr0ut!42").unwrap();
        assert_eq!(w.masked, "T•••••••");
        assert_eq!(w.word, "password");
    }
}
