//! Sign-in with the school's accounts (`[web.oidc]`): OpenID Connect's authorization code flow
//! with PKCE (S256), against Microsoft Entra ID, Google Workspace or any certified provider.
//!
//! - The provider's discovery document is read at start (and again at a sign-in while it could
//!   not be, or after a day, or when the config changed). While it cannot be read, the gateway
//!   runs, local accounts log in, and "Sign in with …" says why it cannot.
//! - `GET /login/oidc` keeps a random `state`, `nonce` and PKCE verifier for this browser (a
//!   `SameSite=Lax` cookie names the browser: the provider's redirect back is a cross-site
//!   navigation, on which the strict session cookie is not sent) and sends the browser to the
//!   provider's `authorization_endpoint`.
//! - The callback (the path of `redirect_url`) takes the flow its `state` names, once, only
//!   from the browser that started it and within 10 minutes; exchanges the code (with the
//!   verifier and the client secret); and has the `openidconnect` crate check the ID token: its
//!   signature against the provider's JWKS (fetched at each sign-in, so rotated keys are
//!   picked up), `iss`, `aud`, `exp` and the `nonce`. With `hosted_domain`, `hd` must match.
//! - What the person may do comes only from `roles`: group object IDs or app-role values found
//!   in the ID token's `groups`/`roles` claims, or email addresses matching a verified `email`
//!   claim. Someone who matches none is refused, and that is audited.
//! - The session is then like a local one (CSRF token, 8 hours idle), with the roles fixed at
//!   sign-in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthenticationFlow, AuthorizationCode, ClaimsVerificationError, Client,
    ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IdTokenFields, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RequestTokenError, Scope, StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::auth::{self, User};
use super::login::{self, landing};
use super::{Web, pages};
use crate::config;
use crate::store::RecordKind;
use crate::store::users::Role;

/// Where "Sign in with …" points.
pub const START: &str = "/login/oidc";
/// The callback's path when `redirect_url` has the usual one (any other path works too).
pub const CALLBACK: &str = "/login/oidc/callback";
/// The cookie that names the browser a sign-in was started from.
const FLOW_COOKIE: &str = "schoolgate_oidc";
/// How long a started sign-in may take.
const FLOW_FOR: Duration = Duration::from_secs(10 * 60);
/// Past this many started sign-ins, stale ones are swept; past twice this, the oldest go.
const MAX_FLOWS: usize = 5_000;
/// How long a discovery document is used before it is read again.
const REDISCOVER_AFTER: Duration = Duration::from_secs(24 * 3600);
/// How long one request to the provider may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// The claims beyond the standard ones that decide roles.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SchoolClaims {
    /// Entra ID: group object IDs (when the app registration emits groups).
    #[serde(default)]
    groups: Vec<String>,
    /// Entra ID: app-role values assigned to the person.
    #[serde(default)]
    roles: Vec<String>,
    /// Google Workspace: the hosted domain.
    #[serde(default)]
    hd: Option<String>,
    /// Entra ID's sign that the groups did not fit (over 200): `{"groups": "src1"}`.
    #[serde(default, rename = "_claim_names")]
    claim_names: Option<serde_json::Value>,
    #[serde(default)]
    hasgroups: Option<bool>,
}

impl AdditionalClaims for SchoolClaims {}

type SchoolTokenResponse = StandardTokenResponse<
    IdTokenFields<
        SchoolClaims,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;

type SchoolClient = Client<
    SchoolClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    SchoolTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A discovery document, for the config section it was read for.
#[derive(Clone)]
struct Discovered {
    config: config::Oidc,
    metadata: CoreProviderMetadata,
    at: Instant,
}

/// A sign-in started and not finished.
struct Flow {
    /// SHA-256 of the browser's flow cookie.
    browser: [u8; 32],
    nonce: String,
    verifier: String,
    config: config::Oidc,
    started: Instant,
}

/// The provider, as far as it is known, and the sign-ins under way.
#[derive(Default)]
pub struct Oidc {
    discovered: tokio::sync::Mutex<Option<Discovered>>,
    /// By `state`.
    flows: Mutex<HashMap<String, Flow>>,
    http: std::sync::OnceLock<Result<reqwest::Client, String>>,
}

