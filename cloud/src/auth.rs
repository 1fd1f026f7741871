//! Who is calling: `Authorization: Bearer KEY` on every call but signup, health and the
//! OpenAPI document. The key is looked up on every request (a revoked key fails at once),
//! its rate limit is charged, and the request's span gets the tenant.
//!
//! Secrets are never compared directly: the store is indexed by SHA-256 of the secret, so a
//! lookup compares digests of the presented key, which reveal nothing about the stored
//! secrets (timing of a digest lookup cannot be steered towards a secret's bytes).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::{StatusCode, header, request::Parts};
use horde_core::{TenantId, UserId};
use horde_kv::OrderedKv;
use horde_ledger::{ApiKey, Role};

use crate::App;
use crate::error::ApiError;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key: ApiKey,
}

impl Caller {
    pub fn tenant(&self) -> TenantId {
        self.key.tenant
    }
    pub fn user(&self) -> UserId {
        self.key.user
    }
    pub fn role(&self) -> Role {
        self.key.role
    }
    /// Members and admins write; viewers only read.
    pub fn require_write(&self) -> Result<(), ApiError> {
        match self.key.role {
            Role::Admin | Role::Member => Ok(()),
            Role::Viewer => Err(ApiError::forbidden(
                "this API key has the viewer role: it can read but not write",
            )),
        }
    }
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.key.role {
            Role::Admin => Ok(()),
            _ => Err(ApiError::forbidden(
                "this needs an API key with the admin role",
            )),
        }
    }
}

/// Longest `Authorization` header accepted.
const MAX_AUTH_HEADER: usize = 256;

impl<K: OrderedKv> FromRequestParts<Arc<App<K>>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App<K>>) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer KEY` header"))?;
        if header.len() > MAX_AUTH_HEADER {
            return Err(ApiError::unauthorized(
                "the Authorization header is too long",
            ));
        }
        let secret = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer KEY`")
            })?;
        let key = app
            .ledger
            .authenticate(secret)
            .await?
            .ok_or_else(|| ApiError::unauthorized("unknown or revoked API key"))?;
        let span = tracing::Span::current();
        span.record("tenant", tracing::field::display(key.tenant));
        if let Err(wait) = app.rate.check_key(&key.id) {
            let secs = wait
                .wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ))
                .as_secs_f64()
                .ceil()
                .max(1.0) as u64;
            metrics::counter!("horde_rate_limited_total").increment(1);
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests for this API key; retry in {secs} s"),
            );
            e.retry_after = Some(secs);
            return Err(e);
        }
        Ok(Caller { key })
    }
}
