from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import make_classifier, make_generator, make_image_folder

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SYNTHCALIB_SHARED", REPO.parent / "shared"))
TEACHER = SHARED / "teachers" / "cifar10_cgan_teacher.onnx"
ZOO = SHARED / "models" / "cifar10"
CIFAR = SHARED / "datasets" / "cifar10-jpeg"
# NNCF's torch backend compiles a C++ extension the first time it quantizes (then it is cached);
# on a busy 2-core machine that can take longer than NNCF's default 60 s limit.
os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "900")


def pytest_collection_modifyitems(config, items):
    if SHARED.is_dir():
        return
    skip = pytest.mark.skip(reason=f"shared assets not found at {SHARED}")
    for item in items:
        if "shared" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    """Tiny generator / classifier IRs and an image folder, built once per session."""
    root = tmp_path_factory.mktemp("assets")
    return {
        "generator": make_generator(root / "gen.xml"),
        "generator_bare": make_generator(root / "gen_bare.xml", metadata=False, output_range=(0.0, 1.0)),
        "generator_onehot": make_generator(root / "gen_onehot.xml", onehot=True),
        "classifier": make_classifier(root / "cls.xml"),
        "classifier_nhwc": make_classifier(root / "cls_nhwc.xml", nhwc=True),
        # folder names sort in the classifier's class order (red, green, blue, gray)
        "images": make_image_folder(root / "images", classes=("0_red", "1_green", "2_blue", "3_gray")),
        "root": root,
    }
