//! The load: per device, signed hash-chained events cut into batches, each batch encoded once
//! as the protobuf `SyncBatch` the cloud receives and (optionally) once as the binary `COPY`
//! stream PostgreSQL receives. Both encodings carry the same events: the PostgreSQL row is
//! what the cloud stores of an event (ids, seq, hash, time, type, agent, the body bytes).
//!
//! Everything here runs before the clock starts: building, hashing, chaining and signing are
//! the edge's work, not the cloud's.

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use horde_core::proto::{self, event_body::Payload, state_change::Op};
use horde_core::{ChainTip, DeviceKey, Draft, ProjectId, TimelineId, build_event};
use prost::Message;

/// Agents whose events the load mixes (what `agent_id` holds in real ledgers).
const AGENTS: &[&str] = &["claude-code", "codex", "horde-run", "aider"];
const ROLES: &[&str] = &["builder", "inspector", "commander", ""];
/// Directories of the imaginary repository the agents work on.
const DIRS: &[&str] = &[
    "crates/horde-ledger/src/ingest",
    "crates/horde-kv/src/sqlite/writer",
    "crates/horde-core/src/event",
    "edge/src/store/segments",
    "cloud/src/routes/sync",
    "web/app/components/timeline/event-row",
    "docs/architecture/decisions",
    "tests/fixtures/sync/replayed-batches",
];
const STEMS: &[&str] = &[
    "ingest", "writer", "overlay", "query", "keys", "event", "chain", "record", "scan", "admin",
    "sync", "blobs", "manifest", "timeline", "cursor", "limits",
];
const EXTS: &[&str] = &["rs", "rs", "rs", "ts", "md", "toml"];
const COMMANDS: &[&[&str]] = &[
    &[
        "cargo",
        "test",
        "-p",
        "horde-ledger",
        "--",
        "ingest::tests::seq_gap_is_a_conflict",
    ],
    &[
        "cargo",
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ],
    &[
        "rg",
        "-n",
        "--type",
        "rust",
        "fn append_chunk|fn read_cursor",
        "crates/",
    ],
    &[
        "git",
        "diff",
        "--stat",
        "HEAD~1",
        "--",
        "crates/horde-ledger",
    ],
    &[
        "npm",
        "run",
        "test",
        "--",
        "--watch=false",
        "--reporter=dot",
    ],
    &[
        "cargo",
        "build",
        "--release",
        "-p",
        "horde-cloud",
        "--features",
        "fdb",
    ],
];
/// First lines of each command's output, as `horde run` summarizes them.
const SUMMARIES: &[&str] = &[
    "running 42 tests\ntest ingest::tests::seq_gap_is_a_conflict ... ok\n\
     test result: ok. 42 passed; 0 failed; 0 ignored; 0 measured; 311 filtered out; finished in 1.37s",
    "warning: unused variable: `stamp`\n  --> crates/horde-ledger/src/ingest.rs:212:17\n\
     help: if this is intentional, prefix it with an underscore: `_stamp`\n0 errors, 1 warning",
    "crates/horde-ledger/src/ingest.rs:301:async fn append_chunk(\n\
     crates/horde-ledger/src/ingest.rs:412:fn read_cursor(v: Option<Vec<u8>>) -> Result<(u64, Vec<u8>)>\n\
     2 matches in 1 file",
    " crates/horde-ledger/src/ingest.rs | 92 +++++++++++++-----\n\
     crates/horde-ledger/src/keys.rs   | 26 ++++-\n 2 files changed, 118 insertions(+), 37 deletions(-)",
    "Test Files  12 passed (12)\n     Tests  148 passed (148)\n  Start at  10:42:07\n\
     Duration  4.81s (transform 812ms, setup 0ms, collect 2.10s, tests 1.94s)",
    "   Compiling horde-ledger v0.0.0 (/work/crates/horde-ledger)\n\
     Compiling horde-cloud v0.0.0 (/work/cloud)\n\
     Finished `release` profile [optimized + debuginfo] target(s) in 48.20s",
];

/// One device of the load: its key and its batches, in seq order.
pub struct DeviceLoad {
    pub key: DeviceKey,
    /// Encoded `SyncBatch`es.
    pub batches: Vec<Bytes>,
    /// Binary `COPY events FROM STDIN` streams, one per batch (empty without PostgreSQL).
    pub copies: Vec<Bytes>,
    pub events: u64,
    /// Sum of the encoded event bodies.
    pub body_bytes: u64,
}

