//! Decisions: manifests compiled into Cedar policies, and requests answered allow / deny / ask
//! with the rule and manifest line that decided.
//!
//! How a manifest becomes Cedar. Every manifest rule (one glob, argv pattern, host, model or
//! operation) is one Cedar policy, `permit` or `forbid`, on `resource in Rule::"ROLE/KEY/N"`,
//! built through Cedar's JSON (EST) form — never by formatting manifest text into policy text,
//! so no value written in a manifest can add or change a rule: a manifest value never enters a
//! policy at all, only the rule's position does. Globs and argv patterns are matched in Rust
//! (globset, [`ArgvPattern::matches`]); the request's resource entity gets as parents the rule
//! entities it matched, and Cedar decides which policies apply and which one wins. The principal
//! is `Agent::"ID"`, child of `Role::"ROLE"`, with attributes `tier` (long) and
//! `budget_exhausted` (bool); actions are `Action::"read" | "write" | "exec" | "net" | "model" |
//! "operation"`; resources are `Path`, `Command`, `Host`, `Model` and `Operation` entities.
//!
//! Semantics (Cedar's, plus asks):
//! - **Deny by default**: nothing permits → deny. **`forbid` wins** over any permit.
//! - `files.deny` forbids reading and writing; `commands.deny` forbids running.
//! - **Ask**: `commands.ask` and `approvals` are permits annotated `@ask("rule")`; an explicit
//!   ask outranks a plain allow (`git *` allowed and `git push *` asked → ask), as people expect
//!   of deny > ask > allow. Fallback asks (`@ask("fallback")`: unknown hosts at T2+, unlisted
//!   commands at T3+) only count when nothing else permits.
//! - **Tiers** (forbids with `unless { principal.tier >= N }`):
//!   T0 reads and uses models only; T1 may also write, run commands, reach listed hosts and
//!   request the operations its manifest lists for approval; T2: unlisted hosts ask instead of
//!   being denied; T3: unlisted commands ask instead of being denied; T4: may request the
//!   dangerous operations ([`DANGEROUS_OPERATIONS`]), still only with a person's approval.
//! - **Budget exhausted** → everything but reading is forbidden.
//! - Writes outside the worktree are forbidden; reads outside only by absolute `files.read`
//!   globs (see [`crate::paths`]). Commands run under `sudo`, `doas`, `su`, `pkexec` or
//!   `run0` are forbidden.
//! - A command line: every simple command is decided on its own, and so is every file it writes
//!   through a redirection (as a write). Any deny → deny; else any ask → ask; all allowed →
//!   allow. A line that cannot be parsed, or that runs code not known before it runs
//!   (`opaque`), asks; it is never allowed.
//! - A remembered answer (an [`ArgvPattern`]) turns an ask for a simple command it matches into
//!   allow; it never overrides a deny.
//!
//! Policy slicing: each role's policies are compiled into one Cedar policy set per action, and
//! for each request only the policies whose scope can hold are handed to Cedar — the role's
//! built-in policies for that action plus the rule policies whose `Rule` the resource is in.
//! The others would evaluate to false (their resource is not in their rule), so the decision
//! is the one the full set gives; the slices are cached by the set of matched rules.
//!
//! Memoised answers: the policies see nothing of a request but the resource's parents (the
//! matched rules), the action, the principal's role, `tier` and `budget_exhausted` — no agent
//! or resource id appears in any policy, and the context is empty. Cedar's answer is a pure
//! function of those, so it is kept per role and action, keyed by (matched rules, tier,
//! budget state), and reused; the matching in Rust runs on every request.
//! [`PolicySet::without_memo`] asks Cedar every time (the benchmark reports both).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy, PolicyId,
    RestrictedExpression,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::command::{self, ArgvPattern, SimpleCommand};
use crate::manifest::{self, HostPattern, Manifest, ManifestError, ModelPattern, PathGlob, Scope};
use crate::paths::{self, NormalPath, Worktree};

/// Operations only a T4 agent may even request (with a person's approval).
pub const DANGEROUS_OPERATIONS: [&str; 8] = [
    "deploy",
    "delete_branch",
    "force_push",
    "publish",
    "release",
    "rotate_secrets",
    "drop_database",
    "delete_repository",
];

/// Wrappers that raise privileges: a command under one of them is forbidden.
const PRIVILEGED_WRAPPERS: [&str; 5] = ["sudo", "doas", "su", "pkexec", "run0"];

/// Longest command line, host, model or operation accepted, in bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Most simple commands (plus redirections) decided in one command line.
pub const MAX_COMMANDS_PER_LINE: usize = 256;
/// Most cached policy slices, and most memoised answers, per role and action (beyond it that
/// cache is cleared).
pub const MAX_SLICE_CACHE: usize = 4096;

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
    Ask,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Ask => "ask",
        })
    }
}

/// One rule that determined a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// The manifest file, `default:ROLE`, `builtin` (tiers, budget, worktree), `default`
    /// (nothing permitted it), `parser`, or `remembered`.
    pub source: String,
    /// 1-based line in `source`; 0 when the source has no lines.
    pub line: u32,
    /// The rule: `commands.deny: rm -r *`, `files.write: src/**`, or a sentence for built-ins.
    pub rule: String,
    /// What this rule says about the request.
    pub effect: Verdict,
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    /// The rules that determined the verdict (for a command line, those of the simple commands
    /// that did).
    pub reasons: Vec<Reason>,
    /// The agent's tier when deciding.
    pub tier: u8,
    /// For a command line: each simple command (and each redirection, as `> FILE`) with its own
    /// verdict and reasons. Empty for other requests.
    pub per_command: Vec<(String, Verdict, Vec<Reason>)>,
}

/// An agent asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: String,
    pub role: String,
    /// 0–4.
    pub tier: u8,
    pub budget_exhausted: bool,
    /// The agent's context holds content the injection screener quarantined: whatever the
    /// manifest would allow (but reading) asks a person, and remembered answers do not apply.
    pub quarantined: bool,
}

/// A command to run: a shell line (`sh -c` text) or an argv run without a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandSpec {
    Shell(String),
    Argv(Vec<String>),
}

/// What an agent asks to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A path, relative to the worktree root or absolute.
    Read(String),
    Write(String),
    Exec(CommandSpec),
    /// A host name, `host:port`, or a URL.
    Net(String),
    Model(String),
    /// An operation name such as `git_push` or `deploy`.
    Operation(String),
}

