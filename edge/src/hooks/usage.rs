//! Model calls read from the agents' own records: Claude Code's transcript (`transcript_path`,
//! and its subagents' transcripts beside it) and Codex's rollout file. Each call becomes one
//! `AgentDecision`: model, tokens (input, output, cache reads and writes), cost from
//! [`crate::prices`], and — when the transcript has them — the call's new input and its
//! response as redacted, bounded blobs.
//!
//! Invariants:
//! - Files are read from a stored byte offset, whole lines only: a partial last line is left
//!   for the next hook. The offset is always the end of a line.
//! - A call is recorded at most once per session: its id (Claude's `message.id`; Claude Code
//!   writes one record per content block, each repeating the message's usage) is claimed in
//!   `agent_usage_calls` before its event is appended.
//! - Nothing here fails the agent: a missing, truncated or garbled file is said on stderr and
//!   what cannot be read is not recorded.
//!
//! Formats (seen on Claude Code 2.1.332 and Codex 0.171.0): Claude's `type: "assistant"`
//! records carry `message.{id, model, usage, content}`; `type: "user"` records carry the
//! prompt and tool results; a subagent writes `<transcript without .jsonl>/subagents/
//! agent-<id>.jsonl` with `isSidechain: true` and `agentId`. Codex writes `event_msg` records
//! of payload type `token_count` with `info.last_token_usage` (one per model response;
//! `input_tokens` includes `cached_input_tokens`) and the model in `turn_context` records.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::Result;
use horde_core::proto::{AgentDecision, event_body::Payload};
use horde_core::{BlobHash, Draft, TimelineId};
use rusqlite::params;
use serde_json::Value;

use super::{AgentKind, HookInput, Kind};
use crate::prices::{Price, Tokens};
use crate::store::Store;

/// Bytes read from one file per hook call; the rest waits for the next hook.
pub const MAX_READ: u64 = 32 << 20;
/// A prompt or response kept in a blob is cut at this size.
pub const MAX_TEXT_BLOB: usize = 256 << 10;
/// Subagent transcripts read per session.
pub const MAX_SUBAGENT_FILES: usize = 256;
/// Calls recorded per hook call (one event each); the rest wait for the next hook.
pub const MAX_CALLS: usize = 2000;

/// Whether a hook event is a moment to read the agent's records.
pub fn reads_at(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Stop | Kind::SubagentStop | Kind::SessionEnd | Kind::PostTool | Kind::ToolFailed
    )
}

/// One model call as the agent recorded it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Call {
    /// What makes it unique in its session.
    pub id: String,
    pub model: String,
    pub tokens: Tokens,
    /// The subagent that made it (Claude's agentId), or empty.
    pub subagent: String,
    /// The input the call added to the conversation (prompt, tool results), when read.
    pub prompt: Option<String>,
    pub response: Option<String>,
}

/// What one read of a file gave.
#[derive(Debug, Default)]
pub struct Chunk {
    pub calls: Vec<Call>,
    /// Where the next read starts: the end of the last whole line read.
    pub next: u64,
    /// Lines that were not JSON objects.
    pub garbled: usize,
    /// Said to the user (stderr): the file shrank, a line was too long…
    pub notes: Vec<String>,
}

/// The whole lines of `path` from `offset` (at most [`MAX_READ`] bytes), and the offset after
/// them. A file shorter than `offset` was truncated or replaced: it is read again from the
/// start (calls already recorded are known by their ids).
pub(crate) fn read_lines(
    path: &Path,
    offset: u64,
    notes: &mut Vec<String>,
) -> std::io::Result<(Vec<u8>, u64)> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut start = offset;
    if len < offset {
        notes.push(format!(
            "{} is shorter than when it was last read ({len} < {offset} bytes): read again from its start",
            path.display()
        ));
        start = 0;
    }
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.by_ref().take(MAX_READ).read_to_end(&mut buf)?;
    match buf.iter().rposition(|b| *b == b'\n') {
        Some(end) => {
            buf.truncate(end + 1);
            let next = start + buf.len() as u64;
            Ok((buf, next))
        }
        None if buf.len() as u64 == MAX_READ => {
            // One line longer than a whole read: skip it.
            let mut skipped = buf.len() as u64;
            let mut b = [0u8; 64 << 10];
            loop {
                let n = f.read(&mut b)?;
                if n == 0 {
                    return Ok((Vec::new(), start));
                }
                if let Some(i) = b[..n].iter().position(|c| *c == b'\n') {
                    skipped += i as u64 + 1;
                    notes.push(format!(
                        "{}: a line of {skipped} bytes at byte {start} is over the {MAX_READ}-byte limit and was skipped",
                        path.display()
                    ));
                    return Ok((Vec::new(), start + skipped));
                }
                skipped += n as u64;
            }
        }
        // Only a partial line so far.
        None => Ok((Vec::new(), start)),
    }
}

