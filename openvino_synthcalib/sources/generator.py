"""``generator:PATH``: a generator IR or ONNX file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..engine import GeneratorEngine
from .base import Items, Source, SourceContext, parse_size, take_options

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
    "latent_scale": 1.0,
}


class GeneratorSource(Source):
    """Images from a class-conditional generator; labels are its conditioning classes."""

    scheme = "generator"
    conditional = True

    def __init__(self, spec: str, engine: GeneratorEngine, latent_scale: float = 1.0, owns_engine: bool = True) -> None:
        super().__init__(spec)
        self.engine = engine
        self._owns_engine = owns_engine
        #: Standard deviation of the latent codes (1: the distribution the generator learnt).
        self.latent_scale = float(latent_scale)
        info = engine.info
        self.num_classes = info.num_classes
        self.class_names = info.class_names
        self.class_ids = info.class_ids
        self.image_size = info.image_size
        self.batch_size = engine.batch_size

    def images(self, items: Items) -> Iterator[np.ndarray]:
        return self.engine.iter_images(items.indices, items.labels, items.seed, self.latent_scale)

    def with_latent_scale(self, latent_scale: float) -> GeneratorSource:
        """The same generator (its compiled model shared, not reopened) with latents of another
        standard deviation; its spec says so. Closing the copy leaves the generator open."""
        body, _, query = self.spec.partition("?")
        pairs = [p for p in query.split("&") if p and p.partition("=")[0].strip() != "latent_scale"]
        pairs.append(f"latent_scale={latent_scale:g}")
        return GeneratorSource(f"{body}?{'&'.join(pairs)}", self.engine, latent_scale, owns_engine=False)

    def describe(self) -> dict[str, Any]:
        out = {**super().describe(), "generator": self.engine.info.to_dict(), "path": self.engine.path}
        return out if self.latent_scale == 1.0 else {**out, "latent_scale": self.latent_scale}

    def close(self) -> None:
        if self._owns_engine:
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
    "latent_scale": "float>0",
}


def make(arg: str, options: dict[str, Any], context: SourceContext) -> GeneratorSource:
    spec = f"generator:{arg}"
    opts = take_options(spec, options, OPTIONS, KINDS)
    overrides = {k: opts[k] for k in ("z_dim", "num_classes", "class_names", "output_range", "label_input")}
    if isinstance(overrides["class_names"], str):
        overrides["class_names"] = [overrides["class_names"]]
    if opts["image_size"] is not None:
        overrides["image_size"] = parse_size(opts["image_size"], f"source '{spec}': option image_size")
    engine = GeneratorEngine(
        arg,
        device=opts["device"] or context.device,
        batch_size=opts["batch_size"] or context.batch_size,
        num_requests=opts["num_requests"] if opts["num_requests"] is not None else context.num_requests,
        precision=opts["precision"] or context.precision,
        default_num_classes=context.num_classes,
        **overrides,
    )
    return GeneratorSource(spec, engine, opts["latent_scale"])
