//! Releasing and deleting held messages from the web page, one or several at once, always
//! through one confirmation page that needs no JavaScript:
//!
//! 1. the entry page's form (`POST /quarantine/{id}/release|delete`) or the list's bulk form
//!    (`POST /quarantine/bulk`, the ticked messages and the button pressed) posts a reason;
//! 2. the confirmation page lists each message and what will happen to it, and what cannot be
//!    done (already released, not this account's decision) before anything is done;
//! 3. its form posts the same with `confirm=yes`, and each message is released or deleted on its
//!    own, with its own audit record (as `schoolgate quarantine release` writes), and what could
//!    not be done is said per message.
//!
//! Every form carries the session's CSRF token. A reason is required for both (up to
//! [`holds::MAX_REASON_CHARS`] characters); a longer or blank one is refused before anything
//! is looked up.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::auth::User;
use super::quarantine::{SAFEGUARDING_HOLD, failed, reviewer, status_of};
use super::{Web, pages};
use crate::policy::holds::{Act, Hold};
use crate::review::quarantine::{self as review, ReviewError};
use crate::store::quarantine::Held;

/// The most messages one bulk action takes (a list page shows far fewer).
const MAX_BULK: usize = 500;

/// `POST /quarantine/bulk`: the ticked messages (`id`, repeated), `action` (`release` or
/// `delete`) and `reason`; with `confirm=yes`, done.
pub async fn bulk(State(web): State<Arc<Web>>, headers: HeaderMap, body: Bytes) -> Response {
    handle(&web, &headers, &body, None, None).await
}

/// `POST /quarantine/{id}/release|delete`: as [`bulk`], for the one message of an entry page.
pub(super) async fn one(
    web: &Web,
    headers: &HeaderMap,
    id: &str,
    act: Act,
    body: &[u8],
) -> Response {
    handle(web, headers, body, Some(act), Some(id)).await
}

/// What a form asks for.
struct Asked {
    act: Act,
    ids: Vec<String>,
    reason: String,
    confirmed: bool,
}

/// Every value of `name` in a form body, in order, each once.
fn all_of(body: &[u8], name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (k, v) in form_urlencoded::parse(body) {
        let v = v.trim();
        if k == name && !v.is_empty() && !out.iter().any(|o| o == v) {
            out.push(v.to_string());
        }
    }
    out
}

/// A page saying what is wrong with the form (nothing was done), with the way back.
fn refused(u: &User, status: StatusCode, text: &str, back: &str) -> Response {
    let body = html! {
        h1 { "Not done" }
        p.error { (text) }
        p { a href=(back) { "Back" } }
    };
    pages::page(status, "Not done", Some(u), body)
}

async fn handle(
    web: &Web,
    headers: &HeaderMap,
    body: &[u8],
    act: Option<Act>,
    id: Option<&str>,
) -> Response {
    let (u, form) = match web.post_user(headers, body, User::sees_quarantine).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let back = match id {
        Some(id) => format!("/quarantine/{id}"),
        None => "/quarantine".to_string(),
    };
    let act = match act.or(match form.get("action") {
        Some("release") => Some(Act::Release),
        Some("delete") => Some(Act::Delete),
        _ => None,
    }) {
        Some(act) => act,
        None => {
            return refused(
                &u,
                StatusCode::BAD_REQUEST,
                "Choose Release or Delete for the messages ticked; nothing was done.",
                &back,
            );
        }
    };
    let ids = match id {
        Some(id) => vec![id.to_string()],
        None => all_of(body, "id"),
    };
    if ids.is_empty() {
        return refused(
            &u,
            StatusCode::BAD_REQUEST,
            "Tick at least one message in the list first; nothing was done.",
            &back,
        );
    }
    if ids.len() > MAX_BULK {
        return refused(
            &u,
            StatusCode::BAD_REQUEST,
            &format!(
                "At most {MAX_BULK} messages can be released or deleted at once ({} were ticked); nothing was done.",
                ids.len()
            ),
            &back,
        );
    }
    // The reason's rule does not depend on the hold: every release and delete gives one.
    let reason = match review::reason_for(Hold::Sensitive, act, form.get("reason")) {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => return failed(&u, &e),
    };
    let asked = Asked {
        act,
        ids,
        reason,
        confirmed: form.get("confirm") == Some("yes"),
    };
    if asked.confirmed {
        done(web, &u, &asked).await
    } else {
        confirm(web, &u, &asked, &back).await
    }
}

