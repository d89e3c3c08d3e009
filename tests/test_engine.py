import json

import numpy as np
import openvino as ov
import pytest
from conftest import TEACHER

from openvino_synthcalib.contract import GeneratorInfo, read_info
from openvino_synthcalib.engine import GeneratorEngine
from openvino_synthcalib.errors import SynthcalibError


def test_metadata_roundtrip(assets):
    info = read_info(ov.Core().read_model(str(assets["generator"])))
    assert info["z_dim"] == 8 and info["num_classes"] == 4
    assert info["image_size"] == [8, 8] and info["output_range"] == [-1.0, 1.0]
    assert info["class_names"] == ["red", "green", "blue", "gray"]
    assert info["provenance"]["made_by"] == "tests/tiny_models.py"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(z_dim=0, num_classes=2, image_size=(8, 8)), "z_dim"),
        (dict(z_dim=8, num_classes=2, image_size=(8,)), "image_size"),
        (dict(z_dim=8, num_classes=2, image_size=(8, 8), output_range=(1, -1)), "output_range"),
        (dict(z_dim=8, num_classes=2, image_size=(8, 8), label_input="text"), "label_input"),
        (dict(z_dim=8, num_classes=2, image_size=(8, 8), class_names=("a",)), "class_names"),
    ],
)
def test_info_validation(kwargs, match):
    with pytest.raises(SynthcalibError, match=match):
        GeneratorInfo(**kwargs)


def test_engine_reads_metadata(assets):
    eng = GeneratorEngine(assets["generator"], batch_size=4)
    assert eng.info.num_classes == 4 and eng.info.class_names[0] == "red"
    imgs = eng.images(np.arange(10), np.arange(10) % 4, seed=0)
    assert imgs.shape == (10, 3, 8, 8) and imgs.dtype == np.float32
    assert 0.0 <= imgs.min() and imgs.max() <= 1.0
    # class c brightens channel c: the mean colour tells the class
    assert all(imgs[i].mean(axis=(1, 2)).argmax() == i % 4 for i in range(10) if i % 4 < 3)


def test_bit_identical_whatever_batch_requests_order(assets):
    idx = np.arange(37)
    labels = idx % 4
    ref = GeneratorEngine(assets["generator"], batch_size=1, num_requests=1).images(idx, labels, seed=5)
    for bs, nreq in [(4, 2), (16, 3), (64, 1)]:
        got = GeneratorEngine(assets["generator"], batch_size=bs, num_requests=nreq).images(idx, labels, seed=5)
        assert np.array_equal(got, ref)
    perm = np.random.default_rng(0).permutation(37)
    got = GeneratorEngine(assets["generator"], batch_size=8).images(idx[perm], labels[perm], seed=5)
    assert np.array_equal(got, ref[perm])
    other = GeneratorEngine(assets["generator"], batch_size=8).images(idx, labels, seed=6)
    assert not np.array_equal(other, ref)


def test_engine_without_metadata(assets):
    with pytest.raises(SynthcalibError, match="num_classes"):
        GeneratorEngine(assets["generator_bare"])
    eng = GeneratorEngine(assets["generator_bare"], default_num_classes=4)
    assert eng.info.z_dim == 8 and eng.info.image_size == (8, 8)
    assert eng.info.output_range == (0.0, 1.0)  # guessed from a probe batch
    assert eng.info.provenance["output_range_guessed"]
    assert GeneratorEngine(assets["generator_bare"], num_classes=3).info.num_classes == 3


def test_onehot_generator_matches_index_generator(assets):
    a = GeneratorEngine(assets["generator"]).images(np.arange(8), np.arange(8) % 4, seed=1)
    b = GeneratorEngine(assets["generator_onehot"])
    assert b.info.label_input == "onehot" and b.info.num_classes == 4
    np.testing.assert_allclose(b.images(np.arange(8), np.arange(8) % 4, seed=1), a, atol=1e-6)


def test_engine_rejects_bad_models(assets, tmp_path):
    with pytest.raises(SynthcalibError, match="does not exist"):
        GeneratorEngine(tmp_path / "missing.xml")
    with pytest.raises(SynthcalibError, match="expected 'z' float32"):
        GeneratorEngine(assets["classifier"])
    bad = tmp_path / "bad.xml"
    bad.write_text("<net>")
    bad.with_suffix(".bin").write_bytes(b"")
    with pytest.raises(SynthcalibError, match="cannot read generator"):
        GeneratorEngine(bad)
    with pytest.raises(SynthcalibError, match="z_dim"):
        GeneratorEngine(assets["generator"], z_dim=9)
    with pytest.raises(SynthcalibError, match="labels must be in"):
        GeneratorEngine(assets["generator"]).images(np.arange(2), np.array([0, 4]), seed=0)
    with pytest.raises(SynthcalibError, match="batch_size"):
        GeneratorEngine(assets["generator"], batch_size=0)


