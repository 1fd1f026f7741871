//! Approval requests and their answers, kept only as `Approval` events in the ledger: a
//! request (`REQUESTED`), then at most one answer (`GRANTED`, `DENIED`) or its expiry. A grant
//! may be remembered — the command exactly, by prefix or by program; for the agent session or
//! for the repository — and that remembered rule is the grant event itself, so sync carries
//! it and `horde policy check` shows it.
//!
//! Invariants: the state of a request is a fold over the log (nothing else stores it); a
//! request is answered at most once; an expired request cannot be answered; a rule too broad
//! to remember is refused before anything is written.

use std::collections::BTreeMap;
use std::time::Duration;

use horde_core::proto::approval::Kind;
use horde_core::proto::event_body::Payload;
use horde_core::{Draft, decode_event};
use horde_policy::command::ArgvPattern;
use horde_policy::remember::{RememberKind, remembered_rule};
use rusqlite::Connection;
use serde::Serialize;

use crate::store::read::{self, LogFilter};
use crate::store::writer::AppendRequest;
use crate::store::{Store, StoreError};

/// How long a request waits for an answer unless the configuration says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60 * 60);
/// Longest subject (command line, path, host) a request may carry.
pub const MAX_SUBJECT: usize = 8 * 1024;
/// Longest reason a person may give.
pub const MAX_REASON: usize = 2 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("no approval request {0} in this project (`horde approvals --all` lists them)")]
    NotFound(String),
    #[error("approval id {0:?} is ambiguous: it starts {1} requests; give more characters")]
    Ambiguous(String, usize),
    #[error("approval id {0:?} is not valid: give the hex id `horde approvals` shows")]
    BadId(String),
    #[error("request {id} was already {state} by {by}; it cannot be answered again")]
    AlreadyDecided {
        id: String,
        state: &'static str,
        by: String,
    },
    #[error("request {0} expired at {1}; the agent has to ask again")]
    Expired(String, String),
    #[error("{0}")]
    TooBroad(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Result<T, E = ApprovalError> = std::result::Result<T, E>;

/// Where a remembered answer applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Only for the agent session that asked.
    Session,
    /// For every session of this role in this repository.
    Repo,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Session => "session",
            Scope::Repo => "repo",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "session" => Ok(Scope::Session),
            "repo" => Ok(Scope::Repo),
            _ => Err(ApprovalError::Invalid(format!(
                "--for {s:?}: expected session or repo"
            ))),
        }
    }
}

/// What an agent asks a person for.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub agent: String,
    pub role: String,
    /// The agent session asking (remembered answers `--for session` apply to it only).
    pub session: String,
    /// read | write | exec | net | model | operation.
    pub action: String,
    /// The command line, path, host, model or operation.
    pub subject: String,
    /// Why it is asked (the rule that said "ask").
    pub reason: String,
    pub ttl: Duration,
}

/// One request and where it stands, folded from its events.
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    pub id: String,
    pub agent: String,
    pub role: String,
    pub session: String,
    pub action: String,
    pub subject: String,
    pub reason: String,
    /// µs since the epoch.
    pub requested_at: i64,
    pub expires_at: i64,
    /// pending | granted | denied | expired.
    pub state: &'static str,
    /// Who answered, and what they said.
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    pub remembered: Option<Remembered>,
    /// The request's event id (for `horde show`).
    pub event: String,
    /// The device that asked.
    pub device: String,
}

/// A grant that applies to later requests too.
#[derive(Debug, Clone, Serialize)]
pub struct Remembered {
    pub request: String,
    pub role: String,
    /// For `Session` scope: the session it applies to.
    pub session: Option<String>,
    pub scope: Scope,
    /// exact | prefix | program.
    pub kind: String,
    pub action: String,
    /// An argv pattern for `exec`, else the exact subject.
    pub pattern: String,
    pub by: String,
}

fn now() -> i64 {
    horde_core::time::now_micros()
}

