//! The real Claude Code (npm `@anthropic-ai/claude-code`, pinned by `cargo xtask test`, found
//! through `HORDE_CLAUDE_BIN`) recorded and gated by `horde hooks install claude`. Its model is
//! `horde_e2e::anthropic`'s server, which speaks the Anthropic Messages API (streamed
//! server-sent events) with scripted replies: tool calls, then text.
//!
//! Without `HORDE_CLAUDE_BIN` the tests say they are skipped, and fail under CI.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use horde_e2e::agents::{AgentRepo, agent_bin, changes_caused_by, payload};
use horde_e2e::anthropic::{ModelServer, Reply, Sent};
use horde_e2e::binary;
use serde_json::{Value, json};

fn claude_bin() -> Option<PathBuf> {
    agent_bin("HORDE_CLAUDE_BIN", "Claude Code")
}

/// A repository for the agent.
struct Repo(AgentRepo);

impl std::ops::Deref for Repo {
    type Target = AgentRepo;
    fn deref(&self) -> &AgentRepo {
        &self.0
    }
}

const ROLE: &str = "role: claude-test
tier: T1
files:
  read: ['**']
  write: ['src/**']
  deny: ['.git/**', '.horde/**']
commands:
  allow: ['mkdir *', 'echo *', 'mv *', 'cat *', 'ls *']
  ask: ['touch *']
  deny: ['rm *']
";

impl Repo {
    fn new() -> Self {
        Self(AgentRepo::new("claude-test", ROLE))
    }

    /// Runs Claude Code headless on `prompt` against `model`.
    fn claude(&self, bin: &Path, model: &ModelServer, prompt: &str) -> Output {
        self.claude_via(bin, &[], model, prompt)
    }

