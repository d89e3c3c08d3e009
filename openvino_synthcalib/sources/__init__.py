"""Calibration sources: generators, image folders, noise, and whatever plugins add."""

from __future__ import annotations

from .. import lazy
from .base import Source, SourceContext, SourceType, parse_spec

# resolve_source and source_types live in ..plugins, which imports .base: served lazily (PEP 562).
__getattr__, __dir__, _lazy = lazy.attach(__name__, {"resolve_source": "..plugins", "source_types": "..plugins"})
__all__ = ["Source", "SourceContext", "SourceType", "parse_spec", *_lazy]
