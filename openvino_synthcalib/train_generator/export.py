"""Export a run's EMA generator: PyTorch -> ONNX -> ``openvino.convert_model`` -> FP16 IR + metadata.

The IR has inputs ``z`` (float32 [N, z_dim]) and ``label`` (int64 [N]) and one output ``image``
[N, 3, H, W] in [-1, 1] with a dynamic batch, and carries the ``synthcalib`` rt_info (see
:mod:`openvino_synthcalib.metadata`) with a provenance record: teacher, steps, options hash, date,
parameter count.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import SynthcalibError
from ..metadata import GeneratorInfo, write_info
from .student import StudentGenerator, count_params
from .teacher_set import ensure_writable_dir
from .train import last_checkpoint


def load_checkpoint(run: str | Path) -> tuple[dict[str, Any], Path]:
    """Load a checkpoint given a run folder (its last one) or a checkpoint file."""
    p = Path(run)
    if p.is_dir():
        ck = last_checkpoint(p)
        if ck is None:
            raise SynthcalibError(f"--run {run}: the run folder has no checkpoint-*.pt yet")
        p = ck
    elif not p.is_file():
        raise SynthcalibError(f"--run {run}: no such run folder or checkpoint file")
    try:
        data = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise SynthcalibError(f"--run {run}: not a readable checkpoint ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict) or "G_ema" not in data:
        raise SynthcalibError(f"--run {run}: not a train_generator checkpoint (no G_ema)")
    return data, p


def generator_from_checkpoint(data: dict[str, Any]) -> StudentGenerator:
    """The EMA generator of a checkpoint, in eval mode."""
    opts, teacher = data["options"], data["teacher"]
    g = StudentGenerator(
        int(teacher["z_dim"]), int(teacher["num_classes"]), tuple(opts["g_channels"]), int(opts["g_blocks"])
    )
    g.load_state_dict(data["G_ema"])
    return g.eval()


@torch.no_grad()
def recalibrate_batchnorm(g: StudentGenerator, batches: int, batch: int = 64, seed: int = 0) -> None:
    """Re-estimate the batch-norm statistics of ``g`` ("standing statistics") for its own weights."""
    if batches <= 0:
        return
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    gen = torch.Generator().manual_seed(seed)
    g.train()
    for _ in range(batches):
        z = torch.randn(batch, g.z_dim, generator=gen)
        y = torch.randint(g.num_classes, (batch,), generator=gen)
        g(z, y)
    g.eval()


def export_generator(g: StudentGenerator, out: str | Path, info: GeneratorInfo) -> Path:
    """Write ``g`` as an FP16 OpenVINO IR at ``out`` (.xml) with ``info`` in its rt_info."""
    import openvino as ov

    out = Path(out)
    if out.suffix.lower() != ".xml":
        raise SynthcalibError(f"--out {out}: expected an .xml path for the OpenVINO IR")
    ensure_writable_dir(out.parent, "--out")
    g = g.eval().cpu()
    z = torch.randn(2, g.z_dim)
    y = torch.arange(2, dtype=torch.int64) % g.num_classes
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "generator.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                g,
                (z, y),
                str(onnx_path),
                input_names=["z", "label"],
                output_names=["image"],
                dynamic_axes={"z": {0: "N"}, "label": {0: "N"}, "image": {0: "N"}},
                opset_version=17,
                dynamo=False,
            )
        model = ov.convert_model(str(onnx_path))
    model.inputs[0].get_tensor().set_names({"z"})
    model.inputs[1].get_tensor().set_names({"label"})
    model.outputs[0].get_tensor().set_names({"image"})
    write_info(model, info)
    ov.save_model(model, str(out), compress_to_fp16=True)
    return out


def export_from_options(opts: dict[str, Any]) -> Path:
    """``export`` command: last checkpoint of ``--run`` -> ``--out`` .xml."""
    data, ckpt = load_checkpoint(opts["run"])
    g = generator_from_checkpoint(data)
    recalibrate_batchnorm(g, opts["bn_batches"])
    teacher = data["teacher"]
    names = teacher.get("class_names")
    info = GeneratorInfo(
        z_dim=g.z_dim,
        num_classes=g.num_classes,
        image_size=(g.image_size, g.image_size),
        output_range=(-1.0, 1.0),
        label_input="index",
        class_names=tuple(names) if names else None,
        provenance={
            "producer": "openvino_synthcalib.train_generator",
            "method": "TinyGAN-style black-box distillation (pixel L1 + discriminator features + hinge)",
            "teacher": teacher.get("spec"),
            "teacher_kind": teacher.get("kind"),
            "teacher_sha256": teacher.get("sha256"),
            "steps": int(data["step"]),
            "options_hash": data.get("options_hash"),
            "options": data.get("options"),
            "checkpoint": ckpt.name,
            "run": ckpt.parent.name,
            "params": count_params(g),
            "architecture": {"g_channels": list(g.channels), "g_blocks": g.blocks_per_res},
            "trained": data.get("time"),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    return export_generator(g, opts["out"], info)
