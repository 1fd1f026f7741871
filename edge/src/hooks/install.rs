//! Writing horde's hooks into an agent's own configuration, merged with what is there: the
//! user's own hooks are never dropped, horde's earlier entries are replaced (so installing
//! twice changes nothing), and a file that is not valid JSON is refused untouched.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

use super::{AgentKind, Mode, http};

/// How the hooks call horde.
#[derive(Debug, Clone)]
pub struct Plan {
    pub agent: AgentKind,
    pub mode: Mode,
    pub role: String,
    /// The agent's timeout for each hook call, in seconds (horde answers before it).
    pub timeout_secs: u64,
    /// How long a PreToolUse waits for a person when the policy says ask (0: not at all).
    pub wait_secs: u64,
    /// The horde binary the hooks run.
    pub exe: PathBuf,
    /// Claude Code only: the daemon's endpoint that its per-tool-call hooks POST to instead of
    /// running horde (see [`super::http`]).
    pub http: Option<http::Endpoint>,
}

/// The configuration file of `agent` for a repository (`root`) or the user (`home`).
pub fn config_path(agent: AgentKind, root: Option<&Path>, home: &Path) -> PathBuf {
    match (agent, root) {
        (AgentKind::Claude, Some(r)) => r.join(".claude/settings.local.json"),
        (AgentKind::Claude, None) => home.join(".claude/settings.json"),
        (AgentKind::Codex, Some(r)) => r.join(".codex/hooks.json"),
        (AgentKind::Codex, None) => std::env::var_os("CODEX_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".codex"))
            .join("hooks.json"),
        (AgentKind::Gemini, Some(r)) => r.join(".gemini/settings.json"),
        (AgentKind::Gemini, None) => home.join(".gemini/settings.json"),
    }
}

/// Codex cuts the timeout of its SessionEnd hook to this many seconds, whatever it is told.
const CODEX_SESSION_END_SECS: u64 = 3;

/// The PreToolUse timeout: long enough for a person's answer when the hook waits for one.
fn timeout_for(plan: &Plan, event: &str) -> u64 {
    if matches!(event, "PreToolUse" | "BeforeTool") && plan.wait_secs > 0 {
        plan.timeout_secs.max(plan.wait_secs + 10)
    } else if plan.agent == AgentKind::Codex && event == "SessionEnd" {
        // So that horde's own deadline falls before Codex's.
        plan.timeout_secs.min(CODEX_SESSION_END_SECS)
    } else {
        plan.timeout_secs
    }
}

/// What a Codex PreToolUse hook line adds in enforce mode. Codex lets the tool run when a hook
/// fails in any way but one: exit code 2, which blocks with stderr as the reason. So a horde
/// that dies (killed, crashed, missing) becomes a denial. (`sh -c` keeps the line valid in any
/// shell that has `||`.) A hook that runs past Codex's timeout still lets the tool run.
const CODEX_FAIL_CLOSED: &str = "|| sh -c 'echo \"horde (enforce mode) could not check this call, so it \
    is denied: the hook failed\" >&2; exit 2'";

/// horde's arguments for one event.
fn args(plan: &Plan, event: &str) -> Vec<String> {
    let timeout = timeout_for(plan, event);
    // Answer a second and a half before the agent gives up on the hook.
    let deadline_ms = (timeout * 1000).saturating_sub(1500).max(500);
    let mut a = vec![
        "hook".to_owned(),
        plan.agent.name().to_owned(),
        event.to_owned(),
        "--mode".to_owned(),
        plan.mode.as_str().to_owned(),
        "--role".to_owned(),
        plan.role.clone(),
        "--deadline-ms".to_owned(),
        deadline_ms.to_string(),
    ];
    if plan.wait_secs > 0 && matches!(event, "PreToolUse" | "BeforeTool") {
        a.extend(["--wait".to_owned(), plan.wait_secs.to_string()]);
    }
    a
}

fn shell_quote(s: &str) -> String {
    crate::gate::shell_join(&[s.to_owned()])
}

/// One hook entry for `event` in the agent's format.
fn entry(plan: &Plan, event: &str) -> Value {
    let exe = plan.exe.to_string_lossy().into_owned();
    let a = args(plan, event);
    let timeout = timeout_for(plan, event);
    let hook = match (plan.agent, &plan.http) {
        // Every tool call fires these: a POST to the daemon costs the agent no process.
        (AgentKind::Claude, Some(ep)) if http::EVENTS.contains(&event) => {
            let deadline_ms = (timeout * 1000).saturating_sub(1500).max(500);
            let o = http::Options {
                mode: plan.mode,
                role: plan.role.clone(),
                deadline_ms,
                wait_secs: if event == "PreToolUse" {
                    plan.wait_secs
                } else {
                    0
                },
            };
            let mut h = json!({
                "type": "http",
                "url": http::url(ep, plan.agent, event, &o),
                "timeout": timeout,
                "headers": { "Authorization": format!("Bearer {}", ep.token) },
            });
            if plan.mode == Mode::Enforce && event == "PreToolUse" {
                // No daemon to answer (stopped, killed, the port taken): the tool does not run.
                h["onFailure"] = json!("block");
            }
            h
        }
        // Exec form: no shell between the agent and horde.
        (AgentKind::Claude, _) => {
            let mut h = json!({ "type": "command", "command": exe, "args": a, "timeout": timeout });
            if plan.mode == Mode::Enforce && event == "PreToolUse" {
                // If horde itself cannot answer (killed, missing), the tool does not run.
                h["onFailure"] = json!("block");
            }
            h
        }
        // Codex and Gemini take a shell line.
        (AgentKind::Codex, _) => {
            let mut line = std::iter::once(shell_quote(&exe))
                .chain(a.iter().map(|s| shell_quote(s)))
                .collect::<Vec<_>>()
                .join(" ");
            if plan.mode == Mode::Enforce && event == "PreToolUse" {
                line = format!("{line} {CODEX_FAIL_CLOSED}");
            }
            json!({ "type": "command", "command": line, "timeout": timeout })
        }
        (AgentKind::Gemini, _) => {
            let mut line = std::iter::once(shell_quote(&exe))
                .chain(a.iter().map(|s| shell_quote(s)))
                .collect::<Vec<_>>()
                .join(" ");
            // Gemini CLI lets the tool run when a hook is killed or exits with 1, and blocks
            // it on an exit of 2 or more (stderr says why): enforce mode turns any failure
            // of horde into such an exit, audit mode into an empty answer.
            line.push_str(match plan.mode {
                Mode::Enforce => {
                    " || { echo 'horde (enforce mode) could not check this call, so it is denied' >&2; exit 2; }"
                }
                Mode::Audit => " || true",
            });
            json!({ "type": "command", "command": line, "timeout": timeout * 1000, "name": "horde" })
        }
    };
    let mut group = json!({ "hooks": [hook] });
    if plan.agent.is_tool_event(event) {
        group["matcher"] = json!(match plan.agent {
            AgentKind::Codex => ".*",
            _ => "*",
        });
    }
    group
}

/// Whether a hook entry is horde's (for `agent`).
fn is_ours(hook: &Value, agent: AgentKind) -> bool {
    if let Some(url) = hook.get("url").and_then(Value::as_str) {
        return hook_url(url).is_some_and(|(_, a, ..)| a == agent);
    }
    let cmd = hook.get("command").and_then(Value::as_str).unwrap_or("");
    let args: Vec<&str> = hook
        .get("args")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let text = format!("{cmd} {}", args.join(" "));
    let marker = format!(" hook {} ", agent.name());
    text.contains("horde") && text.contains(&marker)
}

/// `doc` without horde's hooks; whether any were there.
/// A horde hook URL's port, agent, event and options.
fn hook_url(url: &str) -> Option<(u16, AgentKind, String, http::Options)> {
    let rest = url.strip_prefix("http://127.0.0.1:")?;
    let (port, path) = rest.split_at(rest.find('/')?);
    let (agent, event, options) = http::parse_url(path)?;
    Some((port.parse().ok()?, agent, event, options))
}

fn strip(doc: &mut Value, agent: AgentKind) -> bool {
    let Some(hooks) = doc.get_mut("hooks").and_then(Value::as_object_mut) else {
        return false;
    };
    let mut removed = false;
    for groups in hooks.values_mut() {
        let Some(list) = groups.as_array_mut() else {
            continue;
        };
        list.retain_mut(|g| {
            let Some(hs) = g.get_mut("hooks").and_then(Value::as_array_mut) else {
                return true;
            };
            let before = hs.len();
            hs.retain(|h| !is_ours(h, agent));
            if hs.len() != before {
                removed = true;
                return !hs.is_empty();
            }
            true
        });
    }
    hooks.retain(|_, v| !v.as_array().is_some_and(Vec::is_empty));
    if hooks.is_empty()
        && let Some(o) = doc.as_object_mut()
    {
        o.remove("hooks");
    }
    removed
}

fn read(path: &Path) -> Result<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(Value::Object(Map::new())),
        Ok(text) => {
            let v: Value = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not valid JSON; fix it first (nothing was changed)",
                    path.display()
                )
            })?;
            if !v.is_object() {
                bail!(
                    "{} is not a JSON object; nothing was changed",
                    path.display()
                );
            }
            Ok(v)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Object(Map::new())),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes `doc` to `path` atomically (a temporary file beside it, then rename).
