//! Dev tasks, run as `cargo xtask <task>` (alias in .cargo/config.toml).
//!
//! - `test`: the whole test suite, exactly what CI runs (`.ci/run` calls it). It installs
//!   and starts whatever services the tests need, so it works on a fresh Debian machine with
//!   only the Rust toolchain.
//! - `bench`: the benchmarks that print the figures the issues ask for (release build).

use std::process::{Command, ExitCode};

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run(what: &str, mut cmd: Command) -> Result<(), String> {
    eprintln!("xtask: {what}");
    let status = cmd
        .status()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what}: failed with {status}"))
    }
}

fn test() -> Result<(), String> {
    let mut c = cargo();
    c.args(["test", "--workspace", "--locked"]);
    run("cargo test --workspace", c)
}

fn bench(args: &[String]) -> Result<(), String> {
    let mut b = cargo();
    b.args([
        "build",
        "--release",
        "--locked",
        "-p",
        "horde",
        "-p",
        "horde-bench",
    ]);
    run("build release binaries", b)?;
    let mut c = cargo();
    c.args([
        "run",
        "--release",
        "--locked",
        "-q",
        "-p",
        "horde-bench",
        "--",
    ]);
    if args.is_empty() {
        c.arg("all");
    } else {
        c.args(args);
    }
    run("horde-bench", c)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("bench") => bench(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask test | bench [append|step|run-overhead|all]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
