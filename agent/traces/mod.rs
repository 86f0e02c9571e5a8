//! Traces, part I: the X-Ray daemon's job, inside the agent. The app's X-Ray SDK sends segments
//! as UDP datagrams to 127.0.0.1:2000; the agent checks them (`datagram.rs`), keeps them within
//! a byte budget (`buffer.rs`) and sends them to X-Ray in batches of up to 50 with
//! PutTraceSegments (`export.rs`), when a batch is full or every `--xray-flush-interval`.
//!
//! Because the agent outlives the app, nothing is lost at shutdown the way it is when a daemon
//! sidecar stops first: the agent receives until the app has exited, then flushes what is left
//! within `--flush-timeout`, and logs the final counts.
//!
//! Two threads: a receiver that does nothing but read datagrams into the buffer (blocking
//! reads, so no export work can ever starve it while the kernel's buffer fills), and an exporter
//! on a single-thread runtime, stopped by a `CancellationToken` once the receiver has drained
//! the socket.

pub(crate) mod buffer;
mod counters;
pub mod datagram;
pub(crate) mod export;
pub(crate) mod problems;
mod sampling;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::buffer::Buffer;
pub use self::counters::{Counters, Snapshot};
use self::export::{Exporter, Sent};
use self::problems::Problems;

pub const DEFAULT_ADDRESS: &str = "127.0.0.1:2000";
const BATCH: usize = 50;
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct XrayConfig {
    pub address: SocketAddr,
    pub flush_interval: Duration,
    /// Bytes of segments kept while X-Ray cannot take them; the oldest go first.
    pub buffer: usize,
    /// The socket's receive buffer, so bursts are not dropped by the kernel.
    pub rcvbuf: usize,
}

/// Whether exports are failing, and since when: for `agent health` (`--health-exports-failing`).
#[derive(Debug, Default)]
pub struct ExportHealth {
    state: Mutex<Option<(std::time::SystemTime, String)>>,
}

impl ExportHealth {
    pub(crate) fn failed(&self, reason: &str) {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match g.as_mut() {
            Some((_, r)) => *r = reason.to_string(),
            None => *g = Some((std::time::SystemTime::now(), reason.to_string())),
        }
    }

