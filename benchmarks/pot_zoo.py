"""POT on the CIFAR-10 zoo: synthetic vs real-image calibration, top-1 on the 10k test set.

For each model, runs (in the legacy environment, from the repository root):

* ``synthcalib-pot -c configs/pot/<model>_synthetic_<algo>.json``  (the wrapper)
* ``pot -c configs/pot/<model>_synthetic_<algo>.json`` after ``synthcalib-pot enable``
  (plain POT through the opt-in hook; with ``--hook``; the hook state is restored after)
* ``synthcalib-pot -c configs/pot/<model>_real_<algo>.json``        (real-image folder source)

then measures the top-1 of the FP32 model and of every INT8 IR on
``../shared/datasets/cifar10-jpeg/test`` (10,000 JPEGs, decoded once), and the top-1
agreement of each INT8 IR with FP32. AccuracyAware runs also report the final drop from POT's log.

    .venv-pot/bin/python benchmarks/pot_zoo.py --models mobilenetv2 --algos default --hook
    .venv-pot/bin/python benchmarks/pot_zoo.py --models resnet20 resnet56 --seeds 0 1 2 \
        --csv benchmarks/results/calibration_sources.csv

Writes benchmarks/results/pot_<model>.md (one model) or pot_zoo.md; with ``--csv``, also appends
one row per INT8 model to the calibration-source table (mode ``pot_default`` / ``pot_aa``; a rerun
skips rows already there). Seeds other than the config's run a copy of the config in out/pot/configs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from commands import command, record
from paths import CIFAR_TEST, REPO, RESULTS, ZOO, shown
from rows import CALIBRATION_FIELDS, CALIBRATION_KEY, appending, done_keys
from testset import load_test

PYTHON = ".venv-pot/bin/python"  # the legacy environment, as the reports show it
BIN = Path(sys.executable).parent


def run(cmd: list[str], log: Path) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    text = proc.stdout + proc.stderr
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(text)
    return proc.returncode, elapsed, text


def final_drop(log: str) -> dict[str, float] | None:
    found = re.findall(r"Accuracy drop(?: with the new quantization scope is)?:? (\{[^}]*\})", log)
    return json.loads(found[-1].replace("'", '"')) if found else None


def config_for_seed(cfg: str, seed: int, out_root: Path, source: str | None = None) -> tuple[str, dict]:
    """The committed config, or a copy of it with ``engine.seed`` (and/or ``engine.source``) changed."""
    data = json.loads((REPO / cfg).read_text())
    if int(data["engine"].get("seed", 0)) == seed and source in (None, data["engine"]["source"]):
        return cfg, data
    if source not in (None, data["engine"]["source"]):
        data["engine"]["source"] = source
        data["engine"].setdefault("num_classes", 10)  # for a generator without synthcalib metadata
        data["model"]["model_name"] += f"_{source_name(source)}"
    if int(data["engine"].get("seed", 0)) != seed:
        data["engine"]["seed"] = seed
        data["model"]["model_name"] += f"_seed{seed}"
    path = out_root / "configs" / f"{data['model']['model_name']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return os.path.relpath(path, REPO), data


def chosen_candidate(log: str) -> str | None:
    """The candidate the adaptive recipe chose, from the line the synthetic engine prints."""
    found = re.findall(r"synthcalib: recipe adaptive -> (\w+)", log)
    return found[-1] if found else None


def source_name(spec: str) -> str:
    """Short name of an engine source, as in the calibration-source table."""
    if spec.startswith("images:"):
        return "real"
    if "student" in spec:
        return "student"
    if "teacher" in spec:
        return "teacher"
    return spec


def top1(model_path: str, x: np.ndarray, batch: int = 250) -> np.ndarray:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(model_path)
    model.reshape({model.inputs[0].get_any_name(): [batch, *x.shape[1:]]})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    out = []
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        pad = batch - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])
        logits = request.infer({0: chunk})[0]
        out.append(np.asarray(logits).argmax(1)[: batch - pad])
    return np.concatenate(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilenetv2"])
    parser.add_argument("--algos", nargs="+", default=["default"], choices=["default", "aa"])
    parser.add_argument("--hook", action="store_true", help="also run plain `pot -c` through the opt-in hook")
    parser.add_argument("--reuse", action="store_true", help="reuse INT8 IRs already in out/pot")
    parser.add_argument("--limit", type=int, default=None, help="evaluate on this many test images (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="engine seeds (calibration subsets)")
    parser.add_argument(
        "--synthetic-source",
        default=None,
        help="engine source for the synthetic configs instead of theirs, e.g. the teacher ONNX",
    )
    parser.add_argument("--kinds", nargs="+", default=["synthetic", "real"], choices=["synthetic", "real"])
    parser.add_argument("--report", default=None, help="Markdown file name under benchmarks/results")
    parser.add_argument("--csv", type=Path, default=None, help="append rows to this calibration-source CSV")
    args = parser.parse_args()
    done = done_keys(args.csv, CALIBRATION_KEY) if args.csv is not None else set()
    previous = {}  # rows of the CSV that a rerun skips: the report still shows them
    if args.csv is not None and args.csv.exists():
        with open(args.csv) as f:
            previous = {tuple(r[k] for k in CALIBRATION_KEY): r for r in csv.DictReader(f)}

    out_root = REPO / "out" / "pot"
    rows = []
    commands = []
    hook_was = None
    if args.hook:
        state = subprocess.run([str(BIN / "synthcalib-pot"), "status", "--json"], capture_output=True, text=True)
        hook_was = json.loads(state.stdout)["enabled"]
    try:
        for model in args.models:
            for algo in args.algos:
                variants = [("synthetic", "synthcalib-pot")] if "synthetic" in args.kinds else []
                if args.hook and "synthetic" in args.kinds:
                    variants.append(("synthetic", "pot"))
                if "real" in args.kinds:
                    variants.append(("real", "synthcalib-pot"))
                for (kind, tool), seed in [(v, s) for v in variants for s in args.seeds]:
                    override = args.synthetic_source if kind == "synthetic" else None
                    cfg, data = config_for_seed(f"configs/pot/{model}_{kind}_{algo}.json", seed, out_root, override)
                    source = source_name(data["engine"]["source"])
                    samples = str(data["engine"].get("subset_size", 300))
                    recipe = data["engine"].get("recipe") or ("nncf" if source == "real" else "adaptive")
                    key = (model, source, f"pot_{algo}", recipe, samples, str(seed))
                    if tool == "synthcalib-pot" and key in done:
                        old = previous[key]
                        rows.append(
                            {
                                "model": model, "algo": algo, "kind": kind, "source": source, "samples": samples,
                                "seed": seed, "tool": tool, "rc": 0, "seconds": float(old["quantize_s"] or "nan"),
                                "xml": None, "drop": None, "recipe": recipe, "chosen": old["chosen"] or recipe,
                                "top1": float(old["int8_top1"]), "agreement": 100 - float(old["flip_rate"]),
                                "from_csv": True,
                            }
                        )  # fmt: skip
                        continue
                    name = data["model"]["model_name"]
                    tag = f"{name}_{tool.replace('-', '_')}"
                    out_dir = out_root / tag
                    cmd = [tool, "-c", cfg, "--output-dir", os.path.relpath(out_dir, REPO), "--direct-dump"]
                    xml = out_dir / "optimized" / f"{name}.xml"
                    if tool == "pot":
                        subprocess.run([str(BIN / "synthcalib-pot"), "enable"], check=True, capture_output=True)
                        commands.append("synthcalib-pot enable")
                    commands.append(shlex.join(cmd))
                    if args.reuse and xml.exists():
                        rc, elapsed, log = (
                            0,
                            float("nan"),
                            (out_dir / "run.log").read_text() if (out_dir / "run.log").exists() else "",
                        )
                    else:
                        rc, elapsed, log = run([str(BIN / tool), *cmd[1:]], out_dir / "run.log")
                    print(f"{tag}: rc={rc} {elapsed:.0f}s", flush=True)
                    rows.append(
                        {
                            "model": model,
                            "algo": algo,
                            "kind": kind,
                            "source": source,
                            "samples": samples,
                            "seed": seed,
                            "tool": tool,
                            "rc": rc,
                            "seconds": elapsed,
                            "xml": xml,
                            "drop": final_drop(log) if algo == "aa" else None,
                            "recipe": recipe,
                            "chosen": chosen_candidate(log) or recipe,
                        }
                    )
    finally:
        if hook_was is not None:
            subprocess.run(
                [str(BIN / "synthcalib-pot"), "enable" if hook_was else "disable"], check=True, capture_output=True
            )

    print("loading the test set", flush=True)
    x, labels = load_test(CIFAR_TEST, args.limit, "cifar10")
    fp32 = {}
    for model in args.models:
        pred = top1(str(ZOO / f"{model}.onnx"), x)
        fp32[model] = pred
        print(f"{model} FP32 top-1 {np.mean(pred == labels) * 100:.2f}%", flush=True)
    for row in rows:
        if row["rc"] == 0 and row["xml"] is not None and row["xml"].exists():
            pred = top1(str(row["xml"]), x)
            row["top1"] = float(np.mean(pred == labels) * 100)
            row["agreement"] = float(np.mean(pred == fp32[row["model"]]) * 100)
            print(f"{row['xml'].name} ({row['tool']}): top-1 {row['top1']:.2f}%", flush=True)

    if args.csv is not None:
        record(args.csv.parent, "calibration_sources", "pot_zoo", PYTHON)
        with appending(args.csv, CALIBRATION_FIELDS) as (_, writer):
            for row in rows:
                if row["tool"] != "synthcalib-pot" or "top1" not in row or row.get("from_csv"):
                    continue
                writer.writerow(
                    {
                        "model": row["model"],
                        "source": row["source"],
                        "mode": f"pot_{row['algo']}",
                        "recipe": row["recipe"],
                        "chosen": row["chosen"],
                        "samples": row["samples"],
                        "seed": row["seed"],
                        "fp32_top1": round(float(np.mean(fp32[row["model"]] == labels) * 100), 2),
                        "int8_top1": round(row["top1"], 2),
                        "flip_rate": round(100 - row["agreement"], 2),
                        "quantize_s": round(row["seconds"], 1),
                    }
                )
        print(f"appended to {args.csv}")
    if not rows:
        return 0
    name = args.report or (f"pot_{args.models[0]}.md" if len(args.models) == 1 else "pot_zoo.md")
    lines = [
        "# POT: synthetic vs real-image calibration (CIFAR-10 zoo)",
        "",
        f"Command: `{command('pot_zoo', PYTHON)}` "
        f"(from the repository root, legacy env: openvino-dev 2023.3.0; {os.cpu_count()} CPU cores).",
        "",
        "It ran, from the repository root:",
        "",
        *[f"    {c}" for c in commands],
        "",
        f"Top-1 on `{shown(CIFAR_TEST)}` ({len(labels)} images), OpenVINO CPU, f32 inference precision hint; "
        "agreement = share of test images where INT8 and FP32 predict the same class. "
        f"Calibration: 300 items, seeds {', '.join(map(str, args.seeds))}, class-balanced (synthetic: "
        "the engine `source` of each config, the shipped student; real: `../shared/datasets/cifar10-jpeg/train`).",
        "",
        "| model | algorithm | calibration | recipe | seed | tool | FP32 top-1 | INT8 top-1 | Δ vs FP32 (pp) | flip rate | POT time (s) | final drop |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        base = float(np.mean(fp32[row["model"]] == labels) * 100)
        t1 = row.get("top1")
        lines.append(
            f"| {row['model']} | {'DefaultQuantization' if row['algo'] == 'default' else 'AccuracyAware'} | "
            f"{row['kind']} ({row['source']}) | {row['recipe']} -> {row['chosen']} | {row['seed']} | `{row['tool']}` | "
            f"{base:.2f}% | "
            + (
                f"{t1:.2f}% | {t1 - base:+.2f} | {100 - row['agreement']:.2f}% | "
                if t1 is not None
                else f"failed (rc {row['rc']}) | | | "
            )
            + f"{row['seconds']:.0f} | {row['drop'] if row['drop'] is not None else ''} |"
        )
    for model in args.models:
        for algo in args.algos:

            def mean_top1(kind: str, tool: str, model: str = model, algo: str = algo) -> float | None:
                got = [
                    r["top1"]
                    for r in rows
                    if (r["model"], r["algo"], r["kind"], r["tool"]) == (model, algo, kind, tool) and "top1" in r
                ]
                return float(np.mean(got)) if got else None

            real = mean_top1("real", "synthcalib-pot")
            gaps = [
                f"`{tool}` {syn - real:+.2f} pp"
                for tool in ("synthcalib-pot", "pot")
                if real is not None and (syn := mean_top1("synthetic", tool)) is not None
            ]
            if gaps:
                lines += [
                    "",
                    f"{model} {algo}: synthetic minus real-image INT8 top-1 (mean over seeds): {', '.join(gaps)} "
                    "(target: within ±0.10 pp).",
                ]
    out = RESULTS / name
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
