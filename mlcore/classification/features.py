"""The feature contract of a classifier: which columns it reads, of which kind, and the label."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from mlcore.config.models import ClassificationConfig


class FeatureError(ValueError):
    """The input does not satisfy the feature contract (every problem is listed)."""


@dataclass(frozen=True)
class FeatureSpec:
    """Columns the model reads. Stored with the model so scoring checks inputs against the model,
    not against whatever the current config says."""

    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    label: str
    positive_label: str

    @property
    def columns(self) -> list[str]:
        return [*self.categorical, *self.numeric]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["categorical"], data["numeric"] = list(self.categorical), list(self.numeric)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        return cls(
            categorical=tuple(data["categorical"]),
            numeric=tuple(data["numeric"]),
            label=str(data["label"]),
            positive_label=str(data["positive_label"]),
        )


def feature_spec(config: ClassificationConfig) -> FeatureSpec:
    """The spec from config; refuses overlaps, excluded columns and the label as a feature."""
    problems = []
    categorical, numeric = list(config.categorical_columns), list(config.numeric_columns)
    features = categorical + numeric
    if not features:
        problems.append("no feature columns configured")
    duplicated = sorted({c for c in features if features.count(c) > 1})
    if duplicated:
        problems.append(f"columns listed more than once: {duplicated}")
    excluded = sorted(set(features) & set(config.excluded_columns))
    if excluded:
        problems.append(
            f"columns {excluded} are in excluded_columns (e.g. duration leaks the target); "
            "remove them from the features or from excluded_columns"
        )
    if config.label_column in features:
        problems.append(f"the label column {config.label_column!r} cannot be a feature")
    if problems:
        raise FeatureError("; ".join(problems))
    return FeatureSpec(tuple(categorical), tuple(numeric), config.label_column, config.positive_label)


def label_vector(frame: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """0/1 labels; a label outside {positive, anything else} is fine, a null label is not."""
    labels = frame[spec.label]
    if labels.isna().any():
        raise FeatureError(f"label column {spec.label!r} has {int(labels.isna().sum())} null values")
    y = (labels.astype(str) == spec.positive_label).to_numpy(dtype=np.int64)
    if y.sum() == 0 or y.sum() == len(y):
        raise FeatureError(
            f"label column {spec.label!r} has a single class (positive label {spec.positive_label!r}: "
            f"{int(y.sum())} of {len(y)} rows); a classifier needs both"
        )
    return y


def feature_frame(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Model input with stable dtypes: strings as object, numerics as float64."""
    out = frame[spec.columns].copy()
    for column in spec.categorical:
        out[column] = out[column].astype(object).where(out[column].notna(), None)
    for column in spec.numeric:
        out[column] = out[column].astype("float64")
    return out


def check_spark_columns(fields: Mapping[str, str], spec: FeatureSpec) -> list[str]:
    """Problems with a Spark schema (column -> simpleString type) against the spec."""
    numeric_types = ("tinyint", "smallint", "int", "bigint", "float", "double")
    problems = []
    missing = [c for c in spec.columns if c not in fields]
    if missing:
        problems.append(f"missing columns {missing}")
    for column in spec.numeric:
        kind = fields.get(column)
        if kind is not None and not (kind in numeric_types or kind.startswith("decimal")):
            problems.append(f"numeric feature {column!r} has type {kind}")
    for column in spec.categorical:
        kind = fields.get(column)
        if kind is not None and kind != "string":
            problems.append(f"categorical feature {column!r} has type {kind} (expected string)")
    return problems


