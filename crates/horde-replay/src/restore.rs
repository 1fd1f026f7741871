//! Writing a [`State`] into a directory.
//!
//! Every operation goes through a `cap-std` handle on the target: paths are resolved beneath
//! it, and a symlink met on the way (one restored a moment ago, or one that was already
//! there) is never followed out of it. Links are created with their recorded target as
//! content and never read back. Paths whose first component is in
//! [`RestoreOptions::protect`] (`.horde` on the edge) are never touched.
//!
//! Order: removals deepest first, then directories parents first, then files and links in
//! parallel, then directory modes deepest first (so a read-only directory is made read-only
//! after its contents are written).

use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use horde_core::BlobHash;
use horde_core::hash::BlobHasher;

use crate::state::{Entry, Kind, State};
use crate::{BlobSource, MAX_LINK_TARGET_BYTES, ReplayError};

/// What is in the target before the restore.
#[derive(Debug, Clone, Copy)]
pub enum RestoreMode<'a> {
    /// A new or empty directory.
    Fresh,
    /// The target holds `current` (the tree as last recorded there): only the differences
    /// are written. Files the state does not know of are left alone.
    InPlace { current: &'a State },
}

#[derive(Debug, Clone)]
pub struct RestoreOptions<'a> {
    /// Hash every file's content while writing it (otherwise only sizes are checked).
    pub verify: bool,
    /// Files written in parallel.
    pub threads: usize,
    /// Top-level names never written or removed.
    pub protect: &'a [&'a str],
}

impl Default for RestoreOptions<'_> {
    fn default() -> Self {
        Self {
            verify: false,
            threads: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(1, 8),
            protect: &[],
        }
    }
}

/// How far a restore is; sent after each file.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

#[derive(Debug, Default, Clone)]
pub struct RestoreReport {
    /// Files and links written.
    pub written: u64,
    pub bytes: u64,
    pub dirs_created: u64,
    /// Paths removed (in place).
    pub removed: u64,
    /// Directories the state deletes that still hold files it does not know of: left there.
    pub kept: Vec<String>,
    /// Paths under a protected name: not touched.
    pub protected: Vec<String>,
    /// Withheld paths whose blob is not here (it stays on the device that recorded it): not
    /// written, not removed.
    pub withheld: Vec<String>,
}

/// The parts of a restore, decided before anything is written.
#[derive(Default)]
struct Plan<'s> {
    remove: Vec<(&'s str, Kind)>,
    mkdir: Vec<&'s str>,
    write: Vec<(&'s str, &'s Entry)>,
    dir_modes: Vec<(&'s str, u32)>,
}

fn plan<'s>(
    state: &'s State,
    mode: RestoreMode<'s>,
    protect: &[&str],
    blobs: &dyn BlobSource,
    report: &mut RestoreReport,
) -> Plan<'s> {
    let mut p = Plan::default();
    let mut protected = |path: &str| {
        let top = path.split('/').next().unwrap_or(path);
        if protect.contains(&top) {
            report.protected.push(path.to_owned());
            true
        } else {
            false
        }
    };
    let mut withheld = Vec::new();
    let mut keep = |path: &str| {
        if protected(path) {
            return false;
        }
        match state.get(path) {
            Some(e) if e.withheld && e.hash.is_some_and(|h| !blobs.has(&h)) => {
                withheld.push(path.to_owned());
                false
            }
            _ => true,
        }
    };
    match mode {
        RestoreMode::Fresh => {
            for (path, e) in state.iter() {
                if keep(path) {
                    p.add(path, e, true);
                }
            }
        }
        RestoreMode::InPlace { current } => {
            for c in crate::diff(current, state) {
                if !keep(&c.path) {
                    continue;
                }
                let before = current.get_key_value(&c.path);
                let after = state.get_key_value(&c.path);
                match (before, after) {
                    (Some((path, b)), None) => p.remove.push((path, b.kind)),
                    (Some((old, b)), Some((path, e))) if b.kind != e.kind => {
                        p.remove.push((old, b.kind));
                        p.add(path, e, true);
                    }
                    (before, Some((path, e))) => p.add(path, e, before.is_none()),
                    (None, None) => {}
                }
            }
            // Deepest first: a directory after everything that was in it.
            p.remove.sort_unstable_by(|a, b| b.0.cmp(a.0));
        }
    }
    p.dir_modes.reverse();
    report.withheld = withheld;
    p
}

