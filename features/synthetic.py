"""Synthetic telemetry of centrifugal pumps, with labelled faults.

Each asset has a latent load q (flow as a fraction of rated flow): a daily demand cycle
(+-25 %, peak in the afternoon) plus a slow random walk (low-pass filtered noise). The sensors
follow from it:

    flow_rate           q * rated flow                                   m3/h
    motor_current       rated current * (0.45 + 0.55 q)                   A
    suction_pressure    base - 0.2 q^2 (inlet losses) + own slow drift    bar
    discharge_pressure  suction + shut-off head * (1 - 0.25 q^2)          bar  (pump curve)
    vibration_rms       base + 1.2 q^2                                    mm/s
    bearing_temp        lag_60min(ambient + 15 + 12 q)                    degC
    motor_temp          lag_40min(ambient + rise * (current / rated)^2)   degC

plus Gaussian measurement noise of NOISE_STD per sensor. Ambient temperature has its own daily
cycle. The first `fault_start_fraction` of the span is clean; after it each asset gets
`faults_per_kind` faults of every kind in FAULT_KINDS, in separate slots at least two hours apart.

Clean data and faults draw from separate generators spawned from `default_rng(seed)`, so the
clean signal does not depend on the faults: with `faults_per_kind=0` the readings equal the
faulted ones outside the fault intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd

SENSORS: tuple[str, ...] = ("vibration_rms", "motor_current", "suction_pressure",
                            "discharge_pressure", "flow_rate", "bearing_temp", "motor_temp")
FAULT_KINDS: tuple[str, ...] = ("spike", "level_shift", "drift", "stuck", "noise_burst",
                                "broken_correlation")
NOISE_STD = MappingProxyType({
    "vibration_rms": 0.05, "motor_current": 0.4, "suction_pressure": 0.01,
    "discharge_pressure": 0.04, "flow_rate": 1.5, "bearing_temp": 0.3, "motor_temp": 0.6,
})

_SIGMA = np.array([NOISE_STD[name] for name in SENSORS])
_COL = {name: j for j, name in enumerate(SENSORS)}
# Stuck needs a big daily swing, so that the frozen value departs clearly from the truth.
_STUCK_SENSORS = ("flow_rate", "motor_current", "discharge_pressure", "bearing_temp", "motor_temp")
# broken_correlation modes: (changed sensor, partner that keeps following the load, direction)
_BROKEN_MODES = (("flow_rate", "motor_current", -1),   # blockage: flow drops, current does not
                 ("motor_current", "flow_rate", +1))   # friction: current rises, flow does not
_DURATION_H = {"level_shift": (1.0, 3.0), "drift": (2.0, 4.0), "stuck": (2.0, 4.0),
               "noise_burst": (0.5, 1.5), "broken_correlation": (1.0, 3.0)}
_MAX_DURATION_H, _GAP_H, _TAIL_H = 4.0, 2.0, 1.0


def _n_steps(spec: SyntheticSpec) -> int:
    return int(spec.days * 86400 // spec.interval_s)


def _steps(hours: float, dt: int) -> int:
    return max(1, math.ceil(hours * 3600 / dt))


def _max_duration(dt: int) -> int:
    return max(3, _steps(_MAX_DURATION_H, dt))


def _fault_region(spec: SyntheticSpec, n: int) -> tuple[int, int]:
    """First row a fault may start on and last row a fault may end on."""
    first = math.ceil(spec.fault_start_fraction * (n - 1))
    return first, n - 1 - _steps(_TAIL_H, spec.interval_s)


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate: assets, time span and grid, where and how many faults, seed."""

    n_assets: int = 3
    days: float = 14.0
    interval_s: int = 60
    start: str = "2026-01-05T00:00:00"
    fault_start_fraction: float = 0.5
    faults_per_kind: int = 1
    seed: int = 0

    def __post_init__(self):
        checks = [("n_assets", self.n_assets >= 1, ">= 1"), ("days", self.days > 0, "> 0"),
                  ("interval_s", self.interval_s >= 1, ">= 1"),
                  ("fault_start_fraction", 0 <= self.fault_start_fraction < 1, "in [0, 1)"),
                  ("faults_per_kind", self.faults_per_kind >= 0, ">= 0"),
                  ("seed", self.seed >= 0, ">= 0")]
        for field, ok, expected in checks:
            if not ok:
                raise ValueError(f"{field}={getattr(self, field)!r}, must be {expected}")
        try:
            pd.Timestamp(self.start)
        except ValueError as err:
            raise ValueError(f"start={self.start!r}, must be an ISO timestamp") from err
        n = _n_steps(self)
        if n < 2:
            raise ValueError(f"days={self.days!r} with interval_s={self.interval_s!r} gives "
                             f"{n} readings, must give >= 2")
        n_faults = self.faults_per_kind * len(FAULT_KINDS)
        first, last_end = _fault_region(self, n)
        have = last_end - first + 1
        need = n_faults * (_max_duration(self.interval_s) + _steps(_GAP_H, self.interval_s))
        if n_faults and have < need:
            raise ValueError(
                f"faulted part too short to place {n_faults} faults per asset without overlap: "
                f"have {have * self.interval_s / 3600:.1f} h after fault_start_fraction="
                f"{self.fault_start_fraction} (less the final hour), need "
                f"{need * self.interval_s / 3600:.1f} h; raise days or lower "
                f"fault_start_fraction or faults_per_kind")


