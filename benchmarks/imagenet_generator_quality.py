"""ImageNet generator quality as numbers: EfficientNet-Lite0 on the generator's images.

For each generator (``--generator``: a shipped name or an IR/ONNX file, default the shipped
``imagenet``), K images of every one of the 1,000 classes (``--per-class``, default 4) are made by
the product's own stream, as calibration sees them: ``synthcalib.Dataset`` of the source
``generator:FILE`` with the preset ``inception`` (RGB [-1, 1] at 224 px, EfficientNet-Lite0's
input), seed ``--seed`` (default 0), 1000 x K items (the class-balanced schedule gives every class K
items). The generator runs at f32 (the calibration stream's default is the device's precision, bf16
on some CPUs; f32 gives the same images on every CPU).

* Class consistency: FP32 EfficientNet-Lite0 (``../shared/models/imagenet/efficientnet_lite0.onnx``,
  OpenVINO CPU, f32 inference precision) classifies every image; top-1 and top-5 against the
  conditioning class, the share of the 1,000 classes whose class Lite0 names (top-1) for at least
  one of its K images, the number of distinct top-1 classes over all images, the mean max-softmax
  probability and the share of images whose max probability is at least 0.5.
* Diversity: Lite0's penultimate features (``/Reshape_output_0``: the 1280 global-average-pooled
  ReLU6 features, the input of the classifier ``/_fc/Gemm``, added as a model output). Within a
  class: the mean pairwise cosine distance (1 - cosine similarity) of its K images, averaged over
  classes; as scale references the same distance between random pairs of images of different
  classes, and between the real shared sample images (one per even class, short side 256, centre
  crop 224, all pairs). Pixels: the mean pairwise mean-absolute difference of the [-1, 1] images
  within a class (near-identical images give about 0), between random pairs of different classes,
  and between random pairs of the real sample images.

    python benchmarks/imagenet_generator_quality.py                        # shipped generator, K=4 (~2 min, 1 thread)
    python benchmarks/imagenet_generator_quality.py --per-class 8          # K=8
    python benchmarks/imagenet_generator_quality.py --generator runs/00001-imagenet/generator.xml --label lr2e-3
    python benchmarks/imagenet_generator_quality.py --generator a.xml b.xml --label A B
    python benchmarks/imagenet_generator_quality.py --report-only          # rebuild the report from the CSV

A checkpoint of a training run becomes an IR with ``python -m openvino_synthcalib.train_generator
export --run CKPT.pt --out FILE.xml``. One row per (generator label, weights, K, seed) is appended to
``OUT/imagenet_generator_quality.csv`` as it finishes (a rerun skips rows already there; the weights'
sha256 is part of the key, so a retrained generator under the same label is a new row); the report
``imagenet_generator_quality.md`` is rebuilt from the CSV at the end of every run.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
from commands import record, recorded
from paths import RESULTS, SHARED, generator_file, shown
from rows import appending, done_keys
from testset import IMAGENET_CLASSES, crop_views, resized, sample_images

NAME = "imagenet_generator_quality"
LITE0 = SHARED / "models" / "imagenet" / "efficientnet_lite0.onnx"
#: Lite0's penultimate features: GlobalAveragePool of the head's ReLU6, flattened to [N, 1280];
#: the input of the classifier (``/_fc/Gemm``).
FEATURE_NODE = "/Reshape_output_0"
FEATURE_DIM = 1280
SIZE = 224
PRESET = "inception"
CONFIDENT = 0.5
KEY = ("generator", "weights_sha256", "per_class", "seed")
FIELDS = [
    *KEY,
    "file",
    "classes",
    "images",
    "top1",
    "top5",
    "classes_recognised",
    "distinct_predicted",
    "mean_max_prob",
    "confident_share",
    "feature_within",
    "feature_within_min",
    "feature_within_min_class",
    "feature_between",
    "pixel_within",
    "pixel_within_min",
    "pixel_within_min_class",
    "pixel_between",
    "pairs",
    "real_images",
    "real_top1",
    "real_feature_between",
    "real_pixel_between",
    "feature_node",
    "generate_s",
    "classify_s",
    "wall_s",
    "run_id",
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- measures


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def consistency(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """Top-1 / top-5 against the conditioning class (%), classes recognised at least once (%),
    distinct top-1 classes, mean max-softmax probability, share of images with max prob >= 0.5 (%)."""
    prob = softmax(logits)
    pred = prob.argmax(1)
    top5 = np.argsort(-logits, 1)[:, :5]
    hit = pred == labels
    recognised = np.zeros(num_classes, bool)
    recognised[labels[hit]] = True
    conf = prob.max(1)
    return {
        "top1": round(100 * float(hit.mean()), 2),
        "top5": round(100 * float((top5 == labels[:, None]).any(1).mean()), 2),
        "classes_recognised": round(100 * float(recognised[np.unique(labels)].mean()), 2),
        "distinct_predicted": int(len(np.unique(pred))),
        "mean_max_prob": round(float(conf.mean()), 4),
        "confident_share": round(100 * float((conf >= CONFIDENT).mean()), 2),
    }


def unit(features: np.ndarray) -> np.ndarray:
    f = features.astype(np.float64)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def by_class(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The classes and, for each, the indices of its items ([C, K]; every class must have K items)."""
    classes, counts = np.unique(labels, return_counts=True)
    if len(set(counts.tolist())) != 1 or counts[0] < 2:
        raise ValueError(f"expected the same number (>= 2) of items in every class, got {sorted(set(counts))}")
    order = np.argsort(labels, kind="stable")
    return classes, order.reshape(len(classes), counts[0])


