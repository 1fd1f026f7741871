//! The one writer thread of a process: appends events, records blobs and updates the
//! worktree index, committing whatever requests are waiting in one transaction (group commit).
//!
//! Invariants:
//! - Each transaction starts with `BEGIN IMMEDIATE` and reads the chain tip inside it, so
//!   concurrent processes serialize and chains stay gap-free.
//! - A request's events, its blobs rows and its worktree changes commit together or not at all.
//! - A chain head is signed whenever a device's chain passes a multiple of the head interval,
//!   and at the end of any request that asks for one (a sync, the end of `horde run`).
//! - Every `Checkpoint` event is listed in `checkpoints` in its own transaction. After a
//!   request's file changes, a timeline that has had at least `checkpoint_interval` changes
//!   (and a quarter of its entries) since its last checkpoint gets one, built from the
//!   committed worktree index in the same transaction: it is exactly the tree at that point.
//! - Callers wait on a oneshot channel: `blocking` from threads, `.await` from async code; the
//!   async runtime is never blocked by SQLite.

use std::sync::mpsc;
use std::thread::JoinHandle;

use horde_core::proto::{StateChange, event_body::Payload, state_change::Op};
use horde_core::{
    BlobHash, BuiltEvent, ChainTip, DeviceId, DeviceKey, Draft, EventHash, EventId, ProjectId,
    RepoPath, TimelineId, build_event,
};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::{Result, StoreError};

/// Most events committed in one transaction; more waiting requests go in the next.
pub const MAX_EVENTS_PER_COMMIT: usize = 20_000;
/// Requests that may wait for the writer before senders block (back-pressure).
pub const QUEUE_DEPTH: usize = 1024;
/// Default head interval: a signed chain head at least every this many events.
pub const DEFAULT_HEAD_INTERVAL: u64 = 1000;
/// Default checkpoint interval: a checkpoint after at least this many file changes.
pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 1000;

/// A timeline to create with a request (a fork), before its events.
#[derive(Debug, Clone)]
pub struct NewTimeline {
    pub id: TimelineId,
    pub parent: Option<TimelineId>,
    /// The parent's last local event the fork includes (0: none).
    pub fork_id: i64,
    pub fork_event: Option<EventId>,
    pub name: Option<String>,
}

/// One row of the worktree index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreeEntry {
    pub kind: i32,
    pub mode: u32,
    pub size: u64,
    pub mtime_ns: i64,
    pub hash: Option<BlobHash>,
    /// The blob stays on this device (a secret was found in it, or a manifest denies the
    /// path): its StateChange says so and sync never sends it.
    pub withheld: bool,
}

#[derive(Debug, Clone)]
pub enum WorktreeOp {
    Put(RepoPath, WorktreeEntry),
    Remove(RepoPath),
}

/// "`path` now is `after`" (or is gone), as a scan saw it. The writer turns it into a
/// `StateChange` against the worktree index *as committed*, inside the transaction: a change
/// another process already recorded is dropped, and a stale `before` is taken from the
/// index, so concurrent recorders of one tree never record a change twice.
#[derive(Debug, Clone)]
pub struct FileChange {
    pub timeline: TimelineId,
    pub path: RepoPath,
    /// The scan paired this with a deleted path of the same content: a rename.
    pub from: Option<RepoPath>,
    pub after: Option<WorktreeEntry>,
    pub agent: String,
    pub causation: Option<EventId>,
    pub occurred_at: i64,
    /// The trace and span the change belongs to (an agent's session and tool call), or empty.
    pub trace: Trace,
}

/// An event's trace and span ids (empty: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
}

/// Everything one append commits atomically, in this order: `drafts`, then the events
/// `changes` resolve to, then `after`.
#[derive(Debug, Default)]
pub struct AppendRequest {
    pub drafts: Vec<Draft>,
    pub changes: Vec<FileChange>,
    pub after: Vec<Draft>,
    /// Blobs already written to `blobs/` that these events reference: (hash, size).
    pub blobs: Vec<(BlobHash, u64)>,
    /// Index updates applied as they are (a checkpoint lists the same entries).
    pub worktree: Vec<(TimelineId, WorktreeOp)>,
    /// Sign the chain head after these events, whatever the interval says.
    pub sign_head: bool,
    /// Timelines created first (a fork and its first checkpoint commit together).
    pub timelines: Vec<NewTimeline>,
}

