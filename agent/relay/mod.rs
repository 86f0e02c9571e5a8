//! The relay: receives the app's telemetry and forwards it, as one pipeline.
//!
//! ```text
//!  app ──UDP 2000──▶ xray::receiver ─┐                              ┌─▶ xray::sink (PutTraceSegments)
//!  app ──TCP 2000──▶ xray::sampling (GetSamplingRules, SamplingTargets ⇄ X-Ray)
//!  app ──HTTP 4318─▶ otlp::receiver ─┼─▶ queues ─▶ batcher::run ────┼─▶ otlp::sink (one per upstream and signal)
//!                                    └─ xray::to_otlp (converter) ──┘
//! ```
//! Sources push into `batcher::Queue`s (a byte budget each, one per sink); one export loop
//! (`batcher::run`) sends every queue to its sink. A new signal or protocol is a new source, a
//! new backend a new sink; neither touches the others. `otlp` never imports `xray`.
//!
//! `Relays::start` binds the sockets (so a taken port is said before the app runs) and works
//! out the app's environment; `activate` starts the threads once the app has run a moment, so a
//! short-lived command pays for none: one thread reads X-Ray datagrams, one runs a
//! single-threaded runtime with everything else. `shutdown(flush_timeout)` is one message with
//! its deadline, handled in order: stop the sources (the socket drained, requests under way
//! answered), drain the converters into the sinks' queues, then every sink flushes at once
//! until the deadline; whatever is left is counted as dropped, so for every upstream
//! received = sent + rejected + dropped, and the final log lines show it.

pub mod batcher;
pub mod bodies;
pub mod buffer;
pub mod counters;
pub mod otlp;
pub mod problems;
pub mod serve;
pub mod settings;
pub mod statsd;
pub mod xray;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::batcher::{Deadline, Queue, Stop};
use self::counters::{ExportHealth, Snapshot};
use self::otlp::message::Chunk;
use self::otlp::receiver::Door;
use self::otlp::signal::Kind as Signal;
use self::otlp::sink::Upstream;
use self::otlp::Ingest;
pub use self::settings::RelaySettings;
use crate::aws::Shared;

/// Why the relay cannot start as configured: a configuration error (exit 78).
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Upstream(#[from] otlp::settings::UpstreamError),
    #[error(
        "--xray-to-otlp needs an OTLP upstream: set OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, --otlp-endpoint or --otlp-xray"
    )]
    NoUpstreamToConvertTo,
}

/// What the app's environment becomes while the relay runs.
#[derive(Debug, Default)]
pub struct ChildEnv {
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
}

/// The final counts, per upstream.
#[derive(Debug, Default)]
pub struct Report {
    pub upstreams: Vec<(String, Snapshot)>,
}

/// The X-Ray part, bound.
struct XrayPart {
    sockets: xray::Sockets,
}

/// The X-Ray queue and how often it is sent: fed by the UDP receiver and/or by the OTLP spans'
/// converter (`--otlp-xray-segments`).
struct XrayQueue {
    queue: Arc<Queue<xray::segments::Segments>>,
    interval: Duration,
}

/// The OTLP part, bound.
struct OtlpPart {
    listener: std::net::TcpListener,
    /// Where it listens (the kernel's port for port 0).
    address: SocketAddr,
    /// The OTLP/gRPC port (4317), if it could be bound; `listener` takes gRPC too.
    grpc: Option<std::net::TcpListener>,
    /// StatsD's socket (8125), when metrics have somewhere to go; and the service name its
    /// metrics get (the app's OTEL_SERVICE_NAME).
    statsd: Option<(std::net::UdpSocket, String)>,
    door: Arc<Door>,
    /// Each upstream (and signal) with its queue.
    sinks: Vec<(Upstream, Arc<Queue<Chunk>>)>,
    /// `--metrics-emf`: metrics to stdout as CloudWatch EMF lines, with its queue.
    emf: Option<(otlp::emf::Emf, Arc<Queue<Chunk>>)>,
    /// `--otlp-xray-segments`: the spans' queue for the converter to X-Ray segments.
    segments: Option<Arc<Queue<Chunk>>>,
    interval: Duration,
}

/// Everything the threads need, until `activate` hands it over.
struct Parts {
    aws: Shared,
    xray: Option<XrayPart>,
    xray_queue: Option<XrayQueue>,
    otlp: Option<OtlpPart>,
    to_otlp: bool,
    indexed: xray::from_otlp::Indexed,
    /// Leave out the agent's own health probe's spans and segments (not `--keep-health-spans`).
    filter_health: bool,
}

