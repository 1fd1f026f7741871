//! Read queries over the ledger: the log with filters, one event, status counts, chains and
//! heads for verification, the worktree index.

use std::collections::BTreeMap;

use horde_core::proto::ChainHead;
use horde_core::{BlobHash, DeviceId, EventId, ProjectId, RepoPath, TimelineId};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use super::writer::WorktreeEntry;
use super::{Result, StoreError};

/// One stored event with its indexed columns. `body` is exactly what was hashed.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub local_id: i64,
    pub device: DeviceId,
    pub seq: u64,
    pub id: EventId,
    pub hash: Vec<u8>,
    pub body: Vec<u8>,
    pub kind: String,
    pub agent: String,
    pub occurred_at: i64,
    pub synced: bool,
}

const EVENT_COLS: &str = "id, device_id, seq, event_id, hash, body, type, agent, occurred_at, synced_version IS NOT NULL";

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    let dev: Vec<u8> = r.get(1)?;
    let eid: Vec<u8> = r.get(3)?;
    Ok(EventRow {
        local_id: r.get(0)?,
        device: DeviceId::from_slice(&dev).unwrap_or_else(|| DeviceId::from_bytes([0; 16])),
        seq: r.get::<_, i64>(2)? as u64,
        id: EventId::from_slice(&eid).unwrap_or_else(|| EventId::from_bytes([0; 16])),
        hash: r.get(4)?,
        body: r.get(5)?,
        kind: r.get(6)?,
        agent: r.get(7)?,
        occurred_at: r.get(8)?,
        synced: r.get(9)?,
    })
}

/// Filters for `horde log`. Empty lists mean "any".
#[derive(Debug, Default, Clone)]
pub struct LogFilter {
    pub types: Vec<String>,
    pub agents: Vec<String>,
    pub path: Option<RepoPath>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub limit: Option<usize>,
    /// Oldest first instead of newest first.
    pub oldest_first: bool,
    /// Only events listed after this local id (a page's cursor): older ones newest first,
    /// newer ones oldest first.
    pub after: Option<i64>,
}

pub fn log(conn: &Connection, f: &LogFilter) -> Result<Vec<EventRow>> {
    let mut sql = format!("SELECT {EVENT_COLS} FROM events WHERE 1=1");
    let mut args: Vec<Value> = Vec::new();
    let mut any_of = |sql: &mut String, col: &str, vals: &[String]| {
        if !vals.is_empty() {
            let marks = vec!["?"; vals.len()].join(", ");
            sql.push_str(&format!(" AND {col} IN ({marks})"));
            args.extend(vals.iter().cloned().map(Value::Text));
        }
    };
    any_of(&mut sql, "type", &f.types);
    any_of(&mut sql, "agent", &f.agents);
    if let Some(p) = &f.path {
        let dir = format!("{}/", p.as_str());
        sql.push_str(" AND (path = ? OR substr(path, 1, ?) = ?)");
        args.push(Value::Text(p.as_str().to_owned()));
        args.push(Value::Integer(dir.len() as i64));
        args.push(Value::Text(dir));
    }
    // Segments bound the id range a time filter can match, so only that range is scanned.
    if let Some(t) = f.since {
        sql.push_str(" AND occurred_at >= ? AND id >= (SELECT COALESCE(MIN(first_id), 0) FROM segments WHERE max_at >= ?)");
        args.push(Value::Integer(t));
        args.push(Value::Integer(t));
    }
    if let Some(t) = f.until {
        sql.push_str(" AND occurred_at <= ? AND id <= (SELECT COALESCE(MAX(last_id), 0) FROM segments WHERE min_at <= ?)");
        args.push(Value::Integer(t));
        args.push(Value::Integer(t));
    }
    if let Some(id) = f.after {
        sql.push_str(if f.oldest_first {
            " AND id > ?"
        } else {
            " AND id < ?"
        });
        args.push(Value::Integer(id));
    }
    sql.push_str(if f.oldest_first {
        " ORDER BY id ASC"
    } else {
        " ORDER BY id DESC"
    });
    if let Some(n) = f.limit {
        sql.push_str(" LIMIT ?");
        args.push(Value::Integer(n as i64));
    }
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), event_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error(
        "no event matches {0:?} (give an event id, a unique id prefix, or a seq number of this device)"
    )]
    NotFound(String),
    #[error("{0:?} matches {1} events; give more of the id")]
    Ambiguous(String, usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for FindError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.into())
    }
}

