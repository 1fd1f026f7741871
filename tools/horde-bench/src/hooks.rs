//! `hooks`: what an agent waits for when horde answers its PreToolUse hook.
//!
//! A repository of N files (10,000; 1,000 with `--quick`), initialised; each round spawns the
//! real `horde hook claude PreToolUse --mode enforce` with a Claude Code payload on stdin and
//! waits for its answer (the process start, the policy decision, the drift scan and the
//! append), then its PostToolUse (not timed: the agent does not wait on it for a decision).
//! The anchor is the cheapest possible hook, `sh -c 'cat >/dev/null; echo {}'`, spawned the
//! same way. Goal: p99 ≤ 20 ms and ≤ 3× the anchor's p99.
//!
//! Then the recording overhead on a whole session: the real Claude Code (`HORDE_CLAUDE_BIN`)
//! runs a scripted session of 200 tool calls (10 with `--quick`) — Write, Bash appends and
//! renames, Read — against `horde_e2e::anthropic`'s Messages API server, in a repository with
//! horde's hooks installed over HTTP (`--transport http`: the tool calls' hooks POST to the
//! daemon), in one with them as `horde hook` commands (enforce, a role allowing the calls), in
//! one whose same command entries run only `sh -c 'cat >/dev/null; echo {}'` (what Claude
//! Code's hooks cost by themselves), and in one without hooks; the wall time of each, median
//! of 3 sessions a side (1 with `--quick`), sides taking turns. Goal: ≤ 1.10× without. Nothing
//! is asserted about timing. `HORDE_BENCH_KEEP=1` keeps the repositories (ledgers, daemon
//! logs; with `HORDE_LOG=horde::hooks::http=debug` the log has each answer's latency).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde_json::json;

use horde_e2e::anthropic::{ModelServer, Reply};

use crate::util::{horde, horde_bin, median, ms, print_missing_horde};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// A small repository and few rounds (what the test suite runs so this cannot rot).
    #[arg(long)]
    pub quick: bool,
    /// Rounds of each side (default 200, 10 with --quick).
    #[arg(long)]
    pub runs: Option<usize>,
    /// Tool calls in the Claude Code session (default 200, 10 with --quick).
    #[arg(long)]
    pub session_calls: Option<usize>,
    /// Sessions of each side (default 3, 1 with --quick).
    #[arg(long)]
    pub sessions: Option<usize>,
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
    let (calls, sessions) = if a.quick { (10, 1) } else { (200, 3) };
    session_overhead(
        &bin,
        files,
        a.session_calls.unwrap_or(calls),
        a.sessions.unwrap_or(sessions),
    )
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

const BENCH_ROLE: &str = "role: bench
tier: T1
files:
  read: ['**']
  write: ['src/**']
  deny: ['.git/**', '.horde/**']
commands:
  allow: ['echo *', 'mv *', 'cat *']
";

/// The scripted session: `calls` tool calls in `dir` (relative to the repository), four
/// kinds in turn, then a closing text.
fn script(root: &Path, dir: &str, calls: usize) -> Vec<Reply> {
    let mut out: Vec<Reply> = (0..calls)
        .map(|i| {
            let base = i - i % 4;
            match i % 4 {
                0 => Reply::tool(
                    "Write",
                    json!({"file_path": root.join(format!("{dir}/f{base}.rs")),
                           "content": format!("pub fn f{base}() {{}}\n")}),
                ),
                1 => Reply::tool(
                    "Bash",
                    json!({"command": format!("echo '// {i}' >> {dir}/f{base}.rs"),
                           "description": "append"}),
                ),
                2 => Reply::tool(
                    "Bash",
                    json!({"command": format!("mv {dir}/f{base}.rs {dir}/g{base}.rs"),
                           "description": "rename"}),
                ),
                _ => Reply::tool(
                    "Read",
                    json!({"file_path": root.join(format!("{dir}/g{base}.rs"))}),
                ),
            }
        })
        .collect();
    out.push(Reply::text("done"));
    out
}

/// Which hooks a session's repository has.
#[derive(Clone, Copy, PartialEq)]
enum Hooks {
    /// `horde hooks install claude --mode enforce --role bench --transport http`.
    HordeHttp,
    /// `horde hooks install claude --mode enforce --role bench`.
    Horde,
    /// The same entries, each running a hook that only reads stdin and answers.
    Floor,
    None,
}

