//! Time travel from the outside: `GET /v1/projects/{id}/restore` (the tree at a version, a
//! time or an event, as a tar archive) and `POST /v1/projects/{id}/timelines` (forks),
//! against the real `horde-cloud`. Every archive is unpacked with the `tar` crate and
//! compared byte for byte, mode for mode and link for link with the tree the history built.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use horde_core::proto::{self, FileKind, event_body::Payload, state_change::Op};
use horde_core::{BlobHash, EventId, ProjectId, TimelineId};
use horde_e2e::{Api, Cloud, Resp, SimDevice, ack};
use serde_json::{Value, json};

/// 2026-01-01T00:00:00Z in µs: the device clock the histories start at.
const T0: i64 = 1_767_225_600_000_000;
const HOUR: i64 = 3_600_000_000;

/// What a path is, as a tree holds it (links: their target's bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    File { mode: u32, content: Vec<u8> },
    Dir { mode: u32 },
    Link { target: Vec<u8> },
}

type Tree = BTreeMap<String, Node>;

/// Records a history the way the edge does (explicit directories, file and link renames,
/// deletes children first) and keeps the tree it must produce.
struct History<'a> {
    api: &'a Api,
    dev: SimDevice,
    tree: Tree,
    pending: Vec<proto::SignedEvent>,
    clock: i64,
    uploaded: HashSet<BlobHash>,
}

impl<'a> History<'a> {
    fn new(api: &'a Api, project: ProjectId, timeline: TimelineId, tree: Tree, clock: i64) -> Self {
        let dev = SimDevice::new(project, timeline);
        assert_eq!(dev.register(api).status, 201);
        History {
            api,
            dev,
            tree,
            pending: Vec::new(),
            clock,
            uploaded: HashSet::new(),
        }
    }

    fn record(&mut self, sc: proto::StateChange) {
        let ev = self.dev.event_at(Payload::StateChange(sc), self.clock);
        self.clock += 1_000;
        self.pending.push(ev);
    }

    /// Records a change whose blob is uploaded (unless `upload` is false).
    fn put(&mut self, op: Op, path: &str, kind: FileKind, mode: u32, content: &[u8], upload: bool) {
        let hash = BlobHash::of(content);
        if upload && self.uploaded.insert(hash) {
            let r = self
                .api
                .put_bytes(&format!("/v1/blobs/{hash}"), content.to_vec());
            assert!(r.status == 201 || r.status == 200, "upload: {}", r.body);
        }
        self.record(proto::StateChange {
            path: path.into(),
            op: op as i32,
            after_hash: hash.to_vec(),
            mode,
            size: content.len() as u64,
            kind: kind as i32,
            ..Default::default()
        });
    }

    fn op_for(&self, path: &str) -> Op {
        if self.tree.contains_key(path) {
            Op::Modify
        } else {
            Op::Create
        }
    }

    fn parent_exists(&self, path: &str) {
        if let Some((parent, _)) = path.rsplit_once('/') {
            assert!(
                matches!(self.tree.get(parent), Some(Node::Dir { .. })),
                "the test records {parent} before {path}"
            );
        }
    }

    fn dir(&mut self, path: &str, mode: u32) {
        self.parent_exists(path);
        self.record(proto::StateChange {
            path: path.into(),
            op: self.op_for(path) as i32,
            mode,
            kind: FileKind::Dir as i32,
            ..Default::default()
        });
        self.tree.insert(path.into(), Node::Dir { mode });
    }

    fn file(&mut self, path: &str, content: &[u8], mode: u32) {
        self.parent_exists(path);
        let op = self.op_for(path);
        self.put(op, path, FileKind::File, mode, content, true);
        self.tree.insert(
            path.into(),
            Node::File {
                mode,
                content: content.to_vec(),
            },
        );
    }

    fn link(&mut self, path: &str, target: &str) {
        self.parent_exists(path);
        let op = self.op_for(path);
        self.put(op, path, FileKind::Symlink, 0o777, target.as_bytes(), true);
        self.tree.insert(
            path.into(),
            Node::Link {
                target: target.as_bytes().to_vec(),
            },
        );
    }

