"""Quantization recipes: which NNCF (or POT) activation quantization parameters to calibrate with.

A fixed recipe names one candidate (``nncf``: the quantizer's defaults; ``minmax``; ``histogram``;
``mixed_minmax`` and ``mixed_histogram``: the same range estimators with asymmetric activation
ranges, NNCF's ``MIXED`` preset). The ``adaptive`` recipe chooses for *this* model without real
data: it quantizes the model with each candidate on the same calibration items, then runs every
INT8 model and the FP32 model on an independent synthetic scoring stream (the calibration source
with another seed, or a ``score_source``) and keeps the candidate whose output distribution stays
closest to FP32's (smallest mean KL divergence, then fewest top-1 flips) when it leads the first
candidate (NNCF's defaults) decisively, else the first. Synthetic scores rank the candidates; they
are not estimates of the flip rate on real data.

A generator's typical samples drive a classifier's deep activations less far than real images do,
so a candidate whose ranges clip what real images reach would score well on items like the
calibration ones. The scoring stream therefore draws the generator's latents wider
(``score_latent_scale`` times their standard deviation): candidates are judged on the tails.

A ``preset`` given by the caller wins over a candidate's: candidates then differ only by their
range estimator (and the ones that became duplicates are dropped).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import nncf_pipelines
from .backends import as_array, backend_of, logits, prepare_reference, target
from .checks import checked, integer
from .defaults import DEFAULTS
from .errors import SynthcalibError
from .inference import run_ordered
from .specs import check_number
from .stream import make_stream

_POT_MINMAX = {"min": {"type": "min", "aggregator": "min"}, "max": {"type": "max", "aggregator": "max"}}


@dataclass(frozen=True)
class Candidate:
    """An activation quantization setting: for NNCF a ``RangeEstimatorParametersSet`` name (None =
    defaults) and a ``QuantizationPreset`` value (None = the caller's or NNCF's default); for POT's
    DefaultQuantization, where it has an equivalent, ``activations.range_estimator`` and ``preset``."""

    name: str
    help: str
    nncf: str | None
    preset: str | None = None
    pot: dict[str, Any] | None = None
    pot_available: bool = True


CANDIDATES: dict[str, Candidate] = {
    c.name: c
    for c in (
        Candidate("nncf", "the quantizer's defaults (activation ranges: mean of per-sample min/max)", None),
        Candidate(
            "minmax", "activation ranges from the global min/max over the calibration items", "MINMAX", pot=_POT_MINMAX
        ),
        Candidate(
            "histogram",
            "activation ranges that minimise the quantization error of a histogram of the values",
            "HISTOGRAM",
            pot_available=False,
        ),
        Candidate(
            "mixed_minmax",
            "minmax with asymmetric activation ranges (NNCF's MIXED preset)",
            "MINMAX",
            "mixed",
            pot=_POT_MINMAX,
        ),
        Candidate(
            "mixed_histogram",
            "histogram with asymmetric activation ranges (NNCF's MIXED preset)",
            "HISTOGRAM",
            "mixed",
            pot_available=False,
        ),
    )
}
ADAPTIVE = "adaptive"
#: What ``adaptive`` chooses from, in order of preference on ties. Calibrated on the student, each
#: asymmetric variant flipped at most 0.05 pp more real test images than its symmetric twin on the
#: CNNs, and far fewer on GELU models (``benchmarks/results/calibration_sources.md``), so the
#: symmetric ones are not tried by default: three candidates bound the cost.
ADAPTIVE_CANDIDATES = ("nncf", "mixed_minmax", "mixed_histogram")
RECIPES = (ADAPTIVE, *CANDIDATES)
#: The scoring stream's seed is the calibration seed plus this (independent items, reproducible).
SCORE_SEED_OFFSET = 1000


def check_latent_scale(value: Any, flag: str = "score_latent_scale") -> float:
    """A positive finite number, or a one-line error naming ``flag``."""
    return check_number(value, flag, positive=True)


def scoring_source(source: Any, latent_scale: float) -> Any:
    """The calibration source as the scoring stream draws it: a generator's latents ``latent_scale``
    times as wide (a view sharing its compiled model); any other source as it is."""
    widen = getattr(source, "with_latent_scale", None)
    if widen is None or latent_scale == 1.0:
        return source
    return widen(source.latent_scale * latent_scale)


def check_name(name: Any, flag: str = "recipe") -> str:
    """A recipe name, or a one-line error listing them."""
    if not isinstance(name, str) or name.lower() not in RECIPES:
        raise SynthcalibError(f"{flag}: expected one of {', '.join(RECIPES)}, got {name!r}")
    return name.lower()


def default_for(source: Any) -> str:
    """``adaptive`` for synthetic sources; real images keep the quantizer's defaults unless asked."""
    return "nncf" if getattr(source, "real", False) else ADAPTIVE


