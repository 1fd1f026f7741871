//! horde's MCP tools served by the real `horde-cloud` at `/mcp/{project}`, spoken to as an
//! MCP client does over HTTP (JSON-RPC 2.0 in POST bodies, both lifecycles: `initialize`
//! with 2025-11-25, and the stateless 2026-07-28 protocol with `server/discover` and `_meta`),
//! over events a device synced through the sync API.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use horde_core::proto::{self, event_body::Payload, state_change::Op};
use horde_core::{BlobHash, ChainTip, DeviceKey, Draft, ProjectId, TimelineId, build_event};
use prost::Message;
use serde_json::{Value, json};

/// A running `horde-cloud` on a free port with its own store; killed when dropped.
struct Cloud {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Cloud {
    fn start() -> Cloud {
        let dir = tempfile::tempdir().expect("dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_horde-cloud"))
            .args(["serve", "--listen", "127.0.0.1:0", "--store"])
            .arg(format!("sqlite:{}", dir.path().join("cloud.db").display()))
            .arg("--blobs")
            .arg(format!("fs:{}", dir.path().join("blobs").display()))
            .env("HORDE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start horde-cloud");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read horde-cloud's stdout");
        let url = line
            .trim()
            .strip_prefix("horde-cloud listening on ")
            .unwrap_or_else(|| panic!("horde-cloud did not start: {line:?}"))
            .to_owned();
        Cloud {
            child,
            url,
            _dir: dir,
        }
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// A plain REST call; (status, JSON body or Null).
fn rest(
    url: &str,
    key: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut b = http().request(method, format!("{url}{path}"));
    if let Some(k) = key {
        b = b.bearer_auth(k);
    }
    if let Some(j) = body {
        b = b.json(&j);
    }
    let r = b.send().expect("request");
    let status = r.status().as_u16();
    let text = r.text().expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A tenant: its admin key.
fn signup(url: &str, name: &str) -> String {
    let (s, j) = rest(
        url,
        None,
        reqwest::Method::POST,
        "/v1/signup",
        Some(json!({"tenant": name, "email": format!("admin@{name}.example")})),
    );
    assert_eq!(s, 201, "{j}");
    j["api_key"].as_str().expect("key").to_owned()
}

fn new_project(url: &str, key: &str, name: &str) -> (ProjectId, TimelineId) {
    let (s, j) = rest(
        url,
        Some(key),
        reqwest::Method::POST,
        "/v1/projects",
        Some(json!({"name": name})),
    );
    assert_eq!(s, 201, "{j}");
    (
        j["id"].as_str().expect("id").parse().expect("uuid"),
        j["main_timeline"]
            .as_str()
            .expect("tl")
            .parse()
            .expect("uuid"),
    )
}

/// A device recording one project's events on its own signed chain, syncing them through
/// the sync API as `horde sync` does.
struct Device {
    key: DeviceKey,
    project: ProjectId,
    timeline: TimelineId,
    tip: ChainTip,
}

impl Device {
    fn new(url: &str, api_key: &str, project: ProjectId, timeline: TimelineId) -> Device {
        let key = DeviceKey::generate().expect("device key");
        let hex: String = key
            .public_key()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let (s, j) = rest(
            url,
            Some(api_key),
            reqwest::Method::POST,
            "/v1/devices",
            Some(json!({"id": key.device_id().to_string(), "public_key": hex, "name": "laptop"})),
        );
        assert_eq!(s, 201, "{j}");
        Device {
            key,
            project,
            timeline,
            tip: ChainTip::default(),
        }
    }

    fn event(&mut self, agent: &str, payload: Payload) -> proto::SignedEvent {
        let built = build_event(
            self.project,
            self.key.device_id(),
            &self.tip,
            Draft::new(self.timeline, agent, payload),
        )
        .expect("build");
        self.tip.advance(built.hash);
        proto::SignedEvent {
            body: built.body,
            hash: built.hash.to_vec(),
        }
    }

    fn sync(&self, url: &str, api_key: &str, events: Vec<proto::SignedEvent>) {
        let head = self.tip.hash.map(|h| {
            self.key.sign_head(
                self.project,
                self.tip.seq,
                h,
                horde_core::time::now_micros(),
            )
        });
        let batch = proto::SyncBatch {
            project_id: self.project.to_vec(),
            device_id: self.key.device_id().to_vec(),
            events,
            head,
        };
        let r = http()
            .post(format!("{url}/v1/projects/{}/sync", self.project))
            .bearer_auth(api_key)
            .header("content-type", "application/x-protobuf")
            .body(batch.encode_to_vec())
            .send()
            .expect("sync");
        assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap_or_default());
    }
}

fn upload(url: &str, key: &str, content: &[u8]) -> BlobHash {
    let hash = BlobHash::of(content);
    let r = http()
        .put(format!("{url}/v1/blobs/{hash}"))
        .bearer_auth(key)
        .body(content.to_vec())
        .send()
        .expect("upload");
    assert!(r.status().is_success(), "{}", r.status());
    hash
}

fn write(path: &str, content: &[u8], withheld: bool) -> Payload {
    Payload::StateChange(proto::StateChange {
        path: path.into(),
        op: Op::Modify as i32,
        after_hash: BlobHash::of(content).to_vec(),
        mode: 0o644,
        size: content.len() as u64,
        kind: proto::FileKind::File as i32,
        withheld,
        ..Default::default()
    })
}

fn tool_call(i: usize) -> Payload {
    Payload::ToolCall(proto::ToolCall {
        tool: "exec".into(),
        args: vec!["cargo".into(), "test".into(), format!("step-{i}")],
        result_summary: "ok".into(),
        ..Default::default()
    })
}

fn approval_request(id: u8) -> Payload {
    Payload::Approval(proto::Approval {
        request_id: vec![id; 16],
        kind: proto::approval::Kind::Requested as i32,
        who: "agent".into(),
        action: "exec".into(),
        subject: format!("git push origin {id}"),
        expires_at: horde_core::time::now_micros() + 3_600_000_000,
        ..Default::default()
    })
}

/// An MCP client of one project's `/mcp` URL.
struct Mcp {
    url: String,
    key: Option<String>,
    /// Sent as `MCP-Protocol-Version` after the handshake (or always, statelessly).
    version: Option<&'static str>,
    /// `_meta` of every request (the stateless protocol), or none.
    meta: Option<Value>,
    next_id: u64,
}

/// What an HTTP answer to a JSON-RPC POST was.
struct Answer {
    status: u16,
    content_type: String,
    /// The JSON-RPC message (from a JSON body or the last SSE `data:`), or the error body.
    json: Value,
}

impl Mcp {
    fn new(cloud: &Cloud, project: &str, key: Option<&str>) -> Mcp {
        Mcp {
            url: format!("{}/mcp/{project}", cloud.url),
            key: key.map(str::to_owned),
            version: None,
            meta: None,
            next_id: 1,
        }
    }

