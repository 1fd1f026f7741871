//! Capability manifests: one YAML file per role saying what its agents may read, write, run,
//! reach and spend, loaded from three places and validated before anything uses them.
//!
//! Where a role's manifest comes from, most specific first: the repository
//! (`<repo>/.horde/agents/ROLE.yaml`), the user (`<user_dir>/agents/ROLE.yaml`), the default
//! embedded in the binary (`defaults/ROLE.yaml`, source `default:ROLE`). **The most specific
//! file present replaces the role's manifest whole**: nothing is merged, so what a file says is
//! all the role gets, and a repository can narrow a role as well as widen it.
//!
//! Invariants: a [`Manifest`] only exists fully validated — every key known, every glob and
//! argv pattern compiled, no pattern that matches everything where that would grant everything
//! (commands, hosts, models), tier `T0`–`T4`, budgets well-formed. Any error names the file,
//! the line and the key, and nothing loads: [`load_all`] fails as a whole. Every rule keeps the
//! source and line it came from, so a decision can say which line decided it.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::command::ArgvPattern;

/// The roles that ship with a default manifest.
pub const ROLES: [&str; 8] = [
    "commander",
    "builder",
    "inspector",
    "sentinel",
    "scribe",
    "scout",
    "devops",
    "watcher",
];

/// Largest manifest file accepted, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;
/// Most entries in one list of a manifest (`files.read`, `commands.allow`, …).
pub const MAX_RULES_PER_LIST: usize = 2_000;
/// Most roles in one scope (defaults plus extra roles found in the directories).
pub const MAX_ROLES: usize = 64;
/// Longest role name, in bytes.
pub const MAX_ROLE_NAME: usize = 40;
/// Highest trust tier.
pub const MAX_TIER: u8 = 4;

const DEFAULTS: [(&str, &str); 8] = [
    ("commander", include_str!("../defaults/commander.yaml")),
    ("builder", include_str!("../defaults/builder.yaml")),
    ("inspector", include_str!("../defaults/inspector.yaml")),
    ("sentinel", include_str!("../defaults/sentinel.yaml")),
    ("scribe", include_str!("../defaults/scribe.yaml")),
    ("scout", include_str!("../defaults/scout.yaml")),
    ("devops", include_str!("../defaults/devops.yaml")),
    ("watcher", include_str!("../defaults/watcher.yaml")),
];

/// The embedded default manifest of `role`, as YAML text (what `horde policy init` writes out).
pub fn default_manifest_text(role: &str) -> Option<&'static str> {
    DEFAULTS.iter().find(|(r, _)| *r == role).map(|(_, t)| *t)
}

/// Where manifests are looked up. Both directories are optional: with neither, only the
/// embedded defaults load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// A repository root: `<repo_root>/.horde/agents/ROLE.yaml`.
    pub repo_root: Option<PathBuf>,
    /// The user's horde configuration directory: `<user_dir>/agents/ROLE.yaml`.
    pub user_dir: Option<PathBuf>,
}

impl Scope {
    fn repo_agents(&self) -> Option<PathBuf> {
        self.repo_root
            .as_ref()
            .map(|r| r.join(".horde").join("agents"))
    }

    fn user_agents(&self) -> Option<PathBuf> {
        self.user_dir.as_ref().map(|u| u.join("agents"))
    }
}

/// A manifest that cannot be used. `file`, `line` and `key` say where; line 0 means the whole
/// file (it could not be read, or is too large).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{file}:{line}:{column}: {key}: {message}")]
    Invalid {
        file: String,
        line: u32,
        column: u32,
        key: String,
        message: String,
    },
    #[error("cannot read manifest {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown role {role:?}: no manifest for it in {searched}")]
    UnknownRole { role: String, searched: String },
}

impl ManifestError {
    /// The file (or `default:ROLE`) at fault, if one is.
    pub fn file(&self) -> Option<&str> {
        match self {
            Self::Invalid { file, .. } | Self::Io { file, .. } => Some(file),
            Self::UnknownRole { .. } => None,
        }
    }

