//! The agents people already use (Claude Code, Codex, Gemini CLI), recorded and gated through
//! their own hooks: each agent's hook payload is read into one [`HookInput`], recorded
//! ([`record`]), and answered in that agent's protocol ([`answer`]). `install` writes the
//! agents' hook configuration.
//!
//! Protocols (checked against the real CLIs: Claude Code 2.1.332, Codex 0.171.0, Gemini CLI
//! 0.61.0):
//! - Claude Code: JSON on stdin; a PreToolUse answer is
//!   `hookSpecificOutput.permissionDecision` allow | deny | ask on stdout with exit 0.
//! - Codex: the same field names, but only `deny` (`ask` and `allow` count as a failed hook,
//!   and the tool runs): an ask is a deny that says how to approve, an allow says nothing.
//! - Gemini CLI: `BeforeTool`/`AfterTool`…; `{"decision":"deny","reason":…}`; no call id, so
//!   a call is known by its tool and input.

pub mod http;
pub mod install;
pub mod record;
pub mod usage;
pub mod warm;

use serde_json::{Value, json};

/// An agent whose hooks horde speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentKind {
    Claude,
    Codex,
    Gemini,
}

impl AgentKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "claude" => Some(Self::Claude),
            "codex" => Some(Self::Codex),
            "gemini" => Some(Self::Gemini),
            _ => None,
        }
    }

    /// The agent id on events.
    pub fn name(self) -> &'static str {
        match self {
            Self::Claude => "claude",
            Self::Codex => "codex",
            Self::Gemini => "gemini",
        }
    }

    /// The agent's hook events horde installs itself for.
    pub fn events(self) -> &'static [&'static str] {
        match self {
            Self::Claude => &[
                "SessionStart",
                "UserPromptSubmit",
                "PreToolUse",
                "PostToolUse",
                "PostToolUseFailure",
                "PermissionRequest",
                "PermissionDenied",
                "SubagentStart",
                "SubagentStop",
                "PreCompact",
                "PostCompact",
                "Notification",
                "ConfigChange",
                "Stop",
                "SessionEnd",
            ],
            Self::Codex => &[
                "SessionStart",
                "UserPromptSubmit",
                "PreToolUse",
                "PostToolUse",
                "PermissionRequest",
                "SubagentStart",
                "SubagentStop",
                "PreCompact",
                "PostCompact",
                "Stop",
                "SessionEnd",
            ],
            Self::Gemini => &[
                "SessionStart",
                "BeforeAgent",
                "BeforeTool",
                "AfterTool",
                "AfterAgent",
                "PreCompress",
                "Notification",
                "SessionEnd",
            ],
        }
    }

    /// Whether `event` names tools (takes a matcher).
    pub fn is_tool_event(self, event: &str) -> bool {
        matches!(
            event,
            "PreToolUse"
                | "PostToolUse"
                | "PostToolUseFailure"
                | "PermissionRequest"
                | "PermissionDenied"
                | "BeforeTool"
                | "AfterTool"
        )
    }
}

/// Whether a failed check blocks (`enforce`) or is recorded and let through (`audit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Audit,
    Enforce,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "audit" => Some(Self::Audit),
            "enforce" => Some(Self::Enforce),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Audit => "audit",
            Self::Enforce => "enforce",
        }
    }
}

/// What happened, in horde's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    SessionStart,
    SessionEnd,
    Prompt,
    PreTool,
    PostTool,
    ToolFailed,
    SubagentStart,
    SubagentStop,
    Stop,
    Compact,
    PermissionRequest,
    PermissionDenied,
    ConfigChange,
    Notification,
    Other,
}

/// A tool call as the hook tells it.
#[derive(Debug, Clone, Default)]
pub struct ToolUse {
    pub name: String,
    pub input: Value,
    /// The agent's id of the call; for agents without one (Gemini), a hash of tool and input.
    pub call_id: String,
    pub response: Option<Value>,
    pub error: Option<String>,
    pub duration_ms: Option<u64>,
}

