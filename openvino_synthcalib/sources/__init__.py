"""Calibration sources: generators, image folders, noise, and whatever plugins add."""

from __future__ import annotations

from .base import Source, SourceContext, SourceType, parse_spec

__all__ = ["Source", "SourceContext", "SourceType", "parse_spec", "resolve_source", "source_types"]


def resolve_source(*args, **kwargs):  # noqa: ANN201 - re-exported with the same signature
    from ..plugins import resolve_source as _resolve

    return _resolve(*args, **kwargs)


def source_types():  # noqa: ANN201
    from ..plugins import source_types as _types

    return _types()
