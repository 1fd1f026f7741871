//! The OpenAPI document, generated from the handlers' annotations (`utoipa`), served at
//! `/v1/openapi.json` and printed by `horde-cloud openapi`.

use axum::Json;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::routes::{admin, approvals, blobs, health, mcp, query, sync, travel};

#[derive(OpenApi)]
#[openapi(
    info(title = "Code Horde cloud API", description = "Multi-tenant system of record for autonomous software development. Every call but signup, health and this document takes `Authorization: Bearer KEY`. Errors are `{ \"error\": { \"code\", \"message\" } }`."),
    paths(
        health::healthz, health::readyz, health::metrics,
        admin::signup, admin::me, admin::add_user, admin::list_users,
        admin::create_key, admin::list_keys, admin::revoke_key,
        admin::register_device, admin::list_devices, admin::get_device,
        admin::create_project, admin::put_project, admin::list_projects, admin::get_project,
        admin::list_timelines,
        travel::fork, travel::restore,
        sync::sync, sync::pull, sync::cursor,
        query::events, query::event, query::tail, query::history, query::manifest,
        blobs::put_blob, blobs::head_blob, blobs::get_blob,
        approvals::list, approvals::decide, approvals::decisions, approvals::live,
        mcp::serve, mcp::calls,
    ),
    components(schemas(ErrorBody, ErrorDetail, mcp::JsonRpcError, mcp::JsonRpcErrorDetail)),
    modifiers(&Bearer, &CommonResponses),
)]
pub struct ApiDoc;

/// The body of every error response ([`crate::error::ApiError`]); documentation only.
#[derive(ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong; some errors add fields (e.g. `expected_seq`, `index`, `acked_seq`).
#[derive(ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `bad_request`, `not_found`, `rate_limited`, …
    pub code: String,
    /// For people: names the input that was wrong.
    pub message: String,
}

// utoipa spells `Vec<u8>` as an array of integers, which is not what goes over the wire.
/// Raw bytes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(pub Vec<u8>);

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Answers that come from extractors and middleware rather than from a handler, added to
/// every operation they apply to, so that the document lists every status the server gives:
/// - an API key ([`crate::auth::Caller`]): 401 without a valid key, 429 over its rate limit;
/// - a JSON body ([`crate::extract::ApiJson`]): 400 not JSON, 413 over the body limit, 415
///   not `application/json`, 422 wrong, missing or unknown fields;
/// - path or query parameters ([`crate::extract::ApiPath`], [`crate::extract::ApiQuery`]):
///   400 when they do not decode;
/// - the store (everything under `/v1/`): 503 when it or the blob store is busy or
///   unreachable (`From<LedgerError>` and `From<BlobError>` for `ApiError`).
///
/// Every error response without a body of its own gets the `Error` body (but HEAD's, which
/// have none).
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut doc.paths.paths {
            let store = path.starts_with("/v1/");
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                add_common_responses(op, store);
                add_error_bodies(op);
            }
            if let Some(op) = &mut item.head {
                add_common_responses(op, store);
            }
        }
    }
}

fn add_common_responses(op: &mut Operation, store: bool) {
    let authenticated = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let json_body = op
        .request_body
        .as_ref()
        .is_some_and(|b| b.content.contains_key("application/json"));
    let parameters = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let mut add = |status: &str, description: &str| {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| Response::new(description).into());
    };
    if authenticated {
        add("401", "no API key, or an unknown or revoked one");
        add("429", "over this API key's rate limit (see Retry-After)");
    }
    if json_body {
        add("400", "the body is not JSON");
        add("413", "the body is over the size limit");
        add("415", "the body is not `Content-Type: application/json`");
        add("422", "the JSON has wrong, missing or unknown fields");
    }
    if parameters {
        add("400", "a path or query parameter does not decode");
    }
    if store {
        add(
            "503",
            "the store or the blob store is busy or unreachable (see Retry-After)",
        );
    }
}

fn add_error_bodies(op: &mut Operation) {
    for (status, response) in &mut op.responses.responses {
        if let RefOr::T(response) = response
            && (status.starts_with('4') || status.starts_with('5'))
            && response.content.is_empty()
        {
            response.content.insert(
                "application/json".to_owned(),
                Content::new(Some(Ref::from_schema_name("Error"))),
            );
        }
    }
}

pub fn json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
