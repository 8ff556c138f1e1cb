"""Choosing the normal windows a detector learns from.

Training windows come from a time range of the stream, minus every window that touches
a labeled anomaly or an excluded reading (features.exclusions: machine off, maintenance).
The scaler is fitted on the rows of the training part only, and the
last `val_fraction` of the time range is held out (in time order, never shuffled) to set
the threshold on windows the network has not seen.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from features.errors import WindowError
from features.exclusions import Exclusions
from features.scaling import StandardScaler
from features.windows import WindowSet, WindowSpec, window_frame


@dataclass(frozen=True)
class TrainingSet:
    scaler: StandardScaler
    train: WindowSet
    val: WindowSet
    start: pd.Timestamp
    end: pd.Timestamp
    n_excluded_labeled: int
    n_excluded_rules: int = 0  # windows left out because they touch an excluded reading


def labeled_mask(frame: pd.DataFrame, label_columns: list[str]) -> np.ndarray:
    if not label_columns:
        return np.zeros(len(frame), dtype=bool)
    return (frame[label_columns].fillna(0).to_numpy() != 0).any(axis=1)


def make_training_set(
    frame: pd.DataFrame,
    sensors: list[str],
    spec: WindowSpec,
    *,
    label_columns: Sequence[str] = (),
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    val_fraction: float = 0.2,
    train_stride: int | None = None,
    min_windows: int = 20,
    exclusions: Exclusions | None = None,
) -> TrainingSet:
    """Scaled train / validation windows of normal data from `frame` (lake layout).

    `train_stride` (default: the spec's stride) cuts the training and validation windows
    more densely than scoring does: overlapping windows are free extra examples, and an
    autoencoder trained on them generalises much better from a few days of history."""
    if not 0 < val_fraction < 1:
        raise WindowError(f"val_fraction={val_fraction}, must be between 0 and 1")
    if train_stride is not None:
        spec = replace(spec, stride=train_stride)
    missing = [c for c in ["timestamp", "asset", *sensors, *label_columns] if c not in frame.columns]
    if missing:
        raise WindowError(f"readings lack columns {missing} that the stream configuration names; "
                          f"they have {list(frame.columns)}")
    frame = frame.sort_values(["asset", "timestamp"])
    if start is not None:
        frame = frame[frame["timestamp"] >= pd.Timestamp(start)]
    if end is not None:
        frame = frame[frame["timestamp"] <= pd.Timestamp(end)]
    if frame.empty:
        span = f"between {start or 'the first reading'} and {end or 'the last reading'}"
        raise WindowError(f"no readings {span} to train on; check the training range (train.start / train.end)")
    t0, t1 = frame["timestamp"].min(), frame["timestamp"].max()
    cutoff = t0 + (t1 - t0) * (1 - val_fraction)

    labeled = labeled_mask(frame, list(label_columns))
    excluded = exclusions.mask(frame).to_numpy() if exclusions else np.zeros(len(frame), dtype=bool)
    fit_rows = frame[(frame["timestamp"] < cutoff) & ~labeled & ~excluded]
    if len(fit_rows) < 2:
        raise WindowError("fewer than 2 unlabeled rows before the validation cut-off; cannot fit the scaler")
    scaler = StandardScaler().fit(fit_rows[sensors].to_numpy(), sensors)

    scaled = frame[["timestamp", "asset"]].copy()
    scaled[sensors] = scaler.transform(frame[sensors].to_numpy())
    scaled["_labeled"] = labeled.astype(np.float64)
    scaled["_excluded"] = excluded.astype(np.float64)
    windows = window_frame(scaled, [*sensors, "_labeled", "_excluded"], spec)
    none = np.zeros(0, dtype=bool)
    touches_label = windows.X[:, :, -2].max(axis=1) > 0 if len(windows) else none
    touches_excluded = (windows.X[:, :, -1].max(axis=1) > 0) & ~touches_label if len(windows) else none
    windows = WindowSet(windows.X[:, :, :-2], windows.asset, windows.start, windows.end)

    cut = np.datetime64(cutoff, "ns")
    normal = ~touches_label & ~touches_excluded
    train = windows.take(normal & (windows.end < cut))
    val = windows.take(normal & (windows.start >= cut))
    for name, part in (("training", train), ("validation", val)):
        if len(part) < min_windows:
            raise WindowError(
                f"only {len(part)} {name} windows of normal data between {t0} and {t1}; need >= {min_windows} "
                f"(window size {spec.size}, stride {spec.stride}): widen the training range or shorten the window"
            )
    return TrainingSet(scaler, train, val, t0, t1, int(touches_label.sum()), int(touches_excluded.sum()))


def thin_windows(windows: WindowSet, max_windows: int | None) -> tuple[WindowSet, int]:
    """At most `max_windows` of `windows`: every k-th one, k the smallest factor that fits
    (k = ceil(n / max_windows)); returns them and k (1: all kept, also with no limit).

    On windows in asset and time order, every k-th window of a stride-s cut is the cut at
    stride k * s: the windows overlap less, and a long training range costs an epoch no
    more than `max_windows` windows do."""
    if max_windows is not None and (isinstance(max_windows, bool) or not isinstance(max_windows, int)
                                    or max_windows < 1):
        raise WindowError(f"max_windows={max_windows!r}, must be an int >= 1 or None (no limit)")
    if max_windows is None or len(windows) <= max_windows:
        return windows, 1
    k = -(-len(windows) // max_windows)  # ceil(n / max_windows)
    return windows.take(np.arange(len(windows)) % k == 0), k
