//! Claude Code's transcripts: `$CLAUDE_CONFIG_DIR` (default `~/.claude`)`/projects/<the cwd
//! with every character but letters and digits made '-'>/<session id>.jsonl`, and its
//! subagents' beside it (`<session id>/subagents/agent-*.jsonl`). Model calls are read by
//! [`crate::hooks::usage::parse_claude`] (the hooks' own parser); this module reads the rest:
//! prompts, final replies, tool uses and their results.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde_json::Value;

use super::{Item, Transcript, read_whole_lines, records};
use crate::hooks::usage::{claude_subagent_files, parse_claude};

/// Where Claude Code keeps its transcripts.
pub fn projects_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("CLAUDE_CONFIG_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => super::home()?.join(".claude"),
    };
    Ok(base.join("projects"))
}

/// Claude Code's name for a working directory's folder.
pub fn slug(dir: &Path) -> String {
    dir.to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// The working directory a transcript was recorded in (its first record that says).
fn cwd_of(path: &Path) -> Option<String> {
    use std::io::BufRead;
    let f = std::fs::File::open(path).ok()?;
    std::io::BufReader::new(f)
        .lines()
        .take(200)
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
        .find_map(|v| v.get("cwd").and_then(Value::as_str).map(str::to_owned))
}

fn inside(cwd: &str, root: &Path) -> bool {
    Path::new(cwd).starts_with(root)
}

/// The transcripts of sessions run in `root` or below it, oldest first.
pub fn all_sessions(root: &Path) -> Result<Vec<PathBuf>> {
    let dir = projects_dir()?;
    let prefix = slug(root);
    let mut out: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    for project in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if !project.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        for f in std::fs::read_dir(project.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "jsonl")
                && cwd_of(&p).is_some_and(|c| inside(&c, root))
            {
                let t = f
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                out.push((t, p));
            }
        }
    }
    out.sort();
    Ok(out.into_iter().map(|(_, p)| p).collect())
}

/// The transcript of `session`: a path to one, or a session id (looked up under this
/// repository's folder first, then every project's).
pub fn find(root: &Path, session: &str) -> Result<PathBuf> {
    let p = Path::new(session);
    if p.extension().is_some_and(|e| e == "jsonl") && p.is_file() {
        return Ok(p.to_owned());
    }
    if session.is_empty() || session.contains(['/', '\0']) || session.starts_with('.') {
        bail!("{session:?} is neither a Claude Code session id nor a transcript file");
    }
    let dir = projects_dir()?;
    let name = format!("{session}.jsonl");
    let own = dir.join(slug(root)).join(&name);
    if own.is_file() {
        return Ok(own);
    }
    for project in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let p = project.path().join(&name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "no Claude Code session {session:?}: no {name} under {} (`horde import claude --all` \
         imports every session of this repository)",
        dir.display()
    )
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// An assistant message as its records (one per content block) tell it.
#[derive(Default)]
struct Reply {
    at: i64,
    text: Vec<String>,
    uses_tools: bool,
}

/// Prompts, replies, tool uses and results of one transcript file's lines; `main`: the
/// session's own file (a subagent's prompts and replies are its own, not the person's).
fn items(lines: &[u8], main: bool, t: &mut Transcript, at_of: &mut HashMap<String, i64>) {
    let mut replies: Vec<(String, Reply)> = Vec::new();
    for (rec, at) in records(lines) {
        if main && t.cwd.is_none() {
            t.cwd = rec.get("cwd").and_then(Value::as_str).map(str::to_owned);
        }
        let side = !main || rec.get("isSidechain") == Some(&Value::Bool(true));
        let msg = rec.get("message").unwrap_or(&Value::Null);
        match rec.get("type").and_then(Value::as_str) {
            Some("user") => {
                let content = &msg["content"];
                let meta = ["isMeta", "isCompactSummary"]
                    .iter()
                    .any(|k| rec.get(*k) == Some(&Value::Bool(true)));
                let results: Vec<&Value> = content
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                    .collect();
                for r in &results {
                    let Some(id) = r.get("tool_use_id").and_then(Value::as_str) else {
                        continue;
                    };
                    let error =
                        (r.get("is_error") == Some(&Value::Bool(true))).then(
                            || match &r["content"] {
                                Value::String(s) => s.clone(),
                                other => text_of(other),
                            },
                        );
                    // The structured result is what the PostToolUse hook is given.
                    let output = rec
                        .get("toolUseResult")
                        .filter(|v| !v.is_null())
                        .cloned()
                        .unwrap_or_else(|| r["content"].clone());
                    t.items.push((
                        at,
                        Item::ToolResult {
                            id: id.to_owned(),
                            output,
                            error,
                        },
                    ));
                }
                if results.is_empty() && !meta && !side {
                    let text = text_of(content);
                    if !text.trim().is_empty() {
                        t.items.push((at, Item::Prompt(text)));
                    }
                }
            }
            Some("assistant") => {
                let Some(id) = msg.get("id").and_then(Value::as_str) else {
                    continue;
                };
                if msg["model"] == "<synthetic>" {
                    continue;
                }
                if t.model.is_empty()
                    && let Some(m) = msg.get("model").and_then(Value::as_str)
                {
                    t.model = m.to_owned();
                }
                at_of.entry(id.to_owned()).or_insert(at);
                let pos = match replies.iter().position(|(i, _)| i == id) {
                    Some(p) => p,
                    None => {
                        replies.push((
                            id.to_owned(),
                            Reply {
                                at,
                                ..Default::default()
                            },
                        ));
                        replies.len() - 1
                    }
                };
                for block in msg["content"].as_array().into_iter().flatten() {
                    match block.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            if let Some(s) = block.get("text").and_then(Value::as_str) {
                                replies[pos].1.text.push(s.to_owned());
                            }
                        }
                        Some("tool_use") => {
                            replies[pos].1.uses_tools = true;
                            if let Some(tid) = block.get("id").and_then(Value::as_str) {
                                t.items.push((
                                    at,
                                    Item::ToolUse {
                                        id: tid.to_owned(),
                                        name: block["name"].as_str().unwrap_or("?").to_owned(),
                                        input: block.get("input").cloned().unwrap_or(Value::Null),
                                    },
                                ));
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    // A message that called no tool ended its turn: the reply the Stop hook is given.
    if main {
        for (_, r) in replies {
            let text = r.text.join("\n");
            if !r.uses_tools && !text.trim().is_empty() {
                t.items.push((r.at, Item::Reply(text)));
            }
        }
    }
}

/// Reads a session's transcript and its subagents'.
pub fn read(path: &Path) -> Result<Transcript> {
    let mut t = Transcript {
        source: path.to_owned(),
        ..Default::default()
    };
    let mut files = vec![path.to_owned()];
    files.extend(claude_subagent_files(path));
    for (i, f) in files.iter().enumerate() {
        let (lines, cut_short, notes) = read_whole_lines(f)?;
        let mut at_of = HashMap::new();
        items(&lines, i == 0, &mut t, &mut at_of);
        let (calls, garbled) = parse_claude(&lines);
        if garbled > 0 {
            t.notes.push(format!(
                "{}: {garbled} line(s) are not JSON records and were skipped",
                f.display()
            ));
        }
        t.skipped_lines += garbled + cut_short;
        t.notes.extend(notes);
        for c in calls {
            let at = at_of.get(&c.id).copied().unwrap_or(0);
            t.calls.push((at, c));
        }
    }
    // The hooks' session id: Claude Code names the transcript after it.
    t.session = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_claude_codes() {
        assert_eq!(slug(Path::new("/home/a.b/my_repo")), "-home-a-b-my-repo");
    }
}
