//! Ports and plain HTTP. No test guesses a free port: listeners are bound on port 0 and their
//! port read back (`AppListener`, handed to the app as descriptor 3; the agent's own listeners
//! with `127.0.0.1:0`, read from its log by `bound_address`; the harness's Python servers print
//! theirs), and an address that must refuse is held bound but not listening (`Closed`).
#![allow(unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// A plain HTTP/1.0 GET on 127.0.0.1; returns (status, body) or None if it could not connect.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> Option<(u16, String)> {
    http_get_full(port, path, timeout).map(|(s, _, b)| (s, b))
}

/// Like `http_get`, with the response head too: (status, head, body).
pub fn http_get_full(port: u16, path: &str, timeout: Duration) -> Option<(u16, String, String)> {
    http_get_at(std::net::SocketAddr::from(([127, 0, 0, 1], port)), path, timeout)
}

/// Like `http_get_full`, on any address.
pub fn http_get_at(addr: std::net::SocketAddr, path: &str, timeout: Duration) -> Option<(u16, String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = buf.split_once("\r\n\r\n").map(|(h, b)| (h.to_string(), b.to_string())).unwrap_or_default();
    Some((status, head, body))
}

/// One HTTP/1.1 POST to `address` (HOST:PORT): (status, head). Status 0: no answer (the
/// connection closed or failed first).
pub fn http_post(address: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(address) else { return (0, "connection refused".into()) };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head =
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text.split("\r\n\r\n").next().unwrap_or("").to_string())
}

/// A port nothing answers on: a TCP socket bound to it but not listening, so connections are
/// refused for as long as this lives, and nothing else can take the port meanwhile.
pub struct Closed {
    _socket: std::os::fd::OwnedFd,
    pub port: u16,
}

impl Closed {
    pub fn new() -> Closed {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket calls on a descriptor this function owns; the address structs
        // are zeroed and sized for AF_INET.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            assert_eq!(libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), len), 0, "bind: {}", std::io::Error::last_os_error());
            let mut got: libc::sockaddr_in = std::mem::zeroed();
            let mut got_len = len;
            assert_eq!(libc::getsockname(fd, (&mut got as *mut libc::sockaddr_in).cast(), &mut got_len), 0);
            Closed { _socket: owned, port: u16::from_be(got.sin_port) }
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The address the agent bound for a port-0 setting, from its log line with `what`
/// (`receiving X-Ray segments address=…`, `relaying OTLP address=…`).
/// The StatsD address the agent's "relaying OTLP" line names (`statsd=HOST:PORT`).
pub fn statsd_address(log: &std::sync::Arc<std::sync::Mutex<String>>) -> String {
    bound_address(log, "relaying OTLP");
    let text = log.lock().unwrap().clone();
    text.lines().find_map(|l| l.split(" statsd=").nth(1)).and_then(|s| s.split_whitespace().next()).expect("statsd= in the relaying line").to_string()
}

pub fn bound_address(log: &std::sync::Arc<std::sync::Mutex<String>>, what: &str) -> String {
    let mut found = String::new();
    wait_until(Duration::from_secs(30), what, || {
        let text = log.lock().unwrap().clone();
        found = text
            .lines()
            .find(|l| l.contains(what))
            .and_then(|l| l.split(" address=").nth(1))
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or("")
            .to_string();
        !found.is_empty()
    });
    found
}

/// A listening socket for the app, bound here on port 0 and handed to it as descriptor 3
/// (through the agent, which passes inherited descriptors on), so no port is guessed.
pub struct AppListener {
    listener: std::net::TcpListener,
    pub port: u16,
}

impl AppListener {
    pub fn new() -> AppListener {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        AppListener { listener, port }
    }

    /// Makes `cmd`'s process (and so its children) have this socket as descriptor 3.
    pub fn hand_to(&self, cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.listener);
        // SAFETY: dup2 and fcntl are async-signal-safe. dup2 clears close-on-exec on the new
        // descriptor, except when the socket already is 3 (then it does nothing): fcntl then.
        unsafe {
            cmd.pre_exec(move || {
                let ok = if fd == 3 { libc::fcntl(3, libc::F_SETFD, 0) } else { libc::dup2(fd, 3) };
                if ok < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
        }
    }
}
