"""Quantize a model with NNCF on a calibration source: the API, quantization configs, and the run
of a :class:`~.plan.CalibrationPlan` that every front-end shares."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from . import backends, models, options, quality
from . import plan as plans
from .accuracy_control import VALIDATION_KEEP, Monitor
from .defaults import DEFAULTS
from .errors import SynthcalibError
from .files import created_dirs
from .preprocessing import record
from .recipes import ADAPTIVE_CANDIDATES, Scoring, adaptive
from .recipes import recipe as fixed_recipe
from .validation import top1_agreement, top1_vs_labels


def quantize(
    model: Any,
    source: Any,
    output: str | os.PathLike[str] | None = None,
    *,
    backend: str | None = None,
    num_samples: int = DEFAULTS["num_samples"],
    seed: int = DEFAULTS["seed"],
    transform: Any = None,
    classes: Any = None,
    class_weights: Any = None,
    class_list: Any = None,
    device: str = DEFAULTS["device"],
    batch_size: int = DEFAULTS["batch_size"],
    precision: str | None = DEFAULTS["calibration_precision"],
    accuracy_control: dict[str, Any] | None = None,
    allow_class_mismatch: bool = False,
    nncf_options: dict[str, Any] | None = None,
    recipe: str | dict[str, Any] | None = None,
    check: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Quantize ``model`` to INT8 on ``num_samples`` items of ``source`` and save it to ``output``.

    ``recipe`` picks NNCF's activation quantization parameters (see :mod:`openvino_synthcalib.recipes`): a
    name (``adaptive``, ``nncf`` or a candidate such as ``mixed_histogram``) or a mapping with ``name``,
    ``score_source``, ``score_samples``. By default synthetic sources get ``adaptive`` and real
    images NNCF's defaults. ``accuracy_control`` (``{"max_drop": 0.01, "metric": "agreement" | "labels"}``) switches to
    ``nncf.quantize_with_accuracy_control`` with a synthetic labelled validation set, drawn from
    ``source`` with another seed, or from ``accuracy_control["source"]`` when given.
    Returns a report: time, samples per class, the recipe (chosen candidate and its synthetic
    scores), model sizes, the preprocessing used and where it came from, and the data-free quality
    check (see :mod:`.quality`; ``check={"samples": 0}`` turns it off, ``check={"source": spec}``
    checks on another generator). The output is written atomically
    (an existing file is replaced only by a complete new model) and never over the input.

    Image folders (``images:DIR``) map their class folders to the model's classes by name when a
    class list is known: ``class_list`` (a file, a generator with class names or a list of names;
    a source's own ``?class_list=`` wins), else the class names of the generator the folder is
    paired with (as calibration or validation source), else the model's labels; without one, by
    sorted position (refused for a folder holding only some of the model's classes). A folder
    holding some classes is streamed over those (unless ``classes`` says otherwise). The
    ``imagenet`` preset frames folder images as torchvision's evaluation does (resize, centre crop).

    ``model`` may be an OpenVINO model or path, an ``onnx.ModelProto`` or a ``torch.nn.Module``;
    ``backend="onnx"`` reads a path with ONNX and writes an INT8 ``.onnx`` file (see
    :mod:`.backends`; a torch module is returned in the report, not saved).
    """
    given = {
        "model": model,
        "source": source,
        "output": output,
        "backend": backend,
        "num_samples": num_samples,
        "seed": seed,
        "transform": transform,
        "classes": classes,
        "class_weights": class_weights,
        "class_list": class_list,
        "device": device,
        "batch_size": batch_size,
        "precision": precision,
        "allow_class_mismatch": allow_class_mismatch,
        "accuracy_control": accuracy_control,
        "nncf_options": nncf_options,
        "recipe": recipe,
        "check": check,
    }
    settings = options.read(options.from_nested(given, "api"), "api")
    report = quantize_settings(settings)
    poor = quality.warning(report["check"], settings.name)
    if poor is not None:  # a likely poor INT8 model is never handed over silently
        import warnings

        warnings.warn(f"synthcalib.quantize: {poor}", UserWarning, stacklevel=2)
    return report


def quantize_settings(settings: options.Settings, progress: Any = None) -> dict[str, Any]:
    """Build the plan of ``settings`` (any front-end's), run it and write the output; the report."""
    with plans.build(settings, progress=progress) as plan, contextlib.ExitStack() as stack:
        out, model_path = plan.output, plan.model_path
        if out is not None:
            stack.enter_context(created_dirs(out.parent, f"{settings.name('output')} folder"))
        report = run(plan)
        if plan.accuracy_control_report is not None:  # progress, time, layers kept in FP32
            report["accuracy_control"] = plan.accuracy_control_report
        report["model"] = str(model_path) if model_path else None
        report["fp32_bytes"] = models.file_size(model_path) if model_path else None
        if out is not None:
            record(report["quantized_model"], plan.transform)  # the INT8 model says how to feed it
            backends.save(report["quantized_model"], out, plan.backend, settings.name("output"))
            report["output"] = str(out)
            report["int8_bytes"] = models.file_size(out)
    return report


