"""Asynchronous inference in submission order, shared by generation and evaluation."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from .errors import SynthcalibError
from .models import first_line

#: Used when a device cannot say how many requests it runs best with.
FALLBACK_NUM_REQUESTS = 2


def num_requests(compiled: Any, requested: int = 0) -> int:
    """``requested`` infer requests, or (for 0) the device's optimal number."""
    if requested > 0:
        return requested
    try:
        return max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    except Exception:  # a device (or plugin version) without the property
        return FALLBACK_NUM_REQUESTS


def _failure(what: str, exc: Exception) -> SynthcalibError:
    return SynthcalibError(f"inference of {what} failed: {first_line(exc)}")


def run_ordered(
    compiled: Any,
    inputs: Iterable[Any],
    requests: int,
    read: Callable[[Any], Any],
    what: str = "the model",
) -> Iterator[Any]:
    """Infer ``inputs`` with up to ``requests`` requests in flight (0: the device's optimum) and
    yield ``read(request)`` in submission order. ``read`` must copy what it keeps.

    A failed inference raises :class:`SynthcalibError` naming ``what`` (waiting on each request
    rethrows its error, where a callback queue would silently never report back).
    """
    pool = [compiled.create_infer_request() for _ in range(num_requests(compiled, requests))]
    free: deque[Any] = deque(pool)
    busy: deque[Any] = deque()

    def finish(request: Any) -> Any:
        try:
            request.wait()
        except Exception as exc:
            raise _failure(what, exc) from None
        free.append(request)
        return read(request)

    try:
        for item in inputs:
            if not free:
                yield finish(busy.popleft())
            request = free.popleft()
            try:
                request.start_async(item)
            except Exception as exc:
                raise _failure(what, exc) from None
            busy.append(request)
        while busy:
            yield finish(busy.popleft())
    finally:
        for request in busy:  # the consumer stopped early, or something failed: drain quietly
            try:
                request.wait()
            except Exception:
                pass


def top1(request: Any) -> np.ndarray:
    """Top-1 class of each item of a classifier's first output (a copy)."""
    logits = request.get_output_tensor(0)
    return np.asarray(logits.data).reshape(logits.shape[0], -1).argmax(axis=1)


def predict(
    compiled: Any, batches: Iterable[np.ndarray], requests: int = 0, what: str = "the model"
) -> Iterator[np.ndarray]:
    """Top-1 class per item for input batches, in order, with asynchronous requests."""
    return run_ordered(compiled, ({0: b} for b in batches), requests, top1, what)
