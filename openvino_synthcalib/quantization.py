"""Quantize a model with NNCF on a calibration source; quantization configs."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from . import backends, models
from .defaults import DEFAULTS
from .errors import SynthcalibError
from .files import created_dirs, same_file
from .sources.base import parse_spec
from .transforms import TRANSFORM_KEYS

# nncf.quantize parameters a config may set, with how to check them.
NNCF_KEYS = ("preset", "subset_size", "fast_bias_correction", "model_type", "target_device", "ignored_scope")
DATASET_KEYS = (
    "source",
    "num_samples",
    "seed",
    "classes",
    "class_weights",
    "class_list",
    "batch_size",
    "device",
    "precision",
)
ACCURACY_KEYS = ("max_drop", "metric", "source", "num_samples", "seed", "drop_type", "max_num_iterations")
RECIPE_KEYS = ("name", "score_source", "score_samples", "score_latent_scale")
CONFIG_KEYS = (
    "model",
    "output",
    "dataset",
    "preprocessing",
    "accuracy_control",
    "allow_class_mismatch",
    "recipe",
    *NNCF_KEYS,
)
METRICS = ("agreement", "labels")
DROP_TYPES = ("absolute", "relative")


def _nncf_options(options: dict[str, Any], where: str) -> dict[str, Any]:
    """Map config values to ``nncf.quantize`` keyword arguments, naming the bad key."""
    import nncf

    out: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if key == "preset":
            try:
                out[key] = nncf.QuantizationPreset(str(value).lower())
            except ValueError:
                raise SynthcalibError(f"{where}preset: expected performance or mixed, got {value!r}") from None
        elif key == "subset_size":
            out[key] = _integer(value, f"{where}subset_size", 1)
        elif key == "fast_bias_correction":
            if not isinstance(value, bool):
                raise SynthcalibError(f"{where}fast_bias_correction: expected true or false, got {value!r}")
            out[key] = value
        elif key == "model_type":
            try:
                out[key] = nncf.ModelType(str(value).lower())
            except ValueError:
                raise SynthcalibError(f"{where}model_type: expected transformer or null, got {value!r}") from None
        elif key == "target_device":
            try:
                out[key] = nncf.TargetDevice(str(value).upper())
            except ValueError:
                names = ", ".join(d.value for d in nncf.TargetDevice)
                raise SynthcalibError(f"{where}target_device: expected one of {names}, got {value!r}") from None
        elif key == "ignored_scope":
            if not isinstance(value, dict) or set(value) - {"names", "patterns", "types", "validate"}:
                raise SynthcalibError(
                    f"{where}ignored_scope: expected a mapping with names, patterns, types, validate; got {value!r}"
                )
            out[key] = nncf.IgnoredScope(**value)
        else:
            raise SynthcalibError(f"{where}{key}: not an nncf.quantize option ({', '.join(NNCF_KEYS)})")
    return out


def _integer(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SynthcalibError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


def check_accuracy_control(options: dict[str, Any], where: str = "accuracy_control") -> dict[str, Any]:
    """Validate accuracy-control options (every key named in its error); returns them with defaults."""
    if not isinstance(options, dict):
        raise SynthcalibError(f"{where}: expected a mapping of {', '.join(ACCURACY_KEYS)}, got {options!r}")
    unknown = sorted(set(options) - set(ACCURACY_KEYS))
    if unknown:
        raise SynthcalibError(f"{where}: unknown key(s) {', '.join(unknown)}; expected {', '.join(ACCURACY_KEYS)}")
    out = {"max_drop": 0.01, "metric": "agreement", **options}
    drop = out["max_drop"]
    if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not math.isfinite(drop) or not 0 <= drop <= 1:
        raise SynthcalibError(f"{where}.max_drop: expected a number in [0, 1] (e.g. 0.01 = 1%), got {drop!r}")
    out["max_drop"] = float(drop)
    if out["metric"] not in METRICS:
        raise SynthcalibError(f"{where}.metric: expected one of {', '.join(METRICS)}, got {out['metric']!r}")
    if "drop_type" in out and str(out["drop_type"]).lower() not in DROP_TYPES:
        raise SynthcalibError(f"{where}.drop_type: expected absolute or relative, got {out['drop_type']!r}")
    for key, minimum in (("num_samples", 1), ("seed", 0), ("max_num_iterations", 1)):
        if key in out and out[key] is not None:
            _integer(out[key], f"{where}.{key}", minimum)
    if "source" in out and not isinstance(out["source"], str):
        raise SynthcalibError(f"{where}.source: expected a source spec string, got {out['source']!r}")
    return out


def check_recipe(options: Any, where: str = "recipe") -> dict[str, Any]:
    """Recipe options from a name or a mapping (``name``, ``score_source``, ``score_samples``,
    ``score_latent_scale``)."""
    from .recipes import check_latent_scale, check_name

    if options is None:
        return {}
    if isinstance(options, str):
        options = {"name": options}
    if not isinstance(options, dict):
        raise SynthcalibError(f"{where}: expected a recipe name or a mapping of {', '.join(RECIPE_KEYS)}")
    unknown = sorted(set(options) - set(RECIPE_KEYS))
    if unknown:
        raise SynthcalibError(f"{where}: unknown key(s) {', '.join(unknown)}; expected {', '.join(RECIPE_KEYS)}")
    out = dict(options)
    if out.get("name") is not None:
        out["name"] = check_name(out["name"], f"{where}.name" if where != "recipe" else where)
    if out.get("score_samples") is not None:
        _integer(out["score_samples"], f"{where}.score_samples", 1)
    if out.get("score_latent_scale") is not None:
        out["score_latent_scale"] = check_latent_scale(out["score_latent_scale"], f"{where}.score_latent_scale")
    if out.get("score_source") is not None and not isinstance(out["score_source"], str):
        raise SynthcalibError(f"{where}.score_source: expected a source spec string, got {out['score_source']!r}")
    return out


def check_output(output: str | os.PathLike[str], model_path: Path | None, suffix: str | None = ".xml") -> Path:
    """An output path ending in ``suffix`` (``.xml``; ``.onnx`` for ONNX) that is not the input model
    (nor shares its weights file)."""
    out = Path(output)
    if suffix is None:  # a torch module
        raise SynthcalibError(f"--out '{out}': a quantized PyTorch module is returned, not saved; leave out the output")
    if out.suffix.lower() != suffix:
        raise SynthcalibError(f"--out '{out}': expected a path ending in {suffix}")
    if out.is_dir():
        raise SynthcalibError(f"--out '{out}' is a folder: expected an {suffix} file path")
    if model_path is not None:
        inputs = [model_path] + ([model_path.with_suffix(".bin")] if model_path.suffix.lower() == ".xml" else [])
        for produced in (out, out.with_suffix(".bin")):
            for given in inputs:
                if same_file(produced, given):
                    raise SynthcalibError(
                        f"--out '{out}' would overwrite the input model '{model_path}': choose another output path"
                    )
    return out


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
) -> dict[str, Any]:
    """Quantize ``model`` to INT8 on ``num_samples`` items of ``source`` and save it to ``output``.

    ``recipe`` picks NNCF's activation quantization parameters (see :mod:`openvino_synthcalib.recipes`): a
    name (``adaptive``, ``nncf`` or a candidate such as ``mixed_histogram``) or a mapping with ``name``,
    ``score_source``, ``score_samples``. By default synthetic sources get ``adaptive`` and real
    images NNCF's defaults. ``accuracy_control`` (``{"max_drop": 0.01, "metric": "agreement" | "labels"}``) switches to
    ``nncf.quantize_with_accuracy_control`` with a synthetic labelled validation set, drawn from
    ``source`` with another seed, or from ``accuracy_control["source"]`` when given.
    Returns a report: time, samples per class, the recipe (chosen candidate and its synthetic
    scores), model sizes. The output is written atomically
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
    model, model_path, backend = backends.load(model, backend)
    out_path = check_output(output, model_path, backends.OUTPUT_SUFFIX[backend]) if output is not None else None
    nncf_kwargs = _nncf_options(dict(nncf_options or {}), "")
    accuracy = check_accuracy_control(accuracy_control) if accuracy_control else None
    recipe_options = check_recipe(recipe)
    if accuracy:
        backends.check_accuracy_control(backend)
    with contextlib.ExitStack() as stack:
        if out_path is not None:
            stack.enter_context(created_dirs(out_path.parent, "--out folder"))
        report = _quantize(
            model,
            source,
            stack,
            num_samples=num_samples,
            seed=seed,
            transform=transform,
            classes=classes,
            class_weights=class_weights,
            class_list=class_list,
            device=device,
            batch_size=batch_size,
            precision=precision,
            accuracy=accuracy,
            allow_class_mismatch=allow_class_mismatch,
            nncf_kwargs=nncf_kwargs,
            recipe_options=recipe_options,
        )
        report["model"] = str(model_path) if model_path else None
        report["fp32_bytes"] = models.file_size(model_path) if model_path else None
        if out_path is not None:
            backends.save(report["quantized_model"], out_path, backend)
            report["output"] = str(out_path)
            report["int8_bytes"] = models.file_size(out_path)
    return report


