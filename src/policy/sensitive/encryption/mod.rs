//! Is this file encrypted? Told from its bytes alone (research/detectors.md, "Is this file
//! encrypted?"): an encrypted attachment is not sensitive data sent in clear.
//!
//! Every check reads only the few structures that say so (a ZIP's central directory, a PDF's
//! trailer, an OLE file's directory) and never copies or decompresses the whole file: it runs on
//! every attachment, so a clear 20 MB file costs well under a millisecond.
//!
//! When a file is only partly encrypted (a ZIP with some entries in clear) or its structure
//! cannot be read, the answer is [`Protection::Clear`]: the extractor then opens what it can and
//! reports the rest itself, so nothing is waved through as "encrypted" that a reader could open.

mod crypto;
mod mail;
mod office;
mod pdf;
mod rar;
mod sevenzip;
mod zip;

/// How a file is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// Readable by anyone who has it.
    Clear,
    /// Needs a password or key to read: `how` names the scheme ("AES-256 ZIP", "PDF /Encrypt").
    Encrypted(&'static str),
    /// Marked as protected but opens without a password (an owner-password-only PDF, the
    /// VelvetSweatshop default of Excel): not confidential, so read as clear.
    OpensWithoutPassword(&'static str),
}

/// How many records of a directory (ZIP central directory, RAR blocks) are walked at most.
/// Beyond it the answer is `Clear` and the extractor reports the archive as having too many
/// entries.
const MAX_RECORDS: usize = 100_000;

/// Tells from `bytes` whether the whole file is encrypted (by its magic; any format).
pub fn of_file(bytes: &[u8]) -> Protection {
    if bytes.starts_with(b"PK\x03\x04")
        || bytes.starts_with(b"PK\x05\x06")
        || bytes.starts_with(b"PK\x07\x08")
    {
        return zip::protection(bytes);
    }
    if bytes.starts_with(sevenzip::SIGNATURE) {
        return sevenzip::protection(bytes);
    }
    if bytes.starts_with(rar::SIGNATURE_4) || bytes.starts_with(rar::SIGNATURE_5) {
        return rar::protection(bytes);
    }
    if bytes.starts_with(office::OLE_SIGNATURE) {
        return office::protection(bytes);
    }
    if pdf::is_pdf(bytes) {
        return pdf::protection(bytes);
    }
    mail::of_content(bytes)
}

/// Tells from a MIME part whether it is an encrypted message or attachment (S/MIME enveloped
/// data, PGP/MIME, armoured PGP, Microsoft rights-managed mail). `mime_type` is lower-cased
/// `type/subtype`; `params` are its Content-Type parameters; `body` is decoded.
pub fn of_part(
    mime_type: &str,
    params: &[(String, String)],
    name: &str,
    body: &[u8],
) -> Protection {
    match mail::of_part(mime_type, params, name, body) {
        Protection::Clear => of_file(body),
        told => told,
    }
}

/// Little-endian readers that answer `None` past the end instead of panicking.
pub(super) fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(u16::from_le_bytes(s))
}

pub(super) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(s))
}

