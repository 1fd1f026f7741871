//! Time travel: a project's tree at any point as a tar stream (`GET …/restore`), and forks
//! (`POST …/timelines`).
//!
//! A point is a commit version, an RFC 3339 time or an event id ([`resolve_point`]; the
//! history and manifest endpoints take the same). At a version or a time, restore reads the
//! timeline's manifest at that version (each path's latest version) and folds it, in path
//! order, into a `horde_replay::State`, which refuses anything under a file or a symlink.
//! At an event, it gives the tree as the event's device had it after that event
//! ([`device_state`]): every device's chain describes its own tree, which differs from the
//! canonical one while devices work concurrently. All of that happens before the 200, so
//! every refusal is a JSON error. Then `horde_replay::tar::write_tar` runs on a blocking thread, reading
//! blobs through [`TenantBlobs`] and writing into a bounded channel that is the response body.
//!
//! Invariants:
//! - Streamed: memory per restore is the tree plus at most `CHANNEL_CHUNKS` chunks of about
//!   `CHUNK_BYTES`; a client that stops reading for `STALL_TIMEOUT` ends the restore.
//! - A failure after the 200 (a missing or damaged blob, the store) ends the body with an
//!   error, so the transfer is visibly broken; and the archive's end-of-archive blocks leave
//!   only after its last entry was written whole (`HOLDBACK`), so no prefix of a failed
//!   restore is ever a complete-looking archive.
//! - Blobs are read from the caller's tenant's namespace only.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use horde_blob::{BlobHash, ByteStream};
use horde_core::proto::event_body::Payload;
use horde_core::{DeviceId, EventId, RepoPath, TimelineId};
use horde_kv::OrderedKv;
use horde_kv::tuple::Versionstamp;
use horde_ledger::{EventFilter, MAX_READ_EVENTS, Manifest, Project, stamp_version};
use horde_replay::{BlobSource, Entry, ReplayError};
use serde::Deserialize;
use serde_json::Value;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};

use crate::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::openapi::Binary;
use crate::routes::admin::{TimelineView, project_of};
use crate::routes::query::parse_time;

/// Bytes per body chunk.
const CHUNK_BYTES: usize = 64 << 10;
/// Chunks the channel holds before the tar writer waits for the client.
const CHANNEL_CHUNKS: usize = 4;
/// The end-of-archive blocks tar writes last (also when an archive is abandoned: the `tar`
/// builder finishes on drop). The writer always keeps back this many bytes until it knows
/// the archive is whole.
const HOLDBACK: usize = 1024;
/// How long a restore waits for its client to take the next chunk.
const STALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Anomalies named in the log line of one restore.
const LOGGED_ANOMALIES: usize = 5;
/// The withheld paths are listed in `x-horde-withheld` only up to this many bytes of JSON
/// (proxies limit header sizes); past it only `x-horde-withheld-count` is sent.
pub const MAX_WITHHELD_HEADER: usize = 8 * 1024;

/// A point in a project's history.
#[derive(Debug, Clone, Copy, Default)]
pub struct Point {
    /// The commit version (`None`: the latest).
    pub version: Option<u64>,
    /// The timeline of the event the point names, if it names one.
    pub event_timeline: Option<TimelineId>,
    /// When (µs since the epoch): the time asked, or the event's.
    pub time_us: Option<i64>,
    /// The event the point names, if it names one.
    pub event: Option<EventAt>,
}

/// An event as a point: whose chain it is on, where, and where it is in the log.
#[derive(Debug, Clone, Copy)]
pub struct EventAt {
    pub device: DeviceId,
    pub seq: u64,
    pub versionstamp: [u8; 12],
}

