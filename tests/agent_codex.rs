//! The real OpenAI Codex CLI (npm `@openai/codex`, pinned by `cargo xtask test`, found through
//! `HORDE_CODEX_BIN`) recorded and gated by `horde hooks install codex`, run offline with
//! `codex exec`. Its model is a server written here that speaks the OpenAI Responses API
//! (`POST /v1/responses`, streamed server-sent events) with scripted replies: shell commands
//! (`exec_command`), an `apply_patch` edit, then text.
//!
//! Codex runs a repository's hooks only in a trusted project and once each hook is trusted;
//! these tests trust the project in `config.toml` and pass `--dangerously-bypass-hook-trust`.
//!
//! Without `HORDE_CODEX_BIN` the tests say they are skipped, and fail under CI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use horde_e2e::agents::{AgentRepo, agent_bin, changes_caused_by, payload, serve_http};
use serde_json::{Value, json};

/// One reply of the scripted model.
#[derive(Clone)]
enum Reply {
    /// A shell command through Codex's `exec_command` function tool.
    Shell(&'static str),
    /// An `apply_patch` edit (a custom, freeform tool for the catalogue's models).
    Patch(&'static str),
    Text(&'static str),
}

/// A Responses API server. A request's step is the number of tool results in its input (so a
/// retried request gets the same reply); every request body is kept.
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

    fn bodies(&self) -> Vec<Value> {
        self.requests.lock().expect("lock").clone()
    }
}

/// The tool results (`function_call_output`, `custom_tool_call_output`) a request carries.
fn tool_outputs(req: &Value) -> Vec<&Value> {
    req["input"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| {
            matches!(
                i["type"].as_str(),
                Some("function_call_output" | "custom_tool_call_output")
            )
        })
        .collect()
}

/// Answers one request of the agent.
fn answer(
    path: &str,
    req: &Value,
    reqs: &Mutex<Vec<Value>>,
    script: &[Reply],
) -> (u16, &'static str, String) {
    if path.ends_with("/responses") && req.is_object() {
        let n = {
            let mut all = reqs.lock().expect("lock");
            all.push(req.clone());
            all.len()
        };
        let step = tool_outputs(req).len();
        let reply = script.get(step).cloned().unwrap_or(Reply::Text("done"));
        (200, "text/event-stream", sse(&reply, step, n))
    } else {
        (
            404,
            "application/json",
            json!({"error": {"message": "not here"}}).to_string(),
        )
    }
}

/// The streamed events of one response: created, the output item added and done, completed
/// with usage.
fn sse(reply: &Reply, step: usize, n: usize) -> String {
    let id = format!("resp_{n}");
    let call_id = format!("call_{step}");
    let (added, done) = match reply {
        Reply::Shell(cmd) => {
            let item = |args: &str| {
                json!({"type": "function_call", "id": format!("fc_{n}"), "name": "exec_command",
                       "call_id": call_id, "arguments": args})
            };
            (item(""), item(&json!({ "cmd": cmd }).to_string()))
        }
        Reply::Patch(patch) => {
            let item = |input: &str| {
                json!({"type": "custom_tool_call", "id": format!("ctc_{n}"), "name": "apply_patch",
                       "call_id": call_id, "input": input})
            };
            (item(""), item(patch))
        }
        Reply::Text(t) => {
            let item = |content: Value| {
                json!({"type": "message", "id": format!("msg_{n}"), "role": "assistant",
                       "content": content})
            };
            (
                item(json!([])),
                item(json!([{"type": "output_text", "text": t, "annotations": []}])),
            )
        }
    };
    let events = [
        json!({"type": "response.created", "response": {"id": id}}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": added}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": done}),
        json!({"type": "response.completed", "response": {"id": id, "usage": {
            "input_tokens": 1000, "input_tokens_details": {"cached_tokens": 100},
            "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 5},
            "total_tokens": 1020}}}),
    ];
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")))
        .collect()
}

fn codex_bin() -> Option<PathBuf> {
    agent_bin("HORDE_CODEX_BIN", "Codex")
}

/// The role the tests decide under: the default `builder` (its denials unchanged), but `mv` is
/// allowed so that the agent can rename files through the shell.
fn role() -> String {
    let builder = include_str!("../crates/horde-policy/defaults/builder.yaml");
    let role = builder
        .replace("role: builder", "role: codex-test")
        .replace("    - mv *\n", "")
        .replace("    - mkdir *\n", "    - mkdir *\n    - mv *\n");
    assert!(role.contains("role: codex-test") && role.matches("- mv *").count() == 1);
    role
}

/// A repository for the agent, with its own Codex home.
struct Repo(AgentRepo);

impl std::ops::Deref for Repo {
    type Target = AgentRepo;
    fn deref(&self) -> &AgentRepo {
        &self.0
    }
}

impl Repo {
    fn new() -> Self {
        let repo = AgentRepo::new("codex-test", &role());
        std::fs::create_dir_all(repo.home.join(".codex")).expect("mkdir");
        Self(repo)
    }

