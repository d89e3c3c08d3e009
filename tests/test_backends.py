"""Synthetic calibration for NNCF's PyTorch and ONNX backends, on tiny classifiers built here."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import nncf
import numpy as np
import pytest

import openvino_synthcalib as synthcalib
from openvino_synthcalib.cli import main
from openvino_synthcalib.errors import SynthcalibError
from openvino_synthcalib.recipes import ADAPTIVE_CANDIDATES

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


class TinyNet(torch.nn.Module):
    """A conv classifier with its own forward (NNCF 3.4 cannot quantize a bare nn.Sequential)."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def tiny_onnx(path: Path | None = None, size: int = 8, num_classes: int = 4):
    """Conv-ReLU-pool-Gemm with input 'input' float32 [N, 3, size, size] and output 'logits' [N, K]."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {
        "W": rng.normal(0, 0.3, (8, 3, 3, 3)),
        "B": np.zeros(8),
        "G": rng.normal(0, 0.3, (num_classes, 8)),
        "GB": np.zeros(num_classes),
    }
    nodes = [
        helper.make_node("Conv", ["input", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "G", "GB"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, str(path))
    return model


@pytest.fixture(scope="module", autouse=True)
def nncf_torch_reference_quantizers():
    """NNCF compiles a C++ extension for its torch quantizers on first use (about a minute on two
    cores, and NNCF gives up after 60 s); its pure-torch reference functions compute the same, so
    these tests need neither a compiler nor a warm build cache."""
    from nncf.torch.quantization.extensions import QuantizedFunctionsCPU
    from nncf.torch.quantization.reference import ReferenceQuantizedFunctions

    loaded = QuantizedFunctionsCPU._loaded_namespace
    if loaded is None:
        QuantizedFunctionsCPU._loaded_namespace = ReferenceQuantizedFunctions
    yield
    QuantizedFunctionsCPU._loaded_namespace = loaded


def test_torch_items_quantize_and_validate(assets):
    net = TinyNet()
    ds = synthcalib.Dataset(str(assets["generator"]), 24, model=net, transform="unit")
    item = ds[0]
    assert isinstance(item, torch.Tensor) and item.shape == (1, 3, 8, 8) and item.dtype == torch.float32
    assert np.array_equal(item.numpy(), synthcalib.Dataset(str(assets["generator"]), 24, transform="unit")[0])
    q = nncf.quantize(net, ds, subset_size=len(ds))
    assert any(name.startswith("__nncf_hooks") for name, _ in q.named_modules())
    out = q(torch.cat([ds[i] for i in range(3)]))
    assert out.shape == (3, 4) and torch.isfinite(out).all()
    val = synthcalib.Dataset(str(assets["generator"]), 12, model=net, transform="unit", seed=1, with_labels=True)
    x, y = val[0]
    assert isinstance(x, torch.Tensor) and isinstance(y, int)
    accuracy, per_item = synthcalib.top1_vs_labels(q, val)
    assert len(per_item) == 12 and 0 <= accuracy <= 1
    assert synthcalib.top1_agreement(TinyNet())(TinyNet(), val)[0] == 1.0
    plain = synthcalib.Dataset(str(assets["generator"]), 12, transform="unit", seed=1, with_labels=True)
    seq = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 4))  # validation takes any module
    assert synthcalib.top1_vs_labels(seq, plain)[1] == synthcalib.top1_vs_labels(seq, val)[1]
    assert isinstance(ds.labelled()[0][0], torch.Tensor)


def test_torch_size_layout_and_nncf_limits_are_one_line_errors(assets):
    with pytest.raises(SynthcalibError, match="PyTorch module does not tell its input size.*size"):
        synthcalib.Dataset("noise:gaussian", 8, model=TinyNet(), transform="unit")
    ds = synthcalib.Dataset("noise:gaussian", 8, model=TinyNet(), transform={"size": "16x16", "preset": "unit"})
    assert ds[0].shape == (1, 3, 16, 16)
    with pytest.raises(SynthcalibError, match="fails on an item of shape \\[1, 8, 8, 3\\].*layout"):
        synthcalib.Dataset(str(assets["generator"]), 8, model=TinyNet(), transform={"layout": "NHWC", "preset": "unit"})
    seq = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    with pytest.raises(SynthcalibError, match="bare torch.nn.Sequential.*HookStorage.*own forward"):
        synthcalib.Dataset(str(assets["generator"]), 8, model=seq)
    with pytest.raises(SynthcalibError, match="accuracy_control: .*not PyTorch"):
        synthcalib.quantize(TinyNet(), str(assets["generator"]), transform="unit", accuracy_control={"max_drop": 0.01})
    with pytest.raises(SynthcalibError, match="PyTorch module is returned, not saved"):
        synthcalib.quantize(TinyNet(), str(assets["generator"]), "int8.xml", transform="unit")
    report = synthcalib.quantize(TinyNet(), str(assets["generator"]), num_samples=16, transform="unit")
    assert report["quantized_model"](torch.zeros(2, 3, 8, 8)).shape == (2, 4)
    # the adaptive recipe (the default for a generator) scores its candidates with the module itself
    assert report["recipe"]["requested"] == "adaptive" and set(report["recipe"]["scores"]) == set(ADAPTIVE_CANDIDATES)


def test_onnx_items_quantize_accuracy_control_and_onnxruntime(assets):
    model = tiny_onnx()
    ds = synthcalib.Dataset(str(assets["generator"]), 24, model=model, transform="unit")
    item = ds[0]
    assert list(item) == ["input"] and item["input"].shape == (1, 3, 8, 8) and item["input"].dtype == np.float32
    val = synthcalib.Dataset(str(assets["generator"]), 12, model=model, transform="unit", seed=1, with_labels=True)
    int8 = nncf.quantize_with_accuracy_control(
        model, ds, val, validation_fn=synthcalib.top1_agreement(model), max_drop=0.01, subset_size=len(ds)
    )
    assert isinstance(int8, onnx.ModelProto)
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in int8.graph.node}
    session = ort.InferenceSession(int8.SerializeToString(), providers=["CPUExecutionProvider"])
    batch = np.concatenate([ds[i]["input"] for i in range(5)])
    (logits,) = session.run(None, {"input": batch})
    assert logits.shape == (5, 4) and np.isfinite(logits).all()
    accuracy, per_item = synthcalib.top1_vs_labels(int8, val)
    assert len(per_item) == 12 and 0 <= accuracy <= 1
    with pytest.raises(
        SynthcalibError,
        match=r"^transform\['size'\]: '16x16' does not fit: the model's input is NCHW with 3 channels at 8x8",
    ):
        synthcalib.Dataset(str(assets["generator"]), 8, model=model, transform={"size": "16x16"})
    with pytest.raises(SynthcalibError, match="items have shape \\[8, 8, 3\\] .* input 'input' takes \\[3, 8, 8\\]"):
        synthcalib.Dataset(str(assets["generator"]), 8, model=model, transform=synthcalib.Transform(layout="NHWC"))


def test_cli_quantize_backend_onnx_writes_int8_onnx(assets, tmp_path, capsys):
    fp32 = tiny_onnx(tmp_path / "tiny.onnx")
    out = tmp_path / "int8" / "tiny_int8.onnx"
    base = ["quantize", str(tmp_path / "tiny.onnx"), "--source", f"generator:{assets['generator']}", "--preset", "unit"]
    assert main([*base, "--num-samples", "16", "--backend", "onnx", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["output"] == str(out) and report["recipe"]["chosen"] in ADAPTIVE_CANDIDATES
    controlled = tmp_path / "int8_ac.onnx"  # accuracy control through NNCF's ONNX backend
    assert (
        main([*base, "--num-samples", "16", "--backend", "onnx", "--max-drop", "0.01", "--out", str(controlled)]) == 0
    )
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(controlled)).graph.node)
    capsys.readouterr()  # accuracy control's progress lines
    int8 = onnx.load(str(out))
    assert any(n.op_type == "QuantizeLinear" for n in int8.graph.node)
    (logits,) = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        None, {"input": np.zeros((2, 3, 8, 8), np.float32)}
    )
    assert logits.shape == (2, 4)
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny_int8.onnx"]  # no temporary file left
    for args, message in (
        (["--out", str(tmp_path / "x.xml")], "expected a path ending in .onnx"),
        (["--out", str(tmp_path / "tiny.onnx")], "would overwrite the input model"),
        (["--out", str(tmp_path / "y.onnx"), "--backend", "torch"], "invalid choice: 'torch'"),
    ):
        argv = [*base, "--backend", "onnx", *args] if "--backend" not in args else [*base, *args]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("synthcalib: error:") and message in err and err.count("\n") == 1
    assert onnx.load(str(tmp_path / "tiny.onnx")) == fp32  # the input is untouched
    # without --backend the same .onnx file goes through OpenVINO and gives an IR
    assert main([*base, "--num-samples", "16", "--out", str(tmp_path / "ov" / "tiny_int8.xml")]) == 0
    assert (tmp_path / "ov" / "tiny_int8.bin").exists()


def test_onnx_and_openvino_paths_never_need_torch(assets, tmp_path):
    """With torch made unimportable, ONNX and OpenVINO calibration and validation still run:
    synthcalib imports torch only for a torch model (NNCF itself imports it when installed)."""
    tiny_onnx(tmp_path / "tiny.onnx")
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now fails
        import nncf, onnx, openvino_synthcalib as synthcalib
        model = onnx.load({str(tmp_path / "tiny.onnx")!r})
        ds = synthcalib.Dataset({str(assets["generator"])!r}, 8, model=model, transform="unit")
        int8 = nncf.quantize(model, ds, subset_size=8)
        val = synthcalib.Dataset({str(assets["generator"])!r}, 8, model=model, transform="unit", with_labels=True)
        print(synthcalib.top1_agreement(model)(int8, val)[0] >= 0)
        ov_ds = synthcalib.Dataset({str(assets["generator"])!r}, 8, model={str(assets["classifier"])!r}, transform="unit")
        print(type(ov_ds[0]).__name__)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == ["True", "ndarray"]


def test_backends_benchmark_quick_on_tiny_inputs(assets, tmp_path):
    """benchmarks/backends.py end to end on a tiny ONNX model (OpenVINO and ONNX backends; the torch
    one needs onnx2torch, which only the benchmark installs)."""
    import csv

    tiny_onnx(tmp_path / "tiny.onnx")
    out = tmp_path / "results"
    cmd = [sys.executable, str(Path(__file__).resolve().parents[1] / "benchmarks" / "backends.py"), "--quick"]
    cmd += ["--models", str(tmp_path / "tiny.onnx"), "--test", str(assets["images"]), "--preset", "unit"]
    cmd += ["--size", "8x8", "--samples", "16", "--backends", "openvino", "onnx", "--out", str(out)]
    cmd += ["--sources", f"tiny=generator:{assets['generator']}", f"real=images:{assets['images']}"]
    for _ in range(2):  # the rerun resumes: nothing left to do
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(out / "backends.csv")))
    assert sorted((r["backend"], r["source"]) for r in rows) == [
        ("onnx", "real"), ("onnx", "tiny"), ("openvino", "real"), ("openvino", "tiny")
    ]  # fmt: skip
    assert all(0 <= float(r["flip_rate"]) <= 100 and int(r["act_quantizers"]) > 0 for r in rows)
    md = (out / "backends.md").read_text()
    assert "| tiny | onnx |" in md and "--quick" in md


def test_readme_pytorch_and_onnx_examples_run_as_written(tmp_path):
    """The two Python blocks of the README's "PyTorch and ONNX models" section, copied as they are
    and run one after the other (the ONNX example reads the net.onnx the PyTorch one writes)."""
    repo = Path(__file__).resolve().parents[1]
    section = (repo / "README.md").read_text().split("## PyTorch and ONNX models", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]
    assert len(blocks) == 2 and "torch.onnx.export" in blocks[0] and "onnx.load" in blocks[1]
    # "run from the repository root": the generator path is relative to it; outputs go to tmp_path.
    shipped = str(repo / "generators" / "cifar10" / "cifar10_student.xml")
    for i, block in enumerate(blocks):
        script = tmp_path / f"example{i}.py"
        script.write_text(block.replace("generators/cifar10/cifar10_student.xml", shipped))
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "net_int8.xml").exists() and (tmp_path / "net_int8.bin").exists()
    int8 = onnx.load(str(tmp_path / "net_int8.onnx"))
    assert any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in int8.graph.node)
    assert "(1, 10)" in done.stdout
