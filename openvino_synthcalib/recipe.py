"""Quantization recipes: which NNCF (or POT) range-estimation parameters to calibrate a model with.

A fixed recipe names one candidate (``nncf``: the quantizer's defaults; ``minmax``; ``histogram``).
The ``adaptive`` recipe chooses for *this* model without real data: it quantizes the model with
each candidate on the same calibration items, then measures every INT8 model against the FP32
model on an independent synthetic scoring stream (the calibration source with another seed, or a
``score_source``) and keeps the candidate that changes the FP32 predictions least (fewest top-1
flips, then the smallest mean KL divergence of the output distributions). Synthetic flip rates
rank the candidates; they are not estimates of the flip rate on real data.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .defaults import DEFAULTS
from .errors import SynthcalibError


@dataclass(frozen=True)
class Candidate:
    """A range-estimation setting, for NNCF (``RangeEstimatorParametersSet`` name, None = defaults)
    and, where POT has an equivalent, for POT's DefaultQuantization (``activations.range_estimator``)."""

    name: str
    help: str
    nncf: str | None
    pot: dict[str, Any] | None
    pot_available: bool = True


CANDIDATES: dict[str, Candidate] = {
    c.name: c
    for c in (
        Candidate("nncf", "the quantizer's defaults (activation ranges: mean of per-sample min/max)", None, None),
        Candidate(
            "minmax",
            "activation ranges from the global min/max over the calibration items",
            "MINMAX",
            {"min": {"type": "min", "aggregator": "min"}, "max": {"type": "max", "aggregator": "max"}},
        ),
        Candidate(
            "histogram",
            "activation ranges that minimise the quantization error of a histogram of the values",
            "HISTOGRAM",
            None,
            pot_available=False,
        ),
    )
}
ADAPTIVE = "adaptive"
#: What ``adaptive`` chooses from, in order of preference on ties.
ADAPTIVE_CANDIDATES = ("nncf", "minmax", "histogram")
RECIPES = (ADAPTIVE, *CANDIDATES)
#: The scoring stream's seed is the calibration seed plus this (independent items, reproducible).
SCORE_SEED_OFFSET = 1000


def check_name(name: Any, flag: str = "recipe") -> str:
    """A recipe name, or a one-line error listing them."""
    if not isinstance(name, str) or name.lower() not in RECIPES:
        raise SynthcalibError(f"{flag}: expected one of {', '.join(RECIPES)}, got {name!r}")
    return name.lower()


def default_for(source: Any) -> str:
    """``adaptive`` for synthetic sources; real images keep the quantizer's defaults unless asked."""
    return "nncf" if getattr(source, "real", False) else ADAPTIVE


def advanced_parameters(candidate: str, base: Any = None) -> Any:
    """``nncf.AdvancedQuantizationParameters`` for a candidate (``None`` for plain defaults)."""
    from dataclasses import replace

    setting = CANDIDATES[candidate].nncf
    if setting is None:
        return base
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    params = base or AdvancedQuantizationParameters()
    return replace(params, activations_range_estimator_params=getattr(RangeEstimatorParametersSet, setting))


# ----------------------------------------------------------------------------- scoring


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def score(fp32_logits: np.ndarray, int8_logits: np.ndarray) -> dict[str, float]:
    """How much an INT8 model changes the FP32 model on the same items: top-1 flip rate and mean
    KL(FP32 || INT8) of the softmax outputs."""
    a = fp32_logits.reshape(len(fp32_logits), -1)
    b = int8_logits.reshape(len(int8_logits), -1)
    lp, lq = _log_softmax(a), _log_softmax(b)
    kl = float((np.exp(lp) * (lp - lq)).sum(axis=1).mean())
    return {"flip_rate": float((a.argmax(1) != b.argmax(1)).mean()), "kl": kl}


def choose(scores: dict[str, dict[str, float]]) -> str:
    """The candidate with the fewest flips, then the smallest KL (then the earlier listed)."""
    order = list(scores)
    return min(order, key=lambda c: (scores[c]["flip_rate"], scores[c]["kl"], order.index(c)))


# ----------------------------------------------------------------------------- the recipe


