"""Bundled synthetic data, written in exactly the real files' formats.

When a real source file is absent the ingest jobs read these files through the *same* parser as
the real data (same headers, delimiters, quoting, date formats, gzip), so the demo exercises the
production path. Everything is seeded from ``config.synthetic``: the same settings give
byte-identical files (gzip without name or timestamp).

- Rossmann: daily sales per store with weekly and yearly seasonality, a promo effect, a
  Christmas peak, Sundays and state holidays closed (Open=0, Sales=0), plus store.csv attributes.
- Bank: UCI bank-full layout with realistic category shares and about 11.7 % ``y=yes``, the label
  depending on call duration, previous outcome, month, housing loan and contact type.
- Rides: NYC yellow trips with realistic distance/duration/fare relations and planted quirks
  (three zero-distance rides, one dropoff before pickup, one ride dated ten years before the
  period) so that quarantine and anomaly detection have something to find.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from mlcore.config.models import SyntheticConfig

# Bump when the generated content changes, so cached files under MLCORE_HOME are regenerated.
GENERATOR_VERSION = 1

SALES_TRAIN_FILE = "rossmann/train.csv.gz"
SALES_STORE_FILE = "rossmann/store.csv.gz"
BANK_FILE = "bank_marketing/bank-full.csv.gz"
RIDES_FILE = "taxi/yellow_tripdata_synthetic.csv.gz"

TRAIN_HEADER = (
    "Store", "DayOfWeek", "Date", "Sales", "Customers", "Open", "Promo", "StateHoliday",
    "SchoolHoliday",
)  # fmt: skip
STORE_HEADER = (
    "Store", "StoreType", "Assortment", "CompetitionDistance", "CompetitionOpenSinceMonth",
    "CompetitionOpenSinceYear", "Promo2", "Promo2SinceWeek", "Promo2SinceYear", "PromoInterval",
)  # fmt: skip
BANK_HEADER = (
    "age", "job", "marital", "education", "default", "balance", "housing", "loan", "contact",
    "day", "month", "duration", "campaign", "pdays", "previous", "poutcome", "y",
)  # fmt: skip
RIDES_HEADER = (
    "vendor_id", "pickup_datetime", "dropoff_datetime", "passenger_count", "trip_distance",
    "rate_code_id", "store_and_fwd_flag", "pickup_location_id", "dropoff_location_id",
    "payment_type", "fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount",
    "improvement_surcharge", "total_amount", "congestion_surcharge",
)  # fmt: skip

_PROMO_INTERVALS = ("Jan,Apr,Jul,Oct", "Feb,May,Aug,Nov", "Mar,Jun,Sept,Dec")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------
def fingerprint(cfg: SyntheticConfig) -> str:
    """Short hash of the settings + generator version: the cache folder name."""
    payload = json.dumps(
        {"config": dataclasses.asdict(cfg), "version": GENERATOR_VERSION}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def synthetic_root(mlcore_home: str | Path, cfg: SyntheticConfig) -> Path:
    return Path(mlcore_home) / "synthetic" / fingerprint(cfg)


def ensure_sales_files(cfg: SyntheticConfig, root: Path) -> tuple[Path, Path]:
    """train.csv.gz and store.csv.gz under ``root`` (generated once per settings)."""
    train, store = root / SALES_TRAIN_FILE, root / SALES_STORE_FILE
    if not (train.exists() and store.exists()):
        sales, stores = sales_frames(cfg)
        write_text_gz(store, format_store_csv(stores))
        write_text_gz(train, format_train_csv(sales))
    return train, store


def ensure_bank_file(cfg: SyntheticConfig, root: Path) -> Path:
    path = root / BANK_FILE
    if not path.exists():
        write_text_gz(path, format_bank_csv(bank_frame(cfg)))
    return path


def ensure_rides_file(cfg: SyntheticConfig, root: Path) -> Path:
    path = root / RIDES_FILE
    if not path.exists():
        write_text_gz(path, format_rides_csv(rides_frame(cfg)))
    return path


def write_text_gz(path: Path, text: str) -> None:
    """Deterministic gzip (no name, mtime 0), written to a temp file and renamed atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with (
        tmp.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as handle,
    ):
        handle.write(text.encode("utf-8"))
    os.replace(tmp, path)