@dataclass(frozen=True)
class SyntheticStream:
    """Readings (timestamp, asset, SENSORS..., label) and the table of injected faults."""

    readings: pd.DataFrame
    faults: pd.DataFrame


def generate_stream(spec: SyntheticSpec = SyntheticSpec()) -> SyntheticStream:
    """Simulate `spec.n_assets` pumps on a regular grid and inject labelled faults."""
    n, dt = _n_steps(spec), spec.interval_s
    start = pd.Timestamp(spec.start)
    if start.tz is not None:
        start = start.tz_convert("UTC").tz_localize(None)
    timestamps = pd.date_range(start, periods=n, freq=pd.Timedelta(seconds=dt))
    timestamps = timestamps.astype("datetime64[ns]")
    hours = (start - start.normalize()).total_seconds() / 3600 + np.arange(n) * dt / 3600

    clean_rng, fault_rng = np.random.default_rng(spec.seed).spawn(2)
    asset_rngs = zip(clean_rng.spawn(spec.n_assets), fault_rng.spawn(spec.n_assets), strict=True)
    frames, fault_rows = [], []
    for a, (signal_rng, faults_rng) in enumerate(asset_rngs):
        asset = f"pump-{a + 1:02d}"
        truth, noise = _simulate_asset(signal_rng, hours, dt)
        values, label = truth + noise, np.zeros(n, dtype=np.int8)
        for kind, s, e, sensors in _inject_faults(faults_rng, spec, truth, noise, values):
            label[s:e + 1] = 1
            fault_rows.append((asset, kind, ",".join(sensors), timestamps[s], timestamps[e]))
        frame = pd.DataFrame(values, columns=list(SENSORS))
        frame.insert(0, "timestamp", timestamps)
        frame.insert(1, "asset", pd.Series([asset] * n, dtype="str"))
        frame["label"] = label
        frames.append(frame)

    readings = pd.concat(frames, ignore_index=True)
    faults = pd.DataFrame(fault_rows, columns=["asset", "kind", "sensors", "start", "end"])
    faults = faults.astype({"asset": "str", "kind": "str", "sensors": "str",
                            "start": "datetime64[ns]", "end": "datetime64[ns]"})
    faults = faults.sort_values(["asset", "start"], kind="stable", ignore_index=True)
    faults.insert(0, "fault_id", np.arange(len(faults), dtype=np.int64))
    return SyntheticStream(readings=readings, faults=faults)


def _lag(x: np.ndarray, dt: int, tau_s: float) -> np.ndarray:
    """First-order lag with time constant tau_s, starting in steady state."""
    from scipy.signal import lfilter  # here: the configuration imports this module for SENSORS

    a = math.exp(-dt / tau_s)
    return lfilter([1 - a], [1, -a], x, zi=[a * x[0]])[0]


def _slow_noise(rng: np.random.Generator, n: int, dt: int, tau_s: float, std: float):
    """Stationary low-pass filtered Gaussian noise with standard deviation `std`."""
    from scipy.signal import lfilter

    a = math.exp(-dt / tau_s)
    unit = math.sqrt((1 - a) / (1 + a))  # stationary std of the filter driven by N(0, 1)
    y0 = rng.normal(0, unit)
    y = lfilter([1 - a], [1, -a], rng.standard_normal(n), zi=[a * y0])[0]
    return y * std / unit


def _simulate_asset(rng: np.random.Generator, hours: np.ndarray, dt: int):
    """Noise-free sensor values and measurement noise, both (n, len(SENSORS))."""
    n = len(hours)
    rated_flow, head = rng.uniform(90, 150), rng.uniform(5.5, 7.0)  # m3/h, bar at shut-off
    suction0 = rng.uniform(1.3, 1.8)
    rated_current = rated_flow * rng.uniform(0.4, 0.5)
    vibration0, ambient0 = rng.uniform(1.4, 2.2), rng.uniform(16, 22)  # mm/s, degC
    temp_rise = rng.uniform(35, 45)  # degC of motor heating at rated current
    peak_h = rng.normal(14.0, 1.0)

    q = (1 + 0.25 * np.cos(2 * np.pi * (hours - peak_h) / 24)
         + _slow_noise(rng, n, dt, tau_s=3 * 3600, std=0.04))
    current = rated_current * (0.45 + 0.55 * q)
    suction = suction0 - 0.2 * q**2 + _slow_noise(rng, n, dt, tau_s=6 * 3600, std=0.02)
    ambient = ambient0 + 4 * np.cos(2 * np.pi * (hours - 15) / 24)
    truth = np.column_stack([
        vibration0 + 1.2 * q**2,
        current,
        suction,
        suction + head * (1 - 0.25 * q**2),
        rated_flow * q,
        _lag(ambient + 15 + 12 * q, dt, tau_s=60 * 60),
        _lag(ambient + temp_rise * (current / rated_current) ** 2, dt, tau_s=40 * 60),
    ])
    noise = rng.standard_normal((n, len(SENSORS))) * _SIGMA
    return truth, noise