struct Running {
    stop: Stop,
    relay: std::thread::JoinHandle<Report>,
}

pub struct Relays {
    parts: Mutex<Option<Parts>>,
    running: Mutex<Option<Running>>,
    exports: Vec<(String, Arc<ExportHealth>)>,
    flush_timeout: Duration,
}

/// Binds what is configured and works out the app's environment. `app_env` is the environment
/// the app would get (the agent's own plus the secrets), where the OTLP upstreams are read.
/// A taken port is not fatal: that part is off, said in one line, and the app keeps its settings.
pub fn start(settings: &RelaySettings, app_env: &HashMap<String, String>) -> Result<(Relays, ChildEnv), RelayError> {
    let mut env = ChildEnv::default();
    let aws = Shared::new(settings.aws.clone());
    if let Some(arn) = &settings.aws.role_arn {
        info!("trace calls use the role {arn} (sts:AssumeRole with the task role's credentials)");
    }
    let xray = settings.xray.as_ref().and_then(|s| {
        let sockets = xray::bind(s)?;
        if s.address_set {
            // The SDKs read host:port for both the UDP segments and the TCP sampling endpoint.
            env.set.push(("AWS_XRAY_DAEMON_ADDRESS".into(), sockets.address.to_string()));
        }
        Some(XrayPart { sockets })
    });
    let (buffer, interval) = settings.xray.as_ref().map_or((settings::DEFAULT_BUFFER, Duration::from_secs(1)), |x| (x.buffer, x.flush_interval));
    let mut xray_queue = (xray.is_some() || settings.otlp_xray_segments)
        .then(|| XrayQueue { queue: Queue::new("X-Ray", "X-Ray segments", buffer, xray::LIMITS), interval });
    let mut otlp = None;
    if let Some(s) = &settings.otlp {
        let upstreams = s.upstreams(app_env)?;
        if settings.xray_to_otlp && !upstreams.iter().any(|u| u.signal == Signal::Traces) {
            return Err(RelayError::NoUpstreamToConvertTo);
        }
        if !upstreams.is_empty() || s.emf.is_some() || settings.otlp_xray_segments {
            otlp = start_otlp(s, upstreams, &aws, app_env, !settings.keep_health_spans, settings.otlp_xray_segments);
            if let Some(o) = &otlp {
                let (set, remove) = s.child_env(o.address);
                env.set.extend(set);
                env.remove.extend(remove);
            }
        }
    }
    let to_otlp = match (settings.xray_to_otlp, &xray, &otlp) {
        (false, _, _) => false,
        (true, None, _) => {
            warn!("--xray-to-otlp: X-Ray reception is off (--no-xray or its address is taken); nothing to convert");
            false
        }
        (true, Some(_), None) => {
            warn!("--xray-to-otlp: the OTLP relay is not running (see above), so X-Ray segments go to PutTraceSegments");
            false
        }
        (true, Some(_), Some(_)) => {
            info!("X-Ray segments go to the OTLP upstreams as spans (--xray-to-otlp)");
            true
        }
    };
    if otlp.as_ref().is_some_and(|o| o.segments.is_some()) {
        info!("OTLP spans go to X-Ray as segment documents (--otlp-xray-segments)");
    } else if xray.is_none() {
        xray_queue = None; // nothing would feed it
    }
    if xray.is_some() || otlp.is_some() {
        env.set.extend(local_bypass(app_env));
    }
    let mut exports = Vec::new();
    if let Some(x) = &xray_queue {
        if !to_otlp {
            exports.push((x.queue.name.clone(), x.queue.health.clone()));
        }
    }
    if let Some(o) = &otlp {
        exports.extend(o.sinks.iter().map(|(_, q)| q).chain(o.emf.as_ref().map(|(_, q)| q)).map(|q| (q.name.clone(), q.health.clone())));
    }
    let relays = Relays {
        parts: Mutex::new(Some(Parts {
            aws,
            xray,
            xray_queue,
            otlp,
            to_otlp,
            indexed: settings.xray_indexed.clone(),
            filter_health: !settings.keep_health_spans,
        })),
        running: Mutex::new(None),
        exports,
        flush_timeout: settings.flush_timeout,
    };
    Ok((relays, env))
}

