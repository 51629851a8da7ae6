//! The few primitives needed to try the empty or default password of a PDF or a legacy Excel
//! file: RC4 and SHA-1 (small enough to keep here rather than add crates), MD5, SHA-2 and
//! AES-128-CBC from the crates lopdf already brings in.

use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use md5::Digest as _;

/// RC4 keystream applied to `data` in place.
pub(super) struct Rc4 {
    s: [u8; 256],
    i: u8,
    j: u8,
}

impl Rc4 {
    pub(super) fn new(key: &[u8]) -> Rc4 {
        let mut s = [0u8; 256];
        for (i, v) in s.iter_mut().enumerate() {
            *v = i as u8;
        }
        if !key.is_empty() {
            let mut j = 0u8;
            for i in 0..256 {
                let k = key.get(i % key.len()).copied().unwrap_or(0);
                j = j.wrapping_add(s[i]).wrapping_add(k);
                s.swap(i, usize::from(j));
            }
        }
        Rc4 { s, i: 0, j: 0 }
    }

    pub(super) fn apply(&mut self, data: &mut [u8]) {
        for b in data {
            self.i = self.i.wrapping_add(1);
            self.j = self.j.wrapping_add(self.s[usize::from(self.i)]);
            self.s.swap(usize::from(self.i), usize::from(self.j));
            let k = self.s[usize::from(
                self.s[usize::from(self.i)].wrapping_add(self.s[usize::from(self.j)]),
            )];
            *b ^= k;
        }
    }
}

pub(super) fn rc4(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    Rc4::new(key).apply(&mut out);
    out
}

pub(super) fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = md5::Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

pub(super) fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().to_vec()
}

pub(super) fn sha384(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha384::digest(data).to_vec()
}

pub(super) fn sha512(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha512::digest(data).to_vec()
}

/// AES-128-CBC without padding (`data` is a whole number of blocks).
pub(super) fn aes128_cbc(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) {
    let cipher = aes::Aes128::new(GenericArray::from_slice(key));
    let mut chain = *iv;
    for block in data.chunks_exact_mut(16) {
        for (b, c) in block.iter_mut().zip(chain.iter()) {
            *b ^= c;
        }
        let b = GenericArray::from_mut_slice(block);
        cipher.encrypt_block(b);
        chain.copy_from_slice(b);
    }
}

/// SHA-1 (FIPS 180-4), for the RC4 CryptoAPI verifier of legacy Office files.
pub(super) fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut message: Vec<u8> = parts.concat();
    let bit_len = (message.len() as u64).wrapping_mul(8);
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bit_len.to_be_bytes());
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    for chunk in message.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in chunk.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (o, x) in out.chunks_exact_mut(4).zip(h) {
        o.copy_from_slice(&x.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_matches_the_fips_vectors() {
        assert_eq!(
            hex::encode(sha1(&[b"abc"])),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex::encode(sha1(&[b""])),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(
            hex::encode(sha1(&[&long[..10], &long[10..]])),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
    }

    #[test]
    fn rc4_matches_the_rfc_6229_vector() {
        // RFC 6229, key 0x0102030405, first 16 keystream bytes.
        let ks = rc4(&[1, 2, 3, 4, 5], &[0; 16]);
        assert_eq!(hex::encode(ks), "b2396305f03dc027ccc3524a0a1118a8");
    }

    #[test]
    fn aes_cbc_matches_sp800_38a() {
        // NIST SP 800-38A F.2.1, first block.
        let key: [u8; 16] = hex::decode("2b7e151628aed2a6abf7158809cf4f3c")
            .unwrap()
            .try_into()
            .unwrap();
        let iv: [u8; 16] = hex::decode("000102030405060708090a0b0c0d0e0f")
            .unwrap()
            .try_into()
            .unwrap();
        let mut data = hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap();
        aes128_cbc(&key, &iv, &mut data);
        assert_eq!(hex::encode(data), "7649abac8119b246cee98e9b12e9197d");
    }
}
