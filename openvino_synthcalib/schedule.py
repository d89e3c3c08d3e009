"""Which class item ``i`` of a stream belongs to.

Uniform weights give round-robin order over a seeded permutation of the chosen classes: every
prefix of the stream (NNCF reads ``islice(dataset, n)``) is as balanced as it can be, the seed
decides which classes come first (300 items of a 1000-class generator cover another 300
classes for another seed), and a long stream covers all classes equally. Other weights use
stride scheduling: class ``c`` fires at times ``(k + 0.5) / w_c`` and items follow the merged
firing order (ties by the seeded class order), so prefixes stay proportional too.

Nothing here grows with the stream length: item ``i``'s class is computed from ``i`` alone
(for weights, by bisection on the firing time), so a stream may be as long as ``MAX_LENGTH``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import SynthcalibError
from .rng import item_rng

#: Longest stream: item indices stay exact in float64 firing times up to 2**53.
MAX_LENGTH = 2**53
TAG_CLASS_ORDER = 0xC1A55


class _Schedule:
    """What a stream asks of a schedule: each item's class and its occurrence within that class."""

    def labels_and_occurrences(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def labels(self, indices: np.ndarray) -> np.ndarray:
        return self.labels_and_occurrences(indices)[0]

    def occurrences(self, indices: np.ndarray) -> np.ndarray:
        return self.labels_and_occurrences(indices)[1]


class ClassSchedule(_Schedule):
    """Maps item indices to (class label, occurrence of that class so far)."""

    def __init__(
        self,
        num_classes: int,
        length: int,
        classes: Sequence[int] | None = None,
        weights: Sequence[float] | None = None,
        seed: int = 0,
    ) -> None:
        if num_classes <= 0:
            raise SynthcalibError(f"num_classes must be positive, got {num_classes}")
        if not 0 < int(length) <= MAX_LENGTH:
            raise SynthcalibError(f"num_samples: expected 1..{MAX_LENGTH} (2**53), got {length}")
        self.num_classes = num_classes
        self.length = int(length)
        chosen = list(range(num_classes)) if classes is None else [int(c) for c in classes]
        if not chosen:
            raise SynthcalibError("expected at least one class, got an empty list", key="classes")
        for c in chosen:
            if not 0 <= c < num_classes:
                raise SynthcalibError(f"class {c} is out of range 0..{num_classes - 1}", key="classes")
        if len(set(chosen)) != len(chosen):
            raise SynthcalibError(f"expected distinct classes, got {chosen}", key="classes")
        self.classes = np.asarray(chosen, dtype=np.int64)
        perm = item_rng(seed, TAG_CLASS_ORDER, 0).permutation(len(chosen))
        #: The chosen classes in this seed's order (round-robin order for uniform weights).
        self.order = self.classes[perm]
        self._weights: np.ndarray | None = None
        if weights is not None:
            try:
                w = np.asarray(list(weights), dtype=np.float64)
            except (TypeError, ValueError):
                raise SynthcalibError(f"expected numbers, got {weights!r}", key="class_weights") from None
            if w.shape != (len(chosen),):
                raise SynthcalibError(
                    f"expected {len(chosen)} weights (one per class), got {w.size}", key="class_weights"
                )
            if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
                raise SynthcalibError(
                    f"expected non-negative numbers with a positive sum, got {list(weights)}", key="class_weights"
                )
            if not np.allclose(w, w[0]):
                w = w[perm]
                keep = w > 0
                self.order = self.order[keep]
                self._weights = w[keep] / w[keep].sum()

    # ------------------------------------------------------------------ weighted: firing times

    def _times(self, slots: np.ndarray, k: np.ndarray) -> np.ndarray:
        assert self._weights is not None
        return (k + 0.5) / self._weights[slots]

    def _before(self, t: float) -> np.ndarray:
        """Per slot, how many of its firings come strictly before time ``t``."""
        assert self._weights is not None
        slots = np.arange(len(self._weights))
        k = np.maximum(0, np.ceil(t * self._weights - 0.5)).astype(np.int64)
        for _ in range(2):  # exact against the float firing times, whatever the rounding above
            k = np.where((k > 0) & (self._times(slots, np.maximum(k - 1, 0)) >= t), k - 1, k)
            k = np.where(self._times(slots, k) < t, k + 1, k)
        return k

    def _time_at_rank(self, rank: int) -> float:
        """The largest time with at most ``rank`` firings before it (bisection)."""
        assert self._weights is not None
        lo, hi = 0.0, (rank + 2.0) / float(self._weights.max())
        while True:
            mid = (lo + hi) / 2
            if mid <= lo or mid >= hi:
                return lo
            if int(self._before(mid).sum()) <= rank:
                lo = mid
            else:
                hi = mid

    def _window(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(slots, occurrences) of the items ``start..stop`` of a weighted schedule."""
        t_lo, t_hi = self._time_at_rank(start), self._time_at_rank(stop)
        first, last = self._before(t_lo), self._before(t_hi) + 1
        base = int(first.sum())
        slots = np.repeat(np.arange(len(first)), last - first)
        k = np.concatenate([np.arange(a, b) for a, b in zip(first, last)])
        order = np.lexsort((slots, self._times(slots, k)))[start - base : stop - base]
        return slots[order], k[order]

    # ------------------------------------------------------------------ public

    def labels_and_occurrences(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class label and occurrence (items of the same class before it) of each item index."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.length):
            raise IndexError(f"item indices must be in 0..{self.length - 1}")
        if self._weights is None:
            k = len(self.order)
            return self.order[indices % k], indices // k
        labels = np.empty(len(indices), np.int64)
        occurrences = np.empty(len(indices), np.int64)
        # consecutive runs share one window; scattered indices get one each
        breaks = np.flatnonzero(np.diff(indices) != 1) + 1
        for run in np.split(np.arange(len(indices)), breaks):
            if not run.size:
                continue
            a = int(indices[run[0]])
            slots, k = self._window(a, a + len(run))
            labels[run], occurrences[run] = self.order[slots], k
        return labels, occurrences

    def counts(self, length: int | None = None) -> np.ndarray:
        """Items per class (length ``num_classes``) among the first ``length`` items (default: all)."""
        n = self.length if length is None else int(length)
        per = np.zeros(self.num_classes, dtype=np.int64)
        if self._weights is None:
            q, r = divmod(n, len(self.order))
            per[self.order] = q
            per[self.order[:r]] += 1
            return per
        t = self._time_at_rank(n)
        before = self._before(t)
        base = int(before.sum())
        np.add.at(per, self.order, before)
        if n > base:
            slots, _ = self._window(base, n)
            np.add.at(per, self.order[slots], 1)
        return per


class ItemSchedule(_Schedule):
    """A schedule given item by item: ``labels[i]`` and ``occurrences[i]`` of each item (what
    :class:`ClassSchedule` computes). ``synthcalib evaluate`` walks every image of a folder once
    this way: class ``c``'s occurrences ``0..n_c - 1`` are its ``n_c`` files."""

    def __init__(self, num_classes: int, labels: Sequence[int], occurrences: Sequence[int]) -> None:
        self.num_classes = int(num_classes)
        self._labels = np.asarray(labels, dtype=np.int64)
        self._occurrences = np.asarray(occurrences, dtype=np.int64)
        if self._labels.shape != self._occurrences.shape or not self._labels.size:
            raise SynthcalibError("an item schedule needs one label and one occurrence per item, and some items")
        self.length = len(self._labels)
        self.classes = np.unique(self._labels)
        self.order = self.classes

    def labels_and_occurrences(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.length):
            raise IndexError(f"item indices must be in 0..{self.length - 1}")
        return self._labels[indices], self._occurrences[indices]

    def counts(self, length: int | None = None) -> np.ndarray:
        n = self.length if length is None else int(length)
        return np.bincount(self._labels[:n], minlength=self.num_classes)
