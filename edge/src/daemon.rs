//! `horde daemon`: one process per repository that answers the agents' hooks from an open
//! store, compiled policies, the worktree index and an inotify watcher, so a hook call costs
//! a process start, a round trip on a Unix socket and the append (see [`crate::hooks::warm`]).
//!
//! - The socket is `.horde/daemon.sock` (mode 0600); when that path is too long for a Unix
//!   socket, a file in the temporary directory named after the repository. Both ends check the
//!   other's uid (`SO_PEERCRED`) and the client's horde version and config directory: anything
//!   that does not match is answered "go alone" and the hook records by itself.
//! - One daemon per repository: `.horde/daemon.lock` is held (`flock`) while it runs.
//! - A hook that finds no daemon records alone and starts one in the background (unless
//!   `HORDE_DAEMON=off`); the daemon leaves when idle (`--idle`, 30 minutes by default), when
//!   its `.horde/` or its socket is removed or replaced, on SIGTERM, or when a newer horde
//!   calls.
//! - Calls are served one at a time (they append to one ledger anyway), except a PreToolUse
//!   that may wait for a person (`--wait`): it runs on its own store so it blocks nobody.
//! - Wire: one JSON line each way. The request carries the hook's payload as the agent sent it.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::hooks::record::{HookOptions, NotInitialised, layout_of, record, record_in};
use crate::hooks::warm::{Warm, collecting};
use crate::hooks::{self, AgentKind, Answer, Mode, http};
use crate::store::Layout;
use crate::sys::{peer_uid, uid};

/// Requests larger than this are refused (a hook reads at most 64 MiB of payload).
const MAX_REQUEST: u64 = 80 << 20;
/// Longest Unix socket path we bind (the kernel's limit is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 100;
/// How often the daemon checks that it is still wanted.
const TICK: Duration = Duration::from_millis(500);

/// Where a repository's daemon listens and keeps its lock and log.
#[derive(Debug, Clone)]
pub struct Paths {
    pub socket: PathBuf,
    pub lock: PathBuf,
    pub log: PathBuf,
}

pub fn paths(layout: &Layout) -> Paths {
    let sock = layout.dir.join("daemon.sock");
    let socket = if sock.as_os_str().len() <= MAX_SOCKET_PATH {
        sock
    } else {
        let h = horde_core::BlobHash::of(layout.root.as_os_str().as_encoded_bytes());
        std::env::temp_dir().join(format!("horde-{}-{}.sock", uid(), &h.to_hex()[..16]))
    };
    Paths {
        socket,
        lock: layout.dir.join("daemon.lock"),
        log: layout.dir.join("daemon.log"),
    }
}

/// One hook call sent to the daemon.
#[derive(Serialize, Deserialize)]
struct Request {
    version: String,
    config_dir: PathBuf,
    agent: String,
    event: String,
    mode: String,
    role: String,
    wait_secs: u64,
    payload: Value,
}

/// The daemon's reply.
#[derive(Serialize, Deserialize, Default)]
struct Reply {
    /// deny | ask | allow | notice | neutral, with its text.
    answer: Option<(String, String)>,
    /// horde could not record the call (answered by mode, as when alone).
    error: Option<String>,
    not_initialised: bool,
    /// The daemon will not serve this call: the hook records it alone.
    alone: Option<String>,
    /// What the recording had to say to the person running the hook (its stderr).
    #[serde(default)]
    notes: Vec<String>,
}

fn encode(a: &Answer) -> (String, String) {
    match a {
        Answer::Neutral => ("neutral".into(), String::new()),
        Answer::Deny(t) => ("deny".into(), t.clone()),
        Answer::Ask(t) => ("ask".into(), t.clone()),
        Answer::Allow(t) => ("allow".into(), t.clone()),
        Answer::Notice(t) => ("notice".into(), t.clone()),
    }
}

