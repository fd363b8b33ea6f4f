#!/usr/bin/env bash
# A team MLflow tracking server: PostgreSQL (Debian's package) for runs, artifacts served by the
# server itself, listening on 127.0.0.1 unless told otherwise.
#
#   scripts/tracking-server.sh start | stop | status | uri | study-uri | add-user NAME
#
# The same PostgreSQL holds the Optuna studies of svm_tune's searches, in their own database
# `optuna` of their own role `optuna` (no access to MLflow's): `study-uri` prints the URL to put in
# CIFARLAB_STUDY_STORAGE. Its password is in the state folder's pgpass, as MLflow's is.
#
# Settings (environment):
#   CIFARLAB_SERVER_DIR   state folder: database cluster, artifacts, logs (default .tracking-server)
#   CIFARLAB_SERVER_HOST  address the MLflow server listens on (default 127.0.0.1; 0.0.0.0: every
#                         interface, and the machine's own names and addresses are allowed hosts)
#   CIFARLAB_SERVER_PORT  its port (default 5000)
#   CIFARLAB_SERVER_ALLOWED_HOSTS  more names or addresses (comma-separated; IPv6 in brackets;
#                         `*` patterns allowed) clients may reach the server by, e.g. a DNS alias
#   CIFARLAB_PG_PORT      PostgreSQL's port (default 5433)
#   CIFARLAB_PG_HOST      address PostgreSQL listens on (default 127.0.0.1; 0.0.0.0: every interface,
#                         so that workers on other machines join searches, with the optuna role's
#                         password; MLflow's role stays loopback-only)
#   CIFARLAB_SERVER_AUTH  1: MLflow's basic-auth app; needs MLFLOW_AUTH_ADMIN_PASSWORD the first time
#   CIFARLAB_SERVER_DEFAULT_PERMISSION  with auth, what every user may do in every experiment
#                         (no explicit grant): EDIT (default: create and log runs), READ, USE,
#                         MANAGE or NO_PERMISSIONS. Admins manage users.
#   CIFARLAB_SERVER_WORKERS  server worker processes (default 2)
#
# add-user NAME (needs the server running with auth): creates a user, as the admin
# (MLFLOW_AUTH_ADMIN_USERNAME, default admin, with MLFLOW_AUTH_ADMIN_PASSWORD, else asked); the new
# user's password comes from CIFARLAB_NEW_USER_PASSWORD, else is asked twice on the terminal.
#
# Secrets never appear on a command line: PostgreSQL's password is in the state folder's pgpass
# (mode 0600, read by libpq through PGPASSFILE); everything in the state folder is for its owner
# only (the folder itself is 0711, so that the postgres user reaches its cluster).
set -euo pipefail
umask 077

here=$(cd "$(dirname "$0")/.." && pwd)
dir=${CIFARLAB_SERVER_DIR:-$here/.tracking-server}
host=${CIFARLAB_SERVER_HOST:-127.0.0.1}
port=${CIFARLAB_SERVER_PORT:-5000}
pg_port=${CIFARLAB_PG_PORT:-5433}
pg_host=${CIFARLAB_PG_HOST:-127.0.0.1}
auth=${CIFARLAB_SERVER_AUTH:-0}
default_permission=${CIFARLAB_SERVER_DEFAULT_PERMISSION:-EDIT}
workers=${CIFARLAB_SERVER_WORKERS:-2}
mlflow_bin=${MLFLOW_BIN:-$here/.venv/bin/mlflow}
pgdata=$dir/pgdata
export PGPASSFILE=$dir/pgpass

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

# The passwords are only in pgpass (host:port:database:user:password, libpq's format).
password() { awk -F: -v u="${1:-mlflow}" '$4 == u { print $5; exit }' "$PGPASSFILE"; }
backend_uri() { echo "postgresql+psycopg2://mlflow@127.0.0.1:$pg_port/mlflow"; }
study_uri() { echo "postgresql+psycopg2://optuna@127.0.0.1:$pg_port/optuna"; }
wildcard_host() { case $host in 0.0.0.0 | :: | "[::]") return 0 ;; *) return 1 ;; esac; }
# The URI for clients on this machine.
uri() {
  if wildcard_host; then echo "http://127.0.0.1:$port"; else echo "http://$host:$port"; fi
}

