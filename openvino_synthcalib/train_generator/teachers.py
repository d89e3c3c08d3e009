"""Teacher adapters: anything that maps (z, class) to an image.

Supported teachers (chosen from the spec string):

* ``*.onnx`` / ``*.xml``  -- run with OpenVINO (inputs: a float ``z`` [N, z_dim] and a label input,
  int [N] class indices or float [N, C] one-hot; one image output [N, 3, H, W]);
* ``*.pt`` / ``*.pth`` / ``*.ts`` / ``*.torchscript`` -- a TorchScript module called as ``m(z, label)``;
* ``*.pkl`` -- a StyleGAN2-ADA network pickle; ``G_ema(z, c, truncation_psi=psi)`` with a one-hot ``c``.
  Its code (``dnnlib``, ``torch_utils``) must be importable, as with the official repository;
* ``module:function`` (or ``path/to/file.py:function``) -- a Python callable ``f(z, labels) -> images``
  taking and returning numpy arrays.

Every adapter returns float32 NCHW images in [-1, 1] from :meth:`Teacher.generate`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SynthcalibError

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")
OPENVINO_SUFFIXES = (".onnx", ".xml")
PICKLE_SUFFIXES = (".pkl", ".pickle")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Teacher:
    """A black-box conditional generator. ``generate(z, labels)`` -> float32 [N, 3, H, W] in [-1, 1]."""

    kind: str
    spec: str
    z_dim: int
    num_classes: int
    image_size: tuple[int, int] = (0, 0)
    class_names: tuple[str, ...] | None = None
    output_range: tuple[float, float] = (-1.0, 1.0)
    sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None

    def _raw(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        assert self._fn is not None
        return np.asarray(self._fn(z, labels))

    def generate(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Images for latent ``z`` [N, z_dim] and class indices ``labels`` [N], in [-1, 1]."""
        z = np.ascontiguousarray(z, dtype=np.float32)
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        out = self._raw(z, labels)
        if out.ndim != 4 or out.shape[0] != z.shape[0] or out.shape[1] != 3:
            raise SynthcalibError(
                f"teacher {self.spec}: expected an image output [N, 3, H, W] for N={z.shape[0]}, "
                f"got shape {list(out.shape)}"
            )
        lo, hi = self.output_range
        out = out.astype(np.float32, copy=False)
        if (lo, hi) != (-1.0, 1.0):
            out = (out - lo) / (hi - lo) * 2.0 - 1.0
        return np.clip(out, -1.0, 1.0)

    def metadata(self) -> dict[str, Any]:
        """JSON-able description written into the teacher-set manifest and the exported IR."""
        return {
            "kind": self.kind,
            "spec": self.spec,
            "sha256": self.sha256,
            "z_dim": self.z_dim,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names) if self.class_names else None,
            "image_size": list(self.image_size),
            "output_range": list(self.output_range),
            **self.extra,
        }

    def probe(self) -> None:
        """Run a batch of 2 to validate the outputs and learn the image size."""
        rng = np.random.default_rng(0)
        z = rng.standard_normal((2, self.z_dim)).astype(np.float32)
        labels = np.arange(2, dtype=np.int64) % self.num_classes
        try:
            img = self.generate(z, labels)
        except SynthcalibError:
            raise
        except Exception as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SynthcalibError(f"teacher {self.spec}: running it on (z, label) failed: {msg}") from exc
        if not np.isfinite(img).all():
            raise SynthcalibError(f"teacher {self.spec}: produced non-finite images")
        self.image_size = (int(img.shape[2]), int(img.shape[3]))


# ----------------------------------------------------------------------------- OpenVINO (ONNX / IR)


def _openvino_teacher(
    path: Path, spec: str, z_dim: int | None, num_classes: int | None, ov_config: dict[str, Any] | None = None
) -> Teacher:
    """An IR/ONNX teacher through the generator contract (ports, metadata, probed output range)."""
    from ..engine import GeneratorEngine

    overrides = {"z_dim": z_dim, "num_classes": num_classes}
    engine = GeneratorEngine(path, batch_size=64, num_requests=1, config=ov_config, **overrides)
    info = engine.info
    return Teacher(
        kind="onnx" if path.suffix.lower() == ".onnx" else "openvino",
        spec=spec,
        z_dim=info.z_dim,
        num_classes=info.num_classes,
        class_names=info.class_names,
        output_range=info.output_range,
        sha256=sha256_file(path),
        extra={
            "label_input": info.label_input,
            "output_range_guessed": bool(info.provenance.get("output_range_guessed")),
        },
        _fn=engine.generate,
    )


# ----------------------------------------------------------------------------- TorchScript