def advanced_parameters(candidate: str, base: Any = None) -> Any:
    """``nncf.AdvancedQuantizationParameters`` for a candidate's range estimator (``base`` for none)."""
    from dataclasses import replace

    setting = CANDIDATES[candidate].nncf
    if setting is None:
        return base
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    params = base or AdvancedQuantizationParameters()
    return replace(params, activations_range_estimator_params=getattr(RangeEstimatorParametersSet, setting))


def nncf_kwargs_for(candidate: str, base_advanced: Any = None, caller_preset: bool = False) -> dict[str, Any]:
    """The keyword arguments a candidate adds to ``nncf.quantize`` (``preset`` only when the caller
    gave none)."""
    out: dict[str, Any] = {}
    params = advanced_parameters(candidate, base_advanced)
    if params is not None:
        out["advanced_parameters"] = params
    preset = CANDIDATES[candidate].preset
    if preset is not None and not caller_preset:
        import nncf

        out["preset"] = nncf.QuantizationPreset(preset)
    return out


def effective_candidates(candidates: tuple[str, ...], caller_preset: bool) -> tuple[str, ...]:
    """``candidates`` as they are when the caller sets the preset: a candidate that differs from
    another only by its preset becomes that one (``mixed_minmax`` -> ``minmax``), without repeats."""
    if not caller_preset:
        return tuple(dict.fromkeys(candidates))
    plain = {c.nncf: c.name for c in reversed(CANDIDATES.values()) if c.preset is None}
    return tuple(dict.fromkeys(plain[CANDIDATES[c].nncf] for c in candidates))


# ----------------------------------------------------------------------------- scoring


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def per_item(fp32_logits: np.ndarray, int8_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each item's KL(FP32 || INT8) of the softmax outputs, and whether its top-1 flipped."""
    a = fp32_logits.reshape(len(fp32_logits), -1)
    b = int8_logits.reshape(len(int8_logits), -1)
    lp, lq = _log_softmax(a), _log_softmax(b)
    return (np.exp(lp) * (lp - lq)).sum(axis=1), a.argmax(1) != b.argmax(1)


def score(fp32_logits: np.ndarray, int8_logits: np.ndarray) -> dict[str, float]:
    """How much an INT8 model changes the FP32 model on the same items: top-1 flip rate and mean
    KL(FP32 || INT8) of the softmax outputs."""
    kl, flips = per_item(fp32_logits, int8_logits)
    return {"flip_rate": float(flips.mean()), "kl": float(kl.mean())}


def describe_scores(scores: dict[str, dict[str, float]], samples: int, source: str | None) -> str:
    """``synthetic scores on N items of SOURCE (KL x1e-3 / top-1 flips): nncf 5.45 / 2.48%, ...``."""
    parts = ", ".join(f"{k} {1000 * s['kl']:.3f} / {100 * s['flip_rate']:.2f}%" for k, s in scores.items())
    return f"synthetic scores on {samples} items of {source} (KL x1e-3 / top-1 flips): {parts}"


def choose(scores: dict[str, dict[str, float]]) -> str:
    """The candidate with the smallest KL, then the fewest flips (then the earlier listed).

    KL ranks first: it sees every item's whole output distribution, where a flip rate counts the
    few items near a decision boundary (on 1,000 scoring items, a handful); with 1,000 items it
    picked the candidate that was best on real test images more often (section "The score" of
    ``benchmarks/results/calibration_sources.md``)."""
    order = list(scores)
    return min(order, key=lambda c: (scores[c]["kl"], scores[c]["flip_rate"], order.index(c)))


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
    preset: Any = None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    score_source: str | None = None
    score_samples: int = 0
    seconds: float = 0.0
    model: Any = None
    candidate_models: dict[str, Any] = field(default_factory=dict)
    time_split: dict[str, float] = field(default_factory=dict)
    #: When the candidate with the smallest KL did not lead the first candidate decisively: its name
    #: and the z of its lead (the first candidate was kept).
    not_decisive: tuple[str, float] | None = None

    def _kwargs(self, advanced_key: str) -> dict[str, Any]:
        out = {} if self.preset is None else {"preset": self.preset}
        return out if self.advanced is None else {**out, advanced_key: self.advanced}

    @property
    def quantize_kwargs(self) -> dict[str, Any]:
        return self._kwargs("advanced_parameters")

    @property
    def accuracy_control_kwargs(self) -> dict[str, Any]:
        return self._kwargs("advanced_quantization_parameters")

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
                time_split={k: round(v, 2) for k, v in self.time_split.items()},
            )
        if self.not_decisive:
            out["not_decisive"] = {"leader": self.not_decisive[0], "z": round(self.not_decisive[1], 2)}
        return out

    def summary(self) -> str:
        """One line for reports: ``adaptive -> mixed_minmax (on 1000 items of ...: KL x1e-3 / flips: ...)``."""
        if not self.scores:
            return self.chosen
        scores = describe_scores(self.scores, self.score_samples, self.score_source)
        kept = ""
        if self.not_decisive:
            leader, z = self.not_decisive
            kept = f"; {self.chosen} kept: {leader}'s lower KL is not decisive (z {z:.1f} < {DECISIVE_Z:g})"
        return f"{self.requested} -> {self.chosen} ({scores}{kept}; {self.seconds:.1f} s)"


