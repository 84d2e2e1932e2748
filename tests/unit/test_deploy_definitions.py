"""The deployment definitions under scripts/: the Databricks asset bundle, the EMR steps (and
add_steps.sh) and the Airflow DAG all run the same nightly chain, each task a real job with the
run date and the cluster env passed, and the package shipped the way the job needs it. The bundle
also has mlcore_nightly_single, an unscheduled one-task job running mlcore's own chain
(run_pipeline)."""

from __future__ import annotations

import ast
import graphlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import types
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlcore.config.loader import load_config
from mlcore.job_catalog import JOBS, step_inputs, step_needs, step_outputs
from mlcore.runner import build_parser
from tests.conftest import CONF_DIR, REPO_ROOT

# The nightly chain every definition must run: job -> the jobs it waits for.
#
#   ingest_sales ─┐
#   ingest_bank ──┼─> validate_inputs -> train_forecasts -> make_forecasts -> score_batch -> monitor_drift
#   ingest_rides ─┘
NIGHTLY_UPSTREAM: dict[str, set[str]] = {
    "ingest_sales": set(),
    "ingest_bank": set(),
    "ingest_rides": set(),
    "validate_inputs": {"ingest_sales", "ingest_bank", "ingest_rides"},
    "train_forecasts": {"validate_inputs"},
    "make_forecasts": {"train_forecasts"},
    "score_batch": {"make_forecasts"},
    "monitor_drift": {"score_batch"},
}

BUNDLE_DIR = REPO_ROOT / "scripts" / "databricks"
EMR_DIR = REPO_ROOT / "scripts" / "emr"
ADD_STEPS = EMR_DIR / "add_steps.sh"
DAG_FILE = REPO_ROOT / "scripts" / "airflow" / "mlcore_nightly_dag.py"
SPARK_SUBMIT = REPO_ROOT / "spark-submit.sh"

RUN_DATE = date(2015, 8, 1)
DELTA_CONFS = [
    "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
]
# The launcher options the EMR steps (and the Airflow default) correspond to:
#   ./spark-submit.sh --master yarn --deploy-mode cluster --conf ... <job> --env emr --run-date D
EMR_LAUNCHER = [
    "--master",
    "yarn",
    "--deploy-mode",
    "cluster",
    "--conf",
    "spark.scheduler.mode=FAIR",
]
EMR_LAUNCHER += [token for conf in DELTA_CONFS for token in ("--conf", conf)]


def check_nightly_graph(upstream: dict[str, set[str]], where: str) -> list[str]:
    """Assert ``upstream`` is the nightly chain over real jobs; return a topological order."""
    unknown = sorted(job for job in upstream if job not in JOBS)
    assert not unknown, f"{where}: not jobs of mlcore.job_catalog.JOBS: {unknown}"
    dangling = {
        job: deps - upstream.keys() for job, deps in upstream.items() if deps - upstream.keys()
    }
    assert not dangling, f"{where}: depends on tasks that do not exist: {dangling}"
    try:
        order = list(graphlib.TopologicalSorter(upstream).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"{where}: dependency cycle {exc.args[1]}") from None
    assert upstream == NIGHTLY_UPSTREAM, f"{where}: task graph differs from the nightly chain"
    check_declared_io(upstream, where)
    return order


def check_declared_io(upstream: dict[str, set[str]], where: str) -> None:
    """Every task runs after the tasks that write what it needs (mlcore.job_catalog's declared
    IO), and after a gate that checks a table it reads: the declared IO is what a deployment's
    task graph is checked against."""
    config = load_config("test", CONF_DIR)

    def ancestors(job: str) -> set[str]:
        found: set[str] = set()
        todo = list(upstream[job])
        while todo:
            parent = todo.pop()
            if parent not in found:
                found.add(parent)
                todo.extend(upstream[parent])
        return found

    for job in upstream:
        before = ancestors(job)
        for other in upstream:
            if other == job:
                continue
            written = step_outputs(other, config) & step_needs(job, config)
            gated = step_inputs(other, config) & step_inputs(job, config) if JOBS[other].gate else set()
            assert not (written or gated) or other in before, (
                f"{where}: {job} needs {sorted(written or gated)} from {other}, which does not run "
                "before it"
            )


