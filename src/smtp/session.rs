//! One client's SMTP session: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT, STARTTLS, with
//! PIPELINING, SIZE, 8BITMIME, SMTPUTF8 and ENHANCEDSTATUSCODES (RFC 5321, 2920, 1870, 6152,
//! 6531, 2034, 3207).
//!
//! Commands are parsed by smtp-proto; the message after DATA by [`super::data::DataReader`].
//! Every command and every message has a deadline (RFC 5321 §4.5.3.2: a whole command within
//! `command_timeout`, a whole message within `data_timeout`), every line and message a limit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use smtp_proto::{Error as ParseError, MAIL_BODY_8BITMIME, MAIL_SMTPUTF8, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::data::{DataLimits, DataReader};
use super::handoff::{self, Received};
use super::server::Relay;
use crate::envelope::Envelope;
use crate::policy;

/// Longest command line accepted (RFC 5321 asks for at least 512).
const MAX_COMMAND_LINE: usize = 4096;
/// After this many bad commands the client is disconnected.
const MAX_ERRORS: u32 = 20;
/// NOOP, RSET, VRFY and HELP allowed between two messages before each further one counts as an
/// error (Postfix's `smtpd_junk_command_limit`): a client that only keeps its connection
/// open with them is disconnected rather than holding a place for ever.
const JUNK_LIMIT: u32 = 100;
/// Most bytes read from the socket at once.
const READ_CHUNK: usize = 64 * 1024;

/// Runs the session with a client that `server` has already let in.
pub async fn run(relay: Arc<Relay>, stream: TcpStream, peer: SocketAddr) {
    let (mut session, mut io) = greet(&relay, stream, peer);
    let ending = session.serve(&mut io).await;
    if ending != Ending::StartTls {
        return;
    }
    let Some(acceptor) = relay.tls.clone() else {
        return;
    };
    // Anything the client pipelined after STARTTLS is dropped with the plain-text buffer
    // (CVE-2011-0411, the STARTTLS command-injection flaw).
    let tcp = io.stream;
    let timeout = session.command_timeout;
    let tls = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(client = %peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(client = %peer, "TLS handshake timed out");
            return;
        }
    };
    let (_, conn) = tls.get_ref();
    let version = conn
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    let suite = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    session.tls = Some(format!("{version} {suite}").trim().to_string());
    session.helo = None;
    session.reset();
    let mut io = Io::new(tls);
    session.serve(&mut io).await;
}

/// A session over any byte stream, without STARTTLS (the client is told it is not available).
///
/// The seam that lets the real state machine be driven without a socket: the SMTP fuzz target
/// (`fuzz/`) and its regression tests feed it bytes over `tokio::io::duplex`.
pub async fn run_plain<S: AsyncRead + AsyncWrite + Unpin>(
    relay: Arc<Relay>,
    stream: S,
    peer: SocketAddr,
) {
    let (mut session, mut io) = greet(&relay, stream, peer);
    // With a relay that has TLS, STARTTLS would be offered and accepted; over a plain stream
    // the session can only end there.
    session.serve(&mut io).await;
}

/// A new session with `peer` over `stream`, its greeting queued.
fn greet<S: AsyncRead + AsyncWrite + Unpin>(
    relay: &Arc<Relay>,
    stream: S,
    peer: SocketAddr,
) -> (Session, Io<S>) {
    let session = Session::new(Arc::clone(relay), peer);
    let mut io = Io::new(stream);
    io.queue(&format!(
        "220 {} ESMTP schoolgate",
        relay.config().relay.hostname
    ));
    (session, io)
}

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    Quit,
    /// The client went away or broke the protocol; or the gateway is stopping.
    Closed,
    /// The client asked for STARTTLS and was told to go ahead.
    StartTls,
}

