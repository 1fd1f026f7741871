//! `horde import claude|codex|aider` from the user's side: past sessions become events that
//! `horde log` shows like recorded ones, importing twice adds nothing, a grown transcript adds
//! only its new part, a session the hooks recorded gets no duplicates, bad lines are skipped
//! and counted, aider's commits become steps, and `horde verify` passes after each import.
//! Fixtures: `fixtures/import/` (see its README).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::Repo;
use serde_json::{Value, json};

const CLAUDE_SESSION: &str = "03913601-7d04-4ce2-8841-9c760fdc75c7";
const CODEX_SESSION: &str = "01a23ce5-3593-7311-8f23-2fe1cef58e75";

/// A fixture with the places it was captured in replaced by this test's.
fn fixture(r: &Repo, name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(name);
    let home = agent_home(r);
    std::fs::read_to_string(&p)
        .expect("fixture")
        .replace("__PROJECT__", &claude_project(r).to_string_lossy())
        .replace("__HOME__", &home.to_string_lossy())
        .replace("__CWD__", &r.root.to_string_lossy())
}

/// Where the agents keep their records for this test: beside the repository.
fn agent_home(r: &Repo) -> PathBuf {
    r.config.parent().expect("tmp").join("home")
}

fn import(r: &Repo, args: &[&str]) -> std::process::Output {
    let mut a = vec!["import"];
    a.extend_from_slice(args);
    let home = agent_home(r);
    r.cmd(&a)
        .env("CLAUDE_CONFIG_DIR", home.join(".claude"))
        .env("CODEX_HOME", home.join(".codex"))
        .output()
        .expect("horde runs")
}

fn import_ok(r: &Repo, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = import(r, &a);
    assert!(
        out.status.success(),
        "import {args:?}: {}\n{}",
        common::stdout(&out),
        common::stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// Claude Code's folder for the repository.
fn claude_project(r: &Repo) -> PathBuf {
    let slug: String = r
        .root
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    agent_home(r).join(".claude/projects").join(slug)
}

fn claude_transcript(r: &Repo) -> PathBuf {
    let dir = claude_project(r);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir.join(format!("{CLAUDE_SESSION}.jsonl"))
}

fn codex_rollout(r: &Repo) -> PathBuf {
    let dir = agent_home(r).join(".codex/sessions/2026/12/03");
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir.join(format!("rollout-2026-12-03T11-23-30-{CODEX_SESSION}.jsonl"))
}

/// The events of a session: those on the trace of its task (what the hooks give it too).
fn of_session<'a>(events: &'a [Value], session: &str) -> Vec<&'a Value> {
    let title = format!(" session {session}");
    let trace = events
        .iter()
        .find(|e| {
            e["type"] == "task"
                && e["payload"]["title"]
                    .as_str()
                    .is_some_and(|t| t.ends_with(&title))
        })
        .map(|e| e["trace_id"].clone())
        .expect("the session's task");
    events.iter().filter(|e| e["trace_id"] == trace).collect()
}

fn typed<'a>(events: &[&'a Value], t: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == t).copied().collect()
}

fn tokens(events: &[Value]) -> (u64, u64, u64, u64) {
    events
        .iter()
        .filter(|e| e["type"] == "decision")
        .fold((0, 0, 0, 0), |a, e| {
            let p = &e["payload"];
            let n = |k: &str| p[k].as_u64().expect("tokens");
            (
                a.0 + n("tokens_in"),
                a.1 + n("tokens_out"),
                a.2 + n("cache_read_tokens"),
                a.3 + n("cache_write_tokens"),
            )
        })
}

fn verify(r: &Repo) {
    r.ok(&["verify", "--deep"]);
}

/// (call_id, intent) of every tool call event: no pair may appear twice.
fn assert_no_duplicates(events: &[Value]) {
    let mut seen = std::collections::HashSet::new();
    for e in events {
        let p = &e["payload"];
        let key = match e["type"].as_str() {
            Some("tool_call") => format!("tool {} {}", p["call_id"], p["intent"]),
            Some("decision") => format!("decision {}", p["call_id"]),
            Some("message") => format!("message {} {} {}", p["from"], p["to"], p["text"]),
            Some("task") => format!("task {} {}", p["title"], p["kind"]),
            _ => continue,
        };
        assert!(seen.insert(key.clone()), "{key} recorded twice");
    }
}

