//! Request paths normalised against the worktree before any glob sees them.
//!
//! A path an agent asks to read or write is taken relative to the worktree root (or absolute),
//! `.` and `..` are resolved, and every symbolic link that exists on disk is followed (with
//! POSIX meaning: `link/..` is the parent of the link's target), so `link -> ../../etc` cannot
//! smuggle `/etc/passwd` past `src/**`. Components that do not exist yet are taken as written.
//!
//! The result is [`NormalPath::Inside`] (a '/'-separated path relative to the worktree root,
//! `""` for the root itself) or [`NormalPath::Outside`] (an absolute path). The policy treats an
//! outside path as follows (see `decide`): **writes outside the worktree are always denied**;
//! reads outside are allowed only by an absolute glob in `files.read` (`/usr/share/doc/**`),
//! never by a relative one, and relative deny globs still apply to them.
//!
//! Without a worktree (none configured) only the lexical part is done: a relative path that
//! climbs above the root with `..` is outside.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Longest request path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Most symbolic links followed while resolving one path (as Linux's ELOOP limit).
pub const MAX_SYMLINK_HOPS: usize = 40;

/// A normalised request path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NormalPath {
    /// Relative to the worktree root, '/'-separated, no `.`/`..`/empty components; `""` is the
    /// root.
    Inside(String),
    /// Absolute, outside the worktree (or, without a worktree, a path that climbed out of it).
    Outside(String),
}

impl NormalPath {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Inside(s) | Self::Outside(s) => s,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("empty path")]
    Empty,
    #[error("path {0:?} contains a NUL byte")]
    Nul(String),
    #[error("path of {0} bytes is longer than {MAX_PATH_BYTES}")]
    TooLong(usize),
    #[error("path {0:?} goes through more than {MAX_SYMLINK_HOPS} symbolic links")]
    TooManyLinks(String),
    #[error("path {0:?} resolves through a symbolic link to a name that is not UTF-8")]
    NotUtf8(String),
}

/// A worktree root, canonicalised once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worktree {
    root: PathBuf,
}

impl Worktree {
    /// `root` is canonicalised when it exists (so `/tmp` → `/private/tmp` style links in the
    /// root itself do not make every path look outside); else taken lexically.
    pub fn new(root: &Path) -> Self {
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| lexical(root));
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Normalises `raw` (relative to the root, or absolute) with links resolved on disk.
    pub fn normalize(&self, raw: &str) -> Result<NormalPath, PathError> {
        check(raw)?;
        // The root is canonical already: a relative path starts there, without asking the
        // disk about the root's own components again.
        let resolved = if Path::new(raw).is_absolute() {
            resolve(Path::new("/"), Path::new(raw), raw)?
        } else {
            resolve(&self.root, Path::new(raw), raw)?
        };
        match resolved.strip_prefix(&self.root) {
            Ok(rel) => Ok(NormalPath::Inside(to_slash(rel, raw)?)),
            Err(_) => Ok(NormalPath::Outside(to_str(&resolved, raw)?.to_owned())),
        }
    }
}

fn check(raw: &str) -> Result<(), PathError> {
    if raw.is_empty() {
        return Err(PathError::Empty);
    }
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong(raw.len()));
    }
    if raw.contains('\0') {
        return Err(PathError::Nul(raw.to_owned()));
    }
    Ok(())
}

/// Lexical normalisation only, for when there is no worktree on disk: `a/./b/../c` → `a/c`;
/// a relative path climbing above its root is [`NormalPath::Outside`] (kept with its `..`).
pub fn normalize_lexical(raw: &str) -> Result<NormalPath, PathError> {
    check(raw)?;
    if raw.starts_with('/') {
        return Ok(NormalPath::Outside(
            to_str(&lexical(Path::new(raw)), raw)?.to_owned(),
        ));
    }
    let mut parts: Vec<&str> = Vec::new();
    let mut climbed = 0usize;
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    climbed += 1;
                }
            }
            p => parts.push(p),
        }
    }
    if climbed > 0 {
        let mut out = vec![".."; climbed];
        out.extend(parts);
        return Ok(NormalPath::Outside(out.join("/")));
    }
    Ok(NormalPath::Inside(parts.join("/")))
}