fn start_otlp(
    s: &otlp::Settings,
    upstreams: Vec<otlp::UpstreamConfig>,
    aws: &Shared,
    app_env: &HashMap<String, String>,
    filter_health: bool,
    to_segments: bool,
) -> Option<OtlpPart> {
    let listener = match serve::bind(s.address) {
        Ok(l) => l,
        Err(e) => {
            warn!(address = %s.address, error = %e, "cannot receive OTLP, so the app keeps its own OTLP settings (is a collector sidecar on this port? remove it, or use --otlp-address or --no-otlp)");
            return None;
        }
    };
    let address = listener.local_addr().unwrap_or(s.address);
    let (sinks, emf) = otlp_sinks(s, upstreams, aws);
    let segments = to_segments.then(|| Queue::new("X-Ray segments (from OTLP)", Signal::Traces.queued(), s.buffer, otlp::LIMITS));
    if sinks.is_empty() && emf.is_none() && segments.is_none() {
        return None;
    }
    // On ECS: the task's identity, added to every resource relayed (what the app set wins).
    let identity = Arc::new(crate::aws::ecs::identity(app_env));
    if !identity.is_empty() {
        info!(attributes = identity.len(), "adding the ECS task's identity (cloud.*, aws.ecs.*, container.*, aws.log.*) to relayed OTLP resources");
    }
    let mut ingests = Vec::new();
    let mut said = Vec::new();
    for signal in Signal::ALL {
        let emf_queue = emf.as_ref().filter(|_| signal == Signal::Metrics).map(|(_, q)| q.clone());
        let segments_queue = segments.as_ref().filter(|_| signal == Signal::Traces).cloned();
        let queues: Vec<Arc<Queue<Chunk>>> =
            sinks.iter().filter(|(u, _)| u.cfg.signal == signal).map(|(_, q)| q.clone()).chain(emf_queue).chain(segments_queue).collect();
        if !queues.is_empty() {
            let names: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
            said.push(format!("{} to {}", signal.var().to_lowercase(), names.join(" and ")));
            ingests.push(Arc::new(Ingest::new(signal, queues, s.buffer, identity.clone(), filter_health)));
        }
    }
    let grpc = match serve::bind(s.grpc_address) {
        Ok(l) => Some(l),
        Err(e) => {
            warn!(address = %s.grpc_address, error = %e, "cannot receive OTLP/gRPC there (is a collector sidecar on this port?); gRPC still works on {address}, the endpoint the app is given");
            None
        }
    };
    let grpc_address = grpc.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.to_string()).unwrap_or_else(|| "-".into());
    let statsd = if ingests.iter().any(|i| i.kind == Signal::Metrics) { bind_statsd(s.statsd_address) } else { None };
    let statsd_address = statsd.as_ref().and_then(|u| u.local_addr().ok()).map(|a| a.to_string()).unwrap_or_else(|| "-".into());
    let service = app_env.get("OTEL_SERVICE_NAME").cloned().unwrap_or_else(|| "statsd".into());
    let statsd = statsd.map(|u| (u, service));
    info!(address = %address, grpc = %grpc_address, statsd = %statsd_address, upstreams = %said.join("; "), "relaying OTLP");
    Some(OtlpPart { listener, address, grpc, statsd, door: Arc::new(Door::new(ingests)), sinks, emf, segments, interval: s.flush_interval })
}

type Sinks = (Vec<(Upstream, Arc<Queue<Chunk>>)>, Option<(otlp::emf::Emf, Arc<Queue<Chunk>>)>);

/// Every OTLP sink with its queue: one per upstream and signal, and EMF's for metrics.
fn otlp_sinks(s: &otlp::Settings, upstreams: Vec<otlp::UpstreamConfig>, aws: &Shared) -> Sinks {
    let mut sinks = Vec::new();
    for cfg in upstreams {
        let (name, signal) = (cfg.name(), cfg.signal);
        match Upstream::new(cfg, aws.clone()) {
            Ok(u) => {
                let q = Queue::new(u.name.clone(), signal.queued(), s.buffer, otlp::LIMITS);
                sinks.push((u, q));
            }
            Err(e) => warn!(upstream = %name, "cannot relay OTLP {} there: {e}", signal.unit()),
        }
    }
    let emf = s.emf.clone().map(|namespace| {
        let q = Queue::new("EMF (stdout)", Signal::Metrics.queued(), s.buffer, otlp::LIMITS);
        (otlp::emf::Emf::stdout(namespace), q)
    });
    (sinks, emf)
}

