//! The background prober: one thread that probes the app and records each result.
//!
//! Until the first pass it probes often (every 100 ms with `--wait-ready`, else at most every
//! second), so readiness is seen early; after that, every `--health-interval`. It stops when
//! the `stop` channel's sender is dropped. If it panics, the server probes on each question
//! instead (the verdict stays live).

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use healthcheck::Probe;
use tracing::{debug, info, warn};

use super::{HealthConfig, State};

pub fn spawn(probe: Probe, cfg: HealthConfig, state: Arc<State>, stop: Receiver<()>) {
    std::thread::Builder::new()
        .name("health-prober".into())
        .spawn(move || run(probe, cfg, state, stop))
        .expect("BUG: cannot start the health prober thread");
}

/// Tells the state when the prober unwinds, so the server takes over probing.
struct OnPanic(Arc<State>);

impl Drop for OnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.set_prober_stopped();
        }
    }
}

fn run(probe: Probe, cfg: HealthConfig, state: Arc<State>, stop: Receiver<()>) {
    let _on_panic = OnPanic(state.clone());
    let started = Instant::now();
    let early = if cfg.wait_ready { Duration::from_millis(100) } else { Duration::from_secs(1) };
    let mut ready = false;
    let mut warned_not_ready = false;
    loop {
        crate::fault::point("health-prober");
        let result = probe.check(cfg.timeout);
        if let Err(e) = &result {
            debug!(probe = %probe.describe(), error = %e, "health probe failed");
        }
        let passed = result.is_ok();
        if state.record(result) {
            ready = true;
            let ms = started.elapsed().as_millis();
            if cfg.wait_ready {
                info!(probe = %probe.describe(), "ready after {ms} ms");
            } else {
                debug!(probe = %probe.describe(), "first health probe passed after {ms} ms");
            }
        }
        if cfg.wait_ready && !ready && !warned_not_ready && !cfg.start_period.is_zero() && started.elapsed() >= cfg.start_period {
            warned_not_ready = true;
            warn!(probe = %probe.describe(), start_period = %humantime::format_duration(cfg.start_period), "not ready within the start period");
        }
        let wait = if ready || passed { cfg.interval } else { cfg.interval.min(early) };
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => continue,
            _ => return,
        }
    }
}
