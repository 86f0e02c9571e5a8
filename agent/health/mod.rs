//! Health: the supervisor probes the app in the background and serves what it knows on a
//! local socket; `agent health` (the ECS `healthCheck` command) asks it and exits 0 or 1.
//!
//! Threads, not an async runtime: one prober, one socket server, both blocking and tiny, and
//! nothing to start in `agent health` itself, which must answer in a few milliseconds inside a
//! task that may have a quarter of a vCPU.

mod prober;
mod server;
pub mod settings;
pub mod socket;
mod state;

use std::sync::mpsc;
use std::sync::Arc;

pub use settings::HealthConfig;
pub use state::{State, Verdict};

/// The running health machinery. Dropping it stops the prober.
pub struct Health {
    pub state: Arc<State>,
    _stop: mpsc::Sender<()>,
}

/// Binds the socket (an error if it is taken) and starts the prober and the server.
pub fn start(cfg: HealthConfig) -> Result<Option<Health>, socket::BindError> {
    let Some(name) = cfg.serve_on.clone() else { return Ok(None) };
    let listener = socket::bind(&name)?;
    let state = Arc::new(State::new(&cfg));
    let (stop_tx, stop_rx) = mpsc::channel();
    if let Some(probe) = cfg.probe.clone() {
        prober::spawn(probe, cfg.clone(), state.clone(), stop_rx);
    }
    server::spawn(listener, state.clone(), cfg.probe.clone().map(|p| (p, cfg.timeout)));
    tracing::info!(socket = %name, probe = %cfg.probe.as_ref().map_or("none".into(), |p| p.describe()), "serving health");
    Ok(Some(Health { state, _stop: stop_tx }))
}
