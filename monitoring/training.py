"""Training one stream's detector: normal windows -> fitted detector -> model bundle."""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from aemodels.detector import AutoencoderDetector
from features.training_set import make_training_set
from features.windows import WindowSpec
from monitoring.bundle import ModelBundle


@dataclass(frozen=True)
class TrainedBundle:
    bundle: ModelBundle
    params: dict
    history: list[dict]
    tags: dict
    input_example: pd.DataFrame


def data_hash(frame: pd.DataFrame) -> str:
    """A content hash of the training readings, to tell later which data a version saw."""
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()[:16]


def train_bundle(
    frame: pd.DataFrame,
    *,
    stream: str,
    sensors: list[str],
    spec: WindowSpec,
    detector_params: dict,
    label_columns: list[str] = (),
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    val_fraction: float = 0.2,
    train_stride: int | None = None,
) -> TrainedBundle:
    data = make_training_set(
        frame, sensors, spec, label_columns=list(label_columns), start=start, end=end,
        val_fraction=val_fraction, train_stride=train_stride,
    )
    detector = AutoencoderDetector(**detector_params).fit(data.train.X, data.val.X)
    bundle = ModelBundle(stream=stream, sensors=list(sensors), spec=spec, scaler=data.scaler, detector=detector)
    val_flags = detector.val_scores_ > detector.threshold_
    params = {
        **{f"detector.{k}": v for k, v in detector.get_params().items()},
        **{f"window.{k}": v for k, v in asdict(spec).items()},
        "stream": stream,
        "sensors": ",".join(sensors),
        "scaler": "standard",
        "train.start": str(data.start),
        "train.end": str(data.end),
        "train.val_fraction": val_fraction,
        "train.stride": train_stride or spec.stride,
        "train.n_windows": len(data.train),
        "val.n_windows": len(data.val),
        "train.n_windows_excluded_labeled": data.n_excluded_labeled,
    }
    history = [
        {**row, "val_false_alarm_rate": None} for row in detector.history_
    ]
    history[-1]["val_false_alarm_rate"] = float(np.mean(val_flags))
    used = frame[(frame["timestamp"] >= data.start) & (frame["timestamp"] <= data.end)]
    tags = {
        "training_range": f"{data.start.isoformat()}/{data.end.isoformat()}",
        "data_hash": data_hash(used[["timestamp", "asset", *sensors]]),
        "threshold_method": f"p{detector.threshold_percentile:g}x{detector.threshold_coefficient:g}",
    }
    first_asset = used[used["asset"] == used["asset"].iloc[0]]
    example = first_asset.head(spec.size + spec.stride)[["timestamp", "asset", *sensors]].reset_index(drop=True)
    return TrainedBundle(bundle, params, history, tags, example)
