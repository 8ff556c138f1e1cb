"""The model bundle: network + scaler + window spec + sensor schema + threshold, saved
and loaded as one folder, and served through MLflow as a pyfunc model.

The threshold lives inside the fitted detector (`threshold_`, set by its `fit` or
`recalibrate` from its ThresholdRule), which is saved with the network weights, so a
registered version can never be paired with another version's threshold.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from aemodels.base import BaseDetector
from features.differencing import difference
from features.scaling import StandardScaler
from features.windows import WindowSet, WindowSpec, window_frame
from monitoring.errors import BundleInputError

N_TOP_SENSORS = 3


@dataclass
class ModelBundle:
    stream: str
    sensors: list[str]
    spec: WindowSpec
    scaler: StandardScaler
    detector: BaseDetector
    differenced: list[str] = field(default_factory=list)  # slow sensors seen as changes (features.differencing)

    @property
    def threshold(self) -> float:
        return float(self.detector.threshold_)

    @property
    def threshold_rule(self) -> str:
        """The name of the rule that set `threshold` (p99, p99x1.3, pot(risk=0.001))."""
        return self.detector.threshold.name

    @property
    def thresholds(self) -> dict[str, float]:
        """Every threshold measured on the calibration windows (p95, p99, p99.9, pot), kept
        for comparison, never used in place of `threshold`."""
        return dict(self.detector.thresholds_)

    @property
    def severity_origin(self) -> float:
        """The score of severity 0. Severity is (score - origin) / (threshold - origin): 1 at the
        threshold, 2 twice as far from the origin. For non-negative scores (reconstruction
        errors) the origin is 0, so severity = score / threshold; for scores that can be
        negative (a VAE's -log p) it is the median calibration score."""
        scores = np.asarray(self.detector.val_scores_, dtype=np.float64)
        return 0.0 if scores.min() >= 0 else float(np.median(scores))

    def severity(self, scores: np.ndarray) -> np.ndarray:
        origin = self.severity_origin
        span = self.threshold - origin
        return (scores - origin) / span if span > 0 else np.full(len(scores), np.inf)

    def input_columns(self) -> list[str]:
        return ["timestamp", "asset", *self.sensors]

    def check_input(self, frame: pd.DataFrame) -> None:
        """Refuse readings whose columns differ from the sensor schema, listing the difference."""
        expected = self.input_columns()
        missing = [c for c in expected if c not in frame.columns]
        unexpected = [c for c in frame.columns if c not in expected]
        if missing or unexpected:
            problems = []
            if missing:
                problems.append(f"missing {missing}")
            if unexpected:
                problems.append(f"unexpected {unexpected}")
            raise BundleInputError(
                f"readings differ from the sensor schema of stream '{self.stream}': {'; '.join(problems)}; "
                f"the model expects exactly {expected}"
            )

    def windows(self, frame: pd.DataFrame, *, stride: int | None = None,
                extra_columns: tuple[str, ...] = ()) -> tuple[WindowSet, np.ndarray]:
        """Scaled windows of `frame` (the bundle's window spec; `stride` overrides its stride),
        and the same windows of `extra_columns` unscaled, (n, size, len(extra_columns))."""
        spec = self.spec if stride is None else replace(self.spec, stride=stride)
        readings = frame[[*self.input_columns(), *extra_columns]].copy()
        readings["timestamp"] = pd.to_datetime(readings["timestamp"])
        readings = difference(readings, self.differenced)
        readings[self.sensors] = self.scaler.transform(readings[self.sensors].to_numpy(dtype=np.float64))
        both = window_frame(readings, [*self.sensors, *extra_columns], spec)
        n = len(self.sensors)
        return WindowSet(np.ascontiguousarray(both.X[:, :, :n]), both.asset, both.start, both.end), both.X[:, :, n:]

    def score_readings(self, frame: pd.DataFrame, *, all_contributions: bool = False) -> pd.DataFrame:
        """One row per complete window in `frame`: score, threshold, flag, severity, the three
        sensors that contribute most and the signed per-sensor contributions as JSON (positive:
        reading above its reconstruction). Scoring stores contributions of flagged windows only,
        so only theirs are written out (None for the others) unless `all_contributions`."""
        self.check_input(frame)
        windows, _ = self.windows(frame)
        if len(windows) == 0:
            return _empty_result(self.sensors)
        scores, contrib = self.detector.score_with_contributions(windows.X)  # (n,), (n, n_sensors) signed
        scores = scores.astype(np.float64)
        threshold = self.threshold
        flagged = scores > threshold
        described = np.arange(len(scores)) if all_contributions else np.flatnonzero(flagged)
        contributions = np.full(len(scores), None, dtype=object)
        contributions[described] = [
            json.dumps({s: round(float(v), 6) for s, v in zip(self.sensors, row, strict=True)})
            for row in contrib[described]
        ]
        return pd.DataFrame({
            "asset": windows.asset.astype(str),
            "window_start": windows.start,
            "window_end": windows.end,
            "score": scores,
            "threshold": np.full(len(scores), threshold),
            "is_anomaly": flagged,
            "severity": self.severity(scores),
            "top_sensors": top_sensors(contrib, self.sensors),
            "contributions": contributions,
        })

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "stream": self.stream,
            "sensors": self.sensors,
            "window": asdict(self.spec),
            "scaler": self.scaler.to_dict(),
            "detector_kind": self.detector.kind,
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "thresholds": self.thresholds,
            "differenced": self.differenced,
        }
        (path / "bundle.json").write_text(json.dumps(meta, indent=2))
        self.detector.save(path / "detector")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ModelBundle:
        path = Path(path)
        meta = json.loads((path / "bundle.json").read_text())
        detector = BaseDetector.load(path / "detector")  # the class is chosen by the saved kind
        return cls(
            stream=meta["stream"],
            sensors=list(meta["sensors"]),
            # bundles saved before `align` existed were trained on readings as they came
            spec=WindowSpec(**{"align": False, **meta["window"]}),
            scaler=StandardScaler.from_dict(meta["scaler"]),
            detector=detector,
            differenced=list(meta.get("differenced", [])),
        )


