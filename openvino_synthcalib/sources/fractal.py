"""``fractal:ifs``: coloured iterated-function-system fractals, a data-free baseline.

In the spirit of FractalDB (Kataoka et al. 2020) and POT's unreleased data-free loader: each
item draws a random IFS of 2-4 contractive affine maps (singular values in [0.25, 0.85], the
"SVD" sampling of Anderson & Farrell 2022), renders it with the chaos game (many parallel
chains, vectorised), colours each point by the map that produced it over a random background,
then applies a random flip, 90-degree rotation and light blur.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import SynthcalibError
from .base import ItemSource, SourceContext, parse_size, take_options

TAG_FRACTAL = 0xF4AC7
_CHAINS = 256
_BURN_IN = 8


def _random_ifs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Affine maps (A [k, 2, 2], b [k, 2]) and sampling probabilities proportional to |det A|."""
    k = int(rng.integers(2, 5))
    mats, shifts, dets = [], [], []
    for _ in range(k):
        s = np.sort(rng.uniform(0.25, 0.85, 2))[::-1]
        th, ph = rng.uniform(0, 2 * np.pi, 2)
        rot = lambda a: np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])  # noqa: E731
        d = np.diag([s[0], s[1] * rng.choice([-1.0, 1.0])])
        a = rot(th) @ d @ rot(ph)
        mats.append(a)
        shifts.append(rng.uniform(-1, 1, 2))
        dets.append(abs(np.linalg.det(a)) + 1e-3)
    p = np.array(dets) / sum(dets)
    return np.array(mats), np.array(shifts), p


def render(rng: np.random.Generator, size: tuple[int, int], points: int) -> np.ndarray:
    """One fractal image, RGB float32 [3, H, W] in [0, 1]."""
    h, w = size
    mats, shifts, p = _random_ifs(rng)
    k = len(p)
    colours = rng.uniform(0.1, 1.0, (k, 3))
    background = rng.uniform(0.0, 0.6, 3) * rng.uniform(0, 1)
    steps = max(1, points // _CHAINS)
    x = rng.uniform(-1, 1, (_CHAINS, 2))
    choice = rng.choice(k, size=(steps + _BURN_IN, _CHAINS), p=p)
    xs, cs = [], []
    for t in range(steps + _BURN_IN):
        m = choice[t]
        x = np.einsum("nij,nj->ni", mats[m], x) + shifts[m]
        if t >= _BURN_IN:
            xs.append(x.copy())
            cs.append(m)
    pts = np.concatenate(xs)
    col = colours[np.concatenate(cs)]
    lo, hi = np.percentile(pts, 1, axis=0), np.percentile(pts, 99, axis=0)
    span = np.maximum(hi - lo, 1e-6)
    margin = rng.uniform(0.05, 0.2)
    uv = (pts - lo) / span * (1 - 2 * margin) + margin
    iy = np.clip((uv[:, 1] * h).astype(int), 0, h - 1)
    ix = np.clip((uv[:, 0] * w).astype(int), 0, w - 1)
    flat = iy * w + ix
    count = np.bincount(flat, minlength=h * w).astype(np.float32)
    rgb = np.stack([np.bincount(flat, weights=col[:, c], minlength=h * w) for c in range(3)]).astype(np.float32)
    rgb /= np.maximum(count, 1.0)
    density = np.log1p(count) / max(np.log1p(count.max()), 1e-6)
    alpha = np.clip(density * rng.uniform(1.0, 2.0), 0, 1)
    img = rgb * alpha + background[:, None] * (1 - alpha)
    img = img.reshape(3, h, w)
    if rng.random() < 0.5:
        img = img[:, :, ::-1]
    img = np.rot90(img, int(rng.integers(0, 4)), axes=(1, 2)) if h == w else img
    if rng.random() < 0.5:  # light 3x3 box blur
        pad = np.pad(img, ((0, 0), (1, 1), (1, 1)), mode="edge")
        img = sum(pad[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9.0
    return np.clip(img, 0, 1).astype(np.float32)


class FractalSource(ItemSource):
    scheme = "fractal"
    tag = TAG_FRACTAL
    conditional = False

    def __init__(self, spec: str, num_classes: int, size: tuple[int, int] | None, points: int) -> None:
        super().__init__(spec)
        self.num_classes = num_classes
        self.image_size = size
        self.points = points

    def render(self, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
        return render(rng, size, self.points or 8 * size[0] * size[1])

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "points": self.points}


def make(arg: str, options: dict[str, Any], context: SourceContext) -> FractalSource:
    spec = f"fractal:{arg}"
    if arg not in ("", "ifs"):
        raise SynthcalibError(f"source '{spec}': unknown fractal kind {arg!r}; expected ifs")
    opts = take_options(
        spec, options, {"size": None, "points": 0, "num_classes": None}, {"points": "int>=0", "num_classes": "int>0"}
    )
    size = parse_size(opts["size"], f"source '{spec}': option size") if opts["size"] is not None else None
    return FractalSource(spec, int(opts["num_classes"] or context.num_classes or 1), size, int(opts["points"]))
