//! `sync`: how fast the edge syncer drains a queue of events to the cloud over loopback, and
//! what it costs in CPU per event on each side, beside the cloud's own ingest rate of the same
//! events measured in the same run.
//!
//! Set-up (outside every clock): `horde init` of an empty directory (its checkpoint is the
//! first queued event), then `--events` events in all are appended in-process through
//! `horde::store::Store` with the device key `init` made, in groups of 1,000 (one
//! `AppendRequest` each). The mix: three `Message`s (one agent to another) for every
//! `Observation` (a command's output summary), from four agents with roles, trace and span
//! ids, their text sized so the encoded events are 250–350 bytes (the mean is printed). None
//! names a blob except `init`'s checkpoint, so the drain is the event path itself. A
//! `horde-cloud serve` (release, embedded SQLite store, fs blobs, rate limits raised so that
//! neither side is throttled) is started on a free port, a tenant signed up, and the
//! repository given the remote with `horde remote add origin URL --key KEY`.
//!
//! Timed: the real CLI, `horde sync --json --no-merge`, from spawn to exit. It registers the
//! project and the device, pushes the whole outbox in batches of [`MAX_BATCH_EVENTS`] (blobs
//! first, each batch acknowledged, then marked) and pulls (nothing: one device). Edge CPU is
//! the child's user + system time from `wait4`; cloud CPU is the server's `/proc/PID/stat`
//! user + system time over the same interval. Afterwards the cloud's device cursor must be at
//! the last seq and `horde status --json` must report 0 pending events.
//!
//! Anchor: the cloud's own ingest rate of exactly those events. A second fresh `horde-cloud`
//! gets the same project (by id), the same device key, and the stored bodies and hashes read
//! back from the edge's ledger, cut into `SyncBatch`es of the same size, each signed by a head
//! on its last event, all encoded before the clock starts; then they are POSTed back-to-back on
//! one keep-alive connection, each ack checked. The ratio edge/anchor is the share of the
//! cloud's ingest rate that the syncer reaches.
//!
//! `--repeats` rounds (default 3), each an edge drain of a fresh copy of the queued
//! repository into a fresh cloud followed by the anchor into another fresh cloud; each round
//! is printed and the medians are reported.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use horde::store::writer::AppendRequest;
use horde::store::{Layout, Store};
use horde::sync::MAX_BATCH_EVENTS;
use horde_core::proto::{
    Message, Observation, SignedEvent, SyncAck, SyncBatch, event_body::Payload,
};
use horde_core::{DeviceId, DeviceKey, Draft, EventHash, ProjectId, TimelineId};
use prost::Message as _;
use serde_json::{Value, json};

use crate::util::{Rng, horde, horde_bin, median, print_missing_horde, thousands, timed};

