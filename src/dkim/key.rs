//! DKIM private keys: reading a PEM file (RSA 2048 bits or more, or Ed25519), the public key a
//! school publishes in DNS, and writing a new key (`schoolgate dkim keygen`).
//!
//! Key material is never logged or put in an error: errors name the file and what is wrong.

use std::path::Path;

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;

/// The smallest RSA key accepted (RFC 8301 §3.2: signers MUST use at least 1024 bits, and
/// receivers such as Gmail and Microsoft expect 2048).
pub const MIN_RSA_BITS: usize = 2048;

/// The two kinds of DKIM key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// RSA-SHA256 (`k=rsa`), what every receiver verifies.
    Rsa,
    /// Ed25519-SHA256 (`k=ed25519`, RFC 8463); not every receiver verifies it yet.
    Ed25519,
}

impl Algorithm {
    /// The `k=` tag of the DNS record.
    pub fn tag(self) -> &'static str {
        match self {
            Algorithm::Rsa => "rsa",
            Algorithm::Ed25519 => "ed25519",
        }
    }
}

/// Why a key file cannot be used. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {detail}")]
    Read { path: String, detail: String },
    #[error(
        "{path} holds no private key in PEM form (\"-----BEGIN PRIVATE KEY-----\" or \"-----BEGIN RSA PRIVATE KEY-----\"); make one with `schoolgate dkim keygen`"
    )]
    NoKey { path: String },
    #[error(
        "{path} holds an RSA key of {bits} bits; DKIM needs at least {MIN_RSA_BITS}: make a new one with `schoolgate dkim keygen` and publish its record"
    )]
    TooSmall { path: String, bits: usize },
    #[error(
        "{path} holds a {kind} key; DKIM keys must be RSA (2048 bits or more) or Ed25519: make one with `schoolgate dkim keygen`"
    )]
    Unsupported { path: String, kind: String },
    #[error("{path} is not a usable {algorithm} private key: {detail}")]
    Invalid {
        path: String,
        algorithm: &'static str,
        detail: String,
    },
}

/// A private key read from its PEM file, with what to publish for it.
pub struct PrivateKey {
    pub algorithm: Algorithm,
    /// The DER the signer is built from (kept to build a second signer for ARC).
    der: KeyDer,
    /// The `p=` value: base64 of the SubjectPublicKeyInfo (RSA) or the raw key (Ed25519).
    pub public_b64: String,
    /// RSA modulus size in bits; 256 for Ed25519.
    pub bits: usize,
}

enum KeyDer {
    RsaPkcs1(Vec<u8>),
    RsaPkcs8(Vec<u8>),
    Ed25519Pkcs8(Vec<u8>),
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm)
            .field("bits", &self.bits)
            .field("key", &"<hidden>")
            .finish()
    }
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

impl PrivateKey {
    /// Reads the PEM file at `path`.
    pub fn load(path: &Path) -> Result<PrivateKey, KeyError> {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|e| KeyError::Read {
            path: shown.clone(),
            detail: e.to_string(),
        })?;
        PrivateKey::from_pem(&pem, &shown)
    }

    /// Reads a PEM private key; `shown` names it in errors.
    pub fn from_pem(pem: &[u8], shown: &str) -> Result<PrivateKey, KeyError> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| KeyError::NoKey {
            path: shown.to_string(),
        })?;
        let der = match der {
            PrivateKeyDer::Pkcs1(k) => KeyDer::RsaPkcs1(k.secret_pkcs1_der().to_vec()),
            PrivateKeyDer::Pkcs8(k) => {
                let bytes = k.secret_pkcs8_der().to_vec();
                match pkcs8_algorithm(&bytes) {
                    Some(oid) if oid == OID_RSA => KeyDer::RsaPkcs8(bytes),
                    Some(oid) if oid == OID_ED25519 => KeyDer::Ed25519Pkcs8(bytes),
                    Some(oid) if oid == OID_EC => {
                        return Err(KeyError::Unsupported {
                            path: shown.into(),
                            kind: "elliptic-curve (ECDSA)".into(),
                        });
                    }
                    _ => {
                        return Err(KeyError::Unsupported {
                            path: shown.into(),
                            kind: "an unknown kind of".into(),
                        });
                    }
                }
            }
            PrivateKeyDer::Sec1(_) => {
                return Err(KeyError::Unsupported {
                    path: shown.into(),
                    kind: "elliptic-curve (ECDSA)".into(),
                });
            }
            _ => {
                return Err(KeyError::NoKey {
                    path: shown.to_string(),
                });
            }
        };
        let invalid = |algorithm: &'static str, e: mail_auth::Error| KeyError::Invalid {
            path: shown.to_string(),
            algorithm,
            detail: e.to_string(),
        };
        match &der {
            KeyDer::RsaPkcs1(_) | KeyDer::RsaPkcs8(_) => {
                let pkcs1 = match &der {
                    KeyDer::RsaPkcs8(p8) => pkcs8_inner(p8),
                    KeyDer::RsaPkcs1(p1) => Some(p1.as_slice()),
                    KeyDer::Ed25519Pkcs8(_) => None,
                };
                let bits = pkcs1.and_then(rsa_modulus_bits).unwrap_or(0);
                if bits < MIN_RSA_BITS {
                    return Err(KeyError::TooSmall {
                        path: shown.to_string(),
                        bits,
                    });
                }
                let key = rsa_from(&der).map_err(|e| invalid("RSA", e))?;
                let public = rsa_spki(&key.public_key());
                Ok(PrivateKey {
                    algorithm: Algorithm::Rsa,
                    der,
                    public_b64: base64(&public),
                    bits,
                })
            }
            KeyDer::Ed25519Pkcs8(p8) => {
                let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(p8)
                    .map_err(|e| invalid("Ed25519", e))?;
                Ok(PrivateKey {
                    algorithm: Algorithm::Ed25519,
                    public_b64: base64(&key.public_key()),
                    der,
                    bits: 256,
                })
            }
        }
    }

    /// A signing key for mail-auth (RSA).
    pub(crate) fn rsa(&self) -> Option<RsaKey<Sha256>> {
        rsa_from(&self.der).ok()
    }

    /// A signing key for mail-auth (Ed25519).
    pub(crate) fn ed25519(&self) -> Option<Ed25519Key> {
        match &self.der {
            KeyDer::Ed25519Pkcs8(p8) => Ed25519Key::from_pkcs8_maybe_unchecked_der(p8).ok(),
            _ => None,
        }
    }

    /// The TXT record's text: `v=DKIM1; k=rsa; p=…`.
    pub fn record(&self) -> String {
        format!("v=DKIM1; k={}; p={}", self.algorithm.tag(), self.public_b64)
    }
}

