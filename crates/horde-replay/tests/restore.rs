//! Restores into real directories and tar archives: byte-exact trees with modes, links and
//! empty directories; in place; and hostile states that try to write outside the target.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use horde_core::BlobHash;
use horde_core::proto::{FileKind, StateChange, state_change::Op};
use horde_replay::{
    BlobSource, Kind, ReplayError, RestoreMode, RestoreOptions, State, restore, tar::write_tar,
};

/// Blobs in memory (no local files: exercises the streamed, hashed copy).
#[derive(Default)]
struct Mem(Mutex<HashMap<BlobHash, Vec<u8>>>);

impl Mem {
    fn put(&self, data: &[u8]) -> BlobHash {
        let h = BlobHash::of(data);
        self.0.lock().expect("lock").insert(h, data.to_vec());
        h
    }
}

impl BlobSource for Mem {
    fn open(&self, hash: &BlobHash) -> std::io::Result<Box<dyn Read + Send + '_>> {
        let data = self.0.lock().expect("lock").get(hash).cloned();
        data.map(|d| Box::new(std::io::Cursor::new(d)) as Box<dyn Read + Send>)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such blob"))
    }
}

/// Blobs in memory that say which they hold (the edge's `has`).
struct Holding<'a>(&'a Mem);

impl BlobSource for Holding<'_> {
    fn open(&self, hash: &BlobHash) -> std::io::Result<Box<dyn Read + Send + '_>> {
        self.0.open(hash)
    }
    fn has(&self, hash: &BlobHash) -> bool {
        self.0.0.lock().expect("lock").contains_key(hash)
    }
}

/// Blobs as files in a directory (the edge's shape: restore copies them in the kernel).
struct Files(PathBuf);

impl BlobSource for Files {
    fn open(&self, hash: &BlobHash) -> std::io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(fs::File::open(self.0.join(hash.to_hex()))?))
    }
    fn local_file(&self, hash: &BlobHash) -> Option<PathBuf> {
        Some(self.0.join(hash.to_hex()))
    }
}

fn put(s: &mut State, blobs: &Mem, path: &str, kind: FileKind, content: &[u8], mode: u32) {
    let h = blobs.put(content);
    s.apply(&StateChange {
        path: path.into(),
        op: Op::Create as i32,
        after_hash: if kind == FileKind::Dir {
            vec![]
        } else {
            h.to_vec()
        },
        mode,
        size: content.len() as u64,
        kind: kind as i32,
        ..Default::default()
    })
    .expect("valid change");
}

type Tree = BTreeMap<String, (&'static str, Vec<u8>, u32)>;

/// The tree on disk: kind, content (link target for links), mode.
fn tree(root: &Path) -> Tree {
    fn walk(root: &Path, dir: &Path, out: &mut Tree) {
        for e in fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("entry").path();
            let rel = p
                .strip_prefix(root)
                .expect("under")
                .to_str()
                .expect("utf8")
                .to_owned();
            let m = fs::symlink_metadata(&p).expect("stat");
            let mode = m.permissions().mode() & 0o7777;
            if m.file_type().is_symlink() {
                let t = fs::read_link(&p).expect("link");
                out.insert(rel, ("link", t.into_os_string().into_encoded_bytes(), 0));
            } else if m.is_dir() {
                out.insert(rel, ("dir", vec![], mode));
                walk(root, &p, out);
            } else {
                out.insert(rel, ("file", fs::read(&p).expect("read"), mode));
            }
        }
    }
    let mut out = Tree::new();
    walk(root, root, &mut out);
    out
}

/// What the tree of `s` must look like.
fn expected(s: &State, blobs: &Mem) -> Tree {
    let map = blobs.0.lock().expect("lock");
    s.iter()
        .map(|(p, e)| {
            let content = e
                .hash
                .map(|h| map.get(&h).expect("blob").clone())
                .unwrap_or_default();
            let v = match e.kind {
                Kind::Dir => ("dir", content, e.mode),
                Kind::File => ("file", content, e.mode),
                Kind::Symlink => ("link", content, 0),
            };
            (p.to_owned(), v)
        })
        .collect()
}

