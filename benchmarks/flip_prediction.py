"""Does the data-free check predict real flips? Synthetic against real flip rate over many INT8 models.

After quantizing, the product checks the INT8 model against the FP32 model on fresh synthetic items
(``openvino_synthcalib.quality``: a generator at seed + 2000, every class) and predicts the real
flip rate from a relation fitted here. This script makes many INT8 models (models x calibration
sources x recipes), measures for each the real flip rate and the check's statistics, fits
``quality.fit`` on them for each candidate statistic (``flip_rate``, ``confident_flip_rate``,
``mean_kl``), reports how well each predicts held-out models, picks the one the product uses and
writes the relation the product ships (``openvino_synthcalib/data/flip_relation.json``).

* Domains. ``cifar10``: the six shared CIFAR-10 classifiers (``--cifar-models``: names or files,
  ``--preset``), calibrated on ``real`` (300 training images), ``student`` (the shipped
  ``generator:cifar10``), ``teacher`` (the shared cGAN teacher), ``gaussian``, ``uniform``, ``fractal``;
  real flips on the 10,000 test images. ``imagenet``: EfficientNet-Lite0, Tiny Darknet and
  MobileNetV1 0.75 (``../shared/models/imagenet``), calibrated on ``real`` (300 of the 500 shared
  sample images), ``generator`` (the shipped ``generator:imagenet``), ``fractal``, ``gaussian``; real
  flips on the six views (centre, mirror, four corners; as ``imagenet.py`` frames them) of the other
  200 sample images, so that no measured image was seen in calibration.
* INT8 models. Each (model, source, seed) cell runs the product's adaptive recipe once, through the
  product's own plan (``plan.build`` then what ``quantization.run`` does for ``adaptive``), keeping every
  candidate (``nncf`` = NNCF's defaults, ``mixed_minmax``, ``mixed_histogram``). Measured: on CIFAR-10
  every candidate (``--cifar-candidates``), on ImageNet ``nncf`` and the adaptive choice
  (``--imagenet-candidates``; a 224 px check costs several times a CIFAR-10 one); ``--extra-recipes``
  (e.g. ``minmax``) adds fixed recipes on the same calibration items. The ``adaptive`` row is the
  candidate it chose, the same model: it is listed, but the fit and every figure count each INT8
  model once.
* The check: ``quality.check`` of the plan on each INT8 model, with the check source fixed to the
  domain's generator (``generator:cifar10``, ``generator:imagenet``) whatever the calibration source,
  1,000 items by default; its statistics and its seconds go in the row.
* Real flips: share of test items whose INT8 top-1 differs from FP32's, OpenVINO CPU at f32.
* CSV: rates are fractions (``real_flip_rate``, ``check_*``); ``check_s`` the check's seconds;
  ``quantize_s`` a candidate's seconds as the adaptive recipe reports them (statistics are collected
  once, so the later candidates show only their own work), for an ``adaptive`` row the recipe's wall
  time; ``cell_s`` the whole cell (quantization, checks, real evaluation).

    python benchmarks/flip_prediction.py                    # the committed grid (75 min here, 2 shared cores)
    python benchmarks/flip_prediction.py --domains cifar10  # one domain
    python benchmarks/flip_prediction.py --report-only      # rebuild the report and the relation from the CSV
    python benchmarks/flip_prediction.py --quick            # a minute: 3 models, 2 sources, 32 items

Rows are appended to ``OUT/flip_prediction.csv`` as they finish (a rerun skips rows already there);
the report ``flip_prediction.{md,png}`` and the relation are rebuilt from the CSV at the end of every
run. The relation goes to ``openvino_synthcalib/data/flip_relation.json`` when ``--out`` is the
committed results folder, else to ``OUT/flip_relation.json`` (``--relation`` names another path).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from commands import record, recorded
from paths import CIFAR_TEST, CIFAR_TRAIN, REPO, RESULTS, SHARED, TEACHER, ZOO_MODELS, shown
from rows import appending, done_keys, replace_rows
from source_specs import chosen_sources
from testset import IMAGENET_CALIBRATION_IMAGES, VIEWS, cached_views, compile_f32, imagenet_split, load_test
from testset import IMAGENET_CLASSES as CLASSES_TSV
from zoo import resolve_models

NAME = "flip_prediction"
CACHE = REPO / "runs" / NAME
RELATION = REPO / "openvino_synthcalib" / "data" / "flip_relation.json"
STATISTICS = ("flip_rate", "confident_flip_rate", "mean_kl")
#: Stated before measuring: the predicted real flip rate from which the product calls a model poor,
#: the geometric midpoint of "fine" (under 5% real flips) and "poor" (10% or more).
FINE, POOR = 0.05, 0.10
POOR_ABOVE = math.sqrt(FINE * POOR)
COVERAGE = 0.9
CANDIDATES = ("nncf", "mixed_minmax", "mixed_histogram")  # the adaptive recipe's (checked at run time)
KEY = ("domain", "model", "source", "recipe", "seed", "samples", "check_source", "check_samples")
FIELDS = [
    *KEY,
    "preset",
    "same_model_as",
    "fp32_top1",
    "int8_top1",
    "test_items",
    "real_flips",
    "real_flip_rate",
    "check_items",
    "check_flips",
    "check_flip_rate",
    "check_confident_items",
    "check_confident_flip_rate",
    "check_mean_kl",
    "check_s",
    "quantize_s",
    "cell_s",
    "spec",
    "run_id",
]
IMAGENET_DIR = SHARED / "models" / "imagenet"
IMAGENET_MODELS = {  # name: (file, preset)
    "lite0": (IMAGENET_DIR / "efficientnet_lite0.onnx", "inception"),
    "darknet_tiny": (IMAGENET_DIR / "darknet_tiny.onnx", "unit"),
    "mobilenet_v1_075": (IMAGENET_DIR / "mobilenet_v1_075.onnx", "inception"),
}
CIFAR_SOURCES = {
    "real": f"images:{CIFAR_TRAIN}",
    "student": "generator:cifar10",
    "teacher": f"generator:{TEACHER}",
    "gaussian": "noise:gaussian",
    "uniform": "noise:uniform",
    "fractal": "fractal:ifs",
}
IMAGENET_SOURCES = {
    "real": "images:{calibration}?class_list=" + str(CLASSES_TSV) + "&crop=center",
    "generator": "generator:imagenet",
    "fractal": "fractal:ifs",
    "gaussian": "noise:gaussian",
}
#: The shared CIFAR-10 zoo (``../shared/models/cifar10``); the extra zoo is trained, not shared: ask for it by name.
CHECK_SOURCES = {"cifar10": "generator:cifar10", "imagenet": "generator:imagenet"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- test sets


@dataclass
class TestSet:
    """A domain's real test items and how a model's top-1 on them is computed (FP32 cached)."""

    domain: str
    describe: str
    load: Any  # preset -> (batches factory, labels)
    cache: dict = field(default_factory=dict)
    fp32: dict = field(default_factory=dict)

    def batches(self, preset: str):
        if preset not in self.cache:
            self.cache[preset] = self.load(preset)
        return self.cache[preset]

    def top1(self, model: Any, preset: str) -> np.ndarray:
        make, _ = self.batches(preset)
        from openvino_synthcalib.inference import predict

        return np.concatenate(list(predict(compile_f32(model), make())))

    def labels(self, preset: str) -> np.ndarray:
        return self.batches(preset)[1]

    def reference(self, name: str, path: Path, preset: str) -> np.ndarray:
        if name not in self.fp32:
            self.fp32[name] = self.top1(str(path), preset)
        return self.fp32[name]


def cifar_test(root: Path, limit: int | None) -> TestSet:
    def load(preset: str):
        x, y = load_test(root, limit, preset)
        return (lambda: [x[i : i + 250] for i in range(0, len(x), 250)]), y

    return TestSet("cifar10", f"{shown(root)} ({'all' if not limit else limit} images)", load)


def imagenet_test(cache: Path, size: int = 224) -> TestSet:
    _, files, labels = imagenet_split(cache)
    views = np.asarray(cached_views(cache / f"imagenet-views-{size}-{len(files)}.npy", files, size))
    flat = views.reshape(-1, *views.shape[2:])

    def load(preset: str):
        from openvino_synthcalib.transforms import Transform

        transform = Transform.from_options(preset)
        return (lambda: (transform(flat[i : i + 50].astype(np.float32) / 255.0) for i in range(0, len(flat), 50))), (
            np.repeat(labels, len(VIEWS))
        )

    return TestSet(
        "imagenet",
        f"{len(VIEWS)} views of {len(files)} ImageNet sample images not used for calibration ({len(flat)} items)",
        load,
    )


# ----------------------------------------------------------------------------- one cell


def run_cell(args, dom: str, model: str, path: Path, preset: str, source: str, spec: str, seed: int,
             todo: set[str], test: TestSet, writer_ctx) -> None:  # fmt: skip
    """One (model, source, seed): the adaptive recipe with every candidate kept (and the extra
    recipes), each INT8 model checked as the product checks it and measured on real items."""
    import nncf

    from openvino_synthcalib import options, quality
    from openvino_synthcalib import plan as plans
    from openvino_synthcalib.dataset import Dataset
    from openvino_synthcalib.recipes import ADAPTIVE_CANDIDATES, Scoring, adaptive
    from openvino_synthcalib.recipes import recipe as fixed_recipe

    if tuple(ADAPTIVE_CANDIDATES) != CANDIDATES:
        log(
            f"note: the adaptive recipe's candidates are now {ADAPTIVE_CANDIDATES} (this script's text says {CANDIDATES})"
        )
    check_spec = args.check_source.get(dom) or CHECK_SOURCES[dom]
    given = {
        "model": str(path),
        "source": spec,
        "num_samples": args.num_samples,
        "seed": seed,
        "transform": preset,
        "recipe": "adaptive",
        "check": {"source": check_spec, "samples": args.check_samples},
    }
    settings = options.read(options.from_nested(given, "api"), "api")
    fp32 = test.reference(model, path, preset)
    labels = test.labels(preset)
    cell_started = time.perf_counter()
    with plans.build(settings) as plan, contextlib.redirect_stdout(sys.stderr):
        device = plan.settings["device"]
        nncf_kwargs = plan.nncf_kwargs()
        calibration = Dataset(plan.calibration_stream(), model=plan.target)
        started = time.perf_counter()  # as quantization.run does for the adaptive recipe
        scoring = Scoring.prepare(plan.model, plan.scoring_stream(), device, plan.target)
        chosen = adaptive(plan.model, calibration, scoring, ADAPTIVE_CANDIDATES, nncf_kwargs, device, started, True)
        adaptive_s = time.perf_counter() - started
        made = {n: (m, chosen.scores[n]["quantize_seconds"]) for n, m in chosen.candidate_models.items()}
        for extra in args.extra_recipes:
            if extra not in made:
                begun = time.perf_counter()
                fixed = fixed_recipe(plan.model, calibration, extra, **nncf_kwargs)
                made[extra] = (nncf.quantize(plan.model, calibration, **nncf_kwargs, **fixed.quantize_kwargs),
                               time.perf_counter() - begun)  # fmt: skip
        measured: dict[str, dict] = {}
        for name, (int8, seconds) in made.items():
            if name not in todo and not ("adaptive" in todo and name == chosen.chosen):
                continue
            report = quality.check(plan, int8)
            if "skipped" in report:
                raise SystemExit(f"{model} {source}: check skipped: {report['skipped']}")
            pred = test.top1(int8, preset)
            measured[name] = {
                "preset": preset,
                "same_model_as": "",
                "fp32_top1": round(100 * float((fp32 == labels).mean()), 2),
                "int8_top1": round(100 * float((pred == labels).mean()), 2),
                "test_items": len(pred),
                "real_flips": int((pred != fp32).sum()),
                "real_flip_rate": f"{float((pred != fp32).mean()):.6f}",
                "check_items": report["items"],
                "check_flips": report["flips"],
                "check_flip_rate": f"{report['flip_rate']:.6f}",
                "check_confident_items": report["confident_items"],
                "check_confident_flip_rate": "" if report["confident_flip_rate"] is None
                else f"{report['confident_flip_rate']:.6f}",
                "check_mean_kl": f"{report['mean_kl']:.6g}",
                "check_s": report["seconds"],
                "quantize_s": round(seconds, 2),
            }  # fmt: skip
    cell_s = round(time.perf_counter() - cell_started, 1)
    rows = [(n, m) for n, m in measured.items() if n in todo]
    if "adaptive" in todo:
        rows.append(("adaptive", {**measured[chosen.chosen], "same_model_as": chosen.chosen,
                                  "quantize_s": round(adaptive_s, 2)}))  # fmt: skip
    f, writer = writer_ctx
    for recipe, values in rows:
        row = dict(zip(KEY, (dom, model, source, recipe, seed, args.num_samples, check_spec, args.check_samples)))
        row.update(values, cell_s=cell_s, spec=shown_spec(spec), run_id=args.run_id)
        writer.writerow(row)
        f.flush()
        log(
            f"  {dom} {model} {source} {recipe}{' (= ' + values['same_model_as'] + ')' if values['same_model_as'] else ''}"
            f" seed={seed}: real flips {100 * float(values['real_flip_rate']):.2f}%, check flips"
            f" {100 * float(values['check_flip_rate']):.2f}% (confident {values['check_confident_flip_rate'] or '-'},"
            f" KL {values['check_mean_kl']}; {values['check_s']} s)"
        )


def shown_spec(spec: str) -> str:
    return spec.replace(str(SHARED), "../shared").replace(str(REPO) + "/", "")


# ----------------------------------------------------------------------------- the grid


def domain_models(args, dom: str) -> list[tuple[str, Path, str]]:
    if dom == "cifar10":
        return [(p.stem, p, args.preset) for p in resolve_models(args.cifar_models, args.test.parent)]
    out = []
    for name in args.imagenet_models:
        if name not in IMAGENET_MODELS:
            raise SystemExit(f"--imagenet-models: unknown {name!r}; expected one of {', '.join(IMAGENET_MODELS)}")
        path, preset = IMAGENET_MODELS[name]
        if not path.exists():
            raise SystemExit(f"{path} not found (set SYNTHCALIB_SHARED to the shared assets)")
        out.append((name, path, preset))
    return out


def domain_sources(args, dom: str) -> dict[str, str]:
    table = CIFAR_SOURCES if dom == "cifar10" else IMAGENET_SOURCES
    given = args.cifar_sources if dom == "cifar10" else args.imagenet_sources
    try:
        return chosen_sources(given, table, f"--{dom}-sources")
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def run(args) -> None:
    csv_path = args.out / f"{NAME}.csv"
    args.out.mkdir(parents=True, exist_ok=True)
    if args.replace:  # measure these rows again (e.g. after the check's generator changed), keeping the others
        chosen = {
            (dom, name, source)
            for dom in args.domains
            for name, _, _ in domain_models(args, dom)
            for source in domain_sources(args, dom)
        }
        replace_rows(csv_path, FIELDS, lambda r: (r["domain"], r["model"], r["source"]) in chosen)
    done = done_keys(csv_path, KEY)
    for dom in args.domains:
        recipes = [*(args.cifar_candidates if dom == "cifar10" else args.imagenet_candidates), *args.extra_recipes,
                   "adaptive"]  # fmt: skip
        models = domain_models(args, dom)
        sources = domain_sources(args, dom)
        check_spec = args.check_source.get(dom) or CHECK_SOURCES[dom]
        test = None
        for name, path, preset in models:
            for source, spec in sources.items():
                for seed in args.seeds:
                    todo = {
                        r for r in recipes
                        if (dom, name, source, r, str(seed), str(args.num_samples), check_spec,
                            str(args.check_samples)) not in done
                    }  # fmt: skip
                    if not todo:
                        continue
                    if test is None:
                        args.cache.mkdir(parents=True, exist_ok=True)
                        test = cifar_test(args.test, args.test_limit) if dom == "cifar10" else imagenet_test(args.cache)
                    if "{calibration}" in spec:
                        spec = spec.replace("{calibration}", str(imagenet_split(args.cache)[0]))
                    with appending(csv_path, FIELDS) as ctx:
                        run_cell(args, dom, name, path, preset, source, spec, seed, todo, test, ctx)


# ----------------------------------------------------------------------------- the fit and its report


def read_rows(csv_path: Path) -> tuple[list[dict], list[dict]]:
    """The CSV's rows, each INT8 model once, and the ``adaptive`` rows. An ``adaptive`` row is its
    chosen candidate's model: that candidate's row is marked ``adaptive_choice``, or where the
    candidate was not measured on its own (``--imagenet-candidates``), the adaptive row stands for
    it under the candidate's name."""
    if not csv_path.exists():
        return [], []
    rows = list(csv.DictReader(open(csv_path)))

    def cell(r: dict) -> tuple:
        return tuple(r[k] for k in KEY if k != "recipe")

    adaptive = [r for r in rows if r["recipe"] == "adaptive"]
    measured = {cell(r) + (r["recipe"],) for r in rows if r["recipe"] != "adaptive"}
    chosen = {cell(r) + (r["same_model_as"],) for r in adaptive}
    distinct = [r for r in rows if r["recipe"] != "adaptive"]
    distinct += [
        {**r, "recipe": r["same_model_as"]} for r in adaptive if cell(r) + (r["same_model_as"],) not in measured
    ]
    out = []
    for r in distinct:
        r = dict(r)
        r["adaptive_choice"] = cell(r) + (r["recipe"],) in chosen
        for k in ("real_flip_rate", *(f"check_{s}" for s in STATISTICS)):
            r[k] = float(r[k]) if r[k] not in ("", None) else None
        out.append(r)
    order = {c: i for i, c in enumerate(dict.fromkeys(cell(r) for r in rows))}
    out.sort(key=lambda r: (order[cell(r)], r["recipe"] not in CANDIDATES, CANDIDATES.index(r["recipe"])
                            if r["recipe"] in CANDIDATES else r["recipe"]))  # fmt: skip
    return out, adaptive


