"""Several NNCF quantizations of one OpenVINO model with one pass over the data per step.

``nncf.quantize`` runs NNCF's post-training pipeline. For OpenVINO models in NNCF 3.4 its steps are
SmoothQuant (transformers only) and ChannelAlignment (off unless ``disable_channel_alignment=False``),
then MinMaxQuantization with fast (or full) bias correction in the last step; each step collects
statistics over the calibration items on the model the previous step produced, and bias correction
collects its own in the same pass as MinMaxQuantization, on the same (not yet quantized) model.
Candidates that differ only in the last step's settings (range estimator, preset, ignored scope, bias
correction, subset size...) therefore share the early steps, and :func:`quantize_candidates`
collects all candidates' last-step statistics in one pass (NNCF's aggregator merges the reducers and
aggregators that are the same at a tensor), finds each distinct quantizer setup once, then runs
each candidate's last step on its own copy of the model. What each candidate still pays for alone:
its own aggregators (NNCF computes them in Python, per item: the histogram range estimator's are
costly), its quantizer setup where presets differ, and applying its ranges and bias correction.

The result serializes as ``nncf.quantize(model.clone(), dataset, **kwargs)``'s does, byte for byte
in the weights and in the IR but for OpenVINO's counter-made node names (``Constant_10712``), which
differ between two identical ``nncf.quantize`` calls too.

This is the only module that uses NNCF internals. Where it cannot reproduce ``nncf.quantize``
exactly (an NNCF version other than the tested ones, moved internals, an argument it does not know,
a model with ``If`` operations, another backend) it raises :class:`Unsupported`: call
``nncf.quantize`` per candidate instead. The dataset must yield the same items each time it is
iterated (a list does): separate ``nncf.quantize`` calls would otherwise see different items.
"""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Mapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import nncf
    import openvino as ov

#: The exact NNCF versions (``nncf.__version__``) whose ``quantize`` this module reproduces, as
#: ``tests/test_nncf_pipelines.py`` checked. Others, patch releases included, raise :class:`Unsupported`:
#: a new release may change a step of ``quantize`` in a way that raises nothing here but changes the output.
TESTED_NNCF_VERSIONS = ("3.4.0",)
#: The ``nncf.quantize`` keyword arguments this module passes on (all of NNCF 3.4's).
KNOWN_KWARGS = frozenset(
    {
        "mode",
        "preset",
        "target_device",
        "subset_size",
        "fast_bias_correction",
        "model_type",
        "ignored_scope",
        "advanced_parameters",
    }
)
# Attributes of a pipeline algorithm that do not describe what it does (compared to share steps).
_INSTANCE_ATTRIBUTES = frozenset({"_algorithm_key", "_backend_entity"})
# MinMaxQuantization's attributes that only shape its statistic collectors, its caches, and what
# its other settings determine (``_global_quantizer_constraints``): ignored to share its quantizer setup.
_MINMAX_STATISTICS_SETTINGS = frozenset(
    {
        "_activations_range_estimator_params",
        "_weights_range_estimator_params",
        "_range_estimator_params",
        "_subset_size",
        "_inplace_statistics",
        "_batchwise_statistics",
        "_quantization_target_points_to_qconfig",
        "_unified_scale_groups",
        "_global_quantizer_constraints",
    }
)


class Unsupported(Exception):
    """:func:`quantize_candidates` cannot reproduce ``nncf.quantize`` here: quantize each candidate
    with ``nncf.quantize`` instead."""


