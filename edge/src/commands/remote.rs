//! The commands that talk to a cloud: `remote`, `sync`, `clone`, and the conflict commands
//! `conflicts` and `resolve`. The protocol is in [`crate::sync`], the tree side in
//! [`crate::merge`]; this module wires them to the repository, the terminal and the clock.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use horde_core::{DeviceKey, ProjectId, TimelineId};
use rusqlite::{Connection, params};
use serde_json::json;

use crate::approvals::Applied;
use crate::merge::{self, MergeReport};
use crate::output::local_time;
use crate::store::Store;
use crate::sync::client::RemoteDecision;
pub use crate::sync::remotes::{Remote, remotes};
use crate::sync::remotes::{api_key, runtime};
use crate::sync::{Client, HttpTransport, Progress, Report, SyncError, Syncer, backoff};

/// Attempts of a one-shot sync before it gives up on a transient error.
pub const ONE_SHOT_ATTEMPTS: u32 = 4;
/// Longest wait between attempts in `sync --watch`.
pub const WATCH_MAX_BACKOFF: Duration = Duration::from_secs(60);

fn check_url(url: &str) -> Result<String> {
    let u = url.trim().trim_end_matches('/');
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
        .with_context(|| {
            format!("{url:?} is not a cloud URL: it must start with http:// or https://")
        })?;
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        bail!(
            "{url:?} is not a cloud URL (e.g. https://horde.example.com or http://127.0.0.1:8080)"
        );
    }
    Ok(u.to_owned())
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        bail!("remote name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'");
    }
    Ok(())
}

pub fn add_remote(conn: &Connection, name: &str, url: &str, key: Option<&str>) -> Result<Remote> {
    check_name(name)?;
    let url = check_url(url)?;
    if let Some(k) = key
        && (k.trim().is_empty() || k.contains(char::is_whitespace))
    {
        bail!("the API key is empty or contains spaces");
    }
    let existing = remotes(conn)?;
    if let Some(r) = existing.iter().find(|r| r.name == name) {
        bail!(
            "remote {name} exists already ({}); `horde remote remove {name}` first",
            r.url
        );
    }
    if let Some(r) = existing.first() {
        bail!(
            "this repository syncs with remote {} ({}) already; a project syncs with one cloud",
            r.name,
            r.url
        );
    }
    conn.execute(
        "INSERT INTO remotes (name, url, api_key, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![name, url, key, horde_core::time::now_micros()],
    )?;
    Ok(Remote {
        name: name.to_owned(),
        url,
        api_key: key.map(str::to_owned),
    })
}

/// The remote to use: the named one, or the only one.
pub fn pick_remote(conn: &Connection, name: Option<&str>) -> Result<Remote> {
    let all = remotes(conn)?;
    match name {
        Some(n) => all
            .into_iter()
            .find(|r| r.name == n)
            .with_context(|| format!("no remote named {n} (see `horde remote list`)")),
        None => all.into_iter().next().context(
            "no remote: add one with `horde remote add origin URL --key KEY` (or set HORDE_API_KEY)",
        ),
    }
}

fn syncer(store: &Store, remote: &Remote) -> Result<Syncer<HttpTransport>> {
    let transport = HttpTransport::new(&remote.url, &api_key(remote)?)?;
    let conn = crate::store::connect(&store.ledger.layout.db(), false)?;
    let key = DeviceKey::load(&crate::config::device_key_path())?;
    Ok(Syncer::new(
        conn,
        store.ledger.blobs.clone(),
        store.ledger.meta,
        key,
        Client::new(transport, store.ledger.meta.project),
        &remote.name,
    )?)
}

/// A progress bar on stderr (terminal only).
struct Bar {
    bar: Option<indicatif::ProgressBar>,
    phase: RefCell<&'static str>,
}

impl Bar {
    fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:>14} {bar:30} {pos}/{len} ({elapsed})",
                )
                .expect("the template is valid"),
            );
            b
        });
        Self {
            bar,
            phase: RefCell::new(""),
        }
    }
}

