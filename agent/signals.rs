//! Which signals the agent catches and forwards, how they are named, and `--rewrite-signal`.
//!
//! Like tini, the agent blocks every signal it handles before it starts any thread or child,
//! and reads them one at a time from a `signalfd`; nothing runs in a signal handler. Not
//! forwarded to the child:
//! - SIGKILL and SIGSTOP: no process can catch them;
//! - SIGCHLD: it belongs to the agent's reaper;
//! - SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT: these report a fault in the
//!   agent itself, so they keep their default action and a bug crashes visibly;
//! - SIGTTIN, SIGTTOU: job control of the agent's own terminal I/O, not meant for the app;
//! - SIGPIPE: raised by the agent's own writes to a closed pipe (for example its stderr
//!   piped into `head`); forwarding it would kill an app that did nothing wrong.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use nix::sys::signal::{SigSet, Signal};

/// A signal number, including real-time signals (which `nix::Signal` cannot name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signo(pub i32);

/// Signals the agent leaves alone entirely: default action, never blocked.
const FAULTS: [Signal; 7] = [Signal::SIGSEGV, Signal::SIGBUS, Signal::SIGFPE, Signal::SIGILL, Signal::SIGTRAP, Signal::SIGSYS, Signal::SIGABRT];

/// Blocked and read by the agent, but never forwarded.
const NOT_FORWARDED: [i32; 4] = [libc::SIGCHLD, libc::SIGTTIN, libc::SIGTTOU, libc::SIGPIPE];

/// The set the agent blocks and reads from its signalfd: everything catchable but the faults.
pub fn handled_set() -> SigSet {
    let mut set = SigSet::all();
    for s in FAULTS {
        set.remove(s);
    }
    set
}

/// Whether a received signal is passed on to the child.
pub fn is_forwarded(sig: Signo) -> bool {
    !NOT_FORWARDED.contains(&sig.0)
}

/// SIGTERM and SIGINT start the stop sequence (and its `--stop-timeout`).
pub fn is_stop(sig: Signo) -> bool {
    sig.0 == libc::SIGTERM || sig.0 == libc::SIGINT
}

impl fmt::Display for Signo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Signal::try_from(self.0) {
            Ok(s) => f.write_str(s.as_str()),
            Err(_) if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&self.0) => {
                write!(f, "SIGRTMIN+{}", self.0 - libc::SIGRTMIN())
            }
            Err(_) => write!(f, "signal {}", self.0),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown signal {0:?}: use a name such as TERM, SIGQUIT or RTMIN+2, or a number from 1 to 64")]
pub struct UnknownSignal(String);

impl FromStr for Signo {
    type Err = UnknownSignal;

    /// Accepts `TERM`, `SIGTERM`, `sigterm`, `15`, `RTMIN+2`, `SIGRTMAX-1`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || UnknownSignal(s.to_string());
        let t = s.trim();
        if let Ok(n) = t.parse::<i32>() {
            return if (1..=libc::SIGRTMAX()).contains(&n) { Ok(Signo(n)) } else { Err(err()) };
        }
        let upper = t.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        let rt = |base: i32, rest: &str| -> Result<Signo, UnknownSignal> {
            let n = match rest.chars().next() {
                None => base,
                Some('+') => base + rest[1..].parse::<i32>().map_err(|_| err())?,
                Some('-') => base - rest[1..].parse::<i32>().map_err(|_| err())?,
                Some(_) => return Err(err()),
            };
            if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&n) {
                Ok(Signo(n))
            } else {
                Err(err())
            }
        };
        if let Some(rest) = name.strip_prefix("RTMIN") {
            return rt(libc::SIGRTMIN(), rest);
        }
        if let Some(rest) = name.strip_prefix("RTMAX") {
            return rt(libc::SIGRTMAX(), rest);
        }
        Signal::from_str(&format!("SIG{name}")).map(|s| Signo(s as i32)).map_err(|_| err())
    }
}