impl Oidc {
    fn http(&self) -> Result<reqwest::Client, String> {
        self.http
            .get_or_init(|| {
                reqwest::Client::builder()
                    // The provider's answers are used as they come: a redirect is not followed
                    // (it could lead a token request anywhere).
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(HTTP_TIMEOUT)
                    .connect_timeout(Duration::from_secs(5))
                    .build()
                    .map_err(|e| format!("cannot set up HTTPS: {e}"))
            })
            .clone()
    }

    fn flows(&self) -> std::sync::MutexGuard<'_, HashMap<String, Flow>> {
        match self.flows.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The discovery document for `c`, read now if it is not known (or old, or for another
    /// config).
    async fn metadata(&self, c: &config::Oidc) -> Result<CoreProviderMetadata, String> {
        let mut known = self.discovered.lock().await;
        if let Some(d) = known.as_ref()
            && d.config == *c
            && d.at.elapsed() < REDISCOVER_AFTER
        {
            return Ok(d.metadata.clone());
        }
        let metadata = discover(&self.http()?, c).await?;
        *known = Some(Discovered {
            config: c.clone(),
            metadata: metadata.clone(),
            at: Instant::now(),
        });
        Ok(metadata)
    }

    fn keep_flow(&self, state: String, flow: Flow) {
        let mut flows = self.flows();
        if flows.len() >= MAX_FLOWS {
            flows.retain(|_, f| f.started.elapsed() <= FLOW_FOR);
        }
        if flows.len() >= 2 * MAX_FLOWS {
            flows.clear();
        }
        flows.insert(state, flow);
    }

    /// Takes (once) the flow `state` names, if `browser` started it within [`FLOW_FOR`].
    fn take_flow(&self, state: &str, browser: Option<&str>) -> Option<Flow> {
        let mut flows = self.flows();
        let flow = flows.get(state)?;
        let same_browser =
            browser.is_some_and(|b| auth::same(&Sha256::digest(b.as_bytes()), &flow.browser));
        if !same_browser {
            // Not removed: a forged callback must not cancel the real person's sign-in.
            return None;
        }
        let flow = flows.remove(state)?;
        (flow.started.elapsed() <= FLOW_FOR).then_some(flow)
    }
}

/// The issuer's discovery document (`/.well-known/openid-configuration`), without its keys.
async fn discover(
    http: &reqwest::Client,
    c: &config::Oidc,
) -> Result<CoreProviderMetadata, String> {
    let issuer = c
        .issuer
        .trim()
        .trim_end_matches("/.well-known/openid-configuration")
        .trim_end_matches('/');
    let url = format!("{issuer}/.well-known/openid-configuration");
    let response = http
        .get(&url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("cannot read {url}: {}", error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(format!("{url} answered HTTP {}", response.status()));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("cannot read {url}: {}", error_chain(&e)))?;
    let mut doc: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("{url} is not a discovery document (JSON): {e}"))?;
    // Fields every provider has, but a minimal document may leave out: the values this
    // gateway uses anyway.
    if let Some(o) = doc.as_object_mut() {
        o.entry("response_types_supported")
            .or_insert_with(|| serde_json::json!(["code"]));
        o.entry("subject_types_supported")
            .or_insert_with(|| serde_json::json!(["public"]));
        o.entry("id_token_signing_alg_values_supported")
            .or_insert_with(|| serde_json::json!(["RS256"]));
    }
    let metadata: CoreProviderMetadata = serde_json::from_value(doc)
        .map_err(|e| format!("{url} is not a usable discovery document: {e}"))?;
    let said = metadata.issuer().as_str().trim_end_matches('/');
    if said != issuer {
        return Err(format!(
            "{url} says its issuer is {said}, not {issuer}: set [web.oidc] issuer to {said}"
        ));
    }
    Ok(metadata)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Reads the discovery document at start, so a problem shows in the log at once.
pub async fn discover_at_start(web: Arc<Web>) {
    let Some(c) = web.relay.config().web.oidc.clone() else {
        return;
    };
    if c.roles.values().all(|v| v.is_empty()) {
        tracing::warn!(
            "web: [web.oidc] roles gives no role to anyone, so every sign-in with the school's \
             accounts is refused; list group object IDs, app roles or addresses, e.g. roles = \
             {{ network-manager = [\"GROUP-OBJECT-ID\"], dsl = [\"Schoolgate.DSL\"] }}"
        );
    }
    if let Some(file) = &c.client_secret_file
        && let Err(e) = std::fs::read(file)
    {
        tracing::error!(
            "web: [web.oidc] client_secret_file {}: cannot read it ({e}); sign-in with the \
             school's accounts fails until it can be read; local accounts log in",
            file.display()
        );
    }
    match web.oidc.metadata(&c).await {
        Ok(m) => tracing::info!(
            issuer = %m.issuer().as_str(),
            "web: {} is ready (OpenID Connect discovery read)",
            label_of(&c)
        ),
        Err(e) => tracing::error!(
            "web: {} is not available: {e}. The gateway runs and local accounts log in; the \
             discovery document is read again at the next sign-in. Check [web.oidc] issuer and \
             that this server reaches it over HTTPS",
            label_of(&c)
        ),
    }
}

/// "Sign in with Microsoft", "… Google", or "… HOST".
fn label_of(c: &config::Oidc) -> String {
    if let Some(name) = c.name.as_deref().filter(|n| !n.trim().is_empty()) {
        return format!("Sign in with {}", name.trim());
    }
    let host = openidconnect::url::Url::parse(c.issuer.trim())
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    let who = match host.as_str() {
        "login.microsoftonline.com" | "login.microsoft.com" | "sts.windows.net" => "Microsoft",
        "accounts.google.com" => "Google",
        h => h,
    };
    format!("Sign in with {who}")
}

/// The login page's button, when `[web.oidc]` is set.
pub fn button_label(web: &Web) -> Option<String> {
    web.relay.config().web.oidc.as_ref().map(label_of)
}

/// The path the provider sends the browser back to.
pub fn callback_path(c: &config::Oidc) -> Option<String> {
    openidconnect::url::Url::parse(c.redirect_url.trim())
        .ok()
        .map(|u| u.path().to_string())
}

fn flow_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == FLOW_COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn random_hex() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

/// A page that says why signing in did not work, with the way back.
fn refused(status: StatusCode, title: &str, text: &str) -> Response {
    pages::page(
        status,
        title,
        None,
        html! {
            h1 { (title) }
            p.error role="alert" { (text) }
            p { a href="/login" { "Back to the login page" } }
        },
    )
}

/// `GET /login/oidc`: off to the provider.
pub async fn start(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    if let Some(u) = web.user(&headers).await {
        return Redirect::to(landing(&u)).into_response();
    }
    let Some(c) = web.relay.config().web.oidc.clone() else {
        return refused(
            StatusCode::NOT_FOUND,
            "No sign-in with the school's accounts",
            "This gateway has no [web.oidc] section: log in with a schoolgate account.",
        );
    };
    let label = label_of(&c);
    let metadata = match web.oidc.metadata(&c).await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!("web: {label} is not available: {e}");
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("{label} is not available now"),
                &format!(
                    "The gateway cannot reach the sign-in service ({e}). Log in with a schoolgate account meanwhile, or ask the network manager to check [web.oidc] issuer and this server's connection to it."
                ),
            );
        }
    };
    let Ok(redirect) = RedirectUrl::new(c.redirect_url.trim().to_string()) else {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in is misconfigured",
            "[web.oidc] redirect_url is not a URL; ask the network manager.",
        );
    };
    let client: SchoolClient = Client::from_provider_metadata(
        metadata,
        ClientId::new(c.client_id.trim().to_string()),
        None,
    )
    .set_redirect_uri(redirect);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let browser = match flow_cookie(&headers).or_else(random_hex) {
        Some(b) => b,
        None => return login::unavailable(),
    };
    web.oidc.keep_flow(
        state.secret().clone(),
        Flow {
            browser: Sha256::digest(browser.as_bytes()).into(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            config: c,
            started: Instant::now(),
        },
    );
    let mut r = Redirect::to(url.as_str()).into_response();
    login::set_cookie(
        &mut r,
        &format!(
            "{FLOW_COOKIE}={browser}; HttpOnly; SameSite=Lax; Path=/; Max-Age={}{}",
            FLOW_FOR.as_secs(),
            if web.secure { "; Secure" } else { "" }
        ),
    );
    r
}

