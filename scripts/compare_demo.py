"""Run the demo (scripts/demo.sh) at two revisions and compare what it leaves behind.

A refactor must not change what users get: this runs each revision's own ``scripts/demo.sh`` in
a git worktree, each with its own MLCORE_HOME (same Python environment, the worktree's code on
PYTHONPATH), then compares

- every Delta table under ``lake/``: the same rows (order-free), values equal (floats within a
  relative 1e-9), ignoring the columns that differ by construction between two runs (run ids,
  timestamps, durations, hashes of config and code);
- MLflow: the runs per job and their statuses, each job's last run's metrics (timings left
  out), the registered models, their versions and aliases.

    .venv/bin/python scripts/compare_demo.py --base 9d0bac0            # base vs HEAD, 100 stores
    .venv/bin/python scripts/compare_demo.py --base 9d0bac0 --stores 30 --keep /tmp/cmp

Prints every difference and exits 1 when there is one (0 when the demos are identical). Minutes:
two demo runs one after another. A benchmark-like script, not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from deltalake import DeltaTable

ROOT = Path(__file__).resolve().parents[1]
# Columns that differ between any two runs of the same code: identities, clocks, code/config hashes.
VOLATILE_COLUMNS = {
    "run_id", "pipeline_run_id", "upstream_run_ids", "started_at", "finished_at", "created_at",
    "written_at", "ingested_at", "scored_at", "detected_at", "duration_seconds", "fit_seconds",
    "backtest_seconds", "predict_seconds", "seconds", "git_sha", "config_hash", "code_version",
    "checked_at",
    "message",
}  # fmt: skip
VOLATILE_METRIC_WORDS = ("seconds", "wall", "rate", "per_s", "_ms", "elapsed", "attempt")


def worktree(rev: str, where: Path) -> Path:
    """A detached worktree of ``rev`` under ``where``, beside a ``shared`` link to this
    checkout's ../shared, so the demo finds the datasets at the same relative path."""
    target = where / rev.replace("/", "_")
    if not target.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(target), rev],
                       check=True, capture_output=True)  # fmt: skip
    shared = ROOT.parent / "shared"
    link = where / "shared"
    if shared.exists() and not link.exists():
        link.symlink_to(shared)
    return target


def wrapper_venv(checkout: Path, where: Path) -> Path:
    """A stand-in venv whose python runs this interpreter with ``checkout`` first on the path and
    whose install stamp matches the checkout's setup.py, so demo.sh's setup step installs
    nothing (it must not re-point this environment's editable install)."""
    import hashlib

    venv = where / f"venv-{checkout.name}"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    python = venv / "bin" / "python"
    python.write_text(
        f'#!/bin/sh\nPYTHONPATH="{checkout}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" "$@"\n'
    )
    python.chmod(0o755)
    digest = hashlib.sha256((checkout / "setup.py").read_bytes()).hexdigest()[:16]
    (venv / ".mlcore-installed").write_text(digest + "\n")
    return venv


def run_demo(checkout: Path, home: Path, venv: Path, stores: int, log: Path) -> float:
    env = dict(os.environ, MLCORE_HOME=str(home), MLCORE_VENV=str(venv), DEMO_STORES=str(stores))
    env.pop("PYTHONPATH", None)
    started = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run(["bash", "scripts/demo.sh"], cwd=checkout, env=env, stdout=out,
                              stderr=subprocess.STDOUT).returncode  # fmt: skip
    if code != 0:
        sys.exit(f"compare_demo: the demo at {checkout} failed (exit {code}); see {log}")
    return time.perf_counter() - started


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """Stable columns, rows in a canonical order, values as comparable Python objects."""
    keep = sorted(c for c in frame.columns if c not in VOLATILE_COLUMNS)
    frame = frame[keep].copy()
    for column in keep:
        frame[column] = frame[column].map(_plain)
    if frame.empty:
        return frame.reset_index(drop=True)
    order = frame.astype(str).agg("\x1f".join, axis=1).sort_values().index
    return frame.loc[order].reset_index(drop=True)


def _plain(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str) and value[:1] in "[{":
        try:  # a JSON column (run_manifest's models, row_counts): its volatile keys left out
            return _stable(json.loads(value))
        except ValueError:
            return value
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _stable(value):
    """A JSON value without the keys that differ between two runs of the same code (run ids
    inside run_manifest.models, rates such as groups_per_second inside row_counts)."""
    if isinstance(value, dict):
        return {
            k: _stable(v)
            for k, v in value.items()
            if k not in VOLATILE_COLUMNS and not any(word in k for word in VOLATILE_METRIC_WORDS)
        }
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _same(a, b) -> bool:
    if _missing(a) and _missing(b):
        return True
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def compare_tables(base: Path, head: Path) -> list[str]:
    problems = []
    names = sorted({p.name for p in (base / "lake").iterdir()} | {p.name for p in (head / "lake").iterdir()})
    for name in names:
        paths = [home / "lake" / name for home in (base, head)]
        if not all((p / "_delta_log").is_dir() for p in paths):
            problems.append(f"table {name}: only in {'base' if (paths[0] / '_delta_log').is_dir() else 'head'}")
            continue
        left, right = (comparable(DeltaTable(str(p)).to_pandas()) for p in paths)
        if list(left.columns) != list(right.columns):
            only = set(left.columns) ^ set(right.columns)
            problems.append(f"table {name}: columns differ ({', '.join(sorted(only))})")
            common = [c for c in left.columns if c in right.columns]
            left, right = comparable(left[common]), comparable(right[common])
        if len(left) != len(right):
            problems.append(f"table {name}: {len(left)} rows vs {len(right)}")
            continue
        differing = [
            c for c in left.columns
            if not all(_same(a, b) for a, b in zip(left[c], right[c], strict=True))
        ]  # fmt: skip
        if differing:
            problems.append(f"table {name}: values differ in {', '.join(differing)}")
        else:
            print(f"  table {name:<24} {len(left):>9,} rows  identical")
    return problems


