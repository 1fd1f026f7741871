//! `horde sandbox run`, `horde doctor`, and the profile `horde run --sandbox` confines with.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use horde_sandbox::{Limits, Mechanism, Prepared, Profile, ProfileBuilder, SandboxError};

/// Exit code when the sandbox could not be set up (as `env` and container runtimes use).
pub const EXIT_NO_SANDBOX: u8 = 125;
/// Exit code when the command does not exist.
pub const EXIT_NOT_FOUND: u8 = 127;

/// What confines a command: shared by `horde sandbox run` and `horde run --sandbox`.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct SandboxOpts {
    /// Let the command reach HOST (`host`, `host:port`, `*.domain`) through horde's proxy
    /// (repeatable). Without any, the command has no network at all.
    #[arg(long = "allow-net", value_name = "HOST")]
    pub allow_net: Vec<String>,
    /// Make a protected path inside the worktree writable (`.git/hooks`, `.git/config`,
    /// `.horde`, `.claude`, `.codex`, `.vscode` are read-only otherwise). Repeatable.
    #[arg(long = "rw", value_name = "PATH")]
    pub rw: Vec<PathBuf>,
    /// Mount PATH read-only into the sandbox (a toolchain or cache under a hidden place such
    /// as $HOME or /tmp). Repeatable.
    #[arg(long = "ro", value_name = "PATH")]
    pub ro: Vec<PathBuf>,
    /// Hide PATH from the command. Repeatable.
    #[arg(long = "deny", value_name = "PATH")]
    pub deny: Vec<PathBuf>,
    /// Let the environment variable NAME through although it looks like a secret. Repeatable.
    #[arg(long = "pass-env", value_name = "NAME")]
    pub pass_env: Vec<String>,
    /// Stop the command after this long (`90s`, `10m`, `2h`; default 1h, or the role's
    /// wall_time budget).
    #[arg(long, value_name = "DURATION")]
    pub wall_time: Option<String>,
    /// CPU time of each process (default 1h).
    #[arg(long, value_name = "DURATION")]
    pub cpu_time: Option<String>,
    /// Memory of the whole tree (`512M`, `4G`; default 8G).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Processes and threads of the whole tree (default 1024).
    #[arg(long, value_name = "N")]
    pub processes: Option<u64>,
    /// Largest file the command may write (default 4G).
    #[arg(long, value_name = "SIZE")]
    pub file_size: Option<String>,
    /// Open files of each process (default 1024).
    #[arg(long, value_name = "N")]
    pub open_files: Option<u64>,
    /// Output (stdout and stderr) before the command is stopped (default 256M).
    #[arg(long, value_name = "SIZE")]
    pub output: Option<String>,
    /// Run without confinement when this machine has no sandbox (bubblewrap missing or not
    /// working). Recorded as unsandboxed.
    #[arg(long)]
    pub unsandboxed: bool,
}

fn duration(flag: &str, s: &str) -> Result<Duration> {
    horde_policy::manifest::parse_duration(s).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
}

fn size(flag: &str, s: &str) -> Result<u64> {
    horde_sandbox::profile::parse_size(s).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
}

