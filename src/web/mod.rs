//! The web listener (`[web] listen`): the network manager's quarantine review, the DSL's flags
//! and audit search, and `GET /metrics` for Prometheus.
//!
//! Pages are server-rendered HTML (maud) that need no JavaScript. Every response carries a
//! strict Content-Security-Policy (nothing but our own stylesheet loads, no script runs, no
//! framing), `Cache-Control: no-store` (message content never stays in a browser's cache),
//! `nosniff` and `no-referrer`. `/metrics` and `/static/style.css` are public, and so is
//! `/release/TOKEN` (a sender's one-time link, [`release`]); every other page needs a session
//! ([`auth`]) and the right role, checked in each handler.
//!
//! With `[web] tls = true` the page is served over HTTPS with the relay's certificate.

pub mod auth;
mod cases;
mod login;
pub mod metrics;
mod oidc;
mod pages;
mod quarantine;
mod quarantine_actions;
mod quarantine_list;
mod release;
mod safeguarding;
pub mod totp;
mod undelivered;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::smtp::server::Relay;
use crate::store::logins::Logins;
use crate::store::quarantine::Quarantine;
use crate::store::users::Users;
use auth::{Sessions, User};
use metrics::QuarantineSize;

/// How many password checks run at once.
const PASSWORD_CHECKS: usize = 2;

/// What every handler shares.
pub struct Web {
    pub relay: Arc<Relay>,
    pub sessions: Sessions,
    /// Whether cookies get `Secure` (TLS, or any listener but loopback unless `insecure_http`).
    pub secure: bool,
    /// Password checks at once: each takes about 19 MiB and tens of milliseconds of CPU, so a
    /// flood of logins waits here rather than exhausting the machine's memory.
    pub checking: tokio::sync::Semaphore,
    /// Sign-in with the school's accounts (`[web.oidc]`).
    oidc: oidc::Oidc,
}

impl Web {
    pub fn new(relay: Arc<Relay>) -> Arc<Self> {
        let config = relay.config();
        let loopback = config.web.listen.is_some_and(|a| a.ip().is_loopback());
        // With `insecure_http` on a network address the cookie cannot be Secure (the browser
        // would drop it and nobody could log in): that is the cost `serve` warns of.
        let secure = config.web.tls || (!loopback && !config.web.insecure_http);
        pages::set_zone(&config.school.timezone);
        Arc::new(Web {
            relay,
            sessions: Sessions::open(&config.storage),
            secure,
            checking: tokio::sync::Semaphore::new(PASSWORD_CHECKS),
            oidc: oidc::Oidc::default(),
        })
    }

    fn logins(&self) -> Logins {
        Logins::open(&self.relay.config().storage)
    }

    fn users(&self) -> Users {
        Users::open(&self.relay.config().storage)
    }

    fn quarantine(&self) -> Quarantine {
        Quarantine::open(&self.relay.config().storage)
    }

    /// The logged-in person behind the request's cookie, if any (their account must still
    /// exist: removing an account ends its sessions).
    async fn user(&self, headers: &HeaderMap) -> Option<User> {
        let id = auth::cookie_id(headers)?;
        let found = self.sessions.find(&id)?;
        let name = found.account?;
        if let Some(roles) = found.roles {
            // Signed in with the school's accounts: the roles the ID token gave.
            return Some(User::signed_in(name, roles, found.csrf, id));
        }
        let users = self.users();
        let lookup = name.clone();
        let account = tokio::task::spawn_blocking(move || users.get(&lookup))
            .await
            .ok()?;
        match account {
            Ok(Some(account)) => Some(User::from_account(&account, found.csrf, id)),
            Ok(None) => {
                self.sessions.end_all_of(&name);
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "web: the accounts could not be read");
                None
            }
        }
    }

    /// The person for a page (GET): without a session, to the login page; without `allowed`,
    /// 403.
    async fn page_user(
        &self,
        headers: &HeaderMap,
        allowed: impl Fn(&User) -> bool,
    ) -> Result<User, Response> {
        // A reload may have changed `[school] timezone`.
        pages::set_zone(&self.relay.config().school.timezone);
        match self.user(headers).await {
            None => Err(Redirect::to("/login").into_response()),
            Some(mut u) if allowed(&u) => {
                if u.sees_flags() {
                    u.unreviewed_cases = cases::unreviewed(self, &u.name).await;
                }
                Ok(u)
            }
            Some(u) => Err(pages::forbidden(Some(&u))),
        }
    }

    /// The person for a POST and its form: a session, `allowed`, and the session's CSRF token
    /// in the form; anything else is 403.
    async fn post_user(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        allowed: impl Fn(&User) -> bool,
    ) -> Result<(User, Form), Response> {
        let form = Form::parse(body);
        let Some(u) = self.user(headers).await else {
            return Err(pages::forbidden(None));
        };
        if !u.csrf_ok(form.get("csrf")) || !allowed(&u) {
            return Err(pages::forbidden(Some(&u)));
        }
        Ok((u, form))
    }
}

/// An `application/x-www-form-urlencoded` body (read whatever the content type says, so a
/// malformed post is refused by the CSRF check, not by a parser's error page).
#[derive(Debug, Default)]
pub(crate) struct Form(std::collections::HashMap<String, String>);

