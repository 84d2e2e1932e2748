"""Run one benchmark script at two revisions back to back (same machine, same minutes) and print
both outputs, then the ratio of every number the two outputs' matching lines share.

Each revision runs its own copy of the script from a git worktree (this environment, the
worktree's code first on the path), so "before" is measured with the code as it was:

    .venv/bin/python scripts/bench_revisions.py --base 9d0bac0 -- scripts/bench_forecasting.py --stores 300
    .venv/bin/python scripts/bench_revisions.py --base 9d0bac0 -- scripts/bench_scoring.py --rows 1000000 --skip-search

Timings on a shared machine are noisy: compare the ratios, not the seconds, and rerun when a
ratio is close to the threshold you care about.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_demo import ROOT, worktree  # noqa: E402

NUMBER = re.compile(r"-?\d[\d,]*\.?\d*")


def run(rev: str, where: Path, command: list[str]) -> tuple[str, float]:
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev],
                         check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    checkout = worktree(sha, where)
    env = dict(os.environ, PYTHONPATH=str(checkout))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *command], cwd=checkout, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"bench_revisions: {rev} ({sha}) failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout, seconds


def ratios(before: str, after: str) -> list[str]:
    """For lines with the same text apart from their numbers: after / before per number."""
    rows = []
    later = {NUMBER.sub("#", line).strip(): line for line in after.splitlines()}
    for line in before.splitlines():
        key = NUMBER.sub("#", line).strip()
        other = later.get(key)
        if other is None or "#" not in key:
            continue
        pairs = zip(NUMBER.findall(line), NUMBER.findall(other), strict=False)
        parts = []
        for a, b in pairs:
            x, y = float(a.replace(",", "")), float(b.replace(",", ""))
            parts.append(f"{y / x:.2f}" if x else "-")
        rows.append(f"  {key[:70]:<70}  after/before: {' '.join(parts)}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the 'before' revision")
    parser.add_argument("--head", default="HEAD", help="the 'after' revision (default HEAD)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- script.py [its arguments]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the benchmark after --, e.g. -- scripts/bench_scoring.py --rows 1000000")
    where = Path(tempfile.mkdtemp(prefix="mlcore_bench_revisions_"))
    outputs = {}
    for label, rev in (("before", args.base), ("after", args.head)):
        outputs[label], seconds = run(rev, where, command)
        print(f"===== {label}: {rev} ({seconds:.0f} s) =====\n{outputs[label]}", flush=True)
    print("===== ratios (after / before, per number on matching lines) =====")
    print("\n".join(ratios(outputs["before"], outputs["after"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
