"""Map canonical images (RGB float32 in [0, 1], NCHW) to what a target model expects.

The linear steps that mix pixels (resizing, grey from RGB) run in OpenVINO, not in NumPy: NumPy
hands matrix products to OpenBLAS, whose thread pool deadlocks when another thread forks during a
multithreaded call (OpenBLAS's ``pthread_atfork`` handler shuts the pool down and waits for it),
and libraries fork from threads of their own (NNCF's telemetry sends each event from a worker
thread by forking). Items are made in a background thread (the stream's prefetch), so no BLAS
call may run there; ``tests/test_fork.py`` checks that the whole quantize, evaluate and page paths
never start OpenBLAS's pool. The elementwise steps (scale, mean/std, channel order, layout, dtype)
stay in NumPy, which runs them without BLAS.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

import numpy as np

from . import preprocessing
from .classifier import describe_input
from .errors import SynthcalibError
from .models import compile_model
from .plugins import presets
from .specs import parse_size

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


#: The weights of grey from RGB (ITU-R BT.601 luma).
_GREY = (0.299, 0.587, 0.114)


@cache
def _compiled(step: str) -> Any:
    """The OpenVINO model of a linear ``step``, compiled once for every shape (CPU, f32 arithmetic):

    - ``resize``: inputs images [N, C, H, W], ry [h, H], rx [w, W]; output ``ry @ images @ rx.T``
      [N, C, h, w] (the same sums as ``np.matmul``, within a few ulps, see ``resize``);
    - ``grey``: input images [N, 3, H, W]; output the :data:`_GREY` weighted sum of the channels
      [N, 1, H, W].
    """
    import openvino as ov

    try:
        import openvino.opset13 as ops
    except ImportError:  # OpenVINO 2023 (the legacy POT environment)
        import openvino.runtime.opset13 as ops

    f32 = np.float32
    x = ops.parameter([-1, -1, -1, -1], f32, name="images")
    if step == "resize":
        ry, rx = ops.parameter([-1, -1], f32, name="ry"), ops.parameter([-1, -1], f32, name="rx")
        out, inputs = ops.matmul(ops.matmul(ry, x, False, False), rx, False, True), [x, ry, rx]
    else:
        weights = ops.constant(np.array(_GREY, f32).reshape(1, 3, 1, 1))
        out, inputs = ops.reduce_sum(ops.multiply(x, weights), np.array([1]), keep_dims=True), [x]
    model = ov.Model([out], inputs, f"synthcalib_{step}")
    return compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}, f"the {step} step")


_requests = threading.local()  # per thread, an infer request of each step (a request serves one thread)


def _run(step: str, inputs: list[np.ndarray]) -> np.ndarray:
    """Run a :func:`_compiled` step on float32 inputs with this thread's infer request (callers may
    be in several threads at once); the output is a new array."""
    request = getattr(_requests, step, None)
    if request is None:
        request = _compiled(step).create_infer_request()
        setattr(_requests, step, request)
    request.infer([np.ascontiguousarray(a, dtype=np.float32) for a in inputs], share_inputs=True)
    return np.array(request.get_output_tensor(0).data)


def resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize float images [N, C, H, W] to ``size`` (H, W) with separable linear filters
    (:func:`_resize_matrix`), as float32.

    The products run in OpenVINO (see the module's docstring): each value is within a few float32
    ulps of ``np.matmul(np.matmul(ry, images), rx.T)`` (the same sums, rounded in another order;
    ``tests/test_stream.py`` checks 1e-6 relative), and the same on every run.
    """
    h, w = images.shape[-2:]
    if (h, w) == tuple(size):
        return images
    ry = _resize_matrix(h, size[0])
    rx = _resize_matrix(w, size[1])
    if images.size == 0:
        return np.zeros((*images.shape[:-2], *size), np.float32)
    return _run("resize", [images, ry, rx])


def compile_steps(steps: Iterable[str]) -> None:
    """Compile the OpenVINO ``steps`` (``resize``, ``grey``) now, in this thread, if not done yet."""
    for step in steps:
        _compiled(step)


def grey(images: np.ndarray) -> np.ndarray:
    """RGB float images [N, 3, H, W] to grey [N, 1, H, W] (:data:`_GREY`), in OpenVINO."""
    if images.size == 0:
        return np.zeros((images.shape[0], 1, *images.shape[2:]), np.float32)
    return _run("grey", [images])


def _floats(value: Any, name: str, length: int | None = None) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split() if v]
    try:
        out = tuple(float(v) for v in (value if isinstance(value, Sequence) else [value]))
    except (TypeError, ValueError):
        raise SynthcalibError(f"expected numbers, got {value!r}", key=name) from None
    if not all(math.isfinite(v) for v in out):
        raise SynthcalibError(f"expected finite numbers, got {list(out)}", key=name)
    if length is not None and len(out) not in (1, length):
        raise SynthcalibError(f"expected 1 or {length} numbers, got {len(out)}", key=name)
    return out


