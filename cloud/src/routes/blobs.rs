//! Blobs: `PUT/HEAD/GET /v1/blobs/{sha256}`, scoped to the caller's tenant. Uploads are
//! streamed and hashed on the way; content that does not hash to its name is refused and
//! nothing is stored. Downloads are streamed.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use horde_blob::BlobHash;
use horde_kv::OrderedKv;

use crate::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, declared_length};
use crate::openapi::Binary;

fn parse_hash(s: &str) -> ApiResult<BlobHash> {
    s.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "blob name {s:?} is not a SHA-256 (64 lower-case hex digits)"
        ))
    })
}

fn namespace(caller: &Caller) -> String {
    caller.tenant().to_string()
}

/// Uploads a blob named by the SHA-256 of its content (idempotent).
#[utoipa::path(put, path = "/v1/blobs/{hash}", tag = "blobs", security(("bearer" = [])),
    params(("hash" = String, Path, description = "SHA-256 of the content, hex")),
    request_body(content = inline(Binary), content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "stored"), (status = 200, description = "already stored"),
        (status = 400, description = "the name is not a SHA-256, or the content does not hash to it"),
        (status = 403, description = "a viewer key"),
        (status = 413, description = "larger than the configured limit")))]
pub async fn put_blob<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath(hash): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    caller.require_write()?;
    let hash = parse_hash(&hash)?;
    let limit = app.limits.max_blob_bytes;
    if let Some(len) = declared_length(&headers).filter(|len| *len > limit) {
        return Err(ApiError::too_large(format!(
            "the blob is {len} bytes; the limit is {limit}"
        )));
    }
    // Already stored: the answer is 200 either way, but the client is still sending. Reading
    // its body to the end (within the limit) lets it read the answer on a connection that
    // stays open, instead of a reset that can swallow the answer mid-upload.
    if let Some(size) = app.blobs.head(&namespace(&caller), &hash).await? {
        let mut stream = body.into_data_stream();
        let mut read = 0u64;
        while let Some(chunk) = stream.try_next().await.ok().flatten() {
            read += chunk.len() as u64;
            if read > limit {
                break;
            }
        }
        return Ok((
            StatusCode::OK,
            axum::Json(
                serde_json::json!({ "hash": hash.to_hex(), "size": size, "created": false }),
            ),
        )
            .into_response());
    }
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let out = app
        .blobs
        .put(&namespace(&caller), &hash, Box::pin(stream), limit)
        .await?;
    metrics::counter!("horde_blob_upload_bytes_total").increment(if out.created {
        out.size
    } else {
        0
    });
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(
            serde_json::json!({ "hash": hash.to_hex(), "size": out.size, "created": out.created }),
        ),
    )
        .into_response())
}

/// Whether the tenant has this blob (Content-Length: its size).
#[utoipa::path(head, path = "/v1/blobs/{hash}", tag = "blobs", security(("bearer" = [])),
    params(("hash" = String, Path)),
    responses((status = 200, description = "present"),
        (status = 400, description = "the name is not a SHA-256"),
        (status = 404, description = "absent")))]
pub async fn head_blob<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath(hash): ApiPath<String>,
) -> ApiResult<Response> {
    let hash = parse_hash(&hash)?;
    match app.blobs.head(&namespace(&caller), &hash).await? {
        Some(size) => {
            Ok((StatusCode::OK, [(header::CONTENT_LENGTH, size.to_string())]).into_response())
        }
        None => Err(ApiError::not_found(format!("no blob {hash}"))),
    }
}

/// Downloads a blob (streamed).
#[utoipa::path(get, path = "/v1/blobs/{hash}", tag = "blobs", security(("bearer" = [])),
    params(("hash" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = inline(Binary)),
        (status = 400, description = "the name is not a SHA-256"),
        (status = 404, description = "absent")))]
pub async fn get_blob<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath(hash): ApiPath<String>,
) -> ApiResult<Response> {
    let hash = parse_hash(&hash)?;
    let (size, stream) = app
        .blobs
        .get(&namespace(&caller), &hash)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no blob {hash}")))?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
            (header::ETAG, format!("\"{}\"", hash.to_hex())),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
