//! ZIP archives (PKWARE APPNOTE 6.3.10 §4.3.16, §4.4.4; WinZip AE-x) and the OpenDocument files
//! built on them (ODF 1.2 Part 3 §3.4).
//!
//! The central directory says per entry whether it is encrypted (flag bit 0) and how (method 99
//! with the 0x9901 extra field is WinZip AES). OpenDocument does not use the flag: its manifest
//! lists `encryption-data` for each encrypted part instead.

use std::io::{Cursor, Read};

use memchr::memmem;

use super::{MAX_RECORDS, Protection, u16_at, u32_at, u64_at};

const EOCD: &[u8] = b"PK\x05\x06";
const EOCD_LEN: usize = 22;
/// The end record plus the longest comment it may carry.
const EOCD_SEARCH: usize = EOCD_LEN + 65_535;
const ZIP64_LOCATOR: &[u8] = b"PK\x06\x07";
const ZIP64_EOCD: &[u8] = b"PK\x06\x06";
const CENTRAL: &[u8] = b"PK\x01\x02";
/// Archive extra data record: what stands where the central directory should when it is
/// encrypted (APPNOTE §4.3.11).
const ARCHIVE_EXTRA_DATA: &[u8] = b"PK\x06\x08";
const ODF_MANIFEST: &[u8] = b"META-INF/manifest.xml";
/// The most of the manifest read: it is a few kilobytes even for large documents.
const MANIFEST_LIMIT: u64 = 1 << 20;

const FLAG_ENCRYPTED: u16 = 0x0001;
const FLAG_STRONG: u16 = 0x0040;
const FLAG_DIRECTORY_ENCRYPTED: u16 = 0x2000;
const METHOD_AES: u16 = 99;
const EXTRA_AES: u16 = 0x9901;

/// Where the central directory is and how many records it claims.
struct Directory {
    start: usize,
    size: usize,
}

pub(super) fn protection(bytes: &[u8]) -> Protection {
    let Some(directory) = find_directory(bytes) else {
        // Masked local headers (bit 13 in the first entry, written by PKWARE 6.2 and later)
        // come with a central directory that is encrypted, so unreadable.
        let masked = bytes.starts_with(b"PK\x03\x04")
            && u16_at(bytes, 4).is_some_and(|v| (62..=255).contains(&v))
            && u16_at(bytes, 6).is_some_and(|f| f & FLAG_DIRECTORY_ENCRYPTED != 0);
        return if masked {
            Protection::Encrypted("ZIP with an encrypted directory")
        } else {
            Protection::Clear
        };
    };
    if bytes
        .get(directory.start..)
        .is_some_and(|d| d.starts_with(ARCHIVE_EXTRA_DATA))
    {
        return Protection::Encrypted("ZIP with an encrypted directory");
    }
    let end = directory
        .start
        .saturating_add(directory.size)
        .min(bytes.len());
    let Some(records) = bytes.get(directory.start..end) else {
        return Protection::Clear;
    };
    walk(bytes, records)
}

