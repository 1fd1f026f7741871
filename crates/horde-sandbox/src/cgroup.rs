//! A control group of its own for a sandboxed command, where this user may make one: the
//! limits on processes and memory then hold for the whole tree, however it forks. Cgroup v2
//! (a delegated subtree) or v1 (the `pids` and `memory` controllers); otherwise `None` and
//! the caller falls back to rlimits.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(0);

const ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    V1,
    V2,
}

/// One sandbox's control group (one directory per controller on v1).
#[derive(Debug)]
pub struct Cgroup {
    pub kind: Kind,
    dirs: Vec<PathBuf>,
}

/// The cgroup path of this process for a v1 controller, or the v2 path (`controller` empty).
fn own_path(controller: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = if controller.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == controller)
        };
        hit.then(|| path.to_string())
    })
}

fn base(mount: &Path, own: Option<String>) -> PathBuf {
    let own = own.unwrap_or_default();
    let p = mount.join(own.trim_start_matches('/'));
    if p.is_dir() { p } else { mount.to_path_buf() }
}

fn write(dir: &Path, file: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(dir.join(file), value)
}

impl Cgroup {
    /// Makes a control group limiting processes and memory, or `None` when this user cannot.
    pub fn create(processes: u64, memory: u64) -> Option<Cgroup> {
        let name = format!(
            "horde-sandbox-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let root = Path::new(ROOT);
        if root.join("cgroup.controllers").is_file() {
            return Self::create_v2(&base(root, own_path("")), &name, processes, memory);
        }
        let pids = root.join("pids");
        let mem = root.join("memory");
        if !pids.join("cgroup.procs").is_file() || !mem.join("cgroup.procs").is_file() {
            return None;
        }
        let mut cg = Cgroup {
            kind: Kind::V1,
            dirs: Vec::new(),
        };
        for (mount, ctrl, file, value) in [
            (&pids, "pids", "pids.max", processes.to_string()),
            (&mem, "memory", "memory.limit_in_bytes", memory.to_string()),
        ] {
            let dir = base(mount, own_path(ctrl)).join(&name);
            if std::fs::create_dir(&dir).is_err() {
                return None; // `cg` drops and removes what was made
            }
            cg.dirs.push(dir.clone());
            write(&dir, file, &value).ok()?;
        }
        // Swap would let the tree go past its memory; where the kernel counts it, cap it too.
        let _ = write(
            &cg.dirs[1],
            "memory.memsw.limit_in_bytes",
            &memory.to_string(),
        );
        Some(cg)
    }

    fn create_v2(base: &Path, name: &str, processes: u64, memory: u64) -> Option<Cgroup> {
        let controllers = std::fs::read_to_string(base.join("cgroup.subtree_control")).ok()?;
        if !controllers.split_whitespace().any(|c| c == "pids")
            || !controllers.split_whitespace().any(|c| c == "memory")
        {
            return None;
        }
        let dir = base.join(name);
        std::fs::create_dir(&dir).ok()?;
        let mut cg = Cgroup {
            kind: Kind::V2,
            dirs: Vec::new(),
        };
        cg.dirs.push(dir.clone());
        write(&dir, "pids.max", &processes.to_string()).ok()?;
        write(&dir, "memory.max", &memory.to_string()).ok()?;
        let _ = write(&dir, "memory.swap.max", "0");
        Some(cg)
    }

    /// Moves a process into the group (every controller's directory).
    pub fn add(&self, pid: i32) -> std::io::Result<()> {
        for dir in &self.dirs {
            write(dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// Whether the tree hit its process limit.
    pub fn hit_processes(&self) -> bool {
        let dir = &self.dirs[0];
        let events = std::fs::read_to_string(dir.join("pids.events")).unwrap_or_default();
        events
            .lines()
            .any(|l| l.starts_with("max ") && l[4..].trim() != "0")
    }

    /// Whether the tree hit its memory limit (an allocation failed or the OOM killer ran).
    pub fn hit_memory(&self) -> bool {
        match self.kind {
            Kind::V1 => {
                let dir = &self.dirs[1];
                std::fs::read_to_string(dir.join("memory.failcnt"))
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            }
            Kind::V2 => {
                let events =
                    std::fs::read_to_string(self.dirs[0].join("memory.events")).unwrap_or_default();
                events.lines().any(|l| {
                    (l.starts_with("oom_kill ") || l.starts_with("max "))
                        && l.split_whitespace().nth(1) != Some("0")
                })
            }
        }
    }

    /// Kills whatever is still in the group (v2 `cgroup.kill`, else each pid).
    pub fn kill_all(&self) {
        for dir in &self.dirs {
            if self.kind == Kind::V2 && write(dir, "cgroup.kill", "1").is_ok() {
                continue;
            }
            let pids = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                crate::launch::kill(pid);
            }
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            // Empty once the tree is gone; a few tries while the last processes are reaped.
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}
