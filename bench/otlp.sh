#!/usr/bin/env bash
# Benchmark: the agent relaying OTLP, with a sender and a sink beside it on this machine.
#   examples/otlp_load.rs   POST /v1/traces, protobuf, 512 Flask-like spans a request (the OTel
#                           SDK's default batch), 2 keep-alive connections; or the same spans over
#                           OTLP/gRPC, or /v1/metrics (512 data points a request), or /v1/logs
#   examples/trace_sink.rs  a fast OTLP backend (hyper, TCP_NODELAY) that decodes and counts spans,
#                           data points and log records
# Runs: spans at 50,000/s for 10 s, then as fast as the sender can for 10 s; spans over gRPC at
# 50,000/s; data points at 100,000/s; log records at 50,000/s. For each: items accepted by the
# agent, delivered (counted by the sink), lost, items/s through the relay, the agent's CPU time
# per 1,000 items, and (at the end) its peak RSS. The agent gzips upstream, as it does by default.
# Usage: bench/otlp.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
agent=$(static_agent)
tools=$(bench_tools trace_sink otlp_load)
out=bench/out; mkdir -p "$out"
sink_port=$(freeport); otlp_port=$(freeport)

"$tools/trace_sink" "$sink_port" > "$out/otlp-sink.log" &
sink=$!
OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sink_port \
  "$agent" run --no-xray --otlp-address "127.0.0.1:$otlp_port" -- sleep 600 2> "$out/otlp-agent.log" &
agent_pid=$!
trap 'kill $agent_pid $sink 2>/dev/null; wait 2>/dev/null' EXIT
until grep -q ready "$out/otlp-sink.log" && grep -q "relaying OTLP" "$out/otlp-agent.log"; do sleep 0.05; done

delivered() { python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$sink_port/count').read().decode())"; }
cpu_ticks() { awk '{print $14 + $15}' /proc/$agent_pid/stat; }
hz=$(getconf CLK_TCK)

run_load() { # NAME RATE SECONDS [MODE]
  local before_delivered before_cpu sent total t0 t1
  before_delivered=$(delivered); before_cpu=$(cpu_ticks)
  t0=$(date +%s.%N)
  sent=$("$tools/otlp_load" "127.0.0.1:$otlp_port" "$2" "$3" 2 "${4:-traces}")
  total=$(wait_delivered delivered "$before_delivered" "$sent")
  t1=$(date +%s.%N)
  local cpu=$(( $(cpu_ticks) - before_cpu ))
  python3 - "$1" "$sent" "$total" "$cpu" "$hz" "$3" "$t0" "$t1" <<'PY'
import sys
name, sent, got, ticks, hz, secs = sys.argv[1], *map(int, sys.argv[2:7])
t0, t1 = map(float, sys.argv[7:9])
cpu = ticks / hz
# delivered_per_s: spans the sink got per second of load (the drain after it is included in
# the count, not the time); lost: accepted but dropped over --otlp-buffer (overload).
print(f"{name:<22} accepted={sent} delivered={got} lost={sent-got} delivered_per_s={got/secs:.0f} "
      f"until_drained={t1-t0:.1f}s cpu={cpu:.2f}s cpu_per_1k={cpu/max(sent,1)*1e6:.2f}ms")
PY
}

echo "== OTLP relay: sender -> agent (OTLP/HTTP or gRPC) -> sink (OTLP/HTTP, gzip), same machine"
run_load "spans 50k/s x 10s" 50000 10 | tee "$out/otlp.txt"
run_load "spans max x 10s" 0 10 | tee -a "$out/otlp.txt"
run_load "gRPC spans 50k/s x 10s" 50000 10 grpc | tee -a "$out/otlp.txt"
run_load "points 100k/s x 10s" 100000 10 metrics | tee -a "$out/otlp.txt"
run_load "logs 50k/s x 10s" 50000 10 logs | tee -a "$out/otlp.txt"
echo "agent peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$agent_pid/status)" | tee -a "$out/otlp.txt"
