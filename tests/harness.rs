//! End-to-end test harness: starts the real `horde-cloud` binary (built by `cargo test
//! --workspace` / `cargo xtask test`) on a free port with its own store and blob directory,
//! talks to it over HTTP, and plays devices that record signed, hash-chained events.

pub mod agents;
pub mod anthropic;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use horde_core::proto::{self, event_body::Payload, state_change::Op};
use horde_core::{ChainTip, DeviceKey, Draft, ProjectId, TimelineId, build_event};
use prost::Message;
use serde_json::{Value, json};

/// A workspace binary, next to this test's own directory (`target/<profile>/NAME`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo test --workspace` or `cargo xtask test` do)",
        path.display()
    );
    path
}

/// A running `horde-cloud serve`.
pub struct Cloud {
    child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl Cloud {
    /// With an embedded store and filesystem blobs in a fresh directory.
    pub fn start() -> Cloud {
        Self::start_with(&[], &[])
    }

    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Cloud {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, args, env)
    }

    /// In `dir` (reused across restarts: same store, same blobs).
    pub fn start_in(dir: tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Cloud {
        Self::start_in_on(dir, "127.0.0.1:0", args, env)
    }

    pub fn api(&self, key: Option<&str>) -> Api {
        Api::new(&self.url, key)
    }

    /// Signs up a fresh tenant; its admin's API.
    pub fn tenant(&self, name: &str) -> Admin {
        let name = format!("{name}-{}", horde_core::EventId::new());
        let r = self.api(None).post(
            "/v1/signup",
            &json!({ "tenant": name, "email": "admin@example.com" }),
        );
        assert_eq!(r.status, 201, "signup: {}", r.body);
        Admin {
            api: self.api(Some(r.json["api_key"].as_str().expect("api_key"))),
            tenant_id: r.json["tenant_id"].as_str().expect("tenant_id").to_owned(),
            user_id: r.json["user_id"].as_str().expect("user_id").to_owned(),
        }
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait (at most 20 s) for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        signal(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "horde-cloud did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then wait.
    pub fn kill(&mut self) {
        signal(self.child.id(), libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// Kills (SIGKILL) and hands back the directory (to start again on the same data).
    pub fn crash_into_dir(mut self) -> tempfile::TempDir {
        self.kill();
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }

    /// Stops and hands back the directory (to start again on the same data).
    pub fn into_dir(mut self) -> tempfile::TempDir {
        self.stop();
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

#[allow(unsafe_code)]
/// Sends `sig` to one process (a positive pid: never a group).
pub fn signal(pid: u32, sig: i32) {
    let pid = i32::try_from(pid).expect("pid fits");
    assert!(pid > 0, "never signal a process group");
    // SAFETY: kill(2) on our own child's pid; no memory is shared.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// An answer: status, body text and (when it is JSON) the parsed body.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    pub bytes: Vec<u8>,
    pub json: Value,
}

impl Resp {
    fn from(r: reqwest::blocking::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().expect("response body").to_vec();
        let body = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            bytes,
            json,
        }
    }

    /// The `error.code` of a JSON error.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

/// HTTP calls with an optional API key.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::blocking::Client,
    pub url: String,
    pub key: Option<String>,
}

impl Api {
    pub fn new(url: &str, key: Option<&str>) -> Api {
        Api {
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            url: url.to_owned(),
            key: key.map(str::to_owned),
        }
    }

    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::blocking::RequestBuilder {
        let mut b = self.http.request(method, format!("{}{path}", self.url));
        if let Some(k) = &self.key {
            b = b.bearer_auth(k);
        }
        b
    }

    pub fn send(&self, b: reqwest::blocking::RequestBuilder) -> Resp {
        Resp::from(b.send().expect("request"))
    }

    pub fn get(&self, path: &str) -> Resp {
        self.send(self.request(reqwest::Method::GET, path))
    }
    pub fn head(&self, path: &str) -> Resp {
        self.send(self.request(reqwest::Method::HEAD, path))
    }
    pub fn delete(&self, path: &str) -> Resp {
        self.send(self.request(reqwest::Method::DELETE, path))
    }
    pub fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(self.request(reqwest::Method::POST, path).json(body))
    }
    pub fn put(&self, path: &str, body: &Value) -> Resp {
        self.send(self.request(reqwest::Method::PUT, path).json(body))
    }
    pub fn put_bytes(&self, path: &str, body: Vec<u8>) -> Resp {
        self.send(self.request(reqwest::Method::PUT, path).body(body))
    }
    /// Every event of a project, following `next` cursors with pages of `limit`; and how
    /// many pages that took.
    pub fn all_events(&self, project: ProjectId, limit: usize) -> (Vec<Value>, usize) {
        let mut events = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut q = format!("/v1/projects/{project}/events?limit={limit}");
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={c}"));
            }
            let page = self.get(&q);
            assert_eq!(page.status, 200, "{}", page.body);
            pages += 1;
            events.extend(
                page.json["events"]
                    .as_array()
                    .expect("events")
                    .iter()
                    .cloned(),
            );
            match page.json["next"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return (events, pages),
            }
        }
    }

    /// Posts a protobuf body to a project's sync endpoint.
    pub fn sync(&self, project: ProjectId, body: Vec<u8>) -> Resp {
        self.send(
            self.request(
                reqwest::Method::POST,
                &format!("/v1/projects/{project}/sync"),
            )
            .header("content-type", "application/x-protobuf")
            .body(body),
        )
    }
}

/// A tenant's admin.
pub struct Admin {
    pub api: Api,
    pub tenant_id: String,
    pub user_id: String,
}

impl Admin {
    /// A new project; (id, main timeline).
    pub fn project(&self, name: &str) -> (ProjectId, TimelineId) {
        let r = self.api.post("/v1/projects", &json!({ "name": name }));
        assert_eq!(r.status, 201, "create project: {}", r.body);
        (
            r.json["id"].as_str().expect("id").parse().expect("uuid"),
            r.json["main_timeline"]
                .as_str()
                .expect("main_timeline")
                .parse()
                .expect("uuid"),
        )
    }

    /// A new user with `role` and an API key for them.
    pub fn user_key(&self, email: &str, role: &str) -> Api {
        let u = self
            .api
            .post("/v1/users", &json!({ "email": email, "role": role }));
        assert_eq!(u.status, 201, "add user: {}", u.body);
        let k = self.api.post(
            "/v1/keys",
            &json!({ "name": "test", "user_id": u.json["id"] }),
        );
        assert_eq!(k.status, 201, "create key: {}", k.body);
        Api::new(&self.api.url, k.json["api_key"].as_str())
    }
}

/// A device recording one project's events on its own signed hash chain.
pub struct SimDevice {
    pub key: DeviceKey,
    pub project: ProjectId,
    pub timeline: TimelineId,
    pub tip: ChainTip,
    pub agent: String,
}

impl SimDevice {
    pub fn new(project: ProjectId, timeline: TimelineId) -> SimDevice {
        SimDevice {
            key: DeviceKey::generate().expect("device key"),
            project,
            timeline,
            tip: ChainTip::default(),
            agent: "test-agent".into(),
        }
    }

    /// Registers this device's public key with the cloud.
    pub fn register(&self, api: &Api) -> Resp {
        api.post(
            "/v1/devices",
            &json!({
                "id": self.key.device_id().to_string(),
                "public_key": hex_encode(&self.key.public_key()),
                "name": "test-device",
            }),
        )
    }

    pub fn event(&mut self, payload: Payload) -> proto::SignedEvent {
        self.draft(Draft::new(self.timeline, self.agent.clone(), payload))
    }

    /// An event with the time it occurred chosen (µs since the epoch, the device's clock).
    pub fn event_at(&mut self, payload: Payload, occurred_at: i64) -> proto::SignedEvent {
        let mut draft = Draft::new(self.timeline, self.agent.clone(), payload);
        draft.occurred_at = occurred_at;
        self.draft(draft)
    }

    fn draft(&mut self, draft: Draft) -> proto::SignedEvent {
        let built =
            build_event(self.project, self.key.device_id(), &self.tip, draft).expect("build event");
        self.tip.advance(built.hash);
        proto::SignedEvent {
            body: built.body,
            hash: built.hash.to_vec(),
        }
    }

    /// `n` tool calls.
    pub fn tools(&mut self, n: usize) -> Vec<proto::SignedEvent> {
        (0..n).map(|i| self.event(tool_call(i))).collect()
    }

    /// A batch of `events` with a head signed over its last event (they must be this
    /// device's latest).
    pub fn batch(&self, events: Vec<proto::SignedEvent>) -> proto::SyncBatch {
        let head = self.tip.hash.map(|h| {
            self.key.sign_head(
                self.project,
                self.tip.seq,
                h,
                horde_core::time::now_micros(),
            )
        });
        proto::SyncBatch {
            project_id: self.project.to_vec(),
            device_id: self.key.device_id().to_vec(),
            events,
            head,
        }
    }

    pub fn encoded(&self, events: Vec<proto::SignedEvent>) -> Vec<u8> {
        self.batch(events).encode_to_vec()
    }
}

pub fn tool_call(i: usize) -> Payload {
    Payload::ToolCall(proto::ToolCall {
        tool: "exec".into(),
        args: vec!["cargo".into(), "test".into(), format!("step-{i}")],
        result_summary: "ok".into(),
        ..Default::default()
    })
}

pub fn write_file(path: &str, content: &[u8]) -> Payload {
    Payload::StateChange(proto::StateChange {
        path: path.into(),
        op: Op::Modify as i32,
        after_hash: horde_core::BlobHash::of(content).to_vec(),
        mode: 0o644,
        size: content.len() as u64,
        kind: proto::FileKind::File as i32,
        ..Default::default()
    })
}

pub fn delete_file(path: &str) -> Payload {
    Payload::StateChange(proto::StateChange {
        path: path.into(),
        op: Op::Delete as i32,
        ..Default::default()
    })
}

pub fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Decodes a `SyncAck`.
pub fn ack(r: &Resp) -> proto::SyncAck {
    assert_eq!(r.status, 200, "sync: {}", r.body);
    proto::SyncAck::decode(r.bytes.as_slice()).expect("SyncAck")
}

/// Uploads `content` as a blob of the key's tenant; its hash.
pub fn upload_blob(api: &Api, content: &[u8]) -> horde_core::BlobHash {
    let hash = horde_core::BlobHash::of(content);
    let r = api.put_bytes(&format!("/v1/blobs/{hash}"), content.to_vec());
    assert!(r.status == 201 || r.status == 200, "upload: {}", r.body);
    hash
}

/// `GET /v1/projects/{project}/pull{query}`; the answer and, on a 200, its `PullPage`.
pub fn pull(api: &Api, project: ProjectId, query: &str) -> (Resp, Option<proto::PullPage>) {
    let r = api.get(&format!("/v1/projects/{project}/pull{query}"));
    if r.status != 200 {
        return (r, None);
    }
    let ct = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert_eq!(ct, "application/x-protobuf");
    let page = proto::PullPage::decode(r.bytes.as_slice()).expect("PullPage");
    (r, Some(page))
}

/// The regular files and symlinks of a tar archive (path → content or link target) and its
/// directories (paths without the trailing '/', content empty).
pub fn tar_entries(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::io::Read;
    let mut out = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().expect("a tar archive") {
        let mut entry = entry.expect("a whole entry");
        let path = String::from_utf8(entry.path_bytes().into_owned()).expect("UTF-8 paths");
        let content = match entry.header().entry_type() {
            tar::EntryType::Directory => {
                out.insert(path.trim_end_matches('/').to_owned(), Vec::new());
                continue;
            }
            tar::EntryType::Symlink => entry.link_name_bytes().expect("target").into_owned(),
            _ => {
                let mut c = Vec::new();
                entry.read_to_end(&mut c).expect("content");
                c
            }
        };
        out.insert(path, content);
    }
    out
}

impl Cloud {
    /// Like [`Cloud::start_in`], listening on `listen` (`HOST:PORT`): the address of an earlier
    /// run comes back on the same port, so clients configured with its URL keep working.
    pub fn start_in_on(
        dir: tempfile::TempDir,
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Cloud {
        let store = format!("sqlite:{}", dir.path().join("cloud.db").display());
        let blobs = format!("fs:{}", dir.path().join("blobs").display());
        let log = dir
            .path()
            .join(format!("cloud-{}.log", horde_core::EventId::new()));
        let mut cmd = Command::new(binary("horde-cloud"));
        cmd.args(["serve", "--listen", listen]);
        if !args.contains(&"--store") {
            cmd.args(["--store", &store]);
        }
        if !args.contains(&"--blobs") {
            cmd.args(["--blobs", &blobs]);
        }
        cmd.args(args)
            .env("HORDE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start horde-cloud");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read horde-cloud's stdout");
        let Some(url) = line.trim().strip_prefix("horde-cloud listening on ") else {
            let _ = child.wait();
            panic!(
                "horde-cloud did not start on {listen}: {line:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Cloud {
            url: url.to_owned(),
            child,
            dir,
            log,
        }
    }

    /// `HOST:PORT` this cloud listens on.
    pub fn addr(&self) -> &str {
        self.url
            .strip_prefix("http://")
            .expect("the cloud listens on http://")
    }
}