/// A fresh random request id: random (not time-ordered) so that short prefixes differ.
fn new_request_id() -> Result<[u8; 16]> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)
        .map_err(|e| ApprovalError::Invalid(format!("no randomness for a request id: {e}")))?;
    Ok(b)
}

fn id_str(b: &[u8]) -> String {
    hex::encode(b)
}

fn check_len(what: &str, s: &str, max: usize) -> Result<()> {
    if s.len() > max {
        return Err(ApprovalError::Invalid(format!(
            "{what} is {} bytes; at most {max}",
            s.len()
        )));
    }
    Ok(())
}

const ACTIONS: [&str; 6] = ["read", "write", "exec", "net", "model", "operation"];

/// Appends one `Approval` event by `who` for `role`.
fn append(
    store: &Store,
    who: &str,
    role: &str,
    payload: horde_core::proto::Approval,
) -> Result<()> {
    let mut draft = Draft::new(store.ledger.meta.timeline, who, Payload::Approval(payload));
    draft.role = role.to_owned();
    store.writer.append(AppendRequest {
        drafts: vec![draft],
        ..Default::default()
    })?;
    Ok(())
}

/// Records a request; returns it as now stored.
pub fn request(store: &Store, spec: &RequestSpec) -> Result<Request> {
    if !ACTIONS.contains(&spec.action.as_str()) {
        return Err(ApprovalError::Invalid(format!(
            "unknown action {:?}: expected one of {}",
            spec.action,
            ACTIONS.join(", ")
        )));
    }
    check_len("the subject", &spec.subject, MAX_SUBJECT)?;
    check_len("the reason", &spec.reason, MAX_REASON)?;
    let id = new_request_id()?;
    let requested_at = now();
    let ttl = i64::try_from(spec.ttl.as_micros()).unwrap_or(i64::MAX);
    let payload = horde_core::proto::Approval {
        request_id: id.to_vec(),
        kind: Kind::Requested as i32,
        who: spec.agent.clone(),
        what: format!("{} {}", spec.action, spec.subject),
        reason: spec.reason.clone(),
        action: spec.action.clone(),
        subject: spec.subject.clone(),
        expires_at: requested_at.saturating_add(ttl),
        session: spec.session.clone(),
        ..Default::default()
    };
    append(store, &spec.agent, &spec.role, payload)?;
    find(&store.ledger.conn, &id_str(&id))
}

/// Records that the policy itself denied `spec` (no person is asked): an `Approval` event of
/// kind `DENIED` by `policy`, so denials show in `horde log --type approval`.
pub fn record_denial(store: &Store, spec: &RequestSpec) -> Result<()> {
    check_len("the subject", &spec.subject, MAX_SUBJECT)?;
    let payload = horde_core::proto::Approval {
        request_id: new_request_id()?.to_vec(),
        kind: Kind::Denied as i32,
        who: "policy".into(),
        what: format!("{} {}", spec.action, spec.subject),
        reason: spec.reason.clone(),
        action: spec.action.clone(),
        subject: spec.subject.clone(),
        session: spec.session.clone(),
        ..Default::default()
    };
    append(store, &spec.agent, &spec.role, payload)
}

