//! Ingest: `POST /v1/projects/{id}/sync` takes a protobuf `SyncBatch` (one device's events
//! in seq order and the chain head it signed) and answers a protobuf `SyncAck`. The way back:
//! `GET /v1/projects/{id}/pull` answers a protobuf `PullPage` of the project's log (every
//! device but the caller's own) after a cursor, with the signed heads of the devices in it.
//!
//! Checked before anything is written: size limits (413), the protobuf (400), the project
//! (404, tenant-scoped), the device's registration (403), every event's hash and shape, the
//! chain, the signed head against the registered key (400/409). The ledger then commits the
//! batch in transactions of at most ~1 MB, each advancing the device's cursor: a retry
//! skips what was stored, and an error part-way says in `acked_seq` how far it got.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use horde_core::proto::{PullPage, PulledEvent, SyncAck, SyncBatch};
use horde_core::{DeviceId, MAX_EVENT_BYTES, ProjectId};
use horde_kv::OrderedKv;
use horde_kv::tuple::Versionstamp;
use horde_ledger::{AppendBatch, EventFilter, LedgerError};
use prost::Message;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery, declared_length, parse_id};
use crate::openapi::Binary;
use crate::routes::admin::project_of;

pub const PROTOBUF: &str = "application/x-protobuf";

/// Events per pull page: the default and the most.
const PULL_DEFAULT: usize = 1_000;
const PULL_MAX: usize = 5_000;
/// About the most bytes of stored events in one pull page (at least one event per page).
const PULL_MAX_BYTES: usize = 4 << 20;
/// Log entries one pull page examines at most (events of the excluded device included).
const PULL_MAX_SCAN: usize = 10_000;

fn is_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|v| v == PROTOBUF || v == "application/protobuf")
}

/// Reads a body of at most `limit` bytes; more is a 413 without reading the rest.
pub async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> ApiResult<Bytes> {
    let too_large = || {
        ApiError::too_large(format!(
            "the request body is larger than the limit of {limit} bytes; send smaller batches"
        ))
    };
    if declared_length(headers).is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            too_large()
        } else {
            ApiError::bad_request(format!("reading the request body: {e}"))
        }
    })
}

fn protobuf(msg: &impl Message) -> Response {
    ([(header::CONTENT_TYPE, PROTOBUF)], msg.encode_to_vec()).into_response()
}

/// Ingests one device's events (protobuf `horde.v1.SyncBatch` → `horde.v1.SyncAck`).
#[utoipa::path(post, path = "/v1/projects/{id}/sync", tag = "sync", security(("bearer" = [])),
    params(("id" = String, Path, description = "project id")),
    request_body(content = inline(Binary), content_type = "application/x-protobuf", description = "horde.v1.SyncBatch"),
    responses(
        (status = 200, content_type = "application/x-protobuf", body = inline(Binary), description = "horde.v1.SyncAck: acked_seq, one versionstamp per stored event, skipped"),
        (status = 400, description = "garbage protobuf, bad event hash, bad signature"),
        (status = 403, description = "device not registered, or a viewer key"),
        (status = 404, description = "no such project"),
        (status = 409, description = "seq gap (error.expected_seq), broken chain, conflicting seq"),
        (status = 413, description = "body over the limit (8 MiB), over 5,000 events, or an event over 90 kB"),
        (status = 415, description = "not application/x-protobuf")))]
