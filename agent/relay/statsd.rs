//! StatsD on UDP 127.0.0.1:8125, into the metrics path: what the ADOT collector's `statsd`
//! receiver does for apps that count with a StatsD client. Lines are aggregated per series
//! (name, type and tags) and every `INTERVAL` (and at shutdown, before the sinks flush) become
//! one OTLP metrics request for the metrics ingest, so they go wherever OTLP metrics go: an OTLP
//! upstream, or CloudWatch with `--metrics-emf`.
//!
//! `name:value|type[|@rate][|#tag:value,tag]`, several lines a datagram. Counters (`c`, divided
//! by the sample rate) become delta sums; gauges (`g`, `+n`/`-n` relative to the last value in
//! the interval) gauges; timers, histograms and distributions (`ms`, `h`, `d`) summaries
//! (count, sum, min, max); sets (`s`) a gauge of the distinct members. At most `MAX_SERIES`
//! series in an interval (more are counted as rejected) and `MAX_SET` members a set.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, summary_data_point::ValueAtQuantile, AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::otlp::{Accepted, Ingest};
use super::problems::Problems;

pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8125";
/// How often the aggregates become metrics (the collector's default is 60 s).
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Series in one interval, at most.
pub const MAX_SERIES: usize = 10_000;
/// Members of one set, at most.
pub const MAX_SET: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Type {
    Counter,
    Gauge,
    Timer,
    Set,
}

/// One StatsD line.
#[derive(Debug, PartialEq)]
struct Line<'a> {
    name: &'a str,
    value: &'a str,
    kind: Type,
    rate: f64,
    tags: Vec<(&'a str, &'a str)>,
}

/// Parses one line, or says why it is not StatsD.
fn parse(line: &str) -> Result<Line<'_>, &'static str> {
    let (name, rest) = line.split_once(':').ok_or("no ':' after the metric name")?;
    if name.is_empty() {
        return Err("an empty metric name");
    }
    let mut parts = rest.split('|');
    let value = parts.next().filter(|v| !v.is_empty()).ok_or("no value")?;
    let kind = match parts.next().ok_or("no '|type' after the value")? {
        "c" => Type::Counter,
        "g" => Type::Gauge,
        "ms" | "h" | "d" => Type::Timer,
        "s" => Type::Set,
        _ => return Err("an unknown type (c, g, ms, h, d or s)"),
    };
    if kind != Type::Set && value.parse::<f64>().map_or(true, |v| !v.is_finite()) {
        return Err("a value that is not a number");
    }
    let (mut rate, mut tags) = (1.0, Vec::new());
    for p in parts {
        if let Some(r) = p.strip_prefix('@') {
            rate = r.parse::<f64>().ok().filter(|r| *r > 0.0 && *r <= 1.0).ok_or("a sample rate that is not in (0, 1]")?;
        } else if let Some(t) = p.strip_prefix('#') {
            tags.extend(t.split(',').filter(|t| !t.is_empty()).map(|t| t.split_once(':').unwrap_or((t, ""))));
        }
    }
    Ok(Line { name, value, kind, rate, tags })
}

#[derive(Debug)]
enum Aggregate {
    Counter(f64),
    Gauge(f64),
    Timer { count: u64, sum: f64, min: f64, max: f64 },
    Set(HashSet<String>),
}

/// A series: its name, type and (sorted) tags.
type SeriesKey = (String, Type, Vec<(String, String)>);

/// The series of one interval.
#[derive(Default)]
pub struct Aggregator {
    series: HashMap<SeriesKey, Aggregate>,
    start: u64,
    service: String,
    /// Lines taken into series; refused (malformed, or over the cap).
    pub lines: u64,
    pub rejected: u64,
    problems: Problems,
}

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

impl Aggregator {
    pub fn new(service: String) -> Aggregator {
        Aggregator { start: now_nanos(), service, ..Default::default() }
    }