/// Drafts per `AppendRequest` while queueing.
const GROUP: usize = 1_000;
/// The encoded size range of the queued events.
const BODY_BYTES: (usize, usize) = (250, 350);
const AGENTS: &[&str] = &["claude-code", "codex", "horde-run", "aider"];
const ROLES: &[&str] = &["builder", "inspector", "commander", ""];

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Events queued on the edge, `init`'s checkpoint included [default: 100000; 10000 with
    /// --quick].
    #[arg(long, env = "HORDE_BENCH_SYNC_EVENTS")]
    pub events: Option<u64>,
    /// 10,000 events.
    #[arg(long)]
    pub quick: bool,
    /// Rounds (edge drain, then anchor, each into a fresh cloud); medians are reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Keep the temporary directory (its path is printed) instead of deleting it.
    #[arg(long)]
    pub keep: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let total = args
        .events
        .unwrap_or(if args.quick { 10_000 } else { 100_000 });
    ensure!(total >= 2, "--events must be at least 2");
    let Some(bin) = horde_bin()? else {
        print_missing_horde("sync");
        return Ok(());
    };
    let Some(cloud_bin) = cloud_bin()? else {
        println!(
            "sync           skipped: no horde-cloud binary (set HORDE_CLOUD_BIN, or run `cargo build --release -p horde-cloud` so it sits next to horde-bench)"
        );
        return Ok(());
    };
    let tmp = tempfile::Builder::new()
        .prefix("horde-bench-sync-")
        .tempdir()?;
    let root = if args.keep {
        let p = tmp.keep();
        println!("sync           keeping {}", p.display());
        p
    } else {
        tmp.path().to_owned()
    };
    let (config, repo) = (root.join("config"), root.join("repo"));
    std::fs::create_dir_all(&config)?;
    std::fs::create_dir_all(&repo)?;

    // Queue the events without the network.
    timed(&mut horde(&bin, &config, &repo, &["init", "--json"]))?;
    let key = DeviceKey::load(&config.join("device.key")).context("loading the device key")?;
    let queued = queue(&repo, &config, total)?;
    println!(
        "sync           {} events queued (1 checkpoint from init, then Message:Observation 3:1), encoded bodies {:.0} B on average ({}–{} B), batches of {}",
        thousands(total as f64),
        queued.mean_body,
        BODY_BYTES.0,
        BODY_BYTES.1,
        thousands(MAX_BATCH_EVENTS as f64),
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    // Each round drains a copy of the queued repository.
    let pristine = root.join("pristine");
    copy_dir(&repo.join(".horde"), &pristine)?;
    let batches = prebuilt_batches(&repo, &key, &queued)?;
    let ctx = Ctx {
        bin: &bin,
        cloud_bin: &cloud_bin,
        root: &root,
        config: &config,
        repo: &repo,
        queued: &queued,
        key: &key,
        total,
        rt: &rt,
    };

    let n = total as f64;
    let rate = |wall: Duration| n / wall.as_secs_f64();
    let per_event = |d: Duration| d.as_secs_f64() * 1e6 / n;
    let (mut edges, mut anchors) = (Vec::new(), Vec::new());
    for round in 1..=args.repeats.max(1) {
        std::fs::remove_dir_all(repo.join(".horde"))?;
        copy_dir(&pristine, &repo.join(".horde"))?;
        let e = ctx.edge(round)?;
        let a = ctx.anchor(round, &batches)?;
        println!(
            "  round {round}      edge {:>7} events/s (edge {:.1} µs/event, {} MB, cloud {:.1} µs/event)   anchor {:>7} events/s (cloud {:.1} µs/event)   ratio {:.2}",
            thousands(rate(e.wall)),
            per_event(e.edge_cpu),
            e.edge_rss / 1_000_000,
            per_event(e.cloud_cpu),
            thousands(rate(a.wall)),
            per_event(a.cloud_cpu),
            rate(e.wall) / rate(a.wall)
        );
        edges.push(e);
        anchors.push(a);
    }

    let med = |xs: &[Drained], f: &dyn Fn(&Drained) -> Duration| {
        Duration::from_secs_f64(median(
            &xs.iter().map(|d| f(d).as_secs_f64()).collect::<Vec<_>>(),
        ))
    };
    let wall = med(&edges, &|d| d.wall);
    let edge_cpu = med(&edges, &|d| d.edge_cpu);
    let cloud_cpu = med(&edges, &|d| d.cloud_cpu);
    let anchor_wall = med(&anchors, &|d| d.wall);
    let anchor_cpu = med(&anchors, &|d| d.cloud_cpu);
    let rss = edges.iter().map(|d| d.edge_rss).max().unwrap_or(0);
    println!(
        "sync           median of {} rounds: events {}   batches {}   wall {:.2} s   {} events/s",
        edges.len(),
        thousands(n),
        edges[0].batches,
        wall.as_secs_f64(),
        thousands(rate(wall))
    );
    println!(
        "  cpu          edge {:.1} µs/event ({:.0}% of one core, max RSS {} MB)   cloud {:.1} µs/event",
        per_event(edge_cpu),
        edge_cpu.as_secs_f64() / wall.as_secs_f64() * 100.0,
        rss / 1_000_000,
        per_event(cloud_cpu)
    );
    println!(
        "  anchor       the same events as prebuilt SyncBatches POSTed back-to-back to a fresh cloud: {} batches   wall {:.2} s   {} events/s   cloud {:.1} µs/event",
        anchors[0].batches,
        anchor_wall.as_secs_f64(),
        thousands(rate(anchor_wall)),
        per_event(anchor_cpu)
    );
    println!(
        "sync           edge syncer {} events/s   cloud ingest {} events/s   ratio {:.2}",
        thousands(rate(wall)),
        thousands(rate(anchor_wall)),
        rate(wall) / rate(anchor_wall)
    );
    Ok(())
}

