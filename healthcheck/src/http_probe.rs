//! An HTTP probe: `GET URL` over plain HTTP/1.1, healthy when the status is in the healthy set
//! and, if asked, the body contains an expected text.
//!
//! Only `http://`: a container's health check talks to its own app on loopback, where TLS only
//! costs time. The response head is parsed with `httparse`; the body is read only when a body
//! check is configured (at most 64 KiB of it, Content-Length, chunked, or until close).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::tcp_probe::{connect, resolve};
use crate::{ProbeError, StatusSet, Success};

const MAX_RESPONSE: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct HttpProbe {
    url: String,
    authority: String,
    path: String,
    host_header: String,
    statuses: StatusSet,
    body: Option<String>,
}

impl HttpProbe {
    /// Checks the URL's shape now, so a typo is a start-up error rather than an unhealthy task.
    pub fn new(url: &str) -> Result<Self, ProbeError> {
        let invalid = |reason: &str| ProbeError::Invalid { target: url.to_string(), reason: reason.to_string() };
        let uri: http::Uri = url.parse().map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(invalid("https is not supported: probe the app's plain HTTP port inside the container")),
            _ => return Err(invalid("write it as http://HOST:PORT/PATH, like http://127.0.0.1:4567/api/health-check")),
        }
        let auth = uri.authority().ok_or_else(|| invalid("the host is missing"))?;
        let authority = format!("{}:{}", auth.host(), auth.port_u16().unwrap_or(80));
        let path = uri.path_and_query().map_or("/".to_string(), |p| p.as_str().to_string());
        Ok(HttpProbe { url: url.to_string(), authority, path, host_header: auth.as_str().to_string(), statuses: StatusSet::default(), body: None })
    }

    /// The statuses that count as healthy (default 200-399).
    pub fn statuses(mut self, set: StatusSet) -> Self {
        self.statuses = set;
        self
    }

    /// Sends this Host header instead of the URL's host.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host_header = host.into();
        self
    }

    /// Also requires the body to contain `text`.
    pub fn body_contains(mut self, text: impl Into<String>) -> Self {
        self.body = Some(text.into());
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn check(&self, timeout: Duration) -> Result<Success, ProbeError> {
        let start = Instant::now();
        let deadline = start + timeout;
        let left = || {
            let l = deadline.saturating_duration_since(Instant::now());
            if l.is_zero() {
                Err(ProbeError::Timeout(timeout))
            } else {
                Ok(l)
            }
        };
        let io = |e: std::io::Error| ProbeError::from_io(e, timeout);

        let addrs = resolve(&self.authority)?;
        let mut stream = connect(&addrs, deadline, timeout)?;
        let _ = stream.set_nodelay(true);
        stream.set_write_timeout(Some(left()?)).map_err(io)?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            self.path,
            self.host_header,
            crate::USER_AGENT
        );
        stream.write_all(request.as_bytes()).map_err(io)?;

        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        let mut head: Option<(u16, usize, BodyLength)> = None;
        loop {
            if let Some((status, head_len, len)) = head {
                let done = match len {
                    BodyLength::Known(n) => buf.len() >= head_len + n,
                    _ => false,
                };
                if self.body.is_none() || done || buf.len() >= MAX_RESPONSE {
                    return self.verdict(status, &buf[head_len..], len, start);
                }
            }
            stream.set_read_timeout(Some(left()?)).map_err(io)?;
            let n = stream.read(&mut chunk).map_err(io)?;
            if n == 0 {
                return match head {
                    Some((status, head_len, len)) => self.verdict(status, &buf[head_len..], len, start),
                    None => Err(ProbeError::BadResponse("the connection closed before a response head".into())),
                };
            }
            buf.extend_from_slice(&chunk[..n]);
            if head.is_none() {
                head = parse_head(&buf)?;
                if head.is_none() && buf.len() >= MAX_RESPONSE {
                    return Err(ProbeError::BadResponse("response head larger than 64 KiB".into()));
                }
            }
        }
    }

    fn verdict(&self, status: u16, body: &[u8], len: BodyLength, start: Instant) -> Result<Success, ProbeError> {
        if !self.statuses.contains(status) {
            return Err(ProbeError::Status { status });
        }
        if let Some(expected) = &self.body {
            let body = match len {
                BodyLength::Chunked => dechunk(body),
                BodyLength::Known(n) => body[..n.min(body.len())].to_vec(),
                BodyLength::UntilClose => body.to_vec(),
            };
            if !String::from_utf8_lossy(&body).contains(expected.as_str()) {
                return Err(ProbeError::BodyMismatch { status, expected: expected.clone() });
            }
        }
        Ok(Success { status: Some(status), elapsed: start.elapsed() })
    }
}

