# Shared plumbing for the bench/ scripts (sourced, not run).

# Installs the Debian packages for the given commands when they are missing.
# Usage: need_debs COMMAND:PACKAGE...
need_debs() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || [ -x "${pair%%:*}" ] || missing+=("${pair##*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Builds the static agent and prints its path.
# The agent to measure: AGENT_BIN if set (to compare two builds, say a commit before a change),
# else the static release binary, built now.
static_agent() {
  if [ -n "${AGENT_BIN:-}" ]; then echo "$AGENT_BIN"; return; fi
  scripts/build-static >/dev/null 2>&1
  echo "$(realpath "${CARGO_TARGET_DIR:-target}")/x86_64-unknown-linux-gnu/release/agent"
}

# Times each NAME=COMMAND with hyperfine and samples its peak RSS with GNU time.
# Writes OUT.json (hyperfine) and OUT-rss.txt ("NAME KB" lines).
# Usage: compare OUT RUNS WARMUP RSS_SAMPLES NAME=COMMAND...
compare() {
  local out=$1 runs=$2 warmup=$3 samples=$4; shift 4
  local args=() pair i
  for pair in "$@"; do args+=(-n "${pair%%=*}" "${pair#*=}"); done
  hyperfine -N --warmup "$warmup" --runs "$runs" --style none --export-json "$out.json" "${args[@]}" >/dev/null 2>&1
  : > "$out-rss.txt"
  for pair in "$@"; do
    for i in $(seq "$samples"); do
      /usr/bin/time -f "${pair%%=*} %M" ${pair#*=} >/dev/null 2>>"$out-rss.txt"
    done
  done
}

# A free TCP port on 127.0.0.1.
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Builds the bench tools (examples/) with the tools profile and prints their directory.
bench_tools() {
  cargo build -q --profile tools "${@/#/--example=}"
  echo "$(realpath "${CARGO_TARGET_DIR:-target}")/tools/examples"
}

# Polls COUNT_CMD (prints what the sink has counted) until it reaches BEFORE + SENT, or nothing
# more arrives for 3 s; prints how many arrived since BEFORE.
# Usage: wait_delivered COUNT_CMD BEFORE SENT
wait_delivered() {
  local total last=-1 stable=0
  while :; do
    total=$(( $($1) - $2 ))
    [ "$total" -ge "$3" ] && break
    if [ "$total" = "$last" ]; then stable=$((stable + 1)); [ $stable -ge 30 ] && break; else stable=0; fi
    last=$total; sleep 0.1
  done
  echo "$total"
}
