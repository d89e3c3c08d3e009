"""What the server offers: generators and models, each under an opaque id (never a path)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import models
from ..classifier import classifier_classes
from ..errors import SynthcalibError
from ..sources.base import Source
from ..sources.generator import GeneratorSource
from .errors import UnknownId
from .params import shown

# Seconds of generation behind the card's images/s figure.
CARD_MEASURE_SECONDS = 1.0


def shipped_generators() -> list[tuple[str, Path]]:
    """``(name, path)`` of the generators shipped with the package (see :mod:`openvino_synthcalib.shipped`)."""
    from ..shipped import GENERATORS

    return [(name, GENERATORS[name]) for name in sorted(GENERATORS)]


def shipped_models() -> list[Path]:
    """The shipped demo classifier, offered when no ``--model`` is given."""
    from ..shipped import DEMO_CLASSIFIER

    return [DEMO_CLASSIFIER]


@dataclass
class GeneratorEntry:
    """A generator and its compiled source, shared by every request (``GeneratorEngine.run`` is thread-safe)."""

    id: str
    path: Path
    label: str
    source: GeneratorSource
    _card: dict[str, Any] | None = None
    _card_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def info(self) -> Any:
        return self.source.engine.info

    def summary(self) -> dict[str, Any]:
        info = self.info
        return {
            "id": self.id,
            "label": self.label,
            "num_classes": info.num_classes,
            "class_names": list(info.names),
            "image_size": list(info.image_size),
            "spec": self.source.spec,
        }

    def card(self) -> dict[str, Any]:
        """Metadata, parameters, file size and images/s measured here (once, then cached)."""
        with self._card_lock:
            if self._card is None:
                model = models.read_model(self.path, "generator")
                self._card = {
                    **self.summary(),
                    **self.info.to_dict(),
                    "parameters": models.parameter_count(model),
                    "file_bytes": models.file_size(self.path),
                    "images_per_s": images_per_second(self.source, CARD_MEASURE_SECONDS),
                    "batch_size": self.source.batch_size,
                    "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
                }
            return self._card


@dataclass
class ModelEntry:
    """A model given on the command line (or the shipped demo classifier)."""

    id: str
    path: Path
    label: str
    classes: int | None

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "classes": self.classes}


def images_per_second(source: Source, seconds: float) -> float:
    """Images/s of a :class:`SyntheticStream` over ``source`` for about ``seconds`` (after one warm-up batch)."""
    from ..stream import SyntheticStream

    stream = SyntheticStream(source, 10_000_000, seed=0)
    batches = stream.batches()
    next(batches)
    n, started = 0, time.perf_counter()
    for images, _ in batches:
        n += len(images)
        if time.perf_counter() - started >= seconds:
            break
    batches.close()
    return n / (time.perf_counter() - started)


class Catalog:
    """The generators and models a server offers, by id."""

    def __init__(self, generators: list[GeneratorEntry], models_: list[ModelEntry]) -> None:
        self.generators = {g.id: g for g in generators}
        self.models = {m.id: m for m in models_}

    @classmethod
    def load(
        cls,
        generators: Sequence[str | Path] = (),
        model_paths: Sequence[str | Path] = (),
        *,
        shipped: bool = True,
    ) -> Catalog:
        """Check and compile the generators (command line first, then shipped ones) and read the models."""
        from ..engine import GeneratorEngine

        # A shipped generator goes by its name (generator:cifar10), not by where the package lives.
        paths = [(Path(g), str(g), f"generator:{g}") for g in generators]
        if shipped:
            given = {p.resolve() for p, _, _ in paths if p.exists()}
            paths += [
                (p, f"{p.stem} (shipped)", f"generator:{name}")
                for name, p in shipped_generators()
                if p.resolve() not in given
            ]
        if not paths:
            raise SynthcalibError("serve: no generator: give --generator G.xml (no shipped generator was found)")
        gens = []
        for i, (path, label, spec) in enumerate(paths, 1):
            # The same engine settings as `synthcalib generate` (defaults), so files match byte for byte.
            source = GeneratorSource(spec, GeneratorEngine(path))
            gens.append(GeneratorEntry(f"g{i}", path, label, source))
        entries = []
        named = [(Path(m), str(m)) for m in model_paths]
        if not named and shipped:
            named = [(p, f"{p.stem} (shipped)") for p in shipped_models()]
        for i, (path, label) in enumerate(named, 1):
            model = models.read_model(path, "--model")
            entries.append(ModelEntry(f"m{i}", path, label, classifier_classes(model)))
        return cls(gens, entries)

    def generator(self, gid: str) -> GeneratorEntry:
        if gid not in self.generators:
            raise UnknownId(f"unknown generator id {shown(gid)}; expected one of {', '.join(self.generators)}")
        return self.generators[gid]

    def model(self, mid: str) -> ModelEntry:
        if mid not in self.models:
            known = ", ".join(self.models) or "none (start the server with --model M.onnx)"
            raise UnknownId(f"unknown model id {shown(mid)}; expected one of {known}")
        return self.models[mid]
