//! The task's identity, from the ECS task metadata endpoint (v4), as resource attributes for
//! everything the relay sends on — the attributes ADOT's and OpenTelemetry's ECS resource
//! detectors add (cloud.*, aws.ecs.*, container.*, aws.log.*), so the app's telemetry says which
//! task, cluster, account and log stream it came from without a detector in the app.
//!
//! Read once at start, with a bounded wait: ECS sets `ECS_CONTAINER_METADATA_URI_V4` to a
//! link-local HTTP endpoint that answers in milliseconds; one that does not answer within
//! `TIMEOUT` costs that wait and one warning, never the app. Outside ECS nothing is read.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, ArrayValue, KeyValue};
use serde_json::Value as Json;

/// The whole wait for both documents.
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// The variable ECS sets in every container (platform 1.4.0 and later on Fargate).
pub const VARIABLE: &str = "ECS_CONTAINER_METADATA_URI_V4";
/// A metadata document is a few KB; more is not metadata.
const MAX_BODY: usize = 1 << 20;

/// The task's identity as resource attributes; empty outside ECS or when the endpoint fails
/// (said once).
pub fn identity(env: &std::collections::HashMap<String, String>) -> Vec<KeyValue> {
    let Some(base) = env.get(VARIABLE).map(|v| v.trim().trim_end_matches('/').to_string()).filter(|v| !v.is_empty()) else {
        return Vec::new();
    };
    let deadline = Instant::now() + TIMEOUT;
    let read = get(&base, deadline).and_then(|container| Ok((get(&format!("{base}/task"), deadline)?, container)));
    match read {
        Ok((task, container)) => attributes(&task, &container),
        Err(e) => {
            tracing::warn!(
                "cannot read the ECS task metadata ({VARIABLE}): {e}; telemetry is relayed without the task's identity (cloud.*, aws.ecs.*)"
            );
            Vec::new()
        }
    }
}

/// GET `url` (plain HTTP, as ECS serves it) as JSON, by `deadline`.
fn get(url: &str, deadline: Instant) -> Result<Json, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url:?} is not an http:// URL"))?;
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let host_port = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    let left = |what: &str| {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no answer from {url} within {TIMEOUT:?} ({what})"))
    };
    let addr = host_port.to_socket_addrs().map_err(|e| format!("{authority}: {e}"))?.next().ok_or_else(|| format!("{authority}: no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, left("connecting")?).map_err(|e| format!("{url}: {e}"))?;
    s.set_write_timeout(Some(left("sending")?)).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: application/json\r\n\r\n").map_err(|e| format!("{url}: {e}"))?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        s.set_read_timeout(Some(left("reading")?)).map_err(|e| e.to_string())?;
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) if answer.len() + n <= MAX_BODY => answer.extend_from_slice(&chunk[..n]),
            Ok(_) => return Err(format!("{url}: the answer is over {} KiB", MAX_BODY >> 10)),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(left("reading").err().unwrap_or(e.to_string()))
            }
            Err(e) => return Err(format!("{url}: {e}")),
        }
    }
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| format!("{url}: not an HTTP answer"))?;
    let status = String::from_utf8_lossy(&answer[..split]).split_whitespace().nth(1).unwrap_or("").to_string();
    if status != "200" {
        return Err(format!("{url} answered {status}"));
    }
    serde_json::from_slice(&answer[split + 4..]).map_err(|e| format!("{url}: the answer is not JSON: {e}"))
}

fn string(key: &str, v: impl Into<String>) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(Value::StringValue(v.into())) }), ..Default::default() }
}

fn strings(key: &str, v: Vec<String>) -> KeyValue {
    let values = v.into_iter().map(|s| AnyValue { value: Some(Value::StringValue(s)) }).collect();
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(Value::ArrayValue(ArrayValue { values })) }), ..Default::default() }
}

