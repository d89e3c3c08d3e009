"""``generator:PATH``: a generator IR or ONNX file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..engine import GeneratorEngine
from .base import Source, SourceContext, parse_size, take_options

OPTIONS: dict[str, Any] = {
    "z_dim": None,
    "num_classes": None,
    "class_names": None,
    "image_size": None,
    "output_range": None,
    "label_input": None,
    "device": None,
    "batch_size": None,
    "num_requests": None,
    "precision": None,
}


class GeneratorSource(Source):
    """Images from a class-conditional generator; labels are its conditioning classes."""

    scheme = "generator"
    conditional = True

    def __init__(self, spec: str, engine: GeneratorEngine) -> None:
        super().__init__(spec)
        self.engine = engine
        info = engine.info
        self.num_classes = info.num_classes
        self.class_names = info.class_names
        self.image_size = info.image_size
        self.batch_size = engine.batch_size

    def iter_images(
        self,
        indices: np.ndarray,
        labels: np.ndarray,
        seed: int,
        size: tuple[int, int] | None = None,
        occurrences: np.ndarray | None = None,
    ) -> Iterator[np.ndarray]:
        return self.engine.iter_images(indices, labels, seed)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "generator": self.engine.info.to_dict(), "path": self.engine.path}

    def close(self) -> None:
        self.engine.close()


KINDS = {
    "z_dim": "int>0",
    "num_classes": "int>0",
    "label_input": "str",
    "output_range": "range",
    "device": "str",
    "batch_size": "int>0",
    "num_requests": "int>=0",
    "precision": "str",
}


def make(arg: str, options: dict[str, Any], context: SourceContext) -> GeneratorSource:
    spec = f"generator:{arg}"
    opts = take_options(spec, options, OPTIONS, KINDS)
    overrides = {k: opts[k] for k in ("z_dim", "num_classes", "class_names", "output_range", "label_input")}
    if isinstance(overrides["class_names"], str):
        overrides["class_names"] = [overrides["class_names"]]
    if opts["image_size"] is not None:
        overrides["image_size"] = parse_size(opts["image_size"], f"{spec}: image_size")
    engine = GeneratorEngine(
        arg,
        device=opts["device"] or context.device,
        batch_size=opts["batch_size"] or context.batch_size,
        num_requests=opts["num_requests"] if opts["num_requests"] is not None else context.num_requests,
        precision=opts["precision"] or context.precision,
        default_num_classes=context.num_classes,
        **overrides,
    )
    return GeneratorSource(spec, engine)
