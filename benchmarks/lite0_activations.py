"""What the studies of Lite0's activations share (``activation_peaks.py``, ``activation_tails.py``):
EfficientNet-Lite0 in PyTorch, the same 200 generator items and 200 measured sample images, one
measuring loop over ``--generator``s, and the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from commands import record
from paths import REPO, RESULTS, generator_file, generator_label
from rows import done_keys
from testset import IMAGENET_MODELS, cached_views, imagenet_split

KEY = ("generator",)
LITE0 = IMAGENET_MODELS["lite0"][0]
CACHE = REPO / "runs" / "imagenet"
ITEMS = 200


def real_batches(batch: int = 20):
    """The centre views of the first ``ITEMS`` measured sample images, normalised as Lite0 takes them."""
    _, _, mean, std = IMAGENET_MODELS["lite0"]
    files = imagenet_split(CACHE)[1]
    views = cached_views(CACHE / f"views-measured-224-{len(files)}.npy", files)
    for i in range(0, min(ITEMS, len(views)), batch):
        yield (views[i : i + batch, 0].astype(np.float32) / 255.0 - mean) / std


def synthetic_batches(xml: Path, batch: int = 20):
    import openvino_synthcalib as synthcalib

    with synthcalib.Dataset(f"generator:{xml}", ITEMS, model=str(LITE0), transform="inception", seed=0) as ds:
        items = [np.asarray(x, dtype=np.float32).reshape(-1, 3, 224, 224) for x in ds]
    x = np.concatenate(items)
    for i in range(0, len(x), batch):
        yield x[i : i + batch]


def measured(args, name: str, probe_of):
    """For each ``--generator`` not yet in ``NAME.csv`` (this study's or a sibling's ``name``): its
    weights' label, its ``--label``, and what the probe (``probe_of(net)``, with ``run(net, batches)``)
    returns on the real images and on the generator's items, Lite0 in PyTorch."""
    import torch

    from openvino_synthcalib.train_generator.classifiers import efficientnet_lite0

    torch.set_num_threads(args.threads)
    done = done_keys(args.out / f"{name}.csv", KEY)
    record(args.out, name)
    net = efficientnet_lite0().eval()
    probe = probe_of(net)
    real = None
    for spec, label in zip(args.generator, args.label or [None] * len(args.generator)):
        xml = generator_file(spec)
        gen = generator_label(spec, xml)
        if (gen,) in done:
            continue
        if real is None:
            real = probe.run(net, real_batches())
        yield gen, label or gen, real, probe.run(net, synthetic_batches(xml)), probe


def cli(doc: str, measure, report) -> None:
    """The command line of both studies: measure the ``--generator``s (unless ``--report-only``), then
    rebuild the report."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", nargs="+", default=["imagenet"], help="shipped names or IR files")
    p.add_argument("--label", nargs="*", default=None, help="a name for each --generator")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.label and len(args.label) != len(args.generator):
        p.error("--label: one per --generator")
    if not args.report_only:
        measure(args)
    report(args.out)
