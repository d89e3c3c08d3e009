"""The quantization recipe for POT: DefaultQuantization's ``activations.range_estimator`` and ``preset``.

A synthetic engine section gets the same recipe as ``synthcalib quantize`` (see
:mod:`openvino_synthcalib.recipes`): ``adaptive`` by default for synthetic sources, POT's own
defaults (``nncf``) for real images, or a fixed candidate with a POT equivalent (``minmax``,
``mixed_minmax``; POT has no histogram estimator). An algorithm that sets its own
``activations.range_estimator`` is left as it is; one that sets its own ``preset`` keeps it.

``adaptive`` quantizes the model once per candidate with DefaultQuantization (the algorithm's own
parameters, the candidate's range estimator), scores each INT8 model against the FP32 model on
the synthetic scoring stream, and keeps the best. When the configured pipeline is that single
DefaultQuantization, the chosen trial is the result; otherwise (AccuracyAwareQuantization...) the
pipeline runs once more with the chosen range estimator. Imports POT.
"""

from __future__ import annotations

import copy
import sys
import tempfile
import time
from typing import Any

from addict import Dict

from .. import models
from ..errors import SynthcalibError
from ..recipes import (
    ADAPTIVE,
    ADAPTIVE_CANDIDATES,
    CANDIDATES,
    Scoring,
    adaptive_choice,
    effective_candidates,
)

ALGORITHMS_WITH_RANGES = ("DefaultQuantization", "AccuracyAwareQuantization")


def _sets_own_ranges(algo: Any) -> bool:
    params = algo.get("params") or {}
    return bool((params.get("activations") or {}).get("range_estimator"))


def _sets_preset(algo_config: list[Any]) -> bool:
    return any((a.get("params") or {}).get("preset") for a in algo_config if a.get("name") in ALGORITHMS_WITH_RANGES)


def pot_candidates(algo_config: list[Any] = ()) -> tuple[str, ...]:
    """The adaptive candidates POT can express, as they are under the algorithms' own ``preset``
    (a config that sets one keeps it: ``mixed_minmax`` is then ``minmax``)."""
    usable = tuple(c for c in ADAPTIVE_CANDIDATES if CANDIDATES[c].pot_available)
    return effective_candidates(usable, _sets_preset(algo_config))


def with_candidate(algo_config: list[Any], candidate: str) -> list[Any]:
    """A copy of the algorithms with ``candidate``'s range estimator (and preset) where none is set."""
    cand = CANDIDATES[candidate]
    out = []
    for algo in algo_config:
        algo = Dict(copy.deepcopy(dict(algo)))
        if algo.name in ALGORITHMS_WITH_RANGES and not _sets_own_ranges(algo):
            if cand.pot is not None:
                algo.params.activations.range_estimator = copy.deepcopy(cand.pot)
            if cand.preset is not None and not algo.params.get("preset"):
                algo.params.preset = cand.preset
        out.append(algo)
    return out


def applies(algo_config: list[Any]) -> bool:
    """Whether a recipe has anything to choose: an algorithm without its own activation ranges."""
    return any(a.get("name") in ALGORITHMS_WITH_RANGES and not _sets_own_ranges(a) for a in algo_config)


class RecipePipeline:
    """A POT pipeline that first chooses the range estimator (``adaptive``), then runs."""

    def __init__(self, create: Any, algo_config: list[Any], engine: Any, interface: str, setup: Any) -> None:
        self._create = create
        self._algo_config = list(algo_config)
        self._engine = engine
        self._interface = interface
        self._setup = setup
        self._pipeline: Any = None
        self.report: dict[str, Any] = {}

    def _trial_config(self, candidate: str) -> list[Any]:
        algos = with_candidate(self._algo_config, candidate)
        trial = []
        for algo in algos:  # the choice is made with plain DefaultQuantization of the same preset
            if algo.name == "AccuracyAwareQuantization":
                algo = Dict({"name": "DefaultQuantization", "params": algo.params})
            trial.append(algo)
        return trial

    def run(self, model: Any) -> Any:
        """Choose the candidate with the shared adaptive recipe (:func:`..recipes.adaptive_choice`):
        each candidate is a POT pipeline run; the chosen trial is the result where the configured
        pipeline is that single DefaultQuantization."""
        started = time.perf_counter()
        plan = self._setup.plan
        scoring = Scoring.prepare(plan.model, plan.scoring_stream(), plan.settings["device"], plan.target)
        results: dict[str, Any] = {}

        def trials() -> Any:
            for candidate in pot_candidates(self._algo_config):
                pipeline = self._create(self._trial_config(candidate), self._engine, self._interface)
                quantized = pipeline.run(copy.deepcopy(model))
                results[candidate] = (pipeline, quantized)
                yield candidate, quantized

        chosen = adaptive_choice(trials(), lambda q: _compiled(q, plan.settings["device"]), scoring, started)
        self.report = chosen.describe()
        print(f"synthcalib: recipe {chosen.summary()}", file=sys.stderr)
        if [a.get("name") for a in self._algo_config] == ["DefaultQuantization"]:
            self._pipeline, result = results[chosen.chosen]
            return result
        self._pipeline = self._create(with_candidate(self._algo_config, chosen.chosen), self._engine, self._interface)
        return self._pipeline.run(model)

    def evaluate(self, model: Any) -> Any:
        if self._pipeline is None:
            raise SynthcalibError("pipeline: evaluate() before run()")
        return self._pipeline.evaluate(model)

    @property
    def algo_seq(self) -> list[Any]:
        return self._pipeline.algo_seq if self._pipeline is not None else []


def _compiled(quantized: Any, device: str) -> Any:
    """A POT-quantized model compiled for scoring (FP32 arithmetic), through an IR written to a
    temporary folder (POT's models are not ``openvino.Model`` objects)."""
    import openvino as ov

    with tempfile.TemporaryDirectory() as tmp:
        paths = quantized.save(tmp, model_name="candidate")
        return models.compile_model(ov.Core().read_model(paths[0]["model"]), device, models.precision_config("f32"))


def create_pipeline(create: Any, algo_config: list[Any], engine: Any, interface: str = "API") -> Any:
    """POT's ``create_pipeline`` with the engine's recipe applied (synthetic engines only)."""
    setup = getattr(engine, "synthcalib_setup", None)
    if setup is None or not applies(algo_config) or setup.recipe == "nncf":
        return create(algo_config, engine, interface)
    if setup.recipe != ADAPTIVE:
        return create(with_candidate(algo_config, setup.recipe), engine, interface)
    return RecipePipeline(create, algo_config, engine, interface, setup)
