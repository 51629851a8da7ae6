//! `GET/POST /login`, `POST /login/code` (the TOTP code of an account that has one) and
//! `POST /logout`. Signing in with the school's accounts is `oidc`'s.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::auth::{self, FORGET_FAILURES_AFTER, Found, LOCK_AFTER, LOCK_FOR, User};
use super::{Form, Web, pages, totp};
use crate::store::logins::{Attempt, Failed, Limits};
use crate::store::users::{Account, Role};
use crate::store::{AuditRecord, RecordKind};

/// Where a person lands after logging in.
pub fn landing(u: &User) -> &'static str {
    if u.is(Role::NetworkManager) || !u.is(Role::Dsl) {
        "/quarantine"
    } else {
        "/flags"
    }
}

/// What every refused login says, whatever the reason (an unknown name, a wrong password, a
/// lock): the page must not tell which accounts exist or which are locked.
pub const REFUSED: &str = "wrong name or password. After 5 failed logins in a row from one \
    computer, that name is locked there for 15 minutes: wait, log in from another computer, or \
    ask the network manager to set a new password (schoolgate user passwd).";

fn login_form(web: &Web, csrf: &str, name: &str, error: Option<&str>) -> maud::Markup {
    let sign_in_with = super::oidc::button_label(web);
    html! {
        section.login {
            h1 { "Log in" }
            @if let Some(e) = error {
                p.error role="alert" { (e) }
            }
            @if let Some(label) = sign_in_with {
                p.sso {
                    a #sign-in-oidc .button href=(super::oidc::START) { (label) }
                }
                p.hint { "Or log in with a schoolgate account:" }
            }
            form #login method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                label for="name" { "Name" }
                input #name type="text" name="name" value=(name) autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button type="submit" { "Log in" }
            }
        }
    }
}

fn code_form(csrf: &str, error: Option<&str>) -> maud::Markup {
    html! {
        section.login {
            h1 { "Log in: code" }
            @if let Some(e) = error {
                p.error role="alert" { (e) }
            }
            form #login-code method="post" action="/login/code" {
                input type="hidden" name="csrf" value=(csrf);
                label for="code" { "The 6-digit code from your authenticator app" }
                input #code type="text" name="code" inputmode="numeric" pattern="[0-9 ]*" autocomplete="one-time-code" required autofocus;
                button type="submit" { "Log in" }
            }
        }
    }
}

/// The login page's session for this browser (made if it has none); `None` when the OS gave no
/// random numbers.
fn login_session(web: &Web, headers: &HeaderMap) -> Option<(String, String)> {
    let existing = auth::cookie_id(headers)
        .and_then(|id| web.sessions.find(&id).map(|f| (id, f)))
        .filter(|(_, f)| f.account.is_none());
    match existing {
        Some((id, f)) => Some((id, f.csrf)),
        None => web.sessions.create(None),
    }
}

/// `GET /login`: the form, with a session that has no account yet (for its CSRF token).
pub async fn page(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    if let Some(u) = web.user(&headers).await {
        return Redirect::to(landing(&u)).into_response();
    }
    let Some((id, csrf)) = login_session(&web, &headers) else {
        return unavailable();
    };
    let mut r = pages::page(
        StatusCode::OK,
        "Log in",
        None,
        login_form(&web, &csrf, "", None),
    );
    set_cookie(&mut r, &auth::set_cookie(&id, web.secure));
    r
}

pub(super) fn unavailable() -> Response {
    pages::message(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "Cannot log in now",
        "The server could not make a session (no random numbers from the operating system). Try again in a minute; if it persists, see the gateway's log.",
    )
}

fn unreadable() -> Response {
    pages::message(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "Cannot log in now",
        "The accounts could not be read; see the gateway's log.",
    )
}

pub(super) fn set_cookie(r: &mut Response, value: &str) {
    if let Ok(v) = value.parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

pub(super) async fn audit(web: &Web, kind: RecordKind, actor: &str, detail: String) {
    let record = AuditRecord::action(kind, actor, detail);
    if let Err(e) = web.relay.audit.append(record).await {
        tracing::error!(error = %e, "web: a login could not be audited");
    }
}

fn limits() -> Limits {
    Limits {
        lock_after: LOCK_AFTER,
        lock_for: LOCK_FOR.as_secs() as i64,
        forget_after: FORGET_FAILURES_AFTER.as_secs() as i64,
    }
}

fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Counts the start of a login attempt by `name` from `from` (a password or a code): go, after
/// how long a wait, or locked. `None` when the failed logins cannot be read (logged).
async fn begin_attempt(web: &Web, name: &str, from: IpAddr) -> Option<Attempt> {
    let logins = web.logins();
    let (who, client) = (name.to_string(), from.to_string());
    match blocking(web, move || {
        logins.begin(&who, &client, unix_now(), limits())
    })
    .await
    {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::error!(error = %e, "web: the failed logins could not be read");
            None
        }
    }
}

