"""What a calibration source is, and how a source spec (``scheme:arg?key=value``) is read."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..defaults import DEFAULTS
from ..errors import SynthcalibError


@dataclass(frozen=True)
class SourceContext:
    """What the caller knows that a source may use: the target model's classes and size, devices."""

    num_classes: int | None = None
    image_size: tuple[int, int] | None = None
    device: str = DEFAULTS["device"]
    batch_size: int = DEFAULTS["batch_size"]
    num_requests: int = DEFAULTS["num_requests"]
    precision: str | None = DEFAULTS["precision"]


class Source:
    """A source of canonical images: RGB float32 NCHW in [0, 1].

    Subclasses set ``num_classes`` (and ``class_names`` where known), ``image_size`` (``None``
    when images are made at any requested size) and ``conditional`` (whether the label of an
    item actually determines its content), and implement :meth:`iter_images`.
    """

    scheme: str = ""
    num_classes: int = 1
    class_names: tuple[str, ...] | None = None
    image_size: tuple[int, int] | None = None
    conditional: bool = False
    batch_size: int = DEFAULTS["batch_size"]

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def iter_images(
        self,
        indices: np.ndarray,
        labels: np.ndarray,
        seed: int,
        size: tuple[int, int] | None = None,
        occurrences: np.ndarray | None = None,
    ) -> Iterator[np.ndarray]:
        """Batches of images for the given items; item ``i`` depends on ``(seed, i, label)`` only.

        ``occurrences`` (how many items of the same class precede each one) lets sources that
        draw from a finite pool, such as image folders, walk each class without repeats.
        """
        raise NotImplementedError

    def output_size(self, size: tuple[int, int] | None) -> tuple[int, int]:
        """The size images come out at: the native one, else the requested one."""
        if self.image_size is not None:
            return self.image_size
        if size is None:
            raise SynthcalibError(
                f"source '{self.spec}' makes images of any size: give the target size (e.g. ?size=32x32)"
            )
        return size

    @property
    def names(self) -> tuple[str, ...]:
        return self.class_names or tuple(f"class{i}" for i in range(self.num_classes))

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "scheme": self.scheme,
            "num_classes": self.num_classes,
            "conditional": self.conditional,
            "image_size": list(self.image_size) if self.image_size else None,
        }

    def close(self) -> None:
        """Release resources (compiled models, files)."""


class ItemSource(Source):
    """A source that makes each item from its own generator ``item_rng(seed, tag, i)``."""

    tag: int = 0

    def render(self, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
        """One image, RGB float32 [3, H, W] in [0, 1]."""
        raise NotImplementedError

    def iter_images(
        self,
        indices: np.ndarray,
        labels: np.ndarray,
        seed: int,
        size: tuple[int, int] | None = None,
        occurrences: np.ndarray | None = None,
    ) -> Iterator[np.ndarray]:
        from ..rng import item_rng

        hw = self.output_size(size)
        for start in range(0, len(indices), self.batch_size):
            chunk = indices[start : start + self.batch_size]
            yield np.stack([self.render(item_rng(seed, self.tag, int(i)), hw) for i in chunk])


SourceFactory = Callable[[str, dict[str, Any], SourceContext], Source]


@dataclass(frozen=True)
class SourceType:
    """A scheme a plugin provides: ``factory(arg, options, context)`` builds the source."""

    scheme: str
    factory: SourceFactory
    help: str
    example: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


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
    """``32``, ``32x48``, ``[32, 48]`` -> (H, W)."""
    if isinstance(value, str):
        value = value.lower().replace("x", ",").split(",")
    if isinstance(value, (int, float)):
        value = [value, value]
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = [value[0], value[0]]
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise SynthcalibError(f"{name}: expected H, HxW or [H, W], got {value!r}") from None
    if h <= 0 or w <= 0:
        raise SynthcalibError(f"{name}: expected positive sizes, got {value!r}")
    return h, w


def take_options(spec: str, options: dict[str, Any], allowed: dict[str, Any]) -> dict[str, Any]:
    """Options with defaults filled in; an unknown key is an error naming the spec."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise SynthcalibError(
            f"source '{spec}': unknown option(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed)) or 'none'}"
        )
    return {**allowed, **options}
