"""Generator throughput and the cost of feeding nncf.quantize from a stream, from memory, from disk.

1. Images/s of each generator (shipped student, and the teacher where ``../shared`` has it)
   through GeneratorEngine (in-order async infer queue) vs batch size and number of infer requests.
2. Wall time of ``nncf.quantize`` on the same model and sample count, fed by
   * the synthetic stream (``synthcalib.Dataset("generator:...")``, images made on demand), at the
     calibration default precision (the device's) and at f32,
   * an image folder on disk (``images:`` source: JPEG/PNG files decoded as they are read),
   * the images of that folder decoded and preprocessed ahead of time (a list of arrays in memory),
   as ratios to the in-memory run, median of ``--repeats`` rounds with the cases interleaved (each
   round starts with the next case: the first quantization of a round runs slower);
3. the time to make the stream's items alone, without a quantizer (the least the stream can add).

    python benchmarks/stream_throughput.py            # the committed results
    python benchmarks/stream_throughput.py --quick    # a minute or two

The image folder defaults to the shared CIFAR-10 train set; without it, the student's images are
written to a temporary folder first (so the folder case still reads files from disk). Writes
benchmarks/results/stream_throughput.{csv,md}. Timings are only compared within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from commands import command
from paths import CIFAR_TRAIN as SHARED_TRAIN
from paths import DEMO_CLASSIFIER as CLASSIFIER
from paths import REPO, ZOO
from paths import STUDENT as GENERATOR
from paths import TEACHER as SHARED_TEACHER

SHARED_CLASSIFIER = ZOO / "resnet20.onnx"


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


def write_folder(generator: Path, root: Path, samples: int) -> Path:
    """The generator's images as PNG files, one folder per class (the no-../shared fallback)."""
    from openvino_synthcalib.cli import main as synthcalib

    with contextlib.redirect_stdout(sys.stderr):
        if synthcalib(["generate", "--source", f"generator:{generator}", "-n", str(samples), "--out", str(root)]):
            raise SystemExit(f"could not write {samples} images of {generator} to {root}")
    return root


