//! Approval requests as the cloud sees them, and decisions taken in the cloud.
//!
//! A request is an `Approval` event an edge recorded (`REQUESTED`), answered at most once by a
//! later `GRANTED` / `DENIED` / `EXPIRED` event of the same request id. Ingest indexes every
//! `Approval` event under `("appr", request_id, VS)`, so one request's events are one short
//! range and the list of requests one range in id order.
//!
//! The cloud cannot write into a device's chain (it holds no device key), so a person who
//! decides through the API leaves a [`CloudDecision`] under `("apdec", request_id)` and a
//! pointer `("apdecv", VS) → request_id` in decision order. The edge that asked picks the
//! decision up (`decisions`), records it as its own answer event, and syncs that back; from then
//! on the log's answer is the request's state.
//!
//! Invariants: a request is decided at most once — in the log or here, whichever came first —
//! checked in the deciding transaction (two people deciding at once: one wins, the other gets
//! [`LedgerError::ApprovalDecided`]); an expired request cannot be decided; the state of a
//! request is a fold of its events and that one decision (nothing else stores it).

use horde_core::proto::approval::Kind;
use horde_core::proto::{EventBody, SignedEvent, event_body::Payload};
use horde_core::time::now_micros;
use horde_core::{DeviceId, ProjectId, TenantId, UserId, decode_event};
use horde_kv::tuple::Versionstamp;
use horde_kv::{OrderedKv, RangeOption, Transaction};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::Ledger;
use crate::error::{LedgerError, corrupt};
use crate::keys::ProjectKeys;
use crate::records::{from_json, to_json};

/// Bytes of a request id (edges draw 16 random bytes).
pub const REQUEST_ID_LEN: usize = 16;
/// Most index entries one listing examines (requests and their answers).
pub const MAX_APPROVAL_SCAN: usize = 20_000;
/// Most requests one listing returns.
pub const MAX_APPROVALS: usize = 1_000;
/// Most decisions one read of the decision feed returns.
pub const MAX_DECISIONS: usize = 500;

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    Pending,
    Granted,
    Denied,
    Expired,
}

/// Where a request was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecidedIn {
    /// An answer event in the log (from the edge, or a cloud decision the edge recorded).
    Log,
    /// Through the API; the edge has not recorded it yet.
    Cloud,
}

/// A decision taken through the API, kept until (and after) the edge records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudDecision {
    pub grant: bool,
    /// The deciding user's email.
    pub by: String,
    pub user: UserId,
    pub reason: String,
    /// "", "exact", "prefix" or "program".
    pub remember: String,
    /// "", "session" or "repo".
    pub scope: String,
    /// The remembered rule (argv patterns one a line, or the subject).
    pub pattern: String,
    /// µs since the epoch; with `user`, tells a retried commit of this decision from another.
    pub decided_at: i64,
}

/// One request, folded from its events and a cloud decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalRecord {
    /// Hex of the 16-byte request id.
    pub id: String,
    pub device: DeviceId,
    pub agent: String,
    pub role: String,
    pub session: String,
    pub action: String,
    pub subject: String,
    /// Why it was asked (the rule that said "ask").
    pub reason: String,
    /// µs since the epoch.
    pub requested_at: i64,
    pub expires_at: i64,
    pub state: ApprovalState,
    pub decided_in: Option<DecidedIn>,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    pub remember: Option<String>,
    pub scope: Option<String>,
    pub pattern: Option<String>,
}

/// A cloud decision in decision order, for the edge to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionEntry {
    /// Hex of the decision's versionstamp: where the next read goes on.
    pub cursor: String,
    pub request_id: String,
    #[serde(flatten)]
    pub decision: CloudDecision,
}

/// Which requests a listing returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalFilter {
    Pending,
    All,
}

/// A request id from its hex form.
pub fn parse_request_id(s: &str) -> Result<[u8; REQUEST_ID_LEN], LedgerError> {
    let bad = || {
        LedgerError::Invalid(format!(
            "request id {s:?} is not {} hex digits",
            REQUEST_ID_LEN * 2
        ))
    };
    let b = hex::decode(s.trim()).map_err(|_| bad())?;
    b.try_into().map_err(|_| bad())
}

/// The approval of a decoded event, if it is one the index keeps.
pub(crate) fn indexed_request_id(body: &EventBody) -> Option<Vec<u8>> {
    match &body.payload {
        Some(Payload::Approval(a)) if a.request_id.len() == REQUEST_ID_LEN => {
            Some(a.request_id.clone())
        }
        _ => None,
    }
}