def test_graph_check_rejects_wrong_graphs():
    """The helper the definitions are checked with fails on what it must catch."""
    check_nightly_graph(dict(NIGHTLY_UPSTREAM), "reference")
    with pytest.raises(AssertionError, match="not jobs"):
        check_nightly_graph({**NIGHTLY_UPSTREAM, "rm_rf": set()}, "x")
    with pytest.raises(AssertionError, match="cycle"):
        check_nightly_graph({**NIGHTLY_UPSTREAM, "ingest_sales": {"monitor_drift"}}, "x")
    with pytest.raises(AssertionError, match="do not exist"):
        check_nightly_graph({**NIGHTLY_UPSTREAM, "score_batch": {"make_forecast"}}, "x")
    with pytest.raises(AssertionError, match="differs"):
        check_nightly_graph({**NIGHTLY_UPSTREAM, "monitor_drift": {"make_forecasts"}}, "x")
    swapped = {**NIGHTLY_UPSTREAM, "make_forecasts": {"validate_inputs"}, "train_forecasts": {"make_forecasts"}}
    with pytest.raises(AssertionError, match=r"make_forecasts needs \['forecast_models', 'model:store_forecaster'\] from train_forecasts"):
        check_declared_io(swapped, "x")


# ----------------------------------------------------------------------------------------------
# Databricks asset bundle
# ----------------------------------------------------------------------------------------------
def load_bundle() -> tuple[dict[str, Any], dict[str, Path]]:
    """databricks.yml plus its included resource files; also where each job was defined."""
    root = yaml.safe_load((BUNDLE_DIR / "databricks.yml").read_text())
    jobs: dict[str, Any] = dict(root.get("resources", {}).get("jobs", {}))
    defined_in = {name: BUNDLE_DIR / "databricks.yml" for name in jobs}
    for pattern in root.get("include", []):
        for path in sorted(BUNDLE_DIR.glob(pattern)):
            part = yaml.safe_load(path.read_text())
            for name, job in part.get("resources", {}).get("jobs", {}).items():
                assert name not in jobs, f"job {name} defined twice"
                jobs[name] = job
                defined_in[name] = path
    root.setdefault("resources", {})["jobs"] = jobs
    return root, defined_in


