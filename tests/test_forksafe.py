"""Issue 19: forks from other threads (OpenVINO telemetry) while a background thread does numerical
work; the fork gate (openvino_synthcalib.forksafe), the stream's watchdog, and the CLI with live
telemetry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import REPO

from openvino_synthcalib import forksafe, transforms
from openvino_synthcalib.errors import SynthcalibError
from openvino_synthcalib.sources.base import Source
from openvino_synthcalib.stream import STALL_TIMEOUT_ENV, Prefetch, SyntheticStream

pytestmark = pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="needs os.fork")


def _reap(pid: int, timeout: float = 20.0) -> int:
    """The exit code of child ``pid``; a child still running after ``timeout`` s is killed (-1)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -1


def _fork(child) -> int:
    """Fork; the child runs ``child()`` (its return value is the exit code) and leaves at once."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = child()
        finally:
            os._exit(code)
    return pid


# ----------------------------------------------------------------------------- the gate


def test_a_fork_from_another_thread_waits_for_sections_and_holds_new_ones():
    entered, release = threading.Event(), threading.Event()
    times: dict[str, float] = {}

    def worker() -> None:
        with forksafe.section(), forksafe.section():  # nested: one section of this thread
            entered.set()
            release.wait(20)
            times["left"] = time.monotonic()

    def forker() -> None:
        pid = _fork(lambda: 0)
        times["forked"] = time.monotonic()
        times["child"] = _reap(pid)

    def latecomer() -> None:
        with forksafe.section():
            times["late"] = time.monotonic()

    threads = [threading.Thread(target=worker)]
    threads[0].start()
    assert entered.wait(10)
    threads.append(threading.Thread(target=forker))
    threads[1].start()
    deadline = time.monotonic() + 10
    while not forksafe._gate.forking and time.monotonic() < deadline:
        time.sleep(0.01)
    threads.append(threading.Thread(target=latecomer))  # may not start a section while the fork waits
    threads[2].start()
    time.sleep(0.3)
    assert "forked" not in times and "late" not in times and forksafe.busy() == 1
    release.set()
    for t in threads:
        t.join(20)
    assert times["forked"] >= times["left"] and times["late"] >= times["left"] and times["child"] == 0
    assert forksafe.busy() == 0 and forksafe._gate.forking == 0


def test_a_fork_inside_a_section_does_not_wait_for_itself_and_the_child_gets_a_fresh_gate(monkeypatch):
    monkeypatch.setattr(forksafe, "FORK_WAIT", 30.0)

    def child() -> int:
        # only this thread lives on: its own (nested) section is the one inside; it can leave it,
        # another thread can enter one, and this process can fork again
        if forksafe.busy() != 1 or forksafe._gate.forking:
            return 3
        forksafe.section().__exit__(None, None, None)
        forksafe.section().__exit__(None, None, None)
        if forksafe.busy() != 0:
            return 4
        entered = []

        def enter() -> None:
            with forksafe.section():
                entered.append(forksafe.busy())

        t = threading.Thread(target=enter)
        t.start()
        t.join(5)
        if t.is_alive() or entered != [1] or forksafe.busy() != 0:
            return 5
        return _reap(_fork(lambda: 0), 10)

    started = time.monotonic()
    with forksafe.section(), forksafe.section():
        pid = _fork(child)
        forked = time.monotonic() - started
        assert forksafe.busy() == 1
    assert forked < 10 and _reap(pid) == 0
    assert forksafe.busy() == 0 and forksafe._gate.forking == 0


def test_threads_forking_from_inside_their_sections_at_once_do_not_wait_for_each_other(monkeypatch):
    monkeypatch.setattr(forksafe, "FORK_WAIT", 30.0)
    together = threading.Barrier(2)
    results: list[tuple[float, int]] = []

    def forker() -> None:
        with forksafe.section():
            together.wait(10)
            started = time.monotonic()
            pid = _fork(lambda: 0)
            results.append((time.monotonic() - started, _reap(pid)))

    threads = [threading.Thread(target=forker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 2 and all(took < 10 and code == 0 for took, code in results), results
    assert forksafe.busy() == 0 and forksafe._gate.forking == 0 and forksafe._gate.excused == 0


def test_a_fork_waits_a_bounded_time_for_a_stuck_section(monkeypatch):
    monkeypatch.setattr(forksafe, "FORK_WAIT", 0.5)
    entered, release = threading.Event(), threading.Event()

    def stuck() -> None:
        with forksafe.section():
            entered.set()
            release.wait(30)

    def child() -> int:  # the stuck thread does not exist here: the gate is open
        if forksafe.busy() != 0:
            return 3
        with forksafe.section():
            return 0

    t = threading.Thread(target=stuck)
    t.start()
    try:
        assert entered.wait(10)
        started = time.monotonic()
        pid = _fork(child)
        waited = time.monotonic() - started
        assert _reap(pid) == 0
        assert 0.4 <= waited < 10 and forksafe.busy() == 1 and forksafe._gate.forking == 0
    finally:
        release.set()
        t.join(10)


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
        release.set()  # let the thread go (it holds a fork-safe section)
        batches._thread.join(10)
    assert not batches._thread.is_alive() and forksafe.busy() == 0


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


# ----------------------------------------------------------------------------- the CLI, telemetry live

# The CLI as the console script runs it, in a process that never imports pytest (NNCF replaces its
# telemetry with a stub when it sees pytest). It counts the forks and which threads made them; with
# STORM set, a thread also forks continually (as any library may), which makes a missing gate hang
# on almost every run instead of about one in four.
CLI = r"""
import atexit, multiprocessing, os, runpy, sys, threading

