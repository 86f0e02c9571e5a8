//! The image, run as ECS runs it, without a Docker engine: Dockerfile.example's ENTRYPOINT +
//! CMD, its WORKDIR, ENV and USER, and the task definition's environment, as PID 1 of new PID
//! and mount namespaces whose root is a real Debian root filesystem (debootstrap bookworm
//! minbase with python3 and the example app's requirements from PyPI: scripts/container-test
//! builds and caches it), with the static agent copied to /agent and the app to /backend-flask
//! in an overlay on top (the image's COPY layers), in a network namespace of its own reached
//! over a veth pair (awsvpc: the task has its own loopback, so its ports and the agent's
//! abstract health socket are its own).
//!
//! What ECS would see is checked: the app serves on its port; `/agent health`, run in the
//! container's namespaces and root as the same user (as ECS runs the healthCheck command),
//! exits 0; the Parameter Store values reached the app (the Honeycomb key only the agent) (moto on the host's end of the veth);
//! the X-Ray SDK's segments reach moto's X-Ray and the OpenTelemetry spans the OTLP backend with
//! the key from Parameter Store; SIGTERM stops it within the stop timeout, exit code 0, no
//! process left.
//!
//! Runs when TEST_ROOTFS names the root and TEST_STATIC_BIN the static agent (scripts/test and
//! scripts/container-test set both) and this is root; says SKIP otherwise, and fails under CI.

mod util;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use util::*;

/// What Dockerfile.example's final stage says about how the container runs.
struct Image {
    workdir: String,
    env: Vec<(String, String)>,
    uid: u32,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

/// Reads the final stage of Dockerfile.example (the lines after its last FROM).
fn image() -> Image {
    let text = read(&repo().join("Dockerfile.example")).replace("\\\n", " ");
    let stage = text.rsplit("\nFROM ").next().unwrap();
    let mut image = Image { workdir: "/".into(), env: Vec::new(), uid: 0, entrypoint: Vec::new(), cmd: Vec::new() };
    let json = |rest: &str| serde_json::from_str::<Vec<String>>(rest).unwrap_or_else(|e| panic!("not a JSON array: {rest}: {e}"));
    for line in stage.lines().map(str::trim) {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "WORKDIR" => image.workdir = rest.trim().into(),
            "ENV" => image.env.extend(rest.split_whitespace().map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("ENV without '=': {kv}"));
                (k.to_string(), v.to_string())
            })),
            "RUN" if rest.contains("useradd") => {
                let uid = rest.split("--uid ").nth(1).and_then(|s| s.split_whitespace().next()).expect("useradd --uid N");
                image.uid = uid.parse().unwrap();
            }
            "ENTRYPOINT" => image.entrypoint = json(rest),
            "CMD" => image.cmd = json(rest),
            _ => {}
        }
    }
    assert!(image.uid != 0 && !image.entrypoint.is_empty() && !image.cmd.is_empty(), "Dockerfile.example's USER, ENTRYPOINT, CMD");
    image
}

/// The container definition of examples/ecs/task-definition.json.
fn container_definition() -> serde_json::Value {
    let task: serde_json::Value = serde_json::from_str(&read(&repo().join("examples/ecs/task-definition.json"))).unwrap();
    task["containerDefinitions"][0].clone()
}

