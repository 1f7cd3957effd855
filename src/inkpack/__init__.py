"""inkpack: fast, compact LSTM-based handwriting recognizers."""

from __future__ import annotations

__version__ = "0.1.0"


def load(path: str | None = None, **kwargs):
    """A recognizer for a model path (no path: the bundled default offline model; ``.onnx``: ONNX Runtime)."""
    from inkpack.api import load as _load

    return _load(path, **kwargs)


__all__ = ["load", "__version__"]
