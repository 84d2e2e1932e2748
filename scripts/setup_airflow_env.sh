#!/usr/bin/env bash
# A separate virtualenv with a real Apache Airflow, for checking scripts/airflow's DAG the way a
# scheduler loads it (tests/unit/test_deploy_definitions.py). Separate because Airflow pins many
# packages of its own. Re-running is cheap: it installs only when the venv is missing.
#   MLCORE_AIRFLOW_VENV  where the venv lives (default: ./.venv-airflow)
#   PYTHON               the interpreter to build it from (default: python3)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MLCORE_AIRFLOW_VENV:-$ROOT/.venv-airflow}"
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c "import airflow" >/dev/null 2>&1; then
  echo "setup_airflow_env: installing apache-airflow into $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet "apache-airflow>=2.10,<4"
fi
echo "setup_airflow_env: ready ($("$VENV/bin/python" -c 'import airflow; print("airflow", airflow.__version__)' 2>/dev/null))"
