"""Accuracy control that shows its work: progress while NNCF's accuracy restorer runs, its wall time
by stage, and the operations it kept in floating point.

``nncf.quantize_with_accuracy_control`` quantizes the model, validates the FP32 and the INT8 model,
ranks the groups of quantizers by what reverting each one alone does to the metric, then reverts
groups greedily, validating after each, until the drop is within ``max_drop``. On a CPU that takes
minutes, and NNCF's progress bars are hidden when stderr is not a terminal. :class:`Monitor` wraps
the validation function (every evaluation of a model passes through it) and reads NNCF's log
messages to name the stage; it writes one line per validation, per iteration and per ranking
(during a ranking, one line at most every ``interval`` seconds) to stderr.

Which operations were kept in floating point is read from the models, not from the log: NNCF writes
the model it quantized before restoring accuracy to ``intermediate_model_dir`` (a public option),
and the operations quantized there but not in the result are the ones accuracy control kept in
floating point (:func:`kept_in_float`). An operation counts as quantized when one of its inputs comes
from a quantizer: an OpenVINO ``FakeQuantize`` (or a compressed low-precision weight constant), an
ONNX ``DequantizeLinear``. The stage names come from NNCF 3.4's messages; with other messages the
lines still come (one per evaluation), only less specific.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from .models import is_onnx

#: Operation types that pass quantized values through (NNCF moves quantizers across them) or read
#: only their shape: listed as quantized they would only repeat their neighbour.
AGNOSTIC = frozenset(
    {
        "Broadcast", "Concat", "Crop", "DepthToSpace", "Flatten", "Gather", "Identity", "MaxPool", "Pad",
        "ReduceMax", "Reshape", "Result", "Shape", "ShapeOf", "ShuffleChannels", "Slice", "SpaceToDepth", "Split",
        "Squeeze", "StridedSlice", "Tile", "Transpose", "Unsqueeze", "VariadicSplit",
    }
)  # fmt: skip
_OV_QUANTIZERS = frozenset({"FakeQuantize", "FakeConvert"})
#: A compressed weight: a low-precision constant, converted and rescaled on the way to its operation.
_OV_DEQUANTIZE = frozenset({"Convert", "Subtract", "Multiply", "Reshape", "Transpose", "Unsqueeze", "Squeeze"})
_LOW_PRECISION = frozenset({"i8", "u8", "i4", "u4", "nf4", "f8e4m3", "f8e5m2", "f4e2m1"})
_ONNX_QUANTIZERS = frozenset({"QuantizeLinear", "DequantizeLinear"})
#: Bytes of validation items kept in memory after their first pass. NNCF reads the validation set
#: once per model it validates or ranks (2 + one per group of quantizers + one per iteration), and
#: making a generator's items again each time cost about 4x their inference on Tiny Darknet here;
#: a larger set is made again on every pass (memory does not grow without bound).
VALIDATION_KEEP = 1 << 30
#: Stage of the restorer -> the report's name for the time spent in it.
STAGES = ("quantize", "validate", "rank", "iterate")


# ----------------------------------------------------------------------------- operations kept in float


def _ov_compressed(node: Any, depth: int = 0) -> bool:
    """Whether ``node`` is a low-precision constant or its dequantization (Convert, scale, ...)."""
    kind = node.get_type_name()
    if kind == "Constant":
        return node.get_output_element_type(0).get_type_name() in _LOW_PRECISION
    if kind in _OV_DEQUANTIZE and depth < 5:
        return any(_ov_compressed(i.get_source_output().get_node(), depth + 1) for i in node.inputs())
    return False


def _ov_quantized(model: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for node in model.get_ordered_ops():
        kind = node.get_type_name()
        if kind in _OV_QUANTIZERS or kind in AGNOSTIC or kind in ("Constant", "Parameter") or _ov_compressed(node):
            continue
        for port in node.inputs():
            source = port.get_source_output().get_node()
            if source.get_type_name() in _OV_QUANTIZERS or _ov_compressed(source):
                out[node.get_friendly_name()] = kind
                break
    return out


def _onnx_quantized(model: Any) -> dict[str, str]:
    producer = {name: node.op_type for node in model.graph.node for name in node.output}
    out: dict[str, str] = {}
    for k, node in enumerate(model.graph.node):
        if node.op_type in _ONNX_QUANTIZERS or node.op_type in AGNOSTIC:
            continue
        if any(producer.get(name) == "DequantizeLinear" for name in node.input):
            out[node.name or f"{node.op_type}_{k}"] = node.op_type
    return out


def quantized_operations(model: Any) -> dict[str, str]:
    """The operations of an INT8 model that take a quantized input: name -> type, in graph order.

    ``model``: an ``openvino.Model`` (``FakeQuantize`` inputs, or compressed weights) or an
    ``onnx.ModelProto`` (``DequantizeLinear`` inputs)."""
    return _onnx_quantized(model) if is_onnx(model) else _ov_quantized(model)


def kept_in_float(before: Any, after: Any) -> list[dict[str, str]]:
    """The operations quantized in ``before`` (the INT8 model NNCF started from) but not in
    ``after`` (the model accuracy control returned), in graph order: ``{"name", "type"}``."""
    now = quantized_operations(after)
    return [{"name": name, "type": kind} for name, kind in quantized_operations(before).items() if name not in now]


def read_intermediate(folder: str | Path, backend: str) -> Any:
    """The model NNCF wrote to ``intermediate_model_dir`` before restoring accuracy (None if absent)."""
    folder = Path(folder)
    if backend == "onnx":
        path = folder / "intermediate_model.onnx"
        if not path.exists():
            return None
        import onnx

        return onnx.load(str(path))
    path = folder / "intermediate_model.xml"
    if not path.exists():
        return None
    import openvino as ov

    return ov.Core().read_model(str(path))


# ----------------------------------------------------------------------------- progress


class _Counted:
    """An iterable that counts what its consumer took."""

    def __init__(self, items: Iterable[Any]) -> None:
        self.items, self.count = items, 0

    def __iter__(self) -> Iterator[Any]:
        for item in self.items:
            self.count += 1
            yield item


class _NNCFLog(logging.Handler):
    """Hands NNCF's log messages to the monitor (its own handlers print them as before)."""

    def __init__(self, monitor: Monitor) -> None:
        super().__init__(logging.DEBUG)
        self.monitor = monitor

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.monitor.on_log(record.getMessage())
        except Exception:  # progress must never break the quantization
            pass


