//! `horde hooks install|uninstall|status` (the agents' hook configuration) and `horde hook
//! AGENT EVENT` (what the agents run: read the payload, record, answer before the deadline).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::hooks::install::{self, Plan};
use crate::hooks::record::{HookOptions, NotInitialised};
use crate::hooks::{self, AgentKind, Answer, Kind, Mode};
use crate::session::cwd;
use crate::store::Layout;

/// A hook's payload is read up to this size (tool responses can be large; the rest is cut).
const MAX_INPUT: u64 = 64 << 20;

#[derive(Subcommand, Debug)]
pub enum HooksCommand {
    /// Write horde's hooks into AGENT's configuration (this repository's, or the user's with
    /// --user), merged with the hooks already there. Run again to change the mode.
    Install(InstallArgs),
    /// Remove horde's hooks from AGENT's configuration (the user's own hooks stay).
    Uninstall(TargetArgs),
    /// Which agents have horde's hooks, in which mode, running which horde.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct TargetArgs {
    /// claude | codex | gemini
    pub agent: String,
    /// The user's configuration (every repository) instead of this repository's.
    #[arg(long)]
    pub user: bool,
}

#[derive(Args, Debug)]
pub struct InstallArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// audit: record everything, never block; enforce: the policy's deny and ask stop the
    /// tool, and so does any failure of horde to decide.
    #[arg(long, default_value = "audit", value_parser = ["audit", "enforce"])]
    pub mode: String,
    /// The manifest role tool calls are decided under (`horde policy show ROLE`).
    #[arg(long, default_value = "builder")]
    pub role: String,
    /// The agent's timeout for each hook call, in seconds; horde answers 1.5 s before it.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// When the policy says ask, wait up to SECS for a person (`horde approve`, or the cloud)
    /// before answering.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub wait: u64,
}

#[derive(Args, Debug)]
pub struct HookArgs {
    /// claude | codex | gemini
    pub agent: String,
    /// The agent's event name (PreToolUse, PostToolUse, SessionStart, BeforeTool, …).
    pub event: String,
    #[arg(long, default_value = "audit", value_parser = ["audit", "enforce"])]
    pub mode: String,
    #[arg(long, default_value = "builder")]
    pub role: String,
    /// Answer within this many milliseconds whatever happens (enforce: deny; audit: allow).
    #[arg(long, default_value_t = 10_000)]
    pub deadline_ms: u64,
    /// Seconds to wait for a person when the policy says ask.
    #[arg(long, default_value_t = 0)]
    pub wait: u64,
}

fn agent_of(name: &str) -> Result<AgentKind> {
    AgentKind::parse(name)
        .with_context(|| format!("unknown agent {name:?}: horde knows claude, codex and gemini"))
}

fn home() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .context("HOME is not set")
}

fn target_path(t: &TargetArgs) -> Result<(AgentKind, PathBuf)> {
    let agent = agent_of(&t.agent)?;
    let root = if t.user {
        None
    } else {
        Some(
            Layout::discover(&cwd()?)
                .context("not in a horde repository: run `horde init` first, or use --user")?
                .root,
        )
    };
    Ok((
        agent,
        install::config_path(agent, root.as_deref(), &home()?),
    ))
}

