# Shared set-up steps for scripts/run, scripts/test and scripts/bench: each installs or
# starts only what is missing, so the scripts work on a fresh Debian machine with Rust.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

log() { printf '==> %s\n' "$*" >&2; }

apt_updated=""
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  log "installing Debian packages: ${missing[*]}"
  if [ -z "$apt_updated" ]; then
    $sudo apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# What the Rust build needs: Pingora builds zlib-ng with cmake; josekit/Pingora link OpenSSL.
ensure_build_deps() {
  command -v cargo >/dev/null || { echo "cargo is required: install Rust from rustup" >&2; exit 1; }
  apt_install cmake pkg-config libssl-dev build-essential
}

# The web UI's static export (web-admin/out), embedded into `tollgate` when it is built:
# node and npm from Debian's packages if missing, packages from the committed lockfile.
ensure_web_ui() {
  command -v npm >/dev/null || apt_install nodejs npm
  local ui="$ROOT/web-admin"
  if [ ! -d "$ui/node_modules" ] || ! cmp -s "$ui/package-lock.json" "$ui/node_modules/.package-lock.json.copy"; then
    log "installing the web UI's packages"
    (cd "$ui" && npm ci --no-audit --no-fund --loglevel=error >&2)
    cp "$ui/package-lock.json" "$ui/node_modules/.package-lock.json.copy"
  fi
  log "building the web UI"
  (cd "$ui" && npm run --silent build >/dev/null)
}

# Debian's Chromium for the web UI's end-to-end suite (Playwright drives it; its own
# browser download cannot work offline).
ensure_chromium() {
  command -v chromium >/dev/null || apt_install chromium
}

# A virtualenv with the official openai package and pytest, for the SDK suite.
ensure_python_venv() {
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt_install python3-venv
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
  fi
  if ! "$VENV/bin/python" -c 'import openai, anthropic, pytest' 2>/dev/null \
     || ! cmp -s "$ROOT/tests/e2e/requirements.txt" "$VENV/.requirements"; then
    log "installing Python test requirements"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/tests/e2e/requirements.txt"
    cp "$ROOT/tests/e2e/requirements.txt" "$VENV/.requirements"
  fi
}

# PostgreSQL and Redis on loopback, installed and started if they are not running.
ensure_services() {
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    command -v pg_ctlcluster >/dev/null || apt_install postgresql
    log "starting PostgreSQL"
    local version
    version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
  fi
  # Tests connect as postgres over TCP. A stock Debian cluster asks for a password there:
  # give the postgres role one and tell the tests (TOLLGATE_TEST_POSTGRES).
  if [ -z "${TOLLGATE_TEST_POSTGRES:-}" ] \
     && ! psql -h 127.0.0.1 -U postgres -d postgres -w -tAc 'select 1' >/dev/null 2>&1; then
    log "setting a password for the postgres role (loopback test database)"
    runuser -u postgres -- psql -q -c "ALTER USER postgres PASSWORD 'postgres'" >/dev/null
    export TOLLGATE_TEST_POSTGRES="postgres://postgres:postgres@127.0.0.1:5432"
  fi
  # The Redis Cluster tests start clusters of their own from these binaries.
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null \
    || apt_install redis-server redis-tools
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    log "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
  fi
}

# The deployment files, checked without a container engine (none runs here): the compose
# file by docker-compose's own parser, Prometheus' config and alert rules by promtool, the
# Grafana dashboard as JSON. (Whether every metric they use exists is a Rust test.)
check_deployment_files() {
  command -v docker-compose >/dev/null || apt_install docker-compose
  command -v promtool >/dev/null || apt_install prometheus
  log "checking docker/docker-compose.yml, the Dockerfile, Prometheus config and rules, the dashboard"
  local env_file
  env_file="$(mktemp)"
  sed -e 's/^\(POSTGRES_PASSWORD\|TOLLGATE_MASTER_KEY\|TOLLGATE_SECRET_KEY\|GRAFANA_ADMIN_PASSWORD\|TOLLGATE_ADMIN_PASSWORD\)=$/\1=check-only-value/' \
    "$ROOT/docker/.env.example" >"$env_file"
  docker-compose --env-file "$env_file" -f "$ROOT/docker/docker-compose.yml" config -q
  rm -f "$env_file"
  promtool check config "$ROOT/docker/prometheus/prometheus.yml" >/dev/null
  promtool check rules "$ROOT/docker/prometheus/alerts.yml" >/dev/null
  python3 -m json.tool "$ROOT/docker/grafana/dashboards/tollgate.json" >/dev/null
  # The Dockerfile's linter (instructions, flags, durations, ports) comes from npm.
  [ -x "$ROOT/docker/lint/node_modules/.bin/dockerfile-utils" ] ||
    (cd "$ROOT/docker/lint" && npm ci --no-audit --no-fund >/dev/null)
  (cd "$ROOT/docker/lint" && npm run -s lint)
}
