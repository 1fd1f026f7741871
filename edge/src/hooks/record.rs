//! One hook call recorded: the session it belongs to (one horde task, one trace), the event
//! it becomes, and — around tool calls — the policy's decision and the tree's changes.
//!
//! Attribution: at a tool's start, what changed since the last step is recorded as the user's
//! (unless another call is still running: then it is left to that call's end); at its end,
//! what changed is recorded as caused by the call's intent event. A call that names its files
//! (Edit, Write, apply_patch…) takes only changes under them; a call that does not (Bash)
//! takes every change but those of files another running call named. Two commands running at
//! once cannot be told apart: the first to end takes what both did.

use std::time::Duration;

use anyhow::{Context, Result};
use horde_core::proto::{
    Message, Observation, TaskEvent, ToolCall, event_body::Payload, task_event,
};
use horde_core::{BlobHash, Draft, EventId, RepoPath, TaskId};
use horde_policy::decide::{CommandSpec, Request, Verdict};
use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use super::warm::{State, Warm};
use super::{Answer, HookInput, Kind, Mode, ToolUse};
use crate::record::outside_agent;
use crate::store::writer::{AppendRequest, Trace};
use crate::store::{Layout, Store};

/// Text kept inline in events; the whole of it goes to a blob.
pub(crate) const INLINE_TEXT: usize = 4096;
/// A tool's response is kept up to this size (the rest is cut and said so).
const MAX_RESPONSE: usize = 8 << 20;
/// A call still open after this long is taken for abandoned (the agent died before its end).
const STALE_CALL_MICROS: i64 = 30 * 60 * 1_000_000;

pub struct HookOptions {
    pub mode: Mode,
    /// The manifest role the agent's tool calls are decided under.
    pub role: String,
    /// How long a PreToolUse waits for a person when the policy says ask.
    pub wait: Option<Duration>,
    pub secret_key: horde_policy::secrets::FingerprintKey,
}

/// The hook ran where no repository is initialised.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not in a horde repository (run `horde init` there)")]
pub struct NotInitialised(pub String);

struct Ctx<'a> {
    store: &'a Store,
    state: &'a mut State,
    input: &'a HookInput,
    agent: &'static str,
    role: String,
    trace: Vec<u8>,
    timeline: horde_core::TimelineId,
    blobs: Vec<(BlobHash, u64)>,
    extra: Vec<Draft>,
    key: horde_policy::secrets::FingerprintKey,
}

pub(crate) fn digest(parts: &[&str]) -> [u8; 32] {
    *BlobHash::of(parts.join("\0").as_bytes()).as_bytes()
}

impl Ctx<'_> {
    fn draft(&self, payload: Payload) -> Draft {
        let mut d = Draft::new(self.timeline, self.agent, payload);
        d.role = self.role.clone();
        d.trace_id = self.trace.clone();
        d
    }

    fn span(&self, call_id: &str) -> Vec<u8> {
        digest(&["horde.span", self.agent, &self.input.session, call_id])[..8].to_vec()
    }

    /// Stores `data` (secrets redacted) as a blob; findings become `secret` observations.
    fn blob(&mut self, data: &[u8], place: &str) -> Result<Vec<u8>> {
        let (data, found) = crate::redact::redact_bytes(data, &self.key);
        self.extra.extend(crate::redact::finding_events(
            &found,
            place,
            self.timeline,
            self.agent,
        ));
        let h = self.store.ledger.blobs.put_bytes(&data)?;
        self.blobs.push((h, data.len() as u64));
        Ok(h.to_vec())
    }

    fn redact(&self, text: &str) -> String {
        crate::redact::redact_str(text, &self.key).0
    }

    /// Text bounded for an event (redacted), the whole in a blob when it is longer.
    fn text(&mut self, text: &str, place: &str) -> Result<(String, Vec<u8>)> {
        let (red, found) = crate::redact::redact_str(text, &self.key);
        self.extra.extend(crate::redact::finding_events(
            &found,
            place,
            self.timeline,
            self.agent,
        ));
        if red.len() <= INLINE_TEXT {
            return Ok((red, Vec::new()));
        }
        let h = self.store.ledger.blobs.put_bytes(red.as_bytes())?;
        self.blobs.push((h, red.len() as u64));
        Ok((cut(&red, INLINE_TEXT), h.to_vec()))
    }

    fn append(&mut self, drafts: Vec<Draft>, sign_head: bool) -> Result<Vec<EventId>> {
        // The writer makes the new blobs durable with (or before) the commit.
        let mut all = drafts;
        all.append(&mut self.extra);
        let ids = all.iter().map(|d| d.event_id).collect();
        self.store.writer.append(AppendRequest {
            drafts: all,
            blobs: std::mem::take(&mut self.blobs),
            sign_head,
            ..Default::default()
        })?;
        Ok(ids)
    }
}

