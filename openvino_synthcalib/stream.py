"""SyntheticStream: a finite, class-balanced, deterministic sequence of model inputs."""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from . import backends
from .checks import checked, integer
from .defaults import DEFAULTS
from .errors import SynthcalibError
from .plugins import resolve_source
from .schedule import ClassSchedule
from .sources.base import Source, SourceContext
from .transforms import Transform, as_transform, compile_steps

_CACHED_BLOCKS = 4


#: The environment variable that overrides ``DEFAULTS["stall_timeout"]`` (seconds).
STALL_TIMEOUT_ENV = "SYNTHCALIB_STALL_TIMEOUT"
#: After Ctrl+C, how long closing (at the latest at exit) waits for the producer to finish its batch.
_INTERRUPT_WAIT = 2.0


def stall_timeout() -> float:
    """Seconds a prefetching stream may go without producing an item: ``$SYNTHCALIB_STALL_TIMEOUT``,
    else ``DEFAULTS["stall_timeout"]``."""
    text = os.environ.get(STALL_TIMEOUT_ENV, "").strip()
    if not text:
        return float(DEFAULTS["stall_timeout"])
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise SynthcalibError(f"{STALL_TIMEOUT_ENV}={text!r}: expected a positive number of seconds")
    return value


class Activity:
    """What a producer is doing now (one line), for the error a stalled consumer raises."""

    def __init__(self, what: str = "producing the next item") -> None:
        self.what = what
        self.since = time.monotonic()

    def set(self, what: str) -> None:
        self.what, self.since = what, time.monotonic()