/// How the load is cut.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub events_total: u64,
    pub devices: usize,
    pub batch: usize,
    pub with_copies: bool,
}

/// Events of device `i` when `total` are spread over `devices` (the first ones take the rest).
pub fn events_of(total: u64, devices: usize, i: usize) -> u64 {
    let devices = devices as u64;
    total / devices + u64::from((i as u64) < total % devices)
}

/// Builds every device's batches, one thread per device.
pub fn build(
    project: ProjectId,
    timeline: TimelineId,
    keys: Vec<DeviceKey>,
    shape: Shape,
) -> Result<Vec<DeviceLoad>> {
    ensure!(keys.len() == shape.devices, "one key per device");
    std::thread::scope(|s| {
        let handles: Vec<_> = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                let n = events_of(shape.events_total, shape.devices, i);
                s.spawn(move || build_device(project, timeline, key, i, n, shape))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a builder thread panicked"))
            .collect()
    })
}

fn build_device(
    project: ProjectId,
    timeline: TimelineId,
    key: DeviceKey,
    index: usize,
    events: u64,
    shape: Shape,
) -> Result<DeviceLoad> {
    let device = key.device_id();
    let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1));
    let mut tip = ChainTip::default();
    let mut load = DeviceLoad {
        key,
        batches: Vec::new(),
        copies: Vec::new(),
        events,
        body_bytes: 0,
    };
    let mut left = events;
    while left > 0 {
        let n = left.min(shape.batch as u64) as usize;
        left -= n as u64;
        let mut signed = Vec::with_capacity(n);
        let mut copy = shape.with_copies.then(|| CopyWriter::new(n * 600));
        for _ in 0..n {
            let mut draft = Draft::new(timeline, *rng.pick(AGENTS), payload(&mut rng, tip.seq + 1));
            draft.role = (*rng.pick(ROLES)).to_owned();
            draft.trace_id = rng.bytes(16);
            draft.span_id = rng.bytes(8);
            let (occurred_at, agent) = (draft.occurred_at, draft.agent_id.clone());
            let built = build_event(project, device, &tip, draft)
                .with_context(|| format!("building event {} of device {device}", tip.seq + 1))?;
            tip.advance(built.hash);
            load.body_bytes += built.body.len() as u64;
            if let Some(copy) = &mut copy {
                copy.row(&[
                    project.as_bytes(),
                    device.as_bytes(),
                    &(built.seq as i64).to_be_bytes(),
                    built.id.as_bytes(),
                    built.hash.as_bytes(),
                    &occurred_at.to_be_bytes(),
                    built.kind.as_bytes(),
                    agent.as_bytes(),
                    &built.body,
                ]);
            }
            signed.push(proto::SignedEvent {
                hash: built.hash.to_vec(),
                body: built.body,
            });
        }
        let hash = tip.hash.expect("a batch has at least one event");
        let head = load
            .key
            .sign_head(project, tip.seq, hash, horde_core::time::now_micros());
        let batch = proto::SyncBatch {
            project_id: project.to_vec(),
            device_id: device.to_vec(),
            events: signed,
            head: Some(head),
        };
        load.batches.push(Bytes::from(batch.encode_to_vec()));
        if let Some(copy) = copy {
            load.copies.push(copy.finish());
        }
    }
    Ok(load)
}

