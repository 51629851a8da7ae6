//! The milter shell: the same policy over the milter protocol, so a school's Postfix (or
//! Sendmail) can call schoolgate inline with `smtpd_milters` instead of relaying through it.
//!
//! The mail server keeps the message and delivers it; schoolgate collects the envelope, header
//! and body as the protocol hands them over ([`session`]), runs [`crate::policy::evaluate`] at
//! the end of the message, and answers with actions ([`decide`]):
//!
//! - deliver: the disclaimer as a replaced body and the top-level fields it changes
//!   ([`edits`]), then accept;
//! - quarantine: into schoolgate's own quarantine (the exact bytes that would have left), then
//!   discard, or into the mail server's hold queue with the reason (`[milter] quarantine`);
//! - reject: a 5xx with [`crate::policy::Decision::refusal`]'s words;
//! - flags: delivered, audited and alerted to the DSL, as the relay does.
//!
//! Every message gets an audit record (`"path": "milter"`, with the mail server's queue id)
//! before the final answer, as on the relay: if the record cannot be written, the mail server
//! is told to try again. When schoolgate cannot decide (a message over the size limit, the
//! policy failing to run, a broken conversation) it answers with `[milter] on_error`:
//! tempfail unless the network manager chose otherwise, so unfiltered mail never slips out.

pub mod decide;
pub mod edits;
pub mod session;

use std::io;
use std::path::Path;
use std::sync::Arc;

use indymilter::{Actions, EitherListener};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use crate::config::MilterListen;
use crate::smtp::server::Relay;

/// The milter's listening socket, TCP or Unix.
pub type Listener = EitherListener<Tcp, Unix>;

