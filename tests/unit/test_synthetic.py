"""Synthetic files: the real files' exact headers, delimiters and quoting, deterministic bytes
for a seed, and the properties the demo relies on (closed Sundays, ~11 % yes, planted quirks)."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest

from mlcore.config.models import SyntheticConfig
from mlcore.ingest import synthetic
from mlcore.ingest.schemas import BANK, RIDES, SALES, STORES

SMALL = SyntheticConfig(
    seed=7, stores=5, start_date="2015-01-01", end_date="2015-03-31", bank_rows=600,
    rides_rows=1500, rides_start_date="2019-08-01", rides_days=10,
)  # fmt: skip
REAL = {
    "train": "rossmann/train.csv.gz",
    "store": "rossmann/store.csv.gz",
    "bank": "bank_marketing/bank-full.csv.gz",
    "rides": "taxi/nyc_yellow_tripdata_sample_2018-2020.csv.gz",
}
# One data line of each real file, as a pattern: delimiters, quoting, number and date formats.
LINE_PATTERNS = {
    "train": r'\d+,[1-7],\d{4}-\d{2}-\d{2},\d+,\d+,[01],[01],"[0abc]","[01]"',
    "store": r'\d+,"[abcd]","[abc]",\d*,\d*,\d*,[01],\d*,\d*,"[A-Za-z,]*"',
    "bank": r'\d+;"[a-z.-]+";"[a-z]+";"[a-z]+";"(yes|no)";-?\d+;"(yes|no)";"(yes|no)";'
    r'"[a-z]+";\d+;"[a-z]{3}";\d+;\d+;-?\d+;\d+;"[a-z]+";"(yes|no)"',
    "rides": r"\d?,\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d?,"
    r"\d+\.\d+,\d*,[YN]?,\d+,\d+,\d?,\d+\.\d+,\d+\.\d+,\d+\.\d+,\d+\.\d+,\d+\.\d+,\d+\.\d+,"
    r"\d+\.\d+,(\d+\.\d+)?",
}


def generate(cfg: SyntheticConfig, root: Path) -> dict[str, Path]:
    train, store = synthetic.ensure_sales_files(cfg, root)
    return {
        "train": train,
        "store": store,
        "bank": synthetic.ensure_bank_file(cfg, root),
        "rides": synthetic.ensure_rides_file(cfg, root),
    }


def lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        text = handle.read()
    assert "\r" not in text and text.endswith("\n")
    return text[:-1].split("\n")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate(SMALL, tmp_path_factory.mktemp("synthetic"))


def test_headers_match_the_contracts(files) -> None:
    expected = {
        "train": ",".join(f'"{h}"' for h in SALES.header),
        "store": ",".join(f'"{h}"' for h in STORES.header),
        "bank": ";".join(f'"{h}"' for h in BANK.header),
        "rides": ",".join(RIDES.header),
    }
    for name, path in files.items():
        assert lines(path)[0] == expected[name], name


def test_headers_and_line_format_match_the_real_files(files, datasets_dir) -> None:
    for name, rel in REAL.items():
        real = datasets_dir / rel
        with gzip.open(real, "rt", encoding="utf-8", newline="") as handle:
            real_header, real_line = handle.readline(), handle.readline()
        ours = lines(files[name])
        assert ours[0] + "\n" == real_header, name
        assert re.fullmatch(LINE_PATTERNS[name], real_line.rstrip("\n")), f"pattern vs real {name}"
        assert files[name].name.endswith(".csv.gz") and real.name.endswith(".csv.gz")


def test_every_line_has_the_format_and_field_count(files) -> None:
    delimiters = {"train": ",", "store": ",", "bank": ";", "rides": ","}
    for name, path in files.items():
        all_lines = lines(path)
        width = len(next(csv.reader([all_lines[0]], delimiter=delimiters[name])))
        for line in all_lines[1:]:
            assert re.fullmatch(LINE_PATTERNS[name], line), f"{name}: {line}"
            assert len(next(csv.reader([line], delimiter=delimiters[name]))) == width


def test_deterministic_for_a_seed(files, tmp_path) -> None:
    again = generate(SMALL, tmp_path / "again")
    other = generate(dataclasses.replace(SMALL, seed=8), tmp_path / "other")

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    for name in files:
        assert digest(files[name]) == digest(again[name]), name
        assert digest(files[name]) != digest(other[name]), name


def test_fingerprint_and_cache(tmp_path) -> None:
    assert synthetic.fingerprint(SMALL) == synthetic.fingerprint(dataclasses.replace(SMALL))
    assert synthetic.fingerprint(SMALL) != synthetic.fingerprint(
        dataclasses.replace(SMALL, stores=6)
    )
    root = synthetic.synthetic_root(tmp_path, SMALL)
    path = synthetic.ensure_bank_file(SMALL, root)
    stamp = path.stat().st_mtime_ns
    assert synthetic.ensure_bank_file(SMALL, root) == path
    assert path.stat().st_mtime_ns == stamp  # not regenerated


def read(path: Path, sep: str = ",") -> pd.DataFrame:
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)


def test_sales_shape_and_seasonality(files) -> None:
    train = read(files["train"])
    days = pd.date_range(SMALL.start_date, SMALL.end_date).size
    assert len(train) == SMALL.stores * days
    assert not train.duplicated(["Store", "Date"]).any()
    # Kaggle order: Date descending, then Store ascending.
    assert train["Date"].iloc[0] == SMALL.end_date and train["Store"].iloc[0] == "1"
    dates = pd.to_datetime(train["Date"])
    assert (dates.dt.isocalendar().day.astype(str) == train["DayOfWeek"]).all()
    sales = train["Sales"].astype(int)
    sunday = train["DayOfWeek"] == "7"
    assert (train.loc[sunday, "Open"] == "0").all() and (sales[sunday] == 0).all()
    assert ((train["Open"] == "0") == (sales == 0)).all()
    is_open = train["Open"] == "1"
    promo = sales[is_open & (train["Promo"] == "1")].mean()
    no_promo = sales[is_open & (train["Promo"] == "0")].mean()
    assert promo > 1.1 * no_promo
    monday = sales[is_open & (train["DayOfWeek"] == "1")].mean()
    saturday = sales[is_open & (train["DayOfWeek"] == "6")].mean()
    assert monday > saturday
    assert set(train["StateHoliday"]) <= {"0", "a", "b", "c"} and "a" in set(train["StateHoliday"])
    store = read(files["store"])
    assert store["Store"].tolist() == [str(i) for i in range(1, SMALL.stores + 1)]


def test_bank_label_share(tmp_path) -> None:
    bank = synthetic.bank_frame(dataclasses.replace(SMALL, bank_rows=5000))
    share = (bank["y"] == "yes").mean()
    assert 0.09 < share < 0.14
    # The label carries signal: long calls convert more often.
    assert bank.loc[bank["duration"] > 500, "y"].eq("yes").mean() > 2 * share
    months = "jan feb mar apr may jun jul aug sep oct nov dec".split()
    assert set(bank["month"]) <= set(months)


def test_rides_relations_and_planted_quirks(files) -> None:
    rides = read(files["rides"])
    assert len(rides) == SMALL.rides_rows
    pickup = pd.to_datetime(rides["pickup_datetime"])
    dropoff = pd.to_datetime(rides["dropoff_datetime"])
    distance = rides["trip_distance"].astype(float)
    fare = rides["fare_amount"].astype(float)
    assert (distance == 0).sum() == 3
    assert (dropoff < pickup).sum() == 1
    assert (pickup.dt.year < 2019).sum() == 1  # ten years before the period
    assert distance.corr(fare) > 0.8
    minutes = (dropoff - pickup).dt.total_seconds() / 60
    assert minutes[dropoff >= pickup].between(1, 24 * 60).all()
    # From 2019-07 some optional TLC fields are empty, as in the real files.
    assert (rides["vendor_id"] == "").sum() > 0
    assert (rides["congestion_surcharge"] == "").sum() == 1  # only the 2009 ride
