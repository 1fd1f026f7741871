//! The proxy: an accept loop that plans each connection, and per connection one task that
//! pumps both directions in chunks of at most [`CHUNK`] bytes, so a cut lands mid-body.
//!
//! Invariants: a cut forwards exactly the planned number of bytes in its direction, then
//! closes both sockets with `SO_LINGER` 0 (a reset, never a clean end of stream); any error on
//! one side resets the other; a clean end of stream in one direction is passed on as a
//! half-close.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::plan::{Delays, Direction, Faults, Plan};

/// The largest chunk read and forwarded at once.
pub const CHUNK: usize = 16 * 1024;
/// Connections served at once; the accept loop waits for a free slot beyond this.
pub const MAX_CONNECTIONS: usize = 1024;
/// Pause after a failed accept (e.g. out of file descriptors) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// One line of the connection log. Every connection gets `Accepted` first, then exactly one
/// of `Refused`, `UpstreamFailed`, `Cut` or `Closed`.
#[derive(Debug)]
pub enum Event {
    Accepted {
        conn: u64,
        peer: SocketAddr,
        plan: Plan,
    },
    Refused {
        conn: u64,
    },
    UpstreamFailed {
        conn: u64,
        error: String,
    },
    /// Cut after exactly `after` bytes went through in `direction`.
    Cut {
        conn: u64,
        direction: Direction,
        after: u64,
    },
    /// Ended without a planned cut: both directions finished cleanly, or `error` (on which
    /// both sides were reset).
    Closed {
        conn: u64,
        up: u64,
        down: u64,
        error: Option<String>,
    },
    AcceptFailed {
        error: String,
    },
    /// Faults switched on or off (SIGUSR1 in the binary).
    Faults {
        on: bool,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Accepted { conn, peer, plan } => {
                write!(f, "conn {conn} accepted from {peer} (plan: {plan})")
            }
            Event::Refused { conn } => write!(f, "conn {conn} refused"),
            Event::UpstreamFailed { conn, error } => {
                write!(f, "conn {conn} upstream connect failed: {error}")
            }
            Event::Cut {
                conn,
                direction,
                after,
            } => write!(f, "conn {conn} cut after {after} bytes {direction}"),
            Event::Closed {
                conn,
                up,
                down,
                error,
            } => {
                write!(f, "conn {conn} closed (up {up} bytes, down {down} bytes)")?;
                match error {
                    Some(error) => write!(f, ": {error}"),
                    None => Ok(()),
                }
            }
            Event::AcceptFailed { error } => write!(f, "accept failed: {error}"),
            Event::Faults { on: true } => f.write_str("faults on"),
            Event::Faults { on: false } => f.write_str("faults off"),
        }
    }
}

/// Where events go: the binary writes them to stderr, tests collect them.
pub type Sink = Arc<dyn Fn(Event) + Send + Sync>;

/// Turns faults (refusals and cuts) on and off for connections accepted from then on.
#[derive(Clone, Debug)]
pub struct FaultSwitch(Arc<AtomicBool>);

impl FaultSwitch {
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::SeqCst);
    }

    /// Flips the switch and answers the new state.
    pub fn toggle(&self) -> bool {
        !self.0.fetch_xor(true, Ordering::SeqCst)
    }
}

pub struct Proxy {
    listener: TcpListener,
    upstream: Arc<str>,
    faults: Faults,
    switch: FaultSwitch,
}