struct Session {
    relay: Arc<Relay>,
    peer: SocketAddr,
    helo: Option<String>,
    esmtp: bool,
    tls: Option<String>,
    mail_from: Option<String>,
    declared_size: u64,
    smtputf8: bool,
    body_8bit: bool,
    rcpt_to: Vec<String>,
    errors: u32,
    /// NOOP, RSET, VRFY and HELP since the last message.
    junk: u32,
    command_timeout: Duration,
}

impl Session {
    fn new(relay: Arc<Relay>, peer: SocketAddr) -> Self {
        let command_timeout = relay.config().relay.command_timeout.0;
        Session {
            relay,
            peer,
            helo: None,
            esmtp: false,
            tls: None,
            mail_from: None,
            declared_size: 0,
            smtputf8: false,
            body_8bit: false,
            rcpt_to: Vec::new(),
            errors: 0,
            junk: 0,
            command_timeout,
        }
    }

    /// Forgets the current transaction (RSET, new EHLO, after a message).
    fn reset(&mut self) {
        self.mail_from = None;
        self.declared_size = 0;
        self.smtputf8 = false;
        self.body_8bit = false;
        self.rcpt_to.clear();
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&mut self, io: &mut Io<S>) -> Ending {
        let mut shutdown = self.relay.shutdown_signal();
        let mut discarding_long_line = false;
        // Each command must arrive whole within `command_timeout` of the previous reply, not
        // merely keep trickling: a byte every few seconds would otherwise hold the session
        // for ever (slowloris).
        let mut deadline = Instant::now() + self.command_timeout;
        loop {
            // Answer every complete command already here before reading more (PIPELINING).
            if let Some(lf) = memchr::memchr(b'\n', io.pending()) {
                let line_len = lf + 1;
                // Too long whether it came in one read or over many.
                if discarding_long_line || line_len > MAX_COMMAND_LINE {
                    io.consume(line_len);
                    discarding_long_line = false;
                    if let Some(end) = self.error(io, "500 5.5.2 Error: line too long") {
                        let _ = io.flush().await;
                        return end;
                    }
                    deadline = Instant::now() + self.command_timeout;
                    continue;
                }
                let line = io.pending()[..line_len].to_vec();
                io.consume(line_len);
                match self.command(io, &line).await {
                    None => {
                        deadline = Instant::now() + self.command_timeout;
                        continue;
                    }
                    Some(end) => {
                        let _ = io.flush().await;
                        return end;
                    }
                }
            }
            if io.pending().len() > MAX_COMMAND_LINE {
                io.consume(io.pending().len());
                discarding_long_line = true;
            }
            if io.flush().await.is_err() {
                return Ending::Closed;
            }
            if *shutdown.borrow() {
                return self.shutting_down(io).await;
            }
            tokio::select! {
                read = io.fill(deadline.saturating_duration_since(Instant::now())) => match read {
                    Ok(0) => return Ending::Closed,
                    Ok(_) => {}
                    Err(ReadError::Timeout) => {
                        let host = self.relay.config().relay.hostname.clone();
                        io.queue(&format!("421 4.4.2 {host} Error: timeout exceeded"));
                        let _ = io.flush().await;
                        return Ending::Closed;
                    }
                    Err(ReadError::Io) => return Ending::Closed,
                },
                _ = shutdown.changed() => return self.shutting_down(io).await,
            }
        }
    }

    async fn shutting_down<S: AsyncRead + AsyncWrite + Unpin>(&mut self, io: &mut Io<S>) -> Ending {
        let host = self.relay.config().relay.hostname.clone();
        io.queue(&format!(
            "421 4.3.2 {host} Service shutting down, try again later"
        ));
        let _ = io.flush().await;
        Ending::Closed
    }

    /// Answers a command that moves no mail (NOOP, RSET, VRFY, HELP); past [`JUNK_LIMIT`] of
    /// them since the last message, each also counts as an error.
    fn junk<S>(&mut self, io: &mut Io<S>, reply: &str) -> Option<Ending> {
        self.junk += 1;
        if self.junk > JUNK_LIMIT {
            return self.error(io, reply);
        }
        io.queue(reply);
        None
    }

