//! AWS Signature Version 4 for the relay's own requests (PutTraceSegments, X-Ray's OTLP
//! endpoint): a POST with a body, a path and no query, signing `host`, `x-amz-date` and, with
//! temporary credentials, `x-amz-security-token` (all SigV4 requires).
//!
//! Why not the SDK's signer (`aws-sigv4`), which this replaced: at 400 PutTraceSegments calls a
//! second its general machinery (every header canonicalized through `format!`, a fresh signing
//! key derived with four HMACs per call, the identity cloned into a type-erased box) was a fifth
//! of the X-Ray relay's CPU (BENCHMARKS.md). Here the signing key is derived once a day and the
//! canonical request is written straight into one buffer. The unit tests check every signature
//! against `aws-sigv4`'s for the same inputs. The SDK's calls (secrets, sampling) still sign
//! with the SDK.

use std::fmt::Write;
use std::time::SystemTime;

use http::Uri;
use sha2::{Digest, Sha256};

/// The credentials a signature needs.
pub struct Keys<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
}

/// The headers to add to the request (`host` is the caller's: it must be `uri`'s authority).
#[derive(Debug, PartialEq)]
pub struct Signed {
    pub amz_date: String,
    pub security_token: Option<String>,
    pub authorization: String,
}

/// The signing key of one day, region and service; kept until the date or the keys change.
#[derive(Default)]
pub struct KeyCache {
    day: String,
    key: [u8; 32],
}

impl KeyCache {
    /// Forgets the key (the credentials changed).
    pub fn clear(&mut self) {
        self.day.clear();
    }

    fn key(&mut self, day: &str, secret: &str, region: &str, service: &str) -> [u8; 32] {
        if self.day != day {
            let k = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
            let k = hmac(&k, region.as_bytes());
            let k = hmac(&k, service.as_bytes());
            self.key = hmac(&k, b"aws4_request");
            self.day = day.to_string();
        }
        self.key
    }
}

/// Signs `POST uri` with `body`. Fails (with the reason) for a URI with a query, which the
/// relay's endpoints never have.
pub fn sign(cache: &mut KeyCache, keys: &Keys, region: &str, service: &str, uri: &Uri, body: &[u8], now: SystemTime) -> Result<Signed, String> {
    if uri.query().is_some() {
        return Err(format!("{uri} has a query, which the relay's requests cannot have; remove it from AWS_ENDPOINT_URL"));
    }
    let host = uri.authority().map(|a| a.as_str()).ok_or_else(|| format!("{uri} has no host"))?;
    let amz_date = amz_date(now);
    let day = &amz_date[..8];
    let signed_headers = if keys.session_token.is_some() { "host;x-amz-date;x-amz-security-token" } else { "host;x-amz-date" };

    let mut canonical = String::with_capacity(512);
    canonical.push_str("POST\n");
    encode_path(&mut canonical, uri.path());
    let _ = write!(canonical, "\n\nhost:{host}\nx-amz-date:{amz_date}\n");
    if let Some(token) = keys.session_token {
        let _ = writeln!(canonical, "x-amz-security-token:{}", token.trim());
    }
    let _ = write!(canonical, "\n{signed_headers}\n");
    hex(&mut canonical, &Sha256::digest(body));

    let scope = format!("{day}/{region}/{service}/aws4_request");
    let mut to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n");
    hex(&mut to_sign, &Sha256::digest(canonical.as_bytes()));
    let key = cache.key(day, keys.secret_access_key, region, service);
    let mut authorization = format!("AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature=", keys.access_key_id);
    hex(&mut authorization, &hmac(&key, to_sign.as_bytes()));
    Ok(Signed { amz_date, security_token: keys.session_token.map(str::to_string), authorization })
}

/// HMAC-SHA256 (RFC 2104); keys here are never longer than a block.
fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |x: u8| block.map(|b| b ^ x);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