/// What an append produced: one per event, in order.
#[derive(Debug, Clone)]
pub struct Appended {
    pub id: EventId,
    pub seq: u64,
    pub hash: EventHash,
}

#[derive(Debug, Clone, Default)]
pub struct AppendResult {
    pub appended: Vec<Appended>,
    /// How many `StateChange` events `changes` resolved to.
    pub changes: usize,
}

type Reply = oneshot::Sender<Result<AppendResult>>;

pub struct Writer {
    tx: Option<mpsc::SyncSender<(AppendRequest, Reply)>>,
    thread: Option<JoinHandle<()>>,
}

/// A pending append: wait with [`Pending::wait`] (threads) or `.await` on [`Pending::rx`].
pub struct Pending {
    pub rx: oneshot::Receiver<Result<AppendResult>>,
}

impl Pending {
    pub fn wait(self) -> Result<AppendResult> {
        self.rx
            .blocking_recv()
            .map_err(|_| StoreError::WriterGone)?
    }
}

struct State {
    conn: Connection,
    project: ProjectId,
    key: DeviceKey,
    head_interval: u64,
    checkpoints: CheckpointPolicy,
    builder: BuilderThread,
}

/// When the writer adds a checkpoint, and where it puts the manifest.
pub struct CheckpointPolicy {
    pub interval: u64,
    pub blobs: super::BlobStore,
}

/// The writer's builder thread: builds (encodes, chains, hashes) events while the writer
/// inserts the previous ones. Messages carry the transaction's generation, so chunks built
/// for a transaction that failed are recognised and dropped.
struct BuilderThread {
    jobs: mpsc::Sender<Job>,
    events: mpsc::Receiver<(u64, Built)>,
    generation: u64,
}

enum Job {
    Begin { generation: u64, tip: ChainTip },
    Request(Vec<Draft>),
}

impl BuilderThread {
    fn start(project: ProjectId, device: DeviceId) -> Self {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (ev_tx, events) = mpsc::sync_channel::<(u64, Built)>(PIPELINE_QUEUE);
        std::thread::Builder::new()
            .name("horde-builder".into())
            .spawn(move || {
                let mut current = (
                    0,
                    Builder {
                        project,
                        device,
                        tip: ChainTip::default(),
                    },
                );
                for job in job_rx {
                    match job {
                        Job::Begin { generation, tip } => {
                            current = (
                                generation,
                                Builder {
                                    project,
                                    device,
                                    tip,
                                },
                            )
                        }
                        Job::Request(drafts) => {
                            let generation = current.0;
                            if !current
                                .1
                                .build_request(drafts, &mut |m| ev_tx.send((generation, m)).is_ok())
                            {
                                return;
                            }
                        }
                    }
                }
            })
            .expect("the OS can start a thread");
        Self {
            jobs,
            events,
            generation: 0,
        }
    }
}

