"""``python -m mlcore``: list jobs and run one by name."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mlcore._version import __version__
from mlcore.job_catalog import JOBS


def _epilog() -> str:
    width = max(len(name) for name in JOBS)
    rows = "\n".join(f"  {name:<{width}}  {spec.summary}" for name, spec in JOBS.items())
    return (
        f"jobs:\n{rows}\n\n"
        "Run one: python -m mlcore run <job> [--env E] [--run-date YYYY-MM-DD] [--set k=v] [--dry-run]\n"
        "Job help: python -m mlcore run <job> --help\n"
        'Query the tables: python -m mlcore sql "SELECT ..." [--env E] [--limit N] [--format csv]\n'
        "Convert tables of an older mlcore: python -m mlcore migrate [--env E] [--dry-run]\n"
        "Serve forecasts to planners (API + dashboard): python -m mlcore serve [--env E] [--port P]"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mlcore",
        description="Batch machine learning on Spark and Delta tables.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["sql"]:  # its own parser: options may precede the statement
        from mlcore.query import main as run_sql

        return run_sql(args_list[1:])
    if args_list[:1] == ["serve"]:
        from mlcore.serving.app import main as run_service

        return run_service(args_list[1:])
    if args_list[:1] == ["migrate"]:
        from mlcore.migrate import main as run_migrate

        return run_migrate(args_list[1:])
    parser.add_argument("--version", action="version", version=f"mlcore {__version__}")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("list", help="list the jobs")
    run = commands.add_parser("run", help="run a job", add_help=False)
    run.add_argument("job", choices=sorted(JOBS), help="job name")
    run.add_argument("job_args", nargs=argparse.REMAINDER, help="arguments for the job")
    # Listed for --help only: "sql" is handed to mlcore.query above, before this parser runs.
    commands.add_parser("sql", help='query the tables by name: mlcore sql "SELECT ..." (--help)')
    commands.add_parser("migrate", help="convert tables written by an older mlcore (--help)")
    commands.add_parser("serve", help="the planners' forecast service: API + dashboard (--help)")
    args = parser.parse_args(args_list)
    if args.command == "list":
        for name, spec in JOBS.items():
            print(f"{name}\t{spec.summary}")
        return 0
    if args.command == "run":
        from mlcore.runner import run_job

        return run_job(args.job, args.job_args)
    parser.print_help()
    return 0