def _quote(values: pd.Series) -> pd.Series:
    return '"' + values.astype(str) + '"'


def _csv_text(
    columns: Sequence[pd.Series], header: Sequence[str], sep: str, quote_header: bool
) -> str:
    """Join pre-formatted string columns into CSV text with LF line endings."""
    names = [f'"{h}"' if quote_header else h for h in header]
    body = columns[0].astype(str)
    for column in columns[1:]:
        body = body + sep + column.astype(str)
    return sep.join(names) + "\n" + "\n".join(body.tolist()) + "\n"


def _int_or_empty(values: pd.Series) -> pd.Series:
    return values.map(lambda v: "" if pd.isna(v) else str(int(v)))


def _money(values: pd.Series | np.ndarray) -> pd.Series:
    """Floats as the TLC files print them: shortest repr of the 2-decimal value (1.0, 12.36)."""
    return pd.Series(np.round(np.asarray(values, dtype=float), 2)).map(repr)


# ----------------------------------------------------------------------------------------------
# Rossmann
# ----------------------------------------------------------------------------------------------
def _easter(year: int) -> date:
    """Gregorian Easter Sunday (anonymous algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month = (h + ell - 7 * m + 114) // 31
    day = (h + ell - 7 * m + 114) % 31 + 1
    return date(year, month, day)


def _holidays(dates: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """State holiday codes ('0', 'a' public, 'b' Easter, 'c' Christmas) and school holidays."""
    state = np.full(len(dates), "0", dtype=object)
    school = np.zeros(len(dates), dtype=int)
    index = {d.date(): i for i, d in enumerate(dates)}
    for year in sorted({d.year for d in dates}):
        easter = _easter(year)
        fixed = {
            date(year, 1, 1): "a",
            date(year, 5, 1): "a",
            date(year, 10, 3): "a",
            easter - timedelta(days=2): "b",
            easter + timedelta(days=1): "b",
            easter + timedelta(days=39): "a",
            easter + timedelta(days=50): "a",
            date(year, 12, 25): "c",
            date(year, 12, 26): "c",
        }
        for day, code in fixed.items():
            if day in index:
                state[index[day]] = code
        breaks = [
            (date(year, 1, 1), date(year, 1, 6)),
            (easter - timedelta(days=6), easter + timedelta(days=7)),
            (date(year, 7, 20), date(year, 8, 31)),
            (date(year, 10, 20), date(year, 10, 31)),
            (date(year, 12, 22), date(year, 12, 31)),
        ]
        for first, last in breaks:
            for offset in range((last - first).days + 1):
                i = index.get(first + timedelta(days=offset))
                if i is not None:
                    school[i] = 1
    return state, school


def store_frame(cfg: SyntheticConfig) -> pd.DataFrame:
    """store.csv attributes (nullable ints where the real file has empty fields)."""
    rng = np.random.default_rng([cfg.seed, 11])
    n = cfg.stores
    store_type = rng.choice(["a", "b", "c", "d"], size=n, p=[0.54, 0.015, 0.13, 0.315])
    assortment = np.where(store_type == "b", "b", rng.choice(["a", "c"], size=n, p=[0.53, 0.47]))
    distance = np.round(rng.lognormal(np.log(2300), 1.2, size=n) / 10) * 10 + 20
    has_competition_date = rng.random(n) > 0.32
    promo2 = (rng.random(n) < 0.51).astype(int)
    frame = pd.DataFrame(
        {
            "Store": np.arange(1, n + 1),
            "StoreType": store_type,
            "Assortment": assortment,
            "CompetitionDistance": pd.Series(distance).where(rng.random(n) > 0.01),
            "CompetitionOpenSinceMonth": pd.Series(rng.integers(1, 13, n)).where(
                has_competition_date
            ),
            "CompetitionOpenSinceYear": pd.Series(rng.integers(2000, 2015, n)).where(
                has_competition_date
            ),
            "Promo2": promo2,
            "Promo2SinceWeek": pd.Series(rng.integers(1, 51, n)).where(promo2 == 1),
            "Promo2SinceYear": pd.Series(rng.integers(2009, 2016, n)).where(promo2 == 1),
            "PromoInterval": np.where(
                promo2 == 1, rng.choice(_PROMO_INTERVALS, size=n, p=[0.59, 0.23, 0.18]), ""
            ),
        }
    )
    return frame


def sales_frames(cfg: SyntheticConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train rows ordered by Date descending then Store, store attributes)."""
    stores = store_frame(cfg)
    rng = np.random.default_rng([cfg.seed, 12])
    dates = pd.date_range(cfg.start_date, cfg.end_date, freq="D")
    if len(dates) == 0:
        raise ValueError(f"synthetic.start_date {cfg.start_date} is after end_date {cfg.end_date}")
    n_stores, n_days = len(stores), len(dates)
    level = rng.lognormal(np.log(5800), 0.3, n_stores)
    level *= np.where(stores["StoreType"].to_numpy() == "b", 1.8, 1.0)
    level *= np.where(stores["Assortment"].to_numpy() == "c", 1.1, 1.0)
    basket = rng.uniform(7.5, 12.0, n_stores)

    weekday = dates.dayofweek.to_numpy() + 1  # ISO: 1 = Monday .. 7 = Sunday
    doy = dates.dayofyear.to_numpy()
    weekly = np.array([1.18, 1.02, 0.97, 0.96, 1.04, 0.87, 0.0])[weekday - 1]
    yearly = 1 + 0.06 * np.sin(2 * np.pi * (doy - 100) / 365.25)
    christmas = 1 + 0.35 * ((dates.month == 12) & (dates.day >= 10) & (dates.day <= 24))
    promo = ((dates.isocalendar().week.to_numpy() % 2 == 0) & (weekday <= 5)).astype(int)
    state, school = _holidays(dates)

    shape = (n_stores, n_days)
    open_ = np.broadcast_to((weekday != 7) & (state == "0"), shape).copy()
    open_ &= rng.random(shape) > 0.003  # occasional closures (refurbishment, local events)
    noise = rng.lognormal(0.0, 0.08, shape)
    expected = (
        level[:, None]
        * (weekly * yearly * christmas * np.where(promo == 1, 1.22, 1.0) * (1 + 0.03 * school))[
            None, :
        ]
        * noise
    )
    sales = np.where(open_, np.round(expected), 0).astype(int)
    customers = np.where(
        open_, np.round(sales / (basket[:, None] * rng.lognormal(0, 0.05, shape))), 0
    ).astype(int)

    frame = pd.DataFrame(
        {
            "Store": np.repeat(stores["Store"].to_numpy(), n_days),
            "DayOfWeek": np.tile(weekday, n_stores),
            "Date": np.tile(dates.strftime("%Y-%m-%d").to_numpy(), n_stores),
            "Sales": sales.ravel(),
            "Customers": customers.ravel(),
            "Open": open_.ravel().astype(int),
            "Promo": np.tile(promo, n_stores),
            "StateHoliday": np.tile(state, n_stores),
            "SchoolHoliday": np.tile(school, n_stores),
        }
    )
    frame = frame.sort_values(["Date", "Store"], ascending=[False, True], kind="stable")
    return frame.reset_index(drop=True), stores


