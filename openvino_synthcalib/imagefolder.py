"""Labelled image folders (``root/<class>/*.png|jpg``) and image files (read whole, or framed as
torchvision's ImageNet evaluation does).

Hidden entries are not data: files and folders whose names start with ``.`` (``.DS_Store``,
macOS ``._photo.jpg`` AppleDouble files, ``.ipynb_checkpoints/``) are skipped at every level.

Class folders map to the model's classes by name when a :class:`~.classes.ClassList` is known
(:func:`~.classes.folder_class_list` says which: a file the user passes, a paired generator's
classes, the model's labels): folder ``n01440764``, ``tench``, ``0``,
``n01440764_tench`` or ``0_tench`` (``ID_name`` and ``INDEX_name``, as ``synthcalib generate``
writes them) is class 0 of an ImageNet list, whatever other folders are present. Without a class
list, folders named by class index (``3``, ``03_cat``) are that class; folders named by WordNet id
(``n01440764``, ``n01440764_tench``) are ImageNet-1k's classes in sorted-id order when the model
has 1000 classes; other folders map by sorted position (the ``torchvision.datasets.ImageFolder``
convention), which is right only when the folder holds every class of the model:
:func:`check_folder_classes` refuses a subset.

A folder of images without class folders (``root/*.jpg``, ImageNet's validation set as
downloaded) is *flat*: unlabelled images, for calibration or agreement with a reference model,
never for anything that needs labels. A folder that holds both images and class folders is refused
(which of the two was meant cannot be told), except ``grid.png`` beside class folders: the preview
``synthcalib generate`` writes, skipped.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .classes import ClassList, imagenet_class_list, pass_class_list
from .errors import Namer, SynthcalibError
from .specs import check_number
from .transforms import resize

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm")
#: The preview ``synthcalib generate`` writes beside its class folders: not an image of any class.
GRID_FILE = "grid.png"
#: A folder named by class index, alone or before a name (``7``, ``007_cat``).
_INDEXED = re.compile(r"^(\d+)(?:[_\s]+\S.*)?$")
#: A folder named by WordNet id, alone or before a name (``n01440764``, ``n01440764_tench``).
_WNID_FOLDER = re.compile(r"^n\d{8}(?:[_\s]+\S.*)?$")
CROP_MODES = ("center", "none")
#: torchvision's ImageNet evaluation: resize to 256 for a 224 crop.
DEFAULT_CROP_FRACTION = 0.875


def is_hidden(name: str) -> bool:
    """Dot files and folders (``.DS_Store``, ``._x.jpg``, ``.ipynb_checkpoints``) are not data."""
    return name.startswith(".")


# ----------------------------------------------------------------------------- folders


class ImageFolder:
    """Class folders in sorted order; files sorted by name within each class; hidden entries skipped.

    ``labels[k]`` is the model class of folder ``classes[k]``: its index in ``class_list`` when
    one is given (and used: see :class:`ClassList`), its class index when every folder is named by
    one (``3``, ``03_cat``), else its sorted position; ``mapping`` says which (``class_list``,
    ``index``, ``position``). A flat folder (images, no class folders) has ``flat`` set, no
    ``classes`` and one unlabelled pool of files (``files[0]``, label 0); ``mapping`` is ``none``.
    """

    def __init__(self, root: str | os.PathLike[str], class_list: ClassList | None = None) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise SynthcalibError(f"image folder '{self.root}' does not exist")
        if not self.root.is_dir():
            raise SynthcalibError(
                f"image folder '{self.root}' is not a directory: expected root/<class>/*.jpg or root/*.jpg"
            )
        classes, files, loose = [], [], []
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if is_hidden(entry.name):
                continue
            if not entry.is_dir():
                if entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file():
                    loose.append(entry.path)
                continue
            found = sorted(
                f.name
                for f in os.scandir(entry.path)
                if not is_hidden(f.name) and f.name.lower().endswith(IMAGE_SUFFIXES) and f.is_file()
            )
            if found:
                classes.append(entry.name)
                files.append([os.path.join(entry.path, name) for name in found])
        if classes:  # generate's preview beside its class folders is not data
            loose = [p for p in loose if os.path.basename(p) != GRID_FILE]
        if classes and loose:
            raise SynthcalibError(
                f"image folder '{self.root}' holds both images ({len(loose)}, e.g. {os.path.basename(loose[0])}) "
                f"and class folders ({len(classes)}, e.g. {classes[0]}/): expected either class folders "
                "root/<class>/*.jpg or a flat folder of images root/*.jpg; move the loose images into a class "
                "folder, or into a folder of their own"
            )
        if not classes and not loose:
            raise SynthcalibError(
                f"image folder '{self.root}' has no images: no class folders with images (root/<class>/*.png|jpg) "
                "and no images at its top (root/*.png|jpg)"
            )
        #: Images without class folders: one unlabelled pool.
        self.flat = not classes
        self.classes: tuple[str, ...] = tuple(classes)
        self.files: list[list[str]] = files or [loose]
        #: The class list the folders were matched to (None: class indices, sorted positions, or flat).
        self.class_list: ClassList | None = None
        self.mapping = "none" if self.flat else "position"
        labels = None
        if class_list is not None and not self.flat:  # a flat folder has no names to match
            labels = class_list.match(classes, f"image folder '{self.root}'")
            if labels is not None:
                self.class_list, self.mapping = class_list, "class_list"
        if labels is None and not self.flat:
            labels = _indexed(classes, f"image folder '{self.root}'")
            if labels is not None:
                self.mapping = "index"
        self.labels: tuple[int, ...] = tuple(labels) if labels is not None else tuple(range(len(self.files)))
        self._size = max(self.labels) + 1 if self.mapping == "index" else len(self.files)

    def bind(self, model_classes: int | None) -> None:
        """Settle the mapping once the model's class count is known: index-named folders range over
        the model's classes; folders named by WordNet id that sorted positions cannot map (not one
        per class) are ImageNet-1k's classes when the model has 1000 (:func:`imagenet_class_list`)."""
        if model_classes is None or self.flat:
            return
        if self.mapping == "index":
            self._size = max(self._size, model_classes)
        elif (
            self.mapping == "position"
            and len(self.classes) != model_classes
            and all(_WNID_FOLDER.match(c) for c in self.classes)
        ):
            imagenet = imagenet_class_list()
            if imagenet is not None and len(imagenet) == model_classes:
                labels = imagenet.match(self.classes, f"image folder '{self.root}'")
                if labels is not None:
                    self.class_list, self.mapping, self.labels = imagenet, "class_list", tuple(labels)

    @property
    def num_classes(self) -> int:
        """Classes the labels range over: the class list's, else the folders' (1 for a flat folder)."""
        return len(self.class_list) if self.class_list is not None else self._size

    @property
    def class_names(self) -> tuple[str, ...]:
        if self.class_list is not None:
            return self.class_list.names
        if self.flat:
            return ("unlabelled",)
        if self.mapping == "index":
            by_label = dict(zip(self.labels, self.classes))
            return tuple(by_label.get(i, f"class{i}") for i in range(self._size))
        return self.classes

    @property
    def class_ids(self) -> tuple[str, ...] | None:
        """The class list's ids (WordNet ids), where the folders were matched to one that has them."""
        return self.class_list.ids if self.class_list is not None else None

    def describe_labels(self) -> str:
        """Where the labels come from, in a few words (for reports)."""
        if self.flat:
            return "none: the folder has no class subfolders"
        if self.class_list is not None:
            return f"folders matched by name to {self.class_list.origin}"
        if self.mapping == "index":
            return "folders named by class index"
        return "folders in sorted order (one per class)"

    def __len__(self) -> int:
        return sum(len(f) for f in self.files)

    def samples(self) -> list[tuple[str, int]]:
        """Every (path, class label), folder by folder (label 0 for a flat folder's images)."""
        return [(path, self.labels[k]) for k, paths in enumerate(self.files) for path in paths]