impl Progress for Bar {
    fn phase(&self, name: &'static str, total: u64) {
        *self.phase.borrow_mut() = name;
        if let Some(b) = &self.bar {
            b.set_message(name);
            b.set_length(total);
            b.set_position(0);
        }
    }
    fn advance(&self, n: u64) {
        if let Some(b) = &self.bar {
            if b.length().unwrap_or(0) < b.position() + n {
                b.set_length(b.position() + n);
            }
            b.inc(n);
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// One sync with retries on transient errors (`attempts` = None: forever, for `--watch`).
async fn sync_with_retries(
    s: &mut Syncer<HttpTransport>,
    progress: &dyn Progress,
    attempts: Option<u32>,
    quiet: bool,
) -> Result<Report, SyncError> {
    let mut attempt = 0;
    let device = s.key.device_id();
    let mut left = crate::sync::pending(&s.conn, device, Some(&s.remote))?;
    loop {
        match s.sync_once(progress).await {
            Ok(r) => return Ok(r),
            Err(e) if e.is_transient() && attempts.is_none_or(|n| attempt + 1 < n) => {
                // An attempt that got events through was not a failure of the network.
                let now_left = crate::sync::pending(&s.conn, device, Some(&s.remote))?;
                if now_left < left {
                    attempt = 0;
                }
                left = now_left;
                let cap = if attempts.is_some() {
                    Duration::from_secs(8)
                } else {
                    WATCH_MAX_BACKOFF
                };
                let wait = e
                    .retry_after()
                    .unwrap_or_else(|| backoff(attempt, Duration::from_millis(500), cap));
                if !quiet {
                    eprintln!("horde: {e}; retrying in {:.1} s", wait.as_secs_f64());
                }
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One sync with a progress bar and [`ONE_SHOT_ATTEMPTS`] attempts.
fn one_shot(
    rt: &tokio::runtime::Runtime,
    s: &mut Syncer<HttpTransport>,
    quiet: bool,
) -> Result<Report, SyncError> {
    let bar = Bar::new(quiet);
    rt.block_on(sync_with_retries(s, &bar, Some(ONE_SHOT_ATTEMPTS), quiet))
}

/// `horde sync`: push, pull, merge into the tree, push what the merge recorded.
pub fn cmd_sync(
    remote: Option<&str>,
    watch: bool,
    interval: u64,
    no_merge: bool,
    json_out: bool,
) -> Result<ExitCode> {
    let store = crate::session::open_store()?;
    let remote = pick_remote(&store.ledger.conn, remote)?;
    let mut s = syncer(&store, &remote)?;
    let rt = runtime()?;
    if !no_merge {
        // What is in the tree and not recorded yet goes out with this sync.
        let mut rec = crate::record::Recorder::new(&store)?;
        let step = rec.step(&crate::record::outside_agent(), None, Vec::new(), false)?;
        if step.changes > 0 && !json_out {
            println!("Recorded {} changes in the tree first.", step.changes);
        }
    }
    if !watch {
        let report = one_shot(&rt, &mut s, json_out)?;
        let merged = finish_round(&store, &remote, &rt, &mut s, no_merge)?;
        print_round(&remote, &report, merged.as_ref(), json_out)?;
        match rt.block_on(s.client.decisions(None)) {
            Ok(list) => {
                let recorded = record_decisions(&store, &list, json_out)?;
                if recorded > 0 {
                    let mut r = Report::default();
                    rt.block_on(s.push(&mut r, &crate::sync::NoProgress))?;
                }
            }
            Err(e) => eprintln!("warning: cannot read approval decisions from the cloud: {e}"),
        }
        let open = merged.as_ref().map_or(0, |m| m.conflicts.len());
        return Ok(if open > 0 {
            ExitCode::from(crate::session::EXIT_INCOMPLETE)
        } else {
            ExitCode::SUCCESS
        });
    }
    eprintln!(
        "horde: syncing with {} ({}) as events are written; Ctrl-C stops",
        remote.name, remote.url
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .context("cannot install a signal handler")?;
    }
    let stopped = || stop.load(std::sync::atomic::Ordering::Relaxed);
    let decisions = follow_decisions(&remote, store.ledger.meta.project)?;
    let mut last_seen = data_version(&s.conn)?;
    let mut last_round = Instant::now() - Duration::from_secs(interval);
    let mut failures = 0u32;
    while !stopped() {
        let live: Vec<RemoteDecision> = decisions.try_iter().collect();
        if !live.is_empty() {
            // Recorded here, then sent by this round like any other event.
            record_decisions(&store, &live, json_out)?;
        }
        let changed = data_version(&s.conn)? != last_seen;
        if changed || last_round.elapsed() >= Duration::from_secs(interval) {
            last_seen = data_version(&s.conn)?;
            last_round = Instant::now();
            match rt.block_on(s.sync_once(&crate::sync::NoProgress)) {
                Ok(report) => {
                    failures = 0;
                    let merged = finish_round(&store, &remote, &rt, &mut s, no_merge)?;
                    if report.pushed + report.pulled > 0
                        || merged.as_ref().is_some_and(|m| m.applied > 0)
                    {
                        print_round(&remote, &report, merged.as_ref(), json_out)?;
                    }
                    last_seen = data_version(&s.conn)?;
                    // Events written here while the round ran (another process's commit
                    // lands in the same `data_version` as our own) go out with the next tick.
                    let device = s.key.device_id();
                    if crate::sync::pending(&s.conn, device, Some(&s.remote))? > 0 {
                        last_seen = last_seen.wrapping_sub(1);
                    }
                }
                Err(e) if e.is_transient() => {
                    let wait = e.retry_after().unwrap_or_else(|| {
                        backoff(failures, Duration::from_secs(1), WATCH_MAX_BACKOFF)
                    });
                    eprintln!(
                        "horde: {e}; next attempt in {:.0} s",
                        wait.as_secs_f64().ceil()
                    );
                    failures += 1;
                    sleep_unless(&stopped, wait);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        sleep_unless(&stopped, Duration::from_millis(250));
    }
    Ok(ExitCode::SUCCESS)
}

/// Follows the cloud's live decision stream on a thread of its own (reconnecting from the last
/// cursor with backoff), handing each decision to the watch loop.
fn follow_decisions(
    remote: &Remote,
    project: horde_core::ProjectId,
) -> Result<std::sync::mpsc::Receiver<RemoteDecision>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let transport = HttpTransport::new(&remote.url, &api_key(remote)?)?;
    let rt = runtime()?;
    std::thread::Builder::new()
        .name("horde-decisions".into())
        .spawn(move || {
            let mut cursor: Option<String> = None;
            let mut failures = 0u32;
            loop {
                let from = cursor.clone();
                let result =
                    rt.block_on(transport.follow_decisions(project, from.as_deref(), |d| {
                        cursor = Some(d.cursor.clone());
                        // The watch loop has ended: so does this thread, at its next decision.
                        let _ = tx.send(d);
                    }));
                match result {
                    Ok(()) => failures = 0,
                    Err(e) if e.is_transient() => failures += 1,
                    Err(e) => {
                        // A cloud without the endpoint, a revoked key: approvals from other
                        // devices wait for the next one-shot `horde sync`.
                        eprintln!("horde: not following approval decisions from the cloud: {e}");
                        return;
                    }
                }
                std::thread::sleep(backoff(
                    failures,
                    Duration::from_millis(500),
                    WATCH_MAX_BACKOFF,
                ));
            }
        })
        .context("cannot start the decision-following thread")?;
    Ok(rx)
}

/// Records decisions taken in the cloud on this device's requests; returns how many.
fn record_decisions(store: &Store, list: &[RemoteDecision], json_out: bool) -> Result<usize> {
    let device = store.device.to_string();
    let mut recorded = 0;
    for d in list {
        match crate::approvals::apply_remote(store, &device, d)? {
            Applied::Recorded(r) => {
                recorded += 1;
                if json_out {
                    println!("{}", json!({"approval": r}));
                } else {
                    println!(
                        "Approval {} {} by {} in the cloud: {} {}",
                        &r.id[..8],
                        r.state,
                        d.by,
                        r.action,
                        r.subject
                    );
                }
            }
            Applied::NotOurs => {}
            Applied::Refused(why) => {
                eprintln!(
                    "horde: the cloud's decision on {} by {} is not recorded: {why}",
                    d.request_id, d.by
                );
            }
        }
    }
    Ok(recorded)
}

fn sleep_unless(stopped: &dyn Fn() -> bool, d: Duration) {
    let end = Instant::now() + d;
    while !stopped() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100).min(end - Instant::now()));
    }
}

/// Changes whenever another connection commits (SQLite's `data_version`).
fn data_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA data_version", [], |r| r.get(0))?)
}

/// The tree side of a round: merge what was pulled, then send what that recorded.
fn finish_round(
    store: &Store,
    remote: &Remote,
    rt: &tokio::runtime::Runtime,
    s: &mut Syncer<HttpTransport>,
    no_merge: bool,
) -> Result<Option<MergeReport>> {
    if no_merge {
        return Ok(None);
    }
    let m = merge::merge_pulled(store, &remote.name)?;
    if m.recorded + m.recorded_local > 0 {
        let mut r = Report::default();
        rt.block_on(s.push(&mut r, &crate::sync::NoProgress))?;
    }
    Ok(Some(m))
}

fn print_round(remote: &Remote, r: &Report, m: Option<&MergeReport>, json_out: bool) -> Result<()> {
    if json_out {
        println!(
            "{}",
            json!({"remote": remote.name, "url": remote.url, "sync": r, "merge": m})
        );
        return Ok(());
    }
    let mut parts = vec![format!("sent {} events in {} batches", r.pushed, r.batches)];
    if r.skipped > 0 {
        parts.push(format!("{} were there already", r.skipped));
    }
    if r.blobs_uploaded > 0 {
        parts.push(format!("uploaded {} blobs", r.blobs_uploaded));
    }
    parts.push(format!("received {} events", r.pulled));
    if r.blobs_downloaded > 0 {
        parts.push(format!("downloaded {} blobs", r.blobs_downloaded));
    }
    println!(
        "Synced with {} ({}): {}.",
        remote.name,
        remote.url,
        parts.join(", ")
    );
    if r.blobs_unavailable > 0 {
        println!(
            "warning: {} blobs named by other devices' events are not in the cloud (their devices have not uploaded them)",
            r.blobs_unavailable
        );
    }
    if let Some(m) = m {
        if m.recorded_local > 0 {
            println!("Recorded {} local changes first.", m.recorded_local);
        }
        if m.applied > 0 {
            println!(
                "Merged other devices' work into the tree: {} paths changed.",
                m.applied
            );
        }
        for s in &m.skipped {
            println!("warning: {s}");
        }
        for c in &m.conflicts {
            let what = match c.head.as_str() {
                "merged" => "both edits merged (three-way)".to_owned(),
                "theirs" => format!(
                    "kept theirs (device {}, later)",
                    crate::session::short_device(&c.theirs.device)
                ),
                _ => "kept ours (later)".to_owned(),
            };
            println!(
                "CONFLICT {}: changed here and on device {}; {what}",
                c.path,
                crate::session::short_device(&c.theirs.device)
            );
        }
        if !m.conflicts.is_empty() {
            println!(
                "See `horde conflicts`; `horde resolve PATH --take ours|theirs|FILE` settles one."
            );
        }
    }
    Ok(())
}

pub fn cmd_remote_add(name: &str, url: &str, key: Option<String>) -> Result<ExitCode> {
    let ledger = crate::session::open_ledger()?;
    let r = add_remote(&ledger.conn, name, url, key.as_deref())?;
    let key_note = if r.api_key.is_some() {
        "with its API key stored in .horde/horde.db"
    } else {
        "without a key: set HORDE_API_KEY when syncing"
    };
    println!(
        "Added remote {} ({}), {key_note}. `horde sync` sends this project there.",
        r.name, r.url
    );
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_remote_list(json_out: bool) -> Result<ExitCode> {
    let ledger = crate::session::open_ledger()?;
    let all = remotes(&ledger.conn)?;
    if json_out {
        let v: Vec<_> = all
            .iter()
            .map(|r| json!({"name": r.name, "url": r.url, "has_key": r.api_key.is_some()}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if all.is_empty() {
        println!("No remotes. `horde remote add origin URL --key KEY` adds one.");
    } else {
        for r in all {
            println!("{}\t{}", r.name, r.url);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_remote_remove(name: &str) -> Result<ExitCode> {
    let ledger = crate::session::open_ledger()?;
    let n = ledger
        .conn
        .execute("DELETE FROM remotes WHERE name = ?1", [name])?;
    if n == 0 {
        bail!("no remote named {name} (see `horde remote list`)");
    }
    ledger
        .conn
        .execute("DELETE FROM sync_state WHERE remote = ?1", [name])?;
    // What the cloud acknowledged stays marked; a new remote is a new cloud.
    println!("Removed remote {name}.");
    Ok(ExitCode::SUCCESS)
}

pub fn print_status(v: &serde_json::Value) {
    if v.is_null() {
        println!("remote     none (`horde remote add origin URL --key KEY`)");
        return;
    }
    let reach = match v["reachable"].as_bool() {
        Some(true) => "reachable".to_owned(),
        Some(false) => format!("UNREACHABLE ({})", v["reach_error"].as_str().unwrap_or("")),
        None => format!("not checked ({})", v["reach_error"].as_str().unwrap_or("")),
    };
    println!(
        "remote     {} {} — {reach}",
        v["name"].as_str().unwrap_or(""),
        v["url"].as_str().unwrap_or("")
    );
    println!("to send    {} events", v["pending_events"]);
    let when = |k: &str| {
        v[k].as_str()
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
            .map(|t| local_time(t.as_microsecond()))
    };
    match when("last_success_at") {
        Some(t) => println!("last sync  {t}"),
        None => println!("last sync  never"),
    }
    if let Some(e) = v["last_error"].as_str() {
        println!("last error {e}");
    }
    if v["open_conflicts"].as_i64().unwrap_or(0) > 0 {
        println!(
            "conflicts  {} open (`horde conflicts`)",
            v["open_conflicts"]
        );
    }
}

/// `horde clone URL PROJECT [DIR]`.
pub fn cmd_clone(
    url: &str,
    project: &str,
    dir: Option<PathBuf>,
    key: Option<String>,
    json_out: bool,
) -> Result<ExitCode> {
    let url = check_url(url)?;
    let project: ProjectId = project.parse().map_err(|_| {
        anyhow::anyhow!(
            "project {project:?} is not a project id (a UUID, as `horde status` shows it)"
        )
    })?;
    let key = match key.or_else(|| {
        std::env::var("HORDE_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())
    }) {
        Some(k) => k,
        None => return Err(SyncError::NoKey.into()),
    };
    let dir = dir.unwrap_or_else(|| PathBuf::from(project.to_string()));
    ensure_empty_dir(&dir)?;
    let rt = runtime()?;
    // Ask first: a wrong URL, key or project leaves nothing behind.
    let client = Client::new(HttpTransport::new(&url, &key)?, project);
    let info = rt
        .block_on(client.project())
        .with_context(|| format!("cannot clone project {project} from {url}"))?;
    let main: TimelineId = info["main_timeline"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("the cloud's project has no main timeline id")?;
    let created = !dir.exists();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = (|| -> Result<(Store, Report, MergeReport)> {
        let store = Store::init_as(&dir, crate::session::load_key()?, project, main)?;
        store.ledger.conn.execute(
            "INSERT OR IGNORE INTO timelines (id, created_at, published) VALUES (?1, ?2, 1)",
            params![main.as_bytes(), horde_core::time::now_micros()],
        )?;
        let remote = add_remote(&store.ledger.conn, "origin", &url, Some(&key))?;
        let mut s = syncer(&store, &remote)?;
        let report = one_shot(&rt, &mut s, json_out)?;
        let merged = merge::merge_pulled(&store, &remote.name)?;
        let mut r = Report::default();
        rt.block_on(s.push(&mut r, &crate::sync::NoProgress))?;
        Ok((store, report, merged))
    })();
    let (store, report, merged) = match result {
        Ok(x) => x,
        Err(e) => {
            // Nothing half-made stays: the directory goes back to how it was.
            let _ = std::fs::remove_dir_all(dir.join(crate::store::HORDE_DIR));
            if created {
                let _ = std::fs::remove_dir_all(&dir);
            }
            return Err(e);
        }
    };
    let files = crate::store::read::load_worktree(&store.ledger.conn, main)?.len();
    if json_out {
        println!(
            "{}",
            json!({"project": project.to_string(), "dir": dir.display().to_string(),
                   "events": report.pulled, "blobs": report.blobs_downloaded, "entries": files,
                   "blobs_unavailable": report.blobs_unavailable, "withheld": merged.withheld})
        );
    } else {
        println!(
            "Cloned project {project} into {}: {} events from {} , {} files and directories.",
            dir.display(),
            report.pulled,
            url,
            files
        );
        if report.blobs_unavailable > 0 || !merged.skipped.is_empty() {
            println!(
                "warning: {} blobs were not in the cloud; {} paths could not be written",
                report.blobs_unavailable,
                merged.skipped.len()
            );
        }
        for p in &merged.withheld {
            println!("withheld: {p} (its content stays on the device that recorded it)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn ensure_empty_dir(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut it) => {
            if it.next().is_some() {
                bail!(
                    "{} exists and is not empty; clone into a new or empty directory",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", dir.display()))),
    }
}

pub fn cmd_conflicts(all: bool, json_out: bool) -> Result<ExitCode> {
    let store = crate::session::open_store()?;
    let list = merge::list_conflicts(&store, all)?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("No {}conflicts.", if all { "" } else { "open " });
        return Ok(ExitCode::SUCCESS);
    }
    for c in &list {
        let state = match &c.resolved_by {
            Some(e) => format!("resolved by {}", &e[..13]),
            None => "open".into(),
        };
        println!("{}  ({state}; the tree has {})", c.path, c.head);
        for (label, s) in [("ours  ", &c.ours), ("theirs", &c.theirs)] {
            println!(
                "    {label} device {} #{} by {} at {}: {}",
                crate::session::short_device(&s.device),
                s.seq,
                s.agent,
                local_time(s.occurred_at),
                if s.content.len() == 64 {
                    &s.content[..12]
                } else {
                    &s.content
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_resolve(path: &str, take: &str, json_out: bool) -> Result<ExitCode> {
    let store = crate::session::open_store()?;
    let choice = match take {
        "ours" => merge::Take::Ours,
        "theirs" => merge::Take::Theirs,
        f => {
            let p = PathBuf::from(f);
            if !p.is_file() {
                bail!(
                    "--take {f:?}: say ours, theirs, or the path of a file with the resolved content"
                );
            }
            merge::Take::File(p)
        }
    };
    let agent = crate::record::outside_agent();
    let (c, step) = merge::resolve(&store, path, choice, &agent)?;
    if json_out {
        println!(
            "{}",
            json!({"path": c.path, "took": take, "events": step.appended.iter().map(|a| a.id.to_string()).collect::<Vec<_>>()})
        );
    } else {
        println!(
            "Resolved {}: took {take}; recorded as {} events.",
            c.path,
            step.appended.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
