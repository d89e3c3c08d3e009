"""No preprocessing is ever guessed: it is read from the model or stated, else every front-end
stops with one line naming its own preprocessing options; reports say what was used."""

from __future__ import annotations

import json

import numpy as np
import openvino as ov
import pytest
from conftest import SHARED

import openvino_synthcalib as synthcalib
from openvino_synthcalib import preprocessing
from openvino_synthcalib.cli import main
from openvino_synthcalib.errors import SynthcalibError
from openvino_synthcalib.transforms import Transform, as_transform


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _with_rt_info(src, dst, entries: dict[tuple[str, ...], str]):
    model = ov.Core().read_model(str(src))
    for path, value in entries.items():
        model.set_rt_info(value, list(path))
    ov.save_model(model, str(dst), compress_to_fp16=False)
    return dst


# -- what a model declares -----------------------------------------------------------------------


def test_model_api_rt_info_is_read(assets, tmp_path):
    path = _with_rt_info(
        assets["classifier"],
        tmp_path / "declared.xml",
        {
            ("model_info", "mean_values"): "123.675 116.28 103.53",
            ("model_info", "scale_values"): "58.395 57.12 57.375",
            ("model_info", "reverse_input_channels"): "True",
        },
    )
    tf = as_transform(None, ov.Core().read_model(str(path)))
    assert tf.input_range == (0.0, 255.0) and tf.channel_order == "RGB"
    assert tf.mean == (123.675, 116.28, 103.53) and tf.std == (58.395, 57.12, 57.375)
    assert "model_info" in tf.origin
    # the same images as torchvision's ImageNet normalisation
    x = np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(tf(x), Transform.from_options("imagenet")(x), rtol=1e-3, atol=1e-3)
    # the user's statement wins over the model's
    assert as_transform("unit", ov.Core().read_model(str(path))).mean is None


def test_model_optimizer_conversion_parameters_mean_pixels(assets, tmp_path):
    path = _with_rt_info(
        assets["classifier"],
        tmp_path / "mo.xml",
        {
            ("conversion_parameters", "mean_values"): "[127.5,127.5,127.5]",
            ("conversion_parameters", "scale_values"): "[127.5]",
        },
    )
    tf = as_transform(None, ov.Core().read_model(str(path)))
    assert tf.input_range == (0.0, 255.0) and tf.mean is None and tf.std is None and tf.channel_order == "RGB"


def test_onnx_metadata_is_read(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 3])
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["logits"], axes=[2, 3], keepdims=0)], "g", [x], [y]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert preprocessing.declared(model) is None
    helper.set_model_props(model, {"model_info mean_values": "127.5", "model_info scale_values": "127.5",
                                   "model_info reverse_input_channels": "true"})  # fmt: skip
    tf = synthcalib.backends.target(model).transform(None)
    assert tf.input_range == (0.0, 255.0) and tf.mean == (127.5,) and tf.channel_order == "RGB"
    assert "ONNX metadata" in tf.origin
    preprocessing.record(model, Transform.from_options("inception"))
    assert json.loads({p.key: p.value for p in model.metadata_props}[preprocessing.ONNX_KEY])["mean"] == [0.5] * 3
    assert isinstance(model, onnx.ModelProto)


def test_torch_pretrained_cfg_and_hugging_face_config(tmp_path):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x).mean((2, 3))

    net = Net()
    net.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "input_size": (3, 16, 16)}
    tf = synthcalib.backends.target(net).transform(None)
    assert tf.mean == (0.5, 0.5, 0.5) and tf.size == (16, 16) and "pretrained_cfg" in tf.origin

    folder = tmp_path / "hf-model"
    folder.mkdir()
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "rescale_factor": 1 / 255})
    )
    hf = Net()
    hf.config = type("Config", (), {"_name_or_path": str(folder)})()
    tf = synthcalib.backends.target(hf).transform(None)
    assert tf.std == (0.25, 0.25, 0.25) and tf.input_range == pytest.approx((0.0, 1.0))

    class Processor:  # a Hugging Face image processor given as the transform
        image_mean, image_std, do_rescale, rescale_factor = [0.5] * 3, [0.5] * 3, True, 1 / 255

    tf = synthcalib.backends.target(Net()).transform(Processor())
    assert tf.mean == (0.5, 0.5, 0.5) and "Processor" in tf.origin


def test_uint8_input_states_pixels(tmp_path):
    from tiny_models import make_classifier

    model = ov.Core().read_model(str(make_classifier(tmp_path / "u8.xml", input_type="u8")))
    tf = as_transform(None, model)
    assert tf.input_range == (0.0, 255.0) and "uint8" in tf.origin


# -- every front-end stops on an unstated normalisation ------------------------------------------