    pub(crate) fn succeeded(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Since when exports have failed, and the last reason; `None` while they work.
    pub fn failing(&self) -> Option<(std::time::SystemTime, String)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The pipeline: sockets bound at start; threads started by `activate` (once the app has run a
/// moment, or at shutdown if segments are waiting), so a short-lived app pays for no threads.
/// Until then the kernel queues datagrams and connections.
pub struct Traces {
    cancel: CancellationToken,
    flush_timeout: Arc<Mutex<Duration>>,
    stop_receiving: Arc<AtomicBool>,
    address: SocketAddr,
    pending: Mutex<Option<Pending>>,
    threads: Mutex<Option<(std::thread::JoinHandle<()>, std::thread::JoinHandle<()>)>>,
    pub counters: Arc<Counters>,
    pub health: Arc<ExportHealth>,
    /// With `--xray-to-otlp`: where segments go, as OTLP spans, instead of PutTraceSegments.
    otlp: Mutex<Option<Arc<crate::otlp::Ingest>>>,
}

/// What `activate` needs to start the threads.
struct Pending {
    cfg: XrayConfig,
    socket: std::net::UdpSocket,
    sampling: Option<std::net::TcpListener>,
}

/// Binds the UDP socket and starts the pipeline. A taken address (the X-Ray daemon sidecar is
/// still in the task, say) is not fatal: the app runs, and the agent says why it is not relaying.
pub fn start(cfg: XrayConfig) -> Option<Traces> {
    let socket = match std::net::UdpSocket::bind(cfg.address) {
        Ok(s) => s,
        Err(e) => {
            warn!(address = %cfg.address, error = %e, "cannot receive X-Ray segments (is the X-Ray daemon sidecar still running? remove it, or use --xray-address or --no-xray)");
            return None;
        }
    };
    // The sampling proxy shares the address, over TCP, as the daemon's does.
    let sampling = match sampling::bind(cfg.address) {
        Ok(l) => Some(l),
        Err(e) => {
            warn!(address = %cfg.address, error = %e, "cannot serve X-Ray sampling requests (TCP); segments are still received");
            None
        }
    };
    let rcvbuf = set_rcvbuf(&socket, cfg.rcvbuf);
    socket.set_read_timeout(Some(Duration::from_millis(100))).ok()?;
    info!(address = %cfg.address, rcvbuf, "receiving X-Ray segments");
    Some(Traces {
        cancel: CancellationToken::new(),
        flush_timeout: Arc::new(Mutex::new(Duration::from_secs(4))),
        stop_receiving: Arc::new(AtomicBool::new(false)),
        address: cfg.address,
        pending: Mutex::new(Some(Pending { cfg, socket, sampling })),
        threads: Mutex::new(None),
        counters: Arc::new(Counters::default()),
        health: Arc::new(ExportHealth::default()),
        otlp: Mutex::new(None),
    })
}

impl Traces {
    /// Sends segments to the OTLP relay, as spans, instead of PutTraceSegments (before `activate`).
    pub fn relay_to_otlp(&self, ingest: Arc<crate::otlp::Ingest>) {
        *self.otlp.lock().unwrap_or_else(|e| e.into_inner()) = Some(ingest);
    }

    /// Starts the receiver and exporter threads (once; later calls do nothing).
    pub fn activate(&self) {
        let Some(Pending { cfg, socket, sampling }) = self.pending.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let otlp = self.otlp.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let buffer = Arc::new(Mutex::new(Buffer::new(cfg.buffer)));
        let full = Arc::new(Notify::new());
        let receiver = {
            let (b, n, k, stop) = (buffer.clone(), full.clone(), self.counters.clone(), self.stop_receiving.clone());
            std::thread::Builder::new()
                .name("xray-receive".into())
                .spawn(move || receive(socket, b, n, k, stop))
                .expect("BUG: cannot start the X-Ray receiver thread")
        };
        let (c, k, f, h) = (self.cancel.clone(), self.counters.clone(), self.flush_timeout.clone(), self.health.clone());
        let exporter = std::thread::Builder::new()
            .name("xray-export".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("BUG: traces runtime");
                rt.block_on(async move {
                    // One AWS configuration for the exporter and the sampling proxy.
                    let aws = export::SharedConfig::default();
                    if let Some(l) = sampling.and_then(|l| tokio::net::TcpListener::from_std(l).ok()) {
                        tokio::spawn(sampling::serve(l, c.clone(), aws.clone()));
                    }
                    export_loop(cfg, buffer, full, c, k, f, h, aws, otlp).await
                });
            })
            .expect("BUG: cannot start the X-Ray exporter thread");
        *self.threads.lock().unwrap_or_else(|e| e.into_inner()) = Some((receiver, exporter));
    }

    /// Whether datagrams wait in a socket no thread reads yet.
    fn waiting(&self) -> bool {
        use std::os::fd::AsRawFd;
        let g = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = g.as_ref() else { return false };
        let mut b = [0u8; 1];
        // SAFETY: a one-byte buffer we own; MSG_PEEK leaves the datagram in place.
        unsafe { libc::recv(p.socket.as_raw_fd(), b.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) >= 0 }
    }

    /// Stops receiving, sends what is left within `flush_timeout`, and returns the final counts.
    pub fn shutdown(self, flush_timeout: Duration) -> Snapshot {
        if self.waiting() {
            self.activate();
        }
        let Some((receiver, thread)) = self.threads.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return self.counters.snapshot(); // never started, nothing arrived
        };
        *self.flush_timeout.lock().unwrap_or_else(|e| e.into_inner()) = flush_timeout;
        // First everything the socket still holds, then the final flush.
        self.stop_receiving.store(true, Ordering::SeqCst);
        // Wake the receiver now rather than at its next read timeout: an empty datagram.
        if let Ok(s) = std::net::UdpSocket::bind(if self.address.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }) {
            let _ = s.send_to(&[], self.address);
        }
        let _ = receiver.join();
        self.cancel.cancel();
        let _ = thread.join();
        let s = self.counters.snapshot();
        info!(received = s.received, sent = s.sent, rejected = s.rejected, dropped = s.dropped, retried = s.retried, "X-Ray segments, final counts");
        s
    }
}

/// Asks for `want` bytes of receive buffer (beyond net.core.rmem_max too when root); returns
/// what the kernel granted.
fn set_rcvbuf(socket: &std::net::UdpSocket, want: usize) -> usize {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    if setsockopt(socket, sockopt::RcvBufForce, &want).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &want);
    }
    getsockopt(socket, sockopt::RcvBuf).unwrap_or(0)
}

