"""Counter-based randomness: item ``i`` of a stream depends on ``(seed, i)`` only.

Each item gets its own ``numpy`` generator seeded with ``[seed, stream_tag, i]`` through
``SeedSequence``, so images are the same whatever the batch size, the iteration order or
the number of parallel infer requests.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Tags keep the draws of different purposes (latent codes, noise images, file order) independent.
TAG_LATENT = 0x5A17E7
TAG_NOISE = 0x0015E
TAG_ORDER = 0x0DE5


def item_rng(seed: int, tag: int, index: int) -> np.random.Generator:
    """The generator of item ``index`` for purpose ``tag``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), tag, int(index)])))


def normal_rows(seed: int, indices: Sequence[int], dim: int, tag: int = TAG_LATENT) -> np.ndarray:
    """Standard normal rows ``[len(indices), dim]`` (float32), one per item index."""
    out = np.empty((len(indices), dim), dtype=np.float32)
    for row, index in enumerate(indices):
        out[row] = item_rng(seed, tag, index).standard_normal(dim, dtype=np.float32)
    return out