    /// Takes a datagram's lines.
    pub fn take(&mut self, datagram: &[u8]) {
        let text = String::from_utf8_lossy(datagram);
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            match parse(line) {
                Ok(l) => self.add(l),
                Err(why) => {
                    self.rejected += 1;
                    self.problems.once(why, || format!("rejected a StatsD line: {why} (further ones like it are only counted)"));
                }
            }
        }
    }

    fn add(&mut self, l: Line<'_>) {
        let mut tags: Vec<(String, String)> = l.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        tags.sort();
        let key = (l.name.to_string(), l.kind, tags);
        if !self.series.contains_key(&key) && self.series.len() >= MAX_SERIES {
            self.rejected += 1;
            self.problems.once("series", || format!("more than {MAX_SERIES} StatsD series in {INTERVAL:?}; further new ones are only counted"));
            return;
        }
        self.lines += 1;
        let v = l.value.parse::<f64>().unwrap_or(0.0);
        let relative = l.kind == Type::Gauge && (l.value.starts_with('+') || l.value.starts_with('-'));
        let entry = self.series.entry(key).or_insert_with(|| match l.kind {
            Type::Counter => Aggregate::Counter(0.0),
            Type::Gauge => Aggregate::Gauge(0.0),
            Type::Timer => Aggregate::Timer { count: 0, sum: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY },
            Type::Set => Aggregate::Set(HashSet::new()),
        });
        match entry {
            Aggregate::Counter(c) => *c += v / l.rate,
            Aggregate::Gauge(g) => *g = if relative { *g + v } else { v },
            Aggregate::Timer { count, sum, min, max } => {
                *count += (1.0 / l.rate).round() as u64;
                *sum += v / l.rate;
                *min = min.min(v);
                *max = max.max(v);
            }
            Aggregate::Set(s) if s.len() < MAX_SET => {
                s.insert(l.value.to_string());
            }
            Aggregate::Set(_) => {}
        }
    }

    /// The interval's series as one OTLP metrics request (`None`: nothing came), and a new interval.
    pub fn flush(&mut self) -> Option<ExportMetricsServiceRequest> {
        let (start, end) = (self.start, now_nanos());
        self.start = end;
        if self.series.is_empty() {
            return None;
        }
        let string =
            |k: &str, v: &str| KeyValue { key: k.into(), value: Some(AnyValue { value: Some(Value::StringValue(v.into())) }), ..Default::default() };
        let metrics = self
            .series
            .drain()
            .map(|((name, _, tags), agg)| {
                let attributes: Vec<KeyValue> = tags.iter().map(|(k, v)| string(k, v)).collect();
                let number = |v: f64| NumberDataPoint {
                    attributes: attributes.clone(),
                    start_time_unix_nano: start,
                    time_unix_nano: end,
                    value: Some(number_data_point::Value::AsDouble(v)),
                    ..Default::default()
                };
                let data = match agg {
                    Aggregate::Counter(c) => Data::Sum(Sum {
                        data_points: vec![number(c)],
                        aggregation_temporality: AggregationTemporality::Delta as i32,
                        is_monotonic: true,
                    }),
                    Aggregate::Gauge(g) => Data::Gauge(Gauge { data_points: vec![number(g)] }),
                    Aggregate::Set(s) => Data::Gauge(Gauge { data_points: vec![number(s.len() as f64)] }),
                    Aggregate::Timer { count, sum, min, max } => Data::Summary(Summary {
                        data_points: vec![SummaryDataPoint {
                            attributes,
                            start_time_unix_nano: start,
                            time_unix_nano: end,
                            count,
                            sum,
                            quantile_values: vec![ValueAtQuantile { quantile: 0.0, value: min }, ValueAtQuantile { quantile: 1.0, value: max }],
                            ..Default::default()
                        }],
                    }),
                };
                Metric { name, data: Some(data), ..Default::default() }
            })
            .collect();
        Some(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource { attributes: vec![string("service.name", &self.service)], ..Default::default() }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope { name: "statsd".into(), ..Default::default() }),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        })
    }
}

