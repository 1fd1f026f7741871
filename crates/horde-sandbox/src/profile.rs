//! What a confined command may see and do: the `Profile`. Built by `ProfileBuilder`, which
//! checks every input before anything runs.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::SandboxError;
use crate::proxy::NetRule;

/// Paths inside the writable root that stay read-only: what would run code or change horde's
/// record outside the sandbox (git hooks and config, horde's ledger, agents' and editors'
/// settings). `--rw` reopens one explicitly.
pub const PROTECTED: [&str; 6] = [
    ".git/hooks",
    ".git/config",
    ".horde",
    ".claude",
    ".codex",
    ".vscode",
];

/// Below `$HOME`, never visible, even under a read-only root that would expose it.
pub const DENIED_IN_HOME: [&str; 14] = [
    ".ssh",
    ".aws",
    ".gnupg",
    ".config/horde",
    ".config/gcloud",
    ".azure",
    ".kube",
    ".docker",
    ".netrc",
    ".git-credentials",
    ".cargo/credentials.toml",
    ".cargo/credentials",
    ".npmrc",
    ".pypirc",
];

/// Hidden behind an empty filesystem: where other users' and programs' files, sockets and
/// secrets live. The worktree and the read-only roots are mounted back on top.
pub const HIDDEN: [&str; 8] = [
    "/tmp", "/var/tmp", "/run", "/var/run", "/home", "/root", "/mnt", "/media",
];

/// Most paths a profile may name (binds are one mount each).
pub const MAX_PATHS: usize = 512;
/// Most hosts of a network allow-list.
pub const MAX_HOSTS: usize = 256;

/// Resource limits. Each applies to the whole process tree of the command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// CPU time of each process (RLIMIT_CPU).
    pub cpu_time: Duration,
    /// Memory: the cgroup's limit where one can be made, else each process's address space.
    pub memory: u64,
    /// Processes and threads: the cgroup's `pids.max`, else RLIMIT_NPROC above what runs now.
    pub processes: u64,
    /// Largest file a process may write (RLIMIT_FSIZE).
    pub file_size: u64,
    /// Open files of each process (RLIMIT_NOFILE).
    pub open_files: u64,
    /// Output (stdout and stderr together) before the command is stopped.
    pub output: u64,
    /// Wall time before the command is stopped.
    pub wall_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_time: Duration::from_secs(3600),
            memory: 8 << 30,
            processes: 1024,
            file_size: 4 << 30,
            open_files: 1024,
            output: 256 << 20,
            wall_time: Duration::from_secs(3600),
        }
    }
}

/// Which limit stopped or bounded a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    CpuTime,
    Memory,
    Processes,
    FileSize,
    OpenFiles,
    Output,
    WallTime,
}

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Self::CpuTime => "cpu_time",
            Self::Memory => "memory",
            Self::Processes => "processes",
            Self::FileSize => "file_size",
            Self::OpenFiles => "open_files",
            Self::Output => "output",
            Self::WallTime => "wall_time",
        }
    }
}

/// A checked profile: every path absolute, canonical and existing.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// The writable root: the repository or worktree the command works in.
    pub worktree: PathBuf,
    /// Paths inside the worktree made writable again although protected.
    pub writable: Vec<PathBuf>,
    /// Read-only roots mounted back into hidden places (toolchains under `$HOME`).
    pub read_only: Vec<PathBuf>,
    /// Never visible (an empty file or directory is mounted over each).
    pub denied: Vec<PathBuf>,
    /// Read-only inside the worktree.
    pub protected: Vec<PathBuf>,
    /// Protected paths that do not exist yet: an empty read-only directory holds each place
    /// while the command runs (and is removed afterwards) so it cannot be created.
    pub placeholders: Vec<PathBuf>,
    /// Files that must not be created while the command runs (`.git/commondir`): each is
    /// written with its content, held read-only, and removed afterwards if unchanged.
    pub file_placeholders: Vec<(PathBuf, String)>,
    pub hidden: Vec<PathBuf>,
    /// Hosts reachable through the proxy; empty: no network at all.
    #[serde(serialize_with = "display_all")]
    pub network: Vec<NetRule>,
    pub limits: Limits,
    /// The whole environment the command gets.
    #[serde(skip)]
    pub env: Vec<(OsString, OsString)>,
    /// Names of variables taken out of the environment (values never kept).
    pub stripped_env: Vec<String>,
    pub cwd: PathBuf,
    /// Limit processes and memory with a cgroup where one can be made (else rlimits).
    pub cgroup: bool,
}

fn display_all<S: serde::Serializer>(rules: &[NetRule], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(rules.iter().map(|r| r.to_string()))
}

