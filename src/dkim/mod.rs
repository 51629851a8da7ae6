//! DKIM signing and ARC sealing of mail as it leaves, after every rewrite (`[dkim]`).
//!
//! schoolgate changes the message (the disclaimer), which breaks a signature made before it;
//! so it signs what it changed, with the school's key, just before the next hop. A message is
//! signed only when its `From:` domain is exactly one a key covers (DMARC aligns on that
//! domain; a subdomain needs its own key entry). Other mail passes unsigned by us.
//!
//! Signing is relaxed/relaxed, RSA-SHA256 or Ed25519-SHA256, over [`SIGNED_HEADERS`] with
//! `From` signed once more than it appears (oversigned), so a second `From:` added on the way
//! breaks the signature. An existing (broken) signature stays, as receivers expect.
//!
//! With `arc = true` an ARC set (`ARC-Seal`, `ARC-Message-Signature`,
//! `ARC-Authentication-Results`) is added too: the results record what the incoming DKIM
//! signatures said when the message reached schoolgate, before the rewrite, so that a receiver
//! that honours ARC can see it was intact then. Verifying needs the signers' keys from DNS
//! (`[dkim] resolver`, default the system's); when it cannot be done the results say
//! `dkim=temperror` (no answer) or `dkim=none` (no signature), never a pass.
//!
//! The signing itself ([`Signing::sign`]) is pure: bytes in, header lines out. The DNS look-ups
//! for ARC happen before it ([`Signing::verify_incoming`]).

pub mod dns;
pub mod key;
mod sign;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use mail_auth::arc::{ArcSealer, Set};
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, Done};
use mail_auth::{
    ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimResult, MessageAuthenticator,
};

use crate::config::Config;
pub use key::{Algorithm, KeyError, PrivateKey};

/// The header fields signed when present (RFC 6376 §5.4.1's list, less those no school mail
/// carries). Each listed but absent is signed as absent, so it cannot be added later.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    // Oversigned: a second From cannot be added without breaking the signature.
    "From",
    "Sender",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "To",
    "Cc",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "In-Reply-To",
    "References",
];

/// How long the DNS look-ups for one incoming message's signatures may take before the ARC
/// results say `temperror`.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why `[dkim]` cannot be used; names the config file and key.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("{config}: dkim.key ({domain}): {error}")]
    Key {
        config: String,
        domain: String,
        error: KeyError,
    },
    #[error("{config}: dkim.resolver: cannot set up DNS: {detail}")]
    Resolver { config: String, detail: String },
}

enum Signer {
    Rsa(RsaKey<Sha256>),
    Ed25519(Ed25519Key),
}

enum Sealer {
    Rsa(ArcSealer<RsaKey<Sha256>, Done>),
    Ed25519(ArcSealer<Ed25519Key, Done>),
}

/// One domain's key, ready to sign.
pub struct DomainSigner {
    pub domain: String,
    pub selector: String,
    pub algorithm: Algorithm,
    signer: Signer,
    sealer: Option<Sealer>,
}

/// The school's keys, loaded at start and at each reload.
pub struct Signing {
    keys: Vec<DomainSigner>,
    /// `authserv-id` of the ARC results: `relay.hostname`.
    hostname: String,
    /// Present when `arc = true`.
    authenticator: Option<MessageAuthenticator>,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signing")
            .field(
                "domains",
                &self.keys.iter().map(|k| &k.domain).collect::<Vec<_>>(),
            )
            .field("arc", &self.authenticator.is_some())
            .finish()
    }
}

/// A signature made: the header lines to put on top, and with which key.
#[derive(Debug)]
pub struct Signed {
    pub headers: Vec<u8>,
    pub domain: String,
    pub selector: String,
    /// Whether an ARC set is among the headers.
    pub arc: bool,
}

/// What the incoming message's signatures said, before the rewrite: the ARC results.
pub struct Incoming {
    /// The `ARC-Authentication-Results` text after `authserv-id;`.
    results: String,
    /// The incoming ARC chain's validation.
    arc: DkimResult,
}

impl Incoming {
    /// The results recorded, e.g. `dkim=pass header.d=… header.s=… header.b=…`.
    pub fn results(&self) -> &str {
        &self.results
    }
}

