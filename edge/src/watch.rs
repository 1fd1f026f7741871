//! Which parts of a tree changed since the last scan, from inotify: what lets the daemon
//! (`horde daemon`) record a tool call's changes without walking the whole tree.
//!
//! - A directory is watched as a scan enters it, before its entries are listed
//!   ([`scan::scan_dirty`]'s `on_dir`), so nothing made in it later goes unseen; a directory
//!   that appears is walked entirely by the next scan.
//! - [`Watcher::drain`] reads every event queued so far without blocking. The kernel queues an
//!   event inside the system call that made the change, so the changes of a command that has
//!   ended (a tool call the agent reports) are all in the queue when its hook asks.
//! - Anything the watcher cannot vouch for makes the next scan a full one: an overflowed
//!   queue, an event from an unknown watch, an ignore file changed, a watch that could not be
//!   added (out of inotify watches), a scan or commit that failed after the events were taken.
//! - Not seen: writes through a shared memory mapping (no inotify event) and changes made
//!   through another mount of the same files. The daemon's full scans (its first, and at each
//!   session's end) catch those.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

use crate::scan::{Dirty, OnDir};
use crate::store::HORDE_DIR;

/// Files whose change changes what a scan walks.
const IGNORE_FILES: [&str; 3] = [".gitignore", ".ignore", ".hordeignore"];

/// Watch descriptors and the directory each watches (relative, `""` for the root).
#[derive(Default)]
struct Dirs {
    by_wd: HashMap<WatchDescriptor, String>,
}

pub struct Watcher {
    root: PathBuf,
    inotify: Inotify,
    dirs: Arc<Mutex<Dirs>>,
    /// A watch could not be added: every scan is a full one.
    broken: Arc<AtomicBool>,
    pending: Dirty,
    buf: Vec<u8>,
}

fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MODIFY
        | WatchMask::ATTRIB
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::DONT_FOLLOW
        | WatchMask::ONLYDIR
        | WatchMask::EXCL_UNLINK
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

impl Watcher {
    /// A watcher of the tree at `root`; nothing is watched until the first scan enters it
    /// (that first scan is a full one).
    pub fn new(root: &Path) -> std::io::Result<Self> {
        Ok(Self {
            root: root.to_owned(),
            inotify: Inotify::init()?,
            dirs: Arc::default(),
            broken: Arc::default(),
            pending: Dirty::everything(),
            buf: vec![0; 64 << 10],
        })
    }

    /// Watches each directory a scan enters (see [`crate::scan::scan_dirty`]).
    pub fn on_dir(&self) -> OnDir {
        let watches: Mutex<Watches> = Mutex::new(self.inotify.watches());
        let (dirs, broken, root) = (self.dirs.clone(), self.broken.clone(), self.root.clone());
        Arc::new(move |dir: &Path| {
            let Ok(rel) = dir.strip_prefix(&root) else {
                return;
            };
            let rel = rel.to_string_lossy().into_owned();
            let added = match watches.lock() {
                Ok(mut w) => w.add(dir, mask()),
                Err(_) => Err(std::io::Error::other("a watcher thread panicked")),
            };
            match added {
                Ok(wd) => {
                    if let Ok(mut d) = dirs.lock() {
                        d.by_wd.insert(wd, rel);
                    }
                }
                // Vanished since it was listed: its parent's event says so.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    if !broken.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "cannot watch {}: {e}; every scan walks the whole tree",
                            dir.display()
                        );
                    }
                }
            }
        })
    }

    /// Whether scans can rely on the watcher.
    pub fn healthy(&self) -> bool {
        !self.broken.load(Ordering::Relaxed)
    }

    /// Makes the next scan a full one (what was taken could not be recorded).
    pub fn give_back(&mut self, dirty: Dirty) {
        self.pending.merge(dirty);
    }

    /// Everything that may have changed since the last drain (including what is queued now).
    pub fn drain(&mut self) -> Dirty {
        loop {
            match self.inotify.read_events(&mut self.buf) {
                Ok(events) => {
                    let mut dirs = match self.dirs.lock() {
                        Ok(d) => d,
                        Err(_) => {
                            self.pending.full = true;
                            break;
                        }
                    };
                    let mut moved_away = Vec::new();
                    for ev in events {
                        note(&mut self.pending, &mut dirs, &mut moved_away, ev);
                    }
                    drop(dirs);
                    for d in moved_away {
                        self.unwatch(&d);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!("reading inotify events: {e}");
                    self.pending.full = true;
                    break;
                }
            }
        }
        if !self.healthy() {
            self.pending.full = true;
        }
        std::mem::take(&mut self.pending)
    }

    /// Stops watching `dir` and what is below it (moved away: its watches would name the old
    /// paths; the new place is walked and watched as a new directory).
    fn unwatch(&mut self, dir: &str) {
        let Ok(mut dirs) = self.dirs.lock() else {
            return;
        };
        let gone: Vec<WatchDescriptor> = dirs
            .by_wd
            .iter()
            .filter(|(_, d)| {
                d.as_str() == dir || (d.starts_with(dir) && d.as_bytes()[dir.len()] == b'/')
            })
            .map(|(wd, _)| wd.clone())
            .collect();
        let mut watches = self.inotify.watches();
        for wd in gone {
            dirs.by_wd.remove(&wd);
            let _ = watches.remove(wd);
        }
    }
}