    /// Counts a protocol error and queues its reply; past [`MAX_ERRORS`] ends the session.
    fn error<S>(&mut self, io: &mut Io<S>, reply: &str) -> Option<Ending> {
        self.errors += 1;
        io.queue(reply);
        if self.errors >= MAX_ERRORS {
            let host = self.relay.config().relay.hostname.clone();
            io.queue(&format!("421 4.7.0 {host} Error: too many errors"));
            return Some(Ending::Closed);
        }
        None
    }

    async fn command<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<S>,
        line: &[u8],
    ) -> Option<Ending> {
        let request = match Request::parse(&mut line.iter()) {
            Ok(r) => r,
            Err(e) => {
                let reply = match e {
                    ParseError::UnknownCommand => "500 5.5.2 Error: command not recognized".into(),
                    ParseError::InvalidSenderAddress => {
                        "501 5.1.7 Bad sender address syntax".into()
                    }
                    ParseError::InvalidRecipientAddress => {
                        "501 5.1.3 Bad recipient address syntax".into()
                    }
                    ParseError::SyntaxError { syntax } => format!("501 5.5.4 Syntax: {syntax}"),
                    ParseError::InvalidParameter { param } => {
                        format!("501 5.5.4 Invalid parameter {param}")
                    }
                    ParseError::UnsupportedParameter { param } => {
                        format!("555 5.5.4 Unsupported parameter {}", printable(&param, 64))
                    }
                    ParseError::ResponseTooLong => "500 5.5.2 Error: line too long".into(),
                    _ => "500 5.5.2 Error: bad command".into(),
                };
                return self.error(io, &reply);
            }
        };
        let config = self.relay.config();
        let host = config.relay.hostname.clone();
        match request {
            Request::Ehlo { host: name } => {
                self.helo = Some(printable(&name, 255));
                self.esmtp = true;
                self.reset();
                let mut lines = vec![
                    host.clone(),
                    "PIPELINING".into(),
                    format!("SIZE {}", config.relay.max_message_size.0),
                    "8BITMIME".into(),
                    "SMTPUTF8".into(),
                    "ENHANCEDSTATUSCODES".into(),
                ];
                if self.relay.tls.is_some() && self.tls.is_none() {
                    lines.push("STARTTLS".into());
                }
                let n = lines.len();
                for (i, l) in lines.iter().enumerate() {
                    let sep = if i + 1 == n { ' ' } else { '-' };
                    io.queue(&format!("250{sep}{l}"));
                }
            }
            Request::Helo { host: name } => {
                self.helo = Some(printable(&name, 255));
                self.esmtp = false;
                self.reset();
                io.queue(&format!("250 {host}"));
            }
            Request::Lhlo { .. } => return self.error(io, "500 5.5.1 Error: LHLO is for LMTP"),
            Request::StartTls => {
                if self.relay.tls.is_none() {
                    return self.error(io, "502 5.5.1 Error: STARTTLS not available");
                }
                if self.tls.is_some() {
                    return self.error(io, "503 5.5.1 Error: TLS already active");
                }
                io.queue("220 2.0.0 Ready to start TLS");
                return Some(Ending::StartTls);
            }
            Request::Mail { from } => {
                if self.helo.is_none() {
                    return self.error(io, "503 5.5.1 Error: send HELO/EHLO first");
                }
                if self.mail_from.is_some() {
                    return self.error(io, "503 5.5.1 Error: nested MAIL command");
                }
                let limit = config.relay.max_message_size.0;
                if from.size as u64 > limit {
                    io.queue(&format!(
                        "552 5.3.4 Message size exceeds fixed maximum message size of {limit} octets"
                    ));
                    return None;
                }
                let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
                let address = match envelope_address(&from.address, smtputf8, Role::Sender) {
                    Ok(a) => a,
                    Err(reply) => return self.error(io, &reply),
                };
                if !policy::access::sender_allowed(&config.allowed_senders(), &address) {
                    let domain = policy::access::sender_domain(&address);
                    tracing::warn!(client = %self.peer, sender_domain = %printable(&domain, 255),
                        "refused MAIL FROM: not in relay.allowed_senders");
                    return self.error(
                        io,
                        &format!(
                            "550 5.7.1 Sender address rejected: {} is not a domain this gateway \
                             relays for (relay.allowed_senders)",
                            printable(&domain, 255)
                        ),
                    );
                }
                self.mail_from = Some(address);
                self.declared_size = from.size as u64;
                self.smtputf8 = smtputf8;
                self.body_8bit = from.flags & MAIL_BODY_8BITMIME != 0;
                io.queue("250 2.1.0 Ok");
            }
            Request::Rcpt { to } => {
                if self.mail_from.is_none() {
                    return self.error(io, "503 5.5.1 Error: need MAIL command");
                }
                if self.rcpt_to.len() >= config.relay.max_recipients {
                    io.queue("452 4.5.3 Error: too many recipients");
                    return None;
                }
                if to.address.is_empty() {
                    return self.error(io, "501 5.1.3 Bad recipient address syntax");
                }
                let address = match envelope_address(&to.address, self.smtputf8, Role::Recipient) {
                    Ok(a) => a,
                    Err(reply) => return self.error(io, &reply),
                };
                self.rcpt_to.push(address);
                io.queue("250 2.1.5 Ok");
            }
            Request::Data => {
                if self.mail_from.is_none() {
                    return self.error(io, "503 5.5.1 Error: need MAIL command");
                }
                if self.rcpt_to.is_empty() {
                    return self.error(io, "503 5.5.1 Error: need RCPT command");
                }
                return self.data(io).await;
            }
            Request::Bdat { .. } => {
                // CHUNKING is not advertised; a client that sends BDAT anyway is told so, and
                // its chunk bytes would arrive as commands, so the session ends here.
                io.queue("502 5.5.1 Error: BDAT not supported (CHUNKING was not offered)");
                return Some(Ending::Closed);
            }
            Request::Rset => {
                self.reset();
                return self.junk(io, "250 2.0.0 Ok");
            }
            Request::Noop { .. } => return self.junk(io, "250 2.0.0 Ok"),
            Request::Quit => {
                io.queue(&format!("221 2.0.0 {host} Bye"));
                return Some(Ending::Quit);
            }
            Request::Vrfy { .. } => return self.junk(io, "502 5.5.1 Error: VRFY not supported"),
            Request::Help { .. } => return self.junk(io, "214 2.0.0 See RFC 5321"),
            _ => return self.error(io, "502 5.5.1 Error: command not implemented"),
        }
        None
    }

    /// Reads the message after DATA and hands it on; the transaction ends either way.
    async fn data<S: AsyncRead + AsyncWrite + Unpin>(&mut self, io: &mut Io<S>) -> Option<Ending> {
        let config = self.relay.config();
        let relay_cfg = &config.relay;
        self.junk = 0;
        io.queue("354 End data with <CR><LF>.<CR><LF>");
        if io.flush().await.is_err() {
            return Some(Ending::Closed);
        }
        let queue_id = new_queue_id();
        let envelope = Envelope {
            mail_from: self.mail_from.take().unwrap_or_default(),
            rcpt_to: std::mem::take(&mut self.rcpt_to),
            smtputf8: self.smtputf8,
            body_8bit: self.body_8bit,
        };
        let header = received_header(
            self.helo.as_deref().unwrap_or("unknown"),
            self.peer,
            &relay_cfg.hostname,
            self.protocol(),
            self.tls.as_deref(),
            &queue_id,
            &envelope.rcpt_to,
        );
        let expected = self.declared_size.min(relay_cfg.max_message_size.0) as usize;
        let mut message = Vec::with_capacity(header.len() + expected + 2);
        message.extend_from_slice(header.as_bytes());
        let mut reader = DataReader::new(DataLimits {
            max_message_size: relay_cfg.max_message_size.0,
            max_line_length: relay_cfg.max_line_length.0,
            max_header_size: relay_cfg.max_header_size.0,
        });
        let deadline = Instant::now() + relay_cfg.data_timeout.0;
        let mut received = Received {
            client: self.peer,
            helo: self.helo.clone().unwrap_or_default(),
            tls: self.tls.clone(),
            envelope,
            queue_id,
            trace_len: header.len(),
            message: Vec::new(),
        };
        self.reset();
        loop {
            let (used, done) = reader.feed(io.pending(), &mut message);
            io.consume(used);
            if done {
                break;
            }
            let wait = self
                .command_timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            let failure = match io.fill(wait).await {
                Ok(0) => "client disconnected during DATA",
                Ok(_) => continue,
                Err(ReadError::Timeout) => "timeout during DATA",
                Err(ReadError::Io) => "connection error during DATA",
            };
            tracing::info!(client = %self.peer, queue_id = %received.queue_id, bytes = reader.size(), "{failure}; message not accepted");
            received.message = message;
            Box::pin(handoff::record_unaccepted(
                &self.relay,
                &received,
                reader.size(),
                "aborted",
                &format!("{failure} after {} octets", reader.size()),
                "(none: the client was gone)",
            ))
            .await;
            if failure.starts_with("timeout") {
                let host = relay_cfg.hostname.clone();
                io.queue(&format!("421 4.4.2 {host} Error: timeout exceeded"));
                let _ = io.flush().await;
            }
            return Some(Ending::Closed);
        }
        received.message = message;
        // A message refused after its final dot: recorded as rejected, then answered.
        let refused = |detail: String, reply: String| {
            let (relay, received, size) = (&self.relay, &received, reader.size());
            async move {
                Box::pin(handoff::record_unaccepted(
                    relay, received, size, "rejected", &detail, &reply,
                ))
                .await;
                reply
            }
        };
        if let Some(problem) = reader.problem() {
            io.queue(&refused(problem.detail(), problem.reply()).await);
            return None;
        }
        if let Some(pinned) = &relay_cfg.m365_tenant_id
            && let Err(problem) = policy::access::check_tenant(pinned, received.original())
        {
            tracing::warn!(client = %self.peer, queue_id = %received.queue_id,
                "refused: not from the Microsoft 365 tenant in relay.m365_tenant_id");
            io.queue(&refused(problem.detail(), problem.reply()).await);
            return None;
        }
        if reader.bare_lf_lines() > 0 {
            tracing::info!(client = %self.peer, queue_id = %received.queue_id, lines = reader.bare_lf_lines(), "bare LF line endings stored as CRLF");
        }
        // Boxed: the hand-off's state (the next hop's conversation included) is large, and
        // kept inline it would make every session's task that much larger to create and move,
        // message or not.
        let reply = Box::pin(handoff::hand_off(&self.relay, received)).await;
        io.queue(&reply);
        None
    }

    /// The `with` clause of our Received: header (RFC 3848, RFC 6531).
    fn protocol(&self) -> &'static str {
        match (self.esmtp, self.smtputf8, self.tls.is_some()) {
            (false, _, false) => "SMTP",
            (false, _, true) => "SMTPS",
            (true, false, false) => "ESMTP",
            (true, false, true) => "ESMTPS",
            (true, true, false) => "UTF8SMTP",
            (true, true, true) => "UTF8SMTPS",
        }
    }
}

