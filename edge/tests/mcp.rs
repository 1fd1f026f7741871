//! `horde mcp` from the client's side: the real binary spoken to in JSON-RPC over stdio, with
//! the `initialize` handshake (2025-11-25) and statelessly (2026-07-28: `server/discover`,
//! the version in each request's `_meta`), against a repository with recorded events.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use common::Repo;
use serde_json::{Value, json};

/// A client of one `horde mcp` process.
struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    next_id: i64,
    /// `_meta` added to every request (the stateless protocol), or none (after `initialize`).
    meta: Option<Value>,
}

impl Client {
    fn start(r: &Repo) -> Self {
        let mut child = r
            .cmd(&["mcp"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("horde mcp starts");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
            next_id: 1,
            meta: None,
        }
    }

    fn send(&mut self, v: &Value) {
        let stdin = self.stdin.as_mut().expect("open stdin");
        writeln!(stdin, "{v}").expect("write a message");
        stdin.flush().expect("flush");
    }

    /// Sends a request and returns the whole response (notifications in between skipped).
    fn request(&mut self, method: &str, mut params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(meta) = &self.meta {
            params["_meta"] = meta.clone();
        }
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .expect("an answer within 60 s");
            let v: Value = serde_json::from_str(&line).expect("each line is JSON");
            if v["id"] == json!(id) {
                return v;
            }
            assert!(v.get("id").is_none(), "an answer to another request: {v}");
        }
    }

    /// Calls a tool; returns its result (`isError` may be set).
    fn call(&mut self, tool: &str, args: Value) -> Value {
        let v = self.request("tools/call", json!({"name": tool, "arguments": args}));
        assert!(v.get("error").is_none(), "{tool} {v}");
        v["result"].clone()
    }

    /// Calls a tool that must succeed; returns its structured content.
    fn ok(&mut self, tool: &str, args: Value) -> Value {
        let res = self.call(tool, args.clone());
        assert_ne!(res["isError"], json!(true), "{tool} {args}: {res}");
        res["structuredContent"].clone()
    }

    /// Calls a tool that must fail; returns its message.
    fn refused(&mut self, tool: &str, args: Value) -> String {
        let res = self.call(tool, args.clone());
        assert_eq!(res["isError"], json!(true), "{tool} {args}: {res}");
        res["content"][0]["text"]
            .as_str()
            .expect("a text message")
            .to_owned()
    }

    /// Closes stdin and waits for the server to leave.
    fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "horde mcp ended with {status}");
    }
}

/// A repository with three recorded steps by two agents and a withheld `.env`; returns the
/// seq of the first point (after `init`).
fn history_repo() -> (Repo, u64) {
    let r = Repo::init();
    let v1 = r.json(&["log", "-n", "1"])[0]["seq"].as_u64().expect("seq");
    r.write("src/main.rs", "fn main() { println!(\"two\"); }\n");
    r.write("src/lib.rs", "pub fn lib() {}\n");
    r.ok(&["snapshot", "--agent", "alice", "-m", "second"]);
    r.write("new.txt", "new\n");
    r.write(".env", "API_TOKEN=do-not-show-this\n");
    r.ok(&["snapshot", "--agent", "bob", "-m", "third"]);
    (r, v1)
}

fn ids(events: &Value) -> Vec<String> {
    events
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect()
}

fn mcp_calls(r: &Repo) -> Vec<Value> {
    r.json(&["log", "--agent", "mcp", "--reverse"])
        .as_array()
        .expect("array")
        .clone()
}

