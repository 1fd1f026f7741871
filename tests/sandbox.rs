//! Escapes from `horde run --sandbox`: each case runs a hostile command through the real
//! `horde` binary in a fresh repository and checks two things: the effect did not happen on
//! the host (contained), and the recorded `ToolCall` says how it was confined and what the
//! sandbox stopped or refused, with the kernel's error in the recorded stderr where that is
//! the evidence (reported).
//!
//! The suite runs twice: as the current user, and, when that is root, as uid 65534 (with a
//! copy of `horde` in a world-readable directory). Without a working bubblewrap it fails,
//! unless `HORDE_SKIP_SANDBOX_TESTS` is set.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use horde_e2e::binary;
use serde_json::Value;

const NOBODY: u32 = 65534;
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Concurrent cases in one pass.
const WORKERS: usize = 3;

/// One run of the suite: as whom, with which binary, under which directory.
struct Pass {
    name: &'static str,
    root: PathBuf,
    bin: PathBuf,
    /// Switch to this uid/gid (through setpriv) to run horde.
    uid: Option<u32>,
}

/// A case's own fresh repository, home and horde config directory.
struct Case<'a> {
    pass: &'a Pass,
    repo: PathBuf,
    home: PathBuf,
    config: PathBuf,
    /// A directory of the host outside the repository.
    outside: PathBuf,
    /// A string that must never come out of the sandbox.
    marker: String,
}

/// What one `horde run --sandbox` did and recorded.
struct Ran {
    out: Output,
    elapsed: Duration,
    /// The ToolCall's payload.
    call: Value,
    /// The recorded stdout and stderr observations' summaries.
    stdout: String,
    stderr: String,
    /// The whole `horde log --json`.
    log: String,
    what: String,
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos()
}

fn chown_tree(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).expect("chown");
    let meta = std::fs::symlink_metadata(path).expect("stat");
    if meta.is_dir() {
        for e in std::fs::read_dir(path).expect("read_dir") {
            chown_tree(&e.expect("dir entry").path(), uid);
        }
    }
}

