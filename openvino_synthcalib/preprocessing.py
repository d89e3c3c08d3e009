"""What a model says about its own input normalisation, and the rule that none is ever guessed.

A classifier's INT8 model is only as good as the calibration items look like what it sees in
use: the same images under another normalisation (CIFAR-10's mean/std on a [-1, 1] model) give
a model that flips a quarter of its predictions, silently. So the normalisation (a preset, or
``input_range``/``mean``/``std``) comes from the user or from the model itself, never from a
default. :func:`declared` reads what a model states:

- an OpenVINO model's rt_info: ``synthcalib/preprocessing`` (what this package records in the
  models it saves), ``model_info`` (OpenVINO Model API: ``mean_values``, ``scale_values`` on
  pixels in [0, 255], ``reverse_input_channels``, ``embedded_processing``), and
  ``conversion_parameters`` (Model Optimizer, which folded ``mean_values``/``scale_values`` into
  the graph, so the IR takes pixels);
- an ONNX model's ``metadata_props``: ``synthcalib preprocessing`` and the Model API's
  ``model_info <key>`` entries;
- a PyTorch module's ``pretrained_cfg`` (timm; ``default_cfg`` in older versions), or the image
  processor config that ships with a Hugging Face model (``preprocessor_config.json`` in its
  local folder or cache).

:func:`resolve` merges it with what the user stated (the user wins) and raises
:class:`PreprocessingUnstated` when neither says anything; a model whose input is ``uint8``
states pixels in [0, 255] by its type.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import Namer, SynthcalibError
from .models import is_onnx, is_torch
from .plugins import presets

#: The transform keys that say how values are normalised; a user stating any of them states it.
NORMALISATION_KEYS = ("preset", "input_range", "mean", "std")
#: Where :func:`record` stores the preprocessing in the models this package saves.
RT_INFO_PATH = ("synthcalib", "preprocessing")
ONNX_KEY = "synthcalib preprocessing"


class PreprocessingUnstated(SynthcalibError):
    """Neither the user nor the model says how the model's inputs are normalised. Its key is the
    preset option (``preset``; ``transform.preset`` once raised through the ``transform`` option),
    and its message names that option and the value options beside it (``mean``, ``std``,
    ``input_range``) as the front-end that shows it does: ``--preset``, ``preprocessing.preset``,
    ``transform['preset']``. ``what`` names the model."""

    def __init__(self, what: str = "the model", int8: bool = False) -> None:
        self.what, self.int8 = what, int8
        super().__init__(self._text, key="preset")

    def _text(self, name: Namer) -> str:
        option = self.key.rpartition(".")[0] if self.key else ""
        preset = name(self.key or "preset")
        names = [name(f"{option}.{k}" if option else k) for k in ("mean", "std", "input_range")]
        if names == ["mean", "std", "input_range"]:  # named by bare key: a front-end without them (the page)
            return unstated_message(self.what, preset, "").removesuffix(" or ")
        values = "/".join(names)
        if self.int8:
            return f"{self.what}'s input is int8 and nothing states its value range: state {values} or {preset}"
        return unstated_message(self.what, preset, values)


def preset_help() -> str:
    """``name ([-1, 1])`` for every preset, for messages and help texts."""
    return ", ".join(f"{name} ({describe_values(values)})" for name, values in sorted(presets().items()))


def describe_values(values: Mapping[str, Any]) -> str:
    """A short human reading of normalisation values: ``[-1, 1]``, ``mean/std (0.485, ...)``."""
    lo, hi = (float(v) for v in values.get("input_range") or (0.0, 1.0))
    mean, std = values.get("mean"), values.get("std")
    order = str(values.get("channel_order") or "RGB").upper()
    if mean is None and std is None:
        text = f"[{_num(lo)}, {_num(hi)}]"
    else:
        m = list(mean) if mean is not None else [0.0]
        s = list(std) if std is not None else [1.0]
        if len(set(m)) == 1 and len(set(s)) == 1:  # one value for every channel: say the range it gives
            text = f"[{_num((lo - m[0]) / s[0])}, {_num((hi - m[0]) / s[0])}]"
        else:
            parts = [f"[{_num(lo)}, {_num(hi)}]"]
            if mean is not None:
                parts.append("mean " + "/".join(_num(v) for v in m))
            if std is not None:
                parts.append("std " + "/".join(_num(v) for v in s))
            text = " ".join(parts)
    return text if order == "RGB" else f"{order} {text}"


def report_line(values: Mapping[str, Any]) -> str:
    """``[-1, 1] RGB NCHW float32 at 224x224, from preset inception``: a report's input line, from
    a Transform's ``describe()`` (a caller's callable: only where it came from)."""
    if "input_range" not in values:
        return str(values.get("origin", ""))
    size = "x".join(map(str, values["size"])) if values.get("size") else "the source's size"
    order, layout, dtype = values["channel_order"], values["layout"], values["dtype"]
    return f"{describe_values({**values, 'channel_order': 'RGB'})} {order} {layout} {dtype} at {size}, from {values['origin']}"


def _num(v: float) -> str:
    return f"{v:.4g}"


def unstated_message(what: str = "the model", preset: str = "a preset", values: str = "mean/std/input_range") -> str:
    """The one line that stops a calibration whose normalisation nobody stated; ``preset`` and
    ``values`` name the options as the caller's front-end does (``--preset``, ``--mean/--std``)."""
    return (
        f"{what} does not say how its inputs are normalised, and none was given: state {preset} "
        f"({preset_help()}) or {values}"
    )


