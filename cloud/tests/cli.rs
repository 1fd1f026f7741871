//! The binary's own command line (the API itself is tested end to end in the root `tests/`,
//! which relies on `cargo test --workspace` building this binary for this test target).

use std::process::Command;

fn cloud() -> Command {
    Command::new(env!("CARGO_BIN_EXE_horde-cloud"))
}

#[test]
fn prints_the_openapi_document() {
    let out = cloud().arg("openapi").output().expect("run");
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for path in [
        "/v1/signup",
        "/v1/projects/{id}/sync",
        "/v1/projects/{id}/events",
        "/v1/blobs/{hash}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
}

#[test]
fn help_names_every_setting_and_its_variable() {
    let out = cloud().args(["serve", "--help"]).output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    for s in [
        "--store",
        "HORDE_STORE",
        "--blobs",
        "HORDE_S3_ENDPOINT",
        "--s3-path-style",
        "--max-blob-bytes",
        "--rate-limit",
        "--config",
    ] {
        assert!(help.contains(s), "{s} missing from:\n{help}");
    }
}

#[test]
fn a_store_without_fdb_support_says_how_to_get_it() {
    if cfg!(feature = "fdb") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let out = cloud()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            "fdb:",
            "--blobs",
        ])
        .arg(format!("fs:{}", dir.path().display()))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--features fdb"), "{err}");
}