/// One hook call.
#[derive(Debug, Clone)]
pub struct HookInput {
    pub agent: AgentKind,
    pub kind: Kind,
    /// The agent's own event name.
    pub event: String,
    pub session: String,
    pub cwd: Option<std::path::PathBuf>,
    pub transcript: Option<String>,
    pub model: Option<String>,
    pub tool: Option<ToolUse>,
    /// A prompt, the last assistant message, a notification, a compaction's summary.
    pub text: Option<String>,
    /// Why a session started or ended, what triggered a compaction, a subagent's type.
    pub detail: Option<String>,
    pub raw: Value,
}

fn str_of(v: &Value, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
}

/// An agent's event name in horde's terms.
pub fn kind_of(agent: AgentKind, event: &str) -> Kind {
    match (agent, event) {
        (_, "SessionStart") => Kind::SessionStart,
        (_, "SessionEnd") => Kind::SessionEnd,
        (_, "UserPromptSubmit") | (AgentKind::Gemini, "BeforeAgent") => Kind::Prompt,
        (_, "PreToolUse") | (AgentKind::Gemini, "BeforeTool") => Kind::PreTool,
        (_, "PostToolUse") | (AgentKind::Gemini, "AfterTool") => Kind::PostTool,
        (_, "PostToolUseFailure") => Kind::ToolFailed,
        (_, "SubagentStart") => Kind::SubagentStart,
        (_, "SubagentStop") => Kind::SubagentStop,
        (_, "Stop") | (AgentKind::Gemini, "AfterAgent") => Kind::Stop,
        (_, "PreCompact" | "PostCompact" | "PreCompress") => Kind::Compact,
        (_, "PermissionRequest") => Kind::PermissionRequest,
        (_, "PermissionDenied") => Kind::PermissionDenied,
        (_, "ConfigChange") => Kind::ConfigChange,
        (_, "Notification") => Kind::Notification,
        _ => Kind::Other,
    }
}

/// Reads a hook's payload. Whatever the payload, an input comes out: fields that are missing
/// or of the wrong type are simply absent (the caller decides what it can record).
pub fn parse(agent: AgentKind, event: &str, raw: Value) -> HookInput {
    let kind = kind_of(agent, event);
    let tool = str_of(&raw, &["tool_name"]).map(|name| {
        let input = raw.get("tool_input").cloned().unwrap_or(Value::Null);
        let call_id = str_of(&raw, &["tool_use_id", "call_id"]).unwrap_or_else(|| {
            // Gemini gives no id: the same tool with the same input, before and after.
            let h = horde_core::BlobHash::of(format!("{name}\n{input}").as_bytes());
            format!("h:{}", &h.to_hex()[..16])
        });
        ToolUse {
            name,
            input,
            call_id,
            response: raw.get("tool_response").cloned(),
            error: match raw.get("error") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Null) | None => None,
                Some(other) => Some(other.to_string()),
            },
            duration_ms: raw.get("duration_ms").and_then(Value::as_u64),
        }
    });
    let text = match kind {
        Kind::Prompt => str_of(&raw, &["prompt"]),
        Kind::Stop | Kind::SubagentStop => str_of(
            &raw,
            &["last_assistant_message", "prompt_response", "last_message"],
        ),
        Kind::Compact => str_of(&raw, &["summary", "compact_summary", "custom_instructions"]),
        Kind::Notification => str_of(&raw, &["message"]),
        _ => None,
    };
    let detail = str_of(
        &raw,
        &[
            "source",
            "reason",
            "trigger",
            "agent_type",
            "notification_type",
        ],
    );
    HookInput {
        agent,
        kind,
        event: event.to_owned(),
        session: str_of(&raw, &["session_id"]).unwrap_or_default(),
        cwd: str_of(&raw, &["cwd"]).map(Into::into),
        transcript: str_of(&raw, &["transcript_path"]),
        model: str_of(&raw, &["model"]),
        tool,
        text,
        detail,
        raw,
    }
}