#[derive(Debug, Clone, Copy)]
enum BodyLength {
    Known(usize),
    Chunked,
    UntilClose,
}

/// Parses the response head once it is complete: (status, head length, body length).
fn parse_head(buf: &[u8]) -> Result<Option<(u16, usize, BodyLength)>, ProbeError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(n)) => {
            let status = resp.code.unwrap_or(0);
            let mut len = BodyLength::UntilClose;
            for h in resp.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    if let Some(v) = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok()) {
                        len = BodyLength::Known(v);
                    }
                } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                    && String::from_utf8_lossy(h.value).to_ascii_lowercase().contains("chunked")
                {
                    len = BodyLength::Chunked;
                }
            }
            Ok(Some((status, n, len)))
        }
        Err(e) => Err(ProbeError::BadResponse(e.to_string())),
    }
}

/// Decodes as much of a chunked body as is present.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(httparse::Status::Complete((start, size))) = httparse::parse_chunk_size(raw) {
        let size = size as usize;
        if size == 0 || start + size > raw.len() {
            out.extend_from_slice(&raw[start.min(raw.len())..(start + size).min(raw.len())]);
            break;
        }
        out.extend_from_slice(&raw[start..start + size]);
        raw = &raw[(start + size + 2).min(raw.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// A one-shot server: answers the first connection with `response` (or never, if None),
    /// and reports the request it read.
    fn serve(response: Option<&'static str>) -> (String, mpsc::Receiver<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health?x=1", l.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 2048];
            let n = s.read(&mut buf).unwrap();
            tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).unwrap();
            match response {
                Some(r) => s.write_all(r.as_bytes()).unwrap(),
                None => std::thread::sleep(Duration::from_secs(5)),
            }
        });
        (url, rx)
    }

    const T: Duration = Duration::from_secs(2);

    #[test]
    fn healthy_on_200_and_sends_a_proper_request() {
        let (url, rx) = serve(Some("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
        let ok = HttpProbe::new(&url).unwrap().host("app.internal").check(T).unwrap();
        assert_eq!(ok.status, Some(200));
        let req = rx.recv().unwrap();
        assert!(req.starts_with("GET /health?x=1 HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("\r\nHost: app.internal\r\n"), "{req}");
    }

    #[test]
    fn status_outside_the_set_is_unhealthy() {
        let (url, _rx) = serve(Some("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"));
        assert_eq!(HttpProbe::new(&url).unwrap().check(T), Err(ProbeError::Status { status: 503 }));
        let (url, _rx) = serve(Some("HTTP/1.1 204 No Content\r\n\r\n"));
        let p = HttpProbe::new(&url).unwrap().statuses("200".parse().unwrap());
        assert_eq!(p.check(T), Err(ProbeError::Status { status: 204 }));
    }

    #[test]
    fn body_must_contain_the_text_plain_or_chunked() {
        let (url, _rx) = serve(Some("HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n{\"success\":true}"));
        assert!(HttpProbe::new(&url).unwrap().body_contains("\"success\":true").check(T).is_ok());
        let (url, _rx) = serve(Some("HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{\"success\":false}"));
        assert!(matches!(
            HttpProbe::new(&url).unwrap().body_contains("\"success\":true").check(T),
            Err(ProbeError::BodyMismatch { status: 200, .. })
        ));
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"su\r\nc\r\nccess\":true}\r\n0\r\n\r\n";
        let (url, _rx) = serve(Some(chunked));
        assert!(HttpProbe::new(&url).unwrap().body_contains("\"success\":true").check(T).is_ok());
    }

    #[test]
    fn refused_and_timeout() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/");
        assert_eq!(HttpProbe::new(&url).unwrap().check(T), Err(ProbeError::Refused));
        let (url, _rx) = serve(None);
        let start = Instant::now();
        let r = HttpProbe::new(&url).unwrap().check(Duration::from_millis(300));
        assert_eq!(r, Err(ProbeError::Timeout(Duration::from_millis(300))));
        assert!(start.elapsed() < Duration::from_secs(1), "answered within its timeout");
    }

    #[test]
    fn bad_urls_are_rejected_up_front() {
        for bad in ["127.0.0.1:80/health", "https://x/", "ftp://x/", "http:///path"] {
            assert!(matches!(HttpProbe::new(bad), Err(ProbeError::Invalid { .. })), "{bad}");
        }
        assert_eq!(HttpProbe::new("http://localhost/").unwrap().authority, "localhost:80");
    }

    #[test]
    fn garbage_is_a_bad_response() {
        let (url, _rx) = serve(Some("SSH-2.0-OpenSSH_9.2\r\n\r\n"));
        assert!(matches!(HttpProbe::new(&url).unwrap().check(T), Err(ProbeError::BadResponse(_))));
    }
}