/// Receives until `cancel`, then drains the socket and hands over the last interval, so nothing
/// received is left behind when the sinks flush.
pub async fn serve(socket: tokio::net::UdpSocket, ingest: Arc<Ingest>, cancel: CancellationToken, service: String) {
    let mut agg = Aggregator::new(service);
    let mut buf = vec![0u8; 65_536];
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + INTERVAL, INTERVAL);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => hand_over(&mut agg, &ingest),
            r = socket.recv(&mut buf) => match r {
                Ok(n) => {
                    crate::fault::point("statsd");
                    agg.take(&buf[..n])
                }
                Err(e) => {
                    warn!(error = %e, "StatsD: cannot read the socket");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    // Drained through the plain socket: tokio's try_recv reads only once the reactor has seen
    // the socket readable, which a source stopped right after it started has not.
    if let Ok(socket) = socket.into_std() {
        while let Ok(n) = socket.recv(&mut buf) {
            agg.take(&buf[..n]);
        }
    }
    hand_over(&mut agg, &ingest);
    tracing::info!(lines = agg.lines, rejected = agg.rejected, "StatsD lines received, final counts");
}

fn hand_over(agg: &mut Aggregator, ingest: &Ingest) {
    if let Some(request) = agg.flush() {
        // Not push-back: UDP senders cannot retry, so a full queue drops its oldest instead.
        if let Accepted::Queued { rejected, why } = ingest.accept(request, None, false) {
            if rejected > 0 {
                warn!("StatsD: {rejected} data points rejected: {why}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_parsed_as_the_statsd_and_dogstatsd_formats() {
        let l = parse("api.requests:3|c|@0.5|#route:/home,env:prod").unwrap();
        assert_eq!((l.name, l.value, l.kind, l.rate), ("api.requests", "3", Type::Counter, 0.5));
        assert_eq!(l.tags, [("route", "/home"), ("env", "prod")]);
        assert_eq!(parse("t:12.5|ms").unwrap().kind, Type::Timer);
        assert_eq!(parse("users:alice|s").unwrap().kind, Type::Set);
        for bad in ["nocolon", ":1|c", "x:|c", "x:1", "x:1|q", "x:abc|c", "x:1|c|@2", "x:inf|g"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_interval_becomes_one_metrics_request() {
        let mut a = Aggregator::new("svc".into());
        a.take(b"hits:1|c|#route:/a\nhits:2|c|@0.5|#route:/a\nhits:1|c|#route:/b\ntemp:20|g\ntemp:+5|g\nlat:10|ms\nlat:30|ms\nu:x|s\nu:y|s\nu:x|s\nbroken\n");
        assert_eq!((a.lines, a.rejected), (10, 1));
        let req = a.flush().unwrap();
        let rm = &req.resource_metrics[0];
        assert_eq!(rm.resource.as_ref().unwrap().attributes[0].key, "service.name");
        let metrics = &rm.scope_metrics[0].metrics;
        let points = |name: &str| -> Vec<f64> {
            metrics
                .iter()
                .filter(|m| m.name == name)
                .flat_map(|m| match m.data.as_ref().unwrap() {
                    Data::Sum(Sum { data_points, .. }) | Data::Gauge(Gauge { data_points }) => data_points
                        .iter()
                        .map(|p| match p.value {
                            Some(number_data_point::Value::AsDouble(v)) => v,
                            _ => f64::NAN,
                        })
                        .collect::<Vec<_>>(),
                    Data::Summary(s) => s.data_points.iter().map(|p| p.sum).collect(),
                    _ => vec![],
                })
                .collect()
        };
        let mut hits = points("hits");
        hits.sort_by(f64::total_cmp);
        assert_eq!(hits, [1.0, 5.0], "route /b: 1; route /a: 1 + 2/0.5");
        assert_eq!(points("temp"), [25.0]);
        assert_eq!(points("lat"), [40.0]);
        assert_eq!(points("u"), [2.0], "distinct members");
        assert!(a.flush().is_none(), "a new interval starts empty");
    }

    #[test]
    fn series_are_capped() {
        let mut a = Aggregator::new("svc".into());
        for i in 0..MAX_SERIES + 5 {
            a.take(format!("m{i}:1|c").as_bytes());
        }
        assert_eq!((a.lines, a.rejected), (MAX_SERIES as u64, 5));
    }
}
