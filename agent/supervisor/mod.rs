//! The supervisor: runs the child as a correct PID 1 would, from start to the agent's exit.
//!
//! One loop on one thread does everything, in this order each time it wakes: act on a deadline
//! that has passed, read pending signals (forwarding them, after `--rewrite-signal`), and reap
//! (`reaper.rs`, the only `waitpid` caller). It wakes on the signalfd — SIGCHLD included — or
//! at the next deadline, so it never polls on a timer while the app runs.
//!
//! The life of a child:
//! 1. started in its own process group (`spawn.rs`);
//! 2. SIGTERM/SIGINT to the agent start a stop: the signal is forwarded and the child's group
//!    and every other descendant get SIGKILL when `--stop-timeout` runs out;
//! 3. when the main child has exited, whatever it left behind gets SIGTERM, then SIGKILL after
//!    `--orphan-grace` (or sooner, at the stop deadline);
//! 4. the agent returns only when it has no child left at all, so nothing is orphaned to the
//!    kernel's SIGKILL when PID 1 exits.

pub mod control;
mod procs;
mod reaper;
pub mod spawn;
mod terminal;

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::signal::SigSet;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;
use tracing::{debug, info, warn};

use crate::cli::{RestartPolicy, SignalTarget};
use crate::config::RunConfig;
use crate::exit::code_of_status;
use crate::signals::{self, Signo};
pub use control::{Control, ControlReceiver, ControlSender};
pub use spawn::{ChildSpec, SpawnError};

/// After a SIGKILL round, how often to look again for processes that forked in the meantime.
const REKILL_EVERY: Duration = Duration::from_millis(100);
/// The longest delay between restarts, however many there were.
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(60);
/// Signals held during a restart backoff reach the new child this long after it starts, so it
/// has had a moment to set its handlers (a signal at exec would meet the default action).
const HELD_DELAY: Duration = Duration::from_millis(100);

/// How the supervised run ended.
#[derive(Debug)]
pub struct Outcome {
    /// The exit code for the agent, after `--map-exit`.
    pub code: u8,
    /// Why, in words, for the exit log line.
    pub reason: String,
}

/// What others (health) want to know about the child, told as it happens.
pub trait ChildEvents: Send + Sync {
    fn started(&self, _pid: i32) {}
    fn exited(&self, _code: u8) {}
    fn stopping(&self) {}
}

/// How one child's life ended.
struct End {
    status: libc::c_int,
    killed: bool,
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Blocks every signal the agent handles, in the calling thread and so in every thread it
/// starts later. Call it first thing, before any thread or child exists.
pub fn block_signals() -> nix::Result<SigSet> {
    let set = signals::handled_set();
    set.thread_block()?;
    Ok(set)
}

/// When the agent is not PID 1 (`docker --init`, ECS `initProcessEnabled`, a laptop), orphans
/// would go to the real init; registering as a child subreaper brings them to the agent.
pub fn adopt_orphans() {
    let pid = nix::unistd::getpid();
    if pid.as_raw() == 1 {
        return;
    }
    match nix::sys::prctl::set_child_subreaper(true) {
        Ok(()) => info!(pid = pid.as_raw(), "not PID 1; registered as child subreaper, so orphaned processes are still reaped here"),
        Err(e) => warn!(error = %e, "not PID 1 and could not become a child subreaper; orphans go to the real init"),
    }
}

pub struct Supervisor<'a> {
    cfg: &'a RunConfig,
    spec: ChildSpec,
    signals: SignalFd,
    /// Set once SIGTERM/SIGINT arrived: when everything left gets SIGKILL.
    stop_deadline: Option<Instant>,
    events: Option<&'a dyn ChildEvents>,
    control: Option<ControlReceiver>,
    /// A `Control::Restart` in progress: the environment for the next child, and when the
    /// current one is SIGKILLed if it has not exited.
    replacement: Option<(Vec<(std::ffi::OsString, std::ffi::OsString)>, Instant)>,
    /// Each runs once, when a child has been running for its duration (see `when_settled`).
    settled: Vec<(Duration, Box<dyn FnOnce() + 'a>)>,
    /// Signals that arrived while no child ran (a restart backoff): delivered to the next one.
    held: Vec<Signo>,
    /// Job control, when the agent runs on a terminal under a shell (`terminal.rs`).
    terminal: Option<terminal::Terminal>,
    /// The child was seen stopped (job control) and not continued since.
    child_stopped: bool,
}

impl<'a> Supervisor<'a> {
    /// `handled` must be the set returned by [`block_signals`].
    pub fn new(cfg: &'a RunConfig, spec: ChildSpec, handled: &SigSet) -> nix::Result<Self> {
        let signals = SignalFd::with_flags(handled, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Supervisor {
            cfg,
            spec,
            signals,
            stop_deadline: None,
            events: None,
            control: None,
            replacement: None,
            settled: Vec::new(),
            held: Vec::new(),
            terminal: terminal::Terminal::detect(),
            child_stopped: false,
        })
    }

