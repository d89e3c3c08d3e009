"""Accuracy control shows its work: progress lines while NNCF's restorer runs, its wall time, and the
operations it kept in floating point (CLI text and JSON, the API); the monitor's bookkeeping."""

from __future__ import annotations

import json

import pytest
from tiny_models import make_outlier_classifier

import openvino_synthcalib as synthcalib
from openvino_synthcalib.accuracy_control import Monitor, kept_in_float, quantized_operations
from openvino_synthcalib.cli import main


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):
    return make_outlier_classifier(tmp_path_factory.mktemp("outlier") / "outlier.xml")


def quantize_cli(capsys, *argv):
    code = main(["quantize", *map(str, argv)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out, err


def test_cli_reports_progress_time_and_layers_kept_in_fp32(assets, outlier, tmp_path, capsys):
    base = [outlier, "--source", f"generator:{assets['generator']}", "--num-samples", 32, "--preset", "unit"]
    base += ["--recipe", "nncf", "--max-drop", 0.01, "--out", tmp_path / "q.xml"]
    out, err = quantize_cli(capsys, *base, "--json")
    report = json.loads(out)["accuracy_control"]
    # INT8 ruins the outlier model (agreement near chance); keeping convolutions in FP32 restores it
    assert report["fp32_metric"] == 1.0 and report["int8_metric"] < 0.5
    assert report["final_metric"] >= 0.99 and report["reached"] is True and report["final_drop"] <= 0.01
    kept = report["kept_fp32"]
    assert kept and {k["type"] for k in kept} == {"Convolution"} and report["iterations"] >= 1
    assert report["quantized_operations"] > len(kept)
    assert report["seconds"] > 0 and set(report["time_split"]) == {"quantize", "validate", "rank", "iterate"}
    assert report["validation_samples"] == 32 and report["validation_source"].startswith("generator:")
    # one line per stage and iteration on stderr while NNCF works
    lines = [line for line in err.splitlines() if line.startswith("accuracy control [")]
    text = "\n".join(lines)
    for stage in ("quantizing", "FP32 model: agreement 1.0000", "INT8 model: agreement", "ranking groups",
                  "ranked", "iteration 1:", "done in"):  # fmt: skip
        assert stage in text, text
    assert f"{len(kept)} of {report['quantized_operations']} quantized operations kept in floating point" in lines[-1]
    # the text report says the same
    out, _ = quantize_cli(capsys, *base)
    assert "accuracy:   agreement on 32 items of generator:" in out and "after control 1.0000" in out
    assert f"kept FP32:  {len(kept)} of {report['quantized_operations']} quantized operations: " in out
    assert all(k["name"] in out for k in kept)


def test_api_within_max_drop_keeps_every_layer_quantized(assets):
    report = synthcalib.quantize(
        str(assets["classifier"]), f"generator:{assets['generator']}", num_samples=16, transform="unit",
        recipe="nncf", accuracy_control={"max_drop": 0.5},
    )  # fmt: skip
    control = report["accuracy_control"]
    assert control["kept_fp32"] == [] and control["iterations"] == 0 and control["reached"] is True
    assert control["quantized_operations"] is None or control["quantized_operations"] > 0
    assert control["final_metric"] == control["int8_metric"] and control["seconds"] > 0


def test_kept_in_float_compares_the_quantized_operations(assets, outlier):
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(outlier))
    data = synthcalib.Dataset(str(assets["generator"]), 8, model=model, transform="unit")
    plain = nncf.quantize(model, data, subset_size=8)
    convs = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    ignored = nncf.quantize(model, data, subset_size=8, ignored_scope=nncf.IgnoredScope(names=[convs[-1]]))
    ops = quantized_operations(plain)
    assert set(convs) <= set(ops) and "MatMul" in ops.values() and "FakeQuantize" not in ops.values()
    assert kept_in_float(plain, ignored) == [{"name": convs[-1], "type": "Convolution"}]
    assert kept_in_float(plain, plain) == [] and quantized_operations(model) == {}


def test_onnx_quantized_operations_read_dequantize_inputs():
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    def graph(quantize_conv: bool):
        nodes = [helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"], name="q_in"),
                 helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"], name="dq_in"),
                 helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["w"], name="dq_w"),
                 helper.make_node("Conv", ["dq" if quantize_conv else "input", "w"], ["c"], name="conv"),
                 helper.make_node("MaxPool", ["dq"], ["m"], kernel_shape=[2, 2], name="pool"),
                 helper.make_node("Relu", ["c"], ["logits"], name="relu")]  # fmt: skip
        return helper.make_model(helper.make_graph(nodes, "g", [], []))

    assert quantized_operations(graph(True)) == {"conv": "Conv"}  # MaxPool passes values through
    assert quantized_operations(graph(False)) == {"conv": "Conv"}  # its weight is still quantized
    assert isinstance(graph(True), onnx.ModelProto)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_monitor_follows_nncf_stages_and_an_undone_iteration():
    """NNCF 3.4's messages drive the stages; an iteration NNCF steps back from does not count."""
    clock, lines = Clock(), []
    metrics = iter([1.0, 1.0, 0.80, 0.85, 0.84, 0.90, 0.88, 0.95, 0.97])  # probe, FP32, INT8, ranks..., iterations

    def validation(model, items):
        values = [1.0 for _ in items]
        clock.now += 1.0
        return next(metrics), values

    monitor = Monitor(validation, max_drop=0.04, metric="agreement", items=10, write=lines.append, clock=clock)
    with monitor.watching():
        log = monitor.on_log
        clock.now += 5
        log("Validation of initial model was started")
        monitor(None, range(1))  # NNCF's probe of the return type: no line
        monitor(None, range(10))
        log("Validation of quantized model was started")
        monitor(None, range(10))
        log("ORIGINAL metric is used to rank quantizers")
        monitor(None, range(10))
        monitor(None, range(10))
        log("Changing the scope of quantizer nodes was started")
        log("Reverted 2 operations to the floating-point precision: \n\tconv_a\n\tconv_b")
        monitor(None, range(10))  # 0.90
        log("Reverted 1 operations to the floating-point precision: \n\tconv_c")
        monitor(None, range(10))  # 0.88: the drop grew, NNCF steps back and ranks again
        log("Re-calculating ranking scores for remaining groups")
        log("Reverted 1 operations to the floating-point precision: \n\tconv_d")
        monitor(None, range(10))  # 0.95
        log("Maximum number of iteration was reached.")
    report = monitor.report()
    assert report["fp32_metric"] == 1.0 and report["int8_metric"] == 0.80
    assert report["iterations"] == 3 and report["iterations_undone"] == 1
    assert report["final_metric"] == 0.95 and report["final_drop"] == pytest.approx(0.05) and not report["reached"]
    assert [r["groups"] for r in report["rankings"]] == [2, 0] and report["evaluations"] == 8
    assert report["time_split"]["quantize"] == 5 and report["seconds"] == 13
    assert report["notes"] == ["Maximum number of iteration was reached"]
    assert [(i["reverted"], i["undone"]) for i in report["iteration_log"]] == [
        (["conv_a", "conv_b"], False),
        (["conv_c"], True),
        (["conv_d"], False),
    ]
    text = "\n".join(lines)
    assert "INT8 model: agreement 0.8000 on 10 items (1.0 s), drop 0.2000 over max 0.04; restoring" in text
    assert "iteration 1: reverted 2 operation(s) to floating point (conv_a, conv_b), 2 in all" in text
    assert "iteration 2 undone: the drop grew" in text and "iteration 3: reverted 1 operation(s)" in text
    assert sum("probe" in line or "on 1 items" in line for line in lines) == 0


def test_monitor_relative_drop_and_ranking_lines_are_throttled():
    clock, lines = Clock(), []

    def validation(model, items):
        clock.now += 3.0
        return 0.5, [0.5 for _ in items]

    monitor = Monitor(validation, max_drop=0.1, drop_type="relative", interval=10, write=lines.append, clock=clock)
    monitor.metrics["FP32"] = 0.8
    assert monitor.drop(0.6) == pytest.approx(0.25) and monitor.drop(0.9) == pytest.approx(-0.1)
    with monitor.watching():
        monitor.on_log("ORIGINAL metric is used to rank quantizers")
        for _ in range(10):  # 30 s of ranking: a line every 10 s at most
            monitor(None, range(4))
    ranking = [line for line in lines if "groups of quantizers scored" in line]
    assert 2 <= len(ranking) <= 3 and "ranked 10 groups of quantizers in 30.0 s" in lines[-1]
