//! TOTP second factor for local accounts (RFC 6238): HMAC-SHA-1, 30-second steps, 6 digits, a
//! code of the step before or after also accepted (clocks drift), each step's code good once.
//!
//! Pure: the caller gives the time and the last step used, and keeps the step a code was
//! accepted for.

use ring::hmac;

/// Seconds per time step.
pub const STEP: i64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Bytes of a new secret (160 bits, as RFC 4226 recommends for HMAC-SHA-1).
const SECRET_BYTES: usize = 20;

/// A new random secret; `None` only if the OS gave no random bytes.
pub fn new_secret() -> Option<Vec<u8>> {
    let mut s = vec![0u8; SECRET_BYTES];
    getrandom::fill(&mut s).ok()?;
    Some(s)
}

/// The time step of Unix time `now`.
pub fn step_at(now: i64) -> i64 {
    now.div_euclid(STEP)
}

/// The code of `secret` for time step `step`, with `digits` digits (RFC 4226 section 5.3).
pub fn code(secret: &[u8], step: i64, digits: u32) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &step.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let binary = (u32::from(mac[offset] & 0x7f) << 24)
        | (u32::from(mac[offset + 1]) << 16)
        | (u32::from(mac[offset + 2]) << 8)
        | u32::from(mac[offset + 3]);
    binary % 10u32.pow(digits)
}

/// The step whose code `typed` is, at Unix time `now` (the step before, this one, or the one
/// after), if it is later than `last_used`. Spaces in what was typed are ignored.
pub fn accept(secret: &[u8], typed: &str, now: i64, last_used: Option<i64>) -> Option<i64> {
    let digits: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() != DIGITS as usize || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let wanted: u32 = digits.parse().ok()?;
    let now_step = step_at(now);
    let mut found = None;
    // Every candidate is computed, so the time taken does not say which one matched.
    for step in [now_step - 1, now_step, now_step + 1] {
        let c = code(secret, step, DIGITS);
        let same = super::auth::same(
            format!("{c:06}").as_bytes(),
            format!("{wanted:06}").as_bytes(),
        );
        if same && found.is_none() && last_used.is_none_or(|l| step > l) {
            found = Some(step);
        }
    }
    found
}

/// RFC 4648 base32 without padding, as authenticator apps take secrets.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The `otpauth://` URI an authenticator app reads (from a QR code or pasted): account `name`
/// at `issuer` (the school's name).
pub fn uri(issuer: &str, name: &str, secret: &[u8]) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let label = format!("{}:{}", enc(issuer), enc(name)).replace('+', "%20");
    format!(
        "otpauth://totp/{label}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP}",
        base32(secret),
        enc(issuer).replace('+', "%20")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1: the 20-byte ASCII key "12345678901234567890".
    const RFC_KEY: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc_6238_vectors() {
        for (time, expected) in [
            (59, 94287082),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            assert_eq!(code(RFC_KEY, step_at(time), 8), expected, "T = {time}");
            assert_eq!(
                code(RFC_KEY, step_at(time), 6),
                expected % 1_000_000,
                "six digits at T = {time}"
            );
        }
    }

    #[test]
    fn accepts_one_step_either_side_once() {
        let t = 1111111109; // step 37037036: code 081804 (the RFC's 07081804)
        assert_eq!(accept(RFC_KEY, "081804", t, None), Some(37037036));
        assert_eq!(accept(RFC_KEY, "081 804", t, None), Some(37037036));
        assert_eq!(accept(RFC_KEY, "081804", t + 30, None), Some(37037036));
        assert_eq!(accept(RFC_KEY, "081804", t - 30, None), Some(37037036));
        assert_eq!(
            accept(RFC_KEY, "081804", t + 60, None),
            None,
            "two steps on"
        );
        assert_eq!(
            accept(RFC_KEY, "081804", t, Some(37037036)),
            None,
            "used already"
        );
        assert_eq!(accept(RFC_KEY, "081805", t, None), None);
        assert_eq!(accept(RFC_KEY, "81804", t, None), None);
        assert_eq!(accept(RFC_KEY, "08180a", t, None), None);
    }

    #[test]
    fn base32_and_uri() {
        // RFC 4648 section 10 (without the padding).
        for (raw, enc) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(raw.as_bytes()), enc);
        }
        assert_eq!(
            base32(RFC_KEY),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            "the RFC key as apps take it"
        );
        let u = uri("Example Academy", "ms.jones", RFC_KEY);
        assert_eq!(
            u,
            "otpauth://totp/Example%20Academy:ms.jones?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Example%20Academy&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(new_secret().map(|s| s.len()), Some(20));
    }
}