#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("unknown role {0:?}: no manifest for it")]
    UnknownRole(String),
    #[error("tier {0} does not exist; tiers are T0 to T{max}", max = manifest::MAX_TIER)]
    BadTier(u8),
    #[error("bad path: {0}")]
    Path(#[from] paths::PathError),
    #[error("{what} of {len} bytes is longer than {MAX_REQUEST_BYTES}")]
    TooLong { what: &'static str, len: usize },
    #[error("{0:?} is not a host name")]
    BadHost(String),
    #[error("{0:?} is not an operation name (snake_case, such as git_push)")]
    BadOperation(String),
    #[error("cannot build the Cedar request: {0}")]
    Cedar(String),
    #[error("Cedar could not evaluate policy {policy}: {message}")]
    Evaluation { policy: String, message: String },
}

/// A manifest that validated but cannot be compiled (a bug rather than bad input, but still
/// reported as the manifest's error so nothing loads).
fn compile_error(m: &Manifest, key: &str, message: impl std::fmt::Display) -> ManifestError {
    ManifestError::Invalid {
        file: m.source.clone(),
        line: 0,
        column: 0,
        key: key.to_owned(),
        message: message.to_string(),
    }
}

// ---- Cedar vocabulary ------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Action {
    Read,
    Write,
    Exec,
    Net,
    Model,
    Operation,
}

const ACTIONS: [Action; 6] = [
    Action::Read,
    Action::Write,
    Action::Exec,
    Action::Net,
    Action::Model,
    Action::Operation,
];

impl Action {
    fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Exec => "exec",
            Self::Net => "net",
            Self::Model => "model",
            Self::Operation => "operation",
        }
    }

    /// The entity type of this action's resources.
    fn resource_type(self) -> &'static str {
        match self {
            Self::Read | Self::Write => "Path",
            Self::Exec => "Command",
            Self::Net => "Host",
            Self::Model => "Model",
            Self::Operation => "Operation",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

fn type_name(name: &str) -> EntityTypeName {
    name.parse()
        .expect("entity type names used here are fixed identifiers")
}

fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

fn entity_json(ty: &str, id: &str) -> Value {
    json!({ "type": ty, "id": id })
}

/// `principal.tier >= n` in Cedar's JSON expression form.
fn tier_at_least(n: u8) -> Value {
    json!({ ">=": {
        "left": { ".": { "left": { "Var": "principal" }, "attr": "tier" } },
        "right": { "Value": n }
    }})
}

/// How a permit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Permit,
    Forbid,
    /// An explicit ask: outranks plain permits.
    AskRule,
    /// Asks only when nothing else permits.
    AskFallback,
}

struct PolicySpec {
    id: String,
    kind: Kind,
    actions: Vec<Action>,
    /// Restrict to this role's agents.
    role: Option<String>,
    /// `resource in Rule::"…"`; `None` → any resource.
    rule: Option<String>,
    /// `(when?, body)`.
    condition: Option<(bool, Value)>,
    reason: Reason,
}

impl PolicySpec {
    fn to_json(&self) -> Value {
        let effect = if self.kind == Kind::Forbid {
            "forbid"
        } else {
            "permit"
        };
        let principal = match &self.role {
            Some(r) => json!({ "op": "in", "entity": entity_json("Role", r) }),
            None => json!({ "op": "All" }),
        };
        let action = match self.actions.as_slice() {
            [one] => json!({ "op": "==", "entity": entity_json("Action", one.name()) }),
            many => json!({
                "op": "in",
                "entities": many.iter().map(|a| entity_json("Action", a.name())).collect::<Vec<_>>()
            }),
        };
        let resource = match &self.rule {
            Some(r) => json!({ "op": "in", "entity": entity_json("Rule", r) }),
            None => json!({ "op": "All" }),
        };
        let conditions = match &self.condition {
            Some((when, body)) => {
                json!([{ "kind": if *when { "when" } else { "unless" }, "body": body }])
            }
            None => json!([]),
        };
        let mut annotations = serde_json::Map::new();
        match self.kind {
            Kind::AskRule => {
                annotations.insert("ask".into(), json!("rule"));
            }
            Kind::AskFallback => {
                annotations.insert("ask".into(), json!("fallback"));
            }
            _ => {}
        }
        json!({
            "effect": effect,
            "principal": principal,
            "action": action,
            "resource": resource,
            "conditions": conditions,
            "annotations": annotations,
        })
    }
}

fn builtin(rule: &str, effect: Verdict) -> Reason {
    Reason {
        source: "builtin".into(),
        line: 0,
        rule: rule.into(),
        effect,
    }
}

const RULE_OUTSIDE: &str = "builtin/outside-worktree";
const RULE_DANGEROUS: &str = "builtin/dangerous-operation";
const RULE_PRIVILEGED: &str = "builtin/privileged";

/// The policies every role has, whatever its manifest says.
fn builtin_policies() -> Vec<PolicySpec> {
    let gate = |action: Action, tier: u8, what: &str| PolicySpec {
        id: format!("builtin/tier/{}", action.name()),
        kind: Kind::Forbid,
        actions: vec![action],
        role: None,
        rule: None,
        condition: Some((false, tier_at_least(tier))),
        reason: builtin(
            &format!("{what} needs tier T{tier} or higher"),
            Verdict::Deny,
        ),
    };
    vec![
        gate(Action::Write, 1, "writing files"),
        gate(Action::Exec, 1, "running commands"),
        gate(Action::Net, 1, "network access"),
        gate(Action::Operation, 1, "requesting operations"),
        PolicySpec {
            id: "builtin/tier/dangerous-operation".into(),
            kind: Kind::Forbid,
            actions: vec![Action::Operation],
            role: None,
            rule: Some(RULE_DANGEROUS.into()),
            condition: Some((false, tier_at_least(4))),
            reason: builtin("dangerous operations need tier T4", Verdict::Deny),
        },
        PolicySpec {
            id: "builtin/budget-exhausted".into(),
            kind: Kind::Forbid,
            actions: vec![
                Action::Write,
                Action::Exec,
                Action::Net,
                Action::Model,
                Action::Operation,
            ],
            role: None,
            rule: None,
            condition: Some((
                true,
                json!({ ".": { "left": { "Var": "principal" }, "attr": "budget_exhausted" } }),
            )),
            reason: builtin("budget exhausted: only reading is allowed", Verdict::Deny),
        },
        PolicySpec {
            id: RULE_OUTSIDE.into(),
            kind: Kind::Forbid,
            actions: vec![Action::Write],
            role: None,
            rule: Some(RULE_OUTSIDE.into()),
            condition: None,
            reason: builtin("no writes outside the worktree", Verdict::Deny),
        },
        PolicySpec {
            id: RULE_PRIVILEGED.into(),
            kind: Kind::Forbid,
            actions: vec![Action::Exec],
            role: None,
            rule: Some(RULE_PRIVILEGED.into()),
            condition: None,
            reason: builtin(
                "no commands under sudo, doas, su, pkexec or run0",
                Verdict::Deny,
            ),
        },
        PolicySpec {
            id: "builtin/unknown-host".into(),
            kind: Kind::AskFallback,
            actions: vec![Action::Net],
            role: None,
            rule: None,
            condition: Some((true, tier_at_least(2))),
            reason: builtin("hosts not in network.allow ask from tier T2", Verdict::Ask),
        },
        PolicySpec {
            id: "builtin/unknown-command".into(),
            kind: Kind::AskFallback,
            actions: vec![Action::Exec],
            role: None,
            rule: Some(RULE_UNLISTED.into()),
            condition: Some((true, tier_at_least(3))),
            reason: builtin(
                "commands not in the manifest ask from tier T3",
                Verdict::Ask,
            ),
        },
    ]
}

