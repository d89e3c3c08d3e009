"""Run folders and checkpoints of the distillation loop.

A run lives in ``<runs_dir>/NNNNN-<name>/``; checkpoints are ``checkpoint-SSSSSSS.pt`` files written
atomically, the last few kept. Loading falls back to the previous checkpoint, saying so, when the
newest one is unreadable (a disk that filled up, a copy cut short).
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import SynthcalibError
from ..files import ensure_dir, safe_filename, write_with

CKPT_RE = re.compile(r"checkpoint-(\d+)\.pt$")
KEEP_CHECKPOINTS = 3


def run_name(name: str) -> str:
    """The run name as its folder carries it: safe on every file system (``my run/v2`` -> ``my_run_v2``)."""
    return safe_filename(name, "run")


def next_run_dir(runs_dir: str | Path, name: str) -> Path:
    """``runs_dir/NNNNN-name`` with NNNNN one above the highest existing run number (not created)."""
    root = ensure_dir(runs_dir, "--runs-dir")
    nums = [int(p.name.split("-", 1)[0]) for p in root.iterdir() if re.match(r"^\d{5}-", p.name)]
    return root / f"{max(nums, default=-1) + 1:05d}-{run_name(name)}"


def find_run_dir(runs_dir: str | Path, name: str, resume: str) -> Path:
    """Resolve ``--resume`` (a run folder, or ``latest`` for the newest run named ``name``)."""
    if resume != "latest":
        p = Path(resume)
        if not (p / "options.json").is_file():
            raise SynthcalibError(f"--resume {resume}: not a run folder (no options.json)")
        return p
    root = Path(runs_dir)
    runs = sorted(
        p
        for p in root.glob("[0-9][0-9][0-9][0-9][0-9]-*")
        if p.name[6:] == run_name(name) and (p / "options.json").is_file()
    )
    if not runs:
        raise SynthcalibError(f"--resume latest: no run named {name!r} in {runs_dir}")
    return runs[-1]


def checkpoints(run_dir: str | Path) -> list[Path]:
    """The checkpoints of a run, newest (highest step) first."""
    found = [(int(m.group(1)), p) for p in Path(run_dir).glob("checkpoint-*.pt") if (m := CKPT_RE.search(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint with the highest step in ``run_dir`` (None if there is none)."""
    found = checkpoints(run_dir)
    return found[0] if found else None


def _read(path: Path, map_location: Any) -> dict[str, Any]:
    import torch

    data = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(data, dict) or "G_ema" not in data or "step" not in data:
        raise ValueError("not a train_generator checkpoint (no G_ema)")
    return data


def load_checkpoint(run: str | Path, flag: str, map_location: Any = "cpu") -> tuple[dict[str, Any], Path]:
    """A checkpoint given a run folder (its newest readable one) or a checkpoint file."""
    p = Path(run)
    if p.is_file():
        try:
            return _read(p, map_location), p
        except Exception as exc:
            raise SynthcalibError(f"{flag} {run}: not a readable checkpoint ({str(exc).splitlines()[0]})") from None
    if not p.is_dir():
        raise SynthcalibError(f"{flag} {run}: no such run folder or checkpoint file")
    found = checkpoints(p)
    if not found:
        raise SynthcalibError(f"{flag} {run}: the run folder has no checkpoint-*.pt yet")
    for ckpt in found:
        try:
            data = _read(ckpt, map_location)
        except Exception as exc:
            print(
                f"warning: {ckpt} is unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
                "trying the previous checkpoint",
                file=sys.stderr,
            )
            continue
        return data, ckpt
    raise SynthcalibError(f"{flag} {run}: none of its {len(found)} checkpoints is readable")


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep: int = KEEP_CHECKPOINTS) -> Path:
    """Write ``checkpoint-SSSSSSS.pt`` atomically and keep the last ``keep`` (0: all)."""
    import torch

    data = {"step": step, **state, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path = write_with(run_dir / f"checkpoint-{step:07d}.pt", lambda tmp: torch.save(data, tmp), "checkpoint")
    for old in checkpoints(run_dir)[keep:] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path