#[test]
fn initialize_handshake_then_every_tool() {
    let (r, v1) = history_repo();
    let mut c = Client::start(&r);
    let init = c.request(
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {},
               "clientInfo": {"name": "test-client", "version": "1.0"}}),
    );
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    assert_eq!(init["result"]["serverInfo"]["name"], "horde");
    c.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));

    let tools = c.request("tools/list", json!({}));
    let names: Vec<&str> = tools["result"]["tools"]
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
        assert!(names.contains(&t), "{t} in {names:?}");
    }
    assert!(
        !names
            .iter()
            .any(|n| n.contains("approve") || n.contains("decide"))
    );
    let mut calls = 0;

    // log, paged: the pages together are `horde log`, in order, each item once.
    let cli = r.json(&["log", "--type", "state_change"]);
    let mut paged = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let mut args = json!({"types": ["state_change"], "limit": 2});
        if !cursor.is_null() {
            args["cursor"] = cursor.clone();
        }
        let page = c.ok("log", args);
        calls += 1;
        let events = page["events"].as_array().expect("events");
        assert!(events.len() <= 2);
        paged.extend(ids(&page["events"]));
        cursor = page["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(paged, ids(&cli));
    assert!(paged.len() > 4);

    // Filters as `horde log`.
    let under_src = c.ok("log", json!({"path": "src", "reverse": true}));
    calls += 1;
    assert_eq!(
        ids(&under_src["events"]),
        ids(&r.json(&["log", "--path", "src", "--reverse"]))
    );
    let bob = c.ok("log", json!({"agents": ["bob"], "types": ["message"]}));
    calls += 1;
    assert_eq!(bob["events"].as_array().expect("events").len(), 1);
    assert_eq!(bob["events"][0]["payload"]["text"], "third");
    let later = c.ok("log", json!({"since": "10 minutes ago", "limit": 1}));
    calls += 1;
    assert_eq!(later["events"].as_array().expect("events").len(), 1);

    // show: the event and its blob previewed.
    let lib_change = r.json(&["log", "--path", "src/lib.rs"])[0].clone();
    let shown = c.ok("show", json!({"event": lib_change["id"]}));
    calls += 1;
    assert_eq!(shown["event"]["id"], lib_change["id"]);
    assert_eq!(shown["blobs"][0]["preview"], "pub fn lib() {}\n", "{shown}");
    // read_blob pages through it.
    let hash = shown["blobs"][0]["hash"].clone();
    let part = c.ok(
        "read_blob",
        json!({"event": lib_change["id"], "hash": hash, "offset": 4, "limit": 3}),
    );
    calls += 1;
    assert_eq!(part["text"], "fn ");
    assert_eq!(part["next_offset"], 7);

    // A withheld content is never shown nor read.
    let env_change = r.json(&["log", "--path", ".env"])[0].clone();
    let shown = c.ok("show", json!({"event": env_change["id"]}));
    calls += 1;
    assert!(!shown.to_string().contains("do-not-show-this"), "{shown}");
    assert_eq!(shown["blobs"][0]["readable"], false);
    let env_hash = shown["blobs"][0]["hash"].clone();
    let msg = c.refused(
        "read_blob",
        json!({"event": env_change["id"], "hash": env_hash}),
    );
    calls += 1;
    assert!(msg.contains("withheld"), "{msg}");

    // history: every version of a file.
    let h = c.ok("history", json!({"path": "src/main.rs"}));
    calls += 1;
    assert_eq!(h["versions"].as_array().expect("versions").len(), 2, "{h}");

    // diff between points, all or under a path.
    let d = c.ok("diff", json!({"from": format!("#{v1}")}));
    calls += 1;
    let changed: Vec<(String, String)> = d["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["path"].as_str().expect("path").to_owned(),
                c["change"].as_str().expect("change").to_owned(),
            )
        })
        .collect();
    for want in [
        ("src/main.rs", "modified"),
        ("src/lib.rs", "added"),
        ("new.txt", "added"),
    ] {
        assert!(
            changed.contains(&(want.0.to_owned(), want.1.to_owned())),
            "{want:?} in {changed:?}"
        );
    }
    assert_eq!(d["from"]["seq"], v1);
    let d = c.ok(
        "diff",
        json!({"from": format!("#{v1}"), "path": "src", "limit": 1}),
    );
    calls += 1;
    assert_eq!(d["changes"].as_array().expect("changes").len(), 1);
    assert!(d["next_cursor"].is_string());

    // restore: the tree at the first point, byte for byte, into a new directory.
    let place = r.root.parent().expect("parent").to_owned();
    let then = place.join("then");
    let j = c.ok("restore", json!({"at": format!("#{v1}"), "to": then}));
    calls += 1;
    assert_eq!(j["report"]["written"], 3, "{j}");
    assert_eq!(
        fs::read_to_string(then.join("src/main.rs")).expect("read"),
        "fn main() {}\n"
    );
    assert_eq!(
        fs::read_to_string(then.join("notes.txt")).expect("read"),
        "some notes\n"
    );
    assert!(!then.join("src/lib.rs").exists());
    // HEAD, without the withheld file; only a path.
    let now = place.join("now");
    let j = c.ok("restore", json!({"at": "HEAD", "to": now}));
    calls += 1;
    assert_eq!(j["report"]["withheld"], json!([".env"]), "{j}");
    assert!(!now.join(".env").exists());
    assert_eq!(
        fs::read_to_string(now.join("new.txt")).expect("read"),
        "new\n"
    );
    let part = place.join("part");
    c.ok("restore", json!({"at": "HEAD", "path": "src", "to": part}));
    calls += 1;
    assert!(part.join("src/lib.rs").is_file());
    assert!(!part.join("new.txt").exists());
    // The repository itself is as it was.
    assert_eq!(
        fs::read_to_string(r.path("src/main.rs")).expect("read"),
        "fn main() { println!(\"two\"); }\n"
    );

    // approvals and sync status.
    let a = c.ok("approvals", json!({"all": true}));
    calls += 1;
    assert_eq!(a["requests"], json!([]));
    let s = c.ok("sync_status", json!({}));
    calls += 1;
    assert!(s["events"].as_u64().expect("events") > 5, "{s}");
    assert_eq!(s["remote"], Value::Null);

    // Bad input: a clear message, nothing written.
    let bad: Vec<(&str, Value, &str)> = vec![
        (
            "log",
            json!({"limit": 0}),
            "limit must be between 1 and 200",
        ),
        (
            "log",
            json!({"types": ["nope"]}),
            "unknown event type \"nope\"",
        ),
        ("log", json!({"since": "yesterday-ish"}), "since"),
        ("log", json!({"bogus": 1}), "unknown field `bogus`"),
        ("log", json!({"cursor": "x1"}), "cursor"),
        ("log", json!({"path": "../etc"}), "path"),
        ("show", json!({"event": "ffffffff"}), "no event matches"),
        ("show", json!({}), "missing field `event`"),
        ("history", json!({"path": "/etc/passwd"}), "path"),
        ("diff", json!({"from": "#999999"}), "from"),
        (
            "restore",
            json!({"at": "HEAD", "to": then}),
            "already exists",
        ),
        (
            "restore",
            json!({"at": "HEAD", "to": "relative/dir"}),
            "absolute",
        ),
        (
            "restore",
            json!({"at": "HEAD", "to": "/etc/horde-mcp-test"}),
            "not below",
        ),
        (
            "restore",
            json!({"at": "HEAD", "to": r.path("inside")}),
            "inside the repository",
        ),
        (
            "restore",
            json!({"at": "HEAD", "path": "nothing/here", "to": place.join("x")}),
            "is not in the tree",
        ),
        ("nope", json!({}), "unknown tool \"nope\""),
    ];
    for (tool, args, want) in &bad {
        let msg = c.refused(tool, args.clone());
        calls += 1;
        assert!(msg.contains(want), "{tool} {args}: {msg:?} lacks {want:?}");
    }
    assert!(!place.join("x").exists());
    assert!(!r.path("inside").exists());
    assert!(!std::path::Path::new("/etc/horde-mcp-test").exists());

    c.finish();

    // Every call is in the log: by agent mcp, the tool's name, the client as the session.
    let recorded = mcp_calls(&r);
    assert_eq!(recorded.len(), calls, "{recorded:#?}");
    for e in &recorded {
        assert_eq!(e["type"], "tool_call");
        assert_eq!(e["payload"]["session"], "test-client");
    }
    let failed: Vec<&Value> = recorded
        .iter()
        .filter(|e| e["payload"]["exit_code"] == 1)
        .collect();
    assert_eq!(
        failed.len(),
        bad.len() + 1,
        "the bad ones and the withheld read"
    );
    assert_eq!(recorded[0]["payload"]["tool"], "log");
    assert!(
        recorded[0]["payload"]["args"]
            .as_array()
            .expect("args")
            .contains(&json!("limit=2"))
    );
    let restore = recorded
        .iter()
        .find(|e| e["payload"]["tool"] == "restore")
        .expect("a restore");
    assert!(
        restore["payload"]["result_summary"]
            .as_str()
            .expect("summary")
            .contains("written into"),
        "{restore}"
    );
}

