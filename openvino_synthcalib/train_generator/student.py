"""Student generators (a small BigGAN-like family) and the projection discriminator.

Generator: ``[z, embed(class)]`` -> linear -> B x B x C0 (B = ``base``, 4 by default) -> up-sampling
residual blocks with class-conditional batch norm (one per width step, ``g_blocks`` per resolution)
-> BN, ReLU, 3x3 conv -> tanh. The defaults (widths 128, 128, 96, 64 for 4x4 .. 32x32) give about 0.95M
parameters and run several times faster than a 256-channel BigGAN teacher.

Class-conditional batch norm looks its gain and bias up in a table per layer (``class_dim`` 0), or, for
many classes, projects one shared class embedding of ``class_dim`` values per layer (BigGAN's shared
embedding): a 1000-class table per layer would outweigh the convolutions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from ..errors import SynthcalibError


def count_params(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def image_size(channels: Sequence[int], base: int = 4) -> int:
    """Side of a student's images: ``base`` doubled by each up-sampling step (one per width after the first)."""
    return base * 2 ** (len(channels) - 1)


class CondBatchNorm(nn.Module):
    """Batch norm whose gain and bias are looked up per class (``y``: class indices), or projected
    from a shared class embedding (``y``: [N, class_dim] floats) when ``class_dim`` > 0."""

    def __init__(self, ch: int, num_classes: int, class_dim: int = 0) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(ch, affine=False)
        self.class_dim = class_dim
        if class_dim:
            self.gain = nn.Linear(class_dim, ch)
            self.bias = nn.Linear(class_dim, ch)
            for lin in (self.gain, self.bias):
                nn.init.zeros_(lin.weight)
            nn.init.ones_(self.gain.bias)
            nn.init.zeros_(self.bias.bias)
        else:
            self.gain = nn.Embedding(num_classes, ch)
            self.bias = nn.Embedding(num_classes, ch)
            nn.init.ones_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


class GBlock(nn.Module):
    def __init__(self, cin: int, cout: int, num_classes: int, up: bool, class_dim: int = 0) -> None:
        super().__init__()
        self.up = up
        self.bn1 = CondBatchNorm(cin, num_classes, class_dim)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn2 = CondBatchNorm(cout, num_classes, class_dim)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(x, y))
        if self.up:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        if self.skip is not None:
            x = self.skip(x)
        return x + h


class StudentGenerator(nn.Module):
    """Conditional generator ``(z [N, z_dim] float, label [N] int64) -> image [N, 3, H, W] in [-1, 1]``."""

    def __init__(
        self,
        z_dim: int = 128,
        num_classes: int = 10,
        channels: Sequence[int] = (128, 128, 96, 64),
        blocks: int = 1,
        embed_dim: int = 32,
        base: int = 4,
        class_dim: int = 0,
    ) -> None:
        super().__init__()
        self.z_dim, self.num_classes = z_dim, num_classes
        self.channels, self.blocks_per_res = tuple(channels), blocks
        self.base, self.class_dim = base, class_dim
        self.image_size = image_size(channels, base)
        self.embed = nn.Embedding(num_classes, class_dim or embed_dim)
        self.linear = nn.Linear(z_dim + (class_dim or embed_dim), channels[0] * base * base)
        layers = []
        for cin, cout in zip(channels[:-1], channels[1:]):
            layers.append(GBlock(cin, cout, num_classes, up=True, class_dim=class_dim))
            layers.extend(GBlock(cout, cout, num_classes, up=False, class_dim=class_dim) for _ in range(blocks - 1))
        self.blocks = nn.ModuleList(layers)
        self.out_bn = nn.BatchNorm2d(channels[-1])
        self.out_conv = nn.Conv2d(channels[-1], 3, 3, padding=1)

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        e = self.embed(label)
        h = self.linear(torch.cat([z, e], dim=1))
        h = h.view(h.shape[0], self.channels[0], self.base, self.base)
        y = e if self.class_dim else label
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.out_conv(F.relu(self.out_bn(h))))


def build_generator(
    z_dim: int,
    num_classes: int,
    channels: Sequence[int],
    blocks: int,
    max_params: int | None = None,
    base: int = 4,
    class_dim: int = 0,
) -> StudentGenerator:
    """Build a student; a parameter count above ``max_params`` is a one-line error naming the flags."""
    g = StudentGenerator(z_dim, num_classes, channels, blocks, base=base, class_dim=class_dim)
    n = count_params(g)
    if max_params is not None and n > max_params:
        raise SynthcalibError(
            f"--g-channels {','.join(map(str, channels))} --g-blocks {blocks}: {n:,} parameters exceed "
            f"--max-params {max_params:,}"
        )
    return g


def generator_from_options(opts: dict, z_dim: int, num_classes: int, max_params: int | None = None) -> StudentGenerator:
    """The student a run's options describe (options saved before ``g_base``/``g_class_dim`` existed
    mean the defaults)."""
    return build_generator(
        z_dim,
        num_classes,
        tuple(opts["g_channels"]),
        int(opts["g_blocks"]),
        max_params,
        base=int(opts.get("g_base", 4)),
        class_dim=int(opts.get("g_class_dim", 0)),
    )


class DBlock(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool, first: bool) -> None:
        super().__init__()
        self.first, self.down = first, down
        self.conv1 = spectral_norm(nn.Conv2d(cin, cout, 3, padding=1))
        self.conv2 = spectral_norm(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = spectral_norm(nn.Conv2d(cin, cout, 1)) if (cin != cout or down) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        if self.skip is not None:
            if self.first:
                x = self.skip(F.avg_pool2d(x, 2) if self.down else x)
            else:
                x = self.skip(x)
                x = F.avg_pool2d(x, 2) if self.down else x
        return x + h


class ProjectionDiscriminator(nn.Module):
    """Class-conditional projection discriminator (Miyato & Koyama 2018) that also returns block features."""

    def __init__(self, num_classes: int = 10, channels: Sequence[int] = (64, 128, 128)) -> None:
        super().__init__()
        chans = [3, *channels]
        self.blocks = nn.ModuleList(
            DBlock(cin, cout, down=True, first=(i == 0)) for i, (cin, cout) in enumerate(zip(chans[:-1], chans[1:]))
        )
        self.final = DBlock(chans[-1], chans[-1], down=False, first=False)
        self.linear = spectral_norm(nn.Linear(chans[-1], 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, chans[-1]))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        h = x
        for block in self.blocks:
            h = block(h)
            feats.append(h)
        h = self.final(h)
        feats.append(h)
        h = F.relu(h).sum(dim=(2, 3))
        out = self.linear(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)
        return out, feats