def evaluate(rows: list[dict], statistic: str) -> dict | None:
    """The fit of ``statistic`` on every row, and what it says of held-out models: for each model,
    the fit (and its interval) on the other models predicts its rows (nested leave-one-model-out)."""
    from scipy.stats import spearmanr

    from openvino_synthcalib import quality

    pts = [r for r in rows if r[f"check_{statistic}"] is not None]
    if len(pts) < 3 or len({r["model"] for r in pts}) < 2:
        return None
    s = np.array([r[f"check_{statistic}"] for r in pts])
    real = np.array([r["real_flip_rate"] for r in pts])
    groups = np.array([f"{r['domain']}/{r['model']}" for r in pts])
    if np.ptp(s) == 0:
        return None
    relation = {**quality.fit(s, real, groups, statistic, COVERAGE), "poor_above": POOR_ABOVE}
    shipped = [quality.predict({statistic: float(v)}, relation) for v in s]
    held: list[dict | None] = [None] * len(pts)
    for g in sorted(set(groups.tolist())):
        out = groups == g
        try:
            rel = {**quality.fit(s[~out], real[~out], groups[~out], statistic, COVERAGE), "poor_above": POOR_ABOVE}
        except ValueError:
            continue
        for i in np.flatnonzero(out):
            held[i] = quality.predict({statistic: float(s[i])}, rel)
    domains = ["all", *dict.fromkeys(r["domain"] for r in pts)]
    summary = {}
    for dom in domains:
        idx = [i for i, r in enumerate(pts) if dom == "all" or r["domain"] == dom]
        inside = [held[i]["low"] <= real[i] <= held[i]["high"] for i in idx if held[i] is not None]
        inside_fit = [shipped[i]["low"] <= real[i] <= shipped[i]["high"] for i in idx]
        spread = len(idx) > 2 and np.ptp(s[idx]) > 0 and np.ptp(real[idx]) > 0
        rho = spearmanr(s[idx], real[idx]).statistic if spread else float("nan")
        resid = [math.log(real[i] + quality.FLOOR) - math.log(shipped[i]["flip_rate"] + quality.FLOOR) for i in idx]
        summary[dom] = {
            "points": len(idx),
            "coverage": float(np.mean(inside)) if inside else float("nan"),
            "coverage_fit": float(np.mean(inside_fit)),
            "spearman": float(rho),
            "bias": float(np.exp(np.median(resid))),  # measured / predicted (median), shipped fit
            **{f"{k}_held": v for k, v in _flags([held[i] for i in idx], real[idx]).items()},
            **{f"{k}_fit": v for k, v in _flags([shipped[i] for i in idx], real[idx]).items()},
        }
    return {"statistic": statistic, "relation": relation, "points": pts, "shipped": shipped, "held": held,
            "summary": summary}  # fmt: skip


