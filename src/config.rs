//! The configuration file: its TOML model, its validation, and errors that name the file, line
//! and field at fault.
//!
//! Every section of the SPEC's config is accepted here, and an unknown key anywhere is an error
//! (a misspelt key silently ignored is a rule silently off). Values that can be wrong on their
//! own (addresses, networks, sizes, durations, next hops) are checked as they are read, so the
//! TOML parser reports their exact position.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use crate::smtp::next_hop::NextHopAddress;

/// Where the config is looked for when `--config` is not given and `SCHOOLGATE_CONFIG` is unset.
pub const DEFAULT_PATH: &str = "/etc/schoolgate/schoolgate.toml";

/// A config that cannot be used: what is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: Option<usize>,
    /// `section.key`, when known.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[school]`: the one school, or in a trust (`[[schools]]`) the trust-wide defaults (and
    /// the school that mail from no school's domain belongs to).
    #[serde(default)]
    pub school: School,
    pub relay: Relay,
    #[serde(default)]
    pub milter: Milter,
    #[serde(default)]
    pub web: Web,
    pub storage: Storage,
    #[serde(default)]
    pub disclaimer: Disclaimer,
    #[serde(default)]
    pub safeguarding: Safeguarding,
    #[serde(default)]
    pub sensitive: Sensitive,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub quarantine: QuarantineConfig,
    /// `[dkim]`: signing mail for the school's domains as it leaves (see [`Dkim`]).
    #[serde(default)]
    pub dkim: Option<Dkim>,
    #[serde(default)]
    pub data_protection: DataProtection,
    /// `[[schools]]` as written: each table is merged over the trust-wide defaults in
    /// [`Config::parse`] into [`Config::schools`].
    #[serde(default, rename = "schools")]
    schools_written: Vec<toml::Table>,
    /// The schools of a multi-academy trust, each with the trust-wide defaults of `[school]`,
    /// `[disclaimer]` and `[safeguarding]` merged under its own keys; empty for a single school.
    #[serde(skip)]
    pub schools: Vec<SchoolPolicy>,
    /// In a trust, the name of the school this config decides mail for ([`Config::for_school`]);
    /// `None` for a single school's config and for the trust-wide defaults.
    #[serde(skip)]
    pub trust_school: Option<String>,
    /// The file this was read from.
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct School {
    /// Required for a single school (checked in [`Config::parse`]); in a trust, each
    /// `[[schools]]` names itself.
    #[serde(default)]
    pub name: String,
    /// Staff addresses are in these domains.
    #[serde(default)]
    pub domains: Vec<Domain>,
    /// Pupils' school addresses are in these domains.
    #[serde(default)]
    pub pupil_domains: Vec<Domain>,
    /// The people (CSV in the shape of an MIS export). Empty only for a trust's defaults
    /// without a trust-wide directory: then nobody is known to the trust-wide policy.
    #[serde(default)]
    pub directory: PathBuf,
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Staff roles the directory may use besides `staff` and `headteacher`.
    #[serde(default)]
    pub staff_roles: Vec<String>,
    /// The school's own phone numbers (the office, the school's mobiles): giving one of these
    /// to a pupil is not `personal-contact-shared`.
    #[serde(default)]
    pub phones: Vec<String>,
}

fn default_timezone() -> String {
    "Europe/London".into()
}

impl Default for School {
    fn default() -> Self {
        School {
            name: String::new(),
            domains: Vec::new(),
            pupil_domains: Vec::new(),
            directory: PathBuf::new(),
            timezone: default_timezone(),
            staff_roles: Vec::new(),
            phones: Vec::new(),
        }
    }
}

/// One school of a multi-academy trust (`[[schools]]`), the trust-wide defaults merged in:
/// its own domains, directory, disclaimer and safeguarding.
#[derive(Debug, Clone)]
pub struct SchoolPolicy {
    pub school: School,
    pub disclaimer: Disclaimer,
    pub safeguarding: Safeguarding,
}

impl SchoolPolicy {
    /// Whether mail from `sender` belongs to this school: its domain is one of the school's
    /// `domains` or `pupil_domains` (exactly, ignoring case).
    pub fn owns(&self, sender: &str) -> bool {
        let Some((_, domain)) = sender.trim().rsplit_once('@') else {
            return false;
        };
        let domain = domain.trim_end_matches('>');
        self.school
            .domains
            .iter()
            .chain(&self.school.pupil_domains)
            .any(|d| d.0.eq_ignore_ascii_case(domain))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relay {
    pub listen: Vec<SocketAddr>,
    pub hostname: String,
    pub allowed_clients: Vec<IpNet>,
    pub next_hop: NextHop,
    #[serde(default)]
    pub next_hop_auth: Option<NextHopAuthConfig>,
    #[serde(default = "defaults::next_hop_timeout")]
    pub next_hop_timeout: HumanDuration,
    #[serde(default = "defaults::max_message_size")]
    pub max_message_size: ByteSize,
    #[serde(default = "defaults::max_recipients")]
    pub max_recipients: usize,
    #[serde(default = "defaults::max_line_length")]
    pub max_line_length: ByteSize,
    #[serde(default = "defaults::max_header_size")]
    pub max_header_size: ByteSize,
    #[serde(default = "defaults::command_timeout")]
    pub command_timeout: HumanDuration,
    #[serde(default = "defaults::data_timeout")]
    pub data_timeout: HumanDuration,
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    #[serde(default = "defaults::max_connections_per_client")]
    pub max_connections_per_client: usize,
    #[serde(default = "defaults::shutdown_grace")]
    pub shutdown_grace: HumanDuration,
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// The sender domains MAIL FROM may use; default the school's `domains` and
    /// `pupil_domains`. `["*"]` turns the check off. See [`Config::allowed_senders`].
    #[serde(default)]
    pub allowed_senders: Option<Vec<AllowedSender>>,
    /// The one Microsoft 365 tenant whose mail may pass (checked against the
    /// `X-MS-Exchange-CrossTenant-Id` header Exchange Online stamps). Unset: no check.
    #[serde(default)]
    pub m365_tenant_id: Option<TenantId>,
    /// Stamp `X-Schoolgate-Processed: <hostname>` on relayed mail that does not carry it yet:
    /// the header a Microsoft 365 transport rule matches so that mail schoolgate hands back
    /// is not sent to it again. Off by default (mail then leaves as it came, plus `Received:`).
    #[serde(default)]
    pub processed_header: bool,
}

/// The header [`Relay::processed_header`] stamps.
pub const PROCESSED_HEADER: &str = "X-Schoolgate-Processed";

/// `[dkim]`: the school's DKIM keys. Either the single form (`domain`, `selector`, `key`) or a
/// list `keys = [{ domain, selector, key }, …]` (`[[dkim.keys]]`), or both (the single one is
/// then first). A message is signed with the key whose domain is its `From:` domain exactly.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dkim {
    #[serde(default)]
    pub domain: Option<Domain>,
    #[serde(default)]
    pub selector: Option<Selector>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    #[serde(default)]
    pub keys: Vec<DkimKey>,
    /// Add an ARC set recording what the incoming DKIM signatures said.
    #[serde(default)]
    pub arc: bool,
    /// The DNS server (`"IP:port"`) asked for incoming signatures' keys (ARC) and by
    /// `policy check`; default the system's (`/etc/resolv.conf`).
    #[serde(default)]
    pub resolver: Option<SocketAddr>,
}

/// One key of `[dkim] keys`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimKey {
    pub domain: Domain,
    pub selector: Selector,
    pub key: PathBuf,
}

/// A DKIM selector: DNS labels (`sg2026`, `schoolgate.2026`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector(pub String);

impl FromStr for Selector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.split('.').all(|l| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && l.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if ok {
            Ok(Selector(s.to_string()))
        } else {
            Err(format!(
                "\"{s}\" is not a DKIM selector; use letters, digits and '-', e.g. \"sg2026\""
            ))
        }
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d)
    }
}

impl Dkim {
    /// Every key, the single form first.
    pub fn all_keys(&self) -> Vec<DkimKey> {
        let single = match (&self.domain, &self.selector, &self.key) {
            (Some(domain), Some(selector), Some(key)) => Some(DkimKey {
                domain: domain.clone(),
                selector: selector.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        single
            .into_iter()
            .chain(self.keys.iter().cloned())
            .collect()
    }
}

/// One entry of `[relay] allowed_senders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedSender {
    /// `"*"`: any sender (the check is off).
    Anyone,
    /// `"school.sch.uk"`: that domain only, not its subdomains.
    Domain(String),
    /// `"*.school.sch.uk"`: any subdomain of it (not the domain itself).
    Subdomains(String),
}

impl FromStr for AllowedSender {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t == "*" {
            return Ok(AllowedSender::Anyone);
        }
        let (sub, domain) = match t.strip_prefix("*.") {
            Some(d) => (true, d),
            None => (false, t),
        };
        let domain = Domain::from_str(domain).map_err(|_| {
            format!(
                "\"{s}\" is not a sender domain; write a domain (\"school.sch.uk\"), its \
                 subdomains (\"*.school.sch.uk\"), or \"*\" alone to allow any sender"
            )
        })?;
        Ok(if sub {
            AllowedSender::Subdomains(domain.0)
        } else {
            AllowedSender::Domain(domain.0)
        })
    }
}

impl<'de> Deserialize<'de> for AllowedSender {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d)
    }
}

/// A Microsoft 365 tenant id (a GUID), kept in lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantId(pub String);

impl FromStr for TenantId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let groups: Vec<&str> = t.split('-').collect();
        let ok = groups.len() == 5
            && groups
                .iter()
                .zip([8, 4, 4, 4, 12])
                .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()));
        if ok {
            Ok(TenantId(t.to_ascii_lowercase()))
        } else {
            Err(format!(
                "\"{s}\" is not a Microsoft 365 tenant id; it is a GUID such as \
                 \"72f988bf-86f1-41af-91ab-2d7cd011db47\" (Entra admin centre, Overview, Tenant ID)"
            ))
        }
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d)
    }
}

