//! The filtering forward proxy: runs outside the sandbox on a Unix socket and is the sandboxed
//! command's only way to the network. One listener speaks both HTTP proxying (CONNECT and
//! absolute-form plain HTTP) and SOCKS5, told apart by the first byte. Every attempt is recorded.

mod http;
mod rule;
mod socks;
pub(crate) mod zerocopy;

pub use rule::{HostMatch, MAX_HOST_LEN, MAX_LABEL_LEN, NetRule};

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::bridge::RELAY_STACK_BYTES;

/// Connections handled at once; beyond this they are refused (HTTP 503 / SOCKS 0x01) and recorded.
pub const MAX_CONCURRENT_CONNECTIONS: usize = 256;
/// Connections being refused for overload at once; beyond this they are closed unanswered.
pub const MAX_OVERLOAD_HANDLERS: usize = 32;
/// Largest HTTP request head accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Time allowed for a client to send its whole request head (or SOCKS5 negotiation).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to connect upstream, over all resolved addresses.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connection records kept; later attempts are only counted (see [`Proxy::dropped_records`]).
pub const MAX_RECORDS: usize = 10_000;
/// How long [`Proxy::stop`] lets in-flight tunnels finish before closing them.
pub const STOP_GRACE: Duration = Duration::from_millis(200);
/// How long [`Proxy::stop`] waits for closed tunnels' threads to account their last bytes.
const STOP_DRAIN: Duration = Duration::from_millis(200);
const STOP_POLL: Duration = Duration::from_millis(5);
/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Why the proxy could not be configured or started.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid network rule {input:?}: {why}")]
    InvalidRule { input: String, why: String },
    #[error("proxy socket path {} already exists", path.display())]
    SocketExists { path: PathBuf },
    #[error("cannot bind proxy socket {}: {source}", path.display())]
    Bind { path: PathBuf, source: io::Error },
    #[error("cannot start the proxy thread: {0}")]
    Spawn(io::Error),
}

/// How the client asked for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// `CONNECT host:port` tunnel.
    HttpConnect,
    /// Absolute-form plain HTTP request (`GET http://host/path`).
    HttpForward,
    /// SOCKS5 `CONNECT`.
    Socks5,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HttpConnect => "http-connect",
            Self::HttpForward => "http-forward",
            Self::Socks5 => "socks5",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One connection attempt, allowed or refused.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct Connection {
    pub host: String,
    pub port: u16,
    pub protocol: Protocol,
    pub allowed: bool,
    /// For refusals, why; for allowed connections, the rule that matched.
    pub reason: String,
    /// Bytes client → upstream.
    pub bytes_sent: u64,
    /// Bytes upstream → client.
    pub bytes_received: u64,
    pub duration_ms: u64,
}

/// A live record: fixed facts plus counters updated by relay threads.
struct Record {
    host: String,
    port: u16,
    protocol: Protocol,
    allowed: bool,
    reason: String,
    started: Instant,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    /// Duration in ms once finished; `u64::MAX` while in flight.
    finished_ms: AtomicU64,
}

impl Record {
    fn snapshot(&self) -> Connection {
        let finished = self.finished_ms.load(Ordering::Acquire);
        let duration_ms = if finished == u64::MAX {
            millis(self.started.elapsed())
        } else {
            finished
        };
        Connection {
            host: self.host.clone(),
            port: self.port,
            protocol: self.protocol,
            allowed: self.allowed,
            reason: self.reason.clone(),
            bytes_sent: self.sent.load(Ordering::Relaxed),
            bytes_received: self.received.load(Ordering::Relaxed),
            duration_ms,
        }
    }

    fn finish(&self) {
        self.finished_ms
            .store(millis(self.started.elapsed()), Ordering::Release);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX - 1)
}

/// State shared by the accept thread and connection handlers.
struct Shared {
    rules: Vec<NetRule>,
    records: Mutex<Vec<Arc<Record>>>,
    dropped_records: AtomicU64,
    active: AtomicUsize,
    overload: AtomicUsize,
    stopping: AtomicBool,
    next_id: AtomicU64,
    /// Streams of in-flight connections, so `stop` can close them.
    live: Mutex<HashMap<u64, LiveStreams>>,
}

#[derive(Default)]
struct LiveStreams {
    client: Option<UnixStream>,
    upstream: Option<TcpStream>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn push(&self, record: Record) -> Arc<Record> {
        let record = Arc::new(record);
        let mut records = lock(&self.records);
        if records.len() < MAX_RECORDS {
            records.push(Arc::clone(&record));
        } else {
            self.dropped_records.fetch_add(1, Ordering::Relaxed);
        }
        record
    }

    fn allowing_rule(&self, host: &str, port: u16) -> Option<&NetRule> {
        self.rules.iter().find(|r| r.matches(host, port))
    }

    fn snapshot(&self) -> Vec<Connection> {
        lock(&self.records).iter().map(|r| r.snapshot()).collect()
    }
}

