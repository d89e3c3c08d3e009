"""POT integration (issue 4): runs in the legacy environment (.venv-pot: openvino-dev 2023.3 with POT).

In that environment the tests of ``TestPot`` run directly. In any other environment this
module collects a single proxy test that runs this file with the legacy interpreter
(``.venv-pot/bin/python``, or ``$SYNTHCALIB_POT_PYTHON``); it skips when that interpreter is
absent, except under CI (``CI`` set), where it fails instead. Build the environment with
``scripts/setup_pot_env.sh``.

Everything is built here (a tiny generator and classifier with OpenVINO's opset API);
nothing from ../shared is used.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _has_pot() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("openvino.tools.pot") is not None
    except (ImportError, ValueError):
        return False


IN_LEGACY = _has_pot()


def _legacy_python() -> Path:
    explicit = os.environ.get("SYNTHCALIB_POT_PYTHON")
    return Path(explicit) if explicit else ROOT / ".venv-pot" / "bin" / "python"


def test_pot_suite_in_legacy_env() -> None:
    """Outside the legacy env: run this file there (skip if absent, but fail under CI)."""
    python = _legacy_python()
    if not python.exists():
        message = f"legacy POT environment {python} is absent: run scripts/setup_pot_env.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__).resolve())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    summary = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"POT tests failed in {python}:\n{summary}"
    assert re.search(r"\d+ passed", proc.stdout), summary
    assert " skipped" not in proc.stdout.splitlines()[-1] or not os.environ.get("CI"), summary


test_pot_suite_in_legacy_env.__test__ = not IN_LEGACY  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- tiny models

NUM_CLASSES = 4
SIZE = 8
Z_DIM = 16
PREPROCESSING = {"preset": "cifar10"}


def _ops():
    try:
        import openvino.opset13 as ops  # newer OpenVINO
    except ImportError:
        from openvino.runtime import opset13 as ops  # 2023.x: only under openvino.runtime
    return ops


def _named(node, name: str):
    node.get_output_tensor(0).set_names({name})
    return node


def _embedding(num_classes: int) -> np.ndarray:
    return np.random.default_rng(7).normal(0, 1.0, (num_classes, 3 * SIZE * SIZE)).astype(np.float32)


def make_generator(path: Path, num_classes: int = NUM_CLASSES, metadata: bool = False) -> Path:
    """z [N, 16] f32 + label [N] i64 -> image [N, 3, 8, 8] in [-1, 1]; class templates plus noise."""
    import openvino as ov

    ops = _ops()
    rng = np.random.default_rng(1)
    z = _named(ops.parameter([-1, Z_DIM], np.float32, name="z"), "z")
    label = _named(ops.parameter([-1], np.int64, name="label"), "label")
    wz = ops.constant(rng.normal(0, 0.4, (Z_DIM, 3 * SIZE * SIZE)).astype(np.float32))
    emb = ops.constant(_embedding(num_classes))
    h = ops.add(ops.matmul(z, wz, False, False), ops.gather(emb, label, ops.constant(np.int64(0))))
    shape = ops.constant(np.array([-1, 3, SIZE, SIZE], np.int64))
    image = _named(ops.tanh(ops.reshape(h, shape, False)), "image")
    model = ov.Model([image], [z, label], "tiny_generator")
    if metadata:
        from openvino_synthcalib.contract import GeneratorInfo, write_info

        write_info(model, GeneratorInfo(z_dim=Z_DIM, num_classes=num_classes, image_size=(SIZE, SIZE)))
    ov.save_model(model, str(path))
    return path


def make_classifier(path: Path, num_classes: int = NUM_CLASSES) -> Path:
    """input [N, 3, 8, 8] -> 1x1 conv (near identity) -> template matching logits [N, K]."""
    import openvino as ov

    ops = _ops()
    rng = np.random.default_rng(2)
    x = _named(ops.parameter([-1, 3, SIZE, SIZE], np.float32, name="input"), "input")
    w = np.eye(3, dtype=np.float32)[:, :, None, None] + rng.normal(0, 0.05, (3, 3, 1, 1)).astype(np.float32)
    conv = ops.convolution(x, ops.constant(w), [1, 1], [0, 0], [0, 0], [1, 1])
    flat = ops.reshape(conv, ops.constant(np.array([-1, 3 * SIZE * SIZE], np.int64)), False)
    logits = _named(ops.matmul(flat, ops.constant(_embedding(num_classes).T.copy()), False, False), "logits")
    ov.save_model(ov.Model([logits], [x], "tiny_classifier"), str(path), compress_to_fp16=False)
    return path


def make_onnx_classifier(path: Path, num_classes: int = NUM_CLASSES) -> Path:
    """The classifier of :func:`make_classifier` as an ONNX file (opset 13), as the shipped configs use."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    w = np.eye(3, dtype=np.float32)[:, :, None, None] + rng.normal(0, 0.05, (3, 3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["conv"]),
        helper.make_node("Reshape", ["conv", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "emb"], ["logits"]),
    ]
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.array([-1, 3 * SIZE * SIZE], np.int64), "shape"),
        numpy_helper.from_array(_embedding(num_classes).T.copy(), "emb"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pot_models")
    make_generator(d / "gen.xml")
    make_classifier(d / "cls.xml")
    make_onnx_classifier(d / "cls.onnx")
    make_generator(d / "gen5.xml", num_classes=5, metadata=True)
    return d


def engine_section(**overrides):
    section = {
        "type": "synthetic",
        "source": "generator:gen.xml",
        "subset_size": 40,
        "seed": 0,
        "preprocessing": PREPROCESSING,
    }
    section.update(overrides)
    return {k: v for k, v in section.items() if v is not None}


def write_config(directory: Path, name: str, engine: dict, algorithm: str = "DefaultQuantization", **params) -> Path:
    algo_params = {"preset": "performance", "stat_subset_size": 40, **params}
    config = {
        "model": {"model_name": "tiny", "model": "cls.xml", "weights": "cls.bin"},
        "engine": engine,
        "compression": {"target_device": "ANY", "algorithms": [{"name": algorithm, "params": algo_params}]},
    }
    path = directory / name
    path.write_text(json.dumps(config, indent=2))
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def run_wrapper(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "openvino_synthcalib.pot.cli", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_plain_pot(args: list[str], cwd: Path, site_dir: Path | None) -> subprocess.CompletedProcess:
    """POT's own console script, in an interpreter that also processes ``site_dir``'s .pth files."""
    pot_script = Path(sys.executable).parent / "pot"
    code = (
        "import runpy, site, sys\n"
        + (f"site.addsitedir({str(site_dir)!r})\n" if site_dir else "")
        + f"sys.argv = ['pot'] + {args!r}\n"
        + f"runpy.run_path({str(pot_script)!r}, run_name='__main__')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300
    )


def copy_models(models_dir: Path, dest: Path) -> Path:
    import shutil

    for f in models_dir.iterdir():
        shutil.copy(f, dest / f.name)
    return dest


def agreement(int8_xml: Path, fp32_xml: Path, inputs: np.ndarray) -> float:
    import openvino as ov

    core = ov.Core()
    a = core.compile_model(str(int8_xml), "CPU")(inputs)[0].argmax(1)
    b = core.compile_model(str(fp32_xml), "CPU")(inputs)[0].argmax(1)
    return float((a == b).mean())


def accuracy_drops(log: str) -> list[dict[str, float]]:
    found = re.findall(r"Accuracy drop(?: with the new quantization scope is)?:? (\{[^}]*\})", log)
    return [json.loads(d.replace("'", '"')) for d in found]


# --------------------------------------------------------------------------- the tests


class TestPot:
    # ---- data loader

    def test_loader_deterministic_and_class_balanced(self, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        from openvino_synthcalib.pot import ClassLabel, SyntheticDataLoader

        monkeypatch.chdir(models_dir)
        a = SyntheticDataLoader(engine_section(seed=3), model="cls.xml")
        b = SyntheticDataLoader(engine_section(seed=3), model="cls.xml", cache=False)
        assert len(a) == 40
        for i in (39, 0, 17, 5):  # any order, cached or not
            xa, ya = a[i]
            xb, yb = b[i]
            assert xa.shape == (3, SIZE, SIZE) and xa.dtype == np.float32
            np.testing.assert_array_equal(xa, xb)
            assert isinstance(ya, ClassLabel) and ya.index == i and int(ya) == int(yb)
        labels = np.array([int(a[i][1]) for i in range(len(a))])
        assert np.bincount(labels, minlength=NUM_CLASSES).tolist() == [10] * NUM_CLASSES
        other = SyntheticDataLoader(engine_section(seed=4), model="cls.xml")
        assert not np.array_equal(a[0][0], other[0][0])

    def test_loader_items_equal_nncf_dataset(self, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        from openvino_synthcalib.pot import SyntheticDataLoader
        from openvino_synthcalib.stream import make_stream

        monkeypatch.chdir(models_dir)
        loader = SyntheticDataLoader(engine_section(seed=11), model="cls.xml")
        stream = make_stream("generator:gen.xml", 40, model="cls.xml", transform=PREPROCESSING, seed=11)
        try:
            from openvino_synthcalib.dataset import Dataset  # needs nncf (2.8.1 here)
        except ImportError:
            Dataset = None
        for i in range(40):
            x, y = loader[i]
            xs, ys = stream[i]
            np.testing.assert_array_equal(x, xs)
            assert int(y) == ys
        if Dataset is not None:
            # The POT engine generates at f32 (its "precision" key); NNCF streams default to the device's.
            ds = Dataset("generator:gen.xml", 40, model="cls.xml", transform=PREPROCESSING, seed=11, precision="f32")
            for i, item in enumerate(ds.get_inference_data()):
                np.testing.assert_array_equal(item[0], loader[i][0])

    def test_metrics(self, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        from openvino_synthcalib.pot import SyntheticDataLoader, make_metric

        monkeypatch.chdir(models_dir)
        loader = SyntheticDataLoader(engine_section(), model="cls.xml")
        metric = make_metric(["top1_agreement", "top1_label"], "cls.xml", loader)
        assert set(metric.get_attributes()) == {"top1_agreement", "top1_label"}
        import openvino as ov

        compiled = ov.Core().compile_model("cls.xml", "CPU")
        for i in range(len(loader)):
            x, y = loader[i]
            metric.update([compiled(x[None])[0]], [y])
        assert metric.avg_value["top1_agreement"] == 1.0
        assert metric.avg_value["top1_label"] > 0.9  # the classifier matches the generator's templates
        metric.reset()
        x, y = loader[0]
        wrong = np.zeros((1, NUM_CLASSES), np.float32)
        wrong[0, (int(y) + 1) % NUM_CLASSES] = 1.0  # FP32 top-1 is the label here
        metric.update([wrong], [y])
        assert metric.value == {"top1_agreement": [0.0], "top1_label": [0.0]}

    # ---- wrapper CLI

    def test_wrapper_default_quantization(self, models_dir: Path, tmp_path: Path) -> None:
        from openvino_synthcalib.pot import SyntheticDataLoader

        work = copy_models(models_dir, tmp_path)
        cfg = write_config(work, "dq.json", engine_section())
        proc = run_wrapper(["-c", cfg.name, "--output-dir", "out", "--direct-dump"], cwd=work)
        assert proc.returncode == 0, proc.stderr[-3000:]
        int8 = work / "out" / "optimized" / "tiny.xml"
        assert int8.exists()
        assert "FakeQuantize" in int8.read_text()
        engine = engine_section(seed=99, source=f"generator:{work / 'gen.xml'}")
        inputs = SyntheticDataLoader(engine, model=str(work / "cls.xml")).inputs()
        assert agreement(int8, work / "cls.xml", inputs) >= 0.9

    def test_wrapper_with_an_onnx_model(self, models_dir: Path, tmp_path: Path) -> None:
        """Every shipped POT config names an .onnx model: it is converted once to a cached IR."""
        work = copy_models(models_dir, tmp_path)
        config = json.loads(write_config(work, "dq.json", engine_section()).read_text())
        config["model"] = {"model_name": "tiny_onnx", "model": "cls.onnx"}
        (work / "onnx.json").write_text(json.dumps(config))
        cache = tmp_path / "cache"
        env = {**_env(), "SYNTHCALIB_CACHE": str(cache)}
        proc = subprocess.run(
            [sys.executable, "-m", "openvino_synthcalib.pot.cli", "-c", "onnx.json", "--output-dir", "out",
             "--direct-dump"],
            cwd=work, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        int8 = work / "out" / "optimized" / "tiny_onnx.xml"
        assert "FakeQuantize" in int8.read_text()
        assert len(list((cache / "pot-ir").glob("*/cls.xml"))) == 1
        from openvino_synthcalib.pot import SyntheticDataLoader

        engine = engine_section(seed=5, source=f"generator:{work / 'gen.xml'}")
        inputs = SyntheticDataLoader(engine, model=str(work / "cls.xml")).inputs()
        assert agreement(int8, work / "cls.xml", inputs) >= 0.9

    # ---- the quantization recipe

    def test_recipe_is_chosen_by_the_synthetic_engine(self, models_dir: Path, tmp_path: Path) -> None:
        work = copy_models(models_dir, tmp_path)
        cfg = write_config(work, "dq.json", engine_section(score_samples=64))
        proc = run_wrapper(["-c", cfg.name, "--output-dir", "out", "--direct-dump"], cwd=work)
        assert proc.returncode == 0, proc.stderr[-3000:]
        line = [ln for ln in proc.stderr.splitlines() if ln.startswith("synthcalib: recipe adaptive -> ")]
        assert len(line) == 1 and "nncf" in line[0] and "minmax" in line[0] and "64 items" in line[0], proc.stderr
        assert "FakeQuantize" in (work / "out" / "optimized" / "tiny.xml").read_text()

    def test_recipe_candidates_respect_a_configured_range_estimator(self) -> None:
        from openvino_synthcalib.pot.pipeline import applies, pot_candidates, with_candidate

        assert pot_candidates() == ("nncf", "mixed_minmax")
        own = {"max": {"type": "quantile", "outlier_prob": 1e-4}}
        algos = [
            {"name": "DefaultQuantization", "params": {"preset": "performance"}},
            {"name": "DefaultQuantization", "params": {"activations": {"range_estimator": own}}},
        ]
        assert pot_candidates(algos) == ("nncf", "minmax")  # a config's own preset is kept
        injected = with_candidate(algos, "minmax")
        assert injected[0]["params"]["activations"]["range_estimator"]["max"] == {"type": "max", "aggregator": "max"}
        assert injected[1]["params"]["activations"]["range_estimator"] == own
        assert "activations" not in algos[0]["params"]  # the caller's config is not modified
        assert with_candidate(algos, "nncf")[0]["params"] == {"preset": "performance"}
        assert with_candidate(algos, "mixed_minmax")[0]["params"]["preset"] == "performance"
        bare = [{"name": "DefaultQuantization", "params": {}}]
        assert with_candidate(bare, "mixed_minmax")[0]["params"]["preset"] == "mixed"
        assert applies(algos) and not applies(algos[1:])

    def test_accuracy_aware_with_agreement_metric(self, models_dir: Path, tmp_path: Path) -> None:
        work = copy_models(models_dir, tmp_path)
        cfg = write_config(
            work,
            "aa.json",
            engine_section(metrics=["agreement", "label"]),
            "AccuracyAwareQuantization",
            maximal_drop=0.01,
            metrics=[{"name": "top1_agreement"}],
        )
        proc = run_wrapper(["-c", cfg.name, "--output-dir", "out", "--direct-dump"], cwd=work)
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-3000:]
        assert "Baseline metrics: {'top1_agreement': 1.0}" in log
        drops = accuracy_drops(log)
        assert drops, log[-3000:]
        assert drops[-1]["top1_agreement"] <= 0.01
        assert (work / "out" / "optimized" / "tiny.xml").exists()

    # ---- bad configs

    @pytest.mark.parametrize(
        "change, key",
        [
            ({"source": None}, "engine.source"),
            ({"sourse": "generator:gen.xml"}, "engine.sourse"),
            ({"preprocessing": {"preset": "cifar11"}}, "engine.preprocessing"),
            ({"preprocessing": {"mean": [0.5, 0.5]}}, "engine.preprocessing"),
            ({"preprocessing": None}, "engine.preprocessing"),
            ({"source": "generator:gen5.xml"}, "engine.source"),
            ({"num_classes": 5}, "engine.num_classes"),
            ({"type": "synthetik"}, "engine.type"),
            ({"source": "generator:missing.xml"}, "engine.source"),
            ({"metrics": ["top5"]}, "engine.metrics"),
            ({"recipe": "histogram"}, "engine.recipe"),
            ({"recipe": "best"}, "engine.recipe"),
            ({"preprocessing": {"std": "nan"}}, "engine.preprocessing"),
            ({"score_samples": 0}, "engine.score_samples"),
            ({"score_latent_scale": "wide"}, "engine.score_latent_scale"),
        ],
    )
    def test_bad_config_one_line_exit_2(self, models_dir: Path, tmp_path: Path, change: dict, key: str) -> None:
        work = copy_models(models_dir, tmp_path)
        engine = {**engine_section(), **change}
        engine = {k: v for k, v in engine.items() if v is not None}
        cfg = write_config(work, "bad.json", engine)
        proc = run_wrapper(["-c", cfg.name, "--output-dir", "out"], cwd=work)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        assert len(lines) == 1 and lines[0].startswith(f"synthcalib: error: {key}"), proc.stderr

    def test_bad_config_file(self, tmp_path: Path) -> None:
        (tmp_path / "broken.json").write_text("{not json")
        for args in (["-c", "broken.json"], ["-c", "absent.json"]):
            proc = run_wrapper(args, cwd=tmp_path)
            assert (
                proc.returncode == 2
                and proc.stderr.startswith("synthcalib: error: ")
                and "Traceback" not in proc.stderr
            )

    # ---- opt-in hook and plain `pot`

    def test_hook_enable_disable_plain_pot(self, models_dir: Path, tmp_path: Path) -> None:
        site_dir = tmp_path / "site"
        site_dir.mkdir()
        (tmp_path / "work").mkdir()
        work = copy_models(models_dir, tmp_path / "work")
        cfg = write_config(work, "dq.json", engine_section())

        proc = run_wrapper(["status", "--site-dir", str(site_dir), "--json"], cwd=work)
        assert json.loads(proc.stdout)["enabled"] is False

        proc = run_wrapper(["enable", "--site-dir", str(site_dir)], cwd=work)
        assert proc.returncode == 0 and "enabled" in proc.stdout
        assert (site_dir / "synthcalib_pot_hook.pth").read_text().strip() == "import _synthcalib_pot_hook"
        assert json.loads(run_wrapper(["status", "--site-dir", str(site_dir), "--json"], cwd=work).stdout)["up_to_date"]

        # Lazy: a process that never imports POT gets the finder and nothing else.
        probe = (
            f"import site, sys, json; site.addsitedir({str(site_dir)!r}); "
            "print(json.dumps([type(f).__name__ if not isinstance(f, type) else f.__name__ for f in sys.meta_path][:1] "
            "+ [m for m in ('openvino', 'openvino_synthcalib', 'numpy') if m in sys.modules]))"
        )
        out = subprocess.run([sys.executable, "-c", probe], env=_env(), capture_output=True, text=True, check=True)
        assert json.loads(out.stdout) == ["SynthcalibPotFinder"]
        probe = (
            f"import site; site.addsitedir({str(site_dir)!r}); import openvino.tools.pot.app.run as r; "
            "print(getattr(r, '_synthcalib_patched', False))"
        )
        out = subprocess.run([sys.executable, "-c", probe], env=_env(), capture_output=True, text=True, check=True)
        assert out.stdout.strip().endswith("True")

        proc = run_plain_pot(["-c", cfg.name, "--output-dir", "out", "--direct-dump"], work, site_dir)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "FakeQuantize" in (work / "out" / "optimized" / "tiny.xml").read_text()

        bad = write_config(work, "bad.json", {**engine_section(), "unknown_key": 1})
        proc = run_plain_pot(["-c", bad.name, "--output-dir", "out2"], work, site_dir)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("synthcalib: error: engine.unknown_key")

        proc = run_wrapper(["disable", "--site-dir", str(site_dir)], cwd=work)
        assert proc.returncode == 0 and not any(site_dir.iterdir())
        proc = run_plain_pot(["-c", cfg.name, "--output-dir", "out3"], work, site_dir)
        assert proc.returncode != 0 and "Unsupported engine type" in proc.stderr


TestPot.__test__ = IN_LEGACY  # type: ignore[attr-defined]
