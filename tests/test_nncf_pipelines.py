"""quantize_candidates gives what separate nncf.quantize calls give, with one pass over the data."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

ov = pytest.importorskip("openvino")
nncf = pytest.importorskip("nncf")

import openvino.opset13 as ops  # noqa: E402
from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters  # noqa: E402
from nncf.quantization.range_estimator import RangeEstimatorParametersSet  # noqa: E402

from openvino_synthcalib import nncf_pipelines  # noqa: E402
from openvino_synthcalib.nncf_pipelines import Unsupported, quantize_candidates  # noqa: E402

ITEMS = 16
# OpenVINO names nodes created without a name after an instance counter (Constant_10712): two
# identical nncf.quantize calls already differ there, so such names are compared up to renaming.
_NAME = re.compile(rb"\b[A-Za-z][A-Za-z0-9]*_\d+\b")


@pytest.fixture(scope="module", autouse=True)
def internals():
    """Every test here needs the NNCF internals the module relies on: say so loudly when they moved."""
    try:
        nncf_pipelines.check_supported()
    except Unsupported as exc:
        pytest.fail(
            f"NNCF internals moved (or an untested NNCF version): {exc}. quantize_candidates raises Unsupported "
            "and callers fall back to one nncf.quantize per candidate; update openvino_synthcalib/nncf_pipelines.py "
            "(and TESTED_NNCF_VERSIONS) once these tests pass on the new version."
        )


def _conv(x, rng, cin, cout, k):
    w = ops.constant((rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32))
    y = ops.convolution(x, w, [1, 1], [k // 2, k // 2], [k // 2, k // 2], [1, 1])
    return ops.add(y, ops.constant((0.1 * rng.standard_normal((1, cout, 1, 1))).astype(np.float32)))


@pytest.fixture(scope="module")
def model():
    """conv-relu, conv-conv, relu, global pool and a linear layer (a MatMul SmoothQuant rescales)."""
    rng = np.random.default_rng(0)
    x = ops.parameter([1, 3, 8, 8], np.float32, name="input")
    y = ops.relu(_conv(x, rng, 3, 8, 3))
    y = _conv(y, rng, 8, 8, 3)
    y = ops.relu(_conv(y, rng, 8, 8, 1))
    y = ops.reduce_mean(y, ops.constant(np.array([2, 3], np.int64)), keep_dims=False)
    y = ops.matmul(y, ops.constant(rng.standard_normal((8, 4)).astype(np.float32)), False, False)
    y = ops.add(y, ops.constant(rng.standard_normal(4).astype(np.float32)))
    return ov.Model([y], [x], "tiny")


class _Counting(nncf.Dataset):
    """An nncf.Dataset that counts the passes over its items."""

    passes = 0

    def get_inference_data(self, indices=None):
        self.passes += 1
        return super().get_inference_data(indices)


@pytest.fixture
def dataset():
    rng = np.random.default_rng(1)
    return _Counting([rng.standard_normal((1, 3, 8, 8)).astype(np.float32) for _ in range(ITEMS)])


def _candidates(base=None, **common):
    """The adaptive recipe's candidates, as ``recipe.nncf_kwargs_for`` makes them from the caller's
    advanced parameters ``base`` and keyword arguments (under a caller's preset, the mixed ones lose theirs)."""

    def advanced(setting):
        return dataclasses.replace(base or AdvancedQuantizationParameters(), activations_range_estimator_params=setting)

    preset = common.pop("preset", nncf.QuantizationPreset.MIXED)
    plain = {"subset_size": ITEMS, **common}
    return {
        "nncf": plain if base is None else {**plain, "advanced_parameters": base},
        "mixed_minmax": {
            **plain,
            "advanced_parameters": advanced(RangeEstimatorParametersSet.MINMAX),
            "preset": preset,
        },
        "mixed_histogram": {
            **plain,
            "advanced_parameters": advanced(RangeEstimatorParametersSet.HISTOGRAM),
            "preset": preset,
        },
    }


def _serialized(model, path):
    ov.save_model(model, path / "m.xml", compress_to_fp16=False)
    return (path / "m.xml").read_bytes(), (path / "m.bin").read_bytes()


def _canonical(xml, fixed):
    """``xml`` with the counter-made names that are not in the FP32 model renamed in order of appearance."""
    seen: dict[bytes, bytes] = {}

    def rename(match):
        name = match.group(0)
        return name if name in fixed else seen.setdefault(name, b"AUTO_%d" % len(seen))

    return _NAME.sub(rename, xml)


def _assert_same_as_nncf(model, dataset, candidates, tmp_path):
    fixed = set(_NAME.findall(_serialized(model, tmp_path)[0]))
    before = _serialized(model, tmp_path)
    dataset.passes = 0
    nncf.quantize(model.clone(), dataset, **candidates["nncf"])
    passes_of_one = dataset.passes
    expected = {
        name: _serialized(nncf.quantize(model.clone(), dataset, **kw), tmp_path) for name, kw in candidates.items()
    }
    dataset.passes = 0
    got = quantize_candidates(model, dataset, candidates)
    assert list(got) == list(candidates)
    assert dataset.passes == passes_of_one, "the candidates' statistics take as many passes as one nncf.quantize"
    for name, quantized in got.items():
        xml, weights = _serialized(quantized, tmp_path)
        assert weights == expected[name][1], f"{name}: weights differ from nncf.quantize's"
        assert _canonical(xml, fixed) == _canonical(expected[name][0], fixed), (
            f"{name}: IR differs from nncf.quantize's"
        )
    assert _serialized(model, tmp_path) == before, "the input model is left as it was"
    # the comparison can tell candidates apart (it is not vacuous)
    assert expected["nncf"] != expected["mixed_minmax"] and expected["mixed_minmax"] != expected["mixed_histogram"]
    return passes_of_one


def test_adaptive_candidates_match_separate_quantize_calls(model, dataset, tmp_path):
    passes = _assert_same_as_nncf(model, dataset, _candidates(), tmp_path)
    assert passes == 1  # one step: MinMax's statistics with fast bias correction's


def test_caller_settings_match_separate_quantize_calls(model, dataset, tmp_path):
    conv = next(op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution")
    candidates = _candidates(
        preset=nncf.QuantizationPreset.PERFORMANCE,
        fast_bias_correction=False,
        ignored_scope=nncf.IgnoredScope(names=[conv]),
    )
    _assert_same_as_nncf(model, dataset, candidates, tmp_path)


def test_shared_early_steps_match_separate_quantize_calls(model, dataset, tmp_path):
    # for transformers, SmoothQuant rescales the MatMul first: its statistics, then those on its model
    # (ChannelAlignment, the other early step, fails in nncf.quantize itself in NNCF 3.4 when it applies)
    candidates = _candidates(model_type=nncf.ModelType.TRANSFORMER)
    passes = _assert_same_as_nncf(model, dataset, candidates, tmp_path)
    assert passes == 2


def test_candidates_with_different_subsets(model, dataset, tmp_path):
    fixed = set(_NAME.findall(_serialized(model, tmp_path)[0]))
    candidates = {"few": {"subset_size": 5}, "all": {"subset_size": ITEMS, "preset": nncf.QuantizationPreset.MIXED}}
    expected = {n: _serialized(nncf.quantize(model.clone(), dataset, **kw), tmp_path) for n, kw in candidates.items()}
    dataset.passes = 0
    got = quantize_candidates(model, dataset, candidates)
    assert dataset.passes == 1
    for name, quantized in got.items():
        xml, weights = _serialized(quantized, tmp_path)
        assert weights == expected[name][1] and _canonical(xml, fixed) == _canonical(expected[name][0], fixed), name


def test_timings_and_empty_candidates(model, dataset):
    timings: dict[str, float] = {}
    assert quantize_candidates(model, dataset, {}) == {}
    quantize_candidates(model, dataset, {"nncf": {"subset_size": 4}}, timings=timings)
    assert {"statistics", "shared_steps", "setup", "candidate:nncf"} <= set(timings)
    assert all(v >= 0 for v in timings.values())


def test_unsupported_cases_raise_unsupported(model, dataset, monkeypatch):
    with pytest.raises(Unsupported, match="unknown nncf.quantize arguments"):
        quantize_candidates(model, dataset, {"x": {"subset_size": 4, "quantize_faster": True}})
    with pytest.raises(Unsupported, match="not an NNCF model"):
        quantize_candidates(object(), dataset, {"nncf": {}})
    monkeypatch.setattr(nncf, "__version__", "99.1.0")
    with pytest.raises(Unsupported, match="99.1.0"):
        quantize_candidates(model, dataset, {"nncf": {}})


@pytest.mark.parametrize("version", ["3.4.1", "3.4.0.dev0+1a2b3c", "3.5.0", "3.4"])
def test_only_exact_tested_versions_run_the_internal_path(model, dataset, monkeypatch, version):
    """A patch release (or a build) of a tested minor version is not a tested version."""
    assert nncf.__version__ in nncf_pipelines.TESTED_NNCF_VERSIONS  # the fixture's check, spelled out
    monkeypatch.setattr(nncf, "__version__", version)
    with pytest.raises(Unsupported, match=re.escape(f"NNCF {version} is not a version")):
        quantize_candidates(model, dataset, {"nncf": {}, "mixed_minmax": {"preset": nncf.QuantizationPreset.MIXED}})


def test_untested_version_falls_back_to_nncf_quantize_with_a_warning(model, dataset, tmp_path, monkeypatch, caplog):
    """The adaptive recipe quantizes each candidate with nncf.quantize instead, says so at WARNING
    (naming the version), and gets the INT8 models the internal path gives."""
    import logging

    from openvino_synthcalib import recipes

    kwargs = {"subset_size": ITEMS}
    shared = {
        name: _serialized(m, tmp_path)
        for name, m in recipes.nncf_candidates(model, dataset, ("nncf", "mixed_minmax"), kwargs, {})
    }
    nncf_version = nncf.__version__
    monkeypatch.setattr(nncf, "__version__", "3.4.1")
    with caplog.at_level(logging.WARNING, logger=recipes.__name__):
        fallback = {
            name: _serialized(m, tmp_path)
            for name, m in recipes.nncf_candidates(model, dataset, ("nncf", "mixed_minmax"), kwargs, {})
        }
    [record] = [r for r in caplog.records if r.name == recipes.__name__]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "NNCF 3.4.1" in message and "one nncf.quantize per candidate" in message and "same" in message
    fixed = set(_NAME.findall(_serialized(model, tmp_path)[0]))
    assert list(fallback) == list(shared) == ["nncf", "mixed_minmax"]
    for name in shared:
        assert fallback[name][1] == shared[name][1], f"{name}: weights differ"
        # but for the NNCF version NNCF records in the IR's rt_info (the one it was told it is)
        xml = fallback[name][0].replace(b'<version value="3.4.1" />', f'<version value="{nncf_version}" />'.encode())
        assert _canonical(xml, fixed) == _canonical(shared[name][0], fixed), f"{name}: IR differs"


@pytest.mark.shared
def test_zoo_model_with_concat_and_depthwise_matches_separate_quantize_calls(tmp_path):
    """The same check on a real network: ShuffleNetV2 (CIFAR-10 zoo) has channel splits, concats,
    channel shuffles (reshape/transpose) and depthwise (grouped) convolutions, and NNCF unifies the
    scales of a concat's inputs: the quantizer setup the candidates share must still be each one's."""
    from conftest import ZOO

    zoo_model = ov.Core().read_model(ZOO / "shufflenetv2.onnx")
    types = {op.get_type_name() for op in zoo_model.get_ordered_ops()}
    assert {"Concat", "GroupConvolution"} <= types
    rng = np.random.default_rng(3)
    # the zoo's normalised inputs: roughly zero mean, unit spread
    data = _Counting([rng.standard_normal((2, 3, 32, 32)).astype(np.float32) for _ in range(ITEMS // 2)])
    _assert_same_as_nncf(zoo_model, data, _candidates(), tmp_path)