def _quantize(
    model: Any,
    source: Any,
    stack: contextlib.ExitStack,
    *,
    num_samples: int,
    seed: int,
    transform: Any,
    classes: Any,
    class_weights: Any,
    class_list: Any,
    device: str,
    batch_size: int,
    precision: str | None,
    accuracy: dict[str, Any] | None,
    allow_class_mismatch: bool,
    nncf_kwargs: dict[str, Any],
    recipe_options: dict[str, Any],
) -> dict[str, Any]:
    """The NNCF call; every stream it opens is closed by ``stack`` whatever happens."""
    import nncf

    from .dataset import Dataset
    from .recipes import default_for
    from .recipes import recipe as choose_recipe
    from .stream import make_stream

    stream_options = {
        "model": model,
        "class_weights": class_weights,
        "device": device,
        "batch_size": batch_size,
        "precision": precision,
    }
    folders = _folder_options(model, transform, class_list)
    validation_spec = accuracy.get("source") if accuracy else None
    calibration_source = _open_folder(source, folders, validation_spec, stack)
    stream = stack.enter_context(
        make_stream(
            calibration_source,
            num_samples,
            transform=transform,
            seed=seed,
            classes=classes,
            **stream_options,
        )
    )
    model_classes = backends.model_classes(model, stream)
    src = stream.source
    if not allow_class_mismatch:
        src.check_classes(model_classes, "source")
    calibration = Dataset(stream, model=model)
    nncf_kwargs.setdefault("subset_size", len(calibration))
    started = time.perf_counter()
    chosen = choose_recipe(
        model,
        calibration,
        recipe_options.get("name") or default_for(src),
        score_source=recipe_options.get("score_source"),
        score_samples=recipe_options.get("score_samples") or DEFAULTS["recipe_score_samples"],
        score_latent_scale=recipe_options.get("score_latent_scale") or DEFAULTS["recipe_score_latent_scale"],
        device=device,
        precision=precision,
        **nncf_kwargs,
    )
    if accuracy:
        # The validation set may come from another source than calibration (say, real or noise
        # calibration judged on a generator's labelled stream); by default it is the same source.
        validation_source = _open_folder(accuracy.get("source", src), folders, src, stack)
        validation_stream = stack.enter_context(
            make_stream(
                validation_source,
                int(accuracy.get("num_samples", num_samples)),
                transform=stream.transform,
                seed=int(accuracy.get("seed", seed + 1)),
                classes=classes,
                **stream_options,
            )
        )
        val_src = validation_stream.source
        metric = accuracy["metric"]
        if metric == "labels" and not val_src.conditional:
            raise SynthcalibError(
                f"accuracy_control.metric 'labels' needs a class-conditional source, not '{val_src.spec}'"
            )
        if val_src is not src and not allow_class_mismatch:
            val_src.check_classes(model_classes, "accuracy_control.source")
        from .validation import top1_agreement, top1_vs_labels

        validation = Dataset(validation_stream, with_labels=True, model=model)
        fn = top1_agreement(model, device=device) if metric == "agreement" else top1_vs_labels
        extra: dict[str, Any] = {}
        if "max_num_iterations" in accuracy:
            from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

            extra["advanced_accuracy_restorer_parameters"] = AdvancedAccuracyRestorerParameters(
                max_num_iterations=int(accuracy["max_num_iterations"])
            )
        if "drop_type" in accuracy:
            extra["drop_type"] = nncf.DropType(str(accuracy["drop_type"]).lower())
        quantized = nncf.quantize_with_accuracy_control(
            model,
            calibration,
            validation,
            fn,
            max_drop=accuracy["max_drop"],
            **extra,
            **nncf_kwargs,
            **chosen.accuracy_control_kwargs,
        )
    elif chosen.model is not None:  # the adaptive recipe already quantized the chosen candidate
        quantized = chosen.model
    else:
        quantized = nncf.quantize(model, calibration, **nncf_kwargs, **chosen.quantize_kwargs)
    return {
        "source": src.spec,
        "num_samples": len(stream),
        "seed": stream.seed,
        "samples_per_class": stream.describe()["samples_per_class"],
        "quantize_seconds": round(time.perf_counter() - started, 2),
        "recipe": chosen.describe(),
        "recipe_summary": chosen.summary(),
        "quantized_model": quantized,
    }


