"""User-facing errors: one line, naming the file or field, never a traceback."""

from __future__ import annotations


class InkpackError(Exception):
    """An error caused by the user's input or setup; the CLI prints it as one line and exits 2."""


class BadSampleError(InkpackError):
    """One sample (file, row, stroke set) cannot be used; training skips and counts these."""


class UnknownCharacterError(InkpackError):
    """A transcription holds characters the model's alphabet cannot encode."""


class InputError(InkpackError):
    """A bad input file or request body (unreadable, wrong format, inconsistent)."""


class InputTooLargeError(BadSampleError):
    """An input whose *normalized* size (width after scaling, frames, points, lines of a page)
    exceeds a limit; refused before anything of that size is allocated (HTTP 413)."""


class ConfigError(InkpackError):
    """A bad option, config-file key or value (names the field)."""


class ModelFileError(InkpackError):
    """A model, checkpoint or ONNX file that is missing, corrupt or of the wrong kind."""