def states_normalisation(options: Mapping[str, Any]) -> bool:
    """Whether transform options say how values are normalised."""
    return any(options.get(k) is not None for k in NORMALISATION_KEYS)


def resolve(options: dict[str, Any], read: Mapping[str, Any], declared_by_model: dict[str, Any] | None) -> dict:
    """Transform options for a model: the user's ``options`` where they state the normalisation,
    else the model's declaration, else pixels for a ``uint8`` input; :class:`PreprocessingUnstated`
    otherwise. The result carries ``origin``: where the normalisation came from."""
    if states_normalisation(options):
        given = [k for k in NORMALISATION_KEYS if options.get(k) is not None]
        origin = f"preset {options['preset']}" if given == ["preset"] else "given: " + ", ".join(given)
        size = {"size": declared_by_model["size"]} if (declared_by_model or {}).get("size") else {}
        return {
            **size,
            **{k: v for k, v in options.items() if v is not None},
            "origin": options.get("origin") or origin,
        }
    if declared_by_model:
        merged = {k: v for k, v in declared_by_model.items() if k != "origin"}
        merged.update({k: v for k, v in options.items() if v is not None and k != "origin"})
        return {**merged, "origin": declared_by_model.get("origin", "the model")}
    if read.get("dtype") == "uint8":
        return {**options, "input_range": (0.0, 255.0), "origin": "the model's uint8 input (pixels in [0, 255])"}
    raise PreprocessingUnstated(int8=read.get("dtype") == "int8")


# -- reading what a model declares ---------------------------------------------------------------


def declared(model: Any) -> dict[str, Any] | None:
    """The normalisation ``model`` declares (transform options plus ``origin``), or None.

    ``model``: an ``openvino.Model`` (or a compiled one), an ``onnx.ModelProto`` or a
    ``torch.nn.Module``; anything else declares nothing.
    """
    try:
        if is_onnx(model):
            return _from_onnx(model)
        if is_torch(model):
            return _from_torch(model)
        if hasattr(model, "has_rt_info"):
            return _from_openvino(model)
    except SynthcalibError:
        raise
    except Exception:  # metadata we cannot read declares nothing, it does not break quantization
        return None
    return None


def _rt(model: Any, *path: str) -> str | None:
    p = list(path)
    if not model.has_rt_info(p):
        return None
    value = model.get_rt_info(p)
    return str(value.astype(str) if hasattr(value, "astype") else value)


def _from_openvino(model: Any) -> dict[str, Any] | None:
    own = _rt(model, *RT_INFO_PATH)
    if own:
        return _own(own, "the model's rt_info synthcalib/preprocessing")
    info = {k: _rt(model, "model_info", k) for k in _MODEL_API_KEYS}
    found = _model_api({k: v for k, v in info.items() if v is not None}, "the model's rt_info model_info")
    if found:
        return found
    conversion = {k: _rt(model, "conversion_parameters", k) for k in ("mean_values", "scale_values")}
    if any(conversion.values()):
        reverse = model.has_rt_info(["conversion_parameters", "reverse_input_channels"])
        return {
            "input_range": (0.0, 255.0),
            "mean": None,
            "std": None,
            "channel_order": "BGR" if reverse else "RGB",
            "origin": "the model's rt_info conversion_parameters (mean/scale values folded into the model: pixels)",
        }
    return None


def _from_onnx(model: Any) -> dict[str, Any] | None:
    props = {p.key: p.value for p in model.metadata_props}
    if ONNX_KEY in props:
        return _own(props[ONNX_KEY], f"the ONNX metadata '{ONNX_KEY}'")
    info = {}
    for key, value in props.items():
        words = key.split()
        if len(words) == 2 and words[0] == "model_info" and words[1] in _MODEL_API_KEYS:
            info[words[1]] = value
    return _model_api(info, "the ONNX metadata model_info")


_MODEL_API_KEYS = ("mean_values", "scale_values", "reverse_input_channels", "embedded_processing")


def _numbers(text: str, where: str) -> tuple[float, ...] | None:
    values = re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", text or "")
    if not values:
        return None
    if len(values) not in (1, 3):
        raise SynthcalibError(f"{where}: expected 1 or 3 numbers, got {text!r}")
    return tuple(float(v) for v in values)


