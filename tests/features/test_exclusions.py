import numpy as np
import pandas as pd
import pytest

from features.exclusions import (
    ExclusionError,
    ExclusionInterval,
    Exclusions,
    excluded_mask,
    parse_rule,
    windows_touching,
)
from features.training_set import make_training_set
from features.windows import WindowSpec


def frame():
    ts = pd.date_range("2026-01-01", periods=6, freq="min")
    return pd.DataFrame({"timestamp": list(ts) * 2, "asset": ["p1"] * 6 + ["p2"] * 6,
                         "Current": [0.0, 0.05, 1, 1, 1, 0.09] * 2, "speed": np.arange(12.0)})


@pytest.mark.parametrize("text, parsed", [
    ("Current < 0.1", ("Current", "<", 0.1)), ("speed>=1e3", ("speed", ">=", 1000.0)),
    ("`Volume Flow RateRMS` <= -2.5", ("Volume Flow RateRMS", "<=", -2.5)), ("x != 0", ("x", "!=", 0.0)),
])
def test_rules_are_parsed_not_evaluated(text, parsed):
    rule = parse_rule(text)
    assert (rule.column, rule.op, rule.value) == parsed


@pytest.mark.parametrize("text", ["Current < 0.1 or 1", "__import__('os').system('x') < 1", "Current <", "< 3",
                                  "Current = 1", "Current < abc"])
def test_anything_but_a_comparison_is_refused(text):
    with pytest.raises(ExclusionError, match="is not understood; expected '<column> <op> <number>'"):
        parse_rule(text)


def test_mask_from_rules_and_intervals():
    f = frame()
    mask = excluded_mask(f, ["Current < 0.1"], [ExclusionInterval(pd.Timestamp("2026-01-01 00:02"),
                                                                 pd.Timestamp("2026-01-01 00:03"), asset="p2")])
    assert mask.tolist() == [True, True, False, False, False, True, True, True, True, True, False, True]
    everyone = excluded_mask(f, [], [ExclusionInterval(pd.Timestamp("2026-01-01 00:04"),
                                                       pd.Timestamp("2026-01-01 00:04"))])
    assert everyone.sum() == 2
    with pytest.raises(ExclusionError, match="names column 'Pressure', which the readings lack"):
        excluded_mask(f, ["Pressure > 1"])
    with pytest.raises(ExclusionError, match=r"ends .* before it starts"):
        ExclusionInterval(pd.Timestamp("2026-01-02"), pd.Timestamp("2026-01-01"))


def test_windows_touching_excluded_readings():
    f = frame()
    mask = excluded_mask(f, ["Current < 0.1"])
    start = pd.to_datetime(["2026-01-01 00:02", "2026-01-01 00:01", "2026-01-01 00:02"]).to_numpy()
    end = pd.to_datetime(["2026-01-01 00:04", "2026-01-01 00:02", "2026-01-01 00:05"]).to_numpy()
    flags = windows_touching(f, mask, np.array(["p1", "p1", "p2"]), start, end)
    assert flags.tolist() == [False, True, True]


def test_excluded_windows_never_train(small_stream):
    data = small_stream.readings
    spec = WindowSpec(size=10, stride=5)
    sensors = ["motor_current", "flow_rate"]
    base = make_training_set(data, sensors, spec, label_columns=["label"])
    cut = data["motor_current"].quantile(0.2)
    off = Exclusions.parse([f"motor_current < {cut}"])
    excl = make_training_set(data, sensors, spec, label_columns=["label"], exclusions=off)
    assert excl.n_excluded_rules > 0
    kept = set(zip(excl.train.asset, excl.train.start, strict=True))
    before = set(zip(base.train.asset, base.train.start, strict=True))
    assert kept < before  # a subset: exclusions only remove windows
    for asset, start in before - kept:  # each removed window holds a machine-off reading
        rows = data[(data["asset"] == asset) & (data["timestamp"] >= start)
                    & (data["timestamp"] <= start + spec.span)]
        assert (rows["motor_current"] < cut).any()
    scaled_cut = (cut - excl.scaler.mean_[0]) / excl.scaler.scale_[0]
    assert (excl.train.X[:, :, 0] >= scaled_cut - 1e-5).all() and (excl.val.X[:, :, 0] >= scaled_cut - 1e-5).all()
