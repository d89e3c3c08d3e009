"""Where the benchmarks find the shared assets (``../shared`` beside the checkout, or ``$SYNTHCALIB_SHARED``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(REPO))

from openvino_synthcalib.shipped import DEMO_CLASSIFIER, GENERATORS  # noqa: E402

SHARED = Path(os.environ.get("SYNTHCALIB_SHARED", REPO.parent / "shared"))
TEACHER = SHARED / "teachers" / "cifar10_cgan_teacher.onnx"
ZOO = SHARED / "models" / "cifar10"
#: The shared zoo's six classifiers, in the order the reports list them.
ZOO_MODELS = ("resnet20", "resnet56", "mobilenetv2", "shufflenetv2", "vgg11_bn", "repvgg_a0")
CIFAR = SHARED / "datasets" / "cifar10-jpeg"
CIFAR_TRAIN = CIFAR / "train"
CIFAR_TEST = CIFAR / "test"
STUDENT = GENERATORS["cifar10"]
RESULTS = REPO / "benchmarks" / "results"
#: The extra zoo (ConvMixer, ViT) that benchmarks/train_zoo.py trains here when it is absent (git-ignored).
EXTRA_ZOO = REPO / "runs" / "zoo" / "cifar10"
#: Its models: the recipes of benchmarks/train_zoo.py.
EXTRA_MODELS = ("convmixer", "vit")
__all__ = [
    "CIFAR",
    "CIFAR_TEST",
    "CIFAR_TRAIN",
    "DEMO_CLASSIFIER",
    "EXTRA_MODELS",
    "EXTRA_ZOO",
    "REPO",
    "RESULTS",
    "SHARED",
    "STUDENT",
    "TEACHER",
    "ZOO",
    "ZOO_MODELS",
    "generator_file",
    "generator_label",
    "shown",
]


def shown(path: str | os.PathLike[str]) -> str:
    """A path as the reports show it: relative to the checkout, or under ``../shared``."""
    path = Path(os.path.abspath(path))  # symlinks kept (.venv-mct/bin/python)
    if path.is_relative_to(REPO):
        return str(path.relative_to(REPO))
    shared = Path(os.path.abspath(SHARED))
    if path.is_relative_to(shared):
        return f"../shared/{path.relative_to(shared)}"
    return str(path)


def generator_file(name: str) -> Path:
    """A shipped generator's IR given its name, or the file given (``--generator``); exits naming the
    flag when neither exists."""
    from openvino_synthcalib.shipped import generator_path

    path = Path(generator_path(name))
    if not path.exists():
        raise SystemExit(f"--generator {name}: no such shipped generator ({', '.join(GENERATORS)}) or file")
    return path


def generator_label(name: str, path: Path) -> str:
    """A generator's name (shipped) or file stem, with the start of its weights' sha256 (``path``: its
    IR): rows of a retrained generator are new rows, not skipped as done."""
    import hashlib

    weights = path.with_suffix(".bin")
    digest = hashlib.sha256(weights.read_bytes() if weights.exists() else b"")
    return f"{name if name in GENERATORS else path.stem}@{digest.hexdigest()[:8]}"
