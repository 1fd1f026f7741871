//! Content-addressed blobs on the local filesystem: `blobs/ab/cdef…` named by SHA-256.
//!
//! A blob is written to a temp file in `.horde/tmp/` and renamed into place, so a blob file
//! either does not exist or holds exactly the content its name says. Content is hashed first:
//! a blob that exists already is never written again.
//!
//! Durability: new blobs are not fsynced as they are written. [`BlobStore::sync`] makes
//! everything written since its last call durable: a few blobs (a hook's, a tool call's) with
//! an fsync of each file and of its directory, many (a scan of a large tree) with one `syncfs`
//! of the filesystem; every writer of events calls it before committing events that name new
//! blobs, so an acknowledged event never points at a blob a power cut took back. (`syncfs`
//! waits for everything any process wrote to that filesystem: a build running beside an agent
//! would make every hook wait for it.)
//!
//! Small blobs skip those fsyncs: the ledger's writer takes them ([`BlobStore::take_journal`])
//! into the `blob_journal` table in the transaction of the events that name them, so the
//! WAL's one fsync makes both durable (two fsyncs a blob were most of a hook call's time).
//! A row names the boot it was written in: after a machine crash (another boot id) opening the
//! ledger writes those files again from their rows ([`recover_journal`]); rows of this boot
//! are dropped once their files are flushed, a while later, when that fsync costs little
//! ([`trim_journal`]).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use horde_core::BlobHash;
use horde_core::hash::BlobHasher;

use super::{Result, StoreError};

#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    tmp: PathBuf,
    /// Blobs written since the last [`BlobStore::sync`].
    written: std::sync::Arc<std::sync::Mutex<Written>>,
}

/// Up to this many new blobs are made durable one by one; more, with one `syncfs`.
const FSYNC_EACH_UP_TO: usize = 32;

/// Blobs up to this size go through the journal...
pub const JOURNAL_BLOB_MAX: usize = 64 * 1024;
/// ...while the journal waiting for a commit holds at most this many bytes (a scan of many
/// small files fsyncs them as before instead of writing them twice).
const JOURNAL_BYTES_MAX: usize = 1 << 20;
/// Journal rows of this boot older than this are flushed and dropped (microseconds).
const JOURNAL_KEEP_MICROS: i64 = 30_000_000;

#[derive(Debug, Default)]
struct Written {
    /// Blob files renamed into place (only while there are few).
    files: Vec<PathBuf>,
    /// Fan-out directories made.
    dirs: bool,
    /// More than [`FSYNC_EACH_UP_TO`]: sync the filesystem.
    many: bool,
    /// Small blobs for the next commit's journal rows: hash, file, content.
    journal: Vec<(BlobHash, PathBuf, Vec<u8>)>,
    journal_bytes: usize,
}

/// This machine's boot id; None where there is none (then nothing is journaled: a crash
/// could not be told from a process ending).
pub fn boot_id() -> Option<&'static str> {
    static BOOT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    })
    .as_deref()
}

/// Files up to this size are read whole, hashed, and written only if their blob is missing;
/// larger ones are copied while hashed (one read, but a temp file even when the blob exists).
const READ_WHOLE_LIMIT: u64 = 8 * 1024 * 1024;

/// What [`BlobStore::put_file`] found.
#[derive(Debug)]
pub enum PutFile {
    Stored {
        hash: BlobHash,
        size: u64,
    },
    /// The file disappeared before or while it was read.
    Vanished,
}

impl BlobStore {
    pub fn new(dir: PathBuf, tmp: PathBuf) -> Self {
        Self {
            dir,
            tmp,
            written: Default::default(),
        }
    }

    fn written(&self) -> std::sync::MutexGuard<'_, Written> {
        // A panic elsewhere cannot leave a Written half-updated in a harmful way.
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes every blob written so far durable, if any was written.
    pub fn sync(&self) -> Result<()> {
        let w = std::mem::take(&mut *self.written());
        if let Err(e) = Self::flush(&self.dir, &w) {
            // Still not durable: the next sync tries again.
            let mut now = self.written();
            now.many |= w.many;
            now.dirs |= w.dirs;
            now.files.extend(w.files);
            now.files.extend(w.journal.into_iter().map(|(_, p, _)| p));
            return Err(StoreError::io("cannot flush new blobs to disk", e));
        }
        Ok(())
    }

