"""A small Flask backend in the shape of Cruddur's backend-flask, for the agent's demo and tests.

Routes: /api/health-check (what the ECS health check probes), two API routes, and /api/slow,
which holds a request open so a graceful stop can be seen draining it.
"""
import os
import time

from flask import Flask, jsonify, request

app = Flask(__name__)

# X-Ray, as the seed instruments it: the SDK sends segments over UDP to AWS_XRAY_DAEMON_ADDRESS
# (127.0.0.1:2000 by default), where the agent receives them in place of the daemon sidecar.
if os.environ.get("XRAY_ENABLED") == "1":
    from aws_xray_sdk.core import xray_recorder
    from aws_xray_sdk.ext.flask.middleware import XRayMiddleware

    # XRAY_SAMPLING=false traces every request (the tests count them); the default samples.
    xray_recorder.configure(service="backend-flask", sampling=os.environ.get("XRAY_SAMPLING") != "false")
    XRayMiddleware(app, xray_recorder)

# OpenTelemetry, as the seed instruments it for Honeycomb, with one difference: under the agent
# the exporter talks OTLP/HTTP to the agent (OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318,
# set by the agent), and the agent holds the Honeycomb key and forwards the spans. Off when no
# endpoint is configured. The service name comes from OTEL_SERVICE_NAME.
if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    FlaskInstrumentor().instrument_app(app)
    tracer = trace.get_tracer("backend-flask")
else:
    tracer = None


def span(name):
    """A child span of the request's, as Cruddur's services make them (a no-op without OpenTelemetry)."""
    import contextlib
    return tracer.start_as_current_span(name) if tracer else contextlib.nullcontext()


@app.get("/api/health-check")
def health_check():
    return jsonify(success=True), 200


@app.get("/api/activities/home")
def activities_home():
    with span("home-activities-mock-data"):
        return jsonify(
            [
                {"uuid": "68f126b0-1ceb-4a33-88be-d90fa7109eee", "handle": "andrewbrown", "message": "Cloud is fun!"},
                {"uuid": "66e12864-8c26-4c3a-9658-95a10f8fea67", "handle": "worf", "message": "I am out of prune juice"},
            ]
        )


@app.get("/api/activities/fail")
def activities_fail():
    """A route that fails (500, an exception on the request's span): what a fault looks like in X-Ray."""
    raise RuntimeError("the activities store is down")


@app.get("/api/message_groups")
def message_groups():
    return jsonify([{"uuid": "24b95582-9e7b-4e0a-9ad1-639773ab7552", "display_name": "Andrew Brown", "handle": "andrewbrown"}])


# The variables the agent is expected to load from Parameter Store and Secrets Manager.
EXPECTED_SECRETS = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CONNECTION_URL", "OTEL_EXPORTER_OTLP_HEADERS",
                    "DB_USERNAME", "DB_PASSWORD"]

# What the agent sets for the app while it relays OTLP (an address, not a secret). The protocol
# is the app's own choice: the agent's endpoint takes OTLP/HTTP and OTLP/gRPC alike.
RELAY_SETTINGS = ["OTEL_EXPORTER_OTLP_ENDPOINT"]


@app.get("/api/config-check")
def config_check():
    """Which expected variables are set: names only, never values."""
    return jsonify({name: bool(os.environ.get(name)) for name in EXPECTED_SECRETS + RELAY_SETTINGS})



@app.get("/api/slow")
def slow():
    seconds = min(float(request.args.get("seconds", "1")), 30.0)
    # Printed so a test (or a person) can see the request is in flight before stopping the app.
    print(f"slow request started seconds={seconds} pid={os.getpid()}", flush=True)
    time.sleep(seconds)
    return jsonify(slept=seconds)
