"""The quantization recipe: fixed candidates, the adaptive choice, and its product surface."""

from __future__ import annotations

import json

import nncf
import numpy as np
import openvino as ov
import pytest

import openvino_synthcalib as synthcalib
from openvino_synthcalib.cli import main
from openvino_synthcalib.errors import SynthcalibError
from openvino_synthcalib.quantization import quantize
from openvino_synthcalib.recipes import ADAPTIVE_CANDIDATES, RECIPES, choose, score


def fq_ranges(model) -> list[np.ndarray]:
    """The input_low/input_high constants of every FakeQuantize, in graph order."""
    out = []
    for op in model.get_ordered_ops():
        if op.get_type_name() == "FakeQuantize":
            for port in (1, 2):
                out.append(op.input_value(port).get_node().get_data().copy())
    return out


def test_score_and_choose():
    ref = np.array([[3.0, 0.0], [0.0, 3.0], [2.0, 1.0], [1.0, 2.0]])
    same = score(ref, ref)
    assert same["flip_rate"] == 0.0 and same["kl"] == pytest.approx(0.0, abs=1e-12)
    one_flip = score(ref, np.array([[3.0, 0.0], [0.0, 3.0], [1.0, 2.0], [1.0, 2.0]]))
    assert one_flip["flip_rate"] == 0.25 and one_flip["kl"] > 0
    near = score(ref, ref + np.array([[0.1, 0.0]] * 4))
    assert choose({"a": one_flip, "b": near, "c": same}) == "c"
    assert choose({"a": near, "b": same}) == "b"
    assert choose({"x": same, "y": dict(same)}) == "x"  # ties keep the listed order
    # KL ranks first (a flip rate counts only the few items near a boundary), then flips
    assert choose({"flips": {"flip_rate": 0.25, "kl": 0.01}, "drifts": {"flip_rate": 0.0, "kl": 0.05}}) == "flips"
    assert choose({"a": {"flip_rate": 0.5, "kl": 0.01}, "b": {"flip_rate": 0.25, "kl": 0.01}}) == "b"


def test_candidates_and_a_callers_preset():
    import importlib

    r = importlib.import_module("openvino_synthcalib.recipes")
    assert r.ADAPTIVE_CANDIDATES == ("nncf", "mixed_minmax", "mixed_histogram")
    assert r.effective_candidates(r.ADAPTIVE_CANDIDATES, False) == r.ADAPTIVE_CANDIDATES
    # a preset the caller sets wins: the mixed candidates become their symmetric twins
    assert r.effective_candidates(r.ADAPTIVE_CANDIDATES, True) == ("nncf", "minmax", "histogram")
    assert r.effective_candidates(("mixed_minmax", "minmax"), True) == ("minmax",)
    kwargs = r.nncf_kwargs_for("mixed_histogram")
    assert kwargs["preset"] == nncf.QuantizationPreset.MIXED and "advanced_parameters" in kwargs
    assert "preset" not in r.nncf_kwargs_for("mixed_histogram", caller_preset=True)
    assert r.nncf_kwargs_for("nncf") == {}


def test_fixed_recipes_give_nncf_keyword_arguments(assets):
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet as R

    model = ov.Core().read_model(str(assets["classifier"]))
    ds = synthcalib.Dataset(f"generator:{assets['generator']}", 16, model=model, transform="unit")
    assert dict(synthcalib.recipe(model, ds, "nncf")) == {}
    minmax = synthcalib.recipe(model, ds, "minmax")
    assert minmax["advanced_parameters"].activations_range_estimator_params == R.MINMAX
    assert minmax.accuracy_control_kwargs["advanced_quantization_parameters"] is minmax.advanced
    q = nncf.quantize(model, ds, subset_size=16, **minmax)
    assert any(op.get_type_name() == "FakeQuantize" for op in q.get_ops())
    with pytest.raises(SynthcalibError, match="recipe: expected one of adaptive, nncf"):
        synthcalib.recipe(model, ds, "fastest")
    ds.close()


def test_a_candidate_replaces_the_first_only_on_a_decisive_lead():
    """The first candidate (NNCF's defaults) stays unless the smallest KL leads it by DECISIVE_Z
    standard errors of the paired per-item differences."""
    from openvino_synthcalib.recipes import DECISIVE_Z, keep_first_unless_decisive

    rng = np.random.default_rng(0)
    base = rng.gamma(2.0, 1e-3, 1000)
    noise = rng.normal(0, 1e-3, 1000)
    slightly = {"nncf": base, "mixed_histogram": base * 0.995 + noise * 0.5}  # a lead well within its noise
    chosen, why = keep_first_unless_decisive(slightly, "mixed_histogram")
    assert chosen == "nncf" and why[0] == "mixed_histogram" and why[1] < DECISIVE_Z
    clearly = {"nncf": base, "mixed_minmax": base * 0.2 + np.abs(noise) * 1e-2}  # several-fold lower
    assert keep_first_unless_decisive(clearly, "mixed_minmax") == ("mixed_minmax", None)
    assert keep_first_unless_decisive(clearly, "nncf") == ("nncf", None)


