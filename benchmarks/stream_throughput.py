"""Stream throughput and the cost of streaming calibration data into nncf.quantize.

1. Generator images/s through GeneratorEngine (async infer queue) vs batch size and number of
   infer requests.
2. Wall time of ``nncf.quantize`` fed by the synthetic stream vs by the same images held in
   memory (a plain list of arrays), as a ratio from one run (median of --repeats).

    python benchmarks/stream_throughput.py [--generator G.xml] [--model M.onnx] [--quick]

Writes benchmarks/results/stream_throughput.{csv,md}. Timings are only compared within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from openvino_synthcalib.demo import CLASSIFIER, GENERATOR, SHARED_CLASSIFIER, SHARED_TEACHER  # noqa: E402


def default(shipped: Path, fallback: Path) -> Path:
    return shipped if shipped.exists() else fallback


def images_per_second(generator: Path, batch: int, requests: int, n: int, seed: int = 0) -> float:
    from openvino_synthcalib.engine import GeneratorEngine

    eng = GeneratorEngine(generator, batch_size=batch, num_requests=requests, default_num_classes=10)
    idx = np.arange(n)
    labels = idx % eng.info.num_classes
    for _ in eng.iter_images(idx[: batch * requests], labels[: batch * requests], seed):  # warm-up
        pass
    started = time.perf_counter()
    count = sum(len(b) for b in eng.iter_images(idx, labels, seed))
    return count / (time.perf_counter() - started)


def quantize_times(generator: Path, model_path: Path, samples: int, repeats: int) -> dict[str, float]:
    import nncf
    import openvino as ov

    import openvino_synthcalib as synthcalib

    core = ov.Core()
    streamed, in_memory = [], []
    for _ in range(repeats):
        model = core.read_model(str(model_path))
        ds = synthcalib.Dataset(f"generator:{generator}", samples, model=model, transform="cifar10")
        held = [np.array(x) for x in ds]  # the very same items, generated ahead of time
        with contextlib.redirect_stdout(sys.stderr):
            t = time.perf_counter()
            nncf.quantize(model, ds, subset_size=samples)
            streamed.append(time.perf_counter() - t)
            model = core.read_model(str(model_path))
            t = time.perf_counter()
            nncf.quantize(model, nncf.Dataset(held), subset_size=samples)
            in_memory.append(time.perf_counter() - t)
    return {"streamed_s": statistics.median(streamed), "in_memory_s": statistics.median(in_memory)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generator", type=Path, default=default(GENERATOR, SHARED_TEACHER))
    p.add_argument("--model", type=Path, default=default(CLASSIFIER, SHARED_CLASSIFIER))
    p.add_argument("--images", type=int, default=1024, help="images per throughput point")
    p.add_argument("--samples", type=int, default=300, help="calibration samples for nncf.quantize")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="few points, small counts")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args()
    batches, requests = ([1, 8, 32, 64, 128], [1, 2, 4]) if not args.quick else ([1, 32], [1, 2])
    n = args.images if not args.quick else 128
    rows = []
    for b in batches:
        for r in requests:
            ips = images_per_second(args.generator, b, r, max(n, b * r))
            rows.append({"batch_size": b, "num_requests": r, "images_per_s": round(ips, 1)})
            print(f"batch {b:4d} requests {r}: {ips:8.1f} img/s", file=sys.stderr)
    q = quantize_times(args.generator, args.model, args.samples if not args.quick else 64, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "stream_throughput.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    best = max(rows, key=lambda r: r["images_per_s"])
    base = next(r for r in rows if r["batch_size"] == 1 and r["num_requests"] == 1)["images_per_s"]
    lines = [
        "# Stream throughput",
        "",
        f"Command: `python benchmarks/stream_throughput.py{' --quick' if args.quick else ''}`  ",
        f"Generator: `{args.generator.name}`; model: `{args.model.name}`; machine: {platform.machine()},"
        f" {__import__('os').cpu_count()} CPU cores, OpenVINO f32 inference.",
        "",
        "## Generator images/s relative to batch 1 with 1 infer request",
        "",
        "| batch | " + " | ".join(f"{r} request{'s' if r > 1 else ''}" for r in requests) + " |",
        "|---|" + "---|" * len(requests),
    ]
    for b in batches:
        cells = [next(x for x in rows if x["batch_size"] == b and x["num_requests"] == r) for r in requests]
        lines.append(f"| {b} | " + " | ".join(f"x{c['images_per_s'] / base:.2f}" for c in cells) + " |")
    lines += [
        "",
        f"Best: batch {best['batch_size']}, {best['num_requests']} requests (x{best['images_per_s'] / base:.2f}).",
        "Absolute images/s are in `stream_throughput.csv` (this machine only).",
        "",
        "## nncf.quantize fed by the stream vs by the same images in memory",
        "",
        f"{args.samples if not args.quick else 64} samples, median of {args.repeats} runs: streamed / in-memory wall"
        f" time = **x{q['streamed_s'] / q['in_memory_s']:.2f}**"
        " (the difference is the time spent generating the images).",
        "",
    ]
    (args.out / "stream_throughput.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
