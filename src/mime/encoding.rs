//! Content-Transfer-Encodings (RFC 2045 §6): quoted-printable and base64, decoded and written
//! back the way a part came (line width, line ending).

/// Decodes quoted-printable. Lenient, as readers are: a malformed `=` escape is kept as it is.
pub fn qp_decode(encoded: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        let b = encoded[i];
        if b == b'=' {
            if let Some(next) = after_soft_break(encoded, i) {
                i = next;
                continue;
            }
            if i + 2 < encoded.len()
                && let (Some(h), Some(l)) = (hex(encoded[i + 1]), hex(encoded[i + 2]))
            {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
            out.push(b);
            i += 1;
            continue;
        }
        out.push(b);
        i += 1;
    }
    out
}

/// When `encoded[eq]` (an `=`) starts a soft line break — `=`, optional white space, then the
/// line ending or the end of the text — where the next line starts.
fn after_soft_break(encoded: &[u8], eq: usize) -> Option<usize> {
    let mut j = eq + 1;
    while j < encoded.len() && (encoded[j] == b' ' || encoded[j] == b'\t') {
        j += 1;
    }
    match encoded.get(j..) {
        Some([]) => Some(j),
        Some([b'\n', ..]) => Some(j + 1),
        Some([b'\r', b'\n', ..]) => Some(j + 2),
        _ => None,
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// The offset in quoted-printable `encoded` where decoded byte `pos` comes from (as
/// [`qp_decode`] reads it); `encoded.len()` when `pos` is at or past the end.
pub fn qp_encoded_offset(encoded: &[u8], pos: usize) -> usize {
    let mut decoded = 0;
    let mut i = 0;
    while i < encoded.len() {
        if encoded[i] == b'='
            && let Some(next) = after_soft_break(encoded, i)
        {
            i = next;
            continue;
        }
        if decoded == pos {
            return i;
        }
        if encoded[i] == b'='
            && i + 2 < encoded.len()
            && hex(encoded[i + 1]).is_some()
            && hex(encoded[i + 2]).is_some()
        {
            i += 3;
        } else {
            i += 1;
        }
        decoded += 1;
    }
    encoded.len()
}

/// Encodes `decoded` as quoted-printable lines of at most 76 characters, with `eol` as the
/// hard line ending. Line breaks in `decoded` (LF or CRLF) become hard line breaks.
pub fn qp_encode(decoded: &[u8], eol: &[u8]) -> Vec<u8> {
    qp_encode_lines(decoded, eol, true)
}

/// Encodes `data` as quoted-printable with every byte kept as a byte (CR and LF too, as `=0D`
/// `=0A`): for text whose line breaks are not single bytes, such as UTF-16.
pub fn qp_encode_binary(data: &[u8], eol: &[u8]) -> Vec<u8> {
    qp_encode_lines(data, eol, false)
}

fn qp_encode_lines(decoded: &[u8], eol: &[u8], text: bool) -> Vec<u8> {
    if !text {
        let mut out = Vec::with_capacity(decoded.len() * 3);
        let mut col = 0;
        for &b in decoded {
            let literal = (33..=126).contains(&b) && b != b'=';
            push_qp(&mut out, &mut col, b, literal, eol);
        }
        return out;
    }
    let mut out = Vec::with_capacity(decoded.len() + decoded.len() / 8 + 16);
    let mut lines = decoded.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let last = lines.peek().is_none();
        let line = if !last {
            line.strip_suffix(b"\r").unwrap_or(line)
        } else {
            line
        };
        let mut col = 0;
        for (k, &b) in line.iter().enumerate() {
            let at_end = k + 1 == line.len();
            let literal = (b == b' ' || b == b'\t') && !at_end
                || (33..=126).contains(&b) && b != b'='
                    // A line starting with "." or "From " survives any transport.
                    && !(col == 0 && (b == b'.' || b == b'F'));
            push_qp(&mut out, &mut col, b, literal, eol);
        }
        if !last {
            out.extend_from_slice(eol);
        }
    }
    out
}

/// Writes one byte (as itself, or as `=XX`), with a soft line break first when the line would
/// pass 76 characters.
fn push_qp(out: &mut Vec<u8>, col: &mut usize, b: u8, literal: bool, eol: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let width = if literal { 1 } else { 3 };
    if *col + width > 75 {
        out.push(b'=');
        out.extend_from_slice(eol);
        *col = 0;
    }
    if literal {
        out.push(b);
    } else {
        out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
    }
    *col += width;
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Decodes base64 strictly: only the alphabet, white space, and correct `=` padding. A part that
/// is not really base64 must not be rewritten as if it were.
pub fn base64_decode(encoded: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(encoded.len() / 4 * 3);
    let mut quad = [0u8; 4];
    let mut n = 0;
    let mut padding = 0;
    for &b in encoded {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                quad[n] = 0;
                n += 1;
                if n == 4 {
                    push_quad(&mut out, quad, padding)?;
                    n = 0;
                }
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            other => return Err(format!("byte 0x{other:02x} is not base64")),
        };
        if padding > 0 {
            return Err("data after base64 padding".into());
        }
        quad[n] = v;
        n += 1;
        if n == 4 {
            push_quad(&mut out, quad, 0)?;
            n = 0;
        }
    }
    if n != 0 {
        return Err("base64 ends in the middle of a group".into());
    }
    Ok(out)
}

fn push_quad(out: &mut Vec<u8>, q: [u8; 4], padding: usize) -> Result<(), String> {
    let v = (q[0] as u32) << 18 | (q[1] as u32) << 12 | (q[2] as u32) << 6 | q[3] as u32;
    let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
    match padding {
        0 => out.extend_from_slice(&bytes),
        1 => out.extend_from_slice(&bytes[..2]),
        2 => out.push(bytes[0]),
        _ => return Err("too much base64 padding".into()),
    }
    Ok(())
}

/// Encodes base64 in lines of `width` characters (a multiple of 4; 76 if 0) ending in `eol`;
/// the last line ends in `eol` only if `final_eol`.
pub fn base64_encode(data: &[u8], width: usize, eol: &[u8], final_eol: bool) -> Vec<u8> {
    let width = if width == 0 || !width.is_multiple_of(4) || width > 996 {
        76
    } else {
        width
    };
    let chars = data.len().div_ceil(3) * 4;
    let mut out = Vec::with_capacity(chars + (chars / width + 1) * eol.len());
    let mut col = 0;
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let v = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        let enc = [
            B64[(v >> 18) as usize & 63],
            B64[(v >> 12) as usize & 63],
            if chunk.len() > 1 {
                B64[(v >> 6) as usize & 63]
            } else {
                b'='
            },
            if chunk.len() > 2 {
                B64[v as usize & 63]
            } else {
                b'='
            },
        ];
        if col == width {
            out.extend_from_slice(eol);
            col = 0;
        }
        out.extend_from_slice(&enc);
        col += 4;
    }
    if final_eol && !out.is_empty() {
        out.extend_from_slice(eol);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qp_round_trip() {
        let text = "Caf\u{e9} = 10\u{20ac}; a line that is long enough to need a soft line break somewhere in it, surely\r\nsecond \r\n.dot\r\nFrom me\r\n".as_bytes();
        let enc = qp_encode(text, b"\r\n");
        assert!(
            enc.split(|&b| b == b'\n').all(|l| l.len() <= 77),
            "{}",
            String::from_utf8_lossy(&enc)
        );
        assert_eq!(qp_decode(&enc), text);
    }

    #[test]
    fn binary_qp_keeps_every_byte() {
        let data = b"H\0i\0\r\0\n\0= .";
        let enc = qp_encode_binary(data, b"\r\n");
        assert_eq!(qp_decode(&enc), data);
    }

    #[test]
    fn qp_soft_breaks_are_not_lines() {
        let enc = b"one=\r\ntwo\r\nthree=20\r\nfour";
        let dec = qp_decode(enc);
        assert_eq!(dec, b"onetwo\r\nthree \r\nfour");
        for pos in 0..=dec.len() {
            let e = qp_encoded_offset(enc, pos);
            assert_eq!(qp_decode(&enc[e..]), dec[pos..], "at {pos}");
        }
    }

    #[test]
    fn base64_round_trip_at_the_original_width() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let enc = base64_encode(&data, 72, b"\n", true);
        assert!(enc.split(|&b| b == b'\n').all(|l| l.len() <= 72));
        assert_eq!(base64_decode(&enc).unwrap(), data);
        assert_eq!(base64_decode(b"aGk=\r\n").unwrap(), b"hi");
        assert!(base64_decode(b"this is plain text!").is_err());
        assert!(base64_decode(b"aGk=aGk=").is_err());
    }
}
