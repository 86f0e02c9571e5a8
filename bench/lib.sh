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
static_agent() {
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
