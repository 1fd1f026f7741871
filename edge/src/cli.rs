//! The `horde` command line: argument parsing and the commands. `main.rs` only calls [`main`].
//!
//! Exit codes: 0 success; 1 failure (including `verify` finding tampering); 2 usage errors;
//! `horde run` passes the command's exit code through (128+N when killed by signal N, 127 when
//! it could not be started), except that when the command succeeded but some paths could not
//! be recorded it exits 3.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use horde_core::{
    BlobHash, DeviceKey, EventHash, PAYLOAD_KINDS, RepoPath, decode_event, referenced_blobs,
};
use serde_json::json;

use crate::config::device_key_path;
use crate::output::{Paint, colour_enabled, human_bytes, local_time, summary};
use crate::store::read::{self, LogFilter};
use crate::store::{Layout, Ledger, Store};

/// Exit code of `horde run` when the command succeeded but part of its effect was not recorded.
pub const EXIT_INCOMPLETE: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "horde",
    version,
    about = "Record, verify and rewind everything coding agents do to a repository",
    long_about = "Code Horde records every change agents and commands make to a repository as \
signed, hash-chained events in .horde/ (SQLite, works offline).\n\n\
Start with `horde demo` for a tour, or `horde init` in a repository, then `horde run -- <command>`."
)]
pub struct Cli {
    /// Run as if started in DIR.
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create .horde/ here and record the whole tree as the first checkpoint.
    Init {
        #[arg(long)]
        json: bool,
    },
    /// Run a command and record everything it does: output, exit status, every file change.
    #[command(trailing_var_arg = true)]
    Run(RunArgs),
    /// Record the changes in the tree since the last step (e.g. from an agent's hook).
    Snapshot {
        /// A note recorded with the step.
        #[arg(short, long)]
        message: Option<String>,
        /// Who made these changes (default: $HORDE_AGENT, else $USER).
        #[arg(long, env = "HORDE_AGENT")]
        agent: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show recorded events, newest first.
    Log(LogArgs),
    /// Show one event in full, with a preview of the blobs it refers to.
    Show {
        /// An event id, a unique prefix of one, or a seq number (`12` or `#12`) of this device.
        event: String,
        #[arg(long)]
        json: bool,
    },
    /// Summarize the ledger: events, unsynced events, last signed chain head, unrecorded changes.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Check every hash chain, every signed chain head and every referenced blob.
    Verify {
        /// Also read every referenced blob and check its content against its hash.
        #[arg(long)]
        deep: bool,
        #[arg(long)]
        json: bool,
    },
    /// Put the tree back as it was at a point (in place, recorded as a new step), or write a
    /// copy of that tree into another directory with --to.
    Restore(RestoreArgs),
    /// What changed between two points: added, deleted, modified, mode and type changes.
    Diff {
        /// The earlier point (same forms as `restore --at`).
        from: String,
        /// The later point (default: HEAD, the last event of this timeline).
        to: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Every recorded version of one path on this timeline, oldest first.
    History {
        path: String,
        #[arg(long)]
        json: bool,
    },
    /// Start a new timeline from a point: the tree goes back to that point and recording
    /// continues on the new timeline (the old one keeps its history; `horde timeline switch`
    /// goes back to it).
    Fork {
        /// Where to fork (same forms as `restore --at`).
        #[arg(long, value_name = "POINT")]
        at: String,
        /// A name for the new timeline.
        #[arg(long)]
        name: Option<String>,
        /// Discard unrecorded changes in the tree instead of refusing.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// List the timelines of this repository, or switch to another one.
    Timeline {
        #[command(subcommand)]
        command: TimelineCommand,
    },
    /// The cloud this project syncs with (one per repository).
    Remote {
        #[command(subcommand)]
        command: RemoteCommand,
    },
    /// Send this device's events to the cloud, fetch the other devices' events, and merge
    /// their work into the tree (conflicts are listed by `horde conflicts`).
    Sync {
        /// Which remote (default: the only one).
        #[arg(long)]
        remote: Option<String>,
        /// Keep running: sync whenever events are written here, and every --interval seconds.
        #[arg(long)]
        watch: bool,
        /// With --watch: seconds between pulls when nothing is written here.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86400))]
        interval: u64,
        /// Only exchange events; leave the tree as it is.
        #[arg(long)]
        no_merge: bool,
        #[arg(long)]
        json: bool,
    },
    /// Join a project from the cloud on this device: register, fetch every event and the
    /// blobs needed, and write the head of the main timeline into DIR.
    Clone {
        /// The cloud, e.g. https://horde.example.com
        url: String,
        /// The project id (`horde status` on a device that has it).
        project: String,
        /// Where to put it (new or empty; default: the project id).
        #[arg(value_name = "DIR")]
        directory: Option<PathBuf>,
        /// The API key (default: $HORDE_API_KEY).
        #[arg(long, env = "HORDE_API_KEY", hide_env_values = true)]
        key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Paths changed here and on another device from the same base while apart.
    Conflicts {
        /// Resolved ones too.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Settle a conflict: write the chosen content and record it as an event.
    Resolve {
        path: String,
        /// ours, theirs, or the path of a file holding the resolved content.
        #[arg(long, value_name = "ours|theirs|FILE")]
        take: String,
        #[arg(long)]
        json: bool,
    },
    /// A self-contained tour in a temporary directory: init, record a command, log, verify.
    Demo {
        /// Keep the demo repository in DIR instead of a temporary directory.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum RemoteCommand {
    /// Add the cloud at URL under NAME (usually "origin").
    Add {
        name: String,
        url: String,
        /// The API key to store with it (otherwise $HORDE_API_KEY is read at each sync).
        #[arg(long)]
        key: Option<String>,
    },
    /// The configured remote.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Forget a remote (its events stay marked as sent).
    Remove { name: String },
}

#[derive(Subcommand, Debug)]
pub enum TimelineCommand {
    /// Every timeline: name, id, where it forked from, its own events; `*` marks the current one.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Make another timeline current: the tree becomes its latest state.
    Switch {
        /// A timeline name ("main" for the first), id, or unique id prefix.
        timeline: String,
        /// Discard unrecorded changes in the tree instead of refusing.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The point: HEAD, a seq of this device (#12), an event id or a unique prefix of one, or a
    /// time (RFC 3339, a date, a local time such as "2026-11-22 14:12", or "10 minutes ago": the
    /// last event of this timeline at or before it).
    #[arg(long, value_name = "POINT")]
    pub at: String,
    /// Write the tree into DIR (new or empty) instead of over the working tree.
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// In place: discard unrecorded changes in the tree instead of refusing.
    #[arg(long)]
    pub force: bool,
    /// Hash every file while writing it (otherwise sizes are checked).
    #[arg(long)]
    pub verify: bool,
    /// Who is restoring, recorded with the step (default: $HORDE_AGENT, else $USER).
    #[arg(long, env = "HORDE_AGENT")]
    pub agent: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Name of the agent doing the work (default: config `agent`, else the command's name).
    #[arg(long, env = "HORDE_AGENT")]
    pub agent: Option<String>,
    /// Do not record output: the command gets horde's own stdin, stdout and stderr.
    #[arg(long, conflicts_with = "capture")]
    pub no_capture: bool,
    /// Record stdout and stderr through pipes even on a terminal (the command sees no TTY).
    /// Without either flag: pipes, or, when stdin and stdout are both a terminal, a
    /// pseudo-terminal whose screen output is recorded (interactive agents, TUIs).
    #[arg(long)]
    pub capture: bool,
    /// Print nothing of horde's own (the command's output still shows).
    #[arg(short, long)]
    pub quiet: bool,
    /// The command and its arguments, after `--`.
    #[arg(required = true, value_name = "CMD", allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

#[derive(Args, Debug)]
pub struct LogArgs {
    /// Show at most N events.
    #[arg(short = 'n', long, value_name = "N")]
    pub limit: Option<usize>,
    /// Only events of these types (repeatable): decision, state_change, tool_call, task, approval, message, observation, violation, signal, checkpoint.
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Only events by this agent (repeatable).
    #[arg(long = "agent", value_name = "NAME")]
    pub agents: Vec<String>,
    /// Only changes to this file or anything under this directory.
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// Only events at or after: RFC 3339, a date (2026-11-22), a local time (2026-11-22 14:12), or "10 minutes ago".
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only events at or before (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Oldest first.
    #[arg(long)]
    pub reverse: bool,
    #[arg(long)]
    pub json: bool,
}

/// Runs the CLI; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HORDE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(dir) = &cli.dir
        && let Err(e) = std::env::set_current_dir(dir)
    {
        eprintln!("horde: cannot change to {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("horde: {}", format_error(&e));
            ExitCode::FAILURE
        }
    }
}

fn format_error(e: &anyhow::Error) -> String {
    let mut s = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
    }
    s
}

fn dispatch(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Init { json } => cmd_init(json),
        Command::Run(args) => cmd_run(args),
        Command::Snapshot {
            message,
            agent,
            json,
        } => cmd_snapshot(message, agent, json),
        Command::Log(args) => cmd_log(args),
        Command::Show { event, json } => cmd_show(&event, json),
        Command::Status { json } => cmd_status(json),
        Command::Verify { deep, json } => cmd_verify(deep, json),
        Command::Restore(args) => cmd_restore(args),
        Command::Diff { from, to, json } => cmd_diff(&from, to.as_deref(), json),
        Command::History { path, json } => cmd_history(&path, json),
        Command::Fork {
            at,
            name,
            force,
            json,
        } => cmd_fork(&at, name, force, json),
        Command::Timeline { command } => match command {
            TimelineCommand::List { json } => cmd_timeline_list(json),
            TimelineCommand::Switch { timeline, force } => cmd_timeline_switch(&timeline, force),
        },
        Command::Remote { command } => match command {
            RemoteCommand::Add { name, url, key } => {
                crate::remote::cmd_remote_add(&name, &url, key)
            }
            RemoteCommand::List { json } => crate::remote::cmd_remote_list(json),
            RemoteCommand::Remove { name } => crate::remote::cmd_remote_remove(&name),
        },
        Command::Sync {
            remote,
            watch,
            interval,
            no_merge,
            json,
        } => crate::remote::cmd_sync(remote.as_deref(), watch, interval, no_merge, json),
        Command::Clone {
            url,
            project,
            directory,
            key,
            json,
        } => crate::remote::cmd_clone(&url, &project, directory, key, json),
        Command::Conflicts { all, json } => crate::remote::cmd_conflicts(all, json),
        Command::Resolve { path, take, json } => crate::remote::cmd_resolve(&path, &take, json),
        Command::Demo { keep } => crate::demo::run(keep),
    }
}

fn cwd() -> Result<PathBuf> {
    std::env::current_dir().context("cannot read the current directory")
}

pub(crate) fn load_key() -> Result<DeviceKey> {
    Ok(DeviceKey::load_or_create(&device_key_path())?)
}

/// Opens the repository around the current directory for writing.
pub fn open_store() -> Result<Store> {
    let layout = Layout::discover(&cwd()?)?;
    Ok(Store::open(layout, load_key()?)?)
}

pub(crate) fn open_ledger() -> Result<Ledger> {
    Ok(Ledger::open(Layout::discover(&cwd()?)?)?)
}

fn print_problems(skipped: &[String], warnings: &[String]) {
    for w in warnings {
        eprintln!("horde: warning: {w}");
    }
    for s in skipped {
        eprintln!("horde: error: {s}");
    }
}

pub fn cmd_init(json: bool) -> Result<ExitCode> {
    let root = cwd()?;
    let init = {
        let spinner = crate::output::Spinner::new("scanning");
        crate::record::init_with_progress(&root, load_key()?, &|n, h| spinner.update(n, h))?
    };
    print_problems(&init.skipped, &init.warnings);
    let meta = init.store.ledger.meta;
    if json {
        println!(
            "{}",
            json!({"project_id": meta.project.to_string(), "timeline_id": meta.timeline.to_string(),
                   "device": init.store.device.to_string(), "entries": init.entries,
                   "total_bytes": init.total_bytes, "skipped": init.skipped})
        );
    } else {
        println!(
            "Initialized horde project {} in {}\nRecorded a checkpoint of {} entries ({}).",
            meta.project,
            init.store.ledger.layout.dir.display(),
            init.entries,
            human_bytes(init.total_bytes)
        );
    }
    Ok(if init.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    })
}

/// Pipes unless told otherwise; in an interactive session a pseudo-terminal, since a pipe
/// would take the terminal away from an interactive agent.
fn output_mode(args: &RunArgs) -> crate::run::Output {
    use crate::run::Output;
    use std::io::IsTerminal;
    if args.capture {
        Output::Pipes
    } else if args.no_capture {
        Output::Inherit
    } else if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        Output::Terminal
    } else {
        Output::Pipes
    }
}

pub fn cmd_run(args: RunArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let output = output_mode(&args);
    let out = crate::run::run(
        &store,
        crate::run::RunOptions {
            argv: args.command,
            agent: args.agent,
            output,
        },
    )?;
    print_problems(&out.skipped, &out.warnings);
    if let Some(e) = &out.spawn_error {
        eprintln!("horde: {e}");
    }
    if !args.quiet {
        let outside = if out.outside_changes > 0 {
            format!(
                " (and {} earlier changes made outside horde)",
                out.outside_changes
            )
        } else {
            String::new()
        };
        eprintln!(
            "horde: recorded {} events, {} file changes{outside}",
            out.events, out.changes
        );
    }
    let code = if out.exit_code == 0 && !out.skipped.is_empty() {
        EXIT_INCOMPLETE
    } else {
        u8::try_from(out.exit_code.clamp(0, 255)).unwrap_or(1)
    };
    Ok(ExitCode::from(code))
}

fn cmd_snapshot(message: Option<String>, agent: Option<String>, json: bool) -> Result<ExitCode> {
    let store = open_store()?;
    let agent = agent.unwrap_or_else(crate::record::outside_agent);
    let mut rec = crate::record::Recorder::new(&store)?;
    let outcome = {
        let spinner = crate::output::Spinner::new("scanning");
        rec.scan_with_progress(&|n, h| spinner.update(n, h))?
    };
    let mut before = Vec::new();
    if let Some(m) = message
        && !outcome.changes.is_empty()
    {
        before.push(horde_core::Draft::new(
            rec.timeline,
            &agent,
            horde_core::proto::event_body::Payload::Message(horde_core::proto::Message {
                from: agent.clone(),
                to: String::new(),
                text: m,
                body_blob: Vec::new(),
            }),
        ));
    }
    let step = rec.commit(outcome, &agent, None, before, Vec::new(), true)?;
    print_problems(&step.skipped, &step.warnings);
    if json {
        println!(
            "{}",
            json!({"changes": step.changes, "events": step.appended.len(),
                   "first_seq": step.appended.first().map(|a| a.seq), "last_seq": step.appended.last().map(|a| a.seq),
                   "skipped": step.skipped})
        );
    } else if step.changes == 0 {
        println!("Nothing changed since the last recorded step.");
    } else {
        println!(
            "Recorded {} changes as #{}..#{}.",
            step.changes,
            step.appended.first().map_or(0, |a| a.seq),
            step.appended.last().map_or(0, |a| a.seq)
        );
    }
    Ok(if step.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    })
}

/// Parses a time for `--since`/`--until` into microseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64> {
    let t = s.trim();
    if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        return Ok(ts.as_microsecond());
    }
    let tz = jiff::tz::TimeZone::system();
    if let Ok(dt) = t.parse::<jiff::civil::DateTime>() {
        return Ok(dt.to_zoned(tz)?.timestamp().as_microsecond());
    }
    if let Ok(d) = t.parse::<jiff::civil::Date>() {
        return Ok(d.to_zoned(tz)?.timestamp().as_microsecond());
    }
    let span_text = t.strip_suffix(" ago").unwrap_or(t);
    if let Ok(span) = span_text.parse::<jiff::Span>() {
        let then = jiff::Zoned::now().checked_sub(span.abs())?;
        return Ok(then.timestamp().as_microsecond());
    }
    bail!(
        "cannot read the time {s:?}: use RFC 3339 (2026-11-22T14:12:00Z), a date (2026-11-22), a local time (2026-11-22 14:12) or a duration (\"10 minutes ago\")"
    )
}

pub fn cmd_log(a: LogArgs) -> Result<ExitCode> {
    for t in &a.types {
        if !PAYLOAD_KINDS.contains(&t.as_str()) {
            bail!(
                "unknown event type {t:?}; types are: {}",
                PAYLOAD_KINDS.join(", ")
            );
        }
    }
    let path = a
        .path
        .as_deref()
        .map(RepoPath::parse)
        .transpose()
        .context("--path")?;
    let filter = LogFilter {
        types: a.types,
        agents: a.agents,
        path,
        since: a
            .since
            .as_deref()
            .map(parse_time)
            .transpose()
            .context("--since")?,
        until: a
            .until
            .as_deref()
            .map(parse_time)
            .transpose()
            .context("--until")?,
        limit: a.limit,
        oldest_first: a.reverse,
    };
    let ledger = open_ledger()?;
    let rows = read::log(&ledger.conn, &filter)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        let mut list = Vec::with_capacity(rows.len());
        for r in &rows {
            let ev = decode_event(&r.body, &r.hash).with_context(|| {
                format!(
                    "event #{} of device {} is corrupt (run `horde verify`)",
                    r.seq, r.device
                )
            })?;
            let mut j = horde_core::json::event_json(
                &ev,
                &EventHash::from_slice(&r.hash).expect("decode checked the hash"),
            );
            j["synced"] = json!(r.synced);
            list.push(j);
        }
        serde_json::to_writer_pretty(&mut out, &list)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let paint = Paint(colour_enabled());
    for r in &rows {
        let line = match decode_event(&r.body, &r.hash) {
            Ok(ev) => summary(&ev),
            Err(e) => paint.red(&format!("<corrupt event: {e}>")),
        };
        let res = writeln!(
            out,
            "{} {} {} {} {}",
            paint.yellow(&format!("#{:<5}", r.seq)),
            paint.dim(&local_time(r.occurred_at)),
            paint.cyan(&format!("{:<12}", r.kind)),
            paint.green(&format!("{:<10}", r.agent)),
            line
        );
        if res.is_err() {
            break; // e.g. `horde log | head`
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Up to this many bytes of a blob are shown by `horde show`.
const PREVIEW_BYTES: usize = 2048;

fn cmd_show(spec: &str, json: bool) -> Result<ExitCode> {
    let ledger = open_ledger()?;
    let device = DeviceKey::load(&device_key_path())
        .ok()
        .map(|k| k.device_id());
    let row = read::find_event(&ledger.conn, spec, device)?;
    let ev = decode_event(&row.body, &row.hash)
        .with_context(|| format!("event #{} is corrupt (run `horde verify`)", row.seq))?;
    let hash = EventHash::from_slice(&row.hash).expect("decode checked the hash");
    let blobs: Vec<BlobHash> = ev
        .payload
        .as_ref()
        .map(referenced_blobs)
        .unwrap_or_default();
    let mut missing = Vec::new();
    let mut previews = Vec::new();
    for b in &blobs {
        match ledger.blobs.head(b, PREVIEW_BYTES) {
            Ok(data) => previews.push((*b, data)),
            Err(e) => missing.push(e.to_string()),
        }
    }
    if json {
        let mut j = horde_core::json::event_json(&ev, &hash);
        j["synced"] = json!(row.synced);
        j["blobs"] = json!(
            blobs
                .iter()
                .map(|b| json!({"hash": b.to_hex(), "present": ledger.blobs.contains(b)}))
                .collect::<Vec<_>>()
        );
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        let paint = Paint(colour_enabled());
        let j = horde_core::json::event_json(&ev, &hash);
        println!(
            "{} {}",
            paint.yellow(&format!("event #{}", ev.seq)),
            j["id"].as_str().unwrap_or("")
        );
        println!("type      {}", j["type"].as_str().unwrap_or("?"));
        println!("summary   {}", summary(&ev));
        println!(
            "agent     {}{}",
            ev.agent_id,
            if ev.role.is_empty() {
                String::new()
            } else {
                format!(" ({})", ev.role)
            }
        );
        println!(
            "time      {} ({})",
            local_time(ev.occurred_at),
            j["occurred_at"].as_str().unwrap_or("")
        );
        println!("device    {}", j["device"].as_str().unwrap_or(""));
        println!("timeline  {}", j["timeline_id"].as_str().unwrap_or(""));
        println!("hash      {hash}");
        if let Some(p) = j["prev_hash"].as_str() {
            println!("prev      {p}");
        }
        if let Some(c) = j["causation_id"].as_str() {
            println!("caused by {c}");
        }
        println!("synced    {}", if row.synced { "yes" } else { "no" });
        println!(
            "payload   {}",
            serde_json::to_string_pretty(&j["payload"])?.replace('\n', "\n          ")
        );
        for (b, data) in &previews {
            println!(
                "\n{}",
                paint.bold(&format!(
                    "blob {} (first {})",
                    b.short(),
                    human_bytes(data.len() as u64)
                ))
            );
            match std::str::from_utf8(data) {
                Ok(text) => println!("{text}"),
                Err(e) if e.valid_up_to() + 4 >= data.len() => {
                    println!("{}", String::from_utf8_lossy(&data[..e.valid_up_to()]))
                }
                Err(_) => println!("(binary content)"),
            }
        }
    }
    for m in &missing {
        eprintln!("horde: error: {m}");
    }
    Ok(if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn cmd_status(json: bool) -> Result<ExitCode> {
    let ledger = open_ledger()?;
    let key = DeviceKey::load(&device_key_path()).ok();
    let counts = read::counts(&ledger.conn)?;
    let device = key.as_ref().map(|k| k.device_id());
    let head = match device {
        Some(d) => read::last_head(&ledger.conn, ledger.meta.project, d)?,
        None => None,
    };
    let index = read::load_worktree(&ledger.conn, ledger.meta.timeline)?;
    let pending = {
        let spinner = crate::output::Spinner::new("scanning");
        crate::scan::scan_with_progress(&ledger.layout.root, &ledger.blobs, &index, &|n, h| {
            spinner.update(n, h)
        })?
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "project_id": ledger.meta.project.to_string(),
                "timeline_id": ledger.meta.timeline.to_string(),
                "device": device.map(|d| d.to_string()),
                "root": ledger.layout.root.display().to_string(),
                "events": counts.events,
                "unsynced": counts.unsynced,
                "last_event_at": counts.last_occurred_at.map(horde_core::time::format_micros),
                "last_chain_head": head.as_ref().map(|h| json!({
                    "seq": h.seq, "hash": hex::encode(&h.hash),
                    "signed_at": horde_core::time::format_micros(h.signed_at)})),
                "unrecorded_changes": pending.changes.len(),
                "remote": crate::remote::status_json(&ledger, device)?,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("project    {}", ledger.meta.project);
    println!("timeline   {}", ledger.meta.timeline);
    if let Some(d) = device {
        println!("device     {d}");
    }
    println!("root       {}", ledger.layout.root.display());
    println!(
        "events     {} ({} not synced)",
        counts.events, counts.unsynced
    );
    if let Some(t) = counts.last_occurred_at {
        println!("last event {}", local_time(t));
    }
    match &head {
        Some(h) => println!(
            "chain head #{} {} signed {}",
            h.seq,
            hex::encode(&h.hash[..6]),
            local_time(h.signed_at)
        ),
        None => println!("chain head none signed by this device yet"),
    }
    crate::remote::print_status(&crate::remote::status_json(&ledger, device)?);
    match pending.changes.len() {
        0 => println!("tree       clean: everything is recorded"),
        n => {
            println!("tree       {n} changes not yet recorded (`horde snapshot` records them):");
            for c in pending.changes.iter().take(20) {
                println!(
                    "             {} {}",
                    c.op.as_str_name()
                        .trim_start_matches("OP_")
                        .to_ascii_lowercase(),
                    c.path
                );
            }
            if n > 20 {
                println!("             … and {} more", n - 20);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_verify(deep: bool, json: bool) -> Result<ExitCode> {
    let ledger = open_ledger()?;
    let local = DeviceKey::load(&device_key_path())
        .ok()
        .map(|k| (k.device_id(), k.public_key()));
    let report = crate::verify::verify_with(&ledger, local, deep)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_verify(&report, &Paint(colour_enabled()));
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn print_verify(report: &crate::verify::Report, paint: &Paint) {
    for d in &report.devices {
        match &d.error {
            None => println!(
                "device {}: {} events, chain intact, {} signed heads (last #{})",
                d.device,
                d.events,
                d.heads,
                d.last_signed_seq.map_or("none".into(), |s| s.to_string())
            ),
            Some(e) => println!("device {}: {} {e}", d.device, paint.red("BROKEN at")),
        }
    }
    if let Some(e) = &report.index_error {
        println!("{} {e}", paint.red("INDEX"));
    }
    if !report.missing_blobs.is_empty() {
        println!(
            "{} {} of {} referenced blobs are missing:",
            paint.red("MISSING"),
            report.missing_blobs.len(),
            report.blobs_checked
        );
        for b in report.missing_blobs.iter().take(20) {
            println!("  {b}");
        }
    }
    if !report.corrupt_blobs.is_empty() {
        println!(
            "{} {} blobs do not match their hash:",
            paint.red("CORRUPT"),
            report.corrupt_blobs.len()
        );
        for b in report.corrupt_blobs.iter().take(20) {
            println!("  {b}");
        }
    }
    if report.ok {
        println!(
            "{} {} referenced blobs present",
            paint.green("verified:"),
            report.blobs_checked
        );
    } else {
        println!("{}", paint.red("verification FAILED"));
    }
}

fn local_device() -> Option<horde_core::DeviceId> {
    DeviceKey::load(&device_key_path())
        .ok()
        .map(|k| k.device_id())
}

fn print_anomalies(state: &horde_replay::State) {
    for a in state.anomalies() {
        eprintln!("horde: warning: {}: {}", a.path, a.what);
    }
    let more = state
        .anomaly_count()
        .saturating_sub(state.anomalies().len());
    if more > 0 {
        eprintln!("horde: warning: … and {more} more such changes not applied");
    }
}

fn point_json(r: &crate::timetravel::Resolved) -> serde_json::Value {
    json!({"seq": r.event.seq, "event_id": r.event.id.to_string(),
           "device": r.event.device.to_string(), "timeline_id": r.point.timeline.to_string(),
           "occurred_at": horde_core::time::format_micros(r.event.occurred_at)})
}

fn report_json(r: &horde_replay::RestoreReport) -> serde_json::Value {
    json!({"written": r.written, "bytes": r.bytes, "dirs_created": r.dirs_created,
           "removed": r.removed, "kept": r.kept, "protected": r.protected})
}

fn print_kept(report: &horde_replay::RestoreReport) {
    for k in &report.kept {
        eprintln!("horde: warning: kept {k}/: it holds files horde does not track");
    }
    for p in &report.protected {
        eprintln!("horde: warning: not restored: {p} (inside .horde/)");
    }
}

fn cmd_restore(a: RestoreArgs) -> Result<ExitCode> {
    use crate::timetravel as tt;
    if let Some(dir) = &a.to {
        let ledger = open_ledger()?;
        let at = tt::resolve_point(&ledger.conn, &a.at, ledger.meta.timeline, local_device())?;
        let state = tt::state_at(&ledger, at.point)?;
        print_anomalies(&state);
        let dir = cwd()?.join(dir);
        if let Ok(d) = dir.canonicalize().or_else(|_| {
            dir.parent()
                .map_or(Err(std::io::ErrorKind::NotFound.into()), |p| {
                    p.canonicalize()
                })
        }) && d.starts_with(&ledger.layout.root)
        {
            eprintln!(
                "horde: warning: {} is inside the repository; its files will be recorded unless .hordeignore lists it",
                dir.display()
            );
        }
        let report = {
            let bar = crate::output::RestoreBar::new();
            tt::restore_to(&ledger, &state, &dir, a.verify, &|p| bar.update(p))
                .with_context(|| format!("restoring into {}", dir.display()))?
        };
        print_kept(&report);
        if a.json {
            println!(
                "{}",
                json!({"at": point_json(&at), "to": dir.display().to_string(), "report": report_json(&report)})
            );
        } else {
            println!(
                "Wrote the tree as of {} into {}: {} files and links ({}), {} directories.",
                at.label(),
                dir.display(),
                report.written,
                human_bytes(report.bytes),
                report.dirs_created
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let store = open_store()?;
    let at = tt::resolve_point(
        &store.ledger.conn,
        &a.at,
        store.ledger.meta.timeline,
        Some(store.device),
    )?;
    let state = tt::state_at(&store.ledger, at.point)?;
    print_anomalies(&state);
    let mut rec = crate::record::Recorder::new(&store)?;
    let current = tt::disk_state(&rec, a.force)?;
    if horde_replay::diff(&current, &state).is_empty() {
        if a.json {
            println!(
                "{}",
                json!({"at": point_json(&at), "report": report_json(&Default::default()), "first_seq": null, "last_seq": null})
            );
        } else {
            println!("The tree is already as of {}; nothing to do.", at.label());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report = {
        let bar = crate::output::RestoreBar::new();
        tt::restore_in_place(&store.ledger, &state, &current, a.verify, &|p| {
            bar.update(p)
        })?
    };
    print_kept(&report);
    let agent = a.agent.unwrap_or_else(crate::record::outside_agent);
    let note = horde_core::Draft::new(
        rec.timeline,
        &agent,
        horde_core::proto::event_body::Payload::Message(horde_core::proto::Message {
            from: agent.clone(),
            to: String::new(),
            text: format!(
                "restored the tree to #{} (event {}, {})",
                at.event.seq,
                at.event.id,
                horde_core::time::format_micros(at.event.occurred_at)
            ),
            body_blob: Vec::new(),
        }),
    );
    let step = rec.step(&agent, Some(at.event.id), vec![note], true)?;
    print_problems(&step.skipped, &step.warnings);
    let (first, last) = (
        step.appended.first().map(|x| x.seq),
        step.appended.last().map(|x| x.seq),
    );
    if a.json {
        println!(
            "{}",
            json!({"at": point_json(&at), "report": report_json(&report),
                   "changes": step.changes, "first_seq": first, "last_seq": last})
        );
    } else {
        println!(
            "Restored the tree to {}: {} files and links written, {} paths removed; recorded as {} changes (#{}..#{}).",
            at.label(),
            report.written,
            report.removed,
            step.changes,
            first.unwrap_or(0),
            last.unwrap_or(0)
        );
    }
    Ok(if step.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    })
}

fn entry_json(e: &horde_replay::Entry) -> serde_json::Value {
    json!({"kind": e.kind.as_str(), "mode": format!("{:o}", e.mode), "size": e.size,
           "hash": e.hash.map(|h| h.to_hex())})
}

fn cmd_diff(from: &str, to: Option<&str>, json_out: bool) -> Result<ExitCode> {
    use crate::timetravel as tt;
    let ledger = open_ledger()?;
    let device = local_device();
    let a = tt::resolve_point(&ledger.conn, from, ledger.meta.timeline, device)?;
    let b = tt::resolve_point(
        &ledger.conn,
        to.unwrap_or("HEAD"),
        ledger.meta.timeline,
        device,
    )?;
    let (sa, sb) = (
        tt::state_at(&ledger, a.point)?,
        tt::state_at(&ledger, b.point)?,
    );
    let changes = horde_replay::diff(&sa, &sb);
    let mut out = std::io::stdout().lock();
    if json_out {
        let list: Vec<_> = changes
            .iter()
            .map(|c| {
                json!({"path": c.path, "change": c.what(),
                            "before": c.before.as_ref().map(entry_json),
                            "after": c.after.as_ref().map(entry_json)})
            })
            .collect();
        serde_json::to_writer_pretty(
            &mut out,
            &json!({"from": point_json(&a), "to": point_json(&b), "changes": list}),
        )?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let paint = Paint(colour_enabled());
    for c in &changes {
        let detail = match (&c.before, &c.after) {
            (Some(x), Some(y)) if x.kind != y.kind => {
                format!(" ({} → {})", x.kind.as_str(), y.kind.as_str())
            }
            (Some(x), Some(y)) if x.hash == y.hash => format!(" ({:o} → {:o})", x.mode, y.mode),
            (Some(x), Some(y)) => format!(" ({} → {})", human_bytes(x.size), human_bytes(y.size)),
            _ => String::new(),
        };
        let what = match c.what() {
            "added" => paint.green("added   "),
            "deleted" => paint.red("deleted "),
            other => paint.yellow(&format!("{other:<8}")),
        };
        let slash = if c
            .after
            .as_ref()
            .or(c.before.as_ref())
            .is_some_and(|e| e.kind == horde_replay::Kind::Dir)
        {
            "/"
        } else {
            ""
        };
        if writeln!(out, "{what} {}{slash}{detail}", c.path).is_err() {
            break;
        }
    }
    if changes.is_empty() {
        eprintln!(
            "horde: no differences between {} and {}",
            a.label(),
            b.label()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_history(path: &str, json_out: bool) -> Result<ExitCode> {
    use crate::timetravel as tt;
    let path = RepoPath::parse(path).context("the path")?;
    let ledger = open_ledger()?;
    let head = tt::head(&ledger.conn, ledger.meta.timeline)?;
    let rows = tt::path_history(&ledger.conn, head, &path)?;
    let mut out = std::io::stdout().lock();
    if json_out {
        let mut list = Vec::with_capacity(rows.len());
        for r in &rows {
            let ev = decode_event(&r.body, &r.hash)
                .with_context(|| format!("event #{} is corrupt (run `horde verify`)", r.seq))?;
            list.push(horde_core::json::event_json(
                &ev,
                &EventHash::from_slice(&r.hash).expect("decode checked the hash"),
            ));
        }
        serde_json::to_writer_pretty(&mut out, &list)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        eprintln!("horde: no recorded changes to {path} on this timeline");
        return Ok(ExitCode::FAILURE);
    }
    let paint = Paint(colour_enabled());
    for r in &rows {
        let line = match decode_event(&r.body, &r.hash) {
            Ok(ev) => summary(&ev),
            Err(e) => paint.red(&format!("<corrupt event: {e}>")),
        };
        if writeln!(
            out,
            "{} {} {} {}",
            paint.yellow(&format!("#{:<5}", r.seq)),
            paint.dim(&local_time(r.occurred_at)),
            paint.green(&format!("{:<10}", r.agent)),
            line
        )
        .is_err()
        {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// After the tree was rewritten for `timeline`, refreshes its index (timestamps) without
/// recording anything that was already recorded.
fn refresh_index(store: &Store, timeline: horde_core::TimelineId) -> Result<crate::record::Step> {
    let index = read::load_worktree(&store.ledger.conn, timeline)?;
    let mut rec = crate::record::Recorder {
        store,
        index,
        timeline,
    };
    Ok(rec.step(&crate::record::outside_agent(), None, Vec::new(), false)?)
}

fn cmd_fork(at: &str, name: Option<String>, force: bool, json_out: bool) -> Result<ExitCode> {
    use crate::timetravel as tt;
    let store = open_store()?;
    let at = tt::resolve_point(
        &store.ledger.conn,
        at,
        store.ledger.meta.timeline,
        Some(store.device),
    )?;
    let state = tt::state_at(&store.ledger, at.point)?;
    print_anomalies(&state);
    let rec = crate::record::Recorder::new(&store)?;
    let current = tt::disk_state(&rec, force)?;
    let tl = tt::fork(&store, &at, &state, name)?;
    tt::set_current(&store.ledger.conn, tl.id)?;
    let report = {
        let bar = crate::output::RestoreBar::new();
        tt::restore_in_place(&store.ledger, &state, &current, false, &|p| bar.update(p))?
    };
    print_kept(&report);
    let step = refresh_index(&store, tl.id)?;
    print_problems(&step.skipped, &step.warnings);
    if json_out {
        println!(
            "{}",
            json!({"timeline_id": tl.id.to_string(), "name": tl.label(), "at": point_json(&at),
                   "report": report_json(&report)})
        );
    } else {
        println!(
            "Forked timeline {} ({}) at {}; the tree is as it was then and recording continues on the new timeline.",
            tl.label(),
            tl.id,
            at.label()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_timeline_list(json_out: bool) -> Result<ExitCode> {
    use crate::timetravel as tt;
    let ledger = open_ledger()?;
    let all = tt::timelines(&ledger.conn)?;
    let label_of = |id: horde_core::TimelineId| {
        all.iter()
            .find(|t| t.id == id)
            .map_or_else(|| id.to_string(), |t| t.label())
    };
    let mut list = Vec::new();
    for t in &all {
        let fork_seq = match t.parent {
            Some(_) => read::event_by_local_id(&ledger.conn, t.fork_id)?.map(|r| r.seq),
            None => None,
        };
        list.push((t, fork_seq, tt::event_count(&ledger.conn, t.id)?));
    }
    if json_out {
        let v: Vec<_> = list
            .iter()
            .map(|(t, fork_seq, events)| {
                json!({"timeline_id": t.id.to_string(), "name": t.label(),
                       "current": t.id == ledger.meta.timeline,
                       "parent": t.parent.map(|p| p.to_string()),
                       "fork_seq": fork_seq, "fork_event": t.fork_event.map(|e| e.to_string()),
                       "events": events,
                       "created_at": (t.created_at > 0).then(|| horde_core::time::format_micros(t.created_at))})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    for (t, fork_seq, events) in &list {
        let mark = if t.id == ledger.meta.timeline {
            "*"
        } else {
            " "
        };
        let from = match (t.parent, fork_seq) {
            (Some(p), Some(seq)) => format!(", forked from {} at #{seq}", label_of(p)),
            (Some(p), None) => format!(", forked from {}", label_of(p)),
            _ => String::new(),
        };
        println!("{mark} {:<16} {}  {events} events{from}", t.label(), t.id);
    }
    Ok(ExitCode::SUCCESS)
}

/// The event id of a local point.
fn head_event_id(store: &Store, p: crate::timetravel::Point) -> Result<horde_core::EventId> {
    Ok(read::event_by_local_id(&store.ledger.conn, p.id)?
        .context("the timeline's head event is not there")?
        .id)
}

fn cmd_timeline_switch(spec: &str, force: bool) -> Result<ExitCode> {
    use crate::timetravel as tt;
    let store = open_store()?;
    let target = tt::find_timeline(&store.ledger.conn, spec)?;
    if target.id == store.ledger.meta.timeline {
        println!("Already on timeline {}.", target.label());
        return Ok(ExitCode::SUCCESS);
    }
    let head = tt::head(&store.ledger.conn, target.id)?;
    let state = tt::state_at(&store.ledger, head)?;
    print_anomalies(&state);
    let rec = crate::record::Recorder::new(&store)?;
    let current = tt::disk_state(&rec, force)?;
    let report = {
        let bar = crate::output::RestoreBar::new();
        tt::restore_in_place(&store.ledger, &state, &current, false, &|p| bar.update(p))?
    };
    print_kept(&report);
    tt::set_current(&store.ledger.conn, target.id)?;
    let step = refresh_index(&store, target.id)?;
    print_problems(&step.skipped, &step.warnings);
    // A timeline another device made: this device's own chain starts its tree there with a
    // checkpoint, so that its points on that timeline restore to what it had.
    if !tt::has_own_checkpoint(&store.ledger.conn, target.id, store.device)? {
        let index = read::load_worktree(&store.ledger.conn, target.id)?;
        let req = tt::checkpoint_request(
            &store,
            target.id,
            &tt::recorded_state(&index),
            Some(head_event_id(&store, head)?),
            &crate::record::outside_agent(),
        )?;
        store.writer.append(req)?;
    }
    println!(
        "Switched to timeline {} ({}): {} files and links written, {} paths removed.",
        target.label(),
        target.id,
        report.written,
        report.removed
    );
    Ok(ExitCode::SUCCESS)
}
