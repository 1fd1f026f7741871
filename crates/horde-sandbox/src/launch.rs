//! Starting a command in the sandbox (bubblewrap + horde's init), watching its limits, and
//! the report of what it tried.

#![allow(unsafe_code)] // a pipe for init's status, and joining a cgroup between fork and exec.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Instant;

use serde::Serialize;

use crate::cgroup::Cgroup;
use crate::confine::{Layers, Rlimit};
use crate::init::{GO_FD, INIT_ARG, InitConfig, STATUS_FD};

/// bubblewrap's `--info-fd`: it writes `{"child-pid": N}` there (N: its PID 1, as seen here).
const INFO_FD: i32 = 5;
use crate::profile::{Limit, Profile, find_program};
use crate::proxy::{Connection, Proxy};
use crate::{Mechanism, SandboxError};

/// Inside the sandbox: where init and the proxy's socket are mounted (on a fresh tmpfs).
const INSIDE_DIR: &str = "/run/horde";
/// The loopback port of the proxy's bridge inside the sandbox's network namespace.
pub const PROXY_PORT: u16 = 3128;

/// What a sandboxed command did at the sandbox's edges.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// How it was confined (`bubblewrap 0.8.0, seccomp, landlock v6, cgroup v1`).
    pub mechanism: String,
    /// Every connection it tried through the proxy, allowed or refused.
    pub connections: Vec<Connection>,
    /// Limits it reached.
    pub limits_hit: Vec<Limit>,
    /// Environment variables it did not get.
    pub stripped_env: Vec<String>,
}

/// A command ready to start confined. Set its stdio through `command()`, then `spawn`,
/// call `check` while it runs, and `finish` when it has ended.
pub struct Prepared {
    /// Until `spawn` (dropped then: its copies of the stdio descriptors must close).
    command: Option<Command>,
    status_read: Option<OwnedFd>,
    /// Ends that belong to the child, closed here once it started.
    child_ends: Vec<OwnedFd>,
    go_write: Option<OwnedFd>,
    info_read: Option<OwnedFd>,
    proxy: Option<Proxy>,
    cgroup: Option<Cgroup>,
    held: Held,
    _dir: tempfile::TempDir,
    limits: crate::Limits,
    started: Option<Instant>,
    hits: Vec<Limit>,
    mechanism: String,
    stripped_env: Vec<String>,
    pid: Option<i32>,
}

/// Sends SIGKILL to a process (ignoring one that is gone).
pub(crate) fn kill(pid: i32) {
    // SAFETY: kill takes no pointers.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn arg(args: &mut Vec<OsString>, parts: &[&OsStr]) {
    args.extend(parts.iter().map(|p| p.to_os_string()));
}

