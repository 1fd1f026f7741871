//! The syncer: store-and-forward of this device's events to one cloud, and the pull of the
//! other devices' events of the project.
//!
//! Push: the project and the device are made known once; forks are announced before their
//! events; a batch's blobs go first (HEAD, then PUT, [`BLOB_PARALLELISM`] at a time); then
//! the outbox (own events after `sync_state.pushed_id`, in seq order) in batches of at most
//! [`MAX_BATCH_EVENTS`] events / [`MAX_BATCH_BYTES`] bytes, each signed by a chain head on its
//! last event. Rows get their versionstamps, and `pushed_id` moves, only after the ack, in
//! one transaction. A batch the cloud already holds comes back "skipped"; those events'
//! versionstamps are looked up. Nothing is marked before the ack and nothing is sent twice
//! into the log (the cloud's cursor makes resends no-ops), so a crash anywhere loses nothing.
//!
//! Pull: pages of the project's log without this device's events; each device's chain is
//! checked from the local tip of that device (seq, link, hash), signed heads are checked
//! against the events they sign and against the key seen before; the events, their segments
//! and checkpoints, and the page's cursor are stored in one transaction. Blobs the events
//! name are fetched afterwards (listed in `missing_blobs` in that transaction).
//!
//! Withheld contents (a `StateChange` marked `withheld`: a secret was found in the file or a
//! manifest denies its path) are never sent: the event goes, its blob does not
//! ([`horde_core::shared_blobs`]). Pulled withheld changes of other devices are never fetched
//! nor counted as unavailable: their blob stays on the device that recorded them.
//!
//! Everything here is network-neutral: [`client::Transport`] moves the bytes.