/// The attributes, from the task document (`${ECS_CONTAINER_METADATA_URI_V4}/task`) and the
/// container's own (`${ECS_CONTAINER_METADATA_URI_V4}`). Missing fields are left out.
pub fn attributes(task: &Json, container: &Json) -> Vec<KeyValue> {
    let s = |doc: &Json, k: &str| doc.get(k).and_then(Json::as_str).filter(|v| !v.is_empty()).map(str::to_string);
    let mut out = vec![string("cloud.provider", "aws"), string("cloud.platform", "aws_ecs")];
    let task_arn = s(task, "TaskARN");
    // arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID
    let arn_parts: Vec<String> = task_arn.as_deref().unwrap_or("").split(':').map(str::to_string).collect();
    let (partition, region, account) = match arn_parts.as_slice() {
        [_, p, _, r, a, ..] => (p.clone(), r.clone(), a.clone()),
        _ => (String::from("aws"), String::new(), String::new()),
    };
    if !region.is_empty() {
        out.push(string("cloud.region", &region));
    }
    if let Some(az) = s(task, "AvailabilityZone") {
        out.push(string("cloud.availability_zone", az));
    }
    if !account.is_empty() {
        out.push(string("cloud.account.id", &account));
    }
    if let Some(arn) = &task_arn {
        out.push(string("aws.ecs.task.arn", arn));
    }
    if let Some(f) = s(task, "Family") {
        out.push(string("aws.ecs.task.family", f));
    }
    if let Some(r) = s(task, "Revision") {
        out.push(string("aws.ecs.task.revision", r));
    }
    if let Some(c) = s(task, "Cluster") {
        // Fargate gives the ARN; EC2 may give the name.
        let arn = if c.starts_with("arn:") || region.is_empty() { c } else { format!("arn:{partition}:ecs:{region}:{account}:cluster/{c}") };
        out.push(string("aws.ecs.cluster.arn", arn));
    }
    if let Some(l) = s(task, "LaunchType") {
        out.push(string("aws.ecs.launchtype", l.to_ascii_lowercase()));
    }
    if let Some(arn) = s(container, "ContainerARN") {
        out.push(string("cloud.resource_id", &arn));
        out.push(string("aws.ecs.container.arn", arn));
    }
    if let Some(id) = s(container, "DockerId") {
        out.push(string("container.id", id));
    }
    if let Some(name) = s(container, "Name") {
        out.push(string("container.name", name));
    }
    let logs = container.get("LogOptions").filter(|_| s(container, "LogDriver").as_deref() == Some("awslogs"));
    if let Some(opts) = logs {
        let group = s(opts, "awslogs-group");
        let stream = s(opts, "awslogs-stream");
        let log_region = s(opts, "awslogs-region").unwrap_or_else(|| region.clone());
        if let Some(g) = &group {
            out.push(strings("aws.log.group.names", vec![g.clone()]));
            if !account.is_empty() {
                out.push(strings("aws.log.group.arns", vec![format!("arn:{partition}:logs:{log_region}:{account}:log-group:{g}")]));
            }
        }
        if let Some(st) = &stream {
            out.push(strings("aws.log.stream.names", vec![st.clone()]));
            if let (Some(g), false) = (&group, account.is_empty()) {
                out.push(strings("aws.log.stream.arns", vec![format!("arn:{partition}:logs:{log_region}:{account}:log-group:{g}:log-stream:{st}")]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
        attrs.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.as_str()),
            Value::ArrayValue(v) => match v.values.first()?.value.as_ref()? {
                Value::StringValue(s) => Some(s.as_str()),
                _ => None,
            },
            _ => None,
        })
    }

    #[test]
    fn fargate_metadata_becomes_the_detectors_attributes() {
        let task = serde_json::json!({
            "Cluster": "arn:aws:ecs:us-west-2:111122223333:cluster/cruddur",
            "TaskARN": "arn:aws:ecs:us-west-2:111122223333:task/cruddur/158d1c8083dd49d6b527399fd6414f5c",
            "Family": "backend-flask", "Revision": "26", "AvailabilityZone": "us-west-2d", "LaunchType": "FARGATE"
        });
        let container = serde_json::json!({
            "DockerId": "158d1c8083dd49d6b527399fd6414f5c-1234", "Name": "backend-flask",
            "ContainerARN": "arn:aws:ecs:us-west-2:111122223333:container/cruddur/158d/abc",
            "LogDriver": "awslogs",
            "LogOptions": {"awslogs-group": "/cruddur/fargate", "awslogs-region": "us-west-2", "awslogs-stream": "backend-flask/backend-flask/158d"}
        });
        let a = attributes(&task, &container);
        let want = [
            ("cloud.provider", "aws"),
            ("cloud.platform", "aws_ecs"),
            ("cloud.region", "us-west-2"),
            ("cloud.availability_zone", "us-west-2d"),
            ("cloud.account.id", "111122223333"),
            ("aws.ecs.task.family", "backend-flask"),
            ("aws.ecs.task.revision", "26"),
            ("aws.ecs.cluster.arn", "arn:aws:ecs:us-west-2:111122223333:cluster/cruddur"),
            ("aws.ecs.launchtype", "fargate"),
            ("container.name", "backend-flask"),
            ("container.id", "158d1c8083dd49d6b527399fd6414f5c-1234"),
            ("aws.log.group.names", "/cruddur/fargate"),
            ("aws.log.stream.names", "backend-flask/backend-flask/158d"),
            ("aws.log.group.arns", "arn:aws:logs:us-west-2:111122223333:log-group:/cruddur/fargate"),
        ];
        for (k, v) in want {
            assert_eq!(get_str(&a, k), Some(v), "{k}");
        }
        // EC2 may name the cluster rather than give its ARN.
        let mut ec2 = task.clone();
        ec2["Cluster"] = "default".into();
        assert_eq!(get_str(&attributes(&ec2, &container), "aws.ecs.cluster.arn"), Some("arn:aws:ecs:us-west-2:111122223333:cluster/default"));
    }

    #[test]
    fn an_endpoint_that_does_not_answer_costs_at_most_the_timeout() {
        // A listener that accepts and never answers.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let env = [(VARIABLE.to_string(), format!("http://{}/v4/x", l.local_addr().unwrap()))].into_iter().collect();
        let t = Instant::now();
        assert!(identity(&env).is_empty());
        assert!(t.elapsed() < TIMEOUT + Duration::from_millis(500), "{:?}", t.elapsed());
        assert!(identity(&Default::default()).is_empty(), "outside ECS: nothing");
    }
}
