#!/usr/bin/env bash
# Install (if needed) and run the whole test suite: lint, import layers and types, then pytest
# on local Spark.
# Extra arguments go to pytest, e.g.  ./scripts/test.sh -k delta -x
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/setup_env.sh"
"$ROOT/scripts/setup_airflow_env.sh"  # a real Airflow, in its own venv, checks the Airflow DAG
VENV="${MLCORE_VENV:-$ROOT/.venv}"
"$VENV/bin/ruff" check mlcore jobs tests scripts
# Layers point down (jobs -> runner -> pipelines -> serving -> domain -> io/tracking -> config)
# and mlcore/ type-checks: a violation fails the run before any test.
"$VENV/bin/lint-imports" --no-cache scripts/importlinter.ini
"$VENV/bin/mypy" --config-file scripts/mypy.ini
"$VENV/bin/python" -m pytest "$@"
