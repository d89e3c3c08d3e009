"""GeneratorEngine: a compiled generator turning (item index, class) pairs into images."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from . import contract, inference, models
from .checks import checked, integer
from .defaults import DEFAULTS
from .errors import SynthcalibError
from .rng import normal_rows
from .shipped import generator_path

#: Largest generator batch (a batch is one inference request's worth of images in memory).
MAX_BATCH = 4096


class GeneratorEngine:
    """Loads, checks and compiles a generator; runs batched asynchronous inference.

    ``model`` is a path to an IR/ONNX file, the name of a shipped generator (``"cifar10"``) or an
    ``openvino.Model`` (left untouched: the engine reshapes its own copy). Metadata missing from the model's rt_info can be given as keyword
    overrides (``z_dim``, ``num_classes``, ``class_names``, ``image_size``, ``output_range``,
    ``label_input``); the rest is read from the ports or, for the value range, from a probe batch
    (see :mod:`openvino_synthcalib.contract`). ``default_num_classes`` (e.g. the class count of the
    classifier being quantized) is used only when neither the model nor the overrides say it.

    An engine holds a compiled model until :meth:`close` (or the end of a ``with`` block).
    """

    def __init__(
        self,
        model: Any,
        *,
        device: str = DEFAULTS["device"],
        batch_size: int = DEFAULTS["batch_size"],
        num_requests: int = DEFAULTS["num_requests"],
        precision: str | None = DEFAULTS["precision"],
        config: dict[str, Any] | None = None,
        default_num_classes: int | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(model, (str, os.PathLike)):
            self.path: str | None = os.fspath(generator_path(model))
            model = models.read_model(self.path, "generator")
        else:
            self.path = None
            model = models.writable_copy(model)
        where = self.path or "<in-memory model>"
        checked(lambda v: integer(v, 1, MAX_BATCH), batch_size, "batch_size")
        checked(lambda v: integer(v, 0), num_requests, "num_requests (0 = auto)")
        self.batch_size = batch_size
        self.device = device
        self.where = where
        self.ports = contract.find_ports(model, where)
        self._z_name, self._label_name = self.ports.z_name, self.ports.label_name
        self._label_dtype = self.ports.label.get_element_type().to_dtype()
        declared = contract.read_info(model)
        onehot_classes = overrides.get("num_classes") or declared.get("num_classes") or default_num_classes
        self._onehot_width: int | None = None
        self._static_batch = self._reshape(model, declared, overrides, onehot_classes)
        cfg = {"PERFORMANCE_HINT": "THROUGHPUT", **models.precision_config(precision), **(config or {})}
        self._compiled: Any = models.compile_model(model, device, cfg, f"generator '{where}'")
        self.num_requests = inference.num_requests(self._compiled, num_requests)
        # One-hot rows need the class count before the probe batch that may tell the rest.
        self._num_classes = self._onehot_width or (onehot_classes if isinstance(onehot_classes, int) else 0)
        try:
            self.info = contract.resolve_info(model, where, self.ports, overrides, default_num_classes, self.generate)
        except BaseException:
            self.close()
            raise
        self._num_classes = self.info.num_classes

    def _reshape(self, model: Any, declared: dict[str, Any], overrides: dict[str, Any], classes: Any) -> bool:
        """Fix the batch to ``batch_size`` (static shapes run faster); keep dynamic if it can't be."""
        z_dim = overrides.get("z_dim") or declared.get("z_dim")
        z_dims = models.static_dims(self.ports.z.get_partial_shape())
        z_dim = z_dims[1] if len(z_dims) == 2 and z_dims[1] is not None else z_dim
        shapes: dict[str, list[int]] = {}
        self._onehot_width = None
        if self.ports.label_input == "onehot":
            dims = models.static_dims(self.ports.label.get_partial_shape())
            self._onehot_width = dims[1] if len(dims) == 2 and dims[1] is not None else None
        if not isinstance(z_dim, int):
            return False
        shapes[self._z_name] = [self.batch_size, z_dim]
        if self.ports.label_input == "onehot":
            width = self._onehot_width or classes
            if not isinstance(width, int):
                return False
            shapes[self._label_name] = [self.batch_size, width]
        else:
            shapes[self._label_name] = [self.batch_size]
        try:
            model.reshape(shapes)
            return True
        except Exception:
            return False

    def _inputs(self, z: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        lab = contract.label_feed(labels, self.ports.label_input, self._num_classes, self._label_dtype)
        n = len(z)
        if self._static_batch and n < self.batch_size:
            pad = self.batch_size - n
            z = np.concatenate([z, np.repeat(z[-1:], pad, 0)])
            lab = np.concatenate([lab, np.repeat(lab[-1:], pad, 0)])
        return {self._z_name: np.ascontiguousarray(z, np.float32), self._label_name: lab}

    @property
    def compiled(self) -> Any:
        """The compiled generator (``None`` once closed)."""
        return self._compiled

    def _require_open(self) -> Any:
        if self._compiled is None:
            raise SynthcalibError(f"generator '{self.where}' was closed")
        return self._compiled

    def run(self, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        """Raw outputs for ``(z, labels)`` batches, in order, with up to ``num_requests`` in flight."""
        compiled = self._require_open()
        sizes: deque[int] = deque()

        def inputs() -> Iterator[dict[str, np.ndarray]]:
            for z, labels in batches:
                if len(z) > self.batch_size:
                    raise SynthcalibError(f"batch of {len(z)} items exceeds batch_size={self.batch_size}")
                sizes.append(len(z))
                yield self._inputs(z, labels)

        def read(request: Any) -> np.ndarray:
            return np.array(request.get_output_tensor(0).data, dtype=np.float32)

        what = f"generator '{self.where}'"
        for out in inference.run_ordered(compiled, inputs(), self.num_requests, read, what):
            yield out[: sizes.popleft()]

    def generate(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Raw outputs (in ``info.output_range``) for any number of latents and class indices."""
        z = np.asarray(z, dtype=np.float32)
        labels = np.asarray(labels, dtype=np.int64)
        bs = self.batch_size
        parts = list(self.run((z[i : i + bs], labels[i : i + bs]) for i in range(0, len(z), bs)))
        return np.concatenate(parts) if parts else np.zeros((0, 3, 0, 0), np.float32)

    def latents(self, indices: np.ndarray, seed: int, scale: float = 1.0) -> np.ndarray:
        """The latent code of each item index: ``z_i`` depends on ``(seed, i)`` only; ``scale`` is
        the standard deviation (1: the distribution the generator was trained on)."""
        z = normal_rows(seed, indices, self.info.z_dim)
        return z if scale == 1.0 else z * np.float32(scale)

    def iter_images(
        self, indices: np.ndarray, labels: np.ndarray, seed: int, latent_scale: float = 1.0
    ) -> Iterator[np.ndarray]:
        """Images in [0, 1] (float32 NCHW), ``batch_size`` at a time, for items and their classes
        (latents drawn with standard deviation ``latent_scale``)."""
        indices = np.asarray(indices, dtype=np.int64)
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= self.info.num_classes):
            raise SynthcalibError(
                f"labels must be in 0..{self.info.num_classes - 1}, got {labels.min()}..{labels.max()}"
            )
        bs = self.batch_size

        def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for start in range(0, len(indices), bs):
                yield self.latents(indices[start : start + bs], seed, latent_scale), labels[start : start + bs]

        for raw in self.run(batches()):
            yield contract.rescale(raw, self.info.output_range, (0.0, 1.0))

    def images(self, indices: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
        """All images for ``indices`` at once (see :meth:`iter_images`)."""
        parts = list(self.iter_images(indices, labels, seed))
        if not parts:
            h, w = self.info.image_size
            return np.zeros((0, 3, h, w), np.float32)
        return np.concatenate(parts)

    def close(self) -> None:
        """Release the compiled model (idempotent)."""
        self._compiled = None

    def __enter__(self) -> GeneratorEngine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
