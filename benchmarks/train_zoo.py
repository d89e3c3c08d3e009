"""Train CIFAR-10 classifiers unlike the six ReLU CNNs of the shared zoo, and export them to ONNX.

The shared zoo (``../shared/models/cifar10``) holds six ReLU CNNs with batch norm folded into the
convolutions. This script adds architectures whose INT8 behaviour differs:

* ``convmixer``: ConvMixer-256/8 (patch 4, depthwise kernel 7): GELU, large depthwise kernels,
  batch norm *after* each activation (so it cannot be folded into a convolution), residual adds.
* ``vit``: a small Vision Transformer (patch 4, 64 tokens, width 128, depth 6, 4 heads, MLP ratio 2):
  pre-LayerNorm blocks, hand-written softmax attention, GELU, learned position embeddings, mean pooling.

Both are trained on ``cifar10-jpeg/train`` (random crop with 4-pixel zero padding, horizontal flip,
label smoothing 0.1, AdamW, linear warm-up then cosine decay, bf16 autocast) and exported with the
shared zoo's interface: input ``input`` float32 [N, 3, 32, 32] (RGB in [0, 1], normalised with the
``cifar10`` preset), output ``logits`` [N, 10], dynamic batch, ONNX opset 17. FP32 top-1 on the
10,000 test images is measured in PyTorch and with OpenVINO (CPU, f32 inference precision).

    python benchmarks/train_zoo.py --models convmixer vit --data ../shared/datasets/cifar10-jpeg --out runs/zoo/cifar10

Writes ``<out>/<model>.onnx`` and ``<out>/zoo.json`` (parameters, epochs, training time, top-1,
sha256, command, per-epoch history); ``<out>/cache/`` keeps the decoded images (uint8) and
``<out>/checkpoints/`` a checkpoint per finished epoch, so an interrupted run resumes where it stopped.
Models already exported are skipped unless ``--force``. Benchmarks run this script (``zoo.resolve_models``) to build
the models when they are absent.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from commands import command
from paths import CIFAR, EXTRA_ZOO, REPO
from torch import nn

from openvino_synthcalib.defaults import PRESETS
from openvino_synthcalib.files import atomic_path, write_text, write_with
from openvino_synthcalib.imagefolder import ImageFolder
from openvino_synthcalib.train_generator.teachers import sha256_file
from openvino_synthcalib.transforms import Transform

DEFAULT_DATA = CIFAR  # $SYNTHCALIB_SHARED/datasets/cifar10-jpeg, by default ../shared beside the checkout
DEFAULT_OUT = EXTRA_ZOO
MEAN = PRESETS["cifar10"]["mean"]
STD = PRESETS["cifar10"]["std"]
IMAGE_SIZE = 32
NUM_CLASSES = 10
OPSET = 17
CACHE_VERSION = 1


# --------------------------------------------------------------------------------------------- models


class Residual(nn.Module):
    """``x + fn(x)``."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fn(x)