fn decode(kind: &str, text: String) -> Option<Answer> {
    Some(match kind {
        "neutral" => Answer::Neutral,
        "deny" => Answer::Deny(text),
        "ask" => Answer::Ask(text),
        "allow" => Answer::Allow(text),
        "notice" => Answer::Notice(text),
        _ => return None,
    })
}

fn version() -> String {
    // The binary, not only the crate version: a rebuilt horde replaces its daemon.
    let exe = std::env::current_exe()
        .ok()
        .and_then(|e| std::fs::metadata(e).ok())
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            format!("{}.{}", m.mtime(), m.ino())
        })
        .unwrap_or_default();
    format!("{} {exe}", env!("CARGO_PKG_VERSION"))
}

/// What became of asking the daemon.
pub enum Asked {
    Answer(Answer),
    /// The daemon could not record it (an error to answer by mode).
    Failed(anyhow::Error),
    /// No daemon took the call: record it here.
    Alone,
}

/// Asks the repository's daemon to record and answer a hook call, within `timeout`.
pub fn ask(
    layout: &Layout,
    agent: AgentKind,
    event: &str,
    opts: &HookOptions,
    payload: &Value,
    timeout: Duration,
) -> Asked {
    let p = paths(layout);
    let Ok(mut s) = UnixStream::connect(&p.socket) else {
        return Asked::Alone;
    };
    if peer_uid(&s) != Some(uid()) {
        tracing::warn!("{} belongs to another user: not used", p.socket.display());
        return Asked::Alone;
    }
    let req = Request {
        version: version(),
        config_dir: crate::config::user_config_dir(),
        agent: agent.name().into(),
        event: event.into(),
        mode: opts.mode.as_str().into(),
        role: opts.role.clone(),
        wait_secs: opts.wait.map_or(0, |w| w.as_secs()),
        payload: payload.clone(),
    };
    let _ = s.set_read_timeout(Some(timeout.max(Duration::from_millis(1))));
    let _ = s.set_write_timeout(Some(timeout.max(Duration::from_millis(1))));
    // One write: a writer straight on the socket would send each JSON token on its own.
    let Ok(mut bytes) = serde_json::to_vec(&req) else {
        return Asked::Alone;
    };
    bytes.push(b'\n');
    if s.write_all(&bytes).is_err() {
        return Asked::Alone;
    }
    let mut line = String::new();
    match BufReader::new(&mut s).take(1 << 20).read_line(&mut line) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            // It may still record the call: recording it here too would record it twice.
            return Asked::Failed(anyhow::anyhow!(
                "the daemon did not answer within {} ms",
                timeout.as_millis()
            ));
        }
        // It died mid-call (before its commit, or its answer would be here): go alone.
        Err(_) => return Asked::Alone,
        Ok(_) if line.is_empty() => return Asked::Alone,
        Ok(_) => {}
    }
    let Ok(reply) = serde_json::from_str::<Reply>(&line) else {
        return Asked::Alone;
    };
    for n in &reply.notes {
        eprintln!("{n}");
    }
    if reply.alone.is_some() {
        return Asked::Alone;
    }
    if reply.not_initialised {
        return Asked::Failed(NotInitialised(layout.root.display().to_string()).into());
    }
    if let Some(e) = reply.error {
        return Asked::Failed(anyhow::anyhow!(e));
    }
    match reply.answer.and_then(|(k, t)| decode(&k, t)) {
        Some(a) => Asked::Answer(a),
        None => Asked::Alone,
    }
}