def test_adaptive_recipe_chooses_among_the_candidates(assets):
    model = ov.Core().read_model(str(assets["classifier"]))
    with synthcalib.Dataset(f"generator:{assets['generator']}", 24, model=model, transform="unit") as ds:
        r = synthcalib.recipe(model, ds, score_samples=40, keep_candidates=True, subset_size=24)
    assert r.requested == "adaptive" and r.chosen in ADAPTIVE_CANDIDATES
    assert set(r.scores) == set(ADAPTIVE_CANDIDATES) and r.score_samples == 40
    leader = choose(r.scores)
    if r.not_decisive:  # the smallest KL did not lead nncf decisively: NNCF's defaults were kept
        assert r.chosen == "nncf" and r.not_decisive[0] == leader and "kept" in r.summary()
        assert r.describe()["not_decisive"]["leader"] == leader
    else:
        assert r.chosen == leader
    assert r.model is r.candidate_models[r.chosen]
    report = r.describe()
    assert report["chosen"] == r.chosen and report["score_source"].startswith("generator:")
    assert "synthetic scores on 40 items" in r.summary() and "KL" in r.summary()
    # a candidate of the adaptive run is exactly what the fixed recipe of that name gives
    with synthcalib.Dataset(f"generator:{assets['generator']}", 24, model=model, transform="unit") as ds:
        fixed_recipe = synthcalib.recipe(model, ds, "mixed_minmax")
        assert fixed_recipe["preset"] == nncf.QuantizationPreset.MIXED
        fixed = nncf.quantize(model, ds, subset_size=24, **fixed_recipe)
    for a, b in zip(fq_ranges(fixed), fq_ranges(r.candidate_models["mixed_minmax"]), strict=True):
        np.testing.assert_array_equal(a, b)
    # with the caller's preset, the candidates differ only by range estimator
    with synthcalib.Dataset(f"generator:{assets['generator']}", 24, model=model, transform="unit") as ds:
        own = synthcalib.recipe(model, ds, score_samples=16, subset_size=24, preset=nncf.QuantizationPreset.PERFORMANCE)
    assert set(own.scores) == {"nncf", "minmax", "histogram"} and "preset" not in own


def test_quantize_defaults_adaptive_for_synthetic_and_nncf_for_real(assets, tmp_path):
    report = quantize(assets["classifier"], f"generator:{assets['generator']}", tmp_path / "s.xml", num_samples=16,
                      transform="unit", recipe={"name": "adaptive", "score_samples": 32})  # fmt: skip
    assert report["recipe"]["requested"] == "adaptive" and report["recipe"]["chosen"] in RECIPES
    assert set(report["recipe"]["scores"]) == set(ADAPTIVE_CANDIDATES)
    real = quantize(assets["classifier"], f"images:{assets['images']}", tmp_path / "r.xml", num_samples=16,
                    transform="unit")  # fmt: skip
    assert real["recipe"] == {"requested": "nncf", "chosen": "nncf"}
    asked = quantize(assets["classifier"], f"images:{assets['images']}", tmp_path / "m.xml", num_samples=16,
                     transform="unit", recipe="minmax")  # fmt: skip
    assert asked["recipe"]["chosen"] == "minmax"