/// Every simple command is in this rule, so the fallback ask can be sliced like the others.
const RULE_UNLISTED: &str = "builtin/any-command";

// ---- compiled roles -------------------------------------------------------------------------

/// Path globs of one list, split by kind: relative ones match inside paths, absolute ones
/// outside paths.
struct GlobIndex {
    relative: globset::GlobSet,
    relative_rules: Vec<usize>,
    absolute: globset::GlobSet,
    absolute_rules: Vec<usize>,
}

impl GlobIndex {
    fn build(rules: &[(PathGlob, usize)]) -> Result<Self, globset::Error> {
        let mut rel = globset::GlobSetBuilder::new();
        let mut abs = globset::GlobSetBuilder::new();
        let (mut relative_rules, mut absolute_rules) = (Vec::new(), Vec::new());
        for (g, rule) in rules {
            if g.absolute {
                abs.add(g.glob.clone());
                absolute_rules.push(*rule);
            } else {
                rel.add(g.glob.clone());
                relative_rules.push(*rule);
            }
        }
        Ok(Self {
            relative: rel.build()?,
            relative_rules,
            absolute: abs.build()?,
            absolute_rules,
        })
    }

    /// Rules matching `path`. `relative_outside`: also try relative globs on an outside path
    /// (used for deny lists, so `**/.env*` still catches `/elsewhere/.env`).
    fn matches(
        &self,
        path: &NormalPath,
        relative_outside: bool,
        out: &mut Vec<usize>,
        scratch: &mut Vec<usize>,
    ) {
        match path {
            NormalPath::Inside(rel) => {
                self.relative.matches_into(rel.as_str(), scratch);
                out.extend(scratch.iter().map(|i| self.relative_rules[*i]));
            }
            NormalPath::Outside(abs) => {
                self.absolute.matches_into(abs.as_str(), scratch);
                out.extend(scratch.iter().map(|i| self.absolute_rules[*i]));
                if relative_outside {
                    let tail = abs.trim_start_matches("../").trim_start_matches('/');
                    self.relative.matches_into(tail, scratch);
                    out.extend(scratch.iter().map(|i| self.relative_rules[*i]));
                }
            }
        }
    }
}

/// Argv patterns bucketed by the program their first word names, so a command is only tried
/// against patterns for its program (and the few whose first word is itself a glob).
#[derive(Default)]
struct CommandIndex {
    by_program: HashMap<String, Vec<(ArgvPattern, usize)>>,
    generic: Vec<(ArgvPattern, usize)>,
}

impl CommandIndex {
    fn add(&mut self, pattern: ArgvPattern, rule: usize) {
        let first = pattern.as_str().split_whitespace().next().unwrap_or("");
        let program = first.rsplit('/').next().unwrap_or(first);
        if program.is_empty() || program.contains(['*', '?', '[', '{', '\\', '$', '=']) {
            self.generic.push((pattern, rule));
        } else {
            self.by_program
                .entry(program.to_owned())
                .or_default()
                .push((pattern, rule));
        }
    }

    fn matches(&self, cmd: &SimpleCommand, out: &mut Vec<usize>) {
        let names = std::iter::once(cmd.name()).chain(
            cmd.wrappers
                .iter()
                .map(|w| w.rsplit('/').next().unwrap_or(w)),
        );
        for name in names {
            if let Some(list) = self.by_program.get(name) {
                out.extend(list.iter().filter(|(p, _)| p.matches(cmd)).map(|(_, r)| *r));
            }
        }
        out.extend(
            self.generic
                .iter()
                .filter(|(p, _)| p.matches(cmd))
                .map(|(_, r)| *r),
        );
    }
}

/// One compiled policy with what it means.
struct Compiled {
    policy: Policy,
    kind: Kind,
    reason: Reason,
}

/// Policies of one action, and slices of them built on demand.
struct ActionSet {
    /// Indices into `CompiledRole::policies` that always go to Cedar.
    always: Vec<usize>,
    /// Rule index → the policies on it for this action.
    by_rule: HashMap<usize, Vec<usize>>,
    /// Matched rules (sorted) → the Cedar policy set to evaluate.
    cache: RwLock<HashMap<Vec<usize>, Arc<cedar_policy::PolicySet>>>,
    /// Cedar's answers, by everything the policies can see (see "Memoised answers").
    decisions: RwLock<HashMap<DecisionKey, (Verdict, Vec<Reason>)>>,
}

/// What a compiled policy can observe of a request: the matched rules (the resource's
/// parents), the principal's tier and budget state. Role and action are fixed per
/// [`ActionSet`]; agent and resource ids appear in no policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DecisionKey {
    rules: Vec<usize>,
    tier: u8,
    budget_exhausted: bool,
}

struct CompiledRole {
    manifest: Manifest,
    policies: Vec<Compiled>,
    id_to_policy: HashMap<PolicyId, usize>,
    /// `Rule` entity uids by rule index.
    rule_uids: Vec<EntityUid>,
    actions: Vec<ActionSet>,
    read: GlobIndex,
    write: GlobIndex,
    deny: GlobIndex,
    commands: CommandIndex,
    hosts: Vec<(HostPattern, usize)>,
    models: Vec<(ModelPattern, usize)>,
    operations: HashMap<String, usize>,
    /// Built-in rule entities, by their uid string.
    builtin_rules: HashMap<&'static str, usize>,
}

/// Every role's manifest compiled into Cedar, with the worktree paths are resolved against.
pub struct PolicySet {
    roles: HashMap<String, CompiledRole>,
    worktree: Option<Worktree>,
    authorizer: Authorizer,
    memoise: bool,
    types: Types,
}

struct Types {
    agent: EntityTypeName,
    role: EntityTypeName,
    action: EntityTypeName,
    resources: [EntityTypeName; 6],
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut roles: Vec<&String> = self.roles.keys().collect();
        roles.sort();
        f.debug_struct("PolicySet")
            .field("roles", &roles)
            .field("worktree", &self.worktree)
            .finish()
    }
}

impl PolicySet {
    /// Every manifest in `scope` compiled; paths are resolved against `scope.repo_root` (see
    /// [`PolicySet::with_worktree`] for an agent's own worktree).
    pub fn load(scope: &Scope) -> Result<Self, ManifestError> {
        let manifests = manifest::load_all(scope)?;
        let mut set = Self::from_manifests(manifests)?;
        if let Some(root) = &scope.repo_root {
            set.worktree = Some(Worktree::new(root));
        }
        Ok(set)
    }

