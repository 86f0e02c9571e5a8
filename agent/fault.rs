//! Test-only fault injection: `AGENT_TEST_PANIC=POINT[,POINT...]` makes the named points panic,
//! each the first time it is reached, so the tests can show that a panic in any side job
//! leaves the app, the supervisor and the rest of the agent running (`panics.rs`).
//!
//! Only in builds with the `fault-injection` feature (`scripts/test` turns it on for the test
//! binaries); the shipped binary (`scripts/build-static`) has none of it — `point` is empty and
//! the variable's name is not in it (tests/static_binary.rs checks).
//!
//! Points: `health-prober`, `health-server`, `secrets-refresh`, `xray-receive`,
//! `otlp-receiver`, `statsd`, `sampling`, `sink`, `relay`.

/// Panics here if `AGENT_TEST_PANIC` names `name` and it has not panicked yet.
#[cfg(feature = "fault-injection")]
pub fn point(name: &'static str) {
    use std::sync::{Mutex, OnceLock};
    static ARMED: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| {
        let wanted = std::env::var("AGENT_TEST_PANIC").unwrap_or_default();
        Mutex::new(wanted.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
    });
    let fire = {
        let mut armed = armed.lock().unwrap_or_else(|e| e.into_inner());
        let found = armed.iter().position(|p| p == name);
        found.map(|i| armed.remove(i)).is_some()
    };
    if fire {
        panic!("injected panic at {name} (AGENT_TEST_PANIC)");
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &'static str) {}
