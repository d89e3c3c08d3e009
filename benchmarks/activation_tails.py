"""How heavy-tailed Lite0's activations are on generator items against real images: per BatchNorm layer,
the kurtosis of its inputs over the whole set, per channel.

Issue 28. ``activation_peaks.py`` found the excess flips of generator calibration where each channel's
maximum over the set falls short of real images' (Lite0's 7x7 stage), and ``imagenet_subset_size/`` that
drawing more generator items does not close it. This asks why: a BatchNorm-matching generator is trained
to reproduce each channel's mean and variance (what the layer's running statistics hold), and nothing
about the shape beyond them. Here every BatchNorm input of EfficientNet-Lite0 (PyTorch, the network the
generator is trained through) is standardised by the layer's running statistics and oriented by the sign
of its scale, ``s = sign(gamma) (x - running_mean) / sqrt(running_var + eps)`` (so that large ``s`` is
large output), then per channel over all items and positions: the mean and variance of ``s`` (1 and 0
when the set matches the statistics), its kurtosis (``E[(s - m)^4] / var^2``; 3 for a Gaussian), and
its maximum. The same 200 generator items and 200 sample images (centre views, measuring only) as
``activation_peaks.py``.

    python benchmarks/activation_tails.py --generator imagenet runs/imagenet/curve/RUN/checkpoint-NNNNNNN.xml \\
        --label shipped RUN-NNNN
    python benchmarks/activation_tails.py --report-only

Rows go to ``benchmarks/results/activation_tails.csv`` (a rerun skips generators already there).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from commands import recorded
from lite0_activations import cli, measured
from rows import appending, read_rows

NAME = "activation_tails"
FIELDS = [
    "generator", "label", "layer", "size", "real_var", "syn_var", "real_kurtosis", "syn_kurtosis",
    "real_max", "syn_max",
]  # fmt: skip
KEY = ("generator",)


class Tails:
    """Forward pre-hooks on every BatchNorm layer of ``net``: per channel, the power sums of its
    standardised, oriented input ``s`` over all items and positions, and its maximum."""

    def __init__(self, net) -> None:
        from openvino_synthcalib.train_generator.classifiers import batchnorm_layers

        self.names = {id(m): n for n, m in net.named_modules()}
        self.layers = [m for m in batchnorm_layers(net) if m.weight is not None]  # affine: gamma's sign orients s
        self.sums: dict[str, dict] = {}
        for m in self.layers:
            m.register_forward_pre_hook(self._hook)

    def _hook(self, m, inputs) -> None:
        import torch

        x = inputs[0].detach().double()
        if x.dim() != 4:
            return
        shape = (1, -1, 1, 1)
        s = (x - m.running_mean.double().view(shape)) / (m.running_var.double() + m.eps).sqrt().view(shape)
        s = s * torch.sign(m.weight.detach().double()).view(shape)
        flat = s.movedim(1, -1).reshape(-1, s.shape[1])
        acc = self.sums.setdefault(self.names[id(m)], {"n": 0, "p": np.zeros((4, s.shape[1])), "max": None})
        acc["n"] += flat.shape[0]
        acc["p"] += np.stack([(flat**k).sum(0).numpy() for k in (1, 2, 3, 4)])
        top = flat.amax(0).numpy()
        acc["max"] = top if acc["max"] is None else np.maximum(acc["max"], top)
        acc["size"] = int(s.shape[-1])

    def run(self, net, batches) -> dict[str, dict[str, np.ndarray]]:
        """Per BatchNorm layer (in network order): each channel's variance, kurtosis and maximum of ``s``."""
        import torch

        self.sums = {}
        with torch.no_grad():
            for x in batches:
                net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        out = {}
        for name, acc in self.sums.items():
            m1, m2, m3, m4 = acc["p"] / acc["n"]
            var = np.maximum(m2 - m1**2, 1e-12)
            central4 = m4 - 4 * m1 * m3 + 6 * m1**2 * m2 - 3 * m1**4
            out[name] = {"var": var, "kurtosis": central4 / var**2, "max": acc["max"], "size": acc["size"]}
        return out


def measure(args) -> None:
    for gen, label, real, syn, _ in measured(args, NAME, Tails):
        with appending(args.out / f"{NAME}.csv", FIELDS) as (_, writer):
            for layer, r in real.items():
                s = syn[layer]
                writer.writerow(
                    {"generator": gen, "label": label, "layer": layer, "size": r["size"],
                     "real_var": round(float(np.median(r["var"])), 4), "syn_var": round(float(np.median(s["var"])), 4),
                     "real_kurtosis": round(float(np.median(r["kurtosis"])), 3),
                     "syn_kurtosis": round(float(np.median(s["kurtosis"])), 3),
                     "real_max": round(float(np.median(r["max"])), 3), "syn_max": round(float(np.median(s["max"])), 3)}
                )  # fmt: skip
        print(f"  {gen}: {len(real)} BatchNorm layers", file=sys.stderr, flush=True)


