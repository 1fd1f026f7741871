//! Deterministic simulation of sync under faults (turmoil): the real cloud router and 1–3
//! devices running the real syncer, over a network that partitions, delays, duplicates,
//! replays and loses messages, with a cloud that crashes at random times and right after
//! committing a batch. After healing, the invariant: the cloud's log is exactly the union of
//! the devices' own events, each (device, seq) once with the same hash; every device holds
//! every other device's events once, with the cloud's versionstamps; every chain verifies.
//!
//! Everything a run does comes from its seed (`HORDE_SIM_SEED=N` replays one).
#![allow(dead_code)]

pub mod cloud;
pub mod device;
pub mod net;
pub mod rng;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use horde::store::{Layout, Ledger};
use horde_core::{ChainVerifier, DeviceId, ProjectId, TimelineId};

use cloud::{CLOUD, CloudEnv};
use device::{DeviceFiles, Phase, Script};
use net::{Counters, FaultRates, SimTransport};
use rng::Rng;

/// Simulated time a run may take before it is a failure (a device that never converges).
const SIM_LIMIT: Duration = Duration::from_secs(3_600);
const TICK: Duration = Duration::from_millis(1);

/// What one seed did.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub devices: usize,
    pub events: usize,
    pub sim_ms: u128,
    pub partitions: u64,
    /// Links that held their messages for a while, then delivered them all at once.
    pub holds: u64,
    pub crashes: u64,
    pub crashes_after_commit: u64,
    pub requests: u64,
    pub duplicated: u64,
    pub replayed: u64,
    pub answers_lost: u64,
    pub failed_requests: u64,
    /// Non-transient sync errors seen under faults (not failures by themselves).
    pub errors: Vec<String>,
}