/// Records a hook call through the repository's daemon, or alone when there is none (and
/// then starts one for the next calls).
pub fn record_hook(
    agent: AgentKind,
    event: &str,
    input: &hooks::HookInput,
    opts: &HookOptions,
    timeout: Duration,
) -> Result<Answer> {
    let started = std::time::Instant::now();
    let Ok(layout) = layout_of(input) else {
        return record(input, opts);
    };
    // With HTTP hooks, tool calls reach horde only through the daemon: the other hooks (a
    // session's start, each prompt) bring it up and wait for it.
    let http = http::load(&layout).ok().flatten().is_some();
    if !enabled() {
        let a = record(input, opts)?;
        return Ok(if http {
            unserved(a, "HORDE_DAEMON=off")
        } else {
            a
        });
    }
    match ask(&layout, agent, event, opts, &input.raw, timeout) {
        Asked::Answer(a) => return Ok(a),
        Asked::Failed(e) => return Err(e),
        Asked::Alone => {}
    }
    if !http {
        if running(&layout).is_none()
            && let Err(e) = spawn(&layout, Duration::from_secs(DEFAULT_IDLE_SECS))
        {
            tracing::warn!("cannot start the daemon: {e:#}");
        }
        return record(input, opts);
    }
    let left = timeout.saturating_sub(started.elapsed());
    let idle = Duration::from_secs(DEFAULT_IDLE_SECS);
    match start_and_wait(&layout, left.min(DAEMON_START), idle) {
        Ok(()) => match ask(
            &layout,
            agent,
            event,
            opts,
            &input.raw,
            timeout.saturating_sub(started.elapsed()),
        ) {
            Asked::Answer(a) => Ok(a),
            Asked::Failed(e) => Err(e),
            Asked::Alone => Ok(unserved(
                record(input, opts)?,
                "the daemon did not take the call",
            )),
        },
        Err(e) => {
            tracing::warn!("{e:#}");
            Ok(unserved(record(input, opts)?, &format!("{e:#}")))
        }
    }
}

/// How long a hook waits for a daemon it starts for Claude Code's HTTP hooks.
const DAEMON_START: Duration = Duration::from_secs(8);

/// `a`, or a notice that Claude Code's HTTP hooks have nothing to reach, and why.
fn unserved(a: Answer, why: &str) -> Answer {
    let notice = format!(
        "horde's daemon is not running ({why}), so Claude Code's HTTP hooks cannot reach it: \
         tool calls are blocked in enforce mode and not recorded in audit mode until it runs \
         (see .horde/daemon.log)"
    );
    match a {
        Answer::Neutral => Answer::Notice(notice),
        Answer::Notice(n) => Answer::Notice(format!("{n}\n{notice}")),
        other => {
            eprintln!("{notice}");
            other
        }
    }
}