_VALIDATION = re.compile(r"Validation of (\w+) model was started")
_TOTAL = re.compile(r"Total number of quantized operations in the model: (\d+)")
_REVERTED = re.compile(r"Reverted (\d+) operations to the floating-point precision")
_RANKING = ("metric is used to rank quantizers", "Calculating ranking scores")
_MODEL_NAMES = {"initial": "FP32", "quantized": "INT8", "tuned": "tuned INT8"}


class Monitor:
    """Progress and report of one ``nncf.quantize_with_accuracy_control`` run.

    Pass the monitor as the validation function, inside :meth:`watching`::

        monitor = Monitor(top1_agreement(model), max_drop=0.01, items=len(validation))
        with monitor.watching() as folder:
            params = AdvancedAccuracyRestorerParameters(intermediate_model_dir=folder)
            int8 = nncf.quantize_with_accuracy_control(model, calibration, validation, monitor,
                                                        max_drop=0.01, advanced_accuracy_restorer_parameters=params)
            monitor.finish(int8, folder)
        monitor.report()  # times, metrics, iterations, operations kept in floating point

    ``write`` takes each progress line (default: printed to stderr); ``interval``: seconds between
    lines during a ranking."""

    def __init__(
        self,
        validation_fn: Callable[[Any, Iterable[Any]], Any],
        *,
        max_drop: float,
        drop_type: str = "absolute",
        metric: str = "metric",
        items: int | None = None,
        write: Callable[[str], None] | None = None,
        interval: float = 10.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.validation_fn = validation_fn
        self.max_drop, self.drop_type, self.metric, self.items = max_drop, drop_type, metric, items
        self._write, self.interval, self.clock = write, interval, clock
        self.started = self._stage_started = self._last_line = clock()
        self.seconds: float | None = None
        self.stage, self.model_name = "quantize", ""
        self.times = dict.fromkeys(STAGES, 0.0)
        self.metrics: dict[str, float] = {}
        self.evaluations = self.evaluated_items = 0
        self.iterations: list[dict[str, Any]] = []  # each: reverted (names), metric, drop, undone
        self.rankings: list[dict[str, Any]] = []  # each: groups, items, seconds
        self.nncf_quantized: int | None = None
        self.notes: list[str] = []
        self.kept: list[dict[str, str]] | None = None
        self.quantized_before: int | None = None

    # --- the validation function NNCF calls
    def __call__(self, compiled_model: Any, items: Iterable[Any]) -> Any:
        counted = _Counted(items)
        started = self.clock()
        result = self.validation_fn(compiled_model, counted)
        seconds = self.clock() - started
        self.evaluations += 1
        self.evaluated_items += counted.count
        try:
            value = float(result[0])
        except Exception:  # a validation function of NNCF's other form (no metric): nothing to show
            value = None
        self._evaluated(value, counted.count, seconds)
        return result

    def _evaluated(self, value: float | None, count: int, seconds: float) -> None:
        shown = "–" if value is None else f"{value:.4f}"
        if self.stage == "validate":
            if count <= 1 and self.items != 1:  # NNCF's probe of the function's return type
                return
            name = self.model_name or "model"
            if value is not None:
                self.metrics.setdefault(name, value)
            text = f"{name} model: {self.metric} {shown} on {count} items ({seconds:.1f} s)"
            if name != "FP32" and value is not None and "FP32" in self.metrics:
                drop = self.drop(value)
                verdict = "within" if drop <= self.max_drop else "over"
                text += f", drop {drop:.4f} {verdict} max {self.max_drop:g}"
                if verdict == "over":
                    text += "; restoring accuracy"
            self.line(text)
        elif self.stage == "rank":
            rank = self.rankings[-1]
            rank["groups"] += 1
            rank["items"] = count
            if self.clock() - self._last_line >= self.interval:
                self.line(f"ranking: {rank['groups']} groups of quantizers scored on {count} items each")
        elif self.stage == "iterate" and self.iterations and "metric" not in self.iterations[-1]:
            it = self.iterations[-1]
            it["metric"] = value
            drop = self.drop(value) if value is not None and "FP32" in self.metrics else None
            it["drop"] = drop
            names = it["reverted"]
            listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            kept = sum(len(i["reverted"]) for i in self.iterations if not i.get("undone"))
            text = (
                f"iteration {len(self.iterations)}: reverted {len(names)} operation(s) to floating point ({listed}),"
                f" {kept} in all: {self.metric} {shown}"
            )
            if drop is not None:
                text += f", drop {drop:.4f} (max {self.max_drop:g})"
            self.line(text + f" ({seconds:.1f} s)")
        else:
            self.line(f"evaluation {self.evaluations}: {self.metric} {shown} on {count} items ({seconds:.1f} s)")

    def drop(self, value: float) -> float:
        """The drop of ``value`` from the FP32 model's metric, as NNCF computes it (``drop_type``)."""
        initial = self.metrics["FP32"]
        if value >= initial:
            return initial - value
        return abs(1 - value / initial) if self.drop_type == "relative" and initial else initial - value

    # --- NNCF's log: the stage
    def on_log(self, message: str) -> None:
        if m := _VALIDATION.search(message):
            self._enter("validate")
            self.model_name = _MODEL_NAMES.get(m.group(1), m.group(1))
        elif m := _TOTAL.search(message):
            self.nncf_quantized = int(m.group(1))
        elif any(text in message for text in _RANKING):
            if self.stage != "rank":
                self._enter("rank")
                self.rankings.append({"groups": 0, "items": 0, "seconds": 0.0})
                again = " again (the remaining groups)" if len(self.rankings) > 1 else ""
                self.line(f"ranking groups of quantizers{again}: the metric with each group reverted alone")
        elif "Changing the scope of quantizer nodes was started" in message:
            self._enter("iterate")
        elif m := _REVERTED.search(message):
            self._enter("iterate")
            names = [line.strip() for line in message.splitlines()[1:] if line.strip()]
            self.iterations.append({"reverted": names})
        elif "Re-calculating ranking scores" in message:
            if self.iterations:
                self.iterations[-1]["undone"] = True
                self.line(f"iteration {len(self.iterations)} undone: the drop grew")
            self._enter("rank")
            self.rankings.append({"groups": 0, "items": 0, "seconds": 0.0})
            self.line("ranking the remaining groups of quantizers again")
        elif any(
            text in message
            for text in (
                "could not achieve the required",
                "Maximum number of iteration",
                "All layers have been checked",
            )
        ):
            self.notes.append(message.strip().rstrip("."))

    def _enter(self, stage: str) -> None:
        now = self.clock()
        self.times[self.stage] = self.times.get(self.stage, 0.0) + now - self._stage_started
        if self.stage == "rank" and stage != "rank" and self.rankings:
            rank = self.rankings[-1]
            rank["seconds"] = round(now - self._stage_started, 2)
            self.line(f"ranked {rank['groups']} groups of quantizers in {rank['seconds']:.1f} s")
        if stage == "validate" and self.stage == "quantize":
            self.line(f"quantized in {now - self.started:.1f} s; validating on {self.items or '?'} items")
        self.stage, self._stage_started = stage, now

    # --- output
    def line(self, text: str) -> None:
        self._last_line = now = self.clock()
        line = f"accuracy control [{now - self.started:6.1f} s] {text}"
        if self._write is not None:
            self._write(line)
        else:
            stream: TextIO = sys.stderr
            print(line, file=stream, flush=True)

    @contextlib.contextmanager
    def watching(self) -> Iterator[str]:
        """Listen to NNCF's log while the block runs; yields a temporary folder for NNCF's
        ``intermediate_model_dir`` (removed afterwards)."""
        logger = logging.getLogger("nncf")
        handler = _NNCFLog(self)
        level, levels = logger.level, [(h, h.level) for h in logger.handlers]
        if logger.getEffectiveLevel() > logging.INFO:  # the user quietened NNCF: keep its output as it was
            for h, _ in levels:
                h.setLevel(max(h.level, logger.getEffectiveLevel()))
            logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        self.started = self._stage_started = self._last_line = self.clock()
        more = f"; validation on {self.items} items" if self.items else ""
        self.line(f"max drop {self.max_drop:g} ({self.drop_type}) of {self.metric}{more}; quantizing")
        try:
            with tempfile.TemporaryDirectory(prefix="synthcalib-ac-") as folder:
                yield folder
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
            for h, old in levels:
                h.setLevel(old)
            self._enter("done")
            self.seconds = self.clock() - self.started

    def finish(self, model: Any, folder: str | Path | None = None, backend: str = "openvino") -> None:
        """Compare the result with the model NNCF wrote to ``folder`` before restoring accuracy, and
        print the closing line (call it inside :meth:`watching`)."""
        before = read_intermediate(folder, backend) if folder is not None else None
        if before is not None:
            self.quantized_before = len(quantized_operations(before))
            self.kept = kept_in_float(before, model)
        elif not self.iterations:  # NNCF returned its quantized model as it was
            self.kept = []
        final, drop = self.final_metric()
        text = f"done in {self.clock() - self.started:.1f} s"
        if self.kept is not None:
            names = [k["name"] for k in self.kept]
            listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            of = f" of {self.quantized_before} quantized" if self.quantized_before is not None else ""
            text += f": {len(names)}{of} operations kept in floating point" + (f" ({listed})" if names else "")
        if final is not None:
            text += f"; {self.metric} {final:.4f}"
            if drop is not None:
                text += f", drop {drop:.4f} {'within' if drop <= self.max_drop else 'over'} max {self.max_drop:g}"
        self.line(text)

    def final_metric(self) -> tuple[float | None, float | None]:
        """The metric of the model returned (the last iteration not undone; else the INT8 model's)
        and its drop."""
        kept = [i for i in self.iterations if not i.get("undone") and i.get("metric") is not None]
        value = kept[-1]["metric"] if kept else self.metrics.get("tuned INT8", self.metrics.get("INT8"))
        if value is None or "FP32" not in self.metrics:
            return value, None
        return value, self.drop(value)

    def report(self) -> dict[str, Any]:
        """What the quantize report shows under ``accuracy_control``."""
        final, drop = self.final_metric()
        total = self.seconds if self.seconds is not None else self.clock() - self.started
        return {
            "max_drop": self.max_drop,
            "drop_type": self.drop_type,
            "metric": self.metric,
            "seconds": round(total, 2),
            "time_split": {k: round(v, 2) for k, v in self.times.items() if k in STAGES},
            "fp32_metric": self.metrics.get("FP32"),
            "int8_metric": self.metrics.get("INT8"),
            "final_metric": final,
            "final_drop": None if drop is None else round(drop, 6),
            "reached": None if drop is None else drop <= self.max_drop,
            "iterations": len(self.iterations),
            "iterations_undone": sum(1 for i in self.iterations if i.get("undone")),
            # each iteration: the operations it reverted, the metric and drop after it, undone when NNCF stepped back
            "iteration_log": [
                {
                    "reverted": i["reverted"],
                    "metric": i.get("metric"),
                    "drop": i.get("drop"),
                    "undone": bool(i.get("undone")),
                }
                for i in self.iterations
            ],
            "rankings": self.rankings,
            "evaluations": self.evaluations,
            "evaluated_items": self.evaluated_items,
            "quantized_operations": self.quantized_before,
            "nncf_quantized_operations": self.nncf_quantized,
            "kept_fp32": self.kept,
            "notes": self.notes,
        }


def summary(report: dict[str, Any]) -> list[str]:
    """The text report's lines for an ``accuracy_control`` report (:meth:`Monitor.report`)."""

    def num(v: Any) -> str:
        return "–" if v is None else f"{v:.4f}"

    split = ", ".join(f"{k} {v:.1f}" for k, v in report.get("time_split", {}).items() if v)
    source = (
        f" on {report['validation_samples']} items of {report['validation_source']}"
        if "validation_source" in report
        else ""
    )
    reached = {True: "reached", False: "NOT reached", None: "drop unknown"}[report.get("reached")]
    lines = [
        f"{report['metric']}{source}: FP32 {num(report['fp32_metric'])}, INT8 {num(report['int8_metric'])},"
        f" after control {num(report['final_metric'])} (max drop {report['max_drop']:g} {report['drop_type']}:"
        f" {reached}); {report['seconds']:.1f} s ({split}), {report['iterations']} iterations,"
        f" {report['evaluations']} evaluations"
    ]
    kept = report.get("kept_fp32")
    if kept is not None:
        of = f" of {report['quantized_operations']}" if report.get("quantized_operations") is not None else ""
        names = ", ".join(f"{k['name']} ({k['type']})" for k in kept)
        lines.append(f"{len(kept)}{of} quantized operations" + (f": {names}" if kept else ""))
    return lines
