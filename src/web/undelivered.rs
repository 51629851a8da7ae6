//! `GET /undelivered`: mail schoolgate wrote and gave up on (a DSL alert, a sender notice, a
//! checkpoint the next hop refused, or did not take for two days). DSL role only. Each is an
//! audit action record whose detail starts `mail-undelivered:` (see `smtp::alert_sender`); an
//! alert listed here never reached the DSL, so the flags it names need looking at here.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;

use super::auth::User;
use super::{Web, pages};
use crate::alerts::UNDELIVERED;
use crate::store::StoreError;

/// The most records the page shows (newest first).
const SHOWN: usize = 200;

/// One undelivered mail: its record's number, time and detail, and for an alert the sender of
/// the flagged messages it was about (from the first audit record it names).
type Undelivered = (u64, String, String, Option<String>);

/// The audit records an undelivered alert names (`… alert for audit records 12, 14 to …`, as
/// [`crate::alerts::undelivered_detail`] writes it); none for a notice or a checkpoint.
fn alert_seqs(detail: &str) -> Vec<u64> {
    let Some(rest) = detail
        .strip_prefix(UNDELIVERED)
        .map(str::trim_start)
        .and_then(|d| d.strip_prefix("alert for audit records "))
    else {
        return Vec::new();
    };
    let list = rest.split(" to ").next().unwrap_or("");
    list.split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// The newest undelivered mail for `addresses` (the DSLs and `escalate_to`: alerts and
/// checkpoints) in the trail `storage` keeps, found through the audit index by those
/// addresses. Without any address every record is read. A notice to a member of staff is in the
/// audit trail (search for their address).
fn newest(
    storage: &crate::config::Storage,
    addresses: &[String],
) -> Result<Vec<Undelivered>, StoreError> {
    let mut backend = crate::store::open_audit(storage)?;
    backend.begin_read()?;
    let mut newest: VecDeque<Undelivered> = VecDeque::new();
    if let Some(range) = backend.seq_range(None, None)? {
        let keys: Vec<String> = addresses
            .iter()
            .map(|a| format!("a:{}", a.to_lowercase()))
            .collect();
        backend.scan(range, &keys, &mut |entry| {
            let record = entry.record()?;
            if let Some(a) = &record.action
                && a.detail.starts_with(UNDELIVERED)
            {
                if newest.len() == SHOWN {
                    newest.pop_front();
                }
                newest.push_back((entry.seq, record.time.clone(), a.detail.clone(), None));
            }
            Ok(true)
        })?;
        // Whom each undelivered alert was about: the sender of the first message it names.
        for item in newest.iter_mut() {
            if let Some(&first) = alert_seqs(&item.2).first() {
                backend.scan((first, first), &[], &mut |entry| {
                    item.3 = entry.record()?.message.map(|m| m.mail_from);
                    Ok(false)
                })?;
            }
        }
    }
    backend.end_read()?;
    Ok(newest.into_iter().rev().collect())
}

/// `GET /undelivered`.
pub async fn list(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let u = match web.page_user(&headers, User::sees_flags).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let config = web.relay.config();
    let storage = config.storage.clone();
    let addresses: Vec<String> = config
        .safeguarding
        .dsl
        .iter()
        .chain(&config.safeguarding.escalate_to)
        .map(|a| a.0.clone())
        .collect();
    let found = tokio::task::spawn_blocking(move || newest(&storage, &addresses)).await;
    let found = match found {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return unreadable(&u, &e),
        Err(e) => return unreadable(&u, &e),
    };
    // An alert about the headteacher or a DSL is for those listed for escalation only, as its
    // case is (issue 14): the others do not see that it was lost either.
    let directory = web.relay.directory();
    let escalate_to: Vec<String> = config
        .safeguarding
        .escalate_to
        .iter()
        .map(|a| a.0.clone())
        .collect();
    let found: Vec<Undelivered> = found
        .into_iter()
        .filter(|(_, _, _, sender)| match sender {
            Some(sender) => crate::review::cases::visible_to(
                &u.name,
                sender,
                crate::alerts::concerns_escalation(&config, &directory, sender),
                &escalate_to,
            ),
            None => true,
        })
        .collect();
    let body = html! {
        h1 { "Undelivered alerts" }
        @if found.is_empty() {
            p.empty { "Every alert and checkpoint for the DSLs was delivered." }
        } @else {
            p.count {
                "schoolgate gave up on these: the next hop refused them, or did not take them for two days. "
                "An alert listed here never reached its DSL: open the audit records it names."
            }
            div.scroll {
                table #undelivered {
                    thead { tr { th { "Time" } th { "Record" } th { "What, for whom, and why" } } }
                    tbody {
                        @for (seq, time, detail, _) in &found {
                            tr.undelivered data-seq=(seq) {
                                td.time { (pages::long_time(time)) }
                                td.seq { (seq) }
                                td.detail { (detail.strip_prefix(UNDELIVERED).unwrap_or(detail).trim()) }
                            }
                        }
                    }
                }
            }
        }
    };
    pages::page(StatusCode::OK, "Undelivered", Some(&u), body)
}

fn unreadable(u: &User, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "web: the audit trail could not be read");
    pages::message(
        StatusCode::INTERNAL_SERVER_ERROR,
        Some(u),
        "Not available",
        &format!("The audit trail could not be read: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undelivered_alert_names_its_audit_records() {
        let d = crate::alerts::undelivered_detail(
            "alert",
            &[12, 14],
            &["chair@governors.example.org".into()],
            "refused: 550 no such user",
        );
        assert_eq!(alert_seqs(&d), vec![12, 14]);
        let n = crate::alerts::undelivered_detail("notice", &[3], &["t@x".into()], "refused");
        assert!(
            alert_seqs(&n).is_empty(),
            "a notice is about its sender, not a case"
        );
        assert!(alert_seqs("something else").is_empty());
    }
}
