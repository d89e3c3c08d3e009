import json
import subprocess
import sys

import pytest
from conftest import CIFAR, TEACHER, ZOO

from openvino_synthcalib.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_quantize_evaluate_info(assets, tmp_path, capsys):
    out = tmp_path / "int8" / "cls.xml"
    code, text, err = run(
        capsys,
        "quantize",
        assets["classifier"],
        "--source",
        f"generator:{assets['generator']}",
        "--num-samples",
        40,
        "--preset",
        "unit",
        "--out",
        out,
        "--json",
    )
    assert code == 0, err
    report = json.loads(text)
    assert report["samples_per_class"] == {"red": 10, "green": 10, "blue": 10, "gray": 10}
    assert out.exists() and report["int8_bytes"] > 0
    code, text, err = run(
        capsys,
        "evaluate",
        out,
        "--data",
        f"images:{assets['images']}",
        "--preset",
        "unit",
        "--reference",
        assets["classifier"],
        "--json",
    )
    assert code == 0, err
    result = json.loads(text)
    # the tiny classifier reads the tint: FP32 gets all 24 right, INT8 (calibrated on generator images) too
    assert result["images"] == 24 and result["reference_top1"] == 1.0
    assert result["top1"] >= 0.95 and result["agreement"] >= 0.95
    code, text, _ = run(capsys, "info", assets["generator"])
    assert code == 0 and "generator" in text and "z_dim: 8" in text
    code, text, _ = run(capsys, "info", assets["classifier"], "--json")
    assert json.loads(text)["classes"] == 4


def test_quantize_from_config(assets, tmp_path, capsys):
    cfg = tmp_path / "q.yaml"
    cfg.write_text(
        f"model: {assets['classifier']}\noutput: {tmp_path}/out/q.xml\n"
        f"dataset:\n  source: generator:{assets['generator']}\n  num_samples: 16\n  seed: 2\n"
        "preprocessing: {preset: unit}\npreset: mixed\nfast_bias_correction: false\n"
        "ignored_scope: {types: [MatMul]}\n"
    )
    code, text, err = run(capsys, "quantize", "--config", cfg, "--json")
    assert code == 0, err
    assert text.lstrip().startswith("{"), (text, err)
    assert json.loads(text)["num_samples"] == 16 and (tmp_path / "out" / "q.xml").exists()


@pytest.mark.parametrize(
    "calibration, validation, num_samples",
    [
        ("generator", None, 20),
        # noise calibration judged on the generator's labelled stream (the benchmark's AA mode)
        ("noise:gaussian", "generator", 16),
    ],
    ids=["same-source", "validation-source"],
)
def test_accuracy_control_cli(assets, tmp_path, capsys, calibration, validation, num_samples):
    generator = f"generator:{assets['generator']}"
    extra = ["--validation-source", generator] if validation else []
    code, text, err = run(
        capsys,
        "quantize",
        assets["classifier"],
        "--source",
        generator if calibration == "generator" else calibration,
        "--num-samples",
        num_samples,
        "--preset",
        "unit",
        "--out",
        tmp_path / "ac.xml",
        "--max-drop",
        0.02,
        "--metric",
        "labels",
        *extra,
    )
    assert code == 0, err


def test_validation_source_needs_accuracy_control(assets, tmp_path, capsys):
    code, _, err = run(
        capsys,
        "quantize",
        assets["classifier"],
        "--source",
        "noise:gaussian",
        "--out",
        tmp_path / "q.xml",
        "--validation-source",
        "noise:uniform",
    )
    assert code == 2 and "--validation-source" in err and "Traceback" not in err


def test_generate_is_byte_identical_across_batch_sizes(assets, tmp_path, capsys):
    for bs, d in [(3, "a"), (16, "b")]:
        code, _, err = run(
            capsys,
            "generate",
            "--source",
            f"generator:{assets['generator']}",
            "-n",
            10,
            "--seed",
            4,
            "--batch-size",
            bs,
            "--out",
            tmp_path / d,
        )
        assert code == 0, err
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.png"))
    assert files_a == files_b and len(files_a) == 11  # 10 images + grid.png
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files_a)
    # class folders INDEX_name: unique whatever the file system's case, read back by images: alone
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["0_red", "1_green", "2_blue", "3_gray", "grid.png"]


