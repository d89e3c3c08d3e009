"""Map canonical images (RGB float32 in [0, 1], NCHW) to what a target model expects."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from .errors import SynthcalibError

LAYOUTS = ("NCHW", "NHWC")
CHANNEL_ORDERS = ("RGB", "BGR")
DTYPES = ("float32", "float16", "uint8", "int8")
TRANSFORM_KEYS = ("preset", "size", "input_range", "mean", "std", "channel_order", "layout", "dtype", "channels")


@lru_cache(maxsize=64)
def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Triangle-filter weights [n_out, n_in]: bilinear when enlarging, antialiased when shrinking."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale
    x = np.arange(n_in) + 0.5
    w = np.maximum(0.0, 1.0 - np.abs(x[None, :] - centres[:, None]) / support)
    w /= w.sum(axis=1, keepdims=True)
    return w.astype(np.float32)


def resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize float images [N, C, H, W] to ``size`` (H, W) with separable linear filters."""
    h, w = images.shape[-2:]
    if (h, w) == tuple(size):
        return images
    ry = _resize_matrix(h, size[0])
    rx = _resize_matrix(w, size[1])
    return np.matmul(np.matmul(ry, images), rx.T)


def _floats(value: Any, name: str, length: int | None = None) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split() if v]
    try:
        out = tuple(float(v) for v in (value if isinstance(value, Sequence) else [value]))
    except (TypeError, ValueError):
        raise SynthcalibError(f"{name}: expected numbers, got {value!r}") from None
    if not all(math.isfinite(v) for v in out):
        raise SynthcalibError(f"{name}: expected finite numbers, got {list(out)}")
    if length is not None and len(out) not in (1, length):
        raise SynthcalibError(f"{name}: expected 1 or {length} numbers, got {len(out)}")
    return out