def _flags(preds: list[dict | None], real: np.ndarray) -> dict:
    poor = [i for i, v in enumerate(real) if v >= POOR]
    fine = [i for i, v in enumerate(real) if v < FINE]
    return {
        "poor": len(poor),
        "poor_flagged": sum(bool(preds[i] and preds[i]["poor"]) for i in poor),
        "fine": len(fine),
        "fine_flagged": sum(bool(preds[i] and preds[i]["poor"]) for i in fine),
    }


def meets(ev: dict) -> tuple[bool, bool]:
    """(coverage goal met overall and in every domain, the flag rule held) on held-out models."""
    s = ev["summary"]
    cover = all(v["coverage"] >= COVERAGE for v in s.values())
    a = s["all"]
    return cover, a["poor_flagged_held"] == a["poor_held"] and a["fine_flagged_held"] == 0


def choose(evals: dict[str, dict]) -> str:
    """The statistic the product uses (the rule stated in the report, fixed before measuring):
    among those meeting the coverage goal and the flag rule on held-out models, the highest overall
    Spearman; where none meets both, the fewest flag errors, then the best worst-domain coverage,
    then Spearman."""

    def rank(name: str):
        ev = evals[name]
        cover, flags = meets(ev)
        a = ev["summary"]["all"]
        errors = a["poor_held"] - a["poor_flagged_held"] + a["fine_flagged_held"]
        worst = min(v["coverage"] for v in ev["summary"].values())
        return (cover and flags, -errors, worst, a["spearman"])

    return max(evals, key=rank)


