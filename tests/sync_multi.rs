//! Time travel across devices: 1–3 real `horde` devices of one project record random edits
//! and sync with a real `horde-cloud` in random orders. For every point a device recorded,
//! the tree it had then is kept; at the end every such point is restored on every device
//! (`horde restore --at EVENT --to DIR`) and from the cloud (`GET …/restore?at=EVENT`), and
//! each must equal the kept tree. The devices' trees also converge after a last round.
//!
//! Seeds: `HORDE_MULTI_SEEDS` (default 3), one seed with `HORDE_MULTI_SEED=N`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use horde_e2e::{Cloud, binary};
use serde_json::Value;

type Tree = BTreeMap<String, Vec<u8>>;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Device {
    dir: PathBuf,
    home: PathBuf,
    id: String,
}

impl Device {
    fn horde(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(binary("horde"))
            .arg("-C")
            .arg(&self.dir)
            .args(args)
            .env("HOME", &self.home)
            .env("USER", "tester")
            .env_remove("HORDE_API_KEY")
            .output()
            .expect("run horde");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success() || out.status.code() == Some(3), text)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, text) = self.horde(args);
        assert!(ok, "horde {args:?} failed: {text}");
        text
    }

    /// The id of this device's latest own event.
    fn last_event(&self) -> Option<String> {
        let conn = rusqlite::Connection::open(self.dir.join(".horde/horde.db")).expect("db");
        let dev = uuid::Uuid::parse_str(&self.id).expect("device id");
        conn.query_row(
            "SELECT event_id FROM events WHERE device_id = ?1 ORDER BY id DESC LIMIT 1",
            [dev.as_bytes().to_vec()],
            |r| r.get::<_, Vec<u8>>(0),
        )
        .ok()
        .map(|b| uuid::Uuid::from_slice(&b).expect("uuid").to_string())
    }
}

fn walk(root: &Path) -> Tree {
    fn visit(root: &Path, dir: &Path, out: &mut Tree) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            if rel == ".horde" {
                continue;
            }
            if p.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                visit(root, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).expect("read file"));
            }
        }
    }
    let mut t = Tree::new();
    visit(root, root, &mut t);
    t
}

fn untar(bytes: &[u8], into: &Path) -> Tree {
    let mut a = tar::Archive::new(bytes);
    a.unpack(into).expect("unpack restore tar");
    walk(into)
}

fn edit(rng: &mut Rng, dir: &Path) {
    const NAMES: &[&str] = &["a.txt", "b.txt", "d/c.txt", "d/e.txt"];
    for _ in 0..=rng.below(2) {
        let name = NAMES[rng.below(NAMES.len() as u64) as usize];
        let p = dir.join(name);
        match rng.below(5) {
            0 if p.exists() => std::fs::remove_file(&p).expect("remove"),
            1 if p.exists() => {
                // Change one line of ten: edits on other lines merge three-way.
                let text = std::fs::read_to_string(&p).expect("read");
                let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
                if !lines.is_empty() {
                    let i = rng.below(lines.len() as u64) as usize;
                    lines[i] = format!("edit {}", rng.next() % 1000);
                }
                std::fs::write(&p, lines.join("\n") + "\n").expect("write");
            }
            _ => {
                std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                let body: String = (0..10)
                    .map(|i| format!("line {i} {}\n", rng.next() % 97))
                    .collect();
                std::fs::write(&p, body).expect("write");
            }
        }
    }
}