def resolve_variables(value: Any, bundle: dict[str, Any], target: str) -> Any:
    """Substitute ``${var.name}`` the way the CLI does: target override, else the default."""
    overrides = bundle["targets"][target].get("variables", {}) or {}
    defaults = bundle.get("variables", {})

    def lookup(match: re.Match) -> str:
        name = match.group(1)
        assert name in defaults, f"undefined bundle variable {name!r}"
        override = overrides.get(name)
        return str(override if override is not None else defaults[name].get("default"))

    if isinstance(value, str):
        return re.sub(r"\$\{var\.([A-Za-z0-9_]+)\}", lookup, value)
    if isinstance(value, list):
        return [resolve_variables(v, bundle, target) for v in value]
    if isinstance(value, dict):
        return {k: resolve_variables(v, bundle, target) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def bundle() -> tuple[dict[str, Any], dict[str, Path]]:
    return load_bundle()


@pytest.fixture(scope="module")
def nightly(bundle) -> dict[str, Any]:
    jobs = bundle[0]["resources"]["jobs"]
    assert "mlcore_nightly" in jobs, f"bundle jobs: {sorted(jobs)}"
    return jobs["mlcore_nightly"]


def task_job(task: dict[str, Any]) -> str:
    params = task["python_wheel_task"]["parameters"]
    assert params[0] == "run", "the console script's 'run' subcommand"
    return params[1]


def check_wheel_task_args(params: list[str]) -> str:
    """``run <job> --env databricks --conf-dir <synced conf> --run-date <run_date param>``, which
    the job's own parser accepts; returns the job."""
    assert params[0] == "run", "the console script's 'run' subcommand"
    job, args = params[1], params[2:]
    assert job in JOBS, f"not a job of mlcore.job_catalog.JOBS: {job}"
    assert args[args.index("--run-date") + 1] == "{{job.parameters.run_date}}"
    assert args[args.index("--env") + 1] == "databricks"
    assert args[args.index("--conf-dir") + 1] == "${workspace.file_path}/conf"
    assert (CONF_DIR / "databricks").is_dir()
    concrete = [a.replace("{{job.parameters.run_date}}", RUN_DATE.isoformat()) for a in args]
    parsed = build_parser(job).parse_args(concrete)
    assert (parsed.env, parsed.run_date) == ("databricks", RUN_DATE)
    return job


def test_bundle_targets_dev_and_prod(bundle):
    config = bundle[0]
    assert config["bundle"]["name"] == "mlcore"
    targets = config["targets"]
    assert targets["dev"]["mode"] == "development" and targets["dev"].get("default") is True
    prod = targets["prod"]
    assert prod["mode"] == "production"
    assert prod["workspace"]["host"].startswith("https://")
    prod_root = resolve_variables(prod["workspace"]["root_path"], config, "prod")
    dev_root = config["workspace"]["root_path"]
    assert prod_root.startswith("/Workspace/") and dev_root.startswith("/Workspace/")
    assert prod_root != dev_root, "prod deploys to its own folder"
    assert "${workspace.current_user.userName}" not in prod_root, "one shared prod copy"


def test_bundle_builds_the_wheel_and_syncs_conf(bundle):
    config = bundle[0]
    (artifact,) = config["artifacts"].values()
    assert artifact["type"] == "whl"
    assert "setup.py bdist_wheel" in artifact["build"]
    assert (BUNDLE_DIR / artifact["path"]).resolve() == REPO_ROOT
    assert (REPO_ROOT / "setup.py").is_file()
    assert "mlcore=mlcore.cli:main" in (REPO_ROOT / "setup.py").read_text(), "console script"
    synced = [(BUNDLE_DIR / p).resolve() for p in config["sync"]["paths"]]
    assert REPO_ROOT / "conf" in synced, "conf/ is not in the wheel: the bundle must sync it"


def test_bundle_job_runs_the_nightly_chain(nightly):
    tasks = nightly["tasks"]
    keys = [t["task_key"] for t in tasks]
    assert len(keys) == len(set(keys)), "duplicate task keys"
    for task in tasks:
        assert task_job(task) == task["task_key"], "task key names the job it runs"
    upstream = {t["task_key"]: {d["task_key"] for d in t.get("depends_on", [])} for t in tasks}
    check_nightly_graph(upstream, "databricks bundle")


def test_bundle_tasks_run_the_wheel_with_run_date_and_databricks_env(bundle, nightly):
    config, defined_in = bundle
    (param,) = [p for p in nightly["parameters"] if p["name"] == "run_date"]
    assert param["default"] == "{{job.start_time.iso_date}}"
    clusters = {c["job_cluster_key"] for c in nightly["job_clusters"]}
    resource_dir = defined_in["mlcore_nightly"].parent
    for target in ("dev", "prod"):
        for task in resolve_variables(nightly["tasks"], config, target):
            wheel = task["python_wheel_task"]
            assert (wheel["package_name"], wheel["entry_point"]) == ("mlcore", "mlcore")
            assert task["job_cluster_key"] in clusters
            libraries = [(resource_dir / lib["whl"]).resolve() for lib in task["libraries"]]
            assert REPO_ROOT / "dist" / "*.whl" in libraries, "the built wheel is attached"
            check_wheel_task_args(wheel["parameters"])


def test_bundle_cluster_runs_spark_4_with_fair_scheduling(bundle, nightly):
    config = bundle[0]
    (cluster,) = resolve_variables(nightly["job_clusters"], config, "prod")
    spark_version = cluster["new_cluster"]["spark_version"]
    match = re.fullmatch(r"(\d+)\.(\d+)\.x-scala2\.1[23]", spark_version)
    assert match, f"not a Databricks Runtime version string: {spark_version}"
    assert int(match.group(1)) >= 17, "mlcore needs Spark 4: Databricks Runtime 17 or later"
    assert nightly["job_clusters"][0]["new_cluster"]["spark_version"] == "${var.spark_version}"
    spark_conf = cluster["new_cluster"]["spark_conf"]
    assert spark_conf["spark.scheduler.mode"] == "FAIR", "score_batch's concurrent scorers"
    assert spark_conf["spark.sql.session.timeZone"] == "UTC"


def test_bundle_single_task_job_runs_run_pipeline_unscheduled(bundle, nightly):
    """mlcore_nightly_single: mlcore's own resumable chain as one task, started by hand only."""
    config, defined_in = bundle
    jobs = config["resources"]["jobs"]
    assert "mlcore_nightly_single" in jobs, f"bundle jobs: {sorted(jobs)}"
    single = jobs["mlcore_nightly_single"]
    assert "continuous" not in single, "a continuous job would run without being started"
    for target in ("dev", "prod"):
        resolved = resolve_variables(single, config, target)
        for trigger in ("schedule", "trigger"):
            if trigger in resolved:
                assert resolved[trigger].get("pause_status") == "PAUSED", (
                    f"mlcore_nightly_single's {trigger} runs in {target}: only mlcore_nightly "
                    "is scheduled"
                )
    assert single["max_concurrent_runs"] == 1
    (param,) = [p for p in single["parameters"] if p["name"] == "run_date"]
    assert param["default"] == "{{job.start_time.iso_date}}"
    assert single["job_clusters"] == nightly["job_clusters"], "the same cluster as the chain"
    (task,) = single["tasks"]
    assert "depends_on" not in task
    assert task["task_key"] == "run_pipeline"
    assert task["job_cluster_key"] in {c["job_cluster_key"] for c in single["job_clusters"]}
    resource_dir = defined_in["mlcore_nightly_single"].parent
    for target in ("dev", "prod"):
        resolved_task = resolve_variables(task, config, target)
        wheel = resolved_task["python_wheel_task"]
        assert (wheel["package_name"], wheel["entry_point"]) == ("mlcore", "mlcore")
        libraries = [(resource_dir / lib["whl"]).resolve() for lib in resolved_task["libraries"]]
        assert REPO_ROOT / "dist" / "*.whl" in libraries, "the built wheel is attached"
        assert check_wheel_task_args(wheel["parameters"]) == "run_pipeline"
    # Apart from the job, the same arguments as every task of the multi-task chain.
    chain_args = nightly["tasks"][0]["python_wheel_task"]["parameters"][2:]
    assert task["python_wheel_task"]["parameters"][2:] == chain_args


def test_conf_databricks_uses_native_delta_and_workspace_mlflow():
    from mlcore.config.loader import load_config

    config = load_config("databricks", conf_dir=CONF_DIR)
    assert config.storage.delta_engine == "spark"
    assert config.mlflow.tracking_uri == "databricks"
    assert config.mlflow.registry_uri == "databricks-uc"


def test_bundle_variables_are_all_defined(bundle):
    config = bundle[0]
    text = "\n".join(
        p.read_text() for p in [BUNDLE_DIR / "databricks.yml", *BUNDLE_DIR.glob("resources/*.yml")]
    )
    used = set(re.findall(r"\$\{var\.([A-Za-z0-9_]+)\}", text))
    assert used and used <= set(config["variables"]), (
        f"undefined: {used - set(config['variables'])}"
    )


# ----------------------------------------------------------------------------------------------
# EMR
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def emr_steps() -> list[dict[str, Any]]:
    return json.loads((EMR_DIR / "steps.json").read_text())


def step_job(step: dict[str, Any]) -> str:
    scripts = [a for a in step["Args"] if a.startswith("${CODE_URI}/jobs/")]
    assert len(scripts) == 1, step["Args"]
    return Path(scripts[0]).stem


def option(args: list[str], flag: str) -> str:
    assert args.count(flag) == 1, f"{flag} in {args}"
    return args[args.index(flag) + 1]


def test_emr_steps_run_the_chain_in_order(emr_steps):
    jobs = [step_job(s) for s in emr_steps]
    assert len(jobs) == len(set(jobs))
    assert set(jobs) == set(NIGHTLY_UPSTREAM)
    check_nightly_graph({job: NIGHTLY_UPSTREAM[job] for job in jobs}, "emr steps")
    for position, job in enumerate(jobs):
        assert NIGHTLY_UPSTREAM[job] <= set(jobs[:position]), f"{job} runs before its inputs"


def test_emr_steps_spark_submit_the_shipped_package(emr_steps):
    for step in emr_steps:
        assert (step["Type"], step["Jar"]) == ("CUSTOM_JAR", "command-runner.jar")
        assert step["ActionOnFailure"] in ("CANCEL_AND_WAIT", "TERMINATE_CLUSTER"), "chain stops"
        args = step["Args"]
        assert args[0] == "spark-submit"
        assert option(args, "--master") == "yarn" and option(args, "--deploy-mode") == "cluster"
        assert option(args, "--py-files") == "${CODE_URI}/dist/mlcore.zip"
        assert option(args, "--archives") == "${CODE_URI}/dist/conf.zip#conf"
        job_args = args[args.index(f"${{CODE_URI}}/jobs/{step_job(step)}.py") + 1 :]
        assert job_args == ["--env", "emr", "--run-date", "${RUN_DATE}"]
        assert "${RUN_DATE}" in step["Name"]


def _print_command(*args: str) -> list[str]:
    done = subprocess.run(
        [str(SPARK_SUBMIT), "--print-command", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return shlex.split(done.stdout)


def test_emr_steps_match_spark_submit_sh(emr_steps):
    """Each step is ./spark-submit.sh's own command with the checkout's paths moved to S3."""
    checked = 0
    for step in emr_steps:
        job = step_job(step)
        assert job in JOBS, f"step {job}: not a job of mlcore.job_catalog.JOBS"
        assert (REPO_ROOT / "jobs" / f"{job}.py").is_file(), f"jobs/{job}.py missing"
        argv = _print_command(*EMR_LAUNCHER, job, "--env", "emr", "--run-date", "${RUN_DATE}")
        expected = ["spark-submit"] + [
            a.replace(f"{REPO_ROOT}/dist/", "${CODE_URI}/dist/").replace(
                f"{REPO_ROOT}/jobs/", "${CODE_URI}/jobs/"
            )
            for a in argv[1:]
        ]
        assert step["Args"] == expected, f"step {job} drifted from ./spark-submit.sh"
        checked += 1
    assert checked == len(emr_steps) == len(NIGHTLY_UPSTREAM)


def test_emr_delta_confs_are_the_ones_with_delta_adds():
    argv = _print_command("--with-delta", "ingest_bank", "--env", "emr")
    added = [argv[i + 1] for i, token in enumerate(argv) if token == "--conf"]
    assert set(DELTA_CONFS) <= set(added)


def _add_steps(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("MLCORE_CODE_URI", "AWS_CLI")}
    return subprocess.run(
        ["bash", str(ADD_STEPS), *args],
        capture_output=True,
        text=True,
        env={**environ, **(env or {})},
        timeout=60,
    )


def _dry_run_steps(stdout: str) -> list[dict[str, Any]]:
    body = stdout.split("# steps", 1)[1].split("\n", 1)[1].split("# command:", 1)[0]
    return json.loads(body)


def test_add_steps_dry_run_prints_the_substituted_steps(emr_steps):
    done = _add_steps(
        "j-TESTCLUSTER1", "2015-08-01", "--code-uri", "s3://bucket/code/v1/", "--dry-run"
    )
    assert done.returncode == 0, done.stderr
    steps = _dry_run_steps(done.stdout)
    assert [step_job_s3(s) for s in steps] == [step_job(s) for s in emr_steps]
    text = json.dumps(steps)
    assert "${" not in text
    for step in steps:
        assert option(step["Args"], "--run-date") == "2015-08-01"
        assert option(step["Args"], "--py-files") == "s3://bucket/code/v1/dist/mlcore.zip"
    command = shlex.split(done.stdout.split("# command:", 1)[1])
    assert command[:5] == ["aws", "emr", "add-steps", "--cluster-id", "j-TESTCLUSTER1"]
    assert command[5] == "--steps" and command[6].startswith("file://")


def step_job_s3(step: dict[str, Any]) -> str:
    (script,) = [a for a in step["Args"] if a.endswith(".py")]
    return Path(script).stem


def test_add_steps_calls_aws_emr_add_steps(tmp_path):
    """Without --dry-run the script hands the substituted file to `aws emr add-steps`."""
    record = tmp_path / "calls.jsonl"
    fake_aws = tmp_path / "aws"
    fake_aws.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        "args = sys.argv[1:]\n"
        "steps = open(args[args.index('--steps') + 1][len('file://'):]).read()\n"
        f"open({str(record)!r}, 'a').write(json.dumps({{'args': args, 'steps': steps}}) + '\\n')\n"
    )
    fake_aws.chmod(0o755)
    done = _add_steps(
        "j-TESTCLUSTER1",
        "2015-08-01",
        env={"AWS_CLI": str(fake_aws), "MLCORE_CODE_URI": "s3://b/c"},
    )
    assert done.returncode == 0, done.stderr
    (call,) = [json.loads(line) for line in record.read_text().splitlines()]
    assert call["args"][:4] == ["emr", "add-steps", "--cluster-id", "j-TESTCLUSTER1"]
    steps = json.loads(call["steps"])
    assert len(steps) == len(NIGHTLY_UPSTREAM)
    assert all(option(s["Args"], "--archives") == "s3://b/c/dist/conf.zip#conf" for s in steps)


def test_add_steps_errors(tmp_path):
    missing_cli = _add_steps(
        "j-TESTCLUSTER1",
        "2015-08-01",
        env={"AWS_CLI": str(tmp_path / "no-aws"), "MLCORE_CODE_URI": "s3://b/c"},
    )
    assert missing_cli.returncode == 127 and "aws CLI not found" in missing_cli.stderr
    no_code = _add_steps("j-TESTCLUSTER1", "2015-08-01")
    assert no_code.returncode == 2 and "--code-uri" in no_code.stderr
    for bad in (("cluster", "2015-08-01"), ("j-TEST", "2015-8-1"), ("j-TEST", "2015-02-31x")):
        done = _add_steps(*bad, "--dry-run")
        assert done.returncode == 2 and "invalid" in done.stderr, bad
    injected = _add_steps("j-TEST", "2015-08-01", "--code-uri", "s3://b/c|x", "--dry-run")
    assert injected.returncode == 2 and "invalid code uri" in injected.stderr
    assert _add_steps("j-TEST", "--dry-run").returncode == 2, "both positional arguments needed"


# ----------------------------------------------------------------------------------------------
# Airflow
# ----------------------------------------------------------------------------------------------
def _dag_module_ast() -> ast.Module:
    return ast.parse(DAG_FILE.read_text(), filename=str(DAG_FILE))


def _literal(module: ast.Module, name: str) -> Any:
    for node in module.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is not assigned at the top level of {DAG_FILE.name}")


def test_airflow_dag_file_structure_without_importing_airflow():
    module = _dag_module_ast()
    upstream = {job: set(deps) for job, deps in _literal(module, "UPSTREAM").items()}
    check_nightly_graph(upstream, "airflow DAG")
    assert _literal(module, "DEFAULT_ENV") == "emr"
    assert _literal(module, "DAG_ID") == "mlcore_nightly"
    run_date = _literal(module, "RUN_DATE")
    assert "data_interval_end | ds" in run_date and "params.run_date" in run_date
    # Importing the file does no work besides building the DAG: top-level statements are
    # imports, definitions, plain assignments and the `with DAG(...)` block.
    allowed = (
        ast.Import,
        ast.ImportFrom,
        ast.Try,
        ast.FunctionDef,
        ast.Assign,
        ast.AnnAssign,
        ast.With,
    )
    for node in module.body[1:]:  # [0] is the docstring
        assert isinstance(node, allowed), f"top-level {type(node).__name__} at line {node.lineno}"
    (with_block,) = [n for n in module.body if isinstance(n, ast.With)]
    assert ast.unparse(with_block.items[0].context_expr.func) == "DAG"
    calls = {ast.unparse(n.func) for n in ast.walk(with_block) if isinstance(n, ast.Call)}
    assert "BashOperator" in calls
    assert any(
        isinstance(n, ast.BinOp) and isinstance(n.op, ast.RShift) for n in ast.walk(with_block)
    )


class _StubTask:
    def __init__(self, task_id: str, bash_command: str, **kwargs: Any) -> None:
        self.task_id = task_id
        self.bash_command = bash_command
        self.upstream_task_ids: set[str] = set()
        _StubDag.current.tasks[task_id] = self

    def __rshift__(self, other: _StubTask) -> _StubTask:
        other.upstream_task_ids.add(self.task_id)
        return other


class _StubDag:
    current: _StubDag

    def __init__(self, dag_id: str, **kwargs: Any) -> None:
        self.dag_id = dag_id
        self.kwargs = kwargs
        self.tasks: dict[str, _StubTask] = {}

    def __enter__(self) -> _StubDag:
        _StubDag.current = self
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _exec_dag_with_stub_airflow(monkeypatch) -> types.ModuleType:
    """Run the DAG file against a stand-in airflow: the real construction code, no Airflow."""
    sdk = types.ModuleType("airflow.sdk")
    sdk.DAG = _StubDag
    bash = types.ModuleType("airflow.providers.standard.operators.bash")
    bash.BashOperator = _StubTask
    for name, module in {
        "airflow": types.ModuleType("airflow"),
        "airflow.sdk": sdk,
        "airflow.providers": types.ModuleType("airflow.providers"),
        "airflow.providers.standard": types.ModuleType("airflow.providers.standard"),
        "airflow.providers.standard.operators": types.ModuleType(
            "airflow.providers.standard.operators"
        ),
        "airflow.providers.standard.operators.bash": bash,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("mlcore_nightly_dag_stubbed", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _render(template: str, variables: dict[str, str], **context: Any) -> str:
    jinja2 = pytest.importorskip("jinja2")

    class _Values:
        @staticmethod
        def get(name: str, default: str | None = None) -> str | None:
            return variables.get(name, default)

    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["ds"] = lambda value: value.strftime("%Y-%m-%d")
    return env.from_string(template).render(var=types.SimpleNamespace(value=_Values), **context)


def test_airflow_dag_graph_and_commands_with_stub_airflow(monkeypatch):
    module = _exec_dag_with_stub_airflow(monkeypatch)
    dag = module.dag
    assert isinstance(dag, _StubDag) and dag.dag_id == "mlcore_nightly"
    assert dag.kwargs["default_args"]["retries"] >= 1
    assert dag.kwargs["catchup"] is False and dag.kwargs["max_active_runs"] == 1
    upstream = {task_id: task.upstream_task_ids for task_id, task in dag.tasks.items()}
    check_nightly_graph(upstream, "airflow DAG (stub)")
    interval_end = datetime(2015, 8, 2, 2, 0, tzinfo=timezone.utc)
    for job, task in dag.tasks.items():
        command = _render(
            task.bash_command, {}, params={"run_date": None}, data_interval_end=interval_end
        )
        argv = shlex.split(command)
        assert argv[:3] == ["cd", "/opt/mlcore", "&&"] and argv[3] == "./spark-submit.sh"
        job_at = argv.index(job)
        assert argv[4:job_at] == EMR_LAUNCHER, "same launcher options as the EMR steps"
        assert argv[job_at + 1 :] == ["--env", "emr", "--run-date", "2015-08-02"]
        override = _render(
            task.bash_command,
            {"mlcore_env": "prod"},
            params={"run_date": "2015-01-05"},
            data_interval_end=interval_end,
        )
        assert override.endswith(f"{job} --env prod --run-date 2015-01-05")


def test_airflow_rendered_command_is_accepted_by_spark_submit_sh(monkeypatch):
    """The rendered command, pointed at this checkout and told to print only, is valid."""
    module = _exec_dag_with_stub_airflow(monkeypatch)
    task = module.dag.tasks["ingest_sales"]
    command = _render(
        task.bash_command,
        {
            "mlcore_repo": str(REPO_ROOT),
            "mlcore_spark_submit_args": "--print-command " + module.DEFAULT_SUBMIT_ARGS,
        },
        params={"run_date": None},
        data_interval_end=datetime(2015, 8, 2, tzinfo=timezone.utc),
    )
    done = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert shlex.split(done.stdout)[-5:] == [
        f"{REPO_ROOT}/jobs/ingest_sales.py",
        "--env",
        "emr",
        "--run-date",
        "2015-08-02",
    ]


def _airflow_python() -> Path | None:
    venv = Path(os.environ.get("MLCORE_AIRFLOW_VENV") or REPO_ROOT / ".venv-airflow")
    python = venv / "bin" / "python"
    return python if python.exists() else None


def test_airflow_dag_loads_in_a_real_airflow():
    """A real Airflow's DagBag (its own venv: scripts/setup_airflow_env.sh, run by .ci/run)
    parses the DAG file: no import errors or cycles, the task graph is the job catalog's chain,
    every task a BashOperator with retries, rendering the spark-submit.sh command for the run's
    date. Under CI=true a missing Airflow venv fails the test instead of skipping it."""
    python = _airflow_python()
    if python is None:
        if os.environ.get("CI"):
            pytest.fail("the Airflow venv is missing: .ci/run must run scripts/setup_airflow_env.sh")
        pytest.skip("no Airflow venv (scripts/setup_airflow_env.sh creates .venv-airflow)")
    done = subprocess.run(
        [str(python), str(REPO_ROOT / "scripts" / "check_airflow_dag.py")],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("MLCORE_DAGBAG ")]
    result = json.loads(line.removeprefix("MLCORE_DAGBAG "))
    assert result["import_errors"] == {}, result["import_errors"]
    dag = result["dags"]["mlcore_nightly"]
    assert dag["max_active_runs"] == 1 and dag["catchup"] is False
    upstream = {task_id: set(task["upstream"]) for task_id, task in dag["tasks"].items()}
    check_nightly_graph(upstream, f"airflow {result['airflow']} DagBag")
    for task_id, task in dag["tasks"].items():
        assert task["operator"] == "BashOperator" and task["retries"] >= 1
        assert task["command"].endswith(
            f"./spark-submit.sh {' '.join(EMR_LAUNCHER)} {task_id} --env emr --run-date 2015-08-02"
        ), task["command"]


def test_emr_steps_pass_the_aws_cli_and_the_emr_service_model():
    """The steps add_steps.sh hands to ``aws emr add-steps --steps file://...``, converted by the
    AWS CLI's own EMR step builder and validated against botocore's EMR service model
    (``AddJobFlowSteps``): what the real tool would send, checked offline."""
    from awscli.customizations.emr.steputils import build_step_config_list
    from botocore.session import get_session
    from botocore.validate import validate_parameters

    done = subprocess.run(
        ["bash", str(ADD_STEPS), "j-2AXXXXXXGAPLF", "2015-08-01", "--code-uri",
         "s3://my-bucket/code/abc", "--dry-run"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    text = done.stdout
    start = text.index("[")
    steps = json.JSONDecoder().raw_decode(text[start:])[0]
    assert len(steps) == len(NIGHTLY_UPSTREAM) and "${" not in json.dumps(steps)
    configs = build_step_config_list(steps, region="us-east-1", release_label="emr-7.10.0")
    operation = get_session().get_service_model("emr").operation_model("AddJobFlowSteps")
    validate_parameters({"JobFlowId": "j-2AXXXXXXGAPLF", "Steps": configs}, operation.input_shape)
    assert [c["HadoopJarStep"]["Jar"] for c in configs] == ["command-runner.jar"] * len(configs)
    # and the validation can fail: a step without its jar, args that are not a list
    from botocore.exceptions import ParamValidationError

    no_jar = dict(configs[0], HadoopJarStep={"Args": configs[0]["HadoopJarStep"]["Args"]})
    with pytest.raises(ParamValidationError, match="Jar"):
        validate_parameters({"JobFlowId": "j-1", "Steps": [no_jar]}, operation.input_shape)
    flat_args = dict(configs[0], HadoopJarStep={"Jar": "command-runner.jar", "Args": "a b"})
    with pytest.raises(ParamValidationError, match="Args"):
        validate_parameters({"JobFlowId": "j-1", "Steps": [flat_args]}, operation.input_shape)
