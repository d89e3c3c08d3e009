"""Labelled image folders (``root/<class>/*.png|jpg``), the class lists that name their classes,
and image files (read whole, or framed as torchvision's ImageNet evaluation does).

Hidden entries are not data: files and folders whose names start with ``.`` (``.DS_Store``,
macOS ``._photo.jpg`` AppleDouble files, ``.ipynb_checkpoints/``) are skipped at every level.

Class folders map to the model's classes by name when a :class:`ClassList` is known (a file the
user passes, a generator's metadata, the model's labels): folder ``n01440764``, ``tench``, ``0``,
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

import functools
import json
import math
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SynthcalibError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm")
#: The preview ``synthcalib generate`` writes beside its class folders: not an image of any class.
GRID_FILE = "grid.png"
#: Header words of a class-list table (a first row made only of these is not a class).
_HEADER_WORDS = {"index", "idx", "id", "wnid", "synset", "name", "names", "class", "classes", "label", "labels"}
_WNID_LINE = re.compile(r"^(n\d{8})\s+(\S.*)$")  # LOC_synset_mapping.txt: "n01440764 tench, Tinca tinca"
#: A folder named ``ID_name`` or ``INDEX_name`` (as ``synthcalib generate`` writes them): the id, the name.
_PREFIXED = re.compile(r"^([^_\s]+)[_\s]+(\S.*)$")
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


def _norm(name: str) -> str:
    """Folder and class names compare case-insensitively, with spaces and underscores alike."""
    return " ".join(name.replace("_", " ").casefold().split())


def _loose(name: str) -> str:
    """A name's letters and digits only, in ASCII and lower case: ``tench_Tinca_tinca`` (a name made
    safe for a file system) compares equal to ``tench, Tinca tinca``."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").casefold()
    return re.sub(r"[^0-9a-z]", "", text)


# ----------------------------------------------------------------------------- class lists


