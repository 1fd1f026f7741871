//! aider's records (aider has no hooks; nothing of it is recorded live):
//! - `.aider.chat.history.md`: `# aider chat started at YYYY-MM-DD HH:MM:SS` opens a session
//!   (its id is that time, `aider-YYYY-MM-DDTHH:MM:SS`), `#### ` lines are the person's
//!   prompts, `> ` lines aider's own output (`> Main model: …` names the model), the rest the
//!   model's replies.
//! - the `--llm-history-file` (`TO LLM <time>` / `LLM RESPONSE <time>` sections): each
//!   response is a model call of the session it falls in (no tokens: aider does not write
//!   them there).
//! - aider's auto-commits in git (author or committer name ending in ` (aider)`, a message
//!   starting `aider: `, or a `Co-authored-by: aider (…)` trailer): each becomes a step on the
//!   timeline `aider`, forked from HEAD and starting at the tree before the first imported
//!   commit, so every step restores to its commit's tree and the current timeline's tree is
//!   untouched. A commit's step is an intent `ToolCall` (tool `git commit`, call id = the
//!   commit) and the file changes of its diff (contents as blobs, withheld as live recording
//!   withholds them), caused by it; other commits between them are a step of nobody's call.
//!   A commit whose id the ledger holds already is skipped.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{Context, Result, bail};
use horde_core::proto::{FileKind, ToolCall, event_body::Payload};
use horde_core::{BlobHash, Draft, RepoPath};
use horde_replay::{Entry, Kind, State};

use super::{Item, Summary, Transcript};
use crate::hooks::usage::Call;
use crate::store::Store;
use crate::store::writer::{AppendRequest, FileChange, Trace, WorktreeEntry};

pub const AGENT: &str = "aider";
/// The timeline aider's commits are imported onto.
pub const TIMELINE: &str = "aider";
/// The `session` of the commits' summary.
pub const COMMITS: &str = "commits";
/// Commits imported per run (the rest wait for the next).
pub const MAX_COMMITS: usize = 10_000;

fn session_time(header: &str) -> Option<(String, i64)> {
    let t = header.trim();
    let dt: jiff::civil::DateTime = t.parse().ok()?;
    let us = dt
        .to_zoned(jiff::tz::TimeZone::system())
        .ok()?
        .timestamp()
        .as_microsecond();
    Some((format!("aider-{}", t.replace(' ', "T")), us))
}

/// The sessions of a chat history file, oldest first.
pub fn parse_history(text: &str, source: &Path) -> Vec<Transcript> {
    let mut out: Vec<Transcript> = Vec::new();
    let mut reply = String::new();
    let mut prompt = String::new();
    // Items of one session get consecutive microseconds after its start, in file order.
    let flush = |t: &mut Transcript, prompt: &mut String, reply: &mut String| {
        for (text, is_prompt) in [(&mut *prompt, true), (&mut *reply, false)] {
            let s = text.trim();
            if !s.is_empty() {
                let at = t.items.last().map_or(0, |(a, _)| *a + 1);
                let item = if is_prompt {
                    Item::Prompt(s.to_owned())
                } else {
                    Item::Reply(s.to_owned())
                };
                t.items.push((at, item));
            }
            text.clear();
        }
    };
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("# aider chat started at ") {
            if let Some(t) = out.last_mut() {
                flush(t, &mut prompt, &mut reply);
            }
            match session_time(h) {
                Some((session, at)) => out.push(Transcript {
                    session,
                    source: source.to_owned(),
                    // A marker at the start (removed below) gives the first item its time.
                    items: vec![(at, Item::Prompt(String::new()))],
                    ..Default::default()
                }),
                None => {
                    if let Some(t) = out.last_mut() {
                        t.skipped_lines += 1;
                        t.notes
                            .push(format!("a session header with a bad time: {line:?}"));
                    }
                }
            }
            continue;
        }
        let Some(t) = out.last_mut() else {
            continue; // before any session: nothing to attach it to
        };
        if let Some(p) = line.strip_prefix("#### ") {
            if !reply.trim().is_empty() {
                let mut empty = String::new();
                flush(t, &mut empty, &mut reply);
            }
            if !prompt.is_empty() {
                prompt.push('\n');
            }
            prompt.push_str(p);
        } else if let Some(o) = line.strip_prefix('>') {
            let o = o.trim();
            if let Some(m) = o
                .strip_prefix("Main model: ")
                .or_else(|| o.strip_prefix("Model: "))
            {
                t.model = m.split_whitespace().next().unwrap_or("").to_owned();
            }
        } else {
            if !prompt.trim().is_empty() {
                let mut empty = String::new();
                flush(t, &mut prompt, &mut empty);
            }
            reply.push_str(line);
            reply.push('\n');
        }
    }
    if let Some(t) = out.last_mut() {
        flush(t, &mut prompt, &mut reply);
    }
    for t in &mut out {
        t.items.retain(|(_, i)| *i != Item::Prompt(String::new()));
    }
    out
}

