//! `horde-bench sandbox --quick` runs the three sandbox figures end to end (no timing
//! asserted): start-up, a C build inside and outside, the proxy's throughput.

use std::process::Command;

#[test]
fn sandbox_quick_prints_startup_build_and_proxy_figures() {
    let horde = std::env::current_exe()
        .expect("test executable")
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("horde");
    let out = Command::new(env!("CARGO_BIN_EXE_horde-bench"))
        .args(["sandbox", "--quick"])
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
    for needle in [
        "sandboxed/bare bwrap =",
        "inside speed / outside speed =",
        "proxied/direct =",
    ] {
        assert!(
            stdout.contains(needle),
            "{needle:?} missing from:\n{stdout}"
        );
    }
}
