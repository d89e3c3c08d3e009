"""benchmarks/train_zoo.py at tiny sizes: training step, augmentation, ONNX export, OpenVINO parity, resume."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ov = pytest.importorskip("openvino")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import train_zoo as tz  # noqa: E402

TINY = {
    "convmixer": {"dim": 16, "depth": 2, "kernel_size": 5},
    "vit": {"dim": 32, "depth": 2, "heads": 2},
}


def random_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", sorted(tz.RECIPES))
def test_tiny_model_trains_exports_and_matches_openvino(name, tmp_path):
    recipe = tz.RECIPES[name]
    torch.manual_seed(0)
    model = recipe.model(**TINY[name])
    opt = torch.optim.AdamW(tz.param_groups(model, recipe.weight_decay), lr=1e-3)
    x = tz.to_input(tz.augment(torch.from_numpy(random_images(8)), torch.Generator().manual_seed(0)))
    y = torch.arange(8) % 10
    before = [p.detach().clone() for p in model.parameters()]
    loss, correct = tz.train_step(model.train(), opt, x, y, recipe, amp=True)
    assert np.isfinite(loss) and 0 <= correct <= 8
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))

    path = tmp_path / f"{name}.onnx"
    tz.export_onnx(model, path)
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert [p.get_any_name() for p in compiled.inputs] == ["input"]
    assert [p.get_any_name() for p in compiled.outputs] == ["logits"]
    x = torch.randn(3, 3, 32, 32)  # a batch size other than the export's: the batch axis is dynamic
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    got = compiled({"input": x.numpy()})["logits"]
    assert got.shape == (3, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_augment_is_a_seeded_crop_of_the_padded_image_possibly_flipped():
    images = torch.from_numpy(random_images(6))
    out = tz.augment(images, torch.Generator().manual_seed(1))
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(out, tz.augment(images, torch.Generator().manual_seed(1)))
    padded = torch.nn.functional.pad(images, (0, 0, 4, 4, 4, 4))
    for src, crop in zip(padded, out):
        windows = [src[dy : dy + 32, dx : dx + 32] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(crop, w) or torch.equal(crop, w.flip(1)) for w in windows)


def test_the_benchmarks_know_the_extra_zoo_by_its_recipes():
    """benchmarks/zoo.py resolves these names by running train_zoo.py, without importing it."""
    from paths import EXTRA_MODELS, EXTRA_ZOO

    assert tuple(tz.RECIPES) == EXTRA_MODELS and tz.DEFAULT_OUT == EXTRA_ZOO


def test_lr_schedule_warms_up_then_decays_to_zero():
    lrs = [tz.lr_at(step, 100, 10, 1.0) for step in range(100)]
    assert lrs[9] == 1.0 and lrs[0] == 0.1
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] < 1e-3


def write_folder(root: Path, per_class: int, seed: int) -> None:
    from PIL import Image

    images = random_images(10 * per_class, seed)
    for i, image in enumerate(images):
        folder = root / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:04d}.jpg", quality=75)


@pytest.fixture
def tiny_zoo(tmp_path, monkeypatch):
    """A 40 + 10 image dataset and a tiny ConvMixer recipe in place of the real ones."""
    write_folder(tmp_path / "data" / "train", 4, seed=1)
    write_folder(tmp_path / "data" / "test", 1, seed=2)
    recipe = tz.Recipe(tz.ConvMixer, {"dim": 8, "depth": 1, "kernel_size": 3}, epochs=2, batch_size=16)
    monkeypatch.setattr(tz, "RECIPES", {"tiny": recipe})
    return tmp_path


def test_ensure_zoo_builds_records_skips_and_resumes(tiny_zoo, capsys):
    out, data = tiny_zoo / "out", tiny_zoo / "data"
    settings = tz.Settings(seed=3, threads=1, amp=False)
    paths = tz.ensure_zoo(out, data, ["tiny"], settings)
    assert paths == {"tiny": out / "tiny.onnx"} and paths["tiny"].exists()
    entry = json.loads((out / "zoo.json").read_text())["tiny"]
    assert entry["params"] == tz.count_params(tz.RECIPES["tiny"].model())
    assert entry["epochs"] == 2 and len(entry["history"]) == 2
    assert entry["top1_torch"] == entry["top1_openvino"]
    assert entry["sha256"] == tz.sha256_file(paths["tiny"])
    assert "--models tiny" in entry["command"] and "--seed 3" in entry["command"]
    assert (out / "cache" / "train.npz").exists() and not list(out.glob("*.tmp*"))

    tz.ensure_zoo(out, data, ["tiny"], settings)  # built: nothing to do
    assert "already built" in capsys.readouterr().out

    tz.write_report(out, tiny_zoo / "zoo.md", "python benchmarks/train_zoo.py --models tiny")
    report = (tiny_zoo / "zoo.md").read_text()
    assert f"| tiny | `ConvMixer(dim=8, depth=1, kernel_size=3)` | {entry['params']:,} | 2 |" in report
    # op census: patch, depthwise and pointwise convolutions, each followed by GELU (an Erf) and batch norm
    assert "| tiny | 3 | 3 | 3 | 0 | 0 | 0 | 0 |" in report

    paths["tiny"].unlink()  # export lost: resumes from the last checkpoint without training again
    tz.ensure_zoo(out, data, ["tiny"], settings)
    again = json.loads((out / "zoo.json").read_text())["tiny"]
    assert again["history"] == entry["history"] and again["train_seconds"] == entry["train_seconds"]

    with pytest.raises(SystemExit, match="--force"):  # a checkpoint made with other settings is not reused
        paths["tiny"].unlink()
        tz.ensure_zoo(out, data, ["tiny"], tz.Settings(seed=4, threads=1, amp=False))


def test_training_is_deterministic_given_the_seed(tiny_zoo):
    data = tiny_zoo / "data"
    settings = tz.Settings(seed=5, threads=1, amp=False)
    for run in ("a", "b"):
        tz.ensure_zoo(tiny_zoo / run, data, ["tiny"], settings)
    a, b = (torch.load(tiny_zoo / run / "checkpoints" / "tiny.pt")["model"] for run in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
