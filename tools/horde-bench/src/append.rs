//! `append`: the edge store's append throughput vs raw SQLite inserts of the same rows.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use horde::store::Store;
use horde::store::writer::AppendRequest;
use horde_core::proto::{Observation, event_body::Payload};
use horde_core::{ChainTip, DeviceId, DeviceKey, Draft, EventHash, ProjectId, TimelineId};
use rusqlite::{Connection, TransactionBehavior, params};

use crate::util::{median, thousands};

/// The encoded size of each event (and of each anchor row's body).
const BODY_BYTES: usize = 300;
/// The goal for horde/raw.
const GOAL: f64 = 0.7;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Events appended per run.
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Events per batch (one transaction each); repeat or comma-separate to try several.
    #[arg(long, value_delimiter = ',', default_values_t = [1000])]
    pub batch: Vec<usize>,
    /// Runs of each side; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Also measure anchors closer to horde's work: raw inserts with the two unique indexes
    /// of `events`, then also hashing each body inside the clock.
    #[arg(long)]
    pub breakdown: bool,
}

/// What the raw SQLite anchor does inside the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anchor {
    /// The fair anchor: no secondary index, hashes precomputed.
    Plain,
    /// Plus the two unique indexes of `events`.
    Indexed,
    /// Plus SHA-256 of each body inside the clock.
    IndexedHashed,
}

impl Anchor {
    fn label(self) -> &'static str {
        match self {
            Self::Plain => "raw sqlite",
            Self::Indexed => "raw + 2 unique indexes",
            Self::IndexedHashed => "raw + indexes + sha256",
        }
    }
}

pub fn run(args: &Args) -> Result<()> {
    ensure!(
        args.events > 0 && args.repeats > 0,
        "--events and --repeats must be positive"
    );
    let summary = calibrate_summary()?;
    println!(
        "append        {} events of {BODY_BYTES} bytes (encoded EventBody at seq 1,000), signed head every 1,000, median of {} runs",
        thousands(args.events as f64),
        args.repeats
    );
    for &batch in &args.batch {
        ensure!(batch > 0, "--batch must be positive");
        let (mut horde, mut raw) = (Vec::new(), Vec::new());
        for i in 0..args.repeats {
            let h = horde_once(args.events, batch, &summary)?;
            let r = raw_once(args.events, batch, Anchor::Plain)?;
            let (h, r) = (rate(args.events, h), rate(args.events, r));
            println!(
                "  run {}       horde {:>9} ev/s   raw sqlite {:>9} rows/s   ratio {:.2}",
                i + 1,
                thousands(h),
                thousands(r),
                h / r
            );
            horde.push(h);
            raw.push(r);
        }
        let (h, r) = (median(&horde), median(&raw));
        println!(
            "append        batch {batch:>5}   horde {:>9} ev/s   raw sqlite {:>9} rows/s   ratio {:.2} (goal >= {GOAL:.2})",
            thousands(h),
            thousands(r),
            h / r
        );
        if args.breakdown {
            for anchor in [Anchor::Indexed, Anchor::IndexedHashed] {
                let mut xs = Vec::new();
                for _ in 0..args.repeats {
                    xs.push(rate(args.events, raw_once(args.events, batch, anchor)?));
                }
                let x = median(&xs);
                println!(
                    "  breakdown   {:<23} {:>9} rows/s   horde/this {:.2}",
                    anchor.label(),
                    thousands(x),
                    h / x
                );
            }
        }
    }
    Ok(())
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn draft(timeline: TimelineId, summary: &str) -> Draft {
    Draft::new(
        timeline,
        "bench",
        Payload::Observation(Observation {
            kind: "stdout".into(),
            summary: summary.to_owned(),
            ..Default::default()
        }),
    )
}

/// A summary text for which an encoded event is [`BODY_BYTES`] long (at seq 1,000, with a
/// prev_hash; seqs below 128 or above 16,383 differ by a byte).
fn calibrate_summary() -> Result<String> {
    let (project, device, timeline) = (ProjectId::new(), DeviceId::new(), TimelineId::new());
    let tip = ChainTip {
        seq: 999,
        hash: Some(EventHash::of(b"previous")),
    };
    let mut len = 0usize;
    for _ in 0..8 {
        let text = "x".repeat(len);
        let size = horde_core::build_event(project, device, &tip, draft(timeline, &text))?
            .body
            .len();
        if size == BODY_BYTES {
            return Ok(text);
        }
        len = (len + BODY_BYTES)
            .checked_sub(size)
            .context("events are larger than the target size")?;
    }
    bail!("cannot size an event to exactly {BODY_BYTES} bytes")
}

/// One horde run in a fresh store: the time to append `events` drafts in batches.
fn horde_once(events: usize, batch: usize, summary: &str) -> Result<Duration> {
    let dir = tempfile::tempdir()?;
    let store = Store::init(dir.path(), DeviceKey::generate()?)?;
    let timeline = store.ledger.meta.timeline;
    let mut batches: Vec<Vec<Draft>> = Vec::with_capacity(events.div_ceil(batch));
    for start in (0..events).step_by(batch) {
        let n = batch.min(events - start);
        batches.push((0..n).map(|_| draft(timeline, summary)).collect());
    }

    let started = Instant::now();
    let mut last_seq = 0;
    for drafts in batches {
        let result = store.writer.append(AppendRequest {
            drafts,
            ..Default::default()
        })?;
        last_seq = result.appended.last().map_or(last_seq, |a| a.seq);
    }
    let took = started.elapsed();

    ensure!(
        last_seq == events as u64,
        "horde appended {last_seq} events, expected {events}"
    );
    let heads: u64 = store
        .ledger
        .conn
        .query_row("SELECT COUNT(*) FROM chain_heads", [], |r| r.get(0))?;
    ensure!(
        heads as usize == events / 1000,
        "expected {} signed chain heads, found {heads} (is HORDE_HEAD_INTERVAL set?)",
        events / 1000
    );
    Ok(took)
}

/// A row of the anchor table, everything precomputed.
struct RawRow {
    device: [u8; 16],
    seq: i64,
    event_id: [u8; 16],
    hash: [u8; 32],
    body: Vec<u8>,
    agent: &'static str,
    timeline: [u8; 16],
    occurred_at: i64,
}

const RAW_SCHEMA: &str = "CREATE TABLE events (
    id             INTEGER PRIMARY KEY,
    device_id      BLOB    NOT NULL,
    seq            INTEGER NOT NULL,
    event_id       BLOB    NOT NULL,
    hash           BLOB    NOT NULL,
    body           BLOB    NOT NULL,
    type           TEXT    NOT NULL,
    agent          TEXT    NOT NULL,
    timeline       BLOB    NOT NULL,
    occurred_at    INTEGER NOT NULL,
    path           TEXT,
    synced_version BLOB
)";

