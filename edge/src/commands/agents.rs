//! `horde standing` (agents' trust tiers and error budgets, as recorded) and `horde handoff`
//! (what a successor agent starts with after a budget breach). Both only read the ledger.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use crate::session::open_ledger;
use crate::trust::{self, Standing};

#[derive(Args, Debug)]
pub struct StandingArgs {
    /// Only this agent.
    pub agent: Option<String>,
    #[arg(long)]
    pub json: bool,
}

/// Each agent's latest standing, and the sessions in which it is revoked.
pub fn cmd_standing(a: StandingArgs) -> Result<ExitCode> {
    let ledger = open_ledger()?;
    let mut by_agent: BTreeMap<String, (i64, Standing, Vec<String>)> = BTreeMap::new();
    for (agent, at, st) in trust::standings(&ledger.conn)? {
        if a.agent.as_ref().is_some_and(|x| *x != agent) {
            continue;
        }
        // Newest first: the first one seen is the standing; older ones add revoked sessions.
        let breached = st.budget.breach().is_some().then(|| st.session.clone());
        let entry = by_agent
            .entry(agent)
            .or_insert_with(|| (at, st, Vec::new()));
        if let Some(s) = breached
            && !entry.2.contains(&s)
        {
            entry.2.push(s);
        }
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        let list: Vec<_> = by_agent
            .iter()
            .map(|(agent, (at, st, revoked))| {
                json!({
                    "agent": agent, "role": st.role, "tier": st.trust.tier.as_str(),
                    "compliant_streak": st.trust.compliant_tasks, "tasks": st.trust.total_tasks,
                    "violations": st.trust.violations, "revoked_sessions": revoked,
                    "updated_at": crate::output::local_time(*at),
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &list)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if by_agent.is_empty() {
        writeln!(
            out,
            "No agent has a standing yet (`horde run --role ROLE --agent NAME -- …` records one)."
        )?;
    }
    for (agent, (_, st, revoked)) in &by_agent {
        writeln!(
            out,
            "{agent} ({}): {} — {}; {} tasks, {} in a row compliant, {} violations{}",
            st.role,
            st.trust.tier,
            st.trust.tier.describe(),
            st.trust.total_tasks,
            st.trust.compliant_tasks,
            st.trust.violations,
            if revoked.is_empty() {
                String::new()
            } else {
                format!("; revoked in session {}", revoked.join(", "))
            }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct HandoffArgs {
    /// The session whose budget was breached.
    pub session: String,
    /// Only a handoff from this agent.
    #[arg(long)]
    pub agent: Option<String>,
    /// The handoff as JSON instead of the Markdown a successor's prompt takes.
    #[arg(long)]
    pub json: bool,
}

/// Prints the handoff recorded for a session: `horde handoff s2 | agent …`.
pub fn cmd_handoff(a: HandoffArgs) -> Result<ExitCode> {
    let ledger = open_ledger()?;
    let Some((event, from, h)) = trust::handoff_for(&ledger, &a.session, a.agent.as_deref())?
    else {
        anyhow::bail!(
            "no handoff for session {:?}{} (one is recorded when an agent's error budget is exhausted)",
            a.session,
            a.agent
                .as_deref()
                .map(|x| format!(" of {x}"))
                .unwrap_or_default()
        );
    };
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(
            &mut out,
            &json!({"event": event, "from": from, "handoff": h}),
        )?;
        writeln!(out)?;
    } else {
        write!(out, "{}", h.to_markdown())?;
    }
    Ok(ExitCode::SUCCESS)
}
