"""Whether OpenBLAS's thread pool is running, for the fork tests (Linux, OpenBLAS built with its own
pthreads server, as in NumPy's and SciPy's wheels).

OpenBLAS starts its pool when it loads, shuts it down in its ``pthread_atfork`` handler at every
fork, and starts it again at the next call that runs on more than one thread
(``blas_server_avail`` is 1 while it runs). That handler is what deadlocks when a fork meets such
a call in flight in another thread. So once :func:`stop` has shut the pools down, :func:`started`
names every OpenBLAS that has run a multithreaded call since (or since the last fork); calls too
small to be split over threads (a 2x2 product) never use the pool and are not seen, nor can they
deadlock.
"""

from __future__ import annotations

import ctypes
import importlib

_LIBS: dict[str, ctypes.CDLL] = {}


def _loaded() -> list[str]:
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/" in line}
    except OSError:
        return []
    return sorted(p for p in paths if "openblas" in p.rsplit("/", 1)[-1].lower() and ".so" in p)


def pools() -> dict[str, ctypes.c_int]:
    """``blas_server_avail`` of each OpenBLAS loaded in this process, by file."""
    out = {}
    for path in _loaded():
        lib = _LIBS.get(path) or _LIBS.setdefault(path, ctypes.CDLL(path))  # the library already loaded
        try:
            out[path] = ctypes.c_int.in_dll(lib, "blas_server_avail")
        except ValueError:  # built without the pthreads server (OpenMP): no such pool
            continue
    return out


def stop(*modules: str) -> list[str]:
    """Import ``modules`` (to load their OpenBLAS), then shut down every OpenBLAS pool, as a fork
    does; the libraries found. Only while no other thread may be in a BLAS call."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    for path in pools():
        _LIBS[path].blas_thread_shutdown_()
    return list(pools())


def started() -> list[str]:
    """The OpenBLAS libraries whose pool runs now."""
    return [path for path, avail in pools().items() if avail.value]


def threads() -> int:
    """The threads NumPy's OpenBLAS splits a large call over (0: not found; 1: it never uses its pool)."""
    for path in pools():
        if "/numpy" in path:
            try:
                return int(ctypes.c_int.in_dll(_LIBS[path], "blas_num_threads").value)
            except ValueError:
                return 0
    return 0
