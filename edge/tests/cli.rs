//! `horde` from the user's side: init, run, snapshot, log, show, status, verify, demo.

mod common;

use common::{Repo, stderr, stdout};

#[test]
fn init_records_checkpoint_and_refuses_twice() {
    let r = Repo::empty();
    r.write("a.txt", "a");
    r.write(".gitignore", "target/\n");
    r.write("target/junk.o", "junk");
    std::fs::create_dir_all(r.path(".git/objects")).expect("mkdir");
    r.write(".git/HEAD", "ref: refs/heads/main\n");
    let init = r.json(&["init"]);
    // a.txt and .gitignore; never .git/, .horde/ or ignored files.
    assert_eq!(init["entries"], 2, "{init}");
    let status = r.json(&["status"]);
    assert_eq!(status["project_id"], init["project_id"]);
    // One create per entry, then the checkpoint listing them, under one signed head.
    assert_eq!(status["events"], 3);
    assert_eq!(status["unrecorded_changes"], 0);
    let log = r.json(&["log", "--reverse"]);
    let types: Vec<_> = log
        .as_array()
        .expect("a")
        .iter()
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(
        types,
        ["state_change", "state_change", "checkpoint"],
        "{log}"
    );
    assert!(
        status["last_chain_head"]["seq"].as_u64() == Some(3),
        "{status}"
    );
    let again = r.run(&["init"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already a horde repository"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        r.json(&["status"])["events"],
        3,
        "a refused init changes nothing"
    );
}

#[test]
fn commands_outside_a_repository_fail_clearly() {
    let r = Repo::empty();
    for args in [
        &["log"][..],
        &["status"],
        &["verify"],
        &["show", "1"],
        &["snapshot"],
        &["run", "--", "true"],
    ] {
        let out = r.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains("not a horde repository"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("panicked"), "{args:?}");
    }
    assert!(!r.path(".horde").exists());
}

#[test]
fn run_records_every_kind_of_change_and_passes_exit_status() {
    let r = Repo::init();
    r.write("old/name.txt", "moving content\n");
    r.ok(&["snapshot"]);
    let out = r.run(&[
        "run", "--agent", "builder", "--", "sh", "-c",
        "echo changed >> src/main.rs; echo new > src/lib.rs; rm notes.txt; mkdir -p new; mv old/name.txt new/name.txt; \
         chmod 755 README.md; (sleep 0.3; echo from-child > child.txt) & wait; echo hello; echo oops >&2; exit 7",
    ]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "exit status passes through: {}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("hello"),
        "output still reaches the user"
    );
    assert!(stderr(&out).contains("oops"));
    let changes = r.changes();
    for expected in [
        ("modify", "src/main.rs"),
        ("create", "src/lib.rs"),
        ("delete", "notes.txt"),
        ("rename", "new/name.txt"),
        ("modify", "README.md"),
        ("create", "child.txt"),
        ("create", "new"),
    ] {
        assert!(
            changes
                .iter()
                .any(|(op, p)| op == expected.0 && p == expected.1),
            "missing {expected:?} in {changes:?}"
        );
    }
    let events = r.events();
    let by_builder: Vec<_> = events.iter().filter(|e| e["agent"] == "builder").collect();
    let tool = by_builder
        .iter()
        .find(|e| e["type"] == "tool_call")
        .expect("a tool call");
    assert_eq!(tool["payload"]["exit_code"], 7);
    assert_eq!(tool["payload"]["args"][0], "sh");
    let obs: Vec<_> = by_builder
        .iter()
        .filter(|e| e["type"] == "observation")
        .collect();
    assert_eq!(obs.len(), 2, "stdout and stderr");
    assert!(obs.iter().any(|o| {
        o["payload"]["kind"] == "stdout"
            && o["payload"]["summary"]
                .as_str()
                .expect("s")
                .contains("hello")
    }));
    let tasks: Vec<_> = by_builder
        .iter()
        .filter(|e| e["type"] == "task")
        .map(|e| e["payload"]["kind"].clone())
        .collect();
    assert_eq!(tasks, vec!["started", "failed"]);
    // Every change by the command is caused by the session start.
    let start_id = by_builder
        .iter()
        .find(|e| e["type"] == "task")
        .expect("start")["id"]
        .clone();
    assert!(
        by_builder
            .iter()
            .filter(|e| e["type"] == "state_change")
            .all(|e| e["causation_id"] == start_id)
    );
    // The renamed file's blob is readable through `show`.
    let rename = events
        .iter()
        .find(|e| e["payload"]["op"] == "rename")
        .expect("rename");
    let seq = rename["seq"].to_string();
    let shown = r.ok(&["show", &seq]);
    assert!(shown.contains("moving content"), "{shown}");
    assert!(r.ok(&["verify"]).contains("verified"));
    assert_eq!(r.json(&["status"])["unrecorded_changes"], 0);
}

#[test]
fn changes_made_outside_horde_are_attributed_to_the_user_not_the_command() {
    let r = Repo::init();
    r.write("manual.txt", "typed by hand");
    let out = r
        .cmd(&["run", "--agent", "bot", "--", "true"])
        .env("USER", "alice")
        .output()
        .expect("runs");
    assert!(out.status.success());
    let ev = r.events();
    let manual = ev
        .iter()
        .find(|e| e["payload"]["path"] == "manual.txt")
        .expect("recorded");
    assert_eq!(manual["agent"], "alice");
    assert!(
        ev.iter()
            .all(|e| !(e["agent"] == "bot" && e["type"] == "state_change"))
    );
}

#[test]
fn run_reports_a_command_that_cannot_start() {
    let r = Repo::init();
    let out = r.run(&["run", "--", "/no/such/program"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("cannot run /no/such/program"),
        "{}",
        stderr(&out)
    );
    let ev = r.events();
    let tool = ev
        .iter()
        .find(|e| e["type"] == "tool_call")
        .expect("recorded anyway");
    assert!(
        tool["payload"]["result_summary"]
            .as_str()
            .expect("s")
            .contains("cannot run")
    );
    r.ok(&["verify"]);
}

#[test]
fn run_without_a_command_is_a_usage_error() {
    let r = Repo::init();
    let before = r.json(&["status"])["events"].clone();
    let out = r.run(&["run"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(r.json(&["status"])["events"], before);
}

#[test]
fn log_filters() {
    let r = Repo::init();
    r.ok(&[
        "run",
        "--agent",
        "a1",
        "--",
        "sh",
        "-c",
        "echo x > src/x.rs; echo y > y.txt",
    ]);
    r.ok(&[
        "run",
        "--agent",
        "a2",
        "--",
        "sh",
        "-c",
        "echo z > src/deep/z.rs 2>/dev/null || (mkdir -p src/deep && echo z > src/deep/z.rs)",
    ]);
    let by_type = r.json(&["log", "--type", "state_change"]);
    assert!(
        by_type
            .as_array()
            .expect("a")
            .iter()
            .all(|e| e["type"] == "state_change")
    );
    let a2 = r.json(&["log", "--agent", "a2", "--type", "state_change"]);
    let paths: Vec<_> = a2
        .as_array()
        .expect("a")
        .iter()
        .map(|e| e["payload"]["path"].as_str().expect("p").to_owned())
        .collect();
    assert!(
        paths.contains(&"src/deep/z.rs".to_owned()) && !paths.contains(&"y.txt".to_owned()),
        "{paths:?}"
    );
    let under_src = r.json(&["log", "--path", "src"]);
    let under: Vec<_> = under_src
        .as_array()
        .expect("a")
        .iter()
        .map(|e| e["payload"]["path"].as_str().expect("p").to_owned())
        .collect();
    assert!(
        under.iter().all(|p| p == "src" || p.starts_with("src/")),
        "{under:?}"
    );
    assert!(under.contains(&"src/x.rs".to_owned()));
    let srcx = r.json(&["log", "--path", "src/x.rs"]);
    assert_eq!(srcx.as_array().expect("a").len(), 1);
    assert_eq!(r.json(&["log", "-n", "2"]).as_array().expect("a").len(), 2);
    let newest = r.json(&["log", "-n", "1"]);
    let oldest = r.json(&["log", "-n", "1", "--reverse"]);
    assert_eq!(oldest[0]["payload"]["op"], "create", "{oldest}");
    assert_ne!(newest[0]["seq"], oldest[0]["seq"]);
    assert_eq!(
        r.json(&["log", "--since", "1 hour ago"])
            .as_array()
            .expect("a")
            .len(),
        r.events().len()
    );
    assert_eq!(
        r.json(&["log", "--until", "2000-01-01"])
            .as_array()
            .expect("a")
            .len(),
        0
    );
    assert_eq!(
        r.json(&["log", "--since", "2999-01-01T00:00:00Z"])
            .as_array()
            .expect("a")
            .len(),
        0
    );
    for (args, msg) in [
        (&["log", "--type", "nope"][..], "unknown event type"),
        (&["log", "--since", "yesterday-ish"], "cannot read the time"),
        (&["log", "--path", "../etc"], "'..'"),
    ] {
        let out = r.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(msg), "{args:?}: {}", stderr(&out));
    }
    let text = r.ok(&["log"]);
    assert!(text.contains("#1") && text.contains("checkpoint"), "{text}");
}

#[test]
fn show_by_seq_id_and_prefix_and_reports_missing_blobs() {
    let r = Repo::init();
    r.ok(&["run", "--", "sh", "-c", "echo 'precious content' > p.txt"]);
    let ev = r.events();
    let change = ev
        .iter()
        .find(|e| e["payload"]["path"] == "p.txt")
        .expect("recorded");
    let id = change["id"].as_str().expect("id");
    let seq = change["seq"].to_string();
    for spec in [id, &seq, &format!("#{seq}")] {
        assert!(r.ok(&["show", spec]).contains("precious content"), "{spec}");
    }
    let j = r.json(&["show", id]);
    assert_eq!(j["payload"]["op"], "create");
    assert_eq!(j["blobs"][0]["present"], true);
    let bad = r.run(&["show", "ffffffff-0000-7000-8000-000000000000"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("no event matches"));
    // Delete the blob: show and verify say so and fail.
    let hash = change["payload"]["after_hash"].as_str().expect("hash");
    std::fs::remove_file(r.blob(hash)).expect("rm blob");
    let out = r.run(&["show", &seq]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
    let v = r.run(&["verify"]);
    assert_eq!(v.status.code(), Some(1));
    assert!(stdout(&v).contains(hash), "{}", stdout(&v));
}

#[test]
fn deep_verify_finds_altered_blob_content() {
    let r = Repo::init();
    r.ok(&["run", "--", "sh", "-c", "echo 'original' > p.txt"]);
    let ev = r.events();
    let hash = ev
        .iter()
        .find(|e| e["payload"]["path"] == "p.txt")
        .expect("recorded")["payload"]["after_hash"]
        .as_str()
        .expect("hash")
        .to_owned();
    std::fs::write(r.blob(&hash), "forged\n").expect("write");
    r.ok(&["verify"]); // presence only: the blob is there
    let v = r.run(&["verify", "--deep"]);
    assert_eq!(v.status.code(), Some(1));
    assert!(
        stdout(&v).contains("CORRUPT") && stdout(&v).contains(&hash),
        "{}",
        stdout(&v)
    );
}

#[test]
fn snapshot_records_a_step_with_a_message() {
    let r = Repo::init();
    assert!(r.ok(&["snapshot"]).contains("Nothing changed"));
    r.write("a.txt", "1");
    r.write("b.txt", "2");
    let j = r.json(&[
        "snapshot",
        "-m",
        "hook after tool use",
        "--agent",
        "claude-code",
    ]);
    assert_eq!(j["changes"], 2);
    let ev = r.events();
    let msg = ev.iter().find(|e| e["type"] == "message").expect("message");
    assert_eq!(msg["payload"]["text"], "hook after tool use");
    assert_eq!(msg["agent"], "claude-code");
}

#[test]
fn status_shows_unrecorded_changes() {
    let r = Repo::init();
    r.write("pending.txt", "x");
    let j = r.json(&["status"]);
    assert_eq!(j["unrecorded_changes"], 1);
    assert_eq!(j["unsynced"], j["events"]);
    let text = r.ok(&["status"]);
    assert!(text.contains("pending.txt"), "{text}");
}

#[test]
fn signed_heads_follow_the_configured_interval() {
    let r = Repo::init();
    let script = "for i in $(seq 1 30); do echo $i > f$i.txt; done";
    let out = r
        .cmd(&["run", "--", "sh", "-c", script])
        .env("HORDE_HEAD_INTERVAL", "10")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let v = r.json(&["verify"]);
    assert_eq!(v["ok"], true);
    let heads = v["devices"][0]["heads"].as_u64().expect("heads");
    let events = v["devices"][0]["events"].as_u64().expect("events");
    assert!(events >= 35, "{v}");
    assert!(heads > events / 10, "a head at least every 10 events: {v}");
    let bad = r
        .cmd(&["run", "--", "true"])
        .env("HORDE_HEAD_INTERVAL", "zero")
        .output()
        .expect("runs");
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("HORDE_HEAD_INTERVAL"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn concurrent_runs_in_one_repository_keep_one_gap_free_chain() {
    let r = Repo::init();
    let mut kids = Vec::new();
    for i in 0..3 {
        let script = format!("for j in $(seq 1 20); do echo $j > w{i}_$j.txt; sleep 0.01; done");
        kids.push(
            r.cmd(&[
                "run",
                "--agent",
                &format!("w{i}"),
                "--",
                "sh",
                "-c",
                &script,
            ])
            .spawn()
            .expect("spawn"),
        );
    }
    for mut k in kids {
        assert!(k.wait().expect("wait").success());
    }
    r.ok(&["snapshot"]);
    let v = r.json(&["verify"]);
    assert_eq!(v["ok"], true, "{v}");
    let created: Vec<_> = r
        .changes()
        .into_iter()
        .filter(|(op, p)| op == "create" && p.starts_with('w'))
        .collect();
    assert_eq!(
        created.len(),
        60,
        "each file recorded exactly once: {created:?}"
    );
}

#[test]
fn demo_runs() {
    let r = Repo::empty();
    let out = r.run(&["demo"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("rename settings.json -> config/settings.json"),
        "{text}"
    );
    assert!(
        text.contains("verification FAILED"),
        "the demo shows tamper evidence: {text}"
    );
    assert!(!r.config.exists(), "the demo never touches the user's key");
}

#[test]
fn large_files_stream_into_blobs_intact() {
    let r = Repo::init();
    // Over the read-whole limit (8 MiB): the streaming path copies while hashing.
    let script = "head -c 20000000 /dev/urandom > big.bin";
    r.ok(&["run", "--", "sh", "-c", script]);
    let ev = r.events();
    let big = ev
        .iter()
        .find(|e| e["payload"]["path"] == "big.bin")
        .expect("recorded");
    assert_eq!(big["payload"]["size"], 20_000_000);
    let hash = big["payload"]["after_hash"].as_str().expect("hash");
    let stored = std::fs::read(r.blob(hash)).expect("blob");
    assert_eq!(stored, std::fs::read(r.path("big.bin")).expect("file"));
    r.ok(&["verify", "--deep"]);
}

#[test]
fn hordeignore_and_gitignore_keep_paths_out() {
    let r = Repo::init();
    r.write(".hordeignore", "secrets/\n*.log\n");
    r.ok(&["snapshot"]);
    r.ok(&[
        "run",
        "--",
        "sh",
        "-c",
        "mkdir -p secrets && echo k > secrets/key; echo l > run.log; echo kept > kept.txt",
    ]);
    let paths: Vec<String> = r.changes().into_iter().map(|(_, p)| p).collect();
    assert!(paths.contains(&"kept.txt".to_owned()), "{paths:?}");
    assert!(
        !paths
            .iter()
            .any(|p| p.starts_with("secrets") || p.ends_with(".log")),
        "{paths:?}"
    );
}

#[test]
fn output_beyond_the_capture_limit_is_marked_truncated() {
    let r = Repo::init();
    std::fs::write(r.path(".horde/config.toml"), "capture_limit = 1000\n").expect("config");
    let out = r.run(&["run", "--", "sh", "-c", "seq 1 5000"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).ends_with("5000\n"),
        "the terminal still gets everything"
    );
    let ev = r.events();
    let obs = ev
        .iter()
        .find(|e| e["type"] == "observation" && e["payload"]["kind"] == "stdout")
        .expect("stdout");
    assert_eq!(obs["payload"]["truncated"], true);
    assert_eq!(
        obs["payload"]["size"], 23_893,
        "the size of the whole output: `seq 1 5000` writes 23,893 bytes"
    );
    let hash = obs["payload"]["blob"].as_str().expect("blob");
    let kept = std::fs::read(r.blob(hash)).expect("blob");
    assert_eq!(kept.len(), 1000, "the blob holds the first 1,000 bytes");
}

#[test]
fn interactive_sessions_run_on_a_pty_and_are_recorded() {
    use std::io::{Read, Write};
    let r = Repo::init();
    let (mut master, slave) = common::openpty();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_horde"));
    cmd.args([
        "run",
        "--",
        "sh",
        "-c",
        "test -t 0 && test -t 1 && echo IS-A-TTY; read answer; echo \"got $answer\" > answer.txt",
    ])
    .current_dir(&r.root)
    .env("HORDE_CONFIG_DIR", &r.config)
    .stdin(slave.try_clone().expect("dup"))
    .stdout(slave.try_clone().expect("dup"))
    .stderr(slave);
    let mut child = cmd.spawn().expect("spawn");
    drop(cmd); // our copies of the slave side
    master.write_all(b"yes\r").expect("type an answer");
    let mut reader = master.try_clone().expect("dup");
    let screen = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // Ends with EIO once horde and the command have exited.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    let status = child.wait().expect("wait");
    drop(master);
    let screen = screen.join().expect("reader");
    assert!(status.success(), "{screen}");
    assert!(
        screen.contains("IS-A-TTY"),
        "the command saw a terminal: {screen}"
    );
    assert_eq!(
        std::fs::read_to_string(r.path("answer.txt")).expect("answer"),
        "got yes\n",
        "keys reached the command"
    );
    let ev = r.events();
    let term = ev
        .iter()
        .find(|e| e["type"] == "observation" && e["payload"]["kind"] == "terminal")
        .expect("terminal output recorded");
    let hash = term["payload"]["blob"].as_str().expect("blob");
    let blob = std::fs::read(r.blob(hash)).expect("blob");
    assert!(String::from_utf8_lossy(&blob).contains("IS-A-TTY"));
    assert!(
        r.changes()
            .contains(&("create".into(), "answer.txt".into()))
    );
}

/// `horde log --json | head`: the reader leaves early; horde ends quietly, as git does.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    let r = Repo::empty();
    // Enough events that the JSON outgrows a pipe's buffer (64 KiB).
    for i in 0..400 {
        r.write(&format!("f{i}.txt"), "x");
    }
    r.ok(&["init"]);
    for args in [&["log", "--json"][..], &["log"], &["show", "1", "--json"]] {
        let mut child = r
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn horde");
        let mut first = [0u8; 16];
        child
            .stdout
            .take()
            .expect("stdout")
            .read_exact(&mut first)
            .expect("some output");
        // The pipe's read end is closed here, before horde is done writing.
        let out = child.wait_with_output().expect("wait");
        let err = stderr(&out);
        assert!(
            !err.contains("Broken pipe") && !err.contains("panicked") && err.is_empty(),
            "{args:?}: {err}"
        );
        assert!(
            out.status.success() || out.status.code().is_none(),
            "{args:?}: ended by SIGPIPE or exit 0, not an error: {:?}",
            out.status
        );
    }
}
