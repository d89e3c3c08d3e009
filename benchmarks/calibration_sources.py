"""INT8 accuracy per calibration source and quantization recipe across a model zoo.

For each classifier in --models, calibration source and recipe: the flip rate (share of test
images whose INT8 top-1 differs from FP32's; the primary figure) and INT8 top-1 on a labelled
test folder, for each seed and sample count, with ``nncf.quantize`` (mode ``default``) and/or
``nncf.quantize_with_accuracy_control`` (max_drop 0.01, synthetic labelled validation set).

Recipes (``openvino_synthcalib.recipes``): ``nncf`` (NNCF defaults), the fixed candidates
``minmax``, ``histogram``, ``mixed_minmax``, ``mixed_histogram``, and ``adaptive`` (of its
candidates, the one whose outputs stay closest to FP32's, by mean KL divergence, on synthetic items
of the calibration source, another seed; a generator's latents 1.5x as wide). One adaptive run quantizes each of its candidates, so
their rows come from the same run as the adaptive row.

    python benchmarks/calibration_sources.py                   # the full committed table
    python benchmarks/calibration_sources.py --models resnet20 --seeds 0   # rerun one model
    python benchmarks/calibration_sources.py --quick           # minutes: 1 model, 2 sources, 1k test images

Models are names in ../shared/models/cifar10, names of the extra zoo (``benchmarks/train_zoo.py``;
built into runs/zoo/cifar10 when absent), or model files.

Rows are appended to benchmarks/results/calibration_sources.csv as they finish (a rerun
skips rows already there, so the command resumes); the summary Markdown and plot are
rebuilt from the CSV at the end (``--report-only`` rebuilds them without running anything).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
import time
from pathlib import Path

import numpy as np
from commands import record, recorded
from paths import CIFAR_TEST, CIFAR_TRAIN, REPO, STUDENT, TEACHER, ZOO
from rows import CALIBRATION_FIELDS, CALIBRATION_KEY, appending, done_keys
from source_specs import use_sources
from study import rule_outcome
from testset import compile_f32, load_test, predictions
from zoo import resolve_models

from openvino_synthcalib.recipes import ADAPTIVE_CANDIDATES

DEFAULT_SOURCES = {
    "real": f"images:{CIFAR_TRAIN}",
    "teacher": f"generator:{TEACHER}",
    "student": f"generator:{STUDENT}",
    "gaussian": "noise:gaussian",
    "uniform": "noise:uniform",
    "fractal": "fractal:ifs",
}
RECIPES = ["nncf", "minmax", "histogram", "mixed_minmax", "mixed_histogram", "adaptive"]


def calibrate(args: argparse.Namespace, model_path: Path, spec: str, mode: str, samples: int, seed: int, recipes):
    """INT8 models for the requested recipes of one (model, source, mode, samples, seed) cell:
    ``{recipe: (ov.Model, seconds, chosen, synthetic scores or None, seconds of the nncf candidate
    of the same adaptive run or None)}``."""
    import openvino as ov

    import openvino_synthcalib as synthcalib
    from openvino_synthcalib.quantization import quantize

    out = {}
    if mode == "default" and "adaptive" in recipes:
        fp32 = ov.Core().read_model(str(model_path))
        started = time.perf_counter()
        with synthcalib.Dataset(spec, samples, model=fp32, transform=args.preset, seed=seed) as ds:
            r = synthcalib.recipe(fp32, ds, "adaptive", keep_candidates=True, subset_size=samples)
        total = time.perf_counter() - started
        for name, m in r.candidate_models.items():
            if name in recipes:
                sc = r.scores[name]
                out[name] = (m, sc["quantize_seconds"], name, sc, None)
        reference_s = r.scores["nncf"]["quantize_seconds"] if "nncf" in r.scores else None
        out["adaptive"] = (r.model, total, r.chosen, r.scores[r.chosen], reference_s)
    for name in recipes:
        if name in out:
            continue
        accuracy = None
        if mode == "accuracy_control":
            accuracy = {
                "max_drop": 0.01,
                "metric": args.metric,
                "source": args.source_specs.get(args.validation_source, args.validation_source),
            }
        started = time.perf_counter()
        report = quantize(
            str(model_path), spec, num_samples=samples, seed=seed, transform=args.preset,
            accuracy_control=accuracy, recipe=name,
        )  # fmt: skip
        scores = report["recipe"].get("scores", {})
        chosen = report["recipe"]["chosen"]
        synth = scores.get(chosen)
        out[name] = (report["quantized_model"], time.perf_counter() - started, chosen, synth, None)
    return out


def run(args: argparse.Namespace) -> None:
    import openvino as ov
    from tqdm import tqdm

    from openvino_synthcalib.errors import SynthcalibError

    csv_path = args.out / "calibration_sources.csv"
    args.out.mkdir(parents=True, exist_ok=True)
    done = done_keys(csv_path, CALIBRATION_KEY)
    x_in, y_test = load_test(args.test, args.test_limit, args.preset)
    with appending(csv_path, CALIBRATION_FIELDS) as (f, writer):
        cells = [
            (m, mode, n, src, seed)
            for m in args.models
            for mode in args.modes
            for n in args.samples
            for src in args.sources
            for seed in args.seeds
        ]

        def missing(cell) -> list[str]:
            m, mode, n, src, seed = cell
            return [r for r in args.recipes if (m.stem, src, mode, r, str(n), str(seed)) not in done]

        todo = [c for c in cells if missing(c)]
        bar = tqdm(total=len(todo), desc="cells", unit="cell", file=sys.stderr)
        fp32_cache: dict[str, tuple[np.ndarray, float]] = {}
        for cell in todo:
            model_path, mode, samples, source_name, seed = cell
            name = model_path.stem
            if name not in fp32_cache:
                pred = predictions(compile_f32(ov.Core().read_model(str(model_path))), x_in)
                fp32_cache[name] = (pred, float((pred == y_test).mean()))
                bar.write(f"{name}: FP32 top-1 {100 * fp32_cache[name][1]:.2f}%", file=sys.stderr)
            fp32_pred, fp32_top1 = fp32_cache[name]
            spec = args.source_specs[source_name].replace("{model}", name)
            recipes = missing(cell)
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    results = calibrate(args, model_path, spec, mode, samples, seed, recipes)
            except SynthcalibError as exc:  # e.g. a per-model array that was never made
                bar.write(f"  {source_name}: skipped for {name}: {exc}", file=sys.stderr)
                bar.update()
                continue
            evaluated: dict[int, np.ndarray] = {}  # the adaptive row's model is its chosen candidate's
            for recipe in recipes:
                model, seconds, chosen, synth, ref_s = results[recipe]
                if id(model) not in evaluated:
                    evaluated[id(model)] = predictions(compile_f32(model), x_in)
                pred = evaluated[id(model)]
                row = {
                    "model": name,
                    "source": source_name,
                    "mode": mode,
                    "recipe": recipe,
                    "samples": samples,
                    "seed": seed,
                    "fp32_top1": round(100 * fp32_top1, 2),
                    "int8_top1": round(100 * float((pred == y_test).mean()), 2),
                    "flip_rate": round(100 * float((pred != fp32_pred).mean()), 2),
                    "quantize_s": round(seconds, 1),
                    "chosen": chosen,
                    "synthetic_flip_rate": "" if synth is None else round(100 * synth["flip_rate"], 2),
                    "synthetic_kl": "" if synth is None else f"{synth['kl']:.4g}",
                    "nncf_quantize_s": "" if ref_s is None else round(ref_s, 1),
                }
                writer.writerow(row)
                f.flush()
                bar.write(
                    f"  {name} {source_name:9s} {recipe:9s} n={samples:<5d} seed={seed}: {row['int8_top1']:.2f}% "
                    f"flips {row['flip_rate']:.2f}% ({chosen}, {seconds:.0f} s)",
                    file=sys.stderr,
                )
            del results
            bar.update()
        bar.close()


def summarise(csv_path: Path, out: Path) -> str:
    """Markdown tables (mean ± std over seeds), the adaptive recipe's choices and plots, from the CSV."""
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return ""
    groups: dict[tuple[str, str, str, str, str], list[dict[str, str]]] = {}
    for r in rows:
        groups.setdefault((r["mode"], r["recipe"], r["samples"], r["model"], r["source"]), []).append(r)
    models = list(dict.fromkeys(r["model"] for r in rows))
    sources = list(dict.fromkeys(r["source"] for r in rows))
    fp32 = {r["model"]: r["fp32_top1"] for r in rows}
    lines = [
        "# INT8 flip rate and top-1 by calibration source and recipe",
        "",
        "Produced by these commands (each appends its rows to `calibration_sources.csv`; a rerun skips the rows"
        " already there):",
        "",
        *[f"    {c}" for c in recorded(out, "calibration_sources")],
        "",
        "Flip rate %: test images (10,000 JPEG CIFAR-10) whose INT8 top-1 differs from the FP32 model's; top-1 % of"
        " the INT8 model. Mean over seeds (`n`), ± std. Recipes: `nncf` = NNCF defaults, `minmax`, `histogram` ="
        " fixed activation range estimators, `mixed_*` = the same with asymmetric activation ranges (NNCF's MIXED"
        f" preset), `adaptive` = of {', '.join(ADAPTIVE_CANDIDATES)}, the candidate whose outputs stay closest to"
        " FP32's (mean KL divergence) on 1,000 items of the calibration source, another seed (a generator's latents"
        " drawn 1.5x as wide: `score_stream.md`). A candidate row carries the synthetic scores of the adaptive run"
        " that wrote it: the committed student and teacher candidate rows were written before the scoring stream was"
        " widened (latents as in calibration); their `adaptive` rows were re-measured with it.",
        "",
    ]
    default_counts = [r["samples"] for r in rows if r["mode"] == "default"] or ["300"]
    n = "300" if "300" in default_counts else max(set(default_counts), key=default_counts.count)
    lines += _headline(groups, models, fp32, n)
    for mode in dict.fromkeys(r["mode"] for r in rows):
        for samples in sorted({r["samples"] for r in rows if r["mode"] == mode}, key=int):
            for recipe in dict.fromkeys([*RECIPES, *sorted({r["recipe"] for r in rows})]):
                if not any(k[:3] == (mode, recipe, samples) for k in groups):
                    continue
                present = [s for s in sources if any((mode, recipe, samples, m, s) in groups for m in models)]
                lines += [f"## {mode}, recipe `{recipe}`, {samples} samples: flip rate % (top-1 %)", ""]
                lines.append("| model | FP32 top-1 | " + " | ".join(present) + " |")
                lines.append("|---|---|" + "---|" * len(present))
                for m in models:
                    cells = []
                    for s in present:
                        g = groups.get((mode, recipe, samples, m, s))
                        if not g:
                            cells.append("–")
                            continue
                        t = np.array([float(r["int8_top1"]) for r in g])
                        fl = np.array([float(r["flip_rate"]) for r in g])
                        cells.append(f"{fl.mean():.2f} ± {fl.std():.2f} ({t.mean():.2f}) n={len(g)}")
                    lines.append(f"| {m} | {fp32[m]} | " + " | ".join(cells) + " |")
                lines.append("")
    lines += _choices(rows, models, sources, n)
    lines += _score_rules(rows, n)
    lines += _cost(rows, models, n)
    lines += _against_defaults(rows, n)
    text = "\n".join(lines)
    (out / "calibration_sources.md").write_text(text)
    _plot(groups, models, out, n)
    return text


