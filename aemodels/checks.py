"""The number checks that aemodels' constructors and functions run on their arguments, in
one place so every message reads the same: `<owner> <name>=<value>, must be ...`.

Booleans are refused where a number is expected (`True` is an int to Python, never a
window size); numpy scalars are accepted (numbers.Integral / numbers.Real include them).
"""
from __future__ import annotations

import math
import numbers


def is_int(value: object) -> bool:
    """An integer that is not a bool (numpy integers included)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _finite_float(value: object) -> float | None:
    """The value as a float when it is a finite real number that is not a bool (numpy floats
    and ints included); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def check_int(label: str, value: object, minimum: int) -> None:
    """ValueError unless `value` is an int >= minimum; `label` names it ("TrainConfig epochs")."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{label}={value!r}, must be an int >= {minimum}")


def check_real(label: str, value: object, low: float | None = None, high: float | None = None, *,
               low_open: bool = False, high_open: bool = False) -> None:
    """ValueError unless `value` is a finite real number within the bounds given (closed
    unless `low_open` / `high_open`); the message states the interval expected."""
    number = _finite_float(value)
    ok = number is not None
    if number is not None and low is not None:
        ok = number > low if low_open else number >= low
    if number is not None and ok and high is not None:
        ok = number < high if high_open else number <= high
    if not ok:
        raise ValueError(f"{label}={value!r}, must be {_interval(low, high, low_open, high_open)}")


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"a finite number {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"a finite number {'<' if high_open else '<='} {high:g}"
    return "a finite number"
