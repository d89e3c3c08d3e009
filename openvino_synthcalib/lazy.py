"""Lazy public names for the package and its subpackages (PEP 562), as ``lazy_loader.attach`` does.

A package lists ``{public name: defining submodule}``; a name's submodule is imported on first
access and the value cached in the package. No public name is also a submodule's name, so the
import system never rebinds one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import import_module
from typing import Any


def attach(
    package_name: str, exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package_name`` serving ``exports`` lazily; a
    module path may be relative (``.engine``) or absolute, ``module:attr`` renames the attribute."""

    def __getattr__(name: str) -> Any:
        where = exports.get(name)
        if where is None:
            raise AttributeError(f"module {package_name!r} has no attribute {name!r}")
        module, _, attr = where.partition(":")
        value = getattr(import_module(module, package_name), attr or name)
        setattr(sys.modules[package_name], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package_name]), *exports})

    return __getattr__, __dir__, sorted(exports)
