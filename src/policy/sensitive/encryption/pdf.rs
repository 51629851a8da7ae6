//! PDF (ISO 32000-1 §7.5.5, §7.6; ISO 32000-2 §7.6.4.3.3–4). An encrypted PDF names its
//! encryption dictionary with `/Encrypt` in the trailer, or in the cross-reference stream's
//! dictionary, both always in clear. Only what that needs is parsed here (the last trailer, the
//! Encrypt dictionary and the `/ID` array), never the document: its object streams could be
//! decompression bombs.
//!
//! An `/Encrypt` PDF with only an owner password (restricting printing or copying) opens
//! without asking: the empty user password is tried with the standard security handler's
//! algorithms (R2–R4: MD5 and RC4; R5: SHA-256; R6: the hash of ISO 32000-2 algorithm 2.B).

use memchr::memmem;

use super::Protection;
use super::crypto::{aes128_cbc, md5, rc4, sha256, sha384, sha512};

/// How far from each end the trailer and the signature are looked for.
const TAIL: usize = 64 * 1024;
const HEAD: usize = 1024;
const MAX_NESTING: u8 = 16;
const MAX_ITEMS: usize = 10_000;

const PADDING: [u8; 32] = [
    0x28, 0xBF, 0x4E, 0x5E, 0x4E, 0x75, 0x8A, 0x41, 0x64, 0x00, 0x4E, 0x56, 0xFF, 0xFA, 0x01, 0x08,
    0x2E, 0x2E, 0x00, 0xB6, 0xD0, 0x68, 0x3E, 0x80, 0x2F, 0x0C, 0xA9, 0xFE, 0x64, 0x53, 0x69, 0x7A,
];

const ASKS_PASSWORD: Protection = Protection::Encrypted("password-protected PDF");
const OWNER_ONLY: Protection = Protection::OpensWithoutPassword("PDF with an owner password only");

pub(super) fn is_pdf(bytes: &[u8]) -> bool {
    memmem::find(bytes.get(..HEAD).unwrap_or(bytes), b"%PDF-").is_some()
}

