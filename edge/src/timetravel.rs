//! Time travel on the edge: points in the local log, timelines and forks, and `horde-replay`
//! plugged into `.horde/` (events from SQLite, blobs from `.horde/blobs`).
//!
//! A point is a local event (`events.id`) on a timeline; the state at a point is the tree
//! right after that event. A timeline's lineage is itself from its fork point on, then its
//! parent up to and including `fork_id`, and so on to the main timeline. Every fork starts
//! with a Checkpoint on the new timeline and the writer adds checkpoints as changes pile up,
//! so [`state_at`] reads one manifest and at most about `checkpoint_interval` changes.

use std::path::{Path, PathBuf};

use horde_core::proto::{Checkpoint, event_body::Payload};
use horde_core::{BlobHash, DeviceId, Draft, EventId, RepoPath, TimelineId, decode_event};
use horde_replay::{
    BlobSource, EventSource, ReplayError, RestoreMode, RestoreOptions, RestoreReport, State,
};
use prost::Message as _;
use rusqlite::{Connection, OptionalExtension, params};

use crate::record::Recorder;
use crate::store::read::{self, EventRow};
use crate::store::writer::{AppendRequest, NewTimeline, WorktreeEntry, WorktreeOp};
use crate::store::{BlobStore, HORDE_DIR, Ledger, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum TravelError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Find(#[from] read::FindError),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error("nothing was recorded on this timeline at or before {0}")]
    NothingBefore(String),
    #[error(
        "{0:?} is not a point in the history: give HEAD, a seq (#12), an event id or a unique prefix, or a time (RFC 3339, 2026-11-22 14:12, \"10 minutes ago\")"
    )]
    BadPoint(String),
    #[error("no timeline matches {0:?} (`horde timeline list` shows them)")]
    NoTimeline(String),
    #[error("{0:?} matches {1} timelines; give more of the id")]
    AmbiguousTimeline(String, usize),
    #[error("a timeline named {0:?} exists already")]
    NameTaken(String),
    #[error(
        "the tree has {count} unrecorded changes ({sample}); record them with `horde snapshot`, or pass --force to discard them"
    )]
    Dirty { count: usize, sample: String },
    #[error("the timeline table is corrupt: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for TravelError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.into())
    }
}

pub type Result<T, E = TravelError> = std::result::Result<T, E>;

/// A position in the local log: the state right after local event `id` of `timeline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub timeline: TimelineId,
    pub id: i64,
}

/// A timeline as this ledger knows it.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub id: TimelineId,
    pub parent: Option<TimelineId>,
    pub fork_id: i64,
    pub fork_event: Option<EventId>,
    pub name: Option<String>,
    pub created_at: i64,
}

impl Timeline {
    /// Its name, or "main" for the main timeline, else the end of its id (v7 ids made in
    /// the same minute share their start; names of forks pulled from the cloud are not known).
    pub fn label(&self) -> String {
        match (&self.name, self.parent) {
            (Some(n), _) => n.clone(),
            (None, None) => "main".into(),
            (None, Some(_)) => {
                let id = self.id.to_string();
                format!("fork-{}", &id[id.len() - 8..])
            }
        }
    }
}

/// A `timelines` row as stored: id, parent, fork_id, fork_event, name, created_at.
type RawTimeline = (
    Vec<u8>,
    Option<Vec<u8>>,
    Option<i64>,
    Option<Vec<u8>>,
    Option<String>,
    i64,
);

fn timeline_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawTimeline> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

