//! Time travel from the user's side: `horde restore`, `diff`, `history`, `fork`, `timeline`,
//! with bad input and hostile events that try to write outside the target.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{Repo, exists, stderr};
use horde::store::{Layout, Store};
use horde_core::proto::{FileKind, StateChange, event_body::Payload, state_change::Op};
use horde_core::{BlobHash, DeviceKey, Draft};
use prost::Message as _;

/// The seq of the newest event.
fn last_seq(r: &Repo) -> u64 {
    r.json(&["log", "-n", "1"])[0]["seq"].as_u64().expect("seq")
}

#[test]
fn restore_in_place_and_to_a_directory() {
    let r = Repo::init();
    let v1 = last_seq(&r);
    r.write("src/main.rs", "fn main() { broken() }\n");
    r.write("new.txt", "new\n");
    fs::remove_file(r.path("notes.txt")).expect("rm");
    fs::set_permissions(r.path("README.md"), fs::Permissions::from_mode(0o755)).expect("chmod");
    r.ok(&["snapshot", "-m", "the agent broke it"]);

    // A fresh copy of the old tree, elsewhere; the repository is untouched.
    let out = r.root.parent().expect("parent").join("copy");
    let j = r.json(&[
        "restore",
        "--at",
        &format!("#{v1}"),
        "--to",
        out.to_str().expect("utf8"),
    ]);
    assert_eq!(j["report"]["written"], 3, "{j}");
    assert_eq!(
        fs::read_to_string(out.join("src/main.rs")).expect("read"),
        "fn main() {}\n"
    );
    assert!(!exists(&out.join("new.txt")) && exists(&out.join("notes.txt")));
    assert!(!exists(&out.join(".horde")));
    assert!(exists(&r.path("new.txt")));
    // Not into a directory that has files.
    let again = r.run(&[
        "restore",
        "--at",
        "HEAD",
        "--to",
        out.to_str().expect("utf8"),
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("not empty"), "{}", stderr(&again));

    // In place: a dirty tree is refused and left alone.
    r.write("scratch.txt", "unrecorded\n");
    let dirty = r.run(&["restore", "--at", &format!("#{v1}")]);
    assert_eq!(dirty.status.code(), Some(1));
    assert!(
        stderr(&dirty).contains("unrecorded changes"),
        "{}",
        stderr(&dirty)
    );
    assert!(exists(&r.path("scratch.txt")) && exists(&r.path("new.txt")));
    // --force discards them; the restore is recorded as a step caused by the point.
    let before = r.events().len();
    let j = r.json(&[
        "restore",
        "--at",
        &format!("#{v1}"),
        "--force",
        "--agent",
        "ops",
    ]);
    assert!(j["changes"].as_u64().expect("n") >= 4, "{j}");
    assert_eq!(
        fs::read_to_string(r.path("src/main.rs")).expect("read"),
        "fn main() {}\n"
    );
    assert!(!exists(&r.path("new.txt")) && !exists(&r.path("scratch.txt")));
    assert_eq!(
        fs::metadata(r.path("README.md"))
            .expect("stat")
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    assert_eq!(r.json(&["status"])["unrecorded_changes"], 0);
    let events = r.events();
    assert!(events.len() > before);
    let note = events
        .iter()
        .find(|e| e["type"] == "message" && e["agent"] == "ops")
        .expect("note");
    assert!(
        note["payload"]["text"]
            .as_str()
            .expect("t")
            .contains("restored the tree to")
    );
    // The tree at HEAD is the tree at v1 again.
    let d = r.json(&["diff", &format!("#{v1}"), "HEAD"]);
    assert_eq!(d["changes"].as_array().expect("a").len(), 0, "{d}");
    // Restoring to where the tree already is does nothing.
    let n = r.events().len();
    r.ok(&["restore", "--at", "HEAD"]);
    assert_eq!(r.events().len(), n);
}

#[test]
fn points_by_time_and_event_id_and_bad_points() {
    let r = Repo::init();
    let first = r.json(&["log", "-n", "1"])[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    r.write("later.txt", "later\n");
    r.ok(&["snapshot"]);
    // By event id (full, then the shortest prefix no other event shares: events of one commit
    // share their UUIDv7's millisecond and most of its counter): the tree right after that
    // event.
    let others: Vec<String> = r
        .events()
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .filter(|id| *id != first)
        .collect();
    let unique = (13..=first.len())
        .map(|n| &first[..n])
        .find(|p| !others.iter().any(|id| id.starts_with(p)))
        .expect("a unique prefix")
        .to_owned();
    for spec in [first.clone(), unique] {
        let out = r
            .root
            .parent()
            .expect("p")
            .join(format!("by-id-{}", spec.len()));
        r.ok(&[
            "restore",
            "--at",
            &spec,
            "--to",
            out.to_str().expect("utf8"),
        ]);
        assert!(!exists(&out.join("later.txt")) && exists(&out.join("README.md")));
    }
    // By time: now includes everything.
    let now = jiff::Timestamp::now().to_string();
    let out = r.root.parent().expect("p").join("by-time");
    r.ok(&["restore", "--at", &now, "--to", out.to_str().expect("utf8")]);
    assert!(exists(&out.join("later.txt")));
    for (spec, msg) in [
        ("#999", "no event matches"),
        ("yesterday at noon", "not a point"),
        ("2001-01-01", "nothing was recorded"),
    ] {
        let o = r.run(&["restore", "--at", spec, "--to", "/tmp/never-written"]);
        assert_eq!(o.status.code(), Some(1), "{spec}");
        assert!(stderr(&o).contains(msg), "{spec}: {}", stderr(&o));
    }
    assert!(!exists(std::path::Path::new("/tmp/never-written")));
}

#[test]
fn diff_and_history_follow_a_path() {
    let r = Repo::init();
    let v1 = last_seq(&r);
    r.write("notes.txt", "more notes\n");
    r.ok(&["snapshot"]);
    r.write("notes.txt", "even more notes\n");
    fs::remove_file(r.path("README.md")).expect("rm");
    std::os::unix::fs::symlink("notes.txt", r.path("link")).expect("symlink");
    r.ok(&["snapshot"]);
    let text = r.ok(&["diff", &format!("#{v1}")]);
    assert!(text.contains("modified notes.txt"), "{text}");
    assert!(text.contains("deleted  README.md"), "{text}");
    assert!(text.contains("added    link"), "{text}");
    let h = r.json(&["history", "notes.txt"]);
    let ops: Vec<_> = h
        .as_array()
        .expect("a")
        .iter()
        .map(|e| e["payload"]["op"].clone())
        .collect();
    assert_eq!(ops, ["create", "modify", "modify"], "{h}");
    let missing = r.run(&["history", "nope.txt"]);
    assert_eq!(missing.status.code(), Some(1));
    let bad = r.run(&["history", "../etc/passwd"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains(".."), "{}", stderr(&bad));
}

#[test]
fn fork_records_on_the_new_timeline_and_switch_goes_back() {
    let r = Repo::init();
    let v1 = last_seq(&r);
    r.write("src/main.rs", "fn main() { attempt_one() }\n");
    r.ok(&["snapshot"]);
    let j = r.json(&["fork", "--at", &format!("#{v1}"), "--name", "retry"]);
    let fork_id = j["timeline_id"].as_str().expect("id").to_owned();
    assert_eq!(
        fs::read_to_string(r.path("src/main.rs")).expect("read"),
        "fn main() {}\n"
    );
    assert_eq!(r.json(&["status"])["timeline_id"], fork_id.as_str());
    assert_eq!(r.json(&["status"])["unrecorded_changes"], 0);
    // The fork starts with a checkpoint caused by the fork point.
    let cp = &r.json(&["log", "-n", "1", "--type", "checkpoint"])[0];
    assert_eq!(cp["timeline_id"], fork_id.as_str());
    assert!(cp["causation_id"].is_string(), "{cp}");
    r.write("src/main.rs", "fn main() { attempt_two() }\n");
    r.ok(&["snapshot"]);
    let list = r.json(&["timeline", "list"]);
    let list = list.as_array().expect("a");
    assert_eq!(list.len(), 2);
    let retry = list.iter().find(|t| t["name"] == "retry").expect("retry");
    assert_eq!(retry["current"], true);
    assert_eq!(retry["fork_seq"], v1);
    // Back to main: its latest tree; then to the fork again by id prefix.
    r.ok(&["timeline", "switch", "main"]);
    assert!(
        fs::read_to_string(r.path("src/main.rs"))
            .expect("read")
            .contains("attempt_one")
    );
    assert_eq!(r.json(&["status"])["unrecorded_changes"], 0);
    r.ok(&["timeline", "switch", &fork_id[..13]]);
    assert!(
        fs::read_to_string(r.path("src/main.rs"))
            .expect("read")
            .contains("attempt_two")
    );
    // Names are unique; unknown timelines and a dirty tree are refused, changing nothing.
    let taken = r.run(&["fork", "--at", "HEAD", "--name", "retry"]);
    assert!(
        stderr(&taken).contains("exists already"),
        "{}",
        stderr(&taken)
    );
    let unknown = r.run(&["timeline", "switch", "nope"]);
    assert!(
        stderr(&unknown).contains("no timeline matches"),
        "{}",
        stderr(&unknown)
    );
    r.write("wip.txt", "wip\n");
    let dirty = r.run(&["timeline", "switch", "main"]);
    assert!(
        stderr(&dirty).contains("unrecorded changes"),
        "{}",
        stderr(&dirty)
    );
    assert_eq!(
        r.json(&["timeline", "list"]).as_array().expect("a").len(),
        2
    );
    assert!(exists(&r.path("wip.txt")));
}

/// Appends `drafts` as another device would have recorded them (bypassing the scanner).
/// Appends events signed by the repository's own device (its chain describes its tree).
fn forge(r: &Repo, drafts: Vec<Draft>) {
    let key = DeviceKey::load(&r.config.join("device.key")).expect("the repository's device key");
    let store = Store::open(Layout::new(&r.root), key).expect("open");
    store
        .writer
        .append(horde::store::writer::AppendRequest {
            drafts,
            ..Default::default()
        })
        .expect("append");
}

#[test]
fn hostile_events_never_write_outside_the_target() {
    let r = Repo::init();
    let outside = r.root.parent().expect("p").join("outside");
    fs::create_dir(&outside).expect("mkdir");
    std::os::unix::fs::symlink(&outside, r.path("l")).expect("symlink");
    r.ok(&["snapshot"]);
    let timeline: horde_core::TimelineId = r.json(&["status"])["timeline_id"]
        .as_str()
        .expect("t")
        .parse()
        .expect("id");
    // A device claims a file under the link.
    let content = b"pwned\n";
    let blob = BlobHash::of(content);
    fs::create_dir_all(r.blob(&blob.to_hex()).parent().expect("p")).expect("mkdir");
    fs::write(r.blob(&blob.to_hex()), content).expect("blob");
    let sc = |path: &str| StateChange {
        path: path.into(),
        op: Op::Create as i32,
        after_hash: blob.to_vec(),
        mode: 0o644,
        size: content.len() as u64,
        kind: FileKind::File as i32,
        ..Default::default()
    };
    forge(
        &r,
        vec![Draft::new(
            timeline,
            "evil",
            Payload::StateChange(sc("l/pwned")),
        )],
    );
    let copy = r.root.parent().expect("p").join("copy");
    let o = r.run(&[
        "restore",
        "--at",
        "HEAD",
        "--to",
        copy.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("l/pwned: not applied"),
        "{}",
        stderr(&o)
    );
    assert!(
        fs::symlink_metadata(copy.join("l"))
            .expect("l")
            .file_type()
            .is_symlink()
    );
    // In place, from an earlier point: the link is restored as a link, nothing goes through it.
    r.ok(&["restore", "--at", "HEAD", "--force"]);
    assert_eq!(
        fs::read_dir(&outside).expect("ls").count(),
        0,
        "nothing written outside"
    );

    // An event whose path climbs out (signed and hashed correctly, stored by a broken or
    // hostile peer): restore refuses the history, writing nothing.
    let mut body = horde_core::proto::EventBody::decode(
        r.sql_blob("SELECT body FROM events ORDER BY id DESC LIMIT 1")
            .as_slice(),
    )
    .expect("body");
    body.payload = Some(Payload::StateChange(sc("../escaped")));
    body.seq += 1;
    let bytes = body.encode_to_vec();
    let hash = BlobHash::of(&bytes).to_vec();
    let conn = rusqlite::Connection::open(r.db()).expect("db");
    conn.execute(
        "INSERT INTO events (id, device_id, seq, event_id, hash, body, type, agent, timeline, occurred_at, path)
         SELECT id + 1, device_id, seq + 1, event_id, ?1, ?2, 'state_change', agent, timeline, occurred_at, '../escaped'
         FROM events ORDER BY id DESC LIMIT 1",
        rusqlite::params![hash, bytes],
    )
    .expect("insert");
    drop(conn);
    let copy2 = r.root.parent().expect("p").join("copy2");
    let o = r.run(&[
        "restore",
        "--at",
        "HEAD",
        "--to",
        copy2.to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("corrupt"), "{}", stderr(&o));
    assert!(!exists(&r.root.parent().expect("p").join("escaped")));
    assert!(!exists(&copy2) || fs::read_dir(&copy2).expect("ls").count() == 0);
}