class _Buffer:
    """What a prefetch thread shares with its consumer (never the consumer object itself, so that
    an abandoned :class:`Prefetch` is collected and stops its thread)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.items: deque[tuple[Any, int]] = deque()
        self.bytes = 0
        self.done = False
        self.stop = False
        self.error: BaseException | None = None
        self.cond = threading.Condition()


def _size(item: Any) -> int:
    parts = item if isinstance(item, tuple) else (item,)
    return sum(getattr(p, "nbytes", 0) for p in parts)


# Prefetchers still alive, closed at interpreter exit: a daemon thread killed inside an OpenVINO
# inference call aborts the process ("terminate called without an active exception").
_LIVE: weakref.WeakSet[Prefetch] = weakref.WeakSet()


@atexit.register
def _close_prefetchers() -> None:
    for prefetch in list(_LIVE):
        prefetch.close()


def _produce(buffer: _Buffer, items: Iterator[Any]) -> None:
    try:
        for item in items:
            size = _size(item)
            with buffer.cond:
                while not buffer.stop and buffer.items and buffer.bytes + size > buffer.max_bytes:
                    buffer.cond.wait()
                if buffer.stop:
                    return
                buffer.items.append((item, size))
                buffer.bytes += size
                buffer.cond.notify_all()
    except BaseException as exc:  # handed to the consumer, raised there
        with buffer.cond:
            buffer.error = exc
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()
        with buffer.cond:
            buffer.done = True
            buffer.cond.notify_all()


class Prefetch:
    """Iterate ``items`` (arrays, or tuples of arrays) in a background thread, ahead of the consumer
    by at most ``max_bytes`` (and at least one item). The thread starts at once.

    Order and values are unchanged; an exception in the producer is raised in the consumer;
    :meth:`close` (or dropping the iterator) stops the producer, which closes ``items`` in its own
    thread. A consumer that waits ``timeout`` seconds (default: :func:`stall_timeout`) for
    an item raises :class:`SynthcalibError` naming what the producer was doing (``activity``, which
    the producer keeps up to date); Ctrl+C in that wait stops at once. Closing waits for the
    producer at most ``timeout`` seconds (none after a stall, a moment after Ctrl+C).
    """

    def __init__(
        self,
        items: Iterator[Any],
        max_bytes: int,
        activity: Activity | None = None,
        timeout: float | None = None,
        name: str = "the item stream",
    ) -> None:
        self._stall = stall_timeout() if timeout is None else float(timeout)
        self._join_wait = self._stall
        self._activity = activity or Activity()
        self._name = name
        self._buffer = _Buffer(max_bytes)
        self._thread = threading.Thread(target=_produce, args=(self._buffer, items), name="synthcalib-prefetch")
        self._thread.daemon = True
        _LIVE.add(self)
        self._thread.start()

    def __iter__(self) -> Prefetch:
        return self

    def __next__(self) -> Any:
        buffer = self._buffer
        try:
            with buffer.cond:
                if not buffer.items and not buffer.done and not buffer.stop:
                    deadline = time.monotonic() + self._stall
                    while not buffer.items and not buffer.done:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        buffer.cond.wait(left)  # interruptible: Ctrl+C raises KeyboardInterrupt here
                if buffer.items:
                    item, size = buffer.items.popleft()
                    buffer.bytes -= size
                    buffer.cond.notify_all()
                    return item
                stalled = not buffer.done and not buffer.stop
                error = buffer.error
        except KeyboardInterrupt:  # stop at once; at exit, the producer gets a moment to finish its batch
            self._join_wait = min(self._join_wait, _INTERRUPT_WAIT)
            self._stop()
            raise
        if stalled:
            activity = self._activity
            doing, since = activity.what, time.monotonic() - activity.since
            self._join_wait = 0.0  # the producer is stuck: never wait for it again
            self.close()
            raise SynthcalibError(
                f"{self._name} produced no item for {self._stall:g} s: it has been {doing} for {since:.0f} s "
                f"(set {STALL_TIMEOUT_ENV}=SECONDS to wait longer)"
            )
        self.close()
        if error is not None:
            raise error
        raise StopIteration

    def _stop(self) -> None:
        buffer = self._buffer
        with buffer.cond:
            buffer.stop = True
            buffer.items.clear()
            buffer.bytes = 0
            buffer.cond.notify_all()

    def close(self) -> None:
        """Stop the producer and wait for it, for a bounded time (idempotent)."""
        self._stop()
        if self._thread is not threading.current_thread() and self._join_wait > 0:
            self._thread.join(self._join_wait)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class SyntheticStream:
    """``num_samples`` items; item ``i`` is ``(model_input [C, H, W], class label)``.

    Item ``i`` is a pure function of ``(seed, i)``: its class comes from a class-balanced
    schedule (see :class:`~openvino_synthcalib.schedule.ClassSchedule`), its image from the
    source. Iteration generates ``batch_size`` items at a time, up to ``prefetch`` bytes ahead of
    the consumer in a background thread (0: no thread), so memory does not grow with ``num_samples``; indexing
    generates the aligned block around ``i`` and keeps a few blocks cached. Every batch is
    checked for NaN/inf, before and after preprocessing. ``progress(first item, count)`` is called
    as each batch is made (in the producing thread): how a caller follows a pass (the page's counters).

    A stream built from a spec owns its source: :meth:`close` (or ``with``) releases it.
    ``schedule`` (an :class:`~openvino_synthcalib.schedule.ItemSchedule` of ``num_samples`` items)
    replaces the class-balanced schedule: ``classes`` and ``class_weights`` are then not used.
    """

    def __init__(
        self,
        source: str | Source,
        num_samples: int = DEFAULTS["num_samples"],
        *,
        seed: int = DEFAULTS["seed"],
        transform: Any = None,
        classes: Sequence[int | str] | None = None,
        class_weights: Sequence[float] | None = None,
        context: SourceContext | None = None,
        prefetch: int = DEFAULTS["prefetch"],
        progress: Callable[[int, int], None] | None = None,
        schedule: Any = None,
    ) -> None:
        checked(lambda v: integer(v, 1), num_samples, "num_samples")
        checked(lambda v: integer(v, 0, 2**63 - 1), seed, "seed")
        checked(lambda v: integer(v, 0), prefetch, "prefetch")
        self.progress = progress
        self._owns_source = not isinstance(source, Source)
        self.source = resolve_source(source, context)
        try:
            self.num_samples = int(num_samples)
            self.seed = int(seed)
            self.transform = as_transform(transform)
            self.prefetch = prefetch
            if schedule is not None and schedule.length != self.num_samples:
                raise SynthcalibError(f"schedule: {schedule.length} items, but num_samples is {self.num_samples}")
            self.schedule = schedule or ClassSchedule(
                self.source.num_classes,
                self.num_samples,
                self.source.choose(classes),  # by default, those with items (a folder of some classes)
                class_weights,
                seed=self.seed,
            )
        except BaseException:
            self.close()
            raise
        self.block = self.source.batch_size
        self._blocks: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    @property
    def target_size(self) -> tuple[int, int] | None:
        return getattr(self.transform, "size", None)

    def __len__(self) -> int:
        return self.num_samples

    def labels(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The class of items ``start..stop`` (all by default)."""
        stop = self.num_samples if stop is None else min(stop, self.num_samples)
        return self.schedule.labels(np.arange(start, stop, dtype=np.int64))

    def _prepare(self, images: np.ndarray) -> np.ndarray:
        return self.transform(images) if self.transform is not None else np.ascontiguousarray(images, np.float32)

    def _generate(
        self, start: int, stop: int, activity: Activity | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batches of items; what is being done is kept in ``activity``."""
        activity = activity or Activity()
        spec = self.source.spec
        step = max(self.block, 1)
        for chunk in range(start, stop, 64 * step):  # class schedule per chunk: flat in the stream length
            indices = np.arange(chunk, min(stop, chunk + 64 * step), dtype=np.int64)
            labels, occurrences = self.schedule.labels_and_occurrences(indices)
            batches = iter(self.source.iter_images(indices, labels, self.seed, self.target_size, occurrences))
            pos = 0
            try:
                while True:
                    if pos < len(indices):
                        first, last = int(indices[pos]), int(indices[min(pos + step, len(indices)) - 1])
                        activity.set(f"generating items {first}..{last} of '{spec}'")
                    images = next(batches, None)
                    if images is None:
                        break
                    n = len(images)
                    first = int(indices[pos])
                    activity.set(self._doing(images, f"items {first}..{first + n - 1} of '{spec}'"))
                    if not np.isfinite(images).all():
                        raise SynthcalibError(
                            f"source '{spec}' produced NaN or inf pixels (items {first}..{first + n - 1}): "
                            "the source is broken or its output_range is wrong"
                        )
                    x = self._prepare(images)
                    if not np.isfinite(x).all():
                        raise SynthcalibError(
                            f"preprocessing {self._describe_transform()} turned items {first}..{first + n - 1} "
                            f"of '{spec}' into NaN or inf values: check mean, std and input_range"
                        )
                    if self.progress is not None:
                        self.progress(first, n)
                    yield x, labels[pos : pos + n]
                    pos += n
            finally:
                close = getattr(batches, "close", None)
                if close is not None:
                    close()  # finishes the source's inference requests in flight

    def _doing(self, images: np.ndarray, items: str) -> str:
        """``resizing ITEMS from 32x32 to 224x224`` or ``preprocessing ITEMS`` (for a stall error)."""
        size = self.target_size
        hw = tuple(np.shape(images)[-2:])
        if size is not None and hw != tuple(size):
            return f"resizing {items} from {hw[0]}x{hw[1]} to {size[0]}x{size[1]}"
        return f"preprocessing {items}"

    def _describe_transform(self) -> str:
        if isinstance(self.transform, Transform):
            d = self.transform.describe()
            return f"(mean={d['mean']}, std={d['std']}, input_range={d['input_range']}, dtype={d['dtype']})"
        return repr(self.transform)

    def _compile_steps(self) -> None:
        """Compile the OpenVINO steps of the items (resize, grey) in this thread, before a prefetch
        thread runs them: OpenVINO names new nodes from one process-wide counter, and compiling them
        while NNCF builds its graph in this thread would make the counter-made names in a saved INT8
        IR vary from run to run."""
        steps = set()
        if isinstance(self.transform, Transform):
            steps.update(self.transform.steps(getattr(self.source, "image_size", None)))
        if getattr(self.source, "folder", None) is not None:  # an image folder resizes its images
            steps.add("resize")
        compile_steps(sorted(steps))

    def batches(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(inputs [n, ...], labels [n])`` for items ``start..stop``, ``batch_size`` at a time."""
        stop = self.num_samples if stop is None else min(stop, self.num_samples)
        if self.prefetch <= 0:
            return self._generate(start, stop)
        timeout = stall_timeout()  # a bad $SYNTHCALIB_STALL_TIMEOUT fails here, before any thread starts
        self._compile_steps()
        spec = self.source.spec
        activity = Activity(f"starting to generate items {start}..{stop - 1} of '{spec}'")
        items = self._generate(start, stop, activity)
        return Prefetch(items, self.prefetch, activity, timeout, f"the stream of '{spec}'")

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
            inputs, labels = zip(*self._generate(start, min(start + self.block, self.num_samples)))
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
            "transform": self.transform.describe() if isinstance(self.transform, Transform) else None,
        }

    def close(self) -> None:
        """Release the source if this stream made it from a spec (idempotent)."""
        self._blocks = OrderedDict()
        if self._owns_source:
            self.source.close()

    def __enter__(self) -> SyntheticStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


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
    prefetch: int = DEFAULTS["prefetch"],
    progress: Callable[[int, int], None] | None = None,
) -> SyntheticStream:
    """A stream for a target ``model`` (path or ``openvino.Model``, or a ``torch.nn.Module`` or
    ``onnx.ModelProto``, see :mod:`.backends`): its input size, layout and class count are read
    from it; ``transform`` adds the normalisation (e.g. ``"cifar10"``).
    Items that would not fit the model's input are refused here, before any generation."""
    target = backends.target(model)  # what the model takes (a Target given is used as it is)
    tf = target.transform(transform) if target is not None else as_transform(transform)
    context = SourceContext(
        num_classes=target.classes if target is not None else None,
        device=device,
        batch_size=batch_size,
        num_requests=num_requests,
        precision=precision,
    )
    stream = SyntheticStream(
        source,
        num_samples,
        seed=seed,
        transform=tf,
        classes=classes,
        class_weights=class_weights,
        context=context,
        prefetch=prefetch,
        progress=progress,
    )
    if target is not None and isinstance(tf, Transform):
        try:
            target.check_item(stream.source, tf, f"layout {tf.layout}, dtype {tf.dtype}")
        except BaseException:
            stream.close()
            raise
    return stream
