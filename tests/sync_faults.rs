//! The edge syncer under real faults, with real processes: `horde sync` SIGKILLed at random
//! points, `horde-cloud` SIGKILLed while it ingests, and connections cut mid-request and
//! mid-response by `horde-proxy`. After each fault the same invariant holds: every event the
//! device marked as acknowledged is in the cloud exactly once with the versionstamp it
//! recorded, and the cloud holds a prefix of each device's chain. At the end the cloud's log is
//! exactly the union of the devices' own events, each once, every chain and signed head
//! verifies, and every device holds the whole log with the cloud's versionstamps.
//!
//! Random choices come from one seed, printed at the start of each test; `HORDE_SEED=N`
//! replays it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use horde_core::{ChainVerifier, DeviceId, ProjectId, decode_event, verify_head};
use horde_e2e::{Api, Cloud, binary, pull};
use serde_json::Value;

/// The cloud's per-key rate limit would otherwise dominate these tests (thousands of blob
/// requests); they are about faults, not throttling.
const CLOUD_ARGS: &[&str] = &["--rate-limit", "1000000", "--rate-burst", "1000000"];
/// Kills of each kind per test (the issue asks for at least 20).
const KILLS: usize = 22;

// ---------------------------------------------------------------------------------------------
// Seeded randomness

struct Rng(u64);

impl Rng {
    fn for_test(name: &str) -> Rng {
        let base = match std::env::var("HORDE_SEED") {
            Ok(s) => s.parse().expect("HORDE_SEED is a u64"),
            Err(_) => {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("after 1970")
                    .as_nanos() as u64
                    % 1_000_000_007
            }
        };
        eprintln!("{name}: seed {base} (HORDE_SEED={base} replays it)");
        let mut r = Rng(base ^ 0x9e37_79b9_7f4a_7c15);
        // Each test its own stream from the same seed.
        for b in name.bytes() {
            r.0 = r.0.wrapping_mul(31).wrapping_add(u64::from(b));
        }
        r
    }