def _mean(groups, key, field: str = "flip_rate") -> float | None:
    g = groups.get(key)
    return float(np.mean([float(r[field]) for r in g])) if g else None


def _headline(groups, models, fp32, n: str) -> list[str]:
    """The product's default (student, adaptive) against real images with NNCF defaults, and real
    images under the same adaptive recipe, so that the gain of the recipe is not read as the data's."""
    if not any(k[1] == "adaptive" and k[4] == "student" for k in groups):
        return []
    lines = [
        f"## Headline: the shipped student with the default recipe vs {n} real images (default mode)",
        "",
        "| model | FP32 | real, nncf: flips (top-1) | student, adaptive: flips (top-1) | flip ratio | top-1 Δ (pp) |"
        " real, adaptive: flips (top-1) | student, nncf: flips (top-1) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ratios, deltas, measured = [], [], []

    def cell(m: str, recipe: str, source: str) -> tuple[float | None, float | None]:
        key = ("default", recipe, n, m, source)
        return _mean(groups, key), _mean(groups, key, "int8_top1")

    for m in models:
        (rf, rt), (sf, st) = cell(m, "nncf", "real"), cell(m, "adaptive", "student")
        (af, at), (nf, nt) = cell(m, "adaptive", "real"), cell(m, "nncf", "student")
        if None in (rf, sf):
            continue
        measured.append(m)
        ratios.append(sf / rf)
        deltas.append(st - rt)

        def fmt(fl: float | None, t: float | None) -> str:
            return "–" if fl is None else f"{fl:.2f} ({t:.2f})"

        lines.append(
            f"| {m} | {fp32[m]} | {fmt(rf, rt)} | {fmt(sf, st)} | {sf / rf:.2f} | {st - rt:+.2f} | {fmt(af, at)} |"
            f" {fmt(nf, nt)} |"
        )
    if ratios:
        lines.append("")
        shared = {p.stem for p in ZOO.glob("*.onnx")}
        groups_of = {"the shared zoo": shared, "the other models": set(models) - shared} if shared else {"all": set()}
        for label, names in groups_of.items():
            picked = [(r, d) for m, r, d in zip(measured, ratios, deltas) if not names or m in names]
            if picked:
                rs, ds = zip(*picked)
                lines.append(
                    f"Flip ratio student-adaptive / real-nncf, {label} ({len(rs)} models): mean {np.mean(rs):.2f}, "
                    f"worst {max(rs):.2f}; top-1 student − real: worst {min(ds):+.2f} pp."
                )
        lines.append("")
    return lines


def _choices(rows, models, sources, n: str) -> list[str]:
    """How often the adaptive choice was the candidate with the fewest flips on real test images."""
    cells: dict[tuple[str, str, str], dict[str, dict[str, str]]] = {}
    for r in rows:
        if r["mode"] == "default" and r["samples"] == n:
            cells.setdefault((r["model"], r["source"], r["seed"]), {})[r["recipe"]] = r
    lines = [
        f"## The adaptive choice against the best candidate on real test images (default mode, {n} samples)",
        "",
        "Per model and source: seeds where the adaptive recipe chose the candidate with the fewest real flips"
        " (ties count as a hit), the candidates chosen, and the mean extra real flips (pp) of the choice over the best.",
        "",
        "| model | " + " | ".join(sources) + " |",
        "|---|" + "---|" * len(sources),
    ]
    total = hits = 0
    for m in models:
        out = []
        for s in sources:
            runs = [c for (mm, ss, _), c in cells.items() if mm == m and ss == s and "adaptive" in c]
            runs = [c for c in runs if all(k in c for k in ADAPTIVE_CANDIDATES)]
            if not runs:
                out.append("–")
                continue
            h, extra, chosen = 0, [], []
            for c in runs:
                real = {k: float(c[k]["flip_rate"]) for k in ADAPTIVE_CANDIDATES}
                pick = c["adaptive"]["chosen"]
                chosen.append(pick)
                h += real[pick] <= min(real.values())
                extra.append(real[pick] - min(real.values()))
            total, hits = total + len(runs), hits + h
            counts = ", ".join(f"{k} {chosen.count(k)}" for k in dict.fromkeys(chosen))
            out.append(f"{h}/{len(runs)} ({counts}; +{np.mean(extra):.2f})")
        lines.append(f"| {m} | " + " | ".join(out) + " |")
    if total:
        lines += ["", f"Overall: the adaptive recipe chose the real-best candidate in {hits} of {total} runs.", ""]
    return lines


def _score_rules(rows, n: str) -> list[str]:
    """The adaptive recipe's score (smallest KL, then flips) against the alternative (fewest synthetic
    flips, then KL), on the candidates of each adaptive run that have both scores in the CSV."""
    runs: dict[tuple[str, str, str], list[dict[str, str]]] = {}
    for r in rows:
        if (
            r["mode"] == "default" and r["samples"] == n and r["recipe"] in ADAPTIVE_CANDIDATES
            and r.get("synthetic_kl") and r.get("synthetic_flip_rate")
        ):  # fmt: skip
            runs.setdefault((r["model"], r["source"], r["seed"]), []).append(r)
    runs = {k: v for k, v in runs.items() if len(v) > 1}
    if not runs:
        return []
    lines = [
        f"## The score: KL first or flips first ({n} samples)",
        "",
        "Per adaptive run, among its candidates whose rows carry both synthetic scores (rows of earlier runs have no"
        " KL), how often each rule picks the candidate with the fewest real test flips (ties count), and the mean"
        " extra real flips (pp) of its pick over that best. In the committed CSV these candidate scores are on the"
        " calibration source as it is (a generator's latents not widened); `score_stream.md` compares latent scales.",
        "",
        "| sources | runs | smallest KL, then flips (the recipe) | fewest flips, then KL |",
        "|---|---|---|---|",
    ]
    groups = {"real, student": ("real", "student")}
    groups["data-free (teacher, noise, fractals)"] = tuple({k[1] for k in runs} - {"real", "student"})
    for label, names in groups.items():
        picked = [v for k, v in runs.items() if k[1] in names]
        if not picked:
            continue
        cells = []
        for first, second in (("synthetic_kl", "synthetic_flip_rate"), ("synthetic_flip_rate", "synthetic_kl")):
            hits, extra = rule_outcome(picked, first, second)
            cells.append(f"{hits} of {len(picked)} (+{np.mean(extra):.2f})")
        lines.append(f"| {label} | {len(picked)} | {cells[0]} | {cells[1]} |")
    return [*lines, ""]


def _cost(rows, models, n: str) -> list[str]:
    """What the adaptive choice costs: its wall time over the plain ``nncf.quantize`` of its ``nncf``
    candidate, both timed in the same run (``nncf_quantize_s`` of the adaptive row)."""
    lines = [
        f"## Cost of the adaptive recipe ({n} samples)",
        "",
        f"Wall time of the adaptive recipe ({len(ADAPTIVE_CANDIDATES)} candidate quantizations, then the FP32 model"
        " and each candidate on 1,000 scoring items) over the `nncf.quantize` with NNCF's defaults inside it (the"
        " same run); median over sources and seeds.",
        "",
        "| model | adaptive / nncf wall time | runs |",
        "|---|---|---|",
    ]
    found = False
    for m in models:
        ratios = [
            float(r["quantize_s"]) / float(r["nncf_quantize_s"])
            for r in rows
            if r["model"] == m and r["mode"] == "default" and r["samples"] == n and r["recipe"] == "adaptive"
            and r.get("nncf_quantize_s") and float(r["nncf_quantize_s"]) > 0
        ]  # fmt: skip
        if ratios:
            found = True
            lines.append(f"| {m} | x{np.median(ratios):.1f} | {len(ratios)} |")
    return [*lines, ""] if found else []


def _against_defaults(rows, n: str) -> list[str]:
    """The adaptive recipe against NNCF's defaults on the same source (seed 0), and how synthetic
    scoring flips compare with real ones for the student's candidates."""
    flips = {
        (r["model"], r["source"], r["recipe"]): float(r["flip_rate"])
        for r in rows
        if r["mode"] == "default" and r["samples"] == n and r["seed"] == "0"
    }
    pairs = [
        (src, m, flips[(m, src, "nncf")], a)
        for (m, src, rc), a in flips.items()
        if rc == "adaptive" and (m, src, "nncf") in flips
    ]
    if not pairs:
        return []
    fewer = sum(a < d for *_, d, a in pairs)
    more = [f"{m} ({src})" for src, m, d, a in pairs if a > d]
    lines = [
        f"## Adaptive recipe vs NNCF defaults on the same source ({n} samples, seed 0)",
        "",
        f"Real test flips with the adaptive choice: fewer in {fewer} of {len(pairs)} model/source pairs, as many in"
        f" {len(pairs) - fewer - len(more)}, more in {len(more)}" + (f": {', '.join(more)}." if more else "."),
        "",
    ]
    q = [
        float(r["synthetic_flip_rate"]) / float(r["flip_rate"])
        for r in rows
        if r["mode"] == "default"
        and r["source"] == "student"
        and r["recipe"] in RECIPES[:-1]
        and r.get("synthetic_flip_rate")
        and float(r["flip_rate"]) > 0
    ]
    if q:
        lines += [
            f"Student candidates, synthetic scoring flips / real test flips: {min(q):.1f}-{max(q):.1f}x (median"
            f" x{np.median(q):.1f}, {len(q)} candidate runs): the score ranks candidates, it does not estimate real flips.",
            "",
        ]
    return lines


def _plot(groups, models, out: Path, n: str) -> None:
    """Flip rate per model: real and student under NNCF defaults and the adaptive recipe, and the
    data-free baselines under the adaptive recipe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [
        ("real", "nncf"),
        ("real", "adaptive"),
        ("student", "nncf"),
        ("student", "adaptive"),
        ("teacher", "adaptive"),
        ("fractal", "adaptive"),
        ("gaussian", "adaptive"),
        ("uniform", "adaptive"),
    ]
    series = [(s, r) for s, r in series if any(k[1] == r and k[4] == s and k[0] == "default" for k in groups)]
    if not series:
        return
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(series)
    for j, (source, recipe) in enumerate(series):
        means, errs = [], []
        for m in models:
            g = groups.get(("default", recipe, n, m, source), [])
            flips = [float(r["flip_rate"]) for r in g]
            means.append(np.mean(flips) if flips else np.nan)
            errs.append(np.std(flips) if flips else 0)
        ax.bar(np.arange(len(models)) + j * width, means, width, yerr=errs, label=f"{source}, {recipe}")
    ax.set_xticks(np.arange(len(models)) + 0.4 - width / 2, models)
    ax.set_ylabel("flip rate vs FP32 (%)")
    ax.set_title(f"INT8 flip rate by calibration source and recipe (nncf.quantize, {n} samples, mean over seeds)")
    ax.legend(ncols=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "calibration_sources.png", dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=None, help="model files or names in ../shared/models/cifar10")
    p.add_argument("--test", type=Path, default=CIFAR_TEST)
    p.add_argument("--test-limit", type=int, default=None, help="evaluate an evenly spaced subset")
    p.add_argument("--preset", default="cifar10")
    p.add_argument(
        "--sources",
        nargs="*",
        default=list(DEFAULT_SOURCES),
        help="names; NAME=SPEC adds one ('{model}' in SPEC becomes each model's name)",
    )
    p.add_argument("--samples", nargs="*", type=int, default=[300])
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--modes", nargs="*", default=["default"], choices=["default", "accuracy_control"])
    p.add_argument("--recipes", nargs="*", default=RECIPES, choices=RECIPES)
    p.add_argument(
        "--validation-source",
        default="student",
        help="accuracy_control mode: the labelled validation set (a source name or spec)",
    )
    p.add_argument("--metric", default="labels", choices=["labels", "agreement"], help="accuracy_control metric")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args()
    if args.quick:
        args.models = args.models or ["resnet20"]
        args.sources = ["real", "gaussian"] if args.sources == list(DEFAULT_SOURCES) else args.sources
        args.samples, args.seeds = [64], [0]
        args.test_limit = args.test_limit or 1000
    if args.report_only:  # the report comes from the CSV alone: no model is read, none is trained
        print(summarise(args.out / "calibration_sources.csv", args.out))
        return
    args.models = resolve_models(args.models, args.test.parent)
    use_sources(args, p, DEFAULT_SOURCES)
    record(args.out, "calibration_sources")
    run(args)
    print(summarise(args.out / "calibration_sources.csv", args.out))


if __name__ == "__main__":
    main()