/// Starts the repository's daemon unless one runs, and waits until it answers on its socket
/// (and so on its HTTP endpoint, bound before the socket).
pub fn start_and_wait(layout: &Layout, within: Duration, idle: Duration) -> Result<()> {
    let p = paths(layout);
    let until = std::time::Instant::now() + within;
    let mut child: Option<std::process::Child> = None;
    loop {
        if running(layout).is_some() && UnixStream::connect(&p.socket).is_ok() {
            return Ok(());
        }
        let exited = match &mut child {
            None => {
                if running(layout).is_none() {
                    child = Some(spawn(layout, idle)?);
                }
                false
            }
            Some(c) => !matches!(c.try_wait(), Ok(None)),
        };
        // Another daemon took the lock first: wait for that one.
        if exited && running(layout).is_none() {
            let log = std::fs::read_to_string(&p.log).unwrap_or_default();
            let last = log
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            bail!("the daemon did not start: {last}");
        }
        if std::time::Instant::now() >= until {
            bail!("the daemon did not start within {} ms", within.as_millis());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long a daemon started by a hook stays without calls.
pub const DEFAULT_IDLE_SECS: u64 = 1800;

/// Whether hooks may use (and start) daemons: `HORDE_DAEMON=off` says no.
pub fn enabled() -> bool {
    !matches!(
        std::env::var("HORDE_DAEMON").as_deref(),
        Ok("off" | "0" | "no" | "false")
    )
}

/// Starts a daemon for `layout` in the background, detached from this process (its own
/// session, no inherited descriptors: an agent waiting for its hook's output never waits for
/// the daemon). Does not wait for it.
pub fn spawn(layout: &Layout, idle: Duration) -> Result<std::process::Child> {
    let exe = std::env::current_exe().context("cannot tell where this horde binary is")?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(paths(layout).log)
        .context("cannot open the daemon's log")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("daemon")
        .arg("run")
        .arg("--idle")
        .arg(idle.as_secs().to_string())
        .current_dir(&layout.root)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    crate::sys::new_session(&mut cmd);
    cmd.spawn().context("cannot start the daemon")
}

/// Stops the repository's daemon (`pid`, as [`running`] said) and waits until it has left.
pub fn stop(layout: &Layout, pid: u32) -> Result<()> {
    crate::sys::send_signal(pid, libc::SIGTERM);
    let t = std::time::Instant::now();
    while running(layout).is_some() {
        if t.elapsed() > Duration::from_secs(10) {
            bail!("the daemon (pid {pid}) did not stop within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Restarts the repository's daemon if one runs (so that it reads its configuration again).
pub fn restart(layout: &Layout) -> Result<()> {
    if let Some(pid) = running(layout) {
        stop(layout, pid)?;
        start_and_wait(
            layout,
            Duration::from_secs(60),
            Duration::from_secs(DEFAULT_IDLE_SECS),
        )?;
    }
    Ok(())
}

/// Holds the repository's daemon lock; None when another daemon holds it.
fn lock(path: &Path) -> Result<Option<std::fs::File>> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match crate::sys::try_lock(&f) {
        Ok(true) => Ok(Some(f)),
        Ok(false) => Ok(None),
        Err(e) => bail!("cannot lock {}: {e}", path.display()),
    }
}

/// The pid in a daemon's lock file, if a daemon holds it.
pub fn running(layout: &Layout) -> Option<u32> {
    let p = paths(layout);
    match lock(&p.lock) {
        Ok(None) => std::fs::read_to_string(&p.lock)
            .ok()
            .and_then(|s| s.trim().parse().ok()),
        _ => None,
    }
}

fn inode(p: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p).ok().map(|m| m.ino())
}

/// Runs the daemon of `layout` until it is not wanted any more.
pub fn serve(layout: Layout, idle: Duration, ready: impl FnOnce(&Paths)) -> Result<()> {
    let p = paths(&layout);
    let Some(mut lock_file) = lock(&p.lock)? else {
        bail!(
            "a daemon already runs for {} (pid {})",
            layout.root.display(),
            running(&layout).map_or("?".into(), |p| p.to_string())
        );
    };
    lock_file.set_len(0)?;
    writeln!(lock_file, "{}", std::process::id())?;
    let key = crate::session::load_key()?;
    let secret_key = crate::config::fingerprint_key()?;
    let mut warm = Warm::daemon(layout.clone(), key)?;
    // Watch the tree now, so the first call does not walk it.
    warm.prime()?;
    let _ = std::fs::remove_file(&p.socket);
    let listener = UnixListener::bind(&p.socket)
        .with_context(|| format!("cannot listen on {}", p.socket.display()))?;
    std::fs::set_permissions(&p.socket, std::fs::Permissions::from_mode(0o600))?;
    let sock_ino = inode(&p.socket);
    let dir_ino = inode(&layout.dir);
    // Claude Code's HTTP hooks, when the repository's hooks use them: bound before the daemon
    // says it is ready, so a session's first tool call finds it.
    let endpoint = http::load(&layout)?;
    let tcp = match &endpoint {
        Some(ep) => Some(
            std::net::TcpListener::bind(("127.0.0.1", ep.port)).with_context(|| {
                format!(
                    "cannot listen on 127.0.0.1:{} for Claude Code's HTTP hooks (another \
                     program uses it?): `horde hooks install claude --transport http --port N` \
                     moves them",
                    ep.port
                )
            })?,
        ),
        None => None,
    };
    let warm = Arc::new(Mutex::new(warm));
    let last = Arc::new(AtomicI64::new(horde_core::time::now_micros()));
    let shared = Arc::new(Shared {
        layout: layout.clone(),
        secret_key,
        version: version(),
        config_dir: crate::config::user_config_dir(),
    });
    if let (Some(tcp), Some(ep)) = (tcp, endpoint) {
        let handler = Arc::new(HttpCalls {
            warm: warm.clone(),
            shared: shared.clone(),
            last: last.clone(),
            paths: p.clone(),
            sock_ino,
        });
        std::thread::Builder::new()
            .name("horde-daemon-http".into())
            .spawn(move || {
                if let Err(e) = http::serve(tcp, ep.token, handler) {
                    tracing::error!("the HTTP hook endpoint stopped: {e:#}");
                    eprintln!("horde daemon: the HTTP hook endpoint stopped: {e:#}");
                }
            })?;
        tracing::info!(port = ep.port, "HTTP hooks on 127.0.0.1");
    }
    tracing::info!(root = %layout.root.display(), socket = %p.socket.display(), "daemon ready");
    ready(&p);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("cannot handle signals")?;
    }
    // The watchdog: leaves when idle, orphaned from its repository, replaced or told to.
    {
        let (last, p, layout, warm) = (last.clone(), p.clone(), layout.clone(), warm.clone());
        std::thread::Builder::new()
            .name("horde-daemon-watchdog".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(TICK);
                    let idle_for = horde_core::time::now_micros() - last.load(Ordering::Relaxed);
                    let why = if idle_for > idle.as_micros() as i64 {
                        Some("idle")
                    } else if inode(&layout.dir) != dir_ino {
                        Some(".horde/ is gone")
                    } else if inode(&p.socket) != sock_ino {
                        Some("its socket was removed or replaced")
                    } else if stop.load(Ordering::Relaxed) {
                        Some("asked to stop")
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        leave(&p, sock_ino, &warm, why);
                    }
                }
            })?;
    }
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        last.store(horde_core::time::now_micros(), Ordering::Relaxed);
        let (warm, shared, last, p) = (warm.clone(), shared.clone(), last.clone(), p.clone());
        let spawned = std::thread::Builder::new()
            .name("horde-daemon-call".into())
            .spawn(move || {
                let restart = serve_one(conn, &warm, &shared);
                last.store(horde_core::time::now_micros(), Ordering::Relaxed);
                if let Some(why) = restart {
                    leave(&p, sock_ino, &warm, why);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a thread: {e}");
        }
    }
    Ok(())
}

/// Ends the daemon once no call is being recorded: its socket removed if it is still its own.
fn leave(p: &Paths, sock_ino: Option<u64>, warm: &Mutex<Warm>, why: &str) -> ! {
    let _held = warm.lock();
    if inode(&p.socket) == sock_ino {
        let _ = std::fs::remove_file(&p.socket);
    }
    tracing::info!("daemon leaves: {why}");
    eprintln!("horde daemon: leaving ({why})");
    std::process::exit(0)
}

struct Shared {
    layout: Layout,
    secret_key: horde_policy::secrets::FingerprintKey,
    version: String,
    config_dir: PathBuf,
}

/// Serves one connection; Some(why) when the daemon should leave after it.
fn serve_one(conn: UnixStream, warm: &Mutex<Warm>, shared: &Shared) -> Option<&'static str> {
    let reply = |mut c: &UnixStream, r: Reply| {
        if let Ok(mut line) = serde_json::to_vec(&r) {
            line.push(b'\n');
            let _ = c.write_all(&line);
        }
    };
    let alone = |why: &str| Reply {
        alone: Some(why.to_owned()),
        ..Reply::default()
    };
    if peer_uid(&conn) != Some(uid()) {
        reply(&conn, alone("another user"));
        return None;
    }
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut line = Vec::new();
    let read = BufReader::new(&conn)
        .take(MAX_REQUEST)
        .read_until(b'\n', &mut line);
    if read.is_err() || line.last() != Some(&b'\n') {
        reply(&conn, alone("a truncated request"));
        return None;
    }
    let req: Request = match serde_json::from_slice(&line) {
        Ok(r) => r,
        Err(e) => {
            reply(&conn, alone(&format!("a bad request: {e}")));
            return None;
        }
    };
    if req.version != shared.version {
        reply(&conn, alone("another horde version"));
        return Some("a horde of another version called");
    }
    if req.config_dir != shared.config_dir {
        reply(&conn, alone("another config directory"));
        return None;
    }
    let (Some(agent), Some(mode)) = (AgentKind::parse(&req.agent), Mode::parse(&req.mode)) else {
        reply(&conn, alone("an unknown agent or mode"));
        return None;
    };
    let input = hooks::parse(agent, &req.event, req.payload);
    match layout_of(&input) {
        Ok(l) if l.root == shared.layout.root => {}
        _ => {
            reply(&conn, alone("another repository"));
            return None;
        }
    }
    let opts = HookOptions {
        mode,
        role: req.role,
        wait: (req.wait_secs > 0).then(|| Duration::from_secs(req.wait_secs)),
        secret_key: shared.secret_key.clone(),
    };
    let Some((result, notes)) = record_call(warm, &input, &opts) else {
        // A call panicked mid-way: the hooks go alone until a fresh daemon starts.
        reply(&conn, alone("the daemon failed"));
        return Some("a call failed mid-way");
    };
    let r = match result {
        Ok(a) => Reply {
            answer: Some(encode(&a)),
            notes,
            ..Reply::default()
        },
        Err(e) => Reply {
            not_initialised: e.downcast_ref::<NotInitialised>().is_some(),
            error: Some(format!("{e:#}")),
            notes,
            ..Reply::default()
        },
    };
    reply(&conn, r);
    None
}

/// Records one call on the daemon's warm state, with what it had to say; None when an
/// earlier call panicked holding that state (the daemon should leave).
fn record_call(
    warm: &Mutex<Warm>,
    input: &hooks::HookInput,
    opts: &HookOptions,
) -> Option<(Result<Answer>, Vec<String>)> {
    if opts.wait.is_some() && input.kind == hooks::Kind::PreTool {
        // May wait minutes for a person: not while holding everyone else up.
        return Some(collecting(|| record(input, opts)));
    }
    let mut w = warm.lock().ok()?;
    Some(collecting(|| record_in(&mut w, input, opts)))
}

/// Claude Code's HTTP hooks, answered from the daemon's warm state.
struct HttpCalls {
    warm: Arc<Mutex<Warm>>,
    shared: Arc<Shared>,
    last: Arc<AtomicI64>,
    paths: Paths,
    sock_ino: Option<u64>,
}

impl http::Handler for HttpCalls {
    fn call(&self, call: http::Call) -> Answer {
        self.last
            .store(horde_core::time::now_micros(), Ordering::Relaxed);
        let input = hooks::parse(call.agent, &call.event, call.payload);
        let (mode, kind) = (call.options.mode, input.kind);
        let opts = HookOptions {
            mode,
            role: call.options.role,
            wait: (call.options.wait_secs > 0).then(|| Duration::from_secs(call.options.wait_secs)),
            secret_key: self.shared.secret_key.clone(),
        };
        let result = match layout_of(&input) {
            Ok(l) if l.root == self.shared.layout.root => {
                match record_call(&self.warm, &input, &opts) {
                    Some((result, notes)) => {
                        for n in notes {
                            eprintln!("{n}");
                        }
                        result
                    }
                    None => leave(
                        &self.paths,
                        self.sock_ino,
                        &self.warm,
                        "a call failed mid-way",
                    ),
                }
            }
            Ok(l) => Err(anyhow::anyhow!(
                "this endpoint records {}, and the call came from {}",
                self.shared.layout.root.display(),
                l.root.display()
            )),
            Err(e) => Err(e),
        };
        self.last
            .store(horde_core::time::now_micros(), Ordering::Relaxed);
        hooks::settle(result, call.agent, mode, kind, &input.session)
    }

    fn root(&self) -> &Path {
        &self.shared.layout.root
    }
}
