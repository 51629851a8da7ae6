//! RAR archives: RAR 1.5–4 (RARLAB technote, `Rar!\x1A\x07\x00`) and RAR5 (`Rar!\x1A\x07\x01\x00`).
//! Headers encrypted ("encrypt file names") show in the main header (RAR 4) or as an encryption
//! header first (RAR5); otherwise each file header says whether its data is encrypted.

use super::{MAX_RECORDS, Protection, u16_at, u32_at};

pub(super) const SIGNATURE_4: &[u8] = b"Rar!\x1A\x07\x00";
pub(super) const SIGNATURE_5: &[u8] = b"Rar!\x1A\x07\x01\x00";

pub(super) fn protection(bytes: &[u8]) -> Protection {
    let counted = if bytes.starts_with(SIGNATURE_5) {
        rar5(bytes)
    } else {
        rar4(bytes)
    };
    match counted {
        Walk::HeadersEncrypted(how) => Protection::Encrypted(how),
        Walk::Files {
            files,
            encrypted,
            how,
        } if files > 0 && encrypted == files => Protection::Encrypted(how),
        // Clear, partly encrypted, or unreadable: the extractor reports what it cannot read.
        Walk::Files { .. } => Protection::Clear,
    }
}

enum Walk {
    HeadersEncrypted(&'static str),
    Files {
        files: usize,
        encrypted: usize,
        how: &'static str,
    },
}

fn rar4(bytes: &[u8]) -> Walk {
    const MAIN: u8 = 0x73;
    const FILE: u8 = 0x74;
    const END: u8 = 0x7B;
    const MAIN_PASSWORD: u16 = 0x0080;
    const FILE_PASSWORD: u16 = 0x0004;
    const FILE_DIRECTORY: u16 = 0x00E0;
    const FILE_LARGE: u16 = 0x0100;
    const LONG_BLOCK: u16 = 0x8000;
    let mut files = 0;
    let mut encrypted = 0;
    let mut at = SIGNATURE_4.len();
    for _ in 0..MAX_RECORDS {
        let (Some(&kind), Some(flags), Some(size)) = (
            bytes.get(at + 2),
            u16_at(bytes, at + 3),
            u16_at(bytes, at + 5),
        ) else {
            break;
        };
        if usize::from(size) < 7 {
            break;
        }
        let mut data = 0u64;
        if kind == FILE || flags & LONG_BLOCK != 0 {
            data = u64::from(u32_at(bytes, at + 7).unwrap_or(0));
        }
        match kind {
            MAIN if flags & MAIN_PASSWORD != 0 => {
                return Walk::HeadersEncrypted("RAR, file names hidden");
            }
            FILE => {
                if flags & FILE_LARGE != 0 {
                    data |= u64::from(u32_at(bytes, at + 32).unwrap_or(0)) << 32;
                }
                if flags & FILE_DIRECTORY != FILE_DIRECTORY {
                    files += 1;
                    if flags & FILE_PASSWORD != 0 {
                        encrypted += 1;
                    }
                }
            }
            END => break,
            _ => {}
        }
        let Some(next) = usize::try_from(data)
            .ok()
            .and_then(|d| at.checked_add(usize::from(size))?.checked_add(d))
        else {
            break;
        };
        at = next;
    }
    Walk::Files {
        files,
        encrypted,
        how: "RAR",
    }
}

fn rar5(bytes: &[u8]) -> Walk {
    const FILE: u64 = 2;
    const ENCRYPTION: u64 = 4;
    const END: u64 = 5;
    const HAS_EXTRA: u64 = 0x01;
    const HAS_DATA: u64 = 0x02;
    const FILE_IS_DIRECTORY: u64 = 0x01;
    const EXTRA_ENCRYPTION: u64 = 0x01;
    let mut files = 0;
    let mut encrypted = 0;
    let mut at = SIGNATURE_5.len();
    for _ in 0..MAX_RECORDS {
        // CRC32, then the header size, which counts from the header type to its end.
        let mut r = Vint {
            b: bytes,
            at: at + 4,
        };
        let Some(size) = r.next() else { break };
        let start = r.at;
        let Some(end) = usize::try_from(size)
            .ok()
            .and_then(|s| start.checked_add(s))
        else {
            break;
        };
        if end > bytes.len() {
            break;
        }
        let (Some(kind), Some(flags)) = (r.next(), r.next()) else {
            break;
        };
        if kind == ENCRYPTION {
            return Walk::HeadersEncrypted("RAR5, file names hidden");
        }
        let extra = if flags & HAS_EXTRA != 0 {
            r.next()
        } else {
            Some(0)
        };
        let data = if flags & HAS_DATA != 0 {
            r.next()
        } else {
            Some(0)
        };
        let (Some(extra), Some(data)) = (extra, data) else {
            break;
        };
        if kind == FILE {
            let is_directory = r.next().is_some_and(|f| f & FILE_IS_DIRECTORY != 0);
            if !is_directory {
                files += 1;
                let extra_area = usize::try_from(extra)
                    .ok()
                    .and_then(|e| end.checked_sub(e))
                    .and_then(|s| bytes.get(s..end))
                    .unwrap_or_default();
                if has_record(extra_area, EXTRA_ENCRYPTION) {
                    encrypted += 1;
                }
            }
        }
        if kind == END {
            break;
        }
        let Some(next) = usize::try_from(data).ok().and_then(|d| end.checked_add(d)) else {
            break;
        };
        at = next;
    }
    Walk::Files {
        files,
        encrypted,
        how: "RAR5 (AES-256)",
    }
}

/// Whether a RAR5 extra area holds a record of type `wanted`.
fn has_record(area: &[u8], wanted: u64) -> bool {
    let mut r = Vint { b: area, at: 0 };
    while r.at < area.len() {
        let Some(size) = r.next() else { return false };
        let start = r.at;
        let Some(kind) = r.next() else { return false };
        if kind == wanted {
            return true;
        }
        let Some(next) = usize::try_from(size)
            .ok()
            .and_then(|s| start.checked_add(s))
        else {
            return false;
        };
        r.at = next;
    }
    false
}

/// RAR5's variable-length integer: seven bits a byte, low first, high bit says more follow.
struct Vint<'a> {
    b: &'a [u8],
    at: usize,
}