    /// The 1-based line at fault; 0 when the whole file is.
    pub fn line(&self) -> u32 {
        match self {
            Self::Invalid { line, .. } => *line,
            _ => 0,
        }
    }

    /// The dotted key at fault (`files.write`, `commands.deny`, `budgets.wall_time`).
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// One entry of a manifest list, with where it was written.
#[derive(Debug, Clone)]
pub struct Rule<T> {
    pub value: T,
    /// The text as written in the manifest.
    pub text: String,
    /// 1-based line in the manifest file.
    pub line: u32,
}

/// A path glob of `files.*`. Globs starting with `/` are absolute and only ever match paths
/// outside the worktree; the others are relative to the worktree root. `*` and `?` stop at
/// `/`; `**` crosses directories.
#[derive(Debug, Clone)]
pub struct PathGlob {
    pub glob: globset::Glob,
    pub absolute: bool,
}

/// A host of `network.allow`: `github.com` (that host only) or `*.github.com` (its subdomains,
/// not `github.com` itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    Subdomains(String),
}

impl HostPattern {
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(h) => h == host,
            // `suffix` keeps its leading dot: `.github.com`.
            Self::Subdomains(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        }
    }
}

/// A model of `models.allow`: an exact name, or a prefix ending in `*` (`claude-sonnet-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelPattern {
    Exact(String),
    Prefix(String),
}

