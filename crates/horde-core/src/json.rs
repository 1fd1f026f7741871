//! The JSON view of an event, shared by `horde log --json`, `horde show --json` and the cloud
//! API: ids as UUID strings, hashes as hex, enums as lower-case names, times as RFC 3339.

use serde_json::{Value, json};

use crate::event::payload_kind;
use crate::hash::EventHash;
use crate::proto::{self, event_body::Payload};
use crate::time::format_micros;

fn uuid_str(b: &[u8]) -> Value {
    match <[u8; 16]>::try_from(b) {
        Ok(a) => Value::String(uuid::Uuid::from_bytes(a).hyphenated().to_string()),
        Err(_) if b.is_empty() => Value::Null,
        Err(_) => Value::String(hex::encode(b)),
    }
}

fn hex_or_null(b: &[u8]) -> Value {
    if b.is_empty() {
        Value::Null
    } else {
        Value::String(hex::encode(b))
    }
}

/// Lower-case enum name without its prefix: `OP_CREATE` → `create`.
fn enum_name(name: Option<&str>, prefix: &str) -> Value {
    match name {
        Some(n) => Value::String(n.strip_prefix(prefix).unwrap_or(n).to_ascii_lowercase()),
        None => Value::Null,
    }
}

/// The whole event: envelope fields plus `type` and `payload`.
pub fn event_json(ev: &proto::EventBody, hash: &EventHash) -> Value {
    let mut v = json!({
        "id": uuid_str(&ev.event_id),
        "hash": hash.to_hex(),
        "project_id": uuid_str(&ev.project_id),
        "timeline_id": uuid_str(&ev.timeline_id),
        "device": uuid_str(&ev.device_id),
        "seq": ev.seq,
        "prev_hash": hex_or_null(&ev.prev_hash),
        "occurred_at": format_micros(ev.occurred_at),
        "agent": ev.agent_id,
        "role": ev.role,
        "trace_id": hex_or_null(&ev.trace_id),
        "span_id": hex_or_null(&ev.span_id),
        "causation_id": uuid_str(&ev.causation_id),
    });
    if let Some(p) = &ev.payload {
        v["type"] = Value::String(payload_kind(p).to_owned());
        v["payload"] = payload_json(p);
    }
    v
}

pub fn payload_json(p: &Payload) -> Value {
    use proto::{FileKind, approval, signal, state_change, task_event};
    match p {
        Payload::Decision(d) => json!({
            "summary": d.summary, "rationale": d.rationale, "chosen": d.chosen,
            "rejected": d.rejected, "confidence": d.confidence, "model": d.model,
            "tokens_in": d.tokens_in, "tokens_out": d.tokens_out,
            "cost_micro_usd": d.cost_micro_usd,
            "prompt_blob": hex_or_null(&d.prompt_blob), "response_blob": hex_or_null(&d.response_blob),
            "cache_read_tokens": d.cache_read_tokens, "cache_write_tokens": d.cache_write_tokens,
            "call_id": d.call_id, "session": d.session, "price": d.price, "subagent": d.subagent,
        }),
        Payload::StateChange(s) => json!({
            "path": s.path,
            "op": enum_name(state_change::Op::try_from(s.op).ok().map(|o| o.as_str_name()), "OP_"),
            "from_path": if s.from_path.is_empty() { Value::Null } else { Value::String(s.from_path.clone()) },
            "kind": enum_name(FileKind::try_from(s.kind).ok().map(|k| k.as_str_name()), "FILE_KIND_"),
            "before_hash": hex_or_null(&s.before_hash), "after_hash": hex_or_null(&s.after_hash),
            "mode": format!("{:o}", s.mode), "size": s.size,
            "withheld": s.withheld,
        }),
        Payload::ToolCall(t) => json!({
            "tool": t.tool, "args": t.args, "cwd": t.cwd, "result_summary": t.result_summary,
            "exit_code": t.exit_code, "signal": t.signal, "duration_ms": t.duration_ms,
            "policy_verdict": t.policy_verdict,
            "call_id": t.call_id, "session": t.session, "intent": t.intent,
            "input_blob": hex_or_null(&t.input_blob), "output_blob": hex_or_null(&t.output_blob),
            "error": t.error,
            "sandbox": t.sandbox.as_ref().map(|s| json!({
                "mechanism": s.mechanism,
                "connections": s.connections.iter().map(|c| json!({
                    "host": c.host, "port": c.port, "protocol": c.protocol,
                    "allowed": c.allowed, "reason": c.reason,
                    "bytes_sent": c.bytes_sent, "bytes_received": c.bytes_received,
                    "duration_ms": c.duration_ms,
                })).collect::<Vec<_>>(),
                "connections_omitted": s.connections_omitted,
                "limits_hit": s.limits_hit,
                "stripped_env": s.stripped_env,
            })),
        }),
        Payload::Task(t) => json!({
            "task_id": uuid_str(&t.task_id),
            "kind": enum_name(task_event::Kind::try_from(t.kind).ok().map(|k| k.as_str_name()), "KIND_"),
            "title": t.title,
            "depends_on": t.depends_on.iter().map(|d| uuid_str(d)).collect::<Vec<_>>(),
            "assignee": t.assignee, "detail": t.detail,
        }),
        Payload::Approval(a) => json!({
            "request_id": uuid_str(&a.request_id),
            "kind": enum_name(approval::Kind::try_from(a.kind).ok().map(|k| k.as_str_name()), "KIND_"),
            "who": a.who, "what": a.what, "reason": a.reason,
            "action": a.action, "subject": a.subject,
            "expires_at": (a.expires_at != 0).then_some(a.expires_at),
            "session": a.session, "remember": a.remember, "scope": a.scope, "pattern": a.pattern,
        }),
        Payload::Message(m) => json!({
            "from": m.from, "to": m.to, "text": m.text, "body_blob": hex_or_null(&m.body_blob),
        }),
        Payload::Observation(o) => json!({
            "kind": o.kind, "summary": o.summary, "blob": hex_or_null(&o.blob),
            "size": o.size, "truncated": o.truncated, "session": o.session,
        }),
        Payload::Violation(c) => json!({
            "expected": c.expected, "observed": c.observed,
            "action_event_id": uuid_str(&c.action_event_id),
        }),
        Payload::Signal(s) => json!({
            "kind": enum_name(signal::Kind::try_from(s.kind).ok().map(|k| k.as_str_name()), "KIND_"),
            "subject": s.subject, "detail": s.detail, "blob": hex_or_null(&s.blob),
        }),
        Payload::Checkpoint(c) => json!({
            "manifest_blob": hex_or_null(&c.manifest_blob), "files": c.files,
            "total_bytes": c.total_bytes,
        }),
    }
}
