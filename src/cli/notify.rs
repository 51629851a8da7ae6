//! Telling systemd how `serve` is doing (`sd_notify(3)`), for `Type=notify` and `WatchdogSec=`.
//!
//! systemd passes the path of a datagram socket in `$NOTIFY_SOCKET` (a name starting with `@` is
//! in the abstract namespace); each message is one datagram of `KEY=VALUE` lines. `serve` sends
//! `READY=1` once every listener is bound and the start is recorded, so `systemctl start` returns
//! only when mail can flow; `STOPPING=1` when SIGTERM arrives; and, when `$WATCHDOG_USEC` asks for
//! it, `WATCHDOG=1` at half that period from the async runtime, so a gateway whose runtime has
//! seized up is restarted. Outside systemd (no `$NOTIFY_SOCKET`) every call does nothing.
//! Written here with std's `UnixDatagram` rather than a crate: the protocol is one `sendto`.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where notifications go, or nowhere.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// The notifier systemd asked for through the environment, or one that does nothing.
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().into_owned();
            match connect(&path) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(socket = %path, error = %e, "NOTIFY_SOCKET is set but unusable; systemd will not hear that schoolgate is ready");
                    None
                }
            }
        });
        Notifier {
            watchdog: target.as_ref().and_then(|_| watchdog_period()),
            target,
        }
    }

    /// Sends one notification (`KEY=VALUE` lines). A failure is logged, never fatal: mail
    /// matters more than systemd's view of it.
    pub fn notify(&self, state: &str) {
        if let Some((socket, addr)) = &self.target
            && let Err(e) = socket.send_to_addr(state.as_bytes(), addr)
        {
            tracing::warn!(error = %e, state, "could not notify systemd");
        }
    }

    /// `READY=1`, with a status line `systemctl status` shows.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `STOPPING=1`: systemd then waits (up to `TimeoutStopSec=`) for the messages in flight.
    pub fn stopping(&self, status: &str) {
        self.notify(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    /// A status line alone (after a reload, for example).
    pub fn status(&self, status: &str) {
        self.notify(&format!("STATUS={}", one_line(status)));
    }

    /// How often `WATCHDOG=1` must be sent: half of `$WATCHDOG_USEC`, or `None` without a
    /// watchdog.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|p| p / 2)
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.notify("WATCHDOG=1");
    }
}

/// Pings the watchdog from the runtime until `stop` turns true (then systemd's stop timeout
/// takes over). Returns at once when there is no watchdog.
pub async fn keep_watchdog(
    notifier: std::sync::Arc<Notifier>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some(interval) = notifier.watchdog_interval() else {
        return;
    };
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => notifier.watchdog(),
            _ = stop.wait_for(|stopping| *stopping) => return,
        }
    }
}

/// An unbound datagram socket and the address of systemd's socket.
fn connect(path: &str) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    let addr = if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())?
    } else if path.starts_with('/') {
        SocketAddr::from_pathname(path)?
    } else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "neither an absolute path nor an abstract socket name (@…)",
        ));
    };
    Ok((UnixDatagram::unbound()?, addr))
}

/// `$WATCHDOG_USEC`, when it is meant for this process (`$WATCHDOG_PID`, if set, is ours).
fn watchdog_period() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID")
        && pid.to_string_lossy().trim() != std::process::id().to_string()
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// A status line must be one line: a newline would start another `KEY=VALUE`.
fn one_line(s: &str) -> String {
    crate::alerts::one_line(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_abstract_names_are_told_apart() {
        assert!(connect("relative/socket").is_err());
        assert!(connect("@schoolgate-test-notify").is_ok());
        assert!(connect("/run/systemd/notify").is_ok());
    }

    #[test]
    fn a_status_stays_on_one_line() {
        assert_eq!(one_line("a\nb\r\nc"), "a b  c");
    }

    #[test]
    fn datagrams_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("schoolgate-notify-unit-{}", std::process::id());
        let Ok(addr) = SocketAddr::from_abstract_name(name.as_bytes()) else {
            panic!("abstract name");
        };
        let Ok(listener) = UnixDatagram::bind_addr(&addr) else {
            panic!("bind the abstract socket");
        };
        let Ok(target) = connect(&format!("@{name}")) else {
            panic!("connect");
        };
        let notifier = Notifier {
            target: Some(target),
            watchdog: None,
        };
        notifier.ready("relay on 127.0.0.1:2525");
        let mut buf = [0u8; 256];
        let Ok(n) = listener.recv(&mut buf) else {
            panic!("receive the datagram");
        };
        assert_eq!(
            &buf[..n],
            b"READY=1\nSTATUS=relay on 127.0.0.1:2525".as_slice()
        );
    }
}
