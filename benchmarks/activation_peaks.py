"""How far each image drives Lite0's activations: the per-image maximum of every activation, generator
items against real images.

Issue 28 (the range-swap finding): NNCF's per-tensor activation ranges are ``MEAN_MINMAX``, the mean over
calibration items of each item's maximum, and the excess flips of generator calibration sit in Lite0's
7x7 stage, whose ranges come out narrower. This measures that statistic directly, without quantizing:
EfficientNet-Lite0 (PyTorch, the network the generator is trained through) runs on 200 items of each
``--generator`` (its stream with Lite0's ``inception`` preprocessing, seed 0) and on the centre views of
the 200 measured sample images of ``imagenet.py`` (measuring only); a forward hook on every activation
module (each call: EfficientNet's blocks call theirs twice) takes each item's maximum over channels and
positions, and the table gives the mean over items, synthetic / real.

    python benchmarks/activation_peaks.py --generator imagenet runs/imagenet/curve/RUN/checkpoint-NNNNNNN.xml \\
        --label shipped RUN-NNNN
    python benchmarks/activation_peaks.py --report-only

Rows go to ``benchmarks/results/activation_peaks.csv`` (a rerun skips generators already there).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from commands import recorded
from lite0_activations import cli, measured
from rows import appending, read_rows

NAME = "activation_peaks"
FIELDS = ["generator", "label", "activation", "size", "real_peak", "syn_peak", "ratio", "channel_ratio"]


class Peaks:
    """Forward hooks on every activation module of ``net``: per call, each item's maximum."""

    KINDS = ("ReLU", "ReLU6", "SiLU", "Hardswish", "GELU", "LeakyReLU")

    def __init__(self, net) -> None:
        self.calls: dict[str, list[np.ndarray]] = {}
        self.channel_max: dict[str, np.ndarray] = {}
        self.sizes: dict[str, int] = {}
        self._count: dict[str, int] = {}
        for name, m in net.named_modules():
            if type(m).__name__ in self.KINDS:
                m.register_forward_hook(self._hook(name))

    def _hook(self, name: str):
        def hook(_m, _inputs, out) -> None:
            if out.dim() != 4 or out.shape[-1] == 1:  # squeeze-excitation vectors are no activation maps
                return
            i = self._count.get(name, 0)
            self._count[name] = i + 1
            key = f"{name}#{i}"
            out = out.detach().float()
            self.calls.setdefault(key, []).append(out.amax(dim=(1, 2, 3)).numpy())
            channels = out.amax(dim=(0, 2, 3)).numpy()
            seen = self.channel_max.get(key)
            self.channel_max[key] = channels if seen is None else np.maximum(seen, channels)
            self.sizes[key] = int(out.shape[-1])

        return hook

    def run(self, net, batches) -> dict[str, tuple[float, np.ndarray]]:
        """Per activation call: the mean over items of each item's maximum, and each channel's maximum
        over all items."""
        import torch

        self.calls, self.channel_max = {}, {}
        with torch.no_grad():
            for x in batches:
                self._count = {}
                net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        return {k: (float(np.concatenate(v).mean()), self.channel_max[k]) for k, v in self.calls.items()}


def measure(args) -> None:
    for gen, label, real, syn, peaks in measured(args, NAME, Peaks):
        with appending(args.out / f"{NAME}.csv", FIELDS) as (_, writer):
            for key, (r, r_channels) in real.items():
                s, s_channels = syn[key]
                live = r_channels > 0  # channels real images never drive have no range to compare
                channel_ratio = float(np.exp(np.mean(np.log(np.maximum(s_channels[live], 1e-6) / r_channels[live]))))
                writer.writerow(
                    {"generator": gen, "label": label, "activation": key, "size": peaks.sizes[key],
                     "real_peak": round(r, 4), "syn_peak": round(s, 4), "ratio": round(s / r, 4),
                     "channel_ratio": round(channel_ratio, 4)}
                )  # fmt: skip
        print(f"  {gen}: {len(real)} activations", file=sys.stderr, flush=True)


def report(out: Path) -> None:
    rows = read_rows(out / f"{NAME}.csv")
    gens = list(dict.fromkeys((r["generator"], r["label"]) for r in rows))
    lines = [
        "# Per-image activation peaks of Lite0: generator items against real images",
        "",
        "Issue 28. Produced by (each run appends its rows to `activation_peaks.csv`; a rerun skips generators there):",
        "",
        *(f"    {c}" for c in recorded(out, NAME)),
        "",
        "EfficientNet-Lite0 (PyTorch) on 200 items of each generator (stream with Lite0's `inception`",
        "preprocessing, seed 0) and on the centre views of the 200 measured sample images of `imagenet.py`.",
        "**Peak** of an activation: each item's maximum over channels and positions, mean over items: the",
        "statistic NNCF's per-tensor activation ranges average (`MEAN_MINMAX`). Every call of an activation",
        "module is its own row (`#0`, `#1`: EfficientNet's blocks call theirs after the expansion and after",
        "the depthwise convolution). Ratio = synthetic / real; Lite0's activations are ReLU6, capped at 6.",
        "**Channel ratio**: each channel's maximum over all items, synthetic / real, geometric mean over the",
        "channels real images drive: the statistic of NNCF's per-channel activation quantizers (`MINMAX`), which",
        "it uses where an activation feeds a depthwise convolution (Lite0's expansion activations, `#0`).",
        "",
        "| generator | weights | activations | mean ratio | mean ratio, 7x7 stage | lowest ratio (activation) |"
        " mean channel ratio, 7x7 stage | lowest channel ratio (activation) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for gen, label in gens:
        mine = [r for r in rows if r["generator"] == gen]
        ratios = [float(r["ratio"]) for r in mine]
        last = [float(r["ratio"]) for r in mine if r["size"] == "7"]
        low = min(mine, key=lambda r: float(r["ratio"]))
        last_ch = [float(r["channel_ratio"]) for r in mine if r["size"] == "7"]
        low_ch = min(mine, key=lambda r: float(r["channel_ratio"]))
        lines.append(
            f"| {label} | `{gen}` | {len(mine)} | {np.mean(ratios):.3f} | "
            f"{np.mean(last) if last else float('nan'):.3f} | {float(low['ratio']):.3f} (`{low['activation']}`) | "
            f"{np.mean(last_ch) if last_ch else float('nan'):.3f} | "
            f"{float(low_ch['channel_ratio']):.3f} (`{low_ch['activation']}`) |"
        )
    last_keys = list(dict.fromkeys(r["activation"] for r in rows if r["size"] == "7"))
    if gens and last_keys:
        lines += [
            "",
            "The 7x7 stage: peak ratio / channel ratio, synthetic / real (the real peak in its column):",
            "",
            "| activation | real peak | " + " | ".join(label for _, label in gens) + " |",
            "|---|---|" + "---|" * len(gens),
        ]
        by = {(r["generator"], r["activation"]): r for r in rows}
        for key in last_keys:
            real = next(by[(g, key)]["real_peak"] for g, _ in gens if (g, key) in by)
            cells = [
                f"{float(by[(g, key)]['ratio']):.3f} / {float(by[(g, key)]['channel_ratio']):.3f}"
                if (g, key) in by
                else ""
                for g, _ in gens
            ]
            lines.append(f"| `{key}` | {float(real):.2f} | " + " | ".join(cells) + " |")
    (out / f"{NAME}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    cli(__doc__, measure, report)
