//! `horde run -- CMD`: run a command and record everything it did.
//!
//! Order of events: changes made outside horde since the last step (attributed to the user),
//! the session's `TaskEvent` STARTED, the command's changes as they happen, then one final
//! transaction with the last changes, stdout and stderr `Observation`s, the `ToolCall` with
//! exit status and duration, the `TaskEvent` FINISHED or FAILED, and a signed chain head.
//!
//! Completeness: a file watcher (inotify on the directories the scan walked) only says *when*
//! to rescan; every flush is a full scan against the index (cheap: only changed files are
//! hashed), and a last scan after the command exits catches whatever the watcher missed,
//! including changes by child processes. Each flush commits, so a SIGKILL of horde loses at
//! most the changes since the last flush; the next step records them.
//!
//! Signals: while the command runs, SIGINT/SIGQUIT reach it from the terminal and horde waits
//! for it to end; SIGTERM and SIGHUP sent to horde are forwarded to it.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use horde_core::proto::{Observation, TaskEvent, ToolCall, event_body::Payload, task_event};
use horde_core::{Draft, TaskId};
use notify::Watcher;

use crate::record::{Recorder, outside_agent};
use crate::store::{BlobStore, Result, Store, StoreError};

/// Wait at least this long after the last file event before a flush.
const DEBOUNCE: Duration = Duration::from_millis(150);
/// Flushes are at least this far apart, and at least 4 scan durations apart (bounded overhead).
const MIN_FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// After the command exits, wait this long for its output pipes to close (a daemon it started
/// may hold them open forever).
const PIPE_GRACE: Duration = Duration::from_secs(2);
/// The summary of an output stream keeps this many trailing lines.
const SUMMARY_LINES: usize = 10;
const SUMMARY_BYTES: usize = 1024;
/// Arguments kept in the ToolCall event (events are bounded; see MAX_EVENT_BYTES).
const MAX_ARG_BYTES: usize = 4096;
const MAX_ARGS: usize = 256;

pub struct RunOptions {
    pub argv: Vec<OsString>,
    pub agent: Option<String>,
    pub output: Output,
    /// Keys the fingerprints of redacted secrets (`crate::config::fingerprint_key`).
    pub secret_key: horde_policy::secrets::FingerprintKey,
    /// What the policy said before it ran (`horde run --role`), for the ToolCall; empty when
    /// no policy was asked.
    pub policy_verdict: String,
    /// `horde run --sandbox`: the command confined (`Some(None)`: asked for, but run
    /// unsandboxed because of `--unsandboxed` on a machine without a sandbox).
    pub sandbox: Option<Option<horde_sandbox::Prepared>>,
    /// Record file changes as they happen (watcher-triggered scans). Off when the command's
    /// own hooks record them, call by call (`horde run -- claude`): the final scan remains.
    pub flush: bool,
    /// The agent's session the command ran (its hooks record it), for the ToolCall.
    pub session: String,
}

/// How the command's output reaches the user and the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Pipes: stdout and stderr each recorded (the command sees no terminal).
    Pipes,
    /// A pseudo-terminal: the command sees a terminal, the screen output is recorded as one
    /// `terminal` observation (stdout and stderr interleaved, as shown).
    Terminal,
    /// The command gets horde's own stdio; output is not recorded.
    Inherit,
}

#[derive(Debug)]
pub struct RunOutcome {
    /// The exit code horde should pass through: the command's, or 128+signal.
    pub exit_code: i32,
    pub changes: usize,
    pub outside_changes: usize,
    pub events: usize,
    pub skipped: Vec<String>,
    pub warnings: Vec<String>,
    pub spawn_error: Option<String>,
}

struct Capture {
    path: PathBuf,
    done: mpsc::Receiver<()>,
    /// Bytes kept in the spool (at most the capture limit).
    bytes: Arc<AtomicUsize>,
    /// Bytes the command wrote in all.
    total: Arc<AtomicUsize>,
}

