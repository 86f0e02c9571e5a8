//! Health probes for a container's app: an HTTP GET with a healthy-status set, or a TCP connect.
//!
//! Blocking and small on purpose: `agent health` runs every few seconds inside a task that may
//! have a quarter of a vCPU, so a probe is one socket, one request, one parse, with a deadline
//! over all of it, and no async runtime to start. Errors are typed and say what failed
//! (refused, timeout, status 503, body mismatch), so "unhealthy" always comes with a why.

mod error;
mod http_probe;
mod status;
mod tcp_probe;

use std::time::Duration;

pub use error::ProbeError;

/// The User-Agent of every HTTP probe: the relay knows its own probe's spans by it.
pub const USER_AGENT: &str = "agent-health";
pub use http_probe::HttpProbe;
pub use status::{StatusSet, StatusSetError};
pub use tcp_probe::TcpProbe;

/// One configured probe.
#[derive(Debug, Clone)]
pub enum Probe {
    Http(HttpProbe),
    Tcp(TcpProbe),
}

/// What a passing probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Success {
    /// The HTTP status, or `None` for a TCP probe.
    pub status: Option<u16>,
    pub elapsed: Duration,
}

impl Probe {
    /// Runs the probe once; everything (resolve, connect, request, response) within `timeout`.
    pub fn check(&self, timeout: Duration) -> Result<Success, ProbeError> {
        match self {
            Probe::Http(p) => p.check(timeout),
            Probe::Tcp(p) => p.check(timeout),
        }
    }

    /// What is probed, for messages: `GET http://127.0.0.1:4567/api/health-check` or `TCP 127.0.0.1:5432`.
    pub fn describe(&self) -> String {
        match self {
            Probe::Http(p) => format!("GET {}", p.url()),
            Probe::Tcp(p) => format!("TCP {}", p.addr()),
        }
    }
}
