"""Which class item ``i`` of a stream belongs to.

Uniform weights give round-robin order: exact per-class counts whenever the length is a
multiple of the number of classes, and every prefix (NNCF reads ``islice(dataset, n)``) is
as balanced as it can be. Other weights use stride scheduling: class ``c`` fires at times
``(k + 0.5) / w_c`` and items follow the merged firing order, so prefixes stay proportional too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import SynthcalibError


class ClassSchedule:
    """Maps item indices to (class label, occurrence of that class so far)."""

    def __init__(
        self,
        num_classes: int,
        length: int,
        classes: Sequence[int] | None = None,
        weights: Sequence[float] | None = None,
    ) -> None:
        if num_classes <= 0:
            raise SynthcalibError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.length = int(length)
        chosen = list(range(num_classes)) if classes is None else [int(c) for c in classes]
        if not chosen:
            raise SynthcalibError("classes: expected at least one class, got an empty list")
        for c in chosen:
            if not 0 <= c < num_classes:
                raise SynthcalibError(f"classes: class {c} is out of range 0..{num_classes - 1}")
        if len(set(chosen)) != len(chosen):
            raise SynthcalibError(f"classes: expected distinct classes, got {chosen}")
        self.classes = np.asarray(chosen, dtype=np.int64)
        self._labels: np.ndarray | None = None
        self._occurrences: np.ndarray | None = None
        if weights is not None:
            w = np.asarray(list(weights), dtype=np.float64)
            if w.shape != (len(chosen),):
                raise SynthcalibError(f"class_weights: expected {len(chosen)} weights (one per class), got {len(w)}")
            if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
                raise SynthcalibError(
                    f"class_weights: expected non-negative numbers with a positive sum, got {list(weights)}"
                )
            if not np.allclose(w, w[0]):
                self._build_weighted(w / w.sum())

    def _build_weighted(self, w: np.ndarray) -> None:
        times, owners = [], []
        for slot, weight in enumerate(w):
            if weight == 0:
                continue
            k = np.arange(int(np.ceil(self.length * weight)) + 1)
            times.append((k + 0.5) / weight)
            owners.append(np.full(len(k), slot))
        t, o = np.concatenate(times), np.concatenate(owners)
        order = np.lexsort((o, t))[: self.length]
        slots = o[order]
        self._labels = self.classes[slots]
        occ = np.zeros(self.length, dtype=np.int64)
        for slot in np.unique(slots):
            where = slots == slot
            occ[where] = np.arange(int(where.sum()))
        self._occurrences = occ

    def labels(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        if self._labels is not None:
            return self._labels[indices]
        return self.classes[indices % len(self.classes)]

    def occurrences(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        if self._occurrences is not None:
            return self._occurrences[indices]
        return indices // len(self.classes)

    def counts(self) -> np.ndarray:
        """Items per class (length ``num_classes``) over the whole stream."""
        if self._labels is not None:
            return np.bincount(self._labels, minlength=self.num_classes)
        per = np.zeros(self.num_classes, dtype=np.int64)
        q, r = divmod(self.length, len(self.classes))
        per[self.classes] = q
        per[self.classes[:r]] += 1
        return per