pub fn cmd_hooks(cmd: HooksCommand) -> Result<ExitCode> {
    match cmd {
        HooksCommand::Install(a) => {
            let (agent, path) = target_path(&a.target)?;
            if a.timeout == 0 {
                bail!("--timeout must be at least 1 second");
            }
            // The role must exist before an agent depends on it.
            crate::gate::role_policy(&a.role)?;
            let exe = std::env::current_exe()
                .and_then(|e| e.canonicalize())
                .context("cannot tell where this horde binary is")?;
            let plan = Plan {
                agent,
                mode: Mode::parse(&a.mode).context("checked by clap")?,
                role: a.role.clone(),
                timeout_secs: a.timeout,
                wait_secs: a.wait,
                exe,
            };
            let changed = install::install(&path, &plan)?;
            println!(
                "{} horde's {} hooks ({} mode, role {}) in {}",
                if changed {
                    "installed"
                } else {
                    "already installed:"
                },
                agent.name(),
                a.mode,
                a.role,
                path.display()
            );
            match agent {
                AgentKind::Codex => println!(
                    "Codex skips these hooks, without a word, until you trust them (and, for a \
                     repository's hooks, the project): trust them when codex asks you to review \
                     hooks or in `/hooks`, or run `codex exec --dangerously-bypass-hook-trust`. \
                     Installing again changes them: trust them again. Codex lets a tool run when \
                     a hook times out."
                ),
                AgentKind::Gemini => println!(
                    "Gemini CLI shows a warning for project hooks the first time and then runs them."
                ),
                AgentKind::Claude => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        HooksCommand::Uninstall(t) => {
            let (agent, path) = target_path(&t)?;
            if install::uninstall(&path, agent)? {
                println!(
                    "removed horde's {} hooks from {}",
                    agent.name(),
                    path.display()
                );
            } else {
                println!("no horde hooks for {} in {}", agent.name(), path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        HooksCommand::Status { json } => {
            let root = Layout::discover(&cwd()?).ok().map(|l| l.root);
            let home = home()?;
            let mut all = Vec::new();
            for agent in [AgentKind::Claude, AgentKind::Codex, AgentKind::Gemini] {
                let mut places = vec![install::config_path(agent, None, &home)];
                if let Some(r) = &root {
                    places.insert(0, install::config_path(agent, Some(r), &home));
                }
                for p in places {
                    match install::status(&p, agent) {
                        Ok(s) => all.push(s),
                        Err(e) => eprintln!("horde: {e:#}"),
                    }
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(ExitCode::SUCCESS);
            }
            for s in &all {
                if s.events.is_empty() {
                    println!("{:<7} not installed   {}", s.agent, s.file);
                    continue;
                }
                println!(
                    "{:<7} {:<16} {}  ({} events{}{})",
                    s.agent,
                    s.mode.as_deref().unwrap_or("?"),
                    s.file,
                    s.events.len(),
                    if s.missing.is_empty() {
                        String::new()
                    } else {
                        format!(", missing: {}", s.missing.join(", "))
                    },
                    if s.exe_exists {
                        String::new()
                    } else {
                        format!(
                            ", horde binary missing: {}",
                            s.exe.as_deref().unwrap_or("?")
                        )
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The answer when horde could not decide: enforce denies a tool call, audit lets it be.
fn fallback(mode: Mode, kind: Kind, why: &str) -> Answer {
    match (mode, kind) {
        (Mode::Enforce, Kind::PreTool) => Answer::Deny(format!(
            "horde (enforce mode) could not check this call, so it is denied: {why}"
        )),
        _ => Answer::Neutral,
    }
}

/// A marker so that "not initialised" is said once per session.
fn first_notice(agent: AgentKind, session: &str) -> bool {
    let h = horde_core::BlobHash::of(format!("{}\0{session}", agent.name()).as_bytes());
    let p = std::env::temp_dir().join(format!("horde-hook-notice-{}", &h.to_hex()[..16]));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(p)
        .is_ok()
}

pub fn cmd_hook(a: HookArgs) -> Result<ExitCode> {
    let agent = agent_of(&a.agent)?;
    let mode = Mode::parse(&a.mode).context("checked by clap")?;
    let deadline = Duration::from_millis(a.deadline_ms.max(1));
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = std::io::stdin().take(MAX_INPUT).read_to_end(&mut buf);
    let raw: Option<Value> = read
        .ok()
        .and_then(|_| serde_json::from_slice(&buf).ok())
        .filter(Value::is_object);
    let kind = hooks::kind_of(agent, &a.event);
    let answer = match raw {
        None => {
            eprintln!(
                "horde: the {} hook's input for {} is not a JSON object ({} bytes)",
                agent.name(),
                a.event,
                buf.len()
            );
            fallback(mode, kind, "its input was not valid JSON")
        }
        Some(raw) => {
            let input = hooks::parse(agent, &a.event, raw);
            let session = input.session.clone();
            let secret_key = match crate::config::fingerprint_key() {
                Ok(k) => k,
                Err(e) => {
                    eprintln!("horde: {e:#}");
                    return answer_and_exit(
                        agent,
                        &a.event,
                        &fallback(mode, kind, &format!("{e:#}")),
                    );
                }
            };
            let opts = HookOptions {
                mode,
                role: a.role.clone(),
                wait: (a.wait > 0).then(|| Duration::from_secs(a.wait)),
                secret_key,
            };
            let (tx, rx) = mpsc::channel();
            let event = a.event.clone();
            let left = deadline.saturating_sub(started.elapsed());
            std::thread::Builder::new()
                .name("horde-hook".into())
                .spawn(move || {
                    let _ = tx.send(crate::daemon::record_hook(
                        agent, &event, &input, &opts, left,
                    ));
                })
                .context("cannot start a thread")?;
            let left = deadline.saturating_sub(started.elapsed());
            match rx.recv_timeout(left) {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) if e.downcast_ref::<NotInitialised>().is_some() => match (mode, kind) {
                    (Mode::Enforce, Kind::PreTool) => Answer::Deny(format!(
                        "horde (enforce mode): {e}; the call is denied until it is"
                    )),
                    _ if first_notice(agent, &session) => {
                        Answer::Notice(format!("horde is not recording this session: {e}"))
                    }
                    _ => Answer::Neutral,
                },
                Ok(Err(e)) => {
                    eprintln!("horde: {e:#}");
                    fallback(mode, kind, &format!("{e:#}"))
                }
                Err(_) => {
                    eprintln!("horde: no answer within {} ms", deadline.as_millis());
                    let ans = fallback(
                        mode,
                        kind,
                        &format!("no answer within {} ms", deadline.as_millis()),
                    );
                    let mut so = std::io::stdout().lock();
                    let _ = so.write_all(hooks::answer(agent, &a.event, &ans).as_bytes());
                    let _ = so.flush();
                    // The recording thread may be stuck (a locked ledger): leave without it.
                    std::process::exit(0);
                }
            }
        }
    };
    answer_and_exit(agent, &a.event, &answer)
}

/// Prints the answer in the agent's protocol: the only thing a hook ever writes to stdout.
fn answer_and_exit(agent: AgentKind, event: &str, answer: &Answer) -> Result<ExitCode> {
    let mut so = std::io::stdout().lock();
    so.write_all(hooks::answer(agent, event, answer).as_bytes())?;
    so.flush()?;
    Ok(ExitCode::SUCCESS)
}