/// Every timeline, oldest first.
pub fn timelines(conn: &Connection) -> Result<Vec<Timeline>> {
    let mut stmt = conn.prepare(
        "SELECT id, parent, fork_id, fork_event, name, created_at FROM timelines ORDER BY created_at, id",
    )?;
    let rows = stmt.query_map([], timeline_row)?;
    let mut out = Vec::new();
    for r in rows {
        let (id, parent, fork_id, fork_event, name, created_at) = r?;
        let bad = || TravelError::Corrupt("a timeline id is not 16 bytes".into());
        out.push(Timeline {
            id: TimelineId::from_slice(&id).ok_or_else(bad)?,
            parent: parent
                .map(|p| TimelineId::from_slice(&p).ok_or_else(bad))
                .transpose()?,
            fork_id: fork_id.unwrap_or(0),
            fork_event: fork_event.and_then(|e| EventId::from_slice(&e)),
            name,
            created_at,
        });
    }
    Ok(out)
}

/// Finds a timeline by name ("main" for the main one), full id or unique id prefix.
pub fn find_timeline(conn: &Connection, spec: &str) -> Result<Timeline> {
    let all = timelines(conn)?;
    let spec_t = spec.trim();
    if let Some(t) = all.iter().find(|t| t.label() == spec_t) {
        return Ok(t.clone());
    }
    let lower = spec_t.to_ascii_lowercase();
    let hits: Vec<&Timeline> = all
        .iter()
        .filter(|t| lower.len() >= 4 && t.id.to_string().starts_with(&lower))
        .collect();
    match hits.len() {
        0 => Err(TravelError::NoTimeline(spec.to_owned())),
        1 => Ok(hits[0].clone()),
        n => Err(TravelError::AmbiguousTimeline(spec.to_owned(), n)),
    }
}

fn timeline(conn: &Connection, id: TimelineId) -> Result<Option<Timeline>> {
    Ok(timelines(conn)?.into_iter().find(|t| t.id == id))
}

/// The parts of the log `at` sees, root first: (timeline, after this id, up to this id).
fn lineage(conn: &Connection, at: Point) -> Result<Vec<(TimelineId, i64, i64)>> {
    let all = timelines(conn)?;
    let mut out = Vec::new();
    let (mut cur, mut hi) = (at.timeline, at.id);
    loop {
        if out.len() > all.len() {
            return Err(TravelError::Corrupt("timeline ancestry loops".into()));
        }
        match all.iter().find(|t| t.id == cur) {
            Some(Timeline {
                parent: Some(parent),
                fork_id,
                ..
            }) => {
                out.push((cur, *fork_id, hi));
                hi = hi.min(*fork_id);
                cur = *parent;
            }
            // The main timeline, or one this ledger has no row for: all of its events.
            _ => {
                out.push((cur, 0, hi));
                out.reverse();
                return Ok(out);
            }
        }
    }
}

/// The local log as a `horde-replay` event source.
///
/// Each device's own chain describes its own tree: the state at a point is that point's
/// device's latest checkpoint before it plus that device's changes after it (other devices'
/// work enters a device's tree only through its own events: what `horde sync` merges is
/// recorded again, by the device that merged it). On a fork's parent, the device is the one
/// of the fork point.
pub struct History<'c>(pub &'c Connection);

/// The device of local event `id` (any device when there is none).
fn device_of(conn: &Connection, id: i64) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached("SELECT device_id FROM events WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()
}

