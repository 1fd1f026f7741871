//! API errors: every failure is `{ "error": { "code", "message", … } }` with the status that
//! says what to do about it. Handlers return [`ApiError`]; ledger and blob errors map here.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use horde_blob::BlobError;
use horde_ledger::LedgerError;
use serde_json::{Value, json};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// More fields of the `error` object (e.g. `expected_seq`). Boxed: a `Value` is large
    /// (an ordered map: cedar-policy turns on serde_json's `preserve_order`) and errors travel
    /// in every `Result` of a handler.
    pub extra: Option<Box<Value>>,
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: None,
            retry_after: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }
    pub fn unsupported_media(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    /// The same error under a more specific code (`too_broad` rather than `bad_request`).
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }
    pub fn with(mut self, extra: Value) -> Self {
        self.extra = Some(Box::new(extra));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, code = self.code, "{}", self.message);
        } else {
            tracing::debug!(status = %self.status, code = self.code, "{}", self.message);
        }
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(Value::Object(extra)) = self.extra.map(|b| *b) {
            for (k, v) in extra {
                error[k] = v;
            }
        }
        let mut resp = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"horde\""),
            );
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&secs.to_string()).expect("digits"),
            );
        }
        resp
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        use LedgerError as L;
        let msg = e.to_string();
        match e {
            // Another tenant's ids are indistinguishable from absent ones.
            L::TenantNotFound(_) => ApiError::unauthorized("this key's tenant no longer exists"),
            L::ProjectNotFound(_) | L::TimelineNotFound(_) | L::UserNotFound(_) => {
                ApiError::not_found(msg)
            }
            L::TenantExists(_) | L::ProjectExists(_) | L::UserExists(_) => {
                ApiError::conflict("exists", msg)
            }
            L::TimelineExists {
                parent,
                fork_version,
                ..
            } => ApiError::conflict("timeline_exists", msg).with(json!({
                "parent": parent.map(|p| p.to_string()),
                "fork_version": fork_version,
            })),
            L::DeviceNotRegistered(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "unknown_device", msg)
            }
            L::DeviceKeyMismatch(_) => ApiError::conflict("device_key_mismatch", msg),
            L::Invalid(_) => ApiError::bad_request(msg),
            L::BadEvent { index, .. } => ApiError::new(StatusCode::BAD_REQUEST, "bad_event", msg)
                .with(json!({ "index": index })),
            L::BatchTooLarge { .. } => ApiError::too_large(msg),
            L::SeqGap { expected, got } => ApiError::conflict("seq_gap", msg)
                .with(json!({ "expected_seq": expected, "got_seq": got })),
            L::ChainBroken { seq } => {
                ApiError::conflict("chain_broken", msg).with(json!({ "seq": seq }))
            }
            L::SeqConflict { seq } => {
                ApiError::conflict("seq_conflict", msg).with(json!({ "seq": seq }))
            }
            L::BadHead(_) => ApiError::new(StatusCode::BAD_REQUEST, "bad_head", msg),
            L::VersionInFuture { .. } => ApiError::bad_request(msg),
            L::ApprovalNotFound(_) => ApiError::not_found(msg),
            L::ApprovalDecided { .. } => ApiError::conflict("already_decided", msg),
            L::ApprovalExpired { expires_at, .. } => {
                ApiError::conflict("expired", msg).with(json!({ "expires_at": expires_at }))
            }
            L::Corrupt(_) => ApiError::internal(msg),
            L::Kv(kv) if kv.is_retryable() || kv.is_maybe_committed() => {
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("the store is busy, retry: {kv}"),
                );
                e.retry_after = Some(1);
                e
            }
            L::Kv(kv) => match kv.code() {
                // FoundationDB's size limits: the request was too big.
                2101..=2103 => ApiError::too_large(kv.to_string()),
                _ => ApiError::internal(format!("store: {kv}")),
            },
        }
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        let msg = e.to_string();
        match e {
            BlobError::HashMismatch { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "hash_mismatch", msg)
            }
            BlobError::TooLarge { .. } => ApiError::too_large(msg),
            BlobError::BadNamespace(_) => ApiError::bad_request(msg),
            BlobError::Io(_) => ApiError::bad_request(format!("reading the upload: {msg}")),
            BlobError::BadLocation(_) | BlobError::Backend(_) => {
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "blob_store_unavailable",
                    msg,
                );
                e.retry_after = Some(1);
                e
            }
        }
    }
}