    /// A mode change: the same content again with another mode.
    fn chmod(&mut self, path: &str, mode: u32) {
        match self.tree.get(path).cloned() {
            Some(Node::File { content, .. }) => self.file(path, &content, mode),
            Some(Node::Dir { .. }) => self.dir(path, mode),
            other => panic!("chmod of {path}: {other:?}"),
        }
    }

    /// Deletes `path` and what it holds, children first.
    fn delete(&mut self, path: &str) {
        let below = format!("{path}/");
        let doomed: Vec<String> = self
            .tree
            .keys()
            .filter(|p| *p == path || p.starts_with(&below))
            .rev()
            .cloned()
            .collect();
        assert!(!doomed.is_empty(), "delete of absent {path}");
        for p in doomed {
            let kind = match self.tree.remove(&p) {
                Some(Node::Dir { .. }) => FileKind::Dir,
                Some(Node::Link { .. }) => FileKind::Symlink,
                _ => FileKind::File,
            };
            self.record(proto::StateChange {
                path: p,
                op: Op::Delete as i32,
                kind: kind as i32,
                ..Default::default()
            });
        }
    }

    /// Renames a file or a link (the edge renames nothing else).
    fn rename(&mut self, from: &str, to: &str) {
        self.parent_exists(to);
        let node = self.tree.remove(from).expect("rename of an existing path");
        let (kind, mode, content) = match &node {
            Node::File { mode, content } => (FileKind::File, *mode, content.clone()),
            Node::Link { target } => (FileKind::Symlink, 0o777, target.clone()),
            Node::Dir { .. } => panic!("the edge renames files and links only"),
        };
        self.record(proto::StateChange {
            path: to.into(),
            op: Op::Rename as i32,
            from_path: from.into(),
            after_hash: BlobHash::of(&content).to_vec(),
            mode,
            size: content.len() as u64,
            kind: kind as i32,
            ..Default::default()
        });
        self.tree.insert(to.into(), node);
    }

    /// Sends what was recorded as one batch; the commit version it got and its event ids.
    fn sync(&mut self) -> (u64, Vec<EventId>) {
        let events = std::mem::take(&mut self.pending);
        let ids = events
            .iter()
            .map(|e| {
                let body = horde_core::decode_event(&e.body, &e.hash).expect("our own event");
                EventId::from_slice(&body.event_id).expect("an event id")
            })
            .collect();
        let a = ack(&self.api.sync(self.dev.project, self.dev.encoded(events)));
        let versions: BTreeSet<u64> = a.versionstamps.iter().map(|vs| version_of(vs)).collect();
        assert_eq!(versions.len(), 1, "a small batch is one commit");
        (versions.into_iter().next().expect("a version"), ids)
    }
}

fn version_of(vs: &[u8]) -> u64 {
    u64::from_be_bytes(vs[..8].try_into().expect("8 bytes"))
}

/// A restored archive: its tree (read from the archive and, identically, from the unpacked
/// directory), the entries' mtimes and the answer's headers.
struct Restored {
    tree: Tree,
    mtimes: BTreeSet<u64>,
    version: u64,
    anomalies: u64,
    raw: Vec<u8>,
}

fn header<'r>(r: &'r Resp, name: &str) -> &'r str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header: {:?}", r.headers))
}

