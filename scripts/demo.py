"""The demo driver: the agent wrapping the example gunicorn/Flask app, end to end.

Started by scripts/demo, which builds the agent and the venv first. A local AWS stand-in
(moto_server) holds the Cruddur secrets and plays X-Ray; a local OTLP backend
(tests/aws/otlp_sink.py) plays Honeycomb. The app is instrumented with both the X-Ray SDK and
OpenTelemetry, as the seed is. Prints what happens and a short summary; with --once it stops the
app itself and exits 0 only if everything worked.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import shutil
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "examples", "backend-flask")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, timeout=5):
    return get_with_headers(port, path, timeout)[:2]


def get_with_headers(port, path, timeout=5):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.status, r.read().decode(), r.headers


CRUDDUR_PARAMS = {
    "AWS_ACCESS_KEY_ID": "AKIADEMODEMODEMO0001",
    "AWS_SECRET_ACCESS_KEY": "demo-secret-access-key-not-real",
    "CONNECTION_URL": "postgresql://cruddur:demo-password@db:5432/cruddur",
    "OTEL_EXPORTER_OTLP_HEADERS": "x-honeycomb-team=demo-honeycomb-key",
}


def start_moto(venv_bin):
    """A local AWS stand-in, seeded like the Cruddur account."""
    port = free_port()
    proc = subprocess.Popen([os.path.join(venv_bin, "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("demo: moto_server did not start")
            time.sleep(0.1)
    import boto3
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    ssm = boto3.client("ssm", **kw)
    for name, value in CRUDDUR_PARAMS.items():
        ssm.put_parameter(Name=f"/cruddur/backend-flask/{name}", Value=value, Type="SecureString")
    boto3.client("secretsmanager", **kw).create_secret(
        Name="flask-api/database", SecretString=json.dumps({"username": "cruddur", "password": "demo-db-password"}))
    return proc, endpoint


def start_otlp_backend(venv_bin):
    """A local OTLP/HTTP backend standing in for Honeycomb: it logs every request it gets."""
    log = os.path.join(tempfile.mkdtemp(prefix="agent-demo-"), "otlp-requests.jsonl")
    # Port 0: it binds a free port and says which ("ready PORT").
    proc = subprocess.Popen([os.path.join(venv_bin, "python"), os.path.join(ROOT, "tests", "aws", "otlp_sink.py"),
                             "0", log], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    words = proc.stdout.readline().split()
    if len(words) != 2 or words[0] != "ready":
        raise SystemExit("demo: the OTLP backend did not start")
    return proc, f"http://127.0.0.1:{words[1]}", log


def xray_traces(endpoint, ids):
    """How many of these trace ids X-Ray (moto) holds."""
    import boto3
    c = boto3.client("xray", endpoint_url=endpoint, region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing")
    found = set()
    for i in range(0, len(ids), 5):
        found.update(t["Id"] for t in c.batch_get_traces(TraceIds=ids[i:i + 5])["Traces"])
    return len(found & set(ids))


def otlp_delivered(log):
    """(API request spans from backend-flask, whether every request carried the Honeycomb header)."""
    if not os.path.exists(log):
        return 0, False
    with open(log) as f:
        requests = [json.loads(line) for line in f]
    spans = [s for r in requests for s in r["spans"] if s["service"] == "backend-flask" and s["name"].startswith("GET /api/")]
    return len(spans), bool(requests) and all(r["headers"].get("x-honeycomb-team") for r in requests)


def wait_healthy(port, agent, deadline_s=30):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise SystemExit(f"demo: the agent exited early with code {agent.returncode}")
        try:
            if get(port, "/api/health-check", timeout=1)[0] == 200:
                return time.monotonic()
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"demo: the app did not answer on port {port} within {deadline_s}s")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--once", action="store_true", help="make the requests, stop, and exit")
    ap.add_argument("--port", type=int, default=0, help="port for the app (default: a free one)")
    args = ap.parse_args()

    agent_bin = os.environ["DEMO_AGENT_BIN"]
    port = args.port or free_port()
    venv_bin = os.path.dirname(sys.executable)
    moto, endpoint = start_moto(venv_bin)
    print(f"demo: moto_server (local AWS: SSM, Secrets Manager, X-Ray) at {endpoint}, seeded with "
          f"/cruddur/backend-flask/* and flask-api/database", flush=True)
    otlp_backend, otlp_endpoint, otlp_log = start_otlp_backend(venv_bin)
    print(f"demo: a local OTLP backend standing in for Honeycomb at {otlp_endpoint}", flush=True)
    # Ports of their own, so the demo runs beside anything else on 2000 and 4318.
    xray_address, otlp_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = dict(os.environ, HOST="127.0.0.1", PORT=str(port), WEB_CONCURRENCY="2",
               PATH=venv_bin + os.pathsep + os.environ.get("PATH", ""),
               AWS_ENDPOINT_URL=endpoint, AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1",
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_EC2_METADATA_DISABLED="true",
               # The seed's tracing settings: X-Ray SDK on (every request traced, for the count), and
               # OpenTelemetry to "Honeycomb"; its key (OTEL_EXPORTER_OTLP_HEADERS) is in Parameter Store.
               XRAY_ENABLED="1", XRAY_SAMPLING="false", OTEL_SERVICE_NAME="backend-flask",
               OTEL_EXPORTER_OTLP_ENDPOINT=otlp_endpoint, OTEL_BSP_SCHEDULE_DELAY="200")
    health_socket = f"agent-demo-{os.getpid()}"
    cmd = [agent_bin, "run", "--stop-timeout", "25s",
           "--ssm-path", "/cruddur/backend-flask",
           "--secret", "DB_USERNAME=secretsmanager:flask-api/database:username::",
           "--secret", "DB_PASSWORD=arn:aws:secretsmanager:us-east-1:123456789012:secret:flask-api/database:password::",
           "--health-url", f"http://127.0.0.1:{port}/api/health-check", "--health-socket", health_socket,
           "--xray-address", xray_address, "--otlp-address", otlp_address,
           "--wait-ready", "--",
           "gunicorn", "-c", os.path.join(APP, "gunicorn.conf.py"), "--chdir", APP, "app:app"]
    print(f"demo: starting agent run --ssm-path /cruddur/backend-flask --secret ... --health-url ... --wait-ready "
          f"-- gunicorn ... on 127.0.0.1:{port} (X-Ray on {xray_address}, OTLP on {otlp_address})", flush=True)
    started = time.monotonic()
    agent = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)

    results, trace_ids = {}, []
    try:
        ready = wait_healthy(port, agent)
        results["ready_ms"] = round((ready - started) * 1000)

        for path in ["/api/health-check", "/api/activities/home", "/api/message_groups"]:
            status, body, headers = get_with_headers(port, path)
            results[path] = status
            trace_ids.append(headers.get("X-Amzn-Trace-Id", "").split(";")[0].removeprefix("Root="))
            print(f"demo: GET {path} -> {status} {body[:60]!r}", flush=True)
        status, body = get(port, "/api/config-check")
        seen = json.loads(body)
        # The Honeycomb key is loaded, but kept by the agent: the app never sees it.
        results["kept_from_app"] = ["OTEL_EXPORTER_OTLP_HEADERS"] if not seen.pop("OTEL_EXPORTER_OTLP_HEADERS") else []
        results["app_sees"] = sorted(k for k, v in seen.items() if v)
        results["app_misses"] = sorted(k for k, v in seen.items() if not v)
        print(f"demo: the app sees (names only): {', '.join(results['app_sees'])}", flush=True)
        print("demo: loaded but kept from the app: OTEL_EXPORTER_OTLP_HEADERS (the agent sends it to the OTLP backend)"
              if results["kept_from_app"] else "demo: the app can see OTEL_EXPORTER_OTLP_HEADERS", flush=True)
        health = subprocess.run([agent_bin, "health", "--socket", health_socket],
                                capture_output=True, text=True, timeout=10)
        results["agent_health"] = health.returncode
        print(f"demo: agent health -> exit {health.returncode}: {health.stdout.strip()}", flush=True)
        if not args.once:
            print("demo: running; press Ctrl-C to stop the app gracefully", flush=True)
            agent.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if agent.poll() is None:
            print("demo: sending SIGTERM to the agent (what ECS does on stop)", flush=True)
            stop = time.monotonic()
            agent.send_signal(signal.SIGTERM)
            code = agent.wait(timeout=40)
            results["stop_ms"] = round((time.monotonic() - stop) * 1000)
        code = agent.returncode
        results["agent_exit_code"] = code

    # The agent flushed both relays before it exited: everything should be there now.
    ids = [t for t in trace_ids if t] if results.get("/api/health-check") else []
    results["xray_traces_delivered"] = f"{xray_traces(endpoint, ids)}/{len(ids)}"
    spans, with_key = otlp_delivered(otlp_log)
    results["otlp_api_spans_delivered"] = spans
    results["otlp_header_on_every_request"] = with_key
    print(f"demo: X-Ray (moto) holds {results['xray_traces_delivered']} of the requests' traces; the OTLP backend got "
          f"{spans} API request spans from backend-flask, "
          f"{'each request with' if with_key else 'NOT all with'} the x-honeycomb-team header", flush=True)
    moto.terminate()
    otlp_backend.terminate()
    moto.wait()
    otlp_backend.wait()
    shutil.rmtree(os.path.dirname(otlp_log), ignore_errors=True)
    ok = (code == 0 and results.get("agent_health") == 0 and results.get("app_sees") and not results.get("app_misses")
          and results.get("kept_from_app") and ids and results["xray_traces_delivered"] == f"{len(ids)}/{len(ids)}"
          and spans >= 3 and with_key and all(v == 200 for k, v in results.items() if k.startswith("/")))
    print("demo: summary " + json.dumps(results), flush=True)
    print("demo: " + ("OK" if ok else "FAILED"), flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
