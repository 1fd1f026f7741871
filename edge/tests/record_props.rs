//! Properties: (1) for random histories of file operations, the `StateChange` events of each
//! recorded step, replayed strictly in order on the previous state (creates need their parent
//! directory, directory deletes need it empty, renames need their source), give exactly the
//! tree on disk: kinds, modes and contents. This pins the scanner's ordering and the writer's
//! resolution against the committed index. (2) For the same kind of histories, with
//! checkpoints every few changes, restoring every recorded point (into a fresh directory, and
//! in place) gives the tree as it was recorded there, byte for byte, with modes.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use horde::record::{Recorder, init};
use horde::store::read::{LogFilter, log};
use horde::store::{Layout, Store};
use horde::timetravel;
use horde_core::proto::{FileKind, event_body::Payload, state_change::Op};
use horde_core::{DeviceKey, decode_event};
use proptest::prelude::*;

type Model = BTreeMap<String, (i32, Vec<u8>, u32)>; // kind, hash, mode

const PATHS: &[&str] = &["a", "b", "x", "a/x", "a/c", "a/c/z", "b/y"];
const CONTENTS: &[&str] = &[
    "one\n",
    "two\n",
    "three\n",
    "",
    "\u{0}\u{1}\u{ff}binary\u{0}",
];

#[derive(Debug, Clone)]
enum FsOp {
    Write(usize, usize),
    Remove(usize),
    Rename(usize, usize),
    Mkdir(usize),
    Chmod(usize),
    Symlink(usize, usize),
}

fn op() -> impl Strategy<Value = FsOp> {
    let p = 0..PATHS.len();
    prop_oneof![
        (p.clone(), 0..CONTENTS.len()).prop_map(|(a, b)| FsOp::Write(a, b)),
        p.clone().prop_map(FsOp::Remove),
        (p.clone(), p.clone()).prop_map(|(a, b)| FsOp::Rename(a, b)),
        p.clone().prop_map(FsOp::Mkdir),
        p.clone().prop_map(FsOp::Chmod),
        (p.clone(), p).prop_map(|(a, b)| FsOp::Symlink(a, b)),
    ]
}

fn rm(p: &Path) {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).expect("rm -r"),
        Ok(_) => fs::remove_file(p).expect("rm"),
        Err(_) => {}
    }
}

/// Makes the parent a directory (replacing a file there), like an agent would.
fn ensure_parent(root: &Path, rel: &str) {
    if let Some((parent, _)) = rel.rsplit_once('/') {
        ensure_parent(root, parent);
        let p = root.join(parent);
        if fs::symlink_metadata(&p).is_ok_and(|m| !m.is_dir()) {
            rm(&p);
        }
        fs::create_dir_all(&p).expect("mkdir");
    }
}

fn apply(root: &Path, op: &FsOp) {
    match *op {
        FsOp::Write(p, c) => {
            let path = root.join(PATHS[p]);
            ensure_parent(root, PATHS[p]);
            if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() || m.file_type().is_symlink()) {
                rm(&path);
            }
            fs::write(&path, CONTENTS[c]).expect("write");
        }
        FsOp::Remove(p) => rm(&root.join(PATHS[p])),
        FsOp::Rename(a, b) => {
            let (from, to) = (root.join(PATHS[a]), root.join(PATHS[b]));
            let nested = |x: &str, y: &str| x.starts_with(&format!("{y}/"));
            let present = |p: &Path| fs::symlink_metadata(p).is_ok();
            if a == b || !present(&from) || nested(PATHS[b], PATHS[a]) || nested(PATHS[a], PATHS[b])
            {
                return;
            }
            ensure_parent(root, PATHS[b]);
            if !present(&from) {
                return; // ensure_parent replaced it
            }
            rm(&to);
            fs::rename(&from, &to).expect("rename");
        }
        FsOp::Mkdir(p) => {
            ensure_parent(root, PATHS[p]);
            let path = root.join(PATHS[p]);
            if fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) {
                rm(&path);
            }
            fs::create_dir_all(&path).expect("mkdir");
        }
        FsOp::Chmod(p) => {
            let path = root.join(PATHS[p]);
            if let Ok(m) = fs::symlink_metadata(&path)
                && !m.file_type().is_symlink()
            {
                let mode = m.permissions().mode() ^ 0o111;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode | 0o700))
                    .expect("chmod");
            }
        }
        FsOp::Symlink(p, t) => {
            let path = root.join(PATHS[p]);
            ensure_parent(root, PATHS[p]);
            rm(&path);
            std::os::unix::fs::symlink(PATHS[t], &path).expect("symlink");
        }
    }
}

