"""Which quantizers carry the excess flips of synthetic calibration? Activation ranges swapped by group.

Issue 28, item 1 (diagnose before changing). Each model is calibrated twice with the product's own
API (``openvino_synthcalib.quantization.quantize``, recipe ``nncf`` = NNCF's defaults, 300 items,
the model's preprocessing preset, the quality check off): on ``real`` images (300 of the 500 shared
sample images, ``images:`` with the class list and ``crop=center``, as ``imagenet.py`` builds it)
and on ``generator:imagenet`` (the shipped generator). Both INT8 models have the same graph; their
FakeQuantize nodes differ only in the range constants (input_low/high, output_low/high). A hybrid
is one of them with the other's four range constants copied into one group of FakeQuantize nodes:

* ``syn+real[G]``: the synthetic-calibrated model with the real ranges in group G (how much of the
  excess flips G's synthetic ranges cause), and ``real+syn[G]``: the reverse (how much they bring).
* Groups, by position in the graph's topological order: ``stem`` (the activation quantizers feeding
  the first two convolutions: the image and the stem convolution's output), ``stage@R`` (the other
  activation quantizers whose output is R x R pixels: the network's stages, separated by its strided
  convolutions or max-pools), ``last-conv`` (the activation quantizers feeding the last convolution),
  ``head`` (those after the last spatial layer: the classifier's MatMul / Gemm input after global
  pooling), ``top-k`` (the k activation quantizers of largest |log(width_syn / width_real)|, k = 5, 10,
  20), ``block@N`` (only on request, ``--groups block@14``: the activation quantizers named
  ``_blocks.N/``, EfficientNet's block index), ``weights`` (the weight quantizers NNCF kept as
  FakeQuantize nodes; it folds the others into int8 constants, which are compared instead: their
  ranges come from the weights alone, so this swap should change nothing) and ``all`` (every
  quantizer: the sanity row, which must give exactly the other model's predictions, i.e. nothing but
  the ranges differs, fast bias correction included).
* Flip rate: share of views whose INT8 top-1 differs from the FP32 model's (OpenVINO CPU, f32
  inference precision), on the six views of the 500 shared sample images that ``imagenet.py``
  measures on (centre crop, its mirror, four corners; the real calibration draws 300 of these images,
  as in ``imagenet.py``).
* Range statistics per group: width = input_high - input_low of each activation quantizer (the
  geometric mean over channels where a range is per channel); the median ratio syn / real, the share
  of quantizers whose synthetic range is narrower, the smallest and largest ratio.

    python benchmarks/range_swap.py --threads 1                            # Lite0 and Tiny Darknet, seed 0
    python benchmarks/range_swap.py --threads 1 --seeds 1 2                # more seeds
    python benchmarks/range_swap.py --threads 1 --models lite0 --groups block@14 block@15  # one stage, by block
    python benchmarks/range_swap.py --report-only                          # rebuild range_swap.md from the CSV
    python benchmarks/range_swap.py --quick --out /tmp/range_swap_try      # minutes: 50 images, 32 items, few groups

Rows are appended to ``OUT/range_swap.csv`` as they finish (a rerun skips the rows already there);
``OUT/range_swap.meta.json`` keeps the FP32 references, the weight check and the calibration times.
The INT8 models, views and FP32 predictions are cached under ``--cache`` (``runs/range_swap``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
from commands import record, recorded
from paths import REPO, RESULTS, SHARED, shown
from rows import appending, done_keys, load_meta, save_meta
from testset import IMAGENET_CLASSES as CLASSES_TSV
from testset import IMAGENET_MODELS, VIEWS, cached_views, limit_threads, sample_images
from testset import IMAGENET_SAMPLE as SAMPLE

NAME = "range_swap"
CACHE = REPO / "runs" / NAME
MODELS = IMAGENET_MODELS  # name: (file, preset, mean, std)
SOURCES = {
    "real": f"images:{SAMPLE / 'images'}?class_list={CLASSES_TSV}&crop=center",
    "synthetic": "generator:imagenet",
}
TOPK = (5, 10, 20)
BLOCK = re.compile(r"_blocks\.(\d+)/")  # EfficientNet's block index in the node names
QUICK_GROUPS = ("stem", "head", "top-5", "weights", "all")
DIRECTIONS = ("syn+real", "real+syn")
KEY = ("model", "seed", "samples", "images", "views", "direction", "group")
FIELDS = [
    *KEY,
    "quantizers",
    "flip_rate",
    "flips",
    "same_as_real",
    "same_as_synthetic",
    "median_width_ratio",
    "share_narrower",
    "min_width_ratio",
    "max_width_ratio",
    "run_id",
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def compile_f32(model):
    from openvino_synthcalib import models

    return models.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


# ----------------------------------------------------------------------------- views and references


def eval_views(cache: Path, size: int, limit: int | None) -> np.ndarray:
    """uint8 [N, len(VIEWS), 3, size, size] (a memory map of the cache) of the sample images."""
    files, _ = sample_images(limit)
    return cached_views(cache / f"views-{size}-{len(files)}.npy", files, size)


def top1(compiled, views: np.ndarray, mean: float, std: float, batch: int = 50) -> np.ndarray:
    """Top-1 class [N, V] of every view, scaled to [0, 1] then (x - mean) / std."""
    from openvino_synthcalib.inference import predict

    n, v = views.shape[:2]
    flat = views.reshape(n * v, *views.shape[2:])
    batches = ((flat[i : i + batch].astype(np.float32) / 255.0 - mean) / std for i in range(0, len(flat), batch))
    return np.concatenate(list(predict(compiled, batches))).reshape(n, v)


# ----------------------------------------------------------------------------- quantizers


def _const(node):
    """The Constant behind a node (through a Convert), or None."""
    if node.get_type_name() == "Convert":
        node = node.input_value(0).get_node()
    return node if node.get_type_name() == "Constant" else None


def quantizers(model) -> list[dict]:
    """The FakeQuantize nodes in topological order: name, node, weight or activation, the spatial
    size of its output (None when not 4-D), the four range constants (float64 arrays) and what it feeds."""
    out = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "FakeQuantize":
            continue
        shape = op.get_output_partial_shape(0)
        spatial = shape[2].get_length() if shape.rank.get_length() == 4 and shape[2].is_static else None
        consumers = sorted({t.get_node().get_type_name() for t in op.output(0).get_target_inputs()})
        out.append(
            dict(
                name=op.get_friendly_name(),
                node=op,
                weight="fq_weights" in op.get_friendly_name() or _const(op.input_value(0).get_node()) is not None,
                spatial=spatial,
                consumers=consumers,
                ranges=[np.asarray(_const(op.input_value(i).get_node()).get_data(), np.float64) for i in range(1, 5)],
            )
        )
    return out


def constants_diff(a, b) -> float:
    """Largest |difference| between the two models' constants other than the quantizers' ranges (the
    weights, compressed to int8 with their scales where NNCF folded a weight quantizer)."""

    def consts(model):
        ranges = {op.input_value(i).get_node().get_friendly_name() for op in model.get_ordered_ops()
                  if op.get_type_name() == "FakeQuantize" for i in range(1, 5)}  # fmt: skip
        return [
            op
            for op in model.get_ordered_ops()
            if op.get_type_name() == "Constant" and op.get_friendly_name() not in ranges
        ]

    ca, cb = consts(a), consts(b)
    if len(ca) != len(cb):
        return math.inf
    diff = 0.0
    for x, y in zip(ca, cb):
        da, db = np.asarray(x.get_data(), np.float64), np.asarray(y.get_data(), np.float64)
        if da.shape != db.shape:
            return math.inf
        if da.size:
            diff = max(diff, float(np.abs(da - db).max()))
    return diff


def width_log_ratio(syn: dict, real: dict) -> float:
    """log(width_syn / width_real) of a quantizer (mean over channels of a per-channel range)."""
    ws = np.maximum(syn["ranges"][1] - syn["ranges"][0], 1e-12)
    wr = np.maximum(real["ranges"][1] - real["ranges"][0], 1e-12)
    return float(np.mean(np.log(ws / wr)))


def groups(model, syn: list[dict], real: list[dict], wanted: list[str] | None) -> dict[str, list[str]]:
    """Group name -> quantizer names (see the module docstring)."""
    convs = [op for op in model.get_ordered_ops() if op.get_type_name() in ("Convolution", "GroupConvolution")]
    order = {op.get_friendly_name(): i for i, op in enumerate(model.get_ordered_ops())}
    acts = [q for q in syn if not q["weight"]]

    def feeding(conv) -> set[str]:
        names = set()
        for value in conv.input_values()[:1]:
            node = value.get_node()
            while node.get_type_name() not in ("FakeQuantize", "Parameter") and node.get_input_size():
                node = node.input_value(0).get_node()  # through Convert / Reshape / Pad...
            if node.get_type_name() == "FakeQuantize":
                names.add(node.get_friendly_name())
        return names

    out: dict[str, list[str]] = {}
    stem = feeding(convs[0]) | feeding(convs[1])
    stem |= {q["name"] for q in acts if order[q["name"]] < order[convs[1].get_friendly_name()]}
    out["stem"] = [q["name"] for q in acts if q["name"] in stem]
    last_spatial = max(order[c.get_friendly_name()] for c in convs)
    for size in sorted({q["spatial"] for q in acts if (q["spatial"] or 0) > 1}, reverse=True):
        members = [q["name"] for q in acts if q["spatial"] == size and q["name"] not in stem]
        if members:
            out[f"stage@{size}"] = members
    blocks: dict[int, list[str]] = {}
    for q in acts:
        if (m := BLOCK.search(q["name"])) and q["name"] not in stem:
            blocks.setdefault(int(m.group(1)), []).append(q["name"])
    if wanted:  # only on request (a finer cut of a stage that carries flips)
        out.update({f"block@{b}": m for b, m in sorted(blocks.items())})
    out["last-conv"] = sorted(feeding(convs[-1]), key=order.get)
    out["head"] = [q["name"] for q in acts if (q["spatial"] in (None, 1)) and order[q["name"]] > last_spatial]
    ranked = sorted(acts, key=lambda q: -abs(width_log_ratio(q, real_by_name(real)[q["name"]])))
    for k in TOPK:
        out[f"top-{k}"] = [q["name"] for q in ranked[:k]]
    out["weights"] = [q["name"] for q in syn if q["weight"]]
    out["all"] = [q["name"] for q in syn]
    out = {g: m for g, m in out.items() if m}
    if wanted:
        out = {g: m for g, m in out.items() if g in wanted or any(g.startswith(w) for w in wanted if w.endswith("@"))}
    return out


def real_by_name(qs: list[dict]) -> dict[str, dict]:
    return {q["name"]: q for q in qs}


def hybrid(path: Path, donor: list[dict], members: list[str]):
    """The INT8 model at ``path`` with the range constants of ``members`` taken from ``donor``."""
    import openvino as ov
    from openvino import opset13 as ops

    model = ov.Core().read_model(str(path))
    by_name = real_by_name(donor)
    wanted = set(members)
    for op in model.get_ordered_ops():
        if op.get_type_name() == "FakeQuantize" and op.get_friendly_name() in wanted:
            for i, value in enumerate(by_name[op.get_friendly_name()]["ranges"], start=1):
                target = op.input_value(i)
                const = ops.constant(value.astype(target.get_element_type().to_dtype()))
                op.input(i).replace_source_output(const.output(0))
            wanted.discard(op.get_friendly_name())
    if wanted:
        raise SystemExit(f"{path.name}: quantizers not found: {sorted(wanted)[:5]}")
    return model


def range_stats(syn: list[dict], real: list[dict], members: list[str]) -> dict:
    by_syn, by_real = real_by_name(syn), real_by_name(real)
    acts = [m for m in members if not by_syn[m]["weight"]]
    if not acts:
        return dict(median_width_ratio="", share_narrower="", min_width_ratio="", max_width_ratio="")
    ratios = np.exp([width_log_ratio(by_syn[m], by_real[m]) for m in acts])
    return dict(
        median_width_ratio=round(float(np.median(ratios)), 3),
        share_narrower=round(100 * float((ratios < 1).mean()), 1),
        min_width_ratio=round(float(ratios.min()), 3),
        max_width_ratio=round(float(ratios.max()), 3),
    )


# ----------------------------------------------------------------------------- runs


def calibrated(args, name: str, source: str, seed: int, meta: dict) -> Path:
    """The INT8 model of (model, source, seed), quantized with the product's API once and cached as IR."""
    import openvino as ov

    from openvino_synthcalib.quantization import quantize

    path, preset, _, _ = MODELS[name]
    xml = args.cache / f"int8-{name}-{source}-n{args.num_samples}-s{seed}.xml"
    if xml.exists():
        return xml
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        report = quantize(
            str(path), SOURCES[source], num_samples=args.num_samples, seed=seed, transform=preset, recipe="nncf",
            check={"samples": 0},
        )  # fmt: skip
    wall = time.perf_counter() - started
    ov.save_model(report["quantized_model"], str(xml), compress_to_fp16=False)
    meta.setdefault("calibration", {})[f"{name}/{source}/n{args.num_samples}/s{seed}"] = {
        "spec": SOURCES[source].replace(str(SHARED), "../shared"),
        "preset": preset,
        "quantize_s": round(wall, 1),
        "threads": args.threads,
    }
    log(f"  {name} {source} seed={seed}: quantized in {wall:.0f} s -> {xml}")
    return xml