/// Whether `path` is where `[web.oidc] redirect_url` sends the browser back.
pub fn is_callback(web: &Web, path: &str) -> bool {
    web.relay
        .config()
        .web
        .oidc
        .as_ref()
        .and_then(callback_path)
        .is_some_and(|p| p == path)
}

/// The provider's redirect back, at `/login/oidc/callback` or wherever `redirect_url` says.
pub async fn callback(
    State(web): State<Arc<Web>>,
    ConnectInfo(super::Peer(peer)): ConnectInfo<super::Peer>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let from = peer.ip();
    let params: HashMap<String, String> = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let Some(c) = web.relay.config().web.oidc.clone() else {
        return refused(
            StatusCode::NOT_FOUND,
            "No sign-in with the school's accounts",
            "This gateway has no [web.oidc] section: log in with a schoolgate account.",
        );
    };
    let label = label_of(&c);
    let state = params.get("state").map(String::as_str).unwrap_or("");
    let Some(flow) = web.oidc.take_flow(state, flow_cookie(&headers).as_deref()) else {
        tracing::warn!(%from, "web: a sign-in came back that this browser did not start here (unknown, used or forged state, or over 10 minutes old)");
        return refused(
            StatusCode::FORBIDDEN,
            "Sign-in not accepted",
            "This sign-in was not started from this browser here, was used already, or took over 10 minutes. Start again from the login page.",
        );
    };
    if let Some(error) = params.get("error") {
        let described = params
            .get("error_description")
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        tracing::warn!(%from, error, "web: the provider ended the sign-in{described}");
        return refused(
            StatusCode::FORBIDDEN,
            "Sign-in not completed",
            &format!(
                "The sign-in service said: {error}{described}. Start again, or ask the network manager."
            ),
        );
    }
    let Some(code) = params.get("code").filter(|c| !c.is_empty()) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "Sign-in not completed",
            "The sign-in service sent no code back. Start again from the login page.",
        );
    };
    if flow.config != c {
        return refused(
            StatusCode::FORBIDDEN,
            "Sign-in not accepted",
            "The gateway's sign-in settings changed meanwhile. Start again from the login page.",
        );
    }
    match finish(&web, &c, flow, code).await {
        Ok(signed_in) => {
            let roles: Vec<&str> = signed_in.roles.iter().map(|r| r.as_str()).collect();
            login::audit(
                &web,
                RecordKind::Login,
                &signed_in.name,
                format!(
                    "web login by {} from {from} with {} (OpenID Connect, issuer {}, subject {}): roles {}",
                    signed_in.name,
                    label.trim_start_matches("Sign in with "),
                    signed_in.issuer,
                    signed_in.subject,
                    roles.join(", ")
                ),
            )
            .await;
            if let Some(old) = auth::cookie_id(&headers) {
                web.sessions.end(&old);
            }
            let Some((id, csrf)) = web
                .sessions
                .create_signed_in(signed_in.name.clone(), signed_in.roles.clone())
            else {
                return login::unavailable();
            };
            let user = User::signed_in(signed_in.name, signed_in.roles, csrf, id.clone());
            let to = landing(&user);
            // A page, not a redirect: this response ends a navigation that came from the
            // provider's site, and the browser sends the strict session cookie only on a
            // navigation that starts here.
            let mut r = pages::page(
                StatusCode::OK,
                "Signed in",
                None,
                html! {
                    meta http-equiv="refresh" content={ "0;url=" (to) };
                    h1 { "Signed in" }
                    p { "Signed in as " strong { (user.name) } ". " a #continue href=(to) { "Continue" } }
                },
            );
            login::set_cookie(&mut r, &auth::set_cookie(&id, web.secure));
            login::set_cookie(
                &mut r,
                &format!(
                    "{FLOW_COOKIE}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0{}",
                    if web.secure { "; Secure" } else { "" }
                ),
            );
            r
        }
        Err(no) => {
            tracing::warn!(%from, reason = %no.log, "web: {label} refused");
            if let Some(detail) = no.audit {
                login::audit(
                    &web,
                    RecordKind::LoginFailed,
                    &no.actor,
                    format!(
                        "web sign-in with {} refused from {from}: {detail}",
                        label.trim_start_matches("Sign in with ")
                    ),
                )
                .await;
            }
            refused(no.status, &no.title, &no.text)
        }
    }
}