fn sample(blobs: &Mem) -> State {
    let mut s = State::new();
    put(&mut s, blobs, "src", FileKind::Dir, b"", 0o755);
    put(
        &mut s,
        blobs,
        "src/main.rs",
        FileKind::File,
        b"fn main() {}\n",
        0o644,
    );
    put(
        &mut s,
        blobs,
        "run.sh",
        FileKind::File,
        b"#!/bin/sh\n",
        0o755,
    );
    put(&mut s, blobs, "empty", FileKind::File, b"", 0o600);
    put(
        &mut s,
        blobs,
        "bin.dat",
        FileKind::File,
        &[0, 159, 146, 150, 255],
        0o644,
    );
    put(
        &mut s,
        blobs,
        "big",
        FileKind::File,
        &vec![7u8; 3 << 20],
        0o644,
    );
    put(&mut s, blobs, "empty-dir", FileKind::Dir, b"", 0o700);
    put(&mut s, blobs, "ro", FileKind::Dir, b"", 0o555);
    put(&mut s, blobs, "ro/inside", FileKind::File, b"x", 0o444);
    put(
        &mut s,
        blobs,
        "abs-link",
        FileKind::Symlink,
        b"/etc/passwd",
        0o777,
    );
    put(
        &mut s,
        blobs,
        "up-link",
        FileKind::Symlink,
        b"../../outside",
        0o777,
    );
    put(
        &mut s,
        blobs,
        "src/rel",
        FileKind::Symlink,
        b"main.rs",
        0o777,
    );
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(130));
    put(&mut s, blobs, &long, FileKind::File, b"long name", 0o644);
    s
}

/// Makes a read-only restored tree removable.
fn chmod_all(root: &Path) {
    for (p, (kind, _, _)) in tree(root) {
        if kind == "dir" {
            fs::set_permissions(root.join(p), fs::Permissions::from_mode(0o755)).expect("chmod");
        }
    }
}

#[test]
fn fresh_restore_is_byte_exact_with_modes_links_and_empty_dirs() {
    let blobs = Mem::default();
    let s = sample(&blobs);
    let tmp = tempfile::tempdir().expect("tmp");
    let target = tmp.path().join("out");
    let seen = Mutex::new(0u64);
    let report = restore(
        &s,
        &blobs,
        &target,
        RestoreMode::Fresh,
        &RestoreOptions::default(),
        &|p| *seen.lock().expect("lock") = p.files_done,
    )
    .expect("restore");
    assert_eq!(tree(&target), expected(&s, &blobs));
    assert_eq!(report.written, s.totals().0);
    assert_eq!(*seen.lock().expect("lock"), report.written);
    // Not into a non-empty directory.
    let again = restore(
        &s,
        &blobs,
        &target,
        RestoreMode::Fresh,
        &RestoreOptions::default(),
        &|_| {},
    );
    assert!(
        matches!(again, Err(ReplayError::TargetNotEmpty(_))),
        "{again:?}"
    );
    chmod_all(&target);
}

#[test]
fn local_blob_files_are_copied_and_their_sizes_checked() {
    let blobs = Mem::default();
    let s = sample(&blobs);
    let tmp = tempfile::tempdir().expect("tmp");
    let store = tmp.path().join("blobs");
    fs::create_dir(&store).expect("mkdir");
    for (h, data) in blobs.0.lock().expect("lock").iter() {
        fs::write(store.join(h.to_hex()), data).expect("write");
    }
    let files = Files(store.clone());
    restore(
        &s,
        &files,
        &tmp.path().join("a"),
        RestoreMode::Fresh,
        &RestoreOptions::default(),
        &|_| {},
    )
    .expect("restore");
    assert_eq!(tree(&tmp.path().join("a")), expected(&s, &blobs));
    chmod_all(&tmp.path().join("a"));
    // A truncated blob is caught by its size; a same-size corruption by --verify.
    let main = s.get("src/main.rs").and_then(|e| e.hash).expect("file");
    fs::write(store.join(main.to_hex()), b"fn main").expect("truncate");
    let err = restore(
        &s,
        &files,
        &tmp.path().join("b"),
        RestoreMode::Fresh,
        &RestoreOptions::default(),
        &|_| {},
    );
    assert!(
        matches!(err, Err(ReplayError::CorruptBlob { .. })),
        "{err:?}"
    );
    fs::write(store.join(main.to_hex()), b"fn xxxx() {}\n").expect("same size");
    let verify = RestoreOptions {
        verify: true,
        ..RestoreOptions::default()
    };
    let err = restore(
        &s,
        &files,
        &tmp.path().join("c"),
        RestoreMode::Fresh,
        &verify,
        &|_| {},
    );
    assert!(
        matches!(err, Err(ReplayError::CorruptBlob { .. })),
        "{err:?}"
    );
    for d in ["b", "c"] {
        chmod_all(&tmp.path().join(d));
    }
}

