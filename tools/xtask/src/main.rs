//! Dev tasks, run as `cargo xtask <task>` (alias in .cargo/config.toml).
//!
//! - `test`: the whole test suite, exactly what CI runs (`.ci/run` calls it). It installs
//!   and starts whatever services the tests need, so it works on a fresh Debian machine with
//!   only the Rust toolchain. Then it checks and lints the FoundationDB backend
//!   (`--features fdb`; installs `libclang-dev` for its bindings), which cannot link here.
//! - `bench`: the benchmarks that print the figures the issues ask for (release build).
//! - `load`: the cloud's ingest load against PostgreSQL (`tools/horde-load`).
//! - `sim`: sync under simulated faults over 1,000 seeds (`edge/tests/sync_sim_soak.rs`,
//!   release build); `cargo xtask sim N` runs N seeds.

use std::process::{Command, ExitCode};

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run(what: &str, mut cmd: Command) -> Result<(), String> {
    eprintln!("xtask: {what}");
    let status = cmd
        .status()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what}: failed with {status}"))
    }
}

fn test() -> Result<(), String> {
    // The sandbox's escape suite and benchmark confine real commands with bubblewrap.
    ensure_debian_package("bubblewrap", "by the sandbox's tests")?;
    let s3s_fs = ensure_s3s_fs()?;
    let schemathesis = ensure_schemathesis()?;
    let detect_secrets = ensure_detect_secrets()?;
    ensure_venv(SPIKEE)?;
    let claude = ensure_npm(CLAUDE_CODE, "claude")?;
    let gemini = ensure_npm(GEMINI_CLI, "gemini")?;
    let codex = ensure_npm(CODEX, "codex")?;
    let mut c = cargo();
    c.args(["test", "--workspace", "--locked"])
        .env("HORDE_CLAUDE_BIN", claude)
        .env("HORDE_GEMINI_BIN", gemini)
        .env("HORDE_CODEX_BIN", codex)
        .env("HORDE_S3S_FS", s3s_fs)
        .env("HORDE_SCHEMATHESIS", schemathesis)
        .env("HORDE_DETECT_SECRETS", detect_secrets);
    run("cargo test --workspace", c)?;
    fdb_compiles()
}

/// Claude Code, driven by `tests/agent_claude.rs` against a scripted Messages API server.
const CLAUDE_CODE: &str = "@anthropic-ai/claude-code@2.1.332";
/// Gemini CLI, driven by `tests/agent_gemini.rs` against a scripted Gemini API server.
const GEMINI_CLI: &str = "@google/gemini-cli@0.61.0";

/// The OpenAI Codex CLI, driven by `tests/agent_codex.rs` against a scripted Responses API
/// server.
const CODEX: &str = "@openai/codex@0.171.0";

/// Installs an npm package (pinned `NAME@VERSION`) once into
/// `tools/npm-NAME-VERSION/`; returns its binary `bin`.
fn ensure_npm(pin: &str, bin: &str) -> Result<std::path::PathBuf, String> {
    let dir_name = format!(
        "npm-{}",
        pin.trim_start_matches('@').replace(['/', '@'], "-")
    );
    let dir = tools_dir()?.join(dir_name);
    let exe = dir.join("node_modules/.bin").join(bin);
    let done = dir.join(".installed");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut c = Command::new("npm");
        c.args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg(pin);
        run(&format!("npm install {pin}"), c)?;
        std::fs::write(&done, pin).map_err(|e| e.to_string())?;
    }
    if !exe.exists() {
        return Err(format!("{pin} installed no {}", exe.display()));
    }
    Ok(exe)
}

/// Where tools the tests need are installed: `$HOME/.cache/horde/tools`.
fn tools_dir() -> Result<std::path::PathBuf, String> {
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    Ok(std::path::PathBuf::from(home).join(".cache/horde/tools"))
}

/// A real S3-compatible server for the blob tests: s3s-fs 0.14.1 (newer needs Rust 1.96).
fn ensure_s3s_fs() -> Result<std::path::PathBuf, String> {
    let root = tools_dir()?;
    let bin = root.join("bin/s3s-fs");
    if !bin.exists() {
        let mut c = cargo();
        c.args([
            "install",
            "s3s-fs@0.14.1",
            "--locked",
            "--features",
            "binary",
            "--root",
        ])
        .arg(&root)
        // Its own target directory: never rebuild the workspace's dependencies.
        .env("CARGO_TARGET_DIR", root.join("build"));
        run("cargo install s3s-fs (S3-compatible server for tests)", c)?;
    }
    Ok(bin)
}

/// Schemathesis (PyPI) in a virtualenv, to fuzz the cloud API from its OpenAPI document.
fn ensure_schemathesis() -> Result<std::path::PathBuf, String> {
    Ok(ensure_venv(SCHEMATHESIS)?.join("bin/st"))
}

/// detect-secrets (PyPI), the anchor of the secret scanner's benchmark.
fn ensure_detect_secrets() -> Result<std::path::PathBuf, String> {
    Ok(ensure_venv(DETECT_SECRETS)?.join("bin/detect-secrets"))
}

