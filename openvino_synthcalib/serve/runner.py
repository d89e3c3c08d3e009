"""Running the server: ``synthcalib serve`` in the foreground, or in a thread for tests and scripts."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import SynthcalibError
from .catalog import Catalog

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: Host headers that name this machine's loopback interface.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one), or a one-line error."""
    if not 0 <= port <= 65535:
        raise SynthcalibError(f"--port: expected 0..65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise SynthcalibError(f"--host {host!r}: cannot resolve it ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise SynthcalibError(f"--host {host} --port {port}: cannot listen there ({exc.strerror})") from None
    sock.listen(128)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str) -> list[str]:
    """Host headers to accept: loopback names, plus the bound name; any when bound to all interfaces."""
    if host in ("0.0.0.0", "::", ""):
        return ["*"]
    return [*LOOPBACK_NAMES, host, f"[{host}]"]


def _server(app: Any) -> Any:
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))


def serve(
    generators: Sequence[str] = (),
    model_paths: Sequence[str] = (),
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
) -> None:
    """Load the catalog, print the address, serve until interrupted."""
    from .app import create_app  # heavy: .app imports fastapi

    catalog = Catalog.load(generators, model_paths)
    sock = bind(host, port)
    app = create_app(catalog, allowed_hosts=allowed_hosts(host))
    print(f"synthcalib serve: {url_of(sock)}  (Ctrl+C to stop)", flush=True)
    for g in catalog.generators.values():
        print(f"  generator {g.id}: {g.label}", flush=True)
    for m in catalog.models.values():
        print(f"  model     {m.id}: {m.label}", flush=True)
    if not is_loopback(host):
        print(f"warning: listening on {host}: anyone who can reach this machine can use the page", file=sys.stderr)
    _server(app).run(sockets=[sock])


@contextlib.contextmanager
def background_server(app: Any, host: str = DEFAULT_HOST) -> Iterator[str]:
    """Serve ``app`` on a free port of ``host`` in a thread; yields its URL, stops it on exit."""
    sock = bind(host, 0)
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="synthcalib-serve", daemon=True)
    thread.start()
    try:
        for _ in range(600):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.05)
        if not server.started:
            raise RuntimeError("the test server did not start")
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
