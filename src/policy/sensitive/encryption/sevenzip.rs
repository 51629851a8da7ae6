//! 7z archives (7-Zip's 7zFormat.txt). The header lists each folder's coders; 06F10701 (7zAES)
//! among them means the data is encrypted. The header itself is usually compressed (kEncodedHeader)
//! and, with "encrypt file names", encrypted: then its own coders show 7zAES. A byte search for
//! the coder id misses the compressed case, so the header is parsed and, when compressed,
//! decompressed (LZMA or LZMA2, at most [`HEADER_LIMIT`] bytes).

use std::io::{Read, Write};

use super::{Protection, u64_at};

pub(super) const SIGNATURE: &[u8] = b"7z\xBC\xAF\x27\x1C";
const SIGNATURE_HEADER: usize = 32;
const AES: &[u8] = &[0x06, 0xF1, 0x07, 0x01];
const LZMA: &[u8] = &[0x03, 0x01, 0x01];
const LZMA2: &[u8] = &[0x21];
/// The largest decompressed header read: enough for hundreds of thousands of names.
const HEADER_LIMIT: usize = 16 << 20;
/// Coders and folders walked at most: a real archive has a handful.
const MAX_FOLDERS: u64 = 10_000;
const MAX_CODERS: u64 = 64;

const K_END: u8 = 0x00;
const K_HEADER: u8 = 0x01;
const K_ARCHIVE_PROPERTIES: u8 = 0x02;
const K_ADDITIONAL_STREAMS: u8 = 0x03;
const K_MAIN_STREAMS: u8 = 0x04;
const K_PACK_INFO: u8 = 0x06;
const K_UNPACK_INFO: u8 = 0x07;
const K_SIZE: u8 = 0x09;
const K_CRC: u8 = 0x0A;
const K_FOLDER: u8 = 0x0B;
const K_CODERS_UNPACK_SIZE: u8 = 0x0C;
const K_ENCODED_HEADER: u8 = 0x17;

pub(super) fn protection(bytes: &[u8]) -> Protection {
    let (Some(offset), Some(size)) = (u64_at(bytes, 12), u64_at(bytes, 20)) else {
        return Protection::Clear;
    };
    let header = usize::try_from(offset)
        .ok()
        .and_then(|o| o.checked_add(SIGNATURE_HEADER))
        .and_then(|start| Some((start, start.checked_add(usize::try_from(size).ok()?)?)))
        .and_then(|(start, end)| bytes.get(start..end));
    let Some(header) = header else {
        return Protection::Clear;
    };
    match header_protection(bytes, header, 0) {
        Some(p) => p,
        // An unreadable header: the extractor reports an archive it cannot open.
        None => Protection::Clear,
    }
}

/// What a header (plain or encoded) says. `None`: it cannot be read.
fn header_protection(bytes: &[u8], header: &[u8], depth: u8) -> Option<Protection> {
    let mut r = Reader { b: header, at: 0 };
    match r.byte()? {
        K_HEADER => {
            let mut id = r.byte()?;
            if id == K_ARCHIVE_PROPERTIES {
                loop {
                    let t = r.byte()?;
                    if t == K_END {
                        break;
                    }
                    let n = r.number()?;
                    r.skip(n)?;
                }
                id = r.byte()?;
            }
            if id == K_ADDITIONAL_STREAMS {
                // Never written by 7-Zip; its folders are checked but it cannot be skipped
                // without parsing what follows, so stop there.
                let info = r.streams_info()?;
                return Some(if info.encrypted {
                    Protection::Encrypted("AES-256 7z")
                } else {
                    Protection::Clear
                });
            }
            if id != K_MAIN_STREAMS {
                // No streams: an archive of empty files or directories.
                return Some(Protection::Clear);
            }
            let info = r.streams_info()?;
            Some(if info.encrypted {
                Protection::Encrypted("AES-256 7z")
            } else {
                Protection::Clear
            })
        }
        K_ENCODED_HEADER => {
            let info = r.streams_info()?;
            if info.encrypted {
                return Some(Protection::Encrypted("AES-256 7z, file names hidden"));
            }
            if depth >= 4 {
                return None;
            }
            let decoded = decode(bytes, &info)?;
            header_protection(bytes, &decoded, depth + 1)
        }
        _ => None,
    }
}