/// Seeds to run: `HORDE_SIM_SEED=N` (one), else `HORDE_SIM_SEEDS=K` or `default` of them.
pub fn seeds(default: u64) -> Vec<u64> {
    if let Some(s) = std::env::var("HORDE_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![s];
    }
    let n = std::env::var("HORDE_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (0..n).collect()
}

/// Runs every seed; panics with the failing ones (and how to replay them).
pub fn run_seeds(seeds: &[u64]) {
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut total = Outcome::default();
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for &seed in seeds {
        match run_seed(seed) {
            Ok(o) => {
                if seeds.len() == 1 || std::env::var_os("HORDE_SIM_VERBOSE").is_some() {
                    eprintln!("sim seed {seed}: {o:?}");
                }
                total.events += o.events;
                total.partitions += o.partitions;
                total.holds += o.holds;
                total.crashes += o.crashes;
                total.crashes_after_commit += o.crashes_after_commit;
                total.requests += o.requests;
                total.duplicated += o.duplicated;
                total.replayed += o.replayed;
                total.answers_lost += o.answers_lost;
                total.failed_requests += o.failed_requests;
                for e in o.errors {
                    let kind: String = e.split(": ").skip(2).collect::<Vec<_>>().join(": ");
                    *by_kind.entry(kind.chars().take(120).collect()).or_default() += 1;
                }
            }
            Err(e) => {
                eprintln!("sim seed {seed} FAILED: {e}\n  replay: HORDE_SIM_SEED={seed}");
                failures.push((seed, e));
            }
        }
    }
    eprintln!(
        "sim: {} seeds in {:.1?}: {} events, {} partitions, {} holds, {} cloud crashes ({} right after a commit), \
         {} requests ({} duplicated, {} replayed, {} answers lost, {} failed)",
        seeds.len(),
        started.elapsed(),
        total.events,
        total.partitions,
        total.holds,
        total.crashes,
        total.crashes_after_commit,
        total.requests,
        total.duplicated,
        total.replayed,
        total.answers_lost,
        total.failed_requests
    );
    for (k, n) in &by_kind {
        eprintln!("sim: non-transient error under faults ({n}x): {k}");
    }
    if !failures.is_empty() {
        let list: Vec<String> = failures
            .iter()
            .map(|(s, e)| format!("seed {s}: {e}"))
            .collect();
        panic!(
            "{} of {} seeds failed (replay one with HORDE_SIM_SEED=N):\n{}",
            failures.len(),
            seeds.len(),
            list.join("\n")
        );
    }
}

/// One simulated run.
pub fn run_seed(seed: u64) -> Result<Outcome, String> {
    let mut rng = Rng::new(seed);
    // Nothing here models a disk: on tmpfs, fsyncs cost nothing.
    let shm = std::path::Path::new("/dev/shm");
    let tmp = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("horde-sim-")
            .tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .map_err(|e| e.to_string())?;
    let n_devices = rng.range(1, 3) as usize;
    let crash_after_commit = [0.0, 0.05, 0.2][rng.below(3) as usize];
    let cloud_rng = rng.fork(1);
    let env = CloudEnv::create(tmp.path().join("cloud"), crash_after_commit, cloud_rng)
        .map_err(|e| format!("cloud setup: {e:#}"))?;
    let project = ProjectId::from_uuid(uuid::Builder::from_random_bytes(rng.bytes()).into_uuid());
    let main = TimelineId::from_uuid(uuid::Builder::from_random_bytes(rng.bytes()).into_uuid());

    let rates = FaultRates {
        duplicate: [0.0, 0.05, 0.15][rng.below(3) as usize],
        replay: [0.0, 0.05, 0.15][rng.below(3) as usize],
        lose_answer: [0.0, 0.05, 0.15][rng.below(3) as usize],
    };
    let partition_rate = [0.0, 0.0005, 0.002][rng.below(3) as usize];
    let crash_rate = [0.0, 0.0002, 0.001][rng.below(3) as usize];
    // turmoil's own link failures: a link breaks at a message (dropping what is in flight)
    // and comes back at a later one.
    let link_fail_rate = [0.0, 0.0, 0.002, 0.02][rng.below(4) as usize];
    let min_latency = rng.range(0, 2);
    let max_latency = min_latency + rng.range(0, 40);

    let mut sim = turmoil::Builder::new()
        .rng_seed(rng.next_u64())
        .tick_duration(TICK)
        .simulation_duration(SIM_LIMIT)
        .min_message_latency(Duration::from_millis(min_latency))
        .max_message_latency(Duration::from_millis(max_latency))
        .fail_rate(link_fail_rate)
        .repair_rate(0.2)
        .build();
    {
        let env = env.clone();
        sim.host(CLOUD, move || cloud::host(env.clone()));
    }

    let faults = Arc::new(AtomicBool::new(true));
    let counters = Arc::new(Counters::default());
    let phase = Arc::new(Phase::default());
    let errors = Arc::new(Mutex::new(Vec::new()));
    let mut devices: Vec<Arc<DeviceFiles>> = Vec::new();
    for i in 0..n_devices {
        let dir = tmp.path().join(format!("device{i}"));
        let mut drng = rng.fork(100 + i as u64);
        let files = Arc::new(
            DeviceFiles::create(&dir, project, main, &mut drng)
                .map_err(|e| format!("device {i} setup: {e:#}"))?,
        );
        devices.push(files.clone());
        let script = Script {
            index: i,
            rounds: drng.range(2, 10) as u32,
            max_events: drng.range(1, 6),
            blob_chance: [0.0, 0.2][drng.below(2) as usize],
            sync_chance: [0.3, 0.7, 1.0][drng.below(3) as usize],
            max_pause_ms: drng.range(5, 3_000),
            batch_events: [1, 3, horde::sync::MAX_BATCH_EVENTS][drng.below(3) as usize],
        };
        let transport = SimTransport::new(
            env.key.clone(),
            rates,
            drng.fork(7),
            faults.clone(),
            counters.clone(),
        );
        sim.client(
            format!("device{i}"),
            device::run(
                files,
                script,
                drng,
                transport,
                phase.clone(),
                n_devices,
                errors.clone(),
            ),
        );
    }

    // The driver: faults while the devices work, then heal.
    let mut drv = rng.fork(2);
    let mut out = Outcome {
        devices: n_devices,
        ..Default::default()
    };
    // Per device: the step at which its partitioned or held link comes back.
    let mut repair_at: Vec<Option<u64>> = vec![None; n_devices];
    let mut bounce_at: Option<u64> = None;
    let mut healed = false;
    let mut step: u64 = 0;
    let fail = |e: &dyn std::fmt::Display, step: u64| format!("at {step} ms: {e}");
    loop {
        let finished = sim.step().map_err(|e| fail(&e, step))?;
        step += 1;
        if finished {
            break;
        }
        if env.dying.swap(false, Ordering::SeqCst) {
            sim.crash(CLOUD);
            out.crashes += 1;
            bounce_at = Some(step + drv.range(1, 2_000));
        }
        if !healed {
            for (i, r) in repair_at.iter_mut().enumerate() {
                let dev = format!("device{i}");
                match *r {
                    Some(at) if at <= step => {
                        // Heals a partition; delivers what a hold kept back.
                        sim.release(CLOUD, dev.as_str());
                        *r = None;
                    }
                    None if drv.chance(partition_rate) => {
                        if drv.chance(0.5) {
                            sim.partition(CLOUD, dev.as_str());
                            out.partitions += 1;
                            *r = Some(step + drv.range(10, 20_000));
                        } else {
                            sim.hold(CLOUD, dev.as_str());
                            out.holds += 1;
                            *r = Some(step + drv.range(10, 4_000));
                        }
                    }
                    _ => {}
                }
            }
            if bounce_at.is_none() && drv.chance(crash_rate) {
                sim.crash(CLOUD);
                out.crashes += 1;
                bounce_at = Some(step + drv.range(1, 5_000));
            }
            if phase.busy_done.load(Ordering::SeqCst) == n_devices {
                healed = true;
                faults.store(false, Ordering::SeqCst);
                sim.set_fail_rate(0.0);
                for (i, r) in repair_at.iter_mut().enumerate() {
                    // Every link, also those turmoil broke by itself.
                    sim.release(CLOUD, format!("device{i}").as_str());
                    *r = None;
                }
                env.faults.store(false, Ordering::SeqCst);
                if let Some(at) = bounce_at.as_mut() {
                    *at = (*at).min(step + 1);
                }
                phase.healed.store(true, Ordering::SeqCst);
            }
        }
        if bounce_at.is_some_and(|at| at <= step) {
            sim.bounce(CLOUD);
            bounce_at = None;
        }
    }
    out.sim_ms = sim.elapsed().as_millis();
    drop(sim);
    out.crashes_after_commit = env.crashes_after_commit.load(Ordering::SeqCst);
    out.requests = counters.requests.load(Ordering::SeqCst);
    out.duplicated = counters.duplicated.load(Ordering::SeqCst);
    out.replayed = counters.replayed.load(Ordering::SeqCst);
    out.answers_lost = counters.answers_lost.load(Ordering::SeqCst);
    out.failed_requests = counters.failed.load(Ordering::SeqCst);
    out.errors = std::mem::take(&mut *errors.lock().expect("errors"));
    out.events = check(&env, project, &devices)?;
    Ok(out)
}

/// (seq, body, hash) of one event in the cloud's log.
type CloudEvent = (u64, Vec<u8>, Vec<u8>);

/// One event as seen somewhere: its hash and versionstamp.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    hash: Vec<u8>,
    stamp: Option<Vec<u8>>,
}

