//! The binary: the listening line, the stderr log, SIGUSR1 toggling faults, SIGTERM, flag
//! errors and --help.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use common::{PATIENCE, exchange, is_reset, pattern, source_server};
use rustix::process::{Pid, Signal, kill_process};

const BIN: &str = env!("CARGO_BIN_EXE_horde-proxy");

/// A running `horde-proxy`, killed (by its own pid) if the test ends early.
struct Running {
    child: Child,
    stdout: BufReader<ChildStdout>,
    stderr: mpsc::Receiver<String>,
    addr: SocketAddr,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting horde-proxy");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("reading the listening line");
        let addr = line
            .strip_suffix('\n')
            .and_then(|line| line.strip_prefix("listening on "))
            .unwrap_or_else(|| panic!("not a listening line: {line:?}"))
            .parse()
            .expect("an address on the listening line");
        Running {
            child,
            stdout,
            stderr: rx,
            addr,
        }
    }

    fn signal(&self, signal: Signal) {
        kill_process(Pid::from_child(&self.child), signal).expect("signalling horde-proxy");
    }

    /// Waits for a stderr line starting with `prefix`, skipping others.
    fn expect_line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => continue,
                Err(error) => panic!("no stderr line `{prefix}…`: {error}"),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigusr1_toggles_faults_and_sigterm_stops() {
    let body = Arc::new(pattern(1 << 20, 7));
    let upstream = source_server(Arc::clone(&body)).await;
    let upstream = upstream.to_string();
    let mut proxy = tokio::task::block_in_place(|| {
        Running::start(&[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--seed",
            "3",
            "--cut-probability",
            "1",
            "--cut-after",
            "100..200",
            "--direction",
            "down",
        ])
    });
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    let (got, result) = exchange(proxy.addr, request).await;
    assert!(is_reset(&result), "faults on: client saw {result:?}");
    assert!(got.len() <= 200, "{} bytes before the cut", got.len());
    tokio::task::block_in_place(|| {
        let accepted = proxy.expect_line("conn 1 accepted from 127.0.0.1:");
        let cut = proxy.expect_line("conn 1 cut after ");
        let after: u64 = cut
            .strip_prefix("conn 1 cut after ")
            .and_then(|rest| rest.strip_suffix(" bytes down"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a cut line: {cut:?}"));
        assert!(
            accepted.ends_with(&format!("(plan: cut down after {after} bytes)")),
            "{accepted}"
        );
        assert!((100..=200).contains(&after), "{cut}");
        proxy.signal(Signal::USR1);
        assert_eq!(proxy.expect_line("faults "), "faults off");
    });

    let (got, result) = exchange(proxy.addr, request).await;
    result.expect("faults off: a clean exchange");
    assert!(got == *body, "faults off: the whole response");
    tokio::task::block_in_place(|| {
        assert_eq!(
            proxy.expect_line("conn 2 closed"),
            format!(
                "conn 2 closed (up {} bytes, down {} bytes)",
                request.len(),
                body.len()
            )
        );
        proxy.signal(Signal::USR1);
        assert_eq!(proxy.expect_line("faults "), "faults on");
    });

    let (_, result) = exchange(proxy.addr, request).await;
    assert!(is_reset(&result), "faults on again: client saw {result:?}");
    tokio::task::block_in_place(|| {
        proxy.expect_line("conn 3 cut after ");
        proxy.signal(Signal::TERM);
        let status = proxy.child.wait().expect("waiting for horde-proxy");
        assert!(status.success(), "SIGTERM: {status}");
        let mut rest = String::new();
        proxy
            .stdout
            .read_to_string(&mut rest)
            .expect("reading stdout");
        assert_eq!(rest, "", "stdout holds the listening line only");
    });
}

#[test]
fn help_documents_the_protocol_and_the_toggle() {
    let output = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("running --help");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).expect("UTF-8 help");
    for needle in [
        "--cut-probability",
        "--cut-after",
        "--direction",
        "--delay-ms",
        "--refuse-probability",
        "--seed",
        "listening on 127.0.0.1:PORT",
        "SIGUSR1",
        "cut after 1534 bytes up",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn bad_flags_name_the_input() {
    for (args, needle) in [
        (&["--cut-after", "5..1"][..], "5..1"),
        (&["--cut-probability", "1.5"][..], "1.5"),
        (&["--direction", "sideways"][..], "sideways"),
        (&["--delay-ms", "x"][..], "`x`"),
    ] {
        let output = Command::new(BIN)
            .args(["--upstream", "127.0.0.1:1"])
            .args(args)
            .output()
            .expect("running horde-proxy");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