/// What the streams info of a header says: enough to find and decode its first folder.
#[derive(Default)]
struct StreamsInfo {
    encrypted: bool,
    pack_pos: u64,
    pack_size: Option<u64>,
    /// The first folder's only coder: its id and properties.
    coder: Option<(Vec<u8>, Vec<u8>)>,
    unpack_size: Option<u64>,
}

/// Decompresses an encoded header: one folder of one LZMA or LZMA2 coder.
fn decode(bytes: &[u8], info: &StreamsInfo) -> Option<Vec<u8>> {
    let start = usize::try_from(info.pack_pos)
        .ok()?
        .checked_add(SIGNATURE_HEADER)?;
    let end = start.checked_add(usize::try_from(info.pack_size?).ok()?)?;
    let packed = bytes.get(start..end)?;
    let (id, props) = info.coder.as_ref()?;
    let unpack_size = info.unpack_size?;
    if unpack_size > HEADER_LIMIT as u64 {
        return None;
    }
    let mut out = Limited {
        out: Vec::new(),
        room: HEADER_LIMIT,
    };
    if id == LZMA {
        if props.len() != 5 {
            return None;
        }
        let mut input = std::io::BufReader::new(props.as_slice().chain(packed));
        let options = lzma_rs::decompress::Options {
            unpacked_size: lzma_rs::decompress::UnpackedSize::UseProvided(Some(unpack_size)),
            memlimit: Some(HEADER_LIMIT),
            allow_incomplete: false,
        };
        lzma_rs::lzma_decompress_with_options(&mut input, &mut out, &options).ok()?;
    } else if id == LZMA2 {
        // lzma-rs keeps all of an LZMA2 stream's output in memory: add up the chunks' sizes
        // first and refuse a stream that would grow past the limit.
        if lzma2_unpacked_size(packed)? > HEADER_LIMIT as u64 {
            return None;
        }
        let mut input = packed;
        lzma_rs::lzma2_decompress(&mut input, &mut out).ok()?;
    } else {
        return None;
    }
    Some(out.out)
}

/// The sum of the unpacked sizes an LZMA2 stream's chunk headers declare.
fn lzma2_unpacked_size(mut s: &[u8]) -> Option<u64> {
    let mut total = 0u64;
    loop {
        let control = *s.first()?;
        match control {
            0x00 => return Some(total),
            0x01 | 0x02 => {
                let size = u64::from(u16::from_be_bytes([*s.get(1)?, *s.get(2)?])) + 1;
                total = total.saturating_add(size);
                s = s.get(3 + usize::try_from(size).ok()?..)?;
            }
            0x80..=0xFF => {
                let unpacked = (u64::from(control & 0x1F) << 16)
                    + u64::from(u16::from_be_bytes([*s.get(1)?, *s.get(2)?]))
                    + 1;
                let packed = usize::from(u16::from_be_bytes([*s.get(3)?, *s.get(4)?])) + 1;
                let head = if control >= 0xC0 { 6 } else { 5 };
                total = total.saturating_add(unpacked);
                s = s.get(head + packed..)?;
            }
            _ => return None,
        }
        if total > HEADER_LIMIT as u64 {
            return Some(total);
        }
    }
}

/// A writer that refuses more than `room` bytes.
struct Limited {
    out: Vec<u8>,
    room: usize,
}

impl Write for Limited {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > self.room {
            return Err(std::io::Error::other("7z header larger than the limit"));
        }
        self.room -= buf.len();
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.b.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn take(&mut self, n: u64) -> Option<&[u8]> {
        let end = self.at.checked_add(usize::try_from(n).ok()?)?;
        let s = self.b.get(self.at..end)?;
        self.at = end;
        Some(s)
    }

    fn skip(&mut self, n: u64) -> Option<()> {
        self.take(n).map(|_| ())
    }

    /// 7z's variable-length number: the leading one bits of the first byte count the bytes
    /// that follow.
    fn number(&mut self) -> Option<u64> {
        let first = self.byte()?;
        let mut mask = 0x80u8;
        let mut value = 0u64;
        for i in 0..8 {
            if first & mask == 0 {
                let high = u64::from(first & mask.wrapping_sub(1));
                return Some(value | (high << (8 * i)));
            }
            value |= u64::from(self.byte()?) << (8 * i);
            mask >>= 1;
        }
        Some(value)
    }