    /// Runs `f` once, when a child has been running for `after` (never on a short-lived child).
    pub fn when_settled(mut self, after: Duration, f: impl FnOnce() + 'a) -> Self {
        self.settled.push((after, Box::new(f)));
        self.settled.sort_by_key(|(d, _)| *d);
        self
    }

    /// Takes commands from other threads (see `control.rs`).
    pub fn with_control(mut self, control: ControlReceiver) -> Self {
        self.control = Some(control);
        self
    }

    /// Tells `events` when the child starts, exits, and when a stop begins.
    pub fn with_events(mut self, events: &'a dyn ChildEvents) -> Self {
        self.events = Some(events);
        self
    }

    /// Runs the child (restarting it if so configured) until the agent should exit.
    pub fn run(mut self) -> Result<Outcome, SpawnError> {
        let mut restarts = 0u32;
        let mut delay = self.cfg.restart_backoff;
        loop {
            let child = spawn::spawn(&self.spec)?;
            info!(pid = child.as_raw(), program = %self.spec.program_name(), "started child");
            if let Some(e) = self.events {
                e.started(child.as_raw());
            }
            let end = self.watch(child);
            if let Some((env, _)) = self.replacement.take() {
                if self.stop_deadline.is_none() {
                    info!("starting the child again with refreshed secrets");
                    self.spec.env = env;
                    continue;
                }
            }
            let code = code_of_status(end.status);
            let wants_restart = self.cfg.restart == RestartPolicy::OnFailure && code != 0 && self.stop_deadline.is_none();
            if wants_restart && restarts < self.cfg.max_restarts {
                restarts += 1;
                warn!(
                    code,
                    restart = restarts,
                    max_restarts = self.cfg.max_restarts,
                    delay = %humantime::format_duration(delay),
                    "child failed; restarting"
                );
                if self.pause(delay) {
                    delay = (delay * 2).min(MAX_RESTART_BACKOFF);
                    continue;
                }
            } else if wants_restart {
                warn!(max_restarts = self.cfg.max_restarts, "child failed again; no restarts left");
            }
            return Ok(self.outcome(end));
        }
    }

    fn outcome(&self, end: End) -> Outcome {
        let raw = code_of_status(end.status);
        let code = self.cfg.map_exit(raw);
        let mut reason = if libc::WIFSIGNALED(end.status) {
            format!("child died of {}", Signo(libc::WTERMSIG(end.status)))
        } else {
            format!("child exited with code {raw}")
        };
        if end.killed {
            reason.push_str(" after the stop timeout ran out");
        }
        if code != raw {
            reason.push_str(&format!(", reported as {code} (--map-exit)"));
        }
        Outcome { code, reason }
    }

