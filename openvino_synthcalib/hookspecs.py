"""Hook specifications: what a plugin of ``openvino_synthcalib`` can provide.

Plugins are modules or objects with ``@hookimpl`` functions, registered through the
setuptools entry-point group ``openvino_synthcalib``::

    [options.entry_points]
    openvino_synthcalib =
        mysource = my_package.synthcalib_plugin
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "openvino_synthcalib"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def synthcalib_add_sources() -> list[Any]:
    """Return a list of :class:`openvino_synthcalib.sources.SourceType` this plugin provides."""


@hookspec
def synthcalib_add_presets() -> dict[str, dict[str, Any]]:
    """Return preprocessing presets ``{name: {input_range, mean, std, channel_order, ...}}``."""


@hookspec(firstresult=True)
def synthcalib_guess_scheme(path: str) -> str | None:
    """Return the scheme that should read a bare path (no ``scheme:``), or None to pass."""
