"""Forks from other threads (issues 19 and 27). Libraries fork from threads of their own: OpenVINO's
telemetry, which NNCF uses, sends each event from a worker thread by starting a process
(``os.fork()``). At a fork, OpenBLAS's ``pthread_atfork`` handler shuts its thread pool down and
waits for it; when another thread is inside a multithreaded BLAS call at that moment (it was
``np.matmul`` in the stream's resize, in the prefetch thread), both wait for each other forever.

The cause is gone: no BLAS call of ours runs on OpenBLAS's threads (resizing and grey run in
OpenVINO, see :mod:`openvino_synthcalib.transforms`). These tests show it: OpenBLAS's pool, once
stopped, is never started again by the item path, nor anywhere in ``synthcalib quantize`` (recipes
nncf and adaptive), ``synthcalib evaluate`` and the page (``synthcalib serve``, a job run to the end),
with telemetry live and a thread forking all the while. Also: the stream's watchdog and Ctrl+C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import openblas_pool
import pytest
from conftest import REPO

from openvino_synthcalib import transforms
from openvino_synthcalib.errors import SynthcalibError
from openvino_synthcalib.sources.base import Source
from openvino_synthcalib.stream import STALL_TIMEOUT_ENV, Prefetch, SyntheticStream, make_stream

pytestmark = pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="needs os.fork")
TESTS = REPO / "tests"


# ----------------------------------------------------------------------------- OpenBLAS's pool


@pytest.fixture
def stopped_pools():
    """OpenBLAS's pools stopped (as after a fork), once a large product has shown that they start again."""
    if not openblas_pool.stop():
        pytest.skip("NumPy does not use OpenBLAS with its own thread pool here")
    if openblas_pool.threads() <= 1:
        pytest.skip("OpenBLAS runs on one thread here: it has no pool to deadlock")
    a = np.ones((512, 512), np.float32)
    np.matmul(a, a)
    assert openblas_pool.started(), "a 512x512 product starts OpenBLAS's pool: what the tests look for"
    openblas_pool.stop()
    assert not openblas_pool.started()


def test_the_item_path_never_starts_openblas_threads(assets, stopped_pools):
    """Resizing (enlarging and shrinking), grey and the elementwise steps, in the prefetch thread and
    in this one: none of it runs a multithreaded BLAS call."""
    x = np.random.default_rng(0).random((32, 3, 32, 32), dtype=np.float32)
    for t in (transforms.Transform(size=(224, 224)), transforms.Transform.from_options("imagenet", size=(16, 24))):
        t(x)
    transforms.Transform(size=(224, 224), channels=1, input_range=(0, 255), dtype="uint8")(x)
    with make_stream(
        f"generator:{assets['generator']}", 64, transform={"preset": "unit", "size": 224}, batch_size=16
    ) as stream:
        assert stream.prefetch > 0 and sum(len(b) for b, _ in stream.batches()) == 64
    with SyntheticStream(f"images:{assets['images']}?size=40x30", 16, transform="imagenet") as stream:
        assert sum(len(b) for b, _ in stream.batches()) == 16
    assert not openblas_pool.started()


# ----------------------------------------------------------------------------- the watchdog


class _Stuck(Source):
    """A source whose generation never returns (until the test releases it)."""

    scheme = "stuck"
    num_classes = 2
    image_size = (8, 8)
    batch_size = 4

    def __init__(self, stuck: bool = True) -> None:
        super().__init__("stuck:test")
        self.stuck = stuck
        self.release = threading.Event()

    def iter_images(self, indices, labels, seed, size=None, occurrences=None):
        for start in range(0, len(indices), self.batch_size):
            if self.stuck:
                self.release.wait(60)
            yield np.full((len(indices[start : start + self.batch_size]), 3, 8, 8), 0.5, np.float32)


def _stalls(stream: SyntheticStream, release: threading.Event, match: str) -> None:
    batches = stream.batches()
    started = time.monotonic()
    try:
        with pytest.raises(SynthcalibError, match=match):
            next(batches)
        assert time.monotonic() - started < 10  # the error and close() did not wait for the stuck thread
    finally:
        release.set()  # let the thread go
        batches._thread.join(10)
    assert not batches._thread.is_alive()


def test_a_stream_stuck_generating_fails_naming_what_it_was_doing(monkeypatch):
    monkeypatch.setenv(STALL_TIMEOUT_ENV, "0.5")
    source = _Stuck()
    with SyntheticStream(source, 10) as stream:
        _stalls(
            stream,
            source.release,
            r"^the stream of 'stuck:test' produced no item for 0.5 s: it has been generating items 0\.\.3 of "
            rf"'stuck:test' for \d+ s \(set {STALL_TIMEOUT_ENV}=SECONDS to wait longer\)$",
        )


