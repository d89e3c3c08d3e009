"""Teach POT's CLI module the ``"type": "synthetic"`` engine; idempotent, minimal, reversible.

POT has no plugin registry: ``openvino/tools/pot/app/run.py`` imports ``create_engine`` and
``create_data_loader`` from the creator modules, and ``Config._configure_engine_params``
rejects unknown engine types. :func:`apply` therefore wraps, and for every other engine type
delegates unchanged to:

* ``Config._configure_engine_params``: validates a synthetic engine section and builds its
  stream (one-line :class:`SynthcalibError` naming the key on a bad section);
* ``Config._convert_mo_args``: a ``model.model`` ending in ``.onnx`` is converted once to an
  FP32 IR in a cache directory (POT reads IR only);
* ``run.create_data_loader`` / ``run.create_engine``: the synthetic loader and engine (with
  the top-1 metrics when an AccuracyAware algorithm runs);
* ``run.create_pipeline``: the engine's quantization recipe (see :mod:`.recipe`);
* ``run.app``: a :class:`SynthcalibError` becomes ``synthcalib: error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import SynthcalibError
from ..files import cache_dir, ensure_dir, save_ir
from ..models import first_line
from ..preprocessing import report_line
from .engine_config import ENGINE_TYPE, TOKEN_KEY, build_setup, check_type, register, release_all

PATCHED_FLAG = "_synthcalib_patched"


def _is_synthetic(engine: Any) -> bool:
    return engine is not None and engine.get("type") == ENGINE_TYPE


def onnx_to_ir(path: str | os.PathLike[str]) -> tuple[str, str]:
    """An FP32 IR of an ONNX file, converted once and cached by content hash."""
    import openvino as ov

    src = Path(path)
    if not src.is_file():
        raise SynthcalibError(f"model.model: file '{src}' does not exist")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    out_dir = cache_dir() / "pot-ir" / f"{digest}-{ov.__version__.split('-')[0]}"
    xml = out_dir / f"{src.stem}.xml"
    if not (xml.is_file() and xml.with_suffix(".bin").is_file()):
        try:
            model = ov.convert_model(str(src))
        except Exception as exc:
            raise SynthcalibError(f"model.model: cannot convert '{src}' to IR: {first_line(exc)}") from None
        save_ir(model, ensure_dir(out_dir, "cache folder") / xml.name, "POT IR cache")  # .xml lands last
    return str(xml), str(xml.with_suffix(".bin"))


def algorithm_names(config: Any) -> list[str]:
    compression = config.get("compression") or {}
    return [a.get("name") for a in compression.get("algorithms") or [] if isinstance(a, dict)]


def configure_engine(config: Any) -> None:
    """Validate the synthetic engine section of a POT ``Config`` and register its set-up."""
    engine = config.engine
    model = config.get("model") or {}
    if model.get("cascade"):
        raise SynthcalibError("model.cascade: the synthetic engine quantizes single models only")
    setup = build_setup(engine, model.get("model"), algorithm_names(config))
    engine["device"] = setup.device
    engine[TOKEN_KEY] = register(setup)


def apply(run_module: Any = None) -> Any:
    """Patch POT (``openvino.tools.pot.app.run`` and its ``Config``); returns the run module."""
    if run_module is None:
        import openvino.tools.pot.app.run as run_module
    if getattr(run_module, PATCHED_FLAG, False):
        return run_module
    from openvino.tools.pot.configs.config import Config

    if not getattr(Config, PATCHED_FLAG, False):
        original_engine_params = Config._configure_engine_params
        original_convert = Config._convert_mo_args

        def _configure_engine_params(self: Any) -> None:
            if _is_synthetic(self.engine):
                configure_engine(self)
                return None
            check_type(self.engine)
            return original_engine_params(self)

        def _convert_mo_args(self: Any) -> None:
            model = self.model
            path = model.get("model")
            if not model.get("cascade") and isinstance(path, str) and path.lower().endswith(".onnx"):
                xml, bin_ = onnx_to_ir(path)
                model["model"], model["weights"] = xml, bin_
                if not model.get("model_name"):
                    model["model_name"] = Path(path).stem
            return original_convert(self)

        Config._configure_engine_params = _configure_engine_params
        Config._convert_mo_args = _convert_mo_args
        setattr(Config, PATCHED_FLAG, True)

    original_create_data_loader = run_module.create_data_loader
    original_create_engine = run_module.create_engine
    original_create_pipeline = run_module.create_pipeline
    original_app = run_module.app

    def create_data_loader(config: Any, model: Any) -> Any:
        if _is_synthetic(config):
            from .loader import create_data_loader as make  # heavy: .loader imports POT

            return make(config, model)
        return original_create_data_loader(config, model)

    def create_engine(config: Any, **kwargs: Any) -> Any:
        if _is_synthetic(config):
            from .engine import create_engine as make  # heavy: .engine imports POT

            engine = make(config, **kwargs)
            transform = engine.synthcalib_setup.plan.transform
            if hasattr(transform, "describe"):
                print(f"synthcalib: input {report_line(transform.describe())}", file=sys.stderr)
            return engine
        return original_create_engine(config, **kwargs)

    def create_pipeline(algo_config: Any, engine: Any, interface: str = "API") -> Any:
        from .pipeline import create_pipeline as make  # heavy: .pipeline imports POT's addict

        return make(original_create_pipeline, algo_config, engine, interface)

    def app(argv: Any) -> Any:
        try:
            return original_app(argv)
        except SynthcalibError as exc:
            sys.stderr.write(f"synthcalib: error: {exc}\n")
            raise SystemExit(2) from None
        finally:
            release_all()  # the compiled generators of this run

    run_module.create_data_loader = create_data_loader
    run_module.create_engine = create_engine
    run_module.create_pipeline = create_pipeline
    run_module.app = app
    setattr(run_module, PATCHED_FLAG, True)
    return run_module