/// Folds one event into `dirty`.
fn note(
    dirty: &mut Dirty,
    dirs: &mut Dirs,
    moved_away: &mut Vec<String>,
    ev: inotify::Event<&OsStr>,
) {
    if ev.mask.contains(EventMask::Q_OVERFLOW) {
        dirty.full = true;
        return;
    }
    if ev.mask.contains(EventMask::IGNORED) {
        dirs.by_wd.remove(&ev.wd);
        return;
    }
    let Some(dir) = dirs.by_wd.get(&ev.wd).cloned() else {
        // A watch removed while its events were queued: nothing to say about it.
        return;
    };
    let Some(name) = ev.name else {
        // About the watched directory itself: its parent's watch reports it, but the root
        // has no parent.
        if dir.is_empty()
            && ev
                .mask
                .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF)
        {
            dirty.full = true;
        }
        return;
    };
    let name_b = name.as_bytes();
    if name_b == b".git" || name_b == HORDE_DIR.as_bytes() {
        return;
    }
    let name = name.to_string_lossy();
    if IGNORE_FILES.contains(&name.as_ref()) {
        dirty.full = true;
    }
    let path = join(&dir, &name);
    dirty.dirs.insert(dir);
    if ev.mask.contains(EventMask::ISDIR) {
        if ev.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
            dirty.deep.insert(path.clone());
        }
        if ev.mask.contains(EventMask::MOVED_FROM) {
            moved_away.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::scan_dirty;
    use crate::store::Store;

    fn key() -> horde_core::DeviceKey {
        horde_core::DeviceKey::generate().expect("key")
    }

    /// The paths a scan of `dirty` reports changed, as "op path".
    fn changes(store: &Store, index: &crate::scan::Index, w: &mut Watcher) -> Vec<String> {
        let dirty = w.drain();
        let out = scan_dirty(
            &store.ledger.layout.root,
            &store.ledger.blobs,
            index,
            None,
            &dirty,
            Some(w.on_dir()),
        )
        .expect("scan");
        names(&out)
    }

    /// What a full scan reports changed.
    fn full(store: &Store, index: &crate::scan::Index) -> Vec<String> {
        let root = &store.ledger.layout.root;
        names(&crate::scan::scan(root, &store.ledger.blobs, index, None).expect("scan"))
    }

    fn names(out: &crate::scan::ScanOutcome) -> Vec<String> {
        let mut v: Vec<String> = out
            .changes
            .iter()
            .map(|c| format!("{:?} {}", c.op, c.path))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_watched_scan_sees_what_a_full_scan_sees() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().canonicalize().expect("canon");
        std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
        std::fs::write(root.join("a/b/f.txt"), "one").expect("write");
        std::fs::write(root.join("top.txt"), "top").expect("write");
        std::fs::write(root.join(".gitignore"), "ignored/\n").expect("write");
        let store = crate::record::init(&root, key()).expect("init").store;
        let mut rec = crate::record::Recorder::new(&store).expect("rec");
        let mut w = Watcher::new(&root).expect("inotify");
        // The first drain is a full scan: nothing changed since init.
        assert!(changes(&store, &rec.index, &mut w).is_empty());
        assert!(w.drain().is_empty());

        std::fs::write(root.join("a/b/f.txt"), "two").expect("write");
        std::fs::create_dir_all(root.join("new/deep")).expect("mkdir");
        std::fs::write(root.join("new/deep/g.txt"), "g").expect("write");
        std::fs::create_dir_all(root.join("ignored")).expect("mkdir");
        std::fs::write(root.join("ignored/x"), "x").expect("write");
        std::fs::rename(root.join("top.txt"), root.join("a/top2.txt")).expect("mv");
        let seen = changes(&store, &rec.index, &mut w);
        assert_eq!(seen, full(&store, &rec.index));
        assert!(seen.contains(&"Rename a/top2.txt".to_owned()), "{seen:?}");
        assert!(
            seen.contains(&"Create new/deep/g.txt".to_owned()),
            "{seen:?}"
        );

        // Record it, then delete a directory with files in it and move another away.
        rec.step("t", None, Vec::new(), false).expect("step");
        std::fs::remove_dir_all(root.join("new")).expect("rm");
        std::fs::rename(root.join("a"), root.join("z")).expect("mv");
        std::fs::write(root.join("z/b/f.txt"), "three").expect("write");
        let seen = changes(&store, &rec.index, &mut w);
        assert_eq!(seen, full(&store, &rec.index));
        assert!(
            seen.contains(&"Delete new/deep/g.txt".to_owned()),
            "{seen:?}"
        );
        assert!(seen.contains(&"Create z/b/f.txt".to_owned()), "{seen:?}");
        assert!(seen.contains(&"Delete a".to_owned()), "{seen:?}");
    }

    #[test]
    fn an_ignore_file_change_makes_the_next_scan_full() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().canonicalize().expect("canon");
        std::fs::create_dir_all(root.join("d")).expect("mkdir");
        let store = crate::record::init(&root, key()).expect("init").store;
        let rec = crate::record::Recorder::new(&store).expect("rec");
        let mut w = Watcher::new(&root).expect("inotify");
        let _ = changes(&store, &rec.index, &mut w);
        std::fs::write(root.join("d/.gitignore"), "*.log\n").expect("write");
        assert!(w.drain().full);
        std::fs::write(root.join("d/x.txt"), "x").expect("write");
        let d = w.drain();
        assert!(!d.full && d.dirs.contains("d"), "{d:?}");
    }
}