fn rsa_from(der: &KeyDer) -> Result<RsaKey<Sha256>, mail_auth::Error> {
    use rustls::pki_types::{PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};
    match der {
        KeyDer::RsaPkcs1(d) => {
            RsaKey::from_key_der(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(d.as_slice())))
        }
        KeyDer::RsaPkcs8(d) => {
            RsaKey::from_key_der(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(d.as_slice())))
        }
        KeyDer::Ed25519Pkcs8(_) => Err(mail_auth::Error::Crypto(
            mail_auth::common::crypto::CryptoError::Library("not an RSA key".into()),
        )),
    }
}

/// The record to publish for `selector`/`domain`, as a zone-file line: the text split into
/// quoted strings of at most 255 characters (RFC 1035 §3.3.14; receivers join them).
pub fn zone_line(selector: &str, domain: &str, record: &str) -> String {
    let strings: Vec<String> = record
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!(
        "{selector}._domainkey.{domain} IN TXT {}",
        strings.join(" ")
    )
}

/// Writes a new private key in PEM form to `out` (mode 0600, refusing to overwrite) and returns
/// it read back.
pub fn generate(algorithm: Algorithm, out: &Path) -> Result<PrivateKey, anyhow::Error> {
    use anyhow::Context;
    let pem = match algorithm {
        Algorithm::Ed25519 => {
            let der = Ed25519Key::generate_pkcs8()
                .map_err(|e| anyhow::anyhow!("cannot make an Ed25519 key: {e}"))?;
            pem_encode("PRIVATE KEY", &der)
        }
        // ring cannot make RSA keys: OpenSSL does (Debian's openssl package, which
        // ca-certificates already needs).
        Algorithm::Rsa => {
            let output = std::process::Command::new("openssl")
                .args([
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                ])
                .stderr(std::process::Stdio::piped())
                .output()
                .context(
                    "cannot run openssl to make an RSA key; install it (apt install openssl) or \
                     use --algorithm ed25519",
                )?;
            if !output.status.success() {
                anyhow::bail!(
                    "openssl genpkey failed ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
            String::from_utf8(output.stdout).context("openssl wrote something that is not PEM")?
        }
    };
    let key = PrivateKey::from_pem(pem.as_bytes(), &out.display().to_string())?;
    let mut file = crate::store::private::options()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
                "{} already exists: a key in use stays as it is; choose another --out (or remove \
                 it if it is not published)",
                out.display()
            ),
            _ => anyhow::anyhow!("cannot create {}: {e}", out.display()),
        })?;
    std::io::Write::write_all(&mut file, pem.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(key)
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub fn base64(bytes: &[u8]) -> String {
    mail_builder::encoders::base64::base64_encode(bytes)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
        .replace(['\r', '\n'], "")
}

/// One DER element at the front of `d`: its tag, contents and what follows.
fn der(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *d.first()?;
    let first = *d.get(1)? as usize;
    let (len, head) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *d.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let body = d.get(head..head.checked_add(len)?)?;
    Some((tag, body, &d[head + len..]))
}

/// The algorithm OID of a PKCS#8 PrivateKeyInfo.
fn pkcs8_algorithm(p8: &[u8]) -> Option<&[u8]> {
    let (_, seq, _) = der(p8)?;
    let (_, _version, rest) = der(seq)?;
    let (_, alg, _) = der(rest)?;
    let (tag, oid, _) = der(alg)?;
    (tag == 0x06).then_some(oid)
}

/// The PKCS#1 key inside a PKCS#8 PrivateKeyInfo.
fn pkcs8_inner(p8: &[u8]) -> Option<&[u8]> {
    let (_, seq, _) = der(p8)?;
    let (_, _version, rest) = der(seq)?;
    let (_, _alg, rest) = der(rest)?;
    let (tag, inner, _) = der(rest)?;
    (tag == 0x04).then_some(inner)
}

/// The modulus size of a PKCS#1 RSAPrivateKey.
fn rsa_modulus_bits(p1: &[u8]) -> Option<usize> {
    let (_, seq, _) = der(p1)?;
    let (_, _version, rest) = der(seq)?;
    let (tag, modulus, _) = der(rest)?;
    if tag != 0x02 {
        return None;
    }
    let m: &[u8] = match modulus.iter().position(|b| *b != 0) {
        Some(i) => &modulus[i..],
        None => return Some(0),
    };
    Some(m.len() * 8 - m[0].leading_zeros() as usize)
}

fn der_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        vec![len as u8]
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        let mut out = vec![0x80 | bytes.len() as u8];
        out.extend(bytes);
        out
    }
}

