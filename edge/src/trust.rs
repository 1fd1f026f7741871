//! Agents' standing on this repository: trust tier and error budget, kept as `Signal` events.
//!
//! After each governed task (`horde run --role R --agent A`) the agent's standing — its
//! `TrustState` (tier, compliant streak) and, per session, its `BudgetState` — is recorded as
//! a `TRUST` signal whose detail is the standing as JSON; a tier change is part of it (and
//! says so in the summary line). A budget breach also records a `BUDGET_BREACH` signal, a
//! `REVOCATION` of the agent in that session and a `HANDOFF` whose blob is the handoff (JSON)
//! a successor agent starts with. The standing now is the latest `TRUST` signal of the agent
//! (for the budget: of the agent in the session), so nothing else stores it.
//!
//! Invariants: a revoked agent (its session's budget breached) is refused every further
//! governed command in that session; a tier only moves through `TrustState::record_task`
//! (promotion after a streak, demotion on a violation); a standing that does not parse is
//! never read as more trust: it is skipped and the manifest's tier applies.

use horde_core::Draft;
use horde_core::proto::{EventBody, Signal, event_body::Payload, signal::Kind};
use horde_policy::budget::{
    Breach, BudgetState, ErrorBudget, ErrorKind, Handoff, MAX_HANDOFF_ITEMS,
};
use horde_policy::tiers::{PromotionRule, TaskOutcome, Tier, TierChange, TrustState};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::store::read::{self, EventRow, LogFilter};
use crate::store::writer::AppendRequest;
use crate::store::{Store, StoreError};

/// Most of an agent's newest signals (or observations) read to find its standing.
const MAX_SIGNALS_SCANNED: usize = 10_000;
/// The observation kind of an injection screening (`horde screen`).
pub const INJECTION: &str = "injection";
/// How the summary of a screening that quarantined its content starts.
pub const QUARANTINED: &str = "quarantined";

/// The events of `kind` (by `agent`, if given), decoded, newest first, at most
/// [`MAX_SIGNALS_SCANNED`]; a corrupt event is `horde verify`'s to report and is skipped.
fn newest(
    conn: &Connection,
    kind: &str,
    agent: Option<&str>,
) -> Result<impl Iterator<Item = (EventRow, EventBody)>, StoreError> {
    let rows = read::log(
        conn,
        &LogFilter {
            types: vec![kind.to_owned()],
            agents: agent.map(|a| vec![a.to_owned()]).unwrap_or_default(),
            limit: Some(MAX_SIGNALS_SCANNED),
            ..Default::default()
        },
    )?;
    Ok(rows.into_iter().filter_map(|r| {
        let body = horde_core::decode_event(&r.body, &r.hash).ok()?;
        Some((r, body))
    }))
}

/// An agent's standing after a task, as a `TRUST` signal holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Standing {
    pub role: String,
    pub session: String,
    pub trust: TrustState,
    pub budget: BudgetState,
    /// The tier change this task caused.
    pub change: Option<TierChange>,
    /// Commands the agent ran in this session (newest last, bounded), for a handoff.
    #[serde(default)]
    pub tried: Vec<String>,
}

/// What the standing was before a task: the tier to decide with, the session's budget.
#[derive(Debug, Clone)]
pub struct Current {
    pub trust: TrustState,
    pub budget: BudgetState,
    pub tried: Vec<String>,
}

impl Current {
    /// The session's budget is exhausted: the agent is revoked in it.
    pub fn revoked(&self) -> Option<&Breach> {
        self.budget.breach()
    }
}

/// How a governed task ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Ran and exited 0.
    Succeeded,
    /// Ran and failed (the message is fingerprinted: repeats of one error count together).
    Failed { message: String },
    /// The policy denied it: a violation (demotes; counts against the budget).
    Denied { rule: String },
    /// Waited for a person who said no, or did not answer: neither trust nor blame.
    NotRun,
}

/// What recording a task changed.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub change: Option<TierChange>,
    pub breach: Option<Breach>,
}