def bad_cases(assets, tmp_path):
    gen, cls = assets["generator"], assets["classifier"]
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text(f"model: {cls}\ndataset: noise:gaussian\nsubset_sise: 3\n")
    no_ds = tmp_path / "nods.yaml"
    no_ds.write_text(f"model: {cls}\n")
    bad_nncf = tmp_path / "badnncf.yaml"
    bad_nncf.write_text(f"model: {cls}\ndataset: noise:gaussian\npreset: fastest\n")
    bad_gen = tmp_path / "g5.xml"
    from tiny_models import make_generator

    make_generator(bad_gen, num_classes=5, class_names=None)
    o = tmp_path / "o.xml"
    return [
        (["quantize", tmp_path / "missing.onnx", "--source", f"generator:{gen}", "--out", o], "does not exist"),
        (["quantize", cls, "--source", f"generator:{tmp_path / 'nope.xml'}", "--out", o], "nope.xml' does not exist"),
        (["quantize", cls, "--source", f"generator:{cls}", "--out", o], "expected 'z' float32"),
        (
            ["quantize", cls, "--source", f"generator:{bad_gen}", "--preset", "unit", "--out", o],
            "has 5 classes but the model outputs 4",
        ),
        (["quantize", cls, "--source", "warp:x", "--out", o], "unknown scheme 'warp'"),
        (["quantize", cls, "--source", f"generator:{gen}", "--preset", "nope", "--out", o], "unknown preset 'nope'"),
        (["quantize", cls, "--source", f"generator:{gen}", "--num-samples", 0, "--out", o], "--num-samples"),
        (["quantize", cls, "--source", f"generator:{gen}", "--num-samples", -5, "--out", o], "--num-samples"),
        (
            ["quantize", cls, "--source", f"generator:{gen}", "--out", tmp_path / "o.bin"],
            "expected a path ending in .xml",
        ),
        (["quantize", cls, "--source", f"generator:{gen}"], "--out"),
        (["quantize", "--config", bad_cfg, "--out", o], "unknown key(s) subset_sise"),
        (["quantize", "--config", no_ds, "--out", o], "or a --config with 'dataset'"),
        (["quantize", "--config", bad_nncf, "--out", o], "preset: expected one of performance, mixed"),
        (["quantize", "--config", tmp_path / "none.yaml"], "--config"),
        (["quantize", cls, "--source", f"images:{tmp_path / 'nodir'}", "--out", o], "does not exist"),
        (["quantize", cls, "--source", f"generator:{gen}", "--mean", "1,2", "--out", o], "mean: expected 1 or 3"),
        (["evaluate", cls, "--data", f"images:{tmp_path}", "--preset", "unit"], "no class folders"),
        (["evaluate", cls, "--data", "noise:gaussian", "--preset", "unit"], "is not class-conditional"),
        (["generate", "--source", f"generator:{gen}", "-n", 0, "--out", tmp_path / "g"], "--num"),
        (["generate", "--source", "noise:gaussian", "-n", 2, "--out", tmp_path / "g"], "any size"),
        (["generate", "--source", f"generator:{gen}", "--out", "/proc/nope"], "cannot be created"),
        (
            ["generate", "--source", f"generator:{gen}", "--classes", "purple", "--out", tmp_path / "g"],
            "unknown class name",
        ),
        (["info", tmp_path / "x.txt"], "does not exist"),
        (["frobnicate"], "invalid choice"),
    ]