def run(plan: plans.CalibrationPlan) -> dict[str, Any]:
    """Quantize ``plan``'s model with NNCF (and its recipe); the report, with ``quantized_model``."""
    import nncf

    from .dataset import Dataset  # heavy: .dataset imports nncf (Dataset subclasses nncf.Dataset)

    stream = plan.calibration_stream()
    calibration = Dataset(stream, model=plan.target)
    nncf_kwargs = plan.nncf_kwargs()
    started = time.perf_counter()
    if plan.recipe == "adaptive":
        scoring = Scoring.prepare(plan.model, plan.scoring_stream(), plan.settings["device"], plan.target)
        chosen = adaptive(
            plan.model, calibration, scoring, ADAPTIVE_CANDIDATES, nncf_kwargs, plan.settings["device"], started
        )
    else:
        chosen = fixed_recipe(plan.model, calibration, plan.recipe, **nncf_kwargs)
    accuracy = plan.accuracy
    if accuracy:
        quantized = _with_accuracy_control(plan, calibration, nncf_kwargs, chosen)
    elif chosen.model is not None:  # the adaptive recipe already quantized the chosen candidate
        quantized = chosen.model
    else:
        quantized = nncf.quantize(plan.model, calibration, **nncf_kwargs, **chosen.quantize_kwargs)
    seconds = round(time.perf_counter() - started, 2)
    return {
        "source": plan.source.spec,
        "preprocessing": describe_transform(plan.transform),
        "num_samples": len(stream),
        "seed": stream.seed,
        "samples_per_class": stream.describe()["samples_per_class"],
        "quantize_seconds": seconds,
        "recipe": chosen.describe(),
        "recipe_summary": chosen.summary(),
        "check": quality.check(plan, quantized),
        "quantized_model": quantized,
    }


def describe_transform(transform: Any) -> dict[str, Any]:
    """The preprocessing of a report: a Transform's values and where they came from (a caller's
    callable is named as such)."""
    describe = getattr(transform, "describe", None)
    if describe is not None:
        return describe()
    return {"origin": f"the caller's callable {getattr(transform, '__name__', type(transform).__name__)}"}


def _with_accuracy_control(
    plan: plans.CalibrationPlan, calibration: Any, nncf_kwargs: dict[str, Any], chosen: Any
) -> Any:
    """``nncf.quantize_with_accuracy_control`` on a labelled validation stream (another seed, or
    another source: say, real or noise calibration judged on a generator's labelled stream)."""
    import nncf

    from .dataset import Dataset  # heavy: .dataset imports nncf (Dataset subclasses nncf.Dataset)

    accuracy = plan.accuracy
    validation_stream = plan.validation_stream()
    metric = accuracy["metric"]
    if metric == "labels" and not validation_stream.source.conditional:
        source = validation_stream.source
        raise plan.error(
            "metric",
            f"'labels' needs a class-conditional source, not '{source.spec}': {source.why_unlabelled}; use the "
            f"metric 'agreement', or a {plan.settings.name('validation_source')} with labels",
        )
    # NNCF reads the validation set once per model it ranks or tries: keep the items, don't remake them
    validation = Dataset(validation_stream, with_labels=True, model=plan.target, keep=VALIDATION_KEEP)
    fn = top1_agreement(plan.model, device=plan.settings["device"]) if metric == "agreement" else top1_vs_labels
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    extra: dict[str, Any] = {}
    restorer: dict[str, Any] = {}
    if "max_num_iterations" in accuracy:
        restorer["max_num_iterations"] = accuracy["max_num_iterations"]
    if "drop_type" in accuracy:
        extra["drop_type"] = nncf.DropType(accuracy["drop_type"])
    # progress lines on stderr while NNCF works, its time by stage, the operations kept in floating point
    monitor = Monitor(
        fn,
        max_drop=accuracy["max_drop"],
        drop_type=accuracy.get("drop_type", "absolute"),
        metric="agreement" if metric == "agreement" else "top-1 vs labels",
        items=len(validation_stream),
    )
    with monitor.watching() as folder:  # NNCF writes the INT8 model it starts from there
        quantized = nncf.quantize_with_accuracy_control(
            plan.model,
            calibration,
            validation,
            monitor,
            max_drop=accuracy["max_drop"],
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                **restorer, intermediate_model_dir=folder
            ),
            **extra,
            **nncf_kwargs,
            **chosen.accuracy_control_kwargs,
        )
        monitor.finish(quantized, folder, plan.backend)
    plan.accuracy_control_report = {
        **monitor.report(),
        "validation_source": validation_stream.source.spec,
        "validation_samples": len(validation_stream),
        "validation_seed": validation_stream.seed,
        "validation_kept_in_memory": validation._items.kept is not None,
    }
    return quantized


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML/JSON quantization config: its values by settings key, checked key by key
    against the option table (errors name the file and the key). Relative paths are relative to
    the current directory, as in POT configs."""
    p = Path(path)
    if not p.is_file():
        raise SynthcalibError(f"--config '{p}' does not exist")
    try:
        text = p.read_text(encoding="utf-8")
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:
        raise SynthcalibError(
            f"--config '{p}' is not valid {p.suffix.lstrip('.').upper() or 'YAML'}: {exc}".splitlines()[0]
        ) from None
    where = f"--config '{p}': "
    if not isinstance(data, dict):
        raise SynthcalibError(f"{where}expected a mapping of keys (model, output, dataset, preprocessing, ...)")
    values = options.from_nested(data, "config", where)
    options.read(values, "config", where)  # every value checked now, before the model is read
    return values