    fn flush(dir: &Path, w: &Written) -> io::Result<()> {
        if w.many {
            return crate::sys::syncfs(&File::open(dir)?);
        }
        let mut parents: Vec<&Path> = Vec::new();
        for f in w.files.iter().chain(w.journal.iter().map(|(_, p, _)| p)) {
            File::open(f)?.sync_all()?;
            if let Some(p) = f.parent()
                && !parents.contains(&p)
            {
                parents.push(p);
            }
        }
        if w.dirs {
            parents.push(dir);
        }
        for p in parents {
            File::open(p)?.sync_all()?;
        }
        Ok(())
    }

    pub fn path_of(&self, hash: &BlobHash) -> PathBuf {
        let hex = hash.to_hex();
        self.dir.join(&hex[..2]).join(&hex[2..])
    }

    pub fn contains(&self, hash: &BlobHash) -> bool {
        self.path_of(hash).is_file()
    }

    /// Stores `data`; returns its hash.
    pub fn put_bytes(&self, data: &[u8]) -> Result<BlobHash> {
        let hash = BlobHash::of(data);
        // Journaled even when the file is there: another process may have written it and not
        // made it durable yet.
        let journaled = self.journal(&hash, data);
        if !self.contains(&hash) {
            let (mut tmp, tmp_path) = self.temp_file()?;
            tmp.write_all(data)
                .map_err(|e| StoreError::io("cannot write blob", e))?;
            self.commit(tmp, &tmp_path, &hash, journaled)?;
        }
        Ok(hash)
    }

    /// Keeps `data` for the next commit's journal; false when it is to be fsynced instead.
    fn journal(&self, hash: &BlobHash, data: &[u8]) -> bool {
        if data.len() > JOURNAL_BLOB_MAX || boot_id().is_none() {
            return false;
        }
        let mut w = self.written();
        if w.journal.iter().any(|(h, _, _)| h == hash) {
            return true;
        }
        if w.journal_bytes + data.len() > JOURNAL_BYTES_MAX {
            return false;
        }
        w.journal_bytes += data.len();
        let path = self.path_of(hash);
        w.journal.push((*hash, path, data.to_vec()));
        true
    }

    /// The small blobs written since the last take, for the ledger's writer to put in the
    /// transaction it commits next. If that commit fails, [`BlobStore::untake_journal`].
    pub fn take_journal(&self) -> Vec<(BlobHash, Vec<u8>)> {
        let mut w = self.written();
        w.journal_bytes = 0;
        std::mem::take(&mut w.journal)
            .into_iter()
            .map(|(h, _, d)| (h, d))
            .collect()
    }

    /// Gives back what [`BlobStore::take_journal`] took, for the next commit (or sync).
    pub fn untake_journal(&self, taken: Vec<(BlobHash, Vec<u8>)>) {
        let mut w = self.written();
        for (h, d) in taken {
            if !w.journal.iter().any(|(x, _, _)| *x == h) {
                w.journal_bytes += d.len();
                let p = self.path_of(&h);
                w.journal.push((h, p, d));
            }
        }
    }

