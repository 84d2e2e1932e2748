"""``python -m mlcore migrate``: convert tables written by an older mlcore to the current shape.

A job refuses to write to a table of an older shape and names this command. Each table that
needs it is rewritten once, in one commit, with every row kept (``mlcore.io.migrations`` lists
the changes); a table already in the current shape is left alone, so a second run does nothing.

    python -m mlcore migrate --env local --dry-run   # list what would change
    python -m mlcore migrate --env local
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mlcore.config.loader import ConfigError, add_config_arguments, load_config
from mlcore.errors import MlcoreError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlcore migrate",
        description="Convert tables written by an older mlcore to the current shape (one commit each).",
        allow_abbrev=False,
    )
    add_config_arguments(parser)
    parser.add_argument("--dry-run", action="store_true", help="list what would change, change nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        config = load_config(args.env, args.conf_dir, args.overrides)
    except ConfigError as exc:
        print(f"migrate: config error: {exc}", file=sys.stderr)
        return 2
    from mlcore.io import DeltaTables
    from mlcore.logging_setup import setup_logging
    from mlcore.spark import get_spark

    setup_logging("WARNING")
    try:
        tables = DeltaTables(get_spark(config.spark, "migrate"), config, commit_metadata={"mlcore.job": "migrate"})
        changed = 0
        for name in sorted(config.tables):
            needed = tables.pending_migrations(name)
            for migration in needed:
                print(f"{name}: {migration.change}" + (" (dry run: not changed)" if args.dry_run else ""))
            if needed and not args.dry_run:
                result = tables.migrate(name)
                rows = f", {result.rows:,} rows" if result is not None and result.rows is not None else ""
                print(f"{name}: migrated in one commit (version {result.version if result else '?'}{rows})")
            changed += bool(needed)
    except MlcoreError as exc:
        print(f"migrate: FAILED: {exc}", file=sys.stderr)
        return 1
    if not changed:
        print(f"migrate: nothing to do: every table of env {config.env} has the current shape")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
