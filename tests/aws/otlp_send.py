"""An app that traces with the real OpenTelemetry SDK and its OTLP/HTTP exporter, configured only
by the environment the agent gives it (OTEL_EXPORTER_OTLP_ENDPOINT and _PROTOCOL).

Usage: otlp_send.py COUNT OUT_DIR [then-exec CMD ARGS...]
Makes COUNT traces of one span each, flushes, and writes OUT_DIR/ids (the trace ids, hex, one a
line) and OUT_DIR/env.json (which OTEL_* variables it saw; header values are not written).
With OTLP_SEND_SIGNALS=traces,metrics,logs it also sends, with the SDK's OTLP/HTTP metric and
log exporters: a counter `otlp_send.work` with one data point per trace (attribute n=0..COUNT-1),
a histogram `otlp_send.duration` (unit ms) recording N for trace N,
and one log record per trace through Python's logging (body "log-N", inside the span, so it
carries the trace id).
OTLP_SEND_PROTOCOL=grpc uses the SDK's OTLP/gRPC exporters instead (the endpoint from the
environment, as the agent gives it), and OTLP_SEND_GRPC_ENDPOINT=HOST:PORT hard-codes their
endpoint in the code, as apps written for a local collector do ("localhost:4317"); "@FILE" there
means: wait for FILE and take the endpoint from it (so a test can give the port the agent bound).
Then execs CMD if given, so the test decides when the app stops. With OTLP_SEND_AFTER=FILE in
the environment it waits for FILE to exist before sending (so a test can measure the agent first).
"""
import json
import os
import sys
import time

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

count, out = int(sys.argv[1]), sys.argv[2]
signals = os.environ.get("OTLP_SEND_SIGNALS", "traces").split(",")
go = os.environ.get("OTLP_SEND_AFTER")
while go and not os.path.exists(go):
    time.sleep(0.02)
resource = Resource.create({"service.name": "otlp-send"})
grpc = os.environ.get("OTLP_SEND_PROTOCOL") == "grpc"
hard_coded = os.environ.get("OTLP_SEND_GRPC_ENDPOINT")
if hard_coded and hard_coded.startswith("@"):
    while not os.path.exists(hard_coded[1:]):
        time.sleep(0.02)
    hard_coded = open(hard_coded[1:]).read().strip()
options = {"endpoint": hard_coded, "insecure": True} if hard_coded else {}
if grpc or hard_coded:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
else:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
provider = TracerProvider(resource=resource)
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(**options)))
tracer = provider.get_tracer("tests")
flushers = [provider]
counter = log = None
if "metrics" in signals:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    meters = MeterProvider(resource=resource, metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter(**options), export_interval_millis=600_000)])
    counter = meters.get_meter("tests").create_counter("otlp_send.work")
    histogram = meters.get_meter("tests").create_histogram("otlp_send.duration", unit="ms")
    flushers.append(meters)
if "logs" in signals:
    import logging
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(**options)))
    log = logging.getLogger("otlp_send")
    log.setLevel(logging.INFO)
    log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logs))
    flushers.append(logs)
ids = []
for i in range(count):
    with tracer.start_as_current_span(f"work-{i}") as span:
        ids.append(format(span.get_span_context().trace_id, "032x"))
        if counter:
            counter.add(1, {"n": i})
            histogram.record(i)
        if log:
            log.info("log-%d", i)
ok = all([f.force_flush(30_000) for f in flushers])
seen = {k: (v if "HEADERS" not in k else "<set>") for k, v in os.environ.items() if k.startswith("OTEL_")}
with open(os.path.join(out, "env.json"), "w") as f:
    json.dump(seen, f)
with open(os.path.join(out, "ids.tmp"), "w") as f:
    f.write("\n".join(ids) + "\n")
os.rename(os.path.join(out, "ids.tmp"), os.path.join(out, "ids"))
if not ok:
    sys.exit("otlp_send: the exporter did not flush")
if len(sys.argv) > 4 and sys.argv[3] == "then-exec":
    os.execvp(sys.argv[4], sys.argv[4:])
