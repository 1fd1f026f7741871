//! `horde-bench`: what horde costs, each figure printed beside an anchor measured in the same
//! run on the same machine, with the ratio and the goal. Nothing is asserted about timing.
//!
//! Run with `cargo build --release -p horde -p horde-bench && target/release/horde-bench all`
//! (or `cargo run --release -p horde-bench -- all` after building `horde`). Temporary
//! repositories go to `$TMPDIR` (else `/tmp`): point it at the disk you care about, since
//! every benchmark here includes fsyncs.
//!
//! - `append`: append throughput of the edge store. Observation events whose encoded
//!   `EventBody` is ~300 bytes, built, hashed and chained by horde's writer thread, with a
//!   signed chain head every 1,000 events, appended in batches (one `AppendRequest`, so one
//!   transaction, per batch). Anchor: raw rusqlite inserts of as many rows into a table with
//!   the same columns as `events` but no secondary index, with the same pragmas
//!   (`journal_mode=WAL`, `synchronous=FULL`), the same batch per `BEGIN IMMEDIATE`
//!   transaction and a cached prepared statement. Fairness: both sides start from a fresh
//!   database in a fresh directory; everything a caller would have before appending (the
//!   drafts for horde; the rows with a precomputed 300-byte body and its SHA-256 for the
//!   anchor) is prepared before the clock starts; the runs of the two sides alternate and the
//!   median of each is reported. What remains in horde's time is exactly its own work:
//!   encoding, hashing, chaining, signing heads, the two unique indexes of `events`, and the
//!   hand-off to the writer thread. Goal: horde/raw >= 0.7. `--breakdown` adds two anchors
//!   closer to horde's work (with the two unique indexes of `events`; then also SHA-256 of
//!   each body inside the clock) to show where the difference goes.
//!
//! - `step`: recording one step that changed 10 files of a 1,000-file repository, against
//!   `git add -A && git commit` of the same step (what git-based checkpointing costs). The
//!   same deterministic tree (10 nested directories, files of 500 B to 8 kB of pseudo-random
//!   text, backdated an hour as files of a real repository are) is written into three copies:
//!   one for horde in-process (`Recorder::step`, the recorder reused across steps as `horde
//!   run` does), one for the `horde snapshot` CLI (a separate process that opens the ledger and
//!   loads the index each time, as an agent hook would), and one git repository. Each
//!   iteration rewrites the same 10 files with the same new bytes in all three copies and
//!   times each side recording them; horde's sides must record exactly 10 changes. Git runs
//!   with no global or system config. Fairness note: git does not fsync loose objects by
//!   default, horde commits with `synchronous=FULL`, so this favours git. Steps follow each
//!   other as fast as the three sides run; horde re-hashes files modified within the last
//!   second (its racy window), so `--pause-ms 1100` shows the cost at an agent's real pace.
//!   Goal: horde >= 5x faster.
//!
//! - `run-overhead`: `horde run -- sh -c '<write 1,000 files into out/>'` against the same
//!   `sh -c` run bare, each in its own temporary directory (horde's initialized with
//!   `horde init`). Before every run `out/` is removed outside the clock (moved into a trash
//!   directory rather than deleted, so the harness frees no inodes: journal-less ext4 makes
//!   creating files next to recently freed inodes slow), and on the horde side that removal
//!   is recorded with `horde snapshot` (also outside the clock), so each timed `horde run`
//!   records exactly the command's own 1,001 changes. Runs alternate; the medians of wall
//!   time are reported with the ratio horde/bare.
//!
//! - `ledger-append` and `manifest`: the cloud ledger; see `ledger.rs`.
//!
//! - `restore`: `horde restore` of a 5,000-file / 200 MB tree at the middle of a 100k-event
//!   history vs `git checkout` of the same tree from a git repository holding the same
//!   history, and vs `horde restore` of the same tree with the shortest history; see
//!   `restore.rs`. Not part of `all`: generating the histories takes minutes and a few GB of
//!   `$TMPDIR` (`--quick` for small sizes).
//!
//! - `sync`: `horde sync` draining 100k queued events to a local `horde-cloud` over
//!   loopback (events/s, CPU per event on each side) vs the same events POSTed back-to-back
//!   as prebuilt batches; see `sync.rs`. Not part of `all` (`--quick` for 10k events).
//!
//! - `policy`: one policy decision (`horde-policy`) with 200 rules over a mix of paths,
//!   commands with chains, hosts and models, p50/p99 against bare Cedar; see `policy.rs`. Not
//!   part of `all` (`--quick` for a few seconds).
//! - `secrets`: secret-scanner throughput on ~50 MB of captured output vs detect-secrets
//!   1.5.0 on the same files, with both scanners' recall and false positives; see
//!   `secrets.rs`. Not part of `all` (`--quick` for ~2 MB).
//!
//! - `hooks`: `horde hook claude PreToolUse` round trip vs a hook that only answers; see
//!   `hooks.rs`.
//! - `sandbox`: a sandboxed `true` vs bare bwrap with the same binds vs a plain spawn; a C
//!   build inside vs outside; curl through the sandbox's proxy vs direct; see `sandbox.rs`.
//!   Not part of `all` (`--quick` for a few seconds).
//!
//! The CLI benchmarks use the `horde` binary from `$HORDE_BIN`, else the one next to this
//! executable, with `$HORDE_CONFIG_DIR` set to a temporary directory so the user's device key
//! is never touched.

