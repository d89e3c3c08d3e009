"""POT ``Metric`` s for AccuracyAwareQuantization without real data (imports POT).

:class:`AgreementMetric`: top-1 agreement with the FP32 model; :class:`LabelMetric`: top-1 against
the conditioning class of each item of a :class:`~openvino_synthcalib.pot.loader.SyntheticDataLoader`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from openvino.tools.pot.api.metric import Metric

from .. import models
from ..defaults import DEFAULTS
from ..errors import SynthcalibError
from .loader import SyntheticDataLoader


def _top1(output: Any, count: int | None = None) -> np.ndarray:
    """Top-1 class of each of ``count`` samples (POT may hand over [K] for a batch of one)."""
    logits = output[0] if isinstance(output, (list, tuple)) else output
    logits = np.asarray(logits)
    if count is None:
        count = logits.shape[0] if logits.ndim > 1 else 1
    return logits.reshape(count, -1).argmax(axis=1)


class Fp32Reference:
    """Top-1 of the FP32 model on every item of a loader, computed once on first use."""

    def __init__(
        self,
        model: Any,
        loader: SyntheticDataLoader,
        device: str = DEFAULTS["device"],
        batch_size: int = 64,
        precision: str | None = "f32",
    ) -> None:
        self.model = model
        self.precision = precision
        self.loader = loader
        self.device = device
        self.batch_size = batch_size
        self._top1: np.ndarray | None = None

    def top1(self) -> np.ndarray:
        if self._top1 is None:
            model = self.model
            if isinstance(model, (str, os.PathLike)):
                model = models.read_model(model, "model")
            compiled = models.compile_model(
                model, self.device, models.precision_config(self.precision), "FP32 reference model"
            )
            dynamic = compiled.inputs[0].get_partial_shape().is_dynamic
            out = []
            for start in range(0, len(self.loader), self.batch_size if dynamic else 1):
                stop = min(start + (self.batch_size if dynamic else 1), len(self.loader))
                x = self.loader.inputs(range(start, stop))
                out.append(_top1(compiled(x)[0]))
            self._top1 = np.concatenate(out).astype(np.int64)
        return self._top1


class _Top1Metric(Metric):
    """Top-1 of the model under test against a per-item target class."""

    name = "top1"
    description = ""

    def __init__(self) -> None:
        self._matches: list[float] = []
        self._last: list[float] = []
        super().__init__()

    def _targets(self, target: list[Any]) -> np.ndarray:
        raise NotImplementedError

    def update(self, output: Any, target: Any) -> None:
        expected = self._targets(list(target))
        predicted = _top1(output, len(expected))
        if len(predicted) != len(expected):
            raise RuntimeError(f"{self.name}: {len(predicted)} predictions for {len(expected)} annotations")
        self._last = [float(p == e) for p, e in zip(predicted, expected)]
        self._matches.extend(self._last)

    @property
    def value(self) -> dict[str, list[float]]:
        return {self.name: list(self._last)}

    @property
    def avg_value(self) -> dict[str, float]:
        return {self.name: float(np.mean(self._matches)) if self._matches else 0.0}

    def reset(self) -> None:
        self._matches = []
        self._last = []

    def get_attributes(self) -> dict[str, dict[str, str]]:
        return {self.name: {"direction": "higher-better", "type": "accuracy"}}


class LabelMetric(_Top1Metric):
    """Top-1 accuracy against the conditioning class of each item."""

    name = "top1_label"

    def _targets(self, target: list[Any]) -> np.ndarray:
        return np.asarray([int(t) for t in target], dtype=np.int64)


class AgreementMetric(_Top1Metric):
    """Share of items on which the model's top-1 equals the FP32 model's top-1 (1.0 for FP32 itself).

    Needs annotations that carry their item index (:class:`ClassLabel`), as the
    :class:`SyntheticDataLoader` yields.
    """

    name = "top1_agreement"

    def __init__(self, reference: Fp32Reference) -> None:
        self.reference = reference
        super().__init__()

    def _targets(self, target: list[Any]) -> np.ndarray:
        table = self.reference.top1()
        try:
            return table[[t.index for t in target]]
        except AttributeError:
            raise SynthcalibError(
                "top1_agreement: annotations carry no item index; use SyntheticDataLoader items"
            ) from None


class MetricSet(Metric):
    """Several top-1 metrics behind POT's single-metric engine interface."""

    def __init__(self, metrics: list[_Top1Metric]) -> None:
        self.metrics = list(metrics)
        super().__init__()

    def update(self, output: Any, target: Any) -> None:
        for m in self.metrics:
            m.update(output, target)

    @property
    def value(self) -> dict[str, list[float]]:
        return {k: v for m in self.metrics for k, v in m.value.items()}

    @property
    def avg_value(self) -> dict[str, float]:
        return {k: v for m in self.metrics for k, v in m.avg_value.items()}

    def reset(self) -> None:
        for m in getattr(self, "metrics", []):
            m.reset()

    def get_attributes(self) -> dict[str, dict[str, str]]:
        return {k: v for m in self.metrics for k, v in m.get_attributes().items()}


def make_metric(
    names: list[str],
    model: Any,
    loader: SyntheticDataLoader,
    device: str = DEFAULTS["device"],
    precision: str | None = "f32",
) -> MetricSet | None:
    """The metrics named (``top1_agreement``, ``top1_label``) over ``loader``; None when none."""
    if not names:
        return None
    made: list[_Top1Metric] = []
    for name in names:
        if name == "top1_agreement":
            made.append(AgreementMetric(Fp32Reference(model, loader, device, precision=precision)))
        elif name == "top1_label":
            made.append(LabelMetric())
        else:
            raise SynthcalibError(f"engine.metrics: unknown metric {name!r}")
    return MetricSet(made)
