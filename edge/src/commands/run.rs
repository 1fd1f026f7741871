//! `horde run`: run a command and record everything it does.

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::session::{EXIT_ASK, EXIT_DENIED, EXIT_INCOMPLETE, open_store, print_problems};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Name of the agent doing the work (default: config `agent`, else the command's name).
    /// With --role, a named agent has a standing: its tier (promoted after 5 compliant tasks,
    /// demoted on a denied command) decides, and its error budget per --session (20 errors,
    /// 3 repeats of one error, 2 violations) revokes it in that session when exhausted.
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
    /// Decide the command with this role's manifest before running it: deny refuses it (exit
    /// 4), ask records an approval request (exit 5, or with --wait, waits for a person). The
    /// verdict is recorded on the command's ToolCall, a denial as an Approval event.
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// With --role: the agent session (answers remembered `--for session` apply within it).
    #[arg(long, default_value = "", requires = "role")]
    pub session: String,
    /// With --role: when the policy asks, wait up to SECS for a person's answer.
    #[arg(long, value_name = "SECS", requires = "role")]
    pub wait: Option<u64>,
    /// Run the command confined (as `horde sandbox run` does: only the worktree writable,
    /// no network but allowed hosts, bounded resources); the ToolCall records how it was
    /// confined, every connection it tried and the limits it reached. With --role, the
    /// role's manifest shapes the sandbox too (network allow-list, denied files, wall time).
    #[arg(long)]
    pub sandbox: bool,
    #[command(flatten)]
    pub sandbox_opts: crate::commands::sandbox::SandboxOpts,
    /// When the command is Claude Code: pass horde's hooks for this run (`--settings`, no
    /// install needed) in this mode, so each tool call and the file changes it made are
    /// recorded as `horde hooks install` records them; `off`: record the run only.
    #[arg(long, value_name = "MODE", default_value = "audit", value_parser = ["audit", "enforce", "off"])]
    pub hooks: String,
    /// The manifest role the hooks decide tool calls under.
    #[arg(long, value_name = "ROLE", default_value = "builder")]
    pub hook_role: String,
    /// The command and its arguments, after `--`.
    #[arg(required = true, value_name = "CMD", allow_hyphen_values = true)]
    pub command: Vec<OsString>,
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
    if !args.sandbox && args.sandbox_opts != crate::commands::sandbox::SandboxOpts::default() {
        anyhow::bail!("the sandbox options (--allow-net, --rw, --memory, …) need --sandbox");
    }
    let store = open_store()?;
    let output = output_mode(&args);
    let mut policy_verdict = String::new();
    let mut trust_after = None;
    if let Some(role) = &args.role {
        let argv: Vec<String> = args
            .command
            .iter()
            .map(|a| {
                a.to_str().map(str::to_owned).ok_or_else(|| {
                    anyhow::anyhow!("--role: cannot judge a command with a non-UTF-8 argument")
                })
            })
            .collect::<Result<_>>()?;
        let agent = args.agent.clone().unwrap_or_else(|| role.clone());
        // A named agent has a standing (tier, error budget) that the decision uses and this
        // task moves; a person running a command under a role has none.
        let policy = crate::gate::role_policy(role)?;
        let standing = match &args.agent {
            Some(a) => {
                let cur = crate::trust::current(&store.ledger.conn, a, &args.session, policy.tier)?;
                if let Some(b) = cur.revoked() {
                    eprintln!(
                        "horde: not run: {a} is revoked in session {:?} ({b}); its handoff is in `horde log --type signal`",
                        args.session
                    );
                    return Ok(ExitCode::from(EXIT_DENIED));
                }
                Some(cur)
            }
            None => None,
        };
        let gate = crate::gate::gate_command(
            &store,
            &policy,
            &args.session,
            &agent,
            &argv,
            args.wait,
            standing.as_ref(),
        )?;
        let line = crate::gate::shell_join(&argv);
        let settle = |outcome: crate::trust::Outcome| -> Result<()> {
            if let (Some(a), Some(cur)) = (&args.agent, &standing) {
                let r = crate::trust::record(
                    &store,
                    a,
                    role,
                    &args.session,
                    &line,
                    cur.clone(),
                    outcome,
                )?;
                report_standing(a, &args.session, &r);
            }
            Ok(())
        };
        match gate.verdict {
            horde_policy::decide::Verdict::Allow => policy_verdict = gate.summary,
            horde_policy::decide::Verdict::Deny => {
                eprintln!("horde: not run: {}", gate.summary);
                settle(if gate.by_policy {
                    crate::trust::Outcome::Denied { rule: gate.summary }
                } else {
                    crate::trust::Outcome::NotRun
                })?;
                return Ok(ExitCode::from(EXIT_DENIED));
            }
            horde_policy::decide::Verdict::Ask => {
                eprintln!("horde: not run: {}", gate.summary);
                settle(crate::trust::Outcome::NotRun)?;
                return Ok(ExitCode::from(EXIT_ASK));
            }
        }
        trust_after = Some((standing, line));
    }
    // The profile's errors and a command that does not exist stop here, before anything runs.
    let sandbox = if args.sandbox {
        match crate::commands::sandbox::prepare(
            &args.sandbox_opts,
            args.role.as_deref(),
            &store.ledger.layout.root,
            &args.command,
        ) {
            Ok(p) => {
                // Its placeholders are nobody's change.
                if let Some(p) = &p {
                    crate::scan::hide_from_scans(p.placeholders());
                }
                Some(p)
            }
            Err(e) => {
                if let Some(se) = e.downcast_ref::<horde_sandbox::SandboxError>() {
                    return Ok(crate::commands::sandbox::sandbox_error(se));
                }
                return Err(e);
            }
        }
    } else {
        None
    };
    let (argv, hooked) = agent_hooks(&args, &store.ledger.layout.root)?;
    let out = crate::run::run(
        &store,
        crate::run::RunOptions {
            sandbox,
            argv,
            agent: args.agent.clone(),
            output,
            secret_key: crate::config::fingerprint_key()?,
            policy_verdict,
            flush: hooked.is_none(),
            session: hooked.flatten().unwrap_or_default(),
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
    if let (Some((Some(cur), line)), Some(agent), Some(role)) =
        (trust_after, &args.agent, &args.role)
    {
        let outcome = if out.exit_code == 0 && out.spawn_error.is_none() {
            crate::trust::Outcome::Succeeded
        } else {
            crate::trust::Outcome::Failed {
                message: crate::trust::failure_message(&line, out.exit_code),
            }
        };
        let r = crate::trust::record(&store, agent, role, &args.session, &line, cur, outcome)?;
        report_standing(agent, &args.session, &r);
    }
    let code = if out.exit_code == 0 && !out.skipped.is_empty() {
        EXIT_INCOMPLETE
    } else {
        u8::try_from(out.exit_code.clamp(0, 255)).unwrap_or(1)
    };
    Ok(ExitCode::from(code))
}

/// The command line to run: Claude Code with horde's hooks for this run (unless `--hooks
/// off`, or they are installed already). Some(session) when the agent's hooks record the
/// session (the session id when horde chose it).
fn agent_hooks(
    args: &RunArgs,
    root: &std::path::Path,
) -> Result<(Vec<std::ffi::OsString>, Option<Option<String>>)> {
    use crate::hooks::{AgentKind, Mode, install};
    let is_claude = args
        .command
        .first()
        .and_then(|p| std::path::Path::new(p).file_name())
        .is_some_and(|n| n == "claude");
    let Some(mode) = Mode::parse(&args.hooks).filter(|_| is_claude) else {
        return Ok((args.command.clone(), None));
    };
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    if home
        .as_deref()
        .is_some_and(|h| install::installed(AgentKind::Claude, root, h))
    {
        if !args.quiet {
            eprintln!("horde: Claude Code's installed hooks record this session");
        }
        return Ok((args.command.clone(), Some(None)));
    }
    // The role must exist before the agent depends on it.
    crate::gate::role_policy(&args.hook_role)?;
    let plan = install::Plan {
        agent: AgentKind::Claude,
        mode,
        role: args.hook_role.clone(),
        timeout_secs: 30,
        wait_secs: 0,
        http: None,
        exe: std::env::current_exe()
            .and_then(|e| e.canonicalize())
            .context("cannot tell where this horde binary is")?,
    };
    let (argv, session) =
        install::claude_run_argv(&plan, &args.command).context("the command is Claude Code")?;
    if !args.quiet {
        eprintln!(
            "horde: recording Claude Code through its hooks ({} mode{})",
            mode.as_str(),
            session
                .as_deref()
                .map(|s| format!(", session {s}"))
                .unwrap_or_default()
        );
    }
    Ok((argv, Some(session)))
}

/// Tells the user what a task did to the agent's standing.
fn report_standing(agent: &str, session: &str, r: &crate::trust::Recorded) {
    if let Some(c) = &r.change {
        eprintln!("horde: {agent}: {} → {} ({})", c.from, c.to, c.reason);
    }
    if let Some(b) = &r.breach {
        eprintln!(
            "horde: {agent} is revoked in session {session:?}: {b}; a handoff for its successor is recorded"
        );
    }
}
