//! The embedded backend: one SQLite file (WAL, `synchronous=FULL`), one ordered table
//! `kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID`, owned by one process (a lock file next to
//! it says so).
//!
//! - A transaction reads from its own SQLite read snapshot, taken at `begin`: the read
//!   version is the commit version that snapshot holds. Its writes stay in memory
//!   ([`overlay`]) until commit, so its reads see them.
//! - Commits go to one thread ([`writer`]) that groups them, assigns monotonic commit
//!   versions (microseconds since the epoch, or the last version + 1 if the clock lags) and
//!   versionstamps, checks conflicts against what committed after each read version, and
//!   answers after the group is durable.
//! - FoundationDB's limits hold, with its error kinds: keys ≤ 10,000 bytes, values ≤
//!   100,000 bytes, transactions ≤ 10,000,000 bytes and ≤ 5 s, keys below `\xff`.
//!
//! SQLite work runs on tokio's blocking pool, never on the async executor.

mod overlay;
mod writer;

use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::oneshot;

use self::overlay::{Lookup, Overlay, Pending};
use self::writer::{CommitRequest, Mutation, Registration, Versions, split_versionstamp};
use crate::{
    Committed, KeySelector, KeyValue, KvError, MAX_KEY_BYTES, MAX_TRANSACTION_BYTES,
    MAX_TRANSACTION_DURATION, MAX_VALUE_BYTES, OrderedKv, RangeBatch, RangeOption, Transaction,
};

/// `PRAGMA application_id` of a horde-kv file ("HKV1").
const APPLICATION_ID: i32 = 0x484b_5631;
const FORMAT_VERSION: i32 = 1;
/// Idle read connections kept for reuse.
const MAX_IDLE_READERS: usize = 32;
/// Most pairs, and about the most bytes, one range batch returns.
const BATCH_ROWS: usize = 1_000;
const BATCH_BYTES: usize = 1 << 20;
/// The end of the user key space.
const KEYSPACE_END: &[u8] = b"\xff";

pub(crate) fn storage(what: &str, e: impl std::fmt::Display) -> KvError {
    KvError::Storage(format!("{what}: {e}"))
}

struct Shared {
    path: PathBuf,
    commits: mpsc::Sender<CommitRequest>,
    versions: Arc<Versions>,
    readers: Mutex<Vec<Connection>>,
    _lock: File,
}

