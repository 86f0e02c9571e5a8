//! Fixture: records every signal it receives, one name per line, in a file.
//!
//! `sigrecord OUT [--exit-on SIG]...` writes `ready` to OUT once its signals are blocked, then
//! appends each signal's name as it arrives and exits 0 on the first `--exit-on` signal
//! (default SIGTERM). The agent's tests use it to see exactly what reached the child.

use std::fs::OpenOptions;
use std::io::Write;

use nix::sys::signal::{SigSet, Signal};

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args.next().expect("usage: sigrecord OUT [--exit-on SIG]...");
    let mut exit_on = Vec::new();
    while let Some(a) = args.next() {
        if a == "--exit-on" {
            let name = args.next().expect("--exit-on needs a signal");
            let name = if name.starts_with("SIG") { name } else { format!("SIG{name}") };
            exit_on.push(name.parse::<Signal>().expect("unknown signal"));
        }
    }
    if exit_on.is_empty() {
        exit_on.push(Signal::SIGTERM);
    }

    let mut set = SigSet::all();
    for s in [Signal::SIGSEGV, Signal::SIGBUS, Signal::SIGFPE, Signal::SIGILL, Signal::SIGKILL, Signal::SIGSTOP] {
        set.remove(s);
    }
    set.thread_block().expect("block signals");

    let mut file = OpenOptions::new().create(true).append(true).open(&out).expect("open OUT");
    writeln!(file, "ready").unwrap();
    loop {
        let sig = set.wait().expect("sigwait");
        if sig == Signal::SIGCHLD {
            continue;
        }
        writeln!(file, "{}", sig.as_str()).unwrap();
        if exit_on.contains(&sig) {
            std::process::exit(0);
        }
    }
}