async fn export_loop(
    cfg: XrayConfig,
    buffer: Arc<Mutex<Buffer<String>>>,
    full: Arc<Notify>,
    cancel: CancellationToken,
    counters: Arc<Counters>,
    flush_timeout: Arc<Mutex<Duration>>,
    health: Arc<ExportHealth>,
    aws: export::SharedConfig,
    otlp: Option<Arc<crate::otlp::Ingest>>,
) {
    let mut pipeline = Pipeline { buffer, counters, exporter: None, backoff: Duration::from_millis(200), health, aws, otlp, skips: Problems::default() };
    let mut last_logged = Snapshot::default();
    let mut minute = tokio::time::interval(Duration::from_secs(60));
    minute.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = full.notified() => pipeline.send_ready(false).await,
            _ = tokio::time::sleep(cfg.flush_interval) => pipeline.send_ready(true).await,
            _ = minute.tick() => {
                let now = pipeline.counters.snapshot();
                if now != last_logged {
                    info!(received = now.received, sent = now.sent, rejected = now.rejected, dropped = now.dropped, retried = now.retried, "X-Ray segments");
                    last_logged = now;
                }
            }
        }
    }
    // The app has exited and the socket is drained: flush within the time left.
    let deadline = tokio::time::Instant::now() + *flush_timeout.lock().unwrap_or_else(|e| e.into_inner());
    let done = tokio::time::timeout_at(deadline, pipeline.flush()).await;
    let left = pipeline.buffer.lock().unwrap_or_else(|e| e.into_inner()).take(usize::MAX).len() as u64;
    if left > 0 || done.is_err() {
        Counters::add(&pipeline.counters.dropped, left);
        warn!(unsent = left, "the flush timeout ran out before every segment was sent");
    }
    if let Some(e) = &pipeline.exporter {
        e.problems.log_counts("X-Ray");
    }
}

/// Datagrams read per `recvmmsg` call: a burst costs one wake-up and one buffer lock.
const SLOTS: usize = 16;
const SLOT_SIZE: usize = 65536;
/// How long the receiver lets datagrams gather after draining the socket (the receive buffer
/// holds far more than arrives in this time).
const COALESCE: Duration = Duration::from_millis(2);