def _folder_options(model: Any, transform: Any, class_list: Any) -> Any:
    """How this run reads image folders: the user's class list, the model's labels, the preset's framing."""
    from .defaults import preset_framing
    from .imagefolder import ClassList, model_class_list
    from .sources.images import FolderOptions

    framing = preset_framing(transform)
    explicit = ClassList.load(class_list, "--class-list") if class_list is not None else None
    labels = model_class_list(model) if hasattr(model, "get_rt_info") else None
    return FolderOptions(explicit, labels, framing.get("crop"), framing.get("crop_fraction"))


def _open_folder(source: Any, folders: Any, partner: Any, stack: contextlib.ExitStack) -> Any:
    """An image-folder spec opened with this run's folder options, paired with the class names of
    ``partner`` (the other stream's source or spec) when that is a generator; anything else as is."""
    from .imagefolder import ClassList, generator_class_list
    from .sources.base import Source
    from .sources.images import is_folder_spec, open_source

    if not is_folder_spec(source):
        return source
    paired = folders.paired
    if isinstance(partner, Source) and partner.scheme == "generator" and partner.class_names:
        paired = ClassList.from_names(
            partner.class_names,
            f"the class names of generator '{partner.spec}'",
            explicit=False,
            ids=getattr(partner, "class_ids", None),
        )
    elif isinstance(partner, str):
        try:
            if parse_spec(partner)[0] in ("generator", "") and not is_folder_spec(partner):
                paired = generator_class_list(partner, "accuracy_control.source", explicit=False)
        except Exception:
            pass  # not a generator, or one without class names: its own stream reports its problems
    opened = open_source(source, folders.with_paired(paired))
    stack.callback(opened.close)
    return opened


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a YAML/JSON quantization config; every key is checked for its type.

    Relative paths are relative to the current directory, as in POT configs.
    """
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
        raise SynthcalibError(f"{where}expected a mapping of keys ({', '.join(CONFIG_KEYS)})")
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise SynthcalibError(f"{where}unknown key(s) {', '.join(unknown)}; expected {', '.join(CONFIG_KEYS)}")
    for key in ("model", "output"):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            raise SynthcalibError(f"{where}{key} must be a path string")
    if "allow_class_mismatch" in data and not isinstance(data["allow_class_mismatch"], bool):
        raise SynthcalibError(f"{where}allow_class_mismatch: expected true or false")
    dataset = data.get("dataset")
    if dataset is None:
        raise SynthcalibError(f"{where}missing key 'dataset' (a source spec such as generator:PATH)")
    if isinstance(dataset, str):
        dataset = {"source": dataset}
    if not isinstance(dataset, dict) or "source" not in dataset:
        raise SynthcalibError(f"{where}dataset must be a source spec or a mapping with 'source'")
    unknown = sorted(set(dataset) - set(DATASET_KEYS))
    if unknown:
        raise SynthcalibError(f"{where}unknown dataset key(s) {', '.join(unknown)}; expected {', '.join(DATASET_KEYS)}")
    _check_dataset(dataset, where)
    data["dataset"] = dataset
    pre = data.get("preprocessing") or {}
    if not isinstance(pre, dict):
        raise SynthcalibError(f"{where}preprocessing must be a mapping")
    unknown = sorted(set(pre) - set(TRANSFORM_KEYS))
    if unknown:
        raise SynthcalibError(
            f"{where}unknown preprocessing key(s) {', '.join(unknown)}; expected {', '.join(TRANSFORM_KEYS)}"
        )
    data["preprocessing"] = pre
    if data.get("recipe") is not None:
        try:
            data["recipe"] = check_recipe(data["recipe"])
        except SynthcalibError as exc:
            raise SynthcalibError(f"{where}{exc}") from None
    if data.get("accuracy_control") is not None:
        try:
            data["accuracy_control"] = check_accuracy_control(data["accuracy_control"])
        except SynthcalibError as exc:
            raise SynthcalibError(f"{where}{exc}") from None
    _nncf_options({k: data[k] for k in NNCF_KEYS if k in data}, where)
    return data


def _check_dataset(dataset: dict[str, Any], where: str) -> None:
    parse_spec(dataset["source"])
    for key, minimum in (("num_samples", 1), ("seed", 0), ("batch_size", 1)):
        if dataset.get(key) is not None:
            _integer(dataset[key], f"{where}dataset.{key}", minimum)
    if dataset.get("device") is not None and not isinstance(dataset["device"], str):
        raise SynthcalibError(f"{where}dataset.device: expected a device name such as CPU, got {dataset['device']!r}")
    if dataset.get("precision") is not None:
        try:
            models.precision_config(dataset["precision"])
        except SynthcalibError as exc:
            raise SynthcalibError(f"{where}dataset.{exc}") from None
    if dataset.get("class_list") is not None and not isinstance(dataset["class_list"], (str, list)):
        raise SynthcalibError(
            f"{where}dataset.class_list: expected a class-list file or a list of names, got {dataset['class_list']!r}"
        )
    for key in ("classes", "class_weights"):
        value = dataset.get(key)
        if value is not None and not isinstance(value, (list, str, int)):
            raise SynthcalibError(f"{where}dataset.{key}: expected a list, got {value!r}")
