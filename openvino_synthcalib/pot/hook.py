"""Opt-in activation: a ``.pth`` hook that patches POT lazily, only when POT's CLI module loads.

``synthcalib-pot enable`` writes two files into a site directory (by default the running
interpreter's ``purelib``, i.e. the virtual environment's site-packages):

* ``synthcalib_pot_hook.pth`` - one line, ``import _synthcalib_pot_hook``, run by ``site`` at
  every interpreter start-up;
* ``_synthcalib_pot_hook.py`` - a module that only imports ``sys`` (already loaded) and puts a
  tiny finder at the front of ``sys.meta_path``.

The finder returns ``None`` at once for every module except ``openvino.tools.pot.app.run`` (the
module behind ``pot`` and ``python -m openvino.tools.pot``). For that one it wraps the real
loader so that, right after the module executes, :func:`openvino_synthcalib.pot.patch.apply`
teaches it the ``"type": "synthetic"`` engine. Processes that never import POT pay for one
``.pth`` line and one small cached module import (see ``benchmarks/pot_hook_startup.py``).

``synthcalib-pot disable`` removes both files. Neither command touches anything else.
"""

from __future__ import annotations

import os
import py_compile
import sysconfig
from importlib.util import cache_from_source
from pathlib import Path

from ..errors import SynthcalibError

PTH_NAME = "synthcalib_pot_hook.pth"
MODULE_NAME = "_synthcalib_pot_hook"
HOOK_VERSION = "1"
PTH_TEXT = f"import {MODULE_NAME}\n"

MODULE_TEXT = f'''\
"""Installed by `synthcalib-pot enable` (openvino_synthcalib); remove with `synthcalib-pot disable`.

Patches POT only when ``openvino.tools.pot.app.run`` is imported; does nothing else.
"""
import sys

HOOK_VERSION = "{HOOK_VERSION}"
_TARGET = "openvino.tools.pot.app.run"


class SynthcalibPotFinder:
    """Meta-path finder that wraps the loader of POT's CLI module; ignores every other module."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname != _TARGET:
            return None
        spec = None
        for finder in sys.meta_path:
            if finder is cls or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        real_exec = spec.loader.exec_module

        def exec_module(module):
            real_exec(module)
            try:
                from openvino_synthcalib.pot.patch import apply
                apply(module)
            except Exception as exc:  # never break plain POT
                sys.stderr.write(
                    "synthcalib-pot hook: POT left unpatched (%s: %s); "
                    "run 'synthcalib-pot disable' to remove the hook\\n" % (type(exc).__name__, exc)
                )

        spec.loader.exec_module = exec_module
        return spec


if not any(getattr(f, "__name__", "") == "SynthcalibPotFinder" for f in sys.meta_path):
    sys.meta_path.insert(0, SynthcalibPotFinder)
'''


def default_site_dir() -> Path:
    """The running interpreter's site-packages (``purelib``): the virtual environment's, in one."""
    return Path(sysconfig.get_paths()["purelib"])


def _paths(site_dir: str | os.PathLike[str] | None) -> tuple[Path, Path, Path]:
    site = Path(site_dir) if site_dir is not None else default_site_dir()
    return site, site / PTH_NAME, site / f"{MODULE_NAME}.py"


def status(site_dir: str | os.PathLike[str] | None = None) -> dict[str, object]:
    """Whether the hook files are present in ``site_dir`` and up to date."""
    site, pth, module = _paths(site_dir)
    present = pth.is_file() and module.is_file()
    current = (
        present and module.read_text(encoding="utf-8") == MODULE_TEXT and pth.read_text(encoding="utf-8") == PTH_TEXT
    )
    return {
        "site_dir": str(site),
        "enabled": bool(present),
        "up_to_date": bool(current),
        "pth": str(pth),
        "module": str(module),
        "stray": bool(pth.exists() != module.exists()),
    }


def enable(site_dir: str | os.PathLike[str] | None = None) -> dict[str, object]:
    """Write (or refresh) the hook files; idempotent."""
    site, pth, module = _paths(site_dir)
    if not site.is_dir():
        raise SynthcalibError(f"site directory '{site}' does not exist")
    if not os.access(site, os.W_OK):
        raise SynthcalibError(f"site directory '{site}' is not writable (use a virtual environment, or --site-dir)")
    tmp = module.with_suffix(".py.tmp")
    tmp.write_text(MODULE_TEXT, encoding="utf-8")
    os.replace(tmp, module)
    try:  # pre-compile so that the first start-up does not pay for it
        py_compile.compile(str(module), cfile=cache_from_source(str(module)), doraise=True)
    except (OSError, py_compile.PyCompileError):
        pass
    # The .pth goes last: the module it imports must exist before any interpreter reads it.
    tmp = pth.with_suffix(".pth.tmp")
    tmp.write_text(PTH_TEXT, encoding="utf-8")
    os.replace(tmp, pth)
    return status(site)


def disable(site_dir: str | os.PathLike[str] | None = None) -> dict[str, object]:
    """Remove the hook files (and the module's bytecode); idempotent."""
    site, pth, module = _paths(site_dir)
    for path in (pth, module, Path(cache_from_source(str(module)))):
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise SynthcalibError(f"cannot remove '{path}': {exc.strerror}") from None
    try:  # the __pycache__ made for the hook alone (in a shared site-packages it is not empty)
        Path(cache_from_source(str(module))).parent.rmdir()
    except OSError:
        pass
    return status(site)
