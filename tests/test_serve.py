"""``synthcalib serve``: every endpoint through FastAPI's test client, the real server on a loopback
port, and the page end to end in headless Chromium (Debian's package, driven by Playwright)."""

import base64
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import urlopen

import pytest
from conftest import SHARED
from tiny_models import make_classifier, make_generator

try:
    import fastapi  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("the [web] extra is not installed: pip install -e '.[web]'", allow_module_level=True)

from fastapi.testclient import TestClient

from openvino_synthcalib import models
from openvino_synthcalib.cli import main
from openvino_synthcalib.errors import SynthcalibError
from openvino_synthcalib.serve import catalog as catalog_module
from openvino_synthcalib.serve import jobs as jobs_module
from openvino_synthcalib.serve.app import create_app
from openvino_synthcalib.serve.catalog import Catalog, display_names, shipped_generators, shipped_models
from openvino_synthcalib.serve.params import MAX_PREVIEW_IMAGES, MAX_PREVIEW_PIXELS, preview_defaults, preview_size
from openvino_synthcalib.serve.runner import allowed_hosts, background_server, bind

JOB_TIMEOUT = 180
# What the declaring classifier states (OpenVINO Model API rt_info: pixels, mean/scale 127.5, RGB): [-1, 1].
DECLARED_ORIGIN = "the model's rt_info model_info"


def make_declaring_classifier(path, base):
    """``base`` (a tiny classifier) stating its normalisation as OpenVINO's Model API does."""
    import openvino as ov

    model = ov.Core().read_model(base)
    model.set_rt_info("127.5 127.5 127.5", ["model_info", "mean_values"])
    model.set_rt_info("127.5", ["model_info", "scale_values"])
    model.set_rt_info("True", ["model_info", "reverse_input_channels"])
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


@pytest.fixture(scope="module")
def web_assets(assets):
    root = assets["root"]
    return {
        **assets,
        "generator16": make_generator(root / "gen16.xml", num_classes=16, class_names=None),
        "classifier3": make_classifier(root / "cls3.xml", num_classes=3),
        "classifier_declared": make_declaring_classifier(root / "cls_declared.xml", assets["classifier"]),
    }


@pytest.fixture(scope="module")
def catalog(web_assets):
    a = web_assets
    # m1: fits g1, says nothing of its preprocessing; m2: 3 classes (mismatch); m3: not a classifier;
    # m4: fits g1 and declares its preprocessing
    return Catalog.load(
        [a["generator"], a["generator16"]],
        [a["classifier"], a["classifier3"], a["generator"], a["classifier_declared"]],
        shipped=False,
    )


@pytest.fixture
def app(catalog, tmp_path, monkeypatch):
    monkeypatch.setattr(catalog_module, "CARD_MEASURE_SECONDS", 0.1)
    return create_app(catalog, workdir=tmp_path / "work", held_out=40, timing_seconds=0.05)


@pytest.fixture
def client(app):
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def generated_files(argv, out):
    """What ``synthcalib generate`` writes, as {relative path: bytes}."""
    assert main([*map(str, argv), "--out", str(out)]) == 0
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.png"))}


def zip_files(data):
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def assert_one_line_error(response, status):
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert message and "\n" not in message and "Traceback" not in message
    return message


