"""Errors with their HTTP status: every one is a one-line :class:`SynthcalibError`."""

from __future__ import annotations

from ..errors import SynthcalibError


class UnknownId(SynthcalibError):
    """An id the server does not know: generator, model or job."""

    status = 404


class Busy(SynthcalibError):
    """A calibration is already running, or the job asked about has not finished."""

    status = 409


def http_status(exc: SynthcalibError) -> int:
    """400 for bad input, unless the error says otherwise."""
    return getattr(exc, "status", 400)
