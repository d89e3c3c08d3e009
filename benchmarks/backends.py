"""INT8 accuracy of the same zoo models quantized through each NNCF backend (issue 13).

Each model file of ../shared/models/cifar10 goes through NNCF's three backends, calibrated with
``synthcalib.Dataset(..., model=M)`` on real images or the shipped student's stream:

- openvino: ``ov.Core().read_model(model.onnx)``, evaluated in OpenVINO (CPU, f32 inference precision);
- onnx: ``onnx.load(model.onnx)``, the INT8 QDQ model evaluated with ONNX Runtime (CPU EP);
- torch: the ONNX file converted to a module by onnx2torch (a ``torch.fx.GraphModule``, wrapped in
  an ``nn.Module`` with its own forward so that NNCF uses its eager PyTorch backend), evaluated in torch.

Top-1 on the test set, and the flip rate: share of test images whose INT8 top-1 differs from the
FP32 top-1 of the same backend. Each row also counts the quantizers NNCF inserted (and how many
are per-channel) and how often that backend's FP32 model disagrees with OpenVINO's FP32 top-1.

    pip install --no-deps onnx2torch==1.5.15        # the torch backend's converter (see below)
    python benchmarks/backends.py                   # the committed table: 2 models x 3 backends x 2 sources x 3 seeds
    python benchmarks/backends.py --quick           # minutes: resnet20, seed 0, 1000 test images
    python benchmarks/backends.py --seeds 0 --no-bias-correction --out benchmarks/results/backends_no_bias_correction

onnx2torch is installed without its dependencies: it imports torchvision at import time only for
its NMS and RoiAlign converters, and torchvision is not used here (its wheels pull another torch
build); a stand-in module that fails if one of those converters is ever called takes its place.
Rows are appended to ``benchmarks/results/backends.csv`` as they finish (a rerun skips the rows
already there); ``backends.md`` is rebuilt from the CSV (``--report-only`` only rebuilds it).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
from commands import record, recorded
from paths import CIFAR_TEST, CIFAR_TRAIN, RESULTS, STUDENT, ZOO
from rows import appending, done_keys
from source_specs import use_sources
from testset import compile_f32, load_test
from testset import predictions as ov_predictions

from openvino_synthcalib.recipes import ADAPTIVE_CANDIDATES, RECIPES

BACKENDS = ("openvino", "onnx", "torch")
SOURCES = {"real": f"images:{CIFAR_TRAIN}", "student": f"generator:{STUDENT}"}
KEY = ("model", "backend", "source", "recipe", "samples", "seed")
FIELDS = [
    "model",
    "backend",
    "source",
    "recipe",
    "chosen",
    "samples",
    "seed",
    "fp32_top1",
    "int8_top1",
    "flip_rate",
    "fp32_vs_openvino",
    "act_quantizers",
    "weight_quantizers",
    "per_channel_weights",
    "onnx_int8_in_openvino_top1",
    "quantize_s",
]
BATCH = 250


def import_onnx2torch():
    """onnx2torch, with a stand-in for torchvision when it is absent (see the module docstring)."""
    try:
        import torchvision  # noqa: F401
    except ImportError:

        def unavailable(name: str):
            if name.startswith("__"):  # module protocol lookups (__file__, __path__...) stay absent
                raise AttributeError(name)

            def fail(*args, **kwargs):
                raise RuntimeError(f"torchvision.ops.{name} is not installed: this model needs torchvision")

            return fail

        stub, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
        ops.__getattr__ = unavailable  # PEP 562: any torchvision.ops name resolves to a failing function
        stub.ops = ops
        sys.modules.update({"torchvision": stub, "torchvision.ops": ops})
    import onnx2torch

    return onnx2torch


def torch_module(path: Path):
    """The ONNX file as an eager torch module with its own forward (NNCF's PyTorch backend)."""
    import torch

    graph_module = import_onnx2torch().convert(str(path))

    class Converted(torch.nn.Module):
        # onnx2torch gives a torch.fx.GraphModule, which NNCF would send to its torch.fx backend (torchao)
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    return Converted(graph_module).eval()


def load_model(path: Path, backend: str):
    if backend == "openvino":
        import openvino as ov

        return ov.Core().read_model(str(path))
    if backend == "onnx":
        import onnx

        return onnx.load(str(path))
    return torch_module(path)


def predictions(model, backend: str, x: np.ndarray) -> np.ndarray:
    """Top-1 per test image: OpenVINO (f32), ONNX Runtime (CPU EP) or torch."""
    if backend == "openvino":
        return ov_predictions(compile_f32(model), x, BATCH)
    batches = (x[i : i + BATCH] for i in range(0, len(x), BATCH))
    if backend == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return np.concatenate([session.run(None, {name: b})[0].argmax(1) for b in batches])
    import torch

    model.eval()
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(b)).argmax(1).numpy() for b in batches])


