//! `horde-cloud`: the multi-tenant API over the ledger (`horde-ledger` on an `OrderedKv`
//! store) and a blob store (`horde-blob`).
//!
//! - [`App`] holds what every request needs; [`router`] is the whole HTTP surface;
//!   [`serve`] binds, serves and shuts down gracefully (SIGINT/SIGTERM: stop accepting,
//!   end live tails, finish requests in flight).
//! - Invariants: every handler that touches tenant data gets the tenant from the caller's
//!   API key ([`auth::Caller`]) and passes it to the ledger, which builds keys from that
//!   tenant's prefix only; ids of other tenants are indistinguishable from absent ones (404).
//!   Writes need a member or admin key. Every failure is a JSON error with a code.

pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
pub mod mcp;
mod metrics_layer;
pub mod openapi;
pub mod routes;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use governor::{DefaultKeyedRateLimiter, Quota};
use horde_blob::BlobStore;
use horde_core::{ApiKeyId, TenantId};
use horde_kv::OrderedKv;
use horde_ledger::Ledger;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

pub use config::{Config, Limits, ServeArgs, StoreLocation};

/// What every request needs.
pub struct App<K: OrderedKv> {
    pub ledger: Ledger<K>,
    pub blobs: BlobStore,
    pub limits: Limits,
    /// Requests per API key.
    pub rate: DefaultKeyedRateLimiter<ApiKeyId>,
    /// Signups per client address.
    pub signup_rate: DefaultKeyedRateLimiter<IpAddr>,
    /// Bumped after every append, so live tails wake up at once (other API processes of a
    /// FoundationDB deployment are seen by the tails' periodic poll).
    pub appended: tokio::sync::watch::Sender<u64>,
    /// Bumped after every approval decision, so live decision streams wake up at once.
    pub decided: tokio::sync::watch::Sender<u64>,
    /// Open live tails per tenant (each holds a store reader while it polls).
    pub tails: Slots,
    /// Running restore streams (each holds a blocking thread).
    pub restores: Slots,
    /// Cancelled on shutdown: live tails end so that the server can drain.
    pub shutdown: CancellationToken,
    pub metrics: PrometheusHandle,
}

impl<K: OrderedKv> App<K> {
    pub fn new(ledger: Ledger<K>, blobs: BlobStore, config: &Config) -> Arc<Self> {
        let nz = |n: u32| NonZeroU32::new(n).expect("config checked rates are at least 1");
        Arc::new(App {
            ledger,
            blobs,
            limits: config.limits,
            rate: governor::RateLimiter::dashmap(
                Quota::per_second(nz(config.rate_limit)).allow_burst(nz(config.rate_burst)),
            ),
            signup_rate: governor::RateLimiter::dashmap(
                Quota::per_minute(nz(config.signup_rate)).allow_burst(nz(config.signup_rate)),
            ),
            appended: tokio::sync::watch::channel(0).0,
            decided: tokio::sync::watch::channel(0).0,
            tails: Slots::new(
                MAX_TAILS_PER_TENANT,
                usize::MAX,
                "too_many_tails",
                "live tails",
            ),
            restores: Slots::new(
                MAX_RESTORES_PER_TENANT,
                MAX_RESTORES,
                "too_many_restores",
                "restore streams",
            ),
            shutdown: CancellationToken::new(),
            metrics: metrics_layer::handle(),
        })
    }
}

/// Most live tails one tenant may hold open at once.
pub const MAX_TAILS_PER_TENANT: usize = 32;
/// Most restore streams one tenant may have running at once, and the whole server. Each
/// holds a blocking thread while its client reads (and the blob store's file reads need
/// blocking threads too), so they are bounded well below tokio's blocking pool (512).
pub const MAX_RESTORES_PER_TENANT: usize = 8;
pub const MAX_RESTORES: usize = 64;

#[derive(Default)]
struct SlotCounts {
    by_tenant: std::collections::HashMap<TenantId, usize>,
    total: usize,
}

/// Counts long-running requests (live tails, restore streams) per tenant and in all.
pub struct Slots {
    counts: Arc<std::sync::Mutex<SlotCounts>>,
    per_tenant: usize,
    total: usize,
    /// The error code of a refusal and what is counted, for its message.
    code: &'static str,
    what: &'static str,
}

/// One open slot; freed when dropped.
pub struct Slot {
    counts: Arc<std::sync::Mutex<SlotCounts>>,
    tenant: TenantId,
}

impl Slots {
    pub fn new(per_tenant: usize, total: usize, code: &'static str, what: &'static str) -> Self {
        Slots {
            counts: Arc::default(),
            per_tenant,
            total,
            code,
            what,
        }
    }

