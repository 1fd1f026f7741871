//! The cloud's HTTP API as the syncer uses it, over a [`Transport`] that only moves bytes.
//!
//! Every request and every answer is built and parsed here, so the real client
//! ([`HttpTransport`], reqwest) and a simulated network (turmoil, in tests) run the same
//! protocol code. Errors say whether trying again can help ([`SyncError::is_transient`]).

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use horde_core::proto::{PullPage, SyncAck, SyncBatch};
use horde_core::{BlobHash, DeviceId, ProjectId, TimelineId};
use http::{Method, StatusCode};
use prost::Message;
use serde_json::{Value, json};

use crate::store::StoreError;

pub const PROTOBUF: &str = "application/x-protobuf";
/// Longest any one request may take (a blob upload of a few hundred MB included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest one request waits in total for a cloud that asks to slow down (then it fails as
/// transient and the sync's own backoff takes over).
pub const MAX_PACING: Duration = Duration::from_secs(60);
/// Answers larger than this are refused (a pull page is at most a few MB).
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    Bytes(Bytes),
    /// A file streamed from disk (a blob).
    File {
        path: PathBuf,
        len: u64,
    },
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// `/v1/...` with its query.
    pub path: String,
    pub content_type: Option<&'static str>,
    pub body: Body,
}

#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

