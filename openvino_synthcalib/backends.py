"""Models of NNCF's other backends: a ``torch.nn.Module`` or an ``onnx.ModelProto``.

``nncf.quantize`` takes OpenVINO models, PyTorch modules and ONNX models, and feeds each backend
its own kind of item: a NumPy array for OpenVINO, a ``torch.Tensor`` for PyTorch (NNCF's
``PTEngine`` calls ``model(item)``), a ``{input name: array}`` dict for ONNX (NNCF's
``ONNXEngine`` hands the item to ``onnxruntime.InferenceSession.run`` as its feed). This module
is the one place that knows the difference: which backend a model belongs to, what its input
takes, how an item is formatted for it, how it is read, saved and run for validation.

PyTorch, ONNX and ONNX Runtime are imported only when a model of theirs is given: a torch module
can only exist once its caller imported torch, so ``sys.modules`` tells without importing it.
"""

from __future__ import annotations

import hashlib
import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from . import models, preprocessing
from .classifier import check_dims, check_item_shape, classes_of_output, classifier_classes, describe_dims
from .errors import SynthcalibError
from .files import save_ir, write_with
from .models import first_line, is_onnx, is_torch
from .transforms import as_transform

if TYPE_CHECKING:
    import onnx
    import openvino as ov
    import torch

    #: A model object of one of NNCF's backends (an OpenVINO model may be a compiled one).
    ModelObject: TypeAlias = ov.Model | ov.CompiledModel | onnx.ModelProto | torch.nn.Module

BACKENDS = ("openvino", "onnx", "torch")
#: Suffix of the file each backend's quantized model is saved to (a torch module is returned, not saved).
OUTPUT_SUFFIX = {"openvino": ".xml", "onnx": ".onnx", "torch": None}
_ONNX_DTYPES = ("float32", "float16", "uint8", "int8")
_SESSIONS: OrderedDict[bytes, Any] = OrderedDict()
_CACHED_SESSIONS = 4


def backend_of(model: Any) -> str:
    """``torch``, ``onnx`` or ``openvino`` (an ``openvino.Model``, a compiled model or a path)."""
    if is_torch(model):
        return "torch"
    if is_onnx(model):
        return "onnx"
    return "openvino"


def check_nncf_can_quantize(model: Any) -> None:
    """Refuse a model that NNCF is known to fail on, naming NNCF and the workaround.

    NNCF 3.4's torch backend adds its hook storage as a child module of the model; the forward of
    ``nn.Sequential`` calls every child in turn, so it calls the storage, which has no forward
    ("Module [HookStorage] is missing the required forward function"). That is NNCF's bug, not the
    model's: any module with its own ``forward`` works. NNCF sends a ``torch.fx.GraphModule`` to
    its torch.fx backend, which imports torchao.
    """
    if not is_torch(model):
        return
    import importlib.util

    import nncf
    import torch
    import torch.fx

    if isinstance(model, torch.fx.GraphModule) and importlib.util.find_spec("torchao") is None:
        raise SynthcalibError(
            f"model: NNCF {nncf.__version__} quantizes a torch.fx.GraphModule with its torch.fx backend, which needs "
            "torchao (not installed): pip install torchao, or wrap the module in an nn.Module with its own forward "
            "(NNCF's eager PyTorch backend)"
        )
    if type(model).forward is torch.nn.Sequential.forward:
        raise SynthcalibError(
            f"model: nncf.quantize (NNCF {nncf.__version__}) cannot quantize a bare torch.nn.Sequential: NNCF adds "
            "its HookStorage module to the model and Sequential's forward calls it ('Module [HookStorage] is "
            "missing the required forward function'). Wrap it in a module with its own forward, e.g. "
            "class Net(nn.Module): def __init__(self, seq): super().__init__(); self.seq = seq; "
            "def forward(self, x): return self.seq(x)"
        )


