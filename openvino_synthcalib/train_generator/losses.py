"""TinyGAN-style distillation losses (Chang & Lu 2020).

* pixel: L1 between the student's and the teacher's image for the same (z, class);
* feature: L1 between discriminator features of the student's and the teacher's images;
* adversarial distillation: hinge loss, the discriminator sees teacher images as real, student images as fake;
* optional GAN loss against real images (discriminator only sees them as real, weighted by ``w_real``).

and, for training through a classifier (``inversion.py``), DGH's output-distribution stretching and a
diversity term on the classifier's features.
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


def output_stretching(
    logits: torch.Tensor, features: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """DGH's output-distribution-stretching loss (Dikstein et al., WACV 2025, Sec. 3.3; the
    ``REGULARIZED_MIN_MAX_DIFF`` output loss of Sony MCT's data generation, which implements it), for
    a classifier whose last layer is a linear map ``logits = features @ weight.T + b`` with no
    BatchNorm after it, so the BatchNorm loss says nothing about the logits' range.

    Per item, with ``z_max``/``z_min`` its largest/smallest logit (classes ``i``/``j``) and ``f`` its
    (pooled) input to the last layer, the loss is
    ``| |z_max| - ||f|| ||w_i|| / 2 | + | |z_min| - ||f|| ||w_j|| / 2 | + 1 / (z_max - z_min + eps)``,
    mean over the batch: it stretches the logit range (the last term) while keeping each extreme
    near half its Cauchy-Schwarz bound ``||f|| ||w||`` (the first two), i.e. the output layer sees
    a range like real data's instead of the flat logits of images no class owns."""
    logits = logits.float().flatten(1)
    feats = features.float()
    if feats.dim() > 2:
        feats = feats.flatten(2).mean(-1)
    w_norm = torch.linalg.vector_norm(weight.float().flatten(1), dim=1)
    f_norm = torch.linalg.vector_norm(feats, dim=1)
    z_max, i_max = logits.max(1)
    z_min, i_min = logits.min(1)
    reg_max = (z_max.abs() - 0.5 * f_norm * w_norm[i_max]).abs()
    reg_min = (z_min.abs() - 0.5 * f_norm * w_norm[i_min]).abs()
    return (reg_max + reg_min + 1.0 / (z_max - z_min + eps)).mean()


def feature_diversity(features: torch.Tensor) -> torch.Tensor:
    """How alike the classifier sees two images of one class drawn from different latents: for the
    pairs (item i, item i + N/2) of a batch, the cosine similarity of their (pooled) features after
    the batch's mean feature is subtracted, clipped at 0, mean over pairs.

    0 when a pair is no more alike than two items of the batch taken at random; it pushes pairs apart
    only down to that, never to opposite features. The pixel mode-seeking term cannot see a generator
    that draws one template per class in slightly shifted pixels; this one is measured where the
    deepest layers (and the quantizer ranges they set) see each image."""
    f = features.float()
    if f.dim() > 2:
        f = f.flatten(2).mean(-1)
    half = f.shape[0] // 2
    if half == 0:
        return f.sum() * 0.0
    f = f - f.mean(0, keepdim=True)
    return F.cosine_similarity(f[:half], f[half : 2 * half], dim=1, eps=1e-6).clamp_min(0.0).mean()
