"""Calibration jobs: quantize a model on a generator's stream in the background, one at a time."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import models, options, quality
from ..errors import SynthcalibError
from ..inference import predict
from ..quantization import quantize_settings
from ..recipes import RECIPES as PRODUCT_RECIPES
from ..stream import make_stream
from .catalog import GeneratorEntry, ModelEntry, preprocessing_summary
from .errors import Busy, UnknownId
from .params import shown

log = logging.getLogger(__name__)

# Quantization recipes offered on the page (the first is preselected): see openvino_synthcalib.recipes.
RECIPES: tuple[str, ...] = PRODUCT_RECIPES
HELD_OUT = 500  # held-out synthetic items (another seed) for FP32 vs INT8 agreement
TIMING_SECONDS = 1.0  # inference time behind each images/s figure


def page_settings(request: JobRequest, output: Path | None = None, check_samples: int = HELD_OUT) -> Any:
    """The page's request as calibration settings (option table, ``page`` names). The generator is
    named by its spec, so that the plan opens it with the calibration's settings (precision...)
    exactly as ``synthcalib quantize --source SPEC`` does; the page's shared source serves previews."""
    values = {
        "model": str(request.model.path),
        "source": request.generator.source.spec,
        "num_samples": request.num_samples,
        "seed": request.seed,
        # the preset chosen on the page; None: what the model declares, else the plan's one-line
        # error naming the `preset` field (the page never guesses)
        "transform": request.preset,
        "recipe": request.recipe,
        "output": None if output is None else str(output),
        "check_samples": check_samples,
    }
    return options.read(values, "page")


def preprocessing_used(result: dict[str, Any], transform: Any) -> dict[str, Any]:
    """The report's preprocessing: the values the calibration used, where they came from (a preset
    chosen on the page, or what the model declares) and a short reading of them."""
    used = result.get("preprocessing") or (transform.describe() if hasattr(transform, "describe") else {})
    return preprocessing_summary(used)


def run_calibration(settings: Any, progress: Any) -> dict[str, Any]:
    """The one place the page's calibration reaches the quantization every front-end shares."""
    return quantize_settings(settings, progress)


@dataclass(frozen=True)
class JobRequest:
    generator: GeneratorEntry
    model: ModelEntry
    preset: str | None
    num_samples: int
    seed: int
    recipe: str


class Job:
    """State and progress of one calibration, read by the page while a worker thread updates it."""

    def __init__(self, jid: str, request: JobRequest, folder: Path) -> None:
        self.id = jid
        self.request = request
        self.folder = folder
        self.output: Path | None = None
        self.started = time.perf_counter()
        self._lock = threading.Lock()
        self.state = "running"
        self.phase = "preparing"
        self.done = 0
        self.total = 0
        self.passes: list[int] = []
        self.report: dict[str, Any] | None = None
        self.error: str | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def set_phase(self, phase: str, total: int = 0) -> None:
        with self._lock:
            self.phase, self.done, self.total = phase, 0, total

    def start_pass(self, total: int) -> None:
        with self._lock:
            self.phase, self.done, self.total = "calibrating", 0, total
            self.passes.append(0)

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
            if self.phase == "calibrating" and self.passes:
                self.passes[-1] += n

    def finish(self, report: dict[str, Any] | None = None, error: str | None = None) -> None:
        with self._lock:
            self.report, self.error = report, error
            self.state = "failed" if error else "done"
            self.phase = self.state

    def text(self) -> str:
        """The progress line shown under the bar."""
        done, total, k = self.done, self.total, len(self.passes)
        if self.phase == "preparing":
            return "preparing: loading NNCF, the model and the generator stream"
        if self.phase == "calibrating":
            if done < total:
                return f"collecting statistics: {done}/{total} items generated for NNCF (pass {k})"
            return f"quantizing: statistics collected from {total} items (pass {k})"
        if self.phase == "checking":
            return f"checking: FP32 vs INT8 top-1 on {done}/{total} held-out synthetic items"
        if self.phase == "timing":
            return f"timing: {'FP32' if done == 0 else 'INT8'} images/s"
        if self.phase == "done":
            return f"done in {self.report['total_seconds']:.1f} s" if self.report else "done"
        return self.error or self.phase

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "id": self.id,
                "state": self.state,
                "phase": self.phase,
                "done": self.done,
                "total": self.total,
                "passes": list(self.passes),
                "text": self.text(),
                "elapsed": round(time.perf_counter() - self.started, 1),
                "report": self.report,
                "error": self.error,
            }


def check_request(request: JobRequest) -> None:
    """Fail before starting when the model cannot be calibrated from this generator."""
    model, gen = request.model, request.generator
    if model.classes is None:
        raise SynthcalibError(
            f"model '{model.label}' has no classifier output [N, K]: the page calibrates classifiers "
            "(it compares FP32 and INT8 top-1)"
        )
    if model.classes != gen.info.num_classes:
        raise SynthcalibError(
            f"generator '{gen.label}' has {gen.info.num_classes} classes but model '{model.label}' outputs "
            f"{model.classes}: pick a generator for this model's classes"
        )
    if request.recipe not in RECIPES:
        raise SynthcalibError(f"recipe: expected one of {', '.join(RECIPES)}, got {shown(request.recipe)}")


def _images_per_s(compiled: Any, x: np.ndarray, seconds: float) -> float:
    """Images/s of synchronous inference on batch ``x`` for about ``seconds``."""
    compiled(x)
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or n == 0:
        compiled(x)
        n += 1
    return n * len(x) / (time.perf_counter() - started)


