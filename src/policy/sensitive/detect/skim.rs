//! A skim of a whole text, 64 bytes at a time, for the few places [`super::nothing_to_count`]
//! must read line by line: a word that may start a term, a marking or a date-of-birth label
//! ([`Patterns::may_matter_by_letters`], then the same test the line reader makes), a letter
//! outside ASCII, and digits close enough together to make six in a row. Every other line of a
//! letter is let go without a branch per byte: each 64 bytes are classed at once (letters and
//! digits, digits, bytes that start a character outside ASCII) and the words are walked from
//! one boundary to the next.

use std::ops::Range;

use super::vocab::Patterns;

/// The classes of 64 bytes, one bit per byte (byte `k` is bit `k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Classes {
    /// ASCII letters and digits.
    pub alnum: u64,
    /// ASCII digits.
    pub digit: u64,
    /// Bytes that start a character outside ASCII (0xC0 and above).
    pub wide: u64,
}

/// [`Classes`] of `block`, sixteen bytes at a time with the SSE2 every x86-64 has.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn classes(block: &[u8; 64]) -> Classes {
    use std::arch::x86_64::{
        _mm_add_epi8, _mm_and_si128, _mm_cmpgt_epi8, _mm_cmplt_epi8, _mm_movemask_epi8,
        _mm_or_si128, _mm_set_epi64x, _mm_set1_epi8,
    };
    let mut out = Classes::default();
    for (q, sixteen) in block.chunks_exact(16).enumerate() {
        let (lo, hi) = sixteen.split_at(8);
        let mut l = [0u8; 8];
        let mut h = [0u8; 8];
        l.copy_from_slice(lo);
        h.copy_from_slice(hi);
        // SAFETY: SSE2 is part of every x86-64 processor (the target's baseline), and these
        // intrinsics touch no memory: they work on the values they are given.
        #[allow(unused_unsafe)]
        let (digit, letter, wide) = unsafe {
            let v = _mm_set_epi64x(i64::from_le_bytes(h), i64::from_le_bytes(l));
            // A byte in lo..=hi, moved so that lo is -128: one signed comparison.
            let digit = _mm_cmplt_epi8(
                _mm_add_epi8(v, _mm_set1_epi8((0x80u8 - b'0') as i8)),
                _mm_set1_epi8(-128 + 10),
            );
            let lower = _mm_or_si128(v, _mm_set1_epi8(0x20));
            let letter = _mm_cmplt_epi8(
                _mm_add_epi8(lower, _mm_set1_epi8((0x80u8 - b'a') as i8)),
                _mm_set1_epi8(-128 + 26),
            );
            // 0xC0..=0xFF are -64..=-1: above -65, below zero.
            let wide = _mm_and_si128(
                _mm_cmplt_epi8(v, _mm_set1_epi8(0)),
                _mm_cmpgt_epi8(v, _mm_set1_epi8(-65)),
            );

            let bits = |m| u64::from(_mm_movemask_epi8(m) as u16) << (16 * q);
            (bits(digit), bits(letter), bits(wide))
        };
        out.alnum |= digit | letter;
        out.digit |= digit;
        out.wide |= wide;
    }
    out
}

/// [`Classes`] of `block`, a byte at a time.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(super) fn classes(block: &[u8; 64]) -> Classes {
    classes_bytewise(block)
}

/// [`Classes`] of `block`, a byte at a time (what the SSE2 reader must agree with).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
pub(super) fn classes_bytewise(block: &[u8; 64]) -> Classes {
    let mut out = Classes::default();
    for (k, &c) in block.iter().enumerate() {
        let bit = 1u64 << k;
        if c.is_ascii_alphanumeric() {
            out.alnum |= bit;
        }
        if c.is_ascii_digit() {
            out.digit |= bit;
        }
        if c >= 0xC0 {
            out.wide |= bit;
        }
    }
    out
}

/// The parts of a text a line reader must look at ([`places_to_read`]), each in no particular
/// order.
#[derive(Debug, Default)]
pub(super) struct Places {
    /// A word [`word_may_matter`] keeps, or a letter outside ASCII: its line is read in full.
    pub words: Vec<Range<usize>>,
    /// Digits close enough together to make six in a row: its line's numbers are read.
    pub digits: Vec<Range<usize>>,
}