impl ModelPattern {
    pub fn matches(&self, model: &str) -> bool {
        match self {
            Self::Exact(m) => m == model,
            Self::Prefix(p) => model.starts_with(p.as_str()),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Files {
    pub read: Vec<Rule<PathGlob>>,
    pub write: Vec<Rule<PathGlob>>,
    /// Denied for reading and writing, whatever `read` and `write` say.
    pub deny: Vec<Rule<PathGlob>>,
}

#[derive(Debug, Clone, Default)]
pub struct Commands {
    pub allow: Vec<Rule<ArgvPattern>>,
    pub ask: Vec<Rule<ArgvPattern>>,
    pub deny: Vec<Rule<ArgvPattern>>,
}

/// Spending limits; `None` is no limit of that kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Budgets {
    pub tokens: Option<u64>,
    pub usd: Option<f64>,
    pub wall_time: Option<Duration>,
    pub tool_calls: Option<u64>,
}

/// A role's validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub role: String,
    /// The trust tier agents of this role start at, 0–4.
    pub tier: u8,
    /// A file path, or `default:ROLE` for an embedded default.
    pub source: String,
    pub files: Files,
    pub commands: Commands,
    pub network: Vec<Rule<HostPattern>>,
    pub models: Vec<Rule<ModelPattern>>,
    pub budgets: Budgets,
    /// Operations that need a person's approval (`git_push`, `deploy`, `delete_branch`).
    pub approvals: Vec<Rule<String>>,
}

// ---- raw YAML shape -------------------------------------------------------------------------

type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    role: S<String>,
    tier: S<String>,
    #[serde(default)]
    files: RawFiles,
    #[serde(default)]
    commands: RawCommands,
    #[serde(default)]
    network: RawList,
    #[serde(default)]
    models: RawList,
    #[serde(default)]
    budgets: RawBudgets,
    #[serde(default)]
    approvals: Vec<S<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFiles {
    #[serde(default)]
    read: Vec<S<String>>,
    #[serde(default)]
    write: Vec<S<String>>,
    #[serde(default)]
    deny: Vec<S<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCommands {
    #[serde(default)]
    allow: Vec<S<String>>,
    #[serde(default)]
    ask: Vec<S<String>>,
    #[serde(default)]
    deny: Vec<S<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawList {
    #[serde(default)]
    allow: Vec<S<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBudgets {
    tokens: Option<S<u64>>,
    usd: Option<S<f64>>,
    wall_time: Option<S<String>>,
    tool_calls: Option<S<u64>>,
}

// ---- parsing --------------------------------------------------------------------------------

struct Ctx<'a> {
    file: &'a str,
}

impl Ctx<'_> {
    fn err<T>(
        &self,
        s: &S<T>,
        key: impl fmt::Display,
        message: impl fmt::Display,
    ) -> ManifestError {
        ManifestError::Invalid {
            file: self.file.to_owned(),
            line: s.referenced.line() as u32,
            column: s.referenced.column() as u32,
            key: key.to_string(),
            message: message.to_string(),
        }
    }

    fn whole(&self, key: &str, message: impl fmt::Display) -> ManifestError {
        ManifestError::Invalid {
            file: self.file.to_owned(),
            line: 0,
            column: 0,
            key: key.to_owned(),
            message: message.to_string(),
        }
    }

    fn list<T>(
        &self,
        key: &str,
        raw: Vec<S<String>>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<Rule<T>>, ManifestError> {
        if raw.len() > MAX_RULES_PER_LIST {
            let first = &raw[0];
            return Err(self.err(
                first,
                key,
                format!("{} entries; at most {MAX_RULES_PER_LIST}", raw.len()),
            ));
        }
        let mut seen = BTreeSet::new();
        raw.into_iter()
            .enumerate()
            .map(|(i, s)| {
                let text = s.value.trim();
                let value = parse(text).map_err(|why| {
                    self.err(&s, format!("{key}[{i}]"), format!("{text:?}: {why}"))
                })?;
                if !seen.insert(text.to_owned()) {
                    return Err(self.err(
                        &s,
                        format!("{key}[{i}]"),
                        format!("{text:?} is listed twice"),
                    ));
                }
                Ok(Rule {
                    value,
                    text: text.to_owned(),
                    line: s.referenced.line() as u32,
                })
            })
            .collect()
    }
}

/// Parses and validates one manifest. `source` names it in errors and reasons (a path, or
/// `default:ROLE`).
pub fn parse_manifest(text: &str, source: &str) -> Result<Manifest, ManifestError> {
    let cx = Ctx { file: source };
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(cx.whole(
            "(file)",
            format!("{} bytes; at most {MAX_MANIFEST_BYTES}", text.len()),
        ));
    }
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    let raw: RawManifest = serde_saphyr::from_str_with_options(text, options)
        .map_err(|e| yaml_error(text, source, &e))?;

    let role = raw.role.value.trim().to_owned();
    validate_role_name(&role).map_err(|why| cx.err(&raw.role, "role", why))?;
    let tier = parse_tier(&raw.tier.value).map_err(|why| cx.err(&raw.tier, "tier", why))?;

    let files = Files {
        read: cx.list("files.read", raw.files.read, parse_path_glob)?,
        write: cx.list("files.write", raw.files.write, parse_path_glob)?,
        deny: cx.list("files.deny", raw.files.deny, parse_path_glob)?,
    };
    let commands = Commands {
        allow: cx.list("commands.allow", raw.commands.allow, parse_argv_pattern)?,
        ask: cx.list("commands.ask", raw.commands.ask, parse_argv_pattern)?,
        deny: cx.list("commands.deny", raw.commands.deny, parse_argv_pattern)?,
    };
    let network = cx.list("network.allow", raw.network.allow, parse_host_pattern)?;
    let models = cx.list("models.allow", raw.models.allow, parse_model_pattern)?;
    let approvals = cx.list("approvals", raw.approvals, parse_operation)?;

    let b = raw.budgets;
    let usd = match b.usd {
        Some(u) if !(u.value.is_finite() && u.value >= 0.0) => {
            return Err(cx.err(
                &u,
                "budgets.usd",
                format!("{} is not a non-negative amount", u.value),
            ));
        }
        u => u.map(|u| u.value),
    };
    let wall_time = match b.wall_time {
        Some(w) => {
            Some(parse_duration(&w.value).map_err(|why| cx.err(&w, "budgets.wall_time", why))?)
        }
        None => None,
    };
    let budgets = Budgets {
        tokens: b.tokens.map(|t| t.value),
        usd,
        wall_time,
        tool_calls: b.tool_calls.map(|t| t.value),
    };

    Ok(Manifest {
        role,
        tier,
        source: source.to_owned(),
        files,
        commands,
        network,
        models,
        budgets,
        approvals,
    })
}

/// Turns a YAML or shape error into one naming the line and the key found there.
fn yaml_error(text: &str, source: &str, e: &serde_saphyr::Error) -> ManifestError {
    let (line, column) = e
        .location()
        .map(|l| (l.line() as u32, l.column() as u32))
        .unwrap_or((0, 0));
    let message = e.to_string();
    // serde names an unknown key in its message; otherwise the key is the one written at the
    // error's line (or the nearest one above it).
    let key = key_path_at(text, line as usize).unwrap_or_else(|| "(document)".to_owned());
    ManifestError::Invalid {
        file: source.to_owned(),
        line,
        column,
        key,
        message: first_line(&message).to_owned(),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// The dotted path of mapping keys leading to `line` (1-based) in block-style YAML:
/// `files:\n  write:\n    - x` at the line of `- x` → `files.write`. Best effort, for error
/// messages only.
fn key_path_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    if line == 0 || line > lines.len() {
        return None;
    }
    let mut path: Vec<&str> = Vec::new();
    let mut limit = usize::MAX; // only lines indented less than this can be parents
    for l in lines[..line].iter().rev() {
        let body = l.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let indent = l.len() - body.len();
        if indent >= limit {
            continue;
        }
        let body = body.trim_start_matches("- ");
        if let Some((k, _)) = body.split_once(':') {
            let k = k.trim().trim_matches(|c| c == '"' || c == '\'');
            if !k.is_empty() && !k.contains(' ') {
                path.push(k);
                limit = indent;
            }
        } else if limit == usize::MAX {
            // A list item or scalar line: its parent is the first key less indented.
            limit = indent;
        }
        if indent == 0 && limit == 0 {
            break;
        }
    }
    if path.is_empty() {
        return None;
    }
    path.reverse();
    Some(path.join("."))
}

fn validate_role_name(role: &str) -> Result<(), String> {
    let ok = !role.is_empty()
        && role.len() <= MAX_ROLE_NAME
        && role.starts_with(|c: char| c.is_ascii_lowercase())
        && role
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "role {role:?} must be lowercase letters, digits, '-' or '_', starting with a letter, at most {MAX_ROLE_NAME} bytes"
        ))
    }
}