#[test]
fn in_place_writes_only_differences_and_keeps_untracked_files() {
    let blobs = Mem::default();
    let a = sample(&blobs);
    let mut b = a.clone();
    put(
        &mut b,
        &blobs,
        "src/main.rs",
        FileKind::File,
        b"fn main() { changed() }\n",
        0o755,
    );
    b.remove("run.sh");
    b.remove("empty-dir");
    put(&mut b, &blobs, "empty", FileKind::Dir, b"", 0o750); // file → dir
    put(&mut b, &blobs, "empty/new", FileKind::File, b"n", 0o640);
    put(
        &mut b,
        &blobs,
        "abs-link",
        FileKind::File,
        b"now a file",
        0o644,
    ); // link → file
    b.remove("src/rel");
    put(&mut b, &blobs, "src", FileKind::Dir, b"", 0o711); // mode only
    let mut guarded = State::new();
    put(&mut guarded, &blobs, ".horde", FileKind::Dir, b"", 0o755);
    put(
        &mut guarded,
        &blobs,
        ".horde/horde.db",
        FileKind::File,
        b"overwritten!",
        0o644,
    );

    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("w");
    restore(
        &a,
        &blobs,
        &root,
        RestoreMode::Fresh,
        &RestoreOptions::default(),
        &|_| {},
    )
    .expect("a");
    fs::create_dir(root.join(".horde")).expect("mkdir");
    fs::write(root.join(".horde/horde.db"), b"ledger").expect("write");
    fs::write(root.join("src/untracked.o"), b"build output").expect("write");
    let opts = RestoreOptions {
        protect: &[".horde"],
        ..RestoreOptions::default()
    };
    let report = restore(
        &b,
        &blobs,
        &root,
        RestoreMode::InPlace { current: &a },
        &opts,
        &|_| {},
    )
    .expect("in place");
    let mut want = expected(&b, &blobs);
    want.insert(".horde".into(), ("dir", vec![], 0o755));
    want.insert(
        ".horde/horde.db".into(),
        ("file", b"ledger".to_vec(), 0o644),
    );
    want.insert(
        "src/untracked.o".into(),
        ("file", b"build output".to_vec(), 0o644),
    );
    let mut got = tree(&root);
    for (k, v) in got.iter_mut() {
        if k.starts_with(".horde") || k == "src/untracked.o" {
            v.2 = want[k].2; // the umask decides these, not the restore
        }
    }
    assert_eq!(got, want);
    assert_eq!(report.written, 3, "{report:?}"); // main.rs, empty/new, abs-link
    // A state that names .horde never reaches it.
    let r = restore(
        &guarded,
        &blobs,
        &root,
        RestoreMode::InPlace { current: &b },
        &opts,
        &|_| {},
    )
    .expect("protected");
    assert_eq!(r.protected.len(), 2);
    assert_eq!(
        fs::read(root.join(".horde/horde.db")).expect("read"),
        b"ledger"
    );
    chmod_all(&root);
}

#[test]
fn links_on_disk_are_never_followed_out_of_the_target() {
    let blobs = Mem::default();
    let tmp = tempfile::tempdir().expect("tmp");
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    let root = tmp.path().join("w");
    fs::create_dir(&root).expect("mkdir");
    // The disk has a link where the recorded state has a directory (planted, or --force).
    std::os::unix::fs::symlink(&outside, root.join("d")).expect("symlink");
    std::os::unix::fs::symlink("../outside", root.join("rel")).expect("symlink");
    let mut cur = State::new();
    put(&mut cur, &blobs, "d", FileKind::Dir, b"", 0o755);
    put(&mut cur, &blobs, "rel", FileKind::Dir, b"", 0o755);
    let mut next = cur.clone();
    put(&mut next, &blobs, "d/pwned", FileKind::File, b"x", 0o644);
    put(&mut next, &blobs, "rel/pwned", FileKind::File, b"x", 0o644);
    put(&mut next, &blobs, "rel/sub", FileKind::Dir, b"", 0o755);
    let res = restore(
        &next,
        &blobs,
        &root,
        RestoreMode::InPlace { current: &cur },
        &RestoreOptions::default(),
        &|_| {},
    );
    assert!(res.is_err(), "{res:?}");
    assert_eq!(
        fs::read_dir(&outside).expect("ls").count(),
        0,
        "nothing written outside"
    );

    // A log that puts a file under a link: the fold refuses it, nothing goes through.
    let mut s = State::new();
    put(
        &mut s,
        &blobs,
        "l",
        FileKind::Symlink,
        outside.to_str().expect("utf8").as_bytes(),
        0o777,
    );
    put(&mut s, &blobs, "l/pwned", FileKind::File, b"x", 0o644);
    assert_eq!(s.anomaly_count(), 1);
    let fresh = tmp.path().join("fresh");
    restore(
        &s,
        &blobs,
        &fresh,
        RestoreMode::Fresh,
        &RestoreOptions::default(),
        &|_| {},
    )
    .expect("restore");
    assert_eq!(
        fs::read_dir(&outside).expect("ls").count(),
        0,
        "nothing written outside"
    );
    assert!(
        fs::symlink_metadata(fresh.join("l"))
            .expect("link")
            .file_type()
            .is_symlink()
    );
}

