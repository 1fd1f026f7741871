//! The filtering proxy and the bridge, over real sockets, driven by the real `curl`.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use horde_sandbox::bridge;
use horde_sandbox::proxy::{Connection, HostMatch, NetRule, Protocol, Proxy, ProxyError};

const BODY: &str = "hello from the origin server\n";
const CURL: &str = "/usr/bin/curl";

/// A tiny HTTP/1.1 origin: answers every request with `BODY` and remembers request heads.
struct Origin {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

fn origin() -> Origin {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&heads);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let seen = Arc::clone(&seen);
            thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
                    BODY.len()
                );
                let _ = stream.write_all(reply.as_bytes());
                let _ = stream.shutdown(Shutdown::Write);
            });
        }
    });
    Origin { port, heads }
}

/// A proxy on a socket in a temp dir plus a bridge on a loopback port pointing at it.
struct Rig {
    proxy: Proxy,
    bridge_port: u16,
    // Last: the proxy is stopped before its socket's directory goes.
    _dir: tempfile::TempDir,
}

fn rig(rules: &[&str]) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("proxy.sock");
    let rules = rules.iter().map(|r| NetRule::parse(r).unwrap()).collect();
    let proxy = Proxy::start(rules, &socket).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let bridge_port = listener.local_addr().unwrap().port();
    bridge::spawn(listener, socket).unwrap();
    Rig {
        _dir: dir,
        proxy,
        bridge_port,
    }
}

struct CurlOutcome {
    success: bool,
    code: Option<i32>,
    stdout: String,
}

