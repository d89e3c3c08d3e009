"""Training a generator through a classifier with BatchNorm, without data (``train --classifier``)."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ov = pytest.importorskip("openvino")

from openvino_synthcalib.contract import read_info  # noqa: E402
from openvino_synthcalib.errors import SynthcalibError  # noqa: E402
from openvino_synthcalib.train_generator.__main__ import main  # noqa: E402
from openvino_synthcalib.train_generator.classifiers import BatchNormStatistics, batchnorm_layers  # noqa: E402
from openvino_synthcalib.train_generator.inversion import read_class_list  # noqa: E402

NUM_CLASSES = 3
CLASSIFIER_CODE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, classes=3, bn=True):
            super().__init__()
            norm = nn.BatchNorm2d if bn else (lambda c: nn.Identity())
            self.body = nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1), norm(8), nn.ReLU(),
                nn.Conv2d(8, 8, 3, stride=2, padding=1), norm(8), nn.ReLU(),
            )
            self.fc = nn.Linear(8, classes)

        def forward(self, x):
            return self.fc(self.body(x).mean((2, 3)))


    def _trained(net):
        torch.manual_seed(0)
        net.train()
        with torch.no_grad():  # running statistics of a made-up "training set"
            for _ in range(20):
                net(torch.randn(16, 3, 16, 16) * 0.5 + 0.2)
        return net.eval()


    def classifier():
        torch.manual_seed(0)
        return _trained(Net())


    def no_batchnorm():
        torch.manual_seed(0)
        return Net(bn=False).eval()


    def five_classes():
        torch.manual_seed(0)
        return _trained(Net(classes=5))


    def not_a_module():
        return 42
    """
)
TINY = ["--g-channels", "16,8,8", "--g-class-dim", "4", "--batch", "8", "--no-progress", "--threads", "1",
        "--log-every", "1", "--image-every", "2", "--classifier-mean", "0.5", "--classifier-std", "0.25"]  # fmt: skip


@pytest.fixture(scope="module")
def code(tmp_path_factory):
    root = tmp_path_factory.mktemp("clf")
    (root / "tiny_classifier.py").write_text(CLASSIFIER_CODE)
    (root / "classes.tsv").write_text("index\twnid\tname\n0\tn001\tred\n1\tn002\tgreen\n2\tn003\tblue\n")
    return root


def _run(args, capsys):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _train(code, runs, *extra):
    return ["train", "--classifier", f"{code / 'tiny_classifier.py'}:classifier", "--runs-dir", runs,
            "--name", "inv", "--class-names", code / "classes.tsv", *TINY, *extra]  # fmt: skip


def test_batchnorm_statistics_loss_is_zero_on_matching_moments():
    bn = torch.nn.BatchNorm2d(4).eval()
    x = torch.randn(64, 4, 40, 40) * 2 + 1  # 1600 positions: read at every other row and column
    stats = BatchNormStatistics([bn], max_positions=400)
    mean, var = stats.moments(x)
    torch.testing.assert_close(mean, x[:, :, ::2, ::2].mean((0, 2, 3)), rtol=0, atol=1e-4)
    torch.testing.assert_close(var, x[:, :, ::2, ::2].var((0, 2, 3), unbiased=False), rtol=1e-4, atol=1e-4)
    bn.running_mean.copy_(mean)
    bn.running_var.copy_(var)
    bn(x)
    assert stats.loss().item() < 1e-4
    bn.running_mean.add_(1.0)
    bn(x)
    assert stats.loss().item() == pytest.approx(2.0, rel=1e-4)  # ||(1, 1, 1, 1)||_2


def test_class_list_file_tsv_and_text(code, tmp_path):
    names, ids = read_class_list(str(code / "classes.tsv"))
    assert names == ("red", "green", "blue") and ids == ("n001", "n002", "n003")
    (tmp_path / "c.txt").write_text("a\nb\n")
    assert read_class_list(str(tmp_path / "c.txt")) == (("a", "b"), None)
    assert read_class_list("x,y") == (("x", "y"), None)


def test_train_export_and_stream(code, tmp_path, capsys):
    runs = tmp_path / "runs"
    rc, _, err = _run(_train(code, runs, "--steps", 4, "--ckpt-every", 2, "--keep-checkpoints", 0), capsys)
    assert rc == 0, err
    run = runs / "00000-inv"
    assert sorted(p.name for p in run.glob("checkpoint-*.pt")) == ["checkpoint-0000002.pt", "checkpoint-0000004.pt"]
    opts = json.loads((run / "options.json").read_text())
    assert opts["classifier"].endswith("tiny_classifier.py:classifier") and opts["w_bn"] == 1.0
    log = [json.loads(line) for line in (run / "log.txt").read_text().splitlines() if line.startswith("{")]
    assert [e["step"] for e in log] == [1, 2, 3, 4]
    assert all(np.isfinite(e["loss/bn"]) and e["time/minutes"] > 0 for e in log)

    xml = tmp_path / "gen.xml"
    rc, _, err = _run(["export", "--run", run, "--out", xml, "--bn-batches", "2"], capsys)
    assert rc == 0, err
    info = read_info(ov.Core().read_model(str(xml)))
    assert info["num_classes"] == NUM_CLASSES and info["class_names"] == ["red", "green", "blue"]
    assert info["class_ids"] == ["n001", "n002", "n003"]
    assert info["image_size"] == [16, 16] and info["z_dim"] == 128
    prov = info["provenance"]
    assert prov["teacher_kind"] == "classifier (factory)" and "BatchNorm" in prov["method"]
    assert prov["teacher"] == "tiny_classifier.py:classifier"
    assert len(prov["teacher_sha256"]) == 64 and prov["teacher_input"]["batchnorm_layers"] == 2

    from openvino_synthcalib.engine import GeneratorEngine

    images = GeneratorEngine(str(xml), batch_size=4).images(np.arange(6), np.arange(6) % 3, seed=0)
    assert images.shape == (6, 3, 16, 16) and np.isfinite(images).all()


