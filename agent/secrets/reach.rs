//! Whether the AWS endpoints can be reached at all. The SDK retries a refused connection like a
//! throttled call, so an unreachable endpoint (a wrong `AWS_ENDPOINT_URL`, no VPC endpoint or
//! NAT, a security group without egress) used to fail only when `--secrets-timeout` ran out
//! (33.7 s in one try, 60 s at worst), and then only as "no answer". Beside the fetches, this
//! opens a TCP connection to each endpoint; one that takes none for `UNREACHABLE_AFTER` ends the
//! step with the endpoint, how it was chosen and the system's error. A reachable endpoint costs
//! one connection and nothing else: throttling is still retried for the whole timeout. A
//! `--secrets-timeout` that is set explicitly is the limit for this too (a NAT gateway still
//! coming up may be worth waiting for).

use std::time::Duration;

use tokio::task::JoinSet;

use crate::proxy::redact_userinfo;

/// How long an endpoint that takes no connection is tried before the step gives up.
pub const UNREACHABLE_AFTER: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const PAUSE: Duration = Duration::from_millis(500);

/// An endpoint of `service` in `region`: its URL (any `user:password@` in it shown as `***@`)
/// and how it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub chosen: String,
}

impl Endpoint {
    pub fn of(service: &str, region: &str) -> Endpoint {
        let var = format!("AWS_ENDPOINT_URL_{}", service.to_ascii_uppercase().replace('-', "_"));
        match (std::env::var(&var), std::env::var("AWS_ENDPOINT_URL")) {
            (Ok(u), _) => Endpoint { url: redact_userinfo(&u), chosen: format!("from {var}") },
            (_, Ok(u)) => Endpoint { url: redact_userinfo(&u), chosen: "from AWS_ENDPOINT_URL".into() },
            _ => Endpoint { url: format!("https://{service}.{region}.amazonaws.com"), chosen: format!("the default for {region}") },
        }
    }

    /// Behind a proxy, the proxy is what must take a connection.
    pub fn through(self, proxy: &crate::proxy::Proxy) -> Endpoint {
        let Some(i) = self.url.parse::<http::Uri>().ok().and_then(|u| proxy.intercept(&u)) else { return self };
        Endpoint { url: crate::proxy::redact(i.uri()), chosen: format!("the proxy for {} ({})", self.url, self.chosen) }
    }

    /// `host:port` of the URL.
    fn address(&self) -> Option<String> {
        let (scheme, rest) = self.url.split_once("://")?;
        let authority = rest.split(['/', '?']).next()?;
        let authority = authority.rsplit('@').next()?;
        let has_port = authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !authority.ends_with(']');
        Some(if has_port { authority.to_string() } else { format!("{authority}:{}", if scheme == "http" { 80 } else { 443 }) })
    }
}

/// Resolves only when one of `endpoints` took no connection for `after` (`UNREACHABLE_AFTER`):
/// that endpoint and the last error. Pending forever once every endpoint has taken one.
pub async fn first_unreachable(endpoints: Vec<Endpoint>, after: Duration) -> (Endpoint, String) {
    let mut probes = JoinSet::new();
    for e in endpoints {
        probes.spawn(async move {
            let Some(address) = e.address() else { return Ok(()) };
            let start = tokio::time::Instant::now();
            loop {
                let error = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&address)).await {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no connection within {}s", CONNECT_TIMEOUT.as_secs()),
                };
                if start.elapsed() + PAUSE >= after {
                    return Err((e, error));
                }
                tokio::time::sleep(PAUSE).await;
            }
        });
    }
    while let Some(done) = probes.join_next().await {
        if let Ok(Err(found)) = done {
            return found;
        }
    }
    std::future::pending().await
}

/// Resolves only when an https endpoint's certificate is not trusted: that endpoint and the TLS
/// error (the SDK would retry the handshake until `--secrets-timeout` and then say only "no
/// answer"). One GET / per endpoint, through the proxy if any; pending forever once each has
/// answered anything or failed for another reason.
pub async fn first_untrusted(endpoints: Vec<Endpoint>, proxy: crate::proxy::Proxy) -> (Endpoint, String) {
    use crate::aws::http as aws_http;
    let Ok(client) = aws_http::client(false, &proxy) else { return std::future::pending().await };
    let mut probes = JoinSet::new();
    for e in endpoints.into_iter().filter(|e| e.url.starts_with("https://")) {
        let client = client.clone();
        probes.spawn(async move {
            let req = http::Request::get(e.url.parse::<http::Uri>().ok()?).body(http_body_util::Full::new(bytes::Bytes::new())).ok()?;
            match aws_http::exchange(&client, req, CONNECT_TIMEOUT, &e.url).await {
                Err(error) if error.contains("invalid peer certificate") || error.contains("UnknownIssuer") => {
                    let error = error.strip_prefix(&format!("{}: ", e.url)).unwrap_or(&error).to_string();
                    Some((e, error))
                }
                _ => None,
            }
        });
    }
    while let Some(done) = probes.join_next().await {
        if let Ok(Some(found)) = done {
            return found;
        }
    }
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_urls() {
        let e = |u: &str| Endpoint { url: u.into(), chosen: String::new() }.address();
        assert_eq!(e("https://ssm.us-east-1.amazonaws.com").as_deref(), Some("ssm.us-east-1.amazonaws.com:443"));
        assert_eq!(e("http://127.0.0.1:4566/").as_deref(), Some("127.0.0.1:4566"));
        assert_eq!(e("http://localhost").as_deref(), Some("localhost:80"));
        assert_eq!(e("http://[::1]:9000/x").as_deref(), Some("[::1]:9000"));
        assert_eq!(e("nonsense"), None);
        assert_eq!(redact_userinfo("https://user:pw@proxy.example:8443/x"), "https://***@proxy.example:8443/x");
        assert_eq!(redact_userinfo("http://127.0.0.1:4566/a@b"), "http://127.0.0.1:4566/a@b");
    }

    #[tokio::test]
    async fn a_refusing_endpoint_is_reported_and_a_listening_one_is_not() {
        let listening = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let up = Endpoint { url: format!("http://{}", listening.local_addr().unwrap()), chosen: "up".into() };
        // Bound and kept, never listening: connections are refused, and no one else can take it.
        let closed = tokio::net::TcpSocket::new_v4().unwrap();
        closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let down = Endpoint { url: format!("http://{}", closed.local_addr().unwrap()), chosen: "down".into() };
        let after = Duration::from_millis(1200);
        let (e, error) = first_unreachable(vec![up.clone(), down.clone()], after).await;
        assert_eq!(e, down);
        assert!(error.to_lowercase().contains("refused"), "{error}");
        let only_up = tokio::time::timeout(after * 2, first_unreachable(vec![up], after)).await;
        assert!(only_up.is_err(), "a listening endpoint is never reported");
    }
}