def _top1(compiled: Any, x: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate(list(predict(compiled, (x[i : i + batch] for i in range(0, len(x), batch)))))


def calibrate(job: Job, held_out: int = HELD_OUT, timing_seconds: float = TIMING_SECONDS) -> dict[str, Any]:
    """Quantize, with the data-free quality check every front-end runs (``held_out`` fresh items,
    see :mod:`..quality`), then time FP32 and INT8 inference."""
    req = job.request
    started = time.perf_counter()
    job.output = job.folder / f"{req.model.path.stem}_int8.xml"

    def progress(first: int, n: int) -> None:  # the calibration stream's batches, as NNCF pulls them
        if first == 0:
            job.start_pass(req.num_samples)
        job.add(n)

    settings = page_settings(req, job.output, check_samples=held_out)
    result = run_calibration(settings, progress)
    check = result["check"]
    fp32 = models.read_model(req.model.path, "model")
    static = models.static_dims(fp32.inputs[0].get_partial_shape())[0]
    batch = static or 64
    job.set_phase("timing", 2)
    with make_stream(req.generator.source, batch, model=fp32, transform=req.preset, seed=req.seed + 1) as timed:
        sample = np.concatenate([x for x, _ in timed.batches()])
    cfg = {"INFERENCE_PRECISION_HINT": "f32"}  # a true FP32 baseline on CPUs that default to bf16
    fps32 = _images_per_s(models.compile_model(fp32, "CPU", cfg, "FP32 model"), sample, timing_seconds)
    job.add(1)
    fps8 = _images_per_s(
        models.compile_model(result["quantized_model"], "CPU", cfg, "INT8 model"), sample, timing_seconds
    )
    job.add(1)
    prediction = check.get("prediction")
    return {
        "model": req.model.label,
        "generator": req.generator.label,
        "preset": req.preset,
        "preprocessing": preprocessing_used(result, None),
        "recipe": result["recipe_summary"],
        "num_samples": result["num_samples"],
        "seed": req.seed,
        "samples_per_class": result["samples_per_class"],
        "num_classes": req.generator.info.num_classes,
        "passes": list(job.passes),
        "quantize_seconds": result["quantize_seconds"],
        "total_seconds": round(time.perf_counter() - started, 2),
        "held_out": check.get("items", 0),
        "held_out_seed": check.get("seed"),
        "agreement": 1.0 - check["flip_rate"] if check.get("flip_rate") is not None else None,
        "fp32_top1_vs_class": check.get("fp32_top1_vs_class"),
        "int8_top1_vs_class": check.get("int8_top1_vs_class"),
        "check": check,
        "prediction": prediction,
        "quality": quality.summary(check),
        "warning": quality.warning(check, settings.name),
        "timing_batch": len(sample),
        "fp32_images_per_s": round(fps32, 1),
        "int8_images_per_s": round(fps8, 1),
        "speedup": round(fps8 / fps32, 3),
        "fp32_bytes": result["fp32_bytes"],
        "int8_bytes": result["int8_bytes"],
        "files": [job.output.name, job.output.with_suffix(".bin").name],
        "download": f"/api/jobs/{job.id}/int8.zip",
    }


class JobManager:
    """Runs one calibration at a time in a worker thread; keeps every job's state and output."""

    def __init__(self, workdir: Path, held_out: int = HELD_OUT, timing_seconds: float = TIMING_SECONDS) -> None:
        self.workdir = workdir
        self.held_out = held_out
        self.timing_seconds = timing_seconds
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    @property
    def latest(self) -> Job | None:
        return next(reversed(self.jobs.values()), None)

    def start(self, request: JobRequest) -> Job:
        check_request(request)
        with self._lock:
            current = self.latest
            if current is not None and current.running:
                raise Busy(
                    f"a calibration is already running (job {current.id}: {current.text()}); "
                    "wait for it to finish, then start another"
                )
            jid = f"j{len(self.jobs) + 1}"
            folder = self.workdir / jid
            folder.mkdir(parents=True)
            job = Job(jid, request, folder)
            self.jobs[jid] = job
        threading.Thread(target=self._run, args=(job,), name=f"synthcalib-{jid}", daemon=True).start()
        return job

    def _run(self, job: Job) -> None:
        try:
            report = calibrate(job, self.held_out, self.timing_seconds)
        except SynthcalibError as exc:
            job.finish(error=str(exc))
        except Exception as exc:  # shown as one line on the page; the traceback goes to the server log
            log.exception("calibration %s failed", job.id)
            line = next((s for s in str(exc).splitlines() if s.strip()), type(exc).__name__)
            job.finish(error=f"calibration failed: {type(exc).__name__}: {line[:200]}")
        else:
            job.finish(report=report)

    def get(self, jid: str) -> Job:
        if jid not in self.jobs:
            raise UnknownId(f"unknown job id {shown(jid)}")
        return self.jobs[jid]

    def output_files(self, jid: str) -> list[Path]:
        """The INT8 IR (.xml, .bin) of a finished job."""
        job = self.get(jid)
        if job.running:
            raise Busy(f"job {jid} is still running: its INT8 model is not ready yet")
        if job.state != "done" or job.output is None:
            raise UnknownId(f"job {jid} failed: it has no INT8 model")
        return [job.output, job.output.with_suffix(".bin")]
