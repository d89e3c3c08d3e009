"""The main job end to end: quantize a CIFAR-10 classifier on the shipped generator's stream.

``python -m openvino_synthcalib.demo`` (``make demo``) quantizes the project's demo classifier
with 300 synthetic calibration images, then reports FP32 vs INT8 top-1 agreement on held-out
synthetic items (another seed) and the INT8 speed-up, both measured in this run.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import models
from .errors import SynthcalibError
from .files import created_dirs, save_ir
from .quality import CHECK_SEED_OFFSET, predict, summary, synthetic_flips, warning
from .shipped import DEFAULT_GENERATOR, DEMO_CLASSIFIER, GENERATORS
from .stream import SyntheticStream


def _throughput(compiled: Any, x: np.ndarray, seconds: float) -> float:
    """Images/s of synchronous inference on batch ``x`` for about ``seconds``."""
    compiled(x)
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        compiled(x)
        n += 1
    return n * len(x) / (time.perf_counter() - started)


def run(
    generator: Path | None = None,
    classifier: Path | None = None,
    num_samples: int = 300,
    held_out: int = 1000,
    out: Path = Path("out/demo"),
) -> dict[str, Any]:
    import nncf

    from .dataset import Dataset  # heavy: .dataset imports nncf (Dataset subclasses nncf.Dataset)

    generator = generator or GENERATORS[DEFAULT_GENERATOR]
    classifier = classifier or DEMO_CLASSIFIER
    model = models.read_model(classifier, "classifier")
    with Dataset(f"generator:{generator}", num_samples, model=model, transform="cifar10", seed=0) as calibration:
        started = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):
            int8 = nncf.quantize(model, calibration, subset_size=num_samples)
        quantize_s = time.perf_counter() - started
        with created_dirs(out, "--out"):
            save_ir(int8, out / "classifier_int8.xml")
        stream = calibration.stream
        # the data-free quality check every front-end runs: fresh items (seed + CHECK_SEED_OFFSET)
        seed = CHECK_SEED_OFFSET
        with SyntheticStream(stream.source, held_out, seed=seed, transform=stream.transform) as test:
            check = synthetic_flips(model, int8, test, "CPU")
            batch = np.concatenate([x for x, _ in itertools.islice(test.batches(), 2)])[:64]
    cfg = {"INFERENCE_PRECISION_HINT": "f32"}
    fp32_c = models.compile_model(models.read_model(classifier), "CPU", cfg)
    int8_c = models.compile_model(int8, "CPU", cfg)
    fps32 = _throughput(fp32_c, batch, 3.0)
    fps8 = _throughput(int8_c, batch, 3.0)
    return {
        "generator": str(generator),
        "classifier": str(classifier),
        "calibration_samples": num_samples,
        "quantize_seconds": quantize_s,
        "held_out": check["items"],
        "held_out_seed": seed,
        "agreement": 1.0 - check["flip_rate"],
        "fp32_vs_label": check["fp32_top1_vs_class"],
        "int8_vs_label": check["int8_top1_vs_class"],
        "check": check,
        "prediction": predict(check),
        "fp32_images_per_s": fps32,
        "int8_images_per_s": fps8,
        "output": str(out / "classifier_int8.xml"),
    }


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openvino_synthcalib.demo", description=__doc__)
    parser.add_argument("--generator", type=Path, help="generator IR (default: the shipped CIFAR-10 generator)")
    parser.add_argument("--classifier", type=Path, help="FP32 classifier (default: the demo classifier)")
    parser.add_argument("--num-samples", type=_positive, default=300)
    parser.add_argument("--held-out", type=_positive, default=1000)
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    args = parser.parse_args(argv)
    try:
        r = run(args.generator, args.classifier, args.num_samples, args.held_out, args.out)
    except SynthcalibError as exc:
        print(f"synthcalib: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130
    print(f"generator:   {r['generator']}")
    print(f"classifier:  {r['classifier']}")
    print(f"calibrated:  {r['calibration_samples']} synthetic images, nncf.quantize {r['quantize_seconds']:.1f} s")
    print(f"INT8 model:  {r['output']}")
    print(
        f"FP32 vs INT8 top-1 agreement on {r['held_out']} fresh synthetic images (seed {r['held_out_seed']}): "
        f"{100 * r['agreement']:.2f}%"
    )
    check = {**r["check"], "source": r["generator"], "seed": r["held_out_seed"], "prediction": r["prediction"]}
    for line in summary(check)[1:]:  # the prediction from the measured relation (the check line is above)
        print(line)
    poor = warning(check)
    if poor is not None:
        print(f"synthcalib: warning: {poor}", file=sys.stderr)
    print(
        f"top-1 against the conditioning class: FP32 {100 * r['fp32_vs_label']:.2f}%, INT8 {100 * r['int8_vs_label']:.2f}%"
    )
    print(
        f"throughput (batch 64, CPU): FP32 {r['fp32_images_per_s']:.0f} img/s, INT8 {r['int8_images_per_s']:.0f} img/s"
        f" -> speed-up x{r['int8_images_per_s'] / r['fp32_images_per_s']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
