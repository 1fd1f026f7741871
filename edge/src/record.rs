//! Turning changes of the tree into events: the first checkpoint at `horde init`, a step
//! (`horde snapshot`, each flush of `horde run`), each committed with its index updates in one
//! transaction so the index never claims more than the ledger holds.

use std::path::Path;

use horde_core::proto::{self, Checkpoint, Manifest, ManifestEntry, event_body::Payload};
use horde_core::{DeviceKey, Draft, EventId, TimelineId};
use prost::Message as _;

use crate::scan::{self, Index, ScanOutcome};
use crate::store::writer::{
    AppendRequest, AppendResult, Appended, FileChange, WorktreeEntry, WorktreeOp,
};
use crate::store::{Result, Store};
use crate::withhold::Withholder;

/// The agent name for changes nobody recorded as they happened.
pub fn outside_agent() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "human".into())
}

/// Events committed in the same append as a step's changes (one commit, one fsync): before
/// them, after them, and the blobs they name.
#[derive(Debug, Default)]
pub struct Along {
    pub before: Vec<Draft>,
    pub after: Vec<Draft>,
    pub blobs: Vec<(horde_core::BlobHash, u64)>,
}

/// A recorder for one timeline: the in-memory index follows every commit. It loads the
/// manifests' deny globs once, for every file it hashes (see [`crate::withhold`]).
pub struct Recorder<'a> {
    pub store: &'a Store,
    pub index: Index,
    pub timeline: TimelineId,
    pub withhold: Withholder,
}

/// What one recorded step did.
#[derive(Debug, Default)]
pub struct Step {
    pub appended: Vec<Appended>,
    pub changes: usize,
    pub skipped: Vec<String>,
    pub warnings: Vec<String>,
}

impl<'a> Recorder<'a> {
    pub fn new(store: &'a Store) -> Result<Self> {
        Self::for_timeline(store, store.ledger.meta.timeline)
    }

    /// A recorder of `timeline` (its index as committed).
    pub fn for_timeline(store: &'a Store, timeline: TimelineId) -> Result<Self> {
        let index = crate::store::read::load_worktree(&store.ledger.conn, timeline)?;
        Ok(Self {
            store,
            index,
            timeline,
            withhold: Withholder::load(&store.ledger.layout.root),
        })
    }

    pub fn scan(&self) -> Result<ScanOutcome> {
        self.scan_with_progress(&|_, _| {})
    }