fn write(path: &Path, doc: &Value) -> Result<()> {
    let dir = path.parent().context("a config file has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut text = serde_json::to_string_pretty(doc)?;
    text.push('\n');
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    }
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Installs (or refreshes) horde's hooks in `path`. Returns whether the file changed.
pub fn install(path: &Path, plan: &Plan) -> Result<bool> {
    let mut doc = read(path)?;
    let before = doc.clone();
    if let Some(h) = doc.get("hooks")
        && !h.is_object()
    {
        bail!(
            "{}: \"hooks\" is not an object; nothing was changed",
            path.display()
        );
    }
    strip(&mut doc, plan.agent);
    let obj = doc.as_object_mut().context("checked above")?;
    let hooks = obj
        .entry("hooks")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .context("checked above")?;
    for event in plan.agent.events() {
        let list = hooks
            .entry(*event)
            .or_insert_with(|| Value::Array(Vec::new()));
        match list.as_array_mut() {
            Some(l) => l.push(entry(plan, event)),
            None => bail!(
                "{}: hooks.{event} is not a list; nothing was changed",
                path.display()
            ),
        }
    }
    if doc == before {
        return Ok(false);
    }
    write(path, &doc)?;
    if plan.http.is_some() {
        // It holds the endpoint's token.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", path.display()))?;
    }
    Ok(true)
}

/// Removes horde's hooks from `path`. Returns whether there were any.
pub fn uninstall(path: &Path, agent: AgentKind) -> Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    let mut doc = read(path)?;
    if !strip(&mut doc, agent) {
        return Ok(false);
    }
    write(path, &doc)?;
    Ok(true)
}

