//! `run-overhead`: `horde run -- sh -c '<write 1,000 files>'` vs the same command bare.

use crate::util::horde;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Result, ensure};
use horde::store::{Layout, Ledger};

use crate::util::{horde_bin, median, ms, print_missing_horde, timed};

const SCRIPT: &str = "mkdir -p out && for i in $(seq 1000); do echo $i > out/f$i; done";

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Runs of each side; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
}

/// Takes `out/` away from `dir` by moving it into `trash` (emptied when the run is over):
/// deleting 1,000 inodes between runs would slow the next run's file creation on some
/// filesystems (journal-less ext4 skips recently freed inodes), so the harness frees none.
fn remove_out(dir: &Path, trash: &Path, n: usize) -> Result<()> {
    let out = dir.join("out");
    if out.exists() {
        std::fs::rename(&out, trash.join(format!("out-{n}")))?;
    }
    Ok(())
}

pub fn run(args: &Args) -> Result<()> {
    ensure!(args.runs > 0, "--runs must be positive");
    let Some(bin) = horde_bin()? else {
        print_missing_horde("run-overhead");
        return Ok(());
    };
    let config = tempfile::tempdir()?;
    let repo = tempfile::tempdir()?;
    let bare = tempfile::tempdir()?;
    let trash = tempfile::tempdir()?;
    timed(&mut horde(&bin, config.path(), repo.path(), &["init"]))?;

    println!(
        "run-overhead  sh -c '{SCRIPT}', median of {} runs",
        args.runs
    );
    let (mut t_horde, mut t_bare) = (Vec::new(), Vec::new());
    for i in 0..args.runs {
        // Outside the clock: remove out/ and record the removal, so the timed run records
        // only the command's own changes.
        remove_out(repo.path(), trash.path(), 2 * i)?;
        timed(&mut horde(
            &bin,
            config.path(),
            repo.path(),
            &["snapshot", "--agent", "bench"],
        ))?;
        let (_, took) = timed(&mut horde(
            &bin,
            config.path(),
            repo.path(),
            &[
                "run", "--quiet", "--agent", "bench", "--", "sh", "-c", SCRIPT,
            ],
        ))?;
        t_horde.push(ms(took));

        remove_out(bare.path(), trash.path(), 2 * i + 1)?;
        let (_, took) = timed(
            Command::new("sh")
                .args(["-c", SCRIPT])
                .current_dir(bare.path())
                .stdin(Stdio::null()),
        )?;
        t_bare.push(ms(took));
    }

    // Sanity: every run recorded out/ and its 1,000 files.
    let ledger = Ledger::open(Layout::new(repo.path()))?;
    let created: i64 = ledger.conn.query_row(
        "SELECT COUNT(*) FROM events WHERE type = 'state_change' AND agent = 'bench' AND path LIKE 'out%'",
        [],
        |r| r.get(0),
    )?;
    let expected = (args.runs * 1001 + (args.runs - 1) * 1001) as i64;
    let note = if created == expected {
        String::new()
    } else {
        format!("   (note: {created} state changes under out/ recorded, expected {expected})")
    };

    let (h, b) = (median(&t_horde), median(&t_bare));
    println!(
        "run-overhead  horde run {h:>8.1} ms   bare sh {b:>8.1} ms   ratio horde/bare {:.2}   (+{:.1} ms){note}",
        h / b,
        h - b
    );
    Ok(())
}
