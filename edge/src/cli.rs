//! The `horde` command line: the clap definitions and the dispatch to [`crate::commands`].
//! `main.rs` only calls [`main`].
//!
//! Exit codes: 0 success; 1 failure (including `verify` finding tampering); 2 usage errors;
//! `horde run` passes the command's exit code through (128+N when killed by signal N, 127 when
//! it could not be started), except that when the command succeeded but some paths could not
//! be recorded it exits 3. `horde policy check` exits 4 for deny and 5 for ask;
//! `horde secrets scan` exits 6 when it finds secrets; `horde screen` exits 7 when it
//! quarantines the content.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::commands::agents::{self, HandoffArgs, StandingArgs};
use crate::commands::daemon::{self, DaemonCommand};
use crate::commands::hooks::{self, HookArgs, HooksCommand};
use crate::commands::import::{self, ImportCommand};
use crate::commands::ledger::{self, LogArgs};
use crate::commands::mcp::{self, McpArgs};
use crate::commands::policy::{self, ApprovalsArgs, ApproveArgs, PolicyCommand, RejectArgs};
use crate::commands::run::{self, RunArgs};
use crate::commands::sandbox::{self, DoctorArgs, SandboxRunArgs};
use crate::commands::screen::{self, ScreenArgs};
use crate::commands::secrets::{self, SecretsCommand};
use crate::commands::travel::{self, RestoreArgs};
use crate::commands::{demo, remote};

pub use crate::session::EXIT_INCOMPLETE;

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
    /// What agents may do: capability manifests per role, checked by structure.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Approval requests waiting for a person (`--all`: answered and expired ones too).
    Approvals(ApprovalsArgs),
    /// Grant an approval request; `--remember` keeps the answer for the session or repository.
    Approve(ApproveArgs),
    /// Refuse an approval request, saying why.
    Reject(RejectArgs),
    /// Find secrets in files (the scanner that redacts what horde records).
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Screen untrusted content (a page, issue text, tool output) for prompt injection;
    /// records the verdict; exit 7 when quarantined.
    Screen(ScreenArgs),
    /// Agents' trust tiers, streaks and revoked sessions, as `horde run --role --agent`
    /// recorded them.
    Standing(StandingArgs),
    /// The handoff recorded when an agent's error budget ran out in SESSION (Markdown for the
    /// successor's prompt; --json for the fields).
    Handoff(HandoffArgs),
    /// Run a command confined, without recording it: only the worktree writable, no network
    /// but the allowed hosts (through horde's proxy), bounded resources, nothing outlives it.
    /// `horde run --sandbox` runs and records a command the same way.
    Sandbox {
        #[command(subcommand)]
        command: SandboxCommand,
    },
    /// Which confinement mechanisms work here (bubblewrap, user namespaces, seccomp,
    /// Landlock, cgroups) and what is degraded; exit 1 when agents' commands cannot be
    /// confined.
    Doctor(DoctorArgs),
    /// Record Claude Code, Codex or Gemini CLI sessions through their own hooks: install,
    /// uninstall, status.
    Hooks {
        #[command(subcommand)]
        command: HooksCommand,
    },
    /// What an agent's hook runs (installed by `horde hooks install`): reads the hook's JSON
    /// on stdin, records it, and answers in the agent's protocol on stdout.
    Hook(HookArgs),
    /// Past sessions of Claude Code, Codex and aider, read from their own records, as events
    /// (idempotent: what the ledger holds already, recorded live or imported, is not added).
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// This repository's daemon: answers the agents' hooks from an open ledger, compiled
    /// policies and a file watcher (hooks start it themselves; `HORDE_DAEMON=off` stops that).
    Daemon {
        #[command(subcommand)]
        command: DaemonCommand,
    },
    /// An MCP server on stdin/stdout: agents read and rewind this repository's history.
    ///
    /// Claude Code: `claude mcp add horde -- horde mcp`; Codex: `codex mcp add horde -- horde
    /// mcp`. Tools: log, show, read_blob, history, diff, restore (into a new directory below a
    /// restore root), approvals (to read; answering stays with a person) and sync_status. Lists
    /// are paged and results bounded (64 KiB); every call is recorded as a tool_call by agent
    /// `mcp`. Speaks MCP 2026-07-28 and the initialize handshake of 2025-11-25 and before.
    Mcp(McpArgs),
    /// A self-contained tour in a temporary directory: init, record a command, log, verify.
    Demo {
        /// Keep the demo repository in DIR instead of a temporary directory.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SandboxCommand {
    /// Run CMD confined; exit with its exit code (125 when the sandbox cannot be set up, 127
    /// when CMD does not exist).
    #[command(trailing_var_arg = true)]
    Run(SandboxRunArgs),
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

/// Runs the CLI; returns the process exit code.
pub fn main() -> ExitCode {
    // Inside a sandbox, this binary is its init (see horde_sandbox::init).
    let mut args = std::env::args_os();
    if args.nth(1).as_deref() == Some(std::ffi::OsStr::new(horde_sandbox::init::INIT_ARG)) {
        horde_sandbox::init::main(args.collect());
    }
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
    if cli.command.only_prints() {
        crate::sys::default_sigpipe();
    }
    match dispatch(cli.command) {
        Ok(code) => code,
        // The reader went away (`horde sync --json | head`): nothing to say to anyone.
        Err(e) if closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("horde: {}", format_error(&e));
            ExitCode::FAILURE
        }
    }
}

