//! Apps under the agent: a tiny in-process HTTP app for health tests, and the example Flask app.
#![allow(unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// A small HTTP app for health tests: answers every GET with the current status, or never
/// answers while the status is 0 ("hang"). Runs on threads in the test process.
pub struct TestApp {
    pub port: u16,
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
}

impl TestApp {
    pub fn start(status: u16) -> TestApp {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let st = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(status));
        let shared = st.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                let st = shared.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let _ = c.read(&mut buf);
                    let code = st.load(Ordering::SeqCst);
                    if code == 0 {
                        std::thread::sleep(Duration::from_secs(30));
                        return;
                    }
                    let _ = write!(c, "HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
                });
            }
        });
        TestApp { port, status: st }
    }

    pub fn set(&self, status: u16) {
        self.status.store(status, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/health", self.port)
    }
}

/// A health socket name unique to this test process and `tag`.
pub fn socket_name(tag: &str) -> String {
    format!("agent-test-{}-{tag}", std::process::id())
}

/// Appends the example app under gunicorn (examples/backend-flask) as the agent's command,
/// serving on `listener` (handed over as descriptor 3: `--bind fd://3`), and wires the agent's
/// stderr for `collect`.
pub fn example_app(cmd: &mut Command, listener: &AppListener) {
    let app = repo().join("examples/backend-flask");
    listener.hand_to(cmd);
    cmd.arg(venv().join("bin/gunicorn"))
        .arg("-c")
        .arg(app.join("gunicorn.conf.py"))
        .args(["--bind", "fd://3"])
        .arg("--chdir")
        .arg(&app)
        .arg("app:app")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
}

/// Waits until the example app answers its health check.
pub fn wait_app(port: u16) {
    wait_until(Duration::from_secs(30), "the app to answer", || {
        http_get(port, "/api/health-check", Duration::from_secs(1)).is_some_and(|(s, _)| s == 200)
    });
}