/// Builds a `Profile` from what a user or a manifest asked for.
#[derive(Debug, Clone)]
pub struct ProfileBuilder {
    worktree: PathBuf,
    home: Option<PathBuf>,
    rw: Vec<PathBuf>,
    ro: Vec<PathBuf>,
    deny: Vec<PathBuf>,
    deny_in_worktree: Vec<PathBuf>,
    hosts: Vec<String>,
    limits: Limits,
    env: Vec<(OsString, OsString)>,
    pass_env: Vec<String>,
    cwd: Option<PathBuf>,
    cgroup: bool,
}

impl ProfileBuilder {
    /// A profile for `worktree` with the defaults: no network, the default limits, the
    /// protected paths read-only, `$HOME`'s secrets denied, toolchains on `$PATH` readable.
    pub fn new(worktree: impl Into<PathBuf>) -> Self {
        Self {
            worktree: worktree.into(),
            home: std::env::var_os("HOME").map(PathBuf::from),
            rw: Vec::new(),
            ro: Vec::new(),
            deny: Vec::new(),
            deny_in_worktree: Vec::new(),
            hosts: Vec::new(),
            limits: Limits::default(),
            env: std::env::vars_os().collect(),
            pass_env: Vec::new(),
            cwd: None,
            cgroup: true,
        }
    }

