//! The real Claude Code (npm `@anthropic-ai/claude-code`, pinned by `cargo xtask test`, found
//! through `HORDE_CLAUDE_BIN`) recorded and gated by `horde hooks install claude`. Its model is
//! a server written here that speaks the Anthropic Messages API (streamed server-sent events)
//! with scripted replies: tool calls, then text.
//!
//! Without `HORDE_CLAUDE_BIN` the tests say they are skipped, and fail under CI.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use horde_e2e::binary;
use serde_json::{Value, json};

/// One reply of the scripted model.
#[derive(Clone)]
enum Reply {
    Tool(&'static str, Value),
    Text(&'static str),
}

/// A Messages API server: the agent's main requests (those offering tools) get the script in
/// order; side requests (titles, summaries) get a short text. Every request body is kept.
struct ModelServer {
    port: u16,
    requests: Arc<Mutex<Vec<Value>>>,
}

impl ModelServer {
    fn start(script: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new((script, 0usize)));
        let reqs = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (reqs, script) = (reqs.clone(), script.clone());
                std::thread::spawn(move || serve(stream, &reqs, &script));
            }
        });
        Self { port, requests }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn bodies(&self) -> Vec<Value> {
        self.requests.lock().expect("lock").clone()
    }
}

type Script = Mutex<(Vec<Reply>, usize)>;

fn serve(stream: TcpStream, reqs: &Mutex<Vec<Value>>, script: &Script) {
    let mut r = BufReader::new(stream.try_clone().expect("clone"));
    let mut w = stream;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (ctype, out) = if !path.starts_with("/v1/messages") || path.contains("count_tokens") {
            ("application/json", json!({"input_tokens": 10}).to_string())
        } else {
            let main = req["tools"].as_array().is_some_and(|t| t.len() > 3);
            let reply = if main {
                reqs.lock().expect("lock").push(req.clone());
                let mut s = script.lock().expect("lock");
                let i = s.1;
                s.1 += 1;
                s.0.get(i).cloned().unwrap_or(Reply::Text("done"))
            } else {
                Reply::Text("ok")
            };
            let n = reqs.lock().expect("lock").len();
            ("text/event-stream", sse(&reply, &req, n))
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\r\n",
            out.len()
        );
        if w.write_all(head.as_bytes()).is_err() || w.write_all(out.as_bytes()).is_err() {
            return;
        }
    }
}

/// The streamed events of one message.
fn sse(reply: &Reply, req: &Value, n: usize) -> String {
    let model = req["model"].as_str().unwrap_or("claude");
    let mut events = vec![json!({"type": "message_start", "message": {
        "id": format!("msg_{n}"), "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 100, "output_tokens": 1}}})];
    let stop = match reply {
        Reply::Tool(name, input) => {
            events.push(
                json!({"type": "content_block_start", "index": 0, "content_block": {
                "type": "tool_use", "id": format!("toolu_{n}"), "name": name, "input": {}}}),
            );
            events.push(json!({"type": "content_block_delta", "index": 0, "delta": {
                "type": "input_json_delta", "partial_json": input.to_string()}}));
            "tool_use"
        }
        Reply::Text(t) => {
            events.push(json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}));
            events.push(json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": t}}));
            "end_turn"
        }
    };
    events.push(json!({"type": "content_block_stop", "index": 0}));
    events.push(
        json!({"type": "message_delta", "delta": {"stop_reason": stop,
        "stop_sequence": null}, "usage": {"output_tokens": 40}}),
    );
    events.push(json!({"type": "message_stop"}));
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")))
        .collect()
}

fn claude_bin() -> Option<PathBuf> {
    match std::env::var_os("HORDE_CLAUDE_BIN") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "HORDE_CLAUDE_BIN is not set under CI: `cargo xtask test` installs Claude Code"
            );
            eprintln!(
                "skipped: HORDE_CLAUDE_BIN is not set (`cargo xtask test` installs Claude Code)"
            );
            None
        }
    }
}

/// A repository with its own home and horde config, and a role for the agent.
struct Repo {
    _dir: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
}

const ROLE: &str = "role: claude-test
tier: T1
files:
  read: ['**']
  write: ['src/**']
  deny: ['.git/**', '.horde/**']
commands:
  allow: ['mkdir *', 'echo *', 'mv *', 'cat *', 'ls *']
  deny: ['rm *']
";

