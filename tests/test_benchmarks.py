import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def run_benchmark(script: str, *args) -> None:
    """Run ``benchmarks/<script>`` with ``args``; it must exit 0."""
    cmd = [sys.executable, str(REPO / "benchmarks" / script), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_calibration_sources_quick_on_tiny_inputs(assets, tmp_path):
    out = tmp_path / "results"
    args = [
        "--quick",
        "--models",
        assets["classifier"],
        "--test",
        assets["images"],
        "--preset",
        "unit",
        "--sources",
        f"tiny=generator:{assets['generator']}",
        "gaussian",
        "fractal",
        f"missing=array:{tmp_path}/{{model}}.npy",  # a per-model array never made: skipped, not fatal
        "--out",
        out,
    ]
    run_benchmark("calibration_sources.py", *args)
    rows = list(csv.DictReader(open(out / "calibration_sources.csv")))
    assert {r["source"] for r in rows} == {"tiny", "gaussian", "fractal"}
    assert {r["recipe"] for r in rows} == {"nncf", "minmax", "histogram", "mixed_minmax", "mixed_histogram", "adaptive"}
    assert all(0 <= float(r["flip_rate"]) <= 100 for r in rows)
    for r in rows:  # the adaptive row is the chosen candidate's model: the same flips
        if r["recipe"] == "adaptive":
            twin = next(c for c in rows if c["source"] == r["source"] and c["recipe"] == r["chosen"])
            assert twin["flip_rate"] == r["flip_rate"] and twin["synthetic_flip_rate"] == r["synthetic_flip_rate"]
    md = (out / "calibration_sources.md").read_text()
    assert "| cls |" in md and "--quick" in md and "adaptive choice" in md
    assert (out / "calibration_sources.png").exists()
    # a rerun resumes: nothing new to do, same rows
    run_benchmark("calibration_sources.py", *args)
    assert len(list(csv.DictReader(open(out / "calibration_sources.csv")))) == len(rows)


def run_study_twice(name: str, assets, out: Path, *extra) -> tuple[list[dict[str, str]], str]:
    """Run a study of the recipe on the tiny student and classifier, then again: the second run
    resumes with nothing left to do. Its CSV rows and Markdown report."""
    args = ["--models", assets["classifier"], "--test", assets["images"], "--preset", "unit", "--generator",
            assets["generator"], "--samples", "16", *extra, "--out", out]  # fmt: skip
    run_benchmark(f"{name}.py", *args)
    rows = list(csv.DictReader(open(out / f"{name}.csv")))
    assert all(0 <= float(r["real_flip"]) <= 100 and float(r["kl"]) >= 0 for r in rows)
    run_benchmark(f"{name}.py", *args)
    assert len(list(csv.DictReader(open(out / f"{name}.csv")))) == len(rows)
    md = (out / f"{name}.md").read_text()
    assert f"{name}.py --models" in md
    return rows, md


def test_recipe_candidates_on_tiny_inputs(assets, tmp_path):
    rows, md = run_study_twice("recipe_candidates", assets, tmp_path / "results", "--score-samples", "48",
                               "--candidates", "nncf", "mixed_minmax", "mixed_histogram")  # fmt: skip
    assert [r["candidate"] for r in rows] == ["nncf", "mixed_minmax", "mixed_histogram"]
    assert "smallest KL, then flips" in md


def test_score_stream_on_tiny_inputs(assets, tmp_path):
    rows, md = run_study_twice("score_stream", assets, tmp_path / "results", "--score-samples", "32", "--seeds", "0",
                               "--latent-scales", "1", "2")  # fmt: skip
    assert len(rows) == 6 and {r["latent_scale"] for r in rows} == {"1", "2"}
    assert "| 2 | " in md


def test_stream_throughput_quick_on_tiny_inputs(assets, tmp_path):
    """Both generators' throughput points, and stream / folder / memory feeding of nncf.quantize."""
    out = tmp_path / "results"
    run_benchmark(
        "stream_throughput.py",
        "--quick",
        "--generators",
        assets["generator"],
        assets["generator_onehot"],
        "--model",
        assets["classifier"],
        "--preset",
        "unit",
        "--folder",
        "generated",
        "--out",
        out,
    )
    rows = list(csv.DictReader(open(out / "stream_throughput.csv")))
    assert {r["generator"] for r in rows} == {"gen", "gen_onehot"} and all(float(r["images_per_s"]) > 0 for r in rows)
    md = (out / "stream_throughput.md").read_text()
    assert "folder on disk" in md and "synthetic stream" in md and "--quick" in md


def _benchmark_module(name: str):
    """A module of benchmarks/ (benchmarks/ on sys.path, as the scripts have it)."""
    import importlib

    bench = str(REPO / "benchmarks")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    return importlib.import_module(name)


def _imagenet():
    return _benchmark_module("imagenet")


def test_no_benchmark_script_imports_another():
    """What the scripts share lives in the shared modules; a script runs another one as a script."""
    import ast

    shared = {"commands", "lite0_activations", "paths", "rows", "source_specs", "study", "testset", "zoo"}
    scripts = {p.stem for p in (REPO / "benchmarks").glob("*.py")} - shared
    for path in (REPO / "benchmarks").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            assert not {n.split(".")[0] for n in names} & scripts, f"{path.name} imports a script: {names}"
        if path.stem in shared:
            assert "__main__" not in path.read_text(), f"{path.name} is a shared module, not a script"


def test_drop_rows_keeps_the_others(tmp_path):
    """``imagenet.py --replace`` measures chosen rows again: the others stay, header and order kept."""
    rows = _benchmark_module("rows")
    path = tmp_path / "t.csv"
    with rows.appending(path, ["a", "b"]) as (_, writer):
        writer.writerows([{"a": "1", "b": "x"}, {"a": "2", "b": "y"}, {"a": "3", "b": "x"}])
    assert rows.drop_rows(path, ["a", "b"], lambda r: r["b"] == "x") == 2
    assert path.read_text().splitlines() == ["a,b", "2,y"]
    assert rows.drop_rows(tmp_path / "none.csv", ["a"], lambda r: True) == 0


def test_shared_test_set_loader_and_commands(assets, tmp_path, monkeypatch):
    testset, commands = _benchmark_module("testset"), _benchmark_module("commands")
    x, labels = testset.load_test(assets["images"])
    sub, sub_labels = testset.load_test(assets["images"], limit=3, preset="unit")
    assert x.dtype == sub.dtype == np.float32 and x.ndim == 4 and len(labels) == len(x) > 3
    assert len(sub) == len(sub_labels) == 3 and sub_labels[0] == labels[0] and sub_labels[-1] == labels[-1]
    assert [len(b) for b in testset.batched(x, 3)] == [3] * (len(x) // 3) + ([len(x) % 3] if len(x) % 3 else [])
    monkeypatch.setattr(sys, "argv", ["x.py", "--models", "a b"])
    commands.record(tmp_path, "table", "other", python=".venv-pot/bin/python")
    commands.record(tmp_path, "table")
    assert commands.recorded(tmp_path, "table") == [
        ".venv-pot/bin/python benchmarks/other.py --models 'a b'",
        "python benchmarks/table.py --models 'a b'",
    ]
    assert commands.recorded(tmp_path, "none") == []


def test_imagenet_views_frame_as_the_product_crops(tmp_path):
    """Centre view = ``images:...?crop=center``'s framing; mirror and four corners of the same resized image."""
    import numpy as np
    from PIL import Image

    from openvino_synthcalib.imagefolder import CenterCrop, load_image

    im = _benchmark_module("testset")
    rng = np.random.default_rng(0)
    path = tmp_path / "x.png"
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(path)
    x = im.resized(path, 28)
    assert x.shape == (32, 40, 3)  # short side floor(28 / 0.875) = 32
    views = im.crop_views(x, 28)
    assert views.shape == (len(im.VIEWS), 3, 28, 28) and views.dtype == np.uint8
    np.testing.assert_allclose(views[0] / 255.0, load_image(path, CenterCrop((28, 28))), atol=1e-6)
    assert (views[1] == views[0][:, :, ::-1]).all()
    chw = x.transpose(2, 0, 1)
    assert (views[2] == chw[:, :28, :28]).all() and (views[5] == chw[:, -28:, -28:]).all()
    assert (views[3] == chw[:, :28, -28:]).all() and (views[4] == chw[:, -28:, :28]).all()


def test_imagenet_report_from_a_tiny_csv(tmp_path):
    """--report-only rebuilds the Markdown (tables, ratios, curve) and the curve plot from the CSV alone."""
    im = _imagenet()
    base = {"model": "lite0", "samples": "300", "views": "centre+mirror", "images": "10", "fp32_top1": "90.0",
            "int8_top1_views": "", "step": "", "train_minutes": "", "spec": "", "run_id": "r1"}  # fmt: skip

    def row(source, recipe, seed, flips, wall, nncf_s, generator="", chosen=None, **extra):
        return {**base, "source": source, "recipe": recipe, "seed": seed, "generator": generator,
                "flip_rate": flips, "flip_rate_centre": flips, "int8_top1": "89.0", "chosen": chosen or recipe,
                "quantize_s": wall, "nncf_quantize_s": nncf_s, **extra}  # fmt: skip

    rows = [
        row("real", "nncf", 0, "2.0", "20", "18"),
        row("real", "nncf", 1, "4.0", "20", "18"),
        row("generator", "adaptive", 0, "6.0", "120", "20", "imagenet", "mixed_minmax"),
        row("generator", "nncf", 0, "5.0", "20", "20", "imagenet"),
        row("noise", "adaptive", 0, "30.0", "100", "20"),
        row("checkpoint", "nncf", 0, "9.0", "20", "18", "run/checkpoint-0000050", step="50", train_minutes="2.5"),
        row("checkpoint", "nncf", 0, "5.0", "20", "18", "run/checkpoint-0000100", step="100", train_minutes="5.0"),
    ]
    with open(tmp_path / "imagenet.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=im.FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "imagenet.commands.txt").write_text("python benchmarks/imagenet.py --seeds 0\n")
    im.main(["--report-only", "--out", str(tmp_path)])
    md = (tmp_path / "imagenet.md").read_text()
    assert "python benchmarks/imagenet.py --seeds 0" in md
    assert "the classifier the ImageNet generator was trained through" in md and "Tiny Darknet" in md
    # the summary: generator adaptive 6.0 and nncf 5.0 over real 3.0; adaptive over nncf on seed 0
    assert "| EfficientNet-Lite0 (`lite0`) | imagenet | 3.00 | 6.00 | 2.00 | 5.00 | 1.67 | 1.20 |" in md
    assert "| real | nncf | 2 | 3.00 ± 1.41 |" in md
    assert "| generator (imagenet) | adaptive | 1 | 6.00 | 6.00 | 89.00 | 2.00 | x6.0 | x6.0 | mixed_minmax 1 |" in md
    assert "| run/checkpoint-0000100 | 100 | 5.0 | 5.0 | 1.67 |" in md
    assert (tmp_path / "imagenet.png").stat().st_size > 0


def test_imagenet_generator_quality_measures():
    """The generator-quality measures on hand-made items: consistency counts, within-class and
    between-class distances (identical items give 0), random pairs of different classes only."""
    gq = _benchmark_module("imagenet_generator_quality")
    labels = np.array([0, 0, 1, 1, 2, 2])
    logits = np.full((6, 4), -5.0, np.float32)
    logits[[0, 1, 2, 3, 4, 5], [0, 3, 1, 1, 3, 3]] = 5.0  # class 0 once, class 1 twice, class 2 never
    logits[4, 2] = 4.0  # ...but in its top-5
    c = gq.consistency(logits, labels, 4)
    assert c["top1"] == 50.0 and c["top5"] == 100.0 and c["classes_recognised"] == round(100 * 2 / 3, 2)
    assert c["distinct_predicted"] == 3 and c["confident_share"] == 100.0 and 0.5 < c["mean_max_prob"] < 1
    rng = np.random.default_rng(0)
    feats = rng.uniform(0, 1, (6, 8))
    feats[1] = 3 * feats[0]  # class 0: the same direction
    images = rng.uniform(-1, 1, (6, 3, 4, 4)).astype(np.float16)
    images[3] = images[2]  # class 1: identical images
    within_f, within_p = gq.within_class_features(feats, labels), gq.within_class_pixels(images, labels)
    assert abs(within_f[0]) < 1e-9 and within_f[1] > 0.01 and within_p[1] == 0 and within_p[0] > 0.1
    pairs = gq.random_pairs(labels, 50, np.random.default_rng(1))
    assert pairs.shape == (50, 2) and (labels[pairs[:, 0]] != labels[pairs[:, 1]]).all()
    assert gq.pair_features(feats, np.array([[0, 1]])) < 1e-9 and gq.pair_pixels(images, np.array([[2, 3]])) == 0
    assert abs(gq.all_pairs_features(feats[:2])) < 1e-9
    with pytest.raises(ValueError):
        gq.by_class(np.array([0, 0, 1]))


def test_flip_prediction_quick_on_tiny_inputs(assets, tmp_path):
    """Rows for every candidate of the adaptive recipe and its choice, the check of each as the
    product runs it (the same statistics as ``synthcalib.quantize``'s report), the report, the
    relation in the form ``quality.predict`` reads; a rerun resumes with nothing to do."""
    import json
    import shutil

    import openvino_synthcalib as synthcalib
    from openvino_synthcalib import quality

    out, tiny = tmp_path / "results", f"generator:{assets['generator']}"
    models = []
    for name in ("cls_a", "cls_b", "cls_c"):  # three classifiers: the fit leaves one model out
        for suffix in (".xml", ".bin"):
            shutil.copy(Path(assets["classifier"]).with_suffix(suffix), tmp_path / f"{name}{suffix}")
        models.append(tmp_path / f"{name}.xml")
    args = ["--quick", "--cifar-models", *models, "--test", assets["images"], "--preset", "unit",
            "--cifar-sources", f"tiny={tiny}", "gaussian", "--check-source", f"cifar10={tiny}", "--out", out]  # fmt: skip
    run_benchmark("flip_prediction.py", *args)
    rows = list(csv.DictReader(open(out / "flip_prediction.csv")))
    assert len(rows) == 3 * 2 * 4 and {r["recipe"] for r in rows} == {
        "nncf",
        "mixed_minmax",
        "mixed_histogram",
        "adaptive",
    }
    assert all(
        0 <= float(r["real_flip_rate"]) <= 1 and r["check_items"] == "100" and r["check_source"] == tiny for r in rows
    )
    for r in rows:  # the adaptive row is its chosen candidate's model
        if r["recipe"] == "adaptive":
            twin = next(c for c in rows if c["model"] == r["model"] and c["source"] == r["source"]
                        and c["recipe"] == r["same_model_as"])  # fmt: skip
            assert (twin["real_flips"], twin["check_flips"]) == (r["real_flips"], r["check_flips"])
    report = synthcalib.quantize(str(models[0]), tiny, num_samples=32, seed=0, transform="unit", recipe="adaptive",
                                 check={"source": tiny, "samples": 100})  # fmt: skip
    row = next(r for r in rows if r["model"] == "cls_a" and r["source"] == "tiny" and r["recipe"] == "adaptive")
    assert report["recipe"]["chosen"] == row["same_model_as"] and report["check"]["flips"] == int(row["check_flips"])
    assert abs(report["check"]["mean_kl"] - float(row["check_mean_kl"])) <= 1e-4 * report["check"]["mean_kl"] + 1e-12
    relation = json.loads((out / "flip_relation.json").read_text())
    assert relation["measured_by"] == "benchmarks/flip_prediction.py" and "--quick" in relation["command"]
    assert relation["statistic"] in ("flip_rate", "confident_flip_rate", "mean_kl") and relation["points"] == 18
    assert quality.predict({relation["statistic"]: 0.1}, relation)["poor_above"] == relation["poor_above"]
    md = (out / "flip_prediction.md").read_text()
    assert "leave-one-model-out" in md and "| cifar10 | cls_a | tiny | " in md and "--quick" in md
    assert (out / "flip_prediction.png").stat().st_size > 0
    run_benchmark("flip_prediction.py", *args)  # resumes: nothing new
    assert len(list(csv.DictReader(open(out / "flip_prediction.csv")))) == len(rows)


#: Who writes each report in benchmarks/results: every figure there comes from one of these scripts.
REPORT_SCRIPTS = {
    "backends": "backends.py",
    "calibration_sources": "calibration_sources.py",
    "flip_prediction": "flip_prediction.py",
    "accuracy_control_imagenet": "accuracy_control_imagenet.py",
    "generator_quality": "generator_quality.sh",
    "imagenet": "imagenet.py",
    "imagenet_generator_quality": "imagenet_generator_quality.py",
    "mct_peer": "mct_peer.py",
    "pot_hook_startup": "pot_hook_startup.py",
    "pot_zoo": "pot_zoo.py",
    "range_swap": "range_swap.py",
    "recipe_candidates": "recipe_candidates.py",
    "recipe_cost": "recipe_cost.py",
    "recipe_imagenet": "recipe_imagenet.py",
    "activation_peaks": "activation_peaks.py",
    "activation_tails": "activation_tails.py",
    "recipe_leads": "recipe_leads.py",
    "score_stream": "score_stream.py",
    "stream_throughput": "stream_throughput.py",
    "zoo_extra": "train_zoo.py",
}


def test_every_report_is_written_by_a_committed_script():
    """No Markdown report in benchmarks/results is typed by hand: each has the script that writes it."""
    results = REPO / "benchmarks" / "results"
    for md in results.glob("*.md"):
        assert md.stem in REPORT_SCRIPTS, f"{md.name}: no script writes it (add one, or remove the figures)"
        assert (REPO / "benchmarks" / REPORT_SCRIPTS[md.stem]).exists(), REPORT_SCRIPTS[md.stem]


@pytest.mark.parametrize(
    "name",
    [
        "recipe_candidates",
        "score_stream",
        "recipe_cost",
        "imagenet",
        "imagenet_generator_quality",
        "mct_peer",
        "accuracy_control_imagenet",
        "flip_prediction",
        "range_swap",
        "recipe_imagenet",
        "recipe_leads",
        "activation_peaks",
        "activation_tails",
        # these group models by what the shared zoo holds, or read its models
        pytest.param("calibration_sources", marks=pytest.mark.shared),
        pytest.param("backends", marks=pytest.mark.shared),
    ],
)
def test_committed_report_rebuilds_from_its_committed_data(name, tmp_path):
    """``--report-only`` on a copy of benchmarks/results gives the committed report byte for byte:
    its figures come from the committed CSV / JSON and the script, nothing added by hand."""
    import importlib.util
    import shutil

    if name == "backends" and importlib.util.find_spec("onnx2torch") is None:
        pytest.skip("backends.py counts biases through onnx2torch (pip install --no-deps onnx2torch==1.5.15)")
    results = REPO / "benchmarks" / "results"
    out = tmp_path / "results"
    shutil.copytree(results, out)
    run_benchmark(f"{name}.py", "--report-only", "--out", out)
    assert (out / f"{name}.md").read_text() == (results / f"{name}.md").read_text(), (
        f"benchmarks/results/{name}.md differs from what `python benchmarks/{name}.py --report-only` writes"
    )


@pytest.mark.parametrize(
    "folder, name",
    [
        ("imagenet_training_grid", "imagenet"),
        ("imagenet_training_grid", "imagenet_generator_quality"),
        ("imagenet_subset_size", "imagenet"),
    ],
)
def test_study_folder_reports_rebuild_from_their_data(folder, name, tmp_path):
    """The study folders (the training grid, the subset-size study) hold reports of the same scripts
    (``--out`` that folder): they too are their committed data rendered, nothing typed by hand."""
    import shutil

    grid = REPO / "benchmarks" / "results" / folder
    out = tmp_path / "grid"
    shutil.copytree(grid, out)
    run_benchmark(f"{name}.py", "--report-only", "--out", out)
    assert (out / f"{name}.md").read_text() == (grid / f"{name}.md").read_text()


def test_mct_peer_census_on_a_tiny_zoo(tmp_path):
    """The census counts each ONNX op (a BatchNormalization node included) and the report shows it;
    --report-only rebuilds the same report from the JSON alone."""
    import json

    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    w = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")
    bn = [numpy_helper.from_array(np.ones(2, np.float32), n) for n in ("g", "b", "m", "v")]
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"]),
            helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"]),
            helper.make_node("Relu", ["n"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
        [w, *bn],
    )
    onnx.save(helper.make_model(graph), zoo / "tiny.onnx")
    out = tmp_path / "results"
    run_benchmark("mct_peer.py", "--models", "tiny", "--zoo", zoo, "--out", out)
    data = json.loads((out / "mct_peer.json").read_text())
    assert data["models"] == {"tiny": {"BatchNormalization": 1, "Conv": 1, "Relu": 1}}
    md = (out / "mct_peer.md").read_text()
    assert "| tiny | 3 | 1 | 1 | 0 | BatchNormalization 1, Conv 1, Relu 1 |" in md
    assert "0 of the 1 models have no normalisation op left" in md
    assert "python benchmarks/mct_peer.py --models tiny" in md
    run_benchmark("mct_peer.py", "--report-only", "--out", out)
    assert (out / "mct_peer.md").read_text() == md


def test_generator_quality_report_is_its_json_rendered():
    """``generator_quality.md`` is the header ``generator_quality.sh`` writes and the evaluation's
    table of the committed ``generator_quality.json``: no figure besides those."""
    import json

    pytest.importorskip("torch")
    from openvino_synthcalib.train_generator.evaluation import markdown_table

    results = REPO / "benchmarks" / "results"
    data = json.loads((results / "generator_quality.json").read_text())
    header = (
        "# Generator quality: teacher vs shipped student (one evaluation run)\n\n"
        f"Command: `bash benchmarks/generator_quality.sh` (NUM={data['num_generated']})\n\n"
    )
    table = markdown_table(data)
    assert (results / "generator_quality.md").read_text() == header + table + ("" if table.endswith("\n") else "\n")


def test_accuracy_control_imagenet_report_from_a_tiny_csv(tmp_path):
    """--report-only rebuilds the Markdown from the CSV and the meta record: ratios to the plain row of
    the same run, accuracy control's own figures, the layers kept in FP32, a refused configuration, and
    a model that did not qualify."""
    import json

    ac = _benchmark_module("accuracy_control_imagenet")
    base = {"model": "darknet", "seed": "0", "samples": "300", "views": "centre+mirror", "images": "250",
            "fp32_top1": "66.4", "run_id": "r1", "plain_s": "40.0"}  # fmt: skip

    def row(config, flips, wall, kept="", max_drop="", **extra):
        return {**base, "config": config, "max_drop": max_drop, "validation_samples": "250" if max_drop else "",
                "max_iterations": "20" if max_drop else "", "flip_rate": flips, "flip_rate_centre": flips,
                "int8_top1": "60.0", "int8_top1_views": "56.0", "wall_s": wall, "chosen": "mixed_histogram",
                "kept_fp32": str(len(kept.split(";"))) if kept else "0", "kept_names": kept, "quantized_ops": "17",
                **extra}  # fmt: skip

    control = {"ac_seconds": "80", "ac_iterations": "3", "ac_fp32_metric": "1.0", "ac_int8_metric": "0.544",
               "ac_final_metric": "0.8", "ac_reached": "False"}  # fmt: skip
    rows = [
        row("plain", "20.0", "40.0"),
        row("ac-synthetic", "10.0", "120.0", "/0/Conv;/8/Conv", "0.01", **control),
        row("ignore-first-last", "15.0", "44.0", "/0/Conv;/49/Conv", synthetic_kl="0.25", score_items="256"),
        {
            **base,
            "config": "per-channel",
            "max_drop": "",
            "validation_samples": "",
            "max_iterations": "",
            "note": "NNCF refused it on every target device (ANY, CPU): ValueError: incompatible",
        },  # fmt: skip
    ]
    with open(tmp_path / f"{ac.NAME}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ac.FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    meta = {"models": {"darknet": {"file": "../shared/models/imagenet/darknet_tiny.onnx"},
                       "mobilenet_v1": {"qualification": {"plain_flip_rate": 7.0, "threshold": 10.0,
                                                          "qualifies": False}}}}  # fmt: skip
    (tmp_path / f"{ac.NAME}.meta.json").write_text(json.dumps(meta))
    (tmp_path / f"{ac.NAME}.commands.txt").write_text("python benchmarks/accuracy_control_imagenet.py\n")
    ac.main(["--report-only", "--out", str(tmp_path)])
    md = (tmp_path / f"{ac.NAME}.md").read_text()
    assert "    python benchmarks/accuracy_control_imagenet.py\n" in md
    assert "| plain | – | – | 20.00 | 20.00 | 1.00 | 60.0 | 56.0 | 1 | – | 0 of 17 | – | – |" in md
    assert "| ac-synthetic | 0.01 | 250 | 10.00 | 10.00 | 0.50 | 60.0 | 56.0 | x3.00 | – | 2 of 17 |" in md
    assert "1.000 -> 0.544 -> 0.800 (not reached) | 3, 80 s |" in md
    assert "| ignore-first-last | – | – | 15.00 | 15.00 | 0.75 | 60.0 | 56.0 | x1.10 | 250.0 (256) | 2 of 17 |" in md
    assert "- per-channel: NNCF refused it on every target device (ANY, CPU)" in md
    assert "- ac-synthetic (max drop 0.01): `/0/Conv`, `/8/Conv`" in md
    assert "**mobilenet_v1 does not qualify**: its plain INT8 model flips 7.0% of the views, under the 10% of" in md
    assert "iterations, at most 20; its seconds" in md


@pytest.mark.shared
def test_accuracy_control_imagenet_split_is_disjoint():
    """The measured images and the real validation images of accuracy control never overlap."""
    ac = _benchmark_module("accuracy_control_imagenet")
    for limit in (None, 32):
        measured, labels, pool = ac.split(limit)
        assert len(measured) == len(labels) and not set(measured) & set(pool)
        assert len(measured) == len(pool) == (limit or 250)


def test_range_swap_hybrids_on_tiny_inputs(assets):
    """range_swap.py's hybrid: a model with every quantizer range of another calibration of the same
    model gives that model's outputs exactly; with none swapped, its own (fast bias correction off:
    it changes biases, which the swap does not copy; the study's `all` row checks that it did not)."""
    import openvino as ov

    import openvino_synthcalib as synthcalib

    rs = _benchmark_module("range_swap")
    core = ov.Core()
    xml = {}
    for name, spec in (("a", f"generator:{assets['generator']}"), ("b", "noise:gaussian")):
        report = synthcalib.quantize(assets["classifier"], spec, num_samples=16, seed=0, transform="unit",
                                     recipe="nncf", check={"samples": 0},
                                     nncf_options={"fast_bias_correction": False})  # fmt: skip
        xml[name] = assets["root"] / f"rs_{name}.xml"
        ov.save_model(report["quantized_model"], str(xml[name]), compress_to_fp16=False)
    qs = {k: rs.quantizers(core.read_model(str(x))) for k, x in xml.items()}
    names = [q["name"] for q in qs["a"]]
    assert names == [q["name"] for q in qs["b"]] and any(not q["weight"] for q in qs["a"])
    shape = [d.get_length() for d in list(core.read_model(str(xml["a"])).inputs[0].partial_shape)[1:]]
    x = np.random.default_rng(0).random((64, *shape), dtype=np.float32)

    def outputs(model):
        return rs.compile_f32(model)(x)[0]

    assert np.array_equal(outputs(rs.hybrid(xml["a"], qs["b"], names)), outputs(str(xml["b"])))
    assert np.array_equal(outputs(rs.hybrid(xml["a"], qs["b"], [])), outputs(str(xml["a"])))
    stats = rs.range_stats(qs["a"], qs["b"], names)
    assert 0 <= stats["share_narrower"] <= 100 and stats["min_width_ratio"] <= stats["max_width_ratio"]
