//! Reading the log and its indexes: events by version range, time range and type; time →
//! version; one path's history; the file manifest of a timeline at a version (following fork
//! ancestry); the global feed and indexer cursors.
//!
//! Everything at or below a committed version is immutable, so long reads are split into
//! several transactions (each well under FoundationDB's 5 s) without losing consistency.

use std::collections::BTreeMap;

use horde_core::proto::{EventBody, SignedEvent, event_body::Payload};
use horde_core::{DeviceId, EventId, ProjectId, TenantId, TimelineId, decode_event, payload_kind};
use horde_kv::tuple::{Subspace, Uuid, Versionstamp, unpack};
use horde_kv::{KeySelector, OrderedKv, RangeOption, Transaction};
use prost::Message;

use crate::Ledger;
use crate::error::{LedgerError, corrupt};
use crate::keys::{self, ProjectKeys, version_floor};
use crate::records::{FileVersion, Timeline};

/// Most events one read returns (page with `after`).
pub const MAX_READ_EVENTS: usize = 10_000;
/// Time-index entries read per transaction.
const TIME_BATCH: usize = 1_000;
/// Paths examined per transaction when building a manifest.
const PATHS_PER_TX: usize = 2_000;

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only these payload kinds (`"state_change"`, `"tool_call"`, …); empty: all.
    pub kinds: Vec<String>,
    pub timeline: Option<TimelineId>,
    pub device: Option<DeviceId>,
    /// Every device but this one (a device pulling the others' events).
    pub exclude_device: Option<DeviceId>,
    /// Only events by this agent (`agent_id`).
    pub agent: Option<String>,
    /// Only file changes of this path (as target or as rename source).
    pub path: Option<String>,
    /// Only events that occurred in this range (device clocks, µs since the epoch, inclusive).
    pub occurred_from: Option<i64>,
    pub occurred_to: Option<i64>,
    /// Commit versions, inclusive.
    pub from_version: Option<u64>,
    pub to_version: Option<u64>,
    /// Continue after this event (the last one of the previous page): past it in the
    /// direction of the read.
    pub after: Option<Versionstamp>,
    /// Read the log backwards: newest first (`after` then pages towards older events).
    pub newest_first: bool,
    /// At most this many (capped at [`MAX_READ_EVENTS`]).
    pub limit: Option<usize>,
    /// At most about this many bytes of stored events per page: a page stops before the
    /// event that would pass it (a page holds at least one event, whatever its size).
    pub max_bytes: Option<usize>,
}

impl EventFilter {
    fn wants(&self, body: &EventBody) -> bool {
        if self
            .timeline
            .is_some_and(|t| body.timeline_id != t.as_bytes())
        {
            return false;
        }
        if self.device.is_some_and(|d| body.device_id != d.as_bytes()) {
            return false;
        }
        if self
            .exclude_device
            .is_some_and(|d| body.device_id == d.as_bytes())
        {
            return false;
        }
        if self.occurred_from.is_some_and(|t| body.occurred_at < t)
            || self.occurred_to.is_some_and(|t| body.occurred_at > t)
        {
            return false;
        }
        if self.agent.as_ref().is_some_and(|a| body.agent_id != *a) {
            return false;
        }
        if let Some(path) = &self.path {
            match &body.payload {
                Some(Payload::StateChange(sc)) if sc.path == *path || sc.from_path == *path => {}
                _ => return false,
            }
        }
        if !self.kinds.is_empty() {
            let kind = body.payload.as_ref().map(payload_kind).unwrap_or("");
            if !self.kinds.iter().any(|k| k == kind) {
                return false;
            }
        }
        true
    }

    fn limit(&self) -> usize {
        self.limit.unwrap_or(MAX_READ_EVENTS).min(MAX_READ_EVENTS)
    }
}

/// An event as the log holds it.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub versionstamp: Versionstamp,
    pub event: SignedEvent,
    pub body: EventBody,
}

