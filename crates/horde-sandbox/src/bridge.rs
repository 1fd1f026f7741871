//! Inside the sandbox: a loopback TCP listener whose connections are relayed to the proxy's Unix
//! socket (bind-mounted into the sandbox). Std only, blocking threads.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Size of the copy buffer used per relay direction.
pub const RELAY_BUFFER_BYTES: usize = 256 * 1024;
/// Connections the bridge relays at once; further ones are closed immediately.
pub const MAX_BRIDGE_CONNECTIONS: usize = 512;
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Stack size of relay threads (buffers live on the heap).
pub(crate) const RELAY_STACK_BYTES: usize = 256 * 1024;

/// A stream that can be half-closed.
pub(crate) trait HalfClose: Send + 'static {
    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn write_every(&self, buf: &[u8]) -> io::Result<()>;
    fn close(&self, how: Shutdown) -> io::Result<()>;
}

impl HalfClose for TcpStream {
    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
    fn write_every(&self, buf: &[u8]) -> io::Result<()> {
        (&*self).write_all(buf)
    }
    fn close(&self, how: Shutdown) -> io::Result<()> {
        self.shutdown(how)
    }
}

impl HalfClose for UnixStream {
    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
    fn write_every(&self, buf: &[u8]) -> io::Result<()> {
        (&*self).write_all(buf)
    }
    fn close(&self, how: Shutdown) -> io::Result<()> {
        self.shutdown(how)
    }
}

/// Copies `src` to `dst` until `src` reaches end of stream, then half-closes `dst` for writing.
/// On an error both streams are shut down entirely, so the opposite direction ends too.
/// Every byte written to `dst` is added to `counter`.
pub(crate) fn pump<S: HalfClose, D: HalfClose>(src: &S, dst: &D, counter: &AtomicU64) {
    let mut buf = vec![0u8; RELAY_BUFFER_BYTES];
    loop {
        let n = match src.read_some(&mut buf) {
            Ok(0) => {
                let _ = dst.close(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if dst.write_every(&buf[..n]).is_err() {
            break;
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = src.close(Shutdown::Both);
    let _ = dst.close(Shutdown::Both);
}

/// Relays `a` ⇄ `b` until both directions have ended; `a_to_b` / `b_to_a` count the bytes.
/// `a2`/`b2` are clones of the same streams. Runs one direction on a new thread and the other on
/// the caller's.
pub(crate) fn relay<A: HalfClose, B: HalfClose>(
    a: A,
    a2: A,
    b: B,
    b2: B,
    a_to_b: Arc<AtomicU64>,
    b_to_a: &AtomicU64,
) -> io::Result<()> {
    let forward = thread::Builder::new()
        .name("relay".into())
        .stack_size(RELAY_STACK_BYTES)
        .spawn(move || pump(&a, &b, &a_to_b))?;
    pump(&b2, &a2, b_to_a);
    let _ = forward.join();
    Ok(())
}

/// Accepts TCP connections on `listener` and relays each to a new connection to the Unix socket at
/// `target`, both ways, until both sides close. Runs on its own thread; returns its handle.
pub fn spawn(listener: TcpListener, target: PathBuf) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("proxy-bridge".into())
        .spawn(move || accept_loop(&listener, &target))
}

fn accept_loop(listener: &TcpListener, target: &std::path::Path) {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let client = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        if active.load(Ordering::Acquire) >= MAX_BRIDGE_CONNECTIONS {
            drop(client);
            continue;
        }
        active.fetch_add(1, Ordering::AcqRel);
        let target = target.to_path_buf();
        let guard_count = Arc::clone(&active);
        let spawned = thread::Builder::new()
            .name("bridge-conn".into())
            .stack_size(RELAY_STACK_BYTES)
            .spawn(move || {
                let _ = bridge_one(client, &target);
                guard_count.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn bridge_one(client: TcpStream, target: &std::path::Path) -> io::Result<()> {
    let _ = client.set_nodelay(true);
    let upstream = UnixStream::connect(target)?;
    let client2 = client.try_clone()?;
    let upstream2 = upstream.try_clone()?;
    let sent = Arc::new(AtomicU64::new(0));
    let received = AtomicU64::new(0);
    // Plain reads and writes: measured faster here than splicing for this hop (a Unix
    // socket to loopback TCP), while the proxy's hop splices (`horde-bench sandbox`).
    relay(client, client2, upstream, upstream2, sent, &received)
}
