#!/usr/bin/env bash
# Benchmark: the agent relaying OTLP/HTTP spans, with a sender and a sink beside it on this machine.
#   examples/otlp_load.rs   POST /v1/traces, protobuf, 512 Flask-like spans a request (the OTel
#                           SDK's default batch), 2 keep-alive connections
#   examples/trace_sink.rs  a fast OTLP backend (hyper, TCP_NODELAY) that decodes and counts spans
# Two runs: 50,000 spans/s for 10 s, then as fast as the sender can for 10 s. For each: spans
# accepted by the agent, delivered (counted by the sink), lost, spans/s through the relay, the
# agent's CPU time per 1,000 spans, and (at the end) its peak RSS. The agent gzips upstream, as
# it does by default.
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

run_load() { # NAME RATE SECONDS
  local before_delivered before_cpu sent total t0 t1
  before_delivered=$(delivered); before_cpu=$(cpu_ticks)
  t0=$(date +%s.%N)
  sent=$("$tools/otlp_load" "127.0.0.1:$otlp_port" "$2" "$3" 2)
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
print(f"{name:<12} accepted={sent} delivered={got} lost={sent-got} delivered_per_s={got/secs:.0f} "
      f"until_drained={t1-t0:.1f}s cpu={cpu:.2f}s cpu_per_1k_spans={cpu/max(sent,1)*1e6:.2f}ms")
PY
}

echo "== OTLP relay: sender -> agent (OTLP/HTTP) -> sink (OTLP/HTTP, gzip), same machine"
run_load "50k/s x 10s" 50000 10 | tee "$out/otlp.txt"
run_load "max x 10s" 0 10 | tee -a "$out/otlp.txt"
echo "agent peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$agent_pid/status)" | tee -a "$out/otlp.txt"
