"""A regular time grid per asset: readings snapped to multiples of the stream's interval,
short gaps filled, long gaps left open so they split the series.

Exports rarely tick exactly on the interval (a logger drifts by a few milliseconds, a
sample is skipped). Windows of `size` samples only mean `size x interval` seconds when
the samples sit on a grid, so before windows are cut each asset is aligned:

- every reading moves to the nearest grid point (`round(t / interval) * interval`);
  readings that land on the same point are averaged;
- missing grid points inside a gap no longer than the gap tolerance are filled by linear
  interpolation between the neighbours;
- a gap longer than the tolerance stays a gap: the series splits there, and
  features.windows never cuts a window across it.
"""
from __future__ import annotations

import numpy as np


def is_regular(t_ns: np.ndarray, interval_s: float) -> bool:
    """True when every reading already sits on the grid with no missing point."""
    step = round(interval_s * 1e9)
    if len(t_ns) == 0:
        return True
    return bool(np.all(t_ns % step == 0) and np.all(np.diff(t_ns) == step))


def align_to_grid(times: np.ndarray, values: np.ndarray, interval_s: float, gap_limit_s: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One asset's sorted readings -> (grid times datetime64[ns], values (n_grid, n_columns))."""
    t_ns = np.asarray(times, dtype="datetime64[ns]").astype(np.int64)
    values = np.asarray(values, dtype=np.float64)
    if is_regular(t_ns, interval_s):
        return t_ns.astype("datetime64[ns]"), values
    step = round(interval_s * 1e9)
    slot = np.round(t_ns / step).astype(np.int64)
    # average readings that snap to the same grid point
    slots, inverse, counts = np.unique(slot, return_inverse=True, return_counts=True)
    sums = np.zeros((len(slots), values.shape[1]))
    np.add.at(sums, inverse, values)
    snapped = sums / counts[:, None]
    # fill grid points inside short gaps; leave long gaps open
    gaps = np.diff(slots)
    limit = gap_limit_s / interval_s
    fill = (gaps > 1) & (gaps <= limit + 1e-9)
    if not fill.any():
        return (slots * step).astype("datetime64[ns]"), snapped
    extra = np.concatenate([np.arange(a + 1, b) for a, b in zip(slots[:-1][fill], slots[1:][fill], strict=True)])
    grid = np.sort(np.concatenate([slots, extra]))
    filled = np.column_stack([np.interp(grid, slots, snapped[:, j]) for j in range(snapped.shape[1])]) \
        if snapped.shape[1] else np.empty((len(grid), 0))
    return (grid * step).astype("datetime64[ns]"), filled
