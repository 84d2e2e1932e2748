#!/usr/bin/env bash
# Open the MLflow UI on the embedded store ($MLCORE_HOME/mlflow, default .mlcore/mlflow in the checkout).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOME_DIR="${MLCORE_HOME:-$ROOT/.mlcore}"
exec "${MLCORE_VENV:-$ROOT/.venv}/bin/mlflow" ui --backend-store-uri "sqlite:///$HOME_DIR/mlflow/mlflow.db" \
  --host 127.0.0.1 --port "${PORT:-5000}" "$@"