@dataclass
class Recipe(Mapping):
    """The outcome of :func:`recipe`: keyword arguments for NNCF, and how they were chosen.

    ``nncf.quantize(model, calibration, **recipe)`` and
    ``nncf.quantize_with_accuracy_control(..., **recipe.accuracy_control_kwargs)``. ``model`` is the
    chosen candidate's INT8 model when the recipe already quantized it (adaptive), else None.
    """

    requested: str
    chosen: str
    advanced: Any = None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    score_source: str | None = None
    score_samples: int = 0
    seconds: float = 0.0
    model: Any = None
    candidate_models: dict[str, Any] = field(default_factory=dict)

    @property
    def quantize_kwargs(self) -> dict[str, Any]:
        return {} if self.advanced is None else {"advanced_parameters": self.advanced}

    @property
    def accuracy_control_kwargs(self) -> dict[str, Any]:
        return {} if self.advanced is None else {"advanced_quantization_parameters": self.advanced}

    def __getitem__(self, key: str) -> Any:
        return self.quantize_kwargs[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.quantize_kwargs)

    def __len__(self) -> int:
        return len(self.quantize_kwargs)

    def describe(self) -> dict[str, Any]:
        """A JSON-able report: what was asked, what won, the synthetic scores, the time spent."""
        out: dict[str, Any] = {"requested": self.requested, "chosen": self.chosen}
        if self.scores:
            out.update(
                score_source=self.score_source,
                score_samples=self.score_samples,
                scores={k: {m: round(v, 6) for m, v in s.items()} for k, s in self.scores.items()},
                seconds=round(self.seconds, 2),
            )
        return out

    def summary(self) -> str:
        """One line for reports: ``adaptive -> minmax (synthetic flips: nncf 1.20%, ...)``."""
        if not self.scores:
            return self.chosen
        flips = ", ".join(f"{k} {100 * s['flip_rate']:.2f}%" for k, s in self.scores.items())
        return (
            f"{self.requested} -> {self.chosen} (synthetic top-1 flips on {self.score_samples} items of "
            f"{self.score_source}: {flips}; {self.seconds:.1f} s)"
        )


def _materialized(calibration: Any, limit_bytes: int = 256 << 20) -> Any:
    """The calibration items in memory when they fit, so that every candidate reads the same items
    without generating them again; otherwise the dataset as given."""
    import nncf

    from .backends import as_array

    stream = getattr(calibration, "stream", None)
    if stream is None or getattr(calibration, "with_labels", False):
        return calibration
    first = next(iter(calibration))
    if as_array(first).nbytes * len(stream) > limit_bytes:
        return calibration
    return nncf.Dataset(list(calibration))


def predict_logits(model: Any, batches: list[np.ndarray]) -> np.ndarray:
    """The first output of a model as [N, K] for input batches: a compiled OpenVINO model (with
    asynchronous requests), an ONNX model (ONNX Runtime) or a torch module."""
    from .backends import logits

    if not hasattr(model, "create_infer_request"):
        return np.concatenate([logits(model, b).reshape(len(b), -1) for b in batches])
    from .inference import run_ordered

    def read(request: Any) -> np.ndarray:
        out = request.get_output_tensor(0)
        return np.array(out.data).reshape(out.shape[0], -1)

    return np.concatenate(list(run_ordered(model, ({0: b} for b in batches), 0, read, "the model being scored")))


def scoring_batches(model: Any, score_stream: Any, batch: int = 64) -> list[np.ndarray]:
    """Scoring inputs, batched for ``model``'s batch dimension (its static batch where it has one)."""
    from .backends import target
    from .models import static_dims

    t = target(model)
    if t is None:
        fixed = static_dims(model.inputs[0].get_partial_shape())[0]
    else:
        fixed = (t.dims or [None])[0]
    items = np.concatenate([x for x, _ in score_stream.batches()])
    step = fixed or batch
    if fixed and len(items) % fixed:
        items = items[: len(items) - len(items) % fixed]
    return [items[i : i + step] for i in range(0, len(items), step)]


def _copy(model: Any) -> Any:
    """A copy NNCF may change: ``openvino.Model.clone``, else a deep copy (ONNX, torch)."""
    import copy

    return model.clone() if hasattr(model, "clone") and hasattr(model, "inputs") else copy.deepcopy(model)