/// Finds an event by full id, unique id prefix (at least 4 hex digits), or a seq of `device`.
pub fn find_event(
    conn: &Connection,
    spec: &str,
    device: Option<DeviceId>,
) -> Result<EventRow, FindError> {
    let spec_t = spec.trim();
    let not_found = || FindError::NotFound(spec.to_owned());
    if let Ok(id) = spec_t.parse::<EventId>() {
        // Only segments whose event-id time range covers this id's can hold it.
        let ms = super::writer::uuid_ms(&id);
        let mut stmt = conn.prepare_cached(
            "SELECT first_id, last_id FROM segments WHERE min_event_ms <= ?1 AND max_event_ms >= ?1",
        )?;
        let ranges: Vec<(i64, i64)> = stmt
            .query_map([ms], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let sql =
            format!("SELECT {EVENT_COLS} FROM events WHERE id BETWEEN ?1 AND ?2 AND event_id = ?3");
        for (a, b) in ranges {
            if let Some(row) = conn
                .query_row(&sql, params![a, b, id.as_bytes()], event_row)
                .optional()?
            {
                return Ok(row);
            }
        }
        // Not where the index says (not a v7 id, or the index is stale): look everywhere.
        return conn
            .query_row(
                &format!("SELECT {EVENT_COLS} FROM events WHERE event_id = ?1"),
                [id.as_bytes()],
                event_row,
            )
            .optional()?
            .ok_or_else(not_found);
    }
    let seq_spec = spec_t.strip_prefix('#').unwrap_or(spec_t);
    if let (Ok(seq), Some(dev)) = (seq_spec.parse::<u64>(), device)
        && (spec_t.starts_with('#') || seq_spec.len() < 8)
    {
        let seg: Option<(i64, i64, i64)> = conn
            .query_row(
                "SELECT first_id, last_id, first_seq FROM segments WHERE device_id = ?1 AND first_seq <= ?2
                 ORDER BY first_seq DESC LIMIT 1",
                params![dev.as_bytes(), seq as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let (first_id, last_id, first_seq) = seg.ok_or_else(not_found)?;
        let id = first_id + (seq as i64 - first_seq);
        if id > last_id {
            return Err(not_found());
        }
        let row = conn
            .query_row(
                &format!("SELECT {EVENT_COLS} FROM events WHERE id = ?1"),
                [id],
                event_row,
            )
            .optional()?
            .ok_or_else(not_found)?;
        return if row.seq == seq && row.device == dev {
            Ok(row)
        } else {
            Err(not_found())
        };
    }
    let hexpre: String = spec_t
        .chars()
        .filter(|c| *c != '-')
        .collect::<String>()
        .to_ascii_uppercase();
    if hexpre.len() < 4 || !hexpre.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(FindError::NotFound(spec.to_owned()));
    }
    let mut stmt = conn.prepare(&format!(
        "SELECT {EVENT_COLS} FROM events WHERE substr(hex(event_id), 1, ?1) = ?2 LIMIT 2"
    ))?;
    let rows: Vec<EventRow> = stmt
        .query_map(params![hexpre.len() as i64, hexpre], event_row)?
        .collect::<rusqlite::Result<_>>()?;
    match rows.len() {
        0 => Err(FindError::NotFound(spec.to_owned())),
        1 => Ok(rows.into_iter().next().expect("one row")),
        n => Err(FindError::Ambiguous(spec.to_owned(), n)),
    }
}

/// Counts for `horde status`.
#[derive(Debug, Default)]
pub struct Counts {
    pub events: u64,
    pub unsynced: u64,
    pub last_occurred_at: Option<i64>,
}

pub fn counts(conn: &Connection) -> Result<Counts> {
    Ok(conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(synced_version IS NULL), 0), MAX(occurred_at) FROM events",
        [],
        |r| {
            Ok(Counts {
                events: r.get::<_, i64>(0)? as u64,
                unsynced: r.get::<_, i64>(1)? as u64,
                last_occurred_at: r.get(2)?,
            })
        },
    )?)
}

/// Devices that have events in this ledger.
pub fn devices(conn: &Connection) -> Result<Vec<DeviceId>> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT device_id FROM events UNION SELECT DISTINCT device_id FROM chain_heads",
    )?;
    let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = Vec::new();
    for r in rows {
        let b = r?;
        out.push(DeviceId::from_slice(&b).ok_or(StoreError::BadMeta("events.device_id"))?);
    }
    out.sort();
    Ok(out)
}

/// Calls `f(row)` for each event of `device` in arrival order (for one device, that is seq
/// order), until `f` returns false.
pub fn for_each_event(
    conn: &Connection,
    device: DeviceId,
    mut f: impl FnMut(&EventRow) -> bool,
) -> Result<()> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {EVENT_COLS} FROM events WHERE device_id = ?1 ORDER BY id"
    ))?;
    let mut rows = stmt.query([device.as_bytes()])?;
    while let Some(r) = rows.next()? {
        if !f(&event_row(r)?) {
            break;
        }
    }
    Ok(())
}

/// A stored segment: events `first_id..=last_id` are `device`'s seqs from `first_seq`.
#[derive(Debug, Clone)]
pub struct SegmentRow {
    pub first_id: i64,
    pub last_id: i64,
    pub device: Vec<u8>,
    pub first_seq: u64,
}

