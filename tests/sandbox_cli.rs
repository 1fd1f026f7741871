//! The sandbox's commands from the user's side, apart from the escape suite
//! (`tests/sandbox.rs`): bad profiles and missing commands are refused before anything runs
//! (and nothing is recorded), `horde doctor` reports, `horde sandbox run` passes exit codes
//! and output through, and a role's manifest shapes the sandbox.

use std::path::Path;
use std::process::{Command, Output};

use horde_e2e::binary;
use serde_json::Value;

struct Repo {
    dir: tempfile::TempDir,
    config: tempfile::TempDir,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = tempfile::tempdir().expect("tempdir");
        let git = Command::new("git")
            .args(["init", "-q"])
            .current_dir(dir.path())
            .status()
            .expect("git init");
        assert!(git.success());
        let r = Repo { dir, config };
        let o = r.horde(&["init"]);
        assert!(o.status.success(), "init: {}", text(&o));
        r
    }

    fn horde(&self, args: &[&str]) -> Output {
        Command::new(binary("horde"))
            .args(args)
            .current_dir(self.dir.path())
            .env("HORDE_CONFIG_DIR", self.config.path())
            .env_remove("HORDE_AGENT")
            .output()
            .expect("run horde")
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn events(&self) -> usize {
        let o = self.horde(&["log", "--json", "-n", "100000"]);
        assert!(o.status.success(), "log: {}", text(&o));
        let v: Value = serde_json::from_slice(&o.stdout).expect("log json");
        v.as_array().map_or(0, Vec::len)
    }

    fn tool_calls(&self) -> Vec<Value> {
        let o = self.horde(&["log", "--json", "--type", "tool_call", "-n", "100000"]);
        assert!(o.status.success(), "log: {}", text(&o));
        let v: Value = serde_json::from_slice(&o.stdout).expect("log json");
        v.as_array().cloned().unwrap_or_default()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn bwrap_installed() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("bwrap").is_file()));
    if !found && std::env::var_os("HORDE_SKIP_SANDBOX_TESTS").is_some() {
        println!("skipped: bubblewrap is not installed and HORDE_SKIP_SANDBOX_TESTS is set");
        return false;
    }
    assert!(
        found,
        "bubblewrap is not installed: `apt install bubblewrap` (cargo xtask test installs it), or set HORDE_SKIP_SANDBOX_TESTS"
    );
    true
}