/// Which end of the envelope an address is.
#[derive(Clone, Copy)]
enum Role {
    Sender,
    Recipient,
}

/// The address as the envelope keeps it and the next hop gets it, or the reply refusing it.
///
/// smtp-proto hands over a quoted local part without its quotes (`"a b"@x` as `a b@x`); it is
/// quoted again here, so that it is passed on intact. An address the next hop's client (lettre)
/// could not send is refused now, at MAIL or RCPT, rather than with a 553 after DATA; so is a
/// UTF-8 address in a transaction without SMTPUTF8 (RFC 6531 §3.4).
fn envelope_address(parsed: &str, smtputf8: bool, role: Role) -> Result<String, String> {
    if parsed.is_empty() {
        return Ok(String::new());
    }
    let (what, enhanced) = match role {
        Role::Sender => ("sender", "5.1.7"),
        Role::Recipient => ("recipient", "5.1.3"),
    };
    if !parsed.is_ascii() && !smtputf8 {
        return Err(format!(
            "553 5.6.7 The {what} address is not ASCII: send MAIL FROM with SMTPUTF8 (RFC 6531)"
        ));
    }
    let address = match parsed.rsplit_once('@') {
        Some((local, domain)) if !is_dot_atom(local) => {
            let mut quoted = String::with_capacity(local.len() + domain.len() + 3);
            quoted.push('"');
            for c in local.chars() {
                if c == '"' || c == '\\' {
                    quoted.push('\\');
                }
                quoted.push(c);
            }
            quoted.push_str("\"@");
            quoted.push_str(domain);
            quoted
        }
        _ => parsed.to_string(),
    };
    match address.parse::<lettre::Address>() {
        Ok(_) => Ok(address),
        Err(e) => Err(format!(
            "553 {enhanced} Bad {what} address <{}>: {e}",
            printable(&address, 320)
        )),
    }
}

