//! Job control on a developer's terminal: `agent run -- flask run`, then Ctrl-Z, `fg`, `bg`.
//!
//! The child runs in its own process group, which holds the terminal while the agent is in the
//! foreground (`spawn.rs`), so the terminal's Ctrl-Z stops the child, not the agent, and the
//! shell, which waits on the agent, would never see a stop. So when the child stops, the agent
//! takes the terminal back for its own group and stops itself with the same signal: the shell
//! prints `Stopped` and gives the prompt back. On `fg` the shell gives the terminal to the
//! agent's group and sends it SIGCONT; the agent hands the terminal to the child's group again
//! and continues it. A background agent whose child reads the terminal is stopped the same way
//! (SIGTTIN), so `fg` brings the reader back with the terminal.
//!
//! Only with a controlling terminal and a shell above: never as PID 1, never without a tty (a
//! container), where a stopped child is just left to whoever stopped it.

use nix::unistd::Pid;
use tracing::info;

use crate::signals::Signo;

/// The controlling terminal on standard input, when job control applies.
pub struct Terminal(());

impl Terminal {
    /// `Some` when the agent is not PID 1, standard input is its controlling terminal, and
    /// the agent is not the session leader (a shell, or whatever started it, is).
    pub fn detect() -> Option<Terminal> {
        // SAFETY: getpid/getsid/isatty/tcgetpgrp only read process and terminal state.
        let on = unsafe { libc::getpid() != 1 && libc::isatty(0) == 1 && libc::tcgetpgrp(0) > 0 && libc::getsid(0) != libc::getpid() };
        on.then_some(Terminal(()))
    }

    /// Whether the agent's own group is the terminal's foreground group.
    fn agent_in_foreground(&self) -> bool {
        // SAFETY: reads terminal and process state.
        unsafe { libc::tcgetpgrp(0) == libc::getpgrp() }
    }

    /// Makes `group` the terminal's foreground group. The agent blocks SIGTTOU in every thread,
    /// so this works from the background too.
    fn give_to(&self, group: libc::pid_t) {
        // SAFETY: tcsetpgrp on our own controlling terminal; failure changes nothing.
        unsafe { libc::tcsetpgrp(0, group) };
    }

    /// The child stopped with `sig`: take the terminal back from its group and stop the agent
    /// with the same signal, so the shell sees the job stop. Returns once the agent is continued.
    pub fn child_stopped(&self, child: Pid, sig: Signo) {
        info!(signal = %sig, "the child stopped; stopping too, so the shell gets the terminal back (fg continues both)");
        // SAFETY: reads terminal and process state.
        if unsafe { libc::tcgetpgrp(0) } == child.as_raw() {
            // SAFETY: as above.
            self.give_to(unsafe { libc::getpgrp() });
        }
        stop_self(sig);
    }

    /// The agent was continued (`fg` or `bg`): in the foreground, the terminal goes back to the
    /// child's group; either way the whole group is continued.
    pub fn continued(&self, child: Pid) {
        if self.agent_in_foreground() {
            self.give_to(child.as_raw());
        }
        super::procs::send(Pid::from_raw(-child.as_raw()), Signo(libc::SIGCONT));
    }
}

/// Stops the agent with `sig` (SIGTSTP, SIGTTIN, SIGTTOU or SIGSTOP; the shell names the stop
/// after it). The agent blocks the first three and never sets handlers, so this thread unblocks
/// `sig` for the moment it takes to be delivered: the default action stops the process.
fn stop_self(sig: Signo) {
    let stop = if [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU].contains(&sig.0) { sig.0 } else { libc::SIGSTOP };
    // SAFETY: plain sigset manipulation and signal calls on this thread; the mask is restored.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, stop);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(stop);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
