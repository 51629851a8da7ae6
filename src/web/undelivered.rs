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
use crate::store::sqlite::SqliteBackend;
use crate::store::{Backend, StoreError};

/// The most records the page shows (newest first).
const SHOWN: usize = 200;

/// One undelivered mail: its record's number, time and detail.
type Undelivered = (u64, String, String);

/// The newest undelivered mail for `addresses` (the DSLs and `escalate_to`: alerts and
/// checkpoints) in the trail under `state_dir`, found through the audit index by those
/// addresses. Without any address every record is read. A notice to a member of staff is in the
/// audit trail (search for their address).
fn newest(
    state_dir: &std::path::Path,
    addresses: &[String],
) -> Result<Vec<Undelivered>, StoreError> {
    let mut backend = SqliteBackend::open(state_dir)?;
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
                newest.push_back((entry.seq, record.time.clone(), a.detail.clone()));
            }
            Ok(true)
        })?;
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
    let state_dir = config.storage.state_dir.clone();
    let addresses: Vec<String> = config
        .safeguarding
        .dsl
        .iter()
        .chain(&config.safeguarding.escalate_to)
        .map(|a| a.0.clone())
        .collect();
    let found = tokio::task::spawn_blocking(move || newest(&state_dir, &addresses)).await;
    let found = match found {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return unreadable(&u, &e),
        Err(e) => return unreadable(&u, &e),
    };
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
                        @for (seq, time, detail) in &found {
                            tr.undelivered data-seq=(seq) {
                                td.time { (time) }
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