impl EventSource for History<'_> {
    type Point = Point;

    fn checkpoint(&self, at: Point) -> Result<Option<(Point, BlobHash)>, ReplayError> {
        let src = |e: TravelError| ReplayError::Source(e.to_string());
        let sql = |e: rusqlite::Error| ReplayError::Source(format!("ledger: {e}"));
        for (tl, lo, hi) in lineage(self.0, at).map_err(src)?.into_iter().rev() {
            let device = device_of(self.0, hi).map_err(sql)?;
            let found: Option<(i64, Vec<u8>)> = self
                .0
                .prepare_cached(
                    "SELECT c.id, c.manifest FROM checkpoints c JOIN events e ON e.id = c.id
                     WHERE c.timeline = ?1 AND c.id > ?2 AND c.id <= ?3
                       AND (?4 IS NULL OR e.device_id = ?4)
                     ORDER BY c.id DESC LIMIT 1",
                )
                .map_err(sql)?
                .query_row(params![tl.as_bytes(), lo, hi, device], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(sql)?;
            if let Some((id, manifest)) = found {
                let hash = BlobHash::from_slice(&manifest).ok_or_else(|| {
                    ReplayError::BadManifest(format!("checkpoint #{id} names no valid blob"))
                })?;
                return Ok(Some((Point { timeline: tl, id }, hash)));
            }
        }
        Ok(None)
    }

    fn changes(
        &self,
        from: Option<Point>,
        at: Point,
        f: &mut dyn FnMut(&horde_core::proto::StateChange) -> Result<(), ReplayError>,
    ) -> Result<(), ReplayError> {
        let src = |e: TravelError| ReplayError::Source(e.to_string());
        let sql = |e: rusqlite::Error| ReplayError::Source(format!("ledger: {e}"));
        let parts = lineage(self.0, at).map_err(src)?;
        let start = from.map_or(0, |p| {
            parts
                .iter()
                .position(|(tl, _, _)| *tl == p.timeline)
                .unwrap_or(0)
        });
        for (i, (tl, lo, hi)) in parts.iter().enumerate().skip(start) {
            let lo = match from {
                Some(p) if i == start => p.id.max(*lo),
                _ => *lo,
            };
            let device = device_of(self.0, *hi).map_err(sql)?;
            let mut stmt = self
                .0
                .prepare_cached(
                    "SELECT body, hash, id FROM events
                     WHERE id > ?1 AND id <= ?2 AND timeline = ?3 AND path IS NOT NULL
                       AND (?4 IS NULL OR device_id = ?4) ORDER BY id",
                )
                .map_err(sql)?;
            let mut rows = stmt
                .query(params![lo, hi, tl.as_bytes(), device])
                .map_err(sql)?;
            while let Some(r) = rows.next().map_err(sql)? {
                let (body, hash, id): (Vec<u8>, Vec<u8>, i64) = (
                    r.get(0).map_err(sql)?,
                    r.get(1).map_err(sql)?,
                    r.get(2).map_err(sql)?,
                );
                let ev = decode_event(&body, &hash).map_err(|e| {
                    ReplayError::Source(format!(
                        "local event {id} is corrupt ({e}); run `horde verify`"
                    ))
                })?;
                if let Some(Payload::StateChange(sc)) = &ev.payload {
                    f(sc)?;
                }
            }
        }
        Ok(())
    }
}

/// `.horde/blobs` as a `horde-replay` blob source: local files, copied in the kernel.
pub struct Blobs<'b>(pub &'b BlobStore);

impl BlobSource for Blobs<'_> {
    fn open(&self, hash: &BlobHash) -> std::io::Result<Box<dyn std::io::Read + Send + '_>> {
        Ok(Box::new(std::fs::File::open(self.0.path_of(hash))?))
    }

    fn local_file(&self, hash: &BlobHash) -> Option<PathBuf> {
        Some(self.0.path_of(hash))
    }

    /// A withheld blob of another device is not here: restore lists it instead.
    fn has(&self, hash: &BlobHash) -> bool {
        self.0.contains(hash)
    }
}

/// The latest event of `timeline`'s lineage (its fork point if it has none of its own).
pub fn head(conn: &Connection, timeline: TimelineId) -> Result<Point> {
    let last: Option<i64> = conn
        .prepare_cached("SELECT MAX(id) FROM events")?
        .query_row([], |r| r.get(0))?;
    let last = last.unwrap_or(0);
    for (tl, lo, hi) in lineage(conn, Point { timeline, id: last })?
        .into_iter()
        .rev()
    {
        let id: Option<i64> = conn
            .prepare_cached(
                "SELECT MAX(id) FROM events WHERE timeline = ?1 AND id > ?2 AND id <= ?3",
            )?
            .query_row(params![tl.as_bytes(), lo, hi], |r| r.get(0))?;
        if let Some(id) = id {
            return Ok(Point { timeline: tl, id });
        }
    }
    Err(TravelError::NothingBefore("now".into()))
}