def format_train_csv(frame: pd.DataFrame) -> str:
    """Kaggle layout: header quoted, integers bare, StateHoliday/SchoolHoliday quoted."""
    columns = [
        frame["Store"], frame["DayOfWeek"], frame["Date"], frame["Sales"], frame["Customers"],
        frame["Open"], frame["Promo"], _quote(frame["StateHoliday"]), _quote(frame["SchoolHoliday"]),
    ]  # fmt: skip
    return _csv_text(columns, TRAIN_HEADER, ",", quote_header=True)


def format_store_csv(frame: pd.DataFrame) -> str:
    """Kaggle layout: strings quoted (empty PromoInterval as ""), missing numbers empty."""
    columns = [
        frame["Store"],
        _quote(frame["StoreType"]),
        _quote(frame["Assortment"]),
        _int_or_empty(frame["CompetitionDistance"]),
        _int_or_empty(frame["CompetitionOpenSinceMonth"]),
        _int_or_empty(frame["CompetitionOpenSinceYear"]),
        frame["Promo2"],
        _int_or_empty(frame["Promo2SinceWeek"]),
        _int_or_empty(frame["Promo2SinceYear"]),
        _quote(frame["PromoInterval"]),
    ]
    return _csv_text(columns, STORE_HEADER, ",", quote_header=True)


