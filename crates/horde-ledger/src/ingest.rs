//! Appending a device's events, exactly once.
//!
//! A batch is checked whole before anything is written (each event decodes, hashes, belongs
//! to this project and device; seqs are consecutive; each `prev_hash` is the hash before).
//! It is then written in transactions of at most [`MAX_TX_BYTES`] / [`MAX_TX_EVENTS`]. Each
//! transaction reads the device cursor `(last_seq, last_hash)`, skips events the cursor
//! already covers (checking that the one at the cursor has the cursor's hash), requires the
//! next one to be `last_seq + 1` with `prev_hash == last_hash`, writes the log, time, path
//! and feed keys, and advances the cursor. A retry after an unknown commit result finds the
//! cursor advanced and writes nothing twice.

use std::collections::HashSet;

use horde_core::proto::ChainHead;
use horde_core::proto::{self, event_body::Payload, state_change::Op};
use horde_core::{
    DeviceId, EventHash, EventId, ProjectId, TenantId, TimelineId, decode_event, verify_head,
};
use horde_kv::tuple::{Versionstamp, pack, pack_with_versionstamp, unpack};
use horde_kv::{OrderedKv, Transaction};
use prost::Message;

use crate::Ledger;
use crate::error::{LedgerError, corrupt};
use crate::keys::{self, ProjectKeys, TenantKeys};
use crate::records::{Device, FileVersion, from_json};

/// Most events in one append call.
pub const MAX_BATCH_EVENTS: usize = 100_000;
/// Most bytes (event bodies) in one append call.
pub const MAX_BATCH_BYTES: usize = 64 << 20;
/// About the most bytes one append transaction writes (FoundationDB works best well below
/// its 10 MB limit).
pub const MAX_TX_BYTES: usize = 1_000_000;
/// Most events in one append transaction (the versionstamp's user version is 2 bytes).
pub const MAX_TX_EVENTS: usize = 10_000;

/// A device's events for one project, in seq order, with an optional signed chain head.
#[derive(Debug, Clone)]
pub struct AppendBatch {
    pub project: ProjectId,
    pub device: DeviceId,
    pub events: Vec<proto::SignedEvent>,
    pub head: Option<ChainHead>,
}

/// What an append did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendAck {
    /// The device's cursor after the append: every seq up to here is in the ledger.
    pub acked_seq: u64,
    /// The versionstamp of each event this call wrote, by seq.
    pub written: Vec<(u64, Versionstamp)>,
    /// Events of the batch that were already in the ledger (sent before) and were skipped.
    pub skipped: u64,
}

/// An event of the batch, checked and ready to write.
struct Checked {
    seq: u64,
    event_id: EventId,
    hash: EventHash,
    prev_hash: Vec<u8>,
    timeline: TimelineId,
    ts_ms: i64,
    stored: Vec<u8>,
    /// Per-path changes: (path, version) — a rename is a delete of the source and a write of
    /// the target.
    paths: Vec<PathChange>,
    /// A `Checkpoint` event's manifest blob hash.
    checkpoint: Option<Vec<u8>>,
    /// An `Approval` event's request id (indexed for the approvals API).
    approval: Option<Vec<u8>>,
}

/// One path's version in a checked event: (path, exists, hash, mode, size, kind, withheld).
type PathChange = (String, bool, Vec<u8>, u32, u64, i32, bool);

