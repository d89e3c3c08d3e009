"""Lazy public names for a package, safe against submodules that share a function's name.

``import openvino_synthcalib.quantize`` makes Python set the package attribute ``quantize`` to
that submodule, which would hide the public function ``quantize``. :func:`install` gives the
package a module class that keeps such names bound to the functions; the submodule stays
importable (``from openvino_synthcalib.quantize import load_config`` reads ``sys.modules``).
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import Any


class _Package(types.ModuleType):
    """A package module that loads ``_exports`` on first access and never lets a submodule
    replace a public function of the same name."""

    def __getattr__(self, name: str) -> Any:
        module = self.__dict__.get("_exports", {}).get(name)
        if module is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(import_module(module), name)
        types.ModuleType.__setattr__(self, name, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        public = name in self.__dict__.get("_exports", {}) or name in self.__dict__.get("_protected", ())
        if public and isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{name}":
            return  # the import system binding a submodule over the public function of the same name
        types.ModuleType.__setattr__(self, name, value)

    def __dir__(self) -> list[str]:
        return sorted({*self.__dict__, *self.__dict__.get("_exports", {})})


def install(package_name: str, exports: dict[str, str] | None = None, protected: tuple[str, ...] = ()) -> None:
    """Serve ``exports`` (public name -> defining module) lazily from ``package_name``, and keep the
    ``protected`` names (functions defined in the package itself) from being replaced by submodules."""
    package = sys.modules[package_name]
    package.__class__ = _Package
    types.ModuleType.__setattr__(package, "_exports", dict(exports or {}))
    types.ModuleType.__setattr__(package, "_protected", tuple(protected))
