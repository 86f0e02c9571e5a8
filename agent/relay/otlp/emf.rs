//! Metrics to CloudWatch without a collector: `--metrics-emf` writes the app's OTLP metrics as
//! CloudWatch Embedded Metric Format lines on the agent's stdout, which the `awslogs` driver
//! already ships to CloudWatch Logs, where CloudWatch extracts the metrics — no extra IAM
//! permission, no PutMetricData calls.
//!
//! Shaped as ADOT's awsemf exporter shapes them: one JSON line per data point, the namespace from
//! `--metrics-emf-namespace` (else the resource's `service.namespace`/`service.name`), the
//! dimensions the point's attributes plus `service.name` (at most 30, CloudWatch's limit), sums
//! as deltas (a cumulative series' first point only sets its start), gauges as they are,
//! histograms as `Values`/`Counts` (bucket midpoints) with `Min`/`Max`/`Sum`/`Count`, summaries
//! as `Min`/`Max`/`Sum`/`Count`. The previous value of every cumulative series is kept, within a
//! cap (`MAX_SERIES`); past it, new series are counted as rejected.
//!
//! Each line is written with one `write` to stdout, so it is not interleaved with the app's own
//! lines (the app shares the descriptor).

use std::collections::HashMap;
use std::io::Write;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point, AggregationTemporality};
use prost::Message;
use serde_json::{json, Map, Value as Json};

use super::message::Chunk;
use crate::relay::batcher::{Sent, Sink};

/// Cumulative series remembered for deltas, at most.
pub const MAX_SERIES: usize = 10_000;
/// CloudWatch takes at most 30 dimensions in a dimension set.
const MAX_DIMENSIONS: usize = 30;

pub struct Emf {
    namespace: Option<String>,
    /// A series' last cumulative value(s), by metric name and attributes.
    previous: HashMap<String, Previous>,
    out: Box<dyn Write + Send>,
}

#[derive(Clone)]
enum Previous {
    Sum(f64),
    Histogram { count: u64, sum: f64, buckets: Vec<u64> },
}

impl Emf {
    /// Writes to stdout; `namespace`: `--metrics-emf-namespace`.
    pub fn stdout(namespace: Option<String>) -> Emf {
        Emf::new(namespace, Box::new(std::io::stdout()))
    }

    pub fn new(namespace: Option<String>, out: Box<dyn Write + Send>) -> Emf {
        Emf { namespace, previous: HashMap::new(), out }
    }