def mlflow_state(home: Path) -> dict:
    """Runs per job (status counts), each job's last run's stable metrics, models and aliases."""
    db = sqlite3.connect(home / "mlflow" / "mlflow.db")
    runs = db.execute(
        "SELECT r.run_uuid, r.status, t.value FROM runs r "
        "JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'mlcore.job' ORDER BY r.start_time"
    ).fetchall()
    state: dict = {"runs": {}, "metrics": {}, "models": {}}
    last: dict[str, str] = {}
    for run_id, status, job in runs:
        state["runs"].setdefault(job, {}).setdefault(status, 0)
        state["runs"][job][status] += 1
        last[job] = run_id
    for job, run_id in last.items():
        rows = db.execute(
            "SELECT key, value FROM latest_metrics WHERE run_uuid = ?", (run_id,)
        ).fetchall()
        state["metrics"][job] = {
            k: v for k, v in rows if not any(word in k for word in VOLATILE_METRIC_WORDS)
        }
    for name, version, source_run in db.execute(
        "SELECT name, version, run_id FROM model_versions ORDER BY name, version"
    ):
        job = db.execute(
            "SELECT value FROM tags WHERE run_uuid = ? AND key = 'mlcore.job'", (source_run,)
        ).fetchone()
        state["models"].setdefault(name, {"versions": [], "aliases": {}})
        state["models"][name]["versions"].append((version, job[0] if job else None))
    for name, alias, version in db.execute("SELECT name, alias, version FROM registered_model_aliases"):
        state["models"].setdefault(name, {"versions": [], "aliases": {}})["aliases"][alias] = version
    return state


def compare_mlflow(base: Path, head: Path) -> list[str]:
    left, right = mlflow_state(base), mlflow_state(head)
    problems = []
    if left["runs"] != right["runs"]:
        problems.append(f"MLflow runs per job differ: {left['runs']} vs {right['runs']}")
    else:
        print(f"  MLflow runs per job identical: {json.dumps(left['runs'], sort_keys=True)}")
    for job in sorted(set(left["metrics"]) | set(right["metrics"])):
        a, b = left["metrics"].get(job, {}), right["metrics"].get(job, {})
        if a.keys() != b.keys():
            problems.append(f"MLflow metrics of {job}: keys differ {sorted(set(a) ^ set(b))}")
        differing = [k for k in a if k in b and not _same(float(a[k]), float(b[k]))]
        if differing:
            shown = ", ".join(f"{k} {a[k]:.6g} vs {b[k]:.6g}" for k in differing[:6])
            problems.append(f"MLflow metrics of {job} differ: {shown}")
    if left["models"] != right["models"]:
        problems.append(f"registry differs: {left['models']} vs {right['models']}")
    else:
        print(f"  registry identical: {json.dumps(left['models'], sort_keys=True)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--head", default="HEAD", help="git revision to compare (default HEAD)")
    parser.add_argument("--stores", type=int, default=100, help="DEMO_STORES for both runs")
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one)")
    parser.add_argument(
        "--compare-only", action="store_true",
        help="compare the homes a previous run left in --keep, without running the demos again",
    )  # fmt: skip
    args = parser.parse_args(argv)
    where = args.keep or Path(tempfile.mkdtemp(prefix="mlcore_compare_"))
    where.mkdir(parents=True, exist_ok=True)
    homes = {side: where / f"home-{side}" for side in ("base", "head")}
    for side, rev in (("base", args.base), ("head", args.head)):
        if args.compare_only:
            break
        sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev],
                             check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
        checkout = worktree(sha, where)
        shutil.rmtree(homes[side], ignore_errors=True)
        seconds = run_demo(checkout, homes[side], wrapper_venv(checkout, where), args.stores,
                           where / f"demo-{side}.log")  # fmt: skip
        print(f"{side} {rev} ({sha}): demo {seconds:.0f} s, MLCORE_HOME {homes[side]}")
    print("comparison:")
    problems = compare_tables(homes["base"], homes["head"]) + compare_mlflow(homes["base"], homes["head"])
    for problem in problems:
        print(f"  DIFFERS: {problem}")
    print("identical" if not problems else f"{len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
