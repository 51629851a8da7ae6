//! The shared store of a trust's gateways: PostgreSQL, named by `[storage] database`.
//!
//! [`Pg`] is the connection layer every PostgreSQL table of schoolgate goes through: a pool of
//! connections ([`deadpool_postgres`]), TLS through rustls when the URL asks for it
//! (`sslmode=require`, `verify-ca`, `verify-full`), and the versioned schema ([`schema`]),
//! applied by [`Pg::connect`].
//!
//! # Calling it from synchronous code
//!
//! The store's callers are synchronous (the audit writer thread, the CLI commands, and web and
//! SMTP code through `spawn_blocking`). Every connection lives on one tokio runtime: in `serve`
//! the gateway's own ([`run_on`]), so that the relay's sessions, its retry look-ups and the
//! audit writer's transactions share its workers rather than wake other threads for each
//! message; elsewhere (the CLI) a small runtime `Pg` starts for itself (two worker threads named
//! `schoolgate-pg`). [`Pg::run`] is THE way to use the database from any thread:
//!
//! ```ignore
//! let n: i64 = pg.run(|client| async move {
//!     let row = client.query_one("SELECT count(*) FROM audit", &[]).await?;
//!     Ok(row.get(0))
//! })?;
//! ```
//!
//! The closure gets a pooled connection (returned to the pool when dropped) and its future runs
//! on `Pg`'s runtime; the calling thread waits on a plain channel. So it never panics, whether
//! called from a plain thread, a `spawn_blocking` thread of the gateway's runtime, or an async
//! task on one of its workers (which it then hands over to another thread first, as
//! [`super::place::blocking`] does, so the runtime's tasks, the connections among them, keep
//! running). `?` on a `tokio_postgres::Error` or a
//! pool error inside the closure gives a [`StoreError`] naming the database. For work that must
//! span several calls on one connection (a read snapshot), [`Pg::block_on`] runs any future and
//! [`Pg::client`] checks a connection out.
//!
//! A connection PostgreSQL dropped (a restart) is noticed when it is next taken from the pool
//! and replaced, so the gateway reconnects by itself; while the server is down each call fails
//! after at most [`CONNECT_TIMEOUT`] with [`StoreError::PgConnect`].

pub mod audit;
pub mod migrate;
pub mod schema;
pub mod shared;

use std::collections::HashMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use tokio_postgres::config::{Host, SslMode};

use super::StoreError;

/// How long opening a connection (TCP, TLS, authentication) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a caller waits for a free connection when all are busy.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections per process: the relay's writer, the web page and the CLI share them.
const POOL_SIZE: usize = 16;

/// A pool of connections to the database `[storage] database` names, and the runtime they live
/// on. Cheap to clone: clones share both.
#[derive(Clone)]
pub struct Pg {
    inner: Arc<Inner>,
}

struct Inner {
    /// The runtime `Pg` started for itself ([`run_on`] not called): `Some` until dropped; see
    /// the `Drop` impl.
    runtime: Option<tokio::runtime::Runtime>,
    /// Where the connections and [`Pg::run`]'s futures run: `runtime`'s, or the gateway's.
    handle: tokio::runtime::Handle,
    pool: Pool,
    /// `user@host:port/dbname`, without the password: what errors and logs name.
    database: String,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // `Runtime`'s own drop panics inside an async context (the last clone may be dropped
        // by a task); this does not.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The runtime set by [`run_on`].
static GATEWAY_RUNTIME: OnceLock<tokio::runtime::Handle> = OnceLock::new();

/// Puts the connections of every `Pg` this process connects from now on onto `runtime` (a
/// multi-thread runtime that lives as long as the process: `serve`'s), instead of a runtime of
/// their own. Measured on the relay (2 cores, 32 sessions): the two `schoolgate-pg` threads
/// were woken 2.6 times a message, each wake a context switch; on the gateway's workers a
/// session's look-up and the connection that answers it run side by side. The first call wins.
pub fn run_on(runtime: tokio::runtime::Handle) {
    let _ = GATEWAY_RUNTIME.set(runtime);
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg")
            .field("database", &self.inner.database)
            .finish_non_exhaustive()
    }
}

