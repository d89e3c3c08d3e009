"""Export a run's EMA generator: PyTorch -> ONNX -> ``openvino.convert_model`` -> FP16 IR + metadata.

The IR has inputs ``z`` (float32 [N, z_dim]) and ``label`` (int64 [N]) and one output ``image``
[N, 3, H, W] in [-1, 1] with a dynamic batch, and carries the ``synthcalib`` rt_info (see
:mod:`openvino_synthcalib.contract`) with a provenance record: teacher, steps, options hash, date,
parameter count.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from pathlib import Path, PureWindowsPath
from typing import Any

import torch
from torch import nn

from ..contract import IMAGE_OUTPUT, LABEL_INPUT, Z_INPUT, GeneratorInfo, write_info
from ..errors import SynthcalibError
from ..files import created_dirs, save_ir
from ..models import parameter_count
from .checkpoints import load_checkpoint
from .student import StudentGenerator, count_params, generator_from_options


def generator_from_checkpoint(data: dict[str, Any]) -> StudentGenerator:
    """The EMA generator of a checkpoint, in eval mode."""
    opts, teacher = data["options"], data["teacher"]
    g = generator_from_options(opts, int(teacher["z_dim"]), int(teacher["num_classes"]))
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


def to_openvino(g: StudentGenerator) -> Any:
    """``g`` as an ``openvino.Model`` with the contract's port names (dynamic batch), via ONNX."""
    import openvino as ov

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
                input_names=[Z_INPUT, LABEL_INPUT],
                output_names=[IMAGE_OUTPUT],
                dynamic_axes={Z_INPUT: {0: "N"}, LABEL_INPUT: {0: "N"}, IMAGE_OUTPUT: {0: "N"}},
                opset_version=17,
                dynamo=False,
            )
        model = ov.convert_model(str(onnx_path))
    model.inputs[0].get_tensor().set_names({Z_INPUT})
    model.inputs[1].get_tensor().set_names({LABEL_INPUT})
    model.outputs[0].get_tensor().set_names({IMAGE_OUTPUT})
    return model


def export_generator(model: Any, out: str | Path, info: GeneratorInfo) -> Path:
    """Write an ``openvino.Model`` generator as an FP16 IR at ``out`` (.xml) with ``info`` in its rt_info."""
    out = Path(out)
    if out.suffix.lower() != ".xml":
        raise SynthcalibError(f"--out {out}: expected an .xml path for the OpenVINO IR")
    write_info(model, info)
    with created_dirs(out.parent, "--out folder"):
        return save_ir(model, out, "--out", compress_to_fp16=True)


def without_folders(value: Any) -> Any:
    """``value`` (a run's options, the teacher's record) with every file path in it reduced to its
    name, in nested mappings and lists too: a shipped IR's provenance names the files it was made
    from, not the folders of the machine that made it. POSIX and Windows paths alike (``C:\\x\\t.onnx``
    -> ``t.onnx``); ``path/to/file.py:function`` keeps its function (``file.py:function``)."""
    if isinstance(value, str):
        if "/" not in value and "\\" not in value:
            return value
        head, sep, tail = value.rpartition(":")
        if sep and head and tail and not tail.startswith(("/", "\\")):
            return f"{PureWindowsPath(head).name}:{tail}"  # a Windows path splits at / and \\ alike
        return PureWindowsPath(value).name
    if isinstance(value, dict):
        return {k: without_folders(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_folders(v) for v in value]
    return value


def _init_from_of_run(ckpt: Path) -> dict[str, Any] | None:
    """For checkpoints written before they recorded ``started_from``: the ``--init-from`` their run's
    ``options.json`` was made with (which checkpoint of it was not recorded)."""
    try:
        init_from = json.loads((ckpt.parent / "options.json").read_text()).get("init_from")
    except (OSError, ValueError):
        return None
    return {"init_from": init_from} if init_from else None


def export_from_options(opts: dict[str, Any]) -> Path:
    """``export`` command: last checkpoint of ``--run`` -> ``--out`` .xml."""
    data, ckpt = load_checkpoint(opts["run"], "--run")
    g = generator_from_checkpoint(data)
    recalibrate_batchnorm(g, opts["bn_batches"])
    model = to_openvino(g)
    teacher = data["teacher"]
    names = teacher.get("class_names")
    if names and teacher.get("class_ids") and len(set(names)) != len(names):
        from ..classes import distinct

        names = list(distinct(list(names), list(teacher["class_ids"])))
    if teacher.get("kind") == "classifier":
        method = (
            "data-free training through a frozen classifier: BatchNorm-statistics matching (DeepInversion) "
            "+ cross-entropy on the conditioning class + mode-seeking diversity, jitter and flips"
        )
        o = data.get("options", {})
        extras = [
            f"set-level statistics (momentum {o['bn_set_momentum']})" if o.get("bn_set_momentum") else "",
            "statistics in relative units (each channel's running deviation)"
            if o.get("bn_units") == "relative"
            else "",
            f"output stretching (DGH, weight {o['w_out']})" if o.get("w_out") else "",
            f"feature diversity within a class (weight {o['w_fdiv']})" if o.get("w_fdiv") else "",
            f"random resized crops (scale {o['rrc_scale']}-1)" if o.get("rrc_scale") else "",
        ]
        if any(extras):
            method += "; " + ", ".join(e for e in extras if e)
        teacher_record = {
            "teacher": teacher.get("spec"),
            "teacher_kind": f"classifier ({teacher.get('classifier_kind')})",
            "teacher_sha256": teacher.get("sha256"),
            "teacher_input": {k: teacher.get(k) for k in ("input_size", "mean", "std", "batchnorm_layers")},
        }
    else:
        method = "TinyGAN-style black-box distillation (pixel L1 + discriminator features + hinge)"
        teacher_record = {
            "teacher": teacher.get("spec"),
            "teacher_kind": teacher.get("kind"),
            "teacher_sha256": teacher.get("sha256"),
        }
    started_from = data.get("started_from") or _init_from_of_run(ckpt)
    if started_from:
        if "run" in started_from:
            label = f"{started_from['run']}/{started_from['checkpoint']} (step {started_from['step']})"
        else:
            label = PureWindowsPath(started_from["init_from"]).name  # either separator
        method += f"; started from the weights of {label} (--init-from)"
    info = GeneratorInfo(
        z_dim=g.z_dim,
        num_classes=g.num_classes,
        image_size=(g.image_size, g.image_size),
        output_range=(-1.0, 1.0),
        label_input="index",
        class_names=tuple(names) if names else None,
        class_ids=tuple(teacher["class_ids"]) if teacher.get("class_ids") else None,
        provenance={
            "producer": "openvino_synthcalib.train_generator",
            "method": method,
            **without_folders(teacher_record),  # the teacher's file name, not where it was
            "steps": int(data["step"]),
            "options_hash": data.get("options_hash"),
            "options": without_folders(data.get("options") or {}),
            "checkpoint": ckpt.name,
            "run": ckpt.parent.name,
            "params": parameter_count(model),  # what `synthcalib info` reports for the IR
            "trainable_params": count_params(g),
            "architecture": {
                "g_channels": list(g.channels),
                "g_blocks": g.blocks_per_res,
                **({"g_base": g.base} if g.base != 4 else {}),
                **({"g_class_dim": g.class_dim} if g.class_dim else {}),
            },
            **({"started_from": without_folders(started_from)} if started_from else {}),
            "trained": data.get("time"),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    return export_generator(model, opts["out"], info)
