"""A fault-injecting HTTP proxy for the secrets tests: sits between the agent and moto_server.

Usage: faultproxy.py LISTEN_PORT UPSTREAM_URL FAULT [COUNT] [ARG]
  FAULT is one of
    none                      forward everything
    throttle N                answer the first N requests with 400 ThrottlingException
    error500 N                answer the first N requests with 500 InternalServerError
    slow N SECONDS            hold the first N requests SECONDS before forwarding
    drop N                    close the first N connections without an answer
    rate RPS                  allow RPS requests per second (token bucket), throttle the rest
    deny TEXT                 answer 400 AccessDeniedException (AWS's JSON error shape, naming
                              TEXT as the resource) to every request whose body contains TEXT
    kms TEXT                  answer 400 DecryptionFailure (Secrets Manager's KMS error) to every
                              request whose body contains TEXT
It prints "ready PORT" once listening, and on stdin EOF or SIGTERM prints "requests=N faults=M" and exits.
"""
import http.client
import http.server
import json
import signal
import sys
import threading
import time
import urllib.parse

port, upstream, fault = int(sys.argv[1]), sys.argv[2], sys.argv[3]
deny = sys.argv[4] if fault in ("deny", "kms") else None
arg1 = float(sys.argv[4]) if len(sys.argv) > 4 and not deny else 0
arg2 = float(sys.argv[5]) if len(sys.argv) > 5 else 0
up = urllib.parse.urlparse(upstream)
lock = threading.Lock()
counts = {"requests": 0, "faults": 0}
bucket = {"tokens": arg1, "at": time.monotonic()}


def take_token():
    with lock:
        now = time.monotonic()
        bucket["tokens"] = min(arg1, bucket["tokens"] + (now - bucket["at"]) * arg1)
        bucket["at"] = now
        if bucket["tokens"] >= 1:
            bucket["tokens"] -= 1
            return True
        return False


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with lock:
            counts["requests"] += 1
            n = counts["requests"]
        if fault == "throttle" and n <= arg1 or fault == "rate" and not take_token():
            return self.fail(400, "ThrottlingException", "Rate exceeded")
        if fault == "kms" and deny.encode() in body:
            return self.fail(400, "DecryptionFailure",
                             "Secrets Manager can't decrypt the protected secret text using the provided KMS key.")
        if fault == "deny" and deny.encode() in body:
            target = self.headers.get("X-Amz-Target", "")
            action = "ssm:" + target.split(".")[-1] if target else "ssm:GetParameters"
            return self.fail(400, "AccessDeniedException",
                             f"User: arn:aws:sts::123456789012:assumed-role/task-role/abc is not authorized to perform: "
                             f"{action} on resource: arn:aws:ssm:us-east-1:123456789012:parameter{deny} "
                             "because no identity-based policy allows the action")
        if fault == "error500" and n <= arg1:
            return self.fail(500, "InternalServerError", "injected")
        if fault == "drop" and n <= arg1:
            with lock:
                counts["faults"] += 1
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault == "slow" and n <= arg1:
            with lock:
                counts["faults"] += 1
            time.sleep(arg2)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request("POST", self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        try:
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass

    def fail(self, status, code, message):
        with lock:
            counts["faults"] += 1
        data = json.dumps({"__type": code, "message": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("x-amzn-ErrorType", code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True


def finish(*_):
    print(f"requests={counts['requests']} faults={counts['faults']}", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, finish)
threading.Thread(target=server.serve_forever, daemon=True).start()
print("ready", server.server_address[1], flush=True)
sys.stdin.read()
finish()
