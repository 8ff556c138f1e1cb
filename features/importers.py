"""Stream layouts of the public benchmark data sets, for importing them through the normal
ingest (features.readers + features.validation), read in place by path.

- SKAB (Skoltech Anomaly Benchmark): `;`-separated CSV, a `datetime` column, 8 sensors,
  `anomaly` and `changepoint` labels (absent from the anomaly-free file). One experiment
  per file; each file becomes one asset named `<folder>-<file>` (`valve1-0`).
- NAB (Numenta Anomaly Benchmark): `timestamp,value` CSV per series, anomaly windows in
  `windows.json` (`{"<folder>/<file>.csv": [[start, end], ...]}`) that become a `label`
  column. Each file becomes one asset named after it.
- ADBench's classical tabular sets: NumPy `.npz` files with `X` (records x features) and `y`
  (0 normal, 1 anomaly), no time order. `adbench_split` is ADBench's stratified 70 / 30 split;
  `adbench_records` lays a split out as the records of a tabular stream (features `x00`...,
  a `label` column): the training part first, so a monitor trains on the first records and
  scores the ones after them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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


def split_rows(path: str | Path, rows: int, folder: str | Path) -> list[Path]:
    """Cut a CSV into consecutive parts of `rows` data rows, each written with the header to
    `folder/<i>.csv` (imported as SKAB, each is an asset of its own, `<folder name>-<i>`); a last
    part shorter than `rows` joins the one before it, so every row lands in one part. The
    lines are copied as they are, parsed by the normal ingest afterwards.

    SKAB's anomaly-free recording is one long file of the rig running normally; cut into parts
    of an experiment's length, each scored as SKAB scores an experiment (the first 400 rows
    train), it measures the false-alarm rate of the protocol on normal days."""
    if rows < 1:
        raise ValueError(f"rows: {rows}; expected >= 1")
    path = Path(path)
    with open(path, encoding="utf-8-sig", newline="") as handle:
        header, *lines = [line for line in handle if line.strip()]
    if not lines:
        raise DataSetError(f"{path}: no data rows under the header")
    starts = list(range(0, len(lines), rows))
    if len(starts) > 1 and len(lines) - starts[-1] < rows:
        starts.pop()
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(lines)
        part = out / f"{i}.csv"
        with open(part, "w", encoding="utf-8", newline="") as handle:
            handle.write(header if header.endswith("\n") else header + "\n")
            handle.writelines(line if line.endswith("\n") else line + "\n" for line in lines[start:end])
        parts.append(part)
    return parts


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


ADBENCH_LABEL = "label"


def adbench_files(data_dir: str | Path, sets: list[str] | tuple[str, ...] = ()) -> list[tuple[Path, str]]:
    """(file, set name) of the ADBench `.npz` sets in data_dir, in ADBench's numbering;
    `sets`: only these (names as `6_cardio` or `cardio`, any case), each of which must exist."""
    root = Path(data_dir)
    files = sorted(root.glob("*.npz"), key=lambda p: (*_natural(p.stem.split("_")[0]), p.stem))
    if not files:
        raise DataSetError(f"{root}: no ADBench sets (expected <n>_<name>.npz files with X and y)")
    named = [(p, p.stem) for p in files]
    if not sets:
        return named
    chosen = []
    for wanted in sets:
        match = [f for f in named if wanted.lower() in (f[1].lower(), f[1].partition("_")[2].lower())]
        if not match:
            raise DataSetError(f"{root}: no ADBench set {wanted!r}; it has {[n for _, n in named]}")
        chosen += [f for f in match if f not in chosen]
    return chosen


def load_adbench(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """X (records x features, float64) and y (bool) of one ADBench `.npz` set, checked."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("X", "y") if k not in data.files]
            if missing:
                raise DataSetError(f"{path}: arrays {missing} missing; expected X (records x features) and y")
            X, y = np.asarray(data["X"], dtype=np.float64), np.asarray(data["y"])
    except (OSError, ValueError) as exc:
        raise DataSetError(f"{path}: not a readable .npz file ({exc})") from exc
    if X.ndim != 2 or y.shape != (len(X),):
        raise DataSetError(f"{path}: X has shape {X.shape} and y {y.shape}; expected (n, d) and (n,)")
    if not np.isfinite(X).all():
        raise DataSetError(f"{path}: X has {int((~np.isfinite(X)).sum())} values that are not finite")
    if not np.isin(y, (0, 1)).all():
        other = sorted(set(np.unique(y).tolist()) - {0, 1})[:5]
        raise DataSetError(f"{path}: y has values other than 0 and 1: {other}")
    return X, y.astype(bool)


def adbench_split(y: np.ndarray, seed: int, test_fraction: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) of a stratified split: `test_fraction` of each class (rounded)
    goes to the test part, chosen by `seed`; both parts in a random order."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction}, must be between 0 and 1")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in (False, True):
        members = rng.permutation(np.flatnonzero(y == label))
        n_test = round(test_fraction * len(members))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def adbench_sensors(n_features: int) -> list[str]:
    """Column names of an ADBench set's features as a stream's sensors: x00, x01, ..."""
    width = max(2, len(str(n_features - 1)))
    return [f"x{j:0{width}d}" for j in range(n_features)]


def adbench_records(X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> pd.DataFrame:
    """The records of one split as a tabular export: the training records, then the test
    records, one column per feature and the `label` column."""
    order = np.concatenate([train, test])
    frame = pd.DataFrame(X[order], columns=adbench_sensors(X.shape[1]))
    frame[ADBENCH_LABEL] = y[order].astype(np.int8)
    return frame
