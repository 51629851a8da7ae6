//! The next hop over SMTP: the school's smarthost (its own mail server, or a Microsoft 365 or
//! Google Workspace connector), spoken to through lettre.
//!
//! The relay proxies before queueing: its client hears our 250 only after the smarthost has
//! given its own, so everything here is about passing the smarthost's answer back faithfully
//! (and the message's bytes on unchanged), and about never mistaking anything else for a 250.
//!
//! # Connections are kept, carefully
//!
//! Opening a connection (TCP, greeting, EHLO, perhaps STARTTLS and AUTH) and closing it (QUIT)
//! cost more than the transaction itself, so a connection is kept for the next message (lettre's
//! own pool is not used: it takes back a connection whose send was abandoned half-way). The
//! terms that make this safe:
//!
//! - A connection goes back to the pool only after a transaction that ended with the next
//!   hop's 2xx to the end of the data, read in full. A send that failed, was refused, timed out
//!   or was abandoned (the future dropped: our timeout, the relay's) drops its connection, so no
//!   reply can ever be left in flight for a later message to mistake for its own.
//! - A kept connection is checked by the first command of the next transaction (`MAIL`), which
//!   is the cheapest check there is: it costs no extra round trip. If that fails — the next hop
//!   closed or restarted meanwhile (end of stream, reset, or its `421` on closing), or will take
//!   no more on this session (another 4xx) — nothing has been accepted yet, so the message goes
//!   out on a fresh connection instead (once), and on a dead one the other kept connections are
//!   dropped as probably dead too. A next hop that is really down is therefore still seen as
//!   down: the fresh connection fails, and the client hears 451.
//! - A connection idle for more than [`IDLE_LIMIT`] (checked when a message comes, and by a
//!   task every half of it) or used for [`MESSAGES_PER_CONNECTION`] messages is closed (QUIT)
//!   instead of reused, and at most [`MAX_IDLE`] are kept.
//!
//! When the next hop offers PIPELINING, MAIL, RCPT and DATA go in one write (RFC 2920).

use std::error::Error as _;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lettre::address::{Address, Envelope as LettreEnvelope};
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Tls, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use tokio::net::TcpStream;

use super::{DeliveryError, NextHopAddress, NextHopAuth};
use crate::envelope::Envelope;

/// A kept connection idle for longer than this is closed rather than reused (Postfix's
/// `smtp_connection_cache_time_limit` is 2 s, its reuse time limit 300 s; the next hop's own
/// idle timeout is commonly 300 s).
pub const IDLE_LIMIT: Duration = Duration::from_secs(30);
/// After this many messages a connection is closed and the next message opens a fresh one.
pub const MESSAGES_PER_CONNECTION: u32 = 100;
/// At most this many idle connections are kept; more in use at once are closed after use.
pub const MAX_IDLE: usize = 32;
/// How long a QUIT to a connection that is being closed may take.
const QUIT_TIMEOUT: Duration = Duration::from_secs(10);
/// A message up to this size goes to the next hop in one write, through a copy of its own.
const ONE_WRITE_LIMIT: usize = 1024 * 1024;
/// A larger one goes in pieces of this size.
const LARGE_MESSAGE_PIECE: usize = 64 * 1024;

/// A smarthost reached over SMTP.
///
/// One SMTP transaction per [`SmtpHop::deliver`]: like lettre's own `send`, the transaction stops
/// at the first recipient the next hop refuses, so a message with one bad recipient among
/// several gets that refusal as a whole (the client then sees the 5xx or 4xx for all of its
/// recipients). That is acceptable for a gateway in front of one smarthost, where a refused
/// recipient is rare and a retry by the client is harmless, and it keeps the answer the client
/// sees identical to the smarthost's.
pub struct SmtpHop {
    /// The next hop as written (`smtps://host:465`), for errors and logs; never holds a password.
    hop: String,
    host: String,
    port: u16,
    tls: Tls,
    hello_name: ClientId,
    credentials: Option<Credentials>,
    /// Bounds a whole hand-over, not just the connect: lettre applies its own timeout only to the
    /// TCP connect, so a next hop that accepts the connection and then stalls would otherwise
    /// hold the client's session (and its message) for ever.
    timeout: Duration,
    /// Connections whose last transaction succeeded, oldest first. A task closes the ones left
    /// idle too long while no message comes to take them.
    idle: Arc<Mutex<Vec<Idle>>>,
    /// [`IDLE_LIMIT`], [`MESSAGES_PER_CONNECTION`] and [`MAX_IDLE`] (tests change them).
    idle_limit: Duration,
    messages_per_connection: u32,
    max_idle: usize,
}

/// An open connection to the next hop.
struct Connection {
    smtp: AsyncSmtpConnection,
    /// The next hop offered PIPELINING.
    pipelining: bool,
    /// Messages the next hop has accepted on it.
    sent: u32,
    /// Every command so far has had its answer read: a QUIT now gets the answer to QUIT.
    in_sync: bool,
}

impl Connection {
    fn new(smtp: AsyncSmtpConnection) -> Self {
        Connection {
            smtp,
            pipelining: false,
            sent: 0,
            in_sync: true,
        }
    }
}

/// Text sent as it is, for a group of pipelined commands (each already ending in CRLF).
struct Verbatim<'a>(&'a str);

impl fmt::Display for Verbatim<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A message's data section: every line that starts with "." gets another in front (RFC 5321
/// §4.5.2), then CRLF "." CRLF ends it. The caller has made sure that every LF before a "." is
/// part of a CRLF, so a line start is the start of the message or the byte after an LF — the
/// same lines lettre's own writer stuffs.
struct DataSection<'a>(&'a str);

impl fmt::Display for DataSection<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        let mut from = 0;
        if text.starts_with('.') {
            f.write_str(".")?;
        }
        for lf in memchr::memchr_iter(b'\n', text.as_bytes()) {
            if text.as_bytes().get(lf + 1) == Some(&b'.') {
                f.write_str(&text[from..=lf])?;
                f.write_str(".")?;
                from = lf + 1;
            }
        }
        f.write_str(&text[from..])?;
        f.write_str("\r\n.\r\n")
    }
}

struct Idle {
    conn: Connection,
    since: Instant,
}

/// Why a transaction did not end in a delivery.
enum Failure {
    /// A kept connection could not start the transaction: it is gone (`dead`: end of stream,
    /// a reset, a 421), or the next hop will take no more on it (another 4xx to MAIL, as a
    /// server with a per-session message limit says). Nothing was accepted, so the message may
    /// go out on a fresh connection, once.
    Stale { error: DeliveryError, dead: bool },
    /// The answer for this message.
    Final(DeliveryError),
}