fn build_signer(key: &PrivateKey) -> Option<Signer> {
    Some(match key.algorithm {
        Algorithm::Rsa => Signer::Rsa(key.rsa()?),
        Algorithm::Ed25519 => Signer::Ed25519(key.ed25519()?),
    })
}

fn build_sealer(k: &KeyName, key: &PrivateKey) -> Option<Sealer> {
    let headers = SIGNED_HEADERS.iter().copied().chain(["DKIM-Signature"]);
    Some(match key.algorithm {
        Algorithm::Rsa => Sealer::Rsa(
            ArcSealer::from_key(key.rsa()?)
                .domain(k.domain.clone())
                .selector(k.selector.clone())
                .headers(headers)
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed),
        ),
        Algorithm::Ed25519 => Sealer::Ed25519(
            ArcSealer::from_key(key.ed25519()?)
                .domain(k.domain.clone())
                .selector(k.selector.clone())
                .headers(headers)
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed),
        ),
    })
}

/// A key's domain and selector.
struct KeyName {
    domain: String,
    selector: String,
}

impl Signing {
    /// Signing with `keys` (`(domain, selector, key)`), without ARC: for `schoolgate check`,
    /// benchmarks and tests. `None` if a key is refused by the signer.
    pub fn new(keys: Vec<(String, String, PrivateKey)>, hostname: &str) -> Option<Signing> {
        let mut out = Vec::new();
        for (domain, selector, key) in keys {
            let name = KeyName {
                domain: domain.to_ascii_lowercase(),
                selector,
            };
            out.push(DomainSigner {
                signer: build_signer(&key)?,
                sealer: None,
                algorithm: key.algorithm,
                domain: name.domain,
                selector: name.selector,
            });
        }
        Some(Signing {
            keys: out,
            hostname: hostname.to_string(),
            authenticator: None,
        })
    }

    /// Loads the keys `[dkim]` names; `None` when there is no `[dkim]` section.
    pub fn load(config: &Config) -> Result<Option<Arc<Signing>>, SigningError> {
        let Some(dkim) = &config.dkim else {
            return Ok(None);
        };
        let shown = config.source.display().to_string();
        let mut keys = Vec::new();
        for k in dkim.all_keys() {
            let name = KeyName {
                domain: k.domain.0.clone(),
                selector: k.selector.0.clone(),
            };
            let key_error = |error| SigningError::Key {
                config: shown.clone(),
                domain: k.domain.0.clone(),
                error,
            };
            let key = PrivateKey::load(&k.key).map_err(key_error)?;
            let unusable = || {
                key_error(KeyError::Invalid {
                    path: k.key.display().to_string(),
                    algorithm: key.algorithm.tag(),
                    detail: "the signer refused it".into(),
                })
            };
            let signer = build_signer(&key).ok_or_else(unusable)?;
            let sealer = if dkim.arc {
                Some(build_sealer(&name, &key).ok_or_else(unusable)?)
            } else {
                None
            };
            keys.push(DomainSigner {
                domain: k.domain.0.clone(),
                selector: k.selector.0.clone(),
                algorithm: key.algorithm,
                signer,
                sealer,
            });
        }
        let authenticator = if dkim.arc {
            Some(
                dns::authenticator(dkim.resolver).map_err(|detail| SigningError::Resolver {
                    config: shown.clone(),
                    detail,
                })?,
            )
        } else {
            None
        };
        Ok(Some(Arc::new(Signing {
            keys,
            hostname: config.relay.hostname.clone(),
            authenticator,
        })))
    }

    /// The domains signed for, in config order.
    pub fn domains(&self) -> impl Iterator<Item = &DomainSigner> {
        self.keys.iter()
    }

    /// Whether ARC sets are added.
    pub fn arc(&self) -> bool {
        self.authenticator.is_some()
    }

    /// The key for `message`'s `From:` domain: every address in `From:` must be in that one
    /// domain, matched exactly (case-insensitively).
    pub fn key_for(&self, message: &[u8]) -> Option<&DomainSigner> {
        let parsed = AuthenticatedMessage::parse(message)?;
        self.key_for_from(parsed.froms())
    }

