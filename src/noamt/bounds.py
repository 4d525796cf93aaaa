"""The checks a config dataclass runs on its values in ``__post_init__``: each refusal is a
one-line ValueError naming the key as it is written on the command line,
``<group>.<key>=<value>: must be <what it must be>``, e.g. ``trainer.max_tokens=0: must be at least 1``.

The argparse ``type`` functions below (:func:`positive_int`, :func:`positive_float`,
:func:`int_type`, :func:`comma_separated`, ...) make the same checks on an option's text: a
refusal is an ``argparse.ArgumentTypeError``, which argparse prints as its usage and one line,
``<prog>: error: argument --beam-size: 0: must be at least 1``.
"""

from __future__ import annotations

import argparse
import math
import numbers
from collections.abc import Callable, Collection
from typing import Any, TypeVar

T = TypeVar("T")


class Refused(ValueError):
    """A value out of its bounds: ``<key>=<value>: must be <expected>``."""

    def __init__(self, key: str, value: Any, expected: str):
        super().__init__(f"{key}={value!r}: must be {expected}")
        self.key, self.value, self.expected = key, value, expected

    def __reduce__(self) -> tuple[type[Refused], tuple[str, Any, str]]:
        """Pickled by its three parts (a worker process's refusal reaches its parent whole)."""
        return Refused, (self.key, self.value, self.expected)


def is_integer(value: Any) -> bool:
    """An integer, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_finite(value: Any) -> bool:
    """A real number, not a bool, neither NaN nor infinite."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def require(key: str, value: Any, holds: bool, expected: str) -> None:
    """Unless ``holds``: ValueError ``<key>=<value>: must be <expected>``."""
    if not holds:
        raise Refused(key, value, expected)


def at_least(key: str, value: Any, least: int, note: str = "") -> None:
    """``value`` is an integer >= ``least``; ``note`` follows the bound in the message."""
    require(key, value, is_integer(value), "an integer")
    require(key, value, value >= least, f"at least {least}{note}")


def at_most(key: str, value: Any, most: float, note: str = "") -> None:
    """``value`` (a number, checked before) is <= ``most``; ``note`` says why, after the bound."""
    require(key, value, value <= most, f"at most {most}{note}")


def between(key: str, value: Any, least: int, most: int, note: str = "") -> None:
    """``value`` is an integer from ``least`` to ``most``; ``note`` follows the upper bound."""
    at_least(key, value, least)
    at_most(key, value, most, note)


def at_least_or_none(key: str, value: Any, least: int) -> None:
    """``value`` is None (no limit) or an integer >= ``least``."""
    if value is not None:
        at_least(key, value, least, " or null")


def finite(key: str, value: Any) -> None:
    """``value`` is a number, neither NaN nor infinite."""
    require(key, value, is_finite(value), "a finite number")


def positive(key: str, value: Any) -> None:
    """``value`` is a finite number > 0."""
    require(key, value, is_finite(value) and value > 0, "a finite number > 0")


def non_negative(key: str, value: Any) -> None:
    """``value`` is a finite number >= 0."""
    require(key, value, is_finite(value) and value >= 0, "a finite number >= 0")


def in_interval(key: str, value: Any, least: float, most: float) -> None:
    """``value`` is a number in the closed interval [least, most] (never NaN or infinite)."""
    require(key, value, is_finite(value) and least <= value <= most, f"in [{least:g}, {most:g}]")


def fraction(key: str, value: Any) -> None:
    """``value`` is a number in [0, 1) (a probability that leaves something: dropout, smoothing)."""
    require(key, value, is_finite(value) and 0 <= value < 1, "in [0, 1)")


def one_of(key: str, value: Any, choices: Collection[str]) -> None:
    """``value`` is one of ``choices``."""
    require(key, value, value in choices, f"one of {', '.join(choices)}")


def argument(parse: Callable[[str], T], check: Callable[[str, T], None], name: str) -> Callable[[str], T]:
    """An argparse ``type`` named ``name``: ``parse(text)`` (int or float), then ``check(key,
    value)``, one of the checks above; text that does not parse, or a value the check refuses, is
    an ArgumentTypeError ``<text>: must be ...``."""

    def convert(text: str) -> T:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text}: must be {'an integer' if parse is int else 'a number'}"
            ) from None
        try:
            check("", value)
        except Refused as err:
            raise argparse.ArgumentTypeError(f"{text}: must be {err.expected}") from None
        return value

    convert.__name__ = name
    return convert


def int_type(least: int, most: int | None = None, note: str = "") -> Callable[[str], int]:
    """An argparse ``type``: an integer from ``least`` (to ``most``; ``note`` says why)."""
    if most is None:
        return argument(int, lambda key, value: at_least(key, value, least, note), f"integer >= {least}")
    return argument(int, lambda key, value: between(key, value, least, most, note), f"integer in [{least}, {most}]")


positive_int = int_type(1)
"""An argparse ``type``: an integer >= 1."""
non_negative_int = int_type(0)
"""An argparse ``type``: an integer >= 0."""
positive_float = argument(float, positive, "positive number")
"""An argparse ``type``: a finite number > 0 (not nan, not inf)."""
non_negative_float = argument(float, non_negative, "non-negative number")
"""An argparse ``type``: a finite number >= 0."""
finite_float = argument(float, finite, "finite number")
"""An argparse ``type``: a finite number."""
MAX_RESAMPLES = 100_000
"""The most bootstrap resamples a command takes: the draws are a (resamples, sentences) float64
matrix (800 MB for 1,000 sentences at this bound), and 100,000 resamples already pin a p-value
near 0.05 to within 0.001."""
resample_count = int_type(2, MAX_RESAMPLES)
"""An argparse ``type``: a number of bootstrap resamples, 2 (a spread needs two) to MAX_RESAMPLES."""
open_fraction = argument(
    float, lambda key, value: require(key, value, is_finite(value) and 0 < value < 1, "in (0, 1)"), "fraction"
)
"""An argparse ``type``: a number strictly between 0 and 1 (a confidence level)."""


def comma_separated(item: Callable[[str], T]) -> Callable[[str], list[T]]:
    """An argparse ``type``: comma-separated values, each converted (and checked) by ``item``;
    blank items are skipped."""

    def convert(text: str) -> list[T]:
        return [item(part.strip()) for part in text.split(",") if part.strip()]

    convert.__name__ = f"comma-separated {getattr(item, '__name__', 'value')}s"
    return convert
