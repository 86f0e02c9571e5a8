#!/usr/bin/env bash
# Benchmark: the instructions the agent executes to relay OTLP, per 1,000 items, counted by
# callgrind. Unlike CPU time (bench/otlp.sh, which moved 30% between runs of one binary on this
# shared machine), the count is the same for the same binary and input whatever else the machine
# does, so two builds compare exactly: give the one to compare with as BASE.
#   sender (examples/otlp_load.rs) -> agent under valgrind --tool=callgrind -> sink
#   (examples/trace_sink.rs); 10,000 items of each kind (spans over OTLP/HTTP protobuf and over
#   gRPC, data points, log records) at a rate the agent keeps up with under valgrind. Counting
#   starts when the agent is ready (start-up is not counted) and ends when the sink has them all
#   (gzip and the upstream POSTs are counted).
# Prints instructions per 1,000 items for each build and their ratio; the top functions of each
# run are in bench/out/otlp-instr-LABEL-MODE.txt.
# Usage: bench/otlp-instructions.sh [BASE]   (AGENT_BIN: the agent measured, as in bench/lib.sh;
#        for names in the profiles, build both with KEEP_SYMBOLS=1 scripts/build-static)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
need_debs valgrind:valgrind
agent=$(static_agent)
base=${1:-}
tools=$(bench_tools trace_sink otlp_load)
out=bench/out; mkdir -p "$out"
items=10000

sink_port=
delivered() { python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$sink_port/count').read().decode())"; }

measure() { # AGENT LABEL MODE -> instructions per 1,000 items
  local bin=$1 label=$2 mode=$3 otlp_port sink pid sent file
  sink_port=$(freeport); otlp_port=$(freeport)
  "$tools/trace_sink" "$sink_port" > "$out/otlp-instr-sink.log" &
  sink=$!
  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sink_port \
    valgrind --tool=callgrind --callgrind-out-file="$out/otlp-instr.cg.%p" \
    "$bin" run --no-xray --otlp-address "127.0.0.1:$otlp_port" -- sleep 600 2> "$out/otlp-instr-agent.log" &
  pid=$!
  until grep -q ready "$out/otlp-instr-sink.log" && grep -q "relaying OTLP" "$out/otlp-instr-agent.log"; do sleep 0.1; done
  rm -f "$out"/otlp-instr.cg.*
  callgrind_control --zero "$pid" >/dev/null
  # 2,000 items/s for 5 s: 20 requests of 512 (the SDKs' batch), well within what the agent
  # relays under valgrind, so none is refused and the count is per item relayed.
  sent=$("$tools/otlp_load" "127.0.0.1:$otlp_port" $((items / 5)) 5 1 "$mode")
  wait_delivered delivered 0 "$sent" >/dev/null
  callgrind_control --dump "$pid" >/dev/null
  kill "$pid" "$sink" 2>/dev/null; wait "$pid" "$sink" 2>/dev/null || true
  file=$(ls "$out"/otlp-instr.cg.*.1 2>/dev/null | head -1)
  callgrind_annotate --inclusive=no "$file" 2>/dev/null | head -40 > "$out/otlp-instr-$label-$mode.txt"
  local total
  total=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
  rm -f "$out"/otlp-instr.cg.*
  awk -v t="$total" -v n="$sent" 'BEGIN { printf "%.0f", t / n * 1000 }'
}

echo "== OTLP relay, instructions per 1,000 items (callgrind; $items items a kind; lower is better)"
printf '%-22s %14s %14s %8s\n' kind agent "${base:+base}" "${base:+ratio}"
for mode in traces grpc metrics logs; do
  a=$(measure "$agent" agent "$mode")
  if [ -n "$base" ]; then
    b=$(measure "$base" base "$mode")
    printf '%-22s %14s %14s %8s\n' "$mode" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", a / b }')"
  else
    printf '%-22s %14s\n' "$mode" "$a"
  fi
done | tee "$out/otlp-instructions.txt"
