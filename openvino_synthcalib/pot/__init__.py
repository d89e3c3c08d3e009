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

from .. import lazy

__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    {
        "SyntheticDataLoader": ".loader",
        "ClassLabel": ".loader",
        "SyntheticEngine": ".engine",
        "AgreementMetric": ".metrics",
        "LabelMetric": ".metrics",
        "MetricSet": ".metrics",
        "Fp32Reference": ".metrics",
        "make_metric": ".metrics",
        "apply_patch": ".patch:apply",
        "build_setup": ".engine_config",
        "make_setup": ".engine_config",
    },
)
