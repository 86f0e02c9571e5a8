//! The agent's descendants, read from `/proc`, and signalling them.
//!
//! The main child's process group is easy to signal, but grandchildren may have left it
//! (`setsid`, daemons) and adopted orphans were never in it. Before a SIGKILL the agent walks
//! `/proc` for every process whose parent chain leads back to itself and signals each one.
//! It never uses `kill(-1, …)`: as a subreaper outside a PID namespace that would reach
//! processes that are not its own.

use std::collections::HashMap;
use std::fs;

use nix::unistd::Pid;

use crate::signals::Signo;

/// The parent pid from `/proc/PID/stat` (the field after the `(comm)`, which may hold spaces).
fn parent_of(stat: &str) -> Option<i32> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Every living descendant of `root`, children before grandchildren.
pub fn descendants(root: Pid) -> Vec<Pid> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        // A process may exit between readdir and read; skip it.
        if let Some(ppid) = fs::read_to_string(format!("/proc/{pid}/stat")).ok().as_deref().and_then(parent_of) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut queue = vec![root.as_raw()];
    while let Some(p) = queue.pop() {
        if let Some(kids) = children.get(&p) {
            for &k in kids {
                out.push(Pid::from_raw(k));
                queue.push(k);
            }
        }
    }
    out
}

/// Sends `sig` to every descendant of the agent; returns how many were signalled.
pub fn signal_descendants(sig: Signo) -> usize {
    let me = nix::unistd::getpid();
    descendants(me).into_iter().filter(|pid| send(*pid, sig)).count()
}

/// Sends a raw signal number (real-time signals included); false if the process is gone.
pub fn send(pid: Pid, sig: Signo) -> bool {
    // nix's kill takes only named signals; use libc so real-time signals work too.
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid.as_raw(), sig.0) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parent_even_with_odd_comm() {
        assert_eq!(parent_of("42 (gunicorn: master [app]) S 7 42 42 0 -1"), Some(7));
        assert_eq!(parent_of("43 (a) b) R 1 43 43"), Some(1));
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn finds_own_child() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let me = nix::unistd::getpid();
        let found = descendants(me);
        assert!(found.contains(&Pid::from_raw(child.id() as i32)), "{found:?}");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
