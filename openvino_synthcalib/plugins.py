"""The plugin manager, and source lookup by spec."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import pluggy

from . import __version__, hookspecs
from .defaults import PRESETS
from .errors import SynthcalibError
from .sources.base import Source, SourceContext, SourceType, parse_spec

BUILTIN_PLUGINS = ("openvino_synthcalib.sources.builtin",)


@lru_cache(maxsize=1)
def get_plugin_manager() -> pluggy.PluginManager:
    """Hook specs, setuptools entry points of group ``openvino_synthcalib``, then the built-ins."""
    import importlib

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    for name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    return pm


def source_types() -> dict[str, SourceType]:
    """Every registered scheme; a later registration of the same scheme is an error."""
    pm = get_plugin_manager()
    found: dict[str, SourceType] = {}
    for impl in reversed(pm.hook.synthcalib_add_sources.get_hookimpls()):
        for st in impl.function() or []:
            if st.scheme in found:
                raise SynthcalibError(f"source scheme '{st.scheme}' is registered twice (plugin {impl.plugin_name})")
            found[st.scheme] = SourceType(
                st.scheme, st.factory, st.help, st.example, {**st.meta, "plugin": impl.plugin_name}
            )
    return found


def presets() -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = dict(PRESETS)
    for extra in get_plugin_manager().hook.synthcalib_add_presets():
        table.update(extra or {})
    return table


def plugin_distribution(plugin_name: str) -> tuple[str, str]:
    """(package, version) that provides a registered plugin."""
    pm = get_plugin_manager()
    plugin = pm.get_plugin(plugin_name)
    for plug, dist in pm.list_plugin_distinfo():
        if plug is plugin:
            return dist.project_name, dist.version
    return "openvino_synthcalib", __version__


def resolve_source(spec: str | Source, context: SourceContext | None = None, **context_fields: Any) -> Source:
    """Build the source a spec names, e.g. ``generator:gen.xml``, ``images:DIR``, ``noise:gaussian``."""
    if isinstance(spec, Source):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        raise SynthcalibError(f"source: expected a spec string such as generator:PATH, got {type(spec).__name__}")
    context = context or SourceContext(**context_fields)
    scheme, arg, options = parse_spec(os.fspath(spec))
    types = source_types()
    if not scheme:
        scheme = get_plugin_manager().hook.synthcalib_guess_scheme(path=arg)
        if scheme is None:
            raise SynthcalibError(
                f"source '{spec}': no scheme and not a model file or image folder; "
                f"expected one of {', '.join(f'{s}:...' for s in sorted(types))}"
            )
    if scheme not in types:
        raise SynthcalibError(f"source '{spec}': unknown scheme '{scheme}'; expected one of {', '.join(sorted(types))}")
    source = types[scheme].factory(arg, options, context)
    source.spec = str(spec)
    return source
