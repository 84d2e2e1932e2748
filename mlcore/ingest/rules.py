"""Parse and validate ingest sources in Spark: all-string rows in, (good, bad) rows out.

No table IO and no tracking here, so every rule is testable on a hand-made DataFrame.

Input ("raw") frames have one string column per source column, named by the contract's
snake_case names, plus optionally ``_corrupt_record`` (the CSV reader's malformed-line column)
and ``_line`` (file order; used to keep the *first* of duplicate rows deterministically).

Each row gets at most one ``rule`` (short code of the first rule it breaks, in the order
malformed -> missing -> unparseable -> value domain/range -> row rules -> duplicate) and a
``reason`` naming every broken rule with the offending value. ``rule IS NULL`` is a good row, so
good + bad == input by construction, and the caller can count both from one cached frame.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.sql import Window
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, DoubleType, IntegerType, StringType, TimestampType

from mlcore.config.models import TableRules
from mlcore.ingest.schemas import BANK, CALENDAR, RIDES, SALES, STORES, TableContract

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import StructField

CORRUPT_COLUMN = "_corrupt_record"
LINE_COLUMN = "_line"
RAW_PREFIX = "_raw_"
RULE = "rule"
REASON = "reason"

# Rule codes (the ``rule`` column of quarantine tables).
MALFORMED_LINE = "malformed_line"
MISSING_VALUE = "missing_value"
UNPARSEABLE = "unparseable"
OUT_OF_DOMAIN = "out_of_domain"
NEGATIVE_VALUE = "negative_value"
OUT_OF_RANGE = "out_of_range"
DAY_OF_WEEK_MISMATCH = "day_of_week_mismatch"
DROPOFF_BEFORE_PICKUP = "dropoff_before_pickup"
RIDE_TOO_LONG = "ride_too_long"
OUTSIDE_PERIOD = "outside_period"
IMPLAUSIBLE_DATE = "implausible_date"
DUPLICATE_KEY = "duplicate_key"

_REASON_VALUE_CHARS = 200


@dataclass(frozen=True)
class Check:
    """One row rule: ``failed`` is true when the row breaks it (null counts as passing)."""

    rule: str
    failed: Column
    reason: Column


@dataclass(frozen=True)
class ValueRule:
    """Domain or range of one parsed column; nulls pass (nullability is the schema's job)."""

    column: str
    allowed: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class Period:
    """A file's period: whole months, ``end`` exclusive."""

    start: date
    end: date

    def __str__(self) -> str:
        return f"{self.start.isoformat()}..{(self.end - timedelta(days=1)).isoformat()}"

    @property
    def days(self) -> int:
        return (self.end - self.start).days


# What pandas (datetime64[ns]) and Arrow-to-pandas conversions can hold: a date outside it makes
# a per-group model fail with OutOfBoundsDatetime, however plausible the rest of the data is.
PANDAS_MIN_DATE = date(1677, 9, 22)
PANDAS_MAX_DATE = date(2262, 4, 10)


@dataclass(frozen=True)
class DatePolicy:
    """Plausible dates for every date and timestamp column of an ingested source.

    A value must lie in ``[min_date, run_date + max_days_after_run_date]`` (and always inside
    what pandas timestamps hold), and within ``max_days_outside_period`` days of the file's own
    period (:func:`infer_period`). Rows outside go to quarantine (``implausible_date`` /
    ``outside_period``) instead of making a stale table look fresh or failing a model later.
    """

    run_date: date | None = None
    min_date: date = date(1900, 1, 1)
    max_days_after_run_date: int = 1830
    max_days_outside_period: int = 7

    @property
    def low(self) -> date:
        return max(self.min_date, PANDAS_MIN_DATE)

    @property
    def high(self) -> date:
        """The latest plausible date (inclusive)."""
        if self.run_date is None:
            return PANDAS_MAX_DATE
        latest = self.run_date + timedelta(days=self.max_days_after_run_date)
        return min(latest, PANDAS_MAX_DATE)


def dated_columns(contract: TableContract) -> list[str]:
    """The contract's parsed date and timestamp columns."""
    return [
        f.name for f in contract.parsed_fields if isinstance(f.dataType, (DateType, TimestampType))
    ]


def plausible_date_checks(contract: TableContract, policy: DatePolicy) -> list[Check]:
    """``implausible_date``: a date before ``policy.low`` or after ``policy.high``."""
    checks = []
    for name in dated_columns(contract):
        day = F.to_date(F.col(name))
        low, high = policy.low, policy.high
        after = (
            f"after the run date {policy.run_date} + {policy.max_days_after_run_date} days "
            f"(ingest.max_days_after_run_date) = {high}"
            if policy.run_date is not None and high < PANDAS_MAX_DATE
            else f"after {high}, the latest date pandas timestamps hold"
        )
        checks.append(
            Check(
                IMPLAUSIBLE_DATE,
                (day < F.lit(low)) | (day > F.lit(high)),
                F.concat(
                    F.lit(f"{name}: "),
                    _quoted(name),
                    F.when(
                        day < F.lit(low), F.lit(f" is before {low} (ingest.min_date)")
                    ).otherwise(F.lit(f" is {after}")),
                ),
            )
        )
    return checks


def outside_period_check(
    columns: Sequence[str], period: Period, max_days_outside_period: int
) -> Check:
    """``outside_period``: a value more than ``max_days_outside_period`` days outside the
    file's period (in any of ``columns``; the reason names the first such column)."""
    margin = timedelta(days=max_days_outside_period)
    # Bounds as session-time-zone timestamps, exactly like parsed timestamps (a Python datetime
    # literal would be converted in the driver's OS time zone instead); dates compare as dates.
    low = F.to_timestamp(F.lit(f"{period.start - margin} 00:00:00"))
    high = F.to_timestamp(F.lit(f"{period.end + margin} 00:00:00"))
    outside = {
        c: (F.col(c).cast("timestamp") < low) | (F.col(c).cast("timestamp") >= high)
        for c in columns
    }
    which = None
    value = None
    for column in columns:
        which = (F.when if which is None else which.when)(outside[column], F.lit(f"{column} "))
        value = (F.when if value is None else value.when)(outside[column], _clean(column))
    if which is None or value is None:
        raise ValueError("an outside-period check needs at least one column")
    return Check(
        OUTSIDE_PERIOD,
        functools.reduce(lambda a, b: a | b, outside.values()),
        F.concat(
            which,
            value,
            F.lit(
                f" is more than {max_days_outside_period} days outside the file's period {period}"
            ),
        ),
    )


def date_checks(contract: TableContract, policy: DatePolicy, period: Period | None) -> list[Check]:
    """Every dated source's date rules: plausible range, then the file's own period."""
    checks = plausible_date_checks(contract, policy)
    columns = dated_columns(contract)
    if period is not None and columns:
        checks.append(outside_period_check(columns, period, policy.max_days_outside_period))
    return checks


# The value rules (domains and ranges) are config: ``validation.tables.<table>`` (ranges,
# allowed_values) in conf/base/validation.yml. Jobs pass their run's rules; callers without a
# config (tests, notebooks) get the shipped ones.
def value_rules(rules: TableRules) -> tuple[ValueRule, ...]:
    """A table's configured ranges and allowed values as ingest value rules."""
    columns = dict.fromkeys([*rules.ranges, *rules.allowed_values])
    out = []
    for column in columns:
        bounds = rules.ranges.get(column)
        allowed = rules.allowed_values.get(column)
        out.append(
            ValueRule(
                column,
                allowed=tuple(allowed) if allowed is not None else None,
                minimum=bounds.minimum if bounds else None,
                maximum=bounds.maximum if bounds else None,
            )
        )
    return tuple(out)


@functools.cache
def shipped_value_rules(table: str) -> tuple[ValueRule, ...]:
    """The value rules of ``conf/base`` (for callers that have no job config)."""
    from mlcore.config.loader import load_config

    packaged = Path(__file__).resolve().parents[2] / "conf"  # a checkout or an installed tree
    config = load_config("base", conf_dir=packaged if packaged.is_dir() else None, environ={})
    return value_rules(config.validation.tables.get(table, TableRules()))


def _rules_or_shipped(table: str, rules: Sequence[ValueRule] | None) -> Sequence[ValueRule]:
    return shipped_value_rules(table) if rules is None else rules


# ----------------------------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------------------------
def _raw(name: str) -> Column:
    return F.col(RAW_PREFIX + name)


def _clean(name: str) -> Column:
    """Trimmed raw value, empty -> null (quoted "" and unquoted empty mean the same)."""
    return F.nullif(F.trim(_raw(name)), F.lit(""))


def _describe_type(field: StructField, contract: TableContract) -> str:
    tp = field.dataType
    if isinstance(tp, IntegerType):
        return "an integer"
    if isinstance(tp, DoubleType):
        return "a number"
    if isinstance(tp, DateType):
        return f"a date ({contract.date_format})"
    if isinstance(tp, TimestampType):
        return f"a timestamp ({contract.timestamp_format})"
    return "a string"


def _parse_value(field: StructField, contract: TableContract) -> Column:
    """Typed value, null when empty or unparseable (``try_*``: no ANSI errors, no lenient casts)."""
    value = _clean(field.name)
    tp = field.dataType
    if isinstance(tp, IntegerType):
        return value.try_cast("int")
    if isinstance(tp, DoubleType):
        number = value.try_cast("double")
        finite = ~F.isnan(number) & (F.abs(number) != F.lit(float("inf")))
        return F.when(finite, number)
    if isinstance(tp, DateType):
        return F.try_to_date(value, contract.date_format)
    if isinstance(tp, TimestampType):
        return F.try_to_timestamp(value, F.lit(contract.timestamp_format))
    if isinstance(tp, StringType):
        return value
    raise ValueError(f"{contract.table}.{field.name}: unsupported type {tp.simpleString()}")


def parse(raw: DataFrame, contract: TableContract) -> DataFrame:
    """Keep the raw strings (as ``_raw_<col>``) and add the typed columns of the contract."""
    missing = [c for c in contract.columns if c not in raw.columns]
    if missing:
        raise ValueError(f"{contract.table}: raw frame lacks columns {missing}")
    df = raw
    if CORRUPT_COLUMN not in df.columns:
        df = df.withColumn(CORRUPT_COLUMN, F.lit(None).cast("string"))
    if LINE_COLUMN not in df.columns:
        df = df.withColumn(LINE_COLUMN, F.monotonically_increasing_id())
    df = df.select(
        *[F.col(c).cast("string").alias(RAW_PREFIX + c) for c in contract.columns],
        F.col(CORRUPT_COLUMN),
        F.col(LINE_COLUMN),
    )
    return df.select(
        "*", *[_parse_value(f, contract).alias(f.name) for f in contract.parsed_fields]
    )


# ----------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------
def _number_text(value: float) -> str:
    return f"{value:g}"


def _quoted(name: str) -> Column:
    return F.concat(F.lit("'"), F.substring(_clean(name), 1, _REASON_VALUE_CHARS), F.lit("'"))


def value_checks(rule: ValueRule) -> list[Check]:
    """The domain/range checks of one column (on the typed value)."""
    column = F.col(rule.column)
    checks = []
    if rule.allowed is not None:
        listed = ", ".join(str(v) for v in rule.allowed)
        checks.append(
            Check(
                OUT_OF_DOMAIN,
                ~column.isin(list(rule.allowed)),
                F.concat(
                    F.lit(f"{rule.column}: value "),
                    _quoted(rule.column),
                    F.lit(f" not in {{{listed}}}"),
                ),
            )
        )
    if rule.minimum == 0 and rule.maximum is None:
        checks.append(
            Check(
                NEGATIVE_VALUE,
                column < F.lit(0),
                F.concat(F.lit(f"{rule.column}: negative value "), _clean(rule.column)),
            )
        )
    elif rule.minimum is not None or rule.maximum is not None:
        low = F.lit(True) if rule.minimum is None else column >= F.lit(rule.minimum)
        high = F.lit(True) if rule.maximum is None else column <= F.lit(rule.maximum)
        lo_text = "-inf" if rule.minimum is None else _number_text(rule.minimum)
        hi_text = "inf" if rule.maximum is None else _number_text(rule.maximum)
        checks.append(
            Check(
                OUT_OF_RANGE,
                ~(low & high),
                F.concat(
                    F.lit(f"{rule.column}: value "),
                    _clean(rule.column),
                    F.lit(f" outside [{lo_text}, {hi_text}]"),
                ),
            )
        )
    return checks


def column_checks(contract: TableContract, rules: Sequence[ValueRule] = ()) -> list[Check]:
    """Missing required values, unparseable values, then domain/range rules."""
    known = set(contract.columns) | set(contract.data_columns)
    unknown = [r.column for r in rules if r.column not in known]
    if unknown:
        raise ValueError(f"{contract.table}: value rules for unknown columns {unknown}")
    missing = [
        Check(MISSING_VALUE, _clean(f.name).isNull(), F.lit(f"{f.name}: missing value"))
        for f in contract.parsed_fields
        if not f.nullable
    ]
    unparseable = [
        Check(
            UNPARSEABLE,
            _clean(f.name).isNotNull() & F.col(f.name).isNull(),
            F.concat(F.lit(f"{f.name}: not {_describe_type(f, contract)} "), _quoted(f.name)),
        )
        for f in contract.parsed_fields
        if not isinstance(f.dataType, StringType)
    ]
    values = [check for rule in rules for check in value_checks(rule)]
    return missing + unparseable + values


def _malformed_reason(contract: TableContract) -> Column:
    return F.concat(
        F.lit(f"malformed line: expected {len(contract.header)} fields separated by "),
        F.lit(f"'{contract.delimiter}': "),
        F.substring(F.col(CORRUPT_COLUMN), 1, _REASON_VALUE_CHARS),
    )


def _key_text(keys: Sequence[str]) -> Column:
    if len(keys) > 3:
        return F.lit("record identical to an earlier row")
    parts = [
        F.concat(F.lit(f"{k}="), F.coalesce(F.col(k).cast("string"), F.lit("null"))) for k in keys
    ]
    return F.concat(F.lit("key ("), F.concat_ws(", ", *parts), F.lit(")"))


def classify(parsed: DataFrame, contract: TableContract, checks: Sequence[Check]) -> DataFrame:
    """Add ``rule``/``reason`` (null for good rows); of duplicate keys the first line is kept.

    Duplicates are ranked among otherwise-good rows only, so a broken row never displaces a
    good one with the same key.
    """
    malformed = F.col(CORRUPT_COLUMN).isNotNull()
    rule = F.when(malformed, F.lit(MALFORMED_LINE))
    for check in checks:
        rule = rule.when(F.coalesce(check.failed, F.lit(False)), F.lit(check.rule))
    reasons = [F.when(F.coalesce(c.failed, F.lit(False)), c.reason) for c in checks]
    reason = F.when(malformed, _malformed_reason(contract)).otherwise(
        F.nullif(F.concat_ws("; ", *reasons), F.lit("")) if reasons else F.lit(None)
    )
    # A reason is never null for a bad row, even if a check's text had a null part.
    reason = F.coalesce(reason.cast("string"), F.concat(F.lit("rule "), rule))
    df = parsed.withColumn(RULE, rule).withColumn(REASON, F.when(rule.isNotNull(), reason))
    if not contract.keys:
        return df
    ok = "_ok"
    window = Window.partitionBy(F.col(ok), *[F.col(k) for k in contract.keys]).orderBy(LINE_COLUMN)
    df = df.withColumn(ok, F.col(RULE).isNull())
    duplicate = F.col(ok) & (F.row_number().over(window) > 1)
    df = df.withColumn("_duplicate", duplicate)
    return df.select(
        *[c for c in df.columns if c not in (RULE, REASON, ok, "_duplicate")],
        F.when(F.col("_duplicate"), F.lit(DUPLICATE_KEY)).otherwise(F.col(RULE)).alias(RULE),
        F.when(
            F.col("_duplicate"),
            F.concat(
                F.lit("duplicate "),
                _key_text(contract.keys),
                F.lit(": the first row in file order was kept"),
            ),
        )
        .otherwise(F.col(REASON))
        .alias(REASON),
    )


def split(classified: DataFrame, contract: TableContract) -> tuple[DataFrame, DataFrame]:
    """Good rows as typed contract columns; bad rows as raw strings + raw_line, rule, reason."""
    good = classified.where(F.col(RULE).isNull()).select(*[F.col(c) for c in contract.data_columns])
    bad = classified.where(F.col(RULE).isNotNull()).select(
        *[_raw(c).alias(c) for c in contract.columns],
        F.col(CORRUPT_COLUMN).alias("raw_line"),
        F.col(RULE),
        F.col(REASON),
    )
    return good, bad


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------
def classify_sales(
    raw: DataFrame, rules: Sequence[ValueRule] | None = None, dates: DatePolicy | None = None
) -> DataFrame:
    """Rossmann daily sales; DayOfWeek must agree with Date (1 = Monday .. 7 = Sunday); dates
    plausible (``DatePolicy``) and within the file's own period."""
    parsed = parse(raw, SALES)
    iso_weekday = F.weekday(F.col("date")) + 1
    weekday = Check(
        DAY_OF_WEEK_MISMATCH,
        F.col("day_of_week").between(1, 7) & (F.col("day_of_week") != iso_weekday),
        F.concat(
            F.lit("day_of_week: "),
            F.col("day_of_week").cast("string"),
            F.lit(" but "),
            F.col("date").cast("string"),
            F.lit(" is weekday "),
            iso_weekday.cast("string"),
        ),
    )
    checks = column_checks(SALES, _rules_or_shipped(SALES.table, rules))
    return classify(parsed, SALES, [*checks, *_dated(parsed, SALES, dates), weekday])


def classify_calendar(
    raw: DataFrame, rules: Sequence[ValueRule] | None = None, dates: DatePolicy | None = None
) -> DataFrame:
    """Rossmann test.csv (future calendar): the ``forecast_calendar`` rules."""
    parsed = parse(raw, CALENDAR)
    checks = column_checks(CALENDAR, _rules_or_shipped(CALENDAR.table, rules))
    return classify(parsed, CALENDAR, [*checks, *_dated(parsed, CALENDAR, dates)])


def _dated(parsed: DataFrame, contract: TableContract, dates: DatePolicy | None) -> list[Check]:
    """The date rules of ``contract`` with the period inferred from the parsed rows."""
    policy = dates or DatePolicy()
    columns = dated_columns(contract)
    period = infer_period(parsed, columns[0], policy=policy) if columns else None
    return date_checks(contract, policy, period)


def classify_stores(raw: DataFrame, rules: Sequence[ValueRule] | None = None) -> DataFrame:
    checks = column_checks(STORES, _rules_or_shipped(STORES.table, rules))
    return classify(parse(raw, STORES), STORES, checks)


def classify_bank(raw: DataFrame, rules: Sequence[ValueRule] | None = None) -> DataFrame:
    return classify(
        parse(raw, BANK), BANK, column_checks(BANK, _rules_or_shipped(BANK.table, rules))
    )


def parse_rides(raw: DataFrame) -> DataFrame:
    """Typed rides plus the derived ``pickup_date`` and its month ``pickup_month`` (YYYY-MM, the
    table's partition column)."""
    pickup_date = F.to_date(F.col("pickup_datetime"))
    return parse(raw, RIDES).withColumns(
        {"pickup_date": pickup_date, "pickup_month": F.date_format(pickup_date, "yyyy-MM")}
    )


def infer_period(
    parsed: DataFrame,
    column: str = "pickup_datetime",
    min_share_of_peak: float = 0.01,
    max_gap_months: int = 2,
    policy: DatePolicy | None = None,
) -> Period | None:
    """The file's period from the data: whole months, robust to stray dates.

    Rows are counted per calendar month (one small aggregation). The period is the run of months
    around the busiest one in which consecutive months are at most ``max_gap_months`` apart and
    each holds at least ``min_share_of_peak`` of the busiest month's rows: a ride dated 2008 in a
    2019 file, a sales row dated 2031 or 0015, or a few trips from the neighbouring month's last
    night cannot widen it. Dates outside ``policy``'s plausible range are ignored. ``None`` when
    nothing parses.
    """
    policy = policy or DatePolicy()
    day = F.to_date(F.col(column))
    month = F.date_trunc("month", F.col(column)).cast("date").alias("month")
    rows = (
        parsed.where(
            F.col(column).isNotNull()
            & F.col(CORRUPT_COLUMN).isNull()
            & (day >= F.lit(policy.low))
            & (day <= F.lit(policy.high))
        )
        .groupBy(month)
        .count()
        .collect()
    )
    if not rows:
        return None
    peak = max(r["count"] for r in rows)
    months = sorted(r["month"] for r in rows if r["count"] >= min_share_of_peak * peak)
    counts = {r["month"]: r["count"] for r in rows}
    ordinal = {m: m.year * 12 + m.month for m in months}
    centre = months.index(max(months, key=lambda m: counts[m]))  # the earliest busiest month
    first = last = centre
    while first > 0 and ordinal[months[first]] - ordinal[months[first - 1]] <= max_gap_months:
        first -= 1
    while (
        last + 1 < len(months)
        and ordinal[months[last + 1]] - ordinal[months[last]] <= max_gap_months
    ):
        last += 1
    start, final = months[first], months[last]
    end = date(final.year + (final.month == 12), final.month % 12 + 1, 1)
    return Period(start=start, end=end)


def ride_checks(
    period: Period | None, max_ride_hours: float, max_days_outside_period: int
) -> list[Check]:
    """Dropoff before pickup, rides longer than allowed, timestamps far outside the period."""
    pickup, dropoff = F.col("pickup_datetime"), F.col("dropoff_datetime")
    seconds = F.unix_timestamp(dropoff) - F.unix_timestamp(pickup)
    checks = [
        Check(
            DROPOFF_BEFORE_PICKUP,
            dropoff < pickup,
            F.concat(
                F.lit("dropoff_datetime "),
                _clean("dropoff_datetime"),
                F.lit(" is before pickup_datetime "),
                _clean("pickup_datetime"),
            ),
        ),
        Check(
            RIDE_TOO_LONG,
            seconds > F.lit(max_ride_hours * 3600.0),
            F.concat(
                F.lit("duration "),
                F.format_number(seconds / 3600.0, 1),
                F.lit(f" h exceeds ingest.max_ride_hours {_number_text(max_ride_hours)}"),
            ),
        ),
    ]
    if period is not None:
        checks.append(
            outside_period_check(
                ("pickup_datetime", "dropoff_datetime"), period, max_days_outside_period
            )
        )
    return checks


def classify_rides(
    parsed: DataFrame,
    period: Period | None,
    max_ride_hours: float,
    max_days_outside_period: int,
    rules: Sequence[ValueRule] | None = None,
    dates: DatePolicy | None = None,
) -> DataFrame:
    """Classify rides parsed by ``parse_rides`` against ``period`` (see ``infer_period``)."""
    checks = column_checks(RIDES, _rules_or_shipped(RIDES.table, rules))
    checks += plausible_date_checks(RIDES, dates or DatePolicy())
    checks += ride_checks(period, max_ride_hours, max_days_outside_period)
    return classify(parsed, RIDES, checks)


# ----------------------------------------------------------------------------------------------
# Convenience: raw -> (good, bad)
# ----------------------------------------------------------------------------------------------
def validate_sales(raw: DataFrame) -> tuple[DataFrame, DataFrame]:
    return split(classify_sales(raw), SALES)


def validate_stores(raw: DataFrame) -> tuple[DataFrame, DataFrame]:
    return split(classify_stores(raw), STORES)


def validate_bank(raw: DataFrame) -> tuple[DataFrame, DataFrame]:
    return split(classify_bank(raw), BANK)


def validate_rides(
    raw: DataFrame,
    max_ride_hours: float,
    max_days_outside_period: int,
    period: Period | None = None,
) -> tuple[DataFrame, DataFrame, Period | None]:
    """Rides: the period is inferred from the data unless given."""
    parsed = parse_rides(raw)
    if period is None:
        period = infer_period(parsed)
    classified = classify_rides(parsed, period, max_ride_hours, max_days_outside_period)
    good, bad = split(classified, RIDES)
    return good, bad, period
