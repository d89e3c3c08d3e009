"""The classes of a model or a source: one type for every class list, and the rule that chooses one.

A :class:`ClassList` holds each class's display name, its id where the list has ids (a WordNet
id) and every alias it goes by, whatever it was read from: a TSV (``index<TAB>wnid<TAB>name``), a
text list (one name a line, or ImageNet's ``LOC_synset_mapping.txt``), a JSON list or mapping, a
generator's metadata (``class_names``, ``class_ids``), a model's labels (rt_info
``model_info/labels``), a list of names. Classes are found by name the same way everywhere:
class folders of images (:meth:`ClassList.match`) and ``--classes`` (``classes=`` in the API,
``dataset.classes`` in a config, the page's classes field: :meth:`ClassList.select`) take a class's
id, name, synonym or index, case-insensitively, spaces and underscores alike, on every source.

:func:`folder_class_list` decides which list names the class folders of an image folder;
:func:`pass_class_list` is the one wording that tells a user how to give the model's list.
"""

from __future__ import annotations

import functools
import json
import os
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import contract, models
from .errors import Namer, SynthcalibError
from .shipped import GENERATORS, generator_path
from .specs import parse_spec

#: Header words of a class-list table (a first row made only of these is not a class).
_HEADER_WORDS = {"index", "idx", "id", "wnid", "synset", "name", "names", "class", "classes", "label", "labels"}
_WNID_LINE = re.compile(r"^(n\d{8})\s+(\S.*)$")  # LOC_synset_mapping.txt: "n01440764 tench, Tinca tinca"
#: A folder named ``ID_name`` or ``INDEX_name`` (as ``synthcalib generate`` writes them): the id, the name.
_PREFIXED = re.compile(r"^([^_\s]+)[_\s]+(\S.*)$")


def pass_class_list(name: Namer) -> str:
    """How to give the model's class list, in every message that asks for it; ``name`` names the
    class-list option as the front-end does (``--class-list``, ``dataset.class_list``)."""
    return (
        f"pass the model's class list as {name('class_list')} (a file of one name per line, or "
        "index<TAB>wnid<TAB>name, or a generator with class names) or images:DIR?class_list=FILE"
    )


def _norm(name: str) -> str:
    """Folder and class names compare case-insensitively, with spaces and underscores alike."""
    return " ".join(name.replace("_", " ").casefold().split())


def _loose(name: str) -> str:
    """A name's letters and digits only, in ASCII and lower case: ``tench_Tinca_tinca`` (a name made
    safe for a file system) compares equal to ``tench, Tinca tinca``."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").casefold()
    return re.sub(r"[^0-9a-z]", "", text)


def distinct(names: Sequence[str], ids: Sequence[str] | None = None) -> tuple[str, ...]:
    """Names made distinct by their id (or, without ids, their index) where two classes share one:
    ImageNet's two "crane" classes are "crane (n02012849)" and "crane (n03126707)"."""
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    return tuple(f"{n} ({ids[i] if ids is not None else i})" if counts[n] > 1 else n for i, n in enumerate(names))


