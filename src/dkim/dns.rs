//! DNS for DKIM: the resolver that fetches incoming signers' keys (ARC), and the check
//! `schoolgate policy check` makes of the school's own published record.

use std::net::SocketAddr;
use std::time::Duration;

use mail_auth::MessageAuthenticator;
use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};

/// A resolver: the server `[dkim] resolver` names, or the system's (`/etc/resolv.conf`).
pub fn authenticator(server: Option<SocketAddr>) -> Result<MessageAuthenticator, String> {
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    match server {
        Some(addr) => {
            let mut ns = NameServerConfig::udp(addr.ip());
            for c in &mut ns.connections {
                c.port = addr.port();
            }
            MessageAuthenticator::new(ResolverConfig::from_name_servers(vec![ns]), opts)
                .map_err(|e| e.to_string())
        }
        None => MessageAuthenticator::new_system_conf().map_err(|e| {
            format!("{e}; set [dkim] resolver = \"IP:53\" to name the DNS server to ask")
        }),
    }
}

/// What DNS says of a key's published record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// The record holds this key's public key.
    Matches,
    /// A record is published, with another key (`p=` as found).
    Other(String),
    /// No DKIM record at the name.
    Missing,
    /// DNS could not be asked (no network, no answer): the detail.
    Unknown(String),
}

/// Looks up `selector._domainkey.domain` and compares its `p=` with `public_b64`.
pub async fn check_published(
    authenticator: &MessageAuthenticator,
    selector: &str,
    domain: &str,
    public_b64: &str,
) -> Published {
    let name = format!("{selector}._domainkey.{domain}.");
    let lookup = tokio::time::timeout(
        Duration::from_secs(6),
        authenticator.txt_raw_lookup(name.as_str()),
    )
    .await;
    let raw = match lookup {
        Err(_) => return Published::Unknown("no answer within 6 s".into()),
        Ok(Err(mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(_)))) => {
            return Published::Missing;
        }
        Ok(Err(e)) => return Published::Unknown(e.to_string()),
        Ok(Ok(raw)) => raw,
    };
    if raw.is_empty() {
        return Published::Missing;
    }
    match record_key(&String::from_utf8_lossy(&raw)) {
        Some(p) if p == public_b64 => Published::Matches,
        Some(p) => Published::Other(p),
        None => Published::Missing,
    }
}

/// The `p=` of a DKIM record, whitespace removed.
pub fn record_key(record: &str) -> Option<String> {
    record.split(';').find_map(|tag| {
        let (name, value) = tag.split_once('=')?;
        (name.trim() == "p").then(|| value.chars().filter(|c| !c.is_whitespace()).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_read_from_a_record() {
        assert_eq!(
            record_key("v=DKIM1; k=rsa; p=MIIB IjAN\tBgkq").as_deref(),
            Some("MIIBIjANBgkq")
        );
        assert_eq!(record_key("v=DKIM1; k=rsa"), None);
    }
}