@dataclass
class Target:
    """What the input of the model being calibrated takes, and the form NNCF feeds it in: built
    once per model (:func:`target`) for every backend, and handed down to streams and datasets.

    For an OpenVINO model, the model itself answers (``read`` stays empty).
    ``read`` has :func:`~.classifier.describe_input`'s keys where the model tells them: an ONNX
    model tells its input's layout, size (where static), channels and dtype; a torch module only
    its dtype and, through its first ``Conv2d``, its channels (size and layout come from the
    transform, or the source's native size).
    """

    backend: str
    model: ModelObject
    read: dict[str, Any]
    input_name: str | None = None
    dims: list[int | None] | None = None
    classes: int | None = None
    device: torch.device | None = None  # a torch module's
    torch_dtype: torch.dtype | None = None  # a torch module's floating dtype
    #: the normalisation the model declares about itself (see :mod:`.preprocessing`), or None
    declared: dict[str, Any] | None = None
    _probed: dict[tuple[int, ...], int | None] = field(default_factory=dict, repr=False)

    def transform(self, transform: Any) -> Any:
        if self.backend == "openvino":
            return as_transform(transform, self.model)
        return as_transform(transform, read=self.read, declared=self.declared)

    def check_item(self, source: Any, transform: Any, how: str) -> None:
        """Items of ``source`` after ``transform`` (a Transform) must fit the model's input."""
        if self.backend == "torch" and transform.size is None and source.image_size is None:
            raise SynthcalibError(
                f"model: a PyTorch module does not tell its input size and source '{source.spec}' has no native "
                "size: give it in the transform, e.g. transform={'preset': 'cifar10', 'size': '32x32'}"
            )
        shape = transform.output_shape(source.output_size(transform.size))
        if self.backend == "openvino":
            check_item_shape(self.model, shape, transform.dtype, how)
        elif self.backend == "onnx":
            check_dims(
                f"ONNX model input '{self.input_name}'",
                self.dims or [],
                self.read["dtype"],
                shape,
                transform.dtype,
                how,
            )
        else:
            self.classes = self.probe(shape, how)

    def probe(self, shape: tuple[int, ...], how: str = "") -> int | None:
        """Run the module once on a zero item of ``shape``: the shape check a torch module cannot
        answer otherwise, and its class count (output [1, K]). Train/eval mode is left as it was."""
        if shape in self._probed:
            return self._probed[shape]
        import torch

        x = torch.zeros((1, *shape), dtype=self.torch_dtype, device=self.device)
        training = self.model.training
        try:
            self.model.eval()
            with torch.no_grad():
                out = self.model(x)
        except Exception as exc:
            raise SynthcalibError(
                f"model: the PyTorch module fails on an item of shape {[1, *shape]}{f' ({how})' if how else ''}: "
                f"{first_line(exc)}; check the transform's size and layout"
            ) from None
        finally:
            self.model.train(training)
        out = out[0] if isinstance(out, (tuple, list)) else out
        classes = classes_of_output(list(getattr(out, "shape", ())))
        self._probed[shape] = classes
        return classes

    def format(self, x: np.ndarray) -> Any:
        """One item [1, ...] as NNCF's backend feeds it to the model."""
        if self.backend == "openvino":
            return x
        if self.backend == "onnx":
            return {self.input_name: x}
        import torch

        # a copy: the array may be a view into the stream's cached block
        return torch.from_numpy(np.array(x)).to(device=self.device, dtype=self.torch_dtype)


def target(model: Any) -> Target | None:
    """The :class:`Target` of a model of any backend (an OpenVINO path is read); ``None`` for no
    model. A Target is returned as it is, so that callers may hand one down instead of the model."""
    if model is None or isinstance(model, Target):
        return model
    if is_onnx(model):
        return _onnx_target(model)
    if is_torch(model):
        return _torch_target(model)
    return _openvino_target(model)


def _openvino_target(model: Any) -> Target:
    if not hasattr(model, "inputs"):
        model = models.read_model(model, "model")
    dims = models.static_dims(model.inputs[0].get_partial_shape()) if len(model.inputs) == 1 else None
    return Target(
        "openvino", model, {}, dims=dims, classes=classifier_classes(model), declared=preprocessing.declared(model)
    )


