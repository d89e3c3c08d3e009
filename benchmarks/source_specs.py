"""Calibration sources as benchmark scripts take them: names from a script's table, or NAME=SPEC."""

from __future__ import annotations

import argparse


def chosen_sources(given: list[str], known: dict[str, str], flag: str = "--sources") -> dict[str, str]:
    """``{name: spec}`` for the names ``given`` (in order): each a name of ``known``, or ``NAME=SPEC``
    adding one. An unknown name raises ValueError naming ``flag`` and the names known."""
    table = dict(known)
    chosen: dict[str, str] = {}
    for item in given:
        name, eq, spec = item.partition("=")
        if eq:
            table[name] = spec
        elif name not in table:
            raise ValueError(f"{flag}: unknown source {name!r}; known: {', '.join(table)} (or NAME=SPEC)")
        chosen[name] = table[name]
    return chosen


def use_sources(args: argparse.Namespace, parser: argparse.ArgumentParser, known: dict[str, str]) -> None:
    """``args.sources`` (names or ``NAME=SPEC``) resolved against ``known``: ``args.source_specs`` the
    whole table (``known`` and the added specs), ``args.sources`` the chosen names; an unknown name is
    the parser's error."""
    try:
        chosen = chosen_sources(args.sources, known)
    except ValueError as exc:
        parser.error(str(exc))
    args.source_specs = {**known, **chosen}
    args.sources = list(chosen)
