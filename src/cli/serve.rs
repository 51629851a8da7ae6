//! `schoolgate serve`: run the relay (and the milter, when `[milter] listen` is set) until
//! SIGTERM; reload on SIGHUP or when a file changes.
//!
//! SIGTERM (or Ctrl-C) stops accepting, tells idle clients 421, lets messages in flight finish
//! (up to `relay.shutdown_grace`) and records the stop. SIGHUP re-reads the config and the
//! directory and puts the new policy, directory and next hop in force for new messages; a bad
//! config or directory is refused with a log line naming the file and line, and the old one stays.
//! Listeners and TLS are kept: changing them needs a restart.
//!
//! The config file and the directory file are also watched (by polling: no inotify): every
//! [`WATCH_INTERVAL`] their modification and change times, size and inode are compared with what
//! the last reload (or the start) read, and a change that has then stayed the same for a whole
//! interval (so that an export or an editor is never caught half-way through writing) runs the
//! same reload as SIGHUP, once; a file a SIGHUP reload has already read is not read again, and a
//! refused file is not retried until it changes. A message in flight keeps the config and
//! directory it started with.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::directory::Directory;
use crate::smtp::next_hop::NextHop;
use crate::smtp::server::{Relay, accept_loop};
use crate::store::{AuditLog, AuditRecord, RecordKind};

/// How often the config and directory files are checked for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    // Stamped before reading: a change made while starting is seen by the first polls.
    let mut read = Watched::default();
    read.stamp(config_path);
    let config = super::load_config(config_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // With `[storage] database`: the connections on this runtime's workers, beside the
    // sessions that use them (see `store::postgres`).
    crate::store::postgres::run_on(runtime.handle().clone());
    runtime.block_on(serve(config, read))
}

pub(crate) fn next_hop_for(config: &Config) -> anyhow::Result<NextHop> {
    let auth = config.next_hop_auth()?;
    NextHop::new(
        &config.relay.next_hop.0,
        auth,
        &config.relay.hostname,
        config.relay.next_hop_timeout.0,
    )
    .with_context(|| format!("{}: relay.next_hop", config.source.display()))
}

/// The relay's next hop, with the DKIM keys of `[dkim]` loaded (a key that cannot be read or
/// used stops the start, or refuses the reload, naming the file).
pub(crate) fn signing_next_hop_for(config: &Config) -> anyhow::Result<NextHop> {
    let signing = crate::dkim::Signing::load(config)?;
    if let Some(s) = &signing {
        for k in s.domains() {
            tracing::info!(domain = %k.domain, selector = %k.selector,
                algorithm = k.algorithm.tag(), arc = s.arc(), "DKIM signing mail from this domain");
        }
    }
    Ok(next_hop_for(config)?.with_signing(signing))
}

