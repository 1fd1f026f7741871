//! `horde-load`: the ingest figure of the cloud API, side by side with PostgreSQL.
//!
//! What it measures: how many events per second the real `horde-cloud` binary (embedded
//! SQLite store, WAL with `synchronous=FULL`) acknowledges when `--devices` devices (4) each
//! post signed, hash-chained batches of `--batch` events (1,000) to
//! `POST /v1/projects/{id}/sync` over loopback HTTP, one keep-alive connection per device, each
//! device sending its next batch when the previous one is acknowledged; the p50/p99 latency of
//! a batch (request sent to acknowledgement read); the cloud's resident memory after all
//! `--events-total` events (1,000,000) and its CPU time per event (`/proc/PID/stat`, all
//! threads, only during the load).
//!
//! How: the cloud starts on a fresh store in a temporary directory, a tenant signs up, a
//! project is created and the devices' ed25519 keys registered. Then every event and batch is
//! built, hashed, chained, signed and encoded before the clock starts (that is the edge's
//! work, not the cloud's): ~300–500-byte events, 40% tool calls and 60% file changes with
//! repository paths, each batch with the chain head signed over its last event. Each ack must
//! name the batch's last seq and one versionstamp per event, and at the end every device's
//! cursor (`GET /v1/projects/{id}/devices/{device}/cursor`) must equal the events it sent.
//!
//! The anchor: PostgreSQL from the Debian package (installed with apt-get when missing),
//! a throw-away cluster with `fsync=on` and `synchronous_commit=on` (so, like the cloud, a
//! batch is answered only after a durable commit) and otherwise default settings (add
//! `--pg-setting 'key = value'` to change them), receiving the same rows over loopback TCP: one
//! connection per device, each batch one `COPY events FROM STDIN (FORMAT binary)` of its rows,
//! pre-encoded before the clock like the cloud's batches, into
//! `events(project, device, seq, event_id, hash, occurred_at, type, agent, body)` with primary
//! key (device, seq). The figures are events per second and the ratio horde/PostgreSQL (the
//! goal is ≥ 1); CPU per event counts the postmaster and all its processes. The two runs
//! are sequential, never concurrent, and share the machine with this client: on a small
//! machine the client's own CPU is part of both figures.
//!
//! Nothing is asserted about timing. Run with `cargo build --release -p horde-cloud` and then
//! `cargo run --release -p horde-load` (`-- --events-total 40000` for a quick run); the
//! cloud binary is looked up beside this one (or given with `--cloud-bin`). Temporary directories go to `$TMPDIR` (else
//! `/tmp`): point it at the disk you care about, since both sides fsync.

mod cloud;
mod postgres;
mod procfs;
mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use horde_core::DeviceKey;

/// The cloud's limit on events per sync request.
const MAX_BATCH: usize = 5_000;
/// Most devices (threads building, connections sending).
const MAX_DEVICES: usize = 256;