/// What `[storage] database` says, checked: the connection settings and the TLS wanted.
#[derive(Debug, Clone)]
pub struct DatabaseUrl {
    config: tokio_postgres::Config,
    tls: Tls,
    /// `user@host:port/dbname`.
    display: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tls {
    /// `sslmode=disable`.
    Off,
    /// `sslmode=prefer` (libpq's default) or `require`: encrypted, the certificate not checked.
    Unverified,
    /// `sslmode=verify-ca`: the certificate must chain to a trusted root.
    VerifyCa { root_cert: Option<String> },
    /// `sslmode=verify-full`: and name the host.
    VerifyFull { root_cert: Option<String> },
}

/// An example for error messages.
const EXAMPLE_URL: &str = "postgres://schoolgate@db.trust.example/schoolgate";

impl DatabaseUrl {
    /// Checks a `postgres://` (or `postgresql://`) URL without connecting. The error says what
    /// is wrong and what to write.
    pub fn parse(url: &str) -> Result<DatabaseUrl, String> {
        let url = url.trim();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(format!(
                "must be a postgres:// URL, e.g. \"{EXAMPLE_URL}\" (leave it out to keep the audit trail in SQLite under state_dir)"
            ));
        }
        // sslmode's verify-ca and verify-full, and sslrootcert, are libpq's; tokio-postgres
        // knows only disable/prefer/require, so they are taken out here.
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, q),
            None => (url, ""),
        };
        let mut kept = Vec::new();
        let mut mode = None;
        let mut root_cert = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "sslmode" => mode = Some(v.to_string()),
                "sslrootcert" => root_cert = Some(percent_decode(v)),
                _ => kept.push(pair),
            }
        }
        let tls = match mode.as_deref() {
            None | Some("prefer") | Some("require") | Some("allow") => Tls::Unverified,
            Some("disable") => Tls::Off,
            Some("verify-ca") => Tls::VerifyCa { root_cert },
            Some("verify-full") => Tls::VerifyFull { root_cert },
            Some(other) => {
                return Err(format!(
                    "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full; e.g. \"{EXAMPLE_URL}?sslmode=verify-full\""
                ));
            }
        };
        let rebuilt = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config = tokio_postgres::Config::from_str(&rebuilt)
            .map_err(|e| format!("is not a valid PostgreSQL URL ({e}); e.g. \"{EXAMPLE_URL}\""))?;
        config.ssl_mode(match (&tls, mode.as_deref()) {
            (Tls::Off, _) => SslMode::Disable,
            (_, None) | (_, Some("prefer")) | (_, Some("allow")) => SslMode::Prefer,
            _ => SslMode::Require,
        });
        if config.get_hosts().is_empty() {
            return Err(format!("names no host; e.g. \"{EXAMPLE_URL}\""));
        }
        let Some(user) = config.get_user().map(str::to_string) else {
            return Err(format!(
                "names no user; write the user before the host, e.g. \"{EXAMPLE_URL}\""
            ));
        };
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("schoolgate");
        let host = match &config.get_hosts()[0] {
            Host::Tcp(h) => h.clone(),
            Host::Unix(p) => p.display().to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let dbname = config.get_dbname().unwrap_or(&user).to_string();
        let display = format!("{user}@{host}:{port}/{dbname}");
        Ok(DatabaseUrl {
            config,
            tls,
            display,
        })
    }

    /// `user@host:port/dbname`, without the password.
    pub fn display(&self) -> &str {
        &self.display
    }
}

