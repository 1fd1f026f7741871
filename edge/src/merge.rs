//! Bringing pulled work into this device's tree, and conflicts.
//!
//! After a pull, the other devices' file changes on the current timeline that this device has
//! not merged yet (`sync_state.merged_id`) are applied to the tree in log order:
//! - a change whose base is what this device has (or that this device never touched the path
//!   of) is taken as it is (fast-forward);
//! - a change to a path this device changed from the same base while apart is a **conflict**:
//!   both changes stay in the log; non-overlapping text edits are merged three-way; otherwise
//!   the later change in versionstamp order is the head (an own change not acknowledged yet is
//!   the latest). Each conflict gets a row (`horde conflicts`) until `horde resolve`.
//!
//! The tree is written with horde-replay's in-place restore (only what changed, never outside
//! the repository) after unrecorded local changes were recorded, and what was written is then
//! recorded as this device's own events ("adopted" changes): each device's chain describes its
//! own tree, so restoring any device's point anywhere gives the tree that device had.

use std::collections::BTreeSet;

use horde_core::proto::{StateChange, event_body::Payload, state_change::Op};
use horde_core::{BlobHash, DeviceId, EventId, RepoPath, decode_event};
use horde_replay::{Entry, Kind};
use rusqlite::{OptionalExtension, params};

use crate::record::Recorder;
use crate::store::Store;
use crate::timetravel::{self as tt, TravelError};

