"""The one table of calibration options, shared by every front-end.

Each option is declared once: its check, default and help, and the name it has in each front-end
(the ``synthcalib quantize`` flag, the key of a quantization config, the key of POT's synthetic
engine section, the keyword of :func:`synthcalib.quantize`, the field of the web page's request).
:func:`read` checks what a front-end was given and returns the plan's settings; an error names the
option as that front-end names it. :mod:`.plan` builds the calibration from the settings.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from . import checks
from .checks import Invalid
from .defaults import DEFAULTS
from .errors import SynthcalibError
from .recipes import RECIPES
from .transforms import TRANSFORM_KEYS

FRONTENDS = ("cli", "config", "pot", "api", "page")
_SAME = object()  # an Option's pot_default when POT uses the common default

PRECISIONS = ("f32", "f16", "bf16", "auto")
METRICS = ("agreement", "labels")
METRIC_ALIASES = {"label": "labels", "top1_label": "labels", "top1_agreement": "agreement"}
DROP_TYPES = ("absolute", "relative")
BACKENDS = ("openvino", "onnx", "torch")


@dataclass(frozen=True)
class Option:
    """A calibration option: ``key`` is its name in the plan's settings."""

    key: str
    check: Callable[[Any], Any]
    default: Any
    help: str
    cli: str | None = None  # flag of ``synthcalib quantize``
    config: str | None = None  # dotted key of a quantization config (YAML/JSON)
    pot: str | None = None  # key of POT's ``"type": "synthetic"`` engine section
    api: str | None = None  # keyword of ``synthcalib.quantize`` (dotted: inside a mapping argument)
    page: str | None = None  # field of the web page's calibration request
    pot_default: Any = _SAME  # POT's engine uses another default
    bad: Any = None  # a value every front-end must refuse (the option-table test)
    cli_parse: Callable[[str], Any] | None = None  # command-line text -> value (before the check)
    cli_choices: tuple[str, ...] | None = None
    switch: bool = False  # true or false: a CLI switch (--flag, or --flag/--no-flag when it has no default)

    def name(self, frontend: str, sub: str | None = None, section: bool = False) -> str | None:
        """How ``frontend`` names this option (None: it does not offer it); with ``sub``, its key
        ``sub`` (the ``mean`` of ``transform``: ``--mean``, ``preprocessing.mean``,
        ``transform['mean']``); with ``section``, the section that holds it (``accuracy_control``
        for ``accuracy_control.max_drop``; a flag is its own section)."""
        if sub is not None and frontend in ("cli", "page"):  # a mapping's keys are flags and fields of their own
            return f"--{sub.replace('_', '-')}" if frontend == "cli" else sub
        raw = getattr(self, frontend)
        if raw is None:
            return None
        head, _, tail = raw.partition(".")
        if tail == "name" or section:  # the section's own value (``recipe: adaptive``), or the section
            raw, tail = head, ""
        if frontend == "pot":
            name = f"engine.{raw}"
        elif frontend == "api" and tail:
            name = f"{head}[{tail!r}]"
        else:
            name = raw
        if sub is None:
            return name
        return f"{name}[{sub!r}]" if frontend == "api" else f"{name}.{sub}"

    def default_for(self, frontend: str) -> Any:
        return self.pot_default if frontend == "pot" and self.pot_default is not _SAME else self.default


# ----------------------------------------------------------------------------- checks of single values


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else check(v)


def _source(value: Any) -> Any:
    if isinstance(value, str):
        return checks.text(value, "a source spec such as generator:PATH.xml, images:DIR or noise:gaussian")
    if hasattr(value, "iter_images") or hasattr(value, "generate"):
        return value  # a Source object, or a GeneratorEngine (the API)
    raise Invalid("a source spec such as generator:PATH.xml, images:DIR or noise:gaussian", value)


def _class_list(value: Any) -> Any:
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise Invalid("a class-list file, a generator with class names, or a list of names", value)