/// What `path` holds of horde's hooks.
#[derive(Debug, serde::Serialize)]
pub struct Status {
    pub agent: &'static str,
    pub file: String,
    /// Events horde is installed for.
    pub events: Vec<String>,
    /// `--mode` of the installed hooks.
    pub mode: Option<String>,
    /// The horde binary they run, and whether it is there.
    pub exe: Option<String>,
    pub exe_exists: bool,
    /// Events horde installs that are missing (edited away).
    pub missing: Vec<String>,
    /// The daemon's port, when the tool calls' hooks are Claude Code `http` hooks.
    pub http_port: Option<u16>,
}

pub fn status(path: &Path, agent: AgentKind) -> Result<Status> {
    let doc = read(path)?;
    let mut events = Vec::new();
    let mut mode = None;
    let mut exe = None;
    let mut http_port = None;
    if let Some(hooks) = doc.get("hooks").and_then(Value::as_object) {
        for (event, groups) in hooks {
            for h in groups
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g.get("hooks").and_then(Value::as_array))
                .flatten()
                .filter(|h| is_ours(h, agent))
            {
                events.push(event.clone());
                if let Some(url) = h.get("url").and_then(Value::as_str) {
                    if let Some((port, _, _, o)) = hook_url(url) {
                        mode = Some(o.mode.as_str().to_owned());
                        http_port = Some(port);
                    }
                    continue;
                }
                let cmd = h.get("command").and_then(Value::as_str).unwrap_or("");
                let words: Vec<String> = match h.get("args").and_then(Value::as_array) {
                    Some(a) => a
                        .iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect(),
                    None => cmd
                        .split_whitespace()
                        .map(|w| w.trim_matches('\'').to_owned())
                        .collect(),
                };
                if let Some(i) = words.iter().position(|w| w == "--mode") {
                    mode = words.get(i + 1).cloned();
                }
                exe = Some(match h.get("args") {
                    Some(_) => cmd.to_owned(),
                    None => cmd
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .trim_matches('\'')
                        .to_owned(),
                });
            }
        }
    }
    let missing = if events.is_empty() {
        Vec::new()
    } else {
        agent
            .events()
            .iter()
            .filter(|e| !events.iter().any(|x| x == *e))
            .map(|e| (*e).to_owned())
            .collect()
    };
    Ok(Status {
        agent: agent.name(),
        file: path.display().to_string(),
        exe_exists: exe.as_deref().is_some_and(|e| Path::new(e).exists()),
        events,
        mode,
        exe,
        missing,
        http_port,
    })
}

