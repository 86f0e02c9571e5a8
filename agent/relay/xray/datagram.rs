//! The X-Ray daemon's UDP protocol: one datagram is a header line, a newline, and one segment
//! document: `{"format": "json", "version": 1}\n{...segment...}`.
//!
//! As the daemon does: the header must be a JSON object whose `format` is "json" (any case) and
//! whose `version` is 1 (any JSON whitespace is fine); the body is passed on as raw text, not
//! parsed, and must not be empty. Unlike the daemon, a body that is not UTF-8 is rejected here
//! (PutTraceSegments takes strings), and every rejection has a reason that is counted.

use serde::Deserialize;

/// A segment document may be 64 KB at most (PutTraceSegments' limit).
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// No newline: no header, or no body.
    NoNewline,
    /// The header is not a JSON object.
    HeaderNotJson,
    /// The header's format is not "json".
    BadFormat,
    /// The header's version is not 1.
    BadVersion,
    EmptyBody,
    TooLarge,
    NotUtf8,
}

impl Reject {
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::NoNewline => "no newline after the header",
            Reject::HeaderNotJson => "header is not a JSON object",
            Reject::BadFormat => "header format is not \"json\"",
            Reject::BadVersion => "header version is not 1",
            Reject::EmptyBody => "empty segment document",
            Reject::TooLarge => "segment document larger than 64 KB",
            Reject::NotUtf8 => "segment document is not UTF-8",
        }
    }
}

#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    version: Option<serde_json::Value>,
}

/// The headers the SDKs actually send, checked without a JSON parse.
const CANONICAL: [&[u8]; 2] = [br#"{"format": "json", "version": 1}"#, br#"{"format":"json","version":1}"#];

/// Whether a segment document is one of the agent's own health probe's requests: its
/// `"http": {"request": {"user_agent": "agent-health"}}` (any spacing the SDKs write).
pub fn is_health_probe(doc: &str) -> bool {
    let (doc, key) = (doc.as_bytes(), b"\"user_agent\"");
    let mut from = 0;
    while let Some(at) = memchr::memmem::find(&doc[from..], key) {
        let rest = &doc[from + at + key.len()..];
        let rest = rest.trim_ascii_start();
        if let Some(value) = rest.strip_prefix(b":").map(<[u8]>::trim_ascii_start) {
            if value
                .strip_prefix(b"\"")
                .is_some_and(|v| v.starts_with(healthcheck::USER_AGENT.as_bytes()) && v.get(healthcheck::USER_AGENT.len()) == Some(&b'"'))
            {
                return true;
            }
        }
        from += at + key.len();
    }
    false
}

/// The segment document of a datagram, or why the datagram is rejected.
pub fn parse(datagram: &[u8]) -> Result<&str, Reject> {
    let nl = datagram.iter().position(|&b| b == b'\n').ok_or(Reject::NoNewline)?;
    let (header, body) = (&datagram[..nl], &datagram[nl + 1..]);
    if !CANONICAL.contains(&header) {
        let header: Header = serde_json::from_slice(header).map_err(|_| Reject::HeaderNotJson)?;
        if !header.format.is_some_and(|f| f.eq_ignore_ascii_case("json")) {
            return Err(Reject::BadFormat);
        }
        if !header.version.is_some_and(|v| v.as_i64() == Some(1) || v.as_f64() == Some(1.0)) {
            return Err(Reject::BadVersion);
        }
    }
    let body = std::str::from_utf8(body).map_err(|_| Reject::NotUtf8)?;
    let body = body.trim_end_matches(['\n', '\r']);
    if body.trim().is_empty() {
        return Err(Reject::EmptyBody);
    }
    if body.len() > MAX_BODY {
        return Err(Reject::TooLarge);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_health_probe_is_known_by_its_user_agent() {
        assert!(is_health_probe(r#"{"name":"app","http":{"request":{"method":"GET","user_agent":"agent-health"}}}"#));
        assert!(is_health_probe(r#"{"http": {"request": {"url": "/x", "user_agent" : "agent-health"}}}"#), "the Python SDK's spacing");
        assert!(!is_health_probe(r#"{"http":{"request":{"user_agent":"agent-healthy"}}}"#));
        assert!(!is_health_probe(r#"{"http":{"request":{"user_agent":"ELB-HealthChecker/2.0"}},"annotations":{"x":"agent-health"}}"#));
        assert!(!is_health_probe(r#"{"user_agent""#), "cut short");
    }
    use proptest::prelude::*;

    #[test]
    fn the_daemons_header_rules() {
        let seg = r#"{"trace_id":"1-5f84c7a1-1234567890abcdef01234567","id":"0123456789abcdef","name":"x","start_time":1,"end_time":2}"#;
        assert_eq!(parse(format!("{{\"format\": \"json\", \"version\": 1}}\n{seg}").as_bytes()), Ok(seg));
        assert_eq!(
            parse(format!("{{ \"format\" :\"JSON\",\n\"version\":1 }}\n{seg}").as_bytes()),
            Err(Reject::HeaderNotJson),
            "the header ends at the first newline"
        );
        assert_eq!(parse(format!("{{ \"version\" : 1 , \"format\" :\"JSON\" }}\n{seg}").as_bytes()), Ok(seg), "any case, any spacing, any order");
        assert_eq!(parse(format!("{{\"format\":\"json\",\"version\":2}}\n{seg}").as_bytes()), Err(Reject::BadVersion));
        assert_eq!(parse(format!("{{\"format\":\"xml\",\"version\":1}}\n{seg}").as_bytes()), Err(Reject::BadFormat));
        assert_eq!(parse(format!("{{\"version\":1}}\n{seg}").as_bytes()), Err(Reject::BadFormat));
        assert_eq!(parse(b"{\"format\":\"json\",\"version\":1}"), Err(Reject::NoNewline));
        assert_eq!(parse(b"not json\n{}"), Err(Reject::HeaderNotJson));
        assert_eq!(parse(b"{\"format\":\"json\",\"version\":1}\n  \n"), Err(Reject::EmptyBody));
        assert_eq!(parse(b"{\"format\":\"json\",\"version\":1}\n\xff\xfe"), Err(Reject::NotUtf8));
        let big = format!("{{\"format\":\"json\",\"version\":1}}\n{}", "x".repeat(MAX_BODY + 1));
        assert_eq!(parse(big.as_bytes()), Err(Reject::TooLarge));
    }

    proptest! {
        #[test]
        fn never_panics_and_accepts_only_what_it_should(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(body) = parse(&data) {
                prop_assert!(!body.trim().is_empty());
                prop_assert!(data.contains(&b'\n'));
            }
        }

        #[test]
        fn any_valid_body_round_trips(body in "[ -~]{1,200}") {
            prop_assume!(!body.trim().is_empty());
            let d = format!("{{\"format\":\"json\",\"version\":1}}\n{body}");
            prop_assert_eq!(parse(d.as_bytes()), Ok(body.trim_end_matches(['\n', '\r'])));
        }
    }
}
