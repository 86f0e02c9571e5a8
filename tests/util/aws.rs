//! The harness's stand-ins for AWS and backends: moto, the fault proxy, the OTLP sink.
#![allow(unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// A real moto server (moto's own `ThreadedMotoServer`, tests/aws/moto_serve.py) on a port the
/// kernel chose, killed on drop.
pub struct Moto {
    pub port: u16,
    host: String,
    child: Child,
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_on("127.0.0.1")
    }

    /// moto listening on `host` (an address of this machine's) instead of 127.0.0.1.
    pub fn start_on(host: &str) -> Moto {
        let (child, _, port) = python_server("moto_serve.py", &[host.to_string()]);
        let m = Moto { port, host: host.to_string(), child };
        let addr = format!("{host}:{port}").parse().unwrap();
        wait_until(Duration::from_secs(30), "moto to answer", || http_get_at(addr, "/moto-api/", Duration::from_millis(500)).is_some());
        m
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// Seeds the standard data set (tests/aws/seed.py); returns NAME -> expected value.
    pub fn seed(&self) -> std::collections::HashMap<String, String> {
        let dir = tempfile::tempdir().unwrap();
        let expected = dir.path().join("expected.json");
        let out = run(
            {
                let mut c = Command::new(venv().join("bin/python"));
                c.arg(repo().join("tests/aws/seed.py")).arg(self.endpoint()).arg(&expected);
                c
            },
            Duration::from_secs(120),
        );
        assert!(out.status.success(), "seed.py failed:\n{}", stderr(&out));
        serde_json::from_str(&read(&expected)).unwrap()
    }
}

impl Moto {
    /// Creates or overwrites one SSM parameter (SecureString), with boto3.
    pub fn put(&self, name: &str, value: &str) {
        let mut c = Command::new(venv().join("bin/python"));
        c.args([
            "-c",
            "import boto3, sys; boto3.client('ssm', endpoint_url=sys.argv[1], region_name='us-east-1', \
                       aws_access_key_id='t', aws_secret_access_key='t').put_parameter(Name=sys.argv[2], Value=sys.argv[3], \
                       Type='SecureString', Overwrite=True)",
        ])
        .args([self.endpoint().as_str(), name, value]);
        let out = run(c, Duration::from_secs(60));
        assert!(out.status.success(), "put_parameter {name}: {}", stderr(&out));
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Points a command at a local AWS stand-in, with fake credentials and no IMDS look-ups.
pub fn aws_env(cmd: &mut Command, endpoint: &str) {
    for v in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"] {
        cmd.env_remove(v);
    }
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true");
}

/// The fault-injecting proxy (tests/aws/faultproxy.py) in front of `upstream`.
pub struct FaultProxy {
    pub port: u16,
    child: Child,
    out: std::sync::Arc<std::sync::Mutex<String>>,
}

impl FaultProxy {
    /// On a port the kernel chooses.
    pub fn start(upstream: &str, fault: &[&str]) -> FaultProxy {
        Self::start_on(0, upstream, fault)
    }

    /// On `port`: to bring a proxy back where an earlier one was (an outage that ends).
    pub fn start_on(port: u16, upstream: &str, fault: &[&str]) -> FaultProxy {
        let mut args = vec![port.to_string(), upstream.to_string()];
        args.extend(fault.iter().map(|f| f.to_string()));
        let (child, out, port) = python_server("faultproxy.py", &args);
        FaultProxy { port, child, out }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the proxy; returns (requests, faults) it saw.
    pub fn stop(mut self) -> (u64, u64) {
        drop(self.child.stdin.take());
        let _ = wait_child(&mut self.child, Duration::from_secs(10), "fault proxy");
        let text = self.out.lock().unwrap().clone();
        let num = |k: &str| text.split(k).nth(1).and_then(|s| s.split_whitespace().next()).and_then(|s| s.parse().ok()).unwrap_or(0);
        (num("requests="), num("faults="))
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts one of the harness's Python servers (tests/aws/SCRIPT ARGS...) and waits for it to
/// print "ready PORT" (it binds port 0 unless told a port). Its stdin is a pipe (closing it
/// stops the fault proxy); its stdout is collected. Returns the child, its output, its port.
pub fn python_server(script: &str, args: &[String]) -> (Child, std::sync::Arc<std::sync::Mutex<String>>, u16) {
    let mut child = Command::new(venv().join("bin/python"))
        .arg(repo().join("tests/aws").join(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = collect(child.stdout.take().unwrap());
    let mut port = 0;
    wait_until(Duration::from_secs(30), &format!("{script} to listen"), || {
        port = out.lock().unwrap().split("ready ").nth(1).and_then(|s| s.split_whitespace().next()?.parse().ok()).unwrap_or(0);
        port != 0
    });
    (child, out, port)
}

/// The local OTLP backend (tests/aws/otlp_sink.py; also answers PutTraceSegments), stopped on drop.
pub struct Sink {
    pub port: u16,
    host: String,
    log: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Sink {
    pub fn start(extra: &[&str]) -> Sink {
        Sink::start_on("127.0.0.1", extra)
    }

    /// The sink listening on `host` (an address of this machine's) instead of 127.0.0.1.
    pub fn start_on(host: &str, extra: &[&str]) -> Sink {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.jsonl");
        let mut args = vec!["0".to_string(), log.display().to_string(), "--host".into(), host.into()];
        args.extend(extra.iter().map(|a| a.to_string()));
        let (child, _, port) = python_server("otlp_sink.py", &args);
        Sink { port, host: host.to_string(), log, child, _dir: dir }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// Every request it received, as logged.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        if !self.log.exists() {
            return Vec::new();
        }
        lines(&self.log).iter().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// The spans it accepted (answered 200): (name, trace id, service.name).
    pub fn spans(&self) -> Vec<(String, String, String)> {
        self.requests()
            .iter()
            .filter(|r| r["answered"] == 200)
            .flat_map(|r| r["spans"].as_array().cloned().unwrap_or_default())
            .map(|s| (s["name"].as_str().unwrap().into(), s["trace_id"].as_str().unwrap().into(), s["service"].as_str().unwrap().into()))
            .collect()
    }

    /// What it accepted (answered 200) of one kind — "points" (metrics) or "logs" — each
    /// entry with its request's path and headers.
    pub fn accepted(&self, kind: &str) -> Vec<(serde_json::Value, String, serde_json::Value)> {
        self.requests()
            .into_iter()
            .filter(|r| r["answered"] == 200)
            .flat_map(|r| {
                let (path, headers) = (r["path"].as_str().unwrap_or("").to_string(), r["headers"].clone());
                r[kind].as_array().cloned().unwrap_or_default().into_iter().map(move |e| (e, path.clone(), headers.clone()))
            })
            .collect()
    }

    pub fn wait_for_ids(&self, ids: &[String], within: Duration, what: &str) {
        wait_until(within, what, || {
            let got: std::collections::HashSet<String> = self.spans().into_iter().map(|s| s.1).collect();
            ids.iter().all(|id| got.contains(id))
        });
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for localhost and 127.0.0.1, and its key, written into `dir` by
/// tests/aws/make_cert.py: (cert.pem, key.pem).
pub fn make_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let mut c = Command::new(venv().join("bin/python"));
    c.arg(repo().join("tests/aws/make_cert.py")).arg(dir);
    let made = run(c, Duration::from_secs(60));
    assert!(made.status.success(), "make_cert.py: {}", stderr(&made));
    (dir.join("cert.pem"), dir.join("key.pem"))
}
