"""The training subpackage end to end on a tiny teacher built here (PyTorch needed)."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ov = pytest.importorskip("openvino")

from openvino_synthcalib.contract import read_info  # noqa: E402
from openvino_synthcalib.errors import SynthcalibError  # noqa: E402
from openvino_synthcalib.train_generator import options as opt_mod  # noqa: E402
from openvino_synthcalib.train_generator.__main__ import main  # noqa: E402
from openvino_synthcalib.train_generator.teacher_set import size as teacher_set_size  # noqa: E402
from openvino_synthcalib.train_generator.teachers import load_teacher  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
Z_DIM, NUM_CLASSES, SIZE = 8, 3, 8
NAMES = ("red", "green", "blue")
TINY_TRAIN = [
    "--g-channels",
    "16,8",
    "--d-channels",
    "8,16",
    "--batch",
    "8",
    "--no-progress",
    "--log-every",
    "2",
    "--image-every",
    "4",
    "--threads",
    "1",
]


class TinyTeacher(torch.nn.Module):
    """(z, label) -> [N, 3, 8, 8] in [-1, 1]: a class colour plus a z-dependent pattern."""

    def __init__(self, extra_output: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(Z_DIM, 3 * SIZE * SIZE)
        self.colour = torch.nn.Embedding(NUM_CLASSES, 3)
        with torch.no_grad():
            self.colour.weight.copy_(torch.eye(3) * 2 - 1)
        self.extra_output = extra_output

    def forward(self, z, label):
        img = torch.tanh(0.3 * self.fc(z).view(-1, 3, SIZE, SIZE) + self.colour(label)[:, :, None, None])
        return (img, img.mean(dim=(1, 2, 3))) if self.extra_output else img


def _export_onnx(module, path: Path) -> Path:
    z = torch.randn(2, Z_DIM)
    y = torch.tensor([0, 1])
    outputs = ["image", "extra"] if getattr(module, "extra_output", False) else ["image"]
    torch.onnx.export(
        module,
        (z, y),
        str(path),
        input_names=["z", "label"],
        output_names=outputs,
        dynamic_axes={"z": {0: "N"}, "label": {0: "N"}, **{o: {0: "N"} for o in outputs}},
        opset_version=17,
        dynamo=False,
    )
    return path


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A tiny ONNX teacher, its teacher set and one short training run (shared by the tests below)."""
    root = tmp_path_factory.mktemp("train")
    teacher = _export_onnx(TinyTeacher().eval(), root / "teacher.onnx")
    data = root / "teacher_set"
    assert (
        main(
            [
                "sample-teacher",
                "--teacher",
                str(teacher),
                "--out",
                str(data),
                "--per-class",
                "16",
                "--shard-size",
                "20",
                "--batch",
                "8",
                "--class-names",
                ",".join(NAMES),
                "--no-progress",
            ]
        )
        == 0
    )
    runs = root / "runs"
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--runs-dir",
                str(runs),
                "--name",
                "tiny",
                "--steps",
                "12",
                "--ckpt-every",
                "6",
                *TINY_TRAIN,
            ]
        )
        == 0
    )
    return {"root": root, "teacher": teacher, "data": data, "runs": runs, "run": runs / "00000-tiny"}


# ----------------------------------------------------------------------------- options


def test_options_table_and_validation():
    d = opt_mod.defaults("train")
    assert d["batch"] == 64 and d["max_params"] == 1_000_000
    with pytest.raises(SynthcalibError, match="--lr-g"):
        opt_mod.resolve_options("train", data="x", lr_g=-1)
    with pytest.raises(SynthcalibError, match="give --data .* or --classifier"):
        opt_mod.resolve_options("train")
    with pytest.raises(SynthcalibError, match="exclude each other"):
        opt_mod.resolve_options("train", data="x", classifier="m:f")
    with pytest.raises(SynthcalibError, match="--real-data"):
        opt_mod.resolve_options("train", data="x", real_data="DIR")


def test_default_student_is_small_and_fast_shaped():
    from openvino_synthcalib.train_generator.student import build_generator, count_params

    g = build_generator(128, 10, opt_mod.defaults("train")["g_channels"], 1, max_params=1_000_000)
    assert count_params(g) <= 1_000_000
    assert g(torch.randn(2, 128), torch.tensor([0, 9])).shape == (2, 3, 32, 32)
    with pytest.raises(SynthcalibError, match="--max-params"):
        build_generator(128, 10, (512, 512, 512, 512), 1, max_params=1_000_000)


def test_dry_run_prints_resolved_options(tmp_path, capsys):
    code, out, _ = run_cli(["train", "--data", tmp_path, "--dry-run", "--steps", "7"], capsys)
    assert code == 0
    resolved = json.loads(out)
    assert resolved["steps"] == 7 and resolved["lr_g"] == 2e-4 and resolved["g_channels"] == [128, 128, 96, 64]
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------- teacher set


