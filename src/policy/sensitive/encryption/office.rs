//! OLE compound files: password-protected and rights-managed OOXML ([MS-OFFCRYPTO] §2.3.4), and
//! the legacy Word ([MS-DOC] FibBase), Excel ([MS-XLS] §2.4.117 FilePass) and PowerPoint
//! ([MS-PPT] CurrentUserAtom) formats. Only the directory and a few bytes of one stream are read.
//!
//! Excel's "VelvetSweatshop" is the password Excel uses when a workbook is protected without the
//! user choosing one (a write-protected or structure-locked book): it opens without asking, so
//! the FilePass verifier is tried with it.

use std::io::{Cursor, Read, Seek};

use super::crypto::{Rc4, md5, sha1};
use super::{Protection, u16_at, u32_at};

pub(super) const OLE_SIGNATURE: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
/// How much of the Workbook stream is read to find FilePass: it follows BOF at the start.
const WORKBOOK_PREFIX: u64 = 4096;
const EXCEL_DEFAULT_PASSWORD: &str = "VelvetSweatshop";

pub(super) fn protection(bytes: &[u8]) -> Protection {
    // The compound-file reader is a dependency reading hostile input: a panic inside it must
    // not take the gateway down with it.
    std::panic::catch_unwind(|| inspect(bytes)).unwrap_or(Protection::Clear)
}

fn inspect(bytes: &[u8]) -> Protection {
    let Ok(mut file) = cfb::CompoundFile::open(Cursor::new(bytes)) else {
        // Not a readable compound file: the extractor reports it.
        return Protection::Clear;
    };
    if file.is_stream("/EncryptedPackage") {
        if file.is_stream("/EncryptionInfo") {
            let version = read_prefix(&mut file, "/EncryptionInfo", 4);
            return Protection::Encrypted(match (u16_at(&version, 0), u16_at(&version, 2)) {
                (Some(4), Some(4)) => "password-protected Office document (agile encryption)",
                (Some(2..=4), Some(2)) => {
                    "password-protected Office document (standard encryption)"
                }
                (Some(3 | 4), Some(3)) => {
                    "password-protected Office document (extensible encryption)"
                }
                _ => "password-protected Office document",
            });
        }
        if file.is_storage("/\u{6}DataSpaces") {
            return Protection::Encrypted("rights-managed Office document");
        }
    }
    if file.is_stream("/WordDocument") {
        return word(&read_prefix(&mut file, "/WordDocument", 0x20));
    }
    for name in ["/Workbook", "/Book"] {
        if file.is_stream(name) {
            return excel(
                &read_prefix(&mut file, name, WORKBOOK_PREFIX),
                name == "/Book",
            );
        }
    }
    if file.is_stream("/Current User") {
        return powerpoint(&read_prefix(&mut file, "/Current User", 16));
    }
    Protection::Clear
}

/// The first `n` bytes of a stream (fewer when it is shorter or unreadable).
fn read_prefix<F: Read + Seek>(file: &mut cfb::CompoundFile<F>, path: &str, n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    if let Ok(stream) = file.open_stream(path) {
        let _ = stream.take(n).read_to_end(&mut out);
    }
    out
}

/// FibBase: wIdent 0xA5EC, then flags at 0x0A with fEncrypted (0x0100) and fObfuscated (0x8000).
fn word(fib: &[u8]) -> Protection {
    if u16_at(fib, 0) != Some(0xA5EC) {
        return Protection::Clear;
    }
    let flags = u16_at(fib, 0x0A).unwrap_or(0);
    if flags & 0x0100 == 0 {
        return Protection::Clear;
    }
    if flags & 0x8000 != 0 {
        Protection::Encrypted("password-protected Word document (XOR obfuscation)")
    } else {
        Protection::Encrypted("password-protected Word document")
    }
}

/// The Current User atom's headerToken: 0xF3D1C4DF when the presentation is encrypted.
fn powerpoint(current_user: &[u8]) -> Protection {
    match u32_at(current_user, 12) {
        Some(0xF3D1_C4DF) => Protection::Encrypted("password-protected PowerPoint presentation"),
        _ => Protection::Clear,
    }
}

