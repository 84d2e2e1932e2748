"""Where ingest input comes from, and reading it with Spark under its schema contract.

Resolution (per ``sources.*`` config): a configured path that exists is used; a null path, or a
missing file with ``if_missing: synthetic``, falls back to the bundled synthetic generator (with a
warning), whose files land under ``$MLCORE_HOME/synthetic/<settings hash>/`` in the real formats;
a missing file with ``if_missing: error`` fails the job naming the path. Paths with a URI scheme
(``s3://``, ``dbfs:``...) are not probed from the driver: Spark's read reports them if absent.

Reading: the header line is checked against the contract first (a missing, renamed or extra
column fails before anything is written), then the file is read with every column as a string
plus a corrupt-record column, so a line with the wrong number of fields is caught as a row
instead of being silently padded or truncated. Typing happens later, in ``rules``.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlcore.config.models import IfMissing, MlcoreConfig
from mlcore.errors import JobFailed
from mlcore.ingest import synthetic
from mlcore.ingest.rules import CORRUPT_COLUMN, LINE_COLUMN
from mlcore.ingest.schemas import TableContract

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://|^dbfs:")


@dataclass(frozen=True)
class Source:
    """A resolved input file: the config key it came from, its path, and whether synthetic."""

    key: str
    path: str
    synthetic: bool = False

    def describe(self) -> str:
        return f"{self.path} (synthetic)" if self.synthetic else self.path


def path_exists(path: str) -> bool:
    """Local paths are checked; URIs other than file:// are assumed present (see module doc)."""
    if _URI.match(path) and not path.startswith("file://"):
        return True
    return Path(path.removeprefix("file://")).exists()


def _use_configured(path: str | None, key: str, if_missing: IfMissing) -> bool:
    """True to read ``path``; False to fall back to synthetic data; raises for ``error``."""
    if path is None:
        return False
    if path_exists(path):
        return True
    if if_missing == "error":
        raise JobFailed(f"{key}: source file {path} does not exist (if_missing: error)")
    log.warning("%s: %s does not exist; if_missing is 'synthetic'", key, path)
    return False


def _synthetic_root(config: MlcoreConfig) -> Path:
    return synthetic.synthetic_root(config.mlcore_home, config.synthetic)


def resolve_sales_sources(config: MlcoreConfig) -> tuple[Source, Source]:
    """(train.csv, store.csv). If either falls back, both do: real sales need real stores."""
    cfg = config.sources.sales
    use_train = _use_configured(cfg.train_path, "sources.sales.train_path", cfg.if_missing)
    use_store = _use_configured(cfg.store_path, "sources.sales.store_path", cfg.if_missing)
    if use_train and use_store:
        return (
            Source("sources.sales.train_path", str(cfg.train_path)),
            Source("sources.sales.store_path", str(cfg.store_path)),
        )
    train, store = synthetic.ensure_sales_files(config.synthetic, _synthetic_root(config))
    log.warning(
        "sales sources: using SYNTHETIC Rossmann-format data (%d stores, %s..%s) from %s",
        config.synthetic.stores,
        config.synthetic.start_date,
        config.synthetic.end_date,
        train.parent,
    )
    return (
        Source("sources.sales.train_path", str(train), synthetic=True),
        Source("sources.sales.store_path", str(store), synthetic=True),
    )


def resolve_bank_source(config: MlcoreConfig) -> Source:
    cfg = config.sources.bank
    if _use_configured(cfg.path, "sources.bank.path", cfg.if_missing):
        return Source("sources.bank.path", str(cfg.path))
    path = synthetic.ensure_bank_file(config.synthetic, _synthetic_root(config))
    log.warning(
        "bank source: using SYNTHETIC bank-full-format data (%d rows) from %s",
        config.synthetic.bank_rows,
        path,
    )
    return Source("sources.bank.path", str(path), synthetic=True)