class DepthwiseConv2d(nn.Conv2d):
    """Depthwise 'same' convolution that stays in float32 under autocast.

    oneDNN's bf16 depthwise backward is slower than its float32 channels-last one on CPU; the
    surrounding pointwise convolutions keep bf16. Without autocast (evaluation, export) this is a
    plain ``nn.Conv2d``.
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_autocast_enabled(x.device.type):
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float())


class ConvMixer(nn.Sequential):
    """ConvMixer (Trockman and Kolter, 2022): patch embedding, then ``depth`` blocks of a residual
    depthwise convolution and a pointwise convolution, each followed by GELU and batch norm."""

    def __init__(
        self, dim: int = 256, depth: int = 8, kernel_size: int = 7, patch_size: int = 4, num_classes: int = NUM_CLASSES
    ) -> None:
        layers: list[nn.Module] = [nn.Conv2d(3, dim, patch_size, stride=patch_size), nn.GELU(), nn.BatchNorm2d(dim)]
        for _ in range(depth):
            layers += [
                Residual(nn.Sequential(DepthwiseConv2d(dim, kernel_size), nn.GELU(), nn.BatchNorm2d(dim))),
                nn.Conv2d(dim, dim, 1),
                nn.GELU(),
                nn.BatchNorm2d(dim),
            ]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(dim, num_classes)]
        super().__init__(*layers)


class Attention(nn.Module):
    """Multi-head self-attention written out as matmul, softmax, matmul (no fused kernel in the ONNX graph)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [N, T, 3D] -> [3, N, heads, T, D / heads]; no batch size in the graph, so it stays dynamic
        q, k, v = self.qkv(x).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4).unbind(0)
        attn = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).flatten(2))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: attention and a GELU MLP, each in a residual branch."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Vision Transformer for 32x32 images: patch embedding, learned position embeddings,
    pre-LayerNorm blocks, final LayerNorm, mean over tokens, linear head."""

    def __init__(
        self,
        dim: int = 128,
        depth: int = 6,
        heads: int = 4,
        mlp_ratio: int = 2,
        patch_size: int = 4,
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, (IMAGE_SIZE // patch_size) ** 2, dim))
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_ratio) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        return self.head(self.norm(self.blocks(x)).mean(dim=1))


@dataclass(frozen=True)
class Recipe:
    """An architecture and the schedule that trains it in under an hour on a 2-core CPU."""

    build: Callable[..., nn.Module]
    arch: dict[str, int] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    grad_clip: float = 1.0
    channels_last: bool = False

    def model(self, **overrides: int) -> nn.Module:
        """A freshly initialised model (``overrides`` change the architecture, e.g. for tests)."""
        return self.build(**{**self.arch, **overrides})

    def describe(self) -> str:
        return f"{self.build.__name__}({', '.join(f'{k}={v}' for k, v in self.arch.items())})"


RECIPES: dict[str, Recipe] = {
    "convmixer": Recipe(
        ConvMixer,
        {"dim": 256, "depth": 8, "kernel_size": 7, "patch_size": 4},
        epochs=8,
        lr=5e-3,
        weight_decay=0.01,
        warmup_epochs=1,
        channels_last=True,
    ),
    "vit": Recipe(
        ViT,
        {"dim": 128, "depth": 6, "heads": 4, "mlp_ratio": 2, "patch_size": 4},
        epochs=10,
        lr=1e-3,
        weight_decay=0.05,
        warmup_epochs=2,
    ),
}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices and convolution kernels only (not on biases, norms, position embeddings)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and not name.endswith("pos_embed") else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


# ----------------------------------------------------------------------------------------------- data


@dataclass
class Split:
    """Decoded images (uint8 [N, 32, 32, 3], RGB) and their labels."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def normalised(self) -> np.ndarray:
        """float32 [N, 3, 32, 32] with the benchmarks' preprocessing (``load_image``, then the cifar10 preset)."""
        x = self.images.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1 / 255)
        return Transform.from_options("cifar10")(x)