/// What every round needs.
struct Ctx<'a> {
    bin: &'a Path,
    cloud_bin: &'a Path,
    root: &'a Path,
    config: &'a Path,
    repo: &'a Path,
    queued: &'a Queued,
    key: &'a DeviceKey,
    total: u64,
    rt: &'a tokio::runtime::Runtime,
}

impl Ctx<'_> {
    fn horde(&self, args: &[&str]) -> Command {
        horde(self.bin, self.config, self.repo, args)
    }

    /// The edge syncer, end to end, into a fresh cloud.
    fn edge(&self, round: usize) -> Result<Drained> {
        let (rt, total, q) = (self.rt, self.total, self.queued);
        let dir = self.root.join(format!("cloud-edge-{round}"));
        let mut cloud = Cloud::start(self.cloud_bin, &dir)?;
        let tenant = rt.block_on(Tenant::signup(&cloud.url))?;
        timed(&mut self.horde(&["remote", "add", "origin", &cloud.url, "--key", &tenant.key]))?;
        let cpu0 = cpu_time(cloud.pid())?;
        let run = run_child(self.horde(&["sync", "--json", "--no-merge"]), self.root)?;
        let cloud_cpu = cpu_time(cloud.pid())?.saturating_sub(cpu0);
        let report: Value = serde_json::from_str(run.stdout.trim())
            .with_context(|| format!("`horde sync --json` printed {:?}", run.stdout))?;
        let sync = &report["sync"];
        ensure!(
            sync["pushed"].as_u64() == Some(total) && sync["skipped"].as_u64() == Some(0),
            "horde sync pushed {} and skipped {}, expected {total} and 0: {report}",
            sync["pushed"],
            sync["skipped"]
        );
        let acked = rt.block_on(tenant.acked_seq(q.project, q.device))?;
        ensure!(
            acked == total,
            "the cloud's cursor for the device is at {acked}, expected {total}"
        );
        let (status, _) = timed(&mut self.horde(&["status", "--json"]))?;
        let status: Value =
            serde_json::from_slice(&status.stdout).context("`horde status --json`")?;
        ensure!(
            status["remote"]["pending_events"].as_u64() == Some(0),
            "`horde status --json` reports {} pending events after the sync",
            status["remote"]["pending_events"]
        );
        cloud.stop()?;
        std::fs::remove_dir_all(&dir)?;
        Ok(Drained {
            wall: run.wall,
            batches: sync["batches"].as_u64().unwrap_or(0),
            edge_cpu: run.cpu,
            edge_rss: run.max_rss,
            cloud_cpu,
        })
    }

    /// The same events, prebuilt, sent back-to-back to a fresh cloud.
    fn anchor(&self, round: usize, batches: &[(u64, bytes::Bytes)]) -> Result<Drained> {
        let (rt, total, q) = (self.rt, self.total, self.queued);
        let dir = self.root.join(format!("cloud-anchor-{round}"));
        let mut cloud = Cloud::start(self.cloud_bin, &dir)?;
        let tenant = rt.block_on(Tenant::signup(&cloud.url))?;
        rt.block_on(tenant.adopt(q, self.key))?;
        let url = format!("{}/v1/projects/{}/sync", cloud.url, q.project);
        let cpu0 = cpu_time(cloud.pid())?;
        let wall = rt.block_on(tenant.send(&url, batches))?;
        let cloud_cpu = cpu_time(cloud.pid())?.saturating_sub(cpu0);
        let acked = rt.block_on(tenant.acked_seq(q.project, q.device))?;
        ensure!(
            acked == total,
            "anchor: the cloud's cursor is at {acked}, expected {total}"
        );
        cloud.stop()?;
        std::fs::remove_dir_all(&dir)?;
        Ok(Drained {
            wall,
            batches: batches.len() as u64,
            edge_cpu: Duration::ZERO,
            edge_rss: 0,
            cloud_cpu,
        })
    }
}

/// Copies a directory tree of plain files.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

