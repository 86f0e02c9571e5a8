//! The X-Ray half of the relay: the X-Ray daemon's job, inside the agent. The app's X-Ray SDK
//! sends segments as UDP datagrams to 127.0.0.1:2000 (`receiver.rs`, the source, with the
//! daemon's datagram rules in `datagram.rs`); they wait in the X-Ray queue within a byte budget
//! and the batcher sends them in batches of up to 50 with PutTraceSegments (`sink.rs`), or,
//! with `--xray-to-otlp`, hands them to the converter (`to_otlp.rs`) that makes them OTLP spans
//! for the OTLP upstreams. With `--otlp-xray-segments`, the app's OpenTelemetry spans come the
//! other way: the converter `from_otlp.rs` makes them segment documents in the same queue. The SDKs' sampling requests go to a TCP endpoint on the same address
//! (`sampling.rs`), as with the daemon.
//!
//! Because the agent outlives the app, nothing is lost at shutdown the way it is when a daemon
//! sidecar stops first: the agent receives until the app has exited, drains the socket, then
//! flushes within `--flush-timeout`.

pub mod datagram;
pub mod from_otlp;
pub mod receiver;
pub mod sampling;
pub mod segments;
pub mod sink;
pub mod to_otlp;

use std::net::SocketAddr;
use std::time::Duration;

use tracing::{info, warn};

use super::batcher::Limits;

pub const DEFAULT_ADDRESS: &str = "127.0.0.1:2000";

/// PutTraceSegments takes 50 documents a call at most; a full batch goes at once. (A queue item
/// is a `Segments` of at most 16, so a batch is 48 to 50 documents.)
pub const LIMITS: Limits = Limits { ready: 50, items: 50, count: 50, bytes: usize::MAX };

#[derive(Debug, Clone)]
pub struct XraySettings {
    pub address: SocketAddr,
    pub flush_interval: Duration,
    /// Bytes of segments kept while X-Ray cannot take them; the oldest go first.
    pub buffer: usize,
    /// The socket's receive buffer, so bursts are not dropped by the kernel.
    pub rcvbuf: usize,
    /// Whether the address was set (flag, env or file), so the app must be told it.
    pub address_set: bool,
}

/// The X-Ray sockets, bound at start so the kernel queues what arrives before the threads run.
pub struct Sockets {
    pub udp: std::net::UdpSocket,
    pub sampling: Option<std::net::TcpListener>,
    /// The bound address: the configured one, with the port the kernel chose for port 0.
    pub address: SocketAddr,
}

/// Binds the UDP socket and the sampling listener. A taken address (the X-Ray daemon sidecar is
/// still in the task, say) is not fatal: the app runs, and the agent says why it is not relaying.
pub fn bind(cfg: &XraySettings) -> Option<Sockets> {
    // Port 0 (tests, several agents on a laptop): the kernel picks the UDP port, and the sampling
    // endpoint needs the same number in TCP, which may be taken (a TCP connection's local port):
    // then another UDP port is tried.
    let tries = if cfg.address.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let udp = match std::net::UdpSocket::bind(cfg.address) {
            Ok(s) => s,
            Err(e) => {
                warn!(address = %cfg.address, error = %e, "cannot receive X-Ray segments (is the X-Ray daemon sidecar still running? remove it, or use --xray-address or --no-xray)");
                return None;
            }
        };
        let address = udp.local_addr().unwrap_or(cfg.address);
        match sampling::bind(address) {
            Ok(l) => return finish(cfg, udp, Some(l), address),
            Err(e) => last = Some((udp, address, e)),
        }
    }
    let (udp, address, e) = last.expect("at least one try");
    warn!(address = %address, error = %e, "cannot serve X-Ray sampling requests (TCP); segments are still received");
    finish(cfg, udp, None, address)
}

/// Sizes the UDP socket's receive buffer, sets its read timeout, and says where segments are received.
fn finish(cfg: &XraySettings, udp: std::net::UdpSocket, sampling: Option<std::net::TcpListener>, address: SocketAddr) -> Option<Sockets> {
    let rcvbuf = receiver::set_rcvbuf(&udp, cfg.rcvbuf);
    udp.set_read_timeout(Some(receiver::READ_TIMEOUT)).ok()?;
    info!(address = %address, rcvbuf, "receiving X-Ray segments");
    Some(Sockets { udp, sampling, address })
}
