"""openvino_synthcalib: synthetic calibration data for OpenVINO INT8 quantization.

``import openvino_synthcalib as synthcalib`` is light: NNCF, PyTorch and POT are imported
only when the names that need them are first used.
"""

from __future__ import annotations

from . import lazy

__version__ = "0.1.0"

# Public name -> module that defines it (imported on first access).
_EXPORTS = {
    "Dataset": "openvino_synthcalib.dataset",
    "GeneratorEngine": "openvino_synthcalib.engine",
    "GeneratorInfo": "openvino_synthcalib.contract",
    "read_info": "openvino_synthcalib.contract",
    "write_info": "openvino_synthcalib.contract",
    "shipped_generators": "openvino_synthcalib.shipped",
    "SyntheticStream": "openvino_synthcalib.stream",
    "make_stream": "openvino_synthcalib.stream",
    "Transform": "openvino_synthcalib.transforms",
    "ClassSchedule": "openvino_synthcalib.schedule",
    "Source": "openvino_synthcalib.sources.base",
    "SourceContext": "openvino_synthcalib.sources.base",
    "SourceType": "openvino_synthcalib.sources.base",
    "resolve_source": "openvino_synthcalib.plugins",
    "source_types": "openvino_synthcalib.plugins",
    "get_plugin_manager": "openvino_synthcalib.plugins",
    "hookimpl": "openvino_synthcalib.hookspecs",
    "quantize": "openvino_synthcalib.quantize",
    "recipe": "openvino_synthcalib.recipe",
    "Recipe": "openvino_synthcalib.recipe",
    "RECIPES": "openvino_synthcalib.recipe",
    "evaluate": "openvino_synthcalib.evaluate",
    "top1_agreement": "openvino_synthcalib.validation",
    "top1_vs_labels": "openvino_synthcalib.validation",
    "SynthcalibError": "openvino_synthcalib.errors",
    "DEFAULTS": "openvino_synthcalib.defaults",
    "PRESETS": "openvino_synthcalib.defaults",
}

__all__ = ["__version__", *_EXPORTS]

lazy.install(__name__, _EXPORTS)