/// Copies `src` to `dst` and into a spool file (up to `limit` bytes).
fn tee(
    mut src: impl Read + Send + 'static,
    mut dst: impl Write + Send + 'static,
    spool_dir: &Path,
    limit: u64,
) -> Result<Capture> {
    let (file, path) = tempfile::Builder::new()
        .prefix("out-")
        .tempfile_in(spool_dir)
        .map_err(|e| StoreError::io("cannot create an output spool file", e))?
        .keep()
        .map_err(|e| StoreError::io("cannot keep an output spool file", e.error))?;
    let (tx, done) = mpsc::channel();
    let bytes = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    let (b, t) = (bytes.clone(), total.clone());
    std::thread::Builder::new()
        .name("horde-tee".into())
        .spawn(move || {
            let mut file = file;
            let mut buf = vec![0u8; 64 * 1024];
            let mut kept = 0u64;
            loop {
                let n = match src.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let _ = dst.write_all(&buf[..n]);
                let _ = dst.flush();
                t.fetch_add(n, Ordering::Relaxed);
                let room = limit.saturating_sub(kept) as usize;
                let take = n.min(room);
                if take > 0 && file.write_all(&buf[..take]).is_ok() {
                    kept += take as u64;
                    b.store(kept as usize, Ordering::Release);
                }
            }
            let _ = tx.send(());
        })
        .expect("the OS can start a thread");
    Ok(Capture {
        path,
        done,
        bytes,
        total,
    })
}

/// `s` without terminal escape sequences (colours, cursor moves, titles), for summaries: the
/// blob keeps the bytes as they were.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.next() {
            // CSI: parameters and intermediates up to a final byte in @..~
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: up to BEL or ESC \
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            // Two-byte sequences (ESC =, ESC >, ESC ( B, …): drop the next character.
            _ => {}
        }
    }
    out
}

/// The last lines of a spool file, for the observation's summary.
fn summary_of(data: &[u8]) -> String {
    let buf = &data[data.len().saturating_sub(SUMMARY_BYTES * 4)..];
    let text = strip_ansi(&String::from_utf8_lossy(buf));
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .collect();
    let mut out = lines[lines.len().saturating_sub(SUMMARY_LINES)..].join("\n");
    if out.len() > SUMMARY_BYTES {
        let mut cut = out.len() - SUMMARY_BYTES;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out = format!("…{}", &out[cut..]);
    }
    out
}

fn observation(
    blobs: &BlobStore,
    kind: &str,
    cap: Capture,
    timeline: horde_core::TimelineId,
    agent: &str,
    key: &horde_policy::secrets::FingerprintKey,
) -> Result<(Draft, (horde_core::BlobHash, u64), Vec<Draft>)> {
    let _ = cap.done.recv_timeout(PIPE_GRACE);
    let len = cap.bytes.load(Ordering::Acquire);
    let total = cap.total.load(Ordering::Relaxed).max(len);
    // Hash exactly the bytes counted so far, even if a daemon still writes to the pipe.
    let data = {
        let mut f =
            File::open(&cap.path).map_err(|e| StoreError::io("cannot read the output spool", e))?;
        let mut v = Vec::with_capacity(len);
        (&mut f)
            .take(len as u64)
            .read_to_end(&mut v)
            .map_err(|e| StoreError::io("cannot read the output spool", e))?;
        v
    };
    // The secret never reaches the blob store: redacted before it is hashed and written.
    let (data, found) = crate::redact::redact_bytes(&data, key);
    let summary = summary_of(&data);
    let secrets = crate::redact::finding_events(&found, kind, timeline, agent);
    let hash = blobs.put_bytes(&data)?;
    let _ = std::fs::remove_file(&cap.path);
    let draft = Draft::new(
        timeline,
        agent,
        Payload::Observation(Observation {
            kind: kind.into(),
            summary,
            blob: hash.to_vec(),
            size: total as u64,
            truncated: total > len,
            ..Default::default()
        }),
    );
    Ok((draft, (hash, data.len() as u64), secrets))
}

fn bounded_args(argv: &[OsString]) -> Vec<String> {
    let mut out: Vec<String> = argv
        .iter()
        .take(MAX_ARGS)
        .map(|a| {
            let s = a.to_string_lossy();
            if s.len() > MAX_ARG_BYTES {
                let mut cut = MAX_ARG_BYTES;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                format!("{}…(truncated, {} bytes)", &s[..cut], s.len())
            } else {
                s.into_owned()
            }
        })
        .collect();
    if argv.len() > MAX_ARGS {
        out.push(format!("…({} more arguments)", argv.len() - MAX_ARGS));
    }
    out
}

