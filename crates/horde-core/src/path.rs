//! [`RepoPath`]: a repository-relative path that is normalized once, where it enters the system.
//!
//! A `RepoPath` is '/'-separated, non-empty, relative, valid UTF-8, at most [`MAX_PATH_BYTES`]
//! long, and has no empty, `.` or `..` components and no NUL. Code holding one never has to
//! check again, and joining it to a root can never leave that root.

use std::fmt;
use std::path::{Component, Path, PathBuf};

/// Longest path accepted, in bytes (Linux's PATH_MAX).
pub const MAX_PATH_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path {0:?} is absolute; horde records paths relative to the repository root")]
    Absolute(String),
    #[error("path {0:?} contains '..'; it would leave the repository")]
    ParentDir(String),
    #[error("path {0:?} contains a NUL byte")]
    Nul(String),
    #[error("path {0:?} has an empty or '.' component")]
    EmptyComponent(String),
    #[error("path {0:?} is longer than {MAX_PATH_BYTES} bytes")]
    TooLong(String),
    #[error(
        "file name {0:?} is not valid UTF-8; horde records UTF-8 paths only (add it to .hordeignore to skip it)"
    )]
    NotUtf8(String),
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoPath(String);

impl RepoPath {
    /// Parses a path as found in an event or typed by a user: strict, no normalization except
    /// that a trailing '/' is dropped.
    pub fn parse(s: &str) -> Result<Self, PathError> {
        let trimmed = s.strip_suffix('/').unwrap_or(s);
        if trimmed.is_empty() {
            return Err(PathError::Empty);
        }
        if trimmed.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong(truncate(s)));
        }
        if trimmed.contains('\0') {
            return Err(PathError::Nul(s.to_owned()));
        }
        if trimmed.starts_with('/') {
            return Err(PathError::Absolute(s.to_owned()));
        }
        for part in trimmed.split('/') {
            match part {
                ".." => return Err(PathError::ParentDir(s.to_owned())),
                "" | "." => return Err(PathError::EmptyComponent(s.to_owned())),
                _ => {}
            }
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// Builds a `RepoPath` from a filesystem path relative to the repository root (as a tree
    /// walk yields it). `.` components are dropped; `..`, roots and non-UTF-8 names are refused.
    pub fn from_relative(path: &Path) -> Result<Self, PathError> {
        let mut out = String::new();
        for comp in path.components() {
            match comp {
                Component::Normal(part) => {
                    let part = part
                        .to_str()
                        .ok_or_else(|| PathError::NotUtf8(path.to_string_lossy().into_owned()))?;
                    if !out.is_empty() {
                        out.push('/');
                    }
                    out.push_str(part);
                }
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(PathError::ParentDir(path.to_string_lossy().into_owned()));
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(PathError::Absolute(path.to_string_lossy().into_owned()));
                }
            }
        }
        Self::parse(&out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `root` joined with this path; never outside `root` (the type forbids `..` and roots).
    pub fn to_fs_path(&self, root: &Path) -> PathBuf {
        root.join(&self.0)
    }

    /// The parent directory, or `None` at the top level.
    pub fn parent(&self) -> Option<RepoPath> {
        self.0.rsplit_once('/').map(|(p, _)| RepoPath(p.to_owned()))
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit_once('/').map_or(&self.0, |(_, n)| n)
    }

    /// True when `self` is `dir` or lies below it.
    pub fn starts_with(&self, dir: &RepoPath) -> bool {
        self.0 == dir.0
            || (self.0.len() > dir.0.len()
                && self.0.starts_with(&dir.0)
                && self.0.as_bytes()[dir.0.len()] == b'/')
    }
}

fn truncate(s: &str) -> String {
    let mut end = 64.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepoPath({:?})", self.0)
    }
}

impl AsRef<str> for RepoPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_normal_paths() {
        assert_eq!(RepoPath::parse("a/b.txt").expect("ok").as_str(), "a/b.txt");
        assert_eq!(RepoPath::parse("dir/").expect("ok").as_str(), "dir");
        assert_eq!(
            RepoPath::parse("..foo/x..")
                .expect("dots inside names are fine")
                .as_str(),
            "..foo/x.."
        );
    }

    #[test]
    fn rejects_escapes_and_junk() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "a//b",
            "./a",
            "a/./b",
            "a\0b",
            "/",
        ] {
            assert!(RepoPath::parse(bad).is_err(), "{bad:?} must be rejected");
        }
        assert!(matches!(
            RepoPath::parse(&"x".repeat(5000)),
            Err(PathError::TooLong(_))
        ));
    }

    #[test]
    fn from_relative_normalizes_cur_dir_and_refuses_parent() {
        assert_eq!(
            RepoPath::from_relative(Path::new("./a/./b"))
                .expect("ok")
                .as_str(),
            "a/b"
        );
        assert!(RepoPath::from_relative(Path::new("a/../b")).is_err());
        assert!(RepoPath::from_relative(Path::new("/a")).is_err());
    }

    #[test]
    fn non_utf8_names_get_a_clear_error() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"bad\xffname"));
        let err = RepoPath::from_relative(p).expect_err("not utf-8");
        assert!(err.to_string().contains("not valid UTF-8"), "{err}");
    }

    #[test]
    fn starts_with_respects_component_boundaries() {
        let d = RepoPath::parse("src").expect("ok");
        assert!(RepoPath::parse("src/a").expect("ok").starts_with(&d));
        assert!(RepoPath::parse("src").expect("ok").starts_with(&d));
        assert!(!RepoPath::parse("srcx/a").expect("ok").starts_with(&d));
    }

    proptest! {
        #[test]
        fn parsed_paths_never_escape(s in "[a-z./]{0,20}") {
            if let Ok(p) = RepoPath::parse(&s) {
                let root = Path::new("/root");
                let joined = p.to_fs_path(root);
                prop_assert!(joined.starts_with(root));
                prop_assert!(!p.as_str().split('/').any(|c| c == ".." || c == "." || c.is_empty()));
            }
        }
    }
}
