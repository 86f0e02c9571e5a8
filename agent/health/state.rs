//! What the supervisor knows about the app's health, and the one-line verdict `agent health`
//! prints.
//!
//! Probe results count the way Docker and ECS count them: failures before the first passing
//! probe and within the start period are not counted; after that, `retries` consecutive
//! counted failures make the app unhealthy, and one pass resets the count. Before the first pass
//! the verdict is `starting` (exit 1, which ECS ignores during its own startPeriod). Whatever
//! the probe says, an app that is not running is unhealthy.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use healthcheck::{ProbeError, Success};

use super::HealthConfig;
use crate::supervisor::ChildEvents;

/// The answer to `agent health`: exit 0 when `healthy`, and `line` on stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub healthy: bool,
    pub line: String,
}

#[derive(Debug)]
enum Child {
    NotStarted,
    LoadingSecrets,
    Running { pid: i32, since: Instant },
    Exited { code: u8 },
    Stopping,
}

#[derive(Debug, Default)]
struct Probing {
    last: Option<Result<Success, ProbeError>>,
    ever_passed: bool,
    counted_failures: u32,
    failing_since: Option<SystemTime>,
}

#[derive(Debug)]
struct Inner {
    child: Child,
    probing: Probing,
}

#[derive(Debug)]
pub struct State {
    /// With `--health-exports-failing`: trace exports failing longer than this are unhealthy.
    exports: Mutex<Vec<(String, std::sync::Arc<crate::relay::counters::ExportHealth>, Duration)>>,
    inner: Mutex<Inner>,
    started: Instant,
    start_period: Duration,
    retries: u32,
    probe: Option<String>,
    /// `--health-exports-failing` is set: a side job stopped by a panic is unhealthy too.
    panics_unhealthy: bool,
    /// The prober thread stopped (a panic): the server probes on each question instead.
    prober_stopped: std::sync::atomic::AtomicBool,
}