impl Form {
    pub(crate) fn parse(body: &[u8]) -> Form {
        Form(form_urlencoded::parse(body).into_owned().collect())
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// Every route of the web listener.
pub fn router(relay: Arc<Relay>) -> Router {
    let tls = relay.config().web.tls;
    let web = Web::new(relay);
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::spawn(oidc::discover_at_start(web.clone()));
    }
    Router::new()
        .route("/metrics", get(scrape))
        .route("/static/style.css", get(stylesheet))
        .route("/", get(home))
        .route("/login", get(login::page).post(login::submit))
        .route("/login/code", post(login::code))
        .route(oidc::START, get(oidc::start))
        .route(oidc::CALLBACK, get(oidc::callback))
        .route("/logout", post(login::logout))
        .route("/quarantine", get(quarantine_list::list))
        .route("/quarantine/bulk", post(quarantine_actions::bulk))
        .route("/quarantine/{id}", get(quarantine::show))
        .route("/quarantine/{id}/eml", get(quarantine::download))
        .route("/quarantine/{id}/release", post(quarantine::release))
        .route("/quarantine/{id}/delete", post(quarantine::delete))
        .route("/flags", get(cases::list))
        .route("/flags/{seq}", get(cases::show))
        .route("/flags/{seq}/evidence", get(cases::evidence))
        .route("/flags/{seq}/review", post(cases::review))
        .route("/flags/{seq}/reopen", post(cases::reopen))
        .route("/audit", get(safeguarding::audit))
        .route("/audit/export", get(safeguarding::export))
        .route("/undelivered", get(undelivered::list))
        .route("/release/{token}", get(release::page).post(release::submit))
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::map_response_with_state(tls, hsts))
        .with_state(web)
}

/// How long a browser that saw the page over HTTPS keeps to HTTPS for it (a year).
const HSTS: &str = "max-age=31536000";

/// Over TLS, `Strict-Transport-Security`: a browser that once reached the page over HTTPS
/// never again sends its password or cookie to it in clear. Not on plain HTTP (RFC 6797: a
/// browser ignores it there).
async fn hsts(State(tls): State<bool>, mut response: Response) -> Response {
    if tls {
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    response
}

/// The headers on every response (see the module's documentation).
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("style.css"),
    )
}

/// `/`: each person's first page.
async fn home(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    match web.user(&headers).await {
        None => Redirect::to("/login").into_response(),
        Some(u) => Redirect::to(login::landing(&u)).into_response(),
    }
}

async fn not_found(
    state: State<Arc<Web>>,
    peer: axum::extract::ConnectInfo<Peer>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let web = &state.0;
    // `[web.oidc] redirect_url` may name any path for the sign-in's way back.
    if oidc::is_callback(web, uri.path()) {
        return oidc::callback(state, peer, uri, headers).await;
    }
    match web.user(&headers).await {
        None => Redirect::to("/login").into_response(),
        Some(u) => pages::message(
            StatusCode::NOT_FOUND,
            Some(&u),
            "Not found",
            "There is no such page.",
        ),
    }
}

/// Serves [`router`] on `listener` (over TLS when `tls` is given) until `stop` turns true.
pub async fn serve(
    relay: Arc<Relay>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let stopped = async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    let app = router(relay).into_make_service_with_connect_info::<Peer>();
    let served = match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }
        Some(acceptor) => {
            axum::serve(TlsListener::new(listener, acceptor), app)
                .with_graceful_shutdown(stopped)
                .await
        }
    };
    if let Err(e) = served {
        tracing::error!(error = %e, "the web listener stopped");
    }
}

/// The client's address, for the audit records of logins (plain HTTP or HTTPS alike).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// HTTPS: TCP connections are accepted and their TLS handshakes run in their own tasks (so a
/// slow or silent client holds up nobody), and the finished ones are handed to axum.
struct TlsListener {
    ready: mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        SocketAddr,
    )>,
    local: SocketAddr,
}

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl TlsListener {
    fn new(listener: TcpListener, acceptor: TlsAcceptor) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "web: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "web: TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "web: TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { ready, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Some(conn) = self.ready.recv().await {
                return conn;
            }
            // The accepting task has ended: nothing will come again.
            std::future::pending::<()>().await;
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Whether `client` may read `/metrics`: it is in `[web] metrics_allowed_clients` (default
/// loopback), or it gave `[web] metrics_token_file`'s token as `Authorization: Bearer`.
fn may_scrape(web: &Web, client: std::net::IpAddr, headers: &HeaderMap) -> bool {
    let config = web.relay.config();
    let client = client.to_canonical();
    if config
        .web
        .metrics_clients()
        .iter()
        .any(|n| n.contains(&client))
    {
        return true;
    }
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return false;
    };
    match config.metrics_token() {
        Ok(Some(token)) => same_token(given.as_bytes(), token.as_bytes()),
        Ok(None) => false,
        Err(e) => {
            tracing::error!(error = %e, "metrics: the token could not be read; refused");
            false
        }
    }
}

/// `a == b` in time that does not depend on where they differ.
fn same_token(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// `GET /metrics`: for the clients [`may_scrape`] allows; 403 for anyone else (the counts
/// per safeguarding rule are not for the whole network).
async fn scrape(
    State(web): State<Arc<Web>>,
    axum::extract::ConnectInfo(Peer(peer)): axum::extract::ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    if !may_scrape(&web, peer.ip(), &headers) {
        tracing::info!(client = %peer.ip(), "metrics: refused (not in [web] metrics_allowed_clients, no valid token)");
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "403: this client may not read the metrics; add it to [web] metrics_allowed_clients, or send the token of [web] metrics_token_file as Authorization: Bearer\n",
        )
            .into_response();
    }
    let q = web.quarantine();
    let quarantine = tokio::task::spawn_blocking(move || {
        q.list("held").map(|held| QuarantineSize {
            messages: held.len() as u64,
            bytes: held.iter().map(|h| h.size).sum(),
        })
    })
    .await;
    let quarantine = match quarantine {
        Ok(Ok(size)) => Some(size),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics: the quarantine could not be read");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: the quarantine could not be read");
            None
        }
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        web.relay.metrics.render(quarantine),
    )
        .into_response()
}