/// A local part that needs no quotes (RFC 5321 Dot-string; RFC 6531 allows UTF-8 in it).
fn is_dot_atom(local: &str) -> bool {
    !local.is_empty()
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom.chars().all(|c| {
                    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
                })
        })
}

/// A short id for a message, unique within this gateway (time in microseconds and a counter).
pub(crate) fn new_queue_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff;
    let micros = jiff::Timestamp::now().as_microsecond() as u64 & 0xffff_ffff_ffff;
    format!("{:012X}{:04X}", micros, n)
}

/// Our trace header (RFC 5321 §4.4), folded so that no line is long.
fn received_header(
    helo: &str,
    peer: SocketAddr,
    hostname: &str,
    protocol: &str,
    tls: Option<&str>,
    queue_id: &str,
    rcpt_to: &[String],
) -> String {
    let ip = match peer.ip() {
        std::net::IpAddr::V4(v4) => format!("[{v4}]"),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("[{v4}]"),
            None => format!("[IPv6:{v6}]"),
        },
    };
    let mut h = format!("Received: from {helo} ({ip})\r\n");
    if let Some(tls) = tls {
        h.push_str(&format!("\t(using {tls})\r\n"));
    }
    h.push_str(&format!(
        "\tby {hostname} (schoolgate) with {protocol} id {queue_id}"
    ));
    // Only a single recipient is named, as Postfix does: a Bcc list must not leak.
    if let [only] = rcpt_to {
        h.push_str(&format!("\r\n\tfor <{}>", printable(only, 320)));
    }
    let date = jiff::Timestamp::now().strftime("%a, %d %b %Y %H:%M:%S +0000");
    h.push_str(&format!("; {date}\r\n"));
    h
}