def _indexed(folders: Sequence[str], where: str) -> list[int] | None:
    """The class index of each folder when every one is named by one (``3``, ``003_cat``), else None."""
    found = [_INDEXED.match(f) for f in folders]
    if not all(found):
        return None
    labels = [int(m.group(1)) for m in found if m]
    owner: dict[int, str] = {}
    for folder, label in zip(folders, labels):
        if label in owner:
            raise SynthcalibError(
                f"{where}: class folders '{owner[label]}' and '{folder}' both name class index {label}"
            )
        owner[label] = folder
    return labels


def check_folder_classes(
    folder: ImageFolder,
    model_classes: int | None,
    key: str,
    what: str,
    override: str | None = None,
) -> None:
    """The folder's labels must be the model's: a class list of the model's size, class indices
    below the model's class count, or (without either) exactly the model's number of class
    folders. A subset is refused rather than mapped by sorted position. Errors are keyed ``key``
    (the option that gave the folder) and name the folder as ``what``; they say how to pass a
    class list or, where labels do not matter, to use option ``override``. A flat folder has no
    labels to check (what needs labels refuses it itself)."""
    if model_classes is None or folder.flat:
        return
    folder.bind(model_classes)

    def fix(name: Namer) -> str:
        return pass_class_list(name) + (f", or use {name(override)} if the labels do not matter" if override else "")

    if folder.mapping == "index":
        top = max(folder.labels)
        if top >= model_classes:
            name = folder.classes[folder.labels.index(top)]
            raise SynthcalibError(
                lambda n: (
                    f"{what}: class folder '{name}' is named by class index {top} but the model outputs "
                    f"{model_classes} classes (indices 0..{model_classes - 1}); {fix(n)}"
                ),
                key=key,
            )
        return
    if folder.class_list is not None:
        if len(folder.class_list) != model_classes:
            raise SynthcalibError(
                f"{what}: {folder.class_list.origin} has {len(folder.class_list)} classes "
                f"but the model outputs {model_classes}",
                key=key,
            )
        return
    n = len(folder.classes)
    if n > model_classes:
        raise SynthcalibError(f"{what} has {n} class folders but the model outputs {model_classes} classes", key=key)
    if n < model_classes:
        shown = ", ".join(folder.classes[:4]) + (", ..." if n > 4 else "")
        raise SynthcalibError(
            lambda name: (
                f"{what} holds {n} class folders ({shown}) but the model outputs {model_classes} classes: "
                f"they would be mapped to classes 0..{n - 1} by sorted position; {fix(name)}"
            ),
            key=key,
        )


