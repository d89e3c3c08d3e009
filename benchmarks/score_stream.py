"""How wide the adaptive recipe's scoring stream should draw the generator's latents.

For each model and seed, the adaptive recipe quantizes the shipped student's 300 calibration items
with each of its candidates (``synthcalib.recipe(..., keep_candidates=True)``, exactly the models
the recipe chooses from). Each candidate is then measured:

* on real test images: flip rate against FP32 (the truth the recipe cannot see);
* on the recipe's scoring stream (the student at seed + 1000, 1,000 items, the calibration
  precision) with the latents drawn at each --latent-scales standard deviation: mean KL(FP32 || INT8)
  and top-1 flips, the recipe's score.

The report says, per latent scale, how often the recipe's rule (smallest KL, then flips) picked the
candidate with the fewest real flips, and how many real flips its pick added over that best.

    python benchmarks/score_stream.py --models resnet20 mobilenetv2 --seeds 0 1 2
    python benchmarks/score_stream.py --report-only

Rows are appended to benchmarks/results/score_stream.csv as they finish (a rerun skips the
(model, seed) runs already there); the Markdown report is rebuilt from the CSV.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
from pathlib import Path

import numpy as np
from rows import appending, done_keys
from study import rule_outcome, run_study, study_parser
from testset import batched, load_test
from zoo import resolve_models

FIELDS = ["model", "seed", "candidate", "latent_scale", "real_flip", "real_top1", "synth_flip", "kl", "score_samples"]


def run(args: argparse.Namespace, csv_path: Path) -> None:
    import openvino as ov

    import openvino_synthcalib as synthcalib
    from openvino_synthcalib.backends import prepare_reference
    from openvino_synthcalib.defaults import DEFAULTS
    from openvino_synthcalib.recipes import SCORE_SEED_OFFSET, predict_logits, score, scoring_batches
    from openvino_synthcalib.stream import make_stream

    done = done_keys(csv_path, ("model", "seed"))
    x_test, labels = load_test(args.test, preset=args.preset)
    test_batches = batched(x_test)
    spec = f"generator:{args.generator}"
    with appending(csv_path, FIELDS) as (f, writer):
        for path in resolve_models(args.models, args.test.parent):
            seeds = [s for s in args.seeds if (path.stem, str(s)) not in done]
            if not seeds:
                continue
            fp32 = ov.Core().read_model(str(path))
            reference = prepare_reference(fp32, "CPU", "f32")
            ref_real = predict_logits(reference, test_batches).argmax(1)
            for seed in seeds:
                with synthcalib.Dataset(spec, args.samples, model=fp32, transform=args.preset, seed=seed) as ds:
                    with contextlib.redirect_stdout(sys.stderr):
                        r = synthcalib.recipe(fp32, ds, keep_candidates=True, subset_size=args.samples)
                runnable = {c: prepare_reference(m, "CPU", "f32") for c, m in r.candidate_models.items()}
                real = {c: predict_logits(m, test_batches).argmax(1) for c, m in runnable.items()}
                for scale in args.latent_scales:
                    with make_stream(
                        f"{spec}?latent_scale={scale:g}",
                        args.score_samples,
                        model=fp32,
                        transform=args.preset,
                        seed=seed + SCORE_SEED_OFFSET,
                        precision=DEFAULTS["calibration_precision"],
                    ) as stream:
                        batches = scoring_batches(fp32, stream)
                    ref_synth = predict_logits(reference, batches)
                    for name, model in runnable.items():
                        s = score(ref_synth, predict_logits(model, batches))
                        row = {
                            "model": path.stem, "seed": seed, "candidate": name, "latent_scale": f"{scale:g}",
                            "real_flip": round(100 * float((real[name] != ref_real).mean()), 2),
                            "real_top1": round(100 * float((real[name] == labels).mean()), 2),
                            "synth_flip": round(100 * s["flip_rate"], 3), "kl": f"{s['kl']:.5g}",
                            "score_samples": len(ref_synth),
                        }  # fmt: skip
                        writer.writerow(row)
                f.flush()
                print(f"{path.stem} seed {seed}: done", file=sys.stderr)


def report(csv_path: Path, commands: list[str]) -> str:
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    scales = sorted({r["latent_scale"] for r in rows}, key=float)
    runs: dict[tuple[str, str], dict[str, dict[str, dict[str, str]]]] = {}
    for r in rows:
        runs.setdefault((r["model"], r["seed"]), {}).setdefault(r["latent_scale"], {})[r["candidate"]] = r
    names = list(dict.fromkeys(r["candidate"] for r in rows))
    lines = [
        "# The adaptive recipe's scoring stream: how wide to draw the generator's latents",
        "",
        "Produced by:",
        "",
        *[f"    {c}" for c in commands],
        "",
        "Calibration: 300 items of the shipped student; candidates as the adaptive recipe quantizes them. Real"
        " flips %: 10,000 test images whose INT8 top-1 differs from FP32's. Scoring stream: 1,000 items of the"
        " student at seed + 1000, latents drawn with the standard deviation in the column; the recipe picks the"
        " smallest mean KL(FP32 || INT8), then the fewest synthetic flips.",
        "",
        "## What the recipe picks, per latent scale of the scoring stream",
        "",
        "| latent scale | picks the real-best | extra real flips over the best (pp), mean / worst |"
        " mean real flips of the pick (%) |",
        "|---|---|---|---|",
    ]
    for scale in scales:
        pools = [list(by_scale[scale].values()) for by_scale in runs.values() if scale in by_scale]
        hits, extra = rule_outcome(pools, "kl", "synth_flip", real="real_flip")
        picked = [float(min(p, key=lambda r: (float(r["kl"]), float(r["synth_flip"])))["real_flip"]) for p in pools]
        lines.append(
            f"| {scale} | {hits} of {len(pools)} | {np.mean(extra):.3f} / {max(extra):.2f} | {np.mean(picked):.3f} |"
        )
    lines += [
        "",
        "## Per run: real flips % of each candidate, and the pick at each latent scale",
        "",
        "| model | seed | " + " | ".join(names) + " | " + " | ".join(f"pick at {s}" for s in scales) + " |",
        "|---|---|" + "---|" * (len(names) + len(scales)),
    ]
    for (model, seed), by_scale in runs.items():
        first = next(iter(by_scale.values()))
        cells = [f"{float(first[n]['real_flip']):.2f}" if n in first else "–" for n in names]
        picks = []
        for s in scales:
            cands = by_scale.get(s)
            picks.append(
                min(cands, key=lambda n: (float(cands[n]["kl"]), float(cands[n]["synth_flip"]))) if cands else "–"
            )
        lines.append(f"| {model} | {seed} | " + " | ".join(cells + picks) + " |")
    text = "\n".join(lines) + "\n"
    (csv_path.parent / "score_stream.md").write_text(text)
    return text


def main() -> None:
    p = study_parser(__doc__, seeds=[0, 1, 2], score_samples=1000)
    p.add_argument("--latent-scales", nargs="*", type=float, default=[1.0, 1.25, 1.5, 2.0])
    args = p.parse_args()
    if not args.report_only and any(not np.isfinite(s) or s <= 0 for s in args.latent_scales):
        p.error(f"--latent-scales: expected positive numbers, got {args.latent_scales}")
    run_study("score_stream", args, run, report)


if __name__ == "__main__":
    main()
