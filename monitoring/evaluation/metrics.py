"""Detection metrics on labeled data: pointwise (SKAB), point-adjusted, event overlap
(Orion), detection delay and forewarning, and the NAB score (NAB's own and SKAB's variant).

Inputs describe ONE series: boolean arrays aligned row for row with its sorted
timestamps. Pooling over series is the caller's: add `PointCounts`, or pass every
file's `NabFileScore` to `nab_normalised`.

A ratio whose denominator is zero (0/0: no positives, no predictions) is `nan`, never a
silent 0 or 1: a detector that flags nothing on a stream without faults has no precision.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from monitoring.errors import MetricsInputError
from monitoring.evaluation.ranking import average_ranks


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


# ---------------------------------------------------------------- counts


@dataclass(frozen=True)
class EventCounts:
    """Event counts: tp = true events overlapped, fn = true events missed, fp = predicted
    events that overlap no true event. Standard F1 = 2PR / (P + R). PointCounts adds tn."""

    # counts; fractional where counts of several runs are averaged (a benchmark's seeds)
    tp: float
    fp: float
    fn: float

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return _ratio(2 * p * r, p + r) if not (math.isnan(p) or math.isnan(r)) else float("nan")


# ---------------------------------------------------------------- point level


@dataclass(frozen=True)
class PointCounts(EventCounts):
    """Point confusion counts; pooled over series by adding, as SKAB sums TP/FP/FN/TN over files."""

    tn: float

    def __add__(self, other: PointCounts) -> PointCounts:
        return PointCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def f1(self) -> float:
        """SKAB's F1, tp / (tp + (fn + fp) / 2) (equal to 2PR / (P + R) when both are defined)."""
        return _ratio(self.tp, self.tp + (self.fn + self.fp) / 2)

    @property
    def far(self) -> float:
        """False alarm rate fp / (fp + tn), a fraction (SKAB prints it as a percent)."""
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def mar(self) -> float:
        """Missed alarm rate fn / (fn + tp), a fraction (SKAB prints it as a percent)."""
        return _ratio(self.fn, self.fn + self.tp)


def _mask(values, name: str, n: int | None = None) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise MetricsInputError(f"{name}: shape {array.shape}, expected a 1-D array of booleans")
    if array.dtype != bool:
        if not np.issubdtype(array.dtype, np.number):
            raise MetricsInputError(f"{name}: dtype {array.dtype}, expected booleans or numbers (0 / 1)")
        if np.isnan(array.astype(float)).any():
            raise MetricsInputError(f"{name}: row {int(np.flatnonzero(np.isnan(array.astype(float)))[0])} "
                                    "is NaN, expected a boolean")
        array = array != 0
    if n is not None and len(array) != n:
        raise MetricsInputError(f"{name}: {len(array)} rows, expected {n} (one per timestamp / label)")
    return array


def as_ns(values) -> pd.DatetimeIndex:
    """Times at nanosecond resolution: pandas keeps each input's unit (s, ms, us, ns), so
    integer positions (`asi8`) of two inputs compare only after this."""
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(values))).as_unit("ns")


def _timestamps(values, n: int) -> pd.DatetimeIndex:
    stamps = as_ns(values)
    if len(stamps) != n:
        raise MetricsInputError(f"timestamps: {len(stamps)} rows, expected {n} (one per label)")
    if stamps.hasnans:
        raise MetricsInputError(f"timestamps: row {int(np.flatnonzero(stamps.isna())[0])} is missing")
    if not stamps.is_monotonic_increasing:
        row = int(np.flatnonzero(np.diff(stamps.asi8) < 0)[0]) + 1
        raise MetricsInputError(f"timestamps: row {row} ({stamps[row]}) goes back in time, expected sorted timestamps")
    return stamps