def _materialized(calibration: Any, limit_bytes: int = 256 << 20) -> Any:
    """The calibration items in memory when they fit, so that every candidate reads the same items
    without generating them again; otherwise the dataset as given."""
    import nncf

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
    if not hasattr(model, "create_infer_request"):
        outs = []
        for b in batches:
            outs.append(logits(model, b).reshape(len(b), -1))
        return np.concatenate(outs)

    def read(request: Any) -> np.ndarray:
        out = request.get_output_tensor(0)
        return np.array(out.data).reshape(out.shape[0], -1)

    return np.concatenate(list(run_ordered(model, ({0: b} for b in batches), 0, read, "the model being scored")))


def _batching(model: Any, score_stream: Any, batch: int = 64) -> tuple[int, int]:
    """``(batch, items)`` of scoring for ``model``: its static batch where it has one (the stream's
    items less what does not fill one), else ``batch`` and every item."""
    fixed = (target(model).dims or [None])[0]
    return fixed or batch, len(score_stream) - (len(score_stream) % fixed if fixed else 0)


def _rebatched(score_stream: Any, step: int, total: int) -> Iterator[np.ndarray]:
    """The first ``total`` items of ``score_stream`` in batches of ``step`` (the last may be shorter)."""
    pending: list[np.ndarray] = []
    buffered = done = 0
    for x, _ in score_stream.batches():
        pending.append(x)
        buffered += len(x)
        while done < total and (buffered >= step or buffered >= total - done):
            block = np.concatenate(pending)
            take = min(step, total - done)
            yield block[:take]
            pending, buffered, done = [block[take:]], len(block) - take, done + take
        if done >= total:
            return


def scoring_batches(model: Any, score_stream: Any, batch: int = 64) -> list[np.ndarray]:
    """Scoring inputs, batched for ``model``'s batch dimension (its static batch where it has one)."""
    return list(_rebatched(score_stream, *_batching(model, score_stream, batch)))


def _copy(model: Any) -> Any:
    """A copy NNCF may change: ``openvino.Model.clone``, else a deep copy (ONNX, torch)."""
    import copy

    return model.clone() if hasattr(model, "clone") and hasattr(model, "inputs") else copy.deepcopy(model)