    /// Skips a digests record for `n` streams.
    fn digests(&mut self, n: u64) -> Option<()> {
        let all = self.byte()?;
        let defined = if all != 0 {
            n
        } else {
            let bytes = n.div_ceil(8);
            self.take(bytes)?
                .iter()
                .map(|b| u64::from(b.count_ones()))
                .sum()
        };
        self.skip(defined.checked_mul(4)?)
    }

    /// Reads PackInfo and UnpackInfo; stops before SubStreamsInfo, which says nothing of coders.
    fn streams_info(&mut self) -> Option<StreamsInfo> {
        let mut info = StreamsInfo::default();
        let mut id = self.byte()?;
        if id == K_PACK_INFO {
            info.pack_pos = self.number()?;
            let streams = self.number()?;
            loop {
                match self.byte()? {
                    K_END => break,
                    K_SIZE => {
                        for i in 0..streams {
                            let size = self.number()?;
                            if i == 0 {
                                info.pack_size = Some(size);
                            }
                        }
                    }
                    K_CRC => self.digests(streams)?,
                    _ => return None,
                }
            }
            id = self.byte()?;
        }
        if id == K_UNPACK_INFO {
            if self.byte()? != K_FOLDER {
                return None;
            }
            let folders = self.number()?;
            if folders > MAX_FOLDERS {
                return None;
            }
            if self.byte()? != 0 {
                // Folders kept in another stream: not written by any known tool.
                return None;
            }
            let mut outs_per_folder = Vec::new();
            for f in 0..folders {
                let outs = self.folder(&mut info, f == 0)?;
                outs_per_folder.push(outs);
            }
            if self.byte()? != K_CODERS_UNPACK_SIZE {
                return Some(info);
            }
            for (f, outs) in outs_per_folder.iter().enumerate() {
                for o in 0..*outs {
                    let size = self.number()?;
                    if f == 0 && o == 0 {
                        info.unpack_size = Some(size);
                    }
                }
            }
        }
        Some(info)
    }

