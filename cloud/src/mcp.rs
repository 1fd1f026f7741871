//! horde's MCP tools over the cloud's ledger: [`CloudBackend`] implements
//! [`horde_mcp::Backend`] for one project of the caller's tenant, with the reads the REST
//! routes use (`routes::query`'s event and file-version views, `routes::travel`'s points and
//! trees, the ledger's approvals), and records every call in the project's MCP call record
//! (`horde_ledger::McpCall`; the cloud holds no device key, so calls cannot go on a signed
//! chain). `routes::mcp` serves it over streamable HTTP.
//!
//! Differences from the edge's tools, each answered with a clear message rather than a
//! silent change: events are named by their full id (no prefixes or `#seq`, which are a
//! device's own); points are versions, event ids, RFC 3339 times or `HEAD`; `history` and
//! `diff` read the project's main timeline unless an event names another; `restore` never
//! writes on the server's disk — it is refused with the REST URL that streams the same tree
//! as a tar archive.
//!
//! Invariants: every read goes through the caller's tenant (another tenant's ids answer as
//! absent ones); a blob is read only from the tenant's namespace, only when the event names
//! it and it is not withheld.

use std::sync::Arc;

use futures::StreamExt;
use horde_core::proto::event_body::Payload;
use horde_core::{BlobHash, EventId, RepoPath};
use horde_kv::OrderedKv;
use horde_ledger::{ApprovalFilter, EventFilter, McpCall, Project};
use horde_mcp::{
    Backend, BackendError, BlobInfo, CallRecord, Chunk, Item, LogQuery, Page, PageRequest,
    RestoreRequest, Shown,
};
use serde_json::{Value, json};

use crate::App;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::approvals::ApprovalView;
use crate::routes::query::{event_view, parse_cursor, parse_time, version_view};
use crate::routes::travel::{Point, resolve_point, timeline_for, tree_at};

/// Log entries one `log` call examines at most (as a REST events page).
const MAX_SCAN: usize = 10_000;
/// Longest summary or error text kept in a call's record (the arguments are bounded by
/// horde-mcp already).
pub const RECORDED_TEXT: usize = 1024;
/// Devices whose sync cursors `sync_status` lists at most.
const MAX_STATUS_DEVICES: usize = 100;

/// One project of the caller's tenant, for the MCP tools.
pub struct CloudBackend<K: OrderedKv> {
    app: Arc<App<K>>,
    caller: Caller,
    project: Project,
}

impl<K: OrderedKv> CloudBackend<K> {
    /// `project` must be the caller's tenant's (as `routes::admin::project_of` finds it).
    pub fn new(app: Arc<App<K>>, caller: Caller, project: Project) -> Self {
        CloudBackend {
            app,
            caller,
            project,
        }
    }

    fn ns(&self) -> String {
        self.caller.tenant().to_string()
    }

    /// A point as the cloud reads it: `HEAD` (or nothing) is the latest version.
    async fn point(&self, what: &str, spec: &str) -> Result<Point, BackendError> {
        let spec = spec.trim();
        let at = (!spec.is_empty() && !spec.eq_ignore_ascii_case("HEAD")).then_some(spec);
        if let Some(s) = at
            && s.starts_with('#')
        {
            return Err(BackendError::BadInput(format!(
                "{what} {s:?}: a #seq names a step of one device; on the cloud name a point by \
                 version, event id, RFC 3339 time or HEAD"
            )));
        }
        resolve_point(&self.app, &self.caller, &self.project, at)
            .await
            .map_err(|e| backend_error(&format!("{what}: "), e))
    }

    /// The event `event` names (a full event id) in this project.
    async fn event(&self, event: &str) -> Result<horde_ledger::LoggedEvent, BackendError> {
        let id: EventId = event.trim().parse().map_err(|_| {
            BackendError::BadInput(format!(
                "event {event:?} is not an event id; on the cloud show and read_blob take the full \
                 id (a UUID) as log lists it"
            ))
        })?;
        self.app
            .ledger
            .event_by_id(self.caller.tenant(), self.project.id, id)
            .await
            .map_err(|e| backend_error("", e.into()))?
            .ok_or_else(|| BackendError::NotFound(format!("no event {id} in this project")))
    }
}

