"""Calls the agent's OTLP/gRPC TraceService/Export with grpcio and the real generated stub, until
an answer is not OK (or MAX calls), and prints one JSON object: the status codes in order, and
for a final UNAVAILABLE the RetryInfo delay the server put in grpc-status-details-bin.

Usage: grpc_export.py HOST:PORT MAX SPANS_PER_CALL
"""
import json
import os
import sys

import grpc
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

target, most, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
stub = trace_service_pb2_grpc.TraceServiceStub(grpc.insecure_channel(target))
codes, retry = [], None
for _ in range(most):
    spans = [trace_pb2.Span(trace_id=os.urandom(16), span_id=os.urandom(8), name="grpc-call",
                            attributes=[common_pb2.KeyValue(key="pad", value=common_pb2.AnyValue(string_value="x" * 400))])
             for _ in range(per)]
    req = trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=spans)])])
    try:
        stub.Export(req, timeout=10)
        codes.append("OK")
    except grpc.RpcError as e:
        codes.append(e.code().name)
        for key, value in e.trailing_metadata() or ():
            if key == "grpc-status-details-bin":
                status = status_pb2.Status.FromString(value)
                for d in status.details:
                    info = error_details_pb2.RetryInfo()
                    if d.Unpack(info):
                        retry = info.retry_delay.seconds
        break
print(json.dumps({"codes": codes, "retry_seconds": retry}))
