"""``noise:gaussian`` and ``noise:uniform``: data-free baselines."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import SynthcalibError
from ..rng import TAG_NOISE
from .base import ItemSource, SourceContext, parse_size, take_options

KINDS = ("gaussian", "uniform")


class NoiseSource(ItemSource):
    """Per-pixel noise. Gaussian: N(mean, std) clipped to [0, 1]; the defaults (0.5, 0.25)
    are about N(0, 1) after the usual dataset normalisation. Uniform: U(0, 1) pixels."""

    scheme = "noise"
    tag = TAG_NOISE
    conditional = False

    def __init__(self, spec: str, kind: str, mean: float, std: float, num_classes: int, size: Any) -> None:
        super().__init__(spec)
        self.kind, self.mean, self.std = kind, float(mean), float(std)
        self.num_classes = num_classes
        self.image_size = size

    def render(self, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
        if self.kind == "gaussian":
            img = rng.normal(self.mean, self.std, (3, *size)).astype(np.float32)
        else:
            img = rng.random((3, *size), dtype=np.float32)
        return np.clip(img, 0.0, 1.0, out=img)

    def describe(self) -> dict[str, Any]:
        extra = {"mean": self.mean, "std": self.std} if self.kind == "gaussian" else {}
        return {**super().describe(), "kind": self.kind, **extra}


def make(arg: str, options: dict[str, Any], context: SourceContext) -> NoiseSource:
    spec = f"noise:{arg}"
    kind = arg.strip().lower() or "gaussian"
    if kind not in KINDS:
        raise SynthcalibError(f"source '{spec}': unknown noise kind {arg!r}; expected {' or '.join(KINDS)}")
    opts = take_options(
        spec,
        options,
        {"mean": 0.5, "std": 0.25, "size": None, "num_classes": None},
        {"mean": "float", "std": "float>0", "num_classes": "int>0"},
    )
    if kind == "uniform" and ({"mean", "std"} & set(options)):
        raise SynthcalibError(f"source '{spec}': mean/std apply to noise:gaussian only")
    size = parse_size(opts["size"], f"source '{spec}': option size") if opts["size"] is not None else None
    num_classes = int(opts["num_classes"] or context.num_classes or 1)
    return NoiseSource(spec, kind, opts["mean"], opts["std"], num_classes, size)
