//! Reading a project: events (filtered, cursor-paginated), one event, a live tail (SSE), the
//! history of a path, the manifest at a version, an event or a time (points are resolved by
//! `travel::resolve_point`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use horde_core::{DeviceId, EventId, RepoPath, TimelineId, json::event_json};
use horde_kv::OrderedKv;
use horde_kv::tuple::Versionstamp;
use horde_ledger::{EventFilter, FileVersion, LoggedEvent, stamp_version};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery, parse_id};
use crate::routes::admin::project_of;
use crate::routes::travel::{resolve_point, timeline_for};

/// Default and largest page of events.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1_000;
/// Log entries one page examines at most (filtered reads return early with a cursor).
const MAX_SCAN: usize = 10_000;
/// How often a live tail looks for events written by other API processes.
const TAIL_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events per page (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Continue after this cursor (the `next` of the previous page).
    pub cursor: Option<String>,
    /// Commit versions, inclusive.
    // Any u64 (utoipa's default `int64` would document at most 2^63 - 1).
    #[param(format = "uint64")]
    pub from_version: Option<u64>,
    #[param(format = "uint64")]
    pub to_version: Option<u64>,
    /// When the events occurred (RFC 3339), inclusive.
    pub since: Option<String>,
    pub until: Option<String>,
    /// Payload types, comma-separated: decision, state_change, tool_call, task, approval, message, observation, violation, signal, checkpoint
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    pub agent: Option<String>,
    /// Only file changes of this path.
    pub path: Option<String>,
    pub timeline: Option<String>,
    pub device: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    /// Events in log (commit) order; each has `id`, `version`, `versionstamp`, `seq`,
    /// `device`, `type`, `occurred_at`, `agent` and `payload`.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next: Option<String>,
}

pub(crate) fn event_view(e: &LoggedEvent) -> Value {
    let hash = horde_core::EventHash::from_slice(&e.event.hash).expect("the ledger checked it");
    let mut v = event_json(&e.body, &hash);
    v["version"] = Value::from(stamp_version(&e.versionstamp));
    v["versionstamp"] = Value::String(hex::encode(e.versionstamp.as_bytes()));
    v
}

pub(crate) fn parse_cursor(s: &str) -> ApiResult<Versionstamp> {
    let bytes: [u8; 12] = hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::bad_request(format!("cursor {s:?} is not one this API gave")))?;
    Ok(Versionstamp::from(bytes))
}

pub(crate) fn parse_time(what: &str, s: &str) -> ApiResult<i64> {
    let ts: jiff::Timestamp = s.parse().map_err(|e| {
        ApiError::bad_request(format!(
            "{what} {s:?} is not an RFC 3339 time between years 0001 and 9999 (e.g. 2026-11-22T14:12:00Z): {e}"
        ))
    })?;
    Ok(ts.as_microsecond())
}

fn filter_of(q: &EventsQuery) -> ApiResult<EventFilter> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_PAGE}"
        )));
    }
    let timeline = match &q.timeline {
        Some(t) => Some(
            t.parse::<TimelineId>()
                .map_err(|_| ApiError::bad_request(format!("timeline {t:?} is not a UUID")))?,
        ),
        None => None,
    };
    let device = match &q.device {
        Some(d) => Some(
            d.parse::<DeviceId>()
                .map_err(|_| ApiError::bad_request(format!("device {d:?} is not a UUID")))?,
        ),
        None => None,
    };
    let path = match &q.path {
        Some(p) => Some(
            RepoPath::parse(p)
                .map_err(|e| ApiError::bad_request(format!("path {p:?}: {e}")))?
                .as_str()
                .to_owned(),
        ),
        None => None,
    };
    let kinds: Vec<String> = q
        .kind
        .as_deref()
        .map(|k| {
            k.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    const KINDS: &[&str] = horde_core::PAYLOAD_KINDS;
    if let Some(k) = kinds.iter().find(|k| !KINDS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "type {k:?} is not one of {}",
            KINDS.join(", ")
        )));
    }
    if let (Some(a), Some(b)) = (q.from_version, q.to_version)
        && a > b
    {
        return Err(ApiError::bad_request("from_version is after to_version"));
    }
    let occurred_from = q
        .since
        .as_deref()
        .map(|s| parse_time("since", s))
        .transpose()?;
    let occurred_to = q
        .until
        .as_deref()
        .map(|s| parse_time("until", s))
        .transpose()?;
    Ok(EventFilter {
        kinds,
        timeline,
        device,
        exclude_device: None,
        agent: q.agent.clone(),
        path,
        occurred_from,
        occurred_to,
        from_version: q.from_version,
        to_version: q.to_version,
        after: q.cursor.as_deref().map(parse_cursor).transpose()?,
        limit: Some(limit),
        max_bytes: None,
        newest_first: false,
    })
}