/// The standing of `agent` (tier from its latest `TRUST` signal, else the manifest's
/// `start`), and its budget in `session` (fresh if the session has none yet).
pub fn current(
    conn: &Connection,
    agent: &str,
    session: &str,
    start: Tier,
) -> Result<Current, StoreError> {
    let mut trust: Option<TrustState> = None;
    let mut budget: Option<(BudgetState, Vec<String>)> = None;
    for (_, ev) in newest(conn, "signal", Some(agent))? {
        let Some(Payload::Signal(s)) = &ev.payload else {
            continue;
        };
        if s.kind != Kind::Trust as i32 || s.subject != agent {
            continue;
        }
        let Ok(st) = serde_json::from_str::<Standing>(&s.detail) else {
            continue;
        };
        if trust.is_none() {
            trust = Some(st.trust.clone());
        }
        if budget.is_none() && st.session == session {
            budget = Some((st.budget, st.tried));
        }
        if trust.is_some() && budget.is_some() {
            break;
        }
    }
    let (budget, tried) =
        budget.unwrap_or_else(|| (BudgetState::new(ErrorBudget::default()), Vec::new()));
    Ok(Current {
        trust: trust.unwrap_or_else(|| TrustState::new(start)),
        budget,
        tried,
    })
}

/// Every `TRUST` signal of the ledger, newest first (at most [`MAX_SIGNALS_SCANNED`]), with
/// its agent: what `horde standing` folds.
pub fn standings(conn: &Connection) -> Result<Vec<(String, i64, Standing)>, StoreError> {
    let mut out = Vec::new();
    for (r, ev) in newest(conn, "signal", None)? {
        if let Some(Payload::Signal(s)) = &ev.payload
            && s.kind == Kind::Trust as i32
            && let Ok(st) = serde_json::from_str::<Standing>(&s.detail)
        {
            out.push((s.subject.clone(), r.occurred_at, st));
        }
    }
    Ok(out)
}

/// The newest handoff recorded for `session` (of `agent`, if given): its event id, the agent
/// it hands over from, and the handoff.
pub fn handoff_for(
    ledger: &crate::store::Ledger,
    session: &str,
    agent: Option<&str>,
) -> Result<Option<(String, String, Handoff)>, StoreError> {
    let task = format!("session {session}");
    for (r, ev) in newest(&ledger.conn, "signal", agent)? {
        let Some(Payload::Signal(s)) = &ev.payload else {
            continue;
        };
        if s.kind != Kind::Handoff as i32 {
            continue;
        }
        let Some(hash) = horde_core::BlobHash::from_slice(&s.blob) else {
            continue;
        };
        // A handoff whose blob is missing or damaged here is `horde verify`'s to report.
        let Ok(bytes) = ledger.blobs.get(&hash) else {
            continue;
        };
        let Ok(h) = Handoff::from_json(&String::from_utf8_lossy(&bytes)) else {
            continue;
        };
        if h.task == task {
            return Ok(Some((r.id.to_string(), s.subject.clone(), h)));
        }
    }
    Ok(None)
}

/// Whether `agent` has read quarantined content in `session` (a screening recorded with that
/// agent and session): then what the manifest allows asks a person first.
pub fn quarantined(conn: &Connection, agent: &str, session: &str) -> Result<bool, StoreError> {
    if session.is_empty() {
        return Ok(false);
    }
    Ok(newest(conn, "observation", Some(agent))?.any(|(_, e)| {
        matches!(
            e.payload,
            Some(Payload::Observation(o))
                if o.kind == INJECTION && o.session == session && o.summary.starts_with(QUARANTINED)
        )
    }))
}