    /// The EMF lines of one request; and how many data points could not be written.
    pub fn lines(&mut self, request: ExportMetricsServiceRequest) -> (Vec<String>, u64) {
        let (mut lines, mut rejected) = (Vec::new(), 0);
        for rm in request.resource_metrics {
            let resource = rm.resource.map(|r| r.attributes).unwrap_or_default();
            let service = text(&resource, "service.name");
            let namespace = self.namespace.clone().unwrap_or_else(|| match (text(&resource, "service.namespace"), &service) {
                (Some(ns), Some(s)) => format!("{ns}/{s}"),
                (None, Some(s)) => s.clone(),
                (Some(ns), None) => ns,
                (None, None) => "agent".to_string(),
            });
            for sm in rm.scope_metrics {
                for m in sm.metrics {
                    let unit = unit(&m.unit);
                    let Some(data) = m.data else { continue };
                    let mut emit = |attrs: &[KeyValue], time: u64, value: Json| {
                        lines.push(document(&namespace, service.as_deref(), &m.name, unit, attrs, time, value));
                    };
                    match data {
                        Data::Gauge(g) => {
                            for p in g.data_points {
                                emit(&p.attributes, p.time_unix_nano, json!(number(&p.value)));
                            }
                        }
                        Data::Sum(s) => {
                            let cumulative = s.aggregation_temporality == AggregationTemporality::Cumulative as i32;
                            for p in s.data_points {
                                let v = number(&p.value);
                                if !cumulative {
                                    emit(&p.attributes, p.time_unix_nano, json!(v));
                                    continue;
                                }
                                match self.remember(series(&m.name, &p.attributes), Previous::Sum(v)) {
                                    Remembered::Full => rejected += 1,
                                    Remembered::First => {}
                                    // A reset (the app restarted its counter): the new value is the delta.
                                    Remembered::Was(Previous::Sum(before)) => {
                                        emit(&p.attributes, p.time_unix_nano, json!(if v >= before { v - before } else { v }))
                                    }
                                    Remembered::Was(_) => {}
                                }
                            }
                        }
                        Data::Histogram(h) => {
                            let cumulative = h.aggregation_temporality == AggregationTemporality::Cumulative as i32;
                            for p in h.data_points {
                                let (mut count, mut sum, mut buckets) = (p.count, p.sum.unwrap_or(0.0), p.bucket_counts.clone());
                                if cumulative {
                                    let now = Previous::Histogram { count, sum, buckets: buckets.clone() };
                                    match self.remember(series(&m.name, &p.attributes), now) {
                                        Remembered::Full => {
                                            rejected += 1;
                                            continue;
                                        }
                                        Remembered::First => continue,
                                        Remembered::Was(Previous::Histogram { count: c0, sum: s0, buckets: b0 })
                                            if count >= c0 && b0.len() == buckets.len() =>
                                        {
                                            count -= c0;
                                            sum -= s0;
                                            buckets.iter_mut().zip(b0).for_each(|(b, b0)| *b = b.saturating_sub(b0));
                                        }
                                        Remembered::Was(_) => {} // a reset: the new totals are the delta
                                    }
                                }
                                if count == 0 {
                                    continue;
                                }
                                let (values, counts) = midpoints(&p.explicit_bounds, &buckets, p.min, p.max);
                                let min = p.min.unwrap_or_else(|| values.first().copied().unwrap_or(0.0));
                                let max = p.max.unwrap_or_else(|| values.last().copied().unwrap_or(0.0));
                                emit(
                                    &p.attributes,
                                    p.time_unix_nano,
                                    json!({"Values": values, "Counts": counts, "Min": min, "Max": max, "Sum": sum, "Count": count}),
                                );
                            }
                        }
                        Data::Summary(s) => {
                            for p in s.data_points {
                                let q = |at: f64| p.quantile_values.iter().find(|v| v.quantile == at).map(|v| v.value);
                                let (min, max) = (q(0.0).unwrap_or(0.0), q(1.0).unwrap_or(0.0));
                                emit(&p.attributes, p.time_unix_nano, json!({"Min": min, "Max": max, "Sum": p.sum, "Count": p.count}));
                            }
                        }
                        Data::ExponentialHistogram(h) => rejected += h.data_points.len() as u64,
                    }
                }
            }
        }
        (lines, rejected)
    }

    fn remember(&mut self, key: String, now: Previous) -> Remembered {
        if let Some(slot) = self.previous.get_mut(&key) {
            return Remembered::Was(std::mem::replace(slot, now));
        }
        if self.previous.len() >= MAX_SERIES {
            return Remembered::Full;
        }
        self.previous.insert(key, now);
        Remembered::First
    }

    async fn write(&mut self, batch: Vec<Chunk>) -> Sent<Chunk> {
        let mut rejected = 0;
        let mut why = String::new();
        for chunk in batch {
            let Ok(request) = ExportMetricsServiceRequest::decode(&chunk.body[..]) else {
                rejected += chunk.count;
                continue;
            };
            let (lines, skipped) = self.lines(request);
            if skipped > 0 {
                rejected += skipped;
                why = format!(
                    "EMF: exponential histograms are not written, and at most {MAX_SERIES} cumulative series are followed; {skipped} data points left out"
                );
            }
            for mut line in lines {
                line.push('\n');
                // One write per line: whole lines, never mixed with the app's output.
                if let Err(e) = self.out.write_all(line.as_bytes()) {
                    return Sent::Failed { reason: format!("EMF: cannot write to stdout: {e}") };
                }
            }
        }
        let _ = self.out.flush();
        Sent::Done { rejected, retry: Vec::new(), reason: why }
    }
}