def test_bad_inputs_exit_2_with_one_line(assets, tmp_path, capsys):
    for argv, expected in bad_cases(assets, tmp_path):
        code, out, err = run(capsys, *argv)
        assert code == 2, (argv, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("synthcalib: error:"), (argv, err)
        assert expected in lines[0], (argv, lines[0])
        assert "Traceback" not in err


def test_console_entry_point_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "openvino_synthcalib",
            "quantize",
            str(tmp_path / "m.xml"),
            "--source",
            "noise:gaussian",
            "--out",
            str(tmp_path / "o.xml"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"synthcalib: error: model file '{tmp_path / 'm.xml'}' does not exist"]


@pytest.mark.shared
def test_teacher_calibration_matches_real_on_mobilenetv2(tmp_path, capsys):
    """Issue check: teacher-calibrated INT8 within 0.3 pp of real-calibrated (2,000 test images here)."""
    model = ZOO / "mobilenetv2.onnx"
    top1 = {}
    for name, src in [("teacher", f"generator:{TEACHER}"), ("real", f"images:{CIFAR / 'train'}")]:
        out = tmp_path / f"{name}.xml"
        code, _, err = run(capsys, "quantize", model, "--source", src, "--preset", "cifar10", "--out", out)
        assert code == 0, err
        code, text, err = run(
            capsys,
            "evaluate",
            out,
            "--data",
            f"images:{CIFAR / 'test'}",
            "--preset",
            "cifar10",
            "--limit",
            2000,
            "--json",
        )
        top1[name] = json.loads(text)["top1"]
    assert abs(top1["teacher"] - top1["real"]) <= 0.01


def test_shipped_configs_parse():
    from pathlib import Path

    from openvino_synthcalib.quantization import load_config

    configs = sorted((Path(__file__).parents[1] / "configs" / "nncf").glob("*.yaml"))
    assert configs
    for cfg in configs:
        data = load_config(cfg)
        assert data["source"] and data["model"]


def _help(capsys, *argv):
    """The help text of ``synthcalib ARGV --help``, whitespace collapsed (argparse wraps to the terminal)."""
    with pytest.raises(SystemExit) as exit_:
        main([*map(str, argv), "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_info_shows_each_field_once_with_the_methods_options(capsys):
    code, text, err = run(capsys, "info", "imagenet")
    assert code == 0, err
    lines = text.splitlines()
    fields = [ln.split(":")[0] for ln in lines]  # with their indent: the generator's, its provenance's
    for field in ("  z_dim", "  num_classes", "  class_names", "  class_ids", "  provenance", "    method"):
        assert fields.count(field) == 1, (field, text)
    assert not any(f.strip() == "synthcalib" for f in fields)
    assert max(map(len, lines)) < 300, max(lines, key=len)
    options_line = next(ln for ln in lines if ln.strip().startswith("options ("))
    assert "--json shows all" in options_line
    shown = {ln.strip().split(":")[0] for ln in lines[lines.index(options_line) + 1 :] if ln.startswith(" " * 6)}
    # trained through a classifier: its options, not the discriminator's nor the run's bookkeeping
    assert {"classifier", "w_bn", "w_ce", "lr_g", "g_channels", "seed"} <= shown, shown
    assert not shown & {"d_channels", "lr_d", "w_adv", "w_pixel", "w_feat", "data", "runs_dir", "log_every"}, shown
    code, text, err = run(capsys, "info", "imagenet", "--json")
    info = json.loads(text)
    assert "synthcalib" not in info  # the metadata once, checked, under "generator"
    options = info["generator"]["provenance"]["options"]
    assert {"d_channels", "lr_d", "runs_dir", "classifier"} <= set(options)  # --json: every option
    # a generator distilled from a teacher set shows the distillation's options instead
    code, text, err = run(capsys, "info", "cifar10")
    assert code == 0 and "      w_pixel:" in text and "      w_bn:" not in text and "classifier_mean" not in text, text


def test_info_of_a_generator_with_broken_metadata_shows_what_there_is(assets, tmp_path, capsys):
    import openvino as ov

    model = ov.Core().read_model(str(assets["generator"]))
    model.set_rt_info("[1, -1]", ["synthcalib", "output_range"])  # low > high: refused by the engine
    ov.save_model(model, tmp_path / "g.xml")
    code, text, err = run(capsys, "info", tmp_path / "g.xml", "--json")
    assert code == 0, err
    info = json.loads(text)
    assert info["generator"].startswith("incomplete metadata: ") and "output_range" in info["generator"]
    assert info["synthcalib"]["output_range"] == [1, -1]


def test_help_shows_defaults_and_required_flags(capsys):
    text = _help(capsys, "quantize")
    assert "--seed SEED stream seed (default 0)" in text  # 0 is a default too
    usage = text[: text.index("positional arguments")]
    assert " --out OUTPUT " in usage and "[--out" not in usage and " --source SOURCE " in usage
    assert "(required, unless --config gives 'output')" in text
    assert "(required, unless --config gives 'dataset.source')" in text
    text = _help(capsys, "evaluate")
    assert "--device DEVICE (default CPU)" in text and "(default 64)" in text and " --data DATA " in text
    assert "[--data" not in text
    text = _help(capsys, "serve")
    assert "(default 127.0.0.1" in text and "default []" not in text


def test_quantization_preset_is_not_the_input_preset(assets, tmp_path, capsys):
    from openvino_synthcalib.cli import build_parser

    text = _help(capsys, "quantize")
    assert "--quantization-preset {performance,mixed}" in text and "--nncf-preset" not in text
    base = ["quantize", "m.xml", "--source", "noise:gaussian", "--out", "o.xml"]
    for flag in ("--quantization-preset", "--nncf-preset"):  # the old spelling still works, unlisted
        assert build_parser().parse_args([*base, flag, "mixed"]).nncf_preset == "mixed"
    out = tmp_path / "q.xml"
    args = ["quantize", assets["classifier"], "--source", f"generator:{assets['generator']}", "--num-samples", 8,
            "--preset", "unit", "--recipe", "nncf", "--out", out, "--json"]  # fmt: skip
    code, _, err = run(capsys, *args, "--nncf-preset", "performance")
    assert code == 0, err
    import openvino as ov

    assert ov.Core().read_model(str(out)).get_rt_info(["nncf", "quantization", "preset"]).astype(str) == "performance"
    code, _, err = run(capsys, *args[:-1], "--preset", "mixed")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("synthcalib: error: --preset: 'mixed' is a quantization preset of NNCF") and (
        "--quantization-preset mixed" in err
    ), err


def test_every_command_line_uses_one_error_prefix(tmp_path, capsys):
    from openvino_synthcalib.train_generator.__main__ import main as train_main

    for argv in (["train", "--bogus"], ["export", "--run", tmp_path / "absent", "--out", tmp_path / "g.xml"]):
        code = train_main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("synthcalib: error: ") and err.count("\n") == 1, err
    code, _, err = run(capsys, "quantize", "--bogus")
    assert code == 2 and err.startswith("synthcalib: error: ") and err.count("\n") == 1, err
    proc = subprocess.run(
        [sys.executable, "-m", "openvino_synthcalib.demo", "--generator", str(tmp_path / "absent.xml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("synthcalib: error: "), proc.stderr