async fn serve(config: Config, mut read: Watched) -> anyhow::Result<ExitCode> {
    let state_dir = config.storage.state_dir.clone();
    crate::store::private::create_dir_all(&state_dir).with_context(|| {
        format!(
            "{}: storage.state_dir: cannot create {}",
            config.source.display(),
            state_dir.display()
        )
    })?;
    // With `[storage] database`, PostgreSQL must answer now: a gateway that cannot record
    // would only say 451 to every message, so it refuses to start, saying why.
    let audit = AuditLog::start(crate::store::open_audit(&config.storage)?)?;
    let answered = crate::store::answered::RetryLookup::start(&config.storage)
        .context("cannot start the thread that looks up retried messages (the system is out of threads or memory: check ulimit -u and free memory)")?;
    // Before any mail: settle quarantine entries a crash left between write and audit record.
    let recovered = crate::store::quarantine::Quarantine::open(&config.storage).recover()?;
    if !recovered.confirmed.is_empty() || !recovered.removed.is_empty() {
        tracing::warn!(confirmed = ?recovered.confirmed, removed = ?recovered.removed,
            "quarantine entries left half written by a crash: recorded ones kept, unrecorded ones removed");
    }
    let tls = load_tls(&config)?;
    read.stamp(&config.school.directory);
    let directory = Directory::load(&config.school.directory, &config.school.staff_roles)?;
    for s in &config.schools {
        read.stamp(&s.school.directory);
    }
    let schools = crate::smtp::server::load_schools(&config)?;
    let next_hop = signing_next_hop_for(&config)?;
    let mut listeners = Vec::new();
    for addr in &config.relay.listen {
        let l = TcpListener::bind(addr).await.with_context(|| {
            format!(
                "{}: relay.listen: cannot listen on {addr} (is another schoolgate or mail server using it?)",
                config.source.display()
            )
        })?;
        listeners.push(l);
    }
    let milter_listener = match &config.milter.listen {
        Some(listen) => Some(crate::milter::bind(listen).await.with_context(|| {
            format!(
                "{}: milter.listen: cannot listen on {listen}",
                config.source.display()
            )
        })?),
        None => None,
    };
    let web_listener = match &config.web.listen {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
            format!(
                "{}: web.listen: cannot listen on {addr}",
                config.source.display()
            )
        })?),
        None => None,
    };
    if let Some(warning) = config.web.insecure_warning() {
        eprintln!("warning: {warning}");
        tracing::warn!("{warning}");
    }
    if let Some(warning) = crate::smtp::server::raise_open_file_limit(config.relay.max_connections)
    {
        tracing::warn!("{warning}");
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let grace = config.relay.shutdown_grace.0;
    let config = Arc::new(config);
    let described = format!(
        "started; relay on {}{}{}; next hop {}",
        config
            .relay
            .listen
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        match &config.milter.listen {
            Some(l) => format!("; milter on {l}"),
            None => String::new(),
        },
        match &config.web.listen {
            Some(l) => format!(
                "; web page on {}://{l}/",
                if config.web.tls { "https" } else { "http" }
            ),
            None => String::new(),
        },
        next_hop.describe()
    );
    let relay = Relay::new(
        Arc::clone(&config),
        directory,
        schools,
        next_hop,
        audit.clone(),
        answered,
        tls,
        stop_rx,
    );
    audit
        .append(AuditRecord::action(
            RecordKind::Start,
            crate::store::GATEWAY,
            &described,
        ))
        .await?;
    tracing::info!("{described}");
    tokio::spawn(crate::smtp::weekly_report::run(Arc::clone(&relay)));
    tokio::spawn(crate::smtp::quarantine_digest::run(Arc::clone(&relay)));
    tokio::spawn(crate::smtp::retry::sweep(Arc::clone(&relay)));
    let keeping = tokio::spawn(super::audit::keeper::run(
        Arc::clone(&relay),
        config.storage.clone(),
        stop_tx.subscribe(),
    ));
    let mut accepting = Vec::new();
    for l in listeners {
        accepting.push(tokio::spawn(accept_loop(Arc::clone(&relay), l)));
    }
    let milter = milter_listener.map(|l| {
        tokio::spawn(crate::milter::serve(
            Arc::clone(&relay),
            l,
            stop_tx.subscribe(),
        ))
    });

    let web = web_listener.map(|l| {
        let tls = if config.web.tls {
            relay.tls.clone()
        } else {
            None
        };
        tokio::spawn(crate::web::serve(
            Arc::clone(&relay),
            l,
            tls,
            stop_tx.subscribe(),
        ))
    });
    // Every listener is bound and the start recorded: systemd may now start what needs mail.
    let notifier = Arc::new(super::notify::Notifier::from_env());
    notifier.ready(&described);
    let watchdog = tokio::spawn(super::notify::keep_watchdog(
        Arc::clone(&notifier),
        stop_tx.subscribe(),
    ));

    let reloader = Arc::new(Reloader {
        relay: Arc::clone(&relay),
        notifier: Arc::clone(&notifier),
        read: tokio::sync::Mutex::new(read),
    });
    let watching = tokio::spawn(watch_files(Arc::clone(&reloader), stop_tx.subscribe()));

    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => reloader.reload(Trigger::Signal, None).await,
        }
    }

    notifier.stopping("stopping: finishing messages in flight");
    tracing::info!(
        sessions = relay.active_sessions(),
        "stopping: no new connections; finishing messages in flight"
    );
    let _ = stop_tx.send(true);
    let _ = watchdog.await;
    let _ = watching.await;
    let _ = keeping.await;
    for a in accepting {
        let _ = a.await;
    }
    let left = relay.drain(grace).await;
    if let Some(web) = web {
        // A scrape takes milliseconds; idle keep-alive connections are closed at once.
        let _ = tokio::time::timeout(Duration::from_secs(5), web).await;
    }
    if let Some(milter) = milter {
        // The milter finishes the messages it is deciding about, within the same grace.
        if tokio::time::timeout(grace, milter).await.is_err() {
            tracing::warn!("the milter had messages in flight after the grace period");
        }
    }
    let detail = if left == 0 {
        "stopped cleanly".to_string()
    } else {
        format!(
            "stopped after {} s with {left} sessions still open",
            grace.as_secs()
        )
    };
    if let Err(e) = audit
        .append(AuditRecord::action(
            RecordKind::Stop,
            crate::store::GATEWAY,
            &detail,
        ))
        .await
    {
        tracing::error!(error = %e, "could not record the stop");
    }
    if let Err(e) = super::audit::keeper::checkpoint_now(&config.storage) {
        tracing::error!(error = %e, "could not record the final audit checkpoint");
    }
    tracing::info!("{detail}");
    Ok(ExitCode::SUCCESS)
}