    /// [`Recorder::scan`] with a progress report (see [`crate::output::Spinner`]).
    pub fn scan_with_progress(
        &self,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<ScanOutcome> {
        scan::scan_with_progress(
            &self.store.ledger.layout.root,
            &self.store.ledger.blobs,
            &self.index,
            Some(&self.withhold),
            progress,
        )
    }

    /// Commits the changes of `outcome` (after `before` drafts, before `after` drafts), all
    /// in one transaction, and advances the in-memory index.
    pub fn commit(
        &mut self,
        outcome: ScanOutcome,
        agent: &str,
        cause: Option<EventId>,
        before: Vec<Draft>,
        after: Vec<Draft>,
        sign_head: bool,
    ) -> Result<Step> {
        self.commit_with(
            outcome,
            agent,
            cause,
            before,
            after,
            sign_head,
            &Default::default(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn commit_with(
        &mut self,
        outcome: ScanOutcome,
        agent: &str,
        cause: Option<EventId>,
        before: Vec<Draft>,
        after: Vec<Draft>,
        sign_head: bool,
        trace: &crate::store::writer::Trace,
    ) -> Result<Step> {
        let now = horde_core::time::now_micros();
        let mut changes: Vec<FileChange> = outcome
            .changes
            .iter()
            .map(|c| FileChange {
                trace: trace.clone(),
                ..c.to_file_change(self.timeline, agent, cause, now)
            })
            .collect();
        changes.extend(outcome.touched.iter().map(|(path, e)| FileChange {
            timeline: self.timeline,
            path: path.clone(),
            from: None,
            after: Some(e.clone()),
            agent: agent.to_owned(),
            causation: cause,
            occurred_at: now,
            trace: Default::default(),
        }));
        // New blobs are durable before any event naming them commits: the writer makes
        // them so (small ones in the same transaction, through the blob journal).
        let result = if before.is_empty() && changes.is_empty() && after.is_empty() {
            AppendResult::default()
        } else {
            self.store.writer.append(AppendRequest {
                drafts: before,
                changes,
                after,
                blobs: outcome.blobs,
                worktree: Vec::new(),
                sign_head,
                timelines: Vec::new(),
            })?
        };
        // The tree on disk is what the scan saw, whoever recorded it.
        scan::apply(&mut self.index, &outcome.ops);
        Ok(Step {
            appended: result.appended,
            changes: result.changes,
            skipped: outcome.skipped,
            warnings: outcome.warnings,
        })
    }

    /// Commits the changes of `outcome` that `keep` accepts, caused by `cause`, with the
    /// events of `along`; the other changes stay unrecorded: the index keeps their old state,
    /// so the next scan of their places finds them again. Returns the step and the changes
    /// left.
    pub fn commit_some(
        &mut self,
        mut outcome: ScanOutcome,
        keep: &dyn Fn(&scan::Change) -> bool,
        agent: &str,
        cause: Option<EventId>,
        trace: &crate::store::writer::Trace,
        along: Along,
    ) -> Result<(Step, Vec<scan::Change>)> {
        let (kept, left): (Vec<_>, Vec<_>) = outcome.changes.into_iter().partition(|c| keep(c));
        outcome.changes = kept;
        let left_paths: std::collections::BTreeSet<&horde_core::RepoPath> = left
            .iter()
            .flat_map(|c| std::iter::once(&c.path).chain(c.from.as_ref()))
            .collect();
        outcome.ops.retain(|op| match op {
            WorktreeOp::Put(p, _) | WorktreeOp::Remove(p) => !left_paths.contains(p),
        });
        outcome.blobs.extend(along.blobs);
        let step = self.commit_with(
            outcome,
            agent,
            cause,
            along.before,
            along.after,
            false,
            trace,
        )?;
        Ok((step, left))
    }

    /// Scans and records whatever changed as one step.
    pub fn step(
        &mut self,
        agent: &str,
        cause: Option<EventId>,
        before: Vec<Draft>,
        sign_head: bool,
    ) -> Result<Step> {
        let outcome = self.scan()?;
        self.commit(outcome, agent, cause, before, Vec::new(), sign_head)
    }
}

/// What `horde init` did.
pub struct Init {
    pub store: Store,
    pub entries: usize,
    pub total_bytes: u64,
    pub skipped: Vec<String>,
    pub warnings: Vec<String>,
}

/// Creates `.horde/` in `root` and records the whole tree as the first `Checkpoint`.
pub fn init(root: &Path, key: DeviceKey) -> Result<Init> {
    init_with_progress(root, key, &|_, _| {})
}

/// [`init`] with a progress report while the tree is scanned.
pub fn init_with_progress(
    root: &Path,
    key: DeviceKey,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Init> {
    let store = Store::init(root, key)?;
    let (entries, total_bytes, skipped, warnings) = {
        let mut rec = Recorder::new(&store)?;
        let mut outcome = rec.scan_with_progress(progress)?;
        let manifest = manifest_of(outcome.ops.iter().filter_map(|op| match op {
            WorktreeOp::Put(p, e) => Some((p, e)),
            WorktreeOp::Remove(_) => None,
        }));
        let bytes = manifest.encode_to_vec();
        let manifest_hash = store.ledger.blobs.put_bytes(&bytes)?;
        let entries = manifest.entries.len();
        let total_bytes = manifest.entries.iter().map(|e| e.size).sum();
        let checkpoint = Draft::new(
            rec.timeline,
            outside_agent(),
            Payload::Checkpoint(Checkpoint {
                manifest_blob: manifest_hash.to_vec(),
                files: entries as u64,
                total_bytes,
            }),
        );
        outcome.blobs.push((manifest_hash, bytes.len() as u64));
        let (skipped, warnings) = (outcome.skipped.clone(), outcome.warnings.clone());
        // Every entry is a create (so a path's history starts with it, also in the cloud),
        // then the checkpoint lists them all.
        rec.commit(
            outcome,
            &outside_agent(),
            None,
            Vec::new(),
            vec![checkpoint],
            true,
        )?;
        (entries, total_bytes, skipped, warnings)
    };
    Ok(Init {
        store,
        entries,
        total_bytes,
        skipped,
        warnings,
    })
}

/// A manifest of entries, sorted by path.
pub fn manifest_of<'p>(
    entries: impl Iterator<Item = (&'p horde_core::RepoPath, &'p WorktreeEntry)>,
) -> Manifest {
    let mut list: Vec<ManifestEntry> = entries
        .map(|(p, e)| ManifestEntry {
            path: p.as_str().to_owned(),
            kind: e.kind,
            mode: e.mode,
            size: e.size,
            hash: e.hash.map(|h| h.to_vec()).unwrap_or_default(),
            withheld: e.withheld,
        })
        .collect();
    list.sort_by(|a, b| a.path.cmp(&b.path));
    proto::Manifest { entries: list }
}