impl Repo {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().join("repo");
        let home = dir.path().join("home");
        std::fs::create_dir_all(root.join("src")).expect("mkdir");
        std::fs::create_dir_all(&home).expect("mkdir");
        std::fs::write(root.join("src/lib.rs"), "pub mod x;\n").expect("write");
        let repo = Self {
            _dir: dir,
            root,
            home,
        };
        repo.horde(&["init"]);
        std::fs::create_dir_all(repo.root.join(".horde/agents")).expect("mkdir");
        std::fs::write(repo.root.join(".horde/agents/claude-test.yaml"), ROLE).expect("role");
        repo
    }

    fn cmd(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.current_dir(&self.root)
            .env("HOME", &self.home)
            .env("HORDE_CONFIG_DIR", self.home.join(".config/horde"))
            .env_remove("HORDE_AGENT");
        c
    }

    fn horde(&self, args: &[&str]) -> Output {
        let out = self
            .cmd(&binary("horde"))
            .args(args)
            .output()
            .expect("horde");
        assert!(
            out.status.success(),
            "horde {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn log(&self) -> Vec<Value> {
        let out = self.horde(&["log", "--json", "--reverse"]);
        serde_json::from_slice(&out.stdout).expect("log json")
    }

    /// Runs Claude Code headless on `prompt` against `model`.
    fn claude(&self, bin: &Path, model: &ModelServer, prompt: &str) -> Output {
        let out = self
            .cmd(bin)
            .args(["-p", prompt, "--output-format", "json"])
            .args(["--permission-mode", "bypassPermissions"])
            .env("ANTHROPIC_BASE_URL", model.url())
            .env("ANTHROPIC_API_KEY", "sk-ant-test")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            // bypassPermissions is refused as root unless it says it is in a sandbox.
            .env("IS_SANDBOX", "1")
            .output()
            .expect("claude");
        eprintln!(
            "claude: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

fn payload<'a>(e: &'a Value, kind: &str) -> Option<&'a Value> {
    (e["type"] == kind).then(|| &e["payload"])
}

/// The tool calls of the log by call id: (intent event, result event).
fn calls(log: &[Value]) -> BTreeMap<String, (Option<Value>, Option<Value>)> {
    let mut out: BTreeMap<String, (Option<Value>, Option<Value>)> = BTreeMap::new();
    for e in log {
        if let Some(p) = payload(e, "tool_call") {
            let slot = out
                .entry(p["call_id"].as_str().unwrap_or("").to_owned())
                .or_default();
            if p["intent"] == true {
                slot.0 = Some(e.clone());
            } else {
                slot.1 = Some(e.clone());
            }
        }
    }
    out
}

fn changes_caused_by(log: &[Value], id: &Value) -> Vec<String> {
    log.iter()
        .filter(|e| e["type"] == "state_change" && &e["causation_id"] == id)
        .map(|e| {
            let p = &e["payload"];
            format!(
                "{} {}",
                p["op"].as_str().unwrap_or(""),
                p["path"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(dir)
                .expect("inside")
                .to_string_lossy()
                .into_owned();
            if rel.starts_with(".horde") || rel.starts_with(".claude") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_claude_code_session_is_recorded_call_by_call_and_the_policy_stops_what_it_denies() {
    let Some(bin) = claude_bin() else { return };
    let repo = Repo::new();
    repo.horde(&[
        "hooks",
        "install",
        "claude",
        "--mode",
        "enforce",
        "--role",
        "claude-test",
    ]);
    let new_rs = repo.root.join("src/new.rs");
    let model = ModelServer::start(vec![
        Reply::Tool(
            "Bash",
            json!({"command": "mkdir -p src/gen && echo one > src/gen/a.txt && mv src/gen/a.txt src/gen/b.txt",
                   "description": "make and rename"}),
        ),
        Reply::Tool(
            "Write",
            json!({"file_path": new_rs.to_string_lossy(), "content": "pub fn f() {}\n"}),
        ),
        Reply::Tool(
            "Bash",
            json!({"command": "rm -rf src", "description": "clean"}),
        ),
        Reply::Text("done"),
    ]);
    let out = repo.claude(&bin, &model, "make the files");
    assert!(out.status.success());

    // What the agent did happened; what the policy denies did not.
    assert_eq!(
        std::fs::read_to_string(repo.root.join("src/gen/b.txt")).expect("b.txt"),
        "one\n"
    );
    assert!(new_rs.exists());
    assert!(
        repo.root.join("src/lib.rs").exists(),
        "rm -rf src was denied"
    );
    // The agent (and so the model) was told why.
    let bodies = model.bodies();
    let last = bodies.last().expect("requests").to_string();
    assert!(
        last.contains("claude-test denies") && last.contains("rm *"),
        "the denial's reason reached the model: {last}"
    );

    let log = repo.log();
    let calls = calls(&log);
    let ids: Vec<&String> = calls.keys().collect();
    assert_eq!(ids.len(), 3, "three tool calls: {ids:?}");
    let (i1, r1) = &calls["toolu_1"];
    let (i2, r2) = &calls["toolu_2"];
    let (i3, r3) = &calls["toolu_3"];
    let (i1, r1, i2, r2, i3) = (
        i1.as_ref().expect("intent 1"),
        r1.as_ref().expect("result 1"),
        i2.as_ref().expect("intent 2"),
        r2.as_ref().expect("result 2"),
        i3.as_ref().expect("intent 3"),
    );
    assert!(r3.is_none(), "a denied call has no result");
    assert!(
        i3["payload"]["policy_verdict"]
            .as_str()
            .is_some_and(|v| v.contains("denies")),
        "{i3}"
    );
    assert_eq!(r1["causation_id"], i1["id"]);
    assert_eq!(r1["span_id"], i1["span_id"]);
    // Every file change is attributed to the call that made it, Bash included.
    let c1 = changes_caused_by(&log, &i1["id"]);
    assert!(c1.contains(&"create src/gen/b.txt".to_owned()), "{c1:?}");
    assert!(!c1.iter().any(|c| c.contains("new.rs")), "{c1:?}");
    assert_eq!(changes_caused_by(&log, &i2["id"]), ["create src/new.rs"]);
    // One session, one task, one trace.
    let trace = &i1["trace_id"];
    assert!(trace.is_string());
    // (File changes link to their call through causation_id; approvals through the session.)
    let session_events: Vec<&Value> = log
        .iter()
        .filter(|e| e["agent"] == "claude")
        .filter(|e| e["type"] != "state_change" && e["type"] != "approval")
        .collect();
    assert!(session_events.iter().all(|e| &e["trace_id"] == trace));
    let tasks: Vec<&str> = session_events
        .iter()
        .filter_map(|e| payload(e, "task"))
        .filter_map(|p| p["kind"].as_str())
        .collect();
    assert_eq!(tasks, ["started", "finished"]);
    let prompt = session_events
        .iter()
        .filter_map(|e| payload(e, "message"))
        .find(|m| m["to"] == "claude")
        .expect("the prompt");
    assert_eq!(prompt["text"], "make the files");

    // Restore at each tool call reproduces the tree as it was then.
    for (at, want) in [
        (r1, vec!["src/gen/b.txt", "src/lib.rs"]),
        (r2, vec!["src/gen/b.txt", "src/lib.rs", "src/new.rs"]),
    ] {
        let dir = tempfile::tempdir().expect("tmp");
        let to = dir.path().join("t");
        repo.horde(&[
            "restore",
            "--at",
            at["id"].as_str().expect("id"),
            "--to",
            to.to_str().expect("utf-8"),
        ]);
        assert_eq!(files(&to), want);
    }
    repo.horde(&["verify"]);
}

#[test]
fn when_horde_is_killed_in_the_hook_enforce_blocks_the_tool_and_audit_records_it_unchecked() {
    let Some(bin) = claude_bin() else { return };
    for mode in ["enforce", "audit"] {
        let repo = Repo::new();
        repo.horde(&[
            "hooks",
            "install",
            "claude",
            "--mode",
            mode,
            "--role",
            "claude-test",
        ]);
        // A horde that dies by SIGKILL in PreToolUse and works otherwise.
        let wrapper = repo.home.join("horde-dies");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\n[ \"$3\" = PreToolUse ] && kill -9 $$\nexec '{}' \"$@\"\n",
                binary("horde").display()
            ),
        )
        .expect("wrapper");
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let settings = repo.root.join(".claude/settings.local.json");
        let text = std::fs::read_to_string(&settings).expect("settings");
        let exe = binary("horde").canonicalize().expect("exe");
        std::fs::write(
            &settings,
            text.replace(
                exe.to_str().expect("utf-8"),
                wrapper.to_str().expect("utf-8"),
            ),
        )
        .expect("write");
        let model = ModelServer::start(vec![
            Reply::Tool("Bash", json!({"command": "echo x > src/x.txt"})),
            Reply::Text("done"),
        ]);
        let out = repo.claude(&bin, &model, "write x");
        assert!(out.status.success(), "{mode}");
        let ran = repo.root.join("src/x.txt").exists();
        let log = repo.log();
        let result = log
            .iter()
            .filter_map(|e| payload(e, "tool_call"))
            .find(|p| p["intent"] == false);
        match mode {
            "enforce" => {
                assert!(
                    !ran,
                    "enforce: the tool must not run when horde cannot answer"
                );
                assert!(result.is_none());
            }
            _ => {
                assert!(ran, "audit: the tool runs");
                let r = result.expect("audit: the call's end is recorded");
                assert!(
                    r["policy_verdict"]
                        .as_str()
                        .is_some_and(|v| v.starts_with("unchecked")),
                    "{r}"
                );
            }
        }
        repo.horde(&["verify"]);
    }
}

#[test]
fn audit_mode_records_what_enforce_would_deny_and_lets_it_run() {
    let Some(bin) = claude_bin() else { return };
    let repo = Repo::new();
    repo.horde(&["hooks", "install", "claude", "--role", "claude-test"]);
    let model = ModelServer::start(vec![
        Reply::Tool("Bash", json!({"command": "rm src/lib.rs"})),
        Reply::Text("done"),
    ]);
    assert!(repo.claude(&bin, &model, "remove it").status.success());
    assert!(!repo.root.join("src/lib.rs").exists(), "audit never blocks");
    let log = repo.log();
    let calls = calls(&log);
    let (intent, result) = &calls["toolu_1"];
    let intent = intent.as_ref().expect("intent");
    let verdict = intent["payload"]["policy_verdict"].as_str().unwrap_or("");
    assert!(verdict.starts_with("audit: deny"), "{verdict}");
    assert!(result.is_some());
    assert_eq!(
        changes_caused_by(&log, &intent["id"]),
        ["delete src/lib.rs"]
    );
    assert!(
        !log.iter().any(|e| e["type"] == "approval"),
        "audit asks nobody and denies nothing"
    );
    repo.horde(&["verify"]);
}

#[test]
fn claude_code_calls_horde_as_an_mcp_server_and_the_call_is_recorded() {
    let Some(bin) = claude_bin() else { return };
    let repo = Repo::new();
    std::fs::write(repo.root.join("src/x.rs"), "pub fn x() {}\n").expect("write");
    repo.horde(&["snapshot", "--agent", "alice", "-m", "x"]);
    // As `claude mcp add -s project horde -- horde mcp` writes it, with this build's horde.
    let config = repo.home.join("mcp.json");
    std::fs::write(
        &config,
        json!({"mcpServers": {"horde": {"type": "stdio",
            "command": binary("horde").to_string_lossy(), "args": ["mcp"], "env": {}}}})
        .to_string(),
    )
    .expect("mcp config");
    let model = ModelServer::start(vec![
        Reply::Tool("ToolSearch", json!({"query": "select:mcp__horde__log"})),
        Reply::Tool(
            "mcp__horde__log",
            json!({"agents": ["alice"], "types": ["state_change"]}),
        ),
        Reply::Text("alice created src/x.rs"),
    ]);
    let out = repo
        .cmd(&bin)
        .args(["-p", "what did alice do?", "--output-format", "json"])
        .args(["--permission-mode", "bypassPermissions"])
        .args([
            "--mcp-config",
            config.to_str().expect("utf-8"),
            "--strict-mcp-config",
        ])
        .env("ANTHROPIC_BASE_URL", model.url())
        .env("ANTHROPIC_API_KEY", "sk-ant-test")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("IS_SANDBOX", "1")
        .output()
        .expect("claude");
    eprintln!(
        "claude: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());

    // The model was offered horde's tools and got the tool's answer back.
    let bodies = model.bodies();
    // (Claude Code lists MCP tools as deferred ones, loaded through ToolSearch.)
    let offered = bodies[0].to_string();
    for t in ["mcp__horde__log", "mcp__horde__restore", "mcp__horde__diff"] {
        assert!(offered.contains(t), "{t} offered");
    }
    let answer = bodies.last().expect("requests").to_string();
    assert!(
        answer.contains("src/x.rs") && answer.contains("alice"),
        "{answer}"
    );

    // The call is in horde's log, by agent mcp, with Claude Code as the client.
    let calls: Vec<Value> = repo
        .log()
        .into_iter()
        .filter(|e| e["agent"] == "mcp")
        .collect();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let p = &calls[0]["payload"];
    assert_eq!(p["tool"], "log");
    assert_eq!(p["exit_code"], 0);
    assert!(
        p["result_summary"]
            .as_str()
            .expect("summary")
            .starts_with("1 events"),
        "{p}"
    );
    assert!(!p["session"].as_str().expect("client").is_empty());
}