impl State {
    pub fn new(cfg: &HealthConfig) -> Self {
        State {
            exports: Mutex::new(Vec::new()),
            inner: Mutex::new(Inner { child: Child::NotStarted, probing: Probing::default() }),
            started: Instant::now(),
            start_period: cfg.start_period,
            retries: cfg.retries,
            probe: cfg.probe.as_ref().map(|p| p.describe()),
            panics_unhealthy: cfg.exports_failing.is_some(),
            prober_stopped: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The prober is gone (it panicked); from now on each question probes (`server.rs`).
    pub fn set_prober_stopped(&self) {
        self.prober_stopped.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn prober_stopped(&self) -> bool {
        self.prober_stopped.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave this state half-written; keep serving it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes trace exports failing for longer than `limit` count as unhealthy.
    pub fn watch_exports(&self, name: &str, exports: std::sync::Arc<crate::relay::counters::ExportHealth>, limit: Duration) {
        self.exports.lock().unwrap_or_else(|e| e.into_inner()).push((name.to_string(), exports, limit));
    }

    /// An unhealthy verdict when trace exports have failed for too long.
    fn exports_verdict(&self) -> Option<Verdict> {
        let g = self.exports.lock().unwrap_or_else(|e| e.into_inner());
        g.iter().find_map(|(name, exports, limit)| {
            let (since, reason) = exports.failing()?;
            let failing_for = since.elapsed().unwrap_or_default();
            (failing_for > *limit).then(|| Verdict {
                healthy: false,
                line: format!(
                    "unhealthy: {name} exports failing since {} (longer than {}): {reason}",
                    clock(since),
                    humantime::format_duration(*limit)
                ),
            })
        })
    }

    /// The agent is fetching the app's secrets (the app is not started until they are loaded).
    pub fn loading_secrets(&self) {
        self.lock().child = Child::LoadingSecrets;
    }

    /// Records one probe result; true if it was the first pass.
    pub fn record(&self, result: Result<Success, ProbeError>) -> bool {
        let mut g = self.lock();
        let p = &mut g.probing;
        let first_pass = result.is_ok() && !p.ever_passed;
        match &result {
            Ok(_) => {
                p.ever_passed = true;
                p.counted_failures = 0;
                p.failing_since = None;
            }
            Err(_) if p.ever_passed || self.started.elapsed() >= self.start_period => {
                p.counted_failures += 1;
                p.failing_since.get_or_insert_with(SystemTime::now);
            }
            Err(_) => {}
        }
        p.last = Some(result);
        first_pass
    }

    pub fn verdict(&self) -> Verdict {
        let mut v = self.verdict_of_app();
        if v.healthy {
            if let Some(exports) = self.exports_verdict() {
                return exports;
            }
            let stopped = crate::panics::stopped();
            if let Some(first) = stopped.first() {
                let names = stopped.iter().map(|s| s.component.as_str()).collect::<Vec<_>>().join(", ");
                if self.panics_unhealthy {
                    let line = format!("unhealthy: the agent's {names} stopped after a panic at {}: {}", clock(first.at), first.message);
                    return Verdict { healthy: false, line };
                }
                v.line.push_str(&format!(" (the agent's {names} stopped after a panic at {}; see its log)", clock(first.at)));
            }
        }
        v
    }

    fn verdict_of_app(&self) -> Verdict {
        let g = self.lock();
        let verdict = |healthy: bool, line: String| Verdict { healthy, line };
        let (pid, since) = match g.child {
            Child::NotStarted => return verdict(false, "starting: the app has not been started yet".into()),
            Child::LoadingSecrets => return verdict(false, "starting: loading secrets; the app starts once they are all loaded".into()),
            Child::Stopping => return verdict(false, "unhealthy: stopping (the agent was asked to stop)".into()),
            Child::Exited { code } => return verdict(false, format!("unhealthy: the app is not running (exited with code {code})")),
            Child::Running { pid, since } => (pid, since),
        };
        let Some(probe) = &self.probe else {
            let up = humantime::format_duration(Duration::from_secs(since.elapsed().as_secs()));
            return verdict(true, format!("healthy: the app is running (pid {pid}, up {up}); no probe configured"));
        };
        let p = &g.probing;
        match &p.last {
            None => verdict(false, format!("starting: {probe}: no probe has finished yet")),
            Some(Ok(s)) => verdict(true, format!("healthy: {probe} -> {}", success(s))),
            Some(Err(e)) => {
                let since = p.failing_since.map(clock).unwrap_or_default();
                let n = p.counted_failures;
                let failures = if n == 1 { "1 failure".to_string() } else { format!("{n} failures") };
                if n >= self.retries {
                    verdict(false, format!("unhealthy: {probe} -> {e}, {failures} since {since}"))
                } else if p.ever_passed {
                    verdict(true, format!("healthy: {probe} -> {e} ({failures} since {since}; unhealthy after {})", self.retries))
                } else if n == 0 {
                    let sp = humantime::format_duration(self.start_period);
                    verdict(false, format!("starting: {probe} -> {e} (not passed yet; within the start period of {sp})"))
                } else {
                    verdict(false, format!("starting: {probe} -> {e} (not passed yet; {failures} since {since}, unhealthy after {})", self.retries))
                }
            }
        }
    }
}

fn success(s: &Success) -> String {
    let ms = s.elapsed.as_secs_f64() * 1000.0;
    match s.status {
        Some(code) => format!("{code} in {ms:.1}ms"),
        None => format!("connected in {ms:.1}ms"),
    }
}

/// `12:00:03Z`: the time of day is what an operator compares with other logs.
fn clock(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.get(11..).unwrap_or(&s).to_string()
}

impl ChildEvents for State {
    fn started(&self, pid: i32) {
        self.lock().child = Child::Running { pid, since: Instant::now() };
    }
    fn exited(&self, code: u8) {
        let mut g = self.lock();
        if !matches!(g.child, Child::Stopping) {
            g.child = Child::Exited { code };
        }
    }
    fn stopping(&self) {
        self.lock().child = Child::Stopping;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use healthcheck::{HttpProbe, Probe};

    fn state(start_period: Duration, retries: u32) -> State {
        let cfg = HealthConfig {
            probe: Some(Probe::Http(HttpProbe::new("http://127.0.0.1:1/h").unwrap())),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            start_period,
            retries,
            serve_on: None,
            wait_ready: false,
            exports_failing: None,
        };
        let s = State::new(&cfg);
        s.started(42);
        s
    }
    const OK: Result<Success, ProbeError> = Ok(Success { status: Some(200), elapsed: Duration::from_millis(3) });
    fn err() -> Result<Success, ProbeError> {
        Err(ProbeError::Status { status: 503 })
    }

    #[test]
    fn retries_count_consecutive_failures_after_a_pass() {
        let s = state(Duration::ZERO, 3);
        assert!(s.record(OK));
        assert!(s.verdict().healthy);
        s.record(err());
        s.record(err());
        let v = s.verdict();
        assert!(v.healthy && v.line.contains("2 failures since"), "{v:?}");
        s.record(err());
        let v = s.verdict();
        assert!(!v.healthy, "{v:?}");
        assert!(v.line.starts_with("unhealthy: GET http://127.0.0.1:1/h -> 503, 3 failures since "), "{v:?}");
        assert!(!s.record(OK), "not the first pass");
        assert!(s.verdict().healthy);
    }

    #[test]
    fn start_period_failures_do_not_count() {
        let s = state(Duration::from_secs(3600), 1);
        s.record(err());
        s.record(err());
        let v = s.verdict();
        assert!(!v.healthy && v.line.starts_with("starting:") && v.line.contains("start period"), "{v:?}");
        s.record(OK);
        s.record(err());
        assert!(!s.verdict().healthy, "after a pass, failures count even within the start period");
    }

    #[test]
    fn without_start_period_failures_count_from_the_first() {
        let s = state(Duration::ZERO, 2);
        s.record(err());
        assert!(s.verdict().line.starts_with("starting:"));
        s.record(err());
        assert!(s.verdict().line.starts_with("unhealthy:"));
    }

    #[test]
    fn a_dead_or_stopping_app_is_unhealthy_whatever_the_probe_said() {
        let s = state(Duration::ZERO, 3);
        s.record(OK);
        s.exited(1);
        assert_eq!(s.verdict().line, "unhealthy: the app is not running (exited with code 1)");
        s.started(43);
        s.stopping();
        s.exited(0);
        assert!(s.verdict().line.contains("stopping"));
    }
}
