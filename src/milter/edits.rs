//! The milter's edits: from the message as the mail server gave it and the message as it must
//! leave, the header changes and the new body that turn one into the other.
//!
//! The milter protocol cannot hand back a whole message: a milter replaces the body and adds,
//! inserts, changes or deletes header fields one at a time. The disclaimer changes the body
//! and, when it converts or wraps the top-level entity, some top-level fields
//! (`Content-Type`, `Content-Transfer-Encoding`, `MIME-Version`). Rather than knowing which, the
//! edits are computed from the two messages: the fields are aligned (longest common
//! subsequence), a field replaced by one of the same name in the same place is a change, and
//! every other difference a deletion or an insertion at its exact position, so the mail server
//! ends up with the same bytes the relay would have sent.

use std::ops::Range;

use crate::mime::header;

/// Header fields beyond which the alignment is not worth its quadratic cost: the fields that
/// differ are then all deleted and inserted anew (still exact, only more edits).
const MAX_ALIGN: usize = 2_000_000;

/// One change to the header, in the order the mail server must apply them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// The `index`-th (from 1) field called `name` gets `value`; `None` deletes it.
    Change {
        name: String,
        index: usize,
        value: Option<Vec<u8>>,
    },
    /// A new field before the `position`-th (from 0) field of the header as the milter sees
    /// it; `append` when that is the end of the header (the disclaimer's new fields always are),
    /// which the protocol says without counting fields the milter cannot see.
    Insert {
        position: usize,
        append: bool,
        name: String,
        value: Vec<u8>,
    },
}

/// What the mail server must do to its copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edits {
    pub headers: Vec<HeaderEdit>,
    /// Where the new body is in the outgoing message (CRLF line endings, as the protocol
    /// carries it), when it changed: not copied out, as it may be most of 50 MiB.
    pub body: Option<Range<usize>>,
}

impl Edits {
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.body.is_none()
    }

    /// For a mail server that writes `name: value` itself (no leading-space option): one
    /// space after the colon is its to add.
    pub fn without_leading_space(mut self) -> Edits {
        for e in &mut self.headers {
            let value = match e {
                HeaderEdit::Change { value: Some(v), .. } => v,
                HeaderEdit::Insert { value, .. } => value,
                HeaderEdit::Change { value: None, .. } => continue,
            };
            if value.first() == Some(&b' ') {
                value.remove(0);
            }
        }
        self
    }
}

/// A field as the milter protocol carries it: its name, and its value exactly as written after
/// the colon (leading white space and folds kept; folds as bare LF, the protocol's form).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    name: String,
    value: Vec<u8>,
}

fn fields(raw: &[u8]) -> (Vec<Field>, Range<usize>) {
    let h = header::parse(raw, 0, raw.len());
    let fields = h
        .fields
        .iter()
        .map(|f| Field {
            name: f.name.clone(),
            value: wire_value(&raw[f.value.clone()]),
        })
        .collect();
    (fields, h.body_start..raw.len())
}

