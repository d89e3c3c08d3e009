"""Writing files without ever destroying what was there, and the folders they go to.

Every file the package writes is written under a temporary name in its destination folder and
renamed into place (:func:`atomic_path`); a killed process leaves the previous file intact and,
at worst, a hidden ``.NAME.*.tmp*`` file. An OpenVINO IR is two files: both are written under
temporary names first, then renamed one right after the other with SIGINT/SIGTERM deferred, so
an interrupt either leaves the old pair or completes the new one (:func:`save_ir`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import SynthcalibError
from .models import first_line


def temp_name(path: Path) -> Path:
    """A fresh hidden name beside ``path`` that keeps its suffix (``.x.xml`` -> ``..x.<rand>.tmp.xml``)."""
    return path.with_name(f".{path.stem}.{os.getpid()}{secrets.token_hex(4)}.tmp{path.suffix}")


@contextlib.contextmanager
def deferred_signals(resume_interrupt: bool = False) -> Iterator[list[int]]:
    """Hold SIGINT/SIGTERM for a short critical section; yields the list of signals received.

    SIGTERM is re-sent once the section is over. SIGINT received inside is dropped (the section
    completed, so its work is not lost: a final save finishes and the run ends normally), or, with
    ``resume_interrupt``, raised as KeyboardInterrupt after the section (a loop stops after a
    committed step). Nested sections belong to the outermost one. Outside the main thread this
    does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    if _HELD:
        yield _HELD[-1]
        return
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in _SIGNALS}
    _HELD.append(received)
    try:
        yield received
    finally:
        _HELD.pop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        if signal.SIGTERM in received:
            os.kill(os.getpid(), signal.SIGTERM)
    if resume_interrupt and signal.SIGINT in received:
        raise KeyboardInterrupt


_HELD: list[list[int]] = []
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError), open(path, "rb") as f:
        os.fsync(f.fileno())


def commit(pairs: list[tuple[Path, Path]]) -> None:
    """Rename every ``(temporary, final)`` pair, last pair last, as one uninterruptible step."""
    for tmp, _ in pairs:
        _fsync(tmp)
    with deferred_signals():
        for tmp, final in pairs:
            os.replace(tmp, final)


def _unlink_quietly(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(OSError):
            p.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], what: str = "output") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it replaces ``path``.

    Write errors (disk full, permissions, ...) become one-line errors naming ``what`` and ``path``.
    """
    final = Path(path)
    tmp = temp_name(final)
    try:
        yield tmp
        commit([(tmp, final)])
    except SynthcalibError:
        _unlink_quietly(tmp)
        raise
    except BaseException as exc:
        _unlink_quietly(tmp)
        if isinstance(exc, Exception):
            raise SynthcalibError(f"{what} '{final}': cannot write it: {first_line(exc)}") from None
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes, what: str = "output") -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path, what) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str, what: str = "output") -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"), what)


def save_ir(model: Any, path: str | os.PathLike[str], what: str = "--out", compress_to_fp16: bool = False) -> Path:
    """Save an ``openvino.Model`` as ``path`` (.xml) + its .bin, replacing any old pair as a pair."""
    import openvino as ov

    xml = Path(path)
    tmp_xml = temp_name(xml)
    pairs = [(tmp_xml.with_suffix(".bin"), xml.with_suffix(".bin")), (tmp_xml, xml)]  # .xml last
    try:
        ov.save_model(model, str(tmp_xml), compress_to_fp16=compress_to_fp16)
        commit(pairs)
    except BaseException as exc:
        _unlink_quietly(*(tmp for tmp, _ in pairs))
        if isinstance(exc, Exception) and not isinstance(exc, SynthcalibError):
            raise SynthcalibError(f"{what} '{xml}': cannot write the model: {first_line(exc)}") from None
        raise
    return xml


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name the same file (after links), whether or not they exist."""
    pa, pb = Path(a), Path(b)
    if pa.exists() and pb.exists():
        return os.path.samefile(pa, pb)
    return pa.resolve() == pb.resolve()


def ensure_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Create ``path`` (and parents) or fail with one line; it must be a writable folder."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise SynthcalibError(f"{what} '{p}' exists and is not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SynthcalibError(f"{what} '{p}' cannot be created: {first_line(exc)}") from None
    if not os.access(p, os.W_OK):
        raise SynthcalibError(f"{what} '{p}' is not writable")
    return p


@contextlib.contextmanager
def created_dirs(path: str | os.PathLike[str], what: str = "output folder") -> Iterator[Path]:
    """:func:`ensure_dir`, and if the block fails, remove the folders it created that are still empty."""
    p = Path(path).absolute()
    missing = []
    for parent in (p, *p.parents):
        if parent.exists():
            break
        missing.append(parent)
    ensure_dir(p, what)
    try:
        yield Path(path)
    except BaseException:
        for folder in missing:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