/// Resolves `at`: a commit version (digits), an event id (a UUID: the version of the commit
/// that wrote it, so the whole commit counts), or an RFC 3339 time (the version of the
/// latest event that occurred by then, by its device's clock; 0 before any). Absent: the
/// latest version.
pub async fn resolve_point<K: OrderedKv>(
    app: &App<K>,
    caller: &Caller,
    project: &Project,
    at: Option<&str>,
) -> ApiResult<Point> {
    let Some(at) = at else {
        return Ok(Point::default());
    };
    if let Ok(v) = at.parse::<u64>() {
        return Ok(Point {
            version: Some(v),
            ..Point::default()
        });
    }
    if let Ok(id) = at.parse::<EventId>() {
        let e = app
            .ledger
            .event_by_id(caller.tenant(), project.id, id)
            .await?
            .ok_or_else(|| {
                ApiError::not_found(format!("at {at:?}: no event {id} in this project"))
            })?;
        return Ok(Point {
            version: Some(stamp_version(&e.versionstamp)),
            event_timeline: TimelineId::from_slice(&e.body.timeline_id),
            time_us: Some(e.body.occurred_at),
            event: Some(EventAt {
                device: DeviceId::from_slice(&e.body.device_id).expect("the ledger checked the id"),
                seq: e.body.seq,
                versionstamp: *e.versionstamp.as_bytes(),
            }),
        });
    }
    let us = parse_time("at", at).map_err(|_| {
        ApiError::bad_request(format!(
            "at {at:?} is neither a version (an integer), an event id (a UUID) nor an RFC 3339 \
             time (e.g. 2026-11-22T14:12:00Z)"
        ))
    })?;
    let version = app
        .ledger
        .version_at_time(caller.tenant(), project.id, us.div_euclid(1000))
        .await?
        .unwrap_or(0);
    Ok(Point {
        version: Some(version),
        event_timeline: None,
        time_us: Some(us),
        event: None,
    })
}

/// The timeline a request means: `timeline` if given, else the timeline of the event the
/// point names, else the project's main timeline.
pub fn timeline_for(
    what: &str,
    project: &Project,
    point: &Point,
    timeline: Option<&str>,
) -> ApiResult<TimelineId> {
    match timeline {
        Some(t) => t
            .parse()
            .map_err(|_| ApiError::bad_request(format!("{what} {t:?} is not a UUID"))),
        None => Ok(point.event_timeline.unwrap_or(project.main_timeline)),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RestoreQuery {
    /// A version, an event id or an RFC 3339 time (default: the latest version). At an
    /// event: the tree as that event's device had it right after it.
    pub at: Option<String>,
    /// Default: the timeline of the event `at` names, else the main timeline.
    pub timeline: Option<String>,
}

/// The tree of a timeline at a point, as a tar archive (streamed; `tar -x` restores it).
///
/// At a version or a time: each path's latest version there. At an event: the tree as the
/// event's device had it right after that event (its latest checkpoint on the event's
/// timeline, then its own changes up to the event), which leaves out what other devices did
/// concurrently.
///
/// Entries in path order, directories first (names ending in `/`), modes as recorded,
/// symlinks as links, every file checked against its recorded size and hash. Entries that
/// the history places under a file or a symlink are left out (and counted in
/// `x-horde-anomalies`): an archive never writes through a link. A failure after the
/// answer started (a missing or damaged blob) breaks the transfer.
#[utoipa::path(get, path = "/v1/projects/{id}/restore", tag = "time travel", security(("bearer" = [])),
    params(("id" = String, Path), RestoreQuery),
    responses(
        (status = 200, content_type = "application/x-tar", body = inline(Binary),
            description = "the tree as a tar archive",
            headers(
                ("content-disposition" = String, description = "attachment; filename=\"horde-PROJECT-vVERSION.tar\""),
                ("x-horde-version" = u64, description = "the commit version restored"),
                ("x-horde-timeline" = String, description = "the timeline restored"),
                ("x-horde-anomalies" = u64, description = "entries left out because the history places them under a file or a symlink"),
                ("x-horde-withheld-count" = u64, description = "files left out because their content stays on the device that recorded them (a secret was found in it or a manifest denies the path)"),
                ("x-horde-withheld" = String, description = "those paths as a JSON array (non-ASCII escaped as \\uXXXX); absent when it would exceed 8 KiB"))),
        (status = 400, description = "`at` or `timeline` does not parse, or the version is in the future"),
        (status = 404, description = "no such project, timeline or event"),
        (status = 409, description = "the history records an entry in a form that cannot be restored"),
        (status = 429, description = "over this API key's rate limit, or too many restores of this tenant running (see Retry-After)"),
        (status = 503, description = "the store is busy, or too many restores running (see Retry-After)")))]