/// `s` with control characters and anything that could break a header or a log line removed,
/// at most `max` characters.
fn printable(s: &str, max: usize) -> String {
    let cleaned: String = s
        .chars()
        .filter(|c| !c.is_control() && *c != '(' && *c != ')')
        .take(max)
        .collect();
    if cleaned.is_empty() {
        "unknown".into()
    } else {
        cleaned
    }
}

enum ReadError {
    Timeout,
    Io,
}

/// The connection with its input and output buffers.
struct Io<S> {
    stream: S,
    input: Vec<u8>,
    start: usize,
    output: Vec<u8>,
}

impl<S> Io<S> {
    fn new(stream: S) -> Self {
        Io {
            stream,
            input: Vec::with_capacity(READ_CHUNK),
            start: 0,
            output: Vec::with_capacity(1024),
        }
    }

    fn pending(&self) -> &[u8] {
        &self.input[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.input.len() {
            self.input.clear();
            self.start = 0;
        }
    }

    fn queue(&mut self, reply: &str) {
        self.output.extend_from_slice(reply.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> {
    /// Reads more input (at most [`READ_CHUNK`]); `Ok(0)` is the client closing.
    async fn fill(&mut self, timeout: Duration) -> Result<usize, ReadError> {
        if self.start > 0 {
            self.input.drain(..self.start);
            self.start = 0;
        }
        self.input.reserve(READ_CHUNK);
        let mut limited = (&mut self.stream).take(READ_CHUNK as u64);
        match tokio::time::timeout(timeout, limited.read_buf(&mut self.input)).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(_)) => Err(ReadError::Io),
            Err(_) => Err(ReadError::Timeout),
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.output);
        let r = tokio::time::timeout(Duration::from_secs(60), async {
            self.stream.write_all(&out).await?;
            self.stream.flush().await
        })
        .await;
        self.output = out;
        self.output.clear();
        match r {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "client not reading",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_received_header_is_folded_and_names_one_recipient_only() {
        let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let h = received_header(
            "mail.school",
            peer,
            "gw.example",
            "ESMTP",
            None,
            "ABC",
            &["a@x".into()],
        );
        assert!(h.starts_with("Received: from mail.school ([127.0.0.1])\r\n\tby gw.example (schoolgate) with ESMTP id ABC\r\n\tfor <a@x>; "));
        assert!(h.ends_with(" +0000\r\n"));
        let h = received_header(
            "x",
            peer,
            "gw",
            "ESMTP",
            None,
            "ABC",
            &["a@x".into(), "b@y".into()],
        );
        assert!(!h.contains("for <"), "{h}");
    }

    #[test]
    fn addresses_are_kept_as_the_next_hop_can_send_them_or_refused() {
        let ok = |parsed: &str, utf8: bool| envelope_address(parsed, utf8, Role::Recipient);
        assert_eq!(ok("a@x.example", false), Ok("a@x.example".into()));
        assert_eq!(ok("", false), Ok(String::new()));
        // smtp-proto hands over `"a b"@x` unquoted; it is quoted again.
        assert_eq!(ok("a b@x.example", false), Ok("\"a b\"@x.example".into()));
        assert_eq!(
            ok("odd\"one@x.example", false),
            Ok("\"odd\\\"one\"@x.example".into())
        );
        assert_eq!(ok("a@b@x.example", false), Ok("\"a@b\"@x.example".into()));
        assert_eq!(ok(".a@x.example", false), Ok("\".a\"@x.example".into()));
        // UTF-8 only with SMTPUTF8.
        let refused = ok("jürgen@exämple.org", false).unwrap_err();
        assert!(refused.starts_with("553 5.6.7 "), "{refused}");
        assert_eq!(
            ok("jürgen@exämple.org", true),
            Ok("jürgen@exämple.org".into())
        );
        // What lettre cannot write is refused now, not after DATA.
        let refused = ok("tab\u{1}here@x.example", false).unwrap_err();
        assert!(refused.starts_with("553 5.1.3 "), "{refused}");
        let refused = envelope_address("a@-bad-.example", false, Role::Sender).unwrap_err();
        assert!(refused.starts_with("553 5.1.7 "), "{refused}");
    }

    #[test]
    fn a_hostile_helo_cannot_inject_a_header() {
        assert_eq!(printable("evil\r\nBcc: x", 255), "evilBcc: x");
        assert_eq!(printable("", 255), "unknown");
    }
}
