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
                                a #nav-flags href="/flags" {
                                    "Flags"
                                    @if let Some(n) = u.unreviewed_cases {
                                        " " span #unreviewed.badge title="cases not reviewed yet" { (n) }
                                    }
                                }
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

/// The school's time zone (`[school] timezone`) every page shows times in; UTC until
/// [`set_zone`] is called.
static SCHOOL_ZONE: std::sync::RwLock<Option<(String, jiff::tz::TimeZone)>> =
    std::sync::RwLock::new(None);

/// Puts `[school] timezone` in force for the times pages show (a reload may change it; a name
/// that is not a zone leaves UTC, which `policy check` refuses anyway).
pub fn set_zone(name: &str) {
    let current = SCHOOL_ZONE
        .read()
        .map(|z| z.as_ref().is_some_and(|(n, _)| n == name))
        .unwrap_or(false);
    if current {
        return;
    }
    let zone = jiff::tz::TimeZone::get(name).unwrap_or_else(|e| {
        tracing::warn!(error = %e, zone = name, "web: [school] timezone is not a time zone; times are shown in UTC");
        jiff::tz::TimeZone::UTC
    });
    if let Ok(mut z) = SCHOOL_ZONE.write() {
        *z = Some((name.to_string(), zone));
    }
}

fn zone() -> jiff::tz::TimeZone {
    SCHOOL_ZONE
        .read()
        .ok()
        .and_then(|z| z.as_ref().map(|(_, tz)| tz.clone()))
        .unwrap_or(jiff::tz::TimeZone::UTC)
}

/// `t` in `tz` as a person in a UK school reads it: `Mon 7 Dec 2026, 09:14 GMT` (BST in
/// summer); with `seconds`, `09:14:03 GMT`. Anything that does not parse is shown as stored.
pub fn time_in(t: &str, tz: &jiff::tz::TimeZone, seconds: bool) -> String {
    match t.parse::<jiff::Timestamp>() {
        Ok(ts) => {
            let format = if seconds {
                "%a %-d %b %Y, %H:%M:%S %Z"
            } else {
                "%a %-d %b %Y, %H:%M %Z"
            };
            ts.to_zoned(tz.clone()).strftime(format).to_string()
        }
        Err(_) => t.to_string(),
    }
}

/// A stored RFC 3339 time as a person reads it, in the school's time zone:
/// `2026-12-07T09:14:02.123Z` → `Mon 7 Dec 2026, 09:14 GMT`.
pub fn short_time(t: &str) -> String {
    time_in(t, &zone(), false)
}

/// [`short_time`] with seconds (the audit trail, where records a second apart differ).
pub fn long_time(t: &str) -> String {
    time_in(t, &zone(), true)
}

/// The characters of a subject a list shows; the whole of it is on hover and on its own page.
pub const SUBJECT_SHOWN: usize = 120;

/// `text` cut to `max` characters with "…" when longer.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(max).collect();
        cut.push('…');
        cut
    }
}

/// A subject (or any long text) in a list: its first [`SUBJECT_SHOWN`] characters, the whole
/// of it on hover (`title`).
pub fn clipped(text: &str) -> Markup {
    html! {
        @if text.chars().count() > SUBJECT_SHOWN {
            span.clip title=(text) { (clip(text, SUBJECT_SHOWN)) }
        } @else {
            (text)
        }
    }
}

/// A date filter's value for an `<input type="date">`, which only shows ISO dates: a UK date
/// (`07/12/2026`) as `2026-12-07`; anything else as typed (so the person sees their mistake).
pub fn date_value(v: &str) -> String {
    crate::review::audit_search::uk_or_iso_date(v)
        .filter(|_| !v.contains('T'))
        .map(|d| d.to_string())
        .unwrap_or_else(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn london() -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get("Europe/London").expect("the tz database has Europe/London")
    }

    #[test]
    fn winter_times_read_gmt_and_summer_times_bst() {
        assert_eq!(
            time_in("2026-12-07T09:14:02.5Z", &london(), false),
            "Mon 7 Dec 2026, 09:14 GMT"
        );
        assert_eq!(
            time_in("2026-07-01T08:05:09Z", &london(), true),
            "Wed 1 Jul 2026, 09:05:09 BST"
        );
    }

    #[test]
    fn the_night_the_clocks_go_back_reads_both_labels() {
        // Sunday 25 October 2026: 01:30 BST (00:30 UTC), then 01:30 GMT an hour later.
        assert_eq!(
            time_in("2026-10-25T00:30:00Z", &london(), false),
            "Sun 25 Oct 2026, 01:30 BST"
        );
        assert_eq!(
            time_in("2026-10-25T01:30:00Z", &london(), false),
            "Sun 25 Oct 2026, 01:30 GMT"
        );
    }

    #[test]
    fn a_long_subject_is_clipped_with_the_whole_of_it_on_hover() {
        assert_eq!(clipped("Trip").into_string(), "Trip");
        let long = "ab<c".repeat(100);
        let html = clipped(&long).into_string();
        assert!(
            html.starts_with("<span class=\"clip\" title=\"ab&lt;cab"),
            "{html}"
        );
        assert!(
            html.contains(&format!("{}…</span>", "ab&lt;c".repeat(30))),
            "{html}"
        );
        assert_eq!(clip("x".repeat(5).as_str(), 4), "xxxx…");
    }

    #[test]
    fn what_does_not_parse_is_shown_as_stored() {
        assert_eq!(time_in("yesterday", &london(), false), "yesterday");
    }
}
