"""Ride features for anomaly detection, and the rules that keep unusable rides out of them.

Features come from a fixed menu of Spark expressions (``FEATURES``). Rides whose features would
be meaningless (zero distance, zero or negative duration, implausible duration or speed, missing
values) are not silently dropped: ``classify_rides`` gives each one the first failing rule and a
readable reason, and the jobs write them to a quarantine table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from mlcore.config.models import AnomalyConfig

ROW_KEY = "row_key"
RULE, REASON = "rule", "reason"


def _seconds() -> Column:
    from pyspark.sql import functions as F

    return F.unix_timestamp("dropoff_datetime") - F.unix_timestamp("pickup_datetime")


def _distance() -> Column:
    from pyspark.sql import functions as F

    return F.col("trip_distance").cast("double")


def _duration_minutes() -> Column:
    return _seconds().cast("double") / 60.0


def _speed() -> Column:
    from pyspark.sql import functions as F

    seconds = _seconds()
    return F.when(seconds > 0, _distance() / (seconds / 3600.0))


def _fare() -> Column:
    from pyspark.sql import functions as F

    return F.col("fare_amount").cast("double")


def _fare_per_mile() -> Column:
    from pyspark.sql import functions as F

    return F.when(_distance() > 0, _fare() / _distance())


def _pickup_hour() -> Column:
    from pyspark.sql import functions as F

    return (F.hour("pickup_datetime") + F.minute("pickup_datetime") / 60.0).cast("double")


FEATURES: dict[str, Callable[[], Column]] = {
    "distance_miles": _distance,
    "duration_minutes": _duration_minutes,
    "speed_mph": _speed,
    "fare_amount": _fare,
    "fare_per_mile": _fare_per_mile,
    "pickup_hour": _pickup_hour,
}
SOURCE_COLUMNS = ("pickup_datetime", "dropoff_datetime", "trip_distance", "fare_amount")


@dataclass(frozen=True)
class Rule:
    name: str
    failed: Callable[[AnomalyConfig], Column]
    reason: Callable[[AnomalyConfig], Column]


def _text(column: Column) -> Column:
    from pyspark.sql import functions as F

    return F.coalesce(column.cast("string"), F.lit("null"))


def _rules() -> list[Rule]:
    from pyspark.sql import functions as F

    return [
        Rule(
            "missing_value",
            lambda c: F.greatest(*[F.col(s).isNull() for s in SOURCE_COLUMNS]),
            lambda c: F.lit("pickup/dropoff time, trip_distance or fare_amount is null"),
        ),
        Rule(
            "zero_distance",
            lambda c: _distance() <= F.lit(c.min_distance_miles),
            lambda c: F.concat(F.lit("trip_distance "), _text(_distance()), F.lit(f" <= {c.min_distance_miles:g} miles")),
        ),
        Rule(
            "non_positive_duration",
            lambda c: _seconds() <= 0,
            lambda c: F.concat(F.lit("duration "), _text(_seconds()), F.lit(" s: dropoff not after pickup")),
        ),
        Rule(
            "duration_too_long",
            lambda c: _seconds() > F.lit(c.max_duration_hours * 3600.0),
            lambda c: F.concat(
                F.lit("duration "), F.format_number(_seconds() / 3600.0, 2), F.lit(f" h > {c.max_duration_hours:g} h")
            ),
        ),
        Rule(
            "speed_implausible",
            lambda c: _speed() > F.lit(c.max_speed_mph),
            lambda c: F.concat(F.lit("speed "), F.format_number(_speed(), 1), F.lit(f" mph > {c.max_speed_mph:g} mph")),
        ),
    ]


def check_feature_names(names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in FEATURES]
    if unknown or not names:
        raise ValueError(f"unknown or no ride features {list(unknown)}; choose from {sorted(FEATURES)}")


def classify_rides(rides: DataFrame, config: AnomalyConfig, features: Sequence[str]) -> DataFrame:
    """``rides`` plus ``rule``/``reason`` (null for usable rides; first failing rule otherwise).

    A feature that is still null after the rules (e.g. fare_per_mile) is a ``missing_value``.
    """
    from pyspark.sql import functions as F

    rule, reason = F.lit(None).cast("string"), F.lit(None).cast("string")
    feature_null = F.greatest(*[FEATURES[n]().isNull() for n in features])
    checks = [*_rules(), Rule("missing_value", lambda c: feature_null, lambda c: F.lit("a configured feature is null"))]
    for check in reversed(checks):
        failed = F.coalesce(check.failed(config), F.lit(False))
        rule = F.when(failed, F.lit(check.name)).otherwise(rule)
        reason = F.when(failed, check.reason(config)).otherwise(reason)
    return rides.withColumn(RULE, rule).withColumn(REASON, reason)


def with_features(rides: DataFrame, names: Sequence[str]) -> DataFrame:
    return rides.select("*", *[FEATURES[n]().alias(n) for n in names])


def row_key(columns: Sequence[str]) -> Column:
    """``xxhash64`` over the ride's source columns: TLC trips have no id."""
    from pyspark.sql import functions as F

    return F.xxhash64(*[F.col(f"`{c}`") for c in columns])