fn run_seed(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let cloud = Cloud::start();
    let r = cloud.api(None).post(
        "/v1/signup",
        &serde_json::json!({"tenant": "acme", "email": "admin@example.com"}),
    );
    assert_eq!(r.status, 201, "signup: {}", r.body);
    let key = r.json["api_key"].as_str().expect("api_key").to_owned();
    let api = cloud.api(Some(&key));
    let work = tempfile::tempdir().expect("tempdir");
    let n = 1 + rng.below(3) as usize;
    let mk = |i: usize| {
        let home = work.path().join(format!("home{i}"));
        std::fs::create_dir_all(&home).expect("home");
        Device {
            dir: work.path().join(format!("dev{i}")),
            home,
            id: String::new(),
        }
    };
    let mut devs: Vec<Device> = Vec::new();
    let first = mk(0);
    std::fs::create_dir_all(&first.dir).expect("dir");
    std::fs::write(first.dir.join("a.txt"), "line 0\nline 1\nline 2\n").expect("seed file");
    first.ok(&["init"]);
    first.ok(&["remote", "add", "origin", &cloud.url, "--key", &key]);
    first.ok(&["sync"]);
    let status: Value =
        serde_json::from_str(&first.ok(&["status", "--json"])).expect("status json");
    let project = status["project_id"].as_str().expect("project").to_owned();
    devs.push(first);
    for i in 1..n {
        let d = mk(i);
        let out = Command::new(binary("horde"))
            .args(["clone", &cloud.url, &project])
            .arg(&d.dir)
            .args(["--key", &key])
            .env("HOME", &d.home)
            .output()
            .expect("clone");
        assert!(
            out.status.success(),
            "clone: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        devs.push(d);
    }
    for d in &mut devs {
        let s: Value = serde_json::from_str(&d.ok(&["status", "--json"])).expect("status");
        d.id = s["device"].as_str().expect("device").to_owned();
    }
    // (device index, event id) → the tree that device had right after it.
    let mut points: Vec<(usize, String, Tree)> = Vec::new();
    let note = |d: &Device, i: usize, points: &mut Vec<(usize, String, Tree)>| {
        if let Some(ev) = d.last_event() {
            points.push((i, ev, walk(&d.dir)));
        }
    };
    for _ in 0..10 {
        let i = rng.below(n as u64) as usize;
        let d = &devs[i];
        edit(&mut rng, &d.dir);
        if rng.below(2) == 0 {
            d.ok(&["snapshot"]);
        } else {
            d.ok(&["sync"]);
        }
        note(d, i, &mut points);
    }
    // Everyone sees everything: two rounds so that what a merge records reaches the others.
    for _ in 0..2 {
        for (i, d) in devs.iter().enumerate() {
            d.ok(&["sync"]);
            note(d, i, &mut points);
        }
    }
    // A last pull (nothing recorded) so that every device has every point.
    for d in &devs {
        d.ok(&["sync", "--no-merge"]);
    }
    let last = walk(&devs[n - 1].dir);
    for d in &devs {
        assert_eq!(
            walk(&d.dir),
            last,
            "seed {seed}: the trees did not converge"
        );
    }
    for (k, (i, ev, tree)) in points.iter().enumerate() {
        for (j, d) in devs.iter().enumerate() {
            let to = work.path().join(format!("r{k}-{j}"));
            d.ok(&["restore", "--at", ev, "--to", to.to_str().expect("utf-8")]);
            assert_eq!(
                &walk(&to),
                tree,
                "seed {seed}: restore on device {j} at device {i}'s event {ev}"
            );
        }
        let r = api.get(&format!("/v1/projects/{project}/restore?at={ev}"));
        assert_eq!(
            r.status, 200,
            "seed {seed}: cloud restore at {ev}: {}",
            r.body
        );
        let to = work.path().join(format!("c{k}"));
        std::fs::create_dir_all(&to).expect("dir");
        assert_eq!(
            &untar(&r.bytes, &to),
            tree,
            "seed {seed}: cloud restore at device {i}'s event {ev}"
        );
    }
    eprintln!("seed {seed}: {n} devices, {} points checked", points.len());
}

#[test]
fn every_point_restores_on_every_device_and_from_the_cloud() {
    if let Ok(s) = std::env::var("HORDE_MULTI_SEED") {
        run_seed(s.parse().expect("HORDE_MULTI_SEED is a number"));
        return;
    }
    let seeds: u64 = std::env::var("HORDE_MULTI_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for seed in 1..=seeds {
        run_seed(seed);
    }
}
