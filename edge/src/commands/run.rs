//! `horde run`: run a command and record everything it does.

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::session::{EXIT_INCOMPLETE, open_store, print_problems};

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
            secret_key: crate::config::fingerprint_key()?,
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
