"""The FastAPI application: the page, its static files and a small JSON API."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ..errors import SynthcalibError
from ..plugins import presets
from .catalog import PREVIEW_PER_CLASS, Catalog, preprocessing_summary
from .errors import http_status
from .jobs import HELD_OUT, RECIPES, TIMING_SECONDS, JobManager, JobRequest
from .params import LIMITS, MAX_PER_CLASS, MAX_SAMPLES, MAX_SEED, class_list, integer, shown
from .preview import preview, sample_files, zip_bytes
from .runner import LOOPBACK_NAMES

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
# No preset here: the preprocessing comes from the model or the user, never from a default (a
# generator's preview count comes with it: see GeneratorEntry.summary).
PAGE_DEFAULTS = {"seed": 0, "count": PREVIEW_PER_CLASS, "num_samples": 300, "recipe": RECIPES[0]}
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _preset_names() -> list[str]:
    return list(presets())


def create_app(
    catalog: Catalog,
    *,
    workdir: Path | None = None,
    allowed_hosts: Sequence[str] = LOOPBACK_NAMES,
    held_out: int = HELD_OUT,
    timing_seconds: float = TIMING_SECONDS,
) -> FastAPI:
    """The app for ``catalog``; calibration outputs go to ``workdir`` (default: a temporary folder
    removed at shutdown). Requests whose Host is not in ``allowed_hosts`` are refused (DNS rebinding)."""
    owned = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="synthcalib-serve-")) if workdir is None else Path(workdir)
    jobs = JobManager(workdir, held_out=held_out, timing_seconds=timing_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            shutil.rmtree(workdir, ignore_errors=True)

    app = FastAPI(title="synthcalib", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.catalog, app.state.jobs, app.state.workdir = catalog, jobs, workdir
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers.update(_SECURITY_HEADERS)
        return response

    @app.exception_handler(SynthcalibError)
    async def user_error(request: Request, exc: SynthcalibError) -> JSONResponse:
        return _error(http_status(exc), str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _error(404, f"not found: {shown(request.url.path, 80)}")
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(400, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request %s failed", request.url.path)
        line = next((s for s in str(exc).splitlines() if s.strip()), "")
        return _error(500, f"internal error: {type(exc).__name__}: {line[:200]}")

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/config")
    def config() -> dict[str, Any]:
        """What the page offers: generators, models, presets, recipes, limits, the latest job."""
        latest = jobs.latest
        return {
            "generators": [g.summary() for g in catalog.generators.values()],
            "models": [m.summary() for m in catalog.models.values()],
            "presets": _preset_names(),
            "preset_values": {
                name: preprocessing_summary({**values, "origin": f"preset {name}"})
                for name, values in presets().items()
            },
            "recipes": list(RECIPES),
            "limits": LIMITS,
            "defaults": PAGE_DEFAULTS,
            "held_out": held_out,
            "job": latest.snapshot() if latest else None,
        }

    def preview_args(gid: str, seed: str | None, classes: str | None, count: str | None) -> tuple[Any, ...]:
        entry = catalog.generator(gid)
        defaults = entry.summary()["preview"]  # what fits this generator's classes under the caps
        seed_n = integer("seed", PAGE_DEFAULTS["seed"] if seed is None else seed, 0, MAX_SEED)
        count_n = integer("count", defaults["count"] if count is None else count, 1, MAX_PER_CLASS)
        return entry, seed_n, class_list(defaults["classes"] if classes is None else classes), count_n

    @app.get("/api/generators/{gid}/card")
    def card(gid: str) -> dict[str, Any]:
        return catalog.generator(gid).card()

    @app.get("/api/generators/{gid}/preview")
    def preview_grid(gid: str, seed: str | None = None, classes: str | None = None, count: str | None = None) -> Any:
        return preview(*preview_args(gid, seed, classes, count))

    @app.get("/api/generators/{gid}/samples.zip")
    def samples_zip(gid: str, seed: str | None = None, classes: str | None = None, count: str | None = None) -> Any:
        entry, seed_n, chosen, count_n = preview_args(gid, seed, classes, count)
        files = sample_files(entry, seed_n, chosen, count_n)
        name = f"{entry.path.stem}_seed{seed_n}.zip"
        return Response(
            zip_bytes([(f.path, f.data) for f in files]),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.post("/api/calibrate", status_code=202)
    async def calibrate(request: Request) -> dict[str, Any]:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(415, "request body: expected Content-Type application/json")
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise SynthcalibError("request body: expected a JSON object") from None
        if not isinstance(body, dict):
            raise SynthcalibError("request body: expected a JSON object")
        known = {"generator", "model", "preset", "num_samples", "seed", "recipe"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise SynthcalibError(
                f"request body: unknown key(s) {', '.join(unknown)[:120]}; expected {', '.join(sorted(known))}"
            )
        # No preset (absent, null or ""): the model's declared preprocessing, else the plan's error.
        preset = body.get("preset")
        preset = None if preset == "" else preset
        if preset is not None and preset not in _preset_names():
            raise SynthcalibError(f"preset: expected one of {', '.join(_preset_names())}, got {shown(preset)}")
        for key in ("generator", "model"):
            if not isinstance(body.get(key), str):
                raise SynthcalibError(f"{key}: expected an id string from /api/config, got {shown(body.get(key))}")
        job = jobs.start(
            JobRequest(
                generator=catalog.generator(body["generator"]),
                model=catalog.model(body["model"]),
                preset=preset,
                num_samples=integer(
                    "num_samples", body.get("num_samples", PAGE_DEFAULTS["num_samples"]), 1, MAX_SAMPLES
                ),
                seed=integer("seed", body.get("seed", PAGE_DEFAULTS["seed"]), 0, MAX_SEED),
                recipe=body.get("recipe", PAGE_DEFAULTS["recipe"]),
            )
        )
        return job.snapshot()

    @app.get("/api/jobs/{jid}")
    def job_status(jid: str) -> dict[str, Any]:
        return jobs.get(jid).snapshot()

    @app.get("/api/jobs/{jid}/int8.zip")
    def job_output(jid: str) -> Response:
        files = jobs.output_files(jid)
        return Response(
            zip_bytes([(p.name, p.read_bytes()) for p in files]),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{files[0].stem}.zip"'},
        )

    return app
