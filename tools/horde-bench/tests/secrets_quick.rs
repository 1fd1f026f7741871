//! `horde-bench secrets --quick` runs end to end: it builds its corpus, scans it, and prints
//! the throughput and recall figures (and detect-secrets' beside them when
//! `HORDE_DETECT_SECRETS` is set). Nothing is asserted about the figures' values but that our
//! scanner found some of the secrets it inserted.

use std::process::Command;

#[test]
fn secrets_quick_prints_the_figures() {
    let out = Command::new(env!("CARGO_BIN_EXE_horde-bench"))
        .args(["secrets", "--quick", "--repeats", "1"])
        .output()
        .expect("run horde-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    println!("{stdout}");
    for label in [
        "throughput, MB/s (single thread)",
        "recall on inserted secrets",
        "other lines reported (FP)",
    ] {
        assert!(stdout.contains(label), "missing {label:?} in:\n{stdout}");
    }
    let recall_line = stdout
        .lines()
        .find(|l| l.starts_with("recall on inserted secrets"))
        .expect("recall line");
    let ours: f64 = recall_line
        .split_whitespace()
        .nth(4)
        .and_then(|v| v.trim_end_matches('%').parse().ok())
        .unwrap_or_else(|| panic!("no percentage in {recall_line:?}"));
    assert!(
        ours > 0.0,
        "our scanner found none of the inserted secrets: {recall_line}"
    );
    if std::env::var_os("HORDE_DETECT_SECRETS").is_some() {
        assert!(
            stdout.contains("ratio horde/detect-secrets throughput"),
            "{stdout}"
        );
    } else {
        assert!(stdout.contains("anchor skipped"), "{stdout}");
    }
}
