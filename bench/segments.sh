#!/usr/bin/env bash
# Benchmark: the two conversions between OpenTelemetry and X-Ray, side by side, same binary.
#   OTLP -> segments  examples/otlp_load.rs sends Flask-like SERVER spans over OTLP/HTTP (512 a
#                     request, 2 connections) to `agent run --otlp-xray-segments`, which turns each
#                     into a segment document for PutTraceSegments (examples/trace_sink.rs counts them)
#   X-Ray -> OTLP     examples/xray_load.rs sends the X-Ray SDK's Flask segments over UDP to
#                     `agent run --xray-to-otlp`, which turns each into a span for the OTLP upstream
#                     (the same sink, counting spans)
# Runs: spans at 30,000/s and 50,000/s for 10 s and flat out for 10 s; segments at 30,000/s for
# 10 s. For each: accepted, delivered, lost, the agent's CPU per item (utime+stime), and each
# agent's peak RSS; then the ratio of CPU per item, OTLP->segments over X-Ray->OTLP.
# Usage: bench/segments.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
agent=$(static_agent)
tools=$(bench_tools trace_sink otlp_load xray_load)
out=bench/out; mkdir -p "$out"
sink_port=$(freeport); otlp_port=$(freeport); xray_port=$(freeport)

"$tools/trace_sink" "$sink_port" > "$out/segments-sink.log" &
sink=$!
export AWS_ENDPOINT_URL=http://127.0.0.1:$sink_port AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench \
  AWS_SECRET_ACCESS_KEY=bench AWS_EC2_METADATA_DISABLED=true
env -u OTEL_EXPORTER_OTLP_ENDPOINT "$agent" run --no-xray --otlp-xray-segments --otlp-address "127.0.0.1:$otlp_port" \
  -- sleep 600 2> "$out/segments-agent.log" &
agent_pid=$!
trap 'kill $agent_pid $sink 2>/dev/null; wait 2>/dev/null' EXIT
until grep -q ready "$out/segments-sink.log" && grep -q "relaying OTLP" "$out/segments-agent.log"; do sleep 0.05; done

delivered() { python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$sink_port/count').read().decode())"; }
cpu_ticks() { awk '{print $14 + $15}' /proc/$agent_pid/stat; }
hz=$(getconf CLK_TCK)

run_load() { # NAME TOOL TARGET RATE SECONDS
  local before_delivered before_cpu sent total
  before_delivered=$(delivered); before_cpu=$(cpu_ticks)
  if [ "$2" = otlp_load ]; then sent=$("$tools/otlp_load" "$3" "$4" "$5" 2 traces); else sent=$("$tools/xray_load" "$3" "$4" "$5"); fi
  total=$(wait_delivered delivered "$before_delivered" "$sent")
  local cpu=$(( $(cpu_ticks) - before_cpu ))
  python3 - "$1" "$sent" "$total" "$cpu" "$hz" "$5" <<'PY'
import sys
name, sent, got, ticks, hz, secs = sys.argv[1], *map(int, sys.argv[2:7])
cpu = ticks / hz
print(f"{name:<28} accepted={sent} delivered={got} lost={sent-got} delivered_per_s={got/secs:.0f} "
      f"cpu={cpu:.2f}s cpu_per_item={cpu/max(sent,1)*1e6:.2f}us")
PY
}

echo "== OTLP -> X-Ray segments (--otlp-xray-segments) and X-Ray -> OTLP spans (--xray-to-otlp), same machine"
run_load "otlp->segments 30k/s x 10s" otlp_load "127.0.0.1:$otlp_port" 30000 10 | tee "$out/segments.txt"
run_load "otlp->segments 50k/s x 10s" otlp_load "127.0.0.1:$otlp_port" 50000 10 | tee -a "$out/segments.txt"
run_load "otlp->segments max x 10s" otlp_load "127.0.0.1:$otlp_port" 0 10 | tee -a "$out/segments.txt"
echo "agent peak RSS (otlp->segments): $(awk '/VmHWM/ {print $2, $3}' /proc/$agent_pid/status)" | tee -a "$out/segments.txt"
grep "final counts" "$out/segments-agent.log" || true
kill $agent_pid; wait $agent_pid 2>/dev/null || true

OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sink_port "$agent" run --xray-to-otlp --xray-address "127.0.0.1:$xray_port" \
  --otlp-address "127.0.0.1:$otlp_port" -- sleep 600 2> "$out/segments-agent2.log" &
agent_pid=$!
until grep -q "receiving X-Ray segments" "$out/segments-agent2.log"; do sleep 0.05; done
run_load "xray->otlp 30k/s x 10s" xray_load "127.0.0.1:$xray_port" 30000 10 | tee -a "$out/segments.txt"
echo "agent peak RSS (xray->otlp): $(awk '/VmHWM/ {print $2, $3}' /proc/$agent_pid/status)" | tee -a "$out/segments.txt"
python3 - "$out/segments.txt" <<'PY'
import re, sys
rows = {l.split()[0] + " " + l.split()[1]: float(re.search(r"cpu_per_item=([\d.]+)", l).group(1))
        for l in open(sys.argv[1]) if "cpu_per_item" in l}
print(f"ratio CPU per item, otlp->segments 30k/s over xray->otlp 30k/s: "
      f"{rows['otlp->segments 30k/s'] / rows['xray->otlp 30k/s']:.2f}")
PY
