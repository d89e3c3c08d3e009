"""Which candidates and which synthetic score the adaptive recipe should use: the study behind it.

For each model and seed, the shipped student's 300 calibration items are quantized with every
setting in --candidates (NNCF keyword arguments, wider than the recipe's own list: presets, range
estimators, bias correction), and each INT8 model is measured twice:

* on real test images: flip rate against FP32 (the truth the recipe cannot see);
* on independent synthetic items (the student at seed + 1000; the first 2,000 and all --score-samples):
  top-1 flip rate and mean KL(FP32 || INT8) of the softmax outputs (what the recipe can see).

The report says, per model, which candidate a score would pick and how far its real flips are
from the best candidate's, for "fewest synthetic flips" and "smallest KL" as the score.

    python benchmarks/recipe_candidates.py --models resnet20 mobilenetv2 --seeds 0
    python benchmarks/recipe_candidates.py --report-only

Rows are appended to benchmarks/results/recipe_candidates.csv as they finish (a rerun skips the
(model, seed, candidate) rows already there); the Markdown report is rebuilt from the CSV.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
import time
from pathlib import Path

import numpy as np
from rows import appending, done_keys
from study import rule_outcome, run_study, study_parser
from testset import batched, load_test
from zoo import resolve_models

from openvino_synthcalib.recipes import ADAPTIVE_CANDIDATES

FIELDS = ["model", "seed", "candidate", "real_flip", "real_top1", "synth_flip_2000", "synth_flip", "kl_2000", "kl",
          "score_samples", "quantize_s"]  # fmt: skip


def candidates() -> dict[str, dict]:
    """NNCF keyword arguments of every setting studied: the recipe's named candidates (as the recipe
    builds them) and a few more."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    from openvino_synthcalib.recipes import CANDIDATES, nncf_kwargs_for

    out = {name: nncf_kwargs_for(name) for name in CANDIDATES}
    out.update(
        mixed={"preset": nncf.QuantizationPreset.MIXED},
        bias_correction_full={"fast_bias_correction": False},
        no_bias_correction={"advanced_parameters": AdvancedQuantizationParameters(disable_bias_correction=True)},
    )
    return out


def run(args: argparse.Namespace, csv_path: Path) -> None:
    import nncf
    import openvino as ov

    import openvino_synthcalib as synthcalib
    from openvino_synthcalib.backends import prepare_reference
    from openvino_synthcalib.recipes import _materialized, predict_logits, score, scoring_batches
    from openvino_synthcalib.stream import make_stream

    settings = candidates()
    done = done_keys(csv_path, ("model", "seed", "candidate"))
    x_test, labels = load_test(args.test, preset=args.preset)
    test_batches = batched(x_test)
    with appending(csv_path, FIELDS) as (f, writer):
        for path in resolve_models(args.models, args.test.parent):
            fp32 = ov.Core().read_model(str(path))
            reference = prepare_reference(fp32, "CPU", "f32")
            ref_real = None
            for seed in args.seeds:
                todo = [c for c in args.candidates if (path.stem, str(seed), c) not in done]
                if not todo:
                    continue
                if ref_real is None:
                    ref_real = predict_logits(reference, test_batches).argmax(1)
                spec = f"generator:{args.generator}"
                with synthcalib.Dataset(spec, args.samples, model=fp32, transform=args.preset, seed=seed) as ds:
                    data = _materialized(ds)
                with make_stream(spec, args.score_samples, model=fp32, transform=args.preset, seed=seed + 1000,
                                 precision="f32") as stream:  # fmt: skip
                    batches = scoring_batches(fp32, stream)
                ref_synth = predict_logits(reference, batches)
                for name in todo:
                    started = time.perf_counter()
                    with contextlib.redirect_stdout(sys.stderr):
                        int8 = nncf.quantize(fp32.clone(), data, subset_size=args.samples, **settings[name])
                    seconds = time.perf_counter() - started
                    runnable = prepare_reference(int8, "CPU", "f32")
                    logits = predict_logits(runnable, batches)
                    real = predict_logits(runnable, test_batches).argmax(1)
                    first, full = score(ref_synth[:2000], logits[:2000]), score(ref_synth, logits)
                    row = {
                        "model": path.stem, "seed": seed, "candidate": name,
                        "real_flip": round(100 * float((real != ref_real).mean()), 2),
                        "real_top1": round(100 * float((real == labels).mean()), 2),
                        "synth_flip_2000": round(100 * first["flip_rate"], 3), "synth_flip": round(100 * full["flip_rate"], 3),
                        "kl_2000": f"{first['kl']:.5g}", "kl": f"{full['kl']:.5g}",
                        "score_samples": len(ref_synth), "quantize_s": round(seconds, 1),
                    }  # fmt: skip
                    writer.writerow(row)
                    f.flush()
                    print(f"{path.stem} seed {seed} {name:22s} real flips {row['real_flip']:.2f}% "
                          f"synthetic flips {row['synth_flip']:.2f}% KL {row['kl']}", file=sys.stderr)  # fmt: skip


