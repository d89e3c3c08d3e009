"""The POT engine of the ``"type": "synthetic"`` engine section (imports POT)."""

from __future__ import annotations

from typing import Any

from openvino.tools.pot.engines.ie_engine import IEEngine

from .. import models
from .engine_config import lookup
from .metrics import make_metric


class SyntheticEngine(IEEngine):
    """POT's ``IEEngine`` fed by a :class:`SyntheticDataLoader` (``(input, class)`` items).

    ``precision`` (default f32) is set as the device's inference precision hint, so that
    statistics and metrics come from FP32 arithmetic even on CPUs that default to bf16.
    """

    def __init__(self, config: Any, data_loader: Any = None, metric: Any = None, precision: str | None = "f32") -> None:
        super().__init__(config, data_loader=data_loader, metric=metric)
        hint = models.precision_config(precision)
        if hint:
            try:
                self._ie.set_property(self._device, hint)
            except Exception:  # a device without the property: keep its default
                pass


def create_engine(engine_config: Any, data_loader: Any = None, metric: Any = None) -> SyntheticEngine:
    """The engine for a configured ``"type": "synthetic"`` engine section (adds its metrics)."""
    setup = lookup(engine_config)
    if metric is None and setup.metrics:
        metric = make_metric(setup.metrics, setup.model_path, data_loader, setup.device, setup.precision)
    engine = SyntheticEngine(engine_config, data_loader=data_loader, metric=metric, precision=setup.precision)
    engine.synthcalib_setup = setup  # read by the recipe's create_pipeline
    return engine