pub async fn restore<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<RestoreQuery>,
) -> ApiResult<Response> {
    let project = project_of(&app, &caller, &id).await?;
    let point = resolve_point(&app, &caller, &project, q.at.as_deref()).await?;
    let timeline = timeline_for("timeline", &project, &point, q.timeline.as_deref())?;
    let slot = app.restores.acquire(caller.tenant())?;
    let (state, version) = tree_at(&app, &caller, &project, &point, timeline).await?;
    if state.anomaly_count() > 0 {
        let first: Vec<String> = state
            .anomalies()
            .iter()
            .take(LOGGED_ANOMALIES)
            .map(|a| format!("{}: {}", a.path, a.what))
            .collect();
        tracing::warn!(
            %timeline,
            version,
            anomalies = state.anomaly_count(),
            first = ?first,
            "restore leaves out entries under a file or a symlink"
        );
    }
    let mtime = point
        .time_us
        .map(|us| us.div_euclid(1_000_000))
        .unwrap_or_else(|| horde_core::time::now_micros().div_euclid(1_000_000));
    let mtime = u64::try_from(mtime).unwrap_or(0);
    let (files, bytes) = state.totals();
    let anomalies = state.anomaly_count();
    let withheld: Vec<&str> = state.withheld().collect();
    let withheld_count = withheld.len();
    let withheld_list = Some(ascii_json(&withheld)).filter(|j| j.len() <= MAX_WITHHELD_HEADER);
    if withheld_count > 0 {
        tracing::info!(%timeline, version, withheld = withheld_count, "restore leaves out withheld files");
    }
    tracing::info!(%timeline, version, entries = state.len(), files, bytes, "restore");

    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let complete = Arc::new(AtomicBool::new(false));
    let handle = Handle::current();
    let blobs = TenantBlobs {
        app: app.clone(),
        ns: caller.tenant().to_string(),
        handle: handle.clone(),
    };
    let span = tracing::Span::current();
    let done = complete.clone();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let _span = span.enter();
        let mut out = ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK_BYTES + 2 * HOLDBACK),
            handle,
        };
        let written = match horde_replay::tar::write_tar(&state, &blobs, &mut out, mtime) {
            Ok(out) => out.finish().map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match written {
            Ok(()) => done.store(true, Ordering::Release),
            Err(_) if out.tx.is_closed() => {
                tracing::info!(version, "restore: the client went away");
            }
            Err(why) => {
                tracing::error!(version, "restore failed after the answer started: {why}");
                out.fail(io::Error::other(format!("the restore failed: {why}")));
            }
        }
    });
    let mut rx = rx;
    let body = async_stream::stream! {
        // Let the server write the status line and headers before the first chunk: a restore
        // that fails at once (its first blob missing) must still answer 200 and then break
        // the transfer, not reset the connection before any answer.
        tokio::task::yield_now().await;
        while let Some(item) = rx.recv().await {
            yield item;
        }
        // The writer ended without finishing (it panicked): never end as if complete.
        if !complete.load(Ordering::Acquire) {
            tracing::error!("restore stream ended before the archive was complete");
            yield Err(io::Error::other("the restore ended before the archive was complete"));
        }
    };
    let mut response = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"horde-{}-v{}.tar\"",
                    project.id, version
                ),
            ),
            (
                header::HeaderName::from_static("x-horde-version"),
                version.to_string(),
            ),
            (
                header::HeaderName::from_static("x-horde-timeline"),
                timeline.to_string(),
            ),
            (
                header::HeaderName::from_static("x-horde-anomalies"),
                anomalies.to_string(),
            ),
            (
                header::HeaderName::from_static("x-horde-withheld-count"),
                withheld_count.to_string(),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response();
    if let Some(list) = withheld_list {
        let value = header::HeaderValue::from_str(&list)
            .map_err(|e| ApiError::internal(format!("the withheld list as a header: {e}")))?;
        response
            .headers_mut()
            .insert(header::HeaderName::from_static("x-horde-withheld"), value);
    }
    Ok(response)
}