    fn stateless(cloud: &Cloud, project: &str, key: &str) -> Mcp {
        let mut m = Mcp::new(cloud, project, Some(key));
        m.version = Some("2026-07-28");
        m.meta = Some(json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "modern-client", "version": "2.0"},
        }));
        m
    }

    fn post_raw(&self, body: String) -> Answer {
        self.post_with(body, &[])
    }

    fn post_with(&self, body: String, headers: &[(&str, String)]) -> Answer {
        let mut b = http()
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(k) = &self.key {
            b = b.bearer_auth(k);
        }
        if let Some(v) = self.version {
            b = b.header("mcp-protocol-version", v);
        }
        for (k, v) in headers {
            b = b.header(*k, v);
        }
        let r = b.send().expect("POST");
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = r.text().expect("body");
        let json = if content_type.starts_with("text/event-stream") {
            text.lines()
                .rev()
                .filter_map(|l| l.strip_prefix("data:"))
                .find_map(|d| serde_json::from_str(d.trim()).ok())
                .unwrap_or(Value::Null)
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer {
            status,
            content_type,
            json,
        }
    }

    fn request(&mut self, method: &str, mut params: Value) -> Answer {
        // The stateless protocol names the method (and a tool call's tool) in headers too.
        let mut headers = Vec::new();
        if self.version == Some("2026-07-28") {
            headers.push(("mcp-method", method.to_owned()));
            if let Some(name) = params["name"].as_str() {
                headers.push(("mcp-name", name.to_owned()));
            }
        }
        if let Some(meta) = &self.meta {
            params["_meta"] = meta.clone();
        }
        let id = self.next_id;
        self.next_id += 1;
        self.post_with(
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
            &headers,
        )
    }

    /// The 2025-11-25 handshake: `initialize`, then `notifications/initialized`.
    fn initialize(&mut self) -> Value {
        let a = self.request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "legacy-client", "version": "1.0"}}),
        );
        assert_eq!(a.status, 200, "{}", a.json);
        self.version = Some("2025-11-25");
        let n = self
            .post_raw(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string());
        assert!(n.status == 202 || n.status == 200, "{}", n.status);
        a.json
    }

    fn call(&mut self, tool: &str, args: Value) -> Value {
        let a = self.request("tools/call", json!({"name": tool, "arguments": args}));
        assert_eq!(a.status, 200, "{tool}: {}", a.json);
        // A tool's answer is one JSON body, not a stream.
        assert!(
            a.content_type.starts_with("application/json"),
            "{tool}: {}",
            a.content_type
        );
        a.json
    }

    /// A call that must succeed: its structured result.
    fn ok(&mut self, tool: &str, args: Value) -> Value {
        let r = self.call(tool, args);
        assert!(
            r["result"]["isError"] != json!(true) && r["error"].is_null(),
            "{tool}: {r}"
        );
        r["result"]["structuredContent"].clone()
    }

    /// A call the tool refuses: its message.
    fn refused(&mut self, tool: &str, args: Value) -> String {
        let r = self.call(tool, args);
        assert_eq!(r["result"]["isError"], json!(true), "{tool}: {r}");
        r["result"]["content"][0]["text"]
            .as_str()
            .expect("text")
            .to_owned()
    }
}