/// `T0`…`T4` → 0…4.
pub fn parse_tier(s: &str) -> Result<u8, String> {
    let t = s.trim();
    t.strip_prefix('T')
        .or_else(|| t.strip_prefix('t'))
        .and_then(|d| d.parse::<u8>().ok())
        .filter(|n| *n <= MAX_TIER && t.len() == 2)
        .ok_or_else(|| format!("unknown tier {s:?}; expected T0, T1, T2, T3 or T4"))
}

fn parse_path_glob(text: &str) -> Result<PathGlob, String> {
    if text.is_empty() {
        return Err("empty glob".into());
    }
    if text.contains('\0') {
        return Err("glob contains a NUL byte".into());
    }
    let absolute = text.starts_with('/');
    if !absolute && text.split('/').any(|c| c == "..") {
        return Err("a relative glob cannot contain '..'; write an absolute glob".into());
    }
    let body = text.trim_start_matches("./");
    let glob = globset::GlobBuilder::new(body)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("bad glob: {e}"))?;
    Ok(PathGlob { glob, absolute })
}

fn parse_argv_pattern(text: &str) -> Result<ArgvPattern, String> {
    ArgvPattern::parse(text).map_err(|e| e.to_string())
}

fn parse_host_pattern(text: &str) -> Result<HostPattern, String> {
    let lower = text.to_ascii_lowercase();
    let (sub, host) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    if host.is_empty() || host == "*" {
        return Err("matches every host".into());
    }
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.len() > 253 || !host.split('.').all(valid_label) {
        return Err(
            "not a host name: write `example.com` or `*.example.com` (no scheme, port or path)"
                .into(),
        );
    }
    if sub && !host.contains('.') {
        return Err("`*.` over a top-level domain matches too much".into());
    }
    Ok(if sub {
        HostPattern::Subdomains(format!(".{host}"))
    } else {
        HostPattern::Exact(host.to_owned())
    })
}

