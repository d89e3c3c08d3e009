"""POT (OpenVINO's legacy Post-training Optimization Tool) integration; legacy environment only.

* :class:`SyntheticDataLoader` - a POT ``DataLoader`` over a synthetic stream, yielding
  ``(input, conditioning class)`` items identical to the NNCF ``synthcalib.Dataset``'s.
* :class:`AgreementMetric` / :class:`LabelMetric` - POT ``Metric`` s for AccuracyAwareQuantization
  without real data (agreement with the FP32 model; accuracy against the conditioning class).
* the ``"type": "synthetic"`` engine for ``pot -c config.json`` (see :mod:`.patch`), through
  the ``synthcalib-pot`` wrapper or the opt-in ``.pth`` hook (:mod:`.hook`).

Importing this package does not import POT; the POT classes load on first attribute access.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "SyntheticDataLoader": "loader",
    "ClassLabel": "loader",
    "SyntheticEngine": "engine",
    "AgreementMetric": "metrics",
    "LabelMetric": "metrics",
    "MetricSet": "metrics",
    "Fp32Reference": "metrics",
    "make_metric": "metrics",
    "apply_patch": "patch",
    "build_setup": "engine_config",
    "make_setup": "engine_config",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f".{_LAZY[name]}", __name__)
    value = getattr(module, "apply" if name == "apply_patch" else name)
    globals()[name] = value
    return value
