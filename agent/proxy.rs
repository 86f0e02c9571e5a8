//! Egress through an HTTP proxy, for every call the agent makes: SSM, Secrets Manager and STS
//! (the AWS SDK's client), PutTraceSegments, sampling, X-Ray's OTLP endpoint and the OTLP
//! upstreams (the relays' own client). VPCs that reach AWS or Honeycomb only through a proxy
//! need this; the X-Ray daemon (`--proxy-address`, `HTTPS_PROXY`) and the collector have it.
//!
//! Where from, decided once at start: `--proxy-url` (`AGENT_PROXY_URL`, the file's `proxy_url`)
//! for every destination, else the usual variables as curl reads them — `HTTPS_PROXY` for https
//! destinations, `HTTP_PROXY` for plain http ones, `ALL_PROXY` for both, lower case too — with
//! `NO_PROXY` for the hosts to reach directly. The instance and task metadata endpoints
//! (169.254.169.254, 169.254.170.2, where the task role's credentials come from) are always
//! reached directly, as AWS advises for proxies on ECS. https destinations go through a CONNECT
//! tunnel (TLS end to end, the proxy sees only the host); plain http ones are sent to the proxy
//! in absolute form. Only `http://` proxies; `user:password@` in the URL becomes
//! Proxy-Authorization and is never shown: logs and errors print `***@`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{header, Request, Uri};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::TokioIo;
use tower_service::Service;

/// Reached directly whatever `NO_PROXY` says: the instance metadata service and the ECS task
/// metadata and credentials endpoint.
const ALWAYS_DIRECT: &str = "169.254.169.254,169.254.170.2,fd00:ec2::254";

/// The proxy settings, checked. `Proxy::default()` is no proxy.
#[derive(Clone, Default)]
pub struct Proxy {
    /// For plain http and for https destinations.
    http: Option<Uri>,
    https: Option<Uri>,
    /// Where the settings came from, for the log line (`--proxy-url`, `HTTPS_PROXY`…).
    from: Vec<String>,
    /// `NO_PROXY` with the metadata endpoints added.
    no: String,
    matcher: Option<Arc<Matcher>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// A proxy setting that cannot be used: names the flag or variable, never the password.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ProxyError {
    pub origin: String,
    pub message: String,
}

impl Proxy {
    /// From `--proxy-url` (`flag`: the value and where it came from), else the standard
    /// variables, read with `env` (the agent's own environment).
    pub fn new(flag: Option<(&str, &str)>, env: impl Fn(&str) -> Option<String>) -> Result<Proxy, ProxyError> {
        let first = |names: [&str; 2]| names.iter().find_map(|n| env(n).filter(|v| !v.trim().is_empty()).map(|v| (n.to_string(), v)));
        let no_env = first(["NO_PROXY", "no_proxy"]);
        let (http, https) = match flag {
            Some((url, origin)) => {
                let u = parse(url, origin)?;
                (Some((origin.to_string(), u.clone())), Some((origin.to_string(), u)))
            }
            None => {
                let all = first(["ALL_PROXY", "all_proxy"]);
                let pick = |names| first(names).or_else(|| all.clone());
                let parsed = |v: Option<(String, String)>| v.map(|(n, u)| parse(&u, &n).map(|u| (n, u))).transpose();
                (parsed(pick(["HTTP_PROXY", "http_proxy"]))?, parsed(pick(["HTTPS_PROXY", "https_proxy"]))?)
            }
        };
        if http.is_none() && https.is_none() {
            return Ok(Proxy::default());
        }
        let no = match &no_env {
            Some((_, list)) => format!("{list},{ALWAYS_DIRECT}"),
            None => ALWAYS_DIRECT.to_string(),
        };
        let mut from: Vec<String> = http.iter().chain(https.iter()).map(|(n, _)| n.clone()).collect();
        from.dedup();
        if let Some((n, _)) = &no_env {
            from.push(n.clone());
        }
        let mut b = Matcher::builder().no(no.as_str());
        if let Some((_, u)) = &http {
            b = b.http(u.to_string());
        }
        if let Some((_, u)) = &https {
            b = b.https(u.to_string());
        }
        Ok(Proxy { http: http.map(|(_, u)| u), https: https.map(|(_, u)| u), from, no, matcher: Some(Arc::new(b.build())) })
    }

