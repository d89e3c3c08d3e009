"""The adaptive recipe's cost: wall time of ``--recipe adaptive`` over ``--recipe nncf``, before and after.

For each model (the CIFAR-10 zoo on the shipped student, EfficientNet-Lite0 on the shipped ImageNet
generator), ``synthcalib quantize`` runs with ``--recipe nncf`` and ``--recipe adaptive`` from two
checkouts of the project: ``--before`` (a checkout of the code before the change, e.g.
``git worktree add /tmp/before <rev>``) and this one. The four runs of a model go in interleaved
rounds (the order rotates each round), each in its own process; a run's time is its report's
``quantize_seconds`` (the recipe and the quantization, without reading the model or starting
Python). The ratio adaptive / nncf is taken within each round, then the median over rounds.

The INT8 models of the first round are compared byte for byte (``.bin``; ``.xml`` without the
numbers OpenVINO gives unnamed nodes from a process-wide counter), and their real flip rate is
measured against the FP32 model with f32 inference: on the 10,000 CIFAR-10 test images, on the
500 ImageNet sample images (centre crop).

    git worktree add /tmp/before 1428654
    python benchmarks/recipe_cost.py --before /tmp/before                 # the committed table
    python benchmarks/recipe_cost.py --before /tmp/before --models resnet20 --rounds 1   # minutes

Rows go to ``benchmarks/results/recipe_cost.csv`` as they finish (a rerun skips rows there);
``recipe_cost.md`` is rebuilt from it (``--report-only``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from commands import record, recorded
from paths import REPO, RESULTS, SHARED, ZOO, ZOO_MODELS
from rows import appending, done_keys

LITE0 = SHARED / "models" / "imagenet" / "efficientnet_lite0.onnx"
SAMPLE = SHARED / "datasets" / "imagenet-sample"
CIFAR_TEST = SHARED / "datasets" / "cifar10-jpeg" / "test"
FIELDS = [
    "model",
    "round",
    "code",
    "recipe",
    "seconds",
    "chosen",
    "statistics_s",
    "quantization_s",
    "scoring_s",
    "bin_sha256",
    "xml_sha256",
    "flip_rate",
]
KEY = ("model", "round", "code", "recipe")
CODES = ("before", "after")
RECIPES = ("nncf", "adaptive")


def model_setup(name: str) -> tuple[Path, list[str], list[str]]:
    """``(model, quantize arguments, evaluate arguments)``."""
    if name == "efficientnet_lite0":
        norm = ["--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5"]
        data = ["--data", f"images:{SAMPLE / 'images'}?crop=center", "--class-list", str(SAMPLE / "classes.tsv")]
        return LITE0, ["--source", "generator:imagenet", *norm], [*data, *norm]
    return (
        ZOO / f"{name}.onnx",
        ["--source", "generator:cifar10", "--preset", "cifar10"],
        [
            "--data",
            f"images:{CIFAR_TEST}",
            "--preset",
            "cifar10",
        ],
    )


def synthcalib(code: Path, args: list[str]) -> dict:
    """Run ``synthcalib ARGS --json`` from checkout ``code`` in a fresh process; its JSON report."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    proc = subprocess.run(
        [sys.executable, "-m", "openvino_synthcalib.cli", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    if proc.returncode != 0:
        raise SystemExit(f"synthcalib {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def normalized_xml(path: Path) -> bytes:
    return re.sub(rb'name="([A-Za-z]+)_\d+"', rb'name="\1_N"', path.read_bytes())


def flips(code: Path, int8: Path, fp32: Path, eval_args: list[str]) -> float:
    report = synthcalib(code, ["evaluate", str(int8), "--reference", str(fp32), *eval_args])
    return round(1.0 - report["agreement"], 6)


def run(args: argparse.Namespace) -> None:
    out_csv = args.out / "recipe_cost.csv"
    done = done_keys(out_csv, KEY)
    codes = {"before": args.before.resolve(), "after": REPO}
    work = Path(tempfile.mkdtemp(prefix="recipe_cost_"))
    with appending(out_csv, FIELDS) as (f, writer):
        for name in args.models:
            model, quantize_args, eval_args = model_setup(name)
            if not model.exists():
                print(f"skipped {name}: {model} not found (set SYNTHCALIB_SHARED)", file=sys.stderr)
                continue
            runs = [(c, r) for c in CODES for r in RECIPES]
            for seed in args.choice_seeds:  # the choice and INT8 model only, on other seeds
                for code in CODES:
                    if (name, f"seed{seed}", code, "adaptive") in done:
                        continue
                    target = work / f"{name}-{code}-adaptive-seed{seed}.xml"
                    argv = ["quantize", str(model), *quantize_args, "--recipe", "adaptive", "--seed", str(seed)]
                    report = synthcalib(codes[code], [*argv, "--num-samples", "300", "--out", str(target)])
                    row = {
                        "model": name,
                        "round": f"seed{seed}",
                        "code": code,
                        "recipe": "adaptive",
                        "seconds": report["quantize_seconds"],
                        "chosen": report["recipe"]["chosen"],
                        "bin_sha256": hashlib.sha256(target.with_suffix(".bin").read_bytes()).hexdigest()[:16],
                        "xml_sha256": hashlib.sha256(normalized_xml(target)).hexdigest()[:16],
                    }
                    writer.writerow(row)
                    f.flush()
                    print(json.dumps(row), file=sys.stderr)
            for rnd in range(args.rounds):
                order = runs[rnd % len(runs) :] + runs[: rnd % len(runs)]  # rotate: no run always first
                for code, recipe in order:
                    if (name, str(rnd), code, recipe) in done:
                        continue
                    target = work / f"{name}-{code}-{recipe}-{rnd}.xml"
                    argv = ["quantize", str(model), *quantize_args, "--recipe", recipe, "--seed", "0"]
                    report = synthcalib(codes[code], [*argv, "--num-samples", "300", "--out", str(target)])
                    split = report["recipe"].get("time_split", {})
                    row = {
                        "model": name,
                        "round": rnd,
                        "code": code,
                        "recipe": recipe,
                        "seconds": report["quantize_seconds"],
                        "chosen": report["recipe"]["chosen"],
                        "statistics_s": split.get("statistics", ""),
                        "quantization_s": split.get("quantization", ""),
                        "scoring_s": split.get("scoring", ""),
                        "bin_sha256": hashlib.sha256(target.with_suffix(".bin").read_bytes()).hexdigest()[:16],
                        "xml_sha256": hashlib.sha256(normalized_xml(target)).hexdigest()[:16],
                        "flip_rate": flips(REPO, target, model, eval_args) if rnd == 0 else "",
                    }
                    writer.writerow(row)
                    f.flush()
                    print(json.dumps(row), file=sys.stderr)


def report(out: Path) -> str:
    with open(out / "recipe_cost.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    models = list(dict.fromkeys(r["model"] for r in rows))
    lines = [
        "# The adaptive recipe's cost, before and after (issue 22)",
        "",
        "Wall time of `synthcalib quantize --recipe adaptive` over `--recipe nncf` (300 items, seed 0), both",
        "measured in the same run on this 2-core CPU: each round runs the four (code, recipe) pairs, each in",
        "its own process, in an order that rotates every round; a run's time is its report's",
        "`quantize_seconds` (recipe and quantization). Ratio: per round, then the median over rounds.",
        "`before`: the recipe with one `nncf.quantize` per candidate, scoring every item; `after`: statistics",
        "collected once for every candidate (`openvino_synthcalib/nncf_pipelines.py`) and scoring in stages",
        "(256, 512, then all 1000 items) that stop once the leader's KL lead is 3 standard errors",
        "(`recipes.SCORE_STAGES`, `DECISIVE_Z`). Same INT8 .bin: the seed-0 adaptive models, byte for byte; other",
        "seeds: the adaptive run of seeds 1 and 2 before and after (choice and .bin). Flip rate: INT8 vs FP32",
        "top-1 on the 10,000 CIFAR-10 test images / the 500 ImageNet sample images (centre crop), f32 inference.",
        "",
        "| model | rounds | nncf s (before / after) | adaptive s (before / after) | adaptive / nncf before | "
        "adaptive / nncf after | choice before / after | same INT8 .bin | same choice and .bin, other seeds | "
        "flips adaptive (before / after) | after: statistics / quantization / scoring s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_model_row(name, rows) for name in models]
    lines += ["", "Produced by:", "", *[f"    {c}" for c in recorded(out, "recipe_cost")], ""]
    return "\n".join(lines)


def _model_row(name: str, rows: list[dict]) -> str:
    """One model's row of the table."""
    everything = [r for r in rows if r["model"] == name]
    mine = [r for r in everything if r["round"].isdigit()]
    rounds = sorted({r["round"] for r in mine}, key=int)
    other = {}
    for r in everything:
        if not r["round"].isdigit():
            other.setdefault(r["round"], {})[r["code"]] = (r["chosen"], r["bin_sha256"])
    kept = sum(v.get("before") == v.get("after") for v in other.values())

    def get(code: str, recipe: str, rnd: str) -> dict | None:
        return next((r for r in mine if (r["code"], r["recipe"], r["round"]) == (code, recipe, rnd)), None)

    def ratios(code: str) -> list[float]:
        out = []
        for rnd in rounds:
            a, n = get(code, "adaptive", rnd), get(code, "nncf", rnd)
            if a and n:
                out.append(float(a["seconds"]) / float(n["seconds"]))
        return out

    def median(code: str, recipe: str) -> str:
        values = [float(r["seconds"]) for r in mine if (r["code"], r["recipe"]) == (code, recipe)]
        return f"{statistics.median(values):.1f}" if values else "-"

    def first(code: str, recipe: str) -> dict:
        return get(code, recipe, "0") or {}

    rb, ra = ratios("before"), ratios("after")
    ab, aa = first("before", "adaptive"), first("after", "adaptive")
    same = "yes" if ab.get("bin_sha256") and ab.get("bin_sha256") == aa.get("bin_sha256") else "no"
    if same == "yes" and ab.get("xml_sha256") != aa.get("xml_sha256"):
        same = "bin yes, xml no"
    after = [r for r in mine if (r["code"], r["recipe"]) == ("after", "adaptive") and r["statistics_s"]]
    split = (
        " / ".join(
            f"{statistics.median(float(r[k]) for r in after):.1f}"
            for k in ("statistics_s", "quantization_s", "scoring_s")
        )
        if after
        else "-"
    )

    def pct(row: dict) -> str:
        return f"{100 * float(row['flip_rate']):.2f}%" if row.get("flip_rate") else "-"

    return (
        f"| {name} | {len(rounds)} | {median('before', 'nncf')} / {median('after', 'nncf')} | "
        f"{median('before', 'adaptive')} / {median('after', 'adaptive')} | "
        f"x{statistics.median(rb):.2f} | x{statistics.median(ra):.2f} | "
        f"{ab.get('chosen', '-')} / {aa.get('chosen', '-')} | {same} | {kept} of {len(other)} | "
        f"{pct(ab)} / {pct(aa)} | {split} |"
        if rb and ra
        else f"| {name} | {len(rounds)} | incomplete | | | | | | | | |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="a checkout of the code before the change")
    parser.add_argument("--models", nargs="+", default=[*ZOO_MODELS, "efficientnet_lite0"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--choice-seeds", type=int, nargs="*", default=[1, 2], help="seeds on which only the choice is compared"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if not args.report_only:
        if args.before is None or not (args.before / "openvino_synthcalib").is_dir():
            raise SystemExit("--before: expected a checkout of the project (git worktree add /tmp/before REV)")
        record(args.out, "recipe_cost")
        started = time.perf_counter()
        run(args)
        print(f"done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    (args.out / "recipe_cost.md").write_text(report(args.out))


if __name__ == "__main__":
    main()