/// Claude Code's own total for the captured session (its `--output-format json` usage):
/// input, output, cache reads, cache writes.
const CLAUDE_TOTAL: (u64, u64, u64, u64) = (3006, 138, 60042, 966);
/// The first message's (all the first part of the transcript holds).
const CLAUDE_FIRST: (u64, u64, u64, u64) = (1001, 43, 20007, 311);

fn counts(s: &Value) -> (Option<u64>, Option<u64>, Option<u64>, Option<u64>) {
    (
        s["prompts"].as_u64(),
        s["replies"].as_u64(),
        s["tool_calls"].as_u64(),
        s["model_calls"].as_u64(),
    )
}

#[test]
fn claude_transcript_imports_once_and_grows() {
    let r = Repo::init();
    let t = claude_transcript(&r);
    // The session as it was after its first tool call.
    std::fs::write(&t, fixture(&r, "claude-session.jsonl")).expect("write");
    let sums = import_ok(&r, &["claude", CLAUDE_SESSION]);
    let s = &sums[0];
    assert_eq!(s["session"], CLAUDE_SESSION);
    assert_eq!(s["lines_skipped"], 0);
    assert_eq!(counts(s), (Some(1), Some(0), Some(2), Some(1)), "{s}");
    let events = r.events();
    assert_eq!(tokens(&events), CLAUDE_FIRST);
    let ours = of_session(&events, CLAUDE_SESSION);
    assert_eq!(typed(&ours, "task").len(), 1);
    let msgs = typed(&ours, "message");
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["payload"]["text"], "create hello.txt saying hi");
    let calls = typed(&ours, "tool_call");
    assert_eq!(calls.len(), 2, "an intent and a result");
    let (intent, result) = (calls[0], calls[1]);
    assert_eq!(intent["payload"]["call_id"], "toolu_1");
    assert_eq!(intent["payload"]["intent"], true);
    assert_eq!(intent["payload"]["tool"], "Write");
    assert_eq!(
        intent["payload"]["args"][0],
        r.root.join("hello.txt").to_string_lossy().as_ref()
    );
    assert_eq!(result["payload"]["intent"], false);
    assert_eq!(intent["span_id"], result["span_id"], "one span per call");
    assert_eq!(
        result["causation_id"], intent["id"],
        "the result is caused by its intent"
    );
    assert!(
        intent["payload"]["policy_verdict"]
            .as_str()
            .is_some_and(|v| v.starts_with("imported"))
    );
    // Every event of the session shares the trace the hooks would give it.
    let trace = &ours[0]["trace_id"];
    assert!(trace.is_string());
    assert!(ours.iter().all(|e| e["trace_id"] == *trace));
    // Marked imported: caused by the run's import observation.
    let obs: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "observation" && e["payload"]["kind"] == "import")
        .collect();
    assert_eq!(obs.len(), 1);
    assert_eq!(intent["causation_id"], obs[0]["id"]);
    verify(&r);

    // Twice: nothing.
    let again = import_ok(&r, &["claude", CLAUDE_SESSION]);
    assert_eq!(again[0]["added"], 0, "{again}");
    assert_eq!(r.events().len(), events.len());

    // The session went on: only the new part.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&t)
        .expect("open");
    f.write_all(fixture(&r, "claude-session-more.jsonl").as_bytes())
        .expect("append");
    let grown = import_ok(&r, &["claude", "--all"]);
    assert_eq!(grown.as_array().map(Vec::len), Some(1), "{grown}");
    assert_eq!(
        counts(&grown[0]),
        (Some(0), Some(1), Some(2), Some(2)),
        "{grown}"
    );
    let events = r.events();
    assert_eq!(tokens(&events), CLAUDE_TOTAL, "Claude Code's own total");
    assert_no_duplicates(&events);
    let ours = of_session(&events, CLAUDE_SESSION);
    let bash = ours
        .iter()
        .find(|e| e["payload"]["call_id"] == "toolu_2" && e["payload"]["intent"] == true)
        .expect("toolu_2");
    assert_eq!(bash["payload"]["args"][0], "cat hello.txt");
    let msgs = typed(&ours, "message");
    assert_eq!(
        msgs.last().expect("reply")["payload"]["text"],
        "Done: hello.txt says hi."
    );
    // The log shows the imported session to people too.
    let text = r.ok(&["log"]);
    assert!(text.contains("Bash"), "{text}");
    verify(&r);
}

fn hook(r: &Repo, event: &str, payload: Value) {
    let out = r.hook(&["claude", event], &payload, false);
    assert!(
        out.status.success(),
        "hook {event}: {}",
        common::stderr(&out)
    );
}