# The Host headers the server accepts (MLflow refuses any other with 403 "Invalid Host header"):
# loopback, the address it listens on, on 0.0.0.0 the machine's own names and addresses, and
# CIFARLAB_SERVER_ALLOWED_HOSTS.
allowed_hosts() {
  local names=(127.0.0.1 localhost "[::1]") extra name out=","
  if wildcard_host; then
    names+=(0.0.0.0)
    # shellcheck disable=SC2207  # one word per name or address
    names+=($(hostname 2>/dev/null) $(hostname -f 2>/dev/null) $(hostname -I 2>/dev/null))
  else
    names+=("$host")
  fi
  IFS=, read -r -a extra <<<"${CIFARLAB_SERVER_ALLOWED_HOSTS:-}"
  names+=("${extra[@]}")
  for name in "${names[@]}"; do
    name=${name// /}
    case $name in
      "") continue ;;
      \[*\]:*) ;;                     # [IPv6]:port
      \[*\]) name="$name:$port" ;;     # [IPv6]
      *'*'*) ;;                       # a pattern, as given
      *:*:*) name="[$name]:$port" ;;  # a bare IPv6 address
      *:*) ;;                         # name:port
      *) name="$name:$port" ;;
    esac
    case $out in *",$name,"*) ;; *) out="$out$name," ;; esac
  done
  out=${out#,}
  echo "${out%,}"
}

# Settings that can be wrong, checked before anything starts.
check_settings() {
  case $default_permission in
    READ | USE | EDIT | MANAGE | NO_PERMISSIONS) ;;
    *) die "CIFARLAB_SERVER_DEFAULT_PERMISSION=$default_permission: use EDIT, READ, USE, MANAGE or NO_PERMISSIONS" ;;
  esac
}

# The state folder: the postgres user must reach pgdata/ and socket/ inside; nobody else reads it.
state_dir() {
  mkdir -p "$dir"
  chmod 711 "$dir" 2>/dev/null || die "cannot set the permissions of $dir (not its owner?)"
  if [ "$(id -u)" = 0 ] && ! as_pg test -x "$dir"; then
    die "the postgres user cannot reach $dir: use a folder inside folders every user can enter"
  fi
  # A state folder of an older version: its password moves into pgpass, its files go private.
  if [ -f "$dir/pg-password" ] && [ ! -f "$PGPASSFILE" ]; then
    echo "*:*:*:mlflow:$(cat "$dir/pg-password")" >"$PGPASSFILE"
  fi
  rm -f "$dir/pg-password"
  local f
  for f in basic_auth.db basic_auth.ini flask-secret initdb.log server.log server.pid pgpass; do
    [ -e "$dir/$f" ] && chmod 600 "$dir/$f"
  done
  [ -d "$dir/artifacts" ] && chmod 700 "$dir/artifacts"
  return 0
}

init_cluster() {
  [ -f "$pgdata/PG_VERSION" ] && return 0
  if [ ! -f "$PGPASSFILE" ]; then
    echo "*:*:*:mlflow:$(python3 -c 'import secrets; print(secrets.token_hex(16))')" >"$PGPASSFILE"
  fi
  mkdir -p "$pgdata" "$dir/socket"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$pgdata" "$dir/socket"; fi
  log "initialising a PostgreSQL cluster in $pgdata"
  # The password reaches initdb through a pipe that the postgres user's own shell opens: no
  # file holds it, not even for a moment, and an interrupted start leaves none behind.
  # shellcheck disable=SC2016  # expanded by that shell
  password | as_pg bash -c '"$1" -D "$2" -U mlflow --pwfile=<(cat) -A scram-sha-256 -E UTF8' \
    initdb "$(pg_bindir)/initdb" "$pgdata" >"$dir/initdb.log" 2>&1 \
    || die "initdb failed, see $dir/initdb.log"
}

# Other machines reach PostgreSQL (CIFARLAB_PG_HOST=0.0.0.0) as the optuna role only.
remote_access() {
  local hba=$pgdata/pg_hba.conf line
  for line in "host optuna optuna 0.0.0.0/0 scram-sha-256" "host optuna optuna ::/0 scram-sha-256"; do
    as_pg grep -qxF "$line" "$hba" || echo "$line" | as_pg tee -a "$hba" >/dev/null
  done
}