impl Command {
    /// Commands that only read and print: a closed pipe ends them like `git log | head`.
    fn only_prints(&self) -> bool {
        matches!(
            self,
            Command::Log(_)
                | Command::Show { .. }
                | Command::Status { .. }
                | Command::Verify { .. }
                | Command::Diff { .. }
                | Command::History { .. }
                | Command::Timeline {
                    command: TimelineCommand::List { .. }
                }
                | Command::Remote {
                    command: RemoteCommand::List { .. }
                }
                | Command::Conflicts { .. }
                | Command::Approvals(_)
                | Command::Standing(_)
                | Command::Handoff(_)
                | Command::Secrets { .. }
        )
    }
}

/// Did writing our output fail because the reader closed the pipe?
fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                == Some(std::io::ErrorKind::BrokenPipe)
    })
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
        Command::Init { json } => ledger::cmd_init(json),
        Command::Run(args) => run::cmd_run(args),
        Command::Snapshot {
            message,
            agent,
            json,
        } => ledger::cmd_snapshot(message, agent, json),
        Command::Log(args) => ledger::cmd_log(args),
        Command::Show { event, json } => ledger::cmd_show(&event, json),
        Command::Status { json } => ledger::cmd_status(json),
        Command::Verify { deep, json } => ledger::cmd_verify(deep, json),
        Command::Restore(args) => travel::cmd_restore(args),
        Command::Diff { from, to, json } => travel::cmd_diff(&from, to.as_deref(), json),
        Command::History { path, json } => travel::cmd_history(&path, json),
        Command::Fork {
            at,
            name,
            force,
            json,
        } => travel::cmd_fork(&at, name, force, json),
        Command::Timeline { command } => match command {
            TimelineCommand::List { json } => travel::cmd_timeline_list(json),
            TimelineCommand::Switch { timeline, force } => {
                travel::cmd_timeline_switch(&timeline, force)
            }
        },
        Command::Remote { command } => match command {
            RemoteCommand::Add { name, url, key } => remote::cmd_remote_add(&name, &url, key),
            RemoteCommand::List { json } => remote::cmd_remote_list(json),
            RemoteCommand::Remove { name } => remote::cmd_remote_remove(&name),
        },
        Command::Sync {
            remote,
            watch,
            interval,
            no_merge,
            json,
        } => remote::cmd_sync(remote.as_deref(), watch, interval, no_merge, json),
        Command::Clone {
            url,
            project,
            directory,
            key,
            json,
        } => remote::cmd_clone(&url, &project, directory, key, json),
        Command::Conflicts { all, json } => remote::cmd_conflicts(all, json),
        Command::Resolve { path, take, json } => remote::cmd_resolve(&path, &take, json),
        Command::Policy { command } => policy::cmd_policy(command),
        Command::Approvals(a) => policy::cmd_approvals(a),
        Command::Approve(a) => policy::cmd_approve(a),
        Command::Reject(a) => policy::cmd_reject(a),
        Command::Secrets { command } => secrets::cmd_secrets(command),
        Command::Screen(a) => screen::cmd_screen(a),
        Command::Standing(a) => agents::cmd_standing(a),
        Command::Handoff(a) => agents::cmd_handoff(a),
        Command::Sandbox {
            command: SandboxCommand::Run(a),
        } => sandbox::cmd_sandbox_run(a),
        Command::Doctor(a) => sandbox::cmd_doctor(a),
        Command::Hooks { command } => hooks::cmd_hooks(command),
        Command::Hook(a) => hooks::cmd_hook(a),
        Command::Import { command } => import::cmd_import(command),
        Command::Daemon { command } => daemon::cmd_daemon(command),
        Command::Mcp(a) => mcp::cmd_mcp(a),
        Command::Demo { keep } => demo::run(keep),
    }
}
