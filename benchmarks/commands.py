"""The command lines the benchmarks report: this process's own, and those recorded beside a table
(``OUT/NAME.commands.txt``, one per run that appended rows to it, oldest first)."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path


def command(script: str, python: str = "python", argv: Sequence[str] | None = None) -> str:
    """This process's command as a report shows it: ``python benchmarks/SCRIPT.py ARGS``
    (``argv``: the arguments, default this process's)."""
    return shlex.join([python, f"benchmarks/{script}.py", *(sys.argv[1:] if argv is None else argv)])


def record(out: Path, name: str, script: str | None = None, python: str = "python") -> None:
    """Append this process's command (:func:`command` of ``script``, default ``name``) to
    ``out/NAME.commands.txt``."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.commands.txt", "a") as f:
        f.write(command(script or name, python) + "\n")


def recorded(out: Path, name: str) -> list[str]:
    """The commands recorded in ``out`` for table ``name``, oldest first."""
    path = out / f"{name}.commands.txt"
    return path.read_text().splitlines() if path.exists() else []