/// A project's events, filtered, in log order, a page at a time.
#[utoipa::path(get, path = "/v1/projects/{id}/events", tag = "query", security(("bearer" = [])),
    params(("id" = String, Path), EventsQuery),
    responses((status = 200, body = EventList), (status = 400, description = "bad filter"), (status = 404)))]
pub async fn events<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Json<EventList>> {
    let project = project_of(&app, &caller, &id).await?;
    let filter = filter_of(&q)?;
    let page = app
        .ledger
        .events_page(caller.tenant(), project.id, &filter, MAX_SCAN)
        .await?;
    Ok(Json(EventList {
        events: page.events.iter().map(event_view).collect(),
        next: page.next.map(|vs| hex::encode(vs.as_bytes())),
    }))
}

/// One event by its id.
#[utoipa::path(get, path = "/v1/projects/{id}/events/{event}", tag = "query", security(("bearer" = [])),
    params(("id" = String, Path), ("event" = String, Path, description = "event id")),
    responses((status = 200, body = Object), (status = 404)))]
pub async fn event<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath((id, event)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    let project = project_of(&app, &caller, &id).await?;
    let event_id: EventId = parse_id("event", &event)?;
    let e = app
        .ledger
        .event_by_id(caller.tenant(), project.id, event_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no event {event_id} in this project")))?;
    Ok(Json(event_view(&e)))
}

/// Live tail: events as they are committed, as server-sent events (`id` is the cursor,
/// `event: event`, `data` the event's JSON). Starts after `cursor` or `Last-Event-ID`, else
/// at the end. Takes the same filters as `/events`.
#[utoipa::path(get, path = "/v1/projects/{id}/tail", tag = "query", security(("bearer" = [])),
    params(("id" = String, Path), EventsQuery),
    responses((status = 200, content_type = "text/event-stream", description = "server-sent events"),
        (status = 400, description = "bad filter or cursor"), (status = 404)))]
pub async fn tail<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(mut q): ApiQuery<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let project = project_of(&app, &caller, &id).await?;
    if q.cursor.is_none()
        && let Some(last) = headers.get("last-event-id").and_then(|v| v.to_str().ok())
    {
        q.cursor = Some(last.to_owned());
    }
    let mut filter = filter_of(&q)?;
    if filter.after.is_none() && filter.from_version.is_none() {
        filter.from_version = Some(app.ledger.last_version().await?.saturating_add(1));
    }
    let slot = app.tails.acquire(caller.tenant())?;
    let mut woken = app.appended.subscribe();
    let stream = async_stream::stream! {
        let _slot = slot;
        loop {
            // Marked seen before reading, so an append during the read wakes the next round.
            woken.borrow_and_update();
            // A revoked key ends its tails.
            match app.ledger.api_key(caller.tenant(), caller.key.id).await {
                Ok(Some(_)) => {}
                _ => break,
            }
            let page = match app.ledger.events_page(caller.tenant(), project.id, &filter, MAX_SCAN).await {
                Ok(p) => p,
                Err(e) => {
                    yield Ok(SseEvent::default().event("error").data(e.to_string()));
                    break;
                }
            };
            for e in &page.events {
                let id = hex::encode(e.versionstamp.as_bytes());
                yield Ok(SseEvent::default().event("event").id(id).data(event_view(e).to_string()));
            }
            let more = page.next.is_some();
            if let Some(last) = page.next.or_else(|| page.events.last().map(|e| e.versionstamp.clone())) {
                filter.after = Some(last);
            }
            if more {
                continue;
            }
            tokio::select! {
                _ = app.shutdown.cancelled() => break,
                _ = woken.changed() => {}
                _ = tokio::time::sleep(TAIL_POLL) => {}
            }
        }
    };
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Repository-relative path.
    pub path: String,
    /// Default: the timeline of the event `at` names, else the main timeline.
    pub timeline: Option<String>,
    /// Up to this version, event id or RFC 3339 time (default: now).
    pub at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FileVersionView {
    pub version: u64,
    pub versionstamp: String,
    pub exists: bool,
    /// Blob hash of the content (null for directories and deletions).
    pub hash: Option<String>,
    pub mode: u32,
    pub size: u64,
    /// file, dir or symlink
    pub kind: String,
    /// The content stays on the device that recorded it (a secret was found in it or a
    /// manifest denies the path): its blob is not in the cloud, and a restore lists the path
    /// instead of writing it.
    pub withheld: bool,
}

