//! `GET/POST /login` and `POST /logout`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::auth::{self, LOCK_AFTER, LOCK_FOR, User};
use super::{Form, Web, pages};
use crate::store::users::{Failure, Role};
use crate::store::{AuditRecord, RecordKind};

/// Where a person lands after logging in.
pub fn landing(u: &User) -> &'static str {
    if u.is(Role::NetworkManager) || !u.is(Role::Dsl) {
        "/quarantine"
    } else {
        "/flags"
    }
}

fn login_form(csrf: &str, name: &str, error: Option<&str>) -> maud::Markup {
    html! {
        section.login {
            h1 { "Log in" }
            @if let Some(e) = error {
                p.error role="alert" { (e) }
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

/// `GET /login`: the form, with a session that has no account yet (for its CSRF token).
pub async fn page(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    if let Some(u) = web.user(&headers).await {
        return Redirect::to(landing(&u)).into_response();
    }
    let existing = auth::cookie_id(&headers)
        .and_then(|id| web.sessions.find(&id).map(|f| (id, f)))
        .filter(|(_, f)| f.account.is_none());
    let (id, csrf) = match existing {
        Some((id, f)) => (id, f.csrf),
        None => match web.sessions.create(None) {
            Some(s) => s,
            None => return unavailable(),
        },
    };
    let mut r = pages::page(StatusCode::OK, "Log in", None, login_form(&csrf, "", None));
    set_cookie(&mut r, &auth::set_cookie(&id, web.secure));
    r
}

fn unavailable() -> Response {
    pages::message(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "Cannot log in now",
        "The server could not make a session (no random numbers from the operating system). Try again in a minute; if it persists, see the gateway's log.",
    )
}

fn set_cookie(r: &mut Response, value: &str) {
    if let Ok(v) = value.parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
}

async fn audit(web: &Web, kind: RecordKind, actor: &str, detail: String) {
    let record = AuditRecord::action(kind, actor, detail);
    if let Err(e) = web.relay.audit.append(record).await {
        tracing::error!(error = %e, "web: a login could not be audited");
    }
}

/// What checking a login found.
enum Outcome {
    Good(crate::store::users::Account),
    Unknown,
    Wrong { locked_now: bool },
    Locked { until: String },
}

/// `POST /login`.
pub async fn submit(
    State(web): State<Arc<Web>>,
    ConnectInfo(super::Peer(peer)): ConnectInfo<super::Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let Some(id) = auth::cookie_id(&headers) else {
        return pages::forbidden(None);
    };
    let Some(found) = web.sessions.find(&id) else {
        return pages::forbidden(None);
    };
    if !form
        .get("csrf")
        .is_some_and(|t| auth::same(t.as_bytes(), found.csrf.as_bytes()))
    {
        return pages::forbidden(None);
    }
    let name = form.get("name").unwrap_or("").trim().to_string();
    let password = form.get("password").unwrap_or("").to_string();
    let users = web.users();
    let who = name.clone();
    // The hash is checked on the blocking pool (it takes real CPU time), a few at a time.
    let Ok(_permit) = web.checking.acquire().await else {
        return unavailable();
    };
    let checked = tokio::task::spawn_blocking(move || -> Result<Outcome, String> {
        let account = users.get(&who).map_err(|e| e.to_string())?;
        let Some(account) = account else {
            auth::verify_password(&password, auth::decoy_hash());
            return Ok(Outcome::Unknown);
        };
        if account.locked_at(jiff::Timestamp::now()) {
            return Ok(Outcome::Locked {
                until: account
                    .locked_until
                    .as_deref()
                    .map(super::pages::short_time)
                    .unwrap_or_default(),
            });
        }
        if auth::verify_password(&password, &account.hash) {
            users.record_success(&who).map_err(|e| e.to_string())?;
            return Ok(Outcome::Good(account));
        }
        match users
            .record_failure(&who, LOCK_AFTER, LOCK_FOR)
            .map_err(|e| e.to_string())?
        {
            Some(Failure::LockedOut { .. }) => Ok(Outcome::Wrong { locked_now: true }),
            _ => Ok(Outcome::Wrong { locked_now: false }),
        }
    })
    .await;
    let outcome = match checked {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "web: the accounts could not be read");
            return pages::message(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "Cannot log in now",
                "The accounts could not be read; see the gateway's log.",
            );
        }
        Err(_) => return unavailable(),
    };
    let again = |error: &str| {
        pages::page(
            StatusCode::OK,
            "Log in",
            None,
            login_form(&found.csrf, &name, Some(error)),
        )
    };
    let from = peer.ip();
    match outcome {
        Outcome::Good(account) => {
            web.sessions.end(&id);
            let Some((new_id, csrf)) = web.sessions.create(Some(account.name.clone())) else {
                return unavailable();
            };
            audit(
                &web,
                RecordKind::Login,
                &account.name,
                format!("web login by {} from {from}", account.name),
            )
            .await;
            let user = User::from_account(&account, csrf, new_id.clone());
            let mut r = Redirect::to(landing(&user)).into_response();
            set_cookie(&mut r, &auth::set_cookie(&new_id, web.secure));
            r
        }
        Outcome::Unknown => {
            audit(
                &web,
                RecordKind::LoginFailed,
                &name,
                format!("web login failed for {name:?} from {from}: no such account"),
            )
            .await;
            again("wrong name or password")
        }
        Outcome::Wrong { locked_now } => {
            let detail = if locked_now {
                format!(
                    "web login failed for {name} from {from}: wrong password, {LOCK_AFTER} in a row; locked for {} minutes",
                    LOCK_FOR.as_secs() / 60
                )
            } else {
                format!("web login failed for {name} from {from}: wrong password")
            };
            audit(&web, RecordKind::LoginFailed, &name, detail).await;
            if locked_now {
                again(&format!(
                    "wrong name or password; after {LOCK_AFTER} failed logins in a row the account is now locked for {} minutes",
                    LOCK_FOR.as_secs() / 60
                ))
            } else {
                again("wrong name or password")
            }
        }
        Outcome::Locked { until } => {
            audit(
                &web,
                RecordKind::LoginFailed,
                &name,
                format!("web login refused for {name} from {from}: locked until {until}"),
            )
            .await;
            again(&format!(
                "This account is locked after {LOCK_AFTER} failed logins until {until}. Try again then, or ask the network manager to set a new password (schoolgate user passwd)."
            ))
        }
    }
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
