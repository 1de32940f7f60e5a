#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: repeatable whatever else the
# machine does, so a change of a few percent shows where timed runs are noise.
#
#   benches/instructions.sh [--bin-dir DIR] [--requests N] [--out DIR] TARGET...
#
# TARGET is `floor` (the bare Pingora proxy), `passthrough` (the master key), `governed`
# (an issued key with limits, a priced model, the in-process quota store), `leased`
# (governed with the quotas in Redis at $TOLLGATE_BENCH_REDIS, default
# redis://127.0.0.1:6379: admitted from leases, as the harness's governed target) or `cached`
# (governed, the model's response cache on in process: every measured request is a hit). Each target runs
# alone under callgrind against the mock: 300 requests to warm up, counters zeroed, N
# requests (default 3000, 4 connections), counters dumped. Prints the total per request and
# the gateway's main parts (inclusive, per request); the callgrind files stay in --out for
# `callgrind_annotate`. Needs release binaries (`cargo build --release`), valgrind and oha.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/target/release"
N=3000
OUT=""
TARGETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) BIN="$2"; shift 2 ;;
    --requests) N="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    floor|passthrough|governed|leased|cached) TARGETS+=("$1"); shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(floor passthrough governed)
OUT="${OUT:-$(mktemp -d /tmp/tollgate-instructions.XXXXXX)}"
for tool in valgrind callgrind_annotate oha; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done

# shellcheck source=benches/processes.sh
source "$ROOT/benches/processes.sh"

export TOLLGATE_MASTER_KEY=tg-instructions-master-key-0123456789
export TOLLGATE_SECRET_KEY=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
unset RUST_LOG TOLLGATE_REDIS_URL TOLLGATE_DATABASE_URL TOLLGATE_CONFIG TOLLGATE_LOG_FORMAT

for target in "${TARGETS[@]}"; do
  W="$OUT/$target"
  rm -rf "$W"; mkdir -p "$W/data"
  "$BIN/tollgate-mock" --no-record --listen 127.0.0.1:0 > "$W/mock.out" 2> "$W/mock.err" &
  MOCK_PID=$!
  PIDS+=("$MOCK_PID")
  MOCK=$(listening "$W/mock.out" listening)
  extra_model=""; extra_deployment=""
  if [ "$target" != floor ] && [ "$target" != passthrough ]; then
    extra_model=", pricing: {input_per_million: 0.15, output_per_million: 0.60}"
    extra_deployment=", rpm: 1000000000, tpm: 1000000000"
  fi
  if [ "$target" = cached ]; then
    extra_model="$extra_model, cache: {enabled: true, cache_nondeterministic: true}"
  fi
  gateway_config "$W/tollgate.yaml" "$W/data" "$MOCK" "$extra_model" "$extra_deployment"
  KEY=$TOLLGATE_MASTER_KEY
  unset TOLLGATE_REDIS_URL TOLLGATE_REDIS_PREFIX
  if [ "$target" = leased ]; then
    export TOLLGATE_REDIS_URL="${TOLLGATE_BENCH_REDIS:-redis://127.0.0.1:6379}"
    export TOLLGATE_REDIS_PREFIX="tg-instructions-$$-"
  fi
  if [ "$target" != floor ] && [ "$target" != passthrough ]; then
    KEY=$("$BIN/tollgate" keys create --config "$W/tollgate.yaml" --name instructions \
      --rpm 1000000000 --tpm 1000000000 2> "$W/keys.err" | grep -oE 'tg_[A-Za-z0-9_]+' | head -1)
  fi
  if [ "$target" = floor ]; then
    valgrind --tool=callgrind --callgrind-out-file="$W/callgrind.out" \
      "$BIN/tollgate-pingora-floor" --listen 127.0.0.1:0 --key "$KEY" --upstream "$MOCK" \
      --threads 1 > "$W/proxy.out" 2> "$W/proxy.err" &
    PROXY_PID=$!
    PROXY=$(listening "$W/proxy.out" listening)
  else
    TOLLGATE_LOG_FORMAT=json valgrind --tool=callgrind --callgrind-out-file="$W/callgrind.out" \
      "$BIN/tollgate" serve --config "$W/tollgate.yaml" > "$W/proxy.out" 2> "$W/proxy.err" &
    PROXY_PID=$!
    PROXY=$(listening "$W/proxy.out" proxy)
  fi
  PIDS+=("$PROXY_PID")
  load() {
    oha -n "$1" -c 4 --no-tui -m POST -H "authorization: Bearer $KEY" \
      -H 'content-type: application/json' \
      -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}' \
      "http://$PROXY/v1/chat/completions"
  }
  load 300 > /dev/null
  sleep 2
  callgrind_control -z "$PROXY_PID" > /dev/null 2>&1
  load "$N" > "$W/oha.txt"
  callgrind_control -d "$PROXY_PID" > /dev/null 2>&1
  sleep 1
  kill "$PROXY_PID" "$MOCK_PID" 2>/dev/null || true
  grep -q "Success rate:.*100.00%" "$W/oha.txt" || { echo "$target: not every request succeeded" >&2; cat "$W/oha.txt" >&2; exit 1; }
  DUMP=$(ls "$W"/callgrind.out.* | head -1)
  # From / : file names then print the same whatever the working directory.
  (cd / && callgrind_annotate --inclusive=yes --threshold=100 "$DUMP" 2>/dev/null) > "$W/inclusive.txt"
  total=$(grep -m1 "PROGRAM TOTALS" "$W/inclusive.txt" | awk '{gsub(",","",$1); print $1}')
  echo "$target: $((total / N)) instructions per request ($N requests)"
  part() {
    local v
    v=$(grep -m1 -F "$2" "$W/inclusive.txt" | awk -v n="$N" '{gsub(",","",$1); print int($1/n)}' || true)
    [ -n "$v" ] && printf "  %-28s %8s\n" "$1" "$v"
    return 0
  }
  part "connection task" "ServerApp>::process_new::{{closure}}"
  part "request_filter" "ProxyHttp>::request_filter::{{closure}}"
  part "  authentication" "Auth::authenticate::{{closure}}"
  part "  cache look-up" "ResponseCache::consult::{{closure}}"
  part "  quota admission" "Limiter::admit::{{closure}}"
  part "cache hit answer" "cache::hit::respond::{{closure}}"
  part "upstream_request_filter" "ProxyHttp>::upstream_request_filter::{{closure}}"
  part "response_filter" "ProxyHttp>::response_filter::{{closure}}"
  part "  rate-limit headers" "replace_rate_limit_headers"
  part "response scan (usage)" "ResponseWatch::pass"
  part "logging (metrics, log line)" "ProxyHttp>::logging::{{closure}}"
  part "usage journal" "Journal::append"
  part "metering task" "metering::task::run::{{closure}}"
  part "usage writer (SQLite)" "metering::writer::write_batches::{{closure}}"
done
echo "callgrind files: $OUT"
