//! Encrypted mail parts: S/MIME (RFC 8551, CMS RFC 5652 / 5083), PGP/MIME (RFC 3156), OpenPGP
//! messages armoured or binary (RFC 4880, 9580), and Microsoft rights-managed mail (.rpmsg).
//! Signed-only S/MIME and PGP are not encrypted: anyone can read them.

use super::Protection;

/// CMS content types, as DER-encoded OIDs with their tag and length.
const ENVELOPED_DATA: &[u8] = &[
    0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x03,
];
const AUTH_ENVELOPED_DATA: &[u8] = &[
    0x06, 0x0B, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x10, 0x01, 0x17,
];
/// Where the content type sits in a ContentInfo: after a SEQUENCE header of at most 6 bytes
/// (indefinite or long length); a little room for a BER writer's oddities.
const OID_WINDOW: usize = 24;
const ARMOUR_MESSAGE: &[u8] = b"-----BEGIN PGP MESSAGE-----";
/// OpenPGP packet tags that mean encrypted data: PKESK, SKESK, SED, SEIPD, OCB-encrypted.
const ENCRYPTED_TAGS: [u8; 5] = [1, 3, 9, 18, 20];

/// What the part's type, parameters and name say, with a look at its first bytes where the
/// type alone cannot tell. `Clear` here means "not an encrypted mail part": the caller then
/// looks at the file itself.
pub(super) fn of_part(
    mime_type: &str,
    params: &[(String, String)],
    name: &str,
    body: &[u8],
) -> Protection {
    let param = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.trim().trim_matches('"').to_ascii_lowercase())
    };
    let name = name.to_ascii_lowercase();
    match mime_type {
        "application/pkcs7-mime" | "application/x-pkcs7-mime" => {
            return match param("smime-type").as_deref() {
                Some("enveloped-data") | Some("authenveloped-data") => {
                    Protection::Encrypted("S/MIME encrypted")
                }
                Some(_) => Protection::Clear,
                None => cms(body),
            };
        }
        "multipart/encrypted" => {
            return match param("protocol").as_deref() {
                Some("application/pgp-encrypted") => Protection::Encrypted("PGP/MIME encrypted"),
                _ => Protection::Encrypted("encrypted message"),
            };
        }
        "application/pgp-encrypted" => return Protection::Encrypted("PGP/MIME encrypted"),
        "application/x-microsoft-rpmsg-message" => {
            return Protection::Encrypted("rights-managed message");
        }
        _ => {}
    }
    if name.ends_with(".rpmsg") {
        return Protection::Encrypted("rights-managed message");
    }
    if name.ends_with(".p7m") {
        return cms(body);
    }
    if (name.ends_with(".gpg") || name.ends_with(".pgp")) && !body.starts_with(b"-----") {
        return match first_packet_tag(body) {
            Some(tag) if ENCRYPTED_TAGS.contains(&tag) => {
                Protection::Encrypted("OpenPGP encrypted")
            }
            _ => Protection::Clear,
        };
    }
    of_content(body)
}

/// What a file's own first bytes say, whatever its name: an armoured OpenPGP message or a
/// DER CMS enveloped-data structure (an encrypted .p7m or .asc inside an archive).
pub(super) fn of_content(body: &[u8]) -> Protection {
    let trimmed = trim_start(body);
    if trimmed.starts_with(ARMOUR_MESSAGE) {
        return armour(trimmed);
    }
    if body.first() == Some(&0x30) {
        return cms(body);
    }
    Protection::Clear
}

/// A DER ContentInfo: enveloped or authenticated-enveloped data is encrypted; signed data is not.
fn cms(body: &[u8]) -> Protection {
    let window = body.get(..OID_WINDOW.min(body.len())).unwrap_or_default();
    if body.first() != Some(&0x30) {
        return Protection::Clear;
    }
    if memchr::memmem::find(window, ENVELOPED_DATA).is_some()
        || memchr::memmem::find(window, AUTH_ENVELOPED_DATA).is_some()
    {
        return Protection::Encrypted("S/MIME encrypted");
    }
    Protection::Clear
}

fn trim_start(b: &[u8]) -> &[u8] {
    let b = b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b);
    let skip = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    b.get(skip..).unwrap_or_default()
}

/// An armoured `PGP MESSAGE`: decodes the first base64 line(s) after the armour headers and
/// reads the first packet's tag. A signed-only message starts with a signature or
/// compressed/literal packet.
fn armour(text: &[u8]) -> Protection {
    // Armour headers ("Version: …") end at the first empty line; the base64 follows.
    let mut lines = text
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    lines.next();
    let mut in_headers = true;
    let mut base64 = Vec::new();
    for line in lines.by_ref().take(200) {
        let line = line.trim_ascii();
        if in_headers {
            if line.is_empty() {
                in_headers = false;
            } else if !line.contains(&b':') {
                // No header block at all: this line is already data.
                in_headers = false;
                base64.extend_from_slice(line);
            }
            continue;
        }
        if line.starts_with(b"-----") || line.starts_with(b"=") {
            break;
        }
        base64.extend_from_slice(line);
        if base64.len() >= 8 {
            break;
        }
    }
    let decoded = decode_base64_prefix(&base64);
    match first_packet_tag(&decoded) {
        Some(tag) if ENCRYPTED_TAGS.contains(&tag) => Protection::Encrypted("OpenPGP encrypted"),
        // Signed only, or not OpenPGP at all under the armour line (a text file that merely
        // starts with it): read as clear, so its text is still checked.
        _ => Protection::Clear,
    }
}

