"""User-facing errors: one line, naming the file or field, never a traceback."""

from __future__ import annotations


class InkpackError(Exception):
    """An error caused by the user's input or setup; the CLI prints it as one line and exits 2."""


class BadSampleError(InkpackError):
    """One sample (file, row, stroke set) cannot be used; training skips and counts these."""


class UnknownCharacterError(InkpackError):
    """A transcription holds characters the model's alphabet cannot encode."""
