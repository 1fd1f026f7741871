//! `hooks`: what an agent waits for when horde answers its PreToolUse hook.
//!
//! A repository of N files (10,000; 1,000 with `--quick`), initialised; each round spawns the
//! real `horde hook claude PreToolUse --mode enforce` with a Claude Code payload on stdin and
//! waits for its answer (the process start, the policy decision, the drift scan and the
//! append), then its PostToolUse (not timed: the agent does not wait on it for a decision).
//! The anchor is the cheapest possible hook, `sh -c 'cat >/dev/null; echo {}'`, spawned the
//! same way. Goal: p99 ≤ 20 ms and ≤ 3× the anchor's p99. Nothing is asserted about timing.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde_json::json;

use crate::util::{horde, horde_bin, median, ms, print_missing_horde};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// A small repository and few rounds (what the test suite runs so this cannot rot).
    #[arg(long)]
    pub quick: bool,
    /// Rounds of each side (default 200, 10 with --quick).
    #[arg(long)]
    pub runs: Option<usize>,
}

/// Spawns `cmd`, writes `input` to its stdin, waits for its output; the time of it all.
fn round(cmd: &mut Command, input: &[u8]) -> Result<(f64, Vec<u8>)> {
    let t = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().context("stdin")?.write_all(input)?;
    let out = child.wait_with_output()?;
    let took = ms(t.elapsed());
    ensure!(
        out.status.success(),
        "hook failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((took, out.stdout))
}

fn p99(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0)
}

fn make_repo(root: &Path, files: usize) -> Result<()> {
    for i in 0..files {
        let dir = root.join(format!("src/d{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir)?;
        }
        std::fs::write(dir.join(format!("f{i}.rs")), format!("// file {i}\n"))?;
    }
    Ok(())
}

pub fn run(a: &Args) -> Result<()> {
    let Some(bin) = horde_bin()? else {
        print_missing_horde("hooks");
        return Ok(());
    };
    let files = if a.quick { 1_000 } else { 10_000 };
    let runs = a.runs.unwrap_or(if a.quick { 10 } else { 200 });
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("repo");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home)?;
    make_repo(&root, files)?;
    let config = home.join("cfg");
    let init = horde(&bin, &config, &root, &["init"])
        .env("HOME", &home)
        .output()?;
    ensure!(
        init.status.success(),
        "horde init: {}",
        String::from_utf8_lossy(&init.stderr)
    );

    // Alone: every call opens the ledger, compiles the policy and walks the tree.
    let alone = calls(&bin, &config, &root, &home, runs, "alone", false)?;
    // With the daemon: the same calls answered by `horde daemon` over its socket.
    let start = horde(&bin, &config, &root, &["daemon", "start"])
        .env("HOME", &home)
        .output()?;
    ensure!(
        start.status.success(),
        "horde daemon start: {}",
        String::from_utf8_lossy(&start.stderr)
    );
    let warm = calls(&bin, &config, &root, &home, runs, "daemon", true);
    let _ = horde(&bin, &config, &root, &["daemon", "stop"])
        .env("HOME", &home)
        .output();
    let warm = warm?;
    let mut floor = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut f = Command::new("sh");
        f.args(["-c", "cat >/dev/null; echo '{}'"]);
        floor.push(round(&mut f, pre_payload(&root, &home, "floor").as_bytes())?.0);
    }
    let (fp50, fp99) = (median(&floor), p99(&floor));
    println!(
        "PreToolUse round trip, {files}-file repository, {runs} calls (agent → hook → answer):"
    );
    for (name, xs) in [
        ("with the daemon", &warm),
        ("alone (HORDE_DAEMON=off)", &alone),
    ] {
        let (p50, p99v) = (median(xs), p99(xs));
        println!(
            "  horde hook, {name:<26} p50 {p50:7.1} ms   p99 {p99v:7.1} ms   {:.2}× the floor at p99",
            p99v / fp99.max(f64::EPSILON)
        );
    }
    println!("  floor: cat >/dev/null; echo '{{}}'        p50 {fp50:7.1} ms   p99 {fp99:7.1} ms");
    println!(
        "  goal: p99 ≤ 20 ms and ≤ 3× the floor; with the daemon p99 {:.1} ms, {:.2}×",
        p99(&warm),
        p99(&warm) / fp99.max(f64::EPSILON)
    );
    Ok(())
}

fn pre_payload(root: &Path, home: &Path, call: &str) -> String {
    json!({
        "session_id": "bench", "cwd": root, "hook_event_name": "PreToolUse",
        "transcript_path": home.join("t.jsonl"), "permission_mode": "default",
        "tool_name": "Bash", "tool_input": {"command": "cargo test --workspace"},
        "tool_use_id": call,
    })
    .to_string()
}

/// `runs` tool calls, each changing one file between its PreToolUse and PostToolUse; the
/// PreToolUse round trips.
fn calls(
    bin: &Path,
    config: &Path,
    root: &Path,
    home: &Path,
    runs: usize,
    tag: &str,
    daemon: bool,
) -> Result<Vec<f64>> {
    let mut hook = Vec::with_capacity(runs);
    for i in 0..runs {
        let call = format!("toolu_{tag}_{i}");
        let mut c = horde(bin, config, root, &["hook", "claude", "PreToolUse"]);
        c.args(["--mode", "enforce"]).env("HOME", home);
        if !daemon {
            c.env("HORDE_DAEMON", "off");
        }
        let (t, out) = round(&mut c, pre_payload(root, home, &call).as_bytes())?;
        ensure!(
            out.starts_with(b"{"),
            "the hook answered {:?}",
            String::from_utf8_lossy(&out)
        );
        hook.push(t);
        std::fs::write(
            root.join(format!("src/d{:03}/f{i}.rs", i % 100)),
            format!("// {tag} call {i}\n"),
        )?;
        let post = json!({
            "session_id": "bench", "cwd": root, "hook_event_name": "PostToolUse",
            "tool_name": "Bash", "tool_input": {"command": "cargo test --workspace"},
            "tool_response": {"stdout": "ok", "stderr": "", "interrupted": false},
            "tool_use_id": call, "duration_ms": 5,
        })
        .to_string();
        let mut c = horde(bin, config, root, &["hook", "claude", "PostToolUse"]);
        c.args(["--mode", "enforce"]).env("HOME", home);
        if !daemon {
            c.env("HORDE_DAEMON", "off");
        }
        round(&mut c, post.as_bytes())?;
    }
    Ok(hook)
}
