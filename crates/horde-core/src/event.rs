//! Building, hashing and decoding events.
//!
//! A caller describes an event as a [`Draft`]; [`build_event`] places it on the device's chain
//! (seq, prev_hash), encodes the body once and hashes it once. [`decode_event`] is the only way
//! bytes from storage or the network become an [`EventBody`]: it checks size, hash and the
//! shape of every field before anyone reads them.

use prost::Message;

use crate::chain::ChainTip;
use crate::hash::{BlobHash, EventHash};
use crate::ids::{DeviceId, EventId, ProjectId, TimelineId};
use crate::path::{PathError, RepoPath};
use crate::proto::{self, event_body::Payload};

/// Largest encoded event body accepted anywhere (FoundationDB's value limit is 100 kB).
pub const MAX_EVENT_BYTES: usize = 90_000;

/// Everything about an event that its author chooses; the chain fills in the rest.
#[derive(Debug, Clone)]
pub struct Draft {
    pub event_id: EventId,
    pub timeline: TimelineId,
    pub occurred_at: i64,
    pub agent_id: String,
    pub role: String,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub causation: Option<EventId>,
    pub payload: Payload,
}

impl Draft {
    /// A draft with a fresh id, the current time and no tracing context.
    pub fn new(timeline: TimelineId, agent_id: impl Into<String>, payload: Payload) -> Self {
        Self {
            event_id: EventId::new(),
            timeline,
            occurred_at: crate::time::now_micros(),
            agent_id: agent_id.into(),
            role: String::new(),
            trace_id: Vec::new(),
            span_id: Vec::new(),
            causation: None,
            payload,
        }
    }

    pub fn caused_by(mut self, cause: EventId) -> Self {
        self.causation = Some(cause);
        self
    }
}

/// An event placed on its chain: the bytes to store and their hash.
#[derive(Debug, Clone)]
pub struct BuiltEvent {
    pub id: EventId,
    pub seq: u64,
    pub hash: EventHash,
    pub body: Vec<u8>,
    pub kind: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error(
        "event {id} encodes to {size} bytes, over the {MAX_EVENT_BYTES}-byte limit; put large parts in blobs"
    )]
    TooLarge { id: EventId, size: usize },
}

