//! Governance commands: `horde policy init|check|lint|show`, `horde approvals`,
//! `horde approve`, `horde reject`. The decisions are `horde-policy`'s; the requests and
//! remembered answers are ledger events (`crate::approvals`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use horde_policy::decide::{Agent, CommandSpec, Decision, PolicySet, Request, Verdict};
use horde_policy::manifest::{self, Scope};
use horde_policy::remember::RememberKind;
use serde_json::json;

use crate::approvals::{self, Answer, Remembered, RequestSpec};
use crate::gate::{deciding_rule, reason_line, remembered_reason, scope, shell_join};
use crate::output::{Paint, colour_enabled, local_time};
use crate::session::{EXIT_ASK, EXIT_DENIED, cwd, open_ledger, open_store};
use crate::store::Layout;

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Write the built-in manifests of every role (or of --role) into `.horde/agents/`,
    /// or with --user into the user's configuration directory, to edit them.
    Init {
        /// Only these roles (repeatable).
        #[arg(long)]
        role: Vec<String>,
        /// Into `$HORDE_CONFIG_DIR/agents/` (every repository of this user) instead.
        #[arg(long)]
        user: bool,
        /// Replace files that exist.
        #[arg(long)]
        force: bool,
    },
    /// Would a role be allowed to do this? Prints allow, deny or ask, the rules and manifest
    /// lines that decided, and the tier. Exit code: 0 allow, 4 deny, 5 ask.
    Check(CheckArgs),
    /// Check every manifest in scope (built-in, user, repository); exit 1 if any is bad.
    Lint {
        #[arg(long)]
        json: bool,
    },
    /// Print a role's manifest (where it comes from) and the Cedar policies it compiles to.
    Show {
        role: String,
        /// Print the Cedar policies instead of the manifest.
        #[arg(long)]
        cedar: bool,
    },
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The role whose manifest decides (builder, inspector, …).
    #[arg(long)]
    pub role: String,
    /// Decide as for an agent that has read quarantined content (default: whether `horde
    /// screen` quarantined something for this agent and session).
    #[arg(long)]
    pub quarantined: bool,
    /// The tier to decide at (T0–T4); default: the manifest's.
    #[arg(long, value_name = "TIER")]
    pub tier: Option<String>,
    /// The agent asking (recorded on an approval request).
    #[arg(long, default_value = "human")]
    pub agent: String,
    /// The agent session: answers remembered `--for session` apply within it.
    #[arg(long, default_value = "")]
    pub session: String,
    /// When the answer is "ask", record an approval request (`horde approvals` lists it).
    #[arg(long)]
    pub request: bool,
    /// With --request: wait up to SECS for a person's answer (from `horde approve` here, or
    /// from another device through `horde sync --watch`); exit 0 if granted, 4 if not.
    #[arg(long, value_name = "SECS", requires = "request")]
    pub wait: Option<u64>,
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub what: Target,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Target {
    /// A command: `exec -- cargo test`, or a shell line: `exec -c 'make && make install'`.
    Exec {
        /// A shell command line, judged by its structure.
        #[arg(short = 'c', value_name = "LINE", conflicts_with = "argv")]
        line: Option<String>,
        /// The program and its arguments, run without a shell.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        argv: Vec<String>,
    },
    /// Reading a path.
    Read { path: String },
    /// Writing a path.
    Write { path: String },
    /// Reaching a host (a name, host:port or a URL).
    Net { host: String },
    /// Using a model.
    Model { name: String },
    /// An operation that may need a person (git_push, deploy, …).
    Operation { name: String },
}

impl Target {
    fn action(&self) -> &'static str {
        match self {
            Target::Exec { .. } => "exec",
            Target::Read { .. } => "read",
            Target::Write { .. } => "write",
            Target::Net { .. } => "net",
            Target::Model { .. } => "model",
            Target::Operation { .. } => "operation",
        }
    }

    fn request(&self) -> Result<(Request, String)> {
        Ok(match self {
            Target::Exec { line: Some(l), .. } => {
                (Request::Exec(CommandSpec::Shell(l.clone())), l.clone())
            }
            Target::Exec { line: None, argv } => {
                if argv.is_empty() {
                    bail!("exec needs a command: `exec -- PROGRAM ARGS…` or `exec -c 'LINE'`");
                }
                (
                    Request::Exec(CommandSpec::Argv(argv.clone())),
                    shell_join(argv),
                )
            }
            Target::Read { path } => (Request::Read(path.clone()), path.clone()),
            Target::Write { path } => (Request::Write(path.clone()), path.clone()),
            Target::Net { host } => (Request::Net(host.clone()), host.clone()),
            Target::Model { name } => (Request::Model(name.clone()), name.clone()),
            Target::Operation { name } => (Request::Operation(name.clone()), name.clone()),
        })
    }
}