/// One page of a filtered read.
#[derive(Debug, Clone)]
pub struct EventPage {
    pub events: Vec<LoggedEvent>,
    /// Where to continue (pass as [`EventFilter::after`]): the last log entry examined, when
    /// the range may hold more. Filtered reads stop after examining `max_scan` entries even
    /// if they found fewer than `limit` events, so one page never reads the whole log.
    pub next: Option<Versionstamp>,
    /// The last log entry examined, filtered out or not, also when the range ended there
    /// (`None`: nothing was examined). Where a reader that keeps its place resumes.
    pub examined: Option<Versionstamp>,
}

/// The files of a timeline at a version: path → its version there (existing paths only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub version: u64,
    pub files: BTreeMap<String, FileVersion>,
}

/// A device's `Checkpoint` event, as the checkpoint index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRef {
    pub seq: u64,
    /// Where the event is in the log.
    pub versionstamp: Versionstamp,
    /// The manifest blob's hash (a `horde.v1.Manifest`).
    pub manifest: Vec<u8>,
}

/// One append transaction, as derived indexers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    pub versionstamp: Versionstamp,
    pub tenant: TenantId,
    pub tenant_prefix: i64,
    pub project: ProjectId,
    /// The transaction's events are the log keys with this versionstamp's transaction
    /// version and user versions `0..events`.
    pub events: u16,
}

fn decode_logged(log: &Subspace, key: &[u8], value: &[u8]) -> Result<LoggedEvent, LedgerError> {
    let (vs,): (Versionstamp,) = log
        .unpack(key)
        .map_err(|e| corrupt(format!("log key: {e:?}")))?;
    let event = SignedEvent::decode(value).map_err(|e| corrupt(format!("log event: {e}")))?;
    let body =
        decode_event(&event.body, &event.hash).map_err(|e| corrupt(format!("log event: {e}")))?;
    Ok(LoggedEvent {
        versionstamp: vs,
        event,
        body,
    })
}

fn vs_bytes(vs: &Versionstamp) -> &[u8] {
    &vs.as_bytes()[..]
}

impl<K: OrderedKv> Ledger<K> {
    /// The last committed version.
    pub async fn last_version(&self) -> Result<u64, LedgerError> {
        let tx = self.kv.begin().await?;
        Ok(tx.read_version().await?)
    }

    pub(crate) async fn project_keys(
        &self,
        tenant: TenantId,
        project: ProjectId,
    ) -> Result<ProjectKeys, LedgerError> {
        let t = self.tenant_keys(tenant).await?;
        if self.read_key(t.project(project)).await?.is_none() {
            return Err(LedgerError::ProjectNotFound(project));
        }
        Ok(t.p(project))
    }

    /// Events of a project in log order, filtered (see [`EventFilter`]).
    pub async fn events(
        &self,
        tenant: TenantId,
        project: ProjectId,
        filter: &EventFilter,
    ) -> Result<Vec<LoggedEvent>, LedgerError> {
        Ok(self
            .events_page(tenant, project, filter, usize::MAX)
            .await?
            .events)
    }