struct Drained {
    wall: Duration,
    batches: u64,
    edge_cpu: Duration,
    edge_rss: u64,
    cloud_cpu: Duration,
}

/// What was queued.
struct Queued {
    project: ProjectId,
    timeline: TimelineId,
    device: DeviceId,
    mean_body: f64,
}

/// Appends events until the device's chain holds `total` of them.
fn queue(repo: &Path, config: &Path, total: u64) -> Result<Queued> {
    let key = DeviceKey::load(&config.join("device.key")).context("loading the device key")?;
    let device = key.device_id();
    let store = Store::open(Layout::new(repo), key).context("opening the repository")?;
    let meta = store.ledger.meta;
    let own = |store: &Store| -> Result<u64> {
        Ok(store.ledger.conn.query_row(
            "SELECT COUNT(*) FROM events WHERE device_id = ?1",
            [device.as_bytes()],
            |r| r.get::<_, i64>(0),
        )? as u64)
    };
    let have = own(&store)?;
    ensure!(
        have < total,
        "`horde init` recorded {have} events already; queue more than that"
    );
    let mut rng = Rng::new(0x5eed_5e11);
    let overhead = {
        let probe = draft(meta.timeline, 0, String::new(), &mut rng);
        let tip = horde_core::ChainTip {
            seq: 1_000,
            hash: Some(EventHash::of(b"previous")),
        };
        horde_core::build_event(meta.project, device, &tip, probe)?
            .body
            .len()
    };
    let mut left = total - have;
    let mut i = 0u64;
    while left > 0 {
        let n = left.min(GROUP as u64);
        let drafts = (0..n)
            .map(|_| {
                i += 1;
                let size = rng.range(BODY_BYTES.0, BODY_BYTES.1);
                let text = String::from_utf8(rng.text(size.saturating_sub(overhead)))
                    .expect("the generator writes ASCII");
                draft(meta.timeline, i, text, &mut rng)
            })
            .collect();
        store.writer.append(AppendRequest {
            drafts,
            ..Default::default()
        })?;
        left -= n;
    }
    let got = own(&store)?;
    ensure!(got == total, "queued {got} events, expected {total}");
    let mean_body: f64 = store.ledger.conn.query_row(
        "SELECT AVG(LENGTH(body)) FROM events WHERE device_id = ?1",
        [device.as_bytes()],
        |r| r.get(0),
    )?;
    Ok(Queued {
        project: meta.project,
        timeline: meta.timeline,
        device,
        mean_body,
    })
}

/// Event `i` of the mix: three Messages between agents, then an Observation.
fn draft(timeline: TimelineId, i: u64, text: String, rng: &mut Rng) -> Draft {
    let agent = AGENTS[(i % AGENTS.len() as u64) as usize];
    let payload = if i % 4 == 3 {
        Payload::Observation(Observation {
            kind: "stdout".into(),
            summary: text,
            size: 4_096,
            ..Default::default()
        })
    } else {
        Payload::Message(Message {
            from: agent.into(),
            to: AGENTS[((i + 1) % AGENTS.len() as u64) as usize].into(),
            text,
            ..Default::default()
        })
    };
    let mut d = Draft::new(timeline, agent, payload);
    d.role = ROLES[(i % ROLES.len() as u64) as usize].to_owned();
    d.trace_id = rng.next_u64().to_le_bytes().repeat(2);
    d.span_id = rng.next_u64().to_le_bytes().to_vec();
    d
}