/// The model calls of an LLM history file: (time, call), each response with the prompt sent
/// before it.
pub fn parse_llm_history(text: &str) -> Vec<(i64, Call)> {
    let mut out = Vec::new();
    let mut section: Option<(bool, i64, String, String)> = None;
    let mut prompt = String::new();
    let mut end = |s: Option<(bool, i64, String, String)>, prompt: &mut String| {
        if let Some((is_response, at, stamp, body)) = s {
            if is_response {
                out.push((
                    at,
                    Call {
                        id: format!("llm:{stamp}:{}", out.len()),
                        prompt: (!prompt.is_empty()).then(|| std::mem::take(prompt)),
                        response: Some(body.trim_end().to_owned()),
                        ..Default::default()
                    },
                ));
            } else {
                *prompt = body.trim_end().to_owned();
            }
        }
    };
    for line in text.lines() {
        let head = line
            .strip_prefix("TO LLM ")
            .map(|t| (false, t))
            .or_else(|| line.strip_prefix("LLM RESPONSE ").map(|t| (true, t)));
        if let Some((is_response, stamp)) = head
            && let Ok(dt) = stamp.trim().parse::<jiff::civil::DateTime>()
        {
            end(section.take(), &mut prompt);
            let at = dt
                .to_zoned(jiff::tz::TimeZone::system())
                .map(|z| z.timestamp().as_microsecond())
                .unwrap_or(0);
            section = Some((is_response, at, stamp.trim().to_owned(), String::new()));
            continue;
        }
        if let Some((_, _, _, body)) = section.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    end(section.take(), &mut prompt);
    out
}

/// Each call goes to the latest session that started at or before it.
pub fn assign_calls(sessions: &mut [Transcript], calls: Vec<(i64, Call)>) {
    let starts: Vec<i64> = sessions
        .iter()
        .map(|t| t.items.first().map_or(i64::MIN, |(a, _)| *a))
        .collect();
    for (at, mut c) in calls {
        let Some(i) = starts.iter().rposition(|s| *s <= at) else {
            continue;
        };
        let t = &mut sessions[i];
        c.model = t.model.clone();
        t.calls.push((at, c));
    }
}

fn git(root: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .context("cannot run git (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

#[derive(Debug, Clone)]
pub struct Commit {
    pub sha: String,
    pub parent: Option<String>,
    pub author: String,
    pub committer: String,
    pub at: i64,
    pub message: String,
}

impl Commit {
    /// Written by aider (its attribution settings: author, committer, message prefix or
    /// co-author trailer).
    pub fn by_aider(&self) -> bool {
        self.author.ends_with("(aider)")
            || self.committer.ends_with("(aider)")
            || self.message.starts_with("aider: ")
            || self
                .message
                .lines()
                .any(|l| l.trim_start().starts_with("Co-authored-by: aider ("))
    }
}

/// The commits of HEAD's first-parent history, oldest first (none in a repository without
/// commits).
pub fn commits(root: &Path) -> Result<Vec<Commit>> {
    if git(root, &["rev-parse", "--verify", "-q", "HEAD"]).is_err() {
        return Ok(Vec::new());
    }
    let out = git(
        root,
        &[
            "log",
            "--first-parent",
            "--reverse",
            "--format=%H%x00%P%x00%an%x00%cn%x00%ct%x00%B%x1e",
        ],
    )?;
    let text = String::from_utf8_lossy(&out);
    let mut v = Vec::new();
    for rec in text.split('\x1e') {
        let f: Vec<&str> = rec.trim_start_matches('\n').splitn(6, '\0').collect();
        if f.len() < 6 {
            continue;
        }
        v.push(Commit {
            sha: f[0].to_owned(),
            parent: f[1].split_whitespace().next().map(str::to_owned),
            author: f[2].to_owned(),
            committer: f[3].to_owned(),
            at: f[4].parse::<i64>().unwrap_or(0) * 1_000_000,
            message: f[5].trim_end().to_owned(),
        });
    }
    Ok(v)
}

/// `git cat-file --batch`, one object at a time.
struct Objects {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Objects {
    fn start(root: &Path) -> Result<Objects> {
        let mut child = Command::new("git")
            .arg("-C")
            .arg(root)
            .args(["cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot run git cat-file")?;
        let input = child.stdin.take().context("git's stdin")?;
        let output = BufReader::new(child.stdout.take().context("git's stdout")?);
        Ok(Objects {
            child,
            input,
            output,
        })
    }

    fn read(&mut self, sha: &str) -> Result<Vec<u8>> {
        writeln!(self.input, "{sha}")?;
        self.input.flush()?;
        let mut head = String::new();
        self.output.read_line(&mut head)?;
        let size: usize = head
            .split_whitespace()
            .nth(2)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("git cat-file: {}", head.trim()))?;
        let mut data = vec![0; size + 1];
        self.output.read_exact(&mut data)?;
        data.pop();
        Ok(data)
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A commit's tree as worktree entries (directories included), its blobs stored.
struct Trees<'a> {
    root: &'a Path,
    store: &'a Store,
    objects: Objects,
    withholder: crate::withhold::Withholder,
    known: BTreeMap<String, (BlobHash, u64)>,
    blobs: Vec<(BlobHash, u64)>,
    dry_run: bool,
}

type Tree = BTreeMap<RepoPath, WorktreeEntry>;

impl Trees<'_> {
    fn tree(&mut self, commit: Option<&str>) -> Result<Tree> {
        let mut out = Tree::new();
        let Some(commit) = commit else {
            return Ok(out);
        };
        let list = git(self.root, &["ls-tree", "-r", "-z", commit])?;
        for rec in list.split(|b| *b == 0).filter(|r| !r.is_empty()) {
            let rec = String::from_utf8_lossy(rec);
            let Some((meta, path)) = rec.split_once('\t') else {
                continue;
            };
            let f: Vec<&str> = meta.split(' ').collect();
            let (kind, mode) = match f.first().copied() {
                Some("100755") => (FileKind::File, 0o755),
                Some("100644") => (FileKind::File, 0o644),
                Some("120000") => (FileKind::Symlink, 0o777),
                _ => continue, // submodules: not files of this tree
            };
            let (Some(sha), Ok(path)) = (f.get(2), RepoPath::parse(path)) else {
                continue;
            };
            let (hash, size) = match self.known.get(*sha) {
                Some(k) => *k,
                None => {
                    let data = self.objects.read(sha)?;
                    let h = if self.dry_run {
                        BlobHash::of(&data)
                    } else {
                        let h = self.store.ledger.blobs.put_bytes(&data)?;
                        self.blobs.push((h, data.len() as u64));
                        h
                    };
                    self.known.insert((*sha).to_owned(), (h, data.len() as u64));
                    (h, data.len() as u64)
                }
            };
            let withheld = !self.dry_run
                && self
                    .withholder
                    .decide(&path, kind as i32, &self.store.ledger.blobs, &hash, size)
                    .is_some();
            let mut dir = path.as_str();
            while let Some((parent, _)) = dir.rsplit_once('/') {
                if let Ok(p) = RepoPath::parse(parent) {
                    out.entry(p).or_insert(WorktreeEntry {
                        kind: FileKind::Dir as i32,
                        mode: 0o755,
                        size: 0,
                        mtime_ns: 0,
                        hash: None,
                        withheld: false,
                    });
                }
                dir = parent;
            }
            out.insert(
                path,
                WorktreeEntry {
                    kind: kind as i32,
                    mode,
                    size,
                    mtime_ns: 0,
                    hash: Some(hash),
                    withheld,
                },
            );
        }
        Ok(out)
    }
}

fn state_of(tree: &Tree) -> State {
    let mut s = State::new();
    for (p, e) in tree {
        let kind = Kind::from_proto(e.kind).unwrap_or(Kind::File);
        let entry = if matches!(kind, Kind::Dir) {
            Entry::dir(e.mode)
        } else {
            Entry {
                kind,
                mode: e.mode,
                size: e.size,
                hash: e.hash,
                withheld: e.withheld,
            }
        };
        s.insert(p, entry);
    }
    s
}

/// The changes that take `from` to `to`: new directories (parents first), files, removed
/// files, removed directories (children first).
fn is_dir(e: &WorktreeEntry) -> bool {
    e.kind == FileKind::Dir as i32
}

fn same(a: &WorktreeEntry, b: &WorktreeEntry) -> bool {
    a.kind == b.kind && a.hash == b.hash && a.mode == b.mode
}

fn changes(from: &Tree, to: &Tree) -> Vec<(RepoPath, Option<WorktreeEntry>)> {
    let mut out = Vec::new();
    for (p, e) in to.iter().filter(|(_, e)| is_dir(e)) {
        if !from.get(p).is_some_and(|f| same(f, e)) {
            out.push((p.clone(), Some(e.clone())));
        }
    }
    for (p, e) in to.iter().filter(|(_, e)| !is_dir(e)) {
        if !from.get(p).is_some_and(|f| same(f, e)) {
            out.push((p.clone(), Some(e.clone())));
        }
    }
    for (p, _) in from
        .iter()
        .filter(|(p, e)| !is_dir(e) && !to.contains_key(*p))
    {
        out.push((p.clone(), None));
    }
    for (p, _) in from
        .iter()
        .rev()
        .filter(|(p, e)| is_dir(e) && !to.contains_key(*p))
    {
        out.push((p.clone(), None));
    }
    out
}

/// The session a commit belongs to: the latest one that started at or before it.
fn session_at(sessions: &[(String, i64)], at: i64) -> String {
    sessions
        .iter()
        .rev()
        .find(|(_, s)| *s <= at)
        .map(|(id, _)| id.clone())
        .unwrap_or_else(|| "aider-commits".to_owned())
}

/// Imports aider's commits of HEAD's history not in the ledger yet, onto the `aider`
/// timeline. `sessions`: (id, start) of the chat sessions, to join commits to them.
pub fn import_commits(
    store: &Store,
    root: &Path,
    sessions: &[(String, i64)],
    opts: &super::Options,
) -> Result<Summary> {
    let mut sum = Summary {
        agent: AGENT.into(),
        session: COMMITS.into(),
        source: format!("git history of {}", root.display()),
        ..Default::default()
    };
    let all = commits(root)?;
    let conn = &store.ledger.conn;
    let mut done: HashSet<String> = HashSet::new();
    let mut st = conn.prepare("SELECT body, hash FROM events WHERE agent = ?1")?;
    let mut rows = st.query([AGENT])?;
    while let Some(r) = rows.next()? {
        let (body, hash): (Vec<u8>, Vec<u8>) = (r.get(0)?, r.get(1)?);
        if let Ok(ev) = horde_core::decode_event(&body, &hash)
            && let Some(Payload::ToolCall(t)) = ev.payload
            && t.tool == "git commit"
        {
            done.insert(t.call_id);
        }
    }
    drop(rows);
    drop(st);
    let todo: Vec<&Commit> = all
        .iter()
        .filter(|c| c.by_aider())
        .filter(|c| {
            let seen = done.contains(&c.sha);
            sum.already_present += usize::from(seen);
            !seen
        })
        .take(MAX_COMMITS)
        .collect();
    if todo.is_empty() {
        return Ok(sum);
    }
    let mut trees = Trees {
        root,
        store,
        objects: Objects::start(root)?,
        withholder: crate::withhold::Withholder::load(root),
        known: BTreeMap::new(),
        blobs: Vec::new(),
        dry_run: opts.dry_run,
    };
    let existing = crate::timetravel::timelines(conn)?
        .into_iter()
        .find(|t| t.label() == TIMELINE);
    let (timeline, mut cur) = match existing {
        Some(t) => (t.id, crate::store::read::load_worktree(conn, t.id)?),
        None => {
            let base = trees.tree(todo[0].parent.as_deref())?;
            if opts.dry_run {
                (store.ledger.meta.timeline, base)
            } else {
                store.ledger.blobs.sync()?;
                let head = crate::timetravel::resolve_point(
                    conn,
                    "HEAD",
                    store.ledger.meta.timeline,
                    Some(store.device),
                )?;
                let t = crate::timetravel::fork(
                    store,
                    &head,
                    &state_of(&base),
                    Some(TIMELINE.to_owned()),
                )?;
                sum.added += 1; // its checkpoint
                (t.id, base)
            }
        }
    };
    let human = crate::record::outside_agent();
    for c in todo {
        // Commits not by aider since the last step: nobody's call.
        let before = trees.tree(c.parent.as_deref())?;
        let between = changes(&cur, &before);
        let after = trees.tree(Some(&c.sha))?;
        let own = changes(&before, &after);
        let session = session_at(sessions, c.at);
        let trace = super::trace_of(AGENT, &session);
        let span = super::span_of(AGENT, &session, &c.sha);
        let subject = c.message.lines().next().unwrap_or("").to_owned();
        let mut intent = Draft::new(
            timeline,
            AGENT,
            Payload::ToolCall(ToolCall {
                tool: "git commit".into(),
                args: vec![c.sha.clone(), subject.clone()],
                result_summary: format!(
                    "committed {} by {}: {subject}",
                    &c.sha[..12.min(c.sha.len())],
                    c.author
                ),
                policy_verdict: "imported: not checked (read from git after the fact)".into(),
                call_id: c.sha.clone(),
                session: session.clone(),
                intent: true,
                ..Default::default()
            }),
        );
        intent.occurred_at = c.at;
        intent.role = opts.role.clone();
        intent.trace_id = trace.clone();
        intent.span_id = span.clone();
        let fc =
            |(path, after): (RepoPath, Option<WorktreeEntry>), agent: &str, own: bool| FileChange {
                timeline,
                path,
                from: None,
                after,
                agent: agent.to_owned(),
                causation: own.then_some(intent.event_id),
                occurred_at: c.at,
                trace: if own {
                    Trace {
                        trace_id: trace.clone(),
                        span_id: span.clone(),
                    }
                } else {
                    Trace::default()
                },
            };
        let mut fcs: Vec<FileChange> = between.into_iter().map(|x| fc(x, &human, false)).collect();
        let n_between = fcs.len();
        let own_n = own.len();
        fcs.extend(own.into_iter().map(|x| fc(x, AGENT, true)));
        sum.commits += 1;
        sum.changes += own_n;
        if opts.dry_run {
            sum.added += 1 + own_n + n_between;
            cur = after;
            continue;
        }
        store.ledger.blobs.sync()?;
        let res = store.writer.append(AppendRequest {
            drafts: vec![intent],
            changes: fcs,
            blobs: std::mem::take(&mut trees.blobs),
            ..Default::default()
        })?;
        sum.added += res.appended.len();
        cur = after;
    }
    Ok(sum)
}

/// The chat history file's sessions and the LLM history's calls, read.
pub fn read_sessions(history: &Path, llm: Option<&Path>) -> Result<Vec<Transcript>> {
    let text = std::fs::read(history)
        .with_context(|| format!("cannot read aider's chat history {}", history.display()))?;
    let text = String::from_utf8_lossy(&text);
    let mut sessions = parse_history(&text, history);
    if let Some(l) = llm {
        let t = std::fs::read(l)
            .with_context(|| format!("cannot read aider's LLM history {}", l.display()))?;
        assign_calls(
            &mut sessions,
            parse_llm_history(&String::from_utf8_lossy(&t)),
        );
    }
    Ok(sessions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_sessions_prompts_and_replies() {
        let md = "\n# aider chat started at 2026-12-01 10:00:00\n\n> Aider v0.86.1\n> Main model: gpt-5.5 with diff edit format\n\n#### add a hello function\n\nSure.\n\nhello.py\n```python\ndef hello(): pass\n```\n\n> Applied edit to hello.py\n\n#### thanks\n\nYou're welcome.\n\n# aider chat started at 2026-12-02 09:00:00\n\n#### again\n";
        let s = parse_history(md, Path::new("h.md"));
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].session, "aider-2026-12-01T10:00:00");
        assert_eq!(s[0].model, "gpt-5.5");
        let items: Vec<&Item> = s[0].items.iter().map(|(_, i)| i).collect();
        assert_eq!(items.len(), 4, "{items:?}");
        assert_eq!(items[0], &Item::Prompt("add a hello function".into()));
        assert!(
            matches!(items[1], Item::Reply(r) if r.starts_with("Sure.") && r.contains("def hello"))
        );
        assert_eq!(items[3], &Item::Reply("You're welcome.".into()));
        assert!(s[0].items.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(s[1].items.len(), 1);
    }

    #[test]
    fn llm_history_responses_are_calls_with_their_prompts() {
        let t = "TO LLM 2026-12-01T10:00:05\n-------\nSYSTEM you are\nUSER add hello\nLLM RESPONSE 2026-12-01T10:00:09\nASSISTANT Sure.\n";
        let calls = parse_llm_history(t);
        assert_eq!(calls.len(), 1);
        assert!(
            calls[0]
                .1
                .prompt
                .as_deref()
                .is_some_and(|p| p.contains("USER add hello"))
        );
        assert_eq!(calls[0].1.response.as_deref(), Some("ASSISTANT Sure."));
    }

    #[test]
    fn tree_changes_make_directories_first_and_remove_them_last() {
        let e = |kind: FileKind, h: &[u8]| WorktreeEntry {
            kind: kind as i32,
            mode: 0o644,
            size: 1,
            mtime_ns: 0,
            hash: (kind != FileKind::Dir).then(|| BlobHash::of(h)),
            withheld: false,
        };
        let p = |s: &str| RepoPath::parse(s).expect("path");
        let from: Tree = [
            (p("a"), e(FileKind::Dir, b"")),
            (p("a/x"), e(FileKind::File, b"x")),
            (p("same"), e(FileKind::File, b"s")),
        ]
        .into();
        let to: Tree = [
            (p("b"), e(FileKind::Dir, b"")),
            (p("b/y"), e(FileKind::File, b"y")),
            (p("same"), e(FileKind::File, b"s")),
        ]
        .into();
        let got: Vec<(String, bool)> = changes(&from, &to)
            .into_iter()
            .map(|(p, a)| (p.as_str().to_owned(), a.is_some()))
            .collect();
        assert_eq!(
            got,
            [
                ("b".to_owned(), true),
                ("b/y".to_owned(), true),
                ("a/x".to_owned(), false),
                ("a".to_owned(), false)
            ]
        );
    }

    #[test]
    fn aider_commits_are_known_by_their_attribution() {
        let c = |author: &str, msg: &str| Commit {
            sha: "a".into(),
            parent: None,
            author: author.into(),
            committer: "x".into(),
            at: 0,
            message: msg.into(),
        };
        assert!(c("Ann (aider)", "feat: x").by_aider());
        assert!(c("Ann", "aider: x").by_aider());
        assert!(
            c(
                "Ann",
                "feat\n\nCo-authored-by: aider (gpt-5.5) <aider@aider.chat>"
            )
            .by_aider()
        );
        assert!(!c("Ann", "feat: x").by_aider());
    }
}