/// Walks the first records of the workbook globals for FilePass (0x002F).
fn excel(stream: &[u8], biff5: bool) -> Protection {
    const BOF: [u16; 4] = [0x0809, 0x0409, 0x0209, 0x0009];
    const FILEPASS: u16 = 0x002F;
    let Some(first) = u16_at(stream, 0) else {
        return Protection::Clear;
    };
    if !BOF.contains(&first) {
        return Protection::Clear;
    }
    // BIFF8 says 0x0600 in its BOF; anything older has the XOR-only FilePass.
    let biff8 = !biff5 && u16_at(stream, 4) == Some(0x0600);
    let mut at = 0usize;
    while let (Some(kind), Some(len)) = (u16_at(stream, at), u16_at(stream, at + 2)) {
        let body = stream.get(at + 4..at + 4 + usize::from(len));
        if kind == FILEPASS {
            let Some(body) = body else {
                return Protection::Encrypted("password-protected Excel workbook");
            };
            return if opens_with_default_password(body, biff8) {
                Protection::OpensWithoutPassword("Excel workbook with the default password")
            } else {
                Protection::Encrypted("password-protected Excel workbook")
            };
        }
        // FilePass comes straight after BOF; a few records more are allowed for odd writers.
        if at > 0 && matches!(kind, 0x0042 | 0x00E1 | 0x005C) {
            // CodePage, InterfaceHdr, WriteAccess: past where FilePass would be.
            break;
        }
        at += 4 + usize::from(len);
    }
    Protection::Clear
}

/// Whether a FilePass record's verifier matches "VelvetSweatshop".
fn opens_with_default_password(body: &[u8], biff8: bool) -> bool {
    opens_with(body, biff8, EXCEL_DEFAULT_PASSWORD)
}

