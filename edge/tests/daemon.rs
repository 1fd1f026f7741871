//! `horde hook` through the repository's daemon (`horde daemon`): the same events as a hook
//! working alone, file changes attributed to the tool call that made them (found by the
//! daemon's watcher, not by walking the tree), other processes' recordings in between, a
//! timeline switched under it, a daemon SIGKILLed mid-session, and its lifecycle.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::Repo;
use serde_json::{Value, json};

/// Runs `horde hook claude EVENT` with `payload`; returns stdout. `daemon`: may use (and
/// start) the daemon.
fn hook(r: &Repo, event: &str, payload: &Value, daemon: bool) -> String {
    let out = r.hook(&["claude", event, "--mode", "enforce"], payload, daemon);
    assert!(
        out.status.success(),
        "hook {event}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn pre(r: &Repo, call: &str, tool: &str, input: Value, daemon: bool) -> String {
    hook(
        r,
        "PreToolUse",
        &json!({"session_id": "s1", "cwd": r.root, "hook_event_name": "PreToolUse",
                "tool_name": tool, "tool_input": input, "tool_use_id": call}),
        daemon,
    )
}

fn post(r: &Repo, call: &str, tool: &str, input: Value, daemon: bool) {
    hook(
        r,
        "PostToolUse",
        &json!({"session_id": "s1", "cwd": r.root, "hook_event_name": "PostToolUse",
                "tool_name": tool, "tool_input": input, "tool_use_id": call,
                "tool_response": {"stdout": "", "stderr": "", "interrupted": false}}),
        daemon,
    );
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(30), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn daemon_pid(r: &Repo) -> Option<u32> {
    let out = r.run(&["daemon", "status"]);
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.split("pid ").nth(1)?.split(')').next()?.parse().ok()
}

/// The changes recorded as caused by each tool call's intent, and the user's, in order.
fn attribution(r: &Repo) -> Vec<String> {
    let log = r.events();
    let mut intents = std::collections::HashMap::new();
    for e in &log {
        if e["type"] == "tool_call" && e["payload"]["intent"] == true {
            intents.insert(
                e["id"].as_str().expect("id").to_owned(),
                e["payload"]["call_id"].as_str().expect("call").to_owned(),
            );
        }
    }
    log.iter()
        .filter(|e| e["type"] == "state_change")
        .map(|e| {
            let by = e["causation_id"]
                .as_str()
                .and_then(|c| intents.get(c))
                .cloned()
                .unwrap_or_else(|| "user".into());
            format!(
                "{by}: {} {}",
                e["payload"]["op"].as_str().unwrap_or(""),
                e["payload"]["path"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// One scripted session: tool calls that write, rename and delete, the user's edits between
/// them, another process recording in between.
fn session(r: &Repo, daemon: bool) {
    let bash = |c: &str| json!({"command": c});
    pre(
        r,
        "t1",
        "Bash",
        bash("mkdir -p gen && echo a > gen/a.txt"),
        daemon,
    );
    std::fs::create_dir_all(r.path("gen/deep")).expect("mkdir");
    std::fs::write(r.path("gen/a.txt"), "a\n").expect("write");
    std::fs::write(r.path("gen/deep/b.txt"), "b\n").expect("write");
    post(
        r,
        "t1",
        "Bash",
        bash("mkdir -p gen && echo a > gen/a.txt"),
        daemon,
    );
    // The user edits between calls: recorded as theirs at the next call's start.
    r.write("notes.txt", "the user's notes\n");
    let w = json!({"file_path": r.path("src/lib.rs"), "content": "pub fn f() {}\n"});
    pre(r, "t2", "Write", w.clone(), daemon);
    r.write("src/lib.rs", "pub fn f() {}\n");
    post(r, "t2", "Write", w, daemon);
    // Another process records a change of its own in between.
    r.write("README.md", "# changed outside\n");
    r.ok(&["snapshot", "-m", "by hand"]);
    pre(
        r,
        "t3",
        "Bash",
        bash("mv gen out && rm src/main.rs"),
        daemon,
    );
    std::fs::rename(r.path("gen"), r.path("out")).expect("mv");
    std::fs::remove_file(r.path("src/main.rs")).expect("rm");
    std::fs::write(r.path("out/deep/b.txt"), "b2\n").expect("write");
    post(
        r,
        "t3",
        "Bash",
        bash("mv gen out && rm src/main.rs"),
        daemon,
    );
}

#[test]
fn through_the_daemon_a_session_is_recorded_as_by_a_hook_alone() {
    let alone = Repo::init();
    session(&alone, false);
    assert_eq!(
        daemon_pid(&alone),
        None,
        "HORDE_DAEMON=off starts no daemon"
    );

    let warm = Repo::init();
    warm.ok(&["daemon", "start"]);
    let pid = daemon_pid(&warm).expect("the daemon runs");
    session(&warm, true);
    assert_eq!(daemon_pid(&warm), Some(pid), "one daemon served every call");

    let (a, w) = (attribution(&alone), attribution(&warm));
    assert_eq!(w, a, "the daemon records what a hook alone records");
    for want in [
        "t1: create gen/a.txt",
        "t1: create gen/deep/b.txt",
        "user: modify notes.txt",
        "t2: create src/lib.rs",
        "user: modify README.md",
        "t3: delete src/main.rs",
        "t3: rename out/a.txt",
    ] {
        assert!(w.iter().any(|c| c == want), "{want} missing from {w:#?}");
    }
    // A call's changes are in its session's trace, in the call's span.
    let log = warm.events();
    let intent = |call: &str| {
        log.iter()
            .find(|e| e["payload"]["call_id"] == call && e["payload"]["intent"] == true)
            .cloned()
            .expect("intent")
    };
    let t1 = intent("t1");
    let by_t1: Vec<&Value> = log
        .iter()
        .filter(|e| e["type"] == "state_change" && e["causation_id"] == t1["id"])
        .collect();
    assert!(!by_t1.is_empty());
    for c in by_t1 {
        assert_eq!(c["trace_id"], t1["trace_id"]);
        assert_eq!(c["span_id"], t1["span_id"]);
    }
    warm.ok(&["verify"]);
    assert_eq!(warm.json(&["status"])["unrecorded_changes"], 0);
    // Restore at each call's intent reproduces what the tree was when it started.
    let log = warm.events();
    let t3 = log
        .iter()
        .find(|e| e["payload"]["call_id"] == "t3" && e["payload"]["intent"] == true)
        .expect("t3's intent");
    let to = warm.root.parent().expect("tmp").join("at-t3");
    warm.ok(&[
        "restore",
        "--at",
        t3["id"].as_str().expect("id"),
        "--to",
        to.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        std::fs::read_to_string(to.join("gen/deep/b.txt")).expect("b"),
        "b\n"
    );
    assert!(to.join("src/main.rs").exists() && !to.join("out").exists());
    warm.ok(&["daemon", "stop"]);
    assert_eq!(daemon_pid(&warm), None);
}

#[test]
fn a_hook_starts_the_daemon_and_a_killed_daemon_loses_nothing() {
    let r = Repo::init();
    let bash = json!({"command": "true"});
    pre(&r, "k1", "Bash", bash.clone(), true);
    wait_for("the daemon a hook started", || daemon_pid(&r).is_some());
    let pid = daemon_pid(&r).expect("pid");
    r.write("x.txt", "x\n");
    post(&r, "k1", "Bash", bash.clone(), true);
    common::signal(i32::try_from(pid).expect("pid"), libc::SIGKILL);
    wait_for("the daemon to die", || daemon_pid(&r) != Some(pid));
    // The next calls go alone (and start another daemon); nothing is missing or doubled.
    r.write("y.txt", "y\n");
    pre(&r, "k2", "Bash", bash.clone(), true);
    r.write("z.txt", "z\n");
    post(&r, "k2", "Bash", bash, true);
    let a = attribution(&r);
    for want in ["k1: create x.txt", "user: create y.txt", "k2: create z.txt"] {
        assert_eq!(
            a.iter().filter(|c| *c == want).count(),
            1,
            "{want} in {a:#?}"
        );
    }
    r.ok(&["verify"]);
    wait_for("a new daemon", || daemon_pid(&r).is_some_and(|p| p != pid));
}

#[test]
fn the_daemon_follows_a_timeline_switched_under_it() {
    let r = Repo::init();
    r.ok(&["daemon", "start"]);
    let bash = json!({"command": "true"});
    pre(&r, "f1", "Bash", bash.clone(), true);
    r.write("before-fork.txt", "1\n");
    post(&r, "f1", "Bash", bash.clone(), true);
    let log = r.events();
    let first = log.first().expect("events")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    r.ok(&["fork", "--at", &first, "--name", "retry"]);
    pre(&r, "f2", "Bash", bash.clone(), true);
    r.write("after-fork.txt", "2\n");
    post(&r, "f2", "Bash", bash, true);
    // On the current timeline (what `log` shows), and nothing on disk left unrecorded.
    let log = r.json(&["log", "--path", "after-fork.txt"]);
    assert_eq!(log.as_array().map(Vec::len), Some(1), "{log:#}");
    assert_eq!(r.json(&["status"])["unrecorded_changes"], 0);
    r.ok(&["verify"]);
    r.ok(&["daemon", "stop"]);
}

#[test]
fn one_daemon_per_repository_and_it_leaves_with_its_repository() {
    let r = Repo::init();
    r.ok(&["daemon", "start"]);
    let pid = daemon_pid(&r).expect("running");
    // A second start is a no-op; a second foreground daemon refuses.
    assert!(r.ok(&["daemon", "start"]).contains(&pid.to_string()));
    let second = r.run(&["daemon", "run"]);
    assert!(!second.status.success());
    assert!(
        common::stderr(&second).contains("already runs"),
        "{}",
        common::stderr(&second)
    );
    // Removing the repository's .horde/ ends it.
    std::fs::remove_dir_all(r.path(".horde")).expect("rm");
    wait_for("the daemon to leave", || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    // Outside a repository the commands say so.
    let out = r.run(&["daemon", "status"]);
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("not in a horde repository"));
}

#[test]
fn an_answer_remembered_meanwhile_applies_to_the_next_call_through_the_daemon() {
    let r = Repo::init();
    r.ok(&["daemon", "start"]);
    let add = json!({"command": "cargo add serde"});
    let first = pre(&r, "a1", "Bash", add.clone(), true);
    assert!(
        first.contains("\"ask\""),
        "builder asks for cargo add: {first}"
    );
    let id = first
        .split("horde approve ")
        .nth(1)
        .and_then(|s| s.get(..8))
        .expect("the answer names the request");
    r.ok(&["approve", id, "--remember", "exact", "--for", "session"]);
    let second = pre(&r, "a2", "Bash", add, true);
    assert!(
        !second.contains("\"ask\"") && !second.contains("\"deny\""),
        "the remembered answer applies: {second}"
    );
    r.ok(&["daemon", "stop"]);
}

/// POSTs `body` to the daemon's HTTP hook endpoint at `path` with `token` (None: none).
fn post_http(port: u16, path: &str, token: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let client = reqwest::blocking::Client::new();
    let mut req = client
        .post(format!("http://127.0.0.1:{port}{path}"))
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().expect("the endpoint answers");
    (resp.status().as_u16(), resp.text().expect("body"))
}

#[test]
fn the_daemon_answers_claude_codes_http_hooks_with_a_token_and_refuses_the_rest() {
    let r = Repo::init();
    // Refused where HTTP hooks cannot work, and nothing is written.
    for args in [
        &["hooks", "install", "codex", "--transport", "http"][..],
        &[
            "hooks",
            "install",
            "claude",
            "--transport",
            "http",
            "--user",
        ],
        &["hooks", "install", "claude", "--port", "25000"],
    ] {
        let out = r.run(args);
        assert!(!out.status.success(), "{args:?}");
        assert!(!r.path(".horde/hooks-http.json").exists(), "{args:?}");
    }
    r.ok(&[
        "hooks",
        "install",
        "claude",
        "--mode",
        "enforce",
        "--transport",
        "http",
    ]);
    let ep: Value =
        serde_json::from_slice(&std::fs::read(r.path(".horde/hooks-http.json")).expect("endpoint"))
            .expect("json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(r.path(".horde/hooks-http.json"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the token is its owner's only");
    let (port, token) = (
        ep["port"].as_u64().expect("port") as u16,
        ep["token"].as_str().expect("token").to_owned(),
    );
    r.ok(&["daemon", "start"]);
    let pre = |call: &str, command: &str| {
        json!({
            "session_id": "s-http", "cwd": r.path(""), "hook_event_name": "PreToolUse",
            "tool_name": "Bash", "tool_input": {"command": command}, "tool_use_id": call,
        })
        .to_string()
        .into_bytes()
    };
    let url = "/horde/hook/claude/PreToolUse?mode=enforce&role=builder&deadline_ms=5000";
    // No token, a wrong one: nothing is recorded.
    let before = r.events().len();
    assert_eq!(post_http(port, url, None, pre("t0", "ls")).0, 401);
    assert_eq!(post_http(port, url, Some("0123"), pre("t0", "ls")).0, 401);
    assert_eq!(r.events().len(), before);
    // Not a hook URL, not a POST, too large.
    assert_eq!(
        post_http(port, "/elsewhere", Some(&token), Vec::new()).0,
        404
    );
    let (status, _) = post_http(
        port,
        "/horde/hook/claude/PreToolUse?mode=lenient",
        Some(&token),
        pre("t0", "ls"),
    );
    assert_eq!(status, 404);
    let get = reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{port}{url}"))
        .bearer_auth(&token)
        .send()
        .expect("get");
    assert_eq!(get.status().as_u16(), 405);
    // Said to be too large: refused before it is sent.
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        tcp,
        "POST {url} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\n\
         content-length: {}\r\n\r\n",
        70u64 << 20
    )
    .expect("write");
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut tcp, &mut head).expect("read");
    assert_eq!(&head, b"HTTP/1.1 413");
    // Not JSON: enforce denies the call rather than let it run unchecked.
    let (status, body) = post_http(port, url, Some(&token), b"{not json".to_vec());
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_str(&body).expect("an answer");
    assert_eq!(
        answer["hookSpecificOutput"]["permissionDecision"], "deny",
        "{answer}"
    );
    // A real call is decided and recorded, as through `horde hook`.
    let (status, body) = post_http(port, url, Some(&token), pre("t1", "rm -rf /"));
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_str(&body).expect("an answer");
    assert_eq!(answer["hookSpecificOutput"]["permissionDecision"], "deny");
    let recorded = r
        .events()
        .into_iter()
        .filter(|e| e["type"] == "tool_call" && e["payload"]["call_id"] == "t1")
        .count();
    assert_eq!(recorded, 1);
    let health = reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{port}/horde/health"))
        .bearer_auth(&token)
        .send()
        .expect("health")
        .json::<Value>()
        .expect("json");
    assert_eq!(
        std::path::Path::new(health["root"].as_str().expect("root")),
        r.path("").canonicalize().expect("root")
    );
    r.ok(&["daemon", "stop"]);
}
