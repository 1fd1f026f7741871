//! `horde-bench policy --quick` runs to the end and prints its figures (no timing asserted).

use std::process::Command;

#[test]
fn policy_quick_prints_decide_and_cedar_figures() {
    let out = Command::new(env!("CARGO_BIN_EXE_horde-bench"))
        .args(["policy", "--quick"])
        .output()
        .expect("horde-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status
    );
    for needle in [
        "200 rules",
        "decide ",
        "bare Cedar",
        "decide/Cedar",
        "p99",
        "chains",
        "paths on disk",
    ] {
        assert!(
            stdout.contains(needle),
            "{needle:?} missing from:\n{stdout}"
        );
    }
    // The mix must exercise all three verdicts.
    let line = stdout
        .lines()
        .find(|l| l.contains("verdicts in the mix"))
        .expect("verdict line");
    for verdict in ["allow", "deny", "ask"] {
        let count: usize = line
            .split(',')
            .find(|part| part.contains(verdict))
            .and_then(|part| part.split_whitespace().rev().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(count > 0, "no {verdict} in: {line}");
    }
}