/// The floor's hook: reads the payload, answers nothing to change.
const FLOOR_HOOK: &str = "cat >/dev/null; echo '{}'";

/// A repository of `files` files for Claude Code, with its own home and horde config, and
/// the hooks of `hooks`.
struct SessionRepo {
    root: std::path::PathBuf,
    home: std::path::PathBuf,
    config: std::path::PathBuf,
}

impl SessionRepo {
    fn new(base: &Path, name: &str, bin: &Path, files: usize, hooks: Hooks) -> Result<Self> {
        let root = base.join(name);
        let home = base.join(format!("{name}-home"));
        let config = home.join(".config/horde");
        std::fs::create_dir_all(&home)?;
        make_repo(&root, files)?;
        let repo = Self { root, home, config };
        repo.horde(bin, &["init"])?;
        std::fs::create_dir_all(repo.root.join(".horde/agents"))?;
        std::fs::write(repo.root.join(".horde/agents/bench.yaml"), BENCH_ROLE)?;
        if hooks != Hooks::None {
            let mut args = vec![
                "hooks", "install", "claude", "--mode", "enforce", "--role", "bench",
            ];
            if hooks == Hooks::HordeHttp {
                args.extend(["--transport", "http"]);
            }
            repo.horde(bin, &args)?;
        }
        if hooks == Hooks::Floor {
            let path = repo.root.join(".claude/settings.local.json");
            let mut settings: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
            let mut n = 0;
            for entries in settings["hooks"]
                .as_object_mut()
                .context("hooks in the settings")?
                .values_mut()
            {
                for entry in entries.as_array_mut().into_iter().flatten() {
                    for h in entry["hooks"].as_array_mut().into_iter().flatten() {
                        h["command"] = json!("sh");
                        h["args"] = json!(["-c", FLOOR_HOOK]);
                        if let Some(o) = h.as_object_mut() {
                            o.remove("onFailure");
                        }
                        n += 1;
                    }
                }
            }
            ensure!(n > 0, "no hook entries to replace in {}", path.display());
            std::fs::write(&path, serde_json::to_vec_pretty(&settings)?)?;
        }
        Ok(repo)
    }

