"""Nothing lost, nothing silently wrong: a user's files survive every failure, bad input is one line.

The data-loss cases run the real CLI in a subprocess and kill it while it writes its output.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
from tiny_models import make_classifier, make_generator

import openvino_synthcalib as synthcalib
from openvino_synthcalib.cli import main
from openvino_synthcalib.errors import SynthcalibError
from openvino_synthcalib.imagefolder import load_image
from openvino_synthcalib.stream import SyntheticStream, make_stream
from openvino_synthcalib.transforms import Transform

REPO = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(code, err, *words):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("synthcalib: error:") and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])


def quantize_args(assets, out, *extra):
    return ["quantize", assets["classifier"], "--source", f"generator:{assets['generator']}", "--num-samples", 16,
            "--preset", "unit", "--out", out, *extra]  # fmt: skip


def snapshot(xml: Path) -> tuple[bytes, bytes]:
    return xml.read_bytes(), xml.with_suffix(".bin").read_bytes()


# ----------------------------------------------------------------------------- data loss


def test_output_that_is_the_input_is_refused(assets, tmp_path, capsys):
    model = tmp_path / "r20.xml"
    make_classifier(model)
    before = snapshot(model)
    link = tmp_path / "link.xml"
    link.symlink_to(model)
    (tmp_path / "link.bin").symlink_to(model.with_suffix(".bin"))
    for out in (model, link, tmp_path / "." / "r20.xml"):
        code, _, err = run(capsys, "quantize", model, "--source", f"generator:{assets['generator']}", "--out", out)
        one_line(code, err, "would overwrite the input model")
    assert snapshot(model) == before


_SLOW_SAVE = """
import sys, time
import openvino as ov
real = ov.save_model
def slow(*args, **kwargs):
    real(*args, **kwargs)
    print("SAVING", file=sys.__stdout__, flush=True)
    time.sleep(60)
ov.save_model = slow
from openvino_synthcalib.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_signal_while_saving_keeps_the_previous_output(assets, tmp_path, sig):
    """The process is stopped while the new model is being written: the old pair stays whole."""
    out = tmp_path / "q.xml"
    assert main([str(a) for a in quantize_args(assets, out, "--seed", 1)]) == 0
    before = snapshot(out)
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_SAVE, *map(str, quantize_args(assets, out, "--seed", 2))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "SAVING"  # the new IR is being written right now
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert snapshot(out) == before
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and err.strip().splitlines() == ["synthcalib: interrupted"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["q.bin", "q.xml"]  # temporaries removed
    else:
        assert proc.returncode == -signal.SIGKILL


def test_disk_full_keeps_the_previous_output(assets, tmp_path):
    out = tmp_path / "q.xml"
    assert main([str(a) for a in quantize_args(assets, out)]) == 0
    before = snapshot(out)

    def small_files() -> None:  # writes past 2 KB fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    proc = subprocess.run(
        [sys.executable, "-m", "openvino_synthcalib", *map(str, quantize_args(assets, out, "--seed", 3))],
        capture_output=True,
        text=True,
        preexec_fn=small_files,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"'{out}'" in lines[0] and "cannot write" in lines[0], proc.stderr
    assert snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["q.bin", "q.xml"]


def test_failed_quantize_leaves_no_new_folders(assets, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "q.xml"
    code, _, err = run(capsys, *quantize_args(assets, out, "--std", "0,0,0"))
    assert code == 2 and not (tmp_path / "new").exists(), err


def test_generate_refuses_a_non_empty_folder_unless_overwrite(assets, tmp_path, capsys):
    out = tmp_path / "imgs"
    gen = f"generator:{assets['generator']}"
    assert run(capsys, "generate", "--source", gen, "-n", 12, "--seed", 1, "--out", out)[0] == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    code, _, err = run(capsys, "generate", "--source", gen, "-n", 4, "--seed", 7, "--out", out)
    one_line(code, err, "is not empty", "--overwrite")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    code, text, err = run(capsys, "generate", "--source", gen, "-n", 4, "--seed", 7, "--out", out, "--overwrite")
    assert code == 0 and "wrote 4 images" in text, err
    assert len(list(out.rglob("*.png"))) == 5  # 4 images + grid.png: nothing stale left
    code, _, err = run(
        capsys, "generate", "--source", "noise:gaussian", "--size", "100000x100000", "--out", tmp_path / "g"
    )
    one_line(code, err, "--size", "too large")
    assert not (tmp_path / "g").exists()


# ----------------------------------------------------------------------------- silently wrong results


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--std", "nan,nan,nan"], ["--std", "finite"]),
        (["--mean", "inf"], ["--mean", "finite"]),
        (["--max-drop", "-0.5"], ["--max-drop", "[0, 1]"]),
        (["--max-drop", "nan"], ["--max-drop", "[0, 1]"]),
        (["--layout", "NHWC"], ["--layout", "NCHW"]),
        (["--num-samples", str(2**60)], ["--num-samples", "at most"]),
    ],
    ids=["std-nan", "mean-inf", "max-drop-negative", "max-drop-nan", "layout", "num-samples"],
)
def test_bad_numbers_are_refused(assets, tmp_path, capsys, extra, words):
    code, _, err = run(capsys, *quantize_args(assets, tmp_path / "q.xml", *extra))
    one_line(code, err, *words)
    assert not (tmp_path / "q.xml").exists()