# The role and database of the Optuna studies (also added to a cluster made by an older version).
study_database() {
  local q="psql -h 127.0.0.1 -p $pg_port -U mlflow -d postgres -tAc"
  grep -q '^\*:\*:\*:optuna:' "$PGPASSFILE" \
    || echo "*:*:*:optuna:$(python3 -c 'import secrets; print(secrets.token_hex(16))')" >>"$PGPASSFILE"
  if ! $q "SELECT 1 FROM pg_roles WHERE rolname = 'optuna'" | grep -q 1; then
    # The password travels on psql's standard input, never on a command line.
    printf "CREATE ROLE optuna LOGIN PASSWORD '%s';\n" "$(password optuna)" \
      | psql -h 127.0.0.1 -p "$pg_port" -U mlflow -d postgres -q -f - >/dev/null \
      || die "could not create the optuna role"
  fi
  if ! $q "SELECT 1 FROM pg_database WHERE datname = 'optuna'" | grep -q 1; then
    $q "CREATE DATABASE optuna OWNER optuna" >/dev/null || die "could not create the optuna database"
  fi
  $q "REVOKE CONNECT ON DATABASE mlflow FROM PUBLIC" >/dev/null  # optuna: its own database only
}

start_postgres() {
  if pg pg_ctl -D "$pgdata" status >/dev/null 2>&1; then study_database; return 0; fi
  local listen=127.0.0.1
  if [ "$pg_host" != 127.0.0.1 ]; then
    remote_access
    case $pg_host in 0.0.0.0 | :: | "[::]") listen='*' ;; *) listen="127.0.0.1,$pg_host" ;; esac
  fi
  pg pg_ctl -D "$pgdata" -l "$dir/socket/postgres.log" -w -t 60 start \
    -o "-p $pg_port -k $dir/socket -c listen_addresses='$listen'" >/dev/null \
    || die "PostgreSQL did not start, see $dir/socket/postgres.log"
  if ! psql -h 127.0.0.1 -p "$pg_port" -U mlflow -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = 'mlflow'" | grep -q 1; then
    psql -h 127.0.0.1 -p "$pg_port" -U mlflow -d postgres -qc "CREATE DATABASE mlflow" \
      || die "could not create the mlflow database"
  fi
  study_database
}

server_pid() {
  [ -f "$dir/server.pid" ] && kill -0 "$(cat "$dir/server.pid")" 2>/dev/null && cat "$dir/server.pid"
}

