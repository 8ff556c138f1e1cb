"""Per-sensor standardisation fitted on training data only.

Written here rather than taken from scikit-learn (not a dependency of aemon): it is a
mean and a standard deviation per sensor, and it must serialise to plain JSON so the
model bundle stays readable.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from features.errors import SchemaError

# Scaled readings are clipped to +-Z_LIMIT standard deviations: far beyond any normal reading,
# small enough that a squared error summed over a window stays finite in float32.
Z_LIMIT = 1e6


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
        finite = np.isfinite(values)
        empty = [name for name, n in zip(sensors, finite.sum(axis=0), strict=True) if n == 0]
        if empty:
            raise SchemaError(f"sensors {empty} have no finite readings in the {len(values)} training rows; "
                              "expected numbers (drop them from the stream's sensors or fix their data)")
        values = np.where(finite, values, np.nan)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, by sensor
            # moments of the deviations from a typical reading: a large offset (1e300 + noise)
            # neither loses the noise nor overflows the squares
            shift = np.nanmedian(values, axis=0)
            deviations = values - shift
            self.mean_ = shift + np.nanmean(deviations, axis=0)
            std = np.nanstd(deviations, axis=0)
        overflow = [name for name, m, sd in zip(sensors, self.mean_, std, strict=True)
                    if not (np.isfinite(m) and np.isfinite(sd))]
        if overflow:
            peak = float(np.nanmax(np.abs(values[:, [sensors.index(n) for n in overflow]])))
            raise SchemaError(f"sensors {overflow}: readings up to {peak:.3g} in magnitude overflow their mean or "
                              "standard deviation in float64; expected physical readings (rescale the unit)")
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
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = (values - self.mean_) / self.scale_
        # A reading millions of standard deviations out is an anomaly all the same; clipped, it
        # stays a finite number the float32 networks can score (and NaN stays NaN).
        return np.clip(scaled, -Z_LIMIT, Z_LIMIT)

    def to_dict(self) -> dict:
        if self.mean_ is None or self.scale_ is None:
            raise SchemaError("StandardScaler is not fitted; call fit(values, sensors) first")
        return {"sensors": self.sensors, "mean": self.mean_.tolist(), "scale": self.scale_.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> StandardScaler:
        return cls(list(data["sensors"]), np.asarray(data["mean"], dtype=np.float64),
                   np.asarray(data["scale"], dtype=np.float64))
