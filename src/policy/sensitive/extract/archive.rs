//! ZIP files: OOXML and ODF documents, and plain archives opened entry by entry, recursively.
//!
//! The entry count is read from the end-of-central-directory record before the `zip` crate
//! parses the central directory, so an archive of 100,000 entries fails in microseconds rather
//! than after allocating for each. Every entry is read through [`Metered`]: the declared size
//! is never trusted.

use std::io::{Cursor, Read};

use zip::ZipArchive;

use super::{Contents, extract, inside, odf, ooxml};
use crate::policy::sensitive::encryption::{self, Protection};
use crate::policy::sensitive::limits::{Budget, Compressed, Metered, Unscannable};
use std::cell::Cell;
use std::rc::Rc;

pub(super) type Zip<'a> = ZipArchive<Cursor<&'a [u8]>>;

/// Smallest central directory record: 46 bytes.
const CENTRAL_RECORD: u64 = 46;

pub(super) fn open(
    location: &str,
    bytes: &[u8],
    budget: &Budget,
    depth: usize,
    out: &mut Contents,
) -> Result<(), Unscannable> {
    let mut zip = open_zip(bytes, budget)?;
    if ooxml::is_ooxml(&zip) {
        return ooxml::open(location, &mut zip, budget, out);
    }
    if let Some(kind) = odf::kind(&mut zip, budget) {
        return odf::open(location, &kind, &mut zip, budget, out);
    }
    open_archive(location, &mut zip, budget, depth, out)
}

/// Checks the entry count, then lets the `zip` crate read the central directory.
pub(super) fn open_zip<'a>(bytes: &'a [u8], budget: &Budget) -> Result<Zip<'a>, Unscannable> {
    if let Some(declared) = declared_entries(bytes)
        && declared > budget.max_entries() as u64
    {
        return Err(Unscannable::TooManyEntries(budget.max_entries()));
    }
    let zip = ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| Unscannable::Corrupt(format!("not a readable ZIP: {e}")))?;
    // The crate may have found a different directory than the last record says.
    if zip.len() > budget.max_entries() {
        return Err(Unscannable::TooManyEntries(budget.max_entries()));
    }
    Ok(zip)
}

/// The most entries the last end-of-central-directory record (ZIP64 if it says so) can mean:
/// its count, or as many 46-byte records as its directory size holds, whichever is larger.
fn declared_entries(bytes: &[u8]) -> Option<u64> {
    let tail_start = bytes.len().saturating_sub(22 + 65_535);
    let tail = bytes.get(tail_start..)?;
    let at = memchr::memmem::rfind(tail, b"PK\x05\x06")? + tail_start;
    let eocd = bytes.get(at..at.checked_add(22)?)?;
    let count = u64::from(u16le(eocd, 10)?);
    let size = u64::from(u32le(eocd, 12)?);
    let mut most = count.max(size / CENTRAL_RECORD);
    // ZIP64: the locator sits just before the record and points at the ZIP64 record.
    if let Some(locator) = at.checked_sub(20).and_then(|l| bytes.get(l..at))
        && locator.starts_with(b"PK\x06\x07")
        && let Some(offset) = u64le(locator, 8).and_then(|o| usize::try_from(o).ok())
        && let Some(record) = bytes.get(offset..offset.saturating_add(56))
        && record.starts_with(b"PK\x06\x06")
    {
        let count = u64le(record, 32).unwrap_or(0);
        let size = u64le(record, 40).unwrap_or(0);
        most = most.max(count).max(size / CENTRAL_RECORD);
    }
    Some(most)
}