enum Remembered {
    First,
    Was(Previous),
    Full,
}

impl Sink for Emf {
    type Item = Chunk;

    fn send(&mut self, batch: Vec<Chunk>) -> impl std::future::Future<Output = Sent<Chunk>> + Send {
        self.write(batch)
    }
}

fn text(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|a| a.key == key).and_then(|a| a.value.as_ref()?.value.as_ref()).map(scalar)
}

/// An attribute value as a dimension value.
fn scalar(v: &Value) -> String {
    match v {
        Value::StringValue(s) => s.clone(),
        Value::BoolValue(b) => b.to_string(),
        Value::IntValue(i) => i.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn number(v: &Option<number_data_point::Value>) -> f64 {
    match v {
        Some(number_data_point::Value::AsDouble(d)) => *d,
        Some(number_data_point::Value::AsInt(i)) => *i as f64,
        None => 0.0,
    }
}

/// A series' key: the metric's name and its attributes, in order.
fn series(name: &str, attrs: &[KeyValue]) -> String {
    let mut key = name.to_string();
    for a in attrs {
        key.push('\u{1f}');
        key.push_str(&a.key);
        key.push('=');
        key.push_str(&a.value.as_ref().and_then(|v| v.value.as_ref()).map(scalar).unwrap_or_default());
    }
    key
}

/// CloudWatch's name for an OTLP (UCUM) unit.
fn unit(u: &str) -> &'static str {
    match u {
        "ms" => "Milliseconds",
        "s" => "Seconds",
        "us" => "Microseconds",
        "By" => "Bytes",
        "KiBy" | "kBy" => "Kilobytes",
        "MiBy" | "MBy" => "Megabytes",
        "%" => "Percent",
        "1" | "{request}" | "{requests}" => "Count",
        _ => "None",
    }
}

/// Each non-empty bucket as (its midpoint, its count); the open-ended buckets use min and max
/// (or their one bound).
fn midpoints(bounds: &[f64], counts: &[u64], min: Option<f64>, max: Option<f64>) -> (Vec<f64>, Vec<u64>) {
    let (mut values, mut out) = (Vec::new(), Vec::new());
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let v = match (i.checked_sub(1).and_then(|j| bounds.get(j)), bounds.get(i)) {
            (Some(lo), Some(hi)) => (lo + hi) / 2.0,
            (None, Some(hi)) => min.map_or(*hi, |m| (m + hi) / 2.0),
            (Some(lo), None) => max.map_or(*lo, |m| (lo + m) / 2.0),
            (None, None) => min.zip(max).map_or(0.0, |(a, b)| (a + b) / 2.0),
        };
        values.push(v);
        out.push(c);
    }
    (values, out)
}