impl Prepared {
    /// Prepares `argv` to run under `profile` with bubblewrap at `bwrap` and `init` (an
    /// executable that runs `init::main` when given `__sandbox-init`).
    pub fn new(
        profile: &Profile,
        argv: &[OsString],
        mechanism: &Mechanism,
        init: &Path,
    ) -> Result<Prepared, SandboxError> {
        let Mechanism::Bubblewrap { path: bwrap, .. } = mechanism else {
            return Err(SandboxError::Unavailable(mechanism.describe()));
        };
        let Some(program) = argv.first() else {
            return Err(SandboxError::Profile("no command to run".into()));
        };
        if find_program(program, &profile.env, &profile.cwd).is_none() {
            return Err(SandboxError::NotFound(
                program.to_string_lossy().into_owned(),
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("horde-sandbox-")
            .tempdir()
            .map_err(|e| SandboxError::Io("cannot make the sandbox's directory".into(), e))?;
        let proxy = if profile.network.is_empty() {
            None
        } else {
            let socket = dir.path().join("proxy.sock");
            Some(
                Proxy::start(profile.network.clone(), &socket)
                    .map_err(|e| SandboxError::Setup(format!("cannot start the proxy: {e}")))?,
            )
        };
        // Removed when `Prepared` is dropped, also when this function fails below.
        let mut held = Held::default();
        for p in &profile.placeholders {
            if std::fs::create_dir(p).is_ok() {
                held.dirs.push(p.clone());
            }
        }
        for (p, content) in &profile.file_placeholders {
            let made = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(p)
                .and_then(|mut f| std::io::Write::write_all(&mut f, content.as_bytes()));
            match made {
                Ok(()) => held.files.push((p.clone(), content.clone())),
                // Made since the profile was built: held as it is.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(SandboxError::Io(
                        format!("cannot hold {} read-only", p.display()),
                        e,
                    ));
                }
            }
        }
        let cgroup = if profile.cgroup {
            Cgroup::create(profile.limits.processes, profile.limits.memory)
        } else {
            None
        };

        let mut a: Vec<OsString> = Vec::new();
        let s = |x: &str| OsString::from(x);
        arg(
            &mut a,
            &[
                "--unshare-all".as_ref(),
                "--die-with-parent".as_ref(),
                "--new-session".as_ref(),
                "--hostname".as_ref(),
                "horde-sandbox".as_ref(),
                "--ro-bind".as_ref(),
                "/".as_ref(),
                "/".as_ref(),
                "--dev".as_ref(),
                "/dev".as_ref(),
                "--proc".as_ref(),
                "/proc".as_ref(),
            ],
        );
        for h in &profile.hidden {
            arg(&mut a, &["--tmpfs".as_ref(), h.as_os_str()]);
        }
        for r in &profile.read_only {
            arg(
                &mut a,
                &["--ro-bind".as_ref(), r.as_os_str(), r.as_os_str()],
            );
        }
        let wt = profile.worktree.as_os_str();
        arg(&mut a, &["--bind".as_ref(), wt, wt]);
        // `.git` is a mount point of its own, so it cannot be renamed away and replaced
        // by a directory whose hooks the command wrote.
        let git = profile.worktree.join(".git");
        if git.is_dir() {
            arg(
                &mut a,
                &["--bind".as_ref(), git.as_os_str(), git.as_os_str()],
            );
        }
        for p in profile
            .protected
            .iter()
            .chain(&held.dirs)
            .chain(profile.file_placeholders.iter().map(|(p, _)| p))
        {
            arg(
                &mut a,
                &["--ro-bind".as_ref(), p.as_os_str(), p.as_os_str()],
            );
        }
        for w in &profile.writable {
            if w != &profile.worktree {
                arg(&mut a, &["--bind".as_ref(), w.as_os_str(), w.as_os_str()]);
            }
        }
        for d in &profile.denied {
            if d.is_dir() {
                arg(
                    &mut a,
                    &[
                        "--tmpfs".as_ref(),
                        d.as_os_str(),
                        "--remount-ro".as_ref(),
                        d.as_os_str(),
                    ],
                );
            } else {
                arg(
                    &mut a,
                    &["--ro-bind".as_ref(), "/dev/null".as_ref(), d.as_os_str()],
                );
            }
        }
        let init_inside = format!("{INSIDE_DIR}/init");
        arg(
            &mut a,
            &[
                "--tmpfs".as_ref(),
                INSIDE_DIR.as_ref(),
                "--ro-bind".as_ref(),
                init.as_os_str(),
                init_inside.as_ref(),
            ],
        );
        let mut env = profile.env.clone();
        let bridge = match &proxy {
            Some(p) => {
                let inside = PathBuf::from(format!("{INSIDE_DIR}/proxy.sock"));
                arg(
                    &mut a,
                    &[
                        "--bind".as_ref(),
                        p.socket_path().as_os_str(),
                        inside.as_os_str(),
                    ],
                );
                let http = format!("http://127.0.0.1:{PROXY_PORT}");
                let socks = format!("socks5h://127.0.0.1:{PROXY_PORT}");
                for (k, v) in [
                    ("http_proxy", &http),
                    ("https_proxy", &http),
                    ("HTTP_PROXY", &http),
                    ("HTTPS_PROXY", &http),
                    ("ALL_PROXY", &socks),
                    ("all_proxy", &socks),
                    ("npm_config_proxy", &http),
                    ("npm_config_https_proxy", &http),
                    ("CARGO_HTTP_PROXY", &http),
                ] {
                    env.push((s(k), s(v)));
                }
                env.push((s("NO_PROXY"), s("localhost,127.0.0.1,::1")));
                env.push((s("no_proxy"), s("localhost,127.0.0.1,::1")));
                Some((PROXY_PORT, inside))
            }
            None => None,
        };
        arg(
            &mut a,
            &[
                "--chdir".as_ref(),
                profile.cwd.as_os_str(),
                "--clearenv".as_ref(),
            ],
        );
        for (k, v) in &env {
            arg(&mut a, &["--setenv".as_ref(), k, v]);
        }
        let l = &profile.limits;
        let mut rlimits = vec![
            (Rlimit::Cpu, l.cpu_time.as_secs().max(1)),
            (Rlimit::Fsize, l.file_size),
            (Rlimit::Nofile, l.open_files),
        ];
        if cgroup.is_none() {
            rlimits.push((Rlimit::As, l.memory));
            // RLIMIT_NPROC counts every process of the user, so it is set above those
            // that run now.
            rlimits.push((Rlimit::Nproc, l.processes + user_processes()));
        }
        let mut writable = vec![profile.worktree.clone(), "/dev".into()];
        // The empty filesystems over /tmp, $HOME… are the sandbox's own: writes there vanish
        // with it (caches, shell history).
        writable.extend(profile.hidden.iter().cloned());
        writable.extend(profile.writable.iter().cloned());
        let config = InitConfig {
            layers: Layers {
                writable,
                proxy_port: bridge.as_ref().map(|(p, _)| *p),
                rlimits,
            },
            bridge,
        };
        let config = serde_json::to_string(&config).expect("the init configuration serializes");
        arg(
            &mut a,
            &[
                "--".as_ref(),
                init_inside.as_ref(),
                INIT_ARG.as_ref(),
                config.as_ref(),
                "--".as_ref(),
            ],
        );
        a.extend(argv.iter().cloned());

        let io = |e| SandboxError::Io("cannot make a pipe".into(), e);
        let (status_read, status_write) = pipe().map_err(io)?;
        let (go_read, go_write) = pipe().map_err(io)?;
        let (info_read, info_write) = pipe().map_err(io)?;
        let mut command = Command::new(bwrap);
        command
            .args(["--info-fd".as_ref(), INFO_FD.to_string().as_ref() as &OsStr])
            .args(&a)
            .env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        let moves = [
            (status_write.as_raw_fd(), STATUS_FD),
            (go_read.as_raw_fd(), GO_FD),
            (info_write.as_raw_fd(), INFO_FD),
        ];
        // SAFETY: between fork and exec only system calls on descriptors this process owns:
        // each is first copied above the targets (so no dup2 clobbers a source), then put in
        // place without close-on-exec.
        unsafe {
            command.pre_exec(move || {
                let mut high = [0i32; 3];
                for (i, (src, _)) in moves.iter().enumerate() {
                    high[i] = libc::fcntl(*src, libc::F_DUPFD, 10);
                    if high[i] < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for (i, (_, target)) in moves.iter().enumerate() {
                    if libc::dup2(high[i], *target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(high[i]);
                }
                Ok(())
            });
        }
        let mut mech = mechanism.describe();
        if let Some(c) = &cgroup {
            mech.push_str(match c.kind {
                crate::cgroup::Kind::V1 => ", cgroup v1",
                crate::cgroup::Kind::V2 => ", cgroup v2",
            });
        } else {
            mech.push_str(", rlimits");
        }
        Ok(Prepared {
            command: Some(command),
            status_read: Some(status_read),
            child_ends: vec![status_write, go_read, info_write],
            go_write: Some(go_write),
            info_read: Some(info_read),
            proxy,
            cgroup,
            held,
            _dir: dir,
            limits: profile.limits.clone(),
            started: None,
            hits: Vec::new(),
            mechanism: mech,
            stripped_env: profile.stripped_env.clone(),
            pid: None,
        })
    }

    /// What was made in the worktree to hold protected places (removed by `finish`): a
    /// recorder leaves these out.
    pub fn placeholders(&self) -> Vec<PathBuf> {
        let files = self.held.files.iter().map(|(p, _)| p.clone());
        self.held.dirs.iter().cloned().chain(files).collect()
    }

    /// The bubblewrap command, to set its stdin, stdout and stderr.
    pub fn command(&mut self) -> &mut Command {
        self.command
            .as_mut()
            .expect("the command is set up before spawn")
    }

    /// Starts the sandbox and waits until the command inside has started (an error when the
    /// sandbox could not be set up or the command could not be run).
    pub fn spawn(&mut self) -> Result<Child, SandboxError> {
        let mut command = self.command.take().expect("spawn is called once");
        let spawned = command.spawn();
        drop(command);
        let mut child =
            spawned.map_err(|e| SandboxError::Setup(format!("cannot start bubblewrap: {e}")))?;
        self.started = Some(Instant::now());
        self.pid = Some(child.id() as i32);
        self.child_ends.clear();
        let read = self.status_read.take().expect("spawn is called once");
        let mut status = BufReader::new(std::fs::File::from(read));
        let mut line = String::new();
        let _ = status.read_line(&mut line);
        if line.trim() == "ready" {
            // The sandbox is set up and init waits: into the cgroup with it, then go.
            if let Err(e) = self.join_cgroup() {
                self.kill();
                let _ = child.wait();
                return Err(e);
            }
            let go = self.go_write.take().expect("spawn is called once");
            let _ = std::fs::File::from(go).write_all(b"g");
            line.clear();
            let _ = status.read_line(&mut line);
            // Init became the command: its end of the pipe closed at exec, with nothing said.
            if line.is_empty() {
                return Ok(child);
            }
        }
        let line = line.trim();
        if line.starts_with("ok") {
            return Ok(child);
        }
        let status = child.wait().ok();
        let why = match line.strip_prefix("error: ") {
            Some(msg) => msg.to_string(),
            None => format!(
                "bubblewrap could not set the sandbox up ({}; its message is above)",
                status.map_or("no status".into(), |s| s.to_string())
            ),
        };
        if line.starts_with("error: cannot run") && why.contains("No such file") {
            return Err(SandboxError::NotFound(why));
        }
        Err(SandboxError::Setup(why))
    }

    /// Moves init (the only child of bubblewrap's PID 1) into the sandbox's cgroup.
    fn join_cgroup(&mut self) -> Result<(), SandboxError> {
        let Some(cgroup) = &self.cgroup else {
            return Ok(());
        };
        let setup = |m: String| SandboxError::Setup(format!("cannot limit the sandbox: {m}"));
        let mut info = String::new();
        let read = self.info_read.take().expect("spawn is called once");
        let mut f = std::fs::File::from(read);
        let mut buf = [0u8; 256];
        while !info.contains('}') && info.len() < 4096 {
            match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => info.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        let pid1 = serde_json::from_str::<serde_json::Value>(&info)
            .ok()
            .and_then(|v| v["child-pid"].as_i64())
            .ok_or_else(|| setup(format!("bubblewrap's info is not understood: {info:?}")))?;
        let init = children(pid1 as i32)
            .into_iter()
            .next()
            .ok_or_else(|| setup(format!("no init under bubblewrap's PID 1 ({pid1})")))?;
        cgroup
            .add(init)
            .map_err(|e| setup(format!("cannot move init ({init}) into its cgroup: {e}")))
    }
    /// Stops the command when it went past its wall time or its output limit (`output`:
    /// bytes it wrote so far). Returns the limit when it did.
    pub fn check(&mut self, output: u64) -> Option<Limit> {
        let started = self.started?;
        let hit = if started.elapsed() >= self.limits.wall_time {
            Limit::WallTime
        } else if output > self.limits.output {
            Limit::Output
        } else {
            return None;
        };
        if !self.hits.contains(&hit) {
            self.hits.push(hit);
        }
        self.kill();
        Some(hit)
    }

    /// Kills the whole sandbox.
    pub fn kill(&self) {
        if let Some(pid) = self.pid {
            kill(pid);
        }
        if let Some(c) = &self.cgroup {
            c.kill_all();
        }
    }

    /// After the command ended: stops the proxy, removes the cgroup and placeholders, and
    /// reports what happened at the edges.
    pub fn finish(mut self, status: Option<&ExitStatus>) -> Report {
        if let Some(c) = &self.cgroup {
            c.kill_all();
            if c.hit_processes() {
                self.hits.push(Limit::Processes);
            }
            if c.hit_memory() {
                self.hits.push(Limit::Memory);
            }
        }
        // Init passes a signal on as 128+signal.
        if let Some(code) = status.and_then(|s| s.code()) {
            match code - 128 {
                libc::SIGXFSZ => self.hits.push(Limit::FileSize),
                libc::SIGXCPU => self.hits.push(Limit::CpuTime),
                _ => {}
            }
        }
        self.hits.dedup();
        let connections = self.proxy.take().map(Proxy::stop).unwrap_or_default();
        drop(std::mem::take(&mut self.held));
        Report {
            mechanism: self.mechanism.clone(),
            connections,
            limits_hit: std::mem::take(&mut self.hits),
            stripped_env: std::mem::take(&mut self.stripped_env),
        }
    }
}

/// What horde made in the worktree to hold protected places that did not exist: removed
/// when dropped (a directory only if still empty, a file only if unchanged).
#[derive(Default)]
struct Held {
    dirs: Vec<PathBuf>,
    files: Vec<(PathBuf, String)>,
}

impl Drop for Held {
    fn drop(&mut self) {
        for p in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(p);
        }
        for (p, content) in &self.files {
            if std::fs::read(p).is_ok_and(|c| c == content.as_bytes()) {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// The children of `pid`.
fn children(pid: i32) -> Vec<i32> {
    if let Ok(list) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        return list
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
    }
    // Kernels without CONFIG_PROC_CHILDREN: every process's parent.
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // The fourth field after the `(comm)` (which may hold spaces) is the parent.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|x| x.parse::<i32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// Processes of this user that exist now (RLIMIT_NPROC counts them too).
fn user_processes() -> u64 {
    // SAFETY: getuid takes nothing.
    let uid = unsafe { libc::getuid() };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut n = 0;
    for e in dir.flatten() {
        if !e
            .file_name()
            .as_encoded_bytes()
            .iter()
            .all(u8::is_ascii_digit)
        {
            continue;
        }
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let owner = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse::<u32>().ok());
        if owner == Some(uid) {
            // Threads count too.
            let threads = status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|t| t.trim().parse::<u64>().ok())
                .unwrap_or(1);
            n += threads;
        }
    }
    n
}
