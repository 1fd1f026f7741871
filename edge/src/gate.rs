//! Asking the policy before an agent acts: the manifests in scope, a role's compiled
//! policies, and the gate that turns a decision into what happens (a deny recorded, an ask
//! recorded as a request and perhaps waited on, remembered answers applied). Shared by
//! `horde run --role`, `horde policy check` and the agents' hooks (`horde hook`); it never
//! imports a command.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Result, bail};
use horde_policy::decide::{Agent, CommandSpec, Decision, PolicySet, Reason, Request, Verdict};
use horde_policy::manifest::{self, Scope};

use crate::approvals::{self, Remembered, RequestSpec};
use crate::session::cwd;
use crate::store::Layout;

/// Quotes argv as a shell line that parses back to the same words.
pub fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%^".contains(&b));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The manifests in scope: built-in, the user's, and the repository's if inside one.
pub fn scope() -> Result<Scope> {
    Ok(scope_at(Layout::discover(&cwd()?).ok().map(|l| l.root)))
}

/// The manifests in scope for the repository at `repo_root` (or none).
pub fn scope_at(repo_root: Option<std::path::PathBuf>) -> Scope {
    Scope {
        repo_root,
        user_dir: Some(crate::config::user_config_dir()),
    }
}

/// The policies in `scope`, paths resolved against its repository if there is one, and the
/// tier `role` decides at (`tier`, else its manifest's).
pub fn load_role_in(scope: &Scope, role: &str, tier: Option<&str>) -> Result<(PolicySet, u8)> {
    let set = PolicySet::load(scope)?;
    let set = match &scope.repo_root {
        Some(root) => set.with_worktree(root),
        None => set,
    };
    let Some(m) = set.manifest(role) else {
        bail!(
            "unknown role {role:?}: roles in scope are {}",
            set.roles().join(", ")
        );
    };
    let tier = match tier {
        Some(t) => manifest::parse_tier(t).map_err(|e| anyhow::anyhow!("--tier: {e}"))?,
        None => m.tier,
    };
    Ok((set, tier))
}

/// `role`'s policies in a scope, and the tier its manifest starts agents at: loaded (and
/// compiled) once per governed command.
pub struct RolePolicy {
    pub role: String,
    pub set: PolicySet,
    pub tier: horde_policy::tiers::Tier,
}

/// `role`'s policies for the repository around the current directory.
pub fn role_policy(role: &str) -> Result<RolePolicy> {
    role_policy_in(&scope()?, role)
}

/// `role`'s policies in `scope`.
pub fn role_policy_in(scope: &Scope, role: &str) -> Result<RolePolicy> {
    let (set, tier) = load_role_in(scope, role, None)?;
    let tier = horde_policy::tiers::Tier::ALL
        .get(usize::from(tier))
        .copied()
        .unwrap_or(horde_policy::tiers::Tier::T0);
    Ok(RolePolicy {
        role: role.to_owned(),
        set,
        tier,
    })
}

/// What an agent may do with one request.
pub struct Gate {
    pub verdict: Verdict,
    /// One line for the ToolCall and the user: the verdict and what decided it.
    pub summary: String,
    /// The policy itself denied (a violation), not a person.
    pub by_policy: bool,
    /// The approval request recorded when the answer was ask (its id).
    pub request: Option<String>,
}

/// One request to gate.
pub struct Ask<'a> {
    pub agent: &'a str,
    pub session: &'a str,
    pub request: Request,
    /// read | write | exec | net | model | operation.
    pub action: &'a str,
    /// The command line, path, host, model or operation, as people read it.
    pub subject: String,
    /// Record a deny and an ask (the agent is stopped); false: only decide (audit mode,
    /// where the call goes ahead whatever the answer).
    pub record: bool,
}

/// Decides `argv` for `role` before `horde run` runs it (see [`gate`]).
pub fn gate_command(
    store: &crate::store::Store,
    policy: &RolePolicy,
    session: &str,
    agent: &str,
    argv: &[String],
    wait: Option<u64>,
    standing: Option<&crate::trust::Current>,
) -> Result<Gate> {
    let ask = Ask {
        agent,
        session,
        request: Request::Exec(CommandSpec::Argv(argv.to_vec())),
        action: "exec",
        subject: shell_join(argv),
        record: true,
    };
    gate(store, policy, &ask, wait.map(Duration::from_secs), standing)
}