/// `.`/`..` resolved without touching the disk (`..` at `/` stays at `/`).
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Resolves `path` from `base` (a canonical directory), component by component, following
/// links that exist.
fn resolve(base: &Path, path: &Path, raw: &str) -> Result<PathBuf, PathError> {
    let mut todo: VecDeque<OsString> = VecDeque::new();
    let mut out = base.to_path_buf();
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {}
            Component::CurDir => {}
            Component::ParentDir => todo.push_back("..".into()),
            Component::Normal(s) => todo.push_back(s.to_owned()),
        }
    }
    let mut hops = 0usize;
    // Once a component does not exist, nothing below it can be a link: stop asking the disk.
    let mut on_disk = true;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            out.pop();
            continue;
        }
        let next = out.join(&part);
        if !on_disk {
            out = next;
            continue;
        }
        match std::fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(PathError::TooManyLinks(raw.to_owned()));
                }
                let Ok(target) = std::fs::read_link(&next) else {
                    // Unreadable link: treat as a plain name (it cannot be followed by anyone).
                    out = next;
                    continue;
                };
                if target.is_absolute() {
                    out = PathBuf::from("/");
                }
                for c in target.components().rev() {
                    match c {
                        Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
                        Component::ParentDir => todo.push_front("..".into()),
                        Component::Normal(s) => todo.push_front(s.to_owned()),
                    }
                }
            }
            Ok(_) => out = next,
            Err(_) => {
                on_disk = false;
                out = next;
            }
        }
    }
    Ok(out)
}

fn to_str<'a>(p: &'a Path, raw: &str) -> Result<&'a str, PathError> {
    p.to_str().ok_or_else(|| PathError::NotUtf8(raw.to_owned()))
}

fn to_slash(rel: &Path, raw: &str) -> Result<String, PathError> {
    let parts: Result<Vec<&str>, PathError> = rel
        .components()
        .map(|c| {
            c.as_os_str()
                .to_str()
                .ok_or_else(|| PathError::NotUtf8(raw.to_owned()))
        })
        .collect();
    Ok(parts?.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inside(s: &str) -> NormalPath {
        NormalPath::Inside(s.into())
    }

    #[test]
    fn lexical_paths() {
        assert_eq!(normalize_lexical("src/./a/../b.rs"), Ok(inside("src/b.rs")));
        assert_eq!(normalize_lexical("./"), Ok(inside("")));
        assert_eq!(
            normalize_lexical("src/../../etc/passwd"),
            Ok(NormalPath::Outside("../etc/passwd".into()))
        );
        assert_eq!(
            normalize_lexical("/etc/../etc/passwd"),
            Ok(NormalPath::Outside("/etc/passwd".into()))
        );
        assert_eq!(normalize_lexical(""), Err(PathError::Empty));
        assert!(matches!(normalize_lexical("a\0b"), Err(PathError::Nul(_))));
        assert!(matches!(
            normalize_lexical(&"a".repeat(MAX_PATH_BYTES + 1)),
            Err(PathError::TooLong(_))
        ));
    }

    #[test]
    fn worktree_paths_and_links() {
        let dir = tempfile::tempdir().expect("the test input is valid");
        let root = dir.path().join("wt");
        std::fs::create_dir_all(root.join("src/sub")).expect("the test input is valid");
        std::fs::create_dir_all(dir.path().join("outside")).expect("the test input is valid");
        let wt = Worktree::new(&root);
        assert_eq!(wt.normalize("src/x.rs"), Ok(inside("src/x.rs")));
        assert_eq!(
            wt.normalize("src/sub/../new/y.rs"),
            Ok(inside("src/new/y.rs"))
        );
        let abs = wt.root().join("src/x.rs");
        assert_eq!(
            wt.normalize(abs.to_str().expect("the test input is valid")),
            Ok(inside("src/x.rs"))
        );
        assert!(matches!(
            wt.normalize("../outside/z"),
            Ok(NormalPath::Outside(_))
        ));

        #[cfg(unix)]
        {
            // A link inside the tree that points out of it.
            std::os::unix::fs::symlink("../../outside", root.join("src/link"))
                .expect("the test input is valid");
            let n = wt
                .normalize("src/link/secret")
                .expect("the test input is valid");
            assert!(
                matches!(&n, NormalPath::Outside(p) if p.ends_with("/outside/secret")),
                "{n:?}"
            );
            // `..` after a link is taken from the link's target, as the kernel does.
            let n = wt
                .normalize("src/link/../wt/src/x.rs")
                .expect("the test input is valid");
            assert_eq!(n, inside("src/x.rs"));
            // A link to a file inside stays inside, under its real name.
            std::fs::write(root.join("src/real.rs"), "").expect("the test input is valid");
            std::os::unix::fs::symlink("real.rs", root.join("src/alias.rs"))
                .expect("the test input is valid");
            assert_eq!(wt.normalize("src/alias.rs"), Ok(inside("src/real.rs")));
            // A loop is an error, not a hang.
            std::os::unix::fs::symlink("loop", root.join("loop")).expect("the test input is valid");
            assert!(matches!(
                wt.normalize("loop/x"),
                Err(PathError::TooManyLinks(_))
            ));
        }
    }
}
