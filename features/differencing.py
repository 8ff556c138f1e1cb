"""Differencing of slow sensors: a reading becomes its change since the asset's previous one.

Slow channels (a motor's body temperature, a fluid thermocouple) drift over hours, and a
model trained on minutes of data has never seen most of their levels: a normal drift, or
the shifted level a machine keeps after a fault, looks anomalous for as long as it lasts.
Their change from one reading to the next keeps what matters (a sudden heating) and drops
the level. Which sensors are slow is the user's knowledge of the machine, so they are
listed, never guessed.
"""
from __future__ import annotations

import pandas as pd

from features.errors import SchemaError


def difference(frame: pd.DataFrame, sensors: list[str] | tuple[str, ...], *, asset_column: str = "asset",
               timestamp_column: str = "timestamp") -> pd.DataFrame:
    """A copy of `frame` whose listed sensors hold the change since the same asset's previous
    reading in time; an asset's first reading has no previous one and gets 0."""
    if not sensors:
        return frame
    missing = [s for s in sensors if s not in frame.columns]
    if missing:
        raise SchemaError(f"sensors to difference {missing} are not in the readings; they have {list(frame.columns)}")
    out = frame.copy()
    order = out.sort_values([asset_column, timestamp_column]).index
    ordered = out.loc[order]
    changes = ordered.groupby(asset_column, sort=False)[list(sensors)].diff().fillna(0.0)
    out.loc[order, list(sensors)] = changes.to_numpy()
    return out
