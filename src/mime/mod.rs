//! Byte-level MIME, for rewriting only what must change.
//!
//! `header` finds header fields and their byte ranges; `tree` finds the parts of a message by
//! its boundaries (RFC 2046) without decoding anything; `encoding` decodes and re-encodes
//! quoted-printable and base64 the way a part came; `charset` writes text in a part's charset.
//! Nothing here decides anything: that is `policy`'s job.

pub mod charset;
pub mod encoding;
pub mod header;
pub mod tree;

/// `bytes` read by mail-parser, or `None` when it cannot read them — including when it panics,
/// which it does on some hostile messages (a multipart/report inside message/rfc822: "Invalid
/// part ID, could not find multipart", found by the fuzzer). Everything that reads a message
/// with mail-parser goes through here, so a held message can never take down a page or a check.
pub fn read_with_mail_parser(bytes: &[u8]) -> Option<mail_parser::Message<'_>> {
    std::panic::catch_unwind(|| mail_parser::MessageParser::default().parse(bytes))
        .ok()
        .flatten()
}

/// The file name of `part`, an attachment of the message in `bytes` as mail-parser read it.
/// mail-parser decodes RFC 2231 continuations segment by segment, so a character whose bytes
/// two segments share comes out as two replacement characters; such a name is read again here
/// from the part's own header, joined first and decoded once ([`header::Parameterised`]).
pub fn attachment_name(bytes: &[u8], part: &mail_parser::MessagePart<'_>) -> Option<String> {
    use mail_parser::MimeHeaders;
    let from = part.raw_header_offset() as usize;
    let to = part.raw_body_offset() as usize;
    let continued = bytes.get(from..to).and_then(|raw| {
        let h = header::parse(raw, 0, raw.len());
        let param = |field: &str, name: &str| {
            let value = h.value(raw, field)?;
            let segmented = value.to_ascii_lowercase().contains(&format!("{name}*"));
            let v = header::Parameterised::parse(&value);
            v.param(name)
                .filter(|n| segmented && !n.is_empty())
                .map(str::to_string)
        };
        param("content-disposition", "filename").or_else(|| param("content-type", "name"))
    });
    continued.or_else(|| part.attachment_name().map(str::to_string))
}

/// The line ending a piece of text uses: CRLF if it has any, else LF if it has any, else `fallback`.
pub fn line_ending<'a>(bytes: &[u8], fallback: &'a [u8]) -> &'a [u8] {
    match memchr::memchr(b'\n', bytes) {
        Some(i) if i > 0 && bytes[i - 1] == b'\r' => b"\r\n",
        Some(_) => b"\n",
        None => fallback,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_message_mail_parser_panics_on_is_unreadable_not_a_crash() {
        let m = include_bytes!("../../fixtures/fuzz/mime_rewrite/mdn-inside-rfc822.eml");
        assert!(super::read_with_mail_parser(m).is_none());
        let ok = b"Subject: hi\r\n\r\nbody\r\n";
        assert!(super::read_with_mail_parser(ok).is_some());
    }

    #[test]
    fn an_attachment_name_split_inside_a_character_is_shown_whole() {
        let m = b"From: a@school.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
            hi\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment;\r\n \
            filename*0*=UTF-8''Si%C3;\r\n filename*1*=%A2n%20Evans.pdf\r\n\r\n%PDF-1.4\r\n--b\r\n\
            Content-Type: text/csv; name=\"plain.csv\"\r\n\r\na,b\r\n--b--\r\n";
        let parsed = super::read_with_mail_parser(m).unwrap();
        let names: Vec<String> = parsed
            .attachments()
            .filter_map(|p| super::attachment_name(m, p))
            .collect();
        assert_eq!(names, ["Siân Evans.pdf", "plain.csv"]);
    }
}