forks = []
os.register_at_fork(before=lambda: forks.append(threading.current_thread().name))
atexit.register(lambda: print(f"forks: {len(forks)} from {sorted(set(forks))}", file=sys.stderr))
if os.environ.get("STORM"):
    def storm():
        context = multiprocessing.get_context("fork")
        while True:
            child = context.Process(target=os._exit, args=(0,), daemon=True)
            child.start()
            child.join()
            threading.Event().wait(0.02)
    threading.Thread(target=storm, name="storm", daemon=True).start()
sys.argv = ["synthcalib", *sys.argv[1:]]
runpy.run_module("openvino_synthcalib", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_quantize_cli_finishes_with_live_telemetry_while_the_stream_resizes(tmp_path):
    from tiny_models import make_classifier

    # the shipped generator makes 32x32 images; this model takes 224x224, so the stream resizes
    # (np.matmul, multithreaded OpenBLAS at this size) in its prefetch thread
    model = make_classifier(tmp_path / "cls224.xml", num_classes=10, size=224)
    home = tmp_path / "home"
    (home / "intel").mkdir(parents=True)
    (home / "intel" / "openvino_telemetry").write_text("1")  # opted in: every event is sent, by a fork
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL", "NNCF_CI", "NNCF_DEV")}
    unreachable = "http://127.0.0.1:9"  # the events go nowhere (a closed port), network or not
    env.update(HOME=str(home), https_proxy=unreachable, HTTPS_PROXY=unreachable, no_proxy="", NO_PROXY="")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    for seed, storm in ((1, ""), (2, ""), (3, "1"), (4, "1")):
        env["STORM"] = storm
        out = tmp_path / f"q{seed}.xml"
        command = [sys.executable, "-c", CLI, "quantize", str(model), "--source", "generator:cifar10"]
        command += ["--num-samples", "300", "--seed", str(seed), "--recipe", "nncf", "--preset", "unit", "--out", str(out)]
        try:
            run = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=150)
        except subprocess.TimeoutExpired:
            pytest.fail(f"synthcalib quantize --seed {seed} (fork storm: {bool(storm)}) hung")
        assert run.returncode == 0, run.stderr[-2000:]
        assert out.is_file()
        forks = run.stderr.strip().splitlines()[-1]
        assert "ThreadPoolExecutor" in forks, forks  # openvino_telemetry's sender forked, from its own thread
        if storm:
            assert "'storm'" in forks, forks
