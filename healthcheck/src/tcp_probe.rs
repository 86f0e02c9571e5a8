//! A TCP probe: healthy when a connection to HOST:PORT is accepted within the timeout.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::{ProbeError, Success};

#[derive(Debug, Clone)]
pub struct TcpProbe {
    addr: String,
}

impl TcpProbe {
    /// `addr` is `HOST:PORT`; checked for shape here, resolved at each check.
    pub fn new(addr: &str) -> Result<Self, ProbeError> {
        let invalid = |reason: &str| ProbeError::Invalid { target: addr.to_string(), reason: reason.to_string() };
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| invalid("write it as HOST:PORT, like 127.0.0.1:5432"))?;
        if host.is_empty() {
            return Err(invalid("the host is empty; write it as HOST:PORT, like 127.0.0.1:5432"));
        }
        port.parse::<u16>().map_err(|_| invalid("the port is not a number from 1 to 65535"))?;
        Ok(TcpProbe { addr: addr.to_string() })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn check(&self, timeout: Duration) -> Result<Success, ProbeError> {
        let start = Instant::now();
        let addrs = resolve(&self.addr)?;
        connect(&addrs, start + timeout, timeout)?;
        Ok(Success { status: None, elapsed: start.elapsed() })
    }
}

/// Resolves `host:port`; IP literals never touch the resolver.
pub(crate) fn resolve(addr: &str) -> Result<Vec<SocketAddr>, ProbeError> {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string();
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(|e| ProbeError::Resolve { host: host.clone(), reason: e.to_string() })?.collect();
    if addrs.is_empty() {
        return Err(ProbeError::Resolve { host, reason: "no addresses".into() });
    }
    Ok(addrs)
}

/// Connects to the first address that accepts, before `deadline`.
pub(crate) fn connect(addrs: &[SocketAddr], deadline: Instant, timeout: Duration) -> Result<TcpStream, ProbeError> {
    let mut last = ProbeError::Refused;
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ProbeError::Timeout(timeout));
        }
        match TcpStream::connect_timeout(a, left) {
            Ok(s) => return Ok(s),
            Err(e) => last = ProbeError::from_io(e, timeout),
        }
    }
    Err(last)
}