def _torchscript_teacher(path: Path, spec: str, z_dim: int | None, num_classes: int | None) -> Teacher:
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:
        raise SynthcalibError(f"teacher {spec}: not a loadable TorchScript file ({str(exc).splitlines()[0]})") from exc
    z_dim = z_dim or getattr(module, "z_dim", None)
    num_classes = num_classes or getattr(module, "num_classes", None)
    if not z_dim or not num_classes:
        raise SynthcalibError(f"teacher {spec}: TorchScript teachers need --z-dim and --num-classes")

    @torch.no_grad()
    def run(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return module(torch.from_numpy(z), torch.from_numpy(labels)).float().cpu().numpy()

    return Teacher("torchscript", spec, int(z_dim), int(num_classes), sha256=sha256_file(path), _fn=run)


# ----------------------------------------------------------------------------- StyleGAN2-ADA pickle


def _stylegan_teacher(path: Path, spec: str, psi: float, code_dir: str | None) -> Teacher:
    import torch

    if code_dir:
        sys.path.insert(0, str(code_dir))
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)
    except ModuleNotFoundError as exc:
        raise SynthcalibError(
            f"teacher {spec}: the StyleGAN2-ADA code is not importable (missing module {exc.name!r}); "
            "put the official repository (dnnlib, torch_utils) on PYTHONPATH or pass --teacher-code DIR"
        ) from exc
    except Exception as exc:
        raise SynthcalibError(f"teacher {spec}: cannot unpickle ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict) or "G_ema" not in data:
        raise SynthcalibError(f"teacher {spec}: expected a StyleGAN2-ADA network pickle with a 'G_ema' entry")
    G = data["G_ema"].eval().requires_grad_(False)
    z_dim = int(getattr(G, "z_dim", 512))
    c_dim = int(getattr(G, "c_dim", 0))
    if c_dim <= 0:
        raise SynthcalibError(f"teacher {spec}: G_ema is unconditional (c_dim=0); a class-conditional one is needed")

    @torch.no_grad()
    def run(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        c = torch.nn.functional.one_hot(torch.from_numpy(labels), c_dim).float()
        img = G(torch.from_numpy(z), c, truncation_psi=psi, noise_mode="const")
        return img.float().cpu().numpy()

    return Teacher(
        "stylegan2-ada", spec, z_dim, c_dim, sha256=sha256_file(path), extra={"truncation_psi": psi}, _fn=run
    )


# ----------------------------------------------------------------------------- module:function


def import_callable(spec: str, flag: str) -> tuple[Callable[..., Any], Any]:
    """The function named by ``module:function`` or ``path/to/file.py:function``, and its module;
    failures are one line naming ``flag``."""
    mod_name, _, fn_name = spec.rpartition(":")
    if not mod_name or not fn_name:
        raise SynthcalibError(f"{flag} {spec}: expected a file or module:function")
    try:
        if mod_name.endswith(".py"):
            file = Path(mod_name)
            if not file.is_file():
                raise SynthcalibError(f"{flag} {spec}: file {mod_name} does not exist")
            mspec = importlib.util.spec_from_file_location(file.stem, file)
            assert mspec is not None and mspec.loader is not None
            module = importlib.util.module_from_spec(mspec)
            mspec.loader.exec_module(module)
        else:
            if "" not in sys.path and "." not in sys.path:
                sys.path.insert(0, "")
            module = importlib.import_module(mod_name)
    except SynthcalibError:
        raise
    except Exception as exc:
        raise SynthcalibError(f"{flag} {spec}: cannot import {mod_name} ({str(exc).splitlines()[0]})") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise SynthcalibError(f"{flag} {spec}: {mod_name} has no callable {fn_name!r}")
    return fn, module


def _callable_teacher(spec: str, z_dim: int | None, num_classes: int | None) -> Teacher:
    fn, module = import_callable(spec, "--teacher")
    z_dim = z_dim or getattr(fn, "z_dim", None) or getattr(module, "Z_DIM", None)
    num_classes = num_classes or getattr(fn, "num_classes", None) or getattr(module, "NUM_CLASSES", None)
    if not z_dim or not num_classes:
        raise SynthcalibError(f"--teacher {spec}: callable teachers need --z-dim and --num-classes")
    names = getattr(fn, "class_names", None) or getattr(module, "CLASS_NAMES", None)
    src = getattr(module, "__file__", None)
    return Teacher(
        "callable",
        spec,
        int(z_dim),
        int(num_classes),
        class_names=tuple(names) if names else None,
        sha256=sha256_file(src) if src and Path(src).is_file() else None,
        _fn=lambda z, lab: np.asarray(fn(z, lab)),
    )


# ----------------------------------------------------------------------------- entry point


def load_teacher(
    spec: str,
    *,
    z_dim: int | None = None,
    num_classes: int | None = None,
    class_names: list[str] | tuple[str, ...] | None = None,
    truncation_psi: float = 1.0,
    teacher_code: str | None = None,
    output_range: tuple[float, float] | None = None,
    probe: bool = True,
    ov_config: dict[str, Any] | None = None,
) -> Teacher:
    """Open the teacher named by ``spec`` (a file path or ``module:function``) and validate it."""
    spec = str(spec)
    if not num_classes and class_names:
        num_classes = len(class_names)
    path = Path(spec)
    suffix = path.suffix.lower()
    is_file_spec = suffix in OPENVINO_SUFFIXES + TORCHSCRIPT_SUFFIXES + PICKLE_SUFFIXES
    if is_file_spec or path.exists():
        if not path.is_file():
            raise SynthcalibError(f"--teacher {spec}: file does not exist")
        if suffix in OPENVINO_SUFFIXES:
            teacher = _openvino_teacher(path, spec, z_dim, num_classes, ov_config)
        elif suffix in TORCHSCRIPT_SUFFIXES:
            teacher = _torchscript_teacher(path, spec, z_dim, num_classes)
        elif suffix in PICKLE_SUFFIXES:
            teacher = _stylegan_teacher(path, spec, truncation_psi, teacher_code)
        else:
            raise SynthcalibError(
                f"--teacher {spec}: unknown file type {suffix!r}; expected .onnx, .xml, a TorchScript file "
                "(.pt/.ts), a StyleGAN2-ADA .pkl or module:function"
            )
    elif ":" in spec:
        teacher = _callable_teacher(spec, z_dim, num_classes)
    else:
        raise SynthcalibError(f"--teacher {spec}: file does not exist (nor is it module:function)")
    if output_range is not None:
        teacher.output_range = (float(output_range[0]), float(output_range[1]))
    if class_names:
        if len(class_names) != teacher.num_classes:
            raise SynthcalibError(
                f"--class-names: {len(class_names)} names given but the teacher has {teacher.num_classes} classes"
            )
        teacher.class_names = tuple(class_names)
    if probe:
        teacher.probe()
    return teacher
