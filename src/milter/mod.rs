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
pub type Listener = EitherListener<NoDelay, UnixListener>;

/// A TCP listener whose connections send each reply at once. The protocol is a conversation of
/// small packets; with Nagle's algorithm a reply waits for the mail server's delayed ACK, and
/// one SMTP session's messages went at 11 a second instead of hundreds.
pub struct NoDelay(TcpListener);

impl indymilter::Listener for NoDelay {
    type Io = tokio::net::TcpStream;

    fn poll_accept(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<Self::Io>> {
        self.0.poll_accept(cx).map_ok(|(stream, _)| {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "milter: TCP_NODELAY not set");
            }
            stream
        })
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
        MilterListen::Tcp(addr) => Ok(EitherListener::Tcp(NoDelay(TcpListener::bind(addr).await?))),
        MilterListen::Unix(path) => {
            remove_stale_socket(path).await?;
            let l = UnixListener::bind(path)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
            Ok(EitherListener::Unix(l))
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
pub async fn serve(relay: Arc<Relay>, listener: Listener, mut stop: watch::Receiver<bool>) {
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