    fn horde(&self, bin: &Path, args: &[&str]) -> Result<Vec<u8>> {
        let out = horde(bin, &self.config, &self.root, args)
            .env("HOME", &self.home)
            .output()?;
        ensure!(
            out.status.success(),
            "horde {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(out.stdout)
    }

    /// One headless session of the real Claude Code; its wall time.
    fn session(&self, claude: &Path, dir: &str, calls: usize) -> Result<f64> {
        std::fs::create_dir_all(self.root.join(dir))?;
        let model = ModelServer::start(script(&self.root, dir, calls));
        let t = Instant::now();
        let out = Command::new(claude)
            .current_dir(&self.root)
            .env("HOME", &self.home)
            .env("HORDE_CONFIG_DIR", &self.config)
            .env_remove("HORDE_AGENT")
            .args(["-p", "do the work", "--output-format", "json"])
            .args(["--permission-mode", "bypassPermissions"])
            .args(["--max-turns", &(calls + 10).to_string()])
            .env("ANTHROPIC_BASE_URL", model.url())
            .env("ANTHROPIC_API_KEY", "sk-ant-bench")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            // bypassPermissions is refused as root unless it says it is in a sandbox.
            .env("IS_SANDBOX", "1")
            .stdin(Stdio::null())
            .output()?;
        let took = ms(t.elapsed());
        ensure!(
            out.status.success(),
            "claude failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The script ran to its end: every call was made and answered.
        let asked = model.bodies().len();
        ensure!(
            asked == calls + 1,
            "Claude Code asked the model {asked} times for {calls} tool calls"
        );
        // And did what it was told: every file written, renamed where the script renames it.
        for base in (0..calls).step_by(4) {
            let name = if base + 2 < calls { 'g' } else { 'f' };
            let path = format!("{dir}/{name}{base}.rs");
            ensure!(
                self.root.join(&path).exists(),
                "the session's file {path} is not there"
            );
        }
        Ok(took)
    }

    /// Tool calls recorded with a result, by call id.
    fn recorded_calls(&self, bin: &Path) -> Result<usize> {
        let out = self.horde(
            bin,
            &["log", "--json", "--type", "tool_call", "--limit", "100000"],
        )?;
        let log: Vec<serde_json::Value> = serde_json::from_slice(&out)?;
        Ok(log
            .iter()
            .filter(|e| e["payload"]["intent"] != true)
            .count())
    }
}

/// The wall time of a scripted Claude Code session with and without horde's hooks.
fn session_overhead(bin: &Path, files: usize, calls: usize, sessions: usize) -> Result<()> {
    let Some(claude) = std::env::var_os("HORDE_CLAUDE_BIN").map(std::path::PathBuf::from) else {
        println!(
            "Claude Code session: skipped, HORDE_CLAUDE_BIN is not set (`cargo xtask test` installs Claude Code)"
        );
        return Ok(());
    };
    ensure!(
        calls >= 1 && sessions >= 1,
        "--session-calls and --sessions must be at least 1"
    );
    // HORDE_BENCH_KEEP=1 keeps the repositories (their ledgers, the daemon's log) to look at.
    let keep = std::env::var_os("HORDE_BENCH_KEEP").is_some();
    let dir = tempfile::Builder::new().disable_cleanup(keep).tempdir()?;
    if keep {
        eprintln!(
            "the sessions' repositories stay in {}",
            dir.path().display()
        );
    }
    let sides = [Hooks::HordeHttp, Hooks::Horde, Hooks::Floor, Hooks::None];
    let repos = sides
        .iter()
        .zip(["horde-http", "horde", "floor", "none"])
        .map(|(&h, name)| SessionRepo::new(dir.path(), name, bin, files, h))
        .collect::<Result<Vec<_>>>()?;
    let mut walls: Vec<Vec<f64>> = vec![Vec::new(); sides.len()];
    let result = (|| -> Result<()> {
        for s in 0..sessions {
            let d = format!("src/s{s}");
            // Each session starts with another side, so none always gets a warmer machine.
            for k in 0..sides.len() {
                let i = (s + k) % sides.len();
                walls[i].push(repos[i].session(&claude, &d, calls)?);
            }
        }
        Ok(())
    })();
    for r in &repos[..2] {
        let _ = r.horde(bin, &["daemon", "stop"]);
    }
    result?;
    // The figures count only if horde recorded every call.
    let mut recorded = 0;
    for (r, name) in repos[..2].iter().zip(["over HTTP", "as commands"]) {
        recorded = r.recorded_calls(bin)?;
        ensure!(
            recorded == calls * sessions,
            "horde's hooks {name} recorded {recorded} tool calls of {}",
            calls * sessions
        );
    }
    let [h, a, f, b] = [0, 1, 2, 3].map(|i| median(&walls[i]));
    let per = |x: f64| (x - b) / calls as f64;
    println!(
        "Recording overhead, a scripted {calls}-tool-call Claude Code session, {files}-file repository (median of {sessions}):"
    );
    println!(
        "  Claude Code with horde's hooks over HTTP   {:8.2} s   {:.3}× without   +{:.1} ms a call",
        h / 1000.0,
        h / b.max(f64::EPSILON),
        per(h)
    );
    println!(
        "  the same as `horde hook` commands          {:8.2} s   {:.3}× without   +{:.1} ms a call",
        a / 1000.0,
        a / b.max(f64::EPSILON),
        per(a)
    );
    println!(
        "  Claude Code, the same hooks doing nothing  {:8.2} s   {:.3}× without   +{:.1} ms a call",
        f / 1000.0,
        f / b.max(f64::EPSILON),
        per(f)
    );
    println!(
        "  Claude Code without hooks                  {:8.2} s",
        b / 1000.0
    );
    println!(
        "  horde's commands: {:.3}× the do-nothing command hooks; all {recorded} calls recorded by each",
        a / f.max(f64::EPSILON)
    );
    println!(
        "  goal: ≤ 1.10× without; over HTTP {:.3}×, as commands {:.3}×",
        h / b.max(f64::EPSILON),
        a / b.max(f64::EPSILON)
    );
    Ok(())
}
