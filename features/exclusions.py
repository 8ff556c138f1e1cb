"""Exclusions: readings kept out of training and out of alerting.

Two kinds, both from the stream configuration:
- machine-off rules, one comparison each, such as `Current < 0.1` or `speed_rpm <= 0`:
  a reading matching any rule is excluded (the machine is stopped, its sensors say
  nothing about its health);
- explicit intervals (maintenance, a test run), for one asset or all of them.

Rules are parsed by a small grammar (`<column> <op> <number>`), never evaluated as code.
"""
from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.errors import FeaturesError


class ExclusionError(FeaturesError):
    """An exclusion rule or interval is malformed or names a column the readings lack."""


OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
             "==": operator.eq, "!=": operator.ne}
RULE = re.compile(
    r"^\s*(?P<column>[A-Za-z_][A-Za-z0-9_\-]*|`[^`]+`)\s*(?P<op><=|>=|==|!=|<|>)\s*"
    r"(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


@dataclass(frozen=True)
class ExclusionRule:
    column: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.column} {self.op} {self.value:g}"


@dataclass(frozen=True)
class ExclusionInterval:
    start: pd.Timestamp
    end: pd.Timestamp
    asset: str | None = None  # None: every asset
    reason: str = ""

    def __post_init__(self):
        if pd.Timestamp(self.end) < pd.Timestamp(self.start):
            raise ExclusionError(f"exclusion interval ends ({self.end}) before it starts ({self.start})")


def parse_rule(text: str) -> ExclusionRule:
    """`Current < 0.1` -> ExclusionRule('Current', '<', 0.1). A column name with spaces is
    written in backticks: `` `Volume Flow RateRMS` < 1``."""
    match = RULE.match(text)
    if not match:
        raise ExclusionError(
            f"exclusion rule {text!r} is not understood; expected '<column> <op> <number>' with op one of "
            f"{sorted(OPERATORS)}, e.g. 'Current < 0.1'"
        )
    return ExclusionRule(match["column"].strip("`"), match["op"], float(match["value"]))


# The column that marks excluded readings in frames passed between training steps.
EXCLUDED = "_aemon_excluded"


def exclusion_mask(frame: pd.DataFrame, exclusions: Exclusions | None = None,
                   intervals: pd.DataFrame | None = None) -> np.ndarray:
    """Rows of `frame` that are never normal data.

    `exclusions`: the stream's features.exclusions.Exclusions (machine-off rules, maintenance
    intervals). `intervals`: a frame with columns start, end and optionally asset (past
    incidents, or any other interval); an interval without an asset covers every asset."""
    mask = np.zeros(len(frame), dtype=bool)
    if exclusions:
        mask |= exclusions.mask(frame).to_numpy(dtype=bool)
    return mask | rows_in_intervals(frame, intervals)


def rows_in_intervals(frame: pd.DataFrame, intervals: pd.DataFrame | None) -> np.ndarray:
    """True for each row of `frame` (timestamp, optional asset) inside any [start, end] of
    `intervals` (columns start, end, optional asset; an interval without an asset covers
    every asset)."""
    mask = np.zeros(len(frame), dtype=bool)
    if intervals is None or len(intervals) == 0:
        return mask
    ts = frame["timestamp"].to_numpy(dtype="datetime64[ns]")
    assets = frame["asset"].astype(str).to_numpy() if "asset" in frame.columns else None
    interval_assets = intervals["asset"] if "asset" in intervals.columns else [None] * len(intervals)
    for start, end, asset in zip(intervals["start"], intervals["end"], interval_assets, strict=True):
        inside = (ts >= np.datetime64(pd.Timestamp(start), "ns")) & (ts <= np.datetime64(pd.Timestamp(end), "ns"))
        if assets is not None and asset is not None and not pd.isna(asset):
            inside &= assets == str(asset)
        mask |= inside
    return mask


def excluded_mask(
    frame: pd.DataFrame,
    rules: Sequence[ExclusionRule | str] = (),
    intervals: Sequence[ExclusionInterval] = (),
) -> pd.Series:
    """True for each reading (row of a lake-layout frame: timestamp, asset, sensors) that a
    rule or an interval excludes."""
    mask = np.zeros(len(frame), dtype=bool)
    for rule in rules:
        rule = parse_rule(rule) if isinstance(rule, str) else rule
        if rule.column not in frame.columns:
            raise ExclusionError(
                f"exclusion rule '{rule}' names column '{rule.column}', which the readings lack; "
                f"they have {list(frame.columns)}"
            )
        values = frame[rule.column].to_numpy(dtype=np.float64)
        mask |= OPERATORS[rule.op](values, rule.value)
    listed = pd.DataFrame([(i.start, i.end, i.asset) for i in intervals], columns=["start", "end", "asset"])
    mask |= rows_in_intervals(frame, listed)
    return pd.Series(mask, index=frame.index, name="excluded")


def windows_touching(frame: pd.DataFrame, mask: pd.Series | np.ndarray, asset: np.ndarray,
                     start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """For windows given by (asset, start, end), True when any excluded reading of that asset
    lies in [start, end]. `frame` holds the readings (asset, timestamp) the mask refers to."""
    flags = np.zeros(len(asset), dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if not mask.any() or len(asset) == 0:
        return flags
    hits = frame.loc[mask, ["asset", "timestamp"]]
    asset = np.asarray(asset)
    start = np.asarray(start, dtype="datetime64[ns]")
    end = np.asarray(end, dtype="datetime64[ns]")
    for name, ts in hits.groupby("asset")["timestamp"]:
        times = np.sort(ts.to_numpy(dtype="datetime64[ns]"))
        sel = asset == name
        # a window holds an excluded reading when one lies between its start and end
        first = np.searchsorted(times, start[sel], side="left")
        last = np.searchsorted(times, end[sel], side="right")
        flags[sel] = last > first
    return flags


@dataclass(frozen=True)
class Exclusions:
    """A stream's exclusion rules and intervals, as one argument."""

    rules: tuple[ExclusionRule, ...] = ()
    intervals: tuple[ExclusionInterval, ...] = ()

    @classmethod
    def parse(cls, rules: Sequence[str] = (), intervals: Sequence[ExclusionInterval] = ()) -> Exclusions:
        return cls(tuple(parse_rule(r) for r in rules), tuple(intervals))

    def __bool__(self) -> bool:
        return bool(self.rules or self.intervals)

    def mask(self, frame: pd.DataFrame) -> pd.Series:
        return excluded_mask(frame, self.rules, self.intervals)