/// One EMF document: the `_aws` metadata, the dimensions' values, and the metric's value.
fn document(namespace: &str, service: Option<&str>, name: &str, unit: &str, attrs: &[KeyValue], time_nanos: u64, value: Json) -> String {
    let mut doc = Map::new();
    let mut dimensions = Vec::new();
    if let Some(s) = service {
        dimensions.push("service.name".to_string());
        doc.insert("service.name".into(), json!(s));
    }
    for a in attrs {
        if dimensions.len() >= MAX_DIMENSIONS || a.key == name || a.key == "_aws" {
            continue;
        }
        if let Some(v) = a.value.as_ref().and_then(|v| v.value.as_ref()) {
            if !doc.contains_key(&a.key) {
                dimensions.push(a.key.clone());
                doc.insert(a.key.clone(), json!(scalar(v)));
            }
        }
    }
    let millis = if time_nanos > 0 {
        time_nanos / 1_000_000
    } else {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    };
    doc.insert(
        "_aws".into(),
        json!({"Timestamp": millis, "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": [dimensions], "Metrics": [{"Name": name, "Unit": unit}]}]}),
    );
    doc.insert(name.to_string(), value);
    Json::Object(doc).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::metrics::v1::{Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue { key: k.into(), value: Some(AnyValue { value: Some(Value::StringValue(v.into())) }), ..Default::default() }
    }

    fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource { attributes: vec![kv("service.name", "backend-flask")], ..Default::default() }),
                scope_metrics: vec![ScopeMetrics { metrics, ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    fn counter(total: i64) -> Metric {
        let p = NumberDataPoint {
            attributes: vec![kv("http.route", "/api/x")],
            time_unix_nano: 1_700_000_000_123_000_000,
            value: Some(number_data_point::Value::AsInt(total)),
            ..Default::default()
        };
        Metric {
            name: "requests".into(),
            unit: "1".into(),
            data: Some(Data::Sum(Sum { data_points: vec![p], aggregation_temporality: 2, is_monotonic: true })),
            ..Default::default()
        }
    }

    fn parse(lines: &[String]) -> Vec<Json> {
        lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn cumulative_sums_become_deltas_with_the_awsemf_shape() {
        let mut emf = Emf::new(None, Box::new(std::io::sink()));
        let (first, _) = emf.lines(request(vec![counter(10)]));
        assert!(first.is_empty(), "the first cumulative point only sets the start");
        let docs = parse(&emf.lines(request(vec![counter(25)])).0);
        assert_eq!(docs.len(), 1);
        let d = &docs[0];
        assert_eq!(d["requests"], 15.0);
        assert_eq!(d["http.route"], "/api/x");
        assert_eq!(d["service.name"], "backend-flask");
        let meta = &d["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(d["_aws"]["Timestamp"], 1_700_000_000_123u64);
        assert_eq!(meta["Namespace"], "backend-flask");
        assert_eq!(meta["Dimensions"], json!([["service.name", "http.route"]]));
        assert_eq!(meta["Metrics"], json!([{"Name": "requests", "Unit": "Count"}]));
        // A counter that went back (the app restarted): the new total is the delta.
        assert_eq!(parse(&emf.lines(request(vec![counter(4)])).0)[0]["requests"], 4.0);
    }

    #[test]
    fn histograms_are_values_and_counts_with_statistics() {
        let p = HistogramDataPoint {
            count: 6,
            sum: Some(130.0),
            bucket_counts: vec![1, 0, 4, 1],
            explicit_bounds: vec![10.0, 20.0, 50.0],
            min: Some(5.0),
            max: Some(70.0),
            time_unix_nano: 1_700_000_000_000_000_000,
            ..Default::default()
        };
        let m = Metric {
            name: "http.server.duration".into(),
            unit: "ms".into(),
            data: Some(Data::Histogram(Histogram { data_points: vec![p], aggregation_temporality: 1 })),
            ..Default::default()
        };
        let mut emf = Emf::new(Some("cruddur".into()), Box::new(std::io::sink()));
        let d = &parse(&emf.lines(request(vec![m])).0)[0];
        assert_eq!(
            d["http.server.duration"],
            json!({"Values": [7.5, 35.0, 60.0], "Counts": [1, 4, 1], "Min": 5.0, "Max": 70.0, "Sum": 130.0, "Count": 6})
        );
        assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Namespace"], "cruddur");
        assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"], "Milliseconds");
    }

    #[test]
    fn the_series_map_has_a_cap() {
        let mut emf = Emf::new(None, Box::new(std::io::sink()));
        emf.previous = (0..MAX_SERIES).map(|i| (i.to_string(), Previous::Sum(0.0))).collect();
        let (lines, rejected) = emf.lines(request(vec![counter(1)]));
        assert!(lines.is_empty());
        assert_eq!(rejected, 1);
    }
}
