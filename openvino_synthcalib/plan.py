"""The calibration plan: what every front-end resolves once, and everything downstream reads.

A front-end (the CLI, a quantization config, POT's engine section, :func:`synthcalib.quantize`,
the web page) turns what it was given into :class:`~.options.Settings` through the option table,
then :func:`build` resolves them against the model: the model read once and its
:class:`~.backends.Target` (for every backend), the output path checked, the calibration source
opened (image folders mapped to the model's classes), the transform fitted to the model's
input, the classes checked and the recipe chosen by default for the source. Streams for
calibration, validation and the recipe's scoring are made from the plan, with the same
transform, target and generation settings; nothing downstream derives a setting again.

    settings = options.read({"source": "generator:cifar10", "transform": "cifar10"}, "api")
    with plan.build(settings, model) as p:
        report = quantization.run(p)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import backends
from . import stream as streams
from .errors import SynthcalibError
from .files import same_file
from .options import BY_KEY, Settings
from .plugins import resolve_source
from .preprocessing import PreprocessingUnstated
from .recipes import SCORE_SEED_OFFSET, default_for, scoring_source
from .sources.base import Source, SourceContext
from .sources.images import FolderOptions, open_source
from .transforms import Transform

if TYPE_CHECKING:
    import numpy as np


@dataclass
class CalibrationPlan:
    """A resolved, validated calibration (see the module's docstring); a context manager that
    releases the sources it opened."""

    settings: Settings
    model: backends.ModelObject
    model_path: Path | None
    backend: str  # one of backends.BACKENDS
    target: backends.Target
    output: Path | None
    source: Source  # the opened calibration source
    #: a Transform fitted to the model's input, or the caller's callable on canonical batches
    transform: Transform | Callable[[np.ndarray], Any]
    recipe: str  # the recipe's name (the source's default where none was asked)
    folders: FolderOptions  # how image folders are read (class lists, framing)
    progress: Callable[[int, int], None] | None = None
    score_source: Source | None = None  # the opened score source, where one was given
    validation_source: Source | None = None  # the opened accuracy-control source, where one was given
    check_source: Source | None = None  # the opened quality-check source, where one was given
    #: what accuracy control reports (progress, time, layers kept in FP32), once it has run
    accuracy_control_report: dict[str, Any] | None = field(default=None, repr=False)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)

    @property
    def frontend(self) -> str:
        return self.settings.frontend

    @property
    def model_classes(self) -> int | None:
        """The model's class count (a torch module's from its probe on the plan's items)."""
        return self.target.classes

    def error(self, key: str, message: str) -> SynthcalibError:
        """A one-line error about option ``key``, as the plan's front-end names it."""
        return self.settings.error(key, message)

    @contextlib.contextmanager
    def _named(self) -> Iterator[None]:
        """Errors raised inside name the options at fault in the front-end's words."""
        try:
            yield
        except SynthcalibError as exc:
            self.settings.named(exc)
            raise

    def nncf_kwargs(self) -> dict[str, Any]:
        """``nncf.quantize`` keyword arguments; ``subset_size`` defaults to every calibration item."""
        return {"subset_size": self.settings["num_samples"], **self.settings.nncf_kwargs()}

    @property
    def accuracy(self) -> dict[str, Any] | None:
        return self.settings.accuracy_control()

    def stream(
        self,
        source: Source | None = None,
        num_samples: int | None = None,
        seed: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        all_classes: bool = False,
    ) -> streams.SyntheticStream:
        """A stream of ``source`` (default: the calibration source) with the plan's transform,
        target, classes (every class with ``all_classes``) and generation settings; it is closed
        with the plan."""
        s = self.settings
        with self._named():
            stream = streams.make_stream(
                self.source if source is None else source,
                s["num_samples"] if num_samples is None else num_samples,
                model=self.target,
                transform=self.transform,
                seed=s["seed"] if seed is None else seed,
                classes=None if all_classes else s["classes"],
                class_weights=None if all_classes else s["class_weights"],
                device=s["device"],
                batch_size=s["batch_size"],
                precision=s["precision"],
                progress=progress,
            )
        self._stack.callback(stream.close)
        return stream

    def calibration_stream(self) -> streams.SyntheticStream:
        """The calibration items (followed by the plan's ``progress``)."""
        return self.stream(progress=self.progress)

    def scoring_stream(self) -> streams.SyntheticStream:
        """The adaptive recipe's scoring items: the score source as given, or the calibration source
        with a generator's latents ``score_latent_scale`` times as wide; seed + SCORE_SEED_OFFSET,
        every class (candidates are judged on the whole model)."""
        s = self.settings
        source = self.score_source or scoring_source(self.source, s["score_latent_scale"])
        return self.stream(source, s["score_samples"], s["seed"] + SCORE_SEED_OFFSET, all_classes=True)

    def validation_stream(self) -> streams.SyntheticStream:
        """Accuracy control's labelled items: its source (default: calibration's), seed + 1."""
        s = self.settings
        seed = s["validation_seed"] if s["validation_seed"] is not None else s["seed"] + 1
        stream = self.stream(self.validation_source or self.source, s["validation_samples"], seed)
        if stream.source is not self.source and not self.settings["allow_class_mismatch"]:
            with self._named():
                stream.source.check_classes(self.model_classes, "validation_source", self._override)
        return stream

    @property
    def _override(self) -> str | None:
        """The option that accepts a class mismatch, where the front-end offers it."""
        return "allow_class_mismatch" if BY_KEY["allow_class_mismatch"].name(self.frontend) else None

    def open_source(self, spec: str | Source, key: str, partner: str | Source | None = None) -> Source:
        """A source spec (option ``key``'s) opened with the plan's folder options (an image folder
        paired with the classes of ``partner`` when that is a generator), kept open until the plan
        closes; errors are about option ``key``."""
        s = self.settings
        context = SourceContext(
            num_classes=self.target.classes if self.target is not None else None,
            device=s["device"],
            batch_size=s["batch_size"],
            precision=s["precision"],
        )
        try:
            source = resolve_source(open_source(spec, replace(self.folders, partner=partner)), context)
        except SynthcalibError as exc:
            raise exc.about(key) from None
        if source is not spec:
            self._stack.callback(source.close)
        return source

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> CalibrationPlan:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def check_output(settings: Settings, model_path: Path | None, backend: str) -> Path | None:
    """The output path: ending in the backend's suffix (``.xml``; ``.onnx`` for ONNX), not a folder,
    not the input model (nor its weights); None when not given."""
    output = settings["output"]
    if output is None:
        return None
    out = Path(output)
    suffix = backends.OUTPUT_SUFFIX[backend]
    name = settings.name("output")
    if suffix is None:
        raise SynthcalibError(f"{name} '{out}': a quantized PyTorch module is returned, not saved; leave it out")
    if out.suffix.lower() != suffix:
        raise SynthcalibError(f"{name} '{out}': expected a path ending in {suffix}")
    if out.is_dir():
        raise SynthcalibError(f"{name} '{out}' is a folder: expected an {suffix} file path")
    if model_path is not None:
        inputs = [model_path] + ([model_path.with_suffix(".bin")] if model_path.suffix.lower() == ".xml" else [])
        for produced in (out, out.with_suffix(".bin")):
            for given in inputs:
                if same_file(produced, given):
                    raise SynthcalibError(
                        f"{name} '{out}' would overwrite the input model '{model_path}': choose another output path"
                    )
    return out


def load_model(settings: Settings, model: Any = None) -> tuple[backends.ModelObject, Path | None, str]:
    """``(model object, its path or None, backend)``: the model given (an object or path), errors
    named as the front-end names the model and backend options."""
    model = settings["model"] if model is None else model
    if model is None:
        raise settings.error("model", "missing; expected the FP32 model to quantize (.xml or .onnx)")
    return backends.load(model, settings["backend"], settings.name("backend"), settings.name("model"))


def build(
    settings: Settings,
    model: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> CalibrationPlan:
    """Resolve ``settings`` against the model (``settings["model"]`` unless given): see the module."""
    model, model_path, backend = load_model(settings, model)
    output = check_output(settings, model_path, backend)
    if settings.accuracy_control() is not None:
        try:
            backends.check_accuracy_control(backend)
        except SynthcalibError as exc:  # named as the option that turns it on, or its section
            raise exc.named(partial(settings.name, section=True)) from None
    if settings["source"] is None:
        raise settings.error("source", "missing; expected a source spec such as generator:PATH.xml or images:DIR")
    target = backends.target(model)
    plan = CalibrationPlan(
        settings=settings,
        model=model,
        model_path=model_path,
        backend=backend,
        target=target,
        output=output,
        source=None,  # type: ignore[arg-type]  # the rest is resolved below, closing what was opened if a step fails
        transform=None,  # type: ignore[arg-type]
        recipe="nncf",
        folders=FolderOptions.for_model(
            target.model, settings["transform"], settings["class_list"], settings.name("class_list")
        ),
        progress=progress,
    )
    try:
        with plan._named():
            _check_device(settings)
            plan.source = plan.open_source(settings["source"], "source", partner=settings["validation_source"])
            for key, partner in (("validation_source", plan.source), ("score_source", None), ("check_source", None)):
                spec = settings[key]  # a validation source only with accuracy control (options.read)
                if spec is not None:
                    setattr(plan, key, plan.open_source(spec, key, partner=partner))
            plan.transform = _fitted_transform(plan)
            if isinstance(plan.transform, Transform):  # a torch module is probed here, which tells its classes
                how = f"layout {plan.transform.layout}, dtype {plan.transform.dtype}"
                target.check_item(plan.source, plan.transform, how)
            if not settings["allow_class_mismatch"]:
                plan.source.check_classes(plan.model_classes, "source", plan._override)
            plan.recipe = settings["recipe"] or default_for(plan.source)
    except BaseException:
        plan.close()
        raise
    return plan


VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")


def _check_device(settings: Settings) -> None:
    """The OpenVINO device must exist here (``GPU.1``, ``AUTO:GPU,CPU`` name their devices)."""
    import openvino as ov

    device = settings["device"]
    base = device.split(":")[0].split(".")[0].upper()
    available = ov.Core().available_devices
    if base not in VIRTUAL_DEVICES and base not in {d.split(".")[0] for d in available}:
        raise settings.error("device", f"expected a device of this machine ({', '.join(available)}), got {device!r}")


def _fitted_transform(plan: CalibrationPlan) -> Transform | Callable[[np.ndarray], Any]:
    """The settings' transform fitted to the model's input (errors keyed ``transform.KEY``); an
    unstated normalisation names the model file."""
    try:
        return plan.target.transform(plan.settings["transform"])
    except PreprocessingUnstated as exc:
        if plan.model_path is not None:
            exc.what = f"model '{plan.model_path.name}'"
        raise