def _decode(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    if arr.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ValueError(f"{path}: expected a {IMAGE_SIZE}x{IMAGE_SIZE} image, got {arr.shape[1]}x{arr.shape[0]}")
    return arr


def load_split(folder: Path, cache: Path, threads: int = 2) -> Split:
    """The images of ``folder`` (``<class>/*.jpg``), decoded once and cached as uint8 in ``cache``."""
    source = ImageFolder(folder)
    if len(source.classes) != NUM_CLASSES:
        raise ValueError(f"{folder}: expected {NUM_CLASSES} class folders, found {len(source.classes)}")
    samples = source.samples()
    key = {"version": CACHE_VERSION, "classes": list(source.classes), "files": len(samples)}
    if cache.exists():
        with np.load(cache) as npz:
            if json.loads(str(npz["key"])) == key:
                return Split(npz["images"], npz["labels"])
        print(f"{cache}: stale (dataset changed), decoding again", flush=True)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        images = np.stack(list(pool.map(_decode, (path for path, _ in samples), chunksize=256)))
    labels = np.array([label for _, label in samples], np.int64)
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_with(cache, lambda tmp: np.savez(tmp, images=images, labels=labels, key=json.dumps(key)), "image cache")
    print(f"decoded {len(labels)} images of {folder} in {time.perf_counter() - t0:.0f}s -> {cache}", flush=True)
    return Split(images, labels)


def augment(images: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop of the zero-padded images and random horizontal flip: uint8 [N, H, W, C] in and out."""
    n, h, w, _ = images.shape
    padded = F.pad(images, (0, 0, pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n, 1), generator=gen)
    rows = dy + torch.arange(h)
    cols = dx + torch.arange(w)
    flip = torch.rand(n, 1, generator=gen) < 0.5
    cols = torch.where(flip, cols.flip(1), cols)  # a flip is a crop read right to left
    return padded[torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def to_input(images: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float32 [N, 3, H, W] normalised with the cifar10 preset."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    x = (images.permute(0, 3, 1, 2).float() * (1 / 255) - mean) / std
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


# ------------------------------------------------------------------------------------------- training


def train_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    recipe: Recipe,
    amp: bool,
) -> tuple[float, int]:
    """One optimiser step; returns (loss, correct predictions)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if recipe.grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
    opt.step()
    return loss.item(), int((logits.argmax(1) == y).sum())


@torch.no_grad()
def torch_top1(model: nn.Module, x: np.ndarray, labels: np.ndarray, batch: int = 500) -> float:
    """FP32 top-1 (%) of ``model`` on normalised float32 NCHW images."""
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(x), batch):
        logits = model(torch.from_numpy(x[start : start + batch]).to(device))
        correct += int((logits.argmax(1).cpu().numpy() == labels[start : start + batch]).sum())
    return 100 * correct / len(x)


def openvino_top1(onnx_path: Path, x: np.ndarray, labels: np.ndarray, batch: int = 500) -> float:
    """Top-1 (%) of an ONNX model with OpenVINO on CPU at f32 inference precision."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(onnx_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    correct = 0
    for start in range(0, len(x), batch):
        logits = request.infer({"input": x[start : start + batch]})["logits"]
        correct += int((np.asarray(logits).argmax(1) == labels[start : start + batch]).sum())
    return 100 * correct / len(x)


def export_onnx(model: nn.Module, path: Path) -> None:
    """The shared zoo's interface: ``input`` [N, 3, 32, 32] -> ``logits`` [N, 10], dynamic N, opset 17."""
    model = model.cpu().float().to(memory_format=torch.contiguous_format).eval()
    dummy = torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, chosen on purpose
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            input_names=["input"],
            output_names=["logits"],
            opset_version=OPSET,
            dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
            dynamo=False,
        )


def read_zoo(out_dir: Path) -> dict[str, Any]:
    path = out_dir / "zoo.json"
    return json.loads(path.read_text()) if path.exists() else {}


def is_built(out_dir: Path, name: str) -> bool:
    """Exported, and the ONNX file is the one ``zoo.json`` describes."""
    onnx_path = out_dir / f"{name}.onnx"
    entry = read_zoo(out_dir).get(name)
    return onnx_path.exists() and entry is not None and entry.get("sha256") == sha256_file(onnx_path)


@dataclass
class Settings:
    """What a run depends on besides the recipe; recorded in checkpoints and ``zoo.json``."""

    seed: int = 0
    epochs: int | None = None  # None: the recipe's
    threads: int | None = None  # None: all cores
    device: str = "cpu"
    amp: bool = True  # bf16 autocast

    def command(self, name: str, data_dir: Path, out_dir: Path) -> str:
        """The command line that trains ``name`` with these settings (and the OpenMP wait policy, which affects speed)."""
        policy = os.environ.get("OMP_WAIT_POLICY")
        args = [f"OMP_WAIT_POLICY={policy}"] if policy else []
        args += ["python", "benchmarks/train_zoo.py", "--models", name]
        args += ["--data", _display(data_dir), "--out", _display(out_dir), "--seed", str(self.seed)]
        if self.epochs is not None:
            args += ["--epochs", str(self.epochs)]
        if self.threads is not None:
            args += ["--threads", str(self.threads)]
        if self.device != "cpu":
            args += ["--device", self.device]
        if not self.amp:
            args += ["--amp", "off"]
        return shlex.join(args)


def _display(path: Path) -> str:
    """A path relative to the repository root when it is near it (``../shared/...``, ``runs/...``)."""
    rel = os.path.relpath(Path(path).resolve(), REPO)
    return rel if not rel.startswith("../..") else str(Path(path).resolve())