/// The device's stored events as encoded `SyncBatch`es of [`MAX_BATCH_EVENTS`], each signed by
/// a head on its last event, as the syncer sends them.
fn prebuilt_batches(repo: &Path, key: &DeviceKey, q: &Queued) -> Result<Vec<(u64, bytes::Bytes)>> {
    let conn = rusqlite::Connection::open(Layout::new(repo).db())?;
    let mut st =
        conn.prepare("SELECT seq, body, hash FROM events WHERE device_id = ?1 ORDER BY seq")?;
    let rows: Vec<(u64, Vec<u8>, Vec<u8>)> = st
        .query_map([q.device.as_bytes()], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for chunk in rows.chunks(MAX_BATCH_EVENTS) {
        let (last_seq, _, last_hash) = chunk.last().expect("chunks are not empty");
        let hash = EventHash::from_slice(last_hash).context("a stored hash is not 32 bytes")?;
        let head = key.sign_head(q.project, *last_seq, hash, horde_core::time::now_micros());
        let batch = SyncBatch {
            project_id: q.project.to_vec(),
            device_id: q.device.to_vec(),
            events: chunk
                .iter()
                .map(|(_, body, hash)| SignedEvent {
                    body: body.clone(),
                    hash: hash.clone(),
                })
                .collect(),
            head: Some(head),
        };
        out.push((*last_seq, bytes::Bytes::from(batch.encode_to_vec())));
    }
    Ok(out)
}

/// What a finished child cost.
struct ChildRun {
    wall: Duration,
    cpu: Duration,
    max_rss: u64,
    stdout: String,
}

/// Runs `cmd` (stdout and stderr into files under `dir`) and reaps it with `wait4`, which
/// gives its own user + system time and peak RSS.
fn run_child(mut cmd: Command, dir: &Path) -> Result<ChildRun> {
    let (out_path, err_path) = (dir.join("sync.stdout"), dir.join("sync.stderr"));
    cmd.stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?);
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("cannot run {cmd:?}"))?;
    let pid = libc::pid_t::try_from(child.id()).expect("pids fit in pid_t");
    assert!(pid > 0, "a child's pid is positive");
    let mut status: libc::c_int = 0;
    #[allow(unsafe_code)]
    // SAFETY: an all-zero `rusage` is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    #[allow(unsafe_code)]
    // SAFETY: wait4(2) on our own child's pid with valid out-pointers; `child` is never waited
    // on through std afterwards (it is only dropped, which does not wait).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    drop(child);
    ensure!(
        r == pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    let stdout = std::fs::read_to_string(&out_path)?;
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!(
            "{cmd:?} failed (wait status {status}): {}{}",
            std::fs::read_to_string(&err_path)
                .unwrap_or_default()
                .trim(),
            stdout.trim()
        );
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    Ok(ChildRun {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss: usage.ru_maxrss as u64 * 1024,
        stdout,
    })
}

/// `horde-cloud`: `$HORDE_CLOUD_BIN`, else next to this executable; None if missing.
fn cloud_bin() -> Result<Option<PathBuf>> {
    let path = match std::env::var_os("HORDE_CLOUD_BIN").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()
            .context("cannot find this executable's path")?
            .with_file_name("horde-cloud"),
    };
    Ok(path.is_file().then_some(path))
}