fn curl(args: &[&str]) -> CurlOutcome {
    let out = Command::new(CURL)
        .args(["-s", "--max-time", "20"])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    CurlOutcome {
        success: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// Waits for the single record to settle (bytes counted both ways when allowed).
fn only_record(proxy: &Proxy) -> Connection {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let records = proxy.connections();
        let settled = records.len() == 1
            && (!records[0].allowed
                || (records[0].bytes_sent > 0 && records[0].bytes_received > 0));
        if settled || Instant::now() > deadline {
            assert_eq!(records.len(), 1, "records: {records:?}");
            return records[0].clone();
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn http_forward_allowed_rewrites_to_origin_form() {
    let origin = origin();
    let rule = format!("127.0.0.1:{}", origin.port);
    let rig = rig(&[&rule]);
    let out = curl(&[
        "--proxy",
        &format!("http://127.0.0.1:{}", rig.bridge_port),
        "-H",
        "Proxy-Authorization: Basic c2VjcmV0",
        &format!("http://127.0.0.1:{}/some/path?q=1", origin.port),
    ]);
    assert!(out.success, "curl failed: {:?}", out.code);
    assert_eq!(out.stdout, BODY);
    let record = only_record(&rig.proxy);
    assert_eq!(record.host, "127.0.0.1");
    assert_eq!(record.port, origin.port);
    assert_eq!(record.protocol, Protocol::HttpForward);
    assert!(record.allowed);
    assert_eq!(record.reason, rule);
    assert!(
        record.bytes_sent > 0 && record.bytes_received > 0,
        "{record:?}"
    );
    let heads = origin.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1);
    let head = heads[0].to_ascii_lowercase();
    assert!(
        head.starts_with("get /some/path?q=1 http/1.1\r\n"),
        "{head}"
    );
    assert!(!head.contains("proxy-connection"), "{head}");
    assert!(!head.contains("proxy-authorization"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let all = rig.proxy.stop();
    assert_eq!(all.len(), 1);
}

#[test]
fn http_forward_refused_is_403() {
    let origin = origin();
    let rig = rig(&["127.0.0.1:1", "example.com"]);
    let out = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--proxy",
        &format!("http://127.0.0.1:{}", rig.bridge_port),
        &format!("http://127.0.0.1:{}/", origin.port),
    ]);
    assert_eq!(out.stdout, "403");
    let record = only_record(&rig.proxy);
    assert_eq!(record.host, "127.0.0.1");
    assert_eq!(record.port, origin.port);
    assert_eq!(record.protocol, Protocol::HttpForward);
    assert!(!record.allowed);
    assert_eq!(record.reason, "not in the network allow-list");
    assert_eq!(record.bytes_sent + record.bytes_received, 0);
    assert!(origin.heads.lock().unwrap().is_empty());
}

#[test]
fn connect_tunnel_allowed() {
    let origin = origin();
    let rule = format!("127.0.0.1:{}", origin.port);
    let rig = rig(&[&rule]);
    let out = curl(&[
        "--proxytunnel",
        "--proxy",
        &format!("http://127.0.0.1:{}", rig.bridge_port),
        &format!("http://127.0.0.1:{}/", origin.port),
    ]);
    assert!(out.success, "curl failed: {:?}", out.code);
    assert_eq!(out.stdout, BODY);
    let record = only_record(&rig.proxy);
    assert_eq!(record.host, "127.0.0.1");
    assert_eq!(record.port, origin.port);
    assert_eq!(record.protocol, Protocol::HttpConnect);
    assert!(record.allowed);
    assert_eq!(record.reason, rule);
    assert!(
        record.bytes_sent > 0 && record.bytes_received > 0,
        "{record:?}"
    );
    // The tunnel carries the request untouched (origin-form, as curl sends it inside).
    let heads = origin.heads.lock().unwrap().clone();
    assert!(heads[0].starts_with("GET / HTTP/1.1\r\n"), "{heads:?}");
}

#[test]
fn connect_tunnel_refused() {
    let origin = origin();
    let rig = rig(&["*.example.com"]);
    let out = curl(&[
        "-p",
        "--proxy",
        &format!("http://127.0.0.1:{}", rig.bridge_port),
        &format!("http://127.0.0.1:{}/", origin.port),
    ]);
    assert!(!out.success);
    assert_ne!(out.stdout, BODY);
    let record = only_record(&rig.proxy);
    assert_eq!(record.host, "127.0.0.1");
    assert_eq!(record.port, origin.port);
    assert_eq!(record.protocol, Protocol::HttpConnect);
    assert!(!record.allowed);
    assert_eq!(record.reason, "not in the network allow-list");
    assert!(origin.heads.lock().unwrap().is_empty());
}

#[test]
fn connect_refusal_body_names_the_target() {
    let rig = rig(&["example.com:443"]);
    let mut s = TcpStream::connect(("127.0.0.1", rig.bridge_port)).unwrap();
    s.write_all(b"CONNECT github.com:443 HTTP/1.1\r\nHost: github.com:443\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{reply}");
    assert!(reply.contains("github.com:443"), "{reply}");
    assert!(reply.contains("allow-list"), "{reply}");
}

#[test]
fn socks5h_hostname_allowed() {
    let origin = origin();
    let rule = format!("localhost:{}", origin.port);
    let rig = rig(&[&rule]);
    let out = curl(&[
        "--proxy",
        &format!("socks5h://127.0.0.1:{}", rig.bridge_port),
        &format!("http://localhost:{}/", origin.port),
    ]);
    assert!(out.success, "curl failed: {:?}", out.code);
    assert_eq!(out.stdout, BODY);
    let record = only_record(&rig.proxy);
    assert_eq!(record.host, "localhost");
    assert_eq!(record.port, origin.port);
    assert_eq!(record.protocol, Protocol::Socks5);
    assert!(record.allowed);
    assert_eq!(record.reason, rule);
    assert!(
        record.bytes_sent > 0 && record.bytes_received > 0,
        "{record:?}"
    );
}

#[test]
fn socks5h_hostname_refused() {
    let origin = origin();
    let rig = rig(&[&format!("localhost:{}", origin.port + 1)]);
    let out = curl(&[
        "--proxy",
        &format!("socks5h://127.0.0.1:{}", rig.bridge_port),
        &format!("http://localhost:{}/", origin.port),
    ]);
    assert!(!out.success);
    let record = only_record(&rig.proxy);
    assert_eq!(record.host, "localhost");
    assert_eq!(record.port, origin.port);
    assert_eq!(record.protocol, Protocol::Socks5);
    assert!(!record.allowed);
    assert_eq!(record.reason, "not in the network allow-list");
}

#[test]
fn socks5_ip_literal_needs_a_rule_naming_the_ip() {
    // Plain socks5:// makes curl resolve locally and send an IP; a rule naming `localhost`
    // must not admit it.
    let origin = origin();
    let rig = rig(&[&format!("localhost:{}", origin.port)]);
    let out = curl(&[
        "--proxy",
        &format!("socks5://127.0.0.1:{}", rig.bridge_port),
        &format!("http://127.0.0.1:{}/", origin.port),
    ]);
    assert!(!out.success);
    let record = only_record(&rig.proxy);
    assert_eq!(record.host, "127.0.0.1");
    assert!(!record.allowed);
}

#[test]
fn unsupported_requests_are_400_and_recorded() {
    let rig = rig(&["localhost"]);
    for request in [
        "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "GET https://localhost/ HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "garbage\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", rig.bridge_port)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 400 "), "{request:?} → {reply}");
    }
    let records = rig.proxy.stop();
    assert_eq!(records.len(), 3, "{records:?}");
    for r in &records {
        assert!(!r.allowed);
        assert!(r.reason.starts_with("malformed request: "), "{r:?}");
    }
}

#[test]
fn upstream_failure_is_502() {
    // Find a port with nothing listening.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let rig = rig(&[&format!("127.0.0.1:{port}")]);
    let out = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--proxy",
        &format!("http://127.0.0.1:{}", rig.bridge_port),
        &format!("http://127.0.0.1:{port}/"),
    ]);
    assert_eq!(out.stdout, "502");
    let record = only_record(&rig.proxy);
    assert!(!record.allowed);
    assert!(record.reason.starts_with("upstream refused"), "{record:?}");
}

#[test]
fn start_refuses_existing_path_and_stop_removes_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("p.sock");
    std::fs::write(&socket, b"").unwrap();
    assert!(matches!(
        Proxy::start(vec![], &socket),
        Err(ProxyError::SocketExists { .. })
    ));
    std::fs::remove_file(&socket).unwrap();
    let proxy = Proxy::start(vec![], &socket).unwrap();
    assert_eq!(proxy.socket_path(), socket.as_path());
    assert!(socket.exists());
    let started = Instant::now();
    assert!(proxy.stop().is_empty());
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(!Path::new(&socket).exists());
}

