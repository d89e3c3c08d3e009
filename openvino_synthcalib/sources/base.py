"""What a calibration source is; how a source spec (``scheme:arg?key=value``) is read is in
:mod:`..specs`, whose names are re-exported here for plugins."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..classes import ClassList
from ..defaults import DEFAULTS
from ..errors import SynthcalibError
from ..rng import item_rng
from ..specs import MAX_IMAGE_SIDE, check_number, parse_size, parse_spec, take_options  # noqa: F401 - for plugins


@dataclass(frozen=True)
class Items:
    """A request for images: the items' indices and classes, the stream's seed, the size asked for
    (None: the source's own) and each item's occurrence within its class (None: not counted)."""

    indices: np.ndarray
    labels: np.ndarray
    seed: int
    size: tuple[int, int] | None = None
    occurrences: np.ndarray | None = None


@dataclass(frozen=True)
class SourceContext:
    """What the caller knows that a source may use: the target model's classes and size, devices."""

    num_classes: int | None = None
    device: str = DEFAULTS["device"]
    batch_size: int = DEFAULTS["batch_size"]
    num_requests: int = DEFAULTS["num_requests"]
    precision: str | None = DEFAULTS["precision"]


class Source:
    """A source of canonical images: RGB float32 NCHW in [0, 1].

    Subclasses set ``num_classes`` (and ``class_names``, ``class_ids`` where known), ``image_size``
    (``None`` when images are made at any requested size), ``conditional`` (whether the label of
    an item actually determines its content) and ``real`` (real data rather than synthetic), and
    implement :meth:`iter_images`.
    """

    scheme: str = ""
    num_classes: int = 1
    class_names: tuple[str, ...] | None = None
    #: Each class's identifier (a WordNet id), where the source has them.
    class_ids: tuple[str, ...] | None = None
    image_size: tuple[int, int] | None = None
    conditional: bool = False
    #: The classes that have items, where not all do (an image folder holding some of the classes of
    #: its class list); a stream over such a source must choose its classes among these.
    available_classes: tuple[int, ...] | None = None
    #: Real data (e.g. an image folder): quantization keeps the quantizer's defaults unless asked.
    real: bool = False
    batch_size: int = DEFAULTS["batch_size"]

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def iter_images(
        self,
        indices: np.ndarray,
        labels: np.ndarray,
        seed: int,
        size: tuple[int, int] | None = None,
        occurrences: np.ndarray | None = None,
    ) -> Iterator[np.ndarray]:
        """Batches of images for the given items; item ``i`` depends on ``(seed, i, label)`` only.

        ``occurrences`` (how many items of the same class precede each one) lets sources that
        draw from a finite pool, such as image folders, walk each class without repeats. A source
        implements this, or :meth:`images` (the same request as one :class:`Items`).
        """
        return self.images(Items(np.asarray(indices), np.asarray(labels), int(seed), size, occurrences))

    def images(self, items: Items) -> Iterator[np.ndarray]:
        """:meth:`iter_images` for ``items``."""
        raise NotImplementedError

    def output_size(self, size: tuple[int, int] | None) -> tuple[int, int]:
        """The size images come out at: the native one, else the requested one."""
        if self.image_size is not None:
            return self.image_size
        if size is None:
            raise SynthcalibError(
                f"source '{self.spec}' makes images of any size: give the target size (e.g. ?size=32x32)"
            )
        return size

    @property
    def names(self) -> tuple[str, ...]:
        return self.class_names or tuple(f"class{i}" for i in range(self.num_classes))

    @property
    def class_list(self) -> ClassList:
        """The source's classes: names, ids and aliases in the one type every class list has."""
        return ClassList.from_names(self.names, f"source '{self.spec}'", explicit=False, ids=self.class_ids)

    def choose(self, classes: Any, key: str = "classes") -> list[int] | None:
        """The classes a stream of this source draws: those ``classes`` names (indices, ids, names
        or synonyms, matched as class folders are: :meth:`ClassList.select`; errors keyed ``key``),
        else every class (those that have items, where not all do: ``available_classes``)."""
        if classes is None:
            return list(self.available_classes) if self.available_classes is not None else None
        chosen = self.class_list.select(classes, key)
        absent = [c for c in chosen if self.available_classes is not None and c not in self.available_classes]
        if absent:
            present = [self.names[c] for c in self.available_classes or ()]
            shown = ",".join(present[:10]) + (",..." if len(present) > 10 else "")
            raise SynthcalibError(
                lambda name: (
                    f"source '{self.spec}' has no items of class {absent[0]} ({self.names[absent[0]]}): "
                    f"it holds {len(present)} of its {self.num_classes} classes; choose among them with {name(key)}: {shown}"
                ),
                key=key,
            )
        return chosen

    @property
    def why_unlabelled(self) -> str | None:
        """Why items have no labels (one clause, for errors of what needs them); None when the
        source is class-conditional."""
        if self.conditional:
            return None
        return f"source '{self.spec}' is not class-conditional, so its items have no labels"

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "scheme": self.scheme,
            "num_classes": self.num_classes,
            "conditional": self.conditional,
            "real": self.real,
            "image_size": list(self.image_size) if self.image_size else None,
        }

    def check_classes(self, model_classes: int | None, key: str = "source", override: str | None = None) -> None:
        """A class-conditional source must have the classes of the classifier it calibrates. Errors
        are keyed ``key`` (the option that gave the source); ``override`` is the key of an option
        that accepts a mismatch, where the caller has one."""
        if self.conditional and model_classes is not None and self.num_classes != model_classes:
            raise SynthcalibError(
                lambda name: (
                    f"source '{self.spec}' has {self.num_classes} classes but the model outputs "
                    f"{model_classes}: use a source for this model's classes"
                    + (f", or use {name(override)}" if override else "")
                ),
                key=key,
            )

    def close(self) -> None:
        """Release what the source holds (compiled models, open files); sources that hold nothing
        have nothing to do. A closed source must not be used again."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class ItemSource(Source):
    """A source that makes each item from its own generator ``item_rng(seed, tag, i)``."""

    tag: int = 0

    def render(self, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
        """One image, RGB float32 [3, H, W] in [0, 1]."""
        raise NotImplementedError

    def images(self, items: Items) -> Iterator[np.ndarray]:
        hw = self.output_size(items.size)
        # Large images come in smaller batches, so that a batch stays within BATCH_BYTES.
        step = max(1, min(self.batch_size, BATCH_BYTES // (3 * 4 * hw[0] * hw[1])))
        for start in range(0, len(items.indices), step):
            chunk = items.indices[start : start + step]
            yield np.stack([self.render(item_rng(items.seed, self.tag, int(i)), hw) for i in chunk])


#: Memory bound of one batch of rendered images (float32).
BATCH_BYTES = 256 << 20

SourceFactory = Callable[[str, dict[str, Any], SourceContext], Source]


@dataclass(frozen=True)
class SourceType:
    """A scheme a plugin provides: ``factory(arg, options, context)`` builds the source."""

    scheme: str
    factory: SourceFactory
    help: str
    example: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
