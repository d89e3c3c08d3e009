"""Distil a small conditional generator from a big black-box teacher (TinyGAN-style).

Needs PyTorch (the ``[train]`` extra). Run as ``python -m openvino_synthcalib.train_generator``
with the subcommands ``sample-teacher``, ``train``, ``export`` and ``evaluate``; the same steps are
available from Python as :func:`sample`, :func:`train`, :func:`export` and :func:`evaluate`.
"""

from __future__ import annotations

from typing import Any

from .options import defaults, resolve_options

__all__ = ["defaults", "evaluate", "export", "resolve_options", "sample", "train"]


def sample(**options: Any) -> dict[str, Any]:
    """Sample a teacher set (options of ``sample-teacher``); returns its manifest."""
    from .teacher_set import sample_from_options

    return sample_from_options(resolve_options("sample-teacher", options))


def train(**options: Any) -> Any:
    """Train a student (options of ``train``); returns the run folder."""
    from .training import train_from_options

    return train_from_options(resolve_options("train", options))


def export(**options: Any) -> Any:
    """Export a run's EMA generator to an FP16 OpenVINO IR (options of ``export``); returns the .xml path."""
    from .exporter import export_from_options

    return export_from_options(resolve_options("export", options))


def evaluate(**options: Any) -> dict[str, Any]:
    """Evaluate teacher and student (options of ``evaluate``); returns the results dict."""
    from .evaluation import evaluate_from_options

    return evaluate_from_options(resolve_options("evaluate", options))