def train(
    name: str,
    recipe: Recipe,
    train_split: Split,
    test_split: Split,
    ckpt_path: Path,
    settings: Settings,
) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """Train ``recipe`` (resuming from ``ckpt_path``); returns the model, its settings and its training record."""
    epochs = settings.epochs or recipe.epochs
    config = {
        "model": name,
        "arch": recipe.describe(),
        "seed": settings.seed,
        "epochs": epochs,
        "batch_size": recipe.batch_size,
        "lr": recipe.lr,
        "weight_decay": recipe.weight_decay,
        "warmup_epochs": recipe.warmup_epochs,
        "label_smoothing": recipe.label_smoothing,
        "grad_clip": recipe.grad_clip,
        "amp": "bf16" if settings.amp else "off",
        "train_images": len(train_split),
    }
    device = torch.device(settings.device)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    torch.use_deterministic_algorithms(True, warn_only=True)  # warns where no deterministic kernel exists
    torch.manual_seed(settings.seed)
    model = recipe.model().to(device)
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(param_groups(model, recipe.weight_decay), lr=recipe.lr)
    record: dict[str, Any] = {"epoch": 0, "train_seconds": 0.0, "train_cpu_seconds": 0.0, "history": []}
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        if state["config"] != config:
            diff = {k: (state["config"].get(k), v) for k, v in config.items() if state["config"].get(k) != v}
            raise SystemExit(f"{ckpt_path} was written with other settings {diff}: rerun with --force to start over")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        record = state["record"]
        print(f"{name}: resuming after epoch {record['epoch']}/{epochs} ({ckpt_path})", flush=True)

    images, labels = torch.from_numpy(train_split.images), torch.from_numpy(train_split.labels)
    test_x = test_split.normalised()
    steps = len(train_split) // recipe.batch_size  # the last partial batch is dropped
    total, warmup = epochs * steps, round(recipe.warmup_epochs * steps)
    for epoch in range(record["epoch"], epochs):
        gen = torch.Generator().manual_seed(settings.seed * 1_000_003 + epoch)  # resumable: one stream per epoch
        order = torch.randperm(len(train_split), generator=gen)
        model.train()
        t0, cpu0 = time.perf_counter(), time.process_time()
        loss_sum, correct = 0.0, 0
        for i in range(steps):
            idx = order[i * recipe.batch_size : (i + 1) * recipe.batch_size]
            x = to_input(augment(images[idx], gen).to(device), recipe.channels_last)
            for group in opt.param_groups:
                group["lr"] = lr_at(epoch * steps + i, total, warmup, recipe.lr)
            loss, hits = train_step(model, opt, x, labels[idx].to(device), recipe, settings.amp)
            loss_sum += loss
            correct += hits
        seconds = time.perf_counter() - t0
        record["train_seconds"] += seconds
        record["train_cpu_seconds"] += time.process_time() - cpu0
        record["epoch"] = epoch + 1
        record["history"].append(
            {
                "epoch": epoch + 1,
                "loss": round(loss_sum / steps, 4),
                "train_top1": round(100 * correct / (steps * recipe.batch_size), 2),
                "test_top1": round(torch_top1(model, test_x, test_split.labels), 2),
                "seconds": round(seconds, 1),
            }
        )
        checkpoint = {"config": config, "model": model.state_dict(), "optimizer": opt.state_dict(), "record": record}
        write_with(ckpt_path, partial(torch.save, checkpoint), "checkpoint")
        h = record["history"][-1]
        print(
            f"{name} epoch {epoch + 1}/{epochs}: loss {h['loss']:.4f}, train {h['train_top1']:.2f}%, "
            f"test {h['test_top1']:.2f}%, {seconds:.0f}s",
            flush=True,
        )
    return model, config, record


