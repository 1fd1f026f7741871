//! `horde hook` deciding what an agent's tool call may do, working alone (no daemon): a patch
//! is decided file by file; a call horde asked about and the agent ran anyway answers horde's
//! request.

mod common;

use common::Repo;
use serde_json::{Value, json};

const ROLE: &str = "role: patcher
tier: T1
files:
  read: ['**']
  write: ['src/**']
  deny: ['.git/**', '.horde/**', 'secrets/**']
commands:
  allow: ['echo *']
  ask: ['touch *']
";

/// Runs `horde hook codex PreToolUse` (enforce, role `patcher`) with `payload`: its stdout
/// and exit code.
fn pre(r: &Repo, payload: &Value) -> (String, i32) {
    hook(r, "codex", "PreToolUse", payload)
}

/// Runs `horde hook AGENT EVENT` (enforce, role `patcher`) with `payload`: its stdout and
/// exit code.
fn hook(r: &Repo, agent: &str, event: &str, payload: &Value) -> (String, i32) {
    let out = r.hook(
        &[agent, event, "--mode", "enforce", "--role", "patcher"],
        payload,
        false,
    );
    (
        String::from_utf8(out.stdout).expect("utf-8"),
        out.status.code().unwrap_or(-1),
    )
}

fn patch_call(r: &Repo, call: &str, patch: &str) -> Value {
    json!({"session_id": "s1", "cwd": r.root, "hook_event_name": "PreToolUse",
           "model": "gpt-5.5", "tool_name": "apply_patch", "tool_input": {"input": patch},
           "tool_use_id": call})
}

/// The intent recorded for `call`: its policy verdict.
fn verdict(r: &Repo, call: &str) -> String {
    r.events()
        .iter()
        .find(|e| e["type"] == "tool_call" && e["payload"]["call_id"] == call)
        .and_then(|e| e["payload"]["policy_verdict"].as_str().map(str::to_owned))
        .expect("the intent is recorded")
}

#[test]
fn a_patch_is_denied_when_any_file_it_touches_is_denied_not_only_its_first() {
    let r = Repo::init();
    std::fs::create_dir_all(r.path(".horde/agents")).expect("mkdir");
    r.write(".horde/agents/patcher.yaml", ROLE);

    let ok = "*** Begin Patch\n*** Add File: src/a.rs\n+pub fn a() {}\n*** Update File: src/lib.rs\n@@\n+// b\n*** End Patch\n";
    let (out, code) = pre(&r, &patch_call(&r, "c1", ok));
    assert!(!out.contains("deny"), "{out} (exit {code})");
    assert!(verdict(&r, "c1").contains("allow"), "{}", verdict(&r, "c1"));

    // The first file is allowed; the second is not: the whole patch is denied.
    let bad = "*** Begin Patch\n*** Update File: src/lib.rs\n@@\n+// c\n*** Add File: secrets/key.pem\n+x\n*** End Patch\n";
    let (out, code) = pre(&r, &patch_call(&r, "c2", bad));
    assert!(
        out.contains("deny") && out.contains("secrets/key.pem"),
        "{out} (exit {code})"
    );
    assert!(
        verdict(&r, "c2").contains("secrets/key.pem"),
        "{}",
        verdict(&r, "c2")
    );

    // A patch whose files cannot be read is still decided (as an operation), never waved on.
    let (_, _) = pre(&r, &patch_call(&r, "c3", "not a patch"));
    let v = verdict(&r, "c3");
    assert!(v.contains("apply_patch"), "{v}");
    r.ok(&["verify"]);
}

#[test]
fn a_call_horde_asked_about_that_the_agent_ran_answers_hordes_request() {
    let r = Repo::init();
    std::fs::create_dir_all(r.path(".horde/agents")).expect("mkdir");
    r.write(".horde/agents/patcher.yaml", ROLE);
    let call = |event: &str, id: &str, cmd: &str| {
        let mut p = json!({"session_id": "s1", "cwd": r.root, "hook_event_name": event,
                           "tool_name": "Bash", "tool_input": {"command": cmd},
                           "tool_use_id": id});
        if event == "PostToolUse" {
            p["tool_response"] = json!({"stdout": "", "stderr": "", "interrupted": false});
        }
        hook(&r, "claude", event, &p)
    };
    let (out, _) = call("PreToolUse", "t1", "touch a.txt");
    assert!(out.contains("\"ask\""), "{out}");
    let pending = r.json(&["approvals"]);
    assert_eq!(pending.as_array().map(Vec::len), Some(1), "{pending}");
    // The person said yes in Claude Code's own prompt: the tool ran.
    r.write("a.txt", "");
    call("PostToolUse", "t1", "touch a.txt");
    assert_eq!(r.json(&["approvals"]), json!([]));
    let all = r.json(&["approvals", "--all"]);
    assert_eq!(all[0]["state"], "granted", "{all}");
    assert_eq!(all[0]["decided_by"], "claude (its own prompt)", "{all}");

    // A request a person answered through horde first keeps that answer.
    let (out, _) = call("PreToolUse", "t2", "touch b.txt");
    assert!(out.contains("\"ask\""), "{out}");
    let id = r.json(&["approvals"])[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    r.ok(&["reject", &id, "--reason", "not b"]);
    call("PostToolUse", "t2", "touch b.txt");
    let all = r.json(&["approvals", "--all"]);
    let b = all
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["id"] == id.as_str())
        .expect("b's request");
    assert_eq!(b["state"], "denied", "{all}");
    r.ok(&["verify"]);
}