mod defaults {
    use super::{ByteSize, HumanDuration};
    use std::time::Duration;
    pub fn next_hop_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(300))
    }
    pub fn max_message_size() -> ByteSize {
        ByteSize(50 << 20)
    }
    pub fn max_recipients() -> usize {
        1000
    }
    pub fn max_line_length() -> ByteSize {
        ByteSize(64 << 10)
    }
    pub fn max_header_size() -> ByteSize {
        ByteSize(1 << 20)
    }
    pub fn command_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(300))
    }
    pub fn data_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(600))
    }
    pub fn max_connections() -> usize {
        500
    }
    pub fn max_connections_per_client() -> usize {
        100
    }
    pub fn shutdown_grace() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
    pub fn alert_window() -> HumanDuration {
        HumanDuration(Duration::from_secs(120))
    }
    pub fn checkpoint_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(3600))
    }
    pub fn checkpoint_mail() -> bool {
        true
    }
    pub fn checkpoint_mail_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(24 * 3600))
    }
    pub fn evidence_retention_days() -> u32 {
        365
    }
    pub fn markings() -> Vec<String> {
        vec!["OFFICIAL-SENSITIVE".into()]
    }
    pub fn max_visible_recipients() -> usize {
        10
    }
    /// The consumer mail providers a UK family uses; `name.*` is the provider under any
    /// country ending.
    pub fn consumer_mail_domains() -> Vec<String> {
        [
            "gmail.com",
            "googlemail.com",
            "outlook.*",
            "hotmail.*",
            "live.*",
            "msn.com",
            "yahoo.*",
            "ymail.com",
            "rocketmail.com",
            "icloud.com",
            "me.com",
            "mac.com",
            "aol.*",
            "btinternet.com",
            "btopenworld.com",
            "talktalk.net",
            "sky.com",
            "virginmedia.com",
            "blueyonder.co.uk",
            "ntlworld.com",
            "tiscali.co.uk",
            "protonmail.*",
            "proton.me",
            "pm.me",
            "gmx.*",
            "mail.com",
            "zoho.com",
            "fastmail.com",
            "tutanota.com",
            "yandex.*",
        ]
        .map(String::from)
        .to_vec()
    }
    pub fn milter_allowed_clients() -> Vec<ipnet::IpNet> {
        use std::net::{Ipv4Addr, Ipv6Addr};
        // Loopback only: the mail server on the same host.
        vec![
            ipnet::IpNet::V4(ipnet::Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)),
            ipnet::IpNet::V6(ipnet::Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
        ]
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextHopAuthConfig {
    pub user: String,
    pub password_file: PathBuf,
}

/// `[milter]`: the same policy over the milter protocol (Postfix `smtpd_milters`, Sendmail).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Milter {
    /// Where the mail server connects: `"127.0.0.1:7357"` (TCP) or a Unix socket path
    /// (`"/run/schoolgate/milter.sock"`, or `"unix:/…"`). Unset: no milter.
    #[serde(default)]
    pub listen: Option<MilterListen>,
    /// Where a message the policy quarantines goes.
    #[serde(default)]
    pub quarantine: MilterQuarantine,
    /// What the mail server is told when schoolgate cannot decide about a message (too large,
    /// the policy could not run, the conversation broke off).
    #[serde(default)]
    pub on_error: MilterOnError,
    /// The largest message inspected; default `relay.max_message_size`.
    #[serde(default)]
    pub max_message_size: Option<ByteSize>,
    /// Who may connect to a TCP milter socket (CIDR list); default loopback only. Others are
    /// disconnected before option negotiation. A Unix socket keeps its own file permissions.
    #[serde(default = "defaults::milter_allowed_clients")]
    pub allowed_clients: Vec<IpNet>,
}

impl Default for Milter {
    fn default() -> Self {
        Milter {
            listen: None,
            quarantine: MilterQuarantine::default(),
            on_error: MilterOnError::default(),
            max_message_size: None,
            allowed_clients: defaults::milter_allowed_clients(),
        }
    }
}

/// The milter's listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MilterListen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for MilterListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MilterListen::Tcp(a) => write!(f, "inet:{a}"),
            MilterListen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl FromStr for MilterListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Some(path) = t.strip_prefix("unix:").or_else(|| t.strip_prefix("local:")) {
            return MilterListen::from_str(path).and_then(|l| match l {
                MilterListen::Unix(p) => Ok(MilterListen::Unix(p)),
                MilterListen::Tcp(_) => Err(format!("\"{s}\" is not a socket path")),
            });
        }
        if t.starts_with('/') {
            return Ok(MilterListen::Unix(PathBuf::from(t)));
        }
        let addr = t.strip_prefix("inet:").unwrap_or(t);
        addr.parse().map(MilterListen::Tcp).map_err(|_| {
            format!(
                "\"{s}\" is neither host:port (e.g. \"127.0.0.1:7357\") nor a Unix socket path (e.g. \"/run/schoolgate/milter.sock\")"
            )
        })
    }
}

impl<'de> Deserialize<'de> for MilterListen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d)
    }
}

/// Where the milter puts a message the policy quarantines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MilterQuarantine {
    /// schoolgate's own quarantine (released with `schoolgate quarantine release`); the mail
    /// server is told to discard its copy.
    #[default]
    Schoolgate,
    /// The mail server's hold queue (Postfix: `postsuper -H` releases it).
    Hold,
}

/// What the milter tells the mail server when it cannot decide.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MilterOnError {
    /// 4xx: the sender's server keeps the message and tries again.
    #[default]
    Tempfail,
    /// Let it through unfiltered (recorded in the audit trail).
    Accept,
    /// 5xx: the sender is told it failed.
    Reject,
}

impl Config {
    /// The largest message the milter inspects.
    pub fn milter_max_message_size(&self) -> u64 {
        self.milter
            .max_message_size
            .unwrap_or(self.relay.max_message_size)
            .0
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Web {
    /// `[web.oidc]`: sign-in with the school's Microsoft or Google accounts.
    #[serde(default)]
    pub oidc: Option<Oidc>,
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Serve the web page over HTTPS with the relay's certificate (`relay.tls_cert`/`tls_key`).
    #[serde(default)]
    pub tls: bool,
    /// Serve plain HTTP on an address other than loopback anyway: passwords and session
    /// cookies then cross the network in clear (the cookie cannot be `Secure`). Off: such a
    /// listener needs `tls = true`.
    #[serde(default)]
    pub insecure_http: bool,
    /// Who may read `GET /metrics` without a token (addresses or CIDR ranges). Not set:
    /// loopback only.
    #[serde(default)]
    pub metrics_allowed_clients: Option<Vec<IpNet>>,
    /// A file holding a bearer token that also opens `GET /metrics` (`Authorization: Bearer
    /// …`), for a Prometheus elsewhere.
    #[serde(default)]
    pub metrics_token_file: Option<PathBuf>,
    /// The address people open the web page at (`https://schoolgate.example-academy.sch.uk:8443`),
    /// for links in mail (the quarantine digest). Not set: made from `listen` (its host, or
    /// `relay.hostname` when it listens on every address).
    #[serde(default)]
    pub public_url: Option<PublicUrl>,
}

/// `[web] public_url`: an `http://` or `https://` address, kept without a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(pub String);

impl<'de> Deserialize<'de> for PublicUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let url = s.trim().trim_end_matches('/');
        let host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        match host {
            Some(h) if !h.is_empty() && !h.contains(char::is_whitespace) => {
                Ok(PublicUrl(url.to_string()))
            }
            _ => Err(serde::de::Error::custom(format!(
                "\"{s}\" is not a web address; write e.g. \"https://schoolgate.example-academy.sch.uk:8443\""
            ))),
        }
    }
}

/// `[quarantine]`: the daily digest of held messages for the network manager.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuarantineConfig {
    /// Who gets the digest (the network manager); empty: no digest.
    #[serde(default)]
    pub digest_to: Vec<Address>,
    /// When, every day in `[school] timezone`: `"07:30"` (the default) or `"off"`.
    #[serde(default)]
    pub digest: crate::review::report::schedule::Daily,
}

impl Web {
    /// The clients `GET /metrics` answers without a token (loopback unless configured).
    pub fn metrics_clients(&self) -> Vec<IpNet> {
        match &self.metrics_allowed_clients {
            Some(list) => list.clone(),
            None => ["127.0.0.0/8", "::1/128"]
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect(),
        }
    }

    /// Whether the page is served over plain HTTP on an address other than loopback (only
    /// with `insecure_http = true`).
    pub fn insecure(&self) -> bool {
        !self.tls && self.listen.is_some_and(|a| !a.ip().is_loopback())
    }

    /// What `insecure_http` costs, said at start and by `policy check` (None: nothing to say).
    pub fn insecure_warning(&self) -> Option<String> {
        let listen = self.listen.filter(|_| self.insecure())?;
        Some(format!(
            "[web] insecure_http = true: the web page on {listen} is plain HTTP, so passwords and the session cookie (which cannot be Secure) cross the network in clear and anyone on the path can take over a session; set [web] tls = true"
        ))
    }

    /// Where links in mail point: `public_url`, else made from `listen` (`relay_host` when it
    /// listens on every address); `None` without a web listener.
    pub fn base_url(&self, relay_host: &str) -> Option<String> {
        if let Some(u) = &self.public_url {
            return Some(u.0.clone());
        }
        let listen = self.listen?;
        let scheme = if self.tls { "https" } else { "http" };
        let host = match listen.ip() {
            ip if ip.is_unspecified() => relay_host.to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        Some(format!("{scheme}://{host}:{}", listen.port()))
    }
}

/// `[audit]`: how long the trail is kept and how its head is anchored outside the database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Records older than this many days are purged (a purge record keeps the chain
    /// verifiable). Not set: kept for ever.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// How often the head of the chain (count and hash) is written to the log as a checkpoint.
    #[serde(default = "defaults::checkpoint_interval")]
    pub checkpoint_interval: HumanDuration,
    /// Also mail a checkpoint to `[safeguarding] dsl`, so a copy lives outside this machine
    /// (on by default).
    #[serde(default = "defaults::checkpoint_mail")]
    pub checkpoint_mail: bool,
    /// How often that mail goes (when the head has moved): daily by default.
    #[serde(default = "defaults::checkpoint_mail_interval")]
    pub checkpoint_mail_interval: HumanDuration,
}

/// `[web.oidc]`: sign-in with the school's accounts through OpenID Connect (Microsoft Entra ID,
/// Google Workspace, or any certified provider). Local accounts keep working beside it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Oidc {
    /// The issuer, e.g. `https://login.microsoftonline.com/TENANT-ID/v2.0` or
    /// `https://accounts.google.com`; its discovery document is read at start.
    pub issuer: String,
    pub client_id: String,
    /// A file holding the client secret (one line), readable by schoolgate only. Not set: a
    /// public client (PKCE only), for a provider that allows it.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Where the provider sends the browser back: this gateway's page, as registered with the
    /// provider, e.g. `https://schoolgate.school.org.uk/login/oidc/callback`.
    pub redirect_url: String,
    /// Who gets which role: `network-manager` and `dsl`, each a list of group object IDs or
    /// app-role values (the ID token's `groups` and `roles` claims), or email addresses (matched
    /// against a verified `email` claim, for Google). Someone matching none is refused.
    #[serde(default)]
    pub roles: BTreeMap<String, Vec<String>>,
    /// Google Workspace: the school's domain; the ID token's `hd` claim must be this.
    #[serde(default)]
    pub hosted_domain: Option<String>,
    /// The button's words after "Sign in with" (default: Microsoft, Google, or the issuer's
    /// host).
    #[serde(default)]
    pub name: Option<String>,
}

