//! A real S3-compatible server for tests: `s3s-fs` on a free loopback port, storing in a
//! temporary directory, with SigV4 authentication on. Feature `testing`.
//!
//! The binary is found from `HORDE_S3S_FS`, then `$HOME/.cache/horde/tools/bin/s3s-fs`, then
//! `PATH`. Without it [`S3sServer::start`] prints one line saying the S3 tests were skipped and
//! answers `None`; under CI (`CI` set) it panics instead, so a CI run never silently skips.
//! The server is killed when the [`S3sServer`] is dropped.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::S3Config;

/// The version the tests are written against: it builds on Rust 1.95 and verifies SigV4.
pub const S3S_FS_INSTALL: &str =
    "cargo install s3s-fs@0.14.1 --locked --features binary --root $HOME/.cache/horde/tools";
/// How long the server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Ports are picked by binding port 0 and releasing it; another process can take the port in
/// between, so a start is tried this many times.
const START_ATTEMPTS: usize = 5;

/// A running `s3s-fs`. Use [`S3sServer::location`] and [`S3sServer::s3_config`] to open a
/// [`crate::BlobStore`] on it.
pub struct S3sServer {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    /// Exists (empty) when `start` returns.
    pub bucket: String,
    /// The server's data directory: bucket `b` is the directory `root/b`, an object is the
    /// file `root/b/KEY`; in-progress multipart uploads are `.upload*` files in `root`.
    pub root: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl S3sServer {
    /// Starts a server, or answers `None` (after printing why) when `s3s-fs` is not installed.
    /// Panics when it is not installed under CI, or when it is installed but does not start.
    pub fn start() -> Option<Self> {
        let Some(bin) = find_binary() else {
            let why = format!(
                "s3s-fs not found (HORDE_S3S_FS, $HOME/.cache/horde/tools/bin, PATH); install it with `{S3S_FS_INSTALL}`"
            );
            if in_ci() {
                panic!("CI must run the S3 blob tests: {why}");
            }
            let _ = writeln!(std::io::stderr(), "horde-blob: S3 backend skipped: {why}");
            return None;
        };
        let dir = tempfile::tempdir().expect("a temporary directory for s3s-fs");
        let root = dir.path().join("root");
        let bucket = "horde-test".to_owned();
        std::fs::create_dir_all(root.join(&bucket)).expect("create the bucket directory");
        let access_key = "horde-test".to_owned();
        let secret_key = format!("secret-{}", uuid::Uuid::now_v7().simple());
        let log_path = dir.path().join("s3s-fs.log");

        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let log = std::fs::File::create(&log_path).expect("create the s3s-fs log");
            let mut child = Command::new(&bin)
                .arg("--host")
                .arg("127.0.0.1")
                .arg("--port")
                .arg(port.to_string())
                .arg("--access-key")
                .arg(&access_key)
                .arg("--secret-key")
                .arg(&secret_key)
                .arg(&root)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            match wait_listening(&mut child, port) {
                Ok(()) => {
                    return Some(Self {
                        endpoint: format!("http://127.0.0.1:{port}"),
                        access_key,
                        secret_key,
                        bucket,
                        root,
                        child,
                        _dir: dir,
                    });
                }
                // Exited: most likely the port was taken meanwhile; try another.
                Err(None) => continue,
                Err(Some(why)) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "{} did not start: {why}\n{}",
                        bin.display(),
                        read_log(&log_path)
                    );
                }
            }
        }
        panic!(
            "{} exited {START_ATTEMPTS} times on start\n{}",
            bin.display(),
            read_log(&log_path)
        );
    }

    /// `s3://BUCKET`, or `s3://BUCKET/prefix` with a key prefix.
    pub fn location(&self, prefix: Option<&str>) -> String {
        match prefix {
            Some(p) => format!("s3://{}/{p}", self.bucket),
            None => format!("s3://{}", self.bucket),
        }
    }

    /// Endpoint, explicit credentials, region `us-east-1`, path-style addressing.
    pub fn s3_config(&self) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some(self.access_key.clone()),
            secret_access_key: Some(self.secret_key.clone()),
            path_style: true,
        }
    }
}

impl Drop for S3sServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

fn find_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HORDE_S3S_FS") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "HORDE_S3S_FS={} is not a file; install s3s-fs with `{S3S_FS_INSTALL}`",
            p.display()
        );
        return Some(p);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = Path::new(&home).join(".cache/horde/tools/bin/s3s-fs");
        if p.is_file() {
            return Some(p);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("s3s-fs"))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// `Err(None)`: the process exited (retry on another port); `Err(Some(why))`: give up.
fn wait_listening(child: &mut Child, port: u16) -> Result<(), Option<String>> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| Some(e.to_string()))? {
            return if status.success() {
                Err(Some(format!("exited with {status}")))
            } else {
                Err(None)
            };
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Some(format!(
                "not listening on {addr} after {START_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_log(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(s) => format!("s3s-fs log:\n{s}"),
        Err(e) => format!("(no s3s-fs log: {e})"),
    }
}