    /// Writes a blob from its journal row and makes it durable (recovery after a crash).
    fn rewrite(&self, hash: &BlobHash, data: &[u8]) -> io::Result<()> {
        let dest = self.path_of(hash);
        let parent = dest.parent().expect("blob paths have a fan-out directory");
        fs::create_dir_all(parent)?;
        let mut tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&self.tmp)?;
        tmp.write_all(data)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&dest).map_err(|e| e.error)?;
        File::open(parent)?.sync_all()?;
        File::open(&self.dir)?.sync_all()
    }

    /// Stores the file at `path`, reading it once.
    pub fn put_file(&self, path: &Path) -> Result<PutFile> {
        let mut src = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PutFile::Vanished),
            Err(e) => return Err(StoreError::io(format!("cannot read {}", path.display()), e)),
        };
        let len = src.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        if len <= READ_WHOLE_LIMIT {
            let mut data = Vec::with_capacity(len as usize);
            src.read_to_end(&mut data)
                .map_err(|e| StoreError::io(format!("cannot read {}", path.display()), e))?;
            let hash = self.put_bytes(&data)?;
            return Ok(PutFile::Stored {
                hash,
                size: data.len() as u64,
            });
        }
        let (mut tmp, tmp_path) = self.temp_file()?;
        let mut hasher = BlobHasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = fs::remove_file(&tmp_path);
                    return Err(StoreError::io(format!("cannot read {}", path.display()), e));
                }
            };
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])
                .map_err(|e| StoreError::io("cannot write blob", e))?;
            size += n as u64;
        }
        let hash = hasher.finish();
        if self.contains(&hash) {
            let _ = fs::remove_file(&tmp_path);
        } else {
            self.commit(tmp, &tmp_path, &hash, false)?;
        }
        Ok(PutFile::Stored { hash, size })
    }

    /// Reads a whole blob, checking its hash.
    pub fn get(&self, hash: &BlobHash) -> Result<Vec<u8>, BlobError> {
        let path = self.path_of(hash);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BlobError::Missing(*hash)),
            Err(e) => return Err(BlobError::Io(path, e)),
        };
        if BlobHash::of(&data) != *hash {
            return Err(BlobError::Corrupt(*hash));
        }
        Ok(data)
    }

    /// Reads at most `limit` bytes from the start of a blob, unchecked (for previews).
    pub fn head(&self, hash: &BlobHash, limit: usize) -> Result<Vec<u8>, BlobError> {
        Ok(self.read_at(hash, 0, limit)?.1)
    }

    /// The blob's size and at most `limit` bytes of it from `offset`, unchecked (previews and
    /// paged reads).
    pub fn read_at(
        &self,
        hash: &BlobHash,
        offset: u64,
        limit: usize,
    ) -> Result<(u64, Vec<u8>), BlobError> {
        let path = self.path_of(hash);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BlobError::Missing(*hash)),
            Err(e) => return Err(BlobError::Io(path, e)),
        };
        let size = f
            .metadata()
            .map_err(|e| BlobError::Io(path.clone(), e))?
            .len();
        io::Seek::seek(&mut f, io::SeekFrom::Start(offset.min(size)))
            .map_err(|e| BlobError::Io(path.clone(), e))?;
        let mut out = Vec::new();
        f.take(limit as u64)
            .read_to_end(&mut out)
            .map_err(|e| BlobError::Io(path, e))?;
        Ok((size, out))
    }

    fn temp_file(&self) -> Result<(File, PathBuf)> {
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&self.tmp)
            .map_err(|e| {
                StoreError::io(
                    format!("cannot create a temp file in {}", self.tmp.display()),
                    e,
                )
            })?;
        let (f, p) = tmp
            .keep()
            .map_err(|e| StoreError::io("cannot keep temp file", e.error))?;
        Ok((f, p))
    }

    /// Renames a written blob into place; `journaled`: its content is in the journal, so it
    /// needs no fsync of its own.
    fn commit(&self, tmp: File, tmp_path: &Path, hash: &BlobHash, journaled: bool) -> Result<()> {
        let io = |e| StoreError::io(format!("cannot store blob {hash}"), e);
        drop(tmp);
        let dest = self.path_of(hash);
        let parent = dest.parent().expect("blob paths have a fan-out directory");
        let made = match fs::create_dir(parent) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(io(e)),
        };
        fs::rename(tmp_path, &dest).map_err(io)?;
        if journaled {
            // A crash is repaired from the journal, fan-out directory included.
            return Ok(());
        }
        let mut w = self.written();
        w.dirs |= made;
        if w.files.len() < FSYNC_EACH_UP_TO && !w.many {
            w.files.push(dest);
        } else {
            w.many = true;
            w.files.clear();
        }
        Ok(())
    }
}