def test_recipe_on_the_command_line_and_in_configs(assets, tmp_path, capsys):
    base = ["quantize", assets["classifier"], "--source", f"generator:{assets['generator']}", "--num-samples", "16",
            "--preset", "unit"]  # fmt: skip
    assert main([*map(str, base), "--out", str(tmp_path / "a.xml"), "--recipe", "nncf", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["recipe"]["chosen"] == "nncf"
    assert main([*map(str, base), "--out", str(tmp_path / "b.xml"), "--score-samples", "32"]) == 0
    out = capsys.readouterr().out
    assert "recipe:     adaptive -> " in out and "synthetic scores on 32 items" in out
    cfg = tmp_path / "q.yaml"
    cfg.write_text(
        f"model: {assets['classifier']}\noutput: {tmp_path / 'c.xml'}\n"
        f"dataset: {{source: 'generator:{assets['generator']}', num_samples: 16}}\n"
        "preprocessing: {preset: unit}\nrecipe: minmax\n"
    )
    assert main(["quantize", "--config", str(cfg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["recipe"]["chosen"] == "minmax"
    assert main(["quantize", "--config", str(cfg), "--json", "--recipe", "nncf"]) == 0  # the flag wins
    assert json.loads(capsys.readouterr().out)["recipe"]["chosen"] == "nncf"
    bad = (
        (["--recipe", "best"], "--recipe"),
        (["--score-samples", "0"], "--score-samples"),
        (["--score-latent-scale", "0"], "--score-latent-scale"),
    )
    for extra, words in bad:
        code = main([*map(str, base), "--out", str(tmp_path / "d.xml"), *extra])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and words in err
    cfg.write_text(cfg.read_text().replace("recipe: minmax", "recipe: {name: minmax, samples: 3}"))
    assert main(["quantize", "--config", str(cfg)]) == 2
    assert "recipe: unknown key(s) samples" in capsys.readouterr().err
    cfg.write_text(cfg.read_text().replace("samples: 3", "score_latent_scale: nan"))
    assert main(["quantize", "--config", str(cfg)]) == 2
    assert "recipe.score_latent_scale: expected a positive number" in capsys.readouterr().err


def test_generator_latent_scale_option_and_view(assets):
    from openvino_synthcalib.sources import resolve_source
    from openvino_synthcalib.sources.base import SourceContext

    spec = f"generator:{assets['generator']}"
    src = resolve_source(spec, SourceContext())
    z = src.engine.latents(np.arange(8), seed=3)
    np.testing.assert_allclose(src.engine.latents(np.arange(8), seed=3, scale=1.5), 1.5 * z, rtol=1e-6)
    wide = src.with_latent_scale(1.5)
    assert wide.latent_scale == 1.5 and wide.spec == f"{spec}?latent_scale=1.5"
    assert wide.describe()["latent_scale"] == 1.5 and "latent_scale" not in src.describe()
    labels = np.arange(8) % src.num_classes
    narrow, widened = (np.concatenate(list(s.iter_images(np.arange(8), labels, 3))) for s in (src, wide))
    assert not np.allclose(narrow, widened)
    wide.close()  # a view: the generator stays open
    np.testing.assert_array_equal(np.concatenate(list(src.iter_images(np.arange(8), labels, 3))), narrow)
    src.close()
    again = resolve_source(f"{spec}?latent_scale=1.5", SourceContext())
    np.testing.assert_array_equal(np.concatenate(list(again.iter_images(np.arange(8), labels, 3))), widened)
    assert again.with_latent_scale(2).spec == f"{spec}?latent_scale=2"
    again.close()
    with pytest.raises(SynthcalibError, match="option latent_scale: expected a positive number"):
        resolve_source(f"{spec}?latent_scale=0", SourceContext())


def test_adaptive_recipe_scores_on_wider_latents(assets):
    model = ov.Core().read_model(str(assets["classifier"]))
    with synthcalib.Dataset(f"generator:{assets['generator']}", 16, model=model, transform="unit") as ds:
        wide = synthcalib.recipe(model, ds, score_samples=16, subset_size=16)
        assert wide.score_source.endswith("?latent_scale=1.5")
        same = synthcalib.recipe(model, ds, score_samples=16, subset_size=16, score_latent_scale=1)
        assert "latent_scale" not in same.score_source
        assert wide.scores != same.scores
        with pytest.raises(SynthcalibError, match="score_latent_scale: expected a positive number"):
            synthcalib.recipe(model, ds, score_latent_scale=-1)
    with synthcalib.Dataset("noise:gaussian", 16, model=model, transform="unit") as ds:  # not a generator: as it is
        assert "latent_scale" not in synthcalib.recipe(model, ds, score_samples=16, subset_size=16).score_source


def test_scoring_stops_early_only_when_the_leader_is_decided():
    from openvino_synthcalib.recipes import DECISIVE_Z, _decided

    rng = np.random.default_rng(0)
    base = rng.gamma(2.0, 1e-3, 512)
    clear = {"a": base, "b": base + 5e-4 + rng.normal(0, 1e-4, 512), "c": base * 2}
    assert _decided(clear)
    close = {"a": base, "b": base + rng.normal(0, 1e-3, 512)}  # no lead of 3 standard errors
    assert not _decided(close)
    tie = {"a": base, "b": base.copy()}
    assert not _decided(tie) and DECISIVE_Z == 3.0


class _Stream:
    def __init__(self, n, size=4):
        self.n, self.size, self.source = n, size, type("S", (), {"spec": "fake"})()

    def __len__(self):
        return self.n

    def batches(self):
        for i in range(0, self.n, 32):
            x = np.arange(i, min(i + 32, self.n), dtype=np.float32)[:, None].repeat(self.size, 1)
            yield x, np.zeros(len(x), np.int64)


def test_scoring_stages_are_whole_batches_and_items_batch_as_in_one_pass():
    from openvino_synthcalib.recipes import Scoring

    s = Scoring(lambda x: x, _Stream(1000), 64, 1000)
    assert s.stages() == [256, 512, 1000]
    assert Scoring(None, _Stream(10), 1, 10).stages() == [10]
    assert Scoring(None, _Stream(1000), 100, 1000).stages() == [200, 500, 1000]
    s._model = None
    import openvino_synthcalib.recipes as recipes

    calls = []
    original = recipes.predict_logits
    recipes.predict_logits = lambda model, batches: calls.append([len(b) for b in batches]) or np.concatenate(batches)
    try:
        s.grow(256)
        s.grow(1000)
    finally:
        recipes.predict_logits = original
    assert [len(b) for b in s.batches] == [64] * 15 + [40] and s.samples == 1000
    assert np.concatenate(s.batches)[:, 0].tolist() == list(range(1000))  # in order, none lost or repeated
    assert calls == [[64] * 4, [64] * 11 + [40]]
