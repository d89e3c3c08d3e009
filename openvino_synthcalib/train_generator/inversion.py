"""Training a generator through a frozen classifier, without data.

The student ``G(z, class)`` is trained so that its images, shown to the classifier, (1) reproduce
the BatchNorm running statistics of every layer (DeepInversion, Yin et al. 2020; the quantity a
calibration set exists to reproduce), (2) are classified as their conditioning class (GDFQ, Xu et
al. 2020; keeps the classes apart) and (3) stay diverse: a mode-seeking term (Mao et al. 2019)
pushes images of different latents apart, and each batch is jittered and mirrored before the
classifier (DeepInversion), so no single image has to carry the statistics.

Options from DGH (Dikstein et al., WACV 2025), all off by default (the shipped run's behaviour):
``--bn-set-momentum`` matches set-level statistics (moments averaged across batches, see
:class:`~.classifiers.BatchNormStatistics`) instead of each batch's; ``--w-out`` adds DGH's
output-distribution stretching on the logits (:func:`~.losses.output_stretching`; the layers after
the last BatchNorm get no statistic to match); ``--rrc-scale`` shows the classifier random resized
crops of each image, the augmentation its statistics were collected under (with ``--jitter 0``:
instead of the roll). ``--bn-units relative`` measures the statistics loss in each channel's running
deviation, so that layers of small activations count as much as large ones. ``--w-fdiv`` (off by
default) adds :func:`~.losses.feature_diversity`: images of one class from different latents must
differ in the classifier's pooled features, where the pixel mode-seeking term lets a generator draw
one template per class.

Forward and backward run under bfloat16 autocast where the device supports it (``--precision``);
the statistics and losses are computed in float32.
"""

from __future__ import annotations

import contextlib
import copy
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..classes import ClassList
from ..errors import SynthcalibError
from .classifiers import BatchNormStatistics, load_classifier
from .losses import feature_diversity, output_stretching
from .student import generator_from_options, image_size
from .training import Method, image_grid

DEFAULT_Z_DIM = 128


def read_class_list(spec: Any, flag: str = "--class-names") -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    """Class names from a comma-separated list, or from a class-list file in any form
    :class:`~openvino_synthcalib.classes.ClassList` reads (one name a line; ImageNet's
    ``classes.tsv`` of index, WordNet id, name; ...). Returns the display names (distinct) and,
    for a list whose rows give an id and a name, the ids."""
    if isinstance(spec, (list, tuple)) and len(spec) != 1:
        return tuple(str(v) for v in spec), None
    text = str(spec[0] if isinstance(spec, (list, tuple)) else spec)
    if not Path(text).is_file():
        return tuple(v.strip() for v in text.split(",") if v.strip()), None
    classes = ClassList.load(text, flag)
    return classes.names, classes.ids


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bfloat16 when asked for, or (``auto``) when the device runs it natively; None for float32."""
    if precision == "f32":
        return None
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
    else:
        try:
            ok = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except Exception:  # an older torch, or a build without oneDNN
            ok = False
    if precision == "bf16" and not ok:
        raise SynthcalibError(f"--precision bf16: {device.type} on this machine does not support bfloat16")
    return torch.bfloat16 if ok else None


def jitter_and_flip(x: torch.Tensor, gen: torch.Generator, jitter: int, flip: bool) -> torch.Tensor:
    """DeepInversion's augmentation: one random roll of up to ``jitter`` pixels for the batch, and a
    mirror image for a random half of the items."""
    if jitter > 0:
        dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=gen))
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    if flip:
        mask = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


def random_resized_crop(x: torch.Tensor, size: int, gen: torch.Generator, min_scale: float) -> torch.Tensor:
    """torchvision's ``RandomResizedCrop(size, scale=(min_scale, 1), ratio=(3/4, 4/3))`` per item of
    ``x`` [N, C, H, W], differentiable: each item's crop (area fraction and log-aspect drawn
    uniformly, clipped to the image, placed uniformly) is resampled bilinearly to ``size`` x ``size``
    in one ``grid_sample`` (the augmentation ImageNet classifiers were trained, and their BatchNorm
    statistics collected, under)."""
    n = x.shape[0]
    area = torch.empty(n).uniform_(min_scale, 1.0, generator=gen)
    log_ratio = torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen)
    ratio = log_ratio.exp()
    w = (area * ratio).sqrt().clamp(max=1.0)  # fractions of the side
    h = (area / ratio).sqrt().clamp(max=1.0)
    cx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - w)  # centre in [-1, 1] coordinates
    cy = (torch.rand(n, generator=gen) * 2 - 1) * (1 - h)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
    grid = F.affine_grid(theta.to(x.device, x.dtype), [n, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def last_linear(module: torch.nn.Module) -> torch.nn.Linear | None:
    """The classifier's last ``nn.Linear`` (its output layer), or None."""
    found = None
    for m in module.modules():
        if isinstance(m, torch.nn.Linear):
            found = m
    return found