#[test]
fn a_session_recorded_live_gets_no_duplicates() {
    let r = Repo::init();
    let t = claude_transcript(&r);
    let whole = fixture(&r, "claude-session.jsonl") + &fixture(&r, "claude-session-more.jsonl");
    std::fs::write(&t, whole).expect("write");
    let base = json!({"session_id": CLAUDE_SESSION, "cwd": r.root, "transcript_path": t});
    let with = |extra: Value| {
        let mut v = base.clone();
        for (k, x) in extra.as_object().expect("object") {
            v[k] = x.clone();
        }
        v
    };
    hook(
        &r,
        "SessionStart",
        with(json!({"hook_event_name": "SessionStart", "source": "startup"})),
    );
    hook(
        &r,
        "UserPromptSubmit",
        with(
            json!({"hook_event_name": "UserPromptSubmit", "prompt": "create hello.txt saying hi"}),
        ),
    );
    let write = json!({"file_path": r.root.join("hello.txt"), "content": "hi\n"});
    hook(
        &r,
        "PreToolUse",
        with(
            json!({"hook_event_name": "PreToolUse", "tool_name": "Write",
                    "tool_input": write, "tool_use_id": "toolu_1"}),
        ),
    );
    r.write("hello.txt", "hi\n");
    hook(
        &r,
        "PostToolUse",
        with(
            json!({"hook_event_name": "PostToolUse", "tool_name": "Write",
                    "tool_input": write, "tool_use_id": "toolu_1",
                    "tool_response": {"type": "create"}}),
        ),
    );
    // toolu_2 ran with the hooks off (not recorded live).
    hook(
        &r,
        "Stop",
        with(
            json!({"hook_event_name": "Stop", "last_assistant_message": "Done: hello.txt says hi."}),
        ),
    );
    let live = r.events();
    assert_eq!(tokens(&live), CLAUDE_TOTAL, "the Stop hook read the usage");

    let sums = import_ok(&r, &["claude", t.to_str().expect("utf-8")]);
    let s = &sums[0];
    assert_eq!(
        counts(s),
        (Some(0), Some(0), Some(2), Some(0)),
        "only the call the hooks missed: {s}"
    );
    let events = r.events();
    assert_no_duplicates(&events);
    assert_eq!(tokens(&events), CLAUDE_TOTAL);
    let ours = of_session(&events, CLAUDE_SESSION);
    assert_eq!(typed(&ours, "task").len(), 1, "the hooks' task goes on");
    let trace = &ours[0]["trace_id"];
    assert!(ours.iter().all(|e| e["trace_id"] == *trace));
    assert_eq!(import_ok(&r, &["claude", CLAUDE_SESSION])[0]["added"], 0);
    verify(&r);
}

#[test]
fn codex_rollout_imports_with_its_tokens() {
    let r = Repo::init();
    std::fs::write(codex_rollout(&r), fixture(&r, "codex-rollout.jsonl")).expect("write");
    let sums = import_ok(&r, &["codex", "--all"]);
    assert_eq!(sums.as_array().map(Vec::len), Some(1), "{sums}");
    let s = &sums[0];
    assert_eq!(s["session"], CODEX_SESSION);
    assert_eq!(s["lines_skipped"], 0);
    assert_eq!(counts(s), (Some(1), Some(1), Some(4), Some(3)), "{s}");
    let events = r.events();
    // Codex's own total (`turn.completed`): 3006 input of which 306 cached, 78 output.
    assert_eq!(tokens(&events), (2700, 78, 306, 0));
    let ours = of_session(&events, CODEX_SESSION);
    let intent = |id: &str| {
        ours.iter()
            .find(|e| e["payload"]["call_id"] == id && e["payload"]["intent"] == true)
            .copied()
            .expect("intent")
    };
    assert_eq!(intent("call_0")["payload"]["tool"], "exec_command");
    assert_eq!(intent("call_0")["payload"]["args"][0], "echo hi > a.txt");
    assert_eq!(intent("call_1")["payload"]["tool"], "apply_patch");
    assert_eq!(intent("call_1")["payload"]["args"][0], "c.txt");
    let msgs = typed(&ours, "message");
    assert_eq!(msgs[0]["payload"]["text"], "write a.txt");
    assert_eq!(msgs[1]["payload"]["text"], "Wrote a.txt and c.txt.");
    assert_eq!(import_ok(&r, &["codex", CODEX_SESSION])[0]["added"], 0);
    assert_eq!(r.events().len(), events.len());
    verify(&r);
}

