//! `step`: recording one step that changed 10 files of a 1,000-file repository, in-process and
//! with the `horde snapshot` CLI, vs `git add -A && git commit` of the same step.

use crate::util::horde;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, ensure};
use horde::record::Recorder;
use horde_core::DeviceKey;

use crate::util::{Rng, horde_bin, median, ms, print_missing_horde, timed};

/// The goal for git/horde.
const GOAL: f64 = 5.0;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Steps timed; the median is reported.
    #[arg(long, default_value_t = 30)]
    pub iterations: usize,
    /// Files in the generated repository.
    #[arg(long, default_value_t = 1000)]
    pub files: usize,
    /// Files changed per step.
    #[arg(long, default_value_t = 10)]
    pub changed: usize,
    /// Pause between steps (outside the clock), e.g. 1100 to let horde's 1-second racy
    /// window pass as it would between an agent's real steps.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub pause_ms: u64,
}

/// The directories of the generated tree (nested, as in a real project).
const DIRS: &[&str] = &[
    "src",
    "src/core",
    "src/core/util",
    "src/api",
    "src/api/v1",
    "tests",
    "tests/fixtures",
    "docs",
    "docs/guide",
    "assets",
];

/// A deterministic tree: (relative path, content).
fn generate(rng: &mut Rng, files: usize) -> Vec<(PathBuf, Vec<u8>)> {
    (0..files)
        .map(|i| {
            let dir = DIRS[i % DIRS.len()];
            let path = Path::new(dir).join(format!("file_{i:04}.txt"));
            let len = rng.range(500, 8000);
            (path, rng.text(len))
        })
        .collect()
}

/// Writes the tree under `root`, every file and directory backdated an hour (an old repo).
fn write_tree(root: &Path, tree: &[(PathBuf, Vec<u8>)]) -> Result<()> {
    for d in DIRS {
        fs::create_dir_all(root.join(d))?;
    }
    let old = SystemTime::now() - Duration::from_secs(3600);
    for (rel, content) in tree {
        let p = root.join(rel);
        fs::write(&p, content).with_context(|| format!("cannot write {}", p.display()))?;
        File::options().write(true).open(&p)?.set_modified(old)?;
    }
    for d in DIRS {
        File::open(root.join(d))?.set_modified(old)?;
    }
    Ok(())
}

fn write_changes(root: &Path, changes: &[(PathBuf, Vec<u8>)]) -> Result<()> {
    for (rel, content) in changes {
        fs::write(root.join(rel), content)?;
    }
    Ok(())
}

/// A git command isolated from the user's global and system config.
fn git(dir: &Path, script: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(script)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1");
    c
}

pub fn run(args: &Args) -> Result<()> {
    ensure!(
        args.iterations > 0 && args.changed > 0 && args.changed <= args.files,
        "need --iterations > 0 and 0 < --changed <= --files"
    );
    let mut rng = Rng::new(0x00c0_ffee);
    let tree = generate(&mut rng, args.files);
    let total: usize = tree.iter().map(|(_, c)| c.len()).sum();

    // In-process copy.
    let inproc_dir = tempfile::tempdir()?;
    write_tree(inproc_dir.path(), &tree)?;
    let init = horde::record::init(inproc_dir.path(), DeviceKey::generate()?)?;
    ensure!(
        init.entries == args.files + DIRS.len(),
        "horde init recorded {} entries, expected {}",
        init.entries,
        args.files + DIRS.len()
    );
    let store = init.store;
    let mut rec = Recorder::new(&store)?;

    // CLI copy: its own repository, since the in-process recorder's index would not follow
    // changes recorded by another process.
    let bin = horde_bin()?;
    let cli_dir = tempfile::tempdir()?;
    let config_dir = tempfile::tempdir()?;
    if let Some(bin) = &bin {
        write_tree(cli_dir.path(), &tree)?;
        timed(&mut horde(
            bin,
            config_dir.path(),
            cli_dir.path(),
            &["init"],
        ))?;
    }

    // Git copy.
    let git_dir = tempfile::tempdir()?;
    write_tree(git_dir.path(), &tree)?;
    timed(&mut git(
        git_dir.path(),
        "git init -q && git config user.name bench && git config user.email bench@example.com \
         && git config commit.gpgsign false && git config gc.auto 0 \
         && git add -A && git commit -q -m init",
    ))?;

    println!(
        "step          {} files in {} dirs ({:.1} MB), {} files rewritten per step, median of {} steps, pause {} ms between steps",
        args.files,
        DIRS.len(),
        total as f64 / 1e6,
        args.changed,
        args.iterations,
        args.pause_ms
    );

    let (mut t_inproc, mut t_cli, mut t_git) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.iterations {
        let mut picked: Vec<usize> = Vec::with_capacity(args.changed);
        while picked.len() < args.changed {
            let i = rng.range(0, args.files - 1);
            if !picked.contains(&i) {
                picked.push(i);
            }
        }
        let changes: Vec<(PathBuf, Vec<u8>)> = picked
            .iter()
            .map(|&i| {
                let len = rng.range(500, 8000);
                (tree[i].0.clone(), rng.text(len))
            })
            .collect();

        // (a) horde in-process.
        write_changes(inproc_dir.path(), &changes)?;
        let started = Instant::now();
        let step = rec.step("bench", None, Vec::new(), false)?;
        t_inproc.push(ms(started.elapsed()));
        ensure!(
            step.changes == args.changed,
            "in-process step recorded {} changes, expected {}",
            step.changes,
            args.changed
        );

        // (b) horde CLI.
        if let Some(bin) = &bin {
            write_changes(cli_dir.path(), &changes)?;
            let (out, took) = timed(&mut horde(
                bin,
                config_dir.path(),
                cli_dir.path(),
                &["snapshot", "--agent", "bench", "--json"],
            ))?;
            t_cli.push(ms(took));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)
                .context("`horde snapshot --json` printed no JSON")?;
            ensure!(
                v["changes"].as_u64() == Some(args.changed as u64),
                "`horde snapshot` recorded {} changes, expected {}",
                v["changes"],
                args.changed
            );
        }

        // Git.
        write_changes(git_dir.path(), &changes)?;
        let (_, took) = timed(&mut git(
            git_dir.path(),
            "git add -A && git commit -q -m step",
        ))?;
        t_git.push(ms(took));
        if args.pause_ms > 0 {
            std::thread::sleep(Duration::from_millis(args.pause_ms));
        }
    }

    let (a, g) = (median(&t_inproc), median(&t_git));
    println!(
        "step          horde in-process {a:>8.2} ms   git add+commit {g:>8.2} ms   git/horde {:>5.1}x (goal >= {GOAL:.0}x)",
        g / a
    );
    if bin.is_some() {
        let b = median(&t_cli);
        println!(
            "step          horde snapshot   {b:>8.2} ms   git add+commit {g:>8.2} ms   git/horde {:>5.1}x (goal >= {GOAL:.0}x)",
            g / b
        );
    } else {
        print_missing_horde("step (CLI)");
    }
    Ok(())
}