impl Oidc {
    /// What is wrong with it, as (key, message).
    fn check(&self) -> Result<(), (&'static str, String)> {
        let issuer = openidconnect::url::Url::parse(self.issuer.trim()).map_err(|e| {
            (
                "issuer",
                format!(
                    "{:?} is not a URL ({e}); e.g. \"https://login.microsoftonline.com/TENANT-ID/v2.0\"",
                    self.issuer
                ),
            )
        })?;
        let loopback = |u: &openidconnect::url::Url| match u.host() {
            Some(openidconnect::url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(openidconnect::url::Host::Ipv4(a)) => a.is_loopback(),
            Some(openidconnect::url::Host::Ipv6(a)) => a.is_loopback(),
            None => false,
        };
        if issuer.scheme() != "https" && !(issuer.scheme() == "http" && loopback(&issuer)) {
            return Err((
                "issuer",
                format!(
                    "{:?} must be an https:// URL (plain http only on this machine, for testing)",
                    self.issuer
                ),
            ));
        }
        if self.client_id.trim().is_empty() {
            return Err((
                "client_id",
                "is empty; give the application (client) ID the provider gave this gateway".into(),
            ));
        }
        let redirect = openidconnect::url::Url::parse(self.redirect_url.trim()).map_err(|e| {
            (
                "redirect_url",
                format!(
                    "{:?} is not a URL ({e}); e.g. \"https://schoolgate.school.org.uk/login/oidc/callback\"",
                    self.redirect_url
                ),
            )
        })?;
        if !matches!(redirect.scheme(), "https" | "http") || redirect.query().is_some() {
            return Err((
                "redirect_url",
                format!(
                    "{:?} must be an https:// address of this gateway's web page with no query, e.g. \"https://schoolgate.school.org.uk/login/oidc/callback\"",
                    self.redirect_url
                ),
            ));
        }
        for (role, values) in &self.roles {
            if !matches!(role.as_str(), "network-manager" | "dsl") {
                return Err((
                    "roles",
                    format!("{role:?} is not a role; the roles are network-manager and dsl"),
                ));
            }
            if values.iter().any(|v| v.trim().is_empty()) {
                return Err(("roles", format!("{role} lists an empty value")));
            }
        }
        if self
            .hosted_domain
            .as_deref()
            .is_some_and(|d| d.trim().is_empty() || d.contains(['@', '/', ' ']))
        {
            return Err((
                "hosted_domain",
                "must be the school's Google Workspace domain, e.g. \"school.org.uk\"".into(),
            ));
        }
        Ok(())
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention_days: None,
            checkpoint_interval: defaults::checkpoint_interval(),
            checkpoint_mail: defaults::checkpoint_mail(),
            checkpoint_mail_interval: defaults::checkpoint_mail_interval(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    pub state_dir: PathBuf,
    /// The shared PostgreSQL store of a trust's gateways, e.g.
    /// `postgres://schoolgate@db.trust.example/schoolgate`; `None`: SQLite under `state_dir`.
    #[serde(default)]
    pub database: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disclaimer {
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub html: String,
    #[serde(default)]
    pub exempt_roles: Vec<String>,
    #[serde(default)]
    pub exempt_addresses: Vec<Address>,
    #[serde(default)]
    pub on_signed: OnSigned,
}

/// What to do with a signed or encrypted message: never break its signature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnSigned {
    /// Deliver it untouched.
    #[default]
    Skip,
    /// Add the disclaimer in a new multipart/mixed around the untouched signed entity.
    Wrap,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Safeguarding {
    #[serde(default)]
    pub dsl: Vec<Address>,
    #[serde(default)]
    pub contact_hours: Option<ContactHours>,
    #[serde(default)]
    pub rules: BTreeMap<ContactRule, Action>,
    /// Flags from one sender within this window go to the DSL as one alert (no alert fatigue).
    #[serde(default = "defaults::alert_window")]
    pub alert_window: HumanDuration,
    /// The sender of alerts (default `schoolgate@` the first school domain).
    #[serde(default)]
    pub alert_from: Option<Address>,
    /// When the weekly report is mailed to the DSLs: `"Mon 07:30"` (the default) in
    /// `[school] timezone`, or `"off"`.
    #[serde(default)]
    pub weekly_report: crate::review::report::schedule::WeeklyReport,
    /// How long the delivered copy of a flagged message is kept as evidence.
    #[serde(default = "defaults::evidence_retention_days")]
    pub evidence_retention_days: u32,
    /// Who is alerted instead when the flagged sender is the headteacher or one of `dsl` (the
    /// chair of governors, the LADO contact): an alert never goes to the person it is about.
    #[serde(default)]
    pub escalate_to: Vec<Address>,
    /// Consumer mail providers: an address at one of these written to a pupil is personal
    /// (`personal-contact-shared`); an organisation's address is not. `name.*` stands for the
    /// provider under any country ending (hotmail.co.uk, hotmail.fr).
    #[serde(default = "defaults::consumer_mail_domains")]
    pub consumer_mail_domains: Vec<String>,
}

/// When staff may contact pupils. Seed 001: "contact with pupils and parents … 8.00 am to
/// 6.00 pm".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactHours {
    pub start: ClockTime,
    pub end: ClockTime,
    pub days: Days,
}

impl Default for ContactHours {
    fn default() -> Self {
        ContactHours {
            start: ClockTime(8 * 60),
            end: ClockTime(18 * 60),
            days: Days(0b0011111),
        }
    }
}

/// A time of day, `"08:00"`, as minutes after midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClockTime(pub u16);

impl FromStr for ClockTime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("\"{s}\" is not a time of day; write e.g. \"08:00\"");
        let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
        let h: u16 = h.parse().map_err(|_| bad())?;
        let m: u16 = m.parse().map_err(|_| bad())?;
        if h > 24 || m > 59 || (h == 24 && m > 0) {
            return Err(bad());
        }
        Ok(ClockTime(h * 60 + m))
    }
}

impl<'de> Deserialize<'de> for ClockTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d)
    }
}

/// Days of the week (bit 0 = Monday), written `"Mon-Fri"`, `"Mon,Wed,Fri"` or `"Mon-Fri,Sun"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days(pub u8);

impl Days {
    /// Is day `n` (0 = Monday … 6 = Sunday) one of them?
    pub fn contains(self, n: u8) -> bool {
        n < 7 && self.0 & (1 << n) != 0
    }
}

impl FromStr for Days {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let day = |d: &str| {
            let d = d.trim().to_ascii_lowercase();
            NAMES
                .iter()
                .position(|n| d.len() >= 3 && n.starts_with(&d[..3]))
                .map(|i| i as u8)
                .ok_or_else(|| format!("\"{}\" is not a day; write e.g. \"Mon-Fri\"", d))
        };
        let mut mask = 0u8;
        for item in s.split(',').filter(|i| !i.trim().is_empty()) {
            match item.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a)?, day(b)?);
                    let mut i = a;
                    loop {
                        mask |= 1 << i;
                        if i == b {
                            break;
                        }
                        i = (i + 1) % 7;
                    }
                }
                None => mask |= 1 << day(item)?,
            }
        }
        if mask == 0 {
            return Err(format!("\"{s}\" names no day; write e.g. \"Mon-Fri\""));
        }
        Ok(Days(mask))
    }
}

impl<'de> Deserialize<'de> for Days {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d)
    }
}

/// `[sensitive]`: attachments that hold pupils' personal data (seeds 000–003: "personal data
/// leaving the school network must be encrypted").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sensitive {
    #[serde(default)]
    pub rules: BTreeMap<SensitiveRule, Action>,
    #[serde(default = "default_true")]
    pub notify_sender: bool,
    #[serde(default)]
    pub quarantine_retention_days: Option<u32>,
    /// How much of what makes an attachment sensitive.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// How much of it makes the text the author wrote sensitive (`sensitive-data-in-body`):
    /// the same keys as `thresholds`, higher by default, as one pupil's needs in a letter home
    /// are the school's daily work and a pasted list is not.
    #[serde(default = "Thresholds::body", deserialize_with = "body_thresholds")]
    pub body_thresholds: Thresholds,
    /// Special-category or safeguarding words of this school's own, beside the built-in list.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Protective markings that make an attachment sensitive wherever they appear in it.
    #[serde(default = "defaults::markings")]
    pub markings: Vec<String>,
    /// Microsoft sensitivity labels (their GUID or name) that make a message's attachments
    /// sensitive.
    #[serde(default)]
    pub labels: Vec<String>,
    /// How far an attachment is opened before it counts as unscannable.
    #[serde(default)]
    pub limits: ScanLimits,
}

impl Default for Sensitive {
    fn default() -> Self {
        Sensitive {
            rules: BTreeMap::new(),
            notify_sender: true,
            quarantine_retention_days: None,
            thresholds: Thresholds::default(),
            body_thresholds: Thresholds::body(),
            keywords: Vec::new(),
            markings: defaults::markings(),
            labels: Vec::new(),
            limits: ScanLimits::default(),
        }
    }
}

/// An attachment is sensitive when any one of these is reached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Distinct pupil or staff identifiers (UPN, ULN, NHS number, National Insurance number):
    /// a class list with UPNs, a payroll sheet.
    pub identifiers: u32,
    /// Distinct people with a date of birth beside their name.
    pub birth_dates: u32,
    /// Pupils (named, or identified by number or date of birth) beside a special-category or
    /// safeguarding word: an SEN register, a CP referral, a medical needs list.
    pub special_category: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            identifiers: 2,
            birth_dates: 2,
            special_category: 1,
        }
    }
}

impl Thresholds {
    /// The defaults of `[sensitive.body_thresholds]`: a list of pupils (two or more with an
    /// identifier, a date of birth or special-category data) in the text the author wrote.
    pub fn body() -> Self {
        Thresholds {
            identifiers: 2,
            birth_dates: 2,
            special_category: 2,
        }
    }
}

/// `[sensitive.body_thresholds]`: a key left out keeps its body default, not the attachment one.
fn body_thresholds<'de, D: Deserializer<'de>>(d: D) -> Result<Thresholds, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Given {
        identifiers: Option<u32>,
        birth_dates: Option<u32>,
        special_category: Option<u32>,
    }
    let given = Given::deserialize(d)?;
    let body = Thresholds::body();
    Ok(Thresholds {
        identifiers: given.identifiers.unwrap_or(body.identifiers),
        birth_dates: given.birth_dates.unwrap_or(body.birth_dates),
        special_category: given.special_category.unwrap_or(body.special_category),
    })
}

/// Hard limits on opening attachments (decompression bombs, deep nesting, slow files).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanLimits {
    /// Archives inside archives (a ZIP in a ZIP is depth 2).
    pub max_depth: usize,
    /// Bytes decompressed for one message, over all its attachments.
    pub max_expanded_size: ByteSize,
    /// Entries in one archive.
    pub max_entries: usize,
    /// Decompressed over compressed size of one entry, once it is past 1 MiB.
    pub max_ratio: u32,
    /// Time spent opening one message's attachments.
    pub max_scan_time: HumanDuration,
    /// Messages whose attachments are checked at the same time (relay and milter together);
    /// more wait their turn, so memory stays bounded under load. Default: the number of cores.
    pub max_parallel_scans: usize,
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits {
            max_depth: 4,
            max_expanded_size: ByteSize(256 << 20),
            max_entries: 10_000,
            max_ratio: 200,
            max_scan_time: HumanDuration(std::time::Duration::from_secs(10)),
            max_parallel_scans: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

fn default_true() -> bool {
    true
}

/// The safeguarding contact rules (SPEC, "Rule names").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContactRule {
    PupilPersonalAddress,
    StaffPersonalAddress,
    PersonalContactShared,
    OutOfHoursPupilContact,
}

/// The sensitive-attachment rules (SPEC, "Rule names").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SensitiveRule {
    UnencryptedSensitiveAttachment,
    UnscannableAttachment,
    /// Personal data in the text the author wrote, to someone outside the school.
    SensitiveDataInBody,
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Deliver, audit, alert the DSL.
    Flag,
    Quarantine,
    Reject,
    Off,
}

/// `[data_protection] allow_sender_release`: whether the sender of a message held by
/// `exposed-recipients`, `wrong-recipient` or `password-in-message` may release it with a
/// reason (the link in the sender notice, or `quarantine release ID --justification`).
/// `true`/`false` sets all three; a table (`{ wrong-recipient = false }`) sets those it names,
/// the others stay on. On for all three by default. No other rule can be named: a message held
/// by a safeguarding or sensitive-data rule is never the sender's to release
/// ([`crate::policy::release`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowSenderRelease(BTreeMap<String, bool>);

impl Default for AllowSenderRelease {
    fn default() -> Self {
        AllowSenderRelease::all(true)
    }
}

impl AllowSenderRelease {
    /// The same switch for all three rules.
    pub fn all(on: bool) -> Self {
        AllowSenderRelease(
            crate::policy::release::SENDER_RELEASABLE
                .iter()
                .map(|r| (r.to_string(), on))
                .collect(),
        )
    }

