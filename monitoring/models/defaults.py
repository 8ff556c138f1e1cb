"""The defaults a stream starts from where it differs from the detector library, and the
default split of its training range: constants the configuration reads without importing
the training code (and with it torch and MLflow)."""
from __future__ import annotations

from dataclasses import dataclass

from aemodels.thresholds import ThresholdRule
from features.windows import WindowSpec

# Where a stream's detectors differ from the library's defaults (aemodels), and why:
# error_scaling "sensor" (each sensor's error over its calibration spread) lifted SKAB's F1
# from 0.80 to 0.86 at a lower false-alarm rate, and on the synthetic pumps the gate's
# champions' incident precision from 0.941 to 0.949 and the VAE's from 0.69 to 0.85
# (README, Benchmarks). The stream configuration and the benchmarks both start from here.
STREAM_DETECTOR_DEFAULTS: dict[str, object] = {"error_scaling": "sensor"}

# Tabular streams (records with no time order): windows of one record, every record scored
# and every training record used. Their detector kind, settings and threshold rule were chosen
# out-of-fold on ADBench's 18 classical sets (bench/adbench_defaults.py; README, "How good is it
# on tabular data"): of the configurations tried (the autoencoders', and 8 of knn and pca) knn
# (10 neighbours, its default) with error_scaling "none" had the best mean ROC AUC (0.879,
# against 0.845 for mlp_ae, the previous default), and the 97.5th percentile of the
# calibration scores the best mean F1 of p90 ... p99.5. A tabular stream trains knn unless
# its [detectors] table names `kinds`.
TABULAR_SPEC = WindowSpec(size=1, stride=1, align=False)
TABULAR_KINDS: tuple[str, ...] = ("knn",)
TABULAR_DETECTOR_DEFAULTS: dict[str, object] = {"error_scaling": "none"}
TABULAR_THRESHOLD = ThresholdRule(percentile=97.5)



@dataclass(frozen=True)
class TrainingSplit:
    """The default split of a stream's training range (see the module docstring):
    `val_fraction` of it calibrates and is held out, the last `holdout_fraction` of that
    compares versions; training windows start every `stride` samples (denser than
    scoring's: overlapping windows are extra examples for free), and a range that gives more
    than `max_windows` training windows keeps every k-th of them (see prepare_training)."""

    val_fraction: float = 0.2
    holdout_fraction: float = 0.5
    stride: int | None = 2
    max_windows: int | None = 16_384
    # thresholds from the calibration windows alone (1), or cross-fitted over the range in
    # k >= 3 folds (monitoring.models.fitting.cross_fitted_values)
    calibration_folds: int = 1


def check_calibration_folds(folds: object) -> None:
    """A ValueError naming `calibration_folds` unless it is 1 or a whole number >= 3: the range
    is cut into that many folds, the calibration windows one of them, and with 2 the other
    fold is every training window, which leaves no window to fit the model that scores it."""
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 1 or folds == 2:
        raise ValueError(f"calibration_folds={folds!r}, expected 1 (thresholds from the calibration windows "
                         "alone) or a whole number >= 3 (cross-fitted over the whole range in that many folds, "
                         "one more fit per fold after the first)")