def test_a_stream_stuck_resizing_fails_naming_what_it_was_doing(monkeypatch):
    """The hang of issue 19 (a BLAS call in resize that never returns), simulated."""
    monkeypatch.setenv(STALL_TIMEOUT_ENV, "0.5")
    release = threading.Event()
    real = transforms.resize

    def resize(images, size):
        release.wait(60)
        return real(images, size)

    monkeypatch.setattr(transforms, "resize", resize)
    with SyntheticStream(_Stuck(stuck=False), 10, transform={"size": 16}) as stream:
        _stalls(stream, release, r"it has been resizing items 0\.\.3 of 'stuck:test' from 8x8 to 16x16 for")


def test_a_stream_that_keeps_producing_does_not_stall(monkeypatch):
    monkeypatch.setenv(STALL_TIMEOUT_ENV, "0.3")
    slow = Prefetch((time.sleep(0.1) or np.zeros(2) for _ in range(8)), 1 << 20)  # 0.8 s in all
    assert len(list(slow)) == 8


@pytest.mark.parametrize("bad", ["soon", "0", "-5", "nan", "inf"])
def test_a_bad_stall_timeout_is_refused_naming_the_variable(monkeypatch, bad):
    monkeypatch.setenv(STALL_TIMEOUT_ENV, bad)
    with SyntheticStream("noise:uniform?size=8", 4) as stream:
        with pytest.raises(SynthcalibError, match=rf"^{STALL_TIMEOUT_ENV}='{bad}': expected a positive number"):
            stream.batches()
        assert len(list(SyntheticStream("noise:uniform?size=8", 4, prefetch=0).batches())) == 1  # no thread: no timeout


CTRL_C = r"""
import signal, sys, threading, time
from openvino_synthcalib.stream import Activity, Prefetch

def never():
    threading.Event().wait()  # a producer stuck for good
    yield None

ahead = Prefetch(never(), 1 << 20, Activity("waiting forever"), timeout=600)
threading.Timer(0.5, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)).start()
started = time.monotonic()
try:
    next(ahead)
except KeyboardInterrupt:
    print(f"interrupted after {time.monotonic() - started:.2f} s", flush=True)
    sys.exit(130)
"""


def test_ctrl_c_stops_a_consumer_waiting_for_a_stuck_producer_at_once():
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-c", CTRL_C], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode == 130, run.stderr
    assert float(run.stdout.split()[2]) < 3  # the signal came at 0.5 s
    assert time.monotonic() - started < 60  # and the process exits without joining the stuck thread for good


# ----------------------------------------------------------------------------- the front-ends, telemetry live

# The CLI as the console script runs it, in a process that never imports pytest (NNCF replaces its
# telemetry with a stub when it sees pytest). It stops OpenBLAS's pools first (NumPy's, and SciPy's,
# which NNCF loads), then at every fork and at exit notes each pool running again (a BLAS call was
# split over threads since the last fork), and counts the forks and the threads that made them.
# With STORM set, a thread also forks five times a second (as any library may), so that a BLAS call
# in flight in another thread would meet a fork (each fork of this large process takes a while on a
# busy machine: more often, and the commands take minutes).
CLI = r"""
import atexit, multiprocessing, os, runpy, sys, threading
import openblas_pool

known = set(openblas_pool.stop("numpy", "scipy.linalg"))
forks, started = [], set()

def before():
    forks.append(threading.current_thread().name)
    started.update(p for p in openblas_pool.started() if p in known)
    known.update(openblas_pool.pools())  # a library loaded since: its pool stops at this fork

def report():
    started.update(p for p in openblas_pool.started() if p in known)
    print(f"forks: {len(forks)} from {sorted(set(forks))}; OpenBLAS pools started: {sorted(started)}", file=sys.stderr)

os.register_at_fork(before=before)
atexit.register(report)
if os.environ.get("STORM"):
    def storm():
        context = multiprocessing.get_context("fork")
        while True:
            child = context.Process(target=os._exit, args=(0,), daemon=True)
            child.start()
            child.join()
            threading.Event().wait(0.2)
    threading.Thread(target=storm, name="storm", daemon=True).start()
sys.argv = ["synthcalib", *sys.argv[1:]]
runpy.run_module("openvino_synthcalib", run_name="__main__", alter_sys=True)
"""
RUN_TIMEOUT = 300  # seconds for one command (they take 10 to 60 s on a busy 2-core machine)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A 224-px classifier of the shipped CIFAR-10 generator's classes (whose 32-px images the
    stream resizes in its prefetch thread), and the environment of a user who opted in to
    telemetry (every event is sent, by a fork) on a machine where the events go nowhere."""
    from tiny_models import make_classifier

    root = tmp_path_factory.mktemp("live")
    home = root / "home"
    (home / "intel").mkdir(parents=True)
    (home / "intel" / "openvino_telemetry").write_text("1")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL", "NNCF_CI", "NNCF_DEV")}
    unreachable = "http://127.0.0.1:9"  # a closed port, network or not
    env.update(HOME=str(home), https_proxy=unreachable, HTTPS_PROXY=unreachable, no_proxy="", NO_PROXY="")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), str(TESTS), env.get("PYTHONPATH")]))
    return {"model": make_classifier(root / "cls224.xml", num_classes=10, size=224), "env": env, "root": root}


def _command(*args) -> list[str]:
    return [sys.executable, "-c", CLI, *map(str, args)]


def _env(live, storm: bool) -> dict[str, str]:
    return {**live["env"], "STORM": "1" if storm else ""}


def _no_pool_started(stderr: str, telemetry: bool, storm: bool) -> None:
    """The wrapper's last line: no OpenBLAS pool started; who forked."""
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("forks: ") and line.endswith("OpenBLAS pools started: []"), stderr[-3000:]
    if telemetry:
        assert "ThreadPoolExecutor" in line, line  # openvino_telemetry's sender forked, from its own thread
    if storm:
        assert "'storm'" in line, line


