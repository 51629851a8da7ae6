//! Listening: who may connect, how many at once, and a clean stop.
//!
//! Only `relay.allowed_clients` may relay: every other client gets 554 at connect, so schoolgate
//! can never be an open relay. Connections are counted per client address and in total; past
//! either limit a client gets 421 and its queue tries again later.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use super::next_hop::NextHop;
use super::session;
use crate::config::Config;
use crate::directory::{Directory, DirectoryError};
use crate::store::AuditLog;
use crate::store::answered::RetryLookup;
use crate::store::spool::Spool;
use crate::web::metrics::Metrics;

/// What every session shares.
pub struct Relay {
    config: RwLock<Arc<Config>>,
    directory: RwLock<Arc<Directory>>,
    /// The schools of a trust (`[[schools]]`), each with its own config and directory; empty
    /// for a single school.
    schools: RwLock<Arc<Vec<SchoolInForce>>>,
    next_hop: RwLock<Arc<NextHop>>,
    pub audit: AuditLog,
    /// The retry look-ups of every session, batched (`super::retry`).
    pub answered: RetryLookup,
    /// Evidence and queued DSL alerts.
    pub spool: Spool,
    pub tls: Option<TlsAcceptor>,
    /// The counters `/metrics` shows.
    pub metrics: Metrics,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    active: AtomicUsize,
    idle: Notify,
    shutdown: watch::Receiver<bool>,
    /// Turns at checking attachments (`[sensitive.limits] max_parallel_scans`).
    scans: ScanTurns,
}

/// One school of a trust in force: the config its mail is decided under
/// ([`Config::for_school`]) and its own directory.
pub struct SchoolInForce {
    pub config: Arc<Config>,
    pub directory: Arc<Directory>,
}

impl SchoolInForce {
    /// The school's name, as `[[schools]] name` gives it.
    pub fn name(&self) -> &str {
        &self.config.school.name
    }
}

/// Each school of `config`'s trust with its directory read (none for a single school).
pub fn load_schools(config: &Config) -> Result<Vec<SchoolInForce>, DirectoryError> {
    let mut schools = Vec::new();
    for i in 0..config.schools.len() {
        let Some(school) = config.for_school(i) else {
            continue;
        };
        let directory = Directory::load(&school.school.directory, &school.school.staff_roles)?;
        schools.push(SchoolInForce {
            config: Arc::new(school),
            directory: Arc::new(directory),
        });
    }
    Ok(schools)
}

/// At most N messages have their attachments checked at once; the others wait their turn.
struct ScanTurns(RwLock<(usize, Arc<Semaphore>)>);

impl ScanTurns {
    fn new(n: usize) -> ScanTurns {
        ScanTurns(RwLock::new((n, Arc::new(Semaphore::new(n)))))
    }

    fn permits(&self) -> Arc<Semaphore> {
        match self.0.read() {
            Ok(s) => Arc::clone(&s.1),
            Err(poisoned) => Arc::clone(&poisoned.into_inner().1),
        }
    }

    /// A turn, held until the permit is dropped.
    async fn wait(&self) -> Option<OwnedSemaphorePermit> {
        self.permits().acquire_owned().await.ok()
    }

    /// A new number of turns takes new permits; checks under way finish on the old ones.
    fn resize(&self, n: usize) {
        let mut current = match self.0.write() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if current.0 != n {
            *current = (n, Arc::new(Semaphore::new(n)));
        }
    }
}

