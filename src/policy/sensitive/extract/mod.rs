//! The text inside an attachment, for the detectors: plain text and CSV, OOXML, ODF, legacy
//! Office, PDF, RTF, HTML, ZIP archives (recursively) and attached messages. Every
//! decompression is charged to the message's [`Budget`].
//!
//! What a file is, is told by its first bytes before its name: a class list renamed `.txt` is
//! still a workbook. Anything that is not a known text-bearing format (a photo, a recording, an
//! unknown binary) yields no text and no error: it is delivered, not called unscannable. A
//! known format that cannot be read is [`Unscannable::Corrupt`], with a short reason that
//! never quotes the file.

mod archive;
pub(crate) mod html;
mod legacy;
mod odf;
mod ooxml;
mod pdf;
mod rtf;
mod text;
mod tnef;
mod xml;

use super::encryption::{self, Protection};
use super::limits::{Budget, MAX_TEXT, Unscannable};

/// Text found at one place inside an attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// Where: the attachment's name, then the path inside it ("pupils.zip › Y7.xlsx › Sheet1").
    pub location: String,
    /// The text; table rows are lines with cells separated by tabs.
    pub text: String,
}

/// What opening an attachment found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    pub texts: Vec<Text>,
    /// Files inside that are encrypted: (location, how).
    pub encrypted: Vec<(String, &'static str)>,
    /// Microsoft sensitivity labels found in documents (label GUID and, when given, its name).
    pub labels: Vec<String>,
    /// Anything worth telling the audit trail (a skipped entry, text cut at the limit).
    pub notes: Vec<String>,
    /// Text was cut at [`MAX_TEXT`]: the rest of the attachment was not read.
    pub truncated: bool,
}

/// Opens one file (`bytes`, called `name`, sent as `mime_type`) found at `location`, `depth`
/// levels down (an attachment is depth 1), adding what it holds to `out`.
pub fn extract(
    location: &str,
    name: &str,
    mime_type: &str,
    bytes: &[u8],
    budget: &Budget,
    depth: usize,
    out: &mut Contents,
) -> Result<(), Unscannable> {
    budget.enter(depth)?;
    // An encrypted file is not sensitive data sent in clear, and cannot be read anyway.
    if let Protection::Encrypted(how) = encryption::of_file(bytes) {
        out.encrypted.push((location.to_string(), how));
        return Ok(());
    }
    match kind_of(name, mime_type, bytes) {
        Kind::Zip => archive::open(location, bytes, budget, depth, out),
        Kind::Ole => legacy::open(location, bytes, budget, out),
        Kind::Pdf => pdf::open(location, bytes, budget, out),
        Kind::Rtf => rtf::open(location, bytes, budget, out),
        Kind::Html => html::open(location, bytes, budget, out),
        Kind::Csv => text::open_csv(location, bytes, budget, out),
        Kind::Text => text::open(location, bytes, out),
        Kind::Message => super::open_message(location, bytes, budget, depth, out),
        Kind::Tnef => tnef::open(location, bytes, budget, depth, out),
        // An archive that is not encrypted (that was checked first) but that schoolgate has no
        // reader for could carry anything: it is held as unscannable, never passed unread.
        Kind::Unreadable(format) => Err(Unscannable::Unreadable(format)),
        Kind::Other => Ok(()),
    }
}

/// What a file is, as far as reading its text goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Zip,
    Ole,
    Pdf,
    Rtf,
    Html,
    Csv,
    Text,
    Message,
    Tnef,
    Unreadable(&'static str),
    Other,
}