/// `%2F` and friends in a query value (a file path).
fn percent_decode(v: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Pg {
    /// Builds the pool for `url`, connects once (so a wrong URL, password or an unreachable
    /// server is said at start) and applies the schema migrations.
    pub fn connect(url: &str) -> Result<Pg, StoreError> {
        let parsed = DatabaseUrl::parse(url).map_err(|reason| StoreError::PgUrl { reason })?;
        let database = parsed.display.clone();
        let connect_err = |detail: String| StoreError::PgConnect {
            database: database.clone(),
            detail,
        };
        let (runtime, handle) = match GATEWAY_RUNTIME.get() {
            Some(handle) => (None, handle.clone()),
            None => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("schoolgate-pg")
                    .enable_all()
                    .build()
                    .map_err(|e| connect_err(format!("cannot start its runtime: {e}")))?;
                let handle = runtime.handle().clone();
                (Some(runtime), handle)
            }
        };
        let tls = tls_connector(&parsed.tls).map_err(connect_err)?;
        let manager = Manager::from_config(
            parsed.config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT + Duration::from_secs(1)))
            .wait_timeout(Some(WAIT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| connect_err(e.to_string()))?;
        let pg = Pg {
            inner: Arc::new(Inner {
                runtime,
                handle,
                pool,
                database,
            }),
        };
        let db = pg.database().to_string();
        pg.run(move |mut client| async move { schema::migrate(&mut client, &db).await })?;
        tracing::info!(database = %pg.database(), "PostgreSQL store ready");
        Ok(pg)
    }

    /// The one pool of this process for `url`: connected (and migrated) by the first call,
    /// shared by the later ones, so the audit writer, the web page and the queues of one
    /// gateway use one pool. A failed connect is not kept: the next call tries again.
    pub fn shared(url: &str) -> Result<Pg, StoreError> {
        static SHARED: OnceLock<Mutex<HashMap<String, Pg>>> = OnceLock::new();
        let mut pools = SHARED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(pg) = pools.get(url) {
            return Ok(pg.clone());
        }
        let pg = Pg::connect(url)?;
        pools.insert(url.to_string(), pg.clone());
        Ok(pg)
    }

    /// `user@host:port/dbname`, without the password.
    pub fn database(&self) -> &str {
        &self.inner.database
    }

    /// Runs `fut` on `Pg`'s runtime and waits for it, from any thread (see the module docs).
    pub fn block_on<T, F>(&self, fut: F) -> T
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.inner.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        // On a worker of a multi-thread runtime (perhaps the very one `fut` runs on) the
        // worker's other tasks move to another thread while this one waits.
        match super::place::blocking(|| rx.recv()) {
            Ok(value) => value,
            // The task panicked (a bug), so the sender was dropped unsent.
            Err(_) => panic!("a PostgreSQL task panicked"),
        }
    }

    /// Runs `fut` on `Pg`'s runtime in the background (a task serving others, such as the
    /// relay's retry look-ups), from any thread.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.inner.handle.spawn(fut);
    }

    /// A pooled connection, for code already running on `Pg`'s runtime (inside
    /// [`Pg::block_on`]).
    pub async fn client(&self) -> Result<Object, StoreError> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| pool_error(&self.inner.database, e))
    }

    /// Runs `f` with a pooled connection on `Pg`'s runtime and waits for its result, from any
    /// thread (see the module docs). Errors name the database.
    pub fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        let pg = self.clone();
        self.block_on(async move {
            let client = pg.client().await?;
            f(client).await.map_err(|e| pg.name_error(e))
        })
    }

    /// Puts the database's name into an error made by `?` on a `tokio_postgres::Error`, which
    /// does not know it.
    pub fn name_error(&self, e: StoreError) -> StoreError {
        let name = |database: String| {
            if database.is_empty() {
                self.inner.database.clone()
            } else {
                database
            }
        };
        match e {
            StoreError::Postgres { database, detail } => StoreError::Postgres {
                database: name(database),
                detail,
            },
            StoreError::PgConnect { database, detail } => StoreError::PgConnect {
                database: name(database),
                detail,
            },
            other => other,
        }
    }
}

/// A boxed future borrowing a connection, as [`PgTx::run`] takes.
pub type BoxFut<'a, T> = std::pin::Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// One transaction held open across several synchronous calls (each a round of
/// [`Pg::block_on`]), e.g. `migrate` copying table after table. Dropped without
/// [`PgTx::commit`], its connection is closed, so PostgreSQL rolls it all back.
pub struct PgTx {
    pg: Pg,
    client: Option<Object>,
}

impl PgTx {
    /// `BEGIN` on a pooled connection, then takes the advisory `locks` (e.g.
    /// [`audit::AUDIT_LOCK`]) until the end of the transaction.
    pub fn begin(pg: &Pg, locks: &[i64]) -> Result<PgTx, StoreError> {
        let locks = locks.to_vec();
        let p = pg.clone();
        let client = pg.block_on(async move {
            let client = p.client().await?;
            client.batch_execute("BEGIN").await?;
            for lock in &locks {
                client
                    .execute("SELECT pg_advisory_xact_lock($1)", &[lock])
                    .await?;
            }
            Ok::<_, StoreError>(client)
        });
        Ok(PgTx {
            pg: pg.clone(),
            client: Some(client.map_err(|e| pg.name_error(e))?),
        })
    }

    /// Runs `f` on the transaction's connection: `pg_tx.run(|c| Box::pin(async move { ... }))`.
    pub fn run<T, F>(&mut self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a deadpool_postgres::ClientWrapper) -> BoxFut<'a, T> + Send + 'static,
    {
        let Some(client) = self.client.take() else {
            return Err(StoreError::Postgres {
                database: self.pg.database().to_string(),
                detail: "the transaction has ended".into(),
            });
        };
        let (client, result) = self.pg.block_on(async move {
            let r = f(&client).await;
            (client, r)
        });
        self.client = Some(client);
        result.map_err(|e| self.pg.name_error(e))
    }

    /// Commits.
    pub fn commit(mut self) -> Result<(), StoreError> {
        self.run(|c| Box::pin(async move { Ok(c.batch_execute("COMMIT").await?) }))?;
        // Back to the pool, outside any transaction.
        drop(self.client.take());
        Ok(())
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        // Still open (not committed, or the commit failed): the connection must not go back
        // to the pool inside a transaction; closing it rolls the transaction back.
        if let Some(client) = self.client.take()
            && !client.is_closed()
        {
            self.pg.block_on(async move {
                if client.batch_execute("ROLLBACK").await.is_err() {
                    drop(Object::take(client));
                }
            });
        }
    }
}