@dataclass(frozen=True)
class ClassList:
    """The model's classes in output order, with the names a folder may carry for each.

    ``names[i]`` is class ``i``'s name (shown in reports, matched by ``--classes``); ``aliases[i]``
    are every name a folder of class ``i`` may have (WordNet id, name, synonyms), besides its
    index. ``origin`` says where the list came from (named in errors). An ``explicit`` list (the
    user's) must match every folder; an inferred one (a paired generator's metadata, the model's
    labels) is ignored when no folder matches it, and must match all folders otherwise.
    ``labels[i]``, for lists whose rows give an identifier and a name (``classes.tsv``: WordNet id,
    name), is the name; None otherwise. ``ids[i]`` is class ``i``'s identifier (a WordNet id) where
    the list has them: a folder ``ID_name`` is the class of ``ID``.
    """

    names: tuple[str, ...]
    aliases: tuple[tuple[str, ...], ...]
    origin: str
    explicit: bool = True
    labels: tuple[str, ...] | None = None
    ids: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_names(
        cls, names: Sequence[str], origin: str, explicit: bool = True, ids: Sequence[str] | None = None
    ) -> ClassList:
        """Names (and, if given, identifiers such as WordNet ids, which folders may be named by too)."""
        names = tuple(str(n).strip() for n in names)
        if not names or not all(names):
            raise SynthcalibError(f"{origin}: expected a non-empty list of non-empty class names")
        has_ids = ids is not None and len(ids) == len(names)
        extra = tuple((str(i).strip(),) for i in ids) if has_ids else ((),) * len(names)
        return cls(
            names,
            tuple(tuple(dict.fromkeys((n, *_parts(n), *e))) for n, e in zip(names, extra)),
            origin,
            explicit,
            ids=tuple(e[0] for e in extra) if has_ids else None,
        )

    @classmethod
    def load(cls, value: Any, where: str = "class_list", explicit: bool = True) -> ClassList:
        """A class list from a file (text: one name per line; TSV: ``index<TAB>wnid<TAB>name``;
        JSON: a list of names or ``{index: name or [wnid, name]}``), a generator (a shipped one
        by name, ``generator:PATH`` or a model file) whose metadata names its classes, a
        sequence of names, or a :class:`ClassList`. ``where`` names the option in errors."""
        if isinstance(value, ClassList):
            return value
        if isinstance(value, (list, tuple)):
            return cls.from_names([str(v) for v in value], f"{where} ({len(value)} names)", explicit)
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value).strip():
            raise SynthcalibError(f"{where}: expected a class-list file or a generator, got {value!r}")
        text = os.fspath(value).strip()
        if _is_generator(text):
            return generator_class_list(text, where, explicit)
        path = Path(text)
        if not path.is_file():
            raise SynthcalibError(
                f"{where} '{text}' does not exist: expected a class-list file (one name per line, or "
                "index<TAB>wnid<TAB>name) or a generator with class names"
            )
        origin = f"{where} '{text}'"
        try:
            content = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise SynthcalibError(f"{origin}: cannot read it as UTF-8 text ({exc})") from None
        rows = _json_rows(content, origin) if path.suffix.lower() == ".json" else _text_rows(content)
        return cls._from_rows(rows, origin, explicit)

    @classmethod
    def _from_rows(cls, rows: list[tuple[int | None, list[str]]], origin: str, explicit: bool) -> ClassList:
        if not rows:
            raise SynthcalibError(f"{origin}: no class names in it")
        indexed = [i for i, _ in rows if i is not None]
        if indexed and len(indexed) != len(rows):
            raise SynthcalibError(f"{origin}: either every row starts with a class index or none does")
        order = indexed or list(range(len(rows)))
        if sorted(order) != list(range(len(rows))):
            missing = sorted(set(range(len(rows))) - set(order))
            raise SynthcalibError(
                f"{origin}: class indices must be 0..{len(rows) - 1}, each once"
                + (f" (missing {missing[0]})" if missing else "")
            )
        table: list[list[str]] = [[] for _ in rows]
        for i, (_, fields) in zip(order, rows):
            table[i] = [f for f in fields if f]
            if not table[i]:
                raise SynthcalibError(f"{origin}: class {i} has no name")
        # the first column names the class (a WordNet id in classes.tsv: unique, unlike ImageNet's names)
        aliases = tuple(tuple(dict.fromkeys(a for f in fields for a in (f, *_parts(f)))) for fields in table)
        labels = tuple(fields[1] for fields in table) if all(len(f) >= 2 for f in table) else None
        names = tuple(fields[0] for fields in table)
        return cls(names, aliases, origin, explicit, labels, names if labels is not None else None)

    def lookup(self, folder: str) -> list[int]:
        """Every class a folder name may mean: its names, else its index, else (``ID_name``,
        ``INDEX_name``) the class of its id or index."""
        return self._resolve(folder)[0]

    def _resolve(self, folder: str) -> tuple[list[int], str | None]:
        """``(classes, conflict)``: the classes a folder may mean, and why an ``INDEX_name`` folder
        means none (its index is one class, its name another's), else None."""
        found = self._index().get(_norm(folder), [])
        text = folder.strip()
        if not found and text.isdigit() and int(text) < len(self.names):
            found = [int(text)]
        m = _PREFIXED.match(text)
        if found or m is None:
            return found, None
        prefix, rest = m.groups()
        if prefix.isdigit():
            c = int(prefix)
            if c >= len(self.names):
                return [], None
            named = self._named(rest)
            if named and c not in named:  # the name says another class: the index is of another list
                return [], (
                    f"its index {c} is class {self.describe_class(c)} of {self.origin} but its name is "
                    f"class {self.describe_class(named[0])}"
                )
            return [c], None
        if self.ids is not None:
            return [i for i, x in enumerate(self.ids) if x.casefold() == prefix.casefold()], None
        return [], None

    def _named(self, rest: str) -> list[int]:
        """Classes whose name (or a synonym) is ``rest`` as a folder name writes it: made safe for a file
        system (``great_white_shark``) and maybe cut short."""
        key = _loose(rest)
        loose = self.__dict__.get("_loose_lookup")
        if loose is None:
            loose = {}
            for i, aliases in enumerate(self.aliases):
                for k in dict.fromkeys(_loose(a) for a in aliases):
                    loose.setdefault(k, []).append(i)
            object.__setattr__(self, "_loose_lookup", loose)
        if not key:
            return []
        if key in loose:
            return loose[key]
        if len(key) < 8:
            return []
        return sorted({i for k, found in loose.items() if k.startswith(key) for i in found})

    def _index(self) -> dict[str, list[int]]:
        cached = self.__dict__.get("_lookup")
        if cached is None:
            cached = {}
            for i, names in enumerate(self.aliases):
                for name in dict.fromkeys(_norm(n) for n in names):
                    cached.setdefault(name, []).append(i)
            object.__setattr__(self, "_lookup", cached)
        return cached

    def describe_class(self, i: int) -> str:
        extra = [a for a in self.aliases[i][1:2] if _norm(a) != _norm(self.names[i])]
        return f"{i} ({self.names[i]}{', ' + extra[0] if extra else ''})"

    def match(self, folders: Sequence[str], where: str) -> list[int] | None:
        """The class of each folder; ``None`` for an inferred list that matches no folder."""
        resolved = [self._resolve(f) for f in folders]
        found = [classes for classes, _ in resolved]
        if not self.explicit and not any(found):
            return None
        labels: list[int] = []
        owner: dict[int, str] = {}
        for folder, (classes, conflict) in zip(folders, resolved):
            if conflict is not None:
                raise SynthcalibError(
                    f"{where}: class folder '{folder}' does not match {self.origin}: {conflict}; "
                    "rename the folder, or pass the class list its indices come from"
                )
            if not classes:
                shown = ", ".join(self.names[:5]) + (", ..." if len(self.names) > 5 else "")
                raise SynthcalibError(
                    f"{where}: class folder '{folder}' matches no class of {self.origin} "
                    f"({len(self.names)} classes: {shown}); name class folders by class name, WordNet id or index "
                    "(alone, or before _name)"
                )
            if len(classes) > 1:
                which = " and ".join(self.describe_class(c) for c in classes[:3])
                raise SynthcalibError(
                    f"{where}: class folder '{folder}' matches classes {which} of {self.origin}: "
                    "name it by its WordNet id or class index"
                )
            c = classes[0]
            if c in owner:
                raise SynthcalibError(
                    f"{where}: class folders '{owner[c]}' and '{folder}' both map to class "
                    f"{self.describe_class(c)} of {self.origin}"
                )
            owner[c] = folder
            labels.append(c)
        return labels


