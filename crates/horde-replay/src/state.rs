//! The tree of a project at one point: a sorted map from path to entry, and the fold that
//! moves it along the log.
//!
//! Invariants (kept by every method, whatever the events say): paths are valid [`RepoPath`]s;
//! every entry's parent is a directory of the state; nothing lies under a file or a symlink.
//! The fold is lenient where a log from several devices can legitimately disagree with
//! itself (a change whose base differs, a delete of something already gone, a file in a
//! directory another device deleted: the directory comes back) and refuses, as an
//! [`Anomaly`], only what would break the invariants (an entry under a file or a link).

use std::collections::BTreeMap;

use horde_core::proto::{FileKind, Manifest, ManifestEntry, StateChange, state_change::Op};
use horde_core::{BlobHash, RepoPath};

use crate::ReplayError;

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

impl Kind {
    pub fn from_proto(kind: i32) -> Option<Kind> {
        match FileKind::try_from(kind).ok()? {
            FileKind::File => Some(Kind::File),
            FileKind::Dir => Some(Kind::Dir),
            FileKind::Symlink => Some(Kind::Symlink),
            FileKind::Unspecified => None,
        }
    }

    pub fn to_proto(self) -> i32 {
        match self {
            Kind::File => FileKind::File as i32,
            Kind::Dir => FileKind::Dir as i32,
            Kind::Symlink => FileKind::Symlink as i32,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
        }
    }
}

/// Mode of a directory the fold had to bring back (a file was recorded inside it after it was
/// deleted): what `mkdir` gives under the usual umask.
pub const IMPLICIT_DIR_MODE: u32 = 0o755;

/// One path of the tree. Files and symlinks have a blob (a symlink's blob is its target);
/// directories have none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits (the 0o7777 part of `st_mode`).
    pub mode: u32,
    pub size: u64,
    pub hash: Option<BlobHash>,
    /// The blob stays on the device that recorded it (a secret was found in it, or a manifest
    /// denies the path): elsewhere it is listed as withheld, never written as empty. Always
    /// `false` for directories.
    pub withheld: bool,
}

impl Entry {
    pub fn dir(mode: u32) -> Entry {
        Entry {
            kind: Kind::Dir,
            mode,
            size: 0,
            hash: None,
            withheld: false,
        }
    }

    /// [`Entry::from_parts`] with the withheld bit of the change or manifest entry (ignored
    /// for directories, which have no blob).
    pub fn from_parts_withheld(
        kind: i32,
        mode: u32,
        size: u64,
        hash: &[u8],
        withheld: bool,
    ) -> Result<Entry, String> {
        let mut e = Entry::from_parts(kind, mode, size, hash)?;
        e.withheld = withheld && e.kind != Kind::Dir;
        Ok(e)
    }

    /// The entry a `StateChange` or manifest describes, checked for shape.
    pub fn from_parts(kind: i32, mode: u32, size: u64, hash: &[u8]) -> Result<Entry, String> {
        let kind = Kind::from_proto(kind).ok_or_else(|| format!("unknown file kind {kind}"))?;
        let hash = match kind {
            Kind::Dir => None,
            Kind::File | Kind::Symlink => Some(BlobHash::from_slice(hash).ok_or_else(|| {
                format!(
                    "a {} needs a 32-byte content hash, got {} bytes",
                    kind.as_str(),
                    hash.len()
                )
            })?),
        };
        Ok(Entry {
            kind,
            mode: mode & 0o7777,
            size: if kind == Kind::Dir { 0 } else { size },
            hash,
            withheld: false,
        })
    }
}

/// Something in the log the fold could not apply as written; the state stays consistent
/// and the anomaly is reported (restore prints them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub path: String,
    pub what: String,
}

/// Anomalies kept per state (the count goes on).
const MAX_ANOMALIES: usize = 100;

/// A project tree at one point of its history.
#[derive(Debug, Clone, Default)]
pub struct State {
    entries: BTreeMap<String, Entry>,
    anomalies: Vec<Anomaly>,
    anomaly_count: usize,
}