/// The embedded SQLite store. Cheap to clone; all clones share one commit thread.
#[derive(Clone)]
pub struct SqliteKv {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SqliteKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteKv")
            .field("path", &self.shared.path)
            .finish()
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

impl SqliteKv {
    /// Opens (or creates) the store at `path`. Fails if another process has it open, or if
    /// the file is not a horde-kv store.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteKv, KvError> {
        let path = path.as_ref().to_path_buf();
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| storage(&format!("open {}", PathBuf::from(&lock_path).display()), e))?;
        lock.try_lock().map_err(|_| {
            KvError::Storage(format!(
                "{} is open in another process (the embedded store serves one process; run one horde-cloud per file, or use FoundationDB)",
                path.display()
            ))
        })?;
        let conn =
            Connection::open(&path).map_err(|e| storage(&format!("open {}", path.display()), e))?;
        let not_ours =
            |e: rusqlite::Error| storage(&format!("{} is not a horde-kv store", path.display()), e);
        let app: i32 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(not_ours)?;
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(not_ours)?;
        if app != APPLICATION_ID && (app != 0 || tables != 0) {
            return Err(KvError::Storage(format!(
                "{} is not a horde-kv store",
                path.display()
            )));
        }
        let format: i32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(not_ours)?;
        if format > FORMAT_VERSION {
            return Err(KvError::Storage(format!(
                "{} has format {format}; this build reads up to {FORMAT_VERSION} — upgrade horde",
                path.display()
            )));
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| storage("set WAL mode", e))?;
        configure(&conn).map_err(|e| storage("configure", e))?;
        conn.execute_batch(&format!(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT OR IGNORE INTO meta (name, value) VALUES ('version', 0);
             PRAGMA application_id = {APPLICATION_ID};
             PRAGMA user_version = {FORMAT_VERSION};
             COMMIT;"
        ))
        .map_err(|e| storage("create tables", e))?;
        let version: i64 = conn
            .query_row("SELECT value FROM meta WHERE name = 'version'", [], |r| {
                r.get(0)
            })
            .map_err(|e| storage("read the version", e))?;
        let version = version as u64;
        let versions = Arc::new(Versions::new(version));
        // The commit thread's connection: a page cache large enough that a 1 MB transaction
        // never spills mid-way, and statement journals in memory.
        conn.execute_batch("PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;")
            .map_err(|e| storage("configure the writer", e))?;
        let commits = writer::spawn(conn, versions.clone(), version);
        Ok(SqliteKv {
            shared: Arc::new(Shared {
                path,
                commits,
                versions,
                readers: Mutex::new(Vec::new()),
                _lock: lock,
            }),
        })
    }

    /// Fault injection for tests, like FoundationDB's simulation: every `n`-th commit is
    /// applied but answered with `commit_unknown_result` (0 turns it off).
    pub fn inject_unknown_results(&self, every: u32) {
        self.shared
            .versions
            .unknown_every
            .store(every, std::sync::atomic::Ordering::Relaxed);
    }

    fn reader(&self) -> Result<Connection, KvError> {
        if let Some(c) = self.shared.readers.lock().expect("readers lock").pop() {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.shared.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| storage("open a reader", e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| storage("configure a reader", e))?;
        Ok(conn)
    }
}

impl OrderedKv for SqliteKv {
    type Tx = SqliteTx;

    async fn begin(&self) -> Result<SqliteTx, KvError> {
        let registration = self.shared.versions.register();
        let conn = self.reader()?;
        let (conn, read_version) = tokio::task::spawn_blocking(move || {
            let snapshot = conn.execute_batch("BEGIN").and_then(|_| {
                conn.query_row("SELECT value FROM meta WHERE name = 'version'", [], |r| {
                    r.get::<_, i64>(0)
                })
            });
            match snapshot {
                Ok(v) => Ok((conn, v as u64)),
                Err(e) => Err(storage("take a read snapshot", e)),
            }
        })
        .await
        .map_err(|e| storage("read task", e))??;
        Ok(SqliteTx(Arc::new(TxInner {
            shared: self.shared.clone(),
            conn: Mutex::new(Some(conn)),
            read_version,
            started: Instant::now(),
            registration: Mutex::new(Some(registration)),
            state: Mutex::new(TxState::default()),
        })))
    }
}

#[derive(Default)]
struct TxState {
    /// Shared with reads in flight; writes copy it if a read holds it.
    overlay: Arc<Overlay>,
    mutations: Vec<Mutation>,
    read_conflicts: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bytes of mutations and conflict ranges (FoundationDB's transaction size).
    bytes: usize,
    /// The first invalid write; the commit fails with it.
    error: Option<KvError>,
    /// Where keys written with a versionstamp may land: reads there fail (as on
    /// FoundationDB), since those keys are unknown until commit.
    unreadable: Vec<(Vec<u8>, Vec<u8>)>,
}

impl TxState {
    fn check_readable(&self, begin: &[u8], end: &[u8]) -> Result<(), KvError> {
        if self
            .unreadable
            .iter()
            .any(|(lo, hi)| lo.as_slice() < end && begin < hi.as_slice())
        {
            return Err(KvError::AccessedUnreadable);
        }
        Ok(())
    }
}

impl TxState {
    fn fail(&mut self, e: KvError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn push(&mut self, m: Mutation, size: usize) {
        self.bytes += size;
        self.mutations.push(m);
    }
}

struct TxInner {
    shared: Arc<Shared>,
    /// The read snapshot: a connection inside `BEGIN`, until commit or drop.
    conn: Mutex<Option<Connection>>,
    read_version: u64,
    started: Instant,
    registration: Mutex<Option<Registration>>,
    state: Mutex<TxState>,
}

impl TxInner {
    fn release_snapshot(&self) {
        let conn = self.conn.lock().expect("conn lock").take();
        if let Some(conn) = conn
            && conn.execute_batch("ROLLBACK").is_ok()
        {
            let mut idle = self.shared.readers.lock().expect("readers lock");
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
    }
}

impl Drop for TxInner {
    fn drop(&mut self) {
        self.release_snapshot();
    }
}

/// A transaction on [`SqliteKv`].
#[derive(Clone)]
pub struct SqliteTx(Arc<TxInner>);

fn check_key(key: &[u8]) -> Result<(), KvError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::KeyTooLarge { size: key.len() });
    }
    if key >= KEYSPACE_END {
        return Err(KvError::KeyOutsideLegalRange);
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::ValueTooLarge { size: value.len() });
    }
    Ok(())
}

