//! The fuzz targets' functions (fuzz/checks.rs), run by proptest in CI: arbitrary bytes, and
//! valid inputs with bytes changed, must never panic. The long runs are cargo-fuzz's
//! (fuzz/, RELIABILITY.md "Fuzzing"); this keeps every target exercised on every change.

#[path = "../fuzz/checks.rs"]
mod checks;

use proptest::prelude::*;

/// The seed inputs in fuzz/seeds/ (cargo-fuzz starts every target from all of them;
/// scripts/fuzz), which the mutation strategy starts from too.
fn seeds() -> Vec<Vec<u8>> {
    seed_files().into_iter().map(|(_, bytes)| bytes).collect()
}

fn seed_files() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn seed(name: &str) -> Vec<u8> {
    seed_files().into_iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no seed fuzz/seeds/{name}")).1
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

    #[test]
    fn statsd(data in input()) { checks::statsd(&data) }
}

#[test]
fn the_seeds_are_valid_inputs() {
    // The mutations start from inputs that get past the first checks, so they reach the code
    // behind them: every seed is accepted by the target it is for.
    use agent::relay::otlp::message::{check, decode, decompress, Format};
    use opentelemetry_proto::tonic::collector::{
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest, trace::v1::ExportTraceServiceRequest,
    };
    let items = |name: &str| -> u64 {
        let (format, body) = match name.rsplit_once('.') {
            Some((_, "json")) => (Format::Json, seed(name)),
            Some((_, "pb")) => (Format::Protobuf, seed(name)),
            Some((_, "gz")) => (Format::Protobuf, decompress(Some("gzip"), seed(name).into()).unwrap().to_vec()),
            _ => panic!("{name}"),
        };
        if name.starts_with("traces") {
            check(decode::<ExportTraceServiceRequest>(format, &body).unwrap()).items
        } else if name.starts_with("metrics") {
            check(decode::<ExportMetricsServiceRequest>(format, &body).unwrap()).items
        } else {
            check(decode::<ExportLogsServiceRequest>(format, &body).unwrap()).items
        }
    };
    assert_eq!(items("traces.json"), 3);
    assert_eq!(items("traces-snake.json"), 1);
    assert_eq!(items("metrics.json"), 6, "one data point for each kind of metric");
    assert_eq!(items("logs.json"), 2);
    for name in ["traces.pb", "metrics.pb", "logs.pb", "traces.pb.gz"] {
        let json = name.split('.').next().unwrap().to_string() + ".json";
        assert_eq!(items(name), items(&json), "{name} is {json} in protobuf");
    }
    for name in ["segment.txt", "subsegment.txt", "health-probe.txt"] {
        let bytes = seed(name);
        let doc = agent::relay::xray::datagram::parse(&bytes).unwrap();
        agent::relay::xray::to_otlp::convert(doc).unwrap();
    }
    let probe = seed("health-probe.txt");
    assert!(agent::relay::xray::datagram::is_health_probe(agent::relay::xray::datagram::parse(&probe).unwrap()));
    let mut statsd = agent::relay::statsd::Aggregator::new("s".into());
    statsd.take(&seed("statsd.txt"));
    assert_eq!((statsd.lines, statsd.rejected), (7, 0));
    for (name, bytes) in seed_files().into_iter().filter(|(n, _)| n.starts_with("value-from-")) {
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.parse::<agent::secrets::reference::Reference>().is_ok(), "{name}");
    }
    let text = |name: &str| String::from_utf8(seed(name)).unwrap();
    assert!(agent::config::parse_duration(&text("duration.txt")).is_ok());
    assert!(agent::config::parse_size(&text("size.txt")).is_ok());
    assert!(agent::config::parse_address(&text("address.txt")).is_ok());
    assert!(agent::config::parse_address(&text("address6.txt")).is_ok());
    assert!(agent::config::parse_role_arn(&text("role-arn.txt")).is_ok());
    assert!(text("rewrite.txt").parse::<agent::signals::Rewrite>().is_ok());
}

/// The protobuf seeds are their JSON twins encoded (`FUZZ_WRITE_SEEDS=1` writes them again).
#[test]
fn the_protobuf_seeds_are_the_json_ones() {
    use agent::relay::otlp::message::{decode, Format};
    use opentelemetry_proto::tonic::collector::{
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest, trace::v1::ExportTraceServiceRequest,
    };
    use prost::Message;
    let encoded = |name: &str| -> Vec<u8> {
        let json = seed(&format!("{name}.json"));
        match name {
            "traces" => decode::<ExportTraceServiceRequest>(Format::Json, &json).unwrap().encode_to_vec(),
            "metrics" => decode::<ExportMetricsServiceRequest>(Format::Json, &json).unwrap().encode_to_vec(),
            _ => decode::<ExportLogsServiceRequest>(Format::Json, &json).unwrap().encode_to_vec(),
        }
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for name in ["traces", "metrics", "logs"] {
        let want = encoded(name);
        if std::env::var_os("FUZZ_WRITE_SEEDS").is_some() {
            std::fs::write(dir.join(format!("{name}.pb")), &want).unwrap();
            if name == "traces" {
                use std::io::Write;
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                gz.write_all(&want).unwrap();
                std::fs::write(dir.join("traces.pb.gz"), gz.finish().unwrap()).unwrap();
            }
        }
        assert_eq!(
            seed(&format!("{name}.pb")),
            want,
            "fuzz/seeds/{name}.pb is not fuzz/seeds/{name}.json encoded; FUZZ_WRITE_SEEDS=1 cargo test --test robustness writes it"
        );
    }
}
