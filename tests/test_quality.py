"""The data-free quality report: synthetic flips on fresh items, the measured relation to real
flips, and a warning that names what to try when the prediction says the INT8 model is poor."""

from __future__ import annotations

import numpy as np
import pytest

import openvino_synthcalib as synthcalib
from openvino_synthcalib import quality


def test_compare_counts_flips_confident_flips_and_kl():
    reference = np.array([[5.0, 0.0], [0.1, 0.0], [0.0, 5.0], [0.0, 0.1]])
    quantized = np.array([[5.0, 0.0], [0.0, 0.1], [0.0, 5.0], [0.1, 0.0]])
    out = quality.compare(reference, quantized)
    assert out["items"] == 4 and out["flips"] == 2 and out["flip_rate"] == 0.5
    # with two classes every top-1 has probability >= 0.5: every item counts as confident
    assert out["confident_items"] == 4 and out["confident_flip_rate"] == 0.5
    assert out["mean_kl"] > 0
    same = quality.compare(reference, reference)
    assert same["flips"] == 0 and same["mean_kl"] == pytest.approx(0.0, abs=1e-9)


def test_fit_recovers_a_relation_and_its_interval_covers():
    rng = np.random.default_rng(0)
    synthetic = rng.uniform(0.005, 0.3, 60)
    real = np.exp(np.log(synthetic + quality.FLOOR) * 0.8 - 0.7 + rng.normal(0, 0.1, 60)) - quality.FLOOR
    groups = [f"m{i % 6}" for i in range(60)]
    rel = quality.fit(synthetic, real, groups)
    assert rel["b"] == pytest.approx(0.8, abs=0.1) and rel["residual_low"] < 0 < rel["residual_high"]
    rel["poor_above"] = 0.07
    inside = [
        p["low"] <= r <= p["high"] for s, r in zip(synthetic, real) for p in [quality.predict({"flip_rate": s}, rel)]
    ]
    assert np.mean(inside) >= 0.85
    low = quality.predict({"flip_rate": 0.001}, rel)
    high = quality.predict({"flip_rate": 0.9}, rel)
    assert not low["poor"] and high["poor"] and low["flip_rate"] < high["flip_rate"]
    assert quality.predict({"mean_kl": 0.1}, rel) is None  # the relation's statistic is missing


def test_poor_prediction_warns_with_what_to_try(assets, monkeypatch):
    relation = {"statistic": "flip_rate", "a": 0.0, "b": 1.0, "floor": 0.002, "coverage": 0.9,
                "residual_low": -0.1, "residual_high": 0.1, "poor_above": 0.0}  # fmt: skip
    monkeypatch.setattr(quality, "shipped_relation", lambda: relation)
    with pytest.warns(UserWarning, match=r"likely poor.*accuracy_control\['max_drop'\] 0.01.*recipe"):
        report = synthcalib.quantize(str(assets["classifier"]), str(assets["generator"]), num_samples=16,
                                     transform="unit", check={"samples": 32})  # fmt: skip
    assert report["check"]["prediction"]["poor"]
    lines = quality.summary(report["check"])
    assert lines[0].startswith("check:") and lines[1].startswith("predicted:") and len(lines) == 2
    assert "likely poor" in quality.warning(report["check"]) and "--max-drop 0.01" in quality.warning(report["check"])


def test_shipped_relation_is_measured_by_the_benchmark():
    relation = quality.shipped_relation()
    if relation is None:
        pytest.skip("no relation shipped yet")
    assert relation["measured_by"] == "benchmarks/flip_prediction.py"
    assert {"a", "b", "floor", "statistic", "residual_low", "residual_high", "poor_above"} <= set(relation)
