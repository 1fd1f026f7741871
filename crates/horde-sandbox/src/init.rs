//! The first program inside the sandbox (`horde __sandbox-init CONFIG -- CMD…`): it starts
//! the bridge to the proxy, applies the last layers (limits, Landlock, seccomp) to the command
//! alone, tells the outside that the command started, and passes its exit status on. Without
//! a proxy it has nothing to keep running and becomes the command (the layers on itself, then
//! exec). When it or the command exits, bubblewrap's PID 1 exits and the kernel kills
//! everything left in the namespace.

#![allow(unsafe_code)] // adopting the status descriptor the outside passed as fd 3.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::confine::{Layers, Prepared};

/// The hidden subcommand of the binary that serves as init.
pub const INIT_ARG: &str = "__sandbox-init";
/// The descriptor on which init reports `ready`, then `ok PID` or `error: …`.
pub const STATUS_FD: i32 = 3;
/// The descriptor on which init waits for the outside's go-ahead: once the sandbox is set
/// up, the outside moves init into the sandbox's cgroup, so that the command (started after)
/// is in it from its first instruction, while bubblewrap's own setup was not charged to it.
pub const GO_FD: i32 = 4;
/// Init's own exit code when it could not start the command (as `env` and `nohup` do).
pub const EXIT_CANNOT_RUN: i32 = 125;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitConfig {
    pub layers: Layers,
    /// The loopback port to listen on and the proxy's socket to bridge it to.
    pub bridge: Option<(u16, PathBuf)>,
}

fn fail(status: &mut Option<std::fs::File>, msg: &str) -> ! {
    if let Some(s) = status {
        let _ = writeln!(s, "error: {msg}");
    }
    eprintln!("horde sandbox: {msg}");
    std::process::exit(EXIT_CANNOT_RUN)
}

/// Tells the outside (and the user) that the command could not start; exits 127 when it
/// does not exist, else 125.
fn cannot_run(status: &mut Option<std::fs::File>, program: &OsStr, e: &std::io::Error) -> ! {
    let code = if e.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        EXIT_CANNOT_RUN
    };
    if let Some(s) = status {
        let _ = writeln!(s, "error: cannot run {}: {e}", program.to_string_lossy());
    }
    eprintln!(
        "horde sandbox: cannot run {}: {e}",
        program.to_string_lossy()
    );
    std::process::exit(code)
}

/// Runs init. `args` are what follows the subcommand: `CONFIG_JSON -- CMD ARGS…`.
pub fn main(args: Vec<OsString>) -> ! {
    // SAFETY: the outside passes the write end of its status pipe as fd 3 and the read end
    // of its go-ahead pipe as fd 4, and nothing else in this process uses those descriptors;
    // adopting them makes them close-on-exec below.
    let mut status = Some(unsafe { std::fs::File::from_raw_fd(STATUS_FD) });
    let mut go = unsafe { std::fs::File::from_raw_fd(GO_FD) };
    for fd in [STATUS_FD, GO_FD] {
        // SAFETY: fcntl on a descriptor this process owns.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    let mut it = args.into_iter();
    let config: InitConfig = match it
        .next()
        .and_then(|c| c.into_string().ok())
        .map(|c| serde_json::from_str(&c))
    {
        Some(Ok(c)) => c,
        Some(Err(e)) => fail(&mut status, &format!("bad init configuration: {e}")),
        None => fail(&mut status, "no init configuration"),
    };
    if it.next().as_deref() != Some(std::ffi::OsStr::new("--")) {
        fail(&mut status, "expected `--` before the command");
    }
    let argv: Vec<OsString> = it.collect();
    let Some(program) = argv.first() else {
        fail(&mut status, "no command to run");
    };
    if let Some((port, socket)) = &config.bridge {
        let listener = match std::net::TcpListener::bind(("127.0.0.1", *port)) {
            Ok(l) => l,
            Err(e) => fail(
                &mut status,
                &format!("cannot listen on 127.0.0.1:{port}: {e}"),
            ),
        };
        if let Err(e) = crate::bridge::spawn(listener, socket.clone()) {
            fail(&mut status, &format!("cannot start the proxy bridge: {e}"));
        }
    }
    let mut layers = match Prepared::new(&config.layers) {
        Ok(p) => p,
        Err(e) => fail(&mut status, &e.to_string()),
    };
    if let Some(s) = &mut status {
        let _ = writeln!(s, "ready");
    }
    let mut byte = [0u8; 1];
    match std::io::Read::read(&mut go, &mut byte) {
        Ok(1) => {}
        _ => fail(
            &mut status,
            "the outside went away before the command started",
        ),
    }
    drop(go);
    let mut cmd = Command::new(program);
    cmd.args(&argv[1..]);
    // SAFETY: the closure only makes system calls (setrlimit, prctl, landlock, seccomp)
    // on structures built before the fork.
    unsafe {
        cmd.pre_exec(move || layers.apply());
    }
    if config.bridge.is_none() {
        // Nothing to keep running here: init becomes the command (the layers apply to this
        // process, then exec). The status pipe is close-on-exec: its end without a line is
        // the outside's sign that the command runs.
        let e = cmd.exec();
        cannot_run(&mut status, program, &e);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => cannot_run(&mut status, program, &e),
    };
    if let Some(mut s) = status.take() {
        let _ = writeln!(s, "ok {}", child.id());
    }
    // Orphans re-parent to bubblewrap's PID 1, not here; only the command is waited for.
    let code = match child.wait() {
        Ok(st) => st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)),
        Err(_) => EXIT_CANNOT_RUN,
    };
    std::process::exit(code)
}
