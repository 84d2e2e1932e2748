"""Schema enforcement shared by both engines.

delta-rs's low-level transaction API checks nothing (an extra column is silently dropped, a
string is accepted into a double column), so every write is checked here first, and native
Delta gets the same rules and the same messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql.types import ArrayType, DataType, MapType, StringType, StructField, StructType

from mlcore.io.errors import SchemaMismatchError


@dataclass(frozen=True)
class SchemaDiff:
    missing: list[str]
    extra: list[StructField]
    type_mismatches: list[tuple[str, str, str]]  # (column, table type, data type)
    case_conflicts: list[str]


def _same_type(left: DataType, right: DataType) -> bool:
    """Type equality ignoring nullability at any depth (simpleString omits it)."""
    return left.simpleString() == right.simpleString()


def diff_schemas(table: StructType, data: StructType) -> SchemaDiff:
    table_fields = {f.name: f for f in table.fields}
    data_fields = {f.name: f for f in data.fields}
    lower_table = {name.lower(): name for name in table_fields}
    case_conflicts = [
        name
        for name in data_fields
        if name not in table_fields and name.lower() in lower_table
    ]
    missing = [name for name in table_fields if name not in data_fields]
    extra = [
        f for name, f in data_fields.items() if name not in table_fields and name not in case_conflicts
    ]
    mismatches = [
        (name, table_fields[name].dataType.simpleString(), f.dataType.simpleString())
        for name, f in data_fields.items()
        if name in table_fields and not _same_type(table_fields[name].dataType, f.dataType)
    ]
    return SchemaDiff(missing, extra, mismatches, case_conflicts)


def check_write_schema(
    table_name: str, table: StructType, data: StructType, merge_schema: bool
) -> list[StructField]:
    """Raise on any mismatch; return the new columns to add when ``merge_schema`` is set."""
    diff = diff_schemas(table, data)
    problems = []
    if diff.missing:
        problems.append(f"missing columns {diff.missing}")
    if diff.case_conflicts:
        problems.append(f"columns differing only in case from the table's: {diff.case_conflicts}")
    if diff.type_mismatches:
        problems.append(
            "type mismatches "
            + ", ".join(f"{c}: table {t} vs data {d}" for c, t, d in diff.type_mismatches)
        )
    if diff.extra and not merge_schema:
        problems.append(
            f"extra columns {[f.name for f in diff.extra]} (set merge_schema to add them)"
        )
    if problems:
        raise SchemaMismatchError(f"schema mismatch writing table {table_name!r}: " + "; ".join(problems))
    return diff.extra


def check_duplicate_columns(table_name: str, data: StructType) -> None:
    seen: dict[str, str] = {}
    for name in data.fieldNames():
        if name.lower() in seen:
            raise SchemaMismatchError(
                f"writing table {table_name!r}: columns {seen[name.lower()]!r} and {name!r} "
                "differ only in case"
            )
        seen[name.lower()] = name


def as_nullable(schema: StructType) -> StructType:
    """New tables get nullable columns (as native Delta creates them)."""
    return StructType([StructField(f.name, f.dataType, True, f.metadata) for f in schema.fields])


def _has_string(data_type: DataType) -> bool:
    if isinstance(data_type, StringType):
        return True
    if isinstance(data_type, ArrayType):
        return _has_string(data_type.elementType)
    if isinstance(data_type, MapType):
        return _has_string(data_type.keyType) or _has_string(data_type.valueType)
    if isinstance(data_type, StructType):
        return any(_has_string(field.dataType) for field in data_type.fields)
    return False


def with_default_string_types(df: DataFrame) -> DataFrame:
    """``df`` with every string-bearing column cast to its type as the server parses it.

    Over Spark Connect the output of a Python UDF (``mapInArrow``, ``applyInPandas``) carries
    strings with an *explicit* UTF8_BINARY collation, which native Delta records in the table
    schema as ``string collate UTF8_BINARY``: delta-rs, and every reader without collation
    support, then cannot open the table. A cast to the type's name gives the plain ``string``
    back (SQL text: the server parses the type); on a classic session the cast is to the same
    type and the optimizer drops it.
    """
    if not any(_has_string(field.dataType) for field in df.schema.fields):
        return df
    return df.selectExpr(
        *[
            f"CAST(`{field.name}` AS {field.dataType.simpleString()}) AS `{field.name}`"
            if _has_string(field.dataType)
            else f"`{field.name}`"
            for field in df.schema.fields
        ]
    )