pub(super) fn protection(bytes: &[u8]) -> Protection {
    let trailers = trailers(bytes);
    if trailers.is_empty() {
        // No readable trailer: look for the key itself near either end (a damaged file, or one
        // whose startxref is wrong).
        return match fallback_encrypt(bytes) {
            Some(value) => judge(bytes, &value, &[]),
            None => Protection::Clear,
        };
    }
    let Some(encrypt) = trailers.iter().find_map(|t| get(t, b"Encrypt")) else {
        return Protection::Clear;
    };
    let id = trailers
        .iter()
        .find_map(|t| match get(t, b"ID") {
            Some(Obj::Array(items)) => match items.first() {
                Some(Obj::Str(s)) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        })
        .unwrap_or_default();
    judge(bytes, encrypt, &id)
}

/// Decides from the Encrypt entry's value (a dictionary or a reference to one).
fn judge(bytes: &[u8], encrypt: &Obj, id: &[u8]) -> Protection {
    let resolved;
    let dict = match encrypt {
        Obj::Dict(_) => encrypt,
        Obj::Ref(n, g) => match object(bytes, *n, *g) {
            Some(o @ Obj::Dict(_)) => {
                resolved = o;
                &resolved
            }
            // An Encrypt dictionary that cannot be read: an unknown handler likely asks for a
            // password.
            _ => return Protection::Encrypted("PDF /Encrypt"),
        },
        _ => return Protection::Encrypted("PDF /Encrypt"),
    };
    match get(dict, b"Filter") {
        Some(Obj::Name(n)) if *n == b"Standard" => {}
        Some(Obj::Name(_)) => return Protection::Encrypted("certificate-encrypted PDF"),
        _ => return Protection::Encrypted("PDF /Encrypt"),
    }
    match empty_user_password_opens(dict, id) {
        Some(true) => OWNER_ONLY,
        _ => ASKS_PASSWORD,
    }
}

/// Whether the empty user password authenticates. `None`: the dictionary lacks what is needed.
fn empty_user_password_opens(dict: &Obj, id: &[u8]) -> Option<bool> {
    let r = int(dict, b"R")?;
    let u = string(dict, b"U")?;
    match r {
        2..=4 => {
            let o = string(dict, b"O")?;
            let p = int(dict, b"P")? as u32;
            let v = int(dict, b"V").unwrap_or(0);
            let bits = match int(dict, b"Length") {
                Some(l) => l,
                None if v >= 4 => 128,
                None => 40,
            };
            let n = if r == 2 {
                5
            } else {
                usize::try_from(bits / 8).ok()?.clamp(5, 16)
            };
            let encrypt_metadata = !matches!(get(dict, b"EncryptMetadata"), Some(Obj::Bool(false)));
            let key = key_r2_r4(o, p, id, r, n, encrypt_metadata);
            Some(if r == 2 {
                u.get(..32)? == rc4(&key, &PADDING).as_slice()
            } else {
                let mut x = rc4(&key, &md5(&[&PADDING, id]));
                for i in 1..=19u8 {
                    let k: Vec<u8> = key.iter().map(|b| b ^ i).collect();
                    x = rc4(&k, &x);
                }
                u.get(..16)? == x.get(..16)?
            })
        }
        5 => {
            let salt = u.get(32..40)?;
            Some(u.get(..32)? == sha256(&[salt]).as_slice())
        }
        6 => {
            let salt = u.get(32..40)?;
            Some(u.get(..32)? == hash_2b(b"", salt, b"").get(..32)?)
        }
        _ => None,
    }
}

/// Algorithm 2 of ISO 32000-1 for the empty password: the file key.
fn key_r2_r4(o: &[u8], p: u32, id: &[u8], r: i64, n: usize, encrypt_metadata: bool) -> Vec<u8> {
    let no_metadata: &[u8] = if r >= 4 && !encrypt_metadata {
        &[0xFF; 4]
    } else {
        &[]
    };
    let mut h = md5(&[&PADDING, o, &p.to_le_bytes(), id, no_metadata]);
    if r >= 3 {
        for _ in 0..50 {
            h = md5(&[h.get(..n).unwrap_or(&h)]);
        }
    }
    h.get(..n).unwrap_or(&h).to_vec()
}

/// Algorithm 2.B of ISO 32000-2 (revision 6): rounds of AES-128-CBC and SHA-2, at least 64.
fn hash_2b(password: &[u8], salt: &[u8], udata: &[u8]) -> Vec<u8> {
    let mut k = sha256(&[password, salt, udata]);
    let mut round = 0u32;
    // The last byte of E ends it by round 64 + 255 - 32; the bound only guards the loop.
    while round < 400 {
        round += 1;
        let one: Vec<u8> = [password, &k, udata].concat();
        let mut e = one.repeat(64);
        let (Some(key), Some(iv)) = (k.get(..16), k.get(16..32)) else {
            return k;
        };
        let (Ok(key), Ok(iv)) = (<[u8; 16]>::try_from(key), <[u8; 16]>::try_from(iv)) else {
            return k;
        };
        aes128_cbc(&key, &iv, &mut e);
        let sum: u32 = e.iter().take(16).map(|&b| u32::from(b)).sum();
        k = match sum % 3 {
            0 => sha256(&[&e]),
            1 => sha384(&e),
            _ => sha512(&e),
        };
        let last = u32::from(e.last().copied().unwrap_or(0));
        if round >= 64 && last <= round - 32 {
            break;
        }
    }
    k
}

/// How many cross-reference sections are followed back through `/Prev`.
const MAX_SECTIONS: usize = 8;

/// The trailer dictionaries, newest first: the last `trailer` near the end, then the section
/// `startxref` points to and those before it (`/Prev`). A linearised file keeps `/Encrypt` in
/// the first-page trailer, which the last one need not repeat.
fn trailers(bytes: &[u8]) -> Vec<Obj> {
    let mut found = Vec::new();
    let tail_start = bytes.len().saturating_sub(TAIL);
    let Some(tail) = bytes.get(tail_start..) else {
        return found;
    };
    let startxref = memmem::rfind(tail, b"startxref");
    let before = tail
        .get(..startxref.unwrap_or(tail.len()))
        .unwrap_or_default();
    if let Some(at) = memmem::rfind(before, b"trailer")
        && let Some((dict @ Obj::Dict(_), _)) = parse(bytes, tail_start + at + 7, 0)
    {
        found.push(dict);
    }
    let mut next = startxref.and_then(|sx| match parse(bytes, tail_start + sx + 9, 0) {
        Some((Obj::Int(offset), _)) => usize::try_from(offset).ok(),
        _ => None,
    });
    for _ in 0..MAX_SECTIONS {
        let Some(dict) = next.and_then(|offset| section_dict(bytes, offset)) else {
            break;
        };
        next = int(&dict, b"Prev").and_then(|p| usize::try_from(p).ok());
        if !found.contains(&dict) {
            found.push(dict);
        }
    }
    found
}

/// The trailer of the cross-reference section at `offset`: after a table, or the dictionary
/// of a cross-reference stream (`n g obj << ... >> stream`).
fn section_dict(bytes: &[u8], offset: usize) -> Option<Obj> {
    let at_xref = bytes.get(offset..)?;
    if at_xref.starts_with(b"xref") {
        let t = memmem::find(at_xref, b"trailer")?;
        return match parse(bytes, offset + t + 7, 0)? {
            (dict @ Obj::Dict(_), _) => Some(dict),
            _ => None,
        };
    }
    indirect_at(bytes, offset)
}

/// The dictionary of the indirect object starting at `at` (`n g obj <<…>>`).
fn indirect_at(bytes: &[u8], at: usize) -> Option<Obj> {
    let (Obj::Int(_), at) = parse(bytes, at, 0)? else {
        return None;
    };
    let (Obj::Int(_), at) = parse(bytes, at, 0)? else {
        return None;
    };
    let at = skip_space(bytes, at);
    if !bytes.get(at..)?.starts_with(b"obj") {
        return None;
    }
    match parse(bytes, at + 3, 0)? {
        (dict @ Obj::Dict(_), _) => Some(dict),
        _ => None,
    }
}

/// Finds object `n g` by its `n g obj` line: the Encrypt dictionary is never in an object
/// stream (ISO 32000-1 §7.5.7), and the last definition wins (incremental updates).
fn object(bytes: &[u8], n: u32, g: u32) -> Option<Obj> {
    let needle = format!("{n} {g} obj");
    let mut last = None;
    for at in memmem::find_iter(bytes, needle.as_bytes()) {
        let starts_clean = at == 0 || bytes.get(at - 1).is_some_and(|b| !b.is_ascii_digit());
        if starts_clean {
            last = Some(at);
        }
    }
    indirect_at(bytes, last?)
}

/// `/Encrypt` followed by a reference or a dictionary, near either end of a damaged file.
fn fallback_encrypt(bytes: &[u8]) -> Option<Obj> {
    let tail_start = bytes.len().saturating_sub(TAIL);
    let regions = [
        (0, bytes.get(..TAIL.min(bytes.len()))?),
        (tail_start, bytes.get(tail_start..)?),
    ];
    for (base, region) in regions {
        for at in memmem::find_iter(region, b"/Encrypt") {
            let after = base + at + 8;
            // `/EncryptMetadata` is another key.
            if bytes.get(after).is_some_and(|b| b.is_ascii_alphanumeric()) {
                continue;
            }
            if let Some((value @ (Obj::Ref(..) | Obj::Dict(_)), _)) = parse(bytes, after, 0) {
                return Some(value);
            }
        }
    }
    None
}

/// A PDF object, as far as the Encrypt dictionary needs.
#[derive(Debug, Clone, PartialEq)]
enum Obj {
    Int(i64),
    Real,
    Bool(bool),
    Null,
    Name(Vec<u8>),
    Str(Vec<u8>),
    Array(Vec<Obj>),
    Dict(Vec<(Vec<u8>, Obj)>),
    Ref(u32, u32),
}

fn get<'a>(dict: &'a Obj, key: &[u8]) -> Option<&'a Obj> {
    match dict {
        Obj::Dict(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
        _ => None,
    }
}