/// Puts journaled blobs in the transaction `tx` commits (the ledger's writer), and flushes and
/// drops the rows old enough for that to cost little.
pub fn journal_rows(
    tx: &rusqlite::Transaction<'_>,
    blobs: &BlobStore,
    taken: &[(BlobHash, Vec<u8>)],
    now: i64,
) -> Result<()> {
    let Some(boot) = boot_id() else {
        return Ok(());
    };
    let mut ins = tx.prepare_cached(
        "INSERT OR REPLACE INTO blob_journal (hash, data, boot, at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (hash, data) in taken {
        ins.execute(rusqlite::params![hash.as_bytes(), data, boot, now])?;
    }
    trim_journal(tx, blobs, boot, now - JOURNAL_KEEP_MICROS)
}

/// Flushes the files of journal rows written before `before` (rewriting those of another
/// boot from their rows) and drops the rows.
fn trim_journal(
    tx: &rusqlite::Transaction<'_>,
    blobs: &BlobStore,
    boot: &str,
    before: i64,
) -> Result<()> {
    let old: Vec<(Vec<u8>, String)> = tx
        .prepare_cached("SELECT hash, boot FROM blob_journal WHERE at < ?1 ORDER BY at LIMIT 512")?
        .query_map([before], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if old.is_empty() {
        return Ok(());
    }
    let io = |e| StoreError::io("cannot flush journaled blobs to disk", e);
    let mut parents: Vec<PathBuf> = Vec::new();
    for (h, b) in &old {
        let Some(hash) = BlobHash::from_slice(h) else {
            continue;
        };
        let path = blobs.path_of(&hash);
        // Another boot's file may have lost what the page cache held; this boot's may be gone
        // from page cache and disk alike. Either way only the row has it.
        let flushed = b == boot
            && match File::open(&path) {
                Ok(f) => f.sync_all().map(|()| true).map_err(io)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                Err(e) => return Err(io(e)),
            };
        if !flushed {
            let data: Vec<u8> =
                tx.query_row("SELECT data FROM blob_journal WHERE hash = ?1", [h], |r| {
                    r.get(0)
                })?;
            blobs.rewrite(&hash, &data).map_err(io)?;
            continue;
        }
        if let Some(p) = path.parent()
            && !parents.iter().any(|x| x == p)
        {
            parents.push(p.to_owned());
        }
    }
    parents.push(blobs.dir.clone());
    for p in parents {
        File::open(&p).and_then(|f| f.sync_all()).map_err(io)?;
    }
    let mut del = tx.prepare_cached("DELETE FROM blob_journal WHERE hash = ?1")?;
    for (h, _) in &old {
        del.execute([h])?;
    }
    Ok(())
}

/// After a machine crash: writes again the blobs whose journal rows were written in another
/// boot (their files may have lost what the page cache held) and drops those rows. Cheap when
/// there are none (an index on `boot`).
pub fn recover_journal(conn: &mut rusqlite::Connection, blobs: &BlobStore) -> Result<usize> {
    let Some(boot) = boot_id() else {
        return Ok(0);
    };
    let stale: i64 = conn.query_row(
        "SELECT COUNT(*) FROM blob_journal WHERE boot <> ?1",
        [boot],
        |r| r.get(0),
    )?;
    if stale == 0 {
        return Ok(0);
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let rows: Vec<(Vec<u8>, Vec<u8>)> = tx
        .prepare("SELECT hash, data FROM blob_journal WHERE boot <> ?1")?
        .query_map([boot], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (h, data) in &rows {
        if let Some(hash) = BlobHash::from_slice(h)
            && BlobHash::of(data) == hash
        {
            blobs
                .rewrite(&hash, data)
                .map_err(|e| StoreError::io(format!("cannot restore blob {hash}"), e))?;
        }
    }
    tx.execute("DELETE FROM blob_journal WHERE boot <> ?1", [boot])?;
    tx.commit()?;
    Ok(rows.len())
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {0} is missing from .horde/blobs (it was deleted or never synced)")]
    Missing(BlobHash),
    #[error("blob {0} is corrupt: its content does not match its hash")]
    Corrupt(BlobHash),
    #[error("cannot read blob {0}: {1}")]
    Io(PathBuf, io::Error),
}