@dataclass(frozen=True)
class Transform:
    """Preprocessing from canonical images to a model input.

    ``input_range`` rescales [0, 1] to [low, high]; then ``(x - mean) / std`` per channel
    (in the model's channel order); then layout and dtype. ``size`` is the model's H x W
    (``None`` keeps the source's size). A bad value is an error keyed by its field (``mean``).
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
            object.__setattr__(self, "size", parse_size(self.size, "size"))
        rng = _floats(self.input_range, "input_range")
        if rng is None or len(rng) != 2 or not rng[0] < rng[1]:
            raise SynthcalibError(f"expected [low, high] with low < high, got {self.input_range!r}", key="input_range")
        object.__setattr__(self, "input_range", rng)
        if isinstance(self.channels, bool) or self.channels not in (1, 3):
            raise SynthcalibError(f"expected 1 or 3, got {self.channels!r}", key="channels")
        object.__setattr__(self, "mean", _floats(self.mean, "mean", self.channels))
        std = _floats(self.std, "std", self.channels)
        if std is not None and any(s <= 0 for s in std):
            raise SynthcalibError(f"expected positive numbers, got {list(std)}", key="std")
        object.__setattr__(self, "std", std)
        for key in ("channel_order", "layout", "dtype"):
            if not isinstance(getattr(self, key), str):
                raise SynthcalibError(f"expected a string, got {getattr(self, key)!r}", key=key)
        if self.channel_order.upper() not in CHANNEL_ORDERS:
            raise SynthcalibError(f"expected RGB or BGR, got {self.channel_order!r}", key="channel_order")
        object.__setattr__(self, "channel_order", self.channel_order.upper())
        if self.layout.upper() not in LAYOUTS:
            raise SynthcalibError(f"expected NCHW or NHWC, got {self.layout!r}", key="layout")
        object.__setattr__(self, "layout", self.layout.upper())
        if self.dtype not in DTYPES:
            raise SynthcalibError(f"expected one of {', '.join(DTYPES)}, got {self.dtype!r}", key="dtype")

    @classmethod
    def from_options(cls, preset: str | None = None, **options: Any) -> Transform:
        """A transform from a preset name and/or explicit values (explicit values win)."""
        base: dict[str, Any] = {}
        origin = options.pop("origin", None)
        if preset is not None:
            table = presets()
            if preset not in table:
                raise SynthcalibError(
                    f"unknown preset {preset!r}: expected one of {', '.join(sorted(table))}", key="preset"
                )
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
        return cls.for_input(describe_input(model), preset, preprocessing.declared(model), **options)

    @classmethod
    def for_input(
        cls, read: dict[str, Any], preset: str | None = None, declared: dict[str, Any] | None = None, **options: Any
    ) -> Transform:
        """:meth:`for_model` from what is known of the input (``describe_input``'s keys; an absent
        key, such as the size of a PyTorch module's input, is not checked) and what the model
        ``declared`` of its normalisation."""
        for key in ("layout", "channels", "size"):
            given = options.get(key)
            if given is None or key not in read:
                continue
            if key == "size":
                given = parse_size(given, "size")
            elif key == "layout":
                given = str(given).upper()
            if given != read[key]:
                raise SynthcalibError(
                    f"{options[key]!r} does not fit: the model's input is {read.get('layout', 'NCHW')} with "
                    f"{read['channels']} channels{' at ' + 'x'.join(map(str, read['size'])) if 'size' in read else ''}",
                    key=key,
                )
        stated = preprocessing.resolve({"preset": preset, **options}, read, declared)
        preset = stated.pop("preset", None)
        merged = {k: v for k, v in read.items() if stated.get(k) is None}
        merged.update({k: v for k, v in stated.items() if v is not None})
        return cls.from_options(preset, **merged)

    def steps(self, size: tuple[int, int] | None = None) -> tuple[str, ...]:
        """The OpenVINO steps (see :func:`compile_steps`) this transform runs on images of ``size``
        (H, W; None: any size)."""
        resizes = self.size is not None and (size is None or tuple(size) != self.size)
        return ("resize",) * resizes + ("grey",) * (self.channels == 1)

    def output_shape(self, size: tuple[int, int]) -> tuple[int, int, int]:
        """Shape of one transformed item for source images of ``size`` (H, W)."""
        h, w = self.size or size
        return (self.channels, h, w) if self.layout == "NCHW" else (h, w, self.channels)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=np.float32)
        if self.size is not None:
            x = resize(x, self.size)
        if self.channels == 1 and x.shape[1] == 3:
            x = grey(x)
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
    Errors are keyed as options of ``transform`` (a bad mean: ``transform.mean``).
    """
    try:
        return _as_transform(transform, model, read, declared)
    except SynthcalibError as exc:
        raise exc.under("transform") from None


def _as_transform(transform: Any, model: Any, read: dict[str, Any] | None, declared: dict[str, Any] | None) -> Any:
    if isinstance(transform, Transform):
        return transform
    if hasattr(transform, "image_mean") and hasattr(transform, "image_std"):  # a Hugging Face image processor
        transform = preprocessing.image_processor_options(transform, f"the image processor {type(transform).__name__}")
    if transform is not None and callable(transform) and not isinstance(transform, (str, dict)):
        return transform
    options: dict[str, Any] = {}
    if isinstance(transform, str):
        options["preset"] = transform
    elif isinstance(transform, dict):
        options.update(transform)
    elif transform is not None:
        raise SynthcalibError(
            f"expected a Transform, preset name, dict of options or callable, got {type(transform).__name__}"
        )
    if model is not None:
        return Transform.for_model(model, **options)
    if read is not None:
        return Transform.for_input(read, declared=declared, **options)
    return Transform.from_options(**options) if options else None