def _inject_faults(rng, spec, truth, noise, values):
    """Modify `values` in place; yield (kind, start row, end row inclusive, sensors)."""
    n_faults, dt = spec.faults_per_kind * len(FAULT_KINDS), spec.interval_s
    if n_faults == 0:
        return
    first, last_end = _fault_region(spec, len(values))
    length, gap = last_end - first + 1, _steps(_GAP_H, dt)
    lo, hi = values.min(axis=0), values.max(axis=0)  # the clean range of this asset
    scale = truth.std(axis=0)  # and its normal variation
    kinds = rng.permutation(np.repeat(FAULT_KINDS, spec.faults_per_kind))
    for k, kind in enumerate(map(str, kinds)):
        slot_lo, slot_hi = first + k * length // n_faults, first + (k + 1) * length // n_faults
        dur = int(rng.integers(1, 4)) if kind == "spike" else max(1, round(rng.uniform(*_DURATION_H[kind]) * 3600 / dt))
        tail = gap if k < n_faults - 1 else 0
        starts = np.arange(slot_lo, slot_hi - dur - tail + 1)
        if kind == "stuck":
            j = _COL[str(rng.choice(_STUCK_SENSORS))]
            move = np.abs(truth[starts + dur - 1, j] - truth[starts, j])
            s = int(rng.choice(starts[move >= 0.8 * move.max()]))  # a steep stretch
            values[s:s + dur, j] = values[s, j]
            yield kind, s, s + dur - 1, (SENSORS[j],)
        elif kind == "broken_correlation":
            s, sensors = _break_correlation(rng, truth, noise, values, lo, hi, starts, dur)
            yield kind, s, s + dur - 1, sensors
        else:
            j, s = int(rng.integers(len(SENSORS))), int(rng.choice(starts))
            sign = rng.choice((-1, 1))
            rows, sigma, spread = slice(s, s + dur), _SIGMA[j], scale[j]
            # Sized against both the noise and the sensor's normal variation, so that a
            # fault stands out whatever the sensor's signal-to-noise ratio.
            if kind == "spike":  # beyond the clean range
                edge = hi[j] if sign > 0 else lo[j]
                jump = max(rng.uniform(8, 15) * sigma, rng.uniform(1.0, 2.0) * spread)
                values[rows, j] = edge + sign * jump + noise[rows, j]
            elif kind == "level_shift":
                values[rows, j] += sign * max(rng.uniform(6, 10) * sigma, rng.uniform(0.8, 1.2) * spread)
            elif kind == "drift":
                top = max(rng.uniform(10, 15) * sigma, rng.uniform(1.5, 2.0) * spread)
                values[rows, j] += sign * top * np.arange(1, dur + 1) / dur
            elif kind == "noise_burst":
                values[rows, j] += (rng.uniform(6, 10) - 1) * noise[rows, j]
            else:
                raise AssertionError(f"unhandled fault kind {kind!r}")
            yield kind, s, s + dur - 1, (SENSORS[j],)


def _break_correlation(rng, truth, noise, values, lo, hi, starts, dur):
    """Scale one sensor by 30-40 % where it stays in its clean range; return (start, sensors)."""
    from scipy.ndimage import maximum_filter1d, minimum_filter1d

    target = rng.uniform(0.30, 0.40)
    order = (0, 1) if rng.random() < 0.5 else (1, 0)
    rooms = []
    for m in order:
        name, _, sign = _BROKEN_MODES[m]
        j, margin = _COL[name], 3 * _SIGMA[_COL[name]]
        if sign < 0:  # room to drop: window minimum * (1 - f) >= clean min
            window_min = minimum_filter1d(truth[:, j], dur, mode="nearest", origin=-(dur // 2))
            rooms.append(1 - (lo[j] + margin) / window_min[starts])
        else:  # room to rise: window maximum * (1 + f) <= clean max
            window_max = maximum_filter1d(truth[:, j], dur, mode="nearest", origin=-(dur // 2))
            rooms.append((hi[j] - margin) / window_max[starts] - 1)
    pick = 0 if rooms[0].max() >= target or rooms[0].max() >= rooms[1].max() else 1
    room, (name, partner, sign) = rooms[pick], _BROKEN_MODES[order[pick]]
    f = max(min(target, room.max()), 0.15)
    s = int(rng.choice(starts[room >= f])) if (room >= f).any() else int(starts[room.argmax()])
    j, rows = _COL[name], slice(s, s + dur)
    values[rows, j] = truth[rows, j] * (1 + sign * f) + noise[rows, j]
    return s, (name, partner)
