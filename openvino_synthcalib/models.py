"""Reading models with clear errors, and what can be learnt from their inputs and outputs."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SynthcalibError

MODEL_SUFFIXES = (".xml", ".onnx")

_ELEMENT_DTYPES = {"f32": "float32", "f16": "float16", "u8": "uint8", "i8": "int8", "bf16": "float32"}


@lru_cache(maxsize=1)
def core() -> Any:
    """One shared ``openvino.Core``."""
    import openvino as ov

    return ov.Core()


def _first_line(exc: BaseException) -> str:
    for line in str(exc).splitlines():
        line = line.strip()
        if line and not line.startswith(("Check", "Exception from")):
            return line[:200]
    return type(exc).__name__


def read_model(path: str | os.PathLike[str], what: str = "model") -> Any:
    """Read an OpenVINO IR (``.xml`` + ``.bin``) or ONNX file, or fail with one line naming it."""
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
    try:
        return core().read_model(str(p))
    except Exception as exc:  # OpenVINO raises RuntimeError with multi-line C++ traces
        raise SynthcalibError(f"cannot read {what} file '{p}': {_first_line(exc)}") from None


def compile_model(model: Any, device: str = "CPU", config: dict[str, Any] | None = None, what: str = "model") -> Any:
    """Compile with a one-line error (unknown device, unsupported op...)."""
    try:
        return core().compile_model(model, device, config or {})
    except Exception as exc:
        raise SynthcalibError(f"cannot compile {what} on device '{device}': {_first_line(exc)}") from None


def precision_config(precision: str | None) -> dict[str, str]:
    """OpenVINO config for an inference precision (``None``/``auto``: the device default)."""
    if precision in (None, "auto"):
        return {}
    if precision not in ("f32", "f16", "bf16"):
        raise SynthcalibError(f"precision: expected f32, f16, bf16 or auto, got {precision!r}")
    return {"INFERENCE_PRECISION_HINT": precision}


def static_dims(partial_shape: Any) -> list[int | None]:
    return [d.get_length() if d.is_static else None for d in partial_shape]


def describe_input(model: Any) -> dict[str, Any]:
    """Layout, size, channels and dtype of an image model's first input, where they can be read."""
    if len(model.inputs) != 1:
        names = [i.get_any_name() for i in model.inputs]
        raise SynthcalibError(f"expected a model with one image input, found {len(names)} inputs: {names}")
    port = model.inputs[0]
    dims = static_dims(port.get_partial_shape())
    if len(dims) != 4:
        raise SynthcalibError(
            f"model input '{port.get_any_name()}' has rank {len(dims)}: expected an image input [N, C, H, W] or [N, H, W, C]"
        )
    out: dict[str, Any] = {}
    if dims[1] in (1, 3):
        out.update(layout="NCHW", channels=dims[1], hw=dims[2:])
    elif dims[3] in (1, 3):
        out.update(layout="NHWC", channels=dims[3], hw=dims[1:3])
    else:
        raise SynthcalibError(
            f"model input '{port.get_any_name()}' has shape {dims}: cannot tell channels (expected 1 or 3 in dim 1 or 3)"
        )
    hw = out.pop("hw")
    if None not in hw:
        out["size"] = tuple(hw)
    out["dtype"] = _ELEMENT_DTYPES.get(port.get_element_type().to_string(), "float32")
    return out


def classifier_classes(model: Any) -> int | None:
    """Number of classes of a classifier with one output [N, K] (or [N, K, 1, 1]), else None."""
    if len(model.outputs) != 1:
        return None
    dims = static_dims(model.outputs[0].get_partial_shape())
    if len(dims) >= 2 and dims[1] is not None and all(d == 1 for d in dims[2:]):
        return dims[1] if dims[1] > 1 else None
    return None


def parameter_count(model: Any) -> int:
    """Number of weights in a model's constants (floating-point ones)."""
    total = 0
    for op in model.get_ops():
        if op.get_type_name() == "Constant" and op.get_output_element_type(0).is_real():
            total += int(np.prod(static_dims(op.get_output_partial_shape(0)) or [1]))
    return total


def file_size(path: str | os.PathLike[str]) -> int:
    """Bytes on disk of a model file (``.xml`` counts its ``.bin`` too)."""
    p = Path(path)
    size = p.stat().st_size
    if p.suffix.lower() == ".xml" and p.with_suffix(".bin").exists():
        size += p.with_suffix(".bin").stat().st_size
    return size


def run_ordered(compiled: Any, inputs: Iterable[Any], num_requests: int, read: Callable[[Any], Any]) -> Iterator[Any]:
    """Infer ``inputs`` with an AsyncInferQueue and yield ``read(request)`` in submission order,
    with at most ``num_requests`` requests in flight (``0``: the device's optimal number)."""
    import openvino as ov

    if num_requests <= 0:
        num_requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    num_requests = max(1, num_requests)
    queue = ov.AsyncInferQueue(compiled, num_requests)
    results: dict[int, Any] = {}
    done = threading.Condition()

    def on_done(request: Any, job: int) -> None:
        try:
            out = read(request)
        except Exception as exc:  # surfaced in the consumer thread
            out = exc
        with done:
            results[job] = out
            done.notify_all()

    queue.set_callback(on_done)
    source = iter(inputs)
    submitted = delivered = 0
    exhausted = False
    try:
        while True:
            while not exhausted and submitted - delivered < num_requests:
                try:
                    item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                queue.start_async(item, submitted)
                submitted += 1
            if delivered == submitted:
                return
            with done:
                done.wait_for(lambda job=delivered: job in results)
                out = results.pop(delivered)
            if isinstance(out, Exception):
                raise out
            yield out
            delivered += 1
    finally:
        queue.wait_all()
