//! The frame every page shares (header, navigation for the person's roles, logout) and the
//! small pages that say no. maud escapes every value put into a page.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::auth::User;

/// A whole page: `title`, the navigation for `user` (none on the login page), then `body`.
pub fn layout(title: &str, user: Option<&User>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en-GB" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · schoolgate" }
                link rel="stylesheet" href="/static/style.css";
            }
            body {
                header.top {
                    span.brand { "schoolgate" }
                    @if let Some(u) = user {
                        nav {
                            @if u.sees_quarantine() {
                                a #nav-quarantine href="/quarantine" { "Quarantine" }
                            }
                            @if u.sees_flags() {
                                a #nav-flags href="/flags" { "Flags" }
                                a #nav-audit href="/audit" { "Audit trail" }
                                a #nav-undelivered href="/undelivered" { "Undelivered" }
                            }
                            form.logout method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(u.csrf);
                                span.who { (u.name) }
                                button #logout type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page as a response with `status`.
pub fn page(status: StatusCode, title: &str, user: Option<&User>, body: Markup) -> Response {
    (status, Html(layout(title, user, body).into_string())).into_response()
}

/// A page that only says something (an error, a refusal).
pub fn message(status: StatusCode, user: Option<&User>, title: &str, text: &str) -> Response {
    page(
        status,
        title,
        user,
        html! {
            h1 { (title) }
            p.error { (text) }
        },
    )
}

/// 403: not allowed (no session on a POST, a wrong CSRF token, or the wrong role).
pub fn forbidden(user: Option<&User>) -> Response {
    message(
        StatusCode::FORBIDDEN,
        user,
        "Not allowed",
        "Your account may not do this, or the form had expired. Go back, reload the page and try again.",
    )
}

/// A stored RFC 3339 time as a person reads it: `2026-11-23T10:01:02.123Z` →
/// `2026-11-23 10:01 UTC`. Anything that does not parse is shown as stored.
pub fn short_time(t: &str) -> String {
    match t.parse::<jiff::Timestamp>() {
        Ok(ts) => ts.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        Err(_) => t.to_string(),
    }
}
