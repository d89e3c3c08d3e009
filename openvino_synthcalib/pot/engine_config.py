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

from ..defaults import DEFAULTS
from ..errors import SynthcalibError

ENGINE_TYPE = "synthetic"

#: Keys of the engine section, with their defaults (``None``: not set / derived).
ENGINE_KEYS: dict[str, Any] = {
    "type": ENGINE_TYPE,
    "source": None,  # required: generator:PATH, images:DIR, noise:gaussian, ...
    "subset_size": DEFAULTS["num_samples"],
    "seed": DEFAULTS["seed"],
    "preprocessing": None,  # required: preset name or dict of Transform options ({} = RGB in [0, 1])
    "num_classes": None,  # classes of a generator without metadata (default: the model's outputs)
    "classes": None,
    "class_weights": None,
    "class_list": None,  # images: sources: the model's classes, to map class folders by name (file or generator)
    "metrics": None,  # agreement / label; default: agreement when an AccuracyAware algorithm runs
    "device": DEFAULTS["device"],
    "batch_size": DEFAULTS["batch_size"],  # generator batch, not POT's stat_batch_size
    "precision": DEFAULTS["precision"],  # inference precision of generator, POT engine and FP32 reference
    "cache": True,  # keep generated items in memory (POT reads the data set several times)
    "stat_requests_number": None,
    "eval_requests_number": None,
    "recipe": None,  # adaptive (default for synthetic sources), nncf (POT defaults; default for images:), minmax
    "score_source": None,  # adaptive recipe: source it scores candidates on (default: source)
    "score_samples": DEFAULTS["recipe_score_samples"],
    # adaptive recipe: a generator's latents in the scoring stream, times calibration's spread
    "score_latent_scale": DEFAULTS["recipe_score_latent_scale"],
}
#: Keys POT itself adds to every engine section (``None`` unless given on its command line).
POT_ADDED_KEYS = ("data_source", "evaluate")

METRIC_ALIASES = {
    "agreement": "top1_agreement",
    "top1_agreement": "top1_agreement",
    "label": "top1_label",
    "top1_label": "top1_label",
}
ACCURACY_AWARE_ALGOS = ("AccuracyAwareQuantization", "AccuracyAwareCommon", "AccuracyAwareGNA", "INT4MixedQuantization")

KNOWN_POT_TYPES = ("accuracy_checker", "simplified")

_REGISTRY: dict[str, EngineSetup] = {}
_BUILT: dict[str, EngineSetup] = {}
_TOKENS = itertools.count()
TOKEN_KEY = "synthcalib_token"


@dataclass
class EngineSetup:
    """Everything the synthetic engine needs, resolved from the engine section."""

    stream: Any
    model_path: Any  # path of the model to quantize (or an openvino.Model)
    metrics: list[str] = field(default_factory=list)
    device: str = DEFAULTS["device"]
    cache: bool = True
    precision: str | None = DEFAULTS["precision"]
    recipe: str = "nncf"
    score_source: str | None = None
    score_samples: int = DEFAULTS["recipe_score_samples"]
    score_latent_scale: float = DEFAULTS["recipe_score_latent_scale"]


def _int(engine: dict[str, Any], key: str, minimum: int) -> int:
    value = engine.get(key, ENGINE_KEYS[key])
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SynthcalibError(f"engine.{key}: expected an integer >= {minimum}, got {value!r}")
    return value


def parse_metrics(value: Any, accuracy_aware: bool) -> list[str]:
    """Metric names from the ``metrics`` key (a name or a list); the default depends on the algorithms."""
    if value is None:
        return ["top1_agreement"] if accuracy_aware else []
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise SynthcalibError(f"engine.metrics: expected a name or a list of names (agreement, label), got {value!r}")
    out = []
    for name in names:
        if name not in METRIC_ALIASES:
            raise SynthcalibError(
                f"engine.metrics: unknown metric {name!r}; expected agreement (top1_agreement) or label (top1_label)"
            )
        if METRIC_ALIASES[name] not in out:
            out.append(METRIC_ALIASES[name])
    return out


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
    if "preprocessing" not in engine or engine["preprocessing"] is None:
        raise SynthcalibError(
            'engine.preprocessing: missing; expected a preset such as {"preset": "cifar10"}, '
            "explicit mean/std/input_range, or {} for RGB in [0, 1]"
        )
    if not isinstance(engine["preprocessing"], (dict, str)):
        raise SynthcalibError(
            f"engine.preprocessing: expected an object of options or a preset name, got {engine['preprocessing']!r}"
        )


def _prefixed(key: str, exc: SynthcalibError) -> SynthcalibError:
    text = str(exc)
    return SynthcalibError(text if text.startswith(f"engine.{key}") else f"engine.{key}: {text}")


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
        setup.stream.close()


