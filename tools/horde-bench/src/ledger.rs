//! Cloud ledger benchmarks on the embedded SQLite backend of `OrderedKv`.
//!
//! - `ledger-append`: `Ledger::append` of one device's events (tool calls whose encoded body
//!   is ~300 bytes) in batches of 100 and 1,000, against inserting the same rows (project,
//!   device, seq, timeline, occurred_at, body, hash) into a plain relational SQLite table
//!   with an integer primary key and no other index, one transaction per batch, same pragmas
//!   (WAL, `synchronous=FULL`), cached prepared statement. Events are built and signed
//!   before the clock starts on both sides. Inside the clock the ledger does its whole job:
//!   decodes and re-hashes every event, checks seqs and the chain, reads the device cursor,
//!   writes the log, time and feed keys with versionstamps, advances the cursor, and commits
//!   through the commit thread. Runs alternate; medians are reported.
//! - `manifest`: `Ledger::manifest` of a timeline of 1,000 files, after each file was
//!   written 10 times vs 1,000 times (1,000,000 events, set up outside the clock through the
//!   ledger itself). Goal: the ratio many/few ≤ 1.1 — the cost must not grow with history.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use horde_core::proto::{self, event_body::Payload, state_change::Op};
use horde_core::{ChainTip, DeviceKey, Draft, ProjectId, TenantId, TimelineId, build_event};
use horde_kv::sqlite::SqliteKv;
use horde_ledger::{AppendBatch, Ledger};

use crate::util::{median, ms, thousands};

#[derive(ClapArgs, Debug, Clone)]
pub struct AppendArgs {
    /// Events appended per run.
    #[arg(long, default_value_t = 100_000)]
    pub ledger_events: usize,
    /// Events per append call; comma-separate to try several.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000])]
    pub ledger_batch: Vec<usize>,
    /// Runs of each side; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub ledger_repeats: usize,
}

#[derive(ClapArgs, Debug, Clone)]
pub struct ManifestArgs {
    /// Files in the timeline.
    #[arg(long, default_value_t = 1_000)]
    pub files: usize,
    /// Versions of each file in the short-history ledger.
    #[arg(long, default_value_t = 10)]
    pub few: usize,
    /// Versions of each file in the long-history ledger.
    #[arg(long, default_value_t = 1_000)]
    pub many: usize,
    /// Timed manifests of each ledger; the median is reported.
    #[arg(long, default_value_t = 7)]
    pub manifest_repeats: usize,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")
}

struct Setup {
    ledger: Ledger<SqliteKv>,
    tenant: TenantId,
    project: ProjectId,
    timeline: TimelineId,
    key: DeviceKey,
}

async fn setup(dir: &Path) -> Result<Setup> {
    let ledger = Ledger::new(SqliteKv::open(dir.join("cloud.sqlite"))?);
    let (tenant, _) = ledger.create_tenant("bench", "bench@example.com").await?;
    let project = ledger.create_project(tenant.id, "bench").await?;
    let key = DeviceKey::generate()?;
    ledger
        .register_device(tenant.id, key.device_id(), &key.public_key(), "bench")
        .await?;
    Ok(Setup {
        ledger,
        tenant: tenant.id,
        project: project.id,
        timeline: project.main_timeline,
        key,
    })
}

fn build(s: &Setup, payloads: impl Iterator<Item = Payload>) -> Result<Vec<proto::SignedEvent>> {
    let mut tip = ChainTip::default();
    let mut out = Vec::new();
    for (i, payload) in payloads.enumerate() {
        let mut draft = Draft::new(s.timeline, "bench", payload);
        draft.occurred_at = 1_700_000_000_000_000 + i as i64 * 1_000;
        let built = build_event(s.project, s.key.device_id(), &tip, draft)?;
        tip.advance(built.hash);
        out.push(proto::SignedEvent {
            body: built.body,
            hash: built.hash.to_vec(),
        });
    }
    Ok(out)
}

fn tool_call(i: usize) -> Payload {
    Payload::ToolCall(proto::ToolCall {
        tool: "exec".into(),
        args: vec!["cargo".into(), "test".into(), format!("--case={i}")],
        cwd: "crates/horde-ledger".into(),
        result_summary: "test result: ok. 9 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.48s — the output of a typical command summarised for the log".into(),
        exit_code: 0,
        duration_ms: 480,
        ..Default::default()
    })
}

fn ledger_once(
    rt: &tokio::runtime::Runtime,
    events: usize,
    batch: usize,
) -> Result<(Duration, usize)> {
    let dir = tempfile::tempdir()?;
    rt.block_on(async {
        let s = setup(dir.path()).await?;
        let evs = build(&s, (0..events).map(tool_call))?;
        let body_bytes = evs.iter().map(|e| e.body.len()).sum::<usize>() / events.max(1);
        let batches: Vec<AppendBatch> = evs
            .chunks(batch)
            .map(|c| AppendBatch {
                project: s.project,
                device: s.key.device_id(),
                events: c.to_vec(),
                head: None,
            })
            .collect();
        let start = Instant::now();
        for b in &batches {
            s.ledger.append(s.tenant, b).await?;
        }
        let took = start.elapsed();
        let (seq, _) = s
            .ledger
            .cursor(s.tenant, s.project, s.key.device_id())
            .await?;
        anyhow::ensure!(
            seq == events as u64,
            "ledger acknowledged {seq} of {events} events"
        );
        Ok((took, body_bytes))
    })
}

