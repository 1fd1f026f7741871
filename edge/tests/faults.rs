//! Bad input and faults: tampering, corrupt ledgers, hostile file names, vanishing files,
//! SIGKILL mid-recording. Each must end in a clear message and a non-zero exit, never a panic,
//! and nothing recorded may be lost.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use common::{Repo, exists, stderr, stdout};

/// A repository with a dozen events, all verified.
fn recorded() -> Repo {
    let r = Repo::init();
    r.ok(&[
        "run",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3 4; do echo $i > f$i.txt; done; rm notes.txt",
    ]);
    assert!(r.events().len() >= 10);
    r.ok(&["verify"]);
    r
}

fn verify_fails(r: &Repo) -> String {
    let out = r.run(&["verify"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "verify must fail: {}",
        stdout(&out)
    );
    assert!(!stderr(&out).contains("panicked"));
    stdout(&out)
}

#[test]
fn flipped_byte_in_an_event_body_is_found_at_its_seq() {
    let r = recorded();
    let conn = rusqlite::Connection::open(r.db()).expect("db");
    let mut body: Vec<u8> = conn
        .query_row("SELECT body FROM events WHERE seq = 5", [], |x| x.get(0))
        .expect("row");
    body[20] ^= 0x01;
    conn.execute("UPDATE events SET body = ?1 WHERE seq = 5", [body])
        .expect("update");
    drop(conn);
    let out = verify_fails(&r);
    assert!(out.contains("BROKEN at seq 5"), "{out}");
}

#[test]
fn rewritten_body_with_recomputed_hash_breaks_the_next_link() {
    let r = recorded();
    // Forge seq 4 consistently (new body, matching hash): the chain breaks at seq 5.
    let conn = rusqlite::Connection::open(r.db()).expect("db");
    let mut body: Vec<u8> = conn
        .query_row("SELECT body FROM events WHERE seq = 4", [], |x| x.get(0))
        .expect("row");
    let n = body.len();
    body[n - 3] ^= 0x02;
    let hash = horde_core::EventHash::of(&body);
    conn.execute(
        "UPDATE events SET body = ?1, hash = ?2 WHERE seq = 4",
        rusqlite::params![body, hash.to_vec()],
    )
    .expect("update");
    drop(conn);
    let out = verify_fails(&r);
    assert!(out.contains("seq 4") || out.contains("seq 5"), "{out}");
}

#[test]
fn deleted_row_is_found() {
    let r = recorded();
    r.sql("DELETE FROM events WHERE seq = 6");
    let out = verify_fails(&r);
    assert!(
        out.contains("BROKEN at seq 6") && out.contains("missing or reordered"),
        "{out}"
    );
}

#[test]
fn deleted_tail_is_found_by_the_signed_head() {
    let r = recorded();
    r.sql("DELETE FROM events WHERE seq = (SELECT MAX(seq) FROM events)");
    let out = verify_fails(&r);
    assert!(out.contains("past the end of the log"), "{out}");
}

#[test]
fn swapped_rows_are_found() {
    let r = recorded();
    // Reorder: the rows of seq 3 and 4 trade places in the log.
    let conn = rusqlite::Connection::open(r.db()).expect("db");
    let id = |seq: i64| -> i64 {
        conn.query_row("SELECT id FROM events WHERE seq = ?1", [seq], |x| x.get(0))
            .expect("row")
    };
    let (a, b) = (id(3), id(4));
    conn.execute_batch(&format!(
        "UPDATE events SET id = -1 WHERE id = {a}; UPDATE events SET id = {a} WHERE id = {b}; UPDATE events SET id = {b} WHERE id = -1;"
    ))
    .expect("swap");
    drop(conn);
    let out = verify_fails(&r);
    assert!(out.contains("BROKEN at seq 3"), "{out}");
}

#[test]
fn edited_index_columns_are_found() {
    let r = recorded();
    // The body is intact but the columns lookups rely on lie about it.
    r.sql("UPDATE events SET agent = 'someone-else' WHERE seq = 4");
    let out = verify_fails(&r);
    assert!(
        out.contains("seq 4") && out.contains("columns disagree"),
        "{out}"
    );
    let r = recorded();
    r.sql("UPDATE segments SET first_seq = first_seq + 1 WHERE first_id = (SELECT MAX(first_id) FROM segments)");
    let out = verify_fails(&r);
    assert!(out.contains("INDEX"), "{out}");
    // The writer refuses to extend a ledger whose index was altered.
    r.write("new.txt", "x");
    let out = r.run(&["snapshot"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("altered"), "{}", stderr(&out));
}

#[test]
fn altered_signed_head_is_found() {
    let r = recorded();
    r.sql("UPDATE chain_heads SET signature = zeroblob(64) WHERE seq = (SELECT MAX(seq) FROM chain_heads)");
    let out = verify_fails(&r);
    assert!(out.contains("signed head at seq"), "{out}");
    let r = recorded();
    // A head moved to another seq no longer matches what it signed.
    r.sql("UPDATE chain_heads SET seq = 2 WHERE seq = (SELECT MIN(seq) FROM chain_heads)");
    let out = verify_fails(&r);
    assert!(out.contains("signed head at seq 2"), "{out}");
}

#[test]
fn json_verify_names_the_first_bad_seq() {
    let r = recorded();
    r.sql("DELETE FROM events WHERE seq = 7");
    let out = r.run(&["verify", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["ok"], false);
    assert_eq!(j["devices"][0]["first_bad_seq"], 7);
}

#[test]
fn corrupt_or_missing_ledger_gets_a_clear_message() {
    let r = recorded();
    let db = r.db();
    let _ = std::fs::remove_file(db.with_extension("db-wal"));
    let _ = std::fs::remove_file(db.with_extension("db-shm"));
    std::fs::write(&db, b"this is not a database, it is garbage. ".repeat(200)).expect("write");
    for args in [
        &["log"][..],
        &["status"],
        &["verify"],
        &["run", "--", "true"],
        &["snapshot"],
    ] {
        let out = r.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let e = stderr(&out);
        assert!(
            e.contains("horde.db") && e.contains("corrupt"),
            "{args:?}: {e}"
        );
        assert!(!e.contains("panicked"), "{args:?}: {e}");
    }
    std::fs::remove_file(&db).expect("rm");
    let out = r.run(&["log"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
}

#[test]
fn bad_configuration_and_open_key_file_are_refused() {
    let r = Repo::init();
    std::fs::write(r.path(".horde/config.toml"), "head_interval = \"often\"\n").expect("write");
    let out = r.run(&["run", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("config.toml"), "{}", stderr(&out));
    std::fs::write(r.path(".horde/config.toml"), "head_interval = 1000\n").expect("write");
    use std::os::unix::fs::PermissionsExt;
    let key = r.config.join("device.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = r.run(&["run", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
}

#[test]
fn non_utf8_file_name_is_reported_and_everything_else_recorded() {
    let r = Repo::init();
    let script = "printf x > \"$(printf 'bad\\377name')\"; echo ok > good.txt";
    let out = r.run(&["run", "--", "sh", "-c", script]);
    assert!(
        exists(&r.root.join(std::ffi::OsStr::from_bytes(b"bad\xffname"))),
        "the script made the file"
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("not valid UTF-8"), "{}", stderr(&out));
    assert!(r.changes().contains(&("create".into(), "good.txt".into())));
    r.ok(&["verify"]);
    // The command's own failure still wins over horde's exit 3.
    let out = r.run(&["run", "--", "sh", "-c", "exit 5"]);
    assert_eq!(out.status.code(), Some(5));
}

#[test]
fn symlink_out_of_the_tree_is_recorded_as_a_link_never_followed() {
    let r = Repo::init();
    let secret = r.root.parent().expect("parent").join("secret.txt");
    std::fs::write(&secret, "TOP SECRET CONTENT").expect("write");
    let script = format!("ln -s {} leak; ln -s ../../etc/passwd up", secret.display());
    let out = r.run(&["run", "--", "sh", "-c", &script]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("outside the repository"),
        "{}",
        stderr(&out)
    );
    let ev = r.events();
    let link = ev
        .iter()
        .find(|e| e["payload"]["path"] == "leak")
        .expect("recorded");
    assert_eq!(link["payload"]["kind"], "symlink");
    let shown = r.ok(&["show", &link["seq"].to_string()]);
    assert!(
        shown.contains("secret.txt") && !shown.contains("TOP SECRET"),
        "{shown}"
    );
    let blobs = std::process::Command::new("grep")
        .args(["-rl", "TOP SECRET", ".horde/blobs"])
        .current_dir(&r.root)
        .output()
        .expect("grep");
    assert!(
        blobs.stdout.is_empty(),
        "the pointed-to file never enters the store"
    );
}

#[test]
fn files_vanishing_while_recorded_do_not_break_anything() {
    let r = Repo::init();
    // Thousands of files appear and disappear while flushes scan and hash the tree.
    let script =
        "for i in $(seq 1 1500); do echo $i > t$i.tmp; rm -f t$((i-3)).tmp; done; rm -f t*.tmp";
    let out = r.run(&["run", "--", "sh", "-c", script]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("error"), "{}", stderr(&out));
    r.ok(&["verify"]);
    assert_eq!(r.json(&["status"])["unrecorded_changes"], 0);
    // Whatever was recorded as created was also recorded as deleted.
    let changes = r.changes();
    let created = changes
        .iter()
        .filter(|(op, p)| op == "create" && p.ends_with(".tmp"))
        .count();
    let deleted = changes
        .iter()
        .filter(|(op, p)| op == "delete" && p.ends_with(".tmp"))
        .count();
    assert_eq!(created, deleted, "{changes:?}");
}

#[test]
fn sigkill_mid_recording_loses_at_most_the_unfinished_step() {
    for round in 0..3 {
        let r = Repo::init();
        let script = "for i in $(seq 1 300); do echo $i > f$i.txt; sleep 0.005; done";
        let mut child = r
            .cmd(&["run", "--agent", "victim", "--", "sh", "-c", script])
            .process_group(0)
            .spawn()
            .expect("spawn");
        // Let some flushes commit, then kill horde (not its command) without warning.
        std::thread::sleep(Duration::from_millis(400 + 150 * round));
        let pid = child.id() as i32;
        common::signal(pid, libc::SIGKILL);
        let st = child.wait().expect("wait");
        assert!(!st.success());
        // The script goes on without horde; wait for it to finish, then clean up its group.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !r.path("f300.txt").exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        common::signal(-pid, libc::SIGKILL);
        // The ledger opens cleanly and verifies.
        r.ok(&["verify"]);
        let before = r.changes().len();
        assert!(
            before > 0,
            "round {round}: flushes before the kill were committed"
        );
        // The next step records exactly the rest: every file is recorded once.
        r.ok(&["snapshot"]);
        r.ok(&["verify"]);
        let created: Vec<_> = r
            .changes()
            .into_iter()
            .filter(|(op, p)| op == "create" && p.starts_with('f'))
            .collect();
        assert_eq!(created.len(), 300, "round {round}");
        assert_eq!(r.json(&["status"])["unrecorded_changes"], 0);
    }
}

#[test]
fn oversize_arguments_are_bounded_not_fatal() {
    let r = Repo::init();
    let big = "x".repeat(100_000);
    let out = r.run(&["run", "--", "sh", "-c", "true", &big]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ev = r.events();
    let tool = ev
        .iter()
        .find(|e| e["type"] == "tool_call")
        .expect("tool call");
    assert!(
        tool["payload"]["args"][3]
            .as_str()
            .expect("arg")
            .contains("truncated")
    );
    r.ok(&["verify"]);
}
