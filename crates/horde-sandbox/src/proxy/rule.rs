//! Network allow-list rules: which `host[:port]` a sandboxed command may reach.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::ProxyError;

/// Longest host name accepted (DNS limit).
pub const MAX_HOST_LEN: usize = 253;
/// Longest single DNS label accepted.
pub const MAX_LABEL_LEN: usize = 63;

/// The host part of a [`NetRule`]. Always lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    /// Exactly this name, or this IP literal (IPv6 stored without brackets, canonical form).
    Exact(String),
    /// Any strict subdomain of the name; stored with the leading dot, e.g. `.github.com`.
    Subdomains(String),
}

/// One allow-list entry: `github.com`, `github.com:443`, `*.github.com`, `*.github.com:443`,
/// `127.0.0.1:8080`, `[::1]:8080`. A `None` port means any port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetRule {
    pub host: HostMatch,
    pub port: Option<u16>,
}

fn invalid(input: &str, why: impl Into<String>) -> ProxyError {
    ProxyError::InvalidRule {
        input: input.to_owned(),
        why: why.into(),
    }
}

impl NetRule {
    /// Parses one rule; see the type documentation for the accepted forms.
    pub fn parse(s: &str) -> Result<NetRule, ProxyError> {
        if s.is_empty() {
            return Err(invalid(s, "empty rule"));
        }
        if s.contains("://") {
            return Err(invalid(
                s,
                "a URL is not a rule; give host or host:port without a scheme",
            ));
        }
        if s.contains('/') {
            return Err(invalid(
                s,
                "'/' is not allowed (CIDR ranges and paths are not supported)",
            ));
        }
        if let Some(c) = s.chars().find(|c| c.is_whitespace()) {
            return Err(invalid(s, format!("contains whitespace {c:?}")));
        }
        let (host_part, port_part) = split_host_port(s)?;
        let port = match port_part {
            None => None,
            Some(p) => Some(parse_port(s, p)?),
        };
        let host = if let Some(inner) = host_part
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
        {
            let ip = Ipv6Addr::from_str(inner)
                .map_err(|_| invalid(s, format!("{inner:?} is not an IPv6 address")))?;
            HostMatch::Exact(ip.to_string())
        } else {
            parse_host_pattern(s, &host_part.to_ascii_lowercase())?
        };
        Ok(NetRule { host, port })
    }

    /// Whether a connection to `host:port`, with the host exactly as the client named it, is allowed.
    /// IP literals only ever match a rule naming that same IP.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host.strip_prefix('[').unwrap_or(host);
        let host = host.strip_suffix(']').unwrap_or(host);
        if let Ok(ip) = IpAddr::from_str(host) {
            return match &self.host {
                HostMatch::Exact(name) => IpAddr::from_str(name).is_ok_and(|r| r == ip),
                HostMatch::Subdomains(_) => false,
            };
        }
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        match &self.host {
            HostMatch::Exact(name) => *name == host,
            HostMatch::Subdomains(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        }
    }
}

/// Splits `host[:port]` / `[v6][:port]`; the host keeps its brackets.
fn split_host_port(s: &str) -> Result<(&str, Option<&str>), ProxyError> {
    if s.starts_with('[') {
        let Some(close) = s.find(']') else {
            return Err(invalid(s, "unclosed '[' in IPv6 literal"));
        };
        let (host, rest) = s.split_at(close + 1);
        return match rest {
            "" => Ok((host, None)),
            _ => match rest.strip_prefix(':') {
                Some(p) => Ok((host, Some(p))),
                None => Err(invalid(s, "unexpected text after ']'")),
            },
        };
    }
    match s.matches(':').count() {
        0 => Ok((s, None)),
        1 => {
            let (h, p) = s.split_once(':').unwrap_or((s, ""));
            Ok((h, Some(p)))
        }
        _ => Err(invalid(
            s,
            "an IPv6 address must be written in brackets, e.g. [::1]:443",
        )),
    }
}

fn parse_port(input: &str, p: &str) -> Result<u16, ProxyError> {
    if p.is_empty() {
        return Err(invalid(input, "empty port after ':'"));
    }
    if !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(input, format!("port {p:?} is not a number")));
    }
    match p.parse::<u32>() {
        Ok(0) => Err(invalid(input, "port 0 is not a valid port")),
        Ok(n) => {
            u16::try_from(n).map_err(|_| invalid(input, format!("port {n} is greater than 65535")))
        }
        Err(_) => Err(invalid(input, format!("port {p:?} is greater than 65535"))),
    }
}

fn parse_host_pattern(input: &str, host: &str) -> Result<HostMatch, ProxyError> {
    if host.is_empty() {
        return Err(invalid(input, "empty host"));
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        if suffix.contains('*') {
            return Err(invalid(
                input,
                "only a single leading '*.' wildcard is allowed",
            ));
        }
        if Ipv4Addr::from_str(suffix).is_ok() {
            return Err(invalid(
                input,
                "a wildcard cannot be applied to an IP address",
            ));
        }
        check_hostname(suffix).map_err(|why| invalid(input, why))?;
        if !suffix.contains('.') {
            return Err(invalid(
                input,
                format!("'*.{suffix}' would match a whole top-level domain"),
            ));
        }
        return Ok(HostMatch::Subdomains(format!(".{suffix}")));
    }
    if host.contains('*') {
        return Err(invalid(
            input,
            "a wildcard is only allowed as a leading '*.' (e.g. *.github.com)",
        ));
    }
    if let Ok(ip) = Ipv4Addr::from_str(host) {
        return Ok(HostMatch::Exact(ip.to_string()));
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(invalid(
            input,
            format!("{host:?} is not a valid IPv4 address"),
        ));
    }
    check_hostname(host).map_err(|why| invalid(input, why))?;
    Ok(HostMatch::Exact(host.to_owned()))
}

/// Checks a lower-case DNS name: dot-separated labels of letters, digits, '-' and '_'.
pub(crate) fn check_hostname(host: &str) -> Result<(), String> {
    if host.len() > MAX_HOST_LEN {
        return Err(format!(
            "host name is longer than {MAX_HOST_LEN} characters"
        ));
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err(format!("{host:?} has an empty label"));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(format!(
                "a label of {host:?} is longer than {MAX_LABEL_LEN} characters"
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!("invalid character {c:?} in host {host:?}"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
    }
    Ok(())
}

impl fmt::Display for NetRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostMatch::Exact(h) if h.contains(':') => write!(f, "[{h}]")?,
            HostMatch::Exact(h) => f.write_str(h)?,
            HostMatch::Subdomains(suffix) => write!(f, "*{suffix}")?,
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

impl FromStr for NetRule {
    type Err = ProxyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NetRule::parse(s)
    }
}
