#!/usr/bin/env bash
# Run an mlcore job through spark-submit, locally or on a cluster.
#
#   ./spark-submit.sh [launcher options] <job> [job args...]
#
# Launcher options (before the job name):
#   --master URL           Spark master (default: $MLCORE_SPARK_MASTER, else local[2])
#   --deploy-mode MODE     client (default) or cluster
#   --conf KEY=VALUE       extra Spark conf (repeatable)
#   --with-delta           add the Delta Lake jars and their SQL extension/catalog confs: the
#                          jars scripts/setup_env.sh cached from Maven Central (--jars), else the
#                          derived package through Ivy (--packages; needs Maven Central or a
#                          proxy). Databricks/EMR-with-Delta don't need it
#   --delta-package COORD  Maven coordinate to resolve through Ivy instead (--packages)
#   --archives ARCHIVE     extra archive (repeatable; shipped along with conf.zip), e.g.
#                          venv.tar.gz#environment for native deps (Prophet, numpy), with
#   --python PATH          the executors' Python, e.g. ./environment/bin/python
#   --print-command        print the spark-submit command instead of running it
#
# The package is shipped as dist/mlcore.zip (--py-files) and conf/ as dist/conf.zip
# (--archives ...#conf), so executors and a cluster-mode driver never rely on the submitting
# machine's working directory. Job args (--env, --run-date, --set, --dry-run) pass through.
#
# Which Python runs where:
#   - driver, client mode: this checkout's Python ($PYTHON, else ./.venv/bin/python), set as
#     spark.pyspark.driver.python, so --python only changes the executors';
#   - executors: --python if given; else, for local[*] and for a standalone master on this
#     machine (spark://127.0.0.1:PORT or spark://localhost:PORT, e.g. scripts/local_cluster.sh),
#     the same $PYTHON; else the cluster's default (spark.pyspark.python / PYSPARK_PYTHON there).
#   For a loopback master SPARK_LOCAL_IP defaults to 127.0.0.1 so executors reach the driver.
#
# Native dependencies on a real cluster (nodes without the venv): ship a packed virtualenv as
# an archive (Spark's spark.archives) and point the executors' Python into it:
#
#   python -m venv /tmp/mlcore-pack && /tmp/mlcore-pack/bin/pip install . venv-pack
#   /tmp/mlcore-pack/bin/venv-pack -p /tmp/mlcore-pack -o dist/venv.tar.gz
#   ./spark-submit.sh --master yarn --archives dist/venv.tar.gz#environment \
#       --python ./environment/bin/python train_forecasts --env emr --run-date 2015-06-14
#
# Spark unpacks the archive as ./environment in every executor's working directory, and
# --python sets spark.pyspark.python (= PYSPARK_PYTHON) to ./environment/bin/python. venv-pack
# does not copy the interpreter itself: the nodes need the same Python at the same path (same
# OS and architecture as where it was packed); conda-pack (`conda pack -o env.tar.gz`) packs a
# self-contained interpreter instead. In YARN/Kubernetes cluster mode the driver uses the same
# ./environment/bin/python. Spark standalone has no cluster deploy mode for Python apps.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The job imports mlcore from dist/mlcore.zip, which knows no checkout: the checkout's .mlcore
# stays the default home, as for python jobs/<job>.py (a cluster env sets its own).
export MLCORE_HOME="${MLCORE_HOME:-$ROOT/.mlcore}"
MASTER="${MLCORE_SPARK_MASTER:-local[2]}"
DEPLOY_MODE="client"
WITH_DELTA=0
DELTA_PACKAGE=""
PRINT_ONLY=0
EXECUTOR_PYTHON=""
USER_ARCHIVES=()
EXTRA=()

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --master) MASTER="$2"; shift 2 ;;
    --deploy-mode) DEPLOY_MODE="$2"; shift 2 ;;
    --conf) EXTRA+=(--conf "$2"); shift 2 ;;
    --with-delta) WITH_DELTA=1; shift ;;
    --delta-package) DELTA_PACKAGE="$2"; WITH_DELTA=1; shift 2 ;;
    --archives) USER_ARCHIVES+=("$2"); shift 2 ;;
    --python) EXECUTOR_PYTHON="$2"; shift 2 ;;
    --print-command) PRINT_ONLY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "spark-submit.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done

