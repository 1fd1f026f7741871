//! The `horde-proxy` binary: flags → [`horde_proxy::Faults`], the listening line on stdout,
//! the connection log on stderr, SIGUSR1 flips faults, SIGINT/SIGTERM end it.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use horde_proxy::{CutDirection, Event, Faults, Probability, Proxy, Span};
use tokio::signal::unix::{SignalKind, signal};

const AFTER_HELP: &str = "\
OUTPUT:
  stdout  exactly one line once bound, then nothing:
            listening on 127.0.0.1:PORT
  stderr  one line per event; each connection has `accepted` first and then exactly one of
          `refused`, `upstream connect failed`, `cut` or `closed`:
            conn 3 accepted from 127.0.0.1:51234 (plan: cut up after 1534 bytes)
            conn 3 cut after 1534 bytes up
            conn 4 accepted from 127.0.0.1:51240 (plan: pass)
            conn 4 closed (up 210 bytes, down 5120 bytes)
            conn 5 closed (up 10 bytes, down 0 bytes): read from client: Connection reset by peer (os error 104)
            conn 6 refused
            faults off

SIGNALS:
  SIGUSR1          toggle faults: off makes every connection accepted afterwards a clean pass
                   (no refusal, no cut; --delay-ms stays), on restores the configured faults.
                   Connections already open keep their plan. Logged as `faults off`/`faults on`.
  SIGINT, SIGTERM  stop (exit status 0).

DETERMINISM:
  Connections are numbered from 1 in accept order; connection N's refusal, cut direction,
  cut point and delays depend only on --seed and N. Toggling faults does not shift the numbers.

EXAMPLE:
  horde-proxy --upstream 127.0.0.1:8080 --seed 7 --cut-probability 0.3 --cut-after 1000..200000";

/// TCP fault-injection proxy for end-to-end tests of the edge→cloud sync protocol.
///
/// Forwards every connection on --listen to --upstream in chunks of at most 16 KiB. Per
/// connection, seeded by --seed and the connection number: with --refuse-probability the
/// connection is reset as soon as it is accepted; with --cut-probability both sides are reset
/// (SO_LINGER 0: the peers see a reset, not a clean end of stream) once a number of bytes drawn
/// from --cut-after has been forwarded in the --direction drawn for it. --delay-ms adds latency
/// before each forwarded chunk.
#[derive(Parser, Debug)]
#[command(
    name = "horde-proxy",
    after_help = "SIGUSR1 toggles faults off/on; SIGINT/SIGTERM stop. Output protocol: see --help.",
    after_long_help = AFTER_HELP
)]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,

    /// Where to forward connections (HOST:PORT, resolved for each connection).
    #[arg(long, value_name = "HOST:PORT")]
    upstream: String,

    /// Seed of the fault draws: the same seed gives the same faults to connection N.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,

    /// Probability (0 to 1) that a connection is cut.
    #[arg(long, value_name = "P", default_value = "0")]
    cut_probability: Probability,

    /// Bytes forwarded in the cut direction before the cut, drawn from MIN..MAX (inclusive)
    /// or exactly N. 0 cuts as soon as the first byte arrives in that direction.
    #[arg(long, value_name = "MIN..MAX", default_value = "0..1048576")]
    cut_after: Span,

    /// Direction the cut counts and lands in: up = client→upstream (mid-request), down =
    /// upstream→client (mid-response), both = drawn per connection.
    #[arg(long, value_name = "up|down|both", default_value = "both")]
    direction: CutDirection,

    /// Latency in milliseconds added before each forwarded chunk, drawn from MIN..MAX
    /// (inclusive) or exactly N.
    #[arg(long, value_name = "MIN..MAX", default_value = "0")]
    delay_ms: Span,

    /// Probability (0 to 1) that a connection is reset as soon as it is accepted, without
    /// contacting the upstream.
    #[arg(long, value_name = "P", default_value = "0")]
    refuse_probability: Probability,
}

fn log(event: &Event) {
    // A closed stderr must not stop the proxy.
    let _ = writeln!(std::io::stderr().lock(), "{event}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let faults = Faults {
        seed: args.seed,
        cut_probability: args.cut_probability,
        cut_after: args.cut_after,
        direction: args.direction,
        delay_ms: args.delay_ms,
        refuse_probability: args.refuse_probability,
    };
    // Handlers first: a SIGUSR1 sent right after the listening line must not kill us.
    let mut usr1 = signal(SignalKind::user_defined1()).context("installing SIGUSR1 handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;

    let proxy = Proxy::bind(args.listen, &args.upstream, faults)
        .await
        .with_context(|| format!("binding --listen {}", args.listen))?;
    let local = proxy.local_addr().context("reading the bound address")?;
    let switch = proxy.switch();
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {local}").context("writing to stdout")?;
        stdout.flush().context("flushing stdout")?;
    }
    let server = tokio::spawn(proxy.run(Arc::new(|event| log(&event))));
    loop {
        tokio::select! {
            _ = usr1.recv() => log(&Event::Faults { on: switch.toggle() }),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    server.abort();
    Ok(())
}
