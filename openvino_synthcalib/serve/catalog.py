"""What the server offers: generators and models, each under an opaque id (never a path)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import models
from ..classifier import classifier_classes
from ..engine import GeneratorEngine
from ..errors import SynthcalibError
from ..plugins import presets
from ..preprocessing import PreprocessingUnstated, declared, describe_values
from ..shipped import DEMO_CLASSIFIER, GENERATORS, generator_path
from ..sources.base import Source
from ..sources.generator import GeneratorSource
from ..stream import SyntheticStream
from ..transforms import as_transform
from .errors import UnknownId
from .params import preview_defaults, shown

# Seconds of generation behind the card's images/s figure.
CARD_MEASURE_SECONDS = 1.0
# Preview images per class the page asks for when the generator's classes and image size allow it.
PREVIEW_PER_CLASS = 10


def shipped_generators() -> list[tuple[str, Path]]:
    """``(name, path)`` of the generators shipped with the package (see :mod:`openvino_synthcalib.shipped`)."""
    return [(name, GENERATORS[name]) for name in sorted(GENERATORS)]


def shipped_models() -> list[Path]:
    """The shipped demo classifier, offered when no ``--model`` is given."""
    return [DEMO_CLASSIFIER]


# Normalisation values, and what a preset that leaves one out means by it.
_VALUE_DEFAULTS = {"input_range": (0.0, 1.0), "mean": None, "std": None, "channel_order": "RGB"}


def _values(values: dict[str, Any]) -> dict[str, Any]:
    """Comparable normalisation values: floats rounded to 6 places, one value for all channels spelled
    out for each, the channel order in capitals."""
    out: dict[str, Any] = {}
    for key, default in _VALUE_DEFAULTS.items():
        v = values.get(key, default)
        if isinstance(v, str):
            out[key] = v.upper()
        elif v is not None:
            numbers = tuple(round(float(x), 6) for x in v)
            out[key] = numbers * 3 if key != "input_range" and len(numbers) == 1 else numbers
        else:
            out[key] = None
    return out


def matching_preset(values: dict[str, Any]) -> str | None:
    """The preset whose values ``values`` are (a model's [-1, 1] as mean/std 0.5 is ``inception``), or None."""
    target = _values(values)
    return next((name for name, preset in presets().items() if _values(preset) == target), None)


def preprocessing_summary(values: dict[str, Any]) -> dict[str, Any]:
    """Normalisation values as the page shows them: the values, ``origin`` (where they came from),
    ``preset`` (the preset they equal, if any) and ``text``, a short reading such as ``[-1, 1]``."""
    out = {
        k: [float(x) for x in v] if isinstance(v, (tuple, list)) else v
        for k, v in values.items()
        if k in _VALUE_DEFAULTS
    }
    out = {**{k: None for k in _VALUE_DEFAULTS}, **out}
    return {**out, "origin": values.get("origin"), "preset": matching_preset(out), "text": describe_values(out)}


def declared_preprocessing(model: Any, label: str) -> dict[str, Any] | None:
    """The normalisation ``model`` states about itself, as a calibration with no preset takes it
    (:mod:`openvino_synthcalib.preprocessing`: its metadata, or a uint8 input), summarised for the
    page; ``None`` when it says nothing (then the user must choose a preset)."""
    try:
        found = declared(model)
    except SynthcalibError as exc:  # a statement that cannot be read: said at start, naming the model
        raise SynthcalibError(f"--model '{label}': {exc}") from None
    try:
        transform = as_transform(None, model)
    except PreprocessingUnstated:
        return None
    except SynthcalibError:  # not one image input: the page refuses to calibrate it, with its reason
        return preprocessing_summary(found) if found else None
    return preprocessing_summary(transform.describe())


def display_names(paths: Sequence[Path]) -> list[str]:
    """How the page names files: the path relative to the working folder when the file is under it,
    otherwise its name (with as many parent folders as it takes to tell two files apart); never an
    absolute path."""
    cwd = Path.cwd().resolve()
    full = [Path(os.path.abspath(p)) for p in paths]
    names: list[str | None] = []
    for p in full:
        try:
            names.append(p.relative_to(cwd).as_posix())
        except ValueError:
            names.append(None)
    outside = [p for p, n in zip(full, names) if n is None]
    for i, p in enumerate(full):
        if names[i] is not None:
            continue
        depth = 1
        while depth < len(p.parts) - 1 and any(q != p and q.parts[-depth:] == p.parts[-depth:] for q in outside):
            depth += 1
        names[i] = Path(*p.parts[-depth:]).as_posix()
    return [str(n) for n in names]


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
            "preview": preview_defaults(info.num_classes, tuple(info.image_size), PREVIEW_PER_CLASS),
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
    """A model given on the command line (or the shipped demo classifier). ``preprocessing``: what
    the model declares about its inputs (see :func:`declared_preprocessing`), ``None`` when it says nothing."""

    id: str
    path: Path
    label: str
    classes: int | None
    preprocessing: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "classes": self.classes, "preprocessing": self.preprocessing}


def images_per_second(source: Source, seconds: float) -> float:
    """Images/s of a :class:`SyntheticStream` over ``source`` for about ``seconds`` (after one warm-up batch)."""
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
        # A shipped generator goes by its name (generator:cifar10), not by where the package lives;
        # `--generator imagenet` names it too. Labels are names or relative paths, never absolute ones.
        given = [(generator_path(g), str(g)) for g in generators]
        labels = display_names([p for p, _ in given])
        paths = [
            (p, f"{text} (shipped)" if text in GENERATORS and p == GENERATORS[text] else label, f"generator:{text}")
            for (p, text), label in zip(given, labels)
        ]
        if shipped:
            seen = {p.resolve() for p, _ in given if p.exists()}
            paths += [
                (p, f"{name} (shipped)", f"generator:{name}")
                for name, p in shipped_generators()
                if p.resolve() not in seen
            ]
        if not paths:
            raise SynthcalibError("serve: no generator: give --generator G.xml (no shipped generator was found)")
        gens = []
        for i, (path, label, spec) in enumerate(paths, 1):
            # The same engine settings as `synthcalib generate` (defaults), so files match byte for byte.
            source = GeneratorSource(spec, GeneratorEngine(path))
            gens.append(GeneratorEntry(f"g{i}", path, label, source))
        entries = []
        named = [(Path(m), label) for m, label in zip(model_paths, display_names([Path(m) for m in model_paths]))]
        if not named and shipped:
            named = [(p, f"{p.stem} (shipped)") for p in shipped_models()]
        for i, (path, label) in enumerate(named, 1):
            model = models.read_model(path, "--model")
            preprocessing = declared_preprocessing(model, label)
            entries.append(ModelEntry(f"m{i}", path, label, classifier_classes(model), preprocessing))
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