def test_teacher_set_is_resumable(work, capsys):
    data = work["data"]
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["complete"] and teacher_set_size(manifest) == 48
    assert manifest["teacher"]["class_names"] == list(NAMES) and manifest["teacher"]["sha256"]
    with np.load(data / "shard_00001.npz") as f:
        before = {k: f[k].copy() for k in f.files}
    assert before["image"].dtype == np.uint8 and before["image"].shape == (20, 3, SIZE, SIZE)
    assert sorted(np.bincount(before["label"])) == [6, 7, 7]
    (data / "shard_00001.npz").unlink()
    mtime0 = (data / "shard_00000.npz").stat().st_mtime_ns
    code, _, _ = run_cli(
        [
            "sample-teacher",
            "--teacher",
            work["teacher"],
            "--out",
            data,
            "--per-class",
            16,
            "--shard-size",
            20,
            "--batch",
            8,
            "--class-names",
            ",".join(NAMES),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0
    assert (data / "shard_00000.npz").stat().st_mtime_ns == mtime0  # finished shards are skipped
    with np.load(data / "shard_00001.npz") as f:
        for k, v in before.items():
            np.testing.assert_array_equal(f[k], v)
    code, _, err = run_cli(
        ["sample-teacher", "--teacher", work["teacher"], "--out", data, "--per-class", 17, "--num-classes", 3], capsys
    )
    assert code == 2 and err.startswith("synthcalib: error: --out") and err.count("\n") == 1


# ----------------------------------------------------------------------------- train, resume, export


def test_run_folder_contents(work):
    run = work["run"]
    opts = json.loads((run / "options.json").read_text())
    assert opts["steps"] == 12 and opts["name"] == "tiny"
    assert sorted(p.name for p in run.glob("checkpoint-*.pt")) == ["checkpoint-0000006.pt", "checkpoint-0000012.pt"]
    assert list(run.glob("events.out.tfevents.*"))
    log = [json.loads(line) for line in (run / "log.txt").read_text().splitlines() if line.startswith("{")]
    assert log[-1]["step"] == 12 and "loss/pixel" in log[-1]


def test_resume_continues_and_checks_options(work, capsys):
    import shutil

    run = work["root"] / "runs_resume" / "00000-tiny"
    shutil.copytree(work["run"], run)
    (run / "checkpoint-0000012.pt").unlink()  # "killed" after step 6
    code, _, _ = run_cli(
        [
            "train",
            "--data",
            work["data"],
            "--runs-dir",
            run.parent,
            "--name",
            "tiny",
            "--steps",
            "14",
            "--ckpt-every",
            "6",
            "--resume",
            "latest",
            *TINY_TRAIN,
        ],
        capsys,
    )
    assert code == 0
    assert (run / "checkpoint-0000014.pt").is_file() and (run / "checkpoint-0000012.pt").is_file()
    assert not (run.parent / "00001-tiny").exists()
    ck = torch.load(run / "checkpoint-0000014.pt", weights_only=False)
    assert ck["step"] == 14
    code, _, err = run_cli(
        [
            "train",
            "--data",
            work["data"],
            "--runs-dir",
            run.parent,
            "--name",
            "tiny",
            "--steps",
            "16",
            "--resume",
            str(run),
            "--lr-g",
            "0.1",
            *TINY_TRAIN,
        ],
        capsys,
    )
    assert code == 2 and "--lr-g" in err and err.startswith("synthcalib: error: --resume") and err.count("\n") == 1


def test_init_from_starts_a_new_run_from_another_runs_weights(work, capsys, tmp_path):
    """A later phase with other options: a new run folder, the weights, step and time of the checkpoint
    carried on; networks of another shape are refused in one line naming the flag."""
    base = ["train", "--data", work["data"], "--runs-dir", tmp_path, "--name", "phase2", *TINY_TRAIN]
    code, _, _ = run_cli([*base, "--steps", "14", "--lr-g", "0.0005", "--init-from", work["run"]], capsys)
    assert code == 0
    run = tmp_path / "00000-phase2"
    opts = json.loads((run / "options.json").read_text())
    assert opts["lr_g"] == 0.0005 and opts["init_from"] == str(work["run"])
    assert sorted(p.name for p in run.glob("checkpoint-*.pt")) == ["checkpoint-0000014.pt"]
    first = torch.load(work["run"] / "checkpoint-0000012.pt", weights_only=False)
    ck = torch.load(run / "checkpoint-0000014.pt", weights_only=False)
    assert ck["step"] == 14 and ck["elapsed_s"] > first["elapsed_s"]
    parent = {"run": work["run"].name, "checkpoint": "checkpoint-0000012.pt", "step": 12}
    assert ck["started_from"].items() >= parent.items() and ck["started_from"]["options"]["lr_g"] != 0.0005
    # resuming it later needs no --init-from (its own checkpoint wins) and keeps where it started
    code, _, _ = run_cli([*base, "--steps", "15", "--lr-g", "0.0005", "--resume", str(run)], capsys)
    assert code == 0 and (run / "checkpoint-0000015.pt").is_file()
    resumed = torch.load(run / "checkpoint-0000015.pt", weights_only=False)
    assert resumed["started_from"] == ck["started_from"]
    # the exported generator's provenance names the phase before it (file names only)
    xml = tmp_path / "phase2.xml"
    assert run_cli(["export", "--run", run, "--out", xml, "--bn-batches", "1"], capsys)[0] == 0
    provenance = read_info(ov.Core().read_model(str(xml)))["provenance"]
    assert provenance["started_from"].items() >= parent.items()
    assert f"started from the weights of {work['run'].name}/checkpoint-0000012.pt (step 12)" in provenance["method"]
    bigger = [*base[: -len(TINY_TRAIN)], *TINY_TRAIN, "--g-channels", "24,8"]
    code, _, err = run_cli([*bigger, "--steps", "13", "--init-from", work["run"]], capsys)
    assert code == 2 and err.startswith("synthcalib: error: --init-from") and err.count("\n") == 1


def test_export_ir_metadata_engine_and_quantize(work, capsys, tmp_path):
    xml = tmp_path / "student.xml"
    code, out, _ = run_cli(["export", "--run", work["run"], "--out", xml, "--bn-batches", "2"], capsys)
    assert code == 0 and xml.is_file() and xml.with_suffix(".bin").is_file()
    model = ov.Core().read_model(str(xml))
    assert [p.get_any_name() for p in model.inputs] == ["z", "label"]
    assert model.outputs[0].get_any_name() == "image"
    assert model.inputs[0].get_element_type() == ov.Type.f32 and model.inputs[1].get_element_type() == ov.Type.i64
    assert model.inputs[0].get_partial_shape()[0].is_dynamic
    assert any(
        op.get_type_name() == "Constant" and op.get_output_element_type(0) == ov.Type.f16 for op in model.get_ops()
    )
    info = read_info(model)
    assert info["z_dim"] == Z_DIM and info["num_classes"] == NUM_CLASSES and info["class_names"] == list(NAMES)
    assert info["image_size"] == [SIZE, SIZE] and info["output_range"] == [-1.0, 1.0]
    prov = info["provenance"]
    assert prov["steps"] == 12 and prov["teacher"] == work["teacher"].name and len(prov["teacher_sha256"]) == 64
    assert prov["options_hash"] and prov["params"] > 0 and prov["date"]
    compiled = ov.Core().compile_model(model, "CPU")
    img = compiled({"z": np.zeros((5, Z_DIM), np.float32), "label": np.arange(5) % 3})[0]
    assert img.shape == (5, 3, SIZE, SIZE) and -1 <= img.min() and img.max() <= 1

    from openvino_synthcalib.engine import GeneratorEngine

    engine = GeneratorEngine(str(xml), batch_size=4)
    assert engine.info.z_dim == Z_DIM and engine.info.class_names == NAMES
    assert engine.images(np.arange(6), np.arange(6) % 3, seed=0).shape == (6, 3, SIZE, SIZE)

    from tiny_models import make_classifier

    from openvino_synthcalib.quantization import quantize

    cls = make_classifier(tmp_path / "cls.xml", num_classes=NUM_CLASSES, size=SIZE)
    quantize(str(cls), f"generator:{xml}", tmp_path / "cls_int8.xml", num_samples=12, batch_size=4, transform="unit")
    assert (tmp_path / "cls_int8.xml").is_file()


def test_evaluate_with_stand_in_inception(work, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SYNTHCALIB_CACHE", str(tmp_path / "cache"))
    from tiny_models import make_classifier, make_image_folder

    xml = tmp_path / "student.xml"
    assert main(["export", "--run", str(work["run"]), "--out", str(xml), "--bn-batches", "0"]) == 0
    inception = torch.jit.script(
        torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, stride=16), torch.nn.AdaptiveAvgPool2d(1))
    )
    inception.save(str(tmp_path / "inception.pt"))
    ref = make_image_folder(tmp_path / "ref", per_class=4, size=SIZE, classes=NAMES)
    cls = make_classifier(tmp_path / "cls.xml", num_classes=NUM_CLASSES, size=SIZE)
    out = tmp_path / "eval"
    code, stdout, _ = run_cli(
        [
            "evaluate",
            "--teacher",
            work["teacher"],
            "--student",
            xml,
            "--reference",
            ref,
            "--num",
            12,
            "--classifier",
            cls,
            "--inception",
            tmp_path / "inception.pt",
            "--out",
            out,
            "--speed-batches",
            1,
            "--batch",
            8,
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, stdout
    res = json.loads((out / "results.json").read_text())
    for name in ("teacher", "student"):
        m = res["models"][name]
        assert np.isfinite(m["fid"]) and np.isfinite(m["kid"]) and 0 <= m["class_consistency"] <= 1
        assert m["images_per_s"] > 0 and m["params"] > 0 and m["size_bytes"] > 0
    assert "| student |" in (out / "results.md").read_text() and "| teacher |" in stdout
    assert list((tmp_path / "cache" / "fid").glob("ref-*.npy"))  # reference features are cached


def test_fid_kid_math():
    from openvino_synthcalib.train_generator.evaluation import fid_from_feats, kid_from_feats

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    assert fid_from_feats(a, a) == pytest.approx(0, abs=1e-6)
    assert fid_from_feats(a, b + 1.0) == pytest.approx(8.0, rel=0.15)
    scipy_linalg = pytest.importorskip("scipy.linalg")
    c = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    s1, s2 = np.cov(a[:, :6], rowvar=False), np.cov(c, rowvar=False)
    ref = (
        ((a[:, :6].mean(0) - c.mean(0)) ** 2).sum()
        + np.trace(s1)
        + np.trace(s2)
        - 2 * np.trace(scipy_linalg.sqrtm(s1 @ s2).real)
    )
    assert fid_from_feats(a[:, :6], c) == pytest.approx(ref, rel=1e-6)
    assert abs(kid_from_feats(a, b, subsets=5, subset_size=100)[0]) < 0.05
    assert kid_from_feats(a, b + 1, subsets=5, subset_size=100)[0] > 0.1


# ----------------------------------------------------------------------------- adapters


def _check(teacher, z_dim=Z_DIM, num_classes=NUM_CLASSES):
    assert teacher.z_dim == z_dim and teacher.num_classes == num_classes
    img = teacher.generate(np.zeros((3, z_dim), np.float32), np.arange(3) % num_classes)
    assert img.dtype == np.float32 and img.shape[:2] == (3, 3) and img.min() >= -1 and img.max() <= 1
    return img


def test_adapter_onnx_and_ir(work, tmp_path):
    onnx_t = load_teacher(str(work["teacher"]), num_classes=NUM_CLASSES)
    ref = _check(onnx_t)
    assert onnx_t.kind == "onnx" and onnx_t.image_size == (SIZE, SIZE)
    ov.save_model(ov.convert_model(str(work["teacher"])), str(tmp_path / "t.xml"), compress_to_fp16=False)
    ir_t = load_teacher(str(tmp_path / "t.xml"), num_classes=NUM_CLASSES)
    np.testing.assert_allclose(_check(ir_t), ref, atol=1e-5)
    assert ir_t.kind == "openvino"


def test_adapter_torchscript(tmp_path):
    path = tmp_path / "t.pt"
    torch.jit.trace(TinyTeacher().eval(), (torch.randn(2, Z_DIM), torch.tensor([0, 1]))).save(str(path))
    with pytest.raises(SynthcalibError, match="--z-dim"):
        load_teacher(str(path))
    _check(load_teacher(str(path), z_dim=Z_DIM, num_classes=NUM_CLASSES))


def test_adapter_callable(tmp_path, monkeypatch):
    (tmp_path / "my_teacher_mod.py").write_text(
        textwrap.dedent("""
        import numpy as np
        Z_DIM, NUM_CLASSES = 8, 3
        def generate(z, labels):
            img = np.tanh(z[:, :3, None, None] + labels[:, None, None, None] * 0.1)
            return np.broadcast_to(img, (len(z), 3, 8, 8)).astype(np.float32)
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    t = load_teacher("my_teacher_mod:generate")
    _check(t)
    assert t.kind == "callable"
    _check(load_teacher(f"{tmp_path / 'my_teacher_mod.py'}:generate"))
    with pytest.raises(SynthcalibError, match="no callable"):
        load_teacher("my_teacher_mod:nothing")


STYLEGAN_CODE = '''
import torch

class Generator(torch.nn.Module):
    """Stand-in for training/networks.py Generator: z_dim 512, one-hot c, truncation psi."""

    def __init__(self, z_dim=512, c_dim=3, img_resolution=8, img_channels=3):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, 16
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.mapping = torch.nn.Linear(z_dim + c_dim, self.w_dim)
        self.synthesis = torch.nn.Linear(self.w_dim, img_channels * img_resolution ** 2)
        self.register_buffer("w_avg", torch.zeros(self.w_dim))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, noise_mode="random", **kw):
        assert c.shape == (z.shape[0], self.c_dim) and noise_mode == "const"
        w = self.mapping(torch.cat([z, c], dim=1))
        w = self.w_avg + (w - self.w_avg) * truncation_psi
        r = self.img_resolution
        return torch.tanh(self.synthesis(w)).view(-1, self.img_channels, r, r)
'''


def test_adapter_stylegan2_ada_pickle(tmp_path, monkeypatch):
    code = tmp_path / "code"
    (code / "torch_utils").mkdir(parents=True)
    (code / "dnnlib").mkdir()
    (code / "torch_utils" / "__init__.py").write_text("")
    (code / "dnnlib" / "__init__.py").write_text("")
    (code / "training").mkdir()
    (code / "training" / "__init__.py").write_text("import torch_utils, dnnlib  # noqa\n")
    (code / "training" / "networks.py").write_text(STYLEGAN_CODE)
    monkeypatch.syspath_prepend(str(code))
    from training.networks import Generator  # type: ignore[import-not-found]

    pkl = tmp_path / "network-snapshot.pkl"
    with open(pkl, "wb") as f:
        pickle.dump({"G_ema": Generator(), "D": None, "augment_pipe": None}, f)
    t = load_teacher(str(pkl), truncation_psi=0.5)
    img = _check(t, z_dim=512, num_classes=3)
    assert t.kind == "stylegan2-ada" and t.metadata()["truncation_psi"] == 0.5 and img.shape[2:] == (8, 8)
    # without the code on the path: a one-line error naming the missing code
    for name in [m for m in sys.modules if m.split(".")[0] in ("training", "torch_utils", "dnnlib")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(code)])
    with pytest.raises(SynthcalibError, match="StyleGAN2-ADA code is not importable"):
        load_teacher(str(pkl))
    _check(load_teacher(str(pkl), teacher_code=str(code)), z_dim=512, num_classes=3)


# ----------------------------------------------------------------------------- bad inputs


def _one_line_error(code, err, *words):
    assert code == 2, err
    assert err.startswith("synthcalib: error: ") and err.count("\n") == 1 and "Traceback" not in err
    for w in words:
        assert w in err


def test_bad_teacher_file_missing(tmp_path, capsys):
    code, _, err = run_cli(["sample-teacher", "--teacher", tmp_path / "nope.onnx", "--out", tmp_path / "o"], capsys)
    _one_line_error(code, err, "--teacher", "nope.onnx", "does not exist")


def test_bad_teacher_wrong_outputs(tmp_path, capsys):
    two = _export_onnx(TinyTeacher(extra_output=True).eval(), tmp_path / "two_outputs.onnx")
    code, _, err = run_cli(["sample-teacher", "--teacher", two, "--out", tmp_path / "o"], capsys)
    _one_line_error(code, err, "two_outputs.onnx", "expected one image output")

    class Flat(torch.nn.Module):
        def forward(self, z, label):
            return z * 2 + label[:, None].float()

    flat = _export_onnx(Flat(), tmp_path / "flat.onnx")
    code, _, err = run_cli(["sample-teacher", "--teacher", flat, "--out", tmp_path / "o"], capsys)
    _one_line_error(code, err, "flat.onnx", "[N, 3, H, W]")


def test_bad_real_data_classes(work, tmp_path, capsys):
    from tiny_models import make_image_folder

    other = make_image_folder(tmp_path / "real", per_class=2, size=SIZE, classes=("cat", "dog", "fish"))
    code, _, err = run_cli(
        [
            "train",
            "--data",
            work["data"],
            "--runs-dir",
            tmp_path / "runs",
            "--steps",
            "2",
            "--real-data",
            f"images:{other}",
            *TINY_TRAIN,
        ],
        capsys,
    )
    _one_line_error(code, err, "--real-data", "cat", "red")


def test_real_data_gan_loss_runs(work, tmp_path, capsys):
    from tiny_models import make_image_folder

    real = make_image_folder(tmp_path / "real", per_class=3, size=SIZE, classes=NAMES)
    code, _, err = run_cli(
        [
            "train",
            "--data",
            work["data"],
            "--runs-dir",
            tmp_path / "runs",
            "--steps",
            "3",
            "--adv-ramp",
            "0",
            "--real-data",
            f"images:{real}",
            *TINY_TRAIN,
        ],
        capsys,
    )
    assert code == 0, err


def test_bad_unwritable_output(work, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, _, err = run_cli(["sample-teacher", "--teacher", work["teacher"], "--out", blocker / "set"], capsys)
    _one_line_error(code, err, "--out", "cannot be created")
    code, _, err = run_cli(["export", "--run", work["run"], "--out", blocker / "g.xml"], capsys)
    _one_line_error(code, err, "--out", "is not a folder")
    code, _, err = run_cli(["train", "--data", work["data"], "--runs-dir", blocker / "runs", *TINY_TRAIN], capsys)
    _one_line_error(code, err, "--runs-dir", "cannot be created")


def test_cli_subprocess_error_has_no_traceback(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "openvino_synthcalib.train_generator",
            "export",
            "--run",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "g.xml"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert res.returncode == 2 and res.stderr.startswith("synthcalib: error: --run") and "Traceback" not in res.stderr


# ----------------------------------------------------------------------------- nothing lost


def _train_args(work, runs, *extra):
    return ["train", "--data", work["data"], "--runs-dir", runs, "--name", "tiny", *TINY_TRAIN, *extra]


def _copy_run(work, name):
    import shutil

    run = work["root"] / name / "00000-tiny"
    shutil.copytree(work["run"], run)
    return run


def _scalar_steps(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run))
    acc.Reload()
    return [e.step for e in acc.Scalars("loss/pixel")]


def test_resumed_run_equals_an_uninterrupted_one(work, capsys):
    """Killed after step 6 (its checkpoint 12 never written), resumed to 12: same weights, no duplicated logs."""
    run = _copy_run(work, "runs_parity")
    (run / "checkpoint-0000012.pt").unlink()
    code, _, err = run_cli(
        _train_args(work, run.parent, "--steps", 12, "--ckpt-every", 6, "--resume", "latest"), capsys
    )
    assert code == 0, err
    resumed = torch.load(run / "checkpoint-0000012.pt", weights_only=False)
    straight = torch.load(work["run"] / "checkpoint-0000012.pt", weights_only=False)
    for key in ("G", "G_ema", "D"):
        for name, value in straight[key].items():
            torch.testing.assert_close(resumed[key][name], value, rtol=0, atol=1e-6, msg=f"{key}.{name}")
    steps = [json.loads(line)["step"] for line in (run / "log.txt").read_text().splitlines() if line.startswith("{")]
    assert steps == sorted(set(steps)) and steps[-1] == 12
    assert _scalar_steps(run) == sorted(set(_scalar_steps(run)))


def test_resume_falls_back_from_a_corrupt_checkpoint(work, capsys):
    run = _copy_run(work, "runs_corrupt")
    last = run / "checkpoint-0000012.pt"
    last.write_bytes(last.read_bytes()[:1000])  # a copy cut short
    code, _, err = run_cli(
        _train_args(work, run.parent, "--steps", 14, "--ckpt-every", 6, "--resume", str(run)), capsys
    )
    assert code == 0, err
    assert "checkpoint-0000012.pt is unreadable" in err and "Traceback" not in err
    assert torch.load(run / "checkpoint-0000014.pt", weights_only=False)["step"] == 14


def test_sigint_in_train_saves_a_checkpoint_and_resumes(work, tmp_path, capsys):
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "openvino_synthcalib.train_generator",
           *map(str, _train_args(work, runs, "--steps", 100000, "--ckpt-every", 100000, "--log-every", 1))]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    log = runs / "00000-tiny" / "log.txt"
    deadline = time.time() + 120
    while not (log.is_file() and log.read_text().count('"step"') >= 3) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train: interrupted after step") and "--resume" in lines[0]
    (ckpt,) = (runs / "00000-tiny").glob("checkpoint-*.pt")
    step = torch.load(ckpt, weights_only=False)["step"]
    assert f"step {step};" in lines[0]
    code, _, err = run_cli(_train_args(work, runs, "--steps", step + 2, "--resume", "latest"), capsys)
    assert code == 0, err
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines() if line.startswith("{")]
    assert steps == sorted(set(steps)) and steps[-1] == step + 2


def test_sigint_in_sample_teacher_is_one_line(work, tmp_path):
    out = tmp_path / "set"
    cmd = [sys.executable, "-m", "openvino_synthcalib.train_generator", "sample-teacher", "--teacher",
           str(work["teacher"]), "--out", str(out), "--per-class", "200000", "--shard-size", "64", "--no-progress",
           "--class-names", ",".join(NAMES)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.time() + 120
    while not list(out.glob("shard_*.npz")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.strip().splitlines() == [
        "sample-teacher: interrupted; finished work is kept (rerun the same command to resume)"
    ], err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["shards"] and not manifest["complete"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_truncated_shard_is_refused_then_resampled(work, tmp_path, capsys):
    import shutil

    data = tmp_path / "set"
    shutil.copytree(work["data"], data)
    shard = data / "shard_00001.npz"
    original = shard.read_bytes()
    shard.write_bytes(original[: len(original) // 2])
    code, _, err = run_cli(_train_args(work, tmp_path / "runs")[:1] + ["--data", data, "--runs-dir",
                           tmp_path / "runs", *TINY_TRAIN], capsys)  # fmt: skip
    _one_line_error(code, err, "shard_00001.npz", "corrupt", "sample-teacher")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    args = ["sample-teacher", "--teacher", work["teacher"], "--out", data, "--per-class", 16, "--shard-size", 20,
            "--batch", 8, "--class-names", ",".join(NAMES), "--no-progress"]  # fmt: skip
    assert run_cli(args, capsys)[0] == 0
    assert shard.read_bytes() == original  # resampled: the same (z, label) -> the same images


def test_failed_run_leaves_no_run_folder(work, tmp_path, capsys):
    code, _, err = run_cli(_train_args(work, tmp_path / "runs", "--max-params", 10), capsys)
    _one_line_error(code, err, "max")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    code, _, err = run_cli(_train_args(work, tmp_path / "runs", "--device", "cuda"), capsys)
    if not torch.cuda.is_available():
        _one_line_error(code, err, "--device cuda", "CUDA is not available")
    code, _, err = run_cli(_train_args(work, tmp_path / "runs", "--device", "tpu"), capsys)
    _one_line_error(code, err, "--device", "expected auto, cpu, cuda")


def test_export_matches_pytorch_and_can_run_twice(work, tmp_path):
    from openvino_synthcalib import train_generator
    from openvino_synthcalib.train_generator.checkpoints import load_checkpoint
    from openvino_synthcalib.train_generator.exporter import generator_from_checkpoint, recalibrate_batchnorm

    first = train_generator.export(run=str(work["run"]), out=str(tmp_path / "a.xml"), bn_batches=2)
    second = train_generator.export(run=str(work["run"]), out=str(tmp_path / "b.xml"), bn_batches=2)
    assert first.with_suffix(".bin").read_bytes() == second.with_suffix(".bin").read_bytes()
    data, _ = load_checkpoint(work["run"], "--run")
    g = generator_from_checkpoint(data)
    recalibrate_batchnorm(g, 2)
    z = torch.randn(16, Z_DIM, generator=torch.Generator().manual_seed(3))
    y = torch.arange(16) % NUM_CLASSES
    with torch.no_grad():
        expected = g(z, y).numpy()
    compiled = ov.Core().compile_model(str(first), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled({"z": z.numpy(), "label": y.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=2e-2)  # FP16 weights
    assert np.abs(got - expected).mean() < 2e-3


# ----------------------------------------------------------------------------- DDP (gloo, 2 processes)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_gloo_two_processes(work, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "openvino_synthcalib.train_generator",
        "train",
        "--data",
        str(work["data"]),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--name",
        "ddp",
        "--steps",
        "4",
        "--ckpt-every",
        "2",
        "--device",
        "cpu",
        *TINY_TRAIN,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = list((tmp_path / "runs").iterdir())
    assert [r.name for r in runs] == ["00000-ddp"]  # one run folder, written by rank 0
    assert "world 2" in (runs[0] / "log.txt").read_text()
    ck = torch.load(runs[0] / "checkpoint-0000004.pt", weights_only=False)
    assert ck["step"] == 4


# ----------------------------------------------------------------------------- the shared teacher


@pytest.mark.shared
def test_shared_cifar10_teacher_adapter():
    shared = Path(os.environ.get("SYNTHCALIB_SHARED", REPO.parent / "shared"))
    path = shared / "teachers" / "cifar10_cgan_teacher.onnx"
    if not path.is_file():
        pytest.skip(f"shared teacher not found at {path}")
    names = "airplane automobile bird cat deer dog frog horse ship truck".split()
    t = load_teacher(str(path), class_names=names)
    assert (t.z_dim, t.num_classes, t.image_size) == (128, 10, (32, 32))
    assert t.sha256 == "a53161a578e2e5bdcb927e83cb688892ea4dab3e75da7a2725699d06768585e6"
    _check(t, z_dim=128, num_classes=10)


# ----------------------------------------------------------------------------- inversion options (DGH & co.)

INV_CLASSIFIER = textwrap.dedent(
    """
    import torch
    from torch import nn


    def classifier():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
        net.train()
        with torch.no_grad():
            for _ in range(5):
                net(torch.randn(16, 3, 16, 16) * 0.5 + 0.2)
        return net.eval()
    """
)


def test_set_level_statistics_equal_per_batch_at_one_and_keep_the_gradient_scale():
    from openvino_synthcalib.train_generator.classifiers import BatchNormStatistics

    bn = torch.nn.BatchNorm2d(4).eval()
    x1 = (torch.randn(8, 4, 6, 6) * 2 + 1).requires_grad_(True)
    x2 = (torch.randn(8, 4, 6, 6) - 1).requires_grad_(True)
    per_batch = BatchNormStatistics([bn])
    bn(x1)
    ref = per_batch.loss()
    (g_ref,) = torch.autograd.grad(ref, x1)
    per_batch.remove()
    at_one = BatchNormStatistics([bn], set_momentum=1.0)
    bn(x2)
    at_one.loss()  # a first batch; at a = 1 it is forgotten
    bn(x1)
    one = at_one.loss()
    (g_one,) = torch.autograd.grad(one, x1)
    at_one.remove()
    torch.testing.assert_close(one, ref)
    torch.testing.assert_close(g_one, g_ref)

    a = 0.25
    stats = BatchNormStatistics([bn], set_momentum=a)
    bn(x1)
    torch.testing.assert_close(stats.loss(), ref)  # the first batch starts the averages
    bn(x2)
    loss = stats.loss()
    m1, m2 = x1.mean((0, 2, 3)), x2.mean((0, 2, 3))
    s1, s2 = (x1 * x1).mean((0, 2, 3)), (x2 * x2).mean((0, 2, 3))
    m, s = (1 - a) * m1 + a * m2, (1 - a) * s1 + a * s2
    expected = torch.linalg.vector_norm(m - bn.running_mean) + torch.linalg.vector_norm(s - m * m - bn.running_var)
    torch.testing.assert_close(loss, expected)  # the loss of the blended (set-level) moments
    (g,) = torch.autograd.grad(loss, x2)
    (g_blend,) = torch.autograd.grad(expected, x2, retain_graph=True)
    torch.testing.assert_close(g, g_blend / a)  # compensated: the blend's gradient divided by a
    stats.reset()
    bn(x2)
    (g_fresh,) = torch.autograd.grad(stats.loss(), x2)
    stats.remove()
    assert not torch.allclose(g_fresh, g)  # the set's residual, not the batch's, sets the direction


def test_output_stretching_loss():
    from openvino_synthcalib.train_generator.losses import output_stretching

    weight = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    feats = torch.tensor([[3.0, 4.0]])  # ||f|| = 5
    logits = torch.tensor([[2.5, 5.0, 0.0]])  # max 5 (class 1: 0.5*5*2 = 5), min 0 (class 2: 0)
    assert output_stretching(logits, feats, weight).item() == pytest.approx(1 / 5, rel=1e-4)
    logits = torch.tensor([[1.0, 2.0, 0.0]], requires_grad=True)  # |2 - 5| + 0 + 1/2
    loss = output_stretching(logits, feats[:, :, None, None], weight)  # a [N, C, 1, 1] input is pooled
    assert loss.item() == pytest.approx(3.5, rel=1e-4)
    loss.backward()
    assert logits.grad[0, 1] < 0  # raising the largest logit lowers the loss here


def test_random_resized_crop_shapes_range_and_identity():
    from openvino_synthcalib.train_generator.inversion import random_resized_crop

    x = torch.rand(6, 3, 16, 16, requires_grad=True)
    gen = torch.Generator().manual_seed(0)
    y = random_resized_crop(x, 24, gen, 0.08)
    assert y.shape == (6, 3, 24, 24) and y.min() >= 0 and y.max() <= 1
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    full = random_resized_crop(x, 16, torch.Generator().manual_seed(0), 1.0)  # area 1: the whole image, or a
    assert full.shape == (6, 3, 16, 16)  # narrow crop when the aspect is not 1 (clipped to the side)
    a = random_resized_crop(x, 24, torch.Generator().manual_seed(1), 0.25)
    b = random_resized_crop(x, 24, torch.Generator().manual_seed(1), 0.25)
    torch.testing.assert_close(a, b)  # reproducible from the generator


def test_feature_diversity_loss():
    from openvino_synthcalib.train_generator.losses import feature_diversity

    g = torch.Generator().manual_seed(0)
    base = torch.rand(4, 32, generator=g)
    same = torch.cat([base, base])  # pairs (i, i + 4) identical: as alike as can be
    assert feature_diversity(same).item() == pytest.approx(1.0, abs=1e-5)
    apart = torch.cat([base, base.flip(0)])  # items paired with others: no more alike than at random
    assert feature_diversity(apart).item() < 0.5
    x = torch.cat([base, base + 0.01 * torch.rand(4, 32, generator=g)]).requires_grad_(True)
    loss = feature_diversity(x[:, :, None, None])  # a [N, C, 1, 1] input is pooled
    loss.backward()
    assert 0.9 < loss.item() <= 1.0 and x.grad is not None and x.grad.abs().sum() > 0
    assert feature_diversity(torch.rand(1, 8)).item() == 0.0  # no pair


def test_relative_statistics_loss_is_in_each_channels_running_units():
    """``relative``: a layer whose activations (and running statistics) are k times larger gives the same
    term, where the absolute loss grows with k; its value is the standardised differences' norms."""
    from openvino_synthcalib.train_generator.classifiers import BatchNormStatistics

    torch.manual_seed(0)
    small, large = torch.nn.BatchNorm2d(3).eval(), torch.nn.BatchNorm2d(3).eval()
    k = 100.0
    small.running_mean.copy_(torch.tensor([0.1, -0.2, 0.0]))
    small.running_var.copy_(torch.tensor([0.01, 0.04, 0.02]))
    large.running_mean.copy_(small.running_mean * k)
    large.running_var.copy_(small.running_var * k * k)
    x = torch.randn(6, 3, 5, 5) * 0.1
    losses = {}
    for relative in (False, True):
        for name, bn, scale in (("small", small, 1.0), ("large", large, k)):
            stats = BatchNormStatistics([bn], relative=relative)
            bn(x * scale)
            losses[relative, name] = stats.loss().item()
            stats.remove()
    assert losses[False, "large"] > 50 * losses[False, "small"]
    assert losses[True, "large"] == pytest.approx(losses[True, "small"], rel=1e-4)
    mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
    scale = small.running_var + small.eps
    expected = torch.linalg.vector_norm((mean - small.running_mean) / scale.sqrt()) + torch.linalg.vector_norm(
        var / scale - 1
    )
    assert losses[True, "small"] == pytest.approx(expected.item(), rel=1e-4)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"bn_set_momentum": 1.5}, "--bn-set-momentum: must be <= 1.0"),
        ({"bn_set_momentum": -0.1}, "--bn-set-momentum: must be >= 0.0"),
        ({"w_out": -1}, "--w-out: must be >= 0.0"),
        ({"rrc_scale": 0.001}, "--rrc-scale: expected 0 (off) or an area fraction in [0.01, 1]"),
        ({"rrc_scale": 2}, "--rrc-scale: must be <= 1.0"),
        ({"classifier": None, "data": "x", "w_out": 0.1}, "--w-out: only used with --classifier"),
        ({"w_fdiv": -1}, "--w-fdiv: must be >= 0.0"),
        ({"classifier": None, "data": "x", "w_fdiv": 0.1}, "--w-fdiv: only used with --classifier"),
        ({"bn_units": "std"}, "--bn-units"),
        ({"classifier": None, "data": "x", "bn_units": "relative"}, "--bn-units: only used with --classifier"),
    ],
)
def test_inversion_option_validation_names_the_flag(extra, expected):
    values = {"classifier": "m:f", **extra}
    with pytest.raises(SynthcalibError, match=re.escape(expected)):
        opt_mod.resolve_options("train", values)
    ok = opt_mod.resolve_options("train", {"classifier": "m:f"})
    assert ok["bn_set_momentum"] == 0.0 and ok["w_out"] == 0.0 and ok["rrc_scale"] == 0.0  # today's behaviour
    assert ok["w_fdiv"] == 0.0 and ok["bn_units"] == "absolute"


def test_inversion_with_set_statistics_output_term_and_crops_trains(tmp_path, capsys):
    (tmp_path / "inv_clf.py").write_text(INV_CLASSIFIER)
    runs = tmp_path / "runs"
    args = ["train", "--classifier", f"{tmp_path / 'inv_clf.py'}:classifier", "--num-classes", "3",
            "--runs-dir", runs, "--name", "inv", "--g-channels", "16,8,8", "--g-class-dim", "4", "--batch", "8",
            "--no-progress", "--threads", "1", "--log-every", "1", "--image-every", "100", "--steps", "3",
            "--ckpt-every", "3", "--bn-set-momentum", "0.2", "--w-out", "0.1", "--rrc-scale", "0.25",
            "--jitter", "0", "--w-fdiv", "0.5", "--bn-units", "relative"]  # fmt: skip
    rc = main([str(a) for a in args])
    _, err = capsys.readouterr()
    assert rc == 0, err
    run = runs / "00000-inv"
    log = [json.loads(x) for x in (run / "log.txt").read_text().splitlines() if x.startswith("{")]
    assert len(log) == 3 and all(np.isfinite(e["loss/out"]) and e["loss/out"] > 0 for e in log)
    assert all(0.0 <= e["loss/feature_diversity"] <= 1.0 for e in log)
    opts = json.loads((run / "options.json").read_text())
    assert (opts["bn_set_momentum"], opts["w_out"], opts["rrc_scale"]) == (0.2, 0.1, 0.25)
    xml = tmp_path / "g.xml"
    assert main(["export", "--run", str(run), "--out", str(xml), "--bn-batches", "1"]) == 0
    method = read_info(ov.Core().read_model(str(xml)))["provenance"]["method"]
    assert "set-level statistics (momentum 0.2)" in method and "output stretching" in method
    assert "random resized crops (scale 0.25-1)" in method and "feature diversity within a class (weight 0.5)" in method
    assert "statistics in relative units" in method