/// Folds one request's index entries (in log order) and its cloud decision.
fn fold(
    values: &[Vec<u8>],
    decision: Option<CloudDecision>,
    now: i64,
) -> Result<Option<ApprovalRecord>, LedgerError> {
    let mut rec: Option<ApprovalRecord> = None;
    for v in values {
        let ev = SignedEvent::decode(v.as_slice())
            .map_err(|e| corrupt(format!("approval index: {e}")))?;
        let body = decode_event(&ev.body, &ev.hash)
            .map_err(|e| corrupt(format!("approval index: {e}")))?;
        let Some(Payload::Approval(a)) = &body.payload else {
            return Err(corrupt("approval index holds another kind of event"));
        };
        let kind = Kind::try_from(a.kind).unwrap_or(Kind::Unspecified);
        match (kind, rec.as_mut()) {
            (Kind::Requested, None) => {
                rec = Some(ApprovalRecord {
                    id: hex::encode(&a.request_id),
                    device: DeviceId::from_slice(&body.device_id)
                        .ok_or_else(|| corrupt("approval event without a device id"))?,
                    agent: a.who.clone(),
                    role: body.role.clone(),
                    session: a.session.clone(),
                    action: a.action.clone(),
                    subject: a.subject.clone(),
                    reason: a.reason.clone(),
                    requested_at: body.occurred_at,
                    expires_at: a.expires_at,
                    state: ApprovalState::Pending,
                    decided_in: None,
                    decided_by: None,
                    decision_reason: None,
                    remember: None,
                    scope: None,
                    pattern: None,
                });
            }
            (Kind::Granted | Kind::Denied | Kind::Expired, Some(r))
                if r.state == ApprovalState::Pending =>
            {
                // The first answer stands, as on the edge.
                r.state = match kind {
                    Kind::Granted => ApprovalState::Granted,
                    Kind::Denied => ApprovalState::Denied,
                    _ => ApprovalState::Expired,
                };
                r.decided_in = Some(DecidedIn::Log);
                r.decided_by = Some(a.who.clone());
                r.decision_reason = non_empty(&a.reason);
                r.remember = non_empty(&a.remember);
                r.scope = non_empty(&a.scope);
                r.pattern = non_empty(&a.pattern);
            }
            // An answer without its request (a policy denial), a second request, a later
            // answer: nothing to fold.
            _ => {}
        }
    }
    let Some(mut r) = rec else { return Ok(None) };
    if r.state == ApprovalState::Pending {
        if let Some(d) = decision {
            r.state = if d.grant {
                ApprovalState::Granted
            } else {
                ApprovalState::Denied
            };
            r.decided_in = Some(DecidedIn::Cloud);
            r.decided_by = Some(d.by);
            r.decision_reason = non_empty(&d.reason);
            r.remember = non_empty(&d.remember);
            r.scope = non_empty(&d.scope);
            r.pattern = non_empty(&d.pattern);
        } else if r.expires_at <= now {
            r.state = ApprovalState::Expired;
        }
    }
    Ok(Some(r))
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// One request's state inside a transaction (its index entries and decision read with
/// conflicts, so a concurrent answer or decision aborts the caller).
async fn read_one<T: Transaction>(
    tx: &T,
    p: &ProjectKeys,
    id: &[u8],
    snapshot: bool,
) -> Result<(Option<ApprovalRecord>, Option<CloudDecision>), LedgerError> {
    let entries = tx
        .get_all(RangeOption::prefix(p.approval(id).bytes()), snapshot)
        .await?;
    let decision: Option<CloudDecision> = match tx.get(&p.decision(id), snapshot).await? {
        Some(v) => Some(from_json("approval decision", &v)?),
        None => None,
    };
    let values: Vec<Vec<u8>> = entries.into_iter().map(|kv| kv.value).collect();
    Ok((fold(&values, decision.clone(), now_micros())?, decision))
}

impl<K: OrderedKv> Ledger<K> {
    /// The project's requests, oldest first: pending ones (not answered, not decided, not
    /// expired) or all. At most [`MAX_APPROVALS`]; examines at most [`MAX_APPROVAL_SCAN`]
    /// index entries (the oldest requests past that are not listed).
    pub async fn approvals(
        &self,
        tenant: TenantId,
        project: ProjectId,
        filter: ApprovalFilter,
    ) -> Result<Vec<ApprovalRecord>, LedgerError> {
        let p = self.project_keys(tenant, project).await?;
        let space = p.approvals();
        let entries = self
            .read_all(RangeOption::prefix(space.bytes()).limit(MAX_APPROVAL_SCAN))
            .await?;
        let decisions = self
            .read_all(RangeOption::prefix(p.decisions().bytes()))
            .await?;
        let mut decided = std::collections::HashMap::new();
        for kv in decisions {
            let (id,): (Vec<u8>,) = p
                .decisions()
                .unpack(&kv.key)
                .map_err(|e| corrupt(format!("decision key: {e:?}")))?;
            decided.insert(
                id,
                from_json::<CloudDecision>("approval decision", &kv.value)?,
            );
        }
        let now = now_micros();
        let mut out = Vec::new();
        let mut group: Vec<Vec<u8>> = Vec::new();
        let mut group_id: Option<Vec<u8>> = None;
        let mut flush = |id: Option<Vec<u8>>, values: &mut Vec<Vec<u8>>| {
            if let Some(id) = id
                && let Some(r) = fold(values, decided.remove(&id), now)?
                && (filter == ApprovalFilter::All || r.state == ApprovalState::Pending)
            {
                out.push(r);
            }
            values.clear();
            Ok::<_, LedgerError>(())
        };
        for kv in entries {
            let (id, _vs): (Vec<u8>, Versionstamp) = space
                .unpack(&kv.key)
                .map_err(|e| corrupt(format!("approval key: {e:?}")))?;
            if group_id.as_ref() != Some(&id) {
                flush(group_id.take(), &mut group)?;
                group_id = Some(id);
            }
            group.push(kv.value);
        }
        flush(group_id, &mut group)?;
        out.sort_by_key(|r| r.requested_at);
        if out.len() > MAX_APPROVALS {
            // The newest matter most: a person looks at what is waiting now.
            out.drain(..out.len() - MAX_APPROVALS);
        }
        Ok(out)
    }

    /// One request, or [`LedgerError::ApprovalNotFound`].
    pub async fn approval(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: &[u8; REQUEST_ID_LEN],
    ) -> Result<ApprovalRecord, LedgerError> {
        let p = self.project_keys(tenant, project).await?;
        let (rec, _) = self
            .kv
            .transact(|tx, _| {
                let p = p.clone();
                async move { read_one(&tx, &p, id, true).await }
            })
            .await?;
        rec.0
            .ok_or_else(|| LedgerError::ApprovalNotFound(hex::encode(id)))
    }

    /// Decides request `id` through the API. Refused when it does not exist
    /// ([`LedgerError::ApprovalNotFound`]), was answered or decided already
    /// ([`LedgerError::ApprovalDecided`]) or has expired ([`LedgerError::ApprovalExpired`]);
    /// nothing is written then.
    pub async fn decide_approval(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: &[u8; REQUEST_ID_LEN],
        decision: &CloudDecision,
    ) -> Result<ApprovalRecord, LedgerError> {
        let p = self.project_keys(tenant, project).await?;
        let (rec, _) = self
            .kv
            .transact(|tx, maybe_committed| {
                let p = p.clone();
                async move {
                    let (rec, existing) = read_one(&tx, &p, id, false).await?;
                    let rec = rec.ok_or_else(|| LedgerError::ApprovalNotFound(hex::encode(id)))?;
                    if let Some(prev) = &existing
                        && maybe_committed.0
                        && prev == decision
                    {
                        // An earlier attempt of this very call committed.
                        return Ok(rec);
                    }
                    match rec.state {
                        ApprovalState::Pending => {}
                        ApprovalState::Expired => {
                            return Err(LedgerError::ApprovalExpired {
                                id: rec.id,
                                expires_at: rec.expires_at,
                            });
                        }
                        _ => {
                            return Err(LedgerError::ApprovalDecided {
                                id: rec.id,
                                state: rec.state,
                                by: rec.decided_by.unwrap_or_default(),
                            });
                        }
                    }
                    tx.set(&p.decision(id), &to_json(decision));
                    tx.set_versionstamped_key(&p.decision_new(), id);
                    let mut rec = rec;
                    rec.state = if decision.grant {
                        ApprovalState::Granted
                    } else {
                        ApprovalState::Denied
                    };
                    rec.decided_in = Some(DecidedIn::Cloud);
                    rec.decided_by = Some(decision.by.clone());
                    rec.decision_reason = non_empty(&decision.reason);
                    rec.remember = non_empty(&decision.remember);
                    rec.scope = non_empty(&decision.scope);
                    rec.pattern = non_empty(&decision.pattern);
                    Ok(rec)
                }
            })
            .await?;
        Ok(rec)
    }

    /// Cloud decisions after `after` (a decision cursor), in decision order, whose requests
    /// the log has not answered yet: what an edge still has to record. At most
    /// [`MAX_DECISIONS`].
    pub async fn decisions(
        &self,
        tenant: TenantId,
        project: ProjectId,
        after: Option<&Versionstamp>,
    ) -> Result<Vec<DecisionEntry>, LedgerError> {
        let p = self.project_keys(tenant, project).await?;
        let space = p.decisions_by_version();
        let begin = match after {
            Some(vs) => {
                // The key right after the cursor's own.
                let mut k = space.pack(&(vs,));
                k.push(0);
                k
            }
            None => space.bytes().to_vec(),
        };
        let end = horde_kv::strinc(space.bytes());
        let entries = self
            .read_all(RangeOption::new(begin, end).limit(MAX_DECISIONS))
            .await?;
        let mut out = Vec::with_capacity(entries.len());
        for kv in entries {
            let (vs,): (Versionstamp,) = space
                .unpack(&kv.key)
                .map_err(|e| corrupt(format!("decision feed key: {e:?}")))?;
            let id: [u8; REQUEST_ID_LEN] = kv
                .value
                .as_slice()
                .try_into()
                .map_err(|_| corrupt("decision feed value is not a request id"))?;
            let (rec, decision) = self
                .kv
                .transact(|tx, _| {
                    let p = p.clone();
                    async move { read_one(&tx, &p, &id, true).await }
                })
                .await?
                .0;
            let (Some(rec), Some(decision)) = (rec, decision) else {
                continue;
            };
            if rec.decided_in == Some(DecidedIn::Cloud) {
                out.push(DecisionEntry {
                    cursor: hex::encode(vs.as_bytes()),
                    request_id: rec.id,
                    decision,
                });
            }
        }
        Ok(out)
    }
}