/// A running proxy. Dropping it stops it like [`Proxy::stop`].
pub struct Proxy {
    shared: Arc<Shared>,
    socket: PathBuf,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("socket", &self.socket)
            .field("rules", &self.shared.rules)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Binds a Unix listener at `socket` (the path must not exist; parent dir must) and serves on a thread.
    pub fn start(rules: Vec<NetRule>, socket: &Path) -> Result<Proxy, ProxyError> {
        if socket.symlink_metadata().is_ok() {
            return Err(ProxyError::SocketExists {
                path: socket.to_path_buf(),
            });
        }
        let listener = UnixListener::bind(socket).map_err(|source| ProxyError::Bind {
            path: socket.to_path_buf(),
            source,
        })?;
        let shared = Arc::new(Shared {
            rules,
            records: Mutex::new(Vec::new()),
            dropped_records: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            overload: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("proxy-accept".into())
            .spawn(move || accept_loop(&listener, &accept_shared));
        let accept = match accept {
            Ok(h) => h,
            Err(e) => {
                let _ = std::fs::remove_file(socket);
                return Err(ProxyError::Spawn(e));
            }
        };
        Ok(Proxy {
            shared,
            socket: socket.to_path_buf(),
            accept: Some(accept),
        })
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The rules this proxy enforces.
    pub fn rules(&self) -> &[NetRule] {
        &self.shared.rules
    }

    /// Snapshot of every connection attempt so far (allowed or refused), in order of arrival.
    pub fn connections(&self) -> Vec<Connection> {
        self.shared.snapshot()
    }

    /// Attempts not recorded because [`MAX_RECORDS`] was reached.
    pub fn dropped_records(&self) -> u64 {
        self.shared.dropped_records.load(Ordering::Relaxed)
    }

    /// Stops accepting, closes in-flight tunnels (after a short grace, ≤ 200 ms), removes the
    /// socket file, returns every record.
    pub fn stop(mut self) -> Vec<Connection> {
        self.shutdown();
        self.shared.snapshot()
    }

    fn shutdown(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::Release);
        // Wake the blocking accept. If the socket is unreachable (its directory was removed),
        // the accept thread cannot be woken; it is left blocked, ignoring anything it accepts.
        if UnixStream::connect(&self.socket).is_ok() {
            let _ = accept.join();
        }
        let _ = std::fs::remove_file(&self.socket);
        let idle = |shared: &Shared| {
            shared.active.load(Ordering::Acquire) == 0
                && shared.overload.load(Ordering::Acquire) == 0
        };
        wait_until(STOP_GRACE, || idle(&self.shared));
        for streams in lock(&self.shared.live).values() {
            if let Some(c) = &streams.client {
                let _ = c.shutdown(Shutdown::Both);
            }
            if let Some(u) = &streams.upstream {
                let _ = u.shutdown(Shutdown::Both);
            }
        }
        wait_until(STOP_DRAIN, || idle(&self.shared));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn wait_until(limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() && Instant::now() < deadline {
        thread::sleep(STOP_POLL);
    }
}

fn accept_loop(listener: &UnixListener, shared: &Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let client = match accepted {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        let overloaded = shared.active.load(Ordering::Acquire) >= MAX_CONCURRENT_CONNECTIONS;
        let counter = if overloaded {
            if shared.overload.load(Ordering::Acquire) >= MAX_OVERLOAD_HANDLERS {
                shared.dropped_records.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            &shared.overload
        } else {
            &shared.active
        };
        counter.fetch_add(1, Ordering::AcqRel);
        let handler_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("proxy-conn".into())
            .stack_size(RELAY_STACK_BYTES)
            .spawn(move || {
                let id = handler_shared.next_id.fetch_add(1, Ordering::Relaxed);
                let session = Session {
                    shared: &handler_shared,
                    id,
                    overloaded,
                    started: Instant::now(),
                };
                session.run(client);
                lock(&handler_shared.live).remove(&id);
                let counter = if overloaded {
                    &handler_shared.overload
                } else {
                    &handler_shared.active
                };
                counter.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            counter.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// What a client asked to reach, as it named it.
struct Target {
    pub host: String,
    pub port: u16,
    pub protocol: Protocol,
}

/// The outcome of deciding and connecting.
enum Verdict {
    Connected(TcpStream, Arc<Record>),
    NotAllowed,
    Overloaded(String),
    Unresolvable(String),
    UpstreamFailed(String),
}

/// One client connection being handled.
struct Session<'a> {
    shared: &'a Shared,
    id: u64,
    overloaded: bool,
    /// When the client connected; records' durations count from here.
    started: Instant,
}

impl Session<'_> {
    fn run(&self, client: UnixStream) {
        if let Ok(clone) = client.try_clone() {
            lock(&self.shared.live).insert(
                self.id,
                LiveStreams {
                    client: Some(clone),
                    upstream: None,
                },
            );
        }
        if self.shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let _ = client.set_read_timeout(Some(HEAD_TIMEOUT));
        let _ = client.set_write_timeout(Some(HEAD_TIMEOUT));
        let mut first = [0u8; 1];
        let n = loop {
            match (&client).read(&mut first) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match n {
            Ok(1) if first[0] == socks::VERSION => socks::handle(self, client),
            Ok(1) => http::handle(self, client, first[0]),
            Ok(_) => self.malformed(
                Protocol::HttpForward,
                "",
                0,
                "connection closed before any request",
            ),
            Err(e) => self.malformed(
                Protocol::HttpForward,
                "",
                0,
                &format!("no request received: {e}"),
            ),
        }
    }

    /// Records a refused, unparseable attempt.
    fn malformed(&self, protocol: Protocol, host: &str, port: u16, what: &str) {
        let record = self.shared.push(Record {
            host: host.to_owned(),
            port,
            protocol,
            allowed: false,
            reason: format!("malformed request: {what}"),
            started: self.started,
            sent: Arc::default(),
            received: Arc::default(),
            finished_ms: AtomicU64::new(u64::MAX),
        });
        record.finish();
    }

    fn refuse(&self, target: &Target, reason: String) -> String {
        let record = self.shared.push(Record {
            host: target.host.clone(),
            port: target.port,
            protocol: target.protocol,
            allowed: false,
            reason: reason.clone(),
            started: self.started,
            sent: Arc::default(),
            received: Arc::default(),
            finished_ms: AtomicU64::new(u64::MAX),
        });
        record.finish();
        reason
    }

    /// Checks the rules on the name as given, then resolves and connects upstream.
    fn decide(&self, target: &Target) -> Verdict {
        let Some(rule) = self.shared.allowing_rule(&target.host, target.port) else {
            self.refuse(target, "not in the network allow-list".to_owned());
            return Verdict::NotAllowed;
        };
        if self.overloaded {
            return Verdict::Overloaded(self.refuse(
                target,
                format!("too many concurrent connections (limit {MAX_CONCURRENT_CONNECTIONS})"),
            ));
        }
        if self.shared.stopping.load(Ordering::Acquire) {
            return Verdict::Overloaded(self.refuse(target, "the proxy is stopping".to_owned()));
        }
        let addrs = match resolve(&target.host, target.port) {
            Ok(a) => a,
            Err(e) => {
                return Verdict::Unresolvable(
                    self.refuse(target, format!("cannot resolve {}: {e}", target.host)),
                );
            }
        };
        let upstream = match connect_any(&addrs) {
            Ok(s) => s,
            Err(e) => {
                return Verdict::UpstreamFailed(self.refuse(
                    target,
                    format!("upstream refused {}:{}: {e}", target.host, target.port),
                ));
            }
        };
        let _ = upstream.set_nodelay(true);
        if let Ok(clone) = upstream.try_clone()
            && let Some(live) = lock(&self.shared.live).get_mut(&self.id)
        {
            live.upstream = Some(clone);
        }
        // Checked after registering, so `stop` either sees this stream or this sees `stopping`.
        if self.shared.stopping.load(Ordering::Acquire) {
            let _ = upstream.shutdown(Shutdown::Both);
            return Verdict::Overloaded(self.refuse(target, "the proxy is stopping".to_owned()));
        }
        let record = self.shared.push(Record {
            host: target.host.clone(),
            port: target.port,
            protocol: target.protocol,
            allowed: true,
            reason: rule.to_string(),
            started: self.started,
            sent: Arc::default(),
            received: Arc::default(),
            finished_ms: AtomicU64::new(u64::MAX),
        });
        Verdict::Connected(upstream, record)
    }

    /// Relays client ⇄ upstream until both sides are done, counting into `record`.
    /// With `end_with_upstream`, the upstream's end of stream ends the client connection too.
    fn tunnel(
        &self,
        client: UnixStream,
        upstream: TcpStream,
        record: &Record,
        end_with_upstream: bool,
    ) {
        let _ = client.set_read_timeout(None);
        let _ = client.set_write_timeout(None);
        if let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) {
            let _ = zerocopy::relay(
                client,
                c2,
                upstream,
                u2,
                Arc::clone(&record.sent),
                &record.received,
                end_with_upstream,
            );
        }
        record.finish();
    }
}

/// Resolves a host as the client named it; IP literals are used as they are.
fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = IpAddr::from_str(bare) {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = (bare, port).to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no addresses"));
    }
    Ok(addrs)
}

/// Tries each address in turn within [`CONNECT_TIMEOUT`] overall.
fn connect_any(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no addresses");
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
        }
        match TcpStream::connect_timeout(addr, left) {
            Ok(s) => return Ok(s),
            Err(e) => last = io::Error::new(e.kind(), format!("{addr}: {e}")),
        }
    }
    Err(last)
}