/// The tree of `timeline` at `point` and the version it is at: at an event on that timeline,
/// the tree as the event's device had it right after the event ([`device_state`]);
/// otherwise each path's latest version at the point's version (the manifest, folded in path
/// order by [`state_of`]). What `restore` archives and the MCP `diff` compares.
pub(crate) async fn tree_at<K: OrderedKv>(
    app: &Arc<App<K>>,
    caller: &Caller,
    project: &Project,
    point: &Point,
    timeline: TimelineId,
) -> ApiResult<(horde_replay::State, u64)> {
    match point.event {
        // The device's own view exists on the event's own timeline only.
        Some(ev) if point.event_timeline == Some(timeline) => {
            let state = device_state(app, caller, project, timeline, ev).await?;
            Ok((
                state,
                point.version.expect("an event's point has its version"),
            ))
        }
        _ => {
            let manifest = app
                .ledger
                .manifest(caller.tenant(), project.id, timeline, point.version)
                .await?;
            Ok((state_of(&manifest)?, manifest.version))
        }
    }
}

/// `paths` as a JSON array in visible ASCII (what a header value may hold): every character
/// past `~` as `\uXXXX` (surrogate pairs above U+FFFF); JSON already escapes controls.
fn ascii_json(paths: &[&str]) -> String {
    let json = serde_json::to_string(paths).expect("strings serialize");
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if (' '..='~').contains(&c) {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

fn unrestorable(why: impl std::fmt::Display) -> ApiError {
    ApiError::conflict(
        "unrestorable",
        format!("the history cannot be restored at this point: {why}"),
    )
}

/// The tree as `ev`'s device had it right after `ev`, on `timeline` (the event's): the
/// manifest of the device's latest checkpoint on the timeline at or before the event, then
/// the device's own `StateChange`s after it, up to and including the event, in seq order.
/// Without such a checkpoint the fold starts from the parent's canonical tree at the fork
/// version (a fork) or from nothing (a main timeline). The device's changes are read from
/// the log between the starting version and the event's, filtered to the device and the
/// timeline: the cost follows the project's activity in that window.
async fn device_state<K: OrderedKv>(
    app: &Arc<App<K>>,
    caller: &Caller,
    project: &Project,
    timeline: TimelineId,
    ev: EventAt,
) -> ApiResult<horde_replay::State> {
    let tenant = caller.tenant();
    let checkpoint = app
        .ledger
        .latest_checkpoint(tenant, project.id, ev.device, timeline, ev.seq)
        .await?;
    let (mut state, after, from_version) = match checkpoint {
        Some(c) => {
            let hash = BlobHash::from_slice(&c.manifest)
                .ok_or_else(|| ApiError::internal("a checkpoint's manifest hash is malformed"))?;
            let blobs = TenantBlobs {
                app: app.clone(),
                ns: tenant.to_string(),
                handle: Handle::current(),
            };
            let seq = c.seq;
            let state =
                tokio::task::spawn_blocking(move || horde_replay::load_manifest(&blobs, &hash))
                    .await
                    .map_err(|e| ApiError::internal(format!("loading a checkpoint manifest: {e}")))?
                    .map_err(|e| {
                        unrestorable(format!(
                            "the checkpoint at seq {seq} of device {}: {e}",
                            ev.device
                        ))
                    })?;
            let from = stamp_version(&c.versionstamp);
            (state, Some(c.versionstamp), from)
        }
        None => {
            let tl = app.ledger.timeline(tenant, project.id, timeline).await?;
            match (tl.parent, tl.fork_version) {
                (Some(parent), Some(at)) => {
                    let base = app
                        .ledger
                        .manifest(tenant, project.id, parent, Some(at))
                        .await?;
                    (state_of(&base)?, None, at)
                }
                _ => (horde_replay::State::new(), None, 0),
            }
        }
    };
    let upto = Versionstamp::from(ev.versionstamp);
    let mut filter = EventFilter {
        kinds: vec!["state_change".to_owned()],
        timeline: Some(timeline),
        device: Some(ev.device),
        from_version: Some(from_version),
        to_version: Some(stamp_version(&upto)),
        after,
        limit: Some(MAX_READ_EVENTS),
        ..EventFilter::default()
    };
    loop {
        let page = app
            .ledger
            .events_page(tenant, project.id, &filter, usize::MAX)
            .await?;
        for e in &page.events {
            // The same commit may hold the device's later events.
            if e.body.seq > ev.seq {
                return Ok(state);
            }
            if let Some(Payload::StateChange(sc)) = &e.body.payload {
                state.apply(sc).map_err(|e: ReplayError| unrestorable(e))?;
            }
        }
        match page.next {
            Some(next) => filter.after = Some(next),
            None => return Ok(state),
        }
    }
}

/// The tree a manifest lists: entries inserted in path order, so a parent comes before what
/// it holds and anything under a file or a link is refused (an anomaly of the state).
fn state_of(m: &Manifest) -> ApiResult<horde_replay::State> {
    let mut state = horde_replay::State::new();
    for (path, fv) in &m.files {
        let unrestorable = |why: String| {
            ApiError::conflict(
                "unrestorable",
                format!(
                    "the history records {path:?} (at version {}) in a form that cannot be \
                     restored: {why}",
                    stamp_version(&fv.versionstamp)
                ),
            )
        };
        let p = RepoPath::parse(path).map_err(|e| unrestorable(e.to_string()))?;
        let entry = Entry::from_parts_withheld(fv.kind, fv.mode, fv.size, &fv.hash, fv.withheld)
            .map_err(unrestorable)?;
        state.insert(&p, entry);
    }
    Ok(state)
}

/// The tar writer's output: chunks into the response body's channel. Runs on a blocking
/// thread (it waits for the client with `Handle::block_on`).
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    handle: Handle,
}

impl ChannelWriter {
    fn send(&self, item: io::Result<Bytes>) -> io::Result<()> {
        let sent = self
            .handle
            .block_on(tokio::time::timeout(STALL_TIMEOUT, self.tx.send(item)));
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the client went away",
            )),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client took no data for {} s", STALL_TIMEOUT.as_secs()),
            )),
        }
    }

    /// Sends what is left, end-of-archive blocks included: the archive is complete.
    fn finish(&mut self) -> io::Result<()> {
        let rest = std::mem::take(&mut self.buf);
        if rest.is_empty() {
            return Ok(());
        }
        self.send(Ok(Bytes::from(rest)))
    }

    /// Drops what is held back and ends the body with `e`.
    fn fail(&mut self, e: io::Error) {
        self.buf.clear();
        let _ = self.send(Err(e));
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_BYTES + HOLDBACK {
            let keep = self.buf.len() - HOLDBACK;
            let mut next = Vec::with_capacity(CHUNK_BYTES + 2 * HOLDBACK);
            next.extend_from_slice(&self.buf[keep..]);
            let mut chunk = std::mem::replace(&mut self.buf, next);
            chunk.truncate(keep);
            self.send(Ok(Bytes::from(chunk)))?;
        }
        Ok(data.len())
    }

    /// Nothing is sent early: the last `HOLDBACK` bytes wait for [`ChannelWriter::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The blob store as `horde_replay` reads it: one tenant's namespace, async reads driven