fn u(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Text of a message's content: a string, or blocks (text, tool uses, tool results).
fn content_text(content: &Value, out: &mut String) {
    let push = |out: &mut String, s: &str| {
        if out.len() < MAX_TEXT_BLOB {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(s);
        }
    };
    match content {
        Value::String(s) => push(out, s),
        Value::Array(blocks) => {
            for b in blocks {
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => push(out, b["text"].as_str().unwrap_or("")),
                    Some("tool_use") => push(
                        out,
                        &format!(
                            "[tool_use {} {}] {}",
                            b["name"].as_str().unwrap_or("?"),
                            b["id"].as_str().unwrap_or(""),
                            b["input"]
                        ),
                    ),
                    Some("tool_result") => {
                        push(
                            out,
                            &format!("[tool_result {}]", b["tool_use_id"].as_str().unwrap_or("")),
                        );
                        content_text(&b["content"], out);
                    }
                    // Thinking is not kept (it is often encrypted or omitted anyway).
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// Claude Code transcript lines → model calls, one per `message.id` (the first record of a
/// message carries the same usage as the others). Input records (the user's prompt, tool
/// results) read since the previous call become the next call's prompt.
pub fn parse_claude(lines: &[u8]) -> (Vec<Call>, usize) {
    let mut calls: Vec<Call> = Vec::new();
    let mut garbled = 0;
    let mut pending = String::new();
    for line in lines.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(Value::Object(rec)) = serde_json::from_slice::<Value>(line) else {
            garbled += 1;
            continue;
        };
        let msg = rec.get("message").unwrap_or(&Value::Null);
        match rec.get("type").and_then(Value::as_str) {
            Some("user") => content_text(&msg["content"], &mut pending),
            Some("assistant") => {
                let (Some(id), Some(usage)) = (
                    msg.get("id").and_then(Value::as_str),
                    msg.get("usage").filter(|v| v.is_object()),
                ) else {
                    continue;
                };
                let model = msg["model"].as_str().unwrap_or("");
                // Claude Code's own stand-ins (errors, interruptions) were not model calls.
                if model == "<synthetic>" {
                    continue;
                }
                let mut text = String::new();
                content_text(&msg["content"], &mut text);
                if let Some(c) = calls.iter_mut().find(|c| c.id == id) {
                    if !text.is_empty() {
                        let r = c.response.get_or_insert_with(String::new);
                        if r.len() < MAX_TEXT_BLOB {
                            r.push('\n');
                            r.push_str(&text);
                        }
                    }
                    continue;
                }
                calls.push(Call {
                    id: id.to_owned(),
                    model: model.to_owned(),
                    tokens: Tokens {
                        input: u(usage, "input_tokens"),
                        output: u(usage, "output_tokens"),
                        cache_read: u(usage, "cache_read_input_tokens"),
                        cache_write: u(usage, "cache_creation_input_tokens"),
                    },
                    subagent: rec
                        .get("agentId")
                        .and_then(Value::as_str)
                        .filter(|_| rec.get("isSidechain") == Some(&Value::Bool(true)))
                        .unwrap_or("")
                        .to_owned(),
                    prompt: (!pending.is_empty()).then(|| std::mem::take(&mut pending)),
                    response: (!text.is_empty()).then_some(text),
                });
            }
            _ => {}
        }
    }
    (calls, garbled)
}

/// Codex rollout lines → model calls, one per `token_count` record with usage. A call's id is
/// the session's running token total after it (`total_token_usage.total_tokens`), which grows
/// with every call: a record repeated (Codex also sends one when only rate limits change)
/// is the same call. `fallback_model` is used until a `turn_context` names the model.
pub fn parse_codex(lines: &[u8], fallback_model: &str) -> (Vec<Call>, usize) {
    let mut calls: Vec<Call> = Vec::new();
    let mut garbled = 0;
    let mut model = fallback_model.to_owned();
    let mut pending = String::new();
    for line in lines.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(Value::Object(rec)) = serde_json::from_slice::<Value>(line) else {
            garbled += 1;
            continue;
        };
        let p = rec.get("payload").unwrap_or(&Value::Null);
        match (
            rec.get("type").and_then(Value::as_str),
            p.get("type").and_then(Value::as_str),
        ) {
            (Some("turn_context"), _) => {
                if let Some(m) = p.get("model").and_then(Value::as_str) {
                    model = m.to_owned();
                }
            }
            (Some("response_item"), Some("message")) if p["role"] == "user" => {
                for c in p["content"].as_array().into_iter().flatten() {
                    if let Some(t) = c.get("text").and_then(Value::as_str) {
                        content_text(&Value::String(t.to_owned()), &mut pending);
                    }
                }
            }
            (Some("response_item"), Some("function_call_output" | "custom_tool_call_output")) => {
                let out = match &p["output"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                content_text(
                    &Value::String(format!(
                        "[tool_result {}] {out}",
                        p["call_id"].as_str().unwrap_or("")
                    )),
                    &mut pending,
                );
            }
            (Some("event_msg"), Some("token_count")) => {
                let info = &p["info"];
                let (Some(last), Some(total)) = (
                    info.get("last_token_usage").filter(|v| v.is_object()),
                    info.get("total_token_usage")
                        .and_then(|t| t.get("total_tokens"))
                        .and_then(Value::as_u64),
                ) else {
                    continue;
                };
                let id = format!("total:{total}");
                if calls.iter().any(|c| c.id == id) {
                    continue;
                }
                let input = u(last, "input_tokens");
                let cached = u(last, "cached_input_tokens").min(input);
                calls.push(Call {
                    id,
                    model: model.clone(),
                    tokens: Tokens {
                        input: input - cached,
                        output: u(last, "output_tokens"),
                        cache_read: cached,
                        cache_write: u(last, "cache_write_input_tokens"),
                    },
                    subagent: String::new(),
                    prompt: (!pending.is_empty()).then(|| std::mem::take(&mut pending)),
                    response: None,
                });
            }
            _ => {}
        }
    }
    (calls, garbled)
}

/// Parses whole lines of a record: the calls found and how many lines were garbled.
type Parse = dyn Fn(&[u8]) -> (Vec<Call>, usize);

/// Reads one file from `offset` with `parse`.
fn read_file(path: &Path, offset: u64, parse: &Parse) -> std::io::Result<Chunk> {
    let mut notes = Vec::new();
    let (lines, next) = read_lines(path, offset, &mut notes)?;
    let (calls, garbled) = parse(&lines);
    if garbled > 0 {
        notes.push(format!(
            "{}: {garbled} line(s) after byte {offset} are not JSON records and were skipped",
            path.display()
        ));
    }
    Ok(Chunk {
        calls,
        next,
        garbled,
        notes,
    })
}

/// The subagents' transcripts of a Claude Code session: `<transcript stem>/subagents/*.jsonl`.
pub(crate) fn claude_subagent_files(transcript: &Path) -> Vec<PathBuf> {
    let dir = transcript.with_extension("").join("subagents");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    out.sort();
    out.truncate(MAX_SUBAGENT_FILES);
    out
}

/// How the events are stamped: what the hook's own events carry.
pub struct Stamp {
    pub timeline: TimelineId,
    pub agent: &'static str,
    pub role: String,
    pub trace: Vec<u8>,
    pub key: horde_policy::secrets::FingerprintKey,
}

/// Reads what the agent recorded since the last hook and appends one `AgentDecision` per new
/// model call. Never fails the hook: whatever goes wrong is said on stderr.
pub fn new_calls(store: &Store, input: &HookInput, stamp: &Stamp) -> Option<Drafted> {
    if !reads_at(input.kind) || input.session.is_empty() {
        return None;
    }
    let transcript = input.transcript.as_deref().filter(|t| !t.is_empty())?;
    match drafts_from(store, input, stamp, Path::new(transcript)) {
        Ok(d) => d,
        Err(e) => {
            super::warm::warn(format!(
                "horde: model calls of {transcript} not recorded: {e:#}"
            ));
            None
        }
    }
}

/// The new calls' events and blobs, for the hook's own append to carry (one commit a hook
/// call); the calls are claimed already.
fn drafts_from(
    store: &Store,
    input: &HookInput,
    stamp: &Stamp,
    transcript: &Path,
) -> Result<Option<Drafted>> {
    let model = input.model.clone().unwrap_or_default();
    let (files, parse): (Vec<PathBuf>, Box<Parse>) = match input.agent {
        AgentKind::Claude => {
            let mut f = vec![transcript.to_owned()];
            f.extend(claude_subagent_files(transcript));
            (f, Box::new(parse_claude))
        }
        AgentKind::Codex => (
            vec![transcript.to_owned()],
            Box::new(move |l: &[u8]| parse_codex(l, &model)),
        ),
        AgentKind::Gemini => return Ok(None),
    };
    let conn = &store.ledger.conn;
    let mut fresh: Vec<Call> = Vec::new();
    for path in files {
        let key = path.to_string_lossy().into_owned();
        let offset: u64 = conn
            .query_row(
                "SELECT read_to FROM agent_usage_files WHERE agent = ?1 AND session = ?2 AND path = ?3",
                params![stamp.agent, input.session, key],
                |r| r.get::<_, i64>(0),
            )
            .map(|o| o.max(0) as u64)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(0),
                e => Err(e),
            })?;
        let chunk = match read_file(&path, offset, parse.as_ref()) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                super::warm::warn(format!(
                    "horde: the agent's transcript {} is missing: no model calls recorded from it",
                    path.display()
                ));
                continue;
            }
            Err(e) => {
                super::warm::warn(format!("horde: cannot read {}: {e}", path.display()));
                continue;
            }
        };
        for n in &chunk.notes {
            super::warm::warn(format!("horde: {n}"));
        }
        // Claimed and moved past in one transaction: a call is recorded by one hook only.
        let tx = conn.unchecked_transaction()?;
        for call in chunk.calls {
            if fresh.len() >= MAX_CALLS {
                break;
            }
            let claimed = tx.execute(
                "INSERT OR IGNORE INTO agent_usage_calls (agent, session, call_id, seen_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    stamp.agent,
                    input.session,
                    call.id,
                    horde_core::time::now_micros()
                ],
            )?;
            if claimed == 1 {
                fresh.push(call);
            }
        }
        // Past the limit, the rest of the file waits (its calls are not claimed yet).
        if fresh.len() < MAX_CALLS {
            tx.execute(
                "INSERT INTO agent_usage_files (agent, session, path, read_to) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (agent, session, path) DO UPDATE SET read_to = excluded.read_to",
                params![stamp.agent, input.session, key, chunk.next as i64],
            )?;
        }
        tx.commit()?;
    }
    if fresh.is_empty() {
        return Ok(None);
    }
    let rationale = format!("read from {}'s own record of the session", stamp.agent);
    decision_drafts(store, &input.session, stamp, &fresh, &rationale).map(Some)
}