if [[ $# -lt 1 ]]; then usage >&2; exit 2; fi
JOB="$1"; shift
if [[ ! "$JOB" =~ ^[a-z][a-z0-9_]*$ || ! -f "$ROOT/jobs/$JOB.py" ]]; then
  echo "spark-submit.sh: unknown job '$JOB'; jobs: $(cd "$ROOT/jobs" && ls *.py | sed 's/\.py$//' | tr '\n' ' ')" >&2
  exit 2
fi
if [[ "$DEPLOY_MODE" != "client" && "$DEPLOY_MODE" != "cluster" ]]; then
  echo "spark-submit.sh: --deploy-mode must be client or cluster" >&2; exit 2
fi

PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON="$(command -v python3)"; fi
fi

# spark-submit: $SPARK_HOME, else the pip-installed pyspark's, else PATH.
if [[ -n "${SPARK_HOME:-}" && -x "$SPARK_HOME/bin/spark-submit" ]]; then
  SUBMIT="$SPARK_HOME/bin/spark-submit"
elif PYSPARK_DIR="$("$PYTHON" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))' 2>/dev/null)" \
     && [[ -x "$PYSPARK_DIR/bin/spark-submit" ]]; then
  SUBMIT="$PYSPARK_DIR/bin/spark-submit"
else
  SUBMIT="$(command -v spark-submit || true)"
fi
if [[ -z "$SUBMIT" ]]; then echo "spark-submit.sh: spark-submit not found (install pyspark or set SPARK_HOME)" >&2; exit 2; fi

# Build the shipped artifacts (pure Python package + conf) fresh each time.
DIST="$ROOT/dist"
mkdir -p "$DIST"
"$PYTHON" - "$ROOT" "$DIST" <<'PY'
import sys, zipfile
from pathlib import Path
root, dist = Path(sys.argv[1]), Path(sys.argv[2])
def build(target, base, folder, skip=("__pycache__",)):
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((base / folder).rglob("*")):
            if path.is_file() and not any(part in skip for part in path.parts):
                zf.write(path, path.relative_to(base))
    tmp.replace(target)
build(dist / "mlcore.zip", root, "mlcore")
# conf.zip unpacks to ./conf on every node (the archive is extracted into a folder named conf).
tmp = dist / "conf.tmp"
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
    for path in sorted((root / "conf").rglob("*.y*ml")):
        zf.write(path, path.relative_to(root / "conf"))
tmp.replace(dist / "conf.zip")
PY

# spark-submit keeps only the last --archives: conf.zip and the user's go in one list.
ARCHIVES="$DIST/conf.zip#conf"
for archive in "${USER_ARCHIVES[@]+"${USER_ARCHIVES[@]}"}"; do ARCHIVES+=",$archive"; done
ARGS=(--master "$MASTER" --deploy-mode "$DEPLOY_MODE" --name "mlcore-$JOB"
      --py-files "$DIST/mlcore.zip" --archives "$ARCHIVES"
      --conf spark.sql.session.timeZone=UTC
      --conf spark.sql.execution.arrow.pyspark.enabled=true)
LOOPBACK_MASTER=0
if [[ "$MASTER" =~ ^spark://(127\.0\.0\.1|localhost)(:[0-9]+)?$ ]]; then LOOPBACK_MASTER=1; fi
if [[ -z "$EXECUTOR_PYTHON" && ( "$MASTER" == local* || "$LOOPBACK_MASTER" == 1 ) ]]; then
  # Executors on this machine: the same interpreter (and so the venv's pandas, Prophet, ...).
  EXECUTOR_PYTHON="$PYTHON"
fi
if [[ "$LOOPBACK_MASTER" == 1 ]]; then
  # The driver must advertise an address the local workers' executors can reach.
  export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
fi
if [[ "$DEPLOY_MODE" == "client" ]]; then
  # The driver runs here, whatever Python the executors get.
  export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$PYTHON}"
  ARGS+=(--conf "spark.pyspark.driver.python=$PYSPARK_DRIVER_PYTHON")
fi
if [[ -n "$EXECUTOR_PYTHON" ]]; then
  export PYSPARK_PYTHON="$EXECUTOR_PYTHON"
  ARGS+=(--conf "spark.pyspark.python=$EXECUTOR_PYTHON")
fi
if [[ "$MASTER" == local* ]]; then
  # Driver and executors share this machine's cores: C1 JIT only, as conf/local does (C2's
  # compiler threads otherwise compete with the Python workers). A --conf given here wins.
  ARGS+=(--conf "spark.driver.extraJavaOptions=-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=512m")
fi
CACHED_DELTA_JARS=""
if [[ "$WITH_DELTA" == 1 && -z "$DELTA_PACKAGE" ]]; then
  # The jars setup_env.sh fetched once with Maven (Ivy may not reach the registry, and the
  # pip delta-spark version may not be published as a jar): no download on every submit.
  CACHED_DELTA_JARS="$("$PYTHON" -m mlcore.delta_jars jars 2>/dev/null || true)"
fi
if [[ -n "$CACHED_DELTA_JARS" ]]; then
  ARGS+=(--jars "$CACHED_DELTA_JARS"
         --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension
         --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog)
elif [[ "$WITH_DELTA" == 1 ]]; then
  if [[ -z "$DELTA_PACKAGE" ]]; then
    DELTA_PACKAGE="$("$PYTHON" - <<'PY'
import importlib.metadata as md
spark = ".".join(md.version("pyspark").split(".")[:2])
delta = md.version("delta-spark")
# Delta 4.x artifacts carry the Spark version; 3.x did not.
print(f"io.delta:delta-spark_{spark}_2.13:{delta}" if int(delta.split(".")[0]) >= 4 else f"io.delta:delta-spark_2.13:{delta}")
PY
)"
  fi
  ARGS+=(--packages "$DELTA_PACKAGE"
         --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension
         --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog)
fi
ARGS+=("${EXTRA[@]+"${EXTRA[@]}"}")

JOB_ARGS=("$@")
# In client mode the driver reads conf/ from this checkout unless the job says otherwise.
if [[ "$DEPLOY_MODE" == "client" && ! " ${JOB_ARGS[*]-} " =~ " --conf-dir " ]]; then
  JOB_ARGS=(--conf-dir "$ROOT/conf" "${JOB_ARGS[@]+"${JOB_ARGS[@]}"}")
fi

CMD=("$SUBMIT" "${ARGS[@]}" "$ROOT/jobs/$JOB.py" "${JOB_ARGS[@]+"${JOB_ARGS[@]}"}")
if [[ "$PRINT_ONLY" == 1 ]]; then
  printf '%q ' "${CMD[@]}"; echo
  exit 0
fi
exec "${CMD[@]}"
