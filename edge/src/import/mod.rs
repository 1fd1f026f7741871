//! `horde import`: past sessions of the agents horde records live (Claude Code, Codex) and of
//! aider, read from the agents' own records and appended as the events a live recording
//! would have made, as far as the record allows.
//!
//! A session's events look like the hooks': the same agent id, the trace derived from the
//! agent and session id (so `horde log` groups live and imported events), a `TaskEvent`
//! started, prompts and final replies as `Message`s, each tool call as an intent `ToolCall`
//! and a result `ToolCall` sharing the span derived from its `tool_use_id`/`call_id` (the
//! result caused by the intent), and each model call as an `AgentDecision` read by
//! [`crate::hooks::usage`]'s parsers. What marks them as imported: every imported event but a
//! tool result is caused by the run's `import` observation (whose blob names the source file),
//! tool calls say `imported` in `policy_verdict`, decisions in `rationale`, the task in its
//! detail. Imported tool calls were never checked by a policy and changed no file (the tree
//! is recorded by horde, not by a transcript).
//!
//! Dedup rule (what makes importing idempotent, and safe on a session the hooks recorded):
//! the ledger is the truth. The events of the session's trace (agent + session id) already in
//! the ledger are read first; then a tool call is added only when no intent and no result
//! with its call id exist (its result only when no result does), a model call only when no
//! decision with its id (`message.id`, Codex's running total) exists and the hooks have not
//! claimed it, a prompt or reply only when the session does not hold as many messages with
//! the same sender, receiver and (redacted) text already, and the task only when the session
//! has none. So a transcript that grew adds only what is new, and importing twice adds
//! nothing.
//!
//! Bad input: a line that is not a JSON object (or a last line cut short) is skipped and
//! counted, never the end of the import; a session that cannot be found is an error before
//! anything is written.

pub mod aider;
pub mod claude;
pub mod codex;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use horde_core::proto::{
    Message, Observation, TaskEvent, ToolCall, event_body::Payload, task_event,
};
use horde_core::{BlobHash, Draft, EventId, TaskId, TimelineId};
use rusqlite::{OptionalExtension, params};
use serde_json::{Value, json};

use crate::hooks::ToolUse;
use crate::hooks::record::{INLINE_TEXT, cut, digest, tool_args};
use crate::hooks::usage::{Call, Stamp};
use crate::store::Store;
use crate::store::writer::AppendRequest;

/// Events appended per transaction; a session with more goes in several (each complete, so an
/// import cut short resumes where it stopped).
pub const MAX_BATCH: usize = 2000;
/// A tool's output kept in a blob is cut at this size.
pub const MAX_OUTPUT: usize = 8 << 20;
/// A transcript larger than this is refused (read whole lines, in bounded reads).
pub const MAX_TRANSCRIPT: u64 = 1 << 30;

/// One thing that happened in a session, at a time (µs since the epoch).
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// The person's prompt.
    Prompt(String),
    /// The agent's answer at the end of a turn.
    Reply(String),
    /// A tool call started.
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// A tool call's result.
    ToolResult {
        id: String,
        output: Value,
        error: Option<String>,
    },
}

/// A session as read from an agent's records.
#[derive(Debug, Default)]
pub struct Transcript {
    pub session: String,
    /// The main file read.
    pub source: PathBuf,
    pub model: String,
    pub cwd: Option<String>,
    pub items: Vec<(i64, Item)>,
    /// Model calls, with the time each was made.
    pub calls: Vec<(i64, Call)>,
    /// Lines skipped: not JSON objects, or cut short at the end of the file.
    pub skipped_lines: usize,
    pub notes: Vec<String>,
}

/// What an import did to one session (or would do, with `--dry-run`).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub agent: String,
    pub session: String,
    pub source: String,
    pub added: usize,
    pub already_present: usize,
    pub lines_skipped: usize,
    pub prompts: usize,
    pub replies: usize,
    /// Tool call events (an intent and a result per call).
    pub tool_calls: usize,
    pub model_calls: usize,
    /// Aider's commits imported as steps.
    pub commits: usize,
    /// File changes of those steps.
    pub changes: usize,
    pub notes: Vec<String>,
}

