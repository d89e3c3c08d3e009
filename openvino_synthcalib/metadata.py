"""The generator contract: inputs, outputs and the ``synthcalib`` rt_info metadata.

A generator is an OpenVINO model with inputs ``z`` (float32 [N, z_dim]) and ``label``
(int64 [N] class indices, or float32 [N, num_classes] one-hot) and one output ``image``
[N, 3, H, W] in ``output_range``. Its description lives in the model's rt_info under
``synthcalib/<key>``; each value is stored as a JSON string so that it survives
save/load unchanged in every OpenVINO version.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .errors import SynthcalibError

RT_INFO_ROOT = "synthcalib"
METADATA_KEYS = (
    "z_dim",
    "num_classes",
    "class_names",
    "image_size",
    "output_range",
    "label_input",
    "provenance",
)
LABEL_INPUT_KINDS = ("index", "onehot")
Z_INPUT = "z"
LABEL_INPUT = "label"


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

    def __post_init__(self) -> None:
        where = "generator metadata"
        if not isinstance(self.z_dim, int) or self.z_dim <= 0:
            raise SynthcalibError(f"{where}: z_dim must be a positive integer, got {self.z_dim!r}")
        if not isinstance(self.num_classes, int) or self.num_classes <= 0:
            raise SynthcalibError(f"{where}: num_classes must be a positive integer, got {self.num_classes!r}")
        size = tuple(self.image_size)
        if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
            raise SynthcalibError(f"{where}: image_size must be [H, W] of positive integers, got {self.image_size!r}")
        object.__setattr__(self, "image_size", size)
        lo_hi = tuple(float(v) for v in self.output_range)
        if len(lo_hi) != 2 or not lo_hi[0] < lo_hi[1]:
            raise SynthcalibError(
                f"{where}: output_range must be [low, high] with low < high, got {self.output_range!r}"
            )
        object.__setattr__(self, "output_range", lo_hi)
        if self.label_input not in LABEL_INPUT_KINDS:
            raise SynthcalibError(
                f"{where}: label_input must be one of {', '.join(LABEL_INPUT_KINDS)}, got {self.label_input!r}"
            )
        if self.class_names is not None:
            names = tuple(str(n) for n in self.class_names)
            if len(names) != self.num_classes:
                raise SynthcalibError(
                    f"{where}: class_names has {len(names)} names but num_classes is {self.num_classes}"
                )
            object.__setattr__(self, "class_names", names)

    @property
    def names(self) -> tuple[str, ...]:
        """Class names, falling back to ``class0``, ``class1``, ..."""
        return self.class_names or tuple(f"class{i}" for i in range(self.num_classes))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        d["output_range"] = list(self.output_range)
        d["class_names"] = list(self.class_names) if self.class_names is not None else None
        return d

    def with_overrides(self, **overrides: Any) -> GeneratorInfo:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def write_info(model: Any, info: GeneratorInfo) -> None:
    """Store ``info`` in the rt_info of an ``openvino.Model`` under ``synthcalib/``."""
    for key, value in info.to_dict().items():
        if value is None:
            continue
        model.set_rt_info(json.dumps(value, sort_keys=True), [RT_INFO_ROOT, key])


def read_info(model: Any) -> dict[str, Any]:
    """Return the ``synthcalib`` metadata of an ``openvino.Model`` (possibly empty)."""
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
