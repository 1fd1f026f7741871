//! The one writer thread of a process: appends events, records blobs and updates the
//! worktree index, committing whatever requests are waiting in one transaction (group commit).
//!
//! Invariants:
//! - Each transaction starts with `BEGIN IMMEDIATE` and reads the chain tip inside it, so
//!   concurrent processes serialize and chains stay gap-free.
//! - A request's events, its blobs rows and its worktree changes commit together or not at all.
//! - A chain head is signed whenever a device's chain passes a multiple of the head interval,
//!   and at the end of any request that asks for one (a sync, the end of `horde run`).
//! - Callers wait on a oneshot channel: `blocking` from threads, `.await` from async code; the
//!   async runtime is never blocked by SQLite.

use std::sync::mpsc;
use std::thread::JoinHandle;

use horde_core::{
    BlobHash, BuiltEvent, ChainTip, DeviceId, DeviceKey, Draft, EventHash, EventId, ProjectId,
    RepoPath, TimelineId, build_event, proto::event_body::Payload,
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

/// One row of the worktree index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreeEntry {
    pub kind: i32,
    pub mode: u32,
    pub size: u64,
    pub mtime_ns: i64,
    pub hash: Option<BlobHash>,
}

#[derive(Debug, Clone)]
pub enum WorktreeOp {
    Put(RepoPath, WorktreeEntry),
    Remove(RepoPath),
}

/// Everything one append commits atomically.
#[derive(Debug, Default)]
pub struct AppendRequest {
    pub drafts: Vec<Draft>,
    /// Blobs already written to `blobs/` that these events reference: (hash, size).
    pub blobs: Vec<(BlobHash, u64)>,
    pub worktree: Vec<(TimelineId, WorktreeOp)>,
    /// Sign the chain head after these events, whatever the interval says.
    pub sign_head: bool,
}

/// What an append produced, one per draft, in order.
#[derive(Debug, Clone)]
pub struct Appended {
    pub id: EventId,
    pub seq: u64,
    pub hash: EventHash,
}

type Reply = oneshot::Sender<Result<Vec<Appended>>>;

pub struct Writer {
    tx: Option<mpsc::SyncSender<(AppendRequest, Reply)>>,
    thread: Option<JoinHandle<()>>,
}

/// A pending append: wait with [`Pending::wait`] (threads) or `.await` on [`Pending::rx`].
pub struct Pending {
    pub rx: oneshot::Receiver<Result<Vec<Appended>>>,
}