def make_setup(
    engine: dict[str, Any],
    model_path: str | os.PathLike[str],
    algorithms: list[str] | tuple[str, ...] = (),
) -> EngineSetup:
    from .. import models
    from ..classifier import classifier_classes
    from ..stream import make_stream

    check_keys(engine)
    subset_size = _int(engine, "subset_size", 1)
    seed = _int(engine, "seed", 0)
    batch_size = _int(engine, "batch_size", 1)
    device = engine.get("device") or ENGINE_KEYS["device"]
    if not isinstance(device, str):
        raise SynthcalibError(f"engine.device: expected a device name such as CPU, got {device!r}")
    accuracy_aware = any(a in ACCURACY_AWARE_ALGOS for a in algorithms)
    metrics = parse_metrics(engine.get("metrics"), accuracy_aware)
    if accuracy_aware and not metrics:
        raise SynthcalibError("engine.metrics: AccuracyAware quantization needs a metric (agreement or label)")
    cache = engine.get("cache", True)
    if not isinstance(cache, bool):
        raise SynthcalibError(f"engine.cache: expected true or false, got {cache!r}")
    precision = engine.get("precision", ENGINE_KEYS["precision"])
    if precision not in (None, "auto", "f32", "f16", "bf16"):
        raise SynthcalibError(f"engine.precision: expected f32, f16, bf16 or auto, got {precision!r}")
    for key in ("stat_requests_number", "eval_requests_number"):
        if engine.get(key) is not None:
            _int(engine, key, 1)
    score_samples = _int(engine, "score_samples", 1)
    from ..recipes import check_latent_scale

    score_latent_scale = check_latent_scale(
        engine.get("score_latent_scale", ENGINE_KEYS["score_latent_scale"]), "engine.score_latent_scale"
    )
    score_source = engine.get("score_source")
    if score_source is not None and not isinstance(score_source, str):
        raise SynthcalibError(f"engine.score_source: expected a source spec string, got {score_source!r}")
    recipe = engine.get("recipe")
    if recipe is not None:
        from ..recipes import CANDIDATES, check_name

        recipe = check_name(recipe, "engine.recipe")
        if recipe in CANDIDATES and not CANDIDATES[recipe].pot_available:
            usable = ", ".join(["adaptive", *(c.name for c in CANDIDATES.values() if c.pot_available)])
            raise SynthcalibError(f"engine.recipe: {recipe!r} has no POT equivalent; expected one of {usable}")

    if hasattr(model_path, "inputs"):  # an openvino.Model
        model = reference = model_path
        where = getattr(model, "friendly_name", "<model>")
    elif model_path is None or not str(model_path).strip():
        raise SynthcalibError("model.model: missing; expected the path of the model to quantize (.xml or .onnx)")
    else:
        model = models.read_model(model_path, "model.model")
        reference = where = os.fspath(model_path)
    model_classes = classifier_classes(model)

    num_classes = engine.get("num_classes")
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
            raise SynthcalibError(f"engine.num_classes: expected a positive integer, got {num_classes!r}")
        if model_classes is not None and num_classes != model_classes:
            raise SynthcalibError(
                f"engine.num_classes: {num_classes} classes but model '{where}' outputs {model_classes} logits"
            )

    preprocessing = engine["preprocessing"]
    try:
        from ..transforms import as_transform

        transform = as_transform(preprocessing, model)
    except SynthcalibError as exc:
        raise _prefixed("preprocessing", exc) from None

    spec = engine["source"].strip()
    if num_classes is not None and spec.startswith("generator:") and "num_classes=" not in spec:
        spec += ("&" if "?" in spec else "?") + f"num_classes={num_classes}"
    from ..defaults import preset_framing
    from ..imagefolder import ClassList, model_class_list
    from ..sources.images import FolderOptions, open_source

    class_list = engine.get("class_list")
    if class_list is not None:
        class_list = ClassList.load(class_list, "engine.class_list")
    try:
        framing = preset_framing(preprocessing)
        source = open_source(
            spec, FolderOptions(class_list, model_class_list(model), framing.get("crop"), framing.get("crop_fraction"))
        )
        classes = engine.get("classes")  # None: the stream draws the classes the source holds
    except SynthcalibError as exc:
        raise _prefixed("source", exc) from None
    try:
        stream = make_stream(
            source,
            subset_size,
            model=model,
            transform=transform,
            seed=seed,
            classes=classes,
            class_weights=engine.get("class_weights"),
            device=device,
            batch_size=batch_size,
            precision=precision,
        )
    except SynthcalibError as exc:
        raise _prefixed("source", exc) from None

    source = stream.source
    try:
        source.check_classes(model_classes, "engine.source")
        if "top1_label" in metrics and not source.conditional:
            raise SynthcalibError(
                f"engine.metrics: 'label' needs a class-conditional source; '{spec}' has no meaningful labels"
            )
        if metrics and model_classes is None:
            raise SynthcalibError(
                f"engine.metrics: top-1 metrics need a classifier with one [N, K] output; model '{where}' has none"
            )
    except BaseException:
        stream.close()
        raise
    from ..recipes import default_for

    return EngineSetup(
        stream=stream,
        model_path=reference,
        recipe=recipe or default_for(source),
        score_source=score_source,
        score_samples=score_samples,
        score_latent_scale=score_latent_scale,
        metrics=metrics,
        device=device,
        cache=cache,
        precision=precision,
    )


def register(setup: EngineSetup) -> str:
    token = f"synthcalib-{os.getpid()}-{next(_TOKENS)}"
    _REGISTRY[token] = setup
    return token


def lookup(engine: dict[str, Any]) -> EngineSetup:
    token = engine.get(TOKEN_KEY)
    if token not in _REGISTRY:
        raise SynthcalibError("engine: the synthetic engine section was not configured (internal error)")
    return _REGISTRY[token]
