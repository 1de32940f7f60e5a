#!/usr/bin/env bash
# Writes proxy/code-order.txt: the functions of the gateway's binary that serving runs,
# hottest first, which the release link (proxy/build.rs) places together at the start of
# the code. Serving then maps a few MiB of the binary instead of pages scattered over
# all of it (the kernel maps code in whole folios of up to 128 KiB).
#
#   benches/code-order.sh [--bin-dir DIR] [--requests N]
#
# Runs `tollgate serve` under valgrind's callgrind against the mock and sends N requests
# of each kind (default 200): non-stream and streamed chat with the master key, the same
# with an issued key with limits (Redis quotas when Redis answers at
# TOLLGATE_REDIS_URL or 127.0.0.1:6379, otherwise the in-process store), refusals
# (unknown model, bad key, malformed JSON) and metrics scrapes. Every function callgrind
# saw run in the binary is listed, by its own instruction count. Symbol names are stable
# across edits of a function's body; re-run this after renaming or moving code on the
# request path, or after a Rust update (names the link no longer finds are skipped).
# Needs release binaries, valgrind and curl.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/target/release"
N=200
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) BIN="$2"; shift 2 ;;
    --requests) N="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
for tool in valgrind curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done
W=$(mktemp -d /tmp/tollgate-code-order.XXXXXX)
# shellcheck source=benches/processes.sh
source "$ROOT/benches/processes.sh"