/// Moves a request to the cloud and its answer back (with the API key).
pub trait Transport: Send + Sync {
    fn send(&self, req: Request) -> impl Future<Output = Result<Response, SyncError>> + Send;
    /// Where requests go, for messages.
    fn describe(&self) -> String;
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the cloud answered {status} {code}: {message}")]
    Server {
        status: StatusCode,
        code: String,
        message: String,
        retry_after: Option<Duration>,
        /// The whole answer; boxed, as a `Value` is large (an ordered map: cedar-policy turns
        /// on serde_json's `preserve_order`) and this error travels in every `Result`.
        body: Box<Value>,
    },
    #[error("unexpected answer from the cloud: {0}")]
    Protocol(String),
    #[error("events from the cloud do not verify: {0}")]
    Verify(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no API key: pass --key to `horde remote add` or set HORDE_API_KEY")]
    NoKey,
}

impl From<rusqlite::Error> for SyncError {
    fn from(e: rusqlite::Error) -> Self {
        SyncError::Store(StoreError::from(e))
    }
}

impl SyncError {
    /// Whether the same request may succeed later (network, overload, server errors).
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Unreachable { .. } => true,
            SyncError::Server { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
            }
            // A cut connection can truncate an answer into something unparsable.
            SyncError::Protocol(_) => true,
            _ => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SyncError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn code(&self) -> Option<&str> {
        match self {
            SyncError::Server { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// The API of one cloud for one project, as one device.
pub struct Client<T> {
    pub transport: T,
    pub project: ProjectId,
}

/// A timeline as the cloud lists it.
#[derive(Debug, Clone)]
pub struct RemoteTimeline {
    pub id: TimelineId,
    pub parent: Option<TimelineId>,
    pub fork_version: Option<u64>,
}

impl<T: Transport> Client<T> {
    pub fn new(transport: T, project: ProjectId) -> Self {
        Self { transport, project }
    }

    async fn call(&self, req: Request) -> Result<Response, SyncError> {
        // A cloud that asks us to slow down (429, or 503 with Retry-After) is obeyed here, per
        // request, so a sync of thousands of blobs paces itself instead of failing.
        let mut waited = Duration::ZERO;
        let resp = loop {
            let resp = self.transport.send(req.clone()).await?;
            let slow_down = resp.status == StatusCode::TOO_MANY_REQUESTS
                || (resp.status == StatusCode::SERVICE_UNAVAILABLE && resp.retry_after.is_some());
            if !slow_down || waited >= MAX_PACING {
                break resp;
            }
            let wait = resp
                .retry_after
                .unwrap_or(Duration::from_secs(1))
                .clamp(Duration::from_millis(100), Duration::from_secs(10));
            tokio::time::sleep(wait).await;
            waited += wait;
        };
        if resp.status.is_success() {
            return Ok(resp);
        }
        let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        let err = &body["error"];
        Err(SyncError::Server {
            status: resp.status,
            code: err["code"].as_str().unwrap_or("").to_owned(),
            message: err["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&resp.body)
                        .chars()
                        .take(200)
                        .collect()
                }),
            retry_after: resp.retry_after,
            body: Box::new(body),
        })
    }

    fn json(method: Method, path: String, v: &Value) -> Request {
        Request {
            method,
            path,
            content_type: Some("application/json"),
            body: Body::Bytes(Bytes::from(v.to_string())),
        }
    }

    fn get(path: String) -> Request {
        Request {
            method: Method::GET,
            path,
            content_type: None,
            body: Body::Empty,
        }
    }

    fn parse_json(resp: &Response) -> Result<Value, SyncError> {
        serde_json::from_slice(&resp.body)
            .map_err(|e| SyncError::Protocol(format!("a JSON answer did not parse: {e}")))
    }

    /// Who the key belongs to (`GET /v1/me`): checks the key and that the cloud answers.
    pub async fn me(&self) -> Result<Value, SyncError> {
        Self::parse_json(&self.call(Self::get("/v1/me".into())).await?)
    }

    /// Creates the project with this id and main timeline, or checks that it is that one.
    pub async fn put_project(&self, name: &str, main: TimelineId) -> Result<(), SyncError> {
        let body = json!({"name": name, "main_timeline": main.to_string()});
        self.call(Self::json(
            Method::PUT,
            format!("/v1/projects/{}", self.project),
            &body,
        ))
        .await?;
        Ok(())
    }

    /// The project's main timeline, when it exists (a clone's first question).
    pub async fn project(&self) -> Result<Value, SyncError> {
        Self::parse_json(
            &self
                .call(Self::get(format!("/v1/projects/{}", self.project)))
                .await?,
        )
    }

    pub async fn register_device(
        &self,
        device: DeviceId,
        public_key: &[u8; 32],
        name: &str,
    ) -> Result<(), SyncError> {
        let body =
            json!({"id": device.to_string(), "public_key": hex::encode(public_key), "name": name});
        self.call(Self::json(Method::POST, "/v1/devices".into(), &body))
            .await?;
        Ok(())
    }

    pub async fn timelines(&self) -> Result<Vec<RemoteTimeline>, SyncError> {
        let v = Self::parse_json(
            &self
                .call(Self::get(format!(
                    "/v1/projects/{}/timelines",
                    self.project
                )))
                .await?,
        )?;
        let bad = |what: &str| SyncError::Protocol(format!("timeline list: {what}"));
        let list = v["timelines"].as_array().ok_or_else(|| bad("no list"))?;
        list.iter()
            .map(|t| {
                let id = t["id"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad("bad id"))?;
                let parent = match t["parent"].as_str() {
                    Some(p) => Some(p.parse().map_err(|_| bad("bad parent"))?),
                    None => None,
                };
                Ok(RemoteTimeline {
                    id,
                    parent,
                    fork_version: t["fork_version"].as_u64(),
                })
            })
            .collect()
    }

    /// Announces a fork made on this device (idempotent with its id).
    pub async fn create_timeline(
        &self,
        id: TimelineId,
        parent: TimelineId,
        at: Option<horde_core::EventId>,
    ) -> Result<(), SyncError> {
        let mut body = json!({"timeline_id": id.to_string(), "parent": parent.to_string()});
        if let Some(at) = at {
            body["at"] = Value::String(at.to_string());
        }
        match self
            .call(Self::json(
                Method::POST,
                format!("/v1/projects/{}/timelines", self.project),
                &body,
            ))
            .await
        {
            Ok(_) => Ok(()),
            // Made by an earlier attempt whose answer was lost.
            Err(e) if e.code() == Some("timeline_exists") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The cloud's acknowledged seq of this device (0: nothing).
    pub async fn cursor(&self, device: DeviceId) -> Result<u64, SyncError> {
        let v = Self::parse_json(
            &self
                .call(Self::get(format!(
                    "/v1/projects/{}/devices/{device}/cursor",
                    self.project
                )))
                .await?,
        )?;
        v["acked_seq"]
            .as_u64()
            .or_else(|| v["seq"].as_u64())
            .ok_or_else(|| SyncError::Protocol(format!("cursor answer without a seq: {v}")))
    }

    /// Whether the cloud has this blob.
    pub async fn has_blob(&self, hash: &BlobHash) -> Result<bool, SyncError> {
        let req = Request {
            method: Method::HEAD,
            path: format!("/v1/blobs/{}", hash.to_hex()),
            content_type: None,
            body: Body::Empty,
        };
        match self.call(req).await {
            Ok(_) => Ok(true),
            Err(SyncError::Server { status, .. }) if status == StatusCode::NOT_FOUND => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn put_blob(
        &self,
        hash: &BlobHash,
        path: PathBuf,
        len: u64,
    ) -> Result<(), SyncError> {
        let req = Request {
            method: Method::PUT,
            path: format!("/v1/blobs/{}", hash.to_hex()),
            content_type: Some("application/octet-stream"),
            body: Body::File { path, len },
        };
        self.call(req).await?;
        Ok(())
    }

    pub async fn get_blob(&self, hash: &BlobHash) -> Result<Bytes, SyncError> {
        let resp = self
            .call(Self::get(format!("/v1/blobs/{}", hash.to_hex())))
            .await?;
        if BlobHash::of(&resp.body) != *hash {
            return Err(SyncError::Protocol(format!(
                "blob {hash} arrived with other content (cut short?)"
            )));
        }
        Ok(resp.body)
    }

    /// Sends one batch; the ack says how far the cloud holds this device's chain.
    pub async fn push(&self, batch: &SyncBatch) -> Result<SyncAck, SyncError> {
        let req = Request {
            method: Method::POST,
            path: format!("/v1/projects/{}/sync", self.project),
            content_type: Some(PROTOBUF),
            body: Body::Bytes(Bytes::from(batch.encode_to_vec())),
        };
        let resp = self.call(req).await?;
        SyncAck::decode(resp.body.as_ref())
            .map_err(|e| SyncError::Protocol(format!("the sync ack did not decode: {e}")))
    }

    /// One page of other devices' events after `after`.
    pub async fn pull(
        &self,
        after: Option<&[u8]>,
        exclude: DeviceId,
        limit: usize,
    ) -> Result<PullPage, SyncError> {
        let mut path = format!(
            "/v1/projects/{}/pull?exclude_device={exclude}&limit={limit}",
            self.project
        );
        if let Some(a) = after {
            path.push_str("&after=");
            path.push_str(&hex::encode(a));
        }
        let resp = self.call(Self::get(path)).await?;
        PullPage::decode(resp.body.as_ref())
            .map_err(|e| SyncError::Protocol(format!("a pull page did not decode: {e}")))
    }

    /// The versionstamp of one of this project's events (for events a lost ack left unknown).
    pub async fn event_versionstamp(
        &self,
        event: horde_core::EventId,
    ) -> Result<Vec<u8>, SyncError> {
        let v = Self::parse_json(
            &self
                .call(Self::get(format!(
                    "/v1/projects/{}/events/{event}",
                    self.project
                )))
                .await?,
        )?;
        v["versionstamp"]
            .as_str()
            .and_then(|s| hex::decode(s).ok())
            .filter(|b| b.len() == 12)
            .ok_or_else(|| SyncError::Protocol(format!("event {event} without a versionstamp")))
    }
}

/// A decision a person took through the cloud's API on one of this project's requests.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RemoteDecision {
    /// Where the decision feed goes on after this one.
    pub cursor: String,
    pub request_id: String,
    pub grant: bool,
    /// The deciding user's email.
    pub by: String,
    #[serde(default)]
    pub reason: String,
    /// "", exact, prefix or program.
    #[serde(default)]
    pub remember: String,
    /// "", session or repo.
    #[serde(default)]
    pub scope: String,
}

impl<T: Transport> Client<T> {
    /// Decisions taken in the cloud that this project's edges have not recorded yet.
    pub async fn decisions(&self, after: Option<&str>) -> Result<Vec<RemoteDecision>, SyncError> {
        let mut path = format!("/v1/projects/{}/approvals/decisions", self.project);
        if let Some(a) = after {
            path.push_str("?after=");
            path.push_str(a);
        }
        let v = Self::parse_json(&self.call(Self::get(path)).await?)?;
        serde_json::from_value(v["decisions"].clone())
            .map_err(|e| SyncError::Protocol(format!("a decision list did not parse: {e}")))
    }
}

/// Longest server-sent event accepted from a live decision stream.
const MAX_SSE_EVENT: usize = 64 << 10;

/// The real network: HTTP(S) with reqwest, the API key as a bearer token.
pub struct HttpTransport {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl HttpTransport {
    pub fn new(base: &str, key: &str) -> Result<Self, SyncError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("horde/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SyncError::Unreachable {
                url: base.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            http,
        })
    }
}

impl Transport for HttpTransport {
    fn describe(&self) -> String {
        self.base.clone()
    }

    async fn send(&self, req: Request) -> Result<Response, SyncError> {
        let url = format!("{}{}", self.base, req.path);
        let unreachable = |e: &dyn std::fmt::Display| SyncError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        };
        let mut b = self
            .http
            .request(req.method.clone(), &url)
            .bearer_auth(&self.key);
        if let Some(ct) = req.content_type {
            b = b.header(http::header::CONTENT_TYPE, ct);
        }
        b = match req.body {
            Body::Empty => b,
            Body::Bytes(bytes) => b.body(bytes),
            Body::File { path, len } => {
                let f = tokio::fs::File::open(&path).await.map_err(|e| {
                    SyncError::Store(StoreError::io(format!("cannot read {}", path.display()), e))
                })?;
                let stream = tokio_util_stream(f);
                b.header(http::header::CONTENT_LENGTH, len)
                    .body(reqwest::Body::wrap_stream(stream))
            }
        };
        let resp = b.send().await.map_err(|e| unreachable(&error_chain(&e)))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if resp
            .content_length()
            .is_some_and(|l| l > MAX_RESPONSE_BYTES as u64)
        {
            return Err(SyncError::Protocol(format!(
                "an answer of {} bytes is over the limit of {MAX_RESPONSE_BYTES}",
                resp.content_length().unwrap_or(0)
            )));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| unreachable(&error_chain(&e)))?;
        Ok(Response {
            status,
            retry_after,
            body,
        })
    }
}

impl HttpTransport {
    /// Follows the cloud's live decision stream (`…/approvals/decisions/live`, server-sent
    /// events) after `after`, calling `each` with every decision as it is taken. Returns when
    /// the stream ends (server shutdown, a cut connection, a revoked key): the caller
    /// reconnects from the last cursor.
    pub async fn follow_decisions(
        &self,
        project: ProjectId,
        after: Option<&str>,
        mut each: impl FnMut(RemoteDecision),
    ) -> Result<(), SyncError> {
        use futures::StreamExt;
        let url = format!(
            "{}/v1/projects/{project}/approvals/decisions/live",
            self.base
        );
        let unreachable = |e: &dyn std::fmt::Display| SyncError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        };
        // No overall timeout: the stream is meant to stay open (keep-alives every 15 s).
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("horde/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| unreachable(&e))?;
        let mut req = http
            .get(&url)
            .bearer_auth(&self.key)
            .header(http::header::ACCEPT, "text/event-stream");
        if let Some(a) = after {
            req = req.header("last-event-id", a);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| unreachable(&error_chain(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.bytes().await.unwrap_or_default();
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            return Err(SyncError::Server {
                status,
                code: v["error"]["code"].as_str().unwrap_or("").to_owned(),
                message: v["error"]["message"].as_str().unwrap_or("").to_owned(),
                retry_after: None,
                body: Box::new(v),
            });
        }
        let mut stream = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| unreachable(&error_chain(&e)))?;
            buf.extend_from_slice(&chunk);
            while let Some(end) = find_event_end(&buf) {
                let event: Vec<u8> = buf.drain(..end).collect();
                if let Some(d) = parse_decision_event(&event)? {
                    each(d);
                }
            }
            if buf.len() > MAX_SSE_EVENT {
                return Err(SyncError::Protocol(format!(
                    "a live decision event is over {MAX_SSE_EVENT} bytes"
                )));
            }
        }
        Ok(())
    }
}

/// Where the first server-sent event in `buf` ends (after its blank line), if it is whole.
fn find_event_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A `decision` event's data; other events (keep-alive comments) are `None`.
fn parse_decision_event(event: &[u8]) -> Result<Option<RemoteDecision>, SyncError> {
    let text = String::from_utf8_lossy(event);
    let mut kind = "message";
    let mut data = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            kind = v.trim();
        } else if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    match kind {
        "decision" => serde_json::from_str(&data)
            .map(Some)
            .map_err(|e| SyncError::Protocol(format!("a live decision did not parse: {e}"))),
        "error" => Err(SyncError::Protocol(format!(
            "the live decision stream failed: {data}"
        ))),
        _ => Ok(None),
    }
}

/// A file as a stream of chunks for an upload body.
fn tokio_util_stream(
    f: tokio::fs::File,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    use tokio::io::AsyncReadExt;
    futures::stream::unfold(Some(f), |f| async move {
        let mut f = f?;
        let mut buf = vec![0u8; 256 << 10];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// reqwest's error with its causes ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