    /// Compiles the given manifests (one per role); no worktree until
    /// [`PolicySet::with_worktree`].
    pub fn from_manifests(manifests: Vec<Manifest>) -> Result<Self, ManifestError> {
        let types = Types {
            agent: type_name("Agent"),
            role: type_name("Role"),
            action: type_name("Action"),
            resources: ACTIONS.map(|a| type_name(a.resource_type())),
        };
        let mut roles = HashMap::new();
        for m in manifests {
            if roles.contains_key(&m.role) {
                return Err(compile_error(
                    &m,
                    "role",
                    format!("role {:?} has two manifests", m.role),
                ));
            }
            let role = m.role.clone();
            roles.insert(role, compile_role(m)?);
        }
        Ok(Self {
            roles,
            worktree: None,
            authorizer: Authorizer::new(),
            memoise: true,
            types,
        })
    }

    /// Resolves request paths against `root` (relative paths are relative to it; links are
    /// followed on disk). Without a worktree, paths are normalised lexically only.
    pub fn with_worktree(mut self, root: &std::path::Path) -> Self {
        self.worktree = Some(Worktree::new(root));
        self
    }

    /// Asks Cedar on every request instead of reusing its answer for the same matched rules,
    /// tier and budget state (for measuring; the answers are the same).
    pub fn without_memo(mut self) -> Self {
        self.memoise = false;
        self
    }

    /// The manifest a role was compiled from.
    pub fn manifest(&self, role: &str) -> Option<&Manifest> {
        self.roles.get(role).map(|r| &r.manifest)
    }

    /// The roles compiled, sorted.
    pub fn roles(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.roles.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// The Cedar policies of a role, as Cedar policy text (for `horde policy show`), each
    /// preceded by a comment naming its manifest line.
    pub fn cedar_text(&self, role: &str) -> Option<String> {
        let r = self.roles.get(role)?;
        let mut out = String::new();
        for c in &r.policies {
            out.push_str(&format!(
                "// {}:{} {}\n{}\n\n",
                c.reason.source, c.reason.line, c.reason.rule, c.policy
            ));
        }
        Some(out)
    }

    /// Decides `request` for `agent`. Unknown role or malformed request → an error (which a
    /// caller must treat as deny).
    pub fn decide(&self, agent: &Agent, request: &Request) -> Result<Decision, DecideError> {
        self.decide_with(agent, request, &[])
    }

    /// As [`PolicySet::decide`], with remembered answers: a simple command that would ask and
    /// matches one of `remembered` is allowed. A deny stays a deny.
    pub fn decide_with(
        &self,
        agent: &Agent,
        request: &Request,
        remembered: &[ArgvPattern],
    ) -> Result<Decision, DecideError> {
        let role = self
            .roles
            .get(&agent.role)
            .ok_or_else(|| DecideError::UnknownRole(agent.role.clone()))?;
        if agent.tier > manifest::MAX_TIER {
            return Err(DecideError::BadTier(agent.tier));
        }
        let cx = Cx {
            set: self,
            role,
            agent,
            principal: std::cell::OnceCell::new(),
        };
        // Under quarantine a remembered "yes" is not enough: the content may be steering.
        let remembered = if agent.quarantined {
            &[][..]
        } else {
            remembered
        };
        let decision = self.decide_unquarantined(&cx, agent, request, remembered)?;
        Ok(
            if agent.quarantined && !matches!(request, Request::Read(_)) {
                quarantine(decision)
            } else {
                decision
            },
        )
    }

    fn decide_unquarantined(
        &self,
        cx: &Cx<'_>,
        agent: &Agent,
        request: &Request,
        remembered: &[ArgvPattern],
    ) -> Result<Decision, DecideError> {
        let role = cx.role;
        let single = |verdict_reasons: (Verdict, Vec<Reason>)| Decision {
            verdict: verdict_reasons.0,
            reasons: verdict_reasons.1,
            tier: agent.tier,
            per_command: Vec::new(),
        };
        match request {
            Request::Read(p) => Ok(single(cx.path(Action::Read, p)?)),
            Request::Write(p) => Ok(single(cx.path(Action::Write, p)?)),
            Request::Net(h) => {
                let host = normalize_host(h)?;
                let mut rules = Vec::new();
                rules.extend(
                    role.hosts
                        .iter()
                        .filter(|(p, _)| p.matches(&host))
                        .map(|(_, r)| *r),
                );
                Ok(single(cx.authorize(Action::Net, &host, rules)?))
            }
            Request::Model(m) => {
                check_len("model", m)?;
                let rules = role
                    .models
                    .iter()
                    .filter(|(p, _)| p.matches(m))
                    .map(|(_, r)| *r)
                    .collect();
                Ok(single(cx.authorize(Action::Model, m, rules)?))
            }
            Request::Operation(op) => {
                check_len("operation", op)?;
                let valid = !op.is_empty()
                    && op
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !valid {
                    return Err(DecideError::BadOperation(op.clone()));
                }
                let mut rules: Vec<usize> = role.operations.get(op).copied().into_iter().collect();
                if DANGEROUS_OPERATIONS.contains(&op.as_str()) {
                    rules.push(role.builtin_rules[RULE_DANGEROUS]);
                }
                Ok(single(cx.authorize(Action::Operation, op, rules)?))
            }
            Request::Exec(spec) => cx.exec(spec, remembered, agent.tier),
        }
    }

    fn principal(&self, agent: &Agent) -> Result<Entity, DecideError> {
        let attrs = HashMap::from([
            (
                "tier".to_owned(),
                RestrictedExpression::new_long(i64::from(agent.tier)),
            ),
            (
                "budget_exhausted".to_owned(),
                RestrictedExpression::new_bool(agent.budget_exhausted),
            ),
        ]);
        let parents = HashSet::from([uid(&self.types.role, &agent.role)]);
        Entity::new(uid(&self.types.agent, &agent.id), attrs, parents)
            .map_err(|e| DecideError::Cedar(e.to_string()))
    }
}

/// The rule that asks a person while an agent's context is quarantined.
pub const QUARANTINE_RULE: &str = "the agent has read quarantined content (likely prompt injection): a person approves what it does next";

/// An allow becomes an ask (per command too); a deny stays a deny.
fn quarantine(mut d: Decision) -> Decision {
    let ask = |v: &mut Verdict, reasons: &mut Vec<Reason>| {
        if *v == Verdict::Allow {
            *v = Verdict::Ask;
            reasons.push(builtin(QUARANTINE_RULE, Verdict::Ask));
        }
    };
    ask(&mut d.verdict, &mut d.reasons);
    for (_, v, reasons) in &mut d.per_command {
        ask(v, reasons);
    }
    d
}

fn check_len(what: &'static str, s: &str) -> Result<(), DecideError> {
    if s.len() > MAX_REQUEST_BYTES {
        return Err(DecideError::TooLong { what, len: s.len() });
    }
    Ok(())
}

/// `https://user@Api.GitHub.com:443/x` → `api.github.com`.
fn normalize_host(raw: &str) -> Result<String, DecideError> {
    check_len("host", raw)?;
    let bad = || DecideError::BadHost(raw.to_owned());
    let s = raw.trim();
    let s = s.split_once("://").map_or(s, |(_, rest)| rest);
    let s = s.split(['/', '?', '#']).next().unwrap_or("");
    let s = s.rsplit_once('@').map_or(s, |(_, host)| host);
    let s = match s.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => s,
    };
    let host = s.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(bad());
    }
    Ok(host)
}