/// Finds the end of central directory record (and its ZIP64 twin) and from it the directory.
fn find_directory(bytes: &[u8]) -> Option<Directory> {
    let tail_start = bytes.len().saturating_sub(EOCD_SEARCH);
    let tail = bytes.get(tail_start..)?;
    // The last signature whose comment ends the file; else the last one at all (a file with
    // bytes appended after the archive).
    let mut fallback = None;
    let mut found = None;
    for at in memmem::rfind_iter(tail, EOCD) {
        let pos = tail_start + at;
        let Some(comment) = u16_at(bytes, pos + 20) else {
            continue;
        };
        if fallback.is_none() {
            fallback = Some(pos);
        }
        if pos + EOCD_LEN + usize::from(comment) == bytes.len() {
            found = Some(pos);
            break;
        }
    }
    let eocd = found.or(fallback)?;
    let mut size = u64::from(u32_at(bytes, eocd + 12)?);
    let mut offset = u64::from(u32_at(bytes, eocd + 16)?);
    let mut record_end = eocd;
    let zip64 = size == 0xFFFF_FFFF || offset == 0xFFFF_FFFF || u16_at(bytes, eocd + 10)? == 0xFFFF;
    if zip64
        && let Some(locator) = eocd.checked_sub(20)
        && bytes
            .get(locator..)
            .is_some_and(|l| l.starts_with(ZIP64_LOCATOR))
    {
        let mut at = usize::try_from(u64_at(bytes, locator + 8)?).ok()?;
        // A prefixed archive (self-extractor): the record sits just before its locator.
        if !bytes.get(at..).is_some_and(|r| r.starts_with(ZIP64_EOCD)) {
            let from = locator.saturating_sub(EOCD_SEARCH);
            at = from + memmem::rfind(bytes.get(from..locator)?, ZIP64_EOCD)?;
        }
        size = u64_at(bytes, at + 40)?;
        offset = u64_at(bytes, at + 48)?;
        record_end = at;
    }
    let size = usize::try_from(size).ok()?;
    let mut start = usize::try_from(offset).ok()?;
    let starts_well = |s: usize| {
        bytes
            .get(s..)
            .is_some_and(|d| d.starts_with(CENTRAL) || d.starts_with(ARCHIVE_EXTRA_DATA))
    };
    if !starts_well(start) {
        // Bytes before the archive shift every offset: the directory ends where the end
        // record begins.
        start = record_end.checked_sub(size)?;
        if !starts_well(start) {
            return None;
        }
    }
    Some(Directory { start, size })
}

/// Walks the central directory records.
fn walk(bytes: &[u8], records: &[u8]) -> Protection {
    let mut at = 0usize;
    let mut files = 0usize;
    let mut encrypted = 0usize;
    let mut how: Option<&'static str> = None;
    let mut manifest_entry: Option<usize> = None;
    let mut seen_mimetype = false;
    let mut encrypted_package = false;
    for _ in 0..MAX_RECORDS {
        let Some(record) = records.get(at..) else {
            break;
        };
        if !record.starts_with(CENTRAL) {
            break;
        }
        let (Some(flags), Some(method), Some(name_len), Some(extra_len), Some(comment_len)) = (
            u16_at(record, 8),
            u16_at(record, 10),
            u16_at(record, 28),
            u16_at(record, 30),
            u16_at(record, 32),
        ) else {
            break;
        };
        let name_end = 46 + usize::from(name_len);
        let extra_end = name_end + usize::from(extra_len);
        let Some(name) = record.get(46..name_end) else {
            break;
        };
        let extra = record.get(name_end..extra_end).unwrap_or_default();
        if flags & FLAG_DIRECTORY_ENCRYPTED != 0 {
            return Protection::Encrypted("ZIP with an encrypted directory");
        }
        if name == b"encrypted-package" {
            encrypted_package = true;
        }
        if name == ODF_MANIFEST {
            manifest_entry = Some(at);
        }
        if name == b"mimetype" {
            seen_mimetype = true;
        }
        let is_directory = name.ends_with(b"/") || name.ends_with(b"\\");
        if !is_directory {
            files += 1;
            if flags & FLAG_ENCRYPTED != 0 {
                encrypted += 1;
                how.get_or_insert_with(|| scheme(flags, method, extra));
            }
        }
        at = extra_end
            .saturating_add(usize::from(comment_len))
            .saturating_add(at);
        if encrypted > 0 && encrypted < files {
            // Partly encrypted: the extractor reads the clear entries and reports the rest.
            return Protection::Clear;
        }
    }
    if let Some(record) = records.get(at..)
        && record.starts_with(CENTRAL)
    {
        // More records than are walked: the extractor reports too many entries.
        return Protection::Clear;
    }
    if files > 0 && encrypted == files {
        return Protection::Encrypted(how.unwrap_or("ZipCrypto ZIP"));
    }
    // The newest OpenDocument encryption leaves only the mimetype, the manifest and the
    // encrypted package (and perhaps a thumbnail): a name alone among other files is not it.
    if encrypted_package && seen_mimetype && files <= 4 {
        return Protection::Encrypted("encrypted OpenDocument");
    }
    if encrypted == 0 && seen_mimetype && manifest_entry.is_some() && manifest_encrypted(bytes) {
        return Protection::Encrypted("encrypted OpenDocument");
    }
    Protection::Clear
}

