//! The release binary is fully static: it runs alone in an empty chroot — no libc, no loader,
//! no /etc, no /proc — both as a plain command and as PID 1 supervising itself.
//!
//! `scripts/build-static` makes the binary; `scripts/test` builds it first and sets
//! `TEST_STATIC_BIN`. Run bare (`cargo test`) without it, this test says it skips; under CI it fails.

mod util;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use util::*;

fn static_bin() -> Option<PathBuf> {
    let p = std::env::var_os("TEST_STATIC_BIN").map(PathBuf::from).unwrap_or_else(|| repo().join("target/x86_64-unknown-linux-gnu/release/agent"));
    if p.exists() {
        return Some(p);
    }
    assert!(std::env::var_os("CI").is_none(), "no static binary at {}: CI must run scripts/build-static first", p.display());
    eprintln!("SKIP: no static binary at {}; run scripts/build-static", p.display());
    None
}

fn can_chroot() -> bool {
    let ok = unsafe { libc::geteuid() } == 0;
    if !ok {
        eprintln!("SKIP: chroot needs root");
    }
    ok
}

#[test]
fn static_binary_runs_alone_in_an_empty_chroot() {
    let Some(bin) = static_bin() else { return };
    if !can_chroot() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(&bin, root.path().join("agent")).unwrap();
    let entries: Vec<_> = std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, ["agent"], "the root holds the binary and nothing else");

    let mut cmd = Command::new("chroot");
    cmd.arg(root.path()).args(["/agent", "version"]);
    let out = run(cmd, Duration::from_secs(20));
    assert_eq!(code(&out, "chroot agent version"), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains(", static)"), "{}", stdout(&out));

    // Supervising: the agent runs itself as the child and passes its exit code through.
    let mut cmd = Command::new("chroot");
    cmd.arg(root.path()).args(["/agent", "run", "--map-exit", "0:42", "--", "/agent", "version"]);
    let out = run(cmd, Duration::from_secs(20));
    assert_eq!(code(&out, "chroot agent run"), 42, "{}", stderr(&out));
    assert!(stdout(&out).contains(", static)"), "{}", stdout(&out));

    // And as PID 1 of its own PID namespace (no /proc mounted in the chroot).
    if can_unshare() {
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork", "chroot"]).arg(root.path()).args(["/agent", "run", "--", "/agent", "version"]);
        let out = run(cmd, Duration::from_secs(20));
        assert_eq!(code(&out, "unshare chroot agent run"), 0, "{}", stderr(&out));
        // As PID 1 the agent needs no subreaper, so it never says it is not PID 1.
        assert!(stderr(&out).contains("started child pid="), "{}", stderr(&out));
        assert!(!stderr(&out).contains("not PID 1"), "the agent is PID 1: {}", stderr(&out));
    }
}

/// The shipped binary has no test hook: the fault-injection feature is off in scripts/build-static.
#[test]
fn static_binary_has_no_fault_injection() {
    let Some(bin) = static_bin() else { return };
    let bytes = std::fs::read(&bin).unwrap();
    let hook = b"AGENT_TEST_PANIC";
    assert!(!bytes.windows(hook.len()).any(|w| w == hook), "{} carries the test-only panic hook", bin.display());
    // Whereas the test build has it (the marker the test looks for is really there to find).
    #[cfg(feature = "fault-injection")]
    {
        let test_build = std::fs::read(agent()).unwrap();
        assert!(test_build.windows(hook.len()).any(|w| w == hook), "the test build has the hook");
    }
}