/// An app with a proxy in its environment would send its telemetry for the agent (OTLP to
/// 127.0.0.1:4318, X-Ray sampling to 127.0.0.1:2000) through that proxy too: its HTTP clients
/// honour `HTTP_PROXY` and `NO_PROXY` rarely lists loopback. So the app's `NO_PROXY` (both
/// spellings) gets the loopback names added.
fn local_bypass(app_env: &HashMap<String, String>) -> Vec<(String, String)> {
    const PROXIES: [&str; 6] = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];
    if !PROXIES.iter().any(|v| app_env.get(*v).is_some_and(|u| !u.trim().is_empty())) {
        return Vec::new();
    }
    let have = app_env.get("NO_PROXY").or_else(|| app_env.get("no_proxy")).map(|s| s.trim()).unwrap_or("");
    let mut list: Vec<&str> = have.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    for local in ["127.0.0.1", "localhost", "::1"] {
        if !list.contains(&local) {
            list.push(local);
        }
    }
    let value = list.join(",");
    info!(no_proxy = %value, "the app has a proxy in its environment; its telemetry for the agent stays local (NO_PROXY)");
    vec![("NO_PROXY".to_string(), value.clone()), ("no_proxy".to_string(), value)]
}

/// StatsD's socket, non-blocking; a taken port is said once and StatsD is off.
fn bind_statsd(address: SocketAddr) -> Option<std::net::UdpSocket> {
    let bound = std::net::UdpSocket::bind(address).and_then(|u| u.set_nonblocking(true).map(|_| u));
    match bound {
        Ok(u) => Some(u),
        Err(e) => {
            warn!(address = %address, error = %e, "cannot receive StatsD there (is a collector sidecar or a StatsD agent on this port?); StatsD is off");
            None
        }
    }
}

impl Relays {
    /// Each sink's export health, for `--health-exports-failing`.
    pub fn exports(&self) -> &[(String, Arc<ExportHealth>)] {
        &self.exports
    }

    /// Starts the threads (once; later calls do nothing).
    pub fn activate(&self) {
        let Some(parts) = self.parts.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        if parts.xray.is_none() && parts.otlp.is_none() {
            return;
        }
        let (stop, deadline) = Stop::new();
        let relay = std::thread::Builder::new()
            .name("relay".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("BUG: the relay's runtime");
                rt.block_on(pipeline(parts, deadline))
            })
            .expect("BUG: cannot start the relay thread");
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(Running { stop, relay });
    }

    /// Whether something waits in a socket no thread reads yet.
    fn waiting(&self) -> bool {
        let g = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = g.as_ref() else { return false };
        let tcp = |l: &std::net::TcpListener| readable(l);
        p.xray.as_ref().is_some_and(|x| xray::receiver::waiting(&x.sockets.udp) || x.sockets.sampling.as_ref().is_some_and(tcp))
            || p.otlp.as_ref().is_some_and(|o| {
                tcp(&o.listener) || o.grpc.as_ref().is_some_and(tcp) || o.statsd.as_ref().is_some_and(|(u, _)| xray::receiver::waiting(u))
            })
    }

    /// Stops receiving, sends what is left within `flush_timeout`, and returns the final counts.
    pub fn shutdown(&self, flush_timeout: Option<Duration>) -> Report {
        if self.waiting() {
            self.activate();
        }
        let Some(Running { stop, relay }) = self.running.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Report::default(); // never started, nothing arrived
        };
        stop.stop(tokio::time::Instant::now() + flush_timeout.unwrap_or(self.flush_timeout));
        relay.join().unwrap_or_else(|_| {
            tracing::error!("the relay had stopped after a panic: what it held is lost and it has no final counts");
            Report::default()
        })
    }
}