/// Magic bytes first, then the file name's extension, then the declared type.
fn kind_of(name: &str, mime_type: &str, bytes: &[u8]) -> Kind {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return Kind::Zip;
    }
    if bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        return Kind::Ole;
    }
    let head = bytes.get(..1024).unwrap_or(bytes);
    if memchr::memmem::find(head, b"%PDF-").is_some() {
        return Kind::Pdf;
    }
    if bytes.starts_with(b"{\\rtf") {
        return Kind::Rtf;
    }
    if bytes.starts_with(&tnef::SIGNATURE) {
        return Kind::Tnef;
    }
    if let Some(format) = unreadable_archive(bytes) {
        return Kind::Unreadable(format);
    }
    let extension = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "csv" | "tsv" => return Kind::Csv,
        "htm" | "html" | "xhtml" | "mht" | "mhtml" => return Kind::Html,
        "eml" => return Kind::Message,
        "rtf" => return Kind::Rtf,
        "txt" | "text" | "log" | "md" | "markdown" | "json" | "xml" | "ics" | "vcf" | "yaml"
        | "yml" | "ini" | "sql" | "tab" => return Kind::Text,
        _ => {}
    }
    let mime_type = mime_type.to_ascii_lowercase();
    match mime_type.as_str() {
        "text/csv" | "text/tab-separated-values" | "application/csv" => Kind::Csv,
        "text/html" | "application/xhtml+xml" => Kind::Html,
        "message/rfc822" | "message/global" => Kind::Message,
        "text/rtf" | "application/rtf" => Kind::Rtf,
        "application/json" | "application/xml" => Kind::Text,
        t if t.starts_with("text/") => Kind::Text,
        _ => Kind::Other,
    }
}

/// Archive and compression formats told by their magic that no reader here opens.
fn unreadable_archive(bytes: &[u8]) -> Option<&'static str> {
    const MAGIC: [(&[u8], &str); 7] = [
        (b"7z\xBC\xAF\x27\x1C", "7z"),
        (b"Rar!\x1A\x07", "RAR"),
        (b"\x1F\x8B", "gzip"),
        (b"BZh", "bzip2"),
        (b"\xFD7zXZ\x00", "xz"),
        (b"\x28\xB5\x2F\xFD", "Zstandard"),
        (b"MSCF\0\0\0\0", "CAB"),
    ];
    if let Some((_, name)) = MAGIC.iter().find(|(m, _)| bytes.starts_with(m)) {
        return Some(name);
    }
    (bytes.get(257..262) == Some(b"ustar")).then_some("tar")
}

/// A winmail.dat holding `files`, for tests elsewhere in the module.
#[cfg(test)]
pub(crate) fn tnef_for_tests(files: &[(&str, &[u8])]) -> Vec<u8> {
    tnef::tests::winmail(files)
}

/// `location › inner`.
fn inside(location: &str, inner: &str) -> String {
    format!("{location} › {inner}")
}

/// Text kept so far from this attachment.
fn kept(out: &Contents) -> usize {
    out.texts.iter().map(|t| t.text.len()).sum()
}

/// Builds the text of one file, in sections (a workbook's sheets, a document's parts), and
/// stops at [`MAX_TEXT`] for the attachment: past it the rest is not read and a note says so.
struct Writer {
    room: usize,
    cut: bool,
    current: String,
    name: Option<String>,
    done: Vec<(Option<String>, String)>,
}

impl Writer {
    fn new(out: &Contents) -> Writer {
        Writer {
            room: MAX_TEXT.saturating_sub(kept(out)),
            cut: false,
            current: String::new(),
            name: None,
            done: Vec::new(),
        }
    }

    /// Adds `s`; false once the limit is reached (the caller stops reading).
    fn push_str(&mut self, s: &str) -> bool {
        if self.cut {
            return false;
        }
        if s.len() <= self.room {
            self.current.push_str(s);
            self.room -= s.len();
            return true;
        }
        let mut end = self.room;
        while end > 0 && !s.is_char_boundary(end) {
            end -= 1;
        }
        self.current.push_str(s.get(..end).unwrap_or(""));
        self.room = 0;
        self.cut = true;
        false
    }

    fn push(&mut self, c: char) -> bool {
        let mut b = [0u8; 4];
        self.push_str(c.encode_utf8(&mut b))
    }

    fn full(&self) -> bool {
        self.cut
    }

    /// Bytes of text that may still be added.
    fn room(&self) -> usize {
        self.room
    }

