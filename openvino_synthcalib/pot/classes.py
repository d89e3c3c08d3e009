"""POT classes: the synthetic data loader, top-1 metrics and the engine.

This is the only module of the package that imports ``openvino.tools.pot`` at import time;
``openvino_synthcalib.pot`` exposes its names lazily.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from openvino.tools.pot.api.data_loader import DataLoader
from openvino.tools.pot.api.metric import Metric
from openvino.tools.pot.engines.ie_engine import IEEngine

from ..defaults import DEFAULTS
from ..errors import SynthcalibError

#: Items above this many bytes in total are generated on demand instead of kept in memory.
CACHE_LIMIT_BYTES = 1 << 30


class ClassLabel(int):
    """An annotation: the conditioning class (an ``int``) that also knows its item index."""

    index: int

    def __new__(cls, label: int, index: int) -> ClassLabel:
        obj = super().__new__(cls, int(label))
        obj.index = int(index)
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (ClassLabel, (int(self), self.index))

    def __repr__(self) -> str:
        return f"ClassLabel({int(self)}, index={self.index})"


class SyntheticDataLoader(DataLoader):
    """A POT ``DataLoader`` over a :class:`~openvino_synthcalib.stream.SyntheticStream`.

    Item ``i`` is ``(model_input [C, H, W], annotation)`` where the annotation is the item's
    conditioning class (a :class:`ClassLabel`, i.e. an ``int`` carrying ``.index``). Items are
    exactly those of the NNCF ``synthcalib.Dataset`` built with the same source, model,
    preprocessing and seed: both read the same stream.

    Build it from a stream, or from an engine-section dict plus the model to quantize::

        SyntheticDataLoader(stream)
        SyntheticDataLoader({"source": "generator:gen.xml", "subset_size": 300, "seed": 0,
                             "preprocessing": {"preset": "cifar10"}}, model="model.xml")
    """

    def __init__(self, config: Any = None, *, model: Any = None, stream: Any = None, cache: bool | None = None) -> None:
        from ..stream import SyntheticStream

        if isinstance(config, SyntheticStream):
            config, stream = None, config
        cfg = dict(config or {})
        super().__init__(cfg)
        if stream is None:
            if not cfg:
                raise SynthcalibError("SyntheticDataLoader: give a SyntheticStream or an engine-section dict")
            from .engine_config import build_setup

            if model is None:
                raise SynthcalibError(
                    "SyntheticDataLoader: 'model' (the model to quantize) is needed with a config dict"
                )
            setup = build_setup({"type": "synthetic", **cfg}, model)
            stream = setup.stream
            cache = setup.cache if cache is None else cache
        self.stream = stream
        self._cache_enabled = True if cache is None else bool(cache)
        self._items: list[tuple[np.ndarray, ClassLabel]] | None = None

    def __len__(self) -> int:
        return len(self.stream)

    def _fill_cache(self) -> bool:
        """Generate all items in stream batches once, if they fit in memory."""
        if self._items is not None:
            return True
        if not self._cache_enabled:
            return False
        items: list[tuple[np.ndarray, ClassLabel]] = []
        for inputs, labels in self.stream.batches():
            if not items and inputs[0].nbytes * len(self.stream) > CACHE_LIMIT_BYTES:
                self._cache_enabled = False  # too big to keep: generate on demand
                return False
            for x, y in zip(inputs, labels):
                items.append((np.array(x, copy=True), ClassLabel(int(y), len(items))))
        self._items = items
        return True

    def __getitem__(self, index: int) -> tuple[np.ndarray, ClassLabel]:
        n = len(self.stream)
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"item {index} is out of range for a loader of {n}")
        if self._fill_cache():
            return self._items[i]  # type: ignore[index]
        x, y = self.stream[i]
        return x, ClassLabel(y, i)

    def labels(self) -> np.ndarray:
        return self.stream.labels()

    def inputs(self, indices: Any = None) -> np.ndarray:
        """Stacked model inputs of the given items (all by default)."""
        idx = range(len(self)) if indices is None else indices
        return np.stack([self[i][0] for i in idx])


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
            from .. import models

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


class Top1Label(_Top1Metric):
    """Top-1 accuracy against the conditioning class of each item."""

    name = "top1_label"

    def _targets(self, target: list[Any]) -> np.ndarray:
        return np.asarray([int(t) for t in target], dtype=np.int64)


class Top1Agreement(_Top1Metric):
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
            made.append(Top1Agreement(Fp32Reference(model, loader, device, precision=precision)))
        elif name == "top1_label":
            made.append(Top1Label())
        else:
            raise SynthcalibError(f"engine.metrics: unknown metric {name!r}")
    return MetricSet(made)


class SyntheticEngine(IEEngine):
    """POT's ``IEEngine`` fed by a :class:`SyntheticDataLoader` (``(input, class)`` items).

    ``precision`` (default f32) is set as the device's inference precision hint, so that
    statistics and metrics come from FP32 arithmetic even on CPUs that default to bf16.
    """

    def __init__(self, config: Any, data_loader: Any = None, metric: Any = None, precision: str | None = "f32") -> None:
        super().__init__(config, data_loader=data_loader, metric=metric)
        from .. import models

        hint = models.precision_config(precision)
        if hint:
            try:
                self._ie.set_property(self._device, hint)
            except Exception:  # a device without the property: keep its default
                pass


def create_data_loader(engine_config: Any, model: Any = None) -> SyntheticDataLoader:
    """The loader for a configured ``"type": "synthetic"`` engine section."""
    from .engine_config import lookup

    setup = lookup(engine_config)
    return SyntheticDataLoader(stream=setup.stream, cache=setup.cache)


def create_engine(engine_config: Any, data_loader: Any = None, metric: Any = None) -> SyntheticEngine:
    """The engine for a configured ``"type": "synthetic"`` engine section (adds its metrics)."""
    from .engine_config import lookup

    setup = lookup(engine_config)
    if metric is None and setup.metrics:
        metric = make_metric(setup.metrics, setup.model_path, data_loader, setup.device, setup.precision)
    return SyntheticEngine(engine_config, data_loader=data_loader, metric=metric, precision=setup.precision)