def _kind(layer: str) -> str:
    """EfficientNet's BatchNorm roles: ``_bn0`` after the expansion, ``_bn1`` after the depthwise
    convolution, ``_bn2`` after the projection (the stem's and head's are ``_bn0``/``_bn1`` outside
    the blocks)."""
    if not layer.startswith("_blocks."):
        return "stem" if layer == "_bn0" else "head"
    return {"_bn0": "expansion", "_bn1": "depthwise", "_bn2": "projection"}.get(layer.rsplit(".", 1)[-1], "other")


def report(out: Path) -> None:
    rows = read_rows(out / f"{NAME}.csv")
    gens = list(dict.fromkeys((r["generator"], r["label"]) for r in rows))
    real_k = {r["layer"]: float(r["real_kurtosis"]) for r in rows}
    lines = [
        "# Heavy tails of Lite0's activations: generator items against real images",
        "",
        "Issue 28. Produced by (each run appends its rows to `activation_tails.csv`; a rerun skips generators there):",
        "",
        *(f"    {c}" for c in recorded(out, NAME)),
        "",
        "EfficientNet-Lite0 (PyTorch) on 200 items of each generator (stream with Lite0's `inception`",
        "preprocessing, seed 0) and on the centre views of the 200 measured sample images of `imagenet.py`",
        "(measuring only). Every BatchNorm input, standardised by the layer's running statistics and oriented",
        "by the sign of its scale (`s`: large `s` is a large output), per channel over all items and positions:",
        "**variance** (1 where the set reproduces the running variance, which is what generator training",
        "matches), **kurtosis** (E[(s - m)^4] / var^2; 3 for a Gaussian: how far the heaviest values stand out",
        "beyond what the variance says) and **max**. Each figure is the median over the layer's channels.",
        "",
        "## Medians over layers, by role and stage",
        "",
        "Kurtosis, real images first; 7x7 stage = blocks 11-15 and the head (Lite0's last stage, where",
        "`range_swap_ab248fb8/` puts the excess flips). Variance: of `s`, median over the 7x7 depthwise layers",
        "(1 = the running variance). Max / real max: per 7x7 depthwise layer, the median channel maximum of `s`",
        "over that of real images, median over the layers:",
        "",
    ]
    groups = [("depthwise", "7"), ("expansion", "7"), ("projection", "7"), ("depthwise", None)]
    header = " | ".join(f"{kind}, {size + 'x' + size if size else 'all'}" for kind, size in groups)
    lines += [
        f"| generator | weights | {header} | variance, 7x7 depthwise | max / real max, 7x7 depthwise |",
        "|---|---|" + "---|" * 6,
    ]

    def pick(kind: str, size: str | None, gen: str | None = None) -> list[dict]:
        return [
            r
            for r in rows
            if _kind(r["layer"]) == kind
            and (size is None or r["size"] == size)
            and (gen is None or r["generator"] == gen)
        ]

    first = gens[0][0] if gens else None
    real_cells = [f"{np.median([real_k[r['layer']] for r in pick(k, s, first)]):.1f}" for k, s in groups]
    real_var = np.median([float(r["real_var"]) for r in pick("depthwise", "7", first)]) if first else float("nan")
    lines.append(f"| real images | – | {' | '.join(real_cells)} | {real_var:.2f} | 1 |")
    for gen, label in gens:
        cells = [f"{np.median([float(r['syn_kurtosis']) for r in pick(k, s, gen)]):.1f}" for k, s in groups]
        dw = pick("depthwise", "7", gen)
        ratio = np.median([float(r["syn_max"]) / float(r["real_max"]) for r in dw]) if dw else float("nan")
        var = np.median([float(r["syn_var"]) for r in dw]) if dw else float("nan")
        lines.append(f"| {label} | `{gen}` | {' | '.join(cells)} | {var:.2f} | {ratio:.2f} |")
    last = [r for r in rows if r["size"] == "7" and r["generator"] == first]
    if last:
        lines += [
            "",
            "## The 7x7 stage, layer by layer",
            "",
            "Kurtosis / max of `s` (variance of `s` in the last column for the first generator):",
            "",
            "| layer | role | real | " + " | ".join(label for _, label in gens) + f" | variance, {gens[0][1]} / real |",
            "|---|---|---|" + "---|" * (len(gens) + 1),
        ]
        by = {(r["generator"], r["layer"]): r for r in rows}
        for r0 in last:
            layer = r0["layer"]
            cells = [
                f"{float(by[(g, layer)]['syn_kurtosis']):.1f} / {float(by[(g, layer)]['syn_max']):.2f}"
                if (g, layer) in by
                else ""
                for g, _ in gens
            ]
            lines.append(
                f"| `{layer}` | {_kind(layer)} | {float(r0['real_kurtosis']):.1f} / {float(r0['real_max']):.2f} | "
                + " | ".join(cells)
                + f" | {float(r0['syn_var']):.2f} / {float(r0['real_var']):.2f} |"
            )
    (out / f"{NAME}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    cli(__doc__, measure, report)