    /// Drops spaces at the end (before a tab or line break).
    fn trim_spaces(&mut self) {
        while self.current.ends_with(' ') {
            self.current.pop();
            self.room += 1;
        }
    }

    /// Drops tabs at the end of a row (trailing empty cells).
    fn trim_tabs(&mut self) {
        while self.current.ends_with('\t') {
            self.current.pop();
            self.room += 1;
        }
    }

    fn ends_with_line_break(&self) -> bool {
        self.current.is_empty() || self.current.ends_with('\n')
    }

    /// Starts a new section called `name` (a sheet, a slide).
    fn section(&mut self, name: Option<String>) {
        let text = std::mem::take(&mut self.current);
        let previous = std::mem::replace(&mut self.name, name);
        if !text.trim().is_empty() {
            self.done.push((previous, text));
        }
    }

    /// Adds the sections to `out` at `location`.
    fn finish(mut self, location: &str, out: &mut Contents) {
        self.section(None);
        for (name, text) in self.done {
            let location = match name {
                Some(n) => inside(location, &n),
                None => location.to_string(),
            };
            out.texts.push(Text { location, text });
        }
        if self.cut {
            out.truncated = true;
            out.notes.push(format!(
                "{location}: only the first {} MiB of text were read",
                MAX_TEXT >> 20
            ));
        }
    }
}

/// An Excel date serial as dd/mm/yyyy: the 1900 system (with Lotus's 29 February 1900, serial
/// 60) or the 1904 system. The time of day is dropped. None when out of Excel's range.
fn excel_date(serial: f64, date1904: bool) -> Option<String> {
    if !serial.is_finite() || !(0.0..2_958_466.0).contains(&serial) {
        return None;
    }
    let days = serial.floor() as i64;
    let since_epoch = if date1904 {
        // 1904-01-01 is 24107 days after 1970-01-01 backwards: days_from_civil(1904,1,1).
        days_from_civil(1904, 1, 1) + days
    } else if days == 60 {
        return Some("29/02/1900".to_string());
    } else if days < 60 {
        days_from_civil(1899, 12, 31) + days
    } else {
        days_from_civil(1899, 12, 30) + days
    };
    let (y, m, d) = civil_from_days(since_epoch);
    Some(format!("{d:02}/{m:02}/{y:04}"))
}

