//! The reaper: the only code in the agent that calls `waitpid`.
//!
//! As PID 1 (or a child subreaper) every orphan in the container becomes the agent's child, and
//! each must be waited for or it stays a zombie. One loop collects every exited child with
//! `waitpid(-1, WNOHANG)` until there is none left to collect, and picks out the main child's
//! status. Nothing else may wait: a second waiter would steal statuses from this one.

use nix::unistd::Pid;

/// What one pass of the reaper found.
#[derive(Debug, Default)]
pub struct Reaped {
    /// The raw wait status of the main child, if it exited in this pass.
    pub main: Option<libc::c_int>,
    /// How many other processes (adopted orphans) were reaped.
    pub others: usize,
    /// True when the agent has no children left at all (`ECHILD`), hence no descendants.
    pub none_left: bool,
    /// The signal that stopped the main child (only asked for with `untraced`: job control).
    pub stopped: Option<libc::c_int>,
}

/// Reaps every child that has exited, without blocking. With `untraced` (job control on a
/// terminal) it also reports the main child stopping; other children stopping are ignored.
pub fn reap(main: Option<Pid>, untraced: bool) -> Reaped {
    let mut out = Reaped::default();
    let flags = if untraced { libc::WNOHANG | libc::WUNTRACED } else { libc::WNOHANG };
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid only writes the status integer we pass.
        let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
        if pid > 0 && libc::WIFSTOPPED(status) {
            if Some(Pid::from_raw(pid)) == main {
                out.stopped = Some(libc::WSTOPSIG(status));
            }
            continue;
        }
        match pid {
            0 => return out,
            -1 => match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                _ => {
                    // ECHILD: no children at all.
                    out.none_left = true;
                    return out;
                }
            },
            pid if Some(Pid::from_raw(pid)) == main => out.main = Some(status),
            _ => out.others += 1,
        }
    }
}
