#!/usr/bin/env bash
# A team MLflow tracking server: PostgreSQL (Debian's package) for runs, artifacts served by the
# server itself, listening on 127.0.0.1 unless told otherwise.
#
#   scripts/tracking-server.sh start | stop | status | uri
#
# Settings (environment):
#   CIFARLAB_SERVER_DIR   state folder: database cluster, artifacts, logs (default .tracking-server)
#   CIFARLAB_SERVER_HOST  address the MLflow server listens on (default 127.0.0.1)
#   CIFARLAB_SERVER_PORT  its port (default 5000)
#   CIFARLAB_PG_PORT      PostgreSQL's port, always on 127.0.0.1 (default 5433)
#   CIFARLAB_SERVER_AUTH  1: MLflow's basic-auth app; needs MLFLOW_AUTH_ADMIN_PASSWORD the first time
#   CIFARLAB_SERVER_WORKERS  server worker processes (default 2)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
dir=${CIFARLAB_SERVER_DIR:-$here/.tracking-server}
host=${CIFARLAB_SERVER_HOST:-127.0.0.1}
port=${CIFARLAB_SERVER_PORT:-5000}
pg_port=${CIFARLAB_PG_PORT:-5433}
auth=${CIFARLAB_SERVER_AUTH:-0}
workers=${CIFARLAB_SERVER_WORKERS:-2}
mlflow_bin=${MLFLOW_BIN:-$here/.venv/bin/mlflow}
pgdata=$dir/pgdata

die() { echo "tracking-server: $*" >&2; exit 1; }
log() { echo "tracking-server: $*" >&2; }

pg_bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  return 1
}

install_postgres() {
  pg_bindir >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "PostgreSQL is not installed; as root run: apt-get install -y postgresql"
  log "installing PostgreSQL (Debian package postgresql)"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >/dev/null
  pg_bindir >/dev/null || die "apt-get installed postgresql but no pg_ctl was found"
}

# PostgreSQL refuses to run as root: as root, run its tools as the package's postgres user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg() { as_pg "$(pg_bindir)/$1" "${@:2}"; }

password() { cat "$dir/pg-password"; }
backend_uri() { echo "postgresql+psycopg2://mlflow:$(password)@127.0.0.1:$pg_port/mlflow"; }
uri() { echo "http://$host:$port"; }

init_cluster() {
  [ -f "$pgdata/PG_VERSION" ] && return 0
  mkdir -p "$dir"
  chmod 755 "$dir"
  umask 077
  [ -f "$dir/pg-password" ] || python3 -c 'import secrets; print(secrets.token_hex(16))' >"$dir/pg-password"
  umask 022
  mkdir -p "$pgdata" "$dir/socket"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$pgdata" "$dir/socket"
    as_pg test -x "$dir" || die "the postgres user cannot reach $dir: use a folder every user can enter"
  fi
  log "initialising a PostgreSQL cluster in $pgdata"
  local pwfile
  pwfile=$(mktemp)
  password >"$pwfile"
  chmod 644 "$pwfile"
  pg initdb -D "$pgdata" -U mlflow --pwfile="$pwfile" -A scram-sha-256 -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { rm -f "$pwfile"; die "initdb failed, see $dir/initdb.log"; }
  rm -f "$pwfile"
}

start_postgres() {
  if pg pg_ctl -D "$pgdata" status >/dev/null 2>&1; then return 0; fi
  pg pg_ctl -D "$pgdata" -l "$dir/socket/postgres.log" -w -t 60 start \
    -o "-p $pg_port -k $dir/socket -c listen_addresses=127.0.0.1" >/dev/null \
    || die "PostgreSQL did not start, see $dir/socket/postgres.log"
  if ! PGPASSWORD=$(password) psql -h 127.0.0.1 -p "$pg_port" -U mlflow -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = 'mlflow'" | grep -q 1; then
    PGPASSWORD=$(password) psql -h 127.0.0.1 -p "$pg_port" -U mlflow -d postgres -qc "CREATE DATABASE mlflow" \
      || die "could not create the mlflow database"
  fi
}

server_pid() {
  [ -f "$dir/server.pid" ] && kill -0 "$(cat "$dir/server.pid")" 2>/dev/null && cat "$dir/server.pid"
}

healthy() {
  python3 - "$(uri)" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/health", timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

start_server() {
  if server_pid >/dev/null; then log "already running at $(uri)"; return 0; fi
  [ -x "$mlflow_bin" ] || die "$mlflow_bin not found: run 'make venv' first"
  local app=()
  if [ "$auth" = 1 ]; then
    cat >"$dir/basic_auth.ini" <<EOF
[mlflow]
default_permission = READ
database_uri = sqlite:///$dir/basic_auth.db
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
    [ -f "$dir/basic_auth.db" ] || [ -n "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" ] \
      || die "CIFARLAB_SERVER_AUTH=1 needs MLFLOW_AUTH_ADMIN_PASSWORD the first time (the admin's password)"
    export MLFLOW_AUTH_CONFIG_PATH=$dir/basic_auth.ini
    # Every worker must sign CSRF tokens with the same key; keep it with the server's state.
    [ -f "$dir/flask-secret" ] || (umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' >"$dir/flask-secret")
    MLFLOW_FLASK_SERVER_SECRET_KEY=$(cat "$dir/flask-secret")
    export MLFLOW_FLASK_SERVER_SECRET_KEY
    app=(--app-name basic-auth)
  fi
  mkdir -p "$dir/artifacts"
  # setsid: the server outlives this script and the shell that called it, until `stop`.
  setsid "$mlflow_bin" server "${app[@]}" \
    --backend-store-uri "$(backend_uri)" \
    --artifacts-destination "$dir/artifacts" --serve-artifacts \
    --host "$host" --port "$port" --workers "$workers" \
    --allowed-hosts "$host:$port,127.0.0.1:$port,localhost:$port" \
    >"$dir/server.log" 2>&1 </dev/null &
  echo $! >"$dir/server.pid"
  for _ in $(seq 1 120); do
    healthy && { log "MLflow server at $(uri) (runs in PostgreSQL on 127.0.0.1:$pg_port, artifacts in $dir/artifacts)"; return 0; }
    kill -0 "$(cat "$dir/server.pid")" 2>/dev/null || die "the MLflow server exited, see $dir/server.log"
    sleep 0.5
  done
  die "the MLflow server did not answer at $(uri) within 60 s, see $dir/server.log"
}

stop() {
  local pid
  if pid=$(server_pid); then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$dir/server.pid"
  if [ -f "$pgdata/PG_VERSION" ] && pg_bindir >/dev/null; then
    pg pg_ctl -D "$pgdata" -m fast -w stop >/dev/null 2>&1 || true
  fi
  log "stopped"
}

case "${1:-}" in
  start)
    install_postgres
    init_cluster
    start_postgres
    start_server
    uri
    ;;
  stop) stop ;;
  status)
    if server_pid >/dev/null && healthy; then echo "running at $(uri)"; else echo "not running"; exit 3; fi
    ;;
  uri) uri ;;
  *) die "usage: $0 start|stop|status|uri" ;;
esac