def run_model(args, name: str, meta: dict) -> None:
    import openvino as ov

    path, preset, mean, std = MODELS[name]
    views = eval_views(args.cache, 224, args.limit_images)
    n_images = len(views)
    fp32_cache = args.cache / f"fp32-{name}-{n_images}.npy"
    if fp32_cache.exists():
        fp32 = np.load(fp32_cache)
    else:
        started = time.perf_counter()
        fp32 = top1(compile_f32(str(path)), views, mean, std)
        np.save(fp32_cache, fp32)
        log(f"{name}: FP32 predictions on {fp32.size} views ({time.perf_counter() - started:.0f} s)")
    _, labels = sample_images(args.limit_images)
    meta.setdefault("models", {})[name] = {
        "file": shown(path),
        "preset": preset,
        "images": n_images,
        "fp32_top1_centre": round(100 * float((fp32[:, 0] == labels).mean()), 2),
    }
    csv_path = args.out / f"{NAME}.csv"
    done = done_keys(csv_path, KEY)
    for seed in args.seeds:
        base = (name, str(seed), str(args.num_samples), str(n_images), "+".join(VIEWS))
        xml = {s: calibrated(args, name, s, seed, meta) for s in SOURCES}
        save_meta(args.out, NAME, meta)
        core = ov.Core()
        qs = {s: quantizers(core.read_model(str(x))) for s, x in xml.items()}
        if [q["name"] for q in qs["real"]] != [q["name"] for q in qs["synthetic"]]:
            raise SystemExit(f"{name} seed {seed}: the two INT8 models have different quantizers")
        weights_diff = max(
            (float(np.abs(a - b).max()) for qa, qb in zip(qs["real"], qs["synthetic"]) if qa["weight"]
             for a, b in zip(qa["ranges"], qb["ranges"])),
            default=0.0,
        )  # fmt: skip
        model = core.read_model(str(xml["synthetic"]))
        weights_diff = max(weights_diff, constants_diff(model, core.read_model(str(xml["real"]))))
        members = groups(model, qs["synthetic"], qs["real"], args.groups)
        info = meta.setdefault("quantizers", {}).setdefault(f"{name}/s{seed}", {})
        info.update(
            weights=sum(q["weight"] for q in qs["real"]),
            activations=sum(not q["weight"] for q in qs["real"]),
            weights_max_abs_range_diff=weights_diff,
            groups={**info.get("groups", {}), **{g: len(m) for g, m in members.items()}},
        )
        info["top-5"] = groups(model, qs["synthetic"], qs["real"], ["top-5"])["top-5"]
        save_meta(args.out, NAME, meta)
        preds: dict[str, np.ndarray] = {}
        for s in SOURCES:
            preds[s] = top1(compile_f32(str(xml[s])), views, mean, std)
        for s in SOURCES:
            key = (*base, "base", s)
            if key not in done:
                write_row(args, csv_path, key, len(qs[s]), preds[s], fp32, preds, {})
                done.add(key)
        for group, names in members.items():
            stats = range_stats(qs["synthetic"], qs["real"], names)
            for direction in args.directions:
                key = (*base, direction, group)
                if key in done:
                    continue
                started = time.perf_counter()
                target, donor = ("synthetic", "real") if direction == "syn+real" else ("real", "synthetic")
                pred = top1(compile_f32(hybrid(xml[target], qs[donor], names)), views, mean, std)
                row = write_row(args, csv_path, key, len(names), pred, fp32, preds, stats)
                done.add(key)
                log(f"  {name} s{seed} {direction}[{group}] ({len(names)} FQ): flips {row['flip_rate']}%"
                    f" ({time.perf_counter() - started:.0f} s)")  # fmt: skip


