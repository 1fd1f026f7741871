//! horde's MCP tools at `/mcp/{project}` (streamable HTTP), and the record of those calls at
//! `GET /v1/projects/{id}/mcp-calls`.
//!
//! Each project has its own MCP URL: a client adds it once (`claude mcp add --transport http
//! horde https://HOST/mcp/PROJECT --header "Authorization: Bearer KEY"`) and every tool then
//! reads that project, so no tool needs a project argument. The key is checked and the
//! project found (another tenant's answers 404 like an absent one) before any of the body is
//! read; then rmcp's streamable HTTP service runs the request statelessly against a
//! [`HordeMcp`] over a [`CloudBackend`] made for this caller and project: no session is kept
//! between requests (so any API process of a deployment can answer any request), both
//! lifecycles work (2026-07-28: `server/discover` and per-request `_meta`; earlier versions:
//! `initialize`, then requests that each carry `MCP-Protocol-Version`). A body is read
//! whole (at most [`MAX_MCP_BODY`]: 413) and must be one JSON-RPC 2.0 message before rmcp
//! sees it; malformed requests, and rmcp's own refusals, answer JSON-RPC errors. Viewers may
//! call the tools (they only read).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use horde_kv::OrderedKv;
use horde_mcp::HordeMcp;
use http_body_util::BodyExt;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::mcp::CloudBackend;
use crate::routes::admin::project_of;
use crate::routes::sync::parse_versionstamp;

/// Largest MCP request body (a JSON-RPC message; tool arguments are far smaller: strings of
/// at most 4 KiB, lists of at most 32).
pub const MAX_MCP_BODY: usize = 256 * 1024;
/// Default and largest page of recorded calls.
const DEFAULT_CALLS: usize = 100;

/// A JSON-RPC 2.0 error answer (documentation only: the body of the MCP route's refusals of
/// malformed requests).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JsonRpcError {
    /// Always "2.0".
    pub jsonrpc: String,
    /// The request's id, or null when it could not be read.
    #[schema(value_type = Option<Object>)]
    pub id: Option<Value>,
    pub error: JsonRpcErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JsonRpcErrorDetail {
    /// -32700: not JSON; -32600: not a JSON-RPC request rmcp can take; -32020: protocol
    /// headers or `_meta` missing or wrong.
    pub code: i64,
    pub message: String,
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

/// horde's MCP server for one project (streamable HTTP: one JSON-RPC 2.0 message per POST;
/// stateless, so there is no GET stream and no session to DELETE).
#[utoipa::path(post, path = "/mcp/{id}", operation_id = "mcp", tag = "mcp", security(("bearer" = [])),
    params(("id" = String, Path, description = "the project id")),
    request_body(content = Object, content_type = "application/json",
        description = "a JSON-RPC request or notification of the Model Context Protocol (2024-11-05 … 2026-07-28); send `Accept: application/json, text/event-stream`"),
    responses(
        (status = 200, description = "the JSON-RPC answer (application/json, or text/event-stream)"),
        (status = 202, description = "a notification, accepted"),
        (status = 400, body = JsonRpcError, description = "not JSON, not one JSON-RPC 2.0 message, or protocol headers or `_meta` missing or wrong"),
        (status = 404, description = "no such project in this tenant"),
        (status = 406, body = JsonRpcError, description = "`Accept` does not take application/json and text/event-stream"),
        (status = 413, description = "the body is larger than 256 KiB"),
        (status = 415, body = JsonRpcError, description = "the body is not `Content-Type: application/json`"),
        (status = 503, description = "the store is busy or unreachable (see Retry-After)")))]
pub async fn serve<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    req: Request,
) -> ApiResult<Response> {
    let project = project_of(&app, &caller, &id).await?;
    if crate::extract::declared_length(req.headers()).is_some_and(|n| n > MAX_MCP_BODY as u64) {
        return Err(ApiError::too_large(format!(
            "an MCP request body is at most {MAX_MCP_BODY} bytes"
        )));
    }
    let backend = Arc::new((app.clone(), caller, project));
    let version = env!("CARGO_PKG_VERSION");
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_sse_retry(None)
        .with_max_request_body_bytes(MAX_MCP_BODY)
        .with_cancellation_token(app.shutdown.child_token())
        // The server is reached by its public name; the API key, not the Host header, is
        // what keeps other sites' pages out (a browser cannot send it cross-origin unasked).
        .disable_allowed_hosts();
    let service = StreamableHttpService::new(
        move || {
            let (app, caller, project) = &*backend;
            Ok(HordeMcp::new(
                CloudBackend::new(app.clone(), caller.clone(), project.clone()),
                version,
            ))
        },
        Arc::new(NeverSessionManager::default()),
        config,
    );
    let req = match checked_body(req).await {
        Ok(req) => req,
        Err(refusal) => return Ok(refusal),
    };
    let answer = service.handle(req).await.map(Body::new);
    let json = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !answer.status().is_success() && !json {
        // rmcp's own refusals (protocol headers, Accept, a message it cannot take) are plain
        // text; a client reads JSON-RPC.
        let status = answer.status();
        let text = match http_body_util::Limited::new(answer.into_body(), MAX_ERROR_TEXT)
            .collect()
            .await
        {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
            Err(_) => status.to_string(),
        };
        return Ok(jsonrpc_error(status, Value::Null, INVALID_REQUEST, text));
    }
    Ok(answer.into_response())
}