/// CRLF inside a folded value becomes LF (a CR left in would reach the queue file as data).
fn wire_value(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'\r' && v.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

/// The edits that turn `original` into `outgoing`.
pub fn between(original: &[u8], outgoing: &[u8]) -> Edits {
    let (old, old_body) = fields(original);
    let (new, new_body) = fields(outgoing);
    let body = (original[old_body] != outgoing[new_body.clone()]).then_some(new_body);
    Edits {
        headers: header_edits(&old, &new),
        body,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// The original field with the first index matches the new one with the second.
    Both(usize, usize),
    /// The original field with this index goes.
    Delete(usize),
    /// The new field with this index comes.
    Insert(usize),
}

fn header_edits(old: &[Field], new: &[Field]) -> Vec<HeaderEdit> {
    let ops = diff(old.len(), new.len(), MAX_ALIGN, |i, j| old[i] == new[j]);
    // The header as the mail server holds it while the edits are applied: the names, in order.
    let mut current: Vec<String> = old.iter().map(|f| f.name.clone()).collect();
    let mut pos = 0;
    let mut edits = Vec::new();
    let mut i = 0;
    while i < ops.len() {
        if let Op::Both(..) = ops[i] {
            pos += 1;
            i += 1;
            continue;
        }
        // A run of differences between two unchanged fields: a field that gave way to one of
        // the same name is changed where it stands, the rest deleted or inserted in place.
        let end = ops[i..]
            .iter()
            .position(|o| matches!(o, Op::Both(..)))
            .map_or(ops.len(), |n| i + n);
        let deleted: Vec<usize> = ops[i..end]
            .iter()
            .filter_map(|o| match o {
                Op::Delete(d) => Some(*d),
                _ => None,
            })
            .collect();
        let inserted: Vec<usize> = ops[i..end]
            .iter()
            .filter_map(|o| match o {
                Op::Insert(n) => Some(*n),
                _ => None,
            })
            .collect();
        let by_name = diff(deleted.len(), inserted.len(), MAX_ALIGN, |d, n| {
            old[deleted[d]]
                .name
                .eq_ignore_ascii_case(&new[inserted[n]].name)
        });
        for op in by_name {
            match op {
                Op::Both(_, n) => {
                    edits.push(HeaderEdit::Change {
                        name: current[pos].clone(),
                        index: occurrence(&current, pos),
                        value: Some(new[inserted[n]].value.clone()),
                    });
                    pos += 1;
                }
                Op::Delete(_) => {
                    edits.push(HeaderEdit::Change {
                        name: current[pos].clone(),
                        index: occurrence(&current, pos),
                        value: None,
                    });
                    current.remove(pos);
                }
                Op::Insert(n) => {
                    let f = &new[inserted[n]];
                    edits.push(HeaderEdit::Insert {
                        position: pos,
                        append: pos == current.len(),
                        name: f.name.clone(),
                        value: f.value.clone(),
                    });
                    current.insert(pos, f.name.clone());
                    pos += 1;
                }
            }
        }
        i = end;
    }
    edits
}

/// Which occurrence (from 1) of its name the field at `pos` is.
fn occurrence(current: &[String], pos: usize) -> usize {
    let name = &current[pos];
    1 + current[..pos]
        .iter()
        .filter(|n| n.eq_ignore_ascii_case(name))
        .count()
}

/// The steps from a sequence of `n` items to one of `m` (`same(i, j)`: item `i` of the first
/// is item `j` of the second), in order: a longest common subsequence, deletions before
/// insertions within a run. Past `max_cost` comparisons the differing middle is simply all
/// deleted and all inserted.
fn diff(n: usize, m: usize, max_cost: usize, same: impl Fn(usize, usize) -> bool) -> Vec<Op> {
    let prefix = (0..n.min(m)).take_while(|&k| same(k, k)).count();
    let suffix = (0..(n - prefix).min(m - prefix))
        .take_while(|&k| same(n - 1 - k, m - 1 - k))
        .count();
    let (a, b) = (n - prefix - suffix, m - prefix - suffix);
    let mut ops: Vec<Op> = (0..prefix).map(|k| Op::Both(k, k)).collect();
    if a.saturating_mul(b) > max_cost {
        ops.extend((0..a).map(|i| Op::Delete(prefix + i)));
        ops.extend((0..b).map(|j| Op::Insert(prefix + j)));
    } else {
        // lcs[i * w + j]: the longest common subsequence of the middles from i and j on.
        let w = b + 1;
        let mut lcs = vec![0u32; (a + 1) * w];
        for i in (0..a).rev() {
            for j in (0..b).rev() {
                lcs[i * w + j] = if same(prefix + i, prefix + j) {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < a || j < b {
            if i < a && j < b && same(prefix + i, prefix + j) {
                ops.push(Op::Both(prefix + i, prefix + j));
                i += 1;
                j += 1;
            } else if i < a && (j == b || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
                ops.push(Op::Delete(prefix + i));
                i += 1;
            } else {
                ops.push(Op::Insert(prefix + j));
                j += 1;
            }
        }
    }
    ops.extend((0..suffix).map(|k| Op::Both(n - suffix + k, m - suffix + k)));
    ops
}

/// `original` with `edits` (made against `outgoing`) applied as a mail server applies them.
#[cfg(test)]
fn apply(original: &[u8], outgoing: &[u8], edits: &Edits) -> Vec<u8> {
    let (mut current, body) = fields(original);
    for e in &edits.headers {
        match e {
            HeaderEdit::Change { name, index, value } => {
                let at = current
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.name.eq_ignore_ascii_case(name))
                    .nth(index - 1)
                    .map(|(i, _)| i);
                match (at, value) {
                    (Some(i), Some(v)) => current[i].value = v.clone(),
                    (Some(i), None) => {
                        current.remove(i);
                    }
                    (None, Some(v)) => current.push(Field {
                        name: name.clone(),
                        value: v.clone(),
                    }),
                    (None, None) => {}
                }
            }
            HeaderEdit::Insert {
                position,
                name,
                value,
                ..
            } => current.insert(
                (*position).min(current.len()),
                Field {
                    name: name.clone(),
                    value: value.clone(),
                },
            ),
        }
    }
    let mut out = Vec::with_capacity(original.len());
    for f in &current {
        out.extend_from_slice(f.name.as_bytes());
        out.push(b':');
        for (k, &b) in f.value.iter().enumerate() {
            if b == b'\n' && (k == 0 || f.value[k - 1] != b'\r') {
                out.push(b'\r');
            }
            out.push(b);
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    match &edits.body {
        Some(b) => out.extend_from_slice(&outgoing[b.clone()]),
        None => out.extend_from_slice(&original[body]),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OnSigned;
    use crate::policy::disclaimer::add_disclaimer;

    const TEXT: &str = "The views expressed are not necessarily those of Example Academy.";
    const HTML: &str = "<p>The views expressed are not necessarily those of Example Academy.</p>";

    fn roundtrip(original: &[u8], outgoing: &[u8]) -> Edits {
        let e = between(original, outgoing);
        assert_eq!(
            String::from_utf8_lossy(&apply(original, outgoing, &e)),
            String::from_utf8_lossy(outgoing),
            "edits {e:?}"
        );
        e
    }

    #[test]
    fn an_appended_disclaimer_is_a_new_body_only() {
        let m = b"From: a@x\r\nTo: b@y\r\nSubject: s\r\n\r\nHello\r\n";
        let out = add_disclaimer(m, TEXT, HTML, OnSigned::Skip)
            .message
            .unwrap();
        let e = roundtrip(m, &out);
        assert!(e.headers.is_empty(), "{e:?}");
        assert!(e.body.is_some());
    }

    #[test]
    fn a_converted_part_changes_its_fields_in_place() {
        let m = "From: a@x\r\nContent-Type: text/plain; charset=iso-8859-1\r\nSubject: caf\u{e9}\r\nContent-Transfer-Encoding: 8bit\r\nDate: d\r\n\r\nCaf\u{e9} \u{2014} \u{1f600}\r\n";
        let out = add_disclaimer(m.as_bytes(), "Vues \u{2014} \u{e9}cole", "", OnSigned::Skip);
        let out = out.message.unwrap();
        let e = roundtrip(m.as_bytes(), &out);
        assert!(
            e.headers
                .iter()
                .all(|h| matches!(h, HeaderEdit::Change { value: Some(_), .. })),
            "{e:?}"
        );
    }

    #[test]
    fn a_wrapped_message_loses_its_content_fields_and_gains_new_ones() {
        let m = b"From: a@x\r\nContent-Type: multipart/signed; boundary=\"b\"; protocol=\"application/pgp-signature\"\r\nSubject: s\r\nDate: d\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsigned\r\n--b\r\nContent-Type: application/pgp-signature\r\n\r\nsig\r\n--b--\r\n";
        let out = add_disclaimer(m, TEXT, HTML, OnSigned::Wrap)
            .message
            .unwrap();
        let e = roundtrip(m, &out);
        assert!(e.headers.iter().any(|h| matches!(
            h,
            HeaderEdit::Change {
                value: None,
                index: 1,
                ..
            }
        )));
        assert!(
            e.headers
                .iter()
                .any(|h| matches!(h, HeaderEdit::Insert { name, .. } if name == "MIME-Version"))
        );
    }

    #[test]
    fn folds_are_sent_as_lf_and_repeated_names_are_counted() {
        let m = b"Received: a\r\nX-A: 1\r\nx-a: 2\r\nX-A: 3\r\n\tfolded\r\n\r\nbody\r\n";
        let out =
            b"Received: a\r\nX-A: 1\r\nx-a: 2\r\nX-A: three\r\n\tfolded\r\nNew:  v\r\n\r\nbody\r\n";
        let e = roundtrip(m, out);
        assert_eq!(
            e.headers,
            vec![
                HeaderEdit::Change {
                    name: "X-A".into(),
                    index: 3,
                    value: Some(b" three\n\tfolded".to_vec())
                },
                HeaderEdit::Insert {
                    position: 4,
                    append: true,
                    name: "New".into(),
                    value: b"  v".to_vec()
                }
            ]
        );
        assert!(e.body.is_none());
    }

    #[test]
    fn unchanged_is_no_edit() {
        let m = b"From: a@x\r\n\r\nbody\r\n";
        assert!(between(m, m).is_empty());
    }

    #[test]
    fn many_differing_fields_still_come_out_exact() {
        let mut m = String::new();
        let mut out = String::new();
        for i in 0..1500 {
            m.push_str(&format!("X-{i}: a\r\n"));
            out.push_str(&format!("X-{}: b\r\n", 1499 - i));
        }
        m.push_str("\r\nbody\r\n");
        out.push_str("\r\nbody\r\n");
        roundtrip(m.as_bytes(), out.as_bytes());
    }
}