export TOLLGATE_MASTER_KEY=tg-code-order-master-key-0123456789
export TOLLGATE_SECRET_KEY=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
unset RUST_LOG TOLLGATE_DATABASE_URL TOLLGATE_CONFIG TOLLGATE_LOG_FORMAT
REDIS_URL=${TOLLGATE_REDIS_URL:-redis://127.0.0.1:6379}
unset TOLLGATE_REDIS_URL
if command -v redis-cli >/dev/null && redis-cli -u "$REDIS_URL" ping 2>/dev/null | grep -q PONG; then
  export TOLLGATE_REDIS_URL=$REDIS_URL TOLLGATE_REDIS_PREFIX="tollgate-code-order-$$:"
fi

mkdir -p "$W/data"
"$BIN/tollgate-mock" --no-record --listen 127.0.0.1:0 > "$W/mock.out" 2> "$W/mock.err" &
PIDS+=($!)
MOCK=$(listening "$W/mock.out" listening)
gateway_config "$W/tollgate.yaml" "$W/data" "$MOCK" \
  ", pricing: {input_per_million: 0.15, output_per_million: 0.60}" \
  ", rpm: 1000000000, tpm: 1000000000"
KEY=$("$BIN/tollgate" keys create --config "$W/tollgate.yaml" --name code-order \
  --rpm 1000000000 --tpm 1000000000 2> "$W/keys.err" | grep -oE 'tg_[A-Za-z0-9_]+' | head -1)
[ -n "$KEY" ] || { echo "could not issue a key: $(cat "$W/keys.err")" >&2; exit 1; }
# Start-up's code is left out of the count: it is let go of once serving starts.
valgrind --tool=callgrind --demangle=no --instr-atstart=no \
  --callgrind-out-file="$W/callgrind.out" \
  "$BIN/tollgate" serve --config "$W/tollgate.yaml" > "$W/proxy.out" 2> "$W/proxy.err" &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
PROXY=$(listening "$W/proxy.out" proxy)
METRICS=$(listening "$W/proxy.out" metrics)
sleep 3
callgrind_control -i on "$PROXY_PID" > /dev/null

chat() { # key, stream (true|false), model
  curl -sS -o /dev/null -w '%{http_code}\n' "http://$PROXY/v1/chat/completions" \
    -H "authorization: Bearer $1" -H 'content-type: application/json' \
    -d "{\"model\":\"$3\",\"stream\":$2,\"messages\":[{\"role\":\"user\",\"content\":\"Say hello.\"}]}"
}
for _ in $(seq 1 "$N"); do
  chat "$TOLLGATE_MASTER_KEY" false gpt-4o-mini
  chat "$TOLLGATE_MASTER_KEY" true gpt-4o-mini
  chat "$KEY" false gpt-4o-mini
  chat "$KEY" true gpt-4o-mini
done > "$W/codes.txt"
for _ in $(seq 1 10); do
  chat "$KEY" false no-such-model
  chat tg_not_a_key false gpt-4o-mini
  curl -sS -o /dev/null -w '%{http_code}\n' "http://$PROXY/v1/chat/completions" \
    -H "authorization: Bearer $KEY" -H 'content-type: application/json' -d '{"model":'
  curl -sS -o /dev/null -w '%{http_code}\n' "http://$METRICS/metrics"
done >> "$W/codes.txt"
sleep 2
callgrind_control -d "$PROXY_PID" > /dev/null
sleep 1
ok=$(grep -c '^200$' "$W/codes.txt" || true)
[ "$ok" -ge $((N * 4)) ] || { echo "only $ok of $((N * 4)) chats answered 200" >&2; exit 1; }
kill "$PROXY_PID"

# The bench's Pingora floor is linked with the same list: its own functions follow.
mkdir -p "$W/floor"
valgrind --tool=callgrind --demangle=no --instr-atstart=no \
  --callgrind-out-file="$W/floor/callgrind.out" \
  "$BIN/tollgate-pingora-floor" --listen 127.0.0.1:0 --key "$TOLLGATE_MASTER_KEY" \
  --upstream "$MOCK" --threads 1 > "$W/floor.out" 2> "$W/floor.err" &
FLOOR_PID=$!
PIDS+=("$FLOOR_PID")
PROXY=$(listening "$W/floor.out" listening)
sleep 3
callgrind_control -i on "$FLOOR_PID" > /dev/null
for _ in $(seq 1 "$N"); do
  chat "$TOLLGATE_MASTER_KEY" false gpt-4o-mini
  chat "$TOLLGATE_MASTER_KEY" true gpt-4o-mini
done > "$W/floor-codes.txt"
sleep 1
callgrind_control -d "$FLOOR_PID" > /dev/null
sleep 1
ok=$(grep -c '^200$' "$W/floor-codes.txt" || true)
[ "$ok" -ge $((N * 2)) ] || { echo "the floor answered only $ok of $((N * 2)) chats" >&2; exit 1; }

python3 - "$BIN" "$W" "$ROOT/proxy/code-order.txt" <<'PY'
import glob, os, re, sys
bin_dir, work, out = sys.argv[1], sys.argv[2], sys.argv[3]

def functions(binary, dumps):
    """The functions of `binary` the callgrind dumps saw run, by own instructions."""
    names, objs, cost = {}, {}, {}
    def name(table, field):
        m = re.match(r'\((\d+)\)(?: (.*))?', field)
        if not m:
            return field
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1), '')
    for dump in dumps:
        ob = fn = None
        skip = False
        for line in open(dump, errors='replace'):
            key, _, rest = line.rstrip('\n').partition('=')
            if key in ('ob', 'cob') and rest:
                o = name(objs, rest)
                if key == 'ob':
                    ob = o
            elif key in ('fn', 'cfn') and rest:
                f = name(names, rest)
                if key == 'fn':
                    fn = re.sub(r"'\d+$", '', f)
                    cost.setdefault((ob, fn), 0)
            elif key == 'calls':
                skip = True  # the next cost line is the call's, not this function's
            elif line[:1].isdigit() or line[:1] in '+-*':
                if skip:
                    skip = False
                    continue
                parts = line.split()
                if len(parts) >= 2 and fn is not None:
                    try:
                        cost[(ob, fn)] += int(parts[1])
                    except ValueError:
                        pass
    binary = os.path.realpath(binary)
    ours = [(c, f) for (o, f), c in cost.items() if o and os.path.realpath(o) == binary and f and not f.startswith('0x')]
    ours.sort(key=lambda x: (-x[0], x[1]))
    return [f for _, f in ours]

gateway = functions(os.path.join(bin_dir, 'tollgate'), glob.glob(os.path.join(work, 'callgrind.out*')))
floor = functions(os.path.join(bin_dir, 'tollgate-pingora-floor'), glob.glob(os.path.join(work, 'floor', 'callgrind.out*')))
listed = set(gateway)
ours = gateway + [f for f in floor if f not in listed]
with open(out, 'w') as fh:
    fh.write(''.join(f + '\n' for f in ours))
print(f"{len(gateway)} functions of the gateway and {len(ours) - len(gateway)} more of the floor written to {out}")
PY