def _onnx_input(model: Any) -> Any:
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise SynthcalibError(
            f"expected an ONNX model with one image input, found {len(inputs)} inputs: {[i.name for i in inputs]}"
        )
    return inputs[0]


def _onnx_dims(value_info: Any) -> list[int | None]:
    return [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
        for d in value_info.type.tensor_type.shape.dim
    ]


def _onnx_target(model: Any) -> Target:
    import onnx

    port = _onnx_input(model)
    elem = port.type.tensor_type.elem_type
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)).name if elem else "undefined"
    if dtype not in _ONNX_DTYPES:
        raise SynthcalibError(
            f"ONNX model input '{port.name}' has element type {dtype}: expected {', '.join(_ONNX_DTYPES)}"
        )
    dims = _onnx_dims(port)
    read = describe_dims(port.name, dims, dtype)
    return Target("onnx", model, read, port.name, dims, _onnx_classes(model), declared=preprocessing.declared(model))


def _onnx_classes(model: Any) -> int | None:
    return classes_of_output(_onnx_dims(model.graph.output[0])) if len(model.graph.output) == 1 else None


def _torch_placement(model: Any) -> tuple[Any, Any]:
    """The device and floating dtype of a module's parameters (CPU, float32 without any)."""
    import torch

    tensors = [*model.parameters(), *model.buffers()]
    floating = [t.dtype for t in tensors if t.is_floating_point()]
    return (tensors[0].device if tensors else torch.device("cpu")), (floating[0] if floating else torch.float32)


def _torch_target(model: Any) -> Target:
    import torch

    check_nncf_can_quantize(model)
    device, torch_dtype = _torch_placement(model)
    dtype = {torch.float16: "float16"}.get(torch_dtype, "float32")
    read: dict[str, Any] = {"dtype": dtype}
    conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if conv is not None and conv.in_channels in (1, 3):
        read["channels"] = conv.in_channels
    return Target("torch", model, read, device=device, torch_dtype=torch_dtype, declared=preprocessing.declared(model))


def item_format(model: Any) -> Callable[[np.ndarray], Any] | None:
    """How an item [1, ...] is handed to NNCF for ``model``'s backend (``None``: as it is)."""
    t = target(model)
    return t.format if t is not None and t.backend != "openvino" else None


# -- reading, saving, accuracy control (synthcalib.quantize and the CLI) ----------------------------