    fn key_for_from(&self, froms: &[String]) -> Option<&DomainSigner> {
        let mut domains = froms
            .iter()
            .map(|a| a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()));
        let first = domains.next()??;
        if !domains.all(|d| d.as_deref() == Some(first.as_str())) {
            return None;
        }
        self.keys.iter().find(|k| k.domain == first)
    }

    /// With `arc = true`, verifies the DKIM signatures and ARC chain of the message as it
    /// arrived (before any rewrite), for the ARC set. `None` when ARC is off or the message is
    /// not one we sign.
    pub async fn verify_incoming(&self, original: &[u8], client: IpAddr) -> Option<Incoming> {
        let authenticator = self.authenticator.as_ref()?;
        let parsed = AuthenticatedMessage::parse(original)?;
        let key = self.key_for_from(parsed.froms())?;
        key.sealer.as_ref()?;
        let from_domain = key.domain.clone();
        let verified = tokio::time::timeout(VERIFY_TIMEOUT, async {
            let dkim = authenticator.verify_dkim(&parsed).await;
            let arc = authenticator.verify_arc(&parsed).await;
            (dkim, arc)
        })
        .await;
        Some(match verified {
            Ok((dkim, arc)) => {
                let arc_result = arc.result().clone();
                let text = AuthenticationResults::new("")
                    .with_dkim_results(&dkim, &from_domain)
                    .with_arc_result(&arc, client)
                    .to_string();
                let mut results = one_line(&text);
                if dkim.is_empty() {
                    // No signature at all (mail-auth writes nothing for an empty list).
                    results = format!("dkim=none; {results}");
                }
                Incoming {
                    results,
                    arc: arc_result,
                }
            }
            Err(_) => {
                tracing::warn!(
                    "the incoming DKIM signatures could not be checked within {} s (DNS): the ARC \
                     results say temperror",
                    VERIFY_TIMEOUT.as_secs()
                );
                Incoming {
                    results: format!("dkim=temperror; arc=none smtp.remote-ip={client}"),
                    arc: DkimResult::None,
                }
            }
        })
    }

    /// The header lines to put on top of `message` (as it leaves, after every rewrite): a
    /// `DKIM-Signature` and, with `incoming`, an ARC set. `None` when no key covers its `From:`.
    pub fn sign(
        &self,
        message: &[u8],
        incoming: Option<&Incoming>,
    ) -> Result<Option<Signed>, String> {
        let Some(key) = self.key_for(message) else {
            return Ok(None);
        };
        let headers = self.sign_with(key, message, incoming)?;
        Ok(Some(Signed {
            arc: headers.starts_with(b"ARC-"),
            headers,
            domain: key.domain.clone(),
            selector: key.selector.clone(),
        }))
    }

    fn sign_with(
        &self,
        key: &DomainSigner,
        message: &[u8],
        incoming: Option<&Incoming>,
    ) -> Result<Vec<u8>, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (domain, selector) = (key.domain.as_str(), key.selector.as_str());
        let signed = match &key.signer {
            Signer::Rsa(k) => sign::sign(
                k,
                "rsa-sha256",
                domain,
                selector,
                SIGNED_HEADERS,
                message,
                now,
            ),
            Signer::Ed25519(k) => sign::sign(
                k,
                "ed25519-sha256",
                domain,
                selector,
                SIGNED_HEADERS,
                message,
                now,
            ),
        }
        .map_err(|e| format!("DKIM signing for {} failed: {e}", key.domain))?;
        let dkim_header = signed.into_bytes();
        let (Some(incoming), Some(sealer)) = (incoming, &key.sealer) else {
            return Ok(dkim_header);
        };
        // The ARC set covers the message as it leaves, our DKIM-Signature included.
        let mut signed = Vec::with_capacity(dkim_header.len() + message.len());
        signed.extend_from_slice(&dkim_header);
        signed.extend_from_slice(message);
        let Some(mut parsed) = AuthenticatedMessage::parse(&signed) else {
            return Ok(dkim_header);
        };
        // The body hash the seal's ARC-Message-Signature uses: ours, which follows RFC 6376
        // where mail-auth's does not (see `sign`).
        let body = signed
            .get(parsed.body_offset as usize..)
            .unwrap_or_default();
        parsed.body_hashes.insert(
            0,
            (
                Canonicalization::Relaxed,
                mail_auth::common::crypto::HashAlgorithm::Sha256,
                0,
                sign::body_hash(body).to_vec(),
            ),
        );
        // The chain already on the message, with the validation found on arrival.
        let mut chain = ArcOutput::default().with_result(incoming.arc.clone());
        for ((seal, signature), results) in parsed
            .as_headers
            .iter()
            .zip(parsed.ams_headers.iter())
            .zip(parsed.aar_headers.iter())
        {
            chain = chain.with_set(Set {
                signature: mail_auth::common::headers::Header::new(
                    signature.name,
                    signature.value,
                    &signature.header,
                ),
                seal: mail_auth::common::headers::Header::new(seal.name, seal.value, &seal.header),
                results: mail_auth::common::headers::Header::new(
                    results.name,
                    results.value,
                    &results.header,
                ),
            });
        }
        if !chain.can_be_sealed() {
            // A chain already failed upstream: RFC 8617 §5.1.2, no further seals.
            return Ok(dkim_header);
        }
        // The whole text goes in as the authserv-id: mail-auth offers no other way to write a
        // result it did not compute itself (`dkim=none`), and it is written verbatim.
        let text = format!("{}; {}", self.hostname, incoming.results);
        let results = AuthenticationResults::new(&text);
        let set = match sealer {
            Sealer::Rsa(s) => s.seal(&parsed, &results, &chain),
            Sealer::Ed25519(s) => s.seal(&parsed, &results, &chain),
        }
        .map_err(|e| format!("ARC sealing for {} failed: {e}", key.domain))?;
        let mut out = set.to_header().into_bytes();
        out.extend_from_slice(&dkim_header);
        Ok(out)
    }
}