/// The invariant, after the run. Returns the number of events in the cloud's log.
fn check(
    env: &CloudEnv,
    project: ProjectId,
    devices: &[Arc<DeviceFiles>],
) -> Result<usize, String> {
    let log = env
        .log(project)
        .map_err(|e| format!("reading the cloud's log: {e:#}"))?;
    // The cloud: each (device, seq) once, each device's chain verifies from seq 1.
    let mut cloud: BTreeMap<(DeviceId, u64), Seen> = BTreeMap::new();
    let mut verifiers: HashMap<DeviceId, ChainVerifier> = HashMap::new();
    let mut by_device: BTreeMap<DeviceId, Vec<CloudEvent>> = BTreeMap::new();
    for ev in &log {
        let device =
            DeviceId::from_slice(&ev.body.device_id).ok_or("a cloud event without a device id")?;
        by_device.entry(device).or_default().push((
            ev.body.seq,
            ev.event.body.clone(),
            ev.event.hash.clone(),
        ));
        let seen = Seen {
            hash: ev.event.hash.clone(),
            stamp: Some(ev.versionstamp.as_bytes().to_vec()),
        };
        if cloud.insert((device, ev.body.seq), seen).is_some() {
            return Err(format!(
                "the cloud holds device {device} seq {} twice",
                ev.body.seq
            ));
        }
    }
    for (device, mut events) in by_device {
        events.sort_by_key(|e| e.0);
        let v = verifiers
            .entry(device)
            .or_insert_with(|| ChainVerifier::new(project, device));
        for (seq, body, hash) in events {
            v.push(&body, &hash)
                .map_err(|e| format!("the cloud's chain of device {device} at seq {seq}: {e}"))?;
        }
    }

    // Each device: its own events are exactly its part of the cloud's log, it holds everyone
    // else's once, versionstamps agree, and `horde verify` passes.
    let known: Vec<DeviceId> = devices.iter().map(|d| d.device).collect();
    for d in cloud.keys().map(|k| k.0) {
        if !known.contains(&d) {
            return Err(format!("the cloud holds events of an unknown device {d}"));
        }
    }
    for (i, files) in devices.iter().enumerate() {
        let ledger = Ledger::open(Layout::new(&files.root))
            .map_err(|e| format!("device {i}: opening its ledger: {e}"))?;
        let mut local: BTreeMap<(DeviceId, u64), Seen> = BTreeMap::new();
        let mut st = ledger
            .conn
            .prepare("SELECT device_id, seq, hash, synced_version FROM events ORDER BY id")
            .map_err(|e| e.to_string())?;
        let mut rows = st.query([]).map_err(|e| e.to_string())?;
        while let Some(r) = rows.next().map_err(|e| e.to_string())? {
            let dev: Vec<u8> = r.get(0).map_err(|e| e.to_string())?;
            let device = DeviceId::from_slice(&dev).ok_or("a local event without a device id")?;
            let seq = r.get::<_, i64>(1).map_err(|e| e.to_string())? as u64;
            let seen = Seen {
                hash: r.get(2).map_err(|e| e.to_string())?,
                stamp: r.get(3).map_err(|e| e.to_string())?,
            };
            if local.insert((device, seq), seen).is_some() {
                return Err(format!("device {i} holds device {device} seq {seq} twice"));
            }
        }
        for (k, c) in &cloud {
            match local.get(k) {
                None => {
                    return Err(format!(
                        "device {i} lacks device {} seq {} that the cloud holds{}",
                        k.0,
                        k.1,
                        if k.0 == files.device {
                            " (its own!)"
                        } else {
                            ""
                        }
                    ));
                }
                Some(l) if l.hash != c.hash => {
                    return Err(format!(
                        "device {i}: device {} seq {} has another hash than in the cloud",
                        k.0, k.1
                    ));
                }
                Some(l) if l.stamp != c.stamp => {
                    return Err(format!(
                        "device {i}: device {} seq {} has versionstamp {:?} here and {:?} in the cloud",
                        k.0,
                        k.1,
                        l.stamp.as_deref().map(hex::encode),
                        c.stamp.as_deref().map(hex::encode)
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(k) = local.keys().find(|k| !cloud.contains_key(k)) {
            return Err(format!(
                "device {i} holds device {} seq {} that the cloud lacks{}",
                k.0,
                k.1,
                if k.0 == files.device {
                    " (its own, acknowledged or not)"
                } else {
                    ""
                }
            ));
        }
        let report =
            horde::verify::verify_with(&ledger, Some((files.device, files.public_key)), true)
                .map_err(|e| format!("device {i}: verify: {e}"))?;
        if !report.ok {
            return Err(format!(
                "device {i}: verify fails: {}",
                serde_json::to_string(&report).unwrap_or_default()
            ));
        }
    }
    Ok(cloud.len())
}
