//! Time travel: folding events into the state of a project's tree, the state at any point,
//! restoring it into a directory or a tar stream, and diffs between two points.
//!
//! Storage-neutral: the edge (events in SQLite, blobs in `.horde/blobs`) and the cloud (the
//! ledger and object storage) plug in through [`EventSource`] and [`BlobSource`].
//!
//! - [`State`] (`state.rs`): the tree at one point and the fold that moves it along the log.
//! - [`state_at`]: the latest checkpoint at or before a point, plus the changes after it, so
//!   the cost follows the size of the tree and the distance to a checkpoint, not the length
//!   of history.
//! - [`restore`] (`restore.rs`): into a fresh directory or in place, through `cap-std`
//!   handles so that nothing is ever written outside the target (no `..`, no following a
//!   link out).
//! - [`tar`] (`tar.rs`): the same tree as a tar stream, written as it is read.
//! - [`diff`]: what changed between two states.

pub mod restore;
pub mod state;
pub mod tar;

use std::io::Read;
use std::path::PathBuf;

use horde_core::BlobHash;
use horde_core::proto::{Manifest, StateChange};
use prost::Message as _;

pub use restore::{Progress, RestoreMode, RestoreOptions, RestoreReport, restore};
pub use state::{Anomaly, Entry, Kind, State};

/// A manifest blob larger than this is refused (about 5 million entries).
pub const MAX_MANIFEST_BYTES: u64 = 512 * 1024 * 1024;
/// A symlink target larger than this is refused (Linux allows 4095 bytes).
pub const MAX_LINK_TARGET_BYTES: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("the change to {path:?} is malformed: {why}")]
    BadChange { path: String, why: String },
    #[error("a checkpoint manifest is malformed: {0}")]
    BadManifest(String),
    #[error("blob {hash} is missing or unreadable: {source}")]
    Blob {
        hash: BlobHash,
        #[source]
        source: std::io::Error,
    },
    #[error("blob {hash} does not hold what {path} needs ({why}); run `horde verify --deep`")]
    CorruptBlob {
        hash: BlobHash,
        path: String,
        why: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not empty; restore into a new or empty directory")]
    TargetNotEmpty(PathBuf),
    #[error("{0}")]
    Source(String),
}

impl ReplayError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// Where blob contents come from.
pub trait BlobSource: Sync {
    /// The blob's content as a stream.
    fn open(&self, hash: &BlobHash) -> std::io::Result<Box<dyn Read + Send + '_>>;

    /// A local file holding exactly the blob, when there is one: restore then copies it in
    /// the kernel (`copy_file_range`) instead of through a buffer.
    fn local_file(&self, _hash: &BlobHash) -> Option<PathBuf> {
        None
    }

    /// Whether the blob is here. Asked only for withheld entries (a restore skips and lists
    /// those it does not have); a source that cannot tell says `true`, and a blob that then
    /// turns out missing fails the restore as any missing blob does.
    fn has(&self, _hash: &BlobHash) -> bool {
        true
    }

    /// The whole blob, refused past `limit` bytes.
    fn read_limited(&self, hash: &BlobHash, limit: u64) -> Result<Vec<u8>, ReplayError> {
        let blob_err = |source| ReplayError::Blob {
            hash: *hash,
            source,
        };
        let mut out = Vec::new();
        self.open(hash)
            .map_err(blob_err)?
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(blob_err)?;
        if out.len() as u64 > limit {
            return Err(ReplayError::CorruptBlob {
                hash: *hash,
                path: String::new(),
                why: format!("larger than the limit of {limit} bytes"),
            });
        }
        Ok(out)
    }
}

/// Reads and checks a checkpoint's manifest.
pub fn load_manifest(blobs: &dyn BlobSource, hash: &BlobHash) -> Result<State, ReplayError> {
    let bytes = blobs.read_limited(hash, MAX_MANIFEST_BYTES)?;
    if BlobHash::of(&bytes) != *hash {
        return Err(ReplayError::CorruptBlob {
            hash: *hash,
            path: "a checkpoint".into(),
            why: "content does not match its hash".into(),
        });
    }
    let m = Manifest::decode(bytes.as_slice())
        .map_err(|e| ReplayError::BadManifest(format!("blob {hash}: {e}")))?;
    State::from_manifest(&m)
}

/// A log that can say where the tree was last written down whole and what changed since.
pub trait EventSource {
    /// A position in the log (with its timeline).
    type Point: Copy;

    /// The latest `Checkpoint` at or before `at` that the state at `at` builds on: where it
    /// is and its manifest blob. `None`: fold from the beginning.
    fn checkpoint(&self, at: Self::Point) -> Result<Option<(Self::Point, BlobHash)>, ReplayError>;

    /// Calls `f` with every `StateChange` after `from` (from the beginning when `None`) up to
    /// and including `at`, in log order, on `at`'s lineage.
    fn changes(
        &self,
        from: Option<Self::Point>,
        at: Self::Point,
        f: &mut dyn FnMut(&StateChange) -> Result<(), ReplayError>,
    ) -> Result<(), ReplayError>;
}

/// The tree at `at`: its checkpoint, then the changes after it.
pub fn state_at<S: EventSource>(
    src: &S,
    blobs: &dyn BlobSource,
    at: S::Point,
) -> Result<State, ReplayError> {
    let (from, mut state) = match src.checkpoint(at)? {
        Some((point, manifest)) => (Some(point), load_manifest(blobs, &manifest)?),
        None => (None, State::new()),
    };
    src.changes(from, at, &mut |sc| state.apply(sc))?;
    Ok(state)
}

/// One difference between two states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub before: Option<Entry>,
    pub after: Option<Entry>,
}

impl Change {
    /// "added", "deleted", "modified", "mode" (permissions only) or "type" (e.g. file → link).
    pub fn what(&self) -> &'static str {
        match (&self.before, &self.after) {
            (None, _) => "added",
            (_, None) => "deleted",
            (Some(a), Some(b)) if a.kind != b.kind => "type",
            (Some(a), Some(b)) if a.hash == b.hash => "mode",
            _ => "modified",
        }
    }
}

/// What differs from `a` to `b`, in path order.
pub fn diff(a: &State, b: &State) -> Vec<Change> {
    let mut out = Vec::new();
    let (mut ia, mut ib) = (a.iter().peekable(), b.iter().peekable());
    loop {
        let next = match (ia.peek(), ib.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((pa, _)), Some((pb, _))) => pa.cmp(pb),
        };
        match next {
            std::cmp::Ordering::Less => {
                let (p, e) = ia.next().expect("peeked");
                out.push(Change {
                    path: p.to_owned(),
                    before: Some(e.clone()),
                    after: None,
                });
            }
            std::cmp::Ordering::Greater => {
                let (p, e) = ib.next().expect("peeked");
                out.push(Change {
                    path: p.to_owned(),
                    before: None,
                    after: Some(e.clone()),
                });
            }
            std::cmp::Ordering::Equal => {
                let ((p, ea), (_, eb)) = (ia.next().expect("peeked"), ib.next().expect("peeked"));
                if ea != eb {
                    out.push(Change {
                        path: p.to_owned(),
                        before: Some(ea.clone()),
                        after: Some(eb.clone()),
                    });
                }
            }
        }
    }
    out
}
