"""Source resolution (real file, synthetic fallback, if_missing: error) and the CSV reader's
contract: header checked first, malformed lines caught, limit_rows deterministic."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import pytest

from mlcore.ingest import rules, sources
from mlcore.ingest.schemas import BANK, SALES
from mlcore.pipelines.context import JobFailed

SALES_HEADER = (
    '"Store","DayOfWeek","Date","Sales","Customers","Open","Promo","StateHoliday","SchoolHoliday"'
)


def write_gz(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def test_configured_existing_path_is_used(make_config, tmp_path) -> None:
    path = write_gz(tmp_path / "bank.csv.gz", ["x"])
    source = sources.resolve_bank_source(make_config(f"sources.bank.path={path}"))
    assert source == sources.Source("sources.bank.path", str(path), synthetic=False)


def test_null_path_uses_synthetic(make_config, mlcore_home, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="mlcore.ingest.sources"):
        source = sources.resolve_rides_source(make_config())
    assert source.synthetic
    assert Path(source.path).is_relative_to(mlcore_home / "synthetic")
    assert Path(source.path).exists()
    assert "SYNTHETIC" in caplog.text


def test_missing_file_falls_back_or_fails_by_if_missing(make_config, tmp_path, caplog) -> None:
    missing = tmp_path / "nope" / "train.csv.gz"
    with caplog.at_level(logging.WARNING, logger="mlcore.ingest.sources"):
        train, store = sources.resolve_sales_sources(
            make_config(f"sources.sales.train_path={missing}")
        )
    assert train.synthetic and store.synthetic  # real stores are not mixed with synthetic sales
    assert str(missing) in caplog.text and "does not exist" in caplog.text

    with pytest.raises(JobFailed, match=f"sources.bank.path: source file {missing} does not exist"):
        sources.resolve_bank_source(
            make_config(f"sources.bank.path={missing}", "sources.bank.if_missing=error")
        )


def test_header_mismatch_is_a_clear_error(spark, tmp_path) -> None:
    renamed = SALES_HEADER.replace('"Sales"', '"Revenue"')
    path = write_gz(tmp_path / "train.csv.gz", [renamed, '1,5,2015-07-31,1,1,1,1,"0","1"'])
    with pytest.raises(JobFailed) as info:
        sources.read_csv_source(spark, str(path), SALES)
    message = str(info.value)
    assert "missing ['Sales']" in message and "unexpected ['Revenue']" in message
    assert "expected 9 columns" in message and "\n" not in message

    short = write_gz(tmp_path / "short.csv.gz", ['"Store","DayOfWeek"'])
    with pytest.raises(JobFailed, match="found 2 columns"):
        sources.read_csv_source(spark, str(short), SALES)

    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(JobFailed, match="empty"):
        sources.read_csv_source(spark, str(empty), SALES)


def test_parse_header_handles_quotes_bom_and_crlf() -> None:
    assert sources.parse_header('\ufeff"age";"job";"y"\r\n', ";") == ["age", "job", "y"]


def test_reader_catches_malformed_lines_and_reorders_columns(spark, tmp_path) -> None:
    # Columns in another order are accepted: values are bound by header name.
    header = '"Date","Store","DayOfWeek","Sales","Customers","Open","Promo","StateHoliday","SchoolHoliday"'
    path = write_gz(
        tmp_path / "train.csv.gz",
        [
            header,
            '2015-07-31,1,5,5263,555,1,1,"0","1"',
            "2015-07-31,2,5,6064",  # too few fields
            '2015-07-31,3,5,8314,821,1,1,"0","1",extra',  # too many fields
            '2015-07-31,4,5,13995,1498,1,1,"0","1"',
        ],
    )
    raw = sources.read_csv_source(spark, str(path), SALES)
    assert raw.columns == [*SALES.columns, rules.CORRUPT_COLUMN, rules.LINE_COLUMN]
    # Selecting a subset must still report corrupt lines (column pruning is off).
    rows = {
        r["store"]: r[rules.CORRUPT_COLUMN]
        for r in raw.select("store", rules.CORRUPT_COLUMN).collect()
    }
    assert rows == {
        "1": None,
        "2": "2015-07-31,2,5,6064",
        "3": '2015-07-31,3,5,8314,821,1,1,"0","1",extra',
        "4": None,
    }
    good, bad = rules.validate_sales(raw)
    assert sorted(r["store"] for r in good.collect()) == [1, 4]
    assert sorted((r["store"], r["rule"]) for r in bad.collect()) == [
        ("2", "malformed_line"),
        ("3", "malformed_line"),
    ]


def test_limit_rows_keeps_the_first_rows_in_file_order(spark, tmp_path) -> None:
    lines = [f'{i},5,2015-07-31,{i},1,1,1,"0","1"' for i in range(1, 501)]
    path = tmp_path / "train.csv"
    path.write_text("\n".join([SALES_HEADER, *lines]) + "\n")
    # Small splits: several partitions, so "first rows" is not an accident of one task.
    spark.conf.set("spark.sql.files.maxPartitionBytes", "2048")
    try:
        raw = sources.read_csv_source(spark, str(path), SALES, limit_rows=7)
        first = [r["store"] for r in raw.collect()]
        again = [r["store"] for r in sources.read_csv_source(spark, str(path), SALES, 7).collect()]
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    assert sorted(first, key=int) == [str(i) for i in range(1, 8)]
    assert first == again


def test_bank_layout_with_semicolons_and_quotes(spark, tmp_path) -> None:
    header = ";".join(f'"{h}"' for h in BANK.header)
    line = '58;"management";"married";"tertiary";"no";2143;"yes";"no";"unknown";5;"may";261;1;-1;0;"unknown";"no"'
    path = write_gz(tmp_path / "bank.csv.gz", [header, line])
    good, bad = rules.validate_bank(sources.read_csv_source(spark, str(path), BANK))
    assert bad.count() == 0
    (row,) = good.collect()
    assert (row["age"], row["job"], row["pdays"], row["y"]) == (58, "management", -1, "no")
