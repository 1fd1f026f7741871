//! Running a command confined. Knows nothing about policy decisions: it is given a `Profile`
//! (what the command may see, write and reach, and its limits) and reports what the command
//! tried at the edges (connections, limits reached).
//!
//! Layers, outermost first:
//! - bubblewrap: new user, mount, PID, network, IPC and UTS namespaces; `/` read-only; a
//!   fresh `/proc` and `/dev`; empty filesystems over `/tmp`, `/home`, `/root`, `/run`…; the
//!   worktree writable, its protected paths read-only, denied paths hidden; a new session;
//!   killed with its parent.
//! - horde's init inside (`init.rs`): the bridge from a loopback port to the proxy's socket.
//! - on the command alone (`confine.rs`): rlimits, `NO_NEW_PRIVS`, Landlock, seccomp.
//! - outside (`launch.rs`): the proxy (`proxy.rs`) that filters hosts and records every
//!   connection, a cgroup for processes and memory, the wall-time and output limits.
//!
//! Start reading at `launch::Prepared`.

pub mod bridge;
pub mod cgroup;
pub mod confine;
pub mod env;
pub mod init;
pub mod launch;
pub mod probe;
pub mod profile;
pub mod proxy;

use std::path::PathBuf;

pub use launch::{Prepared, Report};
pub use profile::{Limit, Limits, Profile, ProfileBuilder};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0}")]
    Profile(String),
    #[error("command not found: {0}")]
    NotFound(String),
    #[error("the sandbox cannot be set up: {0}")]
    Setup(String),
    #[error("no sandbox: {0}")]
    Unavailable(String),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
}

/// How commands can be confined on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    Bubblewrap {
        path: PathBuf,
        version: String,
        landlock: Option<i32>,
        seccomp: bool,
    },
    /// Nothing that confines: why.
    None(String),
}

impl Mechanism {
    /// Finds bubblewrap (`$HORDE_BWRAP`, else `bwrap` on `PATH`). Cheap: it does not try
    /// a sandbox (`probe::probe` does, for `horde doctor`); a bubblewrap that cannot make one
    /// here fails at `Prepared::spawn` with its own message.
    pub fn detect() -> Mechanism {
        match probe::find_bwrap() {
            Some(path) => Mechanism::Bubblewrap {
                version: probe::bwrap_version(&path),
                path,
                landlock: confine::landlock_abi(),
                seccomp: confine::seccomp_available(),
            },
            None => Mechanism::None(
                "bubblewrap is not installed (Debian/Ubuntu: apt install bubblewrap)".into(),
            ),
        }
    }

    /// Like `detect`, but tries a sandbox first: `None` when bubblewrap cannot make one.
    pub fn detect_working() -> Mechanism {
        match (Self::detect(), probe::probe().bwrap_works) {
            (Mechanism::Bubblewrap { path, .. }, Err(e)) => Mechanism::None(format!(
                "bubblewrap ({}) cannot make a sandbox here: {e}",
                path.display()
            )),
            (m, _) => m,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Mechanism::Bubblewrap {
                version,
                landlock,
                seccomp,
                ..
            } => {
                let mut s = format!("bubblewrap {version}");
                if *seccomp {
                    s.push_str(", seccomp");
                }
                match landlock {
                    Some(v) => s.push_str(&format!(", landlock v{v}")),
                    None => s.push_str(", no landlock"),
                }
                s
            }
            Mechanism::None(why) => why.clone(),
        }
    }
}
