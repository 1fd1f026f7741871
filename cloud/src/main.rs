//! `horde-cloud`: parse the command line, set up logging, run.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use horde_cloud::{Config, ServeArgs};

#[derive(Parser)]
#[command(
    name = "horde-cloud",
    version,
    about = "The Code Horde cloud: multi-tenant API for registration, keys, devices, exactly-once ingest, queries and blobs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (stops gracefully on SIGINT/SIGTERM)
    Serve(Box<ServeArgs>),
    /// Print the OpenAPI document
    Openapi,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Openapi => {
            println!("{}", horde_cloud::openapi::json());
            ExitCode::SUCCESS
        }
        Command::Serve(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("HORDE_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .init();
            match serve(*args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("horde-cloud: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(horde_cloud::serve(config, |addr| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "horde-cloud listening on http://{addr}");
        let _ = out.flush();
    }))
}