def wait_for_job(client, jid, timeout=JOB_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{jid}").json()
        if job["state"] != "running":
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {jid} still running after {timeout} s: {job}")


# ---- page, config, card ---------------------------------------------------------------------------


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"' in page.text and 'href="/static/style.css"' in page.text
    assert client.head("/").status_code == 200
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'self': no inline code
    assert page.headers["x-content-type-options"] == "nosniff"


def test_config_lists_ids_not_paths(client, web_assets):
    config = client.get("/api/config").json()
    assert [g["id"] for g in config["generators"]] == ["g1", "g2"]
    assert [m["id"] for m in config["models"]] == ["m1", "m2", "m3", "m4"]
    assert [m["classes"] for m in config["models"]] == [4, 3, None, 4]
    g1 = config["generators"][0]
    assert g1["class_names"] == ["red", "green", "blue", "gray"] and g1["image_size"] == [8, 8]
    # Lists name files, never by absolute path (the test assets live outside the working folder).
    assert [g["label"] for g in config["generators"]] == ["gen.xml", "gen16.xml"]
    assert [m["label"] for m in config["models"]] == ["cls.xml", "cls3.xml", "gen.xml", "cls_declared.xml"]
    assert str(web_assets["root"]) not in json.dumps([config["models"], [g["label"] for g in config["generators"]]])
    # No preset is a default: the page takes it from the model, or the user chooses one.
    assert "preset" not in config["defaults"] and "none" not in config["presets"]
    assert {"cifar10", "imagenet", "inception", "unit"} <= set(config["presets"])
    assert config["preset_values"]["inception"]["text"] == "[-1, 1]"
    assert config["models"][0]["preprocessing"] is None  # a tiny classifier says nothing of its inputs
    declared = config["models"][3]["preprocessing"]
    assert declared["origin"] == DECLARED_ORIGIN and declared["text"] == "[-1, 1]"
    assert declared["channel_order"] == "RGB" and declared["input_range"] == [0.0, 255.0]
    # Each generator brings the preview that fits its classes under the caps.
    assert g1["preview"] == {"count": 10, "classes": ""}
    assert config["recipes"] == list(jobs_module.RECIPES)
    assert config["limits"]["max_per_class"] > 0 and config["job"] is None


def test_preview_defaults_fit_the_generator():
    assert preview_defaults(10, (32, 32), 10) == {"count": 10, "classes": ""}
    assert preview_defaults(200, (8, 8), 10) == {"count": 5, "classes": ""}  # 1000 images at most
    # ImageNet's 1000 classes at 128 px: not even one image of each fits, so ten classes spread over the list.
    spread = preview_defaults(1000, (128, 128), 10)
    assert spread == {"count": 10, "classes": "0,100,200,300,400,500,600,700,800,900"}
    for k, size in ((10, (32, 32)), (200, (8, 8)), (1000, (128, 128)), (1000, (64, 64)), (37, (224, 224))):
        d = preview_defaults(k, size, 10)
        n = len(d["classes"].split(",")) if d["classes"] else k
        preview_size(d["count"], n, size)  # fits: no error
        assert d["count"] * n <= MAX_PREVIEW_IMAGES and d["count"] * n * size[0] * size[1] <= MAX_PREVIEW_PIXELS
    with pytest.raises(SynthcalibError, match="even at 1 per class; choose at most 250 classes"):
        preview_size(1, 1000, (128, 128))
    with pytest.raises(SynthcalibError, match="ask for at most 1 per class"):
        preview_size(10, 1000, (8, 8))


def test_display_names_are_relative_or_bare(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    inside = tmp_path / "a" / "m.xml"
    assert display_names([inside, Path("a/m.xml")]) == ["a/m.xml", "a/m.xml"]
    outside = [Path("/x/one/model.onnx"), Path("/x/two/model.onnx"), Path("/x/other.onnx")]
    assert display_names(outside) == ["one/model.onnx", "two/model.onnx", "other.onnx"]


def test_card_has_metadata_size_and_measured_speed(client, web_assets):
    card = client.get("/api/generators/g1/card").json()
    assert card["z_dim"] == 8 and card["num_classes"] == 4 and card["image_size"] == [8, 8]
    assert card["output_range"] == [-1.0, 1.0] and card["label_input"] == "index"
    assert card["provenance"] == {"made_by": "tests/tiny_models.py"}
    model = models.read_model(web_assets["generator"])
    assert card["parameters"] == models.parameter_count(model) > 0
    assert card["file_bytes"] == models.file_size(web_assets["generator"])
    assert card["images_per_s"] > 0


def test_shipped_generators_and_models_are_found():
    # The shipped CIFAR-10 student and demo classifier (wherever the package keeps them).
    assert any(name == "cifar10" and "cifar10" in p.name for name, p in shipped_generators())
    assert any("classifier" in p.name for p in shipped_models())


def test_shipped_generator_by_name(tmp_path, monkeypatch):
    """`serve --generator imagenet`: the shipped generator by its name, once, with a preview (ten classes
    spread over the 1000, as `generate --classes` writes them) and a card."""
    monkeypatch.setattr(catalog_module, "CARD_MEASURE_SECONDS", 0.1)
    catalog = Catalog.load(["imagenet"], [], shipped=True)
    labels = [g.label for g in catalog.generators.values()]
    assert labels == ["imagenet (shipped)", "cifar10 (shipped)"]  # not listed twice
    app = create_app(catalog, workdir=tmp_path / "work")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        g1 = client.get("/api/config").json()["generators"][0]
        assert g1["spec"] == "generator:imagenet" and g1["num_classes"] == 1000
        grid = client.get("/api/generators/g1/preview").json()  # the generator's own defaults
        assert grid["images"] == 100 and [r["label"] for r in grid["rows"]] == list(range(0, 1000, 100))
        assert grid["command"].startswith(
            "synthcalib generate --source generator:imagenet --seed 0 -n 100 --classes 0,100"
        )
        card = client.get("/api/generators/g1/card")
        assert card.status_code == 200 and card.json()["num_classes"] == 1000
        every = client.get("/api/generators/g1/preview", params={"classes": ""})
        assert "choose at most 250 classes" in assert_one_line_error(every, 400)


# ---- preview and ZIP --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, generate_args",
    [
        ({}, ["--seed", 0, "-n", 40]),  # defaults: seed 0, 10 per class, every class
        ({"seed": 3, "count": 5}, ["--seed", 3, "-n", 20]),
        ({"seed": 7, "count": 3, "classes": "blue,red"}, ["--seed", 7, "-n", 6, "--classes", "blue,red"]),
        ({"seed": 1, "count": 2, "classes": "3,1"}, ["--seed", 1, "-n", 4, "--classes", "3,1"]),
    ],
    ids=["defaults", "seed3", "class-names", "class-indices"],
)
def test_zip_is_what_generate_writes(client, web_assets, tmp_path, query, generate_args):
    r = client.get("/api/generators/g1/samples.zip", params=query)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert "attachment" in r.headers["content-disposition"]
    expected = generated_files(
        ["generate", "--source", f"generator:{web_assets['generator']}", *generate_args], tmp_path
    )
    assert zip_files(r.content) == expected  # same names, same bytes, grid.png included
    # The grid JSON shows the same images, one row per class in class order.
    grid = client.get("/api/generators/g1/preview", params=query).json()
    shown = {item["path"]: base64.b64decode(item["png"]) for row in grid["rows"] for item in row["items"]}
    assert shown == {k: v for k, v in expected.items() if k != "grid.png"}
    labels = [row["label"] for row in grid["rows"]]
    assert labels == sorted(labels)
    count = query.get("count", 10)
    assert all(len(row["items"]) == count for row in grid["rows"])
    assert grid["command"].startswith("synthcalib generate --source generator:")


def test_zip_matches_generate_on_the_shipped_student(tmp_path):
    name, student = shipped_generators()[0]  # g1 of a catalog without --generator
    app = create_app(Catalog.load([], [], shipped=True), workdir=tmp_path / "work")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        r = client.get("/api/generators/g1/samples.zip", params={"seed": 3, "count": 3})
        preview = client.get("/api/generators/g1/preview", params={"seed": 3, "count": 3}).json()
    assert r.status_code == 200
    expected = generated_files(
        ["generate", "--source", f"generator:{student}", "--seed", 3, "-n", 30], tmp_path / "gen"
    )
    assert zip_files(r.content) == expected
    # The page names a shipped generator by its name, not by where the package is installed.
    assert f"--source generator:{name} " in preview["command"] and str(student.parent) not in preview["command"]


def test_concurrent_previews_are_correct_and_complete(app, catalog):
    queries = [{"seed": s, "count": 3 + s % 4, "classes": ["", "red,gray", "1,2,3"][s % 3]} for s in range(12)]
    with background_server(app) as url:

        def fetch(q):
            with urlopen(
                f"{url}api/generators/g1/preview?seed={q['seed']}&count={q['count']}&classes={q['classes']}"
            ) as r:
                return json.loads(r.read())

        sequential = [fetch(q) for q in queries]
        with ThreadPoolExecutor(len(queries)) as pool:
            concurrent = list(pool.map(fetch, queries * 2))
    for got, want in zip(concurrent, sequential * 2):
        assert got["rows"] == want["rows"]
        assert sum(len(r["items"]) for r in got["rows"]) == got["images"]


# ---- bad input: one line, 4xx --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, status, says",
    [
        ("/api/generators/g1/preview?seed=-1", 400, "seed: expected an integer"),
        ("/api/generators/g1/preview?seed=abc", 400, "seed: expected an integer"),
        ("/api/generators/g1/preview?seed=1.5", 400, "seed: expected an integer"),
        ("/api/generators/g1/preview?seed=99999999999999999999", 400, "seed: expected an integer"),
        ("/api/generators/g1/preview?count=0", 400, "count: expected an integer in 1..100"),
        ("/api/generators/g1/preview?count=101", 400, "count: expected an integer in 1..100"),
        ("/api/generators/g1/preview?count=1e3", 400, "count: expected an integer"),
        ("/api/generators/g2/preview?count=100", 400, "over the limit of 1000 per preview"),
        ("/api/generators/g1/samples.zip?count=100000", 400, "count: expected an integer"),
        ("/api/generators/g1/preview?classes=unicorn", 400, "unknown class name 'unicorn'"),
        ("/api/generators/g1/preview?classes=9", 400, "class 9 is out of range 0..3"),
        ("/api/generators/g1/preview?classes=red,red", 400, "expected distinct classes"),
        ("/api/generators/g1/preview?classes=-1", 400, "out of range"),
        ("/api/generators/g9/preview", 404, "unknown generator id 'g9'"),
        ("/api/generators/g9/card", 404, "unknown generator id"),
        ("/api/generators/..%2F..%2Fsetup.cfg/card", 404, "not found"),
        ("/api/jobs/j99", 404, "unknown job id 'j99'"),
        ("/api/jobs/j99/int8.zip", 404, "unknown job id"),
        ("/api/nothing", 404, "not found"),
        ("/static/nothing.js", 404, "not found"),
    ],
)
def test_bad_requests_get_4xx_and_one_line(client, path, status, says):
    assert says in assert_one_line_error(client.get(path), status)