/// Whether a listener has a connection waiting.
fn readable(l: &std::net::TcpListener) -> bool {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd { fd: l.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, no wait.
    unsafe { libc::poll(&mut fd, 1, 0) > 0 }
}

/// The relay thread's task: runs sources, converters and sinks until the stop, then stops them
/// in that order.
async fn pipeline(parts: Parts, mut stop: Deadline) -> Report {
    crate::fault::point("relay");
    let aws = parts.aws;
    let sources = CancellationToken::new();
    let (sinks_stop, sinks_deadline) = Stop::new();
    let (converters_stop, converters_deadline) = Stop::new();
    let mut source_tasks: Vec<JoinHandle<()>> = Vec::new();
    let mut converters: Vec<JoinHandle<Snapshot>> = Vec::new();
    let mut sinks: Vec<(String, JoinHandle<Snapshot>)> = Vec::new();
    let mut receiver: Option<(SocketAddr, tokio::sync::oneshot::Receiver<()>)> = None;

    let door = parts.otlp.as_ref().map(|o| o.door.clone());
    if let Some(o) = parts.otlp {
        let listener = tokio::net::TcpListener::from_std(o.listener).expect("BUG: a bound listener");
        let d = o.door.clone();
        source_tasks.push(tokio::spawn(serve::serve("OTLP", listener, sources.clone(), move |req| otlp::receiver::handle(req, d.clone()))));
        if let (Some((udp, service)), Some(ingest)) = (o.statsd, o.door.get(Signal::Metrics)) {
            if let Ok(udp) = tokio::net::UdpSocket::from_std(udp) {
                let statsd = statsd::serve(udp, ingest.clone(), sources.clone(), service);
                source_tasks.push(tokio::spawn(crate::panics::named("StatsD receiver", statsd)));
            }
        }
        if let Some(l) = o.grpc.and_then(|l| tokio::net::TcpListener::from_std(l).ok()) {
            let d = o.door.clone();
            source_tasks.push(tokio::spawn(serve::serve("OTLP/gRPC", l, sources.clone(), move |req| otlp::receiver::handle(req, d.clone()))));
        }
        for (sink, q) in o.sinks {
            let name = q.name.clone();
            sinks.push((name.clone(), batcher::spawn(format!("sink {name}"), sink, q, o.interval, sinks_deadline.clone())));
        }
        if let Some((emf, q)) = o.emf {
            let name = q.name.clone();
            sinks.push((name.clone(), batcher::spawn(format!("sink {name}"), emf, q, o.interval, sinks_deadline.clone())));
        }
        if let (Some(q), Some(x)) = (o.segments, parts.xray_queue.as_ref()) {
            let sink = xray::from_otlp::ToSegments::new(x.queue.clone(), parts.indexed.clone(), converters_deadline.clone());
            converters.push(batcher::spawn("OTLP to segments converter".into(), sink, q, o.interval, converters_deadline.clone()));
        }
    }
    if let (Some(x), Some(xq)) = (parts.xray, parts.xray_queue.as_ref()) {
        if let Some(l) = x.sockets.sampling.and_then(|l| tokio::net::TcpListener::from_std(l).ok()) {
            source_tasks.push(tokio::spawn(xray::sampling::serve(l, sources.clone(), aws.clone())));
        }
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let address = x.sockets.address;
        let (q, token, udp, filter) = (xq.queue.clone(), sources.clone(), x.sockets.udp, parts.filter_health);
        let spawned = std::thread::Builder::new().name("xray-receive".into()).spawn(move || {
            xray::receiver::receive(udp, q, token, filter);
            let _ = done_tx.send(());
        });
        match spawned {
            Ok(_) => receiver = Some((address, done_rx)),
            Err(e) => warn!(error = %e, "cannot start the X-Ray receiver thread; X-Ray segments are not received"),
        }
    }
    if let Some(XrayQueue { queue, interval }) = parts.xray_queue {
        match (parts.to_otlp, door.as_ref().and_then(|d| d.get(Signal::Traces))) {
            (true, Some(ingest)) => {
                let sink = xray::to_otlp::ToOtlp(ingest.clone());
                converters.push(batcher::spawn("X-Ray to OTLP converter".into(), sink, queue, interval, converters_deadline.clone()));
            }
            _ => {
                let sink = xray::sink::PutTraceSegments::new(aws.clone());
                let name = queue.name.clone();
                sinks.push((name.clone(), batcher::spawn(format!("sink {name}"), sink, queue, interval, sinks_deadline.clone())));
            }
        }
    }

    let deadline = stop.wait().await;
    // 1. Sources: no more input; the socket drained, the requests under way answered.
    sources.cancel();
    if let Some((address, done)) = receiver {
        xray::receiver::wake(address);
        let _ = tokio::time::timeout_at(deadline, done).await;
    }
    for t in source_tasks {
        let _ = tokio::time::timeout_at(deadline, t).await;
    }
    // 2. Converters: into the sinks' queues (they cannot fail, so this is immediate).
    converters_stop.stop(deadline);
    for c in converters {
        let _ = c.await;
    }
    // 3. Sinks: all at once, until the deadline.
    sinks_stop.stop(deadline);
    let mut report = Report::default();
    for (name, s) in sinks {
        report.upstreams.push((name, s.await.unwrap_or_default()));
    }
    for i in door.iter().flat_map(|d| d.ingests()) {
        let unit = i.kind.unit();
        // A request still under way when the deadline passed may have queued data after its
        // sink's last look: counted, so the books still balance.
        for q in &i.queues {
            let late = q.clear();
            if late > 0 {
                counters::Counters::add(&q.counters.dropped, late);
                warn!(upstream = %q.name, count = late, "OTLP {unit} arrived after the flush deadline; counted as dropped");
            }
        }
        let r = i.counters.snapshot();
        info!(received = r.received, rejected = r.rejected, throttled = r.throttled, filtered = r.filtered, "OTLP {unit} received, final counts");
    }
    report
}