#[test]
fn bad_lines_are_skipped_and_counted() {
    let r = Repo::init();
    let good = fixture(&r, "claude-session.jsonl");
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(3, "{\"type\":\"user\",\"message\":");
    lines.insert(5, "not json at all");
    let mut text = lines.join("\n");
    text.push_str("\n{\"type\":\"assistant\",\"message\":{\"id\":\"msg_cut");
    std::fs::write(claude_transcript(&r), text).expect("write");
    let out = import(&r, &["claude", CLAUDE_SESSION]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let line = common::stdout(&out);
    assert!(line.contains("3 lines skipped"), "{line}");
    let s = &import_ok(&r, &["claude", CLAUDE_SESSION, "--dry-run"])[0];
    assert_eq!(s["lines_skipped"], 3);
    assert_eq!(s["added"], 0);
    assert_eq!(
        tokens(&r.events()),
        CLAUDE_FIRST,
        "the good lines are all there"
    );
    verify(&r);
}

#[test]
fn missing_sessions_and_non_repositories_are_errors_that_change_nothing() {
    let r = Repo::init();
    let before = r.events().len();
    let out = import(&r, &["claude", "no-such-session"]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("no-such-session"),
        "{}",
        common::stderr(&out)
    );
    let out = import(&r, &["codex", "no-such-session"]);
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("no-such-session"));
    assert_eq!(r.events().len(), before);

    let plain = Repo::empty();
    let out = import(&plain, &["claude", "--all"]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("not in a horde repository"),
        "{}",
        common::stderr(&out)
    );
    assert!(!plain.root.join(".horde").exists());
}

#[test]
fn dry_run_writes_nothing() {
    let r = Repo::init();
    std::fs::write(claude_transcript(&r), fixture(&r, "claude-session.jsonl")).expect("w");
    let before = r.events().len();
    let s = import_ok(&r, &["claude", "--all", "--dry-run"]);
    assert!(s[0]["added"].as_u64().is_some_and(|n| n > 0), "{s}");
    assert_eq!(r.events().len(), before);
    let out = import(&r, &["claude", "--all", "--dry-run"]);
    assert!(common::stdout(&out).contains("would add"));
}

fn git(r: &Repo, args: &[&str], author: &str) {
    let out = Command::new("git")
        .args(args)
        .current_dir(&r.root)
        .env("GIT_AUTHOR_NAME", author)
        .env("GIT_COMMITTER_NAME", author)
        .env("GIT_AUTHOR_EMAIL", "ann@example.com")
        .env("GIT_COMMITTER_EMAIL", "ann@example.com")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        common::stderr(&out)
    );
}