/// What went wrong with a statement, with PostgreSQL's own message when it gave one.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} ({})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            s.push_str("; ");
            s.push_str(detail);
        }
        return s;
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

fn pool_error(database: &str, e: PoolError) -> StoreError {
    let detail = match &e {
        PoolError::Backend(pg) => describe(pg),
        PoolError::Timeout(_) => {
            format!("no answer within {} s ({e})", CONNECT_TIMEOUT.as_secs() + 1)
        }
        other => other.to_string(),
    };
    StoreError::PgConnect {
        database: database.to_string(),
        detail,
    }
}

impl From<tokio_postgres::Error> for StoreError {
    /// A statement failed; [`Pg::run`] fills in the database's name. A connection that broke
    /// (the server went away) is said as such.
    fn from(e: tokio_postgres::Error) -> Self {
        if e.as_db_error().is_none() {
            return StoreError::PgConnect {
                database: String::new(),
                detail: describe(&e),
            };
        }
        StoreError::Postgres {
            database: String::new(),
            detail: describe(&e),
        }
    }
}

/// The TLS side of connections: rustls (ring), configured by `sslmode`.
fn tls_connector(tls: &Tls) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let roots = |root_cert: &Option<String>| -> Result<rustls::RootCertStore, String> {
        let mut roots = rustls::RootCertStore::empty();
        match root_cert.as_deref() {
            None | Some("system") => {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("cannot read sslrootcert {path}: {e}"))?;
                for cert in certs {
                    let cert = cert.map_err(|e| format!("sslrootcert {path}: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("sslrootcert {path}: {e}"))?;
                }
            }
        }
        Ok(roots)
    };
    let config = match tls {
        Tls::Off | Tls::Unverified => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(tls::Unverified(provider)))
            .with_no_client_auth(),
        Tls::VerifyFull { root_cert } => builder
            .with_root_certificates(roots(root_cert)?)
            .with_no_client_auth(),
        Tls::VerifyCa { root_cert } => {
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots(root_cert)?),
                provider,
            )
            .build()
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(tls::AnyName(inner)))
                .with_no_client_auth()
        }
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Certificate checks for `sslmode=require` and `verify-ca`, as libpq does them.
mod tls {
    use std::sync::Arc;

    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};

    /// `sslmode=require`: encrypted, any certificate (the handshake's signatures still checked).
    #[derive(Debug)]
    pub(super) struct Unverified(pub(super) Arc<CryptoProvider>);

    impl ServerCertVerifier for Unverified {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// `sslmode=verify-ca`: the chain must verify; the name in it need not be the host's.
    #[derive(Debug)]
    pub(super) struct AnyName(pub(super) Arc<WebPkiServerVerifier>);

    impl ServerCertVerifier for AnyName {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp_response: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            match self.0.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ) {
                Err(Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_checked_and_named_without_its_password() {
        let u =
            DatabaseUrl::parse("postgres://schoolgate:s3cret@db.trust.example/schoolgate").unwrap();
        assert_eq!(u.display(), "schoolgate@db.trust.example:5432/schoolgate");
        assert_eq!(u.tls, Tls::Unverified);
        let u = DatabaseUrl::parse(
            "postgresql://sg@10.0.0.5:6543/trust?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(u.display(), "sg@10.0.0.5:6543/trust");
        assert_eq!(
            u.tls,
            Tls::VerifyFull {
                root_cert: Some("/etc/ca.pem".into())
            }
        );
        assert_eq!(
            DatabaseUrl::parse("postgres://sg@h/d?sslmode=disable")
                .unwrap()
                .tls,
            Tls::Off
        );
    }

    #[test]
    fn a_bad_url_says_what_to_write() {
        for (url, says) in [
            ("mysql://sg@h/d", "must be a postgres:// URL"),
            ("/var/lib/schoolgate", "must be a postgres:// URL"),
            ("postgres://sg@h/d?sslmode=always", "sslmode=always"),
            (
                "postgres://sg@h/d?colour=blue",
                "not a valid PostgreSQL URL",
            ),
            ("postgres://h/d", "names no user"),
        ] {
            let e = DatabaseUrl::parse(url).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
            assert!(e.contains("postgres://"), "{url}: {e} gives no example");
        }
    }

    #[test]
    fn percent_escapes_in_a_path_are_decoded() {
        assert_eq!(percent_decode("%2Fetc%2Fpg%20ca.pem"), "/etc/pg ca.pem");
        assert_eq!(percent_decode("plain%"), "plain%");
    }
}