pub async fn sync<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    caller.require_write()?;
    if !is_protobuf(&headers) {
        return Err(ApiError::unsupported_media(format!(
            "a sync batch is a protobuf horde.v1.SyncBatch sent as Content-Type: {PROTOBUF}"
        )));
    }
    let project = project_of(&app, &caller, &id).await?;
    let bytes = read_limited(&headers, body, app.limits.max_sync_bytes).await?;
    let batch = SyncBatch::decode(bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not a horde.v1.SyncBatch: {e}")))?;
    if batch.project_id != project.id.as_bytes() {
        return Err(ApiError::bad_request(format!(
            "the batch's project_id is not {} (the project in the URL)",
            project.id
        )));
    }
    let device = DeviceId::from_slice(&batch.device_id)
        .ok_or_else(|| ApiError::bad_request("the batch's device_id is not a 16-byte UUID"))?;
    tracing::Span::current().record("device", tracing::field::display(device));
    let max_events = app.limits.max_sync_events;
    if batch.events.len() > max_events {
        return Err(ApiError::too_large(format!(
            "the batch has {} events; the limit is {max_events} per request: send smaller batches",
            batch.events.len()
        )));
    }
    if let Some((i, ev)) = batch
        .events
        .iter()
        .enumerate()
        .find(|(_, e)| e.body.len() > MAX_EVENT_BYTES)
    {
        return Err(ApiError::too_large(format!(
            "event {i} of the batch is {} bytes; an event is at most {MAX_EVENT_BYTES} bytes",
            ev.body.len()
        ))
        .with(json!({ "index": i })));
    }
    let head = batch.head.ok_or_else(|| {
        ApiError::bad_request("the batch has no signed chain head (head): sign the last event")
    })?;
    let append = AppendBatch {
        project: project.id,
        device,
        events: batch.events,
        head: Some(head),
    };
    let events = append.events.len() as u64;
    match app.ledger.append(caller.tenant(), &append).await {
        Ok(ack) => {
            let stored = ack.written.len() as u64;
            metrics::counter!("horde_ingest_batches_total").increment(1);
            metrics::counter!("horde_ingest_events_total").increment(stored);
            metrics::counter!("horde_ingest_skipped_total").increment(ack.skipped);
            if stored > 0 {
                app.appended.send_modify(|n| *n += stored);
            }
            tracing::info!(
                events,
                stored,
                skipped = ack.skipped,
                acked_seq = ack.acked_seq,
                "sync"
            );
            let skipped_versionstamps =
                skipped_stamps(&app, caller.tenant(), project.id, &append, ack.skipped).await;
            Ok(protobuf(&SyncAck {
                skipped_versionstamps,
                acked_seq: ack.acked_seq,
                versionstamps: ack
                    .written
                    .iter()
                    .map(|(_, vs)| vs.as_bytes().to_vec())
                    .collect(),
                skipped: ack.skipped,
            }))
        }
        Err(e) => {
            // Earlier transactions of the batch may have committed: wake the tails and say
            // how far it got.
            app.appended.send_modify(|_| {});
            let acked = app
                .ledger
                .cursor(caller.tenant(), project.id, device)
                .await
                .map(|(seq, _)| seq)
                .ok();
            let mut err = ApiError::from(e);
            let mut extra = err.extra.take().map(|b| *b).unwrap_or_else(|| json!({}));
            if let Some(seq) = acked {
                extra["acked_seq"] = json!(seq);
            }
            Err(err.with(extra))
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CursorView {
    pub device: String,
    /// The device's highest seq the cloud holds (0: none).
    pub acked_seq: u64,
    /// The hash of that event (hex), null when none.
    pub hash: Option<String>,
    /// The seq of the device's last signed head the cloud holds.
    pub head_seq: Option<u64>,
}

/// Where a device's events stand in the cloud: what to send next.
#[utoipa::path(get, path = "/v1/projects/{id}/devices/{device}/cursor", tag = "sync", security(("bearer" = [])),
    params(("id" = String, Path), ("device" = String, Path)),
    responses((status = 200, body = CursorView), (status = 404)))]
pub async fn cursor<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath((id, device)): ApiPath<(String, String)>,
) -> ApiResult<axum::Json<CursorView>> {
    let project: ProjectId = project_of(&app, &caller, &id).await?.id;
    let device: DeviceId = parse_id("device", &device)?;
    if let Err(e) = app.ledger.device(caller.tenant(), device).await {
        return Err(match e {
            LedgerError::DeviceNotRegistered(_) => {
                ApiError::not_found(format!("no device {device}"))
            }
            e => e.into(),
        });
    }
    let (seq, hash) = app.ledger.cursor(caller.tenant(), project, device).await?;
    let head = app
        .ledger
        .last_head(caller.tenant(), project, device)
        .await?;
    Ok(axum::Json(CursorView {
        device: device.to_string(),
        acked_seq: seq,
        hash: (!hash.is_empty()).then(|| hex::encode(&hash)),
        head_seq: head.map(|h| h.seq),
    }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PullQuery {
    /// Continue after this versionstamp (24 hex digits: the `cursor` of the previous page);
    /// absent: from the start of the log.
    #[param(pattern = "^[0-9a-fA-F]{24}$")]
    pub after: Option<String>,
    /// Leave out this device's events (the caller's own).
    pub exclude_device: Option<String>,
    /// Events per page (1 to 5000, default 1000).
    #[param(minimum = 1, maximum = 5000)]
    pub limit: Option<usize>,
}

pub(crate) fn parse_versionstamp(what: &str, s: &str) -> ApiResult<Versionstamp> {
    let bytes: [u8; 12] = hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{what} {s:?} is not a versionstamp (24 hex digits, the cursor of a page)"
            ))
        })?;
    Ok(Versionstamp::from(bytes))
}

