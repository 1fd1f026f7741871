//! `sandbox`: what confinement costs, three figures.
//!
//! - Start-up: a sandboxed `true` (`horde_sandbox::Prepared`: profile, cgroup, bubblewrap,
//!   horde's init inside, Landlock and seccomp, the report) against bare `bwrap` with exactly
//!   the same arguments (the same binds; `true` instead of init) and a plain spawn of `true`;
//!   and the whole CLI (`horde sandbox run -- true`) for reference. Goal: sandboxed ≤ 1.3×
//!   bare bwrap.
//! - A real build: `make -B -j2` of a generated C project (24 files) inside the sandbox vs
//!   outside, same directory, alternating. Goal: inside ≥ 0.95× the unconfined speed.
//! - Proxy throughput: curl downloading from a plain-HTTP server on loopback, directly vs
//!   from inside the sandbox through the bridge and horde's proxy (curl's own
//!   `speed_download`, so start-up is not in it). Goal: ≥ 0.8× the direct speed.
//!
//! Runs of the sides alternate; medians are reported. Nothing is asserted about timing.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use horde_sandbox::{Limits, Mechanism, Prepared, ProfileBuilder};

use crate::util::{horde, horde_bin, median, ms, print_missing_horde};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Few runs and small sizes (what the test suite runs so this cannot rot).
    #[arg(long)]
    pub quick: bool,
    /// Start-up runs of each side (default 40, 5 with --quick).
    #[arg(long)]
    pub runs: Option<usize>,
}

/// Runs `argv` under `profile` through the library, as `horde run --sandbox` does; returns
/// its stdout.
fn sandboxed(
    profile: &horde_sandbox::Profile,
    mech: &Mechanism,
    init: &Path,
    argv: &[&str],
) -> Result<Vec<u8>> {
    sandboxed_phases(profile, mech, init, argv).map(|(out, _)| out)
}

/// Like `sandboxed`, with the time of each phase: prepare, spawn (until the command runs),
/// run (until it ended), finish.
fn sandboxed_phases(
    profile: &horde_sandbox::Profile,
    mech: &Mechanism,
    init: &Path,
    argv: &[&str],
) -> Result<(Vec<u8>, [f64; 4])> {
    let t0 = Instant::now();
    let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
    let mut p = Prepared::new(profile, &argv, mech, init)?;
    let t1 = Instant::now();
    p.command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = p.spawn()?;
    let t2 = Instant::now();
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .context("stdout")?
        .read_to_end(&mut out)?;
    let mut err = String::new();
    child
        .stderr
        .take()
        .context("stderr")?
        .read_to_string(&mut err)?;
    let status = child.wait()?;
    let t3 = Instant::now();
    let report = p.finish(Some(&status));
    let t4 = Instant::now();
    ensure!(
        status.success() && report.limits_hit.is_empty(),
        "sandboxed {argv:?} failed ({status}, limits {:?}): {err}",
        report.limits_hit
    );
    Ok((out, [t1 - t0, t2 - t1, t3 - t2, t4 - t3].map(ms)))
}