    /// Whether the sender may release a hold by `rule` (false for every other rule).
    pub fn allows(&self, rule: &str) -> bool {
        self.0.get(rule).copied().unwrap_or(false)
    }
}

impl Config {
    /// `[data_protection] allow_sender_release`.
    pub fn allow_sender_release(&self) -> &AllowSenderRelease {
        &self.data_protection.allow_sender_release
    }
}

impl<'de> Deserialize<'de> for AllowSenderRelease {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            All(bool),
            Each(BTreeMap<String, bool>),
        }
        let given = Given::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected true, false or a table such as { wrong-recipient = false }",
            )
        })?;
        match given {
            Given::All(on) => Ok(AllowSenderRelease::all(on)),
            Given::Each(each) => {
                let mut switch = AllowSenderRelease::all(true);
                for (rule, on) in each {
                    if !crate::policy::release::SENDER_RELEASABLE.contains(&rule.as_str()) {
                        return Err(serde::de::Error::custom(format!(
                            "\"{rule}\" cannot be released by its sender; only {} can (safeguarding and sensitive-data holds are always the school's)",
                            crate::policy::release::SENDER_RELEASABLE.join(", ")
                        )));
                    }
                    switch.0.insert(rule, on);
                }
                Ok(switch)
            }
        }
    }
}

impl Default for Safeguarding {
    fn default() -> Self {
        Safeguarding {
            dsl: Vec::new(),
            contact_hours: None,
            rules: BTreeMap::new(),
            weekly_report: Default::default(),
            alert_window: defaults::alert_window(),
            alert_from: None,
            evidence_retention_days: defaults::evidence_retention_days(),
            escalate_to: Vec::new(),
            consumer_mail_domains: defaults::consumer_mail_domains(),
        }
    }
}

/// `[data_protection]`: personal data sent to the wrong people (issue 16). The ICO's most
/// reported school breach is mail to the wrong recipient, or a parents' mailing with every
/// address visible.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataProtection {
    /// More outside addresses than this in To and Cc is `exposed-recipients`.
    #[serde(default = "defaults::max_visible_recipients")]
    pub max_visible_recipients: usize,
    #[serde(default)]
    pub rules: BTreeMap<DataProtectionRule, Action>,
    /// Whether the sender may release a message held by these rules themselves.
    #[serde(default)]
    pub allow_sender_release: AllowSenderRelease,
}

impl Default for DataProtection {
    fn default() -> Self {
        DataProtection {
            max_visible_recipients: defaults::max_visible_recipients(),
            rules: BTreeMap::new(),
            allow_sender_release: AllowSenderRelease::default(),
        }
    }
}

impl DataProtection {
    /// What `rule` does: its `rules` entry, `quarantine` when there is none.
    pub fn action(&self, rule: DataProtectionRule) -> Action {
        self.rules.get(&rule).copied().unwrap_or(Action::Quarantine)
    }
}

/// The data-protection rules (SPEC, "Round two").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataProtectionRule {
    /// Too many outside addresses visible in To/Cc: use Bcc.
    ExposedRecipients,
    /// Pupils named, sent only to parents, none of them those pupils' parents.
    WrongRecipient,
    /// An encrypted attachment with its password in the same message.
    PasswordInMessage,
}

impl DataProtectionRule {
    /// Every rule, in the order `policy check` lists them.
    pub const ALL: [DataProtectionRule; 3] = [
        DataProtectionRule::ExposedRecipients,
        DataProtectionRule::WrongRecipient,
        DataProtectionRule::PasswordInMessage,
    ];

    /// The rule's stable name.
    pub fn name(self) -> &'static str {
        match self {
            DataProtectionRule::ExposedRecipients => "exposed-recipients",
            DataProtectionRule::WrongRecipient => "wrong-recipient",
            DataProtectionRule::PasswordInMessage => "password-in-message",
        }
    }
}

impl Config {
    /// The sender address of alerts.
    pub fn alert_from(&self) -> String {
        match (&self.safeguarding.alert_from, self.school.domains.first()) {
            (Some(a), _) => a.0.clone(),
            (None, Some(d)) => format!("schoolgate@{}", d.0),
            (None, None) => "schoolgate@localhost".into(),
        }
    }
}

/// A next hop, checked as it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop(pub NextHopAddress);

impl<'de> Deserialize<'de> for NextHop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NextHopAddress::parse(&s)
            .map(NextHop)
            .map_err(serde::de::Error::custom)
    }
}

/// A mail address, checked as it is read (`local@domain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address(pub String);

impl FromStr for Address {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (local, domain) = s
            .rsplit_once('@')
            .ok_or_else(|| format!("\"{s}\" is not a mail address (no @)"))?;
        if local.is_empty() || s.chars().any(|c| c.is_whitespace() || c == '<' || c == '>') {
            return Err(format!("\"{s}\" is not a mail address"));
        }
        Domain::from_str(domain).map_err(|e| format!("\"{s}\" is not a mail address: {e}"))?;
        Ok(Address(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d)
    }
}

/// A mail domain, checked as it is read and kept in lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain(pub String);

impl FromStr for Domain {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if ok {
            Ok(Domain(s.to_lowercase()))
        } else {
            Err(format!("\"{s}\" is not a domain name"))
        }
    }
}

impl<'de> Deserialize<'de> for Domain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d)
    }
}

/// `"50MiB"` as `(50, "MiB")`; `what` completes "… is not …" when there is no number.
fn number_and_unit<'a>(s: &'a str, what: &str) -> Result<(u64, &'a str), String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n = num.parse().map_err(|_| format!("\"{s}\" is not {what}"))?;
    Ok((n, unit.trim()))
}

/// A size in bytes, written `"50MiB"`, `"64KiB"`, `"10MB"` or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (n, unit) = number_and_unit(s, "a size; write e.g. \"50MiB\"")?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            other => {
                return Err(format!(
                    "unknown size unit \"{other}\"; use B, KiB, MiB or GiB"
                ));
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("\"{s}\" is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        number_or_text(d, ByteSize)
    }
}

/// A duration, written `"30s"`, `"5m"`, `"1h"` or a plain number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (n, unit) = number_and_unit(s, "a duration; write e.g. \"30s\" or \"5m\"")?;
        let secs = match unit.trim() {
            "" | "s" => n,
            "m" => n.saturating_mul(60),
            "h" => n.saturating_mul(3600),
            "d" => n.saturating_mul(24 * 3600),
            "ms" => return Ok(HumanDuration(Duration::from_millis(n))),
            other => {
                return Err(format!(
                    "unknown duration unit \"{other}\"; use ms, s, m, h or d"
                ));
            }
        };
        Ok(HumanDuration(Duration::from_secs(secs)))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        number_or_text(d, |n| HumanDuration(Duration::from_secs(n)))
    }
}

/// A value written as text and checked by its `FromStr`, the error at the value's position.
fn from_text<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    String::deserialize(d)?
        .parse()
        .map_err(serde::de::Error::custom)
}

/// A value written as a bare number (bytes, seconds) or as text with a unit.
fn number_or_text<'de, D, T>(d: D, from_number: impl FnOnce(u64) -> T) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    match Raw::deserialize(d)? {
        Raw::N(n) => Ok(from_number(n)),
        Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