def _run(live, storm: bool, *args) -> subprocess.CompletedProcess:
    try:
        run = subprocess.run(
            _command(*args), env=_env(live, storm), cwd=live["root"], capture_output=True, text=True,
            timeout=RUN_TIMEOUT,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"synthcalib {' '.join(map(str, args))} (fork storm: {storm}) hung")
    assert run.returncode == 0, run.stderr[-3000:]
    return run


@pytest.mark.slow
@pytest.mark.parametrize("recipe, storm", [("nncf", False), ("adaptive", True)])
def test_quantize_with_live_telemetry_runs_no_blas_on_openblas_threads(live, recipe, storm):
    out = live["root"] / f"q_{recipe}.xml"
    args = ["quantize", live["model"], "--source", "generator:cifar10", "--num-samples", 300, "--seed", 1]
    args += ["--recipe", recipe, "--score-samples", 512, "--check-samples", 300, "--preset", "unit", "--out", out]
    run = _run(live, storm, *args)
    assert out.is_file() and out.with_suffix(".bin").is_file()
    assert f"recipe:     {recipe}" in run.stdout and "check:" in run.stdout, run.stdout
    _no_pool_started(run.stderr, telemetry=True, storm=storm)


@pytest.mark.slow
def test_evaluate_runs_no_blas_on_openblas_threads_while_threads_fork(live):
    """``evaluate`` sends no telemetry (it does not use NNCF): the storm stands in for a library that forks."""
    model = live["model"]
    for data, limit in (("generator:cifar10", 256), ("fractal:ifs", 64)):
        args = ["evaluate", model, "--reference", model, "--data", data, "--limit", limit, "--preset", "unit", "--json"]
        run = _run(live, True, *args)
        assert json.loads(run.stdout)["agreement"] == 1.0
        _no_pool_started(run.stderr, telemetry=False, storm=True)


def _http(url: str, body: dict | None = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


@pytest.mark.slow
def test_the_page_runs_a_job_to_the_end_with_no_blas_on_openblas_threads(live):
    """``synthcalib serve``, driven over HTTP: a preview (PNG encoding in the server's worker threads),
    then an adaptive quantize job run to its report (NNCF in the job's thread, telemetry live)."""
    args = ["serve", "--model", live["model"], "--generator", "cifar10", "--port", 0]
    server = subprocess.Popen(
        _command(*args), env=_env(live, True), cwd=live["root"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        line = server.stdout.readline()  # "synthcalib serve: URL  (Ctrl+C to stop)", or "" if it failed
        assert line.startswith("synthcalib serve: "), line + server.stderr.read()[-3000:]
        url = line.split()[2]
        config = json.loads(_http(url + "api/config"))
        generator = next(g["id"] for g in config["generators"] if g["label"].startswith("cifar10"))
        model = config["models"][0]["id"]
        assert _http(f"{url}api/generators/{generator}/preview")
        body = {"generator": generator, "model": model, "preset": "unit", "num_samples": 300, "recipe": "adaptive"}
        job = json.loads(_http(url + "api/calibrate", body))
        while job["state"] == "running":
            if time.monotonic() > deadline:
                pytest.fail(f"the page's job did not finish in {RUN_TIMEOUT} s: {job['text']}")
            time.sleep(0.5)
            job = json.loads(_http(f"{url}api/jobs/{job['id']}"))
        assert job["state"] == "done", job
        assert job["report"]["recipe"].startswith("adaptive ->") and job["report"]["check"]["items"] > 0
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode in (0, 130), stderr[-3000:]  # 130: stopped by Ctrl+C
    _no_pool_started(stderr, telemetry=True, storm=True)