pub(crate) fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Records one hook call and decides it (PreToolUse). Errors are horde's own: the caller
/// answers them by mode.
pub fn record(input: &HookInput, opts: &HookOptions) -> Result<Answer> {
    let layout = layout_of(input)?;
    let store = Store::open(layout, crate::session::load_key()?)
        .context("cannot open the repository's ledger")?;
    record_in(&mut Warm::once(store)?, input, opts)
}

/// The repository a hook call is about (its `cwd`, else ours).
pub fn layout_of(input: &HookInput) -> Result<Layout> {
    let start = match &input.cwd {
        Some(c) => c.clone(),
        None => crate::session::cwd()?,
    };
    Ok(Layout::discover(&start).map_err(|_| NotInitialised(start.display().to_string()))?)
}

/// [`record`] with an open store and what was kept from earlier calls (the daemon).
pub fn record_in(warm: &mut Warm, input: &HookInput, opts: &HookOptions) -> Result<Answer> {
    warm.refresh()?;
    let result = record_call(&warm.store, &mut warm.state, input, opts);
    warm.settle();
    result
}

fn record_call(
    store: &Store,
    state: &mut State,
    input: &HookInput,
    opts: &HookOptions,
) -> Result<Answer> {
    let agent = input.agent.name();
    let mut ctx = Ctx {
        store,
        state,
        input,
        agent,
        role: opts.role.clone(),
        trace: digest(&["horde.trace", agent, &input.session])[..16].to_vec(),
        timeline: store.ledger.meta.timeline,
        blobs: Vec::new(),
        extra: Vec::new(),
        key: opts.secret_key.clone(),
    };
    let task = ensure_session(&mut ctx)?;
    // Model calls (tokens, cost) from the agent's own records; never fails the hook.
    let stamp = super::usage::Stamp {
        timeline: ctx.timeline,
        agent,
        role: ctx.role.clone(),
        trace: ctx.trace.clone(),
        key: ctx.key.clone(),
    };
    // Carried by this call's own append (one commit a hook call).
    if let Some((drafts, blobs)) = super::usage::new_calls(store, input, &stamp) {
        ctx.extra.extend(drafts);
        ctx.blobs.extend(blobs);
    }
    let answer = answer_call(&mut ctx, task, opts)?;
    // What no append of this call carried (a SessionStart, say) is not left behind.
    if !ctx.extra.is_empty() {
        ctx.append(Vec::new(), false)?;
    }
    Ok(answer)
}