impl Summary {
    pub fn line(&self, dry_run: bool) -> String {
        let what = [
            (self.prompts + self.replies, "message"),
            (self.tool_calls, "tool call event"),
            (self.model_calls, "model call"),
            (self.commits, "commit"),
            (self.changes, "file change"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, w)| format!("{n} {w}{}", if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ");
        let who = if self.session == aider::COMMITS {
            format!("{} commits", self.agent)
        } else {
            format!("{} session {}", self.agent, self.session)
        };
        format!(
            "{who}: {} {} event{}{}, {} already present, {} line{} skipped ({})",
            if dry_run { "would add" } else { "added" },
            self.added,
            if self.added == 1 { "" } else { "s" },
            if what.is_empty() {
                String::new()
            } else {
                format!(" ({what})")
            },
            self.already_present,
            self.lines_skipped,
            if self.lines_skipped == 1 { "" } else { "s" },
            self.source
        )
    }
}

/// How an import runs.
pub struct Options {
    pub dry_run: bool,
    /// The manifest role on the events (the hooks' `--role`).
    pub role: String,
    pub key: horde_policy::secrets::FingerprintKey,
}

static NULL: Value = Value::Null;

/// The session's trace id: the one the hooks give it.
pub fn trace_of(agent: &str, session: &str) -> Vec<u8> {
    digest(&["horde.trace", agent, session])[..16].to_vec()
}

fn span_of(agent: &str, session: &str, call_id: &str) -> Vec<u8> {
    digest(&["horde.span", agent, session, call_id])[..8].to_vec()
}

/// An RFC 3339 time (`2026-12-03T11:23:30.000Z`) in µs since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_microsecond())
}

/// The JSON object records of JSONL `lines`, each with its `timestamp` in µs (a record
/// without one takes the time of the record before it). Blank lines and lines that are not
/// objects are passed over: the agents' usage parsers count them.
pub fn records(lines: &[u8]) -> impl Iterator<Item = (serde_json::Map<String, Value>, i64)> + '_ {
    let mut last_at = 0;
    lines.split(|b| *b == b'\n').filter_map(move |line| {
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        let Ok(Value::Object(rec)) = serde_json::from_slice::<Value>(line) else {
            return None;
        };
        let at = rec
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(parse_rfc3339)
            .unwrap_or(last_at);
        last_at = at;
        Some((rec, at))
    })
}

/// The whole lines of `path` (a last line without its newline is left out and counted in
/// `cut_short`), read in [`crate::hooks::usage::read_lines`]'s bounded steps.
pub fn read_whole_lines(path: &Path) -> Result<(Vec<u8>, usize, Vec<String>)> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if len > MAX_TRANSCRIPT {
        anyhow::bail!(
            "{} is {len} bytes, over the {MAX_TRANSCRIPT}-byte limit of an import",
            path.display()
        );
    }
    let mut out = Vec::new();
    let mut notes = Vec::new();
    let mut offset = 0;
    loop {
        let (chunk, next) = crate::hooks::usage::read_lines(path, offset, &mut notes)
            .with_context(|| format!("cannot read {}", path.display()))?;
        out.extend_from_slice(&chunk);
        if next == offset {
            break;
        }
        offset = next;
    }
    let cut_short = usize::from(offset < len);
    if cut_short > 0 {
        notes.push(format!(
            "{}: its last line ({} bytes) has no end (cut short?) and was skipped",
            path.display(),
            len - offset
        ));
    }
    Ok((out, cut_short, notes))
}

/// What the ledger holds of a session already (see the module's dedup rule).
#[derive(Debug, Default)]
struct Present {
    task: Option<TaskId>,
    intents: HashMap<String, EventId>,
    results: HashSet<String>,
    decisions: HashSet<String>,
    messages: HashMap<(String, String, String), usize>,
}