def test_non_finite_data_is_caught(assets, tmp_path, capsys):
    code, _, err = run(capsys, *quantize_args(assets, tmp_path / "q.xml")[:3], "noise:gaussian?mean=nan",
                       "--out", tmp_path / "q.xml")  # fmt: skip
    one_line(code, err, "option mean", "finite")
    broken = make_generator(tmp_path / "nan.xml", nan=True)
    code, _, err = run(capsys, "quantize", assets["classifier"], "--source", f"generator:{broken}", "--preset", "unit",
                       "--out", tmp_path / "q.xml")  # fmt: skip
    one_line(code, err, "nan.xml", "NaN or inf")
    with pytest.raises(SynthcalibError, match="std: expected finite numbers"):
        Transform(std=(float("nan"),) * 3)
    with pytest.raises(SynthcalibError, match="input_range"):
        Transform(input_range=(0, float("inf")))
    # a transform that overflows float16 is caught after preprocessing
    stream = SyntheticStream(f"generator:{assets['generator']}", 8, transform=Transform(std=(1e-9,), dtype="float16"))
    with pytest.raises(SynthcalibError, match="preprocessing .* NaN or inf"):
        list(stream)


def test_array_sources_read_their_value_range(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (6, 8, 8, 3)).astype(np.uint8)
    expected = pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255
    np.save(tmp_path / "u8_nhwc.npy", pixels)
    np.save(tmp_path / "u8_nchw.npy", pixels.transpose(0, 3, 1, 2).copy())
    np.save(tmp_path / "f255.npy", pixels.transpose(0, 3, 1, 2).astype(np.float32))
    for name in ("u8_nhwc.npy", "u8_nchw.npy", "f255.npy?range=0,255"):
        s = SyntheticStream(f"array:{tmp_path / name}", 6, prefetch=0)
        got = np.concatenate([x for x, _ in s.batches()])
        assert {tuple(row.ravel()[:5]) for row in got} == {tuple(row.ravel()[:5]) for row in expected}, name
        np.testing.assert_allclose(np.sort(got.ravel()), np.sort(expected.ravel()), atol=1e-6)
    with pytest.raises(SynthcalibError, match=r"values span \[0, 255\].*range=0,255"):
        SyntheticStream(f"array:{tmp_path / 'f255.npy'}", 6)
    np.save(tmp_path / "i32.npy", pixels.astype(np.int32))
    with pytest.raises(SynthcalibError, match="need their value range"):
        SyntheticStream(f"array:{tmp_path / 'i32.npy'}", 6)


