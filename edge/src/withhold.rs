//! Which recorded files keep their blob on this device ("withheld"): a file whose path a
//! manifest denies (`.env`, `secrets/**`: the union of every role's `files.deny` globs in
//! scope), or whose content holds a secret horde-policy's scanner finds. The file is recorded
//! as any other (its event, hash and size go to the cloud, restore here stays exact); only its
//! blob never leaves: sync skips it, and restores elsewhere list the path as withheld.
//!
//! Decided once per recorded version, by the scan that hashes it (unchanged files keep their
//! bit), on the bytes actually stored (the blob, not the file, which may change meanwhile).
//!
//! Invariants and limits:
//! - A decision that cannot be made withholds: manifests that do not load fall back to the
//!   built-in deny globs (and say so on stderr), an unreadable blob is withheld, and a file
//!   larger than [`MAX_SCAN_BYTES`] is withheld without being scanned.
//! - Binary files (a NUL in the first 8 KiB) are not scanned, like `horde secrets scan`: a
//!   secret inside one is only withheld when its path is denied.
//! - The scanner's allow-list and the inline `horde:allow-secret` marker are honoured.
//! - Symlinks are withheld by path only (their blob is the target text); directories never.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use horde_core::proto::FileKind;
use horde_core::{BlobHash, RepoPath};
use horde_policy::manifest::{Scope, Withhold};

use crate::store::BlobStore;

/// Files larger than this are withheld without a scan: scanning runs at about 100 MB/s, and a
/// file nobody scanned must not leave the machine.
pub const MAX_SCAN_BYTES: u64 = 32 << 20;

/// Why a blob stays here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A manifest's `files.deny` glob matches the path.
    Denied(String),
    /// The scanner found a secret (the rule id).
    Secret(&'static str),
    /// Larger than [`MAX_SCAN_BYTES`]: not scanned.
    TooLarge(u64),
    /// The stored blob could not be read back for the scan.
    Unreadable(String),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Denied(glob) => write!(f, "a manifest denies it ({glob})"),
            Reason::Secret(rule) => write!(f, "a secret was found in it ({rule})"),
            Reason::TooLarge(n) => write!(
                f,
                "{n} bytes, more than the {MAX_SCAN_BYTES} scanned for secrets"
            ),
            Reason::Unreadable(why) => write!(f, "it could not be scanned ({why})"),
        }
    }
}

/// The deny globs in scope and the scanner: build once per recorder, ask per hashed file.
#[derive(Debug, Clone)]
pub struct Withholder {
    deny: Withhold,
}

impl Withholder {
    /// The manifests in scope of the repository at `root` (and the user's). When they do not
    /// load, the built-in deny globs are used and stderr says so (once per process).
    pub fn load(root: &Path) -> Withholder {
        let scope = Scope {
            repo_root: Some(root.to_owned()),
            user_dir: Some(crate::config::user_config_dir()),
        };
        let deny = match Withhold::load(&scope) {
            Ok(w) => w,
            Err(e) => {
                static SAID: AtomicBool = AtomicBool::new(false);
                if !SAID.swap(true, Ordering::Relaxed) {
                    eprintln!(
                        "horde: warning: {e}; files are withheld from sync by the built-in \
                         manifests' deny globs (and by secrets found) until it is fixed"
                    );
                }
                Withhold::defaults()
            }
        };
        Withholder { deny }
    }

    /// Deny globs as given (tests, callers that loaded the manifests already).
    pub fn new(deny: Withhold) -> Withholder {
        Withholder { deny }
    }

    /// Whether the blob `hash` (`size` bytes, already in `blobs`) recorded at `path` as `kind`
    /// stays on this device, and why.
    pub fn decide(
        &self,
        path: &RepoPath,
        kind: i32,
        blobs: &BlobStore,
        hash: &BlobHash,
        size: u64,
    ) -> Option<Reason> {
        if kind == FileKind::Dir as i32 {
            return None;
        }
        if let Some(glob) = self.deny.denying_glob(path.as_str()) {
            return Some(Reason::Denied(glob.to_owned()));
        }
        if kind != FileKind::File as i32 {
            return None;
        }
        if size > MAX_SCAN_BYTES {
            return Some(Reason::TooLarge(size));
        }
        // The stored bytes, not the file: what is scanned is exactly what could be sent.
        let limit = usize::try_from(MAX_SCAN_BYTES + 1).unwrap_or(usize::MAX);
        let bytes = match blobs.head(hash, limit) {
            Ok(b) => b,
            Err(e) => return Some(Reason::Unreadable(e.to_string())),
        };
        if bytes.len() as u64 > MAX_SCAN_BYTES {
            return Some(Reason::TooLarge(bytes.len() as u64));
        }
        crate::redact::scanner()
            .scan_path(path.as_str(), &bytes)
            .first()
            .map(|f| Reason::Secret(f.rule))
    }
}
