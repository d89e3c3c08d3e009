"""Top-1 of a classifier on a labelled image folder, and agreement with a reference model."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from . import forksafe, models
from .classifier import check_same_input, classifier_classes
from .defaults import DEFAULTS
from .errors import SynthcalibError
from .imagefolder import CenterCrop, check_folder_classes, load_image
from .inference import predict
from .sources.base import parse_spec
from .stream import Activity, Prefetch
from .transforms import as_transform, resize


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
    data: str,
    *,
    transform: Any = None,
    reference: Any = None,
    class_list: Any = None,
    batch_size: int = DEFAULTS["eval_batch_size"],
    device: str = DEFAULTS["device"],
    precision: str | None = DEFAULTS["precision"],
    limit: int | None = None,
    progress: bool = False,
    class_list_name: str = "class_list",
) -> dict[str, Any]:
    """Top-1 of ``model`` on a labelled folder (``images:DIR`` or ``DIR``) and, with
    ``reference``, the share of images on which both models predict the same class.

    Class folders map to the model's classes by name when a class list is known: ``class_list``
    (a file, a generator with class names, or a list of names; or ``images:DIR?class_list=FILE``),
    else the model's own labels (rt_info ``model_info/labels``) if the folder names match them.
    Without one, folders map by sorted position, which needs one folder per model class: a
    folder holding a subset of the classes is refused. The ``imagenet`` preset (or
    ``images:DIR?crop=center``) frames images as torchvision's evaluation does (resize, centre crop).
    ``class_list_name`` is how the caller names ``class_list`` in its errors and report.
    """
    from .plan import folder_options
    from .sources.images import read_spec

    scheme, root, options = parse_spec(data)
    if scheme not in ("", "images"):
        raise SynthcalibError(f"data '{data}': expected a labelled image folder images:DIR")
    if not hasattr(model, "inputs"):
        model = models.read_model(model, "model")
    defaults = folder_options(model, transform, class_list, class_list_name)
    allowed = {"class_list": None, "crop": None, "crop_fraction": None}
    spec = read_spec(f"images:{root}", options, root, defaults, allowed)
    folder = spec.open()
    tf = as_transform(transform, model)
    num_classes = classifier_classes(model)
    check_folder_classes(
        folder,
        num_classes,
        f"data '{root}'",
        "pass the model's class list (--class-list FILE, or class_list= in Python: one name per line, "
        "or index<TAB>wnid<TAB>name)",
    )
    samples = folder.samples()
    if limit is not None:
        samples = [samples[i] for i in np.linspace(0, len(samples) - 1, min(limit, len(samples))).astype(int)]
    compiled, batch = _compile_for_batches(model, batch_size, device, precision)
    compiled_ref = None
    if reference is not None:
        ref_model = reference if hasattr(reference, "inputs") else models.read_model(reference, "reference model")
        check_same_input(
            model, ref_model, f"reference '{reference}'" if not hasattr(reference, "inputs") else "reference"
        )
        compiled_ref, ref_batch = _compile_for_batches(ref_model, batch, device, precision)
        if ref_batch != batch:
            raise SynthcalibError(f"reference '{reference}' has a fixed batch of {ref_batch}, the model {batch}")
    size = tf.size if tf is not None and tf.size else None
    crop = None
    if spec.crop_fraction is not None:
        if size is None:
            raise SynthcalibError(f"data '{data}': crop=center needs the model's input size, which is not static")
        crop = CenterCrop(size, spec.crop_fraction)

    activity = Activity(f"starting to read the images of '{root}'")

    def load(sample: Any) -> np.ndarray:
        with forksafe.section():
            return load_image(sample[0], crop)

    def inputs() -> Iterator[np.ndarray]:
        # decoding in the pool's threads, resizing here: each a fork-safe section of its own (this
        # thread waits for the pool outside any section, see forksafe)
        with ThreadPoolExecutor(2) as pool:
            for start in range(0, len(samples), batch):
                chunk = samples[start : start + batch]
                where = f"images {start}..{start + len(chunk) - 1} of '{root}'"
                activity.set(f"reading {where}")
                imgs = list(pool.map(load, chunk))
                activity.set(f"resizing {where} to {size[0]}x{size[1]}" if size else f"preprocessing {where}")
                with forksafe.section():
                    if size is not None:
                        imgs = [resize(im[None], size)[0] for im in imgs]
                    x = np.stack(imgs + [imgs[-1]] * (batch - len(imgs)))
                    x = tf(x) if tf is not None else x
                yield x

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(samples), desc="evaluate", unit="img", leave=False)
    # read ahead in a thread, with the stream's watchdog: a stalled read fails, naming what it was doing
    ahead = Prefetch(inputs(), DEFAULTS["prefetch"], activity, name=f"reading '{root}'")
    feeds = itertools.tee(ahead, 2 if compiled_ref is not None else 1)
    streams = [predict(compiled, feeds[0], what="the model")]
    if compiled_ref is not None:
        streams.append(predict(compiled_ref, feeds[1], what="the reference model"))
    preds: list[list[np.ndarray]] = [[] for _ in streams]
    for outs in zip(*streams):  # in lockstep, so tee buffers only the requests in flight
        for acc, out in zip(preds, outs):
            acc.append(out)
        if bar:
            bar.update(len(outs[0]))
    if bar:
        bar.close()
    labels = np.array([c for _, c in samples])
    pred = np.concatenate(preds[0])[: len(samples)]
    result: dict[str, Any] = {
        "images": len(samples),
        "classes": len(folder.classes),
        "top1": float((pred == labels).mean()),
    }
    if folder.class_list is not None:
        result["class_list"] = folder.class_list.origin
    if crop is not None:
        result["crop"] = {"mode": "center", "fraction": crop.fraction}
    if compiled_ref is not None:
        ref_pred = np.concatenate(preds[1])[: len(samples)]
        result["reference_top1"] = float((ref_pred == labels).mean())
        result["agreement"] = float((ref_pred == pred).mean())
    return result