/// An ISO date ("2011-03-05", maybe with a time after it) as dd/mm/yyyy.
fn iso_date(value: &str) -> Option<String> {
    let date = value.get(..10)?;
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    let ok = y.len() == 4 && m.len() == 2 && d.len() == 2;
    let digits = [y, m, d]
        .iter()
        .all(|p| p.bytes().all(|b| b.is_ascii_digit()));
    (ok && digits).then(|| format!("{d}/{m}/{y}"))
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a count of days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::ScanLimits;

    /// The default limits, but for the scan deadline: these tests prove what stops a bomb (its
    /// ratio, its size, its count), and a loaded machine running an unoptimised inflater must not
    /// make them pass or fail through the 10 s deadline instead (tests/sensitive_scan_time.rs
    /// tests the deadline itself).
    pub(crate) fn budget() -> Budget {
        Budget::new(&ScanLimits {
            max_scan_time: crate::config::HumanDuration(std::time::Duration::from_secs(600)),
            ..ScanLimits::default()
        })
    }

    /// How long a bomb may take to be stopped: well under a second in release; dependencies
    /// (the inflater) are not optimised in test builds, so a debug build gets more.
    #[test]
    fn an_archive_with_no_reader_is_unscannable_unless_encrypted() {
        let clear = include_bytes!("../../../../fixtures/encryption/7z-clear.7z");
        assert_eq!(
            open("lists.7z", clear).unwrap_err(),
            Unscannable::Unreadable("7z")
        );
        let locked = include_bytes!("../../../../fixtures/encryption/7z-aes.7z");
        let out = open("lists.7z", locked).unwrap();
        assert_eq!(out.encrypted.len(), 1, "{out:?}");
        let mut gz = vec![0x1F, 0x8B, 8, 0];
        gz.extend_from_slice(&[0; 16]);
        assert_eq!(
            open("pupils.csv.gz", &gz).unwrap_err(),
            Unscannable::Unreadable("gzip")
        );
        // A photo is not an archive: no text, delivered.
        assert!(open("photo.jpg", &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]).is_ok());
    }

    /// A hang guard, not a speed test (speed is measured in benches/sensitive.rs and
    /// scripts/bench-bombs): generous enough for a loaded CI machine, tight enough that a loop
    /// that never ends fails rather than stalls the suite.
    pub(crate) fn quickly() -> std::time::Duration {
        if cfg!(debug_assertions) {
            std::time::Duration::from_secs(30)
        } else {
            std::time::Duration::from_millis(900)
        }
    }

    /// A raw deflate stream of `megabytes` MiB of zeros, built from one compressed MiB repeated
    /// (a full flush makes each copy stand alone), so a gigabyte bomb costs milliseconds to make.
    pub(crate) fn zeros_deflate(megabytes: usize) -> Vec<u8> {
        use flate2::{Compress, Compression, FlushCompress};
        let mut c = Compress::new(Compression::best(), false);
        let mut chunk = Vec::with_capacity(64 << 10);
        c.compress_vec(&vec![0u8; 1 << 20], &mut chunk, FlushCompress::Full)
            .unwrap();
        let mut out = Vec::with_capacity(chunk.len() * megabytes + 2);
        for _ in 0..megabytes {
            out.extend_from_slice(&chunk);
        }
        // A final, empty fixed-Huffman block.
        out.extend_from_slice(&[0x03, 0x00]);
        out
    }

    /// All text of `bytes` opened as an attachment called `name`.
    pub(crate) fn open(name: &str, bytes: &[u8]) -> Result<Contents, Unscannable> {
        let mut out = Contents::default();
        extract(name, name, "", bytes, &budget(), 1, &mut out)?;
        Ok(out)
    }

    pub(crate) fn all_text(c: &Contents) -> String {
        c.texts
            .iter()
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// MB/s of extraction for the big samples `scripts/make-extract-samples --big DIR` writes:
    /// `SCHOOLGATE_EXTRACT_SAMPLES=DIR cargo test --release --lib extraction_speed -- --ignored
    /// --nocapture`.
    #[test]
    #[ignore]
    fn extraction_speed() {
        let dir = std::env::var("SCHOOLGATE_EXTRACT_SAMPLES").unwrap_or("/tmp/bigsamples".into());
        for name in ["big.xlsx", "big.pdf", "big-compressed.pdf"] {
            let Ok(bytes) = std::fs::read(format!("{dir}/{name}")) else {
                continue;
            };
            let limits = ScanLimits {
                max_expanded_size: crate::config::ByteSize(1 << 30),
                ..ScanLimits::default()
            };
            let started = std::time::Instant::now();
            let mut out = Contents::default();
            extract(name, name, "", &bytes, &Budget::new(&limits), 1, &mut out).unwrap();
            let elapsed = started.elapsed();
            let text: usize = out.texts.iter().map(|t| t.text.len()).sum();
            let mb = bytes.len() as f64 / 1e6;
            println!(
                "{name}: {mb:.1} MB in {elapsed:.2?} = {:.1} MB/s; {:.1} MB of text in {} sections",
                mb / elapsed.as_secs_f64(),
                text as f64 / 1e6,
                out.texts.len()
            );
        }
    }

    #[test]
    fn excel_serials_become_school_dates() {
        assert_eq!(excel_date(1.0, false).unwrap(), "01/01/1900");
        assert_eq!(excel_date(59.0, false).unwrap(), "28/02/1900");
        assert_eq!(excel_date(60.0, false).unwrap(), "29/02/1900");
        assert_eq!(excel_date(61.0, false).unwrap(), "01/03/1900");
        assert_eq!(excel_date(40_607.5, false).unwrap(), "05/03/2011");
        assert_eq!(excel_date(39_145.0, true).unwrap(), "05/03/2011");
        assert_eq!(excel_date(0.0, true).unwrap(), "01/01/1904");
        assert_eq!(excel_date(-1.0, false), None);
        assert_eq!(excel_date(f64::NAN, false), None);
    }

    #[test]
    fn iso_dates_are_written_day_first() {
        assert_eq!(iso_date("2011-03-05").unwrap(), "05/03/2011");
        assert_eq!(iso_date("2011-03-05T10:00:00").unwrap(), "05/03/2011");
        assert_eq!(iso_date("2011/03/05"), None);
    }

    #[test]
    fn a_photo_is_delivered_without_text() {
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0];
        let out = open("class photo.jpg", &jpeg).unwrap();
        assert!(out.texts.is_empty());
        let mut out = Contents::default();
        extract(
            "x",
            "x",
            "image/png",
            &[0x89, b'P', b'N', b'G'],
            &budget(),
            1,
            &mut out,
        )
        .unwrap();
        assert!(out.texts.is_empty());
    }

    #[test]
    fn magic_wins_over_the_name() {
        assert_eq!(kind_of("notes.txt", "text/plain", b"%PDF-1.4\n"), Kind::Pdf);
        assert_eq!(kind_of("a.txt", "", b"PK\x03\x04rest"), Kind::Zip);
        assert_eq!(
            kind_of("list.CSV", "application/octet-stream", b"a,b"),
            Kind::Csv
        );
        assert_eq!(kind_of("x", "text/plain", b"hello"), Kind::Text);
        assert_eq!(
            kind_of("x.bin", "application/octet-stream", b"hello"),
            Kind::Other
        );
    }

    #[test]
    fn the_writer_stops_at_its_room_on_a_character_boundary() {
        let mut w = Writer {
            room: 5,
            cut: false,
            current: String::new(),
            name: None,
            done: Vec::new(),
        };
        assert!(w.push_str("abc"));
        assert!(!w.push_str("déf"));
        let mut out = Contents::default();
        w.finish("a.txt", &mut out);
        assert_eq!(out.texts[0].text, "abcd");
        assert_eq!(out.notes.len(), 1);
        assert!(
            out.truncated,
            "the attachment is held: the rest was never read"
        );
    }
}

