//! A set of words kept by their letters alone: the first two, the last two and the length, in
//! any ASCII case. Asking it costs one bit test and no hash, so the readers of a message's words
//! step over most words of a letter with it ("and" is not "ADD", nor "science" "suicide"). It
//! lets a few other words through too: a word it holds may be in the set; one it does not hold
//! is not.

/// Bits in a set.
const BITS: usize = 16_384;

#[derive(Debug, Clone, Default)]
pub struct ByLetters(Vec<u64>);

impl ByLetters {
    /// Adds `word` (spelt as the words asked about are, less their case).
    pub fn insert(&mut self, word: &[u8]) {
        let Some(bit) = letters_key(word) else {
            return;
        };
        if self.0.is_empty() {
            self.0 = vec![0; BITS / 64];
        }
        if let Some(slot) = self.0.get_mut(bit / 64) {
            *slot |= 1 << (bit % 64);
        }
    }

    /// Whether `word` may be one added: false only when none added has its letters.
    #[inline]
    pub fn may_hold(&self, word: &[u8]) -> bool {
        letters_key(word).is_some_and(|bit| {
            self.0
                .get(bit / 64)
                .is_some_and(|slot| slot & (1 << (bit % 64)) != 0)
        })
    }
}

/// The bit of a word by its first two and last two letters and its length (ASCII, any case:
/// a few other bytes are taken as alike too, as '@' and '`').
#[inline]
fn letters_key(word: &[u8]) -> Option<usize> {
    let (&first, &last) = (word.first()?, word.last()?);
    let second = word.get(1).copied().unwrap_or(first);
    let penult = word
        .len()
        .checked_sub(2)
        .and_then(|k| word.get(k))
        .copied()
        .unwrap_or(last);
    // Setting 0x20 lower-cases an ASCII letter and leaves a digit, an apostrophe or a hyphen
    // as it is: the same on both sides of the set, so any word is keyed alike in any case.
    let key = (u64::from(first)
        | u64::from(second) << 8
        | u64::from(penult) << 16
        | u64::from(last) << 24
        | 0x2020_2020)
        | (word.len().min(255) as u64) << 32;
    // The top 14 bits of a 64-bit multiplicative hash: every one of the set's bits is used.
    Some((key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 50) as usize % BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_added_is_held_in_any_case_and_most_others_are_not() {
        let mut set = ByLetters::default();
        assert!(!set.may_hold(b"carter"));
        for w in ["carter", "ehcp", "o'neil", "a"] {
            set.insert(w.as_bytes());
        }
        for w in ["Carter", "CARTER", "carter", "EHCP", "O'Neil", "A"] {
            assert!(set.may_hold(w.as_bytes()), "{w}");
        }
        for w in ["Carters", "Crater", "and", "ADD", "", "b"] {
            assert!(!set.may_hold(w.as_bytes()), "{w}");
        }
    }
}