fn key_after(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.extend_from_slice(key);
    k.push(0);
    k
}

impl SqliteTx {
    fn alive(&self) -> Result<(), KvError> {
        if self.0.started.elapsed() > MAX_TRANSACTION_DURATION {
            return Err(KvError::TransactionTooOld);
        }
        Ok(())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TxState> {
        self.0.state.lock().expect("transaction state lock")
    }

    fn add_read_conflict(&self, begin: Vec<u8>, end: Vec<u8>) {
        let mut st = self.state();
        st.bytes += begin.len() + end.len();
        st.read_conflicts.push((begin, end));
    }

    /// Runs `f` with the snapshot connection on the blocking pool.
    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, KvError> + Send + 'static,
    ) -> Result<T, KvError> {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let guard = inner.conn.lock().expect("conn lock");
            let conn = guard.as_ref().ok_or(KvError::UsedDuringCommit)?;
            f(conn)
        })
        .await
        .map_err(|e| storage("read task", e))?
    }
}

/// One bound of a scan.
#[derive(Clone)]
struct Edge {
    key: Vec<u8>,
    inclusive: bool,
}

impl Edge {
    fn bound(&self) -> Bound<&[u8]> {
        if self.inclusive {
            Bound::Included(&self.key)
        } else {
            Bound::Excluded(&self.key)
        }
    }
}