    /// Watches one child until it and every descendant are gone; returns its wait status.
    fn watch(&mut self, child: Pid) -> End {
        let mut status: Option<libc::c_int> = None;
        let mut leftovers_deadline: Option<Instant> = None;
        let mut killed = false;
        let mut next_rekill = Instant::now();
        let started = Instant::now();
        loop {
            let now = Instant::now();
            while status.is_none() && self.settled.first().is_some_and(|(after, _)| now >= started + *after) {
                let (_, f) = self.settled.remove(0);
                f();
            }
            if status.is_none() && !self.held.is_empty() && now >= started + HELD_DELAY {
                for sig in std::mem::take(&mut self.held) {
                    info!(signal = %sig, "delivering a signal that arrived while waiting to restart");
                    self.on_signal(sig, child, true);
                }
            }
            let replace_due = self.replacement.as_ref().map(|(_, d)| *d);
            let due = if status.is_none() { earliest(self.stop_deadline, replace_due) } else { leftovers_deadline };
            if !killed && due.is_some_and(|d| now >= d) {
                killed = true;
                let n = self.kill_everything(child, status.is_none());
                if status.is_none() {
                    warn!(
                        killed = n,
                        stop_timeout = %humantime::format_duration(self.cfg.stop_timeout),
                        "child did not exit within the stop timeout; sent SIGKILL to its group and every descendant"
                    );
                } else {
                    warn!(killed = n, "leftover processes did not exit after SIGTERM; sent them SIGKILL");
                }
                next_rekill = now + REKILL_EVERY;
            } else if killed && now >= next_rekill {
                // Something forked between the /proc walk and the kill: kill again.
                self.kill_everything(child, status.is_none());
                next_rekill = now + REKILL_EVERY;
            }
            let settle_wake = if status.is_none() { self.settled.first().map(|(after, _)| started + *after) } else { None };
            let held_wake = (status.is_none() && !self.held.is_empty()).then_some(started + HELD_DELAY);
            let settle_wake = earliest(settle_wake, held_wake);
            let wake = earliest(if killed { Some(next_rekill) } else { due }, settle_wake);
            self.wait(wake);

            while let Some(sig) = self.next_signal() {
                self.on_signal(sig, child, status.is_none());
                if let (Some(d), Some(stop)) = (leftovers_deadline, self.stop_deadline) {
                    leftovers_deadline = Some(d.min(stop));
                }
            }
            let (commands, open) = self.control.as_ref().map_or((Vec::new(), true), ControlReceiver::drain);
            if !open {
                warn!("the secrets refresher has stopped; the app keeps the values it has");
                self.control = None;
            }
            for c in commands {
                self.on_control(c, child, status.is_none());
            }

            let reaped = reaper::reap(status.is_none().then_some(child), self.terminal.is_some());
            if let (Some(sig), Some(t), None) = (reaped.stopped, &self.terminal, status) {
                self.child_stopped = true;
                t.child_stopped(child, Signo(sig));
            }
            if reaped.others > 0 {
                debug!(count = reaped.others, "reaped orphaned processes");
            }
            if let Some(st) = reaped.main {
                status = Some(st);
                info!(pid = child.as_raw(), code = code_of_status(st), "child exited");
                if let Some(e) = self.events {
                    e.exited(code_of_status(st));
                }
                if !reaped.none_left {
                    let n = procs::signal_descendants(Signo(libc::SIGTERM));
                    let grace_end = Instant::now() + self.cfg.orphan_grace;
                    leftovers_deadline = Some(self.stop_deadline.map_or(grace_end, |s| s.min(grace_end)));
                    info!(
                        count = n,
                        grace = %humantime::format_duration(self.cfg.orphan_grace),
                        "child left processes behind; sent them SIGTERM"
                    );
                }
            }
            if let (Some(st), true) = (status, reaped.none_left) {
                return End { status: st, killed };
            }
        }
    }

    /// Handles one signal the agent received while `child` runs (or has just exited).
    fn on_signal(&mut self, sig: Signo, child: Pid, child_alive: bool) {
        if sig.0 == libc::SIGCHLD {
            return;
        }
        let forwarded_as = self.cfg.rewrites.apply(sig);
        if signals::is_stop(sig) && forwarded_as.is_none() {
            info!(signal = %sig, "dropped (--rewrite-signal): not stopping, the child keeps running");
            return;
        }
        if let (Some(t), true, Some(Signo(libc::SIGCONT))) = (&self.terminal, child_alive, forwarded_as) {
            if sig.0 == libc::SIGCONT {
                debug!("continued; the child's group too");
                t.continued(child);
                self.child_stopped = false;
                return;
            }
        }
        if signals::is_stop(sig) && self.stop_deadline.is_none() {
            self.stop_deadline = Some(Instant::now() + self.cfg.stop_timeout);
            if let Some(e) = self.events {
                e.stopping();
            }
            info!(
                signal = %sig,
                forwarded_as = %forwarded_as.map_or("nothing (dropped)".to_string(), |s| s.to_string()),
                stop_timeout = %humantime::format_duration(self.cfg.stop_timeout),
                "stopping: signal forwarded; SIGKILL for everything left when the stop timeout runs out"
            );
        }
        if !signals::is_forwarded(sig) || !child_alive {
            debug!(signal = %sig, "not forwarded");
            return;
        }
        let Some(to) = forwarded_as else {
            debug!(signal = %sig, "dropped by --rewrite-signal");
            return;
        };
        let delivered = self.send_to_child(child, to);
        debug!(signal = %sig, sent = %to, child = child.as_raw(), delivered, "forwarded");
        if self.child_stopped && signals::is_stop(sig) {
            // A stopped child acts on the signal only once continued (as the shell's `kill`
            // does for a stopped job).
            procs::send(Pid::from_raw(-child.as_raw()), Signo(libc::SIGCONT));
            self.child_stopped = false;
        }
    }

