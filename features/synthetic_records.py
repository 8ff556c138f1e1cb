"""Synthetic tabular records with labelled anomalies: one record per pump test on a test bench,
no time order.

A record is one test at a random operating point q (flow as a fraction of rated flow): the
same physics as the synthetic pumps' telemetry (features.synthetic), without time,

    flow_rate           q * 120                          m3/h
    motor_current       40 * (0.45 + 0.55 q)             A
    discharge_pressure  2 + 6 * (1 - 0.25 q^2)           bar
    vibration_rms       2 + 1.2 q^2                      mm/s
    motor_temp          35 + 30 * (current / 40)^2       degC

plus Gaussian noise. An anomalous record breaks one rule: a feature off by 4-8 noise
standard deviations (`offset`), or flow and current that no longer agree (`mismatch`: the flow
of one operating point with the current of another, each value plausible on its own).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

RECORD_FEATURES: tuple[str, ...] = ("flow_rate", "motor_current", "discharge_pressure", "vibration_rms",
                                    "motor_temp")
RECORD_NOISE = np.array([1.5, 0.4, 0.08, 0.05, 0.6])


def _features(q: np.ndarray) -> np.ndarray:
    current = 40 * (0.45 + 0.55 * q)
    return np.column_stack([q * 120, current, 2 + 6 * (1 - 0.25 * q ** 2), 2 + 1.2 * q ** 2,
                            35 + 30 * (current / 40) ** 2])


def generate_records(n_records: int = 2000, anomaly_fraction: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """`n_records` records in random order: `record_id` (R00000, ...), RECORD_FEATURES, `label`
    (1 anomalous) and `anomaly` ("offset:<feature>", "mismatch", or "" for a normal record)."""
    if n_records < 2:
        raise ValueError(f"n_records={n_records!r}, must be >= 2")
    if not 0 <= anomaly_fraction < 1:
        raise ValueError(f"anomaly_fraction={anomaly_fraction!r}, must be in [0, 1)")
    rng = np.random.default_rng(seed)
    q = rng.uniform(0.3, 1.1, n_records)
    values = _features(q) + rng.normal(size=(n_records, len(RECORD_FEATURES))) * RECORD_NOISE
    n_anomalous = round(anomaly_fraction * n_records)
    anomalous = rng.choice(n_records, n_anomalous, replace=False)
    kinds = np.full(n_records, "", dtype=object)
    for i in anomalous:
        if rng.random() < 0.5:
            j = rng.integers(len(RECORD_FEATURES))
            values[i, j] += rng.choice([-1, 1]) * rng.uniform(4, 8) * RECORD_NOISE[j]
            kinds[i] = f"offset:{RECORD_FEATURES[j]}"
        else:
            other = q[i] + rng.choice([-1, 1]) * rng.uniform(0.3, 0.5)  # the current of another operating point
            values[i, 1] = _features(np.array([other]))[0, 1] + rng.normal() * RECORD_NOISE[1]
            kinds[i] = "mismatch"
    frame = pd.DataFrame(values, columns=list(RECORD_FEATURES))
    frame.insert(0, "record_id", [f"R{i:05d}" for i in range(n_records)])
    frame["label"] = (kinds != "").astype(np.int8)
    frame["anomaly"] = kinds.astype(str)
    return frame