pub fn cmd_policy(cmd: PolicyCommand) -> Result<ExitCode> {
    match cmd {
        PolicyCommand::Init { role, user, force } => init(&role, user, force),
        PolicyCommand::Check(args) => check(args),
        PolicyCommand::Lint { json } => lint(json),
        PolicyCommand::Show { role, cedar } => show(&role, cedar),
    }
}

fn init(roles: &[String], user: bool, force: bool) -> Result<ExitCode> {
    for r in roles {
        if !manifest::ROLES.contains(&r.as_str()) {
            bail!(
                "unknown role {r:?}: the built-in roles are {}",
                manifest::ROLES.join(", ")
            );
        }
    }
    let dir: PathBuf = if user {
        crate::config::user_config_dir().join("agents")
    } else {
        let layout = Layout::discover(&cwd()?)?;
        layout.dir.join("agents")
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let chosen: Vec<&str> = if roles.is_empty() {
        manifest::ROLES.to_vec()
    } else {
        roles.iter().map(String::as_str).collect()
    };
    for role in chosen {
        let text = manifest::default_manifest_text(role).expect("ROLES have defaults");
        let path = dir.join(format!("{role}.yaml"));
        if path.exists() && !force {
            println!("kept     {} (exists; --force replaces it)", path.display());
            continue;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote    {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn lint(json_out: bool) -> Result<ExitCode> {
    let scope = scope()?;
    let errors = manifest::lint(&scope);
    if json_out {
        let list: Vec<_> = errors
            .iter()
            .map(|e| {
                json!({
                    "file": e.file(), "line": e.line(), "key": e.key(), "message": e.to_string(),
                })
            })
            .collect();
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(
            &mut out,
            &json!({ "ok": errors.is_empty(), "errors": list }),
        )?;
        writeln!(out)?;
    } else if errors.is_empty() {
        println!("All manifests in scope are valid ({}).", describe(&scope));
    } else {
        for e in &errors {
            eprintln!("horde: {e}");
        }
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn describe(scope: &Scope) -> String {
    let mut parts = vec!["built-in".to_owned()];
    if let Some(u) = &scope.user_dir {
        parts.push(u.join("agents").display().to_string());
    }
    if let Some(r) = &scope.repo_root {
        parts.push(r.join(".horde/agents").display().to_string());
    }
    parts.join(", ")
}

fn show(role: &str, cedar: bool) -> Result<ExitCode> {
    let set = PolicySet::load(&scope()?)?;
    let Some(m) = set.manifest(role) else {
        bail!(
            "unknown role {role:?}: roles in scope are {}",
            set.roles().join(", ")
        );
    };
    if cedar {
        print!("{}", set.cedar_text(role).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    println!("# {}", m.source);
    match std::fs::read_to_string(&m.source) {
        Ok(text) => print!("{text}"),
        Err(_) => print!(
            "{}",
            manifest::default_manifest_text(role).unwrap_or_default()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// The policies in scope and the tier `role` decides at (see [`crate::gate::load_role_in`]).
fn load_role(role: &str, tier: Option<&str>) -> Result<(Scope, PolicySet, u8)> {
    let scope = scope()?;
    let (set, tier) = crate::gate::load_role_in(&scope, role, tier)?;
    Ok((scope, set, tier))
}

fn check(a: CheckArgs) -> Result<ExitCode> {
    let (scope, set, tier) = load_role(&a.role, a.tier.as_deref())?;
    // Screenings live in the ledger: only inside a repository.
    let screened = match &scope.repo_root {
        Some(_) => crate::trust::quarantined(&open_ledger()?.conn, &a.agent, &a.session)?,
        None => false,
    };
    let agent = Agent {
        id: a.agent.clone(),
        role: a.role.clone(),
        tier,
        budget_exhausted: false,
        quarantined: a.quarantined || screened,
    };
    let (request, subject) = a.what.request()?;
    // Remembered answers live in the ledger: only inside a repository.
    let remembered: Vec<Remembered> = match &scope.repo_root {
        Some(_) => approvals::remembered(&open_ledger()?.conn, &a.role, &a.session)?,
        None => Vec::new(),
    };
    let patterns = approvals::exec_patterns(&remembered);
    let argv_patterns: Vec<_> = patterns.iter().map(|(p, _)| p.clone()).collect();
    let mut decision = set.decide_with(&agent, &request, &argv_patterns)?;
    // Exact remembered answers for paths, hosts, models and operations.
    let mut used: Vec<&Remembered> = Vec::new();
    if !agent.quarantined
        && decision.verdict == Verdict::Ask
        && a.what.action() != "exec"
        && let Some(r) = remembered
            .iter()
            .find(|r| r.action == a.what.action() && r.pattern == subject)
    {
        decision.verdict = Verdict::Allow;
        decision.reasons = vec![remembered_reason(r)];
        used.push(r);
    }
    if a.what.action() == "exec" {
        for (_, reasons) in decision.per_command.iter().map(|(c, _, rs)| (c, rs)) {
            for r in reasons.iter().filter(|r| r.source == "remembered") {
                if let Some((_, rem)) = patterns.iter().find(|(p, _)| r.rule.contains(p.as_str())) {
                    used.push(rem);
                }
            }
        }
    }
    let mut pending = None;
    if a.request && decision.verdict == Verdict::Ask {
        let store =
            open_store().context("--request records the request in the repository's ledger")?;
        let ttl = store.config.approval_ttl();
        let req = approvals::request(
            &store,
            &RequestSpec {
                agent: a.agent.clone(),
                role: a.role.clone(),
                session: a.session.clone(),
                action: a.what.action().into(),
                subject: subject.clone(),
                reason: deciding_rule(&decision),
                ttl,
            },
        )?;
        pending = Some(req);
    }
    let mut answered = None;
    if let (Some(req), Some(secs)) = (&pending, a.wait) {
        if !a.json {
            eprintln!(
                "horde: waiting up to {secs} s for a person to answer request {} (`horde approve {}`)",
                &req.id[..8],
                &req.id[..8]
            );
        }
        let ledger = open_ledger()?;
        answered = approvals::wait(&ledger.conn, &req.id, Duration::from_secs(secs))?;
    }
    let verdict = match &answered {
        Some(r) if r.state == "granted" => Verdict::Allow,
        Some(_) => Verdict::Deny,
        None => decision.verdict,
    };
    print_check(
        &a,
        &subject,
        &decision,
        verdict,
        &used,
        pending.as_ref(),
        answered.as_ref(),
    )?;
    Ok(match verdict {
        Verdict::Allow => ExitCode::SUCCESS,
        Verdict::Deny => ExitCode::from(EXIT_DENIED),
        Verdict::Ask => ExitCode::from(EXIT_ASK),
    })
}

fn print_check(
    a: &CheckArgs,
    subject: &str,
    d: &Decision,
    verdict: Verdict,
    used: &[&Remembered],
    pending: Option<&approvals::Request>,
    answered: Option<&approvals::Request>,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if a.json {
        let j = json!({
            "verdict": verdict,
            "policy_verdict": d.verdict,
            "role": a.role,
            "tier": format!("T{}", d.tier),
            "action": a.what.action(),
            "subject": subject,
            "reasons": d.reasons,
            "commands": d.per_command.iter().map(|(c, v, rs)| json!({
                "command": c, "verdict": v, "reasons": rs,
            })).collect::<Vec<_>>(),
            "remembered": used,
            "request": pending,
            "answer": answered,
        });
        serde_json::to_writer_pretty(&mut out, &j)?;
        writeln!(out)?;
        return Ok(());
    }
    let paint = Paint(colour_enabled());
    let word = |v: Verdict| match v {
        Verdict::Allow => paint.green("allow"),
        Verdict::Deny => paint.red("deny "),
        Verdict::Ask => paint.yellow("ask  "),
    };
    writeln!(
        out,
        "{} {} {}  (role {}, tier T{})",
        word(verdict),
        a.what.action(),
        subject,
        a.role,
        d.tier
    )?;
    if d.per_command.is_empty() {
        for r in &d.reasons {
            writeln!(out, "  {}", paint.dim(&reason_line(r)))?;
        }
    } else {
        for (c, v, rs) in &d.per_command {
            writeln!(out, "  {} {c}", word(*v))?;
            for r in rs {
                writeln!(out, "        {}", paint.dim(&reason_line(r)))?;
            }
        }
    }
    for r in used {
        writeln!(out, "  {}", paint.dim(&reason_line(&remembered_reason(r))))?;
    }
    if let Some(p) = pending {
        writeln!(
            out,
            "Asked a person: request {} (expires {}). `horde approve {}` or `horde reject {} --reason …`",
            &p.id[..8],
            local_time(p.expires_at),
            &p.id[..8],
            &p.id[..8]
        )?;
    }
    if let Some(r) = answered {
        writeln!(
            out,
            "Answered: {} by {}{}",
            r.state,
            r.decided_by.as_deref().unwrap_or("?"),
            r.decision_reason
                .as_deref()
                .map(|s| format!(": {s}"))
                .unwrap_or_default()
        )?;
    } else if pending.is_some() && a.wait.is_some() {
        writeln!(out, "No answer in time; the request stays pending.")?;
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ApprovalsArgs {
    /// Also answered and expired requests.
    #[arg(long)]
    pub all: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn cmd_approvals(a: ApprovalsArgs) -> Result<ExitCode> {
    let ledger = open_ledger()?;
    let list: Vec<_> = approvals::all(&ledger.conn)?
        .into_iter()
        .filter(|r| a.all || r.state == "pending")
        .collect();
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &list)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        writeln!(
            out,
            "{}",
            if a.all {
                "No approval requests."
            } else {
                "No pending approval requests (`--all` shows answered ones)."
            }
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let paint = Paint(colour_enabled());
    for r in &list {
        let state = match r.state {
            "pending" => paint.yellow("pending"),
            "granted" => paint.green("granted"),
            "denied" => paint.red("denied "),
            s => paint.dim(s),
        };
        writeln!(
            out,
            "{} {} {} {:<10} {} {}",
            paint.yellow(&r.id[..8]),
            state,
            paint.dim(&local_time(r.requested_at)),
            r.role,
            r.action,
            r.subject
        )?;
        let mut detail = format!("         asked by {}", r.agent);
        if !r.reason.is_empty() {
            detail.push_str(&format!(" because {}", r.reason));
        }
        match r.state {
            "pending" => detail.push_str(&format!("; expires {}", local_time(r.expires_at))),
            "granted" | "denied" => {
                detail.push_str(&format!(
                    "; {} by {}",
                    r.state,
                    r.decided_by.as_deref().unwrap_or("?")
                ));
                if let Some(m) = &r.remembered {
                    detail.push_str(&format!(
                        "; remembered ({} for the {}): {}",
                        m.kind,
                        m.scope.as_str(),
                        m.pattern.replace('\n', " ; ")
                    ));
                }
            }
            _ => {}
        }
        writeln!(out, "{}", paint.dim(&detail))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct ApproveArgs {
    /// The request id (or a unique prefix), as `horde approvals` shows it.
    pub id: String,
    /// Remember the answer: the exact command, its prefix (`cargo test *`) or the program.
    #[arg(long, value_name = "HOW", value_parser = ["exact", "prefix", "program"])]
    pub remember: Option<String>,
    /// Where a remembered answer applies: the agent's session, or the whole repository.
    #[arg(long = "for", value_name = "SCOPE", value_parser = ["session", "repo"], default_value = "session", requires = "remember")]
    pub scope: String,
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RejectArgs {
    pub id: String,
    /// Why (the agent reads it).
    #[arg(long)]
    pub reason: String,
    #[arg(long)]
    pub json: bool,
}

fn who() -> String {
    std::env::var("HORDE_USER")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "human".into())
}

pub fn cmd_approve(a: ApproveArgs) -> Result<ExitCode> {
    let remember = match &a.remember {
        Some(k) => Some((
            k.parse::<RememberKind>()
                .map_err(|e| anyhow::anyhow!("--remember: {e}"))?,
            approvals::Scope::parse(&a.scope)?,
        )),
        None => None,
    };
    let store = open_store()?;
    let r = approvals::answer(
        &store,
        &a.id,
        &Answer {
            grant: true,
            who: who(),
            reason: a.reason.clone().unwrap_or_default(),
            remember,
        },
    )?;
    print_answer(&r, a.json)
}

pub fn cmd_reject(a: RejectArgs) -> Result<ExitCode> {
    if a.reason.trim().is_empty() {
        bail!("--reason must say why (the agent reads it)");
    }
    let store = open_store()?;
    let r = approvals::answer(
        &store,
        &a.id,
        &Answer {
            grant: false,
            who: who(),
            reason: a.reason.clone(),
            remember: None,
        },
    )?;
    print_answer(&r, a.json)
}

fn print_answer(r: &approvals::Request, json_out: bool) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if json_out {
        serde_json::to_writer_pretty(&mut out, r)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "{} {} {} {}", r.state, &r.id[..8], r.action, r.subject)?;
    if let Some(m) = &r.remembered {
        writeln!(
            out,
            "Remembered for the {} ({}): {}",
            m.scope.as_str(),
            m.kind,
            m.pattern.replace('\n', " ; ")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
