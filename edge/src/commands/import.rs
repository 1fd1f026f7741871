//! `horde import claude|codex|aider`: past sessions from the agents' own records (see
//! [`crate::import`] for what they become and the dedup rule).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use crate::import::{self, Options, Summary, Transcript, aider, claude, codex};
use crate::session::{cwd, load_key};
use crate::store::{Layout, Store};

const DEDUP: &str = "Importing is idempotent: what the ledger already holds of a session (by its \
agent and session id: tool calls by tool_use_id/call_id, model calls by message.id or Codex's \
running token total, prompts and replies by their text, the session's task) is not added again, \
whether an earlier import or the live hooks recorded it. A transcript that grew since adds only \
what is new. A line that is not a JSON record is skipped and counted; a session that cannot be \
found is an error and nothing is written.";

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Claude Code sessions of this repository, from ~/.claude/projects/<dir>/<session>.jsonl
    /// (and their subagents' transcripts).
    #[command(after_help = format!("{DEDUP}\n\nExamples:\n  horde import claude --all\n  \
        horde import claude 0f3c9a52-5d41-4c38-9d8e-1b2f3a4c5d6e\n  \
        horde import claude ~/.claude/projects/-home-me-repo/0f3c9a52-….jsonl --dry-run"))]
    Claude(SessionArgs),
    /// Codex sessions of this repository, from ~/.codex/sessions/YYYY/MM/DD/rollout-*.jsonl.
    #[command(after_help = format!("{DEDUP}\n\nExamples:\n  horde import codex --all\n  \
        horde import codex 01a23ba4-954b-70d2-b16a-1560f1485244 --json"))]
    Codex(SessionArgs),
    /// aider's chat history (.aider.chat.history.md), its LLM history (--llm-history-file) and
    /// its auto-commits in git, as steps on the timeline `aider`.
    #[command(
        after_help = "Each `# aider chat started at …` section is a session (prompts, \
replies, and the LLM history's responses in its time as model calls). Each commit aider made \
(author or committer `… (aider)`, message `aider: …`, or a `Co-authored-by: aider (…)` \
trailer) in HEAD's first-parent history becomes a step on the timeline `aider`, forked from \
HEAD at the tree before the first of them: a `git commit` tool call and the commit's file \
changes; `horde restore --at` such a step gives that commit's tree. Importing again adds only \
sessions, messages and commits the ledger does not hold.\n\nExamples:\n  horde import aider\n  \
horde import aider --llm-history-file .aider.llm.history --dry-run"
    )]
    Aider(AiderArgs),
}

#[derive(Args, Debug)]
pub struct Common {
    /// Say what would be added, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// One JSON object per session, in an array.
    #[arg(long)]
    pub json: bool,
    /// The manifest role on the events (as `horde hook --role`).
    #[arg(long, default_value = "builder")]
    pub role: String,
}

#[derive(Args, Debug)]
pub struct SessionArgs {
    /// A session id, or the path of its transcript/rollout file.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub session: Option<String>,
    /// Every session run in this repository (or below it).
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct AiderArgs {
    /// The chat history (default: .aider.chat.history.md at the repository's root).
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// aider's --llm-history-file (default: .aider.llm.history at the root, if there).
    #[arg(long, value_name = "FILE")]
    pub llm_history_file: Option<PathBuf>,
    /// Leave the git history alone.
    #[arg(long)]
    pub no_commits: bool,
    #[command(flatten)]
    pub common: Common,
}

fn open() -> Result<Store> {
    let dir = cwd()?;
    let layout = Layout::discover(&dir).with_context(|| {
        format!(
            "{} is not in a horde repository (run `horde init` there first)",
            dir.display()
        )
    })?;
    Ok(Store::open(layout, load_key()?)?)
}

fn options(c: &Common) -> Result<Options> {
    Ok(Options {
        dry_run: c.dry_run,
        role: c.role.clone(),
        key: crate::config::fingerprint_key()?,
    })
}

fn report(sums: &[Summary], c: &Common) -> Result<ExitCode> {
    if c.json {
        println!("{}", serde_json::to_string_pretty(sums)?);
    } else {
        if sums.is_empty() {
            println!("no sessions to import");
        }
        for s in sums {
            println!("{}", s.line(c.dry_run));
            for n in &s.notes {
                eprintln!("horde: note: {n}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_import(cmd: ImportCommand) -> Result<ExitCode> {
    match cmd {
        ImportCommand::Claude(a) => sessions(
            "claude",
            a,
            claude::all_sessions,
            claude::find,
            claude::read,
        ),
        ImportCommand::Codex(a) => sessions(
            "codex",
            a,
            codex::all_sessions,
            |_, s| codex::find(s),
            codex::read,
        ),
        ImportCommand::Aider(a) => cmd_aider(a),
    }
}

fn sessions(
    agent: &'static str,
    a: SessionArgs,
    all: fn(&std::path::Path) -> Result<Vec<PathBuf>>,
    find: impl Fn(&std::path::Path, &str) -> Result<PathBuf>,
    read: fn(&std::path::Path) -> Result<Transcript>,
) -> Result<ExitCode> {
    let store = open()?;
    let root = store.ledger.layout.root.clone();
    let root = std::fs::canonicalize(&root).unwrap_or(root);
    // Everything is found and read before anything is written.
    let files = match &a.session {
        Some(s) => vec![find(&root, s)?],
        None => all(&root)?,
    };
    let transcripts = files.iter().map(|f| read(f)).collect::<Result<Vec<_>>>()?;
    let opts = options(&a.common)?;
    let mut sums = Vec::new();
    for t in &transcripts {
        sums.push(import::import_session(&store, agent, t, &opts)?);
    }
    report(&sums, &a.common)
}

fn cmd_aider(a: AiderArgs) -> Result<ExitCode> {
    let store = open()?;
    let root = store.ledger.layout.root.clone();
    let history = a
        .history
        .clone()
        .unwrap_or_else(|| root.join(".aider.chat.history.md"));
    let llm = match &a.llm_history_file {
        Some(f) if !f.is_file() => bail!("no aider LLM history at {}", f.display()),
        Some(f) => Some(f.clone()),
        None => Some(root.join(".aider.llm.history")).filter(|f| f.is_file()),
    };
    let sessions = if history.is_file() {
        aider::read_sessions(&history, llm.as_deref())?
    } else if a.history.is_some() {
        bail!("no aider chat history at {}", history.display());
    } else {
        Vec::new()
    };
    if sessions.is_empty() && a.no_commits {
        bail!(
            "nothing to import: no aider chat history at {} and --no-commits",
            history.display()
        );
    }
    let opts = options(&a.common)?;
    let mut sums = Vec::new();
    for t in &sessions {
        sums.push(import::import_session(&store, aider::AGENT, t, &opts)?);
    }
    if !a.no_commits {
        let starts: Vec<(String, i64)> = sessions
            .iter()
            .map(|t| (t.session.clone(), t.items.first().map_or(0, |(at, _)| *at)))
            .collect();
        sums.push(aider::import_commits(&store, &root, &starts, &opts)?);
    }
    report(&sums, &a.common)
}