fn int(dict: &Obj, key: &[u8]) -> Option<i64> {
    match get(dict, key)? {
        Obj::Int(i) => Some(*i),
        _ => None,
    }
}

fn string<'a>(dict: &'a Obj, key: &[u8]) -> Option<&'a [u8]> {
    match get(dict, key)? {
        Obj::Str(s) => Some(s),
        _ => None,
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b'\0' | b'\t' | b'\n' | b'\x0C' | b'\r' | b' ')
}

fn is_delimiter(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

/// Skips white space and comments.
fn skip_space(b: &[u8], mut at: usize) -> usize {
    while let Some(&c) = b.get(at) {
        if is_space(c) {
            at += 1;
        } else if c == b'%' {
            while b.get(at).is_some_and(|&c| c != b'\n' && c != b'\r') {
                at += 1;
            }
        } else {
            break;
        }
    }
    at
}

/// Parses one object at `at`; returns it and where it ends.
fn parse(b: &[u8], at: usize, depth: u8) -> Option<(Obj, usize)> {
    if depth > MAX_NESTING {
        return None;
    }
    let at = skip_space(b, at);
    let rest = b.get(at..)?;
    match *rest.first()? {
        b'/' => {
            let end = token_end(b, at + 1);
            Some((Obj::Name(b.get(at + 1..end)?.to_vec()), end))
        }
        b'<' if rest.get(1) == Some(&b'<') => {
            let mut entries = Vec::new();
            let mut at = at + 2;
            for _ in 0..MAX_ITEMS {
                at = skip_space(b, at);
                if b.get(at..)?.starts_with(b">>") {
                    return Some((Obj::Dict(entries), at + 2));
                }
                let (Obj::Name(key), next) = parse(b, at, depth + 1)? else {
                    return None;
                };
                let (value, next) = parse(b, next, depth + 1)?;
                entries.push((key, value));
                at = next;
            }
            None
        }
        b'<' => {
            let close = at + 1 + memchr::memchr(b'>', rest.get(1..)?)?;
            let digits: Vec<u8> = b
                .get(at + 1..close)?
                .iter()
                .filter(|c| !is_space(**c))
                .map(|&c| char::from(c).to_digit(16).map(|d| d as u8))
                .collect::<Option<_>>()?;
            let bytes = digits
                .chunks(2)
                .map(|p| (p.first().copied().unwrap_or(0) << 4) | p.get(1).copied().unwrap_or(0))
                .collect();
            Some((Obj::Str(bytes), close + 1))
        }
        b'(' => literal(b, at + 1),
        b'[' => {
            let mut items = Vec::new();
            let mut at = at + 1;
            for _ in 0..MAX_ITEMS {
                at = skip_space(b, at);
                if b.get(at) == Some(&b']') {
                    return Some((Obj::Array(items), at + 1));
                }
                let (item, next) = parse(b, at, depth + 1)?;
                items.push(item);
                at = next;
            }
            None
        }
        c if c.is_ascii_digit() || c == b'-' || c == b'+' || c == b'.' => {
            let end = token_end(b, at);
            let word = std::str::from_utf8(b.get(at..end)?).ok()?;
            let Ok(n) = word.parse::<i64>() else {
                return word.parse::<f64>().ok().map(|_| (Obj::Real, end));
            };
            // `n g R` is a reference.
            if let Ok(obj) = u32::try_from(n) {
                let g_at = skip_space(b, end);
                let g_end = token_end(b, g_at);
                if g_end > g_at
                    && let Some(g) = b
                        .get(g_at..g_end)
                        .and_then(|g| std::str::from_utf8(g).ok())
                        .and_then(|g| g.parse::<u32>().ok())
                {
                    let r_at = skip_space(b, g_end);
                    if b.get(r_at) == Some(&b'R') && token_end(b, r_at) == r_at + 1 {
                        return Some((Obj::Ref(obj, g), r_at + 1));
                    }
                }
            }
            Some((Obj::Int(n), end))
        }
        _ => {
            let end = token_end(b, at);
            match b.get(at..end)? {
                b"true" => Some((Obj::Bool(true), end)),
                b"false" => Some((Obj::Bool(false), end)),
                b"null" => Some((Obj::Null, end)),
                _ => None,
            }
        }
    }
}

fn token_end(b: &[u8], mut at: usize) -> usize {
    while b.get(at).is_some_and(|&c| !is_space(c) && !is_delimiter(c)) {
        at += 1;
    }
    at
}

/// A literal string after its `(`: balanced parentheses, backslash escapes, and end-of-line
/// markers read as LF (ISO 32000-1 §7.3.4.2).
fn literal(b: &[u8], mut at: usize) -> Option<(Obj, usize)> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    loop {
        let c = *b.get(at)?;
        at += 1;
        match c {
            b'\\' => {
                let e = *b.get(at)?;
                at += 1;
                match e {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'b' => out.push(0x08),
                    b'f' => out.push(0x0C),
                    b'0'..=b'7' => {
                        let mut v = u32::from(e - b'0');
                        for _ in 0..2 {
                            match b.get(at) {
                                Some(&d @ b'0'..=b'7') => {
                                    v = v * 8 + u32::from(d - b'0');
                                    at += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push((v & 0xFF) as u8);
                    }
                    b'\r' => {
                        if b.get(at) == Some(&b'\n') {
                            at += 1;
                        }
                    }
                    b'\n' => {}
                    other => out.push(other),
                }
            }
            b'(' => {
                depth += 1;
                out.push(c);
            }
            b')' => {
                if depth == 0 {
                    return Some((Obj::Str(out), at));
                }
                depth -= 1;
                out.push(c);
            }
            b'\r' => {
                if b.get(at) == Some(&b'\n') {
                    at += 1;
                }
                out.push(b'\n');
            }
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_parse_as_in_the_spec() {
        let (o, _) = parse(
            b"<< /A 1 0 R /B [(a\\(b\\)\\101\\\nc) <4142 4> -3 2.5 true] /C <</D null>> >>",
            0,
            0,
        )
        .unwrap();
        assert_eq!(get(&o, b"A"), Some(&Obj::Ref(1, 0)));
        assert_eq!(
            get(&o, b"B"),
            Some(&Obj::Array(vec![
                Obj::Str(b"a(b)Ac".to_vec()),
                Obj::Str(vec![0x41, 0x42, 0x40]),
                Obj::Int(-3),
                Obj::Real,
                Obj::Bool(true)
            ]))
        );
        assert_eq!(
            get(&o, b"C"),
            Some(&Obj::Dict(vec![(b"D".to_vec(), Obj::Null)]))
        );
        // Nesting past the limit is refused, not followed.
        let deep = "[".repeat(1000);
        assert_eq!(parse(deep.as_bytes(), 0, 0), None);
    }

    #[test]
    fn a_clear_pdf_is_clear() {
        let pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\nxref\n0 1\n0000000000 65535 f \ntrailer << /Root 1 0 R /Size 2 >>\nstartxref\n45\n%%EOF\n";
        assert!(is_pdf(pdf));
        assert_eq!(protection(pdf), Protection::Clear);
    }

    #[test]
    fn an_unknown_handler_or_unreadable_dictionary_asks_for_a_password() {
        let pubsec = b"%PDF-1.6\ntrailer << /Encrypt << /Filter /Adobe.PubSec /V 4 >> >>\nstartxref\n0\n%%EOF";
        assert_eq!(
            protection(pubsec),
            Protection::Encrypted("certificate-encrypted PDF")
        );
        let missing = b"%PDF-1.6\ntrailer << /Encrypt 9 0 R >>\nstartxref\n0\n%%EOF";
        assert_eq!(protection(missing), Protection::Encrypted("PDF /Encrypt"));
    }

    #[test]
    fn truncations_never_panic() {
        let pdf = b"%PDF-1.6\n5 0 obj << /Filter /Standard /V 2 /R 3 /O (abc) /U <00> /P -4 >> endobj\ntrailer << /Encrypt 5 0 R /ID [<01><02>] >>\nstartxref\n0\n%%EOF";
        for cut in 0..pdf.len() {
            let _ = protection(&pdf[..cut]);
        }
        assert_eq!(protection(pdf), ASKS_PASSWORD);
    }
}