/// Someone the provider vouched for, with the roles the config gives them.
struct SignedIn {
    name: String,
    subject: String,
    issuer: String,
    roles: Vec<Role>,
}

/// Why a sign-in was refused: for the person, the log and (when there was a real ID token or
/// person behind it) the audit trail.
struct No {
    status: StatusCode,
    title: String,
    text: String,
    log: String,
    actor: String,
    audit: Option<String>,
}

impl No {
    fn new(status: StatusCode, text: impl Into<String>, log: impl Into<String>) -> No {
        No {
            status,
            title: "Sign-in not accepted".into(),
            text: text.into(),
            log: log.into(),
            actor: "(sign-in)".into(),
            audit: None,
        }
    }

    fn audited(mut self, actor: &str, detail: String) -> No {
        self.actor = actor.to_string();
        self.audit = Some(detail);
        self
    }
}

/// Exchanges the code and checks the ID token.
async fn finish(web: &Web, c: &config::Oidc, flow: Flow, code: &str) -> Result<SignedIn, No> {
    let unavailable = |log: String| {
        No::new(
            StatusCode::BAD_GATEWAY,
            "The gateway could not finish the sign-in with the sign-in service. Try again in a minute, or log in with a schoolgate account; the network manager finds the reason in the gateway's log.",
            log,
        )
    };
    let http = web.oidc.http().map_err(unavailable)?;
    let metadata = web.oidc.metadata(c).await.map_err(unavailable)?;
    let secret = match &c.client_secret_file {
        None => None,
        Some(file) => {
            let secret = std::fs::read_to_string(file).map_err(|e| {
                unavailable(format!(
                    "[web.oidc] client_secret_file {}: cannot read it: {e}",
                    file.display()
                ))
            })?;
            let secret = secret.trim().to_string();
            if secret.is_empty() {
                return Err(unavailable(format!(
                    "[web.oidc] client_secret_file {} is empty: put the client secret in it",
                    file.display()
                )));
            }
            Some(ClientSecret::new(secret))
        }
    };
    // The keys at each sign-in: a provider that rotated them is followed at once.
    let jwks = CoreJsonWebKeySet::fetch_async(metadata.jwks_uri(), &http)
        .await
        .map_err(|e| {
            unavailable(format!(
                "cannot read the signing keys at {}: {}",
                metadata.jwks_uri().as_str(),
                error_chain(&e)
            ))
        })?;
    let metadata = metadata.set_jwks(jwks);
    let redirect = RedirectUrl::new(c.redirect_url.trim().to_string())
        .map_err(|e| unavailable(format!("[web.oidc] redirect_url: {e}")))?;
    let client: SchoolClient = Client::from_provider_metadata(
        metadata,
        ClientId::new(c.client_id.trim().to_string()),
        secret,
    )
    .set_redirect_uri(redirect);
    let request = client
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .map_err(|e| unavailable(format!("the discovery document has no token endpoint: {e}")))?;
    let tokens = request
        .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier))
        .request_async(&http)
        .await
        .map_err(|e| match e {
            RequestTokenError::ServerResponse(r) => No::new(
                StatusCode::FORBIDDEN,
                "The sign-in service did not accept this sign-in's code (it was used already, or is too old). Start again from the login page.",
                format!(
                    "the token endpoint refused the code: {}{}",
                    r.error(),
                    r.error_description().map(|d| format!(": {d}")).unwrap_or_default()
                ),
            ),
            other => unavailable(format!("the token request failed: {}", error_chain(&other))),
        })?;
    let Some(id_token) = tokens.id_token() else {
        return Err(unavailable("the token endpoint sent no ID token".into()));
    };
    let verifier = client.id_token_verifier();
    let nonce = Nonce::new(flow.nonce);
    let claims = id_token.claims(&verifier, &nonce).map_err(|e| {
        let why = match &e {
            ClaimsVerificationError::Expired(_) => "the ID token has expired".to_string(),
            ClaimsVerificationError::InvalidAudience(_) => {
                "the ID token is for another application (aud is not our client_id)".to_string()
            }
            ClaimsVerificationError::InvalidIssuer(_) => {
                "the ID token is from another issuer".to_string()
            }
            ClaimsVerificationError::InvalidNonce(_) => {
                "the ID token's nonce is not this sign-in's".to_string()
            }
            ClaimsVerificationError::SignatureVerification(_) => {
                "the ID token's signature does not verify against the issuer's keys".to_string()
            }
            other => format!("the ID token is not valid: {other}"),
        };
        No::new(
            StatusCode::FORBIDDEN,
            format!("The sign-in could not be trusted: {why}. Start again; if it happens again, tell the network manager."),
            format!("{why}: {}", error_chain(&e)),
        )
        .audited("(sign-in)", why)
    })?;
    let extra = claims.additional_claims();
    let subject = claims.subject().as_str().to_string();
    let verified_email = claims
        .email()
        .filter(|_| claims.email_verified() == Some(true))
        .map(|e| e.as_str().to_string());
    let name = verified_email
        .clone()
        .or_else(|| claims.preferred_username().map(|u| u.as_str().to_string()))
        .or_else(|| claims.email().map(|e| e.as_str().to_string()))
        .unwrap_or_else(|| subject.clone());
    if let Some(domain) = c.hosted_domain.as_deref().map(str::trim) {
        let hd = extra.hd.as_deref().unwrap_or("");
        if !hd.eq_ignore_ascii_case(domain) {
            let why = if hd.is_empty() {
                format!(
                    "the account is not in the school's Google Workspace domain {domain} (no hd claim)"
                )
            } else {
                format!("the account's domain {hd} is not the school's ({domain})")
            };
            return Err(No::new(
                StatusCode::FORBIDDEN,
                format!("{name} may not use schoolgate: {why}. Sign in with your school account."),
                why.clone(),
            )
            .audited(&name, format!("{name} (subject {subject}): {why}")));
        }
    }
    let roles = roles_for(c, &extra.groups, &extra.roles, verified_email.as_deref());
    if roles.is_empty() {
        let overage = extra.hasgroups == Some(true)
            || extra
                .claim_names
                .as_ref()
                .is_some_and(|n| n.get("groups").is_some());
        let why = if overage {
            "in none of the groups or app roles [web.oidc] roles lists; the ID token carries no groups because the account is in more than 200 (Entra ID's limit): give the role through an app role instead".to_string()
        } else {
            "in none of the groups, app roles or addresses [web.oidc] roles lists".to_string()
        };
        return Err(No {
            title: "Not allowed".into(),
            ..No::new(
                StatusCode::FORBIDDEN,
                format!("{name} may not use schoolgate: the account is {why}. Ask the network manager if you should."),
                why.clone(),
            )
            .audited(&name, format!("{name} (subject {subject}) is {why}"))
        });
    }
    Ok(SignedIn {
        name,
        subject,
        issuer: claims.issuer().as_str().to_string(),
        roles,
    })
}

