//! The check algorithms of the identifiers a school's files hold (research/detectors.md): the
//! Unique Pupil Number, the Unique Learner Number, the NHS number and the National Insurance
//! number. Pure functions on one candidate value; finding candidates in text is the caller's.

/// The UPN check letters: A–Z without I, O and S.
const UPN_LETTERS: &[u8; 23] = b"ABCDEFGHJKLMNPQRTUVWXYZ";

/// A valid UPN (DfE UPN guide, Annex A): a check letter, 11 digits and a last digit, or for a
/// temporary UPN a last letter; upper case, as the MIS writes it.
pub fn upn_valid(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 13 {
        return false;
    }
    let Some(first) = b
        .first()
        .and_then(|&c| UPN_LETTERS.iter().position(|&l| l == c))
    else {
        return false;
    };
    let mut sum = 0usize;
    for (pos, &c) in (2usize..).zip(b.iter().skip(1)) {
        let value = if c.is_ascii_digit() {
            usize::from(c - b'0')
        } else if pos == 13 {
            match UPN_LETTERS.iter().position(|&l| l == c) {
                Some(v) => v,
                None => return false,
            }
        } else {
            return false;
        };
        sum += value * pos;
    }
    sum % 23 == first
}

/// The weighted sum of the first nine digits (weights 10 down to 2) and the tenth digit, for a
/// string of exactly ten ASCII digits.
fn mod11_parts(s: &str) -> Option<(u32, u32)> {
    let b = s.as_bytes();
    if b.len() != 10 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum = b
        .iter()
        .take(9)
        .zip((2..=10u32).rev())
        .map(|(&d, w)| u32::from(d - b'0') * w)
        .sum();
    let last = u32::from(b.last().copied()? - b'0');
    Some((sum, last))
}

/// A valid ULN (LRS "WSLP02 ULN Validation"): ten digits, remainder 0 never issued.
pub fn uln_valid(s: &str) -> bool {
    match mod11_parts(s) {
        Some((sum, last)) => {
            let r = sum % 11;
            r != 0 && last == 10 - r
        }
        None => false,
    }
}

/// A valid NHS number (NHS Data Dictionary): ten digits, check digit 11 − (sum mod 11) with
/// 11 → 0 and 10 never issued; not one repeated digit (0000000000 passes the check). The test
/// range 999 000 0000–999 999 9999 is counted too: it is never issued, so it cannot be a real
/// patient's, but it is what a school's own test data and training files use (the research
/// notes recommend it), and a network manager trying schoolgate out must see it caught.
pub fn nhs_valid(s: &str) -> bool {
    let Some((sum, last)) = mod11_parts(s) else {
        return false;
    };
    let check = match 11 - sum % 11 {
        11 => 0,
        10 => return false,
        c => c,
    };
    let b = s.as_bytes();
    let repeated = b.windows(2).all(|w| w.first() == w.last());
    check == last && !repeated
}

/// A valid National Insurance number (HMRC NIM39110), compact ("AB123456C"), upper or lower
/// case: prefix letters from the allowed sets, not an unallocated prefix, six digits, suffix
/// A–D.
pub fn ni_valid(s: &str) -> bool {
    let b = s.as_bytes();
    let [p1, p2, d @ .., suffix] = b else {
        return false;
    };
    let (p1, p2, suffix) = (
        p1.to_ascii_uppercase(),
        p2.to_ascii_uppercase(),
        suffix.to_ascii_uppercase(),
    );
    let first_ok = p1.is_ascii_uppercase() && !b"DFIQUV".contains(&p1);
    let second_ok = p2.is_ascii_uppercase() && !b"DFIOQUV".contains(&p2);
    let prefix = [p1, p2];
    let unallocated = [b"BG", b"GB", b"KN", b"NK", b"NT", b"TN", b"ZZ"]
        .iter()
        .any(|p| **p == prefix);
    first_ok
        && second_ok
        && !unallocated
        && d.len() == 6
        && d.iter().all(u8::is_ascii_digit)
        && (b'A'..=b'D').contains(&suffix)
}

/// An identifier masked for evidence: the first two and the last character, a dot for each
/// one between ("H8••••••••••1").
pub fn mask(value: &str) -> String {
    let n = value.chars().count();
    value
        .chars()
        .enumerate()
        .map(|(i, c)| if i < 2 || i + 1 == n { c } else { '•' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upn_worked_examples() {
        // DfE worked example (sum 53, remainder 7 → H), its temporary example, and another.
        for ok in ["H801200001001", "X00180001701A", "B801200005001"] {
            assert!(upn_valid(ok), "{ok}");
        }
        for bad in ["A801200005001", "X00180001701B", "I801200001001"] {
            assert!(!upn_valid(bad), "{bad}");
        }
        // Wrong length, lower case, a letter inside.
        for bad in [
            "H80120000100",
            "h801200001001",
            "H8012000A1001",
            "H8012000010011",
        ] {
            assert!(!upn_valid(bad), "{bad}");
        }
    }

    #[test]
    fn uln_worked_examples() {
        for ok in ["1234567899", "0000000042", "1000000000"] {
            assert!(uln_valid(ok), "{ok}");
        }
        for bad in ["1234567890", "9999999999", "123456789", "12345678a9"] {
            assert!(!uln_valid(bad), "{bad}");
        }
    }

    #[test]
    fn nhs_worked_examples() {
        for ok in ["9434765919", "4010232137"] {
            assert!(nhs_valid(ok), "{ok}");
        }
        for bad in ["9434765918", "9876544321", "0000000000"] {
            assert!(!nhs_valid(bad), "{bad}");
        }
        // The test range passes (never issued, but what test data uses).
        assert!(nhs_valid("9990000018"));
    }

    #[test]
    fn a_ten_digit_number_is_never_both_uln_and_nhs() {
        for n in [
            "1234567899",
            "0000000042",
            "1000000000",
            "9434765919",
            "4010232137",
        ] {
            assert!(!(uln_valid(n) && nhs_valid(n)), "{n}");
        }
    }

    #[test]
    fn ni_worked_examples() {
        for ok in ["AB123456C", "CE123456D", "ab123456c"] {
            assert!(ni_valid(ok), "{ok}");
        }
        for bad in [
            "QQ123456A",
            "BG123456A",
            "GB123456A",
            "NK123456A",
            "TN123456A",
            "ZZ123456A",
            "AO123456A",
            "AB123456E",
            "AB12345C",
            "DA123456A",
        ] {
            assert!(!ni_valid(bad), "{bad}");
        }
    }

    #[test]
    fn masks_keep_two_first_and_the_last_character() {
        assert_eq!(mask("H801200001001"), "H8••••••••••1");
        assert_eq!(mask("AB123456C"), "AB••••••C");
    }
}
