"""How far the adaptive recipe's pick leads NNCF's defaults on the synthetic score, against what it does
to real flips.

Issue 28, item 3 (why choosing among today's candidates gains nothing on ImageNet). For each model and
calibration seed, the product's ``quantize(recipe="adaptive")`` runs on the shipped generator of its
domain (300 items; the preprocessing of ``imagenet.py`` / ``calibration_sources.py``), and its report's
per-candidate scores are kept: the mean KL divergence of each candidate's INT8 outputs from FP32's on
the scoring stream, the items scored and the pick. The *lead* of a candidate is
``1 - KL(candidate) / KL(nncf)``. The real outcome of a pick is read from the committed tables of the
same model, source and seed: the ``generator, adaptive`` and ``generator, nncf`` rows of
``imagenet.csv`` (1,200 held-out views), the ``student, adaptive`` and ``student, nncf`` rows of
``calibration_sources.csv`` (10,000 CIFAR-10 test images).

    python benchmarks/recipe_leads.py                          # both domains, seeds 0-2 (about 30 CPU minutes)
    python benchmarks/recipe_leads.py --domains imagenet       # the three ImageNet models
    python benchmarks/recipe_leads.py --report-only            # rebuild recipe_leads.md from the CSV

Rows go to ``benchmarks/results/recipe_leads.csv`` as they finish (a rerun skips rows already there).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from commands import record, recorded
from paths import GENERATORS, RESULTS, STUDENT, ZOO, ZOO_MODELS, generator_label
from rows import appending, done_keys, read_rows
from testset import IMAGENET_MODELS

NAME = "recipe_leads"
FIELDS = ["domain", "model", "seed", "generator", "chosen", "kl", "lead", "score_samples", "not_decisive"]
KEY = ("domain", "model", "seed", "generator")


def _imagenet_jobs():
    xml = GENERATORS["imagenet"]
    for name, (path, preset, _, _) in IMAGENET_MODELS.items():
        if not path.exists():
            raise SystemExit(f"{path} not found (set SYNTHCALIB_SHARED to the shared assets)")
        yield name, str(path), f"generator:{xml}", preset, generator_label("imagenet", xml)


def _cifar_jobs():
    for name in ZOO_MODELS:
        yield name, str(ZOO / f"{name}.onnx"), f"generator:{STUDENT}", "cifar10", ""


def measure(args) -> None:
    from openvino_synthcalib.quantization import quantize

    out_csv = args.out / f"{NAME}.csv"
    done = done_keys(out_csv, KEY)
    record(args.out, NAME)
    for domain in args.domains:
        for model, path, spec, transform, label in _imagenet_jobs() if domain == "imagenet" else _cifar_jobs():
            for seed in args.seeds:
                key = (domain, model, str(seed), label)
                if key in done:
                    continue
                with contextlib.redirect_stdout(sys.stderr):
                    report = quantize(path, spec, num_samples=300, seed=seed, transform=transform, recipe="adaptive")
                rec = report["recipe"]
                kl = {c: v["kl"] for c, v in rec["scores"].items()}
                row = dict(zip(KEY, key))
                row.update(
                    chosen=rec["chosen"],
                    kl=json.dumps({c: round(v, 6) for c, v in kl.items()}),
                    lead=json.dumps({c: round(1 - v / kl["nncf"], 4) for c, v in kl.items() if c != "nncf"}),
                    score_samples=rec.get("score_samples", ""),
                    not_decisive=json.dumps(rec.get("not_decisive")) if rec.get("not_decisive") else "",
                )
                with appending(out_csv, FIELDS) as (_, writer):
                    writer.writerow(row)
                print(f"  {domain} {model} seed {seed}: {rec['chosen']} {row['lead']}", file=sys.stderr, flush=True)


def _real_flips(out: Path) -> dict[tuple[str, str, str, str, str], float]:
    """(domain, model, seed, generator label, recipe) -> flip % from the committed calibration tables."""
    flips = {}
    for r in read_rows(out / "imagenet.csv"):
        if r["source"] == "generator" and r["samples"] == "300" and r["recipe"] in ("nncf", "adaptive"):
            flips[("imagenet", r["model"], r["seed"], r["generator"], r["recipe"])] = float(r["flip_rate"])
    for r in read_rows(out / "calibration_sources.csv"):
        if r["source"] == "student" and r["mode"] == "default" and r["samples"] == "300":
            if r["recipe"] in ("nncf", "adaptive"):
                flips[("cifar10", r["model"], r["seed"], "", r["recipe"])] = float(r["flip_rate"])
    return flips


def report(out: Path) -> None:
    rows = read_rows(out / f"{NAME}.csv")
    flips = _real_flips(out)
    lines = [
        "# The adaptive recipe's synthetic lead over NNCF's defaults, against real flips",
        "",
        "Issue 28, item 3. Produced by (each run appends its rows to `recipe_leads.csv`; a rerun skips those there):",
        "",
        *(f"    {c}" for c in recorded(out, NAME)),
        "",
        "Per model and calibration seed: the adaptive recipe of the product (300 items of the domain's shipped",
        "generator), its candidates' mean KL on the scoring stream, the **lead** `1 - KL(c) / KL(nncf)` of the",
        "best candidate, whether the recipe switched away from NNCF's defaults, and the real flip % of the",
        "`adaptive` and `nncf` rows of the same model, source and seed in the committed tables (`imagenet.csv`:",
        "1,200 held-out views; `calibration_sources.csv`: 10,000 CIFAR-10 test images). Real Δ = adaptive - nncf",
        "(negative: the pick gained). The real images are read, never used to choose.",
        "",
        "| domain | model | seed | pick | best rival's lead | items scored | real flips: nncf | adaptive | Δ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    picks = []  # (domain, model, seed, lead of the pick, real delta or None) where the recipe switched
    for r in rows:
        lead = json.loads(r["lead"])
        best = max(lead, key=lead.get)
        gen = r["generator"] if r["domain"] == "imagenet" else ""
        n = flips.get((r["domain"], r["model"], r["seed"], gen, "nncf"))
        a = flips.get((r["domain"], r["model"], r["seed"], gen, "adaptive"))
        delta = None if n is None or a is None else a - n
        pick = r["chosen"] + (" (kept: not decisive)" if r["not_decisive"] else "")
        if r["chosen"] != "nncf":
            picks.append((r["domain"], r["model"], r["seed"], lead[r["chosen"]], delta))
        lines.append(
            f"| {r['domain']} | {r['model']} | {r['seed']} | {pick} | {best} {100 * lead[best]:.1f}% | "
            f"{r['score_samples']} | {'' if n is None else f'{n:.2f}'} | {'' if a is None else f'{a:.2f}'} | "
            f"{'' if delta is None else f'{delta:+.2f}'} |"
        )
    lines += ["", "## What it says", "", *findings(picks)]
    (out / f"{NAME}.md").write_text("\n".join(lines) + "\n")


def findings(picks: list[tuple[str, str, str, float, float | None]]) -> list[str]:
    """Per domain: the leads of the picks that left NNCF's defaults, how they did on real images, and
    whether a margin on the lead could keep the gains and drop the losses."""
    out = []
    for domain in sorted({p[0] for p in picks}):
        mine = [p for p in picks if p[0] == domain]
        leads = [p[3] for p in mine]
        known = [p for p in mine if p[4] is not None]
        gained = [p for p in known if p[4] < 0]
        lost = [p for p in known if p[4] > 0]
        text = (
            f"- **{domain}**: {len(mine)} picks left NNCF's defaults, leading them by "
            f"{100 * min(leads):.1f}-{100 * max(leads):.1f}% of the KL; on real images {len(gained)} gained, "
            f"{len(lost)} lost, {len(known) - len(gained) - len(lost)} tied"
            + (f" ({len(mine) - len(known)} without a real row)" if len(known) < len(mine) else "")
            + "."
        )
        if gained and lost:
            worst = max(lost, key=lambda p: p[3])
            least = min(gained, key=lambda p: p[3])
            if least[3] <= worst[3]:
                text += (
                    f" A lead of {100 * least[3]:.1f}% gained ({least[1]} seed {least[2]}, {least[4]:+.2f} points)"
                    f" where one of {100 * worst[3]:.1f}% lost ({worst[1]} seed {worst[2]}, {worst[4]:+.2f}): no"
                    " margin on the lead, beside the z >= 3 the rule asks, keeps the gains and drops the losses."
                )
        out.append(text)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domains", nargs="*", default=["imagenet", "cifar10"], choices=["imagenet", "cifar10"])
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    if not args.report_only:
        measure(args)
    report(args.out)


if __name__ == "__main__":
    main()