def _internals() -> SimpleNamespace:
    """The NNCF functions and classes used here, or :class:`Unsupported` naming what moved."""
    try:
        import nncf
    except ImportError as exc:
        raise Unsupported(f"NNCF is not installed: {exc}") from None
    version = str(getattr(nncf, "__version__", "unknown"))
    if version not in TESTED_NNCF_VERSIONS:
        raise Unsupported(
            f"NNCF {version} is not a version its shared statistics were tested on ({', '.join(TESTED_NNCF_VERSIONS)})"
        )
    try:
        from nncf.common.factory import StatisticsAggregatorFactory, build_graph
        from nncf.common.tensor_statistics.statistic_point import StatisticPointsContainer
        from nncf.common.utils.backend import BackendType, get_backend
        from nncf.openvino.graph.metatypes.groups import OPERATIONS_OUTPUT_HAS_NO_BATCH_AXIS
        from nncf.openvino.graph.model_utils import remove_friendly_name_duplicates
        from nncf.openvino.graph.nncf_graph_builder import GraphConverter
        from nncf.openvino.graph.node_utils import get_number_if_op
        from nncf.openvino.quantization.backend_parameters import is_weight_compression_needed
        from nncf.openvino.quantization.quantize_model import native_quantize_impl
        from nncf.openvino.rt_info import dump_parameters
        from nncf.quantization.advanced_parameters import convert_to_dict_recursively
        from nncf.quantization.algorithms.min_max.algorithm import MinMaxQuantization
        from nncf.quantization.algorithms.pipeline import Pipeline
        from nncf.quantization.algorithms.post_training.pipeline import create_ptq_pipeline
        from nncf.quantization.quantize_model import (
            _update_advanced_quantization_parameters,
            warning_model_no_batchwise_support,
        )
        from openvino._offline_transformations import compress_quantize_weights_transformation
    except ImportError as exc:
        raise Unsupported(f"NNCF internals moved in NNCF {version}: {exc}") from None
    for owner, attr in (
        (Pipeline, "run_step"),
        (Pipeline, "get_statistic_points_for_step"),
        (Pipeline, "pipeline_steps"),
        (StatisticsAggregatorFactory, "create"),
        (MinMaxQuantization, "_set_backend_entity"),
        (MinMaxQuantization, "_init_cache"),
        (MinMaxQuantization, "find_quantization_setup"),
        (MinMaxQuantization, "fill_quantization_target_points"),
        (MinMaxQuantization, "get_cached_statistic_points"),
    ):
        if not hasattr(owner, attr):
            raise Unsupported(f"NNCF internals moved in NNCF {version}: no {owner.__name__}.{attr}")
    params = set(inspect.signature(native_quantize_impl).parameters) - {"model", "calibration_dataset"}
    if params != KNOWN_KWARGS:
        raise Unsupported(f"NNCF internals moved in NNCF {version}: quantize takes {sorted(params)}")
    return SimpleNamespace(
        StatisticsAggregatorFactory=StatisticsAggregatorFactory,
        StatisticPointsContainer=StatisticPointsContainer,
        build_graph=build_graph,
        BackendType=BackendType,
        get_backend=get_backend,
        OPERATIONS_OUTPUT_HAS_NO_BATCH_AXIS=OPERATIONS_OUTPUT_HAS_NO_BATCH_AXIS,
        remove_friendly_name_duplicates=remove_friendly_name_duplicates,
        GraphConverter=GraphConverter,
        get_number_if_op=get_number_if_op,
        is_weight_compression_needed=is_weight_compression_needed,
        native_quantize_impl=native_quantize_impl,
        dump_parameters=dump_parameters,
        convert_to_dict_recursively=convert_to_dict_recursively,
        MinMaxQuantization=MinMaxQuantization,
        create_ptq_pipeline=create_ptq_pipeline,
        update_advanced_parameters=_update_advanced_quantization_parameters,
        warning_model_no_batchwise_support=warning_model_no_batchwise_support,
        compress_quantize_weights_transformation=compress_quantize_weights_transformation,
    )


def check_supported() -> None:
    """Raise :class:`Unsupported` (saying why) unless this NNCF's internals are the ones used here."""
    _internals()


