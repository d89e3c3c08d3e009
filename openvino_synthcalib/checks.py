"""Input checks: one function per kind of value, one wording for every front-end.

Imports only :mod:`.errors` of the package: each check returns the value in its canonical form
or raises :class:`Invalid`, which says what was expected. :func:`checked` turns that into a
:class:`~openvino_synthcalib.errors.SynthcalibError` naming the value the way its caller names
it (an option's CLI flag, config key, POT engine key or API keyword).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .errors import SynthcalibError


class Invalid(ValueError):
    """A value that fails a check; ``expected`` completes "expected ...", ``value`` is what came."""

    def __init__(self, expected: str, value: Any) -> None:
        super().__init__(expected)
        self.expected = expected
        self.value = value

    def message(self, name: str) -> str:
        return f"{name}: expected {self.expected}, got {shown(self.value)}"


def shown(value: Any, limit: int = 60) -> str:
    """A user value quoted for an error message, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def checked(check: Callable[[Any], Any], value: Any, name: str) -> Any:
    """``check(value)``, with an :class:`Invalid` raised as a one-line error naming ``name``."""
    try:
        return check(value)
    except Invalid as exc:
        raise SynthcalibError(exc.message(name)) from None


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def integer(value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (not a bool) in ``minimum..maximum``."""
    if not _is_int(value) or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        kind = {1: "a positive integer", 0: "a non-negative integer"}.get(minimum)  # type: ignore[arg-type]
        if kind is None:
            kind = "an integer" + (f" >= {minimum}" if minimum is not None else "")
        raise Invalid(kind + (f" at most {maximum}" if maximum is not None else ""), value)
    return int(value)


def number(value: Any, *, positive: bool = False, low: float | None = None, high: float | None = None) -> float:
    """A finite number (not a bool): positive, or in ``[low, high]`` where given."""
    ok = (_is_int(value) or isinstance(value, (float, np.floating))) and math.isfinite(value)
    if low is not None and high is not None:
        if not ok or not low <= value <= high:
            raise Invalid(f"a number in [{low:g}, {high:g}]", value)
    elif not ok or (positive and value <= 0):
        raise Invalid("a positive number" if positive else "a finite number", value)
    return float(value)


def boolean(value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise Invalid("true or false", value)
    return bool(value)


def text(value: Any, what: str = "a string") -> str:
    """A non-empty string (stripped)."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid(what, value)
    return value.strip()


def choice(value: Any, choices: Sequence[str], aliases: dict[str, str] | None = None, upper: bool = False) -> str:
    """One of ``choices`` (case-insensitive; ``aliases`` map other spellings to a choice)."""
    if isinstance(value, str):
        key = value.strip().upper() if upper else value.strip().lower()
        key = (aliases or {}).get(key, key)
        if key in choices:
            return key
    raise Invalid(f"one of {', '.join(choices)}", value)


def names(value: Any, what: str = "a list of names or indices") -> list[str | int]:
    """Class names or indices: a list, or a comma-separated string."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    elif _is_int(value):
        value = [int(value)]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) or _is_int(v) for v in value):
        raise Invalid(what, value)
    return [v if isinstance(v, str) else int(v) for v in value]


def numbers(value: Any, what: str = "finite numbers separated by commas") -> list[float]:
    """Finite numbers: a list, or a comma/space-separated string."""
    if isinstance(value, str):
        try:
            value = [float(v) for v in value.replace(",", " ").split()]
        except ValueError:
            raise Invalid(what, value) from None
    elif _is_int(value) or isinstance(value, float):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise Invalid(what, value)
    out = []
    for v in value:
        if not (_is_int(v) or isinstance(v, (float, np.floating))) or not math.isfinite(v):
            raise Invalid(what, value)
        out.append(float(v))
    return out


def from_text(kind: Callable[[Any], Any]) -> Callable[[str], Any]:
    """A parser of command-line text for a check of numbers: ``"300"`` -> 300, ``"1.5"`` -> 1.5,
    anything else handed to the check as it is (so that its error shows the text)."""

    def parse(value: str) -> Any:
        converted: Any = value
        for convert in (int, float):
            try:
                converted = convert(value.strip())
                break
            except ValueError:
                continue
        return kind(converted)

    return parse
