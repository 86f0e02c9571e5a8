//! The X-Ray source: a dedicated thread that does nothing but read datagrams (`recvmmsg`, up to
//! 16 a call), check them (`datagram.rs`) and push the segments into the X-Ray queue. Blocking
//! reads, so no export work can starve it while the kernel's buffer fills. When the relay's
//! source token is cancelled it reads what the socket still holds, without waiting, and ends.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::datagram;
use super::segments::Segments;
use crate::relay::batcher::Queue;
use crate::relay::counters::Counters;

/// Datagrams read per `recvmmsg` call: a burst costs one wake-up and one buffer lock.
const SLOTS: usize = 16;
// One read's segments are one queue item, and a batch takes whole items: one must fit a batch.
const _: () = assert!(SLOTS as u64 <= super::LIMITS.count);
const SLOT_SIZE: usize = 65536;
/// How long the receiver lets datagrams gather after draining the socket (the receive buffer
/// holds far more than arrives in this time). At 20,000/s a wake-up per datagram was a sixth of
/// the agent's CPU.
const COALESCE: Duration = Duration::from_millis(2);
/// How often a blocked read wakes to see whether to stop (a stop also sends a wake-up datagram).
pub const READ_TIMEOUT: Duration = Duration::from_millis(100);

/// Preallocated `recvmmsg` state: a slot of 64 KiB (the largest datagram) per message.
struct Slots {
    data: Vec<u8>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Slots {
    fn new() -> Box<Slots> {
        let mut b = Box::new(Slots { data: vec![0u8; SLOTS * SLOT_SIZE], iovs: Vec::with_capacity(SLOTS), hdrs: Vec::with_capacity(SLOTS) });
        for i in 0..SLOTS {
            // SAFETY: in bounds of `data`, which is never resized or moved out of the box.
            let base = unsafe { b.data.as_mut_ptr().add(i * SLOT_SIZE) };
            b.iovs.push(libc::iovec { iov_base: base.cast(), iov_len: SLOT_SIZE });
        }
        for i in 0..SLOTS {
            // SAFETY: an all-zero mmsghdr is valid; the iovec pointer targets `iovs`, which is not
            // resized after this point.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = &mut b.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            b.hdrs.push(h);
        }
        b
    }

    /// Waits for at least one datagram (up to the socket's read timeout) unless `!wait`, then
    /// takes whatever else is queued, without waiting: how many were read.
    fn recv(&mut self, fd: RawFd, wait: bool) -> usize {
        let flags = if wait { libc::MSG_WAITFORONE } else { libc::MSG_DONTWAIT };
        // SAFETY: `hdrs` holds SLOTS valid headers pointing at live buffers.
        let n = unsafe { libc::recvmmsg(fd, self.hdrs.as_mut_ptr(), SLOTS as u32, flags, std::ptr::null_mut()) };
        if n < 0 {
            0
        } else {
            n as usize
        }
    }

    fn datagram(&self, i: usize) -> &[u8] {
        let len = (self.hdrs[i].msg_len as usize).min(SLOT_SIZE);
        &self.data[i * SLOT_SIZE..i * SLOT_SIZE + len]
    }
}

/// Checks datagrams and pushes the segments; rejects are counted on the queue (they were
/// received) and each kind is logged once.
struct Intake {
    queue: Arc<Queue<Segments>>,
    seen_rejects: HashSet<datagram::Reject>,
    /// Leave out the agent's own health probe's segments (counted as filtered).
    filter_health: bool,
}

impl Intake {
    fn take(&mut self, slots: &Slots, n: usize) {
        let (mut rejected, mut filtered) = (0, 0);
        let bytes = (0..n).map(|i| slots.datagram(i).len()).sum();
        let mut segments = Segments::with_capacity(n, bytes);
        for i in 0..n {
            let d = slots.datagram(i);
            if d.is_empty() {
                continue; // the wake-up at shutdown; never a segment
            }
            match datagram::parse(d) {
                Ok(body) if self.filter_health && datagram::is_health_probe(body) => filtered += 1,
                Ok(body) => segments.push(body),
                Err(r) => {
                    rejected += 1;
                    if self.seen_rejects.insert(r) {
                        warn!(reason = r.as_str(), "rejected an X-Ray datagram (further ones like it are only counted)");
                    }
                }
            }
        }
        Counters::add(&self.queue.counters.filtered, filtered);
        if rejected > 0 {
            Counters::add(&self.queue.counters.received, rejected);
            Counters::add(&self.queue.counters.rejected, rejected);
        }
        if !segments.is_empty() {
            self.queue.push([segments]);
        }
    }
}

/// The receiver thread's body: reads until `stop`, then drains the socket.
pub fn receive(socket: std::net::UdpSocket, queue: Arc<Queue<Segments>>, stop: CancellationToken, filter_health: bool) {
    let fd = socket.as_raw_fd();
    let mut slots = Slots::new();
    let mut intake = Intake { queue, seen_rejects: HashSet::new(), filter_health };
    while !stop.is_cancelled() {
        let n = slots.recv(fd, true);
        if n > 0 {
            crate::fault::point("xray-receive");
        }
        intake.take(&slots, n);
        if n < SLOTS {
            std::thread::sleep(COALESCE);
        }
    }
    loop {
        let n = slots.recv(fd, false);
        if n == 0 {
            break;
        }
        intake.take(&slots, n);
    }
}

/// Wakes a receiver blocked on `address` now rather than at its next read timeout.
pub fn wake(address: std::net::SocketAddr) {
    if let Ok(s) = std::net::UdpSocket::bind(if address.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }) {
        let _ = s.send_to(&[], address);
    }
}

/// Whether datagrams wait in a socket no thread reads yet.
pub fn waiting(socket: &std::net::UdpSocket) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: a one-byte buffer we own; MSG_PEEK leaves the datagram in place.
    unsafe { libc::recv(socket.as_raw_fd(), b.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) >= 0 }
}

/// Asks for `want` bytes of receive buffer (beyond net.core.rmem_max too when root); returns
/// what the kernel granted.
pub fn set_rcvbuf(socket: &std::net::UdpSocket, want: usize) -> usize {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    if setsockopt(socket, sockopt::RcvBufForce, &want).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &want);
    }
    getsockopt(socket, sockopt::RcvBuf).unwrap_or(0)
}