/// Decodes whole base64 quads from the start of `s`.
fn decode_base64_prefix(s: &[u8]) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    };
    let mut out = Vec::new();
    for quad in s.chunks_exact(4) {
        let mut n = 0u32;
        for &c in quad {
            let Some(v) = value(c) else {
                return out;
            };
            n = (n << 6) | v;
        }
        out.extend_from_slice(&n.to_be_bytes()[1..]);
    }
    out
}

/// The first OpenPGP packet's tag: bit 7 must be set; new format when bit 6 is.
fn first_packet_tag(b: &[u8]) -> Option<u8> {
    let first = *b.first()?;
    if first & 0x80 == 0 {
        return None;
    }
    Some(if first & 0x40 != 0 {
        first & 0x3F
    } else {
        (first >> 2) & 0x0F
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn smime_by_smime_type_or_by_its_oid() {
        let enveloped = params(&[("smime-type", "enveloped-data"), ("name", "smime.p7m")]);
        assert_eq!(
            of_part("application/pkcs7-mime", &enveloped, "smime.p7m", b""),
            Protection::Encrypted("S/MIME encrypted")
        );
        let auth = params(&[("smime-type", "authEnveloped-data")]);
        assert_eq!(
            of_part("application/x-pkcs7-mime", &auth, "", b""),
            Protection::Encrypted("S/MIME encrypted")
        );
        let signed = params(&[("smime-type", "signed-data")]);
        assert_eq!(
            of_part("application/pkcs7-mime", &signed, "", b""),
            Protection::Clear
        );
        // No smime-type: the DER says.
        let mut der = vec![0x30, 0x80];
        der.extend_from_slice(ENVELOPED_DATA);
        assert_eq!(
            of_part("application/pkcs7-mime", &[], "", &der),
            Protection::Encrypted("S/MIME encrypted")
        );
        assert_eq!(
            of_part("application/octet-stream", &[], "x.P7M", &der),
            Protection::Encrypted("S/MIME encrypted")
        );
        let mut signed_der = vec![0x30, 0x82, 0x01, 0x00];
        signed_der.extend_from_slice(&[
            0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02,
        ]);
        assert_eq!(
            of_part("application/octet-stream", &[], "x.p7m", &signed_der),
            Protection::Clear
        );
    }

    #[test]
    fn pgp_mime_and_rights_managed_mail() {
        let pgp = params(&[("protocol", "application/pgp-encrypted")]);
        assert_eq!(
            of_part("multipart/encrypted", &pgp, "", b""),
            Protection::Encrypted("PGP/MIME encrypted")
        );
        assert_eq!(
            of_part("application/pgp-encrypted", &[], "", b"Version: 1\r\n"),
            Protection::Encrypted("PGP/MIME encrypted")
        );
        assert_eq!(
            of_part(
                "application/x-microsoft-rpmsg-message",
                &[],
                "message.rpmsg",
                b"\x76\xe8"
            ),
            Protection::Encrypted("rights-managed message")
        );
        assert_eq!(
            of_part("application/octet-stream", &[], "Message.RPMSG", b""),
            Protection::Encrypted("rights-managed message")
        );
    }

    #[test]
    fn binary_openpgp_by_its_first_packet() {
        // Old-format PKESK (tag 1), new-format SEIPD (tag 18), old-format compressed (tag 8).
        assert_eq!(
            of_part(
                "application/octet-stream",
                &[],
                "r.gpg",
                &[0x85, 0x01, 0x0C]
            ),
            Protection::Encrypted("OpenPGP encrypted")
        );
        assert_eq!(
            of_part("application/octet-stream", &[], "r.pgp", &[0xD2, 0x10]),
            Protection::Encrypted("OpenPGP encrypted")
        );
        assert_eq!(
            of_part("application/octet-stream", &[], "r.gpg", &[0xA3, 0x01]),
            Protection::Clear
        );
        // The same bytes without the name are not taken for OpenPGP.
        assert_eq!(
            of_part(
                "application/octet-stream",
                &[],
                "r.bin",
                &[0x85, 0x01, 0x0C]
            ),
            Protection::Clear
        );
    }

    #[test]
    fn armour_is_decoded_and_signed_only_is_clear() {
        // hQEMA… is a PKESK packet (0x85 0x01 0x0C …).
        let encrypted = b"\n-----BEGIN PGP MESSAGE-----\nVersion: GnuPG\n\nhQEMA5dNnxIbSpTjAQf/Zx\n=abcd\n-----END PGP MESSAGE-----\n";
        assert_eq!(
            of_content(encrypted),
            Protection::Encrypted("OpenPGP encrypted")
        );
        // owGb… is a compressed-data packet (0xA3 0x01): signed, not encrypted.
        let signed =
            b"-----BEGIN PGP MESSAGE-----\r\n\r\nowGbwMvMwCX2\r\n-----END PGP MESSAGE-----\r\n";
        assert_eq!(of_content(signed), Protection::Clear);
        // Cleartext signatures are a different armour altogether.
        let cleartext = b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nhello\n";
        assert_eq!(of_content(cleartext), Protection::Clear);
        assert_eq!(
            decode_base64_prefix(b"hQEMA5dN"),
            vec![0x85, 0x01, 0x0C, 0x03, 0x97, 0x4D]
        );
        // The armour line above a list of pupils does not make it encrypted.
        let disguised = b"-----BEGIN PGP MESSAGE-----\n\nName,UPN\nTest Pupil,A123456789012\n";
        assert_eq!(of_content(disguised), Protection::Clear);
    }
}