#: The adaptive recipe scores in stages: after this many items (and at the end) it may stop, when
#: the leader's mean KL is below every other candidate's by ``DECISIVE_Z`` standard errors of the
#: paired per-item differences. Stages are whole scoring batches, so items batch as in one pass.
SCORE_STAGES = (256, 512)
#: One-sided z of an early stop. With two interim looks and two rivals, the chance that an early
#: stop keeps a candidate that scoring every item would not is at most 2 x 2 x P(Z > 3) = 0.54%
#: (normal approximation of the mean of paired per-item differences).
DECISIVE_Z = 3.0


class Scoring:
    """What the adaptive recipe judges candidates on: scoring items (batched for the model), drawn
    from the scoring stream as needed, and the FP32 model's outputs on them, each computed once."""

    def __init__(self, reference_model: Any, score_stream: Any, step: int, total: int) -> None:
        self._model = reference_model
        self._items = _rebatched(score_stream, step, total)
        self.step, self.total = step, total
        self.batches: list[np.ndarray] = []
        self.reference: list[np.ndarray] = []
        self.source = score_stream.source.spec
        self.seconds = 0.0

    @classmethod
    def prepare(cls, model: Any, score_stream: Any, device: str, target: Any = None, batch: int = 64) -> Scoring:
        """Scoring of ``model`` on ``score_stream`` (``target``: the model's Target where the caller
        has it): batches of the model's static batch, else ``batch``; all of the stream's items, less
        what does not fill a static batch. OpenVINO models run with FP32 arithmetic, on CPUs
        defaulting to bf16 too. Items are generated as :meth:`grow` asks for them."""
        begun = time.perf_counter()
        step, total = _batching(model if target is None else target, score_stream, batch)
        out = cls(prepare_reference(model, device, "f32"), score_stream, step, total)
        out.seconds = time.perf_counter() - begun
        return out

    @property
    def samples(self) -> int:
        return sum(len(b) for b in self.batches)

    def grow(self, items: int) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Score at least ``items`` items (at most ``total``): generate them, run the FP32 model.
        The new batches and the FP32 outputs on them (None when there were none to add)."""
        begun = time.perf_counter()
        new: list[np.ndarray] = []
        have = self.samples
        while have < min(items, self.total):
            new.append(next(self._items))
            have += len(new[-1])
        reference = None
        if new:
            reference = predict_logits(self._model, new)
            self.batches += new
            self.reference.append(reference)
        self.seconds += time.perf_counter() - begun
        return new, reference

    def stages(self) -> list[int]:
        """How many items each stage ends at: the interim looks that are whole batches short of the
        end, then every item."""
        looks = [s - s % self.step for s in SCORE_STAGES if self.step <= s - s % self.step < self.total]
        return [*dict.fromkeys(looks), self.total]


def _lead_z(kl: dict[str, np.ndarray], leader: str, other: str) -> float:
    """How many standard errors of the paired per-item differences ``leader``'s mean KL is below ``other``'s."""
    d = kl[other] - kl[leader]
    se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0
    return float(d.mean() / se) if se > 0 else 0.0  # no spread (one item, or equal outputs): no evidence


def keep_first_unless_decisive(kl: dict[str, np.ndarray], chosen: str) -> tuple[str, tuple[str, float] | None]:
    """``chosen`` when its KL leads the first candidate (the quantizer's defaults, ``nncf``, in the
    default list) by ``DECISIVE_Z`` standard errors, else the first candidate and (leader, z).

    On ImageNet the candidates' synthetic KLs differed by under 5% and their ranking did not follow
    real flips (``benchmarks/results/recipe_imagenet.md``), so an undecided lead replaced NNCF's
    defaults by chance; on CIFAR-10 the leads that paid off were several-fold."""
    first = next(iter(kl))
    if chosen == first:
        return chosen, None
    z = _lead_z(kl, chosen, first)
    return (chosen, None) if z >= DECISIVE_Z else (first, (chosen, z))


def _decided(kl: dict[str, np.ndarray]) -> bool:
    """Whether the candidate with the smallest mean KL leads every other by ``DECISIVE_Z`` standard
    errors of the paired per-item differences."""
    leader = min(kl, key=lambda c: kl[c].mean())
    return all(_lead_z(kl, leader, other) >= DECISIVE_Z for other in kl if other != leader)


def adaptive_choice(
    quantized: Iterator[tuple[str, Any]], runnable: Callable[[Any], Any], scoring: Scoring, started: float
) -> Recipe:
    """The adaptive recipe's choice, for any quantizer: every ``(candidate, INT8 model)`` that
    ``quantized`` yields is made ``runnable``; all are scored against the FP32 outputs in stages
    (:data:`SCORE_STAGES`) until the ranking is decided (:data:`DECISIVE_Z`) or every scoring item
    is used; the best wins. ``Recipe.model`` is the chosen candidate's model, ``candidate_models``
    every candidate's."""
    models: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    begun = time.perf_counter()
    for candidate, int8 in quantized:
        seconds[candidate] = time.perf_counter() - begun  # with shared statistics, the first one includes them
        models[candidate] = int8
        begun = time.perf_counter()
    quantize_seconds = sum(seconds.values())
    begun, prepared = time.perf_counter(), scoring.seconds
    compiled = {c: runnable(m) for c, m in models.items()}
    kl: dict[str, list[np.ndarray]] = {c: [] for c in models}
    flips: dict[str, list[np.ndarray]] = {c: [] for c in models}
    for stage in scoring.stages():
        new, reference = scoring.grow(stage)
        if reference is None:
            break
        for c, model in compiled.items():
            outputs = predict_logits(model, new)
            k, f = per_item(reference, outputs)
            kl[c].append(k)
            flips[c].append(f)
        if _decided({c: np.concatenate(v) for c, v in kl.items()}):
            break
    per_item_kl = {c: np.concatenate(v) for c, v in kl.items()}
    scores = {
        c: {
            "flip_rate": float(np.concatenate(flips[c]).mean()),
            "kl": float(per_item_kl[c].mean()),
            "quantize_seconds": seconds[c],
        }
        for c in models
    }
    chosen, not_decisive = keep_first_unless_decisive(per_item_kl, choose(scores))
    out = Recipe(
        ADAPTIVE,
        chosen,
        scores=scores,
        score_source=scoring.source,
        score_samples=scoring.samples,
        not_decisive=not_decisive,
    )
    out.model, out.candidate_models = models[chosen], models
    out.seconds = time.perf_counter() - started
    out.time_split = {"quantization": quantize_seconds, "scoring": prepared + time.perf_counter() - begun}
    return out


