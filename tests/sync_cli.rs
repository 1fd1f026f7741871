//! `horde remote`, `sync`, `status`, `clone`, `conflicts` and `resolve` from the user's side,
//! against a real `horde-cloud`: the happy paths, conflicts both ways, three-way merges, and
//! bad input (which must change nothing).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use horde_e2e::{Cloud, binary};
use serde_json::Value;

struct Dev {
    dir: PathBuf,
    home: PathBuf,
}

fn run(dir: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new(binary("horde"))
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("HOME", home)
        .env("USER", "tester")
        .env_remove("HORDE_API_KEY")
        .output()
        .expect("run horde")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Dev {
    fn new(root: &Path, name: &str) -> Dev {
        let home = root.join(format!("home-{name}"));
        std::fs::create_dir_all(&home).expect("home");
        Dev {
            dir: root.join(name),
            home,
        }
    }
    fn horde(&self, args: &[&str]) -> Output {
        run(&self.dir, &self.home, args)
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.horde(args);
        assert!(o.status.success(), "horde {args:?}: {}", text(&o));
        text(&o)
    }
    fn json(&self, args: &[&str]) -> Value {
        let o = self.horde(args);
        assert!(
            o.status.success() || o.status.code() == Some(3),
            "horde {args:?}: {}",
            text(&o)
        );
        serde_json::from_slice(&o.stdout).expect("json output")
    }
    fn read(&self, p: &str) -> String {
        std::fs::read_to_string(self.dir.join(p)).expect("read")
    }
    fn write(&self, p: &str, s: &str) {
        std::fs::write(self.dir.join(p), s).expect("write");
    }
}

fn signup(cloud: &Cloud, tenant: &str) -> String {
    let r = cloud.api(None).post(
        "/v1/signup",
        &serde_json::json!({"tenant": tenant, "email": "admin@example.com"}),
    );
    assert_eq!(r.status, 201, "signup: {}", r.body);
    r.json["api_key"].as_str().expect("api_key").to_owned()
}

/// A first device with a project synced to `cloud`, and a second one cloned from it.
fn two_devices(cloud: &Cloud, root: &Path, key: &str) -> (Dev, Dev, String) {
    let a = Dev::new(root, "a");
    std::fs::create_dir_all(&a.dir).expect("dir");
    a.write("f.txt", "one\ntwo\nthree\nfour\nfive\n");
    a.ok(&["init"]);
    a.ok(&["remote", "add", "origin", &cloud.url, "--key", key]);
    a.ok(&["sync"]);
    let project = a.json(&["status", "--json"])["project_id"]
        .as_str()
        .expect("project")
        .to_owned();
    let b = Dev::new(root, "b");
    let o = run(
        root,
        &b.home,
        &[
            "clone",
            &cloud.url,
            &project,
            b.dir.to_str().expect("utf-8"),
            "--key",
            key,
        ],
    );
    assert!(o.status.success(), "clone: {}", text(&o));
    (a, b, project)
}

#[test]
fn sync_clone_status_and_conflicts() {
    let cloud = Cloud::start();
    let key = signup(&cloud, "acme");
    let root = tempfile::tempdir().expect("tempdir");
    let (a, b, _) = two_devices(&cloud, root.path(), &key);
    assert_eq!(b.read("f.txt"), a.read("f.txt"));
    let st = a.json(&["status", "--json"]);
    assert_eq!(st["remote"]["pending_events"], 0, "{st}");
    assert_eq!(st["remote"]["reachable"], true, "{st}");

    // Plain propagation: a new file on A appears on B.
    a.write("new.txt", "from a\n");
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    assert_eq!(b.read("new.txt"), "from a\n");
    // Seqs count per device: with two in the log, each line says whose event it is.
    let short = |dev: &Dev| {
        let id = dev.json(&["status", "--json"])["device"]
            .as_str()
            .expect("device")
            .to_owned();
        id[id.len() - 8..].to_owned()
    };
    let log = b.ok(&["log"]);
    assert_ne!(short(&a), short(&b), "the two devices are told apart");
    for d in [short(&a), short(&b)] {
        assert!(log.contains(&format!("{d}#")), "{d} in:\n{log}");
    }

    // Edits to different lines of one file merge three-way on both sides.
    a.write("f.txt", "ONE\ntwo\nthree\nfour\nfive\n");
    b.write("f.txt", "one\ntwo\nthree\nfour\nFIVE\n");
    a.ok(&["sync"]);
    let out = b.horde(&["sync"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a conflict exits 3: {}",
        text(&out)
    );
    assert!(text(&out).contains("merged (three-way)"), "{}", text(&out));
    assert_eq!(b.read("f.txt"), "ONE\ntwo\nthree\nfour\nFIVE\n");
    a.horde(&["sync"]);
    assert_eq!(a.read("f.txt"), "ONE\ntwo\nthree\nfour\nFIVE\n");

    // The same line on both: the later change in the cloud's order is the head.
    a.write("new.txt", "a's version\n");
    b.write("new.txt", "b's version\n");
    a.ok(&["sync"]);
    let out = b.horde(&["sync"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(
        b.read("new.txt"),
        "b's version\n",
        "B's change went to the cloud later"
    );
    let c = b.json(&["conflicts", "--json"]);
    let on_new: Vec<&Value> = c
        .as_array()
        .expect("list")
        .iter()
        .filter(|c| c["path"] == "new.txt")
        .collect();
    assert_eq!(on_new.len(), 1, "{c}");
    assert_eq!(on_new[0]["head"], "ours");
    let out = a.horde(&["sync"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(
        a.read("new.txt"),
        "b's version\n",
        "A takes the later change"
    );
    let c = a.json(&["conflicts", "--json"]);
    assert!(
        c.as_array()
            .expect("list")
            .iter()
            .any(|c| c["path"] == "new.txt" && c["head"] == "theirs"),
        "{c}"
    );

    // A settles it with its own version; B takes the resolution as a plain change.
    a.ok(&["resolve", "new.txt", "--take", "ours"]);
    assert_eq!(a.read("new.txt"), "a's version\n");
    let open = a.json(&["conflicts", "--json"]);
    assert!(
        !open
            .as_array()
            .expect("list")
            .iter()
            .any(|c| c["path"] == "new.txt"),
        "{open}"
    );
    let all = a.json(&["conflicts", "--all", "--json"]);
    assert!(
        all.as_array()
            .expect("list")
            .iter()
            .any(|c| c["path"] == "new.txt" && !c["resolved_by"].is_null()),
        "{all}"
    );
    let log = a.ok(&["log", "-n", "5"]);
    assert!(
        log.contains("resolved the conflict on new.txt: took ours"),
        "{log}"
    );
    a.ok(&["sync"]);
    b.horde(&["sync"]);
    assert_eq!(b.read("new.txt"), "a's version\n");
    // A file as the resolution.
    let r = root.path().join("resolution.txt");
    std::fs::write(&r, "hand-merged\n").expect("write");
    b.ok(&["resolve", "new.txt", "--take", r.to_str().expect("utf-8")]);
    assert_eq!(b.read("new.txt"), "hand-merged\n");
    b.ok(&["sync"]);
    a.horde(&["sync"]);
    assert_eq!(a.read("new.txt"), "hand-merged\n");
    for d in [&a, &b] {
        let v = d.ok(&["verify"]);
        assert!(
            v.contains("ok") || v.contains("OK") || v.contains("verified"),
            "{v}"
        );
        assert_eq!(d.json(&["status", "--json"])["remote"]["pending_events"], 0);
    }
}

#[test]
fn bad_input_changes_nothing() {
    let cloud = Cloud::start();
    let key = signup(&cloud, "acme");
    let root = tempfile::tempdir().expect("tempdir");
    let a = Dev::new(root.path(), "a");
    std::fs::create_dir_all(&a.dir).expect("dir");
    a.write("f.txt", "x\n");
    a.ok(&["init"]);

    let o = a.horde(&["sync"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no remote"), "{}", text(&o));
    for (url, why) in [
        ("ftp://host", "http"),
        ("http://", "not a cloud URL"),
        ("example.com", "http"),
    ] {
        let o = a.horde(&["remote", "add", "origin", url, "--key", &key]);
        assert!(!o.status.success(), "{url}");
        assert!(text(&o).contains(why), "{url}: {}", text(&o));
    }
    let o = a.horde(&["remote", "add", "bad name", &cloud.url]);
    assert!(
        !o.status.success() && text(&o).contains("remote name"),
        "{}",
        text(&o)
    );
    assert!(a.ok(&["remote", "list"]).contains("No remotes"));

    // Unreachable: the sync fails with a clear message after its retries, nothing is marked.
    a.ok(&[
        "remote",
        "add",
        "origin",
        "http://127.0.0.1:9",
        "--key",
        &key,
    ]);
    let o = a.horde(&["remote", "add", "second", &cloud.url]);
    assert!(
        !o.status.success() && text(&o).contains("one cloud"),
        "{}",
        text(&o)
    );
    let o = a.horde(&["sync"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("cannot reach http://127.0.0.1:9"),
        "{}",
        text(&o)
    );
    let st = a.json(&["status", "--json"]);
    assert_eq!(st["remote"]["reachable"], false, "{st}");
    assert!(
        st["remote"]["pending_events"].as_u64().expect("pending") > 0,
        "{st}"
    );
    assert!(st["remote"]["last_success_at"].is_null());
    assert!(
        st["remote"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot reach"))
    );

    // A wrong key: refused, nothing marked; then the right remote sends everything.
    a.ok(&["remote", "remove", "origin"]);
    a.ok(&["remote", "add", "origin", &cloud.url, "--key", "hk_wrong"]);
    let o = a.horde(&["sync"]);
    assert!(
        !o.status.success() && text(&o).contains("401"),
        "{}",
        text(&o)
    );
    let pending = a.json(&["status", "--json"])["remote"]["pending_events"].clone();
    assert!(pending.as_u64().expect("pending") > 0);
    a.ok(&["remote", "remove", "origin"]);
    a.ok(&["remote", "add", "origin", &cloud.url, "--key", &key]);
    a.ok(&["sync"]);
    assert_eq!(a.json(&["status", "--json"])["remote"]["pending_events"], 0);
    let project = a.json(&["status", "--json"])["project_id"]
        .as_str()
        .expect("project")
        .to_owned();

    // Clones that cannot work leave nothing behind.
    let b = Dev::new(root.path(), "b");
    let target = root.path().join("target");
    let t = target.to_str().expect("utf-8");
    for (args, why) in [
        (
            vec!["clone", &cloud.url, &project, t, "--key", "hk_wrong"],
            "401",
        ),
        (
            vec![
                "clone",
                &cloud.url,
                "01a20000-0000-7000-8000-000000000000",
                t,
                "--key",
                &key,
            ],
            "404",
        ),
        (
            vec!["clone", &cloud.url, "not-a-uuid", t, "--key", &key],
            "not a project id",
        ),
        (
            vec!["clone", "http://127.0.0.1:9", &project, t, "--key", &key],
            "cannot reach",
        ),
    ] {
        let o = run(root.path(), &b.home, &args);
        assert!(!o.status.success(), "{args:?}");
        assert!(text(&o).contains(why), "{args:?}: {}", text(&o));
        assert!(!target.exists(), "{args:?} left {t} behind");
    }
    std::fs::create_dir_all(&target).expect("dir");
    std::fs::write(target.join("keep.txt"), "mine").expect("write");
    let o = run(
        root.path(),
        &b.home,
        &["clone", &cloud.url, &project, t, "--key", &key],
    );
    assert!(
        !o.status.success() && text(&o).contains("not empty"),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read_dir(&target).expect("dir").count(), 1);

    let o = a.horde(&["resolve", "f.txt", "--take", "ours"]);
    assert!(
        !o.status.success() && text(&o).contains("no open conflict"),
        "{}",
        text(&o)
    );
    let o = a.horde(&["resolve", "f.txt", "--take", "/nonexistent/file"]);
    assert!(
        !o.status.success() && text(&o).contains("ours, theirs"),
        "{}",
        text(&o)
    );
    a.ok(&["verify"]);
}

#[test]
fn watch_sends_events_as_they_are_written() {
    let cloud = Cloud::start();
    let key = signup(&cloud, "acme");
    let root = tempfile::tempdir().expect("tempdir");
    let (a, b, _) = two_devices(&cloud, root.path(), &key);
    let mut watch = Command::new(binary("horde"))
        .arg("-C")
        .arg(&b.dir)
        .args(["sync", "--watch", "--interval", "1"])
        .env("HOME", &b.home)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start sync --watch");
    // B records; the watcher sends it without being asked. A's change arrives at B too.
    b.write("from-b.txt", "b\n");
    b.ok(&["snapshot"]);
    a.write("from-a.txt", "a\n");
    a.ok(&["sync"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        a.ok(&["sync"]);
        if a.dir.join("from-b.txt").exists() && b.dir.join("from-a.txt").exists() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sync --watch did not exchange the changes"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    // SIGTERM ends it cleanly.
    horde_e2e::signal(watch.id(), libc::SIGTERM);
    let status = watch.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    assert_eq!(b.json(&["status", "--json"])["remote"]["pending_events"], 0);
}