def mode_seeking(z: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Mao et al.'s mode-seeking term for pairs (item i, item i + N/2) of one class: the latent
    distance over the image distance, small when different latents give different images."""
    half = z.shape[0] // 2
    d_img = (images[:half] - images[half : 2 * half]).abs().flatten(1).mean(1)
    d_z = (z[:half] - z[half : 2 * half]).abs().mean(1)
    return (d_z / (d_img + 1e-5)).mean() * 1e-2


class Inversion(Method):
    """The classifier-teacher method of the training loop (see the module docstring)."""

    def __init__(self, opts: dict[str, Any], device: torch.device) -> None:
        super().__init__()
        self.opts, self.device = opts, device
        names = ids = None
        if opts["class_names"] is not None:
            names, ids = read_class_list(opts["class_names"])
        num_classes = opts["num_classes"] or (len(names) if names else None)
        if names and opts["num_classes"] and len(names) != opts["num_classes"]:
            raise SynthcalibError(f"--class-names: {len(names)} names given but --num-classes is {opts['num_classes']}")
        z_dim = opts["z_dim"] or DEFAULT_Z_DIM
        size = opts["classifier_size"] or image_size(opts["g_channels"], opts["g_base"])
        self.classifier = load_classifier(
            opts["classifier"],
            num_classes=num_classes,
            input_size=size,
            mean=opts["classifier_mean"],
            std=opts["classifier_std"],
        )
        num_classes = self.classifier.num_classes
        torch.manual_seed(opts["seed"])  # the generator's initial weights depend on the seed alone
        g = generator_from_options(opts, z_dim, num_classes, opts["max_params"])
        self.z_dim, self.num_classes, self.size = z_dim, num_classes, size
        self.image_size = [g.image_size, g.image_size]
        self.teacher = {
            **self.classifier.metadata(),
            "kind": "classifier",
            "classifier_kind": self.classifier.record.get("kind"),
            "z_dim": z_dim,
            "class_names": list(names) if names else None,
            "class_ids": list(ids) if ids else None,
        }
        self.g_ema = copy.deepcopy(g).eval().requires_grad_(False).to(device)
        self.modules = {"G": g.to(device)}
        betas = (float(opts["beta1"]), float(opts["beta2"]))
        self.optimizers = {"G": torch.optim.Adam(g.parameters(), lr=opts["lr_g"], betas=betas)}
        self.net = self.classifier.module.to(device)
        self.stats = BatchNormStatistics(
            self.classifier.layers,
            opts["bn_first"],
            set_momentum=opts.get("bn_set_momentum"),
            relative=opts.get("bn_units") == "relative",
        )
        self._out_input: list[torch.Tensor] = []
        self.out_layer = None
        if opts.get("w_out") or opts.get("w_fdiv"):
            self.out_layer = last_linear(self.net)
            if self.out_layer is None:
                flag = "--w-out" if opts.get("w_out") else "--w-fdiv"
                raise SynthcalibError(
                    f"{flag}: the classifier has no nn.Linear output layer (its input is the features used)"
                )
            self.out_layer.register_forward_pre_hook(lambda _m, inputs: self._out_input.append(inputs[0]))
        self.amp = autocast_dtype(opts["precision"], device)
        if device.type == "cpu":
            self.net = self.net.to(memory_format=torch.channels_last)
        self.mean = torch.tensor(opts["classifier_mean"], device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(opts["classifier_std"], device=device).view(1, -1, 1, 1)
        grid_gen = torch.Generator().manual_seed(12345)
        classes = torch.linspace(0, num_classes - 1, min(num_classes, 8)).round().long()
        self.grid_y = classes.repeat_interleave(4)
        self.grid_z = torch.randn(len(self.grid_y), z_dim, generator=grid_gen)

    def postfix(self, scalars: dict[str, float]) -> dict[str, str]:
        return {"bn": f"{scalars['loss/bn']:.3f}", "ce": f"{scalars['loss/ce']:.3f}", "acc": f"{scalars['acc']:.2f}"}

    def _autocast(self) -> Any:
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def to_classifier(self, images: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """Generator images in [-1, 1] -> the classifier's normalised input at its size (bilinear,
        as the calibration stream's Transform resizes; with ``--rrc-scale`` and ``gen``, a random
        resized crop of each image instead)."""
        x = (images.float() + 1.0) * 0.5
        if gen is not None and self.opts.get("rrc_scale"):
            x = random_resized_crop(x, self.size, gen, self.opts["rrc_scale"])
        elif x.shape[-1] != self.size or x.shape[-2] != self.size:
            shrink = x.shape[-1] > self.size or x.shape[-2] > self.size
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=shrink)
        return (x - self.mean) / self.std

    def grid(self) -> torch.Tensor:
        with torch.no_grad():
            img = self.g_ema(self.grid_z.to(self.device), self.grid_y.to(self.device))
        return image_grid(img.float(), 4)

    def step(self, step: int, gen: torch.Generator, distributed: bool) -> dict[str, float]:
        opts, device = self.opts, self.device
        g, opt_g = self.modules["G"], self.optimizers["G"]
        batch = opts["batch"]
        half = batch // 2
        y = torch.randint(self.num_classes, (batch - half,), generator=gen)
        y = torch.cat([y[:half], y])[:batch]  # items i and i + N/2 share a class (mode seeking)
        z = torch.randn(batch, self.z_dim, generator=gen)
        z, y = z.to(device), y.to(device)
        g.train()
        self.stats.clear()
        self.stats.shuffle(gen)
        self._out_input.clear()
        with self._autocast():
            fake = g(z, y)
            x = self.to_classifier(fake, gen)
            x = jitter_and_flip(x, gen, opts["jitter"], opts["flip"])
            if device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            logits = self.net(x)
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        logits = logits.float()
        loss_bn = self.stats.loss()
        loss_ce = F.cross_entropy(logits, y)
        loss_div = mode_seeking(z, fake.float()) if opts["w_div"] > 0 and half > 0 else torch.zeros((), device=device)
        loss_out = loss_fdiv = torch.zeros((), device=device)
        if self.out_layer is not None:
            features = self._out_input[-1]
            if opts.get("w_out"):
                loss_out = output_stretching(logits, features, self.out_layer.weight)
            if opts.get("w_fdiv"):
                loss_fdiv = feature_diversity(features)
            self._out_input.clear()
        loss = (
            opts["w_bn"] * loss_bn
            + opts["w_ce"] * loss_ce
            + opts["w_div"] * loss_div
            + opts["w_out"] * loss_out
            + opts["w_fdiv"] * loss_fdiv
        )
        if not torch.isfinite(loss):
            raise SynthcalibError(
                f"train: the loss became {loss.item()} at step {step + 1}; lower --lr-g or the loss weights"
            )
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        return {
            "loss/bn": loss_bn.item(),
            "loss/ce": loss_ce.item(),
            "loss/diversity": loss_div.item(),
            "loss/out": loss_out.item(),
            "loss/feature_diversity": loss_fdiv.item(),
            "loss/total": loss.item(),
            "acc": (logits.argmax(1) == y).float().mean().item(),
        }