/// Names the scheme of an encrypted entry.
fn scheme(flags: u16, method: u16, extra: &[u8]) -> &'static str {
    if method == METHOD_AES {
        return match aes_strength(extra) {
            Some(1) => "AES-128 ZIP",
            Some(2) => "AES-192 ZIP",
            Some(3) => "AES-256 ZIP",
            _ => "AES ZIP",
        };
    }
    if flags & FLAG_STRONG != 0 {
        return "PKWARE strong-encrypted ZIP";
    }
    "ZipCrypto ZIP"
}

/// The AES strength (1, 2, 3 = 128, 192, 256 bits) from the 0x9901 extra field.
fn aes_strength(mut extra: &[u8]) -> Option<u8> {
    while extra.len() >= 4 {
        let id = u16_at(extra, 0)?;
        let len = usize::from(u16_at(extra, 2)?);
        let data = extra.get(4..4 + len)?;
        if id == EXTRA_AES {
            return data.get(4).copied();
        }
        extra = extra.get(4 + len..)?;
    }
    None
}

/// Whether the OpenDocument manifest describes encrypted parts. Inflates at most
/// [`MANIFEST_LIMIT`] bytes of that one small entry.
fn manifest_encrypted(bytes: &[u8]) -> bool {
    let Ok(mut archive) = ::zip::ZipArchive::new(Cursor::new(bytes)) else {
        return false;
    };
    let Ok(entry) = archive.by_name("META-INF/manifest.xml") else {
        return false;
    };
    let mut manifest = Vec::new();
    if entry
        .take(MANIFEST_LIMIT)
        .read_to_end(&mut manifest)
        .is_err()
    {
        return false;
    }
    content_encrypted(&manifest)
}