def pct(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{100 * v:.{digits}f}"


def summarise(args) -> str:
    out = args.out
    rows, adaptive_rows = read_rows(out / f"{NAME}.csv")
    commands = list(dict.fromkeys(recorded(out, NAME)))
    lines = [
        "# Does the data-free check predict real flips?",
        "",
        "Produced by these commands (each appends its rows to `flip_prediction.csv`; a rerun skips rows already there):",
        "",
        *[f"    {c}" for c in commands],
        "",
    ]
    if not rows:
        text = "\n".join([*lines, "No rows yet."]) + "\n"
        (out / f"{NAME}.md").write_text(text)
        return text
    evals = {s: ev for s in STATISTICS if (ev := evaluate(rows, s)) is not None}
    doms = list(dict.fromkeys(r["domain"] for r in rows))
    models = {d: list(dict.fromkeys(r["model"] for r in rows if r["domain"] == d)) for d in doms}
    sources = {d: list(dict.fromkeys(r["source"] for r in rows if r["domain"] == d)) for d in doms}
    checks = sorted({(r["domain"], r["check_source"], r["check_samples"]) for r in rows})
    tests = {r["domain"]: r["test_items"] for r in rows}
    lines += [
        "**What is measured.** Each INT8 model is compared with its FP32 model twice: on real test items (the"
        " **real flip rate**: the share whose top-1 changes, OpenVINO CPU at f32 precision) and by the product's"
        " data-free check (`openvino_synthcalib.quality.check`, the same code `synthcalib quantize` runs: a"
        " generator's items at seed + 2000, every class). The check's source is fixed per domain whatever the"
        " calibration source: "
        + "; ".join(f"{d}: `{c}`, {n} items" for d, c, n in checks)
        + ". Its statistics: `flip_rate` (items whose top-1 changes), `confident_flip_rate` (the same among items"
        f" the FP32 model gives >= {0.5} probability), `mean_kl` (mean KL divergence of the INT8 softmax from"
        " FP32's).",
        "",
        "**INT8 models.** "
        + "; ".join(
            f"{d}: {len(models[d])} models ({', '.join(models[d])}) x {len(sources[d])} calibration sources"
            f" ({', '.join(sources[d])}), real flips on {tests[d]} items"
            for d in doms
        )
        + ". Recipes, all from one run of the product's adaptive recipe per model, source and seed (its candidates"
        " `nncf` = NNCF's defaults, `mixed_minmax`, `mixed_histogram` kept; fixed extra recipes on the same"
        " calibration items): "
        + "; ".join(f"{d}: {', '.join(dict.fromkeys(r['recipe'] for r in rows if r['domain'] == d))}" for d in doms)
        + ". The product's default, `adaptive`, gives the candidate it chose: the same INT8 model, so it is counted"
        " once (marked `*` below)"
        + (
            "; on ImageNet only `nncf` and that choice are measured (a 224 px check costs several times a CIFAR-10 one)"
            if "imagenet" in doms
            else ""
        )
        + ". "
        + _setup_text(rows),
        "",
        f"**The fit** (`quality.fit`): `log(real + {_floor()}) = a + b log(statistic + {_floor()})` by least"
        f" squares on all {len(rows)} INT8 models, with a {round(100 * COVERAGE)}% interval from the 5% and 95%"
        " quantiles of the leave-one-model-out residuals.",
        "",
        "**How it is judged (stated before measuring).** Every figure is for held-out models: each model's INT8"
        " models are predicted by the fit, interval included, made without any INT8 model of that classifier"
        " (nested leave-one-model-out), which is what a user's new model gets. (1) Coverage: the share of INT8"
        f" models whose real flip rate falls in the held-out interval; goal >= {round(100 * COVERAGE)}% overall and"
        f" in each domain. (2) Flags: the product warns when the predicted real flip rate is >= `poor_above` ="
        f" {100 * POOR_ABOVE:.2f}%, the geometric midpoint of {round(100 * FINE)}% and {round(100 * POOR)}%"
        f" (fixed beforehand, not tuned); every INT8 model with >= {round(100 * POOR)}% real flips must be flagged,"
        f" and none under {round(100 * FINE)}%. (3) Rank correlation (Spearman) of the statistic with real flips."
        " The product uses the statistic that meets (1) and (2) with the highest overall Spearman; if none meets"
        " both, the one with the fewest flag errors, then the best worst-domain coverage, then Spearman.",
        "",
    ]
    if not evals:
        text = "\n".join([*lines, "Too few models or no spread to fit."]) + "\n"
        (out / f"{NAME}.md").write_text(text)
        return text
    pick = choose(evals)
    lines += ["## The candidate statistics", ""]
    lines += [
        "Held-out (nested leave-one-model-out) figures; `fit` columns: the same with the relation fitted on every"
        " model (what ships, in-sample). Flags: flagged / INT8 models with >= 10% real flips; wrongly flagged /"
        " INT8 models under 5%. Bias: median of measured / predicted (shipped fit); 1 = on the line.",
        "",
        "| statistic | domain | INT8 models | coverage (held out) | coverage (fit) | Spearman | >=10% flagged"
        " (held out) | <5% flagged (held out) | >=10% flagged (fit) | <5% flagged (fit) | bias |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s, ev in evals.items():
        for dom, v in ev["summary"].items():
            name = f"**{s}** (chosen)" if s == pick else s
            lines.append(
                f"| {name} | {dom} | {v['points']} | {pct(v['coverage'], 1)}% | {pct(v['coverage_fit'], 1)}% |"
                f" {v['spearman']:.3f} | {v['poor_flagged_held']}/{v['poor_held']} | {v['fine_flagged_held']}/"
                f"{v['fine_held']} | {v['poor_flagged_fit']}/{v['poor_fit']} | {v['fine_flagged_fit']}/"
                f"{v['fine_fit']} | x{v['bias']:.2f} |"
            )
    lines.append("")
    confident = {}
    for r in rows:
        confident.setdefault(r["domain"], {})[r["model"]] = int(r["check_confident_items"])
    lines += [
        "Items of the check the FP32 model gives >= 0.5 probability (what `confident_flip_rate` counts on), of"
        f" the check's {'/'.join(sorted({r['check_items'] for r in rows}))} items: "
        + "; ".join(f"{d}: " + ", ".join(f"{m} {n}" for m, n in v.items()) for d, v in confident.items())
        + ".",
        "",
    ]
    ev = evals[pick]
    cover, flags = meets(ev)
    lines += [f"**Chosen: `{pick}`.** " + _why(evals, pick, cover, flags), ""]
    rel = ev["relation"]
    lines += [
        "The relation the product ships (`openvino_synthcalib/data/flip_relation.json`):",
        "",
        "```json",
        json.dumps(relation_record(ev, commands), indent=2),
        "```",
        "",
        f"In words: predicted real flips = exp({rel['a']:.3f}) x (statistic + {_floor()})^{rel['b']:.3f} -"
        f" {_floor()}, interval x{math.exp(rel['residual_low']):.2f} to x{math.exp(rel['residual_high']):.2f} of"
        f" (prediction + {_floor()}); the product warns from {100 * POOR_ABOVE:.2f}% predicted, i.e. from"
        + (
            f" {pick} = {_stat(pick, threshold(rel))} on the check."
            if rel["b"] > 0
            else " (the fit is not increasing!)"
        ),
        "",
    ]
    lines += _failures(ev)
    lines += ["![predicted vs measured real flips](flip_prediction.png)", ""]
    lines += _cost(rows, adaptive_rows)
    lines += _per_model(ev, pick)
    text = "\n".join(lines).rstrip() + "\n"
    (out / f"{NAME}.md").write_text(text)
    _plot(evals, pick, out)
    write_relation(args, relation_record(ev, commands))
    return text


def _stat(statistic: str, value: float) -> str:
    return f"{value:.4g}" if statistic == "mean_kl" else f"{100 * value:.2f}%"


def _floor() -> str:
    from openvino_synthcalib.quality import FLOOR

    return f"{FLOOR:g}"


def threshold(rel: dict) -> float:
    """The statistic's value from which the relation predicts ``poor_above`` real flips."""
    return math.exp((math.log(rel["poor_above"] + rel["floor"]) - rel["a"]) / rel["b"]) - rel["floor"]


def _setup_text(rows: list[dict]) -> str:
    seeds = sorted({r["seed"] for r in rows}, key=int)
    samples = sorted({r["samples"] for r in rows}, key=int)
    presets = ", ".join(sorted({f"{r['model']} `{r['preset']}`" for r in rows if r["domain"] != "cifar10"}))
    text = f"{'/'.join(samples)} calibration items, seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}."
    if presets:
        text += f" Presets: CIFAR-10 models `cifar10`; {presets}."
    if any(r["domain"] == "imagenet" and r["source"] == "real" for r in rows):
        text += (
            f" ImageNet `real`: {IMAGENET_CALIBRATION_IMAGES} of the 500 shared sample images (evenly spaced by"
            " WordNet id, `images:` with `classes.tsv` and `crop=center`); flips are counted on the other"
            f" {500 - IMAGENET_CALIBRATION_IMAGES}, so no measured image was calibrated on (unlike `imagenet.md`)."
        )
    return text


def _why(evals: dict, pick: str, cover: bool, flags: bool) -> str:
    a = evals[pick]["summary"]["all"]
    parts = []
    if cover and flags:
        parts.append("it meets the coverage goal (overall and per domain) and the flag rule on held-out models")
        others = [s for s in evals if s != pick and all(meets(evals[s]))]
        if others:
            parts.append(
                "and has the highest Spearman among those that do ("
                + ", ".join(f"{s} {evals[s]['summary']['all']['spearman']:.3f}" for s in others)
                + f" against {a['spearman']:.3f})"
            )
    else:
        parts.append(
            "no statistic meets both the coverage goal and the flag rule on held-out models; this one has the"
            f" fewest flag errors ({a['poor_held'] - a['poor_flagged_held']} missed of {a['poor_held']},"
            f" {a['fine_flagged_held']} wrongly flagged of {a['fine_held']})"
        )
        if not cover:
            worst = min(evals[pick]["summary"].items(), key=lambda kv: kv[1]["coverage"])
            parts.append(f"its held-out coverage falls short in {worst[0]} ({pct(worst[1]['coverage'], 1)}%)")
    text = "; ".join(parts) + "."
    return text[0].upper() + text[1:]


def _failures(ev: dict) -> list[str]:
    """Where the relation fails: the held-out misses, and each domain's offset from the line."""
    pts, held, shipped = ev["points"], ev["held"], ev["shipped"]
    misses = [(r, h) for r, h in zip(pts, held) if h is not None and not (h["low"] <= r["real_flip_rate"] <= h["high"])]
    lines = ["## Where the relation fails", ""]
    for dom, v in ev["summary"].items():
        if dom == "all":
            continue
        lines.append(
            f"- {dom}: measured / predicted real flips, median x{v['bias']:.2f} (shipped fit); held-out coverage"
            f" {pct(v['coverage'], 1)}%, Spearman {v['spearman']:.3f}."
        )
    lines += _per_domain_fits(ev)
    by_model: dict[str, list[float]] = {}
    for r, p in zip(pts, shipped):
        by_model.setdefault(f"{r['domain']}/{r['model']}", []).append(
            math.log((r["real_flip_rate"] + 0.002) / (p["flip_rate"] + 0.002))
        )
    worst = sorted(by_model.items(), key=lambda kv: -abs(np.median(kv[1])))[:3]
    lines.append(
        "- Models furthest off the line (median measured / predicted, shipped fit): "
        + ", ".join(f"{m} x{math.exp(np.median(v)):.2f}" for m, v in worst)
        + "."
    )
    poor = [(h["flip_rate"], r) for r, h in zip(pts, held) if h and r["real_flip_rate"] >= POOR]
    fine = [(h["flip_rate"], r) for r, h in zip(pts, held) if h and r["real_flip_rate"] < FINE]
    middle = [h for r, h in zip(pts, held) if h and FINE <= r["real_flip_rate"] < POOR]
    if poor and fine:
        (lo, lo_r), (hi, hi_r) = min(poor, key=lambda t: t[0]), max(fine, key=lambda t: t[0])
        lines.append(
            f"- Flag margin (held out): the lowest prediction for an INT8 model with >= {round(100 * POOR)}% real flips"
            f" is {pct(lo)}% ({_name(lo_r)}, measured {pct(lo_r['real_flip_rate'])}%), the highest for one under"
            f" {round(100 * FINE)}% is {pct(hi)}% ({_name(hi_r)}, measured {pct(hi_r['real_flip_rate'])}%);"
            f" poor_above {100 * POOR_ABOVE:.2f}% {'lies between' if hi < POOR_ABOVE <= lo else 'does not separate them'}."
            f" Between {round(100 * FINE)}% and {round(100 * POOR)}% real flips (no requirement):"
            f" {sum(h['poor'] for h in middle)} of {len(middle)} flagged."
        )
    if misses:
        lines.append(
            f"- {len(misses)} INT8 models outside their held-out interval: "
            + "; ".join(
                f"{r['domain']}/{r['model']} {r['source']} {r['recipe']} (measured {pct(r['real_flip_rate'])}%,"
                f" predicted {pct(h['flip_rate'])}% [{pct(h['low'])}-{pct(h['high'])}])"
                for r, h in misses
            )
            + "."
        )
    return [*lines, ""]


def _name(r: dict) -> str:
    return f"{r['domain']}/{r['model']} {r['source']} {r['recipe']}"


def _per_domain_fits(ev: dict) -> list[str]:
    """Each domain's own line (for comparison; not shipped): where the shipped relation warns, what
    real flip rate each domain's line predicts there."""
    from openvino_synthcalib import quality

    rel, statistic = ev["relation"], ev["statistic"]
    if rel["b"] <= 0:
        return []
    at = threshold(rel)
    parts = []
    for dom in dict.fromkeys(r["domain"] for r in ev["points"]):
        mine = [r for r in ev["points"] if r["domain"] == dom]
        try:
            own = quality.fit(
                [r[f"check_{statistic}"] for r in mine], [r["real_flip_rate"] for r in mine],
                [r["model"] for r in mine], statistic, COVERAGE,
            )  # fmt: skip
        except ValueError:
            continue
        there = quality.predict({statistic: at}, {**own, "poor_above": POOR_ABOVE})
        parts.append(
            f"{dom} alone (a {own['a']:.2f}, b {own['b']:.2f}, {own['groups']} models) predicts"
            f" {pct(there['flip_rate'])}% there"
        )
    if len(parts) < 2:
        return []
    return [
        f"- Each domain's own line (fitted on its INT8 models alone; not shipped): at {statistic} ="
        f" {_stat(statistic, at)}, where the shipped relation predicts {100 * POOR_ABOVE:.2f}% and warns, "
        + "; ".join(parts)
        + "."
    ]


def _cost(rows: list[dict], adaptive_rows: list[dict]) -> list[str]:
    lines = [
        "## What the check costs",
        "",
        "Seconds of `quality.check` per INT8 model (the check stream made, FP32 and INT8 run on it), against the"
        " quantize call of the product's default recipe (the adaptive row's wall time), same run; median per model.",
        "",
        "| domain | model | check s | adaptive quantize s | check / quantize |",
        "|---|---|---|---|---|",
    ]
    for dom in dict.fromkeys(r["domain"] for r in rows):
        for m in dict.fromkeys(r["model"] for r in rows if r["domain"] == dom):
            mine = [r for r in rows if r["domain"] == dom and r["model"] == m]
            check = float(np.median([float(r["check_s"]) for r in mine]))
            adaptive = [float(r["quantize_s"]) for r in adaptive_rows if (r["domain"], r["model"]) == (dom, m)]
            q = float(np.median(adaptive)) if adaptive else None
            lines.append(
                f"| {dom} | {m} | {check:.1f} | {'–' if q is None else f'{q:.1f}'} |"
                f" {'–' if not q else f'{check / q:.2f}'} |"
            )
    return [*lines, ""]


def _per_model(ev: dict, pick: str) -> list[str]:
    lines = [
        f"## Every INT8 model: predicted (from `{pick}`) vs measured real flips",
        "",
        "Predicted: held out (the relation fitted without this classifier's INT8 models) and by the shipped fit."
        " In: the measured rate lies in the interval. Flagged: predicted >= poor_above"
        f" ({100 * POOR_ABOVE:.2f}%). `*`: the adaptive recipe's choice (the product's default output). Rates in %.",
        "",
        "| domain | model | source | recipe | real flips | check flips | confident | mean KL | predicted, held out"
        " [interval] | in | flagged | predicted, shipped fit [interval] | in | flagged |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r, h, p in zip(ev["points"], ev["held"], ev["shipped"]):
        real = r["real_flip_rate"]
        lines.append(
            f"| {r['domain']} | {r['model']} | {r['source']} | {r['recipe']}{' *' if r['adaptive_choice'] else ''} |"
            f" {pct(real)} | {pct(r['check_flip_rate'])} | {pct(r['check_confident_flip_rate'])} |"
            f" {r['check_mean_kl']:.4g} | {_cells(h, real)} | {_cells(p, real)} |"
        )
    return [*lines, ""]


def _cells(q: dict | None, real: float) -> str:
    """Prediction [interval] | in | flagged (bold where the flag rule is broken) of one INT8 model."""
    if q is None:
        return "– | – | –"
    inside = "yes" if q["low"] <= real <= q["high"] else "**no**"
    flag = "yes" if q["poor"] else "no"
    if q["poor"] and real < FINE or not q["poor"] and real >= POOR:
        flag = f"**{flag}**"
    return f"{pct(q['flip_rate'])} [{pct(q['low'])}-{pct(q['high'])}] | {inside} | {flag}"


def _plot(evals: dict, pick: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(evals), figsize=(5.2 * len(evals), 5), squeeze=False)
    markers = {"cifar10": ("o", "tab:blue"), "imagenet": ("^", "tab:red")}
    for ax, (s, ev) in zip(axes[0], evals.items()):
        rel = ev["relation"]
        floor = rel["floor"]
        pts, held = ev["points"], ev["held"]
        x = np.array([h["flip_rate"] if h else np.nan for h in held])
        y = np.array([r["real_flip_rate"] for r in pts])
        both = np.r_[x, y]
        lo = max(1e-4, np.nanmin(both[both > 0], initial=1.0) / 2)
        hi = min(1.5, max(lo * 100, np.nanmax(both, initial=0.0) * 2))
        grid = np.geomspace(lo, hi, 200)
        band_lo = np.exp(np.log(grid + floor) + rel["residual_low"]) - floor
        band_hi = np.exp(np.log(grid + floor) + rel["residual_high"]) - floor
        ax.fill_between(grid, np.clip(band_lo, lo, None), band_hi, color="0.85",
                        label=f"{round(100 * rel['coverage'])}% interval (shipped fit)")  # fmt: skip
        ax.plot(grid, grid, "k-", lw=0.8, label="measured = predicted")
        for dom in dict.fromkeys(r["domain"] for r in pts):
            mk, col = markers.get(dom, ("s", "tab:green"))
            idx = [i for i, r in enumerate(pts) if r["domain"] == dom]
            inside = [i for i in idx if held[i] and held[i]["low"] <= y[i] <= held[i]["high"]]
            outside = [i for i in idx if i not in inside]
            ax.scatter(np.clip(x[inside], lo, None), np.clip(y[inside], lo, None), marker=mk, c=col, s=22,
                       alpha=0.75, label=f"{dom} ({len(idx)})")  # fmt: skip
            if outside:
                ax.scatter(np.clip(x[outside], lo, None), np.clip(y[outside], lo, None), marker=mk, facecolors="none",
                           edgecolors=col, s=40, linewidths=1.5, label=f"{dom}: outside held-out interval")  # fmt: skip
        for v, ls in ((FINE, ":"), (POOR, "--")):
            ax.axhline(v, color="0.4", ls=ls, lw=0.8)
        ax.axvline(rel["poor_above"], color="tab:orange", lw=1, label=f"poor_above {100 * rel['poor_above']:.2f}%")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        a = ev["summary"]["all"]
        ax.set_title(f"{s}{' (chosen)' if s == pick else ''}: coverage {pct(a['coverage'], 0)}%, rho {a['spearman']:.2f}",
                     fontsize=10)  # fmt: skip
        ax.set_xlabel("predicted real flip rate (held-out fit)")
        ax.set_ylabel("measured real flip rate")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("INT8 models: real flips predicted from the data-free check vs measured (5% dotted, 10% dashed)")
    fig.tight_layout()
    fig.savefig(out / f"{NAME}.png", dpi=110)
    plt.close(fig)


def relation_record(ev: dict, commands: list[str]) -> dict:
    return {
        **ev["relation"],
        # what the interval held on models left out of the fit, per domain: what a user is told
        "held_out_coverage": {dom: round(v["coverage"], 3) for dom, v in ev["summary"].items()},
        "measured_by": "benchmarks/flip_prediction.py",
        "command": "; ".join(commands),
    }


def write_relation(args, record_: dict) -> None:
    path = args.relation
    if path is None:
        path = RELATION if args.out.resolve() == RESULTS.resolve() else args.out / "flip_relation.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record_, indent=2) + "\n")
    tmp.replace(path)
    log(f"relation ({record_['statistic']}) -> {path}")


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domains", nargs="*", default=["cifar10", "imagenet"], choices=["cifar10", "imagenet"])
    p.add_argument("--cifar-models", nargs="*", default=list(ZOO_MODELS), help="zoo names (zoo.py) or model files")
    p.add_argument("--imagenet-models", nargs="*", default=list(IMAGENET_MODELS))
    p.add_argument("--preset", default="cifar10", help="the cifar10 domain's preprocessing")
    p.add_argument("--test", type=Path, default=CIFAR_TEST, help="the cifar10 domain's labelled test folder")
    p.add_argument("--test-limit", type=int, default=None, help="an evenly spaced subset of --test")
    p.add_argument("--cifar-sources", nargs="*", default=list(CIFAR_SOURCES), help="names, or NAME=SPEC")
    p.add_argument("--imagenet-sources", nargs="*", default=list(IMAGENET_SOURCES), help="names, or NAME=SPEC")
    p.add_argument(
        "--check-source", nargs="*", default=[], metavar="DOMAIN=SPEC",
        help=f"the check's generator per domain (default {', '.join(f'{k}={v}' for k, v in CHECK_SOURCES.items())})",
    )  # fmt: skip
    p.add_argument("--check-samples", type=int, default=1000)
    p.add_argument("--cifar-candidates", nargs="*", default=list(CANDIDATES), choices=CANDIDATES,
                   help="the adaptive recipe's candidates measured besides its choice (cifar10)")  # fmt: skip
    p.add_argument("--imagenet-candidates", nargs="*", default=["nncf"], choices=CANDIDATES,
                   help="the same for imagenet")  # fmt: skip
    p.add_argument("--extra-recipes", nargs="*", default=[], help="fixed recipes beside the adaptive candidates")
    p.add_argument("--seeds", nargs="*", type=int, default=[0])
    p.add_argument("--num-samples", type=int, default=300)
    p.add_argument("--cache", type=Path, default=CACHE, help="ImageNet views and calibration links")
    p.add_argument("--relation", type=Path, default=None, help="where the fitted relation goes (see above)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny grid: resnet20, vgg11_bn, shufflenetv2 (or --cifar-models), student and gaussian (or --cifar-sources), 32 "
        "calibration and 100 check items, 500 test images",
    )
    p.add_argument("--replace", action="store_true",
                   help="measure the chosen domains' models x sources again (drops their rows first)")  # fmt: skip
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    checks = {}
    for item in args.check_source:
        dom, eq, spec = item.partition("=")
        if not eq or dom not in CHECK_SOURCES:
            p.error(f"--check-source {item}: expected DOMAIN=SPEC with DOMAIN in {', '.join(CHECK_SOURCES)}")
        checks[dom] = spec
    args.check_source = checks
    if args.quick:
        args.domains = ["cifar10"]
        if args.cifar_models == list(ZOO_MODELS):
            args.cifar_models = ["resnet20", "vgg11_bn", "shufflenetv2"]  # three: one is left out of the fit
        if args.cifar_sources == list(CIFAR_SOURCES):
            args.cifar_sources = ["student", "gaussian"]
        args.num_samples, args.check_samples, args.seeds = 32, min(args.check_samples, 100), [0]
        args.test_limit = args.test_limit or 500
    if not args.report_only:
        args.run_id = time.strftime("%Y%m%dT%H%M%S")
        record(args.out, NAME)
        run(args)
    print(summarise(args))


if __name__ == "__main__":
    main()