/// Each message asked for, as it is now: held and this account's to act on, or why not.
async fn look_up(web: &Web, u: &User, asked: &Asked) -> Vec<(String, Result<Held, ReviewError>)> {
    let quarantine = web.quarantine();
    let who = reviewer(u);
    let (ids, act) = (asked.ids.clone(), asked.act);
    let (config, me) = (web.relay.config(), u.clone());
    let found = tokio::task::spawn_blocking(move || {
        ids.into_iter()
            .map(|id| {
                let h = review::find_held(&quarantine, &id)
                    // In a trust, another school's hold is not there for a school's account.
                    .and_then(|h| {
                        if me.sees_sender(&config, &h.mail_from) {
                            Ok(h)
                        } else {
                            Err(ReviewError::NotFound(id.clone()))
                        }
                    })
                    .and_then(|h| review::authorize(&h, &who, act).map(|_| h));
                (id, h)
            })
            .collect::<Vec<_>>()
    })
    .await;
    match found {
        Ok(found) => found,
        Err(e) => asked
            .ids
            .iter()
            .map(|id| (id.clone(), Err(ReviewError::Interrupted(e.to_string()))))
            .collect(),
    }
}

fn verb(act: Act) -> (&'static str, &'static str) {
    match act {
        Act::Release => ("Release", "released"),
        _ => ("Delete", "deleted"),
    }
}

fn messages(n: usize) -> String {
    if n == 1 {
        "1 message".into()
    } else {
        format!("{n} messages")
    }
}

