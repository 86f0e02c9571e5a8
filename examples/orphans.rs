//! Fixture: makes N orphaned processes, then checks that someone reaps them.
//!
//! `orphans N OUT [SECS]`: for each of N, forks a process that forks a grandchild and exits at once,
//! so the grandchild is orphaned to PID 1 (or to the nearest child subreaper) and exits soon
//! after. Run it as the only child of PID 1 in a new PID namespace: it then waits, up to SECS (20) seconds,
//! until /proc shows no process but PID 1 and itself (every orphan exited *and was reaped*),
//! writes `zombies=Z left=L orphans=N max_zombies_seen=M` to OUT, and exits 0 if L is 0, else 1.

use std::time::{Duration, Instant};

use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};

/// Every other process in this PID namespace (all but PID 1 and this one), and how many are zombies.
fn others() -> (usize, usize) {
    let me = std::process::id().to_string();
    let mut all = 0;
    let mut zombies = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().filter(|s| s.bytes().all(|b| b.is_ascii_digit())) else { continue };
        if pid == "1" || pid == me {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        all += 1;
        if stat.rfind(')').is_some_and(|i| stat[i + 1..].trim_start().starts_with('Z')) {
            zombies += 1;
        }
    }
    (all, zombies)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|s| s.parse().ok()).expect("usage: orphans N OUT");
    let out = args.next().expect("usage: orphans N OUT");

    for _ in 0..n {
        // SAFETY: single-threaded program; the children only call async-signal-safe functions.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                if let ForkResult::Child = unsafe { fork() }.expect("fork") {
                    // The grandchild: outlive its parent by a moment, then exit.
                    unsafe { libc::usleep(20_000) };
                }
                unsafe { libc::_exit(0) };
            }
            ForkResult::Parent { child } => {
                waitpid(child, None).expect("wait for intermediate child");
            }
        }
    }

    // Done when nothing but PID 1 and this process is left: every orphan exited and was reaped.
    let secs = args.next().and_then(|s| s.parse().ok()).unwrap_or(20);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut max_seen = 0;
    let (mut left, mut z) = others();
    while left > 0 && Instant::now() < deadline {
        max_seen = max_seen.max(z);
        std::thread::sleep(Duration::from_millis(10));
        (left, z) = others();
    }
    std::fs::write(&out, format!("zombies={z} left={left} orphans={n} max_zombies_seen={max_seen}\n")).unwrap();
    std::process::exit(if left == 0 { 0 } else { 1 });
}