/// Records the call by its kind; what it answers.
fn answer_call(ctx: &mut Ctx<'_>, task: TaskId, opts: &HookOptions) -> Result<Answer> {
    let input = ctx.input;
    let agent = ctx.agent;
    match input.kind {
        Kind::SessionStart => Ok(Answer::Neutral),
        Kind::PreTool => pre_tool(ctx, opts),
        Kind::PostTool | Kind::ToolFailed => {
            post_tool(ctx)?;
            Ok(Answer::Neutral)
        }
        Kind::SessionEnd => {
            end_session(ctx, task)?;
            Ok(Answer::Neutral)
        }
        Kind::Prompt | Kind::Stop => {
            let human = outside_agent();
            let (from, to) = if input.kind == Kind::Prompt {
                (human.clone(), agent.to_owned())
            } else {
                (agent.to_owned(), human)
            };
            let (text, body_blob) = ctx.text(input.text.as_deref().unwrap_or(""), "message")?;
            let d = ctx.draft(Payload::Message(Message {
                from,
                to,
                text,
                body_blob,
            }));
            // A turn's end is a natural point to sign the chain head.
            ctx.append(vec![d], input.kind == Kind::Stop)?;
            if input.kind == Kind::Stop {
                // Calls that never reported an end by the end of the turn did not run.
                ctx.store.ledger.conn.execute(
                    "UPDATE agent_calls SET ended_at = ?3
                     WHERE agent = ?1 AND session = ?2 AND ended_at IS NULL",
                    params![agent, input.session, horde_core::time::now_micros()],
                )?;
            }
            Ok(Answer::Neutral)
        }
        _ => {
            observe(ctx)?;
            Ok(Answer::Neutral)
        }
    }
}

/// The session's row, made (with its TaskEvent STARTED) on its first hook call — SessionStart
/// or whatever came first when hooks were installed mid-session.
fn ensure_session(ctx: &mut Ctx<'_>) -> Result<TaskId> {
    let conn = &ctx.store.ledger.conn;
    let existing: Option<Vec<u8>> = conn
        .query_row(
            "SELECT task_id FROM agent_sessions WHERE agent = ?1 AND session = ?2",
            params![ctx.agent, ctx.input.session],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(t) = existing.as_deref().and_then(TaskId::from_slice) {
        return Ok(t);
    }
    let task = TaskId::new();
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO agent_sessions (agent, session, task_id, timeline, started_at, transcript)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            ctx.agent,
            ctx.input.session,
            task.to_vec(),
            ctx.timeline.to_vec(),
            horde_core::time::now_micros(),
            ctx.input.transcript
        ],
    )?;
    if inserted == 0 {
        // Another hook of the same session (parallel tool calls) made it first.
        let t: Vec<u8> = conn.query_row(
            "SELECT task_id FROM agent_sessions WHERE agent = ?1 AND session = ?2",
            params![ctx.agent, ctx.input.session],
            |r| r.get(0),
        )?;
        return TaskId::from_slice(&t).context("a bad task id in agent_sessions");
    }
    let i = ctx.input;
    let detail = serde_json::json!({
        "session": i.session, "source": i.detail, "model": i.model,
        "cwd": i.cwd, "transcript": i.transcript, "first_event": i.event,
    });
    let d = ctx.draft(Payload::Task(TaskEvent {
        task_id: task.to_vec(),
        kind: task_event::Kind::Started as i32,
        title: format!("{} session {}", ctx.agent, i.session),
        assignee: ctx.agent.to_owned(),
        detail: detail.to_string(),
        ..Default::default()
    }));
    ctx.append(vec![d], false)?;
    Ok(task)
}

