//! Text from mail, made safe for a terminal, a pasted case or a line of mail we write.
//!
//! A Subject, an address, a file name or a header is written by whoever sent the message: an
//! ESC in it (`ESC]0;…` sets the window title, `ESC[2J` clears the screen) or a C1 control
//! would be obeyed by the network manager's terminal. Every CLI output that carries text from
//! mail goes through here: [`text`] for one field on a line, [`lines`] for a block of lines
//! (the headers of a held message), [`json`] for JSON printed to standard output, and
//! [`TerminalWriter`] for data streamed to a terminal. New commands that print mail (a flags
//! list, a report) call these too.
//!
//! The same [`is_unsafe`] decides what `alerts::one_line` blanks out in mail schoolgate
//! writes, and what a DSL's case block escapes.
//!
//! What is escaped ([`is_unsafe`]): every control character (C0, DEL, C1), the Unicode line and
//! paragraph separators, and the bidirectional overrides and isolates, which can make `invoice\u{202e}fdp.exe` read
//! as `invoiceexe.pdf`. They are shown as `\u{1b}` (as Rust writes them), and in JSON as
//! `\u001b`, so that JSON stays valid.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};

/// Characters a terminal would act on, or that reorder what is shown.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// One field for one line of output: every unsafe character (line breaks and tabs included)
/// escaped as `\u{XX}`, or `\r`, `\n`, `\t`.
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, |_| false)
}

/// A block of lines (the headers of a message): line breaks (CR LF or LF) become the
/// terminal's own, tabs (folded headers) stay; every other unsafe character is escaped.
pub fn lines(s: &str) -> String {
    s.split('\n')
        .map(|line| escape(line.strip_suffix('\r').unwrap_or(line), |c| c == '\t'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// JSON text for standard output: serde_json escapes C0 controls itself but writes DEL, C1
/// controls and the bidirectional overrides raw; these become `\uXXXX` escapes. They can only
/// stand inside JSON strings, so the result is the same JSON value.
pub fn json(s: &str) -> Cow<'_, str> {
    // Line breaks and tabs stand only between values (serde_json escapes them in strings).
    let unsafe_here = |c: char| is_unsafe(c) && !matches!(c, '\n' | '\r' | '\t');
    if !s.chars().any(unsafe_here) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if unsafe_here(c) {
            push_json_escape(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn push_json_escape(out: &mut String, c: char) {
    // Every unsafe character is in the Basic Multilingual Plane: one \uXXXX each.
    let _ = write!(out, "\\u{:04x}", u32::from(c));
}

fn escape(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            c if keep(c) || !is_unsafe(c) => out.push(c),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

/// A writer for data (CSV, JSON) streamed to a terminal: line breaks and tabs pass, every
/// other unsafe character becomes a JSON-style `\uXXXX` escape (valid inside JSON strings, and
/// plain to read in CSV). Text split across writes is handled; bytes that are not UTF-8 pass
/// unchanged unless they are C0 controls.
pub struct TerminalWriter<W: Write> {
    inner: W,
    /// The start of a UTF-8 character the last write ended inside.
    pending: Vec<u8>,
}

impl<W: Write> TerminalWriter<W> {
    pub fn new(inner: W) -> Self {
        TerminalWriter {
            inner,
            pending: Vec::new(),
        }
    }

    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(bytes.len());
        let mut rest = bytes;
        while !rest.is_empty() {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    push_terminal_safe(&mut out, s);
                    rest = &[];
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // Checked above: `good` is valid UTF-8.
                    push_terminal_safe(&mut out, std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.extend_from_slice(&bad[..n]);
                            rest = &bad[n..];
                        }
                        None => {
                            // An incomplete character at the end: wait for the rest of it.
                            self.pending = bad.to_vec();
                            rest = &[];
                        }
                    }
                }
            }
        }
        self.inner.write_all(&out)
    }
}

fn push_terminal_safe(out: &mut Vec<u8>, s: &str) {
    for c in s.chars() {
        if is_unsafe(c) && !matches!(c, '\n' | '\r' | '\t') {
            let mut e = String::new();
            push_json_escape(&mut e, c);
            out.extend_from_slice(e.as_bytes());
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
}

impl<W: Write> Write for TerminalWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pending.is_empty() {
            self.emit(buf)?;
        } else {
            let mut joined = std::mem::take(&mut self.pending);
            joined.extend_from_slice(buf);
            self.emit(&joined)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            self.inner.write_all(&pending)?;
        }
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "Hi\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m there\u{202e}fdp.exe";

    fn has_raw_unsafe(s: &str) -> bool {
        s.chars().any(|c| is_unsafe(c) && !matches!(c, '\n' | '\t'))
    }

    #[test]
    fn a_field_keeps_plain_text_and_escapes_every_control() {
        assert!(matches!(text("Homework, week 3 — année"), Cow::Borrowed(_)));
        let shown = text(HOSTILE);
        assert_eq!(
            shown,
            "Hi\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{9b}31m there\\u{202e}fdp.exe"
        );
        assert_eq!(text("a\r\nBcc: x\tz"), "a\\r\\nBcc: x\\tz");
        for c in (0u32..0x20).chain(0x7f..0xa0) {
            let c = char::from_u32(c).unwrap();
            assert!(!text(&format!("x{c}y")).contains(c), "{c:?} escaped");
        }
    }

    #[test]
    fn a_header_block_keeps_its_lines_and_folds() {
        let block = "Subject: a\u{1b}[2Jb\r\n\tfolded\r\nFrom: x\r";
        assert_eq!(lines(block), "Subject: a\\u{1b}[2Jb\n\tfolded\nFrom: x");
    }

    #[test]
    fn json_stays_the_same_value_without_raw_controls() {
        let v = serde_json::json!({ "subject": HOSTILE, "to": ["a\r\n\tb"] });
        for printed in [v.to_string(), serde_json::to_string_pretty(&v).unwrap()] {
            let safe = json(&printed);
            assert!(!has_raw_unsafe(&safe), "{safe:?}");
            let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
            assert_eq!(back, v);
        }
        assert!(matches!(json("[\n  1\n]"), Cow::Borrowed(_)));
    }

    #[test]
    fn the_terminal_writer_escapes_across_writes() {
        let data = format!("seq,subject\r\n1,\"{HOSTILE}\"\r\n");
        let bytes = data.as_bytes();
        // Every split point, including inside the two-byte C1 and three-byte override.
        for cut in 0..bytes.len() {
            let mut w = TerminalWriter::new(Vec::new());
            w.write_all(&bytes[..cut]).unwrap();
            w.write_all(&bytes[cut..]).unwrap();
            w.flush().unwrap();
            let out = String::from_utf8(w.inner).unwrap();
            assert!(
                !has_raw_unsafe(&out.replace('\r', "")),
                "cut {cut}: {out:?}"
            );
            assert!(out.contains("\\u001b]0;pwned\\u0007\\u001b[2J\\u009b31m there\\u202efdp.exe"));
            assert!(out.starts_with("seq,subject\r\n1,"));
        }
    }
}
