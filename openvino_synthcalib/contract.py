"""The generator contract: its ports, its ``synthcalib`` rt_info metadata, its output range.

A generator is an OpenVINO model (IR or ONNX) with two inputs, a latent ``z`` (float [N, z_dim])
and a class ``label`` (int [N] indices, or float [N, num_classes] one-hot), and one image output
[N, 3, H, W] in ``output_range``. What it declares about itself lives in its rt_info under
``synthcalib/<key>``, each value a JSON string so that it survives save/load unchanged in every
OpenVINO version. This module is the only place that reads or writes that metadata, finds the
ports, tells the label form and probes the value range; the engine, the teacher adapters, the
exporter, the evaluation and ``synthcalib info`` all go through it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .checks import checked, integer
from .errors import SynthcalibError
from .models import static_dims
from .rng import normal_rows

RT_INFO_ROOT = "synthcalib"
METADATA_KEYS = (
    "z_dim",
    "num_classes",
    "class_names",
    "class_ids",
    "image_size",
    "output_range",
    "label_input",
    "provenance",
)
LABEL_INPUT_KINDS = ("index", "onehot")
Z_INPUT = "z"
LABEL_INPUT = "label"
IMAGE_OUTPUT = "image"
# Input names other exporters use (StyleGAN2-ADA's ``c``, BigGAN ports' ``y``...).
Z_NAMES = frozenset({"z", "latent", "latents", "noise"})
LABEL_NAMES = frozenset({"label", "labels", "c", "class", "class_label", "y"})
#: Conventional output ranges, in the order a probe tries them.
KNOWN_RANGES = ((0.0, 1.0), (-1.0, 1.0), (0.0, 255.0))
PROBE_BATCH = 8


@dataclass(frozen=True)
class GeneratorInfo:
    """What a generator declares about itself (or what the user stated for it)."""

    z_dim: int
    num_classes: int
    image_size: tuple[int, int]
    output_range: tuple[float, float] = (-1.0, 1.0)
    label_input: str = "index"
    class_names: tuple[str, ...] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    #: Stable identifiers of the classes beside their names (ImageNet's WordNet ids), if any.
    class_ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        where = "generator metadata"
        checked(lambda v: integer(v, 1), self.z_dim, f"{where}: z_dim")
        checked(lambda v: integer(v, 1), self.num_classes, f"{where}: num_classes")
        try:
            size = tuple(self.image_size)
        except TypeError:
            size = ()
        if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
            raise SynthcalibError(f"{where}: image_size must be [H, W] of positive integers, got {self.image_size!r}")
        object.__setattr__(self, "image_size", size)
        object.__setattr__(self, "output_range", _range(self.output_range, f"{where}: output_range"))
        if self.label_input not in LABEL_INPUT_KINDS:
            raise SynthcalibError(
                f"{where}: label_input must be one of {', '.join(LABEL_INPUT_KINDS)}, got {self.label_input!r}"
            )
        if self.class_names is not None:
            if isinstance(self.class_names, str) or not isinstance(self.class_names, (list, tuple)):
                raise SynthcalibError(f"{where}: class_names must be a list of names, got {self.class_names!r}")
            names = tuple(str(n) for n in self.class_names)
            if len(names) != self.num_classes:
                raise SynthcalibError(
                    f"{where}: class_names has {len(names)} names but num_classes is {self.num_classes}"
                )
            if len(set(names)) != len(names):
                raise SynthcalibError(f"{where}: class_names must be distinct, got {list(names)}")
            object.__setattr__(self, "class_names", names)
        if self.class_ids is not None:
            if isinstance(self.class_ids, str) or not isinstance(self.class_ids, (list, tuple)):
                raise SynthcalibError(f"{where}: class_ids must be a list of identifiers, got {self.class_ids!r}")
            ids = tuple(str(n) for n in self.class_ids)
            if len(ids) != self.num_classes or len(set(ids)) != len(ids):
                raise SynthcalibError(f"{where}: class_ids must be {self.num_classes} distinct identifiers")
            object.__setattr__(self, "class_ids", ids)
        if not isinstance(self.provenance, dict):
            raise SynthcalibError(f"{where}: provenance must be a mapping, got {self.provenance!r}")

    @property
    def names(self) -> tuple[str, ...]:
        """Class names, falling back to ``class0``, ``class1``, ..."""
        return self.class_names or tuple(f"class{i}" for i in range(self.num_classes))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        d["output_range"] = list(self.output_range)
        d["class_names"] = list(self.class_names) if self.class_names is not None else None
        d["class_ids"] = list(self.class_ids) if self.class_ids is not None else None
        return d


def _range(value: Any, name: str) -> tuple[float, float]:
    try:
        lo_hi = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        lo_hi = ()
    if len(lo_hi) != 2 or not all(math.isfinite(v) for v in lo_hi) or not lo_hi[0] < lo_hi[1]:
        raise SynthcalibError(f"{name} must be [low, high] finite numbers with low < high, got {value!r}")
    return lo_hi  # type: ignore[return-value]


def write_info(model: Any, info: GeneratorInfo) -> None:
    """Store ``info`` in the rt_info of an ``openvino.Model`` under ``synthcalib/``."""
    for key, value in info.to_dict().items():
        if value is None:
            continue
        model.set_rt_info(json.dumps(value, sort_keys=True), [RT_INFO_ROOT, key])


def read_info(model: Any) -> dict[str, Any]:
    """The ``synthcalib`` metadata of an ``openvino.Model`` as stored (possibly empty, not checked)."""
    found: dict[str, Any] = {}
    for key in METADATA_KEYS:
        path = [RT_INFO_ROOT, key]
        if not model.has_rt_info(path):
            continue
        raw = model.get_rt_info(path)
        text = raw.astype(str) if hasattr(raw, "astype") else str(raw)
        try:
            found[key] = json.loads(text)
        except json.JSONDecodeError:
            found[key] = text
    return found


def _declared(model: Any, where: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Stored metadata with the user's overrides on top, each value checked for its type."""
    declared = read_info(model)
    origin = {k: f"rt_info {RT_INFO_ROOT}/{k}" for k in declared}
    for key, value in overrides.items():
        if value is not None:
            declared[key], origin[key] = value, f"option {key}"
    for key in ("z_dim", "num_classes"):
        if key in declared:
            value = declared[key]
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise SynthcalibError(
                    f"generator '{where}': {origin[key]} must be a positive integer, got {declared[key]!r}"
                )
            declared[key] = value
    if "output_range" in declared:
        declared["output_range"] = _range(declared["output_range"], f"generator '{where}': {origin['output_range']}")
    if "image_size" in declared:
        size = declared["image_size"]
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
            raise SynthcalibError(
                f"generator '{where}': {origin['image_size']} must be [H, W] positive integers, got {size!r}"
            )
    if "provenance" in declared and not isinstance(declared["provenance"], dict):
        declared["provenance"] = {"note": str(declared["provenance"])}
    return declared