fn compile_role(m: Manifest) -> Result<CompiledRole, ManifestError> {
    let role = m.role.clone();
    let mut specs: Vec<PolicySpec> = Vec::new();
    // Rule index → rule entity id, shared by policies and matchers.
    let mut rule_ids: Vec<String> = Vec::new();
    let mut new_rule = |id: String| {
        rule_ids.push(id);
        rule_ids.len() - 1
    };
    let mut rule_of_spec: Vec<Option<usize>> = Vec::new();

    let add = |specs: &mut Vec<PolicySpec>,
               rule_of_spec: &mut Vec<Option<usize>>,
               rule: usize,
               rule_id: &str,
               key: &str,
               text: &str,
               line: u32,
               kind: Kind,
               actions: Vec<Action>| {
        let effect = match kind {
            Kind::Permit => Verdict::Allow,
            Kind::Forbid => Verdict::Deny,
            Kind::AskRule | Kind::AskFallback => Verdict::Ask,
        };
        specs.push(PolicySpec {
            id: rule_id.to_owned(),
            kind,
            actions,
            role: Some(role.clone()),
            rule: Some(rule_id.to_owned()),
            condition: None,
            reason: Reason {
                source: m.source.clone(),
                line,
                rule: format!("{key}: {text}"),
                effect,
            },
        });
        rule_of_spec.push(Some(rule));
    };

    let mut globs = |list: &[manifest::Rule<PathGlob>],
                     key: &str,
                     kind: Kind,
                     actions: &[Action],
                     specs: &mut Vec<PolicySpec>,
                     rule_of_spec: &mut Vec<Option<usize>>|
     -> Vec<(PathGlob, usize)> {
        list.iter()
            .enumerate()
            .map(|(i, r)| {
                let id = format!("{}/{key}/{i}", m.role);
                let idx = new_rule(id.clone());
                add(
                    specs,
                    rule_of_spec,
                    idx,
                    &id,
                    key,
                    &r.text,
                    r.line,
                    kind,
                    actions.to_vec(),
                );
                (r.value.clone(), idx)
            })
            .collect()
    };
    let read = globs(
        &m.files.read,
        "files.read",
        Kind::Permit,
        &[Action::Read],
        &mut specs,
        &mut rule_of_spec,
    );
    let write = globs(
        &m.files.write,
        "files.write",
        Kind::Permit,
        &[Action::Write],
        &mut specs,
        &mut rule_of_spec,
    );
    let deny = globs(
        &m.files.deny,
        "files.deny",
        Kind::Forbid,
        &[Action::Read, Action::Write],
        &mut specs,
        &mut rule_of_spec,
    );

    let mut commands = CommandIndex::default();
    for (key, list, kind) in [
        ("commands.allow", &m.commands.allow, Kind::Permit),
        ("commands.ask", &m.commands.ask, Kind::AskRule),
        ("commands.deny", &m.commands.deny, Kind::Forbid),
    ] {
        for (i, r) in list.iter().enumerate() {
            let id = format!("{}/{key}/{i}", m.role);
            let idx = new_rule(id.clone());
            add(
                &mut specs,
                &mut rule_of_spec,
                idx,
                &id,
                key,
                &r.text,
                r.line,
                kind,
                vec![Action::Exec],
            );
            commands.add(r.value.clone(), idx);
        }
    }
    let mut hosts = Vec::new();
    for (i, r) in m.network.iter().enumerate() {
        let id = format!("{}/network.allow/{i}", m.role);
        let idx = new_rule(id.clone());
        add(
            &mut specs,
            &mut rule_of_spec,
            idx,
            &id,
            "network.allow",
            &r.text,
            r.line,
            Kind::Permit,
            vec![Action::Net],
        );
        hosts.push((r.value.clone(), idx));
    }
    let mut models = Vec::new();
    for (i, r) in m.models.iter().enumerate() {
        let id = format!("{}/models.allow/{i}", m.role);
        let idx = new_rule(id.clone());
        add(
            &mut specs,
            &mut rule_of_spec,
            idx,
            &id,
            "models.allow",
            &r.text,
            r.line,
            Kind::Permit,
            vec![Action::Model],
        );
        models.push((r.value.clone(), idx));
    }
    let mut operations = HashMap::new();
    for (i, r) in m.approvals.iter().enumerate() {
        let id = format!("{}/approvals/{i}", m.role);
        let idx = new_rule(id.clone());
        add(
            &mut specs,
            &mut rule_of_spec,
            idx,
            &id,
            "approvals",
            &r.text,
            r.line,
            Kind::AskRule,
            vec![Action::Operation],
        );
        operations.insert(r.value.clone(), idx);
    }

    let mut builtin_rules = HashMap::new();
    for b in [RULE_OUTSIDE, RULE_DANGEROUS, RULE_PRIVILEGED, RULE_UNLISTED] {
        builtin_rules.insert(b, new_rule(b.to_owned()));
    }
    for spec in builtin_policies() {
        let rule = spec.rule.as_deref().map(|r| builtin_rules[r]);
        rule_of_spec.push(rule);
        specs.push(spec);
    }

    let rule_ty = type_name("Rule");
    let rule_uids = rule_ids.iter().map(|id| uid(&rule_ty, id)).collect();

    let mut policies = Vec::with_capacity(specs.len());
    let mut id_to_policy = HashMap::new();
    let mut actions: Vec<ActionSet> = ACTIONS
        .iter()
        .map(|_| ActionSet {
            always: Vec::new(),
            by_rule: HashMap::new(),
            cache: RwLock::new(HashMap::new()),
            decisions: RwLock::new(HashMap::new()),
        })
        .collect();
    for (spec, rule) in specs.into_iter().zip(rule_of_spec) {
        let pid = PolicyId::new(&spec.id);
        let policy = Policy::from_json(Some(pid.clone()), spec.to_json()).map_err(|e| {
            compile_error(
                &m,
                "(cedar)",
                format!("cannot compile {} into Cedar: {e}", spec.id),
            )
        })?;
        let index = policies.len();
        for a in &spec.actions {
            let set = &mut actions[a.index()];
            match rule {
                Some(r) => set.by_rule.entry(r).or_default().push(index),
                None => set.always.push(index),
            }
        }
        id_to_policy.insert(pid, index);
        policies.push(Compiled {
            policy,
            kind: spec.kind,
            reason: spec.reason,
        });
    }

    let globs_err = |e: globset::Error| compile_error(&m, "files", e);
    Ok(CompiledRole {
        read: GlobIndex::build(&read).map_err(globs_err)?,
        write: GlobIndex::build(&write).map_err(globs_err)?,
        deny: GlobIndex::build(&deny).map_err(globs_err)?,
        manifest: m,
        policies,
        id_to_policy,
        rule_uids,
        actions,
        commands,
        hosts,
        models,
        operations,
        builtin_rules,
    })
}