    /// One page of [`Ledger::events`], examining at most `max_scan` log entries.
    pub async fn events_page(
        &self,
        tenant: TenantId,
        project: ProjectId,
        filter: &EventFilter,
        max_scan: usize,
    ) -> Result<EventPage, LedgerError> {
        let p = self.project_keys(tenant, project).await?;
        let log = p.log();
        let mut begin = match filter.from_version {
            Some(v) => log.pack(&(version_floor(v),)),
            None => log.range().0,
        };
        let mut end = match filter.to_version {
            Some(v) => log.pack(&(version_floor(v.saturating_add(1)),)),
            None => log.range().1,
        };
        if let Some(after) = &filter.after {
            let k = log.pack(&(after,));
            if filter.newest_first {
                // Strictly before the cursor's own key.
                end = end.min(k);
            } else {
                let mut k = k;
                k.push(0);
                begin = begin.max(k);
            }
        }
        let limit = filter.limit();
        let max_bytes = filter.max_bytes.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut scanned = 0usize;
        let mut last_seen: Option<Versionstamp> = None;
        let mut exhausted = begin >= end;
        'scan: while out.len() < limit && scanned < max_scan && !exhausted {
            let batch = (max_scan - scanned).min(1_000);
            let mut range = RangeOption::new(begin.clone(), end.clone()).limit(batch);
            if filter.newest_first {
                range = range.reverse();
            }
            let kvs = self.read_batch(range).await?;
            let Some(last) = kvs.kvs.last() else {
                exhausted = true;
                break;
            };
            if filter.newest_first {
                // The end is exclusive: the next batch stops right before this key.
                end = last.key.clone();
            } else {
                begin = last.key.clone();
                begin.push(0);
            }
            // `more` only speaks within the limit: a full batch may have more behind it.
            exhausted = kvs.kvs.len() < batch && !kvs.more;
            for (i, kv) in kvs.kvs.iter().enumerate() {
                let ev = decode_logged(&log, &kv.key, &kv.value)?;
                let wanted = filter.wants(&ev.body);
                if wanted && !out.is_empty() && bytes.saturating_add(kv.value.len()) > max_bytes {
                    // Over the byte budget: this entry is left for the next page.
                    exhausted = false;
                    break 'scan;
                }
                scanned += 1;
                last_seen = Some(ev.versionstamp.clone());
                if wanted {
                    bytes += kv.value.len();
                    out.push(ev);
                    if out.len() == limit {
                        exhausted = exhausted && i + 1 == kvs.kvs.len();
                        break;
                    }
                }
            }
        }
        Ok(EventPage {
            events: out,
            next: if exhausted { None } else { last_seen.clone() },
            examined: last_seen,
        })
    }

    /// The event with this id, if the project's log holds it.
    pub async fn event_by_id(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: EventId,
    ) -> Result<Option<LoggedEvent>, LedgerError> {
        let p = self.project_keys(tenant, project).await?;
        let (index, log) = (p.event_id(id), p.log());
        let Some(kv) = self
            .read_batch(RangeOption::prefix(index.bytes()).limit(1))
            .await?
            .kvs
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let (vs,): (Versionstamp,) = index
            .unpack(&kv.key)
            .map_err(|e| corrupt(format!("event id key: {e:?}")))?;
        let key = log.pack(&(&vs,));
        let value = self
            .read_key(key.clone())
            .await?
            .ok_or_else(|| corrupt("an event id names a missing event"))?;
        decode_logged(&log, &key, &value).map(Some)
    }

    /// The latest `Checkpoint` event of `device` on `timeline` at or before seq `max_seq`:
    /// one reverse lookup in the checkpoint index.
    pub async fn latest_checkpoint(
        &self,
        tenant: TenantId,
        project: ProjectId,
        device: DeviceId,
        timeline: TimelineId,
        max_seq: u64,
    ) -> Result<Option<CheckpointRef>, LedgerError> {
        let p = self.project_keys(tenant, project).await?;
        let space = p.checkpoints(device, timeline);
        let end = match max_seq.checked_add(1) {
            Some(next) => space.pack(&(keys::seq_key(next),)),
            None => space.range().1,
        };
        let range = RangeOption::new(space.range().0, end).limit(1).reverse();
        let Some(kv) = self.read_batch(range).await?.kvs.into_iter().next() else {
            return Ok(None);
        };
        let (seq,): (i64,) = space
            .unpack(&kv.key)
            .map_err(|e| corrupt(format!("checkpoint key: {e:?}")))?;
        let (versionstamp, manifest): (Versionstamp, Vec<u8>) =
            unpack(&kv.value).map_err(|e| corrupt(format!("checkpoint entry: {e:?}")))?;
        Ok(Some(CheckpointRef {
            seq: u64::try_from(seq).map_err(|_| corrupt("checkpoint seq"))?,
            versionstamp,
            manifest,
        }))
    }

    /// Events that occurred in `[from_ms, to_ms]` (device clocks, milliseconds since the
    /// epoch), ordered by time, filtered by kind, timeline and device.
    pub async fn events_in_time(
        &self,
        tenant: TenantId,
        project: ProjectId,
        from_ms: i64,
        to_ms: i64,
        filter: &EventFilter,
    ) -> Result<Vec<LoggedEvent>, LedgerError> {
        if from_ms > to_ms {
            return Err(LedgerError::Invalid(format!(
                "time range starts at {from_ms} after it ends at {to_ms}"
            )));
        }
        let p = self.project_keys(tenant, project).await?;
        let (time, log) = (p.time(), p.log());
        let mut begin = time.pack(&(from_ms,));
        let end = time.pack(&(to_ms.saturating_add(1),));
        let limit = filter.limit();
        let mut out = Vec::new();
        while out.len() < limit && begin < end {
            let range = RangeOption::new(begin.clone(), end.clone()).limit(TIME_BATCH);
            let (page, _) = self
                .kv
                .transact(|tx, _| {
                    let (range, time, log) = (range.clone(), time.clone(), log.clone());
                    async move {
                        let batch = tx.get_range(&range, true).await?;
                        let mut events = Vec::with_capacity(batch.kvs.len());
                        for kv in &batch.kvs {
                            let (_, vs): (i64, Versionstamp) = time
                                .unpack(&kv.key)
                                .map_err(|e| corrupt(format!("time key: {e:?}")))?;
                            let key = log.pack(&(&vs,));
                            let value = tx
                                .get(&key, true)
                                .await?
                                .ok_or_else(|| corrupt("a time key names a missing event"))?;
                            events.push(decode_logged(&log, &key, &value)?);
                        }
                        Ok::<_, LedgerError>((
                            events,
                            batch.kvs.last().map(|kv| kv.key.clone()),
                            batch.more || batch.kvs.len() == TIME_BATCH,
                        ))
                    }
                })
                .await?;
            let (events, last, more) = page;
            out.extend(
                events
                    .into_iter()
                    .filter(|e| filter.wants(&e.body))
                    .take(limit - out.len()),
            );
            let Some(mut last) = last else { break };
            if !more {
                break;
            }
            last.push(0);
            begin = last;
        }
        Ok(out)
    }

    /// The commit version of the latest-recorded event that occurred at or before `ts_ms`,
    /// or `None` if none did: "the project as of that time".
    pub async fn version_at_time(
        &self,
        tenant: TenantId,
        project: ProjectId,
        ts_ms: i64,
    ) -> Result<Option<u64>, LedgerError> {
        let p = self.project_keys(tenant, project).await?;
        let time = p.time();
        let range = RangeOption::new(time.range().0, time.pack(&(ts_ms.saturating_add(1),)));
        // Events are indexed by their device's clock, so the latest by time is not always the
        // latest by version: scan the bucket of the latest time for its greatest version.
        let (found, _) = self
            .kv
            .transact(|tx, _| {
                let (range, time) = (range.clone(), time.clone());
                async move {
                    let last = tx.get_range(&range.limit(1).reverse(), true).await?;
                    match last.kvs.first() {
                        Some(kv) => {
                            let (_, vs): (i64, Versionstamp) = time
                                .unpack(&kv.key)
                                .map_err(|e| corrupt(format!("time key: {e:?}")))?;
                            Ok::<_, LedgerError>(Some(vs))
                        }
                        None => Ok(None),
                    }
                }
            })
            .await?;
        Ok(found.map(|vs| stamp_version(&vs)))
    }

    /// The timelines whose history `timeline` includes, from itself to the root, each with
    /// the last version of it that counts (`bound`).
    async fn ancestry(
        &self,
        p: &ProjectKeys,
        timeline: TimelineId,
        bound: u64,
    ) -> Result<Vec<(TimelineId, u64)>, LedgerError> {
        let mut chain = vec![(timeline, bound)];
        let mut current = timeline;
        let mut bound = bound;
        loop {
            let tl: Timeline = self
                .read_record(
                    "timeline",
                    p.timeline(current),
                    LedgerError::TimelineNotFound(current),
                )
                .await?;
            match (tl.parent, tl.fork_version) {
                (Some(parent), Some(at)) => {
                    if chain.len() > 1_000 || chain.iter().any(|(t, _)| *t == parent) {
                        return Err(corrupt("timeline ancestry loops"));
                    }
                    bound = bound.min(at);
                    chain.push((parent, bound));
                    current = parent;
                }
                _ => return Ok(chain),
            }
        }
    }

    async fn checked_version(&self, version: Option<u64>) -> Result<u64, LedgerError> {
        let last = self.last_version().await?;
        match version {
            Some(v) if v > last => Err(LedgerError::VersionInFuture { asked: v, last }),
            Some(v) => Ok(v),
            None => Ok(last),
        }
    }

    /// Every version of one path in a timeline up to `version` (default: now), oldest
    /// first, including the history inherited from the timelines it was forked from.
    pub async fn path_history(
        &self,
        tenant: TenantId,
        project: ProjectId,
        timeline: TimelineId,
        path: &str,
        version: Option<u64>,
    ) -> Result<Vec<FileVersion>, LedgerError> {
        let p = self.project_keys(tenant, project).await?;
        let version = self.checked_version(version).await?;
        let mut out = Vec::new();
        for (tl, bound) in self
            .ancestry(&p, timeline, version)
            .await?
            .into_iter()
            .rev()
        {
            let space = p.path(tl, path);
            let range = RangeOption::new(
                space.range().0,
                space.pack(&(version_floor(bound.saturating_add(1)),)),
            );
            for kv in self.read_all(range).await? {
                let (vs,): (Versionstamp,) = space
                    .unpack(&kv.key)
                    .map_err(|e| corrupt(format!("path key: {e:?}")))?;
                out.push(FileVersion::decode(vs, &kv.value)?);
            }
        }
        Ok(out)
    }

    /// The files of `timeline` at `version` (default: now), following fork ancestry. The cost
    /// is two key lookups per path ever recorded, whatever the length of each path's history.
    pub async fn manifest(
        &self,
        tenant: TenantId,
        project: ProjectId,
        timeline: TimelineId,
        version: Option<u64>,
    ) -> Result<Manifest, LedgerError> {
        let p = self.project_keys(tenant, project).await?;
        let version = self.checked_version(version).await?;
        let mut files: BTreeMap<String, FileVersion> = BTreeMap::new();
        // Root first: a descendant's versions replace its ancestors'.
        for (tl, bound) in self
            .ancestry(&p, timeline, version)
            .await?
            .into_iter()
            .rev()
        {
            for (path, fv) in self.latest_versions(&p, tl, bound).await? {
                files.insert(path, fv);
            }
        }
        files.retain(|_, fv| fv.exists);
        Ok(Manifest { version, files })
    }

    /// For each path of one timeline, its latest version at or below `bound` (deletions
    /// included). Skips from path to path: the history behind each is never read.
    async fn latest_versions(
        &self,
        p: &ProjectKeys,
        timeline: TimelineId,
        bound: u64,
    ) -> Result<Vec<(String, FileVersion)>, LedgerError> {
        let paths = p.paths(timeline);
        let upper = version_floor(bound.saturating_add(1));
        let (mut next, end) = paths.range();
        let mut out = Vec::new();
        loop {
            let (page, _) = self
                .kv
                .transact(|tx, _| {
                    let (paths, p, start, end) =
                        (paths.clone(), p.clone(), next.clone(), end.clone());
                    let upper = upper.clone();
                    async move {
                        let mut found = Vec::new();
                        let mut cursor = start;
                        for _ in 0..PATHS_PER_TX {
                            // The first entry of the next path.
                            let first = tx
                                .get_range(
                                    &RangeOption::new(cursor.clone(), end.clone()).limit(1),
                                    true,
                                )
                                .await?;
                            let Some(kv) = first.kvs.first() else {
                                return Ok::<_, LedgerError>((found, None));
                            };
                            let (path, first_vs): (String, Versionstamp) = paths
                                .unpack(&kv.key)
                                .map_err(|e| corrupt(format!("path key: {e:?}")))?;
                            let space = p.path(timeline, &path);
                            // Past every version of this path: its keys are prefix + 0x33 (a versionstamp).
                            cursor = space.bytes().to_vec();
                            cursor.push(0x34);
                            if vs_bytes(&first_vs) >= vs_bytes(&upper) {
                                continue;
                            }
                            let latest = RangeOption {
                                begin: KeySelector::first_greater_or_equal(space.bytes().to_vec()),
                                end: KeySelector::first_greater_or_equal(space.pack(&(&upper,))),
                                limit: Some(1),
                                reverse: true,
                            };
                            let last = tx.get_range(&latest, true).await?;
                            let kv = last
                                .kvs
                                .first()
                                .ok_or_else(|| corrupt("a path's first version vanished"))?;
                            let (vs,): (Versionstamp,) = space
                                .unpack(&kv.key)
                                .map_err(|e| corrupt(format!("path key: {e:?}")))?;
                            found.push((path, FileVersion::decode(vs, &kv.value)?));
                        }
                        Ok((found, Some(cursor)))
                    }
                })
                .await?;
            let (found, cursor) = page;
            out.extend(found);
            match cursor {
                Some(c) if c < end => next = c,
                _ => return Ok(out),
            }
        }
    }

    /// Append transactions after `after` (all of them from the start if `None`), oldest
    /// first: what derived indexers tail.
    pub async fn feed(
        &self,
        after: Option<&Versionstamp>,
        limit: usize,
    ) -> Result<Vec<FeedEntry>, LedgerError> {
        let feed = keys::feed();
        let begin = match after {
            Some(vs) => {
                let mut k = feed.pack(&(vs,));
                k.push(0);
                k
            }
            None => feed.range().0,
        };
        let range = RangeOption::new(begin, feed.range().1).limit(limit.min(MAX_READ_EVENTS));
        self.read_all(range)
            .await?
            .iter()
            .map(|kv| {
                let (vs,): (Versionstamp,) = feed
                    .unpack(&kv.key)
                    .map_err(|e| corrupt(format!("feed key: {e:?}")))?;
                let (tenant, prefix, project, events): (Uuid, i64, Uuid, i64) =
                    unpack(&kv.value).map_err(|e| corrupt(format!("feed entry: {e:?}")))?;
                Ok(FeedEntry {
                    versionstamp: vs,
                    tenant: TenantId::from_uuid(tenant),
                    tenant_prefix: prefix,
                    project: ProjectId::from_uuid(project),
                    events: u16::try_from(events).map_err(|_| corrupt("feed entry event count"))?,
                })
            })
            .collect()
    }

    /// The events of one feed entry.
    pub async fn feed_events(&self, entry: &FeedEntry) -> Result<Vec<LoggedEvent>, LedgerError> {
        let log = keys::TenantKeys::new(entry.tenant_prefix)
            .p(entry.project)
            .log();
        let at = |user: u16| {
            log.pack(&(Versionstamp::complete(
                tx_version(&entry.versionstamp),
                user,
            ),))
        };
        self.read_all(RangeOption::new(at(0), at(entry.events)))
            .await?
            .iter()
            .map(|kv| decode_logged(&log, &kv.key, &kv.value))
            .collect()
    }

    pub async fn indexer_cursor(&self, indexer: &str) -> Result<Option<Versionstamp>, LedgerError> {
        match self.read_key(keys::indexer(indexer)).await? {
            Some(v) => {
                let (vs,): (Versionstamp,) =
                    unpack(&v).map_err(|e| corrupt(format!("indexer cursor: {e:?}")))?;
                Ok(Some(vs))
            }
            None => Ok(None),
        }
    }

    pub async fn set_indexer_cursor(
        &self,
        indexer: &str,
        at: &Versionstamp,
    ) -> Result<(), LedgerError> {
        let key = keys::indexer(indexer);
        let value = horde_kv::tuple::pack(&(at,));
        self.kv
            .transact(|tx, _| {
                let (key, value) = (key.clone(), value.clone());
                async move {
                    tx.set(&key, &value);
                    Ok::<_, LedgerError>(())
                }
            })
            .await?;
        Ok(())
    }
}

fn tx_version(vs: &Versionstamp) -> [u8; 10] {
    vs.transaction_version().try_into().expect("10 bytes")
}

/// The commit version inside a versionstamp.
pub fn stamp_version(vs: &Versionstamp) -> u64 {
    horde_kv::CommitStamp(tx_version(vs)).version()
}