/// from the blocking thread the tar writer runs on.
struct TenantBlobs<K: OrderedKv> {
    app: Arc<App<K>>,
    ns: String,
    handle: Handle,
}

impl<K: OrderedKv> BlobSource for TenantBlobs<K> {
    fn open(&self, hash: &BlobHash) -> io::Result<Box<dyn Read + Send + '_>> {
        let found = self
            .handle
            .block_on(self.app.blobs.get(&self.ns, hash))
            .map_err(io::Error::other)?;
        match found {
            Some((_, stream)) => Ok(Box::new(StreamReader {
                handle: &self.handle,
                stream,
                chunk: Bytes::new(),
            })),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("the blob store has no blob {hash} for this tenant"),
            )),
        }
    }
}

/// A blob's byte stream read synchronously.
struct StreamReader<'a> {
    handle: &'a Handle,
    stream: ByteStream,
    chunk: Bytes,
}

impl Read for StreamReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.chunk.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                Some(Ok(b)) => self.chunk = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForkRequest {
    /// The timeline to fork (default: the timeline of the event `at` names, else the main
    /// timeline).
    pub parent: Option<String>,
    /// Where to fork: a version, an event id or an RFC 3339 time (default: the latest
    /// version).
    #[schema(value_type = Option<PointInput>)]
    pub at: Option<Value>,
    /// The new timeline's id (default: a new one). With an id the call is idempotent: the
    /// same parent and fork point answer 200 with the timeline, another one 409.
    pub timeline_id: Option<String>,
}

/// A point in a project's history: a commit version, an event id or an RFC 3339 time.
// Documentation only: the handler reads `at` as JSON to name it in its errors.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum PointInput {
    Version(u64),
    /// An event id or an RFC 3339 time (or a version in digits).
    Text(String),
}