/// Runs `f` on the blocking pool (SQLite, argon2), a few at a time.
async fn blocking<T: Send + 'static>(
    web: &Web,
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, String> {
    let Ok(_permit) = web.checking.acquire().await else {
        return Err("the server is stopping".into());
    };
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The login page's session named by the request's cookie, once its CSRF token matches the
/// form's.
fn checked_login_session(headers: &HeaderMap, web: &Web, form: &Form) -> Option<(String, Found)> {
    let id = auth::cookie_id(headers)?;
    let found = web.sessions.find(&id)?;
    form.get("csrf")
        .is_some_and(|t| auth::same(t.as_bytes(), found.csrf.as_bytes()))
        .then_some((id, found))
}

/// What checking a password found.
enum Checked {
    Good(Account),
    Unknown,
    Wrong,
}

/// A logged-in session for `account`: the login page's session ends, a new one begins, the
/// login is audited, and the person goes to their first page.
async fn logged_in(
    web: &Web,
    old_id: &str,
    account: &Account,
    from: IpAddr,
    how: &str,
) -> Response {
    web.sessions.end(old_id);
    let Some((new_id, csrf)) = web.sessions.create(Some(account.name.clone())) else {
        return unavailable();
    };
    audit(
        web,
        RecordKind::Login,
        &account.name,
        format!("web login by {} from {from}{how}", account.name),
    )
    .await;
    let user = User::from_account(account, csrf, new_id.clone());
    let mut r = Redirect::to(landing(&user)).into_response();
    set_cookie(&mut r, &auth::set_cookie(&new_id, web.secure));
    r
}

/// Counts a failed attempt of `name` from `from`; audits the lock it set, if it set one (and
/// then says true).
async fn failed(web: &Web, name: &str, from: IpAddr, why: &str) -> bool {
    let logins = web.logins();
    let (who, client) = (name.to_string(), from.to_string());
    let outcome = blocking(web, move || {
        logins.failed(&who, &client, unix_now(), limits())
    })
    .await;
    audit(
        web,
        RecordKind::LoginFailed,
        name,
        format!("web login failed for {name:?} from {from}: {why}"),
    )
    .await;
    match outcome {
        Ok(Failed::LockedNow { .. }) => {
            tracing::warn!(name, %from, "web: {LOCK_AFTER} failed logins in a row; that name is locked from that address");
            audit(
                web,
                RecordKind::LoginFailed,
                name,
                format!(
                    "web login locked for {name:?} from {from}: {LOCK_AFTER} failed logins in a row; locked from that address for {} minutes (other addresses are not locked)",
                    LOCK_FOR.as_secs() / 60
                ),
            )
            .await;
            true
        }
        Ok(Failed::Counted) => false,
        Err(e) => {
            tracing::error!(error = %e, "web: a failed login could not be counted");
            false
        }
    }
}

/// `POST /login`.
pub async fn submit(
    State(web): State<Arc<Web>>,
    ConnectInfo(super::Peer(peer)): ConnectInfo<super::Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let Some((id, found)) = checked_login_session(&headers, &web, &form) else {
        return pages::forbidden(None);
    };
    let name = form.get("name").unwrap_or("").trim().to_string();
    let password = form.get("password").unwrap_or("").to_string();
    let from = peer.ip();
    let again = |error: &str| {
        pages::page(
            StatusCode::OK,
            "Log in",
            None,
            login_form(&web, &found.csrf, &name, Some(error)),
        )
    };

    let Some(attempt) = begin_attempt(&web, &name, from).await else {
        return unreadable();
    };
    let before = match attempt {
        Attempt::Go { before } => before,
        Attempt::Locked { .. } => {
            // As long as a wrong password takes, and the same answer; not audited again (the
            // lock was, once).
            let _ = blocking(&web, move || {
                auth::verify_password(&password, auth::decoy_hash());
                Ok(())
            })
            .await;
            tracing::info!(%name, %from, "web: login refused: that name is locked from that address");
            return again(REFUSED);
        }
    };
    tokio::time::sleep(auth::delay_after(before)).await;

    let users = web.users();
    let who = name.clone();
    let checked = blocking(&web, move || {
        let Some(account) = users.get(&who)? else {
            auth::verify_password(&password, auth::decoy_hash());
            return Ok(Checked::Unknown);
        };
        if auth::verify_password(&password, &account.hash) {
            Ok(Checked::Good(account))
        } else {
            Ok(Checked::Wrong)
        }
    })
    .await;
    match checked {
        Err(e) => {
            tracing::error!(error = %e, "web: the accounts could not be read");
            unreadable()
        }
        Ok(Checked::Good(account)) if account.totp_secret.is_some() => {
            // The attempt stays counted until the code is right too.
            web.sessions.ask_code(&id, &account.name);
            pages::page(StatusCode::OK, "Log in", None, code_form(&found.csrf, None))
        }
        Ok(Checked::Good(account)) => {
            let logins = web.logins();
            let (who, client) = (account.name.clone(), from.to_string());
            if let Err(e) = blocking(&web, move || logins.succeeded(&who, &client)).await {
                tracing::error!(error = %e, "web: a good login could not be recorded");
            }
            logged_in(&web, &id, &account, from, "").await
        }
        Ok(Checked::Unknown) => {
            failed(&web, &name, from, "no such account").await;
            again(REFUSED)
        }
        Ok(Checked::Wrong) => {
            failed(&web, &name, from, "wrong password").await;
            again(REFUSED)
        }
    }
}

/// `POST /login/code`: the TOTP code after a right password.
pub async fn code(
    State(web): State<Arc<Web>>,
    ConnectInfo(super::Peer(peer)): ConnectInfo<super::Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let Some((id, found)) = checked_login_session(&headers, &web, &form) else {
        return pages::forbidden(None);
    };
    let from = peer.ip();
    let Some(name) = found.pending_code.clone() else {
        return pages::page(
            StatusCode::OK,
            "Log in",
            None,
            login_form(
                &web,
                &found.csrf,
                "",
                Some("The code was not given within 5 minutes of the password. Log in again."),
            ),
        );
    };
    let typed = form.get("code").unwrap_or("").to_string();

    let Some(attempt) = begin_attempt(&web, &name, from).await else {
        return unreadable();
    };
    let before = match attempt {
        Attempt::Go { before } => before,
        Attempt::Locked { .. } => {
            web.sessions.forget_code(&id);
            return pages::page(
                StatusCode::OK,
                "Log in",
                None,
                login_form(&web, &found.csrf, &name, Some(REFUSED)),
            );
        }
    };
    tokio::time::sleep(auth::delay_after(before)).await;

    let users = web.users();
    let who = name.clone();
    let checked = blocking(&web, move || {
        let Some(account) = users.get(&who)? else {
            return Ok(None);
        };
        let secret = account
            .totp_secret
            .as_deref()
            .and_then(|h| hex::decode(h).ok());
        let Some(secret) = secret else {
            return Ok(None);
        };
        let now = unix_now();
        // The step is taken in the database, so the same code sent twice at once is good once.
        let step = totp::accept(&secret, &typed, now, None);
        match step {
            Some(step) if users.use_totp_step(&who, step)? => Ok(Some(account)),
            _ => Ok(None),
        }
    })
    .await;
    match checked {
        Err(e) => {
            tracing::error!(error = %e, "web: the accounts could not be read");
            unreadable()
        }
        Ok(Some(account)) => {
            let logins = web.logins();
            let (who, client) = (account.name.clone(), from.to_string());
            if let Err(e) = blocking(&web, move || logins.succeeded(&who, &client)).await {
                tracing::error!(error = %e, "web: a good login could not be recorded");
            }
            logged_in(&web, &id, &account, from, " (password and code)").await
        }
        Ok(None) => {
            let locked = failed(&web, &name, from, "wrong or used authenticator code").await;
            if locked {
                web.sessions.forget_code(&id);
                again_login(&web, &found.csrf, &name)
            } else {
                pages::page(
                    StatusCode::OK,
                    "Log in",
                    None,
                    code_form(
                        &found.csrf,
                        Some(
                            "That code is wrong, or was used already: wait for the next one and type it.",
                        ),
                    ),
                )
            }
        }
    }
}

fn again_login(web: &Web, csrf: &str, name: &str) -> Response {
    pages::page(
        StatusCode::OK,
        "Log in",
        None,
        login_form(web, csrf, name, Some(REFUSED)),
    )
}

/// `POST /logout`.
pub async fn logout(State(web): State<Arc<Web>>, headers: HeaderMap, body: Bytes) -> Response {
    let user = match web.post_user(&headers, &body, |_| true).await {
        Ok((u, _)) => u,
        Err(r) => return r,
    };
    web.sessions.end(&user.session);
    let mut r = Redirect::to("/login").into_response();
    set_cookie(&mut r, &auth::clear_cookie(web.secure));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_states_the_lock_as_it_is() {
        assert!(REFUSED.starts_with("wrong name or password"));
        assert!(REFUSED.contains(&format!("After {LOCK_AFTER} failed logins")));
        assert!(REFUSED.contains(&format!("for {} minutes", LOCK_FOR.as_secs() / 60)));
    }
}