/// The roles `[web.oidc] roles` gives someone with these claims. Email entries match only a
/// verified email address (Entra ID's `email` claim is not verified, so use groups or app roles
/// there).
pub fn roles_for(
    c: &config::Oidc,
    groups: &[String],
    app_roles: &[String],
    verified_email: Option<&str>,
) -> Vec<Role> {
    let mut out: Vec<Role> = c
        .roles
        .iter()
        .filter(|(_, values)| {
            values.iter().any(|v| {
                let v = v.trim();
                groups.iter().any(|g| g == v)
                    || app_roles.iter().any(|r| r == v)
                    || (v.contains('@')
                        && verified_email.is_some_and(|e| e.eq_ignore_ascii_case(v)))
            })
        })
        .filter_map(|(role, _)| role.parse().ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oidc(issuer: &str) -> config::Oidc {
        config::Oidc {
            issuer: issuer.into(),
            client_id: "schoolgate".into(),
            client_secret_file: Some("/etc/schoolgate/oidc-secret".into()),
            redirect_url: "https://gw.school.org.uk/auth/back".into(),
            roles: [
                (
                    "network-manager".to_string(),
                    vec!["0b4c6a7e-group".to_string(), "it@school.org.uk".to_string()],
                ),
                (
                    "dsl".to_string(),
                    vec![
                        "Schoolgate.DSL".to_string(),
                        "Dsl@School.org.uk".to_string(),
                    ],
                ),
            ]
            .into_iter()
            .collect(),
            hosted_domain: None,
            name: None,
        }
    }

    #[test]
    fn the_button_names_the_provider() {
        assert_eq!(
            label_of(&oidc("https://login.microsoftonline.com/abc/v2.0")),
            "Sign in with Microsoft"
        );
        assert_eq!(
            label_of(&oidc("https://accounts.google.com")),
            "Sign in with Google"
        );
        assert_eq!(
            label_of(&oidc("https://idp.trust.org.uk/realms/x")),
            "Sign in with idp.trust.org.uk"
        );
        let mut named = oidc("https://idp.trust.org.uk");
        named.name = Some("the Trust".into());
        assert_eq!(label_of(&named), "Sign in with the Trust");
        assert_eq!(
            callback_path(&oidc("https://x")).as_deref(),
            Some("/auth/back")
        );
    }

    #[test]
    fn roles_come_only_from_the_configured_claims() {
        let c = oidc("https://accounts.google.com");
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            roles_for(&c, &s(&["other", "0b4c6a7e-group"]), &[], None),
            vec![Role::NetworkManager]
        );
        assert_eq!(
            roles_for(&c, &[], &s(&["Schoolgate.DSL"]), None),
            vec![Role::Dsl]
        );
        assert_eq!(
            roles_for(&c, &[], &[], Some("dsl@school.org.uk")),
            vec![Role::Dsl],
            "emails match whatever their case"
        );
        assert_eq!(
            roles_for(&c, &s(&["0b4c6a7e-group"]), &s(&["Schoolgate.DSL"]), None),
            vec![Role::NetworkManager, Role::Dsl]
        );
        assert!(roles_for(&c, &s(&["0b4c6a7e-GROUP"]), &s(&["schoolgate.dsl"]), None).is_empty());
        assert!(roles_for(&c, &[], &[], Some("head@school.org.uk")).is_empty());
        assert!(
            !roles_for(&c, &s(&["it@school.org.uk"]), &[], None).is_empty(),
            "a group named like an address is still a group"
        );
    }

    #[test]
    fn a_flow_is_taken_once_and_only_by_its_browser() {
        let o = Oidc::default();
        let flow = |browser: &str| Flow {
            browser: Sha256::digest(browser.as_bytes()).into(),
            nonce: "n".into(),
            verifier: "v".into(),
            config: oidc("https://accounts.google.com"),
            started: Instant::now(),
        };
        o.keep_flow("state-1".into(), flow("browser-a"));
        assert!(o.take_flow("state-1", Some("browser-b")).is_none());
        assert!(o.take_flow("state-1", None).is_none());
        assert!(o.take_flow("forged", Some("browser-a")).is_none());
        assert!(o.take_flow("state-1", Some("browser-a")).is_some());
        assert!(o.take_flow("state-1", Some("browser-a")).is_none(), "once");
    }
}