#[test]
fn bad_profiles_and_missing_commands_change_nothing() {
    if !bwrap_installed() {
        return;
    }
    let r = Repo::new();
    let before = r.events();
    let cases: &[(&[&str], &str)] = &[
        (&["--rw", "/usr", "--", "true"], "outside the worktree"),
        (&["--rw", "no/such/dir", "--", "true"], "no/such/dir"),
        (
            &["--ro", "/no/such/toolchain", "--", "true"],
            "/no/such/toolchain",
        ),
        (&["--allow-net", "*", "--", "true"], "network host"),
        (&["--allow-net", "*.com", "--", "true"], "network host"),
        (&["--memory", "0", "--", "true"], "memory limit is zero"),
        (
            &["--processes", "0", "--", "true"],
            "processes limit is zero",
        ),
        (&["--wall-time", "0s", "--", "true"], "wall"),
        (&["--memory", "lots", "--", "true"], "--memory"),
        (&["--", "no-such-command-xyz"], "command not found"),
    ];
    for (args, needle) in cases {
        for sub in [&["run", "--sandbox"][..], &["sandbox", "run"][..]] {
            let mut all: Vec<&str> = sub.to_vec();
            all.extend_from_slice(args);
            let o = r.horde(&all);
            assert!(!o.status.success(), "{all:?} succeeded: {}", text(&o));
            assert!(
                text(&o).contains(needle),
                "{all:?}: {needle:?} not in: {}",
                text(&o)
            );
        }
    }
    let o = r.horde(&["sandbox", "run", "--", "no-such-command-xyz"]);
    assert_eq!(o.status.code(), Some(127), "{}", text(&o));
    // Sandbox flags without --sandbox are a mistake, not silently ignored.
    let o = r.horde(&["run", "--allow-net", "github.com", "--", "true"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("need --sandbox"), "{}", text(&o));
    assert_eq!(r.events(), before, "a refused command recorded something");
    assert!(
        !r.path().join(".claude").exists(),
        "a placeholder was left behind"
    );
}

#[test]
fn doctor_reports_the_mechanisms() {
    if !bwrap_installed() {
        return;
    }
    let r = Repo::new();
    let o = r.horde(&["doctor"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    for needle in ["bubblewrap", "seccomp", "landlock", "cgroups", "confined"] {
        assert!(out.contains(needle), "{needle:?} not in: {out}");
    }
    let o = r.horde(&["doctor", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("doctor json");
    assert_eq!(v["confined"], true, "{v}");
    assert_eq!(v["bwrap_works"], "ok", "{v}");
    // Without bubblewrap on PATH: exit 1, and a sandboxed run refuses unless --unsandboxed.
    let empty = tempfile::tempdir().expect("tempdir");
    let no_bwrap = |args: &[&str]| {
        Command::new(binary("horde"))
            .args(args)
            .current_dir(r.path())
            .env("HORDE_CONFIG_DIR", r.config.path())
            .env("PATH", format!("{}:/nonexistent", empty.path().display()))
            .output()
            .expect("run horde")
    };
    let o = no_bwrap(&["doctor"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not installed"), "{}", text(&o));
    let before = r.events();
    let o = no_bwrap(&["run", "--sandbox", "--", "/bin/true"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--unsandboxed"), "{}", text(&o));
    assert_eq!(r.events(), before);
    let o = no_bwrap(&["run", "--sandbox", "--unsandboxed", "--", "/bin/true"]);
    assert!(o.status.success(), "{}", text(&o));
    let calls = r.tool_calls();
    assert_eq!(
        calls[0]["payload"]["sandbox"]["mechanism"], "none (--unsandboxed)",
        "{calls:?}"
    );
}

#[test]
fn exit_codes_and_output_pass_through() {
    if !bwrap_installed() {
        return;
    }
    let r = Repo::new();
    let o = r.horde(&[
        "sandbox",
        "run",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 42",
    ]);
    assert_eq!(o.status.code(), Some(42), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("err"));
    // Recorded: exit code, output, the mechanism.
    let o = r.horde(&[
        "run",
        "--sandbox",
        "--",
        "sh",
        "-c",
        "echo made > made.txt; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(r.path().join("made.txt")).expect("made.txt"),
        "made\n"
    );
    let calls = r.tool_calls();
    let call = &calls[0]["payload"];
    assert_eq!(call["exit_code"], 3, "{call}");
    let mech = call["sandbox"]["mechanism"].as_str().unwrap_or_default();
    assert!(mech.starts_with("bubblewrap"), "{call}");
    assert!(mech.contains("seccomp"), "{call}");
    // The placeholders that held `.claude/`, `.codex/`, `.vscode/` are nobody's change: not
    // recorded while they existed, gone afterwards, and no later step records a deletion.
    let o = r.horde(&["snapshot"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = r.horde(&["log", "--json", "--type", "state_change", "-n", "1000"]);
    let changes: Value = serde_json::from_slice(&o.stdout).expect("log json");
    let paths: Vec<&str> = changes
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["payload"]["path"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(paths, ["made.txt"], "{changes}");
    for p in [".claude", ".codex", ".vscode"] {
        assert!(!r.path().join(p).exists(), "{p} left behind");
    }
}

#[test]
fn a_roles_manifest_shapes_the_sandbox() {
    if !bwrap_installed() {
        return;
    }
    let r = Repo::new();
    std::fs::write(r.path().join(".env"), "TOKEN=role-marker-7731\n").expect("write .env");
    let agents = r.path().join(".horde/agents");
    std::fs::create_dir_all(&agents).expect("mkdir");
    std::fs::write(
        agents.join("builder.yaml"),
        "role: builder\ntier: T1\nfiles:\n  read: ['**']\n  write: ['**']\n  deny: ['.env']\ncommands:\n  allow: ['sh *', 'sleep *', 'curl *']\nnetwork:\n  allow: [example.org]\nbudgets:\n  wall_time: 3s\n",
    )
    .expect("write manifest");
    // The denied file cannot be read inside (`sandbox run` confines without deciding; `run
    // --role` would refuse to read it before running anything).
    let o = r.horde(&["sandbox", "run", "--role", "builder", "--", "cat", ".env"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Permission denied"), "{}", text(&o));
    assert!(!text(&o).contains("role-marker-7731"), "{}", text(&o));
    // The wall time is the role's.
    let o = r.horde(&["run", "--sandbox", "--role", "builder", "--", "sleep", "30"]);
    assert!(!o.status.success(), "{}", text(&o));
    let calls = r.tool_calls();
    let sandbox = &calls[0]["payload"]["sandbox"];
    assert_eq!(
        sandbox["limits_hit"],
        serde_json::json!(["wall_time"]),
        "{sandbox}"
    );
    // The role's host goes through the proxy (refused hosts are recorded).
    let o = r.horde(&[
        "run",
        "--sandbox",
        "--role",
        "builder",
        "--",
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "--max-time",
        "5",
        "http://not-allowed.invalid/",
    ]);
    assert!(text(&o).contains("refused a connection"), "{}", text(&o));
    let calls = r.tool_calls();
    let conns = &calls[0]["payload"]["sandbox"]["connections"];
    assert_eq!(conns[0]["host"], "not-allowed.invalid", "{conns}");
    assert_eq!(conns[0]["allowed"], false, "{conns}");
}
