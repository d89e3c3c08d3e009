"""Models shipped inside the package: the default generators and the demo classifier.

They live in ``openvino_synthcalib/data/`` so that a wheel carries them; the repository's
``generators/`` folder holds their model cards (and links to these files). A shipped generator
is addressable by name, e.g. ``generator:cifar10`` or ``synthcalib.Dataset("cifar10", ...)``.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"

#: Shipped generators by name.
GENERATORS = {
    "cifar10": DATA / "cifar10" / "cifar10_student.xml",
    "imagenet": DATA / "imagenet" / "imagenet_student.xml",
}
#: The default generator (``synthcalib serve``, the demo).
DEFAULT_GENERATOR = "cifar10"
#: A small CIFAR-10 classifier trained for the demo (``python -m openvino_synthcalib.demo``).
DEMO_CLASSIFIER = DATA / "cifar10" / "demo_classifier.xml"


def generator_path(name_or_path: str | os.PathLike[str]) -> Path:
    """The file of a shipped generator given its name; any other value is returned as a path."""
    text = os.fspath(name_or_path)
    if text in GENERATORS and not Path(text).exists():
        return GENERATORS[text]
    return Path(text)


def shipped_generators() -> dict[str, Path]:
    """Name -> IR file of every generator shipped with the package."""
    return dict(GENERATORS)
