"""Replace-where predicates as data, rendered safely for each engine.

Predicates are a mapping ``column -> value`` (or list of values for IN), conjunctive. Keeping
them structured rather than free SQL lets us validate them, check rows against them on the
executors, and render literals with correct quoting for Spark SQL and for delta-rs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timezone
from typing import Any

from mlcore.io.tables import check_identifier

PredicateValue = Any
Predicate = Mapping[str, PredicateValue]


def _values(value: PredicateValue) -> list[Any]:
    if isinstance(value, (list, tuple, set, frozenset)):
        values = list(value)
        if not values:
            raise ValueError("replace_where IN-list must not be empty")
        return values
    return [value]


_LITERALS = (str, int, float, date, datetime)  # bool is an int


def check_predicate(predicate: Predicate) -> Predicate:
    """Validate a predicate before anything touches Spark or Delta: plain identifiers as keys,
    plain literals (or non-empty lists of them) as values. Values are never spliced into SQL
    unquoted (see ``to_sql``), so ``"1' OR '1'='1"`` stays one string literal."""
    import math

    if not isinstance(predicate, Mapping) or not predicate:
        raise ValueError("a predicate must be a non-empty mapping of column -> value(s)")
    for column, value in predicate.items():
        if not isinstance(column, str):
            raise ValueError(f"predicate column {column!r} must be a string")
        check_identifier(column)
        for item in _values(value):
            if item is None:
                continue
            if not isinstance(item, _LITERALS):
                raise ValueError(
                    f"predicate on {column!r}: unsupported literal {item!r} ({type(item).__name__})"
                )
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"predicate on {column!r}: non-finite literal {item!r}")
    return predicate


def partition_value_string(value: Any) -> str | None:
    """Delta's string form of a partition value (protocol: 'Partition Value Serialization')."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def to_partition_filters(predicate: Predicate) -> list[tuple[str, str, Any]]:
    """delta-rs ``partition_filters`` for a predicate on partition columns."""
    filters: list[tuple[str, str, Any]] = []
    for column, value in predicate.items():
        check_identifier(column)
        values = _values(value)
        if any(v is None for v in values):
            raise ValueError(
                f"replace_where on {column!r}: null partition values are not supported"
            )
        strings = [partition_value_string(v) for v in values]
        if len(strings) == 1:
            filters.append((column, "=", strings[0]))
        else:
            filters.append((column, "in", strings))
    return filters


def _sql_literal(value: Any, dialect: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, datetime):
        text = partition_value_string(value)
        return f"TIMESTAMP '{text}'" if dialect == "spark" else f"'{text}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'" if dialect == "spark" else f"'{value.isoformat()}'"
    if isinstance(value, str):
        return (
            "'"
            + value.replace("\\", "\\\\" if dialect == "spark" else "\\").replace("'", "''")
            + "'"
        )
    raise ValueError(f"unsupported predicate literal {value!r} ({type(value).__name__})")


def to_sql(predicate: Predicate, dialect: str) -> str:
    """Render as SQL for ``spark`` (replaceWhere) or ``deltars`` (DataFusion predicate)."""
    quote = "`{}`" if dialect == "spark" else '"{}"'
    clauses = []
    for column, value in predicate.items():
        ident = quote.format(check_identifier(column))
        values = _values(value)
        if len(values) == 1 and values[0] is None:
            clauses.append(f"{ident} IS NULL")
        elif any(v is None for v in values):
            raise ValueError(
                f"replace_where on {column!r}: mix of null and values is not supported"
            )
        elif len(values) == 1:
            clauses.append(f"{ident} = {_sql_literal(values[0], dialect)}")
        else:
            clauses.append(f"{ident} IN ({', '.join(_sql_literal(v, dialect) for v in values)})")
    if not clauses:
        raise ValueError("replace_where predicate must name at least one column")
    return " AND ".join(clauses)


def to_spark_column(predicate: Predicate):  # -> pyspark.sql.Column
    """The predicate as a null-safe Spark Column (True only for rows inside it)."""
    from pyspark.sql import functions as F

    condition = None
    for column, value in predicate.items():
        col = F.col(check_identifier(column))
        values = _values(value)
        if len(values) == 1:
            clause = col.isNull() if values[0] is None else col.eqNullSafe(F.lit(values[0]))
        else:
            clause = col.isin(values) & col.isNotNull()
        condition = clause if condition is None else condition & clause
    return condition


def partition_columns_only(predicate: Predicate, partition_by: Sequence[str]) -> bool:
    return bool(predicate) and set(predicate) <= set(partition_by)