/// Records how a task of `agent` ended: its new standing, and on a breach the breach, the
/// revocation and the handoff.
pub fn record(
    store: &Store,
    agent: &str,
    role: &str,
    session: &str,
    command: &str,
    mut now: Current,
    outcome: Outcome,
) -> Result<Recorded, StoreError> {
    let rule = PromotionRule::default();
    let (task, error) = match &outcome {
        Outcome::Succeeded => (TaskOutcome::Compliant, None),
        Outcome::Failed { message } => (
            TaskOutcome::Incomplete,
            Some(ErrorKind::Error {
                message: message.clone(),
            }),
        ),
        Outcome::Denied { rule } => (
            TaskOutcome::Violation {
                reason: format!("denied by policy: {rule}"),
            },
            Some(ErrorKind::Violation { rule: rule.clone() }),
        ),
        Outcome::NotRun => (TaskOutcome::Incomplete, None),
    };
    let had_breach = now.budget.breach().is_some();
    let change = now.trust.record_task(task, &rule);
    let breach = error.and_then(|e| now.budget.record(e));
    now.tried.push(command.to_owned());
    if now.tried.len() > MAX_HANDOFF_ITEMS {
        now.tried.drain(..now.tried.len() - MAX_HANDOFF_ITEMS);
    }
    let standing = Standing {
        role: role.to_owned(),
        session: session.to_owned(),
        trust: now.trust.clone(),
        budget: now.budget.clone(),
        change: change.clone(),
        tried: now.tried.clone(),
    };
    let detail = serde_json::to_string(&standing).expect("plain structs always encode as JSON");
    let timeline = store.ledger.meta.timeline;
    let signal = |kind: Kind, detail: String, blob: Vec<u8>| {
        let mut d = Draft::new(
            timeline,
            agent,
            Payload::Signal(Signal {
                kind: kind as i32,
                subject: agent.to_owned(),
                detail,
                blob,
            }),
        );
        d.role = role.to_owned();
        d
    };
    let mut drafts = vec![signal(Kind::Trust, detail, Vec::new())];
    let mut blobs = Vec::new();
    let fresh_breach = breach.filter(|_| !had_breach);
    if let Some(b) = &fresh_breach {
        drafts.push(signal(
            Kind::BudgetBreach,
            format!("session {session}: {b}"),
            Vec::new(),
        ));
        drafts.push(signal(
            Kind::Revocation,
            format!("{agent} may run nothing more in session {session}: {b}"),
            Vec::new(),
        ));
        let handoff = handoff(role, session, &now, b);
        let json = handoff
            .to_json()
            .expect("plain structs always encode as JSON");
        let hash = store.ledger.blobs.put_bytes(json.as_bytes())?;
        blobs.push((hash, json.len() as u64));
        drafts.push(signal(
            Kind::Handoff,
            format!("handoff for the successor of {agent} in session {session}"),
            hash.to_vec(),
        ));
    }
    store.writer.append(AppendRequest {
        drafts,
        blobs,
        ..Default::default()
    })?;
    Ok(Recorded {
        change,
        breach: fresh_breach,
    })
}

/// What a successor starts with: what was tried, what blocks, what to do next.
fn handoff(role: &str, session: &str, now: &Current, breach: &Breach) -> Handoff {
    let mut blocks = vec![breach.to_string()];
    for (fp, n) in now.budget.frequent_errors() {
        blocks.push(format!("{n}× {fp}"));
    }
    blocks.truncate(MAX_HANDOFF_ITEMS);
    let next_actions = match &breach.fingerprint {
        Some(fp) if breach.budget == horde_policy::budget::BudgetKind::Repeats => vec![
            format!(
                "Do not retry the same step: it failed {} times ({fp}).",
                breach.count
            ),
            "Find the cause of that error first (read its output with `horde show`).".to_owned(),
        ],
        _ => vec![
            "Review what was tried before going on; take another approach.".to_owned(),
            "Work in a new session: this one is revoked.".to_owned(),
        ],
    };
    Handoff {
        role: role.to_owned(),
        task: format!("session {session}"),
        tried: now.tried.clone(),
        blocks,
        next_actions,
        breach: breach.clone(),
    }
}

/// The message a failed command counts against the budget with (the budget fingerprints it:
/// numbers and paths in it are normalised there, so a retry of the same step is a repeat).
pub fn failure_message(command: &str, exit_code: i32) -> String {
    format!("`{command}` exited with status {exit_code}")
}
