"""The test sets the benchmarks measure on, and top-1 on them with OpenVINO at f32: the CIFAR-10
test folder (``../shared/datasets/cifar10-jpeg/test``) and the shared ImageNet sample, with the
views of each image that ``imagenet.py`` evaluates."""

from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from paths import CIFAR_TEST, SHARED

IMAGENET_SAMPLE = SHARED / "datasets" / "imagenet-sample"
IMAGENET_CLASSES = IMAGENET_SAMPLE / "classes.tsv"
CROP_FRACTION = 0.875  # torchvision's evaluation framing: short side 256 for a 224 crop
VIEWS = ("centre", "mirror", "tl", "tr", "bl", "br")
#: Real-image calibration draws these many sample images; flips are counted on the others.
IMAGENET_CALIBRATION_IMAGES = 300
IMAGENET_MODELS_DIR = SHARED / "models" / "imagenet"
#: The shared ImageNet classifiers: name -> (ONNX file, the product's preprocessing preset, input mean, std).
IMAGENET_MODELS = {
    "lite0": (IMAGENET_MODELS_DIR / "efficientnet_lite0.onnx", "inception", 0.5, 0.5),
    "darknet_tiny": (IMAGENET_MODELS_DIR / "darknet_tiny.onnx", "unit", 0.0, 1.0),
    "mobilenet_v1_075": (IMAGENET_MODELS_DIR / "mobilenet_v1_075.onnx", "inception", 0.5, 0.5),
}


# ----------------------------------------------------------------------------- CIFAR-10


def load_test(
    root: Path = CIFAR_TEST, limit: int | None = None, preset: str | None = None, threads: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """The images of a labelled folder (``<class>/<image>``) as float32 [N, 3, H, W] in [0, 1]
    (``load_image``), preprocessed with ``preset`` if given, and their labels; with ``limit``, an
    evenly spaced subset."""
    from openvino_synthcalib.imagefolder import ImageFolder, load_image

    samples = ImageFolder(root).samples()
    if limit:
        samples = [samples[i] for i in np.linspace(0, len(samples) - 1, limit).astype(int)]
    with ThreadPoolExecutor(threads) as pool:
        x = np.stack(list(pool.map(load_image, (p for p, _ in samples))))
    if preset is not None:
        from openvino_synthcalib.transforms import Transform

        x = Transform.from_options(preset)(x)
    return x, np.array([c for _, c in samples])


def batched(x: np.ndarray, batch: int = 250) -> list[np.ndarray]:
    """``x`` in consecutive batches of ``batch`` items (the last one shorter)."""
    return [x[i : i + batch] for i in range(0, len(x), batch)]


def compile_f32(model: Any):
    """The model (an ``ov.Model`` or a file) compiled for the CPU at f32 inference precision."""
    from openvino_synthcalib import models

    return models.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "THROUGHPUT"})


def predictions(compiled, x: np.ndarray, batch: int = 250) -> np.ndarray:
    """Top-1 class of every item of ``x`` (preprocessed as the model expects)."""
    from openvino_synthcalib.inference import predict

    return np.concatenate(list(predict(compiled, batched(x, batch))))


# ----------------------------------------------------------------------------- ImageNet sample


def sample_images(limit: int | None) -> tuple[list[Path], np.ndarray]:
    """The shared ImageNet sample images (sorted by WordNet id; an evenly spaced subset of
    ``limit``) and their class indices (position of the WordNet id in ``classes.tsv``)."""
    with open(IMAGENET_CLASSES) as f:
        index = {r["wnid"]: int(r["index"]) for r in csv.DictReader(f, delimiter="\t")}
    files = sorted((IMAGENET_SAMPLE / "images").glob("*/*.JPEG"))
    if not files:
        raise SystemExit(f"no images under {IMAGENET_SAMPLE / 'images'} (set SYNTHCALIB_SHARED)")
    if limit and limit < len(files):
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).astype(int)]
    return files, np.array([index[p.parent.name] for p in files])


def resized(path: str | Path, size: int, fraction: float = CROP_FRACTION) -> np.ndarray:
    """An image file as uint8 [H, W, 3], resized (PIL bilinear, aspect kept) so that it covers
    ``size / fraction``: the image torchvision's evaluation (and ``images:...?crop=center``) crops."""
    from PIL import Image

    from openvino_synthcalib.imagefolder import CenterCrop

    with Image.open(path) as im:
        rgb = im.convert("RGB")
    rh, rw = CenterCrop((size, size), fraction).resized(rgb.height, rgb.width)
    if rgb.size != (rw, rh):
        rgb = rgb.resize((rw, rh), Image.Resampling.BILINEAR)
    return np.asarray(rgb)


def crop_views(x: np.ndarray, size: int) -> np.ndarray:
    """The views of a resized image [H, W, C] as [len(VIEWS), C, size, size], in VIEWS order: the
    centre crop (rounded as torchvision's CenterCrop), its mirror, and the four corners."""
    from openvino_synthcalib.imagefolder import CenterCrop

    h, w = x.shape[:2]
    if h < size or w < size:
        raise ValueError(f"image {h}x{w} is smaller than the {size}x{size} crop")
    top, left = CenterCrop((size, size)).box(h, w)
    centre = x[top : top + size, left : left + size]
    views = [
        centre,
        centre[:, ::-1],
        x[:size, :size],
        x[:size, w - size :],
        x[h - size :, :size],
        x[h - size :, w - size :],
    ]
    return np.ascontiguousarray(np.stack(views).transpose(0, 3, 1, 2))


def imagenet_split(cache: Path) -> tuple[Path, list[Path], np.ndarray]:
    """The calibration folder (links to 300 of the sample images, ``<wnid>/<file>``, made once under
    ``cache``) and the other images with their labels, which are measured."""
    files, labels = sample_images(None)
    picked = set(np.linspace(0, len(files) - 1, IMAGENET_CALIBRATION_IMAGES).astype(int).tolist())
    if len(picked) != IMAGENET_CALIBRATION_IMAGES:
        raise SystemExit("imagenet split: calibration indices collide")
    folder = cache / "imagenet-calibration"
    for i in sorted(picked):
        link = folder / files[i].parent.name / files[i].name
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(files[i].resolve())
    measured = [i for i in range(len(files)) if i not in picked]
    return folder, [files[i] for i in measured], labels[measured]


def cached_views(path: Path, files: list[Path], size: int = 224) -> np.ndarray:
    """uint8 [N, len(VIEWS), 3, size, size] of ``files`` (:func:`crop_views` of each), made once into
    ``path`` and returned as a memory map."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        out = np.lib.format.open_memmap(tmp, "w+", np.uint8, (len(files), len(VIEWS), 3, size, size))
        for i, p in enumerate(files):
            out[i] = crop_views(resized(p, size), size)
        out.flush()
        del out
        tmp.replace(path)
    return np.load(path, mmap_mode="r")


def limit_threads(n: int | None) -> None:
    """Every CPU compile in this process (the generator, NNCF's statistics, the evaluation) with
    ``INFERENCE_NUM_THREADS`` = n (None or 0: OpenVINO's default)."""
    if not n:
        return
    import openvino as ov

    original = ov.Core.compile_model

    def compile_model(self, model, device_name=None, config=None, *args, **kwargs):
        if device_name == "CPU":
            config = {**(config or {}), "INFERENCE_NUM_THREADS": n}
        return original(self, model, device_name, config, *args, **kwargs)

    ov.Core.compile_model = compile_model