fn hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// The canonical URI of every service but S3: the path as the request has it, percent-encoded
/// once more (so an encoded `%2F` becomes `%252F`), `/` and unreserved characters kept.
fn encode_path(out: &mut String, path: &str) {
    let path = if path.is_empty() { "/" } else { path };
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// `YYYYMMDDThhmmssZ`, UTC.
fn amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil(days as i64);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    /// What the SDK's signer (`aws-sigv4`) adds to the same request.
    fn sdk(keys: &Keys, region: &str, service: &str, uri: &str, body: &[u8], now: SystemTime) -> Signed {
        let creds =
            aws_credential_types::Credentials::new(keys.access_key_id, keys.secret_access_key, keys.session_token.map(str::to_string), None, "test");
        let identity = creds.into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(now)
            .settings(aws_sigv4::http_request::SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let parsed: Uri = uri.parse().unwrap();
        let host = parsed.authority().unwrap().as_str().to_string();
        let headers = [("host", host.as_str())];
        let signable =
            aws_sigv4::http_request::SignableRequest::new("POST", uri, headers.into_iter(), aws_sigv4::http_request::SignableBody::Bytes(body))
                .unwrap();
        let (instructions, _) = aws_sigv4::http_request::sign(signable, &params).unwrap().into_parts();
        let mut req = http::Request::builder().method("POST").uri(uri).header("host", host).body(()).unwrap();
        instructions.apply_to_request_http1x(&mut req);
        let get = |h: &str| req.headers().get(h).map(|v| v.to_str().unwrap().to_string());
        Signed { amz_date: get("x-amz-date").unwrap(), security_token: get("x-amz-security-token"), authorization: get("authorization").unwrap() }
    }

    #[test]
    fn signs_as_the_sdk_does() {
        let with_token = Keys {
            access_key_id: "ASIAEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token: Some("FwoGZX//token+/="),
        };
        let without = Keys { access_key_id: "AKIDEXAMPLE", secret_access_key: "secret", session_token: None };
        let mut cache = KeyCache::default();
        for (i, (keys, uri, body)) in [
            (&with_token, "https://xray.us-east-1.amazonaws.com/TraceSegments", &b"{\"TraceSegmentDocuments\":[]}"[..]),
            (&without, "http://127.0.0.1:4566/TraceSegments", &b""[..]),
            (&with_token, "https://xray.eu-west-1.amazonaws.com/v1/traces", &[0u8, 1, 2, 255][..]),
            (&without, "http://localhost:8080/base path/%2Fodd~/v1/traces", &b"x"[..]),
        ]
        .into_iter()
        .enumerate()
        {
            // Times across days, years and a leap day, so the key cache is refreshed too.
            for t in [1_764_633_600u64, 1_764_719_999, 1_709_164_800 + 3_723, 4_102_444_800] {
                let now = UNIX_EPOCH + Duration::from_secs(t + i as u64);
                let uri_parsed: Uri = uri.replace(' ', "%20").parse().unwrap();
                let ours = sign(&mut cache, keys, "us-east-1", "xray", &uri_parsed, body, now).unwrap();
                assert_eq!(ours, sdk(keys, "us-east-1", "xray", &uri.replace(' ', "%20"), body, now), "{uri} at {t}");
            }
        }
    }

    #[test]
    fn a_query_is_refused_with_the_reason() {
        let keys = Keys { access_key_id: "a", secret_access_key: "b", session_token: None };
        let e = sign(&mut KeyCache::default(), &keys, "us-east-1", "xray", &"http://h/p?x=1".parse().unwrap(), b"", SystemTime::now()).unwrap_err();
        assert!(e.contains("has a query") && e.contains("AWS_ENDPOINT_URL"), "{e}");
    }

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(amz_date(UNIX_EPOCH + Duration::from_secs(951_782_400)), "20000229T000000Z");
        assert_eq!(amz_date(UNIX_EPOCH + Duration::from_secs(1_798_761_599)), "20261231T235959Z");
    }
}