def _settings(nn: SimpleNamespace, dataset: nncf.Dataset, name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """A candidate's ``nncf.quantize`` arguments with NNCF's defaults, prepared as ``nncf.quantize``
    prepares them (which may set ``advanced_parameters.batchwise_statistics`` in place, as it does)."""
    unknown = set(kwargs) - KNOWN_KWARGS
    if unknown:
        raise Unsupported(f"candidate {name!r}: unknown nncf.quantize arguments {sorted(unknown)}")
    bound = inspect.signature(nn.native_quantize_impl).bind_partial(**kwargs)
    bound.apply_defaults()
    out = {k: v for k, v in bound.arguments.items() if k in KNOWN_KWARGS}
    if out["subset_size"] < 1:
        import nncf

        raise nncf.ValidationError("Subset size must be positive.")
    advanced = nn.update_advanced_parameters(out["advanced_parameters"], dataset)
    if advanced is not None and advanced.smooth_quant_alpha is not None:
        # create_ptq_pipeline rewrites the (possibly shared) smooth_quant_alphas for this deprecated option
        raise Unsupported(f"candidate {name!r}: the deprecated smooth_quant_alpha")
    out["advanced_parameters"] = advanced
    return out


def _steps(nn: SimpleNamespace, pipeline: Any) -> list[list[Any]]:
    """The pipeline's steps as ``Pipeline.run_step`` indexes them (the OpenVINO backend's algorithms)."""
    steps = [[a for a in step if nn.BackendType.OPENVINO in a.available_backends] for step in pipeline.pipeline_steps]
    steps = [s for s in steps if s]
    if not steps or not isinstance(steps[-1][0], nn.MinMaxQuantization):
        raise Unsupported("NNCF internals moved: the post-training pipeline does not end with MinMaxQuantization")
    return steps


def _signature(algorithm: Any, ignore: frozenset[str] = frozenset()) -> tuple[Any, ...]:
    """What an algorithm is configured to do: its class and settings, but for ``ignore`` (equal
    signatures give equal results; a setting without a value-based repr never compares equal)."""
    skip = _INSTANCE_ATTRIBUTES | ignore
    attrs = sorted((k, repr(v)) for k, v in vars(algorithm).items() if k not in skip)
    return (type(algorithm).__module__, type(algorithm).__qualname__, tuple(attrs))


def _collect(nn: SimpleNamespace, containers: list[Any], model: ov.Model, graph: Any, dataset: nncf.Dataset) -> Any:
    """Statistics for all ``containers`` in one pass over ``dataset``: one aggregator, which merges
    the reducers and aggregators that are the same at a tensor (``Pipeline``'s ``collect_statistics``)."""
    aggregator = nn.StatisticsAggregatorFactory.create(model, dataset)
    for container in containers:
        aggregator.register_statistic_points(container)
    aggregator.collect_statistics(model, graph)
    return aggregator.statistic_points


def _last_step_points(
    nn: SimpleNamespace, step: list[Any], model: ov.Model, graph: Any, setups: dict[tuple[Any, ...], Any]
) -> Any:
    """``Pipeline.get_statistic_points_for_step`` for a candidate's last step, except that
    MinMaxQuantization's quantizer setup (which does not depend on how ranges are estimated) is
    found once per distinct setting in ``setups``, as NNCF's MinMaxRangeEstimator hands one over."""
    container = nn.StatisticPointsContainer()
    for algorithm in step:
        if isinstance(algorithm, nn.MinMaxQuantization):
            key = _signature(algorithm, _MINMAX_STATISTICS_SETTINGS)
            algorithm._set_backend_entity(model)
            if key not in setups:
                setups[key] = algorithm.find_quantization_setup(model, graph)
            algorithm._init_cache()
            algorithm.fill_quantization_target_points(copy.deepcopy(setups[key]), graph)
            points = algorithm.get_cached_statistic_points(model, graph)
        else:
            points = algorithm.get_statistic_points(model, graph)
        for statistic_points in points.values():
            for statistic_point in statistic_points:
                container.add_statistic_point(statistic_point)
    return container


def quantize_candidates(
    model: ov.Model,
    dataset: nncf.Dataset,
    candidates: Mapping[str, Mapping[str, Any]],
    *,
    timings: dict[str, float] | None = None,
) -> dict[str, ov.Model]:
    """``{name: nncf.quantize(model.clone(), dataset, **kwargs)}`` for ``candidates`` (name -> kwargs),
    collecting the statistics of all candidates in one pass over ``dataset`` per pipeline step.

    ``model`` is left unchanged. ``timings``, when given, receives seconds spent: ``statistics``
    (the passes over the dataset), ``shared_steps`` (early pipeline steps, run once for the
    candidates that share them), ``setup`` (finding where quantizers go) and ``candidate:NAME``
    (each candidate's last step: ranges, bias correction, weight compression). Raises
    :class:`Unsupported` where it cannot reproduce ``nncf.quantize`` (see the module's docstring).
    """
    nn = _internals()
    try:
        backend = nn.get_backend(model)
    except Exception as exc:
        raise Unsupported(f"not an NNCF model: {exc}") from None
    if backend != nn.BackendType.OPENVINO:
        raise Unsupported(f"only OpenVINO models are supported, not {backend.name}")
    settings = {name: _settings(nn, dataset, name, kwargs) for name, kwargs in candidates.items()}
    if not settings:
        return {}
    clock = {"statistics": 0.0, "shared_steps": 0.0, "setup": 0.0}

    def lap(key: str, begun: float) -> float:
        now = time.perf_counter()
        clock[key] = clock.get(key, 0.0) + now - begun
        return now

    # nncf.quantize -> quantize_impl -> native_quantize_impl, once for all candidates
    begun = time.perf_counter()
    base = nn.remove_friendly_name_duplicates(model.clone())
    if nn.get_number_if_op(base) > 0:
        raise Unsupported("models with If operations (NNCF quantizes their bodies separately)")
    pipelines = {name: nn.create_ptq_pipeline(**s) for name, s in settings.items()}
    graph = nn.GraphConverter.create_nncf_graph(base)
    for s in settings.values():
        nn.warning_model_no_batchwise_support(
            graph, s["advanced_parameters"], s["model_type"], nn.OPERATIONS_OUTPUT_HAS_NO_BATCH_AXIS
        )
    steps = {name: _steps(nn, p) for name, p in pipelines.items()}
    # candidates with the same early steps share them, and the model their last step starts from
    groups: dict[tuple[Any, ...], list[str]] = {}
    for name, s in steps.items():
        groups.setdefault(tuple(tuple(map(_signature, step)) for step in s[:-1]), []).append(name)
    begun = lap("setup", begun)

    out: dict[str, ov.Model] = {}
    for members in groups.values():
        lead = pipelines[members[0]]
        last = len(steps[members[0]]) - 1
        step_model, step_graph = base, graph
        for index in range(last):  # Pipeline.run_from_step up to the last step, once for the group
            points = lead.get_statistic_points_for_step(index, step_model, step_graph)
            begun = lap("shared_steps", begun)
            stats = _collect(nn, [points], step_model, step_graph, dataset)
            begun = lap("statistics", begun)
            step_model = lead.run_step(index, stats, step_model, step_graph)
            step_graph = nn.build_graph(step_model)
            begun = lap("shared_steps", begun)

        setups: dict[tuple[Any, ...], Any] = {}
        points = [_last_step_points(nn, steps[n][-1], step_model, step_graph, setups) for n in members]
        begun = lap("setup", begun)
        stats = _collect(nn, points, step_model, step_graph, dataset)
        begun = lap("statistics", begun)
        for name in members:
            out[name] = _finish(
                nn, settings[name], pipelines[name].run_step(last, stats, step_model.clone(), step_graph)
            )
            begun = lap(f"candidate:{name}", begun)
    if timings is not None:
        timings.update(clock)
    return {name: out[name] for name in settings}


def _finish(nn: SimpleNamespace, s: dict[str, Any], quantized: ov.Model) -> ov.Model:
    """What ``native_quantize_impl`` does after the pipeline: compress weights, record the settings."""
    if nn.is_weight_compression_needed(s["advanced_parameters"]):
        nn.compress_quantize_weights_transformation(quantized)
    nn.dump_parameters(
        quantized,
        {
            "preset": s["preset"],
            "target_device": s["target_device"].value,
            "subset_size": s["subset_size"],
            "fast_bias_correction": s["fast_bias_correction"],
            "model_type": s["model_type"],
            "ignored_scope": s["ignored_scope"],
            "advanced_parameters": nn.convert_to_dict_recursively(s["advanced_parameters"]),
        },
    )
    return quantized
