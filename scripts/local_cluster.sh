#!/usr/bin/env bash
# A Spark standalone cluster on 127.0.0.1 for trying the jobs on real separate processes:
# one master and N workers (each its own JVM), from the pip-installed pyspark's jars.
#
#   scripts/local_cluster.sh start     start what is not running, wait until every worker has
#                                      registered; the last line printed is the master URL
#   scripts/local_cluster.sh status    running/stopped per process (exit 0 only if all run)
#   scripts/local_cluster.sh stop      stop the processes this script started (pid files only)
#   scripts/local_cluster.sh url       print the master URL
#
# Then:  ./spark-submit.sh --master "$(scripts/local_cluster.sh url)" ingest_bank --env local
#
# State (logs, pid files, worker work dirs with executor logs) goes to $MLCORE_HOME/cluster
# (MLCORE_HOME defaults to .mlcore in the checkout). Settings, by env:
#   MLCORE_CLUSTER_MASTER_PORT   master RPC port            (default 7177)
#   MLCORE_CLUSTER_WEBUI_PORT    master web UI / JSON port  (default 8180; workers' UIs: random)
#   MLCORE_CLUSTER_WORKERS       number of workers          (default 2)
#   MLCORE_CLUSTER_WORKER_CORES  cores per worker           (default 1)
#   MLCORE_CLUSTER_WORKER_MEMORY memory per worker          (default 2g)
#   MLCORE_CLUSTER_START_TIMEOUT seconds to wait at start   (default 120)
#   PYTHON                       Python with pyspark (default: the repo's .venv), exported to
#                                the workers as PYSPARK_PYTHON. Executors run the Python the
#                                driver names (spark.pyspark.python): ./spark-submit.sh names
#                                this same venv for a 127.0.0.1 master, so executors get pandas,
#                                Prophet and scikit-learn from it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST=127.0.0.1
MLCORE_HOME="${MLCORE_HOME:-$ROOT/.mlcore}"
[[ "$MLCORE_HOME" == /* ]] || MLCORE_HOME="$PWD/$MLCORE_HOME"  # relative: to the cwd, as mlcore does
CLUSTER_DIR="$MLCORE_HOME/cluster"
MASTER_PORT="${MLCORE_CLUSTER_MASTER_PORT:-7177}"
WEBUI_PORT="${MLCORE_CLUSTER_WEBUI_PORT:-8180}"
WORKERS="${MLCORE_CLUSTER_WORKERS:-2}"
WORKER_CORES="${MLCORE_CLUSTER_WORKER_CORES:-1}"
WORKER_MEMORY="${MLCORE_CLUSTER_WORKER_MEMORY:-2g}"
START_TIMEOUT="${MLCORE_CLUSTER_START_TIMEOUT:-120}"
MASTER_CLASS=org.apache.spark.deploy.master.Master
WORKER_CLASS=org.apache.spark.deploy.worker.Worker
MASTER_URL="spark://$HOST:$MASTER_PORT"
JSON_URL="http://$HOST:$WEBUI_PORT/json/"

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }
die() { echo "local_cluster.sh: $*" >&2; exit 1; }

for value in "$MASTER_PORT" "$WEBUI_PORT" "$WORKERS" "$WORKER_CORES" "$START_TIMEOUT"; do
  [[ "$value" =~ ^[0-9]+$ ]] || die "ports, counts and timeouts must be integers (got '$value')"
done
[[ "$CLUSTER_DIR" != *[[:space:]]* ]] || die "MLCORE_HOME must not contain whitespace: $MLCORE_HOME"

PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON="$(command -v python3 || true)"; fi
fi

components() {
  echo master
  local i
  for ((i = 1; i <= WORKERS; i++)); do echo "worker-$i"; done
}

class_of() { if [[ "$1" == master ]]; then echo "$MASTER_CLASS"; else echo "$WORKER_CLASS"; fi; }

# The pid recorded for a component, if that process is still ours: a live java process running
# the right Spark class with this cluster's marker on its command line. Pids are never trusted
# on their own (the number may have been reused by an unrelated process).
live_pid() {
  local name="$1" file="$CLUSTER_DIR/$1.pid" pid cmdline
  [[ -f "$file" ]] || return 1
  pid="$(tr -dc '0-9' <"$file")"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == java ]] || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ " $cmdline " == *" $(class_of "$name") "* && "$cmdline" == *"-Dmlcore.cluster.dir=$CLUSTER_DIR "* ]] || return 1
  echo "$pid"
}

# Master state as "<alive workers> <url>" from its JSON endpoint (empty when unreachable).
master_state() {
  "$PYTHON" - "$JSON_URL" <<'PY' 2>/dev/null || true
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as response:
        state = json.load(response)
except Exception:
    sys.exit(0)
alive = sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")
print(alive, state.get("url", ""))
PY
}

port_free() {
  "$PYTHON" - "$HOST" "$1" <<'PY'
import socket, sys
s = socket.socket()
# Like the JVM's server sockets: TIME_WAIT leftovers do not count, a listener does.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

spark_class() {
  local pyspark_dir
  pyspark_dir="$("$PYTHON" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))' 2>/dev/null)" \
    || die "pyspark not importable with $PYTHON (run scripts/setup_env.sh, or set PYTHON)"
  [[ -x "$pyspark_dir/bin/spark-class" ]] || die "no bin/spark-class in $pyspark_dir"
  command -v java >/dev/null 2>&1 || [[ -n "${JAVA_HOME:-}" ]] || die "java not found (install Java 17 or set JAVA_HOME)"
  # Always the pip-installed Spark: its version matches the drivers' pyspark.
  export SPARK_HOME="$pyspark_dir"
  echo "$pyspark_dir/bin/spark-class"
}

# Start one component in its own session, detached from this shell; record its pid.
launch() {
  local name="$1" class="$2"; shift 2
  local log="$CLUSTER_DIR/$name.log" pid
  : >"$log"
  if command -v setsid >/dev/null 2>&1; then
    nohup setsid "$SPARK_CLASS" "$class" "$@" </dev/null >>"$log" 2>&1 &
  else
    nohup "$SPARK_CLASS" "$class" "$@" </dev/null >>"$log" 2>&1 &
  fi
  pid=$!
  echo "$pid" >"$CLUSTER_DIR/$name.pid"
  echo "started $name (pid $pid, log $log)"
}

start() {
  mkdir -p "$CLUSTER_DIR"
  local name running=0 total=0
  for name in $(components); do
    total=$((total + 1))
    if live_pid "$name" >/dev/null; then running=$((running + 1)); fi
  done
  local state
  state="$(master_state)"
  if [[ "$running" == "$total" && "${state%% *}" == "$WORKERS" ]]; then
    echo "local cluster already running"
    echo "${state#* }"
    return 0
  fi

  SPARK_CLASS="$(spark_class)"
  export SPARK_LOCAL_IP="$HOST"
  export PYSPARK_PYTHON="$PYTHON"
  export SPARK_DAEMON_MEMORY="${SPARK_DAEMON_MEMORY:-512m}"
  # A port already taken must fail (not silently move to the next one: the URL would be wrong).
  local marker="-Dmlcore.cluster.dir=$CLUSTER_DIR -Dspark.port.maxRetries=0"

  if ! live_pid master >/dev/null; then
    port_free "$MASTER_PORT" || die "port $MASTER_PORT is in use; set MLCORE_CLUSTER_MASTER_PORT"
    port_free "$WEBUI_PORT" || die "port $WEBUI_PORT is in use; set MLCORE_CLUSTER_WEBUI_PORT"
    SPARK_MASTER_OPTS="$marker ${SPARK_MASTER_OPTS:-}" \
      launch master "$MASTER_CLASS" --host "$HOST" --port "$MASTER_PORT" --webui-port "$WEBUI_PORT"
  fi
  for name in $(components); do
    [[ "$name" == master ]] && continue
    live_pid "$name" >/dev/null && continue
    mkdir -p "$CLUSTER_DIR/$name/work"
    SPARK_WORKER_OPTS="$marker ${SPARK_WORKER_OPTS:-}" \
      launch "$name" "$WORKER_CLASS" --host "$HOST" --webui-port 0 --cores "$WORKER_CORES" \
      --memory "$WORKER_MEMORY" --work-dir "$CLUSTER_DIR/$name/work" "$MASTER_URL"
  done

  local deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    state="$(master_state)"
    if [[ "${state%% *}" == "$WORKERS" ]]; then
      echo "local cluster up: $WORKERS workers x $WORKER_CORES core(s), $WORKER_MEMORY; UI http://$HOST:$WEBUI_PORT"
      echo "${state#* }"
      return 0
    fi
    for name in $(components); do
      # Just launched: the pid is still the spark-class shell until it execs java.
      if [[ ! -d "/proc/$(tr -dc '0-9' <"$CLUSTER_DIR/$name.pid")" ]]; then
        tail -n 30 "$CLUSTER_DIR/$name.log" >&2 || true
        die "$name exited during start (log above: $CLUSTER_DIR/$name.log); run '$0 stop' to clean up"
      fi
    done
    sleep 1
  done
  for name in $(components); do tail -n 10 "$CLUSTER_DIR/$name.log" >&2 || true; done
  die "workers not all registered within ${START_TIMEOUT}s (have: ${state%% *}); run '$0 stop' to clean up"
}

status() {
  local name pid all=0
  for name in $(components); do
    if pid="$(live_pid "$name")"; then
      echo "$name: running (pid $pid)"
    else
      echo "$name: stopped"
      all=3
    fi
  done
  local state
  state="$(master_state)"
  if [[ -n "$state" ]]; then
    echo "master url: ${state#* } (${state%% *} alive workers; UI http://$HOST:$WEBUI_PORT)"
  fi
  return "$all"
}

stop_one() {
  local name="$1" file="$CLUSTER_DIR/$1.pid" pid i
  [[ -f "$file" ]] || return 0
  if pid="$(live_pid "$name")"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
      [[ -d "/proc/$pid" ]] || break
      sleep 0.5
    done
    if live_pid "$name" >/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    echo "stopped $name (pid $pid)"
  else
    echo "$name: not running (stale pid file removed)"
  fi
  rm -f "$file"
}

stop() {
  [[ -d "$CLUSTER_DIR" ]] || { echo "local cluster not running (no $CLUSTER_DIR)"; return 0; }
  local name file found=0
  # Workers first (each stops its executors), then the master; also any extra worker pid files
  # left from a start with a larger MLCORE_CLUSTER_WORKERS.
  for file in "$CLUSTER_DIR"/worker-*.pid "$CLUSTER_DIR"/master.pid; do
    [[ -e "$file" ]] || continue
    found=1
    name="$(basename "$file" .pid)"
    stop_one "$name"
  done
  if [[ "$found" == 0 ]]; then echo "local cluster not running (no pid files in $CLUSTER_DIR)"; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  url) echo "$MASTER_URL" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