/// The profile for a command working in `worktree`.
/// With `role`: its manifest's network allow-list, denied files and wall-time budget too.
pub fn profile(opts: &SandboxOpts, role: Option<&str>, worktree: &Path) -> Result<Profile> {
    let mut b = ProfileBuilder::new(worktree).cwd(crate::session::cwd()?);
    let mut limits = Limits::default();
    if let Some(role) = role {
        let policy = crate::gate::role_policy(role)?;
        let m = policy
            .set
            .manifest(role)
            .with_context(|| format!("no manifest for role {role:?}"))?;
        for rule in &m.network {
            b = b.allow_host(match &rule.value {
                horde_policy::manifest::HostPattern::Exact(h) => h.clone(),
                horde_policy::manifest::HostPattern::Subdomains(s) => format!("*{s}"),
            });
        }
        if let Some(w) = m.budgets.wall_time {
            limits.wall_time = w;
        }
        for path in denied_files(m, worktree)? {
            b = b.deny_if_present(path);
        }
    }
    for h in &opts.allow_net {
        b = b.allow_host(h.clone());
    }
    for p in &opts.rw {
        b = b.writable(p.clone());
    }
    for p in &opts.ro {
        b = b.read_only(p.clone());
    }
    for p in &opts.deny {
        b = b.deny(p.clone());
    }
    for n in &opts.pass_env {
        b = b.pass_env(n.clone());
    }
    // horde's own configuration (the device key) wherever it lives.
    let config = crate::config::user_config_dir();
    if config.exists() && !worktree.starts_with(&config) {
        b = b.deny(config);
    }
    if let Some(s) = &opts.wall_time {
        limits.wall_time = duration("wall-time", s)?;
    }
    if let Some(s) = &opts.cpu_time {
        limits.cpu_time = duration("cpu-time", s)?;
    }
    if let Some(s) = &opts.memory {
        limits.memory = size("memory", s)?;
    }
    if let Some(n) = opts.processes {
        limits.processes = n;
    }
    if let Some(s) = &opts.file_size {
        limits.file_size = size("file-size", s)?;
    }
    if let Some(n) = opts.open_files {
        limits.open_files = n;
    }
    if let Some(s) = &opts.output {
        limits.output = size("output", s)?;
    }
    Ok(b.limits(limits).build()?)
}

/// Files in the worktree that the role's `files.deny` globs name. Paths under `.git/` and
/// `.horde/` are left to the protected (read-only) mounts: git itself must keep working.
fn denied_files(m: &horde_policy::manifest::Manifest, worktree: &Path) -> Result<Vec<PathBuf>> {
    /// Files denied by glob that one profile hides at most (each is one mount).
    const MAX_DENIED_FILES: usize = 400;
    let globs: Vec<_> = m
        .files
        .deny
        .iter()
        .filter(|r| !r.value.absolute)
        .map(|r| r.value.glob.compile_matcher())
        .collect();
    if globs.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let walk = ignore::WalkBuilder::new(worktree)
        .hidden(false)
        .git_ignore(false)
        .git_exclude(false)
        .ignore(false)
        .parents(false)
        .filter_entry(|e| {
            let n = e.file_name();
            n != ".git" && n != ".horde"
        })
        .build();
    for entry in walk.flatten() {
        let Ok(rel) = entry.path().strip_prefix(worktree) else {
            continue;
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        if globs.iter().any(|g| g.is_match(rel)) {
            if out.len() == MAX_DENIED_FILES {
                bail!(
                    "the role's files.deny globs match more than {MAX_DENIED_FILES} files in {}; deny their directory instead",
                    worktree.display()
                );
            }
            out.push(entry.path().to_path_buf());
        }
    }
    Ok(out)
}

/// This machine's sandbox, or an error saying why there is none (unless `unsandboxed`).
pub fn mechanism(unsandboxed: bool) -> Result<Option<Mechanism>> {
    // With --unsandboxed, a bubblewrap that cannot make a sandbox here falls back too, so it
    // is tried first; otherwise its failure is the error.
    let m = if unsandboxed {
        Mechanism::detect_working()
    } else {
        Mechanism::detect()
    };
    match m {
        m @ Mechanism::Bubblewrap { .. } => Ok(Some(m)),
        Mechanism::None(why) if unsandboxed => {
            eprintln!("horde: warning: running unsandboxed: {why}");
            Ok(None)
        }
        Mechanism::None(why) => bail!(
            "cannot confine the command: {why}. `horde doctor` says what is missing; --unsandboxed runs it without confinement"
        ),
    }
}

/// The executable that serves as the sandbox's init: this one.
pub fn init_exe() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find horde's own executable (the sandbox's init)")
}

/// Prepares `argv` to run confined: the profile's errors and a missing command surface here,
/// before anything runs.
pub fn prepare(
    opts: &SandboxOpts,
    role: Option<&str>,
    worktree: &Path,
    argv: &[OsString],
) -> Result<Option<Prepared>> {
    let profile = profile(opts, role, worktree)?;
    let Some(mechanism) = mechanism(opts.unsandboxed)? else {
        return Ok(None);
    };
    Ok(Some(Prepared::new(
        &profile,
        argv,
        &mechanism,
        &init_exe()?,
    )?))
}

