"""INT8 accuracy per calibration source across a model zoo (issue 5, table 1).

For each classifier in --models and each calibration source: INT8 top-1 on a labelled test
folder and the flip rate (share of test images whose INT8 top-1 differs from FP32's), for
each seed and sample count, with ``nncf.quantize`` defaults and/or
``nncf.quantize_with_accuracy_control`` (max_drop 0.01, synthetic labelled validation set).

    python benchmarks/calibration_sources.py                   # the full committed table
    python benchmarks/calibration_sources.py --models resnet20 --seeds 0   # rerun one model
    python benchmarks/calibration_sources.py --quick           # minutes: 1 model, 2 sources, 1k test images

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
from paths import REPO, SHARED, STUDENT, TEACHER

DEFAULT_SOURCES = {
    "real": f"images:{SHARED / 'datasets/cifar10-jpeg/train'}",
    "teacher": f"generator:{TEACHER}",
    "student": f"generator:{STUDENT}",
    "gaussian": "noise:gaussian",
    "uniform": "noise:uniform",
    "fractal": "fractal:ifs",
}
FIELDS = ["model", "source", "mode", "samples", "seed", "fp32_top1", "int8_top1", "flip_rate", "quantize_s"]


def load_test(root: Path, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    from openvino_synthcalib.imagefolder import ImageFolder, load_image

    samples = ImageFolder(root).samples()
    if limit:
        samples = [samples[i] for i in np.linspace(0, len(samples) - 1, limit).astype(int)]
    x = np.stack([load_image(p) for p, _ in samples])
    return x, np.array([c for _, c in samples])


def predictions(compiled, x: np.ndarray, batch: int = 250) -> np.ndarray:
    from openvino_synthcalib.evaluate import predict

    return np.concatenate(list(predict(compiled, (x[i : i + batch] for i in range(0, len(x), batch)))))


def compile_f32(model):
    from openvino_synthcalib import models

    return models.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "THROUGHPUT"})


def done_keys(path: Path) -> set[tuple[str, ...]]:
    if not path.exists():
        return set()
    with open(path) as f:
        return {(r["model"], r["source"], r["mode"], r["samples"], r["seed"]) for r in csv.DictReader(f)}


def run(args: argparse.Namespace) -> None:
    import openvino as ov
    from tqdm import tqdm

    from openvino_synthcalib.errors import SynthcalibError
    from openvino_synthcalib.quantize import quantize
    from openvino_synthcalib.transforms import Transform

    csv_path = args.out / "calibration_sources.csv"
    args.out.mkdir(parents=True, exist_ok=True)
    done = done_keys(csv_path)
    x_test, y_test = load_test(args.test, args.test_limit)
    transform = Transform.from_options(args.preset)
    x_in = transform(x_test)
    new_file = not csv_path.exists()
    with open(csv_path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new_file:
            writer.writeheader()
        todo = [
            (m.stem, mode, n, src, seed)
            for m in args.models
            for mode in args.modes
            for n in args.samples
            for src in args.sources
            for seed in args.seeds
        ]
        bar = tqdm(total=sum(tuple(map(str, k)) not in done for k in todo), desc="runs", unit="run", file=sys.stderr)
        for model_path in args.models:
            name = model_path.stem
            if all(tuple(map(str, k)) in done for k in todo if k[0] == name):
                continue
            fp32_pred = predictions(compile_f32(ov.Core().read_model(str(model_path))), x_in)
            fp32_top1 = float((fp32_pred == y_test).mean())
            print(f"{name}: FP32 top-1 {100 * fp32_top1:.2f}%", file=sys.stderr)
            for mode in args.modes:
                for samples in args.samples:
                    for source_name in args.sources:
                        spec = args.source_specs[source_name].replace("{model}", name)
                        for seed in args.seeds:
                            key = (name, source_name, mode, str(samples), str(seed))
                            if key in done:
                                continue
                            started = time.perf_counter()
                            accuracy = None
                            if mode == "accuracy_control":
                                accuracy = {
                                    "max_drop": 0.01,
                                    "metric": args.metric,
                                    "source": args.source_specs.get(args.validation_source, args.validation_source),
                                }
                            try:
                                with contextlib.redirect_stdout(sys.stderr):
                                    report = quantize(
                                        str(model_path),
                                        spec,
                                        num_samples=samples,
                                        seed=seed,
                                        transform=args.preset,
                                        accuracy_control=accuracy,
                                    )
                            except SynthcalibError as exc:  # e.g. a per-model array that was never made
                                bar.write(f"  {source_name}: skipped for {name}: {exc}", file=sys.stderr)
                                bar.update()
                                continue
                            elapsed = time.perf_counter() - started
                            pred = predictions(compile_f32(report["quantized_model"]), x_in)
                            row = {
                                "model": name,
                                "source": source_name,
                                "mode": mode,
                                "samples": samples,
                                "seed": seed,
                                "fp32_top1": round(100 * fp32_top1, 2),
                                "int8_top1": round(100 * float((pred == y_test).mean()), 2),
                                "flip_rate": round(100 * float((pred != fp32_pred).mean()), 2),
                                "quantize_s": round(elapsed, 1),
                            }
                            writer.writerow(row)
                            f.flush()
                            bar.update()
                            bar.write(
                                f"  {source_name:9s} {mode:16s} n={samples:<5d} seed={seed}: "
                                f"{row['int8_top1']:.2f}% flips {row['flip_rate']:.2f}% ({elapsed:.0f} s)",
                                file=sys.stderr,
                            )
                            del report
        bar.close()


def summarise(csv_path: Path, out: Path) -> str:
    """Markdown tables (mean ± std over seeds) and a plot from the results CSV."""
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return ""
    groups: dict[tuple[str, str, str, str], list[dict[str, str]]] = {}
    for r in rows:
        groups.setdefault((r["mode"], r["samples"], r["model"], r["source"]), []).append(r)
    models = list(dict.fromkeys(r["model"] for r in rows))
    sources = list(dict.fromkeys(r["source"] for r in rows))
    lines = [
        "# INT8 top-1 by calibration source",
        "",
        "Produced by these commands (each appends its rows to `calibration_sources.csv`):",
        "",
        *[f"    {c}" for c in _commands(out)],
        "",
        "To reproduce a model's rows, rerun a command with `--models NAME --out DIR` (a rerun into this"
        " folder skips the rows its CSV already holds) and compare with the rows here.",
        "",
        "Top-1 % of the INT8 model on the test set, mean ± std over seeds, with the flip rate %"
        " (test images whose INT8 top-1 differs from FP32's) in brackets. `n` = seeds per cell.",
        "",
    ]
    for mode in dict.fromkeys(r["mode"] for r in rows):
        for samples in sorted({r["samples"] for r in rows if r["mode"] == mode}, key=int):
            present = [s for s in sources if any((mode, samples, m, s) in groups for m in models)]
            lines += [f"## {mode}, {samples} calibration samples", ""]
            lines.append("| model | FP32 | " + " | ".join(present) + " |")
            lines.append("|---|---|" + "---|" * len(present))
            for m in models:
                fp32 = next((g[0]["fp32_top1"] for k, g in groups.items() if k[2] == m), "")
                cells = []
                for s in present:
                    g = groups.get((mode, samples, m, s))
                    if not g:
                        cells.append("–")
                        continue
                    t = np.array([float(r["int8_top1"]) for r in g])
                    fl = np.array([float(r["flip_rate"]) for r in g])
                    cells.append(f"{t.mean():.2f} ± {t.std():.2f} ({fl.mean():.2f}) n={len(g)}")
                lines.append(f"| {m} | {fp32} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += _student_checks(groups, models)
    text = "\n".join(lines)
    (out / "calibration_sources.md").write_text(text)
    _plot(groups, models, sources, out)
    return text


def _mean(groups, key, field: str = "int8_top1") -> float | None:
    g = groups.get(key)
    return float(np.mean([float(r[field]) for r in g])) if g else None


def _student_checks(groups, models, student: str = "student", real: str = "real") -> list[str]:
    """Student vs real per sample count, the share of each data-free baseline's gap it recovers,
    and whether more synthetic samples beat 300 real ones (default mode only)."""
    lines: list[str] = []
    counts = sorted({k[1] for k in groups if k[0] == "default" and k[3] == student}, key=int)
    for n in counts:
        gaps = {m: (_mean(groups, ("default", n, m, student)), _mean(groups, ("default", n, m, real))) for m in models}
        gaps = {m: s - r for m, (s, r) in gaps.items() if s is not None and r is not None}
        if not gaps:
            continue
        lines += [f"## Student minus real, default mode, {n} samples (mean over seeds)", ""]
        lines.append(
            "| model | student − real (pp) | baselines losing ≥ 0.5 pp to real: share of the gap the student recovers |"
        )
        lines.append("|---|---|---|")
        for m, gap in gaps.items():
            r = _mean(groups, ("default", n, m, real))
            s = _mean(groups, ("default", n, m, student))
            rec = []
            for b in ("gaussian", "uniform", "fractal"):
                bm = _mean(groups, ("default", n, m, b))
                if bm is not None and r - bm >= 0.5:
                    rec.append(f"{b} {r - bm:.2f} pp gap: {100 * (s - bm) / (r - bm):.0f}%")
            lines.append(f"| {m} | {gap:+.2f} | {'; '.join(rec) or '–'} |")
        worst = max(gaps, key=lambda m: abs(gaps[m]))
        lines += ["", f"Largest |student − real|: {abs(gaps[worst]):.2f} pp ({worst}).", ""]
    modes = [md for md in ("default", "accuracy_control", "pot_default") if any(k[0] == md for k in groups)]
    if len(modes) > 1:
        lines += [
            "## Real vs student by quantizer, 300 samples (top-1 %, mean over seeds; student − real in brackets)",
            "",
            "| model | " + " | ".join(modes) + " |",
            "|---|" + "---|" * len(modes),
        ]
        for m in models:
            cells = []
            for md in modes:
                r, st = _mean(groups, (md, "300", m, real)), _mean(groups, (md, "300", m, student))
                cells.append("–" if r is None or st is None else f"{r:.2f} / {st:.2f} ({st - r:+.2f})")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    real300 = {m: _mean(groups, ("default", "300", m, real), "flip_rate") for m in models}
    if counts and any(v is not None for v in real300.values()):
        lines += [
            "## More synthetic samples vs 300 real ones (default mode, flip rate % / top-1 %)",
            "",
            "| model | real, 300 | " + " | ".join(f"{student}, {n}" for n in counts) + " |",
            "|---|---|" + "---|" * len(counts),
        ]
        for m in models:
            if real300[m] is None:
                continue
            top = _mean(groups, ("default", "300", m, real))
            cells = []
            for n in counts:
                fl, t = (
                    _mean(groups, ("default", n, m, student), "flip_rate"),
                    _mean(groups, ("default", n, m, student)),
                )
                cells.append("–" if fl is None else f"{fl:.2f} / {t:.2f}")
            lines.append(f"| {m} | {real300[m]:.2f} / {top:.2f} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _commands(out: Path) -> list[str]:
    path = out / "calibration_sources.commands.txt"
    return path.read_text().splitlines() if path.exists() else []


def _plot(groups, models, sources, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in groups if k[0] == "default"]
    if not keys:
        return
    samples = "300" if any(k[1] == "300" for k in keys) else keys[0][1]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / max(1, len(sources))
    for j, s in enumerate(sources):
        means, errs = [], []
        for m in models:
            g = groups.get(("default", samples, m, s), [])
            drops = [float(r["fp32_top1"]) - float(r["int8_top1"]) for r in g]
            means.append(np.mean(drops) if drops else np.nan)
            errs.append(np.std(drops) if drops else 0)
        ax.bar(np.arange(len(models)) + j * width, means, width, yerr=errs, label=s)
    ax.set_xticks(np.arange(len(models)) + 0.4 - width / 2, models)
    ax.set_ylabel("top-1 drop vs FP32 (pp)")
    ax.set_title(f"INT8 accuracy drop by calibration source (nncf.quantize, {samples} samples)")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(ncols=3, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "calibration_sources.png", dpi=120)
    plt.close(fig)
    _plot_samples(groups, models, out, plt)


def _plot_samples(groups, models, out: Path, plt, sources=("real", "student", "teacher", "fractal")) -> None:
    """Flip rate vs calibration samples per model (default mode): does more synthetic data help?"""
    counts = sorted({int(k[1]) for k in groups if k[0] == "default"})
    if len(counts) < 2:
        return
    fig, axes = plt.subplots(1, len(models), figsize=(3 * len(models), 3), sharey=False, squeeze=False)
    for ax, m in zip(axes[0], models):
        for s in sources:
            pts = [(n, g) for n in counts if (g := groups.get(("default", str(n), m, s)))]
            if len(pts) < 2:
                continue
            xs = [n for n, _ in pts]
            ys = [np.mean([float(r["flip_rate"]) for r in g]) for _, g in pts]
            es = [np.std([float(r["flip_rate"]) for r in g]) for _, g in pts]
            ax.errorbar(xs, ys, yerr=es, marker="o", ms=3, label=s)
        ax.set_xscale("log")
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("calibration samples", fontsize=8)
    axes[0][0].set_ylabel("flip rate vs FP32 (%)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Flip rate by number of calibration samples (nncf.quantize defaults)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "calibration_samples.png", dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=None, help="model files or names in ../shared/models/cifar10")
    p.add_argument("--test", type=Path, default=SHARED / "datasets" / "cifar10-jpeg" / "test")
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
    command = "python benchmarks/calibration_sources.py " + " ".join(sys.argv[1:])
    if args.quick:
        args.models = args.models or ["resnet20"]
        args.sources = ["real", "gaussian"] if args.sources == list(DEFAULT_SOURCES) else args.sources
        args.samples, args.seeds = [64], [0]
        args.test_limit = args.test_limit or 1000
    zoo = SHARED / "models" / "cifar10"
    names = args.models or sorted(p.stem for p in zoo.glob("*.onnx"))
    args.models = [Path(m) if m.endswith((".onnx", ".xml")) else zoo / f"{m}.onnx" for m in names]
    args.source_specs = dict(DEFAULT_SOURCES)
    chosen = []
    for s in args.sources:
        name, eq, spec = s.partition("=")
        if eq:
            args.source_specs[name] = spec
        elif name not in args.source_specs:
            p.error(f"--sources: unknown source {name!r}; known: {', '.join(args.source_specs)} (or NAME=SPEC)")
        chosen.append(name)
    args.sources = chosen
    if not args.report_only:
        args.out.mkdir(parents=True, exist_ok=True)
        with open(args.out / "calibration_sources.commands.txt", "a") as f:
            f.write(command + "\n")
        run(args)
    print(summarise(args.out / "calibration_sources.csv", args.out))


if __name__ == "__main__":
    main()
