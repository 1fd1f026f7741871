//! The filesystem backend: `DIR/{ns}/{hh}/{rest of the hex}`, one file per blob.
//!
//! An upload is written to a uniquely named file in `DIR/{ns}/tmp/`, hashed as it goes,
//! fsynced, and only then linked into place (`link(2)` fails if the name exists, so an
//! existing blob is never replaced and `created` is exact under concurrent puts). The temp
//! file is removed on every path out, including a dropped (cancelled) future. `tmp` cannot
//! collide with a `{hh}` directory (two hex digits). A crash can leave files in `tmp/`; they
//! are never visible as blobs.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::{BlobError, BlobHash, ByteStream, Intake, PutOutcome};

/// Read size when streaming a blob out.
const READ_CHUNK: usize = 64 * 1024;

#[derive(Clone)]
pub struct FsBlobs {
    root: Arc<PathBuf>,
}

impl std::fmt::Debug for FsBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl FsBlobs {
    pub(crate) async fn open(dir: String) -> Result<Self, BlobError> {
        let root = tokio::task::spawn_blocking(move || -> std::io::Result<PathBuf> {
            std::fs::create_dir_all(&dir)?;
            std::fs::canonicalize(&dir)
        })
        .await
        .expect("the blocking task does not panic")
        .map_err(|e| BlobError::BadLocation(format!("fs: cannot create the directory: {e}")))?;
        Ok(Self {
            root: Arc::new(root),
        })
    }

    pub(crate) fn describe(&self) -> String {
        format!("fs:{}", self.root.display())
    }

    pub(crate) async fn ready(&self) -> Result<(), BlobError> {
        let probe = self
            .root
            .join(format!(".ready-{}", uuid::Uuid::now_v7().simple()));
        let mut guard = TempFile(Some(probe.clone()));
        tokio::fs::write(&probe, b"ok").await?;
        tokio::fs::remove_file(&probe).await?;
        guard.0 = None;
        Ok(())
    }

    fn path(&self, ns: &str, hash: &BlobHash) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join(ns).join(&hex[..2]).join(&hex[2..])
    }

    pub(crate) async fn head(&self, ns: &str, hash: &BlobHash) -> Result<Option<u64>, BlobError> {
        match tokio::fs::metadata(self.path(ns, hash)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn get(
        &self,
        ns: &str,
        hash: &BlobHash,
    ) -> Result<Option<(u64, ByteStream)>, BlobError> {
        let file = match tokio::fs::File::open(self.path(ns, hash)).await {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // Blobs are immutable once linked, so the size read here is the size streamed.
        let size = file.metadata().await?.len();
        let stream: ByteStream = Box::pin(ReaderStream::with_capacity(file, READ_CHUNK));
        Ok(Some((size, stream)))
    }

    pub(crate) async fn put(
        &self,
        ns: &str,
        hash: &BlobHash,
        mut body: ByteStream,
        max_size: u64,
    ) -> Result<PutOutcome, BlobError> {
        if let Some(size) = self.head(ns, hash).await? {
            return Ok(PutOutcome {
                size,
                created: false,
            });
        }
        let tmp_dir = self.root.join(ns).join("tmp");
        tokio::fs::create_dir_all(&tmp_dir).await?;
        let tmp_path = tmp_dir.join(format!(
            "{}.{}",
            hash.to_hex(),
            uuid::Uuid::now_v7().simple()
        ));
        let mut guard = TempFile(Some(tmp_path.clone()));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_path)
            .await?;

        let mut intake = Intake::new(max_size);
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            intake.take(&chunk)?;
            file.write_all(&chunk).await?;
        }
        let size = intake.finish(hash)?;
        // Surfaces any error of the write still in flight inside tokio's File.
        file.flush().await?;
        let file = file.into_std().await;

        let final_path = self.path(ns, hash);
        let root = Arc::clone(&self.root);
        let created = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
            file.sync_all()?;
            drop(file);
            let dir = final_path.parent().expect("a blob path has a parent");
            create_dirs_durably(&root, dir)?;
            let created = match std::fs::hard_link(&tmp_path, &final_path) {
                Ok(()) => true,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
                // A filesystem without hard links: rename is atomic too, and replacing a
                // concurrent identical blob with the same bytes changes nothing readable.
                Err(e) if e.kind() == ErrorKind::Unsupported => {
                    std::fs::rename(&tmp_path, &final_path)?;
                    true
                }
                Err(e) => return Err(e),
            };
            match std::fs::remove_file(&tmp_path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {} // renamed
                Err(e) => return Err(e),
            }
            if created {
                sync_dir(dir)?;
            }
            Ok(created)
        })
        .await
        .expect("the blocking task does not panic")?;
        guard.0 = None;
        Ok(PutOutcome { size, created })
    }
}

/// Creates `dir` and any missing parents below `root`, fsyncing each parent that gained an
/// entry, so a blob linked into `dir` survives a crash.
fn create_dirs_durably(root: &Path, dir: &Path) -> std::io::Result<()> {
    debug_assert!(dir.starts_with(root));
    if dir == root || dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().expect("below root, so it has a parent");
    create_dirs_durably(root, parent)?;
    match std::fs::create_dir(dir) {
        Ok(()) => sync_dir(parent),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Removes the file when dropped unless disarmed (`.0 = None`): error paths and cancelled
/// uploads leave nothing in `tmp/`.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a temporary blob file");
                }
            }
        }
    }
}
