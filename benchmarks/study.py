"""What the studies of the recipe on the student share: their options, the commands file beside
their results (each run's exact command line, for the report) and the test set."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any


def record(out: Path, name: str) -> None:
    """Append this process's command (``python benchmarks/NAME.py ARGS``) to ``out/NAME.commands.txt``."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.commands.txt", "a") as f:
        f.write(shlex.join(["python", f"benchmarks/{name}.py", *sys.argv[1:]]) + "\n")


def recorded(out: Path, name: str) -> list[str]:
    """The commands recorded in ``out`` for benchmark ``name``, oldest first."""
    path = out / f"{name}.commands.txt"
    return path.read_text().splitlines() if path.exists() else []


def study_parser(doc: str, seeds: list[int], score_samples: int) -> argparse.ArgumentParser:
    """The options shared by the studies of the recipe on the student (models, seeds, sizes, paths)."""
    from paths import CIFAR_TEST, RESULTS, STUDENT

    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--models", nargs="*", default=None, help="zoo names or model files (default: the whole zoo)")
    p.add_argument("--seeds", nargs="*", type=int, default=seeds)
    p.add_argument("--score-samples", type=int, default=score_samples, help="synthetic scoring items")
    p.add_argument("--samples", type=int, default=300, help="calibration items")
    p.add_argument("--generator", type=Path, default=STUDENT, help="calibration and scoring generator (the student)")
    p.add_argument("--test", type=Path, default=CIFAR_TEST)
    p.add_argument("--preset", default="cifar10")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p


def run_study(name: str, args: argparse.Namespace, run, report) -> None:
    """Record this command, ``run(args, csv_path)`` unless ``--report-only``, then print the report
    rebuilt from ``out/NAME.csv`` with every recorded command."""
    csv_path = args.out / f"{name}.csv"
    if not args.report_only:
        record(args.out, name)
        run(args, csv_path)
    print(report(csv_path, recorded(args.out, name)))


def load_test_batches(args: argparse.Namespace, batch: int = 250) -> tuple[list[Any], Any]:
    """The test images under ``--test``, preprocessed with ``--preset``, in batches; and their labels."""
    from calibration_sources import load_test

    from openvino_synthcalib.transforms import Transform

    x_test, labels = load_test(args.test, None)
    x_test = Transform.from_options(args.preset)(x_test)
    return [x_test[i : i + batch] for i in range(0, len(x_test), batch)], labels