fn relational_once(events: usize, batch: usize, body_len: usize) -> Result<Duration> {
    let dir = tempfile::tempdir()?;
    let conn = rusqlite::Connection::open(dir.path().join("plain.sqlite"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, project BLOB NOT NULL, device BLOB NOT NULL, seq INTEGER NOT NULL,
                              timeline BLOB NOT NULL, occurred_at INTEGER NOT NULL, body BLOB NOT NULL, hash BLOB NOT NULL)",
    )?;
    let (project, device, timeline) = (
        ProjectId::new().to_vec(),
        horde_core::DeviceId::new().to_vec(),
        TimelineId::new().to_vec(),
    );
    let rows: Vec<(i64, i64, Vec<u8>, Vec<u8>)> = (0..events)
        .map(|i| {
            let body = vec![b'x'; body_len];
            let hash = horde_core::EventHash::of(&body).to_vec();
            (
                i as i64 + 1,
                1_700_000_000_000_000 + i as i64 * 1_000,
                body,
                hash,
            )
        })
        .collect();
    let start = Instant::now();
    for chunk in rows.chunks(batch) {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO events (project, device, seq, timeline, occurred_at, body, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (seq, at, body, hash) in chunk {
                stmt.execute(rusqlite::params![
                    project, device, seq, timeline, at, body, hash
                ])?;
            }
        }
        conn.execute_batch("COMMIT")?;
    }
    Ok(start.elapsed())
}

pub fn run_append(a: &AppendArgs) -> Result<()> {
    let rt = runtime()?;
    println!(
        "ledger append (SQLite backend) vs a plain relational SQLite table: {} events per run, median of {}",
        thousands(a.ledger_events as f64),
        a.ledger_repeats
    );
    for &batch in &a.ledger_batch {
        let (mut ledger, mut plain) = (Vec::new(), Vec::new());
        let mut body_len = 300;
        for _ in 0..a.ledger_repeats {
            let (d, len) = ledger_once(&rt, a.ledger_events, batch)?;
            body_len = len;
            ledger.push(a.ledger_events as f64 / d.as_secs_f64());
            plain.push(
                a.ledger_events as f64
                    / relational_once(a.ledger_events, batch, body_len)?.as_secs_f64(),
            );
        }
        let (l, p) = (median(&ledger), median(&plain));
        println!(
            "  batch {batch:>5}: ledger {:>9} ev/s   plain table {:>9} rows/s   ledger/plain {:.2}   (bodies {body_len} B)",
            thousands(l),
            thousands(p),
            l / p
        );
    }
    Ok(())
}

async fn history(dir: &Path, files: usize, versions: usize) -> Result<Setup> {
    let s = setup(dir).await?;
    let mut tip = ChainTip::default();
    for round in 0..versions {
        let mut events = Vec::with_capacity(files);
        for f in 0..files {
            let content = format!("file {f} version {round}");
            let payload = Payload::StateChange(proto::StateChange {
                path: format!("src/dir{}/file{f}.rs", f % 10),
                op: if round == 0 {
                    Op::Create as i32
                } else {
                    Op::Modify as i32
                },
                after_hash: horde_core::BlobHash::of(content.as_bytes()).to_vec(),
                mode: 0o644,
                size: content.len() as u64,
                ..Default::default()
            });
            let mut draft = Draft::new(s.timeline, "bench", payload);
            draft.occurred_at = 1_700_000_000_000_000 + (round * files + f) as i64;
            let built = build_event(s.project, s.key.device_id(), &tip, draft)?;
            tip.advance(built.hash);
            events.push(proto::SignedEvent {
                body: built.body,
                hash: built.hash.to_vec(),
            });
        }
        s.ledger
            .append(
                s.tenant,
                &AppendBatch {
                    project: s.project,
                    device: s.key.device_id(),
                    events,
                    head: None,
                },
            )
            .await?;
    }
    Ok(s)
}

pub fn run_manifest(a: &ManifestArgs) -> Result<()> {
    let rt = runtime()?;
    println!(
        "manifest at the last version: {} files x {} versions vs x {} versions, median of {}",
        thousands(a.files as f64),
        a.few,
        thousands(a.many as f64),
        a.manifest_repeats
    );
    let (dir_few, dir_many) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let started = Instant::now();
    let (few, many) = rt.block_on(async {
        Ok::<_, anyhow::Error>((
            history(dir_few.path(), a.files, a.few).await?,
            history(dir_many.path(), a.files, a.many).await?,
        ))
    })?;
    println!(
        "  set-up: {} events through the ledger in {:.1} s",
        thousands((a.files * (a.few + a.many)) as f64),
        started.elapsed().as_secs_f64()
    );
    let (mut t_few, mut t_many) = (Vec::new(), Vec::new());
    for _ in 0..a.manifest_repeats {
        for (s, out) in [(&few, &mut t_few), (&many, &mut t_many)] {
            let start = Instant::now();
            let m = rt.block_on(s.ledger.manifest(s.tenant, s.project, s.timeline, None))?;
            out.push(ms(start.elapsed()));
            anyhow::ensure!(
                m.files.len() == a.files,
                "manifest has {} files, expected {}",
                m.files.len(),
                a.files
            );
        }
    }
    let (f, m) = (median(&t_few), median(&t_many));
    println!(
        "  {} versions each: {f:.1} ms   {} versions each: {m:.1} ms   ratio {:.2} (goal <= 1.1)",
        a.few,
        thousands(a.many as f64),
        m / f
    );
    Ok(())
}