impl Vint<'_> {
    fn next(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = *self.b.get(self.at)?;
            self.at += 1;
            value |= u64::from(byte & 0x7F).checked_shl(shift).unwrap_or(0);
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rar4_block(kind: u8, flags: u16, body: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, kind];
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&((7 + body.len()) as u16).to_le_bytes());
        b.extend_from_slice(body);
        b
    }

    /// A RAR 4 archive: main header, then one file header per (flags, data).
    fn rar4_archive(main_flags: u16, files: &[(u16, &[u8])]) -> Vec<u8> {
        let mut a = SIGNATURE_4.to_vec();
        a.extend(rar4_block(0x73, main_flags, &[0; 6]));
        for (flags, data) in files {
            // PACK_SIZE, UNP_SIZE, HOST_OS, FILE_CRC, FTIME, UNP_VER, METHOD, NAME_SIZE, ATTR, name
            let mut body = (data.len() as u32).to_le_bytes().to_vec();
            body.extend_from_slice(&[0; 4 + 1 + 4 + 4 + 1 + 1]);
            body.extend_from_slice(&1u16.to_le_bytes());
            body.extend_from_slice(&[0; 4]);
            body.push(b'a');
            a.extend(rar4_block(0x74, *flags, &body));
            a.extend_from_slice(data);
        }
        a.extend(rar4_block(0x7B, 0x4000, &[]));
        a
    }

    #[test]
    fn rar4_encrypted_files_and_headers() {
        let all = rar4_archive(0, &[(0x0004, b"xxxx"), (0x8004, b"yy")]);
        assert_eq!(protection(&all), Protection::Encrypted("RAR"));
        let hidden = rar4_archive(0x0080, &[]);
        assert_eq!(
            protection(&hidden),
            Protection::Encrypted("RAR, file names hidden")
        );
        let partial = rar4_archive(0, &[(0x0004, b"xxxx"), (0, b"yy")]);
        assert_eq!(protection(&partial), Protection::Clear);
        let clear = rar4_archive(0, &[(0, b"xxxx")]);
        assert_eq!(protection(&clear), Protection::Clear);
        // A directory is not a file: an encrypted file beside it is all there is.
        let with_dir = rar4_archive(0, &[(0x00E0, b""), (0x0004, b"x")]);
        assert_eq!(protection(&with_dir), Protection::Encrypted("RAR"));
        for cut in 0..all.len() {
            let _ = protection(&all[..cut]);
        }
    }

    fn vint(mut n: u64) -> Vec<u8> {
        let mut v = Vec::new();
        loop {
            let b = (n & 0x7F) as u8;
            n >>= 7;
            if n == 0 {
                v.push(b);
                return v;
            }
            v.push(b | 0x80);
        }
    }

    fn rar5_block(kind: u64, flags: u64, fields: &[u8], extra: &[u8], data: &[u8]) -> Vec<u8> {
        let mut h = vint(kind);
        h.extend(vint(
            flags | if extra.is_empty() { 0 } else { 1 } | if data.is_empty() { 0 } else { 2 },
        ));
        if !extra.is_empty() {
            h.extend(vint(extra.len() as u64));
        }
        if !data.is_empty() {
            h.extend(vint(data.len() as u64));
        }
        h.extend_from_slice(fields);
        h.extend_from_slice(extra);
        let mut b = vec![0; 4];
        b.extend(vint(h.len() as u64));
        b.extend(h);
        b.extend_from_slice(data);
        b
    }

    fn rar5_archive(files: &[(u64, bool)]) -> Vec<u8> {
        let mut a = SIGNATURE_5.to_vec();
        a.extend(rar5_block(1, 0, &[0], &[], &[]));
        for (file_flags, enc) in files {
            let mut fields = vint(*file_flags);
            fields.extend_from_slice(&[0, 0, 0, 0, 1, b'a']);
            // Encryption record: size, type 1, then its fields; and a hash record beside it.
            let extra: Vec<u8> = if *enc {
                [&[3u8, 2, 0, 0][..], &[3, 1, 0, 0]].concat()
            } else {
                vec![3, 2, 0, 0]
            };
            a.extend(rar5_block(2, 0, &fields, &extra, b"data"));
        }
        a.extend(rar5_block(5, 0, &[0], &[], &[]));
        a
    }

    #[test]
    fn rar5_encrypted_files_and_headers() {
        let all = rar5_archive(&[(0, true), (1, false), (0, true)]);
        assert_eq!(protection(&all), Protection::Encrypted("RAR5 (AES-256)"));
        let partial = rar5_archive(&[(0, true), (0, false)]);
        assert_eq!(protection(&partial), Protection::Clear);
        let clear = rar5_archive(&[(0, false)]);
        assert_eq!(protection(&clear), Protection::Clear);
        let mut hidden = SIGNATURE_5.to_vec();
        hidden.extend(rar5_block(4, 0, &[0, 0], &[], &[]));
        assert_eq!(
            protection(&hidden),
            Protection::Encrypted("RAR5, file names hidden")
        );
        for cut in 0..all.len() {
            let _ = protection(&all[..cut]);
        }
    }
}