/// What a point resolved to, for messages.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub point: Point,
    pub event: EventRow,
}

impl Resolved {
    pub fn label(&self) -> String {
        format!(
            "#{} ({})",
            self.event.seq,
            crate::output::local_time(self.event.occurred_at)
        )
    }
}

fn event_at(conn: &Connection, id: i64) -> Result<EventRow> {
    read::event_by_local_id(conn, id)?
        .ok_or_else(|| TravelError::Corrupt(format!("local event {id} vanished")))
}

fn resolved(conn: &Connection, row: EventRow) -> Result<Resolved> {
    let timeline: Vec<u8> = conn
        .prepare_cached("SELECT timeline FROM events WHERE id = ?1")?
        .query_row([row.local_id], |r| r.get(0))?;
    let timeline = TimelineId::from_slice(&timeline)
        .ok_or_else(|| TravelError::Corrupt("an event's timeline is not 16 bytes".into()))?;
    Ok(Resolved {
        point: Point {
            timeline,
            id: row.local_id,
        },
        event: row,
    })
}

/// Resolves what a user typed for `--at`: `HEAD`, a seq of this device (`#12`), an event id or
/// a unique prefix of one, or a time (the latest event of `current`'s lineage at or before it).
pub fn resolve_point(
    conn: &Connection,
    spec: &str,
    current: TimelineId,
    device: Option<DeviceId>,
) -> Result<Resolved> {
    let t = spec.trim();
    if t.eq_ignore_ascii_case("head") {
        let p = head(conn, current)?;
        return resolved(conn, event_at(conn, p.id)?);
    }
    let seq_like = t.strip_prefix('#').unwrap_or(t);
    let is_seq = t.starts_with('#') || (seq_like.len() < 8 && seq_like.parse::<u64>().is_ok());
    if t.parse::<EventId>().is_ok() || is_seq {
        return resolved(conn, read::find_event(conn, t, device)?);
    }
    if let Ok(micros) = parse_time(t) {
        let mut best: Option<i64> = None;
        let last: Option<i64> = conn
            .prepare_cached("SELECT MAX(id) FROM events")?
            .query_row([], |r| r.get(0))?;
        let at = Point {
            timeline: current,
            id: last.unwrap_or(0),
        };
        for (tl, lo, hi) in lineage(conn, at)? {
            let id: Option<i64> = conn
                .prepare_cached(
                    "SELECT MAX(id) FROM events WHERE timeline = ?1 AND id > ?2 AND id <= ?3 AND occurred_at <= ?4",
                )?
                .query_row(params![tl.as_bytes(), lo, hi, micros], |r| r.get(0))?;
            best = best.max(id);
        }
        return match best {
            Some(id) => resolved(conn, event_at(conn, id)?),
            None => Err(TravelError::NothingBefore(t.to_owned())),
        };
    }
    match read::find_event(conn, t, device) {
        Ok(row) => resolved(conn, row),
        Err(read::FindError::NotFound(_)) => Err(TravelError::BadPoint(spec.to_owned())),
        Err(e) => Err(e.into()),
    }
}

/// The tree at `at`.
pub fn state_at(ledger: &Ledger, at: Point) -> Result<State> {
    Ok(horde_replay::state_at(
        &History(&ledger.conn),
        &Blobs(&ledger.blobs),
        at,
    )?)
}

/// The tree as the worktree index of `timeline` says it was last recorded.
pub fn recorded_state(index: &crate::scan::Index) -> State {
    let mut s = State::new();
    for (p, e) in index {
        if let Ok(entry) = horde_replay::Entry::from_parts_withheld(
            e.kind,
            e.mode,
            e.size,
            e.hash.map(|h| h.to_vec()).as_deref().unwrap_or(&[]),
            e.withheld,
        ) {
            s.insert(p, entry);
        }
    }
    s
}

