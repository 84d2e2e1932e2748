#!/usr/bin/env bash
# Install (if needed) and run the whole test suite: lint, then pytest on local Spark.
# Extra arguments go to pytest, e.g.  ./scripts/test.sh -k delta -x
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/setup_env.sh"
"$ROOT/scripts/setup_airflow_env.sh"  # a real Airflow, in its own venv, checks the Airflow DAG
VENV="${MLCORE_VENV:-$ROOT/.venv}"
"$VENV/bin/ruff" check mlcore jobs tests scripts
"$VENV/bin/python" -m pytest "$@"
