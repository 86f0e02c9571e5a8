"""A local OTLP/HTTP backend for the tests: it plays Honeycomb (or X-Ray's OTLP endpoint, or
X-Ray's PutTraceSegments: POST /TraceSegments is logged with its documents and answered).

Decodes every POST of traces, metrics (a path ending in "metrics") and logs (ending in "logs")
with the real opentelemetry-proto package (gzip undone) and appends one JSON object per request
to LOG_FILE: the headers, the spans (name, trace id, service.name), the metrics' data points
(metric name, service.name, attributes, value), the log records (body, trace id, service.name,
severity), and, with --sigv4-secret, whether the SigV4 signature is valid (recomputed with
botocore from the request as received). With --fail-for S it answers --status (503) for the
first S seconds, with --retry-after if given, and logs those refusals too.

With --tls CERT KEY it serves HTTPS (an upstream reached through a proxy's CONNECT tunnel).
With --host IP it listens there instead of 127.0.0.1 (the container test's veth address).

Usage: otlp_sink.py PORT LOG_FILE [--fail-for S] [--status N] [--retry-after S] [--sigv4-secret KEY] [--tls CERT KEY] [--host IP]
Prints "ready PORT" once listening (PORT 0: the kernel chooses); runs until killed.
"""
import argparse
import gzip
import http.server
import json
import re
import threading
import time

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

p = argparse.ArgumentParser()
p.add_argument("port", type=int)
p.add_argument("--host", default="127.0.0.1")
p.add_argument("log_file")
p.add_argument("--fail-for", type=float, default=0)
p.add_argument("--tls", nargs=2)
p.add_argument("--status", type=int, default=503)
p.add_argument("--retry-after")
p.add_argument("--sigv4-secret")
args = p.parse_args()
started = time.monotonic()
lock = threading.Lock()

AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, ?"
                  r"SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$")


def sigv4(headers, path, body):
    """Recomputes the signature from what was received; 'valid', or what is wrong."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    m = AUTH.match(headers.get("authorization", ""))
    if not m:
        return "no SigV4 Authorization header"
    akid, _date, region, service, signed, signature = m.groups()
    req = AWSRequest(method="POST", url=f"http://{headers['host']}{path}", data=body,
                     headers={h: headers[h] for h in signed.split(";")})
    req.context["timestamp"] = headers["x-amz-date"]
    auth = SigV4Auth(Credentials(akid, args.sigv4_secret), service, region)
    expected = auth.signature(auth.string_to_sign(req, auth.canonical_request(req)), req)
    return "valid" if expected == signature else "signature mismatch"


def service(resource):
    return next((a.value.string_value for a in resource.attributes if a.key == "service.name"), "")


def attrs(resource):
    """The resource's attributes: strings as they are, string arrays as lists."""
    out = {}
    for a in resource.attributes:
        kind = a.value.WhichOneof("value")
        if kind == "array_value":
            out[a.key] = [v.string_value for v in a.value.array_value.values]
        elif kind:
            out[a.key] = str(getattr(a.value, kind))
    return out


def spans(data):
    req = ExportTraceServiceRequest()
    req.ParseFromString(data)
    return [{"name": s.name, "trace_id": s.trace_id.hex(), "service": service(rs.resource), "resource": attrs(rs.resource)}
            for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]


def metric_points(data):
    req = ExportMetricsServiceRequest()
    req.ParseFromString(data)
    out = []
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                for p in getattr(m, kind).data_points:
                    points_attrs = {a.key: str(getattr(a.value, a.value.WhichOneof("value"))) for a in p.attributes}
                    if kind in ("sum", "gauge"):
                        value = getattr(p, p.WhichOneof("value"))
                    else:
                        value = p.count
                    out.append({"metric": m.name, "service": service(rm.resource), "attributes": points_attrs, "value": value,
                                "resource": attrs(rm.resource)})
    return out


def log_records(data):
    req = ExportLogsServiceRequest()
    req.ParseFromString(data)
    return [{"body": r.body.string_value, "trace_id": r.trace_id.hex(), "service": service(rl.resource),
             "severity": r.severity_text, "resource": attrs(rl.resource)}
            for rl in req.resource_logs for sl in rl.scope_logs for r in sl.log_records]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        record = {"path": self.path, "headers": headers, "bytes": len(body)}
        if args.sigv4_secret:
            record["sigv4"] = sigv4(headers, self.path, body)
            m = AUTH.match(headers.get("authorization", ""))
            record["scope"] = "/".join(m.groups()[2:4]) if m else ""
        if self.path == "/TraceSegments":
            # X-Ray's PutTraceSegments (JSON), for the test of the agent's signed requests.
            record["documents"] = json.loads(body)["TraceSegmentDocuments"]
            with lock, open(args.log_file, "a") as f:
                f.write(json.dumps(record) + "\n")
            answer = b'{"UnprocessedTraceSegments":[]}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            return
        data = gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body
        if self.path.endswith("metrics"):
            record["points"] = metric_points(data)
        elif self.path.endswith("logs"):
            record["logs"] = log_records(data)
        else:
            record["spans"] = spans(data)
        failing = time.monotonic() - started < args.fail_for
        record["answered"] = args.status if failing else 200
        with lock, open(args.log_file, "a") as f:
            f.write(json.dumps(record) + "\n")
        if failing:
            self.send_response(args.status)
            if args.retry_after:
                self.send_header("Retry-After", args.retry_after)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
if args.tls:
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*args.tls)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("ready", server.server_address[1], flush=True)
server.serve_forever()