/// What a file looked like: enough to tell that it was written or replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    dev: u64,
    ino: u64,
    ctime: (i64, i64),
}

impl Stamp {
    /// `None` when the file is not there (or cannot be looked at).
    fn of(path: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp {
            modified: m.modified().ok(),
            len: m.len(),
            dev: m.dev(),
            ino: m.ino(),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// The files a reload reads, each with what it looked like just before it was read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Watched(Vec<(PathBuf, Option<Stamp>)>);

impl Watched {
    /// Adds `path` as it is now (once: a path already there keeps its stamp).
    fn stamp(&mut self, path: &Path) {
        if !self.0.iter().any(|(p, _)| p == path) {
            self.0.push((path.to_path_buf(), Stamp::of(path)));
        }
    }

    /// The same files as they are now.
    fn now(&self) -> Watched {
        Watched(
            self.0
                .iter()
                .map(|(p, _)| (p.clone(), Stamp::of(p)))
                .collect(),
        )
    }

    /// The files whose stamp differs in `now`.
    fn changed(&self, now: &Watched) -> Vec<PathBuf> {
        now.0
            .iter()
            .filter(|(p, s)| !self.0.iter().any(|(q, t)| q == p && t == s))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Only the files in `keep`.
    fn only(self, keep: &[&Path]) -> Watched {
        Watched(
            self.0
                .into_iter()
                .filter(|(p, _)| keep.contains(&p.as_path()))
                .collect(),
        )
    }
}

/// Why a reload runs.
enum Trigger {
    Signal,
    Changed(Vec<PathBuf>),
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Signal => write!(f, "on SIGHUP"),
            Trigger::Changed(paths) => write!(
                f,
                "after a change to {}",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        }
    }
}

/// Runs reloads one at a time, whether SIGHUP or a changed file asks for them.
struct Reloader {
    relay: Arc<Relay>,
    /// `systemctl status` shows the last reload's outcome.
    notifier: Arc<super::notify::Notifier>,
    /// What the last reload (or the start) read. Locked for the whole of a reload.
    read: tokio::sync::Mutex<Watched>,
}

impl Reloader {
    /// Re-reads the config and the directory and puts them in force, or keeps the old ones
    /// and says why; either way an audit record says what happened. With `expected`, does
    /// nothing unless the files read last are still as `expected` says, so that a change
    /// another reload has already read is not read twice.
    async fn reload(&self, trigger: Trigger, expected: Option<&Watched>) {
        let mut read = self.read.lock().await;
        if expected.is_some_and(|e| *e != *read) {
            return;
        }
        let relay = &self.relay;
        let old = relay.config();
        let (source, in_force) = (old.source.clone(), directories(&old));
        let loaded = tokio::task::spawn_blocking(move || {
            // Each file is stamped just before it is read: a write after that is a change
            // the next polls see.
            let mut seen = Watched::default();
            seen.stamp(&source);
            for d in &in_force {
                seen.stamp(d);
            }
            let result = Config::load(&source)
                .map_err(anyhow::Error::from)
                .and_then(|new| {
                    for d in directories(&new) {
                        seen.stamp(&d);
                    }
                    let directory =
                        Directory::load(&new.school.directory, &new.school.staff_roles)?;
                    let schools = crate::smtp::server::load_schools(&new)?;
                    Ok((new, directory, schools))
                });
            (result, seen)
        })
        .await;
        let (result, seen) = match loaded {
            Ok(loaded) => loaded,
            // Stamped now, so that the same files are not tried again and again.
            Err(e) => (
                Err(anyhow::anyhow!("the reload stopped unexpectedly: {e}")),
                read.now(),
            ),
        };
        let result = result.and_then(|(new, directory, schools)| {
            let hop = signing_next_hop_for(&new)?;
            Ok((new, directory, schools, hop))
        });
        let outcome = match result {
            Ok((new, directory, schools, hop)) => {
                if new.relay.listen != old.relay.listen
                    || new.relay.tls_cert != old.relay.tls_cert
                    || new.relay.tls_key != old.relay.tls_key
                {
                    tracing::warn!("relay.listen and TLS changes take effect only after a restart");
                }
                if new.milter.listen != old.milter.listen {
                    tracing::warn!("milter.listen changes take effect only after a restart");
                }
                let d = format!(
                    "configuration reloaded from {} {trigger}; directory {} ({} people); next hop {}",
                    new.source.display(),
                    new.school.directory.display(),
                    directory.people.len(),
                    hop.describe()
                );
                // From now on, watch the files the new config names.
                let watched = directories(&new);
                let mut keep: Vec<&Path> = vec![new.source.as_path()];
                keep.extend(watched.iter().map(PathBuf::as_path));
                *read = seen.only(&keep);
                relay.replace(Arc::new(new), directory, schools, hop);
                Ok(d)
            }
            Err(e) => {
                // The files tried stay watched (a fixed directory is a change), and so does the
                // directory in force.
                *read = seen;
                Err((
                    format!("reload refused, old configuration kept: {e:#} ({trigger})"),
                    format!(
                        "reload refused {trigger}, the old configuration stays in force: {e:#}"
                    ),
                ))
            }
        };
        let detail = match &outcome {
            Ok(d) | Err((d, _)) => d.as_str(),
        };
        // The audit record first, then the log line and the status: whoever reads the log
        // (or `systemctl status`) and then the audit trail finds the reload recorded.
        if let Err(e) = relay
            .audit
            .append(AuditRecord::action(
                RecordKind::ConfigReload,
                crate::store::GATEWAY,
                detail,
            ))
            .await
        {
            tracing::error!(error = %e, "could not record the reload");
        }
        match &outcome {
            Ok(d) => tracing::info!("{d}"),
            Err((_, said)) => tracing::error!("{said}"),
        }
        self.notifier.status(detail);
    }
}

/// Every [`WATCH_INTERVAL`], compares the files the last reload read with what is on disk now;
/// once a change has stayed the same for a whole interval, reloads. Ends when `stop` turns true.
async fn watch_files(reloader: Arc<Reloader>, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(WATCH_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    // A change seen at the last tick, not yet read.
    let mut pending: Option<Watched> = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stopping| *stopping) => return,
        }
        let read = reloader.read.lock().await.clone();
        let probe = read.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || probe.now()).await else {
            continue;
        };
        if now == read {
            pending = None;
            continue;
        }
        if pending.as_ref() != Some(&now) {
            // Changed, or still changing: wait an interval for it to settle.
            pending = Some(now);
            continue;
        }
        pending = None;
        let changed = read.changed(&now);
        reloader
            .reload(Trigger::Changed(changed), Some(&read))
            .await;
    }
}

/// The STARTTLS certificate, when `relay.tls_cert` and `relay.tls_key` are set.
fn load_tls(config: &Config) -> anyhow::Result<Option<TlsAcceptor>> {
    let (Some(cert), Some(key)) = (&config.relay.tls_cert, &config.relay.tls_key) else {
        return Ok(None);
    };
    let src = config.source.display();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            anyhow::anyhow!(
                "{src}: relay.tls_cert: cannot read a PEM certificate from {}: {e}",
                cert.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!(
            "{src}: relay.tls_cert: {} holds no certificate",
            cert.display()
        );
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        anyhow::anyhow!(
            "{src}: relay.tls_key: cannot read a PEM private key from {}: {e}",
            key.display()
        )
    })?;
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(certs, key_der)
    .with_context(|| {
        format!("{src}: relay.tls_cert/tls_key: the key does not fit the certificate")
    })?;
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

/// The directory files `config` reads: `[school] directory` and each school's of a trust.
fn directories(config: &Config) -> Vec<PathBuf> {
    let mut all = vec![config.school.directory.clone()];
    for s in &config.schools {
        if !all.contains(&s.school.directory) {
            all.push(s.school.directory.clone());
        }
    }
    all
}
