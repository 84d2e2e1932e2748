#!/usr/bin/env bash
# Install everything and run the demo pipeline end to end on the embedded default:
# local Spark, Delta tables under $MLCORE_HOME/lake, MLflow (sqlite) under $MLCORE_HOME/mlflow.
# Uses the real datasets in ../shared/datasets when present, synthetic data otherwise.
#   RUN_DATE     the run date for every job (default 2015-06-14)
#   MLCORE_HOME  local state (default ./.mlcore)
#   extra arguments are passed to every job, e.g.  ./scripts/demo.sh --set ingest.limit_rows=100000
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/setup_env.sh"
PY="${MLCORE_VENV:-$ROOT/.venv}/bin/python"
RUN_DATE="${RUN_DATE:-2015-06-14}"
export MLCORE_HOME="${MLCORE_HOME:-$ROOT/.mlcore}"

for job in ingest_sales ingest_bank ingest_rides; do
  echo ">>> $job --run-date $RUN_DATE"
  "$PY" "jobs/$job.py" --env local --run-date "$RUN_DATE" "$@"
done
echo
echo "Done. Tables: $MLCORE_HOME/lake   MLflow UI: ./scripts/mlflow_ui.sh"
