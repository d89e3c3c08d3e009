"""The built-in sources, registered as an ordinary plugin."""

from __future__ import annotations

import os

from ..hookspecs import hookimpl
from ..models import MODEL_SUFFIXES
from ..shipped import GENERATORS
from . import arrays, fractal, generator, images, noise
from .base import SourceType


@hookimpl
def synthcalib_add_sources() -> list[SourceType]:
    return [
        SourceType(
            "generator",
            generator.make,
            "a class-conditional generator IR/ONNX (inputs z, label; output image), or a shipped one by name",
            "generator:cifar10 or generator:path/to/generator.xml?num_classes=10",
        ),
        SourceType("images", images.make, "real images from a folder root/<class>/*.jpg", "images:data/train"),
        SourceType(
            "noise", noise.make, "pixel noise: gaussian (mean, std) or uniform", "noise:gaussian?mean=0.5&std=0.25"
        ),
        SourceType("array", arrays.make, "images from a .npy file (float NCHW in [0, 1] or uint8 NHWC)", "array:x.npy"),
        SourceType("fractal", fractal.make, "coloured IFS fractals (data-free baseline)", "fractal:ifs?size=32"),
    ]


@hookimpl(trylast=True)
def synthcalib_guess_scheme(path: str) -> str | None:
    if path.lower().endswith(MODEL_SUFFIXES) or (path in GENERATORS and not os.path.exists(path)):
        return "generator"
    if os.path.isdir(path):
        return "images"
    return None