def resolve_rides_source(config: MlcoreConfig) -> Source:
    cfg = config.sources.rides
    if _use_configured(cfg.path, "sources.rides.path", cfg.if_missing):
        return Source("sources.rides.path", str(cfg.path))
    path = synthetic.ensure_rides_file(config.synthetic, _synthetic_root(config))
    log.warning(
        "rides source: using SYNTHETIC yellow-taxi-format data (%d rows, %d days from %s) from %s",
        config.synthetic.rides_rows,
        config.synthetic.rides_days,
        config.synthetic.rides_start_date,
        path,
    )
    return Source("sources.rides.path", str(path), synthetic=True)


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------
def parse_header(line: str, delimiter: str) -> list[str]:
    """Column names of a header line (quotes removed, BOM and CR stripped)."""
    text = line.lstrip("\ufeff").rstrip("\r\n")
    row = next(csv.reader([text], delimiter=delimiter, quotechar='"'), [])
    return [name.strip() for name in row]


def check_header(found: list[str], contract: TableContract, path: str) -> None:
    """Exactly the contract's columns (any order); otherwise a one-line error naming both."""
    expected = list(contract.header)
    if sorted(found) == sorted(expected) and len(set(found)) == len(found):
        return
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    detail = []
    if missing:
        detail.append(f"missing {missing}")
    if extra:
        detail.append(f"unexpected {extra}")
    if not detail:
        detail.append("duplicate column names")
    raise JobFailed(
        f"{path}: header does not match the {contract.source} layout ({'; '.join(detail)}): "
        f"expected {len(expected)} columns {contract.delimiter.join(expected)!r}, "
        f"found {len(found)} columns {contract.delimiter.join(found)!r}"
    )


def check_compressed(path: str) -> None:
    """A local ``.gz`` source must decompress to its end: a truncated or corrupt file fails here
    with a clear reason instead of as a Java stack trace half-way through the job.

    Remote files are not probed from the driver (Spark reports them when it reads them).
    """
    import gzip
    import zlib

    if not path.lower().endswith(".gz") or (_URI.match(path) and not path.startswith("file://")):
        return
    try:
        with gzip.open(path.removeprefix("file://"), "rb") as handle:
            while handle.read(1 << 20):
                pass
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise JobFailed(
            f"{path}: corrupt or truncated gzip file ({type(exc).__name__}: {exc}); nothing read"
        ) from None


def read_header(spark: SparkSession, path: str, delimiter: str) -> list[str]:
    """The first line of the file, read through Spark (works for .gz and remote paths)."""
    check_compressed(path)
    try:
        first = spark.read.text(path).limit(1).collect()
    except Exception as exc:  # noqa: BLE001 - unreadable file: a one-line reason, not a JVM trace
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = next(
            (line for line in lines if "Exception" in line or "Error" in line),
            lines[0] if lines else "",
        )
        raise JobFailed(
            f"{path}: cannot read the file ({type(exc).__name__}: {detail[:300]})"
        ) from None
    if not first:
        raise JobFailed(f"{path}: file is empty (no header line)")
    return parse_header(first[0][0], delimiter)


def read_csv_source(
    spark: SparkSession, path: str, contract: TableContract, limit_rows: int | None = None
) -> DataFrame:
    """All-string frame under the contract's snake_case names, plus ``_corrupt_record`` and
    ``_line`` (file order); ``limit_rows`` keeps the first rows in file order.

    Column pruning is switched off for the CSV scan: with it on, Spark only tokenizes the
    selected columns and a short or long line is no longer reported as corrupt.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    found = read_header(spark, path, contract.delimiter)
    check_header(found, contract, path)
    names = contract.source_names
    read_schema = StructType(
        [StructField(name, StringType(), True) for name in found]
        + [StructField(CORRUPT_COLUMN, StringType(), True)]
    )
    df = (
        spark.read.schema(read_schema)
        .option("header", True)
        .option("sep", contract.delimiter)
        .option("quote", '"')
        .option("escape", '"')
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT_COLUMN)
        .option("columnPruning", False)
        .option("enforceSchema", True)
        .csv(path)
    )
    df = df.select(
        *[F.col(f"`{name}`").alias(names[name]) for name in found],
        F.col(CORRUPT_COLUMN),
        F.monotonically_increasing_id().alias(LINE_COLUMN),
    )
    if limit_rows is not None:
        if limit_rows < 0:
            raise JobFailed(f"ingest.limit_rows must be >= 0, got {limit_rows}")
        df = df.orderBy(LINE_COLUMN).limit(limit_rows)
    return df.select(*contract.columns, CORRUPT_COLUMN, LINE_COLUMN)