#[derive(Parser, Debug)]
#[command(
    name = "horde-load",
    about = "Ingest throughput of horde-cloud from concurrent devices, side by side with PostgreSQL COPY"
)]
struct Args {
    /// Events sent in all, spread evenly over the devices
    #[arg(long, default_value_t = 1_000_000)]
    events_total: u64,
    /// Devices sending at once (one connection each)
    #[arg(long, default_value_t = 4)]
    devices: usize,
    /// Events per batch (the cloud takes at most 5,000 per request)
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Measure horde-cloud only
    #[arg(long)]
    skip_postgres: bool,
    /// The horde-cloud binary [default: beside this executable]
    #[arg(long)]
    cloud_bin: Option<PathBuf>,
    /// An extra postgresql.conf line for the anchor, e.g. 'shared_buffers = 1GB' (repeatable)
    #[arg(long = "pg-setting", value_name = "LINE")]
    pg_settings: Vec<String>,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("horde-load: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    ensure!(args.events_total > 0, "--events-total must be at least 1");
    ensure!(
        (1..=MAX_DEVICES).contains(&args.devices),
        "--devices {} is outside 1..={MAX_DEVICES}",
        args.devices
    );
    ensure!(
        (1..=MAX_BATCH).contains(&args.batch),
        "--batch {} is outside 1..={MAX_BATCH} (the cloud takes at most {MAX_BATCH} events per request)",
        args.batch
    );
    // The first SIGINT/SIGTERM makes the load stop at the next batch, so that the guards stop
    // the servers and remove their directories; a second one exits at once.
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(interrupt_flag()))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(interrupt_flag())))
            .context("installing the signal handlers")?;
    }
    let bin = cloud::find_binary(args.cloud_bin.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;

    // horde-cloud.
    let cloud_dir = tempfile::Builder::new()
        .prefix("horde-load-cloud-")
        .tempdir()
        .context("creating the cloud's temporary directory")?;
    let mut cloud = cloud::Cloud::start(&bin, cloud_dir.path())?;
    let pid = cloud.pid();
    eprintln!("horde-load: horde-cloud (pid {pid}) on {}", cloud.url);
    let tenant = rt.block_on(cloud::setup(&cloud.url))?;
    let keys = (0..args.devices)
        .map(|_| DeviceKey::generate().context("generating a device key"))
        .collect::<Result<Vec<_>>>()?;
    rt.block_on(async {
        for (i, key) in keys.iter().enumerate() {
            tenant.register(key, &format!("load-device-{i}")).await?;
        }
        anyhow::Ok(())
    })?;
    eprintln!(
        "horde-load: building {} events ({} devices, batches of {}) before the clock starts",
        args.events_total, args.devices, args.batch
    );
    let built = Instant::now();
    let shape = workload::Shape {
        events_total: args.events_total,
        devices: args.devices,
        batch: args.batch,
        with_copies: !args.skip_postgres,
    };
    let loads = workload::build(tenant.project, tenant.timeline, keys, shape)?;
    let body_bytes: u64 = loads.iter().map(|l| l.body_bytes).sum();
    let batches: usize = loads.iter().map(|l| l.batches.len()).sum();
    let request_bytes: usize = loads.iter().flat_map(|l| &l.batches).map(|b| b.len()).sum();
    eprintln!(
        "horde-load: built in {:.1} s: mean event body {} bytes, mean request {} KiB",
        built.elapsed().as_secs_f64(),
        body_bytes / args.events_total,
        request_bytes / batches / 1024
    );
    check_interrupted()?;

    let cpu0 = procfs::cpu_time(pid)?;
    let threads0 = procfs::threads_cpu_time(pid)?;
    let horde = rt.block_on(tenant.send_all(&loads, args.batch))?;
    let cloud_cpu = procfs::cpu_time(pid)?.saturating_sub(cpu0);
    let mut threads: Vec<(String, Duration)> = procfs::threads_cpu_time(pid)?
        .into_iter()
        .map(|(name, t)| {
            let before = threads0.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
            (name, t.saturating_sub(before.unwrap_or_default()))
        })
        .filter(|(_, t)| !t.is_zero())
        .collect();
    threads.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
    let rss = procfs::status_bytes(pid, "VmRSS")?;
    let hwm = procfs::status_bytes(pid, "VmHWM")?;
    let (server_requests, server_seconds) = rt.block_on(tenant.server_sync_time())?;
    rt.block_on(async {
        for load in &loads {
            let device = load.key.device_id();
            let acked = tenant.acked_seq(device).await?;
            ensure!(
                acked == load.events,
                "device {device}: the cloud's cursor says acked_seq {acked}, but {} events were \
                 sent and acknowledged",
                load.events
            );
        }
        anyhow::Ok(())
    })?;
    cloud.stop()?;
    let store_bytes = cloud.store_bytes();
    drop(cloud);
    drop(cloud_dir);

    // PostgreSQL.
    let pg = if args.skip_postgres {
        None
    } else {
        Some(run_postgres(&rt, &args, &loads)?)
    };

    // Report.
    let n = args.events_total;
    println!();
    println!(
        "{n} events, {} devices, {batches} batches of ≤ {} events (mean event body {} bytes), over loopback",
        args.devices,
        args.batch,
        body_bytes / n
    );
    println!(
        "horde-cloud ingest:   {:>9.0} events/s (p50 {:.1} ms, p99 {:.1} ms per batch; server-side mean {:.1} ms)",
        horde.rate(n),
        ms(horde.percentile(0.50)),
        ms(horde.percentile(0.99)),
        if server_requests > 0.0 {
            server_seconds / server_requests * 1e3
        } else {
            f64::NAN
        }
    );
    if let Some(pg) = &pg {
        println!(
            "PostgreSQL COPY:      {:>9.0} events/s (p50 {:.1} ms, p99 {:.1} ms per batch)   [{}]",
            pg.timed.rate(n),
            ms(pg.timed.percentile(0.50)),
            ms(pg.timed.percentile(0.99)),
            pg.version
        );
        println!(
            "ratio horde/PostgreSQL: {:.0}/{:.0} = {:.2} (goal ≥ 1)",
            horde.rate(n),
            pg.timed.rate(n),
            horde.rate(n) / pg.timed.rate(n)
        );
    }
    println!(
        "horde-cloud RSS after {n} events: {:.0} MiB (peak {:.0} MiB)",
        mib(rss),
        mib(hwm)
    );
    if let Some(pg) = &pg {
        println!(
            "PostgreSQL memory after {n} events: {:.0} MiB PSS over its {} processes",
            mib(pg.pss),
            pg.processes
        );
    }
    let per_event = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    match &pg {
        Some(pg) => println!(
            "CPU per event: cloud {:.1} µs, PostgreSQL {:.1} µs",
            per_event(cloud_cpu),
            per_event(pg.cpu)
        ),
        None => println!("CPU per event: cloud {:.1} µs", per_event(cloud_cpu)),
    }
    println!(
        "cloud CPU by thread during the load: {} (wall {:.1} s)",
        threads
            .iter()
            .map(|(name, t)| format!("{name} {:.1} s", t.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", "),
        horde.wall.as_secs_f64()
    );
    let per_event_bytes = |b: u64| b as f64 / n as f64;
    match &pg {
        Some(pg) => println!(
            "on disk per event: cloud store {:.0} bytes (SQLite db + WAL), PostgreSQL table + index {:.0} bytes",
            per_event_bytes(store_bytes),
            per_event_bytes(pg.table_bytes)
        ),
        None => println!(
            "on disk per event: cloud store {:.0} bytes (SQLite db + WAL)",
            per_event_bytes(store_bytes)
        ),
    }
    println!(
        "checked: every ack and every device's cursor in the cloud{}",
        if pg.is_some() {
            "; every device's row count and last seq in PostgreSQL"
        } else {
            ""
        }
    );
    Ok(())
}

struct PgFigures {
    timed: Timed,
    cpu: Duration,
    pss: u64,
    processes: usize,
    table_bytes: u64,
    version: String,
}

fn run_postgres(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    loads: &[workload::DeviceLoad],
) -> Result<PgFigures> {
    let cluster = postgres::Cluster::start(&args.pg_settings)?;
    let pid = cluster.pid()?;
    eprintln!(
        "horde-load: {} (pid {pid}) on 127.0.0.1:{}",
        cluster.version, cluster.port
    );
    rt.block_on(async {
        let admin = cluster.connect().await?;
        postgres::check_durability(&admin).await?;
        postgres::create_table(&admin).await?;
        let mut clients = Vec::new();
        for _ in 0..args.devices {
            clients.push(cluster.connect().await?);
        }
        let cpu0 = procfs::tree_cpu_time(pid)?;
        let (timed, clients) = postgres::send_all(clients, loads, args.batch).await?;
        let cpu = procfs::tree_cpu_time(pid)?.saturating_sub(cpu0);
        let pss = procfs::tree_pss(pid)?;
        let processes = procfs::children(pid)?.len() + 1;
        drop(clients);
        let stored = postgres::stored(&admin).await?;
        ensure!(
            stored.len() == loads.len(),
            "PostgreSQL holds rows of {} devices, expected {}",
            stored.len(),
            loads.len()
        );
        for load in loads {
            let device = load.key.device_id().to_string();
            let Some((_, count, max)) = stored.iter().find(|(d, _, _)| *d == device) else {
                bail!("PostgreSQL holds no rows of device {device}");
            };
            ensure!(
                u64::try_from(*count).ok() == Some(load.events)
                    && u64::try_from(*max).ok() == Some(load.events),
                "device {device}: PostgreSQL holds {count} rows up to seq {max}, expected {} up to {}",
                load.events,
                load.events
            );
        }
        let table_bytes = u64::try_from(postgres::table_bytes(&admin).await?).unwrap_or(0);
        Ok(PgFigures {
            timed,
            cpu,
            pss,
            processes,
            table_bytes,
            version: cluster.version.clone(),
        })
    })
}

/// One side's run: wall time and every batch's latency.
pub struct Timed {
    pub wall: Duration,
    pub latencies: Vec<Duration>,
}

impl Timed {
    fn rate(&self, events: u64) -> f64 {
        events as f64 / self.wall.as_secs_f64()
    }

    /// Nearest-rank percentile of the batch latencies.
    fn percentile(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort_unstable();
        let rank = ((p * l.len() as f64).ceil() as usize).clamp(1, l.len().max(1));
        l.get(rank - 1).copied().unwrap_or_default()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn interrupt_flag() -> &'static Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// An error once SIGINT or SIGTERM arrived, so that the guards stop the servers and remove
/// their directories on the way out.
pub fn check_interrupted() -> Result<()> {
    if interrupt_flag().load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// Events acknowledged so far, on a progress bar (stderr, only on a terminal).
#[derive(Clone)]
pub struct Progress(indicatif::ProgressBar);

impl Progress {
    fn new(total: u64, what: &str) -> Self {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>12} {wide_bar} {pos}/{len} events ({per_sec}, {eta})",
            )
            .expect("a valid template"),
        );
        bar.set_prefix(what.to_owned());
        Progress(bar)
    }

    pub fn inc(&self, n: u64) {
        self.0.inc(n);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let t = Timed {
            wall: Duration::from_secs(1),
            latencies: (1..=100).rev().map(Duration::from_millis).collect(),
        };
        assert_eq!(t.percentile(0.50), Duration::from_millis(50));
        assert_eq!(t.percentile(0.99), Duration::from_millis(99));
        assert_eq!(t.percentile(1.0), Duration::from_millis(100));
        let empty = Timed {
            wall: Duration::from_secs(1),
            latencies: Vec::new(),
        };
        assert_eq!(empty.percentile(0.5), Duration::ZERO);
    }
}