/// The tree on disk as the model sees it (never entering .horde).
fn tree(root: &Path) -> Model {
    let mut out = Model::new();
    fn walk(root: &Path, dir: &Path, out: &mut Model) {
        for e in fs::read_dir(dir).expect("read_dir") {
            let e = e.expect("entry");
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("under")
                .to_str()
                .expect("utf8")
                .to_owned();
            if rel == ".horde" {
                continue;
            }
            let m = fs::symlink_metadata(&p).expect("stat");
            let mode = m.permissions().mode() & 0o7777;
            if m.file_type().is_symlink() {
                let t = fs::read_link(&p).expect("link");
                let h = horde_core::BlobHash::of(t.to_str().expect("utf8").as_bytes());
                out.insert(rel, (FileKind::Symlink as i32, h.to_vec(), mode));
            } else if m.is_dir() {
                out.insert(rel, (FileKind::Dir as i32, vec![], mode));
                walk(root, &p, out);
            } else {
                let h = horde_core::BlobHash::of(&fs::read(&p).expect("read"));
                out.insert(rel, (FileKind::File as i32, h.to_vec(), mode));
            }
        }
    }
    walk(root, root, &mut out);
    out
}

fn parent_ok(m: &Model, path: &str) -> bool {
    match path.rsplit_once('/') {
        None => true,
        Some((p, _)) => m.get(p).is_some_and(|e| e.0 == FileKind::Dir as i32),
    }
}