#[test]
fn stop_closes_an_idle_tunnel() {
    let origin = origin();
    let rig = rig(&[&format!("127.0.0.1:{}", origin.port)]);
    let mut s = TcpStream::connect(("127.0.0.1", rig.bridge_port)).unwrap();
    let req = format!(
        "CONNECT 127.0.0.1:{0} HTTP/1.1\r\nHost: 127.0.0.1:{0}\r\n\r\n",
        origin.port
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 39];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf[..], b"HTTP/1.1 200 Connection established\r\n\r\n");
    // Leave the tunnel open and idle; stop must not hang on it.
    let started = Instant::now();
    let records = rig.proxy.stop();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(records.len(), 1);
    assert!(records[0].allowed);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
}

#[test]
fn concurrency_limit_refuses_with_503_and_records_it() {
    use horde_sandbox::proxy::MAX_CONCURRENT_CONNECTIONS;
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("p.sock");
    let proxy = Proxy::start(vec![NetRule::parse("127.0.0.1:1").unwrap()], &socket).unwrap();
    // Fill every slot with connections that have not sent anything yet.
    let idle: Vec<UnixStream> = (0..MAX_CONCURRENT_CONNECTIONS)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    // Let the accept thread take them all.
    let deadline = Instant::now() + Duration::from_secs(5);
    let reply = loop {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.write_all(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        if reply.starts_with("HTTP/1.1 503 ") || Instant::now() > deadline {
            break reply;
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
    let overloaded: Vec<Connection> = proxy
        .connections()
        .into_iter()
        .filter(|c| c.reason.starts_with("too many concurrent connections"))
        .collect();
    assert_eq!(overloaded.len(), 1, "{overloaded:?}");
    assert_eq!(overloaded[0].protocol, Protocol::HttpConnect);
    assert!(!overloaded[0].allowed);
    drop(idle);
    proxy.stop();
}

#[test]
fn connection_serializes_with_kebab_protocol() {
    let c = Connection {
        host: "github.com".into(),
        port: 443,
        protocol: Protocol::HttpConnect,
        allowed: true,
        reason: "github.com:443".into(),
        bytes_sent: 1,
        bytes_received: 2,
        duration_ms: 3,
    };
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["protocol"], "http-connect");
    assert_eq!(
        serde_json::to_value(Protocol::Socks5).unwrap(),
        serde_json::json!("socks5")
    );
}

// ---------- NetRule ----------

#[test]
fn rule_accepted_forms_round_trip() {
    for s in [
        "github.com",
        "github.com:443",
        "*.github.com",
        "*.github.com:443",
        "127.0.0.1:8080",
        "[::1]:8080",
        "[::1]",
        "localhost",
        "a-b.c_d.example",
    ] {
        let rule = NetRule::parse(s).unwrap();
        assert_eq!(rule.to_string(), s);
        assert_eq!(s.parse::<NetRule>().unwrap(), rule);
    }
    let upper = NetRule::parse("GitHub.COM:443").unwrap();
    assert_eq!(upper.host, HostMatch::Exact("github.com".into()));
    assert_eq!(upper.port, Some(443));
    let sub = NetRule::parse("*.github.com").unwrap();
    assert_eq!(sub.host, HostMatch::Subdomains(".github.com".into()));
    assert_eq!(sub.port, None);
    let v6 = NetRule::parse("[0:0::1]:80").unwrap();
    assert_eq!(v6.to_string(), "[::1]:80");
}

#[test]
fn rule_refused_forms() {
    for s in [
        "",
        "*",
        "*.*",
        "*.com",
        "*.com:443",
        "**",
        "**.github.com",
        "git*.com",
        "github.*.com",
        "*github.com",
        "github.com:0",
        "github.com:65536",
        "github.com:99999999999",
        "github.com:",
        "github.com:http",
        "git hub.com",
        " github.com",
        "github.com ",
        "git!hub.com",
        "10.0.0.0/8",
        "https://github.com",
        "http://github.com:80",
        "::1",
        "[::1",
        "[not-v6]:80",
        "1.2.3",
        "*.10.0.0.1",
        "-github.com",
        "github..com",
        ".github.com",
    ] {
        let err = NetRule::parse(s).expect_err(s);
        let msg = err.to_string();
        assert!(msg.contains(&format!("{s:?}")), "{s:?}: {msg}");
    }
}

#[test]
fn rule_matching() {
    let exact = NetRule::parse("github.com").unwrap();
    assert!(exact.matches("github.com", 443));
    assert!(exact.matches("GitHub.com.", 80));
    assert!(!exact.matches("api.github.com", 443));
    assert!(!exact.matches("evilgithub.com", 443));

    let port = NetRule::parse("github.com:443").unwrap();
    assert!(port.matches("github.com", 443));
    assert!(!port.matches("github.com", 80));

    let sub = NetRule::parse("*.github.com:443").unwrap();
    assert!(sub.matches("api.github.com", 443));
    assert!(sub.matches("a.b.github.com", 443));
    assert!(!sub.matches("github.com", 443));
    assert!(!sub.matches("evilgithub.com", 443));
    assert!(!sub.matches("api.github.com", 80));

    let ip = NetRule::parse("127.0.0.1:8080").unwrap();
    assert!(ip.matches("127.0.0.1", 8080));
    assert!(!ip.matches("localhost", 8080));
    assert!(!ip.matches("127.0.0.2", 8080));

    let v6 = NetRule::parse("[::1]:8080").unwrap();
    assert!(v6.matches("::1", 8080));
    assert!(v6.matches("[::1]", 8080));
    assert!(v6.matches("0:0:0:0:0:0:0:1", 8080));
    assert!(!v6.matches("::2", 8080));

    // A name rule never admits an IP literal.
    let local = NetRule::parse("localhost").unwrap();
    assert!(!local.matches("127.0.0.1", 80));
    assert!(
        !NetRule::parse("*.example.com")
            .unwrap()
            .matches("1.2.3.4", 80)
    );
}