def test_preview_pixel_cap():
    preview_size(10, 10, (64, 64))
    with pytest.raises(SynthcalibError, match="at most 6 per class"):
        preview_size(10, 10, (256, 256))


def _raw_get(url, path, host=None):
    """GET with the path sent exactly as written (no client-side normalisation)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest("GET", path, skip_host=host is not None, skip_accept_encoding=True)
    if host is not None:
        conn.putheader("Host", host)
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


TRAVERSALS = [
    "/static/../../cli.py",
    "/static/../app.py",
    "/static/%2e%2e/%2e%2e/cli.py",
    "/static/%2e%2e%2f%2e%2e%2fcli.py",
    "/static/..%2f..%2f..%2f..%2fsetup.cfg",
    "/static/....//....//setup.cfg",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/../../../../etc/passwd",
    "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/api/generators/g1/..%2f..%2f..%2fsetup.cfg",
    "/api/jobs/..%2f..%2f..%2fetc%2fpasswd/int8.zip",
    "/static/app.js%00.py",
]


def test_path_traversal_is_refused(app):
    with background_server(app) as url:
        for path in TRAVERSALS:
            status, body = _raw_get(url, path)
            assert 400 <= status < 500, (path, status)
            assert b"root:" not in body and b"import" not in body and b"[metadata]" not in body, path
        # DNS rebinding: a page from another site resolving to 127.0.0.1 sends its own Host.
        status, _ = _raw_get(url, "/api/config", host="evil.example")
        assert status == 400
        assert _raw_get(url, "/api/config", host=f"localhost:{urlsplit(url).port}")[0] == 200


@pytest.mark.parametrize(
    "body, status, says",
    [
        ({"generator": "g1", "model": "m2"}, 400, "has 4 classes but model"),
        ({"generator": "g1", "model": "m3"}, 400, "has no classifier output"),
        ({"generator": "g1", "model": "m9"}, 404, "unknown model id 'm9'"),
        ({"generator": "g7", "model": "m1"}, 404, "unknown generator id 'g7'"),
        ({"model": "m1"}, 400, "generator: expected an id string"),
        ({"generator": "g1", "model": "m1", "num_samples": 0}, 400, "num_samples: expected an integer in 1..5000"),
        ({"generator": "g1", "model": "m1", "num_samples": 10**6}, 400, "num_samples: expected an integer"),
        ({"generator": "g1", "model": "m1", "num_samples": "many"}, 400, "num_samples: expected an integer"),
        ({"generator": "g1", "model": "m1", "num_samples": True}, 400, "num_samples: expected an integer"),
        ({"generator": "g1", "model": "m1", "seed": -3}, 400, "seed: expected an integer"),
        ({"generator": "g1", "model": "m1", "preset": "nope"}, 400, "preset: expected one of cifar10"),
        ({"generator": "g1", "model": "m1", "recipe": "magic"}, 400, "recipe: expected one of adaptive, nncf"),
        ({"generator": "g1", "model": "m1", "output": "/etc/x.xml"}, 400, "unknown key(s) output"),
        ([1, 2], 400, "expected a JSON object"),
    ],
)
def test_bad_calibration_requests(client, body, status, says):
    assert says in assert_one_line_error(client.post("/api/calibrate", json=body), status)
    assert client.get("/api/config").json()["job"] is None  # nothing was started


def test_calibration_request_must_be_json(client):
    assert_one_line_error(
        client.post("/api/calibrate", content=b"{", headers={"content-type": "application/json"}), 400
    )
    form = client.post("/api/calibrate", data={"generator": "g1", "model": "m1"})
    assert "Content-Type application/json" in assert_one_line_error(form, 415)


# ---- calibration jobs ----------------------------------------------------------------------------------


def test_calibration_runs_to_a_report_with_progress(client, app, monkeypatch):
    real = jobs_module.run_calibration
    quantized, release = threading.Event(), threading.Event()

    def held(*args, **kwargs):  # hold the job after quantization, to look at it while it runs
        result = real(*args, **kwargs)
        quantized.set()
        assert release.wait(JOB_TIMEOUT)
        return result

    monkeypatch.setattr(jobs_module, "run_calibration", held)
    body = {"generator": "g1", "model": "m1", "preset": "unit", "num_samples": 24, "seed": 5, "recipe": "nncf"}
    started = client.post("/api/calibrate", json=body)
    assert started.status_code == 202 and started.json()["state"] == "running"
    jid = started.json()["id"]
    assert quantized.wait(JOB_TIMEOUT)
    running = client.get(f"/api/jobs/{jid}").json()
    assert running["state"] == "running" and running["phase"] == "calibrating"
    assert running["done"] == running["total"] == 24 and running["passes"][0] == 24
    assert "statistics collected from 24 items" in running["text"]
    # One job at a time: a second request gets a clear answer, not a second job.
    busy = assert_one_line_error(client.post("/api/calibrate", json=body), 409)
    assert f"already running (job {jid}" in busy
    assert "still running" in assert_one_line_error(client.get(f"/api/jobs/{jid}/int8.zip"), 409)
    assert client.get("/api/config").json()["job"]["id"] == jid
    release.set()

    job = wait_for_job(client, jid)
    assert job["state"] == "done", job
    r = job["report"]
    assert r["num_samples"] == 24 and r["seed"] == 5 and r["preset"] == "unit" and r["recipe"] == "nncf"
    assert r["preprocessing"]["origin"] == "preset unit" and r["preprocessing"]["text"] == "[0, 1]"
    assert r["samples_per_class"] == {"red": 6, "green": 6, "blue": 6, "gray": 6}
    assert all(n == 24 for n in r["passes"])
    assert r["held_out"] == 40 and r["held_out_seed"] == 5 + 2000  # the quality check's items (quality.py)
    assert r["check"]["items"] == 40 and r["quality"][0].startswith("check:")
    assert 0.0 <= r["agreement"] <= 1.0 and 0.0 <= r["int8_top1_vs_class"] <= 1.0
    assert r["fp32_images_per_s"] > 0 and r["int8_images_per_s"] > 0
    assert r["speedup"] == pytest.approx(r["int8_images_per_s"] / r["fp32_images_per_s"], rel=1e-2)
    assert r["fp32_bytes"] > 0 and r["int8_bytes"] > 0 and r["quantize_seconds"] > 0
    download = client.get(r["download"])
    assert download.status_code == 200
    files = zip_files(download.content)
    assert sorted(files) == sorted(r["files"]) == ["cls_int8.bin", "cls_int8.xml"]
    out = app.state.workdir / jid / "cls_int8.xml"
    assert files["cls_int8.xml"] == out.read_bytes() and sum(map(len, files.values())) == r["int8_bytes"]

    again = client.post("/api/calibrate", json={**body, "num_samples": 8})  # the next job may start now
    assert again.status_code == 202 and again.json()["id"] != jid
    assert wait_for_job(client, again.json()["id"])["state"] == "done"


@pytest.mark.parametrize(
    "model, preset, origin, text",
    [
        ("m1", None, None, None),  # the silent case: the model says nothing, the user chose nothing
        ("m1", "", None, None),  # the page's "no preset chosen"
        ("m1", "inception", "preset inception", "[-1, 1]"),
        ("m4", None, DECLARED_ORIGIN, "[-1, 1]"),  # the model states it: used, and said where from
        ("m4", "unit", "preset unit", "[0, 1]"),  # the user's preset wins over the model's statement
    ],
    ids=["unstated", "unstated-empty", "preset", "declared", "preset-over-declared"],
)
def test_calibration_preprocessing_is_stated_never_guessed(client, model, preset, origin, text):
    body = {"generator": "g1", "model": model, "num_samples": 8, "recipe": "nncf"}
    if preset is not None:
        body["preset"] = preset
    started = client.post("/api/calibrate", json=body)
    assert started.status_code == 202, started.text
    job = wait_for_job(client, started.json()["id"])
    if origin is None:  # the plan's one line, naming the page's field
        assert job["state"] == "failed" and job["report"] is None
        error = job["error"]
        assert error.startswith("preset: model 'cls.xml' does not say how its inputs are normalised"), error
        assert "inception ([-1, 1])" in error and "\n" not in error
        return
    assert job["state"] == "done", job
    used = job["report"]["preprocessing"]
    assert used["origin"] == origin and used["text"] == text
    assert job["report"]["preset"] == (preset or None)


def test_failed_calibration_shows_one_line(client, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("exploded\n  at some C++ frame\n  at another")

    monkeypatch.setattr(jobs_module, "run_calibration", broken)
    jid = client.post("/api/calibrate", json={"generator": "g1", "model": "m1", "num_samples": 8}).json()["id"]
    job = wait_for_job(client, jid)
    assert job["state"] == "failed" and job["error"] == "calibration failed: RuntimeError: exploded"
    assert "failed" in assert_one_line_error(client.get(f"/api/jobs/{jid}/int8.zip"), 404)


# ---- the command: loopback by default --------------------------------------------------------------------


def _non_loopback_address():
    """This machine's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_serve_command_listens_on_loopback_only(web_assets):
    cmd = [sys.executable, "-m", "openvino_synthcalib", "serve", "--port", "0"]
    cmd += ["--generator", str(web_assets["generator"])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("synthcalib serve: http://127.0.0.1:"), (line, proc.stderr.read() if proc.poll() else "")
        url = line.split()[2]
        with urlopen(url) as r:
            assert r.status == 200 and b"synthcalib" in r.read()
        with urlopen(f"{url}api/config") as r:
            labels = [g["label"] for g in json.loads(r.read())["generators"]]
        assert labels[0] == web_assets["generator"].name and any("shipped" in g for g in labels[1:])
        address = _non_loopback_address()
        if address is not None:
            with pytest.raises(OSError), socket.create_connection((address, urlsplit(url).port), timeout=5):
                pass
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) is not None


