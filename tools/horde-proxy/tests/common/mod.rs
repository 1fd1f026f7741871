//! Real TCP upstreams and clients shared by the proxy's tests.
#![allow(dead_code)] // each test file uses a part

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Upper bound on any wait in a test, so a bug fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// `len` bytes of a deterministic, non-repeating-looking pattern (xorshift).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a loopback port");
    let addr = listener.local_addr().expect("bound address");
    (listener, addr)
}

/// Echoes every connection back until the client half-closes; counts accepted connections.
pub async fn echo_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let (listener, addr) = listener().await;
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                if tokio::io::copy(&mut read, &mut write).await.is_ok() {
                    let _ = write.shutdown().await;
                }
            });
        }
    });
    (addr, accepted)
}

/// How much one upstream connection read, and how its stream ended.
#[derive(Debug)]
pub struct Received {
    pub bytes: Vec<u8>,
    pub ended: io::Result<()>,
}

/// Reads every connection to its end and reports what arrived.
pub async fn sink_server() -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
    let (listener, addr) = listener().await;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (bytes, ended) = read_all(&mut stream).await;
                let _ = tx.send(Received { bytes, ended });
            });
        }
    });
    (addr, rx)
}

/// Like an HTTP server: reads the request (up to the client's half-close), then sends `body`
/// and closes cleanly. Answering only after the request keeps a cut from racing the connect.
pub async fn source_server(body: Arc<Vec<u8>>) -> SocketAddr {
    let (listener, addr) = listener().await;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = Arc::clone(&body);
            tokio::spawn(async move {
                if read_all(&mut stream).await.1.is_err() {
                    return;
                }
                if stream.write_all(&body).await.is_ok() {
                    let _ = stream.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Reads to the end of the stream, keeping what arrived before an error.
pub async fn read_all(stream: &mut TcpStream) -> (Vec<u8>, io::Result<()>) {
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return (bytes, Ok(())),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(error) => return (bytes, Err(error)),
        }
    }
}

/// Sends `body` and half-closes while reading the answer; the first error wins. A reset can
/// arrive before the connect completes, so it counts too.
pub async fn exchange(addr: SocketAddr, body: &[u8]) -> (Vec<u8>, io::Result<()>) {
    let mut stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(error) => return (Vec::new(), Err(error)),
    };
    let (mut read, mut write) = stream.split();
    let send = async {
        write.write_all(body).await?;
        write.shutdown().await
    };
    let receive = async {
        let mut bytes = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) => return (bytes, Ok(())),
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(error) => return (bytes, Err(error)),
            }
        }
    };
    let (sent, (bytes, received)) = tokio::join!(send, receive);
    (bytes, sent.and(received))
}

/// A reset as a client sees it: on a read, or on a write after the reset arrived.
pub fn is_reset(result: &io::Result<()>) -> bool {
    matches!(
        result.as_ref().map_err(io::Error::kind),
        Err(io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe)
    )
}