    /// Handles one command from another thread while `child` runs (or has just exited).
    fn on_control(&mut self, c: Control, child: Pid, child_alive: bool) {
        match c {
            Control::Signal(sig) if child_alive => {
                info!(signal = %sig, "sending the child a signal (--on-change)");
                self.send_to_child(child, sig);
            }
            Control::Signal(_) => {}
            Control::Exit => {
                if self.stop_deadline.is_none() {
                    self.stop_deadline = Some(Instant::now() + self.cfg.stop_timeout);
                    if let Some(e) = self.events {
                        e.stopping();
                    }
                    info!("stopping the child and exiting (--on-change exit)");
                    if let (true, Some(to)) = (child_alive, self.cfg.rewrites.apply(Signo(libc::SIGTERM))) {
                        self.send_to_child(child, to);
                    }
                }
            }
            Control::Restart(env) => {
                if self.stop_deadline.is_some() {
                    return;
                }
                let first = self.replacement.is_none();
                let deadline = self.replacement.as_ref().map_or(Instant::now() + self.cfg.stop_timeout, |(_, d)| *d);
                self.replacement = Some((env, deadline));
                if first && child_alive {
                    info!(
                        stop_timeout = %humantime::format_duration(self.cfg.stop_timeout),
                        "stopping the child to start it with refreshed secrets (--on-change restart)"
                    );
                    if let Some(to) = self.cfg.rewrites.apply(Signo(libc::SIGTERM)) {
                        self.send_to_child(child, to);
                    }
                }
            }
        }
    }

    /// Sends `sig` to the child or its group, per `--signal-target`.
    fn send_to_child(&self, child: Pid, sig: Signo) -> bool {
        let target = match self.cfg.signal_target {
            SignalTarget::Child => child,
            SignalTarget::Group => Pid::from_raw(-child.as_raw()),
        };
        procs::send(target, sig)
    }

    /// SIGKILL to the child's group (while it lives) and to every descendant of the agent.
    fn kill_everything(&self, child: Pid, child_alive: bool) -> usize {
        let kill = Signo(libc::SIGKILL);
        let group = child_alive && procs::send(Pid::from_raw(-child.as_raw()), kill);
        procs::signal_descendants(kill) + usize::from(group)
    }

    /// Waits between restarts; false if a stop was requested meanwhile. Other signals that
    /// arrive are held and delivered to the next child (none is lost for want of a child).
    fn pause(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        while Instant::now() < until {
            self.wait(Some(until));
            while let Some(sig) = self.next_signal() {
                if signals::is_stop(sig) && self.cfg.rewrites.apply(sig).is_some() {
                    info!(signal = %sig, "stop requested while waiting to restart; not restarting");
                    self.stop_deadline = Some(Instant::now());
                    return false;
                }
                if signals::is_forwarded(sig) && self.held.len() < 64 {
                    debug!(signal = %sig, "no child while waiting to restart: held for the next one");
                    self.held.push(sig);
                }
            }
            reaper::reap(None, false);
        }
        true
    }

    /// Sleeps until the signalfd (or the control pipe) is readable or `until` passes.
    fn wait(&self, until: Option<Instant>) {
        let timeout_ms = until.map_or(-1, |t| {
            let left = t.saturating_duration_since(Instant::now());
            // Round up so a deadline is never missed by a sub-millisecond early wake.
            left.as_millis().saturating_add(u128::from(left.subsec_nanos() % 1_000_000 != 0)).min(i32::MAX as u128) as i32
        });
        let mut fds = [
            libc::pollfd { fd: self.signals.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: self.control.as_ref().map_or(-1, ControlReceiver::fd), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: valid pollfds (a negative fd is ignored by poll); EINTR and errors just lead
        // back to the loop.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
    }

    fn next_signal(&self) -> Option<Signo> {
        match self.signals.read_signal() {
            Ok(Some(info)) => Some(Signo(info.ssi_signo as i32)),
            Ok(None) => None,
            Err(e) => {
                warn!(error = %e, "reading signals failed");
                None
            }
        }
    }
}
