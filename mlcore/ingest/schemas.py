"""Schema contracts of the ingested tables: source header -> typed, snake_case Delta columns.

Each contract names the exact header the source file must have (a missing or renamed column is
an error before anything is written), the delimiter, the output ``StructType`` and the natural
key. Nullability in the schema *is* the contract: a non-nullable column that is empty in the
source sends the row to quarantine, a nullable one becomes null. The first ``len(header)``
fields of ``schema`` are the parsed source columns in header order; derived columns follow, and
every table ends with ``run_id`` and ``run_date``.

Quarantine tables keep the raw source fields as strings (under the snake_case names) so that a
rejected row can be inspected and replayed exactly as it was received.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pyspark.sql.types import (
    DateType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from mlcore.io.tables import RUN_COLUMNS

RUN_FIELDS = (
    StructField(RUN_COLUMNS[0], StringType(), False),
    StructField(RUN_COLUMNS[1], DateType(), False),
)
# Extra quarantine columns: the malformed line as read, the short rule code, the readable reason.
QUARANTINE_FIELDS = (
    StructField("raw_line", StringType(), True),
    StructField("rule", StringType(), False),
    StructField("reason", StringType(), False),
)


@dataclass(frozen=True)
class TableContract:
    """What one source file must look like and the table it becomes."""

    table: str
    source: str  # human name of the layout, for error messages
    header: tuple[str, ...]
    delimiter: str
    schema: StructType
    keys: tuple[str, ...] = ()
    date_format: str = "yyyy-MM-dd"
    timestamp_format: str = "yyyy-MM-dd HH:mm:ss"

    @property
    def quarantine_table(self) -> str:
        return f"{self.table}_quarantine"

    @property
    def parsed_fields(self) -> tuple[StructField, ...]:
        """Output fields parsed from the source columns, in header order."""
        return tuple(self.schema.fields[: len(self.header)])

    @property
    def columns(self) -> tuple[str, ...]:
        """Snake_case names of the source columns, in header order."""
        return tuple(f.name for f in self.parsed_fields)

    @property
    def source_names(self) -> dict[str, str]:
        """Source header name -> output column name."""
        return dict(zip(self.header, self.columns, strict=True))

    @property
    def data_columns(self) -> tuple[str, ...]:
        """Output columns without the run columns (what validation produces)."""
        return tuple(n for n in self.schema.fieldNames() if n not in RUN_COLUMNS)

    @property
    def quarantine_schema(self) -> StructType:
        raw = [StructField(name, StringType(), True) for name in self.columns]
        return StructType(raw + list(QUARANTINE_FIELDS) + list(RUN_FIELDS))


SALES_SCHEMA = StructType(
    [
        StructField("store", IntegerType(), False),
        StructField("day_of_week", IntegerType(), False),
        StructField("date", DateType(), False),
        StructField("sales", IntegerType(), False),
        StructField("customers", IntegerType(), False),
        StructField("open", IntegerType(), False),
        StructField("promo", IntegerType(), False),
        StructField("state_holiday", StringType(), False),
        StructField("school_holiday", IntegerType(), False),
        *RUN_FIELDS,
    ]
)

STORES_SCHEMA = StructType(
    [
        StructField("store", IntegerType(), False),
        StructField("store_type", StringType(), False),
        StructField("assortment", StringType(), False),
        StructField("competition_distance", DoubleType(), True),
        StructField("competition_open_since_month", IntegerType(), True),
        StructField("competition_open_since_year", IntegerType(), True),
        StructField("promo2", IntegerType(), False),
        StructField("promo2_since_week", IntegerType(), True),
        StructField("promo2_since_year", IntegerType(), True),
        StructField("promo_interval", StringType(), True),
        *RUN_FIELDS,
    ]
)

BANK_SCHEMA = StructType(
    [
        StructField("age", IntegerType(), False),
        StructField("job", StringType(), False),
        StructField("marital", StringType(), False),
        StructField("education", StringType(), False),
        StructField("default", StringType(), False),
        StructField("balance", IntegerType(), False),
        StructField("housing", StringType(), False),
        StructField("loan", StringType(), False),
        StructField("contact", StringType(), False),
        StructField("day", IntegerType(), False),
        StructField("month", StringType(), False),
        StructField("duration", IntegerType(), False),
        StructField("campaign", IntegerType(), False),
        StructField("pdays", IntegerType(), False),
        StructField("previous", IntegerType(), False),
        StructField("poutcome", StringType(), False),
        StructField("y", StringType(), False),
        *RUN_FIELDS,
    ]
)

# TLC: optional fields (vendor, passenger count, rate code, flag, payment type from 2019-07;
# congestion surcharge before 2019; the minor surcharges) are nullable, not errors.
RIDES_SCHEMA = StructType(
    [
        StructField("vendor_id", IntegerType(), True),
        StructField("pickup_datetime", TimestampType(), False),
        StructField("dropoff_datetime", TimestampType(), False),
        StructField("passenger_count", IntegerType(), True),
        StructField("trip_distance", DoubleType(), False),
        StructField("rate_code_id", IntegerType(), True),
        StructField("store_and_fwd_flag", StringType(), True),
        StructField("pickup_location_id", IntegerType(), False),
        StructField("dropoff_location_id", IntegerType(), False),
        StructField("payment_type", IntegerType(), True),
        StructField("fare_amount", DoubleType(), False),
        StructField("extra", DoubleType(), True),
        StructField("mta_tax", DoubleType(), True),
        StructField("tip_amount", DoubleType(), True),
        StructField("tolls_amount", DoubleType(), True),
        StructField("improvement_surcharge", DoubleType(), True),
        StructField("total_amount", DoubleType(), False),
        StructField("congestion_surcharge", DoubleType(), True),
        StructField("pickup_date", DateType(), False),  # derived: what jobs and analysts filter on
        # derived partition column (YYYY-MM): months, not days, make files of a useful size
        StructField("pickup_month", StringType(), False),
        *RUN_FIELDS,
    ]
)

SALES = TableContract(
    table="sales",
    source="Rossmann train.csv",
    header=(
        "Store",
        "DayOfWeek",
        "Date",
        "Sales",
        "Customers",
        "Open",
        "Promo",
        "StateHoliday",
        "SchoolHoliday",
    ),
    delimiter=",",
    schema=SALES_SCHEMA,
    keys=("store", "date"),
)

# Rossmann test.csv: the future calendar (known-in-advance flags, no target). Open is empty for a
# few rows in the real file, so it is nullable: make_forecasts applies its documented default.
CALENDAR_SCHEMA = StructType(
    [
        StructField("id", IntegerType(), False),
        StructField("store", IntegerType(), False),
        StructField("day_of_week", IntegerType(), False),
        StructField("date", DateType(), False),
        StructField("open", IntegerType(), True),
        StructField("promo", IntegerType(), False),
        StructField("state_holiday", StringType(), False),
        StructField("school_holiday", IntegerType(), False),
        *RUN_FIELDS,
    ]
)

CALENDAR = TableContract(
    table="forecast_calendar",
    source="Rossmann test.csv",
    header=("Id", "Store", "DayOfWeek", "Date", "Open", "Promo", "StateHoliday", "SchoolHoliday"),
    delimiter=",",
    schema=CALENDAR_SCHEMA,
    keys=("store", "date"),
)

STORES = TableContract(
    table="stores",
    source="Rossmann store.csv",
    header=(
        "Store",
        "StoreType",
        "Assortment",
        "CompetitionDistance",
        "CompetitionOpenSinceMonth",
        "CompetitionOpenSinceYear",
        "Promo2",
        "Promo2SinceWeek",
        "Promo2SinceYear",
        "PromoInterval",
    ),
    delimiter=",",
    schema=STORES_SCHEMA,
    keys=("store",),
)

# bank-full has no client id and identical attribute rows are plausible (different clients),
# so there is no natural key and no duplicate rule.
BANK = TableContract(
    table="bank",
    source="UCI bank-full.csv (17 columns)",
    header=(
        "age",
        "job",
        "marital",
        "education",
        "default",
        "balance",
        "housing",
        "loan",
        "contact",
        "day",
        "month",
        "duration",
        "campaign",
        "pdays",
        "previous",
        "poutcome",
        "y",
    ),
    delimiter=";",
    schema=BANK_SCHEMA,
)

_RIDE_HEADER = (
    "vendor_id",
    "pickup_datetime",
    "dropoff_datetime",
    "passenger_count",
    "trip_distance",
    "rate_code_id",
    "store_and_fwd_flag",
    "pickup_location_id",
    "dropoff_location_id",
    "payment_type",
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "improvement_surcharge",
    "total_amount",
    "congestion_surcharge",
)

# TLC records have no trip id: a duplicate is a record identical in every field.
RIDES = TableContract(
    table="rides",
    source="NYC TLC yellow trip CSV (snake_case)",
    header=_RIDE_HEADER,
    delimiter=",",
    schema=RIDES_SCHEMA,
    keys=_RIDE_HEADER,
)

CONTRACTS = {c.table: c for c in (SALES, STORES, CALENDAR, BANK, RIDES)}

# Store x item tables (``sources.sales.items_per_store``): the store-level contract plus a derived
# ``item`` column, which joins the natural key after the store.
ITEM_COLUMN = "item"


def item_level(contract: TableContract) -> TableContract:
    """``contract`` at store x item level: ``item`` after the derived columns, in the key."""
    fields = [f for f in contract.schema.fields if f.name not in RUN_COLUMNS]
    schema = StructType([*fields, StructField(ITEM_COLUMN, IntegerType(), False), *RUN_FIELDS])
    keys = list(contract.keys)
    keys.insert(keys.index("store") + 1, ITEM_COLUMN)
    return replace(contract, schema=schema, keys=tuple(keys))


ITEM_CONTRACTS = {c.table: item_level(c) for c in (SALES, CALENDAR)}