impl Relay {
    // Each is started by `serve` first, so what fails to start says so before any mail.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<Config>,
        directory: Directory,
        schools: Vec<SchoolInForce>,
        next_hop: NextHop,
        audit: AuditLog,
        answered: RetryLookup,
        tls: Option<TlsAcceptor>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let spool = Spool::open(&config.storage);
        let relay = Arc::new(Relay {
            scans: ScanTurns::new(config.sensitive.limits.max_parallel_scans),
            config: RwLock::new(config),
            directory: RwLock::new(Arc::new(directory)),
            schools: RwLock::new(Arc::new(schools)),
            next_hop: RwLock::new(Arc::new(next_hop)),
            audit,
            answered,
            spool,
            tls,
            metrics: Metrics::default(),
            per_client: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
            idle: Notify::new(),
            shutdown,
        });
        // The DSL alert sender runs beside the sessions for the life of the relay.
        tokio::spawn(super::alert_sender::run(Arc::clone(&relay)));
        relay
    }

    /// The config in force now (a session keeps the one it started a message with).
    pub fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The directory in force now.
    pub fn directory(&self) -> Arc<Directory> {
        match self.directory.read() {
            Ok(d) => Arc::clone(&d),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The schools of the trust in force now (empty for a single school).
    pub fn schools(&self) -> Arc<Vec<SchoolInForce>> {
        match self.schools.read() {
            Ok(s) => Arc::clone(&s),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The config and directory that mail from envelope sender `sender` is decided under: its
    /// school's ([`Config::school_of`]), or the trust-wide (the single school's) when no school
    /// of the trust has the sender's domain.
    pub fn for_sender(&self, sender: &str) -> (Arc<Config>, Arc<Directory>) {
        let schools = self.schools();
        let mine = schools.iter().enumerate().find(|(i, s)| {
            s.config
                .schools
                .get(*i)
                .is_some_and(|policy| policy.owns(sender))
        });
        match mine {
            Some((_, s)) => (Arc::clone(&s.config), Arc::clone(&s.directory)),
            None => (self.config(), self.directory()),
        }
    }

    /// The next hop in force now.
    pub fn next_hop(&self) -> Arc<NextHop> {
        match self.next_hop.read() {
            Ok(h) => Arc::clone(&h),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Waits for a turn to check a message's attachments (`max_parallel_scans` at once, over
    /// the relay and the milter). The permit is held until the check is over; `None` only if
    /// the permits were closed, which nothing does.
    pub async fn scan_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.scans.wait().await
    }

    /// Puts a reloaded config, directory and next hop in force for new messages.
    pub fn replace(
        &self,
        config: Arc<Config>,
        directory: Directory,
        schools: Vec<SchoolInForce>,
        next_hop: NextHop,
    ) {
        let schools = Arc::new(schools);
        match self.schools.write() {
            Ok(mut s) => *s = schools,
            Err(poisoned) => *poisoned.into_inner() = schools,
        }
        self.scans
            .resize(config.sensitive.limits.max_parallel_scans);
        match self.config.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        let directory = Arc::new(directory);
        match self.directory.write() {
            Ok(mut d) => *d = directory,
            Err(poisoned) => *poisoned.into_inner() = directory,
        }
        let hop = Arc::new(next_hop);
        match self.next_hop.write() {
            Ok(mut h) => *h = hop,
            Err(poisoned) => *poisoned.into_inner() = hop,
        }
    }

    /// A receiver that turns true when the gateway is stopping.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// Sessions still running.
    pub fn active_sessions(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Waits until no session is running, or `grace` has passed; returns the sessions left.
    pub async fn drain(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let notified = self.idle.notified();
            let n = self.active_sessions();
            if n == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.active_sessions();
            }
        }
    }

    /// Counts a new connection from `ip`, or says which limit it is over.
    fn admit(self: &Arc<Self>, ip: IpAddr, config: &Config) -> Result<SessionSlot, &'static str> {
        let mut per_client = match self.per_client.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if self.active.load(Ordering::SeqCst) >= config.relay.max_connections {
            return Err("too many connections");
        }
        let n = per_client.entry(ip).or_insert(0);
        if *n >= config.relay.max_connections_per_client {
            return Err("too many connections from your address");
        }
        *n += 1;
        self.active.fetch_add(1, Ordering::SeqCst);
        Ok(SessionSlot {
            relay: Arc::clone(self),
            ip,
        })
    }
}

/// A counted connection; dropping it frees its place.
pub struct SessionSlot {
    relay: Arc<Relay>,
    ip: IpAddr,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut per_client = match self.relay.per_client.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(n) = per_client.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_client.remove(&self.ip);
            }
        }
        drop(per_client);
        if self.relay.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.relay.idle.notify_waiters();
        }
    }
}

