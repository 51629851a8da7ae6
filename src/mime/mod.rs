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

/// The line ending a piece of text uses: CRLF if it has any, else LF if it has any, else `fallback`.
pub fn line_ending<'a>(bytes: &[u8], fallback: &'a [u8]) -> &'a [u8] {
    match memchr::memchr(b'\n', bytes) {
        Some(i) if i > 0 && bytes[i - 1] == b'\r' => b"\r\n",
        Some(_) => b"\n",
        None => fallback,
    }
}