pub mod client;
pub mod remotes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use horde_core::proto::{ChainHead, PullPage, SyncBatch, event_body::Payload};
use horde_core::{
    BlobHash, ChainTip, ChainVerifier, DeviceId, DeviceKey, EventHash, EventId, TimelineId,
    decode_event, payload_kind, shared_blobs, verify_head,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::store::writer::{Segment, chain_tip};
use crate::store::{BlobStore, Meta};
pub use client::{Client, HttpTransport, SyncError, Transport};

/// Events per batch at most (the cloud takes 5,000 by default).
pub const MAX_BATCH_EVENTS: usize = 2_000;
/// Encoded events per batch at most (the cloud takes 8 MiB by default).
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// Blob uploads or downloads in flight at once.
pub const BLOB_PARALLELISM: usize = 8;
/// Events per pull page.
pub const PULL_PAGE: usize = 1_000;

/// What a sync reports as it goes (a progress bar on a terminal).
pub trait Progress {
    fn phase(&self, _name: &'static str, _total: u64) {}
    fn advance(&self, _n: u64) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    pub pushed: u64,
    pub skipped: u64,
    pub batches: u64,
    pub blobs_uploaded: u64,
    pub pulled: u64,
    pub blobs_downloaded: u64,
    /// Blobs named by pulled events that the cloud does not have.
    pub blobs_unavailable: u64,
}

/// One device's syncer for one project and remote.
pub struct Syncer<T> {
    pub conn: Connection,
    pub blobs: BlobStore,
    pub meta: Meta,
    pub key: DeviceKey,
    pub client: Client<T>,
    pub remote: String,
    /// Largest batch to send (halved after a 413).
    pub batch_events: usize,
}

/// `sync_state` of a remote.
#[derive(Debug, Default, Clone)]
pub struct SyncState {
    pub registered: bool,
    pub pushed_id: i64,
    pub pull_cursor: Option<Vec<u8>>,
    pub merged_id: i64,
    pub last_success_at: Option<i64>,
    pub last_attempt_at: Option<i64>,
    pub last_error: Option<String>,
}

pub fn read_state(conn: &Connection, remote: &str) -> Result<SyncState, SyncError> {
    Ok(conn
        .query_row(
            "SELECT registered, pushed_id, pull_cursor, merged_id, last_success_at, last_attempt_at, last_error
             FROM sync_state WHERE remote = ?1",
            [remote],
            |r| {
                Ok(SyncState {
                    registered: r.get::<_, i64>(0)? != 0,
                    pushed_id: r.get(1)?,
                    pull_cursor: r.get(2)?,
                    merged_id: r.get(3)?,
                    last_success_at: r.get(4)?,
                    last_attempt_at: r.get(5)?,
                    last_error: r.get(6)?,
                })
            },
        )
        .optional()?
        .unwrap_or_default())
}

/// Own events not yet acknowledged by the cloud.
pub fn pending(
    conn: &Connection,
    device: DeviceId,
    remote: Option<&str>,
) -> Result<u64, SyncError> {
    let pushed = match remote {
        Some(r) => read_state(conn, r)?.pushed_id,
        None => 0,
    };
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM events WHERE id > ?1 AND device_id = ?2 AND synced_version IS NULL",
        params![pushed, device.as_bytes()],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

/// One own event of the outbox.
struct Outgoing {
    id: i64,
    seq: u64,
    event_id: EventId,
    timeline: TimelineId,
    body: Vec<u8>,
    hash: Vec<u8>,
}

impl<T: Transport> Syncer<T> {
    pub fn new(
        conn: Connection,
        blobs: BlobStore,
        meta: Meta,
        key: DeviceKey,
        client: Client<T>,
        remote: &str,
    ) -> Result<Self, SyncError> {
        conn.execute(
            "INSERT OR IGNORE INTO sync_state (remote) VALUES (?1)",
            [remote],
        )?;
        Ok(Self {
            conn,
            blobs,
            meta,
            key,
            client,
            remote: remote.to_owned(),
            batch_events: MAX_BATCH_EVENTS,
        })
    }

    fn device(&self) -> DeviceId {
        self.key.device_id()
    }

    pub fn state(&self) -> Result<SyncState, SyncError> {
        read_state(&self.conn, &self.remote)
    }

    /// Push then pull, once. Records the attempt and its outcome in `sync_state`.
    pub async fn sync_once(&mut self, progress: &dyn Progress) -> Result<Report, SyncError> {
        let now = horde_core::time::now_micros();
        self.conn.execute(
            "UPDATE sync_state SET last_attempt_at = ?2 WHERE remote = ?1",
            params![self.remote, now],
        )?;
        let mut report = Report::default();
        let result = async {
            self.push(&mut report, progress).await?;
            self.pull(&mut report, progress).await
        }
        .await;
        match &result {
            Ok(()) => self.conn.execute(
                "UPDATE sync_state SET last_success_at = ?2, last_error = NULL WHERE remote = ?1",
                params![self.remote, horde_core::time::now_micros()],
            )?,
            Err(e) => self.conn.execute(
                "UPDATE sync_state SET last_error = ?2 WHERE remote = ?1",
                params![self.remote, e.to_string()],
            )?,
        };
        result.map(|()| report)
    }

    /// Makes the project and this device known to the cloud (once per remote).
    pub async fn register(&mut self, name: &str) -> Result<(), SyncError> {
        if self.state()?.registered {
            return Ok(());
        }
        // The root timeline (its row appears with its first change; until then the current
        // timeline is the main one: there is nothing to fork from).
        let main: Vec<u8> = match self
            .conn
            .query_row(
                "SELECT id FROM timelines WHERE parent IS NULL ORDER BY created_at LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?
        {
            Some(m) => m,
            None => self.meta.timeline.to_vec(),
        };
        let main = TimelineId::from_slice(&main)
            .ok_or_else(|| SyncError::Protocol("the main timeline id is corrupt".into()))?;
        self.client.put_project(name, main).await?;
        let host = crate::sys::hostname();
        self.client
            .register_device(self.device(), &self.key.public_key(), &host)
            .await?;
        self.conn.execute(
            "UPDATE sync_state SET registered = 1 WHERE remote = ?1",
            [&self.remote],
        )?;
        self.conn.execute(
            "UPDATE timelines SET published = 1 WHERE id = ?1",
            [main.as_bytes()],
        )?;
        Ok(())
    }

    /// Sends the outbox.
    pub async fn push(
        &mut self,
        report: &mut Report,
        progress: &dyn Progress,
    ) -> Result<(), SyncError> {
        let name = self
            .meta
            .project
            .to_string()
            .chars()
            .take(8)
            .collect::<String>();
        self.register(&format!("project {name}")).await?;
        let total = pending(&self.conn, self.device(), Some(&self.remote))?;
        progress.phase("pushing", total);
        let forks: HashSet<i64> = {
            let mut st = self
                .conn
                .prepare("SELECT fork_id FROM timelines WHERE fork_id IS NOT NULL")?;
            st.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut seq_gap_retried = false;
        loop {
            let batch = self.next_batch(&forks)?;
            let Some(last) = batch.last() else { break };
            let (first_seq, last_id) = (batch[0].seq, last.id);
            self.publish_timelines(&batch).await?;
            report.blobs_uploaded += self.upload_blobs(&batch).await?;
            let hash = EventHash::from_slice(&last.hash).expect("stored hashes are 32 bytes");
            let head = self.key.sign_head(
                self.meta.project,
                last.seq,
                hash,
                horde_core::time::now_micros(),
            );
            let msg = SyncBatch {
                project_id: self.meta.project.to_vec(),
                device_id: self.device().to_vec(),
                events: batch
                    .iter()
                    .map(|e| horde_core::proto::SignedEvent {
                        body: e.body.clone(),
                        hash: e.hash.clone(),
                    })
                    .collect(),
                head: Some(head.clone()),
            };
            let ack = match self.client.push(&msg).await {
                Ok(ack) => ack,
                Err(SyncError::Server { status, .. })
                    if status == http::StatusCode::PAYLOAD_TOO_LARGE && self.batch_events > 1 =>
                {
                    self.batch_events = (self.batch_events / 2).max(1);
                    continue;
                }
                Err(SyncError::Server { code, body, .. })
                    if code == "seq_gap" && !seq_gap_retried =>
                {
                    // The cloud holds less of this chain than we marked: send from where it is.
                    let expected = body["error"]["expected_seq"].as_u64().unwrap_or(1);
                    self.rewind_to(expected)?;
                    seq_gap_retried = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if ack.acked_seq < last.seq {
                return Err(SyncError::Protocol(format!(
                    "the cloud acknowledged seq {} of a batch ending at {}",
                    ack.acked_seq, last.seq
                )));
            }
            let skipped = ack.skipped as usize;
            if skipped + ack.versionstamps.len() != batch.len() {
                return Err(SyncError::Protocol(format!(
                    "an ack for {} events has {} versionstamps and {} skipped",
                    batch.len(),
                    ack.versionstamps.len(),
                    ack.skipped
                )));
            }
            // Events the cloud already held (an earlier ack was lost): ask for their stamps.
            let mut stamps: Vec<Vec<u8>> = Vec::with_capacity(batch.len());
            if skipped > 0 && ack.skipped_versionstamps.len() == skipped {
                stamps.extend(ack.skipped_versionstamps.iter().cloned());
            } else if skipped > 0 {
                let ids: Vec<EventId> = batch[..skipped].iter().map(|e| e.event_id).collect();
                let found: Vec<Result<Vec<u8>, SyncError>> = futures::stream::iter(ids)
                    .map(|id| self.client.event_versionstamp(id))
                    .buffered(BLOB_PARALLELISM)
                    .collect()
                    .await;
                for f in found {
                    stamps.push(f?);
                }
            }
            stamps.extend(ack.versionstamps.iter().cloned());
            debug_assert_eq!(first_seq + batch.len() as u64 - 1, last.seq);
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut mark =
                    tx.prepare_cached("UPDATE events SET synced_version = ?2 WHERE id = ?1")?;
                for (e, vs) in batch.iter().zip(&stamps) {
                    mark.execute(params![e.id, vs])?;
                }
                tx.execute(
                    "UPDATE sync_state SET pushed_id = ?2 WHERE remote = ?1",
                    params![self.remote, last_id],
                )?;
                keep_head(&tx, &head)?;
            }
            tx.commit()?;
            report.pushed += (batch.len() - skipped) as u64;
            report.skipped += skipped as u64;
            report.batches += 1;
            progress.advance(batch.len() as u64);
        }
        Ok(())
    }

    /// Marks own events from seq `expected` on as not sent.
    fn rewind_to(&mut self, expected: u64) -> Result<(), SyncError> {
        let before: i64 = if expected <= 1 {
            0
        } else {
            crate::store::read::id_of_seq(&self.conn, self.device(), expected - 1)?.unwrap_or(0)
        };
        tracing::warn!(
            expected,
            "the cloud holds less of this device's chain than marked; resending"
        );
        self.conn.execute(
            "UPDATE sync_state SET pushed_id = MIN(pushed_id, ?2) WHERE remote = ?1",
            params![self.remote, before],
        )?;
        self.conn.execute(
            "UPDATE events SET synced_version = NULL WHERE id > ?1 AND device_id = ?2",
            params![before, self.device().as_bytes()],
        )?;
        Ok(())
    }

    /// The next batch of the outbox, cut after a fork point (a fork made "after event X" must
    /// not take X's later batch-mates, which share X's commit version in the cloud).
    fn next_batch(&self, forks: &HashSet<i64>) -> Result<Vec<Outgoing>, SyncError> {
        let pushed = self.state()?.pushed_id;
        let mut st = self.conn.prepare_cached(
            "SELECT id, seq, event_id, timeline, body, hash FROM events
             WHERE id > ?1 AND device_id = ?2 ORDER BY id LIMIT ?3",
        )?;
        let mut rows = st.query(params![
            pushed,
            self.device().as_bytes(),
            self.batch_events as i64
        ])?;
        let mut out: Vec<Outgoing> = Vec::new();
        let mut bytes = 0usize;
        while let Some(r) = rows.next()? {
            let body: Vec<u8> = r.get(4)?;
            if !out.is_empty() && bytes + body.len() > MAX_BATCH_BYTES {
                break;
            }
            bytes += body.len() + 64;
            let bad = || SyncError::Store(crate::store::StoreError::Inconsistent(0));
            let e = Outgoing {
                id: r.get(0)?,
                seq: r.get::<_, i64>(1)? as u64,
                event_id: EventId::from_slice(&r.get::<_, Vec<u8>>(2)?).ok_or_else(bad)?,
                timeline: TimelineId::from_slice(&r.get::<_, Vec<u8>>(3)?).ok_or_else(bad)?,
                body,
                hash: r.get(5)?,
            };
            if let Some(prev) = out.last()
                && prev.seq + 1 != e.seq
            {
                return Err(SyncError::Store(crate::store::StoreError::Inconsistent(
                    e.seq,
                )));
            }
            let cut = forks.contains(&e.id);
            out.push(e);
            if cut {
                break;
            }
        }
        Ok(out)
    }

    /// Announces forks this batch writes to and the cloud does not know yet.
    async fn publish_timelines(&mut self, batch: &[Outgoing]) -> Result<(), SyncError> {
        let mut seen = HashSet::new();
        for e in batch {
            if !seen.insert(e.timeline) {
                continue;
            }
            type Row = (i64, Option<Vec<u8>>, Option<Vec<u8>>);
            let row: Option<Row> = self
                .conn
                .query_row(
                    "SELECT published, parent, fork_event FROM timelines WHERE id = ?1",
                    [e.timeline.as_bytes()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((0, Some(parent), fork_event)) = row else {
                continue;
            };
            let parent = TimelineId::from_slice(&parent)
                .ok_or_else(|| SyncError::Protocol("a corrupt parent timeline id".into()))?;
            let at = fork_event.as_deref().and_then(EventId::from_slice);
            self.client.create_timeline(e.timeline, parent, at).await?;
            self.conn.execute(
                "UPDATE timelines SET published = 1 WHERE id = ?1",
                [e.timeline.as_bytes()],
            )?;
        }
        Ok(())
    }

    /// HEAD then PUT for every blob the batch names that is not known to be uploaded.
    async fn upload_blobs(&mut self, batch: &[Outgoing]) -> Result<u64, SyncError> {
        let mut wanted: Vec<BlobHash> = Vec::new();
        let mut seen = HashSet::new();
        {
            let mut uploaded = self
                .conn
                .prepare_cached("SELECT uploaded FROM blobs WHERE hash = ?1")?;
            for e in batch {
                // Only the references are wanted: the bytes were checked when they were
                // written here, and the cloud checks them again (no second SHA-256 here).
                let Ok(ev) = <horde_core::proto::EventBody as prost::Message>::decode(&e.body[..])
                else {
                    continue; // the cloud refuses it with a clear error
                };
                let Some(p) = &ev.payload else { continue };
                for h in shared_blobs(p) {
                    if !seen.insert(h) {
                        continue;
                    }
                    let up: Option<i64> = uploaded
                        .query_row([h.as_bytes()], |r| r.get(0))
                        .optional()?;
                    if up != Some(1) {
                        wanted.push(h);
                    }
                }
            }
        }
        let client = &self.client;
        let blobs = &self.blobs;
        let results: Vec<Result<(BlobHash, bool), SyncError>> = futures::stream::iter(wanted)
            .map(|h| async move {
                if client.has_blob(&h).await? {
                    return Ok((h, false));
                }
                let path = blobs.path_of(&h);
                let len = match std::fs::metadata(&path) {
                    Ok(m) => m.len(),
                    Err(_) => {
                        // The event stays the record; its content is gone from this device.
                        tracing::warn!(blob = %h, "a blob named by an event is missing here; sending the event without it");
                        return Ok((h, false));
                    }
                };
                client.put_blob(&h, path, len).await?;
                Ok((h, true))
            })
            .buffer_unordered(BLOB_PARALLELISM)
            .collect()
            .await;
        let mut put = 0;
        let mut done = Vec::new();
        let mut first_err = None;
        for r in results {
            match r {
                Ok((h, created)) => {
                    put += created as u64;
                    done.push(h);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let mut mark = self.conn.prepare_cached(
            "INSERT INTO blobs (hash, size, created_at, uploaded) VALUES (?1, 0, ?2, 1)
             ON CONFLICT (hash) DO UPDATE SET uploaded = 1",
        )?;
        let now = horde_core::time::now_micros();
        for h in &done {
            if self.blobs.contains(h) {
                mark.execute(params![h.as_bytes(), now])?;
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(put),
        }
    }

    /// Fetches the other devices' events until caught up, then the blobs they name.
    pub async fn pull(
        &mut self,
        report: &mut Report,
        progress: &dyn Progress,
    ) -> Result<(), SyncError> {
        progress.phase("pulling", 0);
        loop {
            let cursor = self.state()?.pull_cursor;
            let page = self
                .client
                .pull(cursor.as_deref(), self.device(), PULL_PAGE)
                .await?;
            self.learn_timelines(&page).await?;
            let n = self.store_page(&page)?;
            report.pulled += n;
            progress.advance(n);
            if !page.more {
                break;
            }
        }
        let (down, unavailable) = self.fetch_missing_blobs(progress).await?;
        report.blobs_downloaded += down;
        report.blobs_unavailable += unavailable;
        Ok(())
    }

    /// Timelines the page's events are on that this ledger does not know yet.
    async fn learn_timelines(&mut self, page: &PullPage) -> Result<(), SyncError> {
        let mut unknown = HashSet::new();
        for pe in &page.events {
            let Some(ev) = &pe.event else { continue };
            if let Ok(body) = decode_event(&ev.body, &ev.hash)
                && let Some(t) = TimelineId::from_slice(&body.timeline_id)
                && !self.has_timeline(t)?
            {
                unknown.insert(t);
            }
        }
        if unknown.is_empty() {
            return Ok(());
        }
        let list = self.client.timelines().await?;
        let by_id: HashMap<TimelineId, &client::RemoteTimeline> =
            list.iter().map(|t| (t.id, t)).collect();
        // Parents first, so that a fork of a fork finds its parent's rows.
        let mut order: Vec<TimelineId> = Vec::new();
        for t in unknown {
            let mut chain = vec![t];
            let mut cur = t;
            while let Some(p) = by_id.get(&cur).and_then(|r| r.parent) {
                if self.has_timeline(p)? || chain.contains(&p) {
                    break;
                }
                chain.push(p);
                cur = p;
            }
            for c in chain.into_iter().rev() {
                if !order.contains(&c) {
                    order.push(c);
                }
            }
        }
        let now = horde_core::time::now_micros();
        for t in order {
            let r = by_id.get(&t);
            let parent = r.and_then(|r| r.parent);
            // The last local event of the parent at the fork's version (stamps compare as bytes).
            let fork_id: Option<i64> = match (parent, r.and_then(|r| r.fork_version)) {
                (Some(p), Some(v)) => {
                    let mut bound = (v + 1).to_be_bytes().to_vec();
                    bound.extend_from_slice(&[0, 0, 0, 0]);
                    Some(self.conn.query_row(
                        "SELECT COALESCE(MAX(id), 0) FROM events WHERE timeline = ?1 AND synced_version < ?2",
                        params![p.as_bytes(), bound],
                        |r| r.get(0),
                    )?)
                }
                _ => None,
            };
            self.conn.execute(
                "INSERT OR IGNORE INTO timelines (id, parent, fork_id, created_at, published) VALUES (?1, ?2, ?3, ?4, 1)",
                params![t.as_bytes(), parent.map(|p| p.as_bytes().to_vec()), fork_id, now],
            )?;
        }
        Ok(())
    }

    fn has_timeline(&self, t: TimelineId) -> Result<bool, SyncError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM timelines WHERE id = ?1",
                [t.as_bytes()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Checks and stores one page; returns how many events were new.
    fn store_page(&mut self, page: &PullPage) -> Result<u64, SyncError> {
        let me = self.device();
        let project = self.meta.project;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut next_id: i64 =
            tx.query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM events", [], |r| {
                r.get(0)
            })?;
        let mut tips: HashMap<DeviceId, ChainTip> = HashMap::new();
        let mut segment: Option<(DeviceId, Segment)> = None;
        let mut new = 0u64;
        let mut seen_devices: HashSet<DeviceId> = HashSet::new();
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO events (id, device_id, seq, event_id, hash, body, type, agent, timeline, occurred_at, path, synced_version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            let mut ins_ckpt = tx.prepare_cached(
                "INSERT OR IGNORE INTO checkpoints (timeline, id, manifest) VALUES (?1, ?2, ?3)",
            )?;
            let mut ins_missing =
                tx.prepare_cached("INSERT OR IGNORE INTO missing_blobs (hash) VALUES (?1)")?;
            for pe in &page.events {
                let ev = pe.event.as_ref().ok_or_else(|| {
                    SyncError::Protocol("a pulled event without its bytes".into())
                })?;
                let body = decode_event(&ev.body, &ev.hash)
                    .map_err(|e| SyncError::Verify(format!("an event does not decode: {e}")))?;
                let device = DeviceId::from_slice(&body.device_id)
                    .ok_or_else(|| SyncError::Verify("an event without a device id".into()))?;
                if device == me {
                    continue; // asked to be left out; never take our own chain from elsewhere
                }
                seen_devices.insert(device);
                let tip = match tips.get(&device) {
                    Some(t) => *t,
                    None => chain_tip(&tx, device)?,
                };
                if body.seq <= tip.seq {
                    // Pulled before (a page repeated after a crash): it must be the same event.
                    let same = crate::store::read::hash_of_seq(&tx, device, body.seq)?
                        .is_some_and(|h| h == ev.hash);
                    if !same {
                        return Err(SyncError::Verify(format!(
                            "device {device} seq {} differs from the copy stored here",
                            body.seq
                        )));
                    }
                    tips.insert(device, tip);
                    continue;
                }
                let mut v = ChainVerifier::resume(project, device, tip);
                v.push(&ev.body, &ev.hash)
                    .map_err(|e| SyncError::Verify(format!("device {device}: {e}")))?;
                tips.insert(device, v.tip());
                let vs = &pe.versionstamp;
                if vs.len() != 12 {
                    return Err(SyncError::Protocol("a versionstamp is not 12 bytes".into()));
                }
                let payload = body.payload.as_ref();
                let timeline = TimelineId::from_slice(&body.timeline_id)
                    .ok_or_else(|| SyncError::Verify("an event without a timeline".into()))?;
                let event_id = EventId::from_slice(&body.event_id)
                    .ok_or_else(|| SyncError::Verify("an event without an id".into()))?;
                let path = match payload {
                    Some(Payload::StateChange(sc)) => Some(sc.path.clone()),
                    _ => None,
                };
                ins.execute(params![
                    next_id,
                    device.as_bytes(),
                    body.seq as i64,
                    event_id.as_bytes(),
                    ev.hash,
                    ev.body,
                    payload.map(payload_kind).unwrap_or(""),
                    body.agent_id,
                    timeline.as_bytes(),
                    body.occurred_at,
                    path,
                    vs,
                ])?;
                if let Some(Payload::Checkpoint(c)) = payload {
                    ins_ckpt.execute(params![timeline.as_bytes(), next_id, c.manifest_blob])?;
                }
                if let Some(p) = payload {
                    for h in shared_blobs(p) {
                        if !self.blobs.contains(&h) {
                            ins_missing.execute([h.as_bytes()])?;
                        }
                    }
                }
                // A segment is a run of one device's consecutive seqs at consecutive ids.
                match &mut segment {
                    Some((d, seg)) if *d == device => {
                        seg.add(next_id, body.seq, &event_id, body.occurred_at)
                    }
                    _ => {
                        if let Some((d, seg)) = segment.take() {
                            seg.insert(&tx, d)?;
                        }
                        let mut seg = Segment::default();
                        seg.add(next_id, body.seq, &event_id, body.occurred_at);
                        segment = Some((device, seg));
                    }
                }
                next_id += 1;
                new += 1;
            }
        }
        if let Some((d, seg)) = segment.take() {
            seg.insert(&tx, d)?;
        }
        store_heads(&tx, &page.heads, &seen_devices, project)?;
        tx.execute(
            "UPDATE sync_state SET pull_cursor = ?2 WHERE remote = ?1",
            params![self.remote, page.cursor],
        )?;
        tx.commit()?;
        Ok(new)
    }

    /// Downloads the blobs pulled events name ([`BLOB_PARALLELISM`] at a time).
    async fn fetch_missing_blobs(
        &mut self,
        progress: &dyn Progress,
    ) -> Result<(u64, u64), SyncError> {
        let missing: Vec<BlobHash> = {
            let mut st = self.conn.prepare("SELECT hash FROM missing_blobs")?;
            st.query_map([], |r| r.get::<_, Vec<u8>>(0))?
                .filter_map(|h| h.ok().and_then(|h| BlobHash::from_slice(&h)))
                .collect()
        };
        if missing.is_empty() {
            return Ok((0, 0));
        }
        progress.phase("fetching blobs", missing.len() as u64);
        let client = &self.client;
        let blobs = &self.blobs;
        let mut stream = futures::stream::iter(missing)
            .map(|h| async move {
                if blobs.contains(&h) {
                    return (h, Ok(false));
                }
                match client.get_blob(&h).await {
                    Ok(bytes) => (
                        h,
                        blobs
                            .put_bytes(&bytes)
                            .map(|_| true)
                            .map_err(SyncError::from),
                    ),
                    Err(e) => (h, Err(e)),
                }
            })
            .buffer_unordered(BLOB_PARALLELISM);
        let (mut down, mut unavailable) = (0, 0);
        let mut first_err = None;
        let mut done = Vec::new();
        while let Some((h, r)) = stream.next().await {
            progress.advance(1);
            match r {
                Ok(fetched) => {
                    down += fetched as u64;
                    done.push(h);
                }
                Err(SyncError::Server { status, .. }) if status == http::StatusCode::NOT_FOUND => {
                    unavailable += 1;
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        drop(stream);
        self.blobs.sync()?;
        let tx = self.conn.transaction()?;
        {
            let mut del = tx.prepare_cached("DELETE FROM missing_blobs WHERE hash = ?1")?;
            let mut ins = tx.prepare_cached(
                "INSERT INTO blobs (hash, size, created_at, uploaded) VALUES (?1, ?2, ?3, 1)
                 ON CONFLICT (hash) DO UPDATE SET uploaded = 1",
            )?;
            let now = horde_core::time::now_micros();
            for h in &done {
                del.execute([h.as_bytes()])?;
                let size = std::fs::metadata(self.blobs.path_of(h))
                    .map(|m| m.len())
                    .unwrap_or(0);
                ins.execute(params![h.as_bytes(), size as i64, now])?;
            }
        }
        tx.commit()?;
        match first_err {
            Some(e) => Err(e),
            None => Ok((down, unavailable)),
        }
    }
}

/// Checks the page's signed heads and keeps those whose event is stored here: the signature,
/// the key (the same as every earlier head of that device), the hash at its seq.
fn store_heads(
    tx: &rusqlite::Transaction<'_>,
    heads: &[ChainHead],
    devices: &HashSet<DeviceId>,
    project: horde_core::ProjectId,
) -> Result<(), SyncError> {
    let mut by_device: BTreeMap<Vec<u8>, &ChainHead> = BTreeMap::new();
    for h in heads {
        by_device.insert(h.device_id.clone(), h);
    }
    for (dev, head) in by_device {
        let Some(device) = DeviceId::from_slice(&dev) else {
            return Err(SyncError::Verify(
                "a signed head without a device id".into(),
            ));
        };
        if !devices.contains(&device) && crate::store::read::hash_of_seq(tx, device, 1)?.is_none() {
            continue;
        }
        if head.project_id != project.as_bytes() {
            return Err(SyncError::Verify(format!(
                "device {device}: a head of another project"
            )));
        }
        verify_head(head).map_err(|e| {
            SyncError::Verify(format!("device {device}: head at seq {}: {e}", head.seq))
        })?;
        let known: Option<Vec<u8>> = tx
            .query_row(
                "SELECT public_key FROM chain_heads WHERE device_id = ?1 LIMIT 1",
                [device.as_bytes()],
                |r| r.get(0),
            )
            .optional()?;
        if known.as_ref().is_some_and(|k| *k != head.public_key) {
            return Err(SyncError::Verify(format!(
                "device {device}: head at seq {} is signed by another key than its earlier heads",
                head.seq
            )));
        }
        match crate::store::read::hash_of_seq(tx, device, head.seq)? {
            Some(h) if h == head.hash => keep_head(tx, head)?,

            Some(_) => {
                return Err(SyncError::Verify(format!(
                    "device {device}: the signed head at seq {} does not match the event stored at that seq",
                    head.seq
                )));
            }
            None => {} // signs an event after this page: a later page brings it again
        }
    }
    Ok(())
}

/// Stores a signed head (one already there for that seq stays).
fn keep_head(conn: &Connection, head: &ChainHead) -> Result<(), SyncError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO chain_heads (device_id, seq, hash, signed_at, public_key, signature)
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

/// Exponential backoff with full jitter: attempt 0 → up to `base`, doubling to `cap`.
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let mut seed = [0u8; 8];
    let _ = getrandom::fill(&mut seed);
    backoff_with(attempt, base, cap, u64::from_le_bytes(seed))
}

/// [`backoff`] with the random draw given (a simulation replays it from its seed): between
/// half and all of `base * 2^attempt`, at most `cap`.
pub fn backoff_with(attempt: u32, base: Duration, cap: Duration, random: u64) -> Duration {
    let max = base
        .saturating_mul(1u32 << attempt.min(20))
        .min(cap)
        .as_millis() as u64;
    Duration::from_millis(max / 2 + random % (max / 2 + 1))
}