fn parse_model_pattern(text: &str) -> Result<ModelPattern, String> {
    let valid = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/' | '@'))
    };
    match text.strip_suffix('*') {
        Some("") => Err("matches every model".into()),
        Some(prefix) if valid(prefix) => Ok(ModelPattern::Prefix(prefix.to_owned())),
        None if !text.is_empty() && valid(text) => Ok(ModelPattern::Exact(text.to_owned())),
        _ => Err("a model is letters, digits and `-_.:/@`, optionally ending in `*`".into()),
    }
}

fn parse_operation(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(text.to_owned())
    } else {
        Err("an operation is a snake_case name such as git_push or deploy".into())
    }
}

/// `90s`, `30m`, `2h`, `1h30m`, `1d` → a duration. A bare number is refused (seconds or
/// minutes?).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration; write e.g. 30m, 2h or 1h30m".into());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(format!("{s:?}: unknown unit {c:?}; use s, m, h or d")),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{s:?}: a number must come before {c:?}"))?;
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(|| format!("{s:?} is too long"))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!(
            "{s:?}: the number {digits} has no unit; write e.g. {digits}m"
        ));
    }
    Ok(Duration::from_secs(total))
}

// ---- loading --------------------------------------------------------------------------------

fn read_file(path: &Path) -> Result<Option<String>, ManifestError> {
    let file = path.display().to_string();
    match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_MANIFEST_BYTES as u64 => Err(ManifestError::Invalid {
            file,
            line: 0,
            column: 0,
            key: "(file)".into(),
            message: format!("{} bytes; at most {MAX_MANIFEST_BYTES}", m.len()),
        }),
        Ok(_) => std::fs::read_to_string(path)
            .map(Some)
            .map_err(|source| ManifestError::Io { file, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ManifestError::Io { file, source }),
    }
}

fn parse_for_role(text: &str, source: &str, role: &str) -> Result<Manifest, ManifestError> {
    let m = parse_manifest(text, source)?;
    if m.role != role {
        let line = text
            .lines()
            .position(|l| l.trim_start().starts_with("role:"))
            .map_or(0, |i| i as u32 + 1);
        return Err(ManifestError::Invalid {
            file: source.to_owned(),
            line,
            column: 1,
            key: "role".into(),
            message: format!("says role {:?} but the file is for role {role:?}", m.role),
        });
    }
    Ok(m)
}

/// The manifest of one role in `scope`: the repository's file, else the user's, else the
/// embedded default. Unknown role (no file anywhere, no default) → an error.
pub fn load_role(scope: &Scope, role: &str) -> Result<Manifest, ManifestError> {
    if validate_role_name(role).is_err() {
        return Err(ManifestError::UnknownRole {
            role: role.to_owned(),
            searched: searched(scope),
        });
    }
    let file_name = format!("{role}.yaml");
    for dir in [scope.repo_agents(), scope.user_agents()]
        .into_iter()
        .flatten()
    {
        let path = dir.join(&file_name);
        if let Some(text) = read_file(&path)? {
            return parse_for_role(&text, &path.display().to_string(), role);
        }
    }
    match default_manifest_text(role) {
        Some(text) => parse_for_role(text, &format!("default:{role}"), role),
        None => Err(ManifestError::UnknownRole {
            role: role.to_owned(),
            searched: searched(scope),
        }),
    }
}