# healthy [TIMEOUT]: the server answers /health within TIMEOUT seconds (default 2).
healthy() {
  python3 - "$(uri)" "${1:-2}" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/health", timeout=float(sys.argv[2])) as r:
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
default_permission = $default_permission
database_uri = sqlite:///$dir/basic_auth.db
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
    [ -f "$dir/basic_auth.db" ] || [ -n "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" ] \
      || die "CIFARLAB_SERVER_AUTH=1 needs MLFLOW_AUTH_ADMIN_PASSWORD the first time (the admin's password)"
    export MLFLOW_AUTH_CONFIG_PATH=$dir/basic_auth.ini
    # Every worker must sign CSRF tokens with the same key; keep it with the server's state.
    [ -f "$dir/flask-secret" ] || python3 -c 'import secrets; print(secrets.token_hex(32))' >"$dir/flask-secret"
    MLFLOW_FLASK_SERVER_SECRET_KEY=$(cat "$dir/flask-secret")
    export MLFLOW_FLASK_SERVER_SECRET_KEY
    app=(--app-name basic-auth)
  fi
  mkdir -p "$dir/artifacts"
  # setsid: the server outlives this script and the shell that called it, until `stop`. Its
  # umask (077) keeps the artifacts and basic_auth.db it writes private; the backend URI holds no
  # password (libpq reads PGPASSFILE).
  setsid "$mlflow_bin" server "${app[@]}" \
    --backend-store-uri "$(backend_uri)" \
    --artifacts-destination "$dir/artifacts" --serve-artifacts \
    --host "$host" --port "$port" --workers "$workers" \
    --allowed-hosts "$(allowed_hosts)" \
    >"$dir/server.log" 2>&1 </dev/null &
  echo $! >"$dir/server.pid"
  for _ in $(seq 1 120); do
    if healthy; then
      log "MLflow server at $(uri) (runs in PostgreSQL on 127.0.0.1:$pg_port, artifacts in $dir/artifacts)"
      if wildcard_host; then log "teammates reach it as http://$(hostname):$port (allowed hosts: $(allowed_hosts))"; fi
      return 0
    fi
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

# Ask on the terminal (never echoed), or fail naming the variable that would have given it.
ask_secret() {
  local prompt=$1 variable=$2 answer again
  if ! { : </dev/tty; } 2>/dev/null; then die "no terminal to ask on: set $variable"; fi
  read -rsp "$prompt: " answer </dev/tty; echo >&2
  if [ "${3:-}" = confirm ]; then
    read -rsp "$prompt (again): " again </dev/tty; echo >&2
    [ "$answer" = "$again" ] || die "the two passwords differ"
  fi
  [ -n "$answer" ] || die "an empty password"
  printf '%s' "$answer"
}

add_user() {
  local name=${1:-} admin=${MLFLOW_AUTH_ADMIN_USERNAME:-admin} admin_pw new_pw
  [ -n "$name" ] || die "usage: $0 add-user NAME (password from CIFARLAB_NEW_USER_PASSWORD, else asked)"
  healthy 15 || die "no MLflow server answers at $(uri): start it first (CIFARLAB_SERVER_AUTH=1 make server)"
  admin_pw=${MLFLOW_AUTH_ADMIN_PASSWORD:-}
  [ -n "$admin_pw" ] \
    || admin_pw=$(ask_secret "password of the admin '$admin'" MLFLOW_AUTH_ADMIN_PASSWORD) || exit 1
  new_pw=${CIFARLAB_NEW_USER_PASSWORD:-}
  [ -n "$new_pw" ] \
    || new_pw=$(ask_secret "password for '$name'" CIFARLAB_NEW_USER_PASSWORD confirm) || exit 1
  # The secrets travel in this one process's environment, never on a command line.
  ADMIN_USER=$admin ADMIN_PASSWORD=$admin_pw NEW_PASSWORD=$new_pw python3 - "$(uri)" "$name" <<'EOF'
import base64, json, os, sys, urllib.error, urllib.request

uri, name = sys.argv[1], sys.argv[2]
admin = os.environ["ADMIN_USER"]
login = base64.b64encode(f"{admin}:{os.environ['ADMIN_PASSWORD']}".encode()).decode()
request = urllib.request.Request(
    f"{uri}/api/2.0/mlflow/users/create",
    data=json.dumps({"username": name, "password": os.environ["NEW_PASSWORD"]}).encode(),
    headers={"Content-Type": "application/json", "Authorization": f"Basic {login}"},
    method="POST",
)
try:
    urllib.request.urlopen(request, timeout=30).close()
except urllib.error.HTTPError as exc:
    body = exc.read().decode(errors="replace")
    try:
        detail = json.loads(body).get("message", body)
    except ValueError:
        detail = body
    detail = " ".join(detail.split())[:200]
    why = {
        401: f"the server refused the admin login '{admin}': check MLFLOW_AUTH_ADMIN_PASSWORD "
             "(and MLFLOW_AUTH_ADMIN_USERNAME)",
        403: f"'{admin}' is not an admin of the server, so may not add users",
        404: "the server has no user accounts: restart it with CIFARLAB_SERVER_AUTH=1",
    }.get(exc.code)
    if why is None and "already exists" in detail.lower():
        why = f"user '{name}' already exists"
    sys.exit(f"tracking-server: {why or f'adding user {name!r} failed (HTTP {exc.code}: {detail})'}")
except OSError as exc:
    sys.exit(f"tracking-server: {uri} is unreachable ({getattr(exc, 'reason', exc)})")
print(f"tracking-server: added user '{name}' at {uri}; they set MLFLOW_TRACKING_USERNAME={name} "
      "and MLFLOW_TRACKING_PASSWORD", file=sys.stderr)
EOF
}

case "${1:-}" in
  start)
    check_settings
    install_postgres
    state_dir
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
  study-uri) study_uri ;;
  add-user) add_user "${2:-}" ;;
  *) die "usage: $0 start|stop|status|uri|study-uri|add-user NAME" ;;
esac
