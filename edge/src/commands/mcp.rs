//! `horde mcp`: horde's tools for the agents people use, as an MCP server on stdin/stdout
//! (see [`crate::mcp`] for what the tools do here and [`horde_mcp`] for the protocol side).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::session::{cwd, load_key};
use crate::store::Layout;

#[derive(Args, Debug)]
pub struct McpArgs {
    /// A directory below which the `restore` tool may create its target (repeatable; default:
    /// the system's temporary directory).
    #[arg(long = "restore-root", value_name = "DIR")]
    pub restore_roots: Vec<PathBuf>,
}

pub fn cmd_mcp(a: McpArgs) -> Result<ExitCode> {
    let layout =
        Layout::discover(&cwd()?).context("not in a horde repository (run `horde init` first)")?;
    let roots = if a.restore_roots.is_empty() {
        vec![std::env::temp_dir()]
    } else {
        a.restore_roots
    };
    let backend = crate::mcp::EdgeBackend::open(layout, load_key()?, &roots)?;
    let server = horde_mcp::HordeMcp::new(backend, env!("CARGO_PKG_VERSION"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the MCP server's runtime")?;
    rt.block_on(horde_mcp::serve_stdio(server))?;
    Ok(ExitCode::SUCCESS)
}
