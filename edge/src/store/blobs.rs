//! Content-addressed blobs on the local filesystem: `blobs/ab/cdef…` named by SHA-256.
//!
//! A blob is written to a temp file in `.horde/tmp/` and renamed into place, so a blob file
//! either does not exist or holds exactly the content its name says. Content is hashed first:
//! a blob that exists already is never written again.
//!
//! Durability: new blobs are not fsynced one by one. [`BlobStore::sync`] flushes the
//! filesystem once (`syncfs`) if anything was written since the last call; every writer of
//! events calls it before committing events that name new blobs, so an acknowledged event
//! never points at a blob a power cut took back.

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
    /// Blobs were written since the last [`BlobStore::sync`].
    dirty: std::sync::Arc<std::sync::atomic::AtomicBool>,
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
            dirty: Default::default(),
        }
    }

    /// Makes every blob written so far durable (one `syncfs`), if any was written.
    pub fn sync(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        if self.dirty.swap(false, Ordering::AcqRel) {
            let dir = File::open(&self.dir)
                .map_err(|e| StoreError::io("cannot open the blob store", e))?;
            if let Err(e) = crate::sys::syncfs(&dir) {
                self.dirty.store(true, Ordering::Release);
                return Err(StoreError::io("cannot flush new blobs to disk", e));
            }
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
        let path = self.path_of(hash);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BlobError::Missing(*hash)),
            Err(e) => return Err(BlobError::Io(path, e)),
        };
        let mut out = Vec::new();
        f.take(limit as u64)
            .read_to_end(&mut out)
            .map_err(|e| BlobError::Io(path, e))?;
        Ok(out)
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
        self.dirty.store(true, std::sync::atomic::Ordering::Release);
        let dest = self.path_of(hash);
        let parent = dest.parent().expect("blob paths have a fan-out directory");
        if let Err(e) = fs::create_dir(parent)
            && e.kind() != io::ErrorKind::AlreadyExists
        {
            return Err(io(e));
        }
        fs::rename(tmp_path, &dest).map_err(io)
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