def _transform(value: Any) -> Any:
    """A preset name, a mapping of preprocessing options, or (the API) a Transform or callable."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(TRANSFORM_KEYS))
        if unknown:
            raise Invalid(
                f"preprocessing keys among {', '.join(TRANSFORM_KEYS)} (unknown: {', '.join(unknown)})", value
            )
        return {k: v for k, v in value.items() if v is not None}
    if isinstance(value, str) or callable(value):
        return value
    raise Invalid("a preset name or a mapping of preprocessing options", value)


def _recipe(value: Any) -> str:
    return checks.choice(value, RECIPES)


def _nncf_preset(value: Any) -> str:
    return checks.choice(value, ("performance", "mixed"))


def _target_device(value: Any) -> str:
    return checks.choice(value, ("ANY", "CPU", "GPU", "NPU", "CPU_SPR"), upper=True)


def _ignored_scope(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) - {"names", "patterns", "types", "validate"}:
        raise Invalid("a mapping with names, patterns, types, validate", value)
    return dict(value)


def _pot_metrics(value: Any) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not values:
        raise Invalid("a name or a list of names (agreement, label)", value)
    out: list[str] = []
    for v in values:
        metric = checks.choice(v, METRICS, METRIC_ALIASES)
        if metric not in out:
            out.append(metric)
    return out


_int = checks.integer
_positive = partial(_int, minimum=1)
_length = partial(_int, minimum=1, maximum=2**53)  # a stream's length (schedule.MAX_LENGTH)
_non_negative = partial(_int, minimum=0)
_seed = partial(_int, minimum=0, maximum=2**63 - 1)

OPTIONS: tuple[Option, ...] = (
    # --- what is calibrated, and where the result goes
    Option(
        "model",
        check=_optional(lambda v: v),
        default=None,
        help="FP32 model (.xml or .onnx)",
        cli="model",
        config="model",
        api="model",
    ),
    Option(
        "output",
        check=_optional(lambda v: v),
        default=None,
        help="output INT8 model (.xml; .onnx for --backend onnx)",
        cli="--out",
        config="output",
        api="output",
    ),
    Option(
        "backend",
        check=_optional(partial(checks.choice, choices=BACKENDS)),
        default=None,
        help="NNCF backend: openvino (default; writes an IR) or onnx (an .onnx MODEL in, an INT8 .onnx --out)",
        cli="--backend",
        api="backend",
        bad="tensorflow",
        cli_choices=("openvino", "onnx"),
    ),
    # --- the calibration stream
    Option(
        "source",
        check=_optional(_source),
        default=None,
        help="calibration source: generator:PATH, images:DIR, noise:gaussian, ...",
        cli="--source",
        config="dataset.source",
        pot="source",
        api="source",
        page="generator",
        bad="",
    ),
    Option(
        "num_samples",
        check=_length,
        default=DEFAULTS["num_samples"],
        help="calibration items",
        cli="--num-samples",
        config="dataset.num_samples",
        pot="subset_size",
        api="num_samples",
        page="num_samples",
        bad=0,
        cli_parse=checks.from_text(_length),
    ),
    Option(
        "seed",
        check=_seed,
        default=DEFAULTS["seed"],
        help="stream seed",
        cli="--seed",
        config="dataset.seed",
        pot="seed",
        api="seed",
        page="seed",
        bad=-1,
        cli_parse=checks.from_text(_seed),
    ),
    Option(
        "classes",
        check=_optional(checks.names),
        default=None,
        help="only these classes, comma-separated: indices, ids (WordNet ids) or names, matched as class folders are",
        cli="--classes",
        config="dataset.classes",
        pot="classes",
        api="classes",
        bad={"a": 1},
        cli_parse=checks.names,
    ),
    Option(
        "class_weights",
        check=_optional(checks.numbers),
        default=None,
        help="relative weights of the chosen classes",
        cli="--class-weights",
        config="dataset.class_weights",
        pot="class_weights",
        api="class_weights",
        bad="x",
        cli_parse=lambda t: checks.numbers(t),
    ),
    Option(
        "class_list",
        check=_optional(_class_list),
        default=None,
        help="the model's classes in output order, to map class folders of images: sources by name (WordNet id, "
        "name or index), e.g. when a folder holds only some classes: a text file (one name per line), a TSV "
        "(index<TAB>wnid<TAB>name), a JSON list, or a generator whose metadata names its classes (cifar10)",
        cli="--class-list",
        config="dataset.class_list",
        pot="class_list",
        api="class_list",
        bad=5,
    ),
    Option(
        "batch_size",
        check=_positive,
        default=DEFAULTS["batch_size"],
        help="generator batch",
        cli="--batch-size",
        config="dataset.batch_size",
        pot="batch_size",
        api="batch_size",
        bad=0,
        cli_parse=checks.from_text(_positive),
    ),
    Option(
        "device",
        check=partial(checks.text, what="a device name such as CPU"),
        default=DEFAULTS["device"],
        help="OpenVINO device for generation",
        cli="--device",
        config="dataset.device",
        pot="device",
        api="device",
        bad=5,
    ),
    Option(
        "precision",
        check=_optional(partial(checks.choice, choices=PRECISIONS)),
        default=DEFAULTS["calibration_precision"],
        help="generator inference precision (auto: the device's default, like the quantizer's statistics)",
        cli="--precision",
        config="dataset.precision",
        pot="precision",
        api="precision",
        pot_default=DEFAULTS["precision"],
        bad="f8",
        cli_choices=PRECISIONS,
    ),
    Option(
        "transform",
        check=_optional(_transform),
        default=None,
        help="preprocessing: a preset (cifar10, imagenet, inception = [-1, 1], unit, pixels, caffe) or options (mean, "
        "std, input_range, channel_order, layout, size); size and layout are read from the model, the normalisation "
        "from the model's metadata where it declares one, else it must be stated",
        config="preprocessing",
        pot="preprocessing",
        api="transform",
        page="preset",
        bad=5,
    ),
    # --- the recipe
    Option(
        "recipe",
        check=_optional(_recipe),
        default=None,
        help="activation quantization recipe: adaptive (chosen per model on synthetic items; default for synthetic "
        "sources), nncf (NNCF defaults; default for images:), or a fixed candidate: minmax, histogram and "
        "their asymmetric (MIXED preset) variants mixed_minmax, mixed_histogram",
        cli="--recipe",
        config="recipe.name",
        pot="recipe",
        api="recipe.name",
        page="recipe",
        bad="best",
    ),
    Option(
        "score_source",
        check=_optional(_source),
        default=None,
        help="adaptive recipe: the source it scores candidates on (default: the calibration source)",
        cli="--score-source",
        config="recipe.score_source",
        pot="score_source",
        api="recipe.score_source",
        bad=5,
    ),
    Option(
        "score_samples",
        check=_positive,
        default=DEFAULTS["recipe_score_samples"],
        help="adaptive recipe: items it scores candidates on",
        cli="--score-samples",
        config="recipe.score_samples",
        pot="score_samples",
        api="recipe.score_samples",
        bad=0,
        cli_parse=checks.from_text(_positive),
    ),
    Option(
        "score_latent_scale",
        check=partial(checks.number, positive=True),
        default=DEFAULTS["recipe_score_latent_scale"],
        help="adaptive recipe: standard deviation of a generator's latents in the scoring stream (1: as in "
        "calibration; not applied to a score source)",
        cli="--score-latent-scale",
        config="recipe.score_latent_scale",
        pot="score_latent_scale",
        api="recipe.score_latent_scale",
        bad=0,
        cli_parse=checks.from_text(lambda v: v),
    ),
    # --- the data-free quality check
    Option(
        "check_samples",
        check=_non_negative,
        default=DEFAULTS["check_samples"],
        help="fresh synthetic items the INT8 model is checked on against the FP32 model after quantizing, "
        "for the predicted real flip rate (0: no check)",
        cli="--check-samples",
        config="check.samples",
        pot="check_samples",
        api="check.samples",
        bad=-1,
        cli_parse=checks.from_text(_non_negative),
    ),
    Option(
        "check_source",
        check=_optional(_source),
        default=None,
        help="the generator the INT8 model is checked on (default: the calibration source when it is a generator)",
        cli="--check-source",
        config="check.source",
        pot="check_source",
        api="check.source",
        bad=5,
    ),
    # --- nncf.quantize
    Option(
        "subset_size",
        check=_optional(_positive),
        default=None,
        help="nncf subset_size (default: the number of samples)",
        cli="--subset-size",
        config="subset_size",
        api="nncf_options.subset_size",
        bad=0,
        cli_parse=checks.from_text(_positive),
    ),
    Option(
        "nncf_preset",
        check=_optional(_nncf_preset),
        default=None,
        help="NNCF's quantization preset: performance (symmetric activations) or mixed (activations with a "
        "zero point); not the input normalisation, which is --preset",
        cli="--quantization-preset",
        config="preset",
        api="nncf_options.preset",
        bad="fast",
        cli_choices=("performance", "mixed"),
    ),
    Option(
        "fast_bias_correction",
        check=_optional(checks.boolean),
        default=None,
        help="nncf fast bias correction (default on)",
        cli="--fast-bias-correction",
        config="fast_bias_correction",
        api="nncf_options.fast_bias_correction",
        bad="yes",
        switch=True,
    ),
    Option(
        "model_type",
        check=_optional(partial(checks.choice, choices=("transformer",))),
        default=None,
        help="nncf model type (transformer)",
        cli="--model-type",
        config="model_type",
        api="nncf_options.model_type",
        bad="cnn",
        cli_choices=("transformer",),
    ),
    Option(
        "target_device",
        check=_optional(_target_device),
        default=None,
        help="nncf target device (ANY, CPU, GPU, NPU, CPU_SPR)",
        cli="--target-device",
        config="target_device",
        api="nncf_options.target_device",
        bad="TPU",
    ),
    Option(
        "ignored_scope",
        check=_optional(_ignored_scope),
        default=None,
        help="nncf ignored scope (names, patterns, types, validate)",
        config="ignored_scope",
        api="nncf_options.ignored_scope",
        bad=["conv"],
    ),
    # --- accuracy control
    Option(
        "max_drop",
        check=_optional(partial(checks.number, low=0.0, high=1.0)),
        default=None,
        help="use quantize_with_accuracy_control with this max drop (0.01 = 1%)",
        cli="--max-drop",
        config="accuracy_control.max_drop",
        api="accuracy_control.max_drop",
        bad=2,
        cli_parse=checks.from_text(lambda v: v),
    ),
    Option(
        "metric",
        check=_optional(partial(checks.choice, choices=METRICS, aliases=METRIC_ALIASES)),
        default=None,
        help="accuracy-control metric: agreement with the FP32 model, or labels (the conditioning classes); "
        "default agreement",
        cli="--metric",
        config="accuracy_control.metric",
        api="accuracy_control.metric",
        bad="f1",
        cli_choices=("agreement", "labels"),
    ),
    Option(
        "validation_source",
        check=_optional(_source),
        default=None,
        help="accuracy-control validation source (default: the calibration source)",
        cli="--validation-source",
        config="accuracy_control.source",
        api="accuracy_control.source",
        bad=5,
    ),
    Option(
        "validation_samples",
        check=_optional(_positive),
        default=None,
        help="accuracy-control validation items (default: the number of samples)",
        config="accuracy_control.num_samples",
        api="accuracy_control.num_samples",
        bad=0,
    ),
    Option(
        "validation_seed",
        check=_optional(_seed),
        default=None,
        help="accuracy-control validation seed (default: seed + 1)",
        config="accuracy_control.seed",
        api="accuracy_control.seed",
        bad=-1,
    ),
    Option(
        "drop_type",
        check=_optional(partial(checks.choice, choices=DROP_TYPES)),
        default=None,
        help="accuracy-control drop type (absolute or relative)",
        config="accuracy_control.drop_type",
        api="accuracy_control.drop_type",
        bad="percent",
    ),
    Option(
        "max_num_iterations",
        check=_optional(_positive),
        default=None,
        help="accuracy-control iterations at most",
        config="accuracy_control.max_num_iterations",
        api="accuracy_control.max_num_iterations",
        bad=0,
    ),
    Option(
        "allow_class_mismatch",
        check=checks.boolean,
        default=False,
        help="accept a source with other classes than the model",
        cli="--allow-class-mismatch",
        config="allow_class_mismatch",
        api="allow_class_mismatch",
        bad="no",
        switch=True,
    ),
    # --- POT's synthetic engine only
    Option(
        "num_classes",
        check=_optional(_positive),
        default=None,
        help="classes of a generator without metadata (default: the model's outputs)",
        pot="num_classes",
        bad=0,
    ),
    Option(
        "metrics",
        check=_optional(_pot_metrics),
        default=None,
        help="POT metrics: agreement (top1_agreement) and/or label (top1_label); default: agreement when an "
        "AccuracyAware algorithm runs",
        pot="metrics",
        bad="f1",
    ),
    Option(
        "cache",
        check=checks.boolean,
        default=True,
        help="keep generated items in memory (POT reads the data set several times)",
        pot="cache",
        bad="yes",
        switch=True,
    ),
    Option(
        "stat_requests_number",
        check=_optional(_positive),
        default=None,
        help="POT's statistics requests",
        pot="stat_requests_number",
        bad=0,
    ),
    Option(
        "eval_requests_number",
        check=_optional(_positive),
        default=None,
        help="POT's evaluation requests",
        pot="eval_requests_number",
        bad=0,
    ),
)
BY_KEY: Mapping[str, Option] = {o.key: o for o in OPTIONS}
#: Options of nncf.quantize (the settings key -> nncf.quantize keyword).
NNCF_KEYWORDS = {
    "subset_size": "subset_size",
    "nncf_preset": "preset",
    "fast_bias_correction": "fast_bias_correction",
    "model_type": "model_type",
    "target_device": "target_device",
    "ignored_scope": "ignored_scope",
}
ACCURACY_KEYS = (
    "max_drop",
    "metric",
    "validation_source",
    "validation_samples",
    "validation_seed",
    "drop_type",
    "max_num_iterations",
)


#: A section given as a string stands for this key of it (``recipe: adaptive``, ``dataset: SPEC``).
SECTION_SHORTHAND = {"recipe": "name", "dataset": "source"}
#: A section given at all sets these (an ``accuracy_control`` mapping turns accuracy control on).
SECTION_DEFAULTS = {"accuracy_control": {"max_drop": 0.01}}


def offered(frontend: str) -> Iterator[Option]:
    """The options a front-end offers."""
    return (o for o in OPTIONS if getattr(o, frontend) is not None)


def name_in(frontend: str, key: str, section: bool = False) -> str:
    """How ``frontend`` names the option of settings key ``key``, or ``OPTION.KEY`` for a key of a
    mapping option (``transform.mean``): see :meth:`Option.name`. A key the table does not hold, or
    an option the front-end does not offer, is named by the key itself."""
    head, _, sub = key.partition(".")
    option = BY_KEY.get(head)
    found = option.name(frontend, sub or None, section) if option is not None else None
    return found or key


# ----------------------------------------------------------------------------- reading a front-end's values


@dataclass(frozen=True)
class Settings(Mapping):
    """Checked values of every option (defaults filled in) and the front-end that gave them."""

    data: Mapping[str, Any]
    frontend: str

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def name(self, key: str, section: bool = False) -> str:
        """The option's name in this front-end (see :func:`name_in`)."""
        return name_in(self.frontend, key, section)

    def error(self, key: str, message: str) -> SynthcalibError:
        """A one-line error about option ``key``, named as this front-end names it."""
        return SynthcalibError(message, key=key).named(self.name)

    def named(self, exc: SynthcalibError) -> SynthcalibError:
        """``exc`` with the options it names in this front-end's words."""
        return exc.named(self.name)

    def nncf_kwargs(self) -> dict[str, Any]:
        """``nncf.quantize`` keyword arguments (NNCF's own types) for the options given."""
        import nncf

        convert: dict[str, Callable[[Any], Any]] = {
            "nncf_preset": nncf.QuantizationPreset,
            "model_type": nncf.ModelType,
            "target_device": nncf.TargetDevice,
            "ignored_scope": lambda v: nncf.IgnoredScope(**v),
        }
        return {
            NNCF_KEYWORDS[k]: convert.get(k, lambda v: v)(self.data[k])
            for k in NNCF_KEYWORDS
            if self.data.get(k) is not None
        }

    def accuracy_control(self) -> dict[str, Any] | None:
        """The accuracy-control settings, or None when ``max_drop`` is not set."""
        if self.data.get("max_drop") is None:
            return None
        out = {k: self.data[k] for k in ACCURACY_KEYS if self.data.get(k) is not None}
        out.setdefault("metric", "agreement")
        return out


