//! The horde-cloud side: start the real binary on a fresh embedded store, sign up a tenant,
//! create a project, register the devices, then each device posts its batches in order on its
//! own keep-alive connection while the batch latencies are recorded.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use horde_core::proto::SyncAck;
use horde_core::{DeviceId, DeviceKey, ProjectId, TimelineId};
use prost::Message;
use serde_json::{Value, json};

use crate::workload::DeviceLoad;
use crate::{Progress, Timed, check_interrupted};

/// Where `cargo build --release -p horde-cloud` puts the binary: beside this one.
pub fn find_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        ensure!(p.is_file(), "--cloud-bin {}: no such file", p.display());
        return Ok(p.to_owned());
    }
    let exe = std::env::current_exe().context("locating horde-load's own executable")?;
    let dir = exe
        .parent()
        .context("horde-load's executable has no directory")?;
    let dir = if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    let path = dir.join("horde-cloud");
    ensure!(
        path.is_file(),
        "{} is missing: build it first with `cargo build --release -p horde-cloud` (or pass --cloud-bin)",
        path.display()
    );
    Ok(path)
}

/// A running `horde-cloud serve`, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Cloud {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    pub url: String,
    pub dir: PathBuf,
    log: PathBuf,
}

impl Cloud {
    /// Starts `bin` with its store and blobs in `dir`, rate limits raised for the load.
    pub fn start(bin: &Path, dir: &Path) -> Result<Cloud> {
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
            dir: dir.to_owned(),
            log,
        };
        match line.trim().strip_prefix("horde-cloud listening on ") {
            Some(url) => cloud.url = url.to_owned(),
            None => bail!(
                "horde-cloud did not start (first line {line:?}); its log:\n{}",
                cloud.log_text()
            ),
        }
        Ok(cloud)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Bytes of the embedded store (database, WAL, shared memory index).
    pub fn store_bytes(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("cloud.db"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    /// SIGTERM and wait (at most 30 s).
    pub fn stop(&mut self) -> Result<()> {
        signal(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for horde-cloud")? {
                ensure!(
                    status.success(),
                    "horde-cloud exited with {status}; its log:\n{}",
                    self.log_text()
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

/// The tenant the load runs as.
pub struct Tenant {
    http: reqwest::Client,
    pub url: String,
    pub key: String,
    pub project: ProjectId,
    pub timeline: TimelineId,
}

fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(1)
        .build()
        .context("building the HTTP client")
}

async fn json_call(req: reqwest::RequestBuilder, what: &str, want: u16) -> Result<Value> {
    let r = req
        .send()
        .await
        .with_context(|| format!("{what}: request"))?;
    let status = r.status().as_u16();
    let body = r
        .text()
        .await
        .with_context(|| format!("{what}: response"))?;
    ensure!(
        status == want,
        "{what}: HTTP {status} (wanted {want}): {body}"
    );
    serde_json::from_str(&body).with_context(|| format!("{what}: the answer is not JSON: {body}"))
}

fn field<'a>(v: &'a Value, name: &str, what: &str) -> Result<&'a str> {
    v[name]
        .as_str()
        .with_context(|| format!("{what}: no {name:?} in {v}"))
}

/// Signs up a tenant and creates the project.
pub async fn setup(url: &str) -> Result<Tenant> {
    let http = client()?;
    let signup = json_call(
        http.post(format!("{url}/v1/signup")).json(&json!({
            "tenant": format!("load-{}", horde_core::EventId::new()),
            "email": "load@example.com",
        })),
        "signup",
        201,
    )
    .await?;
    let key = field(&signup, "api_key", "signup")?.to_owned();
    let project = json_call(
        http.post(format!("{url}/v1/projects"))
            .bearer_auth(&key)
            .json(&json!({ "name": "horde-load" })),
        "create project",
        201,
    )
    .await?;
    Ok(Tenant {
        http,
        url: url.to_owned(),
        project: field(&project, "id", "create project")?
            .parse()
            .context("project id")?,
        timeline: field(&project, "main_timeline", "create project")?
            .parse()
            .context("main timeline id")?,
        key,
    })
}

impl Tenant {
    pub async fn register(&self, key: &DeviceKey, name: &str) -> Result<()> {
        json_call(
            self.http
                .post(format!("{}/v1/devices", self.url))
                .bearer_auth(&self.key)
                .json(&json!({
                    "id": key.device_id().to_string(),
                    "public_key": hex(&key.public_key()),
                    "name": name,
                })),
            "register device",
            201,
        )
        .await?;
        Ok(())
    }

    /// The cloud's `acked_seq` for `device`.
    pub async fn acked_seq(&self, device: DeviceId) -> Result<u64> {
        let v = json_call(
            self.http
                .get(format!(
                    "{}/v1/projects/{}/devices/{device}/cursor",
                    self.url, self.project
                ))
                .bearer_auth(&self.key),
            "device cursor",
            200,
        )
        .await?;
        v["acked_seq"]
            .as_u64()
            .with_context(|| format!("device cursor: no acked_seq in {v}"))
    }

    /// Every device sends its batches in order, all devices at once.
    pub async fn send_all(&self, loads: &[DeviceLoad], batch: usize) -> Result<Timed> {
        let progress = Progress::new(loads.iter().map(|l| l.events).sum(), "horde-cloud");
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for load in loads {
            let url = format!("{}/v1/projects/{}/sync", self.url, self.project);
            let (key, batches, events) = (self.key.clone(), load.batches.clone(), load.events);
            let device = load.key.device_id();
            let progress = progress.clone();
            tasks.spawn(async move {
                let http = client()?;
                let mut latencies = Vec::with_capacity(batches.len());
                for (i, body) in batches.into_iter().enumerate() {
                    check_interrupted()?;
                    let last_seq = events.min((i as u64 + 1) * batch as u64);
                    let count = last_seq - i as u64 * batch as u64;
                    let t0 = Instant::now();
                    let r = http
                        .post(&url)
                        .bearer_auth(&key)
                        .header("content-type", "application/x-protobuf")
                        .body(body)
                        .send()
                        .await
                        .with_context(|| format!("device {device} batch {i}: request"))?;
                    let status = r.status();
                    let bytes = r
                        .bytes()
                        .await
                        .with_context(|| format!("device {device} batch {i}: response"))?;
                    latencies.push(t0.elapsed());
                    ensure!(
                        status.as_u16() == 200,
                        "device {device} batch {i}: HTTP {status}: {}",
                        String::from_utf8_lossy(&bytes)
                    );
                    let ack = SyncAck::decode(bytes)
                        .with_context(|| format!("device {device} batch {i}: SyncAck"))?;
                    ensure!(
                        ack.acked_seq == last_seq
                            && ack.skipped == 0
                            && ack.versionstamps.len() as u64 == count,
                        "device {device} batch {i}: acked_seq {} skipped {} with {} versionstamps; \
                         expected acked_seq {last_seq}, nothing skipped, {count} versionstamps",
                        ack.acked_seq,
                        ack.skipped,
                        ack.versionstamps.len()
                    );
                    progress.inc(count);
                }
                anyhow::Ok(latencies)
            });
        }
        let mut latencies = Vec::new();
        while let Some(r) = tasks.join_next().await {
            latencies.extend(r.context("a device task panicked")??);
        }
        let wall = start.elapsed();
        progress.finish();
        Ok(Timed { wall, latencies })
    }

    /// The server's own time on sync requests: (requests, seconds in total), from `/metrics`.
    pub async fn server_sync_time(&self) -> Result<(f64, f64)> {
        let text = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .context("GET /metrics")?
            .text()
            .await
            .context("GET /metrics: body")?;
        let metric = |suffix: &str| {
            text.lines()
                .filter(|l| {
                    l.starts_with(&format!("horde_http_request_duration_seconds{suffix}{{"))
                        && l.contains("route=\"/v1/projects/{id}/sync\"")
                })
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum::<f64>()
        };
        Ok((metric("_count"), metric("_sum")))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
