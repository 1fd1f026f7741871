//! HTTP proxying: `CONNECT host:port` tunnels and absolute-form plain-HTTP requests.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown};
use std::os::unix::net::UnixStream;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::rule::check_hostname;
use super::{HEAD_TIMEOUT, MAX_HEAD_BYTES, Protocol, Session, Target, Verdict};

/// Read size while collecting a request head.
const HEAD_CHUNK: usize = 8 * 1024;
/// Hop-by-hop headers not passed upstream on forwarded requests (lower-case).
const DROPPED_HEADERS: [&str; 4] = [
    "proxy-connection",
    "proxy-authorization",
    "connection",
    "keep-alive",
];

pub(super) fn handle(session: &Session<'_>, mut client: UnixStream, first: u8) {
    let (head_end, buf) = match read_head(&mut client, first) {
        Ok(h) => h,
        Err(why) => {
            session.malformed(Protocol::HttpForward, "", 0, &why);
            respond(
                &mut client,
                400,
                "Bad Request",
                &format!("malformed request: {why}"),
            );
            return;
        }
    };
    let head = &buf[..head_end];
    let rest = &buf[head_end..];
    let request = match Request::parse(head) {
        Ok(r) => r,
        Err((protocol, why)) => {
            session.malformed(protocol, "", 0, &why);
            respond(
                &mut client,
                400,
                "Bad Request",
                &format!("malformed request: {why}"),
            );
            return;
        }
    };
    let target = Target {
        host: request.host.clone(),
        port: request.port,
        protocol: request.protocol,
    };
    let shown = display_target(&target.host, target.port);
    let (upstream, record) = match session.decide(&target) {
        Verdict::Connected(u, r) => (u, r),
        Verdict::NotAllowed => {
            let body = format!(
                "{shown} is not in the sandbox's network allow-list; the connection was refused"
            );
            respond(&mut client, 403, "Forbidden", &body);
            return;
        }
        Verdict::Overloaded(reason) => {
            respond(&mut client, 503, "Service Unavailable", &reason);
            return;
        }
        Verdict::Unresolvable(reason) | Verdict::UpstreamFailed(reason) => {
            respond(&mut client, 502, "Bad Gateway", &reason);
            return;
        }
    };
    let first_bytes = match request.protocol {
        Protocol::HttpConnect => {
            if client
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .is_err()
            {
                record.finish();
                return;
            }
            rest.to_vec()
        }
        _ => {
            let mut out = request.rewritten_head(head);
            out.extend_from_slice(rest);
            out
        }
    };
    if !first_bytes.is_empty() {
        if (&upstream).write_all(&first_bytes).is_err() {
            let _ = upstream.shutdown(Shutdown::Both);
            record.finish();
            return;
        }
        record
            .sent
            .fetch_add(first_bytes.len() as u64, Ordering::Relaxed);
    }
    let forward = request.protocol == Protocol::HttpForward;
    session.tunnel(client, upstream, &record, forward);
}

