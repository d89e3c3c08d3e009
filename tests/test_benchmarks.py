import csv
import subprocess
import sys
from pathlib import Path

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