def load(
    model: Any, backend: str | None, backend_name: str = "backend", model_name: str = "model"
) -> tuple[ModelObject, Path | None, str]:
    """``(model object, its path or None, backend)`` for a calibration plan.

    A path is read by OpenVINO unless ``backend="onnx"``; a model object must belong to the
    ``backend`` named (if one is). Errors name the options as the caller does.
    """
    if backend is not None and backend not in BACKENDS:
        raise SynthcalibError(f"{backend_name}: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    found = backend_of(model)
    is_object = found != "openvino" or hasattr(model, "inputs")
    if is_object:
        if backend is not None and backend != found:
            raise SynthcalibError(
                f"{backend_name} {backend}: the model given is a{'n' if found[0] in 'ao' else ''} {found} model"
            )
        return model, None, found
    backend = backend or "openvino"
    if backend == "torch":
        raise SynthcalibError(f"{backend_name} torch: give a torch.nn.Module object (the Python API), not a path")
    path = models.check_model_path(model, model_name)
    if backend == "openvino":
        return models.read_model(path, model_name), path, backend
    if path.suffix.lower() != ".onnx":
        raise SynthcalibError(
            f"model file '{path}' has suffix '{path.suffix}': {backend_name} onnx expects an .onnx file"
        )
    try:
        import onnx
    except ImportError as exc:
        raise SynthcalibError(
            f"{backend_name} onnx: needs the onnx extra, pip install 'openvino_synthcalib[onnx]' ({exc})"
        ) from None
    try:
        return onnx.load(str(path)), path, backend
    except Exception as exc:
        raise SynthcalibError(f"cannot read ONNX model file '{path}': {first_line(exc)}") from None


def check_accuracy_control(backend: str) -> None:
    """NNCF 3.4 runs ``quantize_with_accuracy_control`` for OpenVINO and ONNX models only (an error
    keyed ``max_drop``, the option that turns it on)."""
    if backend == "torch":
        import nncf

        raise SynthcalibError(
            f"nncf.quantize_with_accuracy_control (NNCF {nncf.__version__}) supports OpenVINO and "
            "ONNX models only, not PyTorch: quantize the module with nncf.quantize, or convert it "
            "(ov.convert_model) and use accuracy control on the OpenVINO model",
            key="max_drop",
        )


def save(model: Any, path: Path, backend: str, name: str = "output") -> Path:
    """Write a quantized model atomically: an IR pair for OpenVINO, one .onnx file for ONNX."""
    if backend == "openvino":
        return save_ir(model, path, name)
    if backend == "onnx":
        import onnx

        return write_with(path, lambda tmp: onnx.save(model, str(tmp)), name)
    raise SynthcalibError(
        f"{name}: a quantized PyTorch module is returned, not saved (see the report's quantized_model)"
    )


# -- running a model of any backend (validation functions) -----------------------------------------


def as_array(x: Any) -> np.ndarray:
    """The input array of an item as NNCF feeds it (array, tensor or ONNX feed dict)."""
    if isinstance(x, dict):
        if len(x) != 1:
            raise SynthcalibError(f"expected an item with one input, got inputs {list(x)}")
        x = next(iter(x.values()))
    if is_torch_tensor(x):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def is_torch_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _onnx_session(model: Any) -> tuple[Any, str]:
    """An ONNX Runtime CPU session for ``model``, cached by content: NNCF's accuracy control calls
    the validation function once per item when it ranks layers, with the same model."""
    data = model.SerializeToString()
    key = hashlib.blake2b(data, digest_size=16).digest()
    if key not in _SESSIONS:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise SynthcalibError(
                f"running an ONNX model needs onnxruntime: pip install 'openvino_synthcalib[onnx]' ({exc})"
            ) from None
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        _SESSIONS[key] = (session, session.get_inputs()[0].name)
        while len(_SESSIONS) > _CACHED_SESSIONS:
            _SESSIONS.popitem(last=False)
    _SESSIONS.move_to_end(key)
    return _SESSIONS[key]


def logits(model: Any, x: Any) -> np.ndarray:
    """The first output of ``model`` (a compiled OpenVINO model, an ONNX model run by ONNX Runtime,
    or a torch module) on one item as NNCF feeds it, as a NumPy array."""
    if is_onnx(model):
        session, name = _onnx_session(model)
        feed = x if isinstance(x, dict) else {name: as_array(x)}
        return np.asarray(session.run(None, feed)[0])
    if is_torch(model):
        import torch

        if not is_torch_tensor(x) and not isinstance(x, dict):
            device, dtype = _torch_placement(model)
            x = torch.from_numpy(np.array(as_array(x))).to(device=device, dtype=dtype)
        with torch.no_grad():
            out = model(**x) if isinstance(x, dict) else model(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.detach().float().cpu().numpy()
    if isinstance(x, dict) or is_torch_tensor(x):
        x = as_array(x)
    return np.asarray(model(x)[model.output(0)])


def prepare_reference(reference: Any, device: str, precision: str | None) -> Any:
    """A reference model ready for :func:`logits`: torch and ONNX models as they are, an OpenVINO
    model or path compiled (with ``precision``), an ``.onnx`` path read by OpenVINO."""
    if is_torch(reference) or is_onnx(reference) or hasattr(reference, "create_infer_request"):
        return reference
    if not hasattr(reference, "inputs"):
        reference = models.read_model(reference, "reference model")
    return models.compile_model(reference, device, models.precision_config(precision), "reference model")