@pytest.mark.shared
def test_teacher_without_metadata_is_usable():
    eng = GeneratorEngine(TEACHER, default_num_classes=10, batch_size=8)
    assert eng.info.z_dim == 128 and eng.info.image_size == (32, 32)
    assert eng.info.output_range == (-1.0, 1.0)
    a = eng.images(np.arange(12), np.arange(12) % 10, seed=3)
    b = GeneratorEngine(TEACHER, default_num_classes=10, batch_size=5, num_requests=1).images(
        np.arange(12), np.arange(12) % 10, seed=3
    )
    assert np.array_equal(a, b)


def test_shipped_student_smoke():
    """The packaged student: addressable by name, complete metadata, output in its declared range."""
    from openvino_synthcalib import models
    from openvino_synthcalib.shipped import GENERATORS, generator_path

    assert generator_path("cifar10") == GENERATORS["cifar10"] and GENERATORS["cifar10"].is_file()
    with GeneratorEngine("cifar10", batch_size=16, num_requests=1) as eng:
        info = eng.info
        assert (info.z_dim, info.num_classes, info.image_size, info.output_range) == (128, 10, (32, 32), (-1.0, 1.0))
        assert info.class_names[0] == "airplane" and info.class_names[-1] == "truck"
        assert not info.provenance.get("output_range_guessed")
        raw = eng.generate(eng.latents(np.arange(32), seed=0), np.arange(32) % 10)
        assert raw.shape == (32, 3, 32, 32) and raw.min() >= -1.0 and raw.max() <= 1.0 and raw.std() > 0.1
        model = models.read_model(GENERATORS["cifar10"])
        assert info.provenance["params"] == models.parameter_count(model)
    assert eng.compiled is None  # closed by the with block


def test_shipped_imagenet_generator(tmp_path):
    """The packaged 1000-class generator: WordNet ids and distinct names, provenance without build paths,
    and a stream for a 224-px model resizes its 128-px images."""
    torch = pytest.importorskip("torch")
    from tiny_models import make_classifier

    from openvino_synthcalib.classes import ClassList
    from openvino_synthcalib.shipped import GENERATORS
    from openvino_synthcalib.stream import make_stream

    with GeneratorEngine("imagenet", batch_size=8, num_requests=1) as eng:
        info = eng.info
        assert (info.num_classes, info.image_size, info.output_range) == (1000, (128, 128), (-1.0, 1.0))
        assert info.class_ids[0] == "n01440764" and info.class_names[0] == "tench"
        assert len(set(info.class_names)) == 1000 and "crane (n02012849)" in info.class_names
        prov = info.provenance
        assert prov["teacher_kind"].startswith("classifier") and prov["teacher_input"]["input_size"] == 224
        assert "/" not in json.dumps(prov)  # no build-machine paths
        raw = eng.generate(eng.latents(np.arange(4), seed=0), np.array([0, 1, 500, 999]))
        assert raw.shape == (4, 3, 128, 128) and np.isfinite(raw).all() and raw.std() > 0.05
        # a stream for a 224-px model: its items are the generator's 128-px images of the same
        # (seed, index, class), enlarged bilinearly (half-pixel centres, as torch's align_corners=False)
        model = make_classifier(tmp_path / "cls224.xml", num_classes=1000, size=224)
        stream = make_stream("generator:imagenet", 4, model=model, transform="unit", seed=3, precision="f32")
        batches = list(stream.batches())
        items, labels = np.concatenate([b for b, _ in batches]), np.concatenate([c for _, c in batches])
        assert items.shape == (4, 3, 224, 224) and items.dtype == np.float32
        small = eng.images(np.arange(4), labels, seed=3)
        assert small.shape == (4, 3, 128, 128)
        enlarged = torch.nn.functional.interpolate(
            torch.from_numpy(small), size=(224, 224), mode="bilinear", align_corners=False
        ).numpy()
        np.testing.assert_allclose(items, enlarged, atol=1e-4)
    folders = ClassList.load("imagenet").match(["n01440764", "goldfish", "999"], "test")
    assert folders == [0, 1, 999]
    assert GENERATORS["imagenet"].with_suffix(".bin").stat().st_size < 8 << 20


def test_engine_leaves_the_callers_model_alone(assets):
    model = ov.Core().read_model(str(assets["generator"]))
    before = [str(p.get_partial_shape()) for p in model.inputs]
    with GeneratorEngine(model, batch_size=4) as eng:
        assert eng.images(np.arange(3), np.arange(3), seed=0).shape == (3, 3, 8, 8)
    assert [str(p.get_partial_shape()) for p in model.inputs] == before
