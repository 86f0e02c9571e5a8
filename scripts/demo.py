"""The demo driver: the agent wrapping the example gunicorn/Flask app, end to end.

Started by scripts/demo, which builds the agent and the venv first. Prints what happens and a
short summary; with --once it stops the app itself and exits 0 only if everything worked.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "examples", "backend-flask")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, timeout=5):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.status, r.read().decode()


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
    print(f"demo: moto_server (local AWS) at {endpoint}, seeded with /cruddur/backend-flask/* and flask-api/database",
          flush=True)
    env = dict(os.environ, HOST="127.0.0.1", PORT=str(port), WEB_CONCURRENCY="2",
               PATH=venv_bin + os.pathsep + os.environ.get("PATH", ""),
               AWS_ENDPOINT_URL=endpoint, AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1",
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_EC2_METADATA_DISABLED="true")
    health_socket = f"agent-demo-{os.getpid()}"
    cmd = [agent_bin, "run", "--stop-timeout", "25s",
           "--ssm-path", "/cruddur/backend-flask",
           "--secret", "DB_USERNAME=secretsmanager:flask-api/database:username::",
           "--secret", "DB_PASSWORD=arn:aws:secretsmanager:us-east-1:123456789012:secret:flask-api/database:password::",
           "--health-url", f"http://127.0.0.1:{port}/api/health-check", "--health-socket", health_socket,
           "--wait-ready", "--",
           "gunicorn", "-c", os.path.join(APP, "gunicorn.conf.py"), "--chdir", APP, "app:app"]
    print(f"demo: starting agent run --ssm-path /cruddur/backend-flask --secret ... --health-url ... --wait-ready "
          f"-- gunicorn ... on 127.0.0.1:{port}", flush=True)
    started = time.monotonic()
    agent = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)

    results = {}
    try:
        ready = wait_healthy(port, agent)
        results["ready_ms"] = round((ready - started) * 1000)
        for path in ["/api/health-check", "/api/activities/home", "/api/message_groups"]:
            status, body = get(port, path)
            results[path] = status
            print(f"demo: GET {path} -> {status} {body[:60]!r}", flush=True)
        status, body = get(port, "/api/config-check")
        loaded = json.loads(body)
        results["secrets_in_app"] = sorted(k for k, v in loaded.items() if v)
        results["secrets_missing"] = sorted(k for k, v in loaded.items() if not v)
        print(f"demo: the app sees these secrets (names only): {', '.join(results['secrets_in_app'])}", flush=True)
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

    moto.terminate()
    moto.wait()
    ok = (code == 0 and results.get("agent_health") == 0 and results.get("secrets_in_app") and not results.get("secrets_missing")
          and all(v == 200 for k, v in results.items() if k.startswith("/")))
    print("demo: summary " + json.dumps(results), flush=True)
    print("demo: " + ("OK" if ok else "FAILED"), flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