# ----------------------------------------------------------------------------------------------
# Bank marketing
# ----------------------------------------------------------------------------------------------
def _choice(rng: np.random.Generator, shares: dict[str, float], n: int) -> np.ndarray:
    labels = list(shares)
    p = np.array(list(shares.values()), dtype=float)
    return rng.choice(labels, size=n, p=p / p.sum())


def bank_frame(cfg: SyntheticConfig) -> pd.DataFrame:
    """bank-full rows; shares follow the real file, ``y`` from a logistic model (~11.7 % yes)."""
    rng = np.random.default_rng([cfg.seed, 21])
    n = cfg.bank_rows
    job = _choice(
        rng,
        {
            "blue-collar": 9732, "management": 9458, "technician": 7597, "admin.": 5171,
            "services": 4154, "retired": 2264, "self-employed": 1579, "entrepreneur": 1487,
            "unemployed": 1303, "housemaid": 1240, "student": 938, "unknown": 288,
        },
        n,
    )  # fmt: skip
    age = np.where(
        job == "retired",
        rng.normal(62, 8, n),
        np.where(job == "student", rng.normal(25, 4, n), rng.normal(40, 10, n)),
    )
    age = np.clip(np.round(age), 18, 95).astype(int)
    marital = np.where(
        age < 26,
        _choice(rng, {"single": 0.8, "married": 0.18, "divorced": 0.02}, n),
        _choice(rng, {"married": 0.62, "single": 0.26, "divorced": 0.12}, n),
    )
    education = _choice(
        rng, {"secondary": 23202, "tertiary": 13301, "primary": 6851, "unknown": 1857}, n
    )
    default = _choice(rng, {"no": 0.982, "yes": 0.018}, n)
    balance = np.round(rng.lognormal(6.4, 1.6, n) - rng.exponential(250, n)).astype(int)
    balance = np.clip(balance, -8019, 102127)
    housing = _choice(rng, {"yes": 0.556, "no": 0.444}, n)
    loan = _choice(rng, {"no": 0.84, "yes": 0.16}, n)
    contact = _choice(rng, {"cellular": 0.648, "unknown": 0.288, "telephone": 0.064}, n)
    month = _choice(
        rng,
        {
            "may": 13766, "jul": 6895, "aug": 6247, "jun": 5341, "nov": 3970, "apr": 2932,
            "feb": 2649, "jan": 1403, "oct": 738, "sep": 579, "mar": 477, "dec": 214,
        },
        n,
    )  # fmt: skip
    days_in_month = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
    month_index = np.array([_MONTHS.index(m) for m in month])
    day = np.minimum(rng.integers(1, 32, n), days_in_month[month_index])
    duration = np.round(rng.gamma(1.6, 160, n)).astype(int)
    campaign = np.minimum(rng.geometric(0.38, n), 63)
    contacted = rng.random(n) < 0.18
    pdays = np.where(contacted, rng.integers(1, 400, n), -1)
    previous = np.where(contacted, np.minimum(rng.geometric(0.4, n), 40), 0)
    poutcome = np.where(
        contacted, _choice(rng, {"failure": 0.59, "other": 0.22, "success": 0.19}, n), "unknown"
    )
    logit = (
        0.0045 * (duration - 258)
        + 2.2 * (poutcome == "success")
        + 0.8 * np.isin(month, ["mar", "sep", "oct", "dec"])
        - 0.6 * (housing == "yes")
        - 0.9 * (contact == "unknown")
        - 0.12 * (campaign - 1)
        + 0.5 * np.isin(job, ["student", "retired"])
    )
    # Intercept by bisection so the expected share of yes is 11.7 % (as in bank-full).
    low, high = -10.0, 5.0
    for _ in range(60):
        mid = (low + high) / 2
        if np.mean(1 / (1 + np.exp(-(mid + logit)))) < 0.117:
            low = mid
        else:
            high = mid
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-(low + logit))), "yes", "no")
    return pd.DataFrame(
        {
            "age": age, "job": job, "marital": marital, "education": education,
            "default": default, "balance": balance, "housing": housing, "loan": loan,
            "contact": contact, "day": day, "month": month, "duration": duration,
            "campaign": campaign, "pdays": pdays, "previous": previous, "poutcome": poutcome,
            "y": y,
        }
    )  # fmt: skip