@dataclass(frozen=True)
class GeneratorPorts:
    """The latent and label inputs of a generator, and how labels are fed."""

    z: Any
    label: Any
    label_input: str  # "index" or "onehot"

    @property
    def z_name(self) -> str:
        return self.z.get_any_name()

    @property
    def label_name(self) -> str:
        return self.label.get_any_name()


def _describe(port: Any) -> str:
    return f"{port.get_any_name()} {port.get_element_type().to_string()}{port.get_partial_shape()}"


def _rank(port: Any) -> int | None:
    rank = port.get_partial_shape().rank
    return rank.get_length() if rank.is_static else None


def find_ports(model: Any, where: str) -> GeneratorPorts:
    """The ``z`` and ``label`` inputs of a generator: by name, else by signature."""
    expected = (
        f"generator '{where}' has inputs [{', '.join(_describe(p) for p in model.inputs)}]: expected 'z' float32 "
        "[N, z_dim] and 'label' int64 [N] (or one-hot float32 [N, num_classes])"
    )
    if len(model.inputs) != 2:
        raise SynthcalibError(expected)
    named_z = [p for p in model.inputs if {n.lower() for n in p.get_names()} & Z_NAMES]
    named_label = [p for p in model.inputs if {n.lower() for n in p.get_names()} & LABEL_NAMES]
    if len(named_z) == 1 and len(named_label) == 1 and named_z[0] is not named_label[0]:
        z, label = named_z[0], named_label[0]
    else:
        ints = [p for p in model.inputs if p.get_element_type().is_integral()]
        floats = [p for p in model.inputs if p.get_element_type().is_real()]
        if len(ints) != 1 or len(floats) != 1:
            raise SynthcalibError(expected)
        z, label = floats[0], ints[0]
    if not z.get_element_type().is_real() or _rank(z) not in (2, None):
        raise SynthcalibError(expected)
    if label.get_element_type().is_integral() and _rank(label) in (1, None):
        kind = "index"
    elif label.get_element_type().is_real() and _rank(label) in (2, None):
        kind = "onehot"
    else:
        raise SynthcalibError(expected)
    if len(model.outputs) != 1:
        raise SynthcalibError(f"generator '{where}' has {len(model.outputs)} outputs: expected one image output")
    out = (
        static_dims(model.outputs[0].get_partial_shape()) if model.outputs[0].get_partial_shape().rank.is_static else []
    )
    if out and (len(out) != 4 or out[1] not in (None, 3)):
        raise SynthcalibError(f"generator '{where}' output has shape {out}: expected [N, 3, H, W]")
    return GeneratorPorts(z, label, kind)


def is_generator(model: Any) -> bool:
    """Whether a model has the ports of a generator."""
    try:
        find_ports(model, "")
    except SynthcalibError:
        return False
    return True