/// Forks a timeline: the new one shares its parent's history up to the fork point and
/// records its own from then on. Members and admins.
#[utoipa::path(post, path = "/v1/projects/{id}/timelines", tag = "projects", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ForkRequest, responses(
    (status = 201, body = TimelineView, description = "forked"),
    (status = 200, body = TimelineView, description = "`timeline_id` was already forked from this parent at this point"),
    (status = 400, description = "an id is not a UUID, `at` does not parse, or the version is in the future"),
    (status = 403, description = "a viewer key"),
    (status = 404, description = "no such project, parent timeline or event"),
    (status = 409, description = "`timeline_id` exists with another parent or fork point (`timeline_exists`)")))]
pub async fn fork<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ForkRequest>,
) -> ApiResult<(StatusCode, Json<TimelineView>)> {
    caller.require_write()?;
    let project = project_of(&app, &caller, &id).await?;
    let new_id: Option<TimelineId> = match &req.timeline_id {
        Some(t) => Some(
            t.parse()
                .map_err(|_| ApiError::bad_request(format!("timeline_id {t:?} is not a UUID")))?,
        ),
        None => None,
    };
    let point = match &req.at {
        None | Some(Value::Null) => Point::default(),
        Some(Value::Number(n)) => Point {
            version: Some(n.as_u64().ok_or_else(|| {
                ApiError::bad_request(format!("at {n} is not a version (a non-negative integer)"))
            })?),
            ..Point::default()
        },
        Some(Value::String(s)) => resolve_point(&app, &caller, &project, Some(s)).await?,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "at {other} is neither a version nor a string naming an event or a time"
            )));
        }
    };
    let parent = timeline_for("parent", &project, &point, req.parent.as_deref())?;
    let (timeline, created) = app
        .ledger
        .fork_with_id(
            caller.tenant(),
            project.id,
            parent,
            point.version,
            new_id.unwrap_or_default(),
        )
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(timeline.into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `n` bytes through a [`ChannelWriter`], then finishes it or fails it; what the
    /// body would carry.
    async fn through_writer(n: usize, finish: bool) -> (Vec<u8>, bool) {
        let (tx, mut rx) = mpsc::channel(CHANNEL_CHUNKS);
        let handle = Handle::current();
        let writer = tokio::task::spawn_blocking(move || {
            let mut out = ChannelWriter {
                tx,
                buf: Vec::new(),
                handle,
            };
            let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            for piece in data.chunks(8 << 10) {
                out.write_all(piece).expect("the receiver is there");
            }
            if finish {
                out.finish().expect("finish");
            } else {
                out.fail(io::Error::other("broken"));
            }
        });
        let mut got = Vec::new();
        let mut failed = false;
        while let Some(item) = rx.recv().await {
            match item {
                Ok(b) => {
                    assert!(b.len() <= CHUNK_BYTES + (8 << 10), "chunks stay bounded");
                    got.extend_from_slice(&b);
                }
                Err(_) => failed = true,
            }
        }
        writer.await.expect("the writer ran");
        (got, failed)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_sends_everything_in_order_only_when_finished() {
        let n = 5 * CHUNK_BYTES + 123;
        let expected: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let (got, failed) = through_writer(n, true).await;
        assert!(!failed);
        assert_eq!(got, expected);
        // Failed: the held-back tail never leaves, and the body ends with an error.
        let (got, failed) = through_writer(n, false).await;
        assert!(failed);
        assert!(got.len() <= n - HOLDBACK, "{} of {n} bytes sent", got.len());
        assert_eq!(got[..], expected[..got.len()]);
        let (got, failed) = through_writer(HOLDBACK / 2, false).await;
        assert!(failed && got.is_empty());
    }

    #[test]
    fn withheld_lists_are_ascii_json_that_reads_back() {
        let paths = [".env", "caf\u{e9}/x", "emoji/\u{1f511}", "quote\"d"];
        let h = ascii_json(&paths);
        assert!(h.bytes().all(|b| (b' '..=b'~').contains(&b)), "{h}");
        assert!(axum::http::HeaderValue::from_str(&h).is_ok());
        let back: Vec<String> = serde_json::from_str(&h).expect("JSON");
        assert_eq!(back, paths);
    }
}