mod append;
mod hooks;
mod ledger;
mod policy;
mod restore;
mod run_overhead;
mod sandbox;
mod secrets;
mod step;
mod sync;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "horde-bench",
    about = "Benchmarks horde against fair anchors and prints the ratios"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Edge-store append throughput vs raw SQLite inserts.
    Append(append::Args),
    /// Recording a 10-file step vs `git add -A && git commit`.
    Step(step::Args),
    /// `horde run -- sh -c ...` vs the same command bare.
    RunOverhead(run_overhead::Args),
    /// Cloud ledger append (SQLite backend) vs a plain relational SQLite table.
    LedgerAppend(ledger::AppendArgs),
    /// Manifest at a version: 1,000 files with 10 vs 1,000 versions each.
    Manifest(ledger::ManifestArgs),
    /// Restoring a tree at a point of a 100k-event history vs `git checkout` and vs a short history.
    Restore(restore::Args),
    /// Draining 100k queued events to a local cloud with `horde sync` vs the cloud's own ingest.
    Sync(sync::Args),
    /// Policy decision latency with 200 rules vs bare Cedar.
    Policy(policy::Args),

    /// PreToolUse round trip of `horde hook claude` on a 10,000-file repository vs a hook
    /// that only reads stdin and answers.
    Hooks(hooks::Args),
    /// Sandbox start-up vs bare bwrap, a C build inside vs outside, proxy vs direct download.
    Sandbox(sandbox::Args),
    /// Secret scanning of captured output vs detect-secrets 1.5.0 (`$HORDE_DETECT_SECRETS`).
    Secrets(secrets::Args),
    /// All of them except `restore`, `sync`, `policy`, `secrets` and `sandbox`, in order.
    All {
        #[command(flatten)]
        append: append::Args,
        #[command(flatten)]
        step: step::Args,
        #[command(flatten)]
        run: run_overhead::Args,
        #[command(flatten)]
        ledger: ledger::AppendArgs,
        #[command(flatten)]
        manifest: ledger::ManifestArgs,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Append(a) => append::run(&a),
        Command::Step(a) => step::run(&a),
        Command::RunOverhead(a) => run_overhead::run(&a),
        Command::LedgerAppend(a) => ledger::run_append(&a),
        Command::Manifest(a) => ledger::run_manifest(&a),
        Command::Restore(a) => restore::run(&a),
        Command::Sync(a) => sync::run(&a),
        Command::Policy(a) => policy::run(&a),
        Command::Secrets(a) => secrets::run(&a),
        Command::Sandbox(a) => sandbox::run(&a),
        Command::Hooks(a) => hooks::run(&a),
        Command::All {
            append,
            step,
            run,
            ledger: l,
            manifest,
        } => {
            append::run(&append)?;
            println!();
            step::run(&step)?;
            println!();
            run_overhead::run(&run)?;
            println!();
            ledger::run_append(&l)?;
            println!();
            ledger::run_manifest(&manifest)
        }
    }
}
