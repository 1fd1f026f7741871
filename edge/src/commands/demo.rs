//! `horde demo`: a self-contained tour on embedded defaults, in a temporary directory, with a
//! device key of its own (the user's key is never touched).

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use super::ledger::{self, LogArgs};
use super::run::{self, RunArgs};

const SCRIPT: &str = "\
echo 'pub fn helper() -> u32 { 42 }' >> src/main.rs
printf 'pub mod api;\\n' > src/lib.rs
rm notes.txt
mkdir -p config && mv settings.json config/settings.json
chmod +x build.sh
echo 'compiled 2 files'";

fn say(s: &str) {
    println!("\n\x20\x20{s}");
}

pub fn run(keep: Option<PathBuf>) -> Result<ExitCode> {
    let (tmp, dir) = match keep {
        Some(d) => {
            fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
            if fs::read_dir(&d)?.next().is_some() {
                bail!(
                    "{} is not empty; give an empty or new directory to --keep",
                    d.display()
                );
            }
            (None, d.canonicalize()?)
        }
        None => {
            let t = tempfile::Builder::new().prefix("horde-demo-").tempdir()?;
            let p = t.path().canonicalize()?;
            (Some(t), p)
        }
    };
    let repo = dir.join("repo");
    fs::create_dir_all(repo.join("src"))?;
    fs::write(
        repo.join("src/main.rs"),
        "fn main() {\n    println!(\"hello\");\n}\n",
    )?;
    fs::write(repo.join("README.md"), "# sample\n")?;
    fs::write(repo.join("notes.txt"), "todo: remove me\n")?;
    fs::write(repo.join("settings.json"), "{\"level\": 3}\n")?;
    fs::write(repo.join("build.sh"), "#!/bin/sh\necho build\n")?;
    fs::write(repo.join(".gitignore"), "target/\n")?;
    fs::create_dir_all(repo.join("target"))?;
    fs::write(
        repo.join("target/ignored.o"),
        "not recorded: .gitignore'd\n",
    )?;
    crate::config::override_user_config_dir(dir.join("config"));
    std::env::set_current_dir(&repo)?;

    println!("Code Horde demo in {}", repo.display());
    say("$ horde init");
    ledger::cmd_init(false)?;

    say(&format!(
        "$ horde run -- sh -c '…'   # an 'agent' that edits, adds, deletes, renames:\n{}",
        SCRIPT
            .lines()
            .map(|l| format!("      {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    ));
    run::cmd_run(RunArgs {
        agent: Some("demo-agent".into()),
        no_capture: false,
        capture: true,
        quiet: false,
        role: None,
        session: String::new(),
        wait: None,
        sandbox: false,
        sandbox_opts: Default::default(),
        hooks: "off".into(),
        hook_role: "builder".into(),
        command: vec!["sh".into(), "-c".into(), SCRIPT.into()],
    })?;

    say("$ horde log --reverse");
    ledger::cmd_log(LogArgs {
        limit: None,
        types: vec![],
        agents: vec![],
        path: None,
        since: None,
        until: None,
        reverse: true,
        json: false,
    })?;

    say("$ horde verify");
    ledger::cmd_verify(false, false)?;

    say("Now somebody alters one byte of a stored event (#3) directly in .horde/horde.db …");
    {
        let conn = rusqlite::Connection::open(repo.join(".horde/horde.db"))?;
        let mut body: Vec<u8> =
            conn.query_row("SELECT body FROM events WHERE seq = 3", [], |r| r.get(0))?;
        let i = body.len() / 2;
        body[i] ^= 0x01;
        conn.execute("UPDATE events SET body = ?1 WHERE seq = 3", [body])?;
    }
    say("$ horde verify");
    let code = ledger::cmd_verify(false, false)?;
    if code == ExitCode::SUCCESS {
        bail!("verify did not notice the altered event; this is a bug");
    }
    match tmp {
        Some(t) => {
            drop(t);
            say("Demo done; its temporary directory is removed (use --keep DIR to keep it).");
        }
        None => say(&format!(
            "Demo done; the repository is kept in {}",
            repo.display()
        )),
    }
    Ok(ExitCode::SUCCESS)
}