fn u16le(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32le(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64le(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Reads the whole entry `name` through the budget; None when there is no such entry.
pub(super) fn read_entry(
    zip: &mut Zip<'_>,
    name: &str,
    budget: &Budget,
) -> Result<Option<Vec<u8>>, Unscannable> {
    let Some(index) = zip.index_for_name(name) else {
        return Ok(None);
    };
    read_index(zip, index, budget).map(Some)
}

fn read_index(zip: &mut Zip<'_>, index: usize, budget: &Budget) -> Result<Vec<u8>, Unscannable> {
    let declared = zip.by_index_raw(index).map_err(corrupt)?.size();
    let (file, compressed) = entry_reader(zip, index)?;
    let mut metered = Metered::new(file, budget, compressed);
    let mut bytes = Vec::new();
    match metered.read_to_end(&mut bytes) {
        // An entry that is not the size its directory says is damaged (unzip refuses it too).
        Ok(_) if bytes.len() as u64 != declared => Err(Unscannable::Corrupt(format!(
            "an entry is {} bytes, not the {declared} its directory says",
            bytes.len()
        ))),
        Ok(_) => Ok(bytes),
        Err(e) => Err(metered.why(&e)),
    }
}

/// Streams entry `name` through the budget into `walk` (an XML walk); Ok(false) when there is
/// no such entry.
pub(super) fn with_entry(
    zip: &mut Zip<'_>,
    name: &str,
    walk: impl FnOnce(&mut dyn Read, Compressed) -> Result<(), Unscannable>,
) -> Result<bool, Unscannable> {
    let Some(index) = zip.index_for_name(name) else {
        return Ok(false);
    };
    let (mut file, compressed) = entry_reader(zip, index)?;
    walk(&mut file, compressed)?;
    Ok(true)
}

/// Entry `index` decompressed here rather than by the zip crate, counting the compressed bytes
/// the decompressor has consumed, so the ratio is measured as it goes ([`Compressed`]). Only
/// stored and deflated entries are read (the methods the zip crate is built with here).
fn entry_reader<'z>(
    zip: &'z mut Zip<'_>,
    index: usize,
) -> Result<(Box<dyn Read + 'z>, Compressed), Unscannable> {
    let raw = zip.by_index_raw(index).map_err(corrupt)?;
    let method = raw.compression();
    let so_far = Rc::new(Cell::new(0));
    let compressed = Compressed {
        total: raw.compressed_size(),
        so_far: Some(Rc::clone(&so_far)),
    };
    let counted = Counted { inner: raw, so_far };
    let reader: Box<dyn Read + 'z> = match method {
        zip::CompressionMethod::Stored => Box::new(counted),
        zip::CompressionMethod::Deflated => Box::new(flate2::read::DeflateDecoder::new(counted)),
        other => {
            return Err(Unscannable::Corrupt(format!(
                "an entry compressed with {other}, which schoolgate does not read"
            )));
        }
    };
    Ok((reader, compressed))
}

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    so_far: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.so_far.set(self.so_far.get().saturating_add(n as u64));
        Ok(n)
    }
}

pub(super) fn corrupt(e: zip::result::ZipError) -> Unscannable {
    Unscannable::Corrupt(format!("a damaged ZIP entry: {e}"))
}

/// The names of all entries (each entry's name, in order).
pub(super) fn names(zip: &Zip<'_>) -> Vec<String> {
    zip.file_names()
        .filter_map(Result::ok)
        .map(|n| n.into_owned())
        .collect()
}

