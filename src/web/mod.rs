//! The web listener (`[web] listen`): today only `GET /metrics` for Prometheus; the
//! quarantine and audit pages will be routes on this same router.
//!
//! It listens on loopback in the example config. `/metrics` holds counts only (no address,
//! subject or content), but put it behind the firewall all the same.

pub mod metrics;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::smtp::server::Relay;
use crate::store::quarantine::Quarantine;
use metrics::QuarantineSize;

/// Every route of the web listener.
pub fn router(relay: Arc<Relay>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(relay)
}

/// Serves [`router`] on `listener` until `stop` turns true.
pub async fn serve(relay: Arc<Relay>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let stopped = async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    if let Err(e) = axum::serve(listener, router(relay))
        .with_graceful_shutdown(stopped)
        .await
    {
        tracing::error!(error = %e, "the web listener stopped");
    }
}

/// `GET /metrics`.
async fn scrape(State(relay): State<Arc<Relay>>) -> impl IntoResponse {
    let state_dir = relay.config().storage.state_dir.clone();
    let quarantine = tokio::task::spawn_blocking(move || {
        Quarantine::new(&state_dir)
            .list("held")
            .map(|held| QuarantineSize {
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
        relay.metrics.render(quarantine),
    )
}
