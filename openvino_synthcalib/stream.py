"""SyntheticStream: a finite, class-balanced, deterministic sequence of model inputs."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .defaults import DEFAULTS
from .errors import SynthcalibError
from .schedule import ClassSchedule
from .sources.base import Source, SourceContext
from .transforms import Transform

_CACHED_BLOCKS = 4


def resolve_classes(source: Source, classes: Sequence[int | str] | None) -> list[int] | None:
    """Class indices from indices or names (names are matched against the source's classes)."""
    if classes is None:
        return None
    if isinstance(classes, (str, int)):
        classes = [classes]
    names = list(source.names)
    out = []
    for c in classes:
        if isinstance(c, str) and not c.strip().lstrip("-").isdigit():
            if c not in names:
                raise SynthcalibError(f"classes: unknown class name {c!r}; the source has {', '.join(names)}")
            out.append(names.index(c))
        else:
            out.append(int(c))
    return out


class SyntheticStream:
    """``num_samples`` items; item ``i`` is ``(model_input [C, H, W], class label)``.

    Item ``i`` is a pure function of ``(seed, i)``: its class comes from a class-balanced
    schedule, its image from the source. Iteration generates ``batch_size`` items at a time
    (pipelined by the source), so memory does not grow with ``num_samples``; indexing
    generates the aligned block around ``i`` and keeps a few blocks cached.
    """

    def __init__(
        self,
        source: str | Source,
        num_samples: int = DEFAULTS["num_samples"],
        *,
        seed: int = DEFAULTS["seed"],
        transform: Transform | None = None,
        classes: Sequence[int | str] | None = None,
        class_weights: Sequence[float] | None = None,
        context: SourceContext | None = None,
    ) -> None:
        from .plugins import resolve_source

        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples <= 0:
            raise SynthcalibError(f"num_samples: expected a positive integer, got {num_samples!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise SynthcalibError(f"seed: expected a non-negative integer, got {seed!r}")
        self.source = resolve_source(source, context)
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.transform = transform
        self.schedule = ClassSchedule(
            self.source.num_classes, self.num_samples, resolve_classes(self.source, classes), class_weights
        )
        self.block = self.source.batch_size
        self._blocks: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    @property
    def target_size(self) -> tuple[int, int] | None:
        return self.transform.size if self.transform is not None else None

    def __len__(self) -> int:
        return self.num_samples

    def labels(self) -> np.ndarray:
        return self.schedule.labels(np.arange(self.num_samples))

    def _prepare(self, images: np.ndarray) -> np.ndarray:
        return self.transform(images) if self.transform is not None else np.ascontiguousarray(images, np.float32)

    def batches(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(inputs [n, ...], labels [n])`` for items ``start..stop``, ``batch_size`` at a time."""
        stop = self.num_samples if stop is None else min(stop, self.num_samples)
        indices = np.arange(start, stop, dtype=np.int64)
        labels = self.schedule.labels(indices)
        occurrences = self.schedule.occurrences(indices)
        pos = 0
        for images in self.source.iter_images(indices, labels, self.seed, self.target_size, occurrences):
            n = len(images)
            yield self._prepare(images), labels[pos : pos + n]
            pos += n

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        for inputs, labels in self.batches():
            for x, y in zip(inputs, labels):
                yield x, int(y)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        if isinstance(index, slice):
            raise TypeError("SyntheticStream does not support slicing; use batches(start, stop)")
        i = int(index)
        if i < 0:
            i += self.num_samples
        if not 0 <= i < self.num_samples:
            raise IndexError(f"item {index} is out of range for a stream of {self.num_samples}")
        block = i // self.block
        if block not in self._blocks:
            start = block * self.block
            inputs, labels = zip(*self.batches(start, start + self.block))
            self._blocks[block] = (np.concatenate(inputs), np.concatenate(labels))
            while len(self._blocks) > _CACHED_BLOCKS:
                self._blocks.popitem(last=False)
        inputs, labels = self._blocks[block]
        return inputs[i - block * self.block], int(labels[i - block * self.block])

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source.describe(),
            "num_samples": self.num_samples,
            "seed": self.seed,
            "samples_per_class": {name: int(n) for name, n in zip(self.source.names, self.schedule.counts()) if n},
            "transform": self.transform.describe() if self.transform else None,
        }


def as_transform(transform: Any, model: Any = None) -> Transform | None:
    """A Transform from a Transform, a preset name, a dict of options, or None (model-derived)."""
    if isinstance(transform, Transform):
        return transform
    if transform is not None and callable(transform) and not isinstance(transform, (str, dict)):
        return transform  # any callable mapping canonical [n, 3, H, W] batches to model inputs
    options: dict[str, Any] = {}
    if isinstance(transform, str):
        options["preset"] = transform
    elif isinstance(transform, dict):
        options.update(transform)
    elif transform is not None:
        raise SynthcalibError(
            f"transform: expected a Transform, preset name, dict of options or callable, got {type(transform).__name__}"
        )
    if model is not None:
        return Transform.for_model(model, **options)
    return Transform.from_options(**options) if options else None


def make_stream(
    source: str | Source,
    num_samples: int = DEFAULTS["num_samples"],
    *,
    model: Any = None,
    transform: Any = None,
    seed: int = DEFAULTS["seed"],
    classes: Sequence[int | str] | None = None,
    class_weights: Sequence[float] | None = None,
    device: str = DEFAULTS["device"],
    batch_size: int = DEFAULTS["batch_size"],
    num_requests: int = DEFAULTS["num_requests"],
    precision: str | None = DEFAULTS["precision"],
) -> SyntheticStream:
    """A stream for a target ``model`` (path or ``openvino.Model``): its input size, layout and
    class count are read from it; ``transform`` adds the normalisation (e.g. ``"cifar10"``)."""
    from . import models

    if model is not None and not hasattr(model, "inputs"):
        model = models.read_model(model, "model")
    tf = as_transform(transform, model)
    context = SourceContext(
        num_classes=models.classifier_classes(model) if model is not None else None,
        image_size=getattr(tf, "size", None),
        device=device,
        batch_size=batch_size,
        num_requests=num_requests,
        precision=precision,
    )
    return SyntheticStream(
        source, num_samples, seed=seed, transform=tf, classes=classes, class_weights=class_weights, context=context
    )
