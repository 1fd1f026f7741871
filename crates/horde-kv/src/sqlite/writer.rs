//! The commit thread: the only writer of the file. It takes commit requests in groups, gives
//! each group one commit version (transactions in it are ordered by their 2-byte batch
//! order, as in FoundationDB), checks each transaction's reads against the writes committed
//! after its read version (optimistic concurrency: a conflict fails it with
//! `not_committed`), applies the mutations of the others in one SQLite transaction, and
//! answers only after that transaction is durable.
//!
//! Conflict history: the write ranges of each commit are kept while a transaction that might
//! conflict with them (one whose read version is older) is alive.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::overlay::add_le;
use super::storage;
use crate::{CommitStamp, Committed, KvError};

/// Most transactions committed in one group.
const MAX_GROUP: usize = 256;

/// One buffered write, as made.
#[derive(Debug, Clone)]
pub(crate) enum Mutation {
    Set(Vec<u8>, Vec<u8>),
    Clear(Vec<u8>),
    ClearRange(Vec<u8>, Vec<u8>),
    Add(Vec<u8>, Vec<u8>),
    /// Key in incomplete-versionstamp form (placeholder + 4-byte LE offset).
    VersionstampedKey(Vec<u8>, Vec<u8>),
    /// Value in incomplete-versionstamp form.
    VersionstampedValue(Vec<u8>, Vec<u8>),
}

impl Mutation {
    /// Bytes of the keys this mutation writes (each is also a write conflict range).
    pub(crate) fn key_len(&self) -> usize {
        match self {
            Mutation::Set(k, _) | Mutation::Clear(k) | Mutation::Add(k, _) => k.len(),
            Mutation::VersionstampedKey(k, _) | Mutation::VersionstampedValue(k, _) => k.len(),
            Mutation::ClearRange(b, e) => b.len() + e.len(),
        }
    }
}

/// Splits a tuple-layer incomplete-versionstamp encoding into the bytes (without the
/// trailing offset) and the placeholder's offset, checking that the 10 bytes fit.
pub(crate) fn split_versionstamp(bytes: &[u8]) -> Result<(&[u8], usize), KvError> {
    let invalid = |what: &str| KvError::InvalidOperation {
        what: what.to_string(),
    };
    if bytes.len() < 4 {
        return Err(invalid(
            "versionstamped key or value shorter than its 4-byte offset",
        ));
    }
    let (body, off) = bytes.split_at(bytes.len() - 4);
    let offset = u32::from_le_bytes(off.try_into().expect("4 bytes")) as usize;
    if offset.checked_add(10).is_none_or(|end| end > body.len()) {
        return Err(invalid(
            "versionstamp offset points past the end of the key or value",
        ));
    }
    Ok((body, offset))
}

fn stamped(bytes: &[u8], stamp: &CommitStamp) -> Vec<u8> {
    let (body, offset) = split_versionstamp(bytes).expect("checked when the mutation was made");
    let mut out = body.to_vec();
    out[offset..offset + 10].copy_from_slice(&stamp.0);
    out
}

pub(crate) struct CommitRequest {
    pub(crate) read_version: u64,
    pub(crate) read_conflicts: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) mutations: Vec<Mutation>,
    pub(crate) reply: oneshot::Sender<Result<Committed, KvError>>,
}

/// State shared by the store handle, its transactions and the commit thread.
pub(crate) struct Versions {
    /// The last commit version whose conflict ranges are in the history.
    pub(crate) published: AtomicU64,
    /// Read versions of live transactions (a lower bound each) → how many.
    active: Mutex<BTreeMap<u64, usize>>,
    /// Fault injection: every n-th commit answers `commit_unknown_result` after committing.
    pub(crate) unknown_every: AtomicU32,
}

impl Versions {
    pub(crate) fn new(version: u64) -> Self {
        Versions {
            published: AtomicU64::new(version),
            active: Mutex::new(BTreeMap::new()),
            unknown_every: AtomicU32::new(0),
        }
    }

    /// Registers a transaction that is about to take its snapshot. Returns a version ≤ its
    /// read version; history after it is kept until the registration is dropped.
    pub(crate) fn register(self: &Arc<Self>) -> Registration {
        let mut active = self.active.lock().expect("versions lock");
        let floor = self.published.load(Ordering::Acquire);
        *active.entry(floor).or_default() += 1;
        Registration {
            versions: self.clone(),
            floor,
        }
    }

