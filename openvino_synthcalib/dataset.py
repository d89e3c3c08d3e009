"""``synthcalib.Dataset``: an ``nncf.Dataset`` that generates calibration items on demand."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import nncf

from .backends import item_format
from .checks import checked, integer
from .defaults import DEFAULTS
from .engine import GeneratorEngine
from .sources.generator import GeneratorSource
from .stream import SyntheticStream, make_stream


class _Items:
    """NNCF's view of a stream: items with a batch dimension, labelled or not.

    The first pass starts generating at once (``ahead``), so that the stream fills its prefetch
    buffer while NNCF is still building its graph. A complete pass whose items add up to at most
    ``keep`` bytes is kept and replayed by later passes (the validation set of
    ``nncf.quantize_with_accuracy_control`` is read once per ranking step, a calibration set once per
    ``quantize`` call); larger streams are generated again on every pass, so memory does not grow
    with ``num_samples``. Replayed items are the same values either way.
    """

    def __init__(
        self, stream: SyntheticStream, with_labels: bool, fmt: Callable[[Any], Any] | None = None, keep: int = 0
    ) -> None:
        self.stream = stream
        self.with_labels = with_labels
        self.fmt = fmt
        self.keep = keep
        self.kept: list[tuple[Any, int]] | None = None
        self.ahead: Iterator[tuple[Any, Any]] | None = stream.batches() if stream.prefetch > 0 else None

    def __len__(self) -> int:
        return len(self.stream)

    def _item(self, x: Any, y: int) -> Any:
        x = x[None] if self.fmt is None else self.fmt(x[None])
        return (x, y) if self.with_labels else x

    def __iter__(self) -> Iterator[Any]:
        if self.kept is not None:
            for x, y in self.kept:
                yield self._item(x, y)
            return
        batches, self.ahead = (self.ahead or self.stream.batches()), None
        record: list[tuple[Any, int]] | None = [] if self.keep > 0 else None
        size, total = 0, len(self.stream)
        for inputs, labels in batches:
            if record is not None:
                size += inputs.nbytes
                if size > self.keep:
                    record = None
            for x, y in zip(inputs, labels):
                if record is not None:
                    record.append((x, int(y)))
                    if len(record) == total:  # the consumer may stop at the last item without asking for more
                        self.kept = record
                yield self._item(x, int(y))

    def close(self) -> None:
        self.kept = None
        close = getattr(self.ahead, "close", None)
        self.ahead = None
        if close is not None:
            close()

    def __getitem__(self, index: int) -> Any:
        if self.kept is not None:
            return self._item(*self.kept[index])
        return self._item(*self.stream[index])


def _first(item: tuple[Any, int]) -> Any:
    return item[0]


class Dataset(nncf.Dataset):
    """Synthetic calibration data for ``nncf.quantize``, streamed from a source.

    >>> ds = Dataset("generator.xml", num_samples=300, model="model.xml", transform="cifar10")
    >>> int8 = nncf.quantize(ov_model, ds, subset_size=len(ds))

    ``source`` is a spec (``generator:PATH``, ``images:DIR``, ``noise:gaussian``...), a
    :class:`GeneratorEngine`-backed source or a :class:`SyntheticStream`. ``model`` (optional)
    is the model to be quantized: its input size/layout and class count are read from it, and
    items come in the form NNCF's backend for it feeds: a NumPy array for an OpenVINO model or
    path, a ``torch.Tensor`` on the module's device for a ``torch.nn.Module``, ``{input name:
    array}`` for an ``onnx.ModelProto``. A torch module does not tell its input size: it comes
    from the transform (``size``) or the source's native size. With a stream, ``model`` only sets
    the item form.
    ``transform`` is a :class:`Transform`, a preset name (``"cifar10"``, ``"imagenet"``), a dict
    of preprocessing options, or a callable on canonical [N, 3, H, W] batches in [0, 1].
    With ``with_labels=True`` items are ``(input, conditioning class)``, as needed for the
    validation set of ``nncf.quantize_with_accuracy_control``; NNCF's transform takes the input.
    ``prefetch`` bytes of items are generated ahead of the quantizer in a background thread; a
    first pass of at most ``keep`` bytes is kept for the quantizer's later passes (0: regenerate).
    """

    def __init__(
        self,
        source: Any,
        num_samples: int = DEFAULTS["num_samples"],
        transform: Any = None,
        seed: int = DEFAULTS["seed"],
        with_labels: bool = False,
        *,
        model: Any = None,
        classes: Sequence[int | str] | None = None,
        class_weights: Sequence[float] | None = None,
        device: str = DEFAULTS["device"],
        batch_size: int = DEFAULTS["batch_size"],
        num_requests: int = DEFAULTS["num_requests"],
        precision: str | None = DEFAULTS["calibration_precision"],
        prefetch: int = DEFAULTS["prefetch"],
        keep: int = DEFAULTS["keep"],
    ) -> None:
        fmt = item_format(model)  # before any stream is opened: refuses what NNCF cannot quantize
        checked(lambda v: integer(v, 0), keep, "keep (bytes)")

        self._owns_stream = not isinstance(source, SyntheticStream)
        if model is None and transform is None and self._owns_stream:
            import warnings

            warnings.warn(
                "synthcalib.Dataset: no model and no transform: items are RGB in [0, 1], NCHW at the source's size; "
                "pass model= and transform= (a preset such as 'imagenet' or 'inception', or mean/std) to fit them "
                "to the model being quantized",
                UserWarning,
                stacklevel=2,
            )
        if isinstance(source, SyntheticStream):
            stream = source
        else:
            if isinstance(source, GeneratorEngine):
                source = GeneratorSource(f"generator:{source.path or '<engine>'}", source)
            stream = make_stream(
                source,
                num_samples,
                model=model,
                transform=transform,
                seed=seed,
                classes=classes,
                class_weights=class_weights,
                device=device,
                batch_size=batch_size,
                num_requests=num_requests,
                precision=precision,
                prefetch=prefetch,
            )
        self.stream = stream
        self.with_labels = with_labels
        self._format = fmt
        self._items = _Items(stream, with_labels, fmt, keep)
        super().__init__(self._items, _first if with_labels else None)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __getitem__(self, index: int) -> Any:
        return self._items[index]

    def labelled(self) -> Dataset:
        """The same stream with ``(input, label)`` items."""
        ds = Dataset(self.stream, with_labels=True, keep=self._items.keep)
        ds._format = ds._items.fmt = self._format
        return ds

    def describe(self) -> dict[str, Any]:
        return self.stream.describe()

    def close(self) -> None:
        """Release the stream this dataset made (and its compiled generator); a stream passed in
        is the caller's to close."""
        self._items.close()
        if self._owns_stream:
            self.stream.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
