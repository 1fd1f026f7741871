//! Claude Code's `http` hooks, answered by the repository's daemon: the agent POSTs each tool
//! call's hook payload to `127.0.0.1`, so no process is started for it (a `horde hook` process
//! costs the agent a spawn per event; see `horde-bench hooks`).
//!
//! - The endpoint (`.horde/hooks-http.json`, mode 0600) is a port and a token. `horde hooks
//!   install claude --transport http` writes it and puts both in Claude Code's settings: the
//!   URL, and the token as a Bearer header. The daemon listens there while the file exists.
//! - Paths: `POST /horde/hook/{agent}/{event}?mode=…&role=…&deadline_ms=…&wait=…` answers in
//!   the agent's protocol, as `horde hook` prints it; `GET /horde/health` says which
//!   repository the endpoint records. Anything without the token is refused (401): a web
//!   page in a browser can reach 127.0.0.1, and must not write to the ledger.
//! - The payload is bounded like a hook's stdin; what cannot be recorded is answered by mode
//!   ([`super::settle`]), within the deadline the URL gives.

use std::convert::Infallible;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AgentKind, Answer, Mode, answer, fallback, kind_of};
use crate::store::Layout;

/// The endpoint's file in `.horde/`.
pub const FILE: &str = "hooks-http.json";

/// A payload is read up to this size (as a hook's stdin; larger ones are refused).
const MAX_BODY: usize = 64 << 20;

/// Ports horde picks from: below Linux's ephemeral range (32768–60999), so that an outgoing
/// connection does not take the port while the daemon is away.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// The events Claude Code sends over HTTP: the ones every tool call fires. The others stay
/// `horde hook` processes, which start the daemon when it is not running.
pub const EVENTS: &[&str] = &["PreToolUse", "PostToolUse", "PostToolUseFailure"];

/// Where a repository's daemon answers Claude Code's HTTP hooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub port: u16,
    /// The Bearer token the hooks send (hex of 32 random bytes).
    pub token: String,
}

pub fn path(layout: &Layout) -> PathBuf {
    layout.dir.join(FILE)
}

/// The repository's endpoint, if its hooks use HTTP.
pub fn load(layout: &Layout) -> Result<Option<Endpoint>> {
    let p = path(layout);
    match std::fs::read(&p) {
        Ok(bytes) => {
            let ep: Endpoint = serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is not a horde HTTP hook endpoint; run `horde hooks install claude \
                     --transport http` again",
                    p.display()
                )
            })?;
            if ep.port == 0 || ep.token.len() < 32 {
                bail!("{}: no port or a short token", p.display());
            }
            Ok(Some(ep))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

/// The repository's endpoint: the one it has (on `port` if one is asked for), or a new one on
/// a free port with a new token.
pub fn ensure(layout: &Layout, port: Option<u16>) -> Result<Endpoint> {
    let old = load(layout).ok().flatten();
    if let Some(ep) = &old
        && port.is_none_or(|p| p == ep.port)
    {
        return Ok(ep.clone());
    }
    let port = match port {
        Some(0) => bail!("--port must be a port number from 1 to 65535"),
        Some(p) => p,
        None => free_port(&layout.root)?,
    };
    let token = match old {
        Some(ep) => ep.token,
        None => {
            let mut b = [0u8; 32];
            getrandom::fill(&mut b)
                .map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
            hex::encode(b)
        }
    };
    let ep = Endpoint { port, token };
    write_private(&path(layout), &serde_json::to_vec_pretty(&ep)?)?;
    Ok(ep)
}

/// Forgets the endpoint (the daemon stops listening when it next starts).
pub fn remove(layout: &Layout) -> Result<bool> {
    match std::fs::remove_file(path(layout)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path(layout).display())),
    }
}

/// Writes `bytes` to `path` readable by its owner only, atomically.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    crate::sys::write_private(&tmp, bytes)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// A port nobody listens on now, starting from one derived from the repository's path (so
/// that repositories seldom pick the same one).
fn free_port(root: &Path) -> Result<u16> {
    let h = horde_core::BlobHash::of(root.as_os_str().as_encoded_bytes());
    let span = PORTS.end - PORTS.start;
    let start = u16::from_le_bytes([h.as_bytes()[0], h.as_bytes()[1]]) % span;
    for i in 0..span.min(500) {
        let port = PORTS.start + (start + i) % span;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!(
        "no free port on 127.0.0.1 between {} and {}: choose one with --port",
        PORTS.start,
        PORTS.end
    )
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn dec(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// What a hook's URL says besides its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub mode: Mode,
    pub role: String,
    pub deadline_ms: u64,
    pub wait_secs: u64,
}

/// The URL Claude Code POSTs `event` to.
pub fn url(ep: &Endpoint, agent: AgentKind, event: &str, o: &Options) -> String {
    format!(
        "http://127.0.0.1:{}/horde/hook/{}/{}?mode={}&role={}&deadline_ms={}&wait={}",
        ep.port,
        agent.name(),
        enc(event),
        o.mode.as_str(),
        enc(&o.role),
        o.deadline_ms,
        o.wait_secs
    )
}

/// A hook URL's agent, event and options; None if it is not one of horde's.
pub fn parse_url(path_and_query: &str) -> Option<(AgentKind, String, Options)> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let rest = path.strip_prefix("/horde/hook/")?;
    let (agent, event) = rest.split_once('/')?;
    let agent = AgentKind::parse(agent)?;
    let event = dec(event).filter(|e| !e.is_empty() && !e.contains('/'))?;
    let mut o = Options {
        mode: Mode::Audit,
        role: "builder".into(),
        deadline_ms: 10_000,
        wait_secs: 0,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = dec(v)?;
        match k {
            "mode" => o.mode = Mode::parse(&v)?,
            "role" if !v.is_empty() => o.role = v,
            "deadline_ms" => o.deadline_ms = v.parse().ok().filter(|d| *d > 0)?,
            "wait" => o.wait_secs = v.parse().ok()?,
            _ => return None,
        }
    }
    Some((agent, event, o))
}

/// One hook call the endpoint received.
pub struct Call {
    pub agent: AgentKind,
    pub event: String,
    pub options: Options,
    pub payload: Value,
}

/// What the daemon does with a call (records it and answers), and what it tells `/health`.
pub trait Handler: Send + Sync + 'static {
    fn call(&self, call: Call) -> Answer;
    fn root(&self) -> &Path;
}