/// User + system CPU time of `pid` (all its threads), from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Result<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let (_, rest) = text
        .rsplit_once(')')
        .with_context(|| format!("/proc/{pid}/stat has no command name: {text:?}"))?;
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f
        .get(11..13)
        .context("/proc/PID/stat is too short")?
        .iter()
        .map(|v| v.parse::<u64>().unwrap_or(0))
        .sum();
    #[allow(unsafe_code)]
    // SAFETY: sysconf(3) reads a constant of the C library.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0).unwrap_or(100);
    Ok(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// A running `horde-cloud serve` on a fresh store in `dir`, stopped with SIGTERM by
/// [`Cloud::stop`] (SIGKILL if dropped while running).
struct Cloud {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    url: String,
    log: PathBuf,
}

impl Cloud {
    fn start(bin: &Path, dir: &Path) -> Result<Cloud> {
        std::fs::create_dir_all(dir)?;
        let log = dir.join("horde-cloud.log");
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .arg("--store")
            .arg(format!("sqlite:{}", dir.join("cloud.db").display()))
            .arg("--blobs")
            .arg(format!("fs:{}", dir.join("blobs").display()))
            .args(["--rate-limit", "100000", "--rate-burst", "100000"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).context("creating the cloud's log file")?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .context("reading horde-cloud's first line")?;
        let mut cloud = Cloud {
            child,
            _stdout: stdout,
            url: String::new(),
            log,
        };
        match line.trim().strip_prefix("horde-cloud listening on ") {
            Some(url) => cloud.url = url.to_owned(),
            None => bail!(
                "horde-cloud did not start (first line {line:?}); its log:\n{}",
                std::fs::read_to_string(&cloud.log).unwrap_or_default()
            ),
        }
        Ok(cloud)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and wait (at most 30 s).
    fn stop(&mut self) -> Result<()> {
        signal(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for horde-cloud")? {
                ensure!(
                    status.success(),
                    "horde-cloud exited with {status}; its log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "horde-cloud did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

fn signal(pid: u32, sig: i32) {
    let pid = i32::try_from(pid).expect("pids fit in i32");
    assert!(pid > 0, "never signal a process group");
    #[allow(unsafe_code)]
    // SAFETY: kill(2) on our own child's pid; no memory is shared.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// A signed-up tenant of one cloud.
struct Tenant {
    http: reqwest::Client,
    url: String,
    key: String,
}

async fn call(req: reqwest::RequestBuilder, what: &str) -> Result<Value> {
    let r = req
        .send()
        .await
        .with_context(|| format!("{what}: request"))?;
    let status = r.status();
    let body = r
        .text()
        .await
        .with_context(|| format!("{what}: response"))?;
    ensure!(status.is_success(), "{what}: HTTP {status}: {body}");
    serde_json::from_str(&body).with_context(|| format!("{what}: the answer is not JSON: {body}"))
}

impl Tenant {
    async fn signup(url: &str) -> Result<Tenant> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(1)
            .build()
            .context("building the HTTP client")?;
        let v = call(
            http.post(format!("{url}/v1/signup")).json(&json!({
                "tenant": format!("bench-{}", horde_core::EventId::new()),
                "email": "bench@example.com",
            })),
            "signup",
        )
        .await?;
        let key = v["api_key"]
            .as_str()
            .with_context(|| format!("signup: no api_key in {v}"))?
            .to_owned();
        Ok(Tenant {
            http,
            url: url.to_owned(),
            key,
        })
    }

    /// Creates the edge's project (by its id) and registers its device, as the syncer does.
    async fn adopt(&self, q: &Queued, key: &DeviceKey) -> Result<()> {
        call(
            self.http
                .put(format!("{}/v1/projects/{}", self.url, q.project))
                .bearer_auth(&self.key)
                .json(&json!({"name": "bench", "main_timeline": q.timeline.to_string()})),
            "put project",
        )
        .await?;
        let public: String = key
            .public_key()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        call(
            self.http
                .post(format!("{}/v1/devices", self.url))
                .bearer_auth(&self.key)
                .json(&json!({"id": q.device.to_string(), "public_key": public, "name": "bench"})),
            "register device",
        )
        .await?;
        Ok(())
    }

    /// POSTs the batches in order on one connection, checking each ack; the wall time.
    async fn send(&self, url: &str, batches: &[(u64, bytes::Bytes)]) -> Result<Duration> {
        let start = Instant::now();
        for (i, (last_seq, body)) in batches.iter().enumerate() {
            let r = self
                .http
                .post(url)
                .bearer_auth(&self.key)
                .header("content-type", "application/x-protobuf")
                .body(body.clone())
                .send()
                .await
                .with_context(|| format!("anchor batch {i}: request"))?;
            let status = r.status();
            let bytes = r
                .bytes()
                .await
                .with_context(|| format!("anchor batch {i}: response"))?;
            ensure!(
                status.as_u16() == 200,
                "anchor batch {i}: HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
            let ack =
                SyncAck::decode(bytes).with_context(|| format!("anchor batch {i}: SyncAck"))?;
            ensure!(
                ack.acked_seq == *last_seq && ack.skipped == 0,
                "anchor batch {i}: acked_seq {} skipped {}, expected {last_seq} and 0",
                ack.acked_seq,
                ack.skipped
            );
        }
        Ok(start.elapsed())
    }

    async fn acked_seq(&self, project: ProjectId, device: DeviceId) -> Result<u64> {
        let v = call(
            self.http
                .get(format!(
                    "{}/v1/projects/{project}/devices/{device}/cursor",
                    self.url
                ))
                .bearer_auth(&self.key),
            "device cursor",
        )
        .await?;
        v["acked_seq"]
            .as_u64()
            .with_context(|| format!("device cursor: no acked_seq in {v}"))
    }
}
