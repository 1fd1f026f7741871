//! What the commands and the MCP server (`mcp.rs`) share to read the ledger: `horde log`'s
//! filters from text, an event with the blobs it names (and which of them are withheld), the
//! JSON views of events, points, tree entries, changes and restore reports, and one path's
//! part of a tree. It never imports a command.

use anyhow::{Context, Result, bail};
use horde_core::proto::EventBody;
use horde_core::proto::event_body::Payload;
use horde_core::{
    BlobHash, DeviceId, EventHash, PAYLOAD_KINDS, RepoPath, decode_event, referenced_blobs,
};
use horde_replay::State;
use serde_json::{Value, json};

use crate::store::Ledger;
use crate::store::read::{self, EventRow, LogFilter};
use crate::timetravel::{Resolved, parse_time};

/// `horde log`'s filters as typed (by a person or a tool call).
#[derive(Debug, Default, Clone)]
pub struct LogText {
    pub types: Vec<String>,
    pub agents: Vec<String>,
    pub path: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub oldest_first: bool,
}

/// Parses the filters; an error names the one that is wrong, as `{prefix}NAME` (`--since`
/// for the command line, `since` for a tool call).
pub fn log_filter(t: LogText, prefix: &str) -> Result<LogFilter> {
    for ty in &t.types {
        if !PAYLOAD_KINDS.contains(&ty.as_str()) {
            bail!(
                "unknown event type {ty:?}; types are: {}",
                PAYLOAD_KINDS.join(", ")
            );
        }
    }
    let path = t
        .path
        .as_deref()
        .map(RepoPath::parse)
        .transpose()
        .with_context(|| format!("{prefix}path"))?;
    Ok(LogFilter {
        types: t.types,
        agents: t.agents,
        path,
        since: t
            .since
            .as_deref()
            .map(parse_time)
            .transpose()
            .with_context(|| format!("{prefix}since"))?,
        until: t
            .until
            .as_deref()
            .map(parse_time)
            .transpose()
            .with_context(|| format!("{prefix}until"))?,
        oldest_first: t.oldest_first,
        ..Default::default()
    })
}

/// An event as `horde log --json` prints it (with `synced`).
pub fn event_json(r: &EventRow) -> Result<Value> {
    let ev = decode_event(&r.body, &r.hash).with_context(|| {
        format!(
            "event #{} of device {} is corrupt (run `horde verify`)",
            r.seq, r.device
        )
    })?;
    let mut j = horde_core::json::event_json(
        &ev,
        &EventHash::from_slice(&r.hash).expect("decode checked the hash"),
    );
    j["synced"] = json!(r.synced);
    Ok(j)
}

/// An event and the blobs it names.
pub struct Shown {
    pub row: EventRow,
    pub ev: EventBody,
    pub hash: EventHash,
    pub blobs: Vec<BlobHash>,
    /// The blobs of a withheld change: never previewed, and their absence elsewhere is how it
    /// should be.
    pub withheld: Vec<BlobHash>,
}

/// The event `spec` names (id, unique prefix, or a seq of `device`).
pub fn show(ledger: &Ledger, spec: &str, device: Option<DeviceId>) -> Result<Shown> {
    let row = read::find_event(&ledger.conn, spec, device)?;
    let ev = decode_event(&row.body, &row.hash)
        .with_context(|| format!("event #{} is corrupt (run `horde verify`)", row.seq))?;
    let hash = EventHash::from_slice(&row.hash).expect("decode checked the hash");
    let blobs = ev
        .payload
        .as_ref()
        .map(referenced_blobs)
        .unwrap_or_default();
    let withheld = match &ev.payload {
        Some(Payload::StateChange(sc)) if sc.withheld => {
            BlobHash::from_slice(&sc.after_hash).into_iter().collect()
        }
        _ => Vec::new(),
    };
    Ok(Shown {
        row,
        ev,
        hash,
        blobs,
        withheld,
    })
}

pub fn point_json(r: &Resolved) -> Value {
    json!({"seq": r.event.seq, "event_id": r.event.id.to_string(),
           "device": r.event.device.to_string(), "timeline_id": r.point.timeline.to_string(),
           "occurred_at": horde_core::time::format_micros(r.event.occurred_at)})
}

pub fn report_json(r: &horde_replay::RestoreReport) -> Value {
    json!({"written": r.written, "bytes": r.bytes, "dirs_created": r.dirs_created,
           "removed": r.removed, "kept": r.kept, "protected": r.protected,
           "withheld": r.withheld})
}

pub fn entry_json(e: &horde_replay::Entry) -> Value {
    json!({"kind": e.kind.as_str(), "mode": format!("{:o}", e.mode), "size": e.size,
           "hash": e.hash.map(|h| h.to_hex())})
}

pub fn change_json(c: &horde_replay::Change) -> Value {
    json!({"path": c.path, "change": c.what(),
           "before": c.before.as_ref().map(entry_json),
           "after": c.after.as_ref().map(entry_json)})
}

/// `path` and what is below it in `state` (the rest left out).
pub fn subtree(state: &State, path: &RepoPath) -> State {
    let mut out = State::new();
    let dir = format!("{}/", path.as_str());
    for (p, e) in state.iter() {
        if (p == path.as_str() || p.starts_with(&dir))
            && let Ok(rp) = RepoPath::parse(p)
        {
            out.insert(&rp, e.clone());
        }
    }
    out
}

/// `state` without its withheld entries, and their paths.
pub fn without_withheld(state: &State) -> (State, Vec<String>) {
    let mut out = State::new();
    let mut left = Vec::new();
    for (p, e) in state.iter() {
        if e.withheld {
            left.push(p.to_owned());
        } else if let Ok(rp) = RepoPath::parse(p) {
            out.insert(&rp, e.clone());
        }
    }
    (out, left)
}
