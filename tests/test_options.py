"""The option table (:mod:`openvino_synthcalib.options`): every front-end takes each option under
its documented name and refuses a bad value with one line naming it in its own words; the page
and the CLI make the same INT8 model for the same settings."""

import json
import re
import time

import pytest
import yaml

from openvino_synthcalib import options
from openvino_synthcalib.cli import main
from openvino_synthcalib.errors import SynthcalibError
from openvino_synthcalib.quantization import load_config, quantize

GOOD = {  # a value each option accepts (what the default is not enough to show)
    "source": "noise:gaussian",
    "classes": [0, 1],
    "class_weights": [1.0, 2.0],
    "class_list": "classes.txt",
    "device": "CPU",
    "precision": "f32",
    "transform": {"preset": "unit"},
    "recipe": "nncf",
    "score_source": "noise:uniform",
    "check_source": "noise:uniform",
    "nncf_preset": "mixed",
    "fast_bias_correction": False,
    "model_type": "transformer",
    "target_device": "CPU",
    "ignored_scope": {"names": ["x"]},
    "max_drop": 0.02,
    "metric": "labels",
    "validation_source": "noise:uniform",
    "validation_samples": 10,
    "validation_seed": 3,
    "drop_type": "relative",
    "max_num_iterations": 2,
    "allow_class_mismatch": True,
    "num_classes": 4,
    "metrics": ["agreement"],
    "cache": False,
    "stat_requests_number": 2,
    "eval_requests_number": 2,
    "backend": "onnx",
}


def _nested(name: str, value):
    """``a.b`` -> {"a": {"b": value}}."""
    head, _, tail = name.partition(".")
    return {head: {tail: value}} if tail else {head: value}


def _good(option):
    if option.key in GOOD:
        return GOOD[option.key]
    return option.default if option.default is not None else 1


def _cases(frontend):
    return [pytest.param(o, id=o.key) for o in options.offered(frontend) if o.bad is not None]


def test_every_option_is_declared_once_and_named_in_each_frontend():
    keys = [o.key for o in options.OPTIONS]
    assert len(keys) == len(set(keys))
    for frontend in options.FRONTENDS:
        names = [o.name(frontend) for o in options.offered(frontend)]
        assert len(names) == len(set(names)), frontend
    for o in options.OPTIONS:
        assert o.help and any(getattr(o, f) for f in options.FRONTENDS), o.key


@pytest.mark.parametrize("option", _cases("config"))
def test_config_takes_and_refuses_each_option(option, tmp_path):
    base = {"model": "m.xml", "dataset": {"source": "noise:gaussian"}}
    good = {**base, **_nested(option.config, _good(option))}
    if option.config.startswith("dataset."):
        good = {**base, "dataset": {**base["dataset"], option.config.split(".")[1]: _good(option)}}
    if option.config.startswith("accuracy_control.") and option.key != "max_drop":
        good["accuracy_control"] = {"max_drop": 0.01, **good["accuracy_control"]}
    path = tmp_path / "q.yaml"
    path.write_text(yaml.safe_dump(good))
    assert option.key in load_config(path)
    bad = json.loads(json.dumps(good))
    section, _, key = option.config.partition(".")
    if key and not (section == "recipe" and key == "name"):
        bad[section][key] = option.bad
    else:
        bad[section] = option.bad
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(SynthcalibError) as err:
        load_config(path)
    text = str(err.value)
    assert "\n" not in text and f"--config '{path}': {option.name('config')}" in text, text


@pytest.mark.parametrize("option", _cases("api"))
def test_api_takes_and_refuses_each_option(option, assets):
    def call(value):
        name = option.api
        head, _, tail = name.partition(".")
        kwargs = {head: {tail: value} if tail and tail != "name" else value}
        if head == "accuracy_control" and tail != "max_drop":
            kwargs[head]["max_drop"] = 0.01
        return options.from_nested({"model": "m.xml", "source": "noise:gaussian", **kwargs}, "api")

    values = call(_good(option))
    assert option.key in values and options.read(values, "api")[option.key] is not None
    with pytest.raises(SynthcalibError) as err:
        if option.key in ("model", "source"):
            quantize(str(assets["classifier"]), option.bad)
        else:
            head, _, tail = option.api.partition(".")
            kwargs = {head: {tail: option.bad} if tail and tail != "name" else option.bad}
            quantize(str(assets["classifier"]), "noise:gaussian", **kwargs)
    text = str(err.value)
    assert "\n" not in text and text.startswith(option.name("api")), text