def write_row(args, csv_path: Path, key: tuple, count: int, pred, fp32, preds, stats: dict) -> dict:
    row = dict(zip(KEY, key))
    row.update(
        quantizers=count,
        flip_rate=round(100 * float((pred != fp32).mean()), 3),
        flips=int((pred != fp32).sum()),
        same_as_real="yes" if np.array_equal(pred, preds["real"]) else "no",
        same_as_synthetic="yes" if np.array_equal(pred, preds["synthetic"]) else "no",
        run_id=args.run_id,
        **{k: stats.get(k, "") for k in ("median_width_ratio", "share_narrower", "min_width_ratio", "max_width_ratio")},
    )
    with appending(csv_path, FIELDS) as (_, writer):
        writer.writerow(row)
    return row


# ----------------------------------------------------------------------------- report


def summarise(out: Path) -> str:
    csv_path = out / f"{NAME}.csv"
    rows = list(csv.DictReader(open(csv_path))) if csv_path.exists() else []
    meta = load_meta(out, NAME)
    lines = [
        "# Which quantizers carry the excess flips of synthetic calibration? Ranges swapped by group",
        "",
        "Issue 28, item 1. Produced by these commands (each appends its rows to `range_swap.csv`; a rerun skips"
        " rows already there; `--threads 1` runs every OpenVINO CPU compile on one inference thread):",
        "",
        *[f"    {c}" for c in recorded(out, NAME)],
        "",
        "**What was measured.** Each model is calibrated twice with the product's API (`synthcalib.quantize`,"
        " recipe `nncf` = NNCF's defaults, the model's preprocessing preset, the quality check off): `real` = 300"
        " of the 500 shared sample images (`images:` with `classes.tsv`, `crop=center`, as `imagenet.py`), and"
        " `synthetic` = the shipped `generator:imagenet`. The two INT8 models have the same graph and differ only"
        " in the FakeQuantize range constants. A hybrid `syn+real[G]` is the synthetic-calibrated model with the"
        " real model's four range constants (input/output low/high) copied into the quantizers of group G;"
        " `real+syn[G]` the reverse. **Flip rate**: share of views whose INT8 top-1 differs from the FP32 model's"
        " (OpenVINO CPU, f32 inference precision), on 6 views (centre crop, mirror, four corners, framed as"
        " `imagenet.py` frames them) of the shared sample images; as in `imagenet.py`, all 500 images, including"
        " the 300 the real calibration draws from (which favours `real`).",
        "",
        "**Groups** (topological order of the graph): `stem` = the activation quantizers feeding the first two"
        " convolutions (the image and the stem convolution's output); `stage@R` = the other activation quantizers"
        " whose output is R x R pixels (a stage: separated by strided convolutions or max-pools); `last-conv` = the"
        " activation quantizers feeding the last convolution; `head` = those after the last convolution (the"
        " classifier's input after global pooling); `top-k` = the k activation quantizers with the largest"
        " |log(width_syn / width_real)|; `block@N` (on request, EfficientNet only) = the activation quantizers"
        " named `_blocks.N/` outside the stem; `weights`, `all` = every weight quantizer NNCF kept as a"
        " FakeQuantize (it folds the others into int8 constants) / every quantizer."
        " **Excess recovered** (`syn+real`) = (flips_syn - flips_hybrid) / (flips_syn - flips_real); **excess"
        " brought** (`real+syn`) = (flips_hybrid - flips_real) / (flips_syn - flips_real); shown where the excess is"
        " at least 0.3 points. **Range ratio**: width = input_high - input_low of an activation quantizer"
        " (geometric mean over channels if per channel); the median over the group's quantizers of width_syn /"
        " width_real, and the share of them where the synthetic range is narrower.",
        "",
    ]
    for cfg in dict.fromkeys((r["model"], r["samples"], r["images"], r["views"]) for r in rows):
        lines += _table(rows, cfg, meta)
    lines += _says(rows)
    text = "\n".join(lines).rstrip() + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{NAME}.md").write_text(text)
    return text


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _cell(values: list[float], digits: int = 2) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def _group_order(group: str) -> tuple[int, int]:
    """stem, stages (largest first), blocks, last-conv, head, top-k, weights, all."""
    kind, _, n = group.partition("@") if "@" in group else group.partition("-")
    rank = ["stem", "stage", "block", "last", "head", "top", "weights", "all"]
    number = int(n) if n.isdigit() else 0
    return (rank.index(kind) if kind in rank else len(rank), -number if kind == "stage" else number)


