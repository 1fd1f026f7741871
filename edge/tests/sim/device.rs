//! A device of the simulation: an edge ledger that appends events through its writer and
//! syncs now and then while the network misbehaves; once the driver heals the network, it
//! syncs until its outbox is empty, waits for the others, and pulls one last time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use horde::store::writer::AppendRequest;
use horde::store::{Layout, Store};
use horde::sync::{Client, NoProgress, Syncer, pending};
use horde_core::proto::event_body::Payload;
use horde_core::{DeviceId, DeviceKey, Draft, EventId, ProjectId, TimelineId};

use super::net::SimTransport;
use super::rng::Rng;

pub const REMOTE: &str = "origin";
/// Attempts after the heal before a device gives up (each at most a few seconds).
const MAX_FINAL_ATTEMPTS: u32 = 60;
/// `occurred_at` of the simulation's start (events carry simulated time after it).
const EPOCH_MICROS: i64 = 1_750_000_000_000_000;

/// Where a device's ledger lives and who it is.
pub struct DeviceFiles {
    pub root: PathBuf,
    pub key_file: PathBuf,
    pub device: DeviceId,
    pub public_key: [u8; 32],
}

/// A key file from seeded bytes, so that a seed replays with the same device.
fn write_key(path: &Path, rng: &mut Rng) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let id = uuid::Builder::from_random_bytes(rng.bytes::<16>()).into_uuid();
    let text = format!(
        "device_id = \"{id}\"\nsecret_key = \"{}\"\n",
        hex::encode(rng.bytes::<32>())
    );
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut f, text.as_bytes())?;
    Ok(())
}

impl DeviceFiles {
    /// A ledger in `dir` for `project` whose main timeline is `main` (what a clone makes).
    pub fn create(
        dir: &Path,
        project: ProjectId,
        main: TimelineId,
        rng: &mut Rng,
    ) -> anyhow::Result<Self> {
        let root = dir.join("repo");
        std::fs::create_dir_all(&root)?;
        let key_file = dir.join("device.key");
        write_key(&key_file, rng)?;
        let key = DeviceKey::load(&key_file)?;
        let (device, public_key) = (key.device_id(), key.public_key());
        drop(Store::init(&root, key)?);
        let conn = horde::store::connect(&Layout::new(&root).db(), false)?;
        let old: Vec<u8> = conn.query_row(
            "SELECT value FROM meta WHERE key = 'timeline_id'",
            [],
            |r| r.get(0),
        )?;
        conn.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'project_id'",
            [project.as_bytes()],
        )?;
        conn.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'timeline_id'",
            [main.as_bytes()],
        )?;
        conn.execute(
            "UPDATE timelines SET id = ?1 WHERE id = ?2",
            rusqlite::params![main.as_bytes(), old],
        )?;
        // A fresh ledger lists its main timeline only once a file change is recorded; the
        // syncer's `register` looks it up there (see the report: it fails without the row).
        conn.execute(
            "INSERT OR IGNORE INTO timelines (id, created_at) VALUES (?1, 0)",
            [main.as_bytes()],
        )?;
        Ok(DeviceFiles {
            root,
            key_file,
            device,
            public_key,
        })
    }
}

/// What the devices and the driver share.
#[derive(Default)]
pub struct Phase {
    /// Devices done with their faulty part.
    pub busy_done: AtomicUsize,
    /// Set by the driver: no more faults, the cloud is up.
    pub healed: AtomicBool,
    /// Devices whose outbox is empty after the heal.
    pub pushed: AtomicUsize,
}

/// One device's script, drawn from the seed.
pub struct Script {
    pub index: usize,
    pub rounds: u32,
    pub max_events: u64,
    pub blob_chance: f64,
    pub sync_chance: f64,
    pub max_pause_ms: u64,
    /// The syncer's batch size (small ones: several batches per push, crashes between them).
    pub batch_events: usize,
}

/// The syncer's backoff with its random draw taken from the seed (so a replay repeats it).
fn backoff(attempt: u32, rng: &mut Rng) -> Duration {
    horde::sync::backoff_with(
        attempt,
        Duration::from_millis(50),
        Duration::from_secs(2),
        rng.below(u64::MAX),
    )
}

fn sim_micros() -> i64 {
    EPOCH_MICROS + turmoil::sim_elapsed().unwrap_or_default().as_micros() as i64
}

