//! The real Gemini CLI (npm `@google/gemini-cli`, pinned by `cargo xtask test`, found through
//! `HORDE_GEMINI_BIN`) recorded and gated by `horde hooks install gemini`. Its model is a
//! server written here that speaks the Gemini API (`streamGenerateContent`, server-sent
//! events) with scripted replies chosen by how many tool results the request carries.
//!
//! Gemini CLI gives tool calls no id in its hooks (horde knows a call by its tool and input),
//! runs hooks through `bash -c` (a horde killed mid-hook exits non-zero: the tool is denied),
//! and lets a tool run when a hook times out or exits 1.
//!
//! Without `HORDE_GEMINI_BIN` the tests say they are skipped, and fail under CI.

use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use horde_e2e::agents::{AgentRepo, agent_bin, changes_caused_by, payload, serve_http, tool_calls};
use serde_json::{Value, json};

/// The model's replies, by turn: a function call or the final text.
#[derive(Clone)]
enum Reply {
    Call(&'static str, Value),
    Text(&'static str),
}

/// Usage the server reports for every reply.
const PROMPT_TOKENS: u64 = 2001;
const OUTPUT_TOKENS: u64 = 31;

struct ModelServer {
    port: u16,
    requests: Arc<Mutex<Vec<Value>>>,
}

impl ModelServer {
    fn start(script: Vec<Reply>) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let reqs = requests.clone();
        let port = serve_http(Arc::new(move |path: &str, req: &Value| {
            answer(path, req, &reqs, &script)
        }));
        Self { port, requests }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn bodies(&self) -> Vec<Value> {
        self.requests.lock().expect("lock").clone()
    }
}

/// How many tool results the conversation holds: the turn to answer.
fn turn(req: &Value) -> usize {
    req["contents"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["parts"].as_array().into_iter().flatten())
        .filter(|p| p.get("functionResponse").is_some())
        .count()
}

fn answer(
    path: &str,
    req: &Value,
    reqs: &Mutex<Vec<Value>>,
    script: &[Reply],
) -> (u16, &'static str, String) {
    let usage = json!({"promptTokenCount": PROMPT_TOKENS, "candidatesTokenCount": OUTPUT_TOKENS,
        "totalTokenCount": PROMPT_TOKENS + OUTPUT_TOKENS});
    if path.contains(":streamGenerateContent") {
        reqs.lock().expect("lock").push(req.clone());
        let part = match script
            .get(turn(req))
            .cloned()
            .unwrap_or(Reply::Text("done"))
        {
            Reply::Call(name, args) => json!({"functionCall": {"name": name, "args": args}}),
            Reply::Text(t) => json!({"text": t}),
        };
        let chunk = json!({"candidates": [{"content": {"role": "model", "parts": [part]},
            "finishReason": "STOP", "index": 0}], "usageMetadata": usage,
            "modelVersion": "gemini-2.5-pro"});
        (200, "text/event-stream", format!("data: {chunk}\r\n\r\n"))
    } else if path.contains(":countTokens") {
        (
            200,
            "application/json",
            json!({"totalTokens": 10}).to_string(),
        )
    } else {
        // Side requests (a router, a next-speaker check): a short JSON text.
        let text = json!({"reasoning": "done", "next_speaker": "user"}).to_string();
        let v = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
            "finishReason": "STOP", "index": 0}], "usageMetadata": usage});
        (200, "application/json", v.to_string())
    }
}

fn gemini_bin() -> Option<std::path::PathBuf> {
    agent_bin("HORDE_GEMINI_BIN", "Gemini CLI")
}

const ROLE: &str = "role: gemini-test
tier: T1
files:
  read: ['**']
  write: ['src/**']
  deny: ['.git/**', '.horde/**']
commands:
  allow: ['mkdir *', 'echo *', 'mv *', 'cat *', 'ls *']
  deny: ['rm *']
";

/// A repository for the agent, with Gemini's user settings (API key auth, no telemetry).
struct Repo(AgentRepo);

impl std::ops::Deref for Repo {
    type Target = AgentRepo;
    fn deref(&self) -> &AgentRepo {
        &self.0
    }
}