/// Places `draft` after `tip` on the chain of (`project`, `device`), encodes and hashes it.
pub fn build_event(
    project: ProjectId,
    device: DeviceId,
    tip: &ChainTip,
    draft: Draft,
) -> Result<BuiltEvent, EventError> {
    let seq = tip.seq + 1;
    let kind = payload_kind(&draft.payload);
    let body = proto::EventBody {
        event_id: draft.event_id.to_vec(),
        project_id: project.to_vec(),
        timeline_id: draft.timeline.to_vec(),
        device_id: device.to_vec(),
        seq,
        prev_hash: tip.hash.map(|h| h.to_vec()).unwrap_or_default(),
        occurred_at: draft.occurred_at,
        agent_id: draft.agent_id,
        role: draft.role,
        trace_id: draft.trace_id,
        span_id: draft.span_id,
        causation_id: draft.causation.map(|c| c.to_vec()).unwrap_or_default(),
        payload: Some(draft.payload),
    };
    let bytes = body.encode_to_vec();
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(EventError::TooLarge {
            id: draft.event_id,
            size: bytes.len(),
        });
    }
    Ok(BuiltEvent {
        id: draft.event_id,
        seq,
        hash: EventHash::of(&bytes),
        body: bytes,
        kind,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("event body is {0} bytes, over the {MAX_EVENT_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("event hash does not match SHA-256 of its body (stored {stored}, computed {computed})")]
    HashMismatch { stored: String, computed: String },
    #[error("event body is not valid protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("event field `{field}` is malformed: {why}")]
    Field { field: &'static str, why: String },
    #[error("event has a bad path: {0}")]
    Path(#[from] PathError),
}

fn field(field: &'static str, why: impl Into<String>) -> DecodeError {
    DecodeError::Field {
        field,
        why: why.into(),
    }
}

/// Checks size and hash, decodes, and validates every field whose shape others rely on.
pub fn decode_event(body: &[u8], hash: &[u8]) -> Result<proto::EventBody, DecodeError> {
    if body.len() > MAX_EVENT_BYTES {
        return Err(DecodeError::TooLarge(body.len()));
    }
    let computed = EventHash::of(body);
    if hash != computed.as_bytes() {
        return Err(DecodeError::HashMismatch {
            stored: hex::encode(hash),
            computed: computed.to_hex(),
        });
    }
    let ev = proto::EventBody::decode(body)?;
    validate(&ev)?;
    Ok(ev)
}

fn validate(ev: &proto::EventBody) -> Result<(), DecodeError> {
    let id16 = |name, b: &[u8]| {
        if b.len() == 16 {
            Ok(())
        } else {
            Err(field(name, format!("expected 16 bytes, got {}", b.len())))
        }
    };
    let opt = |name, b: &[u8], len: usize| {
        if b.is_empty() || b.len() == len {
            Ok(())
        } else {
            Err(field(
                name,
                format!("expected empty or {len} bytes, got {}", b.len()),
            ))
        }
    };
    id16("event_id", &ev.event_id)?;
    id16("project_id", &ev.project_id)?;
    id16("timeline_id", &ev.timeline_id)?;
    id16("device_id", &ev.device_id)?;
    opt("trace_id", &ev.trace_id, 16)?;
    opt("span_id", &ev.span_id, 8)?;
    opt("causation_id", &ev.causation_id, 16)?;
    if ev.seq == 0 {
        return Err(field("seq", "must start at 1"));
    }
    match (ev.seq, ev.prev_hash.len()) {
        (1, 0) => {}
        (1, _) => return Err(field("prev_hash", "must be empty at seq 1")),
        (_, 32) => {}
        (_, n) => return Err(field("prev_hash", format!("expected 32 bytes, got {n}"))),
    }
    let blob = |name, b: &[u8]| opt(name, b, 32);
    match ev.payload.as_ref() {
        None => return Err(field("payload", "missing")),
        Some(Payload::StateChange(sc)) => {
            RepoPath::parse(&sc.path)?;
            if sc.op == proto::state_change::Op::Rename as i32 {
                RepoPath::parse(&sc.from_path)?;
            }
            blob("before_hash", &sc.before_hash)?;
            blob("after_hash", &sc.after_hash)?;
        }
        Some(Payload::Checkpoint(cp)) => blob("manifest_blob", &cp.manifest_blob)?,
        Some(Payload::Observation(o)) => blob("blob", &o.blob)?,
        Some(Payload::Decision(d)) => {
            blob("prompt_blob", &d.prompt_blob)?;
            blob("response_blob", &d.response_blob)?;
        }
        Some(Payload::Message(m)) => blob("body_blob", &m.body_blob)?,
        Some(Payload::ToolCall(t)) => {
            blob("input_blob", &t.input_blob)?;
            blob("output_blob", &t.output_blob)?;
        }
        Some(Payload::Signal(s)) => blob("blob", &s.blob)?,
        Some(_) => {}
    }
    Ok(())
}

/// The short type name used in storage, filters and JSON.
pub fn payload_kind(p: &Payload) -> &'static str {
    match p {
        Payload::Decision(_) => "decision",
        Payload::StateChange(_) => "state_change",
        Payload::ToolCall(_) => "tool_call",
        Payload::Task(_) => "task",
        Payload::Approval(_) => "approval",
        Payload::Message(_) => "message",
        Payload::Observation(_) => "observation",
        Payload::Violation(_) => "violation",
        Payload::Signal(_) => "signal",
        Payload::Checkpoint(_) => "checkpoint",
    }
}

/// Every type name [`payload_kind`] can return, for validating user filters.
pub const PAYLOAD_KINDS: &[&str] = &[
    "decision",
    "state_change",
    "tool_call",
    "task",
    "approval",
    "message",
    "observation",
    "violation",
    "signal",
    "checkpoint",
];

/// Every blob an event refers to, so stores can check they hold them.
pub fn referenced_blobs(p: &Payload) -> Vec<BlobHash> {
    let mut out = Vec::new();
    let mut push = |b: &[u8]| {
        if let Some(h) = BlobHash::from_slice(b) {
            out.push(h);
        }
    };
    match p {
        Payload::StateChange(sc) => push(&sc.after_hash),
        Payload::Checkpoint(cp) => push(&cp.manifest_blob),
        Payload::Observation(o) => push(&o.blob),
        Payload::Decision(d) => {
            push(&d.prompt_blob);
            push(&d.response_blob);
        }
        Payload::Message(m) => push(&m.body_blob),
        Payload::Signal(s) => push(&s.blob),
        Payload::ToolCall(t) => {
            push(&t.input_blob);
            push(&t.output_blob);
        }
        _ => {}
    }
    out
}

/// The blobs of [`referenced_blobs`] that may leave the recording device: all but a withheld
/// `StateChange`'s content (a secret was found in it or a manifest denies its path). Sync
/// sends and fetches only these.
pub fn shared_blobs(p: &Payload) -> Vec<BlobHash> {
    match p {
        Payload::StateChange(sc) if sc.withheld => Vec::new(),
        _ => referenced_blobs(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Signal;
    use proptest::prelude::*;

    proptest! {
        // The decoder faces the network (sync): whatever the bytes, it answers, never panics.
        #[test]
        fn decode_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let h = EventHash::of(&bytes);
            let _ = decode_event(&bytes, h.as_bytes());
        }

        #[test]
        fn decode_never_panics_on_mutated_events(pos in any::<usize>(), val in any::<u8>(), cut in any::<usize>()) {
            let mut d = draft();
            d.payload = Payload::StateChange(proto::StateChange {
                path: "src/a.rs".into(),
                op: proto::state_change::Op::Modify as i32,
                after_hash: vec![7; 32],
                before_hash: vec![8; 32],
                ..Default::default()
            });
            let ev = build_event(ProjectId::new(), DeviceId::new(), &ChainTip::default(), d).expect("fits");
            let mut b = ev.body.clone();
            let i = pos % b.len();
            b[i] = val;
            b.truncate(cut % (b.len() + 1));
            let h = EventHash::of(&b);
            if let Ok(decoded) = decode_event(&b, h.as_bytes()) {
                // Whatever decodes passed validation: ids have their sizes, paths are safe.
                prop_assert_eq!(decoded.event_id.len(), 16);
                if let Some(Payload::StateChange(sc)) = decoded.payload {
                    prop_assert!(RepoPath::parse(&sc.path).is_ok());
                }
            }
        }
    }

    fn draft() -> Draft {
        Draft::new(
            TimelineId::new(),
            "tester",
            Payload::Signal(Signal {
                kind: 1,
                subject: "s".into(),
                detail: String::new(),
                blob: Vec::new(),
            }),
        )
    }

    #[test]
    fn build_then_decode_round_trips() {
        let (p, d) = (ProjectId::new(), DeviceId::new());
        let ev = build_event(p, d, &ChainTip::default(), draft()).expect("fits");
        assert_eq!(ev.seq, 1);
        let body = decode_event(&ev.body, ev.hash.as_bytes()).expect("valid");
        assert_eq!(body.seq, 1);
        assert!(body.prev_hash.is_empty());
        let next = ChainTip {
            seq: 1,
            hash: Some(ev.hash),
        };
        let ev2 = build_event(p, d, &next, draft()).expect("fits");
        let body2 = decode_event(&ev2.body, ev2.hash.as_bytes()).expect("valid");
        assert_eq!(body2.prev_hash, ev.hash.to_vec());
    }

    #[test]
    fn decode_rejects_tampering_and_oversize() {
        let ev = build_event(
            ProjectId::new(),
            DeviceId::new(),
            &ChainTip::default(),
            draft(),
        )
        .expect("fits");
        let mut bad = ev.body.clone();
        bad[3] ^= 1;
        assert!(matches!(
            decode_event(&bad, ev.hash.as_bytes()),
            Err(DecodeError::HashMismatch { .. })
        ));
        let mut big = draft();
        big.agent_id = "x".repeat(MAX_EVENT_BYTES);
        assert!(matches!(
            build_event(ProjectId::new(), DeviceId::new(), &ChainTip::default(), big),
            Err(EventError::TooLarge { .. })
        ));
        let garbage = vec![0xff; 10];
        assert!(decode_event(&garbage, EventHash::of(&garbage).as_bytes()).is_err());
    }

    #[test]
    fn decode_rejects_escaping_paths() {
        let mut d = draft();
        d.payload = Payload::StateChange(proto::StateChange {
            path: "../etc/passwd".into(),
            op: proto::state_change::Op::Create as i32,
            ..Default::default()
        });
        let ev = build_event(ProjectId::new(), DeviceId::new(), &ChainTip::default(), d)
            .expect("builder does not validate paths; decoders do");
        assert!(matches!(
            decode_event(&ev.body, ev.hash.as_bytes()),
            Err(DecodeError::Path(_))
        ));
    }
}
