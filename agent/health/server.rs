//! The health socket server: each connection gets the current verdict as one line, then EOF.
//!
//! There is no request to parse: connecting is the question, and nothing is read, so no client
//! can make it buffer anything. A single thread answers; each
//! answer is a lock, a format and a write, so a hundred `agent health` calls at once queue for
//! microseconds in the listen backlog. If this thread panics, its socket closes with it and
//! `agent health` probes the app directly.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::time::Duration;

use healthcheck::Probe;

use super::State;

/// `probe` (with its timeout) is used only if the prober thread has stopped after a panic.
pub fn spawn(listener: UnixListener, state: Arc<State>, probe: Option<(Probe, Duration)>) {
    std::thread::Builder::new()
        .name("health-server".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else {
                    // Out of file descriptors, say: pause rather than spin on the error.
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                crate::fault::point("health-server");
                if let (Some((probe, timeout)), true) = (&probe, state.prober_stopped()) {
                    state.record(probe.check(*timeout));
                }
                let v = state.verdict();
                let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = conn.write_all(format!("{}\n", v.line).as_bytes());
            }
        })
        .expect("BUG: cannot start the health server thread");
}
