//! What this machine offers for confinement (`horde doctor`).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// bubblewrap's path and version.
    pub bwrap: Option<(PathBuf, String)>,
    /// Whether bubblewrap made a sandbox with every namespace (the error if not).
    #[serde(serialize_with = "ok_or_message")]
    pub bwrap_works: Result<(), String>,
    pub landlock_abi: Option<i32>,
    pub seccomp: bool,
    /// Whether this user may create user namespaces.
    pub user_namespaces: bool,
    /// Which cgroup this user can make for a sandbox (`None`: rlimits only).
    pub cgroup: Option<crate::cgroup::Kind>,
    pub running_as_root: bool,
}

fn ok_or_message<S: serde::Serializer>(r: &Result<(), String>, s: S) -> Result<S::Ok, S::Error> {
    match r {
        Ok(()) => s.serialize_str("ok"),
        Err(e) => s.serialize_str(e),
    }
}

/// Where bubblewrap is: `$HORDE_BWRAP`, else `bwrap` on `PATH`.
pub fn find_bwrap() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HORDE_BWRAP") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())
}

/// `bwrap --version`, without its name.
pub fn bwrap_version(bwrap: &std::path::Path) -> String {
    Command::new(bwrap)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .map(|v| v.trim_start_matches("bubblewrap ").to_string())
        .unwrap_or_else(|| "unknown".into())
}

pub fn probe() -> Probe {
    let bwrap = find_bwrap().map(|p| {
        let version = bwrap_version(&p);
        (p, version)
    });
    let bwrap_works = match &bwrap {
        None => Err("not installed".into()),
        Some((p, _)) => Command::new(p)
            .args([
                "--unshare-all",
                "--die-with-parent",
                "--new-session",
                "--ro-bind",
                "/",
                "/",
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                "true",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| e.to_string())
            .and_then(|o| {
                if o.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
                }
            }),
    };
    let user_namespaces = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0)
        && std::fs::read_to_string("/proc/sys/kernel/unprivileged_userns_clone")
            .map(|s| s.trim() != "0")
            .unwrap_or(true);
    let cgroup = crate::cgroup::Cgroup::create(16, 64 << 20).map(|c| c.kind);
    Probe {
        bwrap,
        bwrap_works,
        landlock_abi: crate::confine::landlock_abi(),
        seccomp: crate::confine::seccomp_available(),
        user_namespaces,
        cgroup,
        running_as_root: euid_is_root(),
    }
}

#[allow(unsafe_code)]
fn euid_is_root() -> bool {
    // SAFETY: geteuid takes nothing.
    unsafe { libc::geteuid() == 0 }
}
