//! `GET/POST /release/{token}`: the page behind the link in a sender notice, where a sender
//! releases their own message held by a data-protection rule, with a one-line reason
//! ([`crate::review::sender_release`]).
//!
//! No login: the link's token (32 random bytes, single use, 7 days) is the key. The page shows
//! only what the sender needs to decide (the subject, why it was held, how many recipients),
//! never the message's text. It works without JavaScript; the form carries a CSRF token tied to
//! a session cookie, as the login form does, so another site cannot post it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use maud::{Markup, html};

use super::{Form, Web, auth, pages};
use crate::policy::release::MAX_JUSTIFICATION;
use crate::review::quarantine::ReviewError;
use crate::review::sender_release::{self, Offer, SenderReleaseError, Target, Via};
use crate::store::release::ReleaseLinks;

const TITLE: &str = "Release your message";

fn links(web: &Web) -> ReleaseLinks {
    ReleaseLinks::open(&web.relay.config().storage)
}

/// The session's id and CSRF token: the request's own session, or a new anonymous one.
fn session(web: &Web, headers: &HeaderMap) -> Option<(String, String, bool)> {
    if let Some(id) = auth::cookie_id(headers)
        && let Some(found) = web.sessions.find(&id)
    {
        return Some((id, found.csrf, false));
    }
    let (id, csrf) = web.sessions.create(None)?;
    Some((id, csrf, true))
}

fn form(token: &str, csrf: &str, offer: &Offer, error: Option<&str>, given: &str) -> Markup {
    let expires = pages::short_time(&offer.expires.to_string());
    html! {
        section #sender-release {
            h1 { (TITLE) }
            p { "Your message has not been sent yet. The school's mail gateway held it because:" }
            ul #why-held {
                @for (rule, detail) in &offer.why {
                    li { strong { (rule) } @if !detail.is_empty() { ": " (detail) } }
                }
            }
            dl {
                dt { "Subject" } dd #subject { (offer.subject.as_deref().unwrap_or("(no subject)")) }
                dt { "Recipients" } dd #recipients { (offer.recipients) }
                dt { "Reference" } dd { (offer.id) }
                dt { "This link works until" } dd { (expires) " (once)" }
            }
            p { "Check the recipients and the message. If it is right to send it as it is, say why in one line and send it. Your reason and your address are kept in the audit trail and shown to the network manager." }
            @if let Some(e) = error {
                p.error role="alert" { (e) }
            }
            form #release-form method="post" action=(format!("/release/{token}")) {
                input type="hidden" name="csrf" value=(csrf);
                label for="justification" { "Why it should go (one line, required)" }
                input #justification type="text" name="justification" value=(given)
                    maxlength=(MAX_JUSTIFICATION) required autocomplete="off";
                button #send type="submit" { "Send it as it is" }
            }
            p.note { "If it should not go, do nothing: the network manager will review it." }
        }
    }
}