/// A cloud with tenant A's project (a device synced 30 tool calls, two versions of
/// `src/main.rs`, a withheld `.env`, a doc and an approval request) and tenant B.
struct World {
    cloud: Cloud,
    key_a: String,
    key_b: String,
    project: ProjectId,
    /// Ids of the first and second write of `src/main.rs`, and of the withheld `.env`.
    v1: String,
    v2: String,
    env: String,
    blob_v1: BlobHash,
    project_b: ProjectId,
}

fn event_id(e: &proto::SignedEvent) -> String {
    let body = horde_core::decode_event(&e.body, &e.hash).expect("decode");
    horde_core::EventId::from_slice(&body.event_id)
        .expect("id")
        .to_string()
}

fn world() -> World {
    let cloud = Cloud::start();
    let key_a = signup(&cloud.url, &format!("a-{}", horde_core::EventId::new()));
    let key_b = signup(&cloud.url, &format!("b-{}", horde_core::EventId::new()));
    let (project, timeline) = new_project(&cloud.url, &key_a, "web");
    let (project_b, _) = new_project(&cloud.url, &key_b, "secret-web");
    let mut d = Device::new(&cloud.url, &key_a, project, timeline);
    let blob_v1 = upload(&cloud.url, &key_a, b"fn main() {}\n");
    upload(&cloud.url, &key_a, b"fn main() { println!(\"hi\"); }\n");
    upload(&cloud.url, &key_a, b"# docs\n");
    let mut events: Vec<_> = (0..30).map(|i| d.event("claude", tool_call(i))).collect();
    let first = d.event("claude", write("src/main.rs", b"fn main() {}\n", false));
    let v1 = event_id(&first);
    events.push(first);
    let second = d.event(
        "codex",
        write("src/main.rs", b"fn main() { println!(\"hi\"); }\n", false),
    );
    let v2 = event_id(&second);
    events.push(second);
    let env = d.event("claude", write(".env", b"TOKEN=hunter2\n", true));
    let env_id = event_id(&env);
    events.push(env);
    events.push(d.event("claude", write("docs/a.md", b"# docs\n", false)));
    events.push(d.event("claude", approval_request(7)));
    d.sync(&cloud.url, &key_a, events);
    World {
        cloud,
        key_a,
        key_b,
        project,
        v1,
        v2,
        env: env_id,
        blob_v1,
        project_b,
    }
}

