//! Codex's rollout files: `$CODEX_HOME` (default `~/.codex`)`/sessions/YYYY/MM/DD/
//! rollout-<time>-<session id>.jsonl`. Model calls are read by
//! [`crate::hooks::usage::parse_codex`] (the hooks' own parser); this module reads the rest:
//! the session (`session_meta`), prompts (`user_message`, or 0.171.0's completed `UserMessage`
//! items), the turn's last reply
//! (`task_complete`), tool calls (`function_call`, `custom_tool_call`) and their outputs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde_json::Value;

use super::{Item, Transcript, read_whole_lines, records};
use crate::hooks::usage::parse_codex;

/// Rollout files looked at per `--all` (the newest are kept).
pub const MAX_ROLLOUTS: usize = 10_000;

pub fn sessions_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("CODEX_HOME").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => super::home()?.join(".codex"),
    };
    Ok(base.join("sessions"))
}

/// Every rollout file, oldest first (by its path: the date folders and the time in its name).
fn rollouts() -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if depth < 3 && p.is_dir() {
                walk(&p, depth + 1, out);
            } else if p.extension().is_some_and(|x| x == "jsonl")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("rollout-"))
            {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&sessions_dir()?, 0, &mut out);
    out.sort();
    if out.len() > MAX_ROLLOUTS {
        out.drain(..out.len() - MAX_ROLLOUTS);
    }
    Ok(out)
}

/// The `session_meta` payload (the first line of a rollout).
fn meta_of(path: &Path) -> Option<Value> {
    use std::io::BufRead;
    let f = std::fs::File::open(path).ok()?;
    std::io::BufReader::new(f)
        .lines()
        .take(20)
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
        .find(|v| v["type"] == "session_meta")
        .map(|v| v["payload"].clone())
}

fn session_id(meta: &Value) -> Option<String> {
    ["id", "session_id"]
        .iter()
        .find_map(|k| meta.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
}

/// The rollouts of sessions run in `root` or below it, oldest first.
pub fn all_sessions(root: &Path) -> Result<Vec<PathBuf>> {
    Ok(rollouts()?
        .into_iter()
        .filter(|p| {
            meta_of(p)
                .and_then(|m| m.get("cwd").and_then(Value::as_str).map(str::to_owned))
                .is_some_and(|c| Path::new(&c).starts_with(root))
        })
        .collect())
}

/// The rollout of `session`: a path to one, or a session id.
pub fn find(session: &str) -> Result<PathBuf> {
    let p = Path::new(session);
    if p.extension().is_some_and(|e| e == "jsonl") && p.is_file() {
        return Ok(p.to_owned());
    }
    if session.is_empty() || session.contains(['/', '\0']) {
        bail!("{session:?} is neither a Codex session id nor a rollout file");
    }
    let suffix = format!("-{session}.jsonl");
    for p in rollouts()?.into_iter().rev() {
        let named = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with(&suffix));
        if named || meta_of(&p).and_then(|m| session_id(&m)).as_deref() == Some(session) {
            return Ok(p);
        }
    }
    bail!(
        "no Codex session {session:?} under {} (`horde import codex --all` imports every \
         session of this repository)",
        sessions_dir()?.display()
    )
}

/// Reads a rollout.
pub fn read(path: &Path) -> Result<Transcript> {
    let (lines, cut_short, notes) = read_whole_lines(path)?;
    let mut t = Transcript {
        source: path.to_owned(),
        notes,
        ..Default::default()
    };
    let mut at_of: HashMap<String, i64> = HashMap::new();
    for (rec, at) in records(&lines) {
        let p = rec.get("payload").unwrap_or(&Value::Null);
        let s = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_owned);
        match (
            rec.get("type").and_then(Value::as_str),
            p.get("type").and_then(Value::as_str),
        ) {
            (Some("session_meta"), _) => {
                if t.session.is_empty() {
                    t.session = session_id(p).unwrap_or_default();
                }
                t.cwd = t.cwd.take().or_else(|| s("cwd"));
            }
            (Some("turn_context"), _) => {
                if let Some(m) = s("model") {
                    t.model = m;
                }
            }
            (Some("event_msg"), Some("user_message")) => {
                if let Some(m) = s("message").filter(|m| !m.trim().is_empty()) {
                    t.items.push((at, Item::Prompt(m)));
                }
            }
            // Codex 0.171.0 writes the prompt as a completed `UserMessage` item instead.
            (Some("event_msg"), Some("item_completed")) if p["item"]["type"] == "UserMessage" => {
                let text: Vec<&str> = p["item"]["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.get("text").and_then(Value::as_str))
                    .collect();
                let text = text.join("\n");
                if !text.trim().is_empty() {
                    t.items.push((at, Item::Prompt(text)));
                }
            }
            (Some("event_msg"), Some("task_complete")) => {
                if let Some(m) = s("last_agent_message").filter(|m| !m.trim().is_empty()) {
                    t.items.push((at, Item::Reply(m)));
                }
            }
            (Some("event_msg"), Some("token_count")) => {
                if let Some(total) = p["info"]["total_token_usage"]["total_tokens"].as_u64() {
                    at_of.entry(format!("total:{total}")).or_insert(at);
                }
            }
            (Some("response_item"), Some("function_call" | "custom_tool_call")) => {
                let (Some(id), Some(name)) = (s("call_id"), s("name")) else {
                    continue;
                };
                let input = match (p.get("arguments"), p.get("input")) {
                    (Some(Value::String(a)), _) => {
                        serde_json::from_str(a).unwrap_or_else(|_| Value::String(a.clone()))
                    }
                    (_, Some(i)) => i.clone(),
                    _ => Value::Null,
                };
                t.items.push((at, Item::ToolUse { id, name, input }));
            }
            (Some("response_item"), Some("function_call_output" | "custom_tool_call_output")) => {
                let Some(id) = s("call_id") else {
                    continue;
                };
                let output = p.get("output").cloned().unwrap_or(Value::Null);
                t.items.push((
                    at,
                    Item::ToolResult {
                        id,
                        output,
                        error: None,
                    },
                ));
            }
            _ => {}
        }
    }
    let (calls, garbled) = parse_codex(&lines, "");
    if garbled > 0 {
        t.notes.push(format!(
            "{}: {garbled} line(s) are not JSON records and were skipped",
            path.display()
        ));
    }
    t.skipped_lines = garbled + cut_short;
    t.calls = calls
        .into_iter()
        .map(|c| (at_of.get(&c.id).copied().unwrap_or(0), c))
        .collect();
    if t.session.is_empty() {
        bail!(
            "{} has no session_meta record with the session's id: not a Codex rollout?",
            path.display()
        );
    }
    Ok(t)
}