/// A tool call (40%) or a file change (60%: modifications, some creations and renames), sized
/// like what agents record.
fn payload(rng: &mut XorShift, seq: u64) -> Payload {
    if rng.below(10) < 4 {
        let i = rng.below(COMMANDS.len() as u64) as usize;
        Payload::ToolCall(proto::ToolCall {
            tool: "exec".into(),
            args: COMMANDS[i].iter().map(|a| (*a).to_owned()).collect(),
            cwd: rng.pick(DIRS).to_string(),
            result_summary: SUMMARIES[i].to_owned(),
            exit_code: i32::from(rng.below(8) == 0),
            signal: 0,
            duration_ms: 50 + rng.below(60_000),
            policy_verdict: "allow".into(),
            sandbox: None,
            ..Default::default()
        })
    } else {
        let mut path = || {
            format!(
                "{}/{}_{}.{}",
                rng.pick(DIRS),
                rng.pick(STEMS),
                rng.below(64),
                rng.pick(EXTS)
            )
        };
        let (op, from_path) = match seq % 16 {
            0 => (Op::Create, String::new()),
            8 => (Op::Rename, path()),
            _ => (Op::Modify, String::new()),
        };
        let path = path();
        Payload::StateChange(proto::StateChange {
            path,
            op: op as i32,
            from_path,
            before_hash: if op == Op::Create {
                Vec::new()
            } else {
                rng.bytes(32)
            },
            after_hash: rng.bytes(32),
            mode: 0o644,
            size: 200 + rng.below(40_000),
            kind: proto::FileKind::File as i32,
            withheld: false,
        })
    }
}

/// PostgreSQL's binary COPY format: a header, then per row a field count and
/// (length, bytes) per field, then a trailer.
struct CopyWriter(Vec<u8>);

impl CopyWriter {
    fn new(capacity: usize) -> Self {
        let mut b = Vec::with_capacity(capacity);
        b.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        b.extend_from_slice(&0i32.to_be_bytes()); // flags
        b.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        CopyWriter(b)
    }

    fn row(&mut self, fields: &[&[u8]]) {
        let count = i16::try_from(fields.len()).expect("a handful of columns");
        self.0.extend_from_slice(&count.to_be_bytes());
        for f in fields {
            let len = i32::try_from(f.len()).expect("an event is at most 90 kB");
            self.0.extend_from_slice(&len.to_be_bytes());
            self.0.extend_from_slice(f);
        }
    }

    fn finish(mut self) -> Bytes {
        self.0.extend_from_slice(&(-1i16).to_be_bytes());
        Bytes::from(self.0)
    }
}

/// Deterministic pseudo-random choices (the load is the same from run to run in shape; ids,
/// times and keys differ).
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_spread_over_devices_exactly() {
        for (total, devices) in [(1_000_000, 4), (40_001, 4), (3, 4), (7, 1)] {
            let sum: u64 = (0..devices).map(|i| events_of(total, devices, i)).sum();
            assert_eq!(sum, total);
        }
    }

    #[test]
    fn batches_decode_and_chain_and_copies_hold_every_row() {
        let project = ProjectId::new();
        let timeline = TimelineId::new();
        let keys = vec![
            DeviceKey::generate().expect("key"),
            DeviceKey::generate().expect("key"),
        ];
        let shape = Shape {
            events_total: 2_501,
            devices: 2,
            batch: 1_000,
            with_copies: true,
        };
        let loads = build(project, timeline, keys, shape).expect("build");
        for load in &loads {
            let device = load.key.device_id();
            let mut verifier = horde_core::ChainVerifier::new(project, device);
            let mut seen = 0;
            for (batch, copy) in load.batches.iter().zip(&load.copies) {
                let batch = proto::SyncBatch::decode(batch.clone()).expect("SyncBatch");
                for e in &batch.events {
                    let body = verifier.push(&e.body, &e.hash).expect("chain");
                    assert!((200..700).contains(&e.body.len()), "{}", e.body.len());
                    assert_eq!(body.seq, seen + 1);
                    seen += 1;
                }
                let head = batch.head.expect("head");
                assert_eq!(head.seq, seen);
                horde_core::verify_head(&head).expect("signature");
                // Header (19 bytes), then rows, then the 2-byte trailer.
                assert!(copy.starts_with(b"PGCOPY\n\xff\r\n\0"));
                assert!(copy.ends_with(&[0xff, 0xff]));
                let rows = count_rows(&copy[19..copy.len() - 2]);
                assert_eq!(rows, batch.events.len());
            }
            assert_eq!(seen, load.events);
        }
        assert_eq!(loads.iter().map(|l| l.events).sum::<u64>(), 2_501);
    }

    fn count_rows(mut b: &[u8]) -> usize {
        let mut rows = 0;
        while !b.is_empty() {
            let n = i16::from_be_bytes([b[0], b[1]]);
            assert_eq!(n, 9);
            b = &b[2..];
            for _ in 0..n {
                let len = i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
                b = &b[4 + len..];
            }
            rows += 1;
        }
        rows
    }
}