def quantizers(model, backend: str) -> tuple[int, int, int]:
    """(activation quantizers, weight quantizers, weight quantizers with per-channel scales).

    OpenVINO and ONNX models come back with their weights already stored in int8 (a Constant /
    initializer of int8 dequantized by Convert-Multiply / DequantizeLinear), torch keeps a
    quantizer module per weight.
    """
    if backend == "openvino":

        def size(output) -> int:
            return int(np.prod(list(output.get_shape())))

        def constant(node) -> bool:  # a weight: a Constant, perhaps reshaped (depthwise kernels)
            while node.get_type_name() in ("Reshape", "Convert", "Transpose", "Unsqueeze", "Squeeze"):
                node = node.input_value(0).get_node()
            return node.get_type_name() == "Constant"

        acts = weights = per_channel = 0
        for op in model.get_ops():
            if op.get_type_name() == "FakeQuantize":
                if constant(op.input_value(0).get_node()):  # kept as FakeQuantize (e.g. behind a Reshape)
                    weights += 1
                    per_channel += size(op.input_value(1)) > 1
                else:
                    acts += 1
            elif op.get_type_name() == "Constant" and op.get_output_element_type(0).get_type_name() in ("i8", "u8"):
                if size(op.output(0)) <= 1:
                    continue
                weights += 1  # compressed: int8 Constant -> Convert -> (Subtract) -> Multiply by its scale
                node = next(iter(op.output(0).get_target_inputs())).get_node()
                while node.get_type_name() in ("Convert", "Subtract"):
                    node = next(iter(node.output(0).get_target_inputs())).get_node()
                scales = [node.input_value(i) for i in range(node.get_input_size())]
                per_channel += any(
                    v.get_node().get_type_name() == "Constant" and v.get_element_type().is_real() and size(v) > 1
                    for v in scales
                )
        return acts, weights, per_channel
    if backend == "onnx":
        from onnx import numpy_helper

        sizes = {t.name: numpy_helper.to_array(t).size for t in model.graph.initializer}
        acts = sum(n.op_type == "QuantizeLinear" and n.input[0] not in sizes for n in model.graph.node)
        weights = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in sizes]
        return acts, len(weights), sum(sizes.get(n.input[1], 1) > 1 for n in weights)
    from nncf.torch.quantization.layers import BaseQuantizer

    acts = weights = per_channel = 0
    for name, module in model.named_modules():
        if isinstance(module, BaseQuantizer):
            # NNCF's hook names end in the port: a pre-hook on port 1 of an op quantizes its weight
            if ".pre_hooks." in name and name.split(".")[-2].endswith("__1"):
                weights += 1
                scale = module.scale if hasattr(module, "scale") else module.input_low
                per_channel += scale.numel() > 1
            else:
                acts += 1
    return acts, weights, per_channel


def bias_layers(path: Path, backend: str) -> tuple[int, int]:
    """(conv/linear layers whose bias NNCF's backend recognises, conv/linear layers): bias
    correction can only shift the biases it recognises."""
    if backend == "openvino":
        from nncf.openvino.graph.metatypes.groups import OPERATIONS_WITH_BIAS
        from nncf.openvino.graph.nncf_graph_builder import GraphConverter
        from nncf.openvino.graph.node_utils import is_node_with_bias

        graph = GraphConverter.create_nncf_graph(load_model(path, backend))
        layers = [n for n in graph.get_all_nodes() if n.metatype in OPERATIONS_WITH_BIAS]
        return sum(is_node_with_bias(n, graph) for n in layers), len(layers)
    if backend == "onnx":
        from nncf.onnx.graph.metatypes.groups import OPERATIONS_WITH_BIAS
        from nncf.onnx.graph.nncf_graph_builder import GraphConverter
        from nncf.onnx.graph.node_utils import is_node_with_bias

        graph = GraphConverter.create_nncf_graph(load_model(path, backend))
        layers = [n for n in graph.get_all_nodes() if n.metatype in OPERATIONS_WITH_BIAS]
        return sum(is_node_with_bias(n) for n in layers), len(layers)
    import torch
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph
    from nncf.torch.graph import operator_metatypes as om
    from nncf.torch.model_graph_manager import is_node_with_fused_bias

    graph = build_nncf_graph(load_model(path, backend), torch.zeros(1, 3, 32, 32))
    kinds = (om.PTConv2dMetatype, om.PTDepthwiseConv2dSubtype, om.PTLinearMetatype)
    layers = [n for n in graph.get_all_nodes() if n.metatype in kinds]
    return sum(is_node_with_fused_bias(n, graph) for n in layers), len(layers)