/// `t` with its first letter a capital.
fn capitalised(t: &str) -> String {
    let mut c = t.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The page for a link that cannot be used, and its status.
fn refused(e: &SenderReleaseError) -> Response {
    let status = match e {
        SenderReleaseError::UnknownLink => StatusCode::NOT_FOUND,
        SenderReleaseError::UsedLink | SenderReleaseError::ExpiredLink => StatusCode::GONE,
        SenderReleaseError::NotTheSenders(_) => StatusCode::FORBIDDEN,
        SenderReleaseError::Justification(_) => StatusCode::BAD_REQUEST,
        SenderReleaseError::Review(r) => match r {
            ReviewError::NotFound(_) => StatusCode::NOT_FOUND,
            ReviewError::AlreadyActed { .. } => StatusCode::GONE,
            ReviewError::Busy(_) => StatusCode::CONFLICT,
            ReviewError::Timeout { .. } | ReviewError::Delivery { .. } => StatusCode::BAD_GATEWAY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        },
    };
    let text = match e {
        // Who acted on it is the school's business; the sender hears only that it was.
        SenderReleaseError::Review(ReviewError::AlreadyActed { state, .. }) => {
            format!("This message has already been {state}; the link no longer does anything.")
        }
        SenderReleaseError::Review(r) if r.has_store_detail() => {
            tracing::error!(error = %e, "web: a sender's release could not be done");
            match r {
                ReviewError::Store(_) | ReviewError::Interrupted(_) => "The quarantine could not be read; try again in a few minutes, or ask the network manager.".into(),
                _ => capitalised(&r.for_a_page()),
            }
        }
        other => capitalised(&other.to_string()),
    };
    pages::message(status, None, "Not released", &text)
}

fn with_cookie(mut r: Response, web: &Web, id: &str, new: bool) -> Response {
    if new && let Ok(v) = auth::set_cookie(id, web.secure).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `GET /release/{token}`.
pub async fn page(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let (q, links, switch) = (
        web.quarantine(),
        links(&web),
        web.relay.config().allow_sender_release().clone(),
    );
    let lookup = token.clone();
    let offered = tokio::task::spawn_blocking(move || {
        sender_release::offer(&q, &links, &lookup, &switch, jiff::Timestamp::now())
    })
    .await;
    let offer = match offered {
        Ok(Ok(offer)) => offer,
        Ok(Err(e)) => return refused(&e),
        Err(e) => {
            return refused(&SenderReleaseError::Review(ReviewError::Interrupted(
                e.to_string(),
            )));
        }
    };
    let Some((id, csrf, new)) = session(&web, &headers) else {
        return pages::message(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            TITLE,
            "The page could not be made safe to use (no random numbers from the operating system). Try again in a minute.",
        );
    };
    let r = pages::page(
        StatusCode::OK,
        TITLE,
        None,
        form(&token, &csrf, &offer, None, ""),
    );
    with_cookie(r, &web, &id, new)
}

/// `POST /release/{token}` with `csrf` and `justification`.
pub async fn submit(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let posted = Form::parse(&body);
    let csrf_ok = auth::cookie_id(&headers)
        .and_then(|id| web.sessions.find(&id))
        .zip(posted.get("csrf"))
        .is_some_and(|(found, given)| auth::same(given.as_bytes(), found.csrf.as_bytes()));
    if !csrf_ok {
        return pages::forbidden(None);
    }
    let justification = posted.get("justification").unwrap_or("").to_string();
    let config = web.relay.config();
    let switch = config.allow_sender_release().clone();
    let hop = web.relay.next_hop();
    let done = sender_release::release(
        &web.quarantine(),
        &links(&web),
        Target::Token(token.clone()),
        Via::Link,
        &justification,
        &switch,
        &hop,
        config.relay.next_hop_timeout.0,
        &web.relay.audit,
    )
    .await;
    match done {
        Ok(released) => {
            tracing::info!(quarantine_id = %released.id, "a sender released their held message through its link");
            pages::page(
                StatusCode::OK,
                "Message sent",
                None,
                html! {
                    h1 { "Message sent" }
                    p.notice role="status" #released {
                        "Your message " (released.id) " has been released to its recipients. Your reason is kept in the audit trail."
                    }
                },
            )
        }
        Err(SenderReleaseError::Justification(why)) => {
            // The form again, with what was typed and what is wrong with it.
            let (q, links, token2) = (web.quarantine(), links(&web), token.clone());
            let offered = tokio::task::spawn_blocking(move || {
                sender_release::offer(&q, &links, &token2, &switch, jiff::Timestamp::now())
            })
            .await;
            let csrf = posted.get("csrf").unwrap_or("");
            match offered {
                Ok(Ok(offer)) => pages::page(
                    StatusCode::BAD_REQUEST,
                    TITLE,
                    None,
                    form(
                        &token,
                        csrf,
                        &offer,
                        Some(&why.to_string()),
                        &justification
                            .chars()
                            .take(MAX_JUSTIFICATION)
                            .collect::<String>(),
                    ),
                ),
                Ok(Err(e)) => refused(&e),
                Err(_) => refused(&SenderReleaseError::Justification(why)),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "a sender's release through a link was not done");
            refused(&e)
        }
    }
}