    /// `program` with the agent's environment: its own Codex home, no real OpenAI settings.
    fn cmd(&self, program: &Path) -> Command {
        let mut c = self.0.cmd(program);
        c.env("CODEX_HOME", self.home.join(".codex"))
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL");
        c
    }

    fn install(&self, mode: &str) {
        let out = self.horde(&[
            "hooks",
            "install",
            "codex",
            "--mode",
            mode,
            "--role",
            "codex-test",
        ]);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains("trust"),
            "install explains hook trust: {said}"
        );
    }

    /// Codex's configuration: the scripted model as a Responses API provider, no approvals and
    /// no sandbox of its own, and this repository a trusted project (Codex loads a project's
    /// `.codex/hooks.json` only then).
    fn configure_codex(&self, model: &ModelServer) {
        let config = format!(
            "model_provider = \"horde-test\"\n\
             approval_policy = \"never\"\n\
             sandbox_mode = \"danger-full-access\"\n\
             \n\
             [model_providers.horde-test]\n\
             name = \"horde-test\"\n\
             base_url = \"http://127.0.0.1:{}/v1\"\n\
             wire_api = \"responses\"\n\
             env_key = \"HORDE_TEST_OPENAI_KEY\"\n\
             \n\
             [projects.{}]\n\
             trust_level = \"trusted\"\n",
            model.port,
            json!(self.root.to_str().expect("utf-8")),
        );
        std::fs::write(self.home.join(".codex/config.toml"), config).expect("config.toml");
    }

    /// Runs `codex exec` on `prompt` against `model`, offline.
    fn codex(&self, bin: &Path, model: &ModelServer, prompt: &str, trust: bool) -> Output {
        self.configure_codex(model);
        let mut c = self.cmd(bin);
        c.args([
            "exec",
            "--skip-git-repo-check",
            "--json",
            "--color",
            "never",
        ])
        // A model of Codex's catalogue: with an unknown one it offers no apply_patch.
        .args(["-m", "gpt-5.5"])
        // Nothing but the scripted model over the network.
        .args(["--disable", "plugins", "--disable", "apps"])
        .args([
            "--disable",
            "remote_plugin",
            "-c",
            "analytics.enabled=false",
        ]);
        if trust {
            c.arg("--dangerously-bypass-hook-trust");
        }
        let out = c
            .arg(prompt)
            .env("HORDE_TEST_OPENAI_KEY", "sk-test")
            .stdin(Stdio::null())
            .output()
            .expect("codex");
        eprintln!(
            "codex: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
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

fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(dir)
                .expect("inside")
                .to_string_lossy()
                .into_owned();
            if rel.starts_with(".horde") || rel.starts_with(".codex") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(rel, std::fs::read_to_string(&p).expect("utf-8 file"));
            }
        }
    }
    out
}

fn tree_of(files: &[(&str, &str)]) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(p, c)| ((*p).to_owned(), (*c).to_owned()))
        .collect()
}

