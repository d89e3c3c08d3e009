"""Reading and compiling OpenVINO models with one-line errors, facts about model files, and which
backend a model object belongs to (:mod:`.backends` builds on these)."""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SynthcalibError

MODEL_SUFFIXES = (".xml", ".onnx")
PRECISIONS = ("f32", "f16", "bf16", "auto")


def is_torch(model: Any) -> bool:
    """Whether ``model`` is a ``torch.nn.Module`` (without importing torch: one can only exist once
    its caller imported torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def is_onnx(model: Any) -> bool:
    """Whether ``model`` is an ``onnx.ModelProto`` (without importing onnx)."""
    onnx = sys.modules.get("onnx")
    return onnx is not None and isinstance(model, onnx.ModelProto)


@lru_cache(maxsize=1)
def core() -> Any:
    """One shared ``openvino.Core``."""
    import openvino as ov

    return ov.Core()


def first_line(exc: BaseException) -> str:
    """The informative line of an error: OpenVINO's C++ source locations and check lines skipped."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    lines = [ln.strip().removeprefix("Caught exception: ") for ln in str(exc).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("Check", "Exception from"))]
    plain = [ln for ln in lines if "failed at src/" not in ln]
    return (plain or lines or [type(exc).__name__])[0][:200]


def check_model_path(path: str | os.PathLike[str], what: str = "model") -> Path:
    """An existing, readable .xml (with its .bin) or .onnx file, or a one-line error naming it."""
    p = Path(path)
    if not p.exists():
        raise SynthcalibError(f"{what} file '{p}' does not exist")
    if p.is_dir():
        raise SynthcalibError(f"{what} '{p}' is a directory: expected an OpenVINO IR (.xml) or ONNX (.onnx) file")
    if p.suffix.lower() not in MODEL_SUFFIXES:
        raise SynthcalibError(f"{what} file '{p}' has suffix '{p.suffix}': expected .xml (OpenVINO IR) or .onnx")
    if p.suffix.lower() == ".xml" and not p.with_suffix(".bin").exists():
        raise SynthcalibError(f"{what} file '{p}' has no weights file '{p.with_suffix('.bin').name}' beside it")
    if not os.access(p, os.R_OK):
        raise SynthcalibError(f"{what} file '{p}' is not readable")
    return p


def read_model(path: str | os.PathLike[str], what: str = "model") -> Any:
    """Read an OpenVINO IR (``.xml`` + ``.bin``) or ONNX file, or fail with one line naming it."""
    p = check_model_path(path, what)
    try:
        return core().read_model(str(p))
    except Exception as exc:  # OpenVINO raises RuntimeError with multi-line C++ traces
        raise SynthcalibError(f"cannot read {what} file '{p}': {first_line(exc)}") from None


def compile_model(model: Any, device: str = "CPU", config: dict[str, Any] | None = None, what: str = "model") -> Any:
    """Compile with a one-line error (unknown device, unsupported op...)."""
    try:
        return core().compile_model(model, device, config or {})
    except Exception as exc:
        raise SynthcalibError(f"cannot compile {what} on device '{device}': {first_line(exc)}") from None


def precision_config(precision: str | None) -> dict[str, str]:
    """OpenVINO config for an inference precision (``None``/``auto``: the device default)."""
    if precision in (None, "auto"):
        return {}
    if precision not in PRECISIONS:
        raise SynthcalibError(f"precision: expected {', '.join(PRECISIONS)}, got {precision!r}")
    return {"INFERENCE_PRECISION_HINT": precision}


def static_dims(partial_shape: Any) -> list[int | None]:
    """The dimensions of a partial shape, ``None`` where dynamic."""
    return [d.get_length() if d.is_static else None for d in partial_shape]


def parameter_count(model: Any) -> int:
    """Weights stored in a model: elements of its floating-point constants of more than one element.

    The one definition used everywhere (``synthcalib info``, generator provenance, benchmarks).
    Scalars (epsilons, scales of single ops) are not counted; batch-norm statistics are.
    """
    total = 0
    for op in model.get_ops():
        if op.get_type_name() == "Constant" and op.get_output_element_type(0).is_real():
            size = int(np.prod(static_dims(op.get_output_partial_shape(0)), dtype=np.int64))
            total += size if size > 1 else 0
    return total


def file_size(path: str | os.PathLike[str]) -> int:
    """Bytes on disk of a model file (``.xml`` counts its ``.bin`` too)."""
    p = Path(path)
    size = p.stat().st_size
    if p.suffix.lower() == ".xml" and p.with_suffix(".bin").exists():
        size += p.with_suffix(".bin").stat().st_size
    return size


def writable_copy(model: Any) -> Any:
    """A model that may be reshaped without touching the caller's (``openvino.Model.clone``)."""
    return model.clone()