    /// [`Repo::claude`] through `horde run HORDE_ARGS --` (none: Claude Code alone).
    fn claude_via(
        &self,
        bin: &Path,
        horde_args: &[&str],
        model: &ModelServer,
        prompt: &str,
    ) -> Output {
        let out = self
            .claude_cmd(bin, horde_args, model, prompt)
            .output()
            .expect("claude");
        eprintln!(
            "claude: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The command [`Repo::claude_via`] runs: Claude Code headless and offline against
    /// `model`, through `horde run HORDE_ARGS --` unless they are empty.
    fn claude_cmd(
        &self,
        bin: &Path,
        horde_args: &[&str],
        model: &ModelServer,
        prompt: &str,
    ) -> Command {
        let mut c = if horde_args.is_empty() {
            self.cmd(bin)
        } else {
            let mut c = self.cmd(&binary("horde"));
            c.arg("run").args(horde_args).arg("--").arg(bin);
            c
        };
        c.args(["-p", prompt, "--output-format", "json"])
            .args(["--permission-mode", "bypassPermissions"])
            .env("ANTHROPIC_BASE_URL", model.url())
            .env("ANTHROPIC_API_KEY", "sk-ant-test")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            // bypassPermissions is refused as root unless it says it is in a sandbox.
            .env("IS_SANDBOX", "1");
        c
    }
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
        Reply::tool(
            "Bash",
            json!({"command": "mkdir -p src/gen && echo one > src/gen/a.txt && mv src/gen/a.txt src/gen/b.txt",
                   "description": "make and rename"}),
        ),
        Reply::tool(
            "Write",
            json!({"file_path": new_rs.to_string_lossy(), "content": "pub fn f() {}\n"}),
        ),
        Reply::tool(
            "Bash",
            json!({"command": "rm -rf src", "description": "clean"}),
        ),
        Reply::text("done"),
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

    // Every model call of the conversation is one decision with exactly the tokens the server
    // sent for it.
    let sent = model.sent();
    eprintln!("the server sent: {sent:?}");
    let decisions: Vec<&Value> = log.iter().filter_map(|e| payload(e, "decision")).collect();
    let recorded = tokens_by_call(&decisions);
    assert_eq!(recorded.len(), decisions.len(), "one decision per call");
    // Claude Code 2.1.332 in `-p` mode without nonessential traffic makes no side requests
    // (titles, summaries): every request is the conversation's, and its transcript has each.
    assert!(sent.iter().all(|s| s.main), "{sent:?}");
    let main = by_id(&sent);
    assert_eq!(main.len(), 4, "{sent:?}");
    assert_eq!(recorded, main, "sent: {sent:?}");
    let sum = |m: &BTreeMap<String, [u64; 4]>, i: usize| m.values().map(|v| v[i]).sum::<u64>();
    for i in 0..4 {
        assert_eq!(sum(&recorded, i), sum(&main, i));
    }
    for d in &decisions {
        assert_eq!(d["session"], prompt_session(&log));
        assert_eq!(d["price"], "default: claude-opus", "{d}");
        let n = |k: &str| d[k].as_u64().expect("a count");
        // Dollars per million tokens are micro-dollars per token: 5, 25, 0.5, 6.25.
        let want = (n("tokens_in") as f64 * 5.0
            + n("tokens_out") as f64 * 25.0
            + n("cache_read_tokens") as f64 * 0.5
            + n("cache_write_tokens") as f64 * 6.25)
            .round() as u64;
        assert_eq!(n("cost_micro_usd"), want, "{d}");
    }
    // The first call's prompt is the user's; its response names the tool it called.
    let first = log
        .iter()
        .find(|e| e["type"] == "decision" && e["payload"]["call_id"] == "msg_001")
        .expect("the first call");
    assert!(first["payload"]["prompt_blob"].is_string());
    let out = repo.horde(&["show", first["id"].as_str().expect("id")]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("make the files") && shown.contains("[tool_use Bash toolu_1]"),
        "{shown}"
    );
    let text = String::from_utf8_lossy(&repo.horde(&["log"]).stdout).into_owned();
    assert!(
        text.contains("model call claude-") && text.contains(" out, $"),
        "{text}"
    );
    repo.horde(&["verify"]);
}

/// Decisions' tokens by call id: in, out, cache read, cache write.
fn tokens_by_call(decisions: &[&Value]) -> BTreeMap<String, [u64; 4]> {
    decisions
        .iter()
        .map(|d| {
            let n = |k: &str| d[k].as_u64().expect("a count");
            (
                d["call_id"].as_str().expect("call id").to_owned(),
                [
                    n("tokens_in"),
                    n("tokens_out"),
                    n("cache_read_tokens"),
                    n("cache_write_tokens"),
                ],
            )
        })
        .collect()
}

/// What the server sent, by message id, in the same order.
fn by_id(sent: &[Sent]) -> BTreeMap<String, [u64; 4]> {
    sent.iter()
        .map(|s| {
            (
                s.id.clone(),
                [s.input, s.output, s.cache_read, s.cache_write],
            )
        })
        .collect()
}

#[test]
fn a_subagents_model_calls_are_recorded_from_its_own_transcript() {
    let Some(bin) = claude_bin() else { return };
    let repo = Repo::new();
    repo.horde(&["hooks", "install", "claude", "--role", "claude-test"]);
    // The first request starts a subagent; every later one (the subagent's, the main
    // conversation's, the one after the subagent's notification) answers with text.
    let model = ModelServer::start(vec![Reply::tool(
        "Agent",
        json!({"description": "look", "prompt": "list the files",
               "subagent_type": "general-purpose"}),
    )]);
    assert!(repo.claude(&bin, &model, "ask a helper").status.success());
    let sent = model.sent();
    eprintln!("the server sent: {sent:?}");
    let log = repo.log();
    let decisions: Vec<&Value> = log.iter().filter_map(|e| payload(e, "decision")).collect();
    assert_eq!(tokens_by_call(&decisions), by_id(&sent));
    let sub: Vec<&&Value> = decisions.iter().filter(|d| d["subagent"] != "").collect();
    assert_eq!(sub.len(), 1, "one call made by the subagent: {decisions:?}");
    // Read again (another Stop of the same session): nothing is counted twice.
    let transcript = log
        .iter()
        .filter_map(|e| payload(e, "task"))
        .find_map(|t| {
            let d: Value = serde_json::from_str(t["detail"].as_str()?).ok()?;
            Some((
                d["session"].as_str()?.to_owned(),
                d["transcript"].as_str()?.to_owned(),
            ))
        })
        .expect("the session's transcript");
    let stop = |path: &Path| {
        let payload = json!({"session_id": transcript.0, "transcript_path": path,
            "cwd": repo.root, "hook_event_name": "Stop"});
        let mut hook = repo
            .cmd(&binary("horde"))
            .args(["hook", "claude", "Stop"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("horde hook");
        hook.stdin
            .take()
            .expect("stdin")
            .write_all(payload.to_string().as_bytes())
            .expect("write");
        let out = hook.wait_with_output().expect("hook");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // The same transcript again, and a copy read from its start: nothing is counted twice.
    let original = PathBuf::from(&transcript.1);
    stop(&original);
    let copy = repo.home.join("copy.jsonl");
    std::fs::copy(&original, &copy).expect("copy");
    stop(&copy);
    // A transcript gone: said, and the agent is not failed.
    let err = stop(&repo.home.join("gone.jsonl"));
    assert!(err.contains("missing"), "{err}");
    let n = repo
        .log()
        .iter()
        .filter(|e| e["type"] == "decision")
        .count();
    assert_eq!(n, decisions.len());
    repo.horde(&["verify"]);
}

/// The session id of the log's agent events.
fn prompt_session(log: &[Value]) -> Value {
    log.iter()
        .filter_map(|e| payload(e, "tool_call"))
        .map(|p| p["session"].clone())
        .next()
        .expect("a tool call")
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
        repo.horde_dies_on("PreToolUse", ".claude/settings.local.json");
        let model = ModelServer::start(vec![
            Reply::tool("Bash", json!({"command": "echo x > src/x.txt"})),
            Reply::text("done"),
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
        Reply::tool("Bash", json!({"command": "rm src/lib.rs"})),
        Reply::text("done"),
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
fn horde_run_passes_its_hooks_to_claude_code_for_one_run() {
    let Some(bin) = claude_bin() else { return };
    let repo = Repo::new();
    let model = ModelServer::start(vec![
        Reply::tool(
            "Bash",
            json!({"command": "mkdir -p src/run && echo r > src/run/r.txt", "description": "make"}),
        ),
        Reply::tool(
            "Bash",
            json!({"command": "rm src/lib.rs", "description": "clean"}),
        ),
        Reply::text("done"),
    ]);
    // No hooks installed: `horde run` passes them for this run only.
    let out = repo.claude_via(
        &bin,
        &["--hooks", "enforce", "--hook-role", "claude-test"],
        &model,
        "make a file",
    );
    assert!(out.status.success());
    assert!(!repo.root.join(".claude").exists(), "nothing was installed");
    assert!(repo.root.join("src/run/r.txt").is_file());
    assert!(repo.root.join("src/lib.rs").is_file(), "the denied rm ran");
    let log = repo.log();
    let calls = calls(&log);
    let (i1, r1) = &calls["toolu_1"];
    let i1 = i1.as_ref().expect("the hooks recorded the first call");
    assert!(r1.is_some());
    // The changes are the tool call's, not the run's.
    assert_eq!(
        changes_caused_by(&log, &i1["id"]),
        ["create src/run", "create src/run/r.txt"]
    );
    let (i2, _) = &calls["toolu_2"];
    assert_eq!(
        i2.as_ref().expect("intent")["payload"]["result_summary"],
        "denied, not run"
    );
    // The run names the session the hooks recorded.
    let session = i1["payload"]["session"].as_str().expect("session");
    let run = log
        .iter()
        .filter_map(|e| payload(e, "tool_call"))
        .find(|p| p["tool"] == "exec")
        .expect("the run's own ToolCall");
    assert_eq!(run["session"], session);
    repo.horde(&["verify"]);
}

#[test]
fn tool_calls_in_one_message_each_get_their_own_changes() {
    let Some(bin) = claude_bin() else { return };
    let repo = Repo::new();
    repo.horde(&["hooks", "install", "claude", "--role", "claude-test"]);
    let file = |name: &str| repo.root.join(name).to_string_lossy().into_owned();
    let model = ModelServer::start(vec![
        Reply::tools(vec![
            (
                "Write",
                json!({"file_path": file("src/a.rs"), "content": "// a\n"}),
            ),
            (
                "Write",
                json!({"file_path": file("src/b.rs"), "content": "// b\n"}),
            ),
            (
                "Bash",
                json!({"command": "mkdir -p src/c && echo c > src/c/c.txt", "description": "c"}),
            ),
        ]),
        Reply::text("done"),
    ]);
    assert!(repo.claude(&bin, &model, "three at once").status.success());
    let log = repo.log();
    let calls = calls(&log);
    let changes = |id: &str| {
        let (intent, result) = &calls[id];
        assert!(result.is_some(), "{id} ended");
        changes_caused_by(&log, &intent.as_ref().expect("intent")["id"])
    };
    assert_eq!(changes("toolu_1_0"), ["create src/a.rs"]);
    assert_eq!(changes("toolu_1_1"), ["create src/b.rs"]);
    assert_eq!(changes("toolu_1_2"), ["create src/c", "create src/c/c.txt"]);
    repo.horde(&["verify"]);
}

/// Kills a child process when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_person_approves_claude_codes_call_from_another_device_through_the_cloud() {
    let Some(bin) = claude_bin() else { return };
    let cloud = horde_e2e::Cloud::start();
    let acme = cloud.tenant("acme");
    let alice = acme.user_key("alice@example.com", "member");
    let repo = Repo::new();
    repo.horde(&[
        "remote",
        "add",
        "origin",
        &cloud.url,
        "--key",
        acme.api.key.as_deref().expect("key"),
    ]);
    repo.horde(&["sync"]);
    let status: Value =
        serde_json::from_slice(&repo.horde(&["status", "--json"]).stdout).expect("json");
    let project = status["project_id"].as_str().expect("project").to_owned();
    // The policy asks for `touch *`: the hook waits up to a minute for a person.
    repo.horde(&[
        "hooks",
        "install",
        "claude",
        "--mode",
        "enforce",
        "--role",
        "claude-test",
        "--wait",
        "60",
    ]);
    let _watch = Running(
        repo.cmd(&binary("horde"))
            .args(["sync", "--watch", "--interval", "3600"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sync --watch"),
    );
    let model = ModelServer::start(vec![
        Reply::tool(
            "Bash",
            json!({"command": "touch src/approved.txt", "description": "touch"}),
        ),
        Reply::text("done"),
    ]);
    let mut claude = repo.claude_cmd(&bin, &[], &model, "touch it");
    let agent = std::thread::spawn(move || claude.output().expect("claude"));
    // Another device: the request reaches the cloud; alice grants it there.
    let started = std::time::Instant::now();
    let id = loop {
        let r = alice.get(&format!("/v1/projects/{project}/approvals?state=pending"));
        assert_eq!(r.status, 200, "{}", r.body);
        let found = r.json["approvals"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["subject"] == "touch src/approved.txt")
            .and_then(|a| a["id"].as_str().map(str::to_owned));
        if let Some(id) = found {
            break id;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the request never reached the cloud"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        !repo.root.join("src/approved.txt").exists(),
        "the call waits for a person"
    );
    let r = alice.post(
        &format!("/v1/projects/{project}/approvals/{id}"),
        &json!({"decision": "grant", "reason": "fine"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let out = agent.join().expect("agent thread");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        repo.root.join("src/approved.txt").exists(),
        "approved: the call ran"
    );
    let log = repo.log();
    let calls = calls(&log);
    let (intent, result) = &calls["toolu_1"];
    let verdict = intent.as_ref().expect("intent")["payload"]["policy_verdict"]
        .as_str()
        .expect("verdict")
        .to_owned();
    assert!(verdict.contains("approved by"), "{verdict}");
    assert!(result.is_some());
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
        Reply::tool("ToolSearch", json!({"query": "select:mcp__horde__log"})),
        Reply::tool(
            "mcp__horde__log",
            json!({"agents": ["alice"], "types": ["state_change"]}),
        ),
        Reply::text("alice created src/x.rs"),
    ]);
    let out = repo
        .claude_cmd(&bin, &[], &model, "what did alice do?")
        .args([
            "--mcp-config",
            config.to_str().expect("utf-8"),
            "--strict-mcp-config",
        ])
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

#[test]
fn claude_codes_tool_calls_reach_the_daemon_over_http_and_enforce_blocks_them_when_it_cannot() {
    let Some(bin) = claude_bin() else { return };
    let repo = Repo::new();
    let install = [
        "hooks",
        "install",
        "claude",
        "--mode",
        "enforce",
        "--role",
        "claude-test",
        "--transport",
        "http",
    ];
    let out = repo.horde(&install);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("127.0.0.1:"), "{said}");
    // Installing again changes nothing: the same port and token.
    let settings = repo.root.join(".claude/settings.local.json");
    let before = std::fs::read(&settings).expect("settings");
    repo.horde(&install);
    assert_eq!(std::fs::read(&settings).expect("settings"), before);
    let doc: Value = serde_json::from_slice(&before).expect("json");
    assert_eq!(doc["hooks"]["PreToolUse"][0]["hooks"][0]["type"], "http");
    assert_eq!(
        doc["hooks"]["SessionStart"][0]["hooks"][0]["type"],
        "command"
    );
    // A `horde hook … PreToolUse` process would die: none runs, the daemon answers instead.
    repo.horde_dies_on("PreToolUse", ".claude/settings.local.json");

    let model = ModelServer::start(vec![
        Reply::tool("Bash", json!({"command": "echo x > src/x.txt"})),
        Reply::tool("Bash", json!({"command": "rm src/lib.rs"})),
        Reply::text("done"),
    ]);
    assert!(repo.claude(&bin, &model, "work").status.success());
    assert!(repo.root.join("src/x.txt").exists(), "the allowed call ran");
    assert!(
        repo.root.join("src/lib.rs").exists(),
        "the denied one did not"
    );
    let log = repo.log();
    let calls = calls(&log);
    let (intent, result) = &calls["toolu_1"];
    let intent = intent.as_ref().expect("the first call's intent");
    assert!(result.is_some(), "and its end");
    assert_eq!(changes_caused_by(&log, &intent["id"]), ["create src/x.txt"]);
    let (denied, _) = &calls["toolu_2"];
    let denied = denied.as_ref().expect("the denied call's intent");
    assert_eq!(denied["payload"]["result_summary"], "denied, not run");
    repo.horde(&["verify"]);

    // The port taken by another program: the daemon cannot listen, so no tool runs.
    repo.horde(&["daemon", "stop"]);
    let ep: Value = serde_json::from_slice(
        &std::fs::read(repo.root.join(".horde/hooks-http.json")).expect("endpoint"),
    )
    .expect("json");
    let port = ep["port"].as_u64().expect("port") as u16;
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
    let model = ModelServer::start(vec![
        Reply::tool("Bash", json!({"command": "echo y > src/y.txt"})),
        Reply::text("done"),
    ]);
    let out = repo.claude(&bin, &model, "work again");
    assert!(out.status.success());
    assert!(
        !repo.root.join("src/y.txt").exists(),
        "enforce: a tool call nobody can check does not run"
    );
    let daemon_log =
        std::fs::read_to_string(repo.root.join(".horde/daemon.log")).unwrap_or_default();
    assert!(
        daemon_log.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{daemon_log}"
    );

    // Uninstalling removes the endpoint with the hooks.
    repo.horde(&["hooks", "uninstall", "claude"]);
    assert!(!repo.root.join(".horde/hooks-http.json").exists());
    let doc: Value =
        serde_json::from_slice(&std::fs::read(&settings).expect("settings")).expect("json");
    assert!(doc.get("hooks").is_none(), "{doc}");
}
