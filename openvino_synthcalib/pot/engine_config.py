"""The ``"type": "synthetic"`` engine section of a POT JSON config: validation and set-up.

No POT import here: this module reads the engine section, checks it key by key and builds
the :class:`~openvino_synthcalib.stream.SyntheticStream` that feeds POT. Every problem raises
:class:`~openvino_synthcalib.errors.SynthcalibError` with a one-line message that names the key.

Paths (``source``, the model) are used as given: a relative path is relative to the current
working directory, as for POT's own ``model``/``weights`` keys. The configs in ``configs/pot/``
are therefore written for running from the repository root.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from typing import Any

from .. import models, options
from .. import plan as plans
from ..classifier import classifier_classes
from ..errors import SynthcalibError
from ..recipes import CANDIDATES

ENGINE_TYPE = "synthetic"

#: Keys of the engine section: its type, and the options of the table (:mod:`..options`) POT offers.
ENGINE_KEYS: tuple[str, ...] = ("type", *(o.pot for o in options.offered("pot")))
#: Keys POT itself adds to every engine section (``None`` unless given on its command line).
POT_ADDED_KEYS = ("data_source", "evaluate")

#: POT's metric names for the table's metrics.
POT_METRICS = {"agreement": "top1_agreement", "labels": "top1_label"}
ACCURACY_AWARE_ALGOS = ("AccuracyAwareQuantization", "AccuracyAwareCommon", "AccuracyAwareGNA", "INT4MixedQuantization")

KNOWN_POT_TYPES = ("accuracy_checker", "simplified")

_REGISTRY: dict[str, EngineSetup] = {}
_BUILT: dict[str, EngineSetup] = {}
_TOKENS = itertools.count()
TOKEN_KEY = "synthcalib_token"


@dataclass
class EngineSetup:
    """Everything the synthetic engine needs: the calibration plan of the engine section, its
    stream, and what only POT has (metrics, item cache)."""

    plan: Any
    stream: Any
    model_path: Any  # path of the model to quantize (or an openvino.Model)
    metrics: list[str] = field(default_factory=list)
    cache: bool = True

    @property
    def recipe(self) -> str:
        return self.plan.recipe

    @property
    def device(self) -> str:
        return self.plan.settings["device"]

    @property
    def precision(self) -> str | None:
        return self.plan.settings["precision"]

    def close(self) -> None:
        self.stream.close()
        self.plan.close()


def parse_metrics(value: Any, accuracy_aware: bool) -> list[str]:
    """POT metric names from the ``metrics`` key (checked by the table); the default depends on the algorithms."""
    if value is None:
        return ["top1_agreement"] if accuracy_aware else []
    return [POT_METRICS[m] for m in value]


def check_keys(engine: dict[str, Any]) -> None:
    """Unknown keys and the required ones (``source``, ``preprocessing``)."""
    unknown = sorted(k for k in engine if k not in ENGINE_KEYS and k not in POT_ADDED_KEYS and k != TOKEN_KEY)
    if unknown:
        raise SynthcalibError(
            f"engine.{unknown[0]}: unknown key for the synthetic engine; expected {', '.join(ENGINE_KEYS)}"
        )
    if engine.get("data_source") is not None:
        raise SynthcalibError(
            "engine.data_source: not used by the synthetic engine (and not --data-source); "
            'give real images as "source": "images:DIR"'
        )
    source = engine.get("source")
    if source is None or (isinstance(source, str) and not source.strip()):
        raise SynthcalibError(
            "engine.source: missing; expected a source spec such as generator:PATH.xml, images:DIR or noise:gaussian"
        )
    if not isinstance(source, str):
        raise SynthcalibError(f"engine.source: expected a string such as generator:PATH.xml, got {source!r}")
    # no preprocessing: the model must declare its normalisation (the plan says so, naming the key)
    if engine.get("preprocessing") is not None and not isinstance(engine["preprocessing"], (dict, str)):
        raise SynthcalibError(
            f"engine.preprocessing: expected an object of options or a preset name, got {engine['preprocessing']!r}"
        )


def check_type(engine: Any) -> None:
    """An engine section must be an object with a type POT (patched) knows."""
    if not isinstance(engine, dict):
        raise SynthcalibError(f"engine: expected an object, got {engine!r}")
    kind = engine.get("type", "accuracy_checker")
    if kind != ENGINE_TYPE and kind not in KNOWN_POT_TYPES:
        raise SynthcalibError(
            f"engine.type: unknown engine type {kind!r}; expected {ENGINE_TYPE}, {', '.join(KNOWN_POT_TYPES)}"
        )


def _cache_key(engine: dict[str, Any], model_path: Any, algorithms: Any) -> str:
    import json

    plain = {k: v for k, v in engine.items() if k not in POT_ADDED_KEYS and k != TOKEN_KEY}
    model_key = f"id:{id(model_path)}" if hasattr(model_path, "inputs") else str(model_path)
    return json.dumps([plain, model_key, list(algorithms), os.getcwd()], sort_keys=True, default=str)


def build_setup(
    engine: dict[str, Any],
    model_path: str | os.PathLike[str],
    algorithms: list[str] | tuple[str, ...] = (),
) -> EngineSetup:
    """:func:`make_setup`, cached: the same section, model and algorithms give the same set-up,
    so that a wrapper can validate a config before POT starts and POT reuses the result.
    :func:`release_all` closes what was built once the POT run is over."""
    key = _cache_key(dict(engine), model_path, algorithms)
    if key not in _BUILT:
        _BUILT[key] = make_setup(dict(engine), model_path, algorithms)
    return _BUILT[key]


def release_all() -> None:
    """Close the streams (compiled generators) of every set-up built or registered so far."""
    setups = {id(s): s for s in (*_BUILT.values(), *_REGISTRY.values())}
    _BUILT.clear()
    _REGISTRY.clear()
    for setup in setups.values():
        setup.close()


def make_setup(
    engine: dict[str, Any],
    model_path: str | os.PathLike[str],
    algorithms: list[str] | tuple[str, ...] = (),
) -> EngineSetup:
    """The calibration plan of an engine section (checked through the option table, errors named
    ``engine.KEY``), its stream, and POT's own settings."""
    check_keys(engine)
    given = {k: v for k, v in engine.items() if k not in ("type", TOKEN_KEY, *POT_ADDED_KEYS)}
    values = options.from_nested(given, "pot")
    if values.get("precision") is None and "precision" in engine:
        values["precision"] = "auto"  # an explicit null: the device's default
    settings = options.read(values, "pot")
    if settings["recipe"] in CANDIDATES and not CANDIDATES[settings["recipe"]].pot_available:
        usable = ", ".join(["adaptive", *(c.name for c in CANDIDATES.values() if c.pot_available)])
        raise SynthcalibError(f"engine.recipe: {settings['recipe']!r} has no POT equivalent; expected one of {usable}")
    accuracy_aware = any(a in ACCURACY_AWARE_ALGOS for a in algorithms)
    metrics = parse_metrics(settings["metrics"], accuracy_aware)

    if hasattr(model_path, "inputs"):  # an openvino.Model
        model = reference = model_path
        where = getattr(model, "friendly_name", "<model>")
    elif model_path is None or not str(model_path).strip():
        raise SynthcalibError("model.model: missing; expected the path of the model to quantize (.xml or .onnx)")
    else:
        model = models.read_model(model_path, "model.model")
        reference = where = os.fspath(model_path)
    model_classes = classifier_classes(model)
    num_classes = settings["num_classes"]
    if num_classes is not None and model_classes is not None and num_classes != model_classes:
        raise SynthcalibError(
            f"engine.num_classes: {num_classes} classes but model '{where}' outputs {model_classes} logits"
        )
    spec = settings["source"]
    if num_classes is not None and spec.startswith("generator:") and "num_classes=" not in spec:
        values["source"] = spec + ("&" if "?" in spec else "?") + f"num_classes={num_classes}"
        settings = options.read(values, "pot")
    plan = plans.build(settings, model)
    try:
        stream = plan.calibration_stream()
        if "top1_label" in metrics and not plan.source.conditional:
            raise SynthcalibError(
                f"engine.metrics: 'label' needs a class-conditional source; '{spec}' has no meaningful labels "
                f"({plan.source.why_unlabelled})"
            )
        if metrics and model_classes is None:
            raise SynthcalibError(
                f"engine.metrics: top-1 metrics need a classifier with one [N, K] output; model '{where}' has none"
            )
        if accuracy_aware and not metrics:
            raise SynthcalibError("engine.metrics: AccuracyAware quantization needs a metric (agreement or label)")
    except BaseException:
        plan.close()
        raise
    return EngineSetup(plan=plan, stream=stream, model_path=reference, metrics=metrics, cache=settings["cache"])


def register(setup: EngineSetup) -> str:
    token = f"synthcalib-{os.getpid()}-{next(_TOKENS)}"
    _REGISTRY[token] = setup
    return token


def lookup(engine: dict[str, Any]) -> EngineSetup:
    token = engine.get(TOKEN_KEY)
    if token not in _REGISTRY:
        raise SynthcalibError("engine: the synthetic engine section was not configured (internal error)")
    return _REGISTRY[token]
