//! `schoolgate serve`: run the relay until SIGTERM; reload on SIGHUP.
//!
//! SIGTERM (or Ctrl-C) stops accepting, tells idle clients 421, lets messages in flight finish
//! (up to `relay.shutdown_grace`) and records the stop. SIGHUP re-reads the config and puts the
//! new policy and next hop in force for new messages; a bad config is refused with a log line and
//! the old one stays. Listeners and TLS are kept: changing them needs a restart.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

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
use crate::store::sqlite::SqliteBackend;
use crate::store::{ActionRecord, AuditLog, AuditRecord, RecordKind};

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

fn next_hop_for(config: &Config) -> anyhow::Result<NextHop> {
    let auth = config.next_hop_auth()?;
    NextHop::new(
        &config.relay.next_hop.0,
        auth,
        &config.relay.hostname,
        config.relay.next_hop_timeout.0,
    )
    .with_context(|| format!("{}: relay.next_hop", config.source.display()))
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let state_dir = config.storage.state_dir.clone();
    std::fs::create_dir_all(&state_dir).with_context(|| {
        format!(
            "{}: storage.state_dir: cannot create {}",
            config.source.display(),
            state_dir.display()
        )
    })?;
    let audit = AuditLog::start(Box::new(SqliteBackend::open(&state_dir)?))?;
    let tls = load_tls(&config)?;
    let directory = Directory::load(&config.school.directory, &config.school.staff_roles)?;
    let next_hop = next_hop_for(&config)?;
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
    let (stop_tx, stop_rx) = watch::channel(false);
    let grace = config.relay.shutdown_grace.0;
    let config = Arc::new(config);
    let described = format!(
        "started; relay on {}; next hop {}",
        config
            .relay
            .listen
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        next_hop.describe()
    );
    let relay = Relay::new(
        Arc::clone(&config),
        directory,
        next_hop,
        audit.clone(),
        tls,
        stop_rx,
    );
    audit
        .append(gateway_action(RecordKind::Start, &described))
        .await?;
    tracing::info!("{described}");
    let mut accepting = Vec::new();
    for l in listeners {
        accepting.push(tokio::spawn(accept_loop(Arc::clone(&relay), l)));
    }

    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => reload(&relay).await,
        }
    }

    tracing::info!(
        sessions = relay.active_sessions(),
        "stopping: no new connections; finishing messages in flight"
    );
    let _ = stop_tx.send(true);
    for a in accepting {
        let _ = a.await;
    }
    let left = relay.drain(grace).await;
    let detail = if left == 0 {
        "stopped cleanly".to_string()
    } else {
        format!(
            "stopped after {} s with {left} sessions still open",
            grace.as_secs()
        )
    };
    if let Err(e) = audit
        .append(gateway_action(RecordKind::Stop, &detail))
        .await
    {
        tracing::error!(error = %e, "could not record the stop");
    }
    tracing::info!("{detail}");
    Ok(ExitCode::SUCCESS)
}

async fn reload(relay: &Relay) {
    let old = relay.config();
    let result = Config::load(&old.source)
        .map_err(anyhow::Error::from)
        .and_then(|new| {
            let directory = Directory::load(&new.school.directory, &new.school.staff_roles)?;
            let hop = next_hop_for(&new)?;
            Ok((new, directory, hop))
        });
    let detail = match result {
        Ok((new, directory, hop)) => {
            if new.relay.listen != old.relay.listen
                || new.relay.tls_cert != old.relay.tls_cert
                || new.relay.tls_key != old.relay.tls_key
            {
                tracing::warn!("relay.listen and TLS changes take effect only after a restart");
            }
            let d = format!(
                "configuration reloaded from {}; directory {} ({} people); next hop {}",
                new.source.display(),
                new.school.directory.display(),
                directory.people.len(),
                hop.describe()
            );
            relay.replace(Arc::new(new), directory, hop);
            tracing::info!("{d}");
            d
        }
        Err(e) => {
            tracing::error!("reload refused, the old configuration stays in force: {e:#}");
            format!("reload refused, old configuration kept: {e:#}")
        }
    };
    if let Err(e) = relay
        .audit
        .append(gateway_action(RecordKind::ConfigReload, &detail))
        .await
    {
        tracing::error!(error = %e, "could not record the reload");
    }
}

fn gateway_action(kind: RecordKind, detail: &str) -> AuditRecord {
    AuditRecord::action(
        kind,
        ActionRecord {
            actor: "schoolgate".into(),
            detail: detail.into(),
        },
    )
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
