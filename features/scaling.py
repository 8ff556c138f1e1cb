"""Per-sensor standardisation fitted on training data only.

Written here rather than taken from scikit-learn (not a dependency of aemon): it is a
mean and a standard deviation per sensor, and it must serialise to plain JSON so the
model bundle stays readable.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from features.errors import SchemaError


@dataclass
class StandardScaler:
    sensors: list[str] = field(default_factory=list)
    mean_: np.ndarray | None = None
    scale_: np.ndarray | None = None

    def fit(self, values: np.ndarray, sensors: list[str]) -> StandardScaler:
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(sensors):
            raise SchemaError(f"scaler input has shape {values.shape}; expected (n_rows, {len(sensors)})")
        if len(values) < 2:
            raise SchemaError(f"scaler needs >= 2 rows to fit, got {len(values)}")
        self.sensors = list(sensors)
        self.mean_ = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0)
        # A constant sensor keeps scale 1 so it does not blow up; it then contributes
        # only when it moves away from its training value.
        self.scale_ = np.where(std > 1e-12, std, 1.0)
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        if self.mean_ is None:
            raise SchemaError("StandardScaler is not fitted; call fit(values, sensors) first")
        values = np.asarray(values, dtype=np.float64)
        if values.shape[-1] != len(self.sensors):
            raise SchemaError(f"scaler fitted on {len(self.sensors)} sensors, got {values.shape[-1]}")
        return (values - self.mean_) / self.scale_

    def to_dict(self) -> dict:
        if self.mean_ is None or self.scale_ is None:
            raise SchemaError("StandardScaler is not fitted; call fit(values, sensors) first")
        return {"sensors": self.sensors, "mean": self.mean_.tolist(), "scale": self.scale_.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> StandardScaler:
        return cls(list(data["sensors"]), np.asarray(data["mean"], dtype=np.float64),
                   np.asarray(data["scale"], dtype=np.float64))
