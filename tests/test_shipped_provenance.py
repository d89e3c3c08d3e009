"""The shipped models' metadata names files, never the folders of the machine that built them."""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "openvino_synthcalib" / "data"
GENERATORS = REPO / "generators"
#: An absolute path: POSIX (/...), home (~/...), a Windows drive (C:\... or C:/...) or a UNC share (\\host\...).
ABSOLUTE = re.compile(r"^(?:/|~[/\\]|[A-Za-z]:[\\/]|\\\\)")


def strings(value):
    """Every string in a JSON value (mappings, lists), keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def rt_info_strings(xml: Path):
    """(where, string) for every rt_info value of an IR, model and layers, JSON values decoded."""
    for rt_info in ET.parse(xml).getroot().iter("rt_info"):
        for element in rt_info.iter():
            for name, raw in element.attrib.items():
                try:
                    decoded = json.loads(raw)
                except json.JSONDecodeError:
                    decoded = raw
                for s in {raw, *strings(decoded)}:
                    yield f"{xml.relative_to(REPO)} <{element.tag} {name}>", s


SHIPPED_IRS = sorted(DATA.glob("**/*.xml"))


def test_the_pattern_finds_absolute_paths():
    for path in ("/work/shared/t.onnx", "~/t.onnx", "C:\\x\\t.onnx", "c:/x/t.onnx", "\\\\host\\share\\t.onnx"):
        assert ABSOLUTE.match(path), path
    for value in ("t.onnx", "runs", "DIR/generator.onnx", "dynamic:f16", "pkg.mod:factory", "2026/4"):
        assert not ABSOLUTE.match(value), value


@pytest.mark.parametrize("xml", SHIPPED_IRS, ids=lambda p: p.name)
def test_shipped_ir_rt_info_holds_no_absolute_path(xml):
    found = [(where, s) for where, s in rt_info_strings(xml) if ABSOLUTE.match(s)]
    assert not found, f"absolute paths in the rt_info of a shipped IR: {found[:5]}"


def test_shipped_generators_name_their_teacher_by_file_or_factory():
    """Not vacuous: the provenance records are read, and name what they were made from."""
    teachers = {}
    for xml in SHIPPED_IRS:
        for where, s in rt_info_strings(xml):
            if where.endswith("<provenance value>") and s.startswith("{"):
                teachers[xml.name] = json.loads(s)["teacher"]
    assert teachers == {
        "cifar10_student.xml": "cifar10_cgan_teacher.onnx",
        "imagenet_student.xml": "openvino_synthcalib.train_generator.classifiers:efficientnet_lite0",
    }


def test_generators_folder_links_and_logs_hold_no_absolute_path():
    links = [p for p in GENERATORS.rglob("*") if p.is_symlink()]
    assert links and all(not os.path.isabs(os.readlink(p)) and p.exists() for p in links)
    logs = sorted(GENERATORS.rglob("*.json"))
    assert logs
    for log in logs:
        found = [s for s in strings(json.loads(log.read_text())) if ABSOLUTE.match(s)]
        assert not found, f"{log.relative_to(REPO)}: absolute paths {found}"


def test_exporter_reduces_paths_to_file_names():
    pytest.importorskip("torch")
    from openvino_synthcalib.train_generator.exporter import without_folders

    record = {
        "teacher": "/work/shared/teachers/cifar10_cgan_teacher.onnx",
        "options": {
            "data": "runs/teacher-set-cifar10",
            "class_names": ["C:\\data\\classes.tsv", "D:/x/y.txt", "\\\\host\\share\\z.tsv"],
            "classifier": "/home/me/code/tiny_classifier.py:classifier",
            "factory": "openvino_synthcalib.train_generator.classifiers:efficientnet_lite0",
            "nested": {"real_data": "/tmp/real", "steps": 3, "none": None},
        },
    }
    assert without_folders(record) == {
        "teacher": "cifar10_cgan_teacher.onnx",
        "options": {
            "data": "teacher-set-cifar10",
            "class_names": ["classes.tsv", "y.txt", "z.tsv"],
            "classifier": "tiny_classifier.py:classifier",
            "factory": "openvino_synthcalib.train_generator.classifiers:efficientnet_lite0",
            "nested": {"real_data": "real", "steps": 3, "none": None},
        },
    }
