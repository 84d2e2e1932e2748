"""``python -m mlcore sql "SELECT ..."``: query the lake's tables by name from a terminal.

Analysts should not need a notebook to look at a table. Each logical table the statement names
(``sales``, ``forecasts``, ``run_manifest`` ...) is a temporary view over that table, read with the
env's engine; with ``storage.catalog_schema`` set (the ``local-catalog`` env) the catalog names
(``spark_catalog.mlcore.sales``, or ``mlcore.sales``) work too, as on Databricks.

    python -m mlcore sql "SELECT store, sum(sales) FROM sales GROUP BY store ORDER BY 2 DESC" --limit 5
    python -m mlcore sql --env local-catalog "SELECT count(*) FROM mlcore.forecasts"
    python -m mlcore sql --format csv "SELECT * FROM forecast_status" > status.csv
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import Any

from mlcore.config.loader import ConfigError, add_config_arguments, load_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlcore sql",
        description="Run one Spark SQL statement over the lake's tables (by logical name).",
        allow_abbrev=False,
    )
    parser.add_argument("statement", help="a Spark SQL query, e.g. \"SELECT * FROM sales\"")
    add_config_arguments(parser)
    parser.add_argument("--limit", type=int, default=50, help="rows to print (default 50)")
    parser.add_argument(
        "--format", choices=["table", "csv"], default="table", help="output (default: table)"
    )
    return parser


def named_tables(statement: str, names: Sequence[str]) -> list[str]:
    """The logical table names the statement mentions as words (only those become views)."""
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", statement))
    return sorted(name for name in names if name in words)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.limit < 1:
        print("sql: --limit must be at least 1", file=sys.stderr)
        return 2
    try:
        config = load_config(args.env, args.conf_dir, args.overrides)
    except ConfigError as exc:
        print(f"sql: config error: {exc}", file=sys.stderr)
        return 2
    from pyspark.errors import AnalysisException, ParseException

    from mlcore.io import DeltaTables
    from mlcore.logging_setup import setup_logging
    from mlcore.spark import get_spark

    setup_logging("WARNING")
    spark = get_spark(config.spark, "sql")
    tables = DeltaTables(spark, config)
    missing = []
    for name in named_tables(args.statement, list(config.tables)):
        if tables.exists(name):
            tables.read(name, record_input=False).createOrReplaceTempView(name)
        else:
            missing.append(name)
    try:
        result = spark.sql(args.statement)
        if args.format == "csv":
            frame: Any = result.limit(args.limit).toPandas()
            frame.to_csv(sys.stdout, index=False)
        else:
            result.show(args.limit, truncate=False)
    except (AnalysisException, ParseException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = f" (not written yet: {', '.join(missing)})" if missing else ""
        print(f"sql: {first[:500]}{hint}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