fn searched(scope: &Scope) -> String {
    let mut places: Vec<String> = [scope.repo_agents(), scope.user_agents()]
        .into_iter()
        .flatten()
        .map(|p| p.display().to_string())
        .collect();
    places.push("the embedded defaults".into());
    places.join(", ")
}

/// Every role in scope: the eight defaults plus any other `ROLE.yaml` in the two directories.
fn roles_in_scope(scope: &Scope) -> Result<Vec<String>, ManifestError> {
    let mut roles: BTreeSet<String> = ROLES.iter().map(|r| (*r).to_owned()).collect();
    for dir in [scope.repo_agents(), scope.user_agents()]
        .into_iter()
        .flatten()
    {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(ManifestError::Io {
                    file: dir.display().to_string(),
                    source,
                });
            }
        };
        for entry in entries {
            let entry = entry.map_err(|source| ManifestError::Io {
                file: dir.display().to_string(),
                source,
            })?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(role) = name
                .strip_suffix(".yaml")
                .or_else(|| name.strip_suffix(".yml"))
            else {
                continue;
            };
            if name.ends_with(".yml") {
                return Err(ManifestError::Invalid {
                    file: entry.path().display().to_string(),
                    line: 0,
                    column: 0,
                    key: "(file)".into(),
                    message: format!("manifests are named ROLE.yaml; rename it to {role}.yaml"),
                });
            }
            validate_role_name(role).map_err(|why| ManifestError::Invalid {
                file: entry.path().display().to_string(),
                line: 0,
                column: 0,
                key: "(file name)".into(),
                message: why,
            })?;
            roles.insert(role.to_owned());
            if roles.len() > MAX_ROLES {
                return Err(ManifestError::Invalid {
                    file: dir.display().to_string(),
                    line: 0,
                    column: 0,
                    key: "(directory)".into(),
                    message: format!("more than {MAX_ROLES} roles"),
                });
            }
        }
    }
    Ok(roles.into_iter().collect())
}

/// Every manifest in scope, or the first error: nothing loads when one file is bad.
pub fn load_all(scope: &Scope) -> Result<Vec<Manifest>, ManifestError> {
    roles_in_scope(scope)?
        .iter()
        .map(|r| load_role(scope, r))
        .collect()
}

/// Checks every manifest in scope and returns every error (one per bad file), for
/// `horde policy lint`.
pub fn lint(scope: &Scope) -> Vec<ManifestError> {
    match roles_in_scope(scope) {
        Err(e) => vec![e],
        Ok(roles) => {
            let mut errors = Vec::new();
            for role in &roles {
                // Check every layer, not only the one that wins: a broken user file hidden by a
                // repository file would surface in the next repository.
                let file_name = format!("{role}.yaml");
                for dir in [scope.repo_agents(), scope.user_agents()]
                    .into_iter()
                    .flatten()
                {
                    let path = dir.join(&file_name);
                    match read_file(&path) {
                        Ok(Some(text)) => {
                            if let Err(e) = parse_for_role(&text, &path.display().to_string(), role)
                            {
                                errors.push(e);
                            }
                        }
                        Ok(None) => {}
                        Err(e) => errors.push(e),
                    }
                }
                if let Some(text) = default_manifest_text(role)
                    && let Err(e) = parse_for_role(text, &format!("default:{role}"), role)
                {
                    errors.push(e);
                }
            }
            errors
        }
    }
}

/// The paths whose content stays on the device that recorded it: every relative
/// `files.deny` glob of every role in scope, in one set (what no agent may read must not reach
/// the cloud either). Built once and asked per path; absolute globs are left out (they only
/// ever match paths outside the worktree).
#[derive(Debug, Clone)]
pub struct Withhold {
    globs: globset::GlobSet,
    /// The glob texts, for messages (same order as `globs`).
    texts: Vec<String>,
}

impl Withhold {
    /// The union of the deny globs of every manifest in `scope`. An error when any manifest
    /// cannot load: the caller must not treat that as "withhold nothing" (see
    /// [`Withhold::defaults`]).
    pub fn load(scope: &Scope) -> Result<Withhold, ManifestError> {
        Ok(Withhold::from_manifests(&load_all(scope)?))
    }