@pytest.mark.parametrize("mode", ["I;16", "I", "F", "L", "P", "RGBA", "LA", "CMYK", "1"])
def test_every_image_mode_loads_with_its_values(tmp_path, mode):
    from PIL import Image

    grey = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    if mode in ("I;16", "I"):  # 16-bit PNGs open as I;16 or I depending on the Pillow version
        im = Image.fromarray((grey * 65535).round().astype(np.uint16))
        im, path = (im, tmp_path / "x.png") if mode == "I;16" else (im.convert("I"), tmp_path / "x.tiff")
    elif mode == "F":
        im, path = Image.fromarray(grey * 255), tmp_path / "x.tiff"
    else:
        im, path = Image.fromarray((grey * 255).round().astype(np.uint8)).convert(mode), tmp_path / "x.tiff"
    im.save(path)
    img = load_image(path)
    assert img.shape == (3, 8, 8) and img.dtype == np.float32
    if mode == "1":
        assert set(np.unique(img)) <= {0.0, 1.0}
    else:
        tol = 0.02 if mode in ("P", "CMYK") else 1 / 255
        np.testing.assert_allclose(img[0], grey, atol=tol)


def test_integer_model_inputs_get_their_range(assets, tmp_path, capsys):
    u8 = make_classifier(tmp_path / "u8.xml", input_type="u8")
    s = make_stream(f"generator:{assets['generator']}", 8, model=u8)
    x = np.concatenate([b for b, _ in s.batches()])
    assert x.dtype == np.uint8 and x.max() > 100  # pixels in 0..255, not {0, 1}
    code, text, err = run(capsys, "evaluate", u8, "--data", f"images:{assets['images']}", "--json")
    assert code == 0 and json.loads(text)["top1"] > 0.5, err
    i8 = make_classifier(tmp_path / "i8.xml", input_type="i8")
    code, _, err = run(capsys, "quantize", i8, "--source", f"generator:{assets['generator']}", "--out",
                       tmp_path / "q.xml")  # fmt: skip
    one_line(code, err, "int8", "--input-range")


def test_command_line_beats_config_and_every_key_is_honoured(assets, tmp_path, capsys, monkeypatch):
    """Every key of the config reaches the run: ``model``, ``output`` and ``dataset.source`` (the
    report, the file written), ``preprocessing.preset`` (the transform), ``dataset.num_samples``,
    ``seed``, ``batch_size``, ``device`` and ``precision`` (the calibration stream is made with them);
    a flag on the command line beats the config; a bad value of a key is an error naming it."""
    from openvino_synthcalib import stream as streams

    made = []
    make_stream_ = streams.make_stream

    def spy(source, num_samples, **kwargs):
        made.append({"num_samples": num_samples, **kwargs})
        return make_stream_(source, num_samples, **kwargs)

    monkeypatch.setattr(streams, "make_stream", spy)
    out = tmp_path / "q.xml"
    cfg = tmp_path / "q.yaml"
    cfg.write_text(
        f"model: {assets['classifier']}\noutput: {out}\n"
        f"dataset:\n  source: generator:{assets['generator']}\n  num_samples: 8\n  seed: 5\n  batch_size: 3\n"
        "  device: CPU\n  precision: f32\npreprocessing: {preset: unit}\n"
    )
    code, text, err = run(capsys, "quantize", "--config", cfg, "--json")
    assert code == 0, err
    report = json.loads(text)
    assert (report["model"], report["output"]) == (str(assets["classifier"]), str(out))
    assert out.is_file() and out.with_suffix(".bin").is_file()
    assert report["source"] == f"generator:{assets['generator']}"
    assert (report["num_samples"], report["seed"], report["preprocessing"]["origin"]) == (8, 5, "preset unit")
    calibration = [m for m in made if m["num_samples"] == 8]  # the scoring and check streams have 1000 items
    assert calibration, made
    for m in calibration:
        assert (m["seed"], m["batch_size"], m["device"], m["precision"]) == (5, 3, "CPU", "f32"), m
        assert m["transform"].describe()["origin"] == "preset unit"
    made.clear()
    code, text, err = run(capsys, "quantize", "--config", cfg, "--seed", 0, "--batch-size", 2, "--json")
    assert code == 0 and json.loads(text)["seed"] == 0, err
    assert {(m["seed"], m["batch_size"]) for m in made if m["num_samples"] == 8} == {(0, 2)}
    for key, good, value, words in (("device", "CPU", "NOPE", ["NOPE"]), ("precision", "f32", "f64", ["precision"])):
        bad = tmp_path / f"{key}.yaml"
        bad.write_text(cfg.read_text().replace(f"  {key}: {good}\n", f"  {key}: {value}\n"))
        code, _, err = run(capsys, "quantize", "--config", bad)
        one_line(code, err, *words)
    bad = tmp_path / "types.yaml"
    bad.write_text(cfg.read_text().replace("num_samples: 8", "num_samples: lots"))
    one_line(*run(capsys, "quantize", "--config", bad)[::2], "dataset.num_samples")