impl PartialEq for State {
    /// Two states are equal when their trees are (anomalies are how they were reached).
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Eq for State {}

impl State {
    pub fn new() -> State {
        State::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// The entry at `path` with the state's own copy of the path.
    pub fn get_key_value(&self, path: &str) -> Option<(&str, &Entry)> {
        self.entries
            .get_key_value(path)
            .map(|(p, e)| (p.as_str(), e))
    }

    /// Entries in path order (a parent before everything under it).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &Entry)> + '_ {
        self.entries.iter().map(|(p, e)| (p.as_str(), e))
    }

    /// Paths whose blob stays on the device that recorded them, in path order.
    pub fn withheld(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries
            .iter()
            .filter(|(_, e)| e.withheld)
            .map(|(p, _)| p.as_str())
    }

    /// Files and symlinks, and the bytes they hold.
    pub fn totals(&self) -> (u64, u64) {
        self.entries
            .values()
            .filter(|e| e.kind != Kind::Dir)
            .fold((0, 0), |(n, b), e| (n + 1, b + e.size))
    }

    pub fn anomalies(&self) -> &[Anomaly] {
        &self.anomalies
    }

    /// All anomalies met, including those beyond the kept list.
    pub fn anomaly_count(&self) -> usize {
        self.anomaly_count
    }

    fn anomaly(&mut self, path: &str, what: impl Into<String>) {
        self.anomaly_count += 1;
        if self.anomalies.len() < MAX_ANOMALIES {
            self.anomalies.push(Anomaly {
                path: path.to_owned(),
                what: what.into(),
            });
        }
    }

    /// Sets `path` to `entry`: a non-directory replaces everything below the path, missing
    /// parent directories come back with [`IMPLICIT_DIR_MODE`]. Refused (as an anomaly) when
    /// a parent is a file or a symlink: nothing may ever be reached through a link.
    pub fn insert(&mut self, path: &RepoPath, entry: Entry) {
        let mut parents = Vec::new();
        let mut cur = path.parent();
        while let Some(p) = cur {
            match self.entries.get(p.as_str()) {
                Some(e) if e.kind == Kind::Dir => break,
                Some(e) => {
                    let what = format!("not applied: {} is a {}", p, e.kind.as_str());
                    self.anomaly(path.as_str(), what);
                    return;
                }
                None => {
                    cur = p.parent();
                    parents.push(p);
                }
            }
        }
        for p in parents {
            self.entries
                .insert(p.as_str().to_owned(), Entry::dir(IMPLICIT_DIR_MODE));
        }
        if entry.kind != Kind::Dir {
            self.remove_below(path.as_str());
        }
        self.entries.insert(path.as_str().to_owned(), entry);
    }

    /// Removes `path` and everything below it; returns what was at `path`.
    pub fn remove(&mut self, path: &str) -> Option<Entry> {
        self.remove_below(path);
        self.entries.remove(path)
    }

    /// Removes everything strictly below `path`, returning it (paths relative to `path`).
    fn remove_below(&mut self, path: &str) -> Vec<(String, Entry)> {
        let lo = format!("{path}/");
        let hi = format!("{path}0"); // '0' follows '/'
        let keys: Vec<String> = self
            .entries
            .range(lo.clone()..hi)
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .map(|k| {
                let e = self.entries.remove(&k).expect("key listed just now");
                (k[lo.len()..].to_owned(), e)
            })
            .collect()
    }

