"""The benchmarks' resumable CSV tables: the rows already measured, and appending new ones."""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def done_keys(csv_path: Path, key: tuple[str, ...]) -> set[tuple[str, ...]]:
    """The ``key`` columns of every row already in the CSV (a rerun skips them)."""
    if not csv_path.exists():
        return set()
    with open(csv_path) as f:
        return {tuple(r[k] for k in key) for r in csv.DictReader(f)}


@contextlib.contextmanager
def appending(csv_path: Path, fields: list[str]) -> Iterator[tuple[Any, Any]]:
    """``(file, csv.DictWriter)`` appending to the CSV, with the header when the file is new."""
    new_file = not csv_path.exists()
    with open(csv_path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if new_file:
            writer.writeheader()
        yield f, writer