    /// Below this version no live transaction reads.
    fn prune_floor(&self) -> u64 {
        let active = self.active.lock().expect("versions lock");
        active
            .keys()
            .next()
            .copied()
            .unwrap_or_else(|| self.published.load(Ordering::Acquire))
    }
}

pub(crate) struct Registration {
    versions: Arc<Versions>,
    floor: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut active = self.versions.active.lock().expect("versions lock");
        if let Some(n) = active.get_mut(&self.floor) {
            *n -= 1;
            if *n == 0 {
                active.remove(&self.floor);
            }
        }
    }
}

/// Sorted, merged ranges written at one commit version.
struct Written {
    version: u64,
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
}

fn merge(mut ranges: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    ranges.sort();
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(ranges.len());
    for (b, e) in ranges {
        match out.last_mut() {
            Some((_, le)) if b <= *le => {
                if e > *le {
                    *le = e;
                }
            }
            _ => out.push((b, e)),
        }
    }
    out
}

fn intersects(sorted: &[(Vec<u8>, Vec<u8>)], b: &[u8], e: &[u8]) -> bool {
    let i = sorted.partition_point(|(_, we)| we.as_slice() <= b);
    sorted.get(i).is_some_and(|(wb, _)| wb.as_slice() < e)
}

fn point(key: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut end = Vec::with_capacity(key.len() + 1);
    end.extend_from_slice(key);
    end.push(0);
    (key.to_vec(), end)
}

pub(crate) fn spawn(
    conn: Connection,
    versions: Arc<Versions>,
    last_version: u64,
) -> mpsc::Sender<CommitRequest> {
    let (tx, rx) = mpsc::channel::<CommitRequest>();
    std::thread::Builder::new()
        .name("horde-kv-commit".into())
        .spawn(move || {
            let mut w = Writer {
                conn,
                versions,
                last_version,
                history: VecDeque::new(),
                commits: 0,
            };
            while let Ok(first) = rx.recv() {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(r) => group.push(r),
                        Err(_) => break,
                    }
                }
                w.commit_group(group);
            }
        })
        .expect("spawn the commit thread");
    tx
}

struct Writer {
    conn: Connection,
    versions: Arc<Versions>,
    last_version: u64,
    history: VecDeque<Written>,
    commits: u64,
}

impl Writer {
    fn conflicts(&self, req: &CommitRequest, batch: &[(Vec<u8>, Vec<u8>)]) -> bool {
        let newer = self
            .history
            .iter()
            .rev()
            .take_while(|w| w.version > req.read_version);
        for written in newer {
            for (b, e) in &req.read_conflicts {
                if intersects(&written.ranges, b, e) {
                    return true;
                }
            }
        }
        // Earlier transactions of this group: unsorted, usually few reads against them.
        req.read_conflicts
            .iter()
            .any(|(b, e)| batch.iter().any(|(wb, we)| wb < e && b < we))
    }

