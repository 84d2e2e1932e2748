"""Load scripts/airflow with a real Airflow ``DagBag`` and print what it found, as JSON.

Run with the Python of the Airflow venv (``scripts/setup_airflow_env.sh``), not mlcore's:
``.venv-airflow/bin/python scripts/check_airflow_dag.py``. The DagBag parses the folder as the
scheduler would (import errors and cycles are reported, not raised); each task's bash command
is rendered with the DAG's own template environment for a run whose interval ends on
2015-08-02T02:00Z and no Airflow Variables set. tests/unit/test_deploy_definitions.py compares
the result with mlcore's job catalog.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import types
from datetime import datetime, timezone
from pathlib import Path

FOLDER = Path(__file__).resolve().parent / "airflow"
MARKER = "MLCORE_DAGBAG "


def main() -> int:
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="mlcore-airflow-"))
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag

    import airflow

    bag = DagBag(dag_folder=str(FOLDER))
    interval_end = datetime(2015, 8, 2, 2, 0, tzinfo=timezone.utc)
    variables = types.SimpleNamespace(
        value=types.SimpleNamespace(get=lambda name, default=None: default)
    )
    dags = {}
    for dag_id, dag in bag.dags.items():
        env = dag.get_template_env()
        tasks = {}
        for task in dag.tasks:
            command = env.from_string(task.bash_command).render(
                params={"run_date": None}, data_interval_end=interval_end, var=variables
            )
            tasks[task.task_id] = {
                "upstream": sorted(task.upstream_task_ids),
                "operator": type(task).__name__,
                "retries": task.retries,
                "command": command,
            }
        dags[dag_id] = {
            "tasks": tasks,
            "max_active_runs": dag.max_active_runs,
            "catchup": bool(getattr(dag, "catchup", False)),
        }
    errors = {str(k): str(v) for k, v in bag.import_errors.items()}
    result = {"airflow": airflow.__version__, "import_errors": errors, "dags": dags}
    # Airflow logs to stdout too: the result is the one line that starts with the marker.
    sys.stdout.write("\n" + MARKER + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