/// What a tool asks to do, for the policy: the requests (each with its action and subject;
/// a patch asks to write every file it touches, and each is decided), and the repository
/// files it names (None when it does not say: a shell command).
struct Intent {
    requests: Vec<(Request, &'static str, String)>,
    args: Vec<String>,
    paths: Option<Vec<String>>,
}

fn input_str(v: &Value, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
}

/// The files an apply_patch text adds, updates, deletes or moves to.
fn patch_paths(patch: &str) -> Vec<String> {
    patch
        .lines()
        .filter_map(|l| {
            [
                "*** Add File: ",
                "*** Update File: ",
                "*** Delete File: ",
                "*** Move to: ",
            ]
            .iter()
            .find_map(|p| l.strip_prefix(p))
        })
        .map(|p| p.trim().to_owned())
        .collect()
}

/// The arguments a tool call's events show (the command line, the files, the URL), unredacted.
pub(crate) fn tool_args(tool: &ToolUse) -> Vec<String> {
    intent_of(tool).args
}

fn intent_of(tool: &ToolUse) -> Intent {
    let inp = &tool.input;
    let shell = input_str(inp, &["command", "cmd"]);
    let file = input_str(inp, &["file_path", "notebook_path", "absolute_path"]);
    match tool.name.as_str() {
        "Bash" | "exec_command" | "shell" | "local_shell" | "run_shell_command" => {
            let line = shell.unwrap_or_default();
            Intent {
                requests: vec![(
                    Request::Exec(CommandSpec::Shell(line.clone())),
                    "exec",
                    line.clone(),
                )],
                args: vec![line],
                paths: None,
            }
        }
        "Write" | "Edit" | "MultiEdit" | "NotebookEdit" | "write_file" | "replace" => {
            let f = file.unwrap_or_default();
            Intent {
                requests: vec![(Request::Write(f.clone()), "write", f.clone())],
                args: vec![f.clone()],
                paths: Some(vec![f]),
            }
        }
        "apply_patch" => {
            let text = shell
                .or_else(|| input_str(inp, &["input", "patch"]))
                .or_else(|| inp.as_str().map(str::to_owned))
                .unwrap_or_default();
            let paths = patch_paths(&text);
            Intent {
                // A patch whose files cannot be read is still decided, as an operation.
                requests: if paths.is_empty() {
                    let op = "apply_patch".to_owned();
                    vec![(Request::Operation(op.clone()), "operation", op)]
                } else {
                    paths
                        .iter()
                        .map(|p| (Request::Write(p.clone()), "write", p.clone()))
                        .collect()
                },
                args: paths.clone(),
                paths: Some(paths),
            }
        }
        "Read"
        | "read_file"
        | "read_many_files"
        | "Glob"
        | "Grep"
        | "LS"
        | "glob"
        | "list_directory"
        | "search_file_content" => {
            let p = file
                .or_else(|| input_str(inp, &["path", "dir_path"]))
                .unwrap_or_else(|| ".".into());
            Intent {
                requests: vec![(Request::Read(p.clone()), "read", p.clone())],
                args: vec![p],
                paths: Some(Vec::new()),
            }
        }
        "WebFetch" | "web_fetch" => {
            let url = input_str(inp, &["url", "prompt"]).unwrap_or_default();
            Intent {
                requests: vec![(Request::Net(url.clone()), "net", url.clone())],
                args: vec![url],
                paths: Some(Vec::new()),
            }
        }
        // Tools that only touch the agent's own state (todo lists, plans, questions).
        "TodoWrite" | "ExitPlanMode" | "AskUserQuestion" | "update_plan" | "write_todos"
        | "save_memory" => Intent {
            requests: Vec::new(),
            args: Vec::new(),
            paths: Some(Vec::new()),
        },
        other => {
            let op = other.to_owned();
            Intent {
                requests: vec![(Request::Operation(op.clone()), "operation", op)],
                args: vec![cut(&inp.to_string(), INLINE_TEXT)],
                // Subagents and MCP tools may touch files through other calls, or not at all.
                paths: None,
            }
        }
    }
}

/// `path` as a repository path (absolute ones must be inside the worktree).
fn repo_path(root: &std::path::Path, cwd: Option<&std::path::Path>, path: &str) -> Option<String> {
    let p = std::path::Path::new(path);
    let abs = if p.is_absolute() {
        p.to_owned()
    } else {
        cwd.unwrap_or(root).join(p)
    };
    let rel = abs.strip_prefix(root).ok()?;
    RepoPath::parse(&rel.to_string_lossy())
        .ok()
        .map(|r| r.as_str().to_owned())
}

fn pre_tool(ctx: &mut Ctx<'_>, opts: &HookOptions) -> Result<Answer> {
    let Some(tool) = ctx.input.tool.clone() else {
        observe(ctx)?;
        return Ok(Answer::Neutral);
    };
    let root = ctx.store.ledger.layout.root.clone();
    let intent = intent_of(&tool);
    // What changed while no call was running is the user's.
    if open_calls(ctx, &tool.call_id)?.is_empty() {
        record_outside(ctx, false)?;
    }
    let (answer, verdict, summary) = if intent.requests.is_empty() {
        (
            Answer::Neutral,
            "none",
            "no decision: the agent's own state".to_owned(),
        )
    } else {
        let policy = ctx.state.policy(&root, &opts.role)?;
        // Every request is decided in turn; the first that is not allowed decides the call
        // (so one approval is asked at a time), and a call is allowed only when all are.
        let mut decided = None;
        let mut approved = false;
        let mut allowed = Vec::new();
        for (request, action, subject) in &intent.requests {
            let ask = crate::gate::Ask {
                agent: ctx.agent,
                session: &ctx.input.session,
                request: request.clone(),
                action,
                subject: subject.clone(),
                // In audit mode the call goes ahead: nothing to deny or to ask anybody.
                record: opts.mode == Mode::Enforce,
            };
            let g = crate::gate::gate_with(
                ctx.store,
                &policy,
                &ask,
                opts.wait,
                None,
                &mut ctx.state.facts,
            )?;
            match g.verdict {
                Verdict::Allow => {
                    approved |= g.request.is_some();
                    allowed.push(g.summary);
                }
                Verdict::Deny => {
                    decided = Some((
                        Answer::Deny(format!("horde: {}", g.summary)),
                        "deny",
                        g.summary,
                    ));
                    break;
                }
                Verdict::Ask => {
                    decided = Some((
                        Answer::Ask(format!("horde: {}", g.summary)),
                        "ask",
                        g.summary,
                    ));
                    break;
                }
            }
        }
        decided.unwrap_or_else(|| {
            let summary = allowed.join("; ");
            // Horde only adds restrictions: an allow leaves the agent's own permission rules
            // in charge, unless a person approved the call through horde.
            if approved {
                (Answer::Allow(summary.clone()), "allow", summary)
            } else {
                (Answer::Neutral, "allow", summary)
            }
        })
    };
    let answer = match (opts.mode, answer) {
        // Audit records what enforce would have said and lets the agent decide.
        (Mode::Audit, Answer::Deny(_) | Answer::Ask(_)) => Answer::Neutral,
        (_, a) => a,
    };
    let input_blob = ctx.blob(tool.input.to_string().as_bytes(), "tool_input")?;
    let args = intent
        .args
        .iter()
        .map(|a| ctx.redact(&cut(a, INLINE_TEXT)))
        .collect();
    let cwd = ctx
        .input
        .cwd
        .as_deref()
        .and_then(|c| c.strip_prefix(&root).ok())
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut d = ctx.draft(Payload::ToolCall(ToolCall {
        tool: tool.name.clone(),
        args,
        cwd,
        result_summary: match (&answer, verdict) {
            (Answer::Deny(_), _) => "denied, not run".into(),
            (Answer::Ask(_), _) => "waiting for a person".into(),
            (_, v) => format!("about to run ({v})"),
        },
        policy_verdict: format!(
            "{}{summary}",
            if opts.mode == Mode::Audit {
                "audit: "
            } else {
                ""
            }
        ),
        call_id: tool.call_id.clone(),
        session: ctx.input.session.clone(),
        intent: true,
        input_blob,
        ..Default::default()
    }));
    d.span_id = ctx.span(&tool.call_id);
    let intent_id = d.event_id;
    ctx.append(vec![d], false)?;
    let paths = intent.paths.map(|ps| {
        let rel: Vec<String> = ps
            .iter()
            .filter_map(|p| repo_path(&root, ctx.input.cwd.as_deref(), p))
            .collect();
        serde_json::to_string(&rel).unwrap_or_else(|_| "[]".into())
    });
    // A denied call will not run: it is not left open to take others' changes.
    let now = horde_core::time::now_micros();
    let ended = matches!(answer, Answer::Deny(_)).then_some(now);
    ctx.store.ledger.conn.execute(
        "INSERT OR REPLACE INTO agent_calls
           (agent, session, call_id, intent, tool, paths, verdict, started_at, ended_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            ctx.agent,
            ctx.input.session,
            tool.call_id,
            intent_id.to_vec(),
            tool.name,
            paths,
            verdict,
            now,
            ended
        ],
    )?;
    Ok(answer)
}

/// Horde answered `ask` and the call ran anyway: a person allowed it in the agent's own
/// permission prompt. The requests horde recorded for it are answered as granted there, so
/// they do not wait in `horde approvals` (and on other devices) for an answer already given.
fn answered_in_agent(ctx: &mut Ctx<'_>, tool: &ToolUse) -> Result<()> {
    let asked: Vec<(String, String)> = intent_of(tool)
        .requests
        .into_iter()
        .map(|(_, action, subject)| (action.to_owned(), subject))
        .collect();
    let pending: Vec<String> = crate::approvals::all(&ctx.store.ledger.conn)?
        .into_iter()
        .filter(|r| {
            r.state == "pending"
                && r.agent == ctx.agent
                && r.session == ctx.input.session
                && asked.contains(&(r.action.clone(), r.subject.clone()))
        })
        .map(|r| r.id)
        .collect();
    for id in pending {
        let ans = crate::approvals::Answer {
            grant: true,
            who: format!("{} (its own prompt)", ctx.agent),
            reason: format!(
                "call {} ran after horde asked: allowed in {}'s permission prompt",
                tool.call_id, ctx.agent
            ),
            remember: None,
        };
        // Answered meanwhile (by a person through horde, or expired): theirs stands.
        match crate::approvals::answer(ctx.store, &id, &ans) {
            Ok(_)
            | Err(crate::approvals::ApprovalError::AlreadyDecided { .. })
            | Err(crate::approvals::ApprovalError::Expired(..)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Calls still running in this repository (every agent and session), but `except`: their
/// declared paths (None: undeclared).
fn open_calls(ctx: &Ctx<'_>, except: &str) -> Result<Vec<Option<Vec<String>>>> {
    let since = horde_core::time::now_micros() - STALE_CALL_MICROS;
    let mut st = ctx.store.ledger.conn.prepare(
        "SELECT agent, session, call_id, paths FROM agent_calls
         WHERE ended_at IS NULL AND started_at > ?1",
    )?;
    let rows = st.query_map(params![since], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (agent, session, call, paths) = row?;
        if agent == ctx.agent && session == ctx.input.session && call == except {
            continue;
        }
        out.push(paths.and_then(|p| serde_json::from_str(&p).ok()));
    }
    Ok(out)
}

fn post_tool(ctx: &mut Ctx<'_>) -> Result<()> {
    let Some(tool) = ctx.input.tool.clone() else {
        return observe(ctx);
    };
    let row: Option<(Vec<u8>, Option<String>, String)> = ctx
        .store
        .ledger
        .conn
        .query_row(
            "SELECT intent, paths, verdict FROM agent_calls
             WHERE agent = ?1 AND session = ?2 AND call_id = ?3",
            params![ctx.agent, ctx.input.session, tool.call_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let intent = row.as_ref().and_then(|(i, _, _)| EventId::from_slice(i));
    let asked = row.as_ref().is_some_and(|(_, _, v)| v == "ask");
    let own: Option<Vec<String>> = row
        .and_then(|(_, p, _)| p)
        .and_then(|p| serde_json::from_str(&p).ok());
    let others: Vec<String> = open_calls(ctx, &tool.call_id)?
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    // The call's changes, caused by its intent; the others' are left for their own ends.
    let under = |path: &str, set: &[String]| {
        set.iter()
            .any(|p| path == p || path.starts_with(&format!("{p}/")))
    };
    let keep = |c: &crate::scan::Change| {
        let mut paths = std::iter::once(c.path.as_str()).chain(c.from.as_ref().map(|f| f.as_str()));
        match &own {
            Some(declared) => paths.any(|p| under(p, declared)),
            None => !paths.any(|p| under(p, &others)),
        }
    };
    let trace = Trace {
        trace_id: ctx.trace.clone(),
        span_id: ctx.span(&tool.call_id),
    };

    let output_blob = match &tool.response {
        Some(v) => {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let mut bytes = text.into_bytes();
            if bytes.len() > MAX_RESPONSE {
                let total = bytes.len();
                bytes.truncate(MAX_RESPONSE);
                bytes.extend_from_slice(format!("\n…(cut: {total} bytes in all)").as_bytes());
            }
            ctx.blob(&bytes, "tool_output")?
        }
        None => Vec::new(),
    };
    let summary = match (&tool.error, &tool.response) {
        (Some(e), _) => format!("failed: {}", cut(e.lines().next().unwrap_or(""), 200)),
        (None, Some(Value::Object(o))) if o.get("interrupted") == Some(&Value::Bool(true)) => {
            "interrupted".into()
        }
        _ => "done".into(),
    };
    let error = tool
        .error
        .as_deref()
        .map(|e| ctx.redact(&cut(e, INLINE_TEXT)))
        .unwrap_or_default();
    let policy_verdict = if intent.is_none() {
        "unchecked: no intent was recorded (the PreToolUse hook did not answer)".to_owned()
    } else {
        String::new()
    };
    let mut d = ctx.draft(Payload::ToolCall(ToolCall {
        tool: tool.name.clone(),
        policy_verdict,
        args: intent_of(&tool)
            .args
            .iter()
            .map(|a| ctx.redact(&cut(a, INLINE_TEXT)))
            .collect(),
        result_summary: summary,
        exit_code: i32::from(tool.error.is_some()),
        duration_ms: tool.duration_ms.unwrap_or(0),
        call_id: tool.call_id.clone(),
        session: ctx.input.session.clone(),
        output_blob,
        error,
        ..Default::default()
    }));
    d.span_id = ctx.span(&tool.call_id);
    d.causation = intent;
    // The call's changes and its result in one commit, with what this hook call found on the
    // way (the model calls before it, secrets in its output).
    let along = crate::record::Along {
        before: std::mem::take(&mut ctx.extra),
        after: vec![d],
        blobs: std::mem::take(&mut ctx.blobs),
    };
    ctx.state
        .record_changes(ctx.store, &keep, ctx.agent, intent, &trace, false, along)?;
    if asked {
        answered_in_agent(ctx, &tool)?;
    }
    ctx.store.ledger.conn.execute(
        "UPDATE agent_calls SET ended_at = ?4 WHERE agent = ?1 AND session = ?2 AND call_id = ?3",
        params![
            ctx.agent,
            ctx.input.session,
            tool.call_id,
            horde_core::time::now_micros()
        ],
    )?;
    Ok(())
}

/// Records what changed since the last step as the user's (nobody's call); `full`: walk the
/// whole tree even when a watcher says where the changes are.
fn record_outside(ctx: &mut Ctx<'_>, full: bool) -> Result<()> {
    ctx.state.record_changes(
        ctx.store,
        &|_| true,
        &outside_agent(),
        None,
        &Trace::default(),
        full,
        crate::record::Along::default(),
    )
}

fn end_session(ctx: &mut Ctx<'_>, task: TaskId) -> Result<()> {
    // What changed after the last tool call ended is nobody's call.
    if open_calls(ctx, "")?.is_empty() {
        record_outside(ctx, true)?;
    }
    let d = ctx.draft(Payload::Task(TaskEvent {
        task_id: task.to_vec(),
        kind: task_event::Kind::Finished as i32,
        title: format!("{} session {}", ctx.agent, ctx.input.session),
        assignee: ctx.agent.to_owned(),
        detail: ctx.input.detail.clone().unwrap_or_default(),
        ..Default::default()
    }));
    ctx.append(vec![d], true)?;
    let now = horde_core::time::now_micros();
    let conn = &ctx.store.ledger.conn;
    conn.execute(
        "UPDATE agent_sessions SET ended_at = ?3 WHERE agent = ?1 AND session = ?2",
        params![ctx.agent, ctx.input.session, now],
    )?;
    conn.execute(
        "UPDATE agent_calls SET ended_at = ?3 WHERE agent = ?1 AND session = ?2 AND ended_at IS NULL",
        params![ctx.agent, ctx.input.session, now],
    )?;
    Ok(())
}

/// Every other event: an observation named after it, the payload (redacted) as its blob.
fn observe(ctx: &mut Ctx<'_>) -> Result<()> {
    let i = ctx.input;
    let kind = match i.kind {
        Kind::SubagentStart => "subagent_start".to_owned(),
        Kind::SubagentStop => "subagent_stop".to_owned(),
        Kind::Compact => "compaction".to_owned(),
        Kind::PermissionRequest => "permission_request".to_owned(),
        Kind::PermissionDenied => "permission_denied".to_owned(),
        Kind::ConfigChange => "config_change".to_owned(),
        Kind::Notification => "notification".to_owned(),
        _ => format!("hook:{}", i.event),
    };
    let raw = i.raw.to_string();
    let summary = [
        i.tool.as_ref().map(|t| t.name.clone()),
        i.detail.clone(),
        i.text.clone(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(": ");
    let summary = ctx.redact(&cut(&summary, 1024));
    let blob = ctx.blob(raw.as_bytes(), &kind)?;
    let d = ctx.draft(Payload::Observation(Observation {
        kind,
        summary,
        blob,
        size: raw.len() as u64,
        session: i.session.clone(),
        ..Default::default()
    }));
    ctx.append(vec![d], false)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_patch_names_every_file_it_touches() {
        let p = "*** Begin Patch\n*** Add File: a.txt\n+x\n*** Update File: src/b.rs\n*** Move to: src/c.rs\n@@\n*** Delete File: d\n*** End Patch";
        assert_eq!(patch_paths(p), ["a.txt", "src/b.rs", "src/c.rs", "d"]);
    }

    #[test]
    fn tools_map_to_requests() {
        let t = |name: &str, input: Value| ToolUse {
            name: name.into(),
            input,
            ..Default::default()
        };
        let i = intent_of(&t("Bash", serde_json::json!({"command": "rm -rf x"})));
        assert!(matches!(&i.requests[..], [(Request::Exec(_), "exec", s)] if s == "rm -rf x"));
        assert!(i.paths.is_none());
        let i = intent_of(&t("Write", serde_json::json!({"file_path": "/r/a.txt"})));
        assert_eq!(i.paths, Some(vec!["/r/a.txt".to_owned()]));
        assert!(intent_of(&t("TodoWrite", Value::Null)).requests.is_empty());
        let i = intent_of(&t("mcp__x__y", serde_json::json!({})));
        assert!(matches!(
            &i.requests[..],
            [(Request::Operation(_), "operation", _)]
        ));
        // A patch asks to write every file it touches.
        let patch = "*** Begin Patch\n*** Add File: a.txt\n+x\n*** Update File: src/b.rs\n@@\n-y\n+z\n*** End Patch\n";
        let i = intent_of(&t("apply_patch", serde_json::json!({"input": patch})));
        let subjects: Vec<&str> = i.requests.iter().map(|r| r.2.as_str()).collect();
        assert_eq!(subjects, ["a.txt", "src/b.rs"]);
        assert!(i.requests.iter().all(|r| r.1 == "write"));
        let i = intent_of(&t("apply_patch", serde_json::json!({"input": "garbage"})));
        assert!(matches!(
            &i.requests[..],
            [(Request::Operation(_), "operation", _)]
        ));
    }

    #[test]
    fn paths_outside_the_worktree_are_not_repository_paths() {
        let root = std::path::Path::new("/r");
        assert_eq!(
            repo_path(root, None, "/r/src/a.rs").as_deref(),
            Some("src/a.rs")
        );
        assert_eq!(
            repo_path(root, Some(std::path::Path::new("/r/src")), "a.rs").as_deref(),
            Some("src/a.rs")
        );
        assert_eq!(repo_path(root, None, "/etc/passwd"), None);
        assert_eq!(repo_path(root, None, "/r/../etc/x"), None);
    }
}