/// The confirmation page: what will happen to each message, and what cannot be done.
async fn confirm(web: &Web, u: &User, asked: &Asked, back: &str) -> Response {
    let found = look_up(web, u, asked).await;
    let can: Vec<&Held> = found.iter().filter_map(|(_, h)| h.as_ref().ok()).collect();
    let cannot: Vec<(&String, &ReviewError)> = found
        .iter()
        .filter_map(|(id, h)| h.as_ref().err().map(|e| (id, e)))
        .collect();
    if can.is_empty() {
        // Nothing to confirm: one message says why as before; several say why for each.
        if let [(_, e)] = cannot.as_slice() {
            return failed(u, e);
        }
        let status = cannot
            .first()
            .map_or(StatusCode::CONFLICT, |(_, e)| status_of(e));
        let body = html! {
            h1 { "Nothing to do" }
            p.error { "None of the messages ticked can be " (verb(asked.act).1) "; nothing was done." }
            ul #cannot { @for (id, e) in &cannot { li { strong { (id) } ": " (super::quarantine::shown(e)) } } }
            p { a href=(back) { "Back" } }
        };
        return pages::page(status, "Nothing to do", Some(u), body);
    }
    let (title, _) = verb(asked.act);
    let what = match asked.act {
        Act::Release => {
            "Each message below goes to its recipients through the next hop, once, exactly as it was held."
        }
        _ => {
            "The held copy of each message below is removed for good; the quarantine and the audit trail keep who deleted it, when and why."
        }
    };
    let body = html! {
        h1 { (title) " " (messages(can.len())) "?" }
        p.what { (what) " Each is recorded in the audit trail on its own, with your name and this reason." }
        dl.reason {
            dt { "Reason" }
            dd #confirm-reason { (asked.reason) }
        }
        div.scroll {
            table #confirm-list {
                thead { tr { th { "Held" } th { "From" } th { "To" } th { "Subject" } th { "What happens" } } }
                tbody {
                    @for h in &can {
                        tr.confirm data-id=(h.id) {
                            td.time { (pages::short_time(&h.time)) }
                            td.sender { (h.mail_from) }
                            td.recipients { (h.rcpt_to.join(", ")) }
                            td.subject { (h.subject.as_deref().unwrap_or("(no subject)")) }
                            td.happens {
                                @match asked.act {
                                    Act::Release => { "released to " (h.rcpt_to.len()) @if h.rcpt_to.len() == 1 { " recipient" } @else { " recipients" } }
                                    _ => "deleted",
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !cannot.is_empty() {
            section #cannot {
                h2 { "Left as they are" }
                ul { @for (id, e) in &cannot { li { strong { (id) } ": " (super::quarantine::shown(e)) } } }
            }
        }
        form #confirm-form method="post" action="/quarantine/bulk" {
            input type="hidden" name="csrf" value=(u.csrf);
            input type="hidden" name="action" value=(asked.act.as_str());
            input type="hidden" name="reason" value=(asked.reason);
            input type="hidden" name="confirm" value="yes";
            @for h in &can { input type="hidden" name="id" value=(h.id); }
            button #confirm type="submit" { (title) " " (messages(can.len())) }
            " "
            a #cancel.button href=(back) { "Cancel" }
        }
    };
    pages::page(StatusCode::OK, "Confirm", Some(u), body)
}

/// Does it, one message after another, each audited on its own; then says what happened.
async fn done(web: &Web, u: &User, asked: &Asked) -> Response {
    let quarantine = web.quarantine();
    let who = reviewer(u);
    let mut results: Vec<(String, Result<String, ReviewError>)> = Vec::new();
    for id in &asked.ids {
        // In a trust, another school's hold is not there for an account restricted to schools.
        if !super::quarantine::of_my_schools(web, u, id).await {
            results.push((id.clone(), Err(ReviewError::NotFound(id.clone()))));
            continue;
        }
        let result = match asked.act {
            Act::Release => {
                let hop = web.relay.next_hop();
                let timeout = web.relay.config().relay.next_hop_timeout.0;
                review::release(
                    &quarantine,
                    id,
                    &who,
                    Some(&asked.reason),
                    &hop,
                    timeout,
                    &web.relay.audit,
                )
                .await
                .map(|r| format!("released; next hop {}: {}", r.hop, r.reply))
            }
            _ => review::delete(&quarantine, id, &who, &asked.reason, &web.relay.audit)
                .await
                .map(|()| "deleted".to_string()),
        };
        if let Err(e) = &result {
            tracing::warn!(id = %id, error = %e, "web: a quarantine action was not done");
        }
        results.push((id.clone(), result));
    }
    let ok = results.iter().filter(|(_, r)| r.is_ok()).count();
    let (_, past) = verb(asked.act);
    if ok == results.len() {
        let mut s = form_urlencoded::Serializer::new(String::new());
        s.append_pair("done", past);
        match results.as_slice() {
            [(id, _)] => s.append_pair("id", id),
            _ => s.append_pair("n", &ok.to_string()),
        };
        return Redirect::to(&format!("/quarantine?{}", s.finish())).into_response();
    }
    if let [(_, Err(e))] = results.as_slice() {
        return failed(u, e);
    }
    let status = match results.iter().find_map(|(_, r)| r.as_ref().err()) {
        Some(e) if ok == 0 => status_of(e),
        _ => StatusCode::OK,
    };
    let body = html! {
        h1 { (past[..1].to_uppercase()) (past[1..]) " " (ok) " of " (messages(results.len())) }
        p.error { "Some messages could not be " (past) "; each is said below. Those " (past) " are in the audit trail one by one." }
        div.scroll {
            table #results {
                thead { tr { th { "Message" } th { "Outcome" } } }
                tbody {
                    @for (id, r) in &results {
                        @match r {
                            Ok(what) => tr.result.done data-id=(id) { td { a href=(format!("/quarantine/{id}")) { (id) } } td { (what) } },
                            Err(e) => tr.result.not-done data-id=(id) { td { (id) } td.error { "not done: " (super::quarantine::shown(e)) } },
                        }
                    }
                }
            }
        }
        p { a href="/quarantine" { "Back to the quarantine" } }
    };
    pages::page(status, "Done in part", Some(u), body)
}

/// The notice the list shows after an action: "Released Q1 to the next hop.", "Deleted 3
/// messages."
pub(super) fn notice(done: Option<&str>, id: Option<&str>, n: Option<&str>) -> Option<String> {
    let count = n.and_then(|n| n.parse::<usize>().ok());
    match (done, id, count) {
        (Some("released"), Some(id), _) => Some(format!("Released {id} to the next hop.")),
        (Some("deleted"), Some(id), _) => Some(format!("Deleted {id}.")),
        (Some("released"), None, Some(n)) => {
            Some(format!("Released {} to the next hop.", messages(n)))
        }
        (Some("deleted"), None, Some(n)) => Some(format!("Deleted {}.", messages(n))),
        _ => None,
    }
}

/// What the list says of a row the account may not act on, for its checkbox's place.
pub(super) fn not_yours(h: &Held, u: &User) -> &'static str {
    if super::quarantine::reads(h, u) {
        "Read only: the other role decides"
    } else {
        SAFEGUARDING_HOLD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ticked_message_is_taken_once_in_order() {
        let body = b"csrf=x&id=Q2&id=Q1&id=+Q2+&id=&action=release&id=Q3";
        assert_eq!(all_of(body, "id"), ["Q2", "Q1", "Q3"]);
        assert_eq!(all_of(body, "action"), ["release"]);
    }

    #[test]
    fn the_notice_names_one_message_or_counts_several() {
        assert_eq!(
            notice(Some("released"), Some("Q1"), None).as_deref(),
            Some("Released Q1 to the next hop.")
        );
        assert_eq!(
            notice(Some("deleted"), None, Some("3")).as_deref(),
            Some("Deleted 3 messages.")
        );
        assert_eq!(notice(Some("exploded"), Some("Q1"), None), None);
        assert_eq!(notice(None, None, Some("2")), None);
    }
}