/// GETs a restore, checks the answer, reads the archive and unpacks it.
fn restore(api: &Api, project: ProjectId, query: &str) -> Restored {
    let r = api.get(&format!("/v1/projects/{project}/restore{query}"));
    assert_eq!(r.status, 200, "restore{query}: {}", r.body);
    assert_eq!(header(&r, "content-type"), "application/x-tar");
    let version: u64 = header(&r, "x-horde-version").parse().expect("a version");
    assert_eq!(
        header(&r, "content-disposition"),
        format!("attachment; filename=\"horde-{project}-v{version}.tar\"")
    );
    let anomalies = header(&r, "x-horde-anomalies").parse().expect("a count");

    let mut tree = Tree::new();
    let mut mtimes = BTreeSet::new();
    let mut archive = tar::Archive::new(r.bytes.as_slice());
    for entry in archive.entries().expect("a tar archive") {
        let mut entry = entry.expect("a whole entry");
        let raw_path = entry.path_bytes().into_owned();
        let path = String::from_utf8(raw_path.clone()).expect("UTF-8 paths");
        let h = entry.header();
        let mode = h.mode().expect("mode") & 0o7777;
        mtimes.insert(h.mtime().expect("mtime"));
        let (path, node) = match h.entry_type() {
            tar::EntryType::Directory => {
                let path = path
                    .strip_suffix('/')
                    .unwrap_or_else(|| panic!("directory {path:?} ends with '/'"));
                (path.to_owned(), Node::Dir { mode })
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name_bytes().expect("a link target").into_owned();
                (path, Node::Link { target })
            }
            tar::EntryType::Regular => {
                let mut content = Vec::new();
                entry.read_to_end(&mut content).expect("content");
                (path, Node::File { mode, content })
            }
            other => panic!("{path}: unexpected entry type {other:?}"),
        };
        assert!(
            tree.insert(path.clone(), node).is_none(),
            "{path} twice in the archive"
        );
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let mut archive = tar::Archive::new(r.bytes.as_slice());
    archive.set_preserve_permissions(true);
    archive.unpack(dir.path()).expect("unpack");
    assert_eq!(walk(dir.path()), tree, "unpacked tree vs archive");
    Restored {
        tree,
        mtimes,
        version,
        anomalies,
        raw: r.bytes,
    }
}

/// The tree under `root` as it is on disk.
fn walk(root: &Path) -> Tree {
    fn visit(root: &Path, dir: &Path, out: &mut Tree) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("dir entry").path();
            let rel = p
                .strip_prefix(root)
                .expect("below the root")
                .to_str()
                .expect("UTF-8")
                .to_owned();
            let md = std::fs::symlink_metadata(&p).expect("lstat");
            let mode = md.permissions().mode() & 0o7777;
            let node = if md.file_type().is_symlink() {
                Node::Link {
                    target: std::fs::read_link(&p)
                        .expect("readlink")
                        .into_os_string()
                        .into_vec(),
                }
            } else if md.is_dir() {
                visit(root, &p, out);
                Node::Dir { mode }
            } else {
                Node::File {
                    mode,
                    content: std::fs::read(&p).expect("read"),
                }
            };
            out.insert(rel, node);
        }
    }
    let mut out = Tree::new();
    visit(root, root, &mut out);
    out
}