/// Strict replay of one event on the model.
fn fold(m: &mut Model, sc: &horde_core::proto::StateChange) -> Result<(), String> {
    let entry = (sc.kind, sc.after_hash.clone(), sc.mode);
    let op = Op::try_from(sc.op).map_err(|_| "bad op".to_string())?;
    match op {
        Op::Create => {
            if m.contains_key(&sc.path) {
                return Err(format!("create of existing {}", sc.path));
            }
            if !parent_ok(m, &sc.path) {
                return Err(format!("create of {} before its parent", sc.path));
            }
            m.insert(sc.path.clone(), entry);
        }
        Op::Modify => {
            let cur = m
                .get(&sc.path)
                .ok_or(format!("modify of missing {}", sc.path))?;
            if cur.0 != sc.kind || cur.1 != sc.before_hash {
                return Err(format!("modify of {} from a different base", sc.path));
            }
            m.insert(sc.path.clone(), entry);
        }
        Op::Delete => {
            let cur = m
                .get(&sc.path)
                .ok_or(format!("delete of missing {}", sc.path))?;
            if cur.0 == FileKind::Dir as i32
                && m.keys().any(|k| k.starts_with(&format!("{}/", sc.path)))
            {
                return Err(format!("delete of non-empty dir {}", sc.path));
            }
            m.remove(&sc.path);
        }
        Op::Rename => {
            let src = m
                .remove(&sc.from_path)
                .ok_or(format!("rename of missing {}", sc.from_path))?;
            if src.1 != sc.after_hash {
                return Err(format!("rename {} changed content", sc.from_path));
            }
            if !parent_ok(m, &sc.path) {
                return Err(format!("rename to {} before its parent", sc.path));
            }
            m.insert(sc.path.clone(), entry);
        }
        Op::Unspecified => return Err("unspecified op".into()),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn recorded_steps_replay_to_the_tree(steps in prop::collection::vec(prop::collection::vec(op(), 1..6), 1..6)) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().canonicalize().expect("canon");
        fs::write(root.join("x"), "start\n").expect("write");
        let inited = init(&root, DeviceKey::generate().expect("key")).expect("init");
        let store = inited.store;
        let mut model = tree(&root);
        let mut rec = Recorder::new(&store).expect("recorder");
        let mut last_id = log(&store.ledger.conn, &LogFilter::default()).expect("log")[0].local_id;
        for ops in &steps {
            for o in ops {
                apply(&root, o);
            }
            let step = rec.step("prop", None, Vec::new(), false).expect("step");
            prop_assert!(step.skipped.is_empty(), "{:?}", step.skipped);
            let rows = log(&store.ledger.conn, &LogFilter { oldest_first: true, ..Default::default() }).expect("log");
            let since = last_id;
            for row in rows.iter().filter(|r| r.local_id > since) {
                let ev = decode_event(&row.body, &row.hash).expect("valid");
                if let Some(Payload::StateChange(sc)) = &ev.payload {
                    fold(&mut model, sc).map_err(|e| TestCaseError::fail(format!("{e} after {ops:?}")))?;
                }
                last_id = row.local_id;
            }
            prop_assert_eq!(&model, &tree(&root), "after {:?}", ops);
            // A second step finds nothing left to record.
            let again = rec.step("prop", None, Vec::new(), false).expect("step");
            prop_assert_eq!(again.changes, 0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn every_recorded_point_restores_to_the_tree_as_recorded(
        steps in prop::collection::vec(prop::collection::vec(op(), 1..6), 1..8),
        back in 0usize..100,
    ) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("repo");
        fs::create_dir(&root).expect("mkdir");
        let root = root.canonicalize().expect("canon");
        fs::write(root.join("x"), "start\n").expect("write");
        // One device throughout: a point's tree is its own device's.
        let key_file = tmp.path().join("device.key");
        drop(init(&root, DeviceKey::load_or_create(&key_file).expect("key")).expect("init"));
        // Checkpoints every few changes, so restores start from checkpoints mid-history.
        fs::write(root.join(".horde/config.toml"), "checkpoint_interval = 3\n").expect("config");
        let store = Store::open(Layout::new(&root), DeviceKey::load(&key_file).expect("key")).expect("open");
        let timeline = store.ledger.meta.timeline;
        let head = |store: &Store| timetravel::head(&store.ledger.conn, timeline).expect("head");
        let mut points = vec![(head(&store), tree(&root))];
        let mut rec = Recorder::new(&store).expect("recorder");
        for ops in &steps {
            for o in ops {
                apply(&root, o);
            }
            rec.step("prop", None, Vec::new(), false).expect("step");
            points.push((head(&store), tree(&root)));
        }
        for (i, (point, want)) in points.iter().enumerate() {
            let state = timetravel::state_at(&store.ledger, *point).expect("state");
            prop_assert_eq!(state.anomaly_count(), 0);
            let out = tmp.path().join(format!("at-{i}"));
            timetravel::restore_to(&store.ledger, &state, &out, false, &|_| {}).expect("restore");
            prop_assert_eq!(&tree(&out), want, "point {} after {:?}", i, &steps[..i]);
        }
        // In place, back to an earlier point: the tree is that point's, and recording it
        // leaves nothing unrecorded.
        let (point, want) = &points[back % points.len()];
        let state = timetravel::state_at(&store.ledger, *point).expect("state");
        let current = timetravel::disk_state(&rec, false).expect("clean tree");
        timetravel::restore_in_place(&store.ledger, &state, &current, true, &|_| {}).expect("in place");
        prop_assert_eq!(&tree(&root), want);
        rec.step("prop", None, Vec::new(), false).expect("record the restore");
        prop_assert_eq!(rec.step("prop", None, Vec::new(), false).expect("step").changes, 0);
        let now = timetravel::state_at(&store.ledger, head(&store)).expect("state");
        prop_assert!(horde_replay::diff(&now, &state).is_empty());
    }
}

/// A scan's changes, comparable: op, path, source and what the entry became (not its mtime).
fn change_list(out: &horde::scan::ScanOutcome) -> Vec<String> {
    let mut v: Vec<String> = out
        .changes
        .iter()
        .map(|c| {
            let after = c.after.as_ref().map(|e| (e.kind, e.mode, e.hash, e.size));
            format!("{:?} {} {:?} {after:?}", c.op, c.path, c.from)
        })
        .collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    /// (3) What the daemon's watched scan finds (only the directories inotify saw change)
    /// equals what a full walk finds, after any history of operations.
    #[test]
    fn a_watched_scan_finds_what_a_full_scan_finds(steps in prop::collection::vec(prop::collection::vec(op(), 1..6), 1..8)) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().canonicalize().expect("canon");
        fs::write(root.join("x"), "start\n").expect("write");
        let store = init(&root, DeviceKey::generate().expect("key")).expect("init").store;
        let mut rec = Recorder::new(&store).expect("recorder");
        let mut w = horde::watch::Watcher::new(&root).expect("inotify");
        let blobs = &store.ledger.blobs;
        let first = horde::scan::scan_dirty(&root, blobs, &rec.index, None, &w.drain(), Some(w.on_dir())).expect("scan");
        prop_assert!(first.changes.is_empty());
        for ops in &steps {
            for o in ops {
                apply(&root, o);
            }
            let dirty = w.drain();
            let watched = horde::scan::scan_dirty(&root, blobs, &rec.index, None, &dirty, Some(w.on_dir())).expect("scan");
            let full = horde::scan::scan(&root, blobs, &rec.index, None).expect("scan");
            prop_assert_eq!(change_list(&watched), change_list(&full), "after {:?} (dirty {:?})", ops, dirty);
            rec.commit(watched, "prop", None, Vec::new(), Vec::new(), false).expect("commit");
        }
    }
}