/// Every request of the project (all devices), oldest first.
pub fn all(conn: &Connection) -> Result<Vec<Request>> {
    let rows = read::log(
        conn,
        &LogFilter {
            types: vec!["approval".into()],
            oldest_first: true,
            ..Default::default()
        },
    )?;
    let t = now();
    let mut by_id: BTreeMap<Vec<u8>, Request> = BTreeMap::new();
    let mut order: Vec<Vec<u8>> = Vec::new();
    for r in rows {
        // A corrupt event is `horde verify`'s to report; it decides nothing here.
        let Ok(ev) = decode_event(&r.body, &r.hash) else {
            continue;
        };
        let Some(Payload::Approval(a)) = &ev.payload else {
            continue;
        };
        let kind = Kind::try_from(a.kind).unwrap_or(Kind::Unspecified);
        match kind {
            Kind::Requested => {
                if by_id.contains_key(&a.request_id) {
                    continue;
                }
                order.push(a.request_id.clone());
                by_id.insert(
                    a.request_id.clone(),
                    Request {
                        id: id_str(&a.request_id),
                        agent: a.who.clone(),
                        role: ev.role.clone(),
                        session: a.session.clone(),
                        action: a.action.clone(),
                        subject: a.subject.clone(),
                        reason: a.reason.clone(),
                        requested_at: ev.occurred_at,
                        expires_at: a.expires_at,
                        state: "pending",
                        decided_by: None,
                        decision_reason: None,
                        remembered: None,
                        event: r.id.to_string(),
                        device: horde_core::DeviceId::from_slice(&ev.device_id)
                            .map(|d| d.to_string())
                            .unwrap_or_default(),
                    },
                );
            }
            Kind::Granted | Kind::Denied | Kind::Expired => {
                let Some(req) = by_id.get_mut(&a.request_id) else {
                    continue;
                };
                if req.state != "pending" {
                    continue; // the first answer stands
                }
                req.state = match kind {
                    Kind::Granted => "granted",
                    Kind::Denied => "denied",
                    _ => "expired",
                };
                req.decided_by = Some(a.who.clone());
                req.decision_reason = (!a.reason.is_empty()).then(|| a.reason.clone());
                if kind == Kind::Granted && !a.pattern.is_empty() {
                    let scope = if a.scope == "session" {
                        Scope::Session
                    } else {
                        Scope::Repo
                    };
                    req.remembered = Some(Remembered {
                        request: req.id.clone(),
                        role: req.role.clone(),
                        session: (scope == Scope::Session).then(|| req.session.clone()),
                        scope,
                        kind: a.remember.clone(),
                        action: req.action.clone(),
                        pattern: a.pattern.clone(),
                        by: a.who.clone(),
                    });
                }
            }
            Kind::Unspecified => {}
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .map(|mut r| {
            if r.state == "pending" && r.expires_at <= t {
                r.state = "expired";
            }
            r
        })
        .collect())
}

/// The request whose id starts with `prefix`.
pub fn find(conn: &Connection, prefix: &str) -> Result<Request> {
    let p = prefix.trim().replace('-', "").to_ascii_lowercase();
    if p.is_empty() || p.len() > 32 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApprovalError::BadId(prefix.into()));
    }
    let mut hits: Vec<Request> = all(conn)?
        .into_iter()
        .filter(|r| r.id.starts_with(&p))
        .collect();
    match hits.len() {
        0 => Err(ApprovalError::NotFound(prefix.into())),
        1 => Ok(hits.remove(0)),
        n => Err(ApprovalError::Ambiguous(prefix.into(), n)),
    }
}

/// A person's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub grant: bool,
    pub who: String,
    pub reason: String,
    /// Remember a grant: how, and where it applies.
    pub remember: Option<(RememberKind, Scope)>,
}

/// Answers request `prefix`. Nothing is written when the answer is refused.
pub fn answer(store: &Store, prefix: &str, ans: &Answer) -> Result<Request> {
    check_len("the reason", &ans.reason, MAX_REASON)?;
    let req = find(&store.ledger.conn, prefix)?;
    match req.state {
        "pending" => {}
        "expired" => {
            return Err(ApprovalError::Expired(
                req.id.clone(),
                crate::output::local_time(req.expires_at),
            ));
        }
        state => {
            return Err(ApprovalError::AlreadyDecided {
                id: req.id.clone(),
                state,
                by: req.decided_by.clone().unwrap_or_default(),
            });
        }
    }
    let (remember, scope, pattern) = match (&ans.remember, ans.grant) {
        (Some(_), false) => {
            return Err(ApprovalError::Invalid(
                "a rejection is not remembered; only grants are".into(),
            ));
        }
        (Some((kind, scope)), true) => {
            let pattern = remembered_rule(&req.action, &req.subject, *kind)
                .map_err(|e| ApprovalError::TooBroad(e.to_string()))?;
            (kind.as_str().to_owned(), scope.as_str().to_owned(), pattern)
        }
        (None, _) => (String::new(), String::new(), String::new()),
    };
    let id = hex::decode(&req.id).expect("ids are hex we wrote");
    let payload = horde_core::proto::Approval {
        request_id: id,
        kind: if ans.grant {
            Kind::Granted as i32
        } else {
            Kind::Denied as i32
        },
        who: ans.who.clone(),
        what: format!("{} {}", req.action, req.subject),
        reason: ans.reason.clone(),
        action: req.action.clone(),
        subject: req.subject.clone(),
        session: req.session.clone(),
        remember,
        scope,
        pattern,
        ..Default::default()
    };
    append(store, &ans.who, &req.role, payload)?;
    find(&store.ledger.conn, &req.id)
}

