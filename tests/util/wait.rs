//! Waiting on conditions with deadlines (never on bare sleeps), and collecting a child's output.
#![allow(unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// Polls `cond` until it is true or `within` passes; panics with `what` on time-out.
pub fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for a child with a deadline; kills it and panics (printing the command) on time-out.
pub fn wait_child(child: &mut Child, within: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until the file at `path` has a line equal to `line`.
pub fn wait_for_line(path: &Path, line: &str) {
    wait_until(Duration::from_secs(10), &format!("{line:?} in {}", path.display()), || lines(path).iter().any(|l| l == line));
}

/// Collects a child's pipe into a shared string as it is written.
pub fn collect<R: std::io::Read + Send + 'static>(mut r: R) -> std::sync::Arc<std::sync::Mutex<String>> {
    let buf = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let b = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    buf
}