/// Whether a FilePass record's verifier matches `password`.
fn opens_with(body: &[u8], biff8: bool, password: &str) -> bool {
    if !biff8 {
        // BIFF5 and older: key, verifier.
        return u16_at(body, 2) == Some(xor_verifier(password));
    }
    match u16_at(body, 0) {
        Some(0) => u16_at(body, 4) == Some(xor_verifier(password)),
        Some(1) => match (u16_at(body, 2), u16_at(body, 4)) {
            (Some(1), Some(1)) => rc4_verifier(body.get(6..).unwrap_or_default(), password),
            (Some(2..=4), Some(2)) => {
                cryptoapi_verifier(body.get(6..).unwrap_or_default(), password)
            }
            _ => false,
        },
        _ => false,
    }
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// [MS-OFFCRYPTO] §2.3.7.1 CreatePasswordVerifier_Method1 (XOR obfuscation).
fn xor_verifier(password: &str) -> u16 {
    let bytes: Vec<u8> = password.bytes().take(15).collect();
    let mut verifier = 0u16;
    for &b in bytes
        .iter()
        .rev()
        .chain(std::iter::once(&(bytes.len() as u8)))
    {
        let high = u16::from(verifier & 0x4000 != 0);
        verifier = ((verifier << 1) & 0x7FFF | high) ^ u16::from(b);
    }
    verifier ^ 0xCE4B
}

/// [MS-OFFCRYPTO] §2.3.6: RC4 encryption (version 1.1): salt, encrypted verifier, its MD5.
fn rc4_verifier(v: &[u8], password: &str) -> bool {
    let (Some(salt), Some(verifier), Some(hash)) = (v.get(..16), v.get(16..32), v.get(32..48))
    else {
        return false;
    };
    let h0 = md5(&[&utf16le(password)]);
    let truncated = h0.get(..5).unwrap_or_default();
    let mut buffer = Vec::with_capacity(16 * 21);
    for _ in 0..16 {
        buffer.extend_from_slice(truncated);
        buffer.extend_from_slice(salt);
    }
    let h1 = md5(&[&buffer]);
    let key = md5(&[h1.get(..5).unwrap_or_default(), &0u32.to_le_bytes()]);
    let mut rc4 = Rc4::new(&key);
    let mut verifier = verifier.to_vec();
    let mut hash = hash.to_vec();
    rc4.apply(&mut verifier);
    rc4.apply(&mut hash);
    md5(&[&verifier]).as_slice() == hash.as_slice()
}

/// [MS-OFFCRYPTO] §2.3.5: RC4 CryptoAPI: EncryptionHeader, then the verifier with its SHA-1.
fn cryptoapi_verifier(v: &[u8], password: &str) -> bool {
    // Flags (4), header size (4), header, then the verifier.
    let Some(header_size) = u32_at(v, 4).and_then(|n| usize::try_from(n).ok()) else {
        return false;
    };
    let Some(header) = v.get(8..8usize.saturating_add(header_size)) else {
        return false;
    };
    let key_bits = match u32_at(header, 16) {
        Some(0) | None => 40,
        Some(bits) => bits,
    };
    let Some(verifier) = v.get(8 + header_size..) else {
        return false;
    };
    let salt_size = u32_at(verifier, 0)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(16);
    let Some(salt) = verifier.get(4..4 + salt_size.min(64)) else {
        return false;
    };
    let rest = verifier.get(4 + salt.len()..).unwrap_or_default();
    let (Some(encrypted), Some(hash_size), Some(encrypted_hash)) =
        (rest.get(..16), u32_at(rest, 16), rest.get(20..))
    else {
        return false;
    };
    let hash_size = usize::try_from(hash_size).unwrap_or(20).min(20);
    let Some(encrypted_hash) = encrypted_hash.get(..hash_size) else {
        return false;
    };
    let h0 = sha1(&[salt, &utf16le(password)]);
    let h_final = sha1(&[&h0, &0u32.to_le_bytes()]);
    let key_len = usize::try_from(key_bits / 8).unwrap_or(5).clamp(5, 16);
    let mut key = h_final.get(..key_len).unwrap_or_default().to_vec();
    if key_bits == 40 {
        // A 40-bit key is used as 128 bits with zeros after it (as Office does).
        key.resize(16, 0);
    }
    let mut rc4 = Rc4::new(&key);
    let mut verifier = encrypted.to_vec();
    let mut hash = encrypted_hash.to_vec();
    rc4.apply(&mut verifier);
    rc4.apply(&mut hash);
    sha1(&[&verifier]).get(..hash_size) == Some(hash.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A compound file with the given streams, made with the cfb crate.
    fn compound(streams: &[(&str, &[u8])], storages: &[&str]) -> Vec<u8> {
        let mut file = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
        for s in storages {
            file.create_storage(s).unwrap();
        }
        for (name, data) in streams {
            file.create_stream(name).unwrap().write_all(data).unwrap();
        }
        file.flush().unwrap();
        file.into_inner().into_inner()
    }

    #[test]
    fn encrypted_ooxml_names_its_encryption() {
        let agile = compound(
            &[
                ("/EncryptionInfo", &[4, 0, 4, 0, 0x40, 0]),
                ("/EncryptedPackage", b"x"),
            ],
            &[],
        );
        assert_eq!(
            protection(&agile),
            Protection::Encrypted("password-protected Office document (agile encryption)")
        );
        let standard = compound(
            &[
                ("/EncryptionInfo", &[3, 0, 2, 0]),
                ("/EncryptedPackage", b"x"),
            ],
            &[],
        );
        assert_eq!(
            protection(&standard),
            Protection::Encrypted("password-protected Office document (standard encryption)")
        );
    }

    #[test]
    fn rights_managed_ooxml_is_encrypted() {
        let irm = compound(&[("/EncryptedPackage", b"x")], &["/\u{6}DataSpaces"]);
        assert_eq!(
            protection(&irm),
            Protection::Encrypted("rights-managed Office document")
        );
        // A package alone, with neither: not something that can be told encrypted.
        let odd = compound(&[("/EncryptedPackage", b"x")], &[]);
        assert_eq!(protection(&odd), Protection::Clear);
    }

    fn fib(flags: u16) -> Vec<u8> {
        let mut f = vec![0u8; 0x20];
        f[0..2].copy_from_slice(&0xA5ECu16.to_le_bytes());
        f[0x0A..0x0C].copy_from_slice(&flags.to_le_bytes());
        f
    }

    #[test]
    fn legacy_word_fencrypted_and_xor_obfuscation() {
        let enc = compound(&[("/WordDocument", &fib(0x0100))], &[]);
        assert_eq!(
            protection(&enc),
            Protection::Encrypted("password-protected Word document")
        );
        let xor = compound(&[("/WordDocument", &fib(0x8100))], &[]);
        assert_eq!(
            protection(&xor),
            Protection::Encrypted("password-protected Word document (XOR obfuscation)")
        );
        let clear = compound(&[("/WordDocument", &fib(0x0200))], &[]);
        assert_eq!(protection(&clear), Protection::Clear);
    }

    #[test]
    fn legacy_powerpoint_current_user_token() {
        let mut cu = vec![0u8; 20];
        cu[12..16].copy_from_slice(&0xF3D1_C4DFu32.to_le_bytes());
        let enc = compound(
            &[("/Current User", &cu), ("/PowerPoint Document", b"x")],
            &[],
        );
        assert_eq!(
            protection(&enc),
            Protection::Encrypted("password-protected PowerPoint presentation")
        );
        cu[12..16].copy_from_slice(&0xE391_C05Fu32.to_le_bytes());
        let clear = compound(
            &[("/Current User", &cu), ("/PowerPoint Document", b"x")],
            &[],
        );
        assert_eq!(protection(&clear), Protection::Clear);
    }

    fn record(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut r = kind.to_le_bytes().to_vec();
        r.extend_from_slice(&(body.len() as u16).to_le_bytes());
        r.extend_from_slice(body);
        r
    }

    fn workbook(filepass: Option<&[u8]>) -> Vec<u8> {
        let mut w = record(
            0x0809,
            &[0x00, 0x06, 0x05, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        if let Some(fp) = filepass {
            w.extend(record(0x002F, fp));
        }
        w.extend(record(0x00E1, &[0xB0, 0x04]));
        w.extend(record(0x000A, &[]));
        w
    }

    #[test]
    fn legacy_excel_filepass() {
        let clear = compound(&[("/Workbook", &workbook(None))], &[]);
        assert_eq!(protection(&clear), Protection::Clear);
        // XOR obfuscation with another password's verifier.
        let mut xor = vec![0, 0, 0x34, 0x12];
        xor.extend_from_slice(&xor_verifier("secret").to_le_bytes());
        let enc = compound(&[("/Workbook", &workbook(Some(&xor)))], &[]);
        assert_eq!(
            protection(&enc),
            Protection::Encrypted("password-protected Excel workbook")
        );
        // XOR obfuscation with VelvetSweatshop's verifier.
        let mut velvet = vec![0, 0, 0x34, 0x12];
        velvet.extend_from_slice(&xor_verifier(EXCEL_DEFAULT_PASSWORD).to_le_bytes());
        let default = compound(&[("/Workbook", &workbook(Some(&velvet)))], &[]);
        assert_eq!(
            protection(&default),
            Protection::OpensWithoutPassword("Excel workbook with the default password")
        );
    }

    #[test]
    fn verifiers_match_published_vectors() {
        // VelvetSweatshop's XOR verifier, as msoffcrypto-tool documents it.
        assert_eq!(xor_verifier("VelvetSweatshop"), 0x9A0A);
        // RC4 version 1.1, the "password1" vector of msoffcrypto-tool's tests.
        let mut v = b"\xe8w,\x1d\x91\xc5j7\x96Ga\xb2\x80\x182\x17".to_vec();
        v.extend_from_slice(b"\xc9\xe9\x97\xd4T\x97=1\x0b\xb1\xbap\x14&\x83~");
        v.extend_from_slice(b"\xb1\xde\x17\x8f\x07\xe9\x89\xc4M\xae^L\xf9j\xc4\x07");
        assert!(rc4_verifier(&v, "password1"));
        assert!(!rc4_verifier(&v, "password2"));
        assert!(!rc4_verifier(&v[..40], "password1"));
    }

    #[test]
    fn not_a_compound_file_is_clear() {
        let mut junk = OLE_SIGNATURE.to_vec();
        junk.extend_from_slice(&[0xFF; 600]);
        assert_eq!(protection(&junk), Protection::Clear);
        assert_eq!(protection(OLE_SIGNATURE), Protection::Clear);
    }
}