    /// splitmix64
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max`.
    fn upto(&mut self, max: u64) -> u64 {
        self.next() % (max + 1)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

// ---------------------------------------------------------------------------------------------
// A device: a repository with its own device key, driven through the `horde` binary

struct Device {
    name: &'static str,
    root: PathBuf,
    /// The device key lives here (HORDE_CONFIG_DIR), never in the user's home.
    config: tempfile::TempDir,
    logs: tempfile::TempDir,
    _tmp: tempfile::TempDir,
    spawned: usize,
}

impl Device {
    /// An empty directory that becomes a repository with `init` (or a clone target).
    fn new(name: &'static str) -> Device {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join(name);
        Device {
            name,
            root,
            config: tempfile::tempdir().expect("tempdir"),
            logs: tempfile::tempdir().expect("tempdir"),
            _tmp: tmp,
            spawned: 0,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary("horde"));
        let dir = if self.root.exists() {
            self.root.as_path()
        } else {
            self._tmp.path()
        };
        c.args(args)
            .current_dir(dir)
            .env("HORDE_CONFIG_DIR", self.config.path())
            .env("HOME", self.config.path())
            .env("HORDE_CHECKPOINT_INTERVAL", "400")
            .env("HORDE_HEAD_INTERVAL", "300")
            .env("HORDE_AGENT", self.name)
            .env_remove("HORDE_API_KEY")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("HORDE_LOG")
            .stdin(Stdio::null());
        c
    }

    fn try_run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run horde")
    }

    /// Runs `horde ARGS`; panics with its output unless it succeeded.
    fn run(&self, args: &[&str]) -> Output {
        let out = self.try_run(args);
        assert!(
            out.status.success(),
            "{}: horde {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn run_json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: horde {args:?} printed no JSON ({e}): {}",
                self.name,
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Starts `horde ARGS` in the background, output to files under `logs`.
    fn spawn(&mut self, args: &[&str]) -> Spawned {
        self.spawned += 1;
        let base = self
            .logs
            .path()
            .join(format!("{}-{}", self.name, self.spawned));
        let out = base.with_extension("out");
        let err = base.with_extension("err");
        let child = self
            .cmd(args)
            .stdout(std::fs::File::create(&out).expect("log file"))
            .stderr(std::fs::File::create(&err).expect("log file"))
            .spawn()
            .expect("start horde");
        Spawned {
            child,
            out,
            err,
            what: format!("{}: horde {}", self.name, shown(args)),
        }
    }

    fn db(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.root.join(".horde/horde.db")).expect("open db");
        conn.busy_timeout(Duration::from_secs(30))
            .expect("busy timeout");
        conn
    }

    fn device_id(&self) -> DeviceId {
        let v = self.run_json(&["status", "--json"]);
        v["device"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("status names the device")
    }

    fn project_id(&self) -> ProjectId {
        let v = self.run_json(&["status", "--json"]);
        v["project_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("status names the project")
    }

    /// Every event in the local ledger, in local order.
    fn local_events(&self) -> Vec<LocalEvent> {
        let conn = self.db();
        let mut st = conn
            .prepare(
                "SELECT device_id, seq, event_id, hash, synced_version FROM events ORDER BY id",
            )
            .expect("prepare");
        st.query_map([], |r| {
            Ok(LocalEvent {
                device: r.get(0)?,
                seq: r.get::<_, i64>(1)? as u64,
                event_id: r.get(2)?,
                hash: r.get(3)?,
                synced: r.get(4)?,
            })
        })
        .expect("query")
        .collect::<rusqlite::Result<Vec<_>>>()
        .expect("rows")
    }

    /// Own events without a versionstamp yet (read from the ledger: works with the cloud down).
    fn unsynced_own(&self, me: DeviceId) -> usize {
        self.local_events()
            .iter()
            .filter(|e| e.device == me.as_bytes() && e.synced.is_none())
            .count()
    }

    /// Writes files under the tree (paths relative to the root).
    fn write(&self, files: &[(String, Vec<u8>)]) {
        for (path, content) in files {
            let p = self.root.join(path);
            std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&p, content).expect("write file");
        }
    }

    /// Records what changed in the tree as one step.
    fn snapshot(&self, message: &str) -> Value {
        self.run_json(&["snapshot", "-m", message, "--json"])
    }

    fn verify(&self) {
        let out = self.try_run(&["verify", "--json"]);
        assert!(
            out.status.success(),
            "{}: horde verify failed ({}):\n{}\n{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The arguments as a message shows them (an API key left out).
fn shown(args: &[&str]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for (i, a) in args.iter().enumerate() {
        out.push(if i > 0 && args[i - 1] == "--key" {
            "KEY"
        } else {
            a
        });
    }
    out.join(" ")
}

/// A background `horde` process.
struct Spawned {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    what: String,
}

impl Spawned {
    fn output(&self) -> String {
        format!(
            "{}\nstdout: {}\nstderr: {}",
            self.what,
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        )
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// SIGKILL (the child's own pid), then reap.
    fn kill(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.child.wait().expect("wait")
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_wait() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.kill();
                panic!(
                    "{} did not finish within {limit:?}:\n{}",
                    self.what,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A sync that failed must say why in one clear line and must not have panicked.
fn assert_clean_failure(status: ExitStatus, p: &Spawned) {
    assert!(!status.success());
    let err = p.stderr();
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "a failed sync panicked:\n{}",
        p.output()
    );
    let why = err
        .lines()
        .rfind(|l| l.starts_with("Error:") || l.starts_with("horde:"))
        .unwrap_or_else(|| {
            panic!(
                "a failed sync exited {status} without saying why:\n{}",
                p.output()
            )
        });
    eprintln!("  ({} failed cleanly: {why})", p.what);
}

// ---------------------------------------------------------------------------------------------
// What the device and the cloud hold

#[derive(Debug, Clone)]
struct LocalEvent {
    device: Vec<u8>,
    seq: u64,
    event_id: Vec<u8>,
    hash: Vec<u8>,
    synced: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct CloudEvent {
    device: Vec<u8>,
    seq: u64,
    event_id: Vec<u8>,
    hash: Vec<u8>,
    versionstamp: Vec<u8>,
}

fn short(device: &[u8]) -> String {
    DeviceId::from_slice(device)
        .map(|d| d.to_string())
        .unwrap_or_else(|| format!("{device:02x?}"))
}

/// The project's log as read so far through `/pull` without `exclude_device`, each device's
/// chain and every signed head verified on the way. The log only grows at its end, so a
/// refresh reads on from the last cursor.
struct CloudLog {
    project: ProjectId,
    events: Vec<CloudEvent>,
    after: Option<Vec<u8>>,
    verifiers: HashMap<Vec<u8>, ChainVerifier>,
    hashes: HashMap<(Vec<u8>, u64), Vec<u8>>,
    /// Signed heads over events not read yet.
    heads: Vec<horde_core::proto::ChainHead>,
}

impl CloudLog {
    fn new(project: ProjectId) -> CloudLog {
        CloudLog {
            project,
            events: Vec::new(),
            after: None,
            verifiers: HashMap::new(),
            hashes: HashMap::new(),
            heads: Vec::new(),
        }
    }

    /// The whole log, read from the start.
    fn read(api: &Api, project: ProjectId) -> Vec<CloudEvent> {
        let mut log = CloudLog::new(project);
        log.refresh(api);
        log.events
    }

    fn refresh(&mut self, api: &Api) -> &[CloudEvent] {
        loop {
            let q = match &self.after {
                Some(a) => format!("?limit=5000&after={}", horde_e2e::hex_encode(a)),
                None => "?limit=5000".to_owned(),
            };
            let (r, page) = pull(api, self.project, &q);
            if r.status == 404 && self.events.is_empty() {
                return &self.events; // no sync made the project known yet
            }
            let page = page.unwrap_or_else(|| panic!("pull {q}: {} {}", r.status, r.body));
            for pe in &page.events {
                let ev = pe.event.as_ref().expect("a pulled event has its bytes");
                let body = decode_event(&ev.body, &ev.hash).expect("the cloud's events decode");
                let device = DeviceId::from_slice(&body.device_id).expect("device id");
                assert!(
                    self.events
                        .last()
                        .is_none_or(|l| l.versionstamp < pe.versionstamp),
                    "the log is not in versionstamp order"
                );
                self.verifiers
                    .entry(device.as_bytes().to_vec())
                    .or_insert_with(|| ChainVerifier::new(self.project, device))
                    .push(&ev.body, &ev.hash)
                    .unwrap_or_else(|e| panic!("device {device}'s chain in the cloud: {e}"));
                self.hashes
                    .insert((device.as_bytes().to_vec(), body.seq), ev.hash.clone());
                self.events.push(CloudEvent {
                    device: device.as_bytes().to_vec(),
                    seq: body.seq,
                    event_id: body.event_id.clone(),
                    hash: ev.hash.clone(),
                    versionstamp: pe.versionstamp.clone(),
                });
            }
            for h in &page.heads {
                verify_head(h).unwrap_or_else(|e| panic!("a signed head in the cloud: {e}"));
                if !self.heads.contains(h) {
                    self.heads.push(h.clone());
                }
            }
            if !page.cursor.is_empty() {
                self.after = Some(page.cursor.clone());
            }
            if !page.more {
                break;
            }
        }
        let hashes = &self.hashes;
        self.heads
            .retain(|h| match hashes.get(&(h.device_id.clone(), h.seq)) {
                Some(hash) => {
                    assert_eq!(
                        *hash,
                        h.hash,
                        "device {}: the signed head at seq {} signs another event",
                        short(&h.device_id),
                        h.seq
                    );
                    false
                }
                None => true,
            });
        &self.events
    }
}

/// The invariant at any moment between faults: each event in the cloud once; each device's
/// events in the cloud are a prefix of its own chain (same ids and hashes); every own event
/// the device marked as acknowledged is in the cloud with the versionstamp it recorded.
/// Returns how many own events of each device the cloud holds.
///
/// The devices' rows are read *before* the cloud's log: a sync may be running, and an event
/// acknowledged between the two reads would otherwise look marked but absent. Events the
/// cloud holds beyond what the devices had when read were recorded since (a merge, say).
fn check_now(view: &mut CloudLog, api: &Api, devices: &[(&Device, DeviceId)]) -> Vec<usize> {
    let locals: Vec<Vec<LocalEvent>> = devices.iter().map(|(d, _)| d.local_events()).collect();
    check_acknowledged_with(view.refresh(api), devices, &locals)
}

fn check_acknowledged(cloud: &[CloudEvent], devices: &[(&Device, DeviceId)]) -> Vec<usize> {
    let locals: Vec<Vec<LocalEvent>> = devices.iter().map(|(d, _)| d.local_events()).collect();
    check_acknowledged_with(cloud, devices, &locals)
}

fn check_acknowledged_with(
    cloud: &[CloudEvent],
    devices: &[(&Device, DeviceId)],
    locals: &[Vec<LocalEvent>],
) -> Vec<usize> {
    let mut by_key: HashMap<(Vec<u8>, u64), &CloudEvent> = HashMap::new();
    let mut ids = HashSet::new();
    for e in cloud {
        assert!(
            by_key.insert((e.device.clone(), e.seq), e).is_none(),
            "device {} seq {} is in the cloud twice",
            short(&e.device),
            e.seq
        );
        assert!(
            ids.insert(e.event_id.clone()),
            "event id {:02x?} is in the cloud twice",
            e.event_id
        );
    }
    let known: HashSet<&[u8]> = devices
        .iter()
        .map(|(_, d)| d.as_bytes().as_slice())
        .collect();
    for e in cloud {
        assert!(
            known.contains(e.device.as_slice()),
            "the cloud holds events of device {} that no device here recorded",
            short(&e.device)
        );
    }
    let mut held = Vec::new();
    for ((dev, me), local) in devices.iter().zip(locals) {
        let own: Vec<&LocalEvent> = local.iter().filter(|e| e.device == me.as_bytes()).collect();
        for (i, e) in own.iter().enumerate() {
            assert_eq!(e.seq, i as u64 + 1, "{}: own seqs have a gap", dev.name);
        }
        let in_cloud = cloud.iter().filter(|e| e.device == me.as_bytes()).count();
        for e in &own[..in_cloud.min(own.len())] {
            let c = by_key.get(&(e.device.clone(), e.seq)).unwrap_or_else(|| {
                panic!(
                    "{}: seq {} is missing in the cloud, though later seqs are there",
                    dev.name, e.seq
                )
            });
            assert_eq!(
                c.hash, e.hash,
                "{}: seq {} differs in the cloud",
                dev.name, e.seq
            );
            assert_eq!(
                c.event_id, e.event_id,
                "{}: seq {} has another id in the cloud",
                dev.name, e.seq
            );
        }
        for e in &own {
            if let Some(vs) = &e.synced {
                let c = by_key.get(&(e.device.clone(), e.seq)).unwrap_or_else(|| {
                    panic!(
                        "{}: seq {} is marked acknowledged (versionstamp {}) but the cloud does not hold it",
                        dev.name,
                        e.seq,
                        horde_e2e::hex_encode(vs)
                    )
                });
                assert_eq!(
                    horde_e2e::hex_encode(&c.versionstamp),
                    horde_e2e::hex_encode(vs),
                    "{}: seq {} is marked with another versionstamp than the cloud's",
                    dev.name,
                    e.seq
                );
            }
        }
        held.push(in_cloud);
    }
    held
}

/// The invariant at the end: the cloud's log is exactly the union of the devices' own
/// events, all acknowledged; every device holds the whole log (others' events pulled, with the
/// cloud's versionstamps); chains verify on every device; nothing is pending.
fn check_complete(cloud: &[CloudEvent], devices: &[(&Device, DeviceId)]) {
    check_acknowledged(cloud, devices);
    let cloud_set: BTreeMap<(Vec<u8>, u64), &CloudEvent> = cloud
        .iter()
        .map(|e| ((e.device.clone(), e.seq), e))
        .collect();
    for (dev, me) in devices {
        let local = dev.local_events();
        let own = local.iter().filter(|e| e.device == me.as_bytes()).count();
        let in_cloud = cloud.iter().filter(|e| e.device == me.as_bytes()).count();
        assert_eq!(
            in_cloud, own,
            "{}: not every own event reached the cloud",
            dev.name
        );
        let mut seen = HashSet::new();
        for e in &local {
            assert!(
                seen.insert((e.device.clone(), e.seq)),
                "{}: device {} seq {} is stored twice",
                dev.name,
                short(&e.device),
                e.seq
            );
            let c = cloud_set
                .get(&(e.device.clone(), e.seq))
                .unwrap_or_else(|| {
                    panic!(
                        "{}: holds device {} seq {}, which the cloud does not",
                        dev.name,
                        short(&e.device),
                        e.seq
                    )
                });
            assert_eq!(
                (&c.event_id, &c.hash),
                (&e.event_id, &e.hash),
                "{}: device {} seq {} differs from the cloud's",
                dev.name,
                short(&e.device),
                e.seq
            );
            assert_eq!(
                e.synced.as_deref(),
                Some(c.versionstamp.as_slice()),
                "{}: device {} seq {} has not the cloud's versionstamp",
                dev.name,
                short(&e.device),
                e.seq
            );
        }
        assert_eq!(
            local.len(),
            cloud.len(),
            "{}: holds {} events, the cloud {}",
            dev.name,
            local.len(),
            cloud.len()
        );
        dev.verify();
        let st = dev.run_json(&["status", "--json"]);
        assert_eq!(
            st["remote"]["pending_events"], 0,
            "{}: status says events are pending: {st}",
            dev.name
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Workloads

/// The first tree: many files over few contents (many events, few blobs), some unique small
/// files and a few large random ones (uploads that take time).
fn initial_tree(rng: &mut Rng, prefix: &str, files: usize) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for i in 0..files {
        let content = format!("{prefix} shared content {}\n", i % 37).into_bytes();
        out.push((format!("{prefix}/d{}/f{i}.txt", i % 23), content));
    }
    for i in 0..60 {
        out.push((format!("{prefix}/unique/u{i}.bin"), rng.bytes(200 + i * 13)));
    }
    for i in 0..3 {
        out.push((format!("{prefix}/big/b{i}.bin"), rng.bytes(1_500_000)));
    }
    out
}

/// A later step: rewrites a random run of the files and adds a few unique ones.
fn more_changes(rng: &mut Rng, prefix: &str, files: usize, round: usize) -> Vec<(String, Vec<u8>)> {
    let n = 150 + rng.upto(350) as usize;
    let start = rng.upto(files as u64) as usize;
    let mut out = Vec::new();
    for k in 0..n {
        let i = (start + k) % files;
        let content = format!("{prefix} round {round} content {}\n", i % 11).into_bytes();
        out.push((format!("{prefix}/d{}/f{i}.txt", i % 23), content));
    }
    for k in 0..5 {
        let len = 100 + rng.upto(5000) as usize;
        out.push((format!("{prefix}/unique/r{round}-{k}.bin"), rng.bytes(len)));
    }
    if rng.upto(3) == 0 {
        out.push((format!("{prefix}/big/r{round}.bin"), rng.bytes(800_000)));
    }
    out
}

fn cloud_with_tenant(args: &[&str]) -> (Cloud, String) {
    let cloud = Cloud::start_in_on(
        tempfile::tempdir().expect("tempdir"),
        "127.0.0.1:0",
        args,
        &[],
    );
    let admin = cloud.tenant("faults");
    let key = admin.api.key.clone().expect("admin key");
    (cloud, key)
}

/// Rewrites every file of [`initial_tree`] (a step: one event per file, few new blobs).
fn rewrite_all(dev: &Device, files: usize, r: usize) {
    let name = dev.name;
    let all: Vec<(String, Vec<u8>)> = (0..files)
        .map(|i| {
            (
                format!("{name}/d{}/f{i}.txt", i % 23),
                format!("{name} rewrite {r} content {}\n", (i + r) % 41).into_bytes(),
            )
        })
        .collect();
    dev.write(&all);
    dev.snapshot(&format!("rewrite {r}"));
}

/// A new repository with `files` files recorded by `init`, each rewritten `rewrites` times
/// (a step each: many events over few inodes, which are slow to delete on some disks), and
/// `origin` at `url`.
fn init_device(
    name: &'static str,
    rng: &mut Rng,
    files: usize,
    rewrites: usize,
    url: &str,
    key: &str,
) -> (Device, DeviceId, ProjectId) {
    let dev = Device::new(name);
    std::fs::create_dir_all(&dev.root).expect("mkdir");
    dev.write(&initial_tree(rng, name, files));
    dev.run(&["init", "--json"]);
    for r in 0..rewrites {
        rewrite_all(&dev, files, r);
    }
    dev.run(&["remote", "add", "origin", url, "--key", key]);
    let me = dev.device_id();
    let project = dev.project_id();
    (dev, me, project)
}

// ---------------------------------------------------------------------------------------------
// The tests

/// `horde sync` SIGKILLed at random points (0–300 ms after it starts; 0.3–2 s after three
/// kills without progress) ≥ 20 times, with more
/// events recorded between some kills; then a sync to the end and the whole invariant.
#[test]
fn edge_killed_during_sync() {
    let mut rng = Rng::for_test("edge_killed_during_sync");
    let started = Instant::now();
    let (cloud, key) = cloud_with_tenant(CLOUD_ARGS);
    let api = cloud.api(Some(&key));
    const FILES: usize = 600;
    let (mut dev, me, project) = init_device("edge", &mut rng, FILES, 4, &cloud.url, &key);
    let mut view = CloudLog::new(project);
    eprintln!(
        "recorded {} events in {:.1} s; killing `horde sync` {KILLS} times",
        dev.local_events().len(),
        started.elapsed().as_secs_f64()
    );
    let (mut kills, mut finished, mut stalled) = (0, 0, 0);
    let mut round = 0;
    while kills < KILLS {
        round += 1;
        assert!(round < 80, "syncs keep finishing before the kills land");
        // Something to send each time (more between some kills even when there is).
        if dev.unsynced_own(me) == 0 || round % 4 == 0 {
            dev.write(&more_changes(&mut rng, "edge", FILES, round));
            dev.snapshot(&format!("round {round}"));
        }
        let before = (dev.unsynced_own(me), view.events.len());
        let args: &[&str] = if rng.upto(1) == 0 {
            &["sync", "--json"]
        } else {
            &["sync", "--json", "--no-merge"]
        };
        // Mostly early: start-up, the tree scan, blobs, the first batch. After three kills
        // without progress (a debug build takes longer than 300 ms to get a batch of 2,000
        // acknowledged), later, so that kills also land in later batches, acks, the pull and
        // the merge.
        let delay = if stalled >= 3 {
            300 + rng.upto(1700)
        } else {
            rng.upto(300)
        };
        let mut p = dev.spawn(args);
        std::thread::sleep(Duration::from_millis(delay));
        let what = match p.try_wait() {
            Some(s) => {
                finished += 1;
                assert!(
                    s.success(),
                    "a sync failed with the cloud up:\n{}",
                    p.output()
                );
                "finished before"
            }
            None => {
                p.kill();
                kills += 1;
                "killed"
            }
        };
        let held = check_now(&mut view, &api, &[(&dev, me)]);
        let after = (dev.unsynced_own(me), view.events.len());
        stalled = if after == before { stalled + 1 } else { 0 };
        eprintln!(
            "round {round}: {what} at {delay} ms; unsynced {} -> {}, cloud holds {}",
            before.0, after.0, held[0]
        );
    }
    let out = dev.run(&["sync", "--json"]);
    eprintln!(
        "final sync: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    check_complete(&CloudLog::read(&api, project), &[(&dev, me)]);
    check_blobs(&api, &[&dev]);
    eprintln!(
        "edge_killed_during_sync: {kills} kills, {finished} syncs finished before their kill; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// `horde-cloud` SIGKILLed ≥ 20 times while a `horde sync` sends (blobs, batches, acks),
/// restarted each time on the same store and port; the sync retries or fails cleanly and a
/// new one starts; then a sync to the end and the whole invariant.
#[test]
fn cloud_killed_during_ingest() {
    let mut rng = Rng::for_test("cloud_killed_during_ingest");
    let started = Instant::now();
    // Batches of at most 150 events: the syncer's first batch of 2,000 is refused (413) and
    // it halves its batches until they fit (125), so each sync sends many batches in a row.
    let args: Vec<&str> = CLOUD_ARGS
        .iter()
        .copied()
        .chain(["--max-sync-events", "150"])
        .collect();
    let (mut cloud, key) = cloud_with_tenant(&args);
    let addr = cloud.addr().to_owned();
    const FILES: usize = 600;
    let (mut dev, me, project) = init_device("ingest", &mut rng, FILES, 3, &cloud.url, &key);
    let mut view = CloudLog::new(project);
    eprintln!(
        "recorded {} events in {:.1} s; killing horde-cloud {KILLS} times during a sync",
        dev.local_events().len(),
        started.elapsed().as_secs_f64()
    );
    // Events the current cloud process stored (it logs each ingest with `stored=N`).
    let ingests = |c: &Cloud| -> (usize, u64) {
        let log = strip_ansi(&c.log());
        let stored: Vec<u64> = log
            .lines()
            .filter(|l| l.contains("acked_seq="))
            .filter_map(|l| l.split("stored=").nth(1)?.split(' ').next()?.parse().ok())
            .collect();
        (stored.len(), stored.iter().sum())
    };
    let mut sync: Option<Spawned> = None;
    let (mut kills, mut kills_in_batches, mut failed, mut succeeded) = (0, 0, 0, 0);
    let mut logs = String::new();
    let mut round = 0;
    while kills < KILLS {
        round += 1;
        assert!(round < 100, "syncs keep finishing before the kills land");
        // A sync in flight: the last one if it still runs, else a new one with more to send.
        if let Some(mut p) = sync.take() {
            match p.try_wait() {
                None => sync = Some(p),
                Some(s) if s.success() => succeeded += 1,
                Some(s) => {
                    assert_clean_failure(s, &p);
                    failed += 1;
                }
            }
        }
        if sync.is_none() {
            if dev.unsynced_own(me) < 300 {
                dev.write(&more_changes(&mut rng, "ingest", FILES, round));
                dev.snapshot(&format!("round {round}"));
            }
            sync = Some(dev.spawn(&["sync", "--json", "--no-merge"]));
        }
        // Until this cloud stored a batch (the next one is on its way), the sync ended, or a
        // while; then a random moment later.
        let p = sync.as_mut().expect("a sync runs");
        let deadline = Instant::now() + Duration::from_secs(8);
        let (batches_before, stored_before) = ingests(&cloud);
        while ingests(&cloud).1 == stored_before
            && p.try_wait().is_none()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let delay = rng.upto(100);
        std::thread::sleep(Duration::from_millis(delay));
        if p.try_wait().is_some() {
            continue; // nothing in flight to interrupt
        }
        let (batches, stored) = ingests(&cloud);
        let (batches, stored) = (batches - batches_before, stored - stored_before);
        logs.push_str(&cloud.log());
        let dir = cloud.crash_into_dir();
        kills += 1;
        kills_in_batches += usize::from(stored > 0);
        // Sometimes down for a while (the sync's retries may run out), mostly back at once.
        if rng.upto(4) == 0 {
            std::thread::sleep(Duration::from_millis(rng.upto(1500)));
        }
        cloud = Cloud::start_in_on(dir, &addr, &args, &[]);
        let api = cloud.api(Some(&key));
        let held = check_now(&mut view, &api, &[(&dev, me)]);
        eprintln!(
            "kill {kills}: {delay} ms after {batches} batches ({stored} new events); cloud holds {}, unsynced {}",
            held[0],
            dev.unsynced_own(me)
        );
    }
    if let Some(mut p) = sync.take() {
        let s = p.wait(Duration::from_secs(60));
        if s.success() {
            succeeded += 1;
        } else {
            assert_clean_failure(s, &p);
            failed += 1;
        }
    }
    let out = dev.run(&["sync", "--json", "--no-merge"]);
    eprintln!(
        "final sync: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    let api = cloud.api(Some(&key));
    check_complete(&CloudLog::read(&api, project), &[(&dev, me)]);
    check_blobs(&api, &[&dev]);
    logs.push_str(&cloud.log());
    assert!(!logs.contains("panicked"), "horde-cloud panicked:\n{logs}");
    eprintln!(
        "cloud_killed_during_ingest: {kills} kills ({kills_in_batches} after the cloud stored a batch of that sync); syncs: {succeeded} succeeded, {failed} failed cleanly; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The text without its terminal colour sequences (ESC [ ... m).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Every blob on each device (named by its events, own or pulled) is in the cloud.
fn check_blobs(api: &Api, devices: &[&Device]) {
    for dev in devices {
        let dir = dev.root.join(".horde/blobs");
        let mut n = 0;
        for sub in std::fs::read_dir(&dir).expect("blobs dir") {
            let sub = sub.expect("entry");
            for f in std::fs::read_dir(sub.path()).expect("blobs subdir") {
                let f = f.expect("entry");
                let hash = format!(
                    "{}{}",
                    sub.file_name().to_string_lossy(),
                    f.file_name().to_string_lossy()
                );
                let r = api.head(&format!("/v1/blobs/{hash}"));
                assert_eq!(
                    r.status, 200,
                    "{}: blob {hash} is not in the cloud",
                    dev.name
                );
                n += 1;
            }
        }
        assert!(n > 0, "{}: no blobs at all", dev.name);
    }
}

/// `horde-proxy` in front of the cloud.
struct Proxy {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    fn start(upstream: &str, seed: u64, cut_probability: &str) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("proxy.log");
        let mut child = Command::new(binary("horde-proxy"))
            .args([
                "--upstream",
                upstream,
                "--seed",
                &seed.to_string(),
                "--cut-probability",
                cut_probability,
                "--cut-after",
                "0..30000",
                "--direction",
                "both",
                "--refuse-probability",
                "0.05",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start horde-proxy");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read horde-proxy's stdout");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("horde-proxy did not start: {line:?}"))
            .to_owned();
        Proxy {
            child,
            url: format!("http://{addr}"),
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGUSR1 turns faults off; waits until the proxy says so.
    #[allow(unsafe_code)]
    fn faults_off(&self) {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        assert!(pid > 0);
        // SAFETY: kill(2) on our own child's (positive) pid; no memory is shared.
        unsafe {
            libc::kill(pid, libc::SIGUSR1);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains("faults off") {
            assert!(
                Instant::now() < deadline,
                "horde-proxy did not turn faults off"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `horde ARGS` until it succeeds (at most `tries`); every failure must be clean.
fn until_success(dev: &mut Device, args: &[&str], tries: usize) -> (Value, usize) {
    for attempt in 1..=tries {
        let mut p = dev.spawn(args);
        let s = p.wait(Duration::from_secs(120));
        if s.success() {
            let out = std::fs::read_to_string(&p.out).unwrap_or_default();
            let v = serde_json::from_str(out.trim()).unwrap_or(Value::Null);
            return (v, attempt - 1);
        }
        assert_clean_failure(s, &p);
    }
    panic!("{}: horde {args:?} failed {tries} times", dev.name);
}

/// The regular files of a tree (without `.horde`), path → content.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let e = e.expect("entry");
            let p = e.path();
            if e.file_name() == ".horde" && dir == root {
                continue;
            }
            let rel = p
                .strip_prefix(root)
                .expect("under the root")
                .to_string_lossy()
                .into_owned();
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                walk(root, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Two devices (the second by `horde clone`) recording and syncing through a proxy that cuts
/// half the connections mid-request or mid-response; then faults off, final syncs, and the
/// invariant for both plus: each holds the other's events and the trees are equal.
#[test]
fn through_cutting_proxy() {
    let mut rng = Rng::for_test("through_cutting_proxy");
    let started = Instant::now();
    let (cloud, key) = cloud_with_tenant(CLOUD_ARGS);
    let proxy = Proxy::start(cloud.addr(), rng.next() % 1_000_000, "0.5");
    let api = cloud.api(Some(&key));
    const FILES: usize = 500;
    let (mut a, a_id, project) = init_device("alpha", &mut rng, FILES, 2, &proxy.url, &key);
    let mut view = CloudLog::new(project);
    let mut failures = 0;
    let (_, f) = until_success(&mut a, &["sync", "--json"], 60);
    failures += f;
    check_now(&mut view, &api, &[(&a, a_id)]);

    // The second device joins through the proxy too; a failed clone leaves nothing behind.
    let mut b = Device::new("beta");
    let target = b.root.to_string_lossy().into_owned();
    let project_s = project.to_string();
    let clone_args = [
        "clone", &proxy.url, &project_s, &target, "--key", &key, "--json",
    ];
    let mut cloned = false;
    for _ in 0..40 {
        let mut p = b.spawn(&clone_args);
        let s = p.wait(Duration::from_secs(120));
        if s.success() {
            cloned = true;
            break;
        }
        assert_clean_failure(s, &p);
        failures += 1;
        assert!(
            !b.root.exists(),
            "a failed clone left {} behind:\n{}",
            b.root.display(),
            p.output()
        );
    }
    assert!(cloned, "the clone never succeeded through the proxy");
    let b_id = b.device_id();
    assert_eq!(b.project_id(), project);

    for round in 0..6 {
        a.write(&more_changes(&mut rng, "alpha", FILES, round));
        a.snapshot(&format!("alpha {round}"));
        b.write(&more_changes(&mut rng, "beta", FILES / 3, round));
        if round == 0 {
            for i in 0..3 {
                b.write(&[(format!("beta/big/c{i}.bin"), rng.bytes(700_000))]);
            }
        }
        b.snapshot(&format!("beta {round}"));
        let (_, f) = until_success(&mut a, &["sync", "--json"], 60);
        failures += f;
        let (_, f) = until_success(&mut b, &["sync", "--json"], 60);
        failures += f;
        check_now(&mut view, &api, &[(&a, a_id), (&b, b_id)]);
        eprintln!("round {round}: {failures} failed commands so far");
    }

    proxy.faults_off();
    let mut settled = false;
    for _ in 0..6 {
        let ra = a.run_json(&["sync", "--json"]);
        let rb = b.run_json(&["sync", "--json"]);
        let quiet = |v: &Value| {
            v["sync"]["pushed"] == 0
                && v["sync"]["pulled"] == 0
                && v["merge"]["recorded"] == 0
                && v["merge"]["recorded_local"] == 0
        };
        if quiet(&ra) && quiet(&rb) {
            settled = true;
            break;
        }
    }
    assert!(settled, "the two devices' syncs never came to rest");
    let log = CloudLog::read(&api, project);
    check_complete(&log, &[(&a, a_id), (&b, b_id)]);
    check_blobs(&api, &[&a, &b]);
    for (dev, other) in [(&a, b_id), (&b, a_id)] {
        let theirs = dev
            .local_events()
            .iter()
            .filter(|e| e.device == other.as_bytes())
            .count();
        assert!(
            theirs > 0,
            "{} holds none of the other device's events",
            dev.name
        );
    }
    let (ta, tb) = (tree(&a.root), tree(&b.root));
    let only_a: Vec<_> = ta.keys().filter(|k| !tb.contains_key(*k)).take(5).collect();
    let only_b: Vec<_> = tb.keys().filter(|k| !ta.contains_key(*k)).take(5).collect();
    let differ: Vec<_> = ta
        .iter()
        .filter(|(k, v)| tb.get(*k).is_some_and(|w| w != *v))
        .map(|(k, _)| k)
        .take(5)
        .collect();
    assert!(
        only_a.is_empty() && only_b.is_empty() && differ.is_empty(),
        "the trees differ: only in alpha {only_a:?}, only in beta {only_b:?}, different {differ:?}"
    );
    let proxy_log = proxy.log();
    let cuts_up = proxy_log
        .lines()
        .filter(|l| l.contains(" cut after ") && l.ends_with(" up"))
        .count();
    let cuts_down = proxy_log
        .lines()
        .filter(|l| l.contains(" cut after ") && l.ends_with(" down"))
        .count();
    let cuts = cuts_up + cuts_down;
    let refused = proxy_log
        .lines()
        .filter(|l| l.ends_with(" refused"))
        .count();
    eprintln!(
        "through_cutting_proxy: {} events, {cuts} connections cut ({cuts_up} mid-request, {cuts_down} mid-response), {refused} refused, {failures} failed commands; {:.1} s",
        log.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        cuts_up > 0 && cuts_down > 0,
        "the proxy did not cut both ways:\n{proxy_log}"
    );
}
