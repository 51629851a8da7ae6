//! Where accepted mail goes next: the school's smarthost over SMTP, or the built-in local outbox.
//!
//! The relay hands a message on synchronously (before-queue proxy semantics): the client hears
//! 250 only after [`NextHop::deliver`] has returned `Ok`, so every implementation must return
//! `Ok` only when the message is safe with the next hop (its 250, or fsynced on disk).

pub mod outbox;
pub mod smtp;

use std::fmt;
use std::path::PathBuf;

use crate::envelope::Envelope;

/// A next hop as written in `relay.next_hop`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextHopAddress {
    /// `smtp://host:port`: plain SMTP, STARTTLS used if offered.
    Smtp { host: String, port: u16 },
    /// `smtp+starttls://host:port`: STARTTLS required.
    SmtpStartTls { host: String, port: u16 },
    /// `smtps://host:port`: TLS from the first byte.
    Smtps { host: String, port: u16 },
    /// `outbox:DIR`: a local Maildir.
    Outbox { dir: PathBuf },
}

impl NextHopAddress {
    /// Parses `smtp://host[:port]`, `smtp+starttls://host[:port]`, `smtps://host[:port]` or
    /// `outbox:DIR`. Default ports: 25, 587 and 465.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(dir) = s.strip_prefix("outbox:") {
            if dir.is_empty() {
                return Err("outbox: needs a directory, e.g. \"outbox:var/outbox\"".into());
            }
            return Ok(NextHopAddress::Outbox {
                dir: PathBuf::from(dir),
            });
        }
        let (scheme, rest) = s.split_once("://").ok_or_else(|| {
            format!(
                "\"{s}\" is not a next hop; use smtp://host:25, smtp+starttls://host:587, smtps://host:465 or outbox:DIR"
            )
        })?;
        let default_port = match scheme {
            "smtp" => 25,
            "smtp+starttls" => 587,
            "smtps" => 465,
            other => {
                return Err(format!(
                    "unknown scheme \"{other}\"; use smtp://, smtp+starttls://, smtps:// or outbox:"
                ));
            }
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("\"{s}\": unclosed [ in the host"))?;
            match after.strip_prefix(':') {
                Some(p) => (h.to_string(), parse_port(p, s)?),
                None if after.is_empty() => (h.to_string(), default_port),
                None => return Err(format!("\"{s}\": unexpected text after the host")),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), parse_port(p, s)?),
                None => (rest.to_string(), default_port),
            }
        };
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(format!("\"{s}\": \"{host}\" is not a host name"));
        }
        Ok(match scheme {
            "smtp" => NextHopAddress::Smtp { host, port },
            "smtp+starttls" => NextHopAddress::SmtpStartTls { host, port },
            _ => NextHopAddress::Smtps { host, port },
        })
    }
}

fn parse_port(p: &str, whole: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("\"{whole}\": \"{p}\" is not a port number"))
}

impl fmt::Display for NextHopAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NextHopAddress::Smtp { host, port } => write!(f, "smtp://{}:{port}", bracket(host)),
            NextHopAddress::SmtpStartTls { host, port } => {
                write!(f, "smtp+starttls://{}:{port}", bracket(host))
            }
            NextHopAddress::Smtps { host, port } => write!(f, "smtps://{}:{port}", bracket(host)),
            NextHopAddress::Outbox { dir } => write!(f, "outbox:{}", dir.display()),
        }
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Credentials for the next hop's AUTH.
#[derive(Clone)]
pub struct NextHopAuth {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for NextHopAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NextHopAuth")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Why a message was not handed on. The relay turns each into the reply its client needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Could not connect, TLS failed, the connection dropped, or it timed out: try later (451 4.4.1).
    #[error("next hop {hop} unreachable: {detail}")]
    Unreachable { hop: String, detail: String },
    /// The next hop answered 4xx: try later (451 4.4.x).
    #[error("next hop {hop} deferred the message: {code} {text}")]
    Deferred {
        hop: String,
        code: u16,
        text: String,
    },
    /// The next hop answered 5xx: passed back to the client as it is.
    #[error("next hop {hop} refused the message: {code} {text}")]
    Refused {
        hop: String,
        code: u16,
        text: String,
    },
    /// A local failure (outbox disk full, permissions): try later (451 4.3.0).
    #[error("local delivery to {hop} failed: {detail}")]
    Local { hop: String, detail: String },
}

/// A configured next hop, ready to deliver.
pub struct NextHop {
    address: NextHopAddress,
    kind: Kind,
    /// The school's DKIM keys (`[dkim]`): the relay signs with them just before handing on.
    /// Loaded with the next hop, so a reload puts new keys in force with it.
    signing: Option<std::sync::Arc<crate::dkim::Signing>>,
}

enum Kind {
    Smtp(smtp::SmtpHop),
    Outbox(outbox::Outbox),
}

impl NextHop {
    /// Builds the next hop for `address`. Creates the outbox folders if needed.
    pub fn new(
        address: &NextHopAddress,
        auth: Option<NextHopAuth>,
        helo_name: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, DeliveryError> {
        let kind = match address {
            NextHopAddress::Outbox { dir } => Kind::Outbox(outbox::Outbox::open(dir)?),
            other => Kind::Smtp(smtp::SmtpHop::new(other, auth, helo_name, timeout)?),
        };
        Ok(NextHop {
            address: address.clone(),
            kind,
            signing: None,
        })
    }

    /// Signs what the relay hands on with `signing` (see [`crate::dkim`]).
    pub fn with_signing(mut self, signing: Option<std::sync::Arc<crate::dkim::Signing>>) -> Self {
        self.signing = signing;
        self
    }

    /// The DKIM keys in force, when `[dkim]` is set.
    pub fn signing(&self) -> Option<&crate::dkim::Signing> {
        self.signing.as_deref()
    }

    /// The next hop as configured, for logs and the audit trail (never with credentials).
    pub fn describe(&self) -> String {
        self.address.to_string()
    }

    /// Hands `message` on for `envelope`; `Ok` carries the next hop's reply (its queue id).
    ///
    /// `key` identifies this message as received (the envelope and the SHA-256 of the bytes as
    /// the client sent them: `handoff::delivery_key`); the outbox uses it so that a client
    /// retrying after a lost 250 does not get the message stored twice.
    pub async fn deliver(
        &self,
        envelope: &Envelope,
        message: &[u8],
        key: &str,
    ) -> Result<String, DeliveryError> {
        match &self.kind {
            Kind::Smtp(hop) => hop.deliver(envelope, message).await,
            Kind::Outbox(outbox) => outbox.deliver(envelope, message, key).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            NextHopAddress::parse("smtp://mail.example:2525").unwrap(),
            NextHopAddress::Smtp {
                host: "mail.example".into(),
                port: 2525
            }
        );
        assert_eq!(
            NextHopAddress::parse("smtp+starttls://relay.example").unwrap(),
            NextHopAddress::SmtpStartTls {
                host: "relay.example".into(),
                port: 587
            }
        );
        assert_eq!(
            NextHopAddress::parse("smtps://[::1]:465").unwrap(),
            NextHopAddress::Smtps {
                host: "::1".into(),
                port: 465
            }
        );
        assert_eq!(
            NextHopAddress::parse("outbox:var/outbox").unwrap(),
            NextHopAddress::Outbox {
                dir: "var/outbox".into()
            }
        );
        for bad in [
            "smtp://",
            "ftp://x",
            "mail.example",
            "smtp://h:0",
            "smtp://h:99999",
            "outbox:",
        ] {
            assert!(
                NextHopAddress::parse(bad).is_err(),
                "{bad} should be refused"
            );
        }
    }
}