impl SmtpHop {
    /// Sets up TLS once, so that a TLS set-up that cannot work shows at start-up rather than on
    /// the first message. Nothing is sent yet: a wrong password shows on the first message (as
    /// `Unreachable`, so the mail waits with the client rather than bouncing).
    ///
    /// Must run inside the Tokio runtime, which the kept connections belong to (they are closed
    /// by tasks on it). Outside one this returns an error.
    pub fn new(
        address: &NextHopAddress,
        auth: Option<NextHopAuth>,
        helo_name: &str,
        timeout: Duration,
    ) -> Result<Self, DeliveryError> {
        let hop = address.to_string();
        let (host, port) = match address {
            NextHopAddress::Smtp { host, port }
            | NextHopAddress::SmtpStartTls { host, port }
            | NextHopAddress::Smtps { host, port } => (host.clone(), *port),
            NextHopAddress::Outbox { .. } => {
                return Err(DeliveryError::Local {
                    hop,
                    detail: "an outbox is not an SMTP next hop".into(),
                });
            }
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(DeliveryError::Local {
                hop,
                detail: "the SMTP next hop must be set up inside the Tokio runtime".into(),
            });
        }

        let tls_parameters = TlsParameters::builder(host.clone())
            .build_rustls()
            .map_err(|e| DeliveryError::Unreachable {
                hop: hop.clone(),
                detail: format!("cannot set up TLS for {host}: {}", describe(&e)),
            })?;
        let tls = match address {
            NextHopAddress::SmtpStartTls { .. } => Tls::Required(tls_parameters),
            NextHopAddress::Smtps { .. } => Tls::Wrapper(tls_parameters),
            _ => Tls::Opportunistic(tls_parameters),
        };
        if auth.is_some() && matches!(address, NextHopAddress::Smtp { .. }) {
            tracing::warn!(
                next_hop = %hop,
                "the next hop password goes in clear text if {hop} does not offer STARTTLS; \
                 use smtp+starttls:// or smtps:// to require TLS"
            );
        }

        let hello_name = match helo_name.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => ClientId::Ipv4(ip),
            Ok(IpAddr::V6(ip)) => ClientId::Ipv6(ip),
            Err(_) => ClientId::Domain(helo_name.to_string()),
        };