/// Accepts connections on `listener` until the gateway stops.
pub async fn accept_loop(relay: Arc<Relay>, listener: TcpListener) {
    let mut shutdown = relay.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let relay = Arc::clone(&relay);
                tokio::spawn(async move { welcome(relay, stream, peer).await });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait a moment rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn welcome(relay: Arc<Relay>, mut stream: TcpStream, peer: SocketAddr) {
    let config = relay.config();
    let ip = canonical_ip(peer.ip());
    let host = &config.relay.hostname;
    if !config
        .relay
        .allowed_clients
        .iter()
        .any(|net| net.contains(&ip))
    {
        tracing::warn!(client = %peer, "refused: not in relay.allowed_clients");
        let reply =
            format!("554 5.7.1 {host} Access denied: {ip} may not relay through this gateway\r\n");
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
        })
        .await;
        return;
    }
    let slot = match relay.admit(ip, &config) {
        Ok(slot) => slot,
        Err(why) => {
            tracing::warn!(client = %peer, why, "refused: connection limit");
            let reply = format!("421 4.7.0 {host} Error: {why}, try again later\r\n");
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            })
            .await;
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    session::run(relay, stream, peer).await;
    drop(slot);
}

/// Descriptors the gateway needs besides its sessions: listeners, the audit database and its
/// WAL, the state directory, the journal, the next hop's spare pooled connections.
const OWN_FILES: u64 = 64;

/// Raises the soft limit on open files (up to the hard limit) when `relay.max_connections`
/// needs more than it allows, and says so; returns a warning when even the hard limit is too
/// low.
///
/// Each session holds its client's socket and, while it hands a message on, one to the next
/// hop: 500 sessions need over 1,000 descriptors, and the usual soft limit outside systemd
/// (whose unit sets `LimitNOFILE`) is 1024. Past it, `accept` fails and clients wait.
pub fn raise_open_file_limit(max_connections: usize) -> Option<String> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let needed = 2 * max_connections as u64 + OWN_FILES;
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current?; // None: unlimited
    if soft >= needed {
        return None;
    }
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let wanted = needed.min(hard);
    if wanted > soft {
        let mut raised = limit;
        raised.current = Some(wanted);
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::info!(
                from = soft,
                to = wanted,
                "raised the open file limit for relay.max_connections"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
        }
    }
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    (now < needed).then(|| {
        format!(
            "relay.max_connections = {max_connections} needs about {needed} open files, but the \
             limit is {now}: raise it (LimitNOFILE= in the systemd unit, ulimit -n) or lower \
             relay.max_connections, or clients will wait when the gateway is busy"
        )
    })
}

/// `::ffff:a.b.c.d` is the IPv4 client a.b.c.d (a dual-stack listener reports it so).
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod scan_turns {
    use super::ScanTurns;

    #[tokio::test]
    async fn no_more_than_n_checks_at_once_and_a_reload_changes_n() {
        let turns = ScanTurns::new(2);
        let a = turns.wait().await;
        let b = turns.wait().await;
        assert!(a.is_some() && b.is_some());
        assert_eq!(turns.permits().available_permits(), 0, "a third waits");
        drop(a);
        assert_eq!(
            turns.permits().available_permits(),
            1,
            "a turn is given back"
        );
        turns.resize(3);
        assert_eq!(turns.permits().available_permits(), 3);
        drop(b); // a check under way ends on the old permits
        assert_eq!(turns.permits().available_permits(), 3);
        turns.resize(3);
        let _c = turns.wait().await;
        assert_eq!(
            turns.permits().available_permits(),
            2,
            "the same n keeps its permits"
        );
    }
}
