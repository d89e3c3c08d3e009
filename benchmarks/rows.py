"""The benchmarks' resumable CSV tables: the rows already measured, appending new ones, and the
columns of the table that two scripts append to."""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

#: The calibration table (``calibration_sources.csv``): ``calibration_sources.py`` and ``pot_zoo.py``
#: (modes ``pot_default`` / ``pot_aa``) append to it; a row is identified by its ``CALIBRATION_KEY``.
CALIBRATION_FIELDS = [
    "model",
    "source",
    "mode",
    "recipe",
    "samples",
    "seed",
    "fp32_top1",
    "int8_top1",
    "flip_rate",
    "quantize_s",
    "chosen",
    "synthetic_flip_rate",
    "synthetic_kl",
    "nncf_quantize_s",
]
CALIBRATION_KEY = ("model", "source", "mode", "recipe", "samples", "seed")


def read_rows(csv_path: Path) -> list[dict[str, str]]:
    """Every row of the CSV (none when it does not exist yet)."""
    if not csv_path.exists():
        return []
    with open(csv_path) as f:
        return list(csv.DictReader(f))


def done_keys(csv_path: Path, key: tuple[str, ...]) -> set[tuple[str, ...]]:
    """The ``key`` columns of every row already in the CSV (a rerun skips them)."""
    return {tuple(r[k] for k in key) for r in read_rows(csv_path)}


def drop_rows(csv_path: Path, fields: list[str], drop: Callable[[dict[str, str]], bool]) -> int:
    """Rewrite the CSV without the rows ``drop`` selects (to measure them again); returns how many."""
    if not csv_path.exists():
        return 0
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    kept = [r for r in rows if not drop(r)]
    tmp = csv_path.with_suffix(".tmp.csv")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    tmp.replace(csv_path)
    return len(rows) - len(kept)


def replace_rows(csv_path: Path, fields: list[str], drop: Callable[[dict[str, str]], bool]) -> None:
    """A benchmark's ``--replace``: drop the rows it is about to measure again, and say how many."""
    n = drop_rows(csv_path, fields, drop)
    print(f"--replace: {n} rows dropped to be measured again", file=sys.stderr, flush=True)


@contextlib.contextmanager
def appending(csv_path: Path, fields: list[str]) -> Iterator[tuple[Any, Any]]:
    """``(file, csv.DictWriter)`` appending to the CSV, with the header when the file is new."""
    new_file = not csv_path.exists()
    with open(csv_path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if new_file:
            writer.writeheader()
        yield f, writer


def load_meta(out: Path, name: str) -> dict:
    """A report's ``NAME.meta.json`` (what its rows do not hold: versions, FP32 references), or {}."""
    path = out / f"{name}.meta.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save_meta(out: Path, name: str, meta: dict) -> None:
    """Write ``NAME.meta.json`` atomically."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.meta.json"
    path.with_suffix(".tmp").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    path.with_suffix(".tmp").replace(path)