/// Pairs in `[lo, hi]` (each end inclusive or not) as this transaction sees them: stored
/// rows merged with its own writes, in order (descending if `reverse`), at most `limit`
/// pairs and about `max_bytes`. Returns the pairs and whether it stopped before the end.
fn scan(
    conn: &Connection,
    view: &Overlay,
    lo: &Edge,
    hi: &Edge,
    reverse: bool,
    limit: usize,
    max_bytes: usize,
) -> Result<(Vec<KeyValue>, bool), KvError> {
    let mut out: Vec<KeyValue> = Vec::new();
    if limit == 0 {
        return Ok((out, false));
    }
    let mut bytes = 0usize;
    // Emits one pair; true when the scan is full.
    let mut emit = |out: &mut Vec<KeyValue>, key: &[u8], value: Vec<u8>| {
        bytes += key.len() + value.len();
        out.push(KeyValue {
            key: key.to_vec(),
            value,
        });
        out.len() >= limit || bytes >= max_bytes
    };
    // The transaction's own writes, in scan order.
    let in_range = view.range(lo.bound(), hi.bound());
    let mut pending: Box<dyn Iterator<Item = (&Vec<u8>, &Pending)>> = if reverse {
        Box::new(in_range.rev())
    } else {
        in_range
    };
    let mut next_pending = pending.next();
    let before = |a: &[u8], b: &[u8]| if reverse { a > b } else { a < b };
    let (mut lo, mut hi) = (lo.clone(), hi.clone());
    let chunk = limit.min(BATCH_ROWS).clamp(16, 4 * BATCH_ROWS);
    loop {
        let sql = format!(
            "SELECT k, v FROM kv WHERE k {} ?1 AND k {} ?2 ORDER BY k {} LIMIT ?3",
            if lo.inclusive { ">=" } else { ">" },
            if hi.inclusive { "<=" } else { "<" },
            if reverse { "DESC" } else { "ASC" },
        );
        let rows: Vec<(Vec<u8>, Vec<u8>)> = {
            let mut stmt = conn.prepare_cached(&sql).map_err(|e| storage("read", e))?;
            let rows = stmt
                .query_map(params![lo.key, hi.key, chunk as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(|e| storage("read", e))?;
            rows.collect::<Result<_, _>>()
                .map_err(|e| storage("read", e))?
        };
        let exhausted = rows.len() < chunk;
        for (key, value) in &rows {
            while let Some((pk, p)) = next_pending {
                if !before(pk, key) {
                    break;
                }
                next_pending = pending.next();
                if let Some(v) = p.resolve(None)?
                    && emit(&mut out, pk, v)
                {
                    return Ok((out, true));
                }
            }
            let shown = match next_pending {
                Some((pk, p)) if pk == key => {
                    next_pending = pending.next();
                    p.resolve(Some(value))?
                }
                _ if view.is_cleared(key) => None,
                _ => Some(value.clone()),
            };
            if let Some(v) = shown
                && emit(&mut out, key, v)
            {
                return Ok((out, true));
            }
        }
        if exhausted {
            while let Some((pk, p)) = next_pending {
                next_pending = pending.next();
                if let Some(v) = p.resolve(None)?
                    && emit(&mut out, pk, v)
                {
                    return Ok((out, next_pending.is_some()));
                }
            }
            return Ok((out, false));
        }
        let last = rows
            .last()
            .map(|(k, _)| k.clone())
            .expect("a full chunk has rows");
        if reverse {
            hi = Edge {
                key: last,
                inclusive: false,
            };
        } else {
            lo = Edge {
                key: last,
                inclusive: false,
            };
        }
    }
}

/// Resolves a selector to a key (`""` before the first key, `\xff` after the last).
fn resolve(conn: &Connection, view: &Overlay, sel: &KeySelector) -> Result<Vec<u8>, KvError> {
    // The common selectors need no lookup: as a range bound, "the first key >= k" is k.
    if sel.offset == 1 {
        let key = if sel.or_equal {
            key_after(&sel.key)
        } else {
            sel.key.clone()
        };
        return Ok(key.min(KEYSPACE_END.to_vec()));
    }
    let start = Edge {
        key: Vec::new(),
        inclusive: true,
    };
    let end = Edge {
        key: KEYSPACE_END.to_vec(),
        inclusive: false,
    };
    if sel.offset >= 1 {
        let n = sel.offset as usize;
        let lo = Edge {
            key: sel.key.clone(),
            inclusive: !sel.or_equal,
        };
        let (kvs, _) = scan(conn, view, &lo, &end, false, n, usize::MAX)?;
        Ok(if kvs.len() == n {
            kvs[n - 1].key.clone()
        } else {
            KEYSPACE_END.to_vec()
        })
    } else {
        let n = (1 - i64::from(sel.offset)) as usize;
        let hi = Edge {
            key: sel.key.clone().min(KEYSPACE_END.to_vec()),
            inclusive: sel.or_equal && sel.key.as_slice() < KEYSPACE_END,
        };
        let (kvs, _) = scan(conn, view, &start, &hi, true, n, usize::MAX)?;
        Ok(if kvs.len() == n {
            kvs[n - 1].key.clone()
        } else {
            Vec::new()
        })
    }
}

impl Transaction for SqliteTx {
    async fn read_version(&self) -> Result<u64, KvError> {
        self.alive()?;
        Ok(self.0.read_version)
    }

    async fn get(&self, key: &[u8], snapshot: bool) -> Result<Option<Vec<u8>>, KvError> {
        self.alive()?;
        if key >= KEYSPACE_END {
            return Err(KvError::KeyOutsideLegalRange);
        }
        if key.len() > MAX_KEY_BYTES {
            // No stored key is that long (FoundationDB answers the same).
            return Ok(None);
        }
        self.state().check_readable(key, &key_after(key))?;
        if !snapshot {
            self.add_read_conflict(key.to_vec(), key_after(key));
        }
        let lookup = self.state().overlay.lookup(key);
        let pending = match lookup {
            Lookup::Known(v) => return Ok(v),
            Lookup::Store(p) => p,
        };
        let owned = key.to_vec();
        let stored = self
            .with_conn(move |conn| {
                let mut stmt = conn
                    .prepare_cached("SELECT v FROM kv WHERE k = ?1")
                    .map_err(|e| storage("read", e))?;
                stmt.query_row(params![owned], |r| r.get::<_, Vec<u8>>(0))
                    .optional()
                    .map_err(|e| storage("read", e))
            })
            .await?;
        match pending {
            Some(p) => p.resolve(stored.as_deref()),
            None => Ok(stored),
        }
    }

    async fn get_range(&self, range: &RangeOption, snapshot: bool) -> Result<RangeBatch, KvError> {
        self.alive()?;
        let limit = range.limit.unwrap_or(usize::MAX);
        let view = self.state().overlay.clone();
        let range_owned = range.clone();
        let (begin, end, kvs, stopped) = self
            .with_conn(move |conn| {
                let range = range_owned;
                let begin = resolve(conn, &view, &range.begin)?;
                let end = resolve(conn, &view, &range.end)?;
                if begin >= end {
                    return Ok((begin, end, Vec::new(), false));
                }
                let lo = Edge {
                    key: begin.clone(),
                    inclusive: true,
                };
                let hi = Edge {
                    key: end.clone(),
                    inclusive: false,
                };
                let (kvs, stopped) = scan(
                    conn,
                    &view,
                    &lo,
                    &hi,
                    range.reverse,
                    limit.min(BATCH_ROWS),
                    BATCH_BYTES,
                )?;
                Ok((begin, end, kvs, stopped))
            })
            .await?;
        self.state().check_readable(&begin, &end)?;
        if !snapshot {
            // What this read depended on: from where the selectors started to where they
            // ended, cut at the last pair returned if the read stopped early.
            // An end selector at offset ≤ 1 depends on keys up to its own key (a key added
            // between it and the resolved end would not be returned); past that, on keys up
            // to the resolved end.
            let mut lo = range.begin.key.clone().min(begin);
            let end_sel = &range.end;
            let mut hi = if end_sel.offset <= 1 {
                if end_sel.or_equal {
                    key_after(&end_sel.key)
                } else {
                    end_sel.key.clone()
                }
            } else {
                key_after(&end)
            };
            hi = hi.min(KEYSPACE_END.to_vec());
            if (stopped || kvs.len() == limit)
                && let Some(last) = kvs.last()
            {
                if range.reverse {
                    lo = last.key.clone();
                } else {
                    hi = key_after(&last.key);
                }
            }
            if lo < hi {
                self.add_read_conflict(lo, hi);
            }
        }
        let more = stopped && kvs.len() < limit;
        Ok(RangeBatch { kvs, more })
    }

    fn set(&self, key: &[u8], value: &[u8]) {
        let mut st = self.state();
        if let Err(e) = check_key(key).and_then(|_| check_value(value)) {
            return st.fail(e);
        }
        Arc::make_mut(&mut st.overlay).set(key, value);
        st.push(
            Mutation::Set(key.to_vec(), value.to_vec()),
            key.len() + value.len(),
        );
    }

    fn clear(&self, key: &[u8]) {
        let mut st = self.state();
        if let Err(e) = check_key(key) {
            return st.fail(e);
        }
        Arc::make_mut(&mut st.overlay).clear(key);
        st.push(Mutation::Clear(key.to_vec()), key.len());
    }

    fn clear_range(&self, begin: &[u8], end: &[u8]) {
        let mut st = self.state();
        for k in [begin, end] {
            if k.len() > MAX_KEY_BYTES + 1 {
                return st.fail(KvError::KeyTooLarge { size: k.len() });
            }
        }
        if begin >= KEYSPACE_END || end > KEYSPACE_END {
            return st.fail(KvError::KeyOutsideLegalRange);
        }
        if begin >= end {
            return;
        }
        Arc::make_mut(&mut st.overlay).clear_range(begin, end);
        st.push(
            Mutation::ClearRange(begin.to_vec(), end.to_vec()),
            begin.len() + end.len(),
        );
    }

    fn atomic_add(&self, key: &[u8], param: &[u8]) {
        let mut st = self.state();
        if let Err(e) = check_key(key).and_then(|_| check_value(param)) {
            return st.fail(e);
        }
        Arc::make_mut(&mut st.overlay).add(key, param);
        st.push(
            Mutation::Add(key.to_vec(), param.to_vec()),
            key.len() + param.len(),
        );
    }

    fn set_versionstamped_key(&self, key: &[u8], value: &[u8]) {
        let mut st = self.state();
        let checked = split_versionstamp(key)
            .and_then(|(k, _)| check_key(k))
            .and_then(|_| check_value(value));
        let (body, offset) = match checked.and_then(|_| split_versionstamp(key)) {
            Ok(split) => split,
            Err(e) => return st.fail(e),
        };
        // Any key the stamp could make.
        let (mut lo, mut hi) = (body.to_vec(), body.to_vec());
        lo[offset..offset + 10].fill(0);
        hi[offset..offset + 10].fill(0xff);
        st.unreadable.push((lo, key_after(&hi)));
        st.push(
            Mutation::VersionstampedKey(key.to_vec(), value.to_vec()),
            key.len() + value.len(),
        );
    }

    fn set_versionstamped_value(&self, key: &[u8], value: &[u8]) {
        let mut st = self.state();
        let checked = check_key(key)
            .and_then(|_| split_versionstamp(value))
            .and_then(|(v, _)| check_value(v));
        if let Err(e) = checked {
            return st.fail(e);
        }
        Arc::make_mut(&mut st.overlay).unreadable(key);
        st.push(
            Mutation::VersionstampedValue(key.to_vec(), value.to_vec()),
            key.len() + value.len(),
        );
    }

    async fn commit(self) -> Result<Committed, KvError> {
        let inner = Arc::try_unwrap(self.0).map_err(|_| KvError::UsedDuringCommit)?;
        inner.release_snapshot();
        let state = std::mem::take(&mut *inner.state.lock().expect("transaction state lock"));
        if let Some(e) = state.error {
            return Err(e);
        }
        if inner.started.elapsed() > MAX_TRANSACTION_DURATION {
            return Err(KvError::TransactionTooOld);
        }
        // Written ranges count twice in FoundationDB (mutation and write conflict range).
        let size = state.bytes + state.mutations.iter().map(|m| m.key_len()).sum::<usize>();
        if size > MAX_TRANSACTION_BYTES {
            return Err(KvError::TransactionTooLarge { size });
        }
        if state.mutations.is_empty() {
            return Ok(Committed {
                version: inner.read_version,
                versionstamp: None,
            });
        }
        let (reply, answer) = oneshot::channel();
        let request = CommitRequest {
            read_version: inner.read_version,
            read_conflicts: state.read_conflicts,
            mutations: state.mutations,
            reply,
        };
        inner
            .shared
            .commits
            .send(request)
            .map_err(|_| KvError::Storage("the commit thread has stopped".into()))?;
        let result = answer
            .await
            .map_err(|_| KvError::Storage("the commit thread has stopped".into()))?;
        // Keep the history this transaction was checked against until it has been.
        drop(inner.registration.lock().expect("registration lock").take());
        result
    }
}