impl Pending {
    pub fn wait(self) -> Result<Vec<Appended>> {
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
}

impl Writer {
    /// Starts the writer thread on its own connection to the ledger.
    pub fn start(conn: Connection, project: ProjectId, key: DeviceKey, head_interval: u64) -> Self {
        let (tx, rx) = mpsc::sync_channel::<(AppendRequest, Reply)>(QUEUE_DEPTH);
        let mut state = State {
            conn,
            project,
            key,
            head_interval: head_interval.max(1),
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
    pub fn append(&self, req: AppendRequest) -> Result<Vec<Appended>> {
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
            let mut events = group[0].0.drafts.len();
            while events < MAX_EVENTS_PER_COMMIT {
                match rx.try_recv() {
                    Ok(next) => {
                        events += next.0.drafts.len();
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
    /// large) fails alone and writes nothing; a database error fails the whole group.
    fn try_commit(
        &mut self,
        group: &mut [(AppendRequest, Reply)],
    ) -> Result<Vec<Result<Vec<Appended>>>> {
        let device = self.key.device_id();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut tip = chain_tip(&tx, device)?;
        let mut last_head: u64 = tx.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM chain_heads WHERE device_id = ?1",
            [device.as_bytes()],
            |r| r.get(0),
        )?;
        let mut results = Vec::with_capacity(group.len());
        {
            let mut ins_event = tx.prepare_cached(
                "INSERT INTO events (device_id, seq, event_id, hash, body, type, agent, timeline, occurred_at, path)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            let mut ins_blob = tx.prepare_cached(
                "INSERT OR IGNORE INTO blobs (hash, size, created_at) VALUES (?1, ?2, ?3)",
            )?;
            let mut put_wt = tx.prepare_cached(
                "INSERT OR REPLACE INTO worktree (timeline, path, kind, mode, size, mtime_ns, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut del_wt =
                tx.prepare_cached("DELETE FROM worktree WHERE timeline = ?1 AND path = ?2")?;
            let now = horde_core::time::now_micros();
            for (req, _) in group.iter_mut() {
                let built =
                    match build_all(self.project, device, tip, std::mem::take(&mut req.drafts)) {
                        Ok(b) => b,
                        Err(e) => {
                            results.push(Err(e));
                            continue;
                        }
                    };
                let mut appended = Vec::with_capacity(built.len());
                for Row {
                    ev,
                    agent,
                    timeline,
                    occurred_at,
                    path,
                } in &built
                {
                    ins_event.execute(params![
                        device.as_bytes(),
                        ev.seq as i64,
                        ev.id.as_bytes(),
                        ev.hash.as_bytes(),
                        ev.body,
                        ev.kind,
                        agent,
                        timeline.as_bytes(),
                        occurred_at,
                        path,
                    ])?;
                    debug_assert_eq!(ev.seq, tip.seq + 1);
                    tip.advance(ev.hash);
                    if tip.seq >= last_head + self.head_interval {
                        insert_head(&tx, &self.key, self.project, tip)?;
                        last_head = tip.seq;
                    }
                    appended.push(Appended {
                        id: ev.id,
                        seq: ev.seq,
                        hash: ev.hash,
                    });
                }
                for (hash, size) in &req.blobs {
                    ins_blob.execute(params![hash.as_bytes(), *size as i64, now])?;
                }
                for (timeline, op) in &req.worktree {
                    match op {
                        WorktreeOp::Put(path, e) => put_wt.execute(params![
                            timeline.as_bytes(),
                            path.as_str(),
                            e.kind,
                            e.mode,
                            e.size as i64,
                            e.mtime_ns,
                            e.hash.as_ref().map(|h| h.as_bytes().to_vec()),
                        ])?,
                        WorktreeOp::Remove(path) => {
                            del_wt.execute(params![timeline.as_bytes(), path.as_str()])?
                        }
                    };
                }
                if req.sign_head && tip.seq > last_head {
                    insert_head(&tx, &self.key, self.project, tip)?;
                    last_head = tip.seq;
                }
                results.push(Ok(appended));
            }
        }
        tx.commit()?;
        Ok(results)
    }
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
}

/// Builds every event of one request on top of `tip` without touching it.
fn build_all(
    project: ProjectId,
    device: DeviceId,
    mut tip: ChainTip,
    drafts: Vec<Draft>,
) -> Result<Vec<Row>> {
    let mut out = Vec::with_capacity(drafts.len());
    for d in drafts {
        let agent = d.agent_id.clone();
        let (timeline, occurred_at) = (d.timeline, d.occurred_at);
        let path = match &d.payload {
            Payload::StateChange(sc) => Some(sc.path.clone()),
            _ => None,
        };
        let ev = build_event(project, device, &tip, d)?;
        tip.advance(ev.hash);
        out.push(Row {
            ev,
            agent,
            timeline,
            occurred_at,
            path,
        });
    }
    Ok(out)
}

/// The device's last event in this ledger.
pub fn chain_tip(conn: &Connection, device: DeviceId) -> Result<ChainTip> {
    let row: Option<(i64, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT seq, hash FROM events WHERE device_id = ?1 ORDER BY seq DESC LIMIT 1",
        )?
        .query_row([device.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match row {
        None => ChainTip::default(),
        Some((seq, hash)) => ChainTip {
            seq: seq as u64,
            hash: Some(EventHash::from_slice(&hash).ok_or(StoreError::BadMeta("events.hash"))?),
        },
    })
}