/// What horde says about a tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Nothing to say: the agent's own permissions decide (also every non-tool event).
    Neutral,
    Deny(String),
    /// A person must decide (Codex has no ask: it becomes a deny that says so).
    Ask(String),
    /// Let the tool run: a person approved it through horde.
    Allow(String),
    /// Something to tell the user (not the model), once.
    Notice(String),
}

/// The answer when horde could not decide: enforce denies a tool call, audit lets it be.
pub fn fallback(mode: Mode, kind: Kind, why: &str) -> Answer {
    match (mode, kind) {
        (Mode::Enforce, Kind::PreTool) => Answer::Deny(format!(
            "horde (enforce mode) could not check this call, so it is denied: {why}"
        )),
        _ => Answer::Neutral,
    }
}

/// A marker so that "not initialised" is said once per session.
fn first_notice(agent: AgentKind, session: &str) -> bool {
    let h = horde_core::BlobHash::of(format!("{}\0{session}", agent.name()).as_bytes());
    let p = std::env::temp_dir().join(format!("horde-hook-notice-{}", &h.to_hex()[..16]));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(p)
        .is_ok()
}

/// The answer to give for what recording a hook call came to, whichever way the hook reached
/// horde (a `horde hook` process or the daemon's HTTP endpoint): a failure is answered by
/// mode, a repository without horde is said once per session (and denies in enforce mode).
pub fn settle(
    result: anyhow::Result<Answer>,
    agent: AgentKind,
    mode: Mode,
    kind: Kind,
    session: &str,
) -> Answer {
    match result {
        Ok(answer) => answer,
        Err(e) if e.downcast_ref::<record::NotInitialised>().is_some() => match (mode, kind) {
            (Mode::Enforce, Kind::PreTool) => Answer::Deny(format!(
                "horde (enforce mode): {e}; the call is denied until it is"
            )),
            _ if first_notice(agent, session) => {
                Answer::Notice(format!("horde is not recording this session: {e}"))
            }
            _ => Answer::Neutral,
        },
        Err(e) => {
            tracing::warn!("{e:#}");
            eprintln!("horde: {e:#}");
            fallback(mode, kind, &format!("{e:#}"))
        }
    }
}

/// What a Codex call the policy asks about is told (Codex has no ask).
const CODEX_ASK: &str = "Codex cannot wait for a person, so the call is denied for now: \
    once it is approved (`horde approve ID --remember exact` lets it through again in this \
    session), run it again";