def top_sensors(contrib: np.ndarray, sensors: list[str], n: int = N_TOP_SENSORS) -> np.ndarray:
    """Per window, the names of the `n` sensors with the largest |contribution|, joined by
    commas, (n_windows,) object. Each distinct ranking is joined once: a stream has few."""
    order = np.argsort(-np.abs(contrib), axis=1)[:, :n]  # (n_windows, n)
    base = max(len(sensors), 1)
    codes = (order * base ** np.arange(order.shape[1])[::-1]).sum(axis=1)  # one integer per ranking
    distinct, which = np.unique(codes, return_inverse=True)
    names = np.asarray([",".join(sensors[int(code) // base ** k % base] for k in range(order.shape[1] - 1, -1, -1))
                        for code in distinct], dtype=object)
    return names[np.asarray(which).reshape(-1)]


def _empty_result(sensors: list[str]) -> pd.DataFrame:
    return pd.DataFrame({
        "asset": pd.Series(dtype=str),
        "window_start": pd.Series(dtype="datetime64[ns]"),
        "window_end": pd.Series(dtype="datetime64[ns]"),
        "score": pd.Series(dtype=np.float64),
        "threshold": pd.Series(dtype=np.float64),
        "is_anomaly": pd.Series(dtype=bool),
        "severity": pd.Series(dtype=np.float64),
        "top_sensors": pd.Series(dtype=str),
        "contributions": pd.Series(dtype=str),
    })


class BundleModel(PythonModel):
    """MLflow pyfunc face of a ModelBundle: `predict(readings) -> scored windows`.

    Inputs are checked twice without type hints: by MLflow against the signature inferred
    from the input example, then by ModelBundle.check_input, which names missing sensors.
    MLflow's type-hint wrapper would add nothing (a DataFrame hint maps to "Any") and warns
    when hints are absent, so it is turned off."""

    _skip_type_hint_validation = True

    def load_context(self, context):
        self.bundle = ModelBundle.load(context.artifacts["bundle"])

    def predict(self, context, model_input, params=None):
        return self.bundle.score_readings(model_input, all_contributions=True)