    /// The home directory whose secrets are denied (default `$HOME`).
    pub fn home(mut self, home: Option<PathBuf>) -> Self {
        self.home = home;
        self
    }
    /// Makes a path inside the worktree writable again (a protected one).
    pub fn writable(mut self, path: impl Into<PathBuf>) -> Self {
        self.rw.push(path.into());
        self
    }
    /// Mounts a path read-only into the sandbox (it must exist).
    pub fn read_only(mut self, path: impl Into<PathBuf>) -> Self {
        self.ro.push(path.into());
        self
    }
    /// Hides a path (it must exist).
    pub fn deny(mut self, path: impl Into<PathBuf>) -> Self {
        self.deny.push(path.into());
        self
    }
    /// Hides a path if it exists (a manifest's deny globs expand to these).
    pub fn deny_if_present(mut self, path: impl Into<PathBuf>) -> Self {
        self.deny_in_worktree.push(path.into());
        self
    }
    /// Allows a host through the proxy: `host`, `host:port`, `*.domain[:port]`.
    pub fn allow_host(mut self, pattern: impl Into<String>) -> Self {
        self.hosts.push(pattern.into());
        self
    }
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
    /// The environment to start from (default: this process's).
    pub fn env(mut self, env: Vec<(OsString, OsString)>) -> Self {
        self.env = env;
        self
    }
    /// Lets a variable through although its name looks like a secret.
    pub fn pass_env(mut self, name: impl Into<String>) -> Self {
        self.pass_env.push(name.into());
        self
    }
    /// Whether to limit processes and memory with a cgroup where this user can make one
    /// (default); without, per-process rlimits (RLIMIT_NPROC, RLIMIT_AS) stand in.
    pub fn cgroup(mut self, on: bool) -> Self {
        self.cgroup = on;
        self
    }
    /// Where the command starts (default: the worktree).
    pub fn cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    pub fn build(self) -> Result<Profile, SandboxError> {
        let worktree = canonical(&self.worktree, "the worktree")?;
        if !worktree.is_dir() {
            return Err(SandboxError::Profile(format!(
                "the worktree {} is not a directory",
                worktree.display()
            )));
        }
        if worktree == Path::new("/") {
            return Err(SandboxError::Profile(
                "the worktree cannot be `/`: the sandbox would protect nothing".into(),
            ));
        }
        if let Some(home) = &self.home
            && home.starts_with(&worktree)
        {
            return Err(SandboxError::Profile(format!(
                "the worktree {} holds the home directory {}: its secrets would be writable",
                worktree.display(),
                home.display()
            )));
        }
        let count = self.rw.len() + self.ro.len() + self.deny.len() + self.deny_in_worktree.len();
        if count > MAX_PATHS {
            return Err(SandboxError::Profile(format!(
                "{count} paths in the profile; at most {MAX_PATHS}"
            )));
        }
        let mut writable = Vec::new();
        for p in &self.rw {
            let p = canonical(&absolute(&worktree, p), "a writable path (--rw)")?;
            if !p.starts_with(&worktree) {
                return Err(SandboxError::Profile(format!(
                    "the writable path {} is outside the worktree {}: only the worktree is writable",
                    p.display(),
                    worktree.display()
                )));
            }
            writable.push(p);
        }
        let mut read_only = Vec::new();
        for p in &self.ro {
            read_only.push(canonical(&absolute(&worktree, p), "a read-only path")?);
        }
        let mut denied = Vec::new();
        for p in &self.deny {
            denied.push(canonical(&absolute(&worktree, p), "a denied path")?);
        }
        for p in &self.deny_in_worktree {
            let p = absolute(&worktree, p);
            if let Ok(p) = p.canonicalize() {
                denied.push(p);
            }
        }
        // Toolchains installed under a hidden place ($HOME/.cargo/bin on PATH) stay usable:
        // the first directory below $HOME of each such PATH entry is mounted back read-only.
        let home = self.home.as_ref().and_then(|h| h.canonicalize().ok());
        let path_var = self
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone());
        if let Some(path_var) = &path_var {
            for dir in std::env::split_paths(path_var) {
                let Ok(dir) = dir.canonicalize() else {
                    continue;
                };
                if let Some(home) = &home
                    && let Ok(rest) = dir.strip_prefix(home)
                    && let Some(first) = rest.components().next()
                {
                    let top = home.join(first);
                    if !read_only.contains(&top) && !top.starts_with(&worktree) {
                        read_only.push(top);
                    }
                }
            }
        }
        if let Some(home) = &home {
            for rel in DENIED_IN_HOME {
                let p = home.join(rel);
                if p.symlink_metadata().is_ok() && !denied.contains(&p) {
                    denied.push(p);
                }
            }
            // Git's identity and settings; read-only.
            for rel in [".gitconfig", ".config/git"] {
                let p = home.join(rel);
                if p.exists() && !read_only.contains(&p) {
                    read_only.push(p);
                }
            }
        }
        for d in &denied {
            if worktree.starts_with(d) {
                return Err(SandboxError::Profile(format!(
                    "the denied path {} holds the worktree {}",
                    d.display(),
                    worktree.display()
                )));
            }
        }
        let mut protected = Vec::new();
        let mut placeholders = Vec::new();
        for rel in PROTECTED {
            let p = worktree.join(rel);
            if writable
                .iter()
                .any(|w| p.starts_with(w) || w.starts_with(&p))
            {
                continue;
            }
            match p.symlink_metadata() {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(SandboxError::Profile(format!(
                        "the protected path {} is a symbolic link; horde will not guess what it protects",
                        p.display()
                    )));
                }
                Ok(_) => protected.push(p),
                // A repository without hooks (made without git's templates) gets an empty
                // `.git/hooks` held read-only, or the command could create one; `.git/config`
                // without `.git` is no repository's; a directory that does not exist is held
                // by a placeholder.
                Err(_) if rel == ".git/hooks" && worktree.join(".git").is_dir() => {
                    placeholders.push(p)
                }
                Err(_) if rel.contains('/') => {}
                Err(_) => placeholders.push(p),
            }
        }
        // Git reads `.git/commondir` to find the repository's config and hooks in another
        // directory: a command that wrote one would point git on the host at a config and
        // hooks it wrote in the worktree. It is held read-only; when missing, as `.` (the
        // repository itself, what git assumes without one) for the time of the command.
        let mut file_placeholders = Vec::new();
        let commondir = worktree.join(".git/commondir");
        if worktree.join(".git").is_dir()
            && !writable
                .iter()
                .any(|w| commondir.starts_with(w) || w.starts_with(&commondir))
        {
            match commondir.symlink_metadata() {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(SandboxError::Profile(format!(
                        "{} is a symbolic link; horde will not guess what it points git at",
                        commondir.display()
                    )));
                }
                Ok(_) => protected.push(commondir),
                Err(_) => file_placeholders.push((commondir, ".\n".to_owned())),
            }
        }
        if self.hosts.len() > MAX_HOSTS {
            return Err(SandboxError::Profile(format!(
                "{} hosts in the network allow-list; at most {MAX_HOSTS}",
                self.hosts.len()
            )));
        }
        let mut network = Vec::new();
        for h in &self.hosts {
            network.push(
                NetRule::parse(h)
                    .map_err(|e| SandboxError::Profile(format!("network host {h:?}: {e}")))?,
            );
        }
        check_limits(&self.limits)?;
        let (env, stripped_env) = crate::env::filter(self.env, &self.pass_env);
        let cwd = match &self.cwd {
            Some(c) => {
                let c = canonical(&absolute(&worktree, c), "the working directory")?;
                if !c.starts_with(&worktree) {
                    return Err(SandboxError::Profile(format!(
                        "the working directory {} is outside the worktree {}",
                        c.display(),
                        worktree.display()
                    )));
                }
                c
            }
            None => worktree.clone(),
        };
        let hidden = HIDDEN
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.symlink_metadata().is_ok_and(|m| m.is_dir()))
            .collect();
        Ok(Profile {
            worktree,
            writable,
            read_only,
            denied,
            protected,
            placeholders,
            file_placeholders,
            hidden,
            network,
            limits: self.limits,
            env,
            stripped_env,
            cwd,
            cgroup: self.cgroup,
        })
    }
}