def nncf_candidates(
    model: Any, calibration: Any, candidates: tuple[str, ...], nncf_kwargs: dict[str, Any], split: dict[str, float]
) -> Iterator[tuple[str, Any]]:
    """``(candidate, INT8 model)`` by NNCF for each candidate, on the same calibration items: for
    OpenVINO models from one statistics pass shared by every candidate (:mod:`.nncf_pipelines`),
    else (or where NNCF's internals moved) by one ``nncf.quantize`` call each. ``split`` gets the
    seconds spent collecting statistics, where that was done apart."""
    import nncf

    caller_preset = nncf_kwargs.get("preset") is not None
    base = nncf_kwargs.get("advanced_parameters")
    plain = {k: v for k, v in nncf_kwargs.items() if k != "advanced_parameters"}
    kwargs = {c: {**plain, **nncf_kwargs_for(c, base, caller_preset)} for c in candidates}
    data = _materialized(calibration)
    shared = _shared_statistics(model, data, kwargs, split)
    if shared is not None:
        yield from shared.items()
        return
    for candidate, kw in kwargs.items():
        yield candidate, nncf.quantize(_copy(model), data, **kw)


def _shared_statistics(
    model: Any, data: Any, kwargs: dict[str, dict[str, Any]], split: dict[str, float]
) -> dict[str, Any] | None:
    if backend_of(model) != "openvino" or len(kwargs) < 2:
        return None
    try:
        return nncf_pipelines.quantize_candidates(model, data, kwargs, timings=split)
    except nncf_pipelines.Unsupported as exc:
        import logging

        logging.getLogger(__name__).warning(
            "adaptive recipe: one nncf.quantize per candidate instead of shared statistics (%s); "
            "the INT8 models are the same, only slower to make",
            exc,
        )
        return None


