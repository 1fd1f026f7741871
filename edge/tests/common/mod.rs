//! Shared helpers: a temp repository and a private config dir per test, and the real binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub struct Repo {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub config: PathBuf,
}

impl Repo {
    /// An empty directory (not initialized).
    pub fn empty() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("repo");
        let config = tmp.path().join("config");
        std::fs::create_dir_all(&root).expect("mkdir");
        Self {
            root: root.canonicalize().expect("canon"),
            config,
            _tmp: tmp,
        }
    }

    /// A small tree, initialized.
    pub fn init() -> Self {
        let r = Self::empty();
        r.write("README.md", "# test\n");
        r.write("src/main.rs", "fn main() {}\n");
        r.write("notes.txt", "some notes\n");
        r.ok(&["init"]);
        r
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Where the blob with this hex hash is stored.
    pub fn blob(&self, hash: &str) -> PathBuf {
        self.root
            .join(".horde/blobs")
            .join(&hash[..2])
            .join(&hash[2..])
    }

    pub fn db(&self) -> PathBuf {
        self.root.join(".horde/horde.db")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_horde"));
        c.args(args)
            .current_dir(&self.root)
            .env("HORDE_CONFIG_DIR", &self.config)
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .env_remove("HORDE_AGENT")
            .env_remove("HORDE_HEAD_INTERVAL");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("horde runs")
    }

    /// Runs `horde hook ARGS` as an agent does: `payload` on stdin. `daemon`: it may use (and
    /// start) the repository's daemon; otherwise it records alone.
    pub fn hook(&self, args: &[&str], payload: &Value, daemon: bool) -> Output {
        use std::io::Write;
        let mut c = self.cmd(&[&["hook"], args].concat());
        if !daemon {
            c.env("HORDE_DAEMON", "off");
        }
        let mut child = c
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn horde hook");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(payload.to_string().as_bytes())
            .expect("write the payload");
        child.wait_with_output().expect("wait for horde hook")
    }

    /// Runs and insists on exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "horde {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).expect("valid JSON")
    }

    /// All events oldest first, as JSON.
    pub fn events(&self) -> Vec<Value> {
        self.json(&["log", "--reverse"])
            .as_array()
            .expect("array")
            .clone()
    }

    pub fn changes(&self) -> Vec<(String, String)> {
        self.events()
            .iter()
            .filter(|e| e["type"] == "state_change")
            .map(|e| {
                let p = &e["payload"];
                (
                    p["op"].as_str().expect("op").to_owned(),
                    p["path"].as_str().expect("path").to_owned(),
                )
            })
            .collect()
    }

    pub fn sql(&self, sql: &str) {
        let conn = rusqlite::Connection::open(self.db()).expect("open db");
        conn.execute_batch(sql).expect("sql");
    }

    /// The one blob value a query returns.
    pub fn sql_blob(&self, sql: &str) -> Vec<u8> {
        let conn = rusqlite::Connection::open(self.db()).expect("open db");
        conn.query_row(sql, [], |r| r.get(0)).expect("sql")
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Sends `sig` to a process (`target > 0`) or a process group (`target < -1`). Never to -1
/// or 0, which would reach every process or our own group.
#[allow(unsafe_code)]
pub fn signal(target: i32, sig: i32) {
    assert!(!(-1..=1).contains(&target), "refusing to signal {target}");
    // SAFETY: kill(2) takes integers only.
    unsafe {
        libc::kill(target, sig);
    }
}

pub fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

/// A pseudo-terminal pair for tests that need horde to run interactively: (master, slave).
#[allow(unsafe_code)]
pub fn openpty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty writes two descriptors into our ints.
    let rc = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both are fresh descriptors owned by nobody else.
    unsafe { (std::fs::File::from_raw_fd(m), std::fs::File::from_raw_fd(s)) }
}