/// What is on disk now, from a scan against the recorder's index; refuses unrecorded changes
/// unless `force` (which discards them).
pub fn disk_state(rec: &Recorder<'_>, force: bool) -> Result<State> {
    let outcome = rec.scan()?;
    if !outcome.changes.is_empty() && !force {
        let sample: Vec<String> = outcome
            .changes
            .iter()
            .take(3)
            .map(|c| c.path.to_string())
            .collect();
        let more = if outcome.changes.len() > 3 {
            ", …"
        } else {
            ""
        };
        return Err(TravelError::Dirty {
            count: outcome.changes.len(),
            sample: format!("{}{more}", sample.join(", ")),
        });
    }
    let mut index = rec.index.clone();
    crate::scan::apply(&mut index, &outcome.ops);
    Ok(recorded_state(&index))
}

/// Writes `state` into a new or empty directory.
pub fn restore_to(
    ledger: &Ledger,
    state: &State,
    dir: &Path,
    verify: bool,
    progress: &(dyn Fn(horde_replay::Progress) + Sync),
) -> Result<RestoreReport> {
    restore(ledger, state, dir, RestoreMode::Fresh, verify, progress)
}

/// Writes `state` over the repository's tree, which holds `current`.
pub fn restore_in_place(
    ledger: &Ledger,
    state: &State,
    current: &State,
    verify: bool,
    progress: &(dyn Fn(horde_replay::Progress) + Sync),
) -> Result<RestoreReport> {
    let root = &ledger.layout.root;
    restore(
        ledger,
        state,
        root,
        RestoreMode::InPlace { current },
        verify,
        progress,
    )
}

fn restore(
    ledger: &Ledger,
    state: &State,
    target: &Path,
    mode: RestoreMode<'_>,
    verify: bool,
    progress: &(dyn Fn(horde_replay::Progress) + Sync),
) -> Result<RestoreReport> {
    let opts = RestoreOptions {
        verify,
        protect: &[HORDE_DIR],
        ..RestoreOptions::default()
    };
    let blobs = Blobs(&ledger.blobs);
    Ok(horde_replay::restore(
        state, &blobs, target, mode, &opts, progress,
    )?)
}

/// Makes `timeline` the one this repository records on.
pub fn set_current(conn: &Connection, timeline: TimelineId) -> Result<()> {
    conn.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'timeline_id'",
        [timeline.as_bytes()],
    )?;
    Ok(())
}

/// Creates a timeline forked at `at` whose first event is a checkpoint of `state` (the tree
/// at `at`) caused by the fork point, and indexes `state` as its recorded tree.
pub fn fork(store: &Store, at: &Resolved, state: &State, name: Option<String>) -> Result<Timeline> {
    if let Some(n) = &name
        && timelines(&store.ledger.conn)?
            .iter()
            .any(|t| t.label() == *n)
    {
        return Err(TravelError::NameTaken(n.clone()));
    }
    let id = TimelineId::new();
    let mut req = checkpoint_request(
        store,
        id,
        state,
        Some(at.event.id),
        &crate::record::outside_agent(),
    )?;
    req.timelines = vec![NewTimeline {
        id,
        parent: Some(at.point.timeline),
        fork_id: at.point.id,
        fork_event: Some(at.event.id),
        name: name.clone(),
    }];
    store.writer.append(req)?;
    timeline(&store.ledger.conn, id)?
        .ok_or_else(|| TravelError::Corrupt("the new timeline is not there".into()))
}

