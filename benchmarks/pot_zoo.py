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

Writes benchmarks/results/pot_<model>.md (one model) or pot_zoo.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TEST_DIR = "../shared/datasets/cifar10-jpeg/test"
BIN = Path(sys.executable).parent


def run(cmd: list[str], log: Path) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    text = proc.stdout + proc.stderr
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(text)
    return proc.returncode, elapsed, text


def final_drop(log: str) -> dict[str, float] | None:
    found = re.findall(r"Accuracy drop(?: with the new quantization scope is)?:? (\{[^}]*\})", log)
    return json.loads(found[-1].replace("'", '"')) if found else None


def load_test_set(limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    from concurrent.futures import ThreadPoolExecutor

    from openvino_synthcalib.imagefolder import ImageFolder, load_image
    from openvino_synthcalib.transforms import Transform

    samples = ImageFolder(ROOT / TEST_DIR).samples()
    if limit:
        samples = samples[:: max(1, len(samples) // limit)][:limit]
    with ThreadPoolExecutor(2) as pool:
        images = np.stack(list(pool.map(lambda s: load_image(s[0]), samples)))
    x = Transform.from_options("cifar10")(images)
    return x, np.array([c for _, c in samples])


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
    args = parser.parse_args()

    out_root = ROOT / "out" / "pot"
    rows = []
    commands = []
    hook_was = None
    if args.hook:
        state = subprocess.run([str(BIN / "synthcalib-pot"), "status", "--json"], capture_output=True, text=True)
        hook_was = json.loads(state.stdout)["enabled"]
    try:
        for model in args.models:
            for algo in args.algos:
                variants = [("synthetic", "synthcalib-pot")]
                if args.hook:
                    variants.append(("synthetic", "pot"))
                variants.append(("real", "synthcalib-pot"))
                for kind, tool in variants:
                    cfg = f"configs/pot/{model}_{kind}_{algo}.json"
                    tag = f"{model}_{kind}_{algo}_{tool.replace('-', '_')}"
                    out_dir = out_root / tag
                    cmd = [tool, "-c", cfg, "--output-dir", os.path.relpath(out_dir, ROOT), "--direct-dump"]
                    xml = out_dir / "optimized" / f"{model}_{kind}_{algo}.xml"
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
                            "tool": tool,
                            "rc": rc,
                            "seconds": elapsed,
                            "xml": xml,
                            "drop": final_drop(log) if algo == "aa" else None,
                        }
                    )
    finally:
        if hook_was is not None:
            subprocess.run(
                [str(BIN / "synthcalib-pot"), "enable" if hook_was else "disable"], check=True, capture_output=True
            )

    print("loading the test set", flush=True)
    x, labels = load_test_set(args.limit)
    fp32 = {}
    for model in args.models:
        pred = top1(str(ROOT / f"../shared/models/cifar10/{model}.onnx"), x)
        fp32[model] = pred
        print(f"{model} FP32 top-1 {np.mean(pred == labels) * 100:.2f}%", flush=True)
    for row in rows:
        if row["rc"] == 0 and row["xml"].exists():
            pred = top1(str(row["xml"]), x)
            row["top1"] = float(np.mean(pred == labels) * 100)
            row["agreement"] = float(np.mean(pred == fp32[row["model"]]) * 100)
            print(f"{row['xml'].name} ({row['tool']}): top-1 {row['top1']:.2f}%", flush=True)

    name = f"pot_{args.models[0]}.md" if len(args.models) == 1 else "pot_zoo.md"
    lines = [
        "# POT: synthetic vs real-image calibration (CIFAR-10 zoo)",
        "",
        f"Command: `{shlex.join(['.venv-pot/bin/python', 'benchmarks/pot_zoo.py', *sys.argv[1:]])}` "
        f"(from the repository root, legacy env: openvino-dev 2023.3.0; {os.cpu_count()} CPU cores).",
        "",
        "It ran, from the repository root:",
        "",
        *[f"    {c}" for c in commands],
        "",
        f"Top-1 on `{TEST_DIR}` ({len(labels)} images), OpenVINO CPU, f32 inference precision hint; "
        "agreement = share of test images where INT8 and FP32 predict the same class. "
        "Calibration: 300 items, seed 0, class-balanced (synthetic: the CIFAR-10 cGAN teacher; real: "
        "`../shared/datasets/cifar10-jpeg/train`).",
        "",
        "| model | algorithm | calibration | tool | FP32 top-1 | INT8 top-1 | Δ vs FP32 (pp) | agreement | POT time (s) | final drop |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        base = float(np.mean(fp32[row["model"]] == labels) * 100)
        t1 = row.get("top1")
        lines.append(
            f"| {row['model']} | {'DefaultQuantization' if row['algo'] == 'default' else 'AccuracyAware'} | "
            f"{row['kind']} | `{row['tool']}` | {base:.2f}% | "
            + (
                f"{t1:.2f}% | {t1 - base:+.2f} | {row['agreement']:.2f}% | "
                if t1 is not None
                else f"failed (rc {row['rc']}) | | | "
            )
            + f"{row['seconds']:.0f} | {row['drop'] if row['drop'] is not None else ''} |"
        )
    for model in args.models:
        for algo in args.algos:
            real = [
                r for r in rows if r["model"] == model and r["algo"] == algo and r["kind"] == "real" and "top1" in r
            ]
            syn = [
                r
                for r in rows
                if r["model"] == model and r["algo"] == algo and r["kind"] == "synthetic" and "top1" in r
            ]
            if real and syn:
                gaps = ", ".join(f"`{r['tool']}` {r['top1'] - real[0]['top1']:+.2f} pp" for r in syn)
                lines += [
                    "",
                    f"{model} {algo}: synthetic minus real-image INT8 top-1: {gaps} (target: within ±0.3 pp).",
                ]
    out = ROOT / "benchmarks" / "results" / name
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