def _parts(name: str) -> tuple[str, ...]:
    """Synonyms of a name such as ``tench, Tinca tinca``."""
    parts = tuple(p.strip() for p in name.split(",") if p.strip())
    return parts if len(parts) > 1 else ()


def _text_rows(content: str) -> list[tuple[int | None, list[str]]]:
    lines = [line.strip() for line in content.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if any("\t" in line for line in lines):
        rows = [[f.strip() for f in line.split("\t")] for line in lines]
        if rows and (
            all(f.casefold() in _HEADER_WORDS for f in rows[0] if f)
            or (not rows[0][0].isdigit() and len(rows) > 1 and all(r[0].isdigit() for r in rows[1:]))
        ):
            rows = rows[1:]
        if rows and all(r[0].isdigit() for r in rows):
            return [(int(r[0]), r[1:]) for r in rows]
        return [(None, r) for r in rows]
    out: list[tuple[int | None, list[str]]] = []
    for line in lines:
        m = _WNID_LINE.match(line)
        out.append((None, [m.group(1), m.group(2)] if m else [line]))
    return out


def _json_rows(content: str, origin: str) -> list[tuple[int | None, list[str]]]:
    try:
        data = json.loads(content)
    except json.JSONDecodeError as exc:
        raise SynthcalibError(f"{origin}: not valid JSON ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("id2label"), dict):  # a Hugging Face config.json
        data = data["id2label"]

    def fields(value: Any) -> list[str]:
        if isinstance(value, str):
            return [value.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [v.strip() for v in value]
        raise SynthcalibError(f"{origin}: expected class names (strings or lists of strings), got {value!r}")

    if isinstance(data, list):
        return [(None, fields(v)) for v in data]
    if isinstance(data, dict) and all(str(k).strip().isdigit() for k in data):
        return [(int(k), fields(v)) for k, v in data.items()]
    raise SynthcalibError(f"{origin}: expected a list of names or a mapping of class index to name(s)")


def _is_generator(text: str) -> bool:
    from .models import MODEL_SUFFIXES
    from .shipped import GENERATORS

    if text.startswith("generator:"):
        return True
    return text.lower().endswith(MODEL_SUFFIXES) or (text in GENERATORS and not os.path.exists(text))


def generator_class_list(spec: str, where: str = "class_list", explicit: bool = True) -> ClassList:
    """The class list in a generator's metadata (read, not compiled): its names and, where it has
    them, its class ids. ``spec`` is a shipped generator's name, a model file or
    ``generator:PATH[?class_names=...]``."""
    from . import contract, models
    from .shipped import generator_path
    from .sources.base import parse_spec

    scheme, arg, options = parse_spec(spec if spec.startswith("generator:") else f"generator:{spec}")
    label = f"the class names of generator '{arg}'"
    names, ids = options.get("class_names"), None
    if names is None:
        info = contract.read_info(models.read_model(generator_path(arg), f"{where} generator"))
        names, ids = info.get("class_names"), info.get("class_ids")
    if isinstance(names, str):
        names = [names]
    if not names:
        raise SynthcalibError(f"{where} '{spec}': the generator names no classes in its metadata")
    ids = [str(i) for i in ids] if isinstance(ids, list) and len(ids) == len(names) else None
    return ClassList.from_names([str(n) for n in names], label, explicit, ids)


def model_class_list(model: Any) -> ClassList | None:
    """An inferred class list from an OpenVINO model's ``model_info/labels`` rt_info (the OpenVINO
    Model API's convention: names separated by spaces), or None."""
    path = ["model_info", "labels"]
    try:
        if not model.has_rt_info(path):
            return None
        raw = model.get_rt_info(path)
    except Exception:
        return None
    text = raw.astype(str) if hasattr(raw, "astype") else str(raw)
    names = text.split()
    if not names:
        return None
    return ClassList.from_names(names, "the model's labels (rt_info model_info/labels)", explicit=False)


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


@functools.lru_cache(maxsize=1)
def imagenet_class_list() -> ClassList | None:
    """ImageNet-1k's classes in sorted WordNet-id order (the order ImageNet-1k classifiers output
    them in), as the shipped ``imagenet`` generator names them; None without that generator."""
    from dataclasses import replace

    try:
        found = generator_class_list("imagenet", "ImageNet class list", explicit=False)
    except SynthcalibError:
        return None
    if found.ids is None or list(found.ids) != sorted(found.ids):
        return None
    return replace(found, origin="ImageNet-1k's classes (WordNet ids in sorted order)")


def check_folder_classes(folder: ImageFolder, model_classes: int | None, what: str, fix: str) -> None:
    """The folder's labels must be the model's: a class list of the model's size, class indices
    below the model's class count, or (without either) exactly the model's number of class
    folders. A subset is refused rather than mapped by sorted position; ``fix`` says how to pass a
    class list. A flat folder has no labels to check (what needs labels refuses it itself)."""
    if model_classes is None or folder.flat:
        return
    folder.bind(model_classes)
    if folder.mapping == "index":
        top = max(folder.labels)
        if top >= model_classes:
            name = folder.classes[folder.labels.index(top)]
            raise SynthcalibError(
                f"{what}: class folder '{name}' is named by class index {top} but the model outputs "
                f"{model_classes} classes (indices 0..{model_classes - 1}); {fix}"
            )
        return
    if folder.class_list is not None:
        if len(folder.class_list) != model_classes:
            raise SynthcalibError(
                f"{what}: {folder.class_list.origin} has {len(folder.class_list)} classes "
                f"but the model outputs {model_classes}"
            )
        return
    n = len(folder.classes)
    if n > model_classes:
        raise SynthcalibError(f"{what} has {n} class folders but the model outputs {model_classes} classes")
    if n < model_classes:
        shown = ", ".join(folder.classes[:4]) + (", ..." if n > 4 else "")
        raise SynthcalibError(
            f"{what} holds {n} class folders ({shown}) but the model outputs {model_classes} classes: "
            f"they would be mapped to classes 0..{n - 1} by sorted position; {fix}"
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
    from .sources.base import check_number

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
        from .transforms import resize

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