/// aider is not run: its history file and commits are built here in its documented formats
/// (author `Name (aider)` with --attribute-author, `aider: ` with
/// --attribute-commit-message-author).
#[test]
fn aider_history_and_commits_become_sessions_and_steps() {
    let r = Repo::init();
    git(&r, &["init", "-q", "-b", "main"], "Ann");
    git(&r, &["add", "README.md", "src/main.rs", "notes.txt"], "Ann");
    git(&r, &["commit", "-q", "-m", "start"], "Ann");
    r.write(
        ".aider.chat.history.md",
        "\n# aider chat started at 2026-12-01 10:00:00\n\n> Aider v0.86.1\n> Main model: gpt-5.5 with diff edit format\n\n#### add a hello function\n\nHere it is.\n\n> Applied edit to src/hello.rs\n> Commit 1a2b3c4 feat: add hello\n\n#### drop the notes\n\nDone.\n",
    );
    r.write(
        ".aider.llm.history",
        "TO LLM 2026-12-01T10:00:05\nUSER add a hello function\nLLM RESPONSE 2026-12-01T10:00:09\nASSISTANT Here it is.\n",
    );
    r.write("src/hello.rs", "pub fn hello() {}\n");
    r.write("README.md", "# test\nwith hello\n");
    git(&r, &["add", "src/hello.rs", "README.md"], "Ann (aider)");
    git(
        &r,
        &["commit", "-q", "-m", "feat: add hello"],
        "Ann (aider)",
    );
    r.write("CHANGES", "by hand\n");
    git(&r, &["add", "CHANGES"], "Ann");
    git(&r, &["commit", "-q", "-m", "by hand"], "Ann");
    git(&r, &["rm", "-q", "notes.txt"], "Ann");
    git(&r, &["commit", "-q", "-m", "aider: drop the notes"], "Ann");

    let before = r.events();
    let sums = import_ok(&r, &["aider"]);
    let all = sums.as_array().expect("array");
    let chat = &all[0];
    assert_eq!(chat["session"], "aider-2026-12-01T10:00:00");
    assert_eq!(
        (chat["prompts"].as_u64(), chat["replies"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(chat["model_calls"], 1);
    let commits = all.last().expect("commits");
    assert_eq!(commits["commits"], 2, "{commits}");

    let events = r.events();
    let steps: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "tool_call" && e["payload"]["tool"] == "git commit")
        .collect();
    assert_eq!(steps.len(), 2);
    let changes_of = |step: &Value| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = events
            .iter()
            .filter(|e| e["type"] == "state_change" && e["causation_id"] == step["id"])
            .map(|e| {
                (
                    e["payload"]["op"].as_str().expect("op").to_owned(),
                    e["payload"]["path"].as_str().expect("path").to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        changes_of(steps[0]),
        [
            ("create".into(), "src/hello.rs".into()),
            ("modify".into(), "README.md".into())
        ]
    );
    assert_eq!(
        changes_of(steps[1]),
        [("delete".to_owned(), "notes.txt".to_owned())]
    );
    // The hand-made commit between them is nobody's call.
    assert!(events.iter().any(|e| e["type"] == "state_change"
        && e["payload"]["path"] == "CHANGES"
        && e["causation_id"].is_null()));
    // The current timeline's tree is untouched: its changes are those before the import.
    assert_eq!(
        r.changes().len(),
        before
            .iter()
            .filter(|e| e["type"] == "state_change")
            .count()
            + 4,
        "the 4 changes are on the aider timeline"
    );
    assert!(
        steps
            .iter()
            .all(|s| s["timeline_id"] != before[0]["timeline_id"])
    );
    let head = r.root.parent().expect("tmp").join("at-head");
    r.ok(&[
        "restore",
        "--at",
        "HEAD",
        "--to",
        head.to_str().expect("utf-8"),
    ]);
    assert!(
        head.join("notes.txt").exists() && !head.join("src/hello.rs").exists(),
        "the current timeline's tree is the one recorded before the import"
    );
    verify(&r);

    // Every imported step restores to its commit's tree (the point after its last change).
    let end_of_first = events
        .iter()
        .rfind(|e| e["causation_id"] == steps[0]["id"])
        .expect("the first step's changes");
    let out = r.root.parent().expect("tmp").join("at-first-step");
    r.ok(&[
        "restore",
        "--at",
        end_of_first["id"].as_str().expect("id"),
        "--to",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        std::fs::read_to_string(out.join("src/hello.rs")).expect("hello"),
        "pub fn hello() {}\n"
    );
    assert!(
        out.join("notes.txt").exists(),
        "deleted only by the second step"
    );

    let again = import_ok(&r, &["aider"]);
    assert!(
        again
            .as_array()
            .expect("array")
            .iter()
            .all(|s| s["added"] == 0),
        "{again}"
    );
    assert_eq!(r.events().len(), events.len());
}

#[test]
fn secrets_in_a_transcript_are_redacted_as_live_recording_redacts_them() {
    let r = Repo::init();
    let token = format!("ghp_{}", "x7Rk2Lq9Zt4Wm8Pn3Vb6Hc1Jd5Fs0Ga2YeUo");
    let rollout = fixture(&r, "codex-rollout.jsonl")
        .replace("echo hi > a.txt", &format!("echo {token} > a.txt"))
        .replace("write a.txt", &format!("write a.txt with {token}"));
    assert!(rollout.contains(&token));
    std::fs::write(codex_rollout(&r), rollout).expect("write");
    import_ok(&r, &["codex", CODEX_SESSION]);
    let events = r.events();
    let ours = of_session(&events, CODEX_SESSION);
    let shell = ours
        .iter()
        .find(|e| e["payload"]["call_id"] == "call_0" && e["payload"]["intent"] == true)
        .expect("exec_command");
    let arg = shell["payload"]["args"][0].as_str().expect("arg");
    assert!(arg.starts_with("echo ") && !arg.contains(&token), "{arg}");
    let input = std::fs::read(r.blob(shell["payload"]["input_blob"].as_str().expect("blob")))
        .expect("input blob");
    assert!(!String::from_utf8_lossy(&input).contains(&token));
    let prompt = &typed(&ours, "message")[0]["payload"]["text"];
    assert!(!prompt.as_str().expect("text").contains(&token), "{prompt}");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "observation" && e["payload"]["kind"] == "secret"),
        "findings are secret observations"
    );
    verify(&r);
}
