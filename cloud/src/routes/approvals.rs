//! Approvals from another device: the requests edges synced (pending or all), a person's
//! decision on one (a member or admin key; viewers read only), and the decisions an edge still
//! has to record — as a page (`/decisions`) or live (`/decisions/live`, server-sent events).
//!
//! A decision is checked here before it is stored: the body (`grant`/`deny`, a reason of at
//! most 2 KiB, `remember` only on a grant and never broader than `horde-policy` allows for
//! that request), then in the ledger's transaction the request's state (absent: 404, decided
//! or answered: 409 `already_decided`, expired: 409 `expired`). Nothing is written otherwise.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use horde_core::time::now_micros;
use horde_kv::OrderedKv;
use horde_ledger::{ApprovalFilter, ApprovalRecord, CloudDecision, DecisionEntry};
use horde_policy::remember::{RememberKind, remembered_rule};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::admin::project_of;
use crate::routes::sync::parse_versionstamp;

/// Longest reason a person may give (as on the edge).
pub const MAX_REASON: usize = 2 * 1024;
/// How often a live decision stream looks for decisions taken by other API processes.
const LIVE_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApprovalsQuery {
    /// `pending` (default: waiting for a person, not expired) or `all`.
    pub state: Option<String>,
}

/// One request and where it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalView {
    /// The request id (32 hex digits); `horde approve` takes a prefix of it.
    pub id: String,
    /// The device that asked.
    pub device: String,
    pub agent: String,
    pub role: String,
    /// The agent session that asked, or empty.
    pub session: String,
    /// read | write | exec | net | model | operation
    pub action: String,
    /// The command line, path, host, model or operation.
    pub subject: String,
    /// Why it was asked (the rule that said "ask").
    pub reason: String,
    /// Microseconds since the Unix epoch.
    pub requested_at: i64,
    pub expires_at: i64,
    /// pending | granted | denied | expired
    pub state: String,
    /// `log` (the edge recorded the answer) or `cloud` (decided here; the edge records it
    /// when it next syncs or while `horde sync --watch` runs).
    pub decided_in: Option<String>,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    /// exact | prefix | program
    pub remember: Option<String>,
    /// session | repo
    pub scope: Option<String>,
    /// The remembered rule: argv patterns, one a line, or the exact subject.
    pub pattern: Option<String>,
}

fn json_str<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl From<ApprovalRecord> for ApprovalView {
    fn from(r: ApprovalRecord) -> Self {
        ApprovalView {
            id: r.id,
            device: r.device.to_string(),
            agent: r.agent,
            role: r.role,
            session: r.session,
            action: r.action,
            subject: r.subject,
            reason: r.reason,
            requested_at: r.requested_at,
            expires_at: r.expires_at,
            state: json_str(&r.state),
            decided_in: r.decided_in.map(|d| json_str(&d)),
            decided_by: r.decided_by,
            decision_reason: r.decision_reason,
            remember: r.remember,
            scope: r.scope,
            pattern: r.pattern,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalList {
    /// Oldest first; at most 1,000 (the newest).
    pub approvals: Vec<ApprovalView>,
}

/// Approval requests the project's devices synced.
#[utoipa::path(get, path = "/v1/projects/{id}/approvals", operation_id = "list_approvals", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path), ApprovalsQuery),
    responses((status = 200, body = ApprovalList), (status = 400, description = "bad state"), (status = 404)))]
pub async fn list<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ApprovalsQuery>,
) -> ApiResult<Json<ApprovalList>> {
    let filter = match q.state.as_deref() {
        None | Some("pending") => ApprovalFilter::Pending,
        Some("all") => ApprovalFilter::All,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "state {other:?}: expected pending or all"
            )));
        }
    };
    let project = project_of(&app, &caller, &id).await?;
    let list = app
        .ledger
        .approvals(caller.tenant(), project.id, filter)
        .await?;
    Ok(Json(ApprovalList {
        approvals: list.into_iter().map(ApprovalView::from).collect(),
    }))
}