# ----------------------------------------------------------------------------- image files


@dataclass(frozen=True)
class CenterCrop:
    """torchvision's evaluation framing (``Resize(floor(S / fraction))`` then ``CenterCrop(S)``):
    the image is resized, keeping its aspect ratio, to cover ``size / fraction`` (the short side
    becomes 256 for a 224 x 224 crop), then its centre ``size`` (H, W) is kept."""

    size: tuple[int, int]
    fraction: float = DEFAULT_CROP_FRACTION

    def resized(self, h: int, w: int) -> tuple[int, int]:
        """(H, W) an image of ``h`` x ``w`` is resized to before the crop."""
        th, tw = (math.floor(s / self.fraction) for s in self.size)
        if h * tw >= w * th:  # the width binds (for a square crop: the short side is the width)
            return int(tw * h / w), tw
        return th, int(th * w / h)

    def box(self, h: int, w: int) -> tuple[int, int]:
        """(top, left) of the crop in a resized image of ``h`` x ``w``, rounded as torchvision does."""
        return int(round((h - self.size[0]) / 2.0)), int(round((w - self.size[1]) / 2.0))


def check_crop(crop: Any, fraction: Any, where: str) -> float | None:
    """The crop fraction of a ``crop`` mode (``center``), or None for ``none``/unset."""
    if crop is None or str(crop).lower() == "none":
        return None
    if str(crop).lower() not in ("center", "centre"):
        raise SynthcalibError(f"{where}: crop: expected one of {', '.join(CROP_MODES)}, got {crop!r}")
    if fraction is None:
        return DEFAULT_CROP_FRACTION
    value = check_number(fraction, f"{where}: crop_fraction", positive=True)
    if value > 1:
        raise SynthcalibError(f"{where}: crop_fraction: expected a number in (0, 1] (0.875: 256 for 224), got {value}")
    return value


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(H, W) of an image file, from its header (nothing decoded)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.height, im.width
    except Exception as exc:
        raise SynthcalibError(f"cannot read image '{path}': {exc}") from None