/// What to do after an accept fails (out of file descriptors, say): wait a moment and go on.
/// indymilter stops serving altogether on a listener error, so none is passed up.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// Waits out a pause after a failed accept; `Ready` once there is none (left).
fn poll_backoff(
    backoff: &mut Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<()> {
    if let Some(sleep) = backoff {
        if sleep.as_mut().poll(cx).is_pending() {
            return std::task::Poll::Pending;
        }
        *backoff = None;
    }
    std::task::Poll::Ready(())
}

/// Starts a pause after `e`, and returns `Pending` (woken when the pause is over).
fn back_off(
    backoff: &mut Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    cx: &mut std::task::Context<'_>,
    e: &io::Error,
) -> std::task::Poll<()> {
    tracing::warn!(error = %e, "milter: accept failed");
    *backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
    poll_backoff(backoff, cx)
}

/// The TCP listener: connections that neither hold back a reply nor an acknowledgement.
///
/// The protocol is a conversation of small packets, and Postfix sends a macro packet and the
/// command after it in two writes: under Nagle's algorithm the second waits for our ACK of the
/// first, which Linux delays by up to 40 ms. Measured with one SMTP session: 11 messages a
/// second as it was, 21 with TCP_NODELAY on our side, against 186 over a Unix socket; so every
/// read also asks for an immediate ACK (TCP_QUICKACK, which Linux clears as it goes).
///
/// Only `[milter] allowed_clients` may talk to it: anyone else who can reach the port could
/// drive the policy with forged envelopes (audit records, quarantine entries, notices). Such a
/// client is disconnected as soon as it is accepted, before option negotiation, and logged.
pub struct Tcp {
    listener: TcpListener,
    backoff: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// Where the allow-list in force is read (set by [`serve`]; the config may be reloaded).
    /// Until then only loopback is let in, as the default list does.
    relay: Option<Arc<Relay>>,
}

impl Tcp {
    /// Whether `peer` may use the milter.
    fn admits(&self, peer: std::net::SocketAddr) -> bool {
        let ip = crate::smtp::server::canonical_ip(peer.ip());
        match &self.relay {
            Some(relay) => relay
                .config()
                .milter
                .allowed_clients
                .iter()
                .any(|net| net.contains(&ip)),
            None => ip.is_loopback(),
        }
    }
}

impl indymilter::Listener for Tcp {
    type Io = QuickAck;

    fn poll_accept(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<Self::Io>> {
        use std::task::Poll;
        loop {
            if poll_backoff(&mut self.backoff, cx).is_pending() {
                return Poll::Pending;
            }
            let e = match self.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok((stream, peer))) => {
                    if !self.admits(peer) {
                        tracing::warn!(client = %peer,
                            "milter: refused a connection: not in milter.allowed_clients");
                        // Dropped: closed before a byte of the protocol is exchanged.
                        drop(stream);
                        continue;
                    }
                    match QuickAck::new(stream) {
                        Ok(conn) => return Poll::Ready(Ok(conn)),
                        Err(e) => e,
                    }
                }
                Poll::Ready(Err(e)) => e,
            };
            if back_off(&mut self.backoff, cx, &e).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

/// The Unix socket listener, going on after a failed accept as [`Tcp`] does.
pub struct Unix {
    listener: UnixListener,
    backoff: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl indymilter::Listener for Unix {
    type Io = tokio::net::UnixStream;

    fn poll_accept(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<Self::Io>> {
        use std::task::Poll;
        loop {
            if poll_backoff(&mut self.backoff, cx).is_pending() {
                return Poll::Pending;
            }
            match self.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok((stream, _))) => return Poll::Ready(Ok(stream)),
                Poll::Ready(Err(e)) => {
                    if back_off(&mut self.backoff, cx, &e).is_pending() {
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

/// A milter connection that acknowledges what it reads at once (see [`Tcp`]).
pub struct QuickAck {
    stream: tokio::net::TcpStream,
    /// The same socket, for the option tokio does not offer.
    control: std::net::TcpStream,
}

impl QuickAck {
    fn new(stream: tokio::net::TcpStream) -> io::Result<QuickAck> {
        stream.set_nodelay(true)?;
        let std = stream.into_std()?;
        let control = std.try_clone()?;
        Ok(QuickAck {
            stream: tokio::net::TcpStream::from_std(std)?,
            control,
        })
    }
}

impl tokio::io::AsyncRead for QuickAck {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let polled = std::pin::Pin::new(&mut self.stream).poll_read(cx, buf);
        if polled.is_ready() {
            use std::os::linux::net::TcpStreamExt;
            // Only speed is at stake: a failure changes nothing else.
            let _ = self.control.set_quickack(true);
        }
        polled
    }
}

impl tokio::io::AsyncWrite for QuickAck {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The actions schoolgate may ask of the mail server at the end of a message.
pub const ACTIONS: Actions = Actions::ADD_HEADER
    .union(Actions::CHANGE_HEADER)
    .union(Actions::REPLACE_BODY)
    .union(Actions::QUARANTINE);

/// Opens the listening socket. A Unix socket left behind by an earlier run is replaced; the new
/// one is readable and writable by its owner and group (put the mail server's user in
/// schoolgate's group, or the socket where it can reach it).
pub async fn bind(listen: &MilterListen) -> io::Result<Listener> {
    match listen {
        MilterListen::Tcp(addr) => Ok(EitherListener::Tcp(Tcp {
            listener: TcpListener::bind(addr).await?,
            backoff: None,
            relay: None,
        })),
        MilterListen::Unix(path) => {
            remove_stale_socket(path).await?;
            let l = UnixListener::bind(path)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
            Ok(EitherListener::Unix(Unix {
                listener: l,
                backoff: None,
            }))
        }
    }
}

/// Removes a socket file nobody listens on any more; refuses to touch anything else.
async fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("another process is listening on {}", path.display()),
        ));
    }
    std::fs::remove_file(path)
}

/// Serves the milter protocol on `listener` until `stop` turns true; messages in flight are
/// finished first.
pub async fn serve(relay: Arc<Relay>, mut listener: Listener, mut stop: watch::Receiver<bool>) {
    if let EitherListener::Tcp(tcp) = &mut listener {
        tcp.relay = Some(Arc::clone(&relay));
    }
    let config = relay.config();
    let milter_config = indymilter::Config {
        max_connections: config.relay.max_connections,
        actions: ACTIONS,
        ..Default::default()
    };
    let callbacks = session::callbacks(relay);
    let shutdown = async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    if let Err(e) = indymilter::run(listener, callbacks, milter_config, shutdown).await {
        tracing::error!(error = %e, "the milter stopped accepting connections");
    }
}
