"""GeneratorEngine: a compiled generator turning (item index, class) pairs into images."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from . import models
from .defaults import DEFAULTS
from .errors import SynthcalibError
from .metadata import LABEL_INPUT, Z_INPUT, GeneratorInfo, read_info
from .rng import normal_rows

_PROBE_BATCH = 8


def _find_inputs(model: Any, where: str) -> tuple[Any, Any]:
    """The ``z`` and ``label`` input ports (by name, else by signature)."""
    by_name = {name: port for port in model.inputs for name in port.get_names()}
    if Z_INPUT in by_name and LABEL_INPUT in by_name and len(model.inputs) == 2:
        return by_name[Z_INPUT], by_name[LABEL_INPUT]
    found = [f"{p.get_any_name()} {p.get_element_type().to_string()}{p.get_partial_shape()}" for p in model.inputs]
    if len(model.inputs) == 2:
        floats = [
            p for p in model.inputs if p.get_element_type().is_real() and p.get_partial_shape().rank.get_length() == 2
        ]
        ints = [
            p
            for p in model.inputs
            if p.get_element_type().is_integral() and p.get_partial_shape().rank.get_length() == 1
        ]
        if len(floats) == 1 and len(ints) == 1:
            return floats[0], ints[0]
    raise SynthcalibError(
        f"generator '{where}' has inputs [{', '.join(found)}]: expected 'z' float32 [N, z_dim] "
        "and 'label' int64 [N] (or one-hot float32 [N, num_classes])"
    )


class GeneratorEngine:
    """Loads, checks and compiles a generator; runs batched asynchronous inference.

    ``model`` is a path to an IR/ONNX file or an ``openvino.Model``. Metadata missing from the
    model's rt_info can be given as keyword overrides (``z_dim``, ``num_classes``,
    ``class_names``, ``image_size``, ``output_range``, ``label_input``); the rest is read from
    input/output shapes or, for the value range, from a probe batch. ``default_num_classes``
    (for example the class count of the classifier being quantized) is used only when neither
    the model nor the overrides say it.
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
            self.path: str | None = os.fspath(model)
            model = models.read_model(model, "generator")
        else:
            self.path = None
        where = self.path or "<in-memory model>"
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise SynthcalibError(f"batch_size: expected a positive integer, got {batch_size!r}")
        if not isinstance(num_requests, int) or num_requests < 0:
            raise SynthcalibError(f"num_requests: expected a non-negative integer (0 = auto), got {num_requests!r}")
        unknown = set(overrides) - set(GeneratorInfo.__dataclass_fields__)
        if unknown:
            raise SynthcalibError(f"unknown generator option(s) {sorted(unknown)} for '{where}'")
        self.batch_size = batch_size
        z_port, label_port = _find_inputs(model, where)
        self._z_name, self._label_name = z_port.get_any_name(), label_port.get_any_name()
        if len(model.outputs) != 1:
            raise SynthcalibError(f"generator '{where}' has {len(model.outputs)} outputs: expected one image output")
        declared = read_info(model)
        declared.update({k: v for k, v in overrides.items() if v is not None})
        z_dims = models.static_dims(z_port.get_partial_shape())
        label_dims = models.static_dims(label_port.get_partial_shape())
        out_dims = models.static_dims(model.outputs[0].get_partial_shape())
        if len(out_dims) != 4 or out_dims[1] not in (None, 3):
            raise SynthcalibError(f"generator '{where}' output has shape {out_dims}: expected [N, 3, H, W]")
        onehot = len(label_dims) == 2
        label_input = "onehot" if onehot else "index"
        if "label_input" in declared and declared["label_input"] != label_input:
            raise SynthcalibError(
                f"generator '{where}': metadata label_input={declared['label_input']!r} but input "
                f"'{self._label_name}' has rank {len(label_dims)} ({label_input})"
            )
        if len(label_dims) not in (1, 2):
            raise SynthcalibError(f"generator '{where}' label input has rank {len(label_dims)}: expected 1 or 2")
        if z_dims[1] is not None and "z_dim" in declared and int(declared["z_dim"]) != z_dims[1]:
            raise SynthcalibError(
                f"generator '{where}': metadata z_dim={declared['z_dim']} but input '{self._z_name}' has {z_dims[1]}"
            )
        z_dim = declared.get("z_dim", z_dims[1])
        if z_dim is None:
            raise SynthcalibError(f"generator '{where}' has a dynamic z dimension and no z_dim metadata: pass z_dim")
        num_classes = declared.get("num_classes")
        if onehot:
            if label_dims[1] is not None and num_classes is not None and int(num_classes) != label_dims[1]:
                raise SynthcalibError(
                    f"generator '{where}': num_classes={num_classes} but one-hot input '{self._label_name}' "
                    f"has {label_dims[1]} classes"
                )
            num_classes = num_classes or label_dims[1]
        num_classes = num_classes or default_num_classes
        if num_classes is None:
            raise SynthcalibError(
                f"generator '{where}' declares no num_classes (rt_info synthcalib/num_classes): "
                "state it, e.g. generator:PATH?num_classes=10 or --num-classes 10"
            )
        self._onehot = onehot
        self._num_classes = int(num_classes)
        self._static_batch = self._reshape(model, z_port, label_port, int(z_dim), int(num_classes) if onehot else None)
        cfg = {"PERFORMANCE_HINT": "THROUGHPUT", **models.precision_config(precision), **(config or {})}
        self._compiled = models.compile_model(model, device, cfg, f"generator '{where}'")
        self.device = device
        if num_requests == 0:
            try:
                num_requests = int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            except Exception:
                num_requests = 2
        self.num_requests = max(1, num_requests)
        partial = {
            "z_dim": int(z_dim),
            "num_classes": int(num_classes),
            "label_input": label_input,
            "class_names": declared.get("class_names"),
            "provenance": declared.get("provenance") or {},
        }
        image_size = declared.get("image_size") or (tuple(out_dims[2:]) if None not in out_dims[2:] else None)
        output_range = declared.get("output_range")
        if image_size is None or output_range is None:
            n = min(_PROBE_BATCH, batch_size)
            probe = self._infer(normal_rows(0, range(n), int(z_dim)), np.arange(n) % int(num_classes))
            image_size = image_size or probe.shape[2:]
            output_range = output_range or _guess_range(probe)
            partial["provenance"] = {**partial["provenance"], "output_range_guessed": True}
        self.info = GeneratorInfo(image_size=tuple(int(s) for s in image_size), output_range=output_range, **partial)

    def _reshape(self, model: Any, z_port: Any, label_port: Any, z_dim: int, onehot: int | None) -> bool:
        """Fix the batch to ``batch_size`` (static shapes run faster); keep dynamic if it can't be."""
        shapes = {z_port.get_any_name(): [self.batch_size, z_dim]}
        shapes[label_port.get_any_name()] = [self.batch_size] if onehot is None else [self.batch_size, onehot]
        try:
            model.reshape(shapes)
            return True
        except Exception:
            return False

    def _inputs(self, z: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        labels = np.asarray(labels, dtype=np.int64)
        if self._onehot:
            lab = np.zeros((len(labels), self._num_classes), np.float32)
            lab[np.arange(len(labels)), labels] = 1.0
        else:
            lab = labels
        n = len(z)
        if self._static_batch and n < self.batch_size:
            pad = self.batch_size - n
            z = np.concatenate([z, np.repeat(z[-1:], pad, 0)])
            lab = np.concatenate([lab, np.repeat(lab[-1:], pad, 0)])
        return {self._z_name: np.ascontiguousarray(z, np.float32), self._label_name: lab}

    def _infer(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Synchronous inference of at most ``batch_size`` items (raw generator output)."""
        out = self._compiled(self._inputs(z, labels))[0]
        return np.asarray(out[: len(z)], dtype=np.float32)

    def run(self, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        """Raw outputs for ``(z, labels)`` batches, in order, with up to ``num_requests`` in flight."""
        sizes: deque[int] = deque()

        def inputs() -> Iterator[dict[str, np.ndarray]]:
            for z, labels in batches:
                if len(z) > self.batch_size:
                    raise SynthcalibError(f"batch of {len(z)} items exceeds batch_size={self.batch_size}")
                sizes.append(len(z))
                yield self._inputs(z, labels)

        def read(request: Any) -> np.ndarray:
            return np.array(request.get_output_tensor(0).data, dtype=np.float32)

        for out in models.run_ordered(self._compiled, inputs(), self.num_requests, read):
            yield out[: sizes.popleft()]

    def latents(self, indices: np.ndarray, seed: int) -> np.ndarray:
        """The latent code of each item index: ``z_i`` depends on ``(seed, i)`` only."""
        return normal_rows(seed, indices, self.info.z_dim)

    def iter_images(self, indices: np.ndarray, labels: np.ndarray, seed: int) -> Iterator[np.ndarray]:
        """Images in [0, 1] (float32 NCHW), ``batch_size`` at a time, for items and their classes."""
        indices = np.asarray(indices, dtype=np.int64)
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= self.info.num_classes):
            raise SynthcalibError(
                f"labels must be in 0..{self.info.num_classes - 1}, got {labels.min()}..{labels.max()}"
            )
        bs = self.batch_size

        def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for start in range(0, len(indices), bs):
                yield self.latents(indices[start : start + bs], seed), labels[start : start + bs]

        lo, hi = self.info.output_range
        scale = np.float32(1.0 / (hi - lo))
        for raw in self.run(batches()):
            yield np.clip((raw - np.float32(lo)) * scale, 0.0, 1.0)

    def images(self, indices: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
        """All images for ``indices`` at once (see :meth:`iter_images`)."""
        parts = list(self.iter_images(indices, labels, seed))
        if not parts:
            h, w = self.info.image_size
            return np.zeros((0, 3, h, w), np.float32)
        return np.concatenate(parts)


def _guess_range(probe: np.ndarray) -> tuple[float, float]:
    """The conventional range a probe batch falls into: [0, 1], [-1, 1] or [0, 255]."""
    lo, hi = float(probe.min()), float(probe.max())
    if lo >= -0.05 and hi <= 1.05:
        return (0.0, 1.0)
    if lo >= -1.05 and hi <= 1.05:
        return (-1.0, 1.0)
    if lo >= -5 and hi <= 260:
        return (0.0, 255.0)
    raise SynthcalibError(
        f"generator output spans [{lo:.3g}, {hi:.3g}], not [0, 1], [-1, 1] or [0, 255]: state output_range"
    )
