"""What the studies of the recipe share: their options, running one (its command recorded beside
its results, for the report), and how a scoring rule fares against the real test flips."""

from __future__ import annotations

import argparse
from pathlib import Path

from commands import record, recorded


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


def rule_outcome(runs: list[list[dict[str, str]]], first: str, second: str, real: str = "flip_rate"):
    """Picking each run's candidate row by the smallest ``(first, second)``: how many picks had the
    fewest ``real`` flips of their run (ties count), and each pick's extra real flips over that best."""
    hits, extra = 0, []
    for cands in runs:
        pick = min(cands, key=lambda r: (float(r[first]), float(r[second])))
        best = min(float(r[real]) for r in cands)
        hits += float(pick[real]) <= best
        extra.append(float(pick[real]) - best)
    return hits, extra