fn check_batch(batch: &AppendBatch) -> Result<Vec<Checked>, LedgerError> {
    let bytes: usize = batch.events.iter().map(|e| e.body.len()).sum();
    if batch.events.len() > MAX_BATCH_EVENTS || bytes > MAX_BATCH_BYTES {
        return Err(LedgerError::BatchTooLarge {
            events: batch.events.len(),
            bytes,
            max_events: MAX_BATCH_EVENTS,
            max_bytes: MAX_BATCH_BYTES,
        });
    }
    let mut out: Vec<Checked> = Vec::with_capacity(batch.events.len());
    for (index, ev) in batch.events.iter().enumerate() {
        let bad = |reason: String| LedgerError::BadEvent { index, reason };
        let body = decode_event(&ev.body, &ev.hash).map_err(|e| bad(e.to_string()))?;
        if body.project_id != batch.project.as_bytes() {
            return Err(bad(format!(
                "belongs to another project than {}",
                batch.project
            )));
        }
        if body.device_id != batch.device.as_bytes() {
            return Err(bad(format!(
                "was recorded by another device than {}",
                batch.device
            )));
        }
        if let Some(prev) = out.last() {
            let expected = prev
                .seq
                .checked_add(1)
                .ok_or_else(|| bad("seq overflows".into()))?;
            if body.seq != expected {
                return Err(LedgerError::SeqGap {
                    expected,
                    got: body.seq,
                });
            }
            if body.prev_hash != prev.hash.as_bytes() {
                return Err(LedgerError::ChainBroken { seq: body.seq });
            }
        }
        let mut paths = Vec::new();
        if let Some(Payload::StateChange(sc)) = &body.payload {
            let op = Op::try_from(sc.op).unwrap_or(Op::Unspecified);
            if op == Op::Rename {
                paths.push((sc.from_path.clone(), false, Vec::new(), 0, 0, 0, false));
            }
            let exists = op != Op::Delete;
            let hash = if exists {
                sc.after_hash.clone()
            } else {
                Vec::new()
            };
            let withheld = exists && sc.withheld;
            paths.push((
                sc.path.clone(),
                exists,
                hash,
                sc.mode,
                sc.size,
                sc.kind,
                withheld,
            ));
        }
        let checkpoint = match &body.payload {
            Some(Payload::Checkpoint(c)) => Some(c.manifest_blob.clone()),
            _ => None,
        };
        out.push(Checked {
            approval: crate::approvals::indexed_request_id(&body),
            checkpoint,
            seq: body.seq,
            event_id: EventId::from_slice(&body.event_id).expect("decode_event checked the id"),
            hash: EventHash::from_slice(&ev.hash).expect("decode_event checked the hash"),
            prev_hash: body.prev_hash.clone(),
            timeline: TimelineId::from_slice(&body.timeline_id)
                .expect("decode_event checked the id"),
            ts_ms: body.occurred_at.div_euclid(1000),
            stored: ev.encode_to_vec(),
            paths,
        });
    }
    Ok(out)
}

