//! What the tests of real agents (Claude Code, Codex, Gemini CLI) share: a repository with its
//! own home and horde config, the agent's binary from the environment, a plain HTTP/1.1
//! server for the scripted model, and reading tool calls and their changes out of the log.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use serde_json::Value;

use crate::binary;

/// The agent binary named by `var` (`cargo xtask test` installs it); None with a line saying
/// the test is skipped, except under CI, where its absence fails.
pub fn agent_bin(var: &str, agent: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{var} is not set under CI: `cargo xtask test` installs {agent}"
            );
            eprintln!("skipped: {var} is not set (`cargo xtask test` installs {agent})");
            None
        }
    }
}

/// Answers one request: (path, JSON body) → (status, content type, body).
pub type Handler = dyn Fn(&str, &Value) -> (u16, &'static str, String) + Send + Sync;

/// Serves HTTP/1.1 with keep-alive on a loopback port, one thread per connection.
pub fn serve_http(handler: Arc<Handler>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let h = handler.clone();
            std::thread::spawn(move || connection(stream, &*h));
        }
    });
    port
}

fn connection(stream: TcpStream, handler: &Handler) {
    let mut r = BufReader::new(stream.try_clone().expect("clone"));
    let mut w = stream;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (status, ctype, out) = handler(&path, &req);
        let head = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\r\n",
            if status == 200 { "OK" } else { "Not OK" },
            out.len()
        );
        if w.write_all(head.as_bytes()).is_err() || w.write_all(out.as_bytes()).is_err() {
            return;
        }
    }
}

/// A horde repository with its own home directory (the agent's settings live there) and
/// horde config, and a manifest role for the agent.
pub struct AgentRepo {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub home: PathBuf,
}

impl AgentRepo {
    /// `src/lib.rs` in a fresh repository, initialised, with role `role` (its YAML).
    pub fn new(role: &str, manifest: &str) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().join("repo");
        let home = dir.path().join("home");
        std::fs::create_dir_all(root.join("src")).expect("mkdir");
        std::fs::create_dir_all(&home).expect("mkdir");
        std::fs::write(root.join("src/lib.rs"), "pub mod x;\n").expect("write");
        let repo = Self {
            _dir: dir,
            root,
            home,
        };
        repo.horde(&["init"]);
        std::fs::create_dir_all(repo.root.join(".horde/agents")).expect("mkdir");
        std::fs::write(
            repo.root.join(format!(".horde/agents/{role}.yaml")),
            manifest,
        )
        .expect("role");
        repo
    }

    /// `program` in the repository, with its home and horde config.
    pub fn cmd(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.current_dir(&self.root)
            .env("HOME", &self.home)
            .env("HORDE_CONFIG_DIR", self.home.join(".config/horde"))
            .env_remove("HORDE_AGENT");
        c
    }

    /// Runs horde and insists on success.
    pub fn horde(&self, args: &[&str]) -> Output {
        let out = self
            .cmd(&binary("horde"))
            .args(args)
            .output()
            .expect("horde");
        assert!(
            out.status.success(),
            "horde {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Every event, oldest first.
    pub fn log(&self) -> Vec<Value> {
        let out = self.horde(&["log", "--json", "--reverse"]);
        serde_json::from_slice(&out.stdout).expect("log json")
    }

    /// Makes the installed hooks in `config` (a file under the repository) run a horde that
    /// dies by SIGKILL on `event` and works otherwise.
    pub fn horde_dies_on(&self, event: &str, config: &str) {
        self.wrap_horde(event, "kill -9 $$", config);
    }

    /// Makes the installed hooks in `config` run `line` (shell) on `event`, then horde.
    pub fn wrap_horde(&self, event: &str, line: &str, config: &str) {
        let wrapper = self.home.join("horde-wrapped");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\n[ \"$3\" = {event} ] && {{ {line}; }}\nexec '{}' \"$@\"\n",
                binary("horde").display()
            ),
        )
        .expect("wrapper");
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let file = self.root.join(config);
        let text = std::fs::read_to_string(&file).expect("settings");
        let exe = binary("horde").canonicalize().expect("exe");
        assert!(
            text.contains(exe.to_str().expect("utf-8")),
            "horde's hooks are in {config}"
        );
        std::fs::write(
            &file,
            text.replace(
                exe.to_str().expect("utf-8"),
                wrapper.to_str().expect("utf-8"),
            ),
        )
        .expect("write");
    }
}

/// The payload of `e` if it is a `kind` event.
pub fn payload<'a>(e: &'a Value, kind: &str) -> Option<&'a Value> {
    (e["type"] == kind).then(|| &e["payload"])
}

/// "op path" of every file change caused by event `id`, sorted.
pub fn changes_caused_by(log: &[Value], id: &Value) -> Vec<String> {
    let mut v: Vec<String> = log
        .iter()
        .filter(|e| e["type"] == "state_change" && &e["causation_id"] == id)
        .map(|e| {
            let p = &e["payload"];
            format!(
                "{} {}",
                p["op"].as_str().unwrap_or(""),
                p["path"].as_str().unwrap_or("")
            )
        })
        .collect();
    v.sort();
    v
}

/// The tool calls of the log in the order they started: (tool, intent event, result event).
pub fn tool_calls(log: &[Value]) -> Vec<(String, Value, Option<Value>)> {
    let mut at: std::collections::HashMap<String, usize> = Default::default();
    let mut out: Vec<(String, Value, Option<Value>)> = Vec::new();
    for e in log {
        let Some(p) = payload(e, "tool_call") else {
            continue;
        };
        let id = p["call_id"].as_str().unwrap_or("").to_owned();
        if p["intent"] == true {
            at.insert(id, out.len());
            out.push((p["tool"].as_str().unwrap_or("").to_owned(), e.clone(), None));
        } else if let Some(&i) = at.get(&id) {
            out[i].2 = Some(e.clone());
        }
    }
    out
}
