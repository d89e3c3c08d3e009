"""Validation functions for ``nncf.quantize_with_accuracy_control`` on synthetic labelled items.

NNCF calls ``validation_fn(compiled_model, items)`` with items ``(input, label)`` as the
validation ``Dataset(..., with_labels=True)`` yields them, and ranks quantized layers with
the per-item values returned beside the metric. The model NNCF passes is what its backend
prepares: a compiled OpenVINO model, or an ``onnx.ModelProto`` (run here with ONNX Runtime);
the functions also take a torch module (NNCF 3.4 has no accuracy control for PyTorch, but the
functions still measure a torch model on the same items).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from .backends import as_array, logits, prepare_reference
from .defaults import DEFAULTS


def _top1(compiled_model: Any, x: Any) -> int:
    return int(np.argmax(logits(compiled_model, x).reshape(-1)))


def top1_vs_labels(compiled_model: Any, items: Iterable[tuple[np.ndarray, int]]) -> tuple[float, list[float]]:
    """Top-1 accuracy against each item's conditioning class."""
    hits = [float(_top1(compiled_model, x) == int(y)) for x, y in items]
    return (float(np.mean(hits)) if hits else 0.0), hits


class Top1Agreement:
    """Top-1 agreement with a reference (FP32) model: the share of items on which the two
    models predict the same class. Reference predictions are cached per input."""

    def __init__(self, reference: Any, device: str = DEFAULTS["device"], precision: str | None = "f32") -> None:
        self.reference = prepare_reference(reference, device, precision)
        self._cache: dict[bytes, int] = {}

    def reference_top1(self, x: Any) -> int:
        key = hashlib.blake2b(np.ascontiguousarray(as_array(x)).view(np.uint8), digest_size=16).digest()
        if key not in self._cache:
            self._cache[key] = _top1(self.reference, x)
        return self._cache[key]

    def __call__(self, compiled_model: Any, items: Iterable[Any]) -> tuple[float, list[float]]:
        hits = []
        for item in items:
            x = item[0] if isinstance(item, tuple) else item
            hits.append(float(_top1(compiled_model, x) == self.reference_top1(x)))
        return (float(np.mean(hits)) if hits else 0.0), hits


def top1_agreement(reference: Any, **kwargs: Any) -> Top1Agreement:
    """A validation function measuring top-1 agreement with ``reference`` (path or model)."""
    return Top1Agreement(reference, **kwargs)
