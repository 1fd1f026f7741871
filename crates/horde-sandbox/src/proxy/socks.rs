//! SOCKS5 (RFC 1928), no authentication, `CONNECT` only.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown};
use std::os::unix::net::UnixStream;

use super::rule::check_hostname;
use super::{Protocol, Session, Target, Verdict};

/// Protocol version byte; also how the listener recognises a SOCKS5 client.
pub(super) const VERSION: u8 = 0x05;
const METHOD_NO_AUTH: u8 = 0x00;
const METHOD_NONE_ACCEPTABLE: u8 = 0xFF;
const CMD_CONNECT: u8 = 0x01;
const ATYP_IPV4: u8 = 0x01;
const ATYP_DOMAIN: u8 = 0x03;
const ATYP_IPV6: u8 = 0x04;
const REP_SUCCEEDED: u8 = 0x00;
const REP_GENERAL_FAILURE: u8 = 0x01;
const REP_NOT_ALLOWED: u8 = 0x02;
const REP_HOST_UNREACHABLE: u8 = 0x04;
const REP_CONNECTION_REFUSED: u8 = 0x05;
const REP_COMMAND_NOT_SUPPORTED: u8 = 0x07;
const REP_ADDRESS_TYPE_NOT_SUPPORTED: u8 = 0x08;

fn reply(client: &mut UnixStream, code: u8) -> io::Result<()> {
    // Bound address 0.0.0.0:0.
    client.write_all(&[VERSION, code, 0x00, ATYP_IPV4, 0, 0, 0, 0, 0, 0])
}

fn refuse(client: &mut UnixStream, code: u8) {
    let _ = reply(client, code);
    let _ = client.shutdown(Shutdown::Write);
}

/// Handles a client whose first byte (the version) has already been read.
pub(super) fn handle(session: &Session<'_>, mut client: UnixStream) {
    let bad = |why: &str| session.malformed(Protocol::Socks5, "", 0, why);
    // Greeting: NMETHODS, METHODS.
    let mut n = [0u8; 1];
    if client.read_exact(&mut n).is_err() {
        return bad("SOCKS5 greeting truncated");
    }
    let mut methods = vec![0u8; usize::from(n[0])];
    if client.read_exact(&mut methods).is_err() {
        return bad("SOCKS5 greeting truncated");
    }
    if !methods.contains(&METHOD_NO_AUTH) {
        let _ = client.write_all(&[VERSION, METHOD_NONE_ACCEPTABLE]);
        let _ = client.shutdown(Shutdown::Write);
        return bad("SOCKS5 client does not offer the no-authentication method");
    }
    if client.write_all(&[VERSION, METHOD_NO_AUTH]).is_err() {
        return;
    }
    // Request: VER CMD RSV ATYP.
    let mut req = [0u8; 4];
    if client.read_exact(&mut req).is_err() {
        return bad("SOCKS5 request truncated");
    }
    if req[0] != VERSION {
        refuse(&mut client, REP_GENERAL_FAILURE);
        return bad(&format!("SOCKS5 request has version {:#04x}", req[0]));
    }
    let host = match read_address(&mut client, req[3]) {
        Ok(h) => h,
        Err(AddressError::Io) => return bad("SOCKS5 request truncated"),
        Err(AddressError::Type(t)) => {
            refuse(&mut client, REP_ADDRESS_TYPE_NOT_SUPPORTED);
            return bad(&format!("unsupported SOCKS5 address type {t:#04x}"));
        }
        Err(AddressError::Name(why)) => {
            refuse(&mut client, REP_GENERAL_FAILURE);
            return bad(&why);
        }
    };
    let mut port = [0u8; 2];
    if client.read_exact(&mut port).is_err() {
        return bad("SOCKS5 request truncated");
    }
    let port = u16::from_be_bytes(port);
    if req[1] != CMD_CONNECT {
        refuse(&mut client, REP_COMMAND_NOT_SUPPORTED);
        return session.malformed(
            Protocol::Socks5,
            &host,
            port,
            &format!("unsupported SOCKS5 command {:#04x} (only CONNECT)", req[1]),
        );
    }
    if port == 0 {
        refuse(&mut client, REP_GENERAL_FAILURE);
        return session.malformed(Protocol::Socks5, &host, port, "port 0");
    }
    let target = Target {
        host,
        port,
        protocol: Protocol::Socks5,
    };
    let (upstream, record) = match session.decide(&target) {
        Verdict::Connected(u, r) => (u, r),
        Verdict::NotAllowed => return refuse(&mut client, REP_NOT_ALLOWED),
        Verdict::Overloaded(_) => return refuse(&mut client, REP_GENERAL_FAILURE),
        Verdict::Unresolvable(_) => return refuse(&mut client, REP_HOST_UNREACHABLE),
        Verdict::UpstreamFailed(_) => return refuse(&mut client, REP_CONNECTION_REFUSED),
    };
    if reply(&mut client, REP_SUCCEEDED).is_err() {
        let _ = upstream.shutdown(Shutdown::Both);
        record.finish();
        return;
    }
    session.tunnel(client, upstream, &record, false);
}

enum AddressError {
    Io,
    Type(u8),
    Name(String),
}

fn read_address(client: &mut UnixStream, atyp: u8) -> Result<String, AddressError> {
    match atyp {
        ATYP_IPV4 => {
            let mut a = [0u8; 4];
            client.read_exact(&mut a).map_err(|_| AddressError::Io)?;
            Ok(Ipv4Addr::from(a).to_string())
        }
        ATYP_IPV6 => {
            let mut a = [0u8; 16];
            client.read_exact(&mut a).map_err(|_| AddressError::Io)?;
            Ok(Ipv6Addr::from(a).to_string())
        }
        ATYP_DOMAIN => {
            let mut len = [0u8; 1];
            client.read_exact(&mut len).map_err(|_| AddressError::Io)?;
            let mut name = vec![0u8; usize::from(len[0])];
            client.read_exact(&mut name).map_err(|_| AddressError::Io)?;
            let name = String::from_utf8(name)
                .map_err(|_| AddressError::Name("SOCKS5 host name is not UTF-8".into()))?;
            let lower = name.to_ascii_lowercase();
            let lower = lower.strip_suffix('.').unwrap_or(&lower).to_owned();
            if lower.parse::<std::net::IpAddr>().is_err() {
                check_hostname(&lower)
                    .map_err(|why| AddressError::Name(format!("SOCKS5 host name: {why}")))?;
            }
            Ok(lower)
        }
        other => Err(AddressError::Type(other)),
    }
}
