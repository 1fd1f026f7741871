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
use crate::hooks::record::HookOptions;
use crate::hooks::{self, AgentKind, Answer, Mode, fallback};
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
    /// How a tool call's hooks reach horde. command: the agent runs `horde hook` for each
    /// event. http (Claude Code, a repository's hooks): the agent POSTs each tool call to
    /// horde's daemon on 127.0.0.1, with a token, and starts no process; the session's other
    /// hooks start the daemon. If the daemon is gone mid-session, enforce mode blocks tool
    /// calls and audit mode lets them run unrecorded until the next prompt restarts it.
    #[arg(long, default_value = "command", value_parser = ["command", "http"])]
    pub transport: String,
    /// With --transport http: the port on 127.0.0.1 (default: the one chosen before, or a
    /// free one).
    #[arg(long, requires = "transport")]
    pub port: Option<u16>,
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
            // The repository's (none with --user: target_path found it already otherwise).
            let layout = if a.target.user {
                None
            } else {
                Some(Layout::discover(&cwd()?)?)
            };
            let endpoint_before = layout
                .as_ref()
                .and_then(|l| hooks::http::load(l).ok().flatten());
            let http = match a.transport.as_str() {
                "http" => {
                    if agent != AgentKind::Claude {
                        bail!(
                            "--transport http is for Claude Code: {} runs its hooks as commands",
                            agent.name()
                        );
                    }
                    if a.target.user {
                        bail!(
                            "--transport http needs a repository's hooks: each repository has \
                             its own daemon and port (drop --user)"
                        );
                    }
                    let layout = layout.as_ref().context("checked by target_path")?;
                    Some(hooks::http::ensure(layout, a.port)?)
                }
                _ if a.port.is_some() => bail!("--port goes with --transport http"),
                _ => None,
            };
            let plan = Plan {
                agent,
                mode: Mode::parse(&a.mode).context("checked by clap")?,
                role: a.role.clone(),
                timeout_secs: a.timeout,
                wait_secs: a.wait,
                exe,
                http: http.clone(),
            };
            let changed = install::install(&path, &plan)?;
            // Only now: a failed install leaves the daemon as it was.
            if agent == AgentKind::Claude
                && let Some(layout) = &layout
            {
                if http.is_none() {
                    hooks::http::remove(layout)?;
                }
                // A daemon listens (or not) as the endpoint says only from its start.
                if endpoint_before != http && crate::daemon::running(layout).is_some() {
                    crate::daemon::restart(layout)?;
                }
            }
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
                AgentKind::Claude => {
                    if let Some(ep) = &http {
                        println!(
                            "Claude Code POSTs each tool call's hooks to 127.0.0.1:{} (horde's \
                             daemon, started by the session's first hook); the token is in {} \
                             and .horde/{}: keep both to yourself.",
                            ep.port,
                            path.display(),
                            hooks::http::FILE
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        HooksCommand::Uninstall(t) => {
            let (agent, path) = target_path(&t)?;
            if agent == AgentKind::Claude
                && !t.user
                && let Ok(layout) = Layout::discover(&cwd()?)
                && hooks::http::remove(&layout)?
                && crate::daemon::running(&layout).is_some()
            {
                crate::daemon::restart(&layout)?;
            }
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
                    "{:<7} {:<16} {}  ({} events{}{}{})",
                    s.agent,
                    s.mode.as_deref().unwrap_or("?"),
                    s.file,
                    s.events.len(),
                    s.http_port
                        .map(|p| format!(", tool calls over HTTP to 127.0.0.1:{p}"))
                        .unwrap_or_default(),
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
                Ok(result) => hooks::settle(result, agent, mode, kind, &session),
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