/// Whether the manifest gives `content.xml` (the document's text) encryption data; when it
/// does not list content.xml, whether it gives any part encryption data. The prefix is
/// `manifest:` in every producer; the local names alone are matched.
fn content_encrypted(manifest: &[u8]) -> bool {
    const ENCRYPTION: &[u8] = b"encryption-data";
    let Some(at) = memmem::find(manifest, b"full-path=\"content.xml\"") else {
        return memmem::find(manifest, ENCRYPTION).is_some();
    };
    let entry = manifest.get(at..).unwrap_or_default();
    let end = memmem::find(entry, b"file-entry").unwrap_or(entry.len());
    memmem::find(entry.get(..end).unwrap_or_default(), ENCRYPTION).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored ZIP with the given (name, flags, method, extra) entries, built by hand so the
    /// flags can be anything.
    fn crafted(entries: &[(&str, u16, u16, &[u8])], prefix: &[u8], zip64: bool) -> Vec<u8> {
        let mut out = prefix.to_vec();
        let mut central = Vec::new();
        for (name, flags, method, extra) in entries {
            let local = (out.len() - prefix.len()) as u32;
            out.extend_from_slice(b"PK\x03\x04\x14\x00");
            out.extend_from_slice(&(flags & !FLAG_DIRECTORY_ENCRYPTED).to_le_bytes());
            out.extend_from_slice(&method.to_le_bytes());
            out.extend_from_slice(&[0; 16]);
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            central.extend_from_slice(b"PK\x01\x02\x14\x00\x14\x00");
            central.extend_from_slice(&flags.to_le_bytes());
            central.extend_from_slice(&method.to_le_bytes());
            central.extend_from_slice(&[0; 16]);
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            // Comment length, disk, internal and external attributes.
            central.extend_from_slice(&[0; 10]);
            central.extend_from_slice(&local.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
            central.extend_from_slice(extra);
        }
        let cd_offset = (out.len() - prefix.len()) as u64;
        out.extend_from_slice(&central);
        let n = entries.len() as u16;
        if zip64 {
            let record = (out.len() - prefix.len()) as u64;
            out.extend_from_slice(b"PK\x06\x06");
            out.extend_from_slice(&44u64.to_le_bytes());
            out.extend_from_slice(&[45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(&u64::from(n).to_le_bytes());
            out.extend_from_slice(&u64::from(n).to_le_bytes());
            out.extend_from_slice(&(central.len() as u64).to_le_bytes());
            out.extend_from_slice(&cd_offset.to_le_bytes());
            out.extend_from_slice(b"PK\x06\x07\x00\x00\x00\x00");
            out.extend_from_slice(&record.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
            out.extend_from_slice(b"PK\x05\x06\x00\x00\x00\x00\xff\xff\xff\xff");
            out.extend_from_slice(&[0xff; 8]);
        } else {
            out.extend_from_slice(b"PK\x05\x06\x00\x00\x00\x00");
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&(central.len() as u32).to_le_bytes());
            out.extend_from_slice(&(cd_offset as u32).to_le_bytes());
        }
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    const AES256: &[u8] = &[
        0x01, 0x99, 0x07, 0x00, 0x02, 0x00, b'A', b'E', 0x03, 0x08, 0x00,
    ];

    #[test]
    fn every_entry_encrypted_is_encrypted_and_names_the_scheme() {
        let zc = crafted(
            &[
                ("a.csv", 1, 8, &[]),
                ("dir/", 0, 0, &[]),
                ("b.csv", 1, 8, &[]),
            ],
            b"",
            false,
        );
        assert_eq!(protection(&zc), Protection::Encrypted("ZipCrypto ZIP"));
        let aes = crafted(&[("a.csv", 1, 99, AES256)], b"", false);
        assert_eq!(protection(&aes), Protection::Encrypted("AES-256 ZIP"));
        let strong = crafted(&[("a.csv", 0x41, 8, &[])], b"", false);
        assert_eq!(
            protection(&strong),
            Protection::Encrypted("PKWARE strong-encrypted ZIP")
        );
    }

    #[test]
    fn partly_encrypted_or_clear_is_clear() {
        let partial = crafted(&[("a.csv", 1, 8, &[]), ("b.csv", 0, 8, &[])], b"", false);
        assert_eq!(protection(&partial), Protection::Clear);
        let clear = crafted(&[("a.csv", 0, 8, &[])], b"", false);
        assert_eq!(protection(&clear), Protection::Clear);
        // Only directories: nothing to read, nothing encrypted.
        let dirs = crafted(&[("d/", 1, 0, &[])], b"", false);
        assert_eq!(protection(&dirs), Protection::Clear);
    }

    #[test]
    fn zip64_and_prefixed_archives_are_read() {
        let z64 = crafted(&[("a.csv", 1, 99, AES256)], b"", true);
        assert_eq!(protection(&z64), Protection::Encrypted("AES-256 ZIP"));
        let z64_clear = crafted(&[("a.csv", 0, 8, &[])], b"", true);
        assert_eq!(protection(&z64_clear), Protection::Clear);
        // A self-extractor stub before the archive: offsets are off by its length.
        let sfx = crafted(&[("a.csv", 1, 8, &[])], b"MZ stub bytes", false);
        assert_eq!(protection(&sfx), Protection::Encrypted("ZipCrypto ZIP"));
        let sfx64 = crafted(&[("a.csv", 1, 8, &[])], b"stub", true);
        assert!(find_directory(&sfx64).is_some());
    }

    #[test]
    fn an_encrypted_central_directory_is_encrypted() {
        let flagged = crafted(&[("a.csv", 0x2001, 8, &[])], b"", false);
        assert_eq!(
            protection(&flagged),
            Protection::Encrypted("ZIP with an encrypted directory")
        );
        // Masked local header of the first entry, and a directory that cannot be read.
        let mut masked = crafted(&[("a.csv", 0, 8, &[])], b"", false);
        masked[4] = 62;
        masked[7] = 0x20;
        let at = memmem::find(&masked, CENTRAL).unwrap();
        masked[at..at + 4].copy_from_slice(b"\x8a\x01\xf3\x77");
        assert_eq!(
            protection(&masked),
            Protection::Encrypted("ZIP with an encrypted directory")
        );
        // Bit 13 alone, with a readable directory, is not enough.
        let mut bit_only = crafted(&[("a.csv", 0, 8, &[])], b"", false);
        bit_only[4] = 62;
        bit_only[7] = 0x20;
        assert_eq!(protection(&bit_only), Protection::Clear);
        // The archive extra data record where the directory should start.
        let mut extra = crafted(&[("a.csv", 0, 8, &[])], b"", false);
        let at = memmem::find(&extra, CENTRAL).unwrap();
        extra[at..at + 4].copy_from_slice(ARCHIVE_EXTRA_DATA);
        assert_eq!(
            protection(&extra),
            Protection::Encrypted("ZIP with an encrypted directory")
        );
    }

    #[test]
    fn an_encrypted_package_entry_is_an_encrypted_opendocument() {
        let z = crafted(
            &[
                ("mimetype", 0, 0, &[]),
                ("META-INF/manifest.xml", 0, 0, &[]),
                ("encrypted-package", 0, 0, &[]),
            ],
            b"",
            false,
        );
        assert_eq!(
            protection(&z),
            Protection::Encrypted("encrypted OpenDocument")
        );
        // The name among a folder of spreadsheets is just a name.
        let files = ["mimetype", "encrypted-package", "a.csv", "b.csv", "c.csv"];
        let entries: Vec<(&str, u16, u16, &[u8])> =
            files.iter().map(|n| (*n, 0u16, 0u16, &[][..])).collect();
        assert_eq!(
            protection(&crafted(&entries, b"", false)),
            Protection::Clear
        );
    }

    #[test]
    fn the_manifest_must_encrypt_the_content() {
        let entry = |path: &str, enc: bool| {
            if enc {
                format!(
                    "<manifest:file-entry manifest:full-path=\"{path}\"><manifest:encryption-data/></manifest:file-entry>"
                )
            } else {
                format!("<manifest:file-entry manifest:full-path=\"{path}\"/>")
            }
        };
        let m =
            |parts: &[(&str, bool)]| parts.iter().map(|(p, e)| entry(p, *e)).collect::<String>();
        assert!(content_encrypted(
            m(&[("/", false), ("content.xml", true), ("styles.xml", true)]).as_bytes()
        ));
        // Only a thumbnail's encryption data: the text is clear.
        assert!(!content_encrypted(
            m(&[("content.xml", false), ("Thumbnails/t.png", true)]).as_bytes()
        ));
        // No content.xml listed: any encryption data counts.
        assert!(content_encrypted(
            m(&[("/", false), ("body.xml", true)]).as_bytes()
        ));
        assert!(!content_encrypted(
            m(&[("/", false), ("styles.xml", false)]).as_bytes()
        ));
    }

    #[test]
    fn broken_or_truncated_archives_are_clear_without_panicking() {
        let z = crafted(&[("a.csv", 1, 8, &[]), ("b.csv", 1, 8, &[])], b"", false);
        for cut in 0..z.len() {
            let _ = protection(&z[..cut]);
            let _ = protection(&z[cut..]);
        }
        assert_eq!(protection(b"PK\x03\x04 no end record"), Protection::Clear);
        // A comment that holds the signature does not fool the search.
        let mut commented = crafted(&[("a.csv", 1, 8, &[])], b"", false);
        let n = commented.len();
        commented[n - 2..].copy_from_slice(&26u16.to_le_bytes());
        commented.extend_from_slice(b"PK\x05\x06 in the comment..");
        assert_eq!(
            protection(&commented),
            Protection::Encrypted("ZipCrypto ZIP")
        );
    }

    #[test]
    fn too_many_records_are_left_to_the_extractor() {
        let names: Vec<String> = (0..MAX_RECORDS + 1).map(|i| format!("{i}")).collect();
        let entries: Vec<(&str, u16, u16, &[u8])> = names
            .iter()
            .map(|n| (n.as_str(), 1u16, 8u16, &[][..]))
            .collect();
        let z = crafted(&entries, b"", true);
        assert_eq!(protection(&z), Protection::Clear);
    }
}