fn der_tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(body.len()));
    out.extend_from_slice(body);
    out
}

/// SubjectPublicKeyInfo around a PKCS#1 RSAPublicKey: what `p=` holds for RSA (RFC 6376 §3.6.1),
/// as `opendkim-genkey` writes it.
fn rsa_spki(pkcs1_public: &[u8]) -> Vec<u8> {
    let mut alg = der_tlv(0x06, OID_RSA);
    alg.extend([0x05, 0x00]);
    let alg = der_tlv(0x30, &alg);
    let mut bits = vec![0u8];
    bits.extend_from_slice(pkcs1_public);
    let mut body = alg;
    body.extend(der_tlv(0x03, &bits));
    der_tlv(0x30, &body)
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// A fresh Ed25519 key in PEM form.
    pub fn ed25519_pem() -> String {
        let der = super::Ed25519Key::generate_pkcs8().unwrap();
        super::pem_encode("PRIVATE KEY", &der)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_ed25519_key_reads_back_with_its_record() {
        let der = Ed25519Key::generate_pkcs8().unwrap();
        let pem = pem_encode("PRIVATE KEY", &der);
        let key = PrivateKey::from_pem(pem.as_bytes(), "k.pem").unwrap();
        assert_eq!(key.algorithm, Algorithm::Ed25519);
        assert!(key.record().starts_with("v=DKIM1; k=ed25519; p="));
        // 32 bytes of key: 44 characters of base64.
        assert_eq!(key.public_b64.len(), 44);
        assert!(format!("{key:?}").contains("<hidden>"));
    }

    #[test]
    fn garbage_and_other_kinds_are_refused_by_name() {
        let e = PrivateKey::from_pem(b"not a key", "k.pem").unwrap_err();
        assert!(e.to_string().contains("holds no private key"), "{e}");
        // An EC key (SEC1 form).
        let ec = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIm7\n-----END EC PRIVATE KEY-----\n";
        let e = PrivateKey::from_pem(ec.as_bytes(), "k.pem").unwrap_err();
        assert!(matches!(e, KeyError::Unsupported { .. }), "{e}");
    }

    #[test]
    fn modulus_bits_are_read_from_pkcs1() {
        // SEQUENCE { INTEGER 0, INTEGER 0x00 0x80 00.. (1024 bits) }
        let mut modulus = vec![0x00, 0x80];
        modulus.extend(vec![0u8; 127]);
        let mut body = der_tlv(0x02, &[0]);
        body.extend(der_tlv(0x02, &modulus));
        assert_eq!(rsa_modulus_bits(&der_tlv(0x30, &body)), Some(1024));
    }

    #[test]
    fn long_records_are_split_into_255_character_strings() {
        let record = format!("v=DKIM1; k=rsa; p={}", "A".repeat(392));
        let line = zone_line("sg1", "example-academy.sch.uk", &record);
        assert!(line.starts_with("sg1._domainkey.example-academy.sch.uk IN TXT \""));
        let strings: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        assert_eq!(strings.len(), 2);
        assert_eq!(strings[0].len(), 255);
        assert_eq!(strings.concat(), record);
    }
}
