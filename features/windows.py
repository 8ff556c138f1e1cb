"""Cutting per-asset readings into fixed-length windows.

A window is `size` consecutive samples of one asset, with no gap larger than
`max_gap_s` inside it. Window starts are aligned to the absolute time grid
(`floor(t / interval_s) % stride == 0`), not to the first row that happens to be
read, so an incremental run that re-reads a little history cuts exactly the
windows a full run would have cut. With `align` (the default) each asset is first put on
the regular grid of `interval_s` (features.grid): readings snapped to the grid, gaps up to
`max_gap_s` filled, longer gaps left open.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.errors import WindowError
from features.grid import align_to_grid


@dataclass(frozen=True)
class WindowSpec:
    size: int = 30
    stride: int = 10
    interval_s: float = 60.0
    max_gap_s: float | None = None  # None: 1.5 x interval_s
    align: bool = True  # put each asset on the regular grid of interval_s before cutting windows

    def __post_init__(self):
        if self.size < 1:
            raise WindowError(f"window size={self.size}, must be >= 1")
        if self.stride < 1:
            raise WindowError(f"window stride={self.stride}, must be >= 1")
        if not (math.isfinite(self.interval_s) and self.interval_s > 0):
            raise WindowError(f"window interval_s={self.interval_s}, must be a finite number > 0")
        if self.max_gap_s is not None and not (math.isfinite(self.max_gap_s) and self.max_gap_s >= self.interval_s):
            raise WindowError(
                f"window max_gap_s={self.max_gap_s}, must be a finite number >= interval_s={self.interval_s}"
            )

    @property
    def gap_limit_s(self) -> float:
        return 1.5 * self.interval_s if self.max_gap_s is None else float(self.max_gap_s)

    @property
    def span(self) -> pd.Timedelta:
        """Time from the first to the last sample of a window."""
        return pd.Timedelta(seconds=(self.size - 1) * self.interval_s)


@dataclass(frozen=True)
class WindowSet:
    X: np.ndarray  # (n_windows, size, n_sensors), float32
    asset: np.ndarray  # (n_windows,) object
    start: np.ndarray  # (n_windows,) datetime64[ns]
    end: np.ndarray  # (n_windows,) datetime64[ns]

    def __len__(self) -> int:
        return len(self.X)

    def take(self, mask: np.ndarray) -> WindowSet:
        return WindowSet(self.X[mask], self.asset[mask], self.start[mask], self.end[mask])


def window_starts(timestamps: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """Row indices where a valid window starts, for one asset's sorted timestamps."""
    n = len(timestamps)
    if n < spec.size:
        return np.empty(0, dtype=np.int64)
    t_ns = timestamps.astype("datetime64[ns]").astype(np.int64)
    t_s = t_ns / 1e9
    gaps = np.diff(t_s)
    if np.any(gaps <= 0):
        raise WindowError("timestamps must be strictly increasing within an asset")
    segment = np.concatenate([[0], np.cumsum(gaps > spec.gap_limit_s)])
    candidates = np.arange(n - spec.size + 1)
    same_segment = segment[candidates] == segment[candidates + spec.size - 1]
    # in integer nanoseconds: in floating point, k * 0.1 s / 0.1 s can floor to k - 1
    step_ns = round(spec.interval_s * 1e9)
    aligned = ((t_ns[candidates] // step_ns) % spec.stride) == 0
    return candidates[same_segment & aligned]


def make_windows(values: np.ndarray, timestamps: np.ndarray, spec: WindowSpec) -> tuple[np.ndarray, np.ndarray]:
    """Windows of one asset: (X of shape (n_windows, size, n_sensors), start row indices)."""
    starts = window_starts(timestamps, spec)
    if len(starts) == 0:
        return np.empty((0, spec.size, values.shape[1]), dtype=np.float32), starts
    # (n - size + 1, n_sensors, size) view, no copy; the fancy index copies only the windows kept
    view = np.lib.stride_tricks.sliding_window_view(values, spec.size, axis=0)
    X = view[starts].transpose(0, 2, 1)  # (W, C, L) -> (W, L, C)
    return np.ascontiguousarray(X, dtype=np.float32), starts


def window_frame(
    frame: pd.DataFrame,
    sensors: list[str],
    spec: WindowSpec,
    *,
    timestamp_column: str = "timestamp",
    asset_column: str = "asset",
) -> WindowSet:
    """Windows of every asset in a frame of readings (already scaled or not)."""
    missing = [c for c in [timestamp_column, asset_column, *sensors] if c not in frame.columns]
    if missing:
        raise WindowError(f"frame lacks columns {missing}; has {list(frame.columns)}")
    parts_X, parts_asset, parts_start, parts_end = [], [], [], []
    # one sort of the whole frame by (asset, time), then each asset is a contiguous slice
    codes, names = pd.factorize(frame[asset_column], sort=True)  # NaN asset: -1, left out as groupby does
    times = frame[timestamp_column].to_numpy(dtype="datetime64[ns]")
    order = np.lexsort((times, codes))
    codes, times = codes[order], times[order]
    values_all = frame[sensors].to_numpy(dtype=np.float64)[order]
    bounds = np.searchsorted(codes, np.arange(len(names) + 1), side="left")
    for k, asset in enumerate(names):
        lo, hi = bounds[k], bounds[k + 1]
        ts, values = times[lo:hi], values_all[lo:hi]
        if spec.align and spec.size > 1:  # records of a tabular stream (size 1) are not a series
            ts, values = align_to_grid(ts, values, spec.interval_s, spec.gap_limit_s)
        X, starts = make_windows(values, ts, spec)
        parts_X.append(X)
        parts_asset.append(np.full(len(starts), asset, dtype=object))
        parts_start.append(ts[starts])
        parts_end.append(ts[starts + spec.size - 1])
    if not parts_X:
        return WindowSet(
            np.empty((0, spec.size, len(sensors)), dtype=np.float32),
            np.empty(0, dtype=object),
            np.empty(0, dtype="datetime64[ns]"),
            np.empty(0, dtype="datetime64[ns]"),
        )
    return WindowSet(
        np.concatenate(parts_X),
        np.concatenate(parts_asset),
        np.concatenate(parts_start),
        np.concatenate(parts_end),
    )
