//! `horde daemon start|stop|status|run`: the per-repository process that answers the agents'
//! hooks from an open store (see [`crate::daemon`]). Hooks start it by themselves; these
//! commands are for people and scripts.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use crate::daemon;
use crate::session::cwd;
use crate::store::Layout;

#[derive(Subcommand, Debug)]
pub enum DaemonCommand {
    /// Start this repository's daemon in the background (nothing happens if one runs).
    Start(IdleArgs),
    /// Stop this repository's daemon (SIGTERM; it finishes the call it is recording).
    Stop,
    /// Whether this repository's daemon runs: its pid and socket.
    Status,
    /// Run the daemon in the foreground (what `start` and the hooks start).
    Run(IdleArgs),
}

#[derive(Args, Debug)]
pub struct IdleArgs {
    /// Leave after this many seconds without a call.
    #[arg(long, value_name = "SECS", default_value_t = crate::daemon::DEFAULT_IDLE_SECS)]
    pub idle: u64,
}

fn layout() -> Result<Layout> {
    Layout::discover(&cwd()?).context("not in a horde repository (run `horde init` first)")
}

pub fn cmd_daemon(cmd: DaemonCommand) -> Result<ExitCode> {
    let layout = layout()?;
    let p = daemon::paths(&layout);
    match cmd {
        DaemonCommand::Run(a) => {
            if a.idle == 0 {
                bail!("--idle must be at least 1 second");
            }
            daemon::serve(layout, Duration::from_secs(a.idle), |p| {
                eprintln!("horde daemon: listening on {}", p.socket.display());
            })?;
            Ok(ExitCode::SUCCESS)
        }
        DaemonCommand::Start(a) => {
            if a.idle == 0 {
                bail!("--idle must be at least 1 second");
            }
            if let Some(pid) = daemon::running(&layout) {
                println!(
                    "the daemon already runs (pid {pid}): {}",
                    p.socket.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            // Ready when it answers on its socket (it watches the tree first).
            daemon::start_and_wait(
                &layout,
                Duration::from_secs(60),
                Duration::from_secs(a.idle),
            )
            .with_context(|| format!("see {}", p.log.display()))?;
            println!(
                "the daemon runs (pid {}): {}",
                daemon::running(&layout).map_or("?".into(), |p| p.to_string()),
                p.socket.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        DaemonCommand::Stop => {
            let Some(pid) = daemon::running(&layout) else {
                println!("no daemon runs for {}", layout.root.display());
                return Ok(ExitCode::SUCCESS);
            };
            daemon::stop(&layout, pid)?;
            println!("stopped the daemon (pid {pid})");
            Ok(ExitCode::SUCCESS)
        }
        DaemonCommand::Status => match daemon::running(&layout) {
            Some(pid) => {
                println!("running (pid {pid}): {}", p.socket.display());
                Ok(ExitCode::SUCCESS)
            }
            None => {
                println!("not running (hooks start it; or `horde daemon start`)");
                Ok(ExitCode::from(1))
            }
        },
    }
}
