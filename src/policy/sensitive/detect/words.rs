//! Words of a line, each hashed once (lower case, accents folded as the directory folds
//! names), so names and vocabulary are found by hash look-ups instead of one regex per term or
//! per pupil.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::directory::fold_letter;

/// One word: a maximal run of letters and digits. Hyphens and apostrophes split words, so
/// "self-harm" and "self harm" are the same two words and "O'Brien" is "o" "brien" in text
/// and in the directory alike.
#[derive(Debug, Clone, Copy)]
pub struct Tok {
    pub start: usize,
    pub end: usize,
    /// [`fold_hash`] of the word.
    pub hash: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// Spreads the bits so the hash can key a map without hashing again.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Adds one more word to a sequence's hash.
pub fn chain(seq: u64, word: u64) -> u64 {
    mix(seq.rotate_left(17) ^ word)
}

/// The hash [`tokenize`] gives `word`, a whole word of ASCII letters and digits.
pub fn ascii_hash(word: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &c in word {
        h = (h ^ u64::from(c.to_ascii_lowercase())).wrapping_mul(FNV_PRIME);
    }
    mix(h)
}

/// The words of `line` into `out` (cleared first).
pub fn tokenize(line: &str, out: &mut Vec<Tok>) {
    out.clear();
    let b = line.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c.is_ascii_alphanumeric() {
            let start = i;
            let mut h = FNV_OFFSET;
            loop {
                match b.get(i) {
                    Some(&c) if c.is_ascii_alphanumeric() => {
                        h = (h ^ u64::from(c.to_ascii_lowercase())).wrapping_mul(FNV_PRIME);
                        i += 1;
                    }
                    Some(&c) if c >= 0x80 => match line.get(i..).and_then(|s| s.chars().next()) {
                        Some(ch) if ch.is_alphanumeric() => {
                            h = fold_into(h, ch);
                            i += ch.len_utf8();
                        }
                        _ => break,
                    },
                    _ => break,
                }
            }
            out.push(Tok {
                start,
                end: i,
                hash: mix(h),
            });
        } else if c < 0x80 {
            i += 1;
        } else {
            match line.get(i..).and_then(|s| s.chars().next()) {
                Some(ch) if ch.is_alphanumeric() => {
                    // A word starting with a non-ASCII letter: the same loop, entered here.
                    let start = i;
                    let mut h = fold_into(FNV_OFFSET, ch);
                    i += ch.len_utf8();
                    loop {
                        match b.get(i) {
                            Some(&c) if c.is_ascii_alphanumeric() => {
                                h = (h ^ u64::from(c.to_ascii_lowercase())).wrapping_mul(FNV_PRIME);
                                i += 1;
                            }
                            Some(&c) if c >= 0x80 => {
                                match line.get(i..).and_then(|s| s.chars().next()) {
                                    Some(ch) if ch.is_alphanumeric() => {
                                        h = fold_into(h, ch);
                                        i += ch.len_utf8();
                                    }
                                    _ => break,
                                }
                            }
                            _ => break,
                        }
                    }
                    out.push(Tok {
                        start,
                        end: i,
                        hash: mix(h),
                    });
                }
                Some(ch) => i += ch.len_utf8(),
                None => i += 1,
            }
        }
    }
}

fn fold_into(mut h: u64, ch: char) -> u64 {
    for l in fold_letter(ch).to_lowercase() {
        h = (h ^ u64::from(u32::from(l))).wrapping_mul(FNV_PRIME);
    }
    h
}

/// The hashes of the words of `s`.
pub fn hashes(s: &str) -> Vec<u64> {
    let mut toks = Vec::new();
    tokenize(s, &mut toks);
    toks.iter().map(|t| t.hash).collect()
}

/// A hasher for keys that are already hashes.
#[derive(Default, Clone, Copy)]
pub struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix(self.0 ^ u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub type ByHash<V> = HashMap<u64, V, BuildHasherDefault<Prehashed>>;

/// Between two words of a phrase: spaces, hyphens or underscores only ("self-harm", "EHC
/// plan"), never a tab (another cell) or punctuation.
pub fn phrase_gap(gap: &str) -> bool {
    !gap.is_empty()
        && gap.chars().all(|c| {
            c == ' ' || c == '-' || c == '_' || c == '\u{a0}' || c == '\u{2010}' || c == '\u{2011}'
        })
}

/// Between two words of a protective marking: anything but letters, digits and line breaks
/// ("OFFICIAL - SENSITIVE", "OFFICIAL_SENSITIVE", "[PROTECT : PERSONAL]").
pub fn marking_gap(gap: &str) -> bool {
    gap.chars()
        .all(|c| !c.is_alphanumeric() && c != '\n' && c != '\t')
        && gap.len() <= 6
}

/// Between two words of a name: spaces, a hyphen or an apostrophe ("Anne-Marie O'Neil").
pub fn name_gap(gap: &str) -> bool {
    !gap.is_empty()
        && gap.len() <= 4
        && gap.chars().all(|c| {
            c == ' '
                || c == '-'
                || c == '\''
                || c == '\u{a0}'
                || c == '\u{2019}'
                || c == '\u{2010}'
                || c == '\u{2011}'
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_fold_case_and_accents_and_split_on_hyphens() {
        assert_eq!(hashes("Self-Harm"), hashes("self harm"));
        assert_eq!(hashes("ZOË Núñez"), hashes("zoe nunez"));
        assert_eq!(hashes("O\u{2019}Brien"), hashes("o brien"));
        assert_ne!(hashes("asthma"), hashes("asthmas"));
        let mut t = Vec::new();
        tokenize("£5 — Zoë's 2010/03", &mut t);
        let words: Vec<&str> = t
            .iter()
            .map(|t| &"£5 — Zoë's 2010/03"[t.start..t.end])
            .collect();
        assert_eq!(words, ["5", "Zoë", "s", "2010", "03"]);
    }
}