def quantize_times(
    generator: Path, folder: Path, model_path: Path, samples: int, repeats: int, preset: str
) -> dict[str, float]:
    import nncf
    import openvino as ov

    import openvino_synthcalib as synthcalib

    core = ov.Core()
    times: dict[str, list[float]] = {"stream": [], "stream_f32": [], "folder": [], "memory": [], "generate": []}

    specs = {"stream": f"generator:{generator}", "folder": f"images:{folder}"}
    for r in range(repeats):
        model = core.read_model(str(model_path))
        # The folder's items, decoded and normalised before the clock starts.
        held = [
            np.array(x) for x in synthcalib.Dataset(specs["folder"], samples, model=model, seed=r, transform=preset)
        ]
        kinds = list(times)
        for kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:  # each case leads a round in turn
            model = core.read_model(str(model_path))
            gc.collect()  # no case pays for collecting the garbage of the one before
            with contextlib.redirect_stdout(sys.stderr):
                started = time.perf_counter()
                if kind == "generate":  # the stream's items alone, no quantizer: what feeding them costs at least
                    with synthcalib.Dataset(specs["stream"], samples, model=model, seed=r, transform=preset) as data:
                        for _ in data:
                            pass
                    times[kind].append(time.perf_counter() - started)
                    continue
                if kind == "memory":
                    data = contextlib.nullcontext(nncf.Dataset(held))
                else:
                    # stream: the calibration default (the device's precision); stream_f32: f32 generation
                    options = {"precision": "f32"} if kind == "stream_f32" else {}
                    spec = specs[kind.split("_")[0]]
                    data = synthcalib.Dataset(spec, samples, model=model, seed=r, transform=preset, **options)
                with data as dataset:
                    nncf.quantize(model, dataset, subset_size=samples)
                times[kind].append(time.perf_counter() - started)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--generators", type=Path, nargs="*", default=None, help="default: student, and the teacher if present"
    )
    p.add_argument("--model", type=Path, default=SHARED_CLASSIFIER if SHARED_CLASSIFIER.exists() else CLASSIFIER)
    p.add_argument(
        "--folder",
        default=str(SHARED_TRAIN) if SHARED_TRAIN.exists() else "generated",
        help="class-per-folder images for the on-disk case, or 'generated': the first generator's images "
        "written to a temporary folder (default: the shared train set if present, else generated)",
    )
    p.add_argument("--preset", default="cifar10", help="the model's preprocessing preset")
    p.add_argument("--images", type=int, default=1024, help="images per throughput point")
    p.add_argument("--samples", type=int, default=300, help="calibration samples for nncf.quantize")
    p.add_argument("--repeats", type=int, default=5, help="rounds (5: each case leads one round)")
    p.add_argument("--quick", action="store_true", help="few points, small counts")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args()
    gens = args.generators or [g for g in (GENERATOR, SHARED_TEACHER) if g.exists()]
    for g in gens:
        if not g.exists():
            p.error(f"--generators: {g} does not exist")
    batches, requests = ([1, 8, 32, 64, 128], [1, 2, 4]) if not args.quick else ([1, 32], [1, 2])
    n = args.images if not args.quick else 128
    samples = args.samples if not args.quick else 64
    repeats = args.repeats if not args.quick else 1

    rows = []
    for g in gens:
        for b in batches:
            for r in requests:
                ips = images_per_second(g, b, r, max(n, b * r))
                rows.append({"generator": g.stem, "batch_size": b, "num_requests": r, "images_per_s": round(ips, 1)})
                print(f"{g.stem}: batch {b:4d} requests {r}: {ips:8.1f} img/s", file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        generated = args.folder == "generated"
        folder = write_folder(gens[0], Path(tmp) / "images", samples) if generated else Path(args.folder)
        q = quantize_times(gens[0], folder, args.model, samples, repeats, args.preset)

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "stream_throughput.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    ref = rows[0]  # first generator, batch 1, 1 request
    lines = [
        "# Generator throughput and calibration feeding",
        "",
        f"Command: `{command('stream_throughput')}`  ",
        f"Generators: {', '.join(f'`{g.name}`' for g in gens)}; model: `{args.model.name}`; machine: "
        f"{platform.machine()}, {os.cpu_count()} CPU cores, one run. Images/s: generator inference at f32 "
        "(`GeneratorEngine` default).",
        "",
        f"## Generator images/s, relative to `{ref['generator']}` at batch 1 with 1 infer request",
        "",
        "| generator | batch | " + " | ".join(f"{r} request{'s' if r > 1 else ''}" for r in requests) + " |",
        "|---|---|" + "---|" * len(requests),
    ]
    for g in gens:
        for b in batches:
            cells = [
                next(x for x in rows if (x["generator"], x["batch_size"], x["num_requests"]) == (g.stem, b, r))
                for r in requests
            ]
            lines.append(
                f"| {g.stem} | {b} | "
                + " | ".join(f"x{c['images_per_s'] / ref['images_per_s']:.2f}" for c in cells)
                + " |"
            )
    lines.append("")
    best = {g.stem: max((x for x in rows if x["generator"] == g.stem), key=lambda x: x["images_per_s"]) for g in gens}
    for name, b in best.items():
        lines.append(
            f"Best for {name}: batch {b['batch_size']}, {b['num_requests']} requests "
            f"(x{b['images_per_s'] / ref['images_per_s']:.2f})."
        )
    if len(gens) > 1:
        a, b = (best[g.stem] for g in gens[:2])
        lines.append(f"Best {gens[0].stem} / best {gens[1].stem}: **x{a['images_per_s'] / b['images_per_s']:.2f}**.")
    shown = os.path.relpath(args.folder, REPO) if not generated else ""
    folder_desc = "a temporary folder of PNGs written by the generator" if generated else f"`{shown}`"
    lines += [
        "Absolute images/s are in `stream_throughput.csv` (this machine only).",
        "",
        "## nncf.quantize wall time by how the calibration items are fed",
        "",
        f"Same model, {samples} class-balanced items, `nncf.quantize` defaults, median of {repeats} rounds "
        "(the cases interleaved, each round led by the next case), relative to the in-memory case:",
        "",
        "| calibration items come from | wall time |",
        "|---|---|",
        f"| the images of {folder_desc}, decoded and preprocessed ahead of time (list of arrays in memory) | x1.00 |",
        f"| the same folder on disk, decoded as read (`images:` source) | x{q['folder'] / q['memory']:.2f} |",
        f"| the synthetic stream of `{gens[0].name}`, generated on demand (`synthcalib.Dataset` defaults: "
        f"the device's inference precision) | x{q['stream'] / q['memory']:.2f} |",
        f"| the same stream with f32 generation (`precision='f32'`) | x{q['stream_f32'] / q['memory']:.2f} |",
        "",
        f"Making the stream's {samples} items alone (a `synthcalib.Dataset` read to the end, no quantizer) takes"
        f" {q['generate'] / q['memory']:.2f} of the in-memory `nncf.quantize` wall time: what the stream adds when"
        " none of it overlaps the quantizer's work.",
        "",
        "The folder case runs with a warm page cache after the first round; both non-memory cases pay "
        "for making the items (decoding or generating) inside `nncf.quantize`. On this small model, making "
        "an image costs more than classifying it. The stream starts generating when the `Dataset` is made, "
        "in a background thread, but on a machine with few cores NNCF keeps them busy, so that work is "
        "added to the quantization rather than hidden behind it.",
        "",
    ]
    (args.out / "stream_throughput.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
