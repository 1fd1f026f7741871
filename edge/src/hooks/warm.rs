//! What a hook call records with, kept between calls by the daemon (`horde daemon`): the open
//! store, each role's compiled policy (compiled again when a manifest changes), the worktree
//! index and, with a [`Watcher`], which directories changed since the last scan. A one-off
//! `horde hook` process makes the same thing for one call (no watcher: it scans the tree).
//!
//! What other processes do to the ledger is noticed through SQLite's `data_version`: the
//! index is reloaded after anyone else's commit, and the store is opened again when the
//! current timeline or `.horde/config.toml` changed. A change recorded twice by two processes
//! is dropped by the writer, which resolves changes against the committed index.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use horde_core::{DeviceKey, EventId};

use crate::gate::RolePolicy;
use crate::record::Recorder;
use crate::scan::{self, Change, Dirty, Index, ScanOutcome};
use crate::store::{Layout, Store};
use crate::watch::Watcher;
use crate::withhold::Withholder;

thread_local! {
    /// Where [`warn`] puts what it is told while a call is recorded for someone else.
    static NOTES: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

/// Tells the person running the hook something (on the hook's stderr): printed here, or
/// handed back with the answer when the daemon records the call ([`collecting`]).
pub fn warn(msg: String) {
    let kept = NOTES.with(|n| match n.borrow_mut().as_mut() {
        Some(v) => {
            v.push(msg.clone());
            true
        }
        None => false,
    });
    if !kept {
        eprintln!("{msg}");
    }
}

/// Runs `f`, keeping what it [`warn`]s instead of printing it.
pub fn collecting<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    NOTES.with(|n| *n.borrow_mut() = Some(Vec::new()));
    let out = f();
    let notes = NOTES.with(|n| n.borrow_mut().take()).unwrap_or_default();
    (out, notes)
}

/// A file's identity and version as far as caching goes: (mtime ns, size, inode).
type Stamp = Option<(i64, u64, u64)>;
/// The manifests a cached thing was made from, stamped.
type Sources = Vec<(PathBuf, Stamp)>;

fn stamp(p: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p)
        .ok()
        .map(|m| (m.mtime() * 1_000_000_000 + m.mtime_nsec(), m.len(), m.ino()))
}

/// The manifest directories in scope and every file in them, stamped: a cached policy is good
/// while this is unchanged.
fn manifests_stamp(root: &Path) -> Sources {
    let dirs = [
        root.join(".horde").join("agents"),
        crate::config::user_config_dir().join("agents"),
    ];
    let mut out = Vec::new();
    for d in dirs {
        out.push((d.clone(), stamp(&d)));
        if let Ok(entries) = std::fs::read_dir(&d) {
            let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            files.sort();
            out.extend(files.into_iter().map(|f| {
                let s = stamp(&f);
                (f, s)
            }));
        }
    }
    out
}

/// The store and the caches of one repository.
pub struct Warm {
    pub store: Store,
    pub state: State,
    /// Many calls (the daemon): follows what other processes do to the ledger.
    lasting: bool,
    config_stamp: Stamp,
    data_version: Option<i64>,
}

/// Everything but the store (borrowed separately while the store is in use).
#[derive(Default)]
pub struct State {
    policies: HashMap<String, (Sources, Arc<RolePolicy>)>,
    /// The worktree index as this process last committed or loaded it; None: load it.
    index: Option<(Index, Withholder, Sources)>,
    watcher: Option<Watcher>,
    /// What decisions read from the log.
    pub facts: crate::gate::LogFacts,
}