/// Events to append and the blobs they name.
pub(crate) type Drafted = (Vec<Draft>, Vec<(BlobHash, u64)>);

/// One `AgentDecision` per call of `session` (prompt and response as redacted, bounded blobs,
/// secrets found in them as `secret` observations), and the blobs they name. Shared by the
/// hooks and `horde import`, so a call reads the same whichever recorded it.
pub(crate) fn decision_drafts(
    store: &Store,
    session: &str,
    stamp: &Stamp,
    calls: &[Call],
    rationale: &str,
) -> Result<Drafted> {
    let mut drafts = Vec::new();
    let mut blobs = Vec::new();
    let mut blob = |data: &str, place: &str, drafts: &mut Vec<Draft>| -> Result<Vec<u8>> {
        let data = cut(data, MAX_TEXT_BLOB);
        let (data, found) = crate::redact::redact_bytes(data.as_bytes(), &stamp.key);
        drafts.extend(crate::redact::finding_events(
            &found,
            place,
            stamp.timeline,
            stamp.agent,
        ));
        let h: BlobHash = store.ledger.blobs.put_bytes(&data)?;
        blobs.push((h, data.len() as u64));
        Ok(h.to_vec())
    };
    for call in calls {
        let prompt_blob = match &call.prompt {
            Some(p) => blob(p, "model_prompt", &mut drafts)?,
            None => Vec::new(),
        };
        let response_blob = match &call.response {
            Some(r) => blob(r, "model_response", &mut drafts)?,
            None => Vec::new(),
        };
        let d = decision(&store.config.prices, session, call, rationale);
        let mut d = Draft::new(
            stamp.timeline,
            stamp.agent,
            Payload::Decision(AgentDecision {
                prompt_blob,
                response_blob,
                ..d
            }),
        );
        d.role = stamp.role.clone();
        d.trace_id = stamp.trace.clone();
        drafts.push(d);
    }
    Ok((drafts, blobs))
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The decision of one call (without its blobs).
fn decision(
    prices: &std::collections::BTreeMap<String, Price>,
    session: &str,
    call: &Call,
    rationale: &str,
) -> AgentDecision {
    let t = &call.tokens;
    let (price, cost) = match crate::prices::lookup(prices, &call.model) {
        Some((name, p)) => (name, crate::prices::cost_micro_usd(&p, t)),
        None => ("no price".to_owned(), 0),
    };
    let who = if call.subagent.is_empty() {
        String::new()
    } else {
        format!(" (subagent {})", call.subagent)
    };
    AgentDecision {
        summary: format!(
            "model call {}{who}: {} in, {} out, {} cache read, {} cache write",
            if call.model.is_empty() {
                "(model not said)"
            } else {
                &call.model
            },
            t.input,
            t.output,
            t.cache_read,
            t.cache_write
        ),
        model: call.model.clone(),
        tokens_in: t.input,
        tokens_out: t.output,
        cache_read_tokens: t.cache_read,
        cache_write_tokens: t.cache_write,
        cost_micro_usd: cost,
        call_id: call.id.clone(),
        session: session.to_owned(),
        price,
        subagent: call.subagent.clone(),
        rationale: rationale.to_owned(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claude_line(id: &str, block: Value, usage: Value) -> String {
        serde_json::json!({"type": "assistant", "isSidechain": false, "message": {
            "id": id, "model": "claude-opus-5-5", "role": "assistant",
            "content": [block], "usage": usage}})
        .to_string()
    }

    fn usage(i: u64, o: u64, r: u64, w: u64) -> Value {
        serde_json::json!({"input_tokens": i, "output_tokens": o,
            "cache_read_input_tokens": r, "cache_creation_input_tokens": w})
    }

    #[test]
    fn claude_usage_counts_once_per_message_and_carries_prompt_and_response() {
        let text = [
            serde_json::json!({"type": "user", "message": {"role": "user", "content": "do it"}})
                .to_string(),
            claude_line(
                "msg_1",
                serde_json::json!({"type": "text", "text": "Let me run it."}),
                usage(10, 5, 100, 7),
            ),
            claude_line(
                "msg_1",
                serde_json::json!({"type": "tool_use", "id": "toolu_1", "name": "Bash",
                    "input": {"command": "ls"}}),
                usage(10, 5, 100, 7),
            ),
            serde_json::json!({"type": "user", "message": {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"}]}})
            .to_string(),
            "{not json".to_owned(),
            claude_line(
                "msg_2",
                serde_json::json!({"type": "text", "text": "done"}),
                usage(3, 2, 1, 0),
            ),
            serde_json::json!({"type": "assistant", "message": {"id": "x", "model": "<synthetic>",
                "usage": usage(0, 0, 0, 0), "content": []}})
            .to_string(),
        ]
        .join("\n");
        let (calls, garbled) = parse_claude(text.as_bytes());
        assert_eq!(garbled, 1);
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(
            calls[0].tokens,
            Tokens {
                input: 10,
                output: 5,
                cache_read: 100,
                cache_write: 7
            }
        );
        assert_eq!(calls[0].prompt.as_deref(), Some("do it"));
        let r = calls[0].response.as_deref().expect("response");
        assert!(
            r.contains("Let me run it.") && r.contains("[tool_use Bash toolu_1]"),
            "{r}"
        );
        assert_eq!(
            calls[1].prompt.as_deref(),
            Some("[tool_result toolu_1]\na.txt")
        );
        assert_eq!(calls[1].id, "msg_2");
    }

    #[test]
    fn subagent_records_name_their_agent() {
        let line = serde_json::json!({"type": "assistant", "isSidechain": true,
            "agentId": "a142", "message": {"id": "msg_3", "model": "m", "usage": usage(1, 1, 0, 0),
            "content": []}})
        .to_string();
        let (calls, _) = parse_claude(line.as_bytes());
        assert_eq!(calls[0].subagent, "a142");
    }

    /// The shape of Codex 0.171.0's rollout (see the module's comment).
    const CODEX_ROLLOUT: &str = r#"{"timestamp":"2026-12-03T11:23:30.000Z","type":"session_meta","payload":{"session_id":"s1","cwd":"/r","cli_version":"0.171.0"}}
{"timestamp":"2026-12-03T11:23:30.100Z","type":"turn_context","payload":{"model":"gpt-5.5","approval_policy":"never"}}
{"timestamp":"2026-12-03T11:23:30.200Z","type":"response_item","payload":{"type":"message","role":"user","content":[{"type":"input_text","text":"do the task"}]}}
{"timestamp":"2026-12-03T11:23:31.000Z","type":"event_msg","payload":{"type":"token_count","info":null,"rate_limits":{}}}
{"timestamp":"2026-12-03T11:23:31.706Z","type":"event_msg","payload":{"type":"token_count","info":{"total_token_usage":{"input_tokens":1001,"cached_input_tokens":100,"cache_write_input_tokens":0,"output_tokens":21,"reasoning_output_tokens":5,"total_tokens":1022},"last_token_usage":{"input_tokens":1001,"cached_input_tokens":100,"cache_write_input_tokens":0,"output_tokens":21,"reasoning_output_tokens":5,"total_tokens":1022},"model_context_window":258400},"rate_limits":{}}}
{"timestamp":"2026-12-03T11:23:31.800Z","type":"event_msg","payload":{"type":"token_count","info":{"total_token_usage":{"input_tokens":1001,"cached_input_tokens":100,"cache_write_input_tokens":0,"output_tokens":21,"reasoning_output_tokens":5,"total_tokens":1022},"last_token_usage":{"input_tokens":1001,"cached_input_tokens":100,"cache_write_input_tokens":0,"output_tokens":21,"reasoning_output_tokens":5,"total_tokens":1022},"model_context_window":258400},"rate_limits":{}}}
{"timestamp":"2026-12-03T11:23:32.000Z","type":"response_item","payload":{"type":"function_call_output","call_id":"call_shell_1","output":"Process exited with code 0"}}
{"timestamp":"2026-12-03T11:23:33.000Z","type":"event_msg","payload":{"type":"token_count","info":{"total_token_usage":{"input_tokens":2029,"cached_input_tokens":200,"cache_write_input_tokens":0,"output_tokens":69,"reasoning_output_tokens":10,"total_tokens":2098},"last_token_usage":{"input_tokens":1028,"cached_input_tokens":100,"cache_write_input_tokens":0,"output_tokens":48,"reasoning_output_tokens":5,"total_tokens":1076},"model_context_window":258400},"rate_limits":{}}}
"#;

    #[test]
    fn codex_token_counts_are_calls_once_each() {
        let (calls, garbled) = parse_codex(CODEX_ROLLOUT.as_bytes(), "fallback");
        assert_eq!(garbled, 0);
        assert_eq!(
            calls.len(),
            2,
            "a repeated token_count is one call: {calls:?}"
        );
        assert_eq!(calls[0].model, "gpt-5.5");
        assert_eq!(
            calls[0].tokens,
            Tokens {
                input: 901,
                output: 21,
                cache_read: 100,
                cache_write: 0
            }
        );
        assert_eq!(calls[0].prompt.as_deref(), Some("do the task"));
        assert_eq!(calls[1].tokens.input, 928);
        assert_eq!(calls[1].tokens.output, 48);
        assert!(
            calls[1]
                .prompt
                .as_deref()
                .is_some_and(|p| p.contains("call_shell_1"))
        );
        let (calls, _) = parse_codex(CODEX_ROLLOUT.lines().nth(4).expect("l").as_bytes(), "m");
        assert_eq!(
            calls[0].model, "m",
            "the hook's model until a turn_context says"
        );
    }

    #[test]
    fn only_whole_lines_are_read_and_a_shrunk_file_is_read_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("t.jsonl");
        let a = claude_line(
            "msg_1",
            serde_json::json!({"type": "text", "text": "a"}),
            usage(1, 2, 3, 4),
        );
        std::fs::write(&p, format!("{a}\n{{\"type\":\"assis")).expect("write");
        let c = read_file(&p, 0, &parse_claude).expect("read");
        assert_eq!(c.calls.len(), 1);
        assert_eq!(c.next, a.len() as u64 + 1, "the partial line waits");
        let c2 = read_file(&p, c.next, &parse_claude).expect("read");
        assert!(c2.calls.is_empty());
        assert_eq!(c2.next, c.next);
        // Truncated below the offset: read again from the start, and said.
        std::fs::write(&p, "x\n").expect("write");
        let c3 = read_file(&p, c.next, &parse_claude).expect("read");
        assert_eq!((c3.next, c3.garbled), (2, 1));
        assert!(
            c3.notes.iter().any(|n| n.contains("shorter")),
            "{:?}",
            c3.notes
        );
        let missing = read_file(&dir.path().join("nope"), 0, &parse_claude);
        assert_eq!(
            missing.err().map(|e| e.kind()),
            Some(std::io::ErrorKind::NotFound)
        );
    }
}