#[cfg(test)]
mod damaged {
    use super::tests::open;

    /// Every fixture with bytes overwritten here and there, and cut short: each must open or be
    /// refused, never panic or hang (attachment bytes are hostile).
    #[test]
    fn damaged_files_never_panic() {
        let fixtures: [(&str, &[u8]); 10] = [
            (
                "a.docx",
                include_bytes!("../../../../fixtures/extract/report.docx"),
            ),
            (
                "a.xlsx",
                include_bytes!("../../../../fixtures/extract/class.xlsx"),
            ),
            (
                "a.pptx",
                include_bytes!("../../../../fixtures/extract/deck.pptx"),
            ),
            (
                "a.odt",
                include_bytes!("../../../../fixtures/extract/letter.odt"),
            ),
            (
                "a.ods",
                include_bytes!("../../../../fixtures/extract/class.ods"),
            ),
            (
                "a.xls",
                include_bytes!("../../../../fixtures/extract/class.xls"),
            ),
            (
                "a.pdf",
                include_bytes!("../../../../fixtures/extract/report.pdf"),
            ),
            (
                "b.pdf",
                include_bytes!("../../../../fixtures/extract/owner-only.pdf"),
            ),
            (
                "a.rtf",
                b"{\\rtf1\\ansi{\\fonttbl{\\f0 A;}}\\'e9\\u233?x\\par\\cell\\row}",
            ),
            ("a.html", b"<p>a<td>b&#x41;&amp;<script>x</script>"),
        ];
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) as usize
        };
        for (name, bytes) in fixtures {
            for round in 0..200 {
                let mut damaged = bytes.to_vec();
                for _ in 0..1 + round % 8 {
                    let at = next() % damaged.len();
                    damaged[at] = next() as u8;
                }
                if round % 5 == 0 {
                    damaged.truncate(next() % damaged.len());
                }
                let _ = open(name, &damaged);
            }
        }
    }
}