        // With TLS from the first byte lettre opens the TCP connection itself, and Nagle's
        // algorithm cannot be turned off on it (see `connect_tcp`): such a connection is used
        // for one message only, as a kept one would wait out a delayed ACK on every message.
        let messages_per_connection = match tls {
            Tls::Wrapper(_) => 1,
            _ => MESSAGES_PER_CONNECTION,
        };
        Ok(SmtpHop {
            hop,
            host,
            port,
            tls,
            hello_name,
            credentials: auth.map(|a| Credentials::new(a.user, a.password)),
            timeout,
            idle: idle_pool(IDLE_LIMIT),
            idle_limit: IDLE_LIMIT,
            messages_per_connection,
            max_idle: MAX_IDLE,
        })
    }

    /// Hands the message to the next hop; `Ok` carries its reply to the end of the data, as one
    /// line (`250 2.0.0 Ok: queued as 4XyZ`), which the relay logs as the queue id.
    ///
    /// The next hop stores exactly `message` when it ends in CRLF. One that does not end in CRLF
    /// arrives with CRLF added, as SMTP cannot carry anything else.
    pub async fn deliver(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<String, DeliveryError> {
        let lettre_envelope = self.lettre_envelope(envelope)?;
        if has_bare_line_end_before_dot(message) {
            // lettre dot-stuffs only after CRLF; a next hop that also takes a lone CR or LF as a
            // line end could read "<LF>.<CRLF>" as the end of the data and the rest of the
            // message as commands (SMTP smuggling). The bytes cannot be changed, so refuse.
            return Err(DeliveryError::Refused {
                hop: self.hop.clone(),
                code: 554,
                text: "5.6.0 message has a lone CR or LF before a \".\", which the next hop could \
                       take for the end of the data; not passed on"
                    .into(),
            });
        }
        // lettre always ends the data with "\r\n.\r\n", taking the CRLF as part of the
        // terminator; without this the next hop would store two bytes more than we were given.
        let body = message.strip_suffix(b"\r\n").unwrap_or(message);

        // Dropping the hand-over (here, or the relay's own timeout) drops the connection it was
        // using: see the module documentation.
        match tokio::time::timeout(self.timeout, self.hand_over(&lettre_envelope, body)).await {
            Ok(result) => result,
            Err(_) => Err(DeliveryError::Unreachable {
                hop: self.hop.clone(),
                detail: format!("no complete answer within {}s", self.timeout.as_secs_f64()),
            }),
        }
    }

    /// One transaction, on a kept connection if there is one that still works, else on a fresh
    /// one; the connection is kept afterwards only if the next hop accepted the message.
    async fn hand_over(
        &self,
        envelope: &LettreEnvelope,
        body: &[u8],
    ) -> Result<String, DeliveryError> {
        if let Some(mut conn) = self.take_idle() {
            match self.transaction(&mut conn, envelope, body, true).await {
                Ok(reply) => {
                    self.keep(conn);
                    return Ok(reply);
                }
                Err(Failure::Stale { error, dead }) => {
                    tracing::debug!(next_hop = %self.hop, %error,
                        "a kept connection cannot take the message; using a fresh one");
                    if dead {
                        // Most likely the next hop restarted, and then every other kept
                        // connection is dead too.
                        drop(conn);
                        self.close_idle();
                    } else {
                        close_later(conn);
                    }
                }
                Err(Failure::Final(e)) => {
                    close_later(conn);
                    return Err(e);
                }
            }
        }
        let mut conn = self.connect().await?;
        match self.transaction(&mut conn, envelope, body, false).await {
            Ok(reply) => {
                self.keep(conn);
                Ok(reply)
            }
            Err(Failure::Stale { error: e, .. } | Failure::Final(e)) => {
                close_later(conn);
                Err(e)
            }
        }
    }

    /// Opens a connection: greeting, EHLO, STARTTLS as configured, AUTH if configured.
    async fn connect(&self) -> Result<Connection, DeliveryError> {
        let connected = match &self.tls {
            // TLS from the first byte: lettre has to open the connection itself.
            Tls::Wrapper(parameters) => {
                AsyncSmtpConnection::connect_tokio1(
                    (self.host.as_str(), self.port),
                    Some(self.timeout),
                    &self.hello_name,
                    Some(parameters.clone()),
                    None,
                )
                .await
            }
            _ => {
                let tcp = self.connect_tcp().await?;
                AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello_name).await
            }
        };
        let mut smtp = connected.map_err(|e| self.connection_error(&e))?;
        let tls = match &self.tls {
            Tls::Opportunistic(parameters) if smtp.can_starttls() => Some(parameters),
            Tls::Required(parameters) => Some(parameters),
            _ => None,
        };
        if let Some(parameters) = tls
            && let Err(e) = smtp.starttls(parameters.clone(), &self.hello_name).await
        {
            // lettre has already closed the connection.
            return Err(self.connection_error(&e));
        }
        let mut conn = Connection::new(smtp);
        // lettre keeps only the EHLO keywords it uses itself, and PIPELINING is not among them:
        // ask again (before AUTH, which some servers forget on a new EHLO). Once per connection.
        match conn.smtp.command(Ehlo::new(self.hello_name.clone())).await {
            Ok(ehlo) => {
                conn.pipelining = ehlo
                    .message()
                    .skip(1)
                    .any(|l| l.trim().eq_ignore_ascii_case("PIPELINING"));
            }
            Err(e) => {
                close_later(conn);
                return Err(self.connection_error(&e));
            }
        }
        if let Some(credentials) = &self.credentials
            && let Err(e) = conn
                .smtp
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
        {
            close_later(conn);
            return Err(self.map_error(&e));
        }
        Ok(conn)
    }

    /// The TCP connection, with Nagle's algorithm off: lettre's own writer (used for a large or
    /// non-UTF-8 message) writes the message and the final `.` separately, and on a kept
    /// connection (past TCP's quick-ACK start) Nagle would hold the `.` back until the next
    /// hop's delayed ACK, some 40 ms, for every message.
    async fn connect_tcp(&self) -> Result<TcpStream, DeliveryError> {
        let unreachable = |detail: String| DeliveryError::Unreachable {
            hop: self.hop.clone(),
            detail,
        };
        let addresses = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| unreachable(format!("cannot resolve {}: {e}", self.host)))?;
        let mut last_error = None;
        for address in addresses {
            match tokio::time::timeout(self.timeout, TcpStream::connect(address)).await {
                Ok(Ok(tcp)) => {
                    let _ = tcp.set_nodelay(true);
                    return Ok(tcp);
                }
                Ok(Err(e)) => last_error = Some(format!("cannot connect to {address}: {e}")),
                Err(_) => last_error = Some(format!("connecting to {address} timed out")),
            }
        }
        Err(unreachable(last_error.unwrap_or_else(|| {
            format!("{} resolves to no address", self.host)
        })))
    }

    /// MAIL, RCPT for each recipient, DATA and the message, each answer checked. `reused` says
    /// the connection was kept from an earlier message, so that a failure of its first command
    /// means only that it went stale.
    ///
    /// When the next hop offers PIPELINING (RFC 2920), MAIL, the RCPTs and DATA go in one
    /// write and their answers are read in order; the message itself goes only after DATA's 354.
    async fn transaction(
        &self,
        conn: &mut Connection,
        envelope: &LettreEnvelope,
        body: &[u8],
        reused: bool,
    ) -> Result<String, Failure> {
        let server = conn.smtp.server_info();
        let mut parameters = Vec::new();
        if envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .any(|a| !AsRef::<str>::as_ref(a).is_ascii())
        {
            if !server.supports_feature(Extension::SmtpUtfEight) {
                return Err(Failure::Final(DeliveryError::Refused {
                    hop: self.hop.clone(),
                    code: 553,
                    text: "5.6.7 the next hop does not support SMTPUTF8, needed for a non-ASCII \
                           address in the envelope"
                        .into(),
                }));
            }
            parameters.push(MailParameter::SmtpUtfEight);
        }
        if !body.is_ascii() {
            if !server.supports_feature(Extension::EightBitMime) {
                return Err(Failure::Final(DeliveryError::Refused {
                    hop: self.hop.clone(),
                    code: 554,
                    text: "5.6.3 the next hop does not accept 8-bit data (no 8BITMIME), and \
                           schoolgate passes messages on unconverted"
                        .into(),
                }));
            }
            parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let mail = Mail::new(envelope.from().cloned(), parameters);
        let rcpts = envelope
            .to()
            .iter()
            .map(|to| Rcpt::new(to.clone(), Vec::new()));

        // While answers to a pipelined group are outstanding, or the data has begun, a QUIT
        // would be misread (or taken for message text): see `close_later`.
        conn.in_sync = !conn.pipelining;
        let mail_reply = if conn.pipelining {
            let mut group = mail.to_string();
            for rcpt in rcpts.clone() {
                group.push_str(&rcpt.to_string());
            }
            group.push_str(&Data.to_string());
            conn.smtp.command(Verbatim(&group)).await
        } else {
            conn.smtp.command(mail).await
        };
        match mail_reply {
            // On a kept connection, end of stream, a reset, or the 421 a next hop sends when it
            // closes a connection mean the connection is gone; another 4xx may be a limit on
            // messages per session. Either way the message has not begun. (A 5xx is the next
            // hop's answer for this message.)
            Err(e) if reused && (e.status().is_none() || e.is_transient()) => {
                let dead = e.status().is_none_or(|code| u16::from(code) == 421);
                let error = self.map_error(&e);
                return Err(Failure::Stale { error, dead });
            }
            other => {
                self.require(other, 2, "MAIL FROM")?;
            }
        }
        for rcpt in rcpts {
            let reply = if conn.pipelining {
                conn.smtp.read_response().await
            } else {
                conn.smtp.command(rcpt).await
            };
            self.require(reply, 2, "RCPT TO")?;
        }
        let data = if conn.pipelining {
            conn.smtp.read_response().await
        } else {
            conn.smtp.command(Data).await
        };
        // Every answer is in; after a 354 the next hop reads message text until the ".".
        conn.in_sync = !matches!(&data, Ok(r) if u16::from(r.code()) / 100 == 3);
        self.require(data, 3, "DATA")?;
        let end = match std::str::from_utf8(body) {
            // The message, dot-stuffed, and the final "." in one write: one copy of the
            // message, made much faster than lettre's own writer makes its.
            Ok(text) if body.len() <= ONE_WRITE_LIMIT => conn.smtp.command(DataSection(text)).await,
            // lettre's own writer: any bytes, and a large message a piece at a time, so that
            // no third copy of it is held.
            _ => {
                conn.smtp
                    .message_iter(body.chunks(LARGE_MESSAGE_PIECE))
                    .await
            }
        };
        conn.in_sync = match &end {
            Ok(_) => true,
            Err(e) => e.status().is_some(),
        };
        let line = self.require(end, 2, "the end of the data")?;
        tracing::debug!(next_hop = %self.hop, reply = %line, "next hop accepted the message");
        conn.sent += 1;
        Ok(line)
    }

    /// The reply as one line if its first digit is `class`. lettre counts any 2xx or 3xx as
    /// success; anything but the expected class is a confused conversation, not a success.
    fn require(
        &self,
        reply: Result<Response, SmtpError>,
        class: u16,
        to_what: &str,
    ) -> Result<String, Failure> {
        let response = reply.map_err(|e| Failure::Final(self.map_error(&e)))?;
        let code = u16::from(response.code());
        let line = reply_line(code, response.message());
        if code / 100 == class {
            Ok(line)
        } else {
            Err(Failure::Final(DeliveryError::Unreachable {
                hop: self.hop.clone(),
                detail: format!("unexpected answer to {to_what}: {line}"),
            }))
        }
    }

    /// The most recently used kept connection, if one is young enough; older ones are closed.
    fn take_idle(&self) -> Option<Connection> {
        close_expired(&self.idle, self.idle_limit);
        lock(&self.idle).pop().map(|i| i.conn)
    }

    /// Keeps a connection whose transaction just succeeded, unless it has done its share.
    fn keep(&self, conn: Connection) {
        if conn.sent >= self.messages_per_connection {
            close_later(conn);
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.len() >= self.max_idle {
            drop(idle);
            close_later(conn);
            return;
        }
        idle.push(Idle {
            conn,
            since: Instant::now(),
        });
    }

    /// Closes every kept connection.
    fn close_idle(&self) {
        let idle = std::mem::take(&mut *lock(&self.idle));
        for i in idle {
            close_later(i.conn);
        }
    }

    /// Kept connections now (for tests).
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        lock(&self.idle).len()
    }

    /// lettre validates addresses itself; one it cannot parse would otherwise fail deep inside
    /// the send with no word of which address it was, so it is refused here by name.
    fn lettre_envelope(&self, envelope: &Envelope) -> Result<LettreEnvelope, DeliveryError> {
        let refuse =
            |what: &str, enhanced: &str, address: &str, why: String| DeliveryError::Refused {
                hop: self.hop.clone(),
                code: 553,
                text: format!(
                    "{enhanced} {what} <{address}> cannot be passed to the next hop: {why}"
                ),
            };
        let from = if envelope.mail_from.is_empty() {
            None
        } else {
            Some(
                envelope
                    .mail_from
                    .parse::<Address>()
                    .map_err(|e| refuse("sender", "5.1.7", &envelope.mail_from, e.to_string()))?,
            )
        };
        let to = envelope
            .rcpt_to
            .iter()
            .map(|rcpt| {
                rcpt.parse::<Address>()
                    .map_err(|e| refuse("recipient", "5.1.3", rcpt, e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        LettreEnvelope::new(from, to).map_err(|e| DeliveryError::Refused {
            hop: self.hop.clone(),
            code: 554,
            text: format!("5.5.1 no recipients to pass to the next hop: {e}"),
        })
    }

    /// A failure before any message was begun (the greeting, EHLO, STARTTLS): whatever its
    /// code, it is about this gateway's connection, not the message, so the message is deferred.
    /// Passing a 5xx greeting back would bounce every message the school sends while the
    /// smarthost refuses us (an address missing from a Microsoft 365 connector, say); Postfix
    /// defers here too (`smtp_skip_5xx_greeting`).
    fn connection_error(&self, e: &SmtpError) -> DeliveryError {
        match self.map_error(e) {
            DeliveryError::Refused { hop, code, text } => DeliveryError::Unreachable {
                hop,
                detail: format!(
                    "the next hop refused the connection: {code} {} (check that it accepts \
                     mail from this gateway)",
                    text.trim()
                ),
            },
            other => other,
        }
    }

    fn map_error(&self, e: &SmtpError) -> DeliveryError {
        let hop = self.hop.clone();
        if let Some(code) = e.status() {
            let code = u16::from(code);
            // lettre keeps the reply text (all lines joined, enhanced status code included) as
            // the error's source.
            let text = e.source().map(|s| s.to_string()).unwrap_or_default();
            if is_login_refusal(code) {
                // These say nothing about the message, only that our login (or lack of one) is
                // wrong. Passing a 5xx back would bounce every message until an admin fixes
                // the configuration; deferring keeps the mail with the client meanwhile.
                return DeliveryError::Unreachable {
                    hop,
                    detail: format!(
                        "the next hop refused our login: {code} {text} (check relay.next_hop_auth)"
                    ),
                };
            }
            return if e.is_transient() {
                DeliveryError::Deferred { hop, code, text }
            } else {
                DeliveryError::Refused { hop, code, text }
            };
        }
        let detail = if e.is_timeout() {
            format!("timed out: {}", describe(e))
        } else {
            describe(e)
        };
        DeliveryError::Unreachable { hop, detail }
    }
}

impl Drop for SmtpHop {
    /// Says goodbye on the kept connections (a reload replaces the next hop). Outside a runtime
    /// there is nothing to say it with, and they are just closed.
    fn drop(&mut self) {
        let idle = std::mem::take(&mut *lock(&self.idle));
        if tokio::runtime::Handle::try_current().is_ok() {
            for i in idle {
                close_later(i.conn);
            }
        }
    }
}

/// An empty pool of idle connections, and the task that closes the ones idle for longer than
/// `limit`; it ends when the pool is dropped.
fn idle_pool(limit: Duration) -> Arc<Mutex<Vec<Idle>>> {
    let idle = Arc::new(Mutex::new(Vec::new()));
    let pool = Arc::downgrade(&idle);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(limit / 2);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(idle) = pool.upgrade() else {
                return;
            };
            close_expired(&idle, limit);
        }
    });
    idle
}

/// Closes the connections idle for longer than `limit`.
fn close_expired(idle: &Mutex<Vec<Idle>>, limit: Duration) {
    let expired: Vec<Idle> = {
        let mut idle = lock(idle);
        // Oldest first, so the expired ones are a prefix.
        let fresh_from = idle
            .iter()
            .position(|i| i.since.elapsed() <= limit)
            .unwrap_or(idle.len());
        idle.drain(..fresh_from).collect()
    };
    for i in expired {
        close_later(i.conn);
    }
}

/// Sends QUIT and closes, on a task of its own: the answer for the message does not wait for it.
/// A connection out of step (an answer not read, a DATA not finished), or one outside a runtime,
/// is just closed: the next hop drops a transaction whose data never ended.
fn close_later(mut conn: Connection) {
    if !conn.in_sync {
        return;
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = tokio::time::timeout(QUIT_TIMEOUT, conn.smtp.abort()).await;
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// 530 (authentication required), 534 (mechanism too weak), 535 (credentials invalid) and 538
/// (encryption required for the mechanism), RFC 4954.
fn is_login_refusal(code: u16) -> bool {
    matches!(code, 530 | 534 | 535 | 538)
}

/// The reply as one line, as a log or the client's reply text wants it.
fn reply_line<'a>(code: u16, lines: impl Iterator<Item = &'a str>) -> String {
    let text = lines
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if text.is_empty() {
        code.to_string()
    } else {
        format!("{code} {text}")
    }
}

/// lettre's own Display shows one level of cause; the useful part (the OS error, the TLS
/// alert) is often further down.
fn describe(e: &SmtpError) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// A CR not followed by LF, or an LF not preceded by CR, directly before a ".".
fn has_bare_line_end_before_dot(message: &[u8]) -> bool {
    memchr::memchr_iter(b'.', message).any(|dot| match dot.checked_sub(1).map(|i| message[i]) {
        Some(b'\r') => true,
        Some(b'\n') => dot < 2 || message[dot - 2] != b'\r',
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    /// What the test next hop answers.
    #[derive(Clone)]
    struct Script {
        /// Sent before the greeting is written; `None` means never greet (a stalled server).
        greeting: Option<&'static str>,
        extensions: Vec<&'static str>,
        mail: &'static str,
        /// `(part of the address, reply)`; the first match wins, otherwise `250 2.1.5 Ok`.
        rcpt: Vec<(&'static str, &'static str)>,
        /// The reply to the end of the data, possibly multi-line (lines separated by CRLF).
        data_end: &'static str,
        auth: &'static str,
        /// Never answer the end of the first message's data (the server's first only).
        stall_first_data_end: bool,
        /// After answering the end of the data, say this (if anything) and close the connection,
        /// as a next hop does that drops connections it finds idle.
        close_after_data: Option<&'static str>,
        /// `(n, reply)`: MAIL commands after the first `n` of a session get `reply`.
        mail_limit: Option<(usize, &'static str)>,
    }

    impl Default for Script {
        fn default() -> Self {
            Script {
                greeting: Some("220 nexthop.test ESMTP"),
                extensions: vec!["8BITMIME", "SMTPUTF8", "AUTH PLAIN LOGIN"],
                mail: "250 2.1.0 Ok",
                rcpt: Vec::new(),
                data_end: "250 2.0.0 Ok: queued as 4XyZ",
                auth: "235 2.7.0 Authentication successful",
                stall_first_data_end: false,
                close_after_data: None,
                mail_limit: None,
            }
        }
    }

    /// What the test next hop saw.
    #[derive(Default, Debug)]
    struct Seen {
        mail: Vec<String>,
        rcpt: Vec<String>,
        auth: Vec<String>,
        /// Each message as stored, dot-stuffing undone.
        data: Vec<Vec<u8>>,
        /// Connections accepted.
        connections: usize,
        /// QUIT commands received.
        quits: usize,
        /// MAIL commands that came with more commands right behind them (pipelined).
        pipelined: usize,
    }

    struct Server {
        port: u16,
        seen: Arc<Mutex<Seen>>,
        task: JoinHandle<()>,
    }

    impl Server {
        fn hop(&self) -> NextHopAddress {
            NextHopAddress::Smtp {
                host: "127.0.0.1".into(),
                port: self.port,
            }
        }

        fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
            self.seen.lock().unwrap()
        }

        /// Waits for what the next hop saw to come to `done`, with a generous bound (a busy
        /// machine is slow, never wrong): a test waits for the event, not for a fixed time.
        async fn wait_until(&self, what: &str, done: impl Fn(&Seen) -> bool) {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !done(&self.seen()) {
                assert!(
                    Instant::now() < deadline,
                    "{what}: not within 60 s; seen {:?}",
                    *self.seen()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }

        /// Waits until nothing listens on the port any more (an aborted task dropped it).
        async fn wait_gone(&self) {
            let deadline = Instant::now() + Duration::from_secs(60);
            while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                assert!(
                    Instant::now() < deadline,
                    "port {} still open after 60 s",
                    self.port
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    async fn serve(script: Script) -> Server {
        serve_on(0, script).await
    }

    /// A test next hop on `port` (0: any free port). Its sessions belong to its task, so
    /// aborting the task is the next hop dying: the listener and every connection close.
    async fn serve_on(port: u16, script: Script) -> Server {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let seen2 = Arc::clone(&seen);
        let first_data_end = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let task = tokio::spawn(async move {
            let mut sessions = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                seen2.lock().unwrap().connections += 1;
                let script = script.clone();
                let seen = Arc::clone(&seen2);
                let first_data_end = Arc::clone(&first_data_end);
                sessions.spawn(async move {
                    let _ = session(stream, script, seen, first_data_end).await;
                });
                while sessions.try_join_next().is_some() {}
            }
        });
        Server { port, seen, task }
    }

    async fn session(
        stream: tokio::net::TcpStream,
        script: Script,
        seen: Arc<Mutex<Seen>>,
        first_data_end: Arc<std::sync::atomic::AtomicBool>,
    ) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let Some(greeting) = script.greeting else {
            // Hold the connection open without a word.
            let mut sink = Vec::new();
            let _ = read.read_until(0, &mut sink).await;
            return Ok(());
        };
        write
            .write_all(format!("{greeting}\r\n").as_bytes())
            .await?;
        let mut mails = 0;
        loop {
            let line = read_crlf_line(&mut read).await?;
            if line.is_empty() {
                return Ok(());
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            let verb = text.split(' ').next().unwrap_or("").to_ascii_uppercase();
            let reply: String = match verb.as_str() {
                "EHLO" => {
                    let mut r = String::from("250-nexthop.test\r\n");
                    for ext in &script.extensions {
                        r.push_str(&format!("250-{ext}\r\n"));
                    }
                    r.push_str("250 SIZE 100000000");
                    r
                }
                "MAIL" => {
                    let mut seen = seen.lock().unwrap();
                    seen.mail.push(text.clone());
                    if !read.buffer().is_empty() {
                        seen.pipelined += 1;
                    }
                    mails += 1;
                    match script.mail_limit {
                        Some((n, reply)) if mails > n => reply.into(),
                        _ => script.mail.into(),
                    }
                }
                "RCPT" => {
                    seen.lock().unwrap().rcpt.push(text.clone());
                    script
                        .rcpt
                        .iter()
                        .find(|(part, _)| text.contains(part))
                        .map_or("250 2.1.5 Ok", |(_, reply)| reply)
                        .into()
                }
                "AUTH" => {
                    seen.lock().unwrap().auth.push(text.clone());
                    script.auth.into()
                }
                "DATA" => {
                    write
                        .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    let mut data = Vec::new();
                    loop {
                        let line = read_crlf_line(&mut read).await?;
                        if line.is_empty() {
                            return Ok(());
                        }
                        if line == b".\r\n" {
                            break;
                        }
                        data.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
                    }
                    seen.lock().unwrap().data.push(data);
                    if script.stall_first_data_end
                        && first_data_end.swap(false, std::sync::atomic::Ordering::SeqCst)
                    {
                        std::future::pending::<()>().await;
                    }
                    if let Some(last_words) = script.close_after_data {
                        let reply = format!("{}\r\n{last_words}", script.data_end);
                        write.write_all(reply.trim_end().as_bytes()).await?;
                        write.write_all(b"\r\n").await?;
                        return Ok(());
                    }
                    script.data_end.into()
                }
                "RSET" | "NOOP" => "250 2.0.0 Ok".into(),
                "QUIT" => {
                    seen.lock().unwrap().quits += 1;
                    write.write_all(b"221 2.0.0 Bye\r\n").await?;
                    return Ok(());
                }
                _ => "500 5.5.2 Error: command not recognized".into(),
            };
            write.write_all(format!("{reply}\r\n").as_bytes()).await?;
        }
    }

    /// One line up to and including CRLF (a lone LF does not end it, as in a strict server);
    /// empty at the end of the stream.
    async fn read_crlf_line(
        read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    ) -> std::io::Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            if read.read_until(b'\n', &mut line).await? == 0 || line.ends_with(b"\r\n") {
                return Ok(line);
            }
        }
    }

    fn envelope(from: &str, to: &[&str]) -> Envelope {
        Envelope {
            mail_from: from.into(),
            rcpt_to: to.iter().map(|s| s.to_string()).collect(),
            smtputf8: false,
            body_8bit: false,
        }
    }

    fn hop(server: &Server) -> SmtpHop {
        SmtpHop::new(
            &server.hop(),
            None,
            "gateway.school.test",
            Duration::from_secs(10),
        )
        .unwrap()
    }

    async fn deliver(hop: &SmtpHop, message: &[u8]) -> Result<String, DeliveryError> {
        hop.deliver(
            &envelope("head@school.test", &["parent@example.test"]),
            message,
        )
        .await
    }

    #[tokio::test]
    async fn bytes_arrive_unchanged_including_dot_lines() {
        let ending_in_crlf: &[u8] = b".starts with a dot\r\n\
            Subject: dots\r\n\
            \r\n\
            ..two dots\r\n\
            .\r\n\
            a line\r\n\
            \r\n\
            ...\r\n\
            last line ends in a dot .\r\n\
            .\r\n";
        let not_ending_in_crlf: &[u8] = b"Subject: no final CRLF\r\n\r\n.dot\r\nend";
        let blank_line_at_end: &[u8] = b"Subject: blank\r\n\r\nbody\r\n\r\n";
        let eight_bit: &[u8] = "Subject: caf\u{e9}\r\n\r\nna\u{ef}ve\r\n".as_bytes();
        // Not UTF-8 (Latin-1), with dots: goes through lettre's own writer.
        let latin1: &[u8] = b".Subject: caf\xe9\r\n\r\n.na\xefve\r\n..\r\n.";
        let empty: &[u8] = b"";
        let only_crlf: &[u8] = b"\r\n";
        for extensions in [
            vec!["8BITMIME", "SMTPUTF8"],
            vec!["8BITMIME", "SMTPUTF8", "PIPELINING"],
        ] {
            let server = serve(Script {
                extensions: extensions.clone(),
                ..Script::default()
            })
            .await;
            let hop = hop(&server);
            for message in [
                ending_in_crlf,
                not_ending_in_crlf,
                blank_line_at_end,
                eight_bit,
                latin1,
                empty,
                only_crlf,
            ] {
                deliver(&hop, message).await.unwrap();
            }
            let seen = server.seen();
            assert_eq!(seen.data.len(), 7, "{extensions:?}");
            assert_eq!(seen.data[0], ending_in_crlf);
            // SMTP cannot carry a message that does not end in CRLF; the CRLF is all that is
            // added.
            assert_eq!(seen.data[1], [not_ending_in_crlf, b"\r\n"].concat());
            assert_eq!(seen.data[2], blank_line_at_end);
            assert_eq!(seen.data[3], eight_bit);
            assert!(seen.mail[3].contains("BODY=8BITMIME"), "{:?}", seen.mail);
            assert_eq!(seen.data[4], [latin1, b"\r\n"].concat());
            assert_eq!(seen.data[5], b"\r\n");
            assert_eq!(seen.data[6], b"\r\n");
            assert_eq!(seen.connections, 1, "{extensions:?}");
            let pipelining = extensions.contains(&"PIPELINING");
            assert_eq!(seen.pipelined, if pipelining { 7 } else { 0 });
        }
    }

    #[tokio::test]
    async fn a_large_message_arrives_unchanged_with_dots_where_the_pieces_meet() {
        // A line starting with "." right at a piece boundary, and a CRLF split across one.
        let mut message = vec![b'x'; LARGE_MESSAGE_PIECE - 2];
        message.extend_from_slice(b"\r\n.dot at a boundary\r\n");
        message.resize(2 * LARGE_MESSAGE_PIECE - 1, b'y');
        message.extend_from_slice(b"\r\n.split CRLF\r\n");
        while message.len() <= ONE_WRITE_LIMIT {
            message.extend_from_slice(b"..a line of text\r\n");
        }
        message.extend_from_slice(b".\r\n");
        let server = serve(Script::default()).await;
        deliver(&hop(&server), &message).await.unwrap();
        assert!(server.seen().data[0] == message);
    }

    #[test]
    fn the_data_section_is_stuffed_as_lettre_stuffs_it() {
        for (text, wire) in [
            ("", "\r\n.\r\n"),
            (".", "..\r\n.\r\n"),
            ("a\r\n.b\r\n..\r\nc.d", "a\r\n..b\r\n...\r\nc.d\r\n.\r\n"),
            ("x\r\n.", "x\r\n..\r\n.\r\n"),
        ] {
            assert_eq!(DataSection(text).to_string(), wire, "{text:?}");
        }
    }

    #[tokio::test]
    async fn pipelined_refusals_are_answered_and_nothing_is_sent_after_them() {
        let server = serve(Script {
            extensions: vec!["8BITMIME", "PIPELINING"],
            rcpt: vec![("nobody@", "550 5.1.1 <nobody@example.test>: user unknown")],
            ..Script::default()
        })
        .await;
        let hop = hop(&server);
        let err = hop
            .deliver(
                &envelope(
                    "head@school.test",
                    &["parent@example.test", "nobody@example.test"],
                ),
                b"x\r\n",
            )
            .await
            .unwrap_err();
        assert_eq!(
            err,
            DeliveryError::Refused {
                hop: server.hop().to_string(),
                code: 550,
                text: "5.1.1 <nobody@example.test>: user unknown".into(),
            }
        );
        assert_eq!(hop.idle_count(), 0);
        // The test next hop said 354 to the pipelined DATA regardless: the connection was
        // closed there, with no message text and no QUIT that could pass for some.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(server.seen().data.is_empty());
        assert_eq!(server.seen().quits, 0);
        // The next message gets a fresh connection and goes through.
        deliver(&hop, b"y\r\n").await.unwrap();
        assert_eq!(server.seen().data, [b"y\r\n".to_vec()]);
        assert_eq!(server.seen().connections, 2);
    }

    #[tokio::test]
    async fn ok_carries_the_queue_id() {
        let server = serve(Script::default()).await;
        let reply = deliver(&hop(&server), b"Subject: hi\r\n\r\nhi\r\n")
            .await
            .unwrap();
        assert_eq!(reply, "250 2.0.0 Ok: queued as 4XyZ");
        assert_eq!(server.seen().mail, ["MAIL FROM:<head@school.test>"]);
        assert_eq!(server.seen().rcpt, ["RCPT TO:<parent@example.test>"]);
    }

    #[tokio::test]
    async fn multi_line_replies_become_one_line() {
        let server = serve(Script {
            data_end: "250-2.0.0 Ok\r\n250 2.0.0 queued as 9AbC",
            ..Script::default()
        })
        .await;
        let reply = deliver(&hop(&server), b"x\r\n").await.unwrap();
        assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
        assert!(reply.contains("queued as 9AbC"), "{reply}");
        assert!(!reply.contains('\n'), "{reply}");
    }

    #[tokio::test]
    async fn null_sender_goes_as_empty_reverse_path() {
        let server = serve(Script::default()).await;
        hop(&server)
            .deliver(&envelope("", &["parent@example.test"]), b"bounce\r\n")
            .await
            .unwrap();
        assert_eq!(server.seen().mail, ["MAIL FROM:<>"]);
    }

    #[tokio::test]
    async fn refused_recipient_is_refused_with_its_code_and_text() {
        let server = serve(Script {
            rcpt: vec![("nobody@", "550 5.1.1 <nobody@example.test>: user unknown")],
            ..Script::default()
        })
        .await;
        let err = hop(&server)
            .deliver(
                &envelope(
                    "head@school.test",
                    &["parent@example.test", "nobody@example.test"],
                ),
                b"x\r\n",
            )
            .await
            .unwrap_err();
        assert_eq!(
            err,
            DeliveryError::Refused {
                hop: server.hop().to_string(),
                code: 550,
                text: "5.1.1 <nobody@example.test>: user unknown".into(),
            }
        );
        assert!(server.seen().data.is_empty());
    }

    #[tokio::test]
    async fn refused_data_is_refused_with_its_code_and_text() {
        let server = serve(Script {
            data_end: "550-5.7.1 message rejected\r\n550 5.7.1 as spam",
            ..Script::default()
        })
        .await;
        let err = deliver(&hop(&server), b"x\r\n").await.unwrap_err();
        let DeliveryError::Refused { code, text, .. } = err else {
            panic!("expected Refused, got {err:?}");
        };
        assert_eq!(code, 550);
        assert_eq!(text, "5.7.1 message rejected as spam");
    }

    #[tokio::test]
    async fn temporary_failures_are_deferred() {
        for script in [
            Script {
                rcpt: vec![("parent@", "451 4.3.0 try again later")],
                ..Script::default()
            },
            Script {
                data_end: "451 4.3.0 try again later",
                ..Script::default()
            },
        ] {
            let server = serve(script).await;
            let err = deliver(&hop(&server), b"x\r\n").await.unwrap_err();
            assert_eq!(
                err,
                DeliveryError::Deferred {
                    hop: server.hop().to_string(),
                    code: 451,
                    text: "4.3.0 try again later".into(),
                }
            );
        }
    }

    #[tokio::test]
    async fn nothing_listening_is_unreachable() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap().port()
        };
        let address = NextHopAddress::Smtp {
            host: "127.0.0.1".into(),
            port,
        };
        let hop = SmtpHop::new(
            &address,
            None,
            "gateway.school.test",
            Duration::from_secs(5),
        )
        .unwrap();
        let err = deliver(&hop, b"x\r\n").await.unwrap_err();
        let DeliveryError::Unreachable { hop: name, detail } = err else {
            panic!("expected Unreachable, got {err:?}");
        };
        assert_eq!(name, format!("smtp://127.0.0.1:{port}"));
        assert!(!detail.is_empty());
    }

    #[tokio::test]
    async fn a_next_hop_that_dies_is_seen_dead_on_the_next_message() {
        let server = serve(Script::default()).await;
        let hop = hop(&server);
        deliver(&hop, b"first\r\n").await.unwrap();
        server.task.abort();
        server.wait_gone().await;
        let err = deliver(&hop, b"second\r\n").await.unwrap_err();
        assert!(matches!(err, DeliveryError::Unreachable { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn a_connection_is_kept_for_the_next_message() {
        let server = serve(Script::default()).await;
        let hop = hop(&server);
        for n in 0..3 {
            deliver(&hop, format!("message {n}\r\n").as_bytes())
                .await
                .unwrap();
        }
        assert_eq!(server.seen().data.len(), 3);
        assert_eq!(server.seen().connections, 1);
        assert_eq!(hop.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_next_hop_that_restarts_between_messages_gets_the_next_one() {
        let first = serve(Script::default()).await;
        let hop = hop(&first);
        deliver(&hop, b"first\r\n").await.unwrap();
        assert_eq!(hop.idle_count(), 1);
        // The next hop dies (its connections close) and comes back on the same port.
        first.task.abort();
        first.wait_gone().await;
        let second = serve_on(first.port, Script::default()).await;
        let reply = deliver(&hop, b"second\r\n").await.unwrap();
        assert_eq!(reply, "250 2.0.0 Ok: queued as 4XyZ");
        assert_eq!(second.seen().data, [b"second\r\n".to_vec()]);
        assert_eq!(second.seen().connections, 1);
        assert_eq!(hop.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_kept_connection_the_next_hop_closed_is_replaced() {
        for last_words in ["421 4.4.2 nexthop.test Error: timeout exceeded", ""] {
            let server = serve(Script {
                close_after_data: Some(last_words),
                ..Script::default()
            })
            .await;
            let hop = hop(&server);
            deliver(&hop, b"first\r\n").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            deliver(&hop, b"second\r\n").await.unwrap();
            assert_eq!(server.seen().data.len(), 2, "{last_words:?}");
            assert_eq!(server.seen().mail.len(), 2, "{last_words:?}");
            assert_eq!(server.seen().connections, 2, "{last_words:?}");
        }
    }

    #[tokio::test]
    async fn an_abandoned_send_never_leaves_its_connection_for_the_next_message() {
        // The first message's 250 never comes (in time): were its connection kept, the second
        // message could read that late 250 as its own.
        let server = serve(Script {
            stall_first_data_end: true,
            ..Script::default()
        })
        .await;
        let hop = SmtpHop::new(
            &server.hop(),
            None,
            "gateway.school.test",
            Duration::from_millis(300),
        )
        .unwrap();
        let err = deliver(&hop, b"first\r\n").await.unwrap_err();
        assert!(matches!(err, DeliveryError::Unreachable { .. }), "{err:?}");
        assert_eq!(hop.idle_count(), 0);
        // Abandoned from outside, as the relay's own timeout does.
        let abandoned =
            tokio::time::timeout(Duration::from_millis(1), deliver(&hop, b"x\r\n")).await;
        assert!(abandoned.is_err() || abandoned.unwrap().is_ok());
        deliver(&hop, b"second\r\n").await.unwrap();
        assert!(server.seen().connections >= 2);
    }

    #[tokio::test]
    async fn a_refused_or_deferred_message_does_not_keep_its_connection() {
        for script in [
            Script {
                data_end: "550 5.7.1 no",
                ..Script::default()
            },
            Script {
                rcpt: vec![("parent@", "451 4.3.0 try again later")],
                ..Script::default()
            },
            Script {
                data_end: "354 confused",
                ..Script::default()
            },
        ] {
            let server = serve(script).await;
            let hop = hop(&server);
            deliver(&hop, b"x\r\n").await.unwrap_err();
            assert_eq!(hop.idle_count(), 0);
            deliver(&hop, b"x\r\n").await.unwrap_err();
            assert_eq!(server.seen().connections, 2);
            assert_eq!(server.seen().mail.len(), 2);
        }
    }

    #[tokio::test]
    async fn a_next_hop_that_limits_messages_per_session_gets_a_fresh_connection() {
        let server = serve(Script {
            mail_limit: Some((2, "452 4.5.3 Too many messages in this session")),
            ..Script::default()
        })
        .await;
        let hop = hop(&server);
        for n in 0..5 {
            deliver(&hop, format!("{n}\r\n").as_bytes()).await.unwrap();
        }
        assert_eq!(server.seen().data.len(), 5);
        assert_eq!(server.seen().connections, 3);
        // The refusing connections were said goodbye to.
        server.wait_until("two QUITs", |seen| seen.quits >= 2).await;
        assert_eq!(server.seen().quits, 2);
    }

    #[tokio::test]
    async fn a_refusal_of_mail_is_the_answer_and_tried_once_only() {
        // A 5xx to MAIL, on a kept connection too, is the next hop's answer for the message.
        let server = serve(Script {
            mail_limit: Some((1, "550 5.7.1 sender refused")),
            ..Script::default()
        })
        .await;
        let hop = hop(&server);
        deliver(&hop, b"x\r\n").await.unwrap();
        let err = deliver(&hop, b"y\r\n").await.unwrap_err();
        assert!(
            matches!(err, DeliveryError::Refused { code: 550, .. }),
            "{err:?}"
        );
        assert_eq!(server.seen().mail.len(), 2);
        assert_eq!(server.seen().connections, 1);

        // A 4xx on a fresh connection stands.
        let server = serve(Script {
            mail: "451 4.7.1 slow down",
            ..Script::default()
        })
        .await;
        let hop = self::hop(&server);
        let err = deliver(&hop, b"x\r\n").await.unwrap_err();
        assert!(
            matches!(err, DeliveryError::Deferred { code: 451, .. }),
            "{err:?}"
        );
        assert_eq!(server.seen().mail.len(), 1);
    }

    #[tokio::test]
    async fn old_and_well_used_connections_are_closed() {
        let server = serve(Script::default()).await;
        let mut hop = hop(&server);
        hop.messages_per_connection = 2;
        for _ in 0..5 {
            deliver(&hop, b"x\r\n").await.unwrap();
        }
        assert_eq!(server.seen().connections, 3);

        let server = serve(Script::default()).await;
        let mut hop = self::hop(&server);
        hop.idle_limit = Duration::from_millis(10);
        deliver(&hop, b"x\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        deliver(&hop, b"x\r\n").await.unwrap();
        assert_eq!(server.seen().connections, 2);
        // The expired one was said goodbye to.
        server.wait_until("a QUIT", |seen| seen.quits >= 1).await;
        assert_eq!(server.seen().quits, 1);
    }

    #[tokio::test]
    async fn connections_left_idle_are_closed_even_when_no_message_comes() {
        let server = serve(Script::default()).await;
        let mut hop = hop(&server);
        hop.idle_limit = Duration::from_millis(20);
        hop.idle = idle_pool(hop.idle_limit);
        deliver(&hop, b"x\r\n").await.unwrap();
        assert_eq!(hop.idle_count(), 1);
        // The pool's task closes it within a few of its 10 ms ticks; a busy machine may take
        // longer, so this waits for the goodbye rather than for a fixed time.
        server.wait_until("a QUIT", |seen| seen.quits >= 1).await;
        assert_eq!(hop.idle_count(), 0);
        assert_eq!(server.seen().quits, 1);
    }

    #[tokio::test]
    async fn no_more_than_max_idle_connections_are_kept() {
        let server = serve(Script::default()).await;
        let mut hop = hop(&server);
        hop.max_idle = 2;
        let hop = Arc::new(hop);
        let mut sends = Vec::new();
        for n in 0..6 {
            let hop = Arc::clone(&hop);
            sends.push(tokio::spawn(async move {
                deliver(&hop, format!("{n}\r\n").as_bytes()).await
            }));
        }
        for s in sends {
            s.await.unwrap().unwrap();
        }
        assert!(hop.idle_count() <= 2);
        assert_eq!(server.seen().data.len(), 6);
    }

    #[tokio::test]
    async fn a_stalled_next_hop_times_out_as_unreachable() {
        let server = serve(Script {
            greeting: None,
            ..Script::default()
        })
        .await;
        let hop = SmtpHop::new(
            &server.hop(),
            None,
            "gateway.school.test",
            Duration::from_millis(300),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let err = deliver(&hop, b"x\r\n").await.unwrap_err();
        assert!(matches!(err, DeliveryError::Unreachable { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn logs_in_and_a_refused_login_defers_without_showing_the_password() {
        let auth = NextHopAuth {
            user: "gateway".into(),
            password: "s3cret-pw".into(),
        };
        let server = serve(Script::default()).await;
        let hop = SmtpHop::new(
            &server.hop(),
            Some(auth.clone()),
            "gw.test",
            Duration::from_secs(5),
        )
        .unwrap();
        deliver(&hop, b"x\r\n").await.unwrap();
        assert_eq!(server.seen().auth.len(), 1);
        assert!(server.seen().auth[0].starts_with("AUTH PLAIN"));

        let server = serve(Script {
            auth: "535 5.7.8 Error: authentication failed",
            ..Script::default()
        })
        .await;
        let hop =
            SmtpHop::new(&server.hop(), Some(auth), "gw.test", Duration::from_secs(5)).unwrap();
        let err = deliver(&hop, b"x\r\n").await.unwrap_err();
        let DeliveryError::Unreachable { detail, .. } = &err else {
            panic!("expected Unreachable, got {err:?}");
        };
        assert!(detail.contains("535 5.7.8"), "{detail}");
        assert!(!format!("{err} {err:?}").contains("s3cret-pw"));
        assert!(server.seen().data.is_empty());
    }

    #[tokio::test]
    async fn utf8_addresses_need_smtputf8() {
        let server = serve(Script::default()).await;
        hop(&server)
            .deliver(
                &envelope("jos\u{e9}@school.test", &["m\u{fc}ller@example.test"]),
                b"x\r\n",
            )
            .await
            .unwrap();
        assert!(
            server.seen().mail[0].contains("SMTPUTF8"),
            "{:?}",
            server.seen().mail
        );

        let server = serve(Script {
            extensions: vec!["8BITMIME"],
            ..Script::default()
        })
        .await;
        let err = hop(&server)
            .deliver(
                &envelope("head@school.test", &["m\u{fc}ller@example.test"]),
                b"x\r\n",
            )
            .await
            .unwrap_err();
        let DeliveryError::Refused { code, text, .. } = err else {
            panic!("expected Refused, got {err:?}");
        };
        assert_eq!(code, 553);
        assert!(text.starts_with("5.6.7"), "{text}");
        assert!(server.seen().mail.is_empty());
    }

    #[tokio::test]
    async fn eight_bit_data_needs_8bitmime() {
        let server = serve(Script {
            extensions: vec![],
            ..Script::default()
        })
        .await;
        let err = deliver(&hop(&server), "caf\u{e9}\r\n".as_bytes())
            .await
            .unwrap_err();
        let DeliveryError::Refused { code, text, .. } = err else {
            panic!("expected Refused, got {err:?}");
        };
        assert_eq!(code, 554);
        assert!(text.starts_with("5.6.3"), "{text}");
    }

    #[tokio::test]
    async fn unparseable_addresses_are_refused_by_name() {
        let server = serve(Script::default()).await;
        let hop = hop(&server);
        for (env, who) in [
            (
                envelope("head@school.test", &["no at sign"]),
                "<no at sign>",
            ),
            (
                envelope("a b@school.test", &["parent@example.test"]),
                "<a b@school.test>",
            ),
            (envelope("head@school.test", &["x@"]), "<x@>"),
        ] {
            let err = hop.deliver(&env, b"x\r\n").await.unwrap_err();
            let DeliveryError::Refused { code, text, .. } = err else {
                panic!("expected Refused, got {err:?}");
            };
            assert_eq!(code, 553);
            assert!(text.contains(who), "{text}");
        }
        let err = hop
            .deliver(&envelope("head@school.test", &[]), b"x\r\n")
            .await
            .unwrap_err();
        assert!(
            matches!(err, DeliveryError::Refused { code: 554, .. }),
            "{err:?}"
        );
        assert!(server.seen().mail.is_empty());
    }

    #[tokio::test]
    async fn lone_line_ends_before_a_dot_are_not_passed_on() {
        let server = serve(Script::default()).await;
        let hop = hop(&server);
        for message in [
            &b"a\n.\r\nMAIL FROM:<x@y>\r\n"[..],
            b"a\r.\r\n",
            b"a\r\n\n.\r\n",
            b"ends in a lone LF and a dot\n.",
        ] {
            let err = deliver(&hop, message).await.unwrap_err();
            assert!(
                matches!(err, DeliveryError::Refused { code: 554, .. }),
                "{err:?}"
            );
        }
        // A lone LF elsewhere is the next hop's business, not a smuggling risk.
        deliver(&hop, b"a\nb\r\n.c\r\n").await.unwrap();
        assert_eq!(server.seen().data, [b"a\nb\r\n.c\r\n".to_vec()]);
    }

    #[test]
    fn bare_line_end_detection() {
        assert!(!has_bare_line_end_before_dot(b".a\r\n.b\r\n..\r\n"));
        assert!(has_bare_line_end_before_dot(b"\n."));
        assert!(has_bare_line_end_before_dot(b"x\r.y"));
        assert!(has_bare_line_end_before_dot(b"x\r\n\n.y"));
        assert!(!has_bare_line_end_before_dot(b"x\ny"));
    }

    #[test]
    fn new_outside_a_runtime_is_an_error_not_a_panic() {
        let address = NextHopAddress::Smtp {
            host: "127.0.0.1".into(),
            port: 25,
        };
        let err = SmtpHop::new(&address, None, "gw.test", Duration::from_secs(1))
            .err()
            .expect("no runtime, so no transport");
        assert!(matches!(err, DeliveryError::Local { .. }), "{err:?}");
    }

    #[test]
    fn dropping_outside_the_runtime_does_not_panic() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let address = NextHopAddress::Smtps {
            host: "mail.example.test".into(),
            port: 465,
        };
        let hop = runtime
            .block_on(async { SmtpHop::new(&address, None, "gw.test", Duration::from_secs(1)) })
            .unwrap();
        drop(runtime);
        drop(hop);
    }

    #[test]
    fn dropping_kept_connections_outside_the_runtime_does_not_panic() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let hop = runtime.block_on(async {
            let server = serve(Script::default()).await;
            let hop = hop(&server);
            deliver(&hop, b"x\r\n").await.unwrap();
            assert_eq!(hop.idle_count(), 1);
            hop
        });
        drop(runtime);
        drop(hop);
    }
}