def load_image(path: str | os.PathLike[str], crop: CenterCrop | None = None) -> np.ndarray:
    """An image file as RGB float32 [3, H, W] in [0, 1], whatever its mode (8/16-bit, grey, palette, float).

    With ``crop``, the image is decoded once, framed as :class:`CenterCrop` says with PIL's
    bilinear filter (torchvision's ``Resize`` on PIL images), and a large JPEG is decoded at
    1/2, 1/4 or 1/8 scale (PIL's draft mode) where that stays at least the resize target.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            if crop is None:
                im.load()
                arr = _rgb01(im)
            else:
                arr = _framed(im, crop)
    except SynthcalibError:
        raise
    except Exception as exc:
        raise SynthcalibError(f"cannot read image '{path}': {exc}") from None
    if not np.isfinite(arr).all():
        raise SynthcalibError(f"image '{path}' contains NaN or inf values")
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def _wide(mode: str) -> bool:
    return mode.startswith("I;16") or mode in ("I", "F")


def _framed(im: Any, crop: CenterCrop) -> np.ndarray:
    """[H, W, 3] float32: resized and centre-cropped as torchvision does, decoded once."""
    from PIL import Image

    rh, rw = crop.resized(im.height, im.width)
    box = None
    if im.format == "JPEG":
        drafted = im.draft("RGB", (rw, rh))  # picks a DCT scale only where the result stays >= (rw, rh)
        if drafted is not None:
            box = drafted[1]
    im.load()
    if _wide(im.mode):
        x = resize(_rgb01(im).transpose(2, 0, 1)[None], (rh, rw))[0].transpose(1, 2, 0)
    else:
        rgb = im.convert("RGB")
        if rgb.size != (rw, rh) or (box is not None and box[2:] != rgb.size):
            rgb = rgb.resize((rw, rh), Image.Resampling.BILINEAR, box=box)
        x = np.asarray(rgb, dtype=np.float32) * np.float32(1 / 255)
    top, left = crop.box(rh, rw)
    return x[top : top + crop.size[0], left : left + crop.size[1]]


def _rgb01(im: Any) -> np.ndarray:
    """[H, W, 3] float32 in [0, 1]. ``convert("RGB")`` clips 16-bit and float modes to 255, hence
    the modes with wider values are scaled here first."""
    mode = im.mode
    if _wide(mode):
        x = np.asarray(im, dtype=np.float32)
        if mode == "F":
            top = float(x.max()) if x.size else 1.0
            # float images carry no declared range: [0, 1], 8-bit or 16-bit values, by their maximum
            scale = 1.0 if top <= 1.0 else 255.0 if top <= 255.0 else 65535.0
        else:
            scale = 65535.0
        grey = np.clip(x / np.float32(scale), 0.0, 1.0)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.asarray(im.convert("RGB"), dtype=np.float32) * np.float32(1 / 255)