/// The hook's own writes on the reading connection are to `agent_sessions` and `agent_calls`,
/// a cache of the log: they need not wait for the disk. In WAL mode they survive a crash of
/// the process, and the writer's next commit (FULL) flushes them with its own frames.
fn relax(store: &Store) -> Result<()> {
    store
        .ledger
        .conn
        .pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

impl Warm {
    /// For one call: nothing is kept, the tree is scanned whole.
    pub fn once(store: Store) -> Result<Self> {
        relax(&store)?;
        Ok(Self {
            store,
            state: State::default(),
            lasting: false,
            config_stamp: None,
            data_version: None,
        })
    }

    /// For many calls (the daemon): the store opened with `key`, the tree watched.
    pub fn daemon(layout: Layout, key: DeviceKey) -> Result<Self> {
        let config_stamp = stamp(&layout.config());
        let watcher = Watcher::new(&layout.root).context("cannot start an inotify watcher")?;
        let store = Store::open(layout, key).context("cannot open the ledger")?;
        relax(&store)?;
        Ok(Self {
            store,
            state: State {
                watcher: Some(watcher),
                ..State::default()
            },
            lasting: true,
            config_stamp,
            data_version: None,
        })
    }

    /// Watches the whole tree now, with a scan that records nothing: the first call then
    /// looks only where the tree differs from the index.
    pub fn prime(&mut self) -> Result<()> {
        let rec = self.state.recorder(&self.store)?;
        let result = self.state.scan(&rec, true);
        self.state.keep(rec);
        let (outcome, _) = result?;
        if let Some(w) = &mut self.state.watcher {
            w.give_back(dirty_of(&outcome.changes));
        }
        self.settle();
        Ok(())
    }

    /// Before a call: takes in what other processes did since the last call.
    pub fn refresh(&mut self) -> Result<()> {
        if !self.lasting {
            return Ok(());
        }
        let version: i64 = self
            .store
            .ledger
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?;
        let config = stamp(&self.store.ledger.layout.config());
        if self.data_version == Some(version) && config == self.config_stamp {
            return Ok(());
        }
        let meta = crate::store::read_meta(&self.store.ledger.conn)?;
        if meta.timeline != self.store.ledger.meta.timeline || config != self.config_stamp {
            // Another timeline's index may differ from the tree anywhere: walk it all once.
            if meta.timeline != self.store.ledger.meta.timeline
                && let Some(w) = &mut self.state.watcher
            {
                w.give_back(Dirty::everything());
            }
            let layout = self.store.ledger.layout.clone();
            let key = crate::session::load_key()?;
            self.store = Store::open(layout, key).context("cannot open the ledger")?;
            relax(&self.store)?;
            self.config_stamp = config;
        }
        // Someone else committed: the index may be behind.
        self.state.index = None;
        Ok(())
    }

    /// After a call: what the ledger is now, as this process left it.
    pub fn settle(&mut self) {
        if self.lasting {
            self.data_version = self
                .store
                .ledger
                .conn
                .query_row("PRAGMA data_version", [], |r| r.get(0))
                .ok();
        }
    }
}

impl State {
    /// `role`'s compiled policy for the repository at `root` (compiled again when a manifest
    /// in scope changed).
    pub fn policy(&mut self, root: &Path, role: &str) -> Result<Arc<RolePolicy>> {
        let now = manifests_stamp(root);
        if let Some((s, p)) = self.policies.get(role)
            && *s == now
        {
            return Ok(p.clone());
        }
        let scope = crate::gate::scope_at(Some(root.to_owned()));
        let p = Arc::new(crate::gate::role_policy_in(&scope, role)?);
        self.policies.insert(role.to_owned(), (now, p.clone()));
        Ok(p)
    }

    fn recorder<'s>(&mut self, store: &'s Store) -> Result<Recorder<'s>> {
        let root = &store.ledger.layout.root;
        match self.index.take() {
            Some((index, withhold, stamp)) => Ok(Recorder {
                store,
                index,
                timeline: store.ledger.meta.timeline,
                // The deny globs follow the manifests.
                withhold: if stamp == manifests_stamp(root) {
                    withhold
                } else {
                    Withholder::load(root)
                },
            }),
            None => Ok(Recorder::new(store)?),
        }
    }

    fn keep(&mut self, rec: Recorder<'_>) {
        // A one-off call has no use for it.
        if self.watcher.is_some() {
            let stamp = manifests_stamp(&rec.store.ledger.layout.root);
            self.index = Some((rec.index, rec.withhold, stamp));
        }
    }

    /// What changed: the directories the watcher saw change (or everything), or a full scan.
    fn scan(&mut self, rec: &Recorder<'_>, full: bool) -> Result<(ScanOutcome, Dirty)> {
        let Some(w) = &mut self.watcher else {
            return Ok((rec.scan()?, Dirty::everything()));
        };
        let mut dirty = w.drain();
        dirty.full |= full;
        let on_dir = w.healthy().then(|| w.on_dir());
        let root = &rec.store.ledger.layout.root;
        match scan::scan_dirty(
            root,
            &rec.store.ledger.blobs,
            &rec.index,
            Some(&rec.withhold),
            &dirty,
            on_dir,
        ) {
            Ok(o) => Ok((o, dirty)),
            Err(e) => {
                w.give_back(dirty);
                Err(e.into())
            }
        }
    }

    /// Records what changed as `agent`'s, caused by `cause`, keeping only what `keep`
    /// accepts (the rest is found again by the next scan), in one append with `along`'s
    /// events. `full`: walk the whole tree.
    #[allow(clippy::too_many_arguments)]
    pub fn record_changes(
        &mut self,
        store: &Store,
        keep: &dyn Fn(&Change) -> bool,
        agent: &str,
        cause: Option<EventId>,
        trace: &crate::store::writer::Trace,
        full: bool,
        along: crate::record::Along,
    ) -> Result<()> {
        let mut rec = self.recorder(store)?;
        let (outcome, dirty) = match self.scan(&rec, full) {
            Ok(x) => x,
            Err(e) => {
                self.keep(rec);
                return Err(e);
            }
        };
        let result = rec.commit_some(outcome, keep, agent, cause, trace, along);
        self.keep(rec);
        match result {
            Ok((_, left)) => {
                if let Some(w) = &mut self.watcher {
                    w.give_back(dirty_of(&left));
                }
                Ok(())
            }
            Err(e) => {
                if let Some(w) = &mut self.watcher {
                    w.give_back(dirty);
                }
                // The index may not match what was committed: load it again.
                self.index = None;
                Err(e.into())
            }
        }
    }
}

/// The places a scan must look at again to find `changes` again.
fn dirty_of(changes: &[Change]) -> Dirty {
    let mut d = Dirty::default();
    let dir = horde_core::proto::FileKind::Dir as i32;
    for c in changes {
        for p in std::iter::once(&c.path).chain(c.from.as_ref()) {
            d.dirs.insert(
                p.as_str()
                    .rsplit_once('/')
                    .map_or("", |(d, _)| d)
                    .to_owned(),
            );
        }
        if c.after.as_ref().is_some_and(|a| a.kind == dir) {
            d.deep.insert(c.path.as_str().to_owned());
        }
    }
    d
}