impl Config {
    /// Reads and checks the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            line: None,
            field: None,
            message: format!(
                "cannot read the config: {e}; pass --config FILE or set SCHOOLGATE_CONFIG"
            ),
        })?;
        Config::parse(path, &text)
    }

    /// Parses and checks config `text` read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let (line, field) = match e.span() {
                Some(span) => locate_span(text, span.start),
                None => (None, None),
            };
            ConfigError {
                path: path.to_path_buf(),
                line,
                field,
                message: one_line(e.message()),
            }
        })?;
        config.source = path.to_path_buf();
        // The same text as plain tables: which keys were written, for the per-key merge of a
        // trust's defaults (it parsed above, so it parses here).
        let written: toml::Table = toml::from_str(text).unwrap_or_default();
        config.merge_schools(text, &written)?;
        config.validate(text)?;
        Ok(config)
    }

    /// The effective config for mail of school `i` of the trust: its own `[school]` keys,
    /// disclaimer and safeguarding (the trust-wide defaults merged in), the rest shared. Its
    /// `domains` and `pupil_domains` are its own first, then every other school's: a pupil of
    /// any school of the trust is a pupil, and mail between the trust's schools stays inside.
    pub fn for_school(&self, i: usize) -> Option<Config> {
        let policy = self.schools.get(i)?;
        let mut config = self.clone();
        let mut school = policy.school.clone();
        for other in &self.schools {
            for d in &other.school.domains {
                if !school.domains.contains(d) {
                    school.domains.push(d.clone());
                }
            }
            for d in &other.school.pupil_domains {
                if !school.pupil_domains.contains(d) {
                    school.pupil_domains.push(d.clone());
                }
            }
        }
        config.school = school;
        config.disclaimer = policy.disclaimer.clone();
        config.safeguarding = policy.safeguarding.clone();
        config.trust_school = Some(policy.school.name.clone());
        Some(config)
    }

    /// Which school of the trust mail from `sender` (the envelope sender) belongs to: the one
    /// whose `domains` or `pupil_domains` hold its domain. `None` for a single school, and for a
    /// sender at no school's domain (the trust-wide defaults apply).
    pub fn school_of(&self, sender: &str) -> Option<usize> {
        self.schools.iter().position(|s| s.owns(sender))
    }

    /// The name of the school of the trust that mail from `sender` belongs to
    /// ([`Config::school_of`]).
    pub fn school_name_of(&self, sender: &str) -> Option<&str> {
        self.school_of(sender)
            .and_then(|i| self.schools.get(i))
            .map(|s| s.school.name.as_str())
    }

    /// Merges each `[[schools]]` table over the trust-wide `[school]`, `[disclaimer]` and
    /// `[safeguarding]` keys (per key; `[safeguarding] rules` per rule), checks the schools
    /// against each other, and makes `[school]` the trust-wide default: every school's domains,
    /// and the name "the trust" unless `[school] name` gives one.
    fn merge_schools(&mut self, text: &str, written: &toml::Table) -> Result<(), ConfigError> {
        let entries = std::mem::take(&mut self.schools_written);
        if entries.is_empty() {
            if !written.contains_key("school") {
                return Err(ConfigError {
                    path: self.source.clone(),
                    line: None,
                    field: Some("school".into()),
                    message: "[school] is missing; add it with name, domains and directory (or \
                              list a trust's schools as [[schools]] tables)"
                        .into(),
                });
            }
            return Ok(());
        }
        let top = |key: &str| written.get(key).and_then(toml::Value::as_table);
        let mut schools: Vec<SchoolPolicy> = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let name = entry
                .get("name")
                .and_then(toml::Value::as_str)
                .map(str::to_string);
            let label = match &name {
                Some(n) => format!("[[schools]] \"{n}\""),
                None => format!("[[schools]] number {}", i + 1),
            };
            let err = |key: &str, message: String| ConfigError {
                path: self.source.clone(),
                line: nth_line_starting(text, "[[schools]]", i),
                field: Some(if key.is_empty() {
                    "schools".to_string()
                } else {
                    format!("schools.{key}")
                }),
                message: format!("{label}: {message}"),
            };
            if name.as_deref().is_none_or(|n| n.trim().is_empty()) {
                return Err(err(
                    "name",
                    "needs its own name, e.g. name = \"Ashdown Park School\"".into(),
                ));
            }
            let mut own = entry.clone();
            let mut section = |key: &str| -> Result<Option<toml::Table>, ConfigError> {
                match own.remove(key) {
                    None => Ok(None),
                    Some(toml::Value::Table(t)) => Ok(Some(t)),
                    Some(_) => Err(err(
                        key,
                        format!("{key} must be a table: write [schools.{key}] under the school"),
                    )),
                }
            };
            let disclaimer = section("disclaimer")?;
            let safeguarding = section("safeguarding")?;
            let school: School = overlay(top("school"), Some(&own), &[])
                .try_into()
                .map_err(|e: toml::de::Error| err("", one_line(e.message())))?;
            let disclaimer: Disclaimer = overlay(top("disclaimer"), disclaimer.as_ref(), &[])
                .try_into()
                .map_err(|e: toml::de::Error| err("disclaimer", one_line(e.message())))?;
            let safeguarding: Safeguarding =
                overlay(top("safeguarding"), safeguarding.as_ref(), &["rules"])
                    .try_into()
                    .map_err(|e: toml::de::Error| err("safeguarding", one_line(e.message())))?;
            if school.domains.is_empty() {
                return Err(err(
                    "domains",
                    "needs the school's staff mail domain(s), e.g. domains = [\"ashdownpark.sch.uk\"]"
                        .into(),
                ));
            }
            if school.directory.as_os_str().is_empty() {
                return Err(err(
                    "directory",
                    "needs the school's directory (the MIS export), or set [school] directory for every school"
                        .into(),
                ));
            }
            if jiff::tz::TimeZone::get(&school.timezone).is_err() {
                return Err(err(
                    "timezone",
                    format!(
                        "\"{}\" is not a known time zone; use e.g. \"Europe/London\"",
                        school.timezone
                    ),
                ));
            }
            if let Some(other) = schools.iter().find(|o| {
                o.school
                    .name
                    .trim()
                    .eq_ignore_ascii_case(school.name.trim())
            }) {
                return Err(err(
                    "name",
                    format!(
                        "two schools are named \"{}\"; give each school its own name",
                        other.school.name
                    ),
                ));
            }
            let mine = school.domains.iter().chain(&school.pupil_domains);
            for d in mine {
                if let Some(other) = schools.iter().find(|o| {
                    o.school
                        .domains
                        .iter()
                        .chain(&o.school.pupil_domains)
                        .any(|x| x.0.eq_ignore_ascii_case(&d.0))
                }) {
                    return Err(err(
                        "domains",
                        format!(
                            "the domain \"{}\" is claimed by both \"{}\" and \"{}\"; a message \
                             belongs to the school of its sender's domain, so list each domain under \
                             one school only",
                            d.0, other.school.name, school.name
                        ),
                    ));
                }
            }
            schools.push(SchoolPolicy {
                school,
                disclaimer,
                safeguarding,
            });
        }
        let trust = &mut self.school;
        if trust.name.trim().is_empty() {
            trust.name = "the trust".into();
        }
        for s in &schools {
            for d in &s.school.domains {
                if !trust.domains.contains(d) {
                    trust.domains.push(d.clone());
                }
            }
            for d in &s.school.pupil_domains {
                if !trust.pupil_domains.contains(d) {
                    trust.pupil_domains.push(d.clone());
                }
            }
        }
        self.schools = schools;
        Ok(())
    }

    /// Checks what no single value can say about itself.
    fn validate(&self, text: &str) -> Result<(), ConfigError> {
        let err = |section: &str, key: &str, message: String| ConfigError {
            path: self.source.clone(),
            line: find_key(text, section, key),
            field: Some(format!("{section}.{key}")),
            message,
        };
        let r = &self.relay;
        if r.listen.is_empty() {
            return Err(err(
                "relay",
                "listen",
                "needs at least one address, e.g. [\"127.0.0.1:2525\"]".into(),
            ));
        }
        if r.allowed_clients.is_empty() {
            return Err(err(
                "relay",
                "allowed_clients",
                "is empty, so no mail server could relay; list your mail server's addresses".into(),
            ));
        }
        if r.hostname.trim().is_empty() || r.hostname.contains(char::is_whitespace) {
            return Err(err(
                "relay",
                "hostname",
                format!("\"{}\" is not a host name", r.hostname),
            ));
        }
        if self.web.tls && (r.tls_cert.is_none() || r.tls_key.is_none()) {
            return Err(err(
                "web",
                "tls",
                "is true but relay.tls_cert and relay.tls_key are not both set; the web page uses the relay's certificate".into(),
            ));
        }
        if let Some(listen) = self.web.listen
            && !self.web.tls
            && !self.web.insecure_http
            && !listen.ip().is_loopback()
        {
            return Err(err(
                "web",
                "listen",
                format!(
                    "[web] listen = \"{listen}\" is not a loopback address, but [web] tls is false: browsers drop the Secure session cookie over plain HTTP, so nobody could log in, and passwords would cross the network in clear; set [web] tls = true (with relay.tls_cert and relay.tls_key), or listen on 127.0.0.1 behind a TLS proxy, or set [web] insecure_http = true to accept the risk"
                ),
            ));
        }
        match (&r.tls_cert, &r.tls_key) {
            (Some(_), None) => {
                return Err(err(
                    "relay",
                    "tls_cert",
                    "is set but tls_key is not; set both to offer STARTTLS".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(err(
                    "relay",
                    "tls_key",
                    "is set but tls_cert is not; set both to offer STARTTLS".into(),
                ));
            }
            _ => {}
        }
        if let Some(oidc) = &self.web.oidc {
            oidc.check()
                .map_err(|(key, message)| err("web.oidc", key, message))?;
        }
        if let Some(url) = &self.storage.database {
            crate::store::postgres::DatabaseUrl::parse(url)
                .map_err(|message| err("storage", "database", message))?;
        }
        if r.max_message_size.0 == 0 {
            return Err(err(
                "relay",
                "max_message_size",
                "must be more than 0".into(),
            ));
        }
        if r.max_line_length.0 < 1000 {
            return Err(err(
                "relay",
                "max_line_length",
                "must be at least 1000 (RFC 5321 allows lines of 1000 octets)".into(),
            ));
        }
        if r.max_recipients == 0 {
            return Err(err("relay", "max_recipients", "must be at least 1".into()));
        }
        if self.sensitive.limits.max_parallel_scans == 0 {
            return Err(err(
                "sensitive.limits",
                "max_parallel_scans",
                "must be at least 1 (leave it out for one per core)".into(),
            ));
        }
        if r.max_connections == 0 || r.max_connections_per_client == 0 {
            return Err(err("relay", "max_connections", "must be at least 1".into()));
        }
        if self.milter.max_message_size.is_some_and(|m| m.0 == 0) {
            return Err(err(
                "milter",
                "max_message_size",
                "must be more than 0".into(),
            ));
        }
        if self.milter.allowed_clients.is_empty() {
            return Err(err(
                "milter",
                "allowed_clients",
                "is empty, so no mail server could use the milter; list your mail server's \
                 addresses (default [\"127.0.0.0/8\", \"::1/128\"])"
                    .into(),
            ));
        }
        if let Some(senders) = &r.allowed_senders {
            if senders.is_empty() {
                return Err(err(
                    "relay",
                    "allowed_senders",
                    "is empty, so every sender would be refused; list the school's sender \
                     domains, leave it out for [school] domains and pupil_domains, or write \
                     [\"*\"] to allow any sender"
                        .into(),
                ));
            }
            if senders.len() > 1 && senders.contains(&AllowedSender::Anyone) {
                return Err(err(
                    "relay",
                    "allowed_senders",
                    "\"*\" allows any sender and must stand alone; remove it or the domains \
                     beside it"
                        .into(),
                ));
            }
        }
        if self.schools.is_empty() {
            // A single school: `[school]` with its name and directory, as always.
            if self.school.name.trim().is_empty() {
                return Err(err("school", "name", "needs the school's name".into()));
            }
            if self.school.directory.as_os_str().is_empty() {
                return Err(err(
                    "school",
                    "directory",
                    "needs the school's directory (the CSV exported from the MIS)".into(),
                ));
            }
        }
        if self.school.domains.is_empty() {
            return Err(err(
                "school",
                "domains",
                "needs the school's staff mail domain(s)".into(),
            ));
        }
        if jiff::tz::TimeZone::get(&self.school.timezone).is_err() {
            return Err(err(
                "school",
                "timezone",
                format!(
                    "\"{}\" is not a known time zone; use e.g. \"Europe/London\"",
                    self.school.timezone
                ),
            ));
        }
        if self.data_protection.max_visible_recipients == 0 {
            return Err(err(
                "data_protection",
                "max_visible_recipients",
                "must be at least 1 (0 would hold every message to anyone outside the school); \
                 to turn the rule off write rules = { exposed-recipients = \"off\" }"
                    .into(),
            ));
        }
        if self.audit.retention_days == Some(0) {
            return Err(err(
                "audit",
                "retention_days",
                "must be at least 1 (leave it out to keep the audit trail for ever)".into(),
            ));
        }
        if let Some(dkim) = &self.dkim {
            let single = [
                dkim.domain.is_some(),
                dkim.selector.is_some(),
                dkim.key.is_some(),
            ];
            if single.contains(&true) && single.contains(&false) {
                let missing = ["domain", "selector", "key"]
                    .iter()
                    .zip(single)
                    .filter(|(_, set)| !set)
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(" and ");
                let first = ["domain", "selector", "key"]
                    .iter()
                    .zip(single)
                    .find(|(_, set)| *set)
                    .map_or("domain", |(k, _)| *k);
                return Err(err(
                    "dkim",
                    first,
                    format!(
                        "the single-key form needs domain, selector and key together; add \
                         {missing}, or list keys = [{{ domain, selector, key }}]"
                    ),
                ));
            }
            let keys = dkim.all_keys();
            if keys.is_empty() {
                return Err(err(
                    "dkim",
                    "keys",
                    "[dkim] names no key; set domain, selector and key (make a key with \
                     `schoolgate dkim keygen`), or remove the [dkim] section"
                        .into(),
                ));
            }
            for (i, k) in keys.iter().enumerate() {
                if keys[..i].iter().any(|other| other.domain == k.domain) {
                    return Err(err(
                        "dkim",
                        "keys",
                        format!(
                            "domain \"{}\" has two keys; a domain is signed with one key",
                            k.domain.0
                        ),
                    ));
                }
            }
        }
        // The client waits for its reply while we scan, hand over and record; RFC 5321
        // §4.5.3.2.6 gives it 10 minutes. One that gives up first sends again what the next hop
        // may already have.
        let waited = self.relay.next_hop_timeout.0 + self.sensitive.limits.max_scan_time.0;
        if waited > Duration::from_secs(9 * 60) {
            return Err(err(
                "relay",
                "next_hop_timeout",
                format!(
                    "with sensitive.limits.max_scan_time, a client would wait up to {} s for its reply, \
                     but clients give up after 10 minutes (RFC 5321) and send the message \
                     again; keep the two together under 9m (e.g. \"5m\")",
                    waited.as_secs()
                ),
            ));
        }
        if self.audit.checkpoint_mail_interval.0 < Duration::from_secs(1) {
            return Err(err(
                "audit",
                "checkpoint_mail_interval",
                "must be at least 1s; e.g. \"1d\"".into(),
            ));
        }
        if self.audit.checkpoint_interval.0 < Duration::from_secs(1) {
            return Err(err(
                "audit",
                "checkpoint_interval",
                "must be at least 1s; e.g. \"1h\"".into(),
            ));
        }
        Ok(())
    }

    /// The sender domains the relay accepts in MAIL FROM: `[relay] allowed_senders`, or the
    /// school's `domains` and `pupil_domains` when it is not set.
    pub fn allowed_senders(&self) -> Vec<AllowedSender> {
        match &self.relay.allowed_senders {
            Some(list) => list.clone(),
            None => self
                .school
                .domains
                .iter()
                .chain(&self.school.pupil_domains)
                .map(|d| AllowedSender::Domain(d.0.clone()))
                .collect(),
        }
    }

    /// The password for the next hop's AUTH, read from its file (one line, trailing newline ignored).
    /// The bearer token of `[web] metrics_token_file`, if one is set (read on each use, so a
    /// new token takes effect without a restart).
    pub fn metrics_token(&self) -> Result<Option<String>, ConfigError> {
        let Some(file) = &self.web.metrics_token_file else {
            return Ok(None);
        };
        let err = |message: String| ConfigError {
            path: self.source.clone(),
            line: None,
            field: Some("web.metrics_token_file".into()),
            message,
        };
        let token = std::fs::read_to_string(file)
            .map_err(|e| err(format!("cannot read {}: {e}", file.display())))?;
        let token = token.trim().to_string();
        if token.len() < 16 {
            return Err(err(format!(
                "{} holds {} characters; a metrics token needs at least 16 (e.g. openssl rand -hex 32)",
                file.display(),
                token.len()
            )));
        }
        Ok(Some(token))
    }

    pub fn next_hop_auth(&self) -> Result<Option<crate::smtp::next_hop::NextHopAuth>, ConfigError> {
        let Some(auth) = &self.relay.next_hop_auth else {
            return Ok(None);
        };
        let password = std::fs::read_to_string(&auth.password_file).map_err(|e| ConfigError {
            path: self.source.clone(),
            line: None,
            field: Some("relay.next_hop_auth.password_file".into()),
            message: format!("cannot read {}: {e}", auth.password_file.display()),
        })?;
        Ok(Some(crate::smtp::next_hop::NextHopAuth {
            user: auth.user.clone(),
            password: password.trim_end_matches(['\r', '\n']).to_string(),
        }))
    }
}

/// `defaults` with `own`'s keys written over it, key by key; a key in `deep` (a table of its
/// own, like `rules`) is merged the same way one level down.
fn overlay(
    defaults: Option<&toml::Table>,
    own: Option<&toml::Table>,
    deep: &[&str],
) -> toml::Table {
    let mut merged = defaults.cloned().unwrap_or_default();
    for (key, value) in own.into_iter().flatten() {
        match (merged.get_mut(key), value) {
            (Some(toml::Value::Table(base)), toml::Value::Table(mine))
                if deep.contains(&key.as_str()) =>
            {
                for (k, v) in mine {
                    base.insert(k.clone(), v.clone());
                }
            }
            _ => {
                merged.insert(key.clone(), value.clone());
            }
        }
    }
    merged
}

/// The 1-based line of the `n`th (0-based) line that reads `header`.
fn nth_line_starting(text: &str, header: &str, n: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == header)
        .nth(n)
        .map(|(i, _)| i + 1)
}