/// JSON-RPC's codes for a body that is not JSON, and for JSON that is not a request.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
/// Longest text of an rmcp refusal passed on.
const MAX_ERROR_TEXT: usize = 4096;

fn jsonrpc_error(status: StatusCode, id: Value, code: i64, message: String) -> Response {
    (
        status,
        Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// The request with its body read (at most [`MAX_MCP_BODY`], however it is sent) and checked
/// to be one JSON-RPC 2.0 message; otherwise the JSON-RPC error to answer.
async fn checked_body(req: Request) -> Result<Request, Response> {
    let (parts, body) = req.into_parts();
    let bytes = match http_body_util::Limited::new(body, MAX_MCP_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::too_large(format!(
                "an MCP request body is at most {MAX_MCP_BODY} bytes"
            ))
            .into_response());
        }
        Err(e) => {
            return Err(
                ApiError::bad_request(format!("reading the request body: {e}")).into_response(),
            );
        }
    };
    let message: Value = serde_json::from_slice(&bytes).map_err(|e| {
        jsonrpc_error(
            StatusCode::BAD_REQUEST,
            Value::Null,
            PARSE_ERROR,
            format!("parse error: the body is not JSON ({e})"),
        )
    })?;
    if message.get("jsonrpc") != Some(&json!("2.0")) {
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        let why = if message.is_array() {
            "batches are not accepted; send one JSON-RPC 2.0 message per request"
        } else {
            "expected a JSON-RPC 2.0 message: an object with \"jsonrpc\": \"2.0\""
        };
        return Err(jsonrpc_error(
            StatusCode::BAD_REQUEST,
            id,
            INVALID_REQUEST,
            format!("invalid request: {why}"),
        ));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct McpCallsQuery {
    /// Only calls after this cursor (the `next` of the previous page).
    pub after: Option<String>,
    /// Calls per page (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// One recorded MCP call.
#[derive(Debug, Serialize, ToSchema)]
pub struct McpCallView {
    /// Pass as `after` to read on from here.
    pub cursor: String,
    /// When it was answered (µs since the Unix epoch).
    pub at: i64,
    /// The API key that made it, and its user.
    pub key_id: String,
    pub user_id: String,
    /// The MCP client's name, or "unknown" (clients of the stateless protocol name
    /// themselves in each request; earlier ones only in `initialize`).
    pub client: String,
    /// The JSON-RPC id of the call.
    pub call_id: String,
    pub tool: String,
    /// `name=value` per argument, each at most 256 bytes.
    pub args: Vec<String>,
    pub summary: String,
    /// Why it was refused, when it was.
    pub error: Option<String>,
    pub duration_ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct McpCallList {
    /// Oldest first.
    pub calls: Vec<McpCallView>,
    /// Pass as `after` for the next page; null when this page was not full.
    pub next: Option<String>,
}

/// The MCP tool calls served for this project at `/mcp/{id}`, refused ones included.
#[utoipa::path(get, path = "/v1/projects/{id}/mcp-calls", operation_id = "mcp_calls", tag = "mcp", security(("bearer" = [])),
    params(("id" = String, Path), McpCallsQuery),
    responses((status = 200, body = McpCallList), (status = 400, description = "bad cursor or limit"), (status = 404)))]
pub async fn calls<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<McpCallsQuery>,
) -> ApiResult<Json<McpCallList>> {
    let limit = q.limit.unwrap_or(DEFAULT_CALLS);
    if !(1..=horde_ledger::MAX_MCP_CALLS_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {}",
            horde_ledger::MAX_MCP_CALLS_PAGE
        )));
    }
    let after = q
        .after
        .as_deref()
        .map(|s| parse_versionstamp("after", s))
        .transpose()?;
    let project = project_of(&app, &caller, &id).await?;
    let list = app
        .ledger
        .mcp_calls(caller.tenant(), project.id, after.as_ref(), limit)
        .await?;
    let next = (list.len() == limit)
        .then(|| list.last().map(|e| hex::encode(e.cursor.as_bytes())))
        .flatten();
    Ok(Json(McpCallList {
        calls: list
            .into_iter()
            .map(|e| McpCallView {
                cursor: hex::encode(e.cursor.as_bytes()),
                at: e.call.at,
                key_id: e.call.key.to_string(),
                user_id: e.call.user.to_string(),
                client: e.call.client,
                call_id: e.call.call_id,
                tool: e.call.tool,
                args: e.call.args,
                summary: e.call.summary,
                error: e.call.error,
                duration_ms: e.call.duration_ms,
            })
            .collect(),
        next,
    }))
}
