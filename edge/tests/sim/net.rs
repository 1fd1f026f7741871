//! The syncer's [`Transport`] over turmoil's TCP (hyper's client, one connection per
//! request), with message-level faults drawn from the seed: a request sent twice (the syncer
//! gets one of the answers), an older request sent again later (reordering), and an answer
//! lost after the cloud processed the request.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use horde::sync::client::{Body, Request, Response};
use horde::sync::{SyncError, Transport};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use super::cloud::{CLOUD, PORT};
use super::rng::Rng;

/// A request with no answer after this long has been lost (turmoil drops the segments of a
/// partitioned link and never retransmits).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests kept for replays.
const REPLAY_WINDOW: usize = 16;

/// Probabilities of the message faults, per request.
#[derive(Debug, Clone, Copy)]
pub struct FaultRates {
    pub duplicate: f64,
    pub replay: f64,
    pub lose_answer: f64,
}

/// What the transports did, for the report.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub duplicated: AtomicU64,
    pub replayed: AtomicU64,
    pub answers_lost: AtomicU64,
    pub failed: AtomicU64,
}

pub struct SimTransport {
    key: String,
    rates: FaultRates,
    /// Off once the network is healed.
    pub faults: Arc<AtomicBool>,
    pub counters: Arc<Counters>,
    state: Mutex<State>,
}

struct State {
    rng: Rng,
    sent: VecDeque<Request>,
}

/// What to do to one request.
struct Plan {
    replay: Option<Request>,
    duplicate: bool,
    /// With a duplicate: hand the syncer the second answer rather than the first.
    second: bool,
    lose_answer: bool,
}

impl SimTransport {
    pub fn new(
        key: String,
        rates: FaultRates,
        rng: Rng,
        faults: Arc<AtomicBool>,
        counters: Arc<Counters>,
    ) -> Self {
        SimTransport {
            key,
            rates,
            faults,
            counters,
            state: Mutex::new(State {
                rng,
                sent: VecDeque::new(),
            }),
        }
    }

    fn plan(&self, req: &Request) -> Plan {
        let mut st = self.state.lock().expect("transport state");
        let mut plan = Plan {
            replay: None,
            duplicate: false,
            second: false,
            lose_answer: false,
        };
        if self.faults.load(Ordering::SeqCst) {
            let r = self.rates;
            if !st.sent.is_empty() && st.rng.chance(r.replay) {
                let n = st.sent.len() as u64;
                let i = st.rng.below(n) as usize;
                plan.replay = st.sent.get(i).cloned();
            }
            plan.duplicate = st.rng.chance(r.duplicate);
            plan.second = st.rng.chance(0.5);
            plan.lose_answer = st.rng.chance(r.lose_answer);
        }
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            st.sent.push_back(req.clone());
            if st.sent.len() > REPLAY_WINDOW {
                st.sent.pop_front();
            }
        }
        plan
    }

    /// One request on its own connection.
    async fn once(&self, req: Request) -> Result<Response, SyncError> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let r = match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(req)).await {
            Ok(r) => r,
            Err(_) => Err(unreachable("no answer (timed out)")),
        };
        if r.is_err() {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    async fn exchange(&self, req: Request) -> Result<Response, SyncError> {
        let stream = turmoil::net::TcpStream::connect((CLOUD, PORT))
            .await
            .map_err(|e| unreachable(&format!("connect: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&format!("handshake: {e}")))?;
        let conn = AbortOnDrop(tokio::task::spawn(conn));
        let body = match req.body {
            Body::Empty => Bytes::new(),
            Body::Bytes(b) => b,
            Body::File { path, .. } => Bytes::from(std::fs::read(&path).map_err(|e| {
                SyncError::Protocol(format!("the sim cannot read {}: {e}", path.display()))
            })?),
        };
        let mut b = http::Request::builder()
            .method(req.method)
            .uri(req.path)
            .header(http::header::HOST, CLOUD)
            .header(http::header::AUTHORIZATION, format!("Bearer {}", self.key));
        if let Some(ct) = req.content_type {
            b = b.header(http::header::CONTENT_TYPE, ct);
        }
        let req = b
            .body(Full::new(body))
            .map_err(|e| SyncError::Protocol(format!("a request did not build: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(&format!("send: {e}")))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(&format!("body: {e}")))?
            .to_bytes();
        drop(conn);
        Ok(Response {
            status,
            retry_after,
            body,
        })
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn unreachable(reason: &str) -> SyncError {
    SyncError::Unreachable {
        url: format!("http://{CLOUD}:{PORT}"),
        reason: reason.to_owned(),
    }
}

impl Transport for SimTransport {
    fn describe(&self) -> String {
        format!("sim://{CLOUD}:{PORT}")
    }

    async fn send(&self, req: Request) -> Result<Response, SyncError> {
        let plan = self.plan(&req);
        if let Some(old) = plan.replay {
            self.counters.replayed.fetch_add(1, Ordering::Relaxed);
            let _ = self.once(old).await;
        }
        let mut answer = if plan.duplicate {
            self.counters.duplicated.fetch_add(1, Ordering::Relaxed);
            let first = self.once(req.clone()).await;
            let second = self.once(req).await;
            if plan.second { second } else { first }
        } else {
            self.once(req).await
        };
        if plan.lose_answer && answer.is_ok() {
            self.counters.answers_lost.fetch_add(1, Ordering::Relaxed);
            answer = Err(unreachable("the answer was lost"));
        }
        answer
    }
}