def guess_range(probe: np.ndarray) -> tuple[float, float]:
    """The conventional range a probe batch falls into: [0, 1], [-1, 1] or [0, 255]."""
    if not np.isfinite(probe).all():
        raise SynthcalibError("generator output contains NaN or inf on a probe batch")
    lo, hi = float(probe.min()), float(probe.max())
    slack = 0.05
    for r_lo, r_hi in KNOWN_RANGES:
        tol = slack * (r_hi - r_lo) / 2
        if lo >= r_lo - tol and hi <= r_hi + tol:
            return (r_lo, r_hi)
    raise SynthcalibError(
        f"generator output spans [{lo:.3g}, {hi:.3g}], not [0, 1], [-1, 1] or [0, 255]: state output_range"
    )


def resolve_info(
    model: Any,
    where: str,
    ports: GeneratorPorts,
    overrides: dict[str, Any] | None = None,
    default_num_classes: int | None = None,
    probe: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> GeneratorInfo:
    """Everything about a generator: its metadata, overrides, input/output shapes and, for what is
    still unknown (image size, output range), a probe batch run through ``probe(z, labels)``."""
    unknown = set(overrides or {}) - set(GeneratorInfo.__dataclass_fields__)
    if unknown:
        raise SynthcalibError(f"unknown generator option(s) {sorted(unknown)} for '{where}'")
    declared = _declared(model, where, overrides or {})
    z_dims = static_dims(ports.z.get_partial_shape()) if _rank(ports.z) else [None, None]
    label_dims = static_dims(ports.label.get_partial_shape()) if _rank(ports.label) else [None] * 2
    out_shape = model.outputs[0].get_partial_shape()
    out_dims = static_dims(out_shape) if out_shape.rank.is_static else [None] * 4
    if "label_input" in declared and declared["label_input"] != ports.label_input:
        raise SynthcalibError(
            f"generator '{where}': metadata label_input={declared['label_input']!r} but input "
            f"'{ports.label_name}' takes {ports.label_input} labels"
        )
    if z_dims[1] is not None and "z_dim" in declared and declared["z_dim"] != z_dims[1]:
        raise SynthcalibError(
            f"generator '{where}': metadata z_dim={declared['z_dim']} but input '{ports.z_name}' has {z_dims[1]}"
        )
    z_dim = declared.get("z_dim", z_dims[1])
    if z_dim is None:
        raise SynthcalibError(f"generator '{where}' has a dynamic z dimension and no z_dim metadata: pass z_dim")
    num_classes = declared.get("num_classes")
    if ports.label_input == "onehot" and label_dims[-1] is not None:
        if num_classes is not None and num_classes != label_dims[-1]:
            raise SynthcalibError(
                f"generator '{where}': num_classes={num_classes} but one-hot input '{ports.label_name}' "
                f"has {label_dims[-1]} classes"
            )
        num_classes = label_dims[-1]
    num_classes = num_classes or default_num_classes
    if num_classes is None:
        raise SynthcalibError(
            f"generator '{where}' declares no num_classes (rt_info synthcalib/num_classes): "
            "state it, e.g. generator:PATH?num_classes=10 or --num-classes 10"
        )
    provenance = dict(declared.get("provenance") or {})
    image_size = declared.get("image_size") or (tuple(out_dims[2:]) if None not in out_dims[2:] else None)
    output_range = declared.get("output_range")
    if image_size is None or output_range is None:
        if probe is None:
            raise SynthcalibError(f"generator '{where}' declares no image_size/output_range and cannot be probed")
        raw = probe(normal_rows(0, range(PROBE_BATCH), int(z_dim)), np.arange(PROBE_BATCH) % int(num_classes))
        image_size = image_size or tuple(raw.shape[2:])
        if output_range is None:
            try:
                output_range = guess_range(raw)
            except SynthcalibError as exc:
                raise SynthcalibError(f"generator '{where}': {exc}") from None
            provenance["output_range_guessed"] = True
    ids = declared.get("class_ids")
    if (overrides or {}).get("class_names") is not None or not isinstance(ids, list) or len(ids) != int(num_classes):
        ids = None  # ids go with the stored names only
    return GeneratorInfo(
        z_dim=int(z_dim),
        num_classes=int(num_classes),
        image_size=tuple(int(s) for s in image_size),
        output_range=output_range,
        label_input=ports.label_input,
        class_names=declared.get("class_names"),
        provenance=provenance,
        class_ids=ids,
    )


def label_feed(labels: np.ndarray, label_input: str, num_classes: int, dtype: Any = np.int64) -> np.ndarray:
    """Class indices in the form the label input takes: indices, or one-hot rows."""
    labels = np.asarray(labels, dtype=np.int64)
    if label_input == "onehot":
        out = np.zeros((len(labels), num_classes), dtype=dtype)
        out[np.arange(len(labels)), labels] = 1
        return out
    return labels.astype(dtype, copy=False)


def rescale(images: np.ndarray, source: tuple[float, float], target: tuple[float, float]) -> np.ndarray:
    """Map images from the ``source`` value range to ``target`` (float32, clipped to ``target``)."""
    (a, b), (c, d) = source, target
    x = np.asarray(images, dtype=np.float32)
    if (a, b) != (c, d):
        x = (x - np.float32(a)) * np.float32((d - c) / (b - a)) + np.float32(c)
    return np.clip(x, c, d)
