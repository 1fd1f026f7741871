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

#[derive(Debug, Default)]
struct Written {
    /// Blob files renamed into place (only while there are few).
    files: Vec<PathBuf>,
    /// Fan-out directories made.
    dirs: bool,
    /// More than [`FSYNC_EACH_UP_TO`]: sync the filesystem.
    many: bool,
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
            return Err(StoreError::io("cannot flush new blobs to disk", e));
        }
        Ok(())
    }

    fn flush(dir: &Path, w: &Written) -> io::Result<()> {
        if w.many {
            return crate::sys::syncfs(&File::open(dir)?);
        }
        let mut parents: Vec<&Path> = Vec::new();
        for f in &w.files {
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
        if !self.contains(&hash) {
            let (mut tmp, tmp_path) = self.temp_file()?;
            tmp.write_all(data)
                .map_err(|e| StoreError::io("cannot write blob", e))?;
            self.commit(tmp, &tmp_path, &hash)?;
        }
        Ok(hash)
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
            self.commit(tmp, &tmp_path, &hash)?;
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

    fn commit(&self, tmp: File, tmp_path: &Path, hash: &BlobHash) -> Result<()> {
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

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {0} is missing from .horde/blobs (it was deleted or never synced)")]
    Missing(BlobHash),
    #[error("blob {0} is corrupt: its content does not match its hash")]
    Corrupt(BlobHash),
    #[error("cannot read blob {0}: {1}")]
    Io(PathBuf, io::Error),
}
