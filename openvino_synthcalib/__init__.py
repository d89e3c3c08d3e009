"""openvino_synthcalib: synthetic calibration data for OpenVINO INT8 quantization.

``import openvino_synthcalib as synthcalib`` is light: NNCF, PyTorch and POT are imported
only when the names that need them are first used.
"""

from __future__ import annotations

from . import lazy

__version__ = "0.1.0"

# Public name -> module that defines it (imported on first access).
_EXPORTS = {
    "Dataset": ".dataset",
    "GeneratorEngine": ".engine",
    "GeneratorInfo": ".contract",
    "read_info": ".contract",
    "write_info": ".contract",
    "shipped_generators": ".shipped",
    "SyntheticStream": ".stream",
    "make_stream": ".stream",
    "Transform": ".transforms",
    "ClassSchedule": ".schedule",
    "Source": ".sources.base",
    "SourceContext": ".sources.base",
    "SourceType": ".sources.base",
    "resolve_source": ".plugins",
    "source_types": ".plugins",
    "get_plugin_manager": ".plugins",
    "hookimpl": ".hookspecs",
    "quantize": ".quantization",
    "recipe": ".recipes",
    "Recipe": ".recipes",
    "RECIPES": ".recipes",
    "evaluate": ".evaluation",
    "top1_agreement": ".validation",
    "top1_vs_labels": ".validation",
    "SynthcalibError": ".errors",
    "DEFAULTS": ".defaults",
    "PRESETS": ".defaults",
}

__getattr__, __dir__, _names = lazy.attach(__name__, _EXPORTS)
__all__ = ["__version__", *_names]
