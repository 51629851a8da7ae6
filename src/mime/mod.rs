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
}
