"""A stand-in for X-Ray's sampling APIs, which moto does not have (and PutTraceSegments, so one
endpoint serves the agent). Records every request's path and Authorization header, one JSON
object per line, in LOG_FILE, and answers with a fixed rule set.
Usage: xray_stub.py PORT LOG_FILE   (prints "ready PORT"; runs until killed)"""
import http.server
import json
import sys

port, log_file = int(sys.argv[1]), sys.argv[2]
RULES = {"SamplingRuleRecords": [{"SamplingRule": {
    "RuleName": "stub-rule", "RuleARN": "arn:aws:xray:us-east-1:123456789012:sampling-rule/stub-rule",
    "ResourceARN": "*", "Priority": 100, "FixedRate": 0.5, "ReservoirSize": 2, "ServiceName": "*",
    "ServiceType": "*", "Host": "*", "HTTPMethod": "*", "URLPath": "*", "Version": 1, "Attributes": {},
    # Adaptive sampling (2025), newer than some SDK models: a proxy must pass it through.
    "SamplingRateBoost": {"MaxRate": 0.2, "CooldownWindowMinutes": 1}},
    "CreatedAt": 1700000000.0, "ModifiedAt": 1700000001.0}]}
TARGETS = {"SamplingTargetDocuments": [{"RuleName": "stub-rule", "FixedRate": 0.5, "ReservoirQuota": 2,
           "ReservoirQuotaTTL": 1900000000.0, "Interval": 10}], "LastRuleModification": 1700000001.0,
           "UnprocessedStatistics": []}


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(log_file, "a") as f:
            f.write(json.dumps({"path": self.path, "authorization": self.headers.get("Authorization", ""),
                                "body": body.decode("utf-8", "replace")}) + "\n")
        if self.path == "/SamplingTargets" and b"not-a-rule" in body:
            # X-Ray's answer to a bad request, which the agent passes back as it came.
            data = b'{"__type": "InvalidRequestException", "message": "stub: no such rule"}'
            self.send_response(400)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        answer = {"/GetSamplingRules": RULES, "/SamplingTargets": TARGETS}.get(self.path, {"UnprocessedTraceSegments": []})
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
print("ready", server.server_address[1], flush=True)
server.serve_forever()