    /// Applies one `StateChange`. Errors only for a change that is malformed (a path that is
    /// not a [`RepoPath`], an unknown op or kind, a missing hash); see the module docs.
    pub fn apply(&mut self, sc: &StateChange) -> Result<(), ReplayError> {
        let bad = |why: String| ReplayError::BadChange {
            path: sc.path.clone(),
            why,
        };
        let path = RepoPath::parse(&sc.path).map_err(|e| bad(e.to_string()))?;
        let op = Op::try_from(sc.op).map_err(|_| bad(format!("unknown op {}", sc.op)))?;
        match op {
            // Deleting what is gone already (another device did it first) is a no-op.
            Op::Delete => {
                self.remove(path.as_str());
            }
            Op::Create | Op::Modify => {
                let entry = Entry::from_parts_withheld(
                    sc.kind,
                    sc.mode,
                    sc.size,
                    &sc.after_hash,
                    sc.withheld,
                )
                .map_err(bad)?;
                self.insert(&path, entry);
            }
            Op::Rename => {
                let from = RepoPath::parse(&sc.from_path).map_err(|e| bad(e.to_string()))?;
                let entry = Entry::from_parts_withheld(
                    sc.kind,
                    sc.mode,
                    sc.size,
                    &sc.after_hash,
                    sc.withheld,
                )
                .map_err(bad)?;
                if from == path || path.starts_with(&from) {
                    return Err(bad(format!("cannot rename {from} into itself")));
                }
                let moved = self.remove_below(from.as_str());
                if self.entries.remove(from.as_str()).is_none() {
                    self.anomaly(
                        path.as_str(),
                        format!("renamed from {from}, which was not there"),
                    );
                }
                self.insert(&path, entry);
                // A directory moves with what it holds.
                if self.get(path.as_str()).is_some_and(|e| e.kind == Kind::Dir) {
                    for (rel, e) in moved {
                        let child = RepoPath::parse(&format!("{path}/{rel}"))
                            .map_err(|e| bad(e.to_string()))?;
                        self.entries.insert(child.as_str().to_owned(), e);
                    }
                }
            }
            Op::Unspecified => return Err(bad("no op".into())),
        }
        Ok(())
    }

    /// The state a `Checkpoint` manifest lists. Entries are checked like changes.
    pub fn from_manifest(m: &Manifest) -> Result<State, ReplayError> {
        let mut s = State::new();
        let mut entries: Vec<&ManifestEntry> = m.entries.iter().collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        for e in entries {
            let bad = |why: String| ReplayError::BadManifest(format!("{:?}: {why}", e.path));
            let path = RepoPath::parse(&e.path).map_err(|x| bad(x.to_string()))?;
            let entry = Entry::from_parts_withheld(e.kind, e.mode, e.size, &e.hash, e.withheld)
                .map_err(bad)?;
            s.insert(&path, entry);
        }
        Ok(s)
    }