/// The parts of `text` a line reader must look at: outside them, no line has a word
/// [`word_may_matter`] keeps, a letter outside ASCII, or six digits in a row (a single space
/// or hyphen allowed between two); outside [`Places::words`], no line has either of the first
/// two. A line that touches a place may hold none of those; one that touches none holds none.
pub(super) fn places_to_read(text: &str, patterns: &Patterns) -> Places {
    let b = text.as_bytes();
    let mut places = Places::default();
    // Where the word being walked started, and whether the byte before this block is part of it.
    let mut word_start = 0;
    let mut in_word = false;
    let mut digits_before = 0;
    let mut at = 0;
    while at < b.len() {
        let block: [u8; 64] = match b.get(at..at + 64) {
            Some(s) => {
                let mut block = [0u8; 64];
                block.copy_from_slice(s);
                block
            }
            None => {
                // The last bytes, the rest zero: a zero is neither letter nor digit.
                let mut block = [0u8; 64];
                let rest = b.get(at..).unwrap_or_default();
                if let Some(head) = block.get_mut(..rest.len()) {
                    head.copy_from_slice(rest);
                }
                block
            }
        };
        let c = classes(&block);
        let end = (at + 64).min(b.len());
        // A letter outside ASCII: the line holding it is read (typographic quotes and dashes
        // are not letters and part words as spaces do).
        let mut wide = c.wide;
        while wide != 0 {
            let k = at + wide.trailing_zeros() as usize;
            wide &= wide - 1;
            if text
                .get(k..)
                .and_then(|s| s.chars().next())
                .is_some_and(char::is_alphanumeric)
            {
                places.words.push(k..k + 1);
            }
        }
        // Six digits in a row lie within two neighbouring blocks, or fill one.
        let digits = c.digit.count_ones();
        if digits_before + digits >= 6 {
            places.digits.push(at.saturating_sub(64)..end);
        }
        digits_before = digits;
        // Where a word starts (a letter or digit after none) and where one ends (the first
        // byte after it): walked in order, one step per boundary.
        let before = u64::from(in_word);
        let starts = c.alnum & !((c.alnum << 1) | before);
        let ends = !c.alnum & ((c.alnum << 1) | before);
        let mut edges = starts | ends;
        while edges != 0 {
            let k = edges.trailing_zeros() as usize;
            edges &= edges - 1;
            if c.alnum & (1 << k) != 0 {
                word_start = at + k;
            } else {
                let word_end = (at + k).min(b.len());
                if word_may_matter(text, word_start..word_end, patterns) {
                    places.words.push(word_start..word_end);
                }
            }
        }
        in_word = c.alnum >> 63 != 0;
        at += 64;
    }
    if in_word && word_may_matter(text, word_start..b.len(), patterns) {
        places.words.push(word_start..b.len());
    }
    places
}

/// Whether the ASCII word at `at` of `text` may start a term or a marking, is a date-of-birth
/// cue or is spelt as an acronym: the line reader's own test of a word.
#[inline(always)]
pub(super) fn word_may_matter(text: &str, at: Range<usize>, patterns: &Patterns) -> bool {
    let Some(word) = text.as_bytes().get(at.clone()) else {
        return false;
    };
    patterns.may_matter_by_letters(word)
        && (patterns.may_start(word)
            || super::BIRTH_CUES
                .iter()
                .any(|cue| word.eq_ignore_ascii_case(cue))
            || (word.len() <= 5
                && word.iter().any(u8::is_ascii_uppercase)
                && text.get(at).is_some_and(|w| patterns.is_acronym(w))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sse2_classes_are_the_bytewise_classes() {
        let mut seed: u64 = 0x9e37;
        for round in 0..4000 {
            let mut block = [0u8; 64];
            for byte in block.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *byte = if round % 2 == 0 {
                    seed as u8
                } else {
                    // Mostly the edges of each class.
                    *[
                        b'0', b'9', b'/', b':', b'a', b'z', b'A', b'Z', b'@', b'[', b'`', b'{',
                    ]
                    .get((seed >> 40) as usize % 12)
                    .unwrap_or(&0)
                        ^ if seed & 1 == 0 { 0 } else { 0x80 }
                };
            }
            assert_eq!(classes(&block), classes_bytewise(&block), "{block:?}");
        }
    }
}