/// Serves the endpoint on `listener` until the process ends.
pub fn serve(listener: TcpListener, token: String, handler: Arc<dyn Handler>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the HTTP hook endpoint")?;
    listener.set_nonblocking(true)?;
    let token: Arc<str> = token.into();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // Out of descriptors, say: wait instead of spinning.
                    tracing::warn!("HTTP hook endpoint: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // An answer is one small write: never held back waiting for an ACK.
            let _ = stream.set_nodelay(true);
            let (token, handler) = (token.clone(), handler.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let (token, handler) = (token.clone(), handler.clone());
                    async move { Ok::<_, Infallible>(respond(req, &token, handler).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await
                {
                    tracing::debug!("HTTP hook connection: {e}");
                }
            });
        }
    })
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn too_large() -> Response<Full<Bytes>> {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("horde: a hook payload is at most {MAX_BODY} bytes"),
    )
}

/// Compares in time that does not depend on where the two differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn authorised(req: &Request<Incoming>, token: &str) -> bool {
    req.headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| same(t.trim().as_bytes(), token.as_bytes()))
}

async fn respond(
    req: Request<Incoming>,
    token: &str,
    handler: Arc<dyn Handler>,
) -> Response<Full<Bytes>> {
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if !authorised(&req, token) {
        return plain(
            StatusCode::UNAUTHORIZED,
            "horde: a Bearer token from `horde hooks install claude --transport http` is required",
        );
    }
    if req.uri().path() == "/horde/health" {
        if req.method() != Method::GET {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "horde: GET /horde/health");
        }
        let body = serde_json::json!({ "root": handler.root() });
        return json(format!("{body}\n"));
    }
    let Some((agent, event, options)) = parse_url(&target) else {
        return plain(
            StatusCode::NOT_FOUND,
            "horde: POST /horde/hook/AGENT/EVENT?mode=audit|enforce&role=ROLE&deadline_ms=MS",
        );
    };
    if req.method() != Method::POST {
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "horde: hooks are POSTed to this URL",
        );
    }
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let kind = kind_of(agent, &event);
    let deadline = Duration::from_millis(options.deadline_ms);
    let started = tokio::time::Instant::now();
    let bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("horde: {e}")),
    };
    let payload = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object);
    let answer_of = |a: &Answer| json(answer(agent, &event, a));
    let Some(payload) = payload else {
        tracing::warn!(
            "the {} hook's input for {event} is not a JSON object ({} bytes)",
            agent.name(),
            bytes.len()
        );
        return answer_of(&fallback(
            options.mode,
            kind,
            "its input was not valid JSON",
        ));
    };
    let mode = options.mode;
    let call = Call {
        agent,
        event: event.clone(),
        options,
        payload,
    };
    let left = deadline.saturating_sub(started.elapsed());
    let task = tokio::task::spawn_blocking(move || handler.call(call));
    let a = match tokio::time::timeout(left, task).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => fallback(mode, kind, &format!("horde failed: {e}")),
        // The call may still be recorded: answering now keeps the agent's deadline.
        Err(_) => fallback(
            mode,
            kind,
            &format!("no answer within {} ms", deadline.as_millis()),
        ),
    };
    tracing::debug!(
        "{event} answered in {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    answer_of(&a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_round_trip() {
        let ep = Endpoint {
            port: 23456,
            token: "0".repeat(64),
        };
        let o = Options {
            mode: Mode::Enforce,
            role: "a role/with odd&chars".into(),
            deadline_ms: 28_500,
            wait_secs: 60,
        };
        let u = url(&ep, AgentKind::Claude, "PreToolUse", &o);
        let pq = u.strip_prefix("http://127.0.0.1:23456").expect("our port");
        let (agent, event, back) = parse_url(pq).expect("a hook URL");
        assert_eq!((agent, event.as_str()), (AgentKind::Claude, "PreToolUse"));
        assert_eq!(back, o);
    }

    #[test]
    fn other_urls_are_not_hooks() {
        for bad in [
            "/",
            "/horde/hook/claude",
            "/horde/hook/nobody/PreToolUse",
            "/horde/hook/claude/",
            "/horde/hook/claude/PreToolUse?mode=lenient",
            "/horde/hook/claude/PreToolUse?deadline_ms=0",
            "/horde/hook/claude/PreToolUse?unknown=1",
            "/horde/hook/claude/PreToolUse?role=%ZZ",
        ] {
            assert!(parse_url(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }
}
