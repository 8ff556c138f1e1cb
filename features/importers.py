"""Stream layouts of the public benchmark data sets, for importing them through the normal
ingest (features.readers + features.validation), read in place by path.

- SKAB (Skoltech Anomaly Benchmark): `;`-separated CSV, a `datetime` column, 8 sensors,
  `anomaly` and `changepoint` labels (absent from the anomaly-free file). One experiment
  per file; each file becomes one asset named `<folder>-<file>` (`valve1-0`).
- NAB (Numenta Anomaly Benchmark): `timestamp,value` CSV per series, anomaly windows in
  `windows.json` (`{"<folder>/<file>.csv": [[start, end], ...]}`) that become a `label`
  column. Each file becomes one asset named after it.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from features.errors import FeaturesError
from features.readers import StreamSchema


class DataSetError(FeaturesError):
    """A benchmark folder does not have the layout its importer expects."""



SKAB_SENSORS = ("Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature",
                "Thermocouple", "Voltage", "VolumeFlowRateRMS")
SKAB_LABELS = ("anomaly", "changepoint")
SKAB_SCHEMA = StreamSchema(
    sensors=SKAB_SENSORS,
    timestamp_column="datetime",
    asset_column=None,
    asset_id="skab",
    label_columns=SKAB_LABELS,
    labels_optional=True,
    # a lake column name has no spaces; the SKAB README calls this sensor RateRMS
    column_aliases=(("Volume Flow RateRMS", "VolumeFlowRateRMS"),),
)
NAB_SCHEMA = StreamSchema(sensors=("value",), timestamp_column="timestamp", asset_column=None, asset_id="nab")
NAB_WINDOWS = "windows.json"


def skab_files(data_dir: str | Path) -> list[tuple[Path, str]]:
    """(file, asset id) of every SKAB CSV under data_dir (one folder level: valve1/0.csv)."""
    root = Path(data_dir)
    files = sorted(root.glob("*/*.csv"), key=lambda p: (p.parent.name, _natural(p.stem)))
    if not files:
        raise DataSetError(f"{root}: no SKAB files (expected <folder>/<n>.csv, e.g. valve1/0.csv)")
    return [(p, skab_asset(p)) for p in files]


def skab_asset(path: Path) -> str:
    path = Path(path)
    return path.parent.name if path.stem == path.parent.name else f"{path.parent.name}-{path.stem}"


def nab_files(data_dir: str | Path) -> list[tuple[Path, str]]:
    """(file, asset id) of every NAB series in data_dir."""
    root = Path(data_dir)
    files = sorted(root.glob("*.csv"))
    if not files:
        raise DataSetError(f"{root}: no NAB series (expected <name>.csv files with timestamp,value)")
    return [(p, p.stem) for p in files]


def nab_windows(data_dir: str | Path, file_name: str) -> pd.DataFrame:
    """The labelled anomaly windows (start, end) of one NAB file, from windows.json."""
    path = Path(data_dir) / NAB_WINDOWS
    if not path.exists():
        raise DataSetError(f"{path}: missing; NAB labels come from windows.json next to the series")
    try:
        windows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataSetError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(windows, dict):
        raise DataSetError(f"{path}: expected an object mapping file names to lists of [start, end] pairs")
    matches = [v for k, v in windows.items() if k == file_name or k.endswith("/" + file_name)]
    if not matches:
        raise DataSetError(f"{path}: no entry for {file_name}; it has {sorted(windows)[:5]}...")
    try:
        rows = [(pd.Timestamp(start), pd.Timestamp(end)) for start, end in matches[0]]
    except (TypeError, ValueError) as exc:
        raise DataSetError(f"{path}: the windows of {file_name} must be [start, end] pairs of timestamps ({exc})") \
            from exc
    return pd.DataFrame(rows, columns=["start", "end"])


def _natural(stem: str) -> tuple:
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)
