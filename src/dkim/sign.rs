//! The DKIM-Signature itself (RFC 6376), relaxed/relaxed, written here rather than by mail-auth's
//! `DkimSigner`, whose 0.12 line differs from the RFC and from other verifiers in two places that
//! 10,000 generated messages found (`tests/dkim_volume.rs`): its relaxed body hash keeps
//! white-space-only lines at the end of the body (RFC 6376 §3.4.4 drops them), and it folds the
//! header inside the `bh=` value, which dkimpy does not unfold. mail-auth's key types still make
//! the RSA and Ed25519 signatures.

use mail_auth::common::crypto::SigningKey;
use mail_auth::dkim::Canonicalization;
use sha2::{Digest, Sha256};

use super::key::base64;

/// Signs `message` for `domain`/`selector`, over `headers` (names; `From` counted twice is
/// oversigned); returns the `DKIM-Signature` header line, CRLF-terminated.
pub fn sign<K: SigningKey>(
    key: &K,
    algorithm: &str,
    domain: &str,
    selector: &str,
    headers: &[&str],
    message: &[u8],
    now: u64,
) -> Result<String, String> {
    let parsed = crate::mime::header::parse(message, 0, message.len());
    let fields: Vec<(&[u8], &[u8])> = parsed
        .fields
        .iter()
        .map(|f| {
            let name = &message[f.whole.start..f.value.start.saturating_sub(1).max(f.whole.start)];
            (name, &message[f.value.start..f.whole.end])
        })
        .collect();
    let body = message.get(parsed.body_start..).unwrap_or_default();

    // h=: every instance of each listed header present, each listed one absent once (signed as
    // absent), and From once more than it appears.
    let mut h: Vec<String> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for name in headers {
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            continue;
        }
        seen.push(lower.clone());
        let count = fields
            .iter()
            .filter(|(n, _)| trim(n).eq_ignore_ascii_case(name.as_bytes()))
            .count();
        let listed = headers
            .iter()
            .filter(|n| n.eq_ignore_ascii_case(name))
            .count();
        // Present k times: k entries (plus one for each extra listing: oversigning).
        let times = if count == 0 { 1 } else { count + listed - 1 };
        for _ in 0..times {
            h.push((*name).to_string());
        }
    }
    if fields
        .iter()
        .all(|(n, _)| !h.iter().any(|x| trim(n).eq_ignore_ascii_case(x.as_bytes())))
    {
        return Err("the message has none of the headers DKIM signs".into());
    }

    let bh = base64(&body_hash(body));
    let mut value = format!(
        "v=1; a={algorithm}; c=relaxed/relaxed; d={domain}; s={selector};\r\n\tt={now}; h="
    );
    let mut line = 4 + 10 + 5;
    for (i, name) in h.iter().enumerate() {
        let piece = if i == 0 {
            name.clone()
        } else {
            format!(":{name}")
        };
        if line + piece.len() > 74 {
            value.push_str("\r\n\t");
            line = 1;
        }
        value.push_str(&piece);
        line += piece.len();
    }
    value.push_str(&format!(";\r\n\tbh={bh};\r\n\tb="));

    // The data signed: the signed headers, bottom-up for repeated names, then this header with
    // b= empty, all relaxed (RFC 6376 §3.7).
    let mut data: Vec<u8> = Vec::with_capacity(1024);
    let mut used = vec![false; fields.len()];
    let mut picked: Vec<(&[u8], &[u8])> = Vec::new();
    for name in &h {
        if let Some(i) = (0..fields.len())
            .rev()
            .find(|&i| !used[i] && trim(fields[i].0).eq_ignore_ascii_case(name.as_bytes()))
        {
            used[i] = true;
            picked.push(fields[i]);
        }
    }
    Canonicalization::Relaxed.canonicalize_headers(picked.into_iter(), &mut data);
    Canonicalization::Relaxed.canonicalize_headers(
        std::iter::once((&b"DKIM-Signature"[..], value.as_bytes())),
        &mut data,
    );
    let b = key
        .sign(data.as_slice())
        .map_err(|e| format!("the key could not sign: {e}"))?;
    let b = base64(&b);
    let mut header = format!("DKIM-Signature: {value}");
    for (i, chunk) in b.as_bytes().chunks(72).enumerate() {
        if i > 0 {
            header.push_str("\r\n\t ");
        }
        header.push_str(&String::from_utf8_lossy(chunk));
    }
    header.push_str("\r\n");
    Ok(header)
}

fn trim(name: &[u8]) -> &[u8] {
    let start = name
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(name.len());
    let end = name
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &name[start..end.max(start)]
}

/// SHA-256 of the relaxed body (RFC 6376 §3.4.4): in each line white-space runs become one
/// space and trailing white space goes; empty lines at the end go; each line ends in CRLF.
pub fn body_hash(body: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut pending_empty = 0usize;
    let mut lines = body.split(|b| *b == b'\n').peekable();
    let mut out = Vec::with_capacity(256);
    while let Some(raw) = lines.next() {
        // The text after the last LF is a line only if it is not empty.
        if lines.peek().is_none() && raw.is_empty() {
            break;
        }
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        out.clear();
        let mut space = false;
        for &c in raw {
            if c == b' ' || c == b'\t' {
                space = true;
            } else {
                // A run of white space (at the start of a line too) is one space.
                if space {
                    out.push(b' ');
                }
                space = false;
                out.push(c);
            }
        }
        if out.is_empty() {
            pending_empty += 1;
            continue;
        }
        for _ in 0..pending_empty {
            hasher.update(b"\r\n");
        }
        pending_empty = 0;
        hasher.update(&out);
        hasher.update(b"\r\n");
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn relaxed_body_follows_rfc_6376() {
        // RFC 6376 §3.4.6's example body: " C \r\nD \t E\r\n\r\n\r\n" -> " C\r\nD E\r\n".
        assert_eq!(
            hex(&body_hash(b" C \r\nD \t E\r\n\r\n\r\n")),
            hex(&Sha256::digest(b" C\r\nD E\r\n"))
        );
        // White-space-only lines at the end are empty lines, and go.
        assert_eq!(
            hex(&body_hash(b"hello\r\n   \r\n\t\r\n")),
            hex(&Sha256::digest(b"hello\r\n"))
        );
        // ... but not in the middle.
        assert_eq!(
            hex(&body_hash(b"a\r\n  \r\nb")),
            hex(&Sha256::digest(b"a\r\n\r\nb\r\n"))
        );
        // An empty body hashes as nothing.
        assert_eq!(hex(&body_hash(b"")), hex(&Sha256::digest(b"")));
        assert_eq!(hex(&body_hash(b"\r\n\r\n")), hex(&Sha256::digest(b"")));
    }
}
