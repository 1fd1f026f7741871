//! Liveness, readiness and metrics (no authentication).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use horde_kv::OrderedKv;

use crate::App;
use crate::error::{ApiError, ApiResult};

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive")))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// The store and the blob store answer.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "ready"),
    (status = 503, description = "the store or the blob store does not answer")))]
pub async fn readyz<K: OrderedKv>(State(app): State<Arc<App<K>>>) -> ApiResult<&'static str> {
    let unavailable =
        |what: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", what);
    app.ledger
        .last_version()
        .await
        .map_err(|e| unavailable(format!("store: {e}")))?;
    app.blobs
        .ready()
        .await
        .map_err(|e| unavailable(format!("blob store: {e}")))?;
    Ok("ready\n")
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics<K: OrderedKv>(State(app): State<Arc<App<K>>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}