fn present(store: &Store, agent: &str, session: &str) -> Result<Present> {
    let trace = trace_of(agent, session);
    let mut p = Present::default();
    let conn = &store.ledger.conn;
    let mut st = conn.prepare("SELECT event_id, body, hash FROM events WHERE agent = ?1")?;
    let mut rows = st.query(params![agent])?;
    while let Some(r) = rows.next()? {
        let (id, body, hash): (Vec<u8>, Vec<u8>, Vec<u8>) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let Ok(ev) = horde_core::decode_event(&body, &hash) else {
            continue; // `horde verify` reports it; it holds nothing of this session
        };
        if ev.trace_id != trace {
            continue;
        }
        let Some(id) = EventId::from_slice(&id) else {
            continue;
        };
        match ev.payload {
            Some(Payload::Task(t)) if t.kind == task_event::Kind::Started as i32 => {
                p.task = p.task.or_else(|| TaskId::from_slice(&t.task_id));
            }
            Some(Payload::ToolCall(t)) if t.intent => {
                p.intents.insert(t.call_id, id);
            }
            Some(Payload::ToolCall(t)) => {
                p.results.insert(t.call_id);
            }
            Some(Payload::Decision(d)) if !d.call_id.is_empty() => {
                p.decisions.insert(d.call_id);
            }
            Some(Payload::Message(m)) => {
                *p.messages.entry((m.from, m.to, m.text)).or_default() += 1;
            }
            _ => {}
        }
    }
    if p.task.is_none() {
        let t: Option<Vec<u8>> = conn
            .query_row(
                "SELECT task_id FROM agent_sessions WHERE agent = ?1 AND session = ?2",
                params![agent, session],
                |r| r.get(0),
            )
            .optional()?;
        p.task = t.as_deref().and_then(TaskId::from_slice);
    }
    // Calls the hooks claimed (their events may still be on their way).
    let mut st =
        conn.prepare("SELECT call_id FROM agent_usage_calls WHERE agent = ?1 AND session = ?2")?;
    for id in st.query_map(params![agent, session], |r| r.get::<_, String>(0))? {
        p.decisions.insert(id?);
    }
    Ok(p)
}

/// Drafts being built for one session, with the blobs they name.
struct Batch<'a> {
    store: &'a Store,
    agent: &'static str,
    timeline: TimelineId,
    role: String,
    trace: Vec<u8>,
    key: horde_policy::secrets::FingerprintKey,
    drafts: Vec<Draft>,
    blobs: Vec<(BlobHash, u64)>,
    /// The run's `import` observation: the cause of what it adds.
    cause: EventId,
    dry_run: bool,
}

impl Batch<'_> {
    fn draft(&self, at: i64, payload: Payload) -> Draft {
        let mut d = Draft::new(self.timeline, self.agent, payload);
        d.role = self.role.clone();
        d.trace_id = self.trace.clone();
        d.occurred_at = at;
        d.causation = Some(self.cause);
        d
    }

    /// Stores `data` (secrets redacted) as a blob; findings become `secret` observations.
    fn blob(&mut self, data: &[u8], place: &str) -> Result<Vec<u8>> {
        let (data, found) = crate::redact::redact_bytes(data, &self.key);
        self.drafts.extend(crate::redact::finding_events(
            &found,
            place,
            self.timeline,
            self.agent,
        ));
        if self.dry_run {
            return Ok(BlobHash::of(&data).to_vec());
        }
        let h = self.store.ledger.blobs.put_bytes(&data)?;
        self.blobs.push((h, data.len() as u64));
        Ok(h.to_vec())
    }

    /// Text for an event, redacted and bounded as the hooks bound it; the whole in a blob.
    fn text(&mut self, text: &str, place: &str) -> Result<(String, Vec<u8>)> {
        let (red, found) = crate::redact::redact_str(text, &self.key);
        self.drafts.extend(crate::redact::finding_events(
            &found,
            place,
            self.timeline,
            self.agent,
        ));
        if red.len() <= INLINE_TEXT {
            return Ok((red, Vec::new()));
        }
        let blob = self.blob(red.as_bytes(), place)?;
        Ok((cut(&red, INLINE_TEXT), blob))
    }

    fn redact(&self, text: &str) -> String {
        crate::redact::redact_str(text, &self.key).0
    }
}

