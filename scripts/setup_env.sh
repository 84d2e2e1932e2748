#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv and install mlcore into it (editable, with the dev
# tools). Re-running is cheap: it reinstalls only when setup.py changed.
#   MLCORE_VENV  where the venv lives (default: ./.venv)
#   PYTHON       the interpreter to build it from (default: python3; 3.10-3.13)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MLCORE_VENV:-$ROOT/.venv}"
BASE_PYTHON="${PYTHON:-python3}"

if ! command -v java >/dev/null 2>&1; then
  echo "setup_env: Java 17 is required by Spark (e.g. apt-get install -y openjdk-17-jre-headless)" >&2
  exit 1
fi
# LightGBM's wheel (the default forecasting family) links the GNU OpenMP runtime.
if command -v ldconfig >/dev/null 2>&1 && ! ldconfig -p | grep -q 'libgomp\.so\.1'; then
  echo "setup_env: LightGBM needs the OpenMP runtime libgomp.so.1 (e.g. apt-get install -y libgomp1)" >&2
  exit 1
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "setup_env: creating $VENV"
  "$BASE_PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.mlcore-installed"
WANT="$(cat "$ROOT/setup.py" | sha256sum | cut -c1-16)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip setuptools wheel
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[dev]"
  echo "$WANT" > "$STAMP"
fi
# Native Delta for embedded Spark: the Delta jars matching the installed pyspark/delta-spark,
# fetched once with Maven into ~/.cache/mlcore/delta (jobs never download). Without them
# (offline, no Maven) everything runs on delta-rs; the jobs' log says which engine and why.
if ! "$VENV/bin/python" -m mlcore.delta_jars show >/dev/null 2>&1; then
  "$VENV/bin/python" -m mlcore.delta_jars fetch --timeout 300 \
    || echo "setup_env: no Delta jars: jobs run on delta-rs (storage.delta_engine auto)" >&2
fi
echo "setup_env: ready ($("$VENV/bin/python" -c 'import mlcore, pyspark; print("mlcore", mlcore.__version__, "pyspark", pyspark.__version__)'))"