@dataclass(frozen=True)
class ClassList:
    """Classes in output order: each one's display name, id and aliases, wherever they came from.

    ``names[i]`` is class ``i``'s display name (in reports, folder names, messages), distinct
    (:func:`distinct`); ``ids[i]`` its identifier (a WordNet id) where the list has them, else
    ``ids`` is None; ``aliases[i]`` every name it goes by besides its index: its id, its names as
    given and their comma-separated synonyms (``tench, Tinca tinca``). ``origin`` says where the
    list came from (named in errors). An ``explicit`` list (the user's) must match every class
    folder; an inferred one (a paired generator's classes, the model's labels) is ignored when no
    folder matches it, and must match all folders otherwise.
    """

    names: tuple[str, ...]
    ids: tuple[str, ...] | None
    aliases: tuple[tuple[str, ...], ...]
    origin: str
    explicit: bool = True

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_names(
        cls,
        names: Sequence[str],
        origin: str,
        explicit: bool = True,
        ids: Sequence[str] | None = None,
        synonyms: Sequence[Sequence[str]] | None = None,
    ) -> ClassList:
        """Display names and, where given, each class's id (one per class: folders and ``--classes``
        may name a class by it) and further names it goes by (``synonyms[i]``). A list read from a
        TSV and a generator's metadata of the same classes are the same list."""
        names = tuple(str(n).strip() for n in names)
        if not names or not all(names):
            raise SynthcalibError(f"{origin}: expected a non-empty list of non-empty class names")
        given_ids = tuple(str(i).strip() for i in ids) if ids is not None and len(ids) == len(names) else None
        if given_ids is not None and not all(given_ids):
            given_ids = None
        shown = distinct(names, given_ids)
        more = [tuple(str(s).strip() for s in m) for m in synonyms] if synonyms is not None else [()] * len(names)
        aliases = []
        for i, (name, extra) in enumerate(zip(names, more)):
            # a name made distinct by its id ("crane (n02012849)", in a generator's metadata) is its name too
            own = (given_ids[i], name.removesuffix(f" ({given_ids[i]})")) if given_ids is not None else ()
            fields = (*own, name, *extra)
            aliases.append(tuple(dict.fromkeys([a for f in fields if f for a in (f, *_parts(f))] + [shown[i]])))
        return cls(shown, given_ids, tuple(aliases), origin, explicit)

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
        if all(len(fields) >= 2 for fields in table):  # id, name, synonyms (classes.tsv: WordNet id, name)
            ids, names, more = [f[0] for f in table], [f[1] for f in table], [f[2:] for f in table]
            return cls.from_names(names, origin, explicit, ids, more)
        return cls.from_names([f[0] for f in table], origin, explicit, synonyms=[f[1:] for f in table])

    def lookup(self, folder: str) -> list[int]:
        """Every class a folder name may mean: its names, else its index, else (``ID_name``,
        ``INDEX_name``) the class of its id or index."""
        return self._resolve(folder)[0]

    def _resolve(self, folder: str) -> tuple[list[int], str | None]:
        """``(classes, conflict)``: the classes a folder may mean, and why an ``INDEX_name`` folder
        means none (its index is one class, its name another's), else None."""
        found = self._by_name.get(_norm(folder), [])
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
        key, loose = _loose(rest), self._by_loose_name
        if not key:
            return []
        if key in loose:
            return loose[key]
        if len(key) < 8:
            return []
        return sorted({i for k, found in loose.items() if k.startswith(key) for i in found})

    @functools.cached_property
    def _by_name(self) -> dict[str, list[int]]:
        return self._classes_by(_norm)

    @functools.cached_property
    def _by_loose_name(self) -> dict[str, list[int]]:
        return self._classes_by(_loose)

    def _classes_by(self, written: Callable[[str], str]) -> dict[str, list[int]]:
        """Each alias as ``written`` writes it -> the classes that go by it."""
        out: dict[str, list[int]] = {}
        for i, aliases in enumerate(self.aliases):
            for key in dict.fromkeys(written(a) for a in aliases):
                out.setdefault(key, []).append(i)
        return out

    def describe_class(self, i: int) -> str:
        """``3 (n02012849, crane)``: the index, the id where there is one, the name as given."""
        if self.ids is None:
            return f"{i} ({self.names[i]})"
        given = next((a for a in self.aliases[i] if a != self.ids[i]), self.names[i])
        return f"{i} ({self.ids[i]}, {given})"

    def _shown(self, most: int) -> str:
        return ", ".join(self.names[:most]) + (", ..." if len(self.names) > most else "")

    def select(self, chosen: Any, key: str = "classes") -> list[int]:
        """The classes ``chosen`` names (one, or a list): class indices, or ids, names and synonyms
        matched as class folders are (:meth:`lookup`), except that a name two classes share but for
        case is the class spelt exactly so (ImageNet's "Cardigan" and "cardigan"). An unknown or
        ambiguous name is a one-line error keyed ``key``; an index out of range is left to
        :class:`~.schedule.ClassSchedule`."""
        items = [chosen] if isinstance(chosen, (str, int, np.integer)) else list(chosen)
        out: list[int] = []
        for c in items:
            if isinstance(c, (bool, np.bool_)) or not isinstance(c, (str, int, np.integer)):
                raise SynthcalibError(f"expected class indices, ids or names, got {c!r}", key=key)
            found = self.lookup(c) if isinstance(c, str) else [int(c)]
            if not found and isinstance(c, str) and c.strip().lstrip("-").isdigit():
                found = [int(c)]
            if len(found) > 1 and isinstance(c, str):
                found = [i for i in found if c.strip() in self.aliases[i]] or found
            if not found:
                raise SynthcalibError(
                    f"unknown class name {c!r}; {self.origin} has {self._shown(20)} (a class's id, name or index)",
                    key=key,
                )
            if len(found) > 1:
                which = " and ".join(self.describe_class(i) for i in found[:3])
                raise SynthcalibError(f"{c!r} matches classes {which} of {self.origin}: give its id or index", key=key)
            out.append(found[0])
        return out

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
                raise SynthcalibError(
                    f"{where}: class folder '{folder}' matches no class of {self.origin} "
                    f"({len(self.names)} classes: {self._shown(5)}); name class folders by class name, WordNet id "
                    "or index (alone, or before _name)"
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
    if text.startswith("generator:"):
        return True
    return text.lower().endswith(models.MODEL_SUFFIXES) or (text in GENERATORS and not os.path.exists(text))


def generator_class_list(spec: str, where: str = "class_list", explicit: bool = True) -> ClassList:
    """The class list in a generator's metadata (read, not compiled): its names and, where it has
    them, its class ids. ``spec`` is a shipped generator's name, a model file or
    ``generator:PATH[?class_names=...]``."""
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
    Model API's convention: names separated by spaces), or None (other models too)."""
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


@functools.lru_cache(maxsize=1)
def imagenet_class_list() -> ClassList | None:
    """ImageNet-1k's classes in sorted WordNet-id order (the order ImageNet-1k classifiers output
    them in), as the shipped ``imagenet`` generator names them; None without that generator."""
    try:
        found = generator_class_list("imagenet", "ImageNet class list", explicit=False)
    except SynthcalibError:
        return None
    if found.ids is None or list(found.ids) != sorted(found.ids):
        return None
    return replace(found, origin="ImageNet-1k's classes (WordNet ids in sorted order)")


def partner_class_list(partner: Any) -> ClassList | None:
    """The classes of the generator an image folder is paired with (the other stream's source: an
    opened source or a spec), as an inferred list; None for anything else."""
    from .sources.images import is_folder_spec  # cycle: sources.images imports classes

    if getattr(partner, "scheme", None) == "generator" and partner.class_names:
        return replace(partner.class_list, explicit=False)
    if not isinstance(partner, str):
        return None
    try:
        if parse_spec(partner)[0] in ("generator", "") and not is_folder_spec(partner):
            return generator_class_list(partner, "validation source", explicit=False)
    except Exception:
        pass  # not a generator, or one without class names: its own stream reports its problems
    return None


def folder_class_list(
    own: Any = None, given: Any = None, partner: Any = None, labels: ClassList | None = None
) -> ClassList | None:
    """Which class list names the class folders of an image folder: the first there is of

    1. ``own``, the folder spec's ``?class_list=``, and 2. ``given``, the caller's class-list option
       (loaded by the caller, naming its option): the user's, every class folder must match it;
    3. the classes of ``partner``, the generator the folder is paired with (:func:`partner_class_list`),
       and 4. ``labels``, the model's labels (:func:`model_class_list`): inferred, used when class
       folders match them.

    Without one, :class:`~.imagefolder.ImageFolder` maps folders named by class index to those
    classes, folders named by WordNet id to ImageNet-1k's classes when the model has 1000
    (:func:`imagenet_class_list`), others by sorted position.
    """
    if own is not None:
        return ClassList.load(own, "class_list")
    if given is not None:
        return ClassList.load(given, "class_list")
    paired = partner_class_list(partner)
    return paired if paired is not None else labels
