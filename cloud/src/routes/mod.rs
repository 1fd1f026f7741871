//! The HTTP surface, one module per area. Every route is listed in [`router`] and in the
//! OpenAPI document (`crate::openapi`).

pub mod admin;
pub mod approvals;
pub mod blobs;
pub mod health;
pub mod mcp;
pub mod query;
pub mod sync;
pub mod travel;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post, put};
use horde_kv::OrderedKv;

use crate::App;
use crate::error::ApiError;

pub fn router<K: OrderedKv>() -> Router<Arc<App<K>>> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz::<K>))
        .route("/metrics", get(health::metrics::<K>))
        .route("/v1/openapi.json", get(crate::openapi::document))
        .route("/v1/signup", post(admin::signup::<K>))
        .route("/v1/me", get(admin::me::<K>))
        .route(
            "/v1/users",
            get(admin::list_users::<K>).post(admin::add_user::<K>),
        )
        .route(
            "/v1/keys",
            get(admin::list_keys::<K>).post(admin::create_key::<K>),
        )
        .route(
            "/v1/keys/{id}",
            axum::routing::delete(admin::revoke_key::<K>),
        )
        .route(
            "/v1/devices",
            get(admin::list_devices::<K>).post(admin::register_device::<K>),
        )
        .route("/v1/devices/{id}", get(admin::get_device::<K>))
        .route(
            "/v1/projects",
            get(admin::list_projects::<K>).post(admin::create_project::<K>),
        )
        .route(
            "/v1/projects/{id}",
            get(admin::get_project::<K>).put(admin::put_project::<K>),
        )
        .route(
            "/v1/projects/{id}/timelines",
            get(admin::list_timelines::<K>).post(travel::fork::<K>),
        )
        .route("/v1/projects/{id}/sync", post(sync::sync::<K>))
        .route("/v1/projects/{id}/pull", get(sync::pull::<K>))
        .route(
            "/v1/projects/{id}/devices/{device}/cursor",
            get(sync::cursor::<K>),
        )
        .route("/v1/projects/{id}/events", get(query::events::<K>))
        .route("/v1/projects/{id}/events/{event}", get(query::event::<K>))
        .route("/v1/projects/{id}/tail", get(query::tail::<K>))
        .route("/v1/projects/{id}/history", get(query::history::<K>))
        .route("/v1/projects/{id}/manifest", get(query::manifest::<K>))
        .route("/v1/projects/{id}/restore", get(travel::restore::<K>))
        .route("/v1/projects/{id}/approvals", get(approvals::list::<K>))
        .route(
            "/v1/projects/{id}/approvals/decisions",
            get(approvals::decisions::<K>),
        )
        .route(
            "/v1/projects/{id}/approvals/decisions/live",
            get(approvals::live::<K>),
        )
        .route(
            "/v1/projects/{id}/approvals/{request_id}",
            post(approvals::decide::<K>),
        )
        .route("/v1/projects/{id}/mcp-calls", get(mcp::calls::<K>))
        .route("/mcp/{id}", post(mcp::serve::<K>))
        .route(
            "/v1/blobs/{hash}",
            put(blobs::put_blob::<K>)
                .head(blobs::head_blob::<K>)
                .get(blobs::get_blob::<K>),
        )
        .fallback(|| async { ApiError::not_found("no such endpoint (see /v1/openapi.json)") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method (see /v1/openapi.json)",
            )
        })
}