/// horde's hooks for `plan.agent` as one settings document (what `install` merges into a
/// file), for an agent that takes settings on its command line.
pub fn settings(plan: &Plan) -> Value {
    let hooks: Map<String, Value> = plan
        .agent
        .events()
        .iter()
        .map(|e| ((*e).to_owned(), json!([entry(plan, e)])))
        .collect();
    json!({ "hooks": hooks })
}

/// Whether horde's hooks for `agent` are in any configuration it reads in repository `root`
/// (the repository's, the user's).
pub fn installed(agent: AgentKind, root: &Path, home: &Path) -> bool {
    let mut places = vec![
        config_path(agent, Some(root), home),
        config_path(agent, None, home),
    ];
    if agent == AgentKind::Claude {
        places.push(root.join(".claude/settings.json"));
    }
    places
        .iter()
        .any(|p| status(p, agent).is_ok_and(|s| !s.events.is_empty()))
}

/// Claude Code's command line with horde's hooks passed for this run only (`--settings`), and
/// a session id when the command does not resume or name one; None when `argv` does not run
/// Claude Code. The id is returned so the run can name the session it recorded.
pub fn claude_run_argv(
    plan: &Plan,
    argv: &[std::ffi::OsString],
) -> Option<(Vec<std::ffi::OsString>, Option<String>)> {
    let program = Path::new(argv.first()?).file_name()?;
    if program != "claude" {
        return None;
    }
    let has = |flags: &[&str]| {
        argv[1..].iter().any(|a| {
            let a = a.to_string_lossy();
            flags
                .iter()
                .any(|f| a == *f || a.starts_with(&format!("{f}=")))
        })
    };
    let mut out = vec![
        argv[0].clone(),
        "--settings".into(),
        settings(plan).to_string().into(),
    ];
    let session = if has(&["--session-id", "--resume", "-r", "--continue", "-c"]) {
        None
    } else {
        let id = uuid::Uuid::now_v7().to_string();
        out.extend(["--session-id".into(), id.clone().into()]);
        Some(id)
    };
    out.extend(argv[1..].iter().cloned());
    Some((out, session))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(agent: AgentKind, mode: Mode) -> Plan {
        Plan {
            agent,
            mode,
            role: "builder".into(),
            timeout_secs: 30,
            wait_secs: 0,
            http: None,
            exe: "/usr/local/bin/horde".into(),
        }
    }

    #[test]
    fn http_hooks_replace_the_tool_events_and_come_off_like_the_others() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("settings.local.json");
        // The user's own HTTP hook stays whatever horde does.
        let mine = json!({"hooks": {"PreToolUse": [{"hooks": [
            {"type": "http", "url": "http://127.0.0.1:9999/mine"}]}]}});
        std::fs::write(&path, mine.to_string()).expect("write");
        let mut p = plan(AgentKind::Claude, Mode::Enforce);
        p.http = Some(http::Endpoint {
            port: 23456,
            token: "ab".repeat(32),
        });
        assert!(install(&path, &p).expect("install"));
        assert!(!install(&path, &p).expect("again"), "idempotent");
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        let pre = &doc["hooks"]["PreToolUse"];
        assert_eq!(pre.as_array().map(Vec::len), Some(2), "{pre}");
        let ours = &pre[1]["hooks"][0];
        assert_eq!(ours["type"], "http");
        assert_eq!(ours["onFailure"], "block");
        assert_eq!(
            ours["headers"]["Authorization"],
            format!("Bearer {}", "ab".repeat(32))
        );
        assert!(ours["url"].as_str().is_some_and(|u| {
            u.starts_with("http://127.0.0.1:23456/horde/hook/claude/PreToolUse?mode=enforce")
        }));
        assert_eq!(doc["hooks"]["Stop"][0]["hooks"][0]["type"], "command");
        let st = status(&path, AgentKind::Claude).expect("status");
        assert_eq!(st.http_port, Some(23456));
        assert_eq!(st.mode.as_deref(), Some("enforce"));
        assert!(st.missing.is_empty(), "{:?}", st.missing);
        // Back to commands: no HTTP entry of horde's is left, the user's is.
        p.http = None;
        assert!(install(&path, &p).expect("commands"));
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        assert_eq!(
            doc["hooks"]["PreToolUse"][0],
            mine["hooks"]["PreToolUse"][0]
        );
        assert_eq!(doc["hooks"]["PreToolUse"][1]["hooks"][0]["type"], "command");
        assert!(uninstall(&path, AgentKind::Claude).expect("uninstall"));
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        assert_eq!(doc, mine);
    }

    #[test]
    fn install_keeps_the_users_hooks_and_is_idempotent() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("settings.local.json");
        let mine = json!({
            "model": "x",
            "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "my-check.sh"}]}]}
        });
        std::fs::write(&path, mine.to_string()).expect("write");
        for agent in [AgentKind::Claude, AgentKind::Codex, AgentKind::Gemini] {
            let p = plan(agent, Mode::Enforce);
            assert!(install(&path, &p).expect("install"));
            let once = std::fs::read_to_string(&path).expect("read");
            assert!(
                !install(&path, &p).expect("again"),
                "{agent:?}: twice is once"
            );
            assert_eq!(once, std::fs::read_to_string(&path).expect("read"));
            let s = status(&path, agent).expect("status");
            assert_eq!(s.events.len(), agent.events().len(), "{agent:?}");
            assert_eq!(s.mode.as_deref(), Some("enforce"));
            assert_eq!(s.exe.as_deref(), Some("/usr/local/bin/horde"));
            assert!(s.missing.is_empty());
            // Another mode replaces, never duplicates.
            install(&path, &plan(agent, Mode::Audit)).expect("audit");
            assert_eq!(
                status(&path, agent).expect("s").mode.as_deref(),
                Some("audit")
            );
            assert_eq!(
                status(&path, agent).expect("s").events.len(),
                agent.events().len()
            );
            assert!(uninstall(&path, agent).expect("uninstall"));
            assert!(!uninstall(&path, agent).expect("again"));
        }
        let back: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        assert_eq!(back, mine, "uninstalling leaves exactly the user's file");
    }

    #[test]
    fn claude_hooks_are_exec_form_and_block_when_horde_cannot_answer() {
        let e = entry(&plan(AgentKind::Claude, Mode::Enforce), "PreToolUse");
        let h = &e["hooks"][0];
        assert_eq!(h["command"], "/usr/local/bin/horde");
        assert_eq!(h["args"][0], "hook");
        assert_eq!(h["onFailure"], "block");
        assert_eq!(e["matcher"], "*");
        let a = entry(&plan(AgentKind::Claude, Mode::Audit), "PreToolUse");
        assert!(a["hooks"][0].get("onFailure").is_none());
        assert!(
            entry(&plan(AgentKind::Claude, Mode::Audit), "Stop")
                .get("matcher")
                .is_none()
        );
        let g = entry(&plan(AgentKind::Gemini, Mode::Audit), "BeforeTool");
        assert_eq!(
            g["hooks"][0]["timeout"], 30_000,
            "Gemini counts milliseconds"
        );
    }

    #[test]
    fn codex_hooks_deny_when_horde_dies_in_enforce_mode_and_end_within_codex_limits() {
        let e = entry(&plan(AgentKind::Codex, Mode::Enforce), "PreToolUse");
        let line = e["hooks"][0]["command"].as_str().expect("a shell line");
        assert!(line.starts_with("/usr/local/bin/horde hook codex PreToolUse --mode enforce"));
        assert!(line.ends_with("exit 2'"), "{line}");
        assert_eq!(e["matcher"], ".*");
        for (mode, event) in [(Mode::Audit, "PreToolUse"), (Mode::Enforce, "PostToolUse")] {
            let line = entry(&plan(AgentKind::Codex, mode), event)["hooks"][0]["command"]
                .as_str()
                .expect("line")
                .to_owned();
            assert!(!line.contains("exit 2"), "{line}");
        }
        // Codex cuts SessionEnd to 3 s: horde's deadline must fall inside it.
        let end = entry(&plan(AgentKind::Codex, Mode::Enforce), "SessionEnd");
        assert_eq!(end["hooks"][0]["timeout"], 3);
        assert!(
            end["hooks"][0]["command"]
                .as_str()
                .is_some_and(|l| l.contains("--deadline-ms 1500"))
        );
        // The status still reads the mode and the binary off the longer line.
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("hooks.json");
        install(&path, &plan(AgentKind::Codex, Mode::Enforce)).expect("install");
        let s = status(&path, AgentKind::Codex).expect("status");
        assert_eq!(s.mode.as_deref(), Some("enforce"));
        assert_eq!(s.exe.as_deref(), Some("/usr/local/bin/horde"));
    }

    #[test]
    fn bad_files_are_refused_untouched() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("s.json");
        for bad in [
            "{not json",
            "[1,2]",
            r#"{"hooks": 3}"#,
            r#"{"hooks": {"PreToolUse": 1}}"#,
        ] {
            std::fs::write(&p, bad).expect("write");
            assert!(
                install(&p, &plan(AgentKind::Claude, Mode::Audit)).is_err(),
                "{bad}"
            );
            assert_eq!(std::fs::read_to_string(&p).expect("read"), bad);
        }
    }

    #[test]
    fn claude_runs_with_the_hooks_passed_and_a_session_id() {
        let plan = Plan {
            agent: AgentKind::Claude,
            mode: Mode::Enforce,
            role: "builder".into(),
            timeout_secs: 30,
            wait_secs: 0,
            http: None,
            exe: "/opt/horde".into(),
        };
        let argv: Vec<std::ffi::OsString> =
            vec!["/usr/bin/claude".into(), "-p".into(), "hi".into()];
        let (out, session) = claude_run_argv(&plan, &argv).expect("claude");
        assert_eq!(out[1], "--settings");
        let settings: Value = serde_json::from_str(out[2].to_str().expect("utf-8")).expect("json");
        let pre = &settings["hooks"]["PreToolUse"][0]["hooks"][0];
        assert_eq!(pre["command"], "/opt/horde");
        assert_eq!(pre["onFailure"], "block");
        let id = session.expect("a new session gets an id");
        assert_eq!(out[3], "--session-id");
        assert_eq!(out[4].to_str(), Some(id.as_str()));
        assert_eq!(&out[5..], &argv[1..]);
        // Resuming keeps the agent's own session id; other programs are left alone.
        let resume: Vec<std::ffi::OsString> =
            vec!["claude".into(), "--resume".into(), "abc".into()];
        assert_eq!(claude_run_argv(&plan, &resume).expect("claude").1, None);
        assert!(claude_run_argv(&plan, &["cargo".into(), "test".into()]).is_none());
    }
}
