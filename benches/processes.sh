# Shared by the valgrind scripts in benches/ (sourced): the processes they start, killed
# on exit, and the address a started process prints.

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Waits for a JSON line with `field` on stdout file $1 and prints that field.
listening() {
  local file=$1 field=$2 line=""
  for _ in $(seq 1 600); do
    line=$(grep -m1 "\"$field\"" "$file" 2>/dev/null || true)
    [ -n "$line" ] && break
    sleep 0.5
  done
  python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$line" "$field"
}

# Writes a gateway config to $1: data under $2, one OpenAI-compatible provider at the mock
# $3, one model `gpt-4o-mini` with model settings $4 and deployment settings $5 (each
# empty or starting with ", ").
gateway_config() {
  cat > "$1" <<YAML
server:
  proxy_listen: 127.0.0.1:0
  metrics_listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
  threads: 1
  data_dir: '$2'
providers:
  - {name: upstream, kind: openai-compatible, base_url: 'http://$3/v1'}
models:
  - {name: gpt-4o-mini$4, deployments: [{provider: upstream$5}]}
YAML
}
