"""The Sony MCT peer report (``mct_peer.md``): why MCT's BatchNorm-statistics data generation cannot
be run faithfully on the CIFAR-10 zoo, with the zoo's op census that shows it.

    python benchmarks/mct_peer.py                # census of ../shared/models/cifar10/*.onnx -> mct_peer.{json,md}
    python benchmarks/mct_peer.py --report-only  # rebuild mct_peer.md from the committed mct_peer.json

The census (every ONNX op type and its count, per model) needs only ``onnx``. Every figure in the
report comes from ``mct_peer.json`` (written by this script) or from the commands it shows; the
rest is the reading of MCT's source that the report explains.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

from commands import record, recorded
from paths import RESULTS, ZOO, ZOO_MODELS, shown

NAME = "mct_peer"
#: ONNX normalisation ops: any of them would give MCT statistics to match (BatchNormalization) or
#: show that the zoo keeps normalisation layers at all.
NORMALISATION_OPS = (
    "BatchNormalization",
    "InstanceNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "LpNormalization",
    "LRN",
    "MeanVarianceNormalization",
)


def census(path: Path) -> dict[str, int]:
    """How many nodes of each op type the ONNX graph at ``path`` has."""
    import onnx

    ops = collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node)
    return dict(sorted(ops.items()))


def measure(models: list[str], zoo: Path) -> dict:
    """The census of each model, as ``mct_peer.json`` keeps it."""
    return {"zoo": shown(zoo), "models": {m: census(zoo / f"{m}.onnx") for m in models}}


def report(data: dict, commands: list[str]) -> str:
    """``mct_peer.md`` from ``mct_peer.json``'s ``data`` and the commands recorded beside it."""
    models = data["models"]
    norm_total = {m: sum(ops.get(op, 0) for op in NORMALISATION_OPS) for m, ops in models.items()}
    without = [m for m, n in norm_total.items() if n == 0]
    conv = {m: ops.get("Conv", 0) for m, ops in models.items()}
    lines = [
        "# Peer source: Sony MCT data generation (issue 5)",
        "",
        "Produced by (the census is kept in `mct_peer.json`; `--report-only` rebuilds this file from it):",
        "",
        *[f"    {c}" for c in commands],
        "",
        "**Short answer: MCT's data generation runs here, but not as the method it is meant to be.** The",
        "zoo's BatchNorm layers were folded into the convolutions at export:",
        (
            f"none of the {len(models)} models has a BatchNorm node, or any other normalisation op, left"
            if len(without) == len(models)
            else f"{len(without)} of the {len(models)} models have no normalisation op left"
        )
        + " (census below).",
        "MCT 2.6.1 (PyTorch path) does not refuse such a model. It optimises only the input-image",
        'statistics term and the output loss, so its "BatchNorm statistics" are never used.',
        "The folded statistics cannot be recovered from the ONNX weights (see below), so no faithful",
        "variant of the method can be run on this zoo.",
        "",
        "**Measurements removed.** An earlier version of this report also gave MCT's data-generation times,",
        "the statistics and predicted classes of its images, how alike the images made through different",
        "models were, and the INT8 top-1 and flip rates of five models calibrated on them. Those tables were",
        "typed from files kept outside the repository (`runs/mct/<model>.json`, a copy of",
        "`calibration_sources.csv` under `/tmp`), and some figures (correlations between the image arrays)",
        "were computed by no script; the files are gone, so the figures are removed rather than kept",
        "without a source. [To measure again](#to-measure-again) gives the commands: the calibration rows",
        "then land in the committed `calibration_sources.csv`, whose report shows them.",
        "",
        "## BatchNorm census (the CIFAR-10 zoo)",
        "",
        f"ONNX nodes of each model in `{data['zoo']}`, counted by `onnx`. Normalisation ops:",
        f"{', '.join(f'`{op}`' for op in NORMALISATION_OPS)}.",
        "onnx2torch converts node by node, and only a `BatchNormalization` node becomes the",
        "`nn.BatchNorm2d` whose running statistics MCT reads.",
        "",
        "| model | nodes | Conv | BatchNormalization | other normalisation ops | op types |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for m, ops in models.items():
        others = norm_total[m] - ops.get("BatchNormalization", 0)
        kinds = ", ".join(f"{op} {n}" for op, n in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0])))
        lines.append(
            f"| {m} | {sum(ops.values())} | {conv[m]} | {ops.get('BatchNormalization', 0)} | {others} | {kinds} |"
        )
    lines += [
        "",
        "`shufflenetv2` hits a second blocker: MCT runs `torch.fx.symbolic_trace` on the model",
        "(`pytorch_data_generation.py:188`), and onnx2torch's `Div` converter branches on a tensor",
        "(`binary_math_operations.py:20`, inside the channel-shuffle shape arithmetic: the `Shape`, `Gather`",
        "and `Div` nodes above), so tracing fails with `TraceError: symbolically traced variables cannot be",
        "used as inputs to control flow`. It would need static-shape constant folding of the ONNX first, for",
        "example with onnx-simplifier. To see it through MCT itself:",
        "",
        "    .venv-mct/bin/python benchmarks/mct_datagen.py --models shufflenetv2 --num-images 32 --n-iter 1 --check-images 0 --out /tmp/shuf",
        "",
        "which prints `shufflenetv2: FAILED: TraceError: ...`. `mct_datagen.py --census-only` also counts",
        "the `nn.BatchNorm*` modules of the converted torch module and checks its top-1 on test images.",
        "",
        "### What MCT does without BatchNorm layers",
        "",
        "MCT checks `if orig_bn_stats_holder.get_num_bn_layers() == 0: Logger.critical('Data generation"
        " requires a model with at least one BatchNorm layer.')`",
        "(`data_generation/pytorch/pytorch_data_generation.py:227` and",
        "`common/model_info_exctractors.py:37`). In the PyTorch path this check can never fire:",
        "",
        "- `get_num_bn_layers()` returns `len(self.bn_params)`.",
        "- `PytorchOriginalBNStatsHolder.get_bn_params` always inserts an `image_input` pseudo layer",
        "  first, with target per-channel mean 0 and variance 1 for the normalised image",
        "  (`pytorch/model_info_exctractors.py:63`).",
        "",
        "So on a folded model the count is 1, there is no error and no warning, and the optimisation",
        "runs with:",
        "",
        '- the "BN alignment" loss reduced to one term: the L2 distance between the batch\'s per-channel',
        "  input mean and std and N(0, 1) in the model's normalised input space. This is a colour and",
        "  contrast prior, not the model's statistics.",
        "- the output loss: `NEGATIVE_MIN_MAX_DIFF` on the logits, weighted by 1e-5 (MCT's default).",
        "",
        "`mct_datagen.py` warns that such a model has no BatchNorm layer, records its census",
        '(`"torch_batchnorm_modules": 0`) in the model\'s JSON so that the run is never mistaken for the',
        "real method, and refuses it with `--require-bn`.",
        "",
        "### Why it cannot be made faithful",
        "",
        "BatchNorm folding replaces `conv(W, b) -> BN(gamma, beta, mu, sigma^2)` with",
        "`W' = W * gamma / sigma` and `b' = beta + gamma * (b - mu) / sigma`, per output channel. Only `W'`",
        "and `b'` are stored. For any chosen `(gamma, sigma, mu)`, `W = W' * sigma / gamma` and",
        "`beta = b' - gamma * (b - mu) / sigma` give the same network. The running mean and variance that",
        "MCT matches, the mean and std of the pre-BN activation over the training data, are therefore",
        "not identifiable from the ONNX file. They are not even identifiable up to a per-channel affine",
        "map. Re-inserting `BatchNorm2d` layers with made-up statistics (such as mean 0 and variance 1)",
        "would impose an invented prior, not the model's. Re-measuring the statistics on real images",
        "would not be data-free.",
        "",
        "MCT has no option that matches other statistics. `bn_layer_types` only selects which module",
        "types' `running_mean` and `running_var` to read, so a `Conv2d` would raise `AttributeError`.",
        "The other choices (output loss, scheduler, initialisation, image pipeline) change the",
        "optimisation but not the prior.",
        "",
        "**What a faithful run would need:** the pre-fold PyTorch checkpoints, or an ONNX export that",
        "keeps `BatchNormalization` nodes. With the TorchScript exporter, `training=TrainingMode.PRESERVE`",
        "skips the Conv+BN fusion that `_jit_pass_onnx_eval_peephole` applies in EVAL mode (in torch",
        "2.13 this is `torch/onnx/_internal/torchscript_exporter/utils.py:1172`). onnx2torch converts a",
        "`BatchNormalization` node whose parameters are initializers into `nn.BatchNorm2d` with those",
        "running statistics, which is exactly what MCT reads. Neither is in `shared/`. On ImageNet,",
        "`imagenet.md` runs MCT on EfficientNet-Lite0's torch module, which keeps its BatchNorm layers",
        "(`imagenet.py --mct`).",
        "",
        "## Environment",
        "",
        "`bash scripts/setup_mct_env.sh` creates `.venv-mct` with torch 2.13.0 (the CPU wheel) and",
        "model-compression-toolkit 2.6.1 (the pins of that script), onnx2torch, onnx and numpy. Both",
        "onnx2torch and MCT import torchvision (MCT through edgemdt_cl), although data generation needs",
        "only its pure-Python transforms; PyPI's torchvision wheel is built against CUDA torch, so with the",
        "CPU torch wheel `import torchvision` fails with `RuntimeError: operator torchvision::nms does not",
        "exist`. `benchmarks/mct_datagen.py` defines the schemas of the two operators that the import",
        "registers unconditionally (`torchvision::nms` and `torchvision::qnms`) before it imports",
        "torchvision. Neither operator is ever called here.",
        "",
        "## To measure again",
        "",
        "    bash scripts/setup_mct_env.sh",
        "    .venv-mct/bin/python benchmarks/mct_datagen.py --models resnet20 resnet56 mobilenetv2 vgg11_bn repvgg_a0 --num-images 1000 --n-iter 50 --seed 0 --out runs/mct",
        "    python benchmarks/calibration_sources.py --models resnet20 resnet56 mobilenetv2 vgg11_bn repvgg_a0 --sources 'mct=array:runs/mct/{model}.npy' --seeds 0 1 2",
        "",
        "`mct_datagen.py` runs `mct.data_generation.pytorch_data_generation_experimental` with",
        "`get_pytorch_data_generation_config(...)`, MCT 2.6.1's PyTorch defaults but for `n_iter` (500 by",
        "default; `--n-iter`) and the image normalisation: MCT offers only ImageNet, Keras or none, so its",
        "`TORCHVISION` entry is replaced by CIFAR-10's mean and std (x 255). It maps the images back to RGB",
        "[0, 1] and saves float32 `[N, 3, 32, 32]` to `runs/mct/<model>.npy`, with the settings, the",
        "census and the timing in `runs/mct/<model>.json` (outside the repository: commit what a report",
        "quotes). `calibration_sources.py` appends its rows (the `array:` source reads a seeded permutation",
        "of the images per seed) to `calibration_sources.csv`, and `calibration_sources.md` shows them",
        "beside the real images, the student and Gaussian noise of the same models and seeds.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(ZOO_MODELS), help="zoo models to count (default: all six)")
    p.add_argument("--zoo", type=Path, default=ZOO, help="folder of the zoo's ONNX files")
    p.add_argument("--report-only", action="store_true", help=f"rebuild {NAME}.md from {NAME}.json")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        data = measure(args.models, args.zoo)
        (args.out / f"{NAME}.commands.txt").unlink(missing_ok=True)  # the census is remade whole, not appended to
        record(args.out, NAME)
        (args.out / f"{NAME}.json").write_text(json.dumps(data, indent=2) + "\n")
    data = json.loads((args.out / f"{NAME}.json").read_text())
    text = report(data, recorded(args.out, NAME))
    (args.out / f"{NAME}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
