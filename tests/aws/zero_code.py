"""An app with zero-code instrumentation: run as `opentelemetry-instrument python zero_code.py`,
it never configures OpenTelemetry itself. It makes one span with the global tracer, prints its
trace id, and flushes; what the exporter does is up to opentelemetry-instrument and the
environment (the agent's OTEL_EXPORTER_OTLP_ENDPOINT, the distro's default protocol, gRPC).
"""
from opentelemetry import trace

with trace.get_tracer("zero-code").start_as_current_span("zero-code-span") as span:
    print(format(span.get_span_context().trace_id, "032x"), flush=True)
provider = trace.get_tracer_provider()
if not hasattr(provider, "force_flush") or not provider.force_flush(30_000):
    raise SystemExit("zero_code: no SDK tracer provider, or it did not flush (tracing is off)")