def _table(rows: list[dict], cfg: tuple[str, ...], meta: dict) -> list[str]:
    model, samples, images, views = cfg
    sel = [r for r in rows if (r["model"], r["samples"], r["images"], r["views"]) == cfg]
    seeds = sorted({int(r["seed"]) for r in sel})
    base = {s: {r["seed"]: float(r["flip_rate"]) for r in sel if r["direction"] == "base" and r["group"] == s}
            for s in ("real", "synthetic")}  # fmt: skip
    info = meta.get("models", {}).get(model, {})
    q = meta.get("quantizers", {}).get(f"{model}/s{seeds[0]}", {})
    weights = [meta.get("quantizers", {}).get(f"{model}/s{s}", {}).get("weights_max_abs_range_diff") for s in seeds]
    lines = [
        f"## {model}: {samples} calibration items, seeds {', '.join(map(str, seeds))}, {images} images x"
        f" {len(views.split('+'))} views",
        "",
        "A cell measured on fewer seeds than the table names says which in brackets.",
        "",
        f"FP32 top-1 (centre views, against the labels): {info.get('fp32_top1_centre', '–')}%. Preset"
        f" `{info.get('preset', '?')}`. {q.get('activations', '?')} activation and {q.get('weights', '?')} weight"
        f" quantizers; largest |difference| between the two models' constants other than the activation ranges"
        " (weights, biases, which NNCF's fast bias correction could have changed, weight-quantizer ranges): "
        + ", ".join("–" if w is None else f"{w:.3g}" for w in weights)
        + " (by seed). Flip rates in % (mean ± sd over seeds when several); base: real"
        f" {_cell(list(base['real'].values()))}, synthetic {_cell(list(base['synthetic'].values()))}.",
        "",
        "| group | quantizers | syn+real flip % | excess recovered | real+syn flip % | excess brought |"
        " median width syn/real | synthetic narrower | sanity |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    order = sorted(dict.fromkeys(r["group"] for r in sel if r["direction"] != "base"), key=_group_order)
    for group in order:
        g = [r for r in sel if r["group"] == group and r["direction"] != "base"]
        cells, sanity = [], []
        for direction in DIRECTIONS:
            d = [r for r in g if r["direction"] == direction]
            flips = [float(r["flip_rate"]) for r in d]
            shares = []
            for r in d:
                excess = base["synthetic"].get(r["seed"], math.nan) - base["real"].get(r["seed"], math.nan)
                if excess >= 0.3:
                    f = float(r["flip_rate"])
                    shares.append(100 * ((base["synthetic"][r["seed"]] - f) if direction == "syn+real"
                                         else (f - base["real"][r["seed"]])) / excess)  # fmt: skip
            mine = sorted(int(r["seed"]) for r in d)
            only = f" (seed {', '.join(map(str, mine))})" if d and mine != seeds else ""
            cells += [_cell(flips) + only, _cell(shares, 0) + ("%" if shares else "")]
            same = "same_as_real" if direction == "syn+real" else "same_as_synthetic"
            if group == "all" and d:
                sanity.append(f"{direction}: {'identical' if all(r[same] == 'yes' for r in d) else 'DIFFERENT'}"
                              f" to {'real' if direction == 'syn+real' else 'synthetic'}")  # fmt: skip
            if group == "weights" and d:
                other = "same_as_synthetic" if direction == "syn+real" else "same_as_real"
                sanity.append(f"{direction}: {'unchanged' if all(r[other] == 'yes' for r in d) else 'CHANGED'}")
        ratio = [float(r["median_width_ratio"]) for r in g if r["median_width_ratio"] and r["direction"] == "syn+real"]
        narrow = [float(r["share_narrower"]) for r in g if r["share_narrower"] and r["direction"] == "syn+real"]
        lines.append(
            f"| {group} | {g[0]['quantizers']} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} |"
            f" {_cell(ratio, 3)} | {_cell(narrow, 0) + ('%' if narrow else '')} | {'; '.join(sanity)} |"
        )
    top5 = q.get("top-5")
    if top5:
        lines += ["", f"Top-5 quantizers by |log width ratio| (seed {seeds[0]}): " + ", ".join(f"`{n}`" for n in top5)]
    lines.append("")
    return lines


EARLY = ("stem", "stage@112", "stage@56")


def _late(group: str, stages: list[str]) -> bool:
    """The last spatial stage and after (last convolution, head)."""
    return group in ("last-conv", "head") or (bool(stages) and group == stages[-1])


def _says(rows: list[dict]) -> list[str]:
    """The reading, from the rows: where the excess flips sit, which way the synthetic ranges lean there,
    and what that points the generator's losses at."""
    out = [t for model in dict.fromkeys(r["model"] for r in rows) if (t := _model_says(rows, model))]
    return ["## What it says", "", *out, ""] if out else []


def _model_says(rows: list[dict], model: str) -> str:
    """One model's reading (empty without its base rows)."""
    sel = [r for r in rows if r["model"] == model]

    def flips(direction: str, group: str) -> float:
        return _mean([float(r["flip_rate"]) for r in sel if r["direction"] == direction and r["group"] == group])

    def ratio(group: str) -> tuple[float, float]:
        g = [r for r in sel if r["group"] == group and r["direction"] == "syn+real" and r["median_width_ratio"]]
        return _mean([float(r["median_width_ratio"]) for r in g]), _mean([float(r["share_narrower"]) for r in g])

    base = {k: {r["seed"]: float(r["flip_rate"]) for r in sel if r["direction"] == "base" and r["group"] == k}
            for k in ("real", "synthetic")}  # fmt: skip

    def share(direction: str, group: str) -> float:
        """Mean over seeds of the share of the seed's excess recovered (syn+real) or brought (real+syn)."""
        out = []
        for r in sel:
            if r["direction"] == direction and r["group"] == group and r["seed"] in base["real"]:
                s, q, f = base["synthetic"][r["seed"]], base["real"][r["seed"]], float(r["flip_rate"])
                out.append(((s - f) if direction == "syn+real" else (f - q)) / (s - q))
        return _mean(out)

    real, syn = flips("base", "real"), flips("base", "synthetic")
    groups = list(dict.fromkeys(r["group"] for r in sel if r["direction"] != "base"))
    stages = [g for g in groups if g.startswith("stage@")]
    position = [g for g in groups if g == "stem" or g in stages or g in ("last-conv", "head")]
    if math.isnan(real) or math.isnan(syn) or not position:
        return ""
    excess = syn - real
    whole, narrower = ratio("all")
    text = (
        f"- **{model}**: {syn:.2f}% flips calibrated on the generator against {real:.2f}% on real images"
        f" (excess {excess:+.2f} points; means over seeds, shares of the excess per seed, then averaged); over all activation quantizers the synthetic range is narrower in"
        f" {narrower:.0f}% of them (median width ratio {whole:.3f})."
    )
    if excess >= 0.3:
        gain = {g: share("syn+real", g) for g in position}
        brought = {g: share("real+syn", g) for g in position}
        ranked = sorted(position, key=lambda g: -gain[g])
        top = ranked[:2]
        text += (
            " Real ranges recover most of the excess in "
            + " and ".join(
                f"`{g}` ({100 * gain[g]:.0f}%; its synthetic ranges bring {100 * brought[g]:.0f}% into the real"
                f" model; median width ratio {ratio(g)[0]:.3f}, narrower in {ratio(g)[1]:.0f}%)"
                for g in top
            )
            + "."
        )
        if "top-5" in groups:
            text += (
                f" The 5 quantizers of largest range difference alone (`top-5`, median width ratio"
                f" {ratio('top-5')[0]:.3f}) recover {100 * share('syn+real', 'top-5'):.0f}%."
            )
        blocks = sorted((g for g in groups if g.startswith("block@")), key=_group_order)
        if blocks:
            text += (
                " By block, real ranges recover: "
                + ", ".join(f"`{g}` {100 * share('syn+real', g):.0f}%" for g in blocks)
                + "."
            )
        views = int(sel[0]["images"]) * len(sel[0]["views"].split("+"))
        text += (
            f" (One flip is {100 / views:.3f} points over the {views} views of a seed, so the excess is about"
            f" {round(excess * views / 100)} flips and a share moves by {100 * 100 / views / excess:.0f}% per flip.)"
        )
        first = ranked[0]
        if _late(first, stages):
            others = ", ".join(f"`{g}` {100 * gain[g]:.0f}%" for g in ("stem", "head") if g in gain and g != first)
            text += (
                f" The excess sits in the last layers (`{first}`; against {others}): a loss on the generator's late"
                " features (the statistics of the last blocks' activations, or an output / last-layer term) is"
                " where to look, rather than input statistics or augmentation."
            )
        elif first in EARLY:
            text += (
                " The excess sits in the early layers: the generator's image statistics (colour, contrast,"
                " texture) or augmentation are where to look."
            )
        else:
            text += " The excess sits in the middle stages: the middle blocks' statistics terms are where to look."
        if ratio(first)[0] < 1:
            text += (
                f" In `{first}` the synthetic ranges are mostly narrower than real ones: the generator under-drives"
                " the tails of those activations, so a term on their extremes (not only mean and variance) is the"
                " candidate."
            )
        else:
            text += (
                f" In `{first}` the synthetic ranges are not narrower than real ones (median ratio >= 1): the"
                " generator over-drives those activations; a term that bounds their extremes is the candidate."
            )
    else:
        moves = [abs(flips(d, g) - (syn if d == "syn+real" else real)) for g in position for d in DIRECTIONS]
        moves = [m for m in moves if not math.isnan(m)]
        text += (
            " No excess to attribute: the generator calibrates this model as well as the real images; the"
            f" group swaps move its flips by at most {max(moves):.2f} points either way."
        )
    return text


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=["lite0", "darknet_tiny"], choices=sorted(MODELS))
    p.add_argument("--seeds", nargs="*", type=int, default=[0])
    p.add_argument("--num-samples", type=int, default=300)
    p.add_argument("--groups", nargs="*", default=None, help="a subset (default all; 'stage@' for every stage)")
    p.add_argument("--directions", nargs="*", default=list(DIRECTIONS), choices=DIRECTIONS)
    p.add_argument("--limit-images", type=int, default=None, help="evaluate an evenly spaced subset")
    p.add_argument("--quick", action="store_true", help="50 images, 32 items, groups " + " ".join(QUICK_GROUPS))
    p.add_argument("--threads", type=int, default=None, help="INFERENCE_NUM_THREADS of every CPU compile")
    p.add_argument("--cache", type=Path, default=CACHE, help="views, FP32 predictions, the INT8 models")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if not args.report_only:
        if args.quick:
            args.limit_images = args.limit_images or 50
            args.num_samples = 32
            args.groups = args.groups or list(QUICK_GROUPS)
        limit_threads(args.threads)
        args.run_id = time.strftime("%Y%m%dT%H%M%S")
        args.cache.mkdir(parents=True, exist_ok=True)
        record(args.out, NAME)
        meta = load_meta(args.out, NAME)
        for name in args.models:
            run_model(args, name, meta)
            save_meta(args.out, NAME, meta)
    print(summarise(args.out))


if __name__ == "__main__":
    main()
