#!/usr/bin/env bash
# Benchmark: one health check, four ways, against the same local app in one run.
#   agent-socket  `agent health` asking the running supervisor (the ECS healthCheck setup)
#   agent-direct  `agent health --url ...` probing the app itself (no supervisor)
#   python-seed   bench/seed-health-check.py, the seed's script, verbatim (urllib)
#   curl          `curl -fsS URL`
# The app is examples/backend-flask under gunicorn on 127.0.0.1:4567 (the seed script's port),
# supervised by the agent with --health-url. Wall time: hyperfine -N, median. Peak RSS: GNU
# time's %M, median of 30 runs. Installs hyperfine, curl and time from Debian if missing.
# Usage: bench/health.sh [RUNS]     (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-300}
. bench/lib.sh
need_debs hyperfine:hyperfine curl:curl /usr/bin/time:time
scripts/setup-venv >/dev/null
agent=$(static_agent)
out=bench/out; mkdir -p "$out"
url=http://localhost:4567/api/health-check
# The interpreter itself, not a pyenv shim script in front of it.
python=$(python3 -c 'import sys; print(sys.executable)')
sock=agent-bench-health

(cd examples/backend-flask && HOST=127.0.0.1 PORT=4567 exec "$agent" run --health-socket "$sock" \
   --health-url http://127.0.0.1:4567/api/health-check --wait-ready -- \
   ../../.venv/bin/gunicorn -c gunicorn.conf.py app:app) >/dev/null 2>"$out/health-agent.log" &
sup=$!
trap 'kill -TERM $sup 2>/dev/null; wait $sup 2>/dev/null' EXIT
deadline=$((SECONDS + 30))
until "$agent" health --socket "$sock" >/dev/null 2>&1; do
  [ $SECONDS -lt $deadline ] || { echo "the app did not become healthy" >&2; cat "$out/health-agent.log" >&2; exit 1; }
  sleep 0.1
done

declare -A cmds=(
  [agent-socket]="$agent health --socket $sock"
  [agent-direct]="$agent health --socket absent-$sock --url $url"
  [python-seed]="$python bench/seed-health-check.py"
  [curl]="curl -fsS $url"
)
order=(agent-socket agent-direct python-seed curl)
for name in "${order[@]}"; do ${cmds[$name]} >/dev/null || { echo "$name is not healthy" >&2; exit 1; }; done

echo "== one health check, $runs runs each (hyperfine -N, warmup 10)"
pairs=()
for name in "${order[@]}"; do pairs+=("$name=${cmds[$name]}"); done
compare "$out/health" "$runs" 10 30 "${pairs[@]}"

python3 - "$out/health.json" "$out/health-rss.txt" <<'PY'
import json, statistics, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
rss = {}
for line in open(sys.argv[2]):
    parts = line.split()
    if len(parts) == 2 and parts[1].isdigit():
        rss.setdefault(parts[0], []).append(int(parts[1]))
order = ["agent-socket", "agent-direct", "python-seed", "curl"]
print(f"{'check':<13} {'median ms':>10} {'peak RSS kB':>12}")
for n in order:
    print(f"{n:<13} {res[n]['median']*1000:>10.3f} {statistics.median(rss[n]):>12.0f}")
m = {n: res[n]["median"] for n in order}
for a in ["agent-socket", "agent-direct"]:
    print(f"{a}: {m['python-seed']/m[a]:.1f}x faster than python-seed, {m['curl']/m[a]:.1f}x faster than curl")
sock_rss = statistics.median(rss["agent-socket"])
direct_rss = statistics.median(rss["agent-direct"])
fast = m["python-seed"] / m["agent-socket"] >= 30 and m["curl"] / m["agent-socket"] >= 4
print(f"targets (socket mode): >=30x python, >=4x curl: {'PASS' if fast else 'FAIL'}; "
      f"peak RSS <= 2 MB: socket {sock_rss/1024:.2f} MB, direct {direct_rss/1024:.2f} MB "
      f"{'PASS' if max(sock_rss, direct_rss) <= 2048 else 'FAIL'}")
PY