fn run_ok(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

pub fn run(args: &Args) -> Result<()> {
    let Some(bin) = horde_bin()? else {
        print_missing_horde("sandbox");
        return Ok(());
    };
    let mech = Mechanism::detect_working();
    let Mechanism::Bubblewrap { path: bwrap, .. } = &mech else {
        println!("sandbox        skipped: {}", mech.describe());
        return Ok(());
    };
    let runs = args.runs.unwrap_or(if args.quick { 5 } else { 40 });
    ensure!(runs > 0, "--runs must be positive");
    let repo = tempfile::tempdir()?;
    let config = tempfile::tempdir()?;
    std::fs::create_dir(repo.path().join(".git"))?;
    let profile = ProfileBuilder::new(repo.path()).build()?;
    println!("sandbox        {}", mech.describe());

    // 1. Start-up.
    // Bare bwrap gets the very arguments horde gives it, with `true` in place of init (the
    // prepared sandbox stays alive meanwhile: its placeholders are bound).
    let mut model = Prepared::new(&profile, &["true".into()], &mech, &bin)?;
    let all: Vec<OsString> = model
        .command()
        .get_args()
        .map(|a| a.to_os_string())
        .collect();
    let cut = all
        .iter()
        .position(|a| a == "--")
        .context("no `--` in bubblewrap's arguments")?;
    // Without `--info-fd N` (horde reads it to move init into the cgroup).
    let mut bare_args: Vec<OsString> = all[..=cut].to_vec();
    if bare_args.first().is_some_and(|a| a == "--info-fd") {
        bare_args.drain(..2);
    }
    bare_args.push("true".into());
    let rlimits_only = ProfileBuilder::new(repo.path()).cgroup(false).build()?;
    let (mut t_sbx, mut t_bwrap, mut t_plain, mut t_cli, mut t_nocg) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut phases: [Vec<f64>; 4] = Default::default();
    for _ in 0..runs {
        let t = Instant::now();
        let (_, ph) = sandboxed_phases(&profile, &mech, &bin, &["true"])?;
        t_sbx.push(ms(t.elapsed()));
        for (v, x) in phases.iter_mut().zip(ph) {
            v.push(x);
        }
        let t = Instant::now();
        sandboxed(&rlimits_only, &mech, &bin, &["true"])?;
        t_nocg.push(ms(t.elapsed()));
        let t = Instant::now();
        run_ok(Command::new(bwrap).args(&bare_args).env_clear())?;
        t_bwrap.push(ms(t.elapsed()));
        let t = Instant::now();
        run_ok(&mut Command::new("true"))?;
        t_plain.push(ms(t.elapsed()));
        let t = Instant::now();
        run_ok(&mut horde(
            &bin,
            config.path(),
            repo.path(),
            &["sandbox", "run", "--", "true"],
        ))?;
        t_cli.push(ms(t.elapsed()));
    }
    drop(model.finish(None));
    let (sbx, bw, plain, cli, nocg) = (
        median(&t_sbx),
        median(&t_bwrap),
        median(&t_plain),
        median(&t_cli),
        median(&t_nocg),
    );
    println!("start-up       `true`, median of {runs} runs");
    println!("  sandboxed (library)    {sbx:>8.2} ms");
    println!(
        "    phases: prepare {:.2}, start (until the command runs) {:.2}, run {:.2}, finish {:.2} ms",
        median(&phases[0]),
        median(&phases[1]),
        median(&phases[2]),
        median(&phases[3])
    );
    println!("  sandboxed, no cgroup   {nocg:>8.2} ms");
    println!("  bare bwrap, same binds {bw:>8.2} ms");
    println!("  plain spawn            {plain:>8.2} ms");
    println!("  horde sandbox run (CLI){cli:>8.2} ms");
    println!(
        "  sandboxed/bare bwrap = {:.2}x (goal <= 1.30x); without a cgroup {:.2}x; CLI/bare bwrap = {:.2}x",
        sbx / bw,
        nocg / bw,
        cli / bw
    );

    // 2. A real build.
    let files = if args.quick { 6 } else { 24 };
    let funcs = if args.quick { 50 } else { 400 };
    let proj = repo.path().join("cproj");
    write_c_project(&proj, files, funcs)?;
    let build_profile = ProfileBuilder::new(repo.path()).cwd(&proj).build()?;
    let builds = if args.quick { 1 } else { 5 };
    let make = ["make", "-s", "-B", "-j2"];
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for _ in 0..builds {
        let t = Instant::now();
        run_ok(Command::new(make[0]).args(&make[1..]).current_dir(&proj))?;
        outside.push(ms(t.elapsed()));
        let t = Instant::now();
        sandboxed(&build_profile, &mech, &bin, &make)?;
        inside.push(ms(t.elapsed()));
    }
    let (i, o) = (median(&inside), median(&outside));
    println!(
        "build          make -B -j2 of {files} C files x {funcs} functions, median of {builds}"
    );
    println!("  outside {o:>9.1} ms");
    println!("  inside  {i:>9.1} ms");
    println!(
        "  inside speed / outside speed = {:.2}x (goal >= 0.95x)",
        o / i
    );

    // 3. Proxy throughput.
    let mib: usize = if args.quick { 16 } else { 256 };
    let server = HttpServer::start(mib << 20)?;
    let url = format!("http://127.0.0.1:{}/", server.port);
    let net_profile = ProfileBuilder::new(repo.path())
        .allow_host(format!("127.0.0.1:{}", server.port))
        .limits(Limits::default())
        .build()?;
    let proxy = format!("http://127.0.0.1:{}", horde_sandbox::launch::PROXY_PORT);
    let curl = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download}"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v.push(url.clone());
        v
    };
    let speed = |out: Vec<u8>| -> Result<f64> {
        String::from_utf8_lossy(&out)
            .trim()
            .parse::<f64>()
            .context("curl printed no speed")
    };
    let transfers = if args.quick { 1 } else { 5 };
    let (mut direct, mut proxied) = (Vec::new(), Vec::new());
    for _ in 0..transfers {
        let argv = curl(&["--noproxy", "*"]);
        direct.push(speed(run_ok(Command::new(&argv[0]).args(&argv[1..]))?)?);
        let argv = curl(&["--noproxy", "", "--proxy", &proxy]);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        proxied.push(speed(sandboxed(&net_profile, &mech, &bin, &argv)?)?);
    }
    let (d, p) = (median(&direct), median(&proxied));
    println!("proxy          curl of {mib} MiB from loopback HTTP, median of {transfers}");
    println!("  direct            {:>9.1} MiB/s", d / 1048576.0);
    println!("  sandbox via proxy {:>9.1} MiB/s", p / 1048576.0);
    println!("  proxied/direct = {:.2}x (goal >= 0.80x)", p / d);
    Ok(())
}

fn write_c_project(dir: &Path, files: usize, funcs: usize) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut objs = Vec::new();
    for f in 0..files {
        let mut src = String::from("#include <string.h>\n#include <stdio.h>\n");
        for i in 0..funcs {
            src.push_str(&format!(
                "int f{f}_{i}(const char *s, int n) {{ int h = {i}; for (int k = 0; k < n; k++) {{ h = h * 31 + s[k % (int)strlen(s)]; if (h % 7 == {m}) h ^= k; }} return h; }}\n",
                m = i % 7
            ));
        }
        std::fs::write(dir.join(format!("f{f}.c")), src)?;
        objs.push(format!("f{f}.o"));
    }
    std::fs::write(dir.join("main.c"), "int main(void) { return 0; }\n")?;
    objs.push("main.o".into());
    let makefile = format!(
        "CFLAGS=-O2\nall: prog\nprog: {objs}\n\t$(CC) -o prog {objs}\n%.o: %.c\n\t$(CC) $(CFLAGS) -c $< -o $@\n",
        objs = objs.join(" ")
    );
    std::fs::write(dir.join("Makefile"), makefile)?;
    Ok(())
}

/// A plain-HTTP server on loopback answering every request with `size` bytes.
struct HttpServer {
    port: u16,
}

impl HttpServer {
    fn start(size: usize) -> Result<HttpServer> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let chunk = vec![b'x'; 1 << 20];
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let chunk = chunk.clone();
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
                    );
                    let mut left = size;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        if conn.write_all(&chunk[..n]).is_err() {
                            return;
                        }
                        left -= n;
                    }
                });
            }
        });
        Ok(HttpServer { port })
    }
}
