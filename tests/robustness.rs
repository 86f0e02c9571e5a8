//! The fuzz targets' functions (fuzz/checks.rs), run by proptest in CI: arbitrary bytes, and
//! valid inputs with bytes changed, must never panic. The long runs are cargo-fuzz's
//! (fuzz/, RELIABILITY.md "Fuzzing"); this keeps every target exercised on every change.

#[path = "../fuzz/checks.rs"]
mod checks;

use proptest::prelude::*;

/// Valid inputs for each target, which the mutation strategy starts from.
fn seeds() -> Vec<Vec<u8>> {
    let span = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"s"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"","name":"GET /x","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000","attributes":[{"key":"http.request.method","value":{"stringValue":"GET"}},{"key":"http.response.status_code","value":{"intValue":"500"}},{"key":"k","value":{"kvlistValue":{"values":[{"key":"a","value":{"arrayValue":{"values":[{"doubleValue":1.5}]}}}]}}}],"events":[{"name":"exception","attributes":[{"key":"exception.type","value":{"stringValue":"E"}}]}],"status":{"code":2}}]}]}]}"#;
    let segment = r#"{"format":"json","version":1}
{"name":"app","id":"70de5b6f19ff9a0a","trace_id":"1-581cf771-a006649127e371903a2de979","start_time":1478293361.271,"end_time":1478293361.449,"http":{"request":{"method":"GET","url":"http://x/y"},"response":{"status":500}},"fault":true,"subsegments":[{"name":"db","id":"70de5b6f19ff9a0b","start_time":1478293361.3,"end_time":1478293361.4,"namespace":"remote","sql":{"url":"pg://db"}}],"annotations":{"a":1},"metadata":{"default":{"k":"v"}}}"#;
    let protobuf = {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message;
        serde_json::from_str::<ExportTraceServiceRequest>(span).unwrap().encode_to_vec()
    };
    vec![
        span.as_bytes().to_vec(),
        segment.as_bytes().to_vec(),
        protobuf,
        b"arn:aws:secretsmanager:us-east-1:123456789012:secret:flask-api/database-AbCdEf:password:AWSCURRENT:".to_vec(),
        b"arn:aws:ssm:us-east-1:123456789012:parameter/cruddur/backend-flask/CONNECTION_URL".to_vec(),
        b"/cruddur/backend-flask/OTEL_EXPORTER_OTLP_HEADERS".to_vec(),
        b"1m30s".to_vec(),
        b"4MiB".to_vec(),
        b"127.0.0.1:2000".to_vec(),
        b"TERM:QUIT".to_vec(),
        b"arn:aws:iam::123456789012:role/xray-writer".to_vec(),
    ]
}

/// A seed with up to 16 bytes replaced, inserted or removed.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 0..16);
    (prop::sample::select(seeds()), edits).prop_map(|(mut s, edits)| {
        for (at, byte, kind) in edits {
            let i = at.index(s.len() + 1);
            match kind {
                0 if i < s.len() => s[i] = byte,
                1 => s.insert(i, byte),
                _ if i < s.len() => {
                    s.remove(i);
                }
                _ => {}
            }
        }
        s
    })
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..512), mutated()]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn xray_datagram(data in input()) { checks::xray_datagram(&data) }

    #[test]
    fn xray_to_otlp(data in input()) { checks::xray_to_otlp(&data) }

    #[test]
    fn otlp_protobuf(data in input()) { checks::otlp_protobuf(&data) }

    #[test]
    fn otlp_json(data in input()) { checks::otlp_json(&data) }

    #[test]
    fn otlp_to_segments(data in input()) { checks::otlp_to_segments(&data) }

    #[test]
    fn value_from(data in input()) { checks::value_from(&data) }

    #[test]
    fn settings(data in input()) { checks::settings(&data) }
}

#[test]
fn the_seeds_are_valid_inputs() {
    // The mutations start from inputs that get past the first checks, so they reach the code
    // behind them.
    let s = seeds();
    assert!(agent::relay::xray::datagram::parse(&s[1]).is_ok());
    assert!(agent::relay::xray::to_otlp::convert(agent::relay::xray::datagram::parse(&s[1]).unwrap()).is_ok());
    assert!(std::str::from_utf8(&s[3]).unwrap().parse::<agent::secrets::reference::Reference>().is_ok());
    assert!(agent::config::parse_duration("1m30s").is_ok() && agent::config::parse_size("4MiB").is_ok());
    assert!("TERM:QUIT".parse::<agent::signals::Rewrite>().is_ok());
}