    /// A slot for `tenant`: 429 past the tenant's limit, 503 past the server's.
    pub fn acquire(&self, tenant: TenantId) -> Result<Slot, error::ApiError> {
        let mut counts = self.counts.lock().expect("slot counts");
        let mine = counts.by_tenant.get(&tenant).copied().unwrap_or(0);
        let refusal = if mine >= self.per_tenant {
            Some(error::ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                self.code,
                format!(
                    "this tenant already has {} {} open; close one or retry later",
                    self.per_tenant, self.what
                ),
            ))
        } else if counts.total >= self.total {
            Some(error::ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                self.code,
                format!(
                    "the server has {} {} open; retry later",
                    self.total, self.what
                ),
            ))
        } else {
            None
        };
        if let Some(mut e) = refusal {
            e.retry_after = Some(5);
            return Err(e);
        }
        *counts.by_tenant.entry(tenant).or_default() += 1;
        counts.total += 1;
        Ok(Slot {
            counts: self.counts.clone(),
            tenant,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("slot counts");
        counts.total -= 1;
        if let Some(n) = counts.by_tenant.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                counts.by_tenant.remove(&self.tenant);
            }
        }
    }
}

/// The whole HTTP surface.
pub fn router<K: OrderedKv>(app: Arc<App<K>>) -> Router {
    routes::router::<K>()
        .layer(axum::middleware::from_fn(limit_headers))
        .layer(axum::middleware::from_fn(metrics_layer::track))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |req: &axum::http::Request<axum::body::Body>| {
                    tracing::info_span!(
                        "request",
                        method = %req.method(),
                        path = %req.uri().path(),
                        tenant = tracing::field::Empty,
                        project = tracing::field::Empty,
                        device = tracing::field::Empty,
                    )
                },
            ),
        )
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                axum::response::IntoResponse::into_response(error::ApiError::internal(
                    "the server failed while handling this request",
                ))
            },
        ))
        .with_state(app)
}

/// Largest total size of a request's headers (hyper itself refuses far larger ones).
pub const MAX_HEADER_BYTES: usize = 16 << 10;

async fn limit_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let size: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.uri().to_string().len();
    if size > MAX_HEADER_BYTES {
        return axum::response::IntoResponse::into_response(error::ApiError::new(
            axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the request line and headers are {size} bytes; the limit is {MAX_HEADER_BYTES}"
            ),
        ));
    }
    next.run(req).await
}

/// Runs the server until SIGINT or SIGTERM. `on_bound` gets the bound address (port 0 picks
/// a free one).
pub async fn serve(config: Config, on_bound: impl FnOnce(SocketAddr)) -> anyhow::Result<()> {
    let blobs = BlobStore::open(&config.blobs, &config.s3)
        .await
        .with_context(|| format!("opening the blob store {}", config.blobs))?;
    match &config.store {
        StoreLocation::Sqlite(path) => {
            let kv = horde_kv::sqlite::SqliteKv::open(path)
                .with_context(|| format!("opening the store {}", path.display()))?;
            run(Ledger::new(kv), blobs, config, on_bound).await
        }
        #[cfg(feature = "fdb")]
        StoreLocation::Fdb(cluster) => {
            let kv = horde_kv::fdb::FdbKv::open(cluster.as_deref())
                .context("connecting to FoundationDB")?;
            run(Ledger::new(kv), blobs, config, on_bound).await
        }
        #[cfg(not(feature = "fdb"))]
        StoreLocation::Fdb(_) => anyhow::bail!(
            "this horde-cloud was built without FoundationDB support: rebuild it with \
             `cargo build --release -p horde-cloud --features fdb` (needs libfdb_c), or use \
             --store sqlite:PATH"
        ),
    }
}

async fn run<K: OrderedKv>(
    ledger: Ledger<K>,
    blobs: BlobStore,
    config: Config,
    on_bound: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let app = App::new(ledger, blobs, &config);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, blobs = %app.blobs.describe(), "horde-cloud listening");
    on_bound(addr);
    let shutdown = app.shutdown.clone();
    // Rate-limiter state of keys and addresses not seen lately is dropped.
    let limits = app.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = limits.shutdown.cancelled() => break,
                _ = every.tick() => {
                    limits.rate.retain_recent();
                    limits.signup_rate.retain_recent();
                }
            }
        }
    });
    let service = router(app).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: finishing requests in flight");
            shutdown.cancel();
        })
        .await
        .context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_limited_per_tenant_and_in_all_and_freed_on_drop() {
        let slots = Slots::new(2, 3, "too_many_things", "things");
        let (a, b) = (TenantId::new(), TenantId::new());
        let a1 = slots.acquire(a).expect("a's first");
        let _a2 = slots.acquire(a).expect("a's second");
        let refused = slots.acquire(a).err().expect("a's third");
        assert_eq!(
            (refused.status, refused.code, refused.retry_after),
            (
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "too_many_things",
                Some(5)
            )
        );
        let _b1 = slots.acquire(b).expect("b's first");
        let full = slots.acquire(b).err().expect("the server is full");
        assert_eq!(full.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        drop(a1);
        let _b2 = slots.acquire(b).expect("a slot was freed");
        assert!(slots.acquire(a).is_err());
    }
}