/// A plain archive: each file inside opened as a file of its own, one level deeper.
fn open_archive(
    location: &str,
    zip: &mut Zip<'_>,
    budget: &Budget,
    depth: usize,
    out: &mut Contents,
) -> Result<(), Unscannable> {
    let inner_depth = depth.saturating_add(1);
    for index in 0..zip.len() {
        budget.check_time()?;
        let (path, encrypted, is_dir) = {
            let raw = zip.by_index_raw(index).map_err(corrupt)?;
            let path = raw.name().map_err(corrupt)?.into_owned();
            (path, raw.encrypted(), raw.is_dir())
        };
        if is_dir {
            continue;
        }
        let here = inside(location, &path);
        if encrypted {
            out.encrypted.push((here, "encrypted ZIP entry"));
            continue;
        }
        budget.enter(inner_depth)?;
        let bytes = read_index(zip, index, budget)?;
        if let Protection::Encrypted(how) = encryption::of_file(&bytes) {
            out.encrypted.push((here, how));
            continue;
        }
        let file_name = path.rsplit('/').next().unwrap_or(&path);
        if file_name.to_ascii_lowercase().ends_with(".eml") {
            crate::policy::sensitive::open_message(&here, &bytes, budget, inner_depth, out)?;
        } else {
            extract(&here, file_name, "", &bytes, budget, inner_depth, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::Write;
    use std::time::Instant;

    use zip::write::{SimpleFileOptions, ZipWriter};

    use super::*;
    use crate::config::{ByteSize, ScanLimits};
    use crate::policy::sensitive::extract::tests::{all_text, budget, open};

    pub(crate) fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        let options =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in files {
            w.start_file(*name, options).unwrap();
            w.write_all(bytes).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn files_inside_an_archive_are_read_with_their_path() {
        let inner = zip_of(&[("deep/list.csv", b"name,upn\nAda,A123\n")]);
        let outer = zip_of(&[
            ("notes.txt", b"Hello from the office"),
            ("inner.zip", &inner),
            ("photo.jpg", &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]),
        ]);
        let out = open("pupils.zip", &outer).unwrap();
        let locations: Vec<_> = out.texts.iter().map(|t| t.location.as_str()).collect();
        assert_eq!(
            locations,
            [
                "pupils.zip › notes.txt",
                "pupils.zip › inner.zip › deep/list.csv"
            ]
        );
        assert!(all_text(&out).contains("Ada\tA123"));
    }

    #[test]
    fn an_attached_message_inside_an_archive_is_opened() {
        let eml = b"From: a@school.example\r\nSubject: hi\r\n\r\nThe body of the message\r\n";
        let outer = zip_of(&[("saved/mail.eml", eml)]);
        let out = open("mail.zip", &outer).unwrap();
        assert!(
            all_text(&out).contains("The body of the message"),
            "{out:?}"
        );
        assert_eq!(out.texts[0].location, "mail.zip › saved/mail.eml");
    }

    /// A ZIP whose one entry, `name`, is `data` deflated, declaring `size` bytes inside.
    pub(crate) fn deflated_zip(name: &str, data: &[u8], size: u32) -> Vec<u8> {
        let header = |central: bool| {
            let mut h = Vec::new();
            h.extend_from_slice(if central {
                b"PK\x01\x02\x14\0"
            } else {
                b"PK\x03\x04"
            });
            h.extend_from_slice(b"\x14\0\0\0\x08\0\0\0\0\0\0\0\0\0");
            h.extend_from_slice(&(data.len() as u32).to_le_bytes());
            h.extend_from_slice(&size.to_le_bytes());
            h.extend_from_slice(&(name.len() as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes());
            if central {
                // Comment length, disk, internal and external attributes, then the offset.
                h.extend_from_slice(&[0; 10]);
                h.extend_from_slice(&0u32.to_le_bytes());
            }
            h.extend_from_slice(name.as_bytes());
            h
        };
        let mut out = header(false);
        out.extend_from_slice(data);
        let cd_offset = out.len() as u32;
        let central = header(true);
        out.extend_from_slice(&central);
        out.extend_from_slice(b"PK\x05\x06\0\0\0\0\x01\0\x01\0");
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    fn gigabyte_of_zeros() -> Vec<u8> {
        deflated_zip(
            "zeros.txt",
            &crate::policy::sensitive::extract::tests::zeros_deflate(1024),
            1 << 30,
        )
    }

    #[test]
    fn a_gigabyte_of_zeros_stops_at_the_ratio() {
        let bomb = gigabyte_of_zeros();
        let started = Instant::now();
        let err = open("zeros.zip", &bomb).unwrap_err();
        assert!(
            matches!(err, Unscannable::Bomb(_) | Unscannable::TooLarge(_)),
            "{err:?}"
        );
        // Well under a second in release; debug builds are slower.
        println!("elapsed: {:?}", started.elapsed());
        assert!(
            started.elapsed() < crate::policy::sensitive::extract::tests::quickly(),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn an_entry_shorter_than_its_directory_says_is_damaged() {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b"name,upn\nAda,A123\n").unwrap();
        let zip = deflated_zip("list.csv", &e.finish().unwrap(), 99);
        let err = open("cut.zip", &zip).unwrap_err();
        assert!(
            matches!(&err, Unscannable::Corrupt(m) if m.contains("not the 99")),
            "{err:?}"
        );
    }

    #[test]
    fn a_bomb_that_lies_about_its_size_is_refused() {
        let bomb = deflated_zip(
            "zeros.txt",
            &crate::policy::sensitive::extract::tests::zeros_deflate(1024),
            10,
        );
        let started = Instant::now();
        let result = open("zeros.zip", &bomb);
        assert!(
            matches!(result, Err(Unscannable::Corrupt(_) | Unscannable::Bomb(_))),
            "{result:?}"
        );
        println!("elapsed: {:?}", started.elapsed());
        assert!(
            started.elapsed() < crate::policy::sensitive::extract::tests::quickly(),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn nested_archives_stop_at_the_depth_limit() {
        let mut bytes = zip_of(&[("data.txt", b"x")]);
        for i in 0..8 {
            bytes = zip_of(&[(&format!("level{i}.zip"), &bytes)]);
        }
        let err = open("42.zip", &bytes).unwrap_err();
        assert_eq!(err, Unscannable::TooDeep(4));
    }

    /// A ZIP of `n` stored empty entries, written by hand (fast, no crate).
    fn many_entries(n: u32) -> Vec<u8> {
        let mut local = Vec::new();
        let mut central = Vec::new();
        for i in 0..n {
            let name = format!("{i}.txt");
            let offset = local.len() as u32;
            local.extend_from_slice(b"PK\x03\x04\x14\0\0\0\0\0\0\0\0\0");
            local.extend_from_slice(&[0; 12]);
            local.extend_from_slice(&(name.len() as u16).to_le_bytes());
            local.extend_from_slice(&0u16.to_le_bytes());
            local.extend_from_slice(name.as_bytes());
            central.extend_from_slice(b"PK\x01\x02\x14\0\x14\0\0\0\0\0\0\0\0\0");
            central.extend_from_slice(&[0; 12]);
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0; 8]);
            central.extend_from_slice(&[0; 4]);
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let cd_offset = local.len() as u32;
        let mut out = local;
        let cd_size = central.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
        let count = n.min(0xFFFF) as u16;
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&cd_size.to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    #[test]
    fn a_hundred_thousand_entries_fail_before_parsing() {
        let bytes = many_entries(100_000);
        let started = Instant::now();
        let mut out = Contents::default();
        let err = super::super::extract("many.zip", "many.zip", "", &bytes, &budget(), 1, &mut out)
            .unwrap_err();
        assert_eq!(err, Unscannable::TooManyEntries(10_000));
        println!("elapsed: {:?}", started.elapsed());
        assert!(
            started.elapsed() < crate::policy::sensitive::extract::tests::quickly(),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn an_encrypted_entry_is_listed_not_read() {
        // Info-ZIP `zip -P` over one of two files (scripts/make-encryption-samples): the
        // archive as a whole is not encrypted, so it is opened; the clear entry is read and the
        // encrypted one listed.
        let bytes = include_bytes!("../../../../fixtures/encryption/zip-partial.zip");
        let out = open("archive.zip", bytes).unwrap();
        assert_eq!(
            out.encrypted,
            [(
                "archive.zip › pupils.csv".to_string(),
                "encrypted ZIP entry"
            )]
        );
        assert_eq!(out.texts.len(), 1, "{out:?}");
        assert_eq!(out.texts[0].location, "archive.zip › contacts.csv");
    }

    #[test]
    fn a_wholly_encrypted_archive_is_listed_as_one() {
        let bytes = include_bytes!("../../../../fixtures/encryption/zip-aes256.zip");
        let out = open("archive.zip", bytes).unwrap();
        assert_eq!(out.encrypted, [("archive.zip".to_string(), "AES-256 ZIP")]);
        assert!(out.texts.is_empty());
    }

    #[test]
    fn a_hand_made_small_archive_still_opens() {
        let bytes = many_entries(3);
        let out = open("few.zip", &bytes).unwrap();
        assert!(out.texts.is_empty());
    }

    #[test]
    fn the_message_allowance_is_shared_by_all_entries() {
        let text = vec![b'a'; 600];
        let bytes = zip_of(&[("a.txt", &text), ("b.txt", &text)]);
        let limits = ScanLimits {
            max_expanded_size: ByteSize(1000),
            ..ScanLimits::default()
        };
        let mut out = Contents::default();
        let err = super::super::extract(
            "a.zip",
            "a.zip",
            "",
            &bytes,
            &Budget::new(&limits),
            1,
            &mut out,
        )
        .unwrap_err();
        assert_eq!(err, Unscannable::TooLarge(1000));
    }

    #[test]
    fn a_truncated_zip_is_corrupt() {
        let bytes = zip_of(&[("a.txt", b"hello there")]);
        let cut = &bytes[..bytes.len() - 30];
        assert!(matches!(open("a.zip", cut), Err(Unscannable::Corrupt(_))));
    }
}
