"""TinyGAN-style distillation losses (Chang & Lu 2020).

* pixel: L1 between the student's and the teacher's image for the same (z, class);
* feature: L1 between discriminator features of the student's and the teacher's images;
* adversarial distillation: hinge loss, the discriminator sees teacher images as real, student images as fake;
* optional GAN loss against real images (discriminator only sees them as real, weighted by ``w_real``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def pixel_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of two image batches."""
    return (student - teacher).abs().mean()


def feature_loss(student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over discriminator blocks of the mean L1 between student and (detached) teacher features."""
    return sum((s - t.detach()).abs().mean() for s, t in zip(student_feats, teacher_feats))  # type: ignore[return-value]


def d_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def g_hinge(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss."""
    return -fake_logits.mean()


def ramp(step: int, length: int) -> float:
    """Linear ramp from 0 to 1 over ``length`` steps (1 when ``length`` is 0)."""
    return 1.0 if length <= 0 else min(1.0, step / float(length))
