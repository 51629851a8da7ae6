//! The next hop over SMTP: the school's smarthost (its own mail server, or a Microsoft 365 or
//! Google Workspace connector), spoken to through lettre.
//!
//! The relay proxies before queueing: its client hears our 250 only after the smarthost has
//! given its own, so everything here is about passing the smarthost's answer back faithfully
//! (and the message's bytes on unchanged), and about never mistaking anything else for a 250.

use std::error::Error as _;
use std::net::IpAddr;
use std::time::Duration;

use lettre::address::{Address, Envelope as LettreEnvelope};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::{Error as SmtpError, PoolConfig};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{DeliveryError, NextHopAddress, NextHopAuth};
use crate::envelope::Envelope;

/// A smarthost reached over SMTP.
///
/// One SMTP transaction per [`SmtpHop::deliver`]: lettre stops at the first recipient the next
/// hop refuses, so a message with one bad recipient among several gets that refusal as a whole
/// (the client then sees the 5xx or 4xx for all of its recipients). That is acceptable for a
/// gateway in front of one smarthost, where a refused recipient is rare and a retry by the
/// client is harmless, and it keeps the answer the client sees identical to the smarthost's.
pub struct SmtpHop {
    /// The next hop as written (`smtps://host:465`), for errors and logs; never holds a password.
    hop: String,
    /// `None` only while dropping outside a runtime, see the `Drop` impl.
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    /// Bounds a whole hand-over, not just the connect: lettre applies its own timeout only to the
    /// TCP connect, so a next hop that accepts the connection and then stalls would otherwise
    /// hold the client's session (and its message) for ever.
    timeout: Duration,
}

impl SmtpHop {
    /// Builds the transport once, so that a TLS set-up that cannot work shows at start-up rather
    /// than on the first message. Nothing is sent yet: a wrong password shows on the first
    /// message (as `Unreachable`, so the mail waits with the client rather than bouncing).
    ///
    /// Must run inside the Tokio runtime: lettre's connection pool starts a task when it is
    /// built (and another when it is dropped). Outside one this returns an error instead of
    /// letting lettre panic.
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

        // No connection is ever kept for a later message (max_size 0): lettre hands a
        // connection back to its pool even when the send was abandoned half-way (our timeout, or
        // the relay dropping the delivery because its client hung up), and the next message on
        // that connection would read the earlier transaction's replies, one of which could pass
        // for its own 250. A fresh connection per message also means a dead next hop is always
        // seen as dead rather than hidden behind a connection that happened to be open.
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .timeout(Some(timeout))
            .hello_name(hello_name)
            .pool_config(PoolConfig::new().min_idle(0).max_size(0));
        if let Some(auth) = auth {
            builder = builder
                .credentials(Credentials::new(auth.user, auth.password))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }

        Ok(SmtpHop {
            hop,
            transport: Some(builder.build()),
            timeout,
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

        let Some(transport) = self.transport.as_ref() else {
            return Err(DeliveryError::Local {
                hop: self.hop.clone(),
                detail: "the SMTP next hop has been shut down".into(),
            });
        };
        let response =
            match tokio::time::timeout(self.timeout, transport.send_raw(&lettre_envelope, body))
                .await
            {
                Err(_) => {
                    return Err(DeliveryError::Unreachable {
                        hop: self.hop.clone(),
                        detail: format!(
                            "no complete answer within {}s",
                            self.timeout.as_secs_f64()
                        ),
                    });
                }
                Ok(Err(e)) => return Err(self.map_error(&e)),
                Ok(Ok(response)) => response,
            };

        let code = u16::from(response.code());
        let line = reply_line(code, response.message());
        // lettre counts 3xx as success too; only a 2xx to the end of the data means the next
        // hop has the message. Anything else is a confused conversation, not a delivery.
        if (200..300).contains(&code) {
            tracing::debug!(next_hop = %self.hop, reply = %line, "next hop accepted the message");
            Ok(line)
        } else {
            Err(DeliveryError::Unreachable {
                hop: self.hop.clone(),
                detail: format!("unexpected answer to the end of the data: {line}"),
            })
        }
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
        if e.is_client() {
            // lettre refuses on its own, before MAIL, to send what the next hop has not said it
            // accepts. Recognised by its wording; anything unrecognised stays temporary.
            let detail = e.to_string();
            if detail.contains("SMTPUTF8") {
                return DeliveryError::Refused {
                    hop,
                    code: 553,
                    text: "5.6.7 the next hop does not support SMTPUTF8, needed for a non-ASCII \
                           address in the envelope"
                        .into(),
                };
            }
            if detail.contains("8BITMIME") {
                return DeliveryError::Refused {
                    hop,
                    code: 554,
                    text: "5.6.3 the next hop does not accept 8-bit data (no 8BITMIME), and \
                           schoolgate passes messages on unconverted"
                        .into(),
                };
            }
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
    /// Dropping lettre's pool spawns a task, which panics outside a runtime (a panic in a
    /// destructor, possibly while already unwinding, aborts the process). With no runtime
    /// there is nothing that task could do, so the transport is leaked instead.
    fn drop(&mut self) {
        if let Some(transport) = self.transport.take()
            && tokio::runtime::Handle::try_current().is_err()
        {
            std::mem::forget(transport);
        }
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
    message.windows(2).enumerate().any(|(i, pair)| {
        pair[1] == b'.'
            && match pair[0] {
                b'\r' => true,
                b'\n' => i == 0 || message[i - 1] != b'\r',
                _ => false,
            }
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
    }

    async fn serve(script: Script) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let seen2 = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let script = script.clone();
                let seen = Arc::clone(&seen2);
                tokio::spawn(async move {
                    let _ = session(stream, script, seen).await;
                });
            }
        });
        Server { port, seen, task }
    }

    async fn session(
        stream: tokio::net::TcpStream,
        script: Script,
        seen: Arc<Mutex<Seen>>,
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
                    seen.lock().unwrap().mail.push(text.clone());
                    script.mail.into()
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
                    script.data_end.into()
                }
                "RSET" | "NOOP" => "250 2.0.0 Ok".into(),
                "QUIT" => {
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
        let server = serve(Script::default()).await;
        let hop = hop(&server);
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
        for message in [
            ending_in_crlf,
            not_ending_in_crlf,
            blank_line_at_end,
            eight_bit,
        ] {
            deliver(&hop, message).await.unwrap();
        }
        let seen = server.seen();
        assert_eq!(seen.data.len(), 4);
        assert_eq!(seen.data[0], ending_in_crlf);
        // SMTP cannot carry a message that does not end in CRLF; the CRLF is all that is added.
        assert_eq!(seen.data[1], [not_ending_in_crlf, b"\r\n"].concat());
        assert_eq!(seen.data[2], blank_line_at_end);
        assert_eq!(seen.data[3], eight_bit);
        assert!(seen.mail[3].contains("BODY=8BITMIME"), "{:?}", seen.mail);
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
        // Give the aborted accept loop a moment to drop its listener.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let err = deliver(&hop, b"second\r\n").await.unwrap_err();
        assert!(matches!(err, DeliveryError::Unreachable { .. }), "{err:?}");
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
}