def test_streams_of_any_length_stay_flat(assets):
    ds = synthcalib.Dataset(f"generator:{assets['generator']}", num_samples=10**12, batch_size=4)
    assert len(ds) == 10**12
    first = [x for _, x in zip(range(6), ds)]
    assert len(first) == 6 and first[0].shape == (1, 3, 8, 8)
    assert ds[10**12 - 1].shape == (1, 3, 8, 8)
    assert sum(ds.describe()["samples_per_class"].values()) == 10**12
    with pytest.raises(SynthcalibError, match="num_samples"):
        synthcalib.Dataset(f"generator:{assets['generator']}", num_samples=10**20)
    ds.close()


# ----------------------------------------------------------------------------- crashes and hangs


def test_public_functions_stay_callable_whatever_is_imported_first():
    code = textwrap.dedent(
        """
        import openvino_synthcalib.quantization, openvino_synthcalib.evaluation, openvino_synthcalib as s
        import openvino_synthcalib.train_generator.exporter, openvino_synthcalib.train_generator.training
        import openvino_synthcalib.train_generator as t
        from openvino_synthcalib.quantization import load_config
        print(callable(s.quantize), callable(s.evaluate), callable(t.export), callable(t.train), callable(load_config))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True"] * 5


def test_failed_inference_raises_instead_of_hanging():
    import openvino.opset11 as ops

    from openvino_synthcalib.inference import run_ordered

    x = ops.parameter([-1, 3], ov.Type.f32, name="x")
    bad = ov.Core().compile_model(ov.Model([ops.reshape(x, ops.constant(np.array([-1, 5])), False)], [x]), "CPU")
    feeds = [{0: np.zeros((5, 3), np.float32)}, {0: np.zeros((1, 3), np.float32)}, {0: np.zeros((5, 3), np.float32)}]
    started = time.perf_counter()
    got = []
    with pytest.raises(SynthcalibError, match="inference of the test model failed: .*reshape"):
        for out in run_ordered(bad, feeds, 2, lambda r: np.array(r.get_output_tensor(0).data), "the test model"):
            got.append(out)
    assert len(got) == 1 and time.perf_counter() - started < 10


def test_reference_with_another_input_is_one_line(assets, tmp_path, capsys):
    other = make_classifier(tmp_path / "big.xml", size=16)
    code, _, err = run(capsys, "evaluate", assets["classifier"], "--data", f"images:{assets['images']}",
                       "--preset", "unit", "--reference", other)  # fmt: skip
    one_line(code, err, "--reference", "expected the same input")


def test_bad_metadata_is_one_line(tmp_path, capsys):
    gen = make_generator(tmp_path / "g.xml")
    model = ov.Core().read_model(str(gen))
    model.set_rt_info('"many"', ["synthcalib", "z_dim"])
    ov.save_model(model, str(tmp_path / "bad.xml"), compress_to_fp16=False)
    code, _, err = run(capsys, "generate", "--source", f"generator:{tmp_path / 'bad.xml'}", "--out", tmp_path / "o")
    one_line(code, err, "rt_info synthcalib/z_dim", "positive integer")
    assert not (tmp_path / "o").exists()
