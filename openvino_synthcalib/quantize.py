"""Quantize a model with NNCF on a calibration source; quantization configs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from . import models
from .defaults import DEFAULTS
from .errors import SynthcalibError
from .sources.base import parse_spec
from .transforms import TRANSFORM_KEYS

# nncf.quantize parameters a config may set, with how to check them.
NNCF_KEYS = ("preset", "subset_size", "fast_bias_correction", "model_type", "target_device", "ignored_scope")
DATASET_KEYS = ("source", "num_samples", "seed", "classes", "class_weights", "batch_size", "device", "precision")
ACCURACY_KEYS = ("max_drop", "metric", "source", "num_samples", "seed", "drop_type", "max_num_iterations")
CONFIG_KEYS = ("model", "output", "dataset", "preprocessing", "accuracy_control", "allow_class_mismatch", *NNCF_KEYS)
METRICS = ("agreement", "labels")


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
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise SynthcalibError(f"{where}subset_size: expected a positive integer, got {value!r}")
            out[key] = value
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


def _check_classes(src: Any, model_classes: int | None, what: str) -> None:
    """A class-conditional source must have the classifier's class count."""
    if src.conditional and model_classes is not None and src.num_classes != model_classes:
        raise SynthcalibError(
            f"{what} '{src.spec}' has {src.num_classes} classes but the model outputs {model_classes}: "
            "use a source for this model's classes, or pass --allow-class-mismatch"
        )