// ---- deciding -------------------------------------------------------------------------------

struct Cx<'a> {
    set: &'a PolicySet,
    role: &'a CompiledRole,
    agent: &'a Agent,
    /// Built on the first Cedar call of this decision (memoised answers need none).
    principal: std::cell::OnceCell<Entity>,
}

impl Cx<'_> {
    fn path(&self, action: Action, raw: &str) -> Result<(Verdict, Vec<Reason>), DecideError> {
        let path = match &self.set.worktree {
            Some(wt) => wt.normalize(raw)?,
            None => paths::normalize_lexical(raw)?,
        };
        let mut rules = Vec::new();
        let mut scratch = Vec::new();
        let role = self.role;
        match action {
            Action::Read => role.read.matches(&path, false, &mut rules, &mut scratch),
            _ => role.write.matches(&path, false, &mut rules, &mut scratch),
        }
        role.deny.matches(&path, true, &mut rules, &mut scratch);
        if matches!(path, NormalPath::Outside(_)) {
            rules.push(role.builtin_rules[RULE_OUTSIDE]);
        }
        self.authorize(action, path.as_str(), rules)
    }

    /// Asks Cedar about one resource that is in the given rules.
    fn authorize(
        &self,
        action: Action,
        resource_id: &str,
        mut rules: Vec<usize>,
    ) -> Result<(Verdict, Vec<Reason>), DecideError> {
        rules.sort_unstable();
        rules.dedup();
        let set = &self.set;
        let role = self.role;
        let key = DecisionKey {
            rules,
            tier: self.agent.tier,
            budget_exhausted: self.agent.budget_exhausted,
        };
        let aset = &role.actions[action.index()];
        if set.memoise
            && let Ok(memo) = aset.decisions.read()
            && let Some(answer) = memo.get(&key)
        {
            return Ok(answer.clone());
        }
        let principal = match self.principal.get() {
            Some(p) => p.clone(),
            None => {
                let p = set.principal(self.agent)?;
                let _ = self.principal.set(p.clone());
                p
            }
        };
        let resource_uid = uid(&set.types.resources[action.index()], resource_id);
        let parents: HashSet<EntityUid> = key
            .rules
            .iter()
            .map(|r| role.rule_uids[*r].clone())
            .collect();
        let resource = Entity::new_no_attrs(resource_uid.clone(), parents);
        let entities = Entities::from_entities([principal, resource], None)
            .map_err(|e| DecideError::Cedar(e.to_string()))?;
        let action_uid = uid(&set.types.action, action.name());
        let request = cedar_policy::Request::new(
            uid(&set.types.agent, &self.agent.id),
            action_uid,
            resource_uid,
            Context::empty(),
            None,
        )
        .map_err(|e| DecideError::Cedar(e.to_string()))?;
        let policies = self.slice(action, &key.rules)?;
        let response = set.authorizer.is_authorized(&request, &policies, &entities);
        let diagnostics = response.diagnostics();
        if let Some(e) = diagnostics.errors().next() {
            // A policy that errs is skipped by Cedar; a skipped forbid could turn into an
            // allow, so the decision cannot be trusted.
            let cedar_policy::AuthorizationError::PolicyEvaluationError(pe) = e;
            return Err(DecideError::Evaluation {
                policy: pe.policy_id().to_string(),
                message: pe.inner().to_string(),
            });
        }
        // Cedar reports a set; manifest order makes explanations stable.
        let mut ids: Vec<usize> = diagnostics
            .reason()
            .filter_map(|id| role.id_to_policy.get(id).copied())
            .collect();
        ids.sort_unstable();
        let determining: Vec<&Compiled> = ids.iter().map(|i| &role.policies[*i]).collect();
        let answer = verdict(response.decision(), determining);
        if set.memoise
            && let Ok(mut memo) = aset.decisions.write()
        {
            if memo.len() >= MAX_SLICE_CACHE {
                memo.clear();
            }
            memo.insert(key, answer.clone());
        }
        Ok(answer)
    }

    /// The Cedar policy set for `action` and these matched rules: the action's built-ins plus
    /// the policies on the matched rules (see "Policy slicing" in the module docs).
    fn slice(
        &self,
        action: Action,
        rules: &[usize],
    ) -> Result<Arc<cedar_policy::PolicySet>, DecideError> {
        let aset = &self.role.actions[action.index()];
        if let Ok(cache) = aset.cache.read()
            && let Some(p) = cache.get(rules)
        {
            return Ok(Arc::clone(p));
        }
        let mut set = cedar_policy::PolicySet::new();
        let chosen = aset
            .always
            .iter()
            .chain(rules.iter().filter_map(|r| aset.by_rule.get(r)).flatten());
        for i in chosen {
            set.add(self.role.policies[*i].policy.clone())
                .map_err(|e| DecideError::Cedar(e.to_string()))?;
        }
        let set = Arc::new(set);
        if let Ok(mut cache) = aset.cache.write() {
            if cache.len() >= MAX_SLICE_CACHE {
                cache.clear();
            }
            cache.insert(rules.to_vec(), Arc::clone(&set));
        }
        Ok(set)
    }

    fn exec(
        &self,
        spec: &CommandSpec,
        remembered: &[ArgvPattern],
        tier: u8,
    ) -> Result<Decision, DecideError> {
        let parsed = match spec {
            CommandSpec::Shell(line) => {
                check_len("command line", line)?;
                command::parse(line)
            }
            CommandSpec::Argv(argv) => {
                let len: usize = argv.iter().map(|a| a.len() + 1).sum();
                if len > MAX_REQUEST_BYTES {
                    return Err(DecideError::TooLong {
                        what: "command line",
                        len,
                    });
                }
                command::parse_argv(argv)
            }
        };
        let line = match parsed {
            Ok(l) => l,
            Err(e) => {
                let reason = Reason {
                    source: "parser".into(),
                    line: 0,
                    rule: format!("{e}: what cannot be parsed is never allowed"),
                    effect: Verdict::Ask,
                };
                return Ok(Decision {
                    verdict: Verdict::Ask,
                    reasons: vec![reason],
                    tier,
                    per_command: Vec::new(),
                });
            }
        };
        self.line(&line, remembered, tier)
    }

    /// Decides a parsed command line: each simple command and each redirection on its own.
    fn line(
        &self,
        line: &command::CommandLine,
        remembered: &[ArgvPattern],
        tier: u8,
    ) -> Result<Decision, DecideError> {
        let mut per_command: Vec<(String, Verdict, Vec<Reason>)> = Vec::new();
        let steps =
            line.commands.len() + line.commands.iter().map(|c| c.writes.len()).sum::<usize>();
        if steps > MAX_COMMANDS_PER_LINE {
            per_command.push((
                format!("{steps} commands and redirections"),
                Verdict::Ask,
                vec![Reason {
                    source: "parser".into(),
                    line: 0,
                    rule: format!("more than {MAX_COMMANDS_PER_LINE} commands in one line"),
                    effect: Verdict::Ask,
                }],
            ));
        } else {
            for cmd in &line.commands {
                let (verdict, reasons) = self.simple_command(cmd, remembered)?;
                per_command.push((render(cmd), verdict, reasons));
                for w in &cmd.writes {
                    let (verdict, reasons) = self.path(Action::Write, w)?;
                    per_command.push((format!("> {w}"), verdict, reasons));
                }
            }
        }
        for why in &line.opaque {
            per_command.push((
                why.clone(),
                Verdict::Ask,
                vec![Reason {
                    source: "parser".into(),
                    line: 0,
                    rule: format!("runs code not known before it runs ({why})"),
                    effect: Verdict::Ask,
                }],
            ));
        }
        if per_command.is_empty() {
            per_command.push((
                String::new(),
                Verdict::Ask,
                vec![Reason {
                    source: "parser".into(),
                    line: 0,
                    rule: "no command found in the line".into(),
                    effect: Verdict::Ask,
                }],
            ));
        }
        let verdict = if per_command.iter().any(|(_, v, _)| *v == Verdict::Deny) {
            Verdict::Deny
        } else if per_command.iter().any(|(_, v, _)| *v == Verdict::Ask) {
            Verdict::Ask
        } else {
            Verdict::Allow
        };
        let mut reasons: Vec<Reason> = Vec::new();
        for (_, v, rs) in &per_command {
            if *v == verdict {
                for r in rs {
                    if !reasons.contains(r) {
                        reasons.push(r.clone());
                    }
                }
            }
        }
        Ok(Decision {
            verdict,
            reasons,
            tier,
            per_command,
        })
    }

    fn simple_command(
        &self,
        cmd: &SimpleCommand,
        remembered: &[ArgvPattern],
    ) -> Result<(Verdict, Vec<Reason>), DecideError> {
        let role = self.role;
        let mut rules = vec![role.builtin_rules[RULE_UNLISTED]];
        role.commands.matches(cmd, &mut rules);
        if cmd.wrappers.iter().any(|w| {
            let name = w.rsplit('/').next().unwrap_or(w);
            PRIVILEGED_WRAPPERS.contains(&name)
        }) {
            rules.push(role.builtin_rules[RULE_PRIVILEGED]);
        }
        let (verdict, reasons) = self.authorize(Action::Exec, &render(cmd), rules)?;
        if verdict == Verdict::Ask
            && let Some(p) = remembered.iter().find(|p| p.matches(cmd))
        {
            return Ok((
                Verdict::Allow,
                vec![Reason {
                    source: "remembered".into(),
                    line: 0,
                    rule: p.as_str().to_owned(),
                    effect: Verdict::Allow,
                }],
            ));
        }
        Ok((verdict, reasons))
    }
}

