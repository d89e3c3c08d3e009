"""How a source spec (``scheme:arg?key=value``) and its options are read.

Below :mod:`.classes` and :mod:`.sources`, so that both can use it; :mod:`.sources.base` re-exports
these names for plugins.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .checks import checked, integer, number
from .errors import SynthcalibError

#: Largest image side a source makes or a transform resizes to.
MAX_IMAGE_SIDE = 8192


def _value(text: str) -> Any:
    if "," in text:
        return [_value(part) for part in text.split(",") if part != ""]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_spec(spec: str) -> tuple[str, str, dict[str, Any]]:
    """Split ``scheme:arg?k=v&k=v`` into its parts (no scheme: ``("", spec, {})``)."""
    if not isinstance(spec, str) or not spec.strip():
        raise SynthcalibError(f"source: expected a spec such as generator:PATH or images:DIR, got {spec!r}")
    spec = spec.strip()
    body, _, query = spec.partition("?")
    scheme, sep, arg = body.partition(":")
    if not sep or len(scheme) == 1:  # no scheme, or a Windows drive letter
        scheme, arg = "", body
    options: dict[str, Any] = {}
    for pair in filter(None, query.split("&")):
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise SynthcalibError(f"source '{spec}': option {pair!r} is not key=value")
        options[key.strip()] = _value(value.strip())
    return scheme.strip().lower(), arg, options


def parse_size(value: Any, name: str = "size") -> tuple[int, int]:
    """``32``, ``32x48``, ``[32, 48]`` -> (H, W); errors are keyed ``name``."""
    if isinstance(value, str):
        value = value.lower().replace("x", ",").split(",")
    if isinstance(value, (int, float)):
        value = [value, value]
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = [value[0], value[0]]
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise SynthcalibError(f"expected H, HxW or [H, W], got {value!r}", key=name) from None
    if h <= 0 or w <= 0:
        raise SynthcalibError(f"expected positive sizes, got {value!r}", key=name)
    if max(h, w) > MAX_IMAGE_SIDE:
        raise SynthcalibError(f"{h}x{w} is too large; expected at most {MAX_IMAGE_SIDE} pixels a side", key=name)
    return h, w


def take_options(
    spec: str, options: dict[str, Any], allowed: dict[str, Any], kinds: dict[str, str] | None = None
) -> dict[str, Any]:
    """Options with defaults filled in; an unknown key, or a value not of its kind, is an error
    naming the spec. ``kinds`` maps option names to ``"int>=0"``, ``"int>0"``, ``"float"``
    (finite), ``"float>0"``, ``"str"`` or ``"range"`` (two finite increasing numbers)."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise SynthcalibError(
            f"source '{spec}': unknown option(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed)) or 'none'}"
        )
    out = {**allowed, **options}
    for key, kind in (kinds or {}).items():
        if key in options and options[key] is not None:
            out[key] = _check_kind(spec, key, options[key], kind)
    return out


def check_number(value: Any, where: str, positive: bool = False) -> float:
    """A finite number (a positive one if ``positive``), or a one-line error naming ``where``."""
    return checked(lambda v: number(v, positive=positive), value, where)


def _check_kind(spec: str, key: str, value: Any, kind: str) -> Any:
    where = f"source '{spec}': option {key}"
    if kind.startswith("int"):
        return checked(lambda v: integer(v, 1 if kind == "int>0" else 0), value, where)
    if kind.startswith("float"):
        return check_number(value, where, positive=kind == "float>0")
    if kind == "range":
        ok = isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)
        if not ok or not all(np.isfinite(v) for v in value) or not value[0] < value[1]:
            raise SynthcalibError(f"{where}: expected low,high finite numbers with low < high, got {value!r}")
        return (float(value[0]), float(value[1]))
    if kind == "str":
        return str(value)
    raise ValueError(f"unknown option kind {kind!r}")