fn recorded_calls(w: &World, key: &str, project: ProjectId) -> (u16, Value) {
    rest(
        &w.cloud.url,
        Some(key),
        reqwest::Method::GET,
        &format!("/v1/projects/{project}/mcp-calls?limit=1000"),
        None,
    )
}

#[test]
fn the_initialize_handshake_then_the_tools_over_synced_events() {
    let w = world();
    let mut c = Mcp::new(&w.cloud, &w.project.to_string(), Some(&w.key_a));
    let init = c.initialize();
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    assert_eq!(init["result"]["serverInfo"]["name"], "horde", "{init}");
    assert!(
        init["result"]["capabilities"]["tools"].is_object(),
        "{init}"
    );

    let tools = c.request("tools/list", json!({}));
    let names: Vec<&str> = tools.json["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    for t in [
        "log",
        "show",
        "read_blob",
        "history",
        "diff",
        "restore",
        "approvals",
        "sync_status",
    ] {
        assert!(names.contains(&t), "{t} missing: {names:?}");
    }

    // log: newest first by default, filters, and pages that cover the log once.
    let newest = c.ok("log", json!({"limit": 1}));
    assert_eq!(newest["events"][0]["type"], "approval", "{newest}");
    let changes = c.ok("log", json!({"types": ["state_change"], "reverse": true}));
    let paths: Vec<&str> = changes["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["payload"]["path"].as_str().expect("path"))
        .collect();
    assert_eq!(paths, ["src/main.rs", "src/main.rs", ".env", "docs/a.md"]);
    let under_src = c.ok("log", json!({"path": "src"}));
    assert_eq!(under_src["events"].as_array().expect("events").len(), 2);
    let by_codex = c.ok("log", json!({"agents": ["codex"]}));
    assert_eq!(by_codex["events"][0]["id"], w.v2.as_str(), "{by_codex}");
    let mut seqs = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = json!({"limit": 8, "reverse": true});
        if let Some(c) = &cursor {
            args["cursor"] = json!(c);
        }
        let page = c.ok("log", args);
        pages += 1;
        seqs.extend(
            page["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|e| e["seq"].as_u64().expect("seq")),
        );
        match page["next_cursor"].as_str() {
            Some(n) => cursor = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!(seqs, (1..=35).collect::<Vec<u64>>());
    assert_eq!(pages, 5);

    // show: the event, its blob previewed; a withheld blob is never read.
    let shown = c.ok("show", json!({"event": w.v1}));
    assert_eq!(shown["event"]["payload"]["path"], "src/main.rs", "{shown}");
    assert_eq!(shown["blobs"][0]["preview"], "fn main() {}\n", "{shown}");
    let env = c.ok("show", json!({"event": w.env}));
    assert_eq!(env["blobs"][0]["readable"], false, "{env}");
    assert!(env["blobs"][0].get("preview").is_none(), "{env}");
    let blob = c.ok(
        "read_blob",
        json!({"event": w.v1, "hash": w.blob_v1.to_hex(), "offset": 3, "limit": 4}),
    );
    assert_eq!(blob["text"], "main", "{blob}");
    assert_eq!(blob["next_offset"], 7, "{blob}");
    let env_hash = BlobHash::of(b"TOKEN=hunter2\n").to_hex();
    let msg = c.refused("read_blob", json!({"event": w.env, "hash": env_hash}));
    assert!(msg.contains("withheld"), "{msg}");

    // history and diff.
    let hist = c.ok("history", json!({"path": "src/main.rs"}));
    let versions = hist["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2, "{hist}");
    assert!(
        versions[0]["version"].as_u64() <= versions[1]["version"].as_u64(),
        "oldest first: {hist}"
    );
    let diff = c.ok("diff", json!({"from": w.v1, "to": w.v2}));
    let changes = diff["changes"].as_array().expect("changes");
    assert!(
        changes
            .iter()
            .any(|c| c["path"] == "src/main.rs" && c["change"] == "modified"),
        "{diff}"
    );
    let diff_docs = c.ok("diff", json!({"from": w.v1, "path": "docs"}));
    let docs: Vec<&str> = diff_docs["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["path"].as_str().expect("path"))
        .collect();
    assert_eq!(docs, ["docs", "docs/a.md"], "{diff_docs}");

    // approvals: the pending request.
    let ap = c.ok("approvals", json!({}));
    let reqs = ap["requests"].as_array().expect("requests");
    assert_eq!(reqs.len(), 1, "{ap}");
    assert_eq!(reqs[0]["subject"], "git push origin 7", "{ap}");
    assert_eq!(reqs[0]["state"], "pending", "{ap}");

    // sync_status: what the cloud holds.
    let st = c.ok("sync_status", json!({}));
    assert_eq!(st["events"], 35, "{st}");
    assert_eq!(st["devices"][0]["last_seq"], 35, "{st}");
    assert!(st["head"]["versionstamp"].is_string(), "{st}");

    // restore: refused on the cloud, pointing at the REST archive.
    let msg = c.refused("restore", json!({"at": w.v1, "to": "/tmp/x"}));
    assert!(
        msg.contains(&format!("/v1/projects/{}/restore?at={}", w.project, w.v1)),
        "{msg}"
    );

    // Every call is recorded and survives: read back through the API.
    let (s, calls) = recorded_calls(&w, &w.key_a, w.project);
    assert_eq!(s, 200, "{calls}");
    let calls = calls["calls"].as_array().expect("calls");
    let tools: Vec<&str> = calls
        .iter()
        .map(|c| c["tool"].as_str().expect("tool"))
        .collect();
    let mut expected = vec!["log"; 9];
    expected.extend([
        "show",
        "show",
        "read_blob",
        "read_blob",
        "history",
        "diff",
        "diff",
        "approvals",
        "sync_status",
        "restore",
    ]);
    assert_eq!(tools, expected);
    assert!(calls[0]["error"].is_null(), "{}", calls[0]);
    assert!(calls[tools.len() - 1]["error"].is_string());
    assert!(
        calls[0]["args"]
            .as_array()
            .expect("args")
            .contains(&json!("limit=1"))
    );
}

#[test]
fn the_stateless_protocol_with_discover_and_meta() {
    let w = world();
    let mut c = Mcp::stateless(&w.cloud, &w.project.to_string(), &w.key_a);
    let d = c.request("server/discover", json!({}));
    assert_eq!(d.status, 200, "{}", d.json);
    let versions = d.json["result"]["supportedVersions"]
        .as_array()
        .expect("versions")
        .clone();
    assert!(
        versions.contains(&json!("2026-07-28")) && versions.contains(&json!("2025-11-25")),
        "{}",
        d.json
    );
    let tools = c.request("tools/list", json!({}));
    assert!(
        tools.json["result"]["tools"]
            .as_array()
            .expect("tools")
            .len()
            >= 8
    );
    let page = c.ok("log", json!({"types": ["state_change"], "limit": 2}));
    assert_eq!(page["events"][0]["payload"]["path"], "docs/a.md", "{page}");
    assert!(page["next_cursor"].is_string(), "{page}");
    let shown = c.ok("show", json!({"event": w.v2}));
    assert_eq!(shown["event"]["agent"], "codex", "{shown}");

    // A request without its `_meta`: a JSON-RPC error, and nothing ran.
    let saved = c.meta.take();
    let e = c.request("tools/call", json!({"name": "log", "arguments": {}}));
    assert!(e.json["error"]["message"].is_string(), "{}", e.json);
    c.meta = saved;

    let (_, calls) = recorded_calls(&w, &w.key_a, w.project);
    let calls = calls["calls"].as_array().expect("calls").clone();
    assert_eq!(calls.len(), 2, "{calls:?}");
    for call in &calls {
        assert_eq!(call["client"], "modern-client", "{call}");
    }
}

#[test]
fn bad_arguments_are_clear_errors_and_recorded() {
    let w = world();
    let mut c = Mcp::stateless(&w.cloud, &w.project.to_string(), &w.key_a);
    let msg = c.refused("log", json!({"limit": 0}));
    assert!(msg.contains("limit"), "{msg}");
    let msg = c.refused("log", json!({"colour": "red"}));
    assert!(msg.contains("colour"), "{msg}");
    let msg = c.refused("log", json!({"types": ["nonsense"]}));
    assert!(msg.contains("nonsense"), "{msg}");
    let msg = c.refused("log", json!({"cursor": "zz"}));
    assert!(msg.contains("cursor"), "{msg}");
    let msg = c.refused("show", json!({"event": "#12"}));
    assert!(msg.contains("event id"), "{msg}");
    let msg = c.refused("diff", json!({"from": "not a point"}));
    assert!(msg.contains("from"), "{msg}");
    let msg = c.refused("history", json!({"path": "../etc/passwd"}));
    assert!(msg.contains("path"), "{msg}");
    let msg = c.refused("no_such_tool", json!({}));
    assert!(msg.contains("no_such_tool"), "{msg}");

    let (_, calls) = recorded_calls(&w, &w.key_a, w.project);
    let calls = calls["calls"].as_array().expect("calls").clone();
    assert_eq!(calls.len(), 8, "{calls:?}");
    for call in &calls {
        assert_eq!(call["summary"], "refused", "{call}");
        assert!(call["error"].is_string(), "{call}");
    }
    assert_eq!(calls[0]["tool"], "log");
    assert!(calls[0]["error"].as_str().expect("error").contains("limit"));

    // Malformed JSON-RPC: an error answer, nothing recorded.
    let bad = c.post_raw("{not json".to_owned());
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json["error"]["code"], -32700, "{}", bad.json);
    let not_rpc = c.post_raw(json!({"id": 3, "method": "tools/list"}).to_string());
    assert_eq!(not_rpc.status, 400);
    assert_eq!(not_rpc.json["error"]["code"], -32600, "{}", not_rpc.json);
    assert_eq!(not_rpc.json["id"], 3, "{}", not_rpc.json);
    // A client that does not take JSON answers, or a body not sent as JSON: JSON-RPC
    // errors too.
    let list = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": {}}).to_string();
    let r = http()
        .post(&c.url)
        .bearer_auth(&w.key_a)
        .header("content-type", "application/json")
        .header("accept", "text/plain")
        .header("mcp-protocol-version", "2025-11-25")
        .body(list.clone())
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 406);
    let body: Value = r.json().expect("JSON");
    assert!(body["error"]["message"].is_string(), "{body}");
    let r = http()
        .post(&c.url)
        .bearer_auth(&w.key_a)
        .header("content-type", "text/plain")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(list)
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 415);
    let body: Value = r.json().expect("JSON");
    assert!(body["error"]["message"].is_string(), "{body}");
    // A message rmcp cannot take (no such method shape): still a JSON-RPC error.
    let odd = c.post_raw(json!({"jsonrpc": "2.0", "id": 4, "method": 12}).to_string());
    assert!(odd.status >= 400, "{}", odd.status);
    assert!(odd.json["error"]["message"].is_string(), "{}", odd.json);
    let too_big = c.post_raw(format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{{\"pad\":\"{}\"}}}}",
        "x".repeat(300 * 1024)
    ));
    assert_eq!(too_big.status, 413, "{}", too_big.json);
    let (_, after) = recorded_calls(&w, &w.key_a, w.project);
    assert_eq!(after["calls"].as_array().expect("calls").len(), 8);
}

#[test]
fn keys_roles_and_tenants() {
    let w = world();
    let p = w.project.to_string();
    // No key, or an unknown one: 401 before anything is read.
    let mut none = Mcp::new(&w.cloud, &p, None);
    let a = none.request("tools/list", json!({}));
    assert_eq!(a.status, 401, "{}", a.json);
    assert_eq!(a.json["error"]["code"], "unauthorized");
    let mut wrong = Mcp::new(&w.cloud, &p, Some("hk_not_a_key"));
    assert_eq!(wrong.request("tools/list", json!({})).status, 401);

    // Tenant B: A's project answers exactly as one that does not exist.
    let mut b_on_a = Mcp::stateless(&w.cloud, &p, &w.key_b);
    let on_a = b_on_a.request("tools/list", json!({}));
    let absent = ProjectId::new().to_string();
    let mut b_on_none = Mcp::stateless(&w.cloud, &absent, &w.key_b);
    let on_none = b_on_none.request("tools/list", json!({}));
    assert_eq!((on_a.status, on_none.status), (404, 404));
    assert_eq!(on_a.json["error"]["code"], on_none.json["error"]["code"]);
    assert_eq!(
        on_a.json["error"]["message"]
            .as_str()
            .expect("message")
            .replace(&p, "ID"),
        on_none.json["error"]["message"]
            .as_str()
            .expect("message")
            .replace(&absent, "ID")
    );
    // … nor A's events or blobs by id through B's own project.
    let mut b = Mcp::stateless(&w.cloud, &w.project_b.to_string(), &w.key_b);
    let msg = b.refused("show", json!({"event": w.v1}));
    assert!(msg.contains("no event"), "{msg}");
    let msg = b.refused(
        "read_blob",
        json!({"event": w.v1, "hash": w.blob_v1.to_hex()}),
    );
    assert!(msg.contains("no event"), "{msg}");
    let msg = b.refused("diff", json!({"from": w.v1}));
    assert!(msg.contains("no event"), "{msg}");
    let empty = b.ok("log", json!({}));
    assert_eq!(empty["events"], json!([]));
    // B's calls are in B's record, none in A's; A's record is not B's to read.
    let (s, calls) = recorded_calls(&w, &w.key_b, w.project_b);
    assert_eq!(s, 200);
    assert_eq!(calls["calls"].as_array().expect("calls").len(), 4);
    let (s, _) = recorded_calls(&w, &w.key_b, w.project);
    assert_eq!(s, 404);
    let (_, calls) = recorded_calls(&w, &w.key_a, w.project);
    assert_eq!(calls["calls"], json!([]));

    // A viewer of tenant A may use the tools (they read).
    let (s, u) = rest(
        &w.cloud.url,
        Some(&w.key_a),
        reqwest::Method::POST,
        "/v1/users",
        Some(json!({"email": "viewer@a.example", "role": "viewer"})),
    );
    assert_eq!(s, 201, "{u}");
    let (s, k) = rest(
        &w.cloud.url,
        Some(&w.key_a),
        reqwest::Method::POST,
        "/v1/keys",
        Some(json!({"name": "viewer", "user_id": u["id"]})),
    );
    assert_eq!(s, 201, "{k}");
    let mut viewer = Mcp::stateless(&w.cloud, &p, k["api_key"].as_str().expect("key"));
    let page = viewer.ok("log", json!({"limit": 3}));
    assert_eq!(page["events"].as_array().expect("events").len(), 3);

    // Only POST: GET (no server-initiated streams) and DELETE (no sessions) are refused.
    let r = http()
        .get(format!("{}/mcp/{p}", w.cloud.url))
        .bearer_auth(&w.key_a)
        .header("accept", "text/event-stream")
        .send()
        .expect("GET");
    assert_eq!(r.status().as_u16(), 405);
    let r = http()
        .delete(format!("{}/mcp/{p}", w.cloud.url))
        .bearer_auth(&w.key_a)
        .send()
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 405);
}

#[test]
fn the_route_is_in_the_openapi_document() {
    let cloud = Cloud::start();
    let (s, doc) = rest(
        &cloud.url,
        None,
        reqwest::Method::GET,
        "/v1/openapi.json",
        None,
    );
    assert_eq!(s, 200);
    assert!(
        doc["paths"]["/mcp/{id}"]["post"].is_object(),
        "{}",
        doc["paths"]
    );
    assert!(doc["paths"]["/v1/projects/{id}/mcp-calls"]["get"].is_object());
}