/// A person's decision.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideRequest {
    /// `grant` or `deny`.
    #[schema(example = "grant")]
    pub decision: String,
    /// Why (shown to the agent and in the log); at most 2 KiB.
    #[serde(default)]
    pub reason: String,
    /// Grants only: do not ask again for `exact` this command, its `prefix` (program and
    /// subcommand) or the whole `program`. Refused (400 `too_broad`) for interpreters,
    /// shells, inline code, `rm`-like programs, `sudo`, code only known when it runs.
    pub remember: Option<String>,
    /// With `remember`: `session` (the agent session that asked; the default) or `repo`.
    #[serde(rename = "for")]
    #[schema(rename = "for")]
    pub scope: Option<String>,
}

/// Decides one request. The edge that asked records the decision as its own answer while
/// `horde sync --watch` runs (within about a second) or at its next `horde sync`.
#[utoipa::path(post, path = "/v1/projects/{id}/approvals/{request_id}", operation_id = "decide_approval", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path), ("request_id" = String, Path, description = "32 hex digits")),
    request_body = DecideRequest,
    responses((status = 200, body = ApprovalView),
        (status = 400, description = "bad decision, reason, remember or scope; `too_broad`: that rule cannot be remembered"),
        (status = 403, description = "a viewer key"),
        (status = 404, description = "no such project or request"),
        (status = 409, description = "`already_decided` or `expired`")))]
pub async fn decide<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath((id, request_id)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<DecideRequest>,
) -> ApiResult<Json<ApprovalView>> {
    let project = project_of(&app, &caller, &id).await?;
    // Absent and malformed ids answer alike; so do other tenants' (their project is a 404).
    let rid = horde_ledger::parse_request_id(&request_id)
        .map_err(|_| ApiError::not_found(format!("no approval request {request_id:?}")))?;
    caller.require_write()?;
    let grant = match req.decision.as_str() {
        "grant" => true,
        "deny" => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "decision {other:?}: expected grant or deny"
            )));
        }
    };
    if req.reason.len() > MAX_REASON {
        return Err(ApiError::bad_request(format!(
            "the reason is {} bytes; at most {MAX_REASON}",
            req.reason.len()
        )));
    }
    let remember = match req.remember.as_deref() {
        None => None,
        Some(_) if !grant => {
            return Err(ApiError::bad_request(
                "a denial is not remembered; only grants are",
            ));
        }
        Some(k) => Some(
            k.parse::<RememberKind>()
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        ),
    };
    let scope = match (req.scope.as_deref(), remember) {
        (None, None) => "",
        (Some(_), None) => {
            return Err(ApiError::bad_request("`for` needs `remember`"));
        }
        (None | Some("session"), Some(_)) => "session",
        (Some("repo"), Some(_)) => "repo",
        (Some(other), Some(_)) => {
            return Err(ApiError::bad_request(format!(
                "for {other:?}: expected session or repo"
            )));
        }
    };
    let request = app
        .ledger
        .approval(caller.tenant(), project.id, &rid)
        .await?;
    let pattern = match remember {
        Some(kind) => remembered_rule(&request.action, &request.subject, kind)
            .map_err(|e| ApiError::bad_request(e.to_string()).with_code("too_broad"))?,
        None => String::new(),
    };
    let by = app
        .ledger
        .users(caller.tenant())
        .await?
        .into_iter()
        .find(|u| u.id == caller.user())
        .map(|u| u.email)
        .unwrap_or_else(|| format!("user {}", caller.user()));
    let decision = CloudDecision {
        grant,
        by,
        user: caller.user(),
        reason: req.reason,
        remember: remember.map(|k| k.as_str().to_owned()).unwrap_or_default(),
        scope: scope.to_owned(),
        pattern,
        decided_at: now_micros(),
    };
    let rec = app
        .ledger
        .decide_approval(caller.tenant(), project.id, &rid, &decision)
        .await?;
    app.decided.send_modify(|n| *n = n.wrapping_add(1));
    Ok(Json(rec.into()))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DecisionsQuery {
    /// Only decisions after this cursor (the `cursor` of an earlier decision).
    pub after: Option<String>,
}

