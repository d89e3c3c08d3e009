"""What the model being calibrated expects: its image input and its classes."""

from __future__ import annotations

from typing import Any

from .errors import SynthcalibError
from .models import static_dims

_ELEMENT_DTYPES = {"f32": "float32", "f16": "float16", "u8": "uint8", "i8": "int8", "bf16": "float32"}


def _where(model: Any) -> str:
    return getattr(model, "friendly_name", None) or "model"


def image_input(model: Any) -> Any:
    """The one image input port of a model, or a one-line error."""
    if len(model.inputs) != 1:
        names = [i.get_any_name() for i in model.inputs]
        raise SynthcalibError(f"expected a model with one image input, found {len(names)} inputs: {names}")
    return model.inputs[0]


def describe_input(model: Any) -> dict[str, Any]:
    """Layout, size, channels and dtype of an image model's input, where they can be read."""
    port = image_input(model)
    element = port.get_element_type().to_string()
    if element not in _ELEMENT_DTYPES:
        raise SynthcalibError(
            f"model input '{port.get_any_name()}' has element type {element}: expected f32, f16, bf16, u8 or i8"
        )
    return describe_dims(port.get_any_name(), static_dims(port.get_partial_shape()), _ELEMENT_DTYPES[element])


def describe_dims(name: str, dims: list[int | None], dtype: str) -> dict[str, Any]:
    """Layout, size (where static), channels and dtype of an image input ``name`` of shape ``dims``
    (``None`` where dynamic); shared by every backend (OpenVINO, ONNX)."""
    if len(dims) != 4:
        raise SynthcalibError(
            f"model input '{name}' has rank {len(dims)}: expected an image input [N, C, H, W] or [N, H, W, C]"
        )
    out: dict[str, Any] = {}
    if dims[1] in (1, 3):
        out.update(layout="NCHW", channels=dims[1], hw=dims[2:])
    elif dims[3] in (1, 3):
        out.update(layout="NHWC", channels=dims[3], hw=dims[1:3])
    else:
        raise SynthcalibError(
            f"model input '{name}' has shape {dims}: cannot tell channels (expected 1 or 3 in dim 1 or 3)"
        )
    hw = out.pop("hw")
    if None not in hw:
        out["size"] = tuple(hw)
    out["dtype"] = dtype
    return out


def check_item_shape(model: Any, shape: tuple[int, ...], dtype: str, how: str) -> None:
    """An item of ``shape`` (no batch dimension) and ``dtype`` must fit the model's input.

    ``how`` says where the item's shape came from (named in the error, e.g. the layout flag).
    """
    port = image_input(model)
    dims = static_dims(port.get_partial_shape())
    check_dims(f"model input '{port.get_any_name()}'", dims, describe_input(model)["dtype"], shape, dtype, how)


def check_dims(
    what: str, dims: list[int | None], expected_dtype: str, shape: tuple[int, ...], dtype: str, how: str
) -> None:
    """Items of ``shape`` and ``dtype`` must fit an input ``what`` of ``dims`` (``None``: dynamic; the
    batch dimension first) and ``expected_dtype``: the one input-shape rule of every backend."""
    dims = list(dims)[1:]
    if len(dims) != len(shape) or any(d is not None and d != s for d, s in zip(dims, shape)):
        want = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
        raise SynthcalibError(
            f"calibration items have shape {list(shape)} ({how}) but {what} "
            f"takes {want} per item: check the transform's layout and size, or the model"
        )
    if dtype != expected_dtype:
        raise SynthcalibError(f"calibration items are {dtype} ({how}) but {what} is {expected_dtype}")


def classes_of_output(dims: list[int | None]) -> int | None:
    """The class count of a classifier output of ``dims`` ([N, K] or [N, K, 1, 1], K > 1), else None:
    the one class-count rule of every backend."""
    if len(dims) >= 2 and dims[1] is not None and dims[1] > 1 and all(d == 1 for d in dims[2:]):
        return dims[1]
    return None


def classifier_classes(model: Any) -> int | None:
    """Number of classes of a classifier with one output [N, K] (or [N, K, 1, 1]), else None."""
    if len(model.outputs) != 1:
        return None
    return classes_of_output(static_dims(model.outputs[0].get_partial_shape()))


def check_same_input(model: Any, reference: Any, what: str) -> None:
    """``reference`` must accept the inputs prepared for ``model`` (same rank, type, static dims)."""
    a, b = image_input(model), image_input(reference)
    da, db = static_dims(a.get_partial_shape()), static_dims(b.get_partial_shape())
    same_type = a.get_element_type() == b.get_element_type()
    compatible = len(da) == len(db) and all(x is None or y is None or x == y for x, y in zip(da[1:], db[1:]))
    if not (same_type and compatible):
        raise SynthcalibError(
            f"{what} takes input {b.get_element_type().to_string()}{b.get_partial_shape()} but the model takes "
            f"{a.get_element_type().to_string()}{a.get_partial_shape()}: expected the same input"
        )
    ca, cb = classifier_classes(model), classifier_classes(reference)
    if ca is not None and cb is not None and ca != cb:
        raise SynthcalibError(f"{what} outputs {cb} classes but the model outputs {ca}")
