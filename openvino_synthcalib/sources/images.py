"""``images:DIR``: real images from a folder, class-balanced and deterministic.

``DIR`` holds class folders (``DIR/<class>/*.jpg``: labelled images, see
:mod:`~openvino_synthcalib.imagefolder` for how folders map to classes) or images directly
(``DIR/*.jpg``, a flat folder: unlabelled, like noise, for calibration or agreement with a
reference model; what needs labels refuses it).

Options: ``size=HxW`` (the size images are resized to; default: the first image's),
``class_list=FILE`` (the model's classes, to map class folders by name: see
:class:`~openvino_synthcalib.classes.ClassList`), ``crop=center`` (frame each image as
torchvision's ImageNet evaluation does: resize the short side to ``size / crop_fraction``, then
crop the centre; ``crop_fraction`` defaults to 0.875) or ``crop=none``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..classes import ClassList, folder_class_list, model_class_list
from ..defaults import preset_framing
from ..errors import SynthcalibError
from ..imagefolder import CenterCrop, ImageFolder, check_crop, check_folder_classes, image_size, load_image
from ..plugins import get_plugin_manager
from ..rng import TAG_ORDER, item_rng
from ..transforms import resize
from .base import Items, Source, SourceContext, parse_size, parse_spec, take_options

OPTIONS: dict[str, Any] = {"size": None, "class_list": None, "crop": None, "crop_fraction": None}
KINDS = {"crop": "str", "crop_fraction": "float>0"}


class ImageFolderSource(Source):
    """The k-th item of class c is file ``perm_c[k]`` of a seeded permutation of that class.

    Labels are the model's classes: a folder's index in the class list when one is known, else
    its sorted position. ``crop_fraction`` (not None) frames images as :class:`CenterCrop` does, at
    the requested size; otherwise every image is resized to ``image_size`` (default: the first
    image's size). A flat folder is one unlabelled pool (class 0), not class-conditional.
    """

    scheme = "images"
    conditional = True
    real = True

    def __init__(
        self,
        spec: str,
        folder: ImageFolder,
        image_size: tuple[int, int] | None,
        *,
        crop_fraction: float | None = None,
    ) -> None:
        super().__init__(spec)
        self.folder = folder
        self.conditional = not folder.flat
        self.crop_fraction = crop_fraction
        if crop_fraction is not None:
            self.image_size = image_size  # None: made at the requested size
        else:
            self.image_size = image_size or _first_size(folder)
        self._orders: dict[tuple[int, int, int], np.ndarray] = {}
        self._sync()

    def _sync(self) -> None:
        """Classes and files by label, from the folder's mapping (which :meth:`check_classes` settles)."""
        folder = self.folder
        self.num_classes = folder.num_classes
        self.class_names = folder.class_names
        self.class_ids = folder.class_ids
        self._files = dict(zip(folder.labels, folder.files))
        self.available_classes = tuple(sorted(self._files)) if len(self._files) < self.num_classes else None
        self._orders.clear()

    @property
    def class_list(self) -> ClassList:
        """The class list the folders were matched to, else the folders' own names."""
        return self.folder.class_list if self.folder.class_list is not None else super().class_list

    @property
    def why_unlabelled(self) -> str | None:
        if self.folder.flat:
            return f"image folder '{self.folder.root}' has no class subfolders, so its images have no labels"
        return None

    def _file(self, seed: int, label: int, occurrence: int) -> str:
        files = self._files.get(label)
        if files is None:  # a stream's classes are chosen among those with files (Source.choose)
            raise SynthcalibError(f"source '{self.spec}' has no images of class {label} ({self.names[label]})")
        epoch, k = divmod(occurrence, len(files))
        key = (seed, label, epoch)
        if key not in self._orders:
            if len(self._orders) > 4 * self.num_classes:
                self._orders.clear()
            self._orders[key] = item_rng(seed, TAG_ORDER, label * 1_000_003 + epoch).permutation(len(files))
        return files[self._orders[key][k]]

    def images(self, items: Items) -> Iterator[np.ndarray]:
        indices, labels, seed, occurrences = items.indices, items.labels, items.seed, items.occurrences
        if occurrences is None:
            occurrences = np.asarray(indices) // self.num_classes
        crop = CenterCrop(self.output_size(items.size), self.crop_fraction) if self.crop_fraction is not None else None
        for start in range(0, len(indices), self.batch_size):
            items = zip(labels[start : start + self.batch_size], occurrences[start : start + self.batch_size])
            if crop is not None:
                batch = [load_image(self._file(seed, int(c), int(k)), crop) for c, k in items]
            else:
                batch = [
                    resize(load_image(self._file(seed, int(c), int(k)))[None], self.image_size)[0] for c, k in items
                ]
            yield np.stack(batch)

    def output_size(self, size: tuple[int, int] | None) -> tuple[int, int]:
        if self.image_size is None and size is None:
            raise SynthcalibError(
                f"source '{self.spec}' crops images to the model's input size, which is not static here: "
                "give it with ?size=HxW (or crop=none)"
            )
        return super().output_size(size)

    def check_classes(self, model_classes: int | None, key: str = "source", override: str | None = None) -> None:
        try:
            check_folder_classes(self.folder, model_classes, key, f"source '{self.spec}'", override)
        finally:
            self._sync()  # the folder may have settled its mapping for the model's classes

    def describe(self) -> dict[str, Any]:
        out = {**super().describe(), "root": str(self.folder.root), "files": len(self.folder)}
        out["labels"] = self.folder.describe_labels()
        if self.folder.class_list is not None:
            out["class_list"] = self.folder.class_list.origin
            out["folders"] = len(self.folder.classes)
        if self.crop_fraction is not None:
            out["crop"] = {"mode": "center", "fraction": self.crop_fraction}
        return out


def _first_size(folder: ImageFolder) -> tuple[int, int]:
    return image_size(folder.files[0][0])


@dataclass(frozen=True)
class FolderOptions:
    """What a caller (the CLI, ``quantize``, ``evaluate``) knows about reading image folders beyond
    a spec's own options, which win over these.

    ``class_list`` is the user's, ``partner`` the generator a folder is paired with (the other
    stream's source), ``labels`` the model's labels: :func:`~.classes.folder_class_list` chooses
    among them; ``crop``/``crop_fraction`` the framing a preprocessing preset asks for (see
    :data:`~openvino_synthcalib.defaults.PRESET_FRAMING`); ``size`` the size images are resized to
    when the spec says none (``evaluate``: the model's input size, so that each image is resized
    once).
    """

    class_list: ClassList | None = None
    labels: ClassList | None = None
    partner: Source | str | None = None
    crop: str | None = None
    crop_fraction: float | None = None
    size: tuple[int, int] | None = None

    @classmethod
    def for_model(cls, model: Any, transform: Any, class_list: Any, name: str = "class_list") -> FolderOptions:
        """How image folders are read for ``model``: the user's class list (loaded now, ``name``: how
        the caller names it), the model's labels, the preprocessing preset's framing."""
        framing = preset_framing(transform)
        return cls(
            ClassList.load(class_list, name) if class_list is not None else None,
            model_class_list(model),
            crop=framing.get("crop"),
            crop_fraction=framing.get("crop_fraction"),
        )


@dataclass(frozen=True)
class FolderSpec:
    """A checked ``images:DIR?...`` spec: the folder's root and what its options say."""

    spec: str
    root: str
    size: tuple[int, int] | None
    class_list: ClassList | None
    crop_fraction: float | None

    def open(self) -> ImageFolder:
        return ImageFolder(self.root, self.class_list)


def read_spec(
    spec: str,
    options: dict[str, Any],
    root: str,
    defaults: FolderOptions | None = None,
    allowed: dict[str, Any] | None = None,
) -> FolderSpec:
    """Check an images spec's options, with ``defaults`` for what the spec leaves out."""
    d = defaults or FolderOptions()
    opts = take_options(spec, options, allowed or OPTIONS, KINDS)
    size = parse_size(opts["size"], f"source '{spec}': option size") if opts.get("size") is not None else d.size
    class_list = folder_class_list(opts.get("class_list"), d.class_list, d.partner, d.labels)
    crop, fraction = opts["crop"], opts["crop_fraction"]
    if crop is None:
        crop = d.crop
        fraction = fraction if fraction is not None else d.crop_fraction
    elif fraction is not None and str(crop).lower() == "none":
        raise SynthcalibError(f"source '{spec}': option crop_fraction is only used with crop=center")
    return FolderSpec(spec, root, size, class_list, check_crop(crop, fraction, f"source '{spec}'"))


def make(arg: str, options: dict[str, Any], context: SourceContext) -> ImageFolderSource:
    spec = f"images:{arg}"
    return _source(read_spec(spec, options, arg))


def _source(fs: FolderSpec) -> ImageFolderSource:
    return ImageFolderSource(fs.spec, fs.open(), fs.size, crop_fraction=fs.crop_fraction)


def is_folder_spec(spec: Any) -> bool:
    """Whether a source spec names an image folder (``images:DIR``, or a folder without scheme)."""
    if not isinstance(spec, (str, os.PathLike)):
        return False
    scheme, arg, _ = parse_spec(os.fspath(spec))
    if scheme:
        return scheme == "images"
    return get_plugin_manager().hook.synthcalib_guess_scheme(path=arg) == "images"


def open_source(spec: Any, options: FolderOptions | None) -> Any:
    """``spec`` as an :class:`ImageFolderSource` read with ``options`` when it names an image
    folder; anything else (another scheme, a :class:`Source`) is returned as is."""
    if options is None or not is_folder_spec(spec):
        return spec
    text = os.fspath(spec)
    _, arg, opts = parse_spec(text)
    source = _source(read_spec(f"images:{arg}", opts, arg, options))
    source.spec = text
    return source
