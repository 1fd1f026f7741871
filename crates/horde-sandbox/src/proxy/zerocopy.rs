//! Socket-to-socket copying with `splice(2)` through a pipe, so relayed bytes stay in the kernel.

use std::io;
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::pipe::{PipeFlags, SpliceFlags, fcntl_setpipe_size, pipe_with, splice};

use crate::bridge::{HalfClose, pump};

/// Capacity requested for the intermediate pipe, and the most moved per `splice` call.
pub const PIPE_BYTES: usize = 1024 * 1024;
/// Linux's default pipe capacity, assumed when resizing the pipe is refused.
const DEFAULT_PIPE_BYTES: usize = 64 * 1024;

/// Like [`pump`], but with `splice`; falls back to [`pump`] when the kernel refuses splicing
/// before any byte has moved.
pub(crate) fn splice_pump<S, D>(src: &S, dst: &D, counter: &AtomicU64)
where
    S: HalfClose + AsFd,
    D: HalfClose + AsFd,
{
    let Ok((pipe_r, pipe_w)) = pipe_with(PipeFlags::CLOEXEC) else {
        return pump(src, dst, counter);
    };
    let chunk = fcntl_setpipe_size(&pipe_w, PIPE_BYTES).unwrap_or(DEFAULT_PIPE_BYTES);
    let mut moved_any = false;
    loop {
        let n = match splice(src, None, &pipe_w, None, chunk, SpliceFlags::MOVE) {
            Ok(0) => {
                let _ = dst.close(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::INVAL) if !moved_any => return pump(src, dst, counter),
            Err(_) => break,
        };
        moved_any = true;
        let mut left = n;
        while left > 0 {
            match splice(&pipe_r, None, dst, None, left, SpliceFlags::MOVE) {
                Ok(0) => break,
                Ok(m) => {
                    left -= m;
                    counter.fetch_add(m as u64, Ordering::Relaxed);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => break,
            }
        }
        if left > 0 {
            break;
        }
    }
    let _ = src.close(Shutdown::Both);
    let _ = dst.close(Shutdown::Both);
}

/// Relays client ⇄ upstream with [`splice_pump`] in each direction.
pub(crate) fn relay<A, B>(
    a: A,
    a2: A,
    b: B,
    b2: B,
    a_to_b: std::sync::Arc<AtomicU64>,
    b_to_a: &AtomicU64,
    end_with_b: bool,
) -> io::Result<()>
where
    A: HalfClose + AsFd,
    B: HalfClose + AsFd,
{
    let forward = std::thread::Builder::new()
        .name("relay".into())
        .stack_size(crate::bridge::RELAY_STACK_BYTES)
        .spawn(move || splice_pump(&a, &b, &a_to_b))?;
    splice_pump(&b2, &a2, b_to_a);
    if end_with_b {
        let _ = a2.close(Shutdown::Both);
        let _ = b2.close(Shutdown::Both);
    }
    let _ = forward.join();
    Ok(())
}
