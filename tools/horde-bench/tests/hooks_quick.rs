//! `horde-bench hooks --quick` runs the PreToolUse round-trip figure end to end, through the
//! daemon and alone, and the recording overhead of a short real Claude Code session (no
//! timing asserted; under CI, where `cargo xtask test` installs Claude Code, the session
//! figure must be there).

use std::process::Command;

#[test]
fn hooks_quick_prints_the_pretooluse_round_trip() {
    let horde = std::env::current_exe()
        .expect("test executable")
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("horde");
    let out = Command::new(env!("CARGO_BIN_EXE_horde-bench"))
        .args(["hooks", "--quick"])
        .env("HORDE_BIN", &horde)
        .output()
        .expect("horde-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("with the daemon")
            && stdout.contains("alone (HORDE_DAEMON=off)")
            && stdout.contains("the floor at p99"),
        "figures missing from:\n{stdout}"
    );
    let session =
        stdout.contains("Claude Code with horde's hooks") && stdout.contains("calls recorded");
    let skipped = stdout.contains("Claude Code session: skipped");
    assert!(
        session || (skipped && std::env::var_os("CI").is_none()),
        "the session figure is missing from:\n{stdout}"
    );
}