/// The inline text a message of `text` gets (what the dedup compares).
fn inline(text: &str, key: &horde_policy::secrets::FingerprintKey) -> String {
    let red = crate::redact::redact_str(text, key).0;
    if red.len() <= INLINE_TEXT {
        red
    } else {
        cut(&red, INLINE_TEXT)
    }
}

/// Appends what the ledger does not hold of `t` yet (see the module's dedup rule).
pub fn import_session(
    store: &Store,
    agent: &'static str,
    t: &Transcript,
    opts: &Options,
) -> Result<Summary> {
    let mut sum = Summary {
        agent: agent.to_owned(),
        session: t.session.clone(),
        source: t.source.display().to_string(),
        lines_skipped: t.skipped_lines,
        notes: t.notes.clone(),
        ..Default::default()
    };
    let mut have = present(store, agent, &t.session)?;
    let human = crate::record::outside_agent();
    let timeline = store.ledger.meta.timeline;
    let trace = trace_of(agent, &t.session);
    let import_obs = Draft::new(
        timeline,
        agent,
        Payload::Observation(Observation::default()),
    );
    let mut b = Batch {
        store,
        agent,
        timeline,
        role: opts.role.clone(),
        trace: trace.clone(),
        key: opts.key.clone(),
        drafts: Vec::new(),
        blobs: Vec::new(),
        cause: import_obs.event_id,
        dry_run: opts.dry_run,
    };
    let first_at = t
        .items
        .iter()
        .map(|(a, _)| *a)
        .chain(t.calls.iter().map(|(a, _)| *a))
        .filter(|a| *a > 0) // 0: the record did not say when
        .min()
        .unwrap_or_else(horde_core::time::now_micros);
    let mut new_task = None;
    if have.task.is_none() {
        let task = TaskId::new();
        let detail = json!({
            "session": t.session, "model": t.model, "cwd": t.cwd,
            "transcript": t.source, "imported": true,
        });
        let d = b.draft(
            first_at,
            Payload::Task(TaskEvent {
                task_id: task.to_vec(),
                kind: task_event::Kind::Started as i32,
                title: format!("{agent} session {}", t.session),
                assignee: agent.to_owned(),
                detail: detail.to_string(),
                ..Default::default()
            }),
        );
        b.drafts.push(d);
        new_task = Some(task);
    } else {
        sum.already_present += 1;
    }
    // Tool names by call id (a result names its call's tool).
    let tools: HashMap<&str, (&str, &Value)> = t
        .items
        .iter()
        .filter_map(|(_, i)| match i {
            Item::ToolUse { id, name, input } => Some((id.as_str(), (name.as_str(), input))),
            _ => None,
        })
        .collect();
    // Items and model calls in time order (a stable sort keeps the file's order on ties).
    #[derive(Clone, Copy)]
    enum Next<'a> {
        Item(&'a Item),
        Call(&'a Call),
    }
    let mut all: Vec<(i64, Next<'_>)> = t
        .items
        .iter()
        .map(|(a, i)| (*a, Next::Item(i)))
        .chain(t.calls.iter().map(|(a, c)| (*a, Next::Call(c))))
        .collect();
    all.sort_by_key(|(a, _)| *a);
    let stamp = Stamp {
        timeline,
        agent,
        role: opts.role.clone(),
        trace: trace.clone(),
        key: opts.key.clone(),
    };
    let rationale = format!(
        "imported from {}'s own record of the session ({})",
        agent,
        t.source.display()
    );
    let mut claimed: Vec<String> = Vec::new();
    for (at, next) in all {
        match next {
            Next::Call(c) => {
                if have.decisions.contains(&c.id) {
                    sum.already_present += 1;
                    continue;
                }
                have.decisions.insert(c.id.clone());
                if opts.dry_run {
                    sum.model_calls += 1;
                    continue;
                }
                let (drafts, blobs) = crate::hooks::usage::decision_drafts(
                    store,
                    &t.session,
                    &stamp,
                    std::slice::from_ref(c),
                    &rationale,
                )?;
                for mut d in drafts {
                    d.occurred_at = at;
                    d.causation = Some(b.cause);
                    b.drafts.push(d);
                }
                b.blobs.extend(blobs);
                claimed.push(c.id.clone());
                sum.model_calls += 1;
            }
            Next::Item(Item::Prompt(text) | Item::Reply(text)) => {
                let is_prompt = matches!(next, Next::Item(Item::Prompt(_)));
                let (from, to) = if is_prompt {
                    (human.clone(), agent.to_owned())
                } else {
                    (agent.to_owned(), human.clone())
                };
                let key = (from.clone(), to.clone(), inline(text, &opts.key));
                if let Some(n) = have.messages.get_mut(&key).filter(|n| **n > 0) {
                    *n -= 1;
                    sum.already_present += 1;
                    continue;
                }
                let (text, body_blob) = b.text(text, "message")?;
                let d = b.draft(
                    at,
                    Payload::Message(Message {
                        from,
                        to,
                        text,
                        body_blob,
                    }),
                );
                b.drafts.push(d);
                if is_prompt {
                    sum.prompts += 1;
                } else {
                    sum.replies += 1;
                }
            }
            Next::Item(Item::ToolUse { id, name, input }) => {
                if have.intents.contains_key(id) || have.results.contains(id) {
                    sum.already_present += 1;
                    continue;
                }
                let tool = ToolUse {
                    name: name.clone(),
                    input: input.clone(),
                    call_id: id.clone(),
                    ..Default::default()
                };
                let args = tool_args(&tool)
                    .iter()
                    .map(|a| b.redact(&cut(a, INLINE_TEXT)))
                    .collect();
                let input_blob = b.blob(input.to_string().as_bytes(), "tool_input")?;
                let mut d = b.draft(
                    at,
                    Payload::ToolCall(ToolCall {
                        tool: name.clone(),
                        args,
                        result_summary: "imported: ran before horde saw it".into(),
                        policy_verdict: "imported: not checked (read from the agent's record \
                                         after the fact)"
                            .into(),
                        call_id: id.clone(),
                        session: t.session.clone(),
                        intent: true,
                        input_blob,
                        ..Default::default()
                    }),
                );
                d.span_id = span_of(agent, &t.session, id);
                have.intents.insert(id.clone(), d.event_id);
                b.drafts.push(d);
                sum.tool_calls += 1;
            }
            Next::Item(Item::ToolResult { id, output, error }) => {
                if have.results.contains(id) {
                    sum.already_present += 1;
                    continue;
                }
                have.results.insert(id.clone());
                let (name, input) = tools
                    .get(id.as_str())
                    .copied()
                    .unwrap_or(("unknown", &NULL));
                let text = match output {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                let mut bytes = text.into_bytes();
                if bytes.len() > MAX_OUTPUT {
                    let total = bytes.len();
                    bytes.truncate(MAX_OUTPUT);
                    bytes.extend_from_slice(format!("\n…(cut: {total} bytes in all)").as_bytes());
                }
                let output_blob = if bytes.is_empty() {
                    Vec::new()
                } else {
                    b.blob(&bytes, "tool_output")?
                };
                let tool = ToolUse {
                    name: name.to_owned(),
                    input: input.clone(),
                    call_id: id.clone(),
                    ..Default::default()
                };
                let args = tool_args(&tool)
                    .iter()
                    .map(|a| b.redact(&cut(a, INLINE_TEXT)))
                    .collect();
                let mut d = b.draft(
                    at,
                    Payload::ToolCall(ToolCall {
                        tool: name.to_owned(),
                        args,
                        result_summary: match error {
                            Some(e) => {
                                format!("failed: {}", cut(e.lines().next().unwrap_or(""), 200))
                            }
                            None => "done".into(),
                        },
                        policy_verdict: "imported: not checked".into(),
                        exit_code: i32::from(error.is_some()),
                        call_id: id.clone(),
                        session: t.session.clone(),
                        output_blob,
                        error: error
                            .as_deref()
                            .map(|e| b.redact(&cut(e, INLINE_TEXT)))
                            .unwrap_or_default(),
                        ..Default::default()
                    }),
                );
                d.span_id = span_of(agent, &t.session, id);
                // As the hooks do: a result is caused by its call's intent.
                d.causation = have.intents.get(id).copied().or(Some(b.cause));
                b.drafts.push(d);
                sum.tool_calls += 1;
            }
        }
    }
    let events: Vec<Draft> = std::mem::take(&mut b.drafts);
    sum.added = events.len();
    if events.is_empty() || opts.dry_run {
        if opts.dry_run && !events.is_empty() {
            sum.added += 1; // the import observation
        }
        return Ok(sum);
    }
    // The run's own record: what was imported from where; first, so it can be the cause.
    let about = json!({
        "agent": agent, "session": t.session, "source": t.source,
        "events": events.len(), "already_present": sum.already_present,
        "lines_skipped": t.skipped_lines, "notes": t.notes,
    })
    .to_string();
    let blob = b.blob(about.as_bytes(), "import")?;
    let mut obs = import_obs;
    obs.role = opts.role.clone();
    obs.trace_id = trace;
    obs.payload = Payload::Observation(Observation {
        kind: "import".into(),
        summary: format!(
            "imported {} event(s) of {agent} session {} from {}",
            events.len(),
            t.session,
            t.source.display()
        ),
        blob,
        size: about.len() as u64,
        session: t.session.clone(),
        ..Default::default()
    });
    let mut all = vec![obs];
    all.extend(events);
    sum.added = all.len();
    append(store, all, std::mem::take(&mut b.blobs))?;
    let conn = &store.ledger.conn;
    if let Some(task) = new_task {
        // A session resumed live later goes on as the same task.
        conn.execute(
            "INSERT OR IGNORE INTO agent_sessions (agent, session, task_id, timeline, started_at, transcript)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                agent,
                t.session,
                task.to_vec(),
                timeline.to_vec(),
                first_at,
                t.source.to_string_lossy()
            ],
        )?;
    }
    // The hooks of a resumed session must not record these calls again.
    let now = horde_core::time::now_micros();
    for id in claimed {
        conn.execute(
            "INSERT OR IGNORE INTO agent_usage_calls (agent, session, call_id, seen_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![agent, t.session, id, now],
        )?;
    }
    Ok(sum)
}

/// Appends `drafts` in transactions of at most [`MAX_BATCH`] events, blobs made durable first.
pub(crate) fn append(store: &Store, drafts: Vec<Draft>, blobs: Vec<(BlobHash, u64)>) -> Result<()> {
    store.ledger.blobs.sync()?;
    let mut blobs = Some(blobs);
    let mut rest = drafts;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(MAX_BATCH));
        let last = tail.is_empty();
        store.writer.append(AppendRequest {
            drafts: rest,
            // Every blob is durable already; the first transaction lists them.
            blobs: blobs.take().unwrap_or_default(),
            sign_head: last,
            ..Default::default()
        })?;
        rest = tail;
    }
    Ok(())
}

/// The user's home directory.
pub fn home() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .context("HOME is not set: cannot find the agents' records")
}
