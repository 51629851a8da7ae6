//! Eight bytes of a text at a time, each eight tested at once (SWAR): the readers of a
//! message's words use it to step over what cannot matter without a branch per byte.

/// One in each byte.
pub const ONES: u64 = 0x0101_0101_0101_0101;
/// The high bit of each byte.
pub const HIGH: u64 = 0x8080_8080_8080_8080;

/// Bytes `at..at + 8` of `b` as one number (byte `at` lowest), if there are eight.
#[inline(always)]
pub fn load(b: &[u8], at: usize) -> Option<u64> {
    let chunk = b.get(at..at.checked_add(8)?)?;
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(chunk);
    Some(u64::from_le_bytes(bytes))
}

/// The high bit of each byte of `y` at least `lo` and at most `hi`. Every byte of `y` must be
/// below 0x80 (mask the high bits off first): then no byte's sum carries into the next.
#[inline(always)]
pub fn between(y: u64, lo: u8, hi: u8) -> u64 {
    (y + ONES * (0x80 - u64::from(lo))) & !(y + ONES * (0x7f - u64::from(hi))) & HIGH
}

/// The index, among the eight, of the first byte whose high bit `m` has set.
#[inline(always)]
pub fn first(m: u64) -> usize {
    (m.trailing_zeros() / 8) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn between_marks_exactly_the_bytes_in_range() {
        for lo in [b'0', b'A', b'a'] {
            let hi = lo + 9;
            for start in 0u8..0x78 {
                let bytes: Vec<u8> = (start..start + 8).collect();
                let y = load(&bytes, 0).unwrap_or(0);
                let m = between(y, lo, hi);
                for (k, &c) in bytes.iter().enumerate() {
                    let marked = m & (0x80 << (8 * k)) != 0;
                    assert_eq!(marked, (lo..=hi).contains(&c), "{c:#x} in {lo}..={hi}");
                }
            }
        }
        assert_eq!(load(b"1234567", 0), None);
        assert_eq!(first(0x80 << 16), 2);
    }
}
