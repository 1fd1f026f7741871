//! Withheld blobs from the user's side: a repository with a `.env` (a path every manifest
//! denies) and a source file holding a token the scanner finds, recorded by `horde init`,
//! synced by `horde sync` to a real `horde-cloud`. The events reach the cloud, the secrets do
//! not: the cloud's restore lists both paths as withheld (at a version and at an event, which
//! folds the checkpoint manifest), its tar holds the ordinary files byte for byte, no file of
//! the cloud's store or blob directory holds a secret's bytes, `horde log`/`show` say
//! withheld, and `horde clone` restores the rest and names the withheld paths.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use horde_e2e::{Cloud, binary, tar_entries};
use serde_json::Value;

fn horde(dir: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new(binary("horde"))
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("HOME", home)
        .env("USER", "tester")
        .env_remove("HORDE_API_KEY")
        .output()
        .expect("run horde")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(dir: &Path, home: &Path, args: &[&str]) -> String {
    let o = horde(dir, home, args);
    assert!(o.status.success(), "horde {args:?}: {}", text(&o));
    text(&o)
}

fn json(dir: &Path, home: &Path, args: &[&str]) -> Value {
    let o = horde(dir, home, args);
    assert!(o.status.success(), "horde {args:?}: {}", text(&o));
    serde_json::from_slice(&o.stdout).expect("json output")
}

/// `len` characters of `alphabet`, different on every run (secrets are made, never committed).
fn token(alphabet: &[u8], len: usize, seed: &mut u64) -> String {
    (0..len)
        .map(|_| {
            // xorshift64*
            *seed ^= *seed >> 12;
            *seed ^= *seed << 25;
            *seed ^= *seed >> 27;
            let r = seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
            alphabet[(r >> 33) as usize % alphabet.len()] as char
        })
        .collect()
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let ft = std::fs::symlink_metadata(&p).expect("stat").file_type();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                out.push(p);
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn secrets_stay_on_the_device_and_the_cloud_lists_them_as_withheld() {
    let cloud = Cloud::start();
    let signup = cloud.api(None).post(
        "/v1/signup",
        &serde_json::json!({"tenant": "acme", "email": "admin@example.com"}),
    );
    assert_eq!(signup.status, 201, "signup: {}", signup.body);
    let key = signup.json["api_key"].as_str().expect("api_key").to_owned();
    let api = cloud.api(Some(&key));

    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
        | 1;
    let upper = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let alnum = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let aws = format!("AKIA{}", token(upper, 16, &mut seed));
    let github = format!("ghp_{}", token(alnum, 36, &mut seed));
    let aws2 = format!("AKIA{}", token(upper, 16, &mut seed));

    let root = tempfile::tempdir().expect("tempdir");
    let (a, home_a) = (root.path().join("a"), root.path().join("home-a"));
    std::fs::create_dir_all(a.join("src")).expect("mkdir");
    std::fs::create_dir_all(&home_a).expect("mkdir");
    let env = format!("AWS_ACCESS_KEY_ID={aws}\n");
    let config = format!("pub const TOKEN: &str = \"{github}\";\n");
    let main = "fn main() {\n    println!(\"hello\");\n}\n";
    let readme = "# demo\n\nNothing secret here.\n";
    std::fs::write(a.join(".env"), &env).expect("write");
    std::fs::write(a.join("src/config.rs"), &config).expect("write");
    std::fs::write(a.join("src/main.rs"), main).expect("write");
    std::fs::write(a.join("README.md"), readme).expect("write");

    let init = ok(&a, &home_a, &["init"]);
    assert!(
        init.contains("src/config.rs") && init.contains("github-pat"),
        "init says why src/config.rs stays here:\n{init}"
    );
    ok(
        &a,
        &home_a,
        &["remote", "add", "origin", &cloud.url, "--key", &key],
    );
    // A later change of a withheld file is withheld too.
    std::fs::write(a.join(".env"), format!("{env}AWS_ACCESS_KEY_ID_2={aws2}\n")).expect("write");
    ok(&a, &home_a, &["snapshot"]);
    let sync = json(&a, &home_a, &["sync", "--json"]);
    let status = json(&a, &home_a, &["status", "--json"]);
    assert_eq!(
        status["remote"]["pending_events"], 0,
        "{status} after {sync}"
    );
    let project = status["project_id"].as_str().expect("project").to_owned();

    // horde log and show say so; the events of both paths carry the bit.
    let log = ok(&a, &home_a, &["log", "-n", "1000"]);
    for p in [".env", "src/config.rs"] {
        assert!(
            log.lines().any(|l| l.contains(p) && l.contains("withheld")),
            "{p} withheld in:\n{log}"
        );
    }
    assert!(
        !log.lines()
            .any(|l| l.contains("src/main.rs") && l.contains("withheld")),
        "{log}"
    );
    let events = json(&a, &home_a, &["log", "--json", "-n", "1000"]);
    let env_change = events
        .as_array()
        .expect("a list")
        .iter()
        .find(|e| e["payload"]["path"] == ".env" && e["payload"]["withheld"] == true)
        .expect("a withheld change of .env");
    let id = env_change["id"].as_str().expect("id");
    let show = ok(&a, &home_a, &["show", id]);
    assert!(show.contains("withheld"), "{show}");
    assert!(
        !show.contains(&aws),
        "show previews no withheld content:\n{show}"
    );

    // The cloud: every event, no secret.
    let m = api.get(&format!("/v1/projects/{project}/manifest"));
    assert_eq!(m.status, 200, "{}", m.body);
    let flag = |p: &str| {
        m.json["files"]
            .as_array()
            .expect("files")
            .iter()
            .find(|f| f["path"] == p)
            .unwrap_or_else(|| panic!("{p} in the manifest: {}", m.body))["withheld"]
            .clone()
    };
    assert_eq!(flag(".env"), true);
    assert_eq!(flag("src/config.rs"), true);
    assert_eq!(flag("src/main.rs"), false);

    let last = events.as_array().expect("list")[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for query in [String::new(), format!("?at={last}")] {
        let r = api.get(&format!("/v1/projects/{project}/restore{query}"));
        assert_eq!(r.status, 200, "restore{query}: {}", r.body);
        let header = |name: &str| {
            r.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(header("x-horde-withheld-count").as_deref(), Some("2"));
        let listed: Vec<String> =
            serde_json::from_str(&header("x-horde-withheld").expect("the list")).expect("JSON");
        assert_eq!(listed, [".env", "src/config.rs"], "restore{query}");
        let tar = tar_entries(&r.bytes);
        assert_eq!(
            tar.keys().map(String::as_str).collect::<Vec<_>>(),
            ["README.md", "src", "src/main.rs"],
            "restore{query}"
        );
        assert_eq!(tar["src/main.rs"], main.as_bytes());
        assert_eq!(tar["README.md"], readme.as_bytes());
        for s in [&aws, &aws2, &github] {
            assert!(!contains(&r.bytes, s.as_bytes()), "a secret in the archive");
        }
    }

    // Nowhere in the cloud's store, blob directory or log.
    let stored = files_under(cloud.dir.path());
    assert!(
        stored
            .iter()
            .any(|p| p.starts_with(cloud.dir.path().join("blobs"))),
        "the cloud holds blobs: {stored:?}"
    );
    for f in &stored {
        let bytes = std::fs::read(f).expect("read");
        for s in [&aws, &aws2, &github] {
            assert!(
                !contains(&bytes, s.as_bytes()),
                "{} holds a secret",
                f.display()
            );
        }
    }
    // The device keeps every blob: restore here gives the secrets back, byte-exact.
    let back = root.path().join("back");
    ok(
        &a,
        &home_a,
        &[
            "restore",
            "--at",
            "HEAD",
            "--to",
            back.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(back.join("src/config.rs")).expect("here"),
        config
    );

    // A clone restores the rest and names what stays on the first device.
    let (b, home_b) = (root.path().join("b"), root.path().join("home-b"));
    std::fs::create_dir_all(&home_b).expect("mkdir");
    let o = horde(
        root.path(),
        &home_b,
        &[
            "clone",
            &cloud.url,
            &project,
            b.to_str().expect("utf-8"),
            "--key",
            &key,
        ],
    );
    let out = text(&o);
    assert!(o.status.success(), "clone: {out}");
    for p in [".env", "src/config.rs"] {
        assert!(
            out.contains(&format!("withheld: {p}")),
            "clone names {p}:\n{out}"
        );
        assert!(!b.join(p).exists(), "{p} is not written on the clone");
    }
    assert!(!out.contains("were not in the cloud"), "{out}");
    assert_eq!(
        std::fs::read_to_string(b.join("src/main.rs")).expect("main"),
        main
    );
    assert_eq!(
        std::fs::read_to_string(b.join("README.md")).expect("readme"),
        readme
    );
    // A restore on the clone at the first device's tree lists them instead of failing.
    let back_b = root.path().join("back-b");
    let o = horde(
        &b,
        &home_b,
        &[
            "restore",
            "--at",
            &last,
            "--to",
            back_b.to_str().expect("utf-8"),
        ],
    );
    assert!(o.status.success(), "restore on the clone: {}", text(&o));
    let said = text(&o);
    assert!(said.contains("withheld: .env"), "{said}");
    assert!(!back_b.join(".env").exists());
    assert_eq!(
        std::fs::read_to_string(back_b.join("src/main.rs")).expect("main"),
        main
    );
    // Syncing again fetches nothing it cannot have and counts nothing as unavailable.
    let again = json(&b, &home_b, &["sync", "--json"]);
    assert_eq!(again["sync"]["blobs_unavailable"], 0, "{again}");
    assert_eq!(again["sync"]["blobs_downloaded"], 0, "{again}");
}
