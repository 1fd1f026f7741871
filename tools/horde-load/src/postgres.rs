//! The PostgreSQL anchor: a throw-away cluster of Debian's PostgreSQL (installed with apt-get
//! when missing), started on a free loopback port with the durability of the cloud (`fsync`,
//! `synchronous_commit`: a batch is answered only after its commit is on disk), one
//! connection per device, each batch one `COPY events FROM STDIN (FORMAT binary)` — one
//! implicit transaction, committed before the next batch is sent.
//!
//! The cluster is stopped and its directory deleted when [`Cluster`] is dropped, on errors
//! too. PostgreSQL refuses to run as root: as root, initdb and the server run as the
//! `postgres` system user (the Debian package creates it) through `runuser`.

use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use futures::SinkExt;
use tokio_postgres::{Client, NoTls};

use crate::workload::DeviceLoad;
use crate::{Progress, Timed, check_interrupted};

/// The same rows the cloud stores of an event; the primary key is the device's chain.
const CREATE_TABLE: &str = "CREATE TABLE events (
    project uuid NOT NULL,
    device uuid NOT NULL,
    seq bigint NOT NULL,
    event_id uuid NOT NULL,
    hash bytea NOT NULL,
    occurred_at bigint NOT NULL,
    type text NOT NULL,
    agent text NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (device, seq)
)";
const COPY: &str = "COPY events FROM STDIN (FORMAT binary)";
/// The system user PostgreSQL runs as when we are root.
const PG_USER: &str = "postgres";

/// A running throw-away cluster.
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    as_root: bool,
    running: bool,
    pub port: u16,
    pub version: String,
    // Last: removed after the server stopped.
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Finds (or installs) PostgreSQL, creates a cluster in a fresh temporary directory and
    /// starts it. `settings` are extra `postgresql.conf` lines (`key = value`).
    pub fn start(settings: &[String]) -> Result<Cluster> {
        let bin = match find_bin() {
            Some(b) => b,
            None => {
                install()?;
                find_bin().context(
                    "the postgresql package is installed but /usr/lib/postgresql/*/bin/ has no \
                     initdb, pg_ctl and postgres",
                )?
            }
        };
        let as_root = effective_uid()? == 0;
        let dir = tempfile::Builder::new()
            .prefix("horde-load-pg-")
            .tempdir()
            .context("creating the cluster's temporary directory")?;
        if as_root {
            let (uid, gid) = user_ids(PG_USER)?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .with_context(|| format!("giving {} to {PG_USER}", dir.path().display()))?;
        }
        let data = dir.path().join("data");
        let log = dir.path().join("server.log");
        let port = free_port()?;
        let mut cluster = Cluster {
            version: String::new(),
            bin,
            data,
            log,
            as_root,
            running: false,
            port,
            _dir: dir,
        };
        let out = cluster.run("postgres", &["--version"])?;
        cluster.version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let data = cluster.data.display().to_string();
        cluster
            .run(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ],
            )
            .context(
                "initdb failed (as root, the postgres user must be able to reach $TMPDIR: \
                 point TMPDIR at a directory it can traverse)",
            )?;
        let socket_dir = cluster.data.parent().expect("data is in the temp dir");
        let mut conf = format!(
            "\n# horde-load\nlisten_addresses = '127.0.0.1'\nport = {port}\n\
             unix_socket_directories = '{}'\nfsync = on\nsynchronous_commit = on\n\
             full_page_writes = on\n",
            socket_dir.display()
        );
        for s in settings {
            conf.push_str(s);
            conf.push('\n');
        }
        append(&cluster.data.join("postgresql.conf"), &conf)?;
        let log = cluster.log.display().to_string();
        cluster.running = true;
        cluster
            .run(
                "pg_ctl",
                &["-D", &data, "-l", &log, "-w", "-t", "120", "start"],
            )
            .with_context(|| {
                format!(
                    "starting PostgreSQL; its log:\n{}",
                    std::fs::read_to_string(&cluster.log).unwrap_or_default()
                )
            })?;
        Ok(cluster)
    }

    /// The postmaster's pid.
    pub fn pid(&self) -> Result<u32> {
        let path = self.data.join("postmaster.pid");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .with_context(|| format!("{}: no pid on the first line", path.display()))
    }

    pub async fn connect(&self) -> Result<Client> {
        let (client, connection) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .connect(NoTls)
            .await
            .context("connecting to PostgreSQL")?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("horde-load: PostgreSQL connection: {e}");
            }
        });
        Ok(client)
    }

    /// Runs one of the cluster's programs (as the postgres user when we are root).
    fn run(&self, program: &str, args: &[&str]) -> Result<Output> {
        let path = self.bin.join(program);
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", PG_USER, "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", path.display()))?;
        ensure!(
            out.status.success(),
            "{} {} exited with {}:\n{}{}",
            path.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(out)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let data = self.data.display().to_string();
            if let Err(e) = self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]) {
                eprintln!("horde-load: stopping the PostgreSQL cluster: {e:#}");
            }
        }
    }
}