/// `; dkim=pass …;\r\n\tarc=none …` as `dkim=pass …; arc=none …`: one line, single spaces,
/// so that it reads the same signed and written.
fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches(';')
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signing() -> Signing {
        let pem = key::tests_support::ed25519_pem();
        let key = PrivateKey::from_pem(pem.as_bytes(), "k.pem").unwrap();
        Signing::new(
            vec![("Example-Academy.sch.uk".into(), "sg1".into(), key)],
            "schoolgate.test",
        )
        .unwrap()
    }

    fn message(from: &str) -> Vec<u8> {
        format!("From: {from}\r\nTo: p@example.org\r\nSubject: hi\r\n\r\nHello\r\n").into_bytes()
    }

    #[test]
    fn only_the_exact_from_domain_is_signed() {
        let s = signing();
        assert!(s.key_for(&message("a@example-academy.sch.uk")).is_some());
        assert!(
            s.key_for(&message("A <a@EXAMPLE-academy.SCH.uk>"))
                .is_some()
        );
        assert!(
            s.key_for(&message("a@pupils.example-academy.sch.uk"))
                .is_none()
        );
        assert!(s.key_for(&message("a@example.org")).is_none());
        assert!(
            s.key_for(&message("a@example-academy.sch.uk, b@example.org"))
                .is_none(),
            "a From: naming two domains aligns with neither"
        );
        assert!(s.key_for(b"To: p@example.org\r\n\r\nno from\r\n").is_none());
    }

    #[test]
    fn the_signature_covers_the_standard_headers_with_from_oversigned() {
        let s = signing();
        let signed = s
            .sign(&message("a@example-academy.sch.uk"), None)
            .unwrap()
            .unwrap();
        let header = String::from_utf8(signed.headers).unwrap();
        assert!(header.starts_with("DKIM-Signature:"), "{header}");
        assert!(header.ends_with("\r\n"));
        let unfolded: String = header.split_whitespace().collect();
        assert!(unfolded.contains("d=example-academy.sch.uk"), "{header}");
        assert!(unfolded.contains("c=relaxed/relaxed"), "{header}");
        assert!(unfolded.contains("a=ed25519-sha256"), "{header}");
        let h = unfolded
            .split("h=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap();
        assert_eq!(h.to_lowercase().matches("from").count(), 2, "{h}");
        assert!(!signed.arc);
        assert!(
            s.sign(&message("a@example.org"), None).unwrap().is_none(),
            "another domain is not signed"
        );
    }

    #[test]
    fn results_are_one_line() {
        assert_eq!(
            one_line(
                ";\r\n\tdkim=pass header.d=x header.s=y;\r\n\tarc=none smtp.remote-ip=1.2.3.4"
            ),
            "dkim=pass header.d=x header.s=y; arc=none smtp.remote-ip=1.2.3.4"
        );
    }
}