#[test]
fn tar_stream_unpacks_to_the_same_tree_and_stays_inside() {
    let blobs = Mem::default();
    let s = sample(&blobs);
    let bytes = write_tar(&s, &blobs, Vec::new(), 1_700_000_000).expect("tar");
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(bytes.as_slice());
    for e in archive.entries().expect("entries") {
        let e = e.expect("entry");
        let p = e.path().expect("path").into_owned();
        assert!(
            p.is_relative() && !p.components().any(|c| c.as_os_str() == ".."),
            "{p:?}"
        );
        names.push(p);
    }
    assert_eq!(names.len(), s.len());
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("x");
    fs::create_dir(&out).expect("mkdir");
    let mut archive = tar::Archive::new(bytes.as_slice());
    archive.set_preserve_permissions(true);
    archive.unpack(&out).expect("unpack");
    assert_eq!(tree(&out), expected(&s, &blobs));
    chmod_all(&out);

    // A blob that does not match its entry cuts the archive with an error.
    let main = s.get("src/main.rs").and_then(|e| e.hash).expect("file");
    blobs
        .0
        .lock()
        .expect("lock")
        .insert(main, b"fn main() {}\nEXTRA".to_vec());
    let err = write_tar(&s, &blobs, Vec::new(), 0);
    assert!(
        matches!(err, Err(ReplayError::CorruptBlob { .. })),
        "{err:?}"
    );
}

#[test]
fn withheld_entries_are_left_out_of_archives_and_listed_by_restores_that_lack_them() {
    let blobs = Mem::default();
    let mut s = sample(&blobs);
    let secret = b"AWS_SECRET=not-for-the-cloud\n";
    let h = blobs.put(secret);
    s.apply(&StateChange {
        path: ".env".into(),
        op: Op::Create as i32,
        after_hash: h.to_vec(),
        mode: 0o600,
        size: secret.len() as u64,
        kind: FileKind::File as i32,
        withheld: true,
        ..Default::default()
    })
    .expect("valid change");
    assert_eq!(s.withheld().collect::<Vec<_>>(), [".env"]);

    // The archive never holds a withheld entry, not even as an empty file.
    let bytes = write_tar(&s, &blobs, Vec::new(), 0).expect("tar");
    let mut archive = tar::Archive::new(bytes.as_slice());
    let names: Vec<String> = archive
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect();
    assert!(!names.iter().any(|n| n == ".env"), "{names:?}");
    assert_eq!(names.len(), s.len() - 1);
    assert!(
        !bytes.windows(secret.len()).any(|w| w == secret),
        "the secret's bytes are in the archive"
    );

    // On the recording device (the blob is here) it restores like any file.
    let tmp = tempfile::tempdir().expect("tmp");
    let here = tmp.path().join("here");
    let report = restore(
        &s,
        &Holding(&blobs),
        &here,
        RestoreMode::Fresh,
        &RestoreOptions::default(),
        &|_| {},
    )
    .expect("restore");
    assert!(report.withheld.is_empty());
    assert_eq!(fs::read(here.join(".env")).expect("restored"), secret);

    // Elsewhere (the blob is not here) it is listed, not written, and the rest is whole.
    let mut want = expected(&s, &blobs);
    want.remove(".env");
    blobs.0.lock().expect("lock").remove(&h);
    let there = tmp.path().join("there");
    let report = restore(
        &s,
        &Holding(&blobs),
        &there,
        RestoreMode::Fresh,
        &RestoreOptions::default(),
        &|_| {},
    )
    .expect("restore without the withheld blob");
    assert_eq!(report.withheld, [".env"]);
    assert!(!there.join(".env").exists());
    assert_eq!(tree(&there), want);
    chmod_all(&here);
    chmod_all(&there);
}