/// Fails unless commits are durable as the cloud's are (a `--pg-setting` could turn that off).
pub async fn check_durability(client: &Client) -> Result<()> {
    for setting in ["fsync", "synchronous_commit", "full_page_writes"] {
        let row = client
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .with_context(|| format!("SHOW {setting}"))?;
        let value: String = row.try_get(0)?;
        ensure!(
            value == "on",
            "PostgreSQL runs with {setting} = {value}: the comparison needs it on (the cloud \
             answers a batch only after a durable commit)"
        );
    }
    Ok(())
}

/// Creates the table on `client`.
pub async fn create_table(client: &Client) -> Result<()> {
    client
        .batch_execute(CREATE_TABLE)
        .await
        .context("creating the events table")
}

/// Every device's connection copies its batches in order, all at once. The connections are
/// handed back: while they are open their backends' CPU time and memory can be read.
pub async fn send_all(
    clients: Vec<Client>,
    loads: &[DeviceLoad],
    batch: usize,
) -> Result<(Timed, Vec<Client>)> {
    let progress = Progress::new(loads.iter().map(|l| l.events).sum(), "PostgreSQL");
    let mut prepared = Vec::new();
    for client in clients {
        let stmt = client.prepare(COPY).await.context("preparing COPY")?;
        prepared.push((client, stmt));
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for ((client, stmt), load) in prepared.into_iter().zip(loads) {
        let (copies, events) = (load.copies.clone(), load.events);
        let progress = progress.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(copies.len());
            for (i, copy) in copies.into_iter().enumerate() {
                check_interrupted()?;
                let count = events.min((i as u64 + 1) * batch as u64) - i as u64 * batch as u64;
                let t0 = Instant::now();
                let mut sink = pin!(
                    client
                        .copy_in::<_, bytes::Bytes>(&stmt)
                        .await
                        .context("COPY")?
                );
                sink.send(copy).await.context("COPY: sending rows")?;
                let rows = sink.as_mut().finish().await.context("COPY: commit")?;
                latencies.push(t0.elapsed());
                ensure!(rows == count, "COPY stored {rows} rows, expected {count}");
                progress.inc(count);
            }
            anyhow::Ok((client, latencies))
        });
    }
    let mut latencies = Vec::new();
    let mut clients = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (client, l) = r.context("a connection task panicked")??;
        latencies.extend(l);
        clients.push(client);
    }
    let wall = start.elapsed();
    progress.finish();
    Ok((Timed { wall, latencies }, clients))
}

/// Rows stored per device: (device, count, highest seq).
pub async fn stored(client: &Client) -> Result<Vec<(String, i64, i64)>> {
    let rows = client
        .query(
            "SELECT device::text, count(*), max(seq) FROM events GROUP BY device",
            &[],
        )
        .await
        .context("counting stored rows")?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .context("reading the counts")
}

/// Bytes of the table with its index.
pub async fn table_bytes(client: &Client) -> Result<i64> {
    let row = client
        .query_one("SELECT pg_total_relation_size('events')", &[])
        .await
        .context("measuring the events table")?;
    Ok(row.try_get(0)?)
}

/// The newest `/usr/lib/postgresql/VERSION/bin` with initdb, pg_ctl and postgres.
fn find_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            ["initdb", "pg_ctl", "postgres"]
                .iter()
                .all(|p| bin.join(p).is_file())
                .then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// `apt-get install -y postgresql`, as root or through `sudo -n`.
fn install() -> Result<()> {
    eprintln!("horde-load: PostgreSQL is not installed; installing the Debian package postgresql");
    let root = effective_uid()? == 0;
    let apt = |args: &[&str]| -> Result<bool> {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        let status = cmd
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .context("running apt-get (is this Debian?)")?;
        Ok(status.success())
    };
    let install = ["install", "-y", "--no-install-recommends", "postgresql"];
    if apt(&install)? || (apt(&["update"])? && apt(&install)?) {
        return Ok(());
    }
    bail!(
        "could not install PostgreSQL: run `apt-get install postgresql` as root (or pass \
         --skip-postgres)"
    )
}

fn effective_uid() -> Result<u32> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse().ok())
        .context("/proc/self/status has no Uid line")
}

/// (uid, gid) of a system user, from /etc/passwd.
fn user_ids(user: &str) -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3
            && f[0] == user
            && let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse())
        {
            return Ok((uid, gid));
        }
    }
    bail!(
        "there is no {user:?} user, which PostgreSQL runs as when horde-load runs as root: \
         reinstall the postgresql package or run horde-load as an ordinary user"
    )
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("appending to {}", path.display()))
}
