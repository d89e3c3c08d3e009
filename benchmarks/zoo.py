"""The CIFAR-10 classifiers the benchmarks quantize: the shared zoo's, the extra zoo's (built by
``train_zoo.py``, run as a script, when absent) or model files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from paths import EXTRA_MODELS, EXTRA_ZOO, REPO, ZOO


def ensure_extra_zoo(names: list[str], data: Path, out: Path = EXTRA_ZOO) -> dict[str, Path]:
    """ONNX path of each extra-zoo model in ``names``; ``train_zoo.py`` trains and exports those
    not built yet (seed 0, each model's recipe, on the CPU) and skips the others."""
    script = REPO / "benchmarks" / "train_zoo.py"
    cmd = [sys.executable, str(script), "--models", *names, "--data", str(data), "--out", str(out), "--device", "cpu"]
    if subprocess.run(cmd).returncode:
        raise SystemExit(f"{script.name} --models {' '.join(names)} failed")
    return {n: out / f"{n}.onnx" for n in names}


def resolve_models(names: list[str] | None, data: Path) -> list[Path]:
    """Model files for names of the shared zoo, of the extra zoo (trained here when absent) or paths;
    ``None``: every model of both zoos. ``data``: the CIFAR-10 folder the extra zoo trains on."""
    shared = {p.stem: p for p in ZOO.glob("*.onnx")}
    built: dict[str, Path] = {}
    extra: set[str] = set()
    if names is None or any(not n.endswith((".onnx", ".xml")) and n not in shared for n in names):
        extra = set(EXTRA_MODELS)
        names = names or [*sorted(shared), *sorted(extra)]
        wanted = [n for n in names if n in extra and n not in shared]
        built = ensure_extra_zoo(wanted, data) if wanted else {}
    out = []
    for n in names:
        if n.endswith((".onnx", ".xml")):
            out.append(Path(n))
        elif n in shared:
            out.append(shared[n])
        elif n in built:
            out.append(Path(built[n]))
        else:
            raise SystemExit(f"--models: unknown model {n!r}; expected one of {', '.join([*shared, *extra])} or a file")
    return out