    pub fn is_on(&self) -> bool {
        self.matcher.is_some()
    }

    /// One line for the log: which proxy for what, credentials shown as `***@`.
    pub fn describe(&self) -> String {
        let show = |u: &Option<Uri>| u.as_ref().map_or_else(|| "direct".to_string(), redact);
        format!("http={} https={} direct={} (from {})", show(&self.http), show(&self.https), self.no, self.from.join(", "))
    }

    /// The proxy for `dst`, if it goes through one.
    pub fn intercept(&self, dst: &Uri) -> Option<Intercept> {
        self.matcher.as_ref()?.intercept(dst)
    }

    /// Adds Proxy-Authorization to a plain http request that goes through a proxy with
    /// credentials (https requests carry them in the CONNECT instead).
    pub fn authorize<B>(&self, req: &mut Request<B>) {
        if req.uri().scheme_str() != Some("http") {
            return;
        }
        if let Some(auth) = self.intercept(req.uri()).and_then(|i| i.basic_auth().cloned()) {
            let mut auth = auth;
            auth.set_sensitive(true);
            req.headers_mut().insert(header::PROXY_AUTHORIZATION, auth);
        }
    }

    /// The same settings for the AWS SDK's client (SSM, Secrets Manager, STS), which takes one
    /// proxy: the https one (AWS endpoints are https), else the http one. Both set and different
    /// is only possible through the variables; the SDK then uses `HTTPS_PROXY` alone.
    pub fn sdk(&self) -> Option<aws_smithy_http_client::proxy::ProxyConfig> {
        use aws_smithy_http_client::proxy::ProxyConfig;
        let config = match (&self.http, &self.https) {
            (Some(h), Some(s)) if h == s => ProxyConfig::all(s.clone()),
            (_, Some(s)) => ProxyConfig::https(s.clone()),
            (Some(h), None) => ProxyConfig::http(h.clone()),
            (None, None) => return None,
        };
        config.ok().map(|c| c.no_proxy(&self.no))
    }
}

/// `http://[user:password@]host[:port]`; a bare `host:port` is taken as http, as curl does.
fn parse(value: &str, origin: &str) -> Result<Uri, ProxyError> {
    let value = value.trim();
    let with_scheme = if value.contains("://") { value.to_string() } else { format!("http://{value}") };
    let bad = |message: String| ProxyError { origin: origin.to_string(), message };
    let uri: Uri = with_scheme.parse().map_err(|_| bad(format!("{} is not a URL like http://proxy.internal:3128", redact_userinfo(&with_scheme))))?;
    match uri.scheme_str() {
        Some("http") if uri.host().is_some() => Ok(uri),
        Some("https") => {
            Err(bad(format!("{}: only http:// proxies are supported (https destinations still get TLS end to end, through CONNECT)", redact(&uri))))
        }
        _ => Err(bad(format!("{} is not an http:// proxy URL with a host", redact(&uri)))),
    }
}

/// A proxy's URL as shown: scheme and authority, any `user:password@` as `***@`.
pub fn redact(u: &Uri) -> String {
    let authority = u.authority().map_or("", |a| a.as_str());
    redact_userinfo(&format!("{}://{authority}", u.scheme_str().unwrap_or("http")))
}

