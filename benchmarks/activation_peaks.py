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

import argparse
import sys
from pathlib import Path

import numpy as np
from commands import record, recorded
from paths import GENERATORS, REPO, RESULTS, generator_label
from rows import appending, done_keys, read_rows
from testset import IMAGENET_MODELS, cached_views, imagenet_split

NAME = "activation_peaks"
FIELDS = ["generator", "label", "activation", "size", "real_peak", "syn_peak", "ratio", "channel_ratio"]
KEY = ("generator",)
LITE0 = IMAGENET_MODELS["lite0"][0]
CACHE = REPO / "runs" / "imagenet"
ITEMS = 200


def generator_file(name: str) -> Path:
    """A shipped generator's IR given its name, or the file given."""
    from openvino_synthcalib.shipped import generator_path

    path = generator_path(name)
    if not path.exists():
        raise SystemExit(f"--generator {name}: no such shipped generator ({', '.join(GENERATORS)}) or file")
    return path


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


def real_batches(batch: int = 20):
    files = imagenet_split(CACHE)[1]
    views = cached_views(CACHE / f"views-measured-224-{len(files)}.npy", files)
    for i in range(0, min(ITEMS, len(views)), batch):
        yield (views[i : i + batch, 0].astype(np.float32) / 255.0 - 0.5) / 0.5


def synthetic_batches(xml: Path, batch: int = 20):
    import openvino_synthcalib as synthcalib

    with synthcalib.Dataset(f"generator:{xml}", ITEMS, model=str(LITE0), transform="inception", seed=0) as ds:
        items = [np.asarray(x, dtype=np.float32).reshape(-1, 3, 224, 224) for x in ds]
    x = np.concatenate(items)
    for i in range(0, len(x), batch):
        yield x[i : i + batch]


def measured(args, name: str, probe_of):
    """For each ``--generator`` not yet in ``NAME.csv`` (this study's or a sibling's ``name``): its
    weights' label, its ``--label``, and what the probe (``probe_of(net)``, with ``run(net, batches)``)
    returns on the real images and on the generator's items, Lite0 in PyTorch."""
    import torch

    from openvino_synthcalib.train_generator.classifiers import efficientnet_lite0

    torch.set_num_threads(args.threads)
    done = done_keys(args.out / f"{name}.csv", KEY)
    record(args.out, name)
    net = efficientnet_lite0().eval()
    probe = probe_of(net)
    real = None
    for spec, label in zip(args.generator, args.label or [None] * len(args.generator)):
        xml = generator_file(spec)
        gen = generator_label(spec, xml)
        if (gen,) in done:
            continue
        if real is None:
            real = probe.run(net, real_batches())
        yield gen, label or gen, real, probe.run(net, synthetic_batches(xml)), probe


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


def cli(doc: str, measure, report) -> None:
    """The command line of this study and of its sibling ``activation_tails.py``: measure the
    ``--generator``s (unless ``--report-only``), then rebuild the report."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", nargs="+", default=["imagenet"], help="shipped names or IR files")
    p.add_argument("--label", nargs="*", default=None, help="a name for each --generator")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.label and len(args.label) != len(args.generator):
        p.error("--label: one per --generator")
    if not args.report_only:
        measure(args)
    report(args.out)


if __name__ == "__main__":
    cli(__doc__, measure, report)