def test_api_and_dataset_name_the_transform(assets):
    with pytest.raises(SynthcalibError) as err:
        synthcalib.quantize(str(assets["classifier"]), f"generator:{assets['generator']}")
    text = str(err.value)
    assert text.startswith("transform['preset']: model 'cls.xml' does not say how its inputs are normalised")
    assert "inception ([-1, 1])" in text and "transform['mean']" in text and "\n" not in text
    with pytest.raises(SynthcalibError, match=r"^transform\['preset'\]: the model does not say.*transform\['mean'\]"):
        synthcalib.Dataset(str(assets["generator"]), 8, model=str(assets["classifier"]))
    with pytest.warns(UserWarning, match="no model and no transform"):
        synthcalib.Dataset(str(assets["generator"]), 8).close()


def test_cli_and_config_name_their_options(assets, tmp_path, capsys):
    base = [
        "quantize",
        assets["classifier"],
        "--source",
        f"generator:{assets['generator']}",
        "--out",
        tmp_path / "o.xml",
    ]
    code, _, err = run(capsys, *base)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("synthcalib: error: --preset: model 'cls.xml' does not say how its inputs are normalised")
    assert "--mean/--std/--input-range" in err and not (tmp_path / "o.xml").exists()
    config = tmp_path / "q.yaml"
    config.write_text(
        f"model: {assets['classifier']}\noutput: {tmp_path / 'c.xml'}\ndataset: generator:{assets['generator']}\n"
    )
    code, _, err = run(capsys, "quantize", "--config", config)
    assert code == 2 and "--preset: model 'cls.xml' does not say" in err  # a config run is a CLI run
    code, _, err = run(capsys, "evaluate", assets["classifier"], "--data", f"images:{assets['images']}")
    assert code == 2 and err.startswith("synthcalib: error: --preset: the model does not say"), err


def test_pot_engine_names_its_preprocessing(assets):
    from openvino_synthcalib.pot.engine_config import make_setup

    with pytest.raises(SynthcalibError) as err:
        make_setup({"type": "synthetic", "source": f"generator:{assets['generator']}"}, str(assets["classifier"]))
    assert str(err.value).startswith("engine.preprocessing.preset: the model does not say"), str(err.value)


# -- reports say what was used; INT8 models say how to feed them ---------------------------------


def test_report_shows_preprocessing_and_the_int8_model_records_it(assets, tmp_path, capsys):
    out = tmp_path / "int8.xml"
    argv = ["quantize", assets["classifier"], "--source", f"generator:{assets['generator']}", "--preset", "unit"]
    code, text, err = run(capsys, *argv, "--num-samples", 24, "--check-samples", 48, "--out", out)
    assert code == 0, err
    assert "input:      [0, 1] RGB NCHW float32 at 8x8, from preset unit" in text
    assert "of 48 fresh synthetic items" in text
    declared = preprocessing.declared(ov.Core().read_model(str(out)))
    assert declared["input_range"] == [0.0, 1.0] and declared["mean"] is None
    # the INT8 model needs no flag: its own record states the normalisation
    code, text, err = run(capsys, "quantize", out, "--source", f"generator:{assets['generator']}", "--num-samples", 24,
                          "--check-samples", 0, "--out", tmp_path / "again.xml", "--json")  # fmt: skip
    assert code == 0, err
    report = json.loads(text)
    assert report["preprocessing"]["origin"] == "the model's rt_info synthcalib/preprocessing"
    assert report["check"] == {"skipped": "--check-samples is 0"}


def test_check_runs_on_a_generator_only(assets):
    report = synthcalib.quantize(str(assets["classifier"]), "noise:gaussian", num_samples=16, transform="unit")
    assert "--check-source" not in report["check"]["skipped"] and "check['source']" in report["check"]["skipped"]
    report = synthcalib.quantize(
        str(assets["classifier"]),
        "noise:gaussian",
        num_samples=16,
        transform="unit",
        check={"source": f"generator:{assets['generator']}", "samples": 40},
    )
    check = report["check"]
    assert check["items"] == 40 and 0.0 <= check["flip_rate"] <= 1.0 and check["mean_kl"] >= 0.0
    assert check["seed"] == 2000


# -- the shared models: none says how it is normalised, so each needs the flag --------------------


@pytest.mark.shared
def test_every_shared_model_without_preset_stops_with_one_line(tmp_path, capsys):
    models = sorted((SHARED / "models").glob("*/*.onnx"))
    assert models
    for model in models:
        code, _, err = run(capsys, "quantize", model, "--source", "generator:cifar10", "--out", tmp_path / "q.xml")
        assert code == 2 and err.count("\n") == 1, (model, err)
        assert f"--preset: model '{model.name}' does not say how its inputs are normalised" in err
        assert not (tmp_path / "q.xml").exists()