/// Appends 1..=`max_events` Message events, some with a body blob (a few contents shared by
/// all devices, so that uploads find blobs already there).
fn append(store: &Store, script: &Script, rng: &mut Rng, round: u32) -> anyhow::Result<()> {
    let n = rng.range(1, script.max_events);
    let mut req = AppendRequest {
        sign_head: rng.chance(0.3),
        ..Default::default()
    };
    for k in 0..n {
        let mut body_blob = Vec::new();
        if rng.chance(script.blob_chance) {
            let content = format!("shared blob {}\n", rng.below(6)).repeat(100);
            let h = store.ledger.blobs.put_bytes(content.as_bytes())?;
            req.blobs.push((h, content.len() as u64));
            body_blob = h.as_bytes().to_vec();
        }
        let at = sim_micros();
        let id = uuid::Builder::from_unix_timestamp_millis((at / 1000) as u64, &rng.bytes::<10>())
            .into_uuid();
        req.drafts.push(Draft {
            event_id: EventId::from_uuid(id),
            timeline: store.ledger.meta.timeline,
            occurred_at: at,
            agent_id: "sim".into(),
            role: String::new(),
            trace_id: Vec::new(),
            span_id: Vec::new(),
            causation: None,
            payload: Payload::Message(horde_core::proto::Message {
                from: format!("device {}", script.index),
                to: "everyone".into(),
                text: format!("round {round} message {k}"),
                body_blob,
            }),
        });
    }
    // The writer answers from its thread; waiting here (rather than yielding to the
    // simulation) keeps the run independent of how fast that thread is.
    futures::executor::block_on(store.writer.submit(req).rx)
        .map_err(|_| anyhow::anyhow!("the writer is gone"))??;
    Ok(())
}

/// The device's software.
pub async fn run(
    files: Arc<DeviceFiles>,
    script: Script,
    mut rng: Rng,
    transport: SimTransport,
    phase: Arc<Phase>,
    devices: usize,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
) -> turmoil::Result {
    let layout = Layout::new(&files.root);
    let store = Store::open(layout.clone(), DeviceKey::load(&files.key_file)?)?;
    let conn = horde::store::connect(&layout.db(), false)?;
    let meta = store.ledger.meta;
    let mut syncer = Syncer::new(
        conn,
        store.ledger.blobs.clone(),
        meta,
        DeviceKey::load(&files.key_file)?,
        Client::new(transport, meta.project),
        REMOTE,
    )?;
    syncer.batch_events = script.batch_events;
    let name = format!("device {}", script.index);
    let note = |what: String| {
        errors
            .lock()
            .expect("errors")
            .push(format!("{name}: {what}"))
    };

    // Under faults: appends and syncs that may fail.
    let mut attempt = 0u32;
    for round in 0..script.rounds {
        tokio::time::sleep(Duration::from_millis(rng.range(1, script.max_pause_ms))).await;
        append(&store, &script, &mut rng, round).map_err(|e| format!("{name}: append: {e:#}"))?;
        if rng.chance(script.sync_chance) {
            match syncer.sync_once(&NoProgress).await {
                Ok(_) => attempt = 0,
                Err(e) => {
                    if !e.is_transient() {
                        note(format!("round {round}: {e}"));
                    }
                    tokio::time::sleep(backoff(attempt, &mut rng)).await;
                    attempt += 1;
                }
            }
        }
    }
    phase.busy_done.fetch_add(1, Ordering::SeqCst);
    while !phase.healed.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Healed: sync until the outbox is empty.
    let mut last = String::new();
    let mut done = false;
    for attempt in 0..MAX_FINAL_ATTEMPTS {
        match syncer.sync_once(&NoProgress).await {
            Ok(_) if pending(&syncer.conn, files.device, Some(REMOTE))? == 0 => {
                done = true;
                break;
            }
            Ok(_) => last = "a sync succeeded with events still pending".into(),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(backoff(attempt, &mut rng)).await;
    }
    if !done {
        return Err(format!(
            "{name}: the outbox is not empty after {MAX_FINAL_ATTEMPTS} attempts on a healed network: {last}"
        )
        .into());
    }
    phase.pushed.fetch_add(1, Ordering::SeqCst);
    while phase.pushed.load(Ordering::SeqCst) < devices {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Everyone's events are in the cloud: one more pull takes them all.
    for attempt in 0..MAX_FINAL_ATTEMPTS {
        match syncer.sync_once(&NoProgress).await {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(backoff(attempt, &mut rng)).await;
    }
    Err(format!("{name}: the final pull fails on a healed network: {last}").into())
}