/// Processes of the host whose command line holds `needle` (zombies have none).
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(format!(
                "{pid}: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}

impl<'a> Case<'a> {
    fn new(pass: &'a Pass, name: &str) -> Case<'a> {
        let dir = pass.root.join(name);
        let (repo, home, config, outside) = (
            dir.join("repo"),
            dir.join("home"),
            dir.join("config"),
            dir.join("outside"),
        );
        let marker = format!(
            "escmark{}x{}",
            name.replace('-', ""),
            nanos() % 1_000_000_007
        );
        for d in [&repo, &home.join(".ssh"), &config, &outside] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(
            home.join(".ssh/id_ed25519"),
            format!(
                "-----BEGIN OPENSSH PRIVATE KEY-----\n{marker}\n-----END OPENSSH PRIVATE KEY-----\n"
            ),
        )
        .expect("write the fake ssh key");
        std::fs::write(repo.join("README.md"), "# escape\n").expect("write");
        let git = Command::new("git")
            .args(["init", "-q"])
            .current_dir(&repo)
            .output()
            .expect("run git init");
        assert!(git.status.success(), "git init: {}", text(&git));
        if let Some(uid) = pass.uid {
            chown_tree(&dir, uid);
        }
        let c = Case {
            pass,
            repo,
            home,
            config,
            outside,
            marker,
        };
        let init = c.horde(&["init"], &[], Stdio::piped());
        assert!(init.status.success(), "horde init: {}", text(&init));
        assert!(
            c.config.join("device.key").exists(),
            "horde init made no device key in {}",
            c.config.display()
        );
        c
    }

    fn horde(&self, args: &[&str], env: &[(&str, &str)], stdout: Stdio) -> Output {
        let mut cmd = match self.pass.uid {
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(&self.pass.bin);
                c
            }
            None => Command::new(&self.pass.bin),
        };
        cmd.args(args)
            .current_dir(&self.repo)
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", &self.home)
            .env("USER", "tester")
            .env("LANG", "C")
            .env("HORDE_CONFIG_DIR", &self.config)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped());
        cmd.output().expect("run horde")
    }

    /// `horde run --sandbox FLAGS -- sh -c SCRIPT`, then its recorded events.
    fn run(&self, flags: &[&str], script: &str) -> Ran {
        self.run_with(flags, script, &[], Stdio::piped())
    }

    fn run_with(&self, flags: &[&str], script: &str, env: &[(&str, &str)], stdout: Stdio) -> Ran {
        let mut args = vec!["run", "--sandbox", "--capture"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "sh", "-c", script]);
        let started = Instant::now();
        let out = self.horde(&args, env, stdout);
        let elapsed = started.elapsed();
        let what = format!(
            "[{}] horde run --sandbox {} -- sh -c {script:?}\nexit {:?} after {elapsed:?}; horde printed:\n{}",
            self.pass.name,
            flags.join(" "),
            out.status.code(),
            text(&out)
        );
        let log = self.horde(&["log", "--json", "--limit", "1000"], &[], Stdio::piped());
        assert!(log.status.success(), "horde log: {}\n{what}", text(&log));
        let events: Value = serde_json::from_slice(&log.stdout).expect("horde log --json is JSON");
        let events = events.as_array().expect("horde log --json is a list");
        let call = events
            .iter()
            .find(|e| {
                e["type"] == "tool_call"
                    && e["payload"]["args"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x == script))
            })
            .map(|e| e["payload"].clone())
            .unwrap_or_else(|| panic!("no ToolCall recorded for the command\n{what}"));
        let obs = |kind: &str| {
            events
                .iter()
                .filter(|e| e["type"] == "observation" && e["payload"]["kind"] == kind)
                .map(|e| {
                    e["payload"]["summary"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let ran = Ran {
            stdout: obs("stdout"),
            stderr: obs("stderr"),
            log: String::from_utf8_lossy(&log.stdout).into_owned(),
            elapsed,
            out,
            call,
            what,
        };
        ran.sandboxed();
        ran
    }
}

impl Ran {
    fn ctx(&self) -> String {
        format!(
            "{}\nrecorded: {}\nrecorded stderr: {}",
            self.what,
            serde_json::to_string(&self.call).expect("json"),
            self.stderr
        )
    }

    fn sandboxed(&self) {
        let m = self.call["sandbox"]["mechanism"]
            .as_str()
            .unwrap_or_default();
        assert!(
            m.starts_with("bubblewrap"),
            "the ToolCall does not say bubblewrap confined it: {m:?}\n{}",
            self.ctx()
        );
    }

    fn exit_code(&self) -> i64 {
        self.call["exit_code"].as_i64().expect("exit_code")
    }

    fn failed(&self) -> &Self {
        assert_ne!(
            self.exit_code(),
            0,
            "the ToolCall records success\n{}",
            self.ctx()
        );
        self
    }

    /// The recorded stderr holds one of `errors`.
    fn says(&self, errors: &[&str]) -> &Self {
        assert!(
            errors.iter().any(|e| self.stderr.contains(e)),
            "the recorded stderr says none of {errors:?}\n{}",
            self.ctx()
        );
        self
    }

    fn limits(&self) -> Vec<String> {
        self.call["sandbox"]["limits_hit"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn limit(&self, name: &str) -> &Self {
        assert!(
            self.limits().iter().any(|l| l == name),
            "limits_hit lacks {name:?}\n{}",
            self.ctx()
        );
        self
    }

    /// `marker` reached neither horde's output nor the record.
    fn hides(&self, marker: &str) -> &Self {
        assert!(
            !text(&self.out).contains(marker) && !self.log.contains(marker),
            "{marker:?} came out of the sandbox\n{}",
            self.ctx()
        );
        self
    }

    fn connections(&self) -> Vec<Value> {
        self.call["sandbox"]["connections"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// A loopback TCP listener of the host that counts the connections it got.
struct Tcp {
    listener: TcpListener,
    port: u16,
}

impl Tcp {
    fn new() -> Tcp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local addr").port();
        Tcp { listener, port }
    }

    /// Connections that reached it (those the kernel completed are waiting to be accepted).
    fn accepted(&self) -> usize {
        let mut n = 0;
        while self.listener.accept().is_ok() {
            n += 1;
        }
        n
    }
}

/// A tiny HTTP server on a loopback port of the host, answering every request.
struct Http {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const HTTP_BODY: &str = "hello from the allowed host\n";

impl Http {
    fn start() -> Http {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local addr").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                h.fetch_add(1, Ordering::Relaxed);
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{HTTP_BODY}",
                    HTTP_BODY.len()
                );
                let _ = conn.shutdown(Shutdown::Both);
            }
        });
        Http {
            port,
            hits,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A host process with `marker` in its command line and environment, killed on drop.
struct HostProcess(Child);

impl HostProcess {
    fn start(marker: &str) -> HostProcess {
        let child = Command::new("sh")
            .args(["-c", "sleep 300; :", marker])
            .env("ESCAPE_HOST_PROBE", marker)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a host process");
        HostProcess(child)
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const NOT_WRITABLE: &[&str] = &[
    "Read-only file system",
    "Directory nonexistent",
    "Permission denied",
    "No such file",
    "Operation not permitted",
];

// ---------------------------------------------------------------------------------------
// Filesystem

fn write_outside_the_worktree(p: &Pass) {
    let c = Case::new(p, "write-outside");
    let target = c.outside.join("escaped");
    let t = target.display();
    // The test's directory is hidden (/tmp is an empty filesystem inside).
    c.run(&[], &format!("echo pwned > {t}"))
        .failed()
        .says(NOT_WRITABLE);
    // Even mounted back read-only.
    let ro = c.outside.display().to_string();
    c.run(&["--ro", &ro], &format!("echo pwned > {t}"))
        .failed()
        .says(&["Read-only file system", "Permission denied"]);
    // A relative path up from the worktree.
    c.run(&[], "echo pwned > ../outside/escaped")
        .failed()
        .says(NOT_WRITABLE);
    assert!(!target.exists(), "{t} was written from the sandbox");
    let usr = format!("/usr/local/horde-escape-{}", c.marker);
    c.run(&[], &format!("echo pwned > {usr}"))
        .failed()
        .says(&["Read-only file system", "Permission denied"]);
    assert!(
        !Path::new(&usr).exists(),
        "{usr} was written from the sandbox"
    );
    let etc = format!("/etc/horde-escape-{}", c.marker);
    c.run(&[], &format!("mkdir {etc}"))
        .failed()
        .says(&["Read-only file system", "Permission denied"]);
    assert!(!Path::new(&etc).exists(), "{etc} was made from the sandbox");
}

fn write_git_hooks_and_horde_db(p: &Pass) {
    let c = Case::new(p, "protected");
    let hook = c.repo.join(".git/hooks/pre-commit");
    c.run(
        &[],
        "printf '#!/bin/sh\\necho pwned\\n' > .git/hooks/pre-commit",
    )
    .failed()
    .says(&["Read-only file system", "Permission denied"]);
    assert!(!hook.exists(), ".git/hooks/pre-commit was written");
    let config_before = std::fs::read(c.repo.join(".git/config")).expect("read .git/config");
    c.run(
        &[],
        "printf '[core]\\n\\tfsmonitor = /bin/evil\\n' >> .git/config",
    )
    .failed()
    .says(&["Read-only file system", "Permission denied"]);
    let db = c.repo.join(".horde/horde.db");
    assert!(db.exists(), "horde init made no .horde/horde.db");
    // The script (which horde records in horde.db) holds the marker in two pieces.
    let run = c.run(
        &[],
        &format!("echo hordedb${{NOPE:-}}{} >> .horde/horde.db", c.marker),
    );
    run.failed()
        .says(&["Read-only file system", "Permission denied"]);
    let db_bytes = std::fs::read(&db).expect("read horde.db");
    assert!(
        !String::from_utf8_lossy(&db_bytes).contains(&format!("hordedb{}", c.marker)),
        ".horde/horde.db was written from the sandbox"
    );
    c.run(&[], "rm -f .horde/horde.db").failed().says(&[
        "Read-only file system",
        "Permission denied",
        "busy",
    ]);
    assert!(db.exists(), ".horde/horde.db was removed from the sandbox");
    assert_eq!(
        std::fs::read(c.repo.join(".git/config")).expect("read .git/config"),
        config_before,
        ".git/config changed"
    );
}

fn redirect_git_to_the_worktree(p: &Pass) {
    let c = Case::new(p, "git-indirection");
    let pwned = c.outside.join("pwned");
    let pw = pwned.display().to_string();
    // `.git/commondir` points git at another directory's config and hooks: one the command
    // wrote, whose fsmonitor would run on the host's next `git status`.
    let run = c.run(
        &[],
        &format!(
            "mkdir -p evil/hooks && cp -r .git/objects .git/refs .git/HEAD evil/ && \
             printf '[core]\\n\\trepositoryformatversion = 0\\n\\tfsmonitor = \"touch {pw}; false\"\\n' > evil/config && \
             echo ../evil > .git/commondir"
        ),
    );
    run.failed()
        .says(&["Read-only file system", "Permission denied", "busy"]);
    assert!(
        !c.repo.join(".git/commondir").exists(),
        ".git/commondir was written or left behind"
    );
    let git = Command::new("git")
        .args(["-c", "safe.directory=*", "status", "--short"])
        .current_dir(&c.repo)
        .output()
        .expect("run git status");
    assert!(
        git.status.success(),
        "git status on the host: {}",
        text(&git)
    );
    assert!(
        !pwned.exists(),
        "git on the host ran the command's fsmonitor"
    );
    // A repository without `.git/hooks` (made without git's templates): it cannot be made.
    std::fs::remove_dir_all(c.repo.join(".git/hooks")).expect("remove .git/hooks");
    c.run(
        &[],
        "mkdir -p .git/hooks && printf '#!/bin/sh\\necho pwned\\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit",
    )
    .failed()
    .says(&["Read-only file system", "Permission denied", "File exists"]);
    assert!(
        !c.repo.join(".git/hooks/pre-commit").exists(),
        "a pre-commit hook was written into a repository that had no hooks"
    );
}

fn move_git_away(p: &Pass) {
    let c = Case::new(p, "move-git");
    c.run(
        &[],
        "mv .git .gitx && mkdir -p .git/hooks && echo pwned > .git/hooks/pre-commit",
    )
    .failed()
    .says(&[
        "busy",
        "Read-only file system",
        "Permission denied",
        "Operation not permitted",
    ]);
    assert!(
        c.repo.join(".git/HEAD").is_file(),
        ".git is no longer intact"
    );
    assert!(!c.repo.join(".gitx").exists(), ".git was renamed");
    assert!(
        !c.repo.join(".git/hooks/pre-commit").exists(),
        "a pre-commit hook was written"
    );
    // Moving the hooks directory or the ledger away does not work either.
    c.run(
        &[],
        "mv .git/hooks .git/hooks.old && mkdir .git/hooks && echo pwned > .git/hooks/pre-commit",
    )
    .failed()
    .says(&["busy", "Read-only file system", "Permission denied"]);
    assert!(
        c.repo.join(".git/hooks").is_dir() && !c.repo.join(".git/hooks.old").exists(),
        ".git/hooks was moved"
    );
    assert!(
        !c.repo.join(".git/hooks/pre-commit").exists(),
        "a pre-commit hook was written"
    );
    c.run(&[], "mv .horde .horde.old && mkdir .horde")
        .failed()
        .says(&["busy", "Read-only file system", "Permission denied"]);
    assert!(
        c.repo.join(".horde/horde.db").is_file() && !c.repo.join(".horde.old").exists(),
        ".horde was moved"
    );
}

fn protected_path_replaced_by_a_symlink(p: &Pass) {
    let c = Case::new(p, "protected-symlink");
    let o = c.outside.display().to_string();
    // `.git/hooks` replaced by a link to a directory outside, then a hook written through it.
    c.run(
        &[],
        &format!("rm -rf .git/hooks; ln -s {o} .git/hooks && echo pwned > .git/hooks/pre-commit"),
    )
    .failed()
    .says(&[
        "busy",
        "Read-only file system",
        "Permission denied",
        "File exists",
    ]);
    assert!(
        std::fs::symlink_metadata(c.repo.join(".git/hooks"))
            .expect("stat .git/hooks")
            .is_dir(),
        ".git/hooks is no longer a directory"
    );
    // `.git/config` replaced by a link.
    let before = std::fs::read(c.repo.join(".git/config")).expect("read .git/config");
    c.run(
        &[],
        &format!("rm -f .git/config; ln -sf {o}/config .git/config && echo '[core] pwned = 1' >> .git/config"),
    )
    .failed()
    .says(&["busy", "Read-only file system", "Permission denied"]);
    assert_eq!(
        std::fs::read(c.repo.join(".git/config")).expect("read .git/config"),
        before,
        ".git/config changed"
    );
    // `.vscode` (missing: a placeholder holds its place) replaced by a link outside.
    c.run(
        &[],
        &format!("rmdir .vscode; ln -s {o} .vscode && echo pwned > .vscode/tasks.json"),
    )
    .failed()
    .says(&[
        "busy",
        "Read-only file system",
        "Permission denied",
        "File exists",
    ]);
    assert!(
        std::fs::read_dir(&c.outside)
            .expect("read outside")
            .next()
            .is_none(),
        "a file was written outside through a replaced protected path"
    );
    assert!(
        std::fs::symlink_metadata(c.repo.join(".vscode")).is_err(),
        ".vscode was left behind or replaced"
    );
}

fn symlink_in_the_worktree_pointing_outside(p: &Pass) {
    let c = Case::new(p, "worktree-symlink");
    let o = c.outside.display().to_string();
    // A link the command makes.
    c.run(&[], &format!("ln -s {o} out && echo pwned > out/escaped"))
        .failed()
        .says(NOT_WRITABLE);
    // A link that was already there (made on the host, as a checkout can hold one).
    std::os::unix::fs::symlink(&c.outside, c.repo.join("premade")).expect("symlink");
    if let Some(uid) = p.uid {
        std::os::unix::fs::lchown(c.repo.join("premade"), Some(uid), Some(uid)).expect("chown");
    }
    c.run(&[], "echo pwned > premade/escaped")
        .failed()
        .says(NOT_WRITABLE);
    c.run(&["--ro", &o], "echo pwned > premade/escaped")
        .failed()
        .says(&["Read-only file system", "Permission denied"]);
    // A link to a system directory.
    c.run(
        &[],
        &format!(
            "ln -s /usr/local lib && echo pwned > lib/horde-escape-{}",
            c.marker
        ),
    )
    .failed()
    .says(&["Read-only file system", "Permission denied"]);
    assert!(
        std::fs::read_dir(&c.outside)
            .expect("read outside")
            .next()
            .is_none(),
        "a file was written outside through a symlink"
    );
    let usr = format!("/usr/local/horde-escape-{}", c.marker);
    assert!(!Path::new(&usr).exists(), "{usr} was written");
}

// ---------------------------------------------------------------------------------------
// Secrets

fn read_ssh_key(p: &Pass) {
    let c = Case::new(p, "ssh-key");
    let home = c.home.display().to_string();
    for flags in [vec![], vec!["--ro", home.as_str()]] {
        c.run(
            &flags,
            "cat ~/.ssh/id_ed25519; cat \"$HOME/.ssh/id_ed25519\"",
        )
        .failed()
        .says(&["No such file", "Permission denied"])
        .hides(&c.marker);
    }
}

fn read_device_key(p: &Pass) {
    let c = Case::new(p, "device-key");
    let key = std::fs::read(c.config.join("device.key")).expect("read the device key");
    let hexkey: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let cfg = c.config.display().to_string();
    for flags in [vec![], vec!["--ro", cfg.as_str()]] {
        let run = c.run(
            &flags,
            &format!("cat {cfg}/device.key && od -An -tx1 {cfg}/device.key | tr -d ' \\n'"),
        );
        run.failed().says(&["No such file", "Permission denied"]);
        let out = [
            run.out.stdout.as_slice(),
            run.out.stderr.as_slice(),
            run.log.as_bytes(),
        ]
        .concat();
        assert!(
            !out.windows(key.len()).any(|w| w == key.as_slice())
                && !String::from_utf8_lossy(&out).contains(&hexkey),
            "the device key came out of the sandbox\n{}",
            run.ctx()
        );
    }
}

fn read_proc_environ(p: &Pass) {
    let c = Case::new(p, "proc-environ");
    let secret = format!("{}_env", c.marker);
    let run = c.run_with(
        &[],
        "cat /proc/1/environ; for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f; done; exit 3",
        &[("ESCAPE_PROBE_TOKEN", &secret)],
        Stdio::piped(),
    );
    run.failed().hides(&secret);
    assert!(
        run.call["sandbox"]["stripped_env"]
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n == "ESCAPE_PROBE_TOKEN")),
        "stripped_env lacks ESCAPE_PROBE_TOKEN\n{}",
        run.ctx()
    );
}

fn read_host_process_memory(p: &Pass) {
    let c = Case::new(p, "host-process");
    let secret = format!("{}_proc", c.marker);
    let host = HostProcess::start(&secret);
    let pid = host.0.id();
    let run = c.run(
        &[],
        &format!(
            "cat /proc/{pid}/environ; cat /proc/{pid}/cmdline; head -c 4096 /proc/{pid}/mem | od -c | head; \
             for f in /proc/[0-9]*/cmdline /proc/[0-9]*/environ; do tr '\\0' ' ' < $f; echo; done; \
             kill -9 {pid}; test -e /proc/{pid}"
        ),
    );
    run.failed().says(&["No such file"]).hides(&secret);
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the host process {pid} was killed from the sandbox"
    );
    drop(host);
}

// ---------------------------------------------------------------------------------------
// Network

fn connect_to_a_host_port(p: &Pass) {
    let c = Case::new(p, "loopback");
    let l = Tcp::new();
    let port = l.port;
    c.run(
        &[],
        &format!("curl -sS --max-time 5 http://127.0.0.1:{port}/"),
    )
    .failed()
    .says(&[
        "Couldn't connect",
        "Failed to connect",
        "refused",
        "unreachable",
        "Permission denied",
        "Operation not permitted",
        "not supported",
    ]);
    c.run(
        &[],
        &format!("bash -c 'echo pwned > /dev/tcp/127.0.0.1/{port}'"),
    )
    .failed()
    .says(&[
        "refused",
        "unreachable",
        "Permission denied",
        "Operation not permitted",
        "not supported",
    ]);
    c.run(
        &[],
        &format!(
            "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), timeout=5)'"
        ),
    )
    .failed()
    .says(&["refused", "unreachable", "Permission denied", "Operation not permitted", "not supported"]);
    // Even with some host allowed (the proxy running), the port itself stays unreachable.
    let other = Http::start();
    c.run(
        &["--allow-net", &format!("127.0.0.1:{}", other.port)],
        &format!("bash -c 'echo pwned > /dev/tcp/127.0.0.1/{port}'"),
    )
    .failed()
    .says(&[
        "refused",
        "unreachable",
        "Permission denied",
        "Operation not permitted",
        "not supported",
    ]);
    assert_eq!(l.accepted(), 0, "the host's listener got a connection");
}

fn dns(p: &Pass) {
    let c = Case::new(p, "dns");
    c.run(&[], "getent hosts example.com").failed();
    c.run(
        &[],
        "python3 -c 'import socket; print(socket.getaddrinfo(\"example.com\", 443))'",
    )
    .failed()
    .says(&[
        "gaierror",
        "Temporary failure",
        "resolution",
        "not known",
        "not supported",
    ]);
    // A UDP packet to a resolver straight away.
    c.run(
        &[],
        "python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b\"x\", (\"8.8.8.8\", 53))'",
    )
    .failed()
    .says(&["unreachable", "Permission denied", "Operation not permitted", "not supported"]);
}

fn proxy_allows_only_listed_hosts(p: &Pass) {
    let c = Case::new(p, "proxy");
    let allowed = Http::start();
    let unlisted = Tcp::new();
    let (ap, up) = (allowed.port, unlisted.port);
    let allow = format!("127.0.0.1:{ap}");
    let proxy = "--proxy http://127.0.0.1:3128 --noproxy ''";
    // The listed host through the proxy works and is recorded.
    let run = c.run(
        &["--allow-net", &allow],
        &format!("curl -sS --max-time 10 {proxy} http://127.0.0.1:{ap}/"),
    );
    assert_eq!(run.exit_code(), 0, "the allowed host failed\n{}", run.ctx());
    assert!(
        run.stdout.contains(HTTP_BODY.trim()),
        "the allowed host's answer is not in the recorded stdout\n{}",
        run.ctx()
    );
    let conns = run.connections();
    assert!(
        conns.iter().any(|x| x["port"] == ap
            && x["allowed"] == true
            && x["bytes_received"].as_u64().unwrap_or(0) > 0
            && x["bytes_sent"].as_u64().unwrap_or(0) > 0),
        "no allowed connection with bytes recorded\n{}",
        run.ctx()
    );
    assert!(
        allowed.hits.load(Ordering::Relaxed) >= 1,
        "the allowed host got nothing"
    );
    // An unlisted port of the same host, and an unlisted name, through the proxy: refused.
    let run = c.run(
        &["--allow-net", &allow],
        &format!("curl -sSf --max-time 10 {proxy} http://127.0.0.1:{up}/"),
    );
    run.failed();
    assert!(
        run.connections()
            .iter()
            .any(|x| x["port"] == up && x["allowed"] == false),
        "the refused connection to port {up} is not recorded\n{}",
        run.ctx()
    );
    let run = c.run(
        &["--allow-net", &allow],
        "curl -sSf --max-time 10 https://example.com/",
    );
    run.failed();
    assert!(
        run.connections()
            .iter()
            .any(|x| x["host"] == "example.com" && x["allowed"] == false),
        "the refused connection to example.com is not recorded\n{}",
        run.ctx()
    );
    // SOCKS5 to an unlisted port.
    let run = c.run(
        &["--allow-net", &allow],
        &format!("curl -sSf --max-time 10 --proxy socks5h://127.0.0.1:3128 --noproxy '' http://127.0.0.1:{up}/"),
    );
    run.failed();
    assert!(
        run.connections()
            .iter()
            .any(|x| x["port"] == up && x["allowed"] == false),
        "the refused SOCKS connection to port {up} is not recorded\n{}",
        run.ctx()
    );
    // The listed host without the proxy: no route.
    let hits = allowed.hits.load(Ordering::Relaxed);
    c.run(
        &["--allow-net", &allow],
        &format!("curl -sS --max-time 5 --noproxy '*' http://127.0.0.1:{ap}/"),
    )
    .failed()
    .says(&[
        "Couldn't connect",
        "Failed to connect",
        "refused",
        "unreachable",
        "Permission denied",
        "Operation not permitted",
        "not supported",
    ]);
    assert_eq!(
        allowed.hits.load(Ordering::Relaxed),
        hits,
        "the allowed host was reached without the proxy"
    );
    assert_eq!(unlisted.accepted(), 0, "the unlisted port got a connection");
}

fn unix_socket_outside(p: &Pass) {
    let c = Case::new(p, "unix-socket");
    let sock = c.outside.join("agent.sock");
    let listener = UnixListener::bind(&sock).expect("bind a unix socket");
    listener.set_nonblocking(true).expect("nonblocking");
    if let Some(uid) = p.uid {
        std::os::unix::fs::lchown(&sock, Some(uid), Some(uid)).expect("chown");
    }
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let s = sock.display().to_string();
    let script = format!(
        "python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.connect(\"{s}\"); s.sendall(b\"pwned\")'"
    );
    c.run(&[], &script).failed().says(&[
        "No such file",
        "Permission denied",
        "refused",
        "Operation not permitted",
    ]);
    let mut got = 0;
    while listener.accept().is_ok() {
        got += 1;
    }
    assert_eq!(got, 0, "the host's unix socket got a connection");
}

// ---------------------------------------------------------------------------------------
// Resources

fn fork_bomb(p: &Pass) {
    let c = Case::new(p, "fork-bomb");
    let tag = format!("{}_bomb", c.marker);
    let run = c.run(
        &["--processes", "64", "--wall-time", "8s"],
        &format!("sh -c 'bomb() {{ bomb | bomb & }}; bomb; sleep 20' {tag}"),
    );
    assert!(
        run.limits().iter().any(|l| l == "processes")
            || run.stderr.contains("Resource temporarily unavailable")
            || run.stderr.contains("Cannot fork")
            || run.stderr.contains("fork"),
        "neither the processes limit nor a failed fork is recorded\n{}",
        run.ctx()
    );
    run.failed();
    assert!(
        run.elapsed < Duration::from_secs(30),
        "the bomb ran {:?}",
        run.elapsed
    );
    let left = processes_with(&tag);
    assert!(
        left.is_empty(),
        "the bomb's processes outlived horde: {left:?}"
    );
    // A bounded burst: the 65th process fails.
    let run = c.run(
        &["--processes", "64", "--wall-time", "20s"],
        &format!(
            "i=0; while [ $i -lt 200 ]; do sh -c 'sleep 30; :' {tag} & i=$((i+1)); done; wait"
        ),
    );
    assert!(
        run.limits().iter().any(|l| l == "processes")
            || run.stderr.contains("Resource temporarily unavailable")
            || run.stderr.contains("fork"),
        "neither the processes limit nor a failed fork is recorded\n{}",
        run.ctx()
    );
    run.failed();
    let left = processes_with(&tag);
    assert!(left.is_empty(), "processes outlived horde: {left:?}");
    // The host still starts processes.
    let ok = Command::new("true").status().expect("run true on the host");
    assert!(ok.success(), "the host cannot start a process");
}

fn endless_output(p: &Pass) {
    let c = Case::new(p, "output");
    let run = c.run_with(&["--output", "1M"], "yes", &[], Stdio::null());
    run.failed().limit("output");
    assert!(
        run.elapsed < Duration::from_secs(30),
        "10 GB of output were not stopped: {:?}",
        run.elapsed
    );
}

fn huge_file(p: &Pass) {
    let c = Case::new(p, "file-size");
    let run = c.run(&["--file-size", "1M"], "head -c 20G /dev/zero > big");
    run.failed();
    assert!(
        run.limits().iter().any(|l| l == "file_size") || run.stderr.contains("File too large"),
        "neither file_size nor EFBIG is recorded\n{}",
        run.ctx()
    );
    let len = std::fs::metadata(c.repo.join("big"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(len <= 1 << 20, "big is {len} bytes");
    // Growing a file by seeking past the limit fails too.
    let run = c.run(
        &["--file-size", "1M"],
        "dd if=/dev/zero of=sparse bs=1 count=1 seek=2G",
    );
    run.failed();
    assert!(
        run.limits().iter().any(|l| l == "file_size") || run.stderr.contains("File too large"),
        "neither file_size nor EFBIG is recorded\n{}",
        run.ctx()
    );
    let len = std::fs::metadata(c.repo.join("sparse"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(len <= 1 << 20, "sparse is {len} bytes");
}

fn many_open_files(p: &Pass) {
    let c = Case::new(p, "open-files");
    c.run(
        &["--open-files", "64"],
        "python3 -c 'fs = [open(\"/dev/null\") for _ in range(10000)]'",
    )
    .failed()
    .says(&["Too many open files"]);
    // Raising the limit back fails.
    c.run(
        &["--open-files", "64"],
        "python3 -c 'import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (100000, 100000))'",
    )
    .failed()
    .says(&["not allowed", "Operation not permitted", "Invalid argument", "ValueError"]);
}

fn children_outliving_the_command(p: &Pass) {
    let c = Case::new(p, "orphans");
    let tag = format!("{}_orphan", c.marker);
    let run = c.run(
        &[],
        &format!(
            "setsid sh -c 'sleep 300; :' {tag}-setsid >/dev/null 2>&1 < /dev/null & \
             nohup sh -c 'sleep 300; :' {tag}-nohup >/dev/null 2>&1 < /dev/null & \
             ( sh -c 'sleep 300; :' {tag}-double >/dev/null 2>&1 < /dev/null & ) ; \
             python3 -c 'import os, time\nif os.fork() == 0:\n  os.setsid()\n  if os.fork() == 0:\n    os.execvp(\"sleep\", [\"sleep\", \"300\", \"{tag}-daemon\"])\n' ; \
             sleep 0.5; exit 0"
        ),
    );
    assert_eq!(run.exit_code(), 0, "the command failed\n{}", run.ctx());
    let left = processes_with(&tag);
    assert!(
        left.is_empty(),
        "processes outlived the sandboxed command on the host: {left:?}\n{}",
        run.ctx()
    );
}

fn past_the_wall_time(p: &Pass) {
    let c = Case::new(p, "wall-time");
    let run = c.run(&["--wall-time", "2s"], "sleep 60");
    run.failed().limit("wall_time");
    assert!(
        run.elapsed < Duration::from_secs(30),
        "sleep 60 with a 2 s wall time returned after {:?}",
        run.elapsed
    );
}

// ---------------------------------------------------------------------------------------
// Environment

fn secret_environment(p: &Pass) {
    let c = Case::new(p, "env");
    let api = format!("hk_{}", c.marker);
    let aws = format!("{}aws", c.marker);
    let run = c.run_with(
        &[],
        "env; cat /proc/self/environ | tr '\\0' '\\n'",
        &[("HORDE_API_KEY", &api), ("AWS_SECRET_ACCESS_KEY", &aws)],
        Stdio::piped(),
    );
    assert_eq!(run.exit_code(), 0, "env failed\n{}", run.ctx());
    assert!(
        run.stdout.contains("PATH="),
        "env printed nothing\n{}",
        run.ctx()
    );
    run.hides(&api).hides(&aws);
    let stripped = &run.call["sandbox"]["stripped_env"];
    for name in ["HORDE_API_KEY", "AWS_SECRET_ACCESS_KEY", "HORDE_CONFIG_DIR"] {
        assert!(
            stripped
                .as_array()
                .is_some_and(|a| a.iter().any(|n| n == name)),
            "stripped_env lacks {name}\n{}",
            run.ctx()
        );
    }
}

// ---------------------------------------------------------------------------------------

type CaseFn = fn(&Pass);

const CASES: &[(&str, CaseFn)] = &[
    ("fork bomb", fork_bomb),
    ("past the wall time", past_the_wall_time),
    ("write outside the worktree", write_outside_the_worktree),
    (
        "write .git/hooks, .git/config, .horde",
        write_git_hooks_and_horde_db,
    ),
    ("move .git away", move_git_away),
    ("redirect git to the worktree", redirect_git_to_the_worktree),
    (
        "protected path replaced by a symlink",
        protected_path_replaced_by_a_symlink,
    ),
    (
        "symlink in the worktree pointing outside",
        symlink_in_the_worktree_pointing_outside,
    ),
    ("read ~/.ssh/id_ed25519", read_ssh_key),
    ("read the device key", read_device_key),
    ("read /proc/1/environ", read_proc_environ),
    ("read a host process's memory", read_host_process_memory),
    ("connect to a host loopback port", connect_to_a_host_port),
    ("DNS", dns),
    (
        "proxy allows only listed hosts",
        proxy_allows_only_listed_hosts,
    ),
    ("unix socket outside", unix_socket_outside),
    ("10 GB of output", endless_output),
    ("a 20 GB file", huge_file),
    ("10,000 open files", many_open_files),
    (
        "children outliving the command",
        children_outliving_the_command,
    ),
    ("secret environment variables", secret_environment),
];

fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".into())
}

/// Runs every case (`HORDE_ESCAPE_CASES`: only those whose name holds one of its
/// comma-separated words); the names of those that failed, with why.
fn run_cases(pass: &Pass) -> Vec<String> {
    let only: Vec<String> = std::env::var("HORDE_ESCAPE_CASES")
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let cases: Vec<_> = CASES
        .iter()
        .filter(|(n, _)| only.is_empty() || only.iter().any(|o| n.contains(o.as_str())))
        .collect();
    let next = AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((name, case)) = cases.get(i) else {
                        break;
                    };
                    let t = Instant::now();
                    let r = std::panic::catch_unwind(AssertUnwindSafe(|| case(pass)));
                    let verdict = match &r {
                        Ok(()) => "ok".to_owned(),
                        Err(e) => {
                            let msg = panic_message(e.as_ref());
                            failures
                                .lock()
                                .expect("failures lock")
                                .push(format!("[{}] {name}: {msg}", pass.name));
                            "FAILED".to_owned()
                        }
                    };
                    eprintln!("[{}] {name}: {verdict} ({:.1?})", pass.name, t.elapsed());
                }
            });
        }
    });
    failures.into_inner().expect("failures lock")
}

/// Whether bubblewrap can confine here (`horde doctor`); panics with how to get it unless
/// `HORDE_SKIP_SANDBOX_TESTS` is set, in which case `false`.
fn sandbox_available() -> bool {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(binary("horde"))
        .arg("doctor")
        .current_dir(dir.path())
        .env("HORDE_CONFIG_DIR", dir.path().join("config"))
        .env("HOME", dir.path())
        .output()
        .expect("run horde doctor");
    if out.status.success() {
        return true;
    }
    let why = text(&out);
    if std::env::var_os("HORDE_SKIP_SANDBOX_TESTS").is_some() {
        eprintln!("sandbox escape tests skipped (HORDE_SKIP_SANDBOX_TESTS is set): {why}");
        return false;
    }
    panic!(
        "`horde doctor` finds no working sandbox; install bubblewrap (Debian/Ubuntu: `apt install bubblewrap`) \
         or set HORDE_SKIP_SANDBOX_TESTS=1 to skip these tests.\n{why}"
    );
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self")
        .expect("stat /proc/self")
        .uid()
        == 0
}

#[test]
fn escapes_as_the_current_user_are_contained_and_reported() {
    if !sandbox_available() {
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    let pass = Pass {
        name: if is_root() { "root" } else { "user" },
        root: root.path().to_owned(),
        bin: binary("horde"),
        uid: None,
    };
    let failures = run_cases(&pass);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn escapes_as_an_unprivileged_user_are_contained_and_reported() {
    if !sandbox_available() {
        return;
    }
    if !is_root() {
        eprintln!(
            "sandbox escape tests: the unprivileged pass was skipped: it needs root to switch to uid {NOBODY} (this pass already runs unprivileged)"
        );
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // The build's directory under /root is out of nobody's reach: a world-readable copy.
    let bin_dir = root.path().join("bin");
    std::fs::create_dir(&bin_dir).expect("mkdir");
    let bin = bin_dir.join("horde");
    std::fs::copy(binary("horde"), &bin).expect("copy horde");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let pass = Pass {
        name: "nobody",
        root: root.path().to_owned(),
        bin,
        uid: Some(NOBODY),
    };
    let failures = run_cases(&pass);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A host program's Unix socket that the sandbox can see (in the worktree, or under a path
/// mounted back with `--ro`) must not be reachable either. It is today: `connect(2)` on a
/// socket file needs no write access to its filesystem, bubblewrap's read-only mounts do not
/// stop it, seccomp cannot look at the path, and Landlock restricts it only from ABI 9
/// (`LANDLOCK_ACCESS_FS_RESOLVE_UNIX`). Run with `--ignored` to see it.
#[test]
#[ignore = "known escape: pathname Unix sockets visible in the sandbox are reachable (needs Landlock ABI 9)"]
fn unix_socket_in_the_worktree_is_unreachable() {
    if !sandbox_available() {
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    let pass = Pass {
        name: "socket",
        root: root.path().to_owned(),
        bin: binary("horde"),
        uid: None,
    };
    let c = Case::new(&pass, "worktree-socket");
    for (sock, flags) in [
        (c.repo.join("dev.sock"), vec![]),
        (
            c.outside.join("agent.sock"),
            vec!["--ro".to_owned(), c.outside.display().to_string()],
        ),
    ] {
        let listener = UnixListener::bind(&sock).expect("bind a unix socket");
        listener.set_nonblocking(true).expect("nonblocking");
        let s = sock.display().to_string();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let run = c.run(
            &flags,
            &format!(
                "python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.connect(\"{s}\"); s.sendall(b\"pwned\")'"
            ),
        );
        let mut got = 0;
        while listener.accept().is_ok() {
            got += 1;
        }
        assert_eq!(
            got,
            0,
            "the host's unix socket {s} got a connection\n{}",
            run.ctx()
        );
        run.failed();
    }
}