impl Proxy {
    /// Binds `listen`; connections will go to `upstream` (`host:port`, resolved per
    /// connection). Faults start on.
    pub async fn bind(listen: SocketAddr, upstream: &str, faults: Faults) -> io::Result<Proxy> {
        Ok(Proxy {
            listener: TcpListener::bind(listen).await?,
            upstream: upstream.into(),
            faults,
            switch: FaultSwitch(Arc::new(AtomicBool::new(true))),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn switch(&self) -> FaultSwitch {
        self.switch.clone()
    }

    /// Serves until the future is dropped. Connections are numbered from 1 in accept order;
    /// connection `n` follows `faults.plan(n)`.
    pub async fn run(self, sink: Sink) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut conn = 0u64;
        loop {
            let slot = Arc::clone(&slots)
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let (client, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    sink(Event::AcceptFailed {
                        error: error.to_string(),
                    });
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            conn += 1;
            let mut plan = self.faults.plan(conn);
            if !self.switch.is_on() {
                plan = plan.without_faults();
            }
            sink(Event::Accepted { conn, peer, plan });
            let connection = Connection {
                conn,
                plan,
                faults: self.faults,
                upstream: Arc::clone(&self.upstream),
                sink: Arc::clone(&sink),
            };
            tokio::spawn(async move {
                connection.serve(client).await;
                drop(slot);
            });
        }
    }
}

struct Connection {
    conn: u64,
    plan: Plan,
    faults: Faults,
    upstream: Arc<str>,
    sink: Sink,
}

/// How one direction ended.
enum Flow {
    /// End of stream read and passed on as a half-close.
    Eof,
    /// The planned number of bytes went through.
    Cut,
    Failed(String),
}

impl Connection {
    async fn serve(self, mut client: TcpStream) {
        let conn = self.conn;
        if self.plan.refuse {
            reset(&client);
            (self.sink)(Event::Refused { conn });
            return;
        }
        let mut server = match TcpStream::connect(&*self.upstream).await {
            Ok(server) => server,
            Err(error) => {
                reset(&client);
                (self.sink)(Event::UpstreamFailed {
                    conn,
                    error: format!("{}: {error}", self.upstream),
                });
                return;
            }
        };
        // Forward each chunk as soon as it arrives, so the bytes on the wire match the cut.
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);

        let up = AtomicU64::new(0);
        let down = AtomicU64::new(0);
        let ending = {
            let (mut client_read, mut client_write) = client.split();
            let (mut server_read, mut server_write) = server.split();
            let pump_up = pump(
                &mut client_read,
                &mut server_write,
                Direction::Up,
                self.plan.cut_in(Direction::Up),
                self.faults.delays(&self.plan, Direction::Up),
                &up,
            );
            let pump_down = pump(
                &mut server_read,
                &mut client_write,
                Direction::Down,
                self.plan.cut_in(Direction::Down),
                self.faults.delays(&self.plan, Direction::Down),
                &down,
            );
            tokio::pin!(pump_up, pump_down);
            let (mut up_done, mut down_done) = (false, false);
            loop {
                let (direction, flow) = tokio::select! {
                    flow = &mut pump_up, if !up_done => (Direction::Up, flow),
                    flow = &mut pump_down, if !down_done => (Direction::Down, flow),
                };
                match flow {
                    Flow::Eof => match direction {
                        Direction::Up => up_done = true,
                        Direction::Down => down_done = true,
                    },
                    Flow::Cut => break Some((direction, None)),
                    Flow::Failed(error) => break Some((direction, Some(error))),
                }
                if up_done && down_done {
                    break None;
                }
            }
        };
        if ending.is_some() {
            reset(&client);
            reset(&server);
        }
        drop((client, server));
        let (up, down) = (up.into_inner(), down.into_inner());
        let event = match ending {
            None => Event::Closed {
                conn,
                up,
                down,
                error: None,
            },
            Some((direction, None)) => Event::Cut {
                conn,
                direction,
                after: match direction {
                    Direction::Up => up,
                    Direction::Down => down,
                },
            },
            Some((_, Some(error))) => Event::Closed {
                conn,
                up,
                down,
                error: Some(error),
            },
        };
        (self.sink)(event);
    }
}

/// Copies `from` to `to` in chunks of at most [`CHUNK`] bytes until end of stream, an error,
/// or `cut_after` bytes went through.
async fn pump(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    direction: Direction,
    cut_after: Option<u64>,
    mut delays: Delays,
    forwarded: &AtomicU64,
) -> Flow {
    let (source, target) = match direction {
        Direction::Up => ("client", "upstream"),
        Direction::Down => ("upstream", "client"),
    };
    let mut buf = vec![0u8; CHUNK];
    loop {
        let read = match from.read(&mut buf).await {
            Ok(0) => {
                return match to.shutdown().await {
                    Ok(()) => Flow::Eof,
                    Err(error) => Flow::Failed(format!("half-close to {target}: {error}")),
                };
            }
            Ok(read) => read,
            Err(error) => return Flow::Failed(format!("read from {source}: {error}")),
        };
        let sent = forwarded.load(Ordering::Relaxed);
        let (len, cut) = match cut_after {
            Some(limit) if sent + read as u64 >= limit => {
                let left = usize::try_from(limit - sent).expect("left < read, a usize");
                (left, true)
            }
            _ => (read, false),
        };
        if len > 0 {
            if let Some(delay) = delays.next() {
                tokio::time::sleep(delay).await;
            }
            if let Err(error) = to.write_all(&buf[..len]).await {
                return Flow::Failed(format!("write to {target}: {error}"));
            }
            forwarded.fetch_add(len as u64, Ordering::Relaxed);
        }
        debug_assert!(cut_after.is_none_or(|limit| forwarded.load(Ordering::Relaxed) <= limit));
        if cut {
            return Flow::Cut;
        }
    }
}

/// Makes the coming close of `stream` a reset (RST) instead of an orderly end (FIN).
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}