impl Writer {
    /// Starts the writer thread on its own connection to the ledger.
    pub fn start(
        conn: Connection,
        project: ProjectId,
        key: DeviceKey,
        head_interval: u64,
        checkpoints: CheckpointPolicy,
    ) -> Self {
        let (tx, rx) = mpsc::sync_channel::<(AppendRequest, Reply)>(QUEUE_DEPTH);
        let builder = BuilderThread::start(project, key.device_id());
        let mut state = State {
            conn,
            project,
            key,
            head_interval: head_interval.max(1),
            checkpoints,
            builder,
        };
        let thread = std::thread::Builder::new()
            .name("horde-writer".into())
            .spawn(move || state.run(rx))
            .expect("the OS can start a thread");
        Self {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Queues `req`; the returned [`Pending`] resolves once it is committed.
    pub fn submit(&self, req: AppendRequest) -> Pending {
        let (reply, rx) = oneshot::channel();
        if let Some(tx) = &self.tx {
            // If the thread is gone, `reply` is dropped and the caller sees WriterGone.
            let _ = tx.send((req, reply));
        }
        Pending { rx }
    }

    /// Appends and waits (for threads, never from async code).
    pub fn append(&self, req: AppendRequest) -> Result<AppendResult> {
        self.submit(req).wait()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl State {
    fn run(&mut self, rx: mpsc::Receiver<(AppendRequest, Reply)>) {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            let size = |r: &AppendRequest| r.drafts.len() + r.changes.len() + r.after.len();
            let mut events = size(&group[0].0);
            while events < MAX_EVENTS_PER_COMMIT {
                match rx.try_recv() {
                    Ok(next) => {
                        events += size(&next.0);
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
    }

    fn commit_group(&mut self, mut group: Vec<(AppendRequest, Reply)>) {
        match self.try_commit(&mut group) {
            Ok(results) => {
                for ((_, reply), result) in group.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                // The whole transaction rolled back: every request in it fails alike.
                let msg = e.to_string();
                tracing::error!(error = %msg, "ledger commit failed");
                let mut first = Some(e);
                for (_, reply) in group {
                    let err = first.take().unwrap_or_else(|| {
                        StoreError::io("ledger commit failed", std::io::Error::other(msg.clone()))
                    });
                    let _ = reply.send(Err(err));
                }
            }
        }
    }

    /// One transaction for the whole group. A request whose events cannot be built (too
    /// large) fails alone and writes nothing (a savepoint per request); a database error fails
    /// the whole group.
    ///
    /// Building events (encode, chain, SHA-256) is sequential by nature (each body names the
    /// previous hash) but independent of SQLite: for groups of [`PIPELINE_MIN_EVENTS`] or
    /// more, a scoped builder thread builds while this thread inserts, so on two cores an
    /// append costs about max(build, insert) instead of their sum.
    fn try_commit(
        &mut self,
        group: &mut [(AppendRequest, Reply)],
    ) -> Result<Vec<Result<AppendResult>>> {
        let State {
            conn,
            project,
            key,
            head_interval,
            checkpoints,
            builder,
        } = self;
        let (project, head_interval, device) = (*project, *head_interval, key.device_id());
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let start_tip = chain_tip(&tx, device)?;
        let mut pos = Position {
            tip: start_tip,
            next_id: tx
                .prepare_cached("SELECT COALESCE(MAX(id), 0) + 1 FROM events")?
                .query_row([], |r| r.get(0))?,
            last_head: tx
                .prepare_cached(
                    "SELECT COALESCE(MAX(seq), 0) FROM chain_heads WHERE device_id = ?1",
                )?
                .query_row([device.as_bytes()], |r| r.get(0))?,
            segment: Segment::default(),
        };
        let total: usize = group
            .iter()
            .map(|(r, _)| r.drafts.len() + r.changes.len() + r.after.len())
            .sum();
        let mut source = if total >= PIPELINE_MIN_EVENTS {
            builder.generation += 1;
            let _ = builder.jobs.send(Job::Begin {
                generation: builder.generation,
                tip: start_tip,
            });
            Source::Thread(builder)
        } else {
            Source::Inline {
                builder: Builder {
                    project,
                    device,
                    tip: start_tip,
                },
                ready: Vec::new().into_iter(),
            }
        };
        let mut results = Vec::with_capacity(group.len());
        let mut st = Statements::new(&tx)?;
        let mut savepoint = tx.prepare_cached("SAVEPOINT horde_request")?;
        let mut release = tx.prepare_cached("RELEASE horde_request")?;
        let now = horde_core::time::now_micros();
        for (req, _) in group.iter_mut() {
            savepoint.execute([])?;
            let saved = pos.clone();
            for t in std::mem::take(&mut req.timelines) {
                insert_timeline(&tx, &t, now)?;
            }
            for (timeline, op) in std::mem::take(&mut req.worktree) {
                st.apply(&timeline, &op)?;
            }
            let (mut drafts, changes, per_timeline) = st.resolve_changes(req)?;
            drafts.append(&mut req.after);
            for (timeline, n) in per_timeline {
                let has_one = drafts
                    .iter()
                    .any(|d| d.timeline == timeline && matches!(d.payload, Payload::Checkpoint(_)));
                if has_one {
                    continue; // the request writes its own (init, fork)
                }
                if let Some((draft, hash, size)) =
                    checkpoint_if_due(&tx, checkpoints, timeline, n, now)?
                {
                    st.ins_blob
                        .execute(params![hash.as_bytes(), size as i64, now])?;
                    drafts.push(draft);
                }
            }
            source.submit(drafts);
            let mut appended = Vec::new();
            let mut failure = None;
            loop {
                match source.next().ok_or(StoreError::WriterGone)? {
                    Built::Events(rows) => {
                        for row in rows {
                            st.insert_event(&pos, device, &row)?;
                            debug_assert_eq!(row.ev.seq, pos.tip.seq + 1);
                            pos.segment
                                .add(pos.next_id, row.ev.seq, &row.ev.id, row.occurred_at);
                            pos.next_id += 1;
                            pos.tip.advance(row.ev.hash);
                            if pos.tip.seq >= pos.last_head + head_interval {
                                insert_head(&tx, key, project, pos.tip)?;
                                pos.last_head = pos.tip.seq;
                            }
                            appended.push(Appended {
                                id: row.ev.id,
                                seq: row.ev.seq,
                                hash: row.ev.hash,
                            });
                        }
                    }
                    Built::Done => break,
                    Built::Failed(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = failure {
                tx.prepare_cached("ROLLBACK TO horde_request")?
                    .execute([])?;
                release.execute([])?;
                pos = saved;
                results.push(Err(e));
                continue;
            }
            for (hash, size) in &req.blobs {
                st.ins_blob
                    .execute(params![hash.as_bytes(), *size as i64, now])?;
            }
            if req.sign_head && pos.tip.seq > pos.last_head {
                insert_head(&tx, key, project, pos.tip)?;
                pos.last_head = pos.tip.seq;
            }
            release.execute([])?;
            results.push(Ok(AppendResult { appended, changes }));
        }
        // The cached statements borrow the transaction; they must go before it commits.
        drop((st, savepoint, release));
        pos.segment.insert(&tx, device)?;
        // Small blobs become durable with this commit; the rest (a checkpoint's manifest, large
        // files) before it.
        let journal = checkpoints.blobs.take_journal();
        let committed = super::blobs::journal_rows(&tx, &checkpoints.blobs, &journal, now)
            .and_then(|()| checkpoints.blobs.sync())
            .and_then(|()| tx.commit().map_err(StoreError::from));
        if let Err(e) = committed {
            checkpoints.blobs.untake_journal(journal);
            return Err(e);
        }
        Ok(results)
    }
}

/// Groups at least this large are built on the builder thread while inserted; smaller ones
/// inline (no cross-thread latency for a single event).
const PIPELINE_MIN_EVENTS: usize = 64;
/// Built events that may wait for insertion.
const PIPELINE_QUEUE: usize = 32;

/// Where the chain and the table stand inside a transaction.
#[derive(Clone)]
struct Position {
    tip: ChainTip,
    next_id: i64,
    last_head: u64,
    segment: Segment,
}

/// Built events travel in chunks: one channel hand-off per chunk, not per event.
const BUILD_CHUNK: usize = 64;

enum Built {
    Events(Vec<Row>),
    /// The request's events were all sent.
    Done,
    /// The request cannot be built; its events sent so far must be rolled back.
    Failed(StoreError),
}

/// Builds events on a chain, request by request; a failed request leaves the chain as it was.
struct Builder {
    project: ProjectId,
    device: DeviceId,
    tip: ChainTip,
}

impl Builder {
    /// Sends each built event, then `Done` or `Failed`. Returns false when the receiver is gone.
    fn build_request(&mut self, drafts: Vec<Draft>, send: &mut dyn FnMut(Built) -> bool) -> bool {
        let saved = self.tip;
        let mut chunk = Vec::with_capacity(BUILD_CHUNK.min(drafts.len()));
        for d in drafts {
            match build_row(self.project, self.device, &self.tip, d) {
                Ok(row) => {
                    self.tip.advance(row.ev.hash);
                    chunk.push(row);
                    if chunk.len() == BUILD_CHUNK
                        && !send(Built::Events(std::mem::replace(
                            &mut chunk,
                            Vec::with_capacity(BUILD_CHUNK),
                        )))
                    {
                        return false;
                    }
                }
                Err(e) => {
                    self.tip = saved;
                    return send(Built::Failed(e));
                }
            }
        }
        if !chunk.is_empty() && !send(Built::Events(chunk)) {
            return false;
        }
        send(Built::Done)
    }
}

enum Source<'b> {
    Inline {
        builder: Builder,
        ready: std::vec::IntoIter<Built>,
    },
    Thread(&'b mut BuilderThread),
}

impl Source<'_> {
    fn submit(&mut self, drafts: Vec<Draft>) {
        match self {
            Source::Inline { builder, ready } => {
                let mut out = Vec::with_capacity(drafts.len() + 1);
                builder.build_request(drafts, &mut |m| {
                    out.push(m);
                    true
                });
                *ready = out.into_iter();
            }
            Source::Thread(b) => {
                // If the builder is gone, `next` reports it.
                let _ = b.jobs.send(Job::Request(drafts));
            }
        }
    }

    fn next(&mut self) -> Option<Built> {
        match self {
            Source::Inline { ready, .. } => ready.next(),
            Source::Thread(b) => loop {
                let (generation, m) = b.events.recv().ok()?;
                if generation == b.generation {
                    return Some(m);
                }
            },
        }
    }
}

/// File changes per timeline in one request.
type PerTimeline = Vec<(TimelineId, u64)>;

/// The prepared statements of one transaction.
struct Statements<'t> {
    ins_event: rusqlite::CachedStatement<'t>,
    ins_blob: rusqlite::CachedStatement<'t>,
    put_wt: rusqlite::CachedStatement<'t>,
    del_wt: rusqlite::CachedStatement<'t>,
    get_wt: rusqlite::CachedStatement<'t>,
    ins_checkpoint: rusqlite::CachedStatement<'t>,
    reset_since: rusqlite::CachedStatement<'t>,
}

impl<'t> Statements<'t> {
    fn new(tx: &'t rusqlite::Transaction<'_>) -> Result<Self> {
        Ok(Self {
            ins_event: tx.prepare_cached(
                "INSERT INTO events (id, device_id, seq, event_id, hash, body, type, agent, timeline, occurred_at, path)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?,
            ins_blob: tx.prepare_cached("INSERT OR IGNORE INTO blobs (hash, size, created_at) VALUES (?1, ?2, ?3)")?,
            put_wt: tx.prepare_cached(
                "INSERT OR REPLACE INTO worktree (timeline, path, kind, mode, size, mtime_ns, hash, withheld)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?,
            del_wt: tx.prepare_cached("DELETE FROM worktree WHERE timeline = ?1 AND path = ?2")?,
            get_wt: tx.prepare_cached(
                "SELECT kind, mode, size, mtime_ns, hash, withheld FROM worktree WHERE timeline = ?1 AND path = ?2",
            )?,
            ins_checkpoint: tx.prepare_cached(
                "INSERT OR REPLACE INTO checkpoints (timeline, id, manifest) VALUES (?1, ?2, ?3)",
            )?,
            reset_since: tx
                .prepare_cached("UPDATE timelines SET since_checkpoint = 0 WHERE id = ?1")?,
        })
    }

    fn insert_event(&mut self, pos: &Position, device: DeviceId, row: &Row) -> Result<()> {
        if let Some(manifest) = &row.checkpoint {
            self.ins_checkpoint
                .execute(params![row.timeline.as_bytes(), pos.next_id, manifest])?;
            self.reset_since.execute([row.timeline.as_bytes()])?;
        }
        self.ins_event.execute(params![
            pos.next_id,
            device.as_bytes(),
            row.ev.seq as i64,
            row.ev.id.as_bytes(),
            row.ev.hash.as_bytes(),
            row.ev.body,
            row.ev.kind,
            row.agent,
            row.timeline.as_bytes(),
            row.occurred_at,
            row.path,
        ])?;
        Ok(())
    }

    fn lookup(&mut self, timeline: &TimelineId, p: &RepoPath) -> Result<Option<WorktreeEntry>> {
        Ok(self
            .get_wt
            .query_row(params![timeline.as_bytes(), p.as_str()], |r| {
                let hash: Option<Vec<u8>> = r.get(4)?;
                Ok(WorktreeEntry {
                    kind: r.get(0)?,
                    mode: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                    mtime_ns: r.get(3)?,
                    hash: hash.as_deref().and_then(BlobHash::from_slice),
                    withheld: r.get(5)?,
                })
            })
            .optional()?)
    }

    fn apply(&mut self, timeline: &TimelineId, op: &WorktreeOp) -> Result<()> {
        match op {
            WorktreeOp::Put(path, e) => self.put_wt.execute(params![
                timeline.as_bytes(),
                path.as_str(),
                e.kind,
                e.mode,
                e.size as i64,
                e.mtime_ns,
                e.hash.as_ref().map(|h| h.as_bytes().to_vec()),
                e.withheld,
            ])?,
            WorktreeOp::Remove(path) => self
                .del_wt
                .execute(params![timeline.as_bytes(), path.as_str()])?,
        };
        Ok(())
    }

    /// The request's drafts followed by the events its file changes resolve to against the
    /// committed index (whose rows it updates as it goes), how many state changes that made,
    /// and how many per timeline.
    fn resolve_changes(
        &mut self,
        req: &mut AppendRequest,
    ) -> Result<(Vec<Draft>, usize, PerTimeline)> {
        let mut drafts = std::mem::take(&mut req.drafts);
        let mut changes = 0;
        let mut per_timeline: PerTimeline = Vec::new();
        for fc in std::mem::take(&mut req.changes) {
            let cur = self.lookup(&fc.timeline, &fc.path)?;
            let src = match &fc.from {
                Some(f) => self.lookup(&fc.timeline, f)?,
                None => None,
            };
            for (sc, op) in resolve(&fc, cur, src) {
                // Resolution reads the index as the earlier changes of this request left it.
                self.apply(&fc.timeline, &op)?;
                if let Some(sc) = sc {
                    let mut d = Draft::new(fc.timeline, fc.agent.clone(), Payload::StateChange(sc));
                    d.causation = fc.causation;
                    d.occurred_at = fc.occurred_at;
                    d.trace_id = fc.trace.trace_id.clone();
                    d.span_id = fc.trace.span_id.clone();
                    drafts.push(d);
                    changes += 1;
                    match per_timeline.iter_mut().find(|(t, _)| *t == fc.timeline) {
                        Some((_, n)) => *n += 1,
                        None => per_timeline.push((fc.timeline, 1)),
                    }
                }
            }
        }
        Ok((drafts, changes, per_timeline))
    }
}

/// The run of this device's events one transaction appends (see `segments` in the schema).
#[derive(Default, Clone)]
pub(crate) struct Segment {
    first: Option<(i64, u64)>,
    last_id: i64,
    event_ms: (i64, i64),
    at: (i64, i64),
}

impl Segment {
    pub(crate) fn add(&mut self, id: i64, seq: u64, event: &EventId, occurred_at: i64) {
        let ms = uuid_ms(event);
        match self.first {
            None => {
                self.first = Some((id, seq));
                self.event_ms = (ms, ms);
                self.at = (occurred_at, occurred_at);
            }
            Some(_) => {
                self.event_ms = (self.event_ms.0.min(ms), self.event_ms.1.max(ms));
                self.at = (self.at.0.min(occurred_at), self.at.1.max(occurred_at));
            }
        }
        self.last_id = id;
    }

    pub(crate) fn insert(&self, tx: &rusqlite::Transaction<'_>, device: DeviceId) -> Result<()> {
        if let Some((first_id, first_seq)) = self.first {
            tx.prepare_cached(
                "INSERT INTO segments (first_id, last_id, device_id, first_seq, min_event_ms, max_event_ms, min_at, max_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                first_id,
                self.last_id,
                device.as_bytes(),
                first_seq as i64,
                self.event_ms.0,
                self.event_ms.1,
                self.at.0,
                self.at.1
            ])?;
        }
        Ok(())
    }
}

/// The millisecond timestamp of a UUIDv7 (its first 48 bits); other UUIDs give garbage,
/// which only makes a segment's range wider, never wrong for v7 lookups.
pub fn uuid_ms(id: &EventId) -> i64 {
    let b = id.as_bytes();
    i64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// The events and index updates that take the committed index from `cur` (and `src`, the
/// rename source) to `fc.after`. A `None` event with an op means "nothing to record, refresh
/// the index row" (new timestamps, or another process recorded it already).
fn resolve(
    fc: &FileChange,
    cur: Option<WorktreeEntry>,
    src: Option<WorktreeEntry>,
) -> Vec<(Option<StateChange>, WorktreeOp)> {
    let same = |a: &WorktreeEntry, b: &WorktreeEntry| {
        a.kind == b.kind && a.hash == b.hash && a.mode == b.mode
    };
    let sc = |op: Op,
              from: Option<&RepoPath>,
              before: Option<&WorktreeEntry>,
              after: Option<&WorktreeEntry>| {
        Some(StateChange {
            path: fc.path.as_str().to_owned(),
            op: op as i32,
            from_path: from.map(|p| p.as_str().to_owned()).unwrap_or_default(),
            before_hash: before
                .and_then(|e| e.hash)
                .map(|h| h.to_vec())
                .unwrap_or_default(),
            after_hash: after
                .and_then(|e| e.hash)
                .map(|h| h.to_vec())
                .unwrap_or_default(),
            mode: after.map_or(0, |e| e.mode),
            size: after.map_or(0, |e| e.size),
            kind: after.or(before).map_or(0, |e| e.kind),
            withheld: after.is_some_and(|e| e.withheld && e.hash.is_some()),
        })
    };
    let mut out = Vec::new();
    let Some(after) = &fc.after else {
        if let Some(cur) = &cur {
            out.push((
                sc(Op::Delete, None, Some(cur), None),
                WorktreeOp::Remove(fc.path.clone()),
            ));
        }
        return out;
    };
    let put = WorktreeOp::Put(fc.path.clone(), after.clone());
    if let (Some(from), Some(src)) = (&fc.from, &src) {
        // A rename keeps content and kind (the mode may change along).
        if src.kind == after.kind
            && src.hash == after.hash
            && cur.as_ref().is_none_or(|c| !same(c, after))
        {
            out.push((None, WorktreeOp::Remove(from.clone())));
            out.push((sc(Op::Rename, Some(from), Some(src), Some(after)), put));
            return out;
        }
        // Not a rename against the committed index: the source, still indexed, is gone.
        let del = FileChange {
            path: from.clone(),
            from: None,
            after: None,
            ..fc.clone()
        };
        out.extend(resolve(&del, Some(src.clone()), None));
    }
    match &cur {
        Some(c) if same(c, after) => {
            // Same content: once withheld, its blob stays withheld (it was never sent).
            let mut kept = after.clone();
            kept.withheld |= c.withheld;
            out.push((None, WorktreeOp::Put(fc.path.clone(), kept)));
        }
        Some(c) if c.kind != after.kind => {
            out.push((
                sc(Op::Delete, None, Some(c), None),
                WorktreeOp::Remove(fc.path.clone()),
            ));
            out.push((sc(Op::Create, None, None, Some(after)), put));
        }
        Some(c) => out.push((sc(Op::Modify, None, Some(c), Some(after)), put)),
        None => out.push((sc(Op::Create, None, None, Some(after)), put)),
    }
    out
}

fn insert_head(
    tx: &rusqlite::Transaction<'_>,
    key: &DeviceKey,
    project: ProjectId,
    tip: ChainTip,
) -> Result<()> {
    let hash = tip
        .hash
        .expect("a head is only signed after at least one event");
    let head = key.sign_head(project, tip.seq, hash, horde_core::time::now_micros());
    tx.prepare_cached(
        "INSERT OR REPLACE INTO chain_heads (device_id, seq, hash, signed_at, public_key, signature)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        head.device_id,
        head.seq as i64,
        head.hash,
        head.signed_at,
        head.public_key,
        head.signature
    ])?;
    Ok(())
}

/// An event ready to insert, with the columns that are indexed beside its body.
struct Row {
    ev: BuiltEvent,
    agent: String,
    timeline: TimelineId,
    occurred_at: i64,
    path: Option<String>,
    /// The manifest blob of a Checkpoint event.
    checkpoint: Option<Vec<u8>>,
}

/// Builds one event on top of `tip`, keeping the columns stored beside its body.
fn build_row(project: ProjectId, device: DeviceId, tip: &ChainTip, d: Draft) -> Result<Row> {
    let agent = d.agent_id.clone();
    let (timeline, occurred_at) = (d.timeline, d.occurred_at);
    let path = match &d.payload {
        Payload::StateChange(sc) => Some(sc.path.clone()),
        _ => None,
    };
    let checkpoint = match &d.payload {
        Payload::Checkpoint(c) => Some(c.manifest_blob.clone()),
        _ => None,
    };
    let ev = build_event(project, device, tip, d)?;
    Ok(Row {
        ev,
        agent,
        timeline,
        occurred_at,
        path,
        checkpoint,
    })
}

fn insert_timeline(tx: &rusqlite::Transaction<'_>, t: &NewTimeline, now: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO timelines (id, parent, fork_id, fork_event, name, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        t.id.as_bytes(),
        t.parent.map(|p| p.as_bytes().to_vec()),
        t.fork_id,
        t.fork_event.map(|e| e.as_bytes().to_vec()),
        t.name,
        now
    ])?;
    Ok(())
}

/// Counts `changes` new file changes on `timeline`; when a checkpoint is due, writes the
/// manifest of the committed index (the tree right after these changes) and returns its
/// Checkpoint draft with the blob's hash and size.
fn checkpoint_if_due(
    tx: &rusqlite::Transaction<'_>,
    policy: &CheckpointPolicy,
    timeline: TimelineId,
    changes: u64,
    now: i64,
) -> Result<Option<(Draft, BlobHash, u64)>> {
    let since: i64 = tx
        .prepare_cached(
            "INSERT INTO timelines (id, created_at, since_checkpoint) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET since_checkpoint = since_checkpoint + excluded.since_checkpoint
             RETURNING since_checkpoint",
        )?
        .query_row(params![timeline.as_bytes(), now, changes as i64], |r| {
            r.get(0)
        })?;
    let since = since.max(0) as u64;
    if since < policy.interval {
        return Ok(None);
    }
    let entries: i64 = tx
        .prepare_cached("SELECT COUNT(*) FROM worktree WHERE timeline = ?1")?
        .query_row([timeline.as_bytes()], |r| r.get(0))?;
    if since.saturating_mul(4) < entries.max(0) as u64 {
        return Ok(None);
    }
    let mut stmt = tx.prepare_cached(
        "SELECT path, kind, mode, size, hash, withheld FROM worktree WHERE timeline = ?1 ORDER BY path",
    )?;
    let mut rows = stmt.query([timeline.as_bytes()])?;
    let mut manifest = horde_core::proto::Manifest::default();
    let mut total_bytes = 0u64;
    while let Some(r) = rows.next()? {
        let size = r.get::<_, i64>(3)?.max(0) as u64;
        total_bytes += size;
        manifest.entries.push(horde_core::proto::ManifestEntry {
            path: r.get(0)?,
            kind: r.get(1)?,
            mode: r.get(2)?,
            size,
            hash: r.get::<_, Option<Vec<u8>>>(4)?.unwrap_or_default(),
            withheld: r.get(5)?,
        });
    }
    let bytes = prost::Message::encode_to_vec(&manifest);
    let hash = policy.blobs.put_bytes(&bytes)?;
    let draft = Draft::new(
        timeline,
        "horde",
        Payload::Checkpoint(horde_core::proto::Checkpoint {
            manifest_blob: hash.to_vec(),
            files: manifest.entries.len() as u64,
            total_bytes,
        }),
    );
    Ok(Some((draft, hash, bytes.len() as u64)))
}

/// The device's last event in this ledger, found through its last segment. A ledger whose
/// segments and events disagree was altered: refuse to extend it.
pub fn chain_tip(conn: &Connection, device: DeviceId) -> Result<ChainTip> {
    let seg: Option<(i64, i64, i64)> = conn
        .prepare_cached(
            "SELECT first_id, last_id, first_seq FROM segments WHERE device_id = ?1 ORDER BY first_seq DESC LIMIT 1",
        )?
        .query_row([device.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((first_id, last_id, first_seq)) = seg else {
        return Ok(ChainTip::default());
    };
    let seq = first_seq + (last_id - first_id);
    let row: Option<(i64, Vec<u8>, Vec<u8>)> = conn
        .prepare_cached("SELECT seq, hash, device_id FROM events WHERE id = ?1")?
        .query_row([last_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    match row {
        Some((s, hash, dev)) if s == seq && dev == device.as_bytes() => Ok(ChainTip {
            seq: seq as u64,
            hash: Some(EventHash::from_slice(&hash).ok_or(StoreError::Inconsistent(seq as u64))?),
        }),
        _ => Err(StoreError::Inconsistent(seq as u64)),
    }
}