/// An append of a Checkpoint of `state` on `timeline` that also makes `state` the recorded
/// tree of `timeline` (mtimes unknown: the next scan hashes the files once).
pub fn checkpoint_request(
    store: &Store,
    timeline: TimelineId,
    state: &State,
    cause: Option<EventId>,
    agent: &str,
) -> Result<AppendRequest> {
    let bytes = state.to_manifest().encode_to_vec();
    let hash = store.ledger.blobs.put_bytes(&bytes)?;
    store.ledger.blobs.sync()?;
    let (files, total_bytes) = (state.len() as u64, state.totals().1);
    let mut checkpoint = Draft::new(
        timeline,
        agent,
        Payload::Checkpoint(Checkpoint {
            manifest_blob: hash.to_vec(),
            files,
            total_bytes,
        }),
    );
    checkpoint.causation = cause;
    let mut worktree: Vec<(TimelineId, WorktreeOp)> = Vec::new();
    let recorded = crate::store::read::load_worktree(&store.ledger.conn, timeline)?;
    for p in recorded.keys() {
        if state.get_key_value(p.as_str()).is_none() {
            worktree.push((timeline, WorktreeOp::Remove(p.clone())));
        }
    }
    worktree.extend(state.iter().filter_map(|(p, e)| {
        let path = RepoPath::parse(p).ok()?;
        Some((
            timeline,
            WorktreeOp::Put(
                path,
                WorktreeEntry {
                    kind: e.kind.to_proto(),
                    mode: e.mode,
                    size: e.size,
                    mtime_ns: 0, // unknown: the next scan hashes and refreshes it
                    hash: e.hash,
                    withheld: e.withheld,
                },
            ),
        ))
    }));
    Ok(AppendRequest {
        drafts: vec![checkpoint],
        blobs: vec![(hash, bytes.len() as u64)],
        worktree,
        sign_head: true,
        ..Default::default()
    })
}

/// Whether this device has a checkpoint on `timeline` (its own chain starts a tree there).
pub fn has_own_checkpoint(
    conn: &Connection,
    timeline: TimelineId,
    device: horde_core::DeviceId,
) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM checkpoints c JOIN events e ON e.id = c.id
             WHERE c.timeline = ?1 AND e.device_id = ?2 LIMIT 1",
            params![timeline.as_bytes(), device.as_bytes()],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Events recorded on `timeline` itself (not inherited).
pub fn event_count(conn: &Connection, timeline: TimelineId) -> Result<u64> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM events WHERE timeline = ?1")?
        .query_row([timeline.as_bytes()], |r| r.get::<_, i64>(0))? as u64)
}

/// Every recorded version of `path` on the lineage of `at`, oldest first.
pub fn path_history(conn: &Connection, at: Point, path: &RepoPath) -> Result<Vec<EventRow>> {
    let mut out = Vec::new();
    for (tl, lo, hi) in lineage(conn, at)? {
        out.extend(read::path_events(conn, tl, lo, hi, path)?);
    }
    Ok(out)
}

/// Parses a time for `--since`/`--until` into microseconds since the epoch.
pub fn parse_time(s: &str) -> anyhow::Result<i64> {
    let t = s.trim();
    if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        return Ok(ts.as_microsecond());
    }
    let tz = jiff::tz::TimeZone::system();
    if let Ok(dt) = t.parse::<jiff::civil::DateTime>() {
        return Ok(dt.to_zoned(tz)?.timestamp().as_microsecond());
    }
    if let Ok(d) = t.parse::<jiff::civil::Date>() {
        return Ok(d.to_zoned(tz)?.timestamp().as_microsecond());
    }
    let span_text = t.strip_suffix(" ago").unwrap_or(t);
    if let Ok(span) = span_text.parse::<jiff::Span>() {
        let then = jiff::Zoned::now().checked_sub(span.abs())?;
        return Ok(then.timestamp().as_microsecond());
    }
    anyhow::bail!(
        "cannot read the time {s:?}: use RFC 3339 (2026-11-22T14:12:00Z), a date (2026-11-22), a local time (2026-11-22 14:12) or a duration (\"10 minutes ago\")"
    )
}