def read(values: Mapping[str, Any], frontend: str, prefix: str = "") -> Settings:
    """Check ``values`` (settings key -> value, as given to ``frontend``) against the table.

    Absent or None values take their default. An error names the option as ``frontend`` does,
    after ``prefix`` (e.g. ``--config 'q.yaml': ``)."""
    out: dict[str, Any] = {}
    for option in OPTIONS:
        value = values.get(option.key)
        if value is None:
            out[option.key] = option.default_for(frontend)
            continue
        try:
            out[option.key] = option.check(value)
        except Invalid as exc:
            raise SynthcalibError(prefix + exc.message(option.name(frontend) or option.key)) from None
    unknown = sorted(set(values) - set(BY_KEY))
    if unknown:
        raise SynthcalibError(f"{prefix}unknown option(s) {', '.join(unknown)}")
    if out["max_drop"] is None:
        for key in ACCURACY_KEYS[1:]:
            if values.get(key) is not None:
                name = BY_KEY[key].name(frontend) or key
                drop = BY_KEY["max_drop"].name(frontend) or "max_drop"
                raise SynthcalibError(f"{prefix}{name}: only used with {drop} (accuracy control)")
    return Settings(out, frontend)


def from_nested(data: Mapping[str, Any], frontend: str, prefix: str = "") -> dict[str, Any]:
    """Settings values from a front-end's nested mapping (a config file, the API's keyword
    arguments, POT's engine section): each key found under the dotted name the table gives it.
    A section given as a string stands for its first key (``recipe: adaptive``); unknown keys are
    refused with the keys expected."""
    names = {getattr(o, frontend): o.key for o in offered(frontend)}
    sections: dict[str, list[str]] = {}
    for name in names:
        head, _, tail = name.partition(".")
        if tail:
            sections.setdefault(head, []).append(tail)
    top = sorted({n.partition(".")[0] for n in names})
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in names and key not in sections:
            out[names[key]] = value
        elif key in sections:
            if value is None:
                continue
            if isinstance(value, str) and key in SECTION_SHORTHAND:
                value = {SECTION_SHORTHAND[key]: value}
            if not isinstance(value, Mapping):
                raise SynthcalibError(f"{prefix}{key}: expected a mapping of {', '.join(sections[key])}, got {value!r}")
            for sub, v in value.items():
                if sub not in sections[key]:
                    raise SynthcalibError(f"{prefix}{key}: unknown key(s) {sub}; expected {', '.join(sections[key])}")
                out[names[f"{key}.{sub}"]] = v
            for sub, v in SECTION_DEFAULTS.get(key, {}).items():
                out.setdefault(names[f"{key}.{sub}"], v)
        else:
            raise SynthcalibError(f"{prefix}unknown key(s) {key}; expected {', '.join(top)}")
    return out