/// The output the model was given for `call_id`, from the last request that carries it.
fn output_for(bodies: &[Value], call_id: &str) -> String {
    bodies
        .iter()
        .rev()
        .flat_map(tool_outputs)
        .find(|o| o["call_id"] == call_id)
        .map(|o| match &o["output"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_else(|| panic!("no output for {call_id} reached the model"))
}

const PATCH: &str = "*** Begin Patch
*** Update File: src/lib.rs
@@
-pub mod x;
+pub mod y;
*** Add File: src/new.rs
+pub fn f() {}
*** End Patch
";

#[test]
fn a_codex_session_is_recorded_call_by_call_and_the_policy_stops_what_it_denies() {
    let Some(bin) = codex_bin() else { return };
    let repo = Repo::new();
    repo.install("enforce");
    let model = ModelServer::start(vec![
        Reply::Shell(
            "mkdir -p src/gen && echo one > src/gen/a.txt && mv src/gen/a.txt src/gen/b.txt",
        ),
        Reply::Patch(PATCH),
        // builder denies `rm -r *`.
        Reply::Shell("echo ran > src/denied.txt && rm -r src/gen"),
        // builder asks before `curl *`: Codex cannot ask, so horde denies and says how to
        // approve.
        Reply::Shell("echo ran > src/asked.txt && curl -s http://127.0.0.1:9/"),
        Reply::Text("done"),
    ]);
    let out = repo.codex(&bin, &model, "make the files", true);
    assert!(out.status.success());

    // What the agent did happened; what the policy denies did not.
    let after_patch = tree_of(&[
        ("src/gen/b.txt", "one\n"),
        ("src/lib.rs", "pub mod y;\n"),
        ("src/new.rs", "pub fn f() {}\n"),
    ]);
    assert_eq!(tree(&repo.root), after_patch);
    // The model was told why, in the tool's output.
    let bodies = model.bodies();
    let denied = output_for(&bodies, "call_2");
    assert!(
        denied.contains("codex-test denies") && denied.contains("rm -r *"),
        "the denial's reason reached the model: {denied}"
    );
    let asked = output_for(&bodies, "call_3");
    assert!(
        asked.contains("horde approve") && asked.contains("curl *"),
        "the model learns how the call can be approved: {asked}"
    );

    let log = repo.log();
    let calls = calls(&log);
    let ids: Vec<&String> = calls.keys().collect();
    assert_eq!(
        ids,
        ["call_0", "call_1", "call_2", "call_3"],
        "four tool calls"
    );
    let get = |id: &str| {
        let (i, r) = &calls[id];
        (i.clone().expect("an intent"), r.clone())
    };
    let (i0, r0) = get("call_0");
    let (i1, r1) = get("call_1");
    let (i2, r2) = get("call_2");
    let (i3, r3) = get("call_3");
    let (r0, r1) = (r0.expect("result 0"), r1.expect("result 1"));
    assert!(r2.is_none() && r3.is_none(), "a denied call has no result");
    let session = i0["payload"]["session"].as_str().expect("session");
    assert!(!session.is_empty());
    for (i, tool) in [
        (&i0, "Bash"),
        (&i1, "apply_patch"),
        (&i2, "Bash"),
        (&i3, "Bash"),
    ] {
        assert_eq!(i["agent"], "codex");
        assert_eq!(i["payload"]["tool"], tool);
        assert_eq!(i["payload"]["session"], session);
    }
    assert!(
        i2["payload"]["policy_verdict"]
            .as_str()
            .is_some_and(|v| v.contains("denies")),
        "{i2}"
    );
    assert_eq!(i2["payload"]["result_summary"], "denied, not run");
    assert_eq!(i3["payload"]["result_summary"], "waiting for a person");
    for (r, i) in [(&r0, &i0), (&r1, &i1)] {
        assert_eq!(r["causation_id"], i["id"]);
        assert_eq!(r["span_id"], i["span_id"]);
        assert_eq!(r["payload"]["session"], session);
    }
    // Every file change is attributed to the call that made it, through the shell or the patch.
    // (The directory the command made is a change of its own; a.txt came and went inside the
    // call, so the call made b.txt.)
    assert_eq!(
        changes_caused_by(&log, &i0["id"]),
        ["create src/gen", "create src/gen/b.txt"]
    );
    assert_eq!(
        changes_caused_by(&log, &i1["id"]),
        ["create src/new.rs", "modify src/lib.rs"]
    );
    // One session, one task, one trace.
    let trace = &i0["trace_id"];
    assert!(trace.is_string());
    let session_events: Vec<&Value> = log
        .iter()
        .filter(|e| e["agent"] == "codex")
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
        .find(|m| m["to"] == "codex")
        .expect("the prompt");
    assert_eq!(prompt["text"], "make the files");

    // Restore at each tool call's events reproduces the tree as it was then.
    let before = tree_of(&[("src/lib.rs", "pub mod x;\n")]);
    let after_shell = tree_of(&[("src/gen/b.txt", "one\n"), ("src/lib.rs", "pub mod x;\n")]);
    for (at, want) in [
        (&i0, &before),
        (&r0, &after_shell),
        (&i1, &after_shell),
        (&r1, &after_patch),
        (&i2, &after_patch),
        (&i3, &after_patch),
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
        assert_eq!(&tree(&to), want, "at {}", at["id"]);
    }
    repo.horde(&["verify"]);
    let status: Value =
        serde_json::from_slice(&repo.horde(&["hooks", "status", "--json"]).stdout).expect("json");
    let codex = status
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| {
            s["agent"] == "codex"
                && s["file"]
                    .as_str()
                    .is_some_and(|f| f.ends_with(".codex/hooks.json"))
        })
        .expect("the repository's Codex hooks");
    assert_eq!(codex["mode"], "enforce");
    assert_eq!(codex["missing"], json!([]));
    assert_eq!(codex["exe_exists"], true);
}

#[test]
fn codex_skips_hooks_nobody_trusted_and_horde_records_nothing() {
    let Some(bin) = codex_bin() else { return };
    let repo = Repo::new();
    repo.install("enforce");
    let model = ModelServer::start(vec![
        Reply::Shell("echo ran > src/denied.txt && rm -r src"),
        Reply::Text("done"),
    ]);
    let out = repo.codex(&bin, &model, "remove it", false);
    assert!(out.status.success());
    // Not a word from Codex that the hooks were skipped: the command ran, unchecked.
    assert!(!repo.root.join("src").exists());
    let log = repo.log();
    assert!(
        !log.iter().any(|e| e["agent"] == "codex"),
        "untrusted hooks never ran"
    );
}

/// Replaces the horde binary in the installed hooks by a script that runs `in_pre_tool_use`
/// (a shell line) in PreToolUse and horde otherwise.
fn wrap_horde(repo: &Repo, in_pre_tool_use: &str) {
    repo.wrap_horde("PreToolUse", in_pre_tool_use, ".codex/hooks.json");
}

#[test]
fn when_horde_is_killed_in_the_hook_enforce_blocks_the_tool_and_audit_records_it_unchecked() {
    let Some(bin) = codex_bin() else { return };
    for mode in ["enforce", "audit"] {
        let repo = Repo::new();
        repo.install(mode);
        // A horde that dies by SIGKILL in PreToolUse.
        wrap_horde(&repo, "kill -9 $$");
        let model = ModelServer::start(vec![
            Reply::Shell("echo x > src/x.txt"),
            Reply::Text("done"),
        ]);
        let out = repo.codex(&bin, &model, "write x", true);
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
                let told = output_for(&model.bodies(), "call_0");
                assert!(told.contains("horde"), "{told}");
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
fn a_horde_that_hangs_past_codexs_timeout_cannot_stop_the_tool_and_its_result_is_unchecked() {
    let Some(bin) = codex_bin() else { return };
    let repo = Repo::new();
    repo.horde(&[
        "hooks",
        "install",
        "codex",
        "--mode",
        "enforce",
        "--role",
        "codex-test",
        "--timeout",
        "3",
    ]);
    // A horde that answers PreToolUse only after Codex's 3 s are up.
    wrap_horde(&repo, "sleep 6; exit 0");
    let model = ModelServer::start(vec![
        Reply::Shell("echo x > src/x.txt"),
        Reply::Text("done"),
    ]);
    assert!(repo.codex(&bin, &model, "write x", true).status.success());
    // Codex fails open on a hook's timeout: no setting or answer of horde's changes that.
    assert!(repo.root.join("src/x.txt").exists());
    let log = repo.log();
    let calls = calls(&log);
    let (intent, result) = &calls["call_0"];
    assert!(intent.is_none(), "PreToolUse never answered");
    let result = result.as_ref().expect("the call's end is recorded");
    assert!(
        result["payload"]["policy_verdict"]
            .as_str()
            .is_some_and(|v| v.starts_with("unchecked")),
        "{result}"
    );
    // Its change is recorded all the same, with no intent to attribute it to.
    assert!(
        log.iter()
            .any(|e| e["type"] == "state_change" && e["payload"]["path"] == "src/x.txt")
    );
    repo.horde(&["verify"]);
}