def _true(text: str | None) -> bool:
    return str(text).strip().lower() in ("true", "1", "yes")


def _model_api(info: Mapping[str, str], origin: str) -> dict[str, Any] | None:
    """OpenVINO Model API's ``model_info``: mean/scale on pixels [0, 255]; images arrive in
    OpenCV's BGR order and ``reverse_input_channels`` turns them to RGB; with
    ``embedded_processing`` all of it is inside the model, which takes BGR pixels."""
    if not info or not any(k in info for k in ("mean_values", "scale_values", "embedded_processing")):
        return None
    if _true(info.get("embedded_processing")):
        return {"input_range": (0.0, 255.0), "mean": None, "std": None, "channel_order": "BGR", "origin": origin}
    mean = _numbers(info.get("mean_values", ""), f"{origin} mean_values")
    scale = _numbers(info.get("scale_values", ""), f"{origin} scale_values")
    if scale is not None and any(s <= 0 for s in scale):
        raise SynthcalibError(f"{origin} scale_values: expected positive numbers, got {list(scale)}")
    order = "RGB" if _true(info.get("reverse_input_channels")) else "BGR"
    return {"input_range": (0.0, 255.0), "mean": mean, "std": scale, "channel_order": order, "origin": origin}


def _own(text: str, origin: str) -> dict[str, Any]:
    try:
        values = json.loads(text)
    except ValueError:
        values = None
    if not isinstance(values, dict):
        raise SynthcalibError(f"{origin}: expected a JSON object of preprocessing keys, got {text[:60]!r}")
    keys = ("input_range", "mean", "std", "channel_order")
    return {**{k: values.get(k) for k in keys if k in values}, "origin": origin}


def _from_torch(module: Any) -> dict[str, Any] | None:
    cfg = getattr(module, "pretrained_cfg", None) or getattr(module, "default_cfg", None)
    if isinstance(cfg, Mapping) and cfg.get("mean") is not None and cfg.get("std") is not None:
        out: dict[str, Any] = {
            "input_range": (0.0, 1.0),
            "mean": tuple(cfg["mean"]),
            "std": tuple(cfg["std"]),
            "channel_order": "RGB",
            "origin": "the module's pretrained_cfg (timm)",
        }
        size = cfg.get("input_size")
        if isinstance(size, (tuple, list)) and len(size) == 3:
            out["size"] = (int(size[1]), int(size[2]))
        return out
    return _from_hugging_face(module)


def image_processor_options(processor: Any, origin: str) -> dict[str, Any] | None:
    """Transform options from a Hugging Face image processor (an object or its config dict)."""
    get = processor.get if isinstance(processor, Mapping) else lambda k, d=None: getattr(processor, k, d)
    mean, std = get("image_mean"), get("image_std")
    if mean is None or std is None:
        return None
    rescale = float(get("rescale_factor", 1 / 255)) if get("do_rescale", True) else 1.0
    normalise = get("do_normalize", True)
    return {
        "input_range": (0.0, 255.0 * rescale),
        "mean": tuple(float(m) for m in mean) if normalise else None,
        "std": tuple(float(s) for s in std) if normalise else None,
        "channel_order": "RGB",
        "origin": origin,
    }


def _from_hugging_face(module: Any) -> dict[str, Any] | None:
    config = getattr(module, "config", None)
    name = getattr(config, "_name_or_path", None)
    if not name:
        return None
    local = Path(name) / "preprocessor_config.json"
    if local.is_file():
        return image_processor_options(json.loads(local.read_text(encoding="utf-8")), f"'{local}'")
    transformers = sys.modules.get("transformers")
    if transformers is None:
        return None
    try:  # the local cache only: quantization never downloads
        processor = transformers.AutoImageProcessor.from_pretrained(name, local_files_only=True)
    except Exception:
        return None
    return image_processor_options(processor, f"the image processor of '{name}' (Hugging Face)")


# -- recording it in the models this package saves ----------------------------------------------


def record(model: Any, transform: Any) -> None:
    """Store ``transform``'s normalisation in ``model`` (an ``openvino.Model`` or an
    ``onnx.ModelProto``), so that the INT8 model says how to feed it."""
    describe = getattr(transform, "describe", None)
    if describe is None:
        return
    values = {k: v for k, v in describe().items() if k in ("input_range", "mean", "std", "channel_order")}
    text = json.dumps(values, sort_keys=True)
    if is_onnx(model):
        props = [p for p in model.metadata_props if p.key != ONNX_KEY]
        del model.metadata_props[:]
        model.metadata_props.extend(props)
        entry = model.metadata_props.add()
        entry.key, entry.value = ONNX_KEY, text
    elif hasattr(model, "set_rt_info"):
        model.set_rt_info(text, list(RT_INFO_PATH))