/// A decision taken through the API that the edge has not recorded yet.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionView {
    /// Pass as `after` (or `Last-Event-ID`) to read on from here.
    pub cursor: String,
    pub request_id: String,
    pub grant: bool,
    /// The deciding user's email.
    pub by: String,
    pub reason: String,
    /// "", exact, prefix or program
    pub remember: String,
    /// "", session or repo
    pub scope: String,
    pub decided_at: i64,
}

impl From<DecisionEntry> for DecisionView {
    fn from(d: DecisionEntry) -> Self {
        DecisionView {
            cursor: d.cursor,
            request_id: d.request_id,
            grant: d.decision.grant,
            by: d.decision.by,
            reason: d.decision.reason,
            remember: d.decision.remember,
            scope: d.decision.scope,
            decided_at: d.decision.decided_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionList {
    /// In the order they were taken; at most 500 (read on with the last `cursor`).
    pub decisions: Vec<DecisionView>,
}

/// Decisions taken through the API whose requests the log has not answered yet: what the
/// edges of this project still have to record.
#[utoipa::path(get, path = "/v1/projects/{id}/approvals/decisions", operation_id = "approval_decisions", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path), DecisionsQuery),
    responses((status = 200, body = DecisionList), (status = 400, description = "bad cursor"), (status = 404)))]
pub async fn decisions<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DecisionsQuery>,
) -> ApiResult<Json<DecisionList>> {
    let after = q
        .after
        .as_deref()
        .map(|s| parse_versionstamp("after", s))
        .transpose()?;
    let project = project_of(&app, &caller, &id).await?;
    let list = app
        .ledger
        .decisions(caller.tenant(), project.id, after.as_ref())
        .await?;
    Ok(Json(DecisionList {
        decisions: list.into_iter().map(DecisionView::from).collect(),
    }))
}

/// The same decisions live, as server-sent events (`event: decision`, `id` the cursor,
/// `data` a decision's JSON): first those not recorded yet (after `after` or
/// `Last-Event-ID`), then each as it is taken.
#[utoipa::path(get, path = "/v1/projects/{id}/approvals/decisions/live", operation_id = "approval_decisions_live", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path), DecisionsQuery),
    responses((status = 200, content_type = "text/event-stream", description = "server-sent events"),
        (status = 400, description = "bad cursor"), (status = 404)))]
pub async fn live<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(mut q): ApiQuery<DecisionsQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    if q.after.is_none()
        && let Some(last) = headers.get("last-event-id").and_then(|v| v.to_str().ok())
    {
        q.after = Some(last.to_owned());
    }
    let mut after = q
        .after
        .as_deref()
        .map(|s| parse_versionstamp("after", s))
        .transpose()?;
    let project = project_of(&app, &caller, &id).await?;
    let slot = app.tails.acquire(caller.tenant())?;
    let mut woken = app.decided.subscribe();
    let stream = async_stream::stream! {
        let _slot = slot;
        loop {
            // Marked seen before reading, so a decision during the read wakes the next round.
            woken.borrow_and_update();
            match app.ledger.api_key(caller.tenant(), caller.key.id).await {
                Ok(Some(_)) => {}
                _ => break,
            }
            let list = match app.ledger.decisions(caller.tenant(), project.id, after.as_ref()).await {
                Ok(l) => l,
                Err(e) => {
                    yield Ok(SseEvent::default().event("error").data(e.to_string()));
                    break;
                }
            };
            let full = list.len() >= horde_ledger::MAX_DECISIONS;
            for d in list {
                if let Ok(vs) = parse_versionstamp("cursor", &d.cursor) {
                    after = Some(vs);
                }
                let cursor = d.cursor.clone();
                let data = serde_json::to_string(&DecisionView::from(d)).unwrap_or_default();
                yield Ok(SseEvent::default().event("decision").id(cursor).data(data));
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = app.shutdown.cancelled() => break,
                _ = woken.changed() => {}
                _ = tokio::time::sleep(LIVE_POLL) => {}
            }
        }
    };
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
