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