def report(csv_path: Path, commands: list[str]) -> str:
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    groups: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["seed"]), {})[r["candidate"]] = r
    names = list(dict.fromkeys(r["candidate"] for r in rows))
    lines = [
        "# Candidates and scores for the adaptive recipe",
        "",
        "Produced by:",
        "",
        *[f"    {c}" for c in commands],
        "",
        "Calibration: 300 items of the shipped student (unless a command says otherwise). Real flips %: 10,000 test"
        " images whose INT8 top-1 differs from FP32's. Synthetic: the student at seed + 1000, f32; flips % and mean KL(FP32 || INT8) x1e-3 on all scoring"
        " items (`synth_flip_2000`/`kl_2000` in the CSV: the first 2,000).",
        "",
        "## Real flips % (synthetic flips % / KL x1e-3) per candidate",
        "",
        "| model | seed | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for (m, seed), c in groups.items():
        cells = [
            f"{float(c[n]['real_flip']):.2f} ({float(c[n]['synth_flip']):.2f} / {1000 * float(c[n]['kl']):.2f})"
            if n in c
            else "–"
            for n in names
        ]
        lines.append(f"| {m} | {seed} | " + " | ".join(cells) + " |")
    lines += ["", "## What a score picks, among the candidates measured for that model", ""]
    lines += ["| candidate set | score | picks the real-best | extra real flips over the best (pp), mean / worst |"]
    lines += ["|---|---|---|---|"]
    sets = {"all measured": None, f"the recipe's ({', '.join(ADAPTIVE_CANDIDATES)})": ADAPTIVE_CANDIDATES,
            "the previous recipe's (nncf, minmax, histogram)": ("nncf", "minmax", "histogram")}  # fmt: skip
    for label, subset in sets.items():
        pools = [[r for n, r in c.items() if subset is None or n in subset] for c in groups.values()]
        pools = [p for p in pools if subset is None or len(p) == len(subset)]
        for score_name, key in (("fewest synthetic flips, then KL", ("synth_flip", "kl")),
                                ("smallest KL, then flips", ("kl", "synth_flip"))):  # fmt: skip
            hits, extra = rule_outcome(pools, *key, real="real_flip")
            if extra:
                lines.append(
                    f"| {label} | {score_name} | {hits} of {len(extra)} | {np.mean(extra):.2f} / {max(extra):.2f} |"
                )
    text = "\n".join(lines) + "\n"
    (csv_path.parent / "recipe_candidates.md").write_text(text)
    return text


def main() -> None:
    p = study_parser(__doc__, seeds=[0], score_samples=4000)
    p.add_argument("--candidates", nargs="*", default=None, help="default: all studied settings")
    args = p.parse_args()
    if not args.report_only:
        args.candidates = args.candidates or list(candidates())
        unknown = set(args.candidates) - set(candidates())
        if unknown:
            p.error(f"--candidates: unknown {', '.join(sorted(unknown))}; expected some of {', '.join(candidates())}")
    run_study("recipe_candidates", args, run, report)


if __name__ == "__main__":
    main()