def within_class_features(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per class, the mean pairwise cosine distance (1 - cosine similarity) of its items' features."""
    classes, idx = by_class(labels)
    f = unit(features)[idx]  # [C, K, D]
    sim = np.einsum("ckd,cjd->ckj", f, f)
    k = idx.shape[1]
    iu = np.triu_indices(k, 1)
    return (1.0 - sim[:, iu[0], iu[1]]).mean(1)


def within_class_pixels(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per class, the mean pairwise mean-absolute difference of its items' pixels."""
    classes, idx = by_class(labels)
    k = idx.shape[1]
    out = np.empty(len(classes))
    for c, rows in enumerate(idx):
        x = images[rows].reshape(k, -1).astype(np.float32)
        out[c] = np.mean([np.abs(x[i] - x[j]).mean() for i in range(k) for j in range(i + 1, k)])
    return out


def random_pairs(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random pairs [n, 2] of item indices whose labels differ."""
    out: list[np.ndarray] = []
    have = 0
    while have < n:
        p = rng.integers(0, len(labels), (2 * n, 2))
        p = p[labels[p[:, 0]] != labels[p[:, 1]]]
        out.append(p)
        have += len(p)
    return np.concatenate(out)[:n]


def pair_features(features: np.ndarray, pairs: np.ndarray) -> float:
    f = unit(features)
    return float((1.0 - (f[pairs[:, 0]] * f[pairs[:, 1]]).sum(1)).mean())


def pair_pixels(images: np.ndarray, pairs: np.ndarray) -> float:
    flat = images.reshape(len(images), -1)
    return float(np.mean([np.abs(flat[i].astype(np.float32) - flat[j].astype(np.float32)).mean() for i, j in pairs]))


def all_pairs_features(features: np.ndarray) -> float:
    """Mean cosine distance over all pairs of distinct items."""
    f = unit(features)
    sim = f @ f.T
    iu = np.triu_indices(len(f), 1)
    return float((1.0 - sim[iu]).mean())


# ----------------------------------------------------------------------------- models


class Lite0:
    """FP32 EfficientNet-Lite0 with its penultimate features as a second output (OpenVINO CPU, f32)."""

    def __init__(self, threads: int) -> None:
        from openvino_synthcalib import models

        if not LITE0.exists():
            raise SystemExit(f"{LITE0} not found (set SYNTHCALIB_SHARED to the shared assets)")
        model = models.read_model(str(LITE0))
        model.add_outputs([FEATURE_NODE])
        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = models.compile_model(model, "CPU", config)
        self.logits_port = self.compiled.output("logits")
        self.features_port = self.compiled.output(FEATURE_NODE)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits [N, 1000], features [N, 1280]) of a batch of inputs in [-1, 1]."""
        out = self.compiled(np.ascontiguousarray(x, np.float32))
        logits, feats = out[self.logits_port], out[self.features_port]
        if feats.shape != (len(x), FEATURE_DIM) or feats.min() < 0 or feats.max() > 6 + 1e-4:
            raise SystemExit(f"{FEATURE_NODE}: expected pooled ReLU6 features [N, {FEATURE_DIM}], got {feats.shape}")
        return np.array(logits), np.array(feats)


def wnids() -> list[str]:
    with open(IMAGENET_CLASSES) as f:
        return [r["wnid"] for r in sorted(csv.DictReader(f, delimiter="\t"), key=lambda r: int(r["index"]))]


def class_names() -> list[str]:
    with open(IMAGENET_CLASSES) as f:
        return [r["name"] for r in sorted(csv.DictReader(f, delimiter="\t"), key=lambda r: int(r["index"]))]


def weights_sha256(path: Path) -> str:
    weights = path.with_suffix(".bin") if path.suffix == ".xml" else path
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:8]


# ----------------------------------------------------------------------------- one generator


def real_reference(lite: Lite0, pairs: int, seed: int) -> dict:
    """Lite0 on the shared sample images (centre crop 224 of short side 256, [-1, 1]): top-1 and the
    between-class distances (features: all pairs; pixels: ``pairs`` random pairs)."""
    files, labels = sample_images(None)
    x = np.stack([crop_views(resized(p, SIZE), SIZE)[0] for p in files]).astype(np.float32) / 127.5 - 1.0
    logits, feats = zip(*(lite(x[i : i + 32]) for i in range(0, len(x), 32)))
    pred = np.concatenate(logits).argmax(1)
    rng = np.random.default_rng(seed)
    return {
        "real_images": len(files),
        "real_top1": round(100 * float((pred == labels).mean()), 2),
        "real_feature_between": round(all_pairs_features(np.concatenate(feats)), 4),
        "real_pixel_between": round(pair_pixels(x, random_pairs(labels, pairs, rng)), 4),
    }


def measure(args, path: Path, label: str, sha: str, lite: Lite0, real: dict) -> dict:
    import openvino_synthcalib as synthcalib

    k, started = args.per_class, time.perf_counter()
    engine = synthcalib.GeneratorEngine(
        str(path), precision="f32", num_requests=1, batch_size=args.batch,
        config={"INFERENCE_NUM_THREADS": args.threads},
    )  # fmt: skip
    info = engine.info
    if info.num_classes != 1000:
        engine.close()
        raise SystemExit(f"{label}: the generator has {info.num_classes} classes; Lite0 has 1000")
    if info.class_ids and list(info.class_ids) != wnids():
        engine.close()
        raise SystemExit(f"{label}: the generator's class ids are not Lite0's order (classes.tsv)")
    n = 1000 * k
    gen_s = cls_s = 0.0
    images = np.empty((n, 3, SIZE, SIZE), np.float16)
    labels = np.empty(n, np.int64)
    logits = np.empty((n, 1000), np.float32)
    feats = np.empty((n, FEATURE_DIM), np.float32)
    with synthcalib.Dataset(engine, n, transform=PRESET, seed=args.seed, model=str(LITE0), prefetch=0) as data:
        stream = data.stream
        counts = stream.schedule.counts()
        if not (counts == k).all():
            raise SystemExit(f"{label}: the stream's schedule gives {sorted(set(counts.tolist()))} items per class")
        pos, batches = 0, stream.batches()
        while True:
            t = time.perf_counter()
            batch = next(batches, None)
            gen_s += time.perf_counter() - t
            if batch is None:
                break
            x, y = batch
            t = time.perf_counter()
            lg, ft = lite(x)
            cls_s += time.perf_counter() - t
            m = len(x)
            images[pos : pos + m], labels[pos : pos + m] = x, y
            logits[pos : pos + m], feats[pos : pos + m] = lg, ft
            pos += m
            if pos % (50 * args.batch) == 0:
                log(f"  {label}: {pos}/{n} images ({time.perf_counter() - started:.0f} s)")
        spec = stream.source.spec
    if pos != n:
        raise SystemExit(f"{label}: the stream gave {pos} items, expected {n}")
    names = class_names()
    f_within = within_class_features(feats, labels)
    p_within = within_class_pixels(images, labels)
    classes, _ = by_class(labels)
    pairs = random_pairs(labels, args.pairs, np.random.default_rng(args.seed))
    row = dict(zip(KEY, (label, sha, str(k), str(args.seed))))
    row.update(
        file=shown(path),
        classes=len(classes),
        images=n,
        **consistency(logits, labels, 1000),
        feature_within=round(float(f_within.mean()), 4),
        feature_within_min=round(float(f_within.min()), 4),
        feature_within_min_class=names[classes[f_within.argmin()]],
        feature_between=round(pair_features(feats, pairs), 4),
        pixel_within=round(float(p_within.mean()), 4),
        pixel_within_min=round(float(p_within.min()), 4),
        pixel_within_min_class=names[classes[p_within.argmin()]],
        pixel_between=round(pair_pixels(images, pairs), 4),
        pairs=len(pairs),
        **real,
        feature_node=FEATURE_NODE,
        generate_s=round(gen_s, 1),
        classify_s=round(cls_s, 1),
        wall_s=round(time.perf_counter() - started, 1),
        run_id=args.run_id,
    )
    log(f"  {label} ({spec}, K={k}): top-1 {row['top1']}%, top-5 {row['top5']}%, recognised {row['classes_recognised']}%,"
        f" feature within/between {row['feature_within']}/{row['feature_between']}, {row['wall_s']} s")  # fmt: skip
    return row


def run(args) -> None:
    targets = []
    for name, label in zip(args.generator, args.label or [None] * len(args.generator)):
        from openvino_synthcalib.shipped import GENERATORS

        path = generator_file(name)
        targets.append((path, label or (name if name in GENERATORS else path.stem), weights_sha256(path)))
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / f"{NAME}.csv"
    done = done_keys(csv_path, KEY)
    todo = [t for t in targets if (t[1], t[2], str(args.per_class), str(args.seed)) not in done]
    for path, label, sha in targets:
        if (path, label, sha) not in todo:
            log(f"  {label}@{sha} K={args.per_class} seed={args.seed}: in {shown(csv_path)} already, skipped")
    if not todo:
        return
    lite = Lite0(args.threads)
    started = time.perf_counter()
    real = real_reference(lite, args.pairs, args.seed)
    log(f"  real sample: {real} ({time.perf_counter() - started:.0f} s)")
    recorded_now = False
    for path, label, sha in todo:
        row = measure(args, path, label, sha, lite, real)
        with appending(csv_path, FIELDS) as (_, writer):
            writer.writerow(row)
        if not recorded_now:
            record(args.out, NAME)
            recorded_now = True


# ----------------------------------------------------------------------------- report


def summarise(out: Path) -> str:
    csv_path = out / f"{NAME}.csv"
    rows = list(csv.DictReader(open(csv_path))) if csv_path.exists() else []
    lines = [
        "# ImageNet generator quality: EfficientNet-Lite0 on the generator's images",
        "",
        f"Produced by these commands (each appends one row per generator to `{NAME}.csv`; a rerun skips rows"
        " already there):",
        "",
        *[f"    {c}" for c in recorded(out, NAME)],
        "",
        "Images: K per class for all 1,000 classes (1000 x K items), made by the product's own stream as calibration"
        f" sees them: `synthcalib.Dataset` of `generator:FILE` with the preset `{PRESET}` (RGB in [-1, 1], resized to"
        f" {SIZE} px, EfficientNet-Lite0's input), the seed in the table; the class-balanced schedule gives every"
        " class K items. The generator runs at f32. Classifier: FP32 EfficientNet-Lite0"
        " (`../shared/models/imagenet/efficientnet_lite0.onnx`), OpenVINO CPU at f32 inference precision. Weights:"
        " the start of the sha256 of the generator's weights file.",
        "",
        "## Class consistency",
        "",
        "Top-1 / top-5: share of images whose Lite0 top-1 class is (top-5 classes include) the conditioning class."
        " Classes recognised: share of the classes whose class Lite0 names (top-1) for at least one of its K images."
        " Distinct predicted: how many different classes Lite0's top-1 takes over all images. Mean max prob: mean of"
        f" Lite0's largest softmax probability. Max prob >= {CONFIDENT}: share of images where it is at least"
        f" {CONFIDENT}. Wall: seconds to generate and classify the images and compute the measures (one inference"
        " thread).",
        "",
        "| generator | weights | K | seed | images | top-1 % | top-5 % | classes recognised % | distinct predicted |"
        f" mean max prob | max prob >= {CONFIDENT} % | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['generator']} | {r['weights_sha256']} | {r['per_class']} | {r['seed']} | {int(r['images']):,} |"
            f" {float(r['top1']):.2f} | {float(r['top5']):.2f} | {float(r['classes_recognised']):.2f} |"
            f" {r['distinct_predicted']} | {float(r['mean_max_prob']):.3f} | {float(r['confident_share']):.2f} |"
            f" {float(r['wall_s']):.0f} |"
        )
    node = rows[0]["feature_node"] if rows else FEATURE_NODE
    lines += [
        "",
        "## Diversity",
        "",
        f"Features: Lite0's penultimate features (`{node}`, the {FEATURE_DIM} global-average-pooled ReLU6"
        " activations that the classifier `/_fc/Gemm` takes), added as a model output; distance = 1 - cosine"
        " similarity. Within class: per class, the mean distance over the pairs of its K images, then the mean over"
        " classes (least diverse: the class with the lowest mean, and its value). Between classes: the mean over"
        " random pairs of images of different classes (`pairs` in the CSV). Real: the shared ImageNet sample"
        " images (one per even class, short side 256, centre crop 224), the mean over all pairs (all of different"
        " classes); Lite0's top-1 on them in the last column. Pixels: mean absolute difference of the [-1, 1] images"
        " (range 0 to 2; identical images give 0), within class and between classes as above, the real images over"
        " random pairs.",
        "",
        "| generator | weights | K | feature within | least diverse class (feature) | feature between |"
        " within / between | real between | pixel within | least diverse class (pixel) | pixel between |"
        " real pixel between | real top-1 % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fw, fb = float(r["feature_within"]), float(r["feature_between"])
        lines.append(
            f"| {r['generator']} | {r['weights_sha256']} | {r['per_class']} | {fw:.3f} |"
            f" {r['feature_within_min_class']} ({float(r['feature_within_min']):.3f}) | {fb:.3f} | {fw / fb:.2f} |"
            f" {float(r['real_feature_between']):.3f} | {float(r['pixel_within']):.3f} |"
            f" {r['pixel_within_min_class']} ({float(r['pixel_within_min']):.3f}) | {float(r['pixel_between']):.3f} |"
            f" {float(r['real_pixel_between']):.3f} | {float(r['real_top1']):.1f} |"
        )
    text = "\n".join(lines).rstrip() + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{NAME}.md").write_text(text)
    return text


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generator", nargs="+", default=["imagenet"], help="shipped names or IR/ONNX files")
    p.add_argument("--label", nargs="*", default=None, help="a name for each --generator (default: name or file stem)")
    p.add_argument("--per-class", type=int, default=4, help="images per class (K >= 2)")
    p.add_argument("--seed", type=int, default=0, help="the stream's seed")
    p.add_argument("--pairs", type=int, default=5000, help="random pairs for the between-class references")
    p.add_argument("--batch", type=int, default=32, help="generator and classifier batch")
    p.add_argument("--threads", type=int, default=1, help="OpenVINO inference threads")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if not args.report_only:
        if args.per_class < 2:
            p.error("--per-class: expected >= 2 (pairs within a class)")
        if args.label is not None and len(args.label) != len(args.generator):
            p.error(f"--label: {len(args.label)} labels for {len(args.generator)} generators")
        args.run_id = time.strftime("%Y%m%dT%H%M%S")
        run(args)
    print(summarise(args.out))


if __name__ == "__main__":
    main()