    /// The manifest of this state, sorted by path (what a `Checkpoint` stores).
    pub fn to_manifest(&self) -> Manifest {
        Manifest {
            entries: self
                .entries
                .iter()
                .map(|(p, e)| ManifestEntry {
                    path: p.clone(),
                    kind: e.kind.to_proto(),
                    mode: e.mode,
                    size: e.size,
                    hash: e.hash.map(|h| h.to_vec()).unwrap_or_default(),
                    withheld: e.withheld,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(op: Op, path: &str, kind: FileKind, content: &[u8]) -> StateChange {
        StateChange {
            path: path.into(),
            op: op as i32,
            after_hash: if kind == FileKind::Dir {
                vec![]
            } else {
                BlobHash::of(content).to_vec()
            },
            mode: if kind == FileKind::Dir { 0o755 } else { 0o644 },
            size: content.len() as u64,
            kind: kind as i32,
            ..Default::default()
        }
    }

    #[test]
    fn directory_renames_move_their_contents_and_deletes_take_them() {
        let mut s = State::new();
        s.apply(&change(Op::Create, "d", FileKind::Dir, b""))
            .expect("ok");
        s.apply(&change(Op::Create, "d/f", FileKind::File, b"x"))
            .expect("ok");
        let mut r = change(Op::Rename, "e", FileKind::Dir, b"");
        r.from_path = "d".into();
        s.apply(&r).expect("ok");
        let paths: Vec<&str> = s.iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["e", "e/f"]);
        s.apply(&change(Op::Delete, "e", FileKind::Dir, b""))
            .expect("ok");
        assert!(s.is_empty());
    }

    #[test]
    fn nothing_is_ever_placed_under_a_link_or_a_file() {
        let mut s = State::new();
        s.apply(&change(Op::Create, "l", FileKind::Symlink, b"/etc"))
            .expect("ok");
        s.apply(&change(Op::Create, "l/passwd", FileKind::File, b"pwned"))
            .expect("applied as an anomaly");
        assert_eq!(s.len(), 1);
        assert_eq!(s.anomaly_count(), 1);
        // A file over a directory replaces what it held.
        s.apply(&change(Op::Create, "d/x/y", FileKind::File, b"1"))
            .expect("ok");
        assert_eq!(s.get("d").map(|e| e.kind), Some(Kind::Dir));
        s.apply(&change(Op::Modify, "d", FileKind::File, b"2"))
            .expect("ok");
        assert!(s.get("d/x").is_none() && s.get("d/x/y").is_none());
    }

    #[test]
    fn malformed_changes_are_errors() {
        let mut s = State::new();
        for p in ["../x", "/etc/passwd", "a/../b", ""] {
            assert!(
                s.apply(&change(Op::Create, p, FileKind::File, b"x"))
                    .is_err()
            );
        }
        let mut no_hash = change(Op::Create, "f", FileKind::File, b"x");
        no_hash.after_hash.clear();
        assert!(s.apply(&no_hash).is_err());
        let mut into_self = change(Op::Rename, "a/b", FileKind::Dir, b"");
        into_self.from_path = "a".into();
        assert!(s.apply(&into_self).is_err());
        assert!(s.is_empty());
    }

    #[test]
    fn manifests_round_trip() {
        let mut s = State::new();
        s.apply(&change(Op::Create, "a/b", FileKind::File, b"x"))
            .expect("ok");
        s.apply(&change(Op::Create, "z", FileKind::Symlink, b"a/b"))
            .expect("ok");
        let back = State::from_manifest(&s.to_manifest()).expect("valid");
        assert_eq!(back, s);
        let mut m = s.to_manifest();
        m.entries[0].path = "../escape".into();
        assert!(State::from_manifest(&m).is_err());
    }

    #[test]
    fn the_withheld_bit_follows_changes_renames_and_manifests() {
        let mut s = State::new();
        let mut env = change(Op::Create, ".env", FileKind::File, b"KEY=x");
        env.withheld = true;
        s.apply(&env).expect("ok");
        s.apply(&change(Op::Create, "a", FileKind::File, b"plain"))
            .expect("ok");
        // A directory never carries the bit, whatever the change says.
        let mut d = change(Op::Create, "secrets", FileKind::Dir, b"");
        d.withheld = true;
        s.apply(&d).expect("ok");
        assert_eq!(s.withheld().collect::<Vec<_>>(), [".env"]);
        assert!(!s.get("secrets").expect("dir").withheld);

        // A rename takes the bit the rename event carries (decided for the new path).
        let mut r = change(Op::Rename, "b", FileKind::File, b"plain");
        r.from_path = "a".into();
        r.withheld = true;
        s.apply(&r).expect("ok");
        assert_eq!(s.withheld().collect::<Vec<_>>(), [".env", "b"]);

        // A modify without the bit clears it (the new content was scanned clean).
        s.apply(&change(Op::Modify, ".env", FileKind::File, b"KEY=<set me>"))
            .expect("ok");
        assert_eq!(s.withheld().collect::<Vec<_>>(), ["b"]);

        let m = s.to_manifest();
        let flags: Vec<(&str, bool)> = m
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.withheld))
            .collect();
        assert_eq!(flags, [(".env", false), ("b", true), ("secrets", false)]);
        let back = State::from_manifest(&m).expect("valid");
        assert_eq!(back, s);
        assert_eq!(back.withheld().collect::<Vec<_>>(), ["b"]);
    }
}
