"""The X-Ray SDK's own sampling client (aws_xray_sdk ServiceConnector, unsigned, as it talks to
the daemon) against HOST:PORT: fetches the rules, then reports statistics for them.
Prints {"rules": [...], "targets": [...]} and exits 0, or prints the error and exits 1."""
import json
import sys

from aws_xray_sdk.core.sampling.connector import ServiceConnector

host, port = sys.argv[1].rsplit(":", 1)
c = ServiceConnector()
c.setup_xray_client(host, port, None)
try:
    rules = c.fetch_sampling_rules()
    targets, _ = c.fetch_sampling_target(rules)
except Exception as e:  # the test reads what went wrong
    print(f"error: {e}")
    sys.exit(1)
print(json.dumps({"rules": [r.name for r in rules], "targets": sorted(targets)}))