def run(args: argparse.Namespace) -> None:
    import nncf
    import onnx

    import openvino_synthcalib as synthcalib

    csv_path = args.out / "backends.csv"
    done = done_keys(csv_path, KEY)
    nncf_options = {}
    if args.no_bias_correction:  # a diagnostic: NNCF applies bias correction per backend differently
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

        nncf_options["advanced_parameters"] = AdvancedQuantizationParameters(disable_bias_correction=True)
    x_test, y_test = load_test(args.test, args.test_limit)
    # a torch module does not tell its input size: the transform says it (the zoo takes 32x32)
    transform = {"preset": args.preset, "size": args.size}
    x_in = synthcalib.Transform.from_options(**transform)(x_test)
    with appending(csv_path, FIELDS) as (f, writer):
        for path in args.models:
            name = path.stem
            todo = [
                (b, s, seed)
                for b in args.backends
                for s in args.sources
                for seed in args.seeds
                if (name, b, s, args.recipe, str(args.samples), str(seed)) not in done
            ]
            if not todo:
                continue
            fp32_pred = {
                b: predictions(load_model(path, b), b, x_in) for b in dict.fromkeys(["openvino", *args.backends])
            }
            for b in args.backends:
                top1 = 100 * float((fp32_pred[b] == y_test).mean())
                print(f"{name} {b}: FP32 top-1 {top1:.2f}%", file=sys.stderr)
            for backend, source, seed in todo:
                model = load_model(path, backend)
                started = time.perf_counter()
                with contextlib.redirect_stdout(sys.stderr):
                    with synthcalib.Dataset(
                        args.source_specs[source], args.samples, model=model, transform=transform, seed=seed
                    ) as calibration:
                        # the recipe as synthcalib.quantize applies it (adaptive: scored on the same backend)
                        recipe = synthcalib.recipe(
                            model, calibration, args.recipe, subset_size=args.samples, **nncf_options
                        )
                        int8 = recipe.model
                        if int8 is None:
                            int8 = nncf.quantize(model, calibration, subset_size=args.samples, **nncf_options, **recipe)
                elapsed = time.perf_counter() - started
                pred = predictions(int8, backend, x_in)
                acts, weights, per_channel = quantizers(int8, backend)
                in_ov = ""
                if backend == "onnx":  # the same INT8 ONNX model run by OpenVINO: runtime vs parameters
                    import openvino as ov

                    with tempfile.TemporaryDirectory() as tmp:
                        onnx.save(int8, f"{tmp}/int8.onnx")
                        ov_pred = predictions(ov.Core().read_model(f"{tmp}/int8.onnx"), "openvino", x_in)
                    in_ov = round(100 * float((ov_pred == y_test).mean()), 2)
                row = {
                    "model": name,
                    "backend": backend,
                    "source": source,
                    "recipe": args.recipe,
                    "chosen": recipe.chosen,
                    "samples": args.samples,
                    "seed": seed,
                    "fp32_top1": round(100 * float((fp32_pred[backend] == y_test).mean()), 2),
                    "int8_top1": round(100 * float((pred == y_test).mean()), 2),
                    "flip_rate": round(100 * float((pred != fp32_pred[backend]).mean()), 2),
                    "fp32_vs_openvino": round(100 * float((fp32_pred[backend] != fp32_pred["openvino"]).mean()), 2),
                    "act_quantizers": acts,
                    "weight_quantizers": weights,
                    "per_channel_weights": per_channel,
                    "onnx_int8_in_openvino_top1": in_ov,
                    "quantize_s": round(elapsed, 1),
                }
                writer.writerow(row)
                f.flush()
                print(
                    f"  {name} {backend:8s} {source:7s} seed={seed}: {row['int8_top1']:.2f}% "
                    f"flips {row['flip_rate']:.2f}% ({acts} act / {weights} weight quantizers, {per_channel} per-channel, "
                    f"{elapsed:.0f} s)",
                    file=sys.stderr,
                )
                del model, int8