def format_bank_csv(frame: pd.DataFrame) -> str:
    """UCI layout: ';'-separated, strings quoted, numbers bare, header quoted."""
    numeric = {"age", "balance", "day", "duration", "campaign", "pdays", "previous"}
    columns = [frame[c] if c in numeric else _quote(frame[c]) for c in BANK_HEADER]
    return _csv_text(columns, BANK_HEADER, ";", quote_header=True)


# ----------------------------------------------------------------------------------------------
# Taxi rides
# ----------------------------------------------------------------------------------------------
# Relative pickup volume per hour of day (NYC yellow cabs: quiet at 4-5 am, peak in the evening).
_HOURLY = np.array(
    [3.4, 2.5, 1.8, 1.3, 1.0, 1.1, 2.2, 3.6, 4.3, 4.4, 4.3, 4.5,
     4.7, 4.8, 5.0, 5.0, 4.6, 5.3, 6.0, 6.1, 5.5, 5.3, 5.1, 4.3]
)  # fmt: skip


def rides_frame(cfg: SyntheticConfig) -> pd.DataFrame:
    """Yellow-taxi rides over ``rides_days`` days from ``rides_start_date`` (string fields)."""
    rng = np.random.default_rng([cfg.seed, 31])
    n = cfg.rides_rows
    start = datetime.fromisoformat(cfg.rides_start_date)
    day = rng.integers(0, max(cfg.rides_days, 1), n)
    hour = rng.choice(24, size=n, p=_HOURLY / _HOURLY.sum())
    second = rng.integers(0, 3600, n)
    pickup = (
        pd.Timestamp(start)
        + pd.to_timedelta(day, unit="D")
        + pd.to_timedelta(hour, unit="h")
        + pd.to_timedelta(second, unit="s")
    )
    weekday = pickup.dayofweek.to_numpy()
    rush = ((hour >= 7) & (hour <= 9)) | ((hour >= 16) & (hour <= 19))
    night = (hour >= 22) | (hour <= 5)

    airport = rng.random(n) < 0.03
    distance = np.where(
        airport, rng.normal(17.5, 1.5, n), rng.lognormal(np.log(1.6), 0.75, n)
    ).clip(0.1, 60)
    speed = np.clip(rng.normal(12 - 3.5 * rush + 6 * night, 3, n), 3, 45)  # mph
    seconds = np.maximum(distance / speed * 3600 + rng.normal(60, 30, n), 60).round()
    minutes = seconds / 60
    fare = np.where(airport, 52.0, np.round((2.5 + 2.2 * distance + 0.35 * minutes) * 2) / 2)
    extra = np.where((hour >= 16) & (hour <= 19) & (weekday < 5), 1.0, np.where(night, 0.5, 0.0))
    payment = rng.choice([1, 2, 3, 4], size=n, p=[0.70, 0.28, 0.015, 0.005])
    tip = np.where(payment == 1, np.round(fare * rng.uniform(0.12, 0.28, n), 2), 0.0)
    tolls = np.where((airport & (rng.random(n) < 0.5)) | (rng.random(n) < 0.03), 5.76, 0.0)
    congestion = np.where(rng.random(n) < 0.88, 2.5, 0.0)

    zones = rng.permutation(np.arange(1, 264))
    weights = 1.0 / np.arange(1, 264) ** 1.1
    pu = rng.choice(zones, size=n, p=weights / weights.sum())
    do = rng.choice(zones, size=n, p=weights / weights.sum())
    passengers = rng.choice(
        [1, 2, 3, 4, 5, 6, 0], size=n, p=[0.70, 0.14, 0.04, 0.02, 0.05, 0.03, 0.02]
    )

    # Planted quirks at fixed (seeded) positions.
    spots = rng.choice(n, size=min(n, 5), replace=False)
    dropoff = pickup + pd.to_timedelta(seconds, unit="s")
    if len(spots) == 5:
        zero, before, far = spots[:3], spots[3], spots[4]
        distance[zero] = 0.0
        fare[zero] = 2.5
        tip[zero] = 0.0
        dropoff_values = dropoff.to_numpy().copy()
        dropoff_values[before] = (pickup[before] - pd.Timedelta(minutes=5)).to_datetime64()
        pickup_values = pickup.to_numpy().copy()
        far_pickup = pd.Timestamp(start.year - 10, 12, 31, 23, 49, 36)
        pickup_values[far] = far_pickup.to_datetime64()
        dropoff_values[far] = (far_pickup + pd.Timedelta(minutes=14, seconds=16)).to_datetime64()
        pickup, dropoff = pd.DatetimeIndex(pickup_values), pd.DatetimeIndex(dropoff_values)

    total = fare + extra + 0.5 + tip + tolls + 0.3
    in_2019 = pickup >= pd.Timestamp(2019, 1, 1)
    total = np.where(in_2019, total + congestion, total)
    # TLC: congestion surcharge only from 2019; vendor/passenger/rate/flag/payment sometimes
    # empty from 2019-07.
    blank = (pickup >= pd.Timestamp(2019, 7, 1)) & (rng.random(n) < 0.023)
    rate_code = np.where(airport, 2, 1)
    flag = np.where(rng.random(n) < 0.01, "Y", "N")

    def optional(values: np.ndarray) -> pd.Series:
        return pd.Series(values).astype(str).where(~blank, "")

    return pd.DataFrame(
        {
            "vendor_id": optional(rng.choice([1, 2], size=n, p=[0.37, 0.63])),
            "pickup_datetime": pickup.strftime("%Y-%m-%d %H:%M:%S"),
            "dropoff_datetime": dropoff.strftime("%Y-%m-%d %H:%M:%S"),
            "passenger_count": optional(passengers),
            "trip_distance": _money(distance),
            "rate_code_id": optional(rate_code),
            "store_and_fwd_flag": optional(flag),
            "pickup_location_id": pu.astype(str),
            "dropoff_location_id": do.astype(str),
            "payment_type": optional(payment),
            "fare_amount": _money(fare),
            "extra": _money(extra),
            "mta_tax": _money(np.full(n, 0.5)),
            "tip_amount": _money(tip),
            "tolls_amount": _money(tolls),
            "improvement_surcharge": _money(np.full(n, 0.3)),
            "total_amount": _money(total),
            "congestion_surcharge": _money(congestion).where(in_2019, ""),
        }
    )


def format_rides_csv(frame: pd.DataFrame) -> str:
    """TLC sample layout: comma-separated, nothing quoted, empty optional fields."""
    return _csv_text([frame[c] for c in RIDES_HEADER], RIDES_HEADER, ",", quote_header=False)