pub(crate) fn version_view(fv: &FileVersion) -> FileVersionView {
    let kind = horde_core::proto::FileKind::try_from(fv.kind)
        .map(|k| {
            k.as_str_name()
                .trim_start_matches("FILE_KIND_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| "unknown".into());
    FileVersionView {
        version: stamp_version(&fv.versionstamp),
        versionstamp: hex::encode(fv.versionstamp.as_bytes()),
        exists: fv.exists,
        hash: (!fv.hash.is_empty()).then(|| hex::encode(&fv.hash)),
        mode: fv.mode,
        size: fv.size,
        kind,
        withheld: fv.withheld,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryView {
    pub path: String,
    pub timeline: String,
    pub version: Option<u64>,
    /// Oldest first.
    pub versions: Vec<FileVersionView>,
}

/// Every version of one path, oldest first (following fork ancestry).
#[utoipa::path(get, path = "/v1/projects/{id}/history", tag = "query", security(("bearer" = [])),
    params(("id" = String, Path), HistoryQuery),
    responses((status = 200, body = HistoryView), (status = 400), (status = 404)))]
pub async fn history<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<HistoryView>> {
    let project = project_of(&app, &caller, &id).await?;
    let path = RepoPath::parse(&q.path)
        .map_err(|e| ApiError::bad_request(format!("path {:?}: {e}", q.path)))?;
    let point = resolve_point(&app, &caller, &project, q.at.as_deref()).await?;
    let timeline = timeline_for("timeline", &project, &point, q.timeline.as_deref())?;
    let version = point.version;
    let versions = app
        .ledger
        .path_history(
            caller.tenant(),
            project.id,
            timeline,
            path.as_str(),
            version,
        )
        .await?;
    Ok(Json(HistoryView {
        path: path.as_str().to_owned(),
        timeline: timeline.to_string(),
        version,
        versions: versions.iter().map(version_view).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ManifestQuery {
    /// Default: the timeline of the event `at` names, else the main timeline.
    pub timeline: Option<String>,
    /// A version, an event id or an RFC 3339 time (default: now).
    pub at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ManifestEntry {
    pub path: String,
    #[serde(flatten)]
    pub version: FileVersionView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ManifestView {
    pub timeline: String,
    pub version: u64,
    /// Existing paths, sorted.
    pub files: Vec<ManifestEntry>,
}

/// The files of a timeline at a version or a time.
#[utoipa::path(get, path = "/v1/projects/{id}/manifest", tag = "query", security(("bearer" = [])),
    params(("id" = String, Path), ManifestQuery),
    responses((status = 200, body = ManifestView), (status = 400), (status = 404)))]
pub async fn manifest<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ManifestQuery>,
) -> ApiResult<Json<ManifestView>> {
    let project = project_of(&app, &caller, &id).await?;
    let point = resolve_point(&app, &caller, &project, q.at.as_deref()).await?;
    let timeline = timeline_for("timeline", &project, &point, q.timeline.as_deref())?;
    let version = point.version;
    let m = app
        .ledger
        .manifest(caller.tenant(), project.id, timeline, version)
        .await?;
    Ok(Json(ManifestView {
        timeline: timeline.to_string(),
        version: m.version,
        files: m
            .files
            .iter()
            .map(|(path, fv)| ManifestEntry {
                path: path.clone(),
                version: version_view(fv),
            })
            .collect(),
    }))
}