#[test]
fn stateless_requests_with_meta_and_discover() {
    let (r, v1) = history_repo();
    let mut c = Client::start(&r);
    c.meta = Some(json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "modern-client", "version": "2.0"},
    }));
    let d = c.request("server/discover", json!({}));
    let versions = d["result"]["supportedVersions"].clone();
    assert!(
        versions
            .as_array()
            .expect("versions")
            .contains(&json!("2026-07-28"))
            && versions
                .as_array()
                .expect("versions")
                .contains(&json!("2025-11-25")),
        "{d}"
    );
    assert!(d["result"]["capabilities"]["tools"].is_object(), "{d}");

    let tools = c.request("tools/list", json!({}));
    assert!(
        tools["result"]["tools"].as_array().expect("tools").len() >= 8,
        "{tools}"
    );
    let page = c.ok("log", json!({"types": ["message"], "reverse": true}));
    let texts: Vec<&str> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["payload"]["text"].as_str().expect("text"))
        .collect();
    assert_eq!(texts, ["second", "third"]);
    let then = r.root.parent().expect("parent").join("then");
    c.ok("restore", json!({"at": format!("#{v1}"), "to": then}));
    assert_eq!(
        fs::read_to_string(then.join("src/main.rs")).expect("read"),
        "fn main() {}\n"
    );
    let msg = c.refused("diff", json!({"from": "not a point"}));
    assert!(msg.contains("from"), "{msg}");

    // A version the server does not speak, or a request without its `_meta`: JSON-RPC errors.
    let saved = c.meta.clone();
    c.meta = Some(json!({
        "io.modelcontextprotocol/protocolVersion": "2099-01-01",
        "io.modelcontextprotocol/clientCapabilities": {},
    }));
    let e = c.request("tools/list", json!({}));
    assert!(e["error"]["message"].is_string(), "{e}");
    c.meta = None;
    let e = c.request("tools/call", json!({"name": "log", "arguments": {}}));
    assert!(e["error"]["message"].is_string(), "{e}");
    c.meta = saved;
    c.ok("sync_status", json!({}));
    c.finish();

    let recorded = mcp_calls(&r);
    let tools: Vec<&str> = recorded
        .iter()
        .map(|e| e["payload"]["tool"].as_str().expect("tool"))
        .collect();
    assert_eq!(tools, ["log", "restore", "diff", "sync_status"]);
    for e in &recorded {
        assert_eq!(e["payload"]["session"], "modern-client", "{e}");
    }
}