/// Collapses a multi-line parser message to one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The 1-based line of byte `offset`, and the `section.key` written on or before it.
fn locate_span(text: &str, offset: usize) -> (Option<usize>, Option<String>) {
    let offset = offset.min(text.len());
    let line_no = text[..offset].matches('\n').count() + 1;
    let mut section: Option<String> = None;
    let mut key: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        if i + 1 > line_no {
            break;
        }
        let t = line.trim();
        if t.starts_with('[') {
            section = Some(t.trim_matches(|c| c == '[' || c == ']').trim().to_string());
            key = None;
        } else if let Some((k, _)) = t.split_once('=')
            && !t.starts_with('#')
        {
            key = Some(k.trim().trim_matches('"').to_string());
        }
        if i + 1 == line_no && t.starts_with('[') {
            key = None;
        }
    }
    let field = match (section, key) {
        (Some(s), Some(k)) => Some(format!("{s}.{k}")),
        (Some(s), None) => Some(s),
        (None, Some(k)) => Some(k),
        (None, None) => None,
    };
    (Some(line_no), field)
}

/// The 1-based line where `key` is set in `[section]`.
fn find_key(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            current = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        } else if current == section
            && let Some((k, _)) = t.split_once('=')
            && k.trim() == key
        {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../policies/example.toml");

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.toml"), text)
    }

    #[test]
    fn dkim_takes_one_key_or_a_list_and_names_what_is_missing() {
        let one = format!(
            "{EXAMPLE}\n[dkim]\ndomain = \"example-academy.sch.uk\"\nselector = \"sg1\"\nkey = \"k.pem\"\nkeys = [{{ domain = \"pupils.example-academy.sch.uk\", selector = \"sg1\", key = \"p.pem\" }}]\n"
        );
        let c = parse(&one).unwrap();
        let keys = c.dkim.as_ref().unwrap().all_keys();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].domain.0, "example-academy.sch.uk");
        assert!(!c.dkim.unwrap().arc);
        let partial = format!("{EXAMPLE}\n[dkim]\ndomain = \"example-academy.sch.uk\"\n");
        let e = parse(&partial).unwrap_err().to_string();
        assert!(
            e.contains("dkim.domain") && e.contains("selector and key"),
            "{e}"
        );
        let twice = format!(
            "{EXAMPLE}\n[dkim]\nkeys = [{{ domain = \"a.example\", selector = \"s\", key = \"k\" }}, {{ domain = \"A.example\", selector = \"t\", key = \"l\" }}]\n"
        );
        let e = parse(&twice).unwrap_err().to_string();
        assert!(e.contains("has two keys"), "{e}");
        let bad =
            format!("{EXAMPLE}\n[dkim]\ndomain = \"a.example\"\nselector = \"s 1\"\nkey = \"k\"\n");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains("not a DKIM selector"), "{e}");
        assert!(parse(EXAMPLE).unwrap().dkim.is_none(), "off by default");
    }

    #[test]
    fn the_example_config_loads() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(c.relay.max_message_size, ByteSize(50 << 20));
        assert_eq!(
            c.relay.next_hop.0,
            NextHopAddress::Outbox {
                dir: "var/outbox".into()
            }
        );
        assert_eq!(c.safeguarding.rules.len(), 4);
    }

    #[test]
    fn weekly_report_defaults_to_monday_morning_and_a_bad_one_is_named() {
        use crate::review::report::schedule::WeeklyReport;
        let c = parse(&EXAMPLE.replace("weekly_report = ", "# weekly_report = ")).unwrap();
        assert_eq!(c.safeguarding.weekly_report, WeeklyReport::default());
        let off = EXAMPLE.replace("weekly_report = \"Mon 07:30\"", "weekly_report = \"off\"");
        assert_eq!(
            parse(&off).unwrap().safeguarding.weekly_report,
            WeeklyReport(None)
        );
        let text = EXAMPLE.replace(
            "weekly_report = \"Mon 07:30\"",
            "weekly_report = \"Mondays\"",
        );
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, Some(line_of(&text, "weekly_report =")));
        assert_eq!(e.field.as_deref(), Some("safeguarding.weekly_report"));
        assert!(e.message.contains("Mon 07:30"), "{e}");
    }

    #[test]
    fn the_digest_is_off_without_digest_to_and_its_links_use_the_public_url() {
        use crate::review::report::schedule::Daily;
        let c = parse(EXAMPLE).unwrap();
        assert!(c.quarantine.digest_to.is_empty());
        assert_eq!(c.quarantine.digest, Daily::default());
        assert_eq!(
            c.web.base_url("gw.example-academy.sch.uk").as_deref(),
            Some("http://127.0.0.1:8025"),
            "from [web] listen"
        );
        let text = EXAMPLE
            .replace(
                "# digest_to = [\"it.manager@example-academy.sch.uk\"]",
                "digest_to = [\"it.manager@example-academy.sch.uk\"]",
            )
            .replace("digest = \"07:30\"", "digest = \"06:45\"")
            .replace(
                "# public_url = \"https://schoolgate.example-academy.sch.uk:8443\"",
                "public_url = \"https://schoolgate.example-academy.sch.uk:8443/\"",
            );
        let c = parse(&text).unwrap();
        assert_eq!(c.quarantine.digest_to.len(), 1);
        assert_eq!(c.quarantine.digest.to_string(), "06:45");
        assert_eq!(
            c.web.base_url("x").as_deref(),
            Some("https://schoolgate.example-academy.sch.uk:8443"),
            "without its trailing /"
        );
        // Listening on every address: the relay's host name.
        let all = Web {
            listen: "0.0.0.0:8443".parse().ok(),
            tls: true,
            ..Web::default()
        };
        assert_eq!(
            all.base_url("gw.example-academy.sch.uk").as_deref(),
            Some("https://gw.example-academy.sch.uk:8443")
        );
        let six = Web {
            listen: "[::1]:8025".parse().ok(),
            ..Web::default()
        };
        assert_eq!(six.base_url("x").as_deref(), Some("http://[::1]:8025"));
        assert_eq!(Web::default().base_url("x"), None, "no web listener");
        for (from, to, field, says) in [
            (
                "digest = \"07:30\"",
                "digest = \"half seven\"",
                "quarantine.digest",
                "07:30",
            ),
            (
                "# public_url = \"https://schoolgate.example-academy.sch.uk:8443\"",
                "public_url = \"schoolgate.example-academy.sch.uk\"",
                "web.public_url",
                "https://",
            ),
        ] {
            let text = EXAMPLE.replace(from, to);
            let e = parse(&text).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{e}");
            assert!(e.message.contains(says), "{e}");
        }
    }

    fn line_of(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    #[test]
    fn body_thresholds_keep_their_own_defaults_for_keys_left_out() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(c.sensitive.body_thresholds.special_category, 2);
        let with_table = |table: &str| {
            let (before, rest) = EXAMPLE.split_once("[sensitive.body_thresholds]").unwrap();
            let (_, after) = rest.split_once("[sensitive.limits]").unwrap();
            format!("{before}{table}\n[sensitive.limits]{after}")
        };
        let text = with_table("[sensitive.body_thresholds]\nidentifiers = 5\n");
        assert_ne!(text, EXAMPLE);
        let b = parse(&text).unwrap().sensitive.body_thresholds;
        assert_eq!(
            (b.identifiers, b.birth_dates, b.special_category),
            (5, 2, 2)
        );
        let gone = EXAMPLE.replace("[sensitive.body_thresholds]", "[sensitive.other]");
        let b = Sensitive::default().body_thresholds;
        assert_eq!(
            (b.identifiers, b.birth_dates, b.special_category),
            (2, 2, 2)
        );
        assert!(parse(&gone).is_err(), "an unknown table is refused");
        let typo = with_table("[sensitive.body_thresholds]\nspecial_categories = 2\n");
        assert!(parse(&typo).is_err(), "an unknown key is refused");
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let text = EXAMPLE.replace("max_recipients = 1000", "max_recipient = 1000");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, Some(line_of(&text, "max_recipient =")));
        assert_eq!(e.field.as_deref(), Some("relay.max_recipient"));
        assert!(e.message.contains("unknown field"), "{e}");
    }

    #[test]
    fn a_bad_cidr_is_named_with_its_line() {
        let text = EXAMPLE.replace("\"127.0.0.0/8\"", "\"127.0.0.0/33\"");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, Some(line_of(&text, "allowed_clients =")));
        assert_eq!(e.field.as_deref(), Some("relay.allowed_clients"));
        let shown = e.to_string();
        assert!(shown.starts_with("test.toml:"), "{shown}");
        assert!(!shown.contains('\n'), "one line: {shown}");
    }

    #[test]
    fn the_access_keys_and_their_defaults() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(
            c.allowed_senders(),
            vec![
                AllowedSender::Domain("example-academy.sch.uk".into()),
                AllowedSender::Domain("pupils.example-academy.sch.uk".into()),
            ]
        );
        assert_eq!(c.relay.m365_tenant_id, None);
        let loopback: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        assert_eq!(c.milter.allowed_clients, loopback);
        let text = EXAMPLE
            .replace(
                "# allowed_senders = [",
                "allowed_senders = [\"*.School.sch.uk\", \"other.sch.uk\"]\n# [",
            )
            .replace(
                "# m365_tenant_id = \"00000000-0000-0000-0000-000000000000\"",
                "m365_tenant_id = \"3F2504E0-4F89-41D3-9A0C-0305E82C3301\"",
            )
            .replace(
                "# allowed_clients = [\"127.0.0.0/8\", \"::1/128\"]",
                "allowed_clients = [\"127.0.0.1/32\"]",
            );
        let c = parse(&text).unwrap();
        assert_eq!(
            c.allowed_senders(),
            vec![
                AllowedSender::Subdomains("school.sch.uk".into()),
                AllowedSender::Domain("other.sch.uk".into()),
            ]
        );
        assert_eq!(
            c.relay.m365_tenant_id,
            Some(TenantId("3f2504e0-4f89-41d3-9a0c-0305e82c3301".into()))
        );
        assert_eq!(
            c.milter.allowed_clients,
            vec!["127.0.0.1/32".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn bad_access_entries_are_named_with_their_line() {
        let cases = [
            (
                "allowed_senders = [\"school.sch.uk\", \"not a domain\"]",
                "relay.allowed_senders",
                "not a sender domain",
            ),
            (
                "allowed_senders = [\"*\", \"school.sch.uk\"]",
                "relay.allowed_senders",
                "alone",
            ),
            ("allowed_senders = []", "relay.allowed_senders", "empty"),
            (
                "m365_tenant_id = \"contoso.onmicrosoft.com\"",
                "relay.m365_tenant_id",
                "GUID",
            ),
        ];
        for (line, field, words) in cases {
            let text = EXAMPLE.replace("# allowed_senders = [", &format!("{line}\n# ["));
            let e = parse(&text).unwrap_err();
            assert_eq!(e.line, Some(line_of(&text, line)), "{line}: {e}");
            assert_eq!(e.field.as_deref(), Some(field), "{line}: {e}");
            assert!(e.to_string().contains(words), "{line}: {e}");
        }
        let text = EXAMPLE.replace(
            "# allowed_clients = [\"127.0.0.0/8\", \"::1/128\"]",
            "allowed_clients = [\"127.0.0.2/40\"]",
        );
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("milter.allowed_clients"), "{e}");
        assert_eq!(
            e.line,
            Some(line_of(&text, "allowed_clients = [\"127.0.0.2/40\"]"))
        );
    }

    #[test]
    fn a_bad_address_is_named_with_its_line() {
        let text = EXAMPLE.replace(
            "dsl@example-academy.sch.uk\"]",
            "dsl.example-academy.sch.uk\"]",
        );
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, Some(line_of(&text, "dsl = [")));
        assert_eq!(e.field.as_deref(), Some("safeguarding.dsl"));
        assert!(e.message.contains("not a mail address"), "{e}");
    }

    #[test]
    fn storage_database_is_optional_and_a_bad_url_is_named_with_its_line() {
        assert!(parse(EXAMPLE).unwrap().storage.database.is_none());
        let with = |url: &str| {
            EXAMPLE.replace(
                "state_dir = \"var\"\n",
                &format!("state_dir = \"var\"\ndatabase = \"{url}\"\n"),
            )
        };
        let good = with("postgres://schoolgate@db.trust.example/schoolgate");
        assert_eq!(
            parse(&good).unwrap().storage.database.as_deref(),
            Some("postgres://schoolgate@db.trust.example/schoolgate")
        );
        assert!(parse(&with("postgresql://sg@10.0.0.5/trust?sslmode=require")).is_ok());
        let bad = with("mysql://schoolgate@db/schoolgate");
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.line, Some(line_of(&bad, "database =")));
        assert_eq!(e.field.as_deref(), Some("storage.database"));
        assert!(e.message.contains("postgres://"), "{e}");
    }

    #[test]
    fn web_oidc_is_read_and_checked() {
        let with = |oidc: &str| {
            let text = EXAMPLE.replace(
                "\n[storage]\n",
                &format!("\n[web.oidc]\n{oidc}\n\n[storage]\n"),
            );
            parse(&text)
        };
        let good = "issuer = \"https://login.microsoftonline.com/abc/v2.0\"\n\
                    client_id = \"app\"\n\
                    client_secret_file = \"/etc/schoolgate/oidc-client-secret\"\n\
                    redirect_url = \"https://gw.school.org.uk/login/oidc/callback\"\n";
        let c = with(&format!(
            "{good}roles = {{ network-manager = [\"g1\"], dsl = [\"Schoolgate.DSL\"] }}"
        ))
        .unwrap();
        let o = c.web.oidc.unwrap();
        assert_eq!(o.roles["dsl"], vec!["Schoolgate.DSL".to_string()]);
        assert_eq!(o.hosted_domain, None);
        for (bad, key, says) in [
            ("roles = { teacher = [\"g\"] }", "roles", "not a role"),
            ("roles = { dsl = [\" \"] }", "roles", "empty value"),
        ] {
            let e = with(&format!("{good}{bad}")).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(&*format!("web.oidc.{key}")), "{e}");
            assert!(e.message.contains(says), "{e}");
        }
        let plain = good.replace("https://login.microsoftonline.com", "http://idp.example");
        let e = with(&format!("{plain}roles = {{ dsl = [\"g\"] }}")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("web.oidc.issuer"), "{e}");
        assert!(e.line.is_some());
        let local = good.replace("https://login.microsoftonline.com", "http://127.0.0.1:9000");
        assert!(with(&format!("{local}roles = {{ dsl = [\"g\"] }}")).is_ok());
        // No roles yet: it loads (every sign-in is refused, and the log says why).
        assert!(with(good).unwrap().web.oidc.unwrap().roles.is_empty());
        let e = with(&format!("{good}roles = {{ dsl = [\"g\"] }}\nscopes = []")).unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
    }

    #[test]
    fn parallel_scans_default_to_the_cores_and_zero_is_refused() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        assert_eq!(
            parse(EXAMPLE).unwrap().sensitive.limits.max_parallel_scans,
            cores
        );
        let set = "# max_parallel_scans = 2 ";
        assert!(EXAMPLE.contains(set));
        let text = EXAMPLE.replace(set, "max_parallel_scans = 3 ");
        assert_eq!(parse(&text).unwrap().sensitive.limits.max_parallel_scans, 3);
        let e = parse(&EXAMPLE.replace(set, "max_parallel_scans = 0 ")).unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("sensitive.limits.max_parallel_scans")
        );
        assert!(e.message.contains("at least 1"), "{e}");
    }

    #[test]
    fn a_next_hop_timeout_past_the_clients_patience_is_refused() {
        let text = EXAMPLE.replace("next_hop_timeout = \"5m\"", "next_hop_timeout = \"15m\"");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("relay.next_hop_timeout"));
        assert!(e.message.contains("10 minutes"), "{e}");
    }

    #[test]
    fn a_bad_next_hop_and_a_bad_size_are_named() {
        let text = EXAMPLE.replace("outbox:var/outbox", "ftp://x");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("relay.next_hop"));
        let text = EXAMPLE.replace("\"50MiB\"", "\"50 parsecs\"");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("relay.max_message_size"));
    }

    #[test]
    fn a_missing_file_says_what_to_do() {
        let e = Config::load(Path::new("/nonexistent/schoolgate.toml")).unwrap_err();
        assert!(e.to_string().contains("--config"), "{e}");
    }

    #[test]
    fn half_a_tls_pair_is_refused() {
        let text = EXAMPLE.replace("# tls_cert = ", "tls_cert = ");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("relay.tls_cert"));
    }

    #[test]
    fn plain_http_on_a_network_address_is_refused_unless_insecure_http() {
        let text = EXAMPLE.replace("listen = \"127.0.0.1:8025\"", "listen = \"0.0.0.0:8025\"");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("web.listen"), "{e}");
        assert_eq!(e.line, Some(line_of(&text, "listen = \"0.0.0.0:8025\"")));
        let line = e.to_string();
        assert!(!line.contains('\n'), "one line: {line}");
        assert!(
            line.contains("[web] tls") && line.contains("insecure_http"),
            "{line}"
        );

        let text = text.replace("# insecure_http = false", "insecure_http = true");
        let c = parse(&text).unwrap();
        assert!(c.web.insecure());
        let warning = c.web.insecure_warning().unwrap();
        assert!(
            warning.contains("Secure") && warning.contains("in clear"),
            "{warning}"
        );
        let loopback = parse(EXAMPLE).unwrap();
        assert!(!loopback.web.insecure());
        assert_eq!(loopback.web.insecure_warning(), None);
        let v6 = parse(&EXAMPLE.replace("127.0.0.1:8025", "[::1]:8025")).unwrap();
        assert!(!v6.web.insecure(), "::1 is loopback");
    }

    #[test]
    fn metrics_answer_loopback_unless_configured() {
        let c = parse(EXAMPLE).unwrap();
        let clients = c.web.metrics_clients();
        let has = |ip: &str| {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            clients.iter().any(|n| n.contains(&ip))
        };
        assert!(has("127.0.0.1") && has("::1") && !has("10.0.0.5"));
        let text = EXAMPLE.replace(
            "# metrics_allowed_clients = [\"127.0.0.0/8\", \"::1/128\"]",
            "metrics_allowed_clients = [\"10.0.0.0/24\"]",
        );
        let c = parse(&text).unwrap();
        assert_eq!(
            c.web.metrics_clients(),
            vec!["10.0.0.0/24".parse::<IpNet>().unwrap()]
        );
        assert_eq!(c.metrics_token().unwrap(), None);
    }

    #[test]
    fn a_short_or_missing_metrics_token_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("metrics.token");
        let text = EXAMPLE.replace(
            "# metrics_token_file = \"/etc/schoolgate/metrics.token\"",
            &format!("metrics_token_file = \"{}\"", file.display()),
        );
        let c = parse(&text).unwrap();
        let e = c.metrics_token().unwrap_err();
        assert_eq!(e.field.as_deref(), Some("web.metrics_token_file"), "{e}");
        std::fs::write(&file, "short\n").unwrap();
        assert!(
            c.metrics_token()
                .unwrap_err()
                .to_string()
                .contains("at least 16")
        );
        std::fs::write(&file, "0123456789abcdef0123\n").unwrap();
        assert_eq!(
            c.metrics_token().unwrap().as_deref(),
            Some("0123456789abcdef0123")
        );
    }

    #[test]
    fn web_tls_needs_the_relay_certificate() {
        let text = EXAMPLE.replace("# tls = true", "tls = true");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("web.tls"));
        assert!(e.line.is_some(), "{e:?}");
    }

    #[test]
    fn contact_hours_and_days() {
        let c = parse(EXAMPLE).unwrap();
        let h = c.safeguarding.contact_hours.unwrap();
        assert_eq!(h, ContactHours::default());
        assert_eq!("Fri-Mon".parse::<Days>().unwrap(), Days(0b1110001));
        assert!("Funday".parse::<Days>().is_err());
        let text = EXAMPLE.replace("end = \"18:00\"", "end = \"6pm\"");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("safeguarding.contact_hours"));
    }

    #[test]
    fn the_next_hop_password_is_read_from_its_file_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let pass = dir.path().join("smarthost.pass");
        std::fs::write(&pass, "s3cret\n").unwrap();
        let text = EXAMPLE.replace(
            "# next_hop_auth = { user = \"schoolgate\", password_file = \"/etc/schoolgate/smarthost.pass\" }",
            &format!("next_hop_auth = {{ user = \"schoolgate\", password_file = \"{}\" }}", pass.display()),
        );
        let c = parse(&text).unwrap();
        let auth = c.next_hop_auth().unwrap().unwrap();
        assert_eq!(
            (auth.user.as_str(), auth.password.as_str()),
            ("schoolgate", "s3cret")
        );
        assert!(!format!("{auth:?}").contains("s3cret"));
        std::fs::remove_file(&pass).unwrap();
        let e = c.next_hop_auth().unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("relay.next_hop_auth.password_file")
        );
    }

    #[test]
    fn the_milter_section() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(c.milter.listen, None);
        assert_eq!(c.milter.quarantine, MilterQuarantine::Schoolgate);
        assert_eq!(c.milter.on_error, MilterOnError::Tempfail);
        assert_eq!(c.milter_max_message_size(), 50 << 20);
        let text = EXAMPLE
            .replace(
                "# listen = \"127.0.0.1:7357\"",
                "listen = \"127.0.0.1:7357\"\nmax_message_size = \"1MiB\"",
            )
            .replace("quarantine = \"schoolgate\"", "quarantine = \"hold\"")
            .replace("on_error = \"tempfail\"", "on_error = \"accept\"");
        let c = parse(&text).unwrap();
        assert_eq!(
            c.milter.listen,
            Some(MilterListen::Tcp("127.0.0.1:7357".parse().unwrap()))
        );
        assert_eq!(c.milter.quarantine, MilterQuarantine::Hold);
        assert_eq!(c.milter.on_error, MilterOnError::Accept);
        assert_eq!(c.milter_max_message_size(), 1 << 20);
        for (written, path) in [
            ("/run/schoolgate/milter.sock", "/run/schoolgate/milter.sock"),
            (
                "unix:/var/spool/postfix/schoolgate",
                "/var/spool/postfix/schoolgate",
            ),
        ] {
            assert_eq!(
                written.parse::<MilterListen>(),
                Ok(MilterListen::Unix(path.into()))
            );
        }
        assert_eq!(
            "inet:127.0.0.1:7357".parse::<MilterListen>(),
            Ok(MilterListen::Tcp("127.0.0.1:7357".parse().unwrap()))
        );
        let text = EXAMPLE.replace(
            "# listen = \"127.0.0.1:7357\"",
            "listen = \"localhost-ish\"",
        );
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("milter.listen"));
        let text = EXAMPLE.replace("on_error = \"tempfail\"", "on_error = \"shrug\"");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("milter.on_error"));
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!("64KiB".parse::<ByteSize>().unwrap(), ByteSize(65536));
        assert_eq!("10MB".parse::<ByteSize>().unwrap(), ByteSize(10_000_000));
        assert!("ten".parse::<ByteSize>().is_err());
        assert_eq!(
            "5m".parse::<HumanDuration>().unwrap(),
            HumanDuration(Duration::from_secs(300))
        );
        assert!("5 fortnights".parse::<HumanDuration>().is_err());
    }

    #[test]
    fn sender_release_is_on_by_default_and_switched_for_all_or_per_rule() {
        let c = parse(EXAMPLE).unwrap();
        for rule in crate::policy::release::SENDER_RELEASABLE {
            assert!(c.allow_sender_release().allows(rule), "{rule}");
        }
        assert!(!c.allow_sender_release().allows("pupil-personal-address"));
        let with = |value: &str| {
            EXAMPLE.replace(
                "# allow_sender_release = true",
                &format!("allow_sender_release = {value}"),
            )
        };
        let off = parse(&with("false")).unwrap();
        assert!(!off.allow_sender_release().allows("exposed-recipients"));
        let each = parse(&with("{ wrong-recipient = false }")).unwrap();
        assert!(!each.allow_sender_release().allows("wrong-recipient"));
        assert!(each.allow_sender_release().allows("password-in-message"));
        for never in [
            "{ pupil-personal-address = true }",
            "{ unencrypted-sensitive-attachment = true }",
            "\"yes\"",
        ] {
            let e = parse(&with(never)).unwrap_err();
            assert!(
                e.to_string().contains("allow_sender_release"),
                "{never}: {e}"
            );
        }
    }

    /// The example config with its `[school]` replaced by two `[[schools]]` (and `extra`
    /// appended to the second).
    fn trust(extra: &str) -> String {
        let start = EXAMPLE.find("[school]").unwrap();
        let end = EXAMPLE.find("[relay]").unwrap();
        format!(
            "{}{}\n{}\n[[schools]]\nname = \"Ashdown Park School\"\ndomains = [\"ashdownpark.sch.uk\"]\n\
             pupil_domains = [\"pupils.ashdownpark.sch.uk\"]\ndirectory = \"a.csv\"\n\
             [schools.disclaimer]\ntext = \"Ashdown.\"\n\
             [schools.safeguarding]\ndsl = [\"dsl@ashdownpark.sch.uk\"]\n\
             rules = {{ staff-personal-address = \"quarantine\" }}\n\
             [[schools]]\nname = \"Bramblefield Primary\"\ndomains = [\"bramblefield.sch.uk\"]\n\
             directory = \"b.csv\"\ntimezone = \"Europe/Dublin\"\n{extra}",
            &EXAMPLE[..start],
            "[school]\nstaff_roles = [\"dsl\"]\n",
            &EXAMPLE[end..]
        )
    }

    #[test]
    fn a_single_school_config_has_no_schools_and_decides_as_before() {
        let c = parse(EXAMPLE).unwrap();
        assert!(c.schools.is_empty());
        assert_eq!(c.school.name, "Example Academy");
        assert_eq!(c.school_of("t.baker@example-academy.sch.uk"), None);
        assert!(c.for_school(0).is_none());
        assert!(c.trust_school.is_none());
        let start = EXAMPLE.find("[school]").unwrap();
        let end = EXAMPLE.find("[relay]").unwrap();
        let without = format!("{}{}", &EXAMPLE[..start], &EXAMPLE[end..]);
        let e = parse(&without).unwrap_err();
        assert!(e.to_string().contains("[school] is missing"), "{e}");
    }

    #[test]
    fn a_school_s_own_keys_override_the_trust_wide_defaults_key_by_key() {
        let c = parse(&trust("")).unwrap();
        assert_eq!(c.schools.len(), 2);
        let (a, b) = (&c.schools[0], &c.schools[1]);
        // The school's own text; exempt_roles and on_signed from the trust-wide [disclaimer].
        assert_eq!(a.disclaimer.text, "Ashdown.");
        assert_eq!(a.disclaimer.exempt_roles, vec!["headteacher".to_string()]);
        assert_eq!(
            b.disclaimer.text, c.disclaimer.text,
            "no [schools.disclaimer]: the trust's"
        );
        // [school] keys: staff_roles from the trust, timezone the school's own or the default.
        assert_eq!(a.school.staff_roles, vec!["dsl".to_string()]);
        assert_eq!(a.school.timezone, "Europe/London");
        assert_eq!(b.school.timezone, "Europe/Dublin");
        // Safeguarding: the school's DSL; rules merged rule by rule; alert_window the trust's.
        assert_eq!(a.safeguarding.dsl[0].0, "dsl@ashdownpark.sch.uk");
        assert_eq!(b.safeguarding.dsl, c.safeguarding.dsl);
        assert_eq!(
            a.safeguarding.rules.get(&ContactRule::StaffPersonalAddress),
            Some(&Action::Quarantine)
        );
        assert_eq!(
            a.safeguarding.rules.get(&ContactRule::PupilPersonalAddress),
            c.safeguarding.rules.get(&ContactRule::PupilPersonalAddress)
        );
        assert_eq!(a.safeguarding.alert_window, c.safeguarding.alert_window);
        // The trust-wide [school] knows every school's domains.
        assert_eq!(c.school.name, "the trust");
        let all: Vec<&str> = c.school.domains.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(all, vec!["ashdownpark.sch.uk", "bramblefield.sch.uk"]);
    }

    #[test]
    fn a_message_belongs_to_the_school_of_its_sender_s_domain() {
        let c = parse(&trust("")).unwrap();
        assert_eq!(c.school_of("r.ellis@ashdownpark.sch.uk"), Some(0));
        assert_eq!(c.school_of("L.Grant@Pupils.AshdownPark.sch.uk"), Some(0));
        assert_eq!(c.school_of("s.hale@bramblefield.sch.uk"), Some(1));
        assert_eq!(c.school_of("x@sub.bramblefield.sch.uk"), None);
        assert_eq!(c.school_of("x@trust.example"), None);
        assert_eq!(c.school_of(""), None);
        let a = c.for_school(0).unwrap();
        assert_eq!(a.trust_school.as_deref(), Some("Ashdown Park School"));
        assert_eq!(a.school.name, "Ashdown Park School");
        assert_eq!(a.disclaimer.text, "Ashdown.");
        // Its own domain first (alerts come from schoolgate@ it), then the trust's others.
        assert_eq!(a.school.domains[0].0, "ashdownpark.sch.uk");
        assert!(
            a.school
                .domains
                .iter()
                .any(|d| d.0 == "bramblefield.sch.uk")
        );
        assert_eq!(a.alert_from(), "schoolgate@ashdownpark.sch.uk");
    }

    #[test]
    fn a_domain_or_a_name_claimed_by_two_schools_is_refused_naming_both() {
        let e = parse(&trust("pupil_domains = [\"AshdownPark.sch.uk\"]\n")).unwrap_err();
        let said = e.to_string();
        for needle in [
            "ashdownpark.sch.uk",
            "Ashdown Park School",
            "Bramblefield Primary",
        ] {
            assert!(
                said.to_lowercase().contains(&needle.to_lowercase()),
                "{needle}: {said}"
            );
        }
        let twice = trust("").replace("Bramblefield Primary", "ashdown park school");
        let e = parse(&twice).unwrap_err();
        assert!(e.to_string().contains("two schools are named"), "{e}");
        let nameless = trust("").replace("name = \"Bramblefield Primary\"\n", "");
        let e = parse(&nameless).unwrap_err();
        assert!(e.to_string().contains("needs its own name"), "{e}");
        let unknown = trust("colour = \"green\"\n");
        let e = parse(&unknown).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let no_directory = trust("").replace("directory = \"b.csv\"\n", "");
        let e = parse(&no_directory).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
    }

    #[test]
    fn the_trust_example_is_a_valid_trust() {
        let c = parse(include_str!("../policies/trust.toml")).unwrap();
        let names: Vec<&str> = c.schools.iter().map(|s| s.school.name.as_str()).collect();
        assert_eq!(names, vec!["Ashdown Park School", "Bramblefield Primary"]);
        assert_eq!(c.school_of("x@downland-trust.org.uk"), None);
        let b = c.for_school(1).unwrap();
        assert_eq!(
            b.safeguarding.rules.get(&ContactRule::PupilPersonalAddress),
            Some(&Action::Quarantine)
        );
        assert_eq!(
            b.safeguarding.rules.get(&ContactRule::StaffPersonalAddress),
            Some(&Action::Flag)
        );
        assert_eq!(b.disclaimer.exempt_roles, vec!["headteacher".to_string()]);
    }
}