/// Preallocated `recvmmsg` state: a slot of 64 KiB (the largest datagram) per message.
struct Batch {
    data: Vec<u8>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Batch {
    fn new() -> Box<Batch> {
        let mut b = Box::new(Batch { data: vec![0u8; SLOTS * SLOT_SIZE], iovs: Vec::with_capacity(SLOTS), hdrs: Vec::with_capacity(SLOTS) });
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

    /// Waits for at least one datagram (up to the socket's read timeout), then takes whatever
    /// else is queued, without waiting: how many were read.
    fn recv(&mut self, fd: std::os::fd::RawFd, wait: bool) -> usize {
        let flags = if wait { libc::MSG_WAITFORONE } else { libc::MSG_DONTWAIT };
        // SAFETY: `hdrs` holds SLOTS valid headers pointing at live buffers.
        let n = unsafe { libc::recvmmsg(fd, self.hdrs.as_mut_ptr(), SLOTS as u32, flags, std::ptr::null_mut()) };
        if n < 0 { 0 } else { n as usize }
    }

    fn datagram(&self, i: usize) -> &[u8] {
        let len = (self.hdrs[i].msg_len as usize).min(SLOT_SIZE);
        &self.data[i * SLOT_SIZE..i * SLOT_SIZE + len]
    }
}

/// The receiver thread: blocking reads (waking every 100 ms to see whether to stop), then, when
/// told to stop, everything still queued in the socket without waiting.
fn receive(socket: std::net::UdpSocket, buffer: Arc<Mutex<Buffer<String>>>, full: Arc<Notify>, counters: Arc<Counters>, stop: Arc<AtomicBool>) {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let mut batch = Batch::new();
    let mut seen_rejects = HashSet::new();
    let mut segments: Vec<String> = Vec::with_capacity(SLOTS);
    let mut take = |batch: &Batch, n: usize| {
        for i in 0..n {
            let d = batch.datagram(i);
            if d.is_empty() {
                continue; // the wake-up at shutdown; never a segment
            }
            Counters::add(&counters.received, 1);
            match datagram::parse(d) {
                Ok(body) => segments.push(body.to_string()),
                Err(r) => {
                    Counters::add(&counters.rejected, 1);
                    if seen_rejects.insert(r) {
                        warn!(reason = r.as_str(), "rejected an X-Ray datagram (further ones like it are only counted)");
                    }
                }
            }
        }
        if segments.is_empty() {
            return;
        }
        let mut b = buffer.lock().unwrap_or_else(|e| e.into_inner());
        let before = b.len();
        let mut dropped = 0;
        for s in segments.drain(..) {
            dropped += b.push(s);
        }
        if dropped > 0 {
            Counters::add(&counters.dropped, dropped);
        }
        // Wake the exporter when a batch fills (it keeps sending while full batches remain).
        if before < BATCH && b.len() >= BATCH {
            full.notify_one();
        }
    };
    while !stop.load(Ordering::SeqCst) {
        let n = batch.recv(fd, true);
        take(&batch, n);
        if n < SLOTS {
            // The socket is drained: let datagrams gather in its buffer for a moment rather than
            // wake for each one. At 20,000/s a wake-up per datagram was a sixth of the agent's CPU.
            std::thread::sleep(COALESCE);
        }
    }
    loop {
        let n = batch.recv(fd, false);
        if n == 0 {
            break;
        }
        take(&batch, n);
    }
}

struct Pipeline {
    buffer: Arc<Mutex<Buffer<String>>>,
    counters: Arc<Counters>,
    exporter: Option<Exporter>,
    backoff: Duration,
    health: Arc<ExportHealth>,
    aws: export::SharedConfig,
    otlp: Option<Arc<crate::otlp::Ingest>>,
    /// Documents `--xray-to-otlp` could not convert, by reason.
    skips: Problems,
}

impl Pipeline {
    fn take(&self, partial: bool) -> Vec<String> {
        let mut b = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if partial || b.len() >= BATCH { b.take(BATCH) } else { Vec::new() }
    }

    /// Sends full batches (and, on the timer, the partial one too); pauses after a failure.
    async fn send_ready(&mut self, partial: bool) {
        loop {
            let batch = self.take(partial);
            if batch.is_empty() {
                return;
            }
            if !self.send(batch).await {
                let pause = self.backoff.mul_f64(0.5 + fastrand::f64());
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                tokio::time::sleep(pause).await;
                return;
            }
            self.backoff = Duration::from_millis(200);
        }
    }

    /// Sends everything, retrying transient failures with backoff (the caller bounds it).
    async fn flush(&mut self) {
        loop {
            let batch = self.take(true);
            if batch.is_empty() {
                return;
            }
            if !self.send(batch).await {
                tokio::time::sleep(self.backoff.mul_f64(0.5 + fastrand::f64())).await;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// One PutTraceSegments call; false when the batch went back to the buffer to be retried.
    async fn send(&mut self, batch: Vec<String>) -> bool {
        let n = batch.len() as u64;
        if let Some(ingest) = &self.otlp {
            // --xray-to-otlp: the segments become spans in the OTLP relay's queues.
            let (request, skipped) = crate::otlp::from_xray::request(&batch);
            for s in &skipped {
                self.skips.once(s.as_str(), || format!("an X-Ray segment could not become OTLP spans: {} (further ones are counted as rejected)", s.as_str()));
            }
            ingest.accept(request, None);
            Counters::add(&self.counters.sent, n - skipped.len() as u64);
            Counters::add(&self.counters.rejected, skipped.len() as u64);
            return true;
        }
        if self.exporter.is_none() {
            self.exporter = Some(Exporter::new(&self.aws));
        }
        let exporter = self.exporter.as_mut().expect("set above");
        match exporter.send(&batch).await {
            Sent::Done { retry, refused } => {
                self.health.succeeded();
                let back = retry.len() as u64;
                Counters::add(&self.counters.sent, n - back - refused);
                Counters::add(&self.counters.rejected, refused);
                if back > 0 {
                    Counters::add(&self.counters.retried, back);
                    let dropped = self.buffer.lock().unwrap_or_else(|e| e.into_inner()).put_back(retry);
                    Counters::add(&self.counters.dropped, dropped);
                }
                true
            }
            Sent::RetryAll(reason) => {
                self.health.failed(&reason);
                exporter.problems.once("retry", || format!("X-Ray is not taking segments; keeping them and retrying: {reason}"));
                Counters::add(&self.counters.retried, n);
                let dropped = self.buffer.lock().unwrap_or_else(|e| e.into_inner()).put_back(batch);
                Counters::add(&self.counters.dropped, dropped);
                false
            }
            Sent::Failed(reason) => {
                self.health.failed(&reason);
                exporter.problems.once(&format!("failed:{}", reason.split(':').next().unwrap_or("")), || {
                    format!("PutTraceSegments failed; the batch is dropped: {reason} (the task role needs xray:PutTraceSegments)")
                });
                Counters::add(&self.counters.dropped, n);
                true
            }
        }
    }
}