/// A PyPI package (`name==version`) in its own virtualenv under the tools directory, named
/// after the pin (`venv-NAME-VERSION`), so a new pin installs afresh. Returns the venv.
fn ensure_venv(pin: &str) -> Result<std::path::PathBuf, String> {
    let venv = tools_dir()?.join(format!("venv-{}", pin.replace("==", "-")));
    let done = venv.join(".installed");
    if !done.exists() {
        // A half-made virtualenv (an interrupted install) is made again.
        let _ = std::fs::remove_dir_all(&venv);
        let mut c = Command::new("python3");
        c.args(["-m", "venv"]).arg(&venv);
        run("python3 -m venv", c)?;
        let mut c = Command::new(venv.join("bin/python"));
        c.args(["-m", "pip", "install", "-q", pin]);
        run(&format!("pip install {pin}"), c)?;
        std::fs::write(&done, pin).map_err(|e| format!("{}: {e}", done.display()))?;
    }
    Ok(venv)
}

/// The version pinned here names the virtualenv, so a new pin installs afresh.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
/// The secret scanner people run in pre-commit: the anchor of `horde-bench secrets`.
const DETECT_SECRETS: &str = "detect-secrets==1.5.0";
/// The prompt-injection data set (its attack seeds and false-positive set), read by
/// horde-policy's `tests/injection_spikee.rs` from this venv.
const SPIKEE: &str = "spikee==0.9.2";

/// The FoundationDB backend cannot link here (no libfdb_c), but it must always compile:
/// check it and lint it with the feature on. Its bindings need libclang.
fn fdb_compiles() -> Result<(), String> {
    ensure_debian_package("libclang-dev", "to compile the FoundationDB bindings")?;
    const WITH_FDB: [&str; 10] = [
        "--locked",
        "-p",
        "horde-kv",
        "-p",
        "horde-ledger",
        "-p",
        "horde-cloud",
        "--features",
        "horde-kv/fdb,horde-ledger/fdb,horde-cloud/fdb",
        "--all-targets",
    ];
    let mut c = cargo();
    c.arg("check").args(WITH_FDB);
    run(
        "cargo check -p horde-kv --features fdb (and horde-ledger)",
        c,
    )?;
    let mut c = cargo();
    c.arg("clippy")
        .args(WITH_FDB)
        .args(["--", "-D", "warnings"]);
    run("cargo clippy --features fdb", c)
}

/// Installs a Debian package if it is missing (as root, or through passwordless sudo).
fn ensure_debian_package(name: &str, why: &str) -> Result<(), String> {
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false);
    let apt = |args: &[&str]| {
        let mut c = if root {
            Command::new("apt-get")
        } else {
            Command::new("sudo")
        };
        if !root {
            c.args(["-n", "apt-get"]);
        }
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    if run(
        &format!("apt-get install {name}"),
        apt(&["install", "-y", "-q", name]),
    )
    .is_ok()
    {
        return Ok(());
    }
    run("apt-get update", apt(&["update", "-q"]))?;
    run(
        &format!("apt-get install {name}"),
        apt(&["install", "-y", "-q", name]),
    )
    .map_err(|e| format!("{e}; install {name} by hand (it is needed {why})"))
}

/// Builds `packages` in release mode, then runs `tool` (one of them) with `args`.
fn release_run(packages: &[&str], tool: &str, args: &[String]) -> Result<(), String> {
    release_run_with(packages, tool, args, &[])
}

fn release_run_with(
    packages: &[&str],
    tool: &str,
    args: &[String],
    envs: &[(&str, std::path::PathBuf)],
) -> Result<(), String> {
    let mut b = cargo();
    b.args(["build", "--release", "--locked"]);
    for p in packages {
        b.args(["-p", p]);
    }
    run("build release binaries", b)?;
    let mut c = cargo();
    c.args(["run", "--release", "--locked", "-q", "-p", tool, "--"])
        .args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    run(tool, c)
}

fn bench(args: &[String]) -> Result<(), String> {
    let all = ["all".to_owned()];
    let args = if args.is_empty() { &all[..] } else { args };
    // `sync` drains to a real horde-cloud, found beside horde-bench.
    let packages: &[&str] = if args[0] == "sync" {
        &["horde", "horde-cloud", "horde-bench"]
    } else {
        &["horde", "horde-bench"]
    };
    // `secrets` runs detect-secrets beside our scanner.
    let envs = if args[0] == "secrets" {
        vec![("HORDE_DETECT_SECRETS", ensure_detect_secrets()?)]
    } else {
        Vec::new()
    };
    release_run_with(packages, "horde-bench", args, &envs)
}

/// The cloud's ingest load: horde-cloud vs PostgreSQL COPY (`tools/horde-load`).
fn load(args: &[String]) -> Result<(), String> {
    release_run(&["horde-cloud", "horde-load"], "horde-load", args)
}

/// The sync simulation's soak run (`#[ignore]`d in `cargo test`). `HORDE_SIM_SEED=N`
/// replays one seed.
fn sim(args: &[String]) -> Result<(), String> {
    let mut c = cargo();
    c.args([
        "test",
        "-p",
        "horde",
        "--release",
        "--locked",
        "--test",
        "sync_sim_soak",
        "--",
        "--ignored",
        "--nocapture",
    ]);
    if let Some(n) = args.first() {
        let n: u64 = n
            .parse()
            .map_err(|_| format!("sim: {n:?} is not a number of seeds"))?;
        c.env("HORDE_SIM_SEEDS", n.to_string());
    }
    run(
        "cargo test --test sync_sim_soak (sync under simulated faults)",
        c,
    )
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("bench") => bench(&args[1..]),
        Some("load") => load(&args[1..]),
        Some("sim") => sim(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask test | bench [append|step|run-overhead|ledger-append|manifest|restore|sync|all] | load [horde-load options] | sim [SEEDS]"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