/// Cuts the batch into transactions of at most `MAX_TX_BYTES` / `MAX_TX_EVENTS`.
fn chunks(events: &[Checked]) -> Vec<&[Checked]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, ev) in events.iter().enumerate() {
        let size = ev.stored.len()
            + 150
            + ev.paths.iter().map(|p| p.0.len() + 80).sum::<usize>()
            + ev.checkpoint.as_ref().map_or(0, |m| m.len() + 80);
        if i > start && (bytes + size > MAX_TX_BYTES || i - start >= MAX_TX_EVENTS) {
            out.push(&events[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < events.len() {
        out.push(&events[start..]);
    }
    out
}

pub(crate) fn read_cursor(v: Option<Vec<u8>>) -> Result<(u64, Vec<u8>), LedgerError> {
    match v {
        None => Ok((0, Vec::new())),
        Some(v) => {
            let (seq, hash): (i64, Vec<u8>) =
                unpack(&v).map_err(|e| corrupt(format!("device cursor: {e:?}")))?;
            Ok((
                u64::try_from(seq).map_err(|_| corrupt("device cursor seq"))?,
                hash,
            ))
        }
    }
}

impl<K: OrderedKv> Ledger<K> {
    /// Appends a device's events exactly once (see the module docs). Events already in the
    /// ledger are skipped; a gap, a broken chain or a different event at an acknowledged seq
    /// is refused with an error naming the seq, and nothing of that transaction is written.
    /// Transactions of a batch that committed before such an error stay committed (the ack
    /// of a retry reports them as skipped).
    pub async fn append(
        &self,
        tenant: TenantId,
        batch: &AppendBatch,
    ) -> Result<AppendAck, LedgerError> {
        if batch.events.is_empty() && batch.head.is_none() {
            return Err(LedgerError::Invalid(
                "an append needs events or a signed head".into(),
            ));
        }
        let checked = check_batch(batch)?;
        let t = self.tenant_keys(tenant).await?;
        let p = t.p(batch.project);
        let device = self.check_device(&t, batch).await?;
        if let Some(head) = &batch.head {
            check_head(head, batch, &device, &checked)?;
        }
        // Every timeline the batch names must exist before anything is written (timelines
        // are never deleted, so this holds for the chunks' transactions too).
        let timelines: Vec<TimelineId> = checked
            .iter()
            .map(|e| e.timeline)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        self.kv
            .transact(|tx, _| {
                let (p, timelines) = (p.clone(), timelines.clone());
                async move {
                    for tl in timelines {
                        if tx.get(&p.timeline(tl), true).await?.is_none() {
                            return Err(LedgerError::TimelineNotFound(tl));
                        }
                    }
                    Ok(())
                }
            })
            .await?;
        let mut ack = AppendAck::default();
        for chunk in chunks(&checked) {
            let (part, committed) = self
                .kv
                .transact(|tx, _| {
                    let (t, p) = (t.clone(), p.clone());
                    async move { append_chunk(&tx, tenant, &t, &p, batch, chunk).await }
                })
                .await?;
            ack.acked_seq = part.acked_seq;
            ack.skipped += part.skipped;
            if !part.written_seqs.is_empty() {
                let stamp = committed
                    .versionstamp
                    .ok_or_else(|| corrupt("a commit that wrote has no versionstamp"))?;
                ack.written.extend(
                    part.written_seqs
                        .iter()
                        .zip(0u16..)
                        .map(|(seq, i)| (*seq, stamp.with_user_version(i))),
                );
            }
        }
        if checked.is_empty() {
            // A head alone: store it if it matches the cursor.
            let head = batch.head.as_ref().expect("checked above");
            let (stored, _) = self
                .kv
                .transact(|tx, _| {
                    let p = p.clone();
                    async move {
                        let (seq, hash) = read_cursor(tx.get(&p.cursor(batch.device), false).await?)?;
                        if head.seq != seq || head.hash != hash {
                            return Err(LedgerError::BadHead(format!(
                                "head at seq {} does not match the device's last acknowledged event (seq {seq})",
                                head.seq
                            )));
                        }
                        tx.set(&p.head(batch.device), &head.encode_to_vec());
                        Ok(seq)
                    }
                })
                .await?;
            ack.acked_seq = stored;
        }
        Ok(ack)
    }

    async fn check_device(
        &self,
        t: &TenantKeys,
        batch: &AppendBatch,
    ) -> Result<Device, LedgerError> {
        let project_key = t.project(batch.project);
        let device_key = t.device(batch.device);
        let (device, _) = self
            .kv
            .transact(|tx, _| {
                let (project_key, device_key) = (project_key.clone(), device_key.clone());
                async move {
                    if tx.get(&project_key, true).await?.is_none() {
                        return Err(LedgerError::ProjectNotFound(batch.project));
                    }
                    let v = tx
                        .get(&device_key, true)
                        .await?
                        .ok_or(LedgerError::DeviceNotRegistered(batch.device))?;
                    from_json::<Device>("device", &v)
                }
            })
            .await?;
        Ok(device)
    }

    /// The device's cursor in a project: `(last acknowledged seq, its hash)`.
    pub async fn cursor(
        &self,
        tenant: TenantId,
        project: ProjectId,
        device: DeviceId,
    ) -> Result<(u64, Vec<u8>), LedgerError> {
        let p = self.tenant_keys(tenant).await?.p(project);
        read_cursor(self.read_key(p.cursor(device)).await?)
    }

    /// The device's last stored signed head in a project.
    pub async fn last_head(
        &self,
        tenant: TenantId,
        project: ProjectId,
        device: DeviceId,
    ) -> Result<Option<ChainHead>, LedgerError> {
        let p = self.tenant_keys(tenant).await?.p(project);
        match self.read_key(p.head(device)).await? {
            Some(v) => Ok(Some(
                ChainHead::decode(v.as_slice())
                    .map_err(|e| corrupt(format!("signed head: {e}")))?,
            )),
            None => Ok(None),
        }
    }
}

fn check_head(
    head: &ChainHead,
    batch: &AppendBatch,
    device: &Device,
    events: &[Checked],
) -> Result<(), LedgerError> {
    let bad = |why: String| LedgerError::BadHead(why);
    if head.project_id != batch.project.as_bytes() || head.device_id != batch.device.as_bytes() {
        return Err(bad(
            "signed for another project or device than the batch".into()
        ));
    }
    if head.public_key != device.public_key {
        return Err(bad(format!(
            "signed with a key that is not device {}'s registered key",
            batch.device
        )));
    }
    verify_head(head).map_err(|e| bad(e.to_string()))?;
    // The head signs the batch's last event, so that every event of the batch is covered by
    // a device signature (earlier ones through the hash chain).
    if let Some(last) = events.last() {
        if head.seq != last.seq {
            return Err(bad(format!(
                "head at seq {} does not sign the batch's last event (seq {})",
                head.seq, last.seq
            )));
        }
        if head.hash != last.hash.as_bytes() {
            return Err(bad(format!(
                "head at seq {} does not match the batch's event at that seq",
                head.seq
            )));
        }
    }
    Ok(())
}

/// Whether the log holds `ev` (by its id) with the same hash.
async fn stored_hash_is<T: Transaction>(
    tx: &T,
    p: &ProjectKeys,
    ev: &Checked,
) -> Result<bool, LedgerError> {
    let index = p.event_id(ev.event_id);
    let found = tx
        .get_range(&horde_kv::RangeOption::prefix(index.bytes()).limit(1), true)
        .await?;
    let Some(kv) = found.kvs.first() else {
        return Ok(false);
    };
    let (vs,): (Versionstamp,) = index
        .unpack(&kv.key)
        .map_err(|e| corrupt(format!("event id key: {e:?}")))?;
    let Some(stored) = tx.get(&p.log_at(&vs), true).await? else {
        return Err(corrupt("an event id names a missing event"));
    };
    let stored = proto::SignedEvent::decode(stored.as_slice())
        .map_err(|e| corrupt(format!("log event: {e}")))?;
    Ok(stored.hash == ev.hash.as_bytes())
}

struct ChunkResult {
    acked_seq: u64,
    skipped: u64,
    written_seqs: Vec<u64>,
}

async fn append_chunk<T: Transaction>(
    tx: &T,
    tenant: TenantId,
    t: &TenantKeys,
    p: &ProjectKeys,
    batch: &AppendBatch,
    chunk: &[Checked],
) -> Result<ChunkResult, LedgerError> {
    let (last_seq, last_hash) = read_cursor(tx.get(&p.cursor(batch.device), false).await?)?;
    let mut skipped = 0u64;
    let mut fresh: Vec<&Checked> = Vec::with_capacity(chunk.len());
    // A resent event below the cursor must be the one stored: its chain leads to the
    // chunk's later events, so checking the last such event checks them all.
    if let Some(old) = chunk.iter().rev().find(|e| e.seq < last_seq)
        && !stored_hash_is(tx, p, old).await?
    {
        return Err(LedgerError::SeqConflict { seq: old.seq });
    }
    for ev in chunk {
        if ev.seq < last_seq {
            skipped += 1;
        } else if ev.seq == last_seq {
            if ev.hash.as_bytes() != last_hash.as_slice() {
                return Err(LedgerError::SeqConflict { seq: ev.seq });
            }
            skipped += 1;
        } else {
            fresh.push(ev);
        }
    }
    if let Some(first) = fresh.first() {
        if first.seq != last_seq + 1 {
            return Err(LedgerError::SeqGap {
                expected: last_seq + 1,
                got: first.seq,
            });
        }
        if first.prev_hash != last_hash {
            return Err(LedgerError::ChainBroken { seq: first.seq });
        }
    }
    let mut written_seqs = Vec::with_capacity(fresh.len());
    for (i, ev) in fresh.iter().enumerate() {
        let i = u16::try_from(i).expect("MAX_TX_EVENTS fits in u16");
        tx.set_versionstamped_key(&p.log_new(i), &ev.stored);
        tx.set_versionstamped_key(&p.time_new(ev.ts_ms, i), &[]);
        tx.set_versionstamped_key(&p.event_id_new(ev.event_id, i), &[]);
        for (path, exists, hash, mode, size, kind, withheld) in &ev.paths {
            let version = FileVersion {
                versionstamp: Versionstamp::incomplete(i),
                exists: *exists,
                hash: hash.clone(),
                mode: *mode,
                size: *size,
                kind: *kind,
                withheld: *withheld,
            };
            tx.set_versionstamped_key(&p.path_new(ev.timeline, path, i), &version.encode());
        }
        if let Some(manifest) = &ev.checkpoint {
            tx.set_versionstamped_value(
                &p.checkpoint(batch.device, ev.timeline, ev.seq),
                &pack_with_versionstamp(&(Versionstamp::incomplete(i), manifest.as_slice())),
            );
        }
        if let Some(request) = &ev.approval {
            tx.set_versionstamped_key(&p.approval_new(request, i), &ev.stored);
        }
        written_seqs.push(ev.seq);
    }
    let acked_seq = match fresh.last() {
        Some(last) => {
            tx.set(
                &p.cursor(batch.device),
                &pack(&(last.seq as i64, last.hash.as_bytes().as_slice())),
            );
            tx.set_versionstamped_key(
                &keys::feed_new(),
                &pack(&(
                    tenant.uuid(),
                    t.prefix(),
                    batch.project.uuid(),
                    fresh.len() as i64,
                )),
            );
            last.seq
        }
        None => last_seq,
    };
    // The stored head only moves forward (a resent old batch does not take it back).
    if let Some(head) = &batch.head
        && head.seq <= acked_seq
        && chunk.iter().any(|e| e.seq == head.seq)
    {
        let stored = match tx.get(&p.head(batch.device), false).await? {
            Some(v) => {
                ChainHead::decode(v.as_slice())
                    .map_err(|e| corrupt(format!("signed head: {e}")))?
                    .seq
            }
            None => 0,
        };
        if head.seq > stored {
            tx.set(&p.head(batch.device), &head.encode_to_vec());
        }
    }
    Ok(ChunkResult {
        acked_seq,
        skipped,
        written_seqs,
    })
}