fn raw_rows(events: usize) -> Vec<RawRow> {
    let mut rng = crate::util::Rng::new(0x5eed);
    let device = *DeviceId::new().as_bytes();
    let timeline = *TimelineId::new().as_bytes();
    let now = horde_core::time::now_micros();
    (0..events)
        .map(|i| {
            let body = rng.text(BODY_BYTES);
            RawRow {
                device,
                seq: i as i64 + 1,
                event_id: *horde_core::EventId::new().as_bytes(),
                hash: *EventHash::of(&body).as_bytes(),
                body,
                agent: "bench",
                timeline,
                occurred_at: now + i as i64,
            }
        })
        .collect()
}

/// The secondary indexes of `events` in `migrations/edge/0001_init.sql`.
const RAW_INDEXES: &str = "CREATE UNIQUE INDEX events_device_seq ON events (device_id, seq);
CREATE UNIQUE INDEX events_event_id ON events (event_id);";

fn open_raw(path: &Path, anchor: Anchor) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(RAW_SCHEMA)?;
    if anchor != Anchor::Plain {
        conn.execute_batch(RAW_INDEXES)?;
    }
    Ok(conn)
}

/// One anchor run in a fresh database: the time to insert `events` rows in batches.
fn raw_once(events: usize, batch: usize, anchor: Anchor) -> Result<Duration> {
    let dir = tempfile::tempdir()?;
    let mut conn = open_raw(&dir.path().join("raw.db"), anchor)?;
    let hash_in_clock = anchor == Anchor::IndexedHashed;
    let rows = raw_rows(events);

    let started = Instant::now();
    for chunk in rows.chunks(batch) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO events (device_id, seq, event_id, hash, body, type, agent, timeline, occurred_at, path)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for r in chunk {
                let hash = if hash_in_clock {
                    *EventHash::of(&r.body).as_bytes()
                } else {
                    r.hash
                };
                ins.execute(params![
                    r.device,
                    r.seq,
                    r.event_id,
                    hash,
                    r.body,
                    "observation",
                    r.agent,
                    r.timeline,
                    r.occurred_at,
                    None::<String>,
                ])?;
            }
        }
        tx.commit()?;
    }
    let took = started.elapsed();

    let n: i64 = conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
    ensure!(
        n as usize == events,
        "raw inserted {n} rows, expected {events}"
    );
    Ok(took)
}
