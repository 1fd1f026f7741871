//! Approvals from another device: an agent on the edge asks and waits; a person decides
//! through the cloud's API with their own key; the edge, running `horde sync --watch`, picks
//! the decision up from the live decision stream and the waiting agent proceeds. Bad input
//! (viewer keys, other tenants, unknown ids, second decisions, expired requests, rules too
//! broad to remember) is refused and changes nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use horde_e2e::{Api, Cloud, binary};
use serde_json::{Value, json};

struct Edge {
    dir: PathBuf,
    home: PathBuf,
}

impl Edge {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary("horde"));
        c.arg("-C")
            .arg(&self.dir)
            .args(args)
            .env("HOME", &self.home)
            .env("USER", "tester")
            .env_remove("HORDE_API_KEY")
            .env_remove("HORDE_CONFIG_DIR");
        c
    }
    fn ok(&self, args: &[&str]) -> Output {
        let o = self.cmd(args).output().expect("run horde");
        assert!(o.status.success(), "horde {args:?}: {}", text(&o));
        o
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `f` until it gives a value (30 s at most).
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn approvals(api: &Api, project: &str, state: &str) -> Vec<Value> {
    let r = api.get(&format!("/v1/projects/{project}/approvals?state={state}"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json["approvals"].as_array().expect("approvals").clone()
}

/// The request on `subject`, once the cloud has it.
fn synced_request(api: &Api, project: &str, subject: &str) -> Value {
    eventually(&format!("request for {subject:?} in the cloud"), || {
        approvals(api, project, "all")
            .into_iter()
            .find(|a| a["subject"] == subject)
    })
}

fn request(edge: &Edge, ttl: Option<&str>, line: &str) -> String {
    let mut c = edge.cmd(&[
        "policy",
        "check",
        "--json",
        "--role",
        "builder",
        "--session",
        "s1",
        "--request",
        "exec",
        "-c",
        line,
    ]);
    if let Some(ttl) = ttl {
        c.env("HORDE_APPROVAL_TTL", ttl);
    }
    let o = c.output().expect("run horde");
    assert_eq!(o.status.code(), Some(5), "asks: {}", text(&o));
    let j: Value = serde_json::from_slice(&o.stdout).expect("json");
    j["request"]["id"].as_str().expect("request id").to_owned()
}

fn setup(root: &Path, cloud: &Cloud, key: &str) -> (Edge, String) {
    let edge = Edge {
        dir: root.join("repo"),
        home: root.join("home"),
    };
    std::fs::create_dir_all(&edge.dir).expect("dir");
    std::fs::create_dir_all(&edge.home).expect("home");
    std::fs::write(edge.dir.join("README.md"), "hello\n").expect("write");
    edge.ok(&["init"]);
    std::fs::create_dir_all(edge.dir.join(".horde/agents")).expect("agents dir");
    std::fs::write(
        edge.dir.join(".horde/agents/builder.yaml"),
        "role: builder\ntier: T2\nfiles:\n  read: ['**']\n  write: ['src/**']\ncommands:\n  allow: ['ls *']\n  ask: ['git push *', 'python3 *', 'cargo publish *']\n",
    )
    .expect("manifest");
    edge.ok(&["remote", "add", "origin", &cloud.url, "--key", key]);
    edge.ok(&["sync"]);
    let st: Value = serde_json::from_slice(&edge.ok(&["status", "--json"]).stdout).expect("json");
    (edge, st["project_id"].as_str().expect("project").to_owned())
}

#[test]
fn a_person_approves_from_another_device_and_the_waiting_agent_proceeds() {
    let cloud = Cloud::start();
    let acme = cloud.tenant("acme");
    let alice = acme.user_key("alice@example.com", "member");
    let viewer = acme.user_key("vic@example.com", "viewer");
    let other = cloud.tenant("globex");
    let root = tempfile::tempdir().expect("tempdir");
    let (edge, project) = setup(root.path(), &cloud, acme.api.key.as_deref().expect("key"));

    let _watch = Running(
        edge.cmd(&["sync", "--watch", "--interval", "3600"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sync --watch"),
    );
    let waiter = edge
        .cmd(&[
            "policy",
            "check",
            "--json",
            "--role",
            "builder",
            "--session",
            "s1",
            "--request",
            "--wait",
            "60",
            "exec",
            "--",
            "git",
            "push",
            "origin",
            "main",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the waiting agent");
    let req = synced_request(&alice, &project, "git push origin main");
    let id = req["id"].as_str().expect("id").to_owned();
    assert_eq!(req["state"], "pending", "{req}");
    assert_eq!(req["action"], "exec");
    assert_eq!(req["role"], "builder");
    let pending = approvals(&viewer, &project, "pending");
    assert!(
        pending.iter().any(|a| a["id"] == id.as_str()),
        "viewers read the list: {pending:?}"
    );

    let decide = |api: &Api, id: &str, body: Value| {
        api.post(&format!("/v1/projects/{project}/approvals/{id}"), &body)
    };
    // Refusals: nothing is decided by any of them.
    let r = decide(&viewer, &id, json!({"decision": "grant"}));
    assert_eq!(r.status, 403, "a viewer cannot decide: {}", r.body);
    let r = decide(&other.api, &id, json!({"decision": "grant"}));
    assert_eq!(r.status, 404, "another tenant: {}", r.body);
    let r = other.api.get(&format!("/v1/projects/{project}/approvals"));
    assert_eq!(r.status, 404, "another tenant lists nothing: {}", r.body);
    let r = decide(
        &alice,
        "00112233445566778899aabbccddeeff",
        json!({"decision": "grant"}),
    );
    assert_eq!(r.status, 404, "unknown id: {}", r.body);
    let r = decide(&alice, "not-an-id", json!({"decision": "grant"}));
    assert_eq!(r.status, 404, "malformed id: {}", r.body);
    let r = decide(&alice, &id, json!({"decision": "maybe"}));
    assert_eq!(r.status, 400, "{}", r.body);
    let r = decide(
        &alice,
        &id,
        json!({"decision": "deny", "remember": "exact"}),
    );
    assert_eq!(r.status, 400, "denials are not remembered: {}", r.body);
    let r = decide(
        &alice,
        &id,
        json!({"decision": "grant", "remember": "prefix", "for": "everywhere"}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = decide(
        &alice,
        &id,
        json!({"decision": "grant", "reason": "x".repeat(3000)}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        synced_request(&alice, &project, "git push origin main")["state"],
        "pending"
    );

    // A rule too broad to remember (any use of an interpreter) is refused with the reason.
    let id2 = request(&edge, None, "python3 tools/release.py");
    synced_request(&alice, &project, "python3 tools/release.py");
    let r = decide(
        &alice,
        &id2,
        json!({"decision": "grant", "remember": "program", "for": "repo"}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.code(), "too_broad", "{}", r.body);
    assert!(r.body.contains("python3"), "names the program: {}", r.body);

    // Alice grants and remembers the subcommand for the repository.
    let r = decide(
        &alice,
        &id,
        json!({"decision": "grant", "reason": "release day", "remember": "prefix", "for": "repo"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["state"], "granted", "{}", r.body);
    assert_eq!(r.json["decided_in"], "cloud", "{}", r.body);
    assert_eq!(r.json["decided_by"], "alice@example.com", "{}", r.body);
    assert_eq!(r.json["pattern"], "git push origin *", "{}", r.body);

    // The waiting agent proceeds.
    let decided = Instant::now();
    let out = waiter.wait_with_output().expect("the agent waits");
    eprintln!(
        "the waiting agent proceeded {:.0} ms after the decision",
        decided.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(out.status.code(), Some(0), "allowed: {}", text(&out));
    let j: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["answer"]["state"], "granted", "{j}");
    assert_eq!(
        j["answer"]["decided_by"], "alice@example.com (cloud)",
        "{j}"
    );
    assert_eq!(j["answer"]["decision_reason"], "release day", "{j}");

    // A second decision is refused, whoever takes it.
    let r = decide(&acme.api, &id, json!({"decision": "deny"}));
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.code(), "already_decided", "{}", r.body);
    // The edge's answer comes back with sync: the log now decides.
    eventually("the edge's answer in the cloud's log", || {
        let r = synced_request(&alice, &project, "git push origin main");
        (r["decided_in"] == "log").then_some(())
    });
    let r = decide(&alice, &id, json!({"decision": "grant"}));
    assert_eq!(r.code(), "already_decided", "{}", r.body);

    // Remembered for the repository: the same request is not asked again, with other
    // arguments either (a prefix rule), in another session.
    let o = edge
        .cmd(&[
            "policy",
            "check",
            "--json",
            "--role",
            "builder",
            "--session",
            "s2",
            "exec",
            "--",
            "git",
            "push",
            "origin",
            "v2",
        ])
        .output()
        .expect("check");
    assert_eq!(o.status.code(), Some(0), "remembered: {}", text(&o));

    // An expired request cannot be decided.
    let id3 = request(&edge, Some("1"), "cargo publish");
    synced_request(&alice, &project, "cargo publish");
    std::thread::sleep(Duration::from_millis(1200));
    let r = decide(&alice, &id3, json!({"decision": "grant"}));
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.code(), "expired", "{}", r.body);
    assert!(
        approvals(&alice, &project, "pending")
            .iter()
            .all(|a| a["id"] != id3.as_str()),
        "expired requests are not pending"
    );
}

/// A decision taken while no `--watch` runs is recorded by the next one-shot `horde sync`.
#[test]
fn one_shot_sync_records_decisions_taken_in_the_cloud() {
    let cloud = Cloud::start();
    let acme = cloud.tenant("acme");
    let alice = acme.user_key("alice@example.com", "member");
    let root = tempfile::tempdir().expect("tempdir");
    let (edge, project) = setup(root.path(), &cloud, acme.api.key.as_deref().expect("key"));
    let id = request(&edge, None, "git push");
    edge.ok(&["sync"]);
    let r = alice.post(
        &format!("/v1/projects/{project}/approvals/{id}"),
        &json!({"decision": "deny", "reason": "not today"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = alice.get(&format!("/v1/projects/{project}/approvals/decisions"));
    assert_eq!(
        r.json["decisions"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.body
    );

    let out = edge.ok(&["sync"]);
    assert!(
        text(&out).contains("denied by alice@example.com"),
        "{}",
        text(&out)
    );
    let o = edge.ok(&["approvals", "--all", "--json"]);
    let all: Value = serde_json::from_slice(&o.stdout).expect("json");
    let mine = all
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["id"] == id.as_str())
        .expect("the request")
        .clone();
    assert_eq!(mine["state"], "denied", "{mine}");
    assert_eq!(mine["decision_reason"], "not today", "{mine}");
    // Two people deciding one request at once: exactly one decision is taken.
    let id2 = request(&edge, None, "cargo publish");
    edge.ok(&["sync"]);
    let bob = acme.user_key("bob@example.com", "member");
    let answers: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|i| {
                let (api, project, id2) = (if i % 2 == 0 { &alice } else { &bob }, &project, &id2);
                s.spawn(move || {
                    api.post(
                        &format!("/v1/projects/{project}/approvals/{id2}"),
                        &json!({"decision": if i % 3 == 0 { "grant" } else { "deny" }}),
                    )
                    .status
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert_eq!(
        answers.iter().filter(|s| **s == 200).count(),
        1,
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|s| *s == 200 || *s == 409),
        "{answers:?}"
    );
    edge.ok(&["sync"]);

    // Recorded and sent back: nothing is left for edges to record.
    let r = alice.get(&format!("/v1/projects/{project}/approvals/decisions"));
    assert_eq!(r.json["decisions"], json!([]), "{}", r.body);
    assert_eq!(
        synced_request(&alice, &project, "git push")["decided_in"],
        "log"
    );
}
