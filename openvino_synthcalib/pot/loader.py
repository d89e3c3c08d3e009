"""The POT ``DataLoader`` over a synthetic stream (imports POT: load through the package lazily)."""

from __future__ import annotations

from typing import Any

import numpy as np
from openvino.tools.pot.api.data_loader import DataLoader

from ..errors import SynthcalibError
from ..stream import SyntheticStream
from .engine_config import lookup, make_setup

#: Items above this many bytes in total are generated on demand instead of kept in memory.
CACHE_LIMIT_BYTES = 1 << 30


class ClassLabel(int):
    """An annotation: the conditioning class (an ``int``) that also knows its item index."""

    index: int

    def __new__(cls, label: int, index: int) -> ClassLabel:
        obj = super().__new__(cls, int(label))
        obj.index = int(index)
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (ClassLabel, (int(self), self.index))

    def __repr__(self) -> str:
        return f"ClassLabel({int(self)}, index={self.index})"


class SyntheticDataLoader(DataLoader):
    """A POT ``DataLoader`` over a :class:`~openvino_synthcalib.stream.SyntheticStream`.

    Item ``i`` is ``(model_input [C, H, W], annotation)`` where the annotation is the item's
    conditioning class (a :class:`ClassLabel`, i.e. an ``int`` carrying ``.index``). Items are
    exactly those of the NNCF ``synthcalib.Dataset`` built with the same source, model,
    preprocessing and seed: both read the same stream.

    Build it from a stream, or from an engine-section dict plus the model to quantize::

        SyntheticDataLoader(stream)
        SyntheticDataLoader({"source": "generator:gen.xml", "subset_size": 300, "seed": 0,
                             "preprocessing": {"preset": "cifar10"}}, model="model.xml")
    """

    def __init__(self, config: Any = None, *, model: Any = None, stream: Any = None, cache: bool | None = None) -> None:
        if isinstance(config, SyntheticStream):
            config, stream = None, config
        cfg = dict(config or {})
        super().__init__(cfg)
        if stream is None:
            if not cfg:
                raise SynthcalibError("SyntheticDataLoader: give a SyntheticStream or an engine-section dict")
            if model is None:
                raise SynthcalibError(
                    "SyntheticDataLoader: 'model' (the model to quantize) is needed with a config dict"
                )
            setup = make_setup({"type": "synthetic", **cfg}, model)
            stream = setup.stream
            self._owned = stream
            cache = setup.cache if cache is None else cache
        self.stream = stream
        self._owned = getattr(self, "_owned", None)
        self._cache_enabled = True if cache is None else bool(cache)
        self._items: list[tuple[np.ndarray, ClassLabel]] | None = None

    def __len__(self) -> int:
        return len(self.stream)

    def _fill_cache(self) -> bool:
        """Generate all items in stream batches once, if they fit in memory."""
        if self._items is not None:
            return True
        if not self._cache_enabled:
            return False
        items: list[tuple[np.ndarray, ClassLabel]] = []
        for inputs, labels in self.stream.batches():
            if not items and inputs[0].nbytes * len(self.stream) > CACHE_LIMIT_BYTES:
                self._cache_enabled = False  # too big to keep: generate on demand
                return False
            for x, y in zip(inputs, labels):
                items.append((np.array(x, copy=True), ClassLabel(int(y), len(items))))
        self._items = items
        return True

    def __getitem__(self, index: int) -> tuple[np.ndarray, ClassLabel]:
        n = len(self.stream)
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"item {index} is out of range for a loader of {n}")
        if self._fill_cache():
            return self._items[i]  # type: ignore[index]
        x, y = self.stream[i]
        return x, ClassLabel(y, i)

    def labels(self) -> np.ndarray:
        return self.stream.labels()

    def inputs(self, indices: Any = None) -> np.ndarray:
        """Stacked model inputs of the given items (all by default)."""
        idx = range(len(self)) if indices is None else indices
        return np.stack([self[i][0] for i in idx])

    def close(self) -> None:
        """Release the stream (and compiled generator) this loader built from a config dict."""
        self._items = None
        if self._owned is not None:
            self._owned.close()


def create_data_loader(engine_config: Any, model: Any = None) -> SyntheticDataLoader:
    """The loader for a configured ``"type": "synthetic"`` engine section."""
    setup = lookup(engine_config)
    return SyntheticDataLoader(stream=setup.stream, cache=setup.cache)