/// A network namespace joined to this one by a veth pair: the host end is `host_ip`, the
/// container end `ip`. Deleted on drop (which takes the veth pair with it).
struct Netns {
    name: String,
    host_ip: String,
    ip: String,
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

impl Netns {
    fn new() -> Netns {
        let id = std::process::id();
        let (name, host_if, ns_if) = (format!("agent-ct-{id}"), format!("agh{id}"), format!("agc{id}"));
        let net = 1 + id % 250;
        let (host_ip, ip) = (format!("10.213.{net}.1"), format!("10.213.{net}.2"));
        let ns = Netns { name: name.clone(), host_ip: host_ip.clone(), ip: ip.clone() };
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if]);
        sh(&["ip", "link", "set", &ns_if, "netns", &name]);
        sh(&["ip", "addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
        sh(&["ip", "link", "set", &host_if, "up"]);
        let ns_addr = format!("{ip}/30");
        for args in [&["addr", "add", &ns_addr, "dev", &ns_if][..], &["link", "set", &ns_if, "up"], &["link", "set", "lo", "up"]] {
            sh(&[&["ip", "netns", "exec", &name, "ip"][..], args].concat());
        }
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// The image's layers: the cached Debian root below (never written), /agent and the app above.
struct Overlay {
    merged: PathBuf,
    _dir: tempfile::TempDir,
}

impl Overlay {
    fn new(lower: &Path) -> Overlay {
        let dir = tempfile::tempdir().unwrap();
        let (upper, work, merged) = (dir.path().join("upper"), dir.path().join("work"), dir.path().join("merged"));
        for d in [&upper, &work, &merged] {
            std::fs::create_dir(d).unwrap();
        }
        let opts = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
        sh(&["mount", "-t", "overlay", "overlay", "-o", &opts, merged.to_str().unwrap()]);
        Overlay { merged, _dir: dir }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("--lazy").arg(&self.merged).status();
    }
}

/// `COPY` into the overlay: a file, with its mode.
fn copy_in(from: &Path, root: &Path, to: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let dest = root.join(to.trim_start_matches('/'));
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(from, &dest).unwrap_or_else(|e| panic!("copy {} -> {}: {e}", from.display(), dest.display()));
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The pid namespace and root of a process, as the host sees them.
fn ns_and_root(pid: i32) -> Option<(PathBuf, PathBuf)> {
    Some((std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?, std::fs::read_link(format!("/proc/{pid}/root")).ok()?))
}

/// Host pids of every process in the pid namespace `ns`.
fn processes_in(ns: &Path) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/ns/pid")).is_ok_and(|n| n == ns))
        .collect()
}

fn uid_of(pid: i32) -> Option<u32> {
    read(Path::new(&format!("/proc/{pid}/status"))).lines().find(|l| l.starts_with("Uid:"))?.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn the_image_runs_as_ecs_runs_it() {
    let (Some(rootfs), Some(static_bin)) =
        (std::env::var_os("TEST_ROOTFS").map(PathBuf::from), std::env::var_os("TEST_STATIC_BIN").map(PathBuf::from))
    else {
        assert!(std::env::var_os("CI").is_none(), "CI must run the container test: scripts/test sets TEST_ROOTFS and TEST_STATIC_BIN");
        eprintln!(
            "SKIP: TEST_ROOTFS or TEST_STATIC_BIN is not set (scripts/container-test builds the Debian root and the static agent, and sets them)"
        );
        return;
    };
    if !can_unshare() {
        return;
    }
    assert!(rootfs.join(".complete").exists(), "TEST_ROOTFS={} is not a finished root (scripts/container-test --root)", rootfs.display());
    let image = image();
    let def = container_definition();
    let net = Netns::new();
    let moto = Moto::start_on(&net.host_ip);
    let sink = Sink::start_on(&net.host_ip, &[]);

    // What the task definition's AGENT_SSM_PATH loads: the Cruddur app's secrets.
    let path = def["environment"].as_array().unwrap().iter().find(|e| e["name"] == "AGENT_SSM_PATH").unwrap()["value"].as_str().unwrap().to_string();
    let honeycomb_key = "container-honeycomb-key-5b";
    let secrets = BTreeMap::from([
        ("CONNECTION_URL", "postgresql://cruddur:container-db-pass-5b@db:5432/cruddur".to_string()),
        ("OTEL_EXPORTER_OTLP_HEADERS", format!("x-honeycomb-team={honeycomb_key}")),
        ("DB_USERNAME", "container-user-5b".to_string()),
        ("DB_PASSWORD", "container-db-pass-5b".to_string()),
    ]);
    for (name, value) in &secrets {
        moto.put(&format!("{path}/{name}"), value);
    }

    // The image's layers: /agent (the static binary Dockerfile.example builds) and the app.
    let layers = Overlay::new(&rootfs);
    let root = &layers.merged;
    copy_in(&static_bin, root, "/agent", 0o755);
    let app = repo().join("examples/backend-flask");
    for f in ["app.py", "gunicorn.conf.py", "requirements.txt"] {
        copy_in(&app.join(f), root, &format!("{}/{f}", image.workdir), 0o644);
    }

    // The environment ECS gives the container: the image's ENV, then the task definition's,
    // then what stands in for AWS here (the task role's credentials, moto, the OTLP backend).
    // PATH puts the venv first, as the image's own python would be on it.
    let mut env: BTreeMap<String, String> = image.env.iter().cloned().collect();
    for e in def["environment"].as_array().unwrap() {
        env.insert(e["name"].as_str().unwrap().into(), e["value"].as_str().unwrap().into());
    }
    for (k, v) in [
        ("PATH", "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()),
        ("HOSTNAME", "ip-10-213-0-2".into()),
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        // Honeycomb, played by the sink on the host's end of the veth.
        ("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint()),
        // Trace every request (the example app's switch), so the test knows what to expect.
        ("XRAY_SAMPLING", "false".into()),
    ] {
        env.insert(k.into(), v);
    }
    let stop_timeout = Duration::from_secs(def["stopTimeout"].as_u64().unwrap());

    // ENTRYPOINT + CMD as PID 1 of new pid and mount namespaces, in the task's network
    // namespace, with the image as root, in WORKDIR, as USER.
    let uid = image.uid.to_string();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &net.name, "unshare", "--pid", "--fork", "--mount", "--mount-proc"])
        .arg(format!("--root={}", root.display()))
        .arg(format!("--wd={}", image.workdir))
        .args(["--setuid", &uid, "--setgid", &uid])
        .args(&image.entrypoint)
        .args(&image.cmd)
        .env_clear()
        .envs(&env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    let logs = || format!("{}{}", out.lock().unwrap(), err.lock().unwrap());
    let pid1 = pid1_host_pid(child.id());

    // The app serves on its port, on the task's address.
    let port: u16 = env["PORT"].parse().unwrap();
    let addr = std::net::SocketAddr::new(net.ip.parse().unwrap(), port);
    wait_until(Duration::from_secs(60), "the app to answer on the task's address", || {
        http_get_at(addr, "/api/health-check", Duration::from_secs(2)).is_some_and(|(s, _, _)| s == 200)
    });
    let (ns, container_root) = ns_and_root(pid1).unwrap();
    assert_eq!(container_root, *root, "PID 1's root is the image");
    let inside = processes_in(&ns);
    assert!(inside.len() >= 3, "the agent, gunicorn's master and its workers: {inside:?}");
    for pid in &inside {
        assert_eq!(uid_of(*pid), Some(image.uid), "process {pid} runs as the image's USER");
    }

    // The healthCheck command, run as ECS runs it: in the container's namespaces and root.
    let health: Vec<String> = def["healthCheck"]["command"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(health[0], "CMD");
    let health_timeout = Duration::from_secs(def["healthCheck"]["timeout"].as_u64().unwrap());
    let mut verdict = String::new();
    wait_until(Duration::from_secs(30), "the healthCheck command to exit 0", || {
        let mut c = Command::new("nsenter");
        c.args(["--target", &pid1.to_string(), "--net", "--pid", "--mount", "--root", "--wd", "--setuid", &uid, "--setgid", &uid])
            .args(&health[1..])
            .env_clear()
            .envs(&env);
        let started = Instant::now();
        let o = run(c, health_timeout);
        assert!(started.elapsed() < health_timeout, "the healthCheck answered within its timeout");
        verdict = format!("{}{}", stdout(&o), stderr(&o));
        o.status.code() == Some(0)
    });
    assert!(verdict.starts_with("healthy: "), "{verdict}");

    // The Parameter Store values reached the app (it says which are set, never the values).
    let (_, _, body) = http_get_at(addr, "/api/config-check", Duration::from_secs(5)).unwrap();
    let check: serde_json::Value = serde_json::from_str(&body).unwrap();
    for name in secrets.keys().chain(["OTEL_EXPORTER_OTLP_ENDPOINT"].iter()) {
        // The Honeycomb key stays with the agent, which relays the app's spans with it.
        let want = *name != "OTEL_EXPORTER_OTLP_HEADERS";
        assert_eq!(check[*name], want, "{name} {} the app: {check}", if want { "reached" } else { "kept from" });
    }

    // Traffic: X-Ray segments reach moto's X-Ray; OpenTelemetry spans reach the backend with
    // the key from Parameter Store.
    for _ in 0..3 {
        let (status, _, _) = http_get_at(addr, "/api/activities/home", Duration::from_secs(5)).unwrap();
        assert_eq!(status, 200);
    }
    let mut traces = Vec::new();
    wait_until(Duration::from_secs(30), "the app's X-Ray segments in moto", || {
        let mut c = Command::new(venv().join("bin/python"));
        c.arg(repo().join("tests/aws/xray_dump.py")).arg(moto.endpoint());
        let o = run(c, Duration::from_secs(30));
        traces = serde_json::from_str::<Vec<serde_json::Value>>(&stdout(&o)).unwrap_or_default();
        let sdk = traces.iter().flat_map(|t| t["documents"].as_array().cloned().unwrap_or_default()).filter(|d| d["name"] == "backend-flask");
        sdk.filter(|d| d["http"]["request"]["url"].as_str().is_some_and(|u| u.ends_with("/api/activities/home"))).count() >= 3
    });
    wait_until(Duration::from_secs(30), "the app's spans at the OTLP backend", || {
        sink.spans().iter().filter(|(name, _, service)| name == "home-activities-mock-data" && service == "backend-flask").count() >= 3
    });
    for r in sink.requests() {
        assert_eq!(r["headers"]["x-honeycomb-team"], honeycomb_key, "every upstream request carries the key from Parameter Store");
    }

    // ECS stops the task: SIGTERM to PID 1, SIGKILL after stopTimeout.
    let stopping = Instant::now();
    signal(pid1 as u32, libc::SIGTERM);
    let status = wait_child(&mut child, stop_timeout, "the container to stop within the task's stopTimeout");
    let took = stopping.elapsed();
    let logs = logs();
    assert_eq!(status.code(), Some(0), "exit code 0 after SIGTERM (took {took:?}):\n{logs}");
    assert!(processes_in(&ns).is_empty(), "no process left in the container");
    assert!(logs.contains("Handling signal: term") && logs.contains("Shutting down: Master"), "gunicorn stopped gracefully:\n{logs}");
    assert!(!logs.contains("did not exit within the stop timeout"), "nothing needed killing:\n{logs}");
    assert!(!logs.contains("\"level\":\"ERROR\""), "no errors:\n{logs}");
    assert_no_secret_values(&logs, secrets.values(), "the container's output");
    // The agent's JSON log (AGENT_LOG_FORMAT=json in the task definition): the app's exit code
    // is the agent's, and each upstream's books balance with nothing dropped.
    let events: Vec<serde_json::Value> = logs.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let event = |message: &str| events.iter().find(|e| e["message"].as_str().is_some_and(|m| m.starts_with(message))).cloned();
    assert_eq!(event("child exited").map(|e| e["code"].clone()), Some(0.into()), "{logs}");
    assert_eq!(event("exiting").map(|e| e["code"].clone()), Some(0.into()), "{logs}");
    for (what, at_least) in [("X-Ray segments, final counts", 3), ("OTLP spans, final counts", 6)] {
        let e = event(what).unwrap_or_else(|| panic!("no '{what}' line:\n{logs}"));
        assert!(e["received"].as_u64().unwrap() >= at_least && e["received"] == e["sent"] && e["dropped"] == 0, "{what}: {e}");
    }
    eprintln!("container stopped in {took:?}; health: {verdict}");
}