/// The report as the ToolCall carries it (at most `MAX_CONNECTIONS` connections).
pub fn to_proto(r: &horde_sandbox::Report) -> horde_core::proto::SandboxReport {
    const MAX_CONNECTIONS: usize = 100;
    let keep = r.connections.len().min(MAX_CONNECTIONS);
    horde_core::proto::SandboxReport {
        mechanism: r.mechanism.clone(),
        connections: r.connections[..keep]
            .iter()
            .map(|c| horde_core::proto::NetConnection {
                host: c.host.clone(),
                port: u32::from(c.port),
                protocol: c.protocol.to_string(),
                allowed: c.allowed,
                reason: c.reason.clone(),
                bytes_sent: c.bytes_sent,
                bytes_received: c.bytes_received,
                duration_ms: c.duration_ms,
            })
            .collect(),
        connections_omitted: u32::try_from(r.connections.len() - keep).unwrap_or(u32::MAX),
        limits_hit: r.limits_hit.iter().map(|l| l.name().to_owned()).collect(),
        stripped_env: r.stripped_env.clone(),
    }
}

/// Tells the user what the sandbox stopped or refused.
pub fn print_report(r: &horde_sandbox::Report, limits: Option<&Limits>) {
    for c in r.connections.iter().filter(|c| !c.allowed) {
        eprintln!(
            "horde sandbox: refused a connection to {}:{} ({})",
            c.host, c.port, c.reason
        );
    }
    for l in &r.limits_hit {
        let what = limits.map(|x| limit_value(x, *l)).unwrap_or_default();
        eprintln!(
            "horde sandbox: the command reached its {} limit{what}",
            l.name()
        );
    }
}

fn limit_value(l: &Limits, which: horde_sandbox::Limit) -> String {
    use horde_sandbox::Limit::*;
    match which {
        WallTime => format!(" ({:?})", l.wall_time),
        CpuTime => format!(" ({:?})", l.cpu_time),
        Memory => format!(" ({} bytes)", l.memory),
        Processes => format!(" ({})", l.processes),
        FileSize => format!(" ({} bytes)", l.file_size),
        OpenFiles => format!(" ({})", l.open_files),
        Output => format!(" ({} bytes)", l.output),
    }
}

#[derive(Args, Debug)]
pub struct SandboxRunArgs {
    /// Take the profile from this role's manifest: its network allow-list, its denied files,
    /// its wall-time budget.
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    #[command(flatten)]
    pub opts: SandboxOpts,
    /// Print the report (mechanism, connections, limits reached) as JSON on stderr at the end.
    #[arg(long)]
    pub json: bool,
    /// The command and its arguments, after `--`.
    #[arg(required = true, value_name = "CMD", allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

/// The worktree a sandboxed command gets: the repository around the current directory, or
/// the current directory outside one.
fn worktree() -> Result<PathBuf> {
    let cwd = crate::session::cwd()?;
    Ok(crate::store::Layout::discover(&cwd)
        .map(|l| l.root)
        .unwrap_or(cwd))
}

/// `horde sandbox run`: runs a command confined, without recording it.
pub fn cmd_sandbox_run(args: SandboxRunArgs) -> Result<ExitCode> {
    let worktree = worktree()?;
    let profile = profile(&args.opts, args.role.as_deref(), &worktree)?;
    let Some(mechanism) = mechanism(args.opts.unsandboxed)? else {
        let status = std::process::Command::new(&args.command[0])
            .args(&args.command[1..])
            .status()
            .with_context(|| format!("cannot run {}", args.command[0].to_string_lossy()))?;
        return Ok(exit_code(status.code().unwrap_or(1)));
    };
    let mut p = match Prepared::new(&profile, &args.command, &mechanism, &init_exe()?) {
        Ok(p) => p,
        Err(e) => return Ok(sandbox_error(&e)),
    };
    p.command()
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match p.spawn() {
        Ok(c) => c,
        Err(e) => return Ok(sandbox_error(&e)),
    };
    let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let relays: Vec<_> = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .enumerate()
    .filter_map(|(i, src)| {
        let src = src?;
        let total = total.clone();
        Some(std::thread::spawn(move || relay(src, i == 0, &total)))
    })
    .collect();
    // The exit is noticed at once (a thread waits); limits are checked meanwhile.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(st) => break st.context("cannot wait for the sandbox")?,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                p.check(total.load(std::sync::atomic::Ordering::Relaxed));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                bail!("lost the sandbox's exit status")
            }
        }
    };
    for r in relays {
        let _ = r.join();
    }
    let report = p.finish(Some(&status));
    print_report(&report, Some(&profile.limits));
    if args.json {
        eprintln!("{}", serde_json::to_string(&report)?);
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(exit_code(
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
    ))
}