def build(name: str, data_dir: Path, out_dir: Path, settings: Settings) -> Path:
    """Train (or resume), export, evaluate and record one model; returns its ONNX path."""
    recipe = RECIPES[name]
    cache = out_dir / "cache"
    train_split = load_split(data_dir / "train", cache / "train.npz", settings.threads or 2)
    test_split = load_split(data_dir / "test", cache / "test.npz", settings.threads or 2)
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    model, config, record = train(
        name, recipe, train_split, test_split, out_dir / "checkpoints" / f"{name}.pt", settings
    )

    test_x = test_split.normalised()
    onnx_path = out_dir / f"{name}.onnx"
    top1_torch = torch_top1(model, test_x, test_split.labels)
    with atomic_path(onnx_path, f"{name} export") as tmp:  # in place once OpenVINO agrees with PyTorch
        export_onnx(model, tmp)
        top1_ov = openvino_top1(tmp, test_x, test_split.labels)
        if abs(top1_torch - top1_ov) > 0.05:
            raise SystemExit(
                f"{name}: OpenVINO top-1 {top1_ov:.2f}% differs from PyTorch {top1_torch:.2f}% by > 0.05 pp"
            )

    zoo = read_zoo(out_dir)
    zoo[name] = {
        "arch": config["arch"],
        "params": count_params(model),
        "epochs": config["epochs"],
        "train_seconds": round(record["train_seconds"], 1),
        "train_cpu_seconds": round(record["train_cpu_seconds"], 1),
        "top1_torch": round(top1_torch, 2),
        "top1_openvino": round(top1_ov, 2),
        "sha256": sha256_file(onnx_path),
        "command": settings.command(name, data_dir, out_dir),
        "training": {k: v for k, v in config.items() if k not in ("model", "arch", "epochs")},
        "environment": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": str(settings.device),
            "cpu": platform.processor() or platform.machine(),
            "load_average": [round(v, 2) for v in os.getloadavg()],  # at the end; wall times suffer from load
        },
        "history": record["history"],
    }
    write_text(out_dir / "zoo.json", json.dumps(zoo, indent=2) + "\n")
    print(
        f"{name}: {zoo[name]['params']:,} parameters, {config['epochs']} epochs in {record['train_seconds'] / 60:.1f} min; "
        f"FP32 top-1 {top1_torch:.2f}% (PyTorch), {top1_ov:.2f}% (OpenVINO) -> {onnx_path}",
        flush=True,
    )
    return onnx_path


def ensure_zoo(
    out_dir: str | os.PathLike[str] = DEFAULT_OUT,
    data_dir: str | os.PathLike[str] = DEFAULT_DATA,
    models: Iterable[str] = tuple(RECIPES),
    settings: Settings | None = None,
    force: bool = False,
) -> dict[str, Path]:
    """ONNX path of each model in ``models``, training and exporting the ones not built yet."""
    out_dir, data_dir = Path(out_dir), Path(data_dir)
    settings = settings or Settings()
    unknown = sorted(set(models) - set(RECIPES))
    if unknown:
        raise ValueError(f"unknown zoo model(s) {unknown}: expected some of {sorted(RECIPES)}")
    if settings.threads:
        torch.set_num_threads(settings.threads)
    paths = {}
    for name in models:
        if force:
            for stale in (out_dir / "checkpoints" / f"{name}.pt", out_dir / f"{name}.onnx"):
                stale.unlink(missing_ok=True)
        if is_built(out_dir, name):
            entry = read_zoo(out_dir)[name]
            wanted = (settings.epochs or RECIPES[name].epochs, settings.seed)
            if (entry["epochs"], entry["training"]["seed"]) != wanted:
                print(
                    f"{name}: built with epochs/seed {entry['epochs']}/{entry['training']['seed']}, not {wanted[0]}/{wanted[1]}: --force rebuilds it",
                    flush=True,
                )
            print(f"{name}: already built ({out_dir / name}.onnx)", flush=True)
            paths[name] = out_dir / f"{name}.onnx"
        else:
            paths[name] = build(name, data_dir, out_dir, settings)
    return paths


OP_CENSUS = ("Conv", "BatchNormalization", "Erf", "LayerNormalization", "MatMul", "Softmax", "Relu")


def op_census(onnx_path: Path) -> dict[str, int]:
    """How many nodes of each type in ``OP_CENSUS`` the ONNX graph has (GELU is exported as an Erf subgraph)."""
    import onnx

    ops = [node.op_type for node in onnx.load(str(onnx_path)).graph.node]
    return {op: ops.count(op) for op in OP_CENSUS}


