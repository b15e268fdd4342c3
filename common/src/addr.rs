//! Network addresses as users write them: `host:port`, optionally behind `http://` or
//! `https://`. The seed's README passes both spellings, so both must work verbatim.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A `host:port` address, remembered with the scheme the user gave (if any).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr {
    tls: bool,
    host: String,
    port: u16,
}

/// Why an address was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddrError {
    #[error("empty address: expected host:port, e.g. 127.0.0.1:10240")]
    Empty,
    #[error("address `{0}` has no port: expected host:port, e.g. 127.0.0.1:10240")]
    MissingPort(String),
    #[error("address `{0}` has an invalid port: expected a number from 0 to 65535")]
    BadPort(String),
    #[error("address `{0}` has an unsupported scheme: use host:port, http:// or https://")]
    BadScheme(String),
    #[error("address `{0}` has a path: expected only host:port")]
    HasPath(String),
    #[error("address `{0}` has an invalid host: expected a name or IP address, without spaces")]
    BadHost(String),
}

impl Addr {
    /// Builds an address from its parts.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self { tls: false, host: host.into(), port }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// True when the user wrote `https://`.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// `host:port`, without scheme; IPv6 hosts keep their brackets.
    pub fn host_port(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The URL a gRPC channel connects to.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }

    /// Resolves to socket addresses (for binding listeners).
    pub fn to_socket_addrs(&self) -> std::io::Result<Vec<std::net::SocketAddr>> {
        use std::net::ToSocketAddrs;
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        Ok((host, self.port).to_socket_addrs()?.collect())
    }
}

impl FromStr for Addr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(AddrError::Empty);
        }
        let (tls, rest) = if let Some(rest) = s.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = s.strip_prefix("https://") {
            (true, rest)
        } else if s.contains("://") {
            return Err(AddrError::BadScheme(s.to_string()));
        } else {
            (false, s)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(AddrError::HasPath(s.to_string()));
        }
        let (host, port) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains(']') => (&rest[..i], &rest[i + 1..]),
            _ => return Err(AddrError::MissingPort(s.to_string())),
        };
        if host.is_empty() {
            return Err(AddrError::MissingPort(s.to_string()));
        }
        if host.chars().any(|c| c.is_whitespace() || c.is_control() || "@?#\\\"'<>{}|^`,".contains(c)) {
            return Err(AddrError::BadHost(s.to_string()));
        }
        let port = port.parse::<u16>().map_err(|_| AddrError::BadPort(s.to_string()))?;
        Ok(Self { tls, host: host.to_string(), port })
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tls {
            write!(f, "https://{}:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl From<std::net::SocketAddr> for Addr {
    fn from(a: std::net::SocketAddr) -> Self {
        let host = match a {
            std::net::SocketAddr::V4(v4) => v4.ip().to_string(),
            std::net::SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
        };
        Self { tls: false, host, port: a.port() }
    }
}

impl Serialize for Addr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses a comma-separated list such as `a:1,http://b:2, c:3`; empty items are refused.
pub fn parse_addr_list(s: &str) -> Result<Vec<Addr>, AddrError> {
    s.split(',').map(|part| part.parse()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_spellings_of_the_seed() {
        let plain: Addr = "ip0:10240".parse().unwrap();
        let url: Addr = "http://ip0:10240".parse().unwrap();
        assert_eq!(plain, url);
        assert_eq!(plain.url(), "http://ip0:10240");
        assert_eq!(url.host_port(), "ip0:10240");
        let tls: Addr = "https://ip0:10240/".parse().unwrap();
        assert!(tls.tls());
        assert_eq!(tls.url(), "https://ip0:10240");
    }

    #[test]
    fn accepts_ipv6() {
        let a: Addr = "[::1]:8080".parse().unwrap();
        assert_eq!(a.host(), "[::1]");
        assert_eq!(a.to_socket_addrs().unwrap()[0].port(), 8080);
    }

    #[test]
    fn refuses_malformed_addresses_with_a_reason() {
        assert_eq!("".parse::<Addr>(), Err(AddrError::Empty));
        assert!(matches!("localhost".parse::<Addr>(), Err(AddrError::MissingPort(_))));
        assert!(matches!("h:99999".parse::<Addr>(), Err(AddrError::BadPort(_))));
        assert!(matches!("ftp://h:1".parse::<Addr>(), Err(AddrError::BadScheme(_))));
        assert!(matches!("h:1/x".parse::<Addr>(), Err(AddrError::HasPath(_))));
        assert!(matches!("[::1]".parse::<Addr>(), Err(AddrError::MissingPort(_))));
        assert!(matches!("a b:1".parse::<Addr>(), Err(AddrError::BadHost(_))));
        assert!(matches!("user@h:1".parse::<Addr>(), Err(AddrError::BadHost(_))));
        assert!(parse_addr_list("a:1,,b:2").is_err());
        assert_eq!(parse_addr_list("a:1, http://b:2").unwrap().len(), 2);
    }
}

/// A comma-separated list of addresses (`--join a,b,c`); in TOML a string or an array.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddrList(pub Vec<Addr>);

impl FromStr for AddrList {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_addr_list(s).map(Self)
    }
}

impl fmt::Display for AddrList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(Addr::to_string).collect();
        write!(f, "{}", parts.join(","))
    }
}

impl Serialize for AddrList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AddrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let parts = match Raw::deserialize(d)? {
            Raw::One(s) => return s.parse().map_err(serde::de::Error::custom),
            Raw::Many(v) => v,
        };
        let addrs: Result<Vec<Addr>, _> = parts.iter().map(|p| p.parse()).collect();
        addrs.map(Self).map_err(serde::de::Error::custom)
    }
}