fn pull_filter(q: &PullQuery) -> ApiResult<EventFilter> {
    let limit = q.limit.unwrap_or(PULL_DEFAULT);
    if !(1..=PULL_MAX).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is not between 1 and {PULL_MAX}"
        )));
    }
    let after = q
        .after
        .as_deref()
        .map(|s| parse_versionstamp("after", s))
        .transpose()?;
    let exclude_device =
        match &q.exclude_device {
            Some(d) => Some(d.parse::<DeviceId>().map_err(|_| {
                ApiError::bad_request(format!("exclude_device {d:?} is not a UUID"))
            })?),
            None => None,
        };
    Ok(EventFilter {
        exclude_device,
        after,
        limit: Some(limit),
        max_bytes: Some(PULL_MAX_BYTES),
        ..EventFilter::default()
    })
}

/// A page of the project's log for a device catching up (protobuf `horde.v1.PullPage`).
///
/// Events of every timeline in log order, strictly after `after`, without those of
/// `exclude_device`; each as stored, with its versionstamp. A page holds at most `limit`
/// events and about 4 MiB of them, and examines at most 10,000 log entries, so it may be
/// empty with `more` set. `cursor` is the last entry examined (pass it as `after`), `more`
/// says whether the log goes on after it. `heads` holds the latest signed chain head of each
/// device with events in the page.
#[utoipa::path(get, path = "/v1/projects/{id}/pull", tag = "sync", security(("bearer" = [])),
    params(("id" = String, Path, description = "project id"), PullQuery),
    responses(
        (status = 200, content_type = "application/x-protobuf", body = inline(Binary), description = "horde.v1.PullPage: events with versionstamps, signed heads, cursor, more"),
        (status = 400, description = "`after`, `exclude_device` or `limit` is malformed"),
        (status = 404, description = "no such project")))]
pub async fn pull<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PullQuery>,
) -> ApiResult<Response> {
    let project = project_of(&app, &caller, &id).await?;
    let filter = pull_filter(&q)?;
    let page = app
        .ledger
        .events_page(caller.tenant(), project.id, &filter, PULL_MAX_SCAN)
        .await?;
    let mut devices: Vec<DeviceId> = Vec::new();
    for e in &page.events {
        let d = DeviceId::from_slice(&e.body.device_id).expect("the ledger checked the id");
        if !devices.contains(&d) {
            devices.push(d);
        }
    }
    let mut heads = Vec::with_capacity(devices.len());
    for d in devices {
        if let Some(head) = app.ledger.last_head(caller.tenant(), project.id, d).await? {
            heads.push(head);
        }
    }
    let cursor = page
        .examined
        .as_ref()
        .or(filter.after.as_ref())
        .map(|vs| vs.as_bytes().to_vec())
        .unwrap_or_default();
    let more = page.next.is_some();
    tracing::debug!(events = page.events.len(), more, "pull");
    Ok(protobuf(&PullPage {
        events: page
            .events
            .into_iter()
            .map(|e| PulledEvent {
                event: Some(e.event),
                versionstamp: e.versionstamp.as_bytes().to_vec(),
            })
            .collect(),
        heads,
        cursor,
        more,
    }))
}

/// Where the skipped events (the batch's first `skipped`, sent before) are in the log, so a
/// device whose earlier ack was lost can mark them; empty if any cannot be read.
async fn skipped_stamps<K: OrderedKv>(
    app: &App<K>,
    tenant: horde_core::TenantId,
    project: ProjectId,
    batch: &AppendBatch,
    skipped: u64,
) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(skipped as usize);
    for ev in batch.events.iter().take(skipped as usize) {
        let Some(id) = horde_core::decode_event(&ev.body, &ev.hash)
            .ok()
            .and_then(|b| horde_core::EventId::from_slice(&b.event_id))
        else {
            return Vec::new();
        };
        match app.ledger.event_by_id(tenant, project, id).await {
            Ok(Some(e)) => out.push(e.versionstamp.as_bytes().to_vec()),
            _ => return Vec::new(),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_past_the_limit_without_a_length_is_too_large() {
        let body = Body::from_stream(futures::stream::iter(
            (0..4).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(b"0123456789"))),
        ));
        let err = read_limited(&HeaderMap::new(), body, 25)
            .await
            .expect_err("over the limit");
        assert_eq!(err.code, "too_large", "{}", err.message);
        let ok = read_limited(&HeaderMap::new(), Body::from("short"), 25).await;
        assert_eq!(ok.expect("under the limit"), Bytes::from_static(b"short"));
    }
}
