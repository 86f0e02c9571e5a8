"""Prints, as JSON, [trace id, segment count] for every given trace id that X-Ray holds.
Usage: xray_traces.py ENDPOINT TRACE_ID..."""
import json
import sys

import boto3

c = boto3.client("xray", endpoint_url=sys.argv[1], region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing")
ids = sys.argv[2:]
out = []
for i in range(0, len(ids), 5):
    for t in c.batch_get_traces(TraceIds=ids[i:i + 5])["Traces"]:
        out.append([t["Id"], len(t["Segments"])])
print(json.dumps(out))