fn binary(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

fn timeline_of(r: &Resp) -> TimelineId {
    r.json["id"].as_str().expect("id").parse().expect("uuid")
}

#[test]
fn restores_every_point_and_forks() {
    let cloud = Cloud::start();
    let t = cloud.tenant("travel");
    let (project, main) = t.project("web");
    let mut h = History::new(&t.api, project, main, Tree::new(), T0);

    // v1: directories, an empty one, text, empty and binary files, modes, links.
    h.dir("src", 0o755);
    h.file("src/main.rs", b"fn main() {}\n", 0o644);
    h.file("README.md", b"# web\n", 0o644);
    h.dir("empty", 0o700);
    h.file("empty.txt", b"", 0o600);
    h.dir("bin", 0o750);
    h.file("bin/data.bin", &binary(300_000), 0o755);
    h.link("link", "src/main.rs");
    let (v1, _) = h.sync();
    let tree1 = h.tree.clone();

    // v2: modify, chmod, renames (a file, a link), deletes, an absolute link, more dirs.
    h.clock = T0 + HOUR;
    h.file("src/main.rs", b"fn main() { println!(\"two\"); }\n", 0o644);
    h.chmod("README.md", 0o444);
    h.dir("docs", 0o755);
    h.rename("README.md", "docs/README.md");
    h.rename("link", "docs/link");
    h.link("abs", "/etc/hosts");
    h.delete("empty.txt");
    h.dir("empty/nested", 0o755);
    h.dir("still-empty", 0o755);
    h.chmod("bin/data.bin", 0o644);
    h.file("docs/naïve file.txt", "é\u{0}\u{7f}".as_bytes(), 0o640);
    let (v2, ids2) = h.sync();
    let tree2 = h.tree.clone();

    // v3: a directory deleted with what it holds, a link retargeted and another turned into
    // a file, long names (GNU extensions), an empty file again.
    h.clock = T0 + 2 * HOUR;
    h.delete("bin");
    h.link("docs/link", "README.md");
    h.file("abs", b"no longer a link", 0o644);
    h.dir("deep", 0o755);
    let long = format!("deep/{}.txt", "x".repeat(120));
    h.file(&long, b"long name", 0o644);
    h.link("deep/far", &format!("../{}", "y".repeat(150)));
    h.file("empty.txt", b"", 0o644);
    h.chmod("empty", 0o755);
    let (v3, _) = h.sync();
    let tree3 = h.tree.clone();
    assert!(v1 < v2 && v2 < v3);

    // Every recorded version, and the latest.
    for (v, tree) in [(v1, &tree1), (v2, &tree2), (v3, &tree3)] {
        let r = restore(&t.api, project, &format!("?at={v}"));
        assert_eq!(r.version, v);
        assert_eq!(r.anomalies, 0);
        assert_eq!(&r.tree, tree, "restore at version {v}");
    }
    let latest = restore(&t.api, project, "");
    assert_eq!((latest.version >= v3, &latest.tree), (true, &tree3));
    let explicit = restore(&t.api, project, &format!("?at={v2}&timeline={main}"));
    assert_eq!(explicit.tree, tree2);
    let nothing = restore(&t.api, project, "?at=0");
    assert!(nothing.tree.is_empty());
    assert_eq!(nothing.raw.len(), 1024, "only the end-of-archive blocks");
    // A viewer reads.
    let viewer = t.user_key("viewer@example.com", "viewer");
    assert_eq!(restore(&viewer, project, &format!("?at={v1}")).tree, tree1);

    // By time (the devices' clocks): entries carry the time asked.
    let by_time = restore(&t.api, project, "?at=2026-01-01T00:30:00Z");
    assert_eq!((by_time.version, &by_time.tree), (v1, &tree1));
    assert_eq!(
        by_time.mtimes,
        BTreeSet::from([(T0 / 1_000_000 + 1_800) as u64])
    );
    let by_time = restore(&t.api, project, "?at=2026-01-01T02:30:00%2B01:00");
    assert_eq!((by_time.version, &by_time.tree), (v2, &tree2));
    let before = restore(&t.api, project, "?at=2025-06-01T00:00:00Z");
    assert_eq!((before.version, before.tree.len()), (0, 0));
    // By event id: the tree as the event's device had it right after that event (its
    // commit's version; the rest of the commit is not in it).
    let last2 = ids2.last().expect("events");
    let by_event = restore(&t.api, project, &format!("?at={last2}"));
    assert_eq!((by_event.version, &by_event.tree), (v2, &tree2));
    let mut after_first = tree1.clone();
    after_first.insert("src/main.rs".into(), tree2["src/main.rs"].clone());
    let by_event = restore(&t.api, project, &format!("?at={}", ids2[0]));
    assert_eq!((by_event.version, &by_event.tree), (v2, &after_first));

    // Fork at v1 under an id chosen by the client (an edge's own timeline id).
    let fork_id = TimelineId::new();
    let path = format!("/v1/projects/{project}/timelines");
    let f = t.api.post(
        &path,
        &json!({ "at": v1, "timeline_id": fork_id.to_string() }),
    );
    assert_eq!(f.status, 201, "{}", f.body);
    assert_eq!(timeline_of(&f), fork_id);
    assert_eq!(f.json["parent"], main.to_string());
    assert_eq!(f.json["fork_version"], v1);
    // Idempotent: the same fork again, or without a point; another point is a conflict.
    let again = t.api.post(
        &path,
        &json!({ "at": v1.to_string(), "timeline_id": fork_id.to_string(), "parent": main.to_string() }),
    );
    assert_eq!(
        (again.status, &again.json),
        (200, &f.json),
        "{}",
        again.body
    );
    let unpinned = t
        .api
        .post(&path, &json!({ "timeline_id": fork_id.to_string() }));
    assert_eq!((unpinned.status, &unpinned.json), (200, &f.json));
    let other = t.api.post(
        &path,
        &json!({ "at": v2, "timeline_id": fork_id.to_string() }),
    );
    assert_eq!(
        (other.status, other.code()),
        (409, "timeline_exists"),
        "{}",
        other.body
    );
    assert_eq!(other.json["error"]["fork_version"], v1);
    let listed = t.api.get(&path);
    assert!(
        listed.json["timelines"]
            .as_array()
            .expect("timelines")
            .contains(&f.json),
        "{}",
        listed.body
    );

    // The fork records its own history; main is untouched.
    let mut g = History::new(&t.api, project, fork_id, tree1.clone(), T0 + 3 * HOUR);
    g.file("src/main.rs", b"fn main() { fork() }\n", 0o755);
    g.file("fork.txt", b"only on the fork", 0o644);
    g.delete("empty");
    g.rename("link", "link2");
    let (vf, fork_ids) = g.sync();
    let fork_tree = g.tree.clone();
    let r = restore(&t.api, project, &format!("?timeline={fork_id}"));
    assert_eq!(r.tree, fork_tree);
    let r = restore(&t.api, project, &format!("?timeline={fork_id}&at={v3}"));
    assert_eq!(r.tree, tree1, "the fork before its own changes: main at v1");
    assert_eq!(restore(&t.api, project, "").tree, tree3);
    assert_eq!(restore(&t.api, project, &format!("?at={vf}")).tree, tree3);
    // An event of the fork names the fork's timeline.
    let fork_events = t
        .api
        .get(&format!("/v1/projects/{project}/events?timeline={fork_id}"));
    let fork_events = fork_events.json["events"].as_array().expect("events");
    let fork_event = fork_events.last().expect("an event")["id"]
        .as_str()
        .expect("an id");
    assert_eq!(fork_event, fork_ids.last().expect("events").to_string());
    let r = restore(&t.api, project, &format!("?at={fork_event}"));
    assert_eq!(r.version, vf);
    assert_eq!(r.tree, fork_tree);

    // Forks at an event (its timeline by default) and at a time.
    let at_event = t.api.post(&path, &json!({ "at": ids2[0].to_string() }));
    assert_eq!(at_event.status, 201, "{}", at_event.body);
    assert_eq!(
        (&at_event.json["parent"], &at_event.json["fork_version"]),
        (&json!(main.to_string()), &json!(v2))
    );
    let at_time = t.api.post(&path, &json!({ "at": "2026-01-01T00:30:00Z" }));
    assert_eq!(at_time.json["fork_version"], v1, "{}", at_time.body);
    let r = restore(
        &t.api,
        project,
        &format!("?timeline={}", timeline_of(&at_time)),
    );
    assert_eq!(r.tree, tree1);
    // A fork of the fork.
    let nested = t
        .api
        .post(&path, &json!({ "parent": fork_id.to_string(), "at": vf }));
    assert_eq!(nested.status, 201, "{}", nested.body);
    let r = restore(
        &t.api,
        project,
        &format!("?timeline={}", timeline_of(&nested)),
    );
    assert_eq!(r.tree, fork_tree);
    let latest_fork = t.api.post(&path, &json!({}));
    assert_eq!(latest_fork.status, 201, "{}", latest_fork.body);
    assert_eq!(latest_fork.json["parent"], main.to_string());

    // Refusals, each naming its input.
    for (body, status, needle) in [
        (json!({ "at": "soon" }), 400, "soon"),
        (json!({ "at": -1 }), 400, "-1"),
        (json!({ "at": 1.5 }), 400, "1.5"),
        (json!({ "at": true }), 400, "true"),
        (
            json!({ "at": u64::MAX / 2 }),
            400,
            "past the last committed version",
        ),
        (json!({ "parent": "main" }), 400, "main"),
        (json!({ "timeline_id": "mine" }), 400, "mine"),
        (
            json!({ "parent": TimelineId::new().to_string() }),
            404,
            "no timeline",
        ),
        (json!({ "at": EventId::new().to_string() }), 404, "no event"),
    ] {
        let r = t.api.post(&path, &body);
        assert_eq!(r.status, status, "{body}: {}", r.body);
        let message = r.json["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(needle), "{body}: {message}");
    }
    let r = t.api.post(&path, &json!({ "at": v1, "extra": 1 }));
    assert_eq!(r.status, 422, "{}", r.body);
    let r = viewer.post(&path, &json!({ "at": v1 }));
    assert_eq!(r.status, 403, "{}", r.body);

    for (query, status, needle) in [
        ("?at=yesterday".to_owned(), 400, "yesterday"),
        (
            format!("?at={}", u64::MAX / 2),
            400,
            "past the last committed version",
        ),
        ("?at=-3".to_owned(), 400, "-3"),
        ("?timeline=main".to_owned(), 400, "main"),
        (
            format!("?timeline={}", TimelineId::new()),
            404,
            "no timeline",
        ),
        (format!("?at={}", EventId::new()), 404, "no event"),
    ] {
        let r = t.api.get(&format!("/v1/projects/{project}/restore{query}"));
        assert_eq!(r.status, status, "{query}: {}", r.body);
        let message = r.json["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(needle), "{query}: {message}");
    }
    let r = t
        .api
        .get(&format!("/v1/projects/{}/restore", ProjectId::new()));
    assert_eq!(r.status, 404, "{}", r.body);
    // The manifest takes the same points.
    let m = t
        .api
        .get(&format!("/v1/projects/{project}/manifest?at={}", ids2[0]));
    assert_eq!(m.json["version"], v2, "{}", m.body);
}

#[test]
fn tenants_cannot_restore_or_fork_each_others_projects() {
    let cloud = Cloud::start();
    let a = cloud.tenant("alpha");
    let b = cloud.tenant("beta");
    let (pa, main_a) = a.project("secret");
    let mut h = History::new(&a.api, pa, main_a, Tree::new(), T0);
    h.file("secret.txt", b"alpha's secret", 0o600);
    let (_, ids) = h.sync();
    let fork_a = a
        .api
        .post(&format!("/v1/projects/{pa}/timelines"), &json!({}));
    assert_eq!(fork_a.status, 201, "{}", fork_a.body);
    let fork_a = timeline_of(&fork_a);

    let not_found = |r: Resp| assert_eq!((r.status, r.code()), (404, "not_found"), "{}", r.body);
    not_found(b.api.get(&format!("/v1/projects/{pa}/restore")));
    not_found(
        b.api
            .post(&format!("/v1/projects/{pa}/timelines"), &json!({})),
    );
    // B's own project with A's timeline, fork or event.
    let (pb, main_b) = b.project("mine");
    not_found(
        b.api
            .get(&format!("/v1/projects/{pb}/restore?timeline={main_a}")),
    );
    not_found(
        b.api
            .get(&format!("/v1/projects/{pb}/restore?timeline={fork_a}")),
    );
    not_found(
        b.api
            .get(&format!("/v1/projects/{pb}/restore?at={}", ids[0])),
    );
    not_found(b.api.post(
        &format!("/v1/projects/{pb}/timelines"),
        &json!({ "parent": main_a.to_string() }),
    ));
    not_found(b.api.post(
        &format!("/v1/projects/{pb}/timelines"),
        &json!({ "at": ids[0].to_string() }),
    ));
    // B records a file with the hash of A's blob without uploading it: B's restore fails
    // rather than read A's namespace.
    let mut g = History::new(&b.api, pb, main_b, Tree::new(), T0);
    g.put(
        Op::Create,
        "stolen.txt",
        FileKind::File,
        0o644,
        b"alpha's secret",
        false,
    );
    g.sync();
    let (status, got, failed) = restore_raw(&b.api, pb);
    assert_eq!(status, 200);
    assert!(failed, "the transfer must fail");
    assert!(
        !got.windows(14).any(|w| w == b"alpha's secret"),
        "B got A's content"
    );
}

/// A restore read as a stream: status, the bytes that arrived, whether the transfer failed.
fn restore_raw(api: &Api, project: ProjectId) -> (u16, Vec<u8>, bool) {
    let mut resp = api
        .request(
            reqwest::Method::GET,
            &format!("/v1/projects/{project}/restore"),
        )
        .send()
        .expect("an answer");
    let status = resp.status().as_u16();
    let mut got = Vec::new();
    let failed = resp.read_to_end(&mut got).is_err();
    (status, got, failed)
}

#[test]
fn a_link_never_carries_an_entry_and_missing_blobs_break_the_transfer() {
    let cloud = Cloud::start();
    let t = cloud.tenant("hostile");

    // A symlink to /etc, then a file "through" it: the file is never an entry.
    let (project, main) = t.project("links");
    let mut h = History::new(&t.api, project, main, Tree::new(), T0);
    h.link("l", "/etc");
    h.put(
        Op::Create,
        "l/passwd",
        FileKind::File,
        0o644,
        b"pwned\n",
        true,
    );
    h.dir("d", 0o755);
    h.put(Op::Create, "d/ok", FileKind::File, 0o644, b"fine", true);
    h.sync();
    let r = restore(&t.api, project, "");
    assert_eq!(
        r.tree.keys().map(String::as_str).collect::<Vec<_>>(),
        ["d", "d/ok", "l"]
    );
    assert_eq!(
        r.tree["l"],
        Node::Link {
            target: b"/etc".to_vec()
        }
    );
    assert_eq!(r.anomalies, 1);
    assert!(!r.raw.windows(8).any(|w| w == b"l/passwd"));
    assert!(!r.raw.windows(5).any(|w| w == b"pwned"));

    // A blob that was never uploaded, after a file big enough to have been sent in part:
    // the answer has started (200) and then breaks; what arrived is no complete archive.
    let (project, main) = t.project("missing");
    let mut h = History::new(&t.api, project, main, Tree::new(), T0);
    h.file("a.bin", &binary(300_000), 0o644);
    h.put(
        Op::Create,
        "b.bin",
        FileKind::File,
        0o644,
        b"never uploaded",
        false,
    );
    h.sync();
    let (status, got, failed) = restore_raw(&t.api, project);
    assert_eq!(status, 200);
    assert!(failed, "the transfer must fail, not end as if complete");
    assert!(got.len() < 300_000, "{} bytes arrived", got.len());
    assert!(!complete_archive(&got), "a short archive that looks whole");

    // A blob that does not hold the recorded size: the same.
    let (project, main) = t.project("short");
    let mut h = History::new(&t.api, project, main, Tree::new(), T0);
    let content = b"five!";
    h.put(
        Op::Create,
        "short.txt",
        FileKind::File,
        0o644,
        content,
        true,
    );
    h.sync();
    // The recorded size is the blob's; record another size for the same blob.
    let mut sc = proto::StateChange {
        path: "short.txt".into(),
        op: Op::Modify as i32,
        after_hash: BlobHash::of(content).to_vec(),
        mode: 0o644,
        size: 500,
        kind: FileKind::File as i32,
        ..Default::default()
    };
    h.record(sc.clone());
    h.sync();
    let (status, got, failed) = restore_raw(&t.api, project);
    assert_eq!(status, 200);
    assert!(failed, "a blob of the wrong size must fail the transfer");
    assert!(!complete_archive(&got));
    sc.size = content.len() as u64;
    h.record(sc);
    h.sync();
    assert_eq!(
        restore(&t.api, project, "").tree["short.txt"],
        Node::File {
            mode: 0o644,
            content: content.to_vec()
        }
    );

    let log = cloud.log();
    assert!(
        log.contains("restore failed after the answer started"),
        "{log}"
    );
    assert!(log.contains("restore leaves out entries"), "{log}");
}

/// Whether `bytes` read as a whole archive: every entry complete, up to the end blocks.
fn complete_archive(bytes: &[u8]) -> bool {
    if !bytes.ends_with(&[0u8; 1024]) {
        return false;
    }
    let mut a = tar::Archive::new(bytes);
    let Ok(entries) = a.entries() else {
        return false;
    };
    for e in entries {
        let Ok(mut e) = e else { return false };
        if std::io::copy(&mut e, &mut std::io::sink()).is_err() {
            return false;
        }
    }
    true
}

#[test]
fn openapi_documents_time_travel() {
    let cloud = Cloud::start();
    let doc: Value = cloud.api(None).get("/v1/openapi.json").json;
    let restore = &doc["paths"]["/v1/projects/{id}/restore"]["get"];
    assert!(
        restore["responses"]["200"]["content"]["application/x-tar"]["schema"]["format"] == "binary",
        "{restore}"
    );
    let fork = &doc["paths"]["/v1/projects/{id}/timelines"]["post"];
    for status in ["200", "201", "400", "403", "404", "409"] {
        assert!(fork["responses"][status].is_object(), "{status}: {fork}");
    }
}
