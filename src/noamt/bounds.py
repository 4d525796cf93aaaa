"""The checks a config dataclass runs on its values in ``__post_init__``: each refusal is a
one-line ValueError naming the key as it is written on the command line,
``<group>.<key>=<value>: must be <what it must be>``, e.g. ``trainer.max_tokens=0: must be at least 1``."""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection
from typing import Any


def is_integer(value: Any) -> bool:
    """An integer, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_finite(value: Any) -> bool:
    """A real number, not a bool, neither NaN nor infinite."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def require(key: str, value: Any, holds: bool, expected: str) -> None:
    """Unless ``holds``: ValueError ``<key>=<value>: must be <expected>``."""
    if not holds:
        raise ValueError(f"{key}={value!r}: must be {expected}")


def at_least(key: str, value: Any, least: int, note: str = "") -> None:
    """``value`` is an integer >= ``least``; ``note`` follows the bound in the message."""
    require(key, value, is_integer(value), "an integer")
    require(key, value, value >= least, f"at least {least}{note}")


def at_least_or_none(key: str, value: Any, least: int) -> None:
    """``value`` is None (no limit) or an integer >= ``least``."""
    if value is not None:
        at_least(key, value, least, " or null")


def fraction(key: str, value: Any) -> None:
    """``value`` is a number in [0, 1) (a probability that leaves something: dropout, smoothing)."""
    require(key, value, is_finite(value) and 0 <= value < 1, "in [0, 1)")


def one_of(key: str, value: Any, choices: Collection[str]) -> None:
    """``value`` is one of ``choices``."""
    require(key, value, value in choices, f"one of {', '.join(choices)}")