/// Cedar's decision and determining policies → a verdict with its reasons.
fn verdict(
    decision: cedar_policy::Decision,
    determining: Vec<&Compiled>,
) -> (Verdict, Vec<Reason>) {
    let reasons = |kinds: &[Kind]| -> Vec<Reason> {
        determining
            .iter()
            .filter(|c| kinds.contains(&c.kind))
            .map(|c| c.reason.clone())
            .collect()
    };
    match decision {
        cedar_policy::Decision::Deny => {
            let forbids = reasons(&[Kind::Forbid]);
            if forbids.is_empty() {
                (
                    Verdict::Deny,
                    vec![Reason {
                        source: "default".into(),
                        line: 0,
                        rule: "no rule allows this (deny by default)".into(),
                        effect: Verdict::Deny,
                    }],
                )
            } else {
                (Verdict::Deny, forbids)
            }
        }
        cedar_policy::Decision::Allow => {
            let asks = reasons(&[Kind::AskRule]);
            if !asks.is_empty() {
                return (Verdict::Ask, asks);
            }
            let permits = reasons(&[Kind::Permit]);
            if !permits.is_empty() {
                return (Verdict::Allow, permits);
            }
            let fallback = reasons(&[Kind::AskFallback]);
            if fallback.is_empty() {
                // Cedar allowed with no permit we know of: cannot explain it, so do not allow.
                (
                    Verdict::Deny,
                    vec![Reason {
                        source: "default".into(),
                        line: 0,
                        rule: "allowed by a policy that is not in the manifest".into(),
                        effect: Verdict::Deny,
                    }],
                )
            } else {
                (Verdict::Ask, fallback)
            }
        }
    }
}