def test_training_lowers_the_batchnorm_statistics_loss(code, tmp_path, capsys):
    """The generator learns: over 60 steps through the frozen classifier (no data), the distance
    between its images' BatchNorm statistics and the classifier's running statistics falls. Each
    step's loss is measured on fresh latents before that step's update, so it is not fitted noise."""
    runs = tmp_path / "runs"
    args = _train(code, runs, "--steps", 60, "--ckpt-every", 60, "--image-every", 1000, "--seed", 0)
    rc, _, err = _run(args, capsys)
    assert rc == 0, err
    lines = (runs / "00000-inv" / "log.txt").read_text().splitlines()
    bn = [e["loss/bn"] for e in map(json.loads, filter(lambda line: line.startswith("{"), lines)) if "loss/bn" in e]
    assert len(bn) == 60 and all(np.isfinite(bn))
    first, last = np.mean(bn[:5]), np.mean(bn[-5:])
    assert last < 0.5 * first, f"BatchNorm loss {first:.3f} -> {last:.3f}"
    assert sum(b < a for a, b in zip(bn[:-10:10], bn[10::10])) == 5  # falls over every 10-step stretch


def test_resumed_run_equals_an_uninterrupted_one(code, tmp_path, capsys):
    straight, resumed = tmp_path / "a", tmp_path / "b"
    assert _run(_train(code, straight, "--steps", 4, "--ckpt-every", 2), capsys)[0] == 0
    assert _run(_train(code, resumed, "--steps", 2, "--ckpt-every", 2), capsys)[0] == 0  # "killed" after step 2
    rc, _, err = _run(_train(code, resumed, "--steps", 4, "--ckpt-every", 2, "--resume", "latest"), capsys)
    assert rc == 0, err
    a = torch.load(straight / "00000-inv" / "checkpoint-0000004.pt", weights_only=False)
    b = torch.load(resumed / "00000-inv" / "checkpoint-0000004.pt", weights_only=False)
    for key in ("G", "G_ema"):
        for name, value in a[key].items():
            torch.testing.assert_close(b[key][name], value, rtol=0, atol=1e-6, msg=f"{key}.{name}")
    assert b["elapsed_s"] > 0


@pytest.mark.parametrize(
    ("spec", "extra", "expected"),
    [
        ("{code}/tiny_classifier.py:no_batchnorm", [], "has no BatchNorm layer"),
        ("{code}/tiny_classifier.py:five_classes", [], "outputs 5 classes, but --num-classes/--class-names give 3"),
        ("{code}/tiny_classifier.py:not_a_module", [], "returned a int, expected a torch.nn.Module"),
        ("{code}/tiny_classifier.py:missing", [], "has no callable 'missing'"),
        ("{tmp}/model.xml", [], "cannot be differentiated"),
        ("{tmp}/absent.pt", [], "file does not exist"),
        ("{tmp}/weights.pt", [], "not a torch.nn.Module"),
    ],
)
def test_bad_classifier_is_one_line(code, tmp_path, capsys, spec, extra, expected):
    (tmp_path / "model.xml").write_text("<net/>")
    torch.save({"w": torch.zeros(1)}, tmp_path / "weights.pt")
    args = _train(code, tmp_path / "runs", "--steps", 1, *extra)
    args[args.index("--classifier") + 1] = spec.format(code=code, tmp=tmp_path)
    rc, _, err = _run(args, capsys)
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_module_object_and_pickled_module(code, tmp_path, monkeypatch):
    import importlib

    from openvino_synthcalib.train_generator.classifiers import load_classifier

    monkeypatch.syspath_prepend(str(code))
    net = importlib.import_module("tiny_classifier").classifier()
    assert len(batchnorm_layers(net)) == 2
    teacher = load_classifier(net, num_classes=None, input_size=16, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert teacher.num_classes == 3 and teacher.metadata()["batchnorm_layers"] == 2
    torch.save(net, tmp_path / "net.pt")
    teacher = load_classifier(str(tmp_path / "net.pt"), num_classes=3, input_size=16, mean=(0.5,), std=(0.25,))
    assert teacher.record["spec"] == "net.pt" and len(teacher.record["sha256"]) == 64
    with pytest.raises(SynthcalibError, match="outputs 3 classes"):
        load_classifier(net, num_classes=4, input_size=16, mean=(0.5,) * 3, std=(0.25,) * 3)