@contextlib.contextmanager
def replaced_dir(path: str | os.PathLike[str], overwrite: bool, what: str = "--out") -> Iterator[Path]:
    """Yield a fresh temporary folder that becomes ``path`` when the block succeeds.

    An existing non-empty ``path`` is refused unless ``overwrite``, in which case its whole
    content is replaced; on failure ``path`` is left as it was and the temporary folder removed.
    """
    final = Path(path)
    if final.exists() and not final.is_dir():
        raise SynthcalibError(f"{what} '{final}' exists and is not a folder")
    if final.is_dir() and any(final.iterdir()) and not overwrite:
        raise SynthcalibError(
            f"{what} '{final}' is not empty: choose a new folder, or pass --overwrite to replace its content"
        )
    with created_dirs(final.parent, f"{what} parent folder"):
        tmp = final.with_name(f".{final.name}.{os.getpid()}{secrets.token_hex(4)}.tmp")
        try:
            tmp.mkdir()
        except OSError as exc:
            raise SynthcalibError(f"{what} '{final}' cannot be created: {first_line(exc)}") from None
        try:
            yield tmp
            old = final.with_name(f".{final.name}.{os.getpid()}{secrets.token_hex(4)}.old")
            with deferred_signals():
                if final.exists():
                    os.replace(final, old)
                os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


#: Names Windows reserves for devices, whatever the extension (``CON``, ``nul.txt``, ``COM1``).
_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", *(f"{d}{i}" for d in ("COM", "LPT") for i in range(1, 10))})
#: Longest name part :func:`safe_filename` keeps (folders stay readable in listings and paths short).
MAX_NAME = 48


def safe_filename(text: str, fallback: str = "item", max_len: int = MAX_NAME) -> str:
    """``text`` as one path component that is valid on Windows, macOS and Linux alike.

    Letters are folded to ASCII (``café`` -> ``cafe``: macOS stores accented names decomposed, so a
    non-ASCII name may not read back as written), every run of other characters (spaces, ``/``,
    ``:``, ``,``, quotes...) becomes one ``_``, leading and trailing ``_.-`` are dropped, the result
    is cut to ``max_len`` characters, and a Windows device name (``CON``, ``aux``) gets a ``_``
    appended; an empty result is ``fallback``. Case is kept: a caller that needs names unique on a
    case-insensitive file system must make them so (:func:`class_folder_names` prefixes an id)."""
    name = _safe_part(text, max_len) or fallback
    if name.split(".")[0].upper() in _RESERVED:
        name += "_"
    return name


def _safe_part(text: str, max_len: int = MAX_NAME) -> str:
    """:func:`safe_filename` without its fallback and device-name rule (for a part of a name)."""
    import re
    import unicodedata

    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^A-Za-z0-9.-]+", "_", ascii_text).strip("_.-")[:max_len].rstrip("_.-")


def class_folder_names(names: Any, ids: Any = None) -> list[str]:
    """One folder name per class that no other class's differs from only in case, and that
    ``images:`` maps back to its class: the class id (a WordNet id) or, without ids, the class index
    (zero-padded so that names sort in class order), then ``_`` and the name made safe
    (:func:`safe_filename`): ``n02113186_Cardigan`` and ``n02963159_cardigan``, ``3_cat``. A class
    without a name of its own (``class3``) is its index alone."""
    names = [str(n) for n in names]
    width = len(str(max(len(names) - 1, 0)))
    prefixes = [f"{i:0{width}d}" for i in range(len(names))]
    if ids is not None and len(ids) == len(names):
        given = [str(i).strip() for i in ids]
        # ids as they are: each one safe as a name, and unique however the file system folds case
        if all(safe_filename(i, "") == i for i in given) and len({i.casefold() for i in given}) == len(given):
            prefixes = given
    out = []
    for i, (prefix, name) in enumerate(zip(prefixes, names)):
        if not prefix.isdigit():  # the id is in the prefix already: "crane (n02012849)" -> n02012849_crane
            name = name.replace(prefix, "")
        part = "" if name == f"class{i}" else _safe_part(name)
        out.append(f"{prefix}_{part}" if part else prefix)
    return out


def cache_dir() -> Path:
    """``$SYNTHCALIB_CACHE``, else ``$XDG_CACHE_HOME/openvino_synthcalib``, else ``~/.cache/openvino_synthcalib``."""
    explicit = os.environ.get("SYNTHCALIB_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "openvino_synthcalib"


def write_with(path: str | os.PathLike[str], writer: Callable[[Path], Any], what: str = "output") -> Path:
    """Call ``writer(temporary_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path, what) as tmp:
        writer(tmp)
    return Path(path)