/// A URL with the user information of its authority, if any, replaced by `***`.
pub fn redact_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// The relays' connector: direct, through a CONNECT tunnel (https), or to the proxy (plain
/// http, marked so that hyper writes the request in absolute form).
#[derive(Clone)]
pub struct Connector {
    pub http: HttpConnector,
    pub proxy: Proxy,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<Uri> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut http = self.http.clone();
        match self.proxy.intercept(&dst) {
            None => Box::pin(async move { Ok(Conn { io: http.call(dst).await?, proxied: false }) }),
            Some(i) if dst.scheme_str() == Some("https") => {
                let mut tunnel = Tunnel::new(i.uri().clone(), http);
                if let Some(auth) = i.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                let shown = redact(i.uri());
                Box::pin(async move {
                    let io = tunnel.call(dst).await.map_err(|e| format!("through the proxy {shown}: {}", crate::aws::http::error_chain(&e)))?;
                    Ok(Conn { io, proxied: false })
                })
            }
            Some(i) => {
                let (proxy, shown) = (i.uri().clone(), redact(i.uri()));
                Box::pin(async move {
                    let io = http.call(proxy).await.map_err(|e| format!("to the proxy {shown}: {}", crate::aws::http::error_chain(&e)))?;
                    Ok(Conn { io, proxied: true })
                })
            }
        }
    }
}

/// A connection the connector made: the TCP stream, and whether it goes to a forward proxy.
pub struct Conn {
    io: TokioIo<tokio::net::TcpStream>,
    proxied: bool,
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.proxied)
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: hyper::rt::ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    fn via(p: &Proxy, url: &str) -> Option<String> {
        p.intercept(&url.parse().unwrap()).map(|i| i.uri().to_string())
    }

    #[test]
    fn the_variables_choose_per_scheme_and_no_proxy_and_metadata_go_direct() {
        let p =
            Proxy::new(None, env(&[("https_proxy", "http://sq:3128"), ("HTTP_PROXY", "plain:8080"), ("NO_PROXY", ".internal,10.0.0.0/8")])).unwrap();
        assert_eq!(via(&p, "https://ssm.us-east-1.amazonaws.com/").as_deref(), Some("http://sq:3128/"));
        assert_eq!(via(&p, "http://moto:5000/").as_deref(), Some("http://plain:8080/"));
        assert_eq!(via(&p, "https://db.internal/"), None);
        assert_eq!(via(&p, "http://10.1.2.3/"), None);
        assert_eq!(via(&p, "http://169.254.170.2/v2/credentials/x"), None, "the task role's credentials never go through a proxy");
        assert_eq!(via(&p, "http://169.254.169.254/latest"), None);
        assert!(Proxy::new(None, env(&[])).unwrap().intercept(&"https://x/".parse().unwrap()).is_none());
        let all = Proxy::new(None, env(&[("ALL_PROXY", "http://a:1")])).unwrap();
        assert_eq!((via(&all, "http://x/").as_deref(), via(&all, "https://x/").as_deref()), (Some("http://a:1/"), Some("http://a:1/")));
    }

    #[test]
    fn the_flag_wins_and_bad_values_name_their_origin_never_the_password() {
        let p = Proxy::new(Some(("http://u:s3cret@proxy:3128", "--proxy-url")), env(&[("HTTPS_PROXY", "http://other:1")])).unwrap();
        assert_eq!(via(&p, "https://xray.us-east-1.amazonaws.com/").as_deref(), Some("http://proxy:3128/"));
        let shown = p.describe();
        assert!(shown.contains("http://***@proxy:3128") && !shown.contains("s3cret"), "{shown}");
        assert!(!format!("{p:?}").contains("s3cret"));
        let mut req = Request::builder().uri("http://moto:5000/").body(()).unwrap();
        p.authorize(&mut req);
        assert_eq!(req.headers()[header::PROXY_AUTHORIZATION], "Basic dTpzM2NyZXQ=");
        let e = Proxy::new(None, env(&[("HTTPS_PROXY", "https://u:s3cret@proxy:443")])).unwrap_err().to_string();
        assert!(e.starts_with("HTTPS_PROXY: https://***@proxy:443: only http:// proxies") && !e.contains("s3cret"), "{e}");
        let e = Proxy::new(Some(("http://u:s3cret@bad host", "--proxy-url")), env(&[])).unwrap_err().to_string();
        assert!(e.starts_with("--proxy-url: ") && !e.contains("s3cret"), "{e}");
    }
}
