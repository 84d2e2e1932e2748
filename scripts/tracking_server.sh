#!/usr/bin/env bash
# A real MLflow tracking server on loopback, as our users run it: `mlflow server` over HTTP with a
# PostgreSQL backend store (Debian's postgresql, started and stopped here) and artifacts served
# by the server (--serve-artifacts). Everything lives under $MLCORE_HOME/tracking-server:
#   pg/          the PostgreSQL cluster (owned by the postgres user when run as root)
#   artifacts/   the server's artifact store
#   server.log   mlflow server's output, including one access-log line per request
#
#   scripts/tracking_server.sh start    # prints the tracking URI (http://127.0.0.1:$PORT)
#   scripts/tracking_server.sh status
#   scripts/tracking_server.sh requests # requests served so far (lines in the access log)
#   scripts/tracking_server.sh stop
#
# Point a job at it:  --set mlflow.tracking_uri=http://127.0.0.1:5055
# Ports: MLCORE_TRACKING_PORT (default 5055) and MLCORE_TRACKING_PG_PORT (default 5433).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOME_DIR="${MLCORE_HOME:-$ROOT/.mlcore}"
BASE="$HOME_DIR/tracking-server"
PG_DATA="$BASE/pg"
ARTIFACTS="$BASE/artifacts"
LOG="$BASE/server.log"
PORT="${MLCORE_TRACKING_PORT:-5055}"
PG_PORT="${MLCORE_TRACKING_PG_PORT:-5433}"
VENV="${MLCORE_VENV:-$ROOT/.venv}"
DB=mlflow

die() { echo "tracking_server: $*" >&2; exit 1; }
# shellcheck source=scripts/_daemon.sh
source "$ROOT/scripts/_daemon.sh"

pg_bin() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [[ -x "$dir/initdb" ]] && { echo "$dir"; return; }
  done
  command -v initdb >/dev/null && { dirname "$(command -v initdb)"; return; }
  die "PostgreSQL server binaries not found: install Debian's postgresql (apt-get install postgresql)"
}

# PostgreSQL refuses to run as root: as root, the cluster belongs to the postgres user.
as_pg() {
  if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_running() { [[ -f "$PG_DATA/postmaster.pid" ]] && as_pg "$(pg_bin)/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }
server_pid() { daemon_pid "$BASE/server.pid"; }

start_pg() {
  local bin; bin="$(pg_bin)"
  mkdir -p "$BASE"
  if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    rm -rf "$PG_DATA"; mkdir -p "$PG_DATA"
    if [[ "$(id -u)" == 0 ]]; then
      chown postgres: "$PG_DATA"; chmod 700 "$PG_DATA"
      runuser -u postgres -- test -w "$PG_DATA" \
        || die "the postgres user cannot reach $PG_DATA (a parent folder is not searchable by others)"
    fi
    as_pg "$bin/initdb" -D "$PG_DATA" -U mlcore --auth=trust --encoding=UTF8 --no-locale >"$BASE/initdb.log" 2>&1 \
      || die "initdb failed (see $BASE/initdb.log)"
  fi
  if ! pg_running; then
    # Loopback TCP only; the socket folder is the data folder (no /var/run needed).
    as_pg "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/postgres.log" -w -t 60 \
      -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $PG_DATA" start >/dev/null \
      || die "PostgreSQL did not start (see $PG_DATA/postgres.log)"
  fi
  if ! as_pg "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U mlcore -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='$DB'" | grep -q 1; then
    as_pg "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U mlcore "$DB"
  fi
}

start() {
  if pid="$(server_pid)"; then echo "http://127.0.0.1:$PORT"; return; fi
  start_pg
  mkdir -p "$ARTIFACTS"
  # One worker keeps the access log's order and the machine's 2 cores for the jobs; uvicorn's
  # access log writes one line per request into server.log (what `requests` counts).
  setsid "$VENV/bin/mlflow" server \
    --backend-store-uri "postgresql+psycopg2://mlcore@127.0.0.1:$PG_PORT/$DB" \
    --serve-artifacts --artifacts-destination "$ARTIFACTS" \
    --host 127.0.0.1 --port "$PORT" --workers 1 \
    >"$LOG" 2>&1 < /dev/null &
  echo $! >"$BASE/server.pid"
  daemon_wait "$BASE/server.pid" 120 "$LOG" \
    "$VENV/bin/python" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$PORT/health', timeout=2)"
  echo "http://127.0.0.1:$PORT"
}

stop() {
  daemon_stop "$BASE/server.pid"
  if pg_running; then as_pg "$(pg_bin)/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null; fi
}

requests() { grep -c '"[A-Z]* /[^ ]* HTTP/[0-9.]*" [0-9]' "$LOG" 2>/dev/null || echo 0; }

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status)
    if pid="$(server_pid)"; then echo "running (pid $pid) at http://127.0.0.1:$PORT, PostgreSQL on $PG_PORT"
    else echo "stopped"; exit 3; fi ;;
  requests) requests ;;
  *) echo "usage: $0 start|stop|status|requests" >&2; exit 2 ;;
esac