/// An API error as the tools report it: the caller's to fix (4xx; absent things apart) or
/// horde's own failure.
fn backend_error(prefix: &str, e: ApiError) -> BackendError {
    let msg = format!("{prefix}{}", e.message);
    match e.status.as_u16() {
        404 => BackendError::NotFound(msg),
        400..=499 => BackendError::BadInput(msg),
        _ => BackendError::Internal(msg),
    }
}

fn ledger_error(e: horde_ledger::LedgerError) -> BackendError {
    backend_error("", e.into())
}

fn bad(msg: impl Into<String>) -> BackendError {
    BackendError::BadInput(msg.into())
}

/// `path` and what is below it in `state`.
fn subtree(state: &horde_replay::State, path: &RepoPath) -> horde_replay::State {
    let mut out = horde_replay::State::new();
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

fn entry_json(e: &horde_replay::Entry) -> Value {
    json!({"kind": e.kind.as_str(), "mode": format!("{:o}", e.mode), "size": e.size,
           "hash": e.hash.map(|h| h.to_hex()), "withheld": e.withheld})
}

fn point_json(p: &Point, version: u64, timeline: horde_core::TimelineId) -> Value {
    json!({"version": version, "timeline": timeline.to_string(),
           "event": p.event.map(|e| json!({"device": e.device.to_string(), "seq": e.seq})),
           "occurred_at": p.time_us.map(horde_core::time::format_micros)})
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn bounded(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

impl<K: OrderedKv> Backend for CloudBackend<K> {
    async fn log(&self, q: LogQuery, page: PageRequest) -> Result<Page, BackendError> {
        let kinds = q.types;
        if let Some(k) = kinds
            .iter()
            .find(|k| !horde_core::PAYLOAD_KINDS.contains(&k.as_str()))
        {
            return Err(bad(format!(
                "type {k:?} is not one of {}",
                horde_core::PAYLOAD_KINDS.join(", ")
            )));
        }
        let agent = match q.agents.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            _ => {
                return Err(bad(
                    "the cloud filters by one agent at a time; call log once per agent",
                ));
            }
        };
        // The ledger matches one path exactly; a directory is matched here, below it.
        let path = q
            .path
            .as_deref()
            .map(RepoPath::parse)
            .transpose()
            .map_err(|e| bad(format!("path: {e}")))?;
        let mut filter = EventFilter {
            kinds,
            agent,
            newest_first: !q.oldest_first,
            limit: Some(page.limit.max(1)),
            ..EventFilter::default()
        };
        if path.is_some() {
            if filter.kinds.is_empty() {
                filter.kinds = vec!["state_change".to_owned()];
            } else {
                filter.kinds.retain(|k| k == "state_change");
                if filter.kinds.is_empty() {
                    // Only file changes have a path.
                    return Ok(Page::default());
                }
            }
        }
        let time = |what: &str, s: &Option<String>| {
            s.as_deref()
                .map(|s| parse_time(what, s))
                .transpose()
                .map_err(|e| backend_error("", e))
        };
        filter.occurred_from = time("since", &q.since)?;
        filter.occurred_to = time("until", &q.until)?;
        filter.after = page
            .cursor
            .as_deref()
            .map(parse_cursor)
            .transpose()
            .map_err(|_| bad("cursor is not one log gave out"))?;
        let under = |body: &horde_core::proto::EventBody| match (&path, &body.payload) {
            (None, _) => true,
            (Some(p), Some(Payload::StateChange(sc))) => {
                let dir = format!("{}/", p.as_str());
                [&sc.path, &sc.from_path]
                    .iter()
                    .any(|x| *x == p.as_str() || x.starts_with(&dir))
            }
            _ => false,
        };
        let got = self
            .app
            .ledger
            .events_page(self.caller.tenant(), self.project.id, &filter, MAX_SCAN)
            .await
            .map_err(ledger_error)?;
        let items = got
            .events
            .iter()
            .filter(|e| under(&e.body))
            .map(|e| Item {
                after: hex::encode(e.versionstamp.as_bytes()),
                value: event_view(e),
            })
            .collect();
        Ok(Page {
            items,
            next: got.next.map(|vs| hex::encode(vs.as_bytes())),
        })
    }

    async fn show(&self, event: String) -> Result<Shown, BackendError> {
        let e = self.event(&event).await?;
        let mut blobs = Vec::new();
        if let Some(payload) = &e.body.payload {
            let shared = horde_core::shared_blobs(payload);
            for hash in horde_core::referenced_blobs(payload) {
                let withheld = !shared.contains(&hash);
                let present = !withheld
                    && self
                        .app
                        .blobs
                        .head(&self.ns(), &hash)
                        .await
                        .map_err(|e| BackendError::Internal(e.to_string()))?
                        .is_some();
                blobs.push(BlobInfo {
                    hash: hash.to_hex(),
                    readable: present,
                    note: if withheld {
                        Some(
                            "withheld: the content stays on the device that recorded it (a secret \
                             or a path a manifest denies)"
                                .to_owned(),
                        )
                    } else if !present {
                        Some("not uploaded to the cloud".to_owned())
                    } else {
                        None
                    },
                });
            }
        }
        Ok(Shown {
            event: event_view(&e),
            blobs,
        })
    }

    async fn read_blob(
        &self,
        event: String,
        hash: String,
        offset: u64,
        len: usize,
    ) -> Result<Chunk, BackendError> {
        let wanted: BlobHash = hash
            .trim()
            .parse()
            .map_err(|_| bad(format!("hash {hash:?} is not a SHA-256 in hex")))?;
        let e = self.event(&event).await?;
        let payload = e.body.payload.as_ref();
        if !payload.is_some_and(|p| horde_core::referenced_blobs(p).contains(&wanted)) {
            return Err(BackendError::NotFound(format!(
                "event {event} names no blob {hash} (show lists the blobs it names)"
            )));
        }
        if !payload.is_some_and(|p| horde_core::shared_blobs(p).contains(&wanted)) {
            return Err(bad(format!(
                "blob {hash} is withheld (a secret or a denied path's content); it is not shown"
            )));
        }
        let (size, mut stream) = self
            .app
            .blobs
            .get(&self.ns(), &wanted)
            .await
            .map_err(|e| BackendError::Internal(e.to_string()))?
            .ok_or_else(|| {
                BackendError::NotFound(format!("blob {hash} was not uploaded to the cloud"))
            })?;
        let mut skip = offset;
        let mut bytes = Vec::with_capacity(len.min(usize::try_from(size).unwrap_or(len)));
        while bytes.len() < len {
            let Some(chunk) = stream.next().await else {
                break;
            };
            let chunk = chunk.map_err(|e| BackendError::Internal(format!("blob {hash}: {e}")))?;
            let mut piece = &chunk[..];
            if skip > 0 {
                let n = usize::try_from(skip).unwrap_or(usize::MAX).min(piece.len());
                piece = &piece[n..];
                skip -= n as u64;
            }
            let take = piece.len().min(len - bytes.len());
            bytes.extend_from_slice(&piece[..take]);
        }
        Ok(Chunk { size, bytes })
    }

    async fn history(&self, path: String, page: PageRequest) -> Result<Page, BackendError> {
        let path = RepoPath::parse(&path).map_err(|e| bad(format!("path: {e}")))?;
        let versions = self
            .app
            .ledger
            .path_history(
                self.caller.tenant(),
                self.project.id,
                self.project.main_timeline,
                path.as_str(),
                None,
            )
            .await
            .map_err(ledger_error)?;
        let all = versions
            .iter()
            .map(|v| serde_json::to_value(version_view(v)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BackendError::Internal(e.to_string()))?;
        Page::from_all(all, &page)
    }

    async fn diff(
        &self,
        from: String,
        to: Option<String>,
        path: Option<String>,
        page: PageRequest,
    ) -> Result<(Value, Page), BackendError> {
        let path = path
            .as_deref()
            .map(RepoPath::parse)
            .transpose()
            .map_err(|e| bad(format!("path: {e}")))?;
        let a = self.point("from", &from).await?;
        let b = self.point("to", to.as_deref().unwrap_or("HEAD")).await?;
        let tree = |p: Point| async move {
            let timeline = timeline_for("timeline", &self.project, &p, None)
                .map_err(|e| backend_error("", e))?;
            let (state, version) = tree_at(&self.app, &self.caller, &self.project, &p, timeline)
                .await
                .map_err(|e| backend_error("", e))?;
            Ok::<_, BackendError>((state, point_json(&p, version, timeline)))
        };
        let (sa, ja) = tree(a).await?;
        let (sb, jb) = tree(b).await?;
        let (sa, sb) = match &path {
            Some(p) => (subtree(&sa, p), subtree(&sb, p)),
            None => (sa, sb),
        };
        let all = horde_replay::diff(&sa, &sb)
            .iter()
            .map(|c| {
                json!({"path": c.path, "change": c.what(),
                       "before": c.before.as_ref().map(entry_json),
                       "after": c.after.as_ref().map(entry_json)})
            })
            .collect();
        Ok((json!({"from": ja, "to": jb}), Page::from_all(all, &page)?))
    }

    async fn restore(&self, req: RestoreRequest) -> Result<Value, BackendError> {
        // The point is checked first, so a wrong one is named as such.
        let point = self.point("at", &req.at).await?;
        let at = match (point.version, point.event) {
            (_, Some(_)) => req.at.trim().to_owned(),
            (Some(v), None) => v.to_string(),
            (None, None) => String::new(),
        };
        let query = if at.is_empty() {
            String::new()
        } else {
            format!("?at={at}")
        };
        Err(bad(format!(
            "the cloud does not write restores on its own disk; download the tree as a tar \
             archive instead: GET /v1/projects/{}/restore{query} on this server with the same \
             API key (e.g. curl -H 'Authorization: Bearer KEY' URL | tar -x -C DIR), or run \
             `horde restore` on a device of this project",
            self.project.id
        )))
    }

    async fn approvals(&self, all: bool, page: PageRequest) -> Result<Page, BackendError> {
        let filter = if all {
            ApprovalFilter::All
        } else {
            ApprovalFilter::Pending
        };
        let list = self
            .app
            .ledger
            .approvals(self.caller.tenant(), self.project.id, filter)
            .await
            .map_err(ledger_error)?;
        let values = list
            .into_iter()
            .map(|r| serde_json::to_value(ApprovalView::from(r)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BackendError::Internal(e.to_string()))?;
        Page::from_all(values, &page)
    }

    async fn status(&self) -> Result<Value, BackendError> {
        let (tenant, project) = (self.caller.tenant(), self.project.id);
        let newest = EventFilter {
            newest_first: true,
            limit: Some(1),
            ..EventFilter::default()
        };
        let head = self
            .app
            .ledger
            .events_page(tenant, project, &newest, 1)
            .await
            .map_err(ledger_error)?
            .events
            .into_iter()
            .next();
        let devices = self
            .app
            .ledger
            .devices(tenant)
            .await
            .map_err(ledger_error)?;
        let mut synced = Vec::new();
        let mut events = 0u64;
        for d in devices.iter().take(MAX_STATUS_DEVICES) {
            let (last_seq, _) = self
                .app
                .ledger
                .cursor(tenant, project, d.id)
                .await
                .map_err(ledger_error)?;
            if last_seq > 0 {
                events += last_seq;
                synced.push(
                    json!({"device": d.id.to_string(), "name": d.name, "last_seq": last_seq}),
                );
            }
        }
        Ok(json!({
            "where": "cloud",
            "project": {"id": project.to_string(), "name": self.project.name,
                        "main_timeline": self.project.main_timeline.to_string()},
            "head": head.as_ref().map(|e| json!({
                "version": horde_ledger::stamp_version(&e.versionstamp),
                "versionstamp": hex::encode(e.versionstamp.as_bytes()),
                "event_id": EventId::from_slice(&e.body.event_id).map(|i| i.to_string()),
                "occurred_at": horde_core::time::format_micros(e.body.occurred_at),
            })),
            "events": events,
            "devices": synced,
            "devices_listed_at_most": MAX_STATUS_DEVICES,
        }))
    }

    async fn record(&self, call: CallRecord) -> Result<(), BackendError> {
        let record = McpCall {
            at: horde_core::time::now_micros(),
            key: self.caller.key.id,
            user: self.caller.user(),
            client: bounded(call.client, 256),
            call_id: bounded(call.call_id, 256),
            tool: bounded(call.tool, 256),
            args: call.args,
            summary: bounded(call.summary, RECORDED_TEXT),
            error: call.error.map(|e| bounded(e, RECORDED_TEXT)),
            duration_ms: call.duration_ms,
        };
        self.app
            .ledger
            .record_mcp_call(self.caller.tenant(), self.project.id, &record)
            .await
            .map_err(|e| BackendError::Internal(e.to_string()))
    }
}