/// Text files larger than this are not merged three-way.
pub const MAX_MERGE_BYTES: u64 = 4 << 20;
/// Agent name of the events a merge records.
pub const SYNC_AGENT: &str = "horde-sync";

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Travel(#[from] TravelError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error("no open conflict on {0} (see `horde conflicts`)")]
    NoConflict(String),
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = MergeError> = std::result::Result<T, E>;

/// What a merge did.
#[derive(Debug, Default, serde::Serialize)]
pub struct MergeReport {
    /// Pulled changes looked at.
    pub incoming: usize,
    /// Paths whose content changed in the tree.
    pub applied: usize,
    pub conflicts: Vec<ConflictView>,
    /// Own events the merge recorded.
    pub recorded: usize,
    /// Paths another device withheld (their blob stays there): not written here.
    pub withheld: Vec<String>,
    /// Unrecorded local changes recorded before the merge.
    pub recorded_local: usize,
    pub skipped: Vec<String>,
}

/// A conflict as `horde conflicts` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConflictView {
    pub id: i64,
    pub path: String,
    /// What the tree took: ours, theirs or merged.
    pub head: String,
    pub ours: Side,
    pub theirs: Side,
    pub detected_at: i64,
    pub resolved_by: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Side {
    pub local_id: i64,
    pub event: String,
    pub device: String,
    pub seq: u64,
    pub occurred_at: i64,
    pub agent: String,
    /// The content: a file's blob hash, "dir", or "deleted".
    pub content: String,
}

/// The entry a change leaves at its path (None: deleted).
fn after_of(sc: &StateChange) -> Option<Entry> {
    match Op::try_from(sc.op) {
        Ok(Op::Delete) => None,
        _ => {
            Entry::from_parts_withheld(sc.kind, sc.mode, sc.size, &sc.after_hash, sc.withheld).ok()
        }
    }
}

/// Whether `have` is what the change was made on.
fn base_matches(have: Option<&Entry>, sc: &StateChange) -> bool {
    match (have, Op::try_from(sc.op)) {
        (None, Ok(Op::Create | Op::Rename)) => true,
        (None, _) => false,
        (Some(e), Ok(Op::Create)) => e.kind == Kind::Dir && sc.kind == Kind::Dir.to_proto(),
        (Some(e), _) => match e.hash {
            Some(h) => {
                h.as_bytes() == sc.before_hash.as_slice()
                    || sc.before_hash.is_empty() && e.kind == Kind::Dir
            }
            None => sc.before_hash.is_empty(),
        },
    }
}

/// The latest own change of `path` on `timeline`: (local id, versionstamp if acknowledged).
fn own_latest(
    conn: &rusqlite::Connection,
    me: DeviceId,
    timeline: horde_core::TimelineId,
    path: &str,
) -> Result<Option<(i64, Option<Vec<u8>>)>> {
    Ok(conn
        .query_row(
            "SELECT id, synced_version FROM events
             WHERE path = ?1 AND device_id = ?2 AND timeline = ?3 ORDER BY id DESC LIMIT 1",
            params![path, me.as_bytes(), timeline.as_bytes()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// What the mark of a merge says: "seen up to <versionstamp hex>".
const SEEN_MARK: &str = "seen up to ";

/// How far in the cloud's log `device` had pulled when it recorded its local event `before`
/// (from its latest merge mark before that event).
fn seen_by(conn: &rusqlite::Connection, device: DeviceId, before: i64) -> Result<Option<Vec<u8>>> {
    let row: Option<(Vec<u8>, Vec<u8>)> = conn
        .query_row(
            "SELECT body, hash FROM events WHERE device_id = ?1 AND id < ?2 AND agent = ?3
               AND type = 'message' ORDER BY id DESC LIMIT 1",
            params![device.as_bytes(), before, SYNC_AGENT],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(
        row.and_then(|(b, h)| match decode_event(&b, &h).ok()?.payload? {
            Payload::Message(m) => {
                hex::decode(m.text.rsplit(SEEN_MARK).next()?.trim_end_matches(')')).ok()
            }
            _ => None,
        }),
    )
}

/// Whether this device's own history of `path` holds `entry` (content and kind).
fn own_had(
    conn: &rusqlite::Connection,
    me: DeviceId,
    timeline: horde_core::TimelineId,
    path: &str,
    entry: &Entry,
) -> Result<bool> {
    let mut st = conn.prepare_cached(
        "SELECT body, hash FROM events WHERE path = ?1 AND device_id = ?2 AND timeline = ?3",
    )?;
    let mut rows = st.query(params![path, me.as_bytes(), timeline.as_bytes()])?;
    while let Some(r) = rows.next()? {
        let (b, h): (Vec<u8>, Vec<u8>) = (r.get(0)?, r.get(1)?);
        if let Ok(ev) = decode_event(&b, &h)
            && let Some(Payload::StateChange(sc)) = &ev.payload
            && sc.path == path
            && after_of(sc).is_some_and(|e| e.kind == entry.kind && e.hash == entry.hash)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Merges text three-way; None when the edits overlap or a side is not text.
fn merge_text(base: &[u8], ours: &[u8], theirs: &[u8]) -> Option<Vec<u8>> {
    fn text(b: &[u8]) -> Option<&str> {
        if b.contains(&0) {
            None
        } else {
            std::str::from_utf8(b).ok()
        }
    }
    let (b, o, t) = (text(base)?, text(ours)?, text(theirs)?);
    diffy::merge(b, o, t).ok().map(String::into_bytes)
}

/// Brings pulled changes of the current timeline into the tree (see the module docs).
pub fn merge_pulled(store: &Store, remote: &str) -> Result<MergeReport> {
    let conn = &store.ledger.conn;
    let me = store.device;
    let mut report = MergeReport::default();
    let mut rec = Recorder::new(store)?;
    let timeline = rec.timeline;
    // Nothing on disk is lost: what is not recorded yet is recorded first.
    let pre = rec.step(SYNC_AGENT, None, Vec::new(), false)?;
    report.recorded_local = pre.changes;
    report.skipped.extend(pre.skipped);
    let merged_id: i64 = conn
        .query_row(
            "SELECT merged_id FROM sync_state WHERE remote = ?1",
            [remote],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    let last_id: i64 =
        conn.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?;
    let current = tt::recorded_state(&rec.index);
    let fresh = !tt::has_own_checkpoint(conn, timeline, me)? && current.is_empty();
    let mut target = current.clone();
    let mut conflicts: Vec<(String, i64, i64, &'static str)> = Vec::new();
    let mut devices: BTreeSet<DeviceId> = BTreeSet::new();
    {
        let mut st = conn.prepare(
            "SELECT id, body, hash, synced_version, device_id FROM events
             WHERE id > ?1 AND id <= ?2 AND timeline = ?3 AND device_id != ?4 AND path IS NOT NULL
             ORDER BY id",
        )?;
        let mut rows = st.query(params![
            merged_id,
            last_id,
            timeline.as_bytes(),
            me.as_bytes()
        ])?;
        while let Some(r) = rows.next()? {
            let (id, body, hash): (i64, Vec<u8>, Vec<u8>) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let theirs_vs: Option<Vec<u8>> = r.get(3)?;
            let Ok(ev) = decode_event(&body, &hash) else {
                continue; // `horde verify` reports it; pulled events were checked on arrival
            };
            let Some(Payload::StateChange(sc)) = &ev.payload else {
                continue;
            };
            report.incoming += 1;
            if let Some(d) = DeviceId::from_slice(&r.get::<_, Vec<u8>>(4)?) {
                devices.insert(d);
            }
            let have = target.get(&sc.path).cloned();
            let after = after_of(sc);
            // Another device kept this content to itself: the path stays as it is here.
            if let Some(a) = &after
                && a.withheld
                && a.hash.is_some_and(|h| !store.ledger.blobs.contains(&h))
            {
                if !report.withheld.contains(&sc.path) {
                    report.withheld.push(sc.path.clone());
                }
                continue;
            }
            if Op::try_from(sc.op) != Ok(Op::Rename) && have == after {
                continue; // already so here
            }
            if base_matches(have.as_ref(), sc) {
                let _ = target.apply(sc);
                continue;
            }
            // Changed here too. Only a change of our own makes it a conflict of ours.
            let Some((ours, ours_vs)) = own_latest(conn, me, timeline, &sc.path)? else {
                let _ = target.apply(sc);
                continue;
            };
            // Not a conflict: their device had pulled our change before making its own (its
            // merge marks say how far it had seen), or their change only repeats a version
            // this device had before (an echo of our own past).
            let dev = DeviceId::from_slice(&r.get::<_, Vec<u8>>(4)?);
            if let (Some(o), Some(d)) = (&ours_vs, dev)
                && seen_by(conn, d, id)?.is_some_and(|seen| seen >= *o)
            {
                let _ = target.apply(sc);
                continue;
            }
            if let Some(a) = &after
                && own_had(conn, me, timeline, &sc.path, a)?
            {
                continue;
            }
            let theirs_later = match (&ours_vs, &theirs_vs) {
                (Some(o), Some(t)) => t > o,
                (None, _) => false, // ours is not in the cloud yet: it will be later
                (Some(_), None) => true,
            };
            let merged = match (&have, &after) {
                (Some(h), Some(a))
                    if h.kind == Kind::File
                        && a.kind == Kind::File
                        && h.size <= MAX_MERGE_BYTES
                        && a.size <= MAX_MERGE_BYTES =>
                {
                    three_way(store, sc, h, a)
                }
                _ => None,
            };
            let head = if let Some(entry) = merged {
                let path =
                    RepoPath::parse(&sc.path).map_err(|e| MergeError::Other(e.to_string()))?;
                target.insert(&path, entry);
                "merged"
            } else if theirs_later {
                let _ = target.apply(sc);
                "theirs"
            } else {
                "ours"
            };
            conflicts.push((sc.path.clone(), ours, id, head));
        }
    }
    let changed = horde_replay::diff(&current, &target);
    report.applied = changed.len();
    if !changed.is_empty() {
        let bar = crate::output::RestoreBar::new();
        let kept =
            tt::restore_in_place(&store.ledger, &target, &current, false, &|p| bar.update(p))?;
        drop(bar);
        if !kept.kept.is_empty() {
            report.skipped.extend(
                kept.kept
                    .iter()
                    .map(|k| format!("{k}: kept (not written over)")),
            );
        }
    }
    let names: Vec<String> = devices
        .iter()
        .map(|d| {
            let s = d.to_string();
            s[s.len() - 8..].to_owned()
        })
        .collect();
    let seen: Option<Vec<u8>> = conn
        .query_row(
            "SELECT pull_cursor FROM sync_state WHERE remote = ?1",
            [remote],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    let mark = |text: String| {
        horde_core::Draft::new(
            timeline,
            SYNC_AGENT,
            Payload::Message(horde_core::proto::Message {
                from: SYNC_AGENT.into(),
                to: String::new(),
                text: format!(
                    "{text} ({SEEN_MARK}{})",
                    seen.as_deref().map(hex::encode).unwrap_or_default()
                ),
                body_blob: Vec::new(),
            }),
        )
    };
    if fresh && !target.is_empty() {
        // A device's first tree on a timeline is a checkpoint, not a create per file.
        let mut req = tt::checkpoint_request(store, timeline, &target, None, SYNC_AGENT)?;
        req.drafts.insert(
            0,
            mark(format!("took the tree of device(s) {}", names.join(", "))),
        );
        let res = store.writer.append(req)?;
        report.recorded += res.appended.len();
        rec = Recorder::new(store)?;
        let step = rec.step(SYNC_AGENT, None, Vec::new(), false)?;
        report.recorded += step.appended.len();
    } else if !changed.is_empty() || report.incoming > 0 {
        // The mark says how far this device has seen, even when nothing changed here.
        let note = mark(format!(
            "merged {} changed paths from device(s) {} ({} conflicts)",
            changed.len(),
            names.join(", "),
            conflicts.len()
        ));
        let step = rec.step(SYNC_AGENT, None, vec![note], true)?;
        report.recorded += step.appended.len();
        report.skipped.extend(step.skipped);
    }
    let now = horde_core::time::now_micros();
    for (path, ours, theirs, head) in &conflicts {
        conn.execute(
            "INSERT INTO conflicts (timeline, path, ours, theirs, head, detected_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![timeline.as_bytes(), path, ours, theirs, head, now],
        )?;
    }
    conn.execute(
        "UPDATE sync_state SET merged_id = MAX(merged_id, ?2) WHERE remote = ?1",
        params![remote, last_id],
    )?;
    report.conflicts = list_conflicts(store, false)?
        .into_iter()
        .filter(|c| c.detected_at == now)
        .collect();
    Ok(report)
}

/// Three-way merge of two file versions on their common base (their change's `before`).
fn three_way(store: &Store, sc: &StateChange, ours: &Entry, theirs: &Entry) -> Option<Entry> {
    let blobs = &store.ledger.blobs;
    let base = BlobHash::from_slice(&sc.before_hash)?;
    let (o, t) = (ours.hash?, theirs.hash?);
    let read = |h: &BlobHash| blobs.get(h).ok();
    let merged = merge_text(&read(&base)?, &read(&o)?, &read(&t)?)?;
    let hash = blobs.put_bytes(&merged).ok()?;
    blobs.sync().ok()?;
    Some(Entry {
        kind: Kind::File,
        mode: ours.mode,
        size: merged.len() as u64,
        hash: Some(hash),
        // Recording the merged file decides again; until then, the safe side.
        withheld: ours.withheld || theirs.withheld,
    })
}

fn side(conn: &rusqlite::Connection, local_id: i64, path: &str) -> Result<Side> {
    let row = crate::store::read::event_by_local_id(conn, local_id)?.ok_or_else(|| {
        MergeError::Other(format!(
            "conflict names local event {local_id}, which is not there"
        ))
    })?;
    let content = match decode_event(&row.body, &row.hash)
        .ok()
        .and_then(|e| e.payload)
    {
        Some(Payload::StateChange(sc)) if sc.path == path => match after_of(&sc) {
            None => "deleted".into(),
            Some(e) if e.kind == Kind::Dir => "dir".into(),
            Some(e) => e.hash.map(|h| h.to_hex()).unwrap_or_default(),
        },
        _ => String::new(),
    };
    Ok(Side {
        local_id,
        event: row.id.to_string(),
        device: row.device.to_string(),
        seq: row.seq,
        occurred_at: row.occurred_at,
        agent: row.agent.clone(),
        content,
    })
}

/// Conflicts of the current timeline (open ones, or all).
pub fn list_conflicts(store: &Store, all: bool) -> Result<Vec<ConflictView>> {
    let conn = &store.ledger.conn;
    let mut st = conn.prepare(
        "SELECT id, path, ours, theirs, head, detected_at, resolved_by FROM conflicts
         WHERE timeline = ?1 AND (?2 OR resolved_by IS NULL) ORDER BY id",
    )?;
    type Row = (i64, String, i64, i64, String, i64, Option<Vec<u8>>);
    let rows: Vec<Row> = st
        .query_map(params![store.ledger.meta.timeline.as_bytes(), all], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    rows.into_iter()
        .map(|(id, path, ours, theirs, head, detected_at, resolved)| {
            Ok(ConflictView {
                id,
                ours: side(conn, ours, &path)?,
                theirs: side(conn, theirs, &path)?,
                path,
                head,
                detected_at,
                resolved_by: resolved
                    .as_deref()
                    .and_then(EventId::from_slice)
                    .map(|e| e.to_string()),
            })
        })
        .collect()
}

/// What `horde resolve --take` chose.
pub enum Take {
    Ours,
    Theirs,
    File(std::path::PathBuf),
}

/// Resolves the open conflicts on `path`: writes the chosen content, records it (a message
/// naming the choice, then the change, caused by the other device's change) and closes them.
pub fn resolve(
    store: &Store,
    path: &str,
    take: Take,
    agent: &str,
) -> Result<(ConflictView, crate::record::Step)> {
    let open: Vec<ConflictView> = list_conflicts(store, false)?
        .into_iter()
        .filter(|c| c.path == path)
        .collect();
    let last = open
        .last()
        .cloned()
        .ok_or_else(|| MergeError::NoConflict(path.to_owned()))?;
    let conn = &store.ledger.conn;
    let repo_path =
        RepoPath::parse(path).map_err(|e| MergeError::Other(format!("{path:?}: {e}")))?;
    let entry_of = |local_id: i64| -> Result<Option<Entry>> {
        let row = crate::store::read::event_by_local_id(conn, local_id)?
            .ok_or_else(|| MergeError::Other(format!("local event {local_id} is not there")))?;
        match decode_event(&row.body, &row.hash)
            .ok()
            .and_then(|e| e.payload)
        {
            Some(Payload::StateChange(sc)) => Ok(after_of(&sc)),
            _ => Err(MergeError::Other(format!(
                "local event {local_id} is not a file change"
            ))),
        }
    };
    let (chosen, label) = match &take {
        Take::Ours => (entry_of(last.ours.local_id)?, "ours".to_owned()),
        Take::Theirs => (entry_of(last.theirs.local_id)?, "theirs".to_owned()),
        Take::File(f) => {
            let bytes =
                std::fs::read(f).map_err(|e| MergeError::Read(f.display().to_string(), e))?;
            let hash = store.ledger.blobs.put_bytes(&bytes)?;
            store.ledger.blobs.sync()?;
            let mode = entry_of(last.ours.local_id)?.map_or(0o644, |e| e.mode);
            (
                Some(Entry {
                    kind: Kind::File,
                    mode,
                    size: bytes.len() as u64,
                    hash: Some(hash),
                    // Recorded next, which decides whether it stays here.
                    withheld: false,
                }),
                format!("the content of {}", f.display()),
            )
        }
    };
    for e in [&chosen].into_iter().flatten() {
        if let Some(h) = e.hash
            && !store.ledger.blobs.contains(&h)
        {
            return Err(MergeError::Other(format!(
                "the content of that side (blob {h}) is not on this device; run `horde sync` first"
            )));
        }
    }
    let mut rec = Recorder::new(store)?;
    let current = tt::disk_state(&rec, true).map(|_| tt::recorded_state(&rec.index))?;
    // Record whatever is on disk first, so the resolution is a change of its own.
    rec.step(agent, None, Vec::new(), false)?;
    let current = if current == tt::recorded_state(&rec.index) {
        current
    } else {
        tt::recorded_state(&rec.index)
    };
    let mut target = current.clone();
    match &chosen {
        Some(e) => target.insert(&repo_path, e.clone()),
        None => {
            target.remove(path);
        }
    }
    tt::restore_in_place(&store.ledger, &target, &current, false, &|_| {})?;
    let theirs_id: Option<EventId> = last.theirs.event.parse().ok();
    let note = horde_core::Draft::new(
        rec.timeline,
        agent,
        Payload::Message(horde_core::proto::Message {
            from: agent.to_owned(),
            to: String::new(),
            text: format!("resolved the conflict on {path}: took {label}"),
            body_blob: Vec::new(),
        }),
    );
    let step = rec.step(agent, theirs_id, vec![note], true)?;
    let resolved_by = step
        .appended
        .first()
        .map(|a| a.id)
        .ok_or_else(|| MergeError::Other("the resolution was not recorded".into()))?;
    conn.execute(
        "UPDATE conflicts SET resolved_by = ?1 WHERE timeline = ?2 AND path = ?3 AND resolved_by IS NULL",
        params![resolved_by.as_bytes(), rec.timeline.as_bytes(), path],
    )?;
    Ok((last, step))
}

#[cfg(test)]
mod tests {
    use super::merge_text;

    #[test]
    fn text_merges_when_edits_do_not_overlap() {
        let base = b"a\nb\nc\nd\ne\n";
        let ours = b"A\nb\nc\nd\ne\n";
        let theirs = b"a\nb\nc\nd\nE\n";
        assert_eq!(
            merge_text(base, ours, theirs).as_deref(),
            Some(&b"A\nb\nc\nd\nE\n"[..])
        );
    }

    #[test]
    fn overlapping_edits_and_binary_do_not_merge() {
        assert_eq!(merge_text(b"a\n", b"b\n", b"c\n"), None);
        assert_eq!(merge_text(b"a\0", b"a\0b", b"c\0a"), None);
    }
}
