"""Train the small CIFAR-10 classifier that `make demo` quantizes, and export it to OpenVINO IR.

    python scripts/train_demo_classifier.py --data ../shared/datasets/cifar10-jpeg \
        --out generators/cifar10/demo_classifier [--epochs 15] [--threads 1]

A ResNet-8 (three stages of one basic block, 16/32/64 channels), SGD with Nesterov momentum,
one-cycle learning rate, label smoothing 0.1, random crop (pad 4) and horizontal flip.
Writes classifier.xml/.bin (FP32, batch-norm folded by OpenVINO's conversion) and train_log.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
STD = np.array([0.2470, 0.2435, 0.2616], np.float32)


def load_split(root: Path) -> tuple[np.ndarray, np.ndarray]:
    from openvino_synthcalib.imagefolder import ImageFolder

    folder = ImageFolder(root)
    from PIL import Image

    samples = folder.samples()
    x = np.empty((len(samples), 32, 32, 3), np.uint8)
    for i, (path, _) in enumerate(samples):
        with Image.open(path) as im:
            x[i] = np.asarray(im.convert("RGB").resize((32, 32)))
    return x, np.array([c for _, c in samples], np.int64)


def build_model(width: int = 16, num_classes: int = 10):
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.skip = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else nn.Identity()
            )
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            y = self.act(self.b1(self.c1(x)))
            return self.act(self.b2(self.c2(y)) + self.skip(x))

    w = width
    return nn.Sequential(
        nn.Conv2d(3, w, 3, 1, 1, bias=False),
        nn.BatchNorm2d(w),
        nn.ReLU(inplace=True),
        Block(w, w, 1),
        Block(w, 2 * w, 2),
        Block(2 * w, 4 * w, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * w, num_classes),
    )


def normalise(x_uint8):
    import torch

    x = x_uint8.permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.from_numpy(MEAN).view(1, 3, 1, 1)) / torch.from_numpy(STD).view(1, 3, 1, 1)


def augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")
    dy, dx = rng.integers(0, 9, n), rng.integers(0, 9, n)
    out = np.empty_like(x)
    flip = rng.random(n) < 0.5
    for i in range(n):
        crop = padded[i, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
        out[i] = crop[:, ::-1] if flip[i] else crop
    return out


def shown(path: Path) -> str:
    """A path as the log beside the shipped model records it: relative to the checkout
    (``../shared/...``), or its name when it is elsewhere, never this machine's folders."""
    rel = os.path.relpath(path.resolve(), REPO)
    return rel if not rel.startswith(os.pardir + os.sep + os.pardir) else path.name


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "cifar10-jpeg")
    p.add_argument("--out", type=Path, default=REPO / "generators" / "cifar10" / "demo_classifier")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import torch
    import torch.nn.functional as F

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    x_train, y_train = load_split(args.data / "train")
    x_test, y_test = load_split(args.data / "test")
    print(f"loaded {len(x_train)} train / {len(x_test)} test images in {time.time() - t0:.0f} s", flush=True)

    model = build_model(args.width)
    params = sum(p.numel() for p in model.parameters())
    steps_per_epoch = len(x_train) // args.batch_size
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.25)
    log = []
    for epoch in range(args.epochs):
        model.train()
        order = rng.permutation(len(x_train))
        t = time.time()
        total = 0.0
        for s in range(steps_per_epoch):
            idx = order[s * args.batch_size : (s + 1) * args.batch_size]
            xb = normalise(torch.from_numpy(augment(x_train[idx], rng)))
            loss = F.cross_entropy(model(xb), torch.from_numpy(y_train[idx]), label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        model.eval()
        with torch.no_grad():
            pred = torch.cat(
                [model(normalise(torch.from_numpy(x_test[i : i + 500]))).argmax(1) for i in range(0, len(x_test), 500)]
            )
        acc = float((pred.numpy() == y_test).mean())
        log.append(
            {"epoch": epoch + 1, "loss": total / steps_per_epoch, "test_top1_torch": acc, "seconds": time.time() - t}
        )
        print(json.dumps(log[-1]), flush=True)

    import openvino as ov

    args.out.mkdir(parents=True, exist_ok=True)
    model.eval()
    onnx_path = args.out / "classifier.onnx"
    torch.onnx.export(
        model,
        torch.zeros(1, 3, 32, 32),
        str(onnx_path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        opset_version=17,
        dynamo=False,
    )
    ov_model = ov.convert_model(str(onnx_path))
    ov_model.set_rt_info("cifar10", ["synthcalib", "preset"])
    ov.save_model(ov_model, str(args.out / "classifier.xml"), compress_to_fp16=False)
    onnx_path.unlink()
    (args.out / "train_log.json").write_text(
        json.dumps(
            {
                "options": vars(args) | {"data": shown(args.data), "out": shown(args.out)},
                "parameters": params,
                "epochs": log,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out / 'classifier.xml'} ({params} parameters) in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