/// `args` with every secret redacted, and what was found (lines count arguments).
fn redact_args(
    args: &[String],
    key: &horde_policy::secrets::FingerprintKey,
) -> (Vec<String>, Vec<crate::redact::Found>) {
    // Scanned as one text, one argument a line, so `-H 'Authorization: Bearer x'` and
    // `--token x` keep the context their rules need.
    if args.iter().any(|a| a.contains('\n')) {
        let mut out = Vec::with_capacity(args.len());
        let mut found = Vec::new();
        for a in args {
            let (t, f) = crate::redact::redact_str(a, key);
            out.push(t);
            found.extend(f);
        }
        return (out, found);
    }
    let joined = args.join("\n");
    let (text, found) = crate::redact::redact_str(&joined, key);
    if found.is_empty() {
        return (args.to_vec(), found);
    }
    (text.split('\n').map(str::to_owned).collect(), found)
}

/// The command line as one string, for titles.
pub fn display_command(argv: &[OsString]) -> String {
    let s = bounded_args(argv).join(" ");
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &s[..cut])
    } else {
        s
    }
}

/// Runs the command and records it. Errors are horde's own; the command failing is not one.
pub fn run(store: &Store, opts: RunOptions) -> Result<RunOutcome> {
    let program = opts.argv.first().cloned().unwrap_or_default();
    let agent = opts
        .agent
        .clone()
        .or_else(|| store.config.agent.clone())
        .unwrap_or_else(|| {
            Path::new(&program)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "horde-run".into())
        });
    let layout = &store.ledger.layout;
    let mut rec = Recorder::new(store)?;
    let timeline = rec.timeline;
    let mut skipped = Vec::new();
    let mut warnings = Vec::new();

    // 1. What changed while nobody was recording belongs to the user, not to this command.
    let drift = rec.scan()?;
    let mut dirs = drift.dirs.clone();
    let drift_step = rec.commit(drift, &outside_agent(), None, Vec::new(), Vec::new(), false)?;
    let outside_changes = drift_step.changes;
    skipped.extend(drift_step.skipped);
    warnings.extend(drift_step.warnings);

    // 2. The session starts.
    let task_id = TaskId::new();
    // Arguments can carry secrets too (`curl -H "Authorization: Bearer …"`): what is stored
    // of them is redacted.
    let (args, arg_found) = redact_args(&bounded_args(&opts.argv), &opts.secret_key);
    let arg_secrets = crate::redact::finding_events(&arg_found, "args", timeline, &agent);
    let title = crate::redact::redact_str(&display_command(&opts.argv), &opts.secret_key).0;
    let start = Draft::new(
        timeline,
        &agent,
        Payload::Task(TaskEvent {
            task_id: task_id.to_vec(),
            kind: task_event::Kind::Started as i32,
            title: format!("run: {title}"),
            assignee: agent.clone(),
            ..Default::default()
        }),
    );
    let start_id = start.event_id;
    let mut events = drift_step.appended.len();
    let mut changes = 0;
    events += store
        .writer
        .append(crate::store::writer::AppendRequest {
            drafts: vec![start],
            ..Default::default()
        })?
        .appended
        .len();

    // 3. Watch the directories the scan walked (non-recursive: ignored trees cost nothing).
    let (wtx, wrx) = mpsc::channel::<notify::Result<notify::Event>>();
    let mut watcher = if opts.flush {
        notify::recommended_watcher(move |ev| {
            let _ = wtx.send(ev);
        })
        .ok()
    } else {
        None
    };
    let mut watched: HashSet<PathBuf> = HashSet::new();
    let mut watch_dirs = |watcher: &mut Option<notify::RecommendedWatcher>,
                          dirs: &mut Vec<PathBuf>| {
        if let Some(w) = watcher.as_mut() {
            for d in dirs.drain(..) {
                if watched.contains(&d) {
                    continue;
                }
                if let Err(e) = w.watch(&d, notify::RecursiveMode::NonRecursive) {
                    // Out of inotify watches: the final scan still records everything.
                    tracing::debug!(error = %e, dir = %d.display(), "cannot watch directory");
                    continue;
                }
                watched.insert(d);
            }
        }
    };
    watch_dirs(&mut watcher, &mut dirs);

    // 4. Start the command.
    let started = Instant::now();
    let mut sandbox: Option<horde_sandbox::Prepared> = None;
    let mut plain = Command::new(&program);
    let unsandboxed = matches!(opts.sandbox, Some(None));
    let cmd = match opts.sandbox {
        Some(Some(p)) => sandbox.insert(p).command(),
        _ => plain.args(&opts.argv[1..]),
    };
    cmd.stdin(Stdio::inherit());
    let master = match opts.output {
        Output::Pipes => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            None
        }
        Output::Terminal => Some(
            crate::pty::attach(cmd)
                .map_err(|e| StoreError::io("cannot open a pseudo-terminal", e))?,
        ),
        Output::Inherit => None,
    };
    let signals = Arc::new(AtomicUsize::new(0));
    let mut sig_ids = Vec::new();
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGQUIT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        // A handler (unlike SIG_IGN) is reset to the default in the child at exec.
        let s = signals.clone();
        if let Ok(id) = signal_hook::flag::register_usize(sig, s, sig as usize) {
            sig_ids.push(id);
        }
    }
    let winch = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if master.is_some()
        && let Ok(id) = signal_hook::flag::register(signal_hook::consts::SIGWINCH, winch.clone())
    {
        sig_ids.push(id);
    }
    let spawn = match &mut sandbox {
        Some(p) => p.spawn().map_err(|e| std::io::Error::other(e.to_string())),
        None => plain.spawn(),
    };
    // The parent's copies of the pty's slave side must close, or the relay never ends.
    drop(plain);
    let mut raw_mode = None;
    let (status, spawn_error, captures) = match spawn {
        Err(e) => {
            let msg = if sandbox.is_some() {
                format!("not run: {e}")
            } else {
                format!("cannot run {}: {e}", program.to_string_lossy())
            };
            (None, Some(msg), Vec::new())
        }
        Ok(mut child) => {
            let mut captures = Vec::new();
            let spool = |src: Box<dyn Read + Send>, dst: Box<dyn Write + Send>| {
                tee(src, dst, &layout.tmp(), store.config.capture_limit)
            };
            if let Some(master) = &master {
                let io = |e| StoreError::io("cannot use the pseudo-terminal", e);
                raw_mode = crate::pty::RawMode::enter();
                let mut to_command = master.try_clone().map_err(io)?;
                // Keys to the command. The thread outlives the command if stdin stays open;
                // the process ends soon after anyway.
                std::thread::Builder::new()
                    .name("horde-keys".into())
                    .spawn(move || {
                        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_command);
                    })
                    .expect("the OS can start a thread");
                let from_command = master.try_clone().map_err(io)?;
                captures.push((
                    "terminal",
                    spool(Box::new(from_command), Box::new(std::io::stdout()))?,
                ));
            }
            if let Some(out) = child.stdout.take() {
                captures.push(("stdout", spool(Box::new(out), Box::new(std::io::stdout()))?));
            }
            if let Some(err) = child.stderr.take() {
                captures.push(("stderr", spool(Box::new(err), Box::new(std::io::stderr()))?));
            }
            let mut dirty_since: Option<Instant> = None;
            let mut last_flush_end = Instant::now();
            let mut min_interval = MIN_FLUSH_INTERVAL;
            let status = loop {
                match child.try_wait() {
                    Ok(Some(st)) => break Some(st),
                    Ok(None) => {}
                    Err(e) => {
                        warnings.push(format!("cannot wait for the command: {e}"));
                        break None;
                    }
                }
                if let Some(m) = &master
                    && winch.swap(false, Ordering::Relaxed)
                {
                    crate::pty::follow_size(m);
                }
                if let Some(p) = &mut sandbox {
                    let out: usize = captures
                        .iter()
                        .map(|(_, c)| c.total.load(Ordering::Relaxed))
                        .sum();
                    p.check(out as u64);
                }
                let sig = signals.swap(0, Ordering::Relaxed) as i32;
                if sig == signal_hook::consts::SIGTERM || sig == signal_hook::consts::SIGHUP {
                    crate::sys::send_signal(child.id(), sig);
                }
                match wrx.recv_timeout(Duration::from_millis(50)) {
                    Ok(Ok(ev)) => {
                        if ev
                            .paths
                            .iter()
                            .any(|p| !crate::scan::is_internal(&layout.root, p))
                        {
                            dirty_since.get_or_insert_with(Instant::now);
                        }
                    }
                    Ok(Err(_)) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                }
                if let Some(since) = dirty_since
                    && since.elapsed() >= DEBOUNCE
                    && last_flush_end.elapsed() >= min_interval
                {
                    let t0 = Instant::now();
                    let outcome = rec.scan()?;
                    let mut new_dirs = outcome.dirs.clone();
                    let step = rec.commit(
                        outcome,
                        &agent,
                        Some(start_id),
                        Vec::new(),
                        Vec::new(),
                        false,
                    )?;
                    events += step.appended.len();
                    changes += step.changes;
                    skipped.extend(step.skipped);
                    warnings.extend(step.warnings);
                    watch_dirs(&mut watcher, &mut new_dirs);
                    dirty_since = None;
                    last_flush_end = Instant::now();
                    min_interval = MIN_FLUSH_INTERVAL.max(t0.elapsed() * 4);
                }
            };
            (status, None, captures)
        }
    };
    let duration = started.elapsed();
    // The terminal is the user's again before anything else is printed.
    drop(raw_mode);
    drop(watcher);

    // 5. The last scan and the closing events, in one transaction with a signed head.
    let final_scan = rec.scan()?;
    let mut closing = Vec::new();
    let mut extra_blobs = Vec::new();
    for (kind, cap) in captures {
        let (mut d, blob, secrets) = observation(
            &store.ledger.blobs,
            kind,
            cap,
            timeline,
            &agent,
            &opts.secret_key,
        )?;
        d.causation = Some(start_id);
        closing.push(d);
        extra_blobs.push(blob);
        closing.extend(secrets.into_iter().map(|s| s.caused_by(start_id)));
    }
    closing.extend(arg_secrets.iter().cloned().map(|s| s.caused_by(start_id)));
    let sandbox_report = match sandbox {
        Some(p) => {
            let r = p.finish(status.as_ref());
            crate::commands::sandbox::print_report(&r, None);
            Some(crate::commands::sandbox::to_proto(&r))
        }
        None if unsandboxed => Some(horde_core::proto::SandboxReport {
            mechanism: "none (--unsandboxed)".into(),
            ..Default::default()
        }),
        None => None,
    };
    let (exit_code, signal) = match &status {
        Some(st) => {
            use std::os::unix::process::ExitStatusExt;
            match (st.code(), st.signal()) {
                (Some(c), _) => (c, 0),
                (None, Some(s)) => (128 + s, s),
                (None, None) => (1, 0),
            }
        }
        None => (127, 0),
    };
    let summary = match (&spawn_error, signal) {
        (Some(e), _) => e.clone(),
        (None, 0) => format!("exit {exit_code} after {:.2}s", duration.as_secs_f64()),
        (None, s) => format!("killed by signal {s} after {:.2}s", duration.as_secs_f64()),
    };
    let cwd = std::env::current_dir()
        .ok()
        .and_then(|c| {
            c.strip_prefix(&layout.root)
                .ok()
                .map(|r| r.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    closing.push(
        Draft::new(
            timeline,
            &agent,
            Payload::ToolCall(ToolCall {
                tool: "exec".into(),
                args,
                cwd,
                result_summary: summary.clone(),
                exit_code,
                signal,
                duration_ms: duration.as_millis() as u64,
                policy_verdict: opts.policy_verdict.clone(),
                sandbox: sandbox_report,
                session: opts.session.clone(),
                ..Default::default()
            }),
        )
        .caused_by(start_id),
    );
    let ok = spawn_error.is_none() && exit_code == 0;
    closing.push(
        Draft::new(
            timeline,
            &agent,
            Payload::Task(TaskEvent {
                task_id: task_id.to_vec(),
                kind: if ok {
                    task_event::Kind::Finished
                } else {
                    task_event::Kind::Failed
                } as i32,
                title: format!("run: {title}"),
                assignee: agent.clone(),
                detail: summary,
                ..Default::default()
            }),
        )
        .caused_by(start_id),
    );
    let mut final_scan = final_scan;
    final_scan.blobs.extend(extra_blobs);
    let step = rec.commit(
        final_scan,
        &agent,
        Some(start_id),
        Vec::new(),
        closing,
        true,
    )?;
    events += step.appended.len();
    changes += step.changes;
    skipped.extend(step.skipped);
    warnings.extend(step.warnings);
    for id in sig_ids {
        signal_hook::low_level::unregister(id);
    }
    skipped.sort();
    skipped.dedup();
    warnings.sort();
    warnings.dedup();
    Ok(RunOutcome {
        exit_code,
        changes,
        outside_changes,
        events,
        skipped,
        warnings,
        spawn_error,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ansi_sequences_leave_summaries() {
        let raw = "\x1b[1;32mok\x1b[0m done\x1b]0;title\x07 \x1b[2Kend";
        assert_eq!(super::strip_ansi(raw), "ok done end");
    }
}
