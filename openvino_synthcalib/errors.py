"""Errors raised for bad user input.

Every problem a user can cause (a missing file, a wrong shape, an unknown scheme)
raises :class:`SynthcalibError` with a one-line message that names the culprit and
what was expected. The CLI turns it into ``synthcalib: error: ...`` and exit code 2.
"""

from __future__ import annotations


class SynthcalibError(ValueError):
    """A user-facing error: one line naming the file, flag or key at fault."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