/// What to print on stdout to answer `event` in `agent`'s protocol (with exit code 0: every
/// agent reads a JSON answer only then).
pub fn answer(agent: AgentKind, event: &str, a: &Answer) -> String {
    let pre = matches!(event, "PreToolUse" | "BeforeTool");
    let decision = |d: &str, why: &str| match agent {
        AgentKind::Claude | AgentKind::Codex => json!({
            "hookSpecificOutput": {
                "hookEventName": event,
                "permissionDecision": d,
                "permissionDecisionReason": why,
            }
        }),
        AgentKind::Gemini => json!({ "decision": d, "reason": why }),
    };
    let v = match a {
        Answer::Neutral => json!({}),
        Answer::Notice(msg) => json!({ "systemMessage": msg }),
        Answer::Deny(why) if pre => decision("deny", why),
        Answer::Ask(why) if pre => match agent {
            AgentKind::Claude => decision("ask", why),
            // Codex runs the tool on "ask" and cannot wait for a person's answer: deny, and
            // say how the call can go through next time.
            AgentKind::Codex => decision("deny", &format!("{why}. {CODEX_ASK}")),
            // Gemini in headless mode ends the session on "ask".
            AgentKind::Gemini => decision("deny", why),
        },
        // Codex 0.171.0 takes `allow` for a failed hook ("unsupported permissionDecision:allow")
        // and runs the tool anyway: say nothing instead.
        Answer::Allow(_) if pre && agent == AgentKind::Codex => json!({}),
        Answer::Allow(why) if pre => decision("allow", why),
        _ => json!({}),
    };
    format!("{v}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_horde_installs_for_has_a_meaning() {
        for agent in [AgentKind::Claude, AgentKind::Codex, AgentKind::Gemini] {
            for event in agent.events() {
                assert_ne!(kind_of(agent, event), Kind::Other, "{agent:?} {event}");
            }
        }
        assert_eq!(
            kind_of(AgentKind::Claude, "SessionStart"),
            Kind::SessionStart
        );
        assert_eq!(kind_of(AgentKind::Gemini, "BeforeTool"), Kind::PreTool);
        assert_eq!(kind_of(AgentKind::Claude, "Nonsense"), Kind::Other);
    }

    #[test]
    fn answers_speak_each_protocol() {
        let deny = Answer::Deny("no".into());
        let c: Value =
            serde_json::from_str(&answer(AgentKind::Claude, "PreToolUse", &deny)).expect("json");
        assert_eq!(c["hookSpecificOutput"]["permissionDecision"], "deny");
        let ask = Answer::Ask("who?".into());
        let x: Value =
            serde_json::from_str(&answer(AgentKind::Codex, "PreToolUse", &ask)).expect("json");
        assert_eq!(
            x["hookSpecificOutput"]["permissionDecision"], "deny",
            "Codex has no ask"
        );
        let g: Value =
            serde_json::from_str(&answer(AgentKind::Gemini, "BeforeTool", &deny)).expect("json");
        assert_eq!(g["decision"], "deny");
        assert_eq!(answer(AgentKind::Claude, "PostToolUse", &deny), "{}\n");
    }

    /// Payloads of Codex 0.171.0 as its hooks received them (`codex exec`, gpt-5.5's tools):
    /// the shell tool `exec_command` is `Bash` with the command as a string, `apply_patch`
    /// carries its patch in `command`, a response is a string, the call id is `tool_use_id`.
    #[test]
    fn codex_payloads_are_read() {
        let pre: Value = serde_json::from_str(
            r#"{"session_id":"01a23ba4-954b-70d2-b16a-1560f1485244","turn_id":"01a23ba4-956a-7a81-8f02-216347c2e36e","transcript_path":"/h/.codex/sessions/2026/12/03/rollout-x.jsonl","cwd":"/w","hook_event_name":"PreToolUse","model":"gpt-5.5","permission_mode":"bypassPermissions","tool_name":"Bash","tool_input":{"command":"echo hi > a.txt && mv a.txt b.txt"},"tool_use_id":"call_shell_1"}"#,
        )
        .expect("json");
        let i = parse(AgentKind::Codex, "PreToolUse", pre);
        assert_eq!(i.kind, Kind::PreTool);
        assert_eq!(i.session, "01a23ba4-954b-70d2-b16a-1560f1485244");
        assert_eq!(i.model.as_deref(), Some("gpt-5.5"));
        assert_eq!(i.cwd.as_deref(), Some(std::path::Path::new("/w")));
        let t = i.tool.expect("a tool call");
        assert_eq!(
            (t.name.as_str(), t.call_id.as_str()),
            ("Bash", "call_shell_1")
        );
        assert_eq!(t.input["command"], "echo hi > a.txt && mv a.txt b.txt");

        let post: Value = serde_json::from_str(
            r#"{"session_id":"s","turn_id":"t","transcript_path":"p","cwd":"/w","hook_event_name":"PostToolUse","model":"gpt-5.5","permission_mode":"bypassPermissions","tool_name":"apply_patch","tool_input":{"command":"*** Begin Patch\n*** Add File: c.txt\n+patched by apply_patch\n*** End Patch\n"},"tool_response":"Exit code: 0\nWall time: 0 seconds\nOutput:\nSuccess. Updated the following files:\nA c.txt\n","tool_use_id":"call_patch_2"}"#,
        )
        .expect("json");
        let i = parse(AgentKind::Codex, "PostToolUse", post);
        assert_eq!(i.kind, Kind::PostTool);
        let t = i.tool.expect("a tool call");
        assert_eq!(
            (t.name.as_str(), t.call_id.as_str()),
            ("apply_patch", "call_patch_2")
        );
        assert!(
            t.input["command"]
                .as_str()
                .is_some_and(|p| p.contains("*** Add File: c.txt"))
        );
        assert!(matches!(t.response, Some(Value::String(ref s)) if s.contains("A c.txt")));
        assert!(t.error.is_none());

        let stop: Value = serde_json::from_str(
            r#"{"session_id":"s","turn_id":"t","transcript_path":"p","cwd":"/w","hook_event_name":"Stop","model":"gpt-5.5","permission_mode":"bypassPermissions","stop_hook_active":false,"last_assistant_message":"done"}"#,
        )
        .expect("json");
        let i = parse(AgentKind::Codex, "Stop", stop);
        assert_eq!((i.kind, i.text.as_deref()), (Kind::Stop, Some("done")));
        let start: Value = serde_json::from_str(
            r#"{"session_id":"s","transcript_path":"p","cwd":"/w","hook_event_name":"SessionStart","model":"gpt-5.5","permission_mode":"bypassPermissions","source":"startup"}"#,
        )
        .expect("json");
        let i = parse(AgentKind::Codex, "SessionStart", start);
        assert_eq!(
            (i.kind, i.detail.as_deref()),
            (Kind::SessionStart, Some("startup"))
        );
        let end: Value = serde_json::from_str(
            r#"{"session_id":"s","transcript_path":"p","cwd":"/w","hook_event_name":"SessionEnd","reason":"other"}"#,
        )
        .expect("json");
        assert_eq!(
            parse(AgentKind::Codex, "SessionEnd", end).kind,
            Kind::SessionEnd
        );
        let prompt: Value = serde_json::from_str(
            r#"{"session_id":"s","turn_id":"t","transcript_path":"p","cwd":"/w","hook_event_name":"UserPromptSubmit","model":"gpt-5.5","permission_mode":"bypassPermissions","prompt":"do the task"}"#,
        )
        .expect("json");
        let i = parse(AgentKind::Codex, "UserPromptSubmit", prompt);
        assert_eq!(
            (i.kind, i.text.as_deref()),
            (Kind::Prompt, Some("do the task"))
        );
    }

    #[test]
    fn codex_is_told_how_an_asked_call_can_go_through() {
        let ask = Answer::Ask("horde: a person must approve curl x: request 1234abcd".into());
        let x: Value =
            serde_json::from_str(&answer(AgentKind::Codex, "PreToolUse", &ask)).expect("json");
        let out = &x["hookSpecificOutput"];
        assert_eq!(out["hookEventName"], "PreToolUse");
        assert_eq!(out["permissionDecision"], "deny");
        let why = out["permissionDecisionReason"].as_str().expect("a reason");
        assert!(
            why.starts_with("horde: a person must approve curl x"),
            "{why}"
        );
        assert!(
            why.contains("horde approve") && why.contains("run it again"),
            "{why}"
        );
        // Codex has no allow either: an approved call is let through by saying nothing.
        let allow = Answer::Allow("approved".into());
        assert_eq!(answer(AgentKind::Codex, "PreToolUse", &allow), "{}\n");
        let c: Value =
            serde_json::from_str(&answer(AgentKind::Claude, "PreToolUse", &allow)).expect("json");
        assert_eq!(c["hookSpecificOutput"]["permissionDecision"], "allow");
    }
}
