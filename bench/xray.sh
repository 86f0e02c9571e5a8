#!/usr/bin/env bash
# Benchmark: the agent relaying X-Ray segments, with a sender and a sink beside it on this machine.
#   examples/trace_sink.rs  a fast stand-in for PutTraceSegments (hyper, TCP_NODELAY), counting
#   examples/xray_load.rs  UDP segments (~450 bytes, realistic) at a fixed rate or flat out
# Two runs: 20,000 segments/s for 10 s, then as fast as the sender can for 5 s. For each: sent,
# delivered (counted by the sink), lost, the kernel's Udp RcvbufErrors delta (/proc/net/snmp),
# the agent's CPU time (utime+stime) per 10,000 segments and per segment, and its peak RSS.
# Usage: bench/xray.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
agent=$(static_agent)
tools=$(bench_tools trace_sink xray_load)
out=bench/out; mkdir -p "$out"
sink_port=$(freeport); xray_port=$(freeport)

"$tools/trace_sink" "$sink_port" > "$out/xray-sink.log" &
sink=$!
export AWS_ENDPOINT_URL=http://127.0.0.1:$sink_port AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench \
  AWS_SECRET_ACCESS_KEY=bench AWS_EC2_METADATA_DISABLED=true
"$agent" run --xray-address "127.0.0.1:$xray_port" -- sleep 600 2> "$out/xray-agent.log" &
agent_pid=$!
trap 'kill $agent_pid $sink 2>/dev/null; wait 2>/dev/null' EXIT
until grep -q ready "$out/xray-sink.log" && grep -q "receiving X-Ray segments" "$out/xray-agent.log"; do sleep 0.05; done

delivered() { curl -s "http://127.0.0.1:$sink_port/count" 2>/dev/null || python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$sink_port/count').read().decode())"; }
rcvbuf_errors() { awk '/^Udp:/ { if (!h) { for (i=1;i<=NF;i++) col[$i]=i; h=1 } else print $col["RcvbufErrors"] }' /proc/net/snmp; }
cpu_ticks() { awk '{print $14 + $15}' /proc/$agent_pid/stat; }
hz=$(getconf CLK_TCK)

run_load() { # NAME RATE SECONDS
  local before_delivered before_err before_cpu sent total
  before_delivered=$(delivered); before_err=$(rcvbuf_errors); before_cpu=$(cpu_ticks)
  sent=$("$tools/xray_load" "127.0.0.1:$xray_port" "$2" "$3")
  total=$(wait_delivered delivered "$before_delivered" "$sent")
  local cpu=$(( $(cpu_ticks) - before_cpu )) errs=$(( $(rcvbuf_errors) - before_err ))
  python3 - "$1" "$sent" "$total" "$errs" "$cpu" "$hz" <<'PY'
import sys
name, sent, got, errs, ticks, hz = sys.argv[1], *map(int, sys.argv[2:])
cpu = ticks / hz
print(f"{name:<12} sent={sent} delivered={got} lost={sent-got} rcvbuf_errors={errs} "
      f"cpu={cpu:.2f}s cpu_per_10k={cpu/sent*1e4:.3f}s cpu_per_segment={cpu/sent*1e6:.2f}us")
PY
}

echo "== X-Ray relay: sender -> agent (UDP) -> sink (PutTraceSegments), same machine"
run_load "20k/s x 10s" 20000 10 | tee "$out/xray.txt"
run_load "max x 5s" 0 5 | tee -a "$out/xray.txt"
echo "agent peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$agent_pid/status)" | tee -a "$out/xray.txt"
grep "final counts" "$out/xray-agent.log" || true