fn display_target(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Reads until the blank line ending the head; returns the head's length (including the blank
/// line) and everything read so far.
fn read_head(client: &mut UnixStream, first: u8) -> Result<(usize, Vec<u8>), String> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut buf = vec![first];
    let mut chunk = [0u8; HEAD_CHUNK];
    loop {
        if let Some(end) = find_head_end(&buf) {
            return Ok((end, buf));
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(format!(
                "request head is larger than {MAX_HEAD_BYTES} bytes"
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "request head not received within {} s",
                HEAD_TIMEOUT.as_secs()
            ));
        }
        let _ = client.set_read_timeout(Some(left));
        match client.read(&mut chunk) {
            Ok(0) => return Err("connection closed before the request head ended".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "request head not received within {} s",
                    HEAD_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("reading the request head failed: {e}")),
        }
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    let limit = buf.len().min(MAX_HEAD_BYTES);
    buf[..limit]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
}

/// Writes a short plain-text response and closes the connection.
fn respond(client: &mut UnixStream, code: u16, text: &str, body: &str) {
    let body = format!("{body}\n");
    let msg = format!(
        "HTTP/1.1 {code} {text}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(msg.as_bytes());
    let _ = client.shutdown(Shutdown::Write);
}

struct Request {
    protocol: Protocol,
    method: String,
    host: String,
    port: u16,
    /// Origin-form target for forwarded requests.
    path: String,
    version: String,
}

impl Request {
    /// Parses the request line; the error carries the protocol to record it under.
    fn parse(head: &[u8]) -> Result<Request, (Protocol, String)> {
        let line_end = head
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or(head.len());
        let line = std::str::from_utf8(&head[..line_end]).map_err(|_| {
            (
                Protocol::HttpForward,
                "request line is not UTF-8".to_owned(),
            )
        })?;
        let shown: String = line.chars().take(200).collect();
        let bad = |why: &str| (Protocol::HttpForward, format!("{why}: {shown:?}"));
        let mut parts = line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("not an HTTP request line"));
        };
        if !version.starts_with("HTTP/1.") || method.is_empty() {
            return Err(bad("not an HTTP/1.x request line"));
        }
        if !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(bad("invalid method"));
        }
        if method.eq_ignore_ascii_case("CONNECT") {
            let (host, port) = parse_authority(target, None)
                .map_err(|why| (Protocol::HttpConnect, format!("CONNECT {target:?}: {why}")))?;
            return Ok(Request {
                protocol: Protocol::HttpConnect,
                method: method.to_owned(),
                host,
                port,
                path: String::new(),
                version: version.to_owned(),
            });
        }
        let lower = target.to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Err(bad("https:// absolute-form is not supported (use CONNECT)"));
        }
        let Some(after) = lower
            .strip_prefix("http://")
            .map(|_| &target["http://".len()..])
        else {
            return Err(bad(
                "only CONNECT or an absolute-form http:// request can be proxied",
            ));
        };
        let split = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, path) = after.split_at(split);
        let (host, port) = parse_authority(authority, Some(80)).map_err(|why| bad(&why))?;
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('/') => p.to_owned(),
            p => format!("/{p}"),
        };
        Ok(Request {
            protocol: Protocol::HttpForward,
            method: method.to_owned(),
            host,
            port,
            path,
            version: version.to_owned(),
        })
    }

    /// The head to send upstream: origin-form request line, hop-by-hop and proxy headers
    /// dropped, `Connection: close` added (one request per upstream connection).
    fn rewritten_head(&self, head: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(head.len() + 64);
        out.extend_from_slice(
            format!("{} {} {}\r\n", self.method, self.path, self.version).as_bytes(),
        );
        let mut has_host = false;
        let body = &head[..head.len().saturating_sub(2)];
        for line in body.split(|&b| b == b'\n').skip(1) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let name = line
                .iter()
                .position(|&b| b == b':')
                .map(|i| {
                    String::from_utf8_lossy(&line[..i])
                        .trim()
                        .to_ascii_lowercase()
                })
                .unwrap_or_default();
            if DROPPED_HEADERS.contains(&name.as_str()) {
                continue;
            }
            has_host |= name == "host";
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        if !has_host {
            let host = if self.port == 80 {
                display_host(&self.host)
            } else {
                display_target(&self.host, self.port)
            };
            out.extend_from_slice(format!("Host: {host}\r\n").as_bytes());
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out
    }
}

fn display_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Parses `host[:port]` / `[v6][:port]` from a request. The host is lower-cased, IPv6 without
/// brackets. A missing port takes `default`, or is an error without one.
pub(super) fn parse_authority(s: &str, default: Option<u16>) -> Result<(String, u16), String> {
    if s.contains('@') {
        return Err("credentials in the authority are not supported".into());
    }
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let Some((inner, after)) = v6.split_once(']') else {
            return Err("unclosed '[' in IPv6 literal".into());
        };
        let ip =
            Ipv6Addr::from_str(inner).map_err(|_| format!("{inner:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| "unexpected text after ']'".to_owned())?,
            ),
        };
        (ip.to_string(), port)
    } else {
        let (h, p) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        let h = h.to_ascii_lowercase();
        let h = h.strip_suffix('.').map(str::to_owned).unwrap_or(h);
        if h.is_empty() {
            return Err("empty host".into());
        }
        if Ipv4Addr::from_str(&h).is_err() {
            check_hostname(&h)?;
        }
        (h, p)
    };
    let port = match port {
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("invalid port {p:?}")),
            Ok(n) => n,
        },
        None => default.ok_or_else(|| "a port is required".to_owned())?,
    };
    Ok((host, port))
}
