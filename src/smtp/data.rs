//! Reading the message after `DATA`: find the end (`CRLF . CRLF`), undo dot-stuffing, and hold
//! the client to the size, line and header limits — without ever buffering more than the limit.
//!
//! This is our own reader rather than smtp-proto's `DataReceiver`, which does not treat the first
//! line after DATA as the start of a line (a bare `.` there would never end the message).
//!
//! Only `CRLF . CRLF` ends the message. A line ending in a bare LF is stored with CRLF, as Postfix
//! does: the bytes we pass on can then never be read differently by the next hop (the "SMTP
//! smuggling" family of attacks lives in such differences).

/// What went wrong with a message that was read to its end but must not be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataProblem {
    /// More than `max_message_size` octets.
    TooBig { limit: u64 },
    /// A line longer than `max_line_length`.
    LineTooLong { limit: u64 },
    /// A header section larger than `max_header_size`.
    HeaderTooBig { limit: u64 },
    /// A NUL octet, which SMTP text may not hold (RFC 5321 §4.1.1.4): readers differ on what
    /// follows one (C strings end there), so the message is refused rather than passed on.
    Nul,
}

impl DataProblem {
    /// The reply the client gets.
    pub fn reply(&self) -> String {
        match self {
            DataProblem::TooBig { limit } => format!(
                "552 5.3.4 Message size exceeds fixed maximum message size of {limit} octets"
            ),
            DataProblem::LineTooLong { limit } => {
                format!("552 5.3.4 Message has a line longer than {limit} octets; not accepted")
            }
            DataProblem::HeaderTooBig { limit } => format!(
                "552 5.3.4 Message header section is larger than {limit} octets; not accepted"
            ),
            DataProblem::Nul => {
                "554 5.6.0 Message contains a NUL octet (RFC 5321 4.1.1.4); not accepted".into()
            }
        }
    }

    /// The same, in words for the audit trail.
    pub fn detail(&self) -> String {
        match self {
            DataProblem::TooBig { limit } => format!("message larger than {limit} octets"),
            DataProblem::LineTooLong { limit } => format!("a line longer than {limit} octets"),
            DataProblem::HeaderTooBig { limit } => {
                format!("header section larger than {limit} octets")
            }
            DataProblem::Nul => "a NUL octet in the message".into(),
        }
    }
}

/// The limits a message is read under.
#[derive(Debug, Clone, Copy)]
pub struct DataLimits {
    pub max_message_size: u64,
    pub max_line_length: u64,
    pub max_header_size: u64,
}

/// Reads one message, fed the bytes as they arrive.
pub struct DataReader {
    limits: DataLimits,
    /// The current line so far (without its line ending), when it is still within the limit.
    line: Vec<u8>,
    /// Length of the current line, counted even when it is not kept.
    line_len: u64,
    /// The previous byte was a CR that may belong to a CRLF.
    pending_cr: bool,
    in_header: bool,
    header_size: u64,
    /// Octets of message content (unstuffed, with line endings) so far.
    size: u64,
    problem: Option<DataProblem>,
    /// Lines that ended in a bare LF (stored with CRLF).
    bare_lf: u64,
    /// The previous line ended in CRLF (true at the start: DATA's own CRLF). A `.` line ends the
    /// message only then: `<LF>.<CRLF>` must not (SMTP smuggling).
    after_crlf: bool,
}

impl DataReader {
    pub fn new(limits: DataLimits) -> Self {
        DataReader {
            limits,
            line: Vec::with_capacity(1024),
            line_len: 0,
            pending_cr: false,
            in_header: true,
            header_size: 0,
            size: 0,
            problem: None,
            bare_lf: 0,
            after_crlf: true,
        }
    }