def summarise(csv_path: Path, out: Path, model_paths: dict[str, Path] | None = None) -> str:
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return ""
    groups: dict[tuple[str, str, str], list[dict[str, str]]] = {}
    for r in rows:
        r["recipe"] = r.get("recipe") or "nncf"
        if r["recipe"] == "nncf":
            groups.setdefault((r["model"], r["backend"], r["source"]), []).append(r)
    adaptive = {}
    for r in rows:
        if r["recipe"] == "adaptive":
            adaptive.setdefault((r["model"], r["backend"], r["source"]), []).append(r)
    models = list(dict.fromkeys(r["model"] for r in rows))
    backends = [b for b in BACKENDS if any(r["backend"] == b for r in rows)]
    sources = [s for s in SOURCES if any(r["source"] == s for r in rows)] or list(
        dict.fromkeys(r["source"] for r in rows)
    )
    commands = recorded(out, "backends")

    def mean(g, field):
        v = np.array([float(r[field]) for r in g])
        return v.mean(), v.std()

    lines = [
        "# INT8 top-1 through each NNCF backend (OpenVINO, ONNX, PyTorch)",
        "",
        "Produced by (each command appends its rows to `backends.csv`):",
        "",
        *[f"    {c}" for c in commands],
        "",
        f"`nncf.quantize` {'without bias correction' if '--no-bias-correction' in ' '.join(commands) else 'defaults'},"
        f" {rows[0]['samples']} calibration samples from `synthcalib.Dataset(..., model=M)`,"
        " CIFAR-10 test set. Top-1 % (mean ± std where there are several seeds), flip rate % in brackets (test images whose INT8 top-1"
        " differs from the FP32 top-1 of the same backend). OpenVINO is evaluated in OpenVINO (f32 inference"
        " precision), ONNX with ONNX Runtime (CPU EP), PyTorch in torch after onnx2torch.",
        "",
        "| model | backend | FP32 | " + " | ".join(sources) + " | student − real (pp) | seeds |",
        "|---|---|---|" + "---|" * len(sources) + "---|---|",
    ]
    for m in models:
        for b in backends:
            cells, means = [], {}
            g0 = next((g for (mm, bb, _), g in groups.items() if mm == m and bb == b), None)
            if g0 is None:
                continue
            for s in sources:
                g = groups.get((m, b, s))
                if not g:
                    cells.append("–")
                    continue
                (t, sd), (fl, _) = mean(g, "int8_top1"), mean(g, "flip_rate")
                means[s] = t
                cells.append(f"{t:.2f} ± {sd:.2f} ({fl:.2f})" if len(g) > 1 else f"{t:.2f} ({fl:.2f})")
            gap = f"{means['student'] - means['real']:+.2f}" if {"student", "real"} <= set(means) else "–"
            seeds = ",".join(sorted({r["seed"] for s in sources for r in groups.get((m, b, s), [])}, key=int))
            lines.append(f"| {m} | {b} | {g0[0]['fp32_top1']} | " + " | ".join(cells) + f" | {gap} | {seeds} |")
    if adaptive:
        lines += [
            "",
            "## With the adaptive recipe (synthcalib.quantize's default for synthetic sources)",
            "",
            f"The same calibration items; the recipe quantizes each candidate ({', '.join(ADAPTIVE_CANDIDATES)}) through"
            " the model's own backend and keeps the one whose outputs stay closest to FP32's (mean KL) on 1,000 other"
            " synthetic items, scored with that backend's runtime. Top-1 % (flip rate %), the candidates chosen, and the real-image"
            " row with NNCF defaults from the table above for comparison.",
            "",
            "| model | backend | real, nncf | student, adaptive | chosen | student − real (pp) | seeds |",
            "|---|---|---|---|---|---|---|",
        ]
        for (m, b, _source), g in adaptive.items():
            (t, sd), (fl, _) = mean(g, "int8_top1"), mean(g, "flip_rate")
            real = groups.get((m, b, "real"))
            rt = mean(real, "int8_top1")[0] if real else None
            rcell = f"{rt:.2f} ({mean(real, 'flip_rate')[0]:.2f})" if real else "–"
            chosen = ", ".join(
                f"{c} {[r['chosen'] for r in g].count(c)}" for c in dict.fromkeys(r["chosen"] for r in g)
            )
            seeds = ",".join(sorted({r["seed"] for r in g}, key=int))
            gap = f"{t - rt:+.2f}" if rt is not None else "–"
            lines.append(f"| {m} | {b} | {rcell} | {t:.2f} ({fl:.2f}) | {chosen} | {gap} | {seeds} |")
    lines += [
        "",
        "## What each backend quantized, and its FP32 reference",
        "",
        "Quantizers NNCF inserted on activations and on weights (those with per-channel scales in brackets),"
        " how often the backend's FP32 model disagrees with OpenVINO's FP32 top-1 on the test set, and the"
        " top-1 % of the ONNX backend's INT8 model when OpenVINO runs it (same quantization parameters,"
        " other runtime).",
        "",
        "| model | backend | activation quantizers | weight quantizers (per-channel) | layers whose bias NNCF sees |"
        " FP32 ≠ OpenVINO FP32 (%) | INT8 ONNX run by OpenVINO: top-1 (mean) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in models:
        for b in backends:
            g = [r for (mm, bb, _), gg in groups.items() if mm == m and bb == b for r in gg]
            if not g:
                continue
            acts = ", ".join(sorted({r["act_quantizers"] for r in g}))
            weights = ", ".join(sorted({f"{r['weight_quantizers']} ({r['per_channel_weights']})" for r in g}))
            in_ov = f"{mean(g, 'onnx_int8_in_openvino_top1')[0]:.2f}" if b == "onnx" else "–"
            path = (model_paths or {}).get(m)
            biased = "–"
            if path is not None and path.exists():
                seen, total = bias_layers(path, b)
                biased = f"{seen} of {total}"
            lines.append(f"| {m} | {b} | {acts} | {weights} | {biased} | {g[0]['fp32_vs_openvino']} | {in_ov} |")
    lines += _bias_correction_section(rows, out / "backends_no_bias_correction" / "backends.csv")
    lines.append("")
    text = "\n".join(lines)
    (out / "backends.md").write_text(text)
    return text


def _bias_correction_section(rows: list[dict[str, str]], other: Path) -> list[str]:
    """Flip rates with and without bias correction, same seed, from the diagnostic run (if any)."""
    if not other.exists():
        return []
    with open(other) as f:
        without = {(r["model"], r["backend"], r["source"], r["seed"]): r for r in csv.DictReader(f)}
    pairs = [(r, without[k]) for r in rows if (k := (r["model"], r["backend"], r["source"], r["seed"])) in without]
    if not pairs:
        return []
    lines = [
        "",
        "## With and without bias correction (same seed)",
        "",
        "From `backends_no_bias_correction/` ("
        + "; ".join(f"`{c}`" for c in recorded(other.parent, "backends"))
        + "): flip rate % / top-1 % with NNCF's default fast bias correction, then with it disabled.",
        "",
        "| model | backend | source | seed | default | no bias correction |",
        "|---|---|---|---|---|---|",
    ]
    for r, w in pairs:
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['source']} | {r['seed']} | {r['flip_rate']} / {r['int8_top1']} |"
            f" {w['flip_rate']} / {w['int8_top1']} |"
        )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=["resnet20", "mobilenetv2"], help="names in ../shared or .onnx paths")
    p.add_argument("--backends", nargs="*", default=list(BACKENDS), choices=BACKENDS)
    p.add_argument("--sources", nargs="*", default=list(SOURCES), help="real, student, or NAME=SPEC")
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--test", type=Path, default=CIFAR_TEST)
    p.add_argument("--test-limit", type=int, default=None, help="evaluate an evenly spaced subset")
    p.add_argument("--preset", default="cifar10")
    p.add_argument("--size", default="32x32", help="model input size HxW (a torch module does not tell it)")
    p.add_argument(
        "--recipe",
        default="nncf",
        choices=RECIPES,
        help="the quantization recipe (openvino_synthcalib.recipes); default nncf: NNCF defaults",
    )
    p.add_argument(
        "--no-bias-correction",
        action="store_true",
        help="diagnostic: nncf.quantize with bias correction disabled (give another --out)",
    )
    p.add_argument("--quick", action="store_true")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.quick:
        args.models = args.models[:1]
        args.seeds = [0]
        args.test_limit = args.test_limit or 1000
    args.models = [Path(m) if m.endswith(".onnx") else ZOO / f"{m}.onnx" for m in args.models]
    use_sources(args, p, SOURCES)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        record(args.out, "backends")
        run(args)
    print(summarise(args.out / "backends.csv", args.out, {p.stem: p for p in args.models}))


if __name__ == "__main__":
    main()