def test_serve_defaults_and_errors(capsys, tmp_path):
    from openvino_synthcalib.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.port == 8000
    with bind("127.0.0.1", 0) as sock:
        assert sock.getsockname()[0] == "127.0.0.1"
    assert allowed_hosts("0.0.0.0") == ["*"] and "evil.example" not in allowed_hosts("127.0.0.1")
    for argv, says in (
        (["serve", "--port", "70000"], "--port: expected 0..65535"),
        (["serve", "--generator", str(tmp_path / "missing.xml")], "missing.xml' does not exist"),
        (["serve", "--model", str(tmp_path / "missing.onnx")], "missing.onnx' does not exist"),
        (["serve", "--port", "x"], "expected a non-negative integer"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("synthcalib: error: ") and says in err and err.count("\n") == 1, err


def test_import_stays_light():
    code = "import sys, openvino_synthcalib, openvino_synthcalib.cli; print('fastapi' in sys.modules, 'uvicorn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# ---- end to end in a real browser --------------------------------------------------------------------------


def _browser_or_skip():
    """Playwright's sync API with the system Chromium. A missing one skips the test in a bare pytest
    run, and fails it under ``make test`` (``SYNTHCALIB_REQUIRE_BROWSER=1``) or in CI (``CI``)."""
    from openvino_synthcalib.serve.browser import chromium_path

    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[dev]')"
    if reason is None and chromium_path() is None:
        reason = "no Chromium found (apt-get install chromium); `make test` installs it (scripts/setup_browser.sh)"
    if reason is not None:
        if os.environ.get("SYNTHCALIB_REQUIRE_BROWSER") == "1" or os.environ.get("CI"):
            pytest.fail(f"the browser test cannot run: {reason}")
        pytest.skip(reason)
    return sync_playwright


def test_page_end_to_end_in_chromium_browser(tmp_path):
    sync_playwright = _browser_or_skip()
    from openvino_synthcalib.serve.browser import launch

    # No --generator, no --model: the shipped CIFAR-10 student (g1) and demo classifier (m1).
    student, classifier = shipped_generators()[0][1], shipped_models()[0]
    app = create_app(Catalog.load([], [], shipped=True), workdir=tmp_path / "work")
    problems = []
    with background_server(app) as url, sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(accept_downloads=True, viewport={"width": 1280, "height": 1000})
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.set_default_timeout(60_000)
        page.goto(url)

        def images():
            page.wait_for_function("() => !document.getElementById('grid').classList.contains('loading')")
            return page.eval_on_selector_all("#grid img", "els => els.map(e => e.src)")

        page.wait_for_function("() => document.querySelectorAll('#grid img').length === 100")  # 10 classes x 10
        page.wait_for_function("() => document.getElementById('card').textContent.includes('parameters')")
        card = page.inner_text("#card")
        parameters = models.parameter_count(models.read_model(student))
        assert f"{parameters:,}" in card and "images/s" in card and "z_dim" in card
        page.fill("#count", "2")
        page.wait_for_function("() => document.querySelectorAll('#grid img').length === 20")
        seed0 = images()
        page.fill("#seed", "3")
        page.wait_for_function("() => document.getElementById('grid').dataset.seed === '3'")
        seed3 = images()
        assert len(seed3) == 20 and seed3 != seed0

        with page.expect_download() as download:
            page.click("#download")
        zipped = zip_files(Path(download.value.path()).read_bytes())
        expected = generated_files(
            ["generate", "--source", f"generator:{student}", "--seed", 3, "-n", 20], tmp_path / "gen"
        )
        assert zipped == expected

        page.click("#grid img >> nth=0")
        assert page.is_visible("#lightbox") and "seed 3" in page.inner_text("#lightbox-caption")
        page.keyboard.press("Escape")
        assert page.is_hidden("#lightbox")

        page.fill("#seed", "three")
        page.wait_for_selector("#preview-error", state="visible")
        assert page.inner_text("#preview-error").startswith("seed: expected an integer")
        page.fill("#seed", "3")
        page.fill("#classes", "cat,unicorn")
        page.wait_for_function("() => document.getElementById('preview-error').textContent.includes('unicorn')")
        assert "\n" not in page.inner_text("#preview-error")
        page.fill("#classes", "cat,dog")
        page.wait_for_function("() => document.querySelectorAll('#grid img').length === 4")
        assert page.is_hidden("#preview-error")

        # Calibrate the demo classifier; record what the progress line and bar showed.
        page.evaluate(
            """() => { window.seen = []; const t = document.getElementById('progress-text');
               const bar = document.getElementById('progress-bar');
               new MutationObserver(() => window.seen.push([t.textContent, bar.value]))
                 .observe(t, {childList: true, characterData: true, subtree: true}); }"""
        )
        page.select_option("#preset", "cifar10")
        page.fill("#num-samples", "20")
        page.click("#calibrate")
        page.wait_for_selector("#progress", state="visible")
        assert page.is_disabled("#calibrate")
        page.wait_for_selector("#report", state="visible", timeout=JOB_TIMEOUT * 1000)
        seen = page.evaluate("window.seen")
        assert any(0 < value <= 1 for _, value in seen), seen  # the bar moved
        assert any(word in text for text, _ in seen for word in ("statistics", "held-out", "timing")), seen
        report = page.inner_text("#report-table")
        assert "20 synthetic items (2 per class)" in report and "agreement" in report and "speed-up" in report
        with page.expect_download() as download:
            page.click("#int8-download")
        int8 = zip_files(Path(download.value.path()).read_bytes())
        assert sorted(int8) == [f"{classifier.stem}_int8.bin", f"{classifier.stem}_int8.xml"]
        assert page.is_enabled("#calibrate")
        browser.close()
    # The page's own bad requests above (seed "three", class "unicorn") are logged by Chromium as 400s.
    assert [p for p in problems if "status of 400" not in p] == []


def test_page_takes_its_defaults_from_the_model_and_generator_in_chromium_browser(web_assets, tmp_path, monkeypatch):
    """The silent case of issue 26 on the page: a model that does not say how its inputs are normalised,
    a generator switch, no preset chosen: quantizing ends in the plan's one line naming the preset field;
    with a preset chosen, or with a model that states its preprocessing, the run says what it used."""
    sync_playwright = _browser_or_skip()
    from openvino_synthcalib.serve.browser import launch

    monkeypatch.setattr(catalog_module, "CARD_MEASURE_SECONDS", 0.1)
    a = web_assets
    # g1: 16 classes, g2: the 4 classes of the models, g3: the shipped ImageNet generator by its name.
    # m1 says nothing of its inputs; m2 states [-1, 1] in its rt_info.
    catalog = Catalog.load(
        [a["generator16"], a["generator"], "imagenet"], [a["classifier"], a["classifier_declared"]], shipped=False
    )
    app = create_app(catalog, workdir=tmp_path / "work", held_out=40, timing_seconds=0.05)
    problems = []
    with background_server(app) as url, sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.set_default_timeout(60_000)
        page.goto(url)

        def preview_of(n, *command_parts):
            page.wait_for_function(
                "([n, parts]) => { const g = document.getElementById('grid'); const c = document.getElementById('command');"
                " return g.querySelectorAll('img').length === n && !g.classList.contains('loading')"
                " && !document.getElementById('command-line').hidden && parts.every((p) => c.textContent.includes(p)); }",
                arg=[n, list(command_parts)],
            )
            assert page.is_hidden("#preview-error")

        # It opens on the generator of the model's classes, with that generator's preview defaults.
        preview_of(40, f"generator:{a['generator']} --seed 0 -n 40 --out")
        assert page.input_value("#generator") == "g2"
        assert page.input_value("#count") == "10" and page.input_value("#classes") == ""
        assert page.locator("#chips .chip").count() == 4
        listed = page.inner_text("#generator") + page.inner_text("#model")
        assert "cls.xml" in listed and "imagenet (shipped)" in listed and str(a["root"]) not in listed
        # No preset is preselected, and the page says why.
        assert page.input_value("#preset") == ""
        note = page.inner_text("#preset-note")
        assert "does not say how its inputs are normalised" in note and "inception [-1, 1]" in note
        assert "warning" in page.get_attribute("#preset-note", "class")

        # Everything that depends on the generator follows it: count, classes, chips, grid, command.
        page.select_option("#generator", "g3")
        preview_of(100, "--source generator:imagenet --seed 0 -n 100 --classes 0,100,200,300")
        assert page.input_value("#count") == "10" and page.input_value("#classes").startswith("0,100,200")
        assert page.locator("#chips .chip").count() == 0 and "1000 classes" in page.inner_text("#chips")
        assert page.locator("#grid .row").count() == 10
        page.wait_for_function("() => document.getElementById('card').textContent.includes('parameters')")
        assert page.is_hidden("#preview-error")  # the card of a shipped generator named by its name
        page.select_option("#generator", "g1")
        preview_of(160, "-n 160 --out")
        assert page.input_value("#classes") == "" and page.locator("#chips .chip").count() == 16
        page.select_option("#generator", "g2")
        preview_of(40, "-n 40 --out")
        assert page.input_value("#preset") == ""  # a generator switch sets no preset

        # The silent case: the plan's one line, naming the page's field.
        page.select_option("#recipe", "nncf")
        page.fill("#num-samples", "8")
        page.click("#calibrate")
        page.wait_for_selector("#calibrate-error", state="visible", timeout=JOB_TIMEOUT * 1000)
        error = page.inner_text("#calibrate-error")
        assert error.startswith("preset: model 'cls.xml' does not say how its inputs are normalised"), error
        assert "\n" not in error and page.is_hidden("#report")
        page.wait_for_function("() => !document.getElementById('calibrate').disabled")

        # A preset chosen: a correct run that shows the preprocessing it used.
        page.select_option("#preset", "inception")
        assert page.inner_text("#preset-note").startswith("Preset inception: [-1, 1]")
        page.click("#calibrate")
        page.wait_for_selector("#report", state="visible", timeout=JOB_TIMEOUT * 1000)
        report = page.inner_text("#report-table")
        assert "[-1, 1] (preset inception)" in report and "8 synthetic items (2 per class)" in report
        assert page.is_hidden("#calibrate-error")

        # A model that states its preprocessing: taken from it, and shown with where it was read.
        page.select_option("#model", "m2")
        assert page.input_value("#preset") == ""
        assert page.inner_text("#preset option >> nth=0") == "[-1, 1] (the model's own)"
        note = page.inner_text("#preset-note")
        assert note == f"Preprocessing from the model: [-1, 1] (read from {DECLARED_ORIGIN})."
        page.wait_for_function("() => !document.getElementById('calibrate').disabled")
        page.click("#calibrate")
        page.wait_for_function(
            "(origin) => !document.getElementById('report').hidden"
            " && document.getElementById('report-table').textContent.includes(origin)",
            arg=f"from {DECLARED_ORIGIN}",
            timeout=JOB_TIMEOUT * 1000,
        )
        assert "[-1, 1] (from the model's rt_info model_info)" in page.inner_text("#report-table")
        browser.close()
    assert problems == []


@pytest.mark.shared
def test_lite0_without_a_preset_is_refused_on_the_page(tmp_path):
    """`serve --model efficientnet_lite0.onnx` (a [-1, 1] model that says nothing of it): the page offers
    the ImageNet generator and no preset, and quantizing without one stops with the plan's one line."""
    lite0 = SHARED / "models" / "imagenet" / "efficientnet_lite0.onnx"
    app = create_app(Catalog.load([], [lite0], shipped=True), workdir=tmp_path / "work")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        config = client.get("/api/config").json()
        (model,) = config["models"]
        assert model["label"].endswith("efficientnet_lite0.onnx") and not Path(model["label"]).is_absolute()
        assert model["classes"] == 1000 and model["preprocessing"] is None
        imagenet = next(g["id"] for g in config["generators"] if g["spec"] == "generator:imagenet")
        body = {"generator": imagenet, "model": model["id"], "num_samples": 8, "recipe": "nncf"}
        job = wait_for_job(client, client.post("/api/calibrate", json=body).json()["id"])
    assert job["state"] == "failed"
    assert job["error"].startswith("preset: model 'efficientnet_lite0.onnx' does not say how its inputs are normalised")