def recipe(
    model: Any,
    calibration: Any,
    name: str = ADAPTIVE,
    *,
    score_source: Any = None,
    score_samples: int = DEFAULTS["recipe_score_samples"],
    score_seed: int | None = None,
    candidates: tuple[str, ...] = ADAPTIVE_CANDIDATES,
    keep_candidates: bool = False,
    device: str = DEFAULTS["device"],
    precision: str | None = DEFAULTS["calibration_precision"],
    **nncf_kwargs: Any,
) -> Recipe:
    """The NNCF keyword arguments to quantize ``model`` with ``calibration``.

    ``model`` is an ``openvino.Model``, an ``onnx.ModelProto`` or a ``torch.nn.Module`` (NNCF's
    backends). ``name`` is ``adaptive`` or a candidate (``nncf``, ``minmax``, ``histogram``). For ``adaptive``,
    ``calibration`` is a :class:`~openvino_synthcalib.dataset.Dataset` (its source, transform and
    seed give the scoring stream) unless ``score_source`` names another source; the candidates are
    quantized with ``nncf_kwargs`` (``subset_size``, ``preset``, ...), scored on ``score_samples``
    items and the best kept (``Recipe.model``; with ``keep_candidates``, every candidate's model).
    """
    name = check_name(name)
    if name != ADAPTIVE:
        return Recipe(name, name, advanced_parameters(name, nncf_kwargs.get("advanced_parameters")))
    for c in candidates:
        check_name(c, "candidates")
        if c == ADAPTIVE:
            raise SynthcalibError("candidates: 'adaptive' is not a candidate")
    if isinstance(score_samples, bool) or not isinstance(score_samples, int) or score_samples <= 0:
        raise SynthcalibError(f"score_samples: expected a positive integer, got {score_samples!r}")
    import nncf

    from .backends import backend_of, prepare_reference
    from .stream import make_stream

    if backend_of(model) == "openvino" and not hasattr(model, "inputs"):
        raise SynthcalibError("recipe: the adaptive recipe needs the model object being quantized, not a path")

    started = time.perf_counter()
    stream = getattr(calibration, "stream", None)
    source = score_source if score_source is not None else getattr(stream, "source", None)
    if source is None:
        raise SynthcalibError(
            "recipe: the adaptive recipe scores candidates on synthetic items: give a synthcalib.Dataset "
            "as calibration, or score_source (e.g. 'generator:cifar10')"
        )
    seed = score_seed if score_seed is not None else getattr(stream, "seed", 0) + SCORE_SEED_OFFSET
    base = nncf_kwargs.pop("advanced_parameters", None)
    with make_stream(
        source,
        score_samples,
        model=model,
        transform=getattr(stream, "transform", None),
        seed=seed,
        device=device,
        precision=precision,
    ) as score_stream:
        batches = scoring_batches(model, score_stream)
        source_spec = score_stream.source.spec
    # OpenVINO models are scored with FP32 arithmetic, on CPUs defaulting to bf16 too
    reference = predict_logits(prepare_reference(model, device, "f32"), batches)
    data = _materialized(calibration)
    scores: dict[str, dict[str, float]] = {}
    quantized: dict[str, Any] = {}
    for candidate in candidates:
        params = advanced_parameters(candidate, base)
        kwargs = dict(nncf_kwargs, **({"advanced_parameters": params} if params is not None else {}))
        begun = time.perf_counter()
        int8 = nncf.quantize(_copy(model), data, **kwargs)
        seconds = time.perf_counter() - begun
        runnable = prepare_reference(int8, device, "f32")
        scores[candidate] = {**score(reference, predict_logits(runnable, batches)), "quantize_seconds": seconds}
        quantized[candidate] = int8
    chosen = choose(scores)
    return Recipe(
        ADAPTIVE,
        chosen,
        advanced_parameters(chosen, base),
        scores=scores,
        score_source=source_spec,
        score_samples=sum(len(b) for b in batches),
        seconds=time.perf_counter() - started,
        model=quantized[chosen],
        candidate_models=quantized if keep_candidates else {},
    )