/// The remembered grants that apply to `role` in `session`.
pub fn remembered(conn: &Connection, role: &str, session: &str) -> Result<Vec<Remembered>> {
    Ok(all(conn)?
        .into_iter()
        .filter_map(|r| r.remembered)
        .filter(|m| m.role == role)
        .filter(|m| match m.scope {
            Scope::Repo => true,
            Scope::Session => !session.is_empty() && m.session.as_deref() == Some(session),
        })
        .collect())
}

/// The argv patterns of remembered `exec` grants (what `decide_with` takes).
pub fn exec_patterns(rules: &[Remembered]) -> Vec<(ArgvPattern, &Remembered)> {
    let mut out = Vec::new();
    for r in rules.iter().filter(|r| r.action == "exec") {
        for p in r.pattern.lines() {
            // A pattern that no longer parses (an older build's syntax) allows nothing.
            if let Ok(p) = ArgvPattern::parse(p) {
                out.push((p, r));
            }
        }
    }
    out
}

/// What became of a decision taken in the cloud.
#[derive(Debug)]
pub enum Applied {
    /// Recorded as this device's answer.
    Recorded(Box<Request>),
    /// Another device asked: that device records it.
    NotOurs,
    /// Refused here (already answered on this device, expired, too broad): why.
    Refused(String),
}

/// Records a decision a person took through the cloud on one of this device's requests, as
/// this device's own answer (by `EMAIL (cloud)`), unless the request was answered here first
/// or has expired. The remembered rule is derived here again, from the request as recorded.
pub fn apply_remote(
    store: &Store,
    device: &str,
    d: &crate::sync::client::RemoteDecision,
) -> Result<Applied> {
    let req = match find(&store.ledger.conn, &d.request_id) {
        Ok(r) => r,
        // Not (yet) in this ledger: another device's request, not pulled.
        Err(ApprovalError::NotFound(_)) => return Ok(Applied::NotOurs),
        Err(e) => return Err(e),
    };
    if req.device != device {
        return Ok(Applied::NotOurs);
    }
    let remember = if d.remember.is_empty() {
        None
    } else {
        let kind = d
            .remember
            .parse::<RememberKind>()
            .map_err(|e| ApprovalError::Invalid(e.to_string()))?;
        let scope = Scope::parse(if d.scope.is_empty() {
            "session"
        } else {
            &d.scope
        })?;
        Some((kind, scope))
    };
    let ans = Answer {
        grant: d.grant,
        who: format!("{} (cloud)", d.by),
        reason: d.reason.clone(),
        remember,
    };
    match answer(store, &req.id, &ans) {
        Ok(r) => Ok(Applied::Recorded(Box::new(r))),
        Err(
            e @ (ApprovalError::AlreadyDecided { .. }
            | ApprovalError::Expired(..)
            | ApprovalError::TooBroad(_)
            | ApprovalError::Invalid(_)),
        ) => Ok(Applied::Refused(e.to_string())),
        Err(e) => Err(e),
    }
}

/// Waits until request `id` is answered or expires; `None` when `timeout` passes first.
pub fn wait(conn: &Connection, id: &str, timeout: Duration) -> Result<Option<Request>> {
    let start = std::time::Instant::now();
    loop {
        let r = find(conn, id)?;
        if r.state != "pending" {
            return Ok(Some(r));
        }
        if start.elapsed() >= timeout {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