    fn commit_group(&mut self, group: Vec<CommitRequest>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let version = now.max(self.last_version + 1);
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            let err = storage("begin a commit", e);
            for req in group {
                let _ = req.reply.send(Err(err.clone()));
            }
            return;
        }
        // Write ranges of the transactions accepted so far in this group.
        let mut written: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut accepted: Vec<(oneshot::Sender<Result<Committed, KvError>>, CommitStamp)> =
            Vec::new();
        // A group of one needs no savepoint: if it fails, the whole transaction rolls back.
        let alone = group.len() == 1;
        for req in group {
            if self.conflicts(&req, &written) {
                let _ = req.reply.send(Err(KvError::NotCommitted));
                continue;
            }
            let order = u16::try_from(accepted.len()).expect("MAX_GROUP fits in u16");
            let stamp = CommitStamp::new(version, order);
            match self.apply(&req.mutations, &stamp, &mut written, !alone) {
                Ok(()) => accepted.push((req.reply, stamp)),
                Err(e) if alone => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    let _ = req.reply.send(Err(e));
                    return;
                }
                Err(e) => {
                    let _ = req.reply.send(Err(e));
                }
            }
        }
        let done = self
            .conn
            .execute(
                "UPDATE meta SET value = ?1 WHERE name = 'version'",
                params![version as i64],
            )
            .and_then(|_| self.conn.execute_batch("COMMIT"));
        if let Err(e) = done {
            let _ = self.conn.execute_batch("ROLLBACK");
            let err = storage("commit", e);
            for (reply, _) in accepted {
                let _ = reply.send(Err(err.clone()));
            }
            return;
        }
        self.last_version = version;
        self.history.push_back(Written {
            version,
            ranges: merge(written),
        });
        self.versions.published.store(version, Ordering::Release);
        let floor = self.versions.prune_floor();
        while self.history.front().is_some_and(|w| w.version <= floor) {
            self.history.pop_front();
        }
        let unknown_every = self.versions.unknown_every.load(Ordering::Relaxed);
        for (reply, stamp) in accepted {
            self.commits += 1;
            let answer =
                if unknown_every > 0 && self.commits.is_multiple_of(u64::from(unknown_every)) {
                    Err(KvError::CommitUnknownResult)
                } else {
                    Ok(Committed {
                        version,
                        versionstamp: Some(stamp),
                    })
                };
            let _ = reply.send(answer);
        }
    }

    /// Applies one transaction's mutations in order, inside a savepoint (when `savepoint`)
    /// so that a failure undoes only this transaction; without one, the caller rolls back.
    fn apply(
        &mut self,
        mutations: &[Mutation],
        stamp: &CommitStamp,
        written: &mut Vec<(Vec<u8>, Vec<u8>)>,
        savepoint: bool,
    ) -> Result<(), KvError> {
        let mut ranges = Vec::with_capacity(mutations.len());
        if savepoint {
            self.conn
                .execute_batch("SAVEPOINT tx")
                .map_err(|e| storage("savepoint", e))?;
        }
        let result = (|| -> rusqlite::Result<()> {
            let mut put = self
                .conn
                .prepare_cached("INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)")?;
            let mut del = self.conn.prepare_cached("DELETE FROM kv WHERE k = ?1")?;
            let mut del_range = self
                .conn
                .prepare_cached("DELETE FROM kv WHERE k >= ?1 AND k < ?2")?;
            let mut get = self.conn.prepare_cached("SELECT v FROM kv WHERE k = ?1")?;
            for m in mutations {
                match m {
                    Mutation::Set(k, v) => {
                        put.execute(params![k, v])?;
                        ranges.push(point(k));
                    }
                    Mutation::Clear(k) => {
                        del.execute(params![k])?;
                        ranges.push(point(k));
                    }
                    Mutation::ClearRange(b, e) => {
                        del_range.execute(params![b, e])?;
                        ranges.push((b.clone(), e.clone()));
                    }
                    Mutation::Add(k, p) => {
                        let old: Option<Vec<u8>> =
                            get.query_row(params![k], |r| r.get(0)).optional()?;
                        put.execute(params![k, add_le(old.as_deref().unwrap_or(&[]), p)])?;
                        ranges.push(point(k));
                    }
                    Mutation::VersionstampedKey(k, v) => {
                        let key = stamped(k, stamp);
                        put.execute(params![key, v])?;
                        ranges.push(point(&key));
                    }
                    Mutation::VersionstampedValue(k, v) => {
                        put.execute(params![k, stamped(v, stamp)])?;
                        ranges.push(point(k));
                    }
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                if savepoint {
                    self.conn
                        .execute_batch("RELEASE tx")
                        .map_err(|e| storage("release savepoint", e))?;
                }
                written.extend(ranges);
                Ok(())
            }
            Err(e) => {
                if savepoint {
                    let _ = self.conn.execute_batch("ROLLBACK TO tx; RELEASE tx");
                }
                Err(storage("write", e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_ranges_answer_intersections() {
        let ranges = merge(vec![
            point(b"b"),
            (b"d".to_vec(), b"f".to_vec()),
            (b"e".to_vec(), b"g".to_vec()),
        ]);
        assert_eq!(ranges.len(), 2);
        assert!(intersects(&ranges, b"a", b"c"));
        assert!(!intersects(&ranges, b"b\x00", b"d"));
        assert!(intersects(&ranges, b"f", b"f\x00"));
        assert!(!intersects(&ranges, b"g", b"z"));
    }

    #[test]
    fn versionstamp_offsets_are_checked() {
        let mut k = b"ab".to_vec();
        k.extend_from_slice(&[0xff; 10]);
        k.extend_from_slice(&2u32.to_le_bytes());
        let (body, off) = split_versionstamp(&k).expect("valid");
        assert_eq!((body.len(), off), (12, 2));
        let mut bad = b"ab".to_vec();
        bad.extend_from_slice(&[0; 10]);
        bad.extend_from_slice(&3u32.to_le_bytes());
        assert!(split_versionstamp(&bad).is_err());
        assert!(split_versionstamp(b"ab").is_err());
        let s = stamped(&k, &CommitStamp::new(7, 1));
        assert_eq!(&s[2..], &CommitStamp::new(7, 1).0);
    }
}