/// One `--rewrite-signal FROM:TO` rule; `to == None` means drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    pub from: Signo,
    pub to: Option<Signo>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RewriteError {
    #[error("an empty rule; write FROM:TO (for example TERM:QUIT or WINCH:drop)")]
    Empty,
    #[error("{0:?} is not FROM:TO (for example TERM:QUIT or WINCH:drop)")]
    Shape(String),
    #[error("in {0:?}: {1}")]
    Signal(String, UnknownSignal),
    #[error("in {0:?}: {1} is never forwarded, so it cannot be rewritten")]
    NotForwarded(String, Signo),
}

impl FromStr for Rewrite {
    type Err = RewriteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(RewriteError::Empty);
        }
        let (from, to) = s.split_once(':').ok_or_else(|| RewriteError::Shape(s.to_string()))?;
        let sig = |x: &str| x.parse::<Signo>().map_err(|e| RewriteError::Signal(s.to_string(), e));
        let from = sig(from)?;
        if !is_forwarded(from) || FAULTS.iter().any(|f| *f as i32 == from.0) {
            return Err(RewriteError::NotForwarded(s.to_string(), from));
        }
        let to = if to.trim().eq_ignore_ascii_case("drop") { None } else { Some(sig(to)?) };
        Ok(Rewrite { from, to })
    }
}

/// The rewrite rules in force, applied to every forwarded signal.
#[derive(Debug, Clone, Default)]
pub struct RewriteTable(HashMap<Signo, Option<Signo>>);

impl RewriteTable {
    pub fn new(rules: &[Rewrite]) -> Self {
        RewriteTable(rules.iter().map(|r| (r.from, r.to)).collect())
    }

    /// The signal to send for `sig`, or `None` when it is dropped.
    pub fn apply(&self, sig: Signo) -> Option<Signo> {
        self.0.get(&sig).copied().unwrap_or(Some(sig))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_realtime() {
        assert_eq!("TERM".parse(), Ok(Signo(libc::SIGTERM)));
        assert_eq!("sigquit".parse(), Ok(Signo(libc::SIGQUIT)));
        assert_eq!("15".parse(), Ok(Signo(15)));
        assert_eq!("RTMIN+2".parse(), Ok(Signo(libc::SIGRTMIN() + 2)));
        assert_eq!("SIGRTMAX-1".parse(), Ok(Signo(libc::SIGRTMAX() - 1)));
        assert!("NOPE".parse::<Signo>().is_err());
        assert!("0".parse::<Signo>().is_err());
        assert!("RTMAX+1".parse::<Signo>().is_err());
        assert_eq!(Signo(libc::SIGRTMIN() + 3).to_string(), "SIGRTMIN+3");
        assert_eq!(Signo(libc::SIGWINCH).to_string(), "SIGWINCH");
    }

    #[test]
    fn rewrite_rules() {
        let r: Rewrite = "TERM:QUIT".parse().unwrap();
        let d: Rewrite = "winch:drop".parse().unwrap();
        let t = RewriteTable::new(&[r, d]);
        assert_eq!(t.apply(Signo(libc::SIGTERM)), Some(Signo(libc::SIGQUIT)));
        assert_eq!(t.apply(Signo(libc::SIGWINCH)), None);
        assert_eq!(t.apply(Signo(libc::SIGHUP)), Some(Signo(libc::SIGHUP)));
        assert!(matches!("TERM".parse::<Rewrite>(), Err(RewriteError::Shape(_))));
        assert_eq!("".parse::<Rewrite>(), Err(RewriteError::Empty));
        assert!(matches!("CHLD:TERM".parse::<Rewrite>(), Err(RewriteError::NotForwarded(..))));
        assert!(matches!("TERM:BOGUS".parse::<Rewrite>(), Err(RewriteError::Signal(..))));
    }

    #[test]
    fn forwarding_set() {
        assert!(is_forwarded(Signo(libc::SIGTERM)));
        assert!(is_forwarded(Signo(libc::SIGWINCH)));
        assert!(!is_forwarded(Signo(libc::SIGCHLD)));
        assert!(handled_set().contains(Signal::SIGUSR1));
        assert!(!handled_set().contains(Signal::SIGSEGV));
    }
}
