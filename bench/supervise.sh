#!/usr/bin/env bash
# Benchmark: the agent as an init against tini and dumb-init, in the same run.
#   1. wall time of `X -- /bin/true` (start, supervise, reap, exit), hyperfine, median ratio
#   2. RSS of the init while it supervises an idle `sleep`, read 3 s after the child started
#      (VmRSS, and VmHWM = peak), median of 5; the agent also with every listener on
#      ("agent-all": X-Ray UDP+TCP 2000, OTLP/HTTP 4318 and OTLP/gRPC 4317, an upstream set but idle)
#   3. size of the static binary
# Installs tini, dumb-init and hyperfine from Debian if missing; builds the static binary.
# Usage: bench/supervise.sh [RUNS]      (default 500 runs per command)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-500}
. bench/lib.sh
need_debs tini:tini dumb-init:dumb-init hyperfine:hyperfine
agent=$(static_agent)
out=bench/out; mkdir -p "$out"

echo "== startup: X -- /bin/true, $runs runs each (hyperfine -N, warmup 20)"
hyperfine -N --warmup 20 --runs "$runs" --style none --export-json "$out/startup.json" \
  -n agent "$agent run -- /bin/true" \
  -n tini "tini -s -- /bin/true" \
  -n dumb-init "dumb-init /bin/true" >/dev/null 2>&1

# Idle RSS: start the init supervising `sleep 60`, wait until the sleep exists, read /proc.
rss() { # prints "VmRSS VmHWM" in kB for: rss CMD...
  "$@" >/dev/null 2>&1 &
  local pid=$! deadline=$((SECONDS + 10))
  until [ -n "$(cat /proc/$pid/task/$pid/children 2>/dev/null)" ]; do
    [ $SECONDS -lt $deadline ] || { echo "no child under $*" >&2; exit 1; }
    sleep 0.01
  done
  sleep 3  # idle: after start-up, as in a running task (the agent releases start-up pages at 2 s)
  awk '/^VmRSS|^VmHWM/ {v[$1]=$2} END {print v["VmRSS:"], v["VmHWM:"]}' /proc/$pid/status
  kill -TERM $pid; wait $pid 2>/dev/null || true
}
: > "$out/rss.txt"
for i in 1 2 3 4 5; do
  echo "agent $(rss "$agent" run -- sleep 60)" >> "$out/rss.txt"
  echo "agent-all $(rss env OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9 "$agent" run -- sleep 60)" >> "$out/rss.txt"
  echo "tini $(rss tini -s -- sleep 60)" >> "$out/rss.txt"
  echo "dumb-init $(rss dumb-init sleep 60)" >> "$out/rss.txt"
done

python3 - "$out/startup.json" "$out/rss.txt" "$agent" <<'PY'
import json, os, statistics, sys
startup = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
rss = {}
for line in open(sys.argv[2]):
    name, cur, hwm = line.split()
    rss.setdefault(name, []).append((int(cur), int(hwm)))
med = lambda xs: statistics.median(xs)
print(f"{'init':<10} {'median ms':>10} {'vs tini':>8} {'idle RSS kB':>12} {'peak RSS kB':>12}")
for name in ["agent", "tini", "dumb-init"]:
    m = startup[name]["median"] * 1000
    ratio = startup[name]["median"] / startup["tini"]["median"]
    cur = med([c for c, _ in rss[name]]); hwm = med([h for _, h in rss[name]])
    print(f"{name:<10} {m:>10.3f} {ratio:>7.2f}x {cur:>12.0f} {hwm:>12.0f}")
cur = med([c for c, _ in rss["agent-all"]]); hwm = med([h for _, h in rss["agent-all"]])
print(f"{'agent, every listener on':<26} {'':>1} {cur:>12.0f} {hwm:>12.0f}")
size = os.path.getsize(sys.argv[3])
print(f"static binary: {size} bytes ({size/1e6:.2f} MB)")
a = startup["agent"]["median"] / startup["tini"]["median"]
a_rss = med([c for c, _ in rss["agent"]])
all_rss = med([c for c, _ in rss["agent-all"]])
print(f"targets: wall time <= 1.5x tini: {a:.2f}x {'PASS' if a <= 1.5 else 'FAIL'}; "
      f"idle RSS <= 3 MB: {a_rss/1024:.2f} MB {'PASS' if a_rss <= 3072 else 'FAIL'}; "
      f"with every listener on: {all_rss/1024:.2f} MB {'PASS' if all_rss <= 3072 else 'FAIL'}")
PY