impl<'s> Plan<'s> {
    fn add(&mut self, path: &'s str, e: &'s Entry, new: bool) {
        match e.kind {
            Kind::Dir => {
                if new {
                    self.mkdir.push(path);
                }
                self.dir_modes.push((path, e.mode));
            }
            Kind::File | Kind::Symlink => self.write.push((path, e)),
        }
    }
}

/// Writes `state` into `target` (see the module docs). In [`RestoreMode::Fresh`] the target
/// is created if missing and must be empty otherwise.
pub fn restore(
    state: &State,
    blobs: &dyn BlobSource,
    target: &Path,
    mode: RestoreMode<'_>,
    opts: &RestoreOptions<'_>,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<RestoreReport, ReplayError> {
    let in_place = matches!(mode, RestoreMode::InPlace { .. });
    if !in_place {
        match std::fs::read_dir(target) {
            Ok(mut it) => {
                if it.next().is_some() {
                    return Err(ReplayError::TargetNotEmpty(target.to_owned()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir_all(target)
                .map_err(|e| ReplayError::io(format!("cannot create {}", target.display()), e))?,
            Err(e) => {
                return Err(ReplayError::io(
                    format!("cannot open {}", target.display()),
                    e,
                ));
            }
        }
    }
    let dir = Dir::open_ambient_dir(target, ambient_authority())
        .map_err(|e| ReplayError::io(format!("cannot open {}", target.display()), e))?;
    let mut report = RestoreReport::default();
    let plan = plan(state, mode, opts.protect, blobs, &mut report);
    let at = |what: &str, path: &str| format!("cannot {what} {path} in {}", target.display());

    for (path, kind) in &plan.remove {
        let res = match kind {
            Kind::Dir => dir.remove_dir(path),
            Kind::File | Kind::Symlink => dir.remove_file(path),
        };
        match res {
            Ok(()) => report.removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if *kind == Kind::Dir && e.kind() == io::ErrorKind::DirectoryNotEmpty => {
                report.kept.push((*path).to_owned())
            }
            Err(e) => return Err(ReplayError::io(at("remove", path), e)),
        }
    }
    for path in &plan.mkdir {
        match dir.create_dir(path) {
            Ok(()) => report.dirs_created += 1,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir(path) => {}
            Err(e) => return Err(ReplayError::io(at("create the directory", path), e)),
        }
    }

    let total = Progress {
        files_total: plan.write.len() as u64,
        bytes_total: plan.write.iter().map(|(_, e)| e.size).sum(),
        ..Progress::default()
    };
    let (files_done, bytes_done) = (AtomicU64::new(0), AtomicU64::new(0));
    let next = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<ReplayError>> = Mutex::new(None);
    let threads = opts.threads.clamp(1, 64).min(plan.write.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= plan.write.len() || failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let (path, e) = plan.write[i];
                    match write_entry(&dir, blobs, path, e, in_place, opts.verify) {
                        Ok(()) => {
                            let files = files_done.fetch_add(1, Ordering::Relaxed) + 1;
                            let bytes = bytes_done.fetch_add(e.size, Ordering::Relaxed) + e.size;
                            progress(Progress {
                                files_done: files,
                                bytes_done: bytes,
                                ..total
                            });
                        }
                        Err(err) => {
                            failed.store(true, Ordering::Relaxed);
                            let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                            slot.get_or_insert(err);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    report.written = files_done.into_inner();
    report.bytes = bytes_done.into_inner();

    for (path, mode) in &plan.dir_modes {
        dir.set_permissions(
            path,
            cap_std::fs::Permissions::from_std(std::fs::Permissions::from_mode(*mode)),
        )
        .map_err(|e| ReplayError::io(at("set the mode of", path), e))?;
    }
    Ok(report)
}

/// A name beside `path` for writing before the rename that puts it in place.
fn temp_name(path: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let name = format!(".horde-restore-{}-{n}", std::process::id());
    match path.rsplit_once('/') {
        Some((parent, _)) => format!("{parent}/{name}"),
        None => name,
    }
}

/// Writes one file or link. In place, it is written beside and renamed over the old one, so
/// the path never holds a half-written file.
fn write_entry(
    dir: &Dir,
    blobs: &dyn BlobSource,
    path: &str,
    e: &Entry,
    in_place: bool,
    verify: bool,
) -> Result<(), ReplayError> {
    let hash = e.hash.expect("files and links have a blob");
    let dest = if in_place {
        temp_name(path)
    } else {
        path.to_owned()
    };
    let io_err = |what: &str| {
        let path = path.to_owned();
        let what = what.to_owned();
        move |source| ReplayError::io(format!("cannot {what} {path}"), source)
    };
    match e.kind {
        Kind::Symlink => {
            let target = blobs.read_limited(&hash, MAX_LINK_TARGET_BYTES)?;
            if BlobHash::of(&target) != hash {
                return Err(corrupt(&hash, path, "content does not match its hash"));
            }
            let target = std::ffi::OsStr::from_bytes(&target);
            dir.symlink_contents(target, &dest)
                .map_err(io_err("create the link"))?;
        }
        Kind::File => {
            let file = dir
                .open_with(&dest, OpenOptions::new().write(true).create_new(true))
                .map_err(io_err("create"))?;
            let mut file = file.into_std();
            let written = copy_blob(blobs, &hash, &mut file, verify, path);
            let res = written.and_then(|n| {
                if n != e.size {
                    return Err(corrupt(
                        &hash,
                        path,
                        &format!("{n} bytes where {} were recorded", e.size),
                    ));
                }
                file.set_permissions(std::fs::Permissions::from_mode(e.mode))
                    .map_err(io_err("set the mode of"))
            });
            if let Err(err) = res {
                drop(file);
                let _ = dir.remove_file(&dest);
                return Err(err);
            }
        }
        Kind::Dir => unreachable!("directories are created, not written"),
    }
    if in_place && let Err(err) = dir.rename(&dest, dir, path) {
        let _ = dir.remove_file(&dest);
        return Err(io_err("replace")(err));
    }
    Ok(())
}

fn corrupt(hash: &BlobHash, path: &str, why: &str) -> ReplayError {
    ReplayError::CorruptBlob {
        hash: *hash,
        path: path.to_owned(),
        why: why.to_owned(),
    }
}

/// Copies a blob into `out`; returns its length. Without `verify`, a local blob file is
/// copied in the kernel; with it, the content is hashed on the way.
fn copy_blob(
    blobs: &dyn BlobSource,
    hash: &BlobHash,
    out: &mut std::fs::File,
    verify: bool,
    path: &str,
) -> Result<u64, ReplayError> {
    let blob_err = |source| ReplayError::Blob {
        hash: *hash,
        source,
    };
    let write_err = |source| ReplayError::io(format!("cannot write {path}"), source);
    if !verify && let Some(local) = blobs.local_file(hash) {
        let mut src = std::fs::File::open(&local).map_err(blob_err)?;
        return io::copy(&mut src, out).map_err(write_err);
    }
    let mut src = blobs.open(hash).map_err(blob_err)?;
    let mut hasher = BlobHasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let got = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(blob_err(e)),
        };
        hasher.update(&buf[..got]);
        out.write_all(&buf[..got]).map_err(write_err)?;
        n += got as u64;
    }
    if hasher.finish() != *hash {
        return Err(corrupt(hash, path, "content does not match its hash"));
    }
    Ok(n)
}
