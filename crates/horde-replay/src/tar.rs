//! A [`State`] as a tar stream (what the cloud's restore endpoint sends): entries in path
//! order (a directory before what it holds), modes as recorded, symlinks as links, every
//! file's bytes streamed from its blob and counted against the recorded size. Paths come from
//! the state, so no entry can name `..` or an absolute path; long names use GNU extensions.
//! Withheld entries (their blob stays on the device that recorded them) are left out, never
//! written as empty files: the caller lists them ([`State::withheld`]).

use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;

use horde_core::BlobHash;

use crate::state::{Kind, State};
use crate::{BlobSource, MAX_LINK_TARGET_BYTES, ReplayError};

/// Writes `state` as a tar archive into `out`, every entry with modification time `mtime`
/// (seconds since the epoch). Returns `out` after the end-of-archive blocks.
pub fn write_tar<W: Write>(
    state: &State,
    blobs: &dyn BlobSource,
    out: W,
    mtime: u64,
) -> Result<W, ReplayError> {
    let mut b = ::tar::Builder::new(out);
    let werr = |e| ReplayError::io("cannot write the archive", e);
    for (path, e) in state.iter().filter(|(_, e)| !e.withheld) {
        let mut h = ::tar::Header::new_gnu();
        h.set_mode(e.mode);
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        match e.kind {
            Kind::Dir => {
                h.set_entry_type(::tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, format!("{path}/"), io::empty())
                    .map_err(werr)?;
            }
            Kind::Symlink => {
                let hash = e.hash.expect("links have a blob");
                let target = blobs.read_limited(&hash, MAX_LINK_TARGET_BYTES)?;
                if BlobHash::of(&target) != hash {
                    return Err(ReplayError::CorruptBlob {
                        hash,
                        path: path.to_owned(),
                        why: "content does not match its hash".into(),
                    });
                }
                h.set_entry_type(::tar::EntryType::Symlink);
                h.set_size(0);
                let target = std::ffi::OsStr::from_bytes(&target);
                b.append_link(&mut h, path, target).map_err(werr)?;
            }
            Kind::File => {
                let hash = e.hash.expect("files have a blob");
                h.set_entry_type(::tar::EntryType::Regular);
                h.set_size(e.size);
                let src = blobs
                    .open(&hash)
                    .map_err(|source| ReplayError::Blob { hash, source })?;
                let mut exact = Exact {
                    inner: src,
                    left: e.size,
                    hasher: horde_core::hash::BlobHasher::new(),
                    hash,
                    problem: None,
                };
                let res = b.append_data(&mut h, path, &mut exact);
                if let Some(why) = exact.problem.take() {
                    return Err(ReplayError::CorruptBlob {
                        hash,
                        path: path.to_owned(),
                        why,
                    });
                }
                res.map_err(werr)?;
            }
        }
    }
    b.into_inner().map_err(werr)
}

/// Yields exactly `left` bytes of `inner` and checks them against `hash`; a blob that is
/// shorter, longer or different sets `problem` and fails the read (the archive is cut).
struct Exact<R> {
    inner: R,
    left: u64,
    hasher: horde_core::hash::BlobHasher,
    hash: BlobHash,
    problem: Option<String>,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // Anything more would be past the recorded size; the end is where the hash is due.
            let mut probe = [0u8; 1];
            let extra = loop {
                match self.inner.read(&mut probe) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other?,
                }
            };
            let digest = std::mem::take(&mut self.hasher).finish();
            if extra != 0 {
                return Err(self.fail("longer than recorded".into()));
            }
            if digest != self.hash {
                return Err(self.fail("content does not match its hash".into()));
            }
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(self.fail(format!("{} bytes short of the recorded size", self.left)));
        }
        self.hasher.update(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

impl<R> Exact<R> {
    fn fail(&mut self, why: String) -> io::Error {
        self.problem = Some(why.clone());
        io::Error::new(io::ErrorKind::InvalidData, why)
    }
}