def recipe(
    model: Any,
    calibration: Any,
    name: str = ADAPTIVE,
    *,
    score_source: Any = None,
    score_samples: int = DEFAULTS["recipe_score_samples"],
    score_seed: int | None = None,
    score_latent_scale: float = DEFAULTS["recipe_score_latent_scale"],
    candidates: tuple[str, ...] = ADAPTIVE_CANDIDATES,
    keep_candidates: bool = False,
    device: str = DEFAULTS["device"],
    precision: str | None = DEFAULTS["calibration_precision"],
    **nncf_kwargs: Any,
) -> Recipe:
    """The NNCF keyword arguments to quantize ``model`` with ``calibration``.

    ``model`` is an ``openvino.Model``, an ``onnx.ModelProto`` or a ``torch.nn.Module`` (NNCF's
    backends). ``name`` is ``adaptive`` or a candidate (see ``CANDIDATES``). For ``adaptive``,
    ``calibration`` is a :class:`~openvino_synthcalib.dataset.Dataset` (its source, transform and
    seed give the scoring stream, a generator's latents ``score_latent_scale`` times as wide) unless
    ``score_source`` names another source (used as given); the candidates are
    quantized with ``nncf_kwargs`` (``subset_size``, ``preset``, ...), scored on ``score_samples``
    items and the best kept (``Recipe.model``; with ``keep_candidates``, every candidate's model).
    """
    name = check_name(name)
    caller_preset = nncf_kwargs.get("preset") is not None
    if name != ADAPTIVE:  # under the caller's preset, mixed_minmax is minmax
        chosen = effective_candidates((name,), caller_preset)[0]
        return _fixed(name, chosen, nncf_kwargs.get("advanced_parameters"), caller_preset)
    for c in candidates:
        check_name(c, "candidates")
        if c == ADAPTIVE:
            raise SynthcalibError("candidates: 'adaptive' is not a candidate")
    checked(lambda v: integer(v, 1), score_samples, "score_samples")
    score_latent_scale = check_latent_scale(score_latent_scale)
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
    if score_source is None:
        source = scoring_source(source, score_latent_scale)
    seed = score_seed if score_seed is not None else getattr(stream, "seed", 0) + SCORE_SEED_OFFSET
    with make_stream(
        source,
        score_samples,
        model=model,
        transform=getattr(stream, "transform", None),
        seed=seed,
        device=device,
        precision=precision,
    ) as score_stream:
        scoring = Scoring.prepare(model, score_stream, device)
        return adaptive(model, calibration, scoring, candidates, nncf_kwargs, device, started, keep_candidates)


def adaptive(
    model: Any,
    calibration: Any,
    scoring: Scoring,
    candidates: tuple[str, ...],
    nncf_kwargs: dict[str, Any],
    device: str,
    started: float,
    keep_candidates: bool = False,
) -> Recipe:
    """The adaptive recipe through NNCF, on prepared ``scoring`` items."""
    caller_preset = nncf_kwargs.get("preset") is not None
    effective = effective_candidates(tuple(candidates), caller_preset)
    split: dict[str, float] = {}
    out = adaptive_choice(
        nncf_candidates(model, calibration, effective, nncf_kwargs, split),
        lambda int8: prepare_reference(int8, device, "f32"),
        scoring,
        started,
    )
    if "statistics" in split:  # collected apart, before the candidates were quantized
        out.time_split = {
            "statistics": split["statistics"],
            "quantization": out.time_split["quantization"] - split["statistics"],
            "scoring": out.time_split["scoring"],
        }
    fixed = _fixed(ADAPTIVE, out.chosen, nncf_kwargs.get("advanced_parameters"), caller_preset)
    out.advanced, out.preset = fixed.advanced, fixed.preset
    if not keep_candidates:
        out.candidate_models = {}
    return out


def _fixed(requested: str, candidate: str, base_advanced: Any, caller_preset: bool) -> Recipe:
    kwargs = nncf_kwargs_for(candidate, base_advanced, caller_preset)
    return Recipe(requested, candidate, kwargs.get("advanced_parameters"), kwargs.get("preset"))
