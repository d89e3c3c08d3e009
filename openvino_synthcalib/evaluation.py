"""Top-1 of a classifier on labelled items, and its agreement with a reference model, on any
source: an image folder (every image once), a class-conditional generator (labels: the
conditioning classes), noise, fractals, a flat folder of photos (agreement only: no labels).

The data is read through the same sources and stream as calibration
(:mod:`~openvino_synthcalib.sources`, :class:`~openvino_synthcalib.stream.SyntheticStream`), with
the same folder options (:class:`~openvino_synthcalib.sources.images.FolderOptions`: class lists,
framing). Errors are keyed by the argument at fault (``data``, ``reference``, ``class_list``,
``transform.mean``), so that the command line names its flags.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from . import models
from .classifier import check_same_input, classifier_classes
from .defaults import DEFAULTS
from .errors import SynthcalibError
from .inference import predict
from .plugins import resolve_source
from .schedule import ItemSchedule
from .sources.base import Source, SourceContext
from .sources.images import FolderOptions, is_folder_spec, open_source
from .stream import SyntheticStream
from .transforms import as_transform

#: Items of a generated source (a generator, noise, fractals) ``evaluate`` draws unless told ``limit``.
DEFAULT_ITEMS = 1000


def _compile_for_batches(model: Any, batch_size: int, device: str, precision: str | None) -> tuple[Any, int]:
    """Compile (a copy of) ``model`` with batch ``batch_size`` if it allows it, else with its own batch."""
    model = models.writable_copy(model)
    port = model.inputs[0]
    dims = models.static_dims(port.get_partial_shape())
    batch = dims[0]
    if batch is None or batch != batch_size:
        try:
            shape = port.get_partial_shape()
            shape[0] = batch_size
            model.reshape({port.get_any_name(): shape})
            batch = batch_size
        except Exception:
            batch = batch or 1
    cfg = {"PERFORMANCE_HINT": "THROUGHPUT", **models.precision_config(precision)}
    return models.compile_model(model, device, cfg), batch


def evaluate(
    model: Any,
    data: Any,
    *,
    transform: Any = None,
    reference: Any = None,
    class_list: Any = None,
    batch_size: int = DEFAULTS["eval_batch_size"],
    device: str = DEFAULTS["device"],
    precision: str | None = DEFAULTS["precision"],
    limit: int | None = None,
    seed: int = DEFAULTS["seed"],
    progress: bool = False,
    class_list_name: str = "class_list",
) -> dict[str, Any]:
    """Top-1 of ``model`` on ``data`` and, with ``reference``, the share of items on which both
    models predict the same class.

    ``data`` is any source spec (or :class:`~openvino_synthcalib.sources.Source`):

    - an image folder (``images:DIR`` or ``DIR``): every image once (``limit``: an evenly spaced
      subset). Class folders map to the model's classes as calibration maps them: by name when a
      class list is known (``class_list``: a file, a generator with class names, or a list of
      names; or ``images:DIR?class_list=FILE``; else the model's own labels, rt_info
      ``model_info/labels``), by index for folders named so (``3_cat``), ImageNet-1k's classes for
      folders named by WordNet id when the model has 1000 classes, else by sorted position (one
      folder per model class). The ``imagenet`` preset (or ``images:DIR?crop=center``) frames
      images as torchvision's evaluation does (resize, centre crop).
    - a generated source (``generator:imagenet``, ``noise:gaussian``, ``fractal:ifs``): ``limit``
      items (default :data:`DEFAULT_ITEMS`) of the class-balanced stream of ``seed``.

    Top-1 needs labels: a folder of class folders that map to the model's classes, or a
    class-conditional generator of the model's classes (labels: the conditioning classes). With
    ``reference``, data without such labels (a flat folder, a folder of some classes without a class
    list, noise) still gives the agreement, and the result says why there is no top-1
    (``no_top1``); without ``reference`` it is an error. ``class_list_name`` is how the caller
    names ``class_list`` in its errors and report.
    """
    if not hasattr(model, "inputs"):
        model = models.read_model(model, "model")
    tf = as_transform(transform, model)
    num_classes = classifier_classes(model)
    size = tuple(tf.size) if getattr(tf, "size", None) else None
    with contextlib.ExitStack() as stack:
        source = _open_data(data, model, transform, class_list, class_list_name, size, num_classes, device, precision)
        if source is not data:
            stack.callback(source.close)
        spec = source.spec
        no_top1 = _why_no_top1(source, num_classes, reference is not None)
        if getattr(source, "crop_fraction", None) is not None and size is None:
            raise SynthcalibError(f"'{spec}': crop=center needs the model's input size, which is not static", "data")
        compiled, batch = _compile_for_batches(model, batch_size, device, precision)
        compiled_ref = None
        if reference is not None:
            compiled_ref = _compile_reference(model, reference, batch, device, precision)
        stream = _stream(source, limit, seed, tf)
        stack.callback(stream.close)
        labels = stream.labels()
        n = len(labels)

        bar = None
        if progress:
            from tqdm import tqdm

            bar = stack.enter_context(tqdm(total=n, desc="evaluate", unit="img", leave=False))
        feeds = itertools.tee(_padded(stream, batch), 2 if compiled_ref is not None else 1)
        streams = [predict(compiled, feeds[0], what="the model")]
        if compiled_ref is not None:
            streams.append(predict(compiled_ref, feeds[1], what="the reference model"))
        preds: list[list[np.ndarray]] = [[] for _ in streams]
        for outs in zip(*streams):  # in lockstep, so tee buffers only the requests in flight
            for acc, out in zip(preds, outs):
                acc.append(out)
            if bar is not None:
                bar.update(min(len(outs[0]), n - bar.n))
        pred = np.concatenate(preds[0])[:n]
        folder = getattr(source, "folder", None)
        result: dict[str, Any] = {
            "data": str(spec),
            "preprocessing": tf.describe() if hasattr(tf, "describe") else {"origin": "the caller's callable"},
            "images": n,
            "classes": len(folder.classes) if folder is not None else (len(np.unique(labels)) if not no_top1 else 0),
        }
        if folder is None:
            result["seed"] = int(seed)
        if no_top1 is None:
            result["top1"] = float((pred == labels).mean())
            if folder is not None:
                result["labels"] = folder.describe_labels()
            else:
                result["labels"] = f"the conditioning classes of '{spec}'"
        else:
            result["no_top1"] = no_top1
        if folder is not None and folder.class_list is not None:
            result["class_list"] = folder.class_list.origin
        if getattr(source, "crop_fraction", None) is not None:
            result["crop"] = {"mode": "center", "fraction": source.crop_fraction}
        if compiled_ref is not None:
            ref_pred = np.concatenate(preds[1])[:n]
            if no_top1 is None:
                result["reference_top1"] = float((ref_pred == labels).mean())
            result["agreement"] = float((ref_pred == pred).mean())
        return result


def _compile_reference(model: Any, reference: Any, batch: int, device: str, precision: str | None) -> Any:
    """The reference model compiled for batches of ``batch``; errors keyed ``reference``."""
    what = "the reference model" if hasattr(reference, "inputs") else f"'{reference}'"
    try:
        ref_model = reference if hasattr(reference, "inputs") else models.read_model(reference, "reference model")
        check_same_input(model, ref_model, what)
        compiled, ref_batch = _compile_for_batches(ref_model, batch, device, precision)
    except SynthcalibError as exc:
        raise exc.about("reference") from None
    if ref_batch != batch:
        raise SynthcalibError(f"{what} has a fixed batch of {ref_batch}, the model {batch}", key="reference")
    return compiled


def _open_data(
    data: Any,
    model: Any,
    transform: Any,
    class_list: Any,
    class_list_name: str,
    size: tuple[int, int] | None,
    num_classes: int | None,
    device: str,
    precision: str | None,
) -> Source:
    """``data`` opened as calibration opens a source: an image folder with the folder options (class
    list, framing; each image resized once, to the model's size), anything else by its scheme."""
    if isinstance(data, Source):
        return data
    if not isinstance(data, (str, os.PathLike)) or not os.fspath(data).strip():
        raise SynthcalibError(
            f"expected a source spec such as images:DIR, generator:imagenet or noise:gaussian, got {data!r}", "data"
        )
    spec = os.fspath(data).strip()
    folder = is_folder_spec(spec)
    if class_list is not None and not folder:
        raise SynthcalibError(
            lambda name: (
                f"maps the class folders of an image folder (images:DIR) to the model's classes; "
                f"{name('data')} '{spec}' is not one (a generator's items are labelled by its own classes)"
            ),
            key="class_list",
        )
    options = FolderOptions.for_model(model, transform, class_list, class_list_name) if folder else None
    try:
        opened = open_source(spec, replace(options, size=size)) if options is not None else spec
        return resolve_source(opened, SourceContext(num_classes=num_classes, device=device, precision=precision))
    except SynthcalibError as exc:
        raise exc.about("data") from None


def _why_no_top1(source: Source, num_classes: int | None, has_reference: bool) -> str | None:
    """None when the source's labels are the model's classes; else why there is no top-1 (with a
    reference), or the error (without one)."""
    why = source.why_unlabelled
    if why is None:
        try:
            source.check_classes(num_classes, "data", None if has_reference else "reference")
        except SynthcalibError as exc:
            if not has_reference:
                raise
            return exc.detail()
        return None
    if not has_reference:
        raise SynthcalibError(
            lambda name: (
                f"top-1 needs labels and {why}; give a reference model to measure agreement with it "
                f"instead ({name('reference')} MODEL)"
            ),
            key="data",
        )
    return why


def _stream(source: Source, limit: int | None, seed: int, transform: Any) -> Any:
    """The items to evaluate: every image of a folder once (``limit``: an evenly spaced subset), or
    ``limit`` items of a generated source's class-balanced stream."""
    folder = getattr(source, "folder", None)
    if folder is None:
        return SyntheticStream(source, limit or DEFAULT_ITEMS, seed=seed, transform=transform)
    # class c's occurrences 0..n_c - 1 are its n_c files, each once (ImageFolderSource)
    labels = np.concatenate([np.full(len(files), label) for label, files in zip(folder.labels, folder.files)])
    occurrences = np.concatenate([np.arange(len(files)) for files in folder.files])
    if limit is not None and limit < len(labels):
        pick = np.linspace(0, len(labels) - 1, limit).astype(int)
        labels, occurrences = labels[pick], occurrences[pick]
    schedule = ItemSchedule(source.num_classes, labels, occurrences)
    return SyntheticStream(source, len(labels), seed=seed, transform=transform, schedule=schedule)


def _padded(stream: Any, batch: int) -> Iterator[np.ndarray]:
    """The stream's model inputs in batches of exactly ``batch`` (the last one padded by repeating
    its last item; the padding's predictions are dropped)."""
    pending: list[np.ndarray] = []
    buffered = 0
    for x, _ in stream.batches():
        pending.append(x)
        buffered += len(x)
        while buffered >= batch:
            block = np.concatenate(pending)
            yield block[:batch]
            pending, buffered = [block[batch:]], len(block) - batch
    if buffered:
        block = np.concatenate(pending)
        yield np.concatenate([block, np.repeat(block[-1:], batch - len(block), axis=0)])