/// A simple command as one line for people: words quoted where the shell would need it.
fn render(cmd: &SimpleCommand) -> String {
    let mut out = String::new();
    for (i, w) in std::iter::once(&cmd.program).chain(&cmd.args).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let plain = !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%^".contains(c));
        if plain {
            out.push_str(w);
        } else {
            out.push('\'');
            out.push_str(&w.replace('\'', r"'\''"));
            out.push('\'');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_json_is_what_cedar_text_would_be() {
        let spec = PolicySpec {
            id: "builder/files.write/0".into(),
            kind: Kind::AskRule,
            actions: vec![Action::Read, Action::Write],
            role: Some("builder".into()),
            rule: Some("builder/files.write/0".into()),
            condition: Some((false, tier_at_least(2))),
            reason: builtin("x", Verdict::Ask),
        };
        let p = Policy::from_json(None, spec.to_json()).expect("the test input is valid");
        let text = Policy::parse(
            None,
            r#"@ask("rule") permit(principal in Role::"builder", action in [Action::"read", Action::"write"], resource in Rule::"builder/files.write/0") unless { principal.tier >= 2 };"#,
        )
        .expect("the test input is valid");
        assert_eq!(
            p.to_json().expect("the test input is valid"),
            text.to_json().expect("the test input is valid")
        );
    }

    const LINE_ROLE: &str = "\
role: t
tier: T1
files:
  write: ['*.log']
commands:
  allow: ['cargo build *', 'cargo test *', 'tee *']
  ask: ['git push *']
  deny: ['rm -r *']
";

    fn sc(words: &[&str], writes: &[&str]) -> SimpleCommand {
        SimpleCommand {
            program: words[0].into(),
            args: words[1..].iter().map(|w| (*w).to_owned()).collect(),
            env: vec![],
            wrappers: vec![],
            writes: writes.iter().map(|w| (*w).to_owned()).collect(),
            dynamic: false,
        }
    }

    fn decide_line(cl: command::CommandLine, remembered: &[ArgvPattern]) -> Decision {
        let m = manifest::parse_manifest(LINE_ROLE, "t.yaml").expect("the test input is valid");
        let set = PolicySet::from_manifests(vec![m]).expect("the test input is valid");
        let agent = Agent {
            id: "a".into(),
            role: "t".into(),
            tier: 1,
            budget_exhausted: false,
            quarantined: false,
        };
        let cx = Cx {
            set: &set,
            role: &set.roles["t"],
            agent: &agent,
            principal: std::cell::OnceCell::new(),
        };
        cx.line(&cl, remembered, 1)
            .expect("the test input is valid")
    }

    fn line(commands: Vec<SimpleCommand>, opaque: &[&str]) -> command::CommandLine {
        command::CommandLine {
            commands,
            opaque: opaque.iter().map(|o| (*o).to_owned()).collect(),
        }
    }

    #[test]
    fn a_line_is_allowed_only_when_every_part_is() {
        let ok = line(
            vec![
                sc(&["cargo", "build"], &[]),
                sc(&["cargo", "test"], &["out.log"]),
                sc(&["tee", "log"], &[]),
            ],
            &[],
        );
        let d = decide_line(ok, &[]);
        assert_eq!(d.verdict, Verdict::Allow, "{d:?}");
        assert_eq!(d.per_command.len(), 4);
        assert_eq!(d.per_command[2].0, "> out.log");

        // A redirection outside the worktree denies the whole line.
        let bad_write = line(vec![sc(&["cargo", "test"], &["/etc/passwd"])], &[]);
        let d = decide_line(bad_write, &[]);
        assert_eq!(d.verdict, Verdict::Deny, "{d:?}");
        assert_eq!(d.reasons[0].rule, "no writes outside the worktree");

        // One asked part asks; one denied part denies, whatever the order.
        let asks = line(
            vec![
                sc(&["cargo", "test"], &[]),
                sc(&["git", "push", "origin"], &[]),
            ],
            &[],
        );
        assert_eq!(decide_line(asks, &[]).verdict, Verdict::Ask);
        let denies = line(
            vec![
                sc(&["git", "push", "origin"], &[]),
                sc(&["rm", "-rf", "x"], &[]),
                sc(&["cargo", "test"], &[]),
            ],
            &[],
        );
        let d = decide_line(denies, &[]);
        assert_eq!(d.verdict, Verdict::Deny);
        assert_eq!(d.reasons.len(), 1);
        assert_eq!(
            (d.reasons[0].source.as_str(), d.reasons[0].line),
            ("t.yaml", 8)
        );
    }

    #[test]
    fn opaque_or_empty_lines_ask_and_remembered_answers_only_turn_asks() {
        let d = decide_line(line(vec![sc(&["cargo", "test"], &[])], &["eval"]), &[]);
        assert_eq!(d.verdict, Verdict::Ask);
        assert_eq!(d.reasons[0].source, "parser");
        assert_eq!(decide_line(line(vec![], &[]), &[]).verdict, Verdict::Ask);

        let remembered = [
            ArgvPattern::parse("git push *").expect("the test input is valid"),
            ArgvPattern::parse("rm -r *").expect("the test input is valid"),
        ];
        let push = line(vec![sc(&["git", "push", "origin"], &[])], &[]);
        let d = decide_line(push, &remembered);
        assert_eq!(d.verdict, Verdict::Allow);
        assert_eq!(d.reasons[0].source, "remembered");
        let rm = line(vec![sc(&["rm", "-rf", "x"], &[])], &[]);
        assert_eq!(decide_line(rm, &remembered).verdict, Verdict::Deny);
        // An opaque part is not a simple command: no remembered answer covers it.
        let opaque = line(vec![sc(&["git", "push", "origin"], &[])], &["source x.sh"]);
        assert_eq!(decide_line(opaque, &remembered).verdict, Verdict::Ask);
    }

    #[test]
    fn limits_are_enforced() {
        let many: Vec<SimpleCommand> = (0..=MAX_COMMANDS_PER_LINE)
            .map(|_| sc(&["cargo", "test"], &[]))
            .collect();
        let d = decide_line(line(many, &[]), &[]);
        assert_eq!(
            d.verdict,
            Verdict::Ask,
            "too many parts are not decided one by one"
        );
        assert!(d.reasons[0].rule.contains("more than"));

        let set = PolicySet::from_manifests(vec![
            manifest::parse_manifest(LINE_ROLE, "t.yaml").expect("the test input is valid"),
        ])
        .expect("the test input is valid");
        let agent = Agent {
            id: "a".into(),
            role: "t".into(),
            tier: 1,
            budget_exhausted: false,
            quarantined: false,
        };
        let long = "x".repeat(MAX_REQUEST_BYTES + 1);
        for r in [
            Request::Exec(CommandSpec::Shell(long.clone())),
            Request::Net(long.clone()),
            Request::Model(long.clone()),
            Request::Operation(long),
        ] {
            assert!(matches!(
                set.decide(&agent, &r),
                Err(DecideError::TooLong { .. })
            ));
        }
    }

    #[test]
    fn privileged_wrappers_are_denied() {
        let mut cmd = sc(&["cargo", "test"], &[]);
        cmd.wrappers = vec!["/usr/bin/sudo".into()];
        let d = decide_line(line(vec![cmd], &[]), &[]);
        assert_eq!(d.verdict, Verdict::Deny);
        assert!(d.reasons[0].rule.contains("sudo"));
    }

    #[test]
    fn hosts_normalise() {
        assert_eq!(
            normalize_host("https://u@Api.GitHub.com:443/x?y").expect("the test input is valid"),
            "api.github.com"
        );
        assert_eq!(
            normalize_host("github.com.").expect("the test input is valid"),
            "github.com"
        );
        assert!(normalize_host("").is_err());
        assert!(normalize_host("a b").is_err());
    }

    #[test]
    fn render_quotes() {
        let cmd = SimpleCommand {
            program: "echo".into(),
            args: vec!["a b".into(), "it's".into(), "x".into()],
            env: vec![],
            wrappers: vec![],
            writes: vec![],
            dynamic: false,
        };
        assert_eq!(render(&cmd), r#"echo 'a b' 'it'\''s' x"#);
    }
}
