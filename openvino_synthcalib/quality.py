"""The data-free quality report: how often the INT8 model disagrees with its FP32 model on a fresh
synthetic stream, and the real flip rate that predicts.

A user without images cannot measure their INT8 model on real data, so after quantizing we run
both models on items that neither calibration, the recipe's scoring nor accuracy control saw
(the calibration generator at seed + :data:`CHECK_SEED_OFFSET`, every class) and count the items
whose top-1 differs: the synthetic flip rate. How that maps to the real flip rate is measured,
not assumed: ``benchmarks/flip_prediction.py`` quantizes many models (models x calibration
sources x recipes), measures both rates and fits :func:`fit` on them; the fit ships as
``data/flip_relation.json`` and :func:`predict` reads it. Its interval is empirical: the
quantiles of the fit's leave-one-model-out residuals, so its coverage on models unlike those
measured is what the benchmark reports, not a promise.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from .backends import prepare_reference
from .recipes import Scoring, predict_logits

#: The check stream's seed is the calibration seed plus this (validation uses +1, scoring +1000).
CHECK_SEED_OFFSET = 2000
#: Flip rates are fitted on log(rate + FLOOR): a rate of 0 on a finite stream is not a zero risk.
FLOOR = 0.002
RELATION_FILE = "flip_relation.json"
#: FP32 top-1 probability from which an item counts as confidently predicted (see :func:`compare`).
CONFIDENT = 0.5


def check_source(plan: Any) -> tuple[Any, str | None]:
    """``(source, None)`` to check ``plan``'s INT8 model on, or ``(None, why not)``: the check
    source given, else the calibration source when it is a generator (real images and noise say
    nothing about a model's classes)."""
    if plan.check_source is not None:
        return plan.check_source, None
    if getattr(plan.source, "scheme", "") == "generator":
        return plan.source, None
    return None, (
        f"calibration source '{plan.source.spec}' is not a generator: give "
        f"{plan.settings.name('check_source')} generator:NAME to check the INT8 model on synthetic items"
    )


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def compare(reference: np.ndarray, quantized: np.ndarray, confident: float = CONFIDENT) -> dict[str, Any]:
    """Statistics of INT8 outputs against FP32 outputs ([N, K] logits each): items, top-1 flips and
    their rate, the rate among items the FP32 model gives at least ``confident`` probability, and
    the mean KL divergence of the INT8 softmax from the FP32 one."""
    p, q = _softmax(reference.astype(np.float64)), _softmax(quantized.astype(np.float64))
    top = p.argmax(axis=1)
    flipped = top != q.argmax(axis=1)
    sure = p.max(axis=1) >= confident
    kl = np.sum(p * (np.log(p + 1e-12) - np.log(q + 1e-12)), axis=1)
    items = int(len(p))
    return {
        "items": items,
        "flips": int(flipped.sum()),
        "flip_rate": float(flipped.mean()) if items else None,
        "confident_items": int(sure.sum()),
        "confident_flip_rate": float(flipped[sure].mean()) if sure.any() else None,
        "mean_kl": float(kl.mean()) if items else None,
    }


def synthetic_flips(model: Any, quantized: Any, stream: Any, device: str, target: Any = None) -> dict[str, Any]:
    """:func:`compare` of ``quantized`` with ``model`` (FP32 arithmetic for both) on every item of
    ``stream``, with the seconds it took."""
    begun = time.perf_counter()
    scoring = Scoring.prepare(model, stream, device, target)
    batches, reference = scoring.grow(scoring.total)
    if reference is None:
        return {**compare(np.zeros((0, 1)), np.zeros((0, 1))), "seconds": round(time.perf_counter() - begun, 2)}
    int8 = predict_logits(prepare_reference(quantized, device, "f32"), batches)
    out = compare(reference, int8)
    if getattr(stream.source, "conditional", False):  # how often each model names the conditioning class
        labels = stream.labels()[: len(reference)]
        out["fp32_top1_vs_class"] = float((reference.argmax(axis=1) == labels).mean())
        out["int8_top1_vs_class"] = float((int8.argmax(axis=1) == labels).mean())
    return {**out, "seconds": round(time.perf_counter() - begun, 2)}


def check(plan: Any, quantized: Any) -> dict[str, Any]:
    """The quality report of ``plan``'s INT8 model (see the module): the synthetic flip rate on a
    fresh stream and, where a measured relation is shipped, the predicted real flip rate."""
    samples = plan.settings["check_samples"]
    if samples == 0:
        return {"skipped": f"{plan.settings.name('check_samples')} is 0"}
    source, why_not = check_source(plan)
    if source is None:
        return {"skipped": why_not}
    seed = plan.settings["seed"] + CHECK_SEED_OFFSET
    stream = plan.stream(source, samples, seed, all_classes=True)
    report = {
        "source": source.spec,
        "seed": seed,
        **synthetic_flips(plan.model, quantized, stream, plan.settings["device"], plan.target),
    }
    if report["items"]:
        report["prediction"] = predict(report)
    return report


# -- the measured relation ------------------------------------------------------------------------


def _log(rate: Any) -> Any:
    return np.log(np.asarray(rate, dtype=np.float64) + FLOOR)


def fit(
    synthetic: Iterable[float],
    real: Iterable[float],
    groups: Iterable[str],
    statistic: str = "flip_rate",
    coverage: float = 0.9,
) -> dict:
    """The relation ``log(real + FLOOR) = a + b log(synthetic + FLOOR)`` by least squares, where
    ``synthetic`` is the check's ``statistic``, with an interval from the quantiles of the
    leave-one-group-out residuals (each group, a model, is predicted by a fit on the others) at
    ``coverage``. ``poor_above`` is left for the caller to set."""
    s, r = _log(list(synthetic)), _log(list(real))
    g = np.asarray(list(groups))
    if len(s) < 3 or len(set(g.tolist())) < 2:
        raise ValueError("fit: needs at least 3 points from 2 groups")
    b, a = np.polyfit(s, r, 1)
    held_out = np.empty_like(s)
    for group in sorted(set(g.tolist())):
        out = g == group
        bg, ag = np.polyfit(s[~out], r[~out], 1)
        held_out[out] = r[out] - (ag + bg * s[out])
    tail = (1 - coverage) / 2
    return {
        "form": "log(real + floor) = a + b * log(synthetic + floor)",
        "statistic": statistic,
        "a": float(a),
        "b": float(b),
        "floor": FLOOR,
        "coverage": coverage,
        "residual_low": float(np.quantile(held_out, tail)),
        "residual_high": float(np.quantile(held_out, 1 - tail)),
        "points": int(len(s)),
        "groups": int(len(set(g.tolist()))),
    }


def predict(check: Mapping[str, Any], relation: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The real flip rate a check (:func:`compare`'s statistics) predicts under ``relation``
    (default: the shipped one), from the statistic the relation was fitted on:
    ``{"flip_rate", "low", "high", "coverage", "poor", "poor_above"}``; None where no relation
    is shipped or the check lacks its statistic."""
    relation = relation if relation is not None else shipped_relation()
    if relation is None or check.get(relation["statistic"]) is None:
        return None
    floor = relation["floor"]
    centre = relation["a"] + relation["b"] * math.log(check[relation["statistic"]] + floor)

    def rate(log_value: float) -> float:
        return float(min(1.0, max(0.0, math.exp(log_value) - floor)))

    point = rate(centre)
    return {
        "flip_rate": point,
        "low": rate(centre + relation["residual_low"]),
        "high": rate(centre + relation["residual_high"]),
        "coverage": relation["coverage"],
        "poor": point >= relation["poor_above"],
        "poor_above": relation["poor_above"],
        "held_out_coverage": relation.get("held_out_coverage"),
    }


@lru_cache(maxsize=1)
def shipped_relation() -> dict[str, Any] | None:
    """The relation measured by ``benchmarks/flip_prediction.py``, as shipped in the package."""
    try:
        text = resources.files("openvino_synthcalib").joinpath("data", RELATION_FILE).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return None
    return json.loads(text)


def _cli_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def summary(report: Mapping[str, Any]) -> list[str]:
    """The quality report as text lines: the synthetic check and the prediction (:func:`warning`
    says what to do when the model is likely poor)."""
    if "skipped" in report:
        return [f"check:      not run ({report['skipped']})"]
    rate = report["flip_rate"]
    kl = f", mean KL {report['mean_kl']:.4f}" if report.get("mean_kl") is not None else ""
    lines = [
        f"check:      {report['flips']} of {report['items']} fresh synthetic items ({100 * rate:.2f}%) change top-1"
        f"{kl} (source {report['source']}, seed {report['seed']})"
    ]
    p = report.get("prediction")
    if p is None:
        return lines
    held = dict(p.get("held_out_coverage") or {})
    overall = held.pop("all", None)
    measured = f"; it held for {round(100 * overall)}% of held-out models" if overall is not None else ""
    if held:
        measured += " (" + ", ".join(f"{dom} {round(100 * v)}%" for dom, v in held.items()) + ")"
    lines.append(
        f"predicted:  {100 * p['flip_rate']:.1f}% of real predictions flip ({round(100 * p['coverage'])}% interval "
        f"{100 * p['low']:.1f}-{100 * p['high']:.1f}%{measured}; benchmarks/results/flip_prediction.md)"
    )
    return lines


def warning(report: Mapping[str, Any], name: Callable[[str], str] = _cli_name) -> str | None:
    """What to tell the user when the prediction says the INT8 model is likely poor (None
    otherwise); ``name`` names an option as the caller's front-end does (``Settings.name``;
    default: the CLI's flags)."""
    p = report.get("prediction")
    if not p or not p["poor"]:
        return None
    return (
        f"this INT8 model is likely poor (predicted {100 * p['flip_rate']:.1f}% flips, over "
        f"{100 * p['poor_above']:.0f}%): try accuracy control ({name('max_drop')} 0.01) or another recipe "
        f"({name('recipe')})"
    )