    /// Reads one folder's coders; returns how many output streams it has.
    fn folder(&mut self, info: &mut StreamsInfo, first: bool) -> Option<u64> {
        let coders = self.number()?;
        if coders == 0 || coders > MAX_CODERS {
            return None;
        }
        let mut ins = 0u64;
        let mut outs = 0u64;
        for _ in 0..coders {
            let flags = self.byte()?;
            let id = self.take(u64::from(flags & 0x0F))?.to_vec();
            if flags & 0x10 != 0 {
                ins = ins.checked_add(self.number()?)?;
                outs = outs.checked_add(self.number()?)?;
            } else {
                ins += 1;
                outs += 1;
            }
            let props = if flags & 0x20 != 0 {
                let n = self.number()?;
                self.take(n)?.to_vec()
            } else {
                Vec::new()
            };
            if id == AES {
                info.encrypted = true;
            }
            if first && coders == 1 {
                info.coder = Some((id, props));
            }
        }
        if outs > MAX_CODERS || ins > MAX_CODERS {
            return None;
        }
        let bind_pairs = outs.checked_sub(1)?;
        for _ in 0..bind_pairs {
            self.number()?;
            self.number()?;
        }
        let packed = ins.checked_sub(bind_pairs)?;
        if packed > 1 {
            for _ in 0..packed {
                self.number()?;
            }
        }
        Some(outs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 7z file whose next header is `header`, placed after `packed` (the packed streams).
    fn crafted(packed: &[u8], header: &[u8]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&[0, 4, 0, 0, 0, 0]);
        out.extend_from_slice(&(packed.len() as u64).to_le_bytes());
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(packed);
        out.extend_from_slice(header);
        out
    }

    /// A plain header with one folder of the given coders (flags, id).
    fn plain_header(coders: &[&[u8]]) -> Vec<u8> {
        let mut h = vec![
            K_HEADER,
            K_MAIN_STREAMS,
            K_PACK_INFO,
            0,
            1,
            K_SIZE,
            10,
            K_END,
        ];
        h.extend_from_slice(&[K_UNPACK_INFO, K_FOLDER, 1, 0, coders.len() as u8]);
        for c in coders {
            h.push(c.len() as u8);
            h.extend_from_slice(c);
        }
        for i in 1..coders.len() {
            h.extend_from_slice(&[i as u8, (i - 1) as u8]);
        }
        h.push(K_CODERS_UNPACK_SIZE);
        h.extend(std::iter::repeat_n(10, coders.len()));
        h.extend_from_slice(&[K_END, K_END, K_END]);
        h
    }

    #[test]
    fn a_plain_header_with_7zaes_is_encrypted() {
        let h = plain_header(&[LZMA, AES]);
        assert_eq!(
            protection(&crafted(&[0; 10], &h)),
            Protection::Encrypted("AES-256 7z")
        );
        let h = plain_header(&[LZMA]);
        assert_eq!(protection(&crafted(&[0; 10], &h)), Protection::Clear);
    }

    #[test]
    fn an_lzma_encoded_header_is_decoded_and_read() {
        for (coders, want) in [
            (&[LZMA, AES][..], Protection::Encrypted("AES-256 7z")),
            (&[LZMA][..], Protection::Clear),
        ] {
            let inner = plain_header(coders);
            let mut compressed = Vec::new();
            lzma_rs::lzma_compress(&mut inner.as_slice(), &mut compressed).unwrap();
            // lzma-rs writes props(5) + size(8) before the raw stream; 7z keeps props in the
            // coder and the size in the header.
            let props = compressed[..5].to_vec();
            let raw = &compressed[13..];
            let mut h = vec![K_ENCODED_HEADER, K_PACK_INFO, 0, 1, K_SIZE];
            h.extend_from_slice(&encode_number(raw.len() as u64));
            h.extend_from_slice(&[K_END, K_UNPACK_INFO, K_FOLDER, 1, 0, 1, 0x23]);
            h.extend_from_slice(LZMA);
            h.push(5);
            h.extend_from_slice(&props);
            h.push(K_CODERS_UNPACK_SIZE);
            h.extend_from_slice(&encode_number(inner.len() as u64));
            h.extend_from_slice(&[K_END, K_END]);
            assert_eq!(protection(&crafted(raw, &h)), want);
        }
    }

    fn encode_number(n: u64) -> Vec<u8> {
        if n < 0x80 {
            vec![n as u8]
        } else if n < 0x4000 {
            vec![0x80 | (n >> 8) as u8, n as u8]
        } else {
            let mut v = vec![0xE0 | (n >> 24) as u8 & 0x0F];
            v.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
            v
        }
    }

    #[test]
    fn numbers_read_as_7zip_writes_them() {
        for n in [0u64, 1, 0x7F, 0x80, 0x3FFF, 0x4000, 0xABCDE] {
            let b = encode_number(n);
            assert_eq!(Reader { b: &b, at: 0 }.number(), Some(n), "{n}");
        }
        assert_eq!(
            Reader {
                b: &[0xFF, 1, 2, 3, 4, 5, 6, 7, 8],
                at: 0
            }
            .number(),
            Some(0x0807060504030201)
        );
    }

    #[test]
    fn unreadable_headers_are_clear_without_panicking() {
        let h = plain_header(&[LZMA, AES]);
        let f = crafted(&[0; 10], &h);
        for cut in 0..f.len() {
            let _ = protection(&f[..cut]);
        }
        // A header pointer past the end.
        let mut bad = f.clone();
        bad[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(protection(&bad), Protection::Clear);
        // An encoded header whose stream is garbage.
        let h = [
            K_ENCODED_HEADER,
            K_PACK_INFO,
            0,
            1,
            K_SIZE,
            4,
            K_END,
            K_UNPACK_INFO,
            K_FOLDER,
            1,
            0,
            1,
            0x23,
            3,
            1,
            1,
            5,
            0x5D,
            0,
            0,
            1,
            0,
            K_CODERS_UNPACK_SIZE,
            100,
            K_END,
            K_END,
        ];
        assert_eq!(protection(&crafted(&[0xFF; 4], &h)), Protection::Clear);
    }

    #[test]
    fn lzma2_chunk_sizes_are_added_up_before_decoding() {
        // Two uncompressed chunks of 3 and 2 bytes, then the end.
        let s = [
            0x01, 0x00, 0x02, b'a', b'b', b'c', 0x02, 0x00, 0x01, b'd', b'e', 0x00,
        ];
        assert_eq!(lzma2_unpacked_size(&s), Some(5));
        assert_eq!(lzma2_unpacked_size(&s[..7]), None);
    }
}