def write_report(out_dir: Path, path: Path, command: str) -> None:
    """A Markdown summary of ``<out_dir>/zoo.json``: accuracy, size, training time, op census, history."""
    zoo = dict(sorted(read_zoo(out_dir).items()))
    lines = [
        "# Extra CIFAR-10 zoo: architectures unlike the ReLU CNNs",
        "",
        f"`{command}`",
        "",
        "FP32 models trained on `../shared/datasets/cifar10-jpeg/train` by `benchmarks/train_zoo.py` and kept out of",
        f"the repository in `{_display(out_dir)}/` (`ensure_zoo` builds them when absent). Same interface as the shared",
        "zoo: input `input` float32 [N, 3, 32, 32], RGB in [0, 1] normalised with the `cifar10` preset; output",
        "`logits` [N, 10]; dynamic batch; ONNX opset 17. Top-1 on the 10,000 test JPEGs, with PyTorch and with",
        "OpenVINO (CPU, `INFERENCE_PRECISION_HINT=f32`). Training time is that of the optimisation steps (per-epoch",
        "evaluation and export excluded): wall clock, and the process's CPU time, which other load on the machine",
        "affects less.",
        "",
        "| model | architecture | params | epochs | training wall time (min) | training CPU time (min) "
        "| FP32 top-1 PyTorch | FP32 top-1 OpenVINO |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, e in zoo.items():
        lines.append(
            f"| {name} | `{e['arch']}` | {e['params']:,} | {e['epochs']} | {e['train_seconds'] / 60:.1f} "
            f"| {e['train_cpu_seconds'] / 60:.1f} | {e['top1_torch']:.2f}% | {e['top1_openvino']:.2f}% |"
        )
    lines += ["", "## Training", ""]
    for name, e in zoo.items():
        t, env = e["training"], e["environment"]
        curve = ", ".join(f"{h['test_top1']:.1f}" for h in e["history"])
        lines += [
            f"**{name}**: `{e['command']}`",
            f"batch {t['batch_size']}, AdamW lr {t['lr']:g} (warm-up {t['warmup_epochs']:g} epoch{'' if t['warmup_epochs'] == 1 else 's'}, then cosine),"
            f" weight decay {t['weight_decay']:g}, label smoothing {t['label_smoothing']:g}, gradient clipping"
            f" {t['grad_clip']:g}, autocast {t['amp']}, seed {t['seed']}; torch {env['torch']}, {env['threads']}"
            f" threads on {env['device']} ({env['cpu']}), load average at the end {env['load_average']}."
            f" Test top-1 after each epoch: {curve}. sha256 `{e['sha256']}`.",
            "",
        ]
    lines += [
        "## ONNX op census",
        "",
        "What the quantizer sees that the shared zoo does not have: GELU (exported as an `Erf` subgraph), batch norm",
        "after the activation (not foldable into a convolution), LayerNorm, attention (`MatMul`, `Softmax`).",
        "",
        "| model | " + " | ".join(OP_CENSUS) + " |",
        "|---|" + "---:|" * len(OP_CENSUS),
    ]
    for name in zoo:
        census = op_census(out_dir / f"{name}.onnx")
        lines.append(f"| {name} | " + " | ".join(str(census[op]) for op in OP_CENSUS) + " |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=sorted(RECIPES), default=list(RECIPES), help="models to build")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CIFAR-10 image folder with train/ and test/")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (ONNX, zoo.json, cache, checkpoints)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: each model's recipe)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and augmentation")
    p.add_argument("--threads", type=int, default=None, help="PyTorch CPU threads (default: all cores)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    p.add_argument(
        "--amp",
        choices=("bf16", "off"),
        default="bf16",
        help="bf16 autocast (fast where the CPU has AMX / AVX512-BF16, or on a GPU) or float32 throughout",
    )
    p.add_argument("--force", action="store_true", help="retrain from scratch even if exported or checkpointed")
    p.add_argument("--report", type=Path, default=None, help="also write a Markdown summary of zoo.json here")
    args = p.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        p.error("--epochs must be at least 1")
    settings = Settings(args.seed, args.epochs, args.threads, args.device, args.amp == "bf16")
    ensure_zoo(args.out, args.data, args.models, settings, args.force)
    if args.report:
        write_report(args.out, args.report, command("train_zoo", argv=argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