/// Copies the command's output to ours, counting it (the sandbox stops the command past
/// its output limit).
fn relay(mut src: Box<dyn Read + Send>, stdout: bool, total: &std::sync::atomic::AtomicU64) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        total.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        let w = if stdout {
            std::io::stdout().lock().write_all(&buf[..n])
        } else {
            std::io::stderr().lock().write_all(&buf[..n])
        };
        if w.is_err() {
            // Our reader went away: keep draining so the command is not blocked.
            continue;
        }
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
}

/// Says why the command was not run, with the exit code for it.
pub fn sandbox_error(e: &SandboxError) -> ExitCode {
    eprintln!("horde: {e}");
    match e {
        SandboxError::NotFound(_) => ExitCode::from(EXIT_NOT_FOUND),
        _ => ExitCode::from(EXIT_NO_SANDBOX),
    }
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    #[arg(long)]
    pub json: bool,
}

/// `horde doctor`: which confinement mechanisms work here and what is degraded; exit 1 when
/// an agent's command could not be confined.
pub fn cmd_doctor(args: DoctorArgs) -> Result<ExitCode> {
    let p = horde_sandbox::probe::probe();
    let confined = p.bwrap_works.is_ok();
    if args.json {
        let mut v = serde_json::to_value(&p)?;
        v["confined"] = serde_json::Value::Bool(confined);
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(if confined {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let mark = |ok: bool| if ok { "ok  " } else { "--  " };
    match (&p.bwrap, &p.bwrap_works) {
        (Some((path, v)), Ok(())) => {
            println!(
                "{}bubblewrap {v} ({}): namespaces work",
                mark(true),
                path.display()
            )
        }
        (Some((path, v)), Err(e)) => println!(
            "{}bubblewrap {v} ({}) cannot make a sandbox: {e}",
            mark(false),
            path.display()
        ),
        (None, _) => println!(
            "{}bubblewrap: not installed (apt install bubblewrap)",
            mark(false)
        ),
    }
    println!(
        "{}user namespaces: {}",
        mark(p.user_namespaces || p.running_as_root),
        if p.user_namespaces {
            "available"
        } else if p.running_as_root {
            "off (root does not need them)"
        } else {
            "off: bubblewrap cannot make a sandbox as this user"
        }
    );
    println!(
        "{}seccomp: {}",
        mark(p.seccomp),
        if p.seccomp {
            "available (ptrace, io_uring, bpf, mount… refused; sockets other than Unix unless a host is allowed)"
        } else {
            "not available: the command's system calls are not filtered"
        }
    );
    match p.landlock_abi {
        Some(v) => println!(
            "{}landlock: ABI {v}{}",
            mark(true),
            if v >= 4 {
                " (files and TCP)"
            } else {
                " (files only: no TCP rules below ABI 4)"
            }
        ),
        None => println!(
            "{}landlock: not available (the second filesystem layer is missing)",
            mark(false)
        ),
    }
    match p.cgroup {
        Some(k) => println!(
            "{}cgroups: {} (processes and memory limited for the whole tree)",
            mark(true),
            match k {
                horde_sandbox::cgroup::Kind::V1 => "v1",
                horde_sandbox::cgroup::Kind::V2 => "v2 (delegated)",
            }
        ),
        None => println!(
            "{}cgroups: none this user may create (rlimits per process instead)",
            mark(false)
        ),
    }
    if confined {
        println!("agents' commands are confined");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "agents' commands cannot be confined here: `horde run --sandbox` refuses to run them unless --unsandboxed is given"
        );
        Ok(ExitCode::FAILURE)
    }
}
