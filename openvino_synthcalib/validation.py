"""Validation functions for ``nncf.quantize_with_accuracy_control`` on synthetic labelled items.

NNCF calls ``validation_fn(compiled_model, items)`` with items ``(input, label)`` as the
validation ``Dataset(..., with_labels=True)`` yields them, and ranks quantized layers with
the per-item values returned beside the metric.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from .defaults import DEFAULTS


def _top1(compiled_model: Any, x: np.ndarray) -> int:
    logits = compiled_model(x)[compiled_model.output(0)]
    return int(np.argmax(np.asarray(logits).reshape(-1)))


def top1_vs_labels(compiled_model: Any, items: Iterable[tuple[np.ndarray, int]]) -> tuple[float, list[float]]:
    """Top-1 accuracy against each item's conditioning class."""
    hits = [float(_top1(compiled_model, x) == int(y)) for x, y in items]
    return (float(np.mean(hits)) if hits else 0.0), hits


class Top1Agreement:
    """Top-1 agreement with a reference (FP32) model: the share of items on which the two
    models predict the same class. Reference predictions are cached per input."""

    def __init__(self, reference: Any, device: str = DEFAULTS["device"], precision: str | None = "f32") -> None:
        from . import models

        if not hasattr(reference, "create_infer_request"):
            if not hasattr(reference, "inputs"):
                reference = models.read_model(reference, "reference model")
            reference = models.compile_model(reference, device, models.precision_config(precision), "reference model")
        self.reference = reference
        self._cache: dict[bytes, int] = {}

    def reference_top1(self, x: np.ndarray) -> int:
        key = hashlib.blake2b(np.ascontiguousarray(x).view(np.uint8), digest_size=16).digest()
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
