//! The cloud host of the simulation: the real `horde-cloud` router over a SQLite store and an
//! `fs:` blob store that outlive the host's crashes, served by hyper on turmoil's listener.
//!
//! The store does its work on real threads (a commit thread, tokio's blocking pool). Left to
//! turmoil's paused clocks, how many ticks a request takes would depend on the machine, and a
//! seed would not replay. So each request is read whole from the simulated network, then run
//! to completion on a real runtime ([`real`]) while the simulation waits: in simulated time
//! the cloud answers instantly, and requests are handled one at a time, in network order.

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;
use horde_cloud::{App, Config, Limits, StoreLocation};
use horde_core::{ProjectId, TenantId};
use horde_kv::sqlite::SqliteKv;
use horde_ledger::{EventFilter, Ledger, LoggedEvent, Role};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tower::ServiceExt;

use super::rng::Rng;

pub const CLOUD: &str = "cloud";
pub const PORT: u16 = 8080;

/// The runtime the cloud's code runs on (real threads, real time).
pub fn real() -> &'static tokio::runtime::Runtime {
    static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    });
    &RT
}

/// Runs `fut` on the real runtime and blocks this thread until it is done.
pub fn block_real<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    futures::executor::block_on(real().spawn(fut)).expect("a cloud task panicked")
}

/// What survives the cloud host's crashes, and what the driver sees of it.
pub struct CloudEnv {
    pub dir: PathBuf,
    pub tenant: TenantId,
    pub key: String,
    /// Probability that the host dies right after committing a batch, before answering.
    pub crash_after_commit: f64,
    /// Off once the network is healed.
    pub faults: AtomicBool,
    pub rng: Mutex<Rng>,
    /// Set by the host when it decided to die; the driver crashes it and clears this.
    pub dying: AtomicBool,
    /// Batches committed (acknowledged or not).
    pub commits: AtomicU64,
    pub boots: AtomicU64,
    pub crashes_after_commit: AtomicU64,
}

fn config(dir: &std::path::Path) -> Config {
    Config {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, PORT)),
        store: StoreLocation::Sqlite(dir.join("cloud.db")),
        blobs: format!("fs:{}", dir.join("blobs").display()),
        s3: horde_blob::S3Config::default(),
        limits: Limits::default(),
        // The limiter runs on the real clock, which a simulation must not depend on.
        rate_limit: 1_000_000,
        rate_burst: 1_000_000,
        signup_rate: 1_000,
    }
}

async fn open(dir: PathBuf) -> anyhow::Result<Arc<App<SqliteKv>>> {
    let cfg = config(&dir);
    let kv = SqliteKv::open(dir.join("cloud.db"))?;
    let blobs = horde_blob::BlobStore::open(&cfg.blobs, &cfg.s3).await?;
    Ok(App::new(Ledger::new(kv), blobs, &cfg))
}

impl CloudEnv {
    /// A new cloud directory with one tenant and an admin API key.
    pub fn create(dir: PathBuf, crash_after_commit: f64, rng: Rng) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(&dir)?;
        let d = dir.clone();
        // Outside the simulation: the driver's thread may block on the runtime itself.
        let (tenant, key) = real().block_on(async move {
            let app = open(d).await?;
            let (tenant, user) = app.ledger.create_tenant("sim", "sim@example.com").await?;
            let key = app
                .ledger
                .create_api_key(tenant.id, user.id, Role::Admin, "sim")
                .await?;
            anyhow::Ok((tenant.id, key.secret))
        })?;
        Ok(Arc::new(CloudEnv {
            dir,
            tenant,
            key,
            crash_after_commit,
            faults: AtomicBool::new(true),
            rng: Mutex::new(rng),
            dying: AtomicBool::new(false),
            commits: AtomicU64::new(0),
            boots: AtomicU64::new(0),
            crashes_after_commit: AtomicU64::new(0),
        }))
    }

    /// The project's whole log, in log order (after the simulation, the host stopped).
    pub fn log(&self, project: ProjectId) -> anyhow::Result<Vec<LoggedEvent>> {
        let (dir, tenant) = (self.dir.clone(), self.tenant);
        real().block_on(async move {
            let app = open(dir).await?;
            let mut out = Vec::new();
            let mut filter = EventFilter::default();
            loop {
                let page = app
                    .ledger
                    .events_page(tenant, project, &filter, usize::MAX)
                    .await?;
                out.extend(page.events);
                match page.next {
                    Some(n) => filter.after = Some(n),
                    None => break,
                }
            }
            anyhow::Ok(out)
        })
    }
}

/// The host's software: open the store, serve until crashed.
pub async fn host(env: Arc<CloudEnv>) -> turmoil::Result {
    let app = {
        let dir = env.dir.clone();
        block_real(async move { open(dir).await })
            .map_err(|e| format!("the cloud does not start: {e:#}"))?
    };
    env.boots.fetch_add(1, Ordering::SeqCst);
    let router = horde_cloud::router(app);
    let listener = turmoil::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let (router, env) = (router.clone(), env.clone());
        tokio::task::spawn_local(async move {
            let service =
                hyper::service::service_fn(move |req| handle(req, router.clone(), env.clone()));
            // A connection cut by a partition or a crash simply ends.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    router: axum::Router,
    env: Arc<CloudEnv>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            // The client went away mid-body: nobody reads this answer.
            return Ok(hyper::Response::builder()
                .status(400)
                .body(Full::new(Bytes::new()))
                .expect("a valid response"));
        }
    };
    let is_sync = parts.method == http::Method::POST && parts.uri.path().ends_with("/sync");
    let req = http::Request::from_parts(parts, Full::new(body));
    let (parts, body) = block_real(async move {
        let resp = router.oneshot(req).await.expect("the router is infallible");
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        (parts, body)
    });
    if is_sync && parts.status.is_success() {
        env.commits.fetch_add(1, Ordering::SeqCst);
        let die = env.faults.load(Ordering::SeqCst)
            && env
                .rng
                .lock()
                .expect("cloud rng")
                .chance(env.crash_after_commit);
        if die {
            // Committed, and the process dies before the ack leaves: the driver crashes the
            // host at the end of this step; until then the answer is held back.
            env.crashes_after_commit.fetch_add(1, Ordering::SeqCst);
            env.dying.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
    }
    Ok(hyper::Response::from_parts(parts, Full::new(body)))
}