fn check_limits(l: &Limits) -> Result<(), SandboxError> {
    let zero = |what: &str| {
        Err(SandboxError::Profile(format!(
            "the {what} limit is zero: nothing could run"
        )))
    };
    if l.cpu_time.is_zero() {
        return zero("CPU time");
    }
    if l.wall_time.is_zero() {
        return zero("wall time");
    }
    for (v, what) in [
        (l.memory, "memory"),
        (l.processes, "processes"),
        (l.file_size, "file size"),
        (l.open_files, "open files"),
        (l.output, "output"),
    ] {
        if v == 0 {
            return zero(what);
        }
    }
    if l.memory < 16 << 20 {
        return Err(SandboxError::Profile(format!(
            "a memory limit of {} bytes is below 16 MiB: not even a shell starts",
            l.memory
        )));
    }
    if l.open_files < 16 {
        return Err(SandboxError::Profile(format!(
            "an open-files limit of {} is below 16: not even a shell starts",
            l.open_files
        )));
    }
    Ok(())
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn canonical(p: &Path, what: &str) -> Result<PathBuf, SandboxError> {
    p.canonicalize()
        .map_err(|e| SandboxError::Profile(format!("{what} {}: {e}", p.display())))
}

/// Parses a size: `512`, `64K`, `16M`, `2G`, `1T` (powers of 1024; a trailing `B`/`iB` is
/// allowed).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        Some('T' | 't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 512, 64K, 16M, 2G)"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Whether a program name can be found: a path that exists and is executable, or a name on
/// the sandbox's `PATH`.
pub fn find_program(program: &OsStr, env: &[(OsString, OsString)], cwd: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let p = Path::new(program);
    if p.components().count() > 1 || program.as_encoded_bytes().contains(&b'/') {
        let full = absolute(cwd, p);
        return executable(&full).then_some(full);
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|c| executable(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("test input");
        std::fs::create_dir_all(d.path().join(".git/hooks")).expect("test input");
        std::fs::write(d.path().join(".git/config"), "").expect("test input");
        d
    }

    #[test]
    fn bad_profiles_are_refused_before_anything_runs() {
        let d = repo();
        let err = |b: ProfileBuilder| b.build().expect_err("a bad profile").to_string();
        let b = || ProfileBuilder::new(d.path()).home(None);
        assert!(err(b().writable("/usr")).contains("outside the worktree"));
        assert!(err(b().writable("no/such/dir")).contains("no/such/dir"));
        assert!(err(b().read_only("/no/such/toolchain")).contains("/no/such/toolchain"));
        assert!(err(b().allow_host("*")).contains("network host"));
        let zero = Limits {
            wall_time: Duration::ZERO,
            ..Limits::default()
        };
        assert!(err(b().limits(zero)).contains("wall time limit is zero"));
        let zero = Limits {
            processes: 0,
            ..Limits::default()
        };
        assert!(err(b().limits(zero)).contains("processes limit is zero"));
        assert!(err(ProfileBuilder::new("/")).contains("cannot be `/`"));
        assert!(err(b().deny(d.path())).contains("holds the worktree"));
    }

    #[test]
    fn protected_paths_and_placeholders() {
        let d = repo();
        let p = ProfileBuilder::new(d.path())
            .home(None)
            .build()
            .expect("test input");
        let root = d.path().canonicalize().expect("test input");
        assert!(p.protected.contains(&root.join(".git/hooks")));
        assert!(p.protected.contains(&root.join(".git/config")));
        assert!(p.placeholders.contains(&root.join(".claude")));
        assert!(
            p.file_placeholders
                .iter()
                .any(|(f, c)| f == &root.join(".git/commondir") && c == ".\n")
        );
        let p = ProfileBuilder::new(d.path())
            .home(None)
            .writable(".git/hooks")
            .build()
            .expect("test input");
        assert!(!p.protected.contains(&root.join(".git/hooks")));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512").expect("test input"), 512);
        assert_eq!(parse_size("64K").expect("test input"), 64 << 10);
        assert_eq!(parse_size("2G").expect("test input"), 2 << 30);
        assert_eq!(parse_size("16MiB").expect("test input"), 16 << 20);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
