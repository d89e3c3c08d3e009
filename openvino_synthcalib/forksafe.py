"""A fork gate: no numerical work of ours is in progress in another thread when the process forks.

Libraries fork from threads of their own: OpenVINO's telemetry (which NNCF uses) sends each event
from a worker thread by starting a ``multiprocessing.Process``, i.e. ``os.fork()``. At a fork, libc
runs OpenBLAS's ``pthread_atfork`` handler, which shuts its thread pool down and waits for it; if
another thread is inside a multithreaded BLAS call at that moment (``np.matmul`` in
:func:`~openvino_synthcalib.transforms.resize`), the handler and the call wait for each other
forever, and the forking thread holds the GIL meanwhile.

Code that does numerical work (NumPy/BLAS, OpenVINO inference, PIL decoding) in any thread runs
inside ``with section():``, one batch of work at a time. Many threads may be inside at once and a
thread may nest sections. Our ``before`` fork hook closes the gate to new sections and waits until
no *other* thread is inside one (at most :data:`FORK_WAIT` seconds, then the fork goes ahead
anyway), so the fork finds every BLAS call of ours finished; the gate reopens once the fork is done.
The child starts with a fresh gate. Rules for sections: keep them to one batch; never hold one
across a ``yield``; never wait inside one for another thread that may need a section of its own
(the fork would wait for us while that thread waits for the fork).

Why this cannot deadlock in the fork itself: CPython's ``os.fork()`` runs the ``before`` hooks
(``PyOS_BeforeFork``) before it takes the import lock and before it calls ``fork()`` (and so before
libc's atfork handlers), and our hook waits on a condition variable, which releases the GIL: the
threads we wait for can finish their batch. Hooks run in reverse order of registration, so the
standard library's hooks that take locks (``logging``, ``concurrent.futures``) are registered first
and run after ours: we never wait while holding them.

Only forks through ``os.fork()`` (``multiprocessing``'s fork start method, ``os.fork`` itself)
run the hooks; ``subprocess`` uses ``vfork``/``posix_spawn`` where it can, which runs no atfork
handler at all.
"""

from __future__ import annotations

import concurrent.futures.thread  # noqa: F401  (registers its fork hooks before ours, see above)
import logging  # noqa: F401  (likewise)
import os
import threading
import time
from typing import Any

#: Longest a fork waits for the sections of other threads (then it goes ahead anyway).
FORK_WAIT = 60.0


class _Gate:
    """Shared state: ``inside`` threads hold a section; while ``forking`` > 0 no thread may enter
    one; ``excused`` of the threads inside are forking themselves (a fork does not wait for them)."""

    def __init__(self, inside: int = 0) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.inside = inside
        self.forking = 0
        self.excused = 0


_gate = _Gate()
_local = threading.local()  # per thread: depth (nested sections), gate (the one entered), pending fork


class _Section:
    """``with section():`` (re-entrant in a thread)."""

    __slots__ = ()

    def __enter__(self) -> None:
        depth = getattr(_local, "depth", 0)
        if depth == 0:
            gate = _gate
            with gate.cond:
                while gate.forking:
                    gate.cond.wait()
                gate.inside += 1
            _local.gate = gate
        _local.depth = depth + 1

    def __exit__(self, *exc: Any) -> None:
        _local.depth -= 1
        if _local.depth == 0:
            gate = _local.gate
            with gate.cond:
                gate.inside -= 1
                gate.cond.notify_all()


_SECTION = _Section()


def section() -> _Section:
    """A context manager around one batch of numerical work: a fork from another thread waits
    for it to end (and it waits for a fork in progress to end before it starts)."""
    return _SECTION


def busy() -> int:
    """How many threads are inside a section now (for tests and diagnostics)."""
    with _gate.cond:
        return _gate.inside


def _before_fork() -> None:
    gate = _gate
    mine = getattr(_local, "depth", 0) > 0 and getattr(_local, "gate", None) is gate
    with gate.cond:
        gate.forking += 1
        gate.excused += mine
        _local.pending = (gate, mine)  # what the parent's after-hook undoes
        deadline = time.monotonic() + FORK_WAIT
        while gate.inside > gate.excused:
            left = deadline - time.monotonic()
            if left <= 0:
                break  # a section that never ends must not stop the fork for good
            gate.cond.wait(left)


def _after_fork_in_parent() -> None:
    pending = getattr(_local, "pending", None)
    if pending is None:  # the before-hook failed early
        return
    _local.pending = None
    gate, mine = pending
    with gate.cond:
        gate.forking -= 1
        gate.excused -= mine
        gate.cond.notify_all()


def _after_fork_in_child() -> None:
    # Only the forking thread lives on; its own sections (if any) are the only ones inside. The
    # parent's lock may have been held by a thread that does not exist here: a new gate.
    global _gate
    held = getattr(_local, "depth", 0) > 0
    _gate = _Gate(inside=1 if held else 0)
    _local.pending = None
    if held:
        _local.gate = _gate


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