@pytest.mark.parametrize("option", _cases("pot"))
def test_pot_engine_takes_and_refuses_each_option(option, assets):
    from openvino_synthcalib.pot.engine_config import ENGINE_KEYS, make_setup

    assert option.pot in ENGINE_KEYS
    engine = {"type": "synthetic", "source": "noise:gaussian", "preprocessing": {"preset": "unit"}}
    section = {k: v for k, v in engine.items() if k != "type"}
    values = options.from_nested({**section, option.pot: _good(option)}, "pot")
    assert option.key in values
    with pytest.raises(SynthcalibError) as err:
        make_setup({**engine, option.pot: option.bad}, str(assets["classifier"]))
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"engine.{option.pot}"), text


CLI_BAD = {"classes": None, "class_list": None}  # any text is a name or a file name: checked later


@pytest.mark.parametrize("option", [c for c in _cases("cli") if c.values[0].key not in CLI_BAD])
def test_cli_takes_and_refuses_each_option(option, assets, tmp_path, capsys):
    if option.switch:
        pytest.skip("a switch: it has no value to get wrong")
    argv = ["quantize", str(assets["classifier"]), "--source", "noise:gaussian", "--out", str(tmp_path / "o.xml")]
    if option.key in ACCURACY and option.key != "max_drop":
        argv += ["--max-drop", "0.01"]
    code = main([*argv, option.cli, str(option.bad)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and option.cli in err, err


ACCURACY = set(options.ACCURACY_KEYS)


def test_page_names_its_fields():
    for field in ("generator", "num_samples", "seed", "preset", "recipe"):
        assert any(o.page == field for o in options.OPTIONS), field
    with pytest.raises(SynthcalibError, match=r"^num_samples: expected a positive integer"):
        options.read({"source": "noise:gaussian", "num_samples": 0}, "page")


def test_accuracy_options_need_max_drop_in_each_frontend():
    for frontend, name, drop in (
        ("cli", "--metric", "--max-drop"),
        ("config", "accuracy_control.metric", "accuracy_control.max_drop"),
    ):
        with pytest.raises(SynthcalibError, match=f"^{re.escape(name)}: only used with {re.escape(drop)}"):
            options.read({"metric": "labels"}, frontend)
    # an accuracy_control mapping turns it on (max_drop 1%)
    values = options.from_nested({"accuracy_control": {"metric": "labels"}}, "api")
    assert options.read(values, "api").accuracy_control() == {"max_drop": 0.01, "metric": "labels"}


def test_errors_carry_the_option_key_and_each_frontend_names_it(assets, tmp_path, capsys):
    """A bad value deep in the plan (a transform's mean, an unknown class) is one line naming the
    option as the front-end names it, from the key the error carries (no message text is read)."""
    from openvino_synthcalib import plan
    from openvino_synthcalib.pot.engine_config import make_setup

    cls, gen = str(assets["classifier"]), f"generator:{assets['generator']}"
    assert [options.name_in(f, "transform.mean") for f in options.FRONTENDS] == [
        "--mean", "preprocessing.mean", "engine.preprocessing.mean", "transform['mean']", "mean",
    ]  # fmt: skip
    bad_mean = {"preset": "unit", "mean": [0.1, 0.2]}
    cases = [
        (lambda: quantize(cls, gen, transform=bad_mean), "transform['mean']: expected 1 or 3 numbers, got 2"),
        (lambda: quantize(cls, gen, transform="unit", classes=["purple"]), "classes: unknown class name 'purple'"),
        (
            lambda: make_setup({"type": "synthetic", "source": gen, "preprocessing": bad_mean}, cls),
            "engine.preprocessing.mean: expected 1 or 3 numbers, got 2",
        ),
        (
            lambda: make_setup({"type": "synthetic", "source": gen, "preprocessing": "unit", "classes": "purple"}, cls),
            "engine.classes: unknown class name 'purple'",
        ),
        (
            lambda: plan.build(options.read({"model": cls, "source": gen, "transform": "nope"}, "page")),
            "preset: unknown preset 'nope'",
        ),
    ]
    for call, start in cases:
        with pytest.raises(SynthcalibError) as err:
            call()
        assert str(err.value).startswith(start) and "\n" not in str(err.value), str(err.value)
    argv = ["quantize", cls, "--source", gen, "--out", str(tmp_path / "o.xml"), "--preset", "unit"]
    for extra, start in (
        (["--mean", "1,2"], "--mean: expected 1 or 3"),
        (["--classes", "purple"], "--classes: unknown"),
    ):
        assert main([*argv, *extra]) == 2
        assert capsys.readouterr().err.startswith(f"synthcalib: error: {start}")
    # accuracy control on a PyTorch module: named as the option that turns it on, or its section
    assert options.name_in("cli", "max_drop", section=True) == "--max-drop"
    assert options.name_in("api", "max_drop", section=True) == "accuracy_control"


def _normalized_ir(xml: str) -> str:
    """An IR's XML without the numbers OpenVINO gives unnamed nodes from a process-wide counter
    (``Constant_45994``): they count the nodes the process made before, not the model."""
    return re.sub(r'name="([A-Za-z]+)_\d+"', r'name="\1_N"', xml)


def test_page_and_cli_make_the_same_int8_model_with_the_adaptive_recipe(assets, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from openvino_synthcalib.serve.app import create_app
    from openvino_synthcalib.serve.catalog import Catalog

    catalog = Catalog.load([assets["generator"]], [assets["classifier"]], shipped=False)
    app = create_app(catalog, workdir=tmp_path / "work", held_out=40, timing_seconds=0.05)
    body = {"generator": "g1", "model": "m1", "preset": "unit", "num_samples": 24, "seed": 5, "recipe": "adaptive"}
    with TestClient(app, base_url="http://127.0.0.1") as client:
        jid = client.post("/api/calibrate", json=body).json()["id"]
        for _ in range(600):
            job = client.get(f"/api/jobs/{jid}").json()
            if job["state"] != "running":
                break
            time.sleep(0.2)
    assert job["state"] == "done", job
    page = tmp_path / "work" / jid / "cls_int8"
    cli = tmp_path / "cli" / "cls_int8"
    argv = ["quantize", str(assets["classifier"]), "--source", f"generator:{assets['generator']}"]
    argv += ["--preset", "unit", "--num-samples", "24", "--seed", "5", "--recipe", "adaptive", "--out", f"{cli}.xml"]
    assert main(argv) == 0
    api = tmp_path / "api" / "cls_int8"
    quantize(
        str(assets["classifier"]), f"generator:{assets['generator']}", f"{api}.xml",
        transform="unit", num_samples=24, seed=5, recipe="adaptive",
    )  # fmt: skip
    config = tmp_path / "q.yaml"
    conf = tmp_path / "config" / "cls_int8"
    config.write_text(
        yaml.safe_dump(
            {
                "model": str(assets["classifier"]),
                "output": f"{conf}.xml",
                "dataset": {"source": f"generator:{assets['generator']}", "num_samples": 24, "seed": 5},
                "preprocessing": {"preset": "unit"},
                "recipe": "adaptive",
            }
        )
    )
    assert main(["quantize", "--config", str(config)]) == 0
    assert job["report"]["recipe"].startswith("adaptive -> ")
    assert "latent_scale=1.5" in job["report"]["recipe"]  # the page scores as the CLI does (it scored at 1.0)
    for other in (cli, api, conf):
        assert page.with_suffix(".bin").read_bytes() == other.with_suffix(".bin").read_bytes(), other
        assert _normalized_ir(page.with_suffix(".xml").read_text()) == _normalized_ir(
            other.with_suffix(".xml").read_text()
        )
