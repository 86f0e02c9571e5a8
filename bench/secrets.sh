#!/usr/bin/env bash
# Benchmark: fetch 100 SecureString parameters under a path from a local moto_server and start a
# child that exits at once, three ways in one run:
#   agent    agent run --ssm-path /bench/app -- /bin/true
#   awscli   aws ssm get-parameters-by-path --path /bench/app --recursive --with-decryption
#   boto3    bench/boto3_fetch.py (paginate, set the environment, run /bin/true)
# Wall time: hyperfine -N, median. Peak RSS: GNU time %M, median of 5. awscli and boto3 live in
# their own venv (.venv-bench) so awscli's botocore pin cannot disturb the test venv.
# Usage: bench/secrets.sh [RUNS]    (default 20; awscli takes about a second a run)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
. bench/lib.sh
need_debs hyperfine:hyperfine /usr/bin/time:time
scripts/setup-venv >/dev/null
[ -x .venv-bench/bin/aws ] || { python3 -m venv .venv-bench && .venv-bench/bin/pip install -q --disable-pip-version-check awscli boto3; }
agent=$(static_agent)
out=bench/out; mkdir -p "$out"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
.venv/bin/moto_server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null; wait $moto 2>/dev/null' EXIT
export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true
deadline=$((SECONDS + 30))
until python3 -c "import urllib.request; urllib.request.urlopen('$AWS_ENDPOINT_URL/moto-api/')" 2>/dev/null; do
  [ $SECONDS -lt $deadline ] || { echo "moto_server did not start" >&2; exit 1; }
  sleep 0.2
done
.venv/bin/python - <<'PY'
import boto3
ssm = boto3.client("ssm")
for i in range(100):
    ssm.put_parameter(Name=f"/bench/app/PARAM_{i:03d}", Value=f"bench-value-{i:03d}", Type="SecureString")
PY

boto3_py=$(realpath .venv-bench/bin/python)
declare -A cmds=(
  [agent]="$agent run --log-level warn --ssm-path /bench/app -- /bin/true"
  [awscli]="$(realpath .venv-bench/bin/aws) ssm get-parameters-by-path --path /bench/app --recursive --with-decryption"
  [boto3]="$boto3_py bench/boto3_fetch.py /bench/app /bin/true"
)
order=(agent awscli boto3)
# Each must really fetch all 100.
[ "$($agent env --ssm-path /bench/app 2>/dev/null | tail -n +2 | wc -l)" = 100 ] || { echo "agent did not load 100" >&2; exit 1; }
[ "$(${cmds[awscli]} --output json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["Parameters"]))')" = 100 ] \
  || { echo "awscli did not load 100" >&2; exit 1; }

echo "== fetch 100 parameters by path and start /bin/true, $runs runs each (hyperfine -N, warmup 2)"
pairs=()
for n in "${order[@]}"; do pairs+=("$n=${cmds[$n]}"); done
compare "$out/secrets" "$runs" 2 5 "${pairs[@]}"
python3 - "$out/secrets.json" "$out/secrets-rss.txt" <<'PY'
import json, statistics, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
rss = {}
for line in open(sys.argv[2]):
    p = line.split()
    if len(p) == 2 and p[1].isdigit():
        rss.setdefault(p[0], []).append(int(p[1]))
print(f"{'tool':<7} {'median ms':>10} {'vs agent':>9} {'peak RSS kB':>12}")
for n in ["agent", "awscli", "boto3"]:
    print(f"{n:<7} {res[n]['median']*1000:>10.1f} {res[n]['median']/res['agent']['median']:>8.1f}x {statistics.median(rss[n]):>12.0f}")
r = res["awscli"]["median"] / res["agent"]["median"]
print(f"target: at least 10x faster than awscli: {r:.1f}x {'PASS' if r >= 10 else 'FAIL'}")
PY