/// What a decision reads from the log — whether the session is quarantined, the answers
/// people asked to be remembered — kept between decisions of one process (the daemon) until
/// an event that could change it is appended: an `approval` for remembered answers, an
/// `observation` for quarantine. Each is a fold over the whole log, which has no index by
/// type.
#[derive(Default)]
pub struct LogFacts {
    /// The newest event id looked at.
    upto: i64,
    quarantined: HashMap<(String, String), bool>,
    remembered: HashMap<(String, String), Vec<Remembered>>,
}

impl LogFacts {
    /// Forgets what events appended since the last call may have changed.
    fn refresh(&mut self, conn: &rusqlite::Connection) -> Result<()> {
        let top: i64 =
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?;
        if top == self.upto {
            return Ok(());
        }
        let mut st = conn.prepare_cached(
            "SELECT DISTINCT type FROM events WHERE id > ?1 AND type IN ('approval', 'observation')",
        )?;
        let types = st
            .query_map([self.upto], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        // The id went back (another ledger file under the same path): forget everything.
        let all = top < self.upto;
        if all || (types.iter().any(|t| t == "approval") && self.new_grant_remembered(conn)?) {
            self.remembered.clear();
        }
        if all || types.iter().any(|t| t == "observation") {
            self.quarantined.clear();
        }
        self.upto = top;
        Ok(())
    }

    /// Whether an approval appended since the last refresh may add a remembered answer: only
    /// a grant with a pattern can (a request, a deny, an expiry or a plain grant cannot, and
    /// the first answer to a request stands), so a session full of denials does not fold the
    /// whole log again at each call.
    fn new_grant_remembered(&self, conn: &rusqlite::Connection) -> Result<bool> {
        use horde_core::proto::approval::Kind;
        use horde_core::proto::event_body::Payload;
        let mut st = conn
            .prepare_cached("SELECT body, hash FROM events WHERE id > ?1 AND type = 'approval'")?;
        let mut rows = st.query([self.upto])?;
        while let Some(r) = rows.next()? {
            let (body, hash): (Vec<u8>, Vec<u8>) = (r.get(0)?, r.get(1)?);
            match horde_core::decode_event(&body, &hash) {
                Ok(ev) => {
                    if let Some(Payload::Approval(a)) = &ev.payload
                        && a.kind == Kind::Granted as i32
                        && !a.pattern.is_empty()
                    {
                        return Ok(true);
                    }
                }
                // Unreadable: assume the worst, fold again.
                Err(_) => return Ok(true),
            }
        }
        Ok(false)
    }

    fn quarantined(
        &mut self,
        conn: &rusqlite::Connection,
        agent: &str,
        session: &str,
    ) -> Result<bool> {
        let key = (agent.to_owned(), session.to_owned());
        if let Some(q) = self.quarantined.get(&key) {
            return Ok(*q);
        }
        let q = crate::trust::quarantined(conn, agent, session)?;
        self.quarantined.insert(key, q);
        Ok(q)
    }

    fn remembered(
        &mut self,
        conn: &rusqlite::Connection,
        role: &str,
        session: &str,
    ) -> Result<Vec<Remembered>> {
        let key = (role.to_owned(), session.to_owned());
        if let Some(r) = self.remembered.get(&key) {
            return Ok(r.clone());
        }
        let r = approvals::remembered(conn, role, session)?;
        self.remembered.insert(key, r.clone());
        Ok(r)
    }
}

/// Decides a request of `ask.agent` under `policy`. A deny is recorded (an `Approval` by
/// `policy`); an ask records a request and, with `wait`, waits that long for a person's
/// answer. Remembered answers apply (argv patterns for commands, the exact subject for the
/// rest), never to a quarantined agent.
pub fn gate(
    store: &crate::store::Store,
    policy: &RolePolicy,
    ask: &Ask<'_>,
    wait: Option<Duration>,
    standing: Option<&crate::trust::Current>,
) -> Result<Gate> {
    gate_with(store, policy, ask, wait, standing, &mut LogFacts::default())
}

/// [`gate`] reading the log through `facts` (kept by the caller between decisions).
pub fn gate_with(
    store: &crate::store::Store,
    policy: &RolePolicy,
    ask: &Ask<'_>,
    wait: Option<Duration>,
    standing: Option<&crate::trust::Current>,
    facts: &mut LogFacts,
) -> Result<Gate> {
    let (agent, session) = (ask.agent, ask.session);
    let conn = &store.ledger.conn;
    facts.refresh(conn)?;
    let quarantined = facts.quarantined(conn, agent, session)?;
    let (set, role) = (&policy.set, policy.role.as_str());
    let who = Agent {
        id: agent.to_owned(),
        role: role.to_owned(),
        // The agent's recorded tier (promoted or demoted since) rather than the manifest's.
        tier: standing.map_or(policy.tier, |s| s.trust.tier).level(),
        budget_exhausted: standing.is_some_and(|s| s.revoked().is_some()),
        quarantined,
    };
    let remembered = facts.remembered(conn, role, session)?;
    let patterns: Vec<_> = approvals::exec_patterns(&remembered)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let mut decision = set.decide_with(&who, &ask.request, &patterns)?;
    if !quarantined
        && decision.verdict == Verdict::Ask
        && ask.action != "exec"
        && let Some(r) = remembered
            .iter()
            .find(|r| r.action == ask.action && r.pattern == ask.subject)
    {
        decision.verdict = Verdict::Allow;
        decision.reasons = vec![remembered_reason(r)];
    }
    let subject = &ask.subject;
    let spec = |reason: String| RequestSpec {
        agent: agent.to_owned(),
        role: role.to_owned(),
        session: session.to_owned(),
        action: ask.action.into(),
        subject: subject.clone(),
        reason,
        ttl: store.config.approval_ttl(),
    };
    if !ask.record && decision.verdict != Verdict::Allow {
        return Ok(Gate {
            verdict: decision.verdict,
            summary: format!("{}: {}", decision.verdict, deciding_rule(&decision)),
            by_policy: decision.verdict == Verdict::Deny,
            request: None,
        });
    }
    match decision.verdict {
        Verdict::Allow => Ok(Gate {
            verdict: Verdict::Allow,
            summary: format!("allow: {}", deciding_rule(&decision)),
            by_policy: false,
            request: None,
        }),
        Verdict::Deny => {
            let why = deciding_rule(&decision);
            approvals::record_denial(store, &spec(why.clone()))?;
            Ok(Gate {
                verdict: Verdict::Deny,
                summary: format!("the policy of {role} denies {subject}: {why}"),
                by_policy: true,
                request: None,
            })
        }
        Verdict::Ask => {
            let why = deciding_rule(&decision);
            let req = approvals::request(store, &spec(why.clone()))?;
            let short = req.id[..8].to_owned();
            let pending = |summary| Gate {
                verdict: Verdict::Ask,
                summary,
                by_policy: false,
                request: Some(req.id.clone()),
            };
            let Some(wait) = wait.filter(|w| !w.is_zero()) else {
                return Ok(pending(format!(
                    "a person must approve {subject} ({why}): request {short} (`horde approve {short}`)"
                )));
            };
            eprintln!(
                "horde: waiting up to {} s for a person to answer request {short}",
                wait.as_secs()
            );
            match approvals::wait(&store.ledger.conn, &req.id, wait)? {
                Some(r) if r.state == "granted" => Ok(Gate {
                    verdict: Verdict::Allow,
                    summary: format!(
                        "allow: approved by {} (request {short})",
                        r.decided_by.as_deref().unwrap_or("?")
                    ),
                    by_policy: false,
                    request: Some(req.id.clone()),
                }),
                Some(r) => Ok(Gate {
                    verdict: Verdict::Deny,
                    summary: format!(
                        "request {short} was {} by {}{}",
                        r.state,
                        r.decided_by.as_deref().unwrap_or("nobody"),
                        r.decision_reason
                            .as_deref()
                            .map(|s| format!(": {s}"))
                            .unwrap_or_default()
                    ),
                    by_policy: false,
                    request: Some(req.id.clone()),
                }),
                None => Ok(pending(format!(
                    "no answer to request {short} within {} s (`horde approve {short}`)",
                    wait.as_secs()
                ))),
            }
        }
    }
}

/// The reason a remembered answer gives.
pub fn remembered_reason(r: &Remembered) -> Reason {
    Reason {
        source: "remembered".into(),
        line: 0,
        rule: format!(
            "approved by {} (request {}, {} for the {})",
            r.by,
            &r.request[..8.min(r.request.len())],
            r.kind,
            r.scope.as_str()
        ),
        effect: Verdict::Allow,
    }
}

/// The rule that decided, as one line.
pub fn deciding_rule(d: &Decision) -> String {
    d.reasons
        .iter()
        .chain(d.per_command.iter().flat_map(|(_, _, rs)| rs.iter()))
        .find(|r| r.effect == d.verdict)
        .map(reason_line)
        .unwrap_or_else(|| format!("the policy says {}", d.verdict))
}

pub fn reason_line(r: &Reason) -> String {
    if r.line > 0 {
        format!("{}:{}  {}", r.source, r.line, r.rule)
    } else {
        format!("{}  {}", r.source, r.rule)
    }
}
