"""Prints, as JSON, every trace X-Ray (moto) holds from the last hour: [{"id": ..., "documents": [...]}],
each document parsed. Usage: xray_dump.py ENDPOINT [ACCESS_KEY_ID] (moto keeps each account's
traces apart: an assumed role's key reads that role's account)."""
import datetime
import json
import sys

import boto3

c = boto3.client("xray", endpoint_url=sys.argv[1], region_name="us-east-1",
                 aws_access_key_id=sys.argv[2] if len(sys.argv) > 2 else "testing", aws_secret_access_key="testing")
now = datetime.datetime.now()
ids = [s["Id"] for s in c.get_trace_summaries(StartTime=now - datetime.timedelta(hours=1),
                                              EndTime=now + datetime.timedelta(minutes=5))["TraceSummaries"]]
out = []
for i in range(0, len(ids), 5):
    for t in c.batch_get_traces(TraceIds=ids[i:i + 5])["Traces"]:
        out.append({"id": t["Id"], "documents": [json.loads(s["Document"]) for s in t["Segments"]]})
print(json.dumps(out))