def point_counts(y_true, y_pred) -> PointCounts:
    truth = _mask(y_true, "y_true")
    pred = _mask(y_pred, "y_pred", len(truth))
    return PointCounts(
        tp=int(np.sum(truth & pred)), fp=int(np.sum(~truth & pred)),
        fn=int(np.sum(truth & ~pred)), tn=int(np.sum(~truth & ~pred)),
    )


def events(mask) -> np.ndarray:
    """(k, 2) int array: [first, last] row of each run of True, in order."""
    flags = _mask(mask, "mask").astype(np.int8)
    edges = np.diff(np.concatenate(([0], flags, [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return np.column_stack((starts, ends)).astype(np.int64).reshape(-1, 2)


def onsets(mask, merge_rows: int = 0) -> np.ndarray:
    """Rows where a run of True starts (rising edges; True at the first row starts a run).
    With `merge_rows`, runs less than that many rows apart are one run (an incident whose
    alarm flickers starts once)."""
    on = _mask(mask, "mask")
    before = np.concatenate(([0], np.cumsum(on)))  # True rows before row i: before[i]
    lookback = np.maximum(np.arange(len(on)) - max(int(merge_rows), 1), 0)
    return on & (before[:-1] - before[lookback] == 0)


def changepoint_detections(y_pred) -> np.ndarray:
    """Both edges of each predicted run, as SKAB's notebooks turn point predictions into
    changepoint predictions (`abs(prediction.diff())`, the first row kept as it is): rows
    where the prediction switches on or off. Pass these to nab_file_score(scoring="skab")."""
    pred = _mask(y_pred, "y_pred")
    return pred != np.concatenate(([False], pred[:-1]))


def incident_events(y_pred, open_rows: int = 1, recover_rows: int = 1) -> np.ndarray:
    """Rows where an incident opens or recovers, from point predictions, with persistence and
    recovery counted in rows as the incident rules count them in windows and data time
    (monitoring.alerting.incidents, .lifecycle), causally: each event is on the row where it
    becomes known.

    Flagged rows less than `recover_rows` apart belong to one run; a run opens on the row
    that makes it `open_rows` flagged rows; an open incident recovers on its `recover_rows`-th
    normal row in a row. With 1 and 1 these are the rows where the prediction switches on or
    off, as changepoint_detections gives them; larger values drop the flickers of an alarm
    that stays on through a fault, each of which would be two predicted changepoints. Pass
    the result to nab_file_score(scoring="skab")."""
    pred = _mask(y_pred, "y_pred")
    if open_rows < 1 or recover_rows < 1:
        raise MetricsInputError(f"open_rows={open_rows}, recover_rows={recover_rows}: expected both >= 1")
    # a state machine over the rows: each event depends on the ones before it, which no
    # numpy or scipy routine expresses; files hold thousands of rows
    out = np.zeros(len(pred), dtype=bool)
    is_open, run, quiet = False, 0, recover_rows  # flagged rows in the current run, normal rows since the last
    for i, flagged in enumerate(pred.tolist()):
        if flagged:
            run = run + 1 if quiet < recover_rows else 1
            quiet = 0
            if not is_open and run >= open_rows:
                is_open = out[i] = True
        else:
            quiet += 1
            if is_open and quiet >= recover_rows:
                is_open, out[i] = False, True
    return out


def point_adjust(y_true, y_pred) -> np.ndarray:
    """The usual point adjustment: when any point of a true event is flagged, every point of
    that event counts as flagged; points outside true events keep their prediction.

    Optimistic by construction (one lucky flag in a long event earns the whole event, so even
    random flags score well on long events): report it beside the unadjusted figures, never alone.
    """
    truth = _mask(y_true, "y_true")
    adjusted = _mask(y_pred, "y_pred", len(truth)).copy()
    for first, last in events(truth):
        if adjusted[first:last + 1].any():
            adjusted[first:last + 1] = True
    return adjusted


# ---------------------------------------------------------------- event level


def overlap_f1(y_true, y_pred, timestamps=None) -> EventCounts:
    """Event counts as Orion's contextual overlap-segment metric computes them
    (sintel-dev/Orion, orion/evaluation/contextual.py: `contextual_confusion_matrix(...,
    weighted=False)` -> `_overlap_segment`; `_overlap` and `_f1_score` in common.py).

    Events are the runs of True in `y_true` (expected) and `y_pred` (observed), as
    [first, last] in row numbers, or in timestamps when given. Like Orion's `_pad`, each
    interval's end is padded by one unit (one row, or one nanosecond) and two intervals
    overlap when `(e.start - o.end) * (e.end - o.start) < 0`: they share at least one row or
    instant. A true event overlapped by any prediction is one tp, however many predictions
    split it; a prediction spanning two true events earns both; predictions that overlap
    no true event are the fp; true events with no overlap the fn.
    """
    truth = _mask(y_true, "y_true")
    pred = _mask(y_pred, "y_pred", len(truth))
    position = (np.arange(len(truth), dtype=np.int64) if timestamps is None
                else _timestamps(timestamps, len(truth)).asi8)
    # Python ints: the product of two nanosecond distances overflows int64.
    expected = [(int(position[a]), int(position[b]) + 1) for a, b in events(truth)]
    observed = [(int(position[a]), int(position[b]) + 1) for a, b in events(pred)]

    def overlaps(e, o) -> bool:
        return (e[0] - o[1]) * (e[1] - o[0]) < 0

    unmatched = set(range(len(observed)))
    tp = fn = 0
    for e in expected:
        hits = [i for i, o in enumerate(observed) if overlaps(e, o)]
        if hits:
            tp += 1
            unmatched.difference_update(hits)
        else:
            fn += 1
    return EventCounts(tp=tp, fp=len(unmatched), fn=fn)


def detection_times(y_true, y_pred, timestamps) -> pd.DataFrame:
    """One row per true event: start, end, detected, first_alarm (first flagged point inside
    [start, end], NaT if none), delay = first_alarm - start and forewarning = end - first_alarm
    (the time left before the event ends); both NaT when the event was missed."""
    truth = _mask(y_true, "y_true")
    pred = _mask(y_pred, "y_pred", len(truth))
    stamps = _timestamps(timestamps, len(truth))
    rows = []
    for first, last in events(truth):
        flagged = np.flatnonzero(pred[first:last + 1])
        alarm = stamps[first + flagged[0]] if len(flagged) else pd.NaT
        rows.append({"start": stamps[first], "end": stamps[last], "detected": bool(len(flagged)),
                     "first_alarm": alarm})
    table = pd.DataFrame(rows, columns=["start", "end", "detected", "first_alarm"])
    for column in ("start", "end", "first_alarm"):
        table[column] = pd.to_datetime(table[column])
    table["detected"] = table["detected"].astype(bool)
    table["delay"] = table["first_alarm"] - table["start"]
    table["forewarning"] = table["end"] - table["first_alarm"]
    return table


def mean_forewarning(table: pd.DataFrame) -> float:
    """Mean forewarning of the detected events, in seconds; NaN when none was detected."""
    return _mean_seconds(table["forewarning"])


def mean_delay(table: pd.DataFrame) -> float:
    """Mean detection delay of the detected events, in seconds; NaN when none was detected."""
    return _mean_seconds(table["delay"])


def _mean_seconds(deltas: pd.Series) -> float:
    deltas = pd.to_timedelta(deltas).dropna()
    return float(deltas.dt.total_seconds().mean()) if len(deltas) else float("nan")


# ---------------------------------------------------------------- NAB


@dataclass(frozen=True)
class NabProfile:
    tp_weight: float
    fp_weight: float
    fn_weight: float


# NAB's config/profiles.json: standard, reward_low_FP_rate, reward_low_FN_rate.
NAB_PROFILES = {
    "standard": NabProfile(1.0, 0.11, 1.0),
    "low_fp": NabProfile(1.0, 0.22, 1.0),
    "low_fn": NabProfile(1.0, 0.11, 2.0),
}

# "nab": numenta/NAB's sweeper; "skab": SKAB's changepoint score (tsad's chp_score).
NAB_SCORINGS = ("nab", "skab")


def nab_probationary_rows(n_rows: int) -> int:
    """NAB's probationary period: min(floor(0.15 * n), 0.15 * 5000) rows are not scored
    (numenta/NAB nab/sweeper.py, Sweeper._getProbationaryLength)."""
    return int(min(math.floor(0.15 * n_rows), 750))


def _windows_frame(rows: list[tuple[pd.Timestamp, pd.Timestamp]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["start", "end"])
    frame["start"] = pd.to_datetime(frame["start"])
    frame["end"] = pd.to_datetime(frame["end"])
    return frame


def changepoint_windows(timestamps, changepoints, width=pd.Timedelta("60s"), *,
                        overlap: str = "merge") -> pd.DataFrame:
    """Scoring windows [cp, cp + width] to the right of each true changepoint (a row where
    `changepoints` is true), as SKAB's scorer places them (chp_score with
    anomaly_window_destination="righter", window_width="60s").

    Windows that overlap are merged (`overlap="merge"`, NAB's rule for its windows). SKAB's
    tsad instead moves the later window's start to the earlier one's end
    (`overlap="cut_right"`, its default intersection_mode "cut right window"); use that to
    reproduce SKAB's published changepoint scores.
    """
    flags = _mask(changepoints, "changepoints")
    stamps = _timestamps(timestamps, len(flags))
    width = pd.Timedelta(width)
    if width < pd.Timedelta(0):
        raise MetricsInputError(f"width={width}, must be >= 0")
    bounds = [[t, t + width] for t in stamps[flags]]
    if overlap == "merge":
        merged: list[list[pd.Timestamp]] = []
        for start, end in bounds:
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        bounds = merged
    elif overlap == "cut_right":
        # tsad src.single_detecting_boundaries: if w[i].end >= w[i+1].start, w[i+1].start = w[i].end
        for i in range(len(bounds) - 1):
            if bounds[i][1] >= bounds[i + 1][0]:
                bounds[i + 1][0] = bounds[i][1]
    else:
        raise MetricsInputError(f"overlap={overlap!r}, expected 'merge' or 'cut_right'")
    return _windows_frame([tuple(b) for b in bounds])


def label_windows(timestamps, y_true) -> pd.DataFrame:
    """start, end of each run of labeled points (a label column that marks NAB windows)."""
    truth = _mask(y_true, "y_true")
    stamps = _timestamps(timestamps, len(truth))
    return _windows_frame([(stamps[a], stamps[b]) for a, b in events(truth)])


@dataclass(frozen=True)
class NabFileScore:
    """One file's raw NAB score per profile and its counts: tp = windows detected, fn =
    windows missed, fp = detections outside every window (each one counts).

    `n_windows` are the windows the file's score includes (with the "nab" scoring, those
    with at least one row after the probationary period; the null detector's score is
    -n_windows * fn_weight); `n_windows_unscored` those wholly inside the probationary period
    (NAB still counts them in the perfect score, see `nab_normalised`)."""

    raw: dict[str, float]
    n_windows: int
    # counts; fractional where counts of several runs are averaged (a benchmark's seeds)
    tp: float
    fp: float
    fn: float
    n_windows_unscored: int = 0
    scoring: str = "nab"
    # per window: start, end, first_detection (NaT if none), detected
    detail: pd.DataFrame = field(default=None, repr=False, compare=False)


_NAT = np.iinfo(np.int64).min  # NaT as int64 nanoseconds: "no detection yet"


def _scaled_sigmoid(position: np.ndarray) -> np.ndarray:
    """NAB's scaledSigmoid (nab/sweeper.py): 2 * sigmoid(-5 x) - 1, and -1 beyond x > 3."""
    position = np.asarray(position, dtype=float)
    value = 2.0 / (1.0 + np.exp(5.0 * np.clip(position, -50.0, 50.0))) - 1.0
    return np.where(position > 3.0, -1.0, value)


def _check_windows(windows: pd.DataFrame, scoring: str) -> tuple[np.ndarray, np.ndarray]:
    missing = {"start", "end"} - set(windows.columns)
    if missing:
        raise MetricsInputError(f"windows: columns {sorted(missing)} missing, expected start and end")
    starts, ends = as_ns(windows["start"]), as_ns(windows["end"])
    if (starts.hasnans or ends.hasnans):
        raise MetricsInputError("windows: a start or end is missing")
    for i in range(len(starts)):
        if ends[i] < starts[i]:
            raise MetricsInputError(f"windows: window {i} ends ({ends[i]}) before it starts ({starts[i]})")
        # The sweeper walks the rows once, entering each window at its start: windows must be
        # sorted and apart. tsad's cut windows may share a boundary instant.
        if i and (starts[i] < ends[i - 1] or (scoring == "nab" and starts[i] == ends[i - 1])):
            raise MetricsInputError(f"windows: window {i} starts at {starts[i]}, before window {i - 1} ends "
                                    f"({ends[i - 1]}); expected sorted windows that do not overlap (merge them)")
    return starts.asi8, ends.asi8


def nab_file_score(timestamps, detections, windows: pd.DataFrame, *, probationary_rows: int = 0,
                   scoring: str = "nab", profiles: dict[str, NabProfile] = NAB_PROFILES) -> NabFileScore:
    """Raw NAB score of one file for each profile.

    `detections`: one boolean per row, true where the detector fires (NAB scores each such
    row; pass alarm onsets, not alarm states, unless every flagged row is meant as a detection).

    scoring="nab" follows numenta/NAB nab/sweeper.py (Sweeper.calcSweepScore and
    calcScoreByThreshold) and nab/scorer.py:
      - a window covers the rows from the first at or after its start to the row stamped with
        its end (or the last row before it); its width is its row count;
      - rows before `probationary_rows` are not scored; a window with no row after them is
        left out (counted in `n_windows_unscored`);
      - in a window, the detection at row i scores tp_weight * S(-(right - i + 1) / width) / S(-1)
        with S the scaled sigmoid: +tp_weight at the left edge, near 0 at the right edge; only
        the best (the first) detection of a window counts, later ones cost nothing;
      - a window without a detection scores -fn_weight;
      - a detection outside every window with no window before it scores -fp_weight; after a
        window it scores fp_weight * S(|right - i| / (width - 1)) (near 0 just after the
        window, -fp_weight from three widths on). NAB divides by zero for a one-row window;
        its older scorer.py gives such a window distance 2.0, used here.

    scoring="skab" reproduces SKAB's changepoint score (waico/SKAB core/metrics.py, from
    waico/tsad tsad/evaluating: chp_score(metric="nab") -> single_evaluate_nab with the
    default scale_func="improved", extract_cp_confusion_matrix):
      - no probationary period; windows in time, both edges included;
      - the first detection in a window at time t scores (A_tp - A_fp) * u + A_fp with
        A_fp = -fp_weight and u = (1 - tanh(x) / tanh(pi / 2)) / 2, x read off a
        1000-point grid over [-pi/2, pi/2] at index int((t - start) / (end - start) * 1000)
        (so tp_weight at the left edge, -fp_weight at the right edge);
      - every detection outside the windows costs fp_weight, however close to a window;
      - a window without a detection scores -fn_weight.
    """
    if scoring not in NAB_SCORINGS:
        raise MetricsInputError(f"scoring={scoring!r}, expected one of {NAB_SCORINGS}")
    fired = _mask(detections, "detections")
    stamps = _timestamps(timestamps, len(fired))
    if probationary_rows < 0:
        raise MetricsInputError(f"probationary_rows={probationary_rows}, must be >= 0")
    if scoring == "skab" and probationary_rows:
        raise MetricsInputError(f"probationary_rows={probationary_rows}: SKAB's score has no probationary "
                                "period, expected 0 with scoring='skab'")
    starts, ends = _check_windows(windows, scoring)
    if scoring == "nab":
        return _score_nab(stamps.asi8, fired, starts, ends, probationary_rows, profiles)
    return _score_skab(stamps.asi8, fired, starts, ends, profiles)


def _detail(starts, ends, first_detection) -> pd.DataFrame:
    detail = pd.DataFrame({"start": pd.to_datetime(starts), "end": pd.to_datetime(ends),
                           "first_detection": pd.to_datetime(first_detection)})
    detail["detected"] = detail["first_detection"].notna()
    return detail


def _score_nab(stamps, fired, starts, ends, probationary_rows, profiles) -> NabFileScore:
    n = len(stamps)
    lefts = np.searchsorted(stamps, starts, side="left")
    # The sweeper finds a window's right edge with timestamps.index(end): the first row
    # stamped `end`; windows whose end is not a row's stamp (time-based windows) end on the
    # last row before it.
    rights = np.searchsorted(stamps, ends, side="right") - 1
    exact = np.searchsorted(stamps, ends, side="left")
    on_row = (exact < n) & (stamps[np.minimum(exact, n - 1)] == ends)
    rights = np.where(on_row, exact, rights)
    empty = lefts > rights
    if empty.any():
        bad = int(np.flatnonzero(empty)[0])
        raise MetricsInputError(f"windows: window {bad} ({pd.Timestamp(starts[bad])} to {pd.Timestamp(ends[bad])}) "
                                "holds no row of the series")
    widths = (rights - lefts + 1).astype(float)
    scored = rights >= probationary_rows
    rows = np.flatnonzero(fired & (np.arange(n) >= probationary_rows))

    window_of = np.full(n, -1)
    for w, (a, b) in enumerate(zip(lefts, rights, strict=True)):
        window_of[a:b + 1] = w
    max_tp = _scaled_sigmoid(np.array([-1.0]))[0]
    best = np.full(len(starts), -np.inf)  # unweighted tp score of the best detection per window
    first = np.full(len(starts), _NAT)
    fp_unweighted = 0.0
    n_fp = 0
    for i in rows:
        w = window_of[i]
        if w >= 0:
            position = -(rights[w] - i + 1) / widths[w]
            value = _scaled_sigmoid(np.array([position]))[0] / max_tp
            if value > best[w]:
                best[w] = value
            if first[w] == _NAT:
                first[w] = stamps[i]
            continue
        n_fp += 1
        before = np.flatnonzero(rights < i)
        if len(before) == 0:
            fp_unweighted += -1.0
        else:
            p = before[-1]
            distance = abs(rights[p] - i) / (widths[p] - 1) if widths[p] > 1 else 2.0
            fp_unweighted += _scaled_sigmoid(np.array([distance]))[0]
    detected = scored & np.isfinite(best)
    raw = {}
    for name, profile in profiles.items():
        tp_part = float(np.sum(best[detected])) * profile.tp_weight
        fn_part = -profile.fn_weight * int(np.sum(scored & ~detected))
        raw[name] = float(tp_part + fn_part + fp_unweighted * profile.fp_weight)
    return NabFileScore(raw=raw, n_windows=int(scored.sum()), tp=int(detected.sum()), fp=n_fp,
                        fn=int(np.sum(scored & ~detected)), n_windows_unscored=int((~scored).sum()),
                        scoring="nab", detail=_detail(starts, ends, first))


# tsad's my_scale grid: 1000 points over [-pi/2, pi/2]
_SKAB_GRID = np.linspace(-np.pi / 2, np.pi / 2, 1000)


def _score_skab(stamps, fired, starts, ends, profiles) -> NabFileScore:
    times = stamps[fired]
    n_windows = len(starts)
    first = np.full(n_windows, _NAT)
    in_any = np.zeros(len(times), dtype=bool)
    for k in range(n_windows):
        inside = (times >= starts[k]) & (times <= ends[k])
        in_any |= inside
        if inside.any():
            first[k] = times[inside][0]
    # tsad counts as FP the detections before the first window, strictly between windows and
    # after the last one: those in no window.
    n_fp = int(np.sum(~in_any))
    detected = first != _NAT
    shape = np.zeros(n_windows)  # u in [0, 1]: 1 at the left edge, 0 at the right edge
    for w in np.flatnonzero(detected):
        span = ends[w] - starts[w]
        event = int((first[w] - starts[w]) / span * len(_SKAB_GRID)) if span else 0
        event = min(event, len(_SKAB_GRID) - 1)
        x = _SKAB_GRID[event]
        shape[w] = (1.0 - np.tanh(x) / np.tanh(np.pi / 2)) / 2.0
    raw = {}
    for name, profile in profiles.items():
        a_tp, a_fp, a_fn = profile.tp_weight, -profile.fp_weight, -profile.fn_weight
        tp_part = float(np.sum((a_tp - a_fp) * shape[detected] + a_fp))
        raw[name] = float(tp_part + a_fp * n_fp + a_fn * int(np.sum(~detected)))
    return NabFileScore(raw=raw, n_windows=n_windows, tp=int(detected.sum()), fp=n_fp,
                        fn=int(np.sum(~detected)), scoring="skab", detail=_detail(starts, ends, first))


def nab_normalised(files: list[NabFileScore], profiles: dict[str, NabProfile] = NAB_PROFILES) -> dict[str, float]:
    """Corpus score per profile: 100 * (S - S_null) / (S_perfect - S_null) over the pooled
    files, S the sum of their raw scores.

    NAB (nab/runner.py, Runner.normalize) takes S_null from the null detector's score, which
    misses every scored window: -n_windows * fn_weight, and S_perfect = (number of labeled
    windows) * tp_weight, windows inside the probationary period included. SKAB's tsad
    (single_evaluate_nab) uses n_windows * A_fn and n_windows * A_tp: the same numbers, as
    its files have no probationary period. NaN when the corpus has no window.
    """
    result = {}
    for name, profile in profiles.items():
        total = sum(f.raw[name] for f in files)
        null = -profile.fn_weight * sum(f.n_windows for f in files)
        perfect = profile.tp_weight * sum(f.n_windows + f.n_windows_unscored for f in files)
        result[name] = _ratio(100.0 * (total - null), perfect - null)
    return result


# ---------------------------------------------------------------- ranking (tabular records)


def roc_auc(y_true, scores) -> float:
    """Area under the ROC curve: the chance that an anomalous record scores above a normal
    one, ties counting half (the Mann-Whitney U statistic over both counts); nan with a
    single class. Written here because scikit-learn is not a dependency."""
    truth = _mask(y_true, "y_true")
    values = np.asarray(scores, dtype=np.float64)
    if values.shape != truth.shape:
        raise MetricsInputError(f"scores: {values.shape[0] if values.ndim else 0} values for {len(truth)} labels")
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = average_ranks(values)  # ties count half
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def best_f1(y_true, scores) -> float:
    """The highest F1 any threshold on `scores` gives (flagging every score >= t, over every
    distinct t): the ceiling a detector's own threshold is measured against."""
    truth = _mask(y_true, "y_true")
    values = np.asarray(scores, dtype=np.float64)
    if not truth.any():
        return float("nan")
    order = np.argsort(-values, kind="stable")
    hits = np.cumsum(truth[order])
    flagged = np.arange(1, len(values) + 1)
    ends = np.flatnonzero(np.r_[np.diff(values[order]) != 0, True])  # last record of each tie group
    return float(np.max(2 * hits[ends] / (flagged[ends] + truth.sum())))