    /// Takes bytes from the front of `input`, appending the message to `out`. Returns how many
    /// bytes were consumed and whether the end of the message (`CRLF . CRLF`) was among them;
    /// bytes after the end (pipelined commands) are left unconsumed.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            // Take everything up to the next LF in one go.
            let rest = &input[i..];
            let Some(lf) = memchr::memchr(b'\n', rest) else {
                self.extend_line(rest);
                return (input.len(), false);
            };
            i += lf + 1;
            if self.line_len == 0 {
                // The whole line is in `input` (the usual case): no need to collect it first.
                let raw = &rest[..lf];
                let (line, crlf) = match raw.strip_suffix(b"\r") {
                    Some(line) => (line, true),
                    None => (raw, false),
                };
                if crlf && line == b"." && self.after_crlf {
                    return (i, true);
                }
                // +1: the CR of a CRLF, as in `extend_line`.
                if raw.len() as u64 > self.limits.max_line_length + 1 {
                    self.too_long();
                }
                self.end_line(line, line.len() as u64, crlf, out);
                continue;
            }
            self.extend_line(&rest[..lf]);
            // `self.line` ends with CR when the line ended in CRLF.
            let crlf = self.pending_cr;
            if crlf {
                self.line_len -= 1;
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
            }
            if crlf && self.line_len == 1 && self.line.as_slice() == b"." && self.after_crlf {
                return (i, true);
            }
            let line = std::mem::take(&mut self.line);
            self.end_line(&line, self.line_len, crlf, out);
            self.line = line;
            self.line.clear();
        }
        (i, false)
    }

    fn extend_line(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.line_len += bytes.len() as u64;
        self.pending_cr = bytes.last() == Some(&b'\r');
        // +1: the CR of a CRLF is still in the line until the LF comes.
        if self.line_len <= self.limits.max_line_length + 1 {
            self.line.extend_from_slice(bytes);
        } else {
            self.too_long();
        }
    }

    fn too_long(&mut self) {
        if self.problem.is_none() {
            self.problem = Some(DataProblem::LineTooLong {
                limit: self.limits.max_line_length,
            });
        }
    }

    /// A complete line goes into the message: `line` as kept, without its line ending (only a
    /// prefix of it when it was too long), `full_len` its real length.
    fn end_line(&mut self, line: &[u8], full_len: u64, crlf: bool, out: &mut Vec<u8>) {
        if !crlf {
            self.bare_lf += 1;
        }
        self.after_crlf = crlf;
        if self.problem.is_none() && memchr::memchr(0, line).is_some() {
            self.problem = Some(DataProblem::Nul);
        }
        // Dot-unstuffing: a leading dot was doubled by the client.
        let content = line.strip_prefix(b".").unwrap_or(line);
        let content_len = full_len - (line.len() - content.len()) as u64;
        let len = content_len + 2;
        if self.in_header {
            self.header_size += len;
            if content_len == 0 {
                self.in_header = false;
            } else if self.header_size > self.limits.max_header_size && self.problem.is_none() {
                self.problem = Some(DataProblem::HeaderTooBig {
                    limit: self.limits.max_header_size,
                });
            }
        }
        self.size += len;
        if self.size > self.limits.max_message_size && self.problem.is_none() {
            self.problem = Some(DataProblem::TooBig {
                limit: self.limits.max_message_size,
            });
        }
        if self.problem.is_none() {
            out.extend_from_slice(content);
            out.extend_from_slice(b"\r\n");
        }
        self.line_len = 0;
        self.pending_cr = false;
    }

    /// Why the message must be refused, if it must.
    pub fn problem(&self) -> Option<&DataProblem> {
        self.problem.as_ref()
    }

    /// Octets of message content read so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// How many lines ended in a bare LF and were stored with CRLF.
    pub fn bare_lf_lines(&self) -> u64 {
        self.bare_lf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DataLimits = DataLimits {
        max_message_size: 1 << 20,
        max_line_length: 1000,
        max_header_size: 4096,
    };

    fn read_all(chunks: &[&[u8]]) -> (Vec<u8>, bool, usize, DataReader) {
        let mut r = DataReader::new(LIMITS);
        let mut out = Vec::new();
        for c in chunks {
            let (used, done) = r.feed(c, &mut out);
            if done {
                return (out, true, used, r);
            }
            assert_eq!(used, c.len());
        }
        (out, false, 0, r)
    }

    #[test]
    fn a_dot_on_the_first_line_ends_the_message() {
        let (out, done, used, _) = read_all(&[b".\r\nQUIT\r\n"]);
        assert!(done);
        assert_eq!(out, b"");
        assert_eq!(used, 3, "QUIT stays for the command reader");
    }

    #[test]
    fn stuffed_dots_are_removed_on_every_line_including_the_first() {
        let (out, done, _, _) = read_all(&[b"..first\r\nSubject: x\r\n\r\n..\r\n...x\r\n.\r\n"]);
        assert!(done);
        assert_eq!(out, b".first\r\nSubject: x\r\n\r\n.\r\n..x\r\n");
    }

    #[test]
    fn the_end_is_found_across_any_split() {
        let msg = b"Subject: hi\r\n\r\nbody\r\n.\r\n";
        for cut in 0..msg.len() {
            let (a, b) = msg.split_at(cut);
            let mut r = DataReader::new(LIMITS);
            let mut out = Vec::new();
            let (u1, d1) = r.feed(a, &mut out);
            assert!(!d1 && u1 == a.len());
            let (_, d2) = r.feed(b, &mut out);
            assert!(d2, "cut at {cut}");
            assert_eq!(out, b"Subject: hi\r\n\r\nbody\r\n");
        }
    }

    #[test]
    fn bare_lf_lines_are_stored_with_crlf_and_never_end_the_message() {
        let (out, done, _, r) = read_all(&[b"a\nb\r\n.\nc\r\n.\r\n"]);
        assert!(done);
        assert_eq!(
            out, b"a\r\nb\r\n\r\nc\r\n",
            "'.\\n' is a stuffed empty line, not the end"
        );
        assert_eq!(r.bare_lf_lines(), 2);
    }

    #[test]
    fn lf_dot_crlf_is_not_the_end_smuggling() {
        let (out, done, _, _) =
            read_all(&[b"Subject: s\r\n\r\nline1\nfoo\n.\r\nMAIL FROM:<x@y>\r\n.\r\n"]);
        assert!(done);
        assert_eq!(
            out,
            b"Subject: s\r\n\r\nline1\r\nfoo\r\n\r\nMAIL FROM:<x@y>\r\n"
        );
    }

    #[test]
    fn a_bare_cr_inside_a_line_is_kept() {
        let (out, done, _, _) = read_all(&[b"a\rb\r\n.\r\n"]);
        assert!(done);
        assert_eq!(out, b"a\rb\r\n");
    }

    #[test]
    fn an_oversize_message_is_read_to_its_end_and_refused() {
        let limits = DataLimits {
            max_message_size: 100,
            ..LIMITS
        };
        let mut r = DataReader::new(limits);
        let mut out = Vec::new();
        let line = [b'x'; 50];
        for _ in 0..10 {
            r.feed(&line, &mut out);
            r.feed(b"\r\n", &mut out);
        }
        let (_, done) = r.feed(b".\r\n", &mut out);
        assert!(done);
        assert_eq!(r.problem(), Some(&DataProblem::TooBig { limit: 100 }));
        assert!(out.len() <= 100, "no more than the limit is kept");
    }

    #[test]
    fn a_line_over_the_limit_is_refused_without_being_kept() {
        let mut r = DataReader::new(LIMITS);
        let mut out = Vec::new();
        r.feed(&[b'y'; 1000], &mut out);
        r.feed(b"\r\nok\r\n", &mut out);
        assert_eq!(r.problem(), None, "1000 octets is allowed");
        r.feed(&[b'y'; 5000], &mut out);
        let (_, done) = r.feed(b"\r\n.\r\n", &mut out);
        assert!(done);
        assert_eq!(r.problem(), Some(&DataProblem::LineTooLong { limit: 1000 }));
    }

    #[test]
    fn the_result_does_not_depend_on_how_the_input_is_cut() {
        let limits = DataLimits {
            max_message_size: 300,
            max_line_length: 20,
            max_header_size: 60,
        };
        let inputs: [&[u8]; 8] = [
            b"Subject: a\r\n\r\nbody\r\n..dot\r\n.\r\n",
            b"a\nb\r\n.\nc\r\n\r\n.\r\n",
            b"0123456789012345678901\r\nshort\r\n.\r\n",
            b"01234567890123456789\r\n012345678901234567890\n.\r\n",
            b"X: 1\r\nX: 22222222222222\r\nX: 33333333333333\r\nX: 4444444444444\r\n\r\n.\r\n",
            b"\r\r\n\r.\r\n..\r\n.\r\n",
            b"a\r\nb\r\n.\r\nMAIL FROM:<x@y>\r\n",
            &[b'z'; 400],
        ];
        for input in inputs {
            let mut whole = DataReader::new(limits);
            let mut whole_out = Vec::new();
            let whole_result = whole.feed(input, &mut whole_out);
            for cut in [1, 2, 3, 7, 13] {
                let mut r = DataReader::new(limits);
                let mut out = Vec::new();
                let mut used = 0;
                let mut done = false;
                for chunk in input.chunks(cut) {
                    let (u, d) = r.feed(chunk, &mut out);
                    used += u;
                    if d {
                        done = true;
                        break;
                    }
                }
                let what = String::from_utf8_lossy(input);
                assert_eq!((used, done), whole_result, "{what:?} cut {cut}");
                assert_eq!(out, whole_out, "{what:?} cut {cut}");
                assert_eq!(r.problem(), whole.problem(), "{what:?} cut {cut}");
                assert_eq!(r.size(), whole.size(), "{what:?} cut {cut}");
                assert_eq!(
                    r.bare_lf_lines(),
                    whole.bare_lf_lines(),
                    "{what:?} cut {cut}"
                );
            }
        }
    }

    #[test]
    fn a_nul_anywhere_is_refused_however_the_input_is_cut() {
        let msg: &[u8] = b"Subject: a\r\n\r\nbody\0tail\r\nmore\r\n.\r\n";
        for cut in 1..msg.len() {
            let mut r = DataReader::new(LIMITS);
            let mut out = Vec::new();
            let mut done = false;
            for chunk in msg.chunks(cut) {
                if r.feed(chunk, &mut out).1 {
                    done = true;
                }
            }
            assert!(done, "cut {cut}");
            assert_eq!(r.problem(), Some(&DataProblem::Nul), "cut {cut}");
            assert!(
                r.problem()
                    .is_some_and(|p| p.reply().starts_with("554 5.6.0 "))
            );
        }
        let (_, done, _, r) = read_all(&[b"\0Subject: x\r\n\r\n.\r\n"]);
        assert!(done);
        assert_eq!(
            r.problem(),
            Some(&DataProblem::Nul),
            "a NUL in the header too"
        );
        let (_, _, _, clean) = read_all(&[b"Subject: x\r\n\r\nno nul\r\n.\r\n"]);
        assert_eq!(clean.problem(), None);
    }

    #[test]
    fn an_endless_header_section_is_refused() {
        let mut r = DataReader::new(LIMITS);
        let mut out = Vec::new();
        for _ in 0..200 {
            r.feed(
                b"X-Filler: 0123456789012345678901234567890123456789\r\n",
                &mut out,
            );
        }
        r.feed(b"\r\nbody\r\n", &mut out);
        let (_, done) = r.feed(b".\r\n", &mut out);
        assert!(done);
        assert_eq!(
            r.problem(),
            Some(&DataProblem::HeaderTooBig { limit: 4096 })
        );
    }
}