    /// The built-in manifests' deny globs only (what to fall back on when the manifests in
    /// scope cannot load).
    pub fn defaults() -> Withhold {
        let manifests: Vec<Manifest> = ROLES
            .iter()
            .map(|role| {
                let text = default_manifest_text(role).expect("every role in ROLES has a default");
                parse_for_role(text, &format!("default:{role}"), role)
                    .expect("the built-in manifests parse (checked by their tests)")
            })
            .collect();
        Withhold::from_manifests(&manifests)
    }

    pub fn from_manifests(manifests: &[Manifest]) -> Withhold {
        let mut b = globset::GlobSetBuilder::new();
        let mut texts: Vec<String> = Vec::new();
        for rule in manifests.iter().flat_map(|m| &m.files.deny) {
            if rule.value.absolute || texts.contains(&rule.text) {
                continue;
            }
            b.add(rule.value.glob.clone());
            texts.push(rule.text.clone());
        }
        let globs = b
            .build()
            .expect("globs that compiled one by one compile as a set");
        Withhold { globs, texts }
    }

    /// Whether `rel_path` (repository-relative, `/`-separated) is denied by some manifest.
    pub fn denies(&self, rel_path: &str) -> bool {
        self.globs.is_match(rel_path)
    }

    /// The first glob that denies `rel_path`, as written in its manifest.
    pub fn denying_glob(&self, rel_path: &str) -> Option<&str> {
        self.globs
            .matches(rel_path)
            .first()
            .map(|&i| self.texts[i].as_str())
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
role: builder
tier: T1
files:
  read: ['**']
  write:
    - src/**
    - tests/**
  deny: ['.env', '**/.env*']
commands:
  allow: ['cargo test *']
network:
  allow: [github.com, '*.crates.io']
models:
  allow: ['claude-sonnet-*']
budgets:
  tokens: 1000000
  usd: 5.5
  wall_time: 1h30m
  tool_calls: 500
approvals: [git_push]
";

    #[test]
    fn parses_a_manifest_and_keeps_lines() {
        let m = parse_manifest(GOOD, "x.yaml").expect("the test input is valid");
        assert_eq!(m.role, "builder");
        assert_eq!(m.tier, 1);
        assert_eq!(m.files.write[1].text, "tests/**");
        assert_eq!(m.files.write[1].line, 7);
        assert_eq!(m.files.deny[1].line, 8);
        assert_eq!(m.budgets.wall_time, Some(Duration::from_secs(5400)));
        assert_eq!(m.budgets.usd, Some(5.5));
        assert_eq!(m.approvals[0].line, 20);
    }

    fn err(text: &str) -> ManifestError {
        parse_manifest(text, "bad.yaml").expect_err("the input is invalid")
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = err("role: builder\ntier: T1\nfiles:\n  read: ['**']\n  wirte: ['src/**']\n");
        assert_eq!(e.line(), 5, "{e}");
        assert_eq!(e.key(), Some("files.wirte"), "{e}");
        assert!(e.to_string().contains("bad.yaml:5"), "{e}");
    }

    #[test]
    fn bad_values_name_line_and_key() {
        let e = err("role: builder\ntier: T9\n");
        assert_eq!((e.line(), e.key()), (2, Some("tier")), "{e}");
        let e = err("role: builder\ntier: T1\nfiles:\n  write:\n    - ok/**\n    - 'src/[a'\n");
        assert_eq!((e.line(), e.key()), (6, Some("files.write[1]")), "{e}");
        let e = err("role: builder\ntier: T1\ncommands:\n  deny: ['*']\n");
        assert_eq!((e.line(), e.key()), (4, Some("commands.deny[0]")), "{e}");
        let e = err("role: builder\ntier: T1\nnetwork:\n  allow: ['*']\n");
        assert_eq!(e.key(), Some("network.allow[0]"), "{e}");
        let e = err("role: builder\ntier: T1\nbudgets:\n  wall_time: 30\n");
        assert_eq!((e.line(), e.key()), (4, Some("budgets.wall_time")), "{e}");
        let e = err("role: builder\ntier: T1\nfiles:\n  read: [a, a]\n");
        assert!(e.to_string().contains("twice"), "{e}");
    }

    #[test]
    fn wrong_type_names_key() {
        let e = err("role: builder\ntier: T1\nbudgets:\n  tokens: lots\n");
        assert_eq!(e.line(), 4, "{e}");
        assert_eq!(e.key(), Some("budgets.tokens"), "{e}");
    }

    #[test]
    fn missing_tier_is_an_error() {
        let e = err("role: builder\n");
        assert!(e.to_string().contains("tier"), "{e}");
    }

    #[test]
    fn limits_are_enforced() {
        let big = format!(
            "role: builder\ntier: T1\n#{}\n",
            "x".repeat(MAX_MANIFEST_BYTES)
        );
        let e = err(&big);
        assert_eq!(e.key(), Some("(file)"), "{e}");
        let items: String = (0..=MAX_RULES_PER_LIST)
            .map(|i| format!("    - f{i}\n"))
            .collect();
        let e = err(&format!(
            "role: builder\ntier: T1\nfiles:\n  read:\n{items}"
        ));
        assert_eq!((e.line(), e.key()), (5, Some("files.read")), "{e}");
    }

    #[test]
    fn hosts_and_models() {
        let h = parse_host_pattern("*.github.com").expect("the test input is valid");
        assert!(h.matches("api.github.com"));
        assert!(!h.matches("github.com"));
        assert!(!h.matches("evilgithub.com"));
        assert!(parse_host_pattern("https://x.com").is_err());
        assert!(parse_host_pattern("*.com").is_err());
        assert!(parse_model_pattern("*").is_err());
        assert!(
            parse_model_pattern("claude-*")
                .expect("the test input is valid")
                .matches("claude-opus")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1d2h"), Ok(Duration::from_secs(93_600)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("3x").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn every_default_loads() {
        for role in ROLES {
            let text = default_manifest_text(role).expect("the test input is valid");
            let m = parse_for_role(text, &format!("default:{role}"), role)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(m.role, role);
        }
    }

    #[test]
    fn withhold_is_the_union_of_every_roles_relative_deny_globs() {
        let w = Withhold::defaults();
        for p in [
            ".env",
            "app/.env.local",
            "secrets/db.txt",
            "a/secrets/b",
            "k/server.pem",
        ] {
            assert!(w.denies(p), "{p} should be withheld");
        }
        for p in ["src/main.rs", "README.md", "env.rs", "secretsauce/x"] {
            assert!(!w.denies(p), "{p} should not be withheld");
        }
        assert_eq!(w.denying_glob(".env"), Some(".env"));

        // A repository manifest adds its own; absolute globs never match a relative path.
        let extra = parse_manifest(
            "role: builder\ntier: T1\nfiles:\n  deny: ['private/**', '/etc/**']\n",
            "test",
        )
        .expect("valid");
        let w = Withhold::from_manifests(&[extra]);
        assert!(w.denies("private/notes.md"));
        assert!(!w.denies("etc/passwd"));
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn withhold_load_fails_on_a_bad_manifest_instead_of_withholding_nothing() {
        let tmp = std::env::temp_dir().join(format!("horde-withhold-{}", std::process::id()));
        let agents = tmp.join(".horde").join("agents");
        std::fs::create_dir_all(&agents).expect("mkdir");
        std::fs::write(agents.join("builder.yaml"), "role: builder\nbogus: 1\n").expect("write");
        let scope = Scope {
            repo_root: Some(tmp.clone()),
            user_dir: None,
        };
        assert!(Withhold::load(&scope).is_err());
        std::fs::remove_dir_all(&tmp).expect("cleanup");
    }
}