impl Repo {
    fn new() -> Self {
        let repo = AgentRepo::new("gemini-test", ROLE);
        let settings = json!({
            "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": false}},
            "privacy": {"usageStatisticsEnabled": false},
            "telemetry": {"enabled": false},
            "general": {"enableAutoUpdate": false, "enableAutoUpdateNotification": false},
        });
        std::fs::create_dir_all(repo.home.join(".gemini")).expect("mkdir");
        std::fs::write(
            repo.home.join(".gemini/settings.json"),
            settings.to_string(),
        )
        .expect("write");
        Self(repo)
    }

    /// Runs Gemini CLI headless on `prompt` against `model`.
    fn gemini(&self, bin: &Path, model: &ModelServer, prompt: &str) -> Output {
        let out = self
            .cmd(bin)
            .args(["-m", "gemini-2.5-pro", "--yolo", "-p", prompt])
            .env("GEMINI_API_KEY", "test-key")
            .env("GOOGLE_GEMINI_BASE_URL", model.url())
            .env("GEMINI_CLI_NO_RELAUNCH", "true")
            .env("GEMINI_CLI_TRUST_WORKSPACE", "true")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("gemini");
        eprintln!(
            "gemini: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

#[test]
fn a_gemini_cli_session_is_recorded_call_by_call_and_the_policy_stops_what_it_denies() {
    let Some(bin) = gemini_bin() else { return };
    let repo = Repo::new();
    repo.horde(&[
        "hooks",
        "install",
        "gemini",
        "--mode",
        "enforce",
        "--role",
        "gemini-test",
    ]);
    let new_rs = repo.root.join("src/new.rs");
    let model = ModelServer::start(vec![
        Reply::Call(
            "run_shell_command",
            json!({"command": "mkdir -p src/gen && echo a > src/gen/a.txt && mv src/gen/a.txt src/gen/b.txt",
                   "description": "make and rename a file"}),
        ),
        Reply::Call(
            "write_file",
            json!({"file_path": new_rs.to_string_lossy(), "content": "pub fn f() {}\n"}),
        ),
        Reply::Call(
            "run_shell_command",
            json!({"command": "rm src/lib.rs", "description": "remove a file"}),
        ),
        Reply::Text("done"),
    ]);
    let out = repo.gemini(&bin, &model, "do the task");
    assert!(out.status.success(), "gemini failed");

    // The tree: the shell and write_file calls ran, the denied rm did not.
    assert!(repo.root.join("src/gen/b.txt").is_file());
    assert!(new_rs.is_file());
    assert!(repo.root.join("src/lib.rs").is_file(), "the denied rm ran");
    // The model saw why.
    let bodies = model.bodies();
    let last = bodies.last().expect("requests").to_string();
    assert!(
        last.contains("Tool execution blocked") && last.contains("horde"),
        "the model's last request: {last}"
    );

    let log = repo.log();
    let c = tool_calls(&log);
    let tools: Vec<&str> = c.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(
        tools,
        ["run_shell_command", "write_file", "run_shell_command"],
        "{c:#?}"
    );
    let (_, i1, r1) = &c[0];
    assert!(r1.is_some(), "the first call's result is recorded");
    assert_eq!(
        changes_caused_by(&log, &i1["id"]),
        ["create src/gen", "create src/gen/b.txt"]
    );
    assert_eq!(
        changes_caused_by(&log, &c[1].1["id"]),
        ["create src/new.rs"]
    );
    let denied = &c[2].1["payload"];
    assert_eq!(denied["result_summary"], "denied, not run", "{denied:#}");
    assert!(changes_caused_by(&log, &c[2].1["id"]).is_empty());
    // The prompt, the end of the turn, the session's start and end.
    let messages: Vec<&Value> = log.iter().filter_map(|e| payload(e, "message")).collect();
    assert!(messages.iter().any(|m| m["text"] == "do the task"));
    let tasks: Vec<&str> = log
        .iter()
        .filter_map(|e| payload(e, "task"))
        .filter_map(|t| t["kind"].as_str())
        .collect();
    assert!(
        tasks.contains(&"started") && tasks.contains(&"finished"),
        "{tasks:?}"
    );

    // Restore right at the write_file call's intent: the shell call's files are there, its
    // own file is not yet.
    let to = repo.root.parent().expect("tmp").join("at-write");
    repo.horde(&[
        "restore",
        "--at",
        c[1].1["id"].as_str().expect("id"),
        "--to",
        to.to_str().expect("utf-8"),
    ]);
    assert!(to.join("src/gen/b.txt").is_file() && !to.join("src/new.rs").exists());
    repo.horde(&["verify"]);
}

#[test]
fn when_horde_is_killed_in_the_hook_enforce_blocks_the_tool_and_audit_records_it_unchecked() {
    let Some(bin) = gemini_bin() else { return };
    for mode in ["enforce", "audit"] {
        let repo = Repo::new();
        repo.horde(&[
            "hooks",
            "install",
            "gemini",
            "--mode",
            mode,
            "--role",
            "gemini-test",
        ]);
        repo.horde_dies_on("BeforeTool", ".gemini/settings.json");
        let model = ModelServer::start(vec![
            Reply::Call(
                "run_shell_command",
                json!({"command": "echo x > src/x.txt", "description": "write x"}),
            ),
            Reply::Text("done"),
        ]);
        let out = repo.gemini(&bin, &model, "write x");
        assert!(out.status.success(), "{mode}");
        let ran = repo.root.join("src/x.txt").exists();
        let log = repo.log();
        let result = log
            .iter()
            .filter_map(|e| payload(e, "tool_call"))
            .find(|p| p["intent"] == false);
        if mode == "enforce" {
            assert!(
                !ran,
                "enforce: the tool must not run when horde cannot answer"
            );
            assert!(result.is_none());
        } else {
            assert!(ran, "audit: the tool runs");
            let r = result.expect("audit: the call's end is recorded");
            assert!(
                r["policy_verdict"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("unchecked")),
                "{r}"
            );
        }
        repo.horde(&["verify"]);
    }
}