def quantize(
    model: Any,
    source: Any,
    output: str | os.PathLike[str] | None = None,
    *,
    num_samples: int = DEFAULTS["num_samples"],
    seed: int = DEFAULTS["seed"],
    transform: Any = None,
    classes: Any = None,
    class_weights: Any = None,
    device: str = DEFAULTS["device"],
    batch_size: int = DEFAULTS["batch_size"],
    precision: str | None = DEFAULTS["precision"],
    accuracy_control: dict[str, Any] | None = None,
    allow_class_mismatch: bool = False,
    nncf_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Quantize ``model`` to INT8 on ``num_samples`` items of ``source`` and save it to ``output``.

    ``accuracy_control`` (``{"max_drop": 0.01, "metric": "agreement" | "labels"}``) switches to
    ``nncf.quantize_with_accuracy_control`` with a synthetic labelled validation set, drawn from
    ``source`` with another seed, or from ``accuracy_control["source"]`` when given.
    Returns a report: time, samples per class, model sizes.
    """
    import nncf
    import openvino as ov

    from .dataset import Dataset
    from .stream import make_stream

    model_path = None
    if not hasattr(model, "inputs"):
        model_path = Path(model)
        model = models.read_model(model, "model")
    out_path = None
    if output is not None:
        out_path = Path(output)
        if out_path.suffix.lower() != ".xml":
            raise SynthcalibError(f"--out '{out_path}': expected a path ending in .xml")
        from .imageio import ensure_dir

        ensure_dir(out_path.parent or Path("."), "--out folder")
    nncf_kwargs = _nncf_options(dict(nncf_options or {}), "")
    stream = make_stream(
        source,
        num_samples,
        model=model,
        transform=transform,
        seed=seed,
        classes=classes,
        class_weights=class_weights,
        device=device,
        batch_size=batch_size,
        precision=precision,
    )
    model_classes = models.classifier_classes(model)
    src = stream.source
    if not allow_class_mismatch:
        _check_classes(src, model_classes, "source")
    calibration = Dataset(stream)
    nncf_kwargs.setdefault("subset_size", len(calibration))
    started = time.perf_counter()
    if accuracy_control:
        unknown = set(accuracy_control) - set(ACCURACY_KEYS)
        if unknown:
            raise SynthcalibError(
                f"accuracy_control: unknown key(s) {sorted(unknown)}; expected {', '.join(ACCURACY_KEYS)}"
            )
        metric = accuracy_control.get("metric", "agreement")
        if metric not in METRICS:
            raise SynthcalibError(f"accuracy_control.metric: expected one of {', '.join(METRICS)}, got {metric!r}")
        # The validation set may come from another source than calibration (say, real or noise
        # calibration judged on a generator's labelled stream); by default it is the same source.
        validation_stream = make_stream(
            accuracy_control.get("source", src),
            int(accuracy_control.get("num_samples", num_samples)),
            model=model,
            transform=stream.transform,
            seed=int(accuracy_control.get("seed", seed + 1)),
            classes=classes,
            class_weights=class_weights,
            device=device,
            batch_size=batch_size,
            precision=precision,
        )
        val_src = validation_stream.source
        if metric == "labels" and not val_src.conditional:
            raise SynthcalibError(
                f"accuracy_control.metric 'labels' needs a class-conditional source, not '{val_src.spec}'"
            )
        if val_src is not src and not allow_class_mismatch:
            _check_classes(val_src, model_classes, "accuracy_control.source")
        from .validation import top1_agreement, top1_vs_labels

        validation = Dataset(validation_stream, with_labels=True)
        fn = top1_agreement(model, device=device) if metric == "agreement" else top1_vs_labels
        extra: dict[str, Any] = {}
        if "max_num_iterations" in accuracy_control:
            from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

            extra["advanced_accuracy_restorer_parameters"] = AdvancedAccuracyRestorerParameters(
                max_num_iterations=int(accuracy_control["max_num_iterations"])
            )
        if "drop_type" in accuracy_control:
            extra["drop_type"] = nncf.DropType(accuracy_control["drop_type"])
        quantized = nncf.quantize_with_accuracy_control(
            model,
            calibration,
            validation,
            fn,
            max_drop=float(accuracy_control.get("max_drop", 0.01)),
            **extra,
            **nncf_kwargs,
        )
        if val_src is not src:
            val_src.close()
    else:
        quantized = nncf.quantize(model, calibration, **nncf_kwargs)
    elapsed = time.perf_counter() - started
    report: dict[str, Any] = {
        "model": str(model_path) if model_path else None,
        "source": src.spec,
        "num_samples": len(stream),
        "seed": stream.seed,
        "samples_per_class": stream.describe()["samples_per_class"],
        "quantize_seconds": round(elapsed, 2),
        "fp32_bytes": models.file_size(model_path) if model_path else None,
    }
    if out_path is not None:
        ov.save_model(quantized, str(out_path), compress_to_fp16=False)
        report["output"] = str(out_path)
        report["int8_bytes"] = models.file_size(out_path)
    report["quantized_model"] = quantized
    src.close()
    return report


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a YAML/JSON quantization config.

    Relative paths are relative to the current directory, as in POT configs.
    """
    p = Path(path)
    if not p.is_file():
        raise SynthcalibError(f"--config '{p}' does not exist")
    text = p.read_text()
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:
        raise SynthcalibError(
            f"--config '{p}' is not valid {p.suffix.lstrip('.').upper() or 'YAML'}: {exc}".splitlines()[0]
        ) from None
    if not isinstance(data, dict):
        raise SynthcalibError(f"--config '{p}': expected a mapping of keys ({', '.join(CONFIG_KEYS)})")
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise SynthcalibError(f"--config '{p}': unknown key(s) {', '.join(unknown)}; expected {', '.join(CONFIG_KEYS)}")
    for key in ("model", "output"):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            raise SynthcalibError(f"--config '{p}': {key} must be a path string")
    dataset = data.get("dataset")
    if dataset is None:
        raise SynthcalibError(f"--config '{p}': missing key 'dataset' (a source spec such as generator:PATH)")
    if isinstance(dataset, str):
        dataset = {"source": dataset}
    if not isinstance(dataset, dict) or "source" not in dataset:
        raise SynthcalibError(f"--config '{p}': dataset must be a source spec or a mapping with 'source'")
    unknown = sorted(set(dataset) - set(DATASET_KEYS))
    if unknown:
        raise SynthcalibError(
            f"--config '{p}': unknown dataset key(s) {', '.join(unknown)}; expected {', '.join(DATASET_KEYS)}"
        )
    parse_spec(dataset["source"])
    data["dataset"] = dataset
    pre = data.get("preprocessing") or {}
    if not isinstance(pre, dict):
        raise SynthcalibError(f"--config '{p}': preprocessing must be a mapping")
    unknown = sorted(set(pre) - set(TRANSFORM_KEYS))
    if unknown:
        raise SynthcalibError(
            f"--config '{p}': unknown preprocessing key(s) {', '.join(unknown)}; expected {', '.join(TRANSFORM_KEYS)}"
        )
    data["preprocessing"] = pre
    _nncf_options({k: data[k] for k in NNCF_KEYS if k in data}, f"--config '{p}': ")
    return data
