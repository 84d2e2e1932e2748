#!/usr/bin/env bash
# A local Spark Connect server from the installed pyspark, as Databricks serverless and
# standard-access clusters serve Python: clients get a session over gRPC (sc://127.0.0.1:PORT),
# with no SparkContext or JVM in their process. Loopback only.
#
# Without --with-delta the server has no Delta jars and storage.delta_engine auto picks delta-rs
# (its Python data source is registered from the client). With --with-delta it loads the Delta
# jars cached by `python -m mlcore.delta_jars fetch` and Delta's SQL extension and catalog, and
# auto picks native Delta: mlcore's native engine speaks Delta SQL (DESCRIBE HISTORY, MERGE INTO)
# beyond reads and writes, so it needs no Delta Connect plugin on the server.
#
#   scripts/connect_server.sh start [--with-delta]   # prints sc://127.0.0.1:$PORT
#   scripts/connect_server.sh status
#   scripts/connect_server.sh stop
#
# Point a job at it:  SPARK_REMOTE=sc://127.0.0.1:15002 python jobs/ingest_bank.py ...
# (or --set spark.remote=sc://127.0.0.1:15002). Port: MLCORE_CONNECT_PORT (default 15002).
# State and the server log live under $MLCORE_HOME/connect-server.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOME_DIR="${MLCORE_HOME:-$ROOT/.mlcore}"
BASE="$HOME_DIR/connect-server"
PORT="${MLCORE_CONNECT_PORT:-15002}"
VENV="${MLCORE_VENV:-$ROOT/.venv}"
MASTER="${MLCORE_CONNECT_MASTER:-local[2]}"

die() { echo "connect_server: $*" >&2; exit 1; }
# shellcheck source=scripts/_daemon.sh
source "$ROOT/scripts/_daemon.sh"
server_pid() { daemon_pid "$BASE/server.pid"; }

start() {
  local with_delta=0
  case "${1:-}" in
    "") ;;
    --with-delta) with_delta=1 ;;
    *) echo "usage: $0 start [--with-delta]" >&2; exit 2 ;;
  esac
  if server_pid >/dev/null; then echo "sc://127.0.0.1:$PORT"; return; fi
  mkdir -p "$BASE"
  local args=(--class org.apache.spark.sql.connect.service.SparkConnectServer
              --name mlcore-connect-server --master "$MASTER"
              --conf spark.connect.grpc.binding.address=127.0.0.1
              --conf "spark.connect.grpc.binding.port=$PORT"
              --conf spark.ui.enabled=false
              --conf "spark.driver.extraJavaOptions=-XX:ReservedCodeCacheSize=512m")
  if [ "$with_delta" = 1 ]; then
    local jars
    jars="$("$VENV/bin/python" -m mlcore.delta_jars jars)" \
      || die "no Delta jars cached: run '$VENV/bin/python -m mlcore.delta_jars fetch' first"
    args+=(--jars "$jars"
           --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension
           --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog
           --conf spark.databricks.delta.snapshotPartitions=2)
  fi
  # The server's Python workers (UDFs, Python data sources) run this venv's interpreter.
  PYSPARK_PYTHON="$VENV/bin/python" SPARK_LOCAL_IP=127.0.0.1 \
    setsid "$VENV/bin/spark-submit" "${args[@]}" spark-internal >"$BASE/server.log" 2>&1 </dev/null &
  echo $! >"$BASE/server.pid"
  daemon_wait "$BASE/server.pid" 180 "$BASE/server.log" \
    "$VENV/bin/python" -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1).close()"
  echo "sc://127.0.0.1:$PORT"
}

stop() { daemon_stop "$BASE/server.pid"; }

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) stop ;;
  status)
    if pid="$(server_pid)"; then echo "running (pid $pid) at sc://127.0.0.1:$PORT"
    else echo "stopped"; exit 3; fi ;;
  *) echo "usage: $0 start [--with-delta]|stop|status" >&2; exit 2 ;;
esac