pub fn segments(conn: &Connection) -> Result<Vec<SegmentRow>> {
    let mut stmt = conn.prepare(
        "SELECT first_id, last_id, device_id, first_seq FROM segments ORDER BY first_id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(SegmentRow {
            first_id: r.get(0)?,
            last_id: r.get(1)?,
            device: r.get(2)?,
            first_seq: r.get::<_, i64>(3)? as u64,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Calls `f(id, device, seq)` for every event in arrival order.
pub fn for_each_position(conn: &Connection, mut f: impl FnMut(i64, &[u8], u64)) -> Result<()> {
    let mut stmt = conn.prepare("SELECT id, device_id, seq FROM events ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let dev: Vec<u8> = r.get(1)?;
        f(r.get(0)?, &dev, r.get::<_, i64>(2)? as u64);
    }
    Ok(())
}

const HEAD_COLS: &str = "device_id, seq, hash, signed_at, public_key, signature";

/// A stored head; `project` completes it (the ledger holds one project).
fn head_row(project: ProjectId) -> impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<ChainHead> {
    move |r| {
        Ok(ChainHead {
            project_id: project.to_vec(),
            device_id: r.get(0)?,
            seq: r.get::<_, i64>(1)? as u64,
            hash: r.get(2)?,
            signed_at: r.get(3)?,
            public_key: r.get(4)?,
            signature: r.get(5)?,
        })
    }
}

/// Every signed head of `device`, oldest first.
pub fn heads(conn: &Connection, project: ProjectId, device: DeviceId) -> Result<Vec<ChainHead>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {HEAD_COLS} FROM chain_heads WHERE device_id = ?1 ORDER BY seq"
    ))?;
    let rows = stmt.query_map([device.as_bytes()], head_row(project))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The last signed head of `device`, if any.
pub fn last_head(
    conn: &Connection,
    project: ProjectId,
    device: DeviceId,
) -> Result<Option<ChainHead>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {HEAD_COLS} FROM chain_heads WHERE device_id = ?1 ORDER BY seq DESC LIMIT 1"
            ),
            [device.as_bytes()],
            head_row(project),
        )
        .optional()?)
}

pub fn load_worktree(
    conn: &Connection,
    timeline: TimelineId,
) -> Result<BTreeMap<RepoPath, WorktreeEntry>> {
    let mut stmt = conn.prepare(
        "SELECT path, kind, mode, size, mtime_ns, hash, withheld FROM worktree WHERE timeline = ?1",
    )?;
    let mut rows = stmt.query([timeline.as_bytes()])?;
    let mut out = BTreeMap::new();
    while let Some(r) = rows.next()? {
        let path: String = r.get(0)?;
        let path = RepoPath::parse(&path).map_err(|_| StoreError::BadMeta("worktree.path"))?;
        let hash: Option<Vec<u8>> = r.get(5)?;
        out.insert(
            path,
            WorktreeEntry {
                kind: r.get(1)?,
                mode: r.get(2)?,
                size: r.get::<_, i64>(3)? as u64,
                mtime_ns: r.get(4)?,
                hash: hash.as_deref().and_then(BlobHash::from_slice),
                withheld: r.get(6)?,
            },
        );
    }
    Ok(out)
}

/// The event stored at local id `id`.
pub fn event_by_local_id(conn: &Connection, id: i64) -> Result<Option<EventRow>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {EVENT_COLS} FROM events WHERE id = ?1"))?
        .query_row([id], event_row)
        .optional()?)
}

/// State changes to exactly `path` on `timeline` with local ids in `(after, upto]`, oldest
/// first. (A rename away from `path` is stored under its new path and is not listed.)
pub fn path_events(
    conn: &Connection,
    timeline: TimelineId,
    after: i64,
    upto: i64,
    path: &RepoPath,
) -> Result<Vec<EventRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLS} FROM events
         WHERE id > ?1 AND id <= ?2 AND timeline = ?3 AND path = ?4 ORDER BY id"
    ))?;
    let rows = stmt.query_map(
        params![after, upto, timeline.as_bytes(), path.as_str()],
        event_row,
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The local id of `device`'s event `seq`, through `segments`.
pub fn id_of_seq(conn: &Connection, device: DeviceId, seq: u64) -> Result<Option<i64>> {
    let seg: Option<(i64, i64, i64)> = conn
        .prepare_cached(
            "SELECT first_id, last_id, first_seq FROM segments WHERE device_id = ?1 AND first_seq <= ?2
             ORDER BY first_seq DESC LIMIT 1",
        )?
        .query_row(params![device.as_bytes(), seq as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    Ok(seg.and_then(|(first_id, last_id, first_seq)| {
        let id = first_id + (seq as i64 - first_seq);
        (id <= last_id).then_some(id)
    }))
}

/// The stored hash of `device`'s event `seq`, if it is here.
pub fn hash_of_seq(conn: &Connection, device: DeviceId, seq: u64) -> Result<Option<Vec<u8>>> {
    let Some(id) = id_of_seq(conn, device, seq)? else {
        return Ok(None);
    };
    Ok(conn
        .prepare_cached("SELECT hash FROM events WHERE id = ?1 AND device_id = ?2 AND seq = ?3")?
        .query_row(params![id, device.as_bytes(), seq as i64], |r| r.get(0))
        .optional()?)
}
