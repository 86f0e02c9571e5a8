//! `--refresh-interval`: re-read the secrets now and then, and act when they change.
//!
//! A thread re-resolves every source at the interval (±10% jitter, so a fleet spreads out) and
//! compares names, versions and value fingerprints with what the child got. On a change it
//! rewrites `--secrets-dir` and tells the supervisor, per `--on-change`: `restart` (the normal
//! graceful stop, then a start with the new environment), `signal:SIG` (for apps that re-read
//! their secrets files on a signal), or `exit` (let ECS start a fresh task). A failed refresh
//! keeps the last good values and is logged once, until a refresh succeeds again.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use tracing::{info, warn};

use super::{child_env, files, Resolved, SecretsConfig};
use crate::signals::Signo;
use crate::supervisor::{Control, ControlSender};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnChange {
    Restart,
    Signal(Signo),
    Exit,
}

impl FromStr for OnChange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "restart" => Ok(OnChange::Restart),
            "exit" => Ok(OnChange::Exit),
            other => match other.strip_prefix("signal:") {
                Some(sig) => sig.parse().map(OnChange::Signal).map_err(|e| e.to_string()),
                None => Err(format!("{other:?} is not restart, exit or signal:SIG (for example signal:HUP)")),
            },
        }
    }
}

/// What the child got: name -> (source, version, fingerprint). Values themselves are not kept.
pub type Snapshot = BTreeMap<String, (String, String, String)>;

pub fn snapshot(r: &Resolved) -> Snapshot {
    r.vars.iter().map(|v| (v.name.clone(), (v.source.clone(), v.version.clone(), v.value.fingerprint()))).collect()
}

pub struct Refresher {
    pub cfg: SecretsConfig,
    pub interval: Duration,
    pub on_change: OnChange,
    pub no_override: bool,
    pub secrets_dir: Option<std::sync::Arc<files::SecretsDir>>,
    pub last: Snapshot,
    pub control: ControlSender,
}

impl Refresher {
    /// Runs until `stop`'s sender is dropped.
    pub fn spawn(self, stop: Receiver<()>) {
        std::thread::Builder::new()
            .name("secrets-refresh".into())
            .spawn(move || self.run(stop))
            .expect("BUG: cannot start the secrets refresh thread");
    }

    fn run(mut self, stop: Receiver<()>) {
        let mut failing = false;
        loop {
            let wait = self.interval.mul_f64(0.9 + 0.2 * fastrand::f64());
            match stop.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            crate::fault::point("secrets-refresh");
            match self.cfg.resolve_now() {
                Ok(resolved) => {
                    if failing {
                        info!("secrets refresh works again");
                        failing = false;
                    }
                    self.compare(resolved);
                }
                Err(e) if !failing => {
                    failing = true;
                    warn!("secrets refresh failed; the app keeps its current values: {e}");
                }
                Err(_) => {}
            }
        }
    }

    fn compare(&mut self, resolved: Resolved) {
        let now = snapshot(&resolved);
        if now == self.last {
            return;
        }
        let changed: Vec<&str> = self
            .last
            .keys()
            .chain(now.keys())
            .filter(|k| self.last.get(*k) != now.get(*k))
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        info!(names = %changed.join(","), on_change = ?self.on_change, "secrets changed");
        if let Some(dir) = &self.secrets_dir {
            if let Err(e) = dir.write_all(&resolved) {
                warn!(dir = %dir.path().display(), error = %e, "cannot rewrite the secrets files");
            }
        }
        let command = match self.on_change {
            OnChange::Restart => Control::Restart(child_env(&resolved, self.no_override)),
            OnChange::Signal(sig) => Control::Signal(sig),
            OnChange::Exit => Control::Exit,
        };
        self.control.send(command);
        self.last = now;
    }
}