pub(super) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s: [u8; 8] = b.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_and_empty_files_are_clear() {
        assert_eq!(of_file(b""), Protection::Clear);
        assert_eq!(of_file(b"Name,UPN\nAmy,A123\n"), Protection::Clear);
        assert_eq!(of_file(b"PK"), Protection::Clear);
    }

    #[test]
    fn readers_stop_at_the_end() {
        assert_eq!(u16_at(b"\x01", 0), None);
        assert_eq!(u32_at(b"\x01\x02\x03\x04", 1), None);
        assert_eq!(u64_at(b"", usize::MAX), None);
        assert_eq!(u16_at(b"\x01\x02", 0), Some(0x0201));
    }

    /// Samples made by the real tools (scripts/make-encryption-samples says which).
    macro_rules! sample {
        ($name:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fixtures/encryption/",
                $name
            ))
            .as_slice()
        };
    }

    #[test]
    fn zip_samples() {
        assert_eq!(of_file(sample!("zip-clear.zip")), Protection::Clear);
        assert_eq!(
            of_file(sample!("zip-zipcrypto.zip")),
            Protection::Encrypted("ZipCrypto ZIP")
        );
        assert_eq!(
            of_file(sample!("zip-aes256.zip")),
            Protection::Encrypted("AES-256 ZIP")
        );
        // One entry with a password, one without: the extractor reads the clear one.
        assert_eq!(of_file(sample!("zip-partial.zip")), Protection::Clear);
        assert_eq!(of_file(sample!("xlsx-clear.xlsx")), Protection::Clear);
    }

    #[test]
    fn opendocument_samples() {
        assert_eq!(of_file(sample!("odt-clear.odt")), Protection::Clear);
        assert_eq!(
            of_file(sample!("odt-encrypted.odt")),
            Protection::Encrypted("encrypted OpenDocument")
        );
    }

    #[test]
    fn sevenzip_samples() {
        assert_eq!(of_file(sample!("7z-clear.7z")), Protection::Clear);
        assert_eq!(
            of_file(sample!("7z-aes.7z")),
            Protection::Encrypted("AES-256 7z")
        );
        assert_eq!(
            of_file(sample!("7z-aes-hidden-names.7z")),
            Protection::Encrypted("AES-256 7z, file names hidden")
        );
    }

    #[test]
    fn pdf_samples() {
        let owner_only = Protection::OpensWithoutPassword("PDF with an owner password only");
        let asks = Protection::Encrypted("password-protected PDF");
        assert_eq!(of_file(sample!("pdf-clear.pdf")), Protection::Clear);
        assert_eq!(of_file(sample!("pdf-owner-only-r3.pdf")), owner_only);
        assert_eq!(of_file(sample!("pdf-owner-only-r4-aes.pdf")), owner_only);
        assert_eq!(of_file(sample!("pdf-owner-only-r6.pdf")), owner_only);
        assert_eq!(of_file(sample!("pdf-user-r2.pdf")), asks);
        assert_eq!(of_file(sample!("pdf-user-r4-aes.pdf")), asks);
        assert_eq!(of_file(sample!("pdf-user-r6.pdf")), asks);
        // /Encrypt in a cross-reference stream's dictionary (no `trailer` keyword at all).
        assert_eq!(
            of_file(sample!("pdf-owner-only-r6-xref-stream.pdf")),
            owner_only
        );
        assert_eq!(of_file(sample!("pdf-user-r4-xref-stream.pdf")), asks);
        assert_eq!(
            of_file(sample!("pdf-owner-only-r4-linearized.pdf")),
            owner_only
        );
    }

    #[test]
    fn office_samples() {
        assert_eq!(
            of_file(sample!("xlsx-agile.xlsx")),
            Protection::Encrypted("password-protected Office document (agile encryption)")
        );
        assert_eq!(of_file(sample!("xls-clear.xls")), Protection::Clear);
        let default = Protection::OpensWithoutPassword("Excel workbook with the default password");
        assert_eq!(of_file(sample!("xls-velvetsweatshop.xls")), default);
        assert_eq!(of_file(sample!("xls-velvetsweatshop-rc4.xls")), default);
        assert_eq!(of_file(sample!("xls-velvetsweatshop-xor.xls")), default);
        let asks = Protection::Encrypted("password-protected Excel workbook");
        assert_eq!(of_file(sample!("xls-password.xls")), asks);
        assert_eq!(of_file(sample!("xls-password-rc4.xls")), asks);
    }

    #[test]
    fn pgp_and_smime_samples() {
        let pgp = Protection::Encrypted("OpenPGP encrypted");
        let octet = "application/octet-stream";
        assert_eq!(of_file(sample!("pgp-symmetric.asc")), pgp);
        assert_eq!(
            of_part(octet, &[], "pupils.csv.asc", sample!("pgp-symmetric.asc")),
            pgp
        );
        assert_eq!(
            of_part(octet, &[], "pupils.csv.gpg", sample!("pgp-symmetric.gpg")),
            pgp
        );
        // Signed only: anyone can read it.
        assert_eq!(of_file(sample!("pgp-signed.asc")), Protection::Clear);
        assert_eq!(
            of_part(octet, &[], "pupils.csv.asc", sample!("pgp-signed.asc")),
            Protection::Clear
        );
        let smime = Protection::Encrypted("S/MIME encrypted");
        assert_eq!(
            of_part(
                "application/pkcs7-mime",
                &[],
                "smime.p7m",
                sample!("smime-enveloped.p7m")
            ),
            smime
        );
        assert_eq!(of_file(sample!("smime-enveloped.p7m")), smime);
        assert_eq!(
            of_part(octet, &[], "smime.p7m", sample!("smime-signed.p7m")),
            Protection::Clear
        );
    }

    #[test]
    fn of_part_falls_through_to_the_file() {
        let zip = "application/zip";
        assert_eq!(
            of_part(zip, &[], "pupils.zip", sample!("zip-aes256.zip")),
            Protection::Encrypted("AES-256 ZIP")
        );
        assert_eq!(
            of_part(
                "application/pdf",
                &[],
                "report.pdf",
                sample!("pdf-clear.pdf")
            ),
            Protection::Clear
        );
    }

    const SAMPLES: &[&[u8]] = &[
        sample!("zip-clear.zip"),
        sample!("zip-zipcrypto.zip"),
        sample!("zip-aes256.zip"),
        sample!("zip-partial.zip"),
        sample!("odt-clear.odt"),
        sample!("odt-encrypted.odt"),
        sample!("7z-clear.7z"),
        sample!("7z-aes.7z"),
        sample!("7z-aes-hidden-names.7z"),
        sample!("pdf-clear.pdf"),
        // (Not an R6 file: its hash is slow in debug builds, and damage rarely reaches it.)
        sample!("pdf-owner-only-r3.pdf"),
        sample!("pdf-user-r4-xref-stream.pdf"),
        sample!("xlsx-agile.xlsx"),
        sample!("xls-velvetsweatshop.xls"),
        sample!("pgp-symmetric.asc"),
        sample!("smime-enveloped.p7m"),
    ];

    #[test]
    fn damaged_samples_never_panic() {
        let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for s in SAMPLES {
            for cut in (0..s.len()).step_by(13) {
                let _ = of_file(&s[..cut]);
                let _ = of_part("application/octet-stream", &[], "x.p7m", &s[..cut]);
            }
            for _ in 0..300 {
                let mut m = s.to_vec();
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % m.len();
                    m[at] = next() as u8;
                }
                let _ = of_file(&m);
            }
        }
    }

    #[test]
    fn a_pdf_with_a_wrong_startxref_is_still_read() {
        for (name, bytes, want) in [
            (
                "user",
                sample!("pdf-user-r4-xref-stream.pdf"),
                Protection::Encrypted("password-protected PDF"),
            ),
            // R6 needs no /ID, so the owner-only file is still told apart.
            (
                "owner",
                sample!("pdf-owner-only-r6-xref-stream.pdf"),
                Protection::OpensWithoutPassword("PDF with an owner password only"),
            ),
        ] {
            let mut damaged = bytes.to_vec();
            let sx = memchr::memmem::rfind(&damaged, b"startxref").unwrap() + 10;
            let digits = damaged[sx..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            damaged[sx..sx + digits].fill(b'9');
            assert_eq!(of_file(&damaged), want, "{name}");
        }
    }
}