@dataclass(frozen=True)
class Transform:
    """Preprocessing from canonical images to a model input.

    ``input_range`` rescales [0, 1] to [low, high]; then ``(x - mean) / std`` per channel
    (in the model's channel order); then layout and dtype. ``size`` is the model's H x W
    (``None`` keeps the source's size).
    """

    size: tuple[int, int] | None = None
    input_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    channel_order: str = "RGB"
    layout: str = "NCHW"
    dtype: str = "float32"
    channels: int = 3
    #: where the normalisation came from (a preset, the user's values, the model's metadata)
    origin: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.size is not None:
            from .sources.base import parse_size

            object.__setattr__(self, "size", parse_size(self.size, "size"))
        rng = _floats(self.input_range, "input_range")
        if rng is None or len(rng) != 2 or not rng[0] < rng[1]:
            raise SynthcalibError(f"input_range: expected [low, high] with low < high, got {self.input_range!r}")
        object.__setattr__(self, "input_range", rng)
        if isinstance(self.channels, bool) or self.channels not in (1, 3):
            raise SynthcalibError(f"channels: expected 1 or 3, got {self.channels!r}")
        object.__setattr__(self, "mean", _floats(self.mean, "mean", self.channels))
        std = _floats(self.std, "std", self.channels)
        if std is not None and any(s <= 0 for s in std):
            raise SynthcalibError(f"std: expected positive numbers, got {list(std)}")
        object.__setattr__(self, "std", std)
        for key in ("channel_order", "layout", "dtype"):
            if not isinstance(getattr(self, key), str):
                raise SynthcalibError(f"{key}: expected a string, got {getattr(self, key)!r}")
        if self.channel_order.upper() not in CHANNEL_ORDERS:
            raise SynthcalibError(f"channel_order: expected RGB or BGR, got {self.channel_order!r}")
        object.__setattr__(self, "channel_order", self.channel_order.upper())
        if self.layout.upper() not in LAYOUTS:
            raise SynthcalibError(f"layout: expected NCHW or NHWC, got {self.layout!r}")
        object.__setattr__(self, "layout", self.layout.upper())
        if self.dtype not in DTYPES:
            raise SynthcalibError(f"dtype: expected one of {', '.join(DTYPES)}, got {self.dtype!r}")

    @classmethod
    def from_options(cls, preset: str | None = None, **options: Any) -> Transform:
        """A transform from a preset name and/or explicit values (explicit values win)."""
        from .plugins import presets

        base: dict[str, Any] = {}
        origin = options.pop("origin", None)
        if preset is not None:
            table = presets()
            if preset not in table:
                raise SynthcalibError(f"unknown preset {preset!r}: expected one of {', '.join(sorted(table))}")
            base.update(table[preset])
        for key, value in options.items():
            if key not in TRANSFORM_KEYS:
                raise SynthcalibError(f"unknown preprocessing key {key!r}: expected one of {', '.join(TRANSFORM_KEYS)}")
            if value is not None:
                base[key] = value
        if origin is None and preset is not None:
            given = [k for k in ("input_range", "mean", "std") if options.get(k) is not None]
            origin = f"preset {preset}" + (f", given {', '.join(given)}" if given else "")
        return cls(**base, origin=origin)

    @classmethod
    def for_model(cls, model: Any, preset: str | None = None, **options: Any) -> Transform:
        """Read size, layout, channels and dtype from a model's input, then apply options.

        A layout, size or channel count given in ``options`` must agree with the model's input.
        The normalisation comes from the options, else from what the model declares (see
        :mod:`.preprocessing`), else pixels in [0, 255] for a uint8 input; otherwise
        :class:`~.preprocessing.PreprocessingUnstated` is raised: it is never guessed.
        """
        from .classifier import describe_input
        from .preprocessing import declared

        return cls.for_input(describe_input(model), preset, declared(model), **options)

    @classmethod
    def for_input(
        cls, read: dict[str, Any], preset: str | None = None, declared: dict[str, Any] | None = None, **options: Any
    ) -> Transform:
        """:meth:`for_model` from what is known of the input (``describe_input``'s keys; an absent
        key, such as the size of a PyTorch module's input, is not checked) and what the model
        ``declared`` of its normalisation."""
        from .preprocessing import resolve

        for key in ("layout", "channels", "size"):
            given = options.get(key)
            if given is None or key not in read:
                continue
            if key == "size":
                from .sources.base import parse_size

                given = parse_size(given, "size")
            elif key == "layout":
                given = str(given).upper()
            if given != read[key]:
                raise SynthcalibError(
                    f"{key}: {options[key]!r} does not fit: the model's input is {read.get('layout', 'NCHW')} with "
                    f"{read['channels']} channels{' at ' + 'x'.join(map(str, read['size'])) if 'size' in read else ''}"
                )
        stated = resolve({"preset": preset, **options}, read, declared)
        preset = stated.pop("preset", None)
        merged = {k: v for k, v in read.items() if stated.get(k) is None}
        merged.update({k: v for k, v in stated.items() if v is not None})
        return cls.from_options(preset, **merged)

    def output_shape(self, size: tuple[int, int]) -> tuple[int, int, int]:
        """Shape of one transformed item for source images of ``size`` (H, W)."""
        h, w = self.size or size
        return (self.channels, h, w) if self.layout == "NCHW" else (h, w, self.channels)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=np.float32)
        if self.size is not None:
            x = resize(x, self.size)
        if self.channels == 1 and x.shape[1] == 3:
            x = np.tensordot(np.array([0.299, 0.587, 0.114], np.float32), x, axes=([0], [1]))[:, None]
        elif self.channel_order == "BGR":
            x = x[:, ::-1]
        lo, hi = self.input_range
        if (lo, hi) != (0.0, 1.0):
            x = x * np.float32(hi - lo) + np.float32(lo)
        if self.mean is not None:
            x = x - np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)
        if self.std is not None:
            x = x / np.asarray(self.std, np.float32).reshape(1, -1, 1, 1)
        if self.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        if self.dtype in ("uint8", "int8"):
            info = np.iinfo(self.dtype)
            x = np.clip(np.rint(x), info.min, info.max)
        return np.ascontiguousarray(x, dtype=self.dtype)

    def describe(self) -> dict[str, Any]:
        return {
            "size": list(self.size) if self.size else None,
            "input_range": list(self.input_range),
            "mean": list(self.mean) if self.mean else None,
            "std": list(self.std) if self.std else None,
            "channel_order": self.channel_order,
            "layout": self.layout,
            "dtype": self.dtype,
            "channels": self.channels,
            "origin": self.origin,
        }


def as_transform(
    transform: Any, model: Any = None, read: dict[str, Any] | None = None, declared: dict[str, Any] | None = None
) -> Any:
    """A Transform from a Transform, a preset name, a dict of options, a Hugging Face image
    processor, or None (model-derived: the model must declare its normalisation, see
    :mod:`.preprocessing`).

    ``read`` and ``declared`` (instead of an OpenVINO ``model``) are what is known of the input of
    a model of another backend and what it declares of its normalisation (see :mod:`.backends`).
    Any other callable mapping canonical [n, 3, H, W] batches to model inputs is returned as is.
    """
    if isinstance(transform, Transform):
        return transform
    if hasattr(transform, "image_mean") and hasattr(transform, "image_std"):  # a Hugging Face image processor
        from .preprocessing import image_processor_options

        transform = image_processor_options(transform, f"the image processor {type(transform).__name__}")
    if transform is not None and callable(transform) and not isinstance(transform, (str, dict)):
        return transform
    options: dict[str, Any] = {}
    if isinstance(transform, str):
        options["preset"] = transform
    elif isinstance(transform, dict):
        options.update(transform)
    elif transform is not None:
        raise SynthcalibError(
            f"transform: expected a Transform, preset name, dict of options or callable, got {type(transform).__name__}"
        )
    if model is not None:
        return Transform.for_model(model, **options)
    if read is not None:
        return Transform.for_input(read, declared=declared, **options)
    return Transform.from_options(**options) if options else None
